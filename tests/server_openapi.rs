//! The REST API's OpenAPI document (`GET /openapi.json`) against the server:
//! every documented operation is routed and nothing else is answered at its
//! path, every operation that needs more than reading is in the role test's
//! table, real responses match their schemas (an event stream's head only: its
//! body does not end), and the committed copy `docs/openapi.json` is what the
//! code generates (`MODELREG_BLESS=1` rewrites it).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::http::{Reply, Running, multipart, request, start};
use common::rest::{ADMIN, READER, WRITER, bearer, role_routes, seeded, server, token_of};
use modelreg::server::{ServerOptions, Webhook};
use modelreg::{
    Actor, ArtifactSource, CodeRef, DatasetRef, DatasetRole, Environment, NewVersion, Registry,
    Relation, Stage, TrafficSplit,
};
use serde_json::Value;

const BLESS: &str = "MODELREG_BLESS=1 cargo test --features serve --test server_openapi";

/// Every method an OpenAPI path item can hold, in the document's spelling.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn fetch(s: &Running, method: &str, path: &str, token: &str, body: Option<&Value>) -> Reply {
    let auth = bearer(token);
    let mut headers = vec![("Authorization", auth.as_str())];
    let text = body.map(Value::to_string).unwrap_or_default();
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(s.addr, method, path, &headers, text.as_bytes())
}

/// Whether `op` answers an event stream, whose body never ends.
fn is_stream(op: &Value) -> bool {
    op["responses"]["200"]["content"]
        .get("text/event-stream")
        .is_some()
}

/// [`fetch`] of a `GET` whose success is an event stream: of a 200 only the
/// head is read (the body is left empty and incomplete), any other answer is
/// read whole.
fn fetch_stream(s: &Running, path: &str, token: &str) -> Reply {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(s.addr).expect("connect to the server");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("a timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") && conn.read(&mut byte).expect("read the head") == 1 {
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = Vec::new();
    if status != 200 {
        conn.read_to_end(&mut body).expect("read the body");
    }
    Reply {
        status,
        headers,
        complete: status != 200,
        body,
    }
}

/// The least role `op` needs: the one its own security names, else reader
/// (the document's default).
fn role_of(op: &Value) -> &str {
    op["security"][0]["bearer"][0].as_str().unwrap_or("reader")
}

/// The document a server over an empty registry serves, as text.
async fn served_text() -> String {
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = Registry::open_local(dir.path().join("reg"))
        .await
        .expect("open");
    let s = server(registry);
    let r = tokio::task::spawn_blocking(move || fetch(&s, "GET", "/openapi.json", READER, None))
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.text()
}

/// `(method in upper case, path template, operation)` for every operation.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_ascii_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

/// `template` with each `{name}` replaced by `value(name)`.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closing brace") + open;
        out.push_str(&rest[..open]);
        out.push_str(&value(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `path` is an instance of `template` (`{path}` takes the rest).
fn matches_template(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some("{path}"), Some(_)) => return t.next().is_none(),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// The query string of an operation's required query parameters.
fn required_query(op: &Value, value: impl Fn(&str) -> String) -> String {
    let params: Vec<String> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query" && p["required"] == true)
        .map(|p| {
            let name = p["name"].as_str().expect("a name");
            format!("{name}={}", value(name))
        })
        .collect();
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_document_is_what_the_code_generates() {
    let served = served_text().await;
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("MODELREG_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&committed, &served).expect("write docs/openapi.json");
        return;
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap_or_default();
    if on_disk != served {
        let line = on_disk
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(served.lines().count()));
        panic!(
            "docs/openapi.json is not the document the code generates (first difference at \
             line {}: committed {:?}, generated {:?}).\nIf the API change is intended, \
             regenerate it with `{BLESS}` and commit it with the change.",
            line + 1,
            on_disk.lines().nth(line).unwrap_or("<end>"),
            served.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_and_self_consistent() {
    let doc: Value = serde_json::from_str(&served_text().await).expect("valid JSON");
    let version = doc["openapi"].as_str().expect("an openapi field");
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert_eq!(doc["info"]["title"], "modelreg");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let about = doc["info"]["description"].as_str().expect("a description");
    for says in [
        "Hugging Face",
        "/api/2.0/mlflow/",
        "tracking",
        "out of scope",
    ] {
        assert!(
            about.contains(says),
            "the description does not say {says:?}"
        );
    }

    // Every reference resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let target = r
            .strip_prefix('#')
            .and_then(|p| doc.pointer(p))
            .filter(|t| !t.is_null());
        assert!(target.is_some(), "{r} points at nothing");
    }
    // A type alias (`Tags`, `Hyperparameters`) that reaches utoipa unresolved is
    // named after its container, and two of them silently share one schema.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in schemas.keys() {
        assert!(
            ![
                "BTreeMap", "BTreeSet", "HashMap", "Vec", "Arc", "Option", "Box"
            ]
            .contains(&name.as_str()),
            "schema {name:?} is named after a container: give the field a value_type"
        );
    }

    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        assert!(
            responses.contains_key("401"),
            "{method} {path}: every route checks the token"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let content =
                    resolve(&doc, response)["content"]["application/json"]["schema"].clone();
                assert_eq!(
                    content["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status} is not the error shape"
                );
            }
        }
        let summary = op["summary"].as_str().unwrap_or("");
        assert!(!summary.is_empty(), "{method} {path} has no summary");
        for p in op["parameters"].as_array().into_iter().flatten() {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{method} {path}: parameter {} is not described",
                p["name"]
            );
        }
        if method != "GET" {
            assert_eq!(
                op["security"].as_array().map(Vec::len),
                Some(1),
                "{method} {path}: a write needs a token, naming its role"
            );
        }
    }
}

/// Follows `$ref`s from `v` to what they name.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v["$ref"].as_str() {
        v = doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} points at nothing"));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let doc: Value = serde_json::from_str(&served_text().await).expect("valid JSON");
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = Registry::open_local(dir.path().join("reg"))
        .await
        .expect("open");
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let dummy = |name: &str| match name {
            "version" => "1".to_owned(),
            "path" => "dir/file.bin".to_owned(),
            _ => "x".to_owned(),
        };
        let ops = operations(&doc);
        for (method, template, op) in &ops {
            let path = fill(template, dummy) + &required_query(op, dummy);
            let body = (method != "GET").then(|| serde_json::json!({}));
            // A reader reaches every handler: reads answer, the others refuse
            // the role.
            let r = if is_stream(op) {
                fetch_stream(&s, &path, READER)
            } else {
                fetch(&s, method, &path, READER, body.as_ref())
            };
            assert_ne!(
                r.status, 405,
                "{method} {path}: the router has no such method"
            );
            let unrouted = r.status == 404
                && r.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no route for"));
            assert!(
                !unrouted,
                "{method} {path} is documented but not routed: {}",
                r.text()
            );
        }
        // At each documented path the router answers exactly the documented
        // methods (and HEAD with GET), as the 405's `Allow` says.
        let mut by_path: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (method, template, _) in &ops {
            let set = by_path.entry(template).or_default();
            set.insert(method.clone());
            if method == "GET" {
                set.insert("HEAD".to_owned());
            }
        }
        for (template, documented) in by_path {
            let path = fill(template, dummy);
            let r = fetch(&s, "PATCH", &path, READER, None);
            assert!(!documented.contains("PATCH"), "no route takes PATCH");
            assert_eq!(r.status, 405, "PATCH {path}: {}", r.text());
            let allowed: BTreeSet<String> = r
                .header("allow")
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect();
            assert_eq!(
                allowed, documented,
                "{template}: routed methods vs documented ones"
            );
        }
    })
    .await
    .expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_beyond_reading_is_in_the_role_table_with_its_role() {
    let doc: Value = serde_json::from_str(&served_text().await).expect("valid JSON");
    let table = role_routes();
    for (method, template, op) in operations(&doc) {
        let role = role_of(op);
        if role == "reader" {
            assert_eq!(
                method, "GET",
                "{method} {template} needs only the reader role: a write names its role"
            );
            continue;
        }
        let entry = table
            .iter()
            .find(|(m, p, _, _)| *m == method && matches_template(&template, p));
        let Some((_, path, _, needs)) = entry else {
            panic!(
                "{method} {template} is documented but not in role_routes() \
                 (tests/common/rest.rs): add it, with a body that succeeds for the role it \
                 needs, so the role test covers it"
            );
        };
        assert_eq!(
            role, *needs,
            "{method} {path}: the document names role {role}, the role test {needs}"
        );
    }
    for (method, path, _, _) in &table {
        let documented = operations(&doc)
            .iter()
            .any(|(m, t, _)| m == method && matches_template(t, path));
        assert!(
            documented,
            "role_routes() has {method} {path}, the document does not"
        );
    }
}

// ----- responses against their schemas ----------------------------------------

/// The seeded registry (versions 1 and 2 of `fraud`) with more in it, so the
/// records have every part worth checking: version 3 with a semver label,
/// tags, datasets, code, a parent, hyperparameters and an environment, approved
/// and promoted to production (so a rollback has somewhere to go); model tags,
/// a deprecation and a traffic split.
async fn rich() -> (tempfile::TempDir, Registry) {
    let (dir, registry) = seeded().await;
    let me = registry.acting_as(Actor::new("seed").expect("actor"));
    let files = ArtifactSource::files([
        ("model.bin", b"weights of three".to_vec()),
        ("config.json", br#"{"layers":3}"#.to_vec()),
    ])
    .expect("files");
    let env = Environment {
        cuda: Some("12.4".into()),
        gpus: vec!["A100".into()],
        ..Environment::default()
    }
    .with_framework("torch", "2.5.1");
    me.register(
        "fraud",
        files,
        NewVersion::new()
            .semver("1.3.0")
            .description("fine-tuned")
            .tag("team", "risk")
            .metric("auc", 0.95)
            .param("lr", 0.001)
            .param("layers", vec![64, 32])
            .dataset(
                DatasetRef::new("clicks", DatasetRole::Train)
                    .version("v3")
                    .uri("s3://data/clicks/v3"),
            )
            .code(CodeRef {
                repository: Some("github.com/acme/fraud".into()),
                commit: "9f2c1e7".into(),
                dirty: false,
            })
            .parent("fraud/2", Relation::FineTunedFrom)
            .environment(env),
    )
    .await
    .expect("register 3");
    let alice = registry.acting_as(Actor::new("alice@example.com").expect("actor"));
    alice
        .approve("fraud/3", Stage::Production, "looks good")
        .await
        .expect("approve");
    me.set_model_tags(
        "fraud",
        [("owner".parse().expect("key"), "risk-team".to_owned())].into(),
        vec![],
    )
    .await
    .expect("model tags");
    me.promote_to("fraud/3", Stage::Production, "better")
        .await
        .expect("promote 3");
    me.deprecate("fraud/1", "superseded")
        .await
        .expect("deprecate");
    me.set_alias("fraud/3", "challenger", modelreg::SetAlias::new())
        .await
        .expect("alias");
    let split = TrafficSplit::new([("@champion", 90), ("@challenger", 10)]).expect("split");
    me.set_traffic_split("fraud", split, "a/b")
        .await
        .expect("split");
    let signature = me
        .sign_version("fraud/3", &test_key(), "evaluated")
        .await
        .expect("sign");
    let _ = SIGNATURE_BUNDLE.set(signature.bundle.to_string());
    me.scan_formats("fraud/3").await.expect("scan");
    // A version nothing protects, for the purge in the role table.
    me.register(
        "fraud",
        ArtifactSource::bytes("model.bin", "an experiment").expect("source"),
        NewVersion::new(),
    )
    .await
    .expect("register 4");
    (dir, registry)
}

/// The digest of the signature bundle of `fraud/3` in a [`rich`] registry: the
/// same in every one (same files, same key, deterministic ECDSA).
static SIGNATURE_BUNDLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A fixed P-256 key for tests only (`openssl genpkey`).
fn test_key() -> modelreg::signing::SigningKey {
    modelreg::signing::SigningKey::from_pem(
        "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMMXLSzptwBr5K4ZP
mAEnMZE6oZkNANVa6871NHYz/RShRANCAAQ2aKIiZTM0Y9J8zXC7gZ7yeVtKOrZc
kEkT0+QybyFNi6tQBCJ4E0ZbHS4f02CeVxHrGhKCsrQg9n2q+CCrpyEf
-----END PRIVATE KEY-----",
    )
    .expect("test key")
}

/// Real values for the parameters of the GET operations over [`rich`].
fn real(name: &str) -> String {
    match name {
        "model" => "fraud",
        "version" => "3",
        "path" => "model.bin",
        "alias" => "champion",
        "metric" => "auc",
        "ref" => "fraud@production",
        "candidate" => "3",
        "key" => "user-42",
        "of" => "fraud/3",
        "bundle" => SIGNATURE_BUNDLE.get().expect("rich() signed fraud/3"),
        other => panic!("no real value for parameter {other:?}: add one"),
    }
    .to_owned()
}

/// The schema documented for `status` of `op` with content type JSON.
fn response_schema<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    let response = op["responses"].get(status.to_string())?;
    let schema = &resolve(doc, response)["content"]["application/json"]["schema"];
    (!schema.is_null()).then_some(schema)
}

/// `reply` is documented for `op` and its JSON body matches the schema.
fn check_reply(doc: &Value, what: &str, op: &Value, reply: &Reply) {
    assert!(
        op["responses"].get(reply.status.to_string()).is_some(),
        "{what} answered {}, which its operation does not document: {}",
        reply.status,
        reply.text()
    );
    if let Some(schema) = response_schema(doc, op, reply.status) {
        let body = reply.json();
        if let Err(e) = (Validator { doc }).validate(&body, schema, "$") {
            let shown: String = format!("{body:#}").chars().take(3000).collect();
            panic!(
                "{what} ({}): the response does not match its schema: {e}\n{shown}",
                reply.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_answers_json_its_schema_describes() {
    let doc: Value = serde_json::from_str(&served_text().await).expect("valid JSON");
    let (_dir, registry) = rich().await;
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let mut checked = 0;
        let mut reads = 0;
        for (method, template, op) in operations(&doc) {
            if method != "GET" {
                continue;
            }
            let path = fill(&template, real) + &required_query(op, real);
            let token = token_of(role_of(op));
            if is_stream(op) {
                // Its body does not end: the head must be the documented stream.
                let r = fetch_stream(&s, &path, token);
                assert_eq!(r.status, 200, "GET {path}: {}", r.text());
                assert!(
                    r.header("content-type")
                        .is_some_and(|t| t.starts_with("text/event-stream")),
                    "GET {path}: {:?}",
                    r.header("content-type")
                );
                check_reply(&doc, &format!("GET {path}"), op, &r);
                continue;
            }
            reads += 1;
            let r = fetch(&s, "GET", &path, token, None);
            assert_eq!(r.status, 200, "GET {path}: {}", r.text());
            check_reply(&doc, &format!("GET {path}"), op, &r);
            checked += usize::from(response_schema(&doc, op, 200).is_some());
        }
        // All but the download, whose body is the file, and the signature
        // bundle (Sigstore JSON under its own media type) answer JSON.
        assert_eq!(checked, reads - 2, "reads with a JSON schema");
        // The other shapes of the same records.
        let history_op = &doc["paths"]["/api/v1/models/{model}/history"]["get"];
        let r = fetch(
            &s,
            "GET",
            "/api/v1/models/fraud/history?limit=1000",
            READER,
            None,
        );
        check_reply(&doc, "the whole history", history_op, &r);
        let lineage_op = &doc["paths"]["/api/v1/lineage"]["get"];
        for query in [
            "of=fraud/3&depth=5",
            "of=dataset:clicks@v3&direction=downstream",
        ] {
            let r = fetch(&s, "GET", &format!("/api/v1/lineage?{query}"), READER, None);
            check_reply(&doc, &format!("lineage {query}"), lineage_op, &r);
        }
        let versions_op = &doc["paths"]["/api/v1/models/{model}/versions"]["get"];
        let r = fetch(
            &s,
            "GET",
            "/api/v1/models/fraud/versions?limit=1",
            READER,
            None,
        );
        check_reply(&doc, "a first page", versions_op, &r);
        // Errors have the error shape.
        let version_op = &doc["paths"]["/api/v1/models/{model}/versions/{version}"]["get"];
        for path in [
            "/api/v1/models/fraud/versions/99",
            "/api/v1/models/Bad!/versions/1",
        ] {
            let r = fetch(&s, "GET", path, READER, None);
            check_reply(&doc, path, version_op, &r);
        }
        let r = request(s.addr, "GET", "/api/v1/models/fraud/versions/1", &[], b"");
        check_reply(&doc, "a read without a token", version_op, &r);
    })
    .await
    .expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_answers_what_its_schema_describes() {
    let doc: Value = serde_json::from_str(&served_text().await).expect("valid JSON");
    let mut succeeded = Vec::new();
    for (method, path, body, needs) in role_routes() {
        let (template, op) = operations(&doc)
            .into_iter()
            .find(|(m, t, _)| *m == method && matches_template(t, path))
            .map(|(_, t, op)| (t, op.clone()))
            .unwrap_or_else(|| panic!("{method} {path} is not documented"));
        // The table's bodies are bodies the server accepts: the request schema
        // must accept them too.
        let request_schema = &op["requestBody"]["content"]["application/json"]["schema"];
        let body = (!body.is_empty()).then(|| serde_json::from_str::<Value>(&body).expect("JSON"));
        if let Some(b) = &body
            && let Err(e) = (Validator { doc: &doc }).validate(b, request_schema, "$")
        {
            panic!(
                "{method} {template}: the role test's body {b} does not match the request schema: {e}"
            );
        }
        // Each on a registry of its own, as the table's bodies assume.
        let (_dir, registry) = rich().await;
        let s = server(registry);
        let token = token_of(needs);
        let doc2 = doc.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let r = fetch(&s, method, path, token, body.as_ref());
            check_reply(&doc2, &format!("{method} {path}"), &op, &r);
            (200..300).contains(&r.status)
        })
        .await
        .expect("request");
        if ok {
            succeeded.push(format!("{method} {path}"));
        }
    }
    // The upload's empty body in the table is refused; every other write
    // succeeded and its answer was checked.
    assert_eq!(succeeded.len(), role_routes().len() - 1, "{succeeded:#?}");

    // An upload with metadata.
    let (_dir, registry) = rich().await;
    let s = start(
        registry,
        ServerOptions::new().tokens(common::rest::tokens()),
    );
    let op = doc["paths"]["/api/v1/models/{model}/versions"]["post"].clone();
    let meta = serde_json::json!({
        "semver": "2.0.0", "description": "uploaded", "tags": {"source": "rest"},
        "metrics": {"auc": 0.97}, "params": {"lr": 0.01, "schedule": {"warmup": 100}},
        "datasets": [{"name": "clicks", "version": "v4", "role": "train"}],
        "code": {"commit": "abc123", "dirty": true},
        "parents": [{"version": "fraud/3", "relation": "fine_tuned_from"}],
        "environment": {"os": "linux", "cpu_count": 8}
    });
    let form = resolve(
        &doc,
        &op["requestBody"]["content"]["multipart/form-data"]["schema"],
    );
    if let Err(e) = (Validator { doc: &doc }).validate(&meta, &form["properties"]["metadata"], "$")
    {
        panic!("the upload's metadata does not match its schema: {e}");
    }
    tokio::task::spawn_blocking(move || {
        let text = meta.to_string();
        let (content_type, body) = multipart(&[
            ("metadata", None, text.as_bytes()),
            ("file", Some("weights/model.bin"), b"new weights"),
        ]);
        let auth = bearer(WRITER);
        let r = request(
            s.addr,
            "POST",
            "/api/v1/models/fraud/versions",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", content_type.as_str()),
            ],
            &body,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        check_reply(&doc, "an upload", &op, &r);
    })
    .await
    .expect("requests");
}

/// The webhook status with deliveries in it, against its schema: one hook
/// whose receiver takes them (a status, no error) and one whose URL nobody
/// listens on (an error, no status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_status_answers_what_its_schema_describes() {
    let doc: Value = serde_json::from_str(&served_text().await).expect("valid JSON");
    let (_dir, registry) = seeded().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let taken = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", l.local_addr().expect("addr"))
    };
    let hooks: Vec<Webhook> = serde_json::from_value(serde_json::json!([
        {"url": taken, "secret": "a-long-shared-secret-42",
         "events": ["stage_changed"], "models": ["fraud"]},
        {"url": dead, "secret": "a-long-shared-secret-42", "max_attempts": 1},
    ]))
    .expect("hooks");
    let options = ServerOptions::new()
        .tokens(common::rest::tokens())
        .poll_interval(std::time::Duration::from_millis(20))
        .webhooks(hooks)
        .expect("valid hooks");
    let s = start(registry.clone(), options);
    // Events from before the follower's first look are not delivered.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    registry
        .acting_as(Actor::new("seed").expect("actor"))
        .transition("fraud/2", Stage::Validation, "next")
        .await
        .expect("transition");
    let op = doc["paths"]["/api/v1/webhooks"]["get"].clone();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let r = fetch(&s, "GET", "/api/v1/webhooks", ADMIN, None);
            check_reply(&doc, "the webhook status", &op, &r);
            let v = r.json();
            if v[0]["delivered"] == 1 && v[1]["failed"] == 1 {
                assert_eq!(v[0]["recent"][0]["status"], 204, "{v}");
                assert!(v[1]["recent"][0]["error"].is_string(), "{v}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deliveries did not settle: {v}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .await
    .expect("requests");
}

// ----- a JSON Schema validator for what utoipa writes ---------------------------

/// Checks a value against a schema of the document: the JSON Schema keywords
/// utoipa writes (`$ref`, `type`, `enum`, `properties`, `required`,
/// `additionalProperties`, `propertyNames`, `items`, `allOf`, `oneOf`,
/// `anyOf`, bounds and `pattern`). Stricter than JSON Schema in one way: an
/// object may only have the keys its schema declares (unless the schema is a
/// map), so a field the server sends and the document lacks is an error.
struct Validator<'a> {
    doc: &'a Value,
}

/// What a schema says about an object's keys.
enum Keys {
    /// Any key: the schema is a map.
    Free,
    /// Nothing: the schema is not about keys.
    Neutral,
    /// These and no others.
    Only(BTreeSet<String>),
}

impl Validator<'_> {
    fn validate(&self, v: &Value, s: &Value, at: &str) -> Result<(), String> {
        self.shape(v, s, at)?;
        if let (Value::Object(map), Keys::Only(keys)) = (v, self.keys(v, s))
            && let Some(extra) = map.keys().find(|k| !keys.contains(*k))
        {
            return Err(format!(
                "{at}: key {extra:?} is not in the schema ({keys:?})"
            ));
        }
        Ok(())
    }

    /// The keys `s` allows in `v`: its properties and those of its `allOf`
    /// members and of the `oneOf`/`anyOf` branches `v` matches.
    fn keys(&self, v: &Value, s: &Value) -> Keys {
        let s = resolve(self.doc, s);
        if s.get("additionalProperties").is_some_and(|a| a != false)
            || s.get("propertyNames").is_some()
        {
            return Keys::Free;
        }
        let mut keys = match s["properties"].as_object() {
            Some(props) => Keys::Only(props.keys().cloned().collect()),
            None => Keys::Neutral,
        };
        let branches = ["oneOf", "anyOf"]
            .iter()
            .flat_map(|k| s[*k].as_array().into_iter().flatten())
            .filter(|b| self.shape(v, b, "").is_ok());
        for m in s["allOf"].as_array().into_iter().flatten().chain(branches) {
            match (self.keys(v, m), &mut keys) {
                (Keys::Free, _) => return Keys::Free,
                (Keys::Neutral, _) => {}
                (Keys::Only(more), Keys::Only(k)) => k.extend(more),
                (only, Keys::Neutral) => keys = only,
                (Keys::Only(_), Keys::Free) => unreachable!("returned above"),
            }
        }
        keys
    }

    /// Every keyword but the strict key check at this level.
    fn shape(&self, v: &Value, s: &Value, at: &str) -> Result<(), String> {
        let s = resolve(self.doc, s);
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => return Err(format!("{at}: odd type {t}")),
            };
            if !types.iter().any(|t| is_type(v, t)) {
                return Err(format!("{at}: {v} is not {types:?}"));
            }
        }
        if let Some(values) = s["enum"].as_array()
            && !values.contains(v)
        {
            return Err(format!("{at}: {v} is not one of {values:?}"));
        }
        if let Some(n) = v.as_f64()
            && s["minimum"].as_f64().is_some_and(|m| n < m)
        {
            return Err(format!("{at}: {n} < minimum {}", s["minimum"]));
        }
        if let Value::String(text) = v {
            let len = text.chars().count() as u64;
            if s["minLength"].as_u64().is_some_and(|m| len < m)
                || s["maxLength"].as_u64().is_some_and(|m| len > m)
            {
                return Err(format!("{at}: {text:?} has a length out of bounds"));
            }
            if let Some(p) = s["pattern"].as_str()
                && !pattern_matches(p, text)
            {
                return Err(format!("{at}: {text:?} does not match {p}"));
            }
        }
        if let Value::Array(items) = v {
            if let Some(item) = s.get("items") {
                for (i, x) in items.iter().enumerate() {
                    self.validate(x, item, &format!("{at}[{i}]"))?;
                }
            }
            if s["minItems"]
                .as_u64()
                .is_some_and(|m| (items.len() as u64) < m)
            {
                return Err(format!("{at}: fewer than minItems"));
            }
            if s["uniqueItems"] == true {
                let distinct: BTreeSet<String> = items.iter().map(Value::to_string).collect();
                if distinct.len() != items.len() {
                    return Err(format!("{at}: items repeat"));
                }
            }
        }
        if let Value::Object(map) = v {
            for r in s["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !map.contains_key(r) {
                    return Err(format!("{at}: required {r:?} is missing"));
                }
            }
            let props = s["properties"].as_object();
            for (k, x) in map {
                let here = format!("{at}.{k}");
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    self.validate(x, p, &here)?;
                } else if let Some(extra) = s.get("additionalProperties") {
                    if extra == false {
                        return Err(format!("{here}: not allowed"));
                    }
                    if extra.is_object() {
                        self.validate(x, extra, &here)?;
                    }
                }
                if let Some(names) = s.get("propertyNames") {
                    self.validate(&Value::String(k.clone()), names, &format!("{here} (key)"))?;
                }
            }
        }
        for m in s["allOf"].as_array().into_iter().flatten() {
            self.shape(v, m, at)?;
        }
        if let Some(branches) = s["oneOf"].as_array() {
            let results: Vec<Result<(), String>> =
                branches.iter().map(|b| self.shape(v, b, at)).collect();
            let ok = results.iter().filter(|r| r.is_ok()).count();
            if ok != 1 {
                let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                return Err(format!(
                    "{at}: {ok} of oneOf's branches match (not 1): {why:?}"
                ));
            }
        }
        if let Some(branches) = s["anyOf"].as_array()
            && !branches.iter().any(|b| self.shape(v, b, at).is_ok())
        {
            return Err(format!("{at}: no anyOf branch matches"));
        }
        Ok(())
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}

/// Whether `text` matches `pattern`, for the patterns the document uses:
/// anchors, literals, classes with ranges, and `*`, `+`, `?`, `{n}`, `{n,m}`.
/// Anything else fails the test, so a new pattern is not silently unchecked.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    #[derive(Debug)]
    struct Atom {
        chars: Vec<(char, char)>,
        min: usize,
        max: usize,
    }
    let anchored_start = pattern.starts_with('^');
    let anchored_end = pattern.ends_with('$');
    let body = pattern.trim_start_matches('^').trim_end_matches('$');
    let mut atoms = Vec::new();
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        let chars = match c {
            '[' => {
                let mut set = Vec::new();
                let mut prev: Option<char> = None;
                loop {
                    match it.next() {
                        Some(']') => break,
                        Some('-') if prev.is_some() && it.peek() != Some(&']') => {
                            let lo = prev.take().unwrap_or_default();
                            let hi = it.next().unwrap_or_default();
                            set.pop();
                            set.push((lo, hi));
                        }
                        Some(x) => {
                            set.push((x, x));
                            prev = Some(x);
                        }
                        None => panic!("unclosed class in {pattern}"),
                    }
                }
                set
            }
            '(' | ')' | '|' | '\\' | '.' => {
                panic!("pattern {pattern} uses {c:?}: teach the test's matcher")
            }
            x => vec![(x, x)],
        };
        let (min, max) = match it.peek() {
            Some('*') => (0, usize::MAX),
            Some('+') => (1, usize::MAX),
            Some('?') => (0, 1),
            Some('{') => {
                it.next();
                let spec: String = it.by_ref().take_while(|c| *c != '}').collect();
                let (a, b) = spec.split_once(',').unwrap_or((&spec, &spec));
                let a = a.parse().expect("a count");
                (
                    a,
                    if b.is_empty() {
                        usize::MAX
                    } else {
                        b.parse().expect("a count")
                    },
                )
            }
            _ => (1, 1),
        };
        if matches!(it.peek(), Some('*' | '+' | '?')) {
            it.next();
        }
        atoms.push(Atom { chars, min, max });
    }
    fn here(atoms: &[Atom], text: &[char], end: bool) -> bool {
        let Some((a, rest)) = atoms.split_first() else {
            return !end || text.is_empty();
        };
        let fits = |c: &char| a.chars.iter().any(|(lo, hi)| lo <= c && c <= hi);
        let most = text.iter().take_while(|c| fits(c)).count().min(a.max);
        (a.min..=most).rev().any(|n| here(rest, &text[n..], end))
    }
    let text: Vec<char> = text.chars().collect();
    if anchored_start {
        here(&atoms, &text, anchored_end)
    } else {
        (0..=text.len()).any(|i| here(&atoms, &text[i..], anchored_end))
    }
}

#[test]
fn the_pattern_matcher_reads_the_documents_patterns() {
    assert!(pattern_matches(
        "^[a-z0-9][a-z0-9._-]*$",
        "fraud-detector.v2"
    ));
    assert!(!pattern_matches("^[a-z0-9][a-z0-9._-]*$", "Fraud"));
    assert!(pattern_matches(
        "^blake3:[0-9a-f]{64}$",
        &format!("blake3:{}", "ab".repeat(32))
    ));
    assert!(!pattern_matches("^blake3:[0-9a-f]{64}$", "blake3:abc"));
    assert!(pattern_matches("^[@/:#]", "@champion"));
    assert!(!pattern_matches("^[@/:#]", "champion"));
    assert!(pattern_matches(
        "^[A-Za-z0-9][A-Za-z0-9_./@:-]*$",
        "eval/loss@0.5"
    ));
}

/// The web UI's pages (`/`, `/ui/…`) are HTML for people, not part of the REST
/// API: the document describes none of them, so the checks above cover the
/// whole API and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_is_not_in_the_document() {
    let doc: Value = serde_json::from_str(&served_text().await).expect("valid JSON");
    for (_, path, _) in operations(&doc) {
        assert!(
            path != "/" && path != "/ui" && !path.starts_with("/ui/"),
            "{path}: the UI's routes are not REST operations"
        );
    }
}
