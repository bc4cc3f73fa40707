//! Registering a version by upload (`POST /api/v1/models/{model}/versions`,
//! multipart): each file part streams to a staging directory on disk, never
//! whole in memory, and the version is registered from it. The staging
//! directory is removed whatever happens (see [`Staging`]), so a refused,
//! failed or abandoned upload leaves nothing behind.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::Json;
use axum::extract::{FromRequest, Multipart};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use super::State;
use super::auth::Writer;
use super::error::{ApiError, ApiResult};
use super::extract::Path;
use super::openapi::{BadRequest, Binary, Conflict, PayloadTooLarge};
use super::rest::ModelAt;
use crate::{
    ArtifactSource, CodeRef, CreateModel, DatasetRef, Environment, LinkMode, MetricName, Metrics,
    NewVersion, RelPath, Relation, VersionRecord,
};

/// The `metadata` part of an upload: what `NewVersion` takes, as JSON.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct VersionMetadata {
    /// A semver label, unique within the model (`1.4.0`).
    semver: Option<String>,
    /// What changed.
    #[serde(default)]
    description: String,
    /// Tags, by key.
    #[serde(default)]
    #[schema(value_type = BTreeMap<MetricName, String>)]
    tags: BTreeMap<String, String>,
    /// Metric values, by name.
    #[serde(default)]
    #[schema(value_type = Metrics)]
    metrics: BTreeMap<String, f64>,
    /// Hyperparameters, by name.
    #[serde(default)]
    params: BTreeMap<String, crate::HyperValue>,
    /// The datasets the version was trained and evaluated on.
    #[serde(default)]
    datasets: Vec<DatasetRef>,
    /// The code it was trained with.
    code: Option<CodeRef>,
    /// The versions it derives from; they must exist.
    #[serde(default)]
    parents: Vec<ParentBody>,
    /// The software and hardware it was trained on.
    environment: Option<Environment>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ParentBody {
    /// A full reference such as `fraud/3`.
    version: String,
    /// How the new version derives from it.
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

/// The parts of an upload. The handler reads them one by one as they stream
/// (see [`register`]); this type only describes them.
#[derive(ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The version's metadata, a JSON text (optional; at most one part, with
    /// no file name).
    metadata: Option<VersionMetadata>,
    /// The files: one part each, under any field name, whose file name is the
    /// file's path in the artifact (`weights/model.bin`).
    #[schema(value_type = Vec<Binary>)]
    file: Vec<()>,
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
#[derive(Serialize, ToSchema)]
pub(crate) struct Registered {
    /// The new version.
    version: VersionRecord,
    /// What was stored: files and bytes new and already present.
    report: crate::RegisterReport,
}

/// Registers a new version from uploaded files (writer).
///
/// `multipart/form-data`: one optional `metadata` part (JSON) and one part per
/// file whose file name is its path inside the artifact. Each file streams to
/// a staging directory on disk (never whole in memory), then the version is
/// registered from it; the model is created if it does not exist.
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions",
    tag = "versions",
    params(ModelAt),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    security(("bearer" = ["writer"])),
    responses(
        (status = 201, description = "Registered.", body = Registered),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
    ),
)]
pub(crate) async fn register(
    axum::extract::State(s): axum::extract::State<State>,
    Writer(me): Writer,
    Path(ModelAt { model }): Path<ModelAt>,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<Registered>)> {
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
        "{}{}-{:016x}",
        super::staging::PREFIX,
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
    me.ensure_model(model.clone(), CreateModel::new()).await?;
    let registered = me
        .register(
            model,
            ArtifactSource::dir(staging.0.clone()),
            metadata.into_new_version(),
        )
        .await?;
    drop(staging);
    Ok((
        StatusCode::CREATED,
        Json(Registered {
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
