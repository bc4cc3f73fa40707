//! Behaviour only a registry in a local directory has: directory sources with
//! symbolic links and special files, several processes writing one directory, and
//! what a reopened directory shows.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::backends::local_blob_path;
use common::children::{spawn_child, wait_children};
use common::fs::allocated;
use common::registry_suite::{
    actor, blobs, create, entries, entry_triples, event_count, expected_entries, listed, read_tree,
    register_bytes, tags, tree, version_count, write_tree,
};
use modelreg::{ArtifactSource, Error, FetchOptions, Metrics, NewVersion, Registry, VersionFilter};
use tempfile::TempDir;

/// Opens the registry in `dir`.
async fn open(dir: &Path) -> Registry {
    Registry::open_local(dir)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Registers the directory `src` as a version of `model`.
async fn register_dir(
    reg: &Registry,
    model: &str,
    src: &Path,
) -> modelreg::Result<modelreg::VersionRecord> {
    reg.acting_as(actor("ci"))
        .register(model, ArtifactSource::dir(src), NewVersion::new())
        .await
        .map(Into::into)
}

// ----- directory sources -------------------------------------------------------------

/// A symbolic link leading out of the source directory, to a file or to a
/// directory, is `InvalidPath`, and nothing is registered or uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_out_of_the_source_is_rejected() {
    let tmp = TempDir::new().expect("temp dir");
    let reg = open(&tmp.path().join("registry")).await;
    create(&reg, "fraud").await;
    let outside = tmp.path().join("outside");
    write_tree(&outside, &[("secret.txt", b"do not upload")]);

    let src = tmp.path().join("src-file-link");
    write_tree(&src, &[("model.bin", b"weights")]);
    std::os::unix::fs::symlink(outside.join("secret.txt"), src.join("notes.txt")).expect("symlink");
    let e = assert_err!(
        register_dir(&reg, "fraud", &src).await,
        Error::InvalidPath { .. }
    );
    assert!(e.to_string().contains("notes.txt"), "{e}");

    let src = tmp.path().join("src-dir-link");
    write_tree(&src, &[("model.bin", b"weights")]);
    std::os::unix::fs::symlink(&outside, src.join("extra")).expect("symlink");
    assert_err!(
        register_dir(&reg, "fraud", &src).await,
        Error::InvalidPath { .. }
    );

    // A relative link that climbs out is just as outside.
    let src = tmp.path().join("src-relative-link");
    write_tree(&src, &[("model.bin", b"weights")]);
    std::os::unix::fs::symlink("../outside/secret.txt", src.join("up.txt")).expect("symlink");
    assert_err!(
        register_dir(&reg, "fraud", &src).await,
        Error::InvalidPath { .. }
    );

    assert_eq!(version_count(&reg, "fraud").await, 0);
    assert_eq!(event_count(&reg, "fraud").await, 1);
    assert!(blobs(&reg).await.is_empty());
}

/// Symbolic links that stay inside the source directory are followed: the linked
/// file, or the linked directory's files, are stored under the link's path, and
/// fetch writes them as regular files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_inside_the_source_is_followed() {
    let tmp = TempDir::new().expect("temp dir");
    let reg = open(&tmp.path().join("registry")).await;
    create(&reg, "fraud").await;
    let src = tmp.path().join("src");
    write_tree(&src, &[("real/w.bin", b"weights"), ("config.json", b"{}")]);
    std::os::unix::fs::symlink("real/w.bin", src.join("alias.bin")).expect("symlink");
    std::os::unix::fs::symlink(src.join("real"), src.join("linked")).expect("symlink");

    let v1 = register_dir(&reg, "fraud", &src).await.expect("register");
    assert_eq!((v1.files, v1.size), (4, 3 * 7 + 2));
    let files: [(&str, &[u8]); 4] = [
        ("alias.bin", b"weights"),
        ("config.json", b"{}"),
        ("linked/w.bin", b"weights"),
        ("real/w.bin", b"weights"),
    ];
    let manifest = reg.manifest("fraud/1").await.expect("manifest");
    assert_eq!(entry_triples(manifest.entries()), expected_entries(&files));

    let dest = tmp.path().join("out");
    reg.fetch("fraud/1", &dest, FetchOptions::new())
        .await
        .expect("fetch");
    assert_eq!(read_tree(&dest), tree(&files));
    for (path, _) in files {
        let meta = std::fs::symlink_metadata(dest.join(path)).expect("stat");
        assert!(meta.file_type().is_file(), "{path} is not a regular file");
    }
}

/// A FIFO in the source directory is `InvalidPath` (reading it would block
/// forever), and nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_in_the_source_is_rejected() {
    let tmp = TempDir::new().expect("temp dir");
    let reg = open(&tmp.path().join("registry")).await;
    create(&reg, "fraud").await;
    let src = tmp.path().join("src");
    write_tree(&src, &[("model.bin", b"weights")]);
    let status = Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed: {status}");

    let e = assert_err!(
        register_dir(&reg, "fraud", &src).await,
        Error::InvalidPath { .. }
    );
    assert!(e.to_string().contains("pipe"), "{e}");
    assert_eq!(version_count(&reg, "fraud").await, 0);
    assert!(blobs(&reg).await.is_empty());
}

/// File names that cannot be stored as artifact paths: not UTF-8, or two names that
/// differ only in letter case (they would collide when fetched on macOS or
/// Windows). Both are `InvalidPath`, and nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstorable_file_names_are_rejected() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = TempDir::new().expect("temp dir");
    let reg = open(&tmp.path().join("registry")).await;
    create(&reg, "fraud").await;

    let src = tmp.path().join("src-bytes");
    write_tree(&src, &[("model.bin", b"weights")]);
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.bin");
    std::fs::write(src.join(name), b"latin-1 name").expect("write");
    assert_err!(
        register_dir(&reg, "fraud", &src).await,
        Error::InvalidPath { .. }
    );

    let src = tmp.path().join("src-case");
    write_tree(&src, &[("Model.bin", b"upper"), ("model.bin", b"lower")]);
    assert_err!(
        register_dir(&reg, "fraud", &src).await,
        Error::InvalidPath { .. }
    );
    assert_eq!(version_count(&reg, "fraud").await, 0);
    assert_eq!(event_count(&reg, "fraud").await, 1);
}

// ----- the hash cache ----------------------------------------------------------------

/// The files of every hash cache entry below `cache` (not its temp directory).
fn cache_entries(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(cache).expect("read cache") {
        let shard = shard.expect("entry").path();
        if shard.file_name().is_some_and(|n| n == "tmp") || !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).expect("read shard") {
            out.push(entry.expect("entry").path());
        }
    }
    out.sort();
    out
}

/// A file registered again unchanged is not read (its hashes come from the hash
/// cache), and the version records the same, correct SHA-256 as the first one.
/// An entry written before SHA-256 was recorded (the digest alone) is a miss:
/// the file is read and hashed again, and its entry replaced. Costs ~2.5 s (waits
/// for the hash cache's settle time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_cache_hits_record_the_same_sha256() {
    use common::registry_suite::{entry_sha256s, expected_sha256s, pattern};
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("registry");
    let reg = open(&dir).await;
    create(&reg, "fraud").await;
    // One file hashed in one read, one in windows.
    let (small, large) = (pattern(5_000, 1), pattern((5 << 20) + 3, 2));
    let files: [(&str, &[u8]); 2] = [("config.bin", &small), ("weights.bin", &large)];
    let src = tmp.path().join("src");
    write_tree(&src, &files);
    // Old enough for the hash cache to record them.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let register = || async {
        reg.acting_as(actor("ci"))
            .register("fraud", ArtifactSource::dir(&src), NewVersion::new())
            .await
            .expect("register")
    };

    let first = register().await;
    assert_eq!(first.report.hash_cache_hits, 0);
    let second = register().await;
    assert_eq!(second.report.hash_cache_hits, 2, "{:?}", second.report);
    assert_eq!(second.artifact, first.artifact);
    for v in [&first, &second] {
        let m = reg
            .manifest(format!("fraud/{}", v.number).as_str())
            .await
            .expect("manifest");
        assert_eq!(entry_sha256s(m.entries()), expected_sha256s(&files));
    }

    // Entries as a build before SHA-256 wrote them: the digest's text alone.
    let cache = dir.join("cache/hashes");
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 2, "{entries:?}");
    for entry in &entries {
        let text = std::fs::read_to_string(entry).expect("read entry");
        let digest = text.lines().next().expect("a first line").to_owned();
        assert!(digest.starts_with("blake3:"), "{text}");
        std::fs::write(entry, digest).expect("write old entry");
    }
    let third = register().await;
    assert_eq!(third.report.hash_cache_hits, 0, "{:?}", third.report);
    assert_eq!(third.artifact, first.artifact);
    let fourth = register().await;
    assert_eq!(fourth.report.hash_cache_hits, 2, "{:?}", fourth.report);
    assert_eq!(fourth.artifact, first.artifact);
    for entry in &entries {
        let text = std::fs::read_to_string(entry).expect("read entry");
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}

// ----- the directory on disk ---------------------------------------------------------

/// Blobs live at `artifacts/blobs/v2/blake3/<2 hex>/<hex>`, read-only, and
/// a registry opened afresh on the same directory (as after a restart) sees every
/// model, version, event, tag, metric and byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_directory_sees_everything() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("registry");
    let (state, history) = {
        let reg = open(&dir).await;
        create(&reg, "fraud").await;
        create(&reg, "churn").await;
        let v1 = register_bytes(&reg, "fraud", "model.bin", "weights one").await;
        register_bytes(&reg, "fraud", "model.bin", "weights two").await;
        register_bytes(&reg, "churn", "model.bin", "churn weights").await;
        let m = Metrics::new().with("auc", 0.75).expect("finite");
        reg.acting_as(actor("eval"))
            .add_metrics("fraud/1", m)
            .await
            .expect("metrics");
        reg.acting_as(actor("bob"))
            .set_version_tags("fraud/2", tags(&[("stage", "prod")]), vec![])
            .await
            .expect("tags");
        reg.acting_as(actor("bob"))
            .deprecate("fraud/1", "old")
            .await
            .expect("deprecate");

        let artifacts = dir.join("artifacts");
        for d in [v1.artifact, common::registry_suite::digest(b"weights one")] {
            let path = local_blob_path(&artifacts, &d);
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .permissions()
                .mode();
            assert_eq!(mode & 0o222, 0, "{} is writable: {mode:o}", path.display());
        }
        (
            reg.model("fraud").await.expect("model"),
            reg.events("fraud").await.expect("events"),
        )
    };

    let reg = open(&dir).await;
    assert_eq!(reg.list_models().await.expect("list").len(), 2);
    assert_eq!(reg.model("fraud").await.expect("model"), state);
    assert_eq!(reg.events("fraud").await.expect("events"), history);
    assert_eq!(
        reg.resolve("fraud@latest")
            .await
            .expect("latest")
            .number
            .get(),
        2
    );
    assert_eq!(
        listed(
            &reg,
            "fraud",
            VersionFilter::new().tag_value("stage", "prod")
        )
        .await,
        vec![2]
    );
    assert_eq!(version_count(&reg, "churn").await, 1);
    let dest = tmp.path().join("out");
    reg.fetch("fraud/1", &dest, FetchOptions::new())
        .await
        .expect("fetch");
    assert_eq!(read_tree(&dest), tree(&[("model.bin", b"weights one")]));
    for r in ["fraud/1", "fraud/2", "churn/1"] {
        reg.verify(r).await.expect("verify");
    }
}

// ----- several processes -------------------------------------------------------------

/// How many child processes write at once.
const CHILDREN: usize = 6;
/// How many versions each child registers.
const PER_CHILD: usize = 10;
/// Tells a child process which registry directory to write to.
const CHILD_DIR: &str = "MODELREG_CHILD_DIR";
/// Tells a child process its number, which makes its payloads distinct.
const CHILD_ID: &str = "MODELREG_CHILD_ID";

/// The payload child `child` registers as its `i`-th version.
fn payload(child: usize, i: usize) -> String {
    format!("child {child} version {i}")
}

/// Not a test on its own: the body of one child process of
/// [`several_processes_register_into_one_directory`], which runs this test binary
/// with only this test selected. Without the environment variable it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_process_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let child: usize = std::env::var(CHILD_ID)
        .expect("child id")
        .parse()
        .expect("child id is a number");
    let reg = open(Path::new(&dir)).await;
    for i in 0..PER_CHILD {
        register_bytes(&reg, "shared", "payload.bin", payload(child, i)).await;
    }
}

/// Six processes register ten versions each into one directory at once: every
/// child succeeds, the numbers are exactly 1..=60, every payload is there once,
/// each child's versions are in the order it registered them, and every version
/// fetches and verifies from a registry opened afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_register_into_one_directory() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("registry");
    create(&open(&dir).await, "shared").await;

    let children: Vec<_> = (0..CHILDREN)
        .map(|child| {
            spawn_child(
                "multi_process_child",
                [
                    (CHILD_DIR, dir.as_os_str()),
                    (CHILD_ID, child.to_string().as_ref()),
                ],
            )
        })
        .collect();
    wait_children(children).await;

    let reg = open(&dir).await;
    let total = CHILDREN * PER_CHILD;
    assert_eq!(
        listed(&reg, "shared", VersionFilter::new()).await,
        (1..=total as u64).collect::<Vec<_>>()
    );
    let mut version_of = BTreeMap::new();
    let out = tmp.path().join("fetched");
    for n in 1..=total {
        let r = format!("shared/{n}");
        let dest = out.join(n.to_string());
        reg.fetch(r.as_str(), &dest, FetchOptions::new())
            .await
            .unwrap_or_else(|e| panic!("fetch {r}: {e}"));
        let files = read_tree(&dest);
        assert_eq!(files.len(), 1, "{r}: {files:?}");
        let bytes = files.get("payload.bin").expect("payload.bin");
        let text = String::from_utf8(bytes.clone()).expect("utf-8 payload");
        assert_eq!(version_of.insert(text, n), None, "{r} repeats a payload");
        reg.verify(r.as_str())
            .await
            .unwrap_or_else(|e| panic!("verify {r}: {e}"));
    }
    for child in 0..CHILDREN {
        let versions: Vec<usize> = (0..PER_CHILD)
            .map(|i| {
                *version_of
                    .get(&payload(child, i))
                    .unwrap_or_else(|| panic!("{} is missing", payload(child, i)))
            })
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "child {child}'s versions out of order: {versions:?}"
        );
    }
    assert_eq!(version_of.len(), total);
    assert_eq!(event_count(&reg, "shared").await, total + 1);
    assert_eq!(entries(&out).len(), total);
}

// ----- link mode ----------------------------------------------------------------------

/// Overwrites `path` in place with `bytes` (same size), puts its modification time
/// back and returns, as a careless tool running as the file's owner (or root) might.
fn overwrite_in_place(path: &Path, bytes: &[u8]) {
    let mtime = std::fs::metadata(path)
        .expect("link-mode test step")
        .modified()
        .expect("link-mode test step");
    let mut perms = std::fs::metadata(path)
        .expect("link-mode test step")
        .permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(path, perms).expect("link-mode test step");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("link-mode test step");
    std::io::Write::write_all(&mut f, bytes).expect("link-mode test step");
    f.set_modified(mtime).expect("link-mode test step");
}

/// A source registered by hard link becomes read-only and shares its inode with
/// the stored blob. If it is written in place anyway, every version using that blob
/// fails `verify` and `fetch` with `Integrity` (in every fetch mode, leaving no
/// destination); the hash cache, which keeps a re-registration of an unchanged
/// *other* file with the same bytes from reading it, cannot make a damaged blob be
/// served; and the changed file registers as new bytes. Costs ~2.5 s (waits for the
/// hash cache's settle time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_linked_source_written_in_place_is_never_served() {
    use std::os::unix::fs::MetadataExt;
    let tmp = TempDir::new().expect("link-mode test step");
    let reg = open(&tmp.path().join("reg")).await;
    create(&reg, "m").await;
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("link-mode test step");
    let original: Vec<u8> = (0..(3usize << 20)).map(|i| (i % 253) as u8).collect();
    let (linked, copied) = (src.join("linked.bin"), src.join("copied.bin"));
    std::fs::write(&linked, &original).expect("link-mode test step");
    std::fs::write(&copied, &original).expect("link-mode test step");
    // Old enough for the hash cache to record them.
    std::thread::sleep(std::time::Duration::from_millis(2200));

    let by_link = NewVersion::new().link(modelreg::store::LinkMode::HardLink);
    let v1 = reg
        .acting_as(actor("ci"))
        .register("m", ArtifactSource::file(&linked), by_link.clone())
        .await
        .expect("link-mode test step");
    let digest = modelreg::Digest::of(&original);
    let blob = local_blob_path(&tmp.path().join("reg/artifacts"), &digest);
    let meta = std::fs::metadata(&linked).expect("link-mode test step");
    assert_eq!(
        meta.ino(),
        std::fs::metadata(&blob).expect("link-mode test step").ino()
    );
    assert_eq!(
        meta.mode() & 0o222,
        0,
        "the linked source must be read-only"
    );
    // The same bytes from another file: stored already, and now in the hash cache.
    let copy_of = |p: &Path| ArtifactSource::file(p.to_owned());
    let v2 = reg
        .acting_as(actor("ci"))
        .register("m", copy_of(&copied), NewVersion::new())
        .await
        .expect("link-mode test step");

    let mut changed = original.clone();
    changed[1 << 20] ^= 0xff;
    overwrite_in_place(&linked, &changed);

    // The cache answers for `copied` (unchanged) without reading it: the new
    // version names the damaged blob, and is refused on read like the others.
    let v3 = reg
        .acting_as(actor("ci"))
        .register("m", copy_of(&copied), NewVersion::new())
        .await
        .expect("link-mode test step");
    for v in [&v1, &v2, &v3] {
        let r = format!("m/{}", v.number);
        let err = reg.verify(r.as_str()).await.expect_err("must fail");
        assert!(matches!(err, Error::Integrity { .. }), "{r}: {err:?}");
        for mode in [
            modelreg::store::LinkMode::Copy,
            modelreg::store::LinkMode::Reflink,
            modelreg::store::LinkMode::HardLink,
        ] {
            let dest = tmp.path().join(format!("out-{}-{mode:?}", v.number));
            let err = reg
                .fetch(r.as_str(), &dest, FetchOptions::new().link(mode))
                .await
                .expect_err("must fail");
            assert!(
                matches!(err, Error::Integrity { .. }),
                "{r} {mode:?}: {err:?}"
            );
            assert!(!dest.exists(), "{r} {mode:?} left a destination");
        }
    }
    // The written file's change time moved: it is hashed again, not taken from
    // the cache, and registers as what it holds now.
    let v4 = reg
        .acting_as(actor("ci"))
        .register("m", ArtifactSource::file(&linked), by_link)
        .await
        .expect("link-mode test step");
    let dest = tmp.path().join("out-4");
    reg.fetch(
        format!("m/{}", v4.number).as_str(),
        &dest,
        FetchOptions::new(),
    )
    .await
    .expect("link-mode test step");
    assert!(std::fs::read(dest.join("linked.bin")).expect("link-mode test step") == changed);
}

/// Retention frees the disk: ten variants of a checkpoint (weights of their
/// own, tokenizer and config shared) registered in a local directory, the five
/// oldest purged by policy, then gc: the store shrinks by the five variants'
/// weights and keeps everything else. `MODELREG_RETENTION_MIB` sets the
/// weights' size (default 4 MiB); the measured sizes are printed
/// (`--nocapture`) and recorded in docs/performance.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_half_the_variants_then_gc_halves_the_store() {
    let mib: usize = common::env_num("MODELREG_RETENTION_MIB", 4);
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("registry");
    let reg = open(&dir).await;
    create(&reg, "llm").await;
    let tokenizer: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let weights_size = mib << 20;
    for variant in 0..10u8 {
        let src = tmp.path().join(format!("variant-{variant}"));
        std::fs::create_dir_all(&src).expect("mkdir");
        let mut weights = vec![0u8; weights_size];
        fastrand::Rng::with_seed(u64::from(variant)).fill(&mut weights);
        std::fs::write(src.join("model.safetensors"), &weights).expect("write");
        std::fs::write(src.join("tokenizer.json"), &tokenizer).expect("write");
        std::fs::write(src.join("config.json"), b"{\"layers\":32}").expect("write");
        register_dir(&reg, "llm", &src).await.expect("register");
        std::fs::remove_dir_all(&src).expect("remove source");
    }
    let registered = allocated(&dir);
    let report = reg
        .acting_as(actor("retainer"))
        .apply_retention("llm", &modelreg::RetentionPolicy::new().keep_last(5), false)
        .await
        .expect("retention");
    assert_eq!(report.purged.len(), 5);
    let purged = allocated(&dir);
    let gc = reg
        .gc(modelreg::GcOptions::new(std::time::Duration::ZERO))
        .await
        .expect("gc");
    let collected = allocated(&dir);
    println!(
        "retention: 10 variants of {mib} MiB weights + 1 MiB shared tokenizer: \
         {registered} bytes on disk; 5 purged: {purged}; after gc: {collected} \
         ({} blobs deleted, {} bytes freed by gc's count)",
        gc.deleted.len(),
        gc.bytes_freed
    );
    // Five weights files and five manifests.
    assert_eq!(gc.deleted.len(), 10, "{gc:?}");
    let five_weights = 5 * weights_size as u64;
    assert!(gc.bytes_freed >= five_weights && gc.bytes_freed < five_weights + 64 * 1024);
    assert!(
        registered - collected >= five_weights,
        "on disk: {registered} → {collected}"
    );
    // What is left: five weights, one tokenizer, one config, metadata.
    let floor = 5 * weights_size as u64 + (1 << 20);
    assert!(
        collected >= floor && collected < floor + 2 * 1024 * 1024,
        "{collected} bytes left for {floor} bytes of kept files"
    );
    for n in 6..=10 {
        reg.verify(format!("llm/{n}"))
            .await
            .expect("kept versions are whole");
    }
    assert!(reg.check().await.expect("check").is_ok());
}
