//! `modelreg serve`'s REST API and its access rules, over a real socket.

mod common;

use common::http::{multipart, request, start};
use common::rest::{
    ADMIN, APPROVER, READER, WRITER, bearer, get, payload, seeded, send, server, tokens,
    write_routes,
};
use modelreg::server::ServerOptions;

/// One part of a multipart body: field name, file name, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_route_refuses_callers_without_its_role_and_changes_nothing() {
    let (_dir, registry) = seeded().await;
    let before = registry.model("fraud").await.expect("model").seq();
    let s = server(registry.clone());
    let read_only = start(registry.clone(), ServerOptions::new());
    tokio::task::spawn_blocking(move || {
        for (method, path, body, needs) in write_routes() {
            let r = send(&s, method, path, None, &body);
            assert_eq!(
                r.status,
                401,
                "{method} {path} without a token: {}",
                r.text()
            );
            assert_eq!(r.json()["error"]["kind"], "unauthorized");
            let r = send(&s, method, path, Some(READER), &body);
            assert_eq!(r.status, 403, "{method} {path} as reader: {}", r.text());
            assert_eq!(r.json()["error"]["kind"], "forbidden");
            if needs == "approver" {
                let r = send(&s, method, path, Some(WRITER), &body);
                assert_eq!(r.status, 403, "{method} {path} as writer: {}", r.text());
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
    assert_eq!(
        registry.model("fraud").await.expect("model").seq(),
        before,
        "a refused request changed the model"
    );
    assert_eq!(registry.list_models().await.expect("models").len(), 1);
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
    let (dir, registry) = seeded().await;
    let staging = dir.path().join("staging");
    let s = start(
        registry.clone(),
        ServerOptions::new().tokens(tokens()).staging_dir(&staging),
    );
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
    let (dir, registry) = seeded().await;
    let staging = dir.path().join("staging");
    let s = start(
        registry.clone(),
        ServerOptions::new()
            .tokens(tokens())
            .staging_dir(&staging)
            .max_upload_bytes(1 << 20),
    );
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
