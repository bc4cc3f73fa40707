//! A walk over pickle opcodes that never executes any of them.
//!
//! The walk keeps an abstract stack (which slot holds a string the scanner knows,
//! a global, or "some other value") and an abstract memo, enough to resolve the
//! operands of `STACK_GLOBAL` and to see what `REDUCE`, `NEWOBJ` and `BUILD`
//! would call. Every global is checked against the allowlist in
//! [`super::allow`]; nothing is imported, called or allocated in proportion to a
//! length or index read from the input.

use std::collections::HashMap;

use super::{Refusal, ScanLimits, allow};

/// Strings longer than this are not kept (a module or attribute name never is).
const MAX_KEPT_STRING: usize = 512;
/// The longest line a text opcode (`GLOBAL`, `INT`, `PUT`, …) may have.
const MAX_LINE: usize = 64 * 1024;
/// The newest pickle protocol.
const MAX_PROTOCOL: u8 = 5;

/// What the walk knows about one stack or memo slot.
#[derive(Clone, Debug)]
enum Value {
    /// A text string, kept when short.
    Str(Option<Box<str>>),
    /// A global; `allowed` when it is on the allowlist.
    Global { allowed: bool },
    /// Anything else: a number, a container, bytes, the result of a call.
    Other,
}

/// How one pickle ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// It reached `STOP`; the next pickle (if any) starts at `end`.
    Stopped { end: usize },
    /// It broke a rule or a budget.
    Refused(Refusal),
    /// It does not parse as a pickle (before any policy violation mattered).
    Broken(Refusal),
    /// The bytes given end before it does, but the file goes on.
    NeedMore,
}

/// Counters shared by every pickle of a file.
#[derive(Debug, Default)]
pub(super) struct Spent {
    pub(super) opcodes: u64,
}

/// How strictly a walk treats a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// The file is known to be a pickle: the first violation refuses.
    Strict,
    /// The file may be anything: a violation refuses only when the bytes go on
    /// to act on it (a call) or reach `STOP`; a break before that means the
    /// file is not a pickle.
    Sniff,
}

/// Walks one pickle that starts at `start` of `data`. `base` is the offset of
/// `data` in its file (for messages); `total` is how long the data is in
/// full, of which `data` may be only a prefix.
pub(super) fn walk(
    data: &[u8],
    start: usize,
    base: u64,
    total: u64,
    mode: Mode,
    limits: &ScanLimits,
    spent: &mut Spent,
) -> Outcome {
    let mut w = Walker {
        data,
        pos: start,
        base,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        limits,
        mode,
        pending: None,
        total,
    };
    let complete = data.len() as u64 >= total;
    match w.run(start, spent) {
        Ok(end) => match w.pending.take() {
            // Reaching STOP makes a sniffed file a pickle, and its violation stands.
            Some(v) => Outcome::Refused(v),
            None => Outcome::Stopped { end },
        },
        Err(Fail::Eof) if !complete => Outcome::NeedMore,
        Err(Fail::Eof) => Outcome::Broken(Refusal::Truncated {
            offset: base + data.len() as u64,
        }),
        Err(Fail::Policy(r)) => Outcome::Refused(r),
        Err(Fail::Structure(r)) => Outcome::Broken(r),
    }
}

enum Fail {
    /// The bytes ran out inside the pickle.
    Eof,
    /// A rule or budget was broken: refuse whatever the mode.
    Policy(Refusal),
    /// The bytes are not a well-formed pickle.
    Structure(Refusal),
}

struct Walker<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    limits: &'a ScanLimits,
    mode: Mode,
    /// In sniff mode, the first violation seen, held until the bytes either act
    /// on it or turn out not to be a pickle.
    pending: Option<Refusal>,
    /// The length of the data in full (`data` may be a prefix).
    total: u64,
}

type Step<T> = Result<T, Fail>;

impl Walker<'_> {
    fn offset(&self, pos: usize) -> u64 {
        self.base + pos as u64
    }

    fn malformed(&self, at: usize, reason: impl Into<String>) -> Fail {
        Fail::Structure(Refusal::Malformed {
            offset: self.offset(at),
            reason: reason.into(),
        })
    }

    /// A policy violation: refuses now in strict mode; in sniff mode, held.
    fn violation(&mut self, r: Refusal) -> Step<()> {
        match self.mode {
            Mode::Strict => Err(Fail::Policy(r)),
            Mode::Sniff => {
                self.pending.get_or_insert(r);
                Ok(())
            }
        }
    }

    /// A call opcode ran: in sniff mode a held violation is now acted on.
    fn called(&mut self) -> Step<()> {
        match self.pending.take() {
            Some(r) => Err(Fail::Policy(r)),
            None => Ok(()),
        }
    }

    fn take(&mut self, n: u64) -> Step<&[u8]> {
        let rest = (self.data.len() - self.pos) as u64;
        if n > rest {
            // Past the end of the data in full: no more bytes will help.
            if n > self.total.saturating_sub(self.pos as u64) {
                return Err(Fail::Structure(Refusal::Truncated {
                    offset: self.offset(self.pos),
                }));
            }
            return Err(Fail::Eof);
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Step<u64> {
        let b = self.take(n as u64)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)))
    }

    fn line(&mut self) -> Step<&[u8]> {
        let at = self.pos;
        let rest = &self.data[self.pos..];
        match rest.iter().take(MAX_LINE + 1).position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&self.data[at..at + i])
            }
            None if rest.len() > MAX_LINE => {
                Err(self.malformed(at, format!("a line longer than {MAX_LINE} bytes")))
            }
            None => Err(Fail::Eof),
        }
    }

    fn text_line(&mut self, what: &str) -> Step<String> {
        let at = self.pos;
        let line = self.line()?;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.malformed(at, format!("{what} is not UTF-8"))),
        }
    }

    fn push(&mut self, v: Value) -> Step<()> {
        if self.stack.len() >= self.limits.max_stack {
            return Err(Fail::Policy(Refusal::Budget {
                what: "stack entries".into(),
                limit: self.limits.max_stack as u64,
            }));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self, at: usize, op: &str) -> Step<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed(at, format!("{op} on an empty stack")));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed(at, format!("{op} on an empty stack")))
    }

    fn top(&self, at: usize, op: &str) -> Step<&Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed(at, format!("{op} on an empty stack")));
        }
        self.stack
            .last()
            .ok_or_else(|| self.malformed(at, format!("{op} on an empty stack")))
    }

    fn pop_mark(&mut self, at: usize, op: &str) -> Step<()> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.malformed(at, format!("{op} without a MARK")));
        };
        self.stack.truncate(mark);
        Ok(())
    }

    fn memo_index(&self, at: usize, index: u64) -> Step<u32> {
        if index >= u64::from(self.limits.max_memo) {
            let r = Refusal::MemoIndex {
                index,
                offset: self.offset(at),
                reason: format!("beyond the limit of {}", self.limits.max_memo),
            };
            // Text that starts with `r` or `j` reads as a memo opcode with a
            // huge index; in a file not named as a pickle that means "not a
            // pickle" (an unpickler fails on it before running anything).
            return Err(match self.mode {
                Mode::Strict => Fail::Policy(r),
                Mode::Sniff => Fail::Structure(r),
            });
        }
        Ok(index as u32)
    }

    fn put(&mut self, at: usize, index: u64) -> Step<()> {
        let index = self.memo_index(at, index)?;
        let v = self.top(at, "PUT")?.clone();
        if self.memo.len() >= self.limits.max_memo as usize && !self.memo.contains_key(&index) {
            return Err(Fail::Policy(Refusal::Budget {
                what: "memo entries".into(),
                limit: u64::from(self.limits.max_memo),
            }));
        }
        self.memo.insert(index, v);
        Ok(())
    }

    fn get(&mut self, at: usize, index: u64) -> Step<()> {
        let index = self.memo_index(at, index)?;
        match self.memo.get(&index) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => Err(self.malformed(at, format!("memo index {index} was never set"))),
        }
    }

    fn global(&mut self, at: usize, module: &str, name: &str) -> Step<()> {
        let allowed = allow::is_allowed(module, name);
        if !allowed {
            self.violation(Refusal::ForbiddenGlobal {
                module: module.into(),
                name: name.into(),
                offset: self.offset(at),
            })?;
        }
        self.push(Value::Global { allowed })
    }

    /// The callable of `REDUCE`/`NEWOBJ`: only an allowlisted global may be
    /// called, never a value computed by the pickle (a chain of `__reduce__`
    /// results calling each other).
    fn callee(&mut self, at: usize, op: &str, v: &Value) -> Step<()> {
        match v {
            Value::Global { allowed: true } => Ok(()),
            Value::Global { allowed: false } => self.called(),
            _ => {
                self.violation(Refusal::ForbiddenCall {
                    opcode: op.into(),
                    offset: self.offset(at),
                    reason: "the callable is not an allowlisted global".into(),
                })?;
                self.called()
            }
        }
    }

    /// An opcode that imports or calls what the walk cannot check: a violation
    /// acted on at once.
    fn forbidden_call(&mut self, at: usize, name: &str) -> Step<()> {
        self.violation(Refusal::ForbiddenOpcode {
            opcode: name.into(),
            offset: self.offset(at),
        })?;
        self.called()?;
        self.push(Value::Other)
    }

    fn string(&mut self, len: u64, text: bool) -> Step<()> {
        let at = self.pos;
        let b = self.take(len)?;
        if !text {
            return self.push(Value::Other);
        }
        let kept = if b.len() <= MAX_KEPT_STRING {
            match std::str::from_utf8(b) {
                Ok(s) => Some(s.into()),
                Err(_) => return Err(self.malformed(at, "a string is not UTF-8")),
            }
        } else {
            None
        };
        self.push(Value::Str(kept))
    }

    fn run(&mut self, start: usize, spent: &mut Spent) -> Step<usize> {
        loop {
            let at = self.pos;
            spent.opcodes += 1;
            if spent.opcodes > self.limits.max_opcodes {
                return Err(Fail::Policy(Refusal::Budget {
                    what: "opcodes".into(),
                    limit: self.limits.max_opcodes,
                }));
            }
            let op = self.take(1)?[0];
            match op {
                // PROTO: only as a pickle's first opcode, with a known protocol.
                0x80 => {
                    let v = self.take(1)?[0];
                    if at != start {
                        return Err(self.malformed(at, "PROTO after the start of the pickle"));
                    }
                    if v > MAX_PROTOCOL {
                        return Err(self.malformed(at, format!("unknown protocol {v}")));
                    }
                }
                // STOP
                b'.' => {
                    self.pop(at, "STOP")?;
                    return Ok(self.pos);
                }
                // FRAME: a length hint only.
                0x95 => {
                    self.take(8)?;
                }
                // MARK
                b'(' => {
                    if self.marks.len() >= self.limits.max_nesting {
                        return Err(Fail::Policy(Refusal::Budget {
                            what: "nesting (MARK depth)".into(),
                            limit: self.limits.max_nesting as u64,
                        }));
                    }
                    self.marks.push(self.stack.len());
                }
                // POP: the top, or a MARK with nothing above it.
                b'0' => {
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() > floor {
                        self.stack.pop();
                    } else {
                        self.pop_mark(at, "POP")?;
                    }
                }
                // POP_MARK
                b'1' => self.pop_mark(at, "POP_MARK")?,
                // DUP
                b'2' => {
                    let v = self.top(at, "DUP")?.clone();
                    self.push(v)?;
                }
                // Constants.
                b'N' | 0x88 | 0x89 | b')' | b']' | b'}' | 0x8f => self.push(Value::Other)?,
                // BININT, BININT1, BININT2, BINFLOAT
                b'J' => {
                    self.take(4)?;
                    self.push(Value::Other)?;
                }
                b'K' => {
                    self.take(1)?;
                    self.push(Value::Other)?;
                }
                b'M' => {
                    self.take(2)?;
                    self.push(Value::Other)?;
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Other)?;
                }
                // INT, LONG, FLOAT: a decimal line.
                b'I' | b'L' | b'F' => {
                    let line = self.text_line("a number")?;
                    let t = line.trim_end_matches('L');
                    let ok = !t.is_empty()
                        && t.bytes().all(|c| {
                            c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                        });
                    if !ok {
                        return Err(self.malformed(at, format!("{line:?} is not a number")));
                    }
                    self.push(Value::Other)?;
                }
                // LONG1, LONG4
                0x8a => {
                    let n = self.uint(1)?;
                    self.take(n)?;
                    self.push(Value::Other)?;
                }
                0x8b => {
                    let n = self.uint(4)? as u32 as i32;
                    if n < 0 {
                        return Err(self.malformed(at, "LONG4 with a negative length"));
                    }
                    self.take(n as u64)?;
                    self.push(Value::Other)?;
                }
                // STRING, UNICODE: a quoted or raw-unicode-escaped line.
                b'S' | b'V' => {
                    let line = self.text_line("a string")?;
                    let kept = (line.len() <= MAX_KEPT_STRING && op == b'V').then(|| line.into());
                    self.push(Value::Str(kept))?;
                }
                // BINSTRING (signed length), SHORT_BINSTRING
                b'T' => {
                    let n = self.uint(4)? as u32 as i32;
                    if n < 0 {
                        return Err(self.malformed(at, "BINSTRING with a negative length"));
                    }
                    self.string(n as u64, true)?;
                }
                b'U' => {
                    let n = self.uint(1)?;
                    self.string(n, true)?;
                }
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'X' => {
                    let n = self.uint(4)?;
                    self.string(n, true)?;
                }
                0x8c => {
                    let n = self.uint(1)?;
                    self.string(n, true)?;
                }
                0x8d => {
                    let n = self.uint(8)?;
                    self.string(n, true)?;
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
                b'B' => {
                    let n = self.uint(4)?;
                    self.string(n, false)?;
                }
                b'C' => {
                    let n = self.uint(1)?;
                    self.string(n, false)?;
                }
                0x8e | 0x96 => {
                    let n = self.uint(8)?;
                    self.string(n, false)?;
                }
                // Containers from the items above the last MARK.
                b'l' | b't' | b'd' | 0x91 => {
                    self.pop_mark(at, "a container opcode")?;
                    self.push(Value::Other)?;
                }
                // TUPLE1..3
                0x85..=0x87 => {
                    for _ in 0..(op - 0x84) {
                        self.pop(at, "TUPLE1/2/3")?;
                    }
                    self.push(Value::Other)?;
                }
                // APPEND, SETITEM: into the container below.
                b'a' => {
                    self.pop(at, "APPEND")?;
                    self.top(at, "APPEND")?;
                }
                b's' => {
                    self.pop(at, "SETITEM")?;
                    self.pop(at, "SETITEM")?;
                    self.top(at, "SETITEM")?;
                }
                // APPENDS, SETITEMS, ADDITEMS: the items above the MARK, into
                // the container below it.
                b'e' | b'u' | 0x90 => {
                    self.pop_mark(at, "APPENDS/SETITEMS/ADDITEMS")?;
                    self.top(at, "APPENDS/SETITEMS/ADDITEMS")?;
                }
                // Memo: GET, BINGET, LONG_BINGET; PUT, BINPUT, LONG_BINPUT; MEMOIZE.
                b'g' | b'p' => {
                    let line = self.text_line("a memo index")?;
                    let Ok(index) = line.trim().parse::<u64>() else {
                        return Err(self.malformed(at, format!("{line:?} is not a memo index")));
                    };
                    if op == b'g' {
                        self.get(at, index)?;
                    } else {
                        self.put(at, index)?;
                    }
                }
                b'h' => {
                    let i = self.uint(1)?;
                    self.get(at, i)?;
                }
                b'j' => {
                    let i = self.uint(4)?;
                    self.get(at, i)?;
                }
                b'q' => {
                    let i = self.uint(1)?;
                    self.put(at, i)?;
                }
                b'r' => {
                    let i = self.uint(4)?;
                    self.put(at, i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.put(at, i)?;
                }
                // GLOBAL: module and name on two lines.
                b'c' => {
                    let module = self.text_line("a module name")?;
                    let name = self.text_line("a global name")?;
                    self.global(at, &module, &name)?;
                }
                // STACK_GLOBAL: module and name from the stack; both must be
                // strings the walk knows, or the global cannot be checked.
                0x93 => {
                    let name = self.pop(at, "STACK_GLOBAL")?;
                    let module = self.pop(at, "STACK_GLOBAL")?;
                    match (module, name) {
                        (Value::Str(Some(m)), Value::Str(Some(n))) => self.global(at, &m, &n)?,
                        _ => {
                            self.violation(Refusal::ForbiddenCall {
                                opcode: "STACK_GLOBAL".into(),
                                offset: self.offset(at),
                                reason: "its module and name are not strings the scanner can read"
                                    .into(),
                            })?;
                            self.push(Value::Global { allowed: false })?;
                        }
                    }
                }
                // REDUCE: calls the callable below the arguments.
                b'R' => {
                    self.pop(at, "REDUCE")?;
                    let f = self.pop(at, "REDUCE")?;
                    self.callee(at, "REDUCE", &f)?;
                    self.push(Value::Other)?;
                }
                // NEWOBJ, NEWOBJ_EX: `cls.__new__(cls, *args[, **kwargs])`.
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop(at, "NEWOBJ_EX")?;
                    }
                    self.pop(at, "NEWOBJ")?;
                    let cls = self.pop(at, "NEWOBJ")?;
                    self.callee(at, "NEWOBJ", &cls)?;
                    self.push(Value::Other)?;
                }
                // BUILD: `__setstate__` of an object the pickle made; never of a
                // global (that would set attributes on a class or module).
                b'b' => {
                    self.pop(at, "BUILD")?;
                    if !matches!(self.top(at, "BUILD")?, Value::Other) {
                        self.violation(Refusal::ForbiddenCall {
                            opcode: "BUILD".into(),
                            offset: self.offset(at),
                            reason: "its target is not an object the pickle built".into(),
                        })?;
                        self.called()?;
                    }
                }
                // BINPERSID: a reference the loader resolves (torch: a storage).
                b'Q' => {
                    self.pop(at, "BINPERSID")?;
                    self.push(Value::Other)?;
                }
                // Opcodes that import or call without the walk being able to
                // check what (INST, OBJ, EXT1/2/4), or that need what the
                // loader supplies (PERSID as text, NEXT_BUFFER,
                // READONLY_BUFFER). The weights-only unpickler refuses them
                // too. Their operands are read first, so in sniff mode text
                // that merely starts with such a byte is not taken for one.
                b'i' => {
                    self.text_line("a module name")?;
                    self.text_line("a class name")?;
                    self.pop_mark(at, "INST")?;
                    self.forbidden_call(at, "INST")?;
                }
                b'o' => {
                    let mark = self.marks.last().copied();
                    if mark.is_none_or(|m| self.stack.len() <= m) {
                        return Err(self.malformed(at, "OBJ without a class above its MARK"));
                    }
                    self.pop_mark(at, "OBJ")?;
                    self.forbidden_call(at, "OBJ")?;
                }
                0x82..=0x84 => {
                    self.take(1 << (op - 0x82))?;
                    let name = ["EXT1", "EXT2", "EXT4"][usize::from(op - 0x82)];
                    self.forbidden_call(at, name)?;
                }
                b'P' | 0x97 | 0x98 => {
                    let name = match op {
                        b'P' => {
                            self.text_line("a persistent id")?;
                            "PERSID"
                        }
                        0x97 => "NEXT_BUFFER",
                        _ => {
                            self.pop(at, "READONLY_BUFFER")?;
                            "READONLY_BUFFER"
                        }
                    };
                    self.violation(Refusal::ForbiddenOpcode {
                        opcode: name.into(),
                        offset: self.offset(at),
                    })?;
                    self.push(Value::Other)?;
                }
                other => {
                    return Err(Fail::Structure(Refusal::UnknownOpcode {
                        byte: other,
                        offset: self.offset(at),
                    }));
                }
            }
        }
    }
}
