//! Serving on a local registry directory, across processes: a watch sees moves
//! made by another process, and a model cache shared by several processes
//! downloads once, never shows a partial model, evicts the least recently used
//! entries it may, and repairs corrupt ones.
//!
//! Child processes are this test binary run again with one `*_child` test selected
//! and its instructions in environment variables; without them those tests do
//! nothing.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::children::{spawn_child, wait_children};
use common::registry_suite::{actor, create, digest};
use common::serving_suite::{next_number, to_production};
use futures::StreamExt;
use modelreg::{
    ArtifactSource, CacheOptions, Digest, Error, ModelCache, NewVersion, Registry, VersionRecord,
    WatchOptions,
};
use tempfile::TempDir;

/// The registry directory a child works on.
const CHILD_REGISTRY: &str = "MODELREG_SERVING_REGISTRY";
/// A directory for handshakes and results between parent and child.
const CHILD_WORK: &str = "MODELREG_SERVING_WORK";
/// The cache directory a cache child uses.
const CHILD_CACHE: &str = "MODELREG_SERVING_CACHE";
/// A cache child's number.
const CHILD_ID: &str = "MODELREG_SERVING_CHILD";

/// How long any handshake may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

async fn open(dir: &Path) -> Registry {
    Registry::open_local(dir)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Waits until `path` exists.
async fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < WAIT,
            "{} did not appear in time",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ----- watch across processes ----------------------------------------------------------

/// The moves the child makes, and the production version after each.
const MOVES: [(&str, u64); 4] = [
    ("promote 2", 2),
    ("promote 3", 3),
    ("rollback", 2),
    ("rollback", 1),
];

/// Not a test on its own: the child of [`watch_sees_moves_made_by_another_process`].
/// Makes each move in [`MOVES`] and waits for the parent's acknowledgement before
/// the next, so that each one is observable on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_child() {
    let (Some(dir), Some(work)) = (
        std::env::var_os(CHILD_REGISTRY),
        std::env::var_os(CHILD_WORK),
    ) else {
        return;
    };
    let (dir, work) = (PathBuf::from(dir), PathBuf::from(work));
    let reg = open(&dir).await;
    for (i, (what, _)) in MOVES.iter().enumerate() {
        match *what {
            "promote 2" => to_production(&reg, "fraud", 2).await,
            "promote 3" => to_production(&reg, "fraud", 3).await,
            _ => {
                reg.acting_as(actor("child"))
                    .rollback("fraud", "test")
                    .await
                    .expect("rollback");
            }
        }
        wait_for_file(&work.join(format!("ack-{i}"))).await;
    }
}

/// A child process promotes twice and rolls back twice; the parent's watch on
/// `fraud@production` yields the starting version and then each change, in order,
/// each within the time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_moves_made_by_another_process() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("registry");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let reg = open(&dir).await;
    create(&reg, "fraud").await;
    for i in 1..=3 {
        reg.acting_as(actor("ci"))
            .register(
                "fraud",
                ArtifactSource::bytes("m.bin", format!("v{i}")).expect("valid"),
                NewVersion::new(),
            )
            .await
            .expect("register");
    }
    to_production(&reg, "fraud", 1).await;

    let mut watch = reg
        .watch(
            "fraud@production",
            WatchOptions::new().interval(Duration::from_millis(10)),
        )
        .expect("valid")
        .boxed();
    assert_eq!(next_number(&mut watch).await, 1);

    let child = spawn_child(
        "watch_child",
        [
            (CHILD_REGISTRY, dir.as_os_str()),
            (CHILD_WORK, work.as_os_str()),
            (CHILD_ID, "0".as_ref()),
        ],
    );
    let mut seen = Vec::new();
    for (i, (what, expected)) in MOVES.iter().enumerate() {
        let n = next_number(&mut watch).await;
        assert_eq!(n, *expected, "after '{what}' (seen so far: {seen:?})");
        seen.push(n);
        std::fs::write(work.join(format!("ack-{i}")), b"").expect("ack");
    }
    wait_children(vec![child]).await;
    assert_eq!(seen, [2, 3, 2, 1]);
}

// ----- the cache across processes ------------------------------------------------------

/// Files of the cached model: big enough that a download takes a moment.
fn model_files() -> Vec<(String, Vec<u8>)> {
    (0..4)
        .map(|i| {
            let len = 3 << 20;
            let data: Vec<u8> = (0..len).map(|j| ((j * 31 + i * 7) % 251) as u8).collect();
            (format!("shard-{i}.bin"), data)
        })
        .collect()
}

/// Registers [`model_files`] as version 1 of `big`.
async fn register_big(reg: &Registry) -> VersionRecord {
    create(reg, "big").await;
    let files: Vec<(String, bytes::Bytes)> = model_files()
        .into_iter()
        .map(|(p, d)| (p, bytes::Bytes::from(d)))
        .collect();
    reg.acting_as(actor("ci"))
        .register(
            "big",
            ArtifactSource::files(files).expect("valid paths"),
            NewVersion::new(),
        )
        .await
        .expect("register")
        .version
}

/// Hashes every file below `dir` by relative path.
fn hash_tree(dir: &Path) -> BTreeMap<String, Digest> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        out.insert(name, digest(&std::fs::read(entry.path()).expect("read")));
    }
    out
}

/// Not a test on its own: one child of
/// [`cache_downloads_once_for_many_processes_and_threads`]. Waits for the start
/// signal, then two tasks get the model at once; each checks every byte of what
/// it got and records whether it downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_child() {
    let (Some(dir), Some(work), Some(cache)) = (
        std::env::var_os(CHILD_REGISTRY),
        std::env::var_os(CHILD_WORK),
        std::env::var_os(CHILD_CACHE),
    ) else {
        return;
    };
    let (dir, work, cache) = (
        PathBuf::from(dir),
        PathBuf::from(work),
        PathBuf::from(cache),
    );
    let id: usize = std::env::var(CHILD_ID)
        .expect("id")
        .parse()
        .expect("number");
    let reg = open(&dir).await;
    let cache = ModelCache::open(&cache, reg, CacheOptions::new())
        .await
        .expect("open cache");
    let expected: BTreeMap<String, Digest> = model_files()
        .into_iter()
        .map(|(p, d)| (p, digest(&d)))
        .collect();
    wait_for_file(&work.join("go")).await;
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let cache = cache.clone();
            let expected = expected.clone();
            tokio::spawn(async move {
                let model = cache.get("big@latest").await.expect("get");
                let path = model.path().to_owned();
                let got = tokio::task::spawn_blocking(move || hash_tree(&path))
                    .await
                    .expect("join");
                assert_eq!(got, expected, "the files are whole and correct");
                model.downloaded()
            })
        })
        .collect();
    for (t, task) in tasks.into_iter().enumerate() {
        let downloaded = task.await.expect("task");
        std::fs::write(
            work.join(format!("result-{id}-{t}")),
            if downloaded { "downloaded" } else { "cached" },
        )
        .expect("record");
    }
}

/// Four processes with two tasks each ask for the same model at the same moment:
/// exactly one downloads it, and all eight read complete, correct files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_downloads_once_for_many_processes_and_threads() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("registry");
    let work = tmp.path().join("work");
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&work).expect("work dir");
    register_big(&open(&dir).await).await;

    const CHILDREN: usize = 4;
    let children: Vec<Child> = (0..CHILDREN)
        .map(|id| {
            spawn_child(
                "cache_child",
                [
                    (CHILD_REGISTRY, dir.as_os_str()),
                    (CHILD_WORK, work.as_os_str()),
                    (CHILD_CACHE, cache.as_os_str()),
                    (CHILD_ID, id.to_string().as_ref()),
                ],
            )
        })
        .collect();
    // Let every child open the registry and the cache, then start them together.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(work.join("go"), b"").expect("go");
    wait_children(children).await;

    let mut results = Vec::new();
    for id in 0..CHILDREN {
        for t in 0..2 {
            results.push(
                std::fs::read_to_string(work.join(format!("result-{id}-{t}")))
                    .expect("every task recorded its result"),
            );
        }
    }
    let downloads = results.iter().filter(|r| *r == "downloaded").count();
    assert_eq!(downloads, 1, "results: {results:?}");
    assert_eq!(results.len(), 8);
    // No staging or trash left behind.
    for sub in ["tmp", "trash"] {
        let left: Vec<_> = std::fs::read_dir(cache.join("v1").join(sub))
            .expect("read")
            .collect();
        assert!(left.is_empty(), "{sub} holds {left:?}");
    }
}

// ----- eviction and repair (one process) ---------------------------------------------

/// A registry with `n` versions of `m`, each one file of `size` bytes.
async fn registry_with_versions(dir: &Path, n: u64, size: usize) -> Registry {
    let reg = open(dir).await;
    create(&reg, "m").await;
    for i in 1..=n {
        let data = vec![i as u8; size];
        reg.acting_as(actor("ci"))
            .register(
                "m",
                ArtifactSource::bytes("w.bin", data).expect("valid"),
                NewVersion::new(),
            )
            .await
            .expect("register");
    }
    reg
}

/// The artifacts in the cache, least recently used first.
async fn cached(cache: &ModelCache) -> Vec<Digest> {
    cache
        .entries()
        .await
        .expect("entries")
        .iter()
        .map(|e| e.artifact)
        .collect()
}

/// `evict`, retried while it reports having done nothing at all: by contract
/// it returns an empty report at once when another eviction holds the
/// cache's eviction lock, and under load a lock file can stay locked a moment
/// longer (a process forked meanwhile holds its descriptor until it execs).
async fn evict_settled(cache: &ModelCache) -> modelreg::EvictReport {
    for _ in 0..100 {
        let report = cache.evict().await.expect("evict");
        if report != modelreg::EvictReport::default() {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cache.evict().await.expect("evict")
}

/// Entries' last-use times come from file times: keep uses apart.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// With room for two of three equal entries, getting the third evicts the least
/// recently used entry that nobody holds: an entry in use is skipped even when it
/// is the oldest. Once released it is evicted like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_evicts_least_recently_used_but_never_in_use() {
    let tmp = TempDir::new().expect("temp dir");
    let reg = registry_with_versions(&tmp.path().join("registry"), 3, 1000).await;
    let artifact = |n: u64| {
        let reg = reg.clone();
        async move {
            reg.resolve(format!("m/{n}"))
                .await
                .expect("resolve")
                .artifact
        }
    };
    let (a1, a2, a3) = (artifact(1).await, artifact(2).await, artifact(3).await);
    let cache = ModelCache::open(
        tmp.path().join("cache"),
        reg.clone(),
        CacheOptions::new().max_bytes(2500),
    )
    .await
    .expect("open");

    let held = cache.get("m/1").await.expect("get 1");
    tick().await;
    drop(cache.get("m/2").await.expect("get 2"));
    tick().await;
    let third = cache.get("m/3").await.expect("get 3");
    assert!(third.downloaded());
    // 1 is the least recently used but held; 2 goes.
    assert_eq!(cached(&cache).await, [a1, a3]);
    assert!(held.path().join("w.bin").exists());
    assert_eq!(
        std::fs::read(held.path().join("w.bin")).expect("read"),
        vec![1u8; 1000]
    );
    assert_eq!(cache.usage().await.expect("usage"), 2000);

    // While both are held, nothing can go even if the cache is over its limit.
    tick().await;
    let second = cache.get("m/2").await.expect("get 2 again");
    assert!(second.downloaded());
    assert_eq!(cache.usage().await.expect("usage"), 3000);
    let report = evict_settled(&cache).await;
    assert_eq!((report.evicted.len(), report.skipped_in_use), (0, 3));

    // Released, 1 is the least recently used and goes first.
    drop(held);
    let report = evict_settled(&cache).await;
    assert_eq!(report.evicted, [a1]);
    assert_eq!((report.freed_bytes, report.remaining_bytes), (1000, 2000));
    assert_eq!(cached(&cache).await, [a3, a2]);
    drop((second, third));
    // Getting a cached entry makes it the most recently used.
    tick().await;
    assert!(!cache.get("m/3").await.expect("get 3").downloaded());
    assert_eq!(cached(&cache).await, [a2, a3]);
}

/// An entry whose file was truncated, whose marker is missing, or whose bytes
/// changed (found with `verify_on_open`) is fetched again, and the caller gets
/// the right bytes. Staging left by a crashed download is removed on open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_refetches_corrupt_and_partial_entries() {
    let tmp = TempDir::new().expect("temp dir");
    let reg = registry_with_versions(&tmp.path().join("registry"), 1, 4096).await;
    let dir = tmp.path().join("cache");
    let good = vec![1u8; 4096];
    let cache = ModelCache::open(&dir, reg.clone(), CacheOptions::new())
        .await
        .expect("open");
    let first = cache.get("m/1").await.expect("get");
    assert!(first.downloaded());
    let file = first.path().join("w.bin");
    let entry = first.path().parent().expect("entry dir").to_owned();
    drop(first);

    let make_writable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    };
    make_writable(&file);
    std::fs::write(&file, b"short").expect("truncate");
    let again = cache.get("m/1").await.expect("get after truncation");
    assert!(again.downloaded(), "a truncated file is noticed");
    assert_eq!(
        std::fs::read(again.path().join("w.bin")).expect("read"),
        good
    );
    drop(again);

    std::fs::remove_file(entry.join("complete")).expect("remove marker");
    let again = cache.get("m/1").await.expect("get without marker");
    assert!(
        again.downloaded(),
        "an entry without its marker is incomplete"
    );
    drop(again);

    // Same size, other bytes: only a verifying cache notices.
    make_writable(&file);
    let mut flipped = good.clone();
    flipped[100] ^= 0xff;
    std::fs::write(&file, &flipped).expect("flip a byte");
    assert!(!cache.get("m/1").await.expect("get").downloaded());
    let verifying = ModelCache::open(&dir, reg.clone(), CacheOptions::new().verify_on_open(true))
        .await
        .expect("open");
    let again = verifying.get("m/1").await.expect("get verified");
    assert!(again.downloaded(), "verify_on_open re-hashes");
    assert_eq!(
        std::fs::read(again.path().join("w.bin")).expect("read"),
        good
    );
    drop(again);

    // A crashed download's staging directory is swept on open.
    let artifact = reg.resolve("m/1").await.expect("resolve").artifact;
    let staging = dir.join("v1/tmp").join(artifact.to_hex());
    std::fs::create_dir_all(staging.join("files")).expect("fake staging");
    ModelCache::open(&dir, reg, CacheOptions::new())
        .await
        .expect("open");
    assert!(!staging.exists());
}

/// An entry that goes bad while another guard holds it cannot be replaced under
/// that guard: `get` fails with `Corrupt` instead of waiting for ever, and
/// succeeds once the guard is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entry_in_use_is_reported_not_replaced() {
    let tmp = TempDir::new().expect("temp dir");
    let reg = registry_with_versions(&tmp.path().join("registry"), 1, 100).await;
    let cache = ModelCache::open(tmp.path().join("cache"), reg, CacheOptions::new())
        .await
        .expect("open");
    let held = cache.get("m/1").await.expect("get");
    let file = held.path().join("w.bin");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    std::fs::write(&file, b"x").expect("corrupt");
    assert_err!(cache.get("m/1").await, Error::Corrupt { .. });
    drop(held);
    let fixed = cache.get("m/1").await.expect("get after release");
    assert!(fixed.downloaded());
    assert_eq!(
        std::fs::read(fixed.path().join("w.bin")).expect("read"),
        vec![1u8; 100]
    );
}
