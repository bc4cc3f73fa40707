//! Option structs and builders for registry commands and queries.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    Actor, Event, EventKind, MetricName, MetricSpec, Metrics, Provenance, Stage, Tags,
    VersionNumber, VersionRecord,
};
use crate::error::Result;
use crate::store::LinkMode;

/// How a new model starts: who creates it, what it is for, how its metrics are
/// judged and its tags.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::{Actor, CreateModel, MetricSpec};
/// let opts = CreateModel::by(Actor::new("alice")?)
///     .description("Card fraud scoring")
///     .metric("auc", MetricSpec::maximize().with_tolerance(0.005))?
///     .tag("team", "risk")?;
/// # let _ = opts; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CreateModel {
    pub(crate) actor: Actor,
    pub(crate) description: String,
    pub(crate) metric_specs: BTreeMap<MetricName, MetricSpec>,
    pub(crate) tags: Tags,
}

impl CreateModel {
    /// A model created by `actor`, with no description, specs or tags.
    pub fn by(actor: Actor) -> Self {
        CreateModel {
            actor,
            description: String::new(),
            metric_specs: BTreeMap::new(),
            tags: Tags::new(),
        }
    }

    /// What the model is for.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// How a metric is judged (goal and tolerance).
    pub fn metric(mut self, name: &str, spec: MetricSpec) -> Result<Self> {
        self.metric_specs.insert(MetricName::new(name)?, spec);
        Ok(self)
    }

    /// A tag on the model.
    pub fn tag(mut self, key: &str, value: impl Into<String>) -> Result<Self> {
        self.tags.insert(MetricName::new(key)?, value.into());
        Ok(self)
    }
}

/// Everything about a new version except its files: who registers it, its semver
/// label, description, tags, provenance and metrics.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::{Actor, NewVersion, Metrics, Provenance, CodeRef};
/// let v = NewVersion::by(Actor::new("ci-train")?)
///     .semver("1.4.0".parse().unwrap())
///     .description("retrained on November data")
///     .tag("dataset", "nov-2026")?
///     .metrics(Metrics::new().with("auc", 0.93)?)
///     .provenance(Provenance {
///         code: Some(CodeRef { repository: None, commit: "9f2c1e7".into(), dirty: false }),
///         ..Provenance::default()
///     });
/// # let _ = v; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub(crate) actor: Actor,
    pub(crate) semver: Option<semver::Version>,
    pub(crate) description: String,
    pub(crate) tags: Tags,
    pub(crate) provenance: Provenance,
    pub(crate) metrics: Metrics,
    pub(crate) link: LinkMode,
}

impl NewVersion {
    /// A version registered by `actor`.
    pub fn by(actor: Actor) -> Self {
        NewVersion {
            actor,
            semver: None,
            description: String::new(),
            tags: Tags::new(),
            provenance: Provenance::default(),
            metrics: Metrics::new(),
            link: LinkMode::Copy,
        }
    }

    /// How local source files enter the store: copied (the default), or by reflink
    /// or hard link where the store and filesystem allow, falling back to copying.
    ///
    /// [`LinkMode::HardLink`] makes each source file read-only (`0o444`) and shares
    /// it with the store: see [`LinkMode`] for the rule and what happens if the file
    /// is written anyway. [`LinkMode::Reflink`] is always safe.
    pub fn link(mut self, mode: LinkMode) -> Self {
        self.link = mode;
        self
    }

    /// A semver label, unique within the model.
    pub fn semver(mut self, version: semver::Version) -> Self {
        self.semver = Some(version);
        self
    }

    /// What this version is.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// A tag on the version.
    pub fn tag(mut self, key: &str, value: impl Into<String>) -> Result<Self> {
        self.tags.insert(MetricName::new(key)?, value.into());
        Ok(self)
    }

    /// Where it came from.
    pub fn provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = provenance;
        self
    }

    /// Its metrics at registration.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
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
///     .tag("dataset")?
///     .semver("^1.2".parse().unwrap())
///     .exclude_deprecated();
/// # let _ = f; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct VersionFilter {
    tags: Vec<(MetricName, Option<String>)>,
    semver: Option<semver::VersionReq>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    exclude_deprecated: bool,
    stage: Option<Stage>,
    reached: Option<Stage>,
}

impl VersionFilter {
    /// Matches every version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Versions that have tag `key`, with any value.
    pub fn tag(mut self, key: &str) -> Result<Self> {
        self.tags.push((MetricName::new(key)?, None));
        Ok(self)
    }

    /// Versions whose tag `key` equals `value`.
    pub fn tag_value(mut self, key: &str, value: impl Into<String>) -> Result<Self> {
        self.tags.push((MetricName::new(key)?, Some(value.into())));
        Ok(self)
    }

    /// Versions with a semver label matching `req` (unlabelled versions never match).
    pub fn semver(mut self, req: semver::VersionReq) -> Self {
        self.semver = Some(req);
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

    /// Whether `v` matches.
    pub fn matches(&self, v: &VersionRecord) -> bool {
        self.tags
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
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchOptions {
    pub(crate) link: LinkMode,
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

    /// Whether `e` matches.
    pub fn matches(&self, e: &Event) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == e.kind.name()))
            && self.version.is_none_or(|v| involves(&e.kind, v))
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

/// How [`Registry::set_alias`](crate::Registry::set_alias) sets an alias.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::{Actor, SetAlias};
/// let opts = SetAlias::by(Actor::new("alice")?).reason("canary for EU").protected(true);
/// # let _ = opts; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SetAlias {
    pub(crate) actor: Actor,
    pub(crate) reason: String,
    pub(crate) protected: Option<bool>,
}

impl SetAlias {
    /// Set by `actor`; protection unchanged (a new alias is unprotected).
    pub fn by(actor: Actor) -> Self {
        SetAlias {
            actor,
            reason: String::new(),
            protected: None,
        }
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
