//! An inference server on top of the registry: it keeps the `scorer` model ready
//! to serve through the local model cache (`ModelCache::serve`: production and
//! every target of the traffic split fetched, verified and parsed into memory,
//! swapped in only once loaded), serves predictions over HTTP on localhost, and
//! routes keyed requests between the champion (`@production`) and a challenger
//! (`@challenger`) by the traffic split stored in the registry, sticky per
//! user. A request reads nothing and loads nothing: it is answered from what
//! `serve` holds.
//!
//! To finish by itself it runs a scripted self-test: it starts the server, sends
//! requests for several users, promotes a new version from a separate registry
//! handle (as a CI job in another process would), waits until the server's health
//! shows the new version, sends the same requests again, shows what changed, and
//! exits.
//!
//! ```text
//! cargo run --example inference_server
//! curl 'http://127.0.0.1:<port>/predict?x=0.5,-1,2,0.1&user=alice'   # while it runs
//! ```
//!
//! HTTP: `GET /predict?x=<comma-separated floats>[&user=<key>]` (or an `X-User`
//! header) answers `{"version":N,"route":"@production","score":0.73}`;
//! `GET /health` answers `{"production":N,"loaded":[N,…],"error":null}`: the
//! version unkeyed requests get, the versions held in memory, and why the last
//! change could not be loaded, if it could not.

#[path = "common/safetensors.rs"]
mod safetensors;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use modelreg::{
    Actor, ArtifactSource, CacheOptions, CreateModel, Followed, ModelCache, NewVersion, Registered,
    Registry, RouteTarget, Serving, Session, SetAlias, Stage, TrafficSplit, VersionRecord,
    WatchOptions,
};
use safetensors::Logistic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MODEL: &str = "scorer";
/// The features every self-test request sends.
const X: [f32; 4] = [0.5, -1.0, 2.0, 0.1];

/// What connections share: `scorer` with every version a request can be routed
/// to parsed into memory, kept current by polling every 50 ms.
type Server = Followed<Serving<Logistic>>;

async fn start(cache: &ModelCache) -> Result<Arc<Server>, BoxError> {
    let every = WatchOptions::new().interval(Duration::from_millis(50));
    let server = cache
        .serve(MODEL, every, |files| {
            let bytes = std::fs::read(files.path().join("model.safetensors"))?;
            Ok(Logistic::from_safetensors(&bytes)?)
        })
        .await?;
    Ok(Arc::new(server))
}

// ----- HTTP ---------------------------------------------------------------------------

/// Reads one request head (at most 8 KiB) and returns method, path, query and the
/// `X-User` header.
async fn read_request(
    sock: &mut TcpStream,
) -> Result<(String, String, BTreeMap<String, String>), BoxError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 8192 {
            return Err("incomplete or oversized request".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("x-user")
        {
            params
                .entry("user".into())
                .or_insert_with(|| v.trim().to_owned());
        }
    }
    Ok((method, path.to_owned(), params))
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    body: &serde_json::Value,
) -> std::io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

async fn handle(server: Arc<Server>, mut sock: TcpStream) {
    let answer = match read_request(&mut sock).await {
        Ok((method, path, params)) if method == "GET" => answer(&server, &path, &params).await,
        Ok(_) => Err(("405 Method Not Allowed", "only GET".into())),
        Err(e) => Err(("400 Bad Request", e.to_string())),
    };
    let _ = match answer {
        Ok(body) => respond(&mut sock, "200 OK", &body).await,
        Err((status, msg)) => respond(&mut sock, status, &serde_json::json!({"error": msg})).await,
    };
}

async fn answer(
    server: &Server,
    path: &str,
    params: &BTreeMap<String, String>,
) -> Result<serde_json::Value, (&'static str, String)> {
    let unavailable = |e: modelreg::Error| ("503 Service Unavailable", e.to_string());
    let now = server.current();
    match path {
        "/health" => Ok(serde_json::json!({
            "production": now.production().ok().map(|m| m.version().number.get()),
            "loaded": now.loaded().map(|m| m.version().number.get()).collect::<Vec<_>>(),
            "error": server.last_error().map(|e| e.to_string()),
        })),
        "/predict" => {
            let x: Vec<f32> = params
                .get("x")
                .ok_or(("400 Bad Request", "missing x".to_owned()))?
                .split(',')
                .map(|v| v.parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|e| ("400 Bad Request", format!("x: {e}")))?;
            let (model, route) = match params.get("user") {
                // A keyed request follows the traffic split.
                Some(user) => {
                    let served = now.route(user.as_bytes()).map_err(unavailable)?;
                    (served.model, served.target)
                }
                // Otherwise whatever production is.
                None => (
                    now.production().map_err(unavailable)?,
                    RouteTarget::production(),
                ),
            };
            Ok(serde_json::json!({
                "version": model.version().number.get(),
                "route": route.to_string(),
                "score": model.predict(&x),
            }))
        }
        _ => Err(("404 Not Found", format!("no route for {path}"))),
    }
}

/// A minimal HTTP client: one GET, the JSON body back.
async fn get(port: u16, target: &str) -> Result<serde_json::Value, BoxError> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).await?;
    let resp = String::from_utf8(resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no body")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{target}: {head} {body}").into());
    }
    Ok(serde_json::from_str(body)?)
}

// ----- the self-test ----------------------------------------------------------------------

/// Registers a version whose weights are `weight`, `bias`.
async fn register(me: &Session, weight: [f32; 4], bias: f32) -> Result<Registered, BoxError> {
    let model = Logistic {
        weight: weight.to_vec(),
        bias,
    };
    let weights = model.to_safetensors(&BTreeMap::new());
    let files = ArtifactSource::bytes("model.safetensors", weights)?;
    Ok(me.register(MODEL, files, NewVersion::new()).await?)
}

/// Waits (at most 20 s) until the server's health shows `v` in production, and
/// returns that health.
async fn serving(port: u16, v: &VersionRecord) -> Result<serde_json::Value, BoxError> {
    let want = serde_json::json!(v.number.get());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let health = get(port, "/health").await?;
        if health["production"] == want {
            return Ok(health);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the server did not pick up {}: {health}", v.reference()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One round of requests: `(user, route, version, score)` for each user, plus the
/// unkeyed request.
async fn round(port: u16, users: &[String]) -> Result<Vec<(String, String, u64, f64)>, BoxError> {
    let x = X.map(|v| v.to_string()).join(",");
    let mut out = Vec::new();
    for user in users.iter().map(Some).chain([None]) {
        let target = match user {
            Some(u) => format!("/predict?x={x}&user={u}"),
            None => format!("/predict?x={x}"),
        };
        let r = get(port, &target).await?;
        out.push((
            user.cloned().unwrap_or_else(|| "(no key)".into()),
            r["route"].as_str().unwrap_or_default().to_owned(),
            r["version"].as_u64().unwrap_or_default(),
            r["score"].as_f64().unwrap_or_default(),
        ));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("registry");

    // The registry a training pipeline filled: three versions, 1 in production,
    // 2 the challenger, and a 70/30 split between champion and challenger.
    let ops = Registry::open_local(&dir)
        .await?
        .acting_as(Actor::new("release-bot")?);
    ops.create_model(MODEL, CreateModel::new().description("scores requests"))
        .await?;
    let v1 = register(&ops, [0.4, -0.3, 0.2, 0.0], 0.1).await?;
    let v2 = register(&ops, [0.6, -0.5, 0.1, 0.0], -0.2).await?;
    let v3 = register(&ops, [1.2, -0.1, 0.6, 0.3], 0.0).await?;
    ops.promote_to(&v1, Stage::Production, "first release")
        .await?;
    ops.set_alias(&v2, "challenger", SetAlias::new()).await?;
    let split = TrafficSplit::new([("@production", 70), ("@challenger", 30)])?;
    ops.set_traffic_split(MODEL, split.clone(), "A/B test of v2")
        .await?;
    println!(
        "registry: {MODEL}/1..3, production = {}, challenger = {}, split {split}",
        v1.reference(),
        v2.reference()
    );

    // ----- the server -------------------------------------------------------------------
    let cache = ModelCache::open(
        tmp.path().join("cache"),
        Registry::open_local(&dir).await?,
        CacheOptions::new().max_bytes(64 << 20),
    )
    .await?;
    let server = start(&cache).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    {
        let server = server.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(handle(server.clone(), sock));
            }
        });
    }
    println!("[server] listening on http://127.0.0.1:{port}");
    let health = serving(port, &v1).await?;
    println!("[client] GET /health -> {health}");

    // ----- before -----------------------------------------------------------------------
    let users: Vec<String> = (1..=10).map(|i| format!("user-{i}")).collect();
    let before = round(port, &users).await?;
    // Sticky: asking again gives the same answers.
    assert_eq!(round(port, &users).await?, before);

    // ----- a release from elsewhere ----------------------------------------------------
    println!(
        "\n[ops] promoting {} to production (another registry handle)",
        v3.reference()
    );
    ops.promote_to(&v3, Stage::Production, "better offline metrics")
        .await?;
    let health = serving(port, &v3).await?;
    println!("[client] GET /health -> {health}");
    let after = round(port, &users).await?;

    // ----- what changed ------------------------------------------------------------------
    println!(
        "\n{:<10} {:<13} {:>7} {:>8}   {:>7} {:>8}",
        "user", "route", "before", "score", "after", "score"
    );
    for (b, a) in before.iter().zip(&after) {
        println!(
            "{:<10} {:<13} {:>7} {:>8.4}   {:>7} {:>8.4}{}",
            b.0,
            b.1,
            format!("v{}", b.2),
            b.3,
            format!("v{}", a.2),
            a.3,
            if b.2 != a.2 { "  <- reloaded" } else { "" }
        );
        // Nobody changed route: the split did not change.
        assert_eq!(a.1, b.1, "{} changed route", b.0);
        match b.1.as_str() {
            "@production" => {
                assert_eq!((b.2, a.2), (v1.number.get(), v3.number.get()), "{}", b.0);
                assert!((a.3 - b.3).abs() > 1e-6, "the answer changed");
            }
            _ => assert_eq!((b.2, a.2), (v2.number.get(), v2.number.get()), "{}", b.0),
        }
    }
    let on_challenger = before.iter().filter(|r| r.1 == "@challenger").count();
    println!(
        "\n{} of {} keyed users on the challenger; production moved {} -> {} and the \
         server reloaded without a restart",
        on_challenger,
        users.len(),
        v1.reference(),
        v3.reference()
    );
    let cached = cache.entries().await?;
    println!(
        "cache: {} entries, {} bytes (versions in use are held, never evicted)",
        cached.len(),
        cached.iter().map(|e| e.size).sum::<u64>()
    );
    Ok(())
}
