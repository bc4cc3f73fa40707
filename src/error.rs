//! The crate's one error type.
//!
//! Every fallible public function returns [`Result<T>`](Result), whose error is
//! [`Error`]. The enum is `#[non_exhaustive]` and every variant has named fields, so
//! callers can match on what they care about (`Error::NotFound { .. }`,
//! `Error::Conflict { .. }`) and new variants can be added without breaking them.
//! Messages name the model, version, file or store involved.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::domain::lifecycle::{GateVerdict, Stage};
use crate::domain::retention::Protection;

/// A boxed error from a lower layer (an I/O error, an object store error, …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What an [`Error::NotFound`] did not find.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// A model (no log under that name).
    Model {
        /// The model.
        model: String,
    },
    /// A version: `reference` did not resolve in `model` (`fraud/7`,
    /// `fraud@latest`, `fraud@production`, `fraud:1.4.0`, `fraud#blake3:…`).
    Version {
        /// The model.
        model: String,
        /// The reference that did not resolve.
        reference: String,
    },
    /// An alias of a model.
    Alias {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
    },
    /// The traffic split of a model (none is set).
    TrafficSplit {
        /// The model.
        model: String,
    },
    /// A blob in the artifact store: a file's bytes or a manifest.
    Blob {
        /// The blob's digest.
        digest: Digest,
    },
    /// Anything else: a lineage node, a store's record.
    Other,
}

/// What an [`Error::Oci`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OciProblem {
    /// The registry could not be reached: connection refused, name resolution,
    /// TLS, a timeout.
    Unreachable,
    /// The reference names no manifest in the registry.
    NotFound,
    /// The registry answered with an error: denied, unauthorized, a manifest or
    /// blob it does not accept.
    Refused,
    /// The artifact is not a CNCF ModelPack model (its artifact type or config
    /// media type says otherwise), or its manifest or config does not decode.
    NotModelPack,
    /// A downloaded blob's SHA-256 or size differs from its descriptor's.
    DigestMismatch,
}

impl OciProblem {
    /// A short name: `unreachable`, `not found`, `refused`, `not a ModelPack
    /// artifact`, `digest mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            OciProblem::Unreachable => "unreachable",
            OciProblem::NotFound => "not found",
            OciProblem::Refused => "refused",
            OciProblem::NotModelPack => "not a ModelPack artifact",
            OciProblem::DigestMismatch => "digest mismatch",
        }
    }
}

impl fmt::Display for OciProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why an [`Error::Signature`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureFailure {
    /// The bundle is not valid JSON of a Sigstore bundle, or its statement is
    /// inconsistent (bad base64, a subject digest that is not the resources').
    Malformed,
    /// A well-formed bundle of a kind this build does not verify: keyless
    /// (certificate) bundles, sharded serialization, other predicates.
    Unsupported,
    /// The statement lists other files, or other digests, than the version's.
    FilesMismatch,
    /// The bundle names a key that is not among those given.
    UnknownKey,
    /// The envelope's signature does not verify with the key.
    BadSignature,
    /// Fewer distinct trusted keys signed the version than the trust policy
    /// requires.
    PolicyNotMet,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `modelreg`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model, version, alias, blob or record does not exist. Match on
    /// `missing` to tell which (a missing model from a missing alias) without
    /// reading the message.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, for people: e.g. `model 'fraud'`,
        /// `version fraud@latest`, `blob blake3:… (file 'w.bin' of fraud/3)`.
        what: String,
        /// What was looked for, for programs.
        missing: Missing,
    },

    /// Something that must be unique exists already: a model name, a semver label
    /// within a model, a destination directory that is not empty, an event slot.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What collided, e.g. `model 'fraud'` or `semver 1.4.0 of model 'fraud'`.
        what: String,
    },

    /// A name (model, alias, metric, tag key, actor, …) breaks its rules.
    #[error("invalid {kind} {input:?}: {reason}")]
    InvalidName {
        /// Which kind of name: `model name`, `alias`, `metric name`, …
        kind: &'static str,
        /// The rejected input (truncated to 200 characters).
        input: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// A version reference such as `fraud@production` could not be parsed.
    #[error("invalid version reference {input:?} at byte {position}: {reason}")]
    InvalidReference {
        /// The rejected input (truncated to 200 characters).
        input: String,
        /// Byte offset in `input` where the problem starts.
        position: usize,
        /// What is wrong there.
        reason: String,
    },

    /// A path inside an artifact (a manifest entry or a source file) is unsafe or
    /// unsupported: absolute, `..`, empty segment, NUL, duplicate, case collision,
    /// a symbolic link that leaves the source directory, a device file.
    #[error("invalid artifact path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path, lossily converted to UTF-8.
        path: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// An input value is out of its domain: a NaN metric, a hyperparameter nested too
    /// deep, a parent that does not exist, an event that does not fit the model's state.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was rejected, e.g. `metric 'auc' of fraud/3`.
        what: String,
        /// Why.
        reason: String,
    },

    /// A user-supplied value exceeds one of the documented limits in
    /// [`limits`](crate::limits): a text field, the number of entries of a map or
    /// list, or the encoded event as a whole. Nothing was written.
    #[error("{what} is too large: {actual} {unit}, the limit is {limit}")]
    TooLarge {
        /// What was rejected, e.g. `hyperparameter 'prompt'` or `event
        /// version_registered of model 'fraud'`.
        what: String,
        /// The unit of `limit` and `actual`: `characters`, `entries` or `bytes`.
        unit: &'static str,
        /// The largest accepted size.
        limit: u64,
        /// The size given.
        actual: u64,
    },

    /// Concurrent writers kept winning the race for the next event of a model and
    /// the registry gave up after its bounded retries. Nothing was written by this
    /// call; it is safe to retry.
    #[error(
        "conflict on model '{model}': gave up after {attempts} attempts, other writers kept appending"
    )]
    Conflict {
        /// The model whose log was contended.
        model: String,
        /// How many attempts were made.
        attempts: u32,
    },

    /// The transition table does not allow moving a version from its stage to the
    /// requested one.
    #[error(
        "cannot move {model}/{version} from {from} to {to}: allowed targets from {from} are {}",
        list_stages(allowed)
    )]
    InvalidTransition {
        /// The model.
        model: String,
        /// The version number.
        version: u64,
        /// Its current stage.
        from: Stage,
        /// The stage requested.
        to: Stage,
        /// Where it may go from `from`.
        allowed: Vec<Stage>,
    },

    /// One or more gates refused a transition (or a protected alias move). Nothing
    /// changed.
    #[error(
        "moving {model}/{version} to {to} was refused: {}",
        list_failures(failed)
    )]
    GateRejected {
        /// The model.
        model: String,
        /// The version number.
        version: u64,
        /// The stage requested (production, for a protected alias).
        to: Stage,
        /// Every gate that refused, with its reason.
        failed: Vec<GateVerdict>,
    },

    /// The version is in production, where its tags and metrics are fixed: what
    /// was approved is what the record says. Nothing was written. Change it
    /// through [`Session::override_immutable`](crate::Session::override_immutable),
    /// which records who did and why.
    #[error(
        "{model}/{version} is in {stage}: its {what} cannot be changed without an explicit override (override_immutable with a reason)"
    )]
    Immutable {
        /// The model.
        model: String,
        /// The version number.
        version: u64,
        /// Its stage.
        stage: Stage,
        /// What the command would have changed: `tags`, `metrics` or `description`.
        what: &'static str,
    },

    /// The version's artifact was purged (see [`retention`](crate::retention)):
    /// its record and history remain, its files are no longer kept. Fetching,
    /// verifying, scanning or reading the manifest of a purged version fails
    /// with this, never with a missing blob.
    #[error(
        "{model}/{version} was purged at {at} by {by} ({reason}): its files are no longer kept; its record and history remain"
    )]
    Purged {
        /// The model.
        model: String,
        /// The version number.
        version: u64,
        /// When it was purged.
        at: chrono::DateTime<chrono::Utc>,
        /// Who purged it.
        by: String,
        /// Why.
        reason: String,
    },

    /// A purge was refused: the version is protected (in a stage, behind an
    /// alias or a traffic split, the rollback target, or tagged `keep`; see
    /// [`retention`](crate::retention)). Nothing was written.
    #[error(
        "{model}/{version} is protected and was not purged: {}",
        crate::domain::retention::list_protections(protections)
    )]
    Protected {
        /// The model.
        model: String,
        /// The version number.
        version: u64,
        /// Every protection that holds.
        protections: Vec<Protection>,
    },

    /// A signature bundle did not verify, or a version's signatures do not meet
    /// the caller's [`TrustPolicy`](crate::signing::TrustPolicy). Match on
    /// `failure` to tell why. Nothing was recorded, written or handed out.
    #[error("{what}: {reason}")]
    Signature {
        /// What was checked, e.g. `signature bundle` or `signatures of fraud/3`.
        what: String,
        /// Why it failed, for programs.
        failure: SignatureFailure,
        /// Why it failed, for people.
        reason: String,
    },

    /// What a command was based on changed while it ran (another writer promoted,
    /// moved the same version, rolled back or moved the alias first). Nothing was
    /// written; re-read the state and decide again.
    #[error("{what} of model '{model}' changed while this command ran; nothing was written")]
    ConcurrentChange {
        /// The model.
        model: String,
        /// What changed, e.g. `the production version (was 3, now 4)`.
        what: String,
    },

    /// Bytes did not hash to the digest they were stored or referenced under.
    #[error(
        "integrity check failed for {what}{}: expected {expected}, found {actual}",
        at(location)
    )]
    Integrity {
        /// Which file or blob, e.g. `fraud/3 file 'weights.bin'`.
        what: String,
        /// The digest the bytes should have.
        expected: Digest,
        /// The digest they have.
        actual: Digest,
        /// Where the bad bytes are stored (a file path or object URL, from
        /// [`ArtifactStore::location`](crate::store::ArtifactStore::location)),
        /// when they came from a store.
        location: Option<String>,
    },

    /// A source file changed (size, modification or change time, or inode) while it
    /// was being stored, so what was read may mix old and new bytes. Nothing was
    /// registered; register again once the file is complete.
    #[error("source file {} changed while it was being stored; nothing was registered", path.display())]
    SourceChanged {
        /// The source file.
        path: PathBuf,
    },

    /// A persisted record carries a format version this build does not understand.
    /// The record is not skipped: skipping an event would silently change history.
    #[error(
        "{record}{} has format version {found}, this build understands up to {supported}",
        at(location)
    )]
    UnsupportedFormat {
        /// The record, e.g. `event 12 of model 'fraud'`.
        record: String,
        /// The format version found.
        found: u32,
        /// The newest format version this build reads.
        supported: u32,
        /// Where the record is stored (a file path or object URL), when it was read
        /// from a store.
        location: Option<String>,
    },

    /// A persisted record could not be decoded, or decodes to something that cannot
    /// be (an event out of sequence, a manifest whose entries are not sorted).
    #[error("corrupt {record}{}: {reason}", at(location))]
    Corrupt {
        /// The record, e.g. `event 12 of model 'fraud'` or `manifest blake3:…`.
        record: String,
        /// What is wrong with it.
        reason: String,
        /// Where the record is stored: a file path such as
        /// `/srv/reg/metadata/logs/v1/fraud/records/00000000000000000012.rec` or an
        /// object URL such as `s3://bucket/reg/metadata/logs/v1/…`, as the store's
        /// [`MetadataStore::location`](crate::store::MetadataStore::location) or
        /// [`ArtifactStore::location`](crate::store::ArtifactStore::location) names
        /// it. `None` for bytes that did not come from a store.
        location: Option<String>,
    },

    /// A backend failed to carry out an operation.
    #[error("{store}: {operation} {key} failed: {source}")]
    Storage {
        /// The store, e.g. `local metadata store at /srv/reg/metadata`.
        store: String,
        /// The operation, e.g. `append`, `put`, `get`.
        operation: &'static str,
        /// The key or path involved.
        key: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// A loader given to [`ModelCache::serve`](crate::ModelCache::serve) failed
    /// on a version's files (its own error, e.g. weights that do not parse).
    #[error("loading {version} failed: {source}")]
    Load {
        /// The version whose files were being loaded, e.g. `fraud/7`.
        version: String,
        /// The loader's error.
        #[source]
        source: BoxError,
    },

    /// Pushing to or pulling from an OCI registry failed (the `oci` feature): the
    /// registry could not be reached or refused, the artifact is not a CNCF
    /// ModelPack model, or a downloaded blob is not what its descriptor says.
    /// A failed pull registered nothing; a failed push may leave blobs in the
    /// OCI registry, never a manifest that points at missing ones.
    #[error("OCI {operation} {reference} failed ({problem}): {detail}")]
    Oci {
        /// The OCI reference, e.g. `registry.example.com/models/fraud:v3`.
        reference: String,
        /// What was being done: `push`, `pull`, `attach referrer`.
        operation: &'static str,
        /// What went wrong, for programs.
        problem: OciProblem,
        /// What went wrong, for people (the registry's answer, the blob, the path).
        detail: String,
    },

    /// Reading a source file or writing a destination file outside any store failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A copy of an input error a builder kept for its command to report (see
    /// `registry::options::Deferred`). Builders only keep the input errors, which
    /// are plain data; anything else is copied as its message.
    pub(crate) fn replicate(&self) -> Error {
        match self {
            Error::InvalidName {
                kind,
                input,
                reason,
            } => Error::InvalidName {
                kind,
                input: input.clone(),
                reason: reason.clone(),
            },
            Error::InvalidReference {
                input,
                position,
                reason,
            } => Error::InvalidReference {
                input: input.clone(),
                position: *position,
                reason: reason.clone(),
            },
            Error::InvalidPath { path, reason } => Error::InvalidPath {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::InvalidInput { what, reason } => Error::InvalidInput {
                what: what.clone(),
                reason: reason.clone(),
            },
            other => Error::invalid_input("input", other.to_string()),
        }
    }

    /// Builds [`Error::NotFound`] of something that is none of the kinds in
    /// [`Missing`].
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::missing(Missing::Other, what)
    }

    /// Builds [`Error::NotFound`].
    pub(crate) fn missing(missing: Missing, what: impl Into<String>) -> Self {
        Error::NotFound {
            what: what.into(),
            missing,
        }
    }

    /// [`Error::NotFound`] of a model.
    pub(crate) fn model_not_found(model: impl fmt::Display) -> Self {
        Error::missing(
            Missing::Model {
                model: model.to_string(),
            },
            format!("model '{model}'"),
        )
    }

    /// [`Error::NotFound`] of a version: `reference` (`fraud/7`, `fraud@latest`)
    /// did not resolve in `model`.
    pub(crate) fn version_not_found(
        model: impl fmt::Display,
        reference: impl fmt::Display,
    ) -> Self {
        let reference = reference.to_string();
        Error::missing(
            Missing::Version {
                model: model.to_string(),
                reference: reference.clone(),
            },
            format!("version {reference}"),
        )
    }

    /// [`Error::NotFound`] of a blob, `what` saying which (`manifest blob …`,
    /// `blob … (file 'x' of fraud/3)`).
    pub(crate) fn blob_not_found(digest: Digest, what: impl Into<String>) -> Self {
        Error::missing(Missing::Blob { digest }, what)
    }

    /// Builds [`Error::AlreadyExists`].
    pub(crate) fn already_exists(what: impl Into<String>) -> Self {
        Error::AlreadyExists { what: what.into() }
    }

    /// Builds [`Error::InvalidName`], truncating a long input.
    pub(crate) fn invalid_name(kind: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Error::InvalidName {
            kind,
            input: truncate(input),
            reason: reason.into(),
        }
    }

    /// Builds [`Error::InvalidPath`].
    pub(crate) fn invalid_path(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidPath {
            path: truncate(&path.into()),
            reason: reason.into(),
        }
    }

    /// Builds [`Error::InvalidInput`].
    pub(crate) fn invalid_input(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Corrupt`], without a location (see [`at`](Self::at)).
    pub(crate) fn corrupt(record: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            record: record.into(),
            reason: reason.into(),
            location: None,
        }
    }

    /// Where the damaged record or blob is stored, for [`Error::Corrupt`],
    /// [`Error::UnsupportedFormat`] and [`Error::Integrity`] errors about stored
    /// bytes: a file path or an object URL.
    pub fn location(&self) -> Option<&str> {
        match self {
            Error::Corrupt { location, .. }
            | Error::UnsupportedFormat { location, .. }
            | Error::Integrity { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    /// Names where the bytes this error is about are stored, if it is an error
    /// about stored bytes ([`Error::Corrupt`], [`Error::UnsupportedFormat`],
    /// [`Error::Integrity`]) that does not name it yet. Other errors pass
    /// unchanged. The decoders are pure and know no store: whoever read the bytes
    /// adds where from.
    pub(crate) fn at(mut self, where_: impl FnOnce() -> String) -> Self {
        if let Error::Corrupt { location, .. }
        | Error::UnsupportedFormat { location, .. }
        | Error::Integrity { location, .. } = &mut self
            && location.is_none()
        {
            *location = Some(where_());
        }
        self
    }

    /// Builds [`Error::Storage`].
    pub(crate) fn storage(
        store: impl Into<String>,
        operation: &'static str,
        key: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Storage {
            store: store.into(),
            operation,
            key: key.into(),
            source: source.into(),
        }
    }

    /// Builds [`Error::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// ` at <location>`, or nothing.
fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map_or_else(String::new, |l| format!(" at {l}"))
}

fn list_stages(stages: &[Stage]) -> String {
    if stages.is_empty() {
        return "none".into();
    }
    stages
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_failures(failed: &[GateVerdict]) -> String {
    failed
        .iter()
        .map(|v| format!("{}: {}", v.gate, v.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Shortens user input quoted in an error message to at most 200 characters.
pub(crate) fn truncate(input: &str) -> String {
    const MAX: usize = 200;
    if input.chars().count() <= MAX {
        input.to_owned()
    } else {
        let mut s: String = input.chars().take(MAX).collect();
        s.push('…');
        s
    }
}
