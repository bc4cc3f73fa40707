//! Hashing files with BLAKE3. Blocking functions: call them from a blocking thread
//! (`tokio::task::spawn_blocking`), never on an async worker.

use std::io;
use std::path::Path;

use crate::digest::Digest;

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
