//! What a store sent over the network for one operation: requests and bytes
//! uploaded, counted by the store itself and read by the caller.
//!
//! The registry runs a registration with a [`Counter`] as the task's
//! [`counter`] ([`counted`]); a store that talks to a server (the object
//! store) adds every request it makes and every byte it uploads. Stores on a
//! local disk or in memory send nothing and count nothing. Like the progress
//! meter, the counter is a task-local: a store reads it in the async part of a
//! method and passes it on to its blocking closures and spawned tasks.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests a store made and bytes it uploaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    /// Requests of any kind (GET, HEAD, PUT, LIST, DELETE, each multipart call).
    pub(crate) requests: u64,
    /// Bytes of request bodies: the data uploaded.
    pub(crate) bytes_sent: u64,
}

/// A shared count of [`Traffic`], added to from any thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counter(Arc<[AtomicU64; 2]>);

impl Counter {
    /// Counts one request that sent `bytes` bytes of body.
    pub(crate) fn request(&self, bytes: u64) {
        self.0[0].fetch_add(1, Ordering::Relaxed);
        self.0[1].fetch_add(bytes, Ordering::Relaxed);
    }

    /// What was counted so far.
    pub(crate) fn get(&self) -> Traffic {
        Traffic {
            requests: self.0[0].load(Ordering::Relaxed),
            bytes_sent: self.0[1].load(Ordering::Relaxed),
        }
    }
}

/// Counts for an optional counter: each does nothing without one.
pub(crate) trait CounterExt {
    /// [`Counter::request`], if there is a counter.
    fn request(&self, bytes: u64);
}

impl CounterExt for Option<Counter> {
    fn request(&self, bytes: u64) {
        if let Some(c) = self {
            c.request(bytes)
        }
    }
}

tokio::task_local! {
    static COUNTER: Counter;
}

/// The counter of the operation the current task works for, if its caller
/// asked for one.
pub(crate) fn counter() -> Option<Counter> {
    COUNTER.try_with(Counter::clone).ok()
}

/// Counts one request of the current task's operation (see [`counter`]).
pub(crate) fn request(bytes: u64) {
    counter().request(bytes)
}

/// Runs `work` with a new counter as the task's [`counter`]; returns its
/// output and what the stores it called counted.
pub(crate) async fn counted<F: Future>(work: F) -> (F::Output, Traffic) {
    let counter = Counter::default();
    let out = COUNTER.scope(counter.clone(), work).await;
    (out, counter.get())
}

/// Runs `work` with `counter` as the task's [`counter`]: for work that a
/// stream created in one task runs in another.
pub(crate) async fn scoped<F: Future>(counter: Counter, work: F) -> F::Output {
    COUNTER.scope(counter, work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_count_in_scope_only() {
        request(5);
        let ((), traffic) = counted(async {
            request(10);
            let c = counter();
            std::thread::spawn(move || c.request(3))
                .join()
                .expect("thread");
        })
        .await;
        assert_eq!(
            traffic,
            Traffic {
                requests: 2,
                bytes_sent: 13
            }
        );
    }
}
