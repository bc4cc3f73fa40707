//! Retention: which versions' artifacts may be purged, and which a policy picks.
//!
//! Purging a version removes its files from what the registry keeps alive: the
//! version's record and its history stay in the log, a
//! [`version_purged`](crate::EventKind::VersionPurged) event says who purged it,
//! when and why, and [`gc`](crate::Registry::gc) reclaims the blobs no other
//! version uses. Fetching a purged version is [`Error::Purged`](crate::Error::Purged).
//!
//! A version is **protected** — never purged, by hand or by policy — while any of
//! these holds ([`ModelState::protections`]):
//!
//! - it is in staging, validation or production (only versions in `none` or
//!   `archived` can go);
//! - an alias points at it;
//! - the model's traffic split routes to it;
//! - it is where a [rollback](crate::Session::rollback) would return production;
//! - it carries the tag [`KEEP_TAG`] (`keep`, whatever its value).
//!
//! And once purged, a version cannot come back into use: moving it into staging,
//! validation or production, pointing an alias or a traffic split at it, or
//! rolling production back to it is refused.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lifecycle::Stage;
use super::name::{Actor, AliasName};
use super::reference::VersionNumber;
use super::state::ModelState;
use crate::error::{Error, Result};

/// The version tag that protects a version from purging, whatever its value:
/// `keep`. Remove the tag to make the version purgeable again.
pub const KEEP_TAG: &str = "keep";

/// Why and when a version's artifact was purged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Purge {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: Actor,
    /// Why.
    pub reason: String,
}

/// What keeps a version from being purged (see the [module](self) docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protection {
    /// It is in staging, validation or production.
    Stage {
        /// The stage.
        stage: Stage,
    },
    /// An alias points at it.
    Alias {
        /// The alias.
        alias: AliasName,
    },
    /// The traffic split routes to it.
    TrafficSplit,
    /// A rollback would return production to it.
    RollbackTarget,
    /// It carries the [`KEEP_TAG`] tag.
    KeepTag,
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protection::Stage { stage } => write!(f, "it is in {stage}"),
            Protection::Alias { alias } => write!(f, "alias '{alias}' points at it"),
            Protection::TrafficSplit => f.write_str("the traffic split routes to it"),
            Protection::RollbackTarget => f.write_str("a rollback would return production to it"),
            Protection::KeepTag => write!(f, "it is tagged '{KEEP_TAG}'"),
        }
    }
}

/// Which versions of a model [`apply_retention`](crate::Session::apply_retention)
/// purges: those outside the newest `keep_last` **and** registered longer than
/// `older_than` ago, counting only the limits that are set. Protected and already
/// purged versions are never picked.
///
/// ```
/// use std::time::Duration;
/// use modelreg::RetentionPolicy;
/// // Keep the 5 newest versions, and anything younger than 30 days.
/// let policy = RetentionPolicy::new()
///     .keep_last(5)
///     .older_than(Duration::from_secs(30 * 86_400));
/// assert_eq!(policy.keep_last, Some(5));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Keep the newest this many versions (by number, whatever their state).
    pub keep_last: Option<usize>,
    /// Purge only versions registered longer ago than this.
    pub older_than: Option<Duration>,
}

impl RetentionPolicy {
    /// A policy with no limit set, which [`apply_retention`](crate::Session::apply_retention)
    /// refuses: set [`keep_last`](Self::keep_last), [`older_than`](Self::older_than)
    /// or both.
    pub fn new() -> Self {
        RetentionPolicy::default()
    }

    /// Keeps the newest `n` versions.
    pub fn keep_last(mut self, n: usize) -> Self {
        self.keep_last = Some(n);
        self
    }

    /// Purges only versions registered longer than `age` ago.
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// The policy in words, as recorded as the reason of each purge it makes:
    /// `retention: keep_last=5 older_than=2592000s`.
    pub fn describe(&self) -> String {
        let mut s = String::from("retention:");
        if let Some(n) = self.keep_last {
            s.push_str(&format!(" keep_last={n}"));
        }
        if let Some(age) = self.older_than {
            s.push_str(&format!(" older_than={}s", age.as_secs()));
        }
        s
    }

    fn check(&self) -> Result<()> {
        if self.keep_last.is_none() && self.older_than.is_none() {
            return Err(Error::invalid_input(
                "retention policy",
                "set keep_last, older_than or both (a policy with neither would purge every unprotected version)",
            ));
        }
        Ok(())
    }
}

/// What [`ModelState::retention`] decided for one model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// The versions the policy purges, oldest first.
    pub purge: Vec<VersionNumber>,
    /// The versions the policy would have purged but that are protected, with why.
    pub protected: Vec<(VersionNumber, Vec<Protection>)>,
}

impl ModelState {
    /// Everything that keeps version `n` from being purged (empty: it may be
    /// purged). See the [module](self) docs. A version that does not exist has
    /// no protection.
    pub fn protections(&self, n: VersionNumber) -> Vec<Protection> {
        let Some(v) = self.version(n) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !matches!(v.stage, Stage::None | Stage::Archived) {
            out.push(Protection::Stage { stage: v.stage });
        }
        for (alias, target) in self.aliases() {
            if target.version == n {
                out.push(Protection::Alias {
                    alias: alias.clone(),
                });
            }
        }
        if let Some(split) = self.traffic_split()
            && split.routes().iter().any(|r| {
                self.resolve(r.target.selector())
                    .is_ok_and(|t| t.number == n)
            })
        {
            out.push(Protection::TrafficSplit);
        }
        if self.rollback_target() == Some(n) {
            out.push(Protection::RollbackTarget);
        }
        if v.tags.keys().any(|k| k.as_str() == KEEP_TAG) {
            out.push(Protection::KeepTag);
        }
        out
    }

    /// Which versions `policy` purges as of `now`: those outside the newest
    /// `keep_last` and registered before `now - older_than` (each limit only if
    /// set), not purged already, and not protected. [`Error::InvalidInput`] for
    /// a policy with no limit set.
    pub fn retention(&self, policy: &RetentionPolicy, now: DateTime<Utc>) -> Result<RetentionPlan> {
        policy.check()?;
        let versions = self.versions();
        let kept_by_count = policy.keep_last.map_or(0, |n| n.min(versions.len()));
        // An age too large for the calendar leaves no version old enough.
        let cutoff = policy.older_than.map(|age| {
            chrono::Duration::from_std(age)
                .ok()
                .and_then(|age| now.checked_sub_signed(age))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        });
        let mut plan = RetentionPlan::default();
        for v in &versions[..versions.len() - kept_by_count] {
            if v.purged.is_some() || cutoff.is_some_and(|c| v.created_at >= c) {
                continue;
            }
            let protections = self.protections(v.number);
            if protections.is_empty() {
                plan.purge.push(v.number);
            } else {
                plan.protected.push((v.number, protections));
            }
        }
        Ok(plan)
    }
}

/// The list of protections, for error messages: `it is in production; alias
/// 'champion' points at it`.
pub(crate) fn list_protections(p: &[Protection]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
