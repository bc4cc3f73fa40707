//! Hashing with BLAKE3, and at ingest SHA-256 in the same pass. [`hash_file`],
//! [`hash_open_file`], [`copy_hashing`] and their `_with_sha256` variants block:
//! call them from a blocking thread (`tokio::task::spawn_blocking`), never on an
//! async worker. [`update`] and [`hash_stream`] are async and move large chunks
//! to the blocking pool themselves.
//!
//! Each takes an optional [`Meter`], counted as bytes are hashed (never for a
//! file as a whole), for the progress of long operations.
//!
//! Files are read through small reused buffers, never memory-mapped whole: mapped
//! file pages count in a process's resident set, so hashing a 4 GiB file by one
//! `mmap` would make a 4 GiB peak RSS. Each core reads and hashes windows of the
//! file on its own and the windows' BLAKE3 subtrees are merged in order
//! ([`hash_open_file`]), which measured faster than a whole-file
//! `update_mmap_rayon` here (docs/performance.md).
//!
//! Ingest also records each file's SHA-256 ([`Sha256`]) from the same read of its
//! bytes: the `_with_sha256` variants feed every window, in file order, to one
//! SHA-256 state as well (a [`Sequential`] hash). SHA-256 is a chain, not a tree,
//! so it cannot be split over cores as BLAKE3 is; [`hash_windows`] and
//! [`copy_hashing_with_sha256`] say how it rides along. Fetch, verify and puts of
//! known digests use the BLAKE3-only functions, which pay nothing for it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError, mpsc};

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};

use bytes::Bytes;

use crate::digest::{Digest, Sha256};
use crate::error::Result;
use crate::progress::{Meter, MeterExt};

/// Chunks smaller than this are hashed on the calling task; larger ones on the
/// blocking pool, so hashing never holds an async worker for long.
const INLINE_HASH_BYTES: usize = 64 << 10;

/// The read buffer of the hashing loops. Small enough to stay in the CPU's cache
/// between the read and the hash; large enough that one `update` hashes it with
/// every SIMD lane and `update_rayon` splits it over every core. A power of two,
/// so that a window at a multiple of it is a whole BLAKE3 subtree.
const WINDOW: usize = 2 << 20;

/// How much [`copy_hashing`] copies per kernel call before the hasher may read it.
pub(crate) const COPY_WINDOW: u64 = 32 << 20;

/// Files up to this size are hashed with one read on the calling thread.
const SMALL_FILE: u64 = 1 << 20;

/// What ingest learns from one read of a file's bytes: their BLAKE3 digest (the
/// blob's key), their SHA-256, and how many there were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hashed {
    pub(crate) digest: Digest,
    pub(crate) sha256: Sha256,
    pub(crate) size: u64,
}

/// A hash that must see the bytes in order, fed beside BLAKE3 by the functions
/// of this module: SHA-256 at ingest, or nothing (`()`) everywhere else. Generic
/// rather than a flag, so the BLAKE3-only paths compile without any of it.
pub(crate) trait Sequential: Default + Send {
    /// Whether there is anything to feed (`false` for `()`).
    const ACTIVE: bool;
    /// Feeds the next bytes.
    fn update(&mut self, bytes: &[u8]);
}

impl Sequential for () {
    const ACTIVE: bool = false;
    fn update(&mut self, _: &[u8]) {}
}

impl Sequential for sha2::Sha256 {
    const ACTIVE: bool = true;
    fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(self, bytes);
    }
}

/// Hashes a blob's stream, returning its digest and length; `meter` counts the
/// bytes hashed.
pub(crate) async fn hash_stream(
    stream: crate::store::ByteStream,
    meter: Option<Meter>,
) -> Result<(Digest, u64)> {
    let (digest, (), size) = hash_stream_as(stream, meter).await?;
    Ok((digest, size))
}

/// [`hash_stream`], with the SHA-256 of the same bytes.
pub(crate) async fn hash_stream_with_sha256(
    stream: crate::store::ByteStream,
    meter: Option<Meter>,
) -> Result<Hashed> {
    let (digest, sha, size) = hash_stream_as::<sha2::Sha256>(stream, meter).await?;
    Ok(Hashed {
        digest,
        sha256: sha.into(),
        size,
    })
}

async fn hash_stream_as<S: Sequential + 'static>(
    mut stream: crate::store::ByteStream,
    meter: Option<Meter>,
) -> Result<(Digest, S, u64)> {
    use futures::StreamExt;
    let mut hashers = (blake3::Hasher::new(), S::default());
    while let Some(chunk) = stream.next().await {
        hashers = update_as(hashers, chunk?, meter.as_ref()).await?;
    }
    let (hasher, seq) = hashers;
    Ok((hasher.finalize().into(), seq, hasher.count()))
}

/// Feeds `chunk` to `hasher`, on the blocking pool if the chunk is large;
/// `meter` counts it as it is hashed, a [`WINDOW`] at a time (a stream can
/// come as one chunk of a whole blob).
pub(crate) async fn update(
    hasher: blake3::Hasher,
    chunk: Bytes,
    meter: Option<&Meter>,
) -> Result<blake3::Hasher> {
    Ok(update_as((hasher, ()), chunk, meter).await?.0)
}

/// [`update`] for BLAKE3 and a [`Sequential`] hash together.
async fn update_as<S: Sequential + 'static>(
    (mut hasher, mut seq): (blake3::Hasher, S),
    chunk: Bytes,
    meter: Option<&Meter>,
) -> Result<(blake3::Hasher, S)> {
    if chunk.len() < INLINE_HASH_BYTES {
        hasher.update(&chunk);
        seq.update(&chunk);
        meter.add(chunk.len() as u64);
        return Ok((hasher, seq));
    }
    let meter = meter.cloned();
    crate::offload::offload(move || {
        match &meter {
            None if !S::ACTIVE => {
                hasher.update(&chunk);
            }
            _ => {
                // A window at a time, so the bytes are still in the cache when
                // the second hash reads them.
                for window in chunk.chunks(WINDOW) {
                    hasher.update(window);
                    seq.update(window);
                    meter.as_ref().add(window.len() as u64);
                }
            }
        }
        (hasher, seq)
    })
    .await
}

/// Hashes the file at `path`, returning its digest and the number of bytes hashed.
/// See [`hash_open_file`].
pub(crate) fn hash_file(path: &Path, meter: Option<&Meter>) -> io::Result<(Digest, u64)> {
    hash_open_file(&File::open(path)?, meter)
}

/// [`hash_file`], with the SHA-256 of the same bytes.
pub(crate) fn hash_file_with_sha256(path: &Path, meter: Option<&Meter>) -> io::Result<Hashed> {
    hash_open_file_with_sha256(&File::open(path)?, meter)
}

/// Hashes `file` from offset 0 to its end, returning the digest and the number of
/// bytes hashed. Memory stays at one [`WINDOW`] buffer per core whatever the file
/// size.
///
/// Every core reads and hashes windows of its own (see [`hash_windows`]), so the
/// copy out of the page cache and the hash both run on all cores, with no hand-off
/// between a reader and a hasher.
///
/// What is hashed is what was read: if the file changes meanwhile, the digest is
/// of some mix of old and new bytes, and callers that care compare the file's
/// metadata before and after (or hash a private copy). A file that grows or
/// shrinks meanwhile is hashed again, front to end, so the count is always of the
/// bytes the digest covers (`meter` then counts both passes).
pub(crate) fn hash_open_file(file: &File, meter: Option<&Meter>) -> io::Result<(Digest, u64)> {
    let (digest, (), size) = hash_open_as(file, meter)?;
    Ok((digest, size))
}

/// [`hash_open_file`], with the SHA-256 of the same bytes, from the same reads:
/// each window also goes through one SHA-256 state, in file order (see
/// [`hash_windows`]). Its speed is then bounded by one core's SHA-256, which
/// with SHA-NI is slower than BLAKE3 over all cores (docs/performance.md).
pub(crate) fn hash_open_file_with_sha256(file: &File, meter: Option<&Meter>) -> io::Result<Hashed> {
    let (digest, sha, size) = hash_open_as::<sha2::Sha256>(file, meter)?;
    Ok(Hashed {
        digest,
        sha256: sha.into(),
        size,
    })
}

fn hash_open_as<S: Sequential>(file: &File, meter: Option<&Meter>) -> io::Result<(Digest, S, u64)> {
    let len = file.metadata()?.len();
    if len <= SMALL_FILE {
        let mut bytes = Vec::new();
        let mut reader = file;
        reader.read_to_end(&mut bytes)?;
        let mut seq = S::default();
        seq.update(&bytes);
        meter.add(bytes.len() as u64);
        return Ok((Digest::of(&bytes), seq, bytes.len() as u64));
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if let Some((digest, seq)) = hash_windows(file, len, WINDOW, threads, meter)?
        && file.metadata()?.len() == len
    {
        return Ok((digest, seq, len));
    }
    hash_to_end(file, meter)
}

/// Hashes `file` front to end on the calling thread, as long as reads return bytes.
fn hash_to_end<S: Sequential>(file: &File, meter: Option<&Meter>) -> io::Result<(Digest, S, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut seq = S::default();
    let mut buf = vec![0; WINDOW];
    loop {
        let n = fill_at(file, &mut buf, hasher.count())?;
        if n == 0 {
            return Ok((hasher.finalize().into(), seq, hasher.count()));
        }
        hasher.update(&buf[..n]);
        seq.update(&buf[..n]);
        meter.add(n as u64);
    }
}

/// How far past the oldest unfinished window the workers of [`hash_windows`] may
/// run, so that the chaining values waiting to be merged stay few whatever one
/// slow thread does.
const MAX_AHEAD: u64 = 256;

/// Hashes the first `len` bytes of `file` in windows of `window` bytes on
/// `threads` threads (the caller's included), with BLAKE3 and the
/// [`Sequential`] hash `S`; `None` if the file ended before `len`, or if `len`
/// fits in one window (nothing to share out). `window` is a power of two no
/// smaller than a BLAKE3 chunk. `meter` counts each window once it is hashed.
///
/// BLAKE3 is a tree: a window that starts at a multiple of its own (power-of-two)
/// size is a whole subtree, whose chaining value can be computed alone
/// (`hazmat::HasherExt::set_input_offset`) and merged with its neighbours'
/// later. So each thread takes the next window, reads it with `pread` into its
/// own buffer and hashes it single-threaded (SIMD over the window's chunks);
/// finished windows are merged in file order by whichever thread finishes the
/// window that was holding the merge up. The root is the last merge, done
/// once every window is in.
///
/// `S` (SHA-256) is a chain: its one state takes the windows in file order. A
/// thread that has hashed its window with BLAKE3 waits, holding its buffer,
/// until the window before it has been fed to `S`, feeds its own, and only then
/// takes the next window; the other threads go on reading and hashing
/// meanwhile. So the bytes are read once, no window is buffered twice, memory
/// stays one buffer per thread, and `S` is fed without a gap as long as a
/// window's read and BLAKE3 take less time than its SHA-256 (about half of it
/// here, with SHA-NI and AVX-512): the pass takes about one core's SHA-256 of
/// the file. With `S = ()` nobody waits.
fn hash_windows<S: Sequential>(
    file: &File,
    len: u64,
    window: usize,
    threads: usize,
    meter: Option<&Meter>,
) -> io::Result<Option<(Digest, S)>> {
    debug_assert!(window.is_power_of_two() && window >= blake3::CHUNK_LEN);
    let windows = len.div_ceil(window as u64);
    if windows < 2 {
        return Ok(None);
    }
    let state = Mutex::new(Windows::default());
    // Only the thread whose turn it is (`Windows::fed`) touches it.
    let seq = Mutex::new(S::default());
    let progress = Condvar::new();
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let work = || -> io::Result<()> {
        // A thread that panics stops the others: they may be waiting for its turn.
        let _stop = StopOnPanic {
            state: &state,
            progress: &progress,
        };
        let mut buf = vec![0; window];
        loop {
            let k = {
                let mut s = lock();
                while s.next < windows && s.next >= s.merged + MAX_AHEAD && !s.stop {
                    s = progress.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                if s.stop || s.next == windows {
                    return Ok(());
                }
                s.next += 1;
                s.next - 1
            };
            let offset = k * window as u64;
            let want = usize::try_from(len - offset).map_or(window, |n| n.min(window));
            let read = fill_at(file, &mut buf[..want], offset);
            let mut s = lock();
            match read {
                Ok(n) if n == want => {
                    drop(s);
                    let cv = blake3::Hasher::new()
                        .set_input_offset(offset)
                        .update(&buf[..want])
                        .finalize_non_root();
                    if S::ACTIVE {
                        let mut s = lock();
                        while s.fed < k && !s.stop {
                            s = progress.wait(s).unwrap_or_else(PoisonError::into_inner);
                        }
                        if s.stop {
                            return Ok(());
                        }
                        drop(s);
                        seq.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .update(&buf[..want]);
                        let mut s = lock();
                        s.fed += 1;
                        s.finish(k, cv, windows);
                    } else {
                        lock().finish(k, cv, windows);
                    }
                    meter.add(want as u64);
                }
                // The file ended early: it changed, and the caller starts over.
                Ok(_) => s.stop = true,
                Err(e) => {
                    s.stop = true;
                    drop(s);
                    progress.notify_all();
                    return Err(e);
                }
            }
            progress.notify_all();
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(windows as usize))
            .map(|_| scope.spawn(work))
            .collect();
        let mut result = work();
        for helper in helpers {
            let joined = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result = result.and(joined);
        }
        result
    })?;
    let s = state.into_inner().unwrap_or_else(PoisonError::into_inner);
    let seq = seq.into_inner().unwrap_or_else(PoisonError::into_inner);
    Ok(s.root.filter(|_| !s.stop).map(|root| (root.into(), seq)))
}

/// Stops the workers of [`hash_windows`] if the thread holding it panics, so
/// that none waits forever for a window that thread held.
struct StopOnPanic<'a> {
    state: &'a Mutex<Windows>,
    progress: &'a Condvar,
}

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stop = true;
            self.progress.notify_all();
        }
    }
}

/// The shared state of [`hash_windows`].
#[derive(Default)]
struct Windows {
    /// The next window to hand out.
    next: u64,
    /// How many windows, from the first, are merged into `tree`.
    merged: u64,
    /// How many windows, from the first, the [`Sequential`] hash has been fed.
    fed: u64,
    /// Chaining values of finished windows that wait for an earlier one.
    waiting: BTreeMap<u64, ChainingValue>,
    /// The merged windows, as BLAKE3 keeps its chunks: a stack of whole
    /// subtrees, largest first.
    tree: Vec<ChainingValue>,
    /// The file's hash, once the last window is merged.
    root: Option<blake3::Hash>,
    /// Set when a read failed or came up short: the others stop taking windows.
    stop: bool,
}

impl Windows {
    /// Records window `k`'s chaining value and merges every window now in order.
    fn finish(&mut self, k: u64, cv: ChainingValue, windows: u64) {
        self.waiting.insert(k, cv);
        while let Some(cv) = self.waiting.remove(&self.merged) {
            self.merged += 1;
            if self.merged == windows {
                self.root = self.merge_root(cv);
                return;
            }
            // More windows follow, so a pair of equal subtrees can merge now
            // without becoming the root: as many merges as trailing zeros.
            self.tree.push(cv);
            let mut count = self.merged;
            while count & 1 == 0 {
                let (Some(right), Some(left)) = (self.tree.pop(), self.tree.pop()) else {
                    break;
                };
                self.tree
                    .push(merge_subtrees_non_root(&left, &right, Mode::Hash));
                count >>= 1;
            }
        }
    }

    /// Merges the last window `right` with the stack, right to left; the top
    /// merge is the root. `None` if there is nothing to merge with (one window,
    /// which [`hash_windows`] never hands out alone).
    fn merge_root(&mut self, mut right: ChainingValue) -> Option<blake3::Hash> {
        while let Some(left) = self.tree.pop() {
            if self.tree.is_empty() {
                return Some(merge_subtrees_root(&left, &right, Mode::Hash));
            }
            right = merge_subtrees_non_root(&left, &right, Mode::Hash);
        }
        None
    }
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
/// bytes, whatever the source does meanwhile. `dest` is not synced. `meter` counts
/// the bytes hashed, which trail the copy.
pub(crate) fn copy_hashing(
    src: &File,
    dest: &File,
    dest_read: &File,
    meter: Option<&Meter>,
) -> io::Result<(Digest, u64)> {
    let (digest, (), size, _) = copy_hashing_as(file_copier(src, dest), dest_read, None, meter)?;
    Ok((digest, size))
}

/// [`copy_hashing`] where `copy` does the copying: each call appends the next
/// piece to the destination (about [`COPY_WINDOW`] bytes, in the kernel where
/// it can) and returns its length, 0 once all is copied. It runs on its own
/// thread while the pieces already written are read back from `dest_read` and
/// hashed on the others; the destination must start empty. Used to rebuild a
/// packed file: the digest is of the destination's bytes.
pub(crate) fn copy_hashing_by(
    copy: impl FnMut() -> io::Result<u64> + Send,
    dest_read: &File,
    meter: Option<&Meter>,
) -> io::Result<(Digest, u64)> {
    let (digest, (), size, _) = copy_hashing_as(copy, dest_read, None, meter)?;
    Ok((digest, size))
}

/// The copier of [`copy_hashing`]: [`COPY_WINDOW`] of `src` into `dest` per
/// call, by `io::copy` (`copy_file_range` between files on Linux); 0 after the
/// first short copy.
fn file_copier<'a>(src: &'a File, dest: &'a File) -> impl FnMut() -> io::Result<u64> + Send + 'a {
    let mut done = false;
    move || {
        if done {
            return Ok(0);
        }
        let copied = io::copy(&mut src.take(COPY_WINDOW), &mut &*dest)?;
        done = copied < COPY_WINDOW;
        Ok(copied)
    }
}

/// [`copy_hashing`], with the SHA-256 of the same bytes: each window read back
/// from `dest` is hashed with BLAKE3 and then handed, in order, to a thread
/// that feeds it to SHA-256, so the copy, the read-back with BLAKE3 and
/// SHA-256 overlap, with at most [`SEQ_BUFFERS`] windows in memory.
///
/// The destination's writeback starts while it is hashed: every
/// [`EARLY_SYNC_BYTES`] copied, a thread `fdatasync`s `dest`, so the caller's
/// fsync finds most of it on disk instead of writing all of it after the
/// hashing (SHA-256 is CPU-bound, the writeback is not). A failed early sync
/// fails the copy: the caller's own fsync on the same file would not report
/// that write error again.
pub(crate) fn copy_hashing_with_sha256(
    src: &File,
    dest: &File,
    dest_read: &File,
    meter: Option<&Meter>,
) -> io::Result<Hashed> {
    let early_sync = Some((dest, EARLY_SYNC_BYTES));
    let (digest, sha, size, _) =
        copy_hashing_as::<sha2::Sha256>(file_copier(src, dest), dest_read, early_sync, meter)?;
    Ok(Hashed {
        digest,
        sha256: sha.into(),
        size,
    })
}

/// Window buffers of [`copy_hashing_with_sha256`]: one being read back and
/// hashed with BLAKE3, one queued for SHA-256, one being hashed with SHA-256.
const SEQ_BUFFERS: usize = 3;

/// How many newly copied bytes make [`copy_hashing_with_sha256`] start the
/// destination's writeback (an `fdatasync` on a thread of its own).
const EARLY_SYNC_BYTES: u64 = 128 << 20;

/// [`copy_hashing`]'s work, feeding `S` too; with `early_sync` (a file, the
/// destination, and a byte count), that file is `fdatasync`ed on a thread of
/// its own each time that many more bytes were copied, and an error of those
/// syncs is the result. Returns the digest, `S`, the size and how many early
/// syncs ran.
fn copy_hashing_as<S: Sequential>(
    mut copy: impl FnMut() -> io::Result<u64> + Send,
    dest_read: &File,
    early_sync: Option<(&File, u64)>,
    meter: Option<&Meter>,
) -> io::Result<(Digest, S, u64, u64)> {
    let (progress_tx, progress_rx) = mpsc::channel::<u64>();
    let (flush_tx, flush_rx) = mpsc::channel::<u64>();
    let flush_tx = early_sync.is_some().then_some(flush_tx);
    // Windows in file order to the thread that feeds `S`, and their buffers back.
    let (to_seq, seq_windows) = mpsc::sync_channel::<(Vec<u8>, usize)>(1);
    let (seq_done, done_windows) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let copier = scope.spawn(move || -> io::Result<u64> {
            let mut total = 0;
            loop {
                let copied = copy()?;
                if copied == 0 {
                    return Ok(total);
                }
                total += copied;
                // The hasher stops listening only when it failed; its error wins.
                let _ = progress_tx.send(total);
                // The syncer stops listening only when its sync failed; that
                // error is reported when it is joined.
                if let Some(tx) = &flush_tx {
                    let _ = tx.send(total);
                }
            }
        });
        let syncer = early_sync.map(|(file, every)| {
            scope.spawn(move || -> io::Result<u64> {
                let (mut synced, mut syncs) = (0, 0);
                while let Ok(mut copied) = flush_rx.recv() {
                    while let Ok(more) = flush_rx.try_recv() {
                        copied = more;
                    }
                    if copied - synced >= every {
                        file.sync_data()?;
                        synced = copied;
                        syncs += 1;
                    }
                }
                Ok(syncs)
            })
        });
        let sequential = S::ACTIVE.then(|| {
            scope.spawn(move || {
                let mut seq = S::default();
                for (buf, n) in seq_windows {
                    seq.update(&buf[..n]);
                    // The reader stops taking buffers back only when it is done.
                    let _ = seq_done.send(buf);
                }
                seq
            })
        });
        let mut hasher = blake3::Hasher::new();
        // Buffers free for the next window; with `S = ()` the one buffer comes
        // straight back here.
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut allocated = 0;
        let mut hashed = 0u64;
        let mut failed = None;
        'copied: while let Ok(copied) = progress_rx.recv() {
            while hashed < copied {
                let buf = match spare.pop().or_else(|| done_windows.try_recv().ok()) {
                    Some(buf) => Some(buf),
                    None if allocated < SEQ_BUFFERS => {
                        allocated += 1;
                        Some(vec![0; WINDOW])
                    }
                    // All are with the SHA-256 thread: wait for one.
                    None => done_windows.recv().ok(),
                };
                let Some(mut buf) = buf else {
                    failed = Some(io::Error::other("the SHA-256 thread stopped"));
                    break 'copied;
                };
                let want = usize::try_from(copied - hashed).map_or(WINDOW, |n| n.min(WINDOW));
                match fill_at(dest_read, &mut buf[..want], hashed) {
                    Ok(n) if n == want => {
                        hasher.update_rayon(&buf[..n]);
                        hashed += n as u64;
                        meter.add(n as u64);
                        if !S::ACTIVE {
                            spare.push(buf);
                        } else if to_seq.send((buf, n)).is_err() {
                            failed = Some(io::Error::other("the SHA-256 thread stopped"));
                            break 'copied;
                        }
                    }
                    Ok(_) => {
                        failed = Some(io::Error::other("copy destination is shorter than copied"));
                        break 'copied;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break 'copied;
                    }
                }
            }
        }
        // Dropping the receiver makes the copier's next send fail harmlessly; the
        // copy still has to finish before the scope ends. Dropping the sender
        // ends the SHA-256 thread's input.
        drop(progress_rx);
        drop(to_seq);
        let copied = copier
            .join()
            .map_err(|_| io::Error::other("copy thread panicked"))??;
        let syncs = match syncer {
            Some(syncer) => syncer
                .join()
                .map_err(|_| io::Error::other("the syncing thread panicked"))??,
            None => 0,
        };
        let seq = match sequential {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("the SHA-256 thread panicked"))?,
            None => S::default(),
        };
        if let Some(e) = failed {
            return Err(e);
        }
        if hashed != copied {
            return Err(io::Error::other("copy and hash disagree on the length"));
        }
        Ok((hasher.finalize().into(), seq, hashed, syncs))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Sizes around the small-file cut-off, the window and the copy window; the
    /// ingest tests register files of these sizes on every path.
    pub(crate) const SIZES: [usize; 10] = [
        0,
        1,
        1024,
        16 * 1024 + 1,
        SMALL_FILE as usize - 1,
        SMALL_FILE as usize,
        SMALL_FILE as usize + 1,
        2 * WINDOW + 7,
        COPY_WINDOW as usize,
        COPY_WINDOW as usize + 3 * WINDOW + 5,
    ];

    pub(crate) fn data(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i % 251) as u8).collect()
    }

    /// SHA-256 by the `sha2` crate directly, in one call: what the windows and
    /// the copy must add up to.
    fn sha256(bytes: &[u8]) -> Sha256 {
        use sha2::Digest as _;
        Sha256::from_bytes(sha2::Sha256::digest(bytes).into())
    }

    #[test]
    fn with_sha256_matches_both_plain_hashes_for_small_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        for size in SIZES {
            let data = data(size);
            let p = dir.path().join(format!("f{size}"));
            std::fs::write(&p, &data).unwrap();
            let got = hash_file_with_sha256(&p, None).unwrap();
            let want = Hashed {
                digest: Digest::of(&data),
                sha256: sha256(&data),
                size: size as u64,
            };
            assert_eq!(got, want, "size {size}");
        }
    }

    #[test]
    fn matches_in_memory_hash_for_small_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        for size in SIZES {
            let data = data(size);
            let p = dir.path().join(format!("f{size}"));
            std::fs::write(&p, &data).unwrap();
            let (d, n) = hash_file(&p, None).unwrap();
            assert_eq!(n, size as u64);
            assert_eq!(d, Digest::of(&data), "size {size}");
        }
    }

    /// Window counts 2 to 9 (whole, and with a short last window of one byte, a
    /// partial chunk, a whole chunk), so every shape of the merge stack occurs,
    /// on one to three threads.
    #[test]
    fn windows_merge_to_the_plain_hash() {
        const W: usize = 4 * blake3::CHUNK_LEN;
        let dir = tempfile::tempdir().unwrap();
        let all = data(9 * W + 1);
        let p = dir.path().join("f");
        std::fs::write(&p, &all).unwrap();
        let file = File::open(&p).unwrap();
        for windows in 2..=9 {
            for tail in [0, 1, 700, blake3::CHUNK_LEN] {
                let len = (windows - 1) * W + if tail == 0 { W } else { tail };
                for threads in 1..=3 {
                    let got = hash_windows::<()>(&file, len as u64, W, threads, None).unwrap();
                    assert_eq!(
                        got.map(|(d, ())| d),
                        Some(Digest::of(&all[..len])),
                        "{len} bytes on {threads} threads"
                    );
                    // With SHA-256 fed window by window, in turn.
                    let got = hash_windows::<sha2::Sha256>(&file, len as u64, W, threads, None)
                        .unwrap()
                        .map(|(d, s)| (d, Sha256::from(s)));
                    assert_eq!(
                        got,
                        Some((Digest::of(&all[..len]), sha256(&all[..len]))),
                        "{len} bytes on {threads} threads, with SHA-256"
                    );
                }
            }
        }
        // One window is nothing to share out: the caller hashes it plainly.
        assert!(
            hash_windows::<()>(&file, W as u64, W, 2, None)
                .unwrap()
                .is_none()
        );
    }

    /// Many more windows than threads, on more threads than this machine has
    /// cores, so that threads wait for their turn to feed SHA-256 while others
    /// go on: the order of the windows fed must still be the file's.
    #[test]
    fn sha256_takes_the_windows_in_file_order_whatever_the_threads_do() {
        // Windows large enough that a thread which did not wait for its turn
        // would often feed SHA-256 before the thread holding the window before.
        const W: usize = 64 << 10;
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<u8> = (0..100 * W + 17).map(|i| (i * 7 % 253) as u8).collect();
        let p = dir.path().join("f");
        std::fs::write(&p, &all).unwrap();
        let file = File::open(&p).unwrap();
        for threads in [2, 5, 8] {
            let (d, s) = hash_windows::<sha2::Sha256>(&file, all.len() as u64, W, threads, None)
                .unwrap()
                .unwrap();
            assert_eq!((d, Sha256::from(s)), (Digest::of(&all), sha256(&all)));
        }
    }

    /// A file shorter than the length the windows were planned for (it shrank
    /// meanwhile) is reported, not hashed as if zeros followed; `hash_open_file`
    /// then hashes what is there, front to end.
    #[test]
    fn a_file_that_ends_early_is_hashed_again_whole() {
        const W: usize = blake3::CHUNK_LEN;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let all = data(3 * W);
        std::fs::write(&p, &all).unwrap();
        let file = File::open(&p).unwrap();
        assert!(
            hash_windows::<()>(&file, 4 * W as u64, W, 2, None)
                .unwrap()
                .is_none()
        );
        assert!(
            hash_windows::<sha2::Sha256>(&file, 4 * W as u64, W, 2, None)
                .unwrap()
                .is_none()
        );
        let (d, s, n) = hash_to_end::<sha2::Sha256>(&file, None).unwrap();
        assert_eq!(
            (d, Sha256::from(s), n),
            (Digest::of(&all), sha256(&all), all.len() as u64)
        );
    }

    /// A source file of `size` bytes of [`data`] in `dir`, and the path of a
    /// destination beside it (not created).
    fn source_and_destination(
        dir: &Path,
        size: usize,
    ) -> (Vec<u8>, std::path::PathBuf, std::path::PathBuf) {
        let data = data(size);
        let src = dir.join(format!("s{size}"));
        std::fs::write(&src, &data).unwrap();
        (data, src, dir.join(format!("d{size}")))
    }

    #[test]
    fn copy_hashing_copies_exactly_and_hashes_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        for size in SIZES {
            let (data, src, dst) = source_and_destination(dir.path(), size);
            let dest = File::create_new(&dst).unwrap();
            let (d, n) = copy_hashing(
                &File::open(&src).unwrap(),
                &dest,
                &File::open(&dst).unwrap(),
                None,
            )
            .unwrap();
            assert_eq!((d, n), (Digest::of(&data), size as u64), "size {size}");
            assert_eq!(std::fs::read(&dst).unwrap(), data, "size {size}");

            let dst = dir.path().join(format!("e{size}"));
            let dest = File::create_new(&dst).unwrap();
            let got = copy_hashing_with_sha256(
                &File::open(&src).unwrap(),
                &dest,
                &File::open(&dst).unwrap(),
                None,
            )
            .unwrap();
            let want = Hashed {
                digest: Digest::of(&data),
                sha256: sha256(&data),
                size: size as u64,
            };
            assert_eq!(got, want, "size {size}, with SHA-256");
            assert_eq!(std::fs::read(&dst).unwrap(), data, "size {size}");
        }
    }

    /// The early writeback of [`copy_hashing_with_sha256`]: with a sync every
    /// 1 MiB, copies of every size come out whole and hashed right, and the
    /// ones past 1 MiB were synced while they were hashed (the production
    /// interval, 128 MiB, is too large for a unit test's files).
    #[test]
    fn early_syncs_run_while_the_copy_is_hashed() {
        const EVERY: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        for size in SIZES {
            let (data, src, dst) = source_and_destination(dir.path(), size);
            let (src, dest) = (File::open(&src).unwrap(), File::create_new(&dst).unwrap());
            let (d, s, n, syncs) = copy_hashing_as::<sha2::Sha256>(
                file_copier(&src, &dest),
                &File::open(&dst).unwrap(),
                Some((&dest, EVERY)),
                None,
            )
            .unwrap();
            assert_eq!(
                (d, Sha256::from(s), n),
                (Digest::of(&data), sha256(&data), size as u64),
                "size {size}"
            );
            assert_eq!(std::fs::read(&dst).unwrap(), data, "size {size}");
            // At least one sync once the copy passed the interval, at most one
            // per interval copied.
            let most = size as u64 / EVERY;
            assert!(
                (most.min(1)..=most).contains(&syncs),
                "size {size}: {syncs} early syncs"
            );
        }
    }

    /// A stream in chunks that straddle the inline limit and the window.
    #[test]
    fn hash_stream_with_sha256_matches_for_any_chunking() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let all = data(2 * WINDOW + INLINE_HASH_BYTES + 3);
        for chunk in [1000, INLINE_HASH_BYTES, WINDOW + 1, all.len()] {
            let chunks: Vec<Result<Bytes>> = all
                .chunks(chunk)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let stream: crate::store::ByteStream = Box::pin(futures::stream::iter(chunks));
            let got = rt.block_on(hash_stream_with_sha256(stream, None)).unwrap();
            let want = Hashed {
                digest: Digest::of(&all),
                sha256: sha256(&all),
                size: all.len() as u64,
            };
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }
}
