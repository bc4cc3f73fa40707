//! What the conformance suite cannot see of the local stores: the on-disk layout,
//! file permissions, temp-file hygiene, junk in the tree, reopening, error messages.

// Helpers outside `#[test]` functions (which clippy.toml already covers) fail
// by panicking too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use modelreg::store::{
    ArtifactStore, ArtifactStoreExt, ByteStream, Checkpoint, LinkMode, LocalArtifactStore,
    LocalMetadataStore, LogRecord, Materialized, MetadataStore,
};
use modelreg::{Digest, Error};

fn metadata_store() -> (tempfile::TempDir, LocalMetadataStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalMetadataStore::open(dir.path().join("meta")).unwrap();
    (dir, store)
}

fn artifact_store() -> (tempfile::TempDir, LocalArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalArtifactStore::open(dir.path().join("art")).unwrap();
    (dir, store)
}

/// Everything in the store's `tmp/` directory.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn one_chunk(bytes: Bytes) -> ByteStream {
    Box::pin(stream::once(async move { Ok(bytes) }))
}

/// Where the local store writes blob `digest` (since 0.3).
fn blob_file(store: &LocalArtifactStore, digest: &Digest) -> PathBuf {
    let hex = digest.to_hex();
    store
        .root()
        .join("blobs/v2/blake3")
        .join(&hex[0..2])
        .join(&hex)
}

/// Where builds before 0.3 wrote blob `digest` (still read).
fn old_blob_file(store: &LocalArtifactStore, digest: &Digest) -> PathBuf {
    let hex = digest.to_hex();
    store
        .root()
        .join("blobs/v1/blake3")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_the_versioned_tree_durably_and_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetadataStore::open(dir.path().join("a/b/meta")).unwrap();
    let art = LocalArtifactStore::open(dir.path().join("a/b/art")).unwrap();
    assert_eq!(meta.root(), dir.path().join("a/b/meta"));
    assert!(meta.root().join("logs/v1").is_dir());
    assert!(meta.root().join("tmp").is_dir());
    assert!(art.root().join("blobs/v2/blake3").is_dir());
    assert!(!art.root().join("blobs/v1").exists());
    assert!(art.root().join("tmp").is_dir());
    // Opening again (another handle, another process) is fine.
    LocalMetadataStore::open(dir.path().join("a/b/meta")).unwrap();
    LocalArtifactStore::open(dir.path().join("a/b/art")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_is_versioned_sharded_and_algorithm_tagged() {
    let (_dir, meta) = metadata_store();
    meta.append("fraud", 1, "one".into()).await.unwrap();
    meta.append("fraud", 12, "twelve".into()).await.unwrap();
    meta.put_checkpoint("fraud", 7, "seven".into())
        .await
        .unwrap();
    let log = meta.root().join("logs/v1/fraud");
    assert_eq!(
        fs::read(log.join("records/00000000000000000001.rec")).unwrap(),
        b"one"
    );
    assert_eq!(
        fs::read(log.join("records/00000000000000000012.rec")).unwrap(),
        b"twelve"
    );
    assert_eq!(
        fs::read(log.join("checkpoints/00000000000000000007.ckpt")).unwrap(),
        b"seven"
    );

    let (_dir, art) = artifact_store();
    let digest = art.put_bytes("hello".into()).await.unwrap();
    let expected = art.root().join(
        "blobs/v2/blake3/ea/ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f",
    );
    assert_eq!(blob_file(&art, &digest), expected);
    assert_eq!(fs::read(expected).unwrap(), b"hello");
    // All 256 shards were made before the first blob: no blob makes a directory.
    let shards = fs::read_dir(art.root().join("blobs/v2/blake3"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(shards, 256);
}

/// A store written by a build before 0.3 keeps its blobs two levels deep in
/// `blobs/v1`: they are read, listed, hashed, materialized and deleted where
/// they are; new blobs go to `blobs/v2`; a blob in both is listed once and
/// deleted from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_in_the_layout_before_0_3_are_read_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("art");
    let old = Digest::of(b"old blob");
    let both = Digest::of(b"in both layouts");
    for (digest, bytes) in [(old, &b"old blob"[..]), (both, &b"in both layouts"[..])] {
        let hex = digest.to_hex();
        let shard = root
            .join("blobs/v1/blake3")
            .join(&hex[0..2])
            .join(&hex[2..4]);
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join(&hex), bytes).unwrap();
    }
    fs::create_dir_all(root.join("tmp")).unwrap();
    // Opening an old tree writes nothing.
    let art = LocalArtifactStore::open(&root).unwrap();
    assert!(!root.join("blobs/v2").exists());
    assert_eq!(art.head(&old).await.unwrap().unwrap().size, 8);
    let got: Vec<Bytes> = art.get(&old).await.unwrap().try_collect().await.unwrap();
    assert_eq!(got.concat(), b"old blob");
    assert_eq!(art.hash_stored(&old).await.unwrap(), (old, 8));
    assert_eq!(
        art.get_range(&old, 4..8).await.unwrap(),
        Bytes::from_static(b"blob")
    );
    assert_eq!(
        art.location(&old),
        old_blob_file(&art, &old).display().to_string()
    );
    let dest = dir.path().join("out/old.bin");
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    art.materialize(&old, &dest, LinkMode::Copy).await.unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"old blob");
    // Stored already: put writes nothing new.
    art.put_bytes("old blob".into()).await.unwrap();
    assert!(!blob_file(&art, &old).exists());

    let new = art.put_bytes("new blob".into()).await.unwrap();
    assert!(blob_file(&art, &new).is_file());
    assert_eq!(
        art.location(&new),
        blob_file(&art, &new).display().to_string()
    );
    // As if an old build and this one stored it at once.
    fs::write(blob_file(&art, &both), b"in both layouts").unwrap();
    let mut listed: Vec<Digest> = art.list().await.unwrap().try_collect().await.unwrap();
    listed.sort();
    let mut want = vec![old, both, new];
    want.sort();
    assert_eq!(listed, want);

    art.delete(&both).await.unwrap();
    assert!(!blob_file(&art, &both).exists() && !old_blob_file(&art, &both).exists());
    art.delete(&old).await.unwrap();
    assert!(art.head(&old).await.unwrap().is_none());
    let listed: Vec<Digest> = art.list().await.unwrap().try_collect().await.unwrap();
    assert_eq!(listed, [new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_files_are_read_only_for_everyone() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, art) = artifact_store();
    let from_bytes = art.put_bytes("bytes".into()).await.unwrap();
    let source = dir.path().join("source");
    fs::write(&source, "file").unwrap();
    let from_file = Digest::of(b"file");
    art.put_file(&from_file, &source).await.unwrap();
    let from_stream = Digest::of(b"stream");
    art.put_stream(&from_stream, one_chunk("stream".into()))
        .await
        .unwrap();
    for digest in [from_bytes, from_file, from_stream] {
        let mode = fs::metadata(blob_file(&art, &digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444, "{digest}");
    }
    // The source is left as it was.
    assert!(!fs::metadata(&source).unwrap().permissions().readonly());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_temp_files_are_left_after_successful_or_failed_writes() {
    let (dir, art) = artifact_store();
    let data = Bytes::from(vec![7u8; 300_000]);
    let digest = Digest::of(&data);
    let wrong = Digest::of(b"not it");
    let source = dir.path().join("source");
    fs::write(&source, &data).unwrap();

    assert!(
        art.put_stream(&wrong, one_chunk(data.clone()))
            .await
            .is_err()
    );
    assert!(art.put_file(&wrong, &source).await.is_err());
    let failing: ByteStream = Box::pin(stream::iter(vec![
        Ok(data.clone()),
        Err(Error::NotFound {
            what: "x".into(),
            missing: modelreg::Missing::Other,
        }),
    ]));
    assert!(art.put_stream(&digest, failing).await.is_err());
    assert!(
        art.put_file(&digest, &dir.path().join("missing"))
            .await
            .is_err()
    );
    assert_eq!(
        temp_files(art.root()),
        Vec::<PathBuf>::new(),
        "after failed puts"
    );

    art.put_file(&digest, &source).await.unwrap();
    art.put_file(&digest, &source).await.unwrap();
    art.put_stream(&digest, one_chunk(data.clone()))
        .await
        .unwrap();
    art.put_bytes("other".into()).await.unwrap();
    assert_eq!(temp_files(art.root()), Vec::<PathBuf>::new(), "after puts");

    let (_dir, meta) = metadata_store();
    meta.append("log", 1, "a".into()).await.unwrap();
    assert!(meta.append("log", 1, "b".into()).await.is_err());
    meta.put_checkpoint("log", 1, "c".into()).await.unwrap();
    meta.put_checkpoint("log", 1, "d".into()).await.unwrap();
    assert_eq!(
        temp_files(meta.root()),
        Vec::<PathBuf>::new(),
        "after metadata writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_put_stream_publishes_nothing_and_cleans_up() {
    let (_dir, art) = artifact_store();
    let first = Bytes::from(vec![1u8; 10_000]);
    let digest = Digest::of(&[first.clone(), first.clone()].concat());
    // One chunk, then a stream that never ends.
    let stalled: ByteStream = Box::pin(stream::iter([Ok(first)]).chain(stream::pending()));
    let put = tokio::time::timeout(Duration::from_millis(200), art.put_stream(&digest, stalled));
    assert!(put.await.is_err(), "the stalled put should time out");
    // The writer thread notices the dropped stream and removes its temp file.
    for _ in 0..100 {
        if temp_files(art.root()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(temp_files(art.root()), Vec::<PathBuf>::new());
    assert_eq!(art.head(&digest).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_ignore_junk_in_the_tree() {
    let (_dir, meta) = metadata_store();
    meta.append("real", 1, "r".into()).await.unwrap();
    let logs = meta.root().join("logs/v1");
    fs::write(logs.join("README"), "a file where a log would be").unwrap();
    fs::create_dir_all(logs.join("no-records")).unwrap();
    fs::create_dir_all(logs.join("junk-records/records")).unwrap();
    fs::write(logs.join("junk-records/records/notes.txt"), "x").unwrap();
    fs::write(logs.join("junk-records/records/1.rec"), "x").unwrap();
    fs::create_dir_all(logs.join("records-is-a-file")).unwrap();
    fs::write(logs.join("records-is-a-file/records"), "x").unwrap();
    assert_eq!(meta.list_logs().await.unwrap(), ["real"]);
    assert_eq!(
        meta.read_after("records-is-a-file", 0, 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        meta.read_after("junk-records", 0, 10).await.unwrap(),
        vec![]
    );

    let checkpoints = logs.join("real/checkpoints");
    fs::create_dir_all(&checkpoints).unwrap();
    for junk in [
        "99.ckpt",
        "00000000000000000099.ckpt~",
        ".tmp-1-2",
        "00000000000000000099",
    ] {
        fs::write(checkpoints.join(junk), "junk").unwrap();
    }
    assert_eq!(meta.latest_checkpoint("real").await.unwrap(), None);
    meta.put_checkpoint("real", 3, "three".into())
        .await
        .unwrap();
    assert_eq!(
        meta.latest_checkpoint("real").await.unwrap(),
        Some(Checkpoint {
            seq: 3,
            bytes: "three".into()
        })
    );

    let (_dir, art) = artifact_store();
    let digest = art.put_bytes("real".into()).await.unwrap();
    let hex = digest.to_hex();
    let blobs = art.root().join("blobs/v2/blake3");
    fs::write(blobs.join("README"), "x").unwrap();
    fs::create_dir_all(blobs.join("zz")).unwrap();
    fs::write(blobs.join("zz").join(&hex), "x").unwrap();
    let shard = blobs.join(&hex[0..2]);
    fs::write(shard.join(hex.to_ascii_uppercase()), "x").unwrap();
    fs::write(shard.join(format!("{hex}.partial")), "x").unwrap();
    fs::write(shard.join(".tmp-1-2"), "x").unwrap();
    // A directory where a blob could be is not one.
    fs::create_dir_all(shard.join(&hex[2..4])).unwrap();
    // A valid name in the wrong shard is not where `get` would look.
    let other = Digest::of(b"elsewhere").to_hex();
    fs::write(shard.join(&other), "x").unwrap();
    // Nor in the old layout's wrong shard.
    let old = art
        .root()
        .join("blobs/v1/blake3")
        .join(&hex[0..2])
        .join("zz");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join(&other), "x").unwrap();
    let listed: Vec<Digest> = art.list().await.unwrap().try_collect().await.unwrap();
    assert_eq!(listed, [digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_sees_everything_written_before() {
    let dir = tempfile::tempdir().unwrap();
    let digest = {
        let meta = LocalMetadataStore::open(dir.path().join("m")).unwrap();
        meta.append("fraud", 1, "one".into()).await.unwrap();
        meta.put_checkpoint("fraud", 1, "c1".into()).await.unwrap();
        let art = LocalArtifactStore::open(dir.path().join("a")).unwrap();
        art.put_bytes("blob".into()).await.unwrap()
    };
    let meta = LocalMetadataStore::open(dir.path().join("m")).unwrap();
    assert_eq!(
        meta.read_after("fraud", 0, 10).await.unwrap(),
        vec![LogRecord {
            seq: 1,
            bytes: "one".into()
        }]
    );
    assert_eq!(meta.list_logs().await.unwrap(), ["fraud"]);
    assert_eq!(
        meta.latest_checkpoint("fraud")
            .await
            .unwrap()
            .map(|c| c.seq),
        Some(1)
    );
    let art = LocalArtifactStore::open(dir.path().join("a")).unwrap();
    assert_eq!(art.get_range(&digest, 0..4).await.unwrap(), "blob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_pruned_to_the_newest_two_and_one_per_window() {
    let (_dir, meta) = metadata_store();
    for seq in 1..=300 {
        meta.put_checkpoint("fraud", seq, format!("c{seq}").into())
            .await
            .unwrap();
    }
    let dir = meta.root().join("logs/v1/fraud/checkpoints");
    let mut kept: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.trim_end_matches(".ckpt").parse().unwrap()
        })
        .collect();
    kept.sort_unstable();
    // The newest two, and the first of each window of 2 (300 records in at
    // most 256 windows, rounded up to a power of two) for time travel.
    let mut expected = vec![1];
    expected.extend((2..=298).step_by(2));
    expected.extend([299, 300]);
    assert_eq!(kept, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_link_materialize_shares_the_read_only_blob() {
    use std::os::unix::fs::MetadataExt;
    let (dir, art) = artifact_store();
    let digest = art.put_bytes("weights".into()).await.unwrap();
    let dest = dir.path().join("weights.bin");
    let placed = art
        .materialize(&digest, &dest, LinkMode::HardLink)
        .await
        .unwrap();
    assert_eq!(placed.how, Materialized::HardLinked);
    let meta = fs::metadata(&dest).unwrap();
    assert_eq!(
        meta.ino(),
        fs::metadata(blob_file(&art, &digest)).unwrap().ino()
    );
    assert!(meta.permissions().readonly());
    // Deleting the blob leaves the materialized file intact.
    art.delete(&digest).await.unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"weights");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_store_the_operation_and_the_path() {
    let (_dir, meta) = metadata_store();
    // A file where the log's records directory belongs.
    let log = meta.root().join("logs/v1/broken");
    fs::create_dir_all(&log).unwrap();
    fs::write(log.join("records"), "x").unwrap();
    let err = meta.append("broken", 1, "r".into()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Storage {
                operation: "append",
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    let expected = format!("local metadata store at {}: append ", meta.root().display());
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.contains("logs/v1/broken/records/00000000000000000001.rec"),
        "{message}"
    );

    let (dir, art) = artifact_store();
    let digest = art.put_bytes("x".into()).await.unwrap();
    // Destination errors are about the destination, not the store.
    let dest = dir.path().join("no-such-dir/out");
    let err = art
        .materialize(&digest, &dest, LinkMode::Copy)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == dest),
        "{err:?}"
    );
    let missing = Digest::of(b"missing");
    let err = art.get_range(&missing, 0..1).await.unwrap_err();
    assert!(err.to_string().contains("local artifact store at"), "{err}");
}
