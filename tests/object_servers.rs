//! Object-storage scenarios beyond the two suites: racing writers, failed and
//! cancelled multipart uploads, a failure at every request of a registration, and
//! how many requests opening a long history costs.
//!
//! Each scenario runs on object_store's `InMemory` and `LocalFileSystem` always, and
//! on the S3 and Azure servers that `tests/common/servers.rs` finds configured
//! (`MODELREG_TEST_S3_URL`, `MODELREG_TEST_AZURE_URL`; `.ci/run` starts them). Faults
//! and request counts come from `FaultyStore`, a wrapper around the real store.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::faulty_store::{Faults, FaultyStore};
use common::registry_suite::{actor, blobs, create, key, read_tree, version_count};
use common::servers::{Server, unique_name};
use common::store_suite::pattern;
use futures::{TryStreamExt, stream};
use modelreg::store::object::{STREAM_PART_SIZE, object_store_from_url, part_size, stores_in};
use modelreg::store::{ArtifactStore, ArtifactStoreExt, ByteStream, LinkMode, ObjectArtifactStore};
use modelreg::{
    ArtifactSource, Digest, Error, FetchOptions, GcOptions, HistoryFilter, NewVersion, Registry,
    Stage, Tags,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use tempfile::TempDir;

/// Bytes of the large file: three 5 MiB parts, the last one short.
const LARGE: usize = 11 << 20;

/// One object store to run a scenario on, with a prefix of the scenario's own.
struct Base {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL of `prefix`, for registries with clients of their own.
    url: String,
    /// The local directory `LocalFileSystem` writes to, if that is the store.
    dir: Option<TempDir>,
    /// Scratch space for sources and fetches.
    scratch: TempDir,
}

impl Base {
    fn memory() -> Base {
        Base {
            store: Arc::new(InMemory::new()),
            prefix: Path::from(unique_name()),
            url: String::new(),
            dir: None,
            scratch: TempDir::new().expect("temp dir"),
        }
    }

    fn local() -> Base {
        let dir = TempDir::new().expect("temp dir");
        let url = format!("file://{}/registry", dir.path().display());
        let (store, prefix) = object_store_from_url(&url).expect("file URL");
        Base {
            store,
            prefix,
            url,
            dir: Some(dir),
            scratch: TempDir::new().expect("temp dir"),
        }
    }

    fn s3() -> Base {
        Base::server(Server::S3)
    }

    fn azure() -> Base {
        Base::server(Server::Azure)
    }

    fn server(server: Server) -> Base {
        let url = server.unique_url();
        let (store, prefix) = object_store_from_url(&url).expect("configured server URL");
        Base {
            store,
            prefix,
            url,
            dir: None,
            scratch: TempDir::new().expect("temp dir"),
        }
    }

    /// A registry over the base store (a cache of its own, the store shared).
    fn registry(&self) -> Registry {
        registry_over(Arc::clone(&self.store), &self.prefix, 1000)
    }

    /// A registry with a client of its own, as another machine would have: opened
    /// by URL where the store has one.
    async fn other_machine(&self) -> Registry {
        if self.url.is_empty() {
            return self.registry();
        }
        Registry::open_url(&self.url).await.expect("open by URL")
    }

    /// A registry whose every request goes through `faults`.
    fn faulty(&self, faults: &Arc<Faults>, checkpoint_every: u64) -> Registry {
        let store = FaultyStore::wrap(Arc::clone(&self.store), Arc::clone(faults));
        registry_over(store, &self.prefix, checkpoint_every)
    }

    /// The artifact store of the base, without faults.
    fn artifacts(&self) -> ObjectArtifactStore {
        stores_in(Arc::clone(&self.store), &self.prefix).1
    }

    /// A fresh directory below the scratch space.
    fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.scratch.path().join(name);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    /// A model directory with a config and a [`LARGE`] weights file, and the
    /// weights' digest.
    fn model_dir(&self, name: &str, seed: u8) -> (PathBuf, Digest) {
        let dir = self.scratch(name);
        let weights = pattern(seed, LARGE);
        std::fs::write(dir.join("weights.bin"), &weights).expect("write weights");
        std::fs::write(dir.join("config.json"), format!("{{\"seed\": {seed}}}"))
            .expect("write config");
        (dir, Digest::of(&weights))
    }

    /// Files a `LocalFileSystem` base left below its directory that are not
    /// published objects (its multipart staging files end in `#<n>`).
    fn staging_files(&self) -> Vec<String> {
        fn walk(dir: &FsPath, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("read dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.to_string_lossy().contains('#') {
                    out.push(path.display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        if let Some(dir) = &self.dir {
            walk(dir.path(), &mut out);
        }
        out
    }
}

fn registry_over(store: Arc<dyn ObjectStore>, prefix: &Path, checkpoint_every: u64) -> Registry {
    let (metadata, artifacts) = stores_in(store, prefix);
    Registry::builder()
        .metadata(Arc::new(metadata))
        .artifacts(Arc::new(artifacts))
        .checkpoint_every(checkpoint_every)
        .build()
        .expect("builder with both stores")
}

/// Runs each scenario on each base, as `mod <base> { #[test] fn <scenario>() }`.
/// Attributes before a base's name go on each of its tests.
macro_rules! scenarios {
    (bases: [$($(#[$attr:meta])* $base:ident),*], scenarios: $scenarios:tt $(,)?) => {
        $( scenarios!(@base [$(#[$attr])*] $base, $scenarios); )*
    };
    (@base $attrs:tt $base:ident, [$($scenario:ident),* $(,)?]) => {
        mod $base {
            $( scenarios!(@one $attrs $base, $scenario); )*
        }
    };
    (@one [$(#[$attr:meta])*] $base:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $scenario() {
            super::$scenario(super::Base::$base()).await;
        }
    };
}

scenarios! {
    bases: [
        memory,
        local,
        #[cfg_attr(not(modelreg_s3), ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)")]
        s3,
        #[cfg_attr(not(modelreg_azure), ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)")]
        azure
    ],
    scenarios: [
        sixteen_writers_get_unique_gap_free_versions,
        a_failed_part_publishes_nothing_and_a_retry_succeeds,
        a_failure_at_any_request_leaves_no_half_registered_version,
        a_digest_mismatch_aborts_the_upload,
        a_cancelled_upload_publishes_nothing,
        stored_content_is_not_uploaded_again,
        opening_a_long_history_reads_a_checkpoint_and_the_tail,
        common_operations_make_the_expected_requests,
        the_newest_events_of_a_long_history_cost_two_requests,
        part_boundaries_round_trip,
        a_cold_chunk_index_reads_pack_indexes_eight_at_a_time,
    ],
}

/// In CI every server suite must run: a server whose tests this build ignores
/// (its variable was not set, or its feature is off, when the tests were built)
/// fails here, naming it. Outside CI the ignored tests show in the summary.
#[test]
fn servers_configured_in_ci() {
    if !common::servers::in_ci() {
        return;
    }
    let missing: Vec<String> = Server::ALL
        .into_iter()
        .filter_map(|s| s.compiled_in().err().map(|why| format!("{s:?}: {why}")))
        .collect();
    assert!(
        missing.is_empty(),
        "CI is set but these object-storage suites are ignored: {}",
        missing.join("; ")
    );
}

// ----- scenarios ---------------------------------------------------------------------

/// 16 writers, each with its own registry (and, on servers, its own client),
/// register distinct payloads into one model at once: versions 1..=16, each payload
/// exactly once, an event log without gaps.
async fn sixteen_writers_get_unique_gap_free_versions(base: Base) {
    const WRITERS: usize = 16;
    create(&base.registry(), "race").await;
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let registry = base.other_machine().await;
        tasks.push(tokio::spawn(async move {
            let payload = format!("payload of writer {i}");
            let source = ArtifactSource::bytes("model.bin", payload.clone()).expect("valid path");
            let v = registry
                .acting_as(actor("ci"))
                .register("race", source, NewVersion::new())
                .await
                .unwrap_or_else(|e| panic!("writer {i}: {e}"));
            (v, payload)
        }));
    }
    let mut by_number = std::collections::BTreeMap::new();
    for task in tasks {
        let (v, payload) = task.await.expect("writer task");
        assert!(
            by_number.insert(v.number.get(), (v, payload)).is_none(),
            "a version number was handed out twice"
        );
    }
    assert_eq!(
        by_number.keys().copied().collect::<Vec<_>>(),
        (1..=WRITERS as u64).collect::<Vec<_>>()
    );
    let reader = base.other_machine().await;
    let history = reader.events("race").await.expect("events");
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=WRITERS as u64 + 1).collect::<Vec<_>>()
    );
    let mut payloads = BTreeSet::new();
    for (number, (v, payload)) in &by_number {
        let stored = reader
            .resolve(format!("race/{number}"))
            .await
            .expect("resolve");
        assert_eq!(&stored, &v.version);
        let dest = base.scratch(&format!("fetch-{number}"));
        reader
            .fetch(
                format!("race/{number}"),
                dest.join("out"),
                FetchOptions::new(),
            )
            .await
            .expect("fetch");
        let files = read_tree(&dest.join("out"));
        assert_eq!(files["model.bin"], payload.as_bytes());
        payloads.insert(payload.clone());
    }
    assert_eq!(payloads.len(), WRITERS);
}

/// A multipart part that fails aborts the upload: no version, no blob for the
/// weights, no staging file left; the same registration then succeeds.
async fn a_failed_part_publishes_nothing_and_a_retry_succeeds(base: Base) {
    let faults = Faults::new();
    let registry = base.faulty(&faults, 1000);
    create(&registry, "fraud").await;
    let (dir, weights) = base.model_dir("model", 1);
    let blobs_before = blobs(&base.registry()).await;

    faults.fail_parts(&[2]);
    let e = assert_err!(
        registry
            .acting_as(actor("ci"))
            .register("fraud", ArtifactSource::dir(&dir), NewVersion::new())
            .await,
        Error::Storage { .. }
    );
    assert!(e.to_string().contains("injected fault"), "{e}");
    assert_eq!(faults.ops("abort").len(), 1, "{:?}", faults.log());
    assert!(faults.ops("complete").is_empty());
    let healthy = base.other_machine().await;
    assert_eq!(version_count(&healthy, "fraud").await, 0);
    assert_eq!(base.artifacts().head(&weights).await.expect("head"), None);
    assert!(!blobs(&healthy).await.contains(&weights));
    assert!(blobs(&healthy).await.is_superset(&blobs_before));
    assert_eq!(base.staging_files(), Vec::<String>::new());

    faults.heal();
    let v = registry
        .acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(&dir), NewVersion::new())
        .await
        .expect("retry");
    assert_eq!(v.number.get(), 1);
    let report = healthy.verify("fraud/1").await.expect("verify");
    assert_eq!((report.files, report.bytes), (2, v.size));
    let out = base.scratch("out").join("fraud");
    healthy
        .fetch("fraud/1", &out, FetchOptions::new())
        .await
        .expect("fetch");
    assert_eq!(read_tree(&out), read_tree(&dir));
}

/// A registration that fails at its k-th request, for every k: the call fails with
/// a storage error (nothing is swallowed), no version becomes visible, an upload
/// that was cut short publishes no blob, and the same registration then succeeds
/// as version 1.
async fn a_failure_at_any_request_leaves_no_half_registered_version(base: Base) {
    let (dir, weights) = base.model_dir("model", 2);
    let source = || ArtifactSource::dir(&dir);
    let upload_ops = ["put_multipart", "put_part", "complete"];

    // How many requests a clean registration makes.
    let clean = {
        let faults = Faults::new();
        let prefix = base.prefix.clone().join("clean");
        let store = FaultyStore::wrap(Arc::clone(&base.store), Arc::clone(&faults));
        let registry = registry_over(store, &prefix, 1000);
        create(&registry, "fraud").await;
        faults.clear_log();
        registry
            .acting_as(actor("ci"))
            .register("fraud", source(), NewVersion::new())
            .await
            .expect("clean registration");
        faults.log()
    };
    assert!(
        clean.iter().filter(|r| r.op == "put_part").count() == 3,
        "the weights go up in three parts: {clean:?}"
    );

    for k in 1..=clean.len() {
        // Switches of its own: an abort left running in the background by an earlier
        // round must not take this round's fault.
        let faults = Faults::new();
        let prefix = base.prefix.clone().join(format!("k{k}"));
        let store = FaultyStore::wrap(Arc::clone(&base.store), Arc::clone(&faults));
        let registry = registry_over(store, &prefix, 1000);
        create(&registry, "fraud").await;
        faults.clear_log();
        faults.fail_request_in(k);
        let result = registry
            .acting_as(actor("ci"))
            .register("fraud", source(), NewVersion::new())
            .await;
        faults.heal();
        let failed = faults
            .failed()
            .unwrap_or_else(|| panic!("k = {k}: no request was failed: {:?}", faults.log()));
        if failed.op == "delete" && k == clean.len() {
            // The last request withdraws the intent lease after the event was
            // appended: the version is committed, and a lease left behind only
            // expires. Failing it must not fail (or undo) the registration.
            let v = result.unwrap_or_else(|e| panic!("k = {k}: withdrawing the intent: {e}"));
            let healthy = registry_over(Arc::clone(&base.store), &prefix, 1000);
            assert_eq!(version_count(&healthy, "fraud").await, 1, "k = {k}");
            assert_eq!(v.number.get(), 1, "k = {k}");
            healthy.verify("fraud/1").await.expect("verify");
            continue;
        }
        let e = match result {
            Err(e) => e,
            Ok(v) => panic!("k = {k}: failing {failed:?} still registered {v:?}"),
        };
        assert!(matches!(e, Error::Storage { .. }), "k = {k}: {e:?}");

        let healthy = registry_over(Arc::clone(&base.store), &prefix, 1000);
        assert_eq!(version_count(&healthy, "fraud").await, 0, "k = {k}");
        if upload_ops.contains(&failed.op) {
            let (_, artifacts) = stores_in(Arc::clone(&base.store), &prefix);
            assert_eq!(
                artifacts.head(&weights).await.expect("head"),
                None,
                "k = {k}: failing {failed:?} published the weights"
            );
        }

        let v = registry
            .acting_as(actor("ci"))
            .register("fraud", source(), NewVersion::new())
            .await
            .unwrap_or_else(|e| panic!("k = {k}: retry: {e}"));
        assert_eq!(v.number.get(), 1, "k = {k}");
        healthy.verify("fraud/1").await.expect("verify");
        let history = healthy.events("fraud").await.expect("events");
        assert_eq!(history.len(), 2, "k = {k}");
    }
    assert_eq!(base.staging_files(), Vec::<String>::new());
}

/// Bytes that do not hash to the digest they are put under are never published: a
/// small file is refused before any request, a large file's or stream's multipart
/// upload is aborted, not completed.
async fn a_digest_mismatch_aborts_the_upload(base: Base) {
    let faults = Faults::new();
    let store = FaultyStore::wrap(Arc::clone(&base.store), Arc::clone(&faults));
    let (_, artifacts) = stores_in(store, &base.prefix);
    let claimed = Digest::of(b"not these bytes");
    let src = base.scratch("src");

    let small = pattern(3, 1000);
    std::fs::write(src.join("small"), &small).expect("write");
    assert_err!(
        artifacts.put_file(&claimed, &src.join("small")).await,
        Error::Integrity { .. }
    );
    assert!(faults.ops("put").is_empty(), "{:?}", faults.log());

    let large = pattern(4, LARGE);
    std::fs::write(src.join("large"), &large).expect("write");
    let e = assert_err!(
        artifacts.put_file(&claimed, &src.join("large")).await,
        Error::Integrity { .. }
    );
    assert!(e.to_string().contains("large"), "{e}");
    assert_eq!(faults.ops("put_part").len(), 3);
    assert_eq!(faults.ops("abort").len(), 1);
    assert!(faults.ops("complete").is_empty());

    faults.clear_log();
    let chunks: Vec<Bytes> = (0..3).map(|i| pattern(i, 7 << 20)).collect();
    let stream: ByteStream = Box::pin(stream::iter(chunks.into_iter().map(Ok)));
    assert_err!(
        artifacts.put_stream(&claimed, stream).await,
        Error::Integrity { .. }
    );
    assert_eq!(faults.ops("abort").len(), 1, "{:?}", faults.log());
    assert!(faults.ops("complete").is_empty());

    for digest in [claimed, Digest::of(&small), Digest::of(&large)] {
        assert_eq!(base.artifacts().head(&digest).await.expect("head"), None);
    }
    assert!(blobs(&base.registry()).await.is_empty());
    assert_eq!(base.staging_files(), Vec::<String>::new());
}

/// A put dropped while its parts are in flight (a cancelled task, a timeout) is
/// aborted in the background and publishes nothing; putting again works.
async fn a_cancelled_upload_publishes_nothing(base: Base) {
    let faults = Faults::new();
    let store = FaultyStore::wrap(Arc::clone(&base.store), Arc::clone(&faults));
    let (_, artifacts) = stores_in(store, &base.prefix);
    let src = base.scratch("src").join("large");
    let data = pattern(5, LARGE);
    std::fs::write(&src, &data).expect("write");
    let digest = Digest::of(&data);

    faults.delay_parts(Duration::from_secs(30));
    let put = {
        let (artifacts, src) = (artifacts.clone(), src.clone());
        tokio::spawn(async move { artifacts.put_file(&digest, &src).await })
    };
    // Cancel it once its parts are in flight.
    for _ in 0..500 {
        if !faults.ops("put_part").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!faults.ops("put_part").is_empty(), "{:?}", faults.log());
    put.abort();
    assert!(put.await.expect_err("cancelled").is_cancelled());
    faults.heal();
    for _ in 0..100 {
        if !faults.ops("abort").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(faults.ops("abort").len(), 1, "{:?}", faults.log());
    assert!(faults.ops("complete").is_empty());
    assert_eq!(base.artifacts().head(&digest).await.expect("head"), None);
    assert_eq!(base.staging_files(), Vec::<String>::new());

    artifacts.put_file(&digest, &src).await.expect("put again");
    let dest = base.scratch("out").join("large");
    artifacts
        .materialize(&digest, &dest, LinkMode::Copy)
        .await
        .expect("materialize");
    assert!(std::fs::read(&dest).expect("read") == data);
}

/// Registering files the store already has sends no file's bytes again
/// beyond a few KiB: no multipart upload of the large file (a HEAD finds it),
/// and the blob PUTs are create-if-absent ones the store refuses, of the
/// (existing) manifest and of the 12-byte config, which is sent rather than
/// asked about (a file of up to 4 KiB costs that one request either way).
async fn stored_content_is_not_uploaded_again(base: Base) {
    let faults = Faults::new();
    let registry = base.faulty(&faults, 1000);
    create(&registry, "fraud").await;
    let (dir, _) = base.model_dir("model", 6);
    let v1 = registry
        .acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(&dir), NewVersion::new())
        .await
        .expect("first");
    assert_eq!(faults.ops("put_part").len(), 3);

    faults.clear_log();
    let v2 = registry
        .acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(&dir), NewVersion::new())
        .await
        .expect("second");
    assert_eq!((v2.number.get(), v2.artifact), (2, v1.artifact));
    let log = faults.log();
    assert!(
        log.iter()
            .all(|r| !matches!(r.op, "put_multipart" | "put_part" | "complete")),
        "{log:?}"
    );
    let blob_puts: Vec<_> = faults
        .ops("put")
        .into_iter()
        .filter(|r| r.path.contains("/artifacts/"))
        .collect();
    let wanted = [v1.artifact, Digest::of(b"{\"seed\": 6}")];
    assert!(
        blob_puts.len() == wanted.len()
            && wanted
                .iter()
                .all(|d| blob_puts.iter().any(|r| r.path.ends_with(&d.to_hex()))),
        "the manifest and the config only: {blob_puts:?}"
    );
    // The large file while ingesting, then both files and the manifest once the
    // registration's intent protects them from garbage collection.
    assert_eq!(faults.ops("head").len(), 1 + 3, "{log:?}");
}

/// Opening a model with 250 events and a checkpoint every 100 reads the latest
/// checkpoint and the 50 events after it — not 250 — in a handful of requests
/// plus one GET per tail event; after that, a query costs one request.
async fn opening_a_long_history_reads_a_checkpoint_and_the_tail(base: Base) {
    const EVENTS: u64 = 250;
    let faults = Faults::new();
    let writer = base.faulty(&faults, 100);
    create(&writer, "long").await;
    for i in 1..EVENTS {
        let tags: Tags = [(common::registry_suite::key("step"), i.to_string())].into();
        writer
            .acting_as(actor("ci"))
            .set_model_tags("long", tags, vec![])
            .await
            .expect("tag");
    }

    let cold = base.faulty(&faults, 100);
    faults.clear_log();
    let state = cold.model("long").await.expect("model");
    assert_eq!(state.seq(), EVENTS);
    let log = faults.log();
    let record_gets = log
        .iter()
        .filter(|r| r.op == "get" && r.path.contains("/records/"))
        .count();
    let lists = log.iter().filter(|r| r.op == "list").count();
    let others = log.len() - record_gets - lists;
    // The record the checkpoint covers (200), then the tail 201..=250.
    assert_eq!(record_gets, 51, "{log:?}");
    // The checkpoints, then the tail.
    assert_eq!(lists, 2, "{log:?}");
    // The checkpoint itself.
    assert_eq!(others, 1, "{log:?}");

    faults.clear_log();
    cold.model("long").await.expect("model");
    assert_eq!(faults.log().len(), 1, "{:?}", faults.log());
}

/// The requests of the common operations on a warm registry, pinned: a
/// registration of a small in-memory file reads the log once (the commit's
/// fold; its early check uses the cached state), a query once, a command once
/// before its PUT, and the newest 100 events of a 250-event log are one fold
/// GET plus one read of 100 records (GET, LIST, 99 GETs) — never the whole log.
async fn common_operations_make_the_expected_requests(base: Base) {
    let faults = Faults::new();
    let reg = base.faulty(&faults, 100);
    create(&reg, "ops").await;
    let ci = reg.acting_as(actor("ci"));
    for i in 0..249u64 {
        ci.set_model_tags("ops", [(key("step"), i.to_string())].into(), vec![])
            .await
            .expect("tag");
    }
    let count = |op: &str| faults.ops(op).len();
    let log_gets = || {
        faults
            .log()
            .iter()
            .filter(|r| r.op == "get" && r.path.contains("/records/"))
            .count()
    };

    faults.clear_log();
    let v = ci
        .register(
            "ops",
            ArtifactSource::bytes("m.bin", "weights").expect("source"),
            NewVersion::new(),
        )
        .await
        .expect("register");
    let log = faults.log();
    // The fold before the commit, nothing else of the log.
    assert_eq!(log_gets(), 1, "{log:?}");
    // Blob and manifest: one create-if-absent PUT each (no HEAD first, no
    // recipe GET: `put_bytes_if_absent`), and HEAD once the intent is
    // written; PUTs of the intent and the event; the listing of the sweeps;
    // the intent's removal.
    assert_eq!(
        (count("head"), count("put"), count("list"), count("delete")),
        (2, 4, 1, 1),
        "{log:?}"
    );
    let recipe_gets = log
        .iter()
        .filter(|r| r.op == "get" && r.path.contains("/recipes/"))
        .count();
    assert_eq!(recipe_gets, 0, "{log:?}");
    assert_eq!(log.len(), 9, "{log:?}");

    // The same bytes again: both PUTs find their blob stored (409/412), and
    // the version says so.
    faults.clear_log();
    let again = ci
        .register(
            "ops",
            ArtifactSource::bytes("m.bin", "weights").expect("source"),
            NewVersion::new(),
        )
        .await
        .expect("register again");
    assert_eq!(
        (again.report.files_present, again.report.files_stored),
        (1, 0),
        "{:?}",
        again.report
    );
    let log = faults.log();
    assert_eq!(
        (count("head"), count("put"), count("list"), count("delete")),
        (2, 4, 1, 1),
        "{log:?}"
    );
    assert_eq!(log.len(), 9, "{log:?}");

    faults.clear_log();
    reg.resolve("ops@latest").await.expect("resolve");
    assert_eq!(faults.log().len(), 1, "{:?}", faults.log());

    faults.clear_log();
    ci.transition(&v, Stage::Staging, "try")
        .await
        .expect("transition");
    assert_eq!((count("get"), count("put")), (1, 1), "{:?}", faults.log());

    faults.clear_log();
    let page = reg
        .history_page("ops", &HistoryFilter::new(), None, 100)
        .await
        .expect("history");
    assert_eq!(page.items.len(), 100);
    let log = faults.log();
    // The fold's GET; the events come from the registry's tail.
    assert_eq!(log_gets(), 1, "{log:?}");
    assert_eq!(log.len(), 1, "{log:?}");
}

/// The newest 100 events of a 2,050-event log with a checkpoint every 100
/// events, read by a registry that opened the model from the checkpoint at
/// 2,000: the 50 after it come from its tail, the 50 before from the event
/// archive that checkpoint wrote. Two requests (the fold's GET, the
/// archive's), where reading records cost one per event (~100). Paging on
/// costs one GET per archive: the next 1,000 events are two.
async fn the_newest_events_of_a_long_history_cost_two_requests(base: Base) {
    let faults = Faults::new();
    let writer = base.faulty(&faults, 100);
    create(&writer, "long").await;
    let ci = writer.acting_as(actor("ci"));
    for i in 2..=2050u64 {
        ci.set_model_tags("long", [(key("step"), i.to_string())].into(), vec![])
            .await
            .expect("tag");
    }
    let all = HistoryFilter::new();
    let gets = |part: &str| {
        faults
            .log()
            .iter()
            .filter(|r| r.op == "get" && r.path.contains(part))
            .count()
    };
    let seqs = |page: &modelreg::Page<modelreg::Event, u64>| {
        page.items.iter().map(|e| e.seq).collect::<Vec<_>>()
    };

    // The writer holds the newest events in its tail.
    faults.clear_log();
    let page = writer
        .history_page("long", &all, None, 100)
        .await
        .expect("history");
    assert_eq!(seqs(&page), (1951..=2050).rev().collect::<Vec<_>>());
    assert_eq!(faults.log().len(), 1, "{:?}", faults.log());

    let reader = base.faulty(&faults, 100);
    reader.model("long").await.expect("cold open");
    faults.clear_log();
    let page = reader
        .history_page("long", &all, None, 100)
        .await
        .expect("history");
    assert_eq!(seqs(&page), (1951..=2050).rev().collect::<Vec<_>>());
    let log = faults.log();
    assert_eq!(
        (gets("/records/"), gets("/parts/events-")),
        (1, 1),
        "{log:?}"
    );
    assert_eq!(log.len(), 2, "{log:?}");

    // Events 1,950 down to 951: the rest of that archive, then the first block's.
    faults.clear_log();
    let older = reader
        .history_page("long", &all, page.next, 1000)
        .await
        .expect("history");
    assert_eq!(seqs(&older), (951..=1950).rev().collect::<Vec<_>>());
    let log = faults.log();
    assert_eq!(
        (gets("/records/"), gets("/parts/events-")),
        (1, 2),
        "{log:?}"
    );
    assert_eq!(log.len(), 3, "{log:?}");
}

/// Files and streams on each side of a part boundary go up in the expected number
/// of parts (none: one PUT) and read back byte for byte, however the stream is
/// chunked — including one chunk larger than two parts.
async fn part_boundaries_round_trip(base: Base) {
    const MIB: usize = 1 << 20;
    let file_part = part_size(0) as usize;
    let stream_part = STREAM_PART_SIZE as usize;
    let faults = Faults::new();
    let store = FaultyStore::wrap(Arc::clone(&base.store), Arc::clone(&faults));
    let (_, artifacts) = stores_in(store, &base.prefix);
    let src = base.scratch("src");

    for (i, (size, parts)) in [
        (file_part, 0),
        (file_part + 1, 2),
        (2 * file_part, 2),
        (2 * file_part + 1, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(i as u8, size);
        let path = src.join(format!("f{i}"));
        std::fs::write(&path, &data).expect("write");
        faults.clear_log();
        let digest = Digest::of(&data);
        artifacts.put_file(&digest, &path).await.expect("put file");
        assert_eq!(faults.ops("put_part").len(), parts, "file of {size} bytes");
        assert_eq!(
            get_all(&artifacts, &digest).await,
            data,
            "file of {size} bytes"
        );
    }

    // (chunk sizes, expected parts)
    let cases: [(Vec<usize>, usize); 5] = [
        (vec![stream_part - 1], 0),
        (vec![stream_part], 1),
        (vec![1, stream_part], 2),
        (vec![3 * MIB + 7; 7], 3),
        (vec![5, 2 * stream_part + 11, 3], 3),
    ];
    for (i, (chunks, parts)) in cases.into_iter().enumerate() {
        let chunks: Vec<Bytes> = chunks
            .iter()
            .enumerate()
            .map(|(j, n)| pattern((10 * i + j) as u8, *n))
            .collect();
        let whole: Vec<u8> = chunks.concat();
        let digest = Digest::of(&whole);
        faults.clear_log();
        let stream: ByteStream = Box::pin(stream::iter(chunks.into_iter().map(Ok)));
        artifacts
            .put_stream(&digest, stream)
            .await
            .expect("put stream");
        assert_eq!(faults.ops("put_part").len(), parts, "stream case {i}");
        assert!(
            get_all(&artifacts, &digest).await == whole,
            "stream case {i}"
        );
    }
    assert_eq!(base.staging_files(), Vec::<String>::new());
}

async fn get_all(store: &dyn ArtifactStore, digest: &Digest) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .get(digest)
        .await
        .expect("get")
        .try_collect()
        .await
        .expect("read");
    chunks.concat()
}

// ----- layout ------------------------------------------------------------------------

/// A registry directory written by `open_local` opens by `file://` URL and the
/// other way round: the object stores use the local layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_urls_and_local_registries_share_one_layout() {
    let dir = TempDir::new().expect("temp dir");
    let root = dir.path().join("registry");
    let url = format!("file://{}", root.display());
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("weights.bin"), pattern(7, LARGE)).expect("write");

    let local = Registry::open_local(&root).await.expect("open local");
    create(&local, "fraud").await;
    local
        .acting_as(actor("a"))
        .register("fraud", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register locally");

    let by_url = Registry::open_url(&url).await.expect("open by URL");
    by_url.verify("fraud/1").await.expect("verify by URL");
    let report = by_url.check().await.expect("check by URL");
    assert!(report.problems.is_empty(), "{report:?}");
    // What the local store wrote (`blobs/v2`) is listed, kept while used and
    // collected when not, by URL too.
    let orphan = local
        .artifact_store()
        .put_bytes("left by a failed upload".into())
        .await
        .expect("orphan");
    let hex = orphan.to_hex();
    let orphan_file = root.join(format!("artifacts/blobs/v2/blake3/{}/{hex}", &hex[..2]));
    assert!(orphan_file.exists(), "the local store writes blobs/v2");
    let stored = by_url
        .artifact_store()
        .put_bytes_if_absent(&orphan, "left by a failed upload".into())
        .await
        .expect("put if absent by URL");
    assert!(!stored, "found where the local store put it");
    let old_key = format!(
        "artifacts/blobs/v1/blake3/{}/{}/{hex}",
        &hex[..2],
        &hex[2..4]
    );
    assert!(!root.join(old_key).exists(), "not stored a second time");
    let gc = by_url
        .gc(GcOptions::new(Duration::ZERO))
        .await
        .expect("gc by URL");
    assert_eq!(gc.deleted, [orphan]);
    assert!(!orphan_file.exists());
    by_url.verify("fraud/1").await.expect("verify after gc");
    by_url
        .fetch("fraud/1", dir.path().join("out1"), FetchOptions::new())
        .await
        .expect("fetch by URL");
    assert_eq!(read_tree(&dir.path().join("out1")), read_tree(&src));
    std::fs::write(src.join("config.json"), "{}").expect("write");
    let v2 = by_url
        .acting_as(actor("b"))
        .register("fraud", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register by URL");
    assert_eq!(v2.number.get(), 2);

    let local = Registry::open_local(&root).await.expect("reopen local");
    assert_eq!(
        local.resolve("fraud@latest").await.expect("resolve"),
        v2.version
    );
    local
        .fetch("fraud/2", dir.path().join("out2"), FetchOptions::new())
        .await
        .expect("fetch locally");
    assert_eq!(read_tree(&dir.path().join("out2")), read_tree(&src));
    assert_eq!(local.events("fraud").await.expect("events").len(), 3);
}

/// A process's first packed write loads the chunk index of what other
/// processes stored: one LIST of the packs and one GET per pack index, eight
/// under way at once rather than one after the other, and nothing else of
/// the packs before it writes.
async fn a_cold_chunk_index_reads_pack_indexes_eight_at_a_time(base: Base) {
    use modelreg::store::PackOptions;
    use modelreg::store::object::ObjectArtifactOptions;
    const FILES: usize = 12;
    let packed = ObjectArtifactOptions::new().packed(PackOptions::new().min_file_size(0));
    let src = base.scratch("cold-index");
    // Twelve files of distinct bytes, each its own pack and index.
    let writer = base.artifacts().with_options(packed.clone());
    for i in 0..FILES {
        let path = src.join(format!("f{i}"));
        let bytes = pattern(i as u8 + 1, 256 << 10);
        std::fs::write(&path, &bytes).expect("write");
        writer
            .put_file(&Digest::of(&bytes), &path)
            .await
            .expect("put");
    }

    let faults = Faults::new();
    let store = FaultyStore::wrap(Arc::clone(&base.store), Arc::clone(&faults));
    let cold = stores_in(store, &base.prefix).1.with_options(packed);
    assert_eq!(cold.known_chunks(), 0, "loaded at the first packed write");
    faults.delay_gets(".idx", Duration::from_millis(50));
    let bytes = pattern(99, 256 << 10);
    let path = src.join("new");
    std::fs::write(&path, &bytes).expect("write");
    cold.put_file(&Digest::of(&bytes), &path)
        .await
        .expect("put");
    let log = faults.log();
    let index_gets = log
        .iter()
        .filter(|r| r.op == "get" && r.path.ends_with(".idx"))
        .count();
    let pack_lists = log
        .iter()
        .filter(|r| r.op == "list" && r.path.ends_with("packs/v1/blake3"))
        .count();
    assert_eq!((index_gets, pack_lists), (FILES, 1), "{log:?}");
    assert_eq!(faults.most_gets_in_flight(), 8, "{log:?}");
    assert!(cold.known_chunks() >= FILES, "{}", cold.known_chunks());
}
