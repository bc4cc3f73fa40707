//! The one way blocking work leaves an async worker: tokio's blocking pool,
//! with one policy for how it ends.
//!
//! - A panic in the work is resumed in the caller: it is a bug, and turning it
//!   into an I/O error would hide it behind a retry.
//! - A task the runtime cancelled (it is shutting down) becomes an error; the
//!   caller says which, naming its store or path.

use tokio::task::JoinError;

use crate::error::{Error, Result};

/// Runs `f` on the blocking pool; a cancelled task becomes `on_cancel`'s error.
pub(crate) async fn offload_or<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    on_cancel: impl FnOnce(JoinError) -> Error,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => Ok(value),
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => Err(on_cancel(e)),
        },
    }
}

/// Runs `f` on the blocking pool; a cancelled task is an I/O error on
/// `<blocking task>`.
pub(crate) async fn offload<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    offload_or(f, |e| {
        Error::io("<blocking task>", std::io::Error::other(e))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_come_back_and_panics_resume_in_the_caller() {
        assert_eq!(offload(|| 7).await.expect("value"), 7);
        let caught = tokio::spawn(async { offload::<()>(|| panic!("a bug")).await })
            .await
            .expect_err("the panic reaches the caller's task");
        assert!(caught.is_panic());
    }
}
