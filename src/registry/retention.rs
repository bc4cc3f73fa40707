//! Purging versions' artifacts, by hand and by a [`RetentionPolicy`]: the
//! commands behind [`Session::purge_version`](super::Session::purge_version) and
//! [`Session::apply_retention`](super::Session::apply_retention). What may be
//! purged is the domain's rule ([`crate::domain::retention`]); what frees the
//! bytes is [`gc`](Registry::gc), which no longer counts purged versions as
//! references.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{IntoModelName, IntoVersionRef, Registry};
use crate::domain::retention::{Protection, RetentionPolicy};
use crate::domain::{Actor, EventKind, ModelName, VersionNumber, VersionRecord, VersionRef};
use crate::error::{Error, Result};

/// What [`Session::apply_retention`](super::Session::apply_retention) purged, or
/// with `dry_run` would purge, in one model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct RetentionReport {
    /// The model.
    pub model: ModelName,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The versions purged (dry run: that would be), oldest first.
    pub purged: Vec<VersionNumber>,
    /// The total size of their files in bytes: what [`gc`](Registry::gc) frees at
    /// most (files shared with a version that stays are kept).
    pub bytes: u64,
    /// Versions the policy picked that are protected, with every protection
    /// that holds: kept.
    pub protected: Vec<ProtectedVersion>,
}

/// A version a retention policy would have purged, and why it stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ProtectedVersion {
    /// The version.
    pub version: VersionNumber,
    /// Every protection that holds.
    pub protections: Vec<Protection>,
}

impl Registry {
    /// The implementation of [`Session::purge_version`](super::Session::purge_version).
    pub(crate) async fn purge_version(
        &self,
        version: impl IntoVersionRef,
        reason: impl Into<String>,
        actor: &Actor,
    ) -> Result<VersionRecord> {
        let r = version.into_version_ref()?;
        let reason = reason.into();
        self.commit_on_version(&r, actor, |number| EventKind::VersionPurged {
            version: number,
            reason: reason.clone(),
        })
        .await
    }

    /// The implementation of [`Session::apply_retention`](super::Session::apply_retention).
    pub(crate) async fn apply_retention(
        &self,
        model: impl IntoModelName,
        policy: &RetentionPolicy,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<RetentionReport> {
        let model = model.into_model_name()?;
        let now = Utc::now();
        let (plan, sizes) = self
            .read(&model, |s| {
                s.retention(policy, now).map(|p| {
                    let sizes: Vec<u64> = p
                        .purge
                        .iter()
                        .map(|n| s.version(*n).map_or(0, |v| v.size))
                        .collect();
                    (p, sizes)
                })
            })
            .await??;
        let mut report = RetentionReport {
            model: model.clone(),
            dry_run,
            purged: Vec::new(),
            bytes: 0,
            protected: plan
                .protected
                .into_iter()
                .map(|(version, protections)| ProtectedVersion {
                    version,
                    protections,
                })
                .collect(),
        };
        if dry_run {
            report.bytes = sizes.iter().sum();
            report.purged = plan.purge;
            return Ok(report);
        }
        let reason = policy.describe();
        for n in plan.purge {
            let r = VersionRef {
                model: model.clone(),
                selector: crate::domain::Selector::Number(n),
            };
            // Each purge decides again on the state it follows: a version that
            // became protected since the plan is kept, one another writer purged
            // meanwhile is skipped.
            match self.purge_version(&r, reason.as_str(), actor).await {
                Ok(v) => {
                    report.bytes += v.size;
                    report.purged.push(n);
                }
                Err(Error::Protected { protections, .. }) => {
                    report.protected.push(ProtectedVersion {
                        version: n,
                        protections,
                    });
                }
                Err(e @ Error::InvalidInput { .. }) => {
                    if self.resolve(&r).await?.purged.is_none() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        report.protected.sort_by_key(|p| p.version);
        Ok(report)
    }
}

/// [`Error::Purged`] if `v`'s artifact was purged: the check before anything
/// reads a version's files or manifest.
pub(crate) fn live(v: &VersionRecord) -> Result<()> {
    crate::domain::state::not_purged(v)
}
