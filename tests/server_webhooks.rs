//! Webhooks: signed deliveries, retries with backoff, and every delivery and
//! failure visible to an admin.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use common::http::{Running, request, start};
use modelreg::server::{ServerOptions, Tokens, Webhook, webhook_signature};
use modelreg::{
    Actor, ArtifactSource, CreateModel, NewVersion, Registered, Registry, Session, SetAlias, Stage,
};

const ADMIN: &str = "admin-token-0123456789ab";
const SECRET: &str = "a-long-shared-secret-42";

/// What the receiver got: headers and body of each request.
type Got = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver on a loopback port that fails its first request with 500.
async fn receiver() -> (String, Got) {
    receiver_that(true).await
}

/// A receiver on a loopback port, failing its first request if `fail_first`.
async fn receiver_that(fail_first: bool) -> (String, Got) {
    let got: Got = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let mut all = seen.lock().expect("lock");
                all.push((headers, body.to_vec()));
                if fail_first && all.len() == 1 {
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

/// The `X-Modelreg-Delivery` of each request a receiver got, in order.
fn deliveries(got: &Got) -> Vec<String> {
    got.lock()
        .expect("lock")
        .iter()
        .map(|(h, _)| h["x-modelreg-delivery"].to_str().expect("ascii").to_owned())
        .collect()
}

/// Waits up to 20 s for `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops a server (and its runtime) without blocking this one's workers.
async fn stop(server: Running) {
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("the server stops");
}

/// `<model>:<seq>` of each event of `model` after `after` whose kind is one of `kinds`.
async fn wanted(registry: &Registry, model: &str, after: u64, kinds: &[&str]) -> Vec<String> {
    registry
        .events(model)
        .await
        .expect("events")
        .iter()
        .filter(|e| e.seq > after && kinds.contains(&e.kind.name()))
        .map(|e| format!("{}:{}", e.model, e.seq))
        .collect()
}

/// Registers `bytes` as a new version of `model` (created first if need be)
/// and moves it to `stage`, if given.
async fn staged_version(
    me: &Session,
    model: &str,
    bytes: &'static str,
    stage: Option<Stage>,
) -> Registered {
    if me
        .list_models()
        .await
        .expect("list")
        .iter()
        .all(|m| m.as_str() != model)
    {
        me.create_model(model, CreateModel::new())
            .await
            .expect("create");
    }
    let source = ArtifactSource::bytes("m.bin", bytes).expect("src");
    let v = me
        .register(model, source, NewVersion::new())
        .await
        .expect("register");
    if let Some(to) = stage {
        me.transition(&v, to, "try it").await.expect("transition");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_made_while_the_server_is_down_are_delivered_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = Registry::open_local(dir.path().join("registry"))
        .await
        .expect("open");
    let me = registry.acting_as(Actor::new("alice").expect("actor"));
    let v1 = staged_version(&me, "fraud", "v1", None).await;
    let (url, got) = receiver_that(false).await;
    let staging = dir.path().join("staging");
    let kinds = ["stage_changed", "alias_set"];
    let options = |hooks: Vec<Webhook>| {
        ServerOptions::new()
            .poll_interval(Duration::from_millis(20))
            .staging_dir(&staging)
            .webhooks(hooks)
            .expect("valid hooks")
    };
    let cursors_dir = staging.join("webhook-cursors");
    let saved = |model: &str| -> Option<u64> {
        let files: Vec<_> = std::fs::read_dir(&cursors_dir).ok()?.flatten().collect();
        let [file] = files.as_slice() else {
            return None;
        };
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
        assert_eq!(v["format"], 1, "{v}");
        v["cursors"][model].as_u64()
    };

    // First run: one delivery, acknowledged and saved.
    let s = start(registry.clone(), options(vec![hook(&url, &kinds, 3)]));
    eventually("the hook saves its starting position", || {
        saved("fraud") == Some(2)
    })
    .await;
    me.transition(&v1, Stage::Staging, "try it")
        .await
        .expect("transition");
    eventually(
        "the first event is delivered and its position saved",
        || saved("fraud") == Some(3),
    )
    .await;
    assert_eq!(deliveries(&got), ["fraud:3"]);
    stop(s).await;

    // While the server is down: events the hook wants and events it does
    // not, on the model it knew and on one created meanwhile.
    me.set_alias(&v1, "champion", SetAlias::new())
        .await
        .expect("alias");
    let v2 = staged_version(&me, "fraud", "v2", Some(Stage::Staging)).await;
    staged_version(&me, "churn", "c1", Some(Stage::Staging)).await;
    let mut missed = wanted(&registry, "fraud", 3, &kinds).await;
    missed.extend(wanted(&registry, "churn", 0, &kinds).await);
    assert_eq!(missed.len(), 3, "{missed:?}");

    // Restarted over the same staging (and so state) directory, with a
    // second hook that has never run: it starts from now.
    let (url2, got2) = receiver_that(false).await;
    let s = start(
        registry.clone(),
        options(vec![hook(&url, &kinds, 3), hook(&url2, &[], 3)]),
    );
    eventually("the missed events are delivered", || {
        deliveries(&got).len() > missed.len()
    })
    .await;
    // Nothing more comes: each missed event once, the acknowledged one not
    // again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_restart = deliveries(&got)[1..].to_vec();
    let mut sorted = after_restart.clone();
    sorted.sort();
    missed.sort();
    assert_eq!(
        sorted, missed,
        "delivered after the restart: {after_restart:?}"
    );
    // In each model's order.
    for model in ["fraud:", "churn:"] {
        let seqs: Vec<u64> = after_restart
            .iter()
            .filter_map(|d| d.strip_prefix(model)?.parse().ok())
            .collect();
        assert!(seqs.is_sorted(), "{after_restart:?}");
    }
    assert!(deliveries(&got2).is_empty(), "{:?}", deliveries(&got2));

    // Both follow new events.
    me.set_alias(&v2, "challenger", SetAlias::new())
        .await
        .expect("alias");
    let next = wanted(&registry, "fraud", 6, &["alias_set"]).await;
    eventually("both hooks get the next event", || {
        deliveries(&got).ends_with(&next) && deliveries(&got2) == next
    })
    .await;
    stop(s).await;
}
