//! Garbage collection against registrations, with the interleavings forced rather
//! than left to the scheduler: each side is paused at the worst moment for the
//! other, and the committed version must still have every blob.

#[path = "common/faulty_store.rs"]
#[allow(dead_code)]
mod faulty_store;
#[path = "common/fs.rs"]
mod fs_size;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use modelreg::store::{
    ArtifactStore, ArtifactStoreExt, BlobMeta, ByteStream, Checkpoint, Imported, LinkMode,
    LogRecord, MemoryArtifactStore, MemoryMetadataStore, MetadataItem, MetadataStore, Placed,
};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Error, GcOptions, NewVersion, Registry, Result,
};
use tokio::sync::Notify;

use fs_size::disk_usage;

/// A point where one side stops until the test lets it go on.
#[derive(Debug, Default)]
struct Pause {
    reached: Notify,
    release: Notify,
}

impl Pause {
    async fn stop_here(&self) {
        self.reached.notify_one();
        self.release.notified().await;
    }
}

/// Artifacts whose `delete` of one digest pauses before deleting.
#[derive(Debug)]
struct PausingDeletes {
    inner: MemoryArtifactStore,
    target: Digest,
    pause: Arc<Pause>,
}

#[async_trait]
impl ArtifactStore for PausingDeletes {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
        self.inner.head(digest).await
    }
    async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
        self.inner.put_stream(digest, data).await
    }
    async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()> {
        self.inner.put_file(digest, path).await
    }
    async fn get(&self, digest: &Digest) -> Result<ByteStream> {
        self.inner.get(digest).await
    }
    async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(digest, range).await
    }
    async fn delete(&self, digest: &Digest) -> Result<()> {
        if *digest == self.target {
            self.pause.stop_here().await;
        }
        self.inner.delete(digest).await
    }
    async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
        self.inner.list().await
    }
    fn location(&self, digest: &Digest) -> String {
        self.inner.location(digest)
    }
    async fn materialize(&self, digest: &Digest, dest: &Path, mode: LinkMode) -> Result<Placed> {
        self.inner.materialize(digest, dest, mode).await
    }
    async fn import_file(&self, path: &Path, mode: LinkMode) -> Result<Imported> {
        self.inner.import_file(path, mode).await
    }
}

/// Metadata whose `put_lease` of an intent pauses after writing it.
#[derive(Debug)]
struct PausingIntents {
    inner: MemoryMetadataStore,
    pause: Arc<Pause>,
}

#[async_trait]
impl MetadataStore for PausingIntents {
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
        self.inner.append(log, seq, record).await
    }
    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        self.inner.read_after(log, after, limit).await
    }
    async fn list_logs(&self) -> Result<Vec<String>> {
        self.inner.list_logs().await
    }
    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
        self.inner.put_checkpoint(log, seq, bytes).await
    }
    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
        self.inner.latest_checkpoint(log).await
    }
    async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.inner.put_lease(key, bytes).await?;
        if key.starts_with("intent-") {
            self.pause.stop_here().await;
        }
        Ok(())
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

fn registry(meta: Arc<dyn MetadataStore>, artifacts: Arc<dyn ArtifactStore>) -> Registry {
    Registry::builder()
        .metadata(meta)
        .artifacts(artifacts)
        .build()
        .expect("both stores")
}

fn alice() -> Actor {
    Actor::new("alice").expect("valid actor")
}

/// A version made of a file identical to the orphan and one of its own.
fn source_sharing(shared: &'static str) -> ArtifactSource {
    ArtifactSource::files([("shared.bin", shared), ("own.bin", "its own bytes")])
        .expect("valid paths")
}

const SHARED: &str = "weights identical to an orphan";

/// Registers `source` as a new version of `fraud` on a task of its own, so
/// that the test can hold or release the other side meanwhile.
fn register_in_background(
    reg: &Registry,
    source: ArtifactSource,
) -> tokio::task::JoinHandle<Result<modelreg::Registered>> {
    let reg = reg.clone();
    tokio::spawn(async move {
        reg.acting_as(alice())
            .register("fraud", source, NewVersion::new())
            .await
    })
}

/// Empty memory stores but for one orphan blob holding [`SHARED`], and a pause
/// point for one side of the race.
async fn stores_with_orphan() -> (MemoryMetadataStore, MemoryArtifactStore, Digest, Arc<Pause>) {
    let meta = MemoryMetadataStore::new();
    let blobs = MemoryArtifactStore::new();
    let orphan = blobs
        .put_bytes(Bytes::from_static(SHARED.as_bytes()))
        .await
        .expect("put orphan");
    (meta, blobs, orphan, Arc::new(Pause::default()))
}

/// The stores of [`stores_with_orphan`], a collecting registry whose deletion of
/// the orphan stops at the pause, and a registering one with model `fraud`.
async fn collector_pausing_at_the_orphan()
-> (MemoryArtifactStore, Digest, Arc<Pause>, Registry, Registry) {
    let (meta, blobs, orphan, pause) = stores_with_orphan().await;
    let collecting = registry(
        Arc::new(meta.clone()),
        Arc::new(PausingDeletes {
            inner: blobs.clone(),
            target: orphan,
            pause: pause.clone(),
        }),
    );
    let registering = registry(Arc::new(meta), Arc::new(blobs.clone()));
    registering
        .acting_as(alice())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    (blobs, orphan, pause, collecting, registering)
}

/// The collector has read the intents (there were none) and is about to delete
/// the orphan when a registration finds that orphan stored and relies on it. The
/// registration must wait for the sweep, find the blob gone, and store it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_waits_for_the_sweep_deleting_its_blob_then_stores_it_again() {
    let (blobs, orphan, pause, collecting, registering) = collector_pausing_at_the_orphan().await;

    let gc = tokio::spawn(async move { collecting.gc(GcOptions::new(Duration::ZERO)).await });
    pause.reached.notified().await;
    let register = register_in_background(&registering, source_sharing(SHARED));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !register.is_finished(),
        "the registration must wait for the sweep that may delete its blob"
    );
    pause.release.notify_one();
    let report = gc.await.expect("gc task").expect("gc");
    assert_eq!(report.deleted, [orphan]);
    let v = register.await.expect("register task").expect("register");
    // The blob was deleted under it and stored again before the version was committed.
    assert!(blobs.head(&orphan).await.expect("head").is_some());
    let verified = registering
        .verify(format!("fraud/{}", v.number))
        .await
        .expect("every blob of the version is there");
    assert_eq!(verified.files, 2);
}

/// As above, but the source file is rewritten while the registration waits: when
/// the sweep has deleted the blob the registration relied on, the source no
/// longer holds those bytes, so nothing is registered and the error names the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changed_while_waiting_for_a_sweep_registers_nothing() {
    let (_, orphan, pause, collecting, registering) = collector_pausing_at_the_orphan().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = dir.path().join("shared.bin");
    std::fs::write(&shared, SHARED).expect("write");
    std::fs::write(dir.path().join("own.bin"), "its own bytes").expect("write");

    let gc = tokio::spawn(async move { collecting.gc(GcOptions::new(Duration::ZERO)).await });
    pause.reached.notified().await;
    let register = register_in_background(&registering, ArtifactSource::dir(dir.path()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !register.is_finished(),
        "the registration waits for the sweep"
    );
    std::fs::write(&shared, "rewritten meanwhile").expect("rewrite");
    pause.release.notify_one();
    assert_eq!(gc.await.expect("gc task").expect("gc").deleted, [orphan]);
    let err = register
        .await
        .expect("register task")
        .expect_err("the source no longer holds the bytes it announced");
    match &err {
        Error::SourceChanged { path } => assert_eq!(
            path.canonicalize().expect("path exists"),
            shared.canonicalize().expect("path exists")
        ),
        other => panic!("expected SourceChanged, got {other:?}"),
    }
    assert_eq!(
        registering
            .model("fraud")
            .await
            .expect("model")
            .versions()
            .len(),
        0
    );
}

/// A registration has announced its blobs (and stopped there) when a collection
/// runs: the collection spares all of them, and the registration commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_spares_the_blobs_of_a_registration_in_flight() {
    let (meta, blobs, orphan, pause) = stores_with_orphan().await;
    let registering = registry(
        Arc::new(PausingIntents {
            inner: meta.clone(),
            pause: pause.clone(),
        }),
        Arc::new(blobs.clone()),
    );
    let collecting = registry(Arc::new(meta.clone()), Arc::new(blobs.clone()));
    registering
        .acting_as(alice())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    let register = register_in_background(&registering, source_sharing(SHARED));
    pause.reached.notified().await;

    // The orphan, the new file and the new manifest are all unreferenced and old
    // enough for a zero grace period, and all announced.
    let report = collecting
        .gc(GcOptions::new(Duration::ZERO))
        .await
        .expect("gc");
    assert_eq!(report.deleted, []);
    assert_eq!(report.in_flight, 3);
    assert!(blobs.head(&orphan).await.expect("head").is_some());

    pause.release.notify_one();
    let v = register.await.expect("register task").expect("register");
    registering
        .verify(format!("fraud/{}", v.number))
        .await
        .expect("every blob of the version is there");
    // Committed and withdrawn: nothing is in flight any more, and nothing is garbage.
    assert_eq!(
        meta.list_leases().await.expect("leases"),
        Vec::<String>::new()
    );
    let after = collecting
        .gc(GcOptions::new(Duration::ZERO))
        .await
        .expect("gc");
    assert_eq!(
        (after.deleted.len(), after.in_flight, after.referenced),
        (0, 0, 3)
    );
}

/// Leases are written without fsync, so a damaged one is what a crash of the
/// machine left: it protects nothing, a collection removes it, and a
/// registration does not wait for it. A lease of a newer format may belong to a
/// live process of a newer build: it stops whoever needs it, with an error that
/// names it, and changes nothing.
#[tokio::test]
async fn damaged_leases_are_crash_remnants_and_newer_ones_stop_the_reader() {
    let reg = Registry::in_memory();
    reg.acting_as(alice())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    let orphan = reg
        .artifact_store()
        .put_bytes(Bytes::from_static(b"orphan"))
        .await
        .expect("put");
    let meta = reg.metadata_store().clone();

    meta.put_lease("intent-torn", Bytes::from_static(b"{\"format\":1,\"crea"))
        .await
        .expect("put lease");
    meta.put_lease("gc-empty", Bytes::new())
        .await
        .expect("put lease");
    let report = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!(report.deleted, [orphan]);
    assert_eq!((report.stale_intents, report.leases_removed), (1, 2));
    assert_eq!(
        meta.list_leases().await.expect("leases"),
        Vec::<String>::new()
    );
    meta.put_lease("gc-empty", Bytes::new())
        .await
        .expect("put lease");
    let v = tokio::time::timeout(
        Duration::from_secs(5),
        reg.acting_as(alice())
            .register("fraud", source_sharing(SHARED), NewVersion::new()),
    )
    .await
    .expect("no wait for a damaged sweep lease")
    .expect("register");
    assert_eq!(v.number.get(), 1);

    // A sealed lease from a newer format.
    let newer = |kind: &str| {
        let json = format!(
            r#"{{"format":99,"kind":"{kind}","created":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z","digests":[]}}"#
        );
        let digest = Digest::of(json.as_bytes());
        Bytes::from(format!("{json}\n{digest}\n"))
    };
    // (The collection reads intents before marking, and again before deleting.)
    let orphan = reg
        .artifact_store()
        .put_bytes(Bytes::from_static(b"another orphan"))
        .await
        .expect("put");
    meta.put_lease("intent-newer", newer("intent"))
        .await
        .expect("put lease");
    let err = reg
        .gc(GcOptions::new(Duration::ZERO))
        .await
        .expect_err("a newer intent stops the collection");
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    assert!(err.to_string().contains("intent-newer"), "{err}");
    assert!(
        reg.artifact_store()
            .head(&orphan)
            .await
            .expect("head")
            .is_some()
    );
    meta.delete_lease("intent-newer").await.expect("delete");
    meta.put_lease("gc-newer", newer("sweep"))
        .await
        .expect("put lease");
    let err = reg
        .acting_as(alice())
        .register("fraud", source_sharing("other bytes"), NewVersion::new())
        .await
        .expect_err("a newer sweep stops the registration");
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    assert!(err.to_string().contains("gc-newer"), "{err}");
    assert_eq!(reg.model("fraud").await.expect("model").versions().len(), 1);
}

/// Temp files that writers which died left in a local registry (a half-copied
/// blob, a record never linked) are removed by gc once idle for an hour; fresh
/// ones (a writer still at work) and anything that is not a temp file stay.
#[tokio::test]
async fn gc_removes_the_temp_files_of_dead_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::open_local(dir.path()).await.expect("open");
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    let write = |rel: &str, len: usize, old: bool| {
        let path = dir.path().join(rel);
        std::fs::write(&path, vec![7u8; len]).expect("write");
        if old {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open")
                .set_modified(two_hours_ago)
                .expect("set mtime");
        }
        path
    };
    let dead_blob = write("artifacts/tmp/.tmp-4242-00000000deadbeef", 1000, true);
    let dead_record = write("metadata/tmp/.tmp-4242-00000000cafef00d", 10, true);
    let live = write("artifacts/tmp/.tmp-4243-0000000000000001", 5, false);
    let not_ours = write("artifacts/tmp/notes.txt", 3, true);

    let dry = reg
        .gc(GcOptions::default().dry_run(true))
        .await
        .expect("dry run");
    assert_eq!((dry.temp_files, dry.temp_bytes), (0, 0));
    assert!(dead_blob.exists() && dead_record.exists());

    let report = reg.gc(GcOptions::default()).await.expect("gc");
    assert_eq!((report.temp_files, report.temp_bytes), (2, 1010));
    assert!(!dead_blob.exists() && !dead_record.exists());
    assert!(live.exists() && not_ours.exists());
}

/// A sealed lease (format 1) that expires at `expires`, announcing nothing.
fn lease_expiring(expires: chrono::DateTime<chrono::Utc>) -> Bytes {
    let json = format!(
        r#"{{"format":1,"created":"2026-01-01T00:00:00Z","expires":"{}","digests":[]}}"#,
        expires.to_rfc3339()
    );
    let digest = Digest::of(json.as_bytes());
    Bytes::from(format!("{json}\n{digest}\n"))
}

/// Processes killed mid-registration or mid-collection leave their leases.
/// A collection removes those that expired more than ten minutes ago, intents
/// and sweeps alike, even when it has nothing to delete; it keeps live ones and
/// those that expired just now (their writer's clock may be behind). A dry run
/// reports them and removes nothing.
#[tokio::test]
async fn gc_removes_leases_long_expired_and_keeps_live_ones() {
    let reg = Registry::in_memory();
    let meta = reg.metadata_store().clone();
    let now = chrono::Utc::now();
    let long_ago = now - chrono::Duration::hours(2);
    for (key, expires) in [
        ("intent-dead", long_ago),
        ("gc-dead", long_ago),
        ("intent-live", now + chrono::Duration::hours(1)),
        ("gc-live", now + chrono::Duration::seconds(60)),
        ("intent-just-expired", now - chrono::Duration::seconds(30)),
        ("gc-just-expired", now - chrono::Duration::seconds(30)),
    ] {
        meta.put_lease(key, lease_expiring(expires))
            .await
            .expect("put lease");
    }
    let sorted = |mut keys: Vec<String>| {
        keys.sort();
        keys
    };
    let all = sorted(meta.list_leases().await.expect("leases"));

    let dry = reg
        .gc(GcOptions::new(Duration::ZERO).dry_run(true))
        .await
        .expect("dry run");
    assert_eq!((dry.leases_removed, dry.stale_intents), (2, 1));
    assert_eq!(sorted(meta.list_leases().await.expect("leases")), all);

    let report = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!((report.leases_removed, report.stale_intents), (2, 1));
    assert_eq!(
        sorted(meta.list_leases().await.expect("leases")),
        [
            "gc-just-expired",
            "gc-live",
            "intent-just-expired",
            "intent-live"
        ]
    );
}

/// Memory stores holding model `fraud` whose version 1 — [`SHARED`] and a file
/// of its own — has been purged, so its blobs are garbage now; and a pause
/// point. The shared blob plays the orphan of the tests above, made so by a
/// purge rather than by a failed registration.
async fn stores_with_purged_version()
-> (MemoryMetadataStore, MemoryArtifactStore, Digest, Arc<Pause>) {
    let meta = MemoryMetadataStore::new();
    let blobs = MemoryArtifactStore::new();
    let reg = registry(Arc::new(meta.clone()), Arc::new(blobs.clone()));
    let me = reg.acting_as(alice());
    me.create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    let source = ArtifactSource::files([("shared.bin", SHARED), ("own.bin", "purged bytes")])
        .expect("valid paths");
    me.register("fraud", source, NewVersion::new())
        .await
        .expect("register v1");
    me.purge_version("fraud/1", "superseded")
        .await
        .expect("purge v1");
    let shared = Digest::of(SHARED.as_bytes());
    assert!(blobs.head(&shared).await.expect("head").is_some());
    (meta, blobs, shared, Arc::new(Pause::default()))
}

/// A blob a purged version and a live one share is never deleted, while a blob
/// only the purged version used is, after the grace period.
#[tokio::test]
async fn a_blob_shared_with_a_live_version_survives_a_purge() {
    let (meta, blobs, shared, _) = stores_with_purged_version().await;
    let reg = registry(Arc::new(meta), Arc::new(blobs.clone()));
    reg.acting_as(alice())
        .register("fraud", source_sharing(SHARED), NewVersion::new())
        .await
        .expect("register v2");
    let own = Digest::of(b"purged bytes");
    let young = reg
        .gc(GcOptions::new(Duration::from_secs(3600)))
        .await
        .expect("gc");
    assert_eq!(
        (young.deleted.len(), young.young),
        (0, 2),
        "v1's file and manifest are young"
    );
    assert!(blobs.head(&own).await.expect("head").is_some());
    let swept = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!(swept.deleted.len(), 2, "v1's own file and its manifest");
    assert!(swept.deleted.contains(&own));
    assert!(!swept.deleted.contains(&shared));
    assert!(blobs.head(&shared).await.expect("head").is_some());
    assert_eq!(reg.verify("fraud/2").await.expect("whole").files, 2);
}

/// The collector is about to delete the blob only a purged version used when a
/// registration relies on the same bytes: the registration waits for the sweep,
/// finds the blob gone and stores it again before committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_reusing_a_purged_blob_while_it_is_deleted_stores_it_again() {
    let (meta, blobs, shared, pause) = stores_with_purged_version().await;
    let collecting = registry(
        Arc::new(meta.clone()),
        Arc::new(PausingDeletes {
            inner: blobs.clone(),
            target: shared,
            pause: pause.clone(),
        }),
    );
    let registering = registry(Arc::new(meta), Arc::new(blobs.clone()));
    let gc = tokio::spawn(async move { collecting.gc(GcOptions::new(Duration::ZERO)).await });
    pause.reached.notified().await;
    let register = register_in_background(&registering, source_sharing(SHARED));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !register.is_finished(),
        "the registration must wait for the sweep that may delete its blob"
    );
    pause.release.notify_one();
    let report = gc.await.expect("gc task").expect("gc");
    assert!(report.deleted.contains(&shared));
    let v = register.await.expect("register task").expect("register");
    assert_eq!(v.number.get(), 2);
    assert!(blobs.head(&shared).await.expect("head").is_some());
    assert_eq!(
        registering
            .verify("fraud/2")
            .await
            .expect("every blob is there")
            .files,
        2
    );
}

/// A registration reusing the purged version's blob has announced it (and
/// stopped there) when the collection runs: the collection spares it, and the
/// new version commits whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_spares_a_purged_blob_a_registration_in_flight_reuses() {
    let (meta, blobs, shared, pause) = stores_with_purged_version().await;
    let registering = registry(
        Arc::new(PausingIntents {
            inner: meta.clone(),
            pause: pause.clone(),
        }),
        Arc::new(blobs.clone()),
    );
    let collecting = registry(Arc::new(meta.clone()), Arc::new(blobs.clone()));
    let register = register_in_background(&registering, source_sharing(SHARED));
    pause.reached.notified().await;
    let report = collecting
        .gc(GcOptions::new(Duration::ZERO))
        .await
        .expect("gc");
    assert!(!report.deleted.contains(&shared), "announced: spared");
    assert!(report.deleted.contains(&Digest::of(b"purged bytes")));
    assert!(report.in_flight >= 1);
    pause.release.notify_one();
    let v = register.await.expect("register task").expect("register");
    assert_eq!(
        registering
            .verify(format!("fraud/{}", v.number))
            .await
            .expect("every blob of the version is there")
            .files,
        2
    );
    let after = collecting
        .gc(GcOptions::new(Duration::ZERO))
        .await
        .expect("gc");
    assert_eq!(after.deleted, []);
}

// ---------------------------------------------------------------------------
// Packs: a store that keeps large files as chunks in packs
// ---------------------------------------------------------------------------

use modelreg::store::object::ObjectArtifactOptions;
use modelreg::store::{
    LocalArtifactOptions, LocalArtifactStore, ObjectArtifactStore, PackCollection, PackOptions,
};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

/// Where a packed artifact store keeps its packs in these tests: a local
/// directory, or object_store's `InMemory` (the object-store code path:
/// overwriting PUTs for recipes, listings of prefixes, ranged GETs), each
/// opened as many times as a test needs handles, as separate processes would.
enum Backend {
    Local(tempfile::TempDir),
    Object(Arc<dyn ObjectStore>),
}

/// Files of 1 MiB or more in packs of 1 MiB.
fn pack_options() -> PackOptions {
    PackOptions::new().min_file_size(1 << 20).pack_size(1 << 20)
}

impl Backend {
    fn local() -> Self {
        Backend::Local(tempfile::tempdir().expect("tempdir"))
    }

    fn object() -> Self {
        Backend::Object(Arc::new(InMemory::new()))
    }

    /// A new handle on the packed store (with its own chunk index).
    fn open(&self) -> Arc<dyn ArtifactStore> {
        match self {
            Backend::Local(dir) => Arc::new(
                LocalArtifactStore::open_with(
                    dir.path(),
                    LocalArtifactOptions::new().packed(pack_options()),
                )
                .expect("open store"),
            ),
            Backend::Object(store) => Arc::new(
                ObjectArtifactStore::new(Arc::clone(store), "artifacts".into())
                    .with_options(ObjectArtifactOptions::new().packed(pack_options())),
            ),
        }
    }

    /// Every byte stored.
    async fn usage(&self) -> u64 {
        match self {
            Backend::Local(dir) => disk_usage(dir.path()),
            Backend::Object(store) => {
                use futures::TryStreamExt;
                let objects: Vec<object_store::ObjectMeta> = store
                    .list(Some(&"artifacts".into()))
                    .try_collect()
                    .await
                    .expect("list");
                objects.iter().map(|o| o.size).sum()
            }
        }
    }

    /// The bytes of the store's object at `key` (a layout path).
    async fn read(&self, key: &str) -> Vec<u8> {
        match self {
            Backend::Local(dir) => std::fs::read(dir.path().join(key)).expect("read"),
            Backend::Object(store) => {
                let path = object_store::path::Path::from(format!("artifacts/{key}"));
                let got = store.get(&path).await.expect("get");
                got.bytes().await.expect("bytes").to_vec()
            }
        }
    }

    /// Deletes the object at `key` behind the store's back.
    async fn remove(&self, key: &str) {
        match self {
            Backend::Local(dir) => std::fs::remove_file(dir.path().join(key)).expect("delete"),
            Backend::Object(store) => {
                let path = object_store::path::Path::from(format!("artifacts/{key}"));
                store.delete(&path).await.expect("delete");
            }
        }
    }

    /// The packs the recipe of `file` names, read from the store's layout.
    async fn packs_of(&self, file: &Digest) -> Vec<String> {
        let hex = file.to_hex();
        let key = format!("recipes/v1/blake3/{}/{}/{hex}", &hex[0..2], &hex[2..4]);
        let recipe: serde_json::Value =
            serde_json::from_slice(&self.read(&key).await).expect("json");
        recipe["packs"]
            .as_array()
            .expect("packs")
            .iter()
            .map(|p| {
                p.as_str()
                    .expect("hex")
                    .trim_start_matches("blake3:")
                    .to_owned()
            })
            .collect()
    }
}

/// Runs the async test `$name(Backend)` once on each backend, in a module
/// named after it.
macro_rules! on_each_pack_backend {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$attr])*
                async fn local() {
                    super::$name(super::Backend::local()).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$attr])*
                async fn object_memory() {
                    super::$name(super::Backend::object()).await
                }
            }
        )*
    };
}

on_each_pack_backend!(
    gc_reclaims_the_chunks_only_a_purged_version_used,
    retired_packs_wait_for_the_grace_period,
    a_registration_waits_for_a_pack_collection_and_its_file_survives_it,
    a_recipe_naming_a_deleted_pack_is_stored_again_before_the_commit,
);

/// `len` pseudo-random bytes from `seed`: content-defined chunking cuts them
/// into ~64 KiB chunks.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// A base file of 2 MiB and a variant that differs in bytes 256 KiB..1.25 MiB:
/// with 1 MiB packs, the base's first pack is then 3/4 dead, its second 1/4.
fn base_and_variant() -> (Vec<u8>, Vec<u8>) {
    let base = noise(1, 2 << 20);
    let mut variant = base.clone();
    variant[256 << 10..1280 << 10].copy_from_slice(&noise(2, 1 << 20));
    (base, variant)
}

/// A 1.5 MiB file of the base version's own, which no variant shares.
fn own_file() -> Vec<u8> {
    noise(3, 1536 << 10)
}

/// Model `fraud` in a packed store: v1 the base and a file of its own, v2
/// the variant, v1 purged.
async fn packed_with_purged_base(backend: &Backend) -> (MemoryMetadataStore, Registry) {
    packed_with_purged_base_in(backend.open()).await
}

/// [`packed_with_purged_base`] written through `artifacts`, whose chunk index
/// then knows every pack.
async fn packed_with_purged_base_in(
    artifacts: Arc<dyn ArtifactStore>,
) -> (MemoryMetadataStore, Registry) {
    let meta = MemoryMetadataStore::new();
    let reg = registry(Arc::new(meta.clone()), artifacts);
    let me = reg.acting_as(alice());
    me.create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    let (base, variant) = base_and_variant();
    let v1 =
        ArtifactSource::files([("model.bin", base), ("own.bin", own_file())]).expect("valid paths");
    let v2 = ArtifactSource::files([("model.bin", variant)]).expect("valid path");
    for source in [v1, v2] {
        me.register("fraud", source, NewVersion::new())
            .await
            .expect("register");
    }
    me.purge_version("fraud/1", "superseded")
        .await
        .expect("purge v1");
    (meta, reg)
}

/// What a purged version alone used leaves the packs: the packs only it used
/// are deleted, shared ones repacked, and the kept version still reads whole.
async fn gc_reclaims_the_chunks_only_a_purged_version_used(backend: Backend) {
    let (_, reg) = packed_with_purged_base(&backend).await;
    let before = backend.usage().await;
    let dry = reg
        .gc(GcOptions::new(Duration::ZERO).dry_run(true))
        .await
        .expect("dry run");
    // A dry run sees the packs as they stand: the purged file it would delete
    // still uses its chunks.
    assert_eq!(dry.packs_deleted, 0, "{dry:?}");
    assert_eq!(backend.usage().await, before, "a dry run changes nothing");

    let options = GcOptions::new(Duration::ZERO).repack_when_dead_percent(20);
    let report = reg.gc(options).await.expect("gc");
    let after = backend.usage().await;
    assert!(report.packs_repacked >= 2, "both base packs: {report:?}");
    assert!(
        report.packs_retired >= 1,
        "the own file's packs: {report:?}"
    );
    assert!(report.packs_deleted >= 3, "{report:?}");
    assert!(!report.packs_deletion_deferred);
    // What only v1 used: the own file (1.5 MiB) and the base's changed region
    // (1 MiB), give or take the chunks cut across the region's edges.
    let ideal: u64 = (1536 + 1024) << 10;
    let reclaimed = before - after;
    assert!(
        reclaimed >= ideal * 9 / 10,
        "reclaimed {reclaimed} of {before} bytes, ideal {ideal}"
    );
    assert!(report.bytes_reclaimed() >= i64::try_from(ideal * 9 / 10).expect("small"));
    assert_eq!(reg.verify("fraud/2").await.expect("whole").files, 1);
    let check = reg.check().await.expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    // Nothing left to do: a second collection changes nothing.
    let again = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!((again.packs_repacked, again.packs_deleted), (0, 0));
}

/// Packs are retired, not deleted, within the grace period; deleted after it,
/// and only those no stored file uses.
async fn retired_packs_wait_for_the_grace_period(backend: Backend) {
    let (_, reg) = packed_with_purged_base(&backend).await;
    let store = backend.open();
    let (base, _) = base_and_variant();
    // What the blob sweep does to the purged version's files.
    for file in [Digest::of(&base), Digest::of(&own_file())] {
        store.delete(&file).await.expect("delete");
    }
    let step = store.repack(50, false).await.expect("repack");
    assert!(step.retired > 0 && step.repacked > 0, "{step:?}");
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let kept = store
        .delete_retired_packs(hour_ago, false)
        .await
        .expect("delete retired");
    assert_eq!(kept.deleted, 0, "retired within the grace period: {kept:?}");
    assert!(kept.retired_kept > 0);
    let dry = reg
        .gc(GcOptions::new(Duration::ZERO).dry_run(true))
        .await
        .expect("dry run");
    let deleted = store
        .delete_retired_packs(chrono::Utc::now(), false)
        .await
        .expect("delete retired");
    assert!(deleted.deleted > 0, "{deleted:?}");
    // A dry run counts each pack it would delete once.
    assert_eq!(
        (dry.packs_deleted, dry.pack_bytes_deleted),
        (deleted.deleted, deleted.deleted_bytes)
    );
    assert_eq!(reg.verify("fraud/2").await.expect("whole").files, 1);
}

/// Artifacts whose deletion of retired packs pauses before it starts: the
/// collection has repacked and retired, and holds its packs sweep lease.
#[derive(Debug)]
struct PausingPackDeletes {
    inner: Arc<dyn ArtifactStore>,
    pause: Arc<Pause>,
}
#[async_trait]
impl ArtifactStore for PausingPackDeletes {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
        self.inner.head(digest).await
    }
    async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
        self.inner.put_stream(digest, data).await
    }
    async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()> {
        self.inner.put_file(digest, path).await
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
    fn location(&self, digest: &Digest) -> String {
        self.inner.location(digest)
    }
    async fn materialize(&self, digest: &Digest, dest: &Path, mode: LinkMode) -> Result<Placed> {
        self.inner.materialize(digest, dest, mode).await
    }
    async fn import_file(&self, path: &Path, mode: LinkMode) -> Result<Imported> {
        self.inner.import_file(path, mode).await
    }
    async fn repack(&self, dead_percent: u8, dry_run: bool) -> Result<PackCollection> {
        self.inner.repack(dead_percent, dry_run).await
    }
    async fn delete_retired_packs(
        &self,
        retired_before: chrono::DateTime<chrono::Utc>,
        dry_run: bool,
    ) -> Result<PackCollection> {
        if !dry_run {
            self.pause.stop_here().await;
        }
        self.inner
            .delete_retired_packs(retired_before, dry_run)
            .await
    }
}

/// A registration of the purged base while the collection is about to delete
/// the packs that held it (through another handle on the store, whose chunk
/// index still knows those packs): it waits for the collection, then finds
/// its file whole, and the new version reads back.
async fn a_registration_waits_for_a_pack_collection_and_its_file_survives_it(backend: Backend) {
    let (meta, registering) = packed_with_purged_base(&backend).await;
    let pause = Arc::new(Pause::default());
    let collecting = registry(
        Arc::new(meta.clone()),
        Arc::new(PausingPackDeletes {
            inner: backend.open(),
            pause: pause.clone(),
        }),
    );
    let gc = tokio::spawn(async move { collecting.gc(GcOptions::new(Duration::ZERO)).await });
    pause.reached.notified().await;
    let (base, _) = base_and_variant();
    let source = ArtifactSource::files([("model.bin", base)]).expect("valid path");
    let register = register_in_background(&registering, source);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !register.is_finished(),
        "a registration must wait for a collection that may delete packs"
    );
    pause.release.notify_one();
    let report = gc.await.expect("gc task").expect("gc");
    // The registration stored the base's chunks again: the same chunks in the
    // same order make the same pack, indexed again, which step 2 then keeps.
    assert!(
        report.packs_retired + report.packs_repacked > 0,
        "{report:?}"
    );
    let v = register.await.expect("register task").expect("register");
    assert_eq!(v.number.get(), 3);
    for version in ["fraud/2", "fraud/3"] {
        assert_eq!(registering.verify(version).await.expect("whole").files, 1);
    }
    let check = registering.check().await.expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

/// The worst case the protocol guards: a registration stored its file with a
/// recipe naming a pack (found through a chunk index older than the pack's
/// retirement), and a collection that never saw its intent deleted that pack
/// before the registration read the sweep leases. The registration, paused
/// right after writing its intent, finds the file not stored (its recipe names
/// a missing pack), stores it again, and commits a version that reads back.
async fn a_recipe_naming_a_deleted_pack_is_stored_again_before_the_commit(backend: Backend) {
    let (meta, _) = packed_with_purged_base(&backend).await;
    let own = own_file();
    let own_digest = Digest::of(&own);
    // The file is on disk, so the registration stores it before its intent.
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("own.bin"), &own).expect("write source");
    let pause = Arc::new(Pause::default());
    let registering = registry(
        Arc::new(PausingIntents {
            inner: meta.clone(),
            pause: pause.clone(),
        }),
        backend.open(),
    );
    let register = register_in_background(&registering, ArtifactSource::dir(src.path()));
    pause.reached.notified().await;
    // What a collection that ended just now did to the packs only the purged
    // version's own file uses: retired (index first), then deleted.
    let doomed = backend.packs_of(&own_digest).await;
    assert!(!doomed.is_empty(), "the own file is packed");
    for pack in &doomed {
        for ext in ["idx", "pack"] {
            backend
                .remove(&format!("packs/v1/blake3/{pack}.{ext}"))
                .await;
        }
    }
    pause.release.notify_one();
    // The registration's second intent (renewed after storing again) pauses too.
    let releasing = tokio::spawn({
        let pause = pause.clone();
        async move {
            loop {
                pause.reached.notified().await;
                pause.release.notify_one();
            }
        }
    });
    let v = register.await.expect("register task").expect("register");
    releasing.abort();
    assert_eq!(v.number.get(), 3);
    assert_eq!(registering.verify("fraud/3").await.expect("whole").files, 1);
    let check = registering.check().await.expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

/// The interleaving the pack protocol exists for, forced on object storage
/// (the local store runs the same `pack::delete_retired` and lease protocol,
/// with no request to hold): a registration whose chunk index was read before
/// a collection retired a pack names that pack in a recipe written after the
/// collection read the recipes, and the collection then deletes the pack.
///
/// The registering handle has read every pack index (it wrote them) and is
/// held right after its refresh listing, the purged own file's recipe already
/// deleted (as the blob sweep does). A collection then retires the own file's
/// packs and is held at its first pack deletion, after step 2 read the
/// recipes. Let go, the registration finds the own file's chunks in its stale
/// index, writes a recipe naming a retired pack, announces itself and must
/// wait for the collection; the collection deletes the pack its recipe read
/// did not see named; the registration then finds its file not stored, stores
/// it again and commits a version that reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_from_a_stale_chunk_index_survives_the_pack_deletion_it_races() {
    use faulty_store::{Faults, FaultyStore};
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let backend = Backend::Object(Arc::clone(&bucket));
    let through = |faults: &Arc<Faults>| -> Arc<dyn ArtifactStore> {
        Arc::new(
            ObjectArtifactStore::new(
                FaultyStore::wrap(Arc::clone(&bucket), Arc::clone(faults)),
                "artifacts".into(),
            )
            .with_options(ObjectArtifactOptions::new().packed(pack_options())),
        )
    };
    let (registering_faults, collecting_faults) = (Faults::new(), Faults::new());
    let (meta, registering) = packed_with_purged_base_in(through(&registering_faults)).await;
    let own = own_file();
    let own_digest = Digest::of(&own);
    let doomed = backend.packs_of(&own_digest).await;
    // What the blob sweep does to the purged version's own file.
    backend.open().delete(&own_digest).await.expect("delete");

    let listed = registering_faults.pause_at("list", "packs/v1/blake3");
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("own.bin"), &own).expect("write source");
    let register = register_in_background(&registering, ArtifactSource::dir(src.path()));
    listed.reached().await;

    let deleting = collecting_faults.pause_at("delete", ".pack");
    let collecting = registry(Arc::new(meta.clone()), through(&collecting_faults));
    let gc = tokio::spawn(async move { collecting.gc(GcOptions::new(Duration::ZERO)).await });
    deleting.reached().await;
    // Retired: the index is gone, the pack still there.
    for pack in &doomed {
        let path =
            |ext| object_store::path::Path::from(format!("artifacts/packs/v1/blake3/{pack}.{ext}"));
        assert!(bucket.head(&path("idx")).await.is_err(), "{pack} retired");
        assert!(
            bucket.head(&path("pack")).await.is_ok(),
            "{pack} not deleted yet"
        );
    }

    listed.release();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !register.is_finished(),
        "a registration must wait for a collection that may delete packs"
    );
    // The stale index made the registration name the retired packs again.
    assert_eq!(backend.packs_of(&own_digest).await, doomed);

    deleting.release();
    let report = gc.await.expect("gc task").expect("gc");
    assert!(report.packs_deleted >= doomed.len() as u64, "{report:?}");
    let v = register.await.expect("register task").expect("register");
    assert_eq!(v.number.get(), 3);
    let now = backend.packs_of(&own_digest).await;
    for pack in &now {
        let key = format!("artifacts/packs/v1/blake3/{pack}.pack");
        assert!(
            bucket.head(&key.into()).await.is_ok(),
            "the recipe names a stored pack"
        );
    }
    for version in ["fraud/2", "fraud/3"] {
        assert_eq!(registering.verify(version).await.expect("whole").files, 1);
    }
    let check = registering.check().await.expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

/// Measurement (issue 19): what collecting checkpoint parts gives back on
/// disk for a model with many checkpoints on the local store — 2,000
/// registrations and 1,000 metrics added to old versions, a checkpoint every
/// 4 events in segments of 64 versions. Two collections with no grace period
/// leave exactly the parts the kept heads name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, ~1 min: cargo test --all-features --test gc -- --ignored --nocapture checkpoint_parts_on_disk"]
async fn checkpoint_parts_on_disk_before_and_after_gc() {
    use modelreg::format::{CheckpointHead, decode_checkpoint_head};
    use modelreg::store::LocalMetadataStore;
    use modelreg::{Metrics, ModelName};
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(LocalMetadataStore::open(dir.path().join("meta")).expect("open"));
    let reg = Registry::builder()
        .metadata(meta.clone())
        .artifacts(Arc::new(MemoryArtifactStore::new()))
        .checkpoint_every(4)
        .checkpoint_segment(64)
        .build()
        .expect("registry");
    let me = reg.acting_as(alice());
    me.create_model("big", CreateModel::new())
        .await
        .expect("create");
    for i in 0..2000u64 {
        me.register(
            "big",
            ArtifactSource::bytes("m.bin", format!("weights {i}")).expect("source"),
            NewVersion::new(),
        )
        .await
        .expect("register");
        if i % 2 == 1 {
            let n = 1 + (i * 7919) % (i + 1);
            let metrics = Metrics::new()
                .with("auc", i as f64 / 4000.0)
                .expect("finite");
            me.add_metrics(format!("big/{n}"), metrics)
                .await
                .expect("metrics");
        }
    }
    let parts = dir.path().join("meta/logs/v1/big/parts");
    let before = (
        disk_usage(&parts),
        std::fs::read_dir(&parts).expect("parts").count(),
    );
    let first = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    let second = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    let after = (
        disk_usage(&parts),
        std::fs::read_dir(&parts).expect("parts").count(),
    );

    let name = ModelName::new("big").expect("valid");
    let (mut named, mut heads) = (std::collections::BTreeSet::new(), 0);
    let mut next = meta.latest_checkpoint("big").await.expect("read");
    while let Some(cp) = next {
        heads += 1;
        if let CheckpointHead::Segmented(head) =
            decode_checkpoint_head(&name, cp.seq, &cp.bytes).expect("head")
        {
            named.extend(head.part_names());
        }
        next = (meta.checkpoint_at_or_before("big", cp.seq - 1).await).expect("read");
    }
    eprintln!(
        "3,001 events, {heads} heads kept: parts {} files {} bytes before gc, {} files {} bytes after \
         ({} deleted, {} bytes; first collection {} pending)",
        before.1,
        before.0,
        after.1,
        after.0,
        second.checkpoint_parts_deleted,
        second.checkpoint_part_bytes_freed,
        first.checkpoint_parts_pending,
    );
    assert_eq!(first.checkpoint_parts_deleted, 0);
    assert_eq!(after.1, named.len());
    assert_eq!(before.0 - after.0, second.checkpoint_part_bytes_freed);
    assert!(after.0 < before.0);
    assert_eq!(
        Registry::builder()
            .metadata(meta.clone())
            .artifacts(Arc::new(MemoryArtifactStore::new()))
            .build()
            .expect("registry")
            .model("big")
            .await
            .expect("model"),
        reg.model("big").await.expect("model")
    );
}
