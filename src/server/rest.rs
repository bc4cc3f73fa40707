//! The REST JSON API under `/api/v1/`.

use axum::Router;

use super::State;

/// Every REST route.
pub(crate) fn routes(_state: &State) -> Router<State> {
    Router::new()
}
