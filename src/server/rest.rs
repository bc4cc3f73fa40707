//! The REST JSON API under `/api/v1/`: what a frontend or a script in any
//! language needs to read and change the registry.
//!
//! Bodies are the records' own serde shapes (the same JSON as the CLI's
//! `--json`); errors are `{"error":{"kind","status","message"}}`. A version is
//! addressed inside its model by a selector: a number (`7`), a semver label
//! (`1.4.0`), or an alias or stage name (`production`, `champion`, `latest`).
//!
//! Writes take the actor from the caller's token, never from the body. Each
//! write handler lists its role ([`Writer`], [`Approver`]) as its first
//! argument, so a caller without it is refused before the path, query or body
//! is read.
//!
//! Each handler's `#[utoipa::path]` annotation is its route: [`Routes::add`]
//! takes the method and path from it, and the same annotations make the
//! OpenAPI document served at `GET /openapi.json` (see [`super::openapi`]).

use std::collections::BTreeMap;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::HttpMethod;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::State;
use super::auth::{Approver, Writer};
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Path, Query};
use super::openapi::{
    self, BadRequest, BearerScheme, Binary, CommonResponses, Conflict, DESCRIPTION, ErrorBody,
    Forbidden, Gone, NotFound, PayloadTooLarge, RangeNotSatisfiable, ServerError, Unauthorized,
    Unavailable, Unprocessable, UnsupportedMediaType,
};
use super::{events, files, retention, upload, webhooks};
use crate::{
    Actor, AliasName, CreateModel, Event, HistoryFilter, LineageSubgraph, Manifest, MetricName,
    MetricPoint, Metrics, ModelName, ModelSummary, Page, RelPath, RouteTarget, SetAlias, Stage,
    TagKey, TrafficSplit, VersionDiff, VersionFilter, VersionNumber, VersionPage, VersionRecord,
    VersionRef,
};

/// The REST API's routes and their OpenAPI document, built from the same
/// annotations: every route is added by [`Routes::add`], which takes its method
/// and path from the handler's `#[utoipa::path]`, and every annotated handler is
/// listed in [`ApiDoc`] (a unit test compares the two lists).
pub(crate) fn routes(_state: &State) -> Router<State> {
    Routes::all().router
}

/// The REST API's OpenAPI document (see [`super::openapi`]).
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "modelreg", description = DESCRIPTION),
    paths(
        list_models, create_model, show_model, model_tags,
        list_versions, upload::register, show_version, manifest, download,
        signatures, signature_bundle, format_scan,
        add_metrics, version_tags, version_description, deprecate,
        retention::purge, retention::retention,
        transition, promote, approve, reject, rollback,
        set_alias, remove_alias,
        show_split, set_split, clear_split, route,
        history, compare, metric_history, resolve, lineage,
        events::stream, webhooks::status,
        openapi_document,
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest, Unauthorized, Forbidden, NotFound, Gone, Conflict, PayloadTooLarge,
            UnsupportedMediaType, Unprocessable, RangeNotSatisfiable, ServerError, Unavailable,
        ),
    ),
    modifiers(&BearerScheme, &CommonResponses),
    security((), ("bearer" = ["reader"])),
    tags(
        (name = "models", description = "Models: their summaries, tags and metric directions."),
        (name = "versions", description = "Versions: listing, records, uploads, metrics, tags, descriptions, deprecation, purging and retention."),
        (name = "files", description = "A version's manifest, its files and their signatures."),
        (name = "lifecycle", description = "Stages, gates, approvals and rollback."),
        (name = "aliases", description = "Movable names for versions."),
        (name = "traffic", description = "Traffic splits and the route a request key takes."),
        (name = "audit", description = "The model's event log."),
        (name = "analysis", description = "Comparisons, metric history and lineage."),
        (name = "events", description = "A model's events as they happen (server-sent events)."),
        (name = "webhooks", description = "The webhooks the server calls on new events, and their deliveries."),
        (name = "meta", description = "This document."),
    ),
)]
struct ApiDoc;

/// The router and the operations it answers, built together.
struct Routes {
    router: Router<State>,
    /// `(METHOD, path)` as the document writes them.
    operations: Vec<(String, String)>,
}

impl Routes {
    fn all() -> Routes {
        Routes {
            router: Router::new(),
            operations: Vec::new(),
        }
        .add(__path_list_models, list_models)
        .add(__path_create_model, create_model)
        .add(__path_show_model, show_model)
        .add(__path_model_tags, model_tags)
        .add(__path_list_versions, list_versions)
        // Uploads are bounded by `max_upload_bytes`, counted as they stream.
        .add_with(upload::__path_register, upload::register, |m| {
            m.layer(DefaultBodyLimit::disable())
        })
        .add(__path_show_version, show_version)
        .add(__path_manifest, manifest)
        .add(__path_download, download)
        .add(__path_signatures, signatures)
        .add(__path_signature_bundle, signature_bundle)
        .add(__path_format_scan, format_scan)
        .add(__path_add_metrics, add_metrics)
        .add(__path_version_tags, version_tags)
        .add(__path_version_description, version_description)
        .add(__path_deprecate, deprecate)
        .add(retention::__path_purge, retention::purge)
        .add(retention::__path_retention, retention::retention)
        .add(__path_transition, transition)
        .add(__path_promote, promote)
        .add(__path_approve, approve)
        .add(__path_reject, reject)
        .add(__path_rollback, rollback)
        .add(__path_set_alias, set_alias)
        .add(__path_remove_alias, remove_alias)
        .add(__path_show_split, show_split)
        .add(__path_set_split, set_split)
        .add(__path_clear_split, clear_split)
        .add(__path_route, route)
        .add(__path_history, history)
        .add(__path_compare, compare)
        .add(__path_metric_history, metric_history)
        .add(__path_resolve, resolve)
        .add(__path_lineage, lineage)
        .add(events::__path_stream, events::stream)
        .add(webhooks::__path_status, webhooks::status)
        .add(__path_openapi_document, openapi_document)
    }

    /// Adds `handler` at the method(s) and path of its annotation (`_doc`, the
    /// type `#[utoipa::path]` generates for it).
    fn add<P: utoipa::Path, H: Handler<T, State>, T: 'static>(self, doc: P, handler: H) -> Self {
        self.add_with(doc, handler, |m| m)
    }

    /// [`add`](Self::add), with `wrap` applied to the handler's method router
    /// (a layer of its own).
    fn add_with<P: utoipa::Path, H: Handler<T, State>, T: 'static>(
        mut self,
        _doc: P,
        handler: H,
        wrap: impl FnOnce(MethodRouter<State>) -> MethodRouter<State>,
    ) -> Self {
        let path = P::path();
        let methods = P::methods();
        let Some(filter) = methods.iter().map(method_filter).reduce(MethodFilter::or) else {
            return self;
        };
        for m in &methods {
            self.operations
                .push((method_name(m).to_owned(), path.clone()));
        }
        // A `{path}` parameter is a file's path: it takes the rest of the URL,
        // slashes included (clients may also send them as `%2F`).
        let route = path.replace("{path}", "{*path}");
        self.router = self
            .router
            .route(&route, wrap(axum::routing::on(filter, handler)));
        self
    }
}

fn method_filter(m: &HttpMethod) -> MethodFilter {
    match m {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

fn method_name(m: &HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Head => "HEAD",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Trace => "TRACE",
    }
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

// ----- what paths name -------------------------------------------------------------

/// A model named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ModelAt {
    /// The model's name.
    #[param(value_type = ModelName)]
    pub(crate) model: String,
}

/// A version named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct VersionAt {
    /// The model's name.
    #[param(value_type = ModelName)]
    model: String,
    /// The version: a number (`7`), a semver label (`1.4.0`), or an alias or
    /// stage name (`champion`, `production`, `latest`).
    version: String,
}

impl VersionAt {
    /// The version the path names.
    pub(crate) fn reference(&self) -> ApiResult<VersionRef> {
        version_ref(&self.model, &self.version)
    }
}

/// A file of a version named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct FileAt {
    /// The model's name.
    #[param(value_type = ModelName)]
    model: String,
    /// The version: a number (`7`), a semver label (`1.4.0`), or an alias or
    /// stage name (`champion`, `production`, `latest`).
    version: String,
    /// The file's path inside the artifact (`weights/model.bin`); its `/` may
    /// be sent as is or as `%2F`.
    #[param(value_type = RelPath)]
    path: String,
}

/// An alias of a model named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AliasAt {
    /// The model's name.
    #[param(value_type = ModelName)]
    model: String,
    /// The alias.
    #[param(value_type = AliasName)]
    alias: String,
}

/// A metric of a model named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MetricAt {
    /// The model's name.
    #[param(value_type = ModelName)]
    model: String,
    /// The metric's name (`/` sent as `%2F`).
    #[param(value_type = MetricName)]
    metric: String,
}

// ----- reads ---------------------------------------------------------------------

/// Every model, with its summary.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses((status = 200, description = "The models' summaries.", body = Vec<ModelSummary>)),
)]
async fn list_models(
    axum::extract::State(s): axum::extract::State<State>,
) -> ApiResult<Json<Vec<ModelSummary>>> {
    Ok(Json(s.registry.model_summaries().await?))
}

/// A model: its summary, its metric directions and its traffic split.
#[derive(Serialize, ToSchema)]
struct ModelView {
    #[serde(flatten)]
    summary: ModelSummary,
    /// Each metric's goal and tolerance, as the gates and comparisons read them.
    metric_specs: BTreeMap<crate::MetricName, crate::MetricSpec>,
    /// The model's traffic split, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic_split: Option<TrafficSplit>,
}

/// A model: its summary, metric specs and traffic split.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}",
    tag = "models",
    params(ModelAt),
    responses(
        (status = 200, description = "The model.", body = ModelView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn show_model(
    axum::extract::State(s): axum::extract::State<State>,
    Path(ModelAt { model }): Path<ModelAt>,
) -> ApiResult<Json<ModelView>> {
    let state = s.registry.model(model.as_str()).await?;
    Ok(Json(ModelView {
        summary: state.summary(),
        metric_specs: state.metric_specs().clone(),
        traffic_split: state.traffic_split().cloned(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VersionsQuery {
    /// At most this many versions (default 100, at most 1,000).
    limit: Option<usize>,
    /// The previous page's `next` token.
    after: Option<String>,
    /// A metric to order by (default: the version number); versions without it
    /// come last.
    order_by: Option<String>,
    /// Newest (or highest) first.
    #[serde(default)]
    descending: bool,
    /// Only versions in this stage.
    stage: Option<Stage>,
    /// Only versions with this tag: `key` or `key=value`.
    tag: Option<String>,
    /// Only versions whose semver label matches this requirement, such as `^1.2`.
    semver: Option<String>,
    /// Leave deprecated versions out.
    #[serde(default)]
    exclude_deprecated: bool,
}

/// A model's versions, a page at a time, filtered and ordered.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions",
    tag = "versions",
    params(ModelAt, VersionsQuery),
    responses(
        (status = 200, description = "One page; `next` is absent on the last.", body = Page<VersionRecord, String>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn list_versions(
    axum::extract::State(s): axum::extract::State<State>,
    Path(ModelAt { model }): Path<ModelAt>,
    Query(q): Query<VersionsQuery>,
) -> ApiResult<Json<Page<std::sync::Arc<VersionRecord>>>> {
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

/// A version's record.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}",
    tag = "versions",
    params(VersionAt),
    responses(
        (status = 200, description = "The version.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn show_version(
    axum::extract::State(s): axum::extract::State<State>,
    Path(at): Path<VersionAt>,
) -> ApiResult<Json<std::sync::Arc<VersionRecord>>> {
    Ok(Json(s.registry.resolve_shared(at.reference()?).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ResolveQuery {
    /// A full reference: `fraud/7`, `fraud:1.4.0`, `fraud@production`,
    /// `fraud#blake3:<hex>`.
    #[serde(rename = "ref")]
    reference: String,
}

/// The version a full reference resolves to.
#[utoipa::path(
    get,
    path = "/api/v1/resolve",
    tag = "versions",
    params(ResolveQuery),
    responses(
        (status = 200, description = "The version.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn resolve(
    axum::extract::State(s): axum::extract::State<State>,
    Query(q): Query<ResolveQuery>,
) -> ApiResult<Json<std::sync::Arc<VersionRecord>>> {
    Ok(Json(s.registry.resolve_shared(q.reference.as_str()).await?))
}

/// A version's manifest: its files with their sizes and digests.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/files",
    tag = "files",
    params(VersionAt),
    responses(
        (status = 200, description = "The manifest.", body = Manifest),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 410, response = Gone),
    ),
)]
async fn manifest(
    axum::extract::State(s): axum::extract::State<State>,
    Path(at): Path<VersionAt>,
) -> ApiResult<Json<Manifest>> {
    Ok(Json(s.registry.manifest(at.reference()?).await?))
}

/// One file of a version.
///
/// `HEAD` answers the same headers (as for every `GET`); `Range` (a single
/// range) and `If-None-Match` are honoured. A whole
/// file is hashed as it streams; if its bytes no longer match the digest, the
/// connection is cut before the last byte, so a client never holds a complete
/// corrupt file.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/files/{path}",
    tag = "files",
    params(
        FileAt,
        ("Range" = Option<String>, Header, nullable = false, description = "One byte range, `bytes=0-1023` or `bytes=-512`; several ranges are answered with the whole file."),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "The `ETag` of a copy the client holds."),
    ),
    responses(
        (status = 200, description = "The whole file.", content_type = "application/octet-stream", body = inline(Binary),
            headers(
                ("ETag" = String, description = "The file's digest, `\"blake3-<hex>\"`."),
                ("Accept-Ranges" = String, description = "`bytes`."),
            )),
        (status = 206, description = "The requested range.", content_type = "application/octet-stream", body = inline(Binary),
            headers(
                ("Content-Range" = String, description = "`bytes <first>-<last>/<size>`."),
                ("ETag" = String, description = "The file's digest, `\"blake3-<hex>\"`."),
            )),
        (status = 304, description = "`If-None-Match` names this file's `ETag`."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 410, response = Gone),
        (status = 416, response = RangeNotSatisfiable),
    ),
)]
async fn download(
    axum::extract::State(s): axum::extract::State<State>,
    method: Method,
    headers: HeaderMap,
    Path(FileAt {
        model,
        version,
        path,
    }): Path<FileAt>,
) -> ApiResult<Response> {
    let path = RelPath::new(path)?;
    let manifest = s.registry.manifest(version_ref(&model, &version)?).await?;
    let entry = manifest
        .get(path.as_str())
        .ok_or_else(|| ApiError::not_found(format!("{model}@{version} has no file '{path}'")))?;
    let etag = entry.digest.to_string().replace(':', "-");
    files::serve(&s, &method, &headers, entry, &etag, HeaderMap::new()).await
}

/// A version's signatures: OpenSSF Model Signing v1.0 bundles of its files,
/// each verified against the files and its public key when it was added.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/signatures",
    tag = "files",
    params(VersionAt),
    responses(
        (status = 200, description = "The signatures, in the order they were added.", body = Vec<crate::VersionSignature>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn signatures(
    axum::extract::State(s): axum::extract::State<State>,
    Path(at): Path<VersionAt>,
) -> ApiResult<Json<Vec<crate::VersionSignature>>> {
    Ok(Json(s.registry.signatures(at.reference()?).await?))
}

/// A version's latest format scan: the verdict on each file that is not plain
/// data (pickles walked, ZIP members, refusals with their reason), as the
/// `format_policy` gate reads it. 404 when the version was never scanned
/// (`Session::scan_formats`, `modelreg version scan`).
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/scan",
    tag = "files",
    params(VersionAt),
    responses(
        (status = 200, description = "The latest scan of the version.", body = crate::FormatScan),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn format_scan(
    axum::extract::State(s): axum::extract::State<State>,
    Path(at): Path<VersionAt>,
) -> ApiResult<Json<crate::FormatScan>> {
    let v = s.registry.resolve(at.reference()?).await?;
    match v.scan {
        Some(scan) => Ok(Json(scan)),
        None => Err(ApiError::not_found(format!(
            "{}/{} has not been scanned (`modelreg version scan`, or Session::scan_formats)",
            v.model, v.number
        ))),
    }
}

/// A signature of a version named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SignatureAt {
    /// The model's name.
    #[param(value_type = ModelName)]
    model: String,
    /// The version: a number (`7`), a semver label (`1.4.0`), or an alias or
    /// stage name (`champion`, `production`, `latest`).
    version: String,
    /// The bundle's digest, `blake3:<hex>`, as the signature records it.
    bundle: String,
}

/// One signature's bundle, as signed: a Sigstore bundle (JSON) that
/// `model_signing verify key` checks against a checkout of the files.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/signatures/{bundle}",
    tag = "files",
    params(SignatureAt),
    responses(
        (status = 200, description = "The bundle's bytes.", content_type = "application/vnd.dev.sigstore.bundle.v0.3+json", body = inline(Binary)),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn signature_bundle(
    axum::extract::State(s): axum::extract::State<State>,
    Path(SignatureAt {
        model,
        version,
        bundle,
    }): Path<SignatureAt>,
) -> ApiResult<Response> {
    let digest: crate::Digest = bundle.parse()?;
    let bytes = s
        .registry
        .signature_bundle(version_ref(&model, &version)?, digest)
        .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::signing::BUNDLE_MEDIA_TYPE,
        )],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// At most this many events (default 100, 1 to 1,000).
    limit: Option<usize>,
    /// Events before this sequence number (the previous page's `next`).
    before: Option<u64>,
    /// Only events of this type (`stage_changed`, `alias_set`, …).
    kind: Option<String>,
    /// Only events by this actor.
    actor: Option<String>,
    /// Only events about this version number.
    version: Option<u64>,
    /// Only events at or after this time (RFC 3339).
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events before this time (RFC 3339).
    until: Option<chrono::DateTime<chrono::Utc>>,
}

/// A model's audit trail, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/history",
    tag = "audit",
    params(ModelAt, HistoryQuery),
    responses(
        (status = 200, description = "One page of events; `next` is the `before` of the next page, absent on the last.", body = Page<Event, u64>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn history(
    axum::extract::State(s): axum::extract::State<State>,
    Path(ModelAt { model }): Path<ModelAt>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Page<Event, u64>>> {
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CompareQuery {
    /// The candidate's selector (or a full reference to another model's version).
    candidate: String,
    /// What it is compared against (selector or full reference); default `production`.
    baseline: Option<String>,
}

/// Compares a candidate version with a baseline: metrics (with verdicts from
/// the model's metric specs), hyperparameters, environment, datasets, code.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/compare",
    tag = "analysis",
    params(ModelAt, CompareQuery),
    responses(
        (status = 200, description = "The difference; `a` is the baseline, `b` the candidate.", body = VersionDiff),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn compare(
    axum::extract::State(s): axum::extract::State<State>,
    Path(ModelAt { model }): Path<ModelAt>,
    Query(q): Query<CompareQuery>,
) -> ApiResult<Json<VersionDiff>> {
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

/// One metric's value across a model's versions, in version order.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/metrics/{metric}",
    tag = "analysis",
    params(MetricAt),
    responses(
        (status = 200, description = "A point per version that has the metric.", body = Vec<MetricPoint>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn metric_history(
    axum::extract::State(s): axum::extract::State<State>,
    Path(MetricAt { model, metric }): Path<MetricAt>,
) -> ApiResult<Json<Vec<MetricPoint>>> {
    Ok(Json(
        s.registry
            .metric_history(model.as_str(), &metric, &VersionFilter::new())
            .await?,
    ))
}

/// A model's traffic split.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/split",
    tag = "traffic",
    params(ModelAt),
    responses(
        (status = 200, description = "The split.", body = TrafficSplit),
        (status = 400, response = BadRequest),
        (status = 404, description = "No such model, or it has no split.", body = ErrorBody),
    ),
)]
async fn show_split(
    axum::extract::State(s): axum::extract::State<State>,
    Path(ModelAt { model }): Path<ModelAt>,
) -> ApiResult<Json<TrafficSplit>> {
    s.registry
        .traffic_split(model.as_str())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("model '{model}' has no traffic split")))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RouteQuery {
    /// What should stick to one variant: a user id, a session id.
    key: String,
}

/// Where a request key was routed.
#[derive(Serialize, ToSchema)]
struct Routed {
    /// The model.
    #[schema(value_type = ModelName)]
    model: String,
    /// The key, as sent.
    key: String,
    /// The route taken (`@production` when the model has no split).
    target: RouteTarget,
    /// Whether the traffic split chose the route (`false`: the model has none).
    from_split: bool,
    /// The version the target resolved to.
    version: std::sync::Arc<VersionRecord>,
}

/// The version a request key is routed to: through the model's traffic split,
/// or `@production` without one.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/route",
    tag = "traffic",
    params(ModelAt, RouteQuery),
    responses(
        (status = 200, description = "The route taken and its version.", body = Routed),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
async fn route(
    axum::extract::State(s): axum::extract::State<State>,
    Path(ModelAt { model }): Path<ModelAt>,
    Query(q): Query<RouteQuery>,
) -> ApiResult<Json<Routed>> {
    let routed = s.registry.route(model.as_str(), q.key.as_bytes()).await?;
    Ok(Json(Routed {
        model,
        key: q.key,
        target: routed.target,
        from_split: routed.from_split,
        version: routed.version,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LineageQuery {
    /// A version reference (`fraud/3`, `fraud@production`) or, downstream, a
    /// dataset (`dataset:name@version`).
    of: String,
    /// Towards inputs (`upstream`, default) or dependents (`downstream`).
    #[serde(default)]
    #[param(inline)]
    direction: Direction,
    /// How many edges away at most (default: all).
    depth: Option<usize>,
    /// `json` (default), `dot` (Graphviz) or `mermaid`.
    #[serde(default)]
    #[param(inline)]
    format: GraphFormat,
}

#[derive(Deserialize, ToSchema, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Direction {
    #[default]
    Upstream,
    Downstream,
}

#[derive(Deserialize, ToSchema, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum GraphFormat {
    #[default]
    Json,
    Dot,
    Mermaid,
}

/// The lineage of a version (its parents, datasets and code, transitively) or
/// what depends on a version or dataset.
#[utoipa::path(
    get,
    path = "/api/v1/lineage",
    tag = "analysis",
    params(LineageQuery),
    responses(
        (status = 200, description = "The subgraph reached, origin first, in the requested format.",
            content(
                (LineageSubgraph = "application/json"),
                (String = "text/vnd.graphviz"),
                (String = "text/plain"),
            )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
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

/// This document: the REST API in OpenAPI 3.1.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object)),
)]
async fn openapi_document() -> Response {
    openapi::respond()
}

// ----- writes --------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewModel {
    /// The new model's name.
    #[schema(value_type = ModelName)]
    name: String,
    /// What the model is for.
    #[serde(default)]
    description: String,
    /// Tags, by key.
    #[serde(default)]
    #[schema(value_type = BTreeMap<MetricName, String>)]
    tags: BTreeMap<String, String>,
}

/// Creates a model (writer).
#[utoipa::path(
    post,
    path = "/api/v1/models",
    tag = "models",
    request_body = NewModel,
    security(("bearer" = ["writer"])),
    responses(
        (status = 201, description = "Created.", body = ModelSummary),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
    ),
)]
async fn create_model(
    Writer(me): Writer,
    Body(m): Body<NewModel>,
) -> ApiResult<(StatusCode, Json<ModelSummary>)> {
    let mut options = CreateModel::new().description(m.description);
    for (k, v) in &m.tags {
        options = options.tag(k, v.clone());
    }
    let state = me.create_model(m.name.as_str(), options).await?;
    Ok((StatusCode::CREATED, Json(state.summary())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TagChange {
    /// Tags to set (added or replaced), by key.
    #[serde(default)]
    #[schema(value_type = BTreeMap<MetricName, String>)]
    set: BTreeMap<TagKey, String>,
    /// Tag keys to remove.
    #[serde(default)]
    #[schema(value_type = Vec<MetricName>)]
    remove: Vec<TagKey>,
}

/// Sets and removes a model's tags (writer).
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/tags",
    tag = "models",
    params(ModelAt),
    request_body = TagChange,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The model after the change.", body = ModelSummary),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn model_tags(
    Writer(me): Writer,
    Path(ModelAt { model }): Path<ModelAt>,
    Body(t): Body<TagChange>,
) -> ApiResult<Json<ModelSummary>> {
    let state = me.set_model_tags(model.as_str(), t.set, t.remove).await?;
    Ok(Json(state.summary()))
}

/// Sets and removes a version's tags (writer).
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/tags",
    tag = "versions",
    params(VersionAt),
    request_body = TagChange,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The version after the change.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn version_tags(
    Writer(me): Writer,
    Path(at): Path<VersionAt>,
    Body(t): Body<TagChange>,
) -> ApiResult<Json<VersionRecord>> {
    Ok(Json(
        me.set_version_tags(at.reference()?, t.set, t.remove)
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DescriptionChange {
    /// The new description (at most 65,536 characters); empty clears it.
    description: String,
}

/// Replaces a version's description (writer); the old text stays in the
/// history. A version in production answers 409 `immutable`.
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/description",
    tag = "versions",
    params(VersionAt),
    request_body = DescriptionChange,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The version after the change.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn version_description(
    Writer(me): Writer,
    Path(at): Path<VersionAt>,
    Body(d): Body<DescriptionChange>,
) -> ApiResult<Json<VersionRecord>> {
    Ok(Json(
        me.set_version_description(at.reference()?, d.description)
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MetricsBody {
    /// Values by metric name (finite numbers); a metric already set is
    /// replaced, its earlier value stays in the history.
    #[schema(value_type = Metrics)]
    metrics: BTreeMap<String, f64>,
}

/// Adds metrics to a version (writer).
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/metrics",
    tag = "versions",
    params(VersionAt),
    request_body = MetricsBody,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The version after the change.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn add_metrics(
    Writer(me): Writer,
    Path(at): Path<VersionAt>,
    Body(m): Body<MetricsBody>,
) -> ApiResult<Json<VersionRecord>> {
    Ok(Json(me.add_metrics(at.reference()?, m.metrics).await?))
}

#[derive(Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Reason {
    /// Why, for the audit trail.
    #[serde(default)]
    pub(crate) reason: String,
}

/// Deprecates a version (writer): `@latest` skips it; pinned references still
/// resolve it.
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/deprecate",
    tag = "versions",
    params(VersionAt),
    request_body = Reason,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The version after the change.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn deprecate(
    Writer(me): Writer,
    Path(at): Path<VersionAt>,
    Body(b): Body<Reason>,
) -> ApiResult<Json<VersionRecord>> {
    Ok(Json(me.deprecate(at.reference()?, b.reason).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    /// The stage to move to.
    to: Stage,
    /// Why, for the audit trail.
    #[serde(default)]
    reason: String,
}

/// Moves a version to another stage (writer); the target stage's gates run.
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/transition",
    tag = "lifecycle",
    params(VersionAt),
    request_body = TransitionBody,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The `stage_changed` event, with the gates' verdicts.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn transition(
    Writer(me): Writer,
    Path(at): Path<VersionAt>,
    Body(b): Body<TransitionBody>,
) -> ApiResult<Json<Event>> {
    Ok(Json(me.transition(at.reference()?, b.to, b.reason).await?))
}

/// Moves a version along the lifecycle to `to`, through every stage on the
/// way (writer); each move's gates run.
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/promote",
    tag = "lifecycle",
    params(VersionAt),
    request_body = TransitionBody,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "One `stage_changed` event per move.", body = Vec<Event>),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn promote(
    Writer(me): Writer,
    Path(at): Path<VersionAt>,
    Body(b): Body<TransitionBody>,
) -> ApiResult<Json<Vec<Event>>> {
    Ok(Json(me.promote_to(at.reference()?, b.to, b.reason).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StageDecision {
    /// The stage the decision is about.
    stage: Stage,
    /// A comment for the audit trail.
    #[serde(default)]
    comment: String,
}

/// Approves a version for a stage (approver).
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/approve",
    tag = "lifecycle",
    params(VersionAt),
    request_body = StageDecision,
    security(("bearer" = ["approver"])),
    responses(
        (status = 200, description = "The `approval_recorded` event.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn approve(
    Approver(me): Approver,
    Path(at): Path<VersionAt>,
    Body(b): Body<StageDecision>,
) -> ApiResult<Json<Event>> {
    Ok(Json(me.approve(at.reference()?, b.stage, b.comment).await?))
}

/// Rejects a version for a stage (approver).
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/reject",
    tag = "lifecycle",
    params(VersionAt),
    request_body = StageDecision,
    security(("bearer" = ["approver"])),
    responses(
        (status = 200, description = "The `approval_recorded` event.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn reject(
    Approver(me): Approver,
    Path(at): Path<VersionAt>,
    Body(b): Body<StageDecision>,
) -> ApiResult<Json<Event>> {
    Ok(Json(me.reject(at.reference()?, b.stage, b.comment).await?))
}

/// Puts the previous production version back into production (writer).
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/rollback",
    tag = "lifecycle",
    params(ModelAt),
    request_body = Reason,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The `rolled_back` event.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn rollback(
    Writer(me): Writer,
    Path(ModelAt { model }): Path<ModelAt>,
    Body(b): Body<Reason>,
) -> ApiResult<Json<Event>> {
    Ok(Json(me.rollback(model.as_str(), b.reason).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    /// The version's selector within the model.
    version: String,
    /// Why, for the audit trail.
    #[serde(default)]
    reason: String,
    /// Whether moving or removing the alias later must pass the gates of
    /// production (default: unchanged, or unprotected for a new alias).
    protected: Option<bool>,
}

/// Points an alias at a version (writer).
#[utoipa::path(
    put,
    path = "/api/v1/models/{model}/aliases/{alias}",
    tag = "aliases",
    params(AliasAt),
    request_body = AliasBody,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The `alias_set` event.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn set_alias(
    Writer(me): Writer,
    Path(AliasAt { model, alias }): Path<AliasAt>,
    Body(b): Body<AliasBody>,
) -> ApiResult<Json<Event>> {
    let mut options = SetAlias::new().reason(b.reason);
    if let Some(p) = b.protected {
        options = options.protected(p);
    }
    let r = version_ref(&model, &b.version)?;
    Ok(Json(me.set_alias(r, &alias, options).await?))
}

/// Removes an alias (writer).
#[utoipa::path(
    delete,
    path = "/api/v1/models/{model}/aliases/{alias}",
    tag = "aliases",
    params(AliasAt, Reason),
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The `alias_removed` event.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn remove_alias(
    Writer(me): Writer,
    Path(AliasAt { model, alias }): Path<AliasAt>,
    Query(b): Query<Reason>,
) -> ApiResult<Json<Event>> {
    Ok(Json(
        me.remove_alias(model.as_str(), &alias, b.reason).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    /// The new split.
    split: TrafficSplit,
    /// Why, for the audit trail.
    #[serde(default)]
    reason: String,
}

/// Sets a model's traffic split (writer).
#[utoipa::path(
    put,
    path = "/api/v1/models/{model}/split",
    tag = "traffic",
    params(ModelAt),
    request_body = SplitBody,
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The `traffic_split_set` event.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn set_split(
    Writer(me): Writer,
    Path(ModelAt { model }): Path<ModelAt>,
    Body(b): Body<SplitBody>,
) -> ApiResult<Json<Event>> {
    Ok(Json(
        me.set_traffic_split(model.as_str(), b.split, b.reason)
            .await?,
    ))
}

/// Removes a model's traffic split (writer): requests go to `@production` again.
#[utoipa::path(
    delete,
    path = "/api/v1/models/{model}/split",
    tag = "traffic",
    params(ModelAt, Reason),
    security(("bearer" = ["writer"])),
    responses(
        (status = 200, description = "The `traffic_split_set` event, without a split.", body = Event),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
async fn clear_split(
    Writer(me): Writer,
    Path(ModelAt { model }): Path<ModelAt>,
    Query(b): Query<Reason>,
) -> ApiResult<Json<Event>> {
    Ok(Json(
        me.clear_traffic_split(model.as_str(), b.reason).await?,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The router is built only through `Routes::add`, so what it answers is
    /// `Routes::operations` (and `HEAD` wherever there is a `GET`); the
    /// document lists the handlers named in `ApiDoc`. A handler routed but not
    /// listed there, or listed but not routed, fails here.
    #[test]
    fn the_router_answers_exactly_the_documented_operations() {
        let routed: BTreeSet<(String, String)> = Routes::all().operations.into_iter().collect();
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
            ] {
                if op.is_some() {
                    documented.insert((method.to_owned(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routed but not in ApiDoc's paths: {undocumented:?}; in ApiDoc but not routed: \
             {unrouted:?}"
        );
    }
}
