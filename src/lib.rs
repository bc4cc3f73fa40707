//! # modelreg
//!
//! An embeddable model registry: the library that training programs write model
//! versions to and inference servers read them from. No server and no database —
//! a directory on local disk by default — content-addressed, verified on every
//! read, safe with many concurrent writers, and honest about history: every change
//! is an event in an append-only log.
//!
//! ## A tour
//!
//! ### Training: register a version
//!
//! Open a registry, act as someone, register files with their metrics and
//! provenance. Every builder step takes plain values; anything invalid in the
//! chain is reported by the command, before a byte is stored.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use modelreg::{Actor, ArtifactSource, CreateModel, DatasetRef, DatasetRole, MetricSpec,
//!                NewVersion, Registry};
//!
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path();
//! let registry = Registry::open_local(dir.join("registry")).await?;
//! let trainer = registry.acting_as(Actor::new("ci-train@example.com")?);
//!
//! // Creates the model on first use; several trainers may race to do it.
//! trainer
//!     .ensure_model("fraud", CreateModel::new().metric("auc", MetricSpec::maximize()))
//!     .await?;
//!
//! # std::fs::create_dir_all(dir.join("checkpoint")).unwrap();
//! # std::fs::write(dir.join("checkpoint/model.safetensors"), b"weights").unwrap();
//! let v1 = trainer
//!     .register(
//!         "fraud",
//!         ArtifactSource::dir(dir.join("checkpoint")),
//!         NewVersion::new()
//!             .semver("1.0.0")
//!             .metric("auc", 0.91)
//!             .param("lr", 3e-4)
//!             .dataset(DatasetRef::new("transactions", DatasetRole::Train).version("2026-11"))
//!             .code_commit("9f2c1e7"),
//!     )
//!     .await?;
//! assert_eq!(v1.number.get(), 1);
//! println!("registered {} = {} ({} new bytes)", v1.reference(), v1.artifact, v1.report.bytes_stored);
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! ### Serving: resolve, fetch, route
//!
//! One grammar for references (number, semver, alias, stage, latest, digest);
//! every fetched file is re-hashed on the way and the destination appears only
//! when all match. A server keeps every version it may answer with loaded
//! through the verified [`ModelCache`] ([`ModelCache::serve`] with its own
//! loader), and routes requests between variants by a key.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! # use modelreg::*;
//! # let registry = Registry::in_memory();
//! # let me = registry.acting_as(Actor::new("alice")?);
//! # me.create_model("fraud", CreateModel::new()).await?;
//! # for (w, alias) in [("v1", "champion"), ("v2", "challenger")] {
//! #     let v = me.register("fraud", ArtifactSource::bytes("model.bin", w)?, NewVersion::new()).await?;
//! #     me.set_alias(&v, alias, SetAlias::new()).await?;
//! # }
//! # let tmp = tempfile::tempdir().unwrap();
//! let v = registry.resolve("fraud@champion").await?;
//! assert_eq!(registry.resolve("fraud/1").await?, v);
//! assert_eq!(registry.resolve(format!("fraud#{}", v.artifact)).await?, v);
//!
//! let report = registry.fetch(&v, tmp.path().join("serve"), FetchOptions::new()).await?;
//! assert_eq!(report.files, 1);
//!
//! // Verified files on local disk, downloaded once per machine, held while in use.
//! let cache = ModelCache::open(tmp.path().join("cache"), registry.clone(), CacheOptions::new()).await?;
//! let files = cache.get(&v).await?;
//! assert!(files.path().join("model.bin").is_file());
//!
//! // 90/10 between champion and challenger, sticky per user.
//! let split = TrafficSplit::new([("@champion", 90), ("@challenger", 10)])?;
//! me.set_traffic_split("fraud", split, "canary").await?;
//! let routed = registry.route("fraud", "user-42").await?;
//! assert_eq!(registry.route("fraud", "user-42").await?.version, routed.version);
//!
//! // A server: both variants parsed by its loader and kept current; a request
//! // reads nothing and loads nothing.
//! let serving = cache.serve("fraud", WatchOptions::new(), |files| {
//!     Ok(std::fs::read(files.path().join("model.bin"))?)
//! }).await?;
//! let served = serving.current().route(b"user-42")?;
//! assert_eq!(served.model.version().number, routed.version.number);
//! assert_eq!(served.model.as_slice(), format!("v{}", routed.version.number).as_bytes());
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! ### Lifecycle: gates, approvals, rollback, the audit trail
//!
//! Versions move `none → staging → validation → production` through gates that
//! every writer obeys; one call walks the whole path, stops at the first gate that
//! refuses and says why. Every move is an event: who, when, why, each gate's
//! verdict.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use modelreg::{Actor, ArtifactSource, Baseline, CreateModel, Error, GateSpec, HistoryFilter,
//!                MetricSpec, NewVersion, Registry, Stage};
//! let registry = Registry::in_memory();
//! let ci = registry.acting_as(Actor::new("ci")?);
//! let lead = registry.acting_as(Actor::new("lead@example.com")?);
//! ci.create_model("fraud", CreateModel::new().metric("auc", MetricSpec::maximize())).await?;
//! lead.set_gates("fraud", Stage::Production, vec![
//!     GateSpec::MetricsNoWorse { against: Baseline::Production, metrics: vec![] },
//! ]).await?;
//!
//! let good = ci.register("fraud", ArtifactSource::bytes("m.bin", "a")?,
//!                        NewVersion::new().metric("auc", 0.92)).await?;
//! ci.promote_to(&good, Stage::Production, "first model").await?;
//!
//! let worse = ci.register("fraud", ArtifactSource::bytes("m.bin", "b")?,
//!                         NewVersion::new().metric("auc", 0.85)).await?;
//! match ci.promote_to(&worse, Stage::Production, "try it").await {
//!     Err(Error::GateRejected { failed, .. }) => assert_eq!(failed.len(), 1),
//!     other => panic!("expected a refusal, got {other:?}"),
//! }
//! // The steps before the refusing gate were taken and recorded.
//! assert_eq!(registry.resolve(&worse).await?.stage, Stage::Validation);
//!
//! // Rollback is one audited call (here nothing held production before: refused).
//! assert!(lead.rollback("fraud", "incident 42").await.is_err());
//! let trail = registry.history("fraud", &HistoryFilter::new().kind("stage_changed")).await?;
//! assert_eq!(trail.len(), 5); // newest first: two steps of `worse`, three of `good`
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! ### Lineage and comparison
//!
//! Parents, datasets and code commits form a graph across models; any two
//! versions compare field by field, metrics judged by the model's specs.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use modelreg::{Actor, ArtifactSource, CreateModel, MetricSpec, NewVersion, OverallVerdict,
//!                Registry, Relation};
//! let registry = Registry::in_memory();
//! let ci = registry.acting_as(Actor::new("ci")?);
//! ci.create_model("llm", CreateModel::new().metric("accuracy", MetricSpec::maximize())).await?;
//! let base = ci.register("llm", ArtifactSource::bytes("w.bin", "base")?,
//!                        NewVersion::new().metric("accuracy", 0.71).param("lr", 1e-4)).await?;
//! let tuned = ci.register("llm", ArtifactSource::bytes("w.bin", "tuned")?,
//!                         NewVersion::new().metric("accuracy", 0.78).param("lr", 2e-5)
//!                             .parent(&base, Relation::FineTunedFrom)).await?;
//!
//! let diff = registry.compare(&base, &tuned).await?;
//! assert_eq!(diff.verdict, OverallVerdict::Improved);
//! println!("{diff}");
//! let upstream = registry.upstream(&tuned, None).await?;
//! println!("{}", upstream.to_mermaid());
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! ### On object storage
//!
//! The same registry lives in a bucket (features `aws`, `gcp`, `azure`), shared
//! by writers on many machines: `s3://bucket/prefix`, `gs://…`, `az://…`,
//! `file:///path`, or `memory://`.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let registry = modelreg::Registry::open_url("memory://").await?;
//! assert!(registry.list_models().await?.is_empty());
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! ### Writing a store
//!
//! A backend implements [`store::MetadataStore`] (numbered, create-if-absent
//! logs) or [`store::ArtifactStore`] (content-addressed blobs): bytes and keys
//! only, no domain rules. [`Registry::builder`] takes any pair; the conformance
//! suite in `tests/common/store_suite.rs` says what a store must do. A wrapper
//! can forward to an existing store and add what it needs:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use modelreg::store::{MemoryArtifactStore, MemoryMetadataStore, MetadataStore};
//! use modelreg::{Actor, CreateModel, Registry};
//!
//! let metadata: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
//! let registry = Registry::builder()
//!     .metadata(Arc::clone(&metadata))
//!     .artifacts(Arc::new(MemoryArtifactStore::new()))
//!     .build()?;
//! registry.acting_as(Actor::new("alice")?).create_model("fraud", CreateModel::new()).await?;
//! // The model's first event, as the store holds it.
//! assert_eq!(metadata.read_after("fraud", 0, 10).await?.len(), 1);
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! Programs that are not async use [`blocking::Registry`], the same API without
//! `async`.
//!
//! ## Layers
//!
//! - The domain: pure types and rules — names, [`VersionRef`], [`Manifest`],
//!   [`VersionRecord`], [`Event`], and [`ModelState`], the fold of a model's
//!   events. No I/O.
//! - [`Registry`] and [`Session`]: check commands against the folded state,
//!   append events with create-if-absent and retry on conflict, store and fetch
//!   artifacts, watch references and route requests. [`ModelCache`] and
//!   [`blocking`] are built on their public API.
//! - [`store`]: [`MetadataStore`](store::MetadataStore) (numbered logs) and
//!   [`ArtifactStore`](store::ArtifactStore) (content-addressed blobs), in memory,
//!   on the local filesystem and on object storage. Bytes and keys only.
//!
//! ## Errors
//!
//! Everything returns [`Result`], whose [`Error`] is one `#[non_exhaustive]` enum
//! with named fields: match on `Error::NotFound { .. }`, `Error::Conflict { .. }`,
//! `Error::Integrity { .. }` and so on.

// The local store, the hash cache and file hashing use `std::os::unix` (positioned
// reads, inode identity, permission bits). README.md, "Platform support".
#[cfg(not(unix))]
compile_error!(
    "modelreg supports Unix only (Linux is tested, macOS is expected to work): \
     its local store and file hashing use std::os::unix"
);

pub mod blocking;
/// Implements serde for a type as its text form: `Display` out, `FromStr` in (so
/// deserializing re-checks every rule).
macro_rules! serde_as_text {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                // Parses the text where the deserializer holds it: no copy into
                // a `String` first.
                struct Text;
                impl serde::de::Visitor<'_> for Text {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: serde::de::Error>(
                        self,
                        s: &str,
                    ) -> std::result::Result<$ty, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(Text)
            }
        }
    };
}

mod cache;
mod capture;
mod digest;
mod domain;
mod error;
mod follow;
pub(crate) mod hash_cache;
pub(crate) mod hashing;
#[cfg(feature = "oci")]
pub mod oci;
mod offload;
mod progress;
mod registry;
#[cfg(feature = "serve")]
pub mod server;
pub mod store;

/// The on-disk and on-the-wire formats, for tools that read a registry's stored
/// records without a [`Registry`]: the record frame (JSON plus a checksum line),
/// the checkpoint codec and the format version of each kind of record.
///
/// Record framing: how events and checkpoints are sealed with a checksum.
///
/// A sealed record is its compact JSON on one line, then one line holding the
/// BLAKE3 digest of that JSON:
///
/// ```text
/// {"format":1,"seq":2,…}\n
/// blake3:<64 hex>\n
/// ```
///
/// Compact JSON never contains a raw newline (newlines inside strings are
/// escaped), so the JSON is everything before the last line (found from the
/// end, so a 36 MiB checkpoint is not scanned for it). A record whose
/// checksum is missing or does not match its JSON is [`Error::Corrupt`]: a flipped
/// bit that still parses as JSON (a metric `0.91` become `0.81`) is caught too.
/// Manifests need no frame: they are stored under their own digest.
pub mod format {
    pub use crate::domain::codec::{seal, unseal};
    pub use crate::domain::event::EVENT_FORMAT;
    pub use crate::domain::manifest::MANIFEST_FORMAT;
    pub use crate::domain::state::{
        CHECKPOINT_FORMAT, CheckpointHead, Patch, SEGMENT_VERSIONS, SEGMENTED_FORMAT, Segment,
        SegmentedHead, decode_checkpoint, decode_checkpoint_head, encode_checkpoint, encode_patch,
        encode_patched_head, encode_segment, encode_segmented_head,
    };

    use crate::domain::{ModelName, ModelState};
    use crate::error::Result;
    use crate::store::{Checkpoint, MetadataStore};

    /// Reads the checkpoint `cp` of `model` from `meta` whole: a format 1 to 4
    /// checkpoint is decoded as it is, a format 5, 6 or 7 one with the parts it
    /// names (segments and patches), each checked against its digest, and every
    /// record decoded (the registry's own reads leave a format 6 or 7
    /// checkpoint's records in their parts until they are asked for).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt) if the checkpoint or one of its segments is damaged,
    /// torn or missing; [`Error::UnsupportedFormat`](crate::Error::UnsupportedFormat) for a format this build does
    /// not know; a store error if a segment cannot be read.
    pub async fn read_checkpoint(
        meta: &dyn MetadataStore,
        model: &ModelName,
        cp: Checkpoint,
    ) -> Result<ModelState> {
        let (state, _) = crate::registry::segmented::read(meta, model, cp).await?;
        crate::offload::offload(move || state.decode_all().map(|()| state)).await?
    }
}

// Re-exported so that users name the exact versions this crate speaks: semver
// labels and requirements, and times.
pub use chrono;
pub use semver;

pub use cache::{CacheEntry, CacheOptions, CachedModel, EvictReport, ModelCache};
pub use digest::{Digest, Sha256};
pub use domain::limits;
pub use domain::retention;
pub use domain::scan;
pub use domain::signing;
pub use domain::{
    Actor, AliasName, AliasTarget, Approval, ArtifactDiff, Baseline, CodeChange, CodeKey, CodeRef,
    DatasetChange, DatasetDiff, DatasetKey, DatasetRef, DatasetRole, Decision, Deprecation,
    Environment, Event, EventKind, FileChange, FormatScan, Gate, GatePolicy, GateSpec, GateVerdict,
    Goal, HyperValue, Hyperparameters, KeyedValue, LineageEdgeKind, LineageGraph, LineageNode,
    LineagePath, LineageStep, LineageSubgraph, Manifest, ManifestEntry, MapDiff, MetricDiff,
    MetricName, MetricPoint, MetricSpec, MetricVerdict, Metrics, ModelName, ModelState,
    ModelSummary, OverallVerdict, ParentRef, Protection, Provenance, Purge, ReachedNode, RelPath,
    Relation, RetentionPlan, RetentionPolicy, Route, RouteTarget, Routed, Selector, Stage,
    SubgraphEdge, TagKey, Tags, TrafficSplit, Transition, TransitionCheck, ValueChange,
    VersionDiff, VersionKey, VersionNumber, VersionRecord, VersionRef, VersionSignature,
    VersionSummary, compare_versions, flatten_hyperparameters, metric_history, metric_verdict,
};
pub use error::{BoxError, Error, Missing, OciProblem, Result, SignatureFailure};
pub use follow::{Followed, Loaded, Served, Serving};
pub use progress::{Progress, ProgressEvent};
pub use registry::{
    ArtifactSource, CheckReport, CreateModel, FetchOptions, FetchReport, GcOptions, GcReport,
    HistoryFilter, IntoLineageStart, IntoMetrics, IntoModelName, IntoSemver, IntoSemverReq,
    IntoVersionRef, LineageStart, NewVersion, Override, Page, Problem, ProtectedVersion,
    RegisterReport, Registered, Registry, RegistryBuilder, RetentionReport, RetryPolicy, Session,
    SetAlias, SignatureBundle, SignatureCheck, SignatureReport, VerifyReport, VersionFilter,
    VersionOrder, VersionPage, WatchOptions,
};
pub use store::LinkMode;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
