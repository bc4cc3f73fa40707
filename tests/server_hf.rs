//! The Hugging Face read path of `modelreg serve`: the real `huggingface_hub`
//! client downloads versions by every kind of revision and gets its own
//! exception types for what is missing (when `MODELREG_TEST_PYTHON` names a
//! Python with it; `bash .ci/run` sets it), and plain HTTP/1.1 requests, sent
//! byte for byte, check the headers, ranges, hostile paths, pagination and a
//! corrupt blob.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::http::{self, RawResponse, raw_request};
use modelreg::server::{ServerOptions, Tokens};
use modelreg::{
    Actor, ArtifactSource, CreateModel, NewVersion, Registry, SetAlias, Stage, VersionRecord,
};
use serde_json::Value;

/// Files by path.
type Files = BTreeMap<String, Vec<u8>>;

/// Bytes that look random (xorshift), so a shifted range or a mixed-up file
/// cannot pass for the right one.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn files(entries: &[(&str, Vec<u8>)]) -> Files {
    entries
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.clone()))
        .collect()
}

/// Version 1 of `fraud`: a file only it has, so a download of the wrong
/// version cannot match.
fn v1_files() -> Files {
    files(&[
        (
            "config.json",
            br#"{"model_type":"fraud","version":1}"#.to_vec(),
        ),
        ("sub/tokenizer.json", br#"{"vocab":["a","b"]}"#.to_vec()),
        ("model.safetensors", noise(1, 3 << 20)),
        ("empty.bin", Vec::new()),
        ("notes/only-in-v1.txt", b"kept for the audit\n".to_vec()),
    ])
}

/// Version 2 of `fraud` (in production): the tokenizer is version 1's.
fn v2_files() -> Files {
    files(&[
        (
            "config.json",
            br#"{"model_type":"fraud","version":2}"#.to_vec(),
        ),
        ("sub/tokenizer.json", br#"{"vocab":["a","b"]}"#.to_vec()),
        // Not a multiple of any chunk or buffer size.
        ("model.safetensors", noise(2, (3 << 20) + 7)),
        ("empty.bin", Vec::new()),
    ])
}

/// Version 3 of `fraud`, the latest but not in production: version 2's files
/// with another config, so `main` and `production` name different commits.
fn v3_files() -> Files {
    let mut f = v2_files();
    f.insert(
        "config.json".into(),
        br#"{"model_type":"fraud","version":3}"#.to_vec(),
    );
    f
}

fn source(files: &Files) -> ArtifactSource {
    ArtifactSource::files(files.iter().map(|(p, b)| (p.clone(), b.clone()))).expect("valid paths")
}

/// The commit id the server gives a version: 40 hex digits of its manifest
/// digest.
fn commit(v: &VersionRecord) -> String {
    v.artifact.to_hex()[..40].to_owned()
}

/// What the tests registered.
struct Seeded {
    registry: Registry,
    v1: Files,
    v2: Files,
    v3: Files,
    commit1: String,
    commit2: String,
    commit3: String,
    /// The commit of the only version of model `other`.
    other_commit: String,
}

/// `fraud` 1 (semver 1.0.0, alias `champion`), 2 (semver 1.1.0, in
/// production) and 3 (semver 2.0.0-rc.1, the latest), and `other` 1.
async fn seed(registry: Registry) -> Seeded {
    let me = registry.acting_as(Actor::new("tests").expect("an actor"));
    for model in ["fraud", "other"] {
        me.create_model(model, CreateModel::new())
            .await
            .unwrap_or_else(|e| panic!("create {model}: {e}"));
    }
    let (v1, v2, v3) = (v1_files(), v2_files(), v3_files());
    let mut commits = Vec::new();
    for (files, version) in [
        (&v1, NewVersion::new().semver("1.0.0").tag("team", "risk")),
        (&v2, NewVersion::new().semver("1.1.0")),
        (&v3, NewVersion::new().semver("2.0.0-rc.1")),
    ] {
        let r = me
            .register("fraud", source(files), version)
            .await
            .expect("register a version of fraud");
        commits.push(commit(&r));
    }
    me.promote_to("fraud/2", Stage::Production, "tests")
        .await
        .expect("promote fraud 2");
    me.set_alias("fraud/1", "champion", SetAlias::new())
        .await
        .expect("alias fraud 1");
    let other = me
        .register(
            "other",
            source(&files(&[("config.json", b"{\"other\":true}".to_vec())])),
            NewVersion::new(),
        )
        .await
        .expect("register other 1");
    let [commit1, commit2, commit3] = <[String; 3]>::try_from(commits).expect("three commits");
    Seeded {
        registry,
        v1,
        v2,
        v3,
        commit1,
        commit2,
        commit3,
        other_commit: commit(&other),
    }
}

/// A seeded registry in a temporary directory.
async fn local() -> (tempfile::TempDir, Seeded) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let registry = Registry::open_local(dir.path().join("registry"))
        .await
        .expect("open a local registry");
    let seeded = seed(registry).await;
    (dir, seeded)
}

/// Every file below `root` (following symbolic links, as the client's cache
/// uses them), except the client's own `.cache` directory.
fn read_tree(root: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, out: &mut Files) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            if rel == ".cache" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.insert(rel, bytes);
            }
        }
    }
    let mut out = Files::new();
    walk(root, root, &mut out);
    out
}

/// Asserts that `got` holds exactly `want`, naming the first difference
/// (the bytes are too long to print).
fn assert_same_files(got: &Files, want: &Files, what: &str) {
    let names = |f: &Files| f.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the file names differ");
    for (path, bytes) in want {
        assert!(
            got[path] == *bytes,
            "{what}: {path} differs ({} bytes received, {} expected)",
            got[path].len(),
            bytes.len()
        );
    }
}

/// The JSON after `RESULT ` in a client script's output.
fn result(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    serde_json::from_str(line).expect("the script prints JSON")
}

fn endpoint(server: &http::Running) -> Vec<(&'static str, String)> {
    vec![("HF_ENDPOINT", server.url())]
}

fn header<'a>(r: &'a RawResponse, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
}

fn json(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "status {}, not JSON ({e}): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

// ----- the real client ---------------------------------------------------------

const SNAPSHOTS: &str = r#"
import json, os
from huggingface_hub import snapshot_download
out = {}
for i, rev in enumerate(json.loads(os.environ["REVISIONS"])):
    kwargs = {} if rev is None else {"revision": rev}
    # A cache of its own per download, so each one goes over the wire.
    out[str(i)] = snapshot_download("fraud", cache_dir=f"cache-{i}", **kwargs)
out["local_dir"] = snapshot_download(
    "fraud", revision="champion", cache_dir="cache-local", local_dir="local")
print("RESULT " + json.dumps(out))
"#;

/// `snapshot_download` of `fraud` by each revision in `cases` (`None`: no
/// revision, so `main`), compared with what was registered.
fn check_snapshots(s: &Seeded, cases: &[(Option<&str>, &Files, &str)]) {
    let server = http::start(s.registry.clone(), ServerOptions::new());
    let work = tempfile::tempdir().expect("a temporary directory");
    let revisions: Vec<Option<&str>> = cases.iter().map(|c| c.0).collect();
    let mut env = endpoint(&server);
    env.push((
        "REVISIONS",
        serde_json::to_string(&revisions).expect("JSON"),
    ));
    let out = http::run_python(SNAPSHOTS, work.path(), &env);
    let paths = result(&out);
    for (i, (rev, want, commit)) in cases.iter().enumerate() {
        let what = format!("snapshot_download(revision={rev:?})");
        let dir = work
            .path()
            .join(paths[i.to_string()].as_str().expect("a path"));
        assert_same_files(&read_tree(&dir), want, &what);
        // The cache is laid out by the commit the server announced.
        assert_eq!(
            dir.file_name().and_then(|n| n.to_str()),
            Some(*commit),
            "{what}: snapshot folder"
        );
        // A named revision (`main` when none is given) is recorded as a ref.
        let name = rev.unwrap_or("main");
        if name != *commit {
            let cache = work
                .path()
                .join(format!("cache-{i}/models--fraud/refs/{name}"));
            let recorded = std::fs::read_to_string(&cache)
                .unwrap_or_else(|e| panic!("{what}: {}: {e}", cache.display()));
            assert_eq!(recorded, *commit, "{what}: refs/{name}");
        }
    }
    let local = PathBuf::from(paths["local_dir"].as_str().expect("a path"));
    assert_same_files(&read_tree(&local), &s.v1, "snapshot_download(local_dir=…)");
}

#[cfg_attr(
    not(modelreg_pyclients),
    ignore = "needs MODELREG_TEST_PYTHON (bash .ci/run sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_download_by_every_kind_of_revision() {
    let (_dir, s) = local().await;
    let (c1, c2, c3) = (s.commit1.as_str(), s.commit2.as_str(), s.commit3.as_str());
    check_snapshots(
        &s,
        &[
            (Some("production"), &s.v2, c2),
            (Some("champion"), &s.v1, c1),
            (Some("1"), &s.v1, c1),
            (Some("2"), &s.v2, c2),
            (Some("1.0.0"), &s.v1, c1),
            (Some("2.0.0-rc.1"), &s.v3, c3),
            (Some("latest"), &s.v3, c3),
            (Some(c1), &s.v1, c1),
            (Some(c2), &s.v2, c2),
            // No revision: `main`, the latest version, not production.
            (None, &s.v3, c3),
        ],
    );
}

const DOWNLOADS: &str = r#"
import json, os
from huggingface_hub import hf_hub_download
out = []
for i, (name, rev) in enumerate(json.loads(os.environ["FILES"])):
    kwargs = {} if rev is None else {"revision": rev}
    out.append(hf_hub_download("fraud", name, cache_dir=f"cache-{i}", **kwargs))
print("RESULT " + json.dumps(out))
"#;

#[cfg_attr(
    not(modelreg_pyclients),
    ignore = "needs MODELREG_TEST_PYTHON (bash .ci/run sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_hub_download_of_single_files() {
    let (_dir, s) = local().await;
    let server = http::start(s.registry.clone(), ServerOptions::new());
    let cases: Vec<(&str, Option<&str>, &Files, &str)> = vec![
        ("config.json", Some("production"), &s.v2, &s.commit2),
        ("sub/tokenizer.json", Some("champion"), &s.v1, &s.commit1),
        ("model.safetensors", Some("1.0.0"), &s.v1, &s.commit1),
        ("model.safetensors", None, &s.v3, &s.commit3),
        ("empty.bin", Some("2"), &s.v2, &s.commit2),
        (
            "notes/only-in-v1.txt",
            Some(s.commit1.as_str()),
            &s.v1,
            &s.commit1,
        ),
    ];
    let work = tempfile::tempdir().expect("a temporary directory");
    let wanted: Vec<(&str, Option<&str>)> = cases.iter().map(|c| (c.0, c.1)).collect();
    let mut env = endpoint(&server);
    env.push(("FILES", serde_json::to_string(&wanted).expect("JSON")));
    let out = http::run_python(DOWNLOADS, work.path(), &env);
    let paths = result(&out);
    for (i, (name, rev, want, commit)) in cases.iter().enumerate() {
        let what = format!("hf_hub_download({name:?}, revision={rev:?})");
        let path = work.path().join(paths[i].as_str().expect("a path"));
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            got == want[*name],
            "{what}: {} bytes received, {} expected",
            got.len(),
            want[*name].len()
        );
        assert!(
            path.to_string_lossy()
                .contains(&format!("/snapshots/{commit}/")),
            "{what}: {} is not in the commit's snapshot",
            path.display()
        );
        // The cached blob is named by the ETag the server sends.
        let head = raw_request(
            server.addr,
            "HEAD",
            &format!("/fraud/resolve/{}/{name}", rev.unwrap_or("main")),
            &[],
        );
        let etag = header(&head, "etag").trim_matches('"');
        let blob = std::fs::read_link(&path).unwrap_or_else(|e| panic!("{what}: a link: {e}"));
        assert_eq!(
            blob.file_name().and_then(|n| n.to_str()),
            Some(etag),
            "{what}: cached blob name"
        );
    }
}

const ERRORS: &str = r#"
import os
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

def expect(name, exc_type, call):
    try:
        call()
    except exc_type as e:
        print(f"RAISED {name} {type(e).__name__}")
        return
    except Exception as e:
        print(f"WRONG {name} {type(e).__name__}: {e}")
        return
    print(f"WRONG {name}: nothing raised")

other = os.environ["OTHER_COMMIT"]
expect("snapshot-unknown-revision", RevisionNotFoundError,
       lambda: snapshot_download("fraud", revision="nope", cache_dir="c1"))
expect("snapshot-foreign-commit", RevisionNotFoundError,
       lambda: snapshot_download("fraud", revision=other, cache_dir="c2"))
expect("download-unknown-revision", RevisionNotFoundError,
       lambda: hf_hub_download("fraud", "config.json", revision="nope", cache_dir="c3"))
expect("download-foreign-commit", RevisionNotFoundError,
       lambda: hf_hub_download("fraud", "config.json", revision=other, cache_dir="c4"))
expect("snapshot-unknown-repo", RepositoryNotFoundError,
       lambda: snapshot_download("nosuchmodel", cache_dir="c5"))
expect("download-unknown-repo", RepositoryNotFoundError,
       lambda: hf_hub_download("nosuchmodel", "config.json", cache_dir="c6"))
expect("download-unknown-file", RemoteEntryNotFoundError,
       lambda: hf_hub_download("fraud", "nope.json", revision="production", cache_dir="c7"))
# RemoteEntryNotFoundError is an EntryNotFoundError, which older code catches.
expect("download-unknown-file-base", EntryNotFoundError,
       lambda: hf_hub_download("fraud", "sub/nope.json", cache_dir="c8"))
"#;

#[cfg_attr(
    not(modelreg_pyclients),
    ignore = "needs MODELREG_TEST_PYTHON (bash .ci/run sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_things_raise_the_clients_own_exceptions() {
    let (_dir, s) = local().await;
    let server = http::start(s.registry.clone(), ServerOptions::new());
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut env = endpoint(&server);
    env.push(("OTHER_COMMIT", s.other_commit.clone()));
    let out = http::run_python(ERRORS, work.path(), &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "RAISED snapshot-unknown-revision RevisionNotFoundError",
        "RAISED snapshot-foreign-commit RevisionNotFoundError",
        "RAISED download-unknown-revision RevisionNotFoundError",
        "RAISED download-foreign-commit RevisionNotFoundError",
        "RAISED snapshot-unknown-repo RepositoryNotFoundError",
        "RAISED download-unknown-repo RepositoryNotFoundError",
        "RAISED download-unknown-file RemoteEntryNotFoundError",
        "RAISED download-unknown-file-base RemoteEntryNotFoundError",
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "missing {expected:?} in:\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const LISTINGS: &str = r#"
import json
from huggingface_hub import HfApi, RepoFile, RepoFolder, get_hf_file_metadata, hf_hub_url
api = HfApi()
meta = get_hf_file_metadata(hf_hub_url("fraud", "sub/tokenizer.json", revision="production"))
info = api.model_info("fraud", revision="production", files_metadata=True)
many = list(api.list_repo_tree("many", recursive=True))
sub = list(api.list_repo_tree("fraud", path_in_repo="sub", revision="champion"))
print("RESULT " + json.dumps({
    "sha": info.sha,
    "siblings": {s.rfilename: s.size for s in info.siblings},
    "files": [f.path for f in many if isinstance(f, RepoFile)],
    "folders": [f.path for f in many if isinstance(f, RepoFolder)],
    "sub": [f.path for f in sub],
    "head": {"location": meta.location, "commit": meta.commit_hash, "etag": meta.etag,
             "size": meta.size},
}))
"#;

/// More files than one page of the tree holds.
const MANY: usize = 1_000;

#[cfg_attr(
    not(modelreg_pyclients),
    ignore = "needs MODELREG_TEST_PYTHON (bash .ci/run sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_info_and_paginated_trees_through_the_client() {
    let (_dir, s) = local().await;
    let mut many: Vec<(String, &[u8])> = (0..MANY)
        .map(|i| (format!("shards/{i:04}.bin"), &b"shard"[..]))
        .collect();
    many.push(("config.json".to_owned(), b"{}"));
    let me = s.registry.acting_as(Actor::new("tests").expect("an actor"));
    me.create_model("many", CreateModel::new())
        .await
        .expect("create many");
    me.register(
        "many",
        ArtifactSource::files(many.iter().map(|(p, b)| (p.clone(), b.to_vec()))).expect("paths"),
        NewVersion::new(),
    )
    .await
    .expect("register many");
    let server = http::start(s.registry.clone(), ServerOptions::new());
    let work = tempfile::tempdir().expect("a temporary directory");
    let got = result(&http::run_python(LISTINGS, work.path(), &endpoint(&server)));

    assert_eq!(got["sha"], s.commit2.as_str());
    let sizes: BTreeMap<String, u64> =
        serde_json::from_value(got["siblings"].clone()).expect("sizes");
    let want: BTreeMap<String, u64> =
        s.v2.iter()
            .map(|(p, b)| (p.clone(), b.len() as u64))
            .collect();
    assert_eq!(sizes, want, "model_info(files_metadata=True).siblings");

    // 1,002 entries: the client must follow the Link to the second page.
    let mut files: Vec<String> = serde_json::from_value(got["files"].clone()).expect("paths");
    files.sort();
    let mut expected: Vec<String> = many.into_iter().map(|(p, _)| p).collect();
    expected.sort();
    assert_eq!(files.len(), MANY + 1, "every file, across pages");
    assert_eq!(files, expected);
    assert_eq!(got["folders"], serde_json::json!(["shards"]));
    assert_eq!(got["sub"], serde_json::json!(["sub/tokenizer.json"]));

    // What hf_hub_download reads from a HEAD by a named revision: the commit,
    // and the commit's URL as the place to GET from.
    let head = &got["head"];
    assert_eq!(head["commit"], s.commit2.as_str());
    assert_eq!(
        head["location"],
        format!(
            "{}/fraud/resolve/{}/sub/tokenizer.json",
            server.url(),
            s.commit2
        )
    );
    assert_eq!(head["size"], s.v2["sub/tokenizer.json"].len());
    assert!(
        head["etag"].as_str().is_some_and(|e| e.len() == 64),
        "{head}"
    );
}

// ----- plain HTTP --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_get_carry_the_hub_headers_and_agree() {
    let (_dir, s) = local().await;
    let server = http::start(s.registry.clone(), ServerOptions::new());
    for (name, bytes) in &s.v2 {
        let url = format!("/fraud/resolve/production/{name}");
        let head = raw_request(server.addr, "HEAD", &url, &[]);
        assert_eq!(head.status, 200, "HEAD {url}");
        assert!(head.body.is_empty(), "HEAD {url} has no body");
        assert_eq!(header(&head, "x-repo-commit"), s.commit2);
        let etag = header(&head, "etag");
        let hex = etag.trim_matches('"');
        assert!(
            etag.starts_with('"') && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "ETag {etag:?} is a quoted 64-hex name"
        );
        assert_eq!(header(&head, "x-linked-etag"), etag);
        // The SHA-256 recorded at ingest, what the Hub clients expect.
        use sha2::Digest as _;
        let sha: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, sha, "{name}: the ETag is the file's SHA-256");
        assert_eq!(header(&head, "x-linked-size"), bytes.len().to_string());
        // A named revision points at the same file by commit, where the
        // client then downloads from.
        assert_eq!(
            header(&head, "location"),
            format!("{}/fraud/resolve/{}/{name}", server.url(), s.commit2)
        );
        assert_eq!(header(&head, "content-length"), bytes.len().to_string());
        assert!(
            !head.headers.iter().any(|(k, _)| k.starts_with("x-xet")),
            "no Xet headers: {:?}",
            head.headers
        );

        let get = raw_request(server.addr, "GET", &url, &[]);
        assert_eq!(get.status, 200, "GET {url}");
        assert_eq!(header(&get, "content-length"), bytes.len().to_string());
        assert_eq!(header(&get, "etag"), etag);
        assert!(get.body == *bytes, "GET {url}: the registered bytes");
    }
    // The same file by a revision of version 1 is version 1's.
    let head = raw_request(
        server.addr,
        "HEAD",
        "/fraud/resolve/champion/config.json",
        &[],
    );
    assert_eq!(header(&head, "x-repo-commit"), s.commit1);
    // By commit, the URL is already pinned.
    let by_commit = raw_request(
        server.addr,
        "HEAD",
        &format!("/fraud/resolve/{}/config.json", s.commit1),
        &[],
    );
    assert_eq!(by_commit.status, 200);
    assert_eq!(by_commit.header("location"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_and_conditional_requests() {
    let (_dir, s) = local().await;
    let server = http::start(s.registry.clone(), ServerOptions::new());
    let url = "/fraud/resolve/production/model.safetensors";
    let bytes = &s.v2["model.safetensors"];
    let size = bytes.len();

    let part = raw_request(server.addr, "GET", url, &[("Range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, bytes[10..20]);
    assert_eq!(
        header(&part, "content-range"),
        format!("bytes 10-19/{size}")
    );
    let tail = raw_request(server.addr, "GET", url, &[("Range", "bytes=-5")]);
    assert_eq!((tail.status, &tail.body[..]), (206, &bytes[size - 5..]));

    let past = raw_request(
        server.addr,
        "GET",
        url,
        &[("Range", &format!("bytes={size}-"))],
    );
    assert_eq!(past.status, 416);
    assert_eq!(header(&past, "content-range"), format!("bytes */{size}"));

    let etag = header(&raw_request(server.addr, "HEAD", url, &[]), "etag").to_owned();
    let same = raw_request(server.addr, "GET", url, &[("If-None-Match", &etag)]);
    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());
    let other = raw_request(
        server.addr,
        "GET",
        url,
        &[(
            "If-None-Match",
            "\"0000000000000000000000000000000000000000000000000000000000000000\"",
        )],
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.body.len(), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_get_nothing_from_outside_the_version() {
    let (dir, s) = local().await;
    // A file beside the registry that no request may reach.
    std::fs::write(dir.path().join("secret.txt"), "TOP-SECRET").expect("write");
    let server = http::start(s.registry.clone(), ServerOptions::new());
    let mut attempts = Vec::new();
    for depth in 1..=6 {
        let up = "../".repeat(depth);
        let up_encoded = "%2e%2e%2f".repeat(depth);
        let up_mixed = "..%2F".repeat(depth);
        for target in ["secret.txt", "etc/passwd"] {
            attempts.push(format!("/fraud/resolve/production/{up}{target}"));
            attempts.push(format!("/fraud/resolve/production/{up_encoded}{target}"));
            attempts.push(format!("/fraud/resolve/production/{up_mixed}{target}"));
            attempts.push(format!("/fraud/resolve/production/sub/{up}{target}"));
            attempts.push(format!("/fraud/resolve/{up_mixed}{target}/config.json"));
            attempts.push(format!(
                "/api/models/fraud/tree/production/{up_encoded}{target}"
            ));
        }
    }
    let secret = dir.path().join("secret.txt");
    attempts.extend([
        "/fraud/resolve/production//etc/passwd".to_owned(),
        "/fraud/resolve/production/%2Fetc%2Fpasswd".to_owned(),
        format!("/fraud/resolve/production/{}", secret.display()),
        "/fraud/resolve/production/config.json%00.txt".to_owned(),
        "/fraud/resolve/production/sub%5C..%5C..%5Csecret.txt".to_owned(),
        "/fraud/resolve/production/.%2fconfig.json".to_owned(),
        "/%2e%2e/resolve/production/config.json".to_owned(),
    ]);
    for path in &attempts {
        let r = raw_request(server.addr, "GET", path, &[]);
        assert!(
            (400..500).contains(&r.status),
            "GET {path}: status {} ({})",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("TOP-SECRET") && !body.contains("root:"),
            "GET {path} leaked: {body}"
        );
        if path.starts_with("/fraud/resolve/production/") {
            // The Hub's shape: a code the clients map, and a message that says why.
            assert!(r.header("x-error-code").is_some(), "GET {path}: {r:?}");
            let message = json(&r)["error"].as_str().unwrap_or_default().to_owned();
            assert!(!message.is_empty(), "GET {path}: no message");
        }
    }
    let r = raw_request(
        server.addr,
        "GET",
        "/fraud/resolve/production/..%2F..%2Fsecret.txt",
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(header(&r, "x-error-code"), "EntryNotFound");
    assert!(
        header(&r, "x-error-message").contains(".."),
        "the message says what is wrong: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_resolve_to_their_commits_and_no_further() {
    let (_dir, s) = local().await;
    let server = http::start(s.registry.clone(), ServerOptions::new());
    let (c1, c2, c3) = (s.commit1.as_str(), s.commit2.as_str(), s.commit3.as_str());
    let full1 = s
        .registry
        .resolve("fraud/1")
        .await
        .expect("fraud/1")
        .artifact
        .to_hex();
    for (rev, commit) in [
        ("production", c2),
        ("champion", c1),
        ("latest", c3),
        ("main", c3),
        ("1", c1),
        ("2", c2),
        ("1.0.0", c1),
        ("1.1.0", c2),
        ("2.0.0-rc.1", c3),
        ("3", c3),
        (c1, c1),
        (c2, c2),
        (full1.as_str(), c1),
    ] {
        let r = raw_request(
            server.addr,
            "GET",
            &format!("/api/models/fraud/revision/{rev}"),
            &[],
        );
        assert_eq!(r.status, 200, "revision {rev}: {r:?}");
        let info = json(&r);
        assert_eq!(info["sha"], commit, "revision {rev}");
        assert_eq!(info["id"], "fraud");
        assert_eq!(info["modelId"], "fraud");
        assert_eq!(info["private"], false);
    }
    let info = json(&raw_request(server.addr, "GET", "/api/models/fraud", &[]));
    assert_eq!(info["sha"], c3, "no revision is main: the latest");
    let v1 = json(&raw_request(
        server.addr,
        "GET",
        "/api/models/fraud/revision/1",
        &[],
    ));
    assert_eq!(v1["tags"], serde_json::json!(["team:risk"]));
    let names: Vec<&str> = v1["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .filter_map(|s| s["rfilename"].as_str())
        .collect();
    assert_eq!(names, s.v1.keys().map(String::as_str).collect::<Vec<_>>());

    // Another model's commit is no revision of this one, wherever it is used.
    for path in [
        format!("/api/models/fraud/revision/{}", s.other_commit),
        format!("/api/models/fraud/tree/{}", s.other_commit),
        format!("/fraud/resolve/{}/config.json", s.other_commit),
    ] {
        let r = raw_request(server.addr, "GET", &path, &[]);
        assert_eq!(r.status, 404, "GET {path}");
        assert_eq!(header(&r, "x-error-code"), "RevisionNotFound", "GET {path}");
    }
    let own = raw_request(
        server.addr,
        "HEAD",
        &format!("/other/resolve/{}/config.json", s.other_commit),
        &[],
    );
    assert_eq!(own.status, 200, "the commit is its own model's");

    for (path, code) in [
        ("/api/models/fraud/revision/nope", "RevisionNotFound"),
        ("/api/models/fraud/revision/4", "RevisionNotFound"),
        ("/api/models/fraud/revision/9.9.9", "RevisionNotFound"),
        ("/api/models/fraud/revision/staging", "RevisionNotFound"),
        (
            "/api/models/fraud/revision/refs%2Fpr%2F1",
            "RevisionNotFound",
        ),
        ("/api/models/nosuchmodel/revision/main", "RepoNotFound"),
        ("/api/models/Fraud/revision/main", "RepoNotFound"),
        ("/nosuchmodel/resolve/main/config.json", "RepoNotFound"),
        ("/fraud/resolve/main/nope.json", "EntryNotFound"),
        ("/fraud/resolve/main/sub", "EntryNotFound"),
        ("/api/models/fraud/tree/main/nope", "EntryNotFound"),
        ("/api/models/fraud/tree/main/config.json", "EntryNotFound"),
    ] {
        let r = raw_request(server.addr, "GET", path, &[]);
        assert_eq!(r.status, 404, "GET {path}: {r:?}");
        assert_eq!(header(&r, "x-error-code"), code, "GET {path}");
        assert!(
            json(&r)["error"].as_str().is_some_and(|m| !m.is_empty()),
            "GET {path}: the Hub's {{\"error\": message}}"
        );
    }
    // A missing file's 404 names the commit, as the Hub's does.
    let r = raw_request(
        server.addr,
        "HEAD",
        "/fraud/resolve/champion/nope.json",
        &[],
    );
    assert_eq!(header(&r, "x-repo-commit"), c1);

    // An alias named `main` is the model's own default revision.
    s.registry
        .acting_as(Actor::new("tests").expect("an actor"))
        .set_alias("fraud/1", "main", SetAlias::new())
        .await
        .expect("alias main");
    for path in ["/api/models/fraud", "/api/models/fraud/revision/main"] {
        let info = json(&raw_request(server.addr, "GET", path, &[]));
        assert_eq!(info["sha"], c1, "GET {path} after the alias main was set");
    }
}

/// Follows `Link` headers from `first`, returning every entry.
fn all_pages(server: &http::Running, first: &str) -> (Vec<Value>, usize) {
    let mut entries = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_owned());
    while let Some(url) = next.take() {
        let r = raw_request(server.addr, "GET", &url, &[]);
        assert_eq!(r.status, 200, "GET {url}: {r:?}");
        pages += 1;
        entries.extend(json(&r).as_array().expect("a list").iter().cloned());
        if let Some(link) = r.header("link") {
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.split_once(">; rel=\"next\""))
                .map(|(u, _)| u)
                .unwrap_or_else(|| panic!("not a next link: {link}"));
            let origin = server.url();
            next = Some(
                target
                    .strip_prefix(&origin)
                    .unwrap_or_else(|| panic!("{target} is not on {origin}"))
                    .to_owned(),
            );
        }
    }
    (entries, pages)
}

fn paths(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap_or("?");
            let path = e["path"].as_str().unwrap_or("?");
            if kind == "directory" {
                format!("{path}/")
            } else {
                path.to_owned()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_list_entries_and_pages_chain_by_link() {
    let (_dir, s) = local().await;
    let server = http::start(s.registry.clone(), ServerOptions::new());

    let (all, pages) = all_pages(&server, "/api/models/fraud/tree/champion?recursive=true");
    assert_eq!(pages, 1);
    assert_eq!(
        paths(&all),
        [
            "config.json",
            "empty.bin",
            "model.safetensors",
            "notes/",
            "notes/only-in-v1.txt",
            "sub/",
            "sub/tokenizer.json"
        ]
    );
    for e in &all {
        let path = e["path"].as_str().expect("a path");
        let oid = e["oid"].as_str().expect("an oid");
        assert!(
            oid.len() == 40 && oid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{path}: oid {oid}"
        );
        if e["type"] == "file" {
            let size = s.v1[path].len() as u64;
            assert_eq!(e["size"], size, "{path}");
            assert_eq!(e["lfs"]["size"], size, "{path}");
            assert_eq!(e["lfs"]["pointerSize"], 134, "{path}");
            // The lfs oid is the ETag the file is served with.
            let head = raw_request(
                server.addr,
                "HEAD",
                &format!("/fraud/resolve/champion/{path}"),
                &[],
            );
            assert_eq!(
                e["lfs"]["oid"].as_str(),
                Some(header(&head, "etag").trim_matches('"')),
                "{path}"
            );
        } else {
            assert_eq!(e["size"], 0, "{path}");
        }
    }

    // Pages of two, chained by Link, add up to the whole listing; the links
    // name the commit, not the moving revision.
    let (paged, pages) = all_pages(
        &server,
        "/api/models/fraud/tree/champion?recursive=true&limit=2",
    );
    assert_eq!(pages, 4);
    assert_eq!(paged, all);
    let first = raw_request(
        server.addr,
        "GET",
        "/api/models/fraud/tree/champion?recursive=True&limit=2",
        &[],
    );
    assert!(
        header(&first, "link").contains(&format!("/api/models/fraud/tree/{}?", s.commit1)),
        "{:?}",
        first.header("link")
    );

    let (top, _) = all_pages(&server, "/api/models/fraud/tree/champion");
    assert_eq!(
        paths(&top),
        [
            "config.json",
            "empty.bin",
            "model.safetensors",
            "notes/",
            "sub/"
        ]
    );
    let (sub, _) = all_pages(&server, "/api/models/fraud/tree/champion/sub");
    assert_eq!(paths(&sub), ["sub/tokenizer.json"]);
    let (sub, _) = all_pages(&server, "/api/models/fraud/tree/champion/sub?limit=1");
    assert_eq!(paths(&sub), ["sub/tokenizer.json"]);
    // The client sends a directory as one escaped segment.
    let (encoded, _) = all_pages(&server, "/api/models/fraud/tree/champion/notes%2F");
    assert_eq!(paths(&encoded), ["notes/only-in-v1.txt"]);

    for bad in [
        "/api/models/fraud/tree/champion?cursor=99",
        "/api/models/fraud/tree/champion?limit=0",
        "/api/models/fraud/tree/champion?recursive=perhaps",
    ] {
        assert_eq!(
            raw_request(server.addr, "GET", bad, &[]).status,
            400,
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_cut_off_before_its_end() {
    use std::os::unix::fs::PermissionsExt;

    let (_dir, s) = local().await;
    let manifest = s.registry.manifest("fraud/2").await.expect("manifest");
    let entry = manifest
        .get("model.safetensors")
        .expect("the weights")
        .clone();
    let blob = PathBuf::from(s.registry.artifact_store().location(&entry.digest));
    let mut bytes = std::fs::read(&blob).expect("read the blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&blob, &bytes).expect("damage the blob");

    let server = http::start(s.registry.clone(), ServerOptions::new());
    let url = "/fraud/resolve/production/model.safetensors";
    let r = raw_request(server.addr, "GET", url, &[]);
    let announced: usize = header(&r, "content-length").parse().expect("a length");
    assert_eq!(announced, bytes.len());
    assert!(
        r.body.len() < announced,
        "a corrupt file must not arrive whole ({} of {announced} bytes)",
        r.body.len()
    );
    // The other files are unharmed.
    let ok = raw_request(
        server.addr,
        "GET",
        "/fraud/resolve/production/config.json",
        &[],
    );
    assert_eq!(ok.body, s.v2["config.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_answer_in_the_hub_dialect() {
    let (_dir, s) = local().await;
    let token = "reader-token-0123456789";
    let tokens = Tokens::parse(&format!("ci:reader:{token}")).expect("tokens");
    let server = http::start(s.registry.clone(), ServerOptions::new().tokens(tokens));
    let url = "/fraud/resolve/production/config.json";
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-the-token-at-all")],
    ] {
        let r = raw_request(server.addr, "HEAD", url, &headers);
        assert_eq!(r.status, 401, "{headers:?}");
        // What the Hub answers for a repository the caller may not see.
        assert_eq!(header(&r, "x-error-code"), "RepoNotFound");
    }
    let bearer = format!("Bearer {token}");
    let r = raw_request(server.addr, "GET", url, &[("Authorization", &bearer)]);
    assert_eq!((r.status, &r.body), (200, &s.v2["config.json"]));
}

// ----- over S3 -----------------------------------------------------------------

#[cfg_attr(
    any(not(modelreg_s3), not(modelreg_pyclients)),
    ignore = "needs MODELREG_TEST_S3_URL with the aws feature and MODELREG_TEST_PYTHON (bash .ci/run sets them)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_download_over_s3() {
    let url = common::servers::Server::S3.unique_url();
    let registry = Registry::open_url(&url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    let s = seed(registry).await;
    let (c1, c2, c3) = (s.commit1.as_str(), s.commit2.as_str(), s.commit3.as_str());
    check_snapshots(
        &s,
        &[
            (Some("production"), &s.v2, c2),
            (Some(c1), &s.v1, c1),
            (None, &s.v3, c3),
        ],
    );
}
