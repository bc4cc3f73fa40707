//! Hashing with BLAKE3. [`hash_file`], [`hash_open_file`] and [`copy_hashing`]
//! block: call them from a blocking thread (`tokio::task::spawn_blocking`), never
//! on an async worker. [`update`] is async and moves large chunks to the blocking
//! pool itself.
//!
//! Files are read through small reused buffers, never memory-mapped whole: mapped
//! file pages count in a process's resident set, so hashing a 4 GiB file by one
//! `mmap` would make a 4 GiB peak RSS. A reader thread fills one buffer while the
//! previous one is hashed on all cores (`update_rayon`), which measured as fast as
//! a whole-file `update_mmap_rayon` here (docs/performance.md).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;

use bytes::Bytes;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Chunks smaller than this are hashed on the calling task; larger ones on the
/// blocking pool, so hashing never holds an async worker for long.
const INLINE_HASH_BYTES: usize = 64 << 10;

/// The read buffer of the hashing loops. Small enough to stay in the CPU's cache
/// between the read and the hash; large enough that `update_rayon` splits it over
/// every core.
const WINDOW: usize = 2 << 20;

/// How much [`copy_hashing`] copies per kernel call before the hasher may read it.
const COPY_WINDOW: u64 = 32 << 20;

/// Files up to this size are hashed with one read on the calling thread.
const SMALL_FILE: u64 = 1 << 20;

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
/// See [`hash_open_file`].
pub(crate) fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    hash_open_file(&File::open(path)?)
}

/// Hashes `file` from offset 0 to its end, returning the digest and the number of
/// bytes hashed. Memory stays at two [`WINDOW`] buffers whatever the file size.
///
/// What is hashed is what was read: if the file changes meanwhile, the digest is
/// of some mix of old and new bytes, and callers that care compare the file's
/// metadata before and after (or hash a private copy).
pub(crate) fn hash_open_file(file: &File) -> io::Result<(Digest, u64)> {
    if file.metadata()?.len() <= SMALL_FILE {
        let mut bytes = Vec::new();
        let mut reader = file;
        reader.read_to_end(&mut bytes)?;
        return Ok((Digest::of(&bytes), bytes.len() as u64));
    }
    // Buffers travel reader → hasher → reader. An empty buffer ends the file.
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(1);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        // Both sends fit the channel's capacity.
        let _ = empty_tx.send(vec![0; WINDOW]);
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut offset = 0u64;
            while let Ok(mut buf) = empty_rx.recv() {
                buf.resize(WINDOW, 0);
                let filled = fill_at(file, &mut buf, offset).map(|n| {
                    buf.truncate(n);
                    buf
                });
                let done = !matches!(&filled, Ok(b) if !b.is_empty());
                if let Ok(b) = &filled {
                    offset += b.len() as u64;
                }
                if full_tx.send(filled).is_err() || done {
                    return;
                }
            }
        });
        let mut hasher = blake3::Hasher::new();
        // The reader sends an empty buffer or an error last; a closed channel
        // without either cannot happen, but ends the loop all the same.
        while let Ok(buf) = full_rx.recv() {
            let buf = buf?;
            if buf.is_empty() {
                break;
            }
            hasher.update_rayon(&buf);
            let _ = empty_tx.send(buf);
        }
        Ok((hasher.finalize().into(), hasher.count()))
    })
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns how
/// many bytes were read.
fn fill_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(read) => n += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies `src` (from its current offset to its end) into `dest` (at its current
/// offset) and hashes the bytes as they land in `dest`, returning the digest and
/// length of what was written. `dest_read` is the same file as `dest`, opened for
/// reading, and `dest` must start empty.
///
/// The copy runs in the kernel (`copy_file_range`, through `io::copy`) on one
/// thread, [`COPY_WINDOW`] at a time; the hasher reads back each finished window
/// of the destination on the others. The digest is therefore of the destination's
/// bytes, whatever the source does meanwhile. `dest` is not synced.
pub(crate) fn copy_hashing(src: &File, dest: &File, dest_read: &File) -> io::Result<(Digest, u64)> {
    let (progress_tx, progress_rx) = mpsc::channel::<u64>();
    std::thread::scope(|scope| {
        let copier = scope.spawn(move || -> io::Result<u64> {
            let mut total = 0;
            loop {
                let copied = io::copy(&mut src.take(COPY_WINDOW), &mut &*dest)?;
                total += copied;
                // The hasher stops listening only when it failed; its error wins.
                let _ = progress_tx.send(total);
                if copied < COPY_WINDOW {
                    return Ok(total);
                }
            }
        });
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0; WINDOW];
        let mut hashed = 0u64;
        let mut failed = None;
        while let Ok(copied) = progress_rx.recv() {
            while hashed < copied {
                let want = usize::try_from(copied - hashed).map_or(WINDOW, |n| n.min(WINDOW));
                match fill_at(dest_read, &mut buf[..want], hashed) {
                    Ok(n) if n == want => {
                        hasher.update_rayon(&buf[..n]);
                        hashed += n as u64;
                    }
                    Ok(_) => {
                        failed = Some(io::Error::other("copy destination is shorter than copied"));
                        break;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if failed.is_some() {
                break;
            }
        }
        // Dropping the receiver makes the copier's next send fail harmlessly; the
        // copy still has to finish before the scope ends.
        drop(progress_rx);
        let copied = copier
            .join()
            .map_err(|_| io::Error::other("copy thread panicked"))??;
        if let Some(e) = failed {
            return Err(e);
        }
        if hashed != copied {
            return Err(io::Error::other("copy and hash disagree on the length"));
        }
        Ok((hasher.finalize().into(), hashed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around the small-file cut-off, the window and the copy window.
    const SIZES: [usize; 9] = [
        0,
        1,
        1024,
        16 * 1024 + 1,
        SMALL_FILE as usize,
        SMALL_FILE as usize + 1,
        2 * WINDOW + 7,
        COPY_WINDOW as usize,
        COPY_WINDOW as usize + 3 * WINDOW + 5,
    ];

    fn data(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn matches_in_memory_hash_for_small_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        for size in SIZES {
            let data = data(size);
            let p = dir.path().join(format!("f{size}"));
            std::fs::write(&p, &data).unwrap();
            let (d, n) = hash_file(&p).unwrap();
            assert_eq!(n, size as u64);
            assert_eq!(d, Digest::of(&data), "size {size}");
        }
    }

    #[test]
    fn copy_hashing_copies_exactly_and_hashes_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        for size in SIZES {
            let data = data(size);
            let src = dir.path().join(format!("s{size}"));
            let dst = dir.path().join(format!("d{size}"));
            std::fs::write(&src, &data).unwrap();
            let dest = File::create_new(&dst).unwrap();
            let (d, n) = copy_hashing(
                &File::open(&src).unwrap(),
                &dest,
                &File::open(&dst).unwrap(),
            )
            .unwrap();
            assert_eq!((d, n), (Digest::of(&data), size as u64), "size {size}");
            assert_eq!(std::fs::read(&dst).unwrap(), data, "size {size}");
        }
    }
}
