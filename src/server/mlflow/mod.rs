//! The MLflow model-registry API subset.

use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use super::State;
use super::error::ApiError;

/// The routes `MlflowClient` calls.
pub(crate) fn routes(_state: &State) -> Router<State> {
    Router::new()
}

/// Whether `path` is one of this API's.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with("/api/2.0/mlflow") || path.starts_with("/api/3.0/mlflow")
}

/// `e` in MLflow's error shape, `{"error_code","message"}`.
pub(crate) fn error_response(e: ApiError) -> Response {
    let code = match e.kind {
        "not_found" => "RESOURCE_DOES_NOT_EXIST",
        "conflict" => "RESOURCE_ALREADY_EXISTS",
        "invalid_input" | "too_large" | "refused" => "INVALID_PARAMETER_VALUE",
        "unauthorized" => "UNAUTHENTICATED",
        "forbidden" => "PERMISSION_DENIED",
        "unavailable" => "TEMPORARILY_UNAVAILABLE",
        _ => "INTERNAL_ERROR",
    };
    let body = serde_json::json!({ "error_code": code, "message": e.message });
    (e.status, Json(body)).into_response()
}
