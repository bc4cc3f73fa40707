//! `modelreg serve`'s REST API and its access rules, over a real socket.

mod common;

use common::http::{Running, multipart, request, start};
use common::rest::{
    ADMIN, APPROVER, READER, WRITER, bearer, get, payload, role_routes, roles_below, seeded, send,
    server, token_of, tokens,
};
use modelreg::server::ServerOptions;
use modelreg::{Actor, Registry, Stage};

/// One part of a multipart body: field name, file name, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_beyond_reading_refuses_callers_without_its_role_and_changes_nothing() {
    let (_dir, registry) = seeded().await;
    let before = registry.model("fraud").await.expect("model").seq();
    let s = server(registry.clone());
    let read_only = start(registry.clone(), ServerOptions::new());
    tokio::task::spawn_blocking(move || {
        for (method, path, body, needs) in role_routes() {
            let r = send(&s, method, path, None, &body);
            assert_eq!(
                r.status,
                401,
                "{method} {path} without a token: {}",
                r.text()
            );
            assert_eq!(r.json()["error"]["kind"], "unauthorized");
            for (role, token) in roles_below(needs) {
                let r = send(&s, method, path, Some(token), &body);
                assert_eq!(r.status, 403, "{method} {path} as {role}: {}", r.text());
                assert_eq!(r.json()["error"]["kind"], "forbidden");
            }
            let r = send(&s, method, path, Some("not-a-configured-token-1234"), &body);
            assert_eq!(r.status, 401, "{method} {path} with a bad token");
            // Without tokens the server is read-only, whatever the caller sends.
            let r = send(&read_only, method, path, Some(ADMIN), &body);
            assert_eq!(r.status, 403, "{method} {path} on a read-only server");
            assert!(r.text().contains("read-only"), "{}", r.text());
        }
    })
    .await
    .expect("requests");
    assert_nothing_changed(&registry, before).await;
}

/// The seeded registry, served with the test tokens and `options`, staging
/// uploads in the returned directory.
async fn seeded_with_staging(
    options: ServerOptions,
) -> (tempfile::TempDir, Registry, std::path::PathBuf, Running) {
    let (dir, registry) = seeded().await;
    let staging = dir.path().join("staging");
    let s = start(
        registry.clone(),
        options.tokens(tokens()).staging_dir(&staging),
    );
    (dir, registry, staging, s)
}

/// Refused requests left the seeded model at event `before` and created no
/// other model.
async fn assert_nothing_changed(registry: &Registry, before: u64) {
    assert_eq!(
        registry.model("fraud").await.expect("model").seq(),
        before,
        "a refused request changed the model"
    );
    assert_eq!(registry.list_models().await.expect("models").len(), 1);
}

/// The role is checked before the request's query and body are looked at: a
/// caller without the route's role gets 403 whatever they send (JSON that does
/// not parse, of the wrong shape, too large, not JSON, a broken multipart
/// body, an unknown query parameter), never the 400/413/415/422 the body
/// would earn, and nothing is staged or changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_too_low_is_refused_before_the_body_is_read() {
    let (_dir, registry, staging, s) =
        seeded_with_staging(ServerOptions::new().max_json_bytes(1024)).await;
    let before = registry.model("fraud").await.expect("model").seq();
    tokio::task::spawn_blocking(move || {
        let too_large = format!(r#"{{"reason":"{}"}}"#, "x".repeat(4096));
        let malformed: [(&str, &str); 6] = [
            ("application/json", "{"),
            ("application/json", r#"{"no_such_field":1}"#),
            ("application/json", too_large.as_str()),
            ("application/json", "[1,2,3]"),
            ("text/plain", "hello"),
            ("multipart/form-data; boundary=b", "--b\r\nbroken"),
        ];
        let send_as = |token: &str, method: &str, path: &str, (ct, body): (&str, &str)| {
            let auth = bearer(token);
            let target = format!("{path}?no_such_parameter=1");
            let headers = [("Authorization", auth.as_str()), ("Content-Type", ct)];
            request(s.addr, method, &target, &headers, body.as_bytes())
        };
        for (method, path, _, needs) in role_routes() {
            for (role, token) in roles_below(needs) {
                for m in malformed {
                    let r = send_as(token, method, path, m);
                    assert_eq!(
                        r.status,
                        403,
                        "{method} {path} as {role} with {m:?}: {}",
                        r.text()
                    );
                    assert_eq!(r.json()["error"]["kind"], "forbidden");
                }
            }
            // With the role, the same requests are refused for what they are,
            // so the 403s above were not the route refusing anyway.
            if method != "GET" {
                let r = send_as(token_of(needs), method, path, malformed[0]);
                assert!(
                    r.status != 403 && (400..500).contains(&r.status),
                    "{method} {path} as {needs} with a malformed request: {} {}",
                    r.status,
                    r.text()
                );
            }
        }
    })
    .await
    .expect("requests");
    assert_nothing_changed(&registry, before).await;
    assert_eq!(
        std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0),
        0,
        "a refused upload left files in staging"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_valid_token_unless_anonymous_reading_is_allowed() {
    let (_dir, registry) = seeded().await;
    let s = server(registry.clone());
    let open = start(
        registry.clone(),
        ServerOptions::new().tokens(tokens().anonymous_read(true)),
    );
    let no_tokens = start(registry, ServerOptions::new());
    tokio::task::spawn_blocking(move || {
        let path = "/api/v1/models/fraud/versions/production";
        assert_eq!(get(&s, path, None).status, 401);
        assert_eq!(get(&s, path, Some("wrong-token-0123456789")).status, 401);
        let r = request(s.addr, "GET", path, &[("Authorization", "Basic abc")], b"");
        assert_eq!(r.status, 401, "{}", r.text());
        let r = get(&s, path, Some(READER));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["number"], 1);
        assert_eq!(get(&open, path, None).status, 200);
        assert_eq!(get(&open, path, Some("wrong-token-0123456789")).status, 401);
        // A server without tokens ignores credentials (a client logged in elsewhere).
        assert_eq!(
            get(&no_tokens, path, Some("anything-at-all-0123")).status,
            200
        );
    })
    .await
    .expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_with_the_records_json() {
    let (_dir, registry) = seeded().await;
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let t = Some(READER);
        let models = get(&s, "/api/v1/models", t).json();
        assert_eq!(models[0]["name"], "fraud");
        assert_eq!(models[0]["production"], 1);
        let model = get(&s, "/api/v1/models/fraud", t).json();
        assert_eq!(model["aliases"]["champion"], 1);
        assert_eq!(model["metric_specs"]["auc"]["goal"], "maximize");

        let page = get(
            &s,
            "/api/v1/models/fraud/versions?limit=1&descending=true",
            t,
        )
        .json();
        assert_eq!(page["items"][0]["number"], 2);
        assert_eq!(page["total"], 2);
        let next = page["next"].as_str().expect("a next token").to_owned();
        let page = get(
            &s,
            &format!("/api/v1/models/fraud/versions?limit=1&descending=true&after={next}"),
            t,
        )
        .json();
        assert_eq!(page["items"][0]["number"], 1);
        assert!(page.get("next").is_none());
        let staged = get(&s, "/api/v1/models/fraud/versions?stage=staging", t).json();
        assert_eq!(staged["items"].as_array().map(Vec::len), Some(1));

        for (selector, number) in [("1", 1), ("production", 1), ("champion", 1), ("latest", 2)] {
            let r = get(&s, &format!("/api/v1/models/fraud/versions/{selector}"), t);
            assert_eq!(r.json()["number"], number, "{selector}");
        }
        let r = get(&s, "/api/v1/resolve?ref=fraud@staging", t);
        assert_eq!(r.json()["number"], 2);

        let files = get(&s, "/api/v1/models/fraud/versions/2/files", t).json();
        let paths: Vec<&str> = files["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["path"].as_str())
            .collect();
        assert_eq!(paths, ["config.json", "model.bin"]);

        let diff = get(&s, "/api/v1/models/fraud/compare?candidate=2", t).json();
        assert_eq!(
            diff["a"]["number"], 1,
            "the baseline defaults to production"
        );
        assert_eq!(diff["b"]["number"], 2);
        assert_eq!(diff["verdict"], "improved");

        let points = get(&s, "/api/v1/models/fraud/metrics/auc", t).json();
        assert_eq!(points.as_array().map(Vec::len), Some(2));

        let history = get(&s, "/api/v1/models/fraud/history?limit=2", t).json();
        assert_eq!(history["items"].as_array().map(Vec::len), Some(2));
        assert!(history["next"].is_u64(), "{history}");

        let dot = get(&s, "/api/v1/lineage?of=fraud/2&format=dot", t);
        assert_eq!(dot.status, 200);
        assert!(dot.text().starts_with("digraph"), "{}", dot.text());
        let routed = get(&s, "/api/v1/models/fraud/route?key=user-1", t).json();
        assert_eq!(routed["version"]["number"], 1);
        assert_eq!(routed["from_split"], false);
        assert_eq!(get(&s, "/api/v1/models/fraud/split", t).status, 404);
    })
    .await
    .expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_honour_range_etag_and_head() {
    let (_dir, registry) = seeded().await;
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let want = payload(3 << 20, 1);
        let path = "/api/v1/models/fraud/versions/2/files/model.bin";
        let auth = bearer(READER);
        let a = ("Authorization", auth.as_str());
        let full = request(s.addr, "GET", path, &[a], b"");
        assert_eq!(full.status, 200);
        assert!(full.complete);
        assert_eq!(full.body, want);
        let etag = full.header("etag").expect("an ETag").to_owned();

        let head = request(s.addr, "HEAD", path, &[a], b"");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("3145728"));
        assert_eq!(head.header("etag"), Some(etag.as_str()));

        let part = request(s.addr, "GET", path, &[a, ("Range", "bytes=10-19")], b"");
        assert_eq!(part.status, 206);
        assert_eq!(part.body, want[10..20]);
        assert_eq!(part.header("content-range"), Some("bytes 10-19/3145728"));
        let tail = request(s.addr, "GET", path, &[a, ("Range", "bytes=-5")], b"");
        assert_eq!(tail.body, want[want.len() - 5..]);
        let past = request(s.addr, "GET", path, &[a, ("Range", "bytes=9999999-")], b"");
        assert_eq!(past.status, 416);
        assert_eq!(past.header("content-range"), Some("bytes */3145728"));
        assert_eq!(past.json()["error"]["kind"], "invalid_input");

        let cached = request(
            s.addr,
            "GET",
            path,
            &[a, ("If-None-Match", etag.as_str())],
            b"",
        );
        assert_eq!(cached.status, 304);
        assert!(cached.body.is_empty());
        let stale = request(
            s.addr,
            "GET",
            path,
            &[a, ("If-None-Match", "\"other\"")],
            b"",
        );
        assert_eq!(stale.status, 200);

        for hostile in [
            "/api/v1/models/fraud/versions/2/files/../../../../etc/passwd",
            "/api/v1/models/fraud/versions/2/files/..%2f..%2fetc%2fpasswd",
            "/api/v1/models/fraud/versions/2/files/%2fetc%2fpasswd",
            "/api/v1/models/fraud/versions/2/files/a%00b",
            "/api/v1/models/fraud/versions/2/files/nope.bin",
            "/api/v1/models/Fraud/versions/2/files/model.bin",
            "/api/v1/models/fraud/versions/99/files/model.bin",
        ] {
            let r = request(s.addr, "GET", hostile, &[a], b"");
            assert!((400..500).contains(&r.status), "{hostile}: {}", r.status);
            assert!(!r.text().contains("root:"), "{hostile} leaked a file");
            assert!(r.json()["error"]["message"].is_string(), "{hostile}");
        }
    })
    .await
    .expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_cut_off_before_its_last_byte() {
    let (_dir, registry) = seeded().await;
    let manifest = registry.manifest("fraud/2").await.expect("manifest");
    let entry = manifest.get("model.bin").expect("entry").clone();
    let blob = registry.artifact_store().location(&entry.digest);
    let mut bytes = std::fs::read(&blob).expect("read the blob");
    bytes[1_000_000] ^= 0xff;
    let mut perms = std::fs::metadata(&blob).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).expect("writable");
    std::fs::write(&blob, &bytes).expect("corrupt the blob");
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let auth = bearer(READER);
        let r = request(
            s.addr,
            "GET",
            "/api/v1/models/fraud/versions/2/files/model.bin",
            &[("Authorization", auth.as_str())],
            b"",
        );
        assert_eq!(
            r.status, 200,
            "the status goes out before the bytes are hashed"
        );
        assert!(!r.complete, "a corrupt file was handed out whole");
        assert!(r.body.len() < bytes.len());
    })
    .await
    .expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_registers_a_version_as_the_tokens_identity() {
    let (_dir, registry, staging, s) = seeded_with_staging(ServerOptions::new()).await;
    let big = payload(5 << 20, 7);
    let big2 = big.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let meta = br#"{"semver":"2.0.0","description":"uploaded","metrics":{"auc":0.97},
            "params":{"lr":0.01},"tags":{"source":"rest"},
            "parents":[{"version":"fraud/2","relation":"fine_tuned_from"}]}"#;
        let (ct, body) = multipart(&[
            ("metadata", None, meta),
            ("file", Some("weights/model.bin"), &big2),
            ("file", Some("config.json"), br#"{"layers":3}"#),
            ("file", Some("empty.txt"), b""),
        ]);
        let auth = bearer(WRITER);
        let r = request(
            s.addr,
            "POST",
            "/api/v1/models/fraud/versions",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", ct.as_str()),
                ("X-Actor", "mallory"),
            ],
            &body,
        );
        // The version's files download as uploaded.
        let got = request(
            s.addr,
            "GET",
            "/api/v1/models/fraud/versions/2.0.0/files/weights/model.bin",
            &[("Authorization", auth.as_str())],
            b"",
        );
        (r, got)
    })
    .await
    .expect("requests");
    let (r, got) = reply;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = r.json();
    assert_eq!(body["version"]["number"], 3);
    assert_eq!(body["report"]["files"], 3);
    assert_eq!(got.body, big);
    let v = registry.resolve("fraud/3").await.expect("version 3");
    assert_eq!(v.created_by.as_str(), "wes@example.com");
    assert_eq!(v.description, "uploaded");
    assert_eq!(
        v.semver.as_ref().map(ToString::to_string).as_deref(),
        Some("2.0.0")
    );
    assert_eq!(v.provenance.parents.len(), 1);
    let events = registry.events("fraud").await.expect("events");
    assert_eq!(
        events.last().map(|e| e.actor.as_str()),
        Some("wes@example.com")
    );
    assert!(
        std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) == 0,
        "the staging directory was not emptied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_register_nothing() {
    let (dir, registry, staging, s) =
        seeded_with_staging(ServerOptions::new().max_upload_bytes(1 << 20)).await;
    tokio::task::spawn_blocking(move || {
        let auth = bearer(WRITER);
        let post = |parts: &[Part]| {
            let (ct, body) = multipart(parts);
            request(
                s.addr,
                "POST",
                "/api/v1/models/fraud/versions",
                &[
                    ("Authorization", auth.as_str()),
                    ("Content-Type", ct.as_str()),
                ],
                &body,
            )
        };
        let big = vec![1u8; 2 << 20];
        let cases: Vec<(&str, Vec<Part>, u16)> = vec![
            (
                "traversal",
                vec![("file", Some("../escape.bin"), b"x")],
                400,
            ),
            ("absolute", vec![("file", Some("/etc/evil"), b"x")], 400),
            (
                "nested traversal",
                vec![("file", Some("a/../../b"), b"x")],
                400,
            ),
            (
                "duplicate",
                vec![("file", Some("a.bin"), b"x"), ("file", Some("a.bin"), b"y")],
                400,
            ),
            ("no files", vec![("metadata", None, b"{}")], 400),
            (
                "bad metadata",
                vec![("metadata", None, b"{not json"), ("file", Some("a"), b"x")],
                400,
            ),
            (
                "actor in metadata",
                vec![
                    ("metadata", None, br#"{"created_by":"mallory"}"#),
                    ("file", Some("a"), b"x"),
                ],
                400,
            ),
            ("too large", vec![("file", Some("big.bin"), &big)], 413),
            (
                "bad semver",
                vec![
                    ("metadata", None, br#"{"semver":"one"}"#),
                    ("file", Some("a"), b"x"),
                ],
                400,
            ),
        ];
        for (what, parts, status) in cases {
            let r = post(&parts);
            assert_eq!(r.status, status, "{what}: {}", r.text());
            assert!(r.json()["error"]["message"].is_string(), "{what}");
        }
        let r = request(
            s.addr,
            "POST",
            "/api/v1/models/fraud/versions",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            b"{}",
        );
        assert_eq!(r.status, 400, "{}", r.text());
    })
    .await
    .expect("requests");
    assert_eq!(
        registry
            .model("fraud")
            .await
            .expect("model")
            .versions()
            .len(),
        2
    );
    assert!(!dir.path().join("escape.bin").exists());
    assert_eq!(
        std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0),
        0,
        "a refused upload left files in staging"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors_and_change_nothing() {
    let (_dir, registry) = seeded().await;
    let before = registry.model("fraud").await.expect("model").seq();
    let s = server(registry.clone());
    tokio::task::spawn_blocking(move || {
        let w = Some(WRITER);
        for (method, path, body) in [
            ("POST", "/api/v1/models", "{"),
            ("POST", "/api/v1/models", r#"{"name":"Bad Name"}"#),
            (
                "POST",
                "/api/v1/models",
                r#"{"name":"x","owner":"mallory"}"#,
            ),
            ("POST", "/api/v1/models", r#"{"name":"fraud"}"#),
            (
                "POST",
                "/api/v1/models/fraud/versions/2/metrics",
                r#"{"metrics":{"auc":"high"}}"#,
            ),
            (
                "POST",
                "/api/v1/models/fraud/versions/2/transition",
                r#"{"to":"heaven"}"#,
            ),
            (
                "POST",
                "/api/v1/models/fraud/versions/2/transition",
                r#"{"to":"production"}"#,
            ),
            (
                "PUT",
                "/api/v1/models/fraud/aliases/Bad!",
                r#"{"version":"1"}"#,
            ),
            (
                "PUT",
                "/api/v1/models/fraud/aliases/x",
                r#"{"version":"77"}"#,
            ),
            ("GET", "/api/v1/models/fraud/versions?limit=abc", ""),
            ("GET", "/api/v1/models/fraud/history?since=yesterday", ""),
            ("GET", "/api/v1/models/fraud/versions/not%20valid", ""),
        ] {
            let r = send(&s, method, path, w, body);
            assert!(
                (400..500).contains(&r.status),
                "{method} {path} {body}: {} {}",
                r.status,
                r.text()
            );
            let e = r.json();
            assert!(
                e["error"]["kind"].is_string() && e["error"]["message"].is_string(),
                "{e}"
            );
        }
        // Oversized JSON bodies are refused before they are read whole.
        let huge = format!(r#"{{"name":"x","description":"{}"}}"#, "a".repeat(2 << 20));
        let r = send(&s, "POST", "/api/v1/models", w, &huge);
        assert_eq!(r.status, 413, "{}", r.text());
    })
    .await
    .expect("requests");
    assert_eq!(registry.model("fraud").await.expect("model").seq(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_runs_through_rest_with_gates_and_token_identities() {
    let (_dir, registry) = seeded().await;
    let seeded_events = registry.model("fraud").await.expect("model").seq();
    let s = server(registry.clone());
    tokio::task::spawn_blocking(move || {
        let v2 = "/api/v1/models/fraud/versions/2";
        let r = send(&s, "POST", &format!("{v2}/transition"), Some(WRITER), r#"{"to":"validation"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        // The production gate wants an approval: refused with the gate's reason.
        let r = send(&s, "POST", &format!("{v2}/transition"), Some(WRITER), r#"{"to":"production","reason":"better"}"#);
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["kind"], "refused");
        assert!(r.text().contains("approv"), "the gate's reason: {}", r.text());
        let r = send(&s, "POST", &format!("{v2}/approve"), Some(APPROVER), r#"{"stage":"production","comment":"ok"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = send(&s, "POST", &format!("{v2}/transition"), Some(WRITER), r#"{"to":"production","reason":"better"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(get(&s, "/api/v1/models/fraud/versions/production", Some(READER)).json()["number"], 2);
        let r = send(&s, "POST", "/api/v1/models/fraud/rollback", Some(WRITER), r#"{"reason":"alerts"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(get(&s, "/api/v1/models/fraud/versions/production", Some(READER)).json()["number"], 1);
        let r = send(&s, "PUT", "/api/v1/models/fraud/aliases/challenger", Some(WRITER), r#"{"version":"2"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        let split = r#"{"split":{"routes":[{"target":"@champion","weight":90},{"target":"@challenger","weight":10}]},"reason":"a/b"}"#;
        let r = send(&s, "PUT", "/api/v1/models/fraud/split", Some(WRITER), split);
        assert_eq!(r.status, 200, "{}", r.text());
        let routed = get(&s, "/api/v1/models/fraud/route?key=user-42", Some(READER)).json();
        assert_eq!(routed["from_split"], true);
        let r = send(&s, "DELETE", "/api/v1/models/fraud/split?reason=done", Some(WRITER), "");
        assert_eq!(r.status, 200, "{}", r.text());
        let r = send(&s, "DELETE", "/api/v1/models/fraud/aliases/challenger", Some(WRITER), "");
        assert_eq!(r.status, 200, "{}", r.text());
        let r = send(&s, "POST", "/api/v1/models", Some(ADMIN), r#"{"name":"churn","description":"d","tags":{"team":"growth"}}"#);
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["tags"]["team"], "growth");
    })
    .await
    .expect("requests");
    let events = registry.events("fraud").await.expect("events");
    let actors: Vec<&str> = events
        .iter()
        .filter(|e| e.seq > seeded_events)
        .map(|e| e.actor.as_str())
        .collect();
    assert!(actors.contains(&"ada@example.com"), "{actors:?}");
    assert!(
        actors
            .iter()
            .all(|a| ["ada@example.com", "wes@example.com"].contains(a)),
        "{actors:?}"
    );
    let churn = registry.events("churn").await.expect("churn");
    assert_eq!(churn.len(), 1);
    assert_eq!(churn[0].actor.as_str(), "root@example.com");
}

/// Reads a server-sent-events response from `stream` until `want` events have
/// arrived (or `secs` pass); returns `(id, event, data)` of each.
fn read_sse(
    stream: &mut std::net::TcpStream,
    want: usize,
    secs: u64,
) -> Vec<(u64, String, String)> {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut raw = String::new();
    let mut buf = [0u8; 8192];
    loop {
        let events = parse_sse(&raw);
        if events.len() >= want || std::time::Instant::now() > deadline {
            return events;
        }
        match stream.read(&mut buf) {
            Ok(0) => return parse_sse(&raw),
            Ok(n) => raw.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
}

/// The complete events in a (chunked) SSE body read so far.
fn parse_sse(raw: &str) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (None, None, None);
    for line in raw.lines() {
        if let Some(v) = line
            .strip_prefix("id: ")
            .or_else(|| line.strip_prefix("id:"))
        {
            id = v.trim().parse().ok();
        } else if let Some(v) = line
            .strip_prefix("event: ")
            .or_else(|| line.strip_prefix("event:"))
        {
            event = Some(v.trim().to_owned());
        } else if let Some(v) = line
            .strip_prefix("data: ")
            .or_else(|| line.strip_prefix("data:"))
        {
            data = Some(v.to_owned());
        }
        if let (Some(i), Some(e), Some(d)) = (id, &event, &data) {
            out.push((i, e.clone(), d.clone()));
            (id, event, data) = (None, None, None);
        }
    }
    out
}

fn open_sse(s: &Running, path: &str, extra: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(s.addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READER}\r\nAccept: text/event-stream\r\n{extra}\r\n"
    )
    .expect("request");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_send_new_events_and_replay_after_last_event_id() {
    let (_dir, registry) = seeded().await;
    let seq = registry.model("fraud").await.expect("model").seq();
    let s = start(
        registry.clone(),
        ServerOptions::new()
            .tokens(tokens())
            .poll_interval(std::time::Duration::from_millis(20)),
    );
    let addr = s.addr;
    // A reconnecting client: everything after event 2, at once.
    let replayed = tokio::task::spawn_blocking(move || {
        let mut stream = open_sse(&s, "/api/v1/models/fraud/events", "Last-Event-ID: 2\r\n");
        let events = read_sse(&mut stream, (seq - 2) as usize, 20);
        (s, events)
    })
    .await
    .expect("replay");
    let (s, events) = replayed;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(ids, (3..=seq).collect::<Vec<_>>());
    assert_eq!(events[0].1, "version_registered", "{events:?}");
    let data: serde_json::Value = serde_json::from_str(&events[0].2).expect("JSON data");
    assert_eq!(data["seq"], 3);

    // A new client sees only what happens next.
    let live = tokio::task::spawn_blocking(move || {
        let mut stream = open_sse(&s, "/api/v1/models/fraud/events", "");
        // Nothing old arrives (the poll interval is 20 ms).
        let none = read_sse(&mut stream, 1, 1);
        (s, stream, none)
    });
    let (s, mut stream, none) = live.await.expect("live");
    assert!(none.is_empty(), "old events were sent: {none:?}");
    registry
        .acting_as(Actor::new("bob").expect("actor"))
        .transition("fraud/2", Stage::Validation, "next")
        .await
        .expect("transition");
    let events = tokio::task::spawn_blocking(move || read_sse(&mut stream, 1, 20))
        .await
        .expect("read");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, seq + 1);
    assert_eq!(events[0].1, "stage_changed");
    let data: serde_json::Value = serde_json::from_str(&events[0].2).expect("JSON");
    assert_eq!(data["actor"], "bob");
    let unknown = tokio::task::spawn_blocking(move || {
        let auth = bearer(READER);
        let r = request(
            addr,
            "GET",
            "/api/v1/models/nope/events",
            &[("Authorization", auth.as_str())],
            b"",
        );
        drop(s);
        r
    })
    .await
    .expect("request");
    assert_eq!(unknown.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_times_out_and_hostile_headers_are_refused() {
    let (_dir, registry) = seeded().await;
    let before = registry.model("fraud").await.expect("model").seq();
    let s = start(
        registry.clone(),
        ServerOptions::new()
            .tokens(tokens())
            .request_timeout(std::time::Duration::from_millis(300)),
    );
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        // Announces 40 bytes of JSON, sends 5, then stalls.
        let mut c = std::net::TcpStream::connect(s.addr).expect("connect");
        write!(
            c,
            "POST /api/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER}\r\n\
             Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"nam"
        )
        .expect("write");
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let mut answer = vec![0u8; 512];
        let n = c
            .read(&mut answer)
            .expect("an answer before the client gives up");
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"timeout\""), "{text}");

        // A header block far beyond any real client's is refused.
        let huge = "a".repeat(1 << 20);
        let r = request(
            s.addr,
            "GET",
            "/api/v1/models",
            &[("X-Huge", huge.as_str())],
            b"",
        );
        assert!((400..500).contains(&r.status), "{}", r.status);
        // A control character in a header is refused by the HTTP parser; a
        // token that is not ASCII text is a 401.
        let r = request(
            s.addr,
            "GET",
            "/api/v1/models",
            &[("Authorization", "Bearer \u{1}")],
            b"",
        );
        assert_eq!(r.status, 400);
        let r = request(
            s.addr,
            "GET",
            "/api/v1/models",
            &[("Authorization", "Bearer é-token-0123456789")],
            b"",
        );
        assert_eq!(r.status, 401);
        // And the server still answers.
        let r = get(&s, "/api/v1/models", Some(READER));
        assert_eq!(r.status, 200);
    })
    .await
    .expect("requests");
    assert_eq!(registry.model("fraud").await.expect("model").seq(), before);
}

/// Two servers over one registry location, as behind a load balancer: what is
/// uploaded through one is read, downloaded and promoted through the other.
async fn two_servers_share_one_registry(
    open: impl Fn() -> futures::future::BoxFuture<'static, Registry>,
) {
    let a = start(open().await, ServerOptions::new().tokens(tokens()));
    let b = start(open().await, ServerOptions::new().tokens(tokens()));
    let weights = payload(2 << 20, 9);
    tokio::task::spawn_blocking(move || {
        let (ct, body) = multipart(&[
            ("metadata", None, br#"{"metrics":{"auc":0.9}}"#),
            ("file", Some("model.bin"), &weights),
        ]);
        let auth = bearer(WRITER);
        let r = request(
            a.addr,
            "POST",
            "/api/v1/models/shared/versions",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", ct.as_str()),
            ],
            &body,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let got = get(
            &b,
            "/api/v1/models/shared/versions/1/files/model.bin",
            Some(READER),
        );
        assert_eq!(got.status, 200);
        assert!(got.complete);
        assert_eq!(got.body, weights);
        let r = send(
            &b,
            "POST",
            "/api/v1/models/shared/versions/1/promote",
            Some(WRITER),
            r#"{"to":"production"}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        // The first server sees the promotion made through the second.
        let v = get(
            &a,
            "/api/v1/models/shared/versions/production",
            Some(READER),
        )
        .json();
        assert_eq!(v["number"], 1);
        let history = get(&a, "/api/v1/models/shared/history", Some(READER)).json();
        let actors: Vec<&str> = history["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|e| e["actor"].as_str())
            .collect();
        assert!(actors.iter().all(|a| *a == "wes@example.com"), "{actors:?}");
    })
    .await
    .expect("requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_over_one_local_registry() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("reg");
    two_servers_share_one_registry(move || {
        let path = path.clone();
        Box::pin(async move { Registry::open_local(path).await.expect("open") })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(modelreg_s3),
    ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
)]
async fn two_servers_over_one_s3_registry() {
    let url = common::servers::Server::S3.unique_url();
    two_servers_share_one_registry(move || {
        let url = url.clone();
        Box::pin(async move { Registry::open_url(&url).await.expect("open") })
    })
    .await;
}

/// In CI the real Hugging Face and MLflow clients must be there: their tests
/// are ignored without them, which must not pass unnoticed.
#[test]
fn python_clients_configured_in_ci() {
    if !common::servers::in_ci() {
        return;
    }
    if !cfg!(modelreg_pyclients) {
        panic!(
            "CI is set but MODELREG_TEST_PYTHON was not set when the tests were built, so the \
             huggingface_hub and mlflow client tests are ignored; .ci/run installs them"
        );
    }
    let out = std::process::Command::new(common::http::python())
        .args(["-c", "import huggingface_hub, mlflow; print('ok')"])
        .output()
        .expect("run the clients' python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_mid_body_registers_nothing_and_leaves_nothing() {
    let (_dir, registry, staging, s) = seeded_with_staging(ServerOptions::new()).await;
    let staging2 = staging.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let big = payload(8 << 20, 3);
        let (ct, body) = multipart(&[("file", Some("model.bin"), &big)]);
        let mut c = std::net::TcpStream::connect(s.addr).expect("connect");
        write!(
            c,
            "POST /api/v1/models/fraud/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER}\r\n\
             Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("head");
        c.write_all(&body[..body.len() / 2]).expect("half the body");
        c.flush().expect("flush");
        // The file is being staged...
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(&staging2).map(|d| d.count()).unwrap_or(0) == 0 {
            assert!(std::time::Instant::now() < deadline, "nothing was staged");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // ...when the client goes away.
        drop(c);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_dir(&staging2).map(|d| d.count()).unwrap_or(0) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the abandoned upload's staging directory is still there"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(s);
    })
    .await
    .expect("requests");
    assert_eq!(
        registry
            .model("fraud")
            .await
            .expect("model")
            .versions()
            .len(),
        2
    );
}

/// Tags and metrics of the production version are fixed: the REST calls that
/// edit them answer 409 `immutable` with the library's message and change
/// nothing; the version in staging is still editable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_production_version_is_409_immutable() {
    let (_dir, registry) = seeded().await;
    let before = registry.model("fraud").await.expect("model").seq();
    let s = server(registry.clone());
    tokio::task::spawn_blocking(move || {
        let w = Some(WRITER);
        for (path, body, what) in [
            (
                "/api/v1/models/fraud/versions/1/tags",
                r#"{"set":{"team":"x"}}"#,
                "tags",
            ),
            (
                "/api/v1/models/fraud/versions/production/metrics",
                r#"{"metrics":{"auc":0.5}}"#,
                "metrics",
            ),
            (
                "/api/v1/models/fraud/versions/1/description",
                r#"{"description":"x"}"#,
                "description",
            ),
        ] {
            let r = send(&s, "POST", path, w, body);
            assert_eq!(r.status, 409, "{path}: {}", r.text());
            let e = r.json();
            assert_eq!(e["error"]["kind"], "immutable", "{path}");
            assert_eq!(
                e["error"]["message"],
                format!(
                    "fraud/1 is in production: its {what} cannot be changed without an explicit override (override_immutable with a reason)"
                ),
                "{path}"
            );
        }
        let r = send(
            &s,
            "POST",
            "/api/v1/models/fraud/versions/2/tags",
            w,
            r#"{"set":{"team":"x"}}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let r = send(
            &s,
            "POST",
            "/api/v1/models/fraud/versions/2/description",
            w,
            r#"{"description":"challenger <b>&</b>"}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["description"], "challenger <b>&</b>");
        let long = format!(r#"{{"description":"{}"}}"#, "x".repeat(65_537));
        let r = send(
            &s,
            "POST",
            "/api/v1/models/fraud/versions/2/description",
            w,
            &long,
        );
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.json()["error"]["kind"], "too_large");
        let r = send(
            &s,
            "POST",
            "/api/v1/models/fraud/versions/9/description",
            w,
            r#"{"description":"x"}"#,
        );
        assert_eq!(r.status, 404, "{}", r.text());
        let r = send(
            &s,
            "POST",
            "/api/v1/models/fraud/versions/2/description",
            w,
            r#"{"text":"x"}"#,
        );
        assert_eq!(r.status / 100, 4, "{}", r.text());
    })
    .await
    .expect("requests");
    let state = registry.model("fraud").await.expect("model");
    assert_eq!(
        state.seq(),
        before + 2,
        "only the staging version's tags and description changed"
    );
    assert_eq!(
        state
            .version(modelreg::VersionNumber::new(2).expect("n"))
            .expect("v2")
            .description,
        "challenger <b>&</b>"
    );
}

/// A purged version's files and manifest are `410 Gone` with kind `purged`;
/// its record still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_version_is_gone_but_its_record_stays() {
    let (_dir, registry) = seeded().await;
    let me = registry.acting_as(Actor::new("admin").expect("actor"));
    me.transition("fraud/2", Stage::Archived, "retire")
        .await
        .expect("archive");
    me.purge_version("fraud/2", "superseded")
        .await
        .expect("purge");
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let auth = bearer(READER);
        let a = ("Authorization", auth.as_str());
        for path in [
            "/api/v1/models/fraud/versions/2/files/model.bin",
            "/api/v1/models/fraud/versions/2/files",
        ] {
            let r = request(s.addr, "GET", path, &[a], b"");
            assert_eq!(r.status, 410, "{path}: {}", r.text());
            assert_eq!(r.json()["error"]["kind"], "purged", "{path}");
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("superseded")),
                "{path}"
            );
        }
        let record = request(s.addr, "GET", "/api/v1/models/fraud/versions/2", &[a], b"");
        assert_eq!(record.status, 200, "{}", record.text());
        assert_eq!(record.json()["purged"]["reason"], "superseded");
        let live = request(
            s.addr,
            "GET",
            "/api/v1/models/fraud/versions/1/files/model.bin",
            &[a],
            b"",
        );
        assert_eq!(live.status, 200);
    })
    .await
    .expect("requests");
}

/// An admin purges a version and applies a retention policy over REST: the
/// registry's rules answer (a protected version is 409 `protected` naming why,
/// a dry run writes nothing), and a purged version's files are 410 after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_purges_versions_and_applies_retention() {
    let (_dir, registry) = seeded().await;
    let ci = registry.acting_as(Actor::new("seed").expect("actor"));
    for i in 3..=5u8 {
        let files = modelreg::ArtifactSource::bytes("model.bin", payload(1024, i)).expect("source");
        ci.register("fraud", files, modelreg::NewVersion::new())
            .await
            .expect("register");
    }
    let s = server(registry.clone());
    let events_before = registry.model("fraud").await.expect("model").seq();
    tokio::task::spawn_blocking(move || {
        let purge = |v: u32, body: &str| {
            send(
                &s,
                "POST",
                &format!("/api/v1/models/fraud/versions/{v}/purge"),
                Some(ADMIN),
                body,
            )
        };
        // Protected: production (v1), staging (v2).
        let r = purge(1, r#"{"reason":"x"}"#);
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(r.json()["error"]["kind"], "protected");
        assert!(r.text().contains("production"), "{}", r.text());
        let r = purge(3, r#"{"reason":"too big"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["purged"]["reason"], "too big");
        assert_eq!(
            r.json()["purged"]["by"],
            "root@example.com",
            "the token's identity"
        );
        let r = get(
            &s,
            "/api/v1/models/fraud/versions/3/files/model.bin",
            Some(READER),
        );
        assert_eq!(r.status, 410, "{}", r.text());
        let again = purge(3, r#"{"reason":"again"}"#);
        assert_eq!(again.status, 400, "{}", again.text());
        assert!(again.text().contains("purged already"), "{}", again.text());

        let retain = |body: &str| {
            send(
                &s,
                "POST",
                "/api/v1/models/fraud/retention",
                Some(ADMIN),
                body,
            )
        };
        let dry = retain(r#"{"keep_last":1}"#);
        assert_eq!(dry.status, 200, "{}", dry.text());
        let d = dry.json();
        assert_eq!(d["dry_run"], true);
        assert_eq!(d["purged"], serde_json::json!([4]));
        let kept: Vec<_> = d["protected"]
            .as_array()
            .expect("protected")
            .iter()
            .map(|p| p["version"].clone())
            .collect();
        assert_eq!(kept, [serde_json::json!(1), serde_json::json!(2)]);
        assert_eq!(d["protected"][0]["protections"][0]["kind"], "stage");
        assert_eq!(
            get(
                &s,
                "/api/v1/models/fraud/versions/4/files/model.bin",
                Some(READER)
            )
            .status,
            200
        );

        let done = retain(r#"{"keep_last":1,"apply":true}"#);
        assert_eq!(done.status, 200, "{}", done.text());
        assert_eq!(done.json()["dry_run"], false);
        assert_eq!(done.json()["purged"], serde_json::json!([4]));
        assert_eq!(
            get(
                &s,
                "/api/v1/models/fraud/versions/4/files/model.bin",
                Some(READER)
            )
            .status,
            410
        );
        assert_eq!(
            get(
                &s,
                "/api/v1/models/fraud/versions/5/files/model.bin",
                Some(READER)
            )
            .status,
            200
        );

        // No limit, an unknown field, a negative age: 4xx, nothing written.
        for body in ["{}", r#"{"keep":1}"#, r#"{"older_than_seconds":-1}"#] {
            let r = retain(body);
            assert!(
                (400..500).contains(&r.status) && r.status != 403,
                "{body}: {} {}",
                r.status,
                r.text()
            );
        }
    })
    .await
    .expect("requests");
    // Two purges, one event each; the refusals and the dry run wrote nothing.
    assert_eq!(
        registry.model("fraud").await.expect("model").seq(),
        events_before + 2
    );
}

/// A version's signatures are listed as their records' JSON, and each bundle
/// is served as the bytes signed, with the Sigstore bundle media type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_listed_and_their_bundles_served() {
    let (_dir, registry) = seeded().await;
    let key = modelreg::signing::SigningKey::generate();
    let sig = registry
        .acting_as(Actor::new("evaluator").expect("actor"))
        .sign_version("fraud/2", &key, "evaluated")
        .await
        .expect("sign");
    let manifest = registry.manifest("fraud/2").await.expect("manifest");
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let t = Some(READER);
        let list = get(&s, "/api/v1/models/fraud/versions/2/signatures", t);
        assert_eq!(list.status, 200, "{}", list.text());
        let list = list.json();
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert_eq!(list[0]["key"], key.id().as_str());
        assert_eq!(list[0]["by"], "evaluator");
        assert_eq!(list[0]["reason"], "evaluated");
        assert_eq!(list[0]["hash"], "sha256");
        assert_eq!(list[0]["bundle"], sig.bundle.to_string());
        assert_eq!(
            get(&s, "/api/v1/models/fraud/versions/1/signatures", t).json(),
            serde_json::json!([])
        );
        let bundle = get(
            &s,
            &format!("/api/v1/models/fraud/versions/2/signatures/{}", sig.bundle),
            t,
        );
        assert_eq!(bundle.status, 200);
        assert_eq!(
            bundle.header("content-type"),
            Some("application/vnd.dev.sigstore.bundle.v0.3+json")
        );
        modelreg::signing::verify_bundle(&bundle.body, &manifest, &[key.public_key().clone()])
            .expect("the served bundle verifies");
        // Another version's path does not serve it; a malformed digest is a 400.
        let other = get(
            &s,
            &format!("/api/v1/models/fraud/versions/1/signatures/{}", sig.bundle),
            t,
        );
        assert_eq!(other.status, 404, "{}", other.text());
        let bad = get(&s, "/api/v1/models/fraud/versions/2/signatures/nope", t);
        assert_eq!(bad.status, 400, "{}", bad.text());
    })
    .await
    .expect("client");
}

/// A version's latest format scan is served as its record's JSON (what the
/// `format_policy` gate reads); a version never scanned is a 404 that says
/// how to scan it, and no token is a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versions_format_scan_is_served() {
    let (_dir, registry) = seeded().await;
    let scan = registry
        .acting_as(Actor::new("ci").expect("actor"))
        .scan_formats("fraud/2")
        .await
        .expect("scan");
    let s = server(registry);
    tokio::task::spawn_blocking(move || {
        let t = Some(READER);
        let r = get(&s, "/api/v1/models/fraud/versions/2/scan", t);
        assert_eq!(r.status, 200, "{}", r.text());
        let json = r.json();
        assert_eq!(json, serde_json::to_value(&scan).expect("json"));
        assert_eq!(json["by"], "ci");
        assert_eq!(json["scanner"], modelreg::scan::SCANNER_VERSION);
        let none = get(&s, "/api/v1/models/fraud/versions/1/scan", t);
        assert_eq!(none.status, 404, "{}", none.text());
        let e = none.json();
        assert_eq!(e["error"]["kind"], "not_found");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("fraud/1 has not been scanned")),
            "{e}"
        );
        assert_eq!(
            get(&s, "/api/v1/models/fraud/versions/9/scan", t).status,
            404
        );
        assert_eq!(
            get(&s, "/api/v1/models/fraud/versions/2/scan", None).status,
            401
        );
    })
    .await
    .expect("client");
}
