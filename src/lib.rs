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
//! Open a registry, create a model, register a version from files:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use modelreg::{Actor, ArtifactSource, CreateModel, FetchOptions, Metrics, MetricSpec,
//!                NewVersion, Registry};
//!
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path();
//! let registry = Registry::open_local(dir.join("registry")).await?;
//! let alice = Actor::new("alice@example.com")?;
//!
//! registry
//!     .create_model("fraud", CreateModel::by(alice.clone())
//!         .description("card fraud scoring")
//!         .metric("auc", MetricSpec::maximize())?)
//!     .await?;
//!
//! # std::fs::create_dir_all(dir.join("checkpoint")).unwrap();
//! # std::fs::write(dir.join("checkpoint/model.safetensors"), b"weights").unwrap();
//! let v1 = registry
//!     .register(
//!         "fraud",
//!         ArtifactSource::dir(dir.join("checkpoint")),
//!         NewVersion::by(alice.clone())
//!             .semver("1.0.0".parse().unwrap())
//!             .metrics(Metrics::new().with("auc", 0.91)?),
//!     )
//!     .await?;
//! assert_eq!(v1.number.get(), 1);
//! println!("registered fraud/{} = {}", v1.number, v1.artifact);
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! Resolve references and fetch files, verified:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! # use modelreg::*;
//! # let registry = Registry::in_memory();
//! # let alice = Actor::new("alice")?;
//! # registry.create_model("fraud", CreateModel::by(alice.clone())).await?;
//! # registry.register("fraud", ArtifactSource::bytes("model.bin", "w")?,
//! #     NewVersion::by(alice).semver("1.0.0".parse().unwrap())).await?;
//! # let tmp = tempfile::tempdir().unwrap();
//! // One grammar for references: number, semver, alias, latest, digest.
//! let v = registry.resolve("fraud:1.0.0").await?;
//! assert_eq!(registry.resolve("fraud/1").await?, v);
//! assert_eq!(registry.resolve("fraud@latest").await?, v);
//!
//! // Every file is re-hashed on the way; the destination appears only when all match.
//! let report = registry.fetch("fraud@latest", tmp.path().join("serve"), FetchOptions::new()).await?;
//! assert_eq!(report.files, 1);
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! ## Serving
//!
//! An inference server watches a reference, gets the files through a verified
//! local cache, and routes requests between variants by a key:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! # use modelreg::*;
//! # let registry = Registry::in_memory();
//! # let me = Actor::new("alice")?;
//! # registry.create_model("fraud", CreateModel::by(me.clone())).await?;
//! # for w in ["v1", "v2"] {
//! #     registry.register("fraud", ArtifactSource::bytes("model.bin", w)?, NewVersion::by(me.clone())).await?;
//! # }
//! # registry.set_alias("fraud/1", "champion", SetAlias::by(me.clone())).await?;
//! # registry.set_alias("fraud/2", "challenger", SetAlias::by(me.clone())).await?;
//! # let tmp = tempfile::tempdir().unwrap();
//! use futures::StreamExt;
//!
//! // A stream of versions: the current one, then one per move of the alias.
//! let mut champion = registry.watch("fraud@champion", WatchOptions::new())?.boxed();
//! let current = champion.next().await.unwrap()?;
//!
//! // Verified files on local disk, downloaded once per machine, held while in use.
//! let cache = ModelCache::open(tmp.path(), registry.clone(), CacheOptions::new().max_bytes(10 << 30)).await?;
//! let files = cache.get(format!("fraud/{}", current.number)).await?;
//! assert!(files.path().join("model.bin").is_file());
//!
//! // 90/10 between champion and challenger, sticky per user.
//! let split = TrafficSplit::new([("@champion", 90), ("@challenger", 10)])?;
//! registry.set_traffic_split("fraud", split, &me, "canary").await?;
//! let routed = registry.route("fraud", "user-42").await?;
//! assert_eq!(registry.route("fraud", "user-42").await?.version, routed.version);
//! # Ok::<(), modelreg::Error>(()) }).unwrap();
//! ```
//!
//! Programs that are not async use [`blocking::Registry`], the same API without
//! `async`.
//!
//! ## Layers
//!
//! - [`domain`]: pure types and rules — names, [`VersionRef`], [`Manifest`],
//!   [`VersionRecord`], [`Event`], and [`ModelState`], the fold of a model's events.
//! - [`Registry`]: checks commands against the folded state, appends events with
//!   create-if-absent and retries on conflict, stores and fetches artifacts,
//!   watches references and routes requests.
//! - [`cache`] and [`blocking`]: the model cache and the blocking facade, built on
//!   [`Registry`]'s public API.
//! - [`store`]: [`MetadataStore`](store::MetadataStore) (numbered logs) and
//!   [`ArtifactStore`](store::ArtifactStore) (content-addressed blobs), in memory,
//!   on the local filesystem and on object storage (S3, GCS, Azure through
//!   `object_store`; [`Registry::open_url`]). Bytes and keys only.
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
pub mod cache;
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

mod capture;
pub mod digest;
pub mod domain;
pub mod error;
pub(crate) mod hash_cache;
pub(crate) mod hashing;
pub mod registry;
pub mod store;

pub use cache::{CacheEntry, CacheOptions, CachedModel, EvictReport, ModelCache};
pub use digest::Digest;
pub use domain::*;
pub use error::{Error, Result};
pub use registry::{
    ArtifactSource, CheckReport, CreateModel, FetchOptions, FetchReport, GcOptions, GcReport,
    HistoryFilter, IntoModelName, IntoVersionRef, NewVersion, Registry, RegistryBuilder,
    RetryPolicy, SetAlias, VerifyReport, VersionFilter, WatchOptions,
};
pub use registry::{IntoLineageStart, LineageStart};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
