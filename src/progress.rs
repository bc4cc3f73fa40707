//! Progress of long operations: a callback that hears how many files and bytes
//! an operation will handle, then each file as it is done.

use std::fmt;
use std::sync::Arc;

/// One step of a long operation, as reported to a [`Progress`] callback.
///
/// An operation sends one [`Started`](ProgressEvent::Started), then one
/// [`File`](ProgressEvent::File) per file as each is done, in the order they
/// finish (several may be in flight at once). If it fails, the events stop
/// where it stopped; nothing says so but the operation's error.
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
///   distinct version manifest read while marking, with `bytes: 0`; see there.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The work is known: `files` files holding `bytes` bytes in total. Sent
    /// once, before any `File`.
    Started {
        /// How many `File` events will follow if the operation succeeds.
        files: u64,
        /// Their total size: what their `bytes` add up to.
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
/// let (total, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
/// let progress = Progress::new({
///     let (total, done) = (Arc::clone(&total), Arc::clone(&done));
///     move |event| match event {
///         ProgressEvent::Started { bytes, .. } => total.store(*bytes, Ordering::Relaxed),
///         ProgressEvent::File { bytes, .. } => {
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

    /// Reports that `files` files of `bytes` bytes in total are to be done.
    pub(crate) fn started(&self, files: u64, bytes: u64) {
        self.emit(ProgressEvent::Started { files, bytes })
    }

    /// Reports that the file at `path`, of `bytes` bytes, is done.
    pub(crate) fn file(&self, path: impl Into<String>, bytes: u64) {
        self.emit(ProgressEvent::File {
            path: path.into(),
            bytes,
        })
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Calls for an optional callback: each does nothing without one.
pub(crate) trait ProgressExt {
    /// [`Progress::started`], if there is a callback.
    fn started(&self, files: u64, bytes: u64);
    /// [`Progress::file`], if there is a callback.
    fn file(&self, path: &str, bytes: u64);
}

impl ProgressExt for Option<&Progress> {
    fn started(&self, files: u64, bytes: u64) {
        if let Some(p) = self {
            p.started(files, bytes)
        }
    }

    fn file(&self, path: &str, bytes: u64) {
        if let Some(p) = self {
            p.file(path, bytes)
        }
    }
}
