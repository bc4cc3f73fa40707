//! What a model file is, and whether loading it can run code: a scanner that
//! reads bytes and never executes, imports or decompresses anything.
//!
//! [`scan`] classifies one file as [`FileFormat`] and, for pickle-based files
//! (`.bin`, `.pt`, `.pth`, `.pkl`, `.ckpt`, PyTorch's ZIP archives, and any
//! file that parses as a pickle whatever its name), walks every opcode of every
//! pickle in it. A pickle passes only if every global it names is on the
//! allowlist of PyTorch's weights-only unpickler (`torch.load(weights_only=True)`:
//! `collections.OrderedDict`, the `torch._utils._rebuild_*` functions, storage and
//! dtype classes, …) and every call it makes calls such a global. Anything else is
//! a [`Refusal`] naming the reason and where: a forbidden global, an opcode that
//! imports or calls what cannot be checked (`INST`, `OBJ`, `EXT*`), a malformed
//! or truncated stream, a memo index past its limit, a budget exceeded, a hostile
//! ZIP. Malformed input is a refusal, never a panic.
//!
//! This is an allowlist of globals, not a sandbox: a pass says what the file can
//! make a standard unpickler import and call, nothing about the tensors' values
//! or what a program does with them. `docs/design.md` says what a verdict proves.
//!
//! The scanner does no I/O of its own. [`scan`] takes the whole file; a
//! [`Scanner`] asks for the byte ranges it needs ([`ScanStep::Need`]) so a
//! caller can feed it from anywhere (the registry reads ranges of stored blobs)
//! without reading a large checkpoint whole.
//!
//! ```
//! use modelreg::scan::{FileFormat, Refusal, ScanLimits, scan};
//! let limits = ScanLimits::default();
//! // pickle.dumps(os.system) at protocol 2, by hand: PROTO 2, GLOBAL "posix system", STOP.
//! let evil = b"\x80\x02cposix\nsystem\nq\x00.";
//! let v = scan("model.pkl", evil, &limits);
//! assert_eq!(v.format, FileFormat::Pickle);
//! assert!(matches!(&v.refused, Some(Refusal::ForbiddenGlobal { module, name, .. }) if module == "posix" && name == "system"));
//! // Plain text is data; a safetensors header is safetensors.
//! assert_eq!(scan("config.json", br#"{"hidden": 768}"#, &limits).format, FileFormat::Data);
//! let mut st = 2u64.to_le_bytes().to_vec();
//! st.extend_from_slice(b"{}");
//! let v = scan("model.safetensors", &st, &limits);
//! assert_eq!((v.format, v.refused), (FileFormat::Safetensors, None));
//! ```

mod allow;
mod pickle;
mod zip;

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use pickle::{Mode, Outcome, Spent};

/// The scanner's version, recorded with every verdict: it changes when the
/// allowlist or the rules change, so a verdict says which rules it was made by.
pub const SCANNER_VERSION: u32 = 1;

/// How much a scan may read and keep. Every number bounds work or memory that
/// hostile input could otherwise make unbounded; exceeding one is
/// [`Refusal::Budget`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanLimits {
    /// Bytes of pickle data read from one file (all its pickles and ZIP
    /// members together). Default 256 MiB.
    pub max_pickle_bytes: u64,
    /// Opcodes walked in one file. Default 50 million.
    pub max_opcodes: u64,
    /// Entries on the walk's stack at once. Default 1 million.
    pub max_stack: usize,
    /// Open `MARK`s at once (how deep containers nest). Default 512.
    pub max_nesting: usize,
    /// Memo entries, and one more than the largest memo index accepted: an
    /// unpickler that sizes its memo by the index would allocate that much.
    /// Default 1,048,576.
    pub max_memo: u32,
    /// Members of one ZIP archive. Default 1 million.
    pub max_zip_members: u64,
    /// Bytes of one ZIP archive's central directory. Default 128 MiB.
    pub max_zip_directory_bytes: u64,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_pickle_bytes: 256 << 20,
            max_opcodes: 50_000_000,
            max_stack: 1 << 20,
            max_nesting: 512,
            max_memo: 1 << 20,
            max_zip_members: 1_000_000,
            max_zip_directory_bytes: 128 << 20,
        }
    }
}

/// What kind of file the scanner found. Serialized in snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum FileFormat {
    /// A safetensors file (an 8-byte header length, a JSON header, raw tensors).
    Safetensors,
    /// A GGUF file (magic `GGUF`).
    Gguf,
    /// An ONNX model (`.onnx`, protobuf).
    Onnx,
    /// One or more pickles: a `.pkl`, a legacy (pre-1.6) `torch.save` file, or
    /// any file that parses as a pickle.
    Pickle,
    /// A ZIP archive with pickle members: what `torch.save` writes since 1.6
    /// (`<name>/data.pkl`, `<name>/data/0`, …).
    TorchZip,
    /// A ZIP archive without pickle members (`.npz`, …).
    Zip,
    /// Anything else: text, JSON, a tokenizer, raw bytes. Nothing a standard
    /// loader executes.
    Data,
}

impl FileFormat {
    /// Every format.
    pub const ALL: [FileFormat; 7] = [
        FileFormat::Safetensors,
        FileFormat::Gguf,
        FileFormat::Onnx,
        FileFormat::Pickle,
        FileFormat::TorchZip,
        FileFormat::Zip,
        FileFormat::Data,
    ];

    /// The format's name as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            FileFormat::Safetensors => "safetensors",
            FileFormat::Gguf => "gguf",
            FileFormat::Onnx => "onnx",
            FileFormat::Pickle => "pickle",
            FileFormat::TorchZip => "torch_zip",
            FileFormat::Zip => "zip",
            FileFormat::Data => "data",
        }
    }

    /// Whether loading it with a standard loader goes through pickle.
    pub const fn is_pickle(self) -> bool {
        matches!(self, FileFormat::Pickle | FileFormat::TorchZip)
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for FileFormat {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        FileFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                crate::Error::invalid_name(
                    "file format",
                    s,
                    "expected safetensors, gguf, onnx, pickle, torch_zip, zip or data",
                )
            })
    }
}

/// Why a file was refused. Offsets are bytes from the start of the file, or of
/// the ZIP member named in [`FileVerdict::member`]. Serialized with a `kind`
/// field in snake case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum Refusal {
    /// A pickle names a global that is not on the allowlist.
    ForbiddenGlobal {
        /// Its module.
        module: String,
        /// Its name.
        name: String,
        /// Where.
        offset: u64,
    },
    /// An opcode that imports or calls what the scanner cannot check (`INST`,
    /// `OBJ`, `EXT1/2/4`) or needs data only the loader has (`PERSID`,
    /// `NEXT_BUFFER`, `READONLY_BUFFER`).
    ForbiddenOpcode {
        /// The opcode's name.
        opcode: String,
        /// Where.
        offset: u64,
    },
    /// A call (`REDUCE`, `NEWOBJ`, `BUILD`, `STACK_GLOBAL`) on something other
    /// than an allowlisted global: a chain of computed callables.
    ForbiddenCall {
        /// The opcode.
        opcode: String,
        /// Where.
        offset: u64,
        /// What is wrong with its target.
        reason: String,
    },
    /// A byte that is no pickle opcode.
    UnknownOpcode {
        /// The byte.
        byte: u8,
        /// Where.
        offset: u64,
    },
    /// The data ends inside a pickle.
    Truncated {
        /// Where it ends.
        offset: u64,
    },
    /// A memo index past the limit, or read before it was written.
    MemoIndex {
        /// The index.
        index: u64,
        /// Where.
        offset: u64,
        /// Which.
        reason: String,
    },
    /// The bytes are not well formed: a stack underflow, a bad number, a
    /// `PROTO` in the middle of a pickle, a string that is not UTF-8.
    Malformed {
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
    /// A budget of [`ScanLimits`] was exceeded.
    Budget {
        /// Which.
        what: String,
        /// Its limit.
        limit: u64,
    },
    /// A ZIP archive the scanner will not vouch for: malformed, hostile member
    /// names, compressed or encrypted pickle members, TorchScript code.
    Archive {
        /// Why.
        reason: String,
    },
    /// The file's name claims a format its bytes do not have (a `.safetensors`
    /// without a valid header, a `.gguf` without the magic).
    NotFormat {
        /// The claimed format.
        format: FileFormat,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ForbiddenGlobal {
                module,
                name,
                offset,
            } => write!(
                f,
                "global {module}.{name} at byte {offset} is not on the allowlist"
            ),
            Refusal::ForbiddenOpcode { opcode, offset } => {
                write!(f, "opcode {opcode} at byte {offset} is not allowed")
            }
            Refusal::ForbiddenCall {
                opcode,
                offset,
                reason,
            } => write!(f, "{opcode} at byte {offset}: {reason}"),
            Refusal::UnknownOpcode { byte, offset } => {
                write!(f, "byte 0x{byte:02x} at {offset} is not a pickle opcode")
            }
            Refusal::Truncated { offset } => write!(f, "the pickle is cut off at byte {offset}"),
            Refusal::MemoIndex {
                index,
                offset,
                reason,
            } => write!(f, "memo index {index} at byte {offset}: {reason}"),
            Refusal::Malformed { offset, reason } => {
                write!(f, "malformed at byte {offset}: {reason}")
            }
            Refusal::Budget { what, limit } => {
                write!(f, "more {what} than the scanner's limit of {limit}")
            }
            Refusal::Archive { reason } => write!(f, "ZIP archive: {reason}"),
            Refusal::NotFormat { format, reason } => {
                write!(f, "not a valid {format} file: {reason}")
            }
        }
    }
}

/// The scanner's verdict on one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct FileVerdict {
    /// The file's path in its artifact.
    pub path: String,
    /// What it is.
    pub format: FileFormat,
    /// Why it was refused; absent when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// The ZIP member the refusal is about, for an archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

impl FileVerdict {
    /// Whether the file passed.
    pub fn passed(&self) -> bool {
        self.refused.is_none()
    }
}

impl fmt::Display for FileVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path, self.format)?;
        if let Some(r) = &self.refused {
            match &self.member {
                Some(m) => write!(f, ": member {m}: {r}")?,
                None => write!(f, ": {r}")?,
            }
        }
        Ok(())
    }
}

/// Extensions whose files are loaded with pickle: each must parse as one.
const PICKLE_EXTENSIONS: &[&str] = &["bin", "pt", "pth", "pkl", "pickle", "ckpt", "joblib"];
/// How much of a file is read first to walk its pickles (or see whether it
/// is one at all); more is read, 16 times as much each time, only while a
/// pickle goes on past what was read.
const SNIFF_BYTES: u64 = 64 * 1024;
/// The largest safetensors header (the format's own limit is 100 MB).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;
/// `torch.serialization.MAGIC_NUMBER` as the first pickle of a legacy
/// `torch.save` file pickles it: PROTO 2, LONG1 of 10 bytes, STOP.
const LEGACY_TORCH_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
];
/// A legacy `torch.save` file holds five pickles (magic number, protocol
/// version, system info, the object, the storage keys), then raw storages.
const LEGACY_TORCH_PICKLES: u32 = 5;

/// Scans a whole file held in memory. See the [module](self) documentation.
pub fn scan(path: &str, bytes: &[u8], limits: &ScanLimits) -> FileVerdict {
    let mut s = Scanner::new(path, bytes.len() as u64, limits.clone());
    s.supply(0, Bytes::copy_from_slice(bytes));
    match s.step() {
        ScanStep::Done(v) => v,
        // Unreachable: every range lies within the bytes supplied. Refuse
        // rather than panic should that ever change.
        ScanStep::Need(r) => FileVerdict {
            path: path.into(),
            format: FileFormat::Data,
            refused: Some(Refusal::Malformed {
                offset: r.start,
                reason: "the scanner asked for bytes it was given".into(),
            }),
            member: None,
        },
    }
}

/// What a [`Scanner`] wants next.
#[derive(Debug)]
pub enum ScanStep {
    /// These bytes of the file ([`Scanner::supply`] them, then step again).
    Need(Range<u64>),
    /// The verdict.
    Done(FileVerdict),
}

/// A scan of a file that is read in ranges, as the scan asks for them.
///
/// Each [`step`](Self::step) starts the scan over from the bytes supplied so
/// far, so it is a pure function of them; a scan needs a few ranges (the head,
/// a ZIP's directory, its pickle members), not one per opcode.
///
/// ```
/// use modelreg::scan::{FileFormat, ScanLimits, ScanStep, Scanner};
/// let file = b"\x80\x02}q\x00.".to_vec(); // pickle.dumps({}, 2)
/// let mut s = Scanner::new("weights.pt", file.len() as u64, ScanLimits::default());
/// let verdict = loop {
///     match s.step() {
///         ScanStep::Need(r) => s.supply(r.start, file[r.start as usize..r.end as usize].to_vec().into()),
///         ScanStep::Done(v) => break v,
///     }
/// };
/// assert_eq!((verdict.format, verdict.passed()), (FileFormat::Pickle, true));
/// ```
#[derive(Debug)]
pub struct Scanner {
    path: String,
    len: u64,
    limits: ScanLimits,
    chunks: Vec<(u64, Bytes)>,
}

impl Scanner {
    /// A scan of the file at `path` (its name decides which formats it may
    /// claim), `len` bytes long.
    pub fn new(path: &str, len: u64, limits: ScanLimits) -> Scanner {
        Scanner {
            path: path.into(),
            len,
            limits,
            chunks: Vec::new(),
        }
    }

    /// Gives the scan the file's bytes starting at `offset`.
    pub fn supply(&mut self, offset: u64, bytes: Bytes) {
        self.chunks.push((offset, bytes));
    }

    /// Runs the scan over what it has: the next range it needs, or the verdict.
    pub fn step(&self) -> ScanStep {
        let src = Src {
            len: self.len,
            chunks: &self.chunks,
        };
        match classify(&self.path, &src, &self.limits) {
            Ok(v) => ScanStep::Done(v),
            Err(Need(r)) => ScanStep::Need(r),
        }
    }
}

/// A range the scan must have before it can go on.
struct Need(Range<u64>);

/// The bytes supplied so far.
struct Src<'a> {
    len: u64,
    chunks: &'a [(u64, Bytes)],
}

impl Src<'_> {
    /// `n` bytes at `offset`, clamped to the file's end.
    fn get(&self, offset: u64, n: u64) -> Result<&[u8], Need> {
        let start = offset.min(self.len);
        let end = offset.saturating_add(n).min(self.len);
        if start == end {
            return Ok(&[]);
        }
        for (at, b) in self.chunks {
            let chunk_end = at + b.len() as u64;
            if *at <= start && end <= chunk_end {
                return Ok(&b[(start - at) as usize..(end - at) as usize]);
            }
        }
        Err(Need(start..end))
    }
}

fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn classify(path: &str, src: &Src<'_>, limits: &ScanLimits) -> Result<FileVerdict, Need> {
    let verdict = |format, refused: Option<Refusal>| FileVerdict {
        path: path.into(),
        format,
        refused,
        member: None,
    };
    let head = src.get(0, 8)?;
    // torch.load and zipfile take a file for a ZIP by its first bytes.
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return zip::scan_archive(path, src, limits);
    }
    let ext = extension(path);
    let named_pickle = PICKLE_EXTENSIONS.contains(&ext.as_str());
    match pickles(
        src,
        limits,
        if named_pickle {
            Mode::Strict
        } else {
            Mode::Sniff
        },
    )? {
        Stream::Pickle(refused) => return Ok(verdict(FileFormat::Pickle, refused)),
        Stream::NotPickle(r) if named_pickle => {
            return Ok(verdict(FileFormat::Pickle, Some(r)));
        }
        Stream::NotPickle(_) => {}
    }
    if head.starts_with(b"GGUF") {
        return Ok(verdict(FileFormat::Gguf, None));
    }
    Ok(match ext.as_str() {
        "safetensors" => verdict(FileFormat::Safetensors, safetensors(src)?.err()),
        "gguf" => verdict(
            FileFormat::Gguf,
            Some(Refusal::NotFormat {
                format: FileFormat::Gguf,
                reason: "it does not start with the magic GGUF".into(),
            }),
        ),
        "onnx" => verdict(FileFormat::Onnx, None),
        _ => verdict(FileFormat::Data, None),
    })
}

/// Checks a safetensors header: its length fits the file and the format's
/// limit, and it is a JSON object.
fn safetensors(src: &Src<'_>) -> Result<Result<(), Refusal>, Need> {
    let bad = |reason: String| {
        Ok(Err(Refusal::NotFormat {
            format: FileFormat::Safetensors,
            reason,
        }))
    };
    let head = src.get(0, 8)?;
    let Ok(n) = <[u8; 8]>::try_from(head).map(u64::from_le_bytes) else {
        return bad(format!("{} bytes, shorter than its header length", src.len));
    };
    if n > MAX_SAFETENSORS_HEADER || n > src.len - 8 {
        return bad(format!(
            "a header of {n} bytes in a file of {} bytes",
            src.len
        ));
    }
    let header = src.get(8, n)?;
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(header) {
        Ok(_) => Ok(Ok(())),
        Err(e) => bad(format!("the header is not a JSON object: {e}")),
    }
}

/// What a run of pickles turned out to be.
enum Stream {
    /// Pickles, refused or not.
    Pickle(Option<Refusal>),
    /// The bytes are not a pickle; why.
    NotPickle(Refusal),
}

/// Walks the pickles at the start of the file, one after the other, as
/// `pickle.load` called repeatedly (or `torch.load` on a legacy file) would
/// read them.
fn pickles(src: &Src<'_>, limits: &ScanLimits, mode: Mode) -> Result<Stream, Need> {
    // Pickles are usually small beside the file (a legacy torch file is a few
    // KiB of pickles, then the tensors): read a prefix, and more only when a
    // pickle goes on past it.
    let want = src.len.min(limits.max_pickle_bytes);
    let mut have = want.min(SNIFF_BYTES);
    loop {
        let data = src.get(0, have)?;
        match stream(data, 0, src.len, mode, limits) {
            Walked::Done(s) => return Ok(s),
            Walked::NeedMore if have < want => have = want.min(have.saturating_mul(16)),
            Walked::NeedMore => {
                return Ok(Stream::Pickle(Some(Refusal::Budget {
                    what: "bytes of pickle data".into(),
                    limit: limits.max_pickle_bytes,
                })));
            }
        }
    }
}

enum Walked {
    Done(Stream),
    NeedMore,
}

/// Walks consecutive pickles in `data` (which starts at `base` of the file or
/// member, `total` bytes long in full). The first decides whether this is a pickle at all (in `mode`); a
/// later one that does not parse ends the pickles (the rest is data no
/// unpickler reads as a pickle), but one that parses far enough to name a
/// forbidden global and act on it, or to reach `STOP`, refuses.
fn stream(data: &[u8], base: u64, total: u64, mode: Mode, limits: &ScanLimits) -> Walked {
    let complete = data.len() as u64 >= total;
    let mut spent = Spent::default();
    let mut pos = 0;
    let mut count = 0u32;
    let mut budget = u32::MAX;
    while count < budget {
        if count > 0 && pos == data.len() {
            if complete {
                break;
            }
            return Walked::NeedMore;
        }
        let m = if count == 0 { mode } else { Mode::Sniff };
        match pickle::walk(data, pos, base, total, m, limits, &mut spent) {
            Outcome::Stopped { end } => {
                if count == 0 && data[..end] == LEGACY_TORCH_MAGIC {
                    budget = LEGACY_TORCH_PICKLES;
                }
                pos = end;
                count += 1;
            }
            Outcome::Refused(r) => return Walked::Done(Stream::Pickle(Some(r))),
            Outcome::Broken(r) if count == 0 => return Walked::Done(Stream::NotPickle(r)),
            Outcome::Broken(_) => break,
            Outcome::NeedMore => return Walked::NeedMore,
        }
    }
    Walked::Done(Stream::Pickle(None))
}

#[cfg(test)]
mod tests;
