//! The Hugging Face Hub download path.

use axum::Router;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use super::State;
use super::error::ApiError;

/// The routes `huggingface_hub` and `hf-hub` call.
pub(crate) fn routes(_state: &State) -> Router<State> {
    Router::new()
}

/// Whether `path` is one of this API's.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with("/api/models/") || path.split('/').nth(2) == Some("resolve")
}

/// `e` with the `X-Error-Code` the Hub clients map to their exception types.
pub(crate) fn error_response(e: ApiError, code: Option<&'static str>) -> Response {
    let code = code.or(match e.kind {
        "unauthorized" => Some("RepoNotFound"),
        _ => None,
    });
    let mut response = e.into_response();
    if let Some(code) = code {
        response
            .headers_mut()
            .insert("x-error-code", HeaderValue::from_static(code));
    }
    response
}
