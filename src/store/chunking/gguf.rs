//! The tensor extents of a GGUF file (versions 2 and 3), within budgets.
//!
//! Layout (little-endian): magic `GGUF`, `u32` version, `u64` tensor count,
//! `u64` metadata count, the metadata (key string, `u32` value type, value),
//! the tensor infos (name string, `u32` dimension count, `u64` dimensions,
//! `u32` type, `u64` offset relative to the data region), padding to the
//! alignment (`general.alignment`, default 32), then the data. A string is a
//! `u64` length and that many bytes.
//!
//! A tensor's extent is taken from its offset to the next tensor's (the last
//! one's to the end of the file), so the chunker needs no table of the
//! quantization types' sizes; the alignment padding after a tensor belongs to
//! its last block.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

use super::{MAX_GGUF_ARRAY, MAX_GGUF_KV, MAX_HEADER, MAX_TENSORS};

/// The deepest nesting of metadata arrays accepted.
const MAX_DEPTH: u32 = 4;
/// The most dimensions a tensor may have (ggml has 4).
const MAX_DIMS: u32 = 8;
/// The largest alignment accepted.
const MAX_ALIGNMENT: u64 = 1 << 20;
/// Value type codes.
const TYPE_U32: u32 = 4;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// Why parsing stopped.
enum Stop {
    /// Not a GGUF header within budget.
    Bad,
    /// Reading failed.
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        // A header cut short by the end of the file is malformed, not a failure.
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Stop::Bad
        } else {
            Stop::Io(e)
        }
    }
}

/// A reader that counts what it consumed and refuses to go past the header
/// budget.
struct Header<R> {
    inner: BufReader<R>,
    used: u64,
}

impl<R: Read> Header<R> {
    fn take(&mut self, n: u64) -> Result<(), Stop> {
        if self.used + n > MAX_HEADER {
            return Err(Stop::Bad);
        }
        self.used += n;
        Ok(())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        self.take(N as u64)?;
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn skip(&mut self, n: u64) -> Result<(), Stop> {
        self.take(n)?;
        let skipped = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        if skipped != n {
            return Err(Stop::Bad);
        }
        Ok(())
    }

    /// A string's bytes, kept only if it is at most `keep` long.
    fn string(&mut self, keep: usize) -> Result<Option<Vec<u8>>, Stop> {
        let n = self.u64()?;
        if n > keep as u64 {
            self.skip(n)?;
            return Ok(None);
        }
        self.take(n)?;
        let mut b = vec![0u8; n as usize];
        self.inner.read_exact(&mut b)?;
        Ok(Some(b))
    }

    /// Skips a value of type `ty`.
    fn skip_value(&mut self, ty: u32, depth: u32) -> Result<(), Stop> {
        match ty {
            TYPE_STRING => {
                let n = self.u64()?;
                self.skip(n)
            }
            TYPE_ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(Stop::Bad);
                }
                let elem = self.u32()?;
                let count = self.u64()?;
                if count > MAX_GGUF_ARRAY {
                    return Err(Stop::Bad);
                }
                match fixed_size(elem) {
                    Some(size) => self.skip(count * size),
                    None => (0..count).try_for_each(|_| self.skip_value(elem, depth + 1)),
                }
            }
            _ => self.skip(fixed_size(ty).ok_or(Stop::Bad)?),
        }
    }
}

/// The size of a fixed-size value type; `None` for strings, arrays and
/// unknown types.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

/// The extents `(begin, end)` of the tensors of the GGUF file open as `file`
/// (of length `len`), in absolute offsets, sorted and non-overlapping; `None`
/// if it is not a GGUF v2/v3 header within budget. Errors only when reading
/// fails.
pub(super) fn tensor_extents<R: Read + Seek>(
    file: &mut R,
    len: u64,
) -> io::Result<Option<Vec<(u64, u64)>>> {
    file.seek(SeekFrom::Start(0))?;
    match parse(file, len) {
        Ok(t) => Ok(Some(t)),
        Err(Stop::Bad) => Ok(None),
        Err(Stop::Io(e)) => Err(e),
    }
}

fn parse<R: Read>(file: R, len: u64) -> Result<Vec<(u64, u64)>, Stop> {
    let mut h = Header {
        inner: BufReader::with_capacity(64 << 10, file),
        used: 0,
    };
    if &h.bytes::<4>()? != b"GGUF" || !matches!(h.u32()?, 2 | 3) {
        return Err(Stop::Bad);
    }
    let tensor_count = h.u64()?;
    let kv_count = h.u64()?;
    if tensor_count > MAX_TENSORS as u64 || kv_count > MAX_GGUF_KV {
        return Err(Stop::Bad);
    }
    let mut alignment = 32u64;
    for _ in 0..kv_count {
        let key = h.string(64)?;
        let ty = h.u32()?;
        if key.as_deref() == Some(b"general.alignment".as_slice()) {
            if ty != TYPE_U32 {
                return Err(Stop::Bad);
            }
            alignment = u64::from(h.u32()?);
            if !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
                return Err(Stop::Bad);
            }
        } else {
            h.skip_value(ty, 0)?;
        }
    }
    let mut offsets = Vec::with_capacity(tensor_count.min(4096) as usize);
    for _ in 0..tensor_count {
        let name_len = h.u64()?;
        h.skip(name_len)?;
        let dims = h.u32()?;
        if dims > MAX_DIMS {
            return Err(Stop::Bad);
        }
        h.skip(u64::from(dims) * 8 + 4)?;
        let offset = h.u64()?;
        if offset % alignment != 0 {
            return Err(Stop::Bad);
        }
        offsets.push(offset);
    }
    let data_start = h.used.div_ceil(alignment) * alignment;
    if data_start > len {
        return Err(Stop::Bad);
    }
    offsets.sort_unstable();
    let mut extents = Vec::with_capacity(offsets.len());
    for (i, &off) in offsets.iter().enumerate() {
        let begin = data_start.checked_add(off).ok_or(Stop::Bad)?;
        let end = match offsets.get(i + 1) {
            Some(&next) => data_start.checked_add(next).ok_or(Stop::Bad)?,
            None => len,
        };
        if begin > len || end > len {
            return Err(Stop::Bad);
        }
        extents.push((begin, end));
    }
    Ok(extents)
}
