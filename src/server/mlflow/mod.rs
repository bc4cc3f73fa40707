//! The MLflow model-registry API subset: `MlflowClient(tracking_uri=…)`
//! registers, tags, aliases, searches and downloads models here, and
//! `mlflow.artifacts.download_artifacts("models:/fraud@champion")` fetches a
//! version's files.
//!
//! # What is served
//!
//! - Registered models under `/api/2.0/mlflow/registered-models/`: `create`,
//!   `get`, `search`, `update`, `delete` (refused, see below), `rename`
//!   (refused), `set-tag`, `delete-tag`, `alias` (`POST` set, `DELETE`
//!   remove, `GET` the version it points at), `get-latest-versions` (`POST`
//!   and `GET`).
//! - Model versions under `/api/2.0/mlflow/model-versions/`: `create`, `get`,
//!   `search`, `update`, `delete` (deprecates, see below), `set-tag`,
//!   `delete-tag`, `get-download-uri`, and the deprecated `transition-stage`.
//! - Artifacts under `/api/2.0/mlflow-artifacts/artifacts`: `GET ?path=…`
//!   lists a directory, `GET /{path}` downloads a file, `PUT /{path}` uploads
//!   one (writer role).
//!
//! Tracking is **not** served: no experiments, runs, metrics, params, logged
//! models (`/api/2.0/mlflow/logged-models/…`), traces, prompts' own API,
//! webhooks, multipart or presigned artifact transfers, and no
//! `/api/3.0/mlflow/server-info` (the client's capability probe gets 404 and
//! falls back to plain `PUT`/`GET`, which is what is served). Every other
//! path below `/api/2.0/mlflow/`, `/api/3.0/mlflow/` and
//! `/api/2.0/mlflow-artifacts/` answers 404 `ENDPOINT_NOT_FOUND`, and so
//! does a served path called with another method, so that the client moves
//! on to the next form of a call that has several (`get-latest-versions`
//! tries `POST`, then `GET`).
//!
//! # How MLflow's objects map onto the registry
//!
//! - A **registered model** is a model. Names are this registry's model
//!   names (lowercase `a-z 0-9 - _ .`): others are `INVALID_PARAMETER_VALUE`.
//!   Tags are the model's tags; MLflow tag keys this registry's [`TagKey`]
//!   rejects (spaces, most punctuation) are `INVALID_PARAMETER_VALUE` naming
//!   the rule. Aliases are the model's aliases. `latest_versions` holds, for
//!   each MLflow stage, the highest-numbered version in it that is not
//!   deprecated. `user_id` is the actor that created it.
//! - A **model version** is a version: `version` is its number as a JSON
//!   string (the client insists), `status` is always `READY` (registration
//!   is atomic: a version exists only once all of its files are stored, so
//!   the client never polls), `run_id` is empty (there are no runs; a
//!   `run_id` sent with `create` is not kept), `user_id` is the actor that
//!   registered it, and `tags` are its tags.
//! - **Stages**: `None`, `Staging`, `Production` and `Archived` are the
//!   stages of the same names. This registry's `validation` (between staging
//!   and production) has no MLflow equivalent: such a version shows
//!   `current_stage: "Staging"` and says `in validation` in its
//!   `status_message`. Every version also carries `modelreg_stage` (the exact
//!   stage) and `modelreg_digest` (its manifest's digest), which the Python
//!   client ignores.
//! - **Descriptions**: `model-versions/update` replaces a version's
//!   description (an audited `version_description_set` event, like
//!   [`Session::set_version_description`](crate::Session::set_version_description);
//!   a version in production is `INVALID_STATE`). A model's description is
//!   set when it is created and never rewritten: `registered-models/update`
//!   sets the tag `modelreg.mlflow.description`, which an audited tag event
//!   records; the description shown is that tag when set, the original
//!   otherwise, and the tag is not repeated in `tags`.
//! - **Sources**: a version is created from files uploaded first with `PUT
//!   /api/2.0/mlflow-artifacts/artifacts/<path>`; `source` must be
//!   `mlflow-artifacts:/<path>` (or `mlflow-artifacts://host/<path>`) naming
//!   that file or directory. Any other source (`runs:/`, `models:/`, `s3://`,
//!   a local path) is `INVALID_PARAMETER_VALUE`. The source is kept in the
//!   version tag `modelreg.mlflow.source` and returned as `source` (a version
//!   registered through another API shows its download URI instead).
//!   Neither reserved tag can be set or deleted through `set-tag` or
//!   `delete-tag`.
//! - **Timestamps** are milliseconds. A model's `last_updated_timestamp` is
//!   its latest event; a version's is the latest of its registration, its
//!   last stage change and its deprecation (a tag or description change
//!   moves the model's timestamp, not the version's).
//!
//! # Artifacts: two namespaces
//!
//! Uploads are staged under `<staging_dir>/mlflow-artifacts/<path>`, each
//! file streamed to a temp file (`<staging_dir>/mlflow-artifacts.tmp/`),
//! counted against `max_upload_bytes` (413 beyond it, and nothing is
//! staged), synced and renamed into place when complete; at most
//! `concurrent_uploads` stream at once. Paths go through
//! [`RelPath`](crate::RelPath): `..`, absolute paths and empty segments are
//! 400. Registering links them into a local registry's store by hard link
//! where it can ([`LinkMode::HardLink`]: the staged file becomes read-only
//! and is the blob — safe because the server only ever replaces a staged
//! file by renaming a new one over it, never writes into it), and then
//! removes the source's staged files: the version holds them, and is read
//! back under `models/` (below). So one upload registers one version; a
//! second `create` from the same source is `INVALID_PARAMETER_VALUE`.
//! Uploads nobody registers are removed once unmodified for
//! `staged_upload_max_age` (24 h), at startup and by a periodic sweep.
//!
//! Registered versions are read under the reserved prefix `models/`:
//! `get-download-uri` answers `mlflow-artifacts:/models/<model>/<n>`, and
//! listing or downloading below `models/<model>/<n>/` reads that version's
//! manifest and verified blobs. An upload whose path starts with `models/`
//! is refused, so the two namespaces never overlap.
//!
//! # Deletion
//!
//! History is never rewritten. `model-versions/delete` (admin role)
//! **deprecates** the version: it stays readable by number, by its aliases
//! and by its download URI, its `status_message` says who deprecated it and
//! when, and `latest_versions` / `get-latest-versions` skip it (as
//! `@latest` does); the response says so in a `message` field. Aliases
//! pointing at it are left as they are. `registered-models/delete` (admin
//! role) is refused with `INVALID_PARAMETER_VALUE`: models are never
//! deleted. `registered-models/rename` is refused the same way: a model's
//! name is its identity.
//!
//! # Access
//!
//! Reads need the reader role (the server's middleware); every write asks
//! for the writer role (deletes: admin) before it reads its body, and acts
//! as the token's identity: no field of a request (MLflow's `user_id`
//! included) names the actor written to the audit trail. Transitions go
//! through [`Session::promote_to`](crate::Session::promote_to), so every
//! gate of every step runs.
//!
//! [`TagKey`]: crate::TagKey
//! [`LinkMode::HardLink`]: crate::LinkMode::HardLink

mod artifacts;
mod models;
mod search;
mod staged;

pub(crate) use staged::{StagedUploads, sweep_periodically};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, delete, get, patch, post};
use axum::{Json, Router};
use bytes::BytesMut;
use futures::StreamExt;
use serde_json::{Map, Value};

use super::State;
use super::auth::{Caller, Role};
use super::error::ApiError;
use crate::{Error, Session, VersionNumber};

/// The registry API's prefix.
const API: &str = "/api/2.0/mlflow";

/// The artifact API's prefix.
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// The [`ApiError::kind`] of a path or method this API does not serve.
const NO_ENDPOINT: &str = "endpoint_not_found";

/// The routes `MlflowClient` calls.
pub(crate) fn routes(_state: &State) -> Router<State> {
    let api = |path: &str| format!("{API}/{path}");
    Router::new()
        .route(
            &api("registered-models/create"),
            only(post(models::create_model)),
        )
        .route(&api("registered-models/get"), only(get(models::get_model)))
        .route(
            &api("registered-models/search"),
            only(get(models::search_models)),
        )
        .route(
            &api("registered-models/update"),
            only(patch(models::update_model)),
        )
        .route(
            &api("registered-models/delete"),
            only(delete(models::delete_model)),
        )
        .route(
            &api("registered-models/rename"),
            only(post(models::rename_model)),
        )
        .route(
            &api("registered-models/set-tag"),
            only(post(models::set_model_tag)),
        )
        .route(
            &api("registered-models/delete-tag"),
            only(delete(models::delete_model_tag)),
        )
        .route(
            &api("registered-models/alias"),
            only(
                post(models::set_alias)
                    .delete(models::delete_alias)
                    .get(models::get_by_alias),
            ),
        )
        .route(
            &api("registered-models/get-latest-versions"),
            only(post(models::latest_versions).get(models::latest_versions)),
        )
        .route(
            &api("model-versions/create"),
            only(post(models::create_version)),
        )
        .route(&api("model-versions/get"), only(get(models::get_version)))
        .route(
            &api("model-versions/search"),
            only(get(models::search_versions)),
        )
        .route(
            &api("model-versions/update"),
            only(patch(models::update_version)),
        )
        .route(
            &api("model-versions/delete"),
            only(delete(models::delete_version)),
        )
        .route(
            &api("model-versions/set-tag"),
            only(post(models::set_version_tag)),
        )
        .route(
            &api("model-versions/delete-tag"),
            only(delete(models::delete_version_tag)),
        )
        .route(
            &api("model-versions/get-download-uri"),
            only(get(models::download_uri)),
        )
        .route(
            &api("model-versions/transition-stage"),
            only(post(models::transition_stage)),
        )
        .route(ARTIFACTS, only(get(artifacts::list)))
        .route(
            &format!("{ARTIFACTS}/{{*path}}"),
            only(get(artifacts::download).put(artifacts::upload)),
        )
        .route(&format!("{API}/{{*rest}}"), any(no_endpoint))
        .route("/api/3.0/mlflow/{*rest}", any(no_endpoint))
        .route("/api/2.0/mlflow-artifacts/{*rest}", any(no_endpoint))
}

/// `route` answering `ENDPOINT_NOT_FOUND` for the methods it does not serve.
fn only(route: MethodRouter<State>) -> MethodRouter<State> {
    route.fallback(no_endpoint)
}

async fn no_endpoint(method: Method, uri: Uri) -> Response {
    error_response(ApiError::new(
        StatusCode::NOT_FOUND,
        NO_ENDPOINT,
        format!(
            "{method} {} is not part of the MLflow API subset this server implements \
             (the model registry and mlflow-artifacts; no tracking)",
            uri.path()
        ),
    ))
}

/// Whether `path` is one of this API's.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with("/api/2.0/mlflow") || path.starts_with("/api/3.0/mlflow")
}

/// `e` in MLflow's error shape, `{"error_code","message"}`, with the
/// `error_code` the client turns into `RestException.error_code`.
pub(crate) fn error_response(e: ApiError) -> Response {
    let code = match (e.source.as_deref(), e.kind) {
        (Some(Error::AlreadyExists { .. }), _) => "RESOURCE_ALREADY_EXISTS",
        (Some(Error::InvalidTransition { .. }), _) => "INVALID_STATE_TRANSITION",
        (
            Some(Error::GateRejected { .. } | Error::Immutable { .. } | Error::Protected { .. }),
            _,
        ) => "INVALID_STATE",
        (_, "purged") => "RESOURCE_DOES_NOT_EXIST",
        (_, NO_ENDPOINT) => "ENDPOINT_NOT_FOUND",
        (_, "not_found") => "RESOURCE_DOES_NOT_EXIST",
        (_, "conflict") => "RESOURCE_CONFLICT",
        (_, "invalid_input" | "too_large" | "refused") => "INVALID_PARAMETER_VALUE",
        (_, "unauthorized") => "UNAUTHENTICATED",
        (_, "forbidden") => "PERMISSION_DENIED",
        (_, "unavailable") => "TEMPORARILY_UNAVAILABLE",
        (_, "integrity") => "DATA_LOSS",
        _ => "INTERNAL_ERROR",
    };
    let body = serde_json::json!({ "error_code": code, "message": e.message });
    (e.status, Json(body)).into_response()
}

/// A failed MLflow call: answered by [`error_response`].
pub(crate) struct MlError(ApiError);

impl From<ApiError> for MlError {
    fn from(e: ApiError) -> Self {
        MlError(e)
    }
}

impl From<Error> for MlError {
    fn from(e: Error) -> Self {
        MlError(e.into())
    }
}

impl IntoResponse for MlError {
    fn into_response(self) -> Response {
        error_response(self.0)
    }
}

/// What a handler returns.
pub(crate) type MlResult<T = Json<Value>> = Result<T, MlError>;

/// 400 `INVALID_PARAMETER_VALUE`.
fn invalid(message: impl Into<String>) -> MlError {
    MlError(ApiError::bad_request(message))
}

/// One call: the caller, and the request, whose body is read only once the
/// caller's role allows the call.
pub(crate) struct Call {
    state: State,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
}

impl FromRequest<State> for Call {
    type Rejection = MlError;

    async fn from_request(request: Request, state: &State) -> MlResult<Self> {
        let (mut parts, body) = request.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        Ok(Call {
            state: state.clone(),
            caller,
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

impl Call {
    /// The registry acting as the caller, if their role is at least `role`.
    fn session(&self, role: Role) -> MlResult<Session> {
        let actor = self.caller.require(role, self.state.read_only())?;
        Ok(self.state.registry.acting_as(actor))
    }

    /// The call's parameters: the query string, and the JSON object in the
    /// body (which wins), read up to `max_json_bytes`.
    async fn params(&mut self) -> MlResult<Params> {
        let mut map = Map::new();
        if let Some(query) = self.uri.query() {
            for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                let v = Value::String(v.into_owned());
                match map.get_mut(k.as_ref()) {
                    Some(Value::Array(items)) => items.push(v),
                    Some(first) => *first = Value::Array(vec![first.take(), v]),
                    None => {
                        map.insert(k.into_owned(), v);
                    }
                }
            }
        }
        let limit = self.state.options.max_json_bytes;
        let declared = self
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit as u64));
        }
        let mut body = std::mem::take(&mut self.body).into_data_stream();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| invalid(format!("the request body could not be read: {e}")))?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large(limit as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(fields)) => map.extend(fields),
                Ok(_) => return Err(invalid("the request body must be a JSON object")),
                Err(e) => {
                    return Err(invalid(format!("the request body is not valid JSON: {e}")));
                }
            }
        }
        Ok(Params(map))
    }
}

fn too_large(limit: u64) -> MlError {
    MlError(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is larger than {limit} bytes"),
    ))
}

/// A call's named parameters, from the query string or a JSON body. Values
/// are taken as MLflow's clients send them: numbers as JSON numbers or
/// strings, lists as JSON arrays or repeated query parameters.
pub(crate) struct Params(Map<String, Value>);

impl Params {
    /// A required, non-empty text parameter.
    fn text(&self, key: &str) -> MlResult<&str> {
        self.opt_text(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("missing value for required parameter '{key}'")))
    }

    /// An optional text parameter.
    fn opt_text(&self, key: &str) -> MlResult<Option<&str>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(format!(
                "parameter '{key}' must be a string, not {other}"
            ))),
        }
    }

    /// An optional non-negative integer.
    fn number(&self, key: &str) -> MlResult<Option<u64>> {
        let bad = || invalid(format!("parameter '{key}' must be a non-negative integer"));
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// An optional boolean.
    fn flag(&self, key: &str) -> MlResult<Option<bool>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(invalid(format!("parameter '{key}' must be true or false"))),
        }
    }

    /// A list of strings (absent: empty).
    fn texts(&self, key: &str) -> MlResult<Vec<String>> {
        let bad = || invalid(format!("parameter '{key}' must be a list of strings"));
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    /// The required `version`: a version number, as a string (what MLflow
    /// sends) or a number.
    fn version(&self) -> MlResult<VersionNumber> {
        let n = match self.0.get("version") {
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            None | Some(Value::Null) => {
                return Err(invalid("missing value for required parameter 'version'"));
            }
            Some(_) => None,
        };
        n.and_then(|n| VersionNumber::new(n).ok())
            .ok_or_else(|| invalid("parameter 'version' must be a version number (1, 2, …)"))
    }

    /// `tags`: MLflow's `[{"key","value"}]`.
    fn tags(&self) -> MlResult<Vec<(String, String)>> {
        let bad = || invalid("parameter 'tags' must be a list of {\"key\", \"value\"} objects");
        match self.0.get("tags") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| {
                    let key = t.get("key").and_then(Value::as_str).ok_or_else(bad)?;
                    let value = match t.get("value") {
                        None | Some(Value::Null) => "",
                        Some(v) => v.as_str().ok_or_else(bad)?,
                    };
                    Ok((key.to_owned(), value.to_owned()))
                })
                .collect(),
            Some(_) => Err(bad()),
        }
    }
}
