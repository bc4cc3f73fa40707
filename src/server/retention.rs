//! Purging a version's files and applying a retention policy over REST
//! (admin): `POST /api/v1/models/{model}/versions/{version}/purge` and
//! `POST /api/v1/models/{model}/retention`. The registry decides everything
//! (which versions are protected, what a policy picks); these routes only
//! carry the request and the answer. Space is freed by the registry's `gc`,
//! as after the CLI's `version purge` and `model retain --apply`.

use std::time::Duration;

use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Admin;
use super::error::ApiResult;
use super::extract::{Body, Path};
use super::openapi::{BadRequest, Conflict, NotFound};
use super::rest::{ModelAt, Reason, VersionAt};
use crate::{RetentionPolicy, RetentionReport, VersionRecord};

/// Purges a version's files (admin): its record and history stay, and
/// fetching it is `410 purged` from then on. A version in a stage, holding an
/// alias, in the traffic split, the rollback target or tagged `keep` is
/// protected: `409 protected`, naming every protection; one purged already is
/// `400`. The space is freed by the next garbage collection.
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/purge",
    tag = "versions",
    params(VersionAt),
    request_body = Reason,
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The version after the purge.", body = VersionRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub(super) async fn purge(
    Admin(me): Admin,
    Path(at): Path<VersionAt>,
    Body(b): Body<Reason>,
) -> ApiResult<Json<VersionRecord>> {
    Ok(Json(me.purge_version(at.reference()?, b.reason).await?))
}

/// A retention policy to apply to one model: which versions to keep. At
/// least one limit must be given.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionBody {
    /// Keep the newest this many versions, whatever their age.
    #[serde(default)]
    #[schema(minimum = 0)]
    keep_last: Option<usize>,
    /// Keep every version registered less than this many seconds ago.
    #[serde(default)]
    #[schema(minimum = 0)]
    older_than_seconds: Option<u64>,
    /// Purge for real; without it (the default) nothing is written and the
    /// answer says what would be purged.
    #[serde(default)]
    apply: bool,
}

/// Applies a retention policy to a model (admin): purges every version outside
/// the newest `keep_last` and older than `older_than_seconds` (the limits that
/// are given), never a protected one (the answer lists those it kept, and
/// why). A dry run unless `apply` is true. Each purge is an audited event.
#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/retention",
    tag = "versions",
    params(ModelAt),
    request_body = RetentionBody,
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "What was purged (or would be), and what was kept.", body = RetentionReport),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub(super) async fn retention(
    Admin(me): Admin,
    Path(ModelAt { model }): Path<ModelAt>,
    Body(b): Body<RetentionBody>,
) -> ApiResult<Json<RetentionReport>> {
    let mut policy = RetentionPolicy::new();
    if let Some(n) = b.keep_last {
        policy = policy.keep_last(n);
    }
    if let Some(secs) = b.older_than_seconds {
        policy = policy.older_than(Duration::from_secs(secs));
    }
    Ok(Json(
        me.apply_retention(model.as_str(), &policy, !b.apply)
            .await?,
    ))
}
