//! The registry under store faults, injected by wrapping memory stores: writers
//! that always lose the race, appends and uploads that fail, checkpoints that cannot
//! be written or read back as garbage. A failed command leaves nothing behind and
//! the registry keeps working.

#[macro_use]
mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::registry_suite::{actor, create, event_count, register_bytes, version_count};
use futures::stream::BoxStream;
use modelreg::store::{
    ArtifactStore, BlobMeta, ByteStream, Checkpoint, Imported, LinkMode, LogRecord,
    MemoryArtifactStore, MemoryMetadataStore, MetadataItem, MetadataStore, Placed,
};
use modelreg::{
    ArtifactSource, Digest, Error, Metrics, ModelState, NewVersion, Registry, Result, RetryPolicy,
};

/// Switches for the faults, shared by a test and its stores.
#[derive(Debug, Default)]
struct Faults {
    /// Every append reports that another writer took the position, writing nothing.
    lose_appends: AtomicBool,
    /// Every append fails with a storage error, writing nothing.
    fail_appends: AtomicBool,
    /// Every checkpoint write fails.
    fail_checkpoints: AtomicBool,
    /// Checkpoints read back as these bytes instead of what was written.
    garbage_checkpoints: AtomicBool,
    /// Blob puts fail once this many have succeeded.
    puts_before_failure: AtomicUsize,
    /// Append calls seen.
    appends: AtomicUsize,
    /// Successful blob puts.
    puts: AtomicUsize,
    /// The next log read waits for `release`.
    stall_next_read: AtomicBool,
    release: tokio::sync::Notify,
}

impl Faults {
    fn new() -> Arc<Self> {
        let f = Faults::default();
        f.puts_before_failure.store(usize::MAX, Ordering::SeqCst);
        Arc::new(f)
    }

    fn on(flag: &AtomicBool) -> bool {
        flag.load(Ordering::SeqCst)
    }
}

/// A storage error as a backend would report it.
fn injected(operation: &'static str, key: &str) -> Error {
    Error::Storage {
        store: "faulty test store".into(),
        operation,
        key: key.into(),
        source: "injected fault".into(),
    }
}

#[derive(Debug)]
struct FaultyMetadata {
    inner: MemoryMetadataStore,
    faults: Arc<Faults>,
}

#[async_trait]
impl MetadataStore for FaultyMetadata {
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
        self.faults.appends.fetch_add(1, Ordering::SeqCst);
        if Faults::on(&self.faults.lose_appends) {
            return Err(Error::AlreadyExists {
                what: format!("record {seq} of log '{log}'"),
            });
        }
        if Faults::on(&self.faults.fail_appends) {
            return Err(injected("append", log));
        }
        self.inner.append(log, seq, record).await
    }

    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        if self.faults.stall_next_read.swap(false, Ordering::SeqCst) {
            self.faults.release.notified().await;
        }
        self.inner.read_after(log, after, limit).await
    }

    async fn list_logs(&self) -> Result<Vec<String>> {
        self.inner.list_logs().await
    }

    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
        if Faults::on(&self.faults.fail_checkpoints) {
            return Err(injected("put_checkpoint", log));
        }
        self.inner.put_checkpoint(log, seq, bytes).await
    }

    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
        let cp = self.inner.latest_checkpoint(log).await?;
        if Faults::on(&self.faults.garbage_checkpoints) {
            return Ok(cp.map(|c| Checkpoint {
                seq: c.seq,
                bytes: Bytes::from_static(b"\x00 not a checkpoint"),
            }));
        }
        Ok(cp)
    }

    async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.inner.put_lease(key, bytes).await
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.get_lease(key).await
    }

    async fn list_leases(&self) -> Result<Vec<String>> {
        self.inner.list_leases().await
    }

    async fn delete_lease(&self, key: &str) -> Result<()> {
        self.inner.delete_lease(key).await
    }

    fn location(&self, log: &str, item: MetadataItem) -> String {
        self.inner.location(log, item)
    }
}

#[derive(Debug)]
struct FaultyArtifacts {
    inner: MemoryArtifactStore,
    faults: Arc<Faults>,
}

impl FaultyArtifacts {
    fn before_put(&self, key: &str) -> Result<()> {
        let done = self.faults.puts.load(Ordering::SeqCst);
        if done >= self.faults.puts_before_failure.load(Ordering::SeqCst) {
            return Err(injected("put", key));
        }
        Ok(())
    }

    fn after_put<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_ok() {
            self.faults.puts.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
}

#[async_trait]
impl ArtifactStore for FaultyArtifacts {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
        self.inner.head(digest).await
    }

    async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
        self.before_put(&digest.to_string())?;
        let r = self.inner.put_stream(digest, data).await;
        self.after_put(r)
    }

    async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()> {
        self.before_put(&digest.to_string())?;
        let r = self.inner.put_file(digest, path).await;
        self.after_put(r)
    }

    async fn import_file(&self, path: &Path, mode: LinkMode) -> Result<Imported> {
        self.before_put(&path.display().to_string())?;
        let r = self.inner.import_file(path, mode).await;
        self.after_put(r)
    }

    async fn get(&self, digest: &Digest) -> Result<ByteStream> {
        self.inner.get(digest).await
    }

    async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(digest, range).await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        self.inner.delete(digest).await
    }

    async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
        self.inner.list().await
    }

    async fn materialize(&self, digest: &Digest, dest: &Path, mode: LinkMode) -> Result<Placed> {
        self.inner.materialize(digest, dest, mode).await
    }
    fn location(&self, digest: &Digest) -> String {
        self.inner.location(digest)
    }
}

/// Memory stores behind fault switches; `registry` opens registries over them.
struct Faulty {
    metadata: MemoryMetadataStore,
    artifacts: MemoryArtifactStore,
    faults: Arc<Faults>,
}

impl Faulty {
    fn new() -> Self {
        Faulty {
            metadata: MemoryMetadataStore::new(),
            artifacts: MemoryArtifactStore::new(),
            faults: Faults::new(),
        }
    }

    /// A registry over the faulty stores, retrying at most `attempts` times with
    /// short delays, writing a checkpoint every `checkpoint_every` events.
    fn registry(&self, attempts: u32, checkpoint_every: u64) -> Registry {
        Registry::builder()
            .metadata(Arc::new(FaultyMetadata {
                inner: self.metadata.clone(),
                faults: self.faults.clone(),
            }))
            .artifacts(Arc::new(FaultyArtifacts {
                inner: self.artifacts.clone(),
                faults: self.faults.clone(),
            }))
            .retry(RetryPolicy {
                max_attempts: attempts,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            })
            .checkpoint_every(checkpoint_every)
            .build()
            .expect("builder with both stores")
    }

    /// A registry over the same memory stores without any fault.
    fn healthy(&self) -> Registry {
        Registry::builder()
            .metadata(Arc::new(self.metadata.clone()))
            .artifacts(Arc::new(self.artifacts.clone()))
            .build()
            .expect("builder with both stores")
    }
}

/// A writer that loses every race gives up after exactly `max_attempts` appends
/// with `Conflict`, having written nothing; once the contention ends it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_race_gives_up_with_conflict() {
    let stores = Faulty::new();
    let reg = stores.registry(4, 1000);
    create(&reg, "fraud").await;
    register_bytes(&reg, "fraud", "m.bin", "one").await;

    stores.faults.lose_appends.store(true, Ordering::SeqCst);
    stores.faults.appends.store(0, Ordering::SeqCst);
    let source = ArtifactSource::bytes("m.bin", "two").expect("valid path");
    let e = assert_err!(
        reg.acting_as(actor("ci"))
            .register("fraud", source, NewVersion::new())
            .await,
        Error::Conflict { attempts: 4, .. }
    );
    assert!(e.to_string().contains("fraud"), "{e}");
    assert_eq!(stores.faults.appends.load(Ordering::SeqCst), 4);
    let m = Metrics::new().with("auc", 0.5).expect("finite");
    assert_err!(
        reg.acting_as(actor("eval")).add_metrics("fraud/1", m).await,
        Error::Conflict { attempts: 4, .. }
    );
    assert_eq!(event_count(&stores.healthy(), "fraud").await, 2);

    stores.faults.lose_appends.store(false, Ordering::SeqCst);
    let v2 = register_bytes(&reg, "fraud", "m.bin", "two").await;
    assert_eq!(v2.number.get(), 2);
    assert_eq!(version_count(&stores.healthy(), "fraud").await, 2);
}

/// An append that fails with a storage error is reported as that error; nothing
/// is registered or created, and the same registry works once the store does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_leaves_nothing_and_the_registry_recovers() {
    let stores = Faulty::new();
    let reg = stores.registry(8, 1000);
    stores.faults.fail_appends.store(true, Ordering::SeqCst);
    assert_err!(
        reg.acting_as(actor("alice"))
            .create_model("fraud", modelreg::CreateModel::new())
            .await,
        Error::Storage { .. }
    );
    assert!(reg.list_models().await.expect("list").is_empty());
    assert_err!(reg.model("fraud").await, Error::NotFound { .. });

    stores.faults.fail_appends.store(false, Ordering::SeqCst);
    create(&reg, "fraud").await;
    stores.faults.fail_appends.store(true, Ordering::SeqCst);
    let source = ArtifactSource::bytes("m.bin", "one").expect("valid path");
    assert_err!(
        reg.acting_as(actor("ci"))
            .register("fraud", source, NewVersion::new())
            .await,
        Error::Storage { .. }
    );
    assert_eq!(version_count(&reg, "fraud").await, 0);
    assert_eq!(version_count(&stores.healthy(), "fraud").await, 0);

    stores.faults.fail_appends.store(false, Ordering::SeqCst);
    let v1 = register_bytes(&reg, "fraud", "m.bin", "one").await;
    assert_eq!(v1.number.get(), 1);
    assert_eq!(
        stores.healthy().resolve("fraud/1").await.expect("resolve"),
        v1
    );
}

/// An upload that fails part-way registers nothing and leaves no intent behind
/// (in-memory files announce their intent while they upload, so the failed
/// upload's intent is withdrawn); the next registration of the same files
/// succeeds as version 1 and fetches whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_registers_nothing() {
    let stores = Faulty::new();
    let reg = stores.registry(8, 1000);
    create(&reg, "fraud").await;
    let files = || {
        ArtifactSource::files([("a.bin", "aaa"), ("b.bin", "bbb"), ("c.bin", "ccc")])
            .expect("valid paths")
    };
    stores.faults.puts_before_failure.store(1, Ordering::SeqCst);
    assert_err!(
        reg.acting_as(actor("ci"))
            .register("fraud", files(), NewVersion::new())
            .await,
        Error::Storage { .. }
    );
    assert_eq!(version_count(&reg, "fraud").await, 0);
    assert_eq!(event_count(&reg, "fraud").await, 1);
    assert_eq!(
        stores.metadata.list_leases().await.expect("leases"),
        Vec::<String>::new()
    );

    stores
        .faults
        .puts_before_failure
        .store(usize::MAX, Ordering::SeqCst);
    let v1 = reg
        .acting_as(actor("ci"))
        .register("fraud", files(), NewVersion::new())
        .await
        .expect("register");
    assert_eq!((v1.number.get(), v1.files), (1, 3));
    let report = reg.verify("fraud/1").await.expect("verify");
    assert_eq!((report.files, report.bytes), (3, 9));
}

/// Checkpoints are best effort: when they cannot be written every command still
/// succeeds, and when they read back as garbage they are ignored; either way a
/// cold registry folds the log to the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_faults_never_change_the_state() {
    let stores = Faulty::new();
    stores.faults.fail_checkpoints.store(true, Ordering::SeqCst);
    let reg = stores.registry(8, 2);
    create(&reg, "fraud").await;
    for i in 0..3 {
        register_bytes(&reg, "fraud", "m.bin", format!("v{i}")).await;
    }
    assert!(
        stores
            .metadata
            .latest_checkpoint("fraud")
            .await
            .expect("read")
            .is_none()
    );

    stores
        .faults
        .fail_checkpoints
        .store(false, Ordering::SeqCst);
    let m = Metrics::new().with("auc", 0.5).expect("finite");
    reg.acting_as(actor("eval"))
        .add_metrics("fraud/2", m)
        .await
        .expect("metrics");
    reg.acting_as(actor("bob"))
        .deprecate("fraud/1", "old")
        .await
        .expect("deprecate");
    let cp = stores
        .metadata
        .latest_checkpoint("fraud")
        .await
        .expect("read")
        .expect("written once checkpoints work");
    assert_eq!(cp.seq, 6);

    let history = reg.events("fraud").await.expect("events");
    let replayed = ModelState::replay(history).expect("replay");
    assert_eq!(
        stores.registry(8, 2).model("fraud").await.expect("model"),
        replayed
    );
    stores
        .faults
        .garbage_checkpoints
        .store(true, Ordering::SeqCst);
    assert_eq!(
        stores.registry(8, 2).model("fraud").await.expect("model"),
        replayed
    );

    // A cold registry that ignored a garbage checkpoint writes correctly on top.
    let cold = stores.registry(8, 2);
    let v4 = register_bytes(&cold, "fraud", "m.bin", "v3").await;
    assert_eq!(v4.number.get(), 4);
    let history = stores.healthy().events("fraud").await.expect("events");
    assert_eq!(history.len(), 7);
    assert_eq!(
        stores.healthy().model("fraud").await.expect("model"),
        ModelState::replay(history).expect("replay")
    );
}

/// A checkpoint that claims a position the log does not have (or another position
/// than its bytes say) is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_disagrees_with_the_log_is_ignored() {
    let stores = Faulty::new();
    let reg = stores.registry(8, 2);
    create(&reg, "fraud").await;
    register_bytes(&reg, "fraud", "m.bin", "one").await; // checkpoint at 2
    let cp = stores
        .metadata
        .latest_checkpoint("fraud")
        .await
        .expect("read")
        .expect("checkpoint at 2");
    assert_eq!(cp.seq, 2);
    // The state at 2, filed as covering event 100.
    stores
        .metadata
        .put_checkpoint("fraud", 100, cp.bytes.clone())
        .await
        .expect("put");
    register_bytes(&reg, "fraud", "m.bin", "two").await;
    let replayed = ModelState::replay(reg.events("fraud").await.expect("events")).expect("replay");
    assert_eq!(replayed.versions().len(), 2);
    assert_eq!(
        stores.healthy().model("fraud").await.expect("model"),
        replayed
    );
}

/// A read that is stuck in the store, its future kept (not dropped) half-polled,
/// blocks no other reader or writer of the model in the same registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_read_blocks_no_other_reader_or_writer() {
    let stores = Faulty::new();
    let reg = stores.registry(8, 1000);
    create(&reg, "fraud").await;
    register_bytes(&reg, "fraud", "model.bin", "v1").await;
    // Another process appends, so the next read of `reg` has records to fetch.
    register_bytes(&stores.healthy(), "fraud", "model.bin", "v2").await;

    stores.faults.stall_next_read.store(true, Ordering::SeqCst);
    let mut stalled = Box::pin(reg.resolve("fraud@latest"));
    // Polled until it waits inside the store's read, then kept.
    let polled = tokio::time::timeout(Duration::from_millis(200), &mut stalled).await;
    assert!(polled.is_err(), "the stalled read finished: {polled:?}");
    assert!(!stores.faults.stall_next_read.load(Ordering::SeqCst));

    let others = async {
        let v3 = register_bytes(&reg, "fraud", "model.bin", "v3").await;
        assert_eq!(v3.number.get(), 3);
        let latest = reg.resolve("fraud@latest").await.expect("resolve");
        assert_eq!(latest.number.get(), 3);
        assert_eq!(version_count(&reg, "fraud").await, 3);
    };
    tokio::time::timeout(Duration::from_secs(10), others)
        .await
        .expect("readers and writers went on while a read was stalled");

    stores.faults.release.notify_one();
    let late = stalled.await.expect("the stalled read completes");
    assert!(late.number.get() >= 2, "it saw at least what was there");
}
