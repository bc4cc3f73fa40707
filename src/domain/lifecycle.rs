//! Lifecycle: stages, the transition table, approvals and gates.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::name::{Actor, AliasName, MetricName};
use super::record::{Goal, VersionRecord};
use super::state::ModelState;
use crate::error::{Error, Result};

/// Where a version stands in its lifecycle.
///
/// Serialized in snake case (`none`, `staging`, `validation`, `production`,
/// `archived`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum Stage {
    /// Just registered.
    #[default]
    None,
    /// Being tried out.
    Staging,
    /// Being validated before production.
    Validation,
    /// Serving. At most one version of a model is here.
    Production,
    /// Retired (still stored and resolvable).
    Archived,
}

impl Stage {
    /// Every stage, in lifecycle order.
    pub const ALL: [Stage; 5] = [
        Stage::None,
        Stage::Staging,
        Stage::Validation,
        Stage::Production,
        Stage::Archived,
    ];

    /// The transition table: the stages a version in `self` may move to.
    ///
    /// | from | to |
    /// |---|---|
    /// | none | staging, archived |
    /// | staging | validation, archived |
    /// | validation | production, staging, archived |
    /// | production | archived |
    /// | archived | staging |
    ///
    /// Leaving production other than to archived goes through
    /// [`rollback`](crate::Session::rollback) or a new promotion, which archives
    /// the previous production version in the same event.
    ///
    /// ```
    /// use modelreg::Stage;
    /// assert!(Stage::Validation.can_move_to(Stage::Production));
    /// assert!(!Stage::Staging.can_move_to(Stage::Production));
    /// assert_eq!(Stage::Production.allowed_targets(), &[Stage::Archived]);
    /// ```
    pub const fn allowed_targets(self) -> &'static [Stage] {
        match self {
            Stage::None => &[Stage::Staging, Stage::Archived],
            Stage::Staging => &[Stage::Validation, Stage::Archived],
            Stage::Validation => &[Stage::Production, Stage::Staging, Stage::Archived],
            Stage::Production => &[Stage::Archived],
            Stage::Archived => &[Stage::Staging],
        }
    }

    /// Whether the table allows `self → to`.
    pub fn can_move_to(self, to: Stage) -> bool {
        self.allowed_targets().contains(&to)
    }

    /// The stages a version passes through, in order, on the shortest path the
    /// table allows from `self` to `to` (ending with `to`); empty when
    /// `self == to`, `None` when the table allows no path.
    ///
    /// ```
    /// use modelreg::Stage;
    /// assert_eq!(
    ///     Stage::None.path_to(Stage::Production),
    ///     Some(vec![Stage::Staging, Stage::Validation, Stage::Production])
    /// );
    /// assert_eq!(Stage::Archived.path_to(Stage::Validation), Some(vec![Stage::Staging, Stage::Validation]));
    /// assert_eq!(Stage::Production.path_to(Stage::Production), Some(vec![]));
    /// assert_eq!(Stage::Production.path_to(Stage::None), None);
    /// ```
    pub fn path_to(self, to: Stage) -> Option<Vec<Stage>> {
        // Breadth-first over five stages: the first path found is a shortest one.
        let mut came_from: [Option<Stage>; 5] = [None; 5];
        let mut queue = std::collections::VecDeque::from([self]);
        let mut seen = [false; 5];
        seen[self as usize] = true;
        while let Some(at) = queue.pop_front() {
            if at == to {
                let mut path = Vec::new();
                let mut step = at;
                while step != self {
                    path.push(step);
                    step = came_from[step as usize]?;
                }
                path.reverse();
                return Some(path);
            }
            for &next in at.allowed_targets() {
                if !seen[next as usize] {
                    seen[next as usize] = true;
                    came_from[next as usize] = Some(at);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// The stage's name as serialized and as used in references (`fraud@production`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::Staging => "staging",
            Stage::Validation => "validation",
            Stage::Production => "production",
            Stage::Archived => "archived",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid_name(
                    "stage",
                    s,
                    "expected none, staging, validation, production or archived",
                )
            })
    }
}

/// An approver's decision on moving a version to a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum Decision {
    /// In favour.
    Approve,
    /// Against.
    Reject,
}

super::record::snake_names!(Decision { Approve => "approve", Reject => "reject" });

/// The latest decision of one approver on one (version, target stage).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Approval {
    /// Approve or reject.
    pub decision: Decision,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// What an alias points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasTarget {
    /// The version.
    pub version: super::reference::VersionNumber,
    /// Whether moving or removing the alias must pass the production gates.
    #[serde(default)]
    pub protected: bool,
    /// When it was last set.
    pub set_at: DateTime<Utc>,
    /// Who set it.
    pub set_by: Actor,
}

/// One gate's verdict on a transition, as recorded in the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct GateVerdict {
    /// The gate's name, e.g. `approvals(2)`.
    pub gate: String,
    /// Whether it let the transition through.
    pub passed: bool,
    /// Why, in words.
    pub reason: String,
}

/// What a stage transition would do if it were asked for now, judged without
/// recording anything: the answer of
/// [`Session::check_transition`](crate::Session::check_transition), for a
/// confirmation step that shows people what will happen before it does.
///
/// The verdicts are those the transition would get on the state the check read;
/// the transition itself decides again on the state it follows, so a change in
/// between (an approval, a rejection, another promotion) can change them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransitionCheck {
    /// The version that would move.
    pub version: super::reference::VersionNumber,
    /// Its stage now.
    pub from: Stage,
    /// The stage it would move to.
    pub to: Stage,
    /// Every gate that would run for the move, in the order they run (stored
    /// gates, then in-process ones), each with its verdict now.
    pub gates: Vec<GateVerdict>,
    /// The version in production now, which a move to production would archive
    /// in the same event; `None` for other moves or when none is there.
    pub archives: Option<super::reference::VersionNumber>,
}

impl TransitionCheck {
    /// Whether every gate passes, so the transition would be applied.
    pub fn passes(&self) -> bool {
        self.gates.iter().all(|g| g.passed)
    }

    /// The verdicts of the gates that would refuse.
    pub fn failed(&self) -> impl Iterator<Item = &GateVerdict> {
        self.gates.iter().filter(|g| !g.passed)
    }
}

/// A requested move of one version, as gates see it.
#[derive(Clone, Copy, Debug)]
pub struct Transition<'a> {
    /// The version to move.
    pub candidate: &'a VersionRecord,
    /// Its stage now.
    pub from: Stage,
    /// The stage requested.
    pub to: Stage,
    /// Who asked.
    pub requester: &'a Actor,
    /// When the transition would happen.
    pub at: DateTime<Utc>,
    /// The model's state, including approvals and the current production version.
    pub state: &'a ModelState,
}

/// A check that decides whether a transition may happen.
///
/// Gates are attached per model and target stage: stored, built-in ones as
/// [`GateSpec`]s in the model's log (so every writer on every machine applies
/// them), and in-process ones through
/// [`RegistryBuilder::gate`](crate::RegistryBuilder::gate). A gate is pure: it
/// looks only at the [`Transition`].
///
/// ```
/// use modelreg::{Gate, Transition};
/// #[derive(Debug)]
/// struct BusinessHours;
/// impl Gate for BusinessHours {
///     fn name(&self) -> String { "business_hours".into() }
///     fn check(&self, t: &Transition<'_>) -> Result<String, String> {
///         use chrono::Timelike;
///         let h = t.at.hour();
///         if (9..17).contains(&h) { Ok(format!("{h}h is within 9-17 UTC")) }
///         else { Err(format!("{h}h is outside 9-17 UTC")) }
///     }
/// }
/// ```
pub trait Gate: Send + Sync + fmt::Debug + 'static {
    /// A short name for the audit trail.
    fn name(&self) -> String;
    /// `Ok(why it passes)` or `Err(why it refuses)`.
    fn check(&self, transition: &Transition<'_>) -> std::result::Result<String, String>;
}

/// What [`GateSpec::MetricsNoWorse`] compares against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum Baseline {
    /// The version in production.
    Production,
    /// The version an alias points at.
    Alias(AliasName),
}

/// Built-in gates, stored in the model's log as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "gate", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum GateSpec {
    /// No metric of the candidate is worse than the baseline's beyond the metric's
    /// tolerance, judged by the model's metric specs (goal and tolerance). Every
    /// metric the baseline has and the model has a spec for is compared (or only
    /// `metrics`, when given); a candidate missing one of them fails. Passes when
    /// there is no baseline version yet.
    MetricsNoWorse {
        /// What to compare against.
        against: Baseline,
        /// Only these metrics (default: every metric with a spec).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        metrics: Vec<MetricName>,
    },
    /// At least `required` distinct approvers whose latest decision on this
    /// (version, stage) is approve; the requester's own approval does not count; a
    /// latest decision of reject by a counted approver refuses.
    Approvals {
        /// How many approvals.
        required: u32,
        /// Only these approvers count (default: anyone).
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        from: BTreeSet<Actor>,
    },
    /// The candidate names a code commit and at least one dataset.
    ProvenanceComplete,
    /// The candidate has been in its current stage for at least `seconds`.
    MinTimeInStage {
        /// Seconds.
        seconds: u64,
    },
    /// The candidate's files were [scanned](crate::Session::scan_formats) by
    /// this build's scanner version, no file was refused (a pickle naming a
    /// global outside the allowlist, a malformed file, a hostile archive), and
    /// every file is of one of `formats` (default: every format, so pickles
    /// pass when their scan does). Refuses a candidate never scanned, or
    /// scanned by an older scanner: the verdict is read from the log, never
    /// computed here.
    FormatPolicy {
        /// The formats allowed (default: all); e.g. `[safetensors, gguf, onnx,
        /// data]` admits no pickle at all.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        formats: Vec<crate::scan::FileFormat>,
    },
    /// At least `min` distinct keys of `by` (default: any key) have signed the
    /// candidate's files (see [`Session::sign_version`](crate::Session::sign_version)
    /// and [`Session::add_signature`](crate::Session::add_signature)). Each
    /// signature was verified against the files and its key when it was
    /// recorded; the verdict is read from the log, never computed here.
    Signed {
        /// The key ids that count (default: every key).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        by: Vec<crate::signing::KeyId>,
        /// How many distinct keys.
        min: usize,
    },
}

impl GateSpec {
    pub(crate) fn check_spec(&self) -> Result<()> {
        match self {
            GateSpec::Approvals { required: 0, .. } => Err(Error::invalid_input(
                "approvals gate",
                "required must be at least 1",
            )),
            GateSpec::Signed { min: 0, .. } => Err(Error::invalid_input(
                "signed gate",
                "min must be at least 1",
            )),
            GateSpec::Signed { by, min } if !by.is_empty() && *min > by.len() => {
                Err(Error::invalid_input(
                    "signed gate",
                    format!("min {min} is more than the {} keys listed", by.len()),
                ))
            }
            GateSpec::MinTimeInStage { seconds } if *seconds > i64::MAX as u64 / 1000 => {
                Err(Error::invalid_input("min_time_in_stage gate", "too long"))
            }
            _ => Ok(()),
        }
    }
}

impl Gate for GateSpec {
    fn name(&self) -> String {
        match self {
            GateSpec::MetricsNoWorse { against, .. } => match against {
                Baseline::Production => "metrics_no_worse(production)".into(),
                Baseline::Alias(a) => format!("metrics_no_worse(@{a})"),
            },
            GateSpec::Approvals { required, .. } => format!("approvals({required})"),
            GateSpec::ProvenanceComplete => "provenance_complete".into(),
            GateSpec::MinTimeInStage { seconds } => format!("min_time_in_stage({seconds}s)"),
            GateSpec::Signed { min, .. } => format!("signed({min})"),
            GateSpec::FormatPolicy { formats } if formats.is_empty() => "format_policy".into(),
            GateSpec::FormatPolicy { formats } => format!(
                "format_policy({})",
                formats
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    fn check(&self, t: &Transition<'_>) -> std::result::Result<String, String> {
        match self {
            GateSpec::MetricsNoWorse { against, metrics } => metrics_no_worse(t, against, metrics),
            GateSpec::Approvals { required, from } => approvals(t, *required, from),
            GateSpec::ProvenanceComplete => {
                let p = &t.candidate.provenance;
                match (&p.code, p.datasets.is_empty()) {
                    (Some(c), false) => Ok(format!(
                        "code {} and {} dataset(s) recorded",
                        c.commit,
                        p.datasets.len()
                    )),
                    (None, _) => Err("no code commit recorded".into()),
                    (Some(_), true) => Err("no dataset recorded".into()),
                }
            }
            GateSpec::FormatPolicy { formats } => format_policy(t.candidate, formats),
            GateSpec::Signed { by, min } => signed(t.candidate, by, *min),
            GateSpec::MinTimeInStage { seconds } => {
                let since = t.candidate.stage_since.unwrap_or(t.candidate.created_at);
                let spent = t.at - since;
                // `set_gates` rejects such a spec, but an in-process one is not
                // checked: refuse rather than wrap round or panic.
                let Some(needed) = i64::try_from(*seconds).ok().and_then(Duration::try_seconds)
                else {
                    return Err(format!("{seconds}s is too long to measure"));
                };
                if spent >= needed {
                    Ok(format!("{}s in {}", spent.num_seconds(), t.from))
                } else {
                    Err(format!(
                        "only {}s in {}, {}s required",
                        spent.num_seconds(),
                        t.from,
                        seconds
                    ))
                }
            }
        }
    }
}

fn signed(
    v: &VersionRecord,
    by: &[crate::signing::KeyId],
    min: usize,
) -> std::result::Result<String, String> {
    let mut keys: Vec<&crate::signing::KeyId> = v
        .signatures
        .iter()
        .map(|s| &s.key)
        .filter(|k| by.is_empty() || by.contains(k))
        .collect();
    keys.sort();
    keys.dedup();
    let names: Vec<&str> = keys.iter().map(|k| k.short()).collect();
    if keys.len() >= min.max(1) {
        Ok(format!(
            "signed by {} key(s): {}",
            keys.len(),
            names.join(", ")
        ))
    } else if keys.is_empty() {
        Err(format!(
            "v{} has {} signature(s), none by a key the gate accepts ({} required)",
            v.number,
            v.signatures.len(),
            min
        ))
    } else {
        Err(format!(
            "signed by {} accepted key(s) ({}), {min} required",
            keys.len(),
            names.join(", ")
        ))
    }
}

fn format_policy(
    v: &VersionRecord,
    formats: &[crate::scan::FileFormat],
) -> std::result::Result<String, String> {
    use crate::scan::{FileFormat, SCANNER_VERSION};
    let Some(scan) = &v.scan else {
        return Err(format!(
            "v{} has no format scan recorded (scan_formats first)",
            v.number
        ));
    };
    if scan.scanner != SCANNER_VERSION {
        return Err(format!(
            "v{} was scanned by scanner version {}, this build's is {SCANNER_VERSION}: scan it again",
            v.number, scan.scanner
        ));
    }
    let allowed = |f: FileFormat| formats.is_empty() || formats.contains(&f);
    let mut failures: Vec<String> = scan.refused().map(|f| f.to_string()).collect();
    failures.extend(
        scan.files
            .iter()
            .filter(|f| f.passed() && !allowed(f.format))
            .map(|f| format!("{} is {}, not an allowed format", f.path, f.format)),
    );
    if scan.data_files > 0 && !allowed(FileFormat::Data) {
        failures.push(format!(
            "{} plain data file(s), not an allowed format",
            scan.data_files
        ));
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    let mut counts: BTreeMap<FileFormat, u64> = BTreeMap::new();
    for f in &scan.files {
        *counts.entry(f.format).or_default() += 1;
    }
    if scan.data_files > 0 {
        counts.insert(FileFormat::Data, scan.data_files);
    }
    let summary: Vec<String> = counts.iter().map(|(f, n)| format!("{n} {f}")).collect();
    Ok(format!(
        "scanned by {} at {} (scanner {}): {}",
        scan.by,
        scan.at.format("%Y-%m-%dT%H:%M:%SZ"),
        scan.scanner,
        if summary.is_empty() {
            "no files".into()
        } else {
            summary.join(", ")
        }
    ))
}

fn metrics_no_worse(
    t: &Transition<'_>,
    against: &Baseline,
    only: &[MetricName],
) -> std::result::Result<String, String> {
    let baseline = match against {
        Baseline::Production => t.state.production(),
        Baseline::Alias(a) => t
            .state
            .alias(a)
            .and_then(|target| t.state.version(target.version)),
    };
    let Some(base) = baseline else {
        return Ok("no baseline version to compare with".into());
    };
    if base.number == t.candidate.number {
        return Ok("the candidate is the baseline".into());
    }
    let specs = t.state.metric_specs();
    let mut compared = Vec::new();
    let mut failures = Vec::new();
    for (name, spec) in specs {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let Some(b) = base.metrics.get(name.as_str()) else {
            continue;
        };
        let Some(c) = t.candidate.metrics.get(name.as_str()) else {
            failures.push(format!(
                "{name}: missing (baseline v{} has {b})",
                base.number
            ));
            continue;
        };
        let tol = spec.tolerance.unwrap_or(0.0);
        let worse_by = match spec.goal {
            Goal::Maximize => b - c,
            Goal::Minimize => c - b,
        };
        if worse_by > tol {
            failures.push(format!(
                "{name}: {c} vs {b} in v{} is worse by {worse_by:.6} (tolerance {tol})",
                base.number
            ));
        } else {
            compared.push(format!("{name} {c} vs {b}"));
        }
    }
    for name in only {
        if !specs.contains_key(name) {
            failures.push(format!("{name}: the model has no metric spec for it"));
        }
    }
    if failures.is_empty() {
        Ok(if compared.is_empty() {
            format!("no comparable metric with v{}", base.number)
        } else {
            format!("against v{}: {}", base.number, compared.join(", "))
        })
    } else {
        Err(failures.join("; "))
    }
}

fn approvals(
    t: &Transition<'_>,
    required: u32,
    from: &BTreeSet<Actor>,
) -> std::result::Result<String, String> {
    let mut approvers = Vec::new();
    let mut rejections = Vec::new();
    for (who, a) in t.state.approvals(t.candidate.number, t.to) {
        if who == t.requester || (!from.is_empty() && !from.contains(who)) {
            continue;
        }
        match a.decision {
            Decision::Approve => approvers.push(who.to_string()),
            Decision::Reject => rejections.push(if a.comment.is_empty() {
                who.to_string()
            } else {
                format!("{who} ({})", a.comment)
            }),
        }
    }
    if !rejections.is_empty() {
        return Err(format!("rejected by {}", rejections.join(", ")));
    }
    if approvers.len() as u64 >= u64::from(required) {
        Ok(format!("approved by {}", approvers.join(", ")))
    } else {
        Err(format!(
            "{} of {required} approvals{}",
            approvers.len(),
            if approvers.is_empty() {
                String::new()
            } else {
                format!(" ({})", approvers.join(", "))
            }
        ))
    }
}

/// Gates per target stage, as stored for a model.
pub type GatePolicy = BTreeMap<Stage, Vec<GateSpec>>;
