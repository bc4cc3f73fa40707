//! The REST JSON API under `/api/v1/`: what a frontend or a script in any
//! language needs to read and change the registry.
//!
//! Bodies are the records' own serde shapes (the same JSON as the CLI's
//! `--json`); errors are `{"error":{"kind","status","message"}}`. A version is
//! addressed inside its model by a selector: a number (`7`), a semver label
//! (`1.4.0`), or an alias or stage name (`production`, `champion`, `latest`).
//!
//! Writes take the actor from the caller's token, never from the body.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::State;
use super::auth::{Caller, Role};
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Path, Query};
use super::files;
use crate::{
    Actor, ArtifactSource, CodeRef, CreateModel, DatasetRef, Environment, HistoryFilter, LinkMode,
    NewVersion, RelPath, Relation, SetAlias, Stage, TagKey, TrafficSplit, VersionFilter,
    VersionNumber, VersionPage, VersionRef,
};

/// Every REST route.
pub(crate) fn routes(_state: &State) -> Router<State> {
    let v = "/api/v1/models/{model}/versions/{version}";
    Router::new()
        .route("/api/v1/models", get(list_models).post(create_model))
        .route("/api/v1/models/{model}", get(show_model))
        .route("/api/v1/models/{model}/tags", post(model_tags))
        .route(
            "/api/v1/models/{model}/versions",
            get(list_versions)
                .post(register)
                // Uploads are bounded by `max_upload_bytes`, counted as they stream.
                .layer(DefaultBodyLimit::disable()),
        )
        .route(v, get(show_version))
        .route(&format!("{v}/files"), get(manifest))
        .route(
            &format!("{v}/files/{{*path}}"),
            get(download).head(download),
        )
        .route(&format!("{v}/metrics"), post(add_metrics))
        .route(&format!("{v}/tags"), post(version_tags))
        .route(&format!("{v}/deprecate"), post(deprecate))
        .route(&format!("{v}/transition"), post(transition))
        .route(&format!("{v}/promote"), post(promote))
        .route(&format!("{v}/approve"), post(approve))
        .route(&format!("{v}/reject"), post(reject))
        .route("/api/v1/models/{model}/rollback", post(rollback))
        .route(
            "/api/v1/models/{model}/aliases/{alias}",
            put(set_alias).delete(remove_alias),
        )
        .route(
            "/api/v1/models/{model}/split",
            get(show_split).put(set_split).delete(clear_split),
        )
        .route("/api/v1/models/{model}/route", get(route))
        .route("/api/v1/models/{model}/history", get(history))
        .route("/api/v1/models/{model}/compare", get(compare))
        .route(
            "/api/v1/models/{model}/metrics/{metric}",
            get(metric_history),
        )
        .route("/api/v1/resolve", get(resolve))
        .route("/api/v1/lineage", get(lineage))
}

/// The reference of version `selector` of `model`: a number, a semver label, or
/// an alias or stage name, parsed by the library's own rules.
pub(crate) fn version_ref(model: &str, selector: &str) -> ApiResult<VersionRef> {
    let text = if !selector.is_empty() && selector.bytes().all(|b| b.is_ascii_digit()) {
        format!("{model}/{selector}")
    } else if semver::Version::parse(selector).is_ok() {
        format!("{model}:{selector}")
    } else {
        format!("{model}@{selector}")
    };
    Ok(text.parse::<VersionRef>()?)
}

// ----- reads ---------------------------------------------------------------------

async fn list_models(
    axum::extract::State(s): axum::extract::State<State>,
) -> ApiResult<Json<Vec<crate::ModelSummary>>> {
    Ok(Json(s.registry.model_summaries().await?))
}

/// A model: its summary, its metric directions and its traffic split.
#[derive(Serialize)]
struct ModelView {
    #[serde(flatten)]
    summary: crate::ModelSummary,
    metric_specs: BTreeMap<crate::MetricName, crate::MetricSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic_split: Option<TrafficSplit>,
}

async fn show_model(
    axum::extract::State(s): axum::extract::State<State>,
    Path(model): Path<String>,
) -> ApiResult<Json<ModelView>> {
    let state = s.registry.model(model.as_str()).await?;
    Ok(Json(ModelView {
        summary: state.summary(),
        metric_specs: state.metric_specs().clone(),
        traffic_split: state.traffic_split().cloned(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsQuery {
    limit: Option<usize>,
    after: Option<String>,
    /// A metric to order by (default: the version number).
    order_by: Option<String>,
    #[serde(default)]
    descending: bool,
    stage: Option<Stage>,
    /// `key` or `key=value`.
    tag: Option<String>,
    /// A semver requirement such as `^1.2`.
    semver: Option<String>,
    #[serde(default)]
    exclude_deprecated: bool,
}

async fn list_versions(
    axum::extract::State(s): axum::extract::State<State>,
    Path(model): Path<String>,
    Query(q): Query<VersionsQuery>,
) -> ApiResult<Json<crate::Page<std::sync::Arc<crate::VersionRecord>>>> {
    let mut filter = VersionFilter::new();
    if let Some(stage) = q.stage {
        filter = filter.stage(stage);
    }
    if let Some(tag) = &q.tag {
        filter = match tag.split_once('=') {
            Some((k, v)) => filter.tag_value(k, v),
            None => filter.tag(tag),
        };
    }
    if let Some(req) = &q.semver {
        filter = filter.semver(req.as_str());
    }
    if q.exclude_deprecated {
        filter = filter.exclude_deprecated();
    }
    let mut page = VersionPage::new().limit(q.limit.unwrap_or(100).min(1000));
    if let Some(metric) = &q.order_by {
        page = page.by_metric(metric);
    }
    if q.descending {
        page = page.descending();
    }
    if let Some(after) = q.after {
        page = page.after(after);
    }
    Ok(Json(
        s.registry
            .list_versions_page(model.as_str(), &filter, page)
            .await?,
    ))
}

async fn show_version(
    axum::extract::State(s): axum::extract::State<State>,
    Path((model, version)): Path<(String, String)>,
) -> ApiResult<Json<std::sync::Arc<crate::VersionRecord>>> {
    Ok(Json(
        s.registry
            .resolve_shared(version_ref(&model, &version)?)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveQuery {
    /// A full reference: `fraud/7`, `fraud:1.4.0`, `fraud@production`.
    #[serde(rename = "ref")]
    reference: String,
}

async fn resolve(
    axum::extract::State(s): axum::extract::State<State>,
    Query(q): Query<ResolveQuery>,
) -> ApiResult<Json<std::sync::Arc<crate::VersionRecord>>> {
    Ok(Json(s.registry.resolve_shared(q.reference.as_str()).await?))
}

async fn manifest(
    axum::extract::State(s): axum::extract::State<State>,
    Path((model, version)): Path<(String, String)>,
) -> ApiResult<Json<crate::Manifest>> {
    Ok(Json(
        s.registry.manifest(version_ref(&model, &version)?).await?,
    ))
}

async fn download(
    axum::extract::State(s): axum::extract::State<State>,
    method: Method,
    headers: HeaderMap,
    Path((model, version, path)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let path = RelPath::new(path)?;
    let manifest = s.registry.manifest(version_ref(&model, &version)?).await?;
    let entry = manifest
        .get(path.as_str())
        .ok_or_else(|| ApiError::not_found(format!("{model}@{version} has no file '{path}'")))?;
    let etag = entry.digest.to_string().replace(':', "-");
    files::serve(&s, &method, &headers, entry, &etag, HeaderMap::new()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
    /// Events before this sequence number (the previous page's `next`).
    before: Option<u64>,
    kind: Option<String>,
    actor: Option<String>,
    version: Option<u64>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
}

async fn history(
    axum::extract::State(s): axum::extract::State<State>,
    Path(model): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<crate::Page<crate::Event, u64>>> {
    let mut filter = HistoryFilter::new();
    if let Some(kind) = q.kind {
        filter = filter.kind(kind);
    }
    if let Some(actor) = q.actor {
        filter = filter.actor(Actor::new(actor)?);
    }
    if let Some(n) = q.version {
        filter = filter.version(VersionNumber::new(n)?);
    }
    if let Some(t) = q.since {
        filter = filter.since(t);
    }
    if let Some(t) = q.until {
        filter = filter.until(t);
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        s.registry
            .history_page(model.as_str(), &filter, q.before, limit)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareQuery {
    /// The candidate's selector (or a full reference to another model's version).
    candidate: String,
    /// What it is compared against (selector or full reference); default `production`.
    baseline: Option<String>,
}

async fn compare(
    axum::extract::State(s): axum::extract::State<State>,
    Path(model): Path<String>,
    Query(q): Query<CompareQuery>,
) -> ApiResult<Json<crate::VersionDiff>> {
    let side = |sel: &str| {
        if sel.contains(['/', '@', ':']) {
            Ok(sel.parse::<VersionRef>()?)
        } else {
            version_ref(&model, sel)
        }
    };
    let candidate = side(&q.candidate)?;
    let baseline = side(q.baseline.as_deref().unwrap_or("production"))?;
    Ok(Json(s.registry.compare(baseline, candidate).await?))
}

async fn metric_history(
    axum::extract::State(s): axum::extract::State<State>,
    Path((model, metric)): Path<(String, String)>,
) -> ApiResult<Json<Vec<crate::MetricPoint>>> {
    Ok(Json(
        s.registry
            .metric_history(model.as_str(), &metric, &VersionFilter::new())
            .await?,
    ))
}

async fn show_split(
    axum::extract::State(s): axum::extract::State<State>,
    Path(model): Path<String>,
) -> ApiResult<Json<TrafficSplit>> {
    s.registry
        .traffic_split(model.as_str())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("model '{model}' has no traffic split")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteQuery {
    key: String,
}

async fn route(
    axum::extract::State(s): axum::extract::State<State>,
    Path(model): Path<String>,
    Query(q): Query<RouteQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let routed = s.registry.route(model.as_str(), q.key.as_bytes()).await?;
    Ok(Json(serde_json::json!({
        "model": model,
        "key": q.key,
        "target": routed.target.to_string(),
        "from_split": routed.from_split,
        "version": &*routed.version,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineageQuery {
    /// A version reference (`fraud/3`, `fraud@production`) or, downstream, a
    /// dataset (`dataset:name@version`).
    of: String,
    #[serde(default)]
    direction: Direction,
    depth: Option<usize>,
    #[serde(default)]
    format: GraphFormat,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Direction {
    #[default]
    Upstream,
    Downstream,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum GraphFormat {
    #[default]
    Json,
    Dot,
    Mermaid,
}

async fn lineage(
    axum::extract::State(s): axum::extract::State<State>,
    Query(q): Query<LineageQuery>,
) -> ApiResult<Response> {
    let graph = match q.direction {
        Direction::Upstream => s.registry.upstream(q.of.as_str(), q.depth).await?,
        Direction::Downstream => s.registry.downstream(q.of.as_str(), q.depth).await?,
    };
    Ok(match q.format {
        GraphFormat::Json => Json(graph).into_response(),
        GraphFormat::Dot => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/vnd.graphviz; charset=utf-8",
            )],
            graph.to_dot(),
        )
            .into_response(),
        GraphFormat::Mermaid => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            graph.to_mermaid(),
        )
            .into_response(),
    })
}

// ----- writes --------------------------------------------------------------------

/// The session of a caller allowed `role`.
fn session(s: &State, caller: &Caller, role: Role) -> ApiResult<crate::Session> {
    let actor = caller.require(role, s.read_only())?;
    Ok(s.registry.acting_as(actor))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewModel {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

async fn create_model(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Body(m): Body<NewModel>,
) -> ApiResult<(StatusCode, Json<crate::ModelSummary>)> {
    let session = session(&s, &caller, Role::Writer)?;
    let mut options = CreateModel::new().description(m.description);
    for (k, v) in &m.tags {
        options = options.tag(k, v.clone());
    }
    let state = session.create_model(m.name.as_str(), options).await?;
    Ok((StatusCode::CREATED, Json(state.summary())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagChange {
    #[serde(default)]
    set: BTreeMap<TagKey, String>,
    #[serde(default)]
    remove: Vec<TagKey>,
}

async fn model_tags(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path(model): Path<String>,
    Body(t): Body<TagChange>,
) -> ApiResult<Json<crate::ModelSummary>> {
    let session = session(&s, &caller, Role::Writer)?;
    let state = session
        .set_model_tags(model.as_str(), t.set, t.remove)
        .await?;
    Ok(Json(state.summary()))
}

async fn version_tags(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, version)): Path<(String, String)>,
    Body(t): Body<TagChange>,
) -> ApiResult<Json<crate::VersionRecord>> {
    let session = session(&s, &caller, Role::Writer)?;
    let r = version_ref(&model, &version)?;
    Ok(Json(session.set_version_tags(r, t.set, t.remove).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsBody {
    metrics: BTreeMap<String, f64>,
}

async fn add_metrics(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, version)): Path<(String, String)>,
    Body(m): Body<MetricsBody>,
) -> ApiResult<Json<crate::VersionRecord>> {
    let session = session(&s, &caller, Role::Writer)?;
    let r = version_ref(&model, &version)?;
    Ok(Json(session.add_metrics(r, m.metrics).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: String,
}

async fn deprecate(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, version)): Path<(String, String)>,
    Body(b): Body<Reason>,
) -> ApiResult<Json<crate::VersionRecord>> {
    let session = session(&s, &caller, Role::Writer)?;
    let r = version_ref(&model, &version)?;
    Ok(Json(session.deprecate(r, b.reason).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    to: Stage,
    #[serde(default)]
    reason: String,
}

async fn transition(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, version)): Path<(String, String)>,
    Body(b): Body<TransitionBody>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Writer)?;
    let r = version_ref(&model, &version)?;
    Ok(Json(session.transition(r, b.to, b.reason).await?))
}

/// Moves the version along the lifecycle to `to`, through every stage on the
/// way (each move's gates run, as for [`Session::promote_to`](crate::Session::promote_to)).
async fn promote(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, version)): Path<(String, String)>,
    Body(b): Body<TransitionBody>,
) -> ApiResult<Json<Vec<crate::Event>>> {
    let session = session(&s, &caller, Role::Writer)?;
    let r = version_ref(&model, &version)?;
    Ok(Json(session.promote_to(r, b.to, b.reason).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    stage: Stage,
    #[serde(default)]
    comment: String,
}

async fn approve(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, version)): Path<(String, String)>,
    Body(b): Body<Decision>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Approver)?;
    let r = version_ref(&model, &version)?;
    Ok(Json(session.approve(r, b.stage, b.comment).await?))
}

async fn reject(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, version)): Path<(String, String)>,
    Body(b): Body<Decision>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Approver)?;
    let r = version_ref(&model, &version)?;
    Ok(Json(session.reject(r, b.stage, b.comment).await?))
}

async fn rollback(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path(model): Path<String>,
    Body(b): Body<Reason>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Writer)?;
    Ok(Json(session.rollback(model.as_str(), b.reason).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    /// The version's selector within the model.
    version: String,
    #[serde(default)]
    reason: String,
    protected: Option<bool>,
}

async fn set_alias(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, alias)): Path<(String, String)>,
    Body(b): Body<AliasBody>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Writer)?;
    let mut options = SetAlias::new().reason(b.reason);
    if let Some(p) = b.protected {
        options = options.protected(p);
    }
    let r = version_ref(&model, &b.version)?;
    Ok(Json(session.set_alias(r, &alias, options).await?))
}

async fn remove_alias(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path((model, alias)): Path<(String, String)>,
    Query(b): Query<Reason>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Writer)?;
    Ok(Json(
        session
            .remove_alias(model.as_str(), &alias, b.reason)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    split: TrafficSplit,
    #[serde(default)]
    reason: String,
}

async fn set_split(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path(model): Path<String>,
    Body(b): Body<SplitBody>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Writer)?;
    Ok(Json(
        session
            .set_traffic_split(model.as_str(), b.split, b.reason)
            .await?,
    ))
}

async fn clear_split(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path(model): Path<String>,
    Query(b): Query<Reason>,
) -> ApiResult<Json<crate::Event>> {
    let session = session(&s, &caller, Role::Writer)?;
    Ok(Json(
        session
            .clear_traffic_split(model.as_str(), b.reason)
            .await?,
    ))
}

// ----- register by upload --------------------------------------------------------

/// The `metadata` part of an upload: what `NewVersion` takes, as JSON.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VersionMetadata {
    semver: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    #[serde(default)]
    params: BTreeMap<String, crate::HyperValue>,
    #[serde(default)]
    datasets: Vec<DatasetRef>,
    code: Option<CodeRef>,
    #[serde(default)]
    parents: Vec<ParentBody>,
    environment: Option<Environment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParentBody {
    /// A full reference such as `fraud/3`.
    version: String,
    relation: Relation,
}

impl VersionMetadata {
    fn into_new_version(self) -> NewVersion {
        let mut v = NewVersion::new()
            .link(LinkMode::HardLink)
            .description(self.description)
            .metrics(self.metrics)
            .params(self.params);
        if let Some(semver) = self.semver {
            v = v.semver(semver.as_str());
        }
        for (k, value) in &self.tags {
            v = v.tag(k, value.clone());
        }
        for d in self.datasets {
            v = v.dataset(d);
        }
        if let Some(code) = self.code {
            v = v.code(code);
        }
        for p in self.parents {
            v = v.parent(p.version.as_str(), p.relation);
        }
        if let Some(env) = self.environment {
            v = v.environment(env);
        }
        v
    }
}

/// A staging directory removed when dropped, so an upload that fails or is
/// abandoned (the client disconnects, the server shuts down) leaves nothing.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a registration by upload answers: the version and what was stored.
#[derive(Serialize)]
struct RegisteredBody {
    version: crate::VersionRecord,
    report: crate::RegisterReport,
}

/// `POST /api/v1/models/{model}/versions` with `multipart/form-data`: one
/// optional `metadata` part (JSON, see [`VersionMetadata`]) and one part per
/// file whose file name is its path inside the artifact. Each file streams to
/// a staging directory on disk (never whole in memory), then the version is
/// registered from it; the model is created if it does not exist.
async fn register(
    axum::extract::State(s): axum::extract::State<State>,
    caller: Caller,
    Path(model): Path<String>,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<RegisteredBody>)> {
    // The role is checked before the body is looked at.
    let session = session(&s, &caller, Role::Writer)?;
    let mut form = Multipart::from_request(request, &s)
        .await
        .map_err(|r| ApiError::bad_request(r.body_text()))?;
    let model = crate::ModelName::new(&model)?;
    let _permit = s
        .uploads
        .acquire()
        .await
        .map_err(|_| ApiError::internal("the server is shutting down"))?;
    let dir = s.staging_dir().join(format!(
        "modelreg-upload-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal(format!("cannot create a staging directory: {e}")))?;
    let staging = Staging(dir);
    let mut metadata = VersionMetadata::default();
    let mut total = 0u64;
    let mut files = 0usize;
    let limit = s.options.max_upload_bytes;
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("metadata") && field.file_name().is_none() {
            let text = field.text().await.map_err(multipart_error)?;
            metadata = serde_json::from_str(&text)
                .map_err(|e| ApiError::bad_request(format!("metadata: {e}")))?;
            continue;
        }
        let Some(name) = field.file_name().map(str::to_owned) else {
            return Err(ApiError::bad_request(
                "every part but 'metadata' must be a file with a file name (its path in the artifact)",
            ));
        };
        let path = RelPath::new(name)?;
        let dest = path
            .segments()
            .fold(staging.0.clone(), |p, segment| p.join(segment));
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ApiError::bad_request(format!("file '{path}': {e}")))?;
        }
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .await
            .map_err(|e| ApiError::bad_request(format!("file '{path}': {e}")))?;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the upload exceeds this server's limit of {limit} bytes"),
                ));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("staging '{path}': {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| ApiError::internal(format!("staging '{path}': {e}")))?;
        files += 1;
    }
    if files == 0 {
        return Err(ApiError::bad_request("the upload has no files"));
    }
    session
        .ensure_model(model.clone(), CreateModel::new())
        .await?;
    let registered = session
        .register(
            model,
            ArtifactSource::dir(staging.0.clone()),
            metadata.into_new_version(),
        )
        .await?;
    drop(staging);
    Ok((
        StatusCode::CREATED,
        Json(RegisteredBody {
            version: registered.version,
            report: registered.report,
        }),
    ))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "invalid_input"
    };
    ApiError::new(status, kind, e.body_text())
}
