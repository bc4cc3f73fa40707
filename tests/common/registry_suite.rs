//! The registry's behaviour, written once.
//!
//! Every `pub async fn` here taking a [`Fixture`] is a test: `tests/registry_behaviour.rs`
//! instantiates each one for every backend. A fixture hands out the registry under
//! test and fresh registries over the same stores (another process's view), so a
//! test never knows which backend it runs on. Every assertion names exact values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use modelreg::format::decode_checkpoint;
use modelreg::store::{ArtifactStoreExt, LinkMode};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Error, EventKind, FetchOptions, FetchReport,
    GcOptions, GcReport, HyperValue, ManifestEntry, MetricName, MetricSpec, Metrics, ModelName,
    ModelState, NewVersion, ParentRef, Progress, ProgressEvent, Provenance, Registry, RelPath,
    Relation, SetAlias, Sha256, Tags, VerifyReport, VersionFilter, VersionNumber, VersionRecord,
    VersionRef,
};

use super::backends::Fixture;

// ----- helpers -------------------------------------------------------------------

/// A valid actor.
pub fn actor(name: &str) -> Actor {
    Actor::new(name).expect("valid actor")
}

/// A valid tag key or metric name.
pub fn key(name: &str) -> MetricName {
    MetricName::new(name).expect("valid key")
}

/// A version number.
pub fn num(n: u64) -> VersionNumber {
    VersionNumber::new(n).expect("non-zero")
}

/// Tags from pairs.
pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (key(k), (*v).to_owned()))
        .collect()
}

/// The BLAKE3 digest of `bytes`, computed independently of the crate's own helper.
pub fn digest(bytes: &[u8]) -> Digest {
    Digest::from(blake3::hash(bytes))
}

/// The SHA-256 of `bytes`, computed by the `sha2` crate in one call, independently
/// of the registry's windowed hashing.
pub fn sha256(bytes: &[u8]) -> Sha256 {
    use sha2::Digest as _;
    Sha256::from_bytes(sha2::Sha256::digest(bytes).into())
}

/// Each entry's path and recorded SHA-256.
pub fn entry_sha256s(entries: &[ManifestEntry]) -> Vec<(String, Option<Sha256>)> {
    entries
        .iter()
        .map(|e| (e.path.as_str().to_owned(), e.sha256))
        .collect()
}

/// What [`entry_sha256s`] must give for `files`: every path with the SHA-256 of
/// its bytes, sorted by path.
pub fn expected_sha256s(files: &[(&str, &[u8])]) -> Vec<(String, Option<Sha256>)> {
    let mut v: Vec<_> = files
        .iter()
        .map(|(p, b)| ((*p).to_owned(), Some(sha256(b))))
        .collect();
    v.sort();
    v
}

/// Creates `model`, by alice.
pub async fn create(reg: &Registry, model: &str) -> ModelState {
    reg.acting_as(actor("alice"))
        .create_model(model, CreateModel::new())
        .await
        .unwrap_or_else(|e| panic!("create {model}: {e}"))
}

/// Registers one in-memory file at `path` as the next version of `model`.
pub async fn register_bytes(
    reg: &Registry,
    model: &str,
    path: &str,
    content: impl Into<Bytes>,
) -> VersionRecord {
    register_with(reg, model, path, content, NewVersion::new()).await
}

/// [`register_bytes`] with the given version options.
pub async fn register_with(
    reg: &Registry,
    model: &str,
    path: &str,
    content: impl Into<Bytes>,
    version: NewVersion,
) -> VersionRecord {
    let source = ArtifactSource::bytes(path, content).expect("valid path");
    reg.acting_as(actor("ci"))
        .register(model, source, version)
        .await
        .unwrap_or_else(|e| panic!("register {model}: {e}"))
        .version
}

/// The set of blobs in the registry's artifact store.
pub async fn blobs(reg: &Registry) -> BTreeSet<Digest> {
    reg.artifact_store()
        .list()
        .await
        .expect("list blobs")
        .try_collect()
        .await
        .expect("list blobs")
}

/// The numbers of `versions`, in order.
pub fn numbers<V: std::ops::Deref<Target = VersionRecord>>(versions: &[V]) -> Vec<u64> {
    versions.iter().map(|v| v.number.get()).collect()
}

/// The numbers of the versions of `model` that match `filter`.
pub async fn listed(reg: &Registry, model: &str, filter: VersionFilter) -> Vec<u64> {
    numbers(
        &reg.list_versions(model, &filter)
            .await
            .unwrap_or_else(|e| panic!("list versions of {model}: {e}")),
    )
}

/// How many versions `model` has.
pub async fn version_count(reg: &Registry, model: &str) -> usize {
    listed(reg, model, VersionFilter::new()).await.len()
}

/// How many events `model`'s log has.
pub async fn event_count(reg: &Registry, model: &str) -> usize {
    reg.events(model).await.expect("events").len()
}

/// Writes `files` (relative path, bytes) below `root`, creating directories.
pub fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, bytes) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create dirs");
        std::fs::write(&path, bytes).expect("write source file");
    }
}

/// Every regular file below `root`, by `/`-separated relative path.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("below root")
                    .to_str()
                    .expect("utf-8")
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The expected contents of a tree as [`read_tree`] returns them.
pub fn tree(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
        .collect()
}

/// The names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .collect();
    names.sort();
    names
}

/// Fetch staging directories left in `dir`.
pub fn staging_dirs(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.contains(".modelreg-"))
        .collect()
}

/// The manifest entries a set of files must produce: sorted by path, sizes and
/// digests computed here.
pub fn expected_entries(files: &[(&str, &[u8])]) -> Vec<(String, u64, Digest)> {
    let mut v: Vec<_> = files
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.len() as u64, digest(b)))
        .collect();
    v.sort();
    v
}

/// A manifest's entries in the shape of [`expected_entries`].
pub fn entry_triples(entries: &[ManifestEntry]) -> Vec<(String, u64, Digest)> {
    entries
        .iter()
        .map(|e| (e.path.as_str().to_owned(), e.size, e.digest))
        .collect()
}

/// A deterministic, non-repeating-looking byte pattern of length `len`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A directory of nested files used by several tests.
pub fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", br#"{"layers":2}"#.to_vec()),
        ("weights/layer0.bin", pattern(10_000, 1)),
        ("weights/deep/layer1.bin", pattern(3_333, 2)),
        ("tokenizer/vocab.txt", b"a\nb\nc\n".to_vec()),
        // The empty file: zero bytes hash and store like any other.
        ("empty", Vec::new()),
    ]
}

/// Borrows `(path, bytes)` pairs.
pub fn as_refs<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files.iter().map(|(p, b)| (*p, b.as_slice())).collect()
}

// ----- models ----------------------------------------------------------------------

/// Creating a model records who, what and its tags; a second create of the same
/// name fails with `AlreadyExists` from this handle and from another one, and
/// changes nothing.
pub async fn create_model_and_reject_duplicates(f: &Fixture) {
    let reg = f.registry();
    let state = reg
        .acting_as(actor("alice"))
        .create_model(
            "fraud",
            CreateModel::new()
                .description("Card fraud scoring")
                .tag("team", "risk"),
        )
        .await
        .expect("create");
    assert_eq!(state.name().as_str(), "fraud");
    assert_eq!(state.description(), "Card fraud scoring");
    assert_eq!(state.created_by(), &actor("alice"));
    assert_eq!(state.tags(), &tags(&[("team", "risk")]));
    assert_eq!(state.seq(), 1);
    assert!(state.versions().is_empty());

    let e = assert_err!(
        reg.acting_as(actor("bob"))
            .create_model("fraud", CreateModel::new())
            .await,
        Error::AlreadyExists { .. }
    );
    assert!(e.to_string().contains("fraud"), "{e}");
    let other = f.fresh().await;
    assert_err!(
        other
            .acting_as(actor("bob"))
            .create_model("fraud", CreateModel::new())
            .await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(event_count(&reg, "fraud").await, 1);
    assert_eq!(reg.model("fraud").await.expect("model"), state);
    assert_eq!(other.model("fraud").await.expect("model"), state);

    for bad in ["Fraud", "team/fraud", "..", "-x", "", "fraud@1"] {
        assert_err!(
            reg.acting_as(actor("bob"))
                .create_model(bad, CreateModel::new())
                .await,
            Error::InvalidName { .. }
        );
    }
    create(&reg, "alpha").await;
    let names: Vec<ModelName> = ["alpha", "fraud"]
        .into_iter()
        .map(|n| ModelName::new(n).expect("valid"))
        .collect();
    assert_eq!(reg.list_models().await.expect("list"), names);
    assert_eq!(other.list_models().await.expect("list"), names);
}

/// Registries racing to create the same model: exactly one succeeds, every other
/// gets `AlreadyExists`, and the log holds one event.
pub async fn concurrent_creates_of_one_model(f: &Fixture) {
    let mut handles = Vec::new();
    for i in 0..6 {
        let reg = if i % 2 == 0 {
            f.fresh().await
        } else {
            f.registry()
        };
        handles.push(tokio::spawn(async move {
            reg.acting_as(actor(&format!("writer {i}")))
                .create_model("fraud", CreateModel::new())
                .await
        }));
    }
    let mut created = 0;
    for h in handles {
        match h.await.expect("task did not panic") {
            Ok(state) => {
                created += 1;
                assert_eq!(state.seq(), 1);
            }
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("expected Ok or AlreadyExists, got {e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(event_count(&f.registry(), "fraud").await, 1);
}

/// Every command and query on a model that does not exist is `NotFound`, and none
/// of them creates it or stores anything.
pub async fn unknown_model_is_not_found(f: &Fixture) {
    let reg = f.registry();
    let src = || ArtifactSource::bytes("m.bin", "weights").expect("valid path");
    let v = || NewVersion::new();
    let who = actor("alice");
    assert_err!(reg.resolve("ghost@latest").await, Error::NotFound { .. });
    assert_err!(reg.resolve("ghost/1").await, Error::NotFound { .. });
    assert_err!(
        reg.acting_as(actor("ci"))
            .register("ghost", src(), v())
            .await,
        Error::NotFound { .. }
    );
    assert_err!(reg.events("ghost").await, Error::NotFound { .. });
    assert_err!(reg.model("ghost").await, Error::NotFound { .. });
    assert_err!(
        reg.list_versions("ghost", &VersionFilter::new()).await,
        Error::NotFound { .. }
    );
    let m = Metrics::new().with("auc", 0.5).expect("finite");
    assert_err!(
        reg.acting_as(who.clone()).add_metrics("ghost/1", m).await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.acting_as(who.clone()).deprecate("ghost/1", "old").await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.acting_as(who.clone())
            .set_model_tags("ghost", tags(&[("a", "b")]), vec![])
            .await,
        Error::NotFound { .. }
    );
    let dest = f.scratch().join("out");
    assert_err!(
        reg.fetch("ghost/1", &dest, FetchOptions::new()).await,
        Error::NotFound { .. }
    );
    assert!(!dest.exists());
    assert_err!(reg.verify("ghost/1").await, Error::NotFound { .. });

    assert!(reg.list_models().await.expect("list").is_empty());
    // Registering checks the model before moving any bytes.
    assert!(blobs(&reg).await.is_empty());
}

/// Model tags and metric specs are set, merged and removed exactly as asked;
/// empty or invalid changes are `InvalidInput` and change nothing.
pub async fn model_tags_and_metric_specs(f: &Fixture) {
    let reg = f.registry();
    let who = actor("alice");
    reg.acting_as(who.clone())
        .create_model(
            "fraud",
            CreateModel::new()
                .tag("team", "risk")
                .metric("auc", MetricSpec::maximize()),
        )
        .await
        .expect("create");

    let s = reg
        .acting_as(who.clone())
        .set_model_tags(
            "fraud",
            tags(&[("owner", "alice"), ("team", "fraud-ops")]),
            vec![],
        )
        .await
        .expect("set tags");
    assert_eq!(
        s.tags(),
        &tags(&[("owner", "alice"), ("team", "fraud-ops")])
    );
    let s = reg
        .acting_as(who.clone())
        .set_model_tags("fraud", Tags::new(), vec![key("team")])
        .await
        .expect("remove tag");
    assert_eq!(s.tags(), &tags(&[("owner", "alice")]));
    assert_err!(
        reg.acting_as(who.clone())
            .set_model_tags("fraud", Tags::new(), vec![])
            .await,
        Error::InvalidInput { .. }
    );

    let loss = MetricSpec::minimize().with_tolerance(0.01);
    let s = reg
        .acting_as(who.clone())
        .set_metric_specs("fraud", BTreeMap::from([(key("loss"), loss)]))
        .await
        .expect("set specs");
    assert_eq!(
        s.metric_specs(),
        &BTreeMap::from([(key("auc"), MetricSpec::maximize()), (key("loss"), loss)])
    );
    let bad = MetricSpec::maximize().with_tolerance(f64::NAN);
    assert_err!(
        reg.acting_as(who.clone())
            .set_metric_specs("fraud", BTreeMap::from([(key("auc"), bad)]))
            .await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        reg.acting_as(who.clone())
            .set_metric_specs("fraud", BTreeMap::new())
            .await,
        Error::InvalidInput { .. }
    );

    let v1 = register_with(
        &reg,
        "fraud",
        "m.bin",
        "w",
        NewVersion::new().tag("dataset", "nov"),
    )
    .await;
    assert_eq!(v1.tags, tags(&[("dataset", "nov")]));
    let v1 = reg
        .acting_as(who.clone())
        .set_version_tags("fraud/1", tags(&[("stage", "prod")]), vec![key("dataset")])
        .await
        .expect("version tags");
    assert_eq!(v1.tags, tags(&[("stage", "prod")]));
    assert_eq!(reg.resolve("fraud/1").await.expect("resolve"), v1);
    assert_err!(
        reg.acting_as(who.clone())
            .set_version_tags("fraud/2", tags(&[("a", "b")]), vec![])
            .await,
        Error::NotFound { .. }
    );
    // create, 2 model tag changes, 1 spec change, register, 1 version tag change.
    assert_eq!(event_count(&reg, "fraud").await, 6);
}

// ----- registering -----------------------------------------------------------------

/// A directory (with nested subdirectories and an empty file), a single file and
/// in-memory bytes each become a version, numbered 1, 2, 3, whose manifest lists
/// exactly the source's files with their sizes and digests.
pub async fn register_from_dir_file_and_bytes(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;

    let files = sample_files();
    let dir = f.scratch().join("checkpoint");
    write_tree(&dir, &as_refs(&files));
    let v1 = reg
        .acting_as(actor("ci"))
        .register(
            "fraud",
            ArtifactSource::dir(&dir),
            NewVersion::new().description("from a directory"),
        )
        .await
        .expect("register dir");
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(v1.number, num(1));
    assert_eq!(v1.files, 5);
    assert_eq!(v1.size, total);
    assert_eq!(v1.created_by, actor("ci"));
    assert_eq!(v1.description, "from a directory");
    assert_eq!(v1.deprecated, None);
    let m1 = reg.manifest("fraud/1").await.expect("manifest");
    assert_eq!(
        entry_triples(m1.entries()),
        expected_entries(&as_refs(&files))
    );
    assert_eq!(
        entry_sha256s(m1.entries()),
        expected_sha256s(&as_refs(&files))
    );
    assert_eq!(m1.digest(), v1.artifact);

    let export = f.scratch().join("export");
    let onnx = pattern(4_321, 9);
    write_tree(&export, &[("model.onnx", &onnx)]);
    let single = export.join("model.onnx");
    let v2 = reg
        .acting_as(actor("ci"))
        .register("fraud", ArtifactSource::file(&single), NewVersion::new())
        .await
        .expect("register file");
    assert_eq!((v2.number, v2.files, v2.size), (num(2), 1, 4_321));
    let m2 = reg.manifest("fraud/2").await.expect("manifest");
    assert_eq!(
        entry_triples(m2.entries()),
        expected_entries(&[("model.onnx", &onnx)])
    );
    assert_eq!(
        entry_sha256s(m2.entries()),
        expected_sha256s(&[("model.onnx", &onnx)])
    );

    let prompt: &[u8] = b"You are a helpful assistant.";
    let params: &[u8] = br#"{"temperature":0.2}"#;
    let source = ArtifactSource::files([("prompt.txt", prompt), ("cfg/params.json", params)])
        .expect("valid paths");
    let v3 = reg
        .acting_as(actor("ci"))
        .register("fraud", source, NewVersion::new())
        .await
        .expect("register bytes");
    assert_eq!((v3.number, v3.files), (num(3), 2));
    assert_eq!(v3.size, (prompt.len() + params.len()) as u64);
    let m3 = reg.manifest("fraud/3").await.expect("manifest");
    assert_eq!(
        entry_triples(m3.entries()),
        expected_entries(&[("prompt.txt", prompt), ("cfg/params.json", params)])
    );
    assert_eq!(
        entry_sha256s(m3.entries()),
        expected_sha256s(&[("prompt.txt", prompt), ("cfg/params.json", params)])
    );
    // One in-memory file.
    let v4 = reg
        .acting_as(actor("ci"))
        .register(
            "fraud",
            ArtifactSource::bytes("prompt.txt", prompt.to_vec()).expect("valid path"),
            NewVersion::new(),
        )
        .await
        .expect("register one in-memory file");
    let m4 = reg.manifest("fraud/4").await.expect("manifest");
    assert_eq!(m4.digest(), v4.artifact);
    assert_eq!(
        entry_sha256s(m4.entries()),
        expected_sha256s(&[("prompt.txt", prompt)])
    );

    assert_eq!(
        listed(&reg, "fraud", VersionFilter::new()).await,
        vec![1, 2, 3, 4]
    );
    assert_eq!(reg.resolve("fraud/2").await.expect("resolve"), v2.version);
}

/// Registering the same files twice stores no new blob, not even a manifest: both
/// versions name the same artifact, and the digest reference resolves to the newest.
/// Identical files inside one version are stored once too.
pub async fn identical_files_are_stored_once(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let a = pattern(5_000, 3);
    let b = pattern(700, 4);
    let files: [(&str, &[u8]); 3] = [("a.bin", &a), ("sub/b.bin", &b), ("sub/copy-of-a.bin", &a)];
    let dir = f.scratch().join("src");
    write_tree(&dir, &files);

    assert!(blobs(&reg).await.is_empty());
    let v1 = reg
        .acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(&dir), NewVersion::new())
        .await
        .expect("register");
    let after_first = blobs(&reg).await;
    assert_eq!(
        after_first,
        BTreeSet::from([digest(&a), digest(&b), v1.artifact])
    );

    let v2 = reg
        .acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(&dir), NewVersion::new())
        .await
        .expect("register again");
    assert_eq!(v2.number, num(2));
    assert_eq!(v2.artifact, v1.artifact);
    assert_eq!(blobs(&reg).await, after_first);

    // The same files from memory are the same artifact.
    let v3 = reg
        .acting_as(actor("ci"))
        .register(
            "fraud",
            ArtifactSource::files(files.map(|(p, b)| (p, b.to_vec()))).expect("valid paths"),
            NewVersion::new(),
        )
        .await
        .expect("register from memory");
    assert_eq!(v3.artifact, v1.artifact);
    assert_eq!(blobs(&reg).await, after_first);

    let by_digest = reg
        .resolve(format!("fraud#{}", v1.artifact))
        .await
        .expect("resolve digest");
    assert_eq!(by_digest.number, num(3));
}

/// A semver label is unique within its model: reusing it is `AlreadyExists` and
/// registers nothing (and uploads nothing); another model may use it.
pub async fn semver_labels_are_unique_within_a_model(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    create(&reg, "churn").await;
    let semver = |s: &str| NewVersion::new().semver(s);

    let v1 = register_with(&reg, "fraud", "m.bin", "one", semver("1.2.0")).await;
    assert_eq!(v1.semver, Some("1.2.0".parse().expect("semver")));
    let before = blobs(&reg).await;
    let source = ArtifactSource::bytes("m.bin", "two").expect("valid path");
    let e = assert_err!(
        reg.acting_as(actor("ci"))
            .register("fraud", source, semver("1.2.0"))
            .await,
        Error::AlreadyExists { .. }
    );
    assert!(e.to_string().contains("1.2.0"), "{e}");
    assert_eq!(version_count(&reg, "fraud").await, 1);
    assert_eq!(event_count(&reg, "fraud").await, 2);
    assert_eq!(blobs(&reg).await, before);

    let v2 = register_with(&reg, "fraud", "m.bin", "two", semver("1.3.0-rc.1")).await;
    assert_eq!(v2.number, num(2));
    let c1 = register_with(&reg, "churn", "m.bin", "three", semver("1.2.0")).await;
    assert_eq!(c1.number, num(1));

    assert_eq!(reg.resolve("fraud:1.2.0").await.expect("resolve"), v1);
    assert_eq!(reg.resolve("fraud:1.3.0-rc.1").await.expect("resolve"), v2);
    assert_eq!(reg.resolve("churn:1.2.0").await.expect("resolve"), c1);
    assert_err!(reg.resolve("fraud:1.3.0").await, Error::NotFound { .. });
}

/// Every form of reference resolves to the right version, an alias once it is set;
/// references to versions, unset aliases or digests that do not exist are
/// `NotFound`, malformed ones `InvalidReference`.
pub async fn every_reference_form_resolves(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let semver = |s: &str| NewVersion::new().semver(s);
    let v1 = register_with(&reg, "fraud", "m.bin", "one", semver("1.0.0")).await;
    let v2 = register_with(&reg, "fraud", "m.bin", "two", semver("2.0.0")).await;
    let v3 = register_bytes(&reg, "fraud", "m.bin", "three").await;

    let n = |r: Result<VersionRecord, Error>| r.expect("resolves").number.get();
    assert_eq!(n(reg.resolve("fraud/1").await), 1);
    assert_eq!(n(reg.resolve("fraud/3").await), 3);
    assert_eq!(n(reg.resolve(String::from("fraud/2")).await), 2);
    assert_eq!(n(reg.resolve("fraud:1.0.0").await), 1);
    assert_eq!(n(reg.resolve("fraud:2.0.0").await), 2);
    assert_eq!(n(reg.resolve("fraud@latest").await), 3);
    assert_eq!(n(reg.resolve(format!("fraud#{}", v1.artifact)).await), 1);
    assert_eq!(n(reg.resolve(format!("fraud#{}", v2.artifact)).await), 2);
    let fraud = ModelName::new("fraud").expect("valid");
    let typed = VersionRef::number(fraud, num(2));
    assert_eq!(n(reg.resolve(&typed).await), 2);
    assert_eq!(n(reg.resolve(typed).await), 2);
    assert_eq!(reg.resolve("fraud/3").await.expect("resolve"), v3);

    assert_err!(reg.resolve("fraud/4").await, Error::NotFound { .. });
    // An alias resolves once it is set, and only then.
    assert_err!(reg.resolve("fraud@champion").await, Error::NotFound { .. });
    reg.acting_as(actor("alice"))
        .set_alias("fraud:2.0.0", "champion", SetAlias::new())
        .await
        .expect("set alias");
    assert_eq!(n(reg.resolve("fraud@champion").await), 2);
    assert_err!(
        reg.resolve("fraud@challenger").await,
        Error::NotFound { .. }
    );
    // No version is in production yet.
    assert_err!(
        reg.resolve("fraud@production").await,
        Error::NotFound { .. }
    );
    let stranger = digest(b"never registered");
    assert_err!(
        reg.resolve(format!("fraud#{stranger}")).await,
        Error::NotFound { .. }
    );
    // The file's own digest is not the artifact's.
    assert_err!(
        reg.resolve(format!("fraud#{}", digest(b"one"))).await,
        Error::NotFound { .. }
    );
    for bad in ["fraud", "Fraud/1", "fraud/0", "fraud/x", "fraud:1.0"] {
        assert_err!(reg.resolve(bad).await, Error::InvalidReference { .. });
    }
}

/// Deprecated versions stay resolvable by number, semver and digest, but `@latest`
/// skips them; deprecating twice is `InvalidInput`; with everything deprecated
/// `@latest` is `NotFound`.
pub async fn latest_skips_deprecated_versions(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let semver = NewVersion::new().semver("3.0.0");
    register_bytes(&reg, "fraud", "m.bin", "one").await;
    register_bytes(&reg, "fraud", "m.bin", "two").await;
    let v3 = register_with(&reg, "fraud", "m.bin", "three", semver).await;

    let bob = actor("bob");
    let d3 = reg
        .acting_as(bob.clone())
        .deprecate("fraud@latest", "leaks labels")
        .await
        .expect("deprecate");
    assert_eq!(d3.number, num(3));
    let dep = d3.deprecated.clone().expect("deprecated");
    assert_eq!((dep.by, dep.reason.as_str()), (bob.clone(), "leaks labels"));
    assert_eq!(
        reg.resolve("fraud@latest").await.expect("latest").number,
        num(2)
    );
    assert_eq!(reg.resolve("fraud/3").await.expect("by number"), d3);
    assert_eq!(reg.resolve("fraud:3.0.0").await.expect("by semver"), d3);
    let by_digest = reg.resolve(format!("fraud#{}", v3.artifact)).await;
    assert_eq!(by_digest.expect("by digest"), d3);

    assert_err!(
        reg.acting_as(bob.clone())
            .deprecate("fraud/3", "again")
            .await,
        Error::InvalidInput { .. }
    );
    reg.acting_as(bob.clone())
        .deprecate("fraud/1", "old")
        .await
        .expect("deprecate 1");
    assert_eq!(
        reg.resolve("fraud@latest").await.expect("latest").number,
        num(2)
    );
    reg.acting_as(bob.clone())
        .deprecate("fraud/2", "old")
        .await
        .expect("deprecate 2");
    assert_err!(reg.resolve("fraud@latest").await, Error::NotFound { .. });
    assert_err!(
        reg.acting_as(bob.clone()).deprecate("fraud/9", "x").await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.acting_as(bob.clone())
            .deprecate("fraud@latest", "x")
            .await,
        Error::NotFound { .. }
    );
    // create, 3 registrations, 3 deprecations: the failures appended nothing.
    assert_eq!(event_count(&reg, "fraud").await, 7);
}

/// Metrics added later are merged into the version's (a value it has is replaced);
/// non-finite values cannot even be built; an empty set or an unknown version is
/// rejected.
pub async fn metrics_are_merged(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let initial = Metrics::new()
        .with("auc", 0.5)
        .and_then(|m| m.with("eval/loss", 0.25))
        .expect("finite");
    let v1 = register_with(
        &reg,
        "fraud",
        "m.bin",
        "w",
        NewVersion::new().metrics(initial.clone()),
    )
    .await;
    assert_eq!(v1.metrics, initial);

    let later = Metrics::new()
        .with("auc", 0.75)
        .and_then(|m| m.with("f1@0.5", 0.125))
        .expect("finite");
    let eval = actor("eval-job");
    let v1 = reg
        .acting_as(eval.clone())
        .add_metrics("fraud/1", later)
        .await
        .expect("add metrics");
    let merged = Metrics::new()
        .with("auc", 0.75)
        .and_then(|m| m.with("eval/loss", 0.25))
        .and_then(|m| m.with("f1@0.5", 0.125))
        .expect("finite");
    assert_eq!(v1.metrics, merged);
    assert_eq!(
        reg.resolve("fraud/1").await.expect("resolve").metrics,
        merged
    );

    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_err!(Metrics::new().with("auc", bad), Error::InvalidInput { .. });
    }
    assert_err!(
        reg.acting_as(eval.clone())
            .add_metrics("fraud/1", Metrics::new())
            .await,
        Error::InvalidInput { .. }
    );
    let one = Metrics::new().with("auc", 0.5).expect("finite");
    assert_err!(
        reg.acting_as(eval.clone())
            .add_metrics("fraud/2", one.clone())
            .await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.acting_as(eval.clone())
            .add_metrics("fraud:9.0.0", one)
            .await,
        Error::NotFound { .. }
    );
    // The replaced value stays in the history.
    let history = reg.events("fraud").await.expect("events");
    let EventKind::VersionRegistered { version } = &history[1].kind else {
        panic!("event 2 is {:?}", history[1].kind);
    };
    assert_eq!(version.metrics.get("auc"), Some(0.5));
    // create, register, one metric addition: the failures appended nothing.
    assert_eq!(history.len(), 3);
}

/// `list_versions` applies each filter, and their conjunction, exactly.
pub async fn list_versions_filters(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let v = |semver: Option<&str>, t: &[(&str, &str)]| {
        let mut n = NewVersion::new();
        if let Some(s) = semver {
            n = n.semver(s);
        }
        for (k, val) in t {
            n = n.tag(k, *val);
        }
        n
    };
    // Registrations a few milliseconds apart have strictly increasing times.
    let gap = || tokio::time::sleep(Duration::from_millis(3));
    let v1 = register_with(
        &reg,
        "fraud",
        "m",
        "1",
        v(Some("1.0.0"), &[("dataset", "nov")]),
    )
    .await;
    gap().await;
    let v2 = register_with(
        &reg,
        "fraud",
        "m",
        "2",
        v(Some("1.2.0"), &[("dataset", "dec"), ("stage", "candidate")]),
    )
    .await;
    gap().await;
    let v3 = register_with(&reg, "fraud", "m", "3", v(Some("2.0.0"), &[])).await;
    gap().await;
    let v4 = register_with(&reg, "fraud", "m", "4", v(None, &[("dataset", "dec")])).await;
    assert!(v1.created_at < v2.created_at && v2.created_at < v3.created_at);
    assert!(v3.created_at < v4.created_at);
    reg.acting_as(actor("bob"))
        .deprecate("fraud/2", "superseded")
        .await
        .expect("deprecate");

    let all = VersionFilter::new;
    let l = |filter: VersionFilter| listed(&reg, "fraud", filter);
    assert_eq!(l(all()).await, vec![1, 2, 3, 4]);
    assert_eq!(l(all().tag("dataset")).await, vec![1, 2, 4]);
    assert_eq!(l(all().tag("stage")).await, vec![2]);
    assert_eq!(l(all().tag_value("dataset", "dec")).await, vec![2, 4]);
    assert_eq!(
        l(all().tag_value("dataset", "jan")).await,
        Vec::<u64>::new()
    );
    let both = all().tag("dataset").tag_value("stage", "candidate");
    assert_eq!(l(both).await, vec![2]);
    assert_eq!(l(all().semver("^1")).await, vec![1, 2]);
    assert_eq!(l(all().semver(">=1.1.0")).await, vec![2, 3]);
    assert_eq!(l(all().semver(">=3")).await, Vec::<u64>::new());
    assert_eq!(l(all().created_after(v2.created_at)).await, vec![2, 3, 4]);
    assert_eq!(l(all().created_before(v2.created_at)).await, vec![1]);
    assert_eq!(
        l(all()
            .created_after(v2.created_at)
            .created_before(v4.created_at))
        .await,
        vec![2, 3]
    );
    assert_eq!(l(all().exclude_deprecated()).await, vec![1, 3, 4]);
    let dec_live = all().tag_value("dataset", "dec").exclude_deprecated();
    assert_eq!(l(dec_live).await, vec![4]);

    // A listing is a snapshot: the records it returned are shared with the
    // registry, yet a later change does not show through them.
    let before = reg
        .list_versions("fraud", &all())
        .await
        .expect("list before");
    // Filters see tag changes.
    reg.acting_as(actor("bob"))
        .set_version_tags("fraud/3", tags(&[("dataset", "jan")]), vec![])
        .await
        .expect("tag");
    assert_eq!(l(all().tag_value("dataset", "jan")).await, vec![3]);
    let dataset = key("dataset");
    assert_eq!(before[2].tags.get(&dataset), None);
    assert_eq!(before[2].number, v3.number);
    let after = reg
        .list_versions("fraud", &all())
        .await
        .expect("list after");
    assert_eq!(after[2].tags.get(&dataset).map(String::as_str), Some("jan"));
    // Versions that did not change are the same records, not copies.
    assert!(std::sync::Arc::ptr_eq(&before[0], &after[0]));
    assert!(!std::sync::Arc::ptr_eq(&before[2], &after[2]));
}

/// The history lists every event, numbered 1..N, in order, with its actor and
/// kind, at non-decreasing times; replaying it gives the model's state.
pub async fn history_records_every_event_in_order(f: &Fixture) {
    let reg = f.registry();
    let (alice, ci, eval, bob, carol) = (
        actor("alice"),
        actor("ci"),
        actor("eval"),
        actor("bob"),
        actor("carol"),
    );
    reg.acting_as(alice.clone())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    register_bytes(&reg, "fraud", "m", "1").await;
    let m = Metrics::new().with("auc", 0.5).expect("finite");
    reg.acting_as(eval.clone())
        .add_metrics("fraud/1", m)
        .await
        .expect("metrics");
    reg.acting_as(bob.clone())
        .set_version_tags("fraud/1", tags(&[("stage", "prod")]), vec![])
        .await
        .expect("version tags");
    reg.acting_as(carol.clone())
        .set_model_tags("fraud", tags(&[("team", "risk")]), vec![])
        .await
        .expect("model tags");
    let specs = BTreeMap::from([(key("auc"), MetricSpec::maximize())]);
    reg.acting_as(alice.clone())
        .set_metric_specs("fraud", specs)
        .await
        .expect("specs");
    register_bytes(&reg, "fraud", "m", "2").await;
    reg.acting_as(bob.clone())
        .deprecate("fraud/1", "replaced")
        .await
        .expect("deprecate");

    let events = reg.events("fraud").await.expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "model_created",
            "version_registered",
            "metrics_added",
            "tags_set",
            "tags_set",
            "metric_specs_set",
            "version_registered",
            "version_deprecated",
        ]
    );
    let actors: Vec<&Actor> = events.iter().map(|e| &e.actor).collect();
    assert_eq!(
        actors,
        [&alice, &ci, &eval, &bob, &carol, &alice, &ci, &bob]
    );
    let versions: Vec<Option<u64>> = events
        .iter()
        .map(|e| e.kind.version().map(VersionNumber::get))
        .collect();
    assert_eq!(
        versions,
        [
            None,
            Some(1),
            Some(1),
            Some(1),
            None,
            None,
            Some(2),
            Some(1)
        ]
    );
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert!(events.iter().all(|e| e.model.as_str() == "fraud"));
    assert!(
        events.windows(2).all(|w| w[0].time <= w[1].time),
        "times go backwards: {:?}",
        events.iter().map(|e| e.time).collect::<Vec<_>>()
    );
    let state = reg.model("fraud").await.expect("model");
    assert_eq!(state.updated_at(), events[7].time);
    assert_eq!(ModelState::replay(events).expect("replay"), state);
}

// ----- provenance --------------------------------------------------------------------

/// Parents named in the provenance must exist (model and version); a missing one
/// is `InvalidInput` before anything is uploaded. An existing parent in another
/// model, or in the same one, is recorded as given.
pub async fn parents_must_exist(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "base").await;
    create(&reg, "fraud").await;
    register_bytes(&reg, "base", "m.bin", "base weights").await;
    let parent = |model: &str, n: u64| ParentRef {
        model: ModelName::new(model).expect("valid"),
        version: num(n),
        relation: Relation::FineTunedFrom,
    };
    let with_parent = |p: ParentRef| {
        NewVersion::new().provenance(Provenance {
            parents: vec![p],
            ..Provenance::default()
        })
    };
    let before = blobs(&reg).await;
    for missing in [parent("ghost", 1), parent("base", 2)] {
        let source = ArtifactSource::bytes("m.bin", "tuned").expect("valid path");
        assert_err!(
            reg.acting_as(actor("ci"))
                .register("fraud", source, with_parent(missing))
                .await,
            Error::InvalidInput { .. }
        );
    }
    assert_eq!(version_count(&reg, "fraud").await, 0);
    assert_eq!(blobs(&reg).await, before);

    let v1 = register_with(
        &reg,
        "fraud",
        "m.bin",
        "tuned",
        with_parent(parent("base", 1)),
    )
    .await;
    assert_eq!(v1.number, num(1));
    assert_eq!(v1.provenance.parents, vec![parent("base", 1)]);
    let v2 = register_with(
        &reg,
        "fraud",
        "m.bin",
        "tuned again",
        with_parent(parent("fraud", 1)),
    )
    .await;
    assert_eq!(v2.provenance.parents, vec![parent("fraud", 1)]);
    let seen = f.fresh().await.resolve("fraud/1").await.expect("resolve");
    assert_eq!(seen.provenance.parents, vec![parent("base", 1)]);
}

// ----- fetch and verify --------------------------------------------------------------

/// File sizes at the boundaries the code has; each comment names the boundary.
pub const INTERESTING_SIZES: &[usize] = &[
    0,                   // the empty file
    1,                   // one byte
    1024,                // exactly one BLAKE3 chunk
    1025,                // one byte into the second BLAKE3 chunk
    16 * 1024 + 1,       // past the size below which BLAKE3 reads a file instead of mapping it
    64 * 1024 - 1,       // largest chunk fetch and verify hash on the calling task
    64 * 1024,           // smallest chunk they hash on the blocking pool
    1024 * 1024,         // the largest file hashed in one read (src/hashing.rs SMALL_FILE)
    1024 * 1024 + 1,     // read in 1 MiB chunks, one full, one of a byte; hashed in windows
    2 * 1024 * 1024,     // an exact multiple of the read chunk: the stream must still end
    4 * 1024 * 1024 + 7, // three 2 MiB hashing windows, the last of 7 bytes
];

/// Files of every interesting size, registered from a directory (uploaded from
/// files) and from memory (uploaded as streams), fetch byte-identical and verify.
pub async fn interesting_sizes_round_trip(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "sizes").await;
    let files: Vec<(String, Vec<u8>)> = INTERESTING_SIZES
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("f{n:08}"), pattern(n, i as u8)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let total: u64 = INTERESTING_SIZES.iter().map(|&n| n as u64).sum();
    let src = f.scratch().join("src");
    write_tree(&src, &refs);
    let from_dir = reg
        .acting_as(actor("ci"))
        .register("sizes", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register dir");
    // `ArtifactSource::files` takes `&'static str` paths; built paths go through
    // the variant itself.
    let in_memory = files
        .iter()
        .map(|(p, b)| {
            let path = RelPath::new(format!("mem/{p}")).expect("valid path");
            (path, Bytes::from(b.clone()))
        })
        .collect();
    let from_memory = reg
        .acting_as(actor("ci"))
        .register("sizes", ArtifactSource::Bytes(in_memory), NewVersion::new())
        .await
        .expect("register bytes");
    for v in [&from_dir, &from_memory] {
        assert_eq!((v.files, v.size), (INTERESTING_SIZES.len() as u64, total));
        let r = format!("sizes/{}", v.number);
        let manifest = reg.manifest(r.as_str()).await.expect("manifest");
        for e in manifest.entries() {
            let name = e.path.as_str().trim_start_matches("mem/");
            let (_, bytes) = files
                .iter()
                .find(|(p, _)| p == name)
                .expect("a registered file");
            assert_eq!(e.sha256, Some(sha256(bytes)), "{r}: {}", e.path);
        }
        assert_eq!(
            reg.verify(r.as_str()).await.expect("verify"),
            VerifyReport {
                files: INTERESTING_SIZES.len() as u64,
                bytes: total,
            }
        );
        let dest = f.scratch().join(format!("out{}", v.number));
        reg.fetch(r.as_str(), &dest, FetchOptions::new())
            .await
            .expect("fetch");
        let fetched = read_tree(&dest);
        assert_eq!(fetched.len(), INTERESTING_SIZES.len());
        for (p, b) in &files {
            let key = if v.number == num(1) {
                p.clone()
            } else {
                format!("mem/{p}")
            };
            assert!(fetched.get(&key) == Some(b), "{r}: {key} differs");
        }
    }
}

/// Fetch writes byte-identical files into a new directory (creating its parent),
/// reports what it wrote, and leaves no staging directory behind.
pub async fn fetch_writes_identical_files(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let files = sample_files();
    let src = f.scratch().join("src");
    write_tree(&src, &as_refs(&files));
    let v1 = reg
        .acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register");

    let parent = f.scratch().join("downloads").join("nested");
    let dest = parent.join("fraud-v1");
    let report = reg
        .fetch("fraud/1", &dest, FetchOptions::new())
        .await
        .expect("fetch");
    assert_eq!(
        report,
        FetchReport {
            path: dest.clone(),
            files: 5,
            bytes: v1.size,
            linked: 0,
        }
    );
    assert_eq!(read_tree(&dest), tree(&as_refs(&files)));
    assert_eq!(entries(&parent), ["fraud-v1"]);

    // The same version again, by another reference, into a sibling.
    let again = parent.join("latest");
    reg.fetch("fraud@latest", &again, FetchOptions::new())
        .await
        .expect("fetch latest");
    assert_eq!(read_tree(&again), tree(&as_refs(&files)));
    assert_eq!(entries(&parent), ["fraud-v1", "latest"]);
    assert!(staging_dirs(&parent).is_empty());
}

/// Every link mode fetches the same verified files. Hard links are used exactly
/// where the backend can make them; a copy is independent of the store, so
/// changing it leaves the version verifying.
pub async fn fetch_with_every_link_mode(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let weights = pattern(9_000, 5);
    let files: [(&str, &[u8]); 2] = [("weights.bin", &weights), ("config.json", b"{}")];
    let source = ArtifactSource::files(files.map(|(p, b)| (p, b.to_vec()))).expect("valid paths");
    reg.acting_as(actor("ci"))
        .register("fraud", source, NewVersion::new())
        .await
        .expect("register");

    let parent = f.scratch().join("out");
    for (mode, name) in [
        (LinkMode::Copy, "copy"),
        (LinkMode::Reflink, "reflink"),
        (LinkMode::HardLink, "hardlink"),
    ] {
        let dest = parent.join(name);
        let report = reg
            .fetch("fraud/1", &dest, FetchOptions::new().link(mode))
            .await
            .unwrap_or_else(|e| panic!("fetch with {mode:?}: {e}"));
        assert_eq!((report.files, report.bytes), (2, 9_002), "{mode:?}");
        assert_eq!(read_tree(&dest), tree(&files), "{mode:?}");
        match mode {
            LinkMode::Copy => assert_eq!(report.linked, 0),
            LinkMode::HardLink => {
                assert_eq!(report.linked, if f.hard_links { 2 } else { 0 });
            }
            // Reflinks depend on the filesystem: all or nothing.
            _ => assert!(report.linked == 0 || report.linked == 2, "{report:?}"),
        }
    }
    assert_eq!(entries(&parent), ["copy", "hardlink", "reflink"]);

    let copy = parent.join("copy").join("weights.bin");
    let mut perms = std::fs::metadata(&copy).expect("stat").permissions();
    #[allow(clippy::permissions_set_readonly_false)] // our own scratch file
    perms.set_readonly(false);
    std::fs::set_permissions(&copy, perms).expect("chmod");
    std::fs::write(&copy, b"scribbled").expect("overwrite the copy");
    reg.verify("fraud/1")
        .await
        .expect("the store is unaffected");
}

/// Fetch refuses a destination that is a non-empty directory or a file with
/// `AlreadyExists`, and leaves it exactly as it was.
pub async fn fetch_refuses_an_occupied_destination(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    register_bytes(&reg, "fraud", "m.bin", "weights").await;

    let parent = f.scratch().join("out");
    let dest = parent.join("occupied");
    write_tree(&dest, &[("keep.txt", b"mine")]);
    assert_err!(
        reg.fetch("fraud/1", &dest, FetchOptions::new()).await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(read_tree(&dest), tree(&[("keep.txt", b"mine")]));

    let file = parent.join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    assert_err!(
        reg.fetch("fraud/1", &file, FetchOptions::new()).await,
        Error::AlreadyExists { .. }
    );
    assert_eq!(std::fs::read(&file).expect("read"), b"not a directory");
    assert_eq!(entries(&parent), ["a-file", "occupied"]);
}

/// Fetch into an existing empty directory fills it.
pub async fn fetch_into_an_existing_empty_directory(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let source = ArtifactSource::files([("a/b.bin", &b"deep"[..]), ("c.txt", &b"top"[..])])
        .expect("valid paths");
    reg.acting_as(actor("ci"))
        .register("fraud", source, NewVersion::new())
        .await
        .expect("register");
    let parent = f.scratch().join("out");
    let dest = parent.join("empty");
    std::fs::create_dir_all(&dest).expect("mkdir");
    let report = reg
        .fetch("fraud/1", &dest, FetchOptions::new())
        .await
        .expect("fetch");
    assert_eq!((report.files, report.bytes), (2, 7));
    assert_eq!(
        read_tree(&dest),
        tree(&[("a/b.bin", b"deep"), ("c.txt", b"top")])
    );
    assert_eq!(entries(&parent), ["empty"]);
}

/// A blob whose bytes changed in the store fails `fetch` and `verify` with
/// `Integrity` naming the file; the failed fetch leaves no destination and no
/// staging directory, and an empty destination directory stays empty. Versions
/// that do not use the blob still verify.
pub async fn corrupt_blob_fails_fetch_and_verify(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let weights = pattern(4_096, 7);
    let source = ArtifactSource::files([
        ("weights.bin", weights.clone()),
        ("config.json", b"{}".to_vec()),
    ])
    .expect("valid paths");
    reg.acting_as(actor("ci"))
        .register("fraud", source, NewVersion::new())
        .await
        .expect("register");
    register_bytes(&reg, "fraud", "other.bin", "intact").await;
    assert_eq!(
        reg.verify("fraud/1").await.expect("verify"),
        VerifyReport {
            files: 2,
            bytes: 4_098,
        }
    );

    let target = digest(&weights);
    let mut rotten = weights.clone();
    rotten[2_000] ^= 0x01;
    f.corrupt_blob(&target, &rotten);

    let parent = f.scratch().join("out");
    std::fs::create_dir_all(&parent).expect("mkdir");
    let dest = parent.join("v1");
    let e = assert_err!(
        reg.fetch("fraud/1", &dest, FetchOptions::new()).await,
        Error::Integrity { .. }
    );
    let Error::Integrity {
        what,
        expected,
        actual,
        location,
    } = &e
    else {
        unreachable!()
    };
    assert!(what.contains("weights.bin"), "{e}");
    assert_eq!((*expected, *actual), (target, digest(&rotten)));
    // Names where the rotten blob is stored, as its store says.
    let stored_at = reg.artifact_store().location(&target);
    assert_eq!(location.as_deref(), Some(stored_at.as_str()), "{e}");
    assert!(!dest.exists(), "a failed fetch left {}", dest.display());
    assert_eq!(entries(&parent), Vec::<String>::new());

    let empty = parent.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    assert_err!(
        reg.fetch("fraud/1", &empty, FetchOptions::new()).await,
        Error::Integrity { .. }
    );
    assert_eq!(entries(&empty), Vec::<String>::new());
    assert_eq!(entries(&parent), ["empty"]);

    let e = assert_err!(reg.verify("fraud/1").await, Error::Integrity { .. });
    let Error::Integrity {
        what,
        expected,
        actual,
        location,
    } = &e
    else {
        unreachable!()
    };
    assert!(what.contains("weights.bin"), "{e}");
    assert_eq!((*expected, *actual), (target, digest(&rotten)));
    // Names where the rotten blob is stored, as its store says.
    let stored_at = reg.artifact_store().location(&target);
    assert_eq!(location.as_deref(), Some(stored_at.as_str()), "{e}");

    let v2 = reg.resolve("fraud/2").await.expect("resolve");
    assert_eq!(
        reg.verify("fraud/2").await.expect("verify"),
        VerifyReport { files: 1, bytes: 6 }
    );

    // A corrupt manifest is caught before any file is written.
    f.corrupt_blob(&v2.artifact, br#"{"format":1,"files":[]}"#);
    for e in [
        assert_err!(reg.manifest("fraud/2").await, Error::Integrity { .. }),
        assert_err!(reg.verify("fraud/2").await, Error::Integrity { .. }),
        assert_err!(
            reg.fetch("fraud/2", parent.join("v2"), FetchOptions::new())
                .await,
            Error::Integrity { .. }
        ),
    ] {
        assert!(e.to_string().contains("manifest"), "{e}");
    }
    assert_eq!(entries(&parent), ["empty"]);
}

/// A blob missing from the store makes `fetch` and `verify` fail with `NotFound`
/// naming the file, leaving nothing behind; a missing manifest is `NotFound` too.
pub async fn missing_blob_is_not_found(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let source = ArtifactSource::files([("weights.bin", &b"w"[..]), ("config.json", &b"{}"[..])])
        .expect("valid paths");
    let v1 = reg
        .acting_as(actor("ci"))
        .register("fraud", source, NewVersion::new())
        .await
        .expect("register");
    reg.artifact_store()
        .delete(&digest(b"w"))
        .await
        .expect("delete");

    let parent = f.scratch().join("out");
    std::fs::create_dir_all(&parent).expect("mkdir");
    let e = assert_err!(
        reg.fetch("fraud/1", parent.join("v1"), FetchOptions::new())
            .await,
        Error::NotFound { .. }
    );
    assert!(e.to_string().contains("weights.bin"), "{e}");
    assert_eq!(entries(&parent), Vec::<String>::new());
    let e = assert_err!(reg.verify("fraud/1").await, Error::NotFound { .. });
    assert!(e.to_string().contains("weights.bin"), "{e}");

    reg.artifact_store()
        .delete(&v1.artifact)
        .await
        .expect("delete");
    // This registry verified the manifest before and keeps it (it is immutable);
    // `verify` reads the store again and reports the missing blob, and so does
    // every registry that had not read it yet.
    assert_eq!(
        reg.manifest("fraud/1").await.expect("kept manifest").len(),
        2
    );
    assert_err!(reg.verify("fraud/1").await, Error::NotFound { .. });
    let other = f.fresh().await;
    assert_err!(other.manifest("fraud/1").await, Error::NotFound { .. });
    assert_err!(
        other
            .fetch("fraud/1", parent.join("v1"), FetchOptions::new())
            .await,
        Error::NotFound { .. }
    );
    assert_err!(other.verify("fraud/1").await, Error::NotFound { .. });
    assert_eq!(entries(&parent), Vec::<String>::new());
}

// ----- consistency -------------------------------------------------------------------

/// A registry sees its own writes at once, and another registry over the same
/// stores sees them on its next read, without `clear_cache`, in both directions.
pub async fn writes_are_visible_across_handles(f: &Fixture) {
    let a = f.registry();
    let b = f.fresh().await;
    create(&a, "fraud").await;
    // b folds the log now, so it has a cached state that a's writes make stale.
    assert_eq!(version_count(&b, "fraud").await, 0);

    let v1 = register_bytes(&a, "fraud", "m.bin", "one").await;
    assert_eq!(a.resolve("fraud@latest").await.expect("own write"), v1);
    assert_eq!(b.resolve("fraud@latest").await.expect("other's write"), v1);

    let m = Metrics::new()
        .with("auc", 0.5)
        .and_then(|m| m.with("loss", 0.125))
        .expect("finite");
    let v1 = b
        .acting_as(actor("eval"))
        .add_metrics("fraud/1", m)
        .await
        .expect("metrics");
    assert_eq!(a.resolve("fraud/1").await.expect("resolve"), v1);

    let v2 = register_bytes(&b, "fraud", "m.bin", "two").await;
    assert_eq!(v2.number, num(2));
    let v3 = register_bytes(&a, "fraud", "m.bin", "three").await;
    assert_eq!(v3.number, num(3));
    a.acting_as(actor("bob"))
        .deprecate("fraud/3", "bad")
        .await
        .expect("deprecate");
    assert_eq!(b.resolve("fraud@latest").await.expect("latest"), v2);
    assert_eq!(
        a.model("fraud").await.expect("model"),
        b.model("fraud").await.expect("model")
    );
    create(&b, "churn").await;
    assert_eq!(a.list_models().await.expect("list").len(), 2);
    assert_eq!(a.model("churn").await.expect("model").seq(), 1);
}

/// Float values (metrics, tolerances, hyperparameters) read back by another
/// registry are bit-for-bit the values written. Each value below is printed by
/// serde_json's shortest round-trip formatting and then parsed back one ULP off
/// unless exact float parsing is on.
pub async fn float_values_survive_storage_exactly(f: &Fixture) {
    let values = [
        ("auc", 0.938_357_243_529_977_3),
        ("latency_ms", 120.248_387_963_306_97),
        ("lr_found", 0.000_903_927_550_422_657_3),
        ("tokens", 901_698_079.733_812_7),
    ];
    let reg = f.registry();
    let spec = MetricSpec::maximize().with_tolerance(values[0].1);
    reg.acting_as(actor("alice"))
        .create_model("fraud", CreateModel::new().metric("auc", spec))
        .await
        .expect("create");
    let mut metrics = Metrics::new();
    for (name, value) in values {
        metrics = metrics.with(name, value).expect("finite");
    }
    let provenance = Provenance {
        hyperparameters: BTreeMap::from([("lr".to_owned(), HyperValue::Float(values[1].1))]).into(),
        ..Provenance::default()
    };
    let written = register_with(
        &reg,
        "fraud",
        "m.bin",
        "w",
        NewVersion::new().metrics(metrics).provenance(provenance),
    )
    .await;

    let read = f.fresh().await.resolve("fraud/1").await.expect("resolve");
    for (name, value) in values {
        let got = read.metrics.get(name).expect("metric present");
        assert_eq!(
            got.to_bits(),
            value.to_bits(),
            "{name}: wrote {value:?}, read {got:?}"
        );
    }
    assert_eq!(
        read.provenance.hyperparameters.get("lr"),
        Some(&HyperValue::Float(values[1].1))
    );
    assert_eq!(read, written);
    let fresh_state = f.fresh().await.model("fraud").await.expect("model");
    assert_eq!(fresh_state.metric_specs()[&key("auc")], spec);
    assert_eq!(fresh_state, reg.model("fraud").await.expect("model"));
}

/// With a checkpoint every 3 events, the checkpoint covers event 9 of 10; a cold
/// registry (from the checkpoint) and one that clears its cache fold to exactly the
/// state a replay of the whole history gives, and keep working from there.
pub async fn checkpoints_fold_to_the_same_state(f: &Fixture) {
    let reg = f.registry_with(|b| b.checkpoint_every(3));
    let who = actor("alice");
    create(&reg, "fraud").await; // 1
    for i in 0..4 {
        register_bytes(&reg, "fraud", "m.bin", format!("weights {i}")).await; // 2..=5
    }
    let m = |v: f64| Metrics::new().with("auc", v).expect("finite");
    reg.acting_as(who.clone())
        .add_metrics("fraud/1", m(0.5))
        .await
        .expect("metrics"); // 6
    reg.acting_as(who.clone())
        .add_metrics("fraud/2", m(0.75))
        .await
        .expect("metrics"); // 7
    reg.acting_as(who.clone())
        .set_version_tags("fraud/3", tags(&[("stage", "prod")]), vec![])
        .await
        .expect("tags"); // 8
    reg.acting_as(who.clone())
        .deprecate("fraud/1", "old")
        .await
        .expect("deprecate"); // 9
    reg.acting_as(who.clone())
        .set_model_tags("fraud", tags(&[("team", "risk")]), vec![])
        .await
        .expect("model tags"); // 10

    let history = reg.events("fraud").await.expect("events");
    assert_eq!(history.len(), 10);
    let replayed = ModelState::replay(history.clone()).expect("replay");
    assert_eq!(reg.model("fraud").await.expect("model"), replayed);

    let name = ModelName::new("fraud").expect("valid");
    let cp = reg
        .metadata_store()
        .latest_checkpoint("fraud")
        .await
        .expect("read checkpoint")
        .expect("a checkpoint was written");
    assert_eq!(cp.seq, 9);
    let at_nine = ModelState::replay(history[..9].to_vec()).expect("replay");
    assert_eq!(
        decode_checkpoint(&name, 9, &cp.bytes).expect("decodes"),
        at_nine
    );

    let cold = f.fresh().await;
    assert_eq!(cold.model("fraud").await.expect("model"), replayed);
    reg.clear_cache();
    assert_eq!(reg.model("fraud").await.expect("model"), replayed);
    let no_checkpoints = f.registry_with(|b| b.checkpoint_every(0));
    assert_eq!(
        no_checkpoints.model("fraud").await.expect("model"),
        replayed
    );

    // A registry that started from the checkpoint writes on top of it correctly.
    let v5 = register_bytes(&cold, "fraud", "m.bin", "weights 4").await;
    assert_eq!(v5.number, num(5));
    let history = reg.events("fraud").await.expect("events");
    assert_eq!(history.len(), 11);
    let replayed = ModelState::replay(history).expect("replay");
    assert_eq!(reg.model("fraud").await.expect("model"), replayed);
    assert_eq!(
        f.fresh().await.model("fraud").await.expect("model"),
        replayed
    );
}

/// A fresh registry over the same stores sees every model, version, event and
/// byte written by another.
pub async fn reopened_registry_sees_everything(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    create(&reg, "churn").await;
    let files = sample_files();
    let src = f.scratch().join("src");
    write_tree(&src, &as_refs(&files));
    reg.acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register");
    register_bytes(&reg, "fraud", "m.bin", "two").await;
    register_bytes(&reg, "churn", "m.bin", "one").await;
    let state = reg.model("fraud").await.expect("model");
    let history = reg.events("fraud").await.expect("events");
    drop(reg);

    let reopened = f.fresh().await;
    assert_eq!(reopened.list_models().await.expect("list").len(), 2);
    assert_eq!(reopened.model("fraud").await.expect("model"), state);
    assert_eq!(reopened.events("fraud").await.expect("events"), history);
    assert_eq!(version_count(&reopened, "churn").await, 1);
    let dest = f.scratch().join("out");
    reopened
        .fetch("fraud/1", &dest, FetchOptions::new())
        .await
        .expect("fetch");
    assert_eq!(read_tree(&dest), tree(&as_refs(&files)));
    reopened.verify("fraud/2").await.expect("verify");
}

// ----- concurrency -----------------------------------------------------------------

/// Runs `per_task` registrations in each of `tasks` tasks, task `t` using
/// `registries[t % len]`, all on model `concurrent`; then checks that the numbers
/// are exactly 1..=N, that each payload is the version its registration returned,
/// and that every version verifies.
async fn concurrent_registrations(registries: Vec<Registry>, tasks: usize, per_task: usize) {
    let reg = registries[0].clone();
    create(&reg, "concurrent").await;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let r = registries[t % registries.len()].clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..per_task {
                let payload = format!("task {t} item {i}");
                let v = register_bytes(&r, "concurrent", "payload.bin", payload.clone()).await;
                got.push((payload, v));
            }
            got
        }));
    }
    let mut by_payload = BTreeMap::new();
    for h in handles {
        for (payload, v) in h.await.expect("task did not panic") {
            by_payload.insert(payload, v);
        }
    }
    let total = tasks * per_task;
    assert_eq!(by_payload.len(), total);
    let mut returned: Vec<u64> = by_payload.values().map(|v| v.number.get()).collect();
    returned.sort_unstable();
    assert_eq!(returned, (1..=total as u64).collect::<Vec<_>>());

    let versions = reg
        .list_versions("concurrent", &VersionFilter::new())
        .await
        .expect("list");
    assert_eq!(numbers(&versions), (1..=total as u64).collect::<Vec<_>>());
    for (payload, v) in &by_payload {
        let stored = &*versions[(v.number.get() - 1) as usize];
        assert_eq!(stored, v, "{payload}");
        let manifest = reg
            .manifest(VersionRef::number(
                ModelName::new("concurrent").expect("valid"),
                v.number,
            ))
            .await
            .expect("manifest");
        assert_eq!(
            entry_triples(manifest.entries()),
            expected_entries(&[("payload.bin", payload.as_bytes())]),
            "version {}",
            v.number
        );
        let report = reg
            .verify(format!("concurrent/{}", v.number))
            .await
            .expect("verify");
        assert_eq!(report.files, 1);
    }
    let history = reg.events("concurrent").await.expect("events");
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=total as u64 + 1).collect::<Vec<_>>()
    );
}

/// 8 tasks × 5 registrations on clones of one registry: numbers 1..=40, no gaps
/// or duplicates.
pub async fn concurrent_writers_on_clones(f: &Fixture) {
    concurrent_registrations(vec![f.registry()], 8, 5).await;
}

/// 8 tasks × 5 registrations spread over 4 registries that share only the stores,
/// so writers race for log positions and must retry.
pub async fn concurrent_writers_on_separate_registries(f: &Fixture) {
    let mut registries = Vec::new();
    for _ in 0..4 {
        registries.push(f.fresh().await);
    }
    concurrent_registrations(registries, 8, 5).await;
}

// ----- hostile input -----------------------------------------------------------------

/// In-memory paths that could escape a fetch directory are `InvalidPath` when the
/// source is built; duplicates, case collisions and file-versus-directory clashes
/// are `InvalidPath` at registration, which registers and stores nothing.
pub async fn hostile_in_memory_paths_are_rejected(f: &Fixture) {
    for bad in [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "a\0b",
        "",
        "a//b",
        "./a",
        "a/",
        "a\\b",
        "C:/x",
    ] {
        assert_err!(ArtifactSource::bytes(bad, "x"), Error::InvalidPath { .. });
    }
    assert_err!(
        ArtifactSource::files([("ok.bin", "x"), ("../evil", "y")]),
        Error::InvalidPath { .. }
    );

    let reg = f.registry();
    create(&reg, "fraud").await;
    let blobs_before = blobs(&reg).await;
    let clashes: [[(&'static str, &'static str); 2]; 3] = [
        [("model.bin", "a"), ("model.bin", "b")],
        [("Model.bin", "a"), ("model.bin", "b")],
        [("a", "file"), ("a/b", "nested")],
    ];
    for files in clashes {
        let source = ArtifactSource::files(files).expect("each path is valid on its own");
        let e = assert_err!(
            reg.acting_as(actor("ci"))
                .register("fraud", source, NewVersion::new())
                .await,
            Error::InvalidPath { .. }
        );
        assert!(
            e.to_string().contains("model.bin") || e.to_string().contains("a/b"),
            "{e}"
        );
    }
    assert_eq!(version_count(&reg, "fraud").await, 0);
    assert_eq!(event_count(&reg, "fraud").await, 1);
    // Paths are checked before any byte moves: a rejected source stores nothing.
    assert_eq!(blobs(&reg).await, blobs_before);
}

// ----- lineage, comparison and metric history ------------------------------------------

use modelreg::{
    CodeRef, DatasetKey, DatasetRef, DatasetRole, Environment, LineageNode, LineageSubgraph,
    MetricVerdict, OverallVerdict, VersionKey,
};

/// Version `n` of `model` as a lineage key.
pub fn vkey(model: &str, n: u64) -> VersionKey {
    VersionKey::new(ModelName::new(model).expect("valid model"), num(n))
}

/// A parent reference.
pub fn parent_ref(model: &str, n: u64, relation: Relation) -> ParentRef {
    ParentRef {
        model: ModelName::new(model).expect("valid model"),
        version: num(n),
        relation,
    }
}

/// The nodes a query reached (origin left out) as `(label, depth)`, sorted.
pub fn reached(s: &LineageSubgraph) -> Vec<(String, usize)> {
    let mut v: Vec<_> = s.nodes()[1..]
        .iter()
        .map(|n| (n.node.to_string(), n.depth))
        .collect();
    v.sort();
    v
}

/// Registers the lineage the lineage tests share:
///
/// ```text
///  clicks@v3 ─train─▶ base/1 ◀─eval─ holdout@v1      commit abc ─▶ base/1
///                        │ fine_tuned_from
///  labels@v2 ─train─▶ fraud/1 ──fine_tuned_from──▶ fraud/2
///                        └──────distilled_from───▶ other/1 ◀─train─ clicks@v3
///  views ─train─▶ solo/1
/// ```
pub async fn register_lineage(reg: &Registry) {
    for m in ["base", "fraud", "other", "solo"] {
        create(reg, m).await;
    }
    let with = |datasets: Vec<DatasetRef>, parents: Vec<ParentRef>, code: Option<&str>| {
        NewVersion::new().provenance(Provenance {
            datasets,
            parents,
            code: code.map(|c| CodeRef {
                repository: Some("git@example.com:ml/train.git".into()),
                commit: c.into(),
                dirty: false,
            }),
            ..Provenance::default()
        })
    };
    let clicks = DatasetRef::new("clicks", DatasetRole::Train)
        .version("v3")
        .uri("s3://data/clicks/v3");
    let holdout = DatasetRef::new("holdout", DatasetRole::Eval).version("v1");
    let labels = DatasetRef::new("labels", DatasetRole::Train).version("v2");
    let views = DatasetRef::new("views", DatasetRole::Train);
    let ft = Relation::FineTunedFrom;
    register_with(
        reg,
        "base",
        "m.bin",
        "base",
        with(vec![clicks.clone(), holdout], vec![], Some("abc")),
    )
    .await;
    register_with(
        reg,
        "fraud",
        "m.bin",
        "fraud 1",
        with(vec![labels], vec![parent_ref("base", 1, ft)], None),
    )
    .await;
    register_with(
        reg,
        "fraud",
        "m.bin",
        "fraud 2",
        with(vec![], vec![parent_ref("fraud", 1, ft)], None),
    )
    .await;
    register_with(
        reg,
        "other",
        "m.bin",
        "other",
        with(
            vec![clicks],
            vec![parent_ref("fraud", 1, Relation::DistilledFrom)],
            None,
        ),
    )
    .await;
    register_with(
        reg,
        "solo",
        "m.bin",
        "solo",
        with(vec![views], vec![], None),
    )
    .await;
}

/// The lineage graph is kept while no model changes: asking again hands back
/// the same graph. Any change shows at once, whoever makes it: a new version
/// with a new dataset (this registry), a stage change (its record in the graph
/// is the new one), a new model, and a version another registry registers.
pub async fn lineage_graph_is_kept_until_a_model_changes(f: &Fixture) {
    let reg = f.registry();
    register_lineage(&reg).await;
    let first = reg.lineage().await.expect("lineage");
    assert_eq!(first.len(), 10);
    let again = reg.lineage().await.expect("lineage");
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "nothing changed: the same graph"
    );

    let fresh_data = DatasetRef::new("fresh", DatasetRole::Train).version("v1");
    let v = reg
        .acting_as(actor("alice"))
        .register(
            "solo",
            ArtifactSource::bytes("m.bin", "solo 2").expect("source"),
            NewVersion::new().dataset(fresh_data.clone()),
        )
        .await
        .expect("register")
        .version;
    let fresh = LineageNode::Dataset(DatasetKey::from(&fresh_data));
    let graph = reg.lineage().await.expect("lineage");
    assert!(!first.contains(&fresh));
    assert!(graph.contains(&fresh), "the new dataset is in the graph");
    assert_eq!(
        reached(&graph.downstream(&fresh, None).expect("downstream")),
        [("solo/2".to_owned(), 1)]
    );

    reg.acting_as(actor("alice"))
        .transition("solo/2", modelreg::Stage::Staging, "try")
        .await
        .expect("transition");
    let staged = reg.lineage().await.expect("lineage");
    assert_eq!(
        staged
            .record(&vkey("solo", v.number.get()))
            .map(|r| r.stage),
        Some(modelreg::Stage::Staging),
        "the record in the graph is the current one"
    );

    create(&reg, "late").await;
    register_with(
        &reg,
        "late",
        "m.bin",
        "late",
        NewVersion::new().parent("solo/2", Relation::FineTunedFrom),
    )
    .await;
    let with_late = reg.lineage().await.expect("lineage");
    assert!(with_late.record(&vkey("late", 1)).is_some());

    // Another process's registration is seen by this registry's next ask.
    let other = f.fresh().await;
    register_with(
        &other,
        "late",
        "m.bin",
        "late 2",
        NewVersion::new().dataset(fresh_data.clone()),
    )
    .await;
    let seen = reg.lineage().await.expect("lineage");
    assert!(!std::sync::Arc::ptr_eq(&with_late, &seen));
    assert_eq!(
        reached(&seen.downstream(&fresh, None).expect("downstream")),
        [
            ("late/1".to_owned(), 2),
            ("late/2".to_owned(), 1),
            ("solo/2".to_owned(), 1),
        ]
    );
}

/// Lineage spans models: downstream of a dataset finds every version built on it
/// directly or through parents in other models (each with its record), upstream
/// finds parents, their datasets and code, depths limit both, and a path joins
/// two versions. Another registry over the same stores sees the same graph.
pub async fn lineage_spans_models_datasets_and_code(f: &Fixture) {
    let reg = f.registry();
    register_lineage(&reg).await;

    let graph = reg.lineage().await.expect("lineage");
    // 5 versions, 4 datasets, 1 commit.
    assert_eq!(graph.len(), 10);
    assert_eq!(graph.find_cycle(), None);
    assert_eq!(graph.edges().count(), 9);

    let clicks = DatasetKey::new("clicks").version("v3");
    let hit = reg.downstream(&clicks, None).await.expect("downstream");
    let want: Vec<(String, usize)> = [
        ("base/1", 1),
        ("fraud/1", 2),
        ("fraud/2", 3),
        ("other/1", 1),
    ]
    .iter()
    .map(|(k, d)| ((*k).to_owned(), *d))
    .collect();
    assert_eq!(
        reached(&hit),
        want,
        "other/1 uses clicks directly and by descent"
    );
    for v in hit.versions() {
        let key = v.version().expect("a version");
        let record = v
            .record
            .as_deref()
            .expect("affected versions carry their record");
        assert_eq!(*record, reg.resolve(key.to_ref()).await.expect("resolve"));
    }
    let again = f
        .fresh()
        .await
        .downstream(&clicks, None)
        .await
        .expect("downstream");
    assert_eq!(reached(&again), want);
    assert_eq!(
        reached(&reg.downstream(&clicks, Some(1)).await.expect("depth 1")).len(),
        2
    );
    assert_eq!(
        reached(
            &reg.downstream("fraud/1", None)
                .await
                .expect("from a version")
        ),
        [("fraud/2".to_owned(), 1), ("other/1".to_owned(), 1)]
    );
    assert_eq!(
        reached(&reg.downstream("solo@latest", None).await.expect("leaf")),
        []
    );

    let up = reg.upstream("other@latest", None).await.expect("upstream");
    assert_eq!(
        reached(&up),
        [
            ("base/1".to_owned(), 2),
            ("clicks@v3".to_owned(), 1),
            ("fraud/1".to_owned(), 1),
            ("git@example.com:ml/train.git@abc".to_owned(), 3),
            ("holdout@v1".to_owned(), 3),
            ("labels@v2".to_owned(), 2),
        ]
    );
    assert_eq!(up.origin().node, LineageNode::Version(vkey("other", 1)));
    assert_eq!(
        reached(&reg.upstream("other/1", Some(1)).await.expect("depth 1")),
        [("clicks@v3".to_owned(), 1), ("fraud/1".to_owned(), 1)]
    );
    // The upstream walk reads only ancestors; the full graph agrees with it.
    assert_eq!(
        reached(&graph.upstream(&vkey("other", 1), None).expect("upstream")),
        reached(&up)
    );

    let path = reg
        .lineage_path("other/1", "base/1")
        .await
        .expect("path")
        .expect("base/1 is an ancestor of other/1");
    assert_eq!(
        (path.ancestor.clone(), path.descendant.clone()),
        (vkey("base", 1), vkey("other", 1))
    );
    assert_eq!(
        path.steps
            .iter()
            .map(|s| (s.child.to_string(), s.relation))
            .collect::<Vec<_>>(),
        [
            ("fraud/1".to_owned(), Relation::FineTunedFrom),
            ("other/1".to_owned(), Relation::DistilledFrom)
        ]
    );
    assert_eq!(
        reg.lineage_path("other/1", "fraud/2").await.expect("path"),
        None
    );
    assert_eq!(
        reg.lineage_path("solo/1", "base/1").await.expect("path"),
        None
    );

    let mermaid = hit.to_mermaid();
    assert!(
        mermaid.starts_with("flowchart LR\n  n0[(\"clicks@v3\")]\n"),
        "{mermaid}"
    );
    assert!(
        hit.to_dot()
            .contains("n0 [label=\"clicks@v3\", shape=cylinder];")
    );

    assert_err!(
        reg.downstream(DatasetKey::new("clicks"), None).await,
        Error::NotFound { .. }
    );
    assert_err!(reg.upstream("ghost/1", None).await, Error::NotFound { .. });
    assert_err!(reg.upstream("fraud/3", None).await, Error::NotFound { .. });
    assert_err!(
        reg.lineage_path("fraud/1", "fraud/9").await,
        Error::NotFound { .. }
    );
}

/// A version cannot be its own parent, nor name one that does not exist yet (so
/// no registration can close a cycle); a rejected registration uploads nothing.
pub async fn lineage_rejects_self_and_future_parents(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let with_parent = |n: u64| {
        NewVersion::new().provenance(Provenance {
            parents: vec![parent_ref("fraud", n, Relation::RetrainedFrom)],
            ..Provenance::default()
        })
    };
    let before = blobs(&reg).await;
    let source = || ArtifactSource::bytes("m.bin", "own parent").expect("valid path");
    // Version 1 naming itself.
    assert_err!(
        reg.acting_as(actor("ci"))
            .register("fraud", source(), with_parent(1))
            .await,
        Error::InvalidInput { .. }
    );
    register_bytes(&reg, "fraud", "m.bin", "v1").await;
    let before_v2 = blobs(&reg).await;
    assert_ne!(before, before_v2);
    // Version 2 naming itself, and naming version 3.
    for n in [2, 3] {
        assert_err!(
            reg.acting_as(actor("ci"))
                .register("fraud", source(), with_parent(n))
                .await,
            Error::InvalidInput { .. }
        );
    }
    assert_eq!(blobs(&reg).await, before_v2);
    register_with(&reg, "fraud", "m.bin", "v2", with_parent(1)).await;
    let graph = reg.lineage().await.expect("lineage");
    assert_eq!(graph.find_cycle(), None);
    assert_eq!(version_count(&reg, "fraud").await, 2);
}

/// `compare` reports metrics with their verdicts (goals, tolerance, no spec, one
/// side only), hyperparameters with dotted keys, environment, datasets, code and
/// files with the bytes b shares with a; across models b's specs come first and
/// a's fill in; another registry computes the same diff.
pub async fn compare_reports_every_difference(f: &Fixture) {
    let reg = f.registry();
    reg.acting_as(actor("alice"))
        .create_model(
            "fraud",
            CreateModel::new()
                .metric("auc", MetricSpec::maximize().with_tolerance(0.005))
                .metric("loss", MetricSpec::minimize())
                .metric("latency_ms", MetricSpec::minimize().with_tolerance(1.0)),
        )
        .await
        .expect("create");
    let scratch = f.scratch();
    let (model_a, model_b) = (pattern(4096, 1), pattern(4096, 9));
    let (tokenizer, adapter) = (pattern(1000, 2), pattern(512, 3));
    let config: &[u8] = br#"{"layers":2}"#;
    write_tree(
        &scratch.join("a"),
        &[
            ("config.json", config),
            ("model.bin", &model_a),
            ("tokenizer.json", &tokenizer),
            ("notes.txt", b"v1 notes"),
        ],
    );
    write_tree(
        &scratch.join("b"),
        &[
            ("config.json", config),
            ("model.bin", &model_b),
            ("tokenizer.json", &tokenizer),
            ("adapter.bin", &adapter),
            ("copy/model-v1.bin", &model_a),
        ],
    );
    let hp = |json: &str| serde_json::from_str(json).expect("hyperparameters");
    let metrics = |pairs: &[(&str, f64)]| {
        pairs
            .iter()
            .try_fold(Metrics::new(), |m, (k, v)| m.with(k, *v))
            .expect("finite")
    };
    let code = |c: &str| {
        Some(CodeRef {
            repository: None,
            commit: c.into(),
            dirty: false,
        })
    };
    let a = NewVersion::new()
        .semver("1.0.0")
        .metrics(metrics(&[
            ("auc", 0.90),
            ("loss", 0.30),
            ("latency_ms", 12.0),
            ("f1", 0.5),
        ]))
        .provenance(Provenance {
            hyperparameters: hp(
                r#"{"optimizer":{"name":"adam","lr":0.001},"epochs":3,"dropout":0.1}"#,
            ),
            environment: Environment::default()
                .with_framework("torch", "2.3.0")
                .into(),
            datasets: vec![
                DatasetRef::new("clicks", DatasetRole::Train).version("v3"),
                DatasetRef::new("holdout", DatasetRole::Eval).version("v1"),
            ],
            code: code("aaa"),
            ..Provenance::default()
        });
    let b = NewVersion::new()
        .semver("1.1.0")
        .metrics(metrics(&[
            ("auc", 0.903),
            ("loss", 0.25),
            ("latency_ms", 15.0),
            ("recall", 0.7),
        ]))
        .provenance(Provenance {
            hyperparameters: hp(
                r#"{"optimizer":{"name":"adam","lr":0.0001},"epochs":5,"warmup":100}"#,
            ),
            environment: Environment::default()
                .with_framework("torch", "2.4.1")
                .into(),
            datasets: vec![
                DatasetRef::new("clicks", DatasetRole::Train).version("v4"),
                DatasetRef::new("holdout", DatasetRole::Eval).version("v1"),
            ],
            code: code("bbb"),
            parents: vec![parent_ref("fraud", 1, Relation::FineTunedFrom)],
        });
    reg.acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(scratch.join("a")), a)
        .await
        .expect("register a");
    reg.acting_as(actor("ci"))
        .register("fraud", ArtifactSource::dir(scratch.join("b")), b)
        .await
        .expect("register b");

    let d = reg
        .compare("fraud:1.0.0", "fraud@latest")
        .await
        .expect("compare");
    assert_eq!((d.a.number, d.b.number), (num(1), num(2)));
    let verdicts: Vec<(&str, MetricVerdict)> = d
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("auc", MetricVerdict::Unchanged), // +0.003, within 0.005
            ("f1", MetricVerdict::OnlyInA),
            ("latency_ms", MetricVerdict::Regressed),
            ("loss", MetricVerdict::Improved),
            ("recall", MetricVerdict::OnlyInB),
        ]
    );
    assert_eq!(d.verdict, OverallVerdict::Mixed);
    assert!(d.verdict.has_regression());
    let latency = &d.metrics[2];
    assert_eq!((latency.change, latency.relative), (Some(3.0), Some(0.25)));

    assert_eq!(
        d.hyperparameters
            .changed
            .iter()
            .map(|c| c.key.as_str())
            .collect::<Vec<_>>(),
        ["epochs", "optimizer.lr"]
    );
    assert_eq!(d.hyperparameters.changed[0].a, HyperValue::Int(3));
    assert_eq!(d.hyperparameters.changed[0].b, HyperValue::Int(5));
    assert_eq!(d.hyperparameters.added[0].key, "warmup");
    assert_eq!(d.hyperparameters.removed[0].key, "dropout");
    assert_eq!(d.environment.changed.len(), 1);
    assert_eq!(
        (
            d.environment.changed[0].key.as_str(),
            d.environment.changed[0].b.as_str()
        ),
        ("framework.torch", "2.4.1")
    );
    assert_eq!(d.datasets.changed.len(), 1);
    assert_eq!(d.datasets.changed[0].b.version.as_deref(), Some("v4"));
    assert!(d.datasets.added.is_empty() && d.datasets.removed.is_empty());
    assert_eq!(
        d.code
            .as_ref()
            .and_then(|c| c.b.as_ref())
            .map(|c| c.commit.as_str()),
        Some("bbb")
    );

    let files = d.artifact.as_ref().expect("manifests compared");
    assert_eq!(files.unchanged, 2);
    let paths = |es: &[ManifestEntry]| es.iter().map(|e| e.path.to_string()).collect::<Vec<_>>();
    assert_eq!(paths(&files.added), ["adapter.bin", "copy/model-v1.bin"]);
    assert_eq!(paths(&files.removed), ["notes.txt"]);
    assert_eq!(files.changed.len(), 1);
    assert_eq!(files.changed[0].path.as_str(), "model.bin");
    assert_eq!(
        (files.changed[0].a_digest, files.changed[0].b_digest),
        (digest(&model_a), digest(&model_b))
    );
    assert_eq!(files.b_bytes, 12 + 4096 + 1000 + 512 + 4096);
    // config, tokenizer and the moved copy of a's weights.
    assert_eq!(files.shared_bytes, 12 + 1000 + 4096);

    let table = d.to_string();
    assert!(table.contains("b: fraud/2 (1.1.0)"), "{table}");
    assert!(
        table.contains("verdict: mixed (1 improved, 1 regressed, 1 unchanged, 2 other)"),
        "{table}"
    );
    assert!(
        table.contains("  ~  optimizer.lr    0.001  0.0001\n"),
        "{table}"
    );
    let json = serde_json::to_string(&d).expect("serialize");
    assert_eq!(
        serde_json::from_str::<modelreg::VersionDiff>(&json).expect("deserialize"),
        d
    );

    // Another process computes the same diff.
    assert_eq!(
        f.fresh()
            .await
            .compare("fraud/1", "fraud/2")
            .await
            .expect("compare"),
        d
    );
    // A version against itself.
    let same = reg.compare("fraud/2", "fraud/2").await.expect("compare");
    assert_eq!(same.verdict, OverallVerdict::Unchanged);
    assert!(
        same.hyperparameters.is_empty() && same.artifact.as_ref().is_some_and(|a| a.is_empty())
    );

    // Across models: `lite` has no specs, so fraud's judge auc.
    create(&reg, "lite").await;
    register_with(
        &reg,
        "lite",
        "m.bin",
        "lite",
        NewVersion::new().metrics(metrics(&[("auc", 0.95)])),
    )
    .await;
    let cross = reg
        .compare("fraud/2", "lite/1")
        .await
        .expect("compare across models");
    assert_eq!(cross.metrics[0].verdict, MetricVerdict::Improved);
    assert_eq!(cross.b.model.as_str(), "lite");
    let back = reg
        .compare("lite/1", "fraud/2")
        .await
        .expect("compare across models");
    assert_eq!(back.metrics[0].verdict, MetricVerdict::Regressed);

    assert_err!(
        reg.compare("fraud/1", "fraud/9").await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.compare("ghost/1", "fraud/1").await,
        Error::NotFound { .. }
    );
}

/// `metric_history` lists one metric over the versions that have it, oldest first,
/// with the latest value of each, filtered by a `VersionFilter`.
pub async fn metric_history_in_version_order(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let version = |auc: Option<f64>, split: &str| {
        let m = auc.map_or_else(Metrics::new, |a| {
            Metrics::new().with("auc", a).expect("finite")
        });
        NewVersion::new().metrics(m).tag("split", split)
    };
    register_with(&reg, "fraud", "m.bin", "1", version(Some(0.80), "a")).await;
    register_with(&reg, "fraud", "m.bin", "2", version(None, "a")).await;
    register_with(&reg, "fraud", "m.bin", "3", version(Some(0.85), "b")).await;
    register_with(&reg, "fraud", "m.bin", "4", version(Some(0.90), "b")).await;
    let again = Metrics::new().with("auc", 0.82).expect("finite");
    reg.acting_as(actor("eval"))
        .add_metrics("fraud/1", again)
        .await
        .expect("add metrics");
    reg.acting_as(actor("alice"))
        .deprecate("fraud/4", "leaked labels")
        .await
        .expect("deprecate");

    let points = |h: Vec<modelreg::MetricPoint>| -> Vec<(u64, f64)> {
        h.iter().map(|p| (p.version.get(), p.value)).collect()
    };
    let all = reg
        .metric_history("fraud", "auc", &VersionFilter::new())
        .await
        .expect("history");
    assert_eq!(points(all.clone()), [(1, 0.82), (3, 0.85), (4, 0.90)]);
    for p in &all {
        let v = reg
            .resolve(format!("fraud/{}", p.version))
            .await
            .expect("resolve");
        assert_eq!(p.created_at, v.created_at);
    }
    let other = f.fresh().await;
    let live = VersionFilter::new().exclude_deprecated();
    assert_eq!(
        points(
            other
                .metric_history("fraud", "auc", &live)
                .await
                .expect("history")
        ),
        [(1, 0.82), (3, 0.85)]
    );
    let b = VersionFilter::new().tag_value("split", "b");
    assert_eq!(
        points(
            reg.metric_history("fraud", "auc", &b)
                .await
                .expect("history")
        ),
        [(3, 0.85), (4, 0.90)]
    );
    assert!(
        reg.metric_history("fraud", "f1", &VersionFilter::new())
            .await
            .expect("history")
            .is_empty()
    );
    assert_err!(
        reg.metric_history("fraud", "", &VersionFilter::new()).await,
        Error::InvalidName { .. }
    );
    assert_err!(
        reg.metric_history("ghost", "auc", &VersionFilter::new())
            .await,
        Error::NotFound { .. }
    );
}

// ----- garbage collection ------------------------------------------------------------

/// Collects with grace period `grace`.
pub async fn collect(reg: &Registry, grace: Duration) -> GcReport {
    reg.gc(GcOptions::new(grace))
        .await
        .unwrap_or_else(|e| panic!("gc: {e}"))
}

/// Every version of `model` verifies: all its blobs are stored and intact.
pub async fn all_versions_verify(reg: &Registry, model: &str) -> usize {
    let versions = listed(reg, model, VersionFilter::new()).await;
    for n in &versions {
        reg.verify(format!("{model}/{n}"))
            .await
            .unwrap_or_else(|e| panic!("verify {model}/{n}: {e}"));
    }
    versions.len()
}

/// GC deletes exactly the unreferenced blobs older than the grace period; a dry
/// run reports the same and deletes nothing; referenced blobs of every version
/// (archived and deprecated ones too) stay.
pub async fn gc_deletes_only_old_unreferenced_blobs(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let v1 = register_bytes(&reg, "fraud", "model.bin", "weights v1").await;
    let v2 = register_bytes(&reg, "fraud", "model.bin", "weights v2").await;
    reg.acting_as(actor("alice"))
        .deprecate("fraud/1", "superseded")
        .await
        .expect("deprecate");
    let orphan = reg
        .artifact_store()
        .put_bytes(Bytes::from_static(b"left behind by a failed upload"))
        .await
        .expect("put orphan");
    let before = blobs(&reg).await;
    // v1 and v2: a manifest and a file each, plus the orphan.
    assert_eq!(before.len(), 5);
    assert!(before.contains(&v1.artifact) && before.contains(&v2.artifact));

    // A grace period longer than the calendar reaches back: nothing is old
    // enough, and nothing panics.
    for grace in [Duration::MAX, Duration::from_secs(400_000 * 365 * 86_400)] {
        let forever = collect(&reg, grace).await;
        assert_eq!((forever.young, forever.deleted.len()), (1, 0), "{grace:?}");
    }
    // Younger than an hour: kept.
    let young = collect(&reg, Duration::from_secs(3600)).await;
    assert_eq!(
        (
            young.blobs,
            young.referenced,
            young.young,
            young.deleted.len()
        ),
        (5, 4, 1, 0)
    );
    assert_eq!(young.models, 1);
    assert_eq!(young.manifests, 2);

    let dry = reg
        .gc(GcOptions::new(Duration::ZERO).dry_run(true))
        .await
        .expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(dry.deleted, [orphan]);
    assert_eq!(dry.bytes_freed, 30);
    assert_eq!(blobs(&reg).await, before, "a dry run deletes nothing");

    let swept = collect(&reg, Duration::ZERO).await;
    assert_eq!(swept.deleted, [orphan]);
    assert_eq!(swept.bytes_freed, 30);
    let after = blobs(&reg).await;
    assert_eq!(after.len(), 4);
    assert!(!after.contains(&orphan));
    assert_eq!(all_versions_verify(&f.fresh().await, "fraud").await, 2);
    // Nothing left to collect; no lease left behind.
    assert_eq!(collect(&reg, Duration::ZERO).await.deleted, []);
    assert_eq!(
        reg.metadata_store().list_leases().await.expect("leases"),
        Vec::<String>::new()
    );
}

/// When a reference cannot be read (here a version's manifest is gone), GC stops
/// with that error and deletes nothing.
pub async fn gc_deletes_nothing_when_a_reference_is_unreadable(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    let v1 = register_bytes(&reg, "fraud", "model.bin", "weights v1").await;
    register_bytes(&reg, "fraud", "model.bin", "weights v2").await;
    let orphan = reg
        .artifact_store()
        .put_bytes(Bytes::from_static(b"orphan"))
        .await
        .expect("put orphan");
    reg.artifact_store()
        .delete(&v1.artifact)
        .await
        .expect("delete manifest");
    let before = blobs(&reg).await;
    let err = reg
        .gc(GcOptions::new(Duration::ZERO))
        .await
        .expect_err("a missing manifest stops gc");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&v1.artifact.to_string()), "{err}");
    assert_eq!(blobs(&reg).await, before);
    assert!(before.contains(&orphan));
}

/// Collections with no grace period run back to back while registrations on
/// other registries (other processes' views) store files identical to orphans the
/// collections are deleting — the race where a registration deduplicates against
/// a blob being swept. Afterwards every version's blobs are all present, and the
/// orphans nobody references are gone.
pub async fn gc_racing_registrations_never_deletes_a_referenced_blob(f: &Fixture) {
    const SHARED: usize = 8;
    const JUNK: usize = 4;
    const TASKS: usize = 4;
    const PER_TASK: usize = 4;
    let reg = f.registry();
    create(&reg, "raced").await;
    let shared: Vec<Bytes> = (0..SHARED)
        .map(|i| Bytes::from(format!("shared weights {i}")))
        .collect();
    let junk: Vec<Bytes> = (0..JUNK)
        .map(|i| Bytes::from(format!("junk nobody registers {i}")))
        .collect();
    let orphans: Vec<Bytes> = shared.iter().chain(&junk).cloned().collect();

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let reg = f.fresh().await;
        let done = done.clone();
        let orphans = orphans.clone();
        tokio::spawn(async move {
            let (mut sweeps, mut deleted) = (0u64, 0usize);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                // Make every orphan (and every shared file not yet registered) a
                // candidate again.
                for bytes in &orphans {
                    reg.artifact_store()
                        .put_bytes(bytes.clone())
                        .await
                        .expect("put orphan");
                }
                let report = collect(&reg, Duration::ZERO).await;
                sweeps += 1;
                deleted += report.deleted.len();
            }
            (sweeps, deleted)
        })
    };
    let mut writers = Vec::new();
    for t in 0..TASKS {
        let r = f.fresh().await;
        let shared = shared.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let source = ArtifactSource::files([
                    ("shared.bin", shared[(t * PER_TASK + i) % SHARED].clone()),
                    ("own.bin", Bytes::from(format!("task {t} version {i}"))),
                ])
                .expect("valid paths");
                r.acting_as(actor("ci"))
                    .register("raced", source, NewVersion::new())
                    .await
                    .unwrap_or_else(|e| panic!("register: {e}"));
            }
        }));
    }
    for w in writers {
        w.await.expect("writer did not panic");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sweeps, deleted) = collector.await.expect("collector did not panic");
    eprintln!(
        "{}: {sweeps} sweeps deleted {deleted} blobs while {} versions were registered",
        f.name,
        TASKS * PER_TASK
    );
    assert!(
        sweeps >= 1 && deleted >= JUNK,
        "{sweeps} sweeps deleted {deleted}"
    );

    let fresh = f.fresh().await;
    assert_eq!(all_versions_verify(&fresh, "raced").await, TASKS * PER_TASK);
    // A final collection removes exactly the junk (and any shared file that no
    // version happened to use); every version still verifies.
    let last = collect(&fresh, Duration::ZERO).await;
    let stored = blobs(&fresh).await;
    for bytes in &junk {
        assert!(!stored.contains(&digest(bytes)));
    }
    assert!(last.referenced >= (TASKS * PER_TASK) as u64);
    assert_eq!(all_versions_verify(&fresh, "raced").await, TASKS * PER_TASK);
}

// ----- API 0.2: sessions, builders, records as references, reports, paging -------

/// A builder step with bad input is reported by the command, before anything is
/// read or written: no model, no version, no blob.
pub async fn builder_errors_are_reported_by_the_command(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("ci"));
    let refused = me
        .create_model(
            "m",
            CreateModel::new()
                .description("x")
                .metric("Bad Name!", MetricSpec::maximize()),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidName { .. })),
        "{refused:?}"
    );
    assert!(matches!(reg.model("m").await, Err(Error::NotFound { .. })));

    create(&reg, "m").await;
    let before = blobs(&reg).await;
    for (what, version) in [
        (
            "tag",
            NewVersion::new()
                .metric("auc", 0.9)
                .tag("", "x")
                .param("lr", 0.1),
        ),
        ("semver", NewVersion::new().semver("1.x").metric("auc", 0.9)),
        ("metric", NewVersion::new().metric("auc", f64::NAN)),
        (
            "parent",
            NewVersion::new().parent("m/", Relation::FineTunedFrom),
        ),
    ] {
        let source = ArtifactSource::bytes("w.bin", format!("bytes for {what}")).expect("path");
        let refused = me.register("m", source, version).await;
        assert!(
            matches!(
                refused,
                Err(Error::InvalidName { .. }
                    | Error::InvalidInput { .. }
                    | Error::InvalidReference { .. })
            ),
            "{what}: {refused:?}"
        );
    }
    assert_eq!(
        blobs(&reg).await,
        before,
        "a refused builder stored nothing"
    );
    assert!(reg.model("m").await.expect("model").versions().is_empty());
    let filter = VersionFilter::new().tag("").semver("^1");
    assert!(matches!(
        reg.list_versions("m", &filter).await,
        Err(Error::InvalidName { .. })
    ));
}

/// A record knows its model and is a reference wherever one is taken, also as
/// read back by another registry (from a checkpoint where the backend writes one).
pub async fn records_are_references(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("ci"));
    create(&reg, "fraud").await;
    let v1 = me
        .register(
            "fraud",
            ArtifactSource::bytes("w.bin", "one").expect("path"),
            NewVersion::new(),
        )
        .await
        .expect("register");
    assert_eq!(v1.model.as_str(), "fraud");
    assert_eq!(v1.reference().to_string(), "fraud/1");
    assert_eq!(reg.resolve(&v1).await.expect("resolve"), v1.version);
    let v2 = me
        .register(
            "fraud",
            ArtifactSource::bytes("w.bin", "two").expect("path"),
            NewVersion::new().parent(&v1, Relation::FineTunedFrom),
        )
        .await
        .expect("register child");
    assert_eq!(
        v2.provenance.parents,
        vec![ParentRef {
            model: ModelName::new("fraud").expect("name"),
            version: v1.number,
            relation: Relation::FineTunedFrom
        }]
    );
    let other = f.fresh().await;
    for v in other
        .list_versions("fraud", &VersionFilter::new())
        .await
        .expect("list")
    {
        assert_eq!(v.model.as_str(), "fraud");
        assert_eq!(other.resolve(&v).await.expect("resolve").number, v.number);
    }
    // The record's JSON names its model; one without it names none and is refused.
    let json = serde_json::to_value(&v1.version).expect("json");
    assert_eq!(json["model"], "fraud");
    let mut anonymous = json.clone();
    anonymous.as_object_mut().expect("object").remove("model");
    let anonymous: VersionRecord = serde_json::from_value(anonymous).expect("record");
    assert!(matches!(
        reg.resolve(&anonymous).await,
        Err(Error::InvalidInput { .. })
    ));
}

/// Provenance builders record what they say.
pub async fn provenance_builders_record_everything(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("ci"));
    create(&reg, "fraud").await;
    let _ = me
        .register(
            "fraud",
            ArtifactSource::bytes("w.bin", "w").expect("path"),
            NewVersion::new()
                .semver("1.4.0")
                .metric("auc", 0.93)
                .metrics([("f1", 0.71), ("loss", 0.25)])
                .param("lr", 3e-4)
                .params([("epochs", 12), ("batch", 64)])
                .param("optimizer", "adamw")
                .dataset(
                    modelreg::DatasetRef::new("tx", modelreg::DatasetRole::Train)
                        .version("2026-11"),
                )
                .code_commit("9f2c1e7")
                .framework("torch", "2.4.1"),
        )
        .await
        .expect("register");
    let v = reg.resolve("fraud:1.4.0").await.expect("resolve");
    assert_eq!(v.metrics.get("auc"), Some(0.93));
    assert_eq!(v.metrics.get("loss"), Some(0.25));
    assert_eq!(v.provenance.hyperparameters["lr"], HyperValue::Float(3e-4));
    assert_eq!(v.provenance.hyperparameters["epochs"], HyperValue::Int(12));
    assert_eq!(
        v.provenance.hyperparameters["optimizer"],
        HyperValue::String("adamw".into())
    );
    assert_eq!(v.provenance.datasets[0].version.as_deref(), Some("2026-11"));
    assert_eq!(
        v.provenance.code.as_ref().map(|c| c.commit.as_str()),
        Some("9f2c1e7")
    );
    assert_eq!(v.provenance.environment.frameworks["torch"], "2.4.1");
}

/// `register` reports what it stored new and what was there already.
pub async fn register_reports_what_it_stored(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("ci"));
    create(&reg, "m").await;
    let files = |extra: &str| {
        ArtifactSource::files([
            ("a.bin", b"shared bytes".to_vec()),
            ("copy/a.bin", b"shared bytes".to_vec()),
            ("b.bin", extra.as_bytes().to_vec()),
        ])
        .expect("paths")
    };
    let first = me
        .register("m", files("first"), NewVersion::new())
        .await
        .expect("first");
    let r = first.report;
    assert_eq!((r.files, r.bytes), (3, 12 + 12 + 5));
    assert_eq!((r.files_stored, r.bytes_stored), (2, 12 + 5));
    assert_eq!((r.files_present, r.bytes_present), (1, 12));
    let second = me
        .register("m", files("second"), NewVersion::new())
        .await
        .expect("second");
    let r = second.report;
    assert_eq!((r.files_stored, r.bytes_stored), (1, 6));
    assert_eq!((r.files_present, r.bytes_present), (2, 24));
    let json = serde_json::to_value(r).expect("json");
    assert_eq!(json["bytes_stored"], 6);

    // The same from a directory on disk, whose small files are read whole and
    // stored beside the manifest: a file repeated in the version is stored
    // once, whether the store is asked first (over 4 KiB) or finds out by
    // writing (up to 4 KiB).
    let (tiny, small) = (pattern(100, 21), pattern(5_000, 22));
    let dir = f.scratch().join("reported");
    let files: [(&str, &[u8]); 4] = [
        ("tiny.bin", &tiny),
        ("copy/tiny.bin", &tiny),
        ("small.bin", &small),
        ("copy/small.bin", &small),
    ];
    write_tree(&dir, &files);
    let from_dir = me
        .register("m", ArtifactSource::dir(&dir), NewVersion::new())
        .await
        .expect("from a directory");
    let r = from_dir.report;
    assert_eq!((r.files_stored, r.bytes_stored), (2, 100 + 5_000));
    assert_eq!((r.files_present, r.bytes_present), (2, 100 + 5_000));
    let again = me
        .register("m", ArtifactSource::dir(&dir), NewVersion::new())
        .await
        .expect("the directory again");
    let r = again.report;
    assert_eq!((r.files_stored, r.bytes_stored), (0, 0));
    assert_eq!((r.files_present, r.bytes_present), (4, 2 * (100 + 5_000)));
}

/// Many writers ensuring one model: every one gets it, one event created it, and
/// an existing model is returned as it is.
pub async fn ensure_model_is_race_free(f: &Fixture) {
    let reg = f.registry();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.acting_as(actor(&format!("w{i}")))
                    .ensure_model("shared", CreateModel::new().description(format!("by {i}")))
                    .await
            })
        })
        .collect();
    let mut descriptions = BTreeSet::new();
    for t in tasks {
        let state = t.await.expect("task").expect("ensure");
        descriptions.insert(state.description().to_owned());
    }
    assert_eq!(
        descriptions.len(),
        1,
        "every writer sees the one creation: {descriptions:?}"
    );
    assert_eq!(reg.events("shared").await.expect("events").len(), 1);
    let again = reg
        .acting_as(actor("late"))
        .ensure_model("shared", CreateModel::new().description("ignored"))
        .await
        .expect("ensure existing");
    assert_eq!(
        Some(again.description()),
        descriptions.iter().next().map(String::as_str)
    );
}

/// Versions page in the requested order; a registration between two pages
/// neither repeats nor skips a version.
pub async fn versions_page_in_order(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("ci"));
    create(&reg, "m").await;
    for (i, auc) in [Some(0.5), Some(0.9), None, Some(0.7), Some(0.9), Some(0.1)]
        .into_iter()
        .enumerate()
    {
        let v = match auc {
            Some(a) => NewVersion::new().metric("auc", a),
            None => NewVersion::new(),
        };
        me.register(
            "m",
            ArtifactSource::bytes("w", i.to_string()).expect("path"),
            v,
        )
        .await
        .expect("register");
    }
    let numbers = |p: &modelreg::Page<std::sync::Arc<VersionRecord>>| {
        p.items.iter().map(|v| v.number.get()).collect::<Vec<_>>()
    };
    let all = VersionFilter::new();
    let best = modelreg::VersionPage::new()
        .by_metric("auc")
        .descending()
        .limit(4);
    let p1 = reg
        .list_versions_page("m", &all, best.clone())
        .await
        .expect("page 1");
    assert_eq!(numbers(&p1), [5, 2, 4, 1]);
    assert_eq!(p1.total, Some(6));
    // A new best version arrives between the pages.
    me.register(
        "m",
        ArtifactSource::bytes("w", "late").expect("path"),
        NewVersion::new().metric("auc", 0.99),
    )
    .await
    .expect("register");
    let p2 = reg
        .list_versions_page("m", &all, best.after(p1.next.clone().expect("more")))
        .await
        .expect("page 2");
    assert_eq!(numbers(&p2), [6, 3]);
    assert!(p2.next.is_none());
    let newest = modelreg::VersionPage::new().descending().limit(3);
    let n1 = reg
        .list_versions_page("m", &all, newest.clone())
        .await
        .expect("newest");
    assert_eq!(numbers(&n1), [7, 6, 5]);
    let n2 = reg
        .list_versions_page("m", &all, newest.after(n1.next.expect("more")))
        .await
        .expect("older");
    assert_eq!(numbers(&n2), [4, 3, 2]);
    let bad = modelreg::VersionPage::new().after("not-a-token");
    assert!(matches!(
        reg.list_versions_page("m", &all, bad).await,
        Err(Error::InvalidInput { .. })
    ));
}

/// Model summaries: one line per model, with its latest, production and aliases.
pub async fn model_summaries_list_every_model(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("ci"));
    for m in ["b", "a"] {
        me.create_model(m, CreateModel::new().description(format!("model {m}")))
            .await
            .expect("create");
    }
    let v = me
        .register(
            "a",
            ArtifactSource::bytes("w", "w").expect("path"),
            NewVersion::new(),
        )
        .await
        .expect("register");
    me.set_alias(&v, "champion", SetAlias::new())
        .await
        .expect("alias");
    me.promote_to(&v, modelreg::Stage::Production, "go")
        .await
        .expect("promote");
    let summaries = reg.model_summaries().await.expect("summaries");
    assert_eq!(summaries.len(), 2);
    let (a, b) = (&summaries[0], &summaries[1]);
    assert_eq!((a.name.as_str(), b.name.as_str()), ("a", "b"));
    assert_eq!(
        (a.versions, a.latest, a.production),
        (1, Some(v.number), Some(v.number))
    );
    assert_eq!(a.aliases.len(), 1);
    assert_eq!(a.events, 1 + 1 + 1 + 3);
    assert_eq!(
        (b.versions, b.latest, b.production, b.description.as_str()),
        (0, None, None, "model b")
    );
}

/// A missing model, version, alias and blob are told apart by `Missing`, with
/// the model, reference, alias or digest in it, not only in the message.
pub async fn not_found_says_what_is_missing(f: &Fixture) {
    use modelreg::Missing;
    let reg = f.registry();
    let missing = |r: modelreg::Result<VersionRecord>| match r {
        Err(Error::NotFound { missing, .. }) => missing,
        other => panic!("expected NotFound, got {other:?}"),
    };
    assert_eq!(
        missing(reg.resolve("ghost@latest").await),
        Missing::Model {
            model: "ghost".into()
        }
    );
    create(&reg, "fraud").await;
    let v = register_bytes(&reg, "fraud", "w.bin", "weights").await;
    assert_eq!(
        missing(reg.resolve("fraud/9").await),
        Missing::Version {
            model: "fraud".into(),
            reference: "fraud/9".into()
        }
    );
    assert_eq!(
        missing(reg.resolve("fraud@champion").await),
        Missing::Version {
            model: "fraud".into(),
            reference: "fraud@champion".into()
        }
    );
    let me = reg.acting_as(actor("ops"));
    match me.remove_alias("fraud", "champion", "cleanup").await {
        Err(Error::NotFound { missing, .. }) => assert_eq!(
            missing,
            Missing::Alias {
                model: "fraud".into(),
                alias: "champion".into()
            }
        ),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match me.clear_traffic_split("fraud", "none set").await {
        Err(Error::NotFound { missing, .. }) => {
            assert_eq!(
                missing,
                Missing::TrafficSplit {
                    model: "fraud".into()
                }
            )
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let file = digest(b"weights");
    reg.artifact_store().delete(&file).await.expect("delete");
    match reg.verify(&v).await {
        Err(Error::NotFound { missing, what }) => {
            assert_eq!(missing, Missing::Blob { digest: file });
            assert!(what.contains("w.bin"), "{what}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ----- progress --------------------------------------------------------------------

/// Where a [`Progress`] callback leaves its events.
type Events = std::sync::Arc<std::sync::Mutex<Vec<ProgressEvent>>>;

/// A callback that records every event, and where it records them.
pub fn recorder() -> (Progress, Events) {
    let events = Events::default();
    let progress = Progress::new({
        let events = events.clone();
        move |e| events.lock().expect("events lock").push(e.clone())
    });
    (progress, events)
}

/// Takes the events recorded so far.
pub fn take(events: &Events) -> Vec<ProgressEvent> {
    std::mem::take(&mut *events.lock().expect("events lock"))
}

/// Asserts that `events` are one `Started` for exactly the files `expected`
/// (`path → size`), first, then one `File` for each of them, once, with its size,
/// and `Bytes` deltas that add up to the same total, counted before the `File`
/// of the file they belong to (so at every `File`, the deltas so far are at
/// least the sizes of the files done).
pub fn assert_progress(events: &[ProgressEvent], expected: &BTreeMap<String, u64>, what: &str) {
    let total: u64 = expected.values().sum();
    match events.first() {
        Some(ProgressEvent::Started { files, bytes }) => assert_eq!(
            (*files, *bytes),
            (expected.len() as u64, total),
            "{what}: Started"
        ),
        other => panic!("{what}: the first event is {other:?}, not Started"),
    }
    let mut seen = BTreeMap::new();
    let (mut deltas, mut done) = (0, 0);
    for e in &events[1..] {
        match e {
            ProgressEvent::Bytes { bytes } => {
                assert!(*bytes > 0, "{what}: an empty delta");
                deltas += bytes;
            }
            ProgressEvent::File { path, bytes } => {
                let before = seen.insert(path.clone(), *bytes);
                assert!(before.is_none(), "{what}: '{path}' reported twice");
                done += bytes;
                assert!(
                    deltas >= done,
                    "{what}: '{path}' done with {done} bytes of files, {deltas} counted"
                );
            }
            other => panic!("{what}: {other:?} after Started"),
        }
    }
    assert_eq!(&seen, expected, "{what}: the files reported");
    assert_eq!(
        seen.values().sum::<u64>(),
        total,
        "{what}: the bytes reported"
    );
    assert_eq!(deltas, total, "{what}: the Bytes deltas");
}

/// The `File` events among `events`, as `(path, bytes)`.
fn files_of(events: &[ProgressEvent]) -> Vec<(&str, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::File { path, bytes } => Some((path.as_str(), *bytes)),
            _ => None,
        })
        .collect()
}

/// The files the progress tests register: sizes on either side of the in-memory
/// hashing threshold (64 KiB), an empty file, nested directories, and one
/// content twice (stored once, reported for both paths).
fn progress_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", br#"{"layers":2}"#.to_vec()),
        ("weights/layer0.bin", pattern(100_000, 1)),
        ("weights/deep/layer1.bin", pattern(3_333, 2)),
        ("weights/again/layer0.bin", pattern(100_000, 1)),
        ("empty", Vec::new()),
    ]
}

/// `path → size` of `files`, with `prefix` before each path.
fn sizes(files: &[(&str, Vec<u8>)], prefix: &str) -> BTreeMap<String, u64> {
    files
        .iter()
        .map(|(p, b)| (format!("{prefix}{p}"), b.len() as u64))
        .collect()
}

/// Registering reports every file once, after one `Started` with their count
/// and total, whatever the source and whether the bytes are stored new, found
/// stored (also a second path with the same content) or known from the hash
/// cache.
pub async fn register_reports_progress_for_every_file(f: &Fixture) {
    let reg = f.registry();
    let me = reg.acting_as(actor("ci"));
    create(&reg, "m").await;
    let files = progress_files();
    let src = f.scratch().join("src");
    write_tree(&src, &as_refs(&files));
    let expected = sizes(&files, "");
    let (progress, events) = recorder();

    let first = me
        .register(
            "m",
            ArtifactSource::dir(&src),
            NewVersion::new().progress(progress.clone()),
        )
        .await
        .expect("register");
    assert_eq!(first.report.files, 5);
    assert_progress(&take(&events), &expected, "a new directory");

    // Everything stored already (and on a local store, known to the hash cache).
    let second = me
        .register(
            "m",
            ArtifactSource::dir(&src),
            NewVersion::new().progress(progress.clone()),
        )
        .await
        .expect("register again");
    assert_eq!(second.report.files_stored, 0);
    assert_progress(&take(&events), &expected, "the same directory again");

    // In memory, under other paths: hashed before anything is stored.
    let in_memory =
        ArtifactSource::files(files.iter().map(|(p, b)| (format!("mem/{p}"), b.clone())))
            .expect("paths");
    me.register("m", in_memory, NewVersion::new().progress(progress.clone()))
        .await
        .expect("register bytes");
    assert_progress(&take(&events), &sizes(&files, "mem/"), "in-memory files");
    let new_in_memory =
        ArtifactSource::files([("x.bin", pattern(70_000, 9)), ("y.bin", b"y".to_vec())])
            .expect("paths");
    let third = me
        .register(
            "m",
            new_in_memory,
            NewVersion::new().progress(progress.clone()),
        )
        .await
        .expect("register new bytes");
    assert_eq!(third.report.files_stored, 2);
    let expected_new = BTreeMap::from([("x.bin".to_owned(), 70_000), ("y.bin".to_owned(), 1)]);
    assert_progress(&take(&events), &expected_new, "new in-memory files");

    // One file.
    me.register(
        "m",
        ArtifactSource::file(src.join("weights/deep/layer1.bin")),
        NewVersion::new().progress(progress),
    )
    .await
    .expect("register one file");
    let one = BTreeMap::from([("layer1.bin".to_owned(), 3_333)]);
    assert_progress(&take(&events), &one, "one file");

    // Without a callback nothing is reported, and nothing else changes.
    me.register("m", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register without progress");
    assert!(take(&events).is_empty());
}

/// Fetching reports every file of the version once it is placed and verified,
/// and verifying every file once re-hashed, each after one `Started`.
pub async fn fetch_and_verify_report_progress_for_every_file(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "m").await;
    let files = progress_files();
    let src = f.scratch().join("src");
    write_tree(&src, &as_refs(&files));
    let v = reg
        .acting_as(actor("ci"))
        .register("m", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register");
    let expected = sizes(&files, "");
    let (progress, events) = recorder();

    let dest = f.scratch().join("out");
    let report = reg
        .fetch(&v, &dest, FetchOptions::new().progress(progress.clone()))
        .await
        .expect("fetch");
    assert_eq!((report.files, report.bytes), (5, v.size));
    assert_progress(&take(&events), &expected, "fetch");
    assert_eq!(read_tree(&dest), tree(&as_refs(&files)));

    let report = reg
        .verify_with_progress(&v, progress.clone())
        .await
        .expect("verify");
    assert_eq!(
        report,
        VerifyReport {
            files: 5,
            bytes: v.size
        }
    );
    assert_progress(&take(&events), &expected, "verify");

    // A damaged blob stops the events at the file that fails: the files before
    // it in the manifest's order were reported, and none after.
    f.corrupt_blob(&digest(&pattern(3_333, 2)), b"rot");
    assert_err!(
        reg.verify_with_progress(&v, progress.clone()).await,
        Error::Integrity { .. }
    );
    let failed = take(&events);
    assert!(matches!(failed[0], ProgressEvent::Started { files: 5, .. }));
    let reported: Vec<&str> = files_of(&failed).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        reported,
        ["config.json", "empty", "weights/again/layer0.bin"]
    );
    assert_err!(
        reg.fetch(
            &v,
            f.scratch().join("out2"),
            FetchOptions::new().progress(progress)
        )
        .await,
        Error::Integrity { .. }
    );
    assert_eq!(files_of(&take(&events)).len(), reported.len());
}

/// Checking reports every distinct blob once (manifests first), after one
/// `Started` whose totals are the report's on a sound registry; a damaged blob
/// is still reported with its expected size, so the events add up to `Started`.
/// `gc_with_progress` reports its mark phase: one `File` per distinct version
/// manifest, named after the first version that has it, with no bytes.
pub async fn gc_reports_progress_for_every_manifest(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "m").await;
    create(&reg, "n").await;
    let me = reg.acting_as(actor("ci"));
    for (model, bytes) in [("m", "same"), ("n", "same"), ("n", "other")] {
        let source = ArtifactSource::bytes("w.bin", bytes).expect("path");
        me.register(model, source, NewVersion::new())
            .await
            .expect("register");
    }
    let (progress, events) = recorder();
    let report = reg
        .gc_with_progress(GcOptions::new(Duration::from_secs(3600)), progress)
        .await
        .expect("gc");
    // Two manifests and two file blobs, all referenced.
    assert_eq!((report.referenced, report.manifests), (4, 2));
    // m/1 and n/1 share one manifest.
    let expected = BTreeMap::from([
        ("m/1 manifest".to_owned(), 0),
        ("n/2 manifest".to_owned(), 0),
    ]);
    assert_progress(&take(&events), &expected, "gc");
}

pub async fn check_reports_progress_for_every_blob(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "m").await;
    create(&reg, "n").await;
    let files = progress_files();
    let src = f.scratch().join("src");
    write_tree(&src, &as_refs(&files));
    let me = reg.acting_as(actor("ci"));
    for model in ["m", "n"] {
        me.register(model, ArtifactSource::dir(&src), NewVersion::new())
            .await
            .expect("register");
    }
    let other = ArtifactSource::bytes("w.bin", "other").expect("path");
    me.register("n", other, NewVersion::new())
        .await
        .expect("register");
    let (progress, events) = recorder();
    let report = reg
        .check_with_progress(progress.clone())
        .await
        .expect("check");
    assert!(report.is_ok(), "{:#?}", report.problems);
    // Two manifests (m/1 and n/1 are the same one), four distinct file blobs
    // (one content is in two files), then n/2's manifest and file.
    assert_eq!(report.blobs, 2 + 4 + 1);
    let mut expected = BTreeMap::new();
    let m1 = reg.manifest("m/1").await.expect("manifest");
    let n2 = reg.manifest("n/2").await.expect("manifest");
    expected.insert("m/1 manifest".to_owned(), m1.to_bytes().len() as u64);
    expected.insert("n/2 manifest".to_owned(), n2.to_bytes().len() as u64);
    for (path, size) in sizes(&files, "") {
        // The first path in the manifest's order names the shared blob.
        if path != "weights/layer0.bin" {
            expected.insert(format!("m/1 file '{path}'"), size);
        }
    }
    expected.insert("n/2 file 'w.bin'".to_owned(), 5);
    let events = take(&events);
    assert_progress(&events, &expected, "check");
    assert_eq!(
        events[0],
        ProgressEvent::Started {
            files: report.blobs,
            bytes: report.bytes
        }
    );
    // Manifests are read in the first pass, so they come first.
    for (path, _) in &files_of(&events)[..2] {
        assert!(path.ends_with(" manifest"), "{path}");
    }

    f.corrupt_blob(&digest(b"other"), b"rotten!");
    let (progress, events) = recorder();
    let damaged = reg.check_with_progress(progress).await.expect("check");
    assert_eq!(damaged.problems.len(), 1, "{:#?}", damaged.problems);
    assert_eq!(damaged.blobs, report.blobs);
    assert_eq!(damaged.bytes, report.bytes - 5);
    assert_progress(&take(&events), &expected, "check with a damaged blob");
}

/// Asserts that the events of one operation on one large file `path` of `size`
/// bytes, alone in flight when it is worked on, add up as [`assert_progress`]
/// says (`others` are the other files or blobs reported, with their sizes) and
/// that the file's bytes came as several deltas while it was worked on, each
/// at least a MiB but the last.
fn assert_streamed(
    events: &[ProgressEvent],
    path: &str,
    size: u64,
    others: &BTreeMap<String, u64>,
    what: &str,
) {
    let mut expected = others.clone();
    expected.insert(path.to_owned(), size);
    assert_progress(events, &expected, what);
    // The deltas between the previous `File` (or `Started`) and the large file's.
    let end = events
        .iter()
        .position(|e| matches!(e, ProgressEvent::File { path: p, .. } if p == path))
        .expect("the large file is reported");
    let start = events[..end]
        .iter()
        .rposition(|e| !matches!(e, ProgressEvent::Bytes { .. }))
        .expect("Started comes first");
    let deltas: Vec<u64> = events[start + 1..end]
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Bytes { bytes } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert!(
        deltas.len() >= 4,
        "{what}: {} deltas for {size} bytes: {deltas:?}",
        deltas.len()
    );
    assert_eq!(deltas.iter().sum::<u64>(), size, "{what}: {deltas:?}");
    let (_, steps) = deltas.split_last().expect("deltas");
    assert!(
        steps.iter().all(|d| *d >= 1 << 20),
        "{what}: a delta under a MiB before the last: {deltas:?}"
    );
}

/// One large file (the common shape of a model: a single `model.safetensors`)
/// moves a progress bar while it is worked on: registering it from a directory,
/// fetching, verifying and checking it each report several `Bytes` deltas
/// before its `File`, not one jump at the end.
pub async fn a_large_file_reports_bytes_while_it_moves(f: &Fixture) {
    const MIB: usize = 1 << 20;
    let reg = f.registry();
    create(&reg, "big").await;
    let src = f.scratch().join("src");
    // Past several upload parts (5 MiB) and hashing windows (2 MiB), with a tail.
    let bytes = pattern(24 * MIB + 5, 7);
    let size = bytes.len() as u64;
    write_tree(&src, &[("model.safetensors", &bytes)]);
    let none = BTreeMap::new();
    let (progress, events) = recorder();

    let v = reg
        .acting_as(actor("ci"))
        .register(
            "big",
            ArtifactSource::dir(&src),
            NewVersion::new().progress(progress.clone()),
        )
        .await
        .expect("register");
    assert_streamed(&take(&events), "model.safetensors", size, &none, "register");

    let dest = f.scratch().join("out");
    reg.fetch(&v, &dest, FetchOptions::new().progress(progress.clone()))
        .await
        .expect("fetch");
    assert_streamed(&take(&events), "model.safetensors", size, &none, "fetch");
    assert!(std::fs::read(dest.join("model.safetensors")).expect("fetched") == bytes);

    reg.verify_with_progress(&v, progress.clone())
        .await
        .expect("verify");
    assert_streamed(&take(&events), "model.safetensors", size, &none, "verify");

    let report = reg.check_with_progress(progress).await.expect("check");
    assert!(report.is_ok(), "{:#?}", report.problems);
    let manifest = reg.manifest("big/1").await.expect("manifest");
    let manifests = BTreeMap::from([(
        "big/1 manifest".to_owned(),
        manifest.to_bytes().len() as u64,
    )]);
    assert_streamed(
        &take(&events),
        "big/1 file 'model.safetensors'",
        size,
        &manifests,
        "check",
    );
}

/// A fetch whose future is dropped part-way (Ctrl-C in a command-line tool)
/// leaves neither the destination nor a staging directory behind, even though
/// the file being placed when it was dropped is still being written on the
/// blocking pool.
pub async fn dropped_fetch_leaves_nothing_behind(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "big").await;
    // Several files, large enough that the fetch is still placing one when it
    // is dropped.
    let files: Vec<(String, Vec<u8>)> = (0..8u8)
        .map(|i| (format!("shard-{i}.bin"), pattern(4 << 20, i)))
        .collect();
    reg.acting_as(actor("ci"))
        .register(
            "big",
            ArtifactSource::files(files).expect("paths"),
            NewVersion::new(),
        )
        .await
        .expect("register");

    let parent = f.scratch().join("downloads");
    let dest = parent.join("big-v1");
    let (first_file, placed_one) = tokio::sync::oneshot::channel();
    let first_file = std::sync::Mutex::new(Some(first_file));
    let progress = Progress::new(move |e| {
        if matches!(e, ProgressEvent::File { .. })
            && let Some(tx) = first_file.lock().expect("lock").take()
        {
            let _ = tx.send(());
        }
    });
    let fetch = reg.fetch("big/1", &dest, FetchOptions::new().progress(progress));
    tokio::select! {
        done = fetch => panic!("the fetch finished before it was dropped: {done:?}"),
        _ = placed_one => {}
    }
    // The fetch's future is gone.
    assert!(!dest.exists(), "{} exists", dest.display());
    assert_eq!(
        entries(&parent),
        Vec::<String>::new(),
        "left in {}",
        parent.display()
    );
    // Nor does the file that was being placed appear later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        entries(&parent),
        Vec::<String>::new(),
        "left in {}",
        parent.display()
    );

    // A fetch into the same destination afterwards works.
    reg.fetch("big/1", &dest, FetchOptions::new())
        .await
        .expect("fetch again");
    assert_eq!(entries(&parent), ["big-v1"]);
}

/// Checkpoints in segments (format 7, here of 2 versions each, one every 3
/// events): the latest one reads back as the fold of the log, a fresh registry
/// opens from it, every past state folds from them to what the log gives, and
/// a damaged segment is never trusted: the registry opens from an older
/// checkpoint or the log, and `check` reports it.
pub async fn segmented_checkpoints_fold_travel_and_survive_damage(f: &Fixture) {
    use modelreg::SetAlias;
    use modelreg::format::{CheckpointHead, decode_checkpoint_head, read_checkpoint, unseal};
    let reg = f.registry_with(|b| b.checkpoint_every(3).checkpoint_segment(2));
    let meta = reg.metadata_store().clone();
    assert!(meta.keeps_checkpoint_parts(), "{}: keeps parts", f.name);
    let who = actor("alice");
    create(&reg, "seg").await; // 1
    for i in 0..9 {
        register_bytes(&reg, "seg", "m.bin", format!("segment {i}")).await; // 2..=10
    }
    let m = |v: f64| Metrics::new().with("auc", v).expect("finite");
    for (n, v) in [(1, 0.5), (4, 0.7), (9, 0.9)] {
        reg.acting_as(who.clone())
            .add_metrics(format!("seg/{n}"), m(v))
            .await
            .expect("metrics"); // 11..=13
    }
    reg.acting_as(who.clone())
        .set_alias("seg/4", "champion", SetAlias::new())
        .await
        .expect("alias"); // 14
    reg.acting_as(who.clone())
        .deprecate("seg/2", "old")
        .await
        .expect("deprecate"); // 15
    for i in 9..11 {
        register_bytes(&reg, "seg", "m.bin", format!("segment {i}")).await; // 16..=17
    }
    reg.acting_as(who.clone())
        .set_version_tags("seg/11", tags(&[("k", "v")]), vec![])
        .await
        .expect("tags"); // 18

    let history = reg.events("seg").await.expect("events");
    assert_eq!(history.len(), 18);
    let replayed = ModelState::replay(history.clone()).expect("replay");
    let name = ModelName::new("seg").expect("valid");
    let cp = meta
        .latest_checkpoint("seg")
        .await
        .expect("read")
        .expect("a checkpoint");
    assert_eq!(cp.seq, 18, "{}", f.name);
    let json = unseal(String::new, &cp.bytes).expect("sealed");
    assert!(
        json.starts_with(br#"{"format":7,"#),
        "{}: a segmented head",
        f.name
    );
    assert_eq!(
        read_checkpoint(meta.as_ref(), &name, cp.clone())
            .await
            .expect("reads"),
        replayed,
        "{}",
        f.name
    );
    assert_eq!(f.fresh().await.model("seg").await.expect("model"), replayed);

    // Time travel from the segmented checkpoints equals the fold of the log
    // up to the last event at or before each time.
    let traveller = f.registry_with(|b| b.checkpoint_every(3).checkpoint_segment(2));
    for (i, e) in history.iter().enumerate() {
        let last = history
            .iter()
            .rposition(|x| x.time <= e.time)
            .expect("itself");
        assert!(last >= i);
        let expected = ModelState::replay(history[..=last].to_vec()).expect("replay");
        assert_eq!(
            traveller.model_as_of("seg", e.time).await.expect("as of"),
            expected,
            "{}: as of event {}",
            f.name,
            e.seq
        );
    }

    // Damage one segment of the latest checkpoint behind the registry's back.
    let CheckpointHead::Segmented(head) =
        decode_checkpoint_head(&name, cp.seq, &cp.bytes).expect("head")
    else {
        panic!("{}: a segmented checkpoint", f.name)
    };
    let damaged = head.segments()[1].name();
    meta.put_checkpoint_part("seg", &damaged, Bytes::from_static(b"{\"torn"))
        .await
        .expect("overwrite the segment");
    assert_err!(
        read_checkpoint(meta.as_ref(), &name, cp).await,
        Error::Corrupt { .. }
    );
    let fresh = f.fresh().await;
    assert_eq!(fresh.model("seg").await.expect("model"), replayed);
    let report = fresh.check().await.expect("check");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.subject.contains("checkpoint 18")),
        "{}: check reports the damaged checkpoint: {:?}",
        f.name,
        report.problems
    );
    // The next checkpoint of a registry that could not read the damaged one
    // writes its segments again: it reads back.
    let fresh = f.registry_with(|b| b.checkpoint_every(3).checkpoint_segment(2));
    for i in 11..14 {
        register_bytes(&fresh, "seg", "m.bin", format!("segment {i}")).await; // 19..=21
    }
    let cp = meta
        .latest_checkpoint("seg")
        .await
        .expect("read")
        .expect("a checkpoint");
    assert_eq!(cp.seq, 21);
    let all = fresh.events("seg").await.expect("events");
    assert_eq!(
        read_checkpoint(meta.as_ref(), &name, cp)
            .await
            .expect("reads"),
        ModelState::replay(all).expect("replay")
    );

    // A registry that opens from that checkpoint leaves the records in their
    // segments until asked; it resolves, registers and promotes on top of
    // them, and its next checkpoint (naming the untouched segments as they
    // are) reads back as the fold of the log.
    let lazy = f.registry_with(|b| b.checkpoint_every(3).checkpoint_segment(2));
    let champion = lazy.resolve("seg@champion").await.expect("champion");
    assert_eq!(champion.number.get(), 4);
    assert!(
        lazy.model("seg").await.expect("model").is_partly_decoded(),
        "{}: opened without decoding every record",
        f.name
    );
    for i in 14..17 {
        register_bytes(&lazy, "seg", "m.bin", format!("segment {i}")).await; // 22..=24
    }
    let cp = meta
        .latest_checkpoint("seg")
        .await
        .expect("read")
        .expect("a checkpoint");
    assert_eq!(cp.seq, 24, "{}", f.name);
    let all = lazy.events("seg").await.expect("events");
    let folded = ModelState::replay(all).expect("replay");
    assert_eq!(
        read_checkpoint(meta.as_ref(), &name, cp)
            .await
            .expect("reads"),
        folded,
        "{}",
        f.name
    );
    assert_eq!(lazy.model("seg").await.expect("model"), folded);
    assert_eq!(f.fresh().await.model("seg").await.expect("model"), folded);
}

/// Checkpoints with patches (format 7, segments of 16 versions, one every 4
/// events): changes to old versions go into patch parts instead of
/// rewriting their segments; each checkpoint reads back as the fold of the
/// log, a fresh registry opens from it, and a damaged patch is never
/// trusted: the registry opens from an older checkpoint or the log, and
/// `check` reports it.
pub async fn patched_checkpoints_fold_and_survive_damage(f: &Fixture) {
    use modelreg::format::{CheckpointHead, decode_checkpoint_head, read_checkpoint};
    let reg = f.registry_with(|b| b.checkpoint_every(4).checkpoint_segment(16));
    let meta = reg.metadata_store().clone();
    let who = actor("alice");
    create(&reg, "pat").await; // 1
    for i in 0..39 {
        register_bytes(&reg, "pat", "m.bin", format!("patched {i}")).await; // 2..=40
    }
    let name = ModelName::new("pat").expect("valid");
    let mut patched = None;
    for k in 0..12u64 {
        let n = 1 + (k * 11) % 32;
        let metrics = Metrics::new().with("auc", k as f64 / 20.0).expect("finite");
        reg.acting_as(who.clone())
            .add_metrics(format!("pat/{n}"), metrics)
            .await
            .expect("metrics"); // 41..=52
        let cp = meta
            .latest_checkpoint("pat")
            .await
            .expect("read")
            .expect("a checkpoint");
        let CheckpointHead::Segmented(head) =
            decode_checkpoint_head(&name, cp.seq, &cp.bytes).expect("head")
        else {
            panic!("{}: a segmented checkpoint", f.name)
        };
        assert_eq!(head.format(), 7, "{}", f.name);
        let all = reg.events("pat").await.expect("events");
        let upto: Vec<_> = all.into_iter().filter(|e| e.seq <= cp.seq).collect();
        assert_eq!(
            read_checkpoint(meta.as_ref(), &name, cp.clone())
                .await
                .expect("reads"),
            ModelState::replay(upto).expect("replay"),
            "{}: checkpoint {}",
            f.name,
            cp.seq
        );
        if let Some(p) = head.patches().last() {
            patched = Some((cp, p.name()));
        }
    }
    let (cp, patch) = patched.expect("a head with a patch");
    let replayed = ModelState::replay(reg.events("pat").await.expect("events")).expect("replay");
    assert_eq!(f.fresh().await.model("pat").await.expect("model"), replayed);

    // Damage the patch behind the registry's back: that checkpoint is not
    // trusted, a fresh registry still opens to the fold of the log.
    meta.put_checkpoint_part("pat", &patch, Bytes::from_static(b"{\"torn"))
        .await
        .expect("overwrite the patch");
    assert_err!(
        read_checkpoint(meta.as_ref(), &name, cp.clone()).await,
        Error::Corrupt { .. }
    );
    assert_eq!(f.fresh().await.model("pat").await.expect("model"), replayed);
    let latest = meta
        .latest_checkpoint("pat")
        .await
        .expect("read")
        .expect("a checkpoint");
    if latest.seq == cp.seq {
        let report = f.fresh().await.check().await.expect("check");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.subject.contains(&format!("checkpoint {}", cp.seq))),
            "{}: check reports the damaged checkpoint: {:?}",
            f.name,
            report.problems
        );
    }
}

/// The names of the parts the checkpoint heads `meta` kept for `log` name,
/// and those heads, newest first (what a part collection marks).
async fn kept_heads(
    meta: &dyn modelreg::store::MetadataStore,
    log: &str,
) -> (BTreeSet<String>, Vec<modelreg::store::Checkpoint>) {
    use modelreg::format::{CheckpointHead, decode_checkpoint_head};
    let name = ModelName::new(log).expect("valid");
    let (mut named, mut heads) = (BTreeSet::new(), Vec::new());
    let mut next = meta.latest_checkpoint(log).await.expect("read");
    while let Some(cp) = next {
        if let CheckpointHead::Segmented(head) =
            decode_checkpoint_head(&name, cp.seq, &cp.bytes).expect("head")
        {
            named.extend(head.part_names());
        }
        next = match cp.seq {
            1 => None,
            seq => (meta.checkpoint_at_or_before(log, seq - 1).await).expect("read"),
        };
        heads.push(cp);
    }
    (named, heads)
}

/// The checkpoint parts of `log`: name → size.
async fn parts_of(meta: &dyn modelreg::store::MetadataStore, log: &str) -> BTreeMap<String, u64> {
    (meta.list_checkpoint_parts(log).await.expect("list"))
        .into_iter()
        .map(|p| (p.name, p.size))
        .collect()
}

/// A part name shaped like a segment's that no head names (what a writer
/// that crashed before its head leaves).
const STRAY_PART: &str =
    "00000000000000000099-0000000000000000000000000000000000000000000000000000000000000000";
/// A part of another kind beside the log: never touched by the collection
/// of checkpoint parts.
const OTHER_PART: &str = "notes-00000000000000000001-00000000000000000100";

/// The event archives among `names` (`events-<first>-<last>`, 20 digits
/// each) that a longer one from the same first event supersedes: what the
/// collection sweeps besides unnamed segments and patches.
fn superseded_archives<'a>(names: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    let archives: Vec<(&String, u64, u64)> = names
        .filter_map(|n| {
            let (first, last) = n.strip_prefix("events-")?.split_once('-')?;
            Some((n, first.parse().ok()?, last.parse().ok()?))
        })
        .collect();
    archives
        .iter()
        .filter(|(_, first, last)| archives.iter().any(|(_, f, l)| f == first && l > last))
        .map(|(n, ..)| (*n).clone())
        .collect()
}

/// Part collection (checkpoint every event, segments of 16 versions, 260
/// events, so the local and object stores prune heads when the log passes
/// 256): the first collection deletes nothing; a head listed before it
/// still reads whole after it (a reader that listed a head, then paused
/// while a collection ran); the second deletes exactly the segment-shaped
/// parts no kept head names and the event archives a longer one from the
/// same event supersedes, leaves other kinds of part alone, and every
/// kept head, a fresh open, time travel and the writer's next checkpoint
/// still read back as the fold of the log.
pub async fn checkpoint_parts_gc_keeps_what_kept_heads_name(f: &Fixture) {
    use modelreg::format::read_checkpoint;
    let every = |b: modelreg::RegistryBuilder| b.checkpoint_every(1).checkpoint_segment(16);
    let reg = f.registry_with(every);
    let meta = reg.metadata_store().clone();
    let name = ModelName::new("gcp").expect("valid");
    let who = reg.acting_as(actor("alice"));
    let mut k = 0u64;
    let metrics = |k: u64| {
        Metrics::new()
            .with("auc", k as f64 / 1000.0)
            .expect("finite")
    };
    create(&reg, "gcp").await; // 1
    for i in 0..20 {
        register_bytes(&reg, "gcp", "m.bin", format!("parts {i}")).await; // 2..=21
    }
    while k < 235 {
        who.add_metrics(format!("gcp/{}", 1 + k % 20), metrics(k))
            .await
            .expect("metrics"); // 22..=256
        k += 1;
    }
    // A reader lists an old head (before the log passes 256, every head is
    // kept on every backend) and pauses.
    let listed = (meta.checkpoint_at_or_before("gcp", 101).await)
        .expect("read")
        .expect("a checkpoint");
    assert_eq!(listed.seq, 101, "{}", f.name);
    while k < 239 {
        who.add_metrics(format!("gcp/{}", 1 + k % 20), metrics(k))
            .await
            .expect("metrics"); // 257..=260
        k += 1;
    }
    meta.put_checkpoint_part("gcp", STRAY_PART, Bytes::from_static(b"stray"))
        .await
        .expect("put");
    meta.put_checkpoint_part("gcp", OTHER_PART, Bytes::from_static(b"other"))
        .await
        .expect("put");
    let pruned = (meta.checkpoint_at_or_before("gcp", 101).await)
        .expect("read")
        .is_none_or(|cp| cp.seq != 101);

    let before = parts_of(meta.as_ref(), "gcp").await;
    let (named, _) = kept_heads(meta.as_ref(), "gcp").await;
    // Event archives (one per checkpoint here: each writes its block's
    // events so far) are never named; the shorter ones of a block are swept,
    // the longest stays.
    let superseded = superseded_archives(before.keys());
    let archives: BTreeSet<&String> = (before.keys())
        .filter(|n| n.starts_with("events-"))
        .collect();
    let unnamed: BTreeSet<&String> = (before.keys())
        .filter(|n| *n != OTHER_PART && !named.contains(*n))
        .filter(|n| !n.starts_with("events-") || superseded.contains(*n))
        .collect();
    assert!(unnamed.contains(&STRAY_PART.to_owned()));
    let unnamed_segments = unnamed.iter().filter(|n| !n.starts_with("events-"));
    assert_eq!(
        pruned,
        unnamed_segments.count() > 1,
        "{}: heads pruned",
        f.name
    );

    let first = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!(first.checkpoint_parts_deleted, 0, "{}", f.name);
    assert_eq!(
        first.checkpoint_parts,
        (before.len() - 1 - archives.len() + superseded.len()) as u64
    );
    assert_eq!(first.checkpoint_parts_named, named.len() as u64);
    assert_eq!(first.checkpoint_parts_pending, unnamed.len() as u64);
    assert_eq!(parts_of(meta.as_ref(), "gcp").await, before);
    // The paused reader goes on: every part of the head it listed is there.
    let events = reg.events("gcp").await.expect("events");
    let upto = |seq: u64| {
        ModelState::replay(events.iter().filter(|e| e.seq <= seq).cloned()).expect("replay")
    };
    assert_eq!(
        read_checkpoint(meta.as_ref(), &name, listed)
            .await
            .expect("the listed head reads after one collection"),
        upto(101),
        "{}",
        f.name
    );
    // A dry run says what the next collection deletes, and deletes nothing.
    let dry = (reg.gc(GcOptions::new(Duration::ZERO).dry_run(true)).await).expect("gc");
    assert_eq!(dry.checkpoint_parts_deleted, unnamed.len() as u64);
    assert_eq!(parts_of(meta.as_ref(), "gcp").await, before);

    let second = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    let after = parts_of(meta.as_ref(), "gcp").await;
    let mut expected: BTreeSet<&String> = named.iter().collect();
    let other = OTHER_PART.to_owned();
    expected.insert(&other);
    expected.extend(archives.iter().filter(|n| !superseded.contains(**n)));
    assert_eq!(
        after.keys().collect::<BTreeSet<_>>(),
        expected,
        "{}",
        f.name
    );
    assert_eq!(second.checkpoint_parts_deleted, unnamed.len() as u64);
    let freed: u64 = unnamed.iter().map(|n| before[*n]).sum();
    assert_eq!(second.checkpoint_part_bytes_freed, freed);
    eprintln!(
        "{}: checkpoint parts {} ({} bytes) before gc, {} ({} bytes) after; {} heads kept",
        f.name,
        before.len(),
        before.values().sum::<u64>(),
        after.len(),
        after.values().sum::<u64>(),
        kept_heads(meta.as_ref(), "gcp").await.1.len(),
    );

    // Everything still reads back: every kept head, a fresh open, time travel.
    let (_, heads) = kept_heads(meta.as_ref(), "gcp").await;
    for cp in heads {
        let seq = cp.seq;
        assert_eq!(
            read_checkpoint(meta.as_ref(), &name, cp)
                .await
                .expect("a kept head reads"),
            upto(seq),
            "{}: checkpoint {seq}",
            f.name
        );
    }
    assert_eq!(
        f.fresh().await.model("gcp").await.expect("model"),
        upto(260)
    );
    let traveller = f.registry_with(every);
    for e in events.iter().step_by(37) {
        assert_eq!(
            traveller.model_as_of("gcp", e.time).await.expect("as of"),
            ModelState::replay((events.iter()).filter(|x| x.time <= e.time).cloned())
                .expect("replay"),
            "{}: as of event {}",
            f.name,
            e.seq
        );
    }
    // The writer goes on from what it remembers; its checkpoints read back.
    register_bytes(&reg, "gcp", "m.bin", "after gc").await; // 261
    let cp = meta
        .latest_checkpoint("gcp")
        .await
        .expect("read")
        .expect("cp");
    assert_eq!(cp.seq, 261);
    let all = reg.events("gcp").await.expect("events");
    assert_eq!(
        read_checkpoint(meta.as_ref(), &name, cp)
            .await
            .expect("reads"),
        ModelState::replay(all).expect("replay")
    );
}

/// A kept head that cannot be decoded makes the part collection delete
/// nothing of its model (what it names is unknown), and say so.
pub async fn checkpoint_parts_gc_deletes_nothing_when_a_head_is_undecodable(f: &Fixture) {
    let reg = f.registry_with(|b| b.checkpoint_every(4).checkpoint_segment(16));
    let meta = reg.metadata_store().clone();
    create(&reg, "doubt").await; // 1
    for i in 0..11 {
        register_bytes(&reg, "doubt", "m.bin", format!("doubt {i}")).await; // 2..=12
    }
    meta.put_checkpoint_part("doubt", STRAY_PART, Bytes::from_static(b"stray"))
        .await
        .expect("put");
    // The partial event archives a later checkpoint's supersedes are
    // unnamed as well.
    let superseded = superseded_archives(parts_of(meta.as_ref(), "doubt").await.keys()).len();
    let first = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!(
        first.checkpoint_parts_pending,
        1 + superseded as u64,
        "{}",
        f.name
    );
    let before = parts_of(meta.as_ref(), "doubt").await;
    let latest = (meta.latest_checkpoint("doubt").await)
        .expect("read")
        .expect("a checkpoint");
    assert_eq!(latest.seq, 12);
    meta.put_checkpoint("doubt", 12, Bytes::from_static(b"{\"torn"))
        .await
        .expect("damage the head");
    let second = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!(second.checkpoint_part_sweeps_aborted, 1, "{}", f.name);
    assert_eq!(second.checkpoint_parts_deleted, 0, "{}", f.name);
    assert_eq!(parts_of(meta.as_ref(), "doubt").await, before);
    // With the head whole again, the stray part goes (the first collection's
    // memory survived the aborted one).
    meta.put_checkpoint("doubt", 12, latest.bytes)
        .await
        .expect("restore the head");
    let third = reg.gc(GcOptions::new(Duration::ZERO)).await.expect("gc");
    assert_eq!(
        third.checkpoint_parts_deleted,
        1 + superseded as u64,
        "{}",
        f.name
    );
    assert!(
        !parts_of(meta.as_ref(), "doubt")
            .await
            .contains_key(STRAY_PART)
    );
}

// ----- the audit trail at scale: tail, event archives, records ---------------------

/// The name of the event archive of events `first..=last` (the format pinned).
fn archive(first: u64, last: u64) -> String {
    format!("events-{first:020}-{last:020}")
}

/// Reads the whole audit trail of `model` from `reg` in pages of each size in
/// `sizes` and asserts each reading equals `log` (the log read forward)
/// newest first, as do `history` and pages from the middle of a block.
/// (Readings that fall back to the log's records, a request per record on
/// an object-storage server, use fewer, larger pages.)
async fn assert_history_is_the_log(
    reg: &Registry,
    model: &str,
    log: &[modelreg::Event],
    why: &str,
    sizes: &[usize],
) {
    use modelreg::HistoryFilter;
    let newest_first: Vec<_> = log.iter().rev().cloned().collect();
    let all = HistoryFilter::new();
    assert_eq!(
        reg.history(model, &all).await.expect("history"),
        newest_first,
        "{why}: history"
    );
    for &size in sizes {
        let mut read = Vec::new();
        let mut before = None;
        loop {
            let page = reg
                .history_page(model, &all, before, size)
                .await
                .expect("page");
            assert!(page.items.len() <= size, "{why}: page of {size}");
            read.extend(page.items);
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        assert_eq!(read.len(), newest_first.len(), "{why}: pages of {size}");
        assert!(
            read == newest_first,
            "{why}: pages of {size} differ from the log"
        );
    }
    // A page from the middle of a block, and one right at a block's end.
    let end = log.len() as u64 + 1;
    for before in [1100u64, 1025, 1001, 2].into_iter().filter(|&b| b <= end) {
        let page = reg
            .history_page(model, &all, Some(before), 50)
            .await
            .expect("page");
        let expected: Vec<_> = newest_first
            .iter()
            .filter(|e| e.seq < before)
            .take(50)
            .cloned()
            .collect();
        assert!(page.items == expected, "{why}: the page before {before}");
    }
}

/// The audit trail reads the same, page by page, whether its events come
/// from the writer's tail, from event archives (one per 1,024 events, and
/// the partial block each checkpoint writes), or from the log's records where
/// no archive covers them (a model written without checkpoints), and on a
/// registry that opened the model from a checkpoint (another process). A
/// damaged or missing archive is read from the log instead: flipped bits, a
/// truncation, an archive of other events under the name, or none at all
/// still give exactly the log's events.
pub async fn history_reads_tail_archives_and_records_alike(f: &Fixture) {
    let every = |b: modelreg::RegistryBuilder| b.checkpoint_every(100);
    let writer = f.registry_with(every);
    let meta = writer.metadata_store().clone();
    create(&writer, "trail").await; // 1
    let ci = writer.acting_as(actor("ci"));
    for i in 2..=1350u64 {
        ci.set_model_tags("trail", tags(&[("step", &i.to_string())]), vec![])
            .await
            .expect("tag");
    }
    let log = writer.events("trail").await.expect("events");
    assert_eq!(log.len(), 1350);
    // The complete first block (written at the checkpoint at 1100) and the
    // partial block of the last checkpoint.
    let mut archives = Vec::new();
    for (first, last) in [(1, 1024), (1025, 1300)] {
        let part = meta
            .get_checkpoint_part("trail", &archive(first, last))
            .await;
        match part {
            Ok(Some(bytes)) => archives.push(bytes),
            other => panic!("{}: archive {first}..={last}: {other:?}", f.name),
        }
    }
    let sizes = [7, 100, 1000];
    assert_history_is_the_log(&writer, "trail", &log, "the writer", &sizes).await;
    // Another process: the checkpoint at 1300, its tail after it, archives.
    let reader = f.registry_with(every);
    assert_history_is_the_log(&reader, "trail", &log, "a reader", &sizes).await;

    // Damaged archives, each read by another process: from the log instead.
    let (full, partial) = (archives[0].clone(), archives[1].clone());
    let mut flipped = full.to_vec();
    let n = flipped.len();
    flipped[n / 2] ^= 0x20;
    let damages: [(&str, Bytes, Bytes); 4] = [
        ("flipped", Bytes::from(flipped), partial.clone()),
        (
            "truncated",
            full.slice(..full.len() - 3),
            partial.slice(..10),
        ),
        // Each archive under the other's name: valid, but not these events.
        ("swapped", partial.clone(), full.clone()),
        ("empty", Bytes::new(), Bytes::new()),
    ];
    for (how, first, second) in damages {
        meta.put_checkpoint_part("trail", &archive(1, 1024), first)
            .await
            .expect("damage");
        meta.put_checkpoint_part("trail", &archive(1025, 1300), second)
            .await
            .expect("damage");
        // `history` and pages across both archives' ranges: a request per
        // record on object storage, so no sweep of every page size.
        assert_history_is_the_log(&f.registry_with(every), "trail", &log, how, &[]).await;
    }

    // The same log without checkpoints: no archive, every event a record.
    let plain = f.registry_with(|b| b.checkpoint_every(0));
    create(&plain, "plain").await;
    for i in 2..=300u64 {
        plain
            .acting_as(actor("ci"))
            .set_model_tags("plain", tags(&[("step", &i.to_string())]), vec![])
            .await
            .expect("tag");
    }
    let plain_log = plain.events("plain").await.expect("events");
    let none = meta.get_checkpoint_part("plain", &archive(1, 1024)).await;
    assert!(matches!(none, Ok(None)), "{}: no archive", f.name);
    let reader = f.registry_with(every);
    assert_history_is_the_log(&reader, "plain", &plain_log, "no archives", &[7, 100]).await;
}
