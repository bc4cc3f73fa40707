//! Stand-in for `store::chunking` (built on another branch) with its shape:
//! fixed 1 MiB spans. The pack machinery calls it through one `use` in
//! `store::pack`, which the real chunker replaces.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// How a file is cut. The placeholder cuts fixed spans of `span` bytes.
#[derive(Debug, Clone)]
pub(crate) struct ChunkParams {
    /// Bytes per chunk (the last one may be shorter).
    pub(crate) span: u32,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams { span: 1 << 20 }
    }
}

/// One chunk of a file: `len` bytes at `offset`, hashing to `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Where the chunk starts in the file.
    pub(crate) offset: u64,
    /// Its length in bytes (never 0).
    pub(crate) len: u32,
    /// BLAKE3 of its bytes.
    pub(crate) hash: Digest,
}

/// Cuts the file at `path` into contiguous chunks covering it, hashing each.
pub(crate) fn chunk_file(path: &Path, params: &ChunkParams) -> Result<Vec<Chunk>> {
    let io_err = |e| Error::io(path, e);
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let span = u64::from(params.span.max(1));
    let mut buf = vec![0; params.span.max(1) as usize];
    let mut out = Vec::with_capacity(usize::try_from(size.div_ceil(span)).unwrap_or(0));
    let mut offset = 0;
    while offset < size {
        let len = span.min(size - offset);
        let piece = &mut buf[..len as usize];
        read_exact_at(&file, piece, offset).map_err(io_err)?;
        out.push(Chunk {
            offset,
            len: len as u32,
            hash: Digest::of(piece),
        });
        offset += len;
    }
    Ok(out)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}
