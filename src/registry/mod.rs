//! The [`Registry`]: commands checked against the folded state of a model's event
//! log, artifacts stored and fetched through the artifact store. The only place
//! that knows both stores and the domain rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::state::{decode_checkpoint, encode_checkpoint};
use crate::domain::{
    Actor, Event, EventKind, Gate, Manifest, MetricName, MetricSpec, ModelName, ModelState, Stage,
    TagKey, Tags, VersionRecord, VersionRef,
};
use crate::error::{Error, Result};
use crate::hash_cache::HashCache;
use crate::store::{
    ArtifactStore, LocalArtifactStore, LocalMetadataStore, MemoryArtifactStore,
    MemoryMetadataStore, MetadataStore,
};

#[cfg(test)]
mod background_checkpoint;
mod check;
mod fetch;
mod gc;
mod ingest;
mod lifecycle;
mod lineage;
mod manifests;
mod options;
mod paging;
#[cfg(test)]
mod power_loss;
mod serving;
mod session;
mod url;

pub use check::{CheckReport, Problem};
pub use fetch::{FetchReport, VerifyReport};
pub use gc::{GcOptions, GcReport};
pub use ingest::{ArtifactSource, RegisterReport, Registered};
pub use lineage::{IntoLineageStart, LineageStart};
pub use options::{
    CreateModel, FetchOptions, HistoryFilter, NewVersion, RetryPolicy, SetAlias, VersionFilter,
};
pub use options::{IntoMetrics, IntoSemver, IntoSemverReq};
pub use paging::{Page, VersionOrder, VersionPage};
pub use serving::WatchOptions;
pub use session::Session;

use ingest::blocking;

/// How many log records are read per store call while folding.
const READ_BATCH: usize = 1024;

/// Anything that names a model: `&str`, `String`, [`ModelName`].
pub trait IntoModelName {
    /// Parses or passes on the name.
    fn into_model_name(self) -> Result<ModelName>;
}

impl IntoModelName for ModelName {
    fn into_model_name(self) -> Result<ModelName> {
        Ok(self)
    }
}
impl IntoModelName for &ModelName {
    fn into_model_name(self) -> Result<ModelName> {
        Ok(self.clone())
    }
}
impl IntoModelName for &str {
    fn into_model_name(self) -> Result<ModelName> {
        ModelName::new(self)
    }
}
impl IntoModelName for String {
    fn into_model_name(self) -> Result<ModelName> {
        ModelName::new(self)
    }
}

/// Anything that references a version: `&str` such as `"fraud@latest"`, `String`,
/// [`VersionRef`], or a version's record ([`VersionRecord`], `&VersionRecord`,
/// `Arc<VersionRecord>`, [`Registered`]), which references it by number.
pub trait IntoVersionRef {
    /// Parses or passes on the reference.
    fn into_version_ref(self) -> Result<VersionRef>;
}

impl IntoVersionRef for VersionRef {
    fn into_version_ref(self) -> Result<VersionRef> {
        Ok(self)
    }
}
impl IntoVersionRef for &VersionRef {
    fn into_version_ref(self) -> Result<VersionRef> {
        Ok(self.clone())
    }
}
impl IntoVersionRef for &str {
    fn into_version_ref(self) -> Result<VersionRef> {
        self.parse()
    }
}
impl IntoVersionRef for String {
    fn into_version_ref(self) -> Result<VersionRef> {
        self.parse()
    }
}
impl IntoVersionRef for &String {
    fn into_version_ref(self) -> Result<VersionRef> {
        self.parse()
    }
}
impl IntoVersionRef for &VersionRecord {
    fn into_version_ref(self) -> Result<VersionRef> {
        record_ref(self)
    }
}
impl IntoVersionRef for VersionRecord {
    fn into_version_ref(self) -> Result<VersionRef> {
        record_ref(&self)
    }
}
impl IntoVersionRef for &Arc<VersionRecord> {
    fn into_version_ref(self) -> Result<VersionRef> {
        record_ref(self)
    }
}
impl IntoVersionRef for Arc<VersionRecord> {
    fn into_version_ref(self) -> Result<VersionRef> {
        record_ref(&self)
    }
}
impl IntoVersionRef for &Registered {
    fn into_version_ref(self) -> Result<VersionRef> {
        record_ref(self)
    }
}

/// A record's reference; a record that never went through a registry's fold
/// (built by hand, or deserialized without its model) cannot name its model.
fn record_ref(v: &VersionRecord) -> Result<VersionRef> {
    if v.model.is_unset() {
        return Err(Error::invalid_input(
            format!("version record {}", v.number),
            "it names no model (it was not read from a registry)",
        ));
    }
    Ok(v.reference())
}

/// One model's cached fold and the lock of this process's writers to it.
///
/// Nothing holds `state` across an await: readers fold the log's new records
/// without it and apply them under it (records are immutable, so a record read by
/// anyone is the record), so a read future that is kept half-polled blocks nobody.
/// `writer` is held across a commit's append, so this process's writers never
/// race each other for one log position.
#[derive(Default)]
struct Slot {
    /// The fold, `None` until first loaded (or after a failed apply). Only ever
    /// moves forward while `Some`.
    ///
    /// Shared (`Arc`) so a command can decide on a snapshot with no lock held
    /// (its gates may take their time); folding copies it only if a snapshot
    /// is out at that moment.
    state: RwLock<Option<Arc<ModelState>>>,
    writer: tokio::sync::Mutex<()>,
    /// Set while a background checkpoint of this model is being written: at most
    /// one at a time.
    checkpointing: AtomicBool,
    /// When the slot was last handed out (a tick of `Inner::ticks`), for
    /// evicting the least recently used.
    last_used: AtomicU64,
}

/// Clears [`Slot::checkpointing`] when the background checkpoint ends, however
/// it ends (a runtime shutting down drops the task).
struct CheckpointGuard(Arc<Slot>);

impl Drop for CheckpointGuard {
    fn drop(&mut self) {
        self.0.checkpointing.store(false, Ordering::Release);
    }
}

impl Slot {
    fn read(&self) -> RwLockReadGuard<'_, Option<Arc<ModelState>>> {
        match self.state.read() {
            Ok(g) => g,
            Err(_) => {
                // A panic while the state was written: drop it, the log is the truth.
                drop(self.write());
                self.state.read().unwrap_or_else(|p| p.into_inner())
            }
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Arc<ModelState>>> {
        self.state.write().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            *g = None;
            self.state.clear_poison();
            g
        })
    }

    fn seq(&self) -> Option<u64> {
        self.read().as_ref().map(|s| s.seq())
    }
}

struct Inner {
    metadata: Arc<dyn MetadataStore>,
    artifacts: Arc<dyn ArtifactStore>,
    models: Mutex<HashMap<ModelName, Arc<Slot>>>,
    /// How many models' folded states are kept (`RegistryBuilder::max_cached_models`).
    max_models: usize,
    /// A clock for `Slot::last_used`.
    ticks: AtomicU64,
    retry: RetryPolicy,
    checkpoint_every: u64,
    /// States with at least this many versions are checkpointed in the background.
    background_checkpoint_from: usize,
    gates: InProcessGates,
    hash_cache: Option<HashCache>,
    /// Verified manifests by digest (immutable, so never stale).
    manifests: manifests::Manifests,
}

/// How many models' folded states a registry keeps by default.
const MAX_CACHED_MODELS: usize = 1024;

/// Drops the least recently used slots that nobody holds (only the map does:
/// no command, query or background checkpoint is using them) until a quarter
/// of `max` is free, so eviction runs once per `max / 4` new models, not on
/// every one. A slot in use is never dropped: two slots for one model would
/// let two writers of this process race for one log position.
fn evict(models: &mut HashMap<ModelName, Arc<Slot>>, max: usize) {
    let target = max - max / 4;
    let mut idle: Vec<(u64, ModelName)> = models
        .iter()
        .filter(|(_, slot)| Arc::strong_count(slot) == 1)
        .map(|(name, slot)| (slot.last_used.load(Ordering::Relaxed), name.clone()))
        .collect();
    idle.sort_unstable();
    let excess = models.len().saturating_sub(target);
    for (_, name) in idle.into_iter().take(excess) {
        models.remove(&name);
    }
}

/// States with at least this many versions are checkpointed by a background task
/// after the command returns; smaller ones (encoded and written in a few
/// milliseconds) before it returns, so a short-lived process still leaves them.
const BACKGROUND_CHECKPOINT_FROM: usize = 4096;

/// Gates attached in this process, per (model, target stage).
type InProcessGates = HashMap<(ModelName, Stage), Vec<Arc<dyn Gate>>>;

/// An embedded model registry.
///
/// Cheap to clone (clones share stores and caches) and safe to use from many tasks
/// and threads; several processes or machines may open the same stores at once.
/// Every write is an event appended to the model's log with create-if-absent, after
/// checking it against the freshly folded state; when another writer appended first,
/// the command is re-checked against the new state and retried (see
/// [`RetryPolicy`]).
///
/// # Consistency
///
/// Every query (`resolve`, `model`, `list_versions`, …) sees every event whose
/// append returned before the query began — this registry's writes and those of
/// any other process or machine — and never goes back to an older state. A query
/// on a model nothing was appended to since the last one costs one
/// [`probe`](MetadataStore::probe) of the store: a `stat` on the local store
/// (a warm `resolve` takes a few microseconds), one GET on object storage. No
/// lock is held while the store is read, so a slow or stalled store call blocks
/// only its own caller.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("metadata", &self.inner.metadata)
            .field("artifacts", &self.inner.artifacts)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Registry`] over any pair of stores.
///
/// ```
/// use std::sync::Arc;
/// use modelreg::{Registry, RetryPolicy};
/// use modelreg::store::{MemoryArtifactStore, MemoryMetadataStore};
/// let registry = Registry::builder()
///     .metadata(Arc::new(MemoryMetadataStore::new()))
///     .artifacts(Arc::new(MemoryArtifactStore::new()))
///     .retry(RetryPolicy { max_attempts: 10, ..RetryPolicy::default() })
///     .build()
///     .unwrap();
/// # let _ = registry;
/// ```
#[derive(Default)]
pub struct RegistryBuilder {
    metadata: Option<Arc<dyn MetadataStore>>,
    artifacts: Option<Arc<dyn ArtifactStore>>,
    retry: RetryPolicy,
    checkpoint_every: Option<u64>,
    background_checkpoint_from: Option<usize>,
    gates: InProcessGates,
    hash_cache: Option<PathBuf>,
    max_models: Option<usize>,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("metadata", &self.metadata)
            .field("artifacts", &self.artifacts)
            .field("retry", &self.retry)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("gates", &self.gates)
            .field("hash_cache", &self.hash_cache)
            .field("max_models", &self.max_models)
            .finish()
    }
}

impl RegistryBuilder {
    /// The store for model logs (required).
    pub fn metadata(mut self, store: Arc<dyn MetadataStore>) -> Self {
        self.metadata = Some(store);
        self
    }

    /// The store for artifact blobs (required).
    pub fn artifacts(mut self, store: Arc<dyn ArtifactStore>) -> Self {
        self.artifacts = Some(store);
        self
    }

    /// How writers retry on conflict.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Write a checkpoint of a model's state every `n` events (default 1000;
    /// 0 turns checkpoints off). Checkpoints only make opening long logs faster:
    /// the state is the same with or without them.
    ///
    /// A checkpoint of a model with 4,096 versions or more is written by a
    /// background task after the command that reached the interval returns (at
    /// most one at a time per model; it is skipped if one is still running), so
    /// that command's latency does not grow with the model. Smaller ones are
    /// written before it returns.
    pub fn checkpoint_every(mut self, n: u64) -> Self {
        self.checkpoint_every = Some(n);
        self
    }

    /// Checkpoints of states with at least `n` versions go to the background
    /// (tests use 0 to exercise that path on small models).
    #[cfg(test)]
    pub(crate) fn background_checkpoint_from(mut self, n: usize) -> Self {
        self.background_checkpoint_from = Some(n);
        self
    }

    /// Attaches an in-process [`Gate`] to moves of `model`'s versions into `stage`
    /// (for production, also to moves of its protected aliases). It runs beside the
    /// gates stored in the model's log, in this process only: use stored
    /// [`GateSpec`](crate::GateSpec)s for rules every writer must obey.
    pub fn gate(mut self, model: ModelName, stage: Stage, gate: Arc<dyn Gate>) -> Self {
        self.gates.entry((model, stage)).or_default().push(gate);
        self
    }

    /// Keeps a cache of local source files' digests in `dir`, keyed by device,
    /// inode, size, modification and change time, so that registering an
    /// unchanged file again does not read it. [`Registry::open_local`] keeps one
    /// in `<registry>/cache/hashes`.
    pub fn hash_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hash_cache = Some(dir.into());
        self
    }

    /// How many models' folded states the registry keeps in memory (default
    /// 1,024, at least 1). Beyond that the least recently used state that no
    /// command or query is using is dropped; the next read of that model folds
    /// it again from its latest checkpoint.
    pub fn max_cached_models(mut self, n: usize) -> Self {
        self.max_models = Some(n);
        self
    }

    /// Builds the registry.
    pub fn build(self) -> Result<Registry> {
        let missing =
            |what: &str| Error::invalid_input("registry builder", format!("no {what} store given"));
        Ok(Registry {
            inner: Arc::new(Inner {
                metadata: self.metadata.ok_or_else(|| missing("metadata"))?,
                artifacts: self.artifacts.ok_or_else(|| missing("artifact"))?,
                models: Mutex::new(HashMap::new()),
                max_models: self.max_models.unwrap_or(MAX_CACHED_MODELS).max(1),
                ticks: AtomicU64::new(0),
                retry: self.retry,
                checkpoint_every: self.checkpoint_every.unwrap_or(1000),
                background_checkpoint_from: self
                    .background_checkpoint_from
                    .unwrap_or(BACKGROUND_CHECKPOINT_FROM),
                gates: self.gates,
                hash_cache: self.hash_cache.map(HashCache::new),
                manifests: Default::default(),
            }),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// A builder over any pair of stores.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The embedded default: a registry in the local directory `dir` (created if
    /// missing), with logs under `dir/metadata`, blobs under `dir/artifacts`, and
    /// the digest cache of registered source files under `dir/cache/hashes`.
    pub async fn open_local(dir: impl AsRef<Path>) -> Result<Registry> {
        let dir = dir.as_ref().to_owned();
        let cache = dir.join("cache/hashes");
        let (metadata, artifacts) = blocking(move || -> Result<_> {
            Ok((
                LocalMetadataStore::open(dir.join("metadata"))?,
                LocalArtifactStore::open(dir.join("artifacts"))?,
            ))
        })
        .await??;
        Registry::builder()
            .metadata(Arc::new(metadata))
            .artifacts(Arc::new(artifacts))
            .hash_cache(cache)
            .build()
    }

    /// A registry at a URL: `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` (features `aws`, `gcp`, `azure`), `file:///path` or
    /// `memory://`, configured from the environment the way object_store's builders'
    /// `from_env` are (`AWS_*`, `GOOGLE_*`, `AZURE_*`). Logs live under
    /// `<prefix>/metadata`, blobs under `<prefix>/artifacts`; see
    /// [`store::object`](crate::store::object) for the layout and
    /// [`stores_from_url`](crate::store::object::stores_from_url) for the details.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::{Actor, CreateModel, Registry};
    /// let registry = Registry::open_url("memory://").await?;
    /// registry.acting_as(Actor::new("alice")?).create_model("fraud", CreateModel::new()).await?;
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn open_url(url: &str) -> Result<Registry> {
        url::open(url).await
    }

    /// A registry in memory, gone when dropped: for tests and experiments.
    pub fn in_memory() -> Registry {
        Registry {
            inner: Arc::new(Inner {
                metadata: Arc::new(MemoryMetadataStore::new()),
                artifacts: Arc::new(MemoryArtifactStore::new()),
                models: Mutex::new(HashMap::new()),
                max_models: MAX_CACHED_MODELS,
                ticks: AtomicU64::new(0),
                retry: RetryPolicy::default(),
                checkpoint_every: 1000,
                background_checkpoint_from: BACKGROUND_CHECKPOINT_FROM,
                gates: HashMap::new(),
                hash_cache: None,
                manifests: Default::default(),
            }),
        }
    }

    /// The metadata store.
    pub fn metadata_store(&self) -> &Arc<dyn MetadataStore> {
        &self.inner.metadata
    }

    /// The artifact store.
    pub fn artifact_store(&self) -> &Arc<dyn ArtifactStore> {
        &self.inner.artifacts
    }

    // ----- commands -------------------------------------------------------------

    /// The implementation of [`Session::create_model`](super::Session::create_model).
    pub(crate) async fn create_model(
        &self,
        model: impl IntoModelName,
        options: CreateModel,
        actor: &Actor,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        options.error.check()?;
        let event = Event {
            seq: 1,
            model: model.clone(),
            time: Utc::now(),
            actor: actor.clone(),
            kind: EventKind::ModelCreated {
                description: options.description,
                metric_specs: options.metric_specs,
                tags: options.tags,
            },
        };
        let state = ModelState::genesis(&event)?;
        let slot = self.slot(&model);
        let _writer = slot.writer.lock().await;
        match self
            .append(
                &model,
                1,
                Bytes::from(crate::domain::limits::encode(&event)?),
            )
            .await
        {
            Ok(()) => {
                let mut cached = slot.write();
                if cached.is_none() {
                    *cached = Some(Arc::new(state.clone()));
                }
                Ok(state)
            }
            Err(Error::AlreadyExists { .. }) => {
                Err(Error::already_exists(format!("model '{model}'")))
            }
            Err(e) => Err(e),
        }
    }

    /// The implementation of [`Session::register`](super::Session::register).
    pub(crate) async fn register(
        &self,
        model: impl IntoModelName,
        source: ArtifactSource,
        version: NewVersion,
        actor: &Actor,
    ) -> Result<Registered> {
        let started = std::time::Instant::now();
        let model = model.into_model_name()?;
        let mut version = version;
        version.error.check()?;
        self.resolve_parents(&mut version).await?;
        if version.capture_environment || version.capture_code.is_some() {
            version = blocking(move || crate::capture::fill_in(version)).await?;
        }
        // Before anything clones it: validation is depth-bounded, cloning is not.
        version.provenance.check()?;
        // Parents must exist, and none may descend from the new version.
        self.check_lineage(&model, &version.provenance.parents)
            .await?;
        // Check everything that can be checked before moving any bytes.
        let placeholder = crate::digest::Digest::of(b"");
        self.read(&model, |s| {
            s.check(&registered(
                s,
                &version,
                actor,
                placeholder,
                0,
                0,
                Utc::now(),
            ))
        })
        .await??;

        let artifacts = self.inner.artifacts.as_ref();
        let meta = self.inner.metadata.as_ref();
        // Announce the blobs to garbage collectors before relying on them (gc.rs).
        let (manifest, digest, stats, mut intent) = match ingest::Planned::of(&source).await? {
            // In-memory files: every digest is known before anything is stored, so
            // the intent is written while the blobs are. What makes them safe is
            // the check after both (`secure_blobs`), not the order of the two.
            Some(planned) => {
                let needed = planned.digests();
                let (stored, announced) =
                    futures::join!(planned.store(artifacts), gc::Intent::announce(meta, needed));
                match (stored, announced) {
                    (Ok((manifest, digest, stats)), Ok(intent)) => {
                        (manifest, digest, stats, intent)
                    }
                    (Err(e), Ok(intent)) => {
                        intent.withdraw(meta).await;
                        return Err(e);
                    }
                    (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
                }
            }
            None => {
                let (manifest, digest, stats) = ingest::ingest(
                    artifacts,
                    source.clone(),
                    self.inner.hash_cache.as_ref(),
                    version.link,
                )
                .await?;
                let needed = std::iter::once(digest)
                    .chain(manifest.entries().iter().map(|e| e.digest))
                    .collect();
                let intent = gc::Intent::announce(meta, needed).await?;
                (manifest, digest, stats, intent)
            }
        };
        let committed = async {
            self.secure_blobs(&mut intent, &source, &manifest, digest)
                .await?;
            let (size, files) = (manifest.total_size(), manifest.len() as u64);
            let (_, record) = self
                .commit(&model, actor, |s, time| {
                    Ok(registered(s, &version, actor, digest, size, files, time))
                })
                .await?;
            record.ok_or_else(|| {
                Error::not_found(format!("the version just registered in model '{model}'"))
            })
        }
        .await;
        intent.withdraw(meta).await;
        let version = committed?;
        Ok(Registered {
            report: RegisterReport {
                files: version.files,
                bytes: version.size,
                files_stored: stats.files_stored,
                bytes_stored: stats.bytes_stored,
                files_present: stats.files_present,
                bytes_present: stats.bytes_present,
                files_linked: stats.files_linked,
                files_copied: stats.files_copied,
                hash_cache_hits: stats.hash_cache_hits,
                elapsed: started.elapsed(),
            },
            version,
        })
    }

    /// Resolves the parents given as references ([`NewVersion::parent`]) to
    /// numbered parents in the provenance.
    async fn resolve_parents(&self, version: &mut NewVersion) -> Result<()> {
        for (r, relation) in std::mem::take(&mut version.parents) {
            let parent = self.resolve(&r).await?;
            version.provenance.parents.push(crate::domain::ParentRef {
                model: r.model.clone(),
                version: parent.number,
                relation,
            });
        }
        Ok(())
    }

    /// The implementation of [`Session::add_metrics`](super::Session::add_metrics).
    pub(crate) async fn add_metrics(
        &self,
        version: impl IntoVersionRef,
        metrics: impl IntoMetrics,
        actor: &Actor,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        let metrics = metrics.into_metrics()?;
        self.commit_on_version(&r, actor, |number| EventKind::MetricsAdded {
            version: number,
            metrics: metrics.clone(),
        })
        .await
    }

    /// The implementation of [`Session::set_version_tags`](super::Session::set_version_tags).
    pub(crate) async fn set_version_tags(
        &self,
        version: impl IntoVersionRef,
        set: Tags,
        remove: Vec<TagKey>,
        actor: &Actor,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        self.commit_on_version(&r, actor, |number| EventKind::TagsSet {
            version: Some(number),
            set: set.clone(),
            removed: remove.clone(),
        })
        .await
    }

    /// The implementation of [`Session::deprecate`](super::Session::deprecate).
    pub(crate) async fn deprecate(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
        actor: &Actor,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        let reason = reason.into();
        self.commit_on_version(&r, actor, |number| EventKind::VersionDeprecated {
            version: number,
            reason: reason.clone(),
        })
        .await
    }

    /// The implementation of [`Session::set_model_tags`](super::Session::set_model_tags).
    pub(crate) async fn set_model_tags(
        &self,
        model: impl IntoModelName,
        set: Tags,
        remove: Vec<TagKey>,
        actor: &Actor,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        self.commit(&model, actor, |_, _| {
            Ok(EventKind::TagsSet {
                version: None,
                set: set.clone(),
                removed: remove.clone(),
            })
        })
        .await?;
        self.model(&model).await
    }

    /// The implementation of [`Session::set_metric_specs`](super::Session::set_metric_specs).
    pub(crate) async fn set_metric_specs(
        &self,
        model: impl IntoModelName,
        specs: BTreeMap<MetricName, MetricSpec>,
        actor: &Actor,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        self.commit(&model, actor, |_, _| {
            Ok(EventKind::MetricSpecsSet {
                specs: specs.clone(),
            })
        })
        .await?;
        self.model(&model).await
    }

    // ----- queries --------------------------------------------------------------

    /// The names of all models, sorted.
    pub async fn list_models(&self) -> Result<Vec<ModelName>> {
        let mut names: Vec<ModelName> = self
            .inner
            .metadata
            .list_logs()
            .await?
            .into_iter()
            // A key that is not a model name is not one of our logs.
            .filter_map(|k| {
                ModelName::new(&k)
                    .inspect_err(|e| tracing::warn!(key = %k, error = %e, "skipping a log that is not a model's"))
                    .ok()
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The current state of a model: description, specs, tags and every version.
    pub async fn model(&self, model: impl IntoModelName) -> Result<ModelState> {
        let model = model.into_model_name()?;
        self.read(&model, ModelState::clone).await
    }

    /// Resolves a reference to its version.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion, Registry};
    /// let registry = Registry::in_memory();
    /// let alice = Actor::new("alice")?;
    /// registry.acting_as(alice.clone()).create_model("fraud", CreateModel::new()).await?;
    /// let v1 = registry
    ///     .acting_as(alice).register("fraud", ArtifactSource::bytes("model.bin", "weights")?, NewVersion::new())
    ///     .await?;
    /// assert_eq!(registry.resolve("fraud@latest").await?.number, v1.number);
    /// assert_eq!(registry.resolve(format!("fraud#{}", v1.artifact)).await?.number, v1.number);
    /// assert!(registry.resolve("fraud/2").await.is_err());
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn resolve(&self, reference: impl IntoVersionRef) -> Result<VersionRecord> {
        let r = reference.into_version_ref()?;
        self.read(&r.model, |s| s.resolve(&r.selector).cloned())
            .await?
    }

    /// The versions of a model that match `filter`, oldest first.
    ///
    /// The records are shared with the registry's cached state, so listing
    /// copies a pointer per version, not the version: listing 100,000 versions
    /// takes about a millisecond.
    pub async fn list_versions(
        &self,
        model: impl IntoModelName,
        filter: &VersionFilter,
    ) -> Result<Vec<Arc<VersionRecord>>> {
        let model = model.into_model_name()?;
        filter.error.check()?;
        self.read(&model, |s| {
            s.versions()
                .iter()
                .filter(|v| filter.matches(v))
                .cloned()
                .collect()
        })
        .await
    }

    /// Every event of a model, oldest first: the raw log. See
    /// [`history`](Self::history) for the filtered audit trail.
    pub async fn events(&self, model: impl IntoModelName) -> Result<Vec<Event>> {
        let model = model.into_model_name()?;
        let mut events = Vec::new();
        loop {
            let batch = self
                .inner
                .metadata
                .read_after(model.as_str(), events.len() as u64, READ_BATCH)
                .await?;
            let done = batch.len() < READ_BATCH;
            for rec in batch {
                let at = self.record_at(&model, rec.seq);
                events.push(Event::from_bytes(&model, rec.seq, &rec.bytes).map_err(at)?);
            }
            if done {
                break;
            }
        }
        if events.is_empty() {
            return Err(Error::model_not_found(&model));
        }
        Ok(events)
    }

    /// The manifest of a version's artifact: read and verified the first time,
    /// then kept (a manifest is immutable: its digest is its name).
    pub async fn manifest(&self, reference: impl IntoVersionRef) -> Result<Manifest> {
        let v = self.resolve(reference).await?;
        Ok(Manifest::clone(
            &*self.verified_manifest(&v.artifact).await?,
        ))
    }

    /// The verified manifest stored under `digest`, kept after the first read.
    pub(crate) async fn verified_manifest(
        &self,
        digest: &crate::digest::Digest,
    ) -> Result<Arc<Manifest>> {
        self.inner
            .manifests
            .get(self.inner.artifacts.as_ref(), digest)
            .await
    }

    /// Writes a version's files into `dest`, verified.
    ///
    /// `dest` must not exist or be an empty directory. Files are written into a
    /// staging directory beside it and re-hashed; only when every digest matches is
    /// it renamed to `dest`. On any failure — a corrupt or missing blob, a full disk —
    /// `dest` is left as it was and no partial files remain.
    #[tracing::instrument(name = "fetch", level = "info", skip_all)]
    pub async fn fetch(
        &self,
        reference: impl IntoVersionRef,
        dest: impl AsRef<Path>,
        options: FetchOptions,
    ) -> Result<FetchReport> {
        let r = reference.into_version_ref()?;
        let v = self.resolve(&r).await?;
        let what = format!("{}/{}", r.model, v.number);
        let store = self.inner.artifacts.as_ref();
        let manifest = self.verified_manifest(&v.artifact).await?;
        fetch::fetch_into(store, &manifest, dest.as_ref(), options.link, &what).await
    }

    /// Re-hashes every blob of a version in the store: [`Error::Integrity`] names the
    /// first file whose bytes do not match, [`Error::NotFound`] the first missing one.
    #[tracing::instrument(name = "verify", level = "info", skip_all)]
    pub async fn verify(&self, reference: impl IntoVersionRef) -> Result<VerifyReport> {
        let r = reference.into_version_ref()?;
        let v = self.resolve(&r).await?;
        let store = self.inner.artifacts.as_ref();
        let manifest = fetch::load_manifest(store, &v.artifact).await?;
        let mut report = VerifyReport { files: 0, bytes: 0 };
        for e in manifest.entries() {
            let what = || format!("file '{}' of {}/{}", e.path, r.model, v.number);
            let (actual, size) = store
                .hash_stored(&e.digest)
                .await
                .map_err(|err| match err {
                    Error::NotFound { .. } => {
                        Error::blob_not_found(e.digest, format!("blob {} ({})", e.digest, what()))
                    }
                    err => err,
                })?;
            if actual != e.digest || size != e.size {
                return Err(Error::Integrity {
                    what: what(),
                    expected: e.digest,
                    actual,
                    location: Some(store.location(&e.digest)),
                });
            }
            report.files += 1;
            report.bytes += size;
        }
        Ok(report)
    }

    /// Drops the cached state of every model, so the next read folds from the
    /// stores again (from the latest checkpoint). Reads pick up other writers'
    /// events without this; it is for tests and for shedding memory.
    pub fn clear_cache(&self) {
        lock(&self.inner.models).clear();
    }

    // ----- machinery ------------------------------------------------------------

    fn slot(&self, model: &ModelName) -> Arc<Slot> {
        let mut models = lock(&self.inner.models);
        let slot = models.entry(model.clone()).or_default().clone();
        let tick = self.inner.ticks.fetch_add(1, Ordering::Relaxed);
        slot.last_used.store(tick, Ordering::Relaxed);
        if models.len() > self.inner.max_models {
            evict(&mut models, self.inner.max_models);
        }
        slot
    }

    /// Brings the cached state of `model` up to date and runs `f` on it.
    ///
    /// `f` sees every event whose append returned before this call began, in this
    /// process or any other (and maybe later ones).
    async fn read<R>(&self, model: &ModelName, f: impl FnOnce(&ModelState) -> R) -> Result<R> {
        let slot = self.slot(model);
        loop {
            self.refresh(model, &slot).await?;
            // `None` only if a failed apply dropped the state meanwhile: fold again.
            if let Some(state) = slot.read().as_ref() {
                return Ok(f(state));
            }
        }
    }

    /// Folds the events `model`'s cached state has not seen; loads from the latest
    /// checkpoint first if nothing is cached. [`Error::NotFound`] if the model has
    /// no log.
    ///
    /// No lock is held while the store is read. When nothing is new this costs one
    /// [`probe`](MetadataStore::probe) where the store answers it (a `stat` on the
    /// local store), else one `read_after` that finds nothing.
    async fn refresh(&self, model: &ModelName, slot: &Slot) -> Result<()> {
        let meta = &self.inner.metadata;
        loop {
            let Some(seq) = slot.seq() else {
                let loaded = self.load(model).await?;
                let mut cached = slot.write();
                if cached.as_ref().is_none_or(|s| s.seq() < loaded.seq()) {
                    *cached = Some(Arc::new(loaded));
                }
                // Loading folded to the end of the log as it was then.
                return Ok(());
            };
            if let Some(next) = meta.probe(model.as_str(), seq + 1)
                && !next?
            {
                return Ok(());
            }
            let batch = meta.read_after(model.as_str(), seq, READ_BATCH).await?;
            let done = batch.len() < READ_BATCH;
            let events = batch
                .into_iter()
                .map(|rec| {
                    Event::from_bytes(model, rec.seq, &rec.bytes)
                        .map_err(self.record_at(model, rec.seq))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut cached = slot.write();
            let Some(state) = cached.as_mut().map(Arc::make_mut) else {
                continue;
            };
            // Another task may have applied some of them meanwhile.
            for event in events {
                if event.seq > state.seq() {
                    let seq = event.seq;
                    state.apply(event).map_err(self.record_at(model, seq))?;
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Folds `model`'s log from its latest checkpoint (or from event 1) to its end.
    ///
    /// A checkpoint the log does not continue (an event after it does not apply)
    /// is discarded and the log replayed from event 1, as for a corrupt one.
    async fn load(&self, model: &ModelName) -> Result<ModelState> {
        let checkpoint = self.load_checkpoint(model).await;
        let seq = checkpoint.as_ref().map(ModelState::seq);
        match self.fold(model, checkpoint).await {
            Err(e) if seq.is_some() && !matches!(e, Error::Storage { .. } | Error::Io { .. }) => {
                tracing::warn!(
                    model = %model, checkpoint = seq, error = %e,
                    "the log does not continue the checkpoint: ignoring it, replaying the log"
                );
                self.fold(model, None).await
            }
            folded => folded,
        }
    }

    /// Folds `model`'s log after `state` (from event 1 if `None`) to its end.
    async fn fold(&self, model: &ModelName, mut state: Option<ModelState>) -> Result<ModelState> {
        loop {
            let after = state.as_ref().map_or(0, ModelState::seq);
            let batch = self
                .inner
                .metadata
                .read_after(model.as_str(), after, READ_BATCH)
                .await?;
            let done = batch.len() < READ_BATCH;
            for rec in batch {
                let at = self.record_at(model, rec.seq);
                let event = Event::from_bytes(model, rec.seq, &rec.bytes).map_err(&at)?;
                match &mut state {
                    Some(state) => state.apply(event).map_err(at)?,
                    None => state = Some(ModelState::genesis(&event).map_err(at)?),
                }
            }
            if done {
                break;
            }
        }
        state.ok_or_else(|| Error::model_not_found(model))
    }

    /// The latest checkpoint of `model`, if there is one that agrees with the log.
    /// A checkpoint is only a cache: one that cannot be read, does not decode, or
    /// disagrees with the event it claims to cover is ignored and the log replayed.
    /// Each reason to ignore one is logged as a warning.
    async fn load_checkpoint(&self, model: &ModelName) -> Option<ModelState> {
        let ignored = |seq: Option<u64>, why: &dyn std::fmt::Display| -> Option<ModelState> {
            tracing::warn!(
                model = %model, checkpoint = seq, reason = %why,
                "ignoring the checkpoint, replaying the log"
            );
            None
        };
        let meta = &self.inner.metadata;
        let cp = match meta.latest_checkpoint(model.as_str()).await {
            Ok(cp) => cp?,
            Err(e) => return ignored(None, &e),
        };
        let (name, seq) = (model.clone(), cp.seq);
        let state = match blocking(move || decode_checkpoint(&name, seq, &cp.bytes)).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) | Err(e) => return ignored(Some(seq), &e),
        };
        let covered = match meta
            .read_after(model.as_str(), seq.saturating_sub(1), 1)
            .await
        {
            Ok(covered) => covered,
            Err(e) => return ignored(Some(seq), &e),
        };
        let Some(rec) = covered.first().filter(|r| r.seq == seq) else {
            return ignored(Some(seq), &"the event it covers is not in the log");
        };
        let event = match Event::from_bytes(model, rec.seq, &rec.bytes) {
            Ok(event) => event,
            Err(e) => return ignored(Some(seq), &e),
        };
        match state.confirmed_by(&event) {
            Ok(()) => Some(state),
            Err(why) => ignored(Some(seq), &why),
        }
    }

    /// Appends the event `make` builds from the fresh state, retrying on conflict.
    ///
    /// Each attempt folds the log up to date, builds the event from that state (so
    /// numbers and references are recomputed), checks it, and appends it at the
    /// next position with create-if-absent. Losing the race means another writer
    /// took that position: wait a little, and try again from the top.
    #[tracing::instrument(level = "debug", skip_all, fields(model = %model))]
    async fn commit(
        &self,
        model: &ModelName,
        actor: &Actor,
        mut make: impl FnMut(&ModelState, DateTime<Utc>) -> Result<EventKind>,
    ) -> Result<(Event, Option<VersionRecord>)> {
        let slot = self.slot(model);
        let policy = self.inner.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            {
                let _writer = slot.writer.lock().await;
                self.refresh(model, &slot).await?;
                let event = {
                    // A snapshot: the command and its gates decide with no lock
                    // held, so a slow gate stalls no reader and no fold.
                    let snapshot = slot.read().clone();
                    // `None` only if a failed apply dropped the state: fold again.
                    let Some(state) = snapshot else {
                        continue;
                    };
                    // The log's order is the truth; times never go backwards in it
                    // even when writers' clocks disagree.
                    let time = Utc::now().max(state.updated_at());
                    let kind = make(&state, time)?;
                    state.check(&kind)?;
                    Event {
                        seq: state.seq() + 1,
                        model: model.clone(),
                        time,
                        actor: actor.clone(),
                        kind,
                    }
                };
                let bytes = Bytes::from(crate::domain::limits::encode(&event)?);
                match self.append(model, event.seq, bytes).await {
                    Ok(()) => {
                        tracing::debug!(
                            seq = event.seq,
                            kind = event.kind.name(),
                            attempt,
                            "appended"
                        );
                        let version = {
                            let mut cached = slot.write();
                            if let Some(state) = cached.as_mut().map(Arc::make_mut)
                                && state.seq() + 1 == event.seq
                                && let Err(e) = state.apply(event.clone())
                            {
                                // Cannot happen after `check`; refold from the log if
                                // it does.
                                *cached = None;
                                return Err(e);
                            }
                            // A reader may have folded the event from the log first;
                            // a state dropped meanwhile is folded again on next read.
                            event
                                .kind
                                .version()
                                .and_then(|n| cached.as_ref()?.version(n).cloned())
                        };
                        self.maybe_checkpoint(&slot, event.seq).await;
                        return Ok((event, version));
                    }
                    Err(Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if attempt >= policy.max_attempts {
                return Err(Error::Conflict {
                    model: model.to_string(),
                    attempts: attempt,
                });
            }
            tokio::time::sleep(policy.delay(attempt)).await;
        }
    }

    /// Appends record `seq`, telling our own write from another writer's.
    ///
    /// A store may retry a conditional write whose first attempt landed (an
    /// object store retrying a PUT after a timeout or a 5xx), and then report our
    /// own record as taken. Reading the record back tells: the same bytes (which
    /// carry this writer's time to the nanosecond and its checksum) mean it is
    /// ours, and the append succeeded.
    async fn append(&self, model: &ModelName, seq: u64, bytes: Bytes) -> Result<()> {
        let meta = &self.inner.metadata;
        match meta.append(model.as_str(), seq, bytes.clone()).await {
            Err(Error::AlreadyExists { what }) => {
                let stored = meta.read_after(model.as_str(), seq - 1, 1).await?;
                match stored.first() {
                    Some(r) if r.seq == seq && r.bytes == bytes => Ok(()),
                    _ => Err(Error::AlreadyExists { what }),
                }
            }
            other => other,
        }
    }

    /// Commits an event about the version `r` resolved to on the first attempt
    /// (retries act on that same version even if `@latest` or an alias moved).
    async fn commit_on_version(
        &self,
        r: &VersionRef,
        actor: &Actor,
        make: impl Fn(crate::domain::VersionNumber) -> EventKind,
    ) -> Result<VersionRecord> {
        let mut number = None;
        let (_, record) = self
            .commit(&r.model, actor, |s, _| {
                Ok(make(pinned_version(s, r, &mut number)?.number))
            })
            .await?;
        record.ok_or_else(|| Error::version_not_found(&r.model, r))
    }

    /// Writes a checkpoint if event `seq` (just committed) is a multiple of
    /// `checkpoint_every`: before returning for a small state, in a background
    /// task for a large one (at most one per model at a time; skipped while one
    /// runs), so the command's latency does not grow with the model.
    async fn maybe_checkpoint(&self, slot: &Arc<Slot>, seq: u64) {
        let every = self.inner.checkpoint_every;
        if every == 0 || !seq.is_multiple_of(every) {
            return;
        }
        let versions = slot.read().as_ref().map_or(0, |s| s.versions().len());
        if versions < self.inner.background_checkpoint_from {
            self.write_checkpoint(Arc::clone(slot)).await;
            return;
        }
        if slot.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = CheckpointGuard(Arc::clone(slot));
        let this = self.clone();
        tokio::spawn(async move {
            this.write_checkpoint(Arc::clone(&guard.0)).await;
            drop(guard);
        });
    }

    /// Writes a checkpoint of the slot's current state. Best effort: the events
    /// are committed; a missing checkpoint only makes the next cold open replay
    /// more of the log.
    ///
    /// On the blocking pool, the state is cloned under its read lock and encoded
    /// without it, so events folded meanwhile wait for the clone only.
    async fn write_checkpoint(&self, slot: Arc<Slot>) {
        let encoded = blocking(move || {
            // Copied under the lock (pointers to the shared versions): a fold
            // meanwhile then copies nothing.
            let snapshot = ModelState::clone(slot.read().as_deref()?);
            Some((
                snapshot.name().clone(),
                snapshot.seq(),
                encode_checkpoint(&snapshot),
            ))
        })
        .await;
        let stored = match encoded {
            Ok(Some((name, seq, bytes))) => self
                .inner
                .metadata
                .put_checkpoint(name.as_str(), seq, Bytes::from(bytes))
                .await
                .map_err(|e| (Some(name), Some(seq), e)),
            Ok(None) => Ok(()),
            Err(e) => Err((None, None, e)),
        };
        if let Err((model, seq, e)) = stored {
            tracing::warn!(
                model = model.as_ref().map(|m| m.as_str()), checkpoint = seq, error = %e,
                "could not write a checkpoint; the next cold open replays more of the log"
            );
        }
    }
}

/// Resolves `r` on a command's first attempt and by the same number on retries,
/// so a retry acts on the version the caller meant even if `@latest` or an alias
/// moved meanwhile.
pub(super) fn pinned_version<'s>(
    s: &'s ModelState,
    r: &VersionRef,
    number: &mut Option<crate::domain::VersionNumber>,
) -> Result<&'s VersionRecord> {
    match *number {
        None => {
            let v = s.resolve(&r.selector)?;
            *number = Some(v.number);
            Ok(v)
        }
        Some(n) => s
            .version(n)
            .ok_or_else(|| Error::version_not_found(&r.model, format!("{}/{n}", r.model))),
    }
}

/// The `version_registered` event for `v` as the next version of `s`.
fn registered(
    s: &ModelState,
    v: &NewVersion,
    actor: &Actor,
    artifact: crate::digest::Digest,
    size: u64,
    files: u64,
    time: DateTime<Utc>,
) -> EventKind {
    EventKind::VersionRegistered {
        version: Box::new(VersionRecord {
            // The fold fills it in: the log is the model's.
            model: ModelName::unset(),
            number: s.next_version_number(),
            semver: v.semver.clone(),
            artifact,
            size,
            files,
            created_at: time,
            created_by: actor.clone(),
            description: v.description.clone(),
            tags: v.tags.clone(),
            provenance: v.provenance.clone(),
            metrics: v.metrics.clone(),
            deprecated: None,
            stage: Stage::None,
            stage_since: None,
            approvals: BTreeMap::new(),
            reached: BTreeSet::new(),
        }),
    }
}

#[cfg(test)]
mod state_cache {
    use super::*;
    use crate::{ArtifactSource, CreateModel, NewVersion};

    #[tokio::test]
    async fn idle_states_are_evicted_beyond_the_bound_and_fold_again() {
        let registry = Registry::builder()
            .metadata(Arc::new(MemoryMetadataStore::new()))
            .artifacts(Arc::new(MemoryArtifactStore::new()))
            .max_cached_models(4)
            .build()
            .expect("registry");
        let me = registry.acting_as(Actor::new("ci").expect("actor"));
        for i in 0..10 {
            let model = format!("m{i}");
            me.create_model(&*model, CreateModel::new())
                .await
                .expect("create");
            me.register(
                &*model,
                ArtifactSource::bytes("w", format!("{i}")).expect("path"),
                NewVersion::new(),
            )
            .await
            .expect("register");
            assert!(
                lock(&registry.inner.models).len() <= 4,
                "bounded after m{i}"
            );
        }
        // The most recently used stay; an evicted one folds again, unchanged.
        assert!(lock(&registry.inner.models).contains_key(&ModelName::new("m9").expect("name")));
        assert!(!lock(&registry.inner.models).contains_key(&ModelName::new("m0").expect("name")));
        let v = registry
            .resolve("m0@latest")
            .await
            .expect("resolve evicted model");
        assert_eq!(v.number.get(), 1);
        assert!(lock(&registry.inner.models).len() <= 4);
    }

    #[test]
    fn a_slot_in_use_is_never_evicted() {
        let mut models: HashMap<ModelName, Arc<Slot>> = HashMap::new();
        let held = Arc::new(Slot::default());
        models.insert(ModelName::new("held").expect("name"), Arc::clone(&held));
        for i in 0..7 {
            let slot = Slot::default();
            slot.last_used.store(i + 1, Ordering::Relaxed);
            models.insert(
                ModelName::new(format!("m{i}")).expect("name"),
                Arc::new(slot),
            );
        }
        evict(&mut models, 4);
        assert_eq!(models.len(), 3);
        assert!(models.contains_key(&ModelName::new("held").expect("name")));
        assert!(models.contains_key(&ModelName::new("m6").expect("name")));
    }
}
