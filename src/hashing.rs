//! Hashing with BLAKE3. [`hash_file`] blocks: call it from a blocking thread
//! (`tokio::task::spawn_blocking`), never on an async worker. [`update`] is async and
//! moves large chunks to the blocking pool itself.

use std::io;
use std::path::Path;

use bytes::Bytes;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Chunks smaller than this are hashed on the calling task; larger ones on the
/// blocking pool, so hashing never holds an async worker for long.
const INLINE_HASH_BYTES: usize = 64 << 10;

/// Feeds `chunk` to `hasher`, on the blocking pool if the chunk is large.
pub(crate) async fn update(mut hasher: blake3::Hasher, chunk: Bytes) -> Result<blake3::Hasher> {
    if chunk.len() < INLINE_HASH_BYTES {
        hasher.update(&chunk);
        return Ok(hasher);
    }
    tokio::task::spawn_blocking(move || {
        hasher.update(&chunk);
        hasher
    })
    .await
    .map_err(|e| Error::io("<blocking task>", io::Error::other(e)))
}

/// Hashes the file at `path`, returning its digest and the number of bytes hashed.
///
/// Large files are memory-mapped and hashed on all cores (BLAKE3's
/// `update_mmap_rayon`); small files, and files that cannot be mapped, are read
/// through a buffer. Memory stays bounded either way: mapped pages live in the page
/// cache, not on the heap.
///
/// The file must not be truncated while it is hashed (true of every artifact the
/// registry stores: its own blobs are read-only, and sources are checked again when
/// they are copied in).
pub(crate) fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path)?;
    Ok((hasher.finalize().into(), hasher.count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_in_memory_hash_for_small_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 1, 1023, 1024, 16 * 1024 + 1, 3 * 1024 * 1024 + 7] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let p = dir.path().join(format!("f{size}"));
            std::fs::write(&p, &data).unwrap();
            let (d, n) = hash_file(&p).unwrap();
            assert_eq!(n, size as u64);
            assert_eq!(d, Digest::of(&data), "size {size}");
        }
    }
}
