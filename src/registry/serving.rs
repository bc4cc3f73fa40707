//! Serving commands and queries: watching a reference move, traffic splits and
//! routing requests between versions.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::{IntoModelName, IntoVersionRef, Registry};
use crate::domain::{
    Actor, Event, EventKind, ModelState, Routed, TrafficSplit, VersionNumber, VersionRecord,
    VersionRef,
};
use crate::error::{Error, Result};

/// How [`Registry::watch`] polls.
///
/// ```
/// use std::time::Duration;
/// use modelreg::WatchOptions;
/// let opts = WatchOptions::new().interval(Duration::from_millis(250));
/// assert_eq!(opts.poll_interval(), Duration::from_millis(250));
/// assert_eq!(WatchOptions::new().poll_interval(), Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct WatchOptions {
    interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            interval: Duration::from_secs(1),
        }
    }
}

impl WatchOptions {
    /// Poll once a second.
    pub fn new() -> Self {
        Self::default()
    }

    /// The time between two polls (at least 1 ms; shorter values are raised to it).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The time between two polls.
    pub fn poll_interval(&self) -> Duration {
        self.interval
    }
}

/// What a watch has told its consumer so far.
struct Watching {
    registry: Registry,
    reference: VersionRef,
    interval: Duration,
    first: bool,
    /// The version last yielded; `None` before the first and after the reference
    /// stopped resolving.
    current: Option<VersionNumber>,
    /// An error was yielded and no success has followed it.
    reported: bool,
}

impl Registry {
    /// Watches a reference: a stream that yields the version it resolves to now, and
    /// again each time that changes — an alias moved, a promotion, a rollback —
    /// whichever process or machine made the change.
    ///
    /// The stream polls the model's log every [`WatchOptions::interval`]; a poll that
    /// finds nothing new costs one small read of the log's tail (one failed probe for
    /// the next record), and the stream does no work while nobody polls it. It yields
    /// only when the resolved version *number* changes. Each poll's read runs as a
    /// task of its own, so a consumer that stops polling half-way (a `select!`, a
    /// timeout) never leaves this registry's lock on the model held. It needs a
    /// tokio runtime (any flavour) to be polled on.
    ///
    /// Errors are items, not the end: when the reference stops resolving (say the
    /// version in production was archived with no successor) the stream yields
    /// [`Error::NotFound`] once, and the next version it resolves to is yielded
    /// even if it is the same as before. Other errors (a store that cannot be
    /// reached) are yielded once per run of failures and polling goes on; a
    /// version is yielded after them only if it changed. Drop the stream to stop.
    ///
    /// Only a malformed reference fails at once.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// for w in ["v1", "v2"] {
    ///     me.register("fraud", ArtifactSource::bytes("m.bin", w)?, NewVersion::new()).await?;
    /// }
    /// me.set_alias("fraud/1", "champion", SetAlias::new()).await?;
    ///
    /// let mut champion = registry
    ///     .watch("fraud@champion", WatchOptions::new().interval(Duration::from_millis(5)))?;
    /// assert_eq!(champion.next().await.unwrap()?.number.get(), 1);
    /// me.set_alias("fraud/2", "champion", SetAlias::new()).await?;
    /// assert_eq!(champion.next().await.unwrap()?.number.get(), 2);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub fn watch(
        &self,
        reference: impl IntoVersionRef,
        options: WatchOptions,
    ) -> Result<BoxStream<'static, Result<VersionRecord>>> {
        let watching = Watching {
            registry: self.clone(),
            reference: reference.into_version_ref()?,
            interval: options.interval,
            first: true,
            current: None,
            reported: false,
        };
        Ok(futures::stream::unfold(watching, |mut w| async move {
            loop {
                if !w.first {
                    tokio::time::sleep(w.interval).await;
                }
                w.first = false;
                // The read runs as a task of its own: it takes the model's lock in
                // this registry, and a consumer that stops polling the stream
                // half-way (a `select!`, a timeout) must not leave the lock held.
                let (registry, reference) = (w.registry.clone(), w.reference.clone());
                let polled = tokio::spawn(async move { registry.resolve(&reference).await })
                    .await
                    .unwrap_or_else(|e| Err(Error::io("<watch poll>", std::io::Error::other(e))));
                match polled {
                    Ok(v) => {
                        w.reported = false;
                        if w.current != Some(v.number) {
                            w.current = Some(v.number);
                            return Some((Ok(v), w));
                        }
                    }
                    Err(e @ Error::NotFound { .. }) => {
                        let had = w.current.take();
                        if had.is_some() || !w.reported {
                            w.reported = true;
                            return Some((Err(e), w));
                        }
                    }
                    Err(e) => {
                        if !w.reported {
                            w.reported = true;
                            return Some((Err(e), w));
                        }
                    }
                }
            }
        })
        .boxed())
    }

    /// The implementation of [`Session::set_traffic_split`](super::Session::set_traffic_split).
    pub(crate) async fn set_traffic_split(
        &self,
        model: impl IntoModelName,
        split: TrafficSplit,
        actor: &Actor,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.commit_split(model, Some(split), actor, reason.into())
            .await
    }

    /// The implementation of [`Session::clear_traffic_split`](super::Session::clear_traffic_split).
    pub(crate) async fn clear_traffic_split(
        &self,
        model: impl IntoModelName,
        actor: &Actor,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.commit_split(model, None, actor, reason.into()).await
    }

    async fn commit_split(
        &self,
        model: impl IntoModelName,
        split: Option<TrafficSplit>,
        actor: &Actor,
        reason: String,
    ) -> Result<Event> {
        let model = model.into_model_name()?;
        let (event, _) = self
            .commit(&model, actor, |_, _| {
                Ok(EventKind::TrafficSplitSet {
                    split: split.clone(),
                    reason: reason.clone(),
                })
            })
            .await?;
        Ok(event)
    }

    /// Watches a whole model: a stream that yields its state now, and again after
    /// every change to it — a registration, a move, an alias, a traffic split —
    /// by any process. A router holds the latest state and routes with
    /// [`ModelState::route`](crate::ModelState::route), which reads nothing; a
    /// frontend refreshes its page. Polls like [`watch`](Self::watch) (one small
    /// read of the log's tail per interval when nothing changed; the state is
    /// copied only when it changed), and like it yields errors as items and goes
    /// on polling. Needs a tokio runtime.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// for w in ["v1", "v2"] {
    ///     let v = me.register("fraud", ArtifactSource::bytes("m.bin", w)?, NewVersion::new()).await?;
    ///     me.set_alias(&v, w, SetAlias::new()).await?;
    /// }
    /// let mut fraud = registry.watch_model("fraud", WatchOptions::new().interval(Duration::from_millis(5)))?;
    /// let state = fraud.next().await.unwrap()?;
    /// assert!(state.traffic_split().is_none());
    ///
    /// me.set_traffic_split("fraud", TrafficSplit::new([("@v1", 50), ("@v2", 50)])?, "a/b").await?;
    /// let state = fraud.next().await.unwrap()?;
    /// assert!(state.route(b"user-42")?.from_split);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub fn watch_model(
        &self,
        model: impl IntoModelName,
        options: WatchOptions,
    ) -> Result<BoxStream<'static, Result<ModelState>>> {
        let model = model.into_model_name()?;
        let (registry, interval) = (self.clone(), options.interval);
        // (last seq yielded, an error was yielded and no success has followed)
        let start = (None::<u64>, false, true);
        Ok(
            futures::stream::unfold(start, move |(mut seen, mut reported, mut first)| {
                let (registry, model) = (registry.clone(), model.clone());
                async move {
                    loop {
                        if !first {
                            tokio::time::sleep(interval).await;
                        }
                        first = false;
                        // A task of its own, as in `watch`: an abandoned poll holds nothing.
                        let (r, m) = (registry.clone(), model.clone());
                        let polled = tokio::spawn(async move {
                            r.read(&m, |s| (Some(s.seq()) != seen).then(|| s.clone()))
                                .await
                        })
                        .await
                        .unwrap_or_else(|e| {
                            Err(Error::io("<watch poll>", std::io::Error::other(e)))
                        });
                        match polled {
                            Ok(Some(state)) => {
                                seen = Some(state.seq());
                                return Some((Ok(state), (seen, false, first)));
                            }
                            Ok(None) => reported = false,
                            Err(e) => {
                                if !reported {
                                    return Some((Err(e), (seen, true, first)));
                                }
                            }
                        }
                    }
                }
            })
            .boxed(),
        )
    }

    /// The traffic split of `model`, if one is set.
    pub async fn traffic_split(&self, model: impl IntoModelName) -> Result<Option<TrafficSplit>> {
        let model = model.into_model_name()?;
        self.read(&model, |s| s.traffic_split().cloned()).await
    }

    /// Routes a request key (a user or session id) to a version of `model`.
    ///
    /// With a traffic split, the route is chosen by a hash of the model, the split's
    /// salt and `key` (see [`TrafficSplit::bucket`]), so a key sticks to one route
    /// for as long as the split is unchanged, on every machine; the route's target is
    /// then resolved (a route to `@champion` follows the alias). Without a split,
    /// every key goes to `@production` and [`Routed::from_split`] is `false`.
    ///
    /// The split is part of the model's cached state, so routing reads it from
    /// memory; what is asked of the store is only whether that state is still
    /// current, as for every query: one probe per call by default, nothing
    /// within the window of a registry built with
    /// [`max_staleness`](super::RegistryBuilder::max_staleness) (then a warm
    /// call is a lookup and one hash of the key, well under a microsecond). A
    /// server can also hold the latest [`ModelState`](crate::ModelState) from
    /// [`watch_model`](Self::watch_model) and call
    /// [`ModelState::route`](crate::ModelState::route), the same function.
    ///
    /// [`Error::NotFound`] when the chosen target does not resolve.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// for w in ["v1", "v2"] {
    ///     me.register("fraud", ArtifactSource::bytes("m.bin", w)?, NewVersion::new()).await?;
    /// }
    /// me.set_alias("fraud/1", "champion", SetAlias::new()).await?;
    /// me.set_alias("fraud/2", "challenger", SetAlias::new()).await?;
    /// let split = TrafficSplit::new([("@champion", 90), ("@challenger", 10)])?;
    /// me.set_traffic_split("fraud", split, "canary").await?;
    ///
    /// let first = registry.route("fraud", "user-42").await?;
    /// assert!(first.from_split);
    /// assert_eq!(registry.route("fraud", "user-42").await?.version.number, first.version.number);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn route(&self, model: impl IntoModelName, key: impl AsRef<[u8]>) -> Result<Routed> {
        let model = model.into_model_name()?;
        self.read(&model, |s| s.route(key.as_ref())).await?
    }
}
