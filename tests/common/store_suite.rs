//! The store conformance suite: what the `MetadataStore` and `ArtifactStore`
//! contracts promise, written once against `&dyn` stores and run for every backend.
//!
//! A backend joins with one line per trait in a test file that has `mod common;`:
//!
//! ```text
//! metadata_suite!(my_backend, my_metadata_fixture());
//! artifact_suite!(my_backend, my_artifact_fixture());
//! ```
//!
//! where the fixture functions return a [`Fixture`] holding a fresh, empty store.
//! Attributes before the backend's name go on each of its tests, e.g.
//! `#[cfg_attr(not(modelreg_s3), ignore = "…")]` for a server that may not be
//! configured (see `servers.rs`).
//! Each check becomes its own `#[test]` in a module named after the backend.
//! Checks that need to move the store into spawned tasks take an `Arc<dyn …>`,
//! built by the macro from the fixture's store; all others take `&dyn …`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{TryStreamExt, stream};
use modelreg::store::{
    ArtifactStore, ArtifactStoreExt, ByteStream, Checkpoint, LinkMode, LogRecord, Materialized,
    MetadataItem, MetadataStore,
};
use modelreg::{Digest, Error};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::os::unix::fs::PermissionsExt;
use tempfile::TempDir;

/// A fresh store under test, with whatever must outlive it (its directory).
pub struct Fixture<S> {
    /// The store.
    pub store: S,
    /// Dropped after the check: removes the store's directory.
    pub guard: Option<TempDir>,
}

impl<S> Fixture<S> {
    /// A store that needs nothing kept alive.
    pub fn new(store: S) -> Self {
        Fixture { store, guard: None }
    }

    /// A store living in `dir`.
    pub fn in_dir(store: S, dir: TempDir) -> Self {
        Fixture {
            store,
            guard: Some(dir),
        }
    }

    /// The same store behind a wrapper, e.g. `Arc<dyn MetadataStore>`.
    pub fn map<T>(self, wrap: impl FnOnce(S) -> T) -> Fixture<T> {
        Fixture {
            store: wrap(self.store),
            guard: self.guard,
        }
    }
}

/// Generates the metadata checks for one backend, as `mod $backend { #[test]s }`.
#[macro_export]
macro_rules! metadata_suite {
    ($(#[$attr:meta])* $backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::suite_tests!(MetadataStore, $make, [$(#[$attr])*];
                plain:
                    append_then_read_returns_records_in_order,
                    read_after_respects_start_and_limit,
                    missing_log_reads_empty,
                    read_stops_at_first_gap,
                    duplicate_append_fails_and_keeps_original,
                    invalid_log_keys_are_rejected,
                    record_zero_is_rejected,
                    unusual_but_valid_log_keys_work,
                    list_logs_returns_exactly_logs_with_records,
                    checkpoints_return_highest_seq,
                    checkpoints_at_or_before_are_kept_per_window,
                    checkpoint_of_same_seq_is_replaced,
                    checkpoint_parts_round_trip_per_log_and_refuse_bad_names,
                    checkpoint_parts_are_listed_and_deleted,
                    leases_are_replaced_listed_and_deleted,
                    invalid_lease_keys_are_rejected,
                    probe_agrees_with_read_after,
                    locations_are_distinct_stable_and_pure;
                shared:
                    concurrent_appends_of_one_seq_have_one_winner;
            );

            #[test]
            $(#[$attr])*
            fn metadata_matches_reference_model() {
                $crate::common::store_suite::metadata_matches_model(|| $make);
            }
        }
    };
}

/// Generates the artifact checks for one backend, as `mod $backend { #[test]s }`.
#[macro_export]
macro_rules! artifact_suite {
    ($(#[$attr:meta])* $backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::suite_tests!(ArtifactStore, $make, [$(#[$attr])*];
                plain:
                    put_bytes_then_get_round_trips,
                    multi_chunk_stream_round_trips,
                    put_with_wrong_digest_is_rejected_and_invisible,
                    failing_stream_publishes_nothing,
                    put_of_existing_blob_is_idempotent,
                    put_bytes_if_absent_says_whether_it_stored,
                    get_range_returns_exact_slices,
                    hash_stored_hashes_what_is_stored,
                    missing_blob_is_not_found,
                    delete_removes_and_tolerates_missing,
                    list_returns_exactly_stored_digests,
                    put_file_of_interesting_sizes_round_trips,
                    import_file_in_every_mode_stores_what_it_hashed,
                    materialize_in_every_mode_copies_bytes_once,
                    materialize_reports_a_damaged_blob,
                    blob_locations_are_distinct_stable_and_pure;
                shared:
                    concurrent_puts_of_one_blob_all_succeed;
            );
        }
    };
}

/// One `#[tokio::test]` per check; `shared` checks get the store as `Arc<dyn $trait>`.
#[macro_export]
macro_rules! suite_tests {
    ($trait:ident, $make:expr, $attrs:tt; plain: $($plain:ident),*; shared: $($shared:ident),*;) => {
        $( $crate::suite_tests!(@plain $attrs $plain, $make); )*
        $( $crate::suite_tests!(@shared $attrs $shared, $trait, $make); )*
    };
    (@plain [$(#[$attr:meta])*] $plain:ident, $make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $plain() {
            let fixture = $make;
            let check = $crate::common::store_suite::$plain(&fixture.store);
            $crate::common::store_suite::within_time_limit(check).await;
        }
    };
    (@shared [$(#[$attr:meta])*] $shared:ident, $trait:ident, $make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $shared() {
            let fixture = $make;
            let store: ::std::sync::Arc<dyn ::modelreg::store::$trait> =
                ::std::sync::Arc::new(fixture.store);
            let check = $crate::common::store_suite::$shared(store);
            $crate::common::store_suite::within_time_limit(check).await;
            drop(fixture.guard);
        }
    };
}

/// Runs a check, failing it instead of hanging if a store never answers.
pub async fn within_time_limit(check: impl std::future::Future<Output = ()>) {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
    if tokio::time::timeout(LIMIT, check).await.is_err() {
        panic!("check did not finish within {LIMIT:?}");
    }
}

/// `n` bytes that differ from position to position and from `seed` to `seed`.
pub fn pattern(seed: u8, n: usize) -> Bytes {
    (0..n)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect::<Vec<u8>>()
        .into()
}

fn record(seq: u64) -> Bytes {
    Bytes::from(format!("record {seq}"))
}

fn records(seqs: impl IntoIterator<Item = u64>) -> Vec<LogRecord> {
    seqs.into_iter()
        .map(|seq| LogRecord {
            seq,
            bytes: record(seq),
        })
        .collect()
}

async fn append_all(store: &dyn MetadataStore, log: &str, seqs: impl IntoIterator<Item = u64>) {
    for seq in seqs {
        store
            .append(log, seq, record(seq))
            .await
            .unwrap_or_else(|e| panic!("append {log}/{seq}: {e}"));
    }
}

// ---------------------------------------------------------------------------------
// Metadata checks
// ---------------------------------------------------------------------------------

pub async fn append_then_read_returns_records_in_order(store: &dyn MetadataStore) {
    append_all(store, "fraud", 1..=25).await;
    assert_eq!(
        store.read_after("fraud", 0, 1000).await.unwrap(),
        records(1..=25)
    );
}

pub async fn read_after_respects_start_and_limit(store: &dyn MetadataStore) {
    append_all(store, "fraud", 1..=20).await;
    assert_eq!(
        store.read_after("fraud", 5, 3).await.unwrap(),
        records(6..=8)
    );
    assert_eq!(
        store.read_after("fraud", 18, 10).await.unwrap(),
        records(19..=20)
    );
    assert_eq!(store.read_after("fraud", 0, 1).await.unwrap(), records([1]));
    assert_eq!(store.read_after("fraud", 5, 0).await.unwrap(), vec![]);
    assert_eq!(store.read_after("fraud", 20, 10).await.unwrap(), vec![]);
    assert_eq!(store.read_after("fraud", 1000, 10).await.unwrap(), vec![]);
    assert_eq!(
        store.read_after("fraud", u64::MAX, 10).await.unwrap(),
        vec![]
    );
    // `usize::MAX` means "all": no store may try to allocate for it up front.
    assert_eq!(
        store.read_after("fraud", 10, usize::MAX).await.unwrap(),
        records(11..=20)
    );
}

pub async fn missing_log_reads_empty(store: &dyn MetadataStore) {
    assert_eq!(store.read_after("nobody", 0, 10).await.unwrap(), vec![]);
    append_all(store, "somebody", 1..=2).await;
    assert_eq!(store.read_after("nobody", 0, 10).await.unwrap(), vec![]);
    // A checkpoint alone does not make records.
    store.put_checkpoint("cached", 3, "c".into()).await.unwrap();
    assert_eq!(store.read_after("cached", 0, 10).await.unwrap(), vec![]);
}

pub async fn read_stops_at_first_gap(store: &dyn MetadataStore) {
    append_all(store, "gappy", [1, 2, 4]).await;
    assert_eq!(
        store.read_after("gappy", 0, 100).await.unwrap(),
        records(1..=2)
    );
    assert_eq!(store.read_after("gappy", 2, 100).await.unwrap(), vec![]);
    assert_eq!(
        store.read_after("gappy", 3, 100).await.unwrap(),
        records([4])
    );
    append_all(store, "gappy", [3]).await;
    assert_eq!(
        store.read_after("gappy", 0, 100).await.unwrap(),
        records(1..=4)
    );
}

pub async fn duplicate_append_fails_and_keeps_original(store: &dyn MetadataStore) {
    store.append("fraud", 1, "original".into()).await.unwrap();
    let err = store
        .append("fraud", 1, "impostor".into())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    // Also for identical bytes: create-if-absent, not "same value is fine".
    let err = store
        .append("fraud", 1, "original".into())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        store.read_after("fraud", 0, 10).await.unwrap(),
        vec![LogRecord {
            seq: 1,
            bytes: "original".into()
        }]
    );
    // The same number in another log is another record.
    store.append("other", 1, "other".into()).await.unwrap();
}

pub async fn concurrent_appends_of_one_seq_have_one_winner(store: Arc<dyn MetadataStore>) {
    const WRITERS: usize = 16;
    append_all(&*store, "race", 1..=2).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let bytes = Bytes::from(format!("writer {i}"));
                (bytes.clone(), store.append("race", 3, bytes).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = 0;
    for task in tasks {
        match task.await.unwrap() {
            (bytes, Ok(())) => winners.push(bytes),
            (_, Err(Error::AlreadyExists { .. })) => losers += 1,
            (_, Err(e)) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one append of seq 3 must win");
    assert_eq!(losers, WRITERS - 1);
    let read = store.read_after("race", 2, 10).await.unwrap();
    assert_eq!(
        read,
        vec![LogRecord {
            seq: 3,
            bytes: winners[0].clone()
        }]
    );
}

pub async fn invalid_log_keys_are_rejected(store: &dyn MetadataStore) {
    let long = "x".repeat(256);
    for key in ["", "a/b", "/abs", "a\\b", "..", ".", long.as_str(), "a\0b"] {
        let is_invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidName { .. }));
        assert!(
            is_invalid(store.append(key, 1, "x".into()).await),
            "append {key:?}"
        );
        assert!(
            is_invalid(store.read_after(key, 0, 1).await.map(drop)),
            "read {key:?}"
        );
        assert!(
            is_invalid(store.put_checkpoint(key, 1, "x".into()).await),
            "put_checkpoint {key:?}"
        );
        assert!(
            is_invalid(store.latest_checkpoint(key).await.map(drop)),
            "latest_checkpoint {key:?}"
        );
    }
    assert_eq!(store.list_logs().await.unwrap(), Vec::<String>::new());
}

pub async fn record_zero_is_rejected(store: &dyn MetadataStore) {
    let r = store.append("log", 0, "x".into()).await;
    assert!(matches!(r, Err(Error::InvalidInput { .. })), "{r:?}");
    assert_eq!(store.list_logs().await.unwrap(), Vec::<String>::new());
    store.append("log", 1, "first".into()).await.unwrap();
    assert_eq!(store.read_after("log", 0, 10).await.unwrap().len(), 1);
}

pub async fn unusual_but_valid_log_keys_work(store: &dyn MetadataStore) {
    let longest = "y".repeat(255);
    let keys = [
        "...",
        ".hidden",
        "modèle-ü",
        "with space",
        "UPPER",
        longest.as_str(),
    ];
    for key in keys {
        append_all(store, key, 1..=2).await;
        assert_eq!(
            store.read_after(key, 0, 10).await.unwrap(),
            records(1..=2),
            "{key:?}"
        );
    }
    let listed: BTreeSet<String> = store.list_logs().await.unwrap().into_iter().collect();
    let expected: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(listed, expected);
}

pub async fn list_logs_returns_exactly_logs_with_records(store: &dyn MetadataStore) {
    assert_eq!(store.list_logs().await.unwrap(), Vec::<String>::new());
    append_all(store, "a", 1..=3).await;
    append_all(store, "b", [1]).await;
    append_all(store, "c", 1..=2).await;
    // Has a record, though not record 1.
    append_all(store, "d", [3]).await;
    // A checkpoint without records, a failed append and a read do not make a log.
    store.put_checkpoint("e", 1, "c".into()).await.unwrap();
    assert!(store.append("a", 1, "dup".into()).await.is_err());
    store.read_after("f", 0, 10).await.unwrap();
    let mut listed = store.list_logs().await.unwrap();
    listed.sort();
    assert_eq!(listed, ["a", "b", "c", "d"]);
}

pub async fn checkpoints_return_highest_seq(store: &dyn MetadataStore) {
    assert_eq!(store.latest_checkpoint("fraud").await.unwrap(), None);
    for seq in [5, 10, 7] {
        let bytes = Bytes::from(format!("checkpoint {seq}"));
        store.put_checkpoint("fraud", seq, bytes).await.unwrap();
    }
    let latest = |seq: u64| Checkpoint {
        seq,
        bytes: Bytes::from(format!("checkpoint {seq}")),
    };
    assert_eq!(
        store.latest_checkpoint("fraud").await.unwrap(),
        Some(latest(10))
    );
    // Beyond any small number a store may keep.
    for seq in 11..=15 {
        let bytes = Bytes::from(format!("checkpoint {seq}"));
        store.put_checkpoint("fraud", seq, bytes).await.unwrap();
    }
    assert_eq!(
        store.latest_checkpoint("fraud").await.unwrap(),
        Some(latest(15))
    );
    // Checkpoints belong to their log.
    assert_eq!(store.latest_checkpoint("other").await.unwrap(), None);
    // Checkpoints are not records.
    assert_eq!(store.read_after("fraud", 0, 10).await.unwrap(), vec![]);
}

/// `checkpoint_at_or_before` finds a checkpoint no newer than asked, with the
/// bytes put for it, and one near enough: after 100 checkpoints every 10
/// records, one within a window of the history (`newest / 8`, see the stores'
/// layout) plus one interval before any point, whatever the store pruned. The
/// latest is still the latest.
pub async fn checkpoints_at_or_before_are_kept_per_window(store: &dyn MetadataStore) {
    assert_eq!(
        store.checkpoint_at_or_before("fraud", 5).await.unwrap(),
        None
    );
    let bytes = |seq: u64| Bytes::from(format!("checkpoint {seq}"));
    for seq in (10..=1000).step_by(10) {
        store
            .put_checkpoint("fraud", seq, bytes(seq))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .latest_checkpoint("fraud")
            .await
            .unwrap()
            .map(|c| c.seq),
        Some(1000)
    );
    for at_most in [1000, 5000] {
        let cp = store
            .checkpoint_at_or_before("fraud", at_most)
            .await
            .unwrap();
        assert_eq!(cp.map(|c| c.seq), Some(1000), "at most {at_most}");
    }
    assert_eq!(
        store.checkpoint_at_or_before("fraud", 9).await.unwrap(),
        None
    );
    for at_most in (10..1000).step_by(7) {
        let cp = store
            .checkpoint_at_or_before("fraud", at_most)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("a checkpoint at or before {at_most}"));
        assert!(cp.seq <= at_most, "{} for at most {at_most}", cp.seq);
        assert!(
            at_most - cp.seq <= 1000 / 128 + 2 + 10,
            "{} is too far below {at_most}",
            cp.seq
        );
        assert_eq!(cp.bytes, bytes(cp.seq));
    }
    // Checkpoints belong to their log.
    assert_eq!(
        store.checkpoint_at_or_before("other", 1000).await.unwrap(),
        None
    );
}

/// A store that answers `probe` answers exactly what `read_after` would: every
/// appended record exists, nothing else does (not checkpoints, not other logs).
pub async fn probe_agrees_with_read_after(store: &dyn MetadataStore) {
    let exists = |log: &str, seq: u64| store.probe(log, seq).map(|r| r.unwrap());
    if exists("fraud", 1).is_none() {
        // The store always reads instead: nothing to check but the other keys.
        assert!(exists("other", 1).is_none());
        return;
    }
    assert_eq!(exists("fraud", 1), Some(false));
    append_all(store, "fraud", 1..=3).await;
    store
        .put_checkpoint("fraud", 7, Bytes::from_static(b"checkpoint"))
        .await
        .unwrap();
    for seq in 1..=3 {
        assert_eq!(exists("fraud", seq), Some(true), "record {seq}");
    }
    for seq in [4, 7, u64::MAX] {
        assert_eq!(exists("fraud", seq), Some(false), "record {seq}");
    }
    assert_eq!(exists("other", 1), Some(false));
    assert!(matches!(
        store.probe("a/b", 1),
        Some(Err(Error::InvalidName { .. }))
    ));
}

pub async fn checkpoint_of_same_seq_is_replaced(store: &dyn MetadataStore) {
    store
        .put_checkpoint("fraud", 4, "old".into())
        .await
        .unwrap();
    store
        .put_checkpoint("fraud", 4, "new".into())
        .await
        .unwrap();
    assert_eq!(
        store.latest_checkpoint("fraud").await.unwrap(),
        Some(Checkpoint {
            seq: 4,
            bytes: "new".into()
        })
    );
}

/// Checkpoint parts (the segments of format 5 and 6 checkpoints): a store
/// that keeps them returns what was put, the last put of a name wins, each
/// log has its own names, and a name that is not one key is refused; a store
/// that keeps none refuses the put and has none.
pub async fn checkpoint_parts_round_trip_per_log_and_refuse_bad_names(store: &dyn MetadataStore) {
    let seg = "00000000000000000001-ab12";
    if !store.keeps_checkpoint_parts() {
        assert!(matches!(
            store.put_checkpoint_part("fraud", seg, "x".into()).await,
            Err(Error::InvalidInput { .. })
        ));
        assert_eq!(store.get_checkpoint_part("fraud", seg).await.unwrap(), None);
        return;
    }
    assert_eq!(store.get_checkpoint_part("fraud", seg).await.unwrap(), None);
    let big = pattern(7, 300_000);
    store
        .put_checkpoint_part("fraud", seg, big.clone())
        .await
        .unwrap();
    assert_eq!(
        store.get_checkpoint_part("fraud", seg).await.unwrap(),
        Some(big)
    );
    store
        .put_checkpoint_part("fraud", seg, "again".into())
        .await
        .unwrap();
    assert_eq!(
        store.get_checkpoint_part("fraud", seg).await.unwrap(),
        Some("again".into())
    );
    assert_eq!(store.get_checkpoint_part("churn", seg).await.unwrap(), None);
    // Parts are not records or checkpoints of the log.
    assert_eq!(store.latest_checkpoint("fraud").await.unwrap(), None);
    assert_eq!(store.read_after("fraud", 0, 10).await.unwrap(), Vec::new());
    for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
        assert!(
            matches!(
                store.put_checkpoint_part("fraud", bad, "x".into()).await,
                Err(Error::InvalidName { .. })
            ),
            "put {bad:?}"
        );
        assert!(
            store.get_checkpoint_part("fraud", bad).await.is_err(),
            "get {bad:?}"
        );
    }
    assert!(matches!(
        store.put_checkpoint_part("../x", seg, "x".into()).await,
        Err(Error::InvalidName { .. })
    ));
}

/// Checkpoint parts are listed per log, whatever their names, with their
/// sizes and a last-modified time that a put moves forward; a deleted part is
/// gone from reads and listings, deleting a missing one is no error, and a
/// store that keeps none lists none.
pub async fn checkpoint_parts_are_listed_and_deleted(store: &dyn MetadataStore) {
    let (seg, patch, other) = (
        "00000000000000000001-ab12",
        "00000000000000000000-cd34",
        "events-00000000000000000001",
    );
    assert_eq!(store.list_checkpoint_parts("fraud").await.unwrap(), vec![]);
    store.delete_checkpoint_part("fraud", seg).await.unwrap();
    if !store.keeps_checkpoint_parts() {
        return;
    }
    let listed = |log: &'static str| async move {
        let mut parts = store.list_checkpoint_parts(log).await.unwrap();
        parts.sort_by(|a, b| a.name.cmp(&b.name));
        parts
    };
    store
        .put_checkpoint_part("fraud", seg, "seg".into())
        .await
        .unwrap();
    store
        .put_checkpoint_part("fraud", patch, "patch!".into())
        .await
        .unwrap();
    store
        .put_checkpoint_part("fraud", other, "x".into())
        .await
        .unwrap();
    store
        .put_checkpoint_part("churn", seg, "c".into())
        .await
        .unwrap();
    let parts = listed("fraud").await;
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, [patch, seg, other]);
    let sizes: Vec<u64> = parts.iter().map(|p| p.size).collect();
    assert_eq!(sizes, [6, 3, 1]);
    let first = parts[1]
        .last_modified
        .expect("the store knows when a part was put");
    // Records, checkpoints and leases are not parts.
    store.append("fraud", 1, "r".into()).await.unwrap();
    store.put_checkpoint("fraud", 1, "c".into()).await.unwrap();
    assert_eq!(listed("fraud").await.len(), 3);

    // A put again moves the time forward (stores with one-second times
    // included).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    store
        .put_checkpoint_part("fraud", seg, "seg".into())
        .await
        .unwrap();
    let again = listed("fraud").await[1].last_modified.expect("time");
    assert!(again > first, "{again} after {first}");

    store.delete_checkpoint_part("fraud", seg).await.unwrap();
    store.delete_checkpoint_part("fraud", seg).await.unwrap();
    assert_eq!(store.get_checkpoint_part("fraud", seg).await.unwrap(), None);
    let names: Vec<String> = listed("fraud").await.into_iter().map(|p| p.name).collect();
    assert_eq!(names, [patch, other]);
    // Another log's part of the same name stays.
    assert_eq!(
        store.get_checkpoint_part("churn", seg).await.unwrap(),
        Some("c".into())
    );
    for bad in ["", "..", "a/b"] {
        assert!(
            matches!(
                store.delete_checkpoint_part("fraud", bad).await,
                Err(Error::InvalidName { .. })
            ),
            "delete {bad:?}"
        );
    }
    assert!(store.list_checkpoint_parts("../x").await.is_err());
}

pub async fn leases_are_replaced_listed_and_deleted(store: &dyn MetadataStore) {
    assert_eq!(store.list_leases().await.unwrap(), Vec::<String>::new());
    assert_eq!(store.get_lease("intent-1").await.unwrap(), None);
    store.put_lease("intent-1", "one".into()).await.unwrap();
    store.put_lease("gc-7", "fence".into()).await.unwrap();
    store
        .put_lease("intent-1", "replaced".into())
        .await
        .unwrap();
    let mut keys = store.list_leases().await.unwrap();
    keys.sort();
    assert_eq!(keys, ["gc-7", "intent-1"]);
    assert_eq!(
        store.get_lease("intent-1").await.unwrap(),
        Some(Bytes::from("replaced"))
    );
    // Leases are not logs, and logs are not leases.
    assert_eq!(store.list_logs().await.unwrap(), Vec::<String>::new());
    store.append("intent-1", 1, "record".into()).await.unwrap();
    assert_eq!(store.list_leases().await.unwrap().len(), 2);
    store.delete_lease("intent-1").await.unwrap();
    store.delete_lease("intent-1").await.unwrap();
    assert_eq!(store.list_leases().await.unwrap(), ["gc-7"]);
    assert_eq!(store.get_lease("intent-1").await.unwrap(), None);
    assert_eq!(store.read_after("intent-1", 0, 10).await.unwrap().len(), 1);
}

pub async fn invalid_lease_keys_are_rejected(store: &dyn MetadataStore) {
    for key in ["", ".", "..", "a/b", "a\\b", "nul\0"] {
        assert!(
            matches!(
                store.put_lease(key, "x".into()).await,
                Err(Error::InvalidName {
                    kind: "lease key",
                    ..
                })
            ),
            "put_lease({key:?})"
        );
        assert!(matches!(
            store.get_lease(key).await,
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            store.delete_lease(key).await,
            Err(Error::InvalidName { .. })
        ));
    }
    assert_eq!(store.list_leases().await.unwrap(), Vec::<String>::new());
}

/// `location` names each record and checkpoint apart, mentions the log, does not
/// change once the item exists, and touches nothing: naming an item creates none.
pub async fn locations_are_distinct_stable_and_pure(store: &dyn MetadataStore) {
    let items = [
        ("fraud", MetadataItem::Record(1)),
        ("fraud", MetadataItem::Record(2)),
        ("fraud", MetadataItem::Record(10)),
        ("fraud", MetadataItem::Checkpoint(1)),
        ("fraud", MetadataItem::Checkpoint(2)),
        ("churn", MetadataItem::Record(1)),
    ];
    let before: Vec<String> = items
        .iter()
        .map(|(log, item)| store.location(log, *item))
        .collect();
    let distinct: BTreeSet<&String> = before.iter().collect();
    assert_eq!(distinct.len(), items.len(), "{before:#?}");
    for ((log, _), location) in items.iter().zip(&before) {
        assert!(location.contains(log), "{location} does not name log {log}");
    }
    assert!(store.list_logs().await.unwrap().is_empty());
    assert_eq!(store.latest_checkpoint("fraud").await.unwrap(), None);

    append_all(store, "fraud", [1, 2]).await;
    append_all(store, "churn", [1]).await;
    store
        .put_checkpoint("fraud", 2, Bytes::from_static(b"cp"))
        .await
        .unwrap();
    let after: Vec<String> = items
        .iter()
        .map(|(log, item)| store.location(log, *item))
        .collect();
    assert_eq!(after, before);
}

/// One step of the metadata reference-model test.
#[derive(Debug, Clone)]
pub enum MetaOp {
    Append {
        log: usize,
        seq: u64,
        bytes: Vec<u8>,
    },
    ReadAfter {
        log: usize,
        after: u64,
        limit: usize,
    },
    ListLogs,
    PutCheckpoint {
        log: usize,
        seq: u64,
        bytes: Vec<u8>,
    },
    LatestCheckpoint {
        log: usize,
    },
    CheckpointAtOrBefore {
        log: usize,
        at_most: u64,
    },
}

const MODEL_LOGS: [&str; 3] = ["a", "b", "model-c"];

fn meta_op() -> impl Strategy<Value = MetaOp> {
    let log = 0..MODEL_LOGS.len();
    prop_oneof![
        4 => (log.clone(), 1..10u64, vec(any::<u8>(), 0..8))
            .prop_map(|(log, seq, bytes)| MetaOp::Append { log, seq, bytes }),
        3 => (log.clone(), 0..10u64, 0..12usize)
            .prop_map(|(log, after, limit)| MetaOp::ReadAfter { log, after, limit }),
        1 => Just(MetaOp::ListLogs),
        1 => (log.clone(), 0..10u64, vec(any::<u8>(), 0..8))
            .prop_map(|(log, seq, bytes)| MetaOp::PutCheckpoint { log, seq, bytes }),
        1 => log.clone().prop_map(|log| MetaOp::LatestCheckpoint { log }),
        1 => (log, 0..11u64)
            .prop_map(|(log, at_most)| MetaOp::CheckpointAtOrBefore { log, at_most }),
    ]
}

/// Random operation sequences applied to a fresh store and to a `BTreeMap` model
/// must give the same results, step by step.
pub fn metadata_matches_model<S: MetadataStore>(make: impl Fn() -> Fixture<S>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&vec(meta_op(), 1..40), |ops| {
        let fixture = make();
        runtime.block_on(apply_meta_ops(&fixture.store, &ops))
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

async fn apply_meta_ops(store: &dyn MetadataStore, ops: &[MetaOp]) -> Result<(), TestCaseError> {
    type Model = BTreeMap<&'static str, BTreeMap<u64, Bytes>>;
    let mut logs: Model = BTreeMap::new();
    let mut checkpoints: Model = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        match op.clone() {
            MetaOp::Append { log, seq, bytes } => {
                let log = MODEL_LOGS[log];
                let entries = logs.entry(log).or_default();
                let expected = match entries.entry(seq) {
                    std::collections::btree_map::Entry::Occupied(_) => Err("already exists"),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(Bytes::from(bytes.clone()));
                        Ok(())
                    }
                };
                let actual = match store.append(log, seq, bytes.into()).await {
                    Ok(()) => Ok(()),
                    Err(Error::AlreadyExists { .. }) => Err("already exists"),
                    Err(e) => return Err(TestCaseError::fail(format!("step {step}: {e}"))),
                };
                prop_assert_eq!(actual, expected, "step {}: {:?}", step, op);
            }
            MetaOp::ReadAfter { log, after, limit } => {
                let log = MODEL_LOGS[log];
                let entries = logs.get(log).cloned().unwrap_or_default();
                let expected: Vec<LogRecord> = (after + 1..)
                    .map_while(|seq| {
                        entries.get(&seq).map(|bytes| LogRecord {
                            seq,
                            bytes: bytes.clone(),
                        })
                    })
                    .take(limit)
                    .collect();
                let actual = store.read_after(log, after, limit).await;
                prop_assert_eq!(actual.ok(), Some(expected), "step {}: {:?}", step, op);
            }
            MetaOp::ListLogs => {
                let expected: BTreeSet<String> = logs
                    .iter()
                    .filter(|(_, entries)| !entries.is_empty())
                    .map(|(log, _)| log.to_string())
                    .collect();
                let actual: Option<BTreeSet<String>> = store
                    .list_logs()
                    .await
                    .ok()
                    .map(|l| l.into_iter().collect());
                prop_assert_eq!(actual, Some(expected), "step {}", step);
            }
            MetaOp::PutCheckpoint { log, seq, bytes } => {
                let log = MODEL_LOGS[log];
                checkpoints
                    .entry(log)
                    .or_default()
                    .insert(seq, Bytes::from(bytes.clone()));
                let put = store.put_checkpoint(log, seq, bytes.into()).await;
                prop_assert!(put.is_ok(), "step {}: {:?}", step, put);
            }
            MetaOp::LatestCheckpoint { log } => {
                let log = MODEL_LOGS[log];
                let expected =
                    checkpoints
                        .get(log)
                        .and_then(|c| c.last_key_value())
                        .map(|(seq, bytes)| Checkpoint {
                            seq: *seq,
                            bytes: bytes.clone(),
                        });
                let actual = store.latest_checkpoint(log).await;
                prop_assert_eq!(actual.ok(), Some(expected), "step {}: {:?}", step, op);
            }
            MetaOp::CheckpointAtOrBefore { log, at_most } => {
                // Below 17 checkpoints every store keeps them all (one per
                // window of a record): the model is exact.
                let log = MODEL_LOGS[log];
                let expected = checkpoints
                    .get(log)
                    .and_then(|c| c.range(..=at_most).next_back())
                    .map(|(seq, bytes)| Checkpoint {
                        seq: *seq,
                        bytes: bytes.clone(),
                    });
                let actual = store.checkpoint_at_or_before(log, at_most).await;
                prop_assert_eq!(actual.ok(), Some(expected), "step {}: {:?}", step, op);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Artifact checks
// ---------------------------------------------------------------------------------

/// Blob sizes that sit on a boundary somewhere in a put or get path.
pub const INTERESTING_SIZES: &[usize] = &[
    0,                   // empty: no chunk at all, the digest of nothing
    1,                   // smallest non-empty blob
    1023,                // one byte short of a BLAKE3 chunk (1 KiB)
    1024,                // exactly one BLAKE3 chunk
    1025,                // one BLAKE3 chunk and a byte: the first parent node in the tree
    16 * 1024 - 1,       // just below BLAKE3's memory-map threshold (16 KiB): read by buffer
    16 * 1024,           // exactly the threshold: hashed through a memory map
    64 * 1024 - 1,       // around the 64 KiB read buffer of BLAKE3's reader and
    64 * 1024,           //   the copy loops that fall back from copy_file_range
    64 * 1024 + 1,       //
    1024 * 1024,         // exactly one 1 MiB read chunk of the local store
    1024 * 1024 + 1,     // a full read chunk and a 1-byte tail
    3 * 1024 * 1024 + 7, // several chunks and an odd tail; big enough for rayon hashing
];

async fn collect(stream: ByteStream) -> Vec<u8> {
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

async fn get_all(store: &dyn ArtifactStore, digest: &Digest) -> Vec<u8> {
    collect(store.get(digest).await.unwrap()).await
}

fn chunked(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(stream::iter(chunks.into_iter().map(Ok)))
}

async fn listed(store: &dyn ArtifactStore) -> BTreeSet<Digest> {
    let all: Vec<Digest> = store.list().await.unwrap().try_collect().await.unwrap();
    let set: BTreeSet<Digest> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "list returned duplicates: {all:?}");
    set
}

pub async fn put_bytes_then_get_round_trips(store: &dyn ArtifactStore) {
    for (seed, size) in [0, 1, 5000, 2 * 1024 * 1024 + 3].into_iter().enumerate() {
        let data = pattern(seed as u8, size);
        let digest = store.put_bytes(data.clone()).await.unwrap();
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(get_all(store, &digest).await, data, "size {size}");
        let meta = store
            .head(&digest)
            .await
            .unwrap()
            .expect("head of stored blob");
        assert_eq!(meta.size, size as u64);
        assert!(store.contains(&digest).await.unwrap());
    }
}

pub async fn multi_chunk_stream_round_trips(store: &dyn ArtifactStore) {
    let chunks: Vec<Bytes> = [0usize, 1, 1023, 0, 70_000, 1024 * 1024 + 1, 17]
        .iter()
        .enumerate()
        .map(|(i, n)| pattern(i as u8, *n))
        .collect();
    let whole: Vec<u8> = chunks.concat();
    let digest = Digest::of(&whole);
    store.put_stream(&digest, chunked(chunks)).await.unwrap();
    assert_eq!(get_all(store, &digest).await, whole);
    assert_eq!(
        store.head(&digest).await.unwrap().map(|m| m.size),
        Some(whole.len() as u64)
    );
}

pub async fn put_with_wrong_digest_is_rejected_and_invisible(store: &dyn ArtifactStore) {
    let data = pattern(1, 4096);
    let claimed = Digest::of(b"something else");
    let err = store
        .put_stream(
            &claimed,
            chunked(vec![data.slice(..100), data.slice(100..)]),
        )
        .await
        .unwrap_err();
    match err {
        Error::Integrity {
            expected, actual, ..
        } => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::of(&data));
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    assert_eq!(store.head(&claimed).await.unwrap(), None);
    assert!(!store.contains(&Digest::of(&data)).await.unwrap());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.bin");
    std::fs::write(&path, &data).unwrap();
    let err = store.put_file(&claimed, &path).await.unwrap_err();
    match err {
        Error::Integrity {
            expected, actual, ..
        } => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::of(&data));
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    assert_eq!(store.head(&claimed).await.unwrap(), None);
    assert_eq!(listed(store).await, BTreeSet::new());
}

pub async fn failing_stream_publishes_nothing(store: &dyn ArtifactStore) {
    let data = pattern(2, 10_000);
    let digest = Digest::of(&data);
    let failing: ByteStream = Box::pin(stream::iter(vec![
        Ok(data.slice(..5000)),
        Err(Error::NotFound {
            what: "the rest".into(),
            missing: modelreg::Missing::Other,
        }),
    ]));
    let err = store.put_stream(&digest, failing).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what, .. } if what == "the rest"),
        "the stream's own error must come back: {err:?}"
    );
    assert_eq!(store.head(&digest).await.unwrap(), None);
    assert_eq!(listed(store).await, BTreeSet::new());
    // The failure left nothing behind that blocks a good put.
    store
        .put_stream(&digest, chunked(vec![data.clone()]))
        .await
        .unwrap();
    assert_eq!(get_all(store, &digest).await, data);
}

pub async fn put_of_existing_blob_is_idempotent(store: &dyn ArtifactStore) {
    let data = pattern(3, 3000);
    let digest = store.put_bytes(data.clone()).await.unwrap();
    assert_eq!(store.put_bytes(data.clone()).await.unwrap(), digest);
    store
        .put_stream(&digest, chunked(vec![data.slice(..1), data.slice(1..)]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same");
    std::fs::write(&path, &data).unwrap();
    store.put_file(&digest, &path).await.unwrap();
    assert_eq!(get_all(store, &digest).await, data);
    assert_eq!(listed(store).await, BTreeSet::from([digest]));
}

/// `put_bytes_if_absent` stores new bytes and says so, finds a blob stored
/// (by itself or by any other put) and says so, and refuses bytes that do not
/// hash to the digest, storing nothing.
pub async fn put_bytes_if_absent_says_whether_it_stored(store: &dyn ArtifactStore) {
    let data = pattern(5, 1500);
    let digest = Digest::of(&data);
    assert!(
        store
            .put_bytes_if_absent(&digest, data.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_bytes_if_absent(&digest, data.clone())
            .await
            .unwrap()
    );
    assert_eq!(get_all(store, &digest).await, data);
    let other = pattern(6, 700);
    let other_digest = store.put_bytes(other.clone()).await.unwrap();
    assert!(
        !store
            .put_bytes_if_absent(&other_digest, other.clone())
            .await
            .unwrap()
    );
    let claimed = Digest::of(b"not these bytes");
    let err = store
        .put_bytes_if_absent(&claimed, data.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
    assert_eq!(store.head(&claimed).await.unwrap(), None);
    assert_eq!(listed(store).await, BTreeSet::from([digest, other_digest]));
}

pub async fn concurrent_puts_of_one_blob_all_succeed(store: Arc<dyn ArtifactStore>) {
    let data = pattern(4, 200_000);
    let digest = Digest::of(&data);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let data = data.clone();
            tokio::spawn(async move {
                // Different chunkings of the same bytes.
                let split = 1 + i * 20_000;
                let chunks = vec![data.slice(..split), data.slice(split..)];
                store.put_stream(&digest, chunked(chunks)).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(get_all(&*store, &digest).await, data);
    assert_eq!(listed(&*store).await, BTreeSet::from([digest]));
}

pub async fn get_range_returns_exact_slices(store: &dyn ArtifactStore) {
    let data = pattern(5, 2 * 1024 * 1024 + 11);
    let n = data.len() as u64;
    let digest = store.put_bytes(data.clone()).await.unwrap();
    for range in [
        0..0,
        0..1,
        0..n,
        7..7,
        10..4000,
        n - 1..n,
        n..n,
        1024 * 1024 - 3..1024 * 1024 + 3,
    ] {
        let got = store.get_range(&digest, range.clone()).await.unwrap();
        assert_eq!(
            got,
            data.slice(range.start as usize..range.end as usize),
            "{range:?}"
        );
    }
    for range in [0..n + 1, n..n + 1, n + 5..n + 10] {
        let err = store.get_range(&digest, range.clone()).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { .. }),
            "{range:?}: {err:?}"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..5;
    let err = store.get_range(&digest, backwards).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

/// `hash_stored` gives the digest and length of the stored bytes, for sizes
/// that take one read and several (the local store hashes a window per core).
pub async fn hash_stored_hashes_what_is_stored(store: &dyn ArtifactStore) {
    for (seed, size) in [(1, 0), (2, 1), (3, 70_000), (4, 5 * 1024 * 1024 + 3)] {
        let data = pattern(seed, size);
        let digest = store.put_bytes(data.clone()).await.unwrap();
        assert_eq!(
            store.hash_stored(&digest).await.unwrap(),
            (Digest::of(&data), size as u64),
            "{size} bytes"
        );
    }
    let missing = Digest::of(b"never stored either");
    let err = store.hash_stored(&missing).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

pub async fn missing_blob_is_not_found(store: &dyn ArtifactStore) {
    let missing = Digest::of(b"never stored");
    assert_eq!(store.head(&missing).await.unwrap(), None);
    assert!(!store.contains(&missing).await.unwrap());
    let is_not_found = |e: &Error| matches!(e, Error::NotFound { .. });
    let err = store
        .get(&missing)
        .await
        .err()
        .expect("get of missing blob");
    assert!(is_not_found(&err), "{err:?}");
    let err = store.get_range(&missing, 0..0).await.unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    let dir = tempfile::tempdir().unwrap();
    for mode in [LinkMode::Copy, LinkMode::Reflink, LinkMode::HardLink] {
        let dest = dir.path().join(format!("{mode:?}"));
        let err = store.materialize(&missing, &dest, mode).await.unwrap_err();
        assert!(is_not_found(&err), "{mode:?}: {err:?}");
        assert!(!dest.exists(), "{mode:?} left a file behind");
    }
    let err = store
        .put_file(&missing, &dir.path().join("no such file"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
}

pub async fn delete_removes_and_tolerates_missing(store: &dyn ArtifactStore) {
    let keep = store.put_bytes("keep".into()).await.unwrap();
    let gone = store.put_bytes("gone".into()).await.unwrap();
    store.delete(&gone).await.unwrap();
    assert_eq!(store.head(&gone).await.unwrap(), None);
    let err = store.get(&gone).await.err().expect("get of deleted blob");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    store.delete(&gone).await.unwrap();
    store.delete(&Digest::of(b"never stored")).await.unwrap();
    assert_eq!(listed(store).await, BTreeSet::from([keep]));
    assert_eq!(get_all(store, &keep).await, b"keep");
    // A deleted blob can be put again.
    assert_eq!(store.put_bytes("gone".into()).await.unwrap(), gone);
    assert_eq!(get_all(store, &gone).await, b"gone");
}

pub async fn list_returns_exactly_stored_digests(store: &dyn ArtifactStore) {
    assert_eq!(listed(store).await, BTreeSet::new());
    let mut expected = BTreeSet::new();
    for i in 0..40u8 {
        expected.insert(store.put_bytes(pattern(i, i as usize * 3)).await.unwrap());
    }
    assert_eq!(listed(store).await, expected);
}

pub async fn put_file_of_interesting_sizes_round_trips(store: &dyn ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeSet::new();
    for (i, &size) in INTERESTING_SIZES.iter().enumerate() {
        let data = pattern(i as u8, size);
        let digest = Digest::of(&data);
        let path = dir.path().join(format!("source-{size}"));
        std::fs::write(&path, &data).unwrap();
        store.put_file(&digest, &path).await.unwrap();
        // The store holds its own copy: the source may go away.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            store.head(&digest).await.unwrap().map(|m| m.size),
            Some(size as u64)
        );
        assert!(get_all(store, &digest).await == data, "size {size}");
        expected.insert(digest);
    }
    assert_eq!(listed(store).await, expected);
}

pub async fn materialize_in_every_mode_copies_bytes_once(store: &dyn ArtifactStore) {
    let data = pattern(6, 100_000);
    let digest = store.put_bytes(data.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for mode in [LinkMode::Copy, LinkMode::Reflink, LinkMode::HardLink] {
        let dest = dir.path().join(format!("{mode:?}.bin"));
        let placed = store.materialize(&digest, &dest, mode).await.unwrap();
        let allowed = match mode {
            LinkMode::Reflink => [Materialized::Reflinked, Materialized::Copied],
            LinkMode::HardLink => [Materialized::HardLinked, Materialized::Copied],
            _ => [Materialized::Copied, Materialized::Copied],
        };
        assert!(allowed.contains(&placed.how), "{mode:?} gave {placed:?}");
        assert_eq!(
            (placed.digest, placed.size),
            (digest, data.len() as u64),
            "{mode:?}"
        );
        assert!(std::fs::read(&dest).unwrap() == data, "{mode:?}");
        // The destination must be new.
        let err = store.materialize(&digest, &dest, mode).await.unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{mode:?}: {err:?}"
        );
        assert!(
            std::fs::read(&dest).unwrap() == data,
            "{mode:?} changed the existing file"
        );
        if mode != LinkMode::HardLink {
            assert_independent_of_store(&dest);
        }
    }
    // The copies were overwritten above; the blob must not have changed with them.
    assert_eq!(get_all(store, &digest).await, data);
}

/// `location` names each blob apart, mentions its digest's hex, does not change
/// once the blob exists, and touches nothing.
pub async fn blob_locations_are_distinct_stable_and_pure(store: &dyn ArtifactStore) {
    let a = Bytes::from_static(b"first blob");
    let b = Bytes::from_static(b"second blob");
    let (da, db) = (Digest::of(&a), Digest::of(&b));
    let (la, lb) = (store.location(&da), store.location(&db));
    assert_ne!(la, lb);
    assert!(la.contains(&da.to_hex()), "{la}");
    assert!(lb.contains(&db.to_hex()), "{lb}");
    assert_eq!(store.head(&da).await.unwrap(), None);
    store.put_bytes(a).await.unwrap();
    assert_eq!(store.location(&da), la);
}

/// The SHA-256 of `bytes` by the `sha2` crate in one call.
fn sha256_of(bytes: &[u8]) -> modelreg::Sha256 {
    use sha2::Digest as _;
    modelreg::Sha256::from_bytes(sha2::Sha256::digest(bytes).into())
}

pub async fn import_file_in_every_mode_stores_what_it_hashed(store: &dyn ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    // Sizes: empty, one BLAKE3 chunk and a byte, and past the hashing window (2 MiB).
    for (i, size) in [0usize, 1025, (2 << 20) + 3].into_iter().enumerate() {
        for mode in [LinkMode::Copy, LinkMode::Reflink, LinkMode::HardLink] {
            // There is only one empty blob.
            if size == 0 && mode != LinkMode::Copy {
                continue;
            }
            let data = pattern(i as u8 * 3 + mode as u8, size);
            let digest = Digest::of(&data);
            let path = dir.path().join(format!("source-{size}-{mode:?}"));
            std::fs::write(&path, &data).unwrap();
            assert!(!store.contains(&digest).await.unwrap());
            let imported = store.import_file(&path, mode).await.unwrap();
            assert_eq!(
                (imported.digest, imported.size),
                (digest, size as u64),
                "{size} {mode:?}"
            );
            // Every built-in store computes the SHA-256 in the same read.
            let sha256 = Some(sha256_of(&data));
            assert_eq!(imported.sha256, sha256, "{size} {mode:?}");
            let allowed = match mode {
                LinkMode::Reflink => [Materialized::Reflinked, Materialized::Copied],
                LinkMode::HardLink => [Materialized::HardLinked, Materialized::Copied],
                _ => [Materialized::Copied, Materialized::Copied],
            };
            let how = imported.placed.expect("a new blob is placed");
            assert!(allowed.contains(&how), "{mode:?} gave {how:?}");
            assert!(get_all(store, &digest).await == data, "{size} {mode:?}");
            // The rule for hard links: the shared file is read-only.
            if how == Materialized::HardLinked {
                let perms = std::fs::metadata(&path).unwrap().permissions();
                assert_eq!(perms.mode() & 0o222, 0, "{size}: linked source is writable");
            }
            // Importing it again stores nothing new.
            let again = store.import_file(&path, mode).await.unwrap();
            assert_eq!(
                (again.digest, again.sha256, again.placed),
                (digest, sha256, None),
                "{size} {mode:?}"
            );
        }
    }
    let err = store
        .import_file(&dir.path().join("no such file"), LinkMode::Copy)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
}

/// A blob whose bytes changed in the store is materialized as it is, and the
/// report says so (the registry turns that into `Error::Integrity`). Stores whose
/// blobs cannot be changed from outside skip this.
pub async fn materialize_reports_a_damaged_blob(store: &dyn ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(9, 3 << 20);
    let path = dir.path().join("source");
    std::fs::write(&path, &data).unwrap();
    let imported = store.import_file(&path, LinkMode::HardLink).await.unwrap();
    if imported.placed != Some(Materialized::HardLinked) {
        return;
    }
    // Root ignores the read-only mode; anyone else must chmod first.
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut damaged = data.to_vec();
    damaged[1 << 20] ^= 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &damaged))
        .unwrap();
    for mode in [LinkMode::Copy, LinkMode::Reflink, LinkMode::HardLink] {
        let dest = dir.path().join(format!("{mode:?}"));
        let placed = store
            .materialize(&imported.digest, &dest, mode)
            .await
            .unwrap();
        assert_eq!(
            (placed.digest, placed.size),
            (Digest::of(&damaged), damaged.len() as u64),
            "{mode:?}"
        );
    }
}

/// Writing to a copied (or reflinked) destination must not change the stored blob.
fn assert_independent_of_store(dest: &Path) {
    let meta = std::fs::metadata(dest).unwrap();
    assert!(!meta.permissions().readonly(), "a copy should be writable");
    std::fs::write(dest, b"overwritten").unwrap();
}
