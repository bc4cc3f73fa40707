//! An `ObjectStore` wrapper that counts every request, can fail the k-th one or
//! chosen multipart parts, can slow parts down, and can hold one request until
//! a test lets it go on: fault injection below the object stores, whatever the
//! store underneath (memory, local files, a server).

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use tokio::sync::Notify;

use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// One request as the wrapper saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// 1-based position among all requests through the wrapper.
    pub n: usize,
    /// `put`, `head`, `get`, `list`, `put_part`, `complete`, `abort`, …
    pub op: &'static str,
    /// The object or prefix.
    pub path: String,
    /// Whether the wrapper failed it.
    pub failed: bool,
}

/// A request held by [`Faults::pause_at`] until the test releases it.
#[derive(Debug, Default)]
pub struct Gate {
    reached: Notify,
    release: Notify,
}

impl Gate {
    /// Returns once the request has reached the gate (at once if it already
    /// has).
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held request go on.
    pub fn release(&self) {
        self.release.notify_one();
    }

    async fn hold(&self) {
        self.reached.notify_one();
        self.release.notified().await;
    }
}

/// What the wrapper does, shared between a test and every handle it made.
#[derive(Debug, Default)]
pub struct Faults {
    count: AtomicUsize,
    /// Fail the request with this number (0: none).
    fail_at: AtomicUsize,
    /// Fail every multipart part with one of these 1-based part numbers.
    fail_parts: Mutex<Vec<usize>>,
    /// Sleep this long before sending each part.
    part_delay: Mutex<Duration>,
    log: Mutex<Vec<Request>>,
    /// Sleep this long in each GET of a path containing the string.
    get_delay: Mutex<Option<(String, Duration)>>,
    /// Delayed GETs under way, and the most at once.
    gets_in_flight: AtomicUsize,
    most_gets_in_flight: AtomicUsize,
    /// Payload bytes sent (PUTs and parts) and received (GET bodies) since
    /// the log was last cleared.
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// The next request `op` of a path containing the string is held here.
    pause: Mutex<Option<(&'static str, String, Arc<Gate>)>>,
}

impl Faults {
    /// A fresh set of switches, all off.
    pub fn new() -> Arc<Self> {
        Arc::new(Faults::default())
    }

    /// Fails the `k`-th request from now on (1 = the next one).
    pub fn fail_request_in(&self, k: usize) {
        let now = self.count.load(Ordering::SeqCst);
        self.fail_at.store(now + k, Ordering::SeqCst);
    }

    /// Fails parts with these numbers (1-based within each upload).
    pub fn fail_parts(&self, parts: &[usize]) {
        *self
            .fail_parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = parts.to_vec();
    }

    /// Delays every part by `delay`.
    pub fn delay_parts(&self, delay: Duration) {
        *self
            .part_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Delays every GET (not HEAD) of a path containing `part` by `delay`,
    /// counting how many are under way at once
    /// ([`most_gets_in_flight`](Self::most_gets_in_flight)).
    pub fn delay_gets(&self, part: &str, delay: Duration) {
        *self
            .get_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((part.to_owned(), delay));
        self.most_gets_in_flight.store(0, Ordering::SeqCst);
    }

    /// The most delayed GETs that were under way at once.
    pub fn most_gets_in_flight(&self) -> usize {
        self.most_gets_in_flight.load(Ordering::SeqCst)
    }

    /// Holds the next request `op` (`"list"`, `"delete"`, …) of a path or
    /// prefix containing `part` at the returned gate, once. Only `"delete"`
    /// and `"list"` of a directory (`list_with_delimiter`) can be held: a
    /// delete before it is sent, a listing after its answer came back (so the
    /// caller acts on what it listed, and whatever happens while it is held
    /// is news to it).
    pub fn pause_at(&self, op: &'static str, part: &str) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.pause.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((op, part.to_owned(), Arc::clone(&gate)));
        gate
    }

    /// Holds this request if it is the one [`pause_at`](Self::pause_at) chose.
    async fn maybe_hold(&self, op: &str, path: &str) {
        let gate = {
            let mut pause = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
            match pause.as_ref() {
                Some((o, part, _)) if *o == op && path.contains(part.as_str()) => {
                    pause.take().map(|(_, _, gate)| gate)
                }
                _ => None,
            }
        };
        if let Some(gate) = gate {
            gate.hold().await;
        }
    }

    /// Turns every fault off (counting goes on).
    pub fn heal(&self) {
        self.fail_at.store(0, Ordering::SeqCst);
        self.fail_parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        *self
            .part_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Duration::ZERO;
    }

    /// Every request so far, in the order they were made.
    pub fn log(&self) -> Vec<Request> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the log and the byte counts (the request count goes on).
    pub fn clear_log(&self) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.bytes_sent.store(0, Ordering::SeqCst);
        self.bytes_received.store(0, Ordering::SeqCst);
    }

    /// Payload bytes sent (PUT bodies and parts) and received (the ranges
    /// GETs answered with) since the log was last cleared.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_sent.load(Ordering::SeqCst),
            self.bytes_received.load(Ordering::SeqCst),
        )
    }

    /// The requests logged with operation `op`.
    pub fn ops(&self, op: &str) -> Vec<Request> {
        self.log().into_iter().filter(|r| r.op == op).collect()
    }

    /// The request that was failed, if any.
    pub fn failed(&self) -> Option<Request> {
        self.log().into_iter().find(|r| r.failed)
    }

    /// Counts a request and says whether to fail it.
    fn record(&self, op: &'static str, path: impl fmt::Display) -> Result<()> {
        self.record_or_fail(op, path, false)
    }

    /// Counts a request and says whether to fail it; `fail` fails it regardless.
    fn record_or_fail(&self, op: &'static str, path: impl fmt::Display, fail: bool) -> Result<()> {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let failed = fail || self.fail_at.load(Ordering::SeqCst) == n;
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Request {
                n,
                op,
                path: path.to_string(),
                failed,
            });
        if failed {
            return Err(injected(op, path));
        }
        Ok(())
    }
}

/// The error an injected fault returns: what a lost connection looks like.
fn injected(op: &str, path: impl fmt::Display) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault: {op} {path}").into(),
    }
}

/// An object store that forwards every call to `inner`, through [`Faults`].
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn ObjectStore>, faults: Arc<Faults>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultyStore { inner, faults })
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

/// A failing list: one error.
fn failed_list<T: Send + 'static>(op: &str, path: String) -> BoxStream<'static, Result<T>> {
    let error = injected(op, path);
    stream::once(async move { Err(error) }).boxed()
}

fn prefix_name(prefix: Option<&Path>) -> String {
    prefix.map(|p| p.to_string()).unwrap_or_default()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.faults.record("put", location)?;
        let len = payload.content_length() as u64;
        self.faults.bytes_sent.fetch_add(len, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.faults.record("put_multipart", location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            faults: Arc::clone(&self.faults),
            path: location.to_string(),
            parts: 0,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        self.faults.record(op, location)?;
        let delay = self
            .faults
            .get_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|(part, _)| !options.head && location.as_ref().contains(part.as_str()));
        if let Some((_, delay)) = delay {
            let f = &self.faults;
            let now = f.gets_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            f.most_gets_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            f.gets_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let head = options.head;
        let got = self.inner.get_opts(location, options).await?;
        if !head {
            let len = got.range.end - got.range.start;
            self.faults.bytes_received.fetch_add(len, Ordering::SeqCst);
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.faults.record("get_ranges", location)?;
        let got = self.inner.get_ranges(location, ranges).await?;
        let len: usize = got.iter().map(Bytes::len).sum();
        self.faults
            .bytes_received
            .fetch_add(len as u64, Ordering::SeqCst);
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if let Err(e) = self.faults.record("delete", "…") {
            return stream::once(async move { Err(e) }).boxed();
        }
        let faults = Arc::clone(&self.faults);
        let held = locations
            .then(move |location| {
                let faults = Arc::clone(&faults);
                async move {
                    if let Ok(path) = &location {
                        faults.maybe_hold("delete", path.as_ref()).await;
                    }
                    location
                }
            })
            .boxed();
        self.inner.delete_stream(held)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let name = prefix_name(prefix);
        match self.faults.record("list", &name) {
            Ok(()) => self.inner.list(prefix),
            Err(_) => failed_list("list", name),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let name = prefix_name(prefix);
        match self.faults.record("list", &name) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(_) => failed_list("list", name),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let name = prefix_name(prefix);
        self.faults.record("list", &name)?;
        let listed = self.inner.list_with_delimiter(prefix).await;
        self.faults.maybe_hold("list", &name).await;
        listed
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.faults.record("copy", from)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.faults.record("rename", from)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose parts, completion and abort go through [`Faults`].
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
    path: String,
    parts: usize,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts += 1;
        let part = self.parts;
        let name = format!("{} part {part}", self.path);
        let chosen = self
            .faults
            .fail_parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&part);
        let recorded = self.faults.record_or_fail("put_part", &name, chosen);
        let delay = *self
            .faults
            .part_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recorded.is_ok() {
            let len = data.content_length() as u64;
            self.faults.bytes_sent.fetch_add(len, Ordering::SeqCst);
        }
        // A failed part never reaches the store underneath.
        let upload = recorded.map(|()| self.inner.put_part(data));
        async move {
            tokio::time::sleep(delay).await;
            upload?.await
        }
        .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.faults.record("complete", &self.path)?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.faults.record("abort", &self.path)?;
        self.inner.abort().await
    }
}
