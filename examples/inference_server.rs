//! An inference server on top of the registry: it keeps `scorer@production`
//! loaded through the local model cache (`ModelCache::follow`, which swaps a new
//! version in once its files are verified), serves predictions over HTTP on
//! localhost, and routes keyed requests between the champion (`@production`) and a
//! challenger (`@challenger`) by a traffic split stored in the registry, sticky per
//! user. Routing reads nothing per request: the server holds the model's state as
//! of its last change (`Registry::watch_model`) and routes from it
//! (`ModelState::route`).
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
//! `GET /health` answers `{"production":N,"routing":N}`: the version unkeyed
//! requests get, and the one keyed requests routed to `@production` get.

#[path = "common/safetensors.rs"]
mod safetensors;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelreg::{
    Actor, ArtifactSource, CacheOptions, CachedModel, CreateModel, Followed, ModelCache,
    ModelState, NewVersion, Registered, Registry, RouteTarget, Session, SetAlias, Stage,
    TrafficSplit, VersionNumber, VersionRecord, WatchOptions,
};
use safetensors::Logistic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MODEL: &str = "scorer";
/// What the server serves when a request names no user.
const PRODUCTION: &str = "scorer@production";
/// The features every self-test request sends.
const X: [f32; 4] = [0.5, -1.0, 2.0, 0.1];

/// A version loaded into memory, with its cache entry held in use.
struct Loaded {
    number: VersionNumber,
    model: Logistic,
    /// Keeps the files from being evicted while the server uses this version.
    _files: CachedModel,
}

/// The server's state, shared by connections.
struct Server {
    cache: ModelCache,
    /// `scorer@production`, kept verified on disk: what unkeyed requests get.
    production: Followed,
    /// The model as of its last change: what keyed requests are routed by.
    state: Followed<ModelState>,
    /// Versions parsed into memory, by number.
    loaded: Mutex<HashMap<VersionNumber, Arc<Loaded>>>,
}

impl Server {
    /// Follows production and the model's state, polling every 50 ms.
    async fn start(cache: ModelCache) -> Result<Arc<Server>, BoxError> {
        let every = WatchOptions::new().interval(Duration::from_millis(50));
        let production = cache.follow(PRODUCTION, every).await?;
        let state = cache.registry().follow_model(MODEL, every).await?;
        let loaded = Mutex::default();
        Ok(Arc::new(Server {
            cache,
            production,
            state,
            loaded,
        }))
    }

    /// The version in memory, loading it through the cache on first use.
    async fn load(&self, v: &VersionRecord) -> Result<Arc<Loaded>, BoxError> {
        if let Some(l) = lock(&self.loaded).get(&v.number) {
            return Ok(l.clone());
        }
        let files = self.cache.get(v).await?;
        let bytes = tokio::fs::read(files.path().join("model.safetensors")).await?;
        let loaded = Arc::new(Loaded {
            number: v.number,
            model: Logistic::from_safetensors(&bytes)?,
            _files: files,
        });
        lock(&self.loaded).insert(v.number, loaded.clone());
        Ok(loaded)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    let unavailable = |e: String| ("503 Service Unavailable", e);
    match path {
        "/health" => Ok(serde_json::json!({
            "production": server.production.current().version().number.get(),
            "routing": server.state.current().production().map(|v| v.number.get()),
            "error": server.production.last_error(),
        })),
        "/predict" => {
            let x: Vec<f32> = params
                .get("x")
                .ok_or(("400 Bad Request", "missing x".to_owned()))?
                .split(',')
                .map(|v| v.parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|e| ("400 Bad Request", format!("x: {e}")))?;
            let (version, route) = match params.get("user") {
                // A keyed request follows the traffic split of the state held.
                Some(user) => server
                    .state
                    .current()
                    .route(user.as_bytes())
                    .map(|r| (VersionRecord::clone(&r.version), r.target))
                    .map_err(|e| unavailable(e.to_string()))?,
                // Otherwise whatever production is, as followed.
                None => (
                    server.production.current().version().clone(),
                    RouteTarget::production(),
                ),
            };
            let loaded = server
                .load(&version)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            Ok(serde_json::json!({
                "version": loaded.number.get(),
                "route": route.to_string(),
                "score": loaded.model.predict(&x),
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

/// Waits (at most 20 s) until the server's health shows `v` in production, for
/// unkeyed and keyed requests alike, and returns that health.
async fn serving(port: u16, v: &VersionRecord) -> Result<serde_json::Value, BoxError> {
    let want = serde_json::json!(v.number.get());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let health = get(port, "/health").await?;
        if health["production"] == want && health["routing"] == want {
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
    let server = Server::start(cache).await?;
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
    let cached = server.cache.entries().await?;
    println!(
        "cache: {} entries, {} bytes (versions in use are held, never evicted)",
        cached.len(),
        cached.iter().map(|e| e.size).sum::<u64>()
    );
    Ok(())
}
