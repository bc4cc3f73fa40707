//! `modelreg serve`: one HTTP server over a [`Registry`], reachable from every
//! language (feature `serve`).
//!
//! What it serves, all from the same process and the same registry:
//! - a REST JSON API under `/api/v1/` for frontends and scripts, described
//!   by the OpenAPI 3.1 document at `/openapi.json` (committed as
//!   `docs/openapi.json`);
//! - the Hugging Face Hub download path, so `HF_ENDPOINT=http://host:port`
//!   makes `huggingface_hub.snapshot_download("fraud", revision="production")`
//!   fetch a version;
//! - a web UI for people under `/ui/` (server-rendered HTML, no script;
//!   `/` leads there), signed in to with a token through a form;
//! - a subset of the MLflow model-registry API under `/api/2.0/mlflow/`, so
//!   `MlflowClient` and `models:/name@alias` URIs work (tracking — runs,
//!   experiments — is not served). Versions are registered from files
//!   uploaded to `/api/2.0/mlflow-artifacts/artifacts/…` and are `READY` at
//!   once; deleting a version deprecates it, and models are never deleted or
//!   renamed (`docs/design.md`, "HTTP server: MLflow registry API", has the
//!   whole mapping).
//!
//! The server adds no storage and no rule: every request goes through the
//! same [`Registry`] calls, validation and gates as an in-process caller.
//! Several servers may run over the same bucket.
//!
//! Access is by bearer token ([`Tokens`], [`Role`]). Without tokens the
//! server is read-only, and `modelreg serve` then listens on loopback only.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use modelreg::Registry;
//! use modelreg::server::{Server, ServerOptions, Tokens};
//!
//! let registry = Registry::open_local("./registry").await?;
//! let tokens = Tokens::parse("ci@example.com:writer:0123456789abcdef0123")?;
//! let server = Server::new(registry, ServerOptions::new().tokens(tokens));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Until Ctrl-C; requests in flight finish first.
//! server.serve(listener, async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await?;
//! # Ok(()) }
//! ```

mod auth;
mod error;
mod events;
mod extract;
mod files;
mod hf;
mod mlflow;
mod openapi;
mod rest;
mod retention;
mod staging;
mod ui;
mod upload;
mod webhooks;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

pub use auth::{Caller, Role, Tokens};
pub use error::{ApiError, ApiResult};
pub use webhooks::{Webhook, webhook_signature};

use crate::Registry;

/// How a [`Server`] behaves: tokens and limits.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    tokens: Tokens,
    max_json_bytes: usize,
    max_upload_bytes: u64,
    uploads: usize,
    request_timeout: Duration,
    staging: Option<PathBuf>,
    state: Option<PathBuf>,
    staged_upload_max_age: Duration,
    verify_downloads: bool,
    poll_interval: Duration,
    webhooks: Vec<Webhook>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tokens: Tokens::none(),
            max_json_bytes: 1 << 20,
            max_upload_bytes: 1 << 40,
            uploads: 4,
            request_timeout: Duration::from_secs(60),
            staging: None,
            state: None,
            staged_upload_max_age: Duration::from_secs(24 * 3600),
            verify_downloads: true,
            poll_interval: Duration::from_secs(1),
            webhooks: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// No tokens (read-only), 1 MiB JSON bodies, 1 TiB uploads, 4 uploads at
    /// once, 60 s for requests other than transfers, downloads verified.
    pub fn new() -> Self {
        Self::default()
    }

    /// Who may do what. Without tokens every write is refused.
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// The largest JSON request body accepted (413 beyond it).
    pub fn max_json_bytes(mut self, bytes: usize) -> Self {
        self.max_json_bytes = bytes;
        self
    }

    /// The largest upload accepted, all files of one request together (413
    /// beyond it; what was received is discarded).
    pub fn max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// How many uploads may stream at once; more wait their turn.
    pub fn concurrent_uploads(mut self, n: usize) -> Self {
        self.uploads = n.max(1);
        self
    }

    /// The time limit of requests other than file transfers (uploads and
    /// downloads run as long as bytes flow).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Where uploads are staged before they are registered (default: the
    /// system's temporary directory). On the registry's filesystem, a local
    /// registry links staged files instead of copying them.
    pub fn staging_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.staging = Some(dir.into());
        self
    }

    /// Where the server keeps what it must remember across restarts: each
    /// webhook's position in every model's log (`webhook-cursors/`), so that
    /// events made while it is down are delivered when it starts again.
    /// Default: the [staging directory](Self::staging_dir) if one is set;
    /// without either, positions live in memory only and a restarted server
    /// delivers from then on (the system's temporary directory is not used:
    /// other servers share it, and it may be emptied at boot).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state = Some(dir.into());
        self
    }

    /// How long an MLflow upload (`PUT /api/2.0/mlflow-artifacts/artifacts/…`)
    /// may stay staged without a version registered from it (default 24 h).
    /// Files not modified for that long are removed at startup and by a sweep
    /// every quarter of it (at most hourly); a registration removes its
    /// source's staged files at once, and the sweep never touches a source a
    /// registration is reading.
    pub fn staged_upload_max_age(mut self, age: Duration) -> Self {
        self.staged_upload_max_age = age;
        self
    }

    /// How often event streams (and webhooks) look for new events (default
    /// 1 s): one read of each followed log's tail per interval.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Webhooks to call on new events (see [`Webhook`]); each is checked
    /// here. They run while [`Server::serve`] does, and resume after a
    /// restart from the positions saved in the [state
    /// directory](Self::state_dir).
    pub fn webhooks(mut self, hooks: Vec<Webhook>) -> crate::Result<Self> {
        for h in &hooks {
            h.check()?;
        }
        self.webhooks = hooks;
        Ok(self)
    }

    /// Whether whole-file downloads are hashed as they stream (default on): a
    /// blob that no longer matches its digest is cut off before its last
    /// byte instead of being handed out.
    pub fn verify_downloads(mut self, verify: bool) -> Self {
        self.verify_downloads = verify;
        self
    }
}

/// What every handler shares.
pub(crate) type State = Arc<Shared>;

pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) tokens: Tokens,
    pub(crate) options: ServerOptions,
    pub(crate) uploads: Semaphore,
    /// Set when the server starts shutting down: endless responses (event
    /// streams) end so the graceful shutdown can finish.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// The webhooks, once [`Server::serve`] started them.
    pub(crate) hooks: std::sync::OnceLock<Arc<webhooks::Hooks>>,
    /// Who may change the staged MLflow uploads when.
    pub(crate) staged: mlflow::StagedUploads,
}

impl Shared {
    /// Whether writes are refused because no token is configured.
    pub(crate) fn read_only(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Where the server's own state is kept, if anywhere.
    pub(crate) fn state_dir(&self) -> Option<PathBuf> {
        self.options
            .state
            .clone()
            .or_else(|| self.options.staging.clone())
    }

    /// Where uploads are staged.
    pub(crate) fn staging_dir(&self) -> PathBuf {
        self.options
            .staging
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    }
}

/// The HTTP server: the routes of every API over one registry.
pub struct Server {
    state: State,
}

/// How long [`Server::serve`] lets connections wait at startup while it reads
/// the registry for the web UI's first views (0.5 s at 100,000 versions).
const WARM_UP: std::time::Duration = std::time::Duration::from_secs(5);

impl Server {
    /// A server over `registry`.
    pub fn new(registry: Registry, options: ServerOptions) -> Self {
        let uploads = Semaphore::new(options.uploads);
        Server {
            state: Arc::new(Shared {
                registry,
                tokens: options.tokens.clone(),
                options,
                uploads,
                stopping: tokio::sync::watch::Sender::new(false),
                hooks: std::sync::OnceLock::new(),
                staged: mlflow::StagedUploads::default(),
            }),
        }
    }

    /// Whether the server refuses every write (no token configured).
    pub fn read_only(&self) -> bool {
        self.state.read_only()
    }

    /// Every route, ready to be served or nested into a larger application.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        Router::new()
            .merge(rest::routes(&state))
            .merge(hf::routes(&state))
            .merge(mlflow::routes(&state))
            .merge(ui::routes(&state))
            .fallback(unknown_route)
            .layer(middleware::from_fn_with_state(state.clone(), time_limit))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                require_reader,
            ))
            .layer(DefaultBodyLimit::max(state.options.max_json_bytes))
            .with_state(state)
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting
    /// connections and waits for the requests in flight. At the start it
    /// reads every model and builds the registry's [lineage graph](Registry::lineage)
    /// for the web UI's pages, accepting connections once that is done or
    /// after a few seconds (then it goes on in the background). An upload that has
    /// not finished when the process exits leaves nothing behind: a version
    /// appears only once all of its files are stored.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let removed = staging::sweep_abandoned(&state.staging_dir());
        if removed > 0 {
            tracing::info!(
                removed,
                "removed the staging directories of uploads whose server died"
            );
        }
        tokio::spawn(mlflow::sweep_periodically(state.clone()));
        // The lineage and dataset pages need the whole lineage graph, and the
        // model pages every record of their model (a registry opens without
        // decoding them): build the graph now, which reads every model whole,
        // so that the first views find both (later changes bring the graph up
        // to date instead of building it anew). Connections wait for it in
        // the listener's backlog, up to WARM_UP; a larger registry goes on
        // warming in the background while requests are served.
        let registry = state.registry.clone();
        let warm = tokio::spawn(async move {
            let started = std::time::Instant::now();
            match registry.lineage().await {
                Ok(_) => tracing::info!(took = ?started.elapsed(), "warmed the registry"),
                Err(e) => {
                    tracing::debug!(error = %e, "the lineage graph could not be built ahead")
                }
            }
        });
        let _ = tokio::time::timeout(WARM_UP, warm).await;
        state.hooks.get_or_init(|| {
            webhooks::Hooks::start(
                state.registry.clone(),
                state.options.webhooks.clone(),
                state.options.poll_interval,
                state.state_dir(),
                state.stopping.subscribe(),
            )
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                state.stopping.send_replace(true);
            })
            .await
    }
}

/// A request body of at most `max` bytes, whole.
async fn read_body(body: axum::body::Body, max: usize) -> ApiResult<bytes::Bytes> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_input",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if out.len() + chunk.len() > max {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {max} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The MLflow call that registers a version from staged files.
const MLFLOW_CREATE_VERSION: &str = "/api/2.0/mlflow/model-versions/create";

/// Requests other than file uploads must be answered within
/// `request_timeout` (a slow or stalled client cannot hold a task and its
/// memory for ever); an upload runs as long as its bytes flow. Responses
/// stream after this: a download's body is not limited.
async fn time_limit(
    axum::extract::State(state): axum::extract::State<State>,
    request: Request,
    next: Next,
) -> Response {
    let upload = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/") || t.starts_with("application/octet-stream"))
        || (request.method() == axum::http::Method::PUT
            && request
                .uri()
                .path()
                .starts_with("/api/2.0/mlflow-artifacts/"));
    if upload {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let limit = state.options.request_timeout;
    let timed_out = |path: &str| {
        dialect_error(
            path,
            ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the request was not complete within {limit:?}"),
            ),
        )
    };
    if request.method() == axum::http::Method::POST && path == MLFLOW_CREATE_VERSION {
        // Registering imports every staged file into the store, which for a
        // model of many GB on object storage takes longer than any fixed limit;
        // cutting it off would make the client retry a registration that may
        // already be recorded. Only the client's part, its JSON body, is timed.
        let (mut parts, body) = request.into_parts();
        // The role first, as every write does: nothing of a caller's body is
        // read without it.
        if let Err(e) = auth::Writer::from_request_parts(&mut parts, &state).await {
            return dialect_error(&path, e);
        }
        let read = read_body(body, state.options.max_json_bytes);
        return match tokio::time::timeout(limit, read).await {
            Err(_) => timed_out(&path),
            Ok(Err(e)) => dialect_error(&path, e),
            Ok(Ok(bytes)) => {
                next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                    .await
            }
        };
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => timed_out(&path),
    }
}

/// Every route needs at least the reader role; writes check more in their
/// handlers.
async fn require_reader(
    axum::extract::State(state): axum::extract::State<State>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if ui::public(parts.uri.path()) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return dialect_error(parts.uri.path(), e),
    };
    if let Err(e) = caller.require(Role::Reader, false) {
        return dialect_error(parts.uri.path(), e);
    }
    next.run(Request::from_parts(parts, body)).await
}

/// An error in the shape the client of `path`'s API expects.
fn dialect_error(path: &str, e: ApiError) -> Response {
    if mlflow::owns(path) {
        mlflow::error_response(e)
    } else if hf::owns(path) {
        hf::error_response(e, None)
    } else if ui::owns(path) {
        ui::error_response(e)
    } else {
        e.into_response()
    }
}

async fn unknown_route(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    dialect_error(
        &path,
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {} {path}", request.method()),
        ),
    )
}
