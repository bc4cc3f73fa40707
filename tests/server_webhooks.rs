//! Webhooks: signed deliveries, retries with backoff, and every delivery and
//! failure visible to an admin.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use common::http::{request, start};
use modelreg::server::{ServerOptions, Tokens, Webhook, webhook_signature};
use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion, Registry, Stage};

const ADMIN: &str = "admin-token-0123456789ab";
const SECRET: &str = "a-long-shared-secret-42";

/// What the receiver got: headers and body of each request.
type Got = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver on a loopback port that fails its first request with 500.
async fn receiver() -> (String, Got) {
    let got: Got = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let mut all = seen.lock().expect("lock");
                all.push((headers, body.to_vec()));
                if all.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn hook(url: &str, events: &[&str], attempts: u32) -> Webhook {
    serde_json::from_value(serde_json::json!({
        "url": url, "secret": SECRET, "events": events, "max_attempts": attempts,
    }))
    .expect("a hook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_and_recorded() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = Registry::open_local(dir.path()).await.expect("open");
    let me = registry.acting_as(Actor::new("alice").expect("actor"));
    me.create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    me.register(
        "fraud",
        ArtifactSource::bytes("m.bin", "v1").expect("src"),
        NewVersion::new(),
    )
    .await
    .expect("register");
    let (url, got) = receiver().await;
    // A port nothing listens on: every attempt fails.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", l.local_addr().expect("addr"))
    };
    let options = ServerOptions::new()
        .tokens(Tokens::parse(&format!("root@example.com:admin:{ADMIN}")).expect("tokens"))
        .poll_interval(Duration::from_millis(20))
        .webhooks(vec![hook(&url, &["stage_changed"], 3), hook(&dead, &[], 2)])
        .expect("valid hooks");
    let s = start(registry.clone(), options);
    // Events before the server started are not replayed; the first new one is.
    tokio::time::sleep(Duration::from_millis(200)).await;
    me.transition("fraud/1", Stage::Staging, "try it")
        .await
        .expect("transition");

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let addr = s.addr;
        let r = tokio::task::spawn_blocking(move || {
            request(
                addr,
                "GET",
                "/api/v1/webhooks",
                &[("Authorization", &format!("Bearer {ADMIN}"))],
                b"",
            )
        })
        .await
        .expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v[0]["delivered"] == 1 && v[1]["failed"] == 1 {
            break v;
        }
        assert!(Instant::now() < deadline, "deliveries did not settle: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The receiver failed once, then took the retry: the same delivery twice.
    let got = got.lock().expect("lock").clone();
    assert_eq!(got.len(), 2, "one failure and one retry");
    for (headers, body) in &got {
        assert_eq!(headers["x-modelreg-event"], "stage_changed");
        assert_eq!(headers["x-modelreg-delivery"], "fraud:3");
        assert_eq!(
            headers["x-modelreg-signature-256"].to_str().expect("ascii"),
            webhook_signature(SECRET.as_bytes(), body),
            "the signature is over the exact body"
        );
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["event"]["actor"], "alice");
        assert_eq!(v["event"]["event"]["to"], "staging");
    }
    assert_ne!(
        got[0].0["x-modelreg-signature-256"]
            .to_str()
            .expect("ascii"),
        webhook_signature(b"another-secret-0000000", &got[0].1)
    );
    let first = &status[0];
    assert_eq!(first["recent"][0]["outcome"], "delivered");
    assert_eq!(first["recent"][0]["attempts"], 2);
    assert!(first.get("secret").is_none() && !status.to_string().contains(SECRET));
    let failed = &status[1]["recent"][0];
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["attempts"], 2);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("sending failed")),
        "{failed}"
    );

    // Only admins see the hooks.
    let addr = s.addr;
    let r = tokio::task::spawn_blocking(move || request(addr, "GET", "/api/v1/webhooks", &[], b""))
        .await
        .expect("request");
    assert_eq!(r.status, 401);
}

#[test]
fn bad_hooks_are_refused_when_configured() {
    for (url, secret, attempts) in [
        ("ftp://example.com/x", SECRET, 3),
        ("not a url", SECRET, 3),
        ("https://example.com/x", "short", 3),
        ("https://example.com/x", SECRET, 0),
    ] {
        let h: Webhook = serde_json::from_value(serde_json::json!({
            "url": url, "secret": secret, "max_attempts": attempts,
        }))
        .expect("parses");
        assert!(
            ServerOptions::new().webhooks(vec![h]).is_err(),
            "{url} {secret} {attempts}"
        );
    }
    let unknown = serde_json::from_value::<Webhook>(serde_json::json!({
        "url": "https://example.com/x", "secret": SECRET, "header": "x",
    }));
    assert!(unknown.is_err(), "unknown fields are refused");
    assert!(!format!("{:?}", hook("https://example.com", &[], 1)).contains(SECRET));
}
