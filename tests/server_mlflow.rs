//! `modelreg serve`'s MLflow registry API: the real `MlflowClient` (upload,
//! register, alias, search, tag, describe, transition, download by alias and
//! by number, delete as deprecation, its exception types), and raw HTTP/1.1
//! for what a client would never send (missing roles, traversal paths,
//! oversized uploads, malformed JSON, unknown endpoints).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::http::{self, Running};
use common::servers::Server;
use modelreg::server::{ServerOptions, Tokens};
use modelreg::{Actor, ArtifactSource, CreateModel, HistoryFilter, NewVersion, Registry, SetAlias};
use serde_json::Value;

const ADMIN: &str = "ml-admin-token-0123456789";
const WRITER: &str = "ml-writer-token-0123456789";
const READER: &str = "ml-reader-token-0123456789";
/// The identity of `ADMIN`, the token the client flows use.
const IDENTITY: &str = "ml@example.com";

fn tokens() -> Tokens {
    Tokens::parse(&format!(
        "{IDENTITY}:admin:{ADMIN} wes@example.com:writer:{WRITER} rita@example.com:reader:{READER}"
    ))
    .expect("valid tokens")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Bytes that do not compress or repeat in any useful way.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// One HTTP/1.1 request on a fresh connection: status, lowercase headers,
/// body (de-chunked). With `chunked`, the body is sent in chunks of that size.
fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: Option<usize>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("a timeout");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut wire = Vec::new();
    match chunked {
        Some(size) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            for c in body.chunks(size) {
                wire.extend(
                    format!("{:x}\r\n", c.len())
                        .bytes()
                        .chain(c.iter().copied()),
                );
                wire.extend(b"\r\n");
            }
            wire.extend(b"0\r\n\r\n");
        }
        None => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            wire.extend(body);
        }
    }
    // The server may answer before reading the whole body: write errors are
    // ignored and its answer read.
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(&wire));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)?.parse().ok());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = &raw[split + 4..];
    let mut out = Vec::new();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&rest[..eol]).ok();
            let size = size.and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
            let Some(size) = size.filter(|&n| n > 0 && rest.len() >= eol + 2 + n) else {
                break;
            };
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = rest.get(eol + 4 + size..).unwrap_or_default();
        }
    } else {
        out = rest.to_vec();
    }
    (status.expect("a status line"), headers, out)
}

/// A JSON call through `raw_request`: status and parsed body.
fn call(s: &Running, method: &str, target: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, _, body) = raw_request(s.addr, method, target, &headers, body.as_bytes(), None);
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!("{method} {target}: {status} with a body that is not JSON ({e}): {body:?}")
    });
    (status, json)
}

fn put_file(s: &Running, path: &str, token: &str, bytes: &[u8]) -> (u16, Value) {
    let (status, body) = artifact_request(s, "PUT", path, token, bytes);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A request to `/api/2.0/mlflow-artifacts/artifacts/{path}`: status and body.
fn artifact_request(
    s: &Running,
    method: &str,
    path: &str,
    token: &str,
    bytes: &[u8],
) -> (u16, Vec<u8>) {
    let auth = format!("Bearer {token}");
    let target = format!("/api/2.0/mlflow-artifacts/artifacts/{path}");
    let (status, _, body) = raw_request(
        s.addr,
        method,
        &target,
        &[("Authorization", &auth)],
        bytes,
        None,
    );
    (status, body)
}

/// Every file below `dir`, as relative paths.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).expect("below").display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every value under a key `version` anywhere in `v`.
fn versions_in(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                if k == "version" {
                    out.push(item.clone());
                }
                versions_in(item, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| versions_in(i, out)),
        _ => {}
    }
}

// ----- the real client --------------------------------------------------------

/// The files `client_flow` uploads: several, nested, one of 3 MiB.
fn write_model_dir(dir: &Path) {
    std::fs::create_dir_all(dir.join("conf/deep")).expect("mkdir");
    std::fs::write(dir.join("MLmodel"), "flavors:\n  python_function: {}\n").expect("write");
    std::fs::write(dir.join("model.bin"), payload(3 << 20, 7)).expect("write");
    std::fs::write(dir.join("conf/params.json"), r#"{"lr": 0.001}"#).expect("write");
    std::fs::write(dir.join("conf/deep/notes.txt"), "trained on november").expect("write");
}

const FLOW: &str = r#"
import hashlib, os, pathlib, shutil
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import RestException
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.model_registry.rest_store import RestStore

url = os.environ["SERVER_URL"]
src = pathlib.Path(os.environ["SRC"])
out = pathlib.Path(os.environ["OUT"])
mlflow.set_tracking_uri(url)
c = MlflowClient(tracking_uri=url)

def digests(root):
    root = pathlib.Path(root)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}

rm = c.create_registered_model("m", tags={"team": "fraud"}, description="fraud detector")
assert rm.name == "m", rm
c.create_registered_model("other")

repo = MlflowArtifactsRepository("mlflow-artifacts:/uploads/x", tracking_uri=url)
repo.log_artifacts(str(src))
listed = sorted((f.path, f.is_dir) for f in repo.list_artifacts())
assert listed == [("MLmodel", False), ("conf", True), ("model.bin", False)], listed

# READY at once: the client must not poll model-versions/get.
polls = []
real_get = RestStore.get_model_version
def counting_get(self, *a, **k):
    polls.append(a)
    return real_get(self, *a, **k)
RestStore.get_model_version = counting_get
v1 = c.create_model_version("m", source="mlflow-artifacts:/uploads/x", description="first",
                            tags={"stage": "candidate"})
RestStore.get_model_version = real_get
assert (v1.version, v1.status) == ("1", "READY"), v1
assert polls == [], polls
assert v1.source == "mlflow-artifacts:/uploads/x", v1.source
assert v1.tags == {"stage": "candidate"}, v1.tags

# Version 2: the same files and one more.
src2 = out / "src2"
shutil.copytree(src, src2)
(src2 / "extra.txt").write_text("version two")
MlflowArtifactsRepository("mlflow-artifacts:/uploads/y", tracking_uri=url).log_artifacts(str(src2))
v2 = c.create_model_version("m", source="mlflow-artifacts:/uploads/y")
assert (v2.version, v2.status) == ("2", "READY"), v2

c.set_registered_model_alias("m", "champion", "2")
got = c.get_model_version_by_alias("m", "champion")
assert (got.version, got.aliases) == ("2", ["champion"]), got
assert sorted(v.version for v in c.search_model_versions("name='m'")) == ["1", "2"]
assert [m.name for m in c.search_registered_models(filter_string="name LIKE 'm%'")] == ["m"]
assert [m.name for m in c.search_registered_models(order_by=["name DESC"])] == ["other", "m"]
rm = c.get_registered_model("m")
assert rm.aliases == {"champion": "2"}, rm.aliases
assert [(v.version, v.current_stage) for v in rm.latest_versions] == [("2", "None")], rm.latest_versions
assert (rm.tags, rm.description) == ({"team": "fraud"}, "fraud detector"), rm

c.set_registered_model_tag("m", "owner", "risk")
c.delete_registered_model_tag("m", "team")
assert c.get_registered_model("m").tags == {"owner": "risk"}
c.set_model_version_tag("m", "1", "validated", "yes")
c.delete_model_version_tag("m", "1", "stage")
assert c.get_model_version("m", "1").tags == {"validated": "yes"}
c.update_model_version("m", "1", description="retrained")
assert c.get_model_version("m", "1").description == "retrained"
c.update_registered_model("m", description="detects fraud")
assert c.get_registered_model("m").description == "detects fraud"

c.transition_model_version_stage("m", "1", "Production")
assert c.get_model_version("m", "1").current_stage == "Production"
try:
    c.update_model_version("m", "1", description="edited in production")
    raise AssertionError("a production version's description was edited")
except RestException as e:
    assert e.error_code == "INVALID_STATE", e
assert c.get_model_version("m", "1").description == "retrained"
assert [v.version for v in c.get_latest_versions("m", stages=["Production"])] == ["1"]
rm = c.get_registered_model("m")
assert sorted((v.current_stage, v.version) for v in rm.latest_versions) == [("None", "2"), ("Production", "1")]

expected1 = digests(src)
expected2 = digests(src2)
assert len(expected1) == 4 and len(expected2) == 5
for uri, want in [("models:/m@champion", expected2), ("models:/m/1", expected1)]:
    dst = out / uri.replace(":", "_").replace("/", "_").replace("@", "_")
    dst.mkdir()
    got = mlflow.artifacts.download_artifacts(uri, dst_path=str(dst))
    assert digests(got) == want, (uri, sorted(digests(got)), sorted(want))

# Deleting a version deprecates it; a model is never deleted.
c.delete_model_version("m", "2")
v = c.get_model_version("m", "2")
assert v.status_message.startswith("deprecated by ml@example.com"), v.status_message
assert [x.version for x in c.get_registered_model("m").latest_versions] == ["1"]
try:
    c.delete_registered_model("m")
    raise AssertionError("delete_registered_model succeeded")
except RestException as e:
    assert e.error_code == "INVALID_PARAMETER_VALUE", e
print("MLFLOW-FLOW-OK")
"#;

/// Runs `FLOW` against a server over `registry`, then checks on the Rust side
/// who the audit trail says made every change.
fn client_flow(registry: Registry, dir: &Path) {
    let src = dir.join("src");
    write_model_dir(&src);
    let staging = dir.join("staging");
    let server = http::start(
        registry.clone(),
        ServerOptions::new().tokens(tokens()).staging_dir(&staging),
    );
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let run = http::run_python(
        FLOW,
        dir,
        &[
            ("SERVER_URL", server.url()),
            ("MLFLOW_TRACKING_TOKEN", ADMIN.to_owned()),
            ("SRC", src.display().to_string()),
            ("OUT", out.display().to_string()),
        ],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("MLFLOW-FLOW-OK"), "{stdout}");

    runtime().block_on(async {
        for model in ["m", "other"] {
            let events = registry
                .history(model, &HistoryFilter::new())
                .await
                .expect("history");
            assert!(!events.is_empty());
            for e in &events {
                assert_eq!(e.actor.as_str(), IDENTITY, "{model}: {e:?}");
            }
        }
        // MLflow's update replaced the version's own description, audited.
        let v1 = registry.resolve("m/1").await.expect("v1");
        assert_eq!(v1.description, "retrained");
        assert!(
            !v1.tags
                .iter()
                .any(|(k, _)| k.as_str() == "modelreg.mlflow.description")
        );
        let edits = registry
            .history("m", &HistoryFilter::new().kind("version_description_set"))
            .await
            .expect("history");
        assert_eq!(edits.len(), 1, "{edits:?}");
        let v2 = registry.resolve("m/2").await.expect("v2");
        assert!(v2.deprecated.is_some());
        assert_eq!(v2.files, 5);
        // Each registration consumed its upload (the downloads above came
        // from the versions), and nothing half-written or half-removed stays.
        assert!(files_below(&staging.join("mlflow-artifacts")).is_empty());
        assert!(files_below(&staging.join("mlflow-artifacts.tmp")).is_empty());
    });
}

#[test]
#[cfg_attr(
    not(modelreg_pyclients),
    ignore = "needs MODELREG_TEST_PYTHON (bash .ci/run sets it)"
)]
fn mlflow_client_registers_aliases_searches_and_downloads() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = runtime()
        .block_on(Registry::open_local(dir.path().join("registry")))
        .expect("open");
    client_flow(registry, dir.path());
}

#[test]
#[cfg_attr(
    any(not(modelreg_s3), not(modelreg_pyclients)),
    ignore = "needs MODELREG_TEST_S3_URL with the aws feature, and MODELREG_TEST_PYTHON (bash .ci/run sets both)"
)]
fn mlflow_client_flow_on_s3() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = runtime()
        .block_on(Registry::open_url(&Server::S3.unique_url()))
        .expect("open the S3 registry");
    client_flow(registry, dir.path());
}

const ERRORS: &str = r#"
import os
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

c = MlflowClient(tracking_uri=os.environ["SERVER_URL"])

def outcome(f):
    try:
        f()
    except RestException as e:
        return f"RestException {e.error_code}"
    except MlflowException as e:
        return f"MlflowException {e.error_code}"
    return "no error"

print("missing:", outcome(lambda: c.get_registered_model("missing")))
c.create_registered_model("m")
print("again:", outcome(lambda: c.create_registered_model("m")))
print("bad-key:", outcome(lambda: c.set_registered_model_tag("m", "my key", "v")))
print("bad-source:", outcome(lambda: c.create_model_version("m", source="s3://bucket/model")))
print("not-uploaded:", outcome(lambda: c.create_model_version("m", source="mlflow-artifacts:/never/uploaded")))
print("no-version:", outcome(lambda: c.get_model_version("m", "7")))
print("no-alias:", outcome(lambda: c.get_model_version_by_alias("m", "nope")))
print("rename:", outcome(lambda: c.rename_registered_model("m", "n")))
os.environ["MLFLOW_TRACKING_TOKEN"] = os.environ["READER_TOKEN"]
print("reader-write:", outcome(lambda: c.create_registered_model("r")))
os.environ["MLFLOW_TRACKING_TOKEN"] = "not-a-token-0123456789"
print("bad-token:", outcome(lambda: c.get_registered_model("m")))
"#;

#[test]
#[cfg_attr(
    not(modelreg_pyclients),
    ignore = "needs MODELREG_TEST_PYTHON (bash .ci/run sets it)"
)]
fn mlflow_client_sees_errors_as_rest_exceptions() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = http::start(
        Registry::in_memory(),
        ServerOptions::new()
            .tokens(tokens())
            .staging_dir(dir.path().join("staging")),
    );
    let run = http::run_python(
        ERRORS,
        dir.path(),
        &[
            ("SERVER_URL", server.url()),
            ("MLFLOW_TRACKING_TOKEN", ADMIN.to_owned()),
            ("READER_TOKEN", READER.to_owned()),
        ],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    for line in [
        "missing: RestException RESOURCE_DOES_NOT_EXIST",
        "again: RestException RESOURCE_ALREADY_EXISTS",
        "bad-key: RestException INVALID_PARAMETER_VALUE",
        "bad-source: RestException INVALID_PARAMETER_VALUE",
        "not-uploaded: RestException INVALID_PARAMETER_VALUE",
        "no-version: RestException RESOURCE_DOES_NOT_EXIST",
        "no-alias: RestException RESOURCE_DOES_NOT_EXIST",
        "rename: RestException INVALID_PARAMETER_VALUE",
        "reader-write: RestException PERMISSION_DENIED",
        "bad-token: RestException UNAUTHENTICATED",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

// ----- raw HTTP ---------------------------------------------------------------

/// A registry with model `m` (tag `team`), version 1 (tag `k`) and alias
/// `champion`, made in-process by `setup`; and a server over it with one
/// staged upload at `up/a/f.bin`.
struct Seeded {
    _dir: tempfile::TempDir,
    root: PathBuf,
    staging: PathBuf,
    registry: Registry,
    server: Running,
    rt: tokio::runtime::Runtime,
}

fn seeded(options: ServerOptions) -> Seeded {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().to_owned();
    let staging = root.join("staging");
    let rt = runtime();
    let registry = Registry::in_memory();
    rt.block_on(async {
        let setup = registry.acting_as(Actor::new("setup").expect("actor"));
        setup
            .create_model("m", CreateModel::new().tag("team", "fraud"))
            .await
            .expect("create");
        let v = setup
            .register(
                "m",
                ArtifactSource::files([("MLmodel", "x"), ("w/model.bin", "weights")])
                    .expect("files"),
                NewVersion::new().tag("k", "v"),
            )
            .await
            .expect("register");
        setup
            .set_alias(&v, "champion", SetAlias::new())
            .await
            .expect("alias");
    });
    let server = http::start(
        registry.clone(),
        options.tokens(tokens()).staging_dir(&staging),
    );
    let (status, _) = put_file(&server, "up/a/f.bin", WRITER, b"staged bytes");
    assert_eq!(status, 200);
    Seeded {
        _dir: dir,
        root,
        staging,
        registry,
        server,
        rt,
    }
}

impl Seeded {
    /// What a refused write must not change: each model's events, and every
    /// file below the test's directory.
    fn snapshot(&self) -> (Vec<(String, usize)>, Vec<String>) {
        let events = self.rt.block_on(async {
            let mut out = Vec::new();
            for m in self.registry.list_models().await.expect("list") {
                let n = self.registry.events(&m).await.expect("events").len();
                out.push((m.to_string(), n));
            }
            out
        });
        (events, files_below(&self.root))
    }
}

/// Every write route, with a body that succeeds for the right role, and
/// whether it needs admin rather than writer.
fn write_routes() -> Vec<(&'static str, &'static str, &'static str, bool)> {
    vec![
        (
            "POST",
            "registered-models/create",
            r#"{"name":"new","user_id":"mallory"}"#,
            false,
        ),
        (
            "PATCH",
            "registered-models/update",
            r#"{"name":"m","description":"d"}"#,
            false,
        ),
        (
            "POST",
            "registered-models/set-tag",
            r#"{"name":"m","key":"a","value":"b"}"#,
            false,
        ),
        (
            "DELETE",
            "registered-models/delete-tag",
            r#"{"name":"m","key":"team"}"#,
            false,
        ),
        (
            "POST",
            "registered-models/alias",
            r#"{"name":"m","alias":"best","version":"1"}"#,
            false,
        ),
        (
            "DELETE",
            "registered-models/alias",
            r#"{"name":"m","alias":"champion"}"#,
            false,
        ),
        (
            "POST",
            "model-versions/create",
            r#"{"name":"m","source":"mlflow-artifacts:/up/a"}"#,
            false,
        ),
        (
            "PATCH",
            "model-versions/update",
            r#"{"name":"m","version":"1","description":"d"}"#,
            false,
        ),
        (
            "POST",
            "model-versions/set-tag",
            r#"{"name":"m","version":"1","key":"a","value":"b"}"#,
            false,
        ),
        (
            "DELETE",
            "model-versions/delete-tag",
            r#"{"name":"m","version":"1","key":"k"}"#,
            false,
        ),
        (
            "POST",
            "model-versions/transition-stage",
            r#"{"name":"m","version":"1","stage":"Staging"}"#,
            false,
        ),
        (
            "DELETE",
            "model-versions/delete",
            r#"{"name":"m","version":"1"}"#,
            true,
        ),
        // Refused for every role, but the role is checked first.
        (
            "POST",
            "registered-models/rename",
            r#"{"name":"m","new_name":"n"}"#,
            false,
        ),
        (
            "DELETE",
            "registered-models/delete",
            r#"{"name":"m"}"#,
            true,
        ),
    ]
}

#[test]
fn every_write_needs_its_role_and_changes_nothing_without_it() {
    let s = seeded(ServerOptions::new());
    let before = s.snapshot();
    for (method, route, body, admin) in write_routes() {
        let target = format!("/api/2.0/mlflow/{route}");
        let mut lesser = vec![
            (None, 401, "UNAUTHENTICATED"),
            (Some(READER), 403, "PERMISSION_DENIED"),
        ];
        if admin {
            lesser.push((Some(WRITER), 403, "PERMISSION_DENIED"));
        }
        for (token, status, code) in lesser {
            let (got, json) = call(&s.server, method, &target, token, body);
            assert_eq!(
                (got, json["error_code"].as_str()),
                (status, Some(code)),
                "{method} {route} as {token:?}: {json}"
            );
        }
    }
    let (got, json) = raw_put(&s, "up/b/g.bin", None);
    assert_eq!(
        (got, json["error_code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (got, json) = raw_put(&s, "up/b/g.bin", Some(READER));
    assert_eq!(
        (got, json["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    assert_eq!(s.snapshot(), before, "a refused write changed something");

    // With the right role, each of them does what it says (so the refusals
    // above were about the role, not the request).
    for (method, route, body, admin) in write_routes() {
        let target = format!("/api/2.0/mlflow/{route}");
        let token = if admin { ADMIN } else { WRITER };
        let (got, json) = call(&s.server, method, &target, Some(token), body);
        let refused_for_all = route.ends_with("rename")
            || route.ends_with("/delete") && !route.starts_with("model-versions");
        let want = if refused_for_all { 400 } else { 200 };
        assert_eq!(got, want, "{method} {route}: {json}");
    }
    let (got, _) = raw_put(&s, "up/b/g.bin", Some(WRITER));
    assert_eq!(got, 200);
    // The actor is the token's identity, whatever the body said.
    s.rt.block_on(async {
        let events = s
            .registry
            .history("new", &HistoryFilter::new())
            .await
            .expect("history");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor.as_str(), "wes@example.com");
        let v2 = s
            .registry
            .resolve("m/2")
            .await
            .expect("created through the API");
        assert_eq!(v2.created_by.as_str(), "wes@example.com");
        let v1 = s.registry.resolve("m/1").await.expect("v1");
        assert!(v1.deprecated.is_some(), "model-versions/delete deprecates");
    });
}

fn raw_put(s: &Seeded, path: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let target = format!("/api/2.0/mlflow-artifacts/artifacts/{path}");
    let (status, _, body) = raw_request(s.server.addr, "PUT", &target, &headers, b"bytes", None);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn uploads_stay_inside_staging_and_within_their_limit() {
    let s = seeded(ServerOptions::new().max_upload_bytes(1024));
    let before = s.snapshot();
    let escape = format!("escape-{}", std::process::id());
    let auth = format!("Bearer {WRITER}");
    for path in [
        format!("../{escape}"),
        format!("%2e%2e/{escape}"),
        format!("%2E%2E/%2e%2e/{escape}"),
        format!("up/%2e%2e/%2e%2e/{escape}"),
        format!("..%2f..%2f{escape}"),
        format!("/tmp/{escape}"),
        format!("%2Ftmp%2F{escape}"),
        format!("up//{escape}"),
        format!("models/m/1/{escape}"),
    ] {
        let target = format!("/api/2.0/mlflow-artifacts/artifacts/{path}");
        let (status, _, body) = raw_request(
            s.server.addr,
            "PUT",
            &target,
            &[("Authorization", &auth)],
            b"x",
            None,
        );
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            (status, json["error_code"].as_str()),
            (400, Some("INVALID_PARAMETER_VALUE")),
            "{path}: {json}"
        );
    }
    for dir in [
        s.root.parent().expect("a parent"),
        Path::new("/tmp"),
        Path::new("/"),
    ] {
        assert!(
            !dir.join(&escape).exists(),
            "{} written",
            dir.join(&escape).display()
        );
    }
    assert_eq!(s.snapshot(), before);

    // Too large: declared up front (refused before a byte is read), or found
    // while a chunked body streams. Nothing is staged, no temp file stays.
    let big = payload(1500, 1);
    for chunked in [None, Some(700)] {
        let (status, _, body) = raw_request(
            s.server.addr,
            "PUT",
            "/api/2.0/mlflow-artifacts/artifacts/up/big.bin",
            &[("Authorization", &auth)],
            &big,
            chunked,
        );
        assert_eq!(
            status,
            413,
            "{chunked:?}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(s.snapshot(), before, "{chunked:?}");
    }
    // At the limit it is accepted, and served back byte for byte.
    let exact = payload(1024, 2);
    let (status, _, _) = raw_request(
        s.server.addr,
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/up/exact.bin",
        &[("Authorization", &auth)],
        &exact,
        Some(300),
    );
    assert_eq!(status, 200);
    let (status, _, body) = raw_request(
        s.server.addr,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts/up/exact.bin",
        &[("Authorization", &auth)],
        b"",
        None,
    );
    assert_eq!((status, body), (200, exact));
    assert!(files_below(&s.staging.join("mlflow-artifacts.tmp")).is_empty());
}

#[test]
fn malformed_requests_unknown_endpoints_and_versions_as_strings() {
    let s = seeded(ServerOptions::new().max_json_bytes(4096));
    let api = |route: &str| format!("/api/2.0/mlflow/{route}");
    for body in [
        r#"{"name":"#,
        "[1,2]",
        r#"{"name":5}"#,
        "\u{0}",
        r#"{"name":"Upper Case"}"#,
    ] {
        let (status, json) = call(
            &s.server,
            "POST",
            &api("registered-models/create"),
            Some(ADMIN),
            body,
        );
        assert_eq!(
            (status, json["error_code"].as_str()),
            (400, Some("INVALID_PARAMETER_VALUE")),
            "{body:?}: {json}"
        );
    }
    let huge = format!(r#"{{"name":"m","description":"{}"}}"#, "x".repeat(5000));
    let (status, _) = call(
        &s.server,
        "PATCH",
        &api("registered-models/update"),
        Some(ADMIN),
        &huge,
    );
    assert_eq!(status, 413);
    for (method, target) in [
        ("GET", "/api/2.0/mlflow/experiments/search"),
        ("POST", "/api/2.0/mlflow/runs/create"),
        ("GET", "/api/2.0/mlflow/logged-models/m-123"),
        ("GET", "/api/3.0/mlflow/server-info"),
        ("PUT", "/api/2.0/mlflow/registered-models/create"),
        ("POST", "/api/2.0/mlflow/registered-models/get"),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/up/x"),
        ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/up/a/f.bin"),
    ] {
        let (status, json) = call(&s.server, method, target, Some(ADMIN), "{}");
        assert_eq!(
            (status, json["error_code"].as_str()),
            (404, Some("ENDPOINT_NOT_FOUND")),
            "{method} {target}: {json}"
        );
    }
    for (filter, what) in [
        ("name = 'm' OR name = 'x'", "models"),
        ("creation_timestamp > 1", "versions"),
    ] {
        let route = if what == "models" {
            "registered-models/search"
        } else {
            "model-versions/search"
        };
        let q = url_encode(filter);
        let (status, json) = call(
            &s.server,
            "GET",
            &format!("{}?filter={q}", api(route)),
            Some(READER),
            "",
        );
        assert_eq!(status, 400, "{filter}: {json}");
        assert!(
            json["message"]
                .as_str()
                .is_some_and(|m| m.contains("supported")),
            "{json}"
        );
    }
    // The server still answers, and every `version` it sends is a string.
    let (status, created) = call(
        &s.server,
        "POST",
        &api("model-versions/create"),
        Some(WRITER),
        r#"{"name":"m","source":"mlflow-artifacts://host:5000/up/a/"}"#,
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["model_version"]["version"], "2");
    assert_eq!(created["model_version"]["status"], "READY");
    let mut all = Vec::new();
    versions_in(&created, &mut all);
    for target in [
        "registered-models/get?name=m",
        "registered-models/search",
        "registered-models/alias?name=m&alias=champion",
        "registered-models/get-latest-versions?name=m",
        "model-versions/get?name=m&version=1",
        "model-versions/search?filter=name%3D%27m%27&order_by=version_number%20DESC",
    ] {
        let (status, json) = call(&s.server, "GET", &api(target), Some(READER), "");
        assert_eq!(status, 200, "{target}: {json}");
        versions_in(&json, &mut all);
    }
    assert!(all.len() >= 8, "{all:?}");
    assert!(all.iter().all(Value::is_string), "{all:?}");
    let (_, search) = call(
        &s.server,
        "GET",
        &api(
            "model-versions/search?filter=name%3D%27m%27&order_by=version_number%20DESC&max_results=1",
        ),
        Some(READER),
        "",
    );
    assert_eq!(search["model_versions"][0]["version"], "2");
    let token = search["next_page_token"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, next) = call(
        &s.server,
        "GET",
        &api(&format!(
            "model-versions/search?filter=name%3D%27m%27&order_by=version_number%20DESC&max_results=1&page_token={}",
            url_encode(&token)
        )),
        Some(READER),
        "",
    );
    assert_eq!(next["model_versions"][0]["version"], "1");
    assert!(next.get("next_page_token").is_none(), "{next}");

    // The registered version's files under models/, its download URI.
    let (_, uri) = call(
        &s.server,
        "GET",
        &api("model-versions/get-download-uri?name=m&version=1"),
        Some(READER),
        "",
    );
    assert_eq!(uri["artifact_uri"], "mlflow-artifacts:/models/m/1");
    let (_, listed) = call(
        &s.server,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts?path=models/m/1",
        Some(READER),
        "",
    );
    assert_eq!(
        listed["files"],
        serde_json::json!([
            {"path": "MLmodel", "is_dir": false, "file_size": 1},
            {"path": "w", "is_dir": true},
        ])
    );
    let auth = format!("Bearer {READER}");
    let (status, headers, body) = raw_request(
        s.server.addr,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts/models/m/1/w/model.bin",
        &[("Authorization", &auth)],
        b"",
        None,
    );
    assert_eq!((status, body.as_slice()), (200, b"weights".as_slice()));
    assert!(headers.iter().any(|(k, _)| k == "etag"), "{headers:?}");
}

/// GETs a file of the artifact API: status and body.
fn get_artifact(s: &Running, path: &str) -> (u16, Vec<u8>) {
    artifact_request(s, "GET", path, READER, b"")
}

#[test]
fn registering_consumes_the_staged_upload() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let staging = dir.path().join("staging");
    // A local registry on the staging directory's filesystem: the staged
    // files are hard-linked into the store, so removing them must leave the
    // blobs whole.
    let registry = runtime()
        .block_on(Registry::open_local(dir.path().join("registry")))
        .expect("open");
    let server = http::start(
        registry.clone(),
        ServerOptions::new().tokens(tokens()).staging_dir(&staging),
    );
    let weights = payload(1 << 20, 3);
    for (path, bytes) in [
        ("up/c/MLmodel", b"flavors: {}".as_slice()),
        ("up/c/w/model.bin", &weights),
        ("up/other/keep.bin", b"not registered"),
        ("single/model.bin", b"one file"),
    ] {
        assert_eq!(put_file(&server, path, WRITER, bytes).0, 200, "{path}");
    }
    let api = "/api/2.0/mlflow/model-versions/create";
    for (source, n) in [
        ("mlflow-artifacts:/up/c", "1"),
        ("mlflow-artifacts:/single/model.bin", "2"),
    ] {
        let body = format!(r#"{{"name":"m","source":"{source}"}}"#);
        call(
            &server,
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            Some(WRITER),
            r#"{"name":"m"}"#,
        );
        let (status, json) = call(&server, "POST", api, Some(WRITER), &body);
        assert_eq!(status, 200, "{source}: {json}");
        assert_eq!(json["model_version"]["version"], n);
        assert_eq!(
            json["model_version"]["source"], source,
            "the source is still reported"
        );
    }
    // Only the registered sources are gone (with the directories they
    // emptied); the other upload and the staging area's own directories stay.
    assert_eq!(
        files_below(&staging.join("mlflow-artifacts")),
        ["up/other/keep.bin"]
    );
    assert!(!staging.join("mlflow-artifacts/up/c").exists());
    assert!(!staging.join("mlflow-artifacts/single").exists());
    let tmp: Vec<_> = std::fs::read_dir(staging.join("mlflow-artifacts.tmp"))
        .expect("the temp dir")
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(get_artifact(&server, "up/c/w/model.bin").0, 404);

    // The versions still read byte for byte, verified as they stream.
    assert_eq!(
        get_artifact(&server, "models/m/1/w/model.bin"),
        (200, weights.clone())
    );
    assert_eq!(
        get_artifact(&server, "models/m/1/MLmodel"),
        (200, b"flavors: {}".to_vec())
    );
    assert_eq!(
        get_artifact(&server, "models/m/2/model.bin"),
        (200, b"one file".to_vec())
    );
    runtime().block_on(async {
        for v in ["m/1", "m/2"] {
            registry.verify(v).await.expect("every blob intact");
        }
    });

    // A second registration from a consumed source says why it cannot.
    let (status, json) = call(
        &server,
        "POST",
        api,
        Some(WRITER),
        r#"{"name":"m","source":"mlflow-artifacts:/up/c"}"#,
    );
    assert_eq!(
        (status, json["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
    let message = json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("removed once a version is registered"),
        "{message}"
    );
}

/// Writes `path` with its modification time `age` in the past.
fn write_aged(path: &Path, bytes: &[u8], age: std::time::Duration) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - age))
        .expect("set the modification time");
}

/// Waits up to 20 s for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn stale_uploads_and_crash_leftovers_are_swept_at_startup() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let staging = dir.path().join("staging");
    let staged = staging.join("mlflow-artifacts");
    let tmp = staging.join("mlflow-artifacts.tmp");
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    // What an earlier server left: uploads nobody registered, a temp file of
    // an upload a crash cut off, a consumed source it did not get to delete.
    write_aged(&staged.join("old/x/model.bin"), b"old weights", two_days);
    write_aged(&staged.join("old/MLmodel"), b"old", two_days);
    write_aged(&staged.join("mixed/stale.bin"), b"old", two_days);
    write_aged(
        &staged.join("mixed/recent.bin"),
        b"recent",
        std::time::Duration::from_secs(3600),
    );
    write_aged(
        &tmp.join(".tmp-4294967294-00000000000000ab"),
        b"half",
        two_days,
    );
    write_aged(
        &tmp.join("consumed-4294967294-00000000000000cd/model.bin"),
        b"gone",
        std::time::Duration::ZERO,
    );

    let server = http::start(
        Registry::in_memory(),
        ServerOptions::new().tokens(tokens()).staging_dir(&staging),
    );
    assert_eq!(put_file(&server, "new/model.bin", WRITER, b"fresh").0, 200);
    eventually("the startup sweep removes the stale uploads", || {
        files_below(&staged) == ["mixed/recent.bin", "new/model.bin"]
    });
    assert!(
        !staged.join("old").exists(),
        "the directories they emptied go too"
    );
    eventually("the crash leftovers go too", || {
        std::fs::read_dir(&tmp).map_or(0, |d| d.count()) == 0
    });
    assert_eq!(
        get_artifact(&server, "new/model.bin"),
        (200, b"fresh".to_vec())
    );
    assert_eq!(get_artifact(&server, "old/MLmodel").0, 404);
}

#[test]
fn uploads_nobody_registers_expire_while_the_server_runs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let staging = dir.path().join("staging");
    let server = http::start(
        Registry::in_memory(),
        ServerOptions::new()
            .tokens(tokens())
            .staging_dir(&staging)
            .staged_upload_max_age(std::time::Duration::from_secs(2)),
    );
    assert_eq!(put_file(&server, "up/model.bin", WRITER, b"bytes").0, 200);
    assert_eq!(
        get_artifact(&server, "up/model.bin"),
        (200, b"bytes".to_vec())
    );
    eventually("a periodic sweep removes the upload once stale", || {
        !staging.join("mlflow-artifacts/up").exists()
    });
    assert_eq!(get_artifact(&server, "up/model.bin").0, 404);
    let (status, json) = call(
        &server,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        Some(WRITER),
        r#"{"name":"m","source":"mlflow-artifacts:/up"}"#,
    );
    assert_eq!(
        (status, json["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{json}"
    );
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Registering a version imports its files into the store, which for a large
/// model on object storage outlasts any fixed request limit. Only reading the
/// client's JSON is timed: a registration slower than `request_timeout`
/// completes and answers 200, instead of a 408 that makes the client retry a
/// registration that may already be recorded.
#[test]
fn a_registration_slower_than_the_request_limit_completes() {
    use common::faulty_store::{Faults, FaultyStore};
    use std::sync::Arc;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("a temp dir");
    let faults = Faults::new();
    let inner: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let (metadata, artifacts) = modelreg::store::object::stores_in(
        FaultyStore::wrap(inner, Arc::clone(&faults)),
        &object_store::path::Path::from("reg"),
    );
    let registry = Registry::builder()
        .metadata(Arc::new(metadata))
        .artifacts(Arc::new(artifacts))
        .build()
        .expect("a registry");
    let limit = Duration::from_millis(100);
    let server = http::start(
        registry.clone(),
        ServerOptions::new()
            .tokens(tokens())
            .staging_dir(dir.path().join("staging"))
            .request_timeout(limit),
    );
    // Large enough to go up in parts, each held back longer than the limit.
    let weights = payload(11 << 20, 9);
    assert_eq!(put_file(&server, "slow/model.bin", WRITER, &weights).0, 200);
    let (status, _) = call(
        &server,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        Some(WRITER),
        r#"{"name":"slow"}"#,
    );
    assert_eq!(status, 200);
    faults.delay_parts(3 * limit);
    let started = std::time::Instant::now();
    let (status, json) = call(
        &server,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        Some(WRITER),
        r#"{"name":"slow","source":"mlflow-artifacts:/slow/model.bin"}"#,
    );
    let took = started.elapsed();
    assert_eq!(status, 200, "{json}");
    assert!(
        took > limit,
        "the registration was not slow ({took:?}): the test proves nothing"
    );
    assert_eq!(json["model_version"]["version"], "1");
    faults.heal();
    assert_eq!(
        get_artifact(&server, "models/slow/1/model.bin"),
        (200, weights)
    );
    // The role is still checked before the body is read, and the size after.
    let huge = format!(
        r#"{{"name":"slow","description":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let api = "/api/2.0/mlflow/model-versions/create";
    let (status, json) = call(&server, "POST", api, Some(READER), &huge);
    assert_eq!(
        (status, &json["error_code"]),
        (403, &Value::from("PERMISSION_DENIED")),
        "{json}"
    );
    let (status, _) = call(&server, "POST", api, Some(WRITER), &huge);
    assert_eq!(status, 413);
    // A client that stalls before its JSON is complete is still cut off.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "POST /api/2.0/mlflow/model-versions/create HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {WRITER}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"name\":"
    )
    .expect("send a partial body");
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .expect("an answer while the body is incomplete");
    assert_eq!(&head, b"HTTP/1.1 408", "a stalled body is timed");
}
