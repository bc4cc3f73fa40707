//! [`ModelCache::follow`]: a reference kept loaded, swapped when it moves;
//! [`Registry::follow_model`]: a model's state kept current;
//! [`ModelCache::serve`]: both, with every version a request can be routed to
//! loaded into memory by the server's own loader.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::{CachedModel, ModelCache};
use crate::domain::{ModelState, RouteTarget, VersionNumber, VersionRecord};
use crate::error::{BoxError, Error, Result};
use crate::offload::offload;
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
    last_error: Arc<Mutex<Option<Arc<Error>>>>,
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

impl<T: Send + Sync + 'static> Followed<T> {
    /// Follows `rest` from `first`: each `Ok` item is swapped in and clears the
    /// last error; an `Err` is logged and kept in [`last_error`](Self::last_error)
    /// while the current value stays. The task ends with the stream, or when
    /// every receiver is gone. `what` names the followed thing in the log.
    fn spawn(first: Arc<T>, mut rest: BoxStream<'static, Result<Arc<T>>>, what: String) -> Self {
        let (tx, rx) = watch::channel(first);
        let last_error = Arc::new(Mutex::new(None));
        let errors = Arc::clone(&last_error);
        let task = tokio::spawn(async move {
            while let Some(item) = rest.next().await {
                let mut slot = errors.lock().unwrap_or_else(|p| p.into_inner());
                match item {
                    Ok(value) => {
                        *slot = None;
                        drop(slot);
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            followed = %what, error = %e,
                            "could not follow a change; the current value stays"
                        );
                        *slot = Some(Arc::new(e));
                    }
                }
            }
        });
        Followed {
            current: rx,
            last_error,
            task,
        }
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
    /// files could not be fetched or verified, a loader that failed
    /// ([`Error::Load`]), a store that cannot be reached), cleared by the next
    /// successful swap. The current value stays served meanwhile. Typed, so a
    /// server can tell an integrity failure from an unreachable store.
    pub fn last_error(&self) -> Option<Arc<Error>> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
        let cache = self.clone();
        let rest = versions
            .then(move |item| {
                let cache = cache.clone();
                async move { Ok(Arc::new(cache.get(&item?).await?)) }
            })
            .boxed();
        Ok(Followed::spawn(first, rest, reference.to_string()))
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
        let model = model.into_model_name()?;
        let mut states = self.watch_model(&model, options)?;
        let first = match states.next().await {
            Some(state) => Arc::new(state?),
            None => return Err(Error::not_found("the model's first state")),
        };
        let rest = states.map(|state| state.map(Arc::new)).boxed();
        Ok(Followed::spawn(first, rest, model.to_string()))
    }
}

/// A version's files loaded into memory by a server's loader (see
/// [`ModelCache::serve`]): the loader's value (parsed weights, a session, a
/// prompt template), which this dereferences to, with the version it came from
/// and its cache entry, held in use for as long as the value lives.
pub struct Loaded<T> {
    value: T,
    files: CachedModel,
}

impl<T> Loaded<T> {
    /// The version loaded.
    pub fn version(&self) -> &VersionRecord {
        self.files.version()
    }

    /// The version's verified files in the cache, which stay on disk while
    /// this value lives.
    pub fn files(&self) -> &CachedModel {
        &self.files
    }
}

impl<T> Deref for Loaded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> fmt::Debug for Loaded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("version", &self.version().reference())
            .finish_non_exhaustive()
    }
}

/// A model ready to answer requests: its state as of its last change, and
/// every version a request can be routed to (production, and each target of
/// the traffic split) loaded. Made by [`ModelCache::serve`]; answering reads
/// nothing and loads nothing.
pub struct Serving<T> {
    state: Arc<ModelState>,
    loaded: BTreeMap<VersionNumber, Arc<Loaded<T>>>,
}

/// Where [`Serving::route`] sent a request.
pub struct Served<T> {
    /// The split's target the key fell on, or `@production` when there is no
    /// split.
    pub target: RouteTarget,
    /// Whether a traffic split decided.
    pub from_split: bool,
    /// The version that answers, loaded.
    pub model: Arc<Loaded<T>>,
}

impl<T> fmt::Debug for Served<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("target", &self.target)
            .field("from_split", &self.from_split)
            .field("model", &self.model)
            .finish()
    }
}

impl<T> Serving<T> {
    /// The model's state these versions were loaded for.
    pub fn state(&self) -> &ModelState {
        &self.state
    }

    /// The production version, loaded; [`Error::NotFound`] when no version is
    /// in production.
    pub fn production(&self) -> Result<Arc<Loaded<T>>> {
        let production = self.state.production().ok_or_else(|| {
            Error::version_not_found(
                self.state.name(),
                RouteTarget::production().in_model(self.state.name()),
            )
        })?;
        Ok(self.loaded_version(production.number))
    }

    /// Routes `key` as [`ModelState::route`] does (through the traffic split if
    /// there is one, else to production) and returns the loaded version that
    /// answers. [`Error::NotFound`] when the target resolves to nothing.
    pub fn route(&self, key: &[u8]) -> Result<Served<T>> {
        let routed = self.state.route(key)?;
        Ok(Served {
            target: routed.target,
            from_split: routed.from_split,
            model: self.loaded_version(routed.version.number),
        })
    }

    /// Every loaded version, by number.
    pub fn loaded(&self) -> impl Iterator<Item = &Arc<Loaded<T>>> {
        self.loaded.values()
    }

    /// The loaded version `n`, which [`ModelCache::serve`] loaded because the
    /// state routes to it.
    fn loaded_version(&self, n: VersionNumber) -> Arc<Loaded<T>> {
        Arc::clone(
            self.loaded
                .get(&n)
                .expect("serve loads every version the state routes to"),
        )
    }
}

impl<T> fmt::Debug for Serving<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serving")
            .field("model", &self.state.name())
            .field("seq", &self.state.seq())
            .field("loaded", &self.loaded.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The versions `state` routes requests to: production, and each target of
/// the traffic split that resolves.
fn routed_versions(state: &ModelState) -> Vec<&VersionRecord> {
    let mut targets: Vec<&VersionRecord> = state.production().into_iter().collect();
    if let Some(split) = state.traffic_split() {
        for route in split.routes() {
            if let Ok(v) = state.resolve(route.target.selector()) {
                targets.push(v);
            }
        }
    }
    targets.sort_by_key(|v| v.number);
    targets.dedup_by_key(|v| v.number);
    targets
}

/// Loads every version `state` routes to, reusing what `previous` loaded (a
/// version's files never change, so neither does what was loaded from them).
async fn load_routed<T, F>(
    cache: &ModelCache,
    load: &Arc<F>,
    state: Arc<ModelState>,
    previous: Option<&Serving<T>>,
) -> Result<Serving<T>>
where
    T: Send + Sync + 'static,
    F: Fn(&CachedModel) -> std::result::Result<T, BoxError> + Send + Sync + 'static,
{
    let mut loaded = BTreeMap::new();
    for version in routed_versions(&state) {
        if let Some(done) = previous.and_then(|p| p.loaded.get(&version.number)) {
            loaded.insert(version.number, Arc::clone(done));
            continue;
        }
        let files = cache.get(version).await?;
        let load = Arc::clone(load);
        let (files, value) = offload(move || {
            let value = load(&files);
            (files, value)
        })
        .await?;
        let value = value.map_err(|source| Error::Load {
            version: version.reference().to_string(),
            source,
        })?;
        tracing::debug!(version = %version.reference(), "loaded a version to serve");
        loaded.insert(version.number, Arc::new(Loaded { value, files }));
    }
    Ok(Serving { state, loaded })
}

impl ModelCache {
    /// Keeps `model` ready to serve: follows its state ([`Registry::follow_model`])
    /// and keeps every version a request can be routed to — production, and each
    /// target of the traffic split — fetched, verified and loaded by `load`,
    /// which turns a version's files into what the server answers with (parsed
    /// weights, an inference session, a prompt template). `load` runs on the
    /// blocking pool, once per version: a version still routed to after a change
    /// is not loaded again.
    ///
    /// A change is swapped in only once every version it routes to is loaded,
    /// so [`Serving::route`] and [`Serving::production`] never wait and never
    /// see a version half-ready. If a version cannot be fetched or loaded
    /// ([`Error::Load`] carries the loader's error), the previous `Serving`
    /// stays current and the error is kept in [`Followed::last_error`]; the next
    /// change tries again. A version no longer routed to is dropped from the
    /// next `Serving` (and its cache entry released) once no request holds it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("ops")?);
    /// me.create_model("greeter", CreateModel::new()).await?;
    /// let v1 = me.register("greeter", ArtifactSource::bytes("prompt.txt", "Hello, {name}")?, NewVersion::new()).await?;
    /// me.promote_to(&v1, Stage::Production, "first").await?;
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let cache = ModelCache::open(tmp.path(), registry.clone(), CacheOptions::new()).await?;
    ///
    /// // The server: each version's prompt, read once.
    /// let mut prompts = cache
    ///     .serve("greeter", WatchOptions::new().interval(Duration::from_millis(10)), |files| {
    ///         Ok(std::fs::read_to_string(files.path().join("prompt.txt"))?)
    ///     })
    ///     .await?;
    /// let prompt = prompts.current().production()?;
    /// assert_eq!((prompt.version().number.get(), prompt.as_str()), (1, "Hello, {name}"));
    ///
    /// // A release elsewhere; the server swaps once the new prompt is loaded.
    /// let v2 = me.register("greeter", ArtifactSource::bytes("prompt.txt", "Hi {name}!")?, NewVersion::new()).await?;
    /// me.promote_to(&v2, Stage::Production, "shorter").await?;
    /// while prompts.current().production()?.version().number != v2.number {
    ///     prompts.changed().await?;
    /// }
    /// let served = prompts.current().route(b"user-1")?;
    /// assert_eq!(served.model.as_str(), "Hi {name}!");
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn serve<T, F>(
        &self,
        model: impl IntoModelName,
        options: WatchOptions,
        load: F,
    ) -> Result<Followed<Serving<T>>>
    where
        T: Send + Sync + 'static,
        F: Fn(&CachedModel) -> std::result::Result<T, BoxError> + Send + Sync + 'static,
    {
        let model = model.into_model_name()?;
        let mut states = self.registry().watch_model(&model, options)?;
        let state = match states.next().await {
            Some(state) => Arc::new(state?),
            None => return Err(Error::model_not_found(&model)),
        };
        let load = Arc::new(load);
        let first = Arc::new(load_routed(self, &load, state, None).await?);
        let cache = self.clone();
        let rest = stream::unfold(
            (states, Arc::clone(&first)),
            move |(mut states, previous)| {
                let (cache, load) = (cache.clone(), Arc::clone(&load));
                async move {
                    let next = match states.next().await? {
                        Ok(state) => load_routed(&cache, &load, Arc::new(state), Some(&previous))
                            .await
                            .map(Arc::new),
                        Err(e) => Err(e),
                    };
                    // What a failed change could not load is tried again on the
                    // next one, against the last state that loaded.
                    let kept = next.as_ref().map_or(previous, Arc::clone);
                    Some((next, (states, kept)))
                }
            },
        )
        .boxed();
        Ok(Followed::spawn(first, rest, model.to_string()))
    }
}
