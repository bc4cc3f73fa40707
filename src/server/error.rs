//! How a failed request is answered: the library's [`Error`] mapped to an HTTP
//! status, with a JSON body `{"error":{"kind","status","message"}}`. The
//! Hugging Face and MLflow routes reshape this into their clients' dialects.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::openapi::{ErrorBody, ErrorDetail};
use crate::Error;

/// A failed request: the status, a stable machine-readable kind and a message
/// for people.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable name for programs: `not_found`, `conflict`, `refused`,
    /// `invalid_input`, `unauthorized`, `forbidden`, `too_large`, `timeout`,
    /// `integrity`, `unavailable`, `internal`.
    pub kind: &'static str,
    /// What went wrong, in one line.
    pub message: String,
    /// The library error, when there was one (its [`Missing`](crate::Missing)
    /// tells the dialects which kind of thing was absent).
    pub source: Option<Box<Error>>,
}

/// `Result` of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    /// An error with no library error behind it.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404 for something the library was not asked about (a route, a file).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: no credentials, or credentials that match no token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the credentials are valid but their role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 for a failure of the server itself (a staging directory it cannot write).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, kind) = match &e {
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::AlreadyExists { .. }
            | Error::Conflict { .. }
            | Error::ConcurrentChange { .. } => (StatusCode::CONFLICT, "conflict"),
            // The request was understood and refused by the model's rules.
            Error::GateRejected { .. } | Error::InvalidTransition { .. } => {
                (StatusCode::CONFLICT, "refused")
            }
            // The version is in production: its record is fixed.
            Error::Immutable { .. } => (StatusCode::CONFLICT, "immutable"),
            // The version exists, its files were purged on purpose: gone.
            Error::Purged { .. } => (StatusCode::GONE, "purged"),
            // A purge refused: the version is in use.
            Error::Protected { .. } => (StatusCode::CONFLICT, "protected"),
            // A bundle that does not verify, or a policy not met: the request's
            // content is understood and refused.
            Error::Signature { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "signature"),
            Error::InvalidName { .. }
            | Error::InvalidReference { .. }
            | Error::InvalidPath { .. }
            | Error::InvalidInput { .. } => (StatusCode::BAD_REQUEST, "invalid_input"),
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::Integrity { .. } | Error::Corrupt { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "integrity")
            }
            Error::Storage { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            kind,
            message: one_line(&e.to_string()),
            source: Some(Box::new(e)),
        }
    }
}

/// A message that spans lines (a storage error's source chain) joined into one.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                status: self.status.as_u16(),
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
