//! The [`Registry`]: commands checked against the folded state of a model's event
//! log, artifacts stored and fetched through the artifact store. The only place
//! that knows both stores and the domain rules.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::domain::scan::ScanLimits;
use crate::domain::{Gate, ModelName, Stage, VersionRecord, VersionRef};
use crate::error::{Error, Result};
use crate::hash_cache::HashCache;
use crate::store::{
    ArtifactStore, LocalArtifactOptions, LocalArtifactStore, LocalMetadataStore,
    MemoryArtifactStore, MemoryMetadataStore, MetadataStore, ObjectArtifactOptions,
};

mod archives;
mod as_of;
#[cfg(test)]
mod background_checkpoint;
mod check;
mod fetch;
mod gc;
mod ingest;
mod lifecycle;
mod lineage;
mod manifests;
#[cfg(feature = "oci")]
mod oci;
mod options;
mod paging;
mod parts_gc;
#[cfg(test)]
mod power_loss;
mod retention;
mod scan;
pub(crate) mod segmented;
mod serving;
mod session;
mod signing;
mod turn;
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
pub use retention::{ProtectedVersion, RetentionReport};
pub use serving::WatchOptions;
pub use session::{Override, Session};
pub use signing::{SignatureBundle, SignatureCheck, SignatureReport};

use ingest::blocking;

mod commands;
mod engine;

use commands::pinned_version;
use engine::{READ_BATCH, Slot};

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
    /// Versions per segment of a format 5 checkpoint; states with fewer are
    /// checkpointed whole.
    checkpoint_segment: usize,
    gates: InProcessGates,
    hash_cache: Option<HashCache>,
    /// Verified manifests by digest (immutable, so never stale).
    manifests: manifests::Manifests,
    /// How long a query may answer from a cached state without asking the
    /// store, in nanoseconds (`RegistryBuilder::max_staleness`; 0 = never).
    max_staleness: u64,
    /// The origin of `Slot::confirmed_at`.
    epoch: Instant,
    /// The lineage graph last built, keyed by the states it was built from.
    lineage: lineage::LineageCache,
    /// The past states `model_as_of` folded last.
    as_of: as_of::AsOfCache,
    /// The budgets of format scans (`RegistryBuilder::scan_limits`).
    scan_limits: ScanLimits,
}

/// How many models' folded states a registry keeps by default.
const MAX_CACHED_MODELS: usize = 1024;

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
/// (a warm `resolve` takes about two microseconds), one GET on object storage.
/// No lock is held while the store is read, so a slow or stalled store call
/// blocks only its own caller.
///
/// A registry built with [`RegistryBuilder::max_staleness`] trades part of this
/// for speed, by choice: its queries may answer from memory for up to that
/// window, so another process's change is seen at most the window late (this
/// registry's own changes at once, and commands always read the log first).
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
    checkpoint_segment: Option<usize>,
    gates: InProcessGates,
    hash_cache: Option<PathBuf>,
    max_models: Option<usize>,
    max_staleness: Duration,
    scan_limits: ScanLimits,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("metadata", &self.metadata)
            .field("artifacts", &self.artifacts)
            .field("retry", &self.retry)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_segment", &self.checkpoint_segment)
            .field("gates", &self.gates)
            .field("hash_cache", &self.hash_cache)
            .field("max_models", &self.max_models)
            .field("max_staleness", &self.max_staleness)
            .field("scan_limits", &self.scan_limits)
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

    /// Versions per segment of a checkpoint (default
    /// [`SEGMENT_VERSIONS`](crate::format::SEGMENT_VERSIONS), 1,024; at least
    /// 1).
    ///
    /// A model with at least this many versions, on a store that keeps
    /// checkpoint parts (every built-in store), is checkpointed in segments
    /// (format 5): the version records in immutable segments of `n` versions
    /// each, written once and again only when a record in them changes, and a
    /// small head with the rest of the state. A checkpoint then writes what
    /// changed since the last one, not the whole model. Smaller models are
    /// checkpointed whole. Smaller segments make a checkpoint after scattered
    /// changes cheaper and a cold open read more objects.
    pub fn checkpoint_segment(mut self, n: usize) -> Self {
        self.checkpoint_segment = Some(n.max(1));
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

    /// Lets queries answer from the cached state for up to `window` after it
    /// was last found current, without asking the store (default
    /// [`Duration::ZERO`]: every query asks it). Opt-in, because it weakens
    /// what a query sees.
    ///
    /// - **Default (zero):** a query sees every event whose append returned
    ///   before it began, in any process. On the local store that costs one
    ///   `stat` per query (~1 µs, most of a warm [`resolve`](Registry::resolve)),
    ///   on object storage one GET.
    /// - **With a window:** a query still sees every change made through this
    ///   registry (and its clones) at once, and never a state older than one it
    ///   already returned; a change made by another process, machine or
    ///   `Registry` instance is seen at most `window` after its append
    ///   returned. Within the window a query reads nothing: a warm
    ///   [`resolve`](Registry::resolve) or [`route`](Registry::route) is a lookup
    ///   in memory (well under a microsecond), and the first query after the
    ///   window asks the store again. Commands (register, promote, set an
    ///   alias, …) always fold the log first, whatever the window, so they
    ///   never decide on a stale state.
    ///
    /// For inference servers that resolve or route per request and would poll
    /// anyway (a [`watch`](Registry::watch) every second sees changes no
    /// sooner). Watches on such a registry poll through the same reads, so
    /// they too may see a change up to the window late. Windows shorter than a
    /// microsecond are treated as zero.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use modelreg::Registry;
    /// use modelreg::store::{MemoryArtifactStore, MemoryMetadataStore};
    /// let registry = Registry::builder()
    ///     .metadata(Arc::new(MemoryMetadataStore::new()))
    ///     .artifacts(Arc::new(MemoryArtifactStore::new()))
    ///     .max_staleness(Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// # let _ = registry;
    /// ```
    pub fn max_staleness(mut self, window: Duration) -> Self {
        self.max_staleness = window;
        self
    }

    /// The budgets of [format scans](Session::scan_formats) (default:
    /// [`ScanLimits::default`]). A file that needs more is refused, never
    /// scanned in part.
    pub fn scan_limits(mut self, limits: ScanLimits) -> Self {
        self.scan_limits = limits;
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
                checkpoint_segment: self
                    .checkpoint_segment
                    .unwrap_or(crate::domain::state::SEGMENT_VERSIONS),
                gates: self.gates,
                hash_cache: self.hash_cache.map(HashCache::new),
                manifests: Default::default(),
                max_staleness: staleness_nanos(self.max_staleness),
                epoch: Instant::now(),
                lineage: Default::default(),
                as_of: Default::default(),
                scan_limits: ScanLimits::default(),
            }),
        })
    }
}

/// A staleness window in whole microseconds' worth of nanoseconds: shorter
/// than a microsecond is zero (the store is asked on every query).
fn staleness_nanos(window: Duration) -> u64 {
    if window < Duration::from_micros(1) {
        return 0;
    }
    u64::try_from(window.as_nanos()).unwrap_or(u64::MAX)
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
        Self::open_local_with(dir, LocalArtifactOptions::default()).await
    }

    /// [`open_local`](Registry::open_local), with options for its artifact
    /// store: e.g. packing, which stores large files as chunks in packs so that
    /// a fine-tune stores only the chunks that changed (opt-in; see
    /// [`LocalArtifactOptions::packed`]). A registry written either way opens
    /// and reads either way.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::Registry;
    /// use modelreg::store::{LocalArtifactOptions, PackOptions};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let options = LocalArtifactOptions::new().packed(PackOptions::new());
    /// let registry = Registry::open_local_with(dir.path().join("registry"), options).await?;
    /// # let _ = registry;
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn open_local_with(
        dir: impl AsRef<Path>,
        options: LocalArtifactOptions,
    ) -> Result<Registry> {
        let dir = dir.as_ref().to_owned();
        let cache = dir.join("cache/hashes");
        let (metadata, artifacts) = blocking(move || -> Result<_> {
            Ok((
                LocalMetadataStore::open(dir.join("metadata"))?,
                LocalArtifactStore::open_with(dir.join("artifacts"), options)?,
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
        url::open(url, ObjectArtifactOptions::default()).await
    }

    /// [`open_url`](Registry::open_url), with options for its artifact store:
    /// e.g. packing, which stores large files as chunks in packs so that
    /// registering a fine-tune uploads only the chunks that changed (opt-in; see
    /// [`ObjectArtifactOptions::packed`]). A registry written either way opens
    /// and reads either way; [`RegisterReport::bytes_sent`] says what was sent.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::Registry;
    /// use modelreg::store::PackOptions;
    /// use modelreg::store::object::ObjectArtifactOptions;
    /// let options = ObjectArtifactOptions::new().packed(PackOptions::new());
    /// let registry = Registry::open_url_with("memory://", options).await?;
    /// # let _ = registry;
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn open_url_with(url: &str, options: ObjectArtifactOptions) -> Result<Registry> {
        url::open(url, options).await
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
                checkpoint_segment: crate::domain::state::SEGMENT_VERSIONS,
                gates: HashMap::new(),
                hash_cache: None,
                manifests: Default::default(),
                max_staleness: 0,
                epoch: Instant::now(),
                lineage: Default::default(),
                as_of: Default::default(),
                scan_limits: ScanLimits::default(),
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
}
