//! Where warm queries get their answer: by default from the store (one probe per
//! query, so another process's append is seen at once), and with
//! `RegistryBuilder::max_staleness` from the cached state alone, within the
//! window — `route` included, since the traffic split is part of that state.
//! Changes by another `Registry` over the same directory (another process, as
//! far as this one can tell) are seen by `route` exactly as by `resolve`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::registry_suite::{actor, create, register_bytes};
use modelreg::store::{
    Checkpoint, LocalArtifactStore, LocalMetadataStore, LogRecord, MetadataItem, MetadataStore,
};
use modelreg::{Registry, Result, SetAlias, TrafficSplit};

/// A local metadata store that counts the calls a query can make to learn about
/// new events: `probe`, `read_after` and `latest_checkpoint`.
#[derive(Debug)]
struct Counting {
    inner: LocalMetadataStore,
    reads: AtomicUsize,
}

impl Counting {
    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl MetadataStore for Counting {
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
        self.inner.append(log, seq, record).await
    }

    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        self.count();
        self.inner.read_after(log, after, limit).await
    }

    async fn list_logs(&self) -> Result<Vec<String>> {
        self.inner.list_logs().await
    }

    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
        self.inner.put_checkpoint(log, seq, bytes).await
    }

    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
        self.count();
        self.inner.latest_checkpoint(log).await
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

    fn probe(&self, log: &str, seq: u64) -> Option<Result<bool>> {
        self.count();
        self.inner.probe(log, seq)
    }

    fn location(&self, log: &str, item: MetadataItem) -> String {
        self.inner.location(log, item)
    }
}

/// A second registry over `dir` (as another process would open it), with a
/// counting metadata store and the given staleness window.
fn reader(dir: &Path, window: Duration) -> (Registry, Arc<Counting>) {
    let store = Arc::new(Counting {
        inner: LocalMetadataStore::open(dir.join("metadata")).expect("metadata store"),
        reads: AtomicUsize::new(0),
    });
    let registry = Registry::builder()
        .metadata(store.clone())
        .artifacts(Arc::new(
            LocalArtifactStore::open(dir.join("artifacts")).expect("artifact store"),
        ))
        .max_staleness(window)
        .build()
        .expect("registry");
    (registry, store)
}

/// `fraud` with versions 1 and 2, `@champion` on 1, `@challenger` on 2, and a
/// split sending every key to `@champion`.
async fn writer(dir: &Path) -> Registry {
    let writer = Registry::open_local(dir).await.expect("open");
    create(&writer, "fraud").await;
    register_bytes(&writer, "fraud", "w.bin", "one").await;
    register_bytes(&writer, "fraud", "w.bin", "two").await;
    let me = writer.acting_as(actor("alice"));
    for (v, alias) in [("fraud/1", "champion"), ("fraud/2", "challenger")] {
        me.set_alias(v, alias, SetAlias::new())
            .await
            .expect("alias");
    }
    route_all_to(&writer, "@champion").await;
    writer
}

async fn route_all_to(registry: &Registry, target: &str) {
    let split = TrafficSplit::new([(target, 1)]).expect("split");
    registry
        .acting_as(actor("alice"))
        .set_traffic_split("fraud", split, "test")
        .await
        .expect("set split");
}

/// Another writer sends every key to `@challenger` and moves `@champion`:
/// both now mean version 2.
async fn move_to_version_2(writer: &Registry) {
    route_all_to(writer, "@challenger").await;
    writer
        .acting_as(actor("alice"))
        .set_alias("fraud/2", "champion", SetAlias::new())
        .await
        .expect("move alias");
}

async fn routed(registry: &Registry, key: &str) -> u64 {
    registry
        .route("fraud", key)
        .await
        .expect("route")
        .version
        .number
        .get()
}

async fn resolved(registry: &Registry, reference: &str) -> u64 {
    registry
        .resolve(reference)
        .await
        .expect("resolve")
        .number
        .get()
}

#[tokio::test]
async fn by_default_every_query_asks_the_store_and_sees_other_writers_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = writer(dir.path()).await;
    let (reader, store) = reader(dir.path(), Duration::ZERO);
    assert_eq!(routed(&reader, "user-1").await, 1);

    let before = store.reads();
    for i in 0..100 {
        assert_eq!(routed(&reader, &format!("user-{i}")).await, 1);
        assert_eq!(resolved(&reader, "fraud@champion").await, 1);
    }
    assert_eq!(store.reads() - before, 200, "one probe per query");

    move_to_version_2(&writer).await;
    assert_eq!(routed(&reader, "user-1").await, 2);
    assert_eq!(resolved(&reader, "fraud@champion").await, 2);
}

#[tokio::test]
async fn within_the_window_route_and_resolve_read_no_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = writer(dir.path()).await;
    // Longer than the test: every warm query below falls within it.
    let (reader, store) = reader(dir.path(), Duration::from_secs(3600));
    assert_eq!(routed(&reader, "user-1").await, 1);

    let before = store.reads();
    for i in 0..1000 {
        assert_eq!(routed(&reader, &format!("user-{i}")).await, 1);
        assert_eq!(resolved(&reader, "fraud@champion").await, 1);
    }
    assert_eq!(store.reads(), before, "warm queries answered from memory");

    // Another registry's change is not seen within the window...
    route_all_to(&writer, "@challenger").await;
    assert_eq!(routed(&reader, "user-1").await, 1);
    assert_eq!(store.reads(), before);

    // ...but this registry's own writes are, at once: a command folds the log
    // first (so it also brings in the other writer's split), then its event.
    reader
        .acting_as(actor("bob"))
        .set_alias("fraud/2", "champion", SetAlias::new())
        .await
        .expect("move alias");
    assert_eq!(resolved(&reader, "fraud@champion").await, 2);
    assert_eq!(
        routed(&reader, "user-1").await,
        2,
        "the other writer's split"
    );
}

#[tokio::test]
async fn after_the_window_route_sees_another_writers_split_as_resolve_sees_its_alias() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = writer(dir.path()).await;
    let window = Duration::from_millis(50);
    let (reader, store) = reader(dir.path(), window);
    assert_eq!(routed(&reader, "user-1").await, 1);
    assert_eq!(resolved(&reader, "fraud@champion").await, 1);

    move_to_version_2(&writer).await;
    tokio::time::sleep(window * 2).await;
    let before = store.reads();
    assert_eq!(routed(&reader, "user-1").await, 2);
    assert_eq!(resolved(&reader, "fraud@champion").await, 2);
    assert!(
        store.reads() > before,
        "the first query after the window asks"
    );
    // Once confirmed, the next queries within the window read nothing again.
    let confirmed = store.reads();
    assert_eq!(routed(&reader, "user-2").await, 2);
    assert!(store.reads() <= confirmed + 1);
}
