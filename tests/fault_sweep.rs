//! The k-th store operation fails — for every k of a workload. A wrapper around
//! the memory stores counts every operation on either store; at operation k the
//! process "crashes": that operation fails (and, in the torn variant, its write
//! lands although the caller sees an error, as when power fails after the write
//! but before the acknowledgement), and so does everything after it. Then a fresh
//! registry "reboots" over the surviving stores and must: open; hold every
//! command acknowledged before the crash and at most the one in flight; show no
//! version whose bytes are missing; and, in the clean variant, finish the
//! workload by retrying from the failed command.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use modelreg::store::{
    ArtifactStore, BlobMeta, ByteStream, Checkpoint, Imported, LinkMode, LogRecord,
    MemoryArtifactStore, MemoryMetadataStore, MetadataItem, MetadataStore, Placed,
};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Error, Metrics, ModelState, NewVersion, Registry,
    Result, SetAlias, Stage,
};

/// Shared by both wrapped stores: which operation crashes, and whether its write
/// lands anyway.
#[derive(Debug)]
struct Crash {
    ops: AtomicUsize,
    at: usize,
    torn: bool,
}

enum Fate {
    Proceed,
    /// Fail without writing.
    Fail,
    /// Write, then fail.
    Tear,
}

impl Crash {
    fn next(&self) -> Fate {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        match n.cmp(&self.at) {
            std::cmp::Ordering::Less => Fate::Proceed,
            std::cmp::Ordering::Equal if self.torn => Fate::Tear,
            _ => Fate::Fail,
        }
    }
}

fn crashed(op: &'static str) -> Error {
    Error::Storage {
        store: "crashing test store".into(),
        operation: op,
        key: String::new(),
        source: "simulated crash".into(),
    }
}

#[derive(Debug)]
struct Meta(MemoryMetadataStore, Arc<Crash>);

/// Runs a write through the crash schedule.
macro_rules! write_op {
    ($crash:expr, $op:literal, $call:expr) => {
        match $crash.next() {
            Fate::Proceed => $call,
            Fate::Fail => Err(crashed($op)),
            Fate::Tear => {
                let _ = $call;
                Err(crashed($op))
            }
        }
    };
}

/// Runs a read through the crash schedule (a torn read is just a failed one).
macro_rules! read_op {
    ($crash:expr, $op:literal, $call:expr) => {
        match $crash.next() {
            Fate::Proceed => $call,
            _ => Err(crashed($op)),
        }
    };
}

#[async_trait]
impl MetadataStore for Meta {
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
        write_op!(self.1, "append", self.0.append(log, seq, record).await)
    }
    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        read_op!(
            self.1,
            "read_after",
            self.0.read_after(log, after, limit).await
        )
    }
    async fn list_logs(&self) -> Result<Vec<String>> {
        read_op!(self.1, "list_logs", self.0.list_logs().await)
    }
    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
        write_op!(
            self.1,
            "put_checkpoint",
            self.0.put_checkpoint(log, seq, bytes).await
        )
    }
    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
        read_op!(
            self.1,
            "latest_checkpoint",
            self.0.latest_checkpoint(log).await
        )
    }
    async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()> {
        write_op!(self.1, "put_lease", self.0.put_lease(key, bytes).await)
    }
    async fn get_lease(&self, key: &str) -> Result<Option<Bytes>> {
        read_op!(self.1, "get_lease", self.0.get_lease(key).await)
    }
    async fn list_leases(&self) -> Result<Vec<String>> {
        read_op!(self.1, "list_leases", self.0.list_leases().await)
    }
    async fn delete_lease(&self, key: &str) -> Result<()> {
        write_op!(self.1, "delete_lease", self.0.delete_lease(key).await)
    }
    fn location(&self, log: &str, item: MetadataItem) -> String {
        self.0.location(log, item)
    }
}

#[derive(Debug)]
struct Art(MemoryArtifactStore, Arc<Crash>);

#[async_trait]
impl ArtifactStore for Art {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
        read_op!(self.1, "head", self.0.head(digest).await)
    }
    async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
        write_op!(self.1, "put_stream", self.0.put_stream(digest, data).await)
    }
    async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()> {
        write_op!(self.1, "put_file", self.0.put_file(digest, path).await)
    }
    async fn import_file(&self, path: &Path, mode: LinkMode) -> Result<Imported> {
        write_op!(self.1, "import_file", self.0.import_file(path, mode).await)
    }
    async fn get(&self, digest: &Digest) -> Result<ByteStream> {
        read_op!(self.1, "get", self.0.get(digest).await)
    }
    async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes> {
        read_op!(self.1, "get_range", self.0.get_range(digest, range).await)
    }
    async fn delete(&self, digest: &Digest) -> Result<()> {
        write_op!(self.1, "delete", self.0.delete(digest).await)
    }
    async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
        read_op!(self.1, "list", self.0.list().await)
    }
    async fn materialize(&self, digest: &Digest, dest: &Path, mode: LinkMode) -> Result<Placed> {
        read_op!(
            self.1,
            "materialize",
            self.0.materialize(digest, dest, mode).await
        )
    }
    fn location(&self, digest: &Digest) -> String {
        self.0.location(digest)
    }
}

const STEPS: usize = 11;

/// Step `i` of the workload. Each step is one command, i.e. at most one event.
async fn step(reg: &Registry, i: usize) -> Result<()> {
    let me = Actor::new("ci")?;
    let approver = Actor::new("approver")?;
    match i {
        0 => reg
            .acting_as(me)
            .create_model("m", CreateModel::new())
            .await
            .map(drop),
        1 | 2 => reg
            .acting_as(me)
            .register(
                "m",
                ArtifactSource::files([
                    ("weights.bin", format!("weights {i}")),
                    ("config.json", "{}".to_owned()),
                ])?,
                NewVersion::new().metrics(Metrics::new().with("auc", 0.5 + i as f64 / 10.0)?),
            )
            .await
            .map(drop),
        3 => reg
            .acting_as(me.clone())
            .transition("m/1", Stage::Staging, "")
            .await
            .map(drop),
        4 => reg
            .acting_as(me.clone())
            .transition("m/1", Stage::Validation, "")
            .await
            .map(drop),
        5 => reg.acting_as(me.clone()).promote("m/1", "").await.map(drop),
        6 => reg
            .acting_as(me)
            .set_alias("m/2", "challenger", SetAlias::new())
            .await
            .map(drop),
        7 => reg
            .acting_as(approver.clone())
            .approve("m/2", Stage::Production, "")
            .await
            .map(drop),
        8 => reg
            .acting_as(me.clone())
            .add_metrics("m/2", Metrics::new().with("f1", 0.7)?)
            .await
            .map(drop),
        9 => reg
            .acting_as(me.clone())
            .transition("m/2", Stage::Staging, "")
            .await
            .map(drop),
        _ => reg
            .acting_as(me.clone())
            .transition("m/2", Stage::Validation, "")
            .await
            .map(drop),
    }
}

fn registry(meta: Arc<dyn MetadataStore>, art: Arc<dyn ArtifactStore>) -> Registry {
    Registry::builder()
        .metadata(meta)
        .artifacts(art)
        .checkpoint_every(3)
        .build()
        .expect("registry")
}

/// Runs the workload until the first error; returns the stores, how many steps
/// were acknowledged, and how many store operations were made.
async fn run(at: usize, torn: bool) -> (MemoryMetadataStore, MemoryArtifactStore, usize, usize) {
    let crash = Arc::new(Crash {
        ops: AtomicUsize::new(0),
        at,
        torn,
    });
    let (meta, art) = (MemoryMetadataStore::new(), MemoryArtifactStore::new());
    let reg = registry(
        Arc::new(Meta(meta.clone(), crash.clone())),
        Arc::new(Art(art.clone(), crash.clone())),
    );
    let mut acked = 0;
    for i in 0..STEPS {
        if step(&reg, i).await.is_err() {
            break;
        }
        acked += 1;
    }
    (meta, art, acked, crash.ops.load(Ordering::SeqCst))
}

#[tokio::test]
async fn every_crash_point_keeps_acknowledged_commands_and_no_partial_version() {
    // A fault-free run counts the operations and gives the expected end state.
    let (meta, art, acked, total) = run(usize::MAX, false).await;
    assert_eq!(acked, STEPS);
    let reference = registry(Arc::new(meta), Arc::new(art))
        .events("m")
        .await
        .expect("events");
    assert_eq!(reference.len(), STEPS);

    let mut points = 0;
    for at in 0..total {
        for torn in [false, true] {
            let (meta, art, acked, _) = run(at, torn).await;
            assert!(acked < STEPS, "crash at op {at} was never reached");
            let reg = registry(Arc::new(meta.clone()), Arc::new(art.clone()));
            let label = format!("crash at op {at} (torn: {torn}) after {acked} steps");
            let events = match reg.events("m").await {
                Ok(events) => events,
                Err(Error::NotFound { .. }) => Vec::new(),
                Err(e) => panic!("{label}: the log does not open: {e}"),
            };
            // Everything acknowledged, and at most the command in flight.
            assert!(
                events.len() == acked || events.len() == acked + 1,
                "{label}: {} events",
                events.len()
            );
            for (got, want) in events.iter().zip(&reference) {
                assert_eq!(got.kind.name(), want.kind.name(), "{label}");
            }
            if !events.is_empty() {
                let state = reg.model("m").await.expect("model");
                assert_eq!(ModelState::replay(events.clone()).expect("replay"), state);
                for v in state.versions() {
                    reg.verify(format!("m/{}", v.number))
                        .await
                        .unwrap_or_else(|e| panic!("{label}: partial version {}: {e}", v.number));
                }
            }
            // After a clean crash the failed command simply runs again.
            if !torn {
                assert_eq!(events.len(), acked, "{label}");
                for i in acked..STEPS {
                    step(&reg, i)
                        .await
                        .unwrap_or_else(|e| panic!("{label}: retry of step {i}: {e}"));
                }
                let finished = reg.events("m").await.expect("events");
                let kinds: Vec<&str> = finished.iter().map(|e| e.kind.name()).collect();
                let want: Vec<&str> = reference.iter().map(|e| e.kind.name()).collect();
                assert_eq!(kinds, want, "{label}");
            }
            points += 1;
        }
    }
    eprintln!("fault sweep: {total} store operations, {points} crash points, 0 lost");
    assert!(points >= 2 * total);
}

/// A store that, like an object store retrying a PUT whose first attempt landed,
/// writes the record and then reports it as already taken.
#[derive(Debug)]
struct RetriedPut(MemoryMetadataStore);

#[async_trait]
impl MetadataStore for RetriedPut {
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
        self.0.append(log, seq, record).await?;
        Err(Error::AlreadyExists {
            what: format!("record {seq} of log '{log}'"),
        })
    }
    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        self.0.read_after(log, after, limit).await
    }
    async fn list_logs(&self) -> Result<Vec<String>> {
        self.0.list_logs().await
    }
    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
        self.0.put_checkpoint(log, seq, bytes).await
    }
    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
        self.0.latest_checkpoint(log).await
    }
    async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.0.put_lease(key, bytes).await
    }
    async fn get_lease(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.get_lease(key).await
    }
    async fn list_leases(&self) -> Result<Vec<String>> {
        self.0.list_leases().await
    }
    async fn delete_lease(&self, key: &str) -> Result<()> {
        self.0.delete_lease(key).await
    }
    fn location(&self, log: &str, item: MetadataItem) -> String {
        self.0.location(log, item)
    }
}

#[tokio::test]
async fn a_retried_put_that_landed_is_our_write_not_a_conflict() {
    let meta = MemoryMetadataStore::new();
    let reg = registry(
        Arc::new(RetriedPut(meta.clone())),
        Arc::new(MemoryArtifactStore::new()),
    );
    for i in 0..STEPS {
        step(&reg, i)
            .await
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
    }
    // Each command appended exactly once: no duplicate registration or move.
    let events = registry(Arc::new(meta), Arc::new(MemoryArtifactStore::new()))
        .events("m")
        .await
        .expect("events");
    assert_eq!(events.len(), STEPS);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind.name() == "version_registered")
            .count(),
        2
    );
}
