//! A blocking facade over the async API, for programs that are not async: training
//! scripts, notebooks' kernels, command-line tools.
//!
//! [`Registry`] here owns a small tokio runtime and wraps a [`crate::Registry`];
//! each method runs the async method of the same name to completion on that
//! runtime (`block_on`). There is no second implementation: behaviour, errors and
//! stores are exactly those of the async API. [`ModelCache`] wraps
//! [`crate::ModelCache`] the same way, and [`Registry::watch`] returns a blocking
//! iterator.
//!
//! **Do not call it from within an async runtime** (inside `#[tokio::main]`, a
//! `tokio::spawn`ed task, …): blocking there would stall the runtime's worker. Such a
//! call returns [`Error::InvalidInput`] instead of blocking; use
//! [`crate::Registry`] there, or [`Registry::as_async`].
//!
//! ```
//! use modelreg::blocking::Registry;
//! use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion};
//!
//! fn main() -> modelreg::Result<()> {
//!     # let tmp = tempfile::tempdir().unwrap();
//!     # let dir = tmp.path().join("registry");
//!     let registry = Registry::open_local(dir)?;
//!     let me = registry.acting_as(Actor::new("trainer")?);
//!     me.ensure_model("churn", CreateModel::new())?;
//!     let v = me.register(
//!         "churn",
//!         ArtifactSource::bytes("model.bin", "weights")?,
//!         NewVersion::new().metric("auc", 0.9),
//!     )?;
//!     assert_eq!(registry.resolve("churn@latest")?.number, v.number);
//!     Ok(())
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::cache::{CacheEntry, CacheOptions, CachedModel, EvictReport};
use crate::domain::{
    Actor, Event, GateSpec, GateVerdict, Manifest, MetricName, MetricSpec, ModelName, ModelState,
    Routed, Stage, TagKey, Tags, TrafficSplit, TransitionCheck, VersionRecord,
};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::registry::{
    ArtifactSource, CreateModel, FetchOptions, FetchReport, HistoryFilter, IntoMetrics,
    IntoModelName, IntoVersionRef, NewVersion, Registered, SetAlias, VerifyReport, VersionFilter,
    WatchOptions,
};
use crate::store::{ArtifactStore, MetadataStore};

/// The runtime the facade blocks on, shut down without waiting when the last
/// handle goes (so dropping a facade never blocks or panics, wherever it happens).
struct Runtime(Option<tokio::runtime::Runtime>);

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tokio runtime")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Runtime {
    fn new() -> Result<Arc<Runtime>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("modelreg-blocking")
            .enable_all()
            .build()
            .map_err(|e| Error::io("<tokio runtime>", e))?;
        Ok(Arc::new(Runtime(Some(rt))))
    }

    /// Runs `f` to completion, refusing to block inside an async runtime.
    fn block_on<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::invalid_input(
                "blocking call",
                "modelreg::blocking was called from within an async runtime; \
                 use the async modelreg::Registry there",
            ));
        }
        match &self.0 {
            Some(rt) => rt.block_on(f),
            None => Err(Error::invalid_input("blocking call", "runtime shut down")),
        }
    }
}

/// The blocking twin of [`crate::Registry`]: the same methods, without `async`.
/// Cheap to clone; clones share the runtime and the registry's caches.
#[derive(Clone)]
pub struct Registry {
    inner: crate::Registry,
    rt: Arc<Runtime>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Registry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Wraps an async registry, with a runtime of its own.
    pub fn from_async(inner: crate::Registry) -> Result<Registry> {
        Ok(Registry {
            inner,
            rt: Runtime::new()?,
        })
    }

    /// The async registry inside (for code that is async after all).
    pub fn as_async(&self) -> &crate::Registry {
        &self.inner
    }

    /// See [`crate::Registry::open_local`].
    pub fn open_local(dir: impl AsRef<Path>) -> Result<Registry> {
        let rt = Runtime::new()?;
        let inner = rt.block_on(crate::Registry::open_local(dir))?;
        Ok(Registry { inner, rt })
    }

    /// See [`crate::Registry::open_local_with`].
    pub fn open_local_with(
        dir: impl AsRef<Path>,
        options: crate::store::LocalArtifactOptions,
    ) -> Result<Registry> {
        let rt = Runtime::new()?;
        let inner = rt.block_on(crate::Registry::open_local_with(dir, options))?;
        Ok(Registry { inner, rt })
    }

    /// See [`crate::Registry::open_url`].
    pub fn open_url(url: &str) -> Result<Registry> {
        let rt = Runtime::new()?;
        let inner = rt.block_on(crate::Registry::open_url(url))?;
        Ok(Registry { inner, rt })
    }

    /// See [`crate::Registry::open_url_with`].
    pub fn open_url_with(
        url: &str,
        options: crate::store::object::ObjectArtifactOptions,
    ) -> Result<Registry> {
        let rt = Runtime::new()?;
        let inner = rt.block_on(crate::Registry::open_url_with(url, options))?;
        Ok(Registry { inner, rt })
    }

    /// See [`crate::Registry::in_memory`].
    pub fn in_memory() -> Result<Registry> {
        Registry::from_async(crate::Registry::in_memory())
    }

    /// See [`crate::Registry::metadata_store`].
    pub fn metadata_store(&self) -> &Arc<dyn MetadataStore> {
        self.inner.metadata_store()
    }

    /// See [`crate::Registry::artifact_store`].
    pub fn artifact_store(&self) -> &Arc<dyn ArtifactStore> {
        self.inner.artifact_store()
    }

    /// See [`crate::Registry::clear_cache`].
    pub fn clear_cache(&self) {
        self.inner.clear_cache()
    }

    // ----- models and versions ------------------------------------------------------

    /// See [`crate::Registry::list_models`].
    pub fn list_models(&self) -> Result<Vec<ModelName>> {
        self.rt.block_on(self.inner.list_models())
    }

    /// See [`crate::Registry::model`].
    pub fn model(&self, model: impl IntoModelName) -> Result<ModelState> {
        self.rt.block_on(self.inner.model(model))
    }

    /// See [`crate::Registry::resolve`].
    pub fn resolve(&self, reference: impl IntoVersionRef) -> Result<VersionRecord> {
        self.rt.block_on(self.inner.resolve(reference))
    }

    /// See [`crate::Registry::list_versions`].
    pub fn list_versions(
        &self,
        model: impl IntoModelName,
        filter: &VersionFilter,
    ) -> Result<Vec<Arc<VersionRecord>>> {
        self.rt.block_on(self.inner.list_versions(model, filter))
    }

    /// See [`crate::Registry::events`].
    pub fn events(&self, model: impl IntoModelName) -> Result<Vec<Event>> {
        self.rt.block_on(self.inner.events(model))
    }

    /// See [`crate::Registry::events_after`].
    pub fn events_after(
        &self,
        model: impl IntoModelName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.rt
            .block_on(self.inner.events_after(model, after, limit))
    }

    /// See [`crate::Registry::manifest`].
    pub fn manifest(&self, reference: impl IntoVersionRef) -> Result<Manifest> {
        self.rt.block_on(self.inner.manifest(reference))
    }

    /// See [`crate::Registry::fetch`].
    pub fn fetch(
        &self,
        reference: impl IntoVersionRef,
        dest: impl AsRef<Path>,
        options: FetchOptions,
    ) -> Result<FetchReport> {
        self.rt.block_on(self.inner.fetch(reference, dest, options))
    }

    /// See [`crate::Registry::signatures`].
    pub fn signatures(&self, version: impl IntoVersionRef) -> Result<Vec<crate::VersionSignature>> {
        self.rt.block_on(self.inner.signatures(version))
    }

    /// See [`crate::Registry::signature_bundle`].
    pub fn signature_bundle(
        &self,
        version: impl IntoVersionRef,
        bundle: crate::Digest,
    ) -> Result<bytes::Bytes> {
        self.rt
            .block_on(self.inner.signature_bundle(version, bundle))
    }

    /// See [`crate::Registry::signature_bundles`].
    pub fn signature_bundles(
        &self,
        version: impl IntoVersionRef,
    ) -> Result<Vec<crate::SignatureBundle>> {
        self.rt.block_on(self.inner.signature_bundles(version))
    }

    /// See [`crate::Registry::verify_signatures`].
    pub fn verify_signatures(
        &self,
        version: impl IntoVersionRef,
        policy: &crate::signing::TrustPolicy,
    ) -> Result<crate::SignatureReport> {
        self.rt
            .block_on(self.inner.verify_signatures(version, policy))
    }

    /// See [`crate::Registry::verify`].
    pub fn verify(&self, reference: impl IntoVersionRef) -> Result<VerifyReport> {
        self.rt.block_on(self.inner.verify(reference))
    }

    /// See [`crate::Registry::push_oci`].
    #[cfg(feature = "oci")]
    pub fn push_oci(
        &self,
        version: impl IntoVersionRef,
        reference: &str,
        options: &crate::oci::OciOptions,
        referrers: Vec<crate::oci::Referrer>,
    ) -> Result<crate::oci::PushReport> {
        self.rt
            .block_on(self.inner.push_oci(version, reference, options, referrers))
    }

    /// See [`crate::Registry::attach_oci_referrer`].
    #[cfg(feature = "oci")]
    pub fn attach_oci_referrer(
        &self,
        subject: &str,
        referrer: crate::oci::Referrer,
        options: &crate::oci::OciOptions,
    ) -> Result<crate::oci::AttachReport> {
        self.rt
            .block_on(self.inner.attach_oci_referrer(subject, referrer, options))
    }

    /// See [`crate::Registry::verify_with_progress`]. The callback runs on the
    /// facade's runtime threads, not necessarily the caller's.
    pub fn verify_with_progress(
        &self,
        reference: impl IntoVersionRef,
        progress: Progress,
    ) -> Result<VerifyReport> {
        self.rt
            .block_on(self.inner.verify_with_progress(reference, progress))
    }

    /// See [`crate::Registry::check`].
    pub fn check(&self) -> Result<crate::CheckReport> {
        self.rt.block_on(self.inner.check())
    }

    /// See [`crate::Registry::check_with_progress`]. The callback runs on the
    /// facade's runtime threads, not necessarily the caller's.
    pub fn check_with_progress(&self, progress: Progress) -> Result<crate::CheckReport> {
        self.rt.block_on(self.inner.check_with_progress(progress))
    }

    /// See [`crate::Registry::gc`].
    pub fn gc(&self, options: crate::GcOptions) -> Result<crate::GcReport> {
        self.rt.block_on(self.inner.gc(options))
    }

    /// [`Registry::gc_with_progress`](crate::Registry::gc_with_progress): `gc`,
    /// reporting its mark phase to `progress`.
    pub fn gc_with_progress(
        &self,
        options: crate::GcOptions,
        progress: crate::Progress,
    ) -> Result<crate::GcReport> {
        self.rt
            .block_on(self.inner.gc_with_progress(options, progress))
    }

    // ----- lineage and comparison --------------------------------------------------

    /// See [`crate::Registry::lineage`].
    pub fn lineage(&self) -> Result<std::sync::Arc<crate::LineageGraph>> {
        self.rt.block_on(self.inner.lineage())
    }

    /// See [`crate::Registry::upstream`].
    pub fn upstream(
        &self,
        reference: impl IntoVersionRef,
        depth: Option<usize>,
    ) -> Result<crate::LineageSubgraph> {
        self.rt.block_on(self.inner.upstream(reference, depth))
    }

    /// See [`crate::Registry::downstream`].
    pub fn downstream(
        &self,
        from: impl crate::registry::IntoLineageStart,
        depth: Option<usize>,
    ) -> Result<crate::LineageSubgraph> {
        self.rt.block_on(self.inner.downstream(from, depth))
    }

    /// See [`crate::Registry::lineage_path`].
    pub fn lineage_path(
        &self,
        a: impl IntoVersionRef,
        b: impl IntoVersionRef,
    ) -> Result<Option<crate::LineagePath>> {
        self.rt.block_on(self.inner.lineage_path(a, b))
    }

    /// See [`crate::Registry::compare`].
    pub fn compare(
        &self,
        a: impl IntoVersionRef,
        b: impl IntoVersionRef,
    ) -> Result<crate::VersionDiff> {
        self.rt.block_on(self.inner.compare(a, b))
    }

    /// See [`crate::Registry::metric_history`].
    pub fn metric_history(
        &self,
        model: impl IntoModelName,
        metric: &str,
        filter: &VersionFilter,
    ) -> Result<Vec<crate::MetricPoint>> {
        self.rt
            .block_on(self.inner.metric_history(model, metric, filter))
    }

    // ----- lifecycle ----------------------------------------------------------------

    /// See [`crate::Registry::list_versions_page`].
    pub fn list_versions_page(
        &self,
        model: impl IntoModelName,
        filter: &VersionFilter,
        page: crate::VersionPage,
    ) -> Result<crate::Page<Arc<VersionRecord>>> {
        self.rt
            .block_on(self.inner.list_versions_page(model, filter, page))
    }

    /// See [`crate::Registry::history_page`].
    pub fn history_page(
        &self,
        model: impl IntoModelName,
        filter: &HistoryFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<crate::Page<Event, u64>> {
        self.rt
            .block_on(self.inner.history_page(model, filter, before, limit))
    }

    /// See [`crate::Registry::model_summaries`].
    pub fn model_summaries(&self) -> Result<Vec<crate::ModelSummary>> {
        self.rt.block_on(self.inner.model_summaries())
    }

    /// See [`crate::Registry::model_summary`].
    pub fn model_summary(&self, model: impl IntoModelName) -> Result<crate::ModelSummary> {
        self.rt.block_on(self.inner.model_summary(model))
    }

    /// See [`crate::Registry::watch_model`]: a blocking iterator of the model's
    /// states, the current one first.
    pub fn watch_model<M: IntoModelName>(
        &self,
        model: M,
        options: WatchOptions,
    ) -> Result<impl Iterator<Item = Result<ModelState>> + use<M>> {
        let mut stream = self.inner.watch_model(model, options)?;
        let rt = Arc::clone(&self.rt);
        Ok(std::iter::from_fn(move || {
            let stream = &mut stream;
            match rt.block_on(async { Ok(stream.next().await) }) {
                Ok(item) => item,
                Err(e) => Some(Err(e)),
            }
        }))
    }

    /// See [`crate::Registry::history`].
    pub fn history(&self, model: impl IntoModelName, filter: &HistoryFilter) -> Result<Vec<Event>> {
        self.rt.block_on(self.inner.history(model, filter))
    }

    /// See [`crate::Registry::model_as_of`].
    pub fn model_as_of(&self, model: impl IntoModelName, at: DateTime<Utc>) -> Result<ModelState> {
        self.rt.block_on(self.inner.model_as_of(model, at))
    }

    /// See [`crate::Registry::resolve_as_of`].
    pub fn resolve_as_of(
        &self,
        reference: impl IntoVersionRef,
        at: DateTime<Utc>,
    ) -> Result<VersionRecord> {
        self.rt.block_on(self.inner.resolve_as_of(reference, at))
    }

    // ----- serving ------------------------------------------------------------------

    /// See [`crate::Registry::watch`]: a blocking iterator whose `next` waits until
    /// the reference resolves to another version (or the first time, returns the
    /// current one). It never ends by itself; drop it to stop.
    pub fn watch(&self, reference: impl IntoVersionRef, options: WatchOptions) -> Result<Watch> {
        Ok(Watch {
            stream: self.inner.watch(reference, options)?,
            rt: self.rt.clone(),
        })
    }

    /// See [`crate::Registry::traffic_split`].
    pub fn traffic_split(&self, model: impl IntoModelName) -> Result<Option<TrafficSplit>> {
        self.rt.block_on(self.inner.traffic_split(model))
    }

    /// See [`crate::Registry::route`].
    pub fn route(&self, model: impl IntoModelName, key: impl AsRef<[u8]>) -> Result<Routed> {
        self.rt.block_on(self.inner.route(model, key))
    }
}

/// The blocking twin of [`crate::Session`]: the registry acting as one actor,
/// on which every command that changes the registry is called. It dereferences
/// to the blocking [`Registry`] for queries.
#[derive(Clone)]
pub struct Session {
    inner: crate::Session,
    registry: Registry,
    rt: Arc<Runtime>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Session")
            .field("actor", self.inner.actor())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Session {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl Registry {
    /// This registry acting as `actor`: see [`crate::Registry::acting_as`].
    pub fn acting_as(&self, actor: Actor) -> Session {
        Session {
            inner: self.inner.acting_as(actor),
            registry: self.clone(),
            rt: Arc::clone(&self.rt),
        }
    }
}

impl Session {
    /// Who this session acts as.
    pub fn actor(&self) -> &Actor {
        self.inner.actor()
    }

    /// The async session inside.
    pub fn as_async(&self) -> &crate::Session {
        &self.inner
    }

    /// See [`crate::Session::ensure_model`].
    pub fn ensure_model(
        &self,
        model: impl IntoModelName,
        options: CreateModel,
    ) -> Result<ModelState> {
        self.rt.block_on(self.inner.ensure_model(model, options))
    }

    /// See [`crate::Session::promote_to`].
    pub fn promote_to(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
        reason: impl Into<String>,
    ) -> Result<Vec<Event>> {
        self.rt.block_on(self.inner.promote_to(version, to, reason))
    }

    /// See [`crate::Session::create_model`].
    pub fn create_model(
        &self,
        model: impl IntoModelName,
        options: CreateModel,
    ) -> Result<ModelState> {
        self.rt.block_on(self.inner.create_model(model, options))
    }

    /// See [`crate::Session::register`].
    pub fn register(
        &self,
        model: impl IntoModelName,
        source: ArtifactSource,
        version: NewVersion,
    ) -> Result<Registered> {
        self.rt
            .block_on(self.inner.register(model, source, version))
    }

    /// See [`crate::Session::pull_oci`].
    #[cfg(feature = "oci")]
    pub fn pull_oci(
        &self,
        reference: &str,
        model: impl IntoModelName,
        options: &crate::oci::OciOptions,
        version: NewVersion,
    ) -> Result<crate::oci::PullReport> {
        self.rt
            .block_on(self.inner.pull_oci(reference, model, options, version))
    }

    /// See [`crate::Session::add_metrics`].
    pub fn add_metrics(
        &self,
        version: impl IntoVersionRef,
        metrics: impl IntoMetrics,
    ) -> Result<VersionRecord> {
        self.rt.block_on(self.inner.add_metrics(version, metrics))
    }

    /// See [`crate::Session::set_version_tags`].
    pub fn set_version_tags(
        &self,
        version: impl IntoVersionRef,
        set: Tags,
        remove: Vec<TagKey>,
    ) -> Result<VersionRecord> {
        self.rt
            .block_on(self.inner.set_version_tags(version, set, remove))
    }

    /// See [`crate::Session::set_version_description`].
    pub fn set_version_description(
        &self,
        version: impl IntoVersionRef,
        description: impl Into<String>,
    ) -> Result<VersionRecord> {
        self.rt
            .block_on(self.inner.set_version_description(version, description))
    }

    /// See [`crate::Session::override_immutable`].
    pub fn override_immutable(&self, reason: impl Into<String>) -> Override<'_> {
        Override {
            session: self,
            reason: reason.into(),
        }
    }

    /// See [`crate::Session::scan_formats`].
    pub fn scan_formats(&self, version: impl IntoVersionRef) -> Result<crate::FormatScan> {
        self.rt.block_on(self.inner.scan_formats(version))
    }

    /// See [`crate::Session::purge_version`].
    pub fn purge_version(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
    ) -> Result<VersionRecord> {
        self.rt.block_on(self.inner.purge_version(version, reason))
    }

    /// See [`crate::Session::apply_retention`].
    pub fn apply_retention(
        &self,
        model: impl IntoModelName,
        policy: &crate::RetentionPolicy,
        dry_run: bool,
    ) -> Result<crate::RetentionReport> {
        self.rt
            .block_on(self.inner.apply_retention(model, policy, dry_run))
    }

    /// See [`crate::Session::sign_version`].
    pub fn sign_version(
        &self,
        version: impl IntoVersionRef,
        key: &crate::signing::SigningKey,
        reason: impl Into<String>,
    ) -> Result<crate::VersionSignature> {
        self.rt
            .block_on(self.inner.sign_version(version, key, reason))
    }

    /// See [`crate::Session::add_signature`].
    pub fn add_signature(
        &self,
        version: impl IntoVersionRef,
        bundle: impl Into<bytes::Bytes>,
        key: &crate::signing::PublicKey,
        reason: impl Into<String>,
    ) -> Result<crate::VersionSignature> {
        self.rt
            .block_on(self.inner.add_signature(version, bundle, key, reason))
    }

    /// See [`crate::Session::deprecate`].
    pub fn deprecate(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
    ) -> Result<VersionRecord> {
        self.rt.block_on(self.inner.deprecate(version, reason))
    }

    /// See [`crate::Session::set_model_tags`].
    pub fn set_model_tags(
        &self,
        model: impl IntoModelName,
        set: Tags,
        remove: Vec<TagKey>,
    ) -> Result<ModelState> {
        self.rt
            .block_on(self.inner.set_model_tags(model, set, remove))
    }

    /// See [`crate::Session::set_metric_specs`].
    pub fn set_metric_specs(
        &self,
        model: impl IntoModelName,
        specs: BTreeMap<MetricName, MetricSpec>,
    ) -> Result<ModelState> {
        self.rt.block_on(self.inner.set_metric_specs(model, specs))
    }

    /// See [`crate::Session::transition`].
    pub fn transition(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.rt.block_on(self.inner.transition(version, to, reason))
    }

    /// See [`crate::Session::check_transition`].
    pub fn check_transition(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
    ) -> Result<TransitionCheck> {
        self.rt.block_on(self.inner.check_transition(version, to))
    }

    /// See [`crate::Session::check_gates`].
    pub fn check_gates(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
    ) -> Result<Vec<GateVerdict>> {
        self.rt.block_on(self.inner.check_gates(version, stage))
    }

    /// See [`crate::Session::promote`].
    pub fn promote(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.rt.block_on(self.inner.promote(version, reason))
    }

    /// See [`crate::Session::approve`].
    pub fn approve(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        comment: impl Into<String>,
    ) -> Result<Event> {
        self.rt
            .block_on(self.inner.approve(version, stage, comment))
    }

    /// See [`crate::Session::reject`].
    pub fn reject(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        comment: impl Into<String>,
    ) -> Result<Event> {
        self.rt.block_on(self.inner.reject(version, stage, comment))
    }

    /// See [`crate::Session::rollback`].
    pub fn rollback(&self, model: impl IntoModelName, reason: impl Into<String>) -> Result<Event> {
        self.rt.block_on(self.inner.rollback(model, reason))
    }

    /// See [`crate::Session::set_alias`].
    pub fn set_alias(
        &self,
        version: impl IntoVersionRef,
        alias: &str,
        options: SetAlias,
    ) -> Result<Event> {
        self.rt
            .block_on(self.inner.set_alias(version, alias, options))
    }

    /// See [`crate::Session::remove_alias`].
    pub fn remove_alias(
        &self,
        model: impl IntoModelName,
        alias: &str,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.rt
            .block_on(self.inner.remove_alias(model, alias, reason))
    }

    /// See [`crate::Session::set_gates`].
    pub fn set_gates(
        &self,
        model: impl IntoModelName,
        stage: Stage,
        gates: Vec<GateSpec>,
    ) -> Result<Event> {
        self.rt.block_on(self.inner.set_gates(model, stage, gates))
    }

    /// See [`crate::Session::set_traffic_split`].
    pub fn set_traffic_split(
        &self,
        model: impl IntoModelName,
        split: TrafficSplit,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.rt
            .block_on(self.inner.set_traffic_split(model, split, reason))
    }

    /// See [`crate::Session::clear_traffic_split`].
    pub fn clear_traffic_split(
        &self,
        model: impl IntoModelName,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.rt
            .block_on(self.inner.clear_traffic_split(model, reason))
    }
}

/// The blocking iterator of [`Registry::watch`].
pub struct Watch {
    stream: BoxStream<'static, Result<VersionRecord>>,
    rt: Arc<Runtime>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Watch").finish_non_exhaustive()
    }
}

impl Iterator for Watch {
    type Item = Result<VersionRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = &mut self.stream;
        match self.rt.block_on(async { Ok(stream.next().await) }) {
            Ok(item) => item,
            Err(e) => Some(Err(e)),
        }
    }
}

/// The blocking twin of [`crate::ModelCache`].
#[derive(Clone, Debug)]
pub struct ModelCache {
    inner: crate::ModelCache,
    rt: Arc<Runtime>,
}

impl ModelCache {
    /// See [`crate::ModelCache::open`]; downloads through `registry`, on its runtime.
    pub fn open(
        dir: impl AsRef<Path>,
        registry: &Registry,
        options: CacheOptions,
    ) -> Result<ModelCache> {
        let inner = registry.rt.block_on(crate::ModelCache::open(
            dir,
            registry.inner.clone(),
            options,
        ))?;
        Ok(ModelCache {
            inner,
            rt: registry.rt.clone(),
        })
    }

    /// The async cache inside.
    pub fn as_async(&self) -> &crate::ModelCache {
        &self.inner
    }

    /// See [`crate::ModelCache::get`].
    pub fn get(&self, reference: impl IntoVersionRef) -> Result<CachedModel> {
        self.rt.block_on(self.inner.get(reference))
    }

    /// See [`crate::ModelCache::evict`].
    pub fn evict(&self) -> Result<EvictReport> {
        self.rt.block_on(self.inner.evict())
    }

    /// See [`crate::ModelCache::entries`].
    pub fn entries(&self) -> Result<Vec<CacheEntry>> {
        self.rt.block_on(self.inner.entries())
    }

    /// See [`crate::ModelCache::usage`].
    pub fn usage(&self) -> Result<u64> {
        self.rt.block_on(self.inner.usage())
    }
}

/// The blocking twin of [`crate::Override`]: made by
/// [`Session::override_immutable`].
#[derive(Clone, Debug)]
pub struct Override<'a> {
    session: &'a Session,
    reason: String,
}

impl Override<'_> {
    /// See [`crate::Override::add_metrics`].
    pub fn add_metrics(
        &self,
        version: impl IntoVersionRef,
        metrics: impl IntoMetrics,
    ) -> Result<VersionRecord> {
        let o = self.session.inner.override_immutable(self.reason.as_str());
        self.session.rt.block_on(o.add_metrics(version, metrics))
    }

    /// See [`crate::Override::set_version_description`].
    pub fn set_version_description(
        &self,
        version: impl IntoVersionRef,
        description: impl Into<String>,
    ) -> Result<VersionRecord> {
        let o = self.session.inner.override_immutable(self.reason.as_str());
        self.session
            .rt
            .block_on(o.set_version_description(version, description))
    }

    /// See [`crate::Override::set_version_tags`].
    pub fn set_version_tags(
        &self,
        version: impl IntoVersionRef,
        set: Tags,
        remove: Vec<TagKey>,
    ) -> Result<VersionRecord> {
        let o = self.session.inner.override_immutable(self.reason.as_str());
        self.session
            .rt
            .block_on(o.set_version_tags(version, set, remove))
    }
}
