//! Where a file is cut into chunks for chunk-level deduplication.
//!
//! A fine-tune that changes a tenth of a checkpoint should cost a tenth of it.
//! The store cuts each file into chunks, names each chunk by the BLAKE3 digest
//! of its bytes, and keeps each distinct chunk once. This module decides where
//! the cuts go; it writes nothing. A file's identity does not change: it is
//! still the BLAKE3 digest of all its bytes (what `b3sum` prints), and chunks
//! are a storage detail below it.
//!
//! Cuts follow how the file changes:
//!
//! - **safetensors** (an 8-byte little-endian header length, a JSON header
//!   whose entries give each tensor's `data_offsets` relative to the end of
//!   the header, then the tensors' bytes): the header region is cut on its own,
//!   and each tensor is cut into fixed blocks of [`ChunkParams::tensor_block`]
//!   bytes counted **from the tensor's own start**. A header that changes
//!   (different `__metadata__`, so every offset in the file shifts by a few
//!   bytes) changes no tensor chunk; rows appended to an embedding keep every
//!   whole block of its old rows; a tensor that changed costs its own size.
//! - **GGUF** (versions 2 and 3): the same, with each tensor's extent taken
//!   from the tensor infos and the file's alignment.
//! - **everything else**, and any safetensors or GGUF file whose header is
//!   malformed or exceeds the [budgets](#budgets): content-defined chunking
//!   (FastCDC 2020 with normalized chunking, the `fastcdc` crate's `v2020`
//!   cut function), so an insertion or a rewrite moves only the cuts near it.
//!   Bytes around and between tensors (a header, padding, a trailer) are
//!   content-defined too.
//!
//! [`chunk_file`] returns the chunks; [`chunk_file_with`] also hands each
//! chunk's bytes to a callback as they stream past, for a writer that stores
//! them in the same read. Both read the file once, front to back, through one
//! reused buffer: memory is bounded (a few MiB plus the list of chunks)
//! whatever the file size, and the file is never memory-mapped.
//!
//! ```
//! # fn main() -> modelreg::Result<()> {
//! use modelreg::store::chunking::{chunk_file, ChunkParams};
//! use modelreg::Digest;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("weights.bin");
//! let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
//! std::fs::write(&path, &bytes).unwrap();
//!
//! let chunks = chunk_file(&path, &ChunkParams::default())?;
//! // The chunks cover the file contiguously, in order, each named by its bytes.
//! let mut next = 0;
//! for c in &chunks {
//!     assert_eq!(c.offset, next);
//!     let range = c.offset as usize..(c.offset + u64::from(c.len)) as usize;
//!     assert_eq!(c.hash, Digest::of(&bytes[range]));
//!     next += u64::from(c.len);
//! }
//! assert_eq!(next, bytes.len() as u64);
//! # Ok(()) }
//! ```
//!
//! To estimate what a set of files would share, chunk each and count the
//! bytes of distinct chunk digests (`benches/dedup.rs` does this for the
//! scenarios measured in `docs/performance.md`).
//!
//! # Budgets
//!
//! A header is parsed only within budgets, and anything outside them makes
//! the whole file fall back to content-defined chunking (never an error,
//! never a panic, never memory beyond the budget):
//!
//! - safetensors: header length at most [`MAX_HEADER`] bytes and inside the
//!   file; valid JSON (nesting is limited by the JSON parser) of an object
//!   whose entries other than `__metadata__` are objects with `data_offsets`
//!   `[begin, end]`, `begin <= end`, inside the data region, and a
//!   `__metadata__`, if any, that maps strings to strings; tensors must not
//!   overlap; at most [`MAX_TENSORS`] tensors.
//! - GGUF: version 2 or 3; at most [`MAX_TENSORS`] tensors and
//!   [`MAX_GGUF_KV`] metadata entries; strings at most [`MAX_HEADER`] bytes,
//!   arrays at most [`MAX_GGUF_ARRAY`] elements, nesting at most 4 arrays deep,
//!   the whole header (metadata and tensor infos) within [`MAX_HEADER`] bytes;
//!   an alignment that is a power of two up to 1 MiB; tensor offsets aligned,
//!   distinct and inside the file.

mod engine;
mod gguf;
mod safetensors;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The largest header (safetensors JSON, or GGUF metadata and tensor infos)
/// the chunker parses: 16 MiB. The largest published checkpoints have headers
/// of well under 1 MiB; a longer one is treated as opaque.
pub const MAX_HEADER: u64 = 16 << 20;

/// The most tensors one file may describe before it is treated as opaque
/// (262,144; a shard of the largest published checkpoints has a few thousand).
pub const MAX_TENSORS: usize = 1 << 18;

/// The most metadata entries a GGUF header may have before the file is
/// treated as opaque.
pub const MAX_GGUF_KV: u64 = 1 << 16;

/// The most elements one GGUF metadata array may have before the file is
/// treated as opaque (a tokenizer's vocabulary is an array of ~10⁵ strings).
pub const MAX_GGUF_ARRAY: u64 = 1 << 22;

/// One chunk of a file: a byte range and the BLAKE3 digest of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Where the chunk starts in the file.
    pub offset: u64,
    /// Its length in bytes (never 0; at most 16 MiB, see [`ChunkParams`]).
    pub len: u32,
    /// BLAKE3 of the chunk's bytes: its name in a chunk store.
    pub hash: Digest,
}

impl Chunk {
    /// The offset just past the chunk.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// How a file was cut (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// A safetensors file: header chunks, then fixed blocks per tensor.
    Safetensors,
    /// A GGUF file (v2 or v3): header chunks, then fixed blocks per tensor.
    Gguf,
    /// Anything else, including a safetensors or GGUF file whose header was
    /// malformed or over budget: content-defined chunks throughout.
    Opaque,
}

/// Chunk sizes.
///
/// Invariants, checked by [`ChunkParams::new`]:
/// - `tensor_block` is 64 B to 16 MiB;
/// - content-defined sizes are even, `cdc_min <= cdc_avg <= cdc_max`, with
///   `cdc_min` 64 B to 1 MiB, `cdc_avg` 256 B to 4 MiB and `cdc_max` 1 KiB to
///   16 MiB (the `fastcdc` crate's ranges).
///
/// The default — 1 MiB tensor blocks, content-defined chunks of
/// 16 KiB / 64 KiB / 256 KiB (min / average / max) — is chosen by the
/// measurements in `docs/performance.md` ("Chunk-level deduplication"): on
/// the fine-tune scenarios the store is at the ideal at tensor granularity
/// (or below it, for appended rows) at every block size tried, so tensor
/// blocks are as large as keep the chunk index and the reads few; for opaque
/// files a smaller average keeps more of a scattered rewrite shared (a chunk
/// costs its whole size when any byte of it changes), as Xet's 64 KiB does.
///
/// ```
/// use modelreg::store::chunking::ChunkParams;
/// let p = ChunkParams::new(256 << 10, 16 << 10, 64 << 10, 256 << 10).unwrap();
/// assert_eq!(p.tensor_block(), 256 << 10);
/// // Rejected: min above average, an odd size, a block over 16 MiB.
/// assert!(ChunkParams::new(1 << 20, 128 << 10, 64 << 10, 256 << 10).is_err());
/// assert!(ChunkParams::new(1 << 20, 16 << 10, (64 << 10) + 1, 256 << 10).is_err());
/// assert!(ChunkParams::new(32 << 20, 16 << 10, 64 << 10, 256 << 10).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    tensor_block: u32,
    cdc_min: u32,
    cdc_avg: u32,
    cdc_max: u32,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            tensor_block: 1 << 20,
            cdc_min: 16 << 10,
            cdc_avg: 64 << 10,
            cdc_max: 256 << 10,
        }
    }
}

impl ChunkParams {
    /// Tensor blocks of `tensor_block` bytes and content-defined chunks of at
    /// least `cdc_min`, on average about `cdc_avg` and at most `cdc_max`
    /// bytes; [`Error::InvalidInput`] outside the ranges above.
    pub fn new(tensor_block: u32, cdc_min: u32, cdc_avg: u32, cdc_max: u32) -> Result<Self> {
        let bad = |reason: String| {
            Err(Error::InvalidInput {
                what: "chunk parameters".into(),
                reason,
            })
        };
        if !(64..=16 << 20).contains(&tensor_block) {
            return bad(format!(
                "tensor block {tensor_block} is outside 64 B to 16 MiB"
            ));
        }
        if !cdc_min.is_multiple_of(2) || !cdc_avg.is_multiple_of(2) || !cdc_max.is_multiple_of(2) {
            return bad("content-defined sizes must be even".into());
        }
        if !(cdc_min <= cdc_avg && cdc_avg <= cdc_max) {
            return bad(format!(
                "content-defined sizes must satisfy min <= avg <= max, got {cdc_min} / {cdc_avg} / {cdc_max}"
            ));
        }
        let ranges = [
            (
                "min",
                cdc_min,
                fastcdc::v2020::MINIMUM_MIN,
                fastcdc::v2020::MINIMUM_MAX,
            ),
            (
                "avg",
                cdc_avg,
                fastcdc::v2020::AVERAGE_MIN,
                fastcdc::v2020::AVERAGE_MAX,
            ),
            (
                "max",
                cdc_max,
                fastcdc::v2020::MAXIMUM_MIN,
                fastcdc::v2020::MAXIMUM_MAX,
            ),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&(v as usize)) {
                return bad(format!("content-defined {name} {v} is outside {lo}..={hi}"));
            }
        }
        Ok(ChunkParams {
            tensor_block,
            cdc_min,
            cdc_avg,
            cdc_max,
        })
    }

    /// The fixed block size tensors are cut into, from each tensor's start.
    pub fn tensor_block(&self) -> u32 {
        self.tensor_block
    }

    /// The smallest content-defined chunk (except a file's or region's last).
    pub fn cdc_min(&self) -> u32 {
        self.cdc_min
    }

    /// The average content-defined chunk the cut points aim at.
    pub fn cdc_avg(&self) -> u32 {
        self.cdc_avg
    }

    /// The largest content-defined chunk.
    pub fn cdc_max(&self) -> u32 {
        self.cdc_max
    }
}

/// How one region of a file is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Content-defined chunks.
    Cdc,
    /// Fixed blocks of `tensor_block` bytes from the region's start (the last
    /// one shorter).
    Blocks,
}

/// A region `[start, end)` of the file and how it is cut. A plan's regions
/// are contiguous and cover `[0, len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    end: u64,
    cut: Cut,
}

/// Turns tensor extents into regions: content-defined before, between and
/// after the tensors, fixed blocks within each. `tensors` must be sorted,
/// non-overlapping and inside `[0, len)`.
fn plan_regions(tensors: &[(u64, u64)], len: u64) -> Vec<Region> {
    let mut regions = Vec::with_capacity(tensors.len() * 2 + 1);
    let mut at = 0;
    for &(begin, end) in tensors {
        if begin == end {
            continue;
        }
        if begin > at {
            regions.push(Region {
                end: begin,
                cut: Cut::Cdc,
            });
        }
        regions.push(Region {
            end,
            cut: Cut::Blocks,
        });
        at = end;
    }
    if at < len || regions.is_empty() {
        regions.push(Region {
            end: len,
            cut: Cut::Cdc,
        });
    }
    regions
}

/// The format and the regions of the file open as `file`, of length `len`;
/// [`Format::Opaque`] with one content-defined region unless a header parses
/// within budget. Leaves the file's position anywhere.
fn plan<R: Read + Seek>(file: &mut R, len: u64) -> std::io::Result<(Format, Vec<Region>)> {
    let mut magic = [0u8; 8];
    let mut got = 0;
    file.seek(SeekFrom::Start(0))?;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let opaque = || (Format::Opaque, plan_regions(&[], len));
    if got < 8 {
        return Ok(opaque());
    }
    let parsed = if &magic[..4] == b"GGUF" {
        gguf::tensor_extents(file, len)?.map(|t| (Format::Gguf, t))
    } else {
        safetensors::tensor_extents(file, u64::from_le_bytes(magic), len)?
            .map(|t| (Format::Safetensors, t))
    };
    Ok(match parsed {
        Some((format, tensors)) => (format, plan_regions(&tensors, len)),
        None => opaque(),
    })
}

/// The format [`chunk_file`] would recognise in the file at `path`: reads
/// only its header (within the [budgets](self#budgets)).
pub fn file_format(path: &Path) -> Result<Format> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let (format, _) = plan(&mut file, len).map_err(|e| Error::io(path, e))?;
    Ok(format)
}

/// Cuts the file at `path` into chunks (see the [module docs](self)).
///
/// The chunks cover the bytes read contiguously and in order, from offset 0
/// to the end of the file; an empty file has none. Blocking: reads the whole
/// file once, through one buffer of a few MiB. A file that changes while it
/// is read yields the chunks of what was read (the caller's whole-file hash,
/// taken from the same bytes, is what notices).
pub fn chunk_file(path: &Path, params: &ChunkParams) -> Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    chunk_file_with(path, params, |c, _| {
        chunks.push(*c);
        Ok(())
    })?;
    Ok(chunks)
}

/// [`chunk_file`], calling `sink` with each chunk and its bytes in file order
/// as they are read, so a writer can store them without reading the file
/// again. Returns the file's format; stops at the first error `sink` returns.
pub fn chunk_file_with(
    path: &Path,
    params: &ChunkParams,
    sink: impl FnMut(&Chunk, &[u8]) -> Result<()>,
) -> Result<Format> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let (format, regions) = plan(&mut file, len).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    engine::run(file, &regions, params, sink).map_err(|e| match e {
        engine::RunError::Io(e) => Error::io(path, e),
        engine::RunError::Sink(e) => e,
    })?;
    Ok(format)
}

/// [`chunk_file_with`] on a file already open (its position is moved), so
/// that a writer checks the very file it read for changes; `path` is for
/// errors only.
pub(crate) fn chunk_open_file_with(
    file: &File,
    path: &Path,
    params: &ChunkParams,
    sink: impl FnMut(&Chunk, &[u8]) -> Result<()>,
) -> Result<Format> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = file;
    let (format, regions) = plan(&mut reader, len).map_err(|e| Error::io(path, e))?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    engine::run(reader, &regions, params, sink).map_err(|e| match e {
        engine::RunError::Io(e) => Error::io(path, e),
        engine::RunError::Sink(e) => e,
    })?;
    Ok(format)
}

/// [`chunk_file`] for bytes in memory: the same chunks as the same bytes in a
/// file.
///
/// ```
/// use modelreg::store::chunking::{chunk_bytes, ChunkParams};
/// assert!(chunk_bytes(b"", &ChunkParams::default()).is_empty());
/// let chunks = chunk_bytes(b"hello", &ChunkParams::default());
/// assert_eq!(chunks.len(), 1);
/// assert_eq!(chunks[0].hash, modelreg::Digest::of(b"hello"));
/// ```
pub fn chunk_bytes(bytes: &[u8], params: &ChunkParams) -> Vec<Chunk> {
    let mut cursor = std::io::Cursor::new(bytes);
    let regions = match plan(&mut cursor, bytes.len() as u64) {
        Ok((_, regions)) => regions,
        // Reading memory cannot fail; were it to, the bytes are opaque.
        Err(_) => plan_regions(&[], bytes.len() as u64),
    };
    let mut chunks = Vec::new();
    let mut emit = |c: &Chunk, _: &[u8]| {
        chunks.push(*c);
        Ok(())
    };
    // Neither the reader nor the sink can fail, so neither can the run.
    let _ = engine::run(bytes, &regions, params, &mut emit);
    chunks
}

#[cfg(test)]
mod tests;
