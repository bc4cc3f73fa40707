//! Option structs and builders for registry commands and queries.
//!
//! Builders never return `Result`: a builder step that meets bad input (an
//! invalid tag key, a semver label that does not parse, a NaN metric) keeps the
//! first such error and the command that receives the builder reports it, before
//! it reads or writes anything — as `reqwest`'s `RequestBuilder` does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    Actor, CodeRef, DatasetRef, Environment, Event, EventKind, HyperValue, MetricName, MetricSpec,
    Metrics, Provenance, Relation, Stage, TagKey, Tags, VersionNumber, VersionRecord, VersionRef,
};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::LinkMode;

use super::IntoVersionRef;

/// The first error a builder met, reported by the command that runs it.
#[derive(Debug, Default)]
pub(crate) struct Deferred(Option<Error>);

impl Clone for Deferred {
    fn clone(&self) -> Self {
        Deferred(self.0.as_ref().map(Error::replicate))
    }
}

impl Deferred {
    /// The value, or `None` after keeping the error (only the first is kept).
    pub(crate) fn keep<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(t) => Some(t),
            Err(e) => {
                self.0.get_or_insert(e);
                None
            }
        }
    }

    /// `Err` with the first error kept, if any.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.0 {
            Some(e) => Err(e.replicate()),
            None => Ok(()),
        }
    }
}

/// Anything that is a semver version: `"1.4.0"`, `String`, [`semver::Version`].
/// Text is parsed when the command runs.
pub trait IntoSemver {
    /// Parses or passes on the version.
    fn into_semver(self) -> Result<semver::Version>;
}

impl IntoSemver for semver::Version {
    fn into_semver(self) -> Result<semver::Version> {
        Ok(self)
    }
}
impl IntoSemver for &semver::Version {
    fn into_semver(self) -> Result<semver::Version> {
        Ok(self.clone())
    }
}
impl IntoSemver for &str {
    fn into_semver(self) -> Result<semver::Version> {
        self.parse()
            .map_err(|e| Error::invalid_input(format!("semver {self:?}"), format!("{e}")))
    }
}
impl IntoSemver for String {
    fn into_semver(self) -> Result<semver::Version> {
        self.as_str().into_semver()
    }
}
impl IntoSemver for &String {
    fn into_semver(self) -> Result<semver::Version> {
        self.as_str().into_semver()
    }
}

/// Anything that is a semver requirement: `"^1.2"`, `String`,
/// [`semver::VersionReq`]. Text is parsed when the query runs.
pub trait IntoSemverReq {
    /// Parses or passes on the requirement.
    fn into_semver_req(self) -> Result<semver::VersionReq>;
}

impl IntoSemverReq for semver::VersionReq {
    fn into_semver_req(self) -> Result<semver::VersionReq> {
        Ok(self)
    }
}
impl IntoSemverReq for &str {
    fn into_semver_req(self) -> Result<semver::VersionReq> {
        self.parse().map_err(|e| {
            Error::invalid_input(format!("semver requirement {self:?}"), format!("{e}"))
        })
    }
}
impl IntoSemverReq for String {
    fn into_semver_req(self) -> Result<semver::VersionReq> {
        self.as_str().into_semver_req()
    }
}

/// Metrics as a command takes them: a [`Metrics`] value, or any list of
/// `(name, value)` pairs such as `[("auc", 0.93), ("loss", 0.21)]`. Names and
/// values are checked when the command runs (a name must be a valid
/// [`MetricName`], a value finite).
pub trait IntoMetrics {
    /// Checks and collects the metrics.
    fn into_metrics(self) -> Result<Metrics>;
}

impl IntoMetrics for Metrics {
    fn into_metrics(self) -> Result<Metrics> {
        Ok(self)
    }
}
impl IntoMetrics for &Metrics {
    fn into_metrics(self) -> Result<Metrics> {
        Ok(self.clone())
    }
}
impl<I, K> IntoMetrics for I
where
    I: IntoIterator<Item = (K, f64)>,
    K: AsRef<str>,
{
    fn into_metrics(self) -> Result<Metrics> {
        let mut metrics = Metrics::new();
        for (k, v) in self {
            metrics.insert(MetricName::new(k.as_ref())?, v)?;
        }
        Ok(metrics)
    }
}

/// How a new model starts: what it is for, how its metrics are judged and its
/// tags. Who creates it is the [`Session`](crate::Session)'s actor.
///
/// ```
/// use modelreg::{CreateModel, MetricSpec};
/// let opts = CreateModel::new()
///     .description("Card fraud scoring")
///     .metric("auc", MetricSpec::maximize().with_tolerance(0.005))
///     .metric("latency_ms", MetricSpec::minimize())
///     .tag("team", "risk");
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct CreateModel {
    pub(crate) description: String,
    pub(crate) metric_specs: BTreeMap<MetricName, MetricSpec>,
    pub(crate) tags: Tags,
    pub(crate) error: Deferred,
}

impl CreateModel {
    /// A model with no description, specs or tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the model is for.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// How a metric is judged (goal and tolerance). An invalid name is reported
    /// by the command.
    pub fn metric(mut self, name: &str, spec: MetricSpec) -> Self {
        if let Some(name) = self.error.keep(MetricName::new(name)) {
            self.metric_specs.insert(name, spec);
        }
        self
    }

    /// A tag on the model. An invalid key is reported by the command.
    pub fn tag(mut self, key: &str, value: impl Into<String>) -> Self {
        if let Some(key) = self.error.keep(TagKey::new(key)) {
            self.tags.insert(key, value.into());
        }
        self
    }
}

/// Everything about a new version except its files: semver label, description,
/// tags, provenance, metrics and how local files are stored. Who registers it is
/// the [`Session`](crate::Session)'s actor.
///
/// Ten metrics, hyperparameters and a parent are one chain; anything invalid in
/// it is reported by [`Session::register`](crate::Session::register), before any
/// byte is stored:
///
/// ```
/// use modelreg::{DatasetRef, DatasetRole, NewVersion, Relation};
/// let v = NewVersion::new()
///     .semver("1.4.0")
///     .description("retrained on November data")
///     .tag("dataset", "nov-2026")
///     .metric("auc", 0.93)
///     .metric("f1", 0.71)
///     .param("lr", 3e-4)
///     .param("epochs", 12)
///     .param("optimizer", "adamw")
///     .dataset(DatasetRef::new("transactions", DatasetRole::Train).version("2026-11"))
///     .code_commit("9f2c1e7")
///     .parent("fraud/3", Relation::FineTunedFrom)
///     .environment_captured();
/// # let _ = v;
/// ```
#[derive(Clone, Debug, Default)]
pub struct NewVersion {
    pub(crate) semver: Option<semver::Version>,
    pub(crate) description: String,
    pub(crate) tags: Tags,
    pub(crate) provenance: Provenance,
    /// Parents as given (references are resolved by the command).
    pub(crate) parents: Vec<(VersionRef, Relation)>,
    pub(crate) metrics: Metrics,
    pub(crate) link: LinkMode,
    /// Capture the environment when the command runs.
    pub(crate) capture_environment: bool,
    /// Capture the code commit from the git working tree at this directory.
    pub(crate) capture_code: Option<PathBuf>,
    /// Told of the files as they are stored.
    pub(crate) progress: Option<Progress>,
    pub(crate) error: Deferred,
}

impl NewVersion {
    /// A version with no label, description, tags, provenance or metrics, whose
    /// local files are copied.
    pub fn new() -> Self {
        Self::default()
    }

    /// How local source files enter the store: copied (the default), or by reflink
    /// or hard link where the store and filesystem allow, falling back to copying.
    ///
    /// [`LinkMode::HardLink`] makes each source file read-only (`0o444`) and shares
    /// it with the store: see [`LinkMode`] for the rule and what happens if the file
    /// is written anyway. [`LinkMode::Reflink`] is always safe.
    ///
    /// Whatever the mode, a local store remembers the digest of each source file
    /// it read (keyed by device, inode, size and times), so registering an
    /// unchanged file again does not read it; a file modified less than two
    /// seconds before it is hashed is not remembered, because a write within the
    /// filesystem's timestamp granularity could go unnoticed.
    pub fn link(mut self, mode: LinkMode) -> Self {
        self.link = mode;
        self
    }

    /// Reports the registration's progress to `progress`: one
    /// [`ProgressEvent::Started`](crate::ProgressEvent::Started) with the number
    /// and total size of the version's files once they are known (a directory
    /// walked, in-memory files hashed), then
    /// [`ProgressEvent::Bytes`](crate::ProgressEvent::Bytes) as the files'
    /// bytes are read, hashed and stored, and one
    /// [`ProgressEvent::File`](crate::ProgressEvent::File) per file as it is
    /// stored, found already stored, or known from the hash cache. On success
    /// the deltas, and the files' sizes, add up to the total (unless a file
    /// changed size while it was being registered: the version, and its event,
    /// hold the size stored).
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// A semver label, unique within the model: `"1.4.0"` or a
    /// [`semver::Version`]. Text that does not parse is reported by the command.
    pub fn semver(mut self, version: impl IntoSemver) -> Self {
        self.semver = self.error.keep(version.into_semver());
        self
    }

    /// What this version is.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// A tag on the version. An invalid key is reported by the command.
    pub fn tag(mut self, key: &str, value: impl Into<String>) -> Self {
        if let Some(key) = self.error.keep(TagKey::new(key)) {
            self.tags.insert(key, value.into());
        }
        self
    }

    /// A metric at registration (a later value of the same name replaces it). An
    /// invalid name or a value that is not finite is reported by the command.
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        let checked = MetricName::new(name).and_then(|n| {
            let mut one = Metrics::new();
            one.insert(n, value)?;
            Ok(one)
        });
        if let Some(one) = self.error.keep(checked) {
            self.metrics.merge(&one);
        }
        self
    }

    /// Several metrics at registration: a [`Metrics`] value or `(name, value)`
    /// pairs, merged with those given before.
    pub fn metrics(mut self, metrics: impl IntoMetrics) -> Self {
        if let Some(m) = self.error.keep(metrics.into_metrics()) {
            self.metrics.merge(&m);
        }
        self
    }

    /// A hyperparameter: a number, a flag, text, or a [`HyperValue`] list or map.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<HyperValue>) -> Self {
        Arc::make_mut(&mut self.provenance.hyperparameters).insert(name.into(), value.into());
        self
    }

    /// Several hyperparameters.
    pub fn params<K, V>(mut self, params: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<HyperValue>,
    {
        let h = Arc::make_mut(&mut self.provenance.hyperparameters);
        for (k, v) in params {
            h.insert(k.into(), v.into());
        }
        self
    }

    /// A dataset it was trained or evaluated on (call again for each).
    pub fn dataset(mut self, dataset: DatasetRef) -> Self {
        self.provenance.datasets.push(dataset);
        self
    }

    /// The code commit it was trained with.
    pub fn code_commit(mut self, commit: impl Into<String>) -> Self {
        self.provenance.code = Some(CodeRef {
            repository: None,
            commit: commit.into(),
            dirty: false,
        });
        self
    }

    /// The code it was trained with, in full (repository, commit, dirty flag).
    pub fn code(mut self, code: CodeRef) -> Self {
        self.provenance.code = Some(code);
        self
    }

    /// The code commit of the git working tree at `dir` (its `HEAD`, whether it
    /// has uncommitted changes, and the `origin` remote), read when the command
    /// runs. Nothing is recorded if `git` or a repository is absent there.
    pub fn code_from_git(mut self, dir: impl Into<PathBuf>) -> Self {
        self.capture_code = Some(dir.into());
        self
    }

    /// A version it derives from: a reference (`"fraud/3"`, `"fraud@production"`)
    /// or a [`VersionRecord`], resolved to a version number when the command runs
    /// (it must exist).
    pub fn parent(mut self, parent: impl IntoVersionRef, relation: Relation) -> Self {
        if let Some(r) = self.error.keep(parent.into_version_ref()) {
            self.parents.push((r, relation));
        }
        self
    }

    /// The training environment as [`Environment::capture`] detects it, captured
    /// when the command runs (on a blocking thread: it may run `nvidia-smi`).
    /// Frameworks named with [`framework`](Self::framework) are kept.
    pub fn environment_captured(mut self) -> Self {
        self.capture_environment = true;
        self
    }

    /// The training environment, given in full.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.provenance.environment = Arc::new(environment);
        self
    }

    /// A framework and its version in the training environment (`"torch"`,
    /// `"2.4.1"`).
    pub fn framework(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.provenance.environment)
            .frameworks
            .insert(name.into(), version.into());
        self
    }

    /// Where it came from, in full; replaces what the provenance builders above
    /// set (parents given with [`parent`](Self::parent) are kept).
    pub fn provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = provenance;
        self
    }
}

/// Which versions [`Registry::list_versions`](crate::Registry::list_versions) returns.
/// Every condition set must hold; the default matches every version.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::VersionFilter;
/// let f = VersionFilter::new()
///     .tag("dataset")
///     .semver("^1.2")
///     .exclude_deprecated();
/// # let _ = f; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct VersionFilter {
    tags: Vec<(TagKey, Option<String>)>,
    semver: Option<semver::VersionReq>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    exclude_deprecated: bool,
    stage: Option<Stage>,
    reached: Option<Stage>,
    metrics: Vec<(MetricName, Option<f64>, Option<f64>)>,
    pub(crate) error: Deferred,
}

impl VersionFilter {
    /// Matches every version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Versions that have tag `key`, with any value. An invalid key is reported
    /// by the query.
    pub fn tag(mut self, key: &str) -> Self {
        if let Some(key) = self.error.keep(TagKey::new(key)) {
            self.tags.push((key, None));
        }
        self
    }

    /// Versions whose tag `key` equals `value`. An invalid key is reported by the
    /// query.
    pub fn tag_value(mut self, key: &str, value: impl Into<String>) -> Self {
        if let Some(key) = self.error.keep(TagKey::new(key)) {
            self.tags.push((key, Some(value.into())));
        }
        self
    }

    /// Versions with a semver label matching `req`, such as `"^1.2"` (unlabelled
    /// versions never match). Text that does not parse is reported by the query.
    pub fn semver(mut self, req: impl IntoSemverReq) -> Self {
        self.semver = self.error.keep(req.into_semver_req());
        self
    }

    /// Versions created at or after `t`.
    pub fn created_after(mut self, t: DateTime<Utc>) -> Self {
        self.created_after = Some(t);
        self
    }

    /// Versions created before `t`.
    pub fn created_before(mut self, t: DateTime<Utc>) -> Self {
        self.created_before = Some(t);
        self
    }

    /// Leave deprecated versions out.
    pub fn exclude_deprecated(mut self) -> Self {
        self.exclude_deprecated = true;
        self
    }

    /// Versions currently in `stage`.
    pub fn stage(mut self, stage: Stage) -> Self {
        self.stage = Some(stage);
        self
    }

    /// Versions that have been in `stage` at some point, whether or not they still
    /// are (e.g. every version that ever served: `reached(Stage::Production)`).
    pub fn reached(mut self, stage: Stage) -> Self {
        self.reached = Some(stage);
        self
    }

    /// Versions that have metric `name` with a value of at least `min` and at
    /// most `max` (either bound may be left open; both open: versions that have
    /// the metric). An invalid name is reported by the query.
    ///
    /// ```
    /// # fn main() -> modelreg::Result<()> {
    /// use modelreg::VersionFilter;
    /// let good = VersionFilter::new().metric("auc", Some(0.9), None);
    /// let has_loss = VersionFilter::new().metric("eval/loss", None, None);
    /// # let _ = (good, has_loss); Ok(()) }
    /// ```
    pub fn metric(mut self, name: &str, min: Option<f64>, max: Option<f64>) -> Self {
        if let Some(name) = self.error.keep(MetricName::new(name)) {
            self.metrics.push((name, min, max));
        }
        self
    }

    /// Whether `v` matches.
    pub fn matches(&self, v: &VersionRecord) -> bool {
        self.metrics.iter().all(|(name, min, max)| {
            v.metrics
                .get(name.as_str())
                .is_some_and(|x| min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m))
        }) && self
            .tags
            .iter()
            .all(|(k, want)| match (v.tags.get(k), want) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            })
            && self
                .semver
                .as_ref()
                .is_none_or(|req| v.semver.as_ref().is_some_and(|s| req.matches(s)))
            && self.created_after.is_none_or(|t| v.created_at >= t)
            && self.created_before.is_none_or(|t| v.created_at < t)
            && !(self.exclude_deprecated && v.deprecated.is_some())
            && self.stage.is_none_or(|st| v.stage == st)
            && self
                .reached
                .is_none_or(|st| v.stage == st || v.reached.contains(&st))
    }
}

/// How [`Registry::fetch`](crate::Registry::fetch) writes files.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    pub(crate) link: LinkMode,
    pub(crate) progress: Option<Progress>,
    pub(crate) trust: Option<crate::signing::TrustPolicy>,
    /// Check each file's SHA-256 against the manifest's as under a trust
    /// policy, without verifying the signatures again: for a caller that has
    /// just verified them (the model cache's download).
    pub(crate) check_sha256: bool,
}

impl FetchOptions {
    /// Copy every file (the default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Place files by reflink or hard link where the store allows, falling back to
    /// copying. See [`LinkMode`] for what hard links imply.
    pub fn link(mut self, mode: LinkMode) -> Self {
        self.link = mode;
        self
    }

    /// Reports the fetch's progress to `progress`: one
    /// [`ProgressEvent::Started`](crate::ProgressEvent::Started) with the
    /// version's number of files and total size (from its manifest), then
    /// [`ProgressEvent::Bytes`](crate::ProgressEvent::Bytes) as files are
    /// written and hashed, and one
    /// [`ProgressEvent::File`](crate::ProgressEvent::File) per file once it is
    /// placed and verified. On success the deltas, and the files' sizes, add up
    /// to the total.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Fetches only a version that enough keys `policy` trusts have signed:
    /// before anything is written, every signature is verified again against
    /// the version's files ([`Registry::verify_signatures`](crate::Registry::verify_signatures));
    /// when the policy is not met the fetch fails with
    /// [`Error::Signature`](crate::Error::Signature) and `dest` is left as it
    /// was. The files are then written and re-hashed as always, and also hashed
    /// with SHA-256 and compared with the digests the manifest lists, which are
    /// what the signatures cover: a file whose bytes differ is
    /// [`SignatureFailure::FilesMismatch`](crate::SignatureFailure::FilesMismatch)
    /// and nothing is written to `dest`. (That second hash costs one more read
    /// of the fetched files, on one core.)
    pub fn trust(mut self, policy: crate::signing::TrustPolicy) -> Self {
        self.trust = Some(policy);
        self
    }
}

/// How often a command retries when another writer appended first.
///
/// Each retry re-reads the log, re-checks the command against the new state and
/// tries again after a randomized, exponentially growing delay.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts before giving up with [`Error::Conflict`](crate::Error::Conflict).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 64,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): full jitter over an
    /// exponentially growing window.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let window = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        window.mul_f64(fastrand::f64())
    }
}

/// Which events [`Registry::history`](crate::Registry::history) returns. Every
/// condition set must hold; the default matches every event.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::{Actor, HistoryFilter, VersionNumber};
/// let f = HistoryFilter::new()
///     .version(VersionNumber::new(3)?)
///     .actor(Actor::new("alice")?)
///     .kind("stage_changed")
///     .kind("rolled_back");
/// # let _ = f; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    version: Option<VersionNumber>,
    actor: Option<Actor>,
    kinds: Vec<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl HistoryFilter {
    /// Matches every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events that involve version `v` (registered, moved, archived by a
    /// promotion, restored or displaced by a rollback, approved, aliased, …).
    pub fn version(mut self, v: VersionNumber) -> Self {
        self.version = Some(v);
        self
    }

    /// Events made by `actor`.
    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Events of this kind (`stage_changed`, `approval_recorded`, … as in
    /// [`EventKind::name`]); call again to allow several kinds.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.push(kind.into());
        self
    }

    /// Events at or after `t`.
    pub fn since(mut self, t: DateTime<Utc>) -> Self {
        self.since = Some(t);
        self
    }

    /// Events before `t`.
    pub fn until(mut self, t: DateTime<Utc>) -> Self {
        self.until = Some(t);
        self
    }

    /// Whether `e` matches.
    pub fn matches(&self, e: &Event) -> bool {
        self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time < t)
            && self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == e.kind.name()))
            && self.version.is_none_or(|v| involves(&e.kind, v))
    }

    /// Whether no event older than `e` in the same log can match, so a reader
    /// going backwards may stop at `e`: times never go backwards in a log (the
    /// fold refuses a log where they do), so an event before `since` is
    /// followed by older ones only; and a version's registration is the first
    /// event that involves it (every other event names a version that exists).
    pub(crate) fn rules_out_older(&self, e: &Event) -> bool {
        self.since.is_some_and(|t| e.time < t)
            || self.version.is_some_and(|v| {
                matches!(&e.kind, EventKind::VersionRegistered { version } if version.number == v)
            })
    }
}

fn involves(kind: &EventKind, v: VersionNumber) -> bool {
    match kind {
        EventKind::StageChanged {
            version, archived, ..
        } => *version == v || *archived == Some(v),
        EventKind::RolledBack {
            restored,
            displaced,
            ..
        } => *restored == v || *displaced == v,
        other => other.version() == Some(v),
    }
}

/// How [`Session::set_alias`](crate::Session::set_alias) sets an alias.
///
/// ```
/// use modelreg::SetAlias;
/// let opts = SetAlias::new().reason("canary for EU").protected(true);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct SetAlias {
    pub(crate) reason: String,
    pub(crate) protected: Option<bool>,
}

impl SetAlias {
    /// No reason; protection unchanged (a new alias is unprotected).
    pub fn new() -> Self {
        Self::default()
    }

    /// Why.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Protect the alias (moving or removing it must then pass the production
    /// gates), or lift its protection (which itself must pass them).
    pub fn protected(mut self, protected: bool) -> Self {
        self.protected = Some(protected);
        self
    }
}
