//! Progress of long operations: a callback that hears how many files and bytes
//! an operation will handle, the bytes as they move, and each file as it is done.
//!
//! The byte counts come from the stores through a [`Meter`] that the registry
//! sets, one per file, around the store call that works on it (a task-local, so
//! the [`ArtifactStore`](crate::store::ArtifactStore) trait does not change);
//! see [`FileProgress`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One step of a long operation, as reported to a [`Progress`] callback.
///
/// An operation sends one [`Started`](ProgressEvent::Started); then, for each
/// file, [`Bytes`](ProgressEvent::Bytes) deltas while its bytes are read,
/// written or hashed, and one [`File`](ProgressEvent::File) once it is done.
/// Files finish in any order and several may be in flight at once, so the
/// deltas of different files interleave; a file's own deltas all come before
/// its `File`. If the operation fails, the events stop where it stopped;
/// nothing says so but the operation's error.
///
/// The contract between the counts:
///
/// - Over a successful operation, the `Bytes` deltas add up to
///   `Started`'s `bytes`, and to the sum of the `File` events' `bytes`.
///   (The one exception: a local file that changes size while it is
///   registered; the `File` event and the version then hold the size stored,
///   and the deltas add up to the `File` events'.)
/// - Within one file, deltas come at most every 1 MiB of its progress (the last
///   one may be smaller), so counting them costs nothing noticeable whatever the
///   file's size.
/// - A file whose bytes are not read (known from the hash cache, found already
///   stored before reading, or placed by a store that reports no bytes) gets one
///   delta of its whole size when it is done, just before its `File`. An empty
///   file gets no delta.
///
/// So a consumer counts *either* `Bytes` (a bar that moves within a large file)
/// *or* `File` (one step per file), never both: each adds up to the total.
///
/// What counts as a file, per operation:
///
/// - [`Session::register`](crate::Session::register) with
///   [`NewVersion::progress`](crate::NewVersion::progress): every file of the
///   new version, once each, whether its bytes were stored new, found already
///   stored (also a file repeating another of the same version) or known from
///   the hash cache. The manifest is not a file.
/// - [`Registry::fetch`](crate::Registry::fetch) with
///   [`FetchOptions::progress`](crate::FetchOptions::progress): every file of
///   the version, once placed and verified.
/// - [`Registry::verify_with_progress`](crate::Registry::verify_with_progress):
///   every file of the version, once its blob is re-hashed.
/// - [`Registry::check_with_progress`](crate::Registry::check_with_progress):
///   every distinct blob, manifests included; see there.
/// - [`Registry::gc_with_progress`](crate::Registry::gc_with_progress): every
///   distinct version manifest read while marking, with `bytes: 0` (so no
///   `Bytes` deltas: gc counts manifests, not bytes); see there.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The work is known: `files` files holding `bytes` bytes in total. Sent
    /// once, before any other event.
    Started {
        /// How many `File` events will follow if the operation succeeds.
        files: u64,
        /// Their total size: what the `Bytes` deltas, and the `File` events'
        /// `bytes`, add up to.
        bytes: u64,
    },
    /// `bytes` more bytes of the files in flight were read, written or hashed:
    /// a delta, to add to the bytes done.
    Bytes {
        /// How many bytes more (never 0).
        bytes: u64,
    },
    /// One file is done (stored, found already stored, placed, or re-hashed):
    /// its path in the version and its size.
    File {
        /// The file's path in the version (for `check`, what the blob is).
        path: String,
        /// Its size in bytes.
        bytes: u64,
    },
}

/// A callback that receives [`ProgressEvent`]s.
///
/// Cheap to clone (an `Arc`). It is called from whichever task or thread does
/// the work, possibly several at once, so it must be quick and must not block:
/// count, store in an atomic, or send on a channel, and draw elsewhere. A panic
/// in the callback is a panic in the operation.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use modelreg::{Actor, ArtifactSource, CreateModel, FetchOptions, NewVersion, Progress,
///                ProgressEvent, Registry};
///
/// // A byte count for a bar: `Bytes` deltas move it within large files.
/// // (Counting `File` sizes instead would add up to the same total.)
/// let (total, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
/// let progress = Progress::new({
///     let (total, done) = (Arc::clone(&total), Arc::clone(&done));
///     move |event| match event {
///         ProgressEvent::Started { bytes, .. } => total.store(*bytes, Ordering::Relaxed),
///         ProgressEvent::Bytes { bytes } => {
///             done.fetch_add(*bytes, Ordering::Relaxed);
///         }
///         _ => {}
///     }
/// });
///
/// let registry = Registry::in_memory();
/// let me = registry.acting_as(Actor::new("alice")?);
/// me.create_model("fraud", CreateModel::new()).await?;
/// let files = ArtifactSource::files([("model.bin", "weights"), ("config.json", "{}")])?;
/// me.register("fraud", files, NewVersion::new().progress(progress.clone())).await?;
/// assert_eq!((total.load(Ordering::Relaxed), done.load(Ordering::Relaxed)), (9, 9));
///
/// // The same callback on a fetch: it starts again from the new total.
/// done.store(0, Ordering::Relaxed);
/// # let tmp = tempfile::tempdir().unwrap();
/// registry.fetch("fraud/1", tmp.path().join("out"), FetchOptions::new().progress(progress)).await?;
/// assert_eq!(done.load(Ordering::Relaxed), 9);
/// # Ok::<(), modelreg::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&ProgressEvent) + Send + Sync>);

impl Progress {
    /// A callback that `f` implements.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use modelreg::{Progress, ProgressEvent};
    /// // Collecting every event, as a test would.
    /// let events = std::sync::Arc::new(Mutex::new(Vec::<ProgressEvent>::new()));
    /// let progress = Progress::new({
    ///     let events = events.clone();
    ///     move |e| {
    ///         if let Ok(mut events) = events.lock() {
    ///             events.push(e.clone());
    ///         }
    ///     }
    /// });
    /// # let _ = progress;
    /// ```
    pub fn new(f: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(f))
    }

    /// Calls the callback with `event`.
    pub(crate) fn emit(&self, event: ProgressEvent) {
        (self.0)(&event)
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Calls for an optional callback: each does nothing without one.
pub(crate) trait ProgressExt {
    /// Reports that `files` files of `bytes` bytes in total are to be done.
    fn started(&self, files: u64, bytes: u64);
    /// Reports that the file at `path`, of `bytes` bytes, none of which was
    /// metered, is done: one `Bytes` delta of its size, then its `File`.
    fn file(&self, path: &str, bytes: u64);
}

impl ProgressExt for Option<&Progress> {
    fn started(&self, files: u64, bytes: u64) {
        if let Some(p) = self {
            p.emit(ProgressEvent::Started { files, bytes })
        }
    }

    fn file(&self, path: &str, bytes: u64) {
        if let Some(p) = self {
            if bytes > 0 {
                p.emit(ProgressEvent::Bytes { bytes });
            }
            p.emit(ProgressEvent::File {
                path: path.to_owned(),
                bytes,
            })
        }
    }
}

/// The least progress of one file between two `Bytes` events (but its last).
pub(crate) const STEP: u64 = 1 << 20;

tokio::task_local! {
    /// The meter of the file that the store call being polled works on.
    static METER: Meter;
}

/// The meter of the file the current store call works on, if the caller asked
/// for progress: what a store reads in the async part of a method, and passes
/// on to its blocking closures and spawned tasks (which do not see the task's
/// locals).
pub(crate) fn meter() -> Option<Meter> {
    METER.try_with(Meter::clone).ok()
}

/// A counter of bytes moved, for a store: it calls [`add`](Meter::add) for every
/// run of bytes it reads, writes or hashes, from any thread, and knows nothing
/// of files, versions or events.
///
/// Behind it is one file of a long operation ([`FileProgress`]): its size caps
/// what is reported, and reports come every [`STEP`] at most, so `add` is one
/// atomic addition between two reports.
#[derive(Clone)]
pub(crate) struct Meter(Arc<MeterState>);

struct MeterState {
    progress: Progress,
    /// The file's expected size: its deltas never add up to more.
    size: u64,
    /// How many times the store moves each byte; see [`Meter::passes`].
    passes: AtomicU64,
    /// Bytes moved, every pass counted.
    moved: AtomicU64,
    /// The value of `moved` from which the next report is due.
    due: AtomicU64,
    /// Bytes reported so far. Reports are sent with it held, so the last delta
    /// of a file (sent by [`FileProgress::done`]) follows all the others.
    reported: Mutex<Reported>,
}

#[derive(Default)]
struct Reported {
    bytes: u64,
    /// The file is done: late additions are not reported.
    done: bool,
}

impl Meter {
    fn new(progress: Progress, size: u64) -> Self {
        Meter(Arc::new(MeterState {
            progress,
            size,
            passes: AtomicU64::new(1),
            moved: AtomicU64::new(0),
            due: AtomicU64::new(STEP),
            reported: Mutex::new(Reported::default()),
        }))
    }

    /// Says that the store will move each byte `passes` times (hash the file,
    /// then upload it: 2), so that the count reaches the file's size only at the
    /// end of the last pass. Called before any [`add`](Meter::add).
    pub(crate) fn passes(&self, passes: u64) {
        let s = &*self.0;
        let passes = passes.max(1);
        let reported = s.lock();
        s.passes.store(passes, Ordering::Relaxed);
        s.due
            .store(next_due(reported.bytes, passes), Ordering::Relaxed);
    }

    /// Counts `n` more bytes moved.
    pub(crate) fn add(&self, n: u64) {
        let s = &*self.0;
        let moved = s.moved.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if moved < s.due.load(Ordering::Relaxed) {
            return;
        }
        let mut reported = s.lock();
        if reported.done {
            return;
        }
        let passes = s.passes.load(Ordering::Relaxed);
        // `moved` may be stale by now; the latest count is at least it.
        let moved = s.moved.load(Ordering::Relaxed).max(moved);
        let bytes = (moved / passes).min(s.size);
        if bytes >= reported.bytes.saturating_add(STEP) {
            let delta = bytes - reported.bytes;
            reported.bytes = bytes;
            s.progress.emit(ProgressEvent::Bytes { bytes: delta });
        }
        s.due
            .store(next_due(reported.bytes, passes), Ordering::Relaxed);
    }
}

impl MeterState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Reported> {
        self.reported.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The count of moved bytes from which a report is due, once `reported` bytes
/// are reported.
fn next_due(reported: u64, passes: u64) -> u64 {
    reported.saturating_add(STEP).saturating_mul(passes)
}

/// Counts for an optional meter: each does nothing without one.
pub(crate) trait MeterExt {
    /// [`Meter::add`], if there is a meter.
    fn add(&self, n: u64);
}

impl MeterExt for Option<&Meter> {
    fn add(&self, n: u64) {
        if let Some(m) = self {
            m.add(n)
        }
    }
}

/// The registry's side of one file's progress: the [`Meter`] its store call
/// runs with, and the `File` event that ends it. Without a callback it holds
/// nothing and costs nothing.
pub(crate) struct FileProgress(Option<Meter>);

impl FileProgress {
    /// The progress of one file of `size` bytes (as far as the operation knows
    /// before it moves them), reported to `progress`.
    pub(crate) fn new(progress: Option<&Progress>, size: u64) -> Self {
        FileProgress(progress.map(|p| Meter::new(p.clone(), size)))
    }

    /// Runs `work` (the store call for this file) with this file's meter as
    /// the task's [`meter`].
    pub(crate) async fn track<F: Future>(&self, work: F) -> F::Output {
        match &self.0 {
            Some(meter) => METER.scope(meter.clone(), work).await,
            None => work.await,
        }
    }

    /// Reports the file at `path` done with `bytes` bytes: the delta that
    /// brings its `Bytes` to `bytes` (all of them if the store reported none),
    /// then its `File`.
    pub(crate) fn done(&self, path: &str, bytes: u64) {
        let Some(meter) = &self.0 else {
            return;
        };
        let s = &*meter.0;
        let mut reported = s.lock();
        reported.done = true;
        let delta = bytes.saturating_sub(reported.bytes);
        reported.bytes = reported.bytes.max(bytes);
        if delta > 0 {
            s.progress.emit(ProgressEvent::Bytes { bytes: delta });
        }
        s.progress.emit(ProgressEvent::File {
            path: path.to_owned(),
            bytes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A meter and the events it sent.
    fn meter(size: u64) -> (FileProgress, Arc<Mutex<Vec<ProgressEvent>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let progress = Progress::new({
            let events = Arc::clone(&events);
            move |e| events.lock().unwrap().push(e.clone())
        });
        (FileProgress::new(Some(&progress), size), events)
    }

    fn deltas(events: &[ProgressEvent]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::Bytes { bytes } => Some(*bytes),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reports_every_step_caps_at_the_size_and_tops_up_when_done() {
        let size = 5 * STEP + 7;
        let (file, events) = meter(size);
        let m = file.0.clone().unwrap();
        // Small additions are gathered into steps.
        for _ in 0..(3 * STEP / 4096) {
            m.add(4096);
        }
        assert_eq!(deltas(&events.lock().unwrap()), [STEP, STEP, STEP]);
        // A pass over the whole file and more (a re-read) is capped at its size.
        m.add(2 * size);
        assert_eq!(deltas(&events.lock().unwrap()).iter().sum::<u64>(), size);
        file.done("f", size);
        let events = events.lock().unwrap();
        assert_eq!(deltas(&events).iter().sum::<u64>(), size);
        assert_eq!(
            events.last(),
            Some(&ProgressEvent::File {
                path: "f".into(),
                bytes: size
            })
        );
        // Nothing after the file is done.
        drop(events);
        m.add(STEP * 10);
    }

    #[test]
    fn two_passes_reach_the_size_at_the_end_of_the_second() {
        let size = 4 * STEP;
        let (file, events) = meter(size);
        let m = file.0.clone().unwrap();
        m.passes(2);
        m.add(size);
        assert_eq!(
            deltas(&events.lock().unwrap()).iter().sum::<u64>(),
            size / 2
        );
        m.add(size);
        assert_eq!(deltas(&events.lock().unwrap()).iter().sum::<u64>(), size);
        file.done("f", size);
        assert_eq!(events.lock().unwrap().len(), 3);
    }

    #[test]
    fn an_unread_file_gets_one_delta_and_an_empty_one_none() {
        let (file, events) = meter(10);
        file.done("f", 10);
        assert_eq!(
            *events.lock().unwrap(),
            [
                ProgressEvent::Bytes { bytes: 10 },
                ProgressEvent::File {
                    path: "f".into(),
                    bytes: 10
                }
            ]
        );
        let (file, events) = meter(0);
        file.done("e", 0);
        assert_eq!(deltas(&events.lock().unwrap()), Vec::<u64>::new());
    }

    #[tokio::test]
    async fn the_meter_is_the_tracked_call_s_only() {
        assert!(meter_now().is_none());
        let (a, _) = meter(1);
        let (b, _) = meter(2);
        let size = |m: Option<Meter>| m.map(|m| m.0.size);
        let (x, y) = futures::join!(
            a.track(async { size(meter_now()) }),
            b.track(async { size(meter_now()) })
        );
        assert_eq!((x, y), (Some(1), Some(2)));
        assert!(meter_now().is_none());
        // Without a callback nothing is set.
        let none = FileProgress::new(None, 5);
        assert!(none.track(async { meter_now() }).await.is_none());
    }

    fn meter_now() -> Option<Meter> {
        super::meter()
    }
}
