//! [`ModelCache::follow`]: a reference kept loaded, swapped when it moves;
//! [`Registry::follow_model`]: a model's state kept current.

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::{CachedModel, ModelCache};
use crate::domain::ModelState;
use crate::error::{Error, Result};
use crate::registry::{IntoModelName, IntoVersionRef, Registry, WatchOptions};

/// Something kept current in the background: [`current`](Self::current) is the
/// latest value, [`changed`](Self::changed) waits for the next one.
///
/// `Followed<CachedModel>` (the default) is a reference kept loaded from a
/// [`ModelCache`]: the verified files of the version the reference resolved to
/// last. Made by [`ModelCache::follow`]. `Followed<ModelState>` is a model's
/// state as of its last change, for routing without a read per request
/// ([`ModelState::route`]). Made by [`Registry::follow_model`].
///
/// A background task watches the reference ([`Registry::watch`](crate::Registry::watch))
/// and, when it moves, downloads and verifies the new version *before* swapping
/// it in, so `current` never hands out files that are not complete. If the new
/// version cannot be fetched, the old one stays current and the error is kept
/// in [`last_error`](Self::last_error); the next move is tried again. Each
/// [`CachedModel`] handed out holds its entry "in use" for as long as any clone
/// of the `Arc` lives, so a request that is still using the old files keeps them
/// on disk after the swap. Dropping the `Followed` stops the task.
pub struct Followed<T = CachedModel> {
    current: watch::Receiver<Arc<T>>,
    last_error: Arc<Mutex<Option<Error>>>,
    task: JoinHandle<()>,
}

impl<T> fmt::Debug for Followed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Followed").finish_non_exhaustive()
    }
}

impl<T> Drop for Followed<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T> Followed<T> {
    /// The current value (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.borrow())
    }

    /// Waits until another version has been swapped in since the last call (or
    /// since `follow`), and returns it. Cancel-safe: use it in a `select!`.
    pub async fn changed(&mut self) -> Result<Arc<T>> {
        self.current.changed().await.map_err(|_| {
            Error::invalid_input("followed reference", "the background task stopped")
        })?;
        Ok(Arc::clone(&self.current.borrow_and_update()))
    }

    /// A receiver of the current version that many tasks can hold and await
    /// (`changed().await`, `borrow()`), for servers that share one `Followed`
    /// between connections and still want to act on a swap (log it, load the
    /// new weights before the first request needs them).
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.current.clone()
    }

    /// The error of the last change that could not be followed (a version whose
    /// files could not be fetched or verified, a store that cannot be reached),
    /// cleared by the next successful swap. The current version stays served
    /// meanwhile.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(ToString::to_string)
    }
}

impl ModelCache {
    /// Keeps `reference` loaded: gets the version it resolves to now (waiting for
    /// its files), then follows it as it moves — an alias moved, a promotion, a
    /// rollback — swapping each new version in once its files are verified. See
    /// [`Followed`]. Needs a tokio runtime; polling runs every
    /// [`WatchOptions::interval`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("ops")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// let v1 = me.register("fraud", ArtifactSource::bytes("model.bin", "v1")?, NewVersion::new()).await?;
    /// me.set_alias(&v1, "live", SetAlias::new()).await?;
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let cache = ModelCache::open(tmp.path(), registry.clone(), CacheOptions::new()).await?;
    /// let mut live = cache.follow("fraud@live", WatchOptions::new().interval(Duration::from_millis(10))).await?;
    /// assert_eq!(live.current().version().number, v1.number);
    ///
    /// let v2 = me.register("fraud", ArtifactSource::bytes("model.bin", "v2")?, NewVersion::new()).await?;
    /// me.set_alias(&v2, "live", SetAlias::new()).await?;
    /// let now = live.changed().await?;
    /// assert_eq!(now.version().number, v2.number);
    /// assert_eq!(std::fs::read(now.path().join("model.bin")).unwrap(), b"v2");
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn follow(
        &self,
        reference: impl IntoVersionRef,
        options: WatchOptions,
    ) -> Result<Followed> {
        let reference = reference.into_version_ref()?;
        let mut versions = self.registry().watch(&reference, options)?;
        // The first item is the version now (or why it does not resolve).
        let first = match versions.next().await {
            Some(v) => v?,
            None => return Err(Error::version_not_found(&reference.model, &reference)),
        };
        let first = Arc::new(self.get(&first).await?);
        let (tx, rx) = watch::channel(first);
        let last_error = Arc::new(Mutex::new(None));
        let (cache, errors) = (self.clone(), Arc::clone(&last_error));
        let task = tokio::spawn(async move {
            while let Some(item) = versions.next().await {
                let got = match item {
                    Ok(v) => cache.get(&v).await,
                    Err(e) => Err(e),
                };
                let mut slot = errors.lock().unwrap_or_else(|p| p.into_inner());
                match got {
                    Ok(files) => {
                        *slot = None;
                        drop(slot);
                        if tx.send(Arc::new(files)).is_err() {
                            return;
                        }
                    }
                    Err(e) => *slot = Some(e),
                }
            }
        });
        Ok(Followed {
            current: rx,
            last_error,
            task,
        })
    }
}

impl Registry {
    /// Keeps `model`'s state current: its state now (waiting for it), then the
    /// state after each change by any process — registrations, moves, aliases,
    /// traffic splits. A router routes from [`Followed::current`] with
    /// [`ModelState::route`], which reads nothing. Built on
    /// [`watch_model`](Self::watch_model); polls every
    /// [`WatchOptions::interval`]. Needs a tokio runtime.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("ops")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// for alias in ["a", "b"] {
    ///     let v = me.register("fraud", ArtifactSource::bytes("m.bin", alias)?, NewVersion::new()).await?;
    ///     me.set_alias(&v, alias, SetAlias::new()).await?;
    /// }
    /// let mut fraud = registry.follow_model("fraud", WatchOptions::new().interval(Duration::from_millis(10))).await?;
    /// assert!(fraud.current().traffic_split().is_none());
    /// me.set_traffic_split("fraud", TrafficSplit::new([("@a", 50), ("@b", 50)])?, "a/b").await?;
    /// let state = fraud.changed().await?;
    /// assert!(state.route(b"user-42")?.from_split);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn follow_model(
        &self,
        model: impl IntoModelName,
        options: WatchOptions,
    ) -> Result<Followed<ModelState>> {
        let mut states = self.watch_model(model, options)?;
        let first = match states.next().await {
            Some(state) => Arc::new(state?),
            None => return Err(Error::not_found("the model's first state")),
        };
        let (tx, rx) = watch::channel(first);
        let last_error = Arc::new(Mutex::new(None));
        let errors = Arc::clone(&last_error);
        let task = tokio::spawn(async move {
            while let Some(item) = states.next().await {
                let mut slot = errors.lock().unwrap_or_else(|p| p.into_inner());
                match item {
                    Ok(state) => {
                        *slot = None;
                        drop(slot);
                        if tx.send(Arc::new(state)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "following a model: the state could not be read; the last one stays current");
                        *slot = Some(e);
                    }
                }
            }
        });
        Ok(Followed {
            current: rx,
            last_error,
            task,
        })
    }
}
