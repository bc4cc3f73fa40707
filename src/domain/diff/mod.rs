//! Comparing two versions: the rules are documented on `VersionDiff`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lineage::VersionKey;
use super::manifest::{Manifest, ManifestEntry, RelPath};
use super::name::{MetricName, ModelName};
use super::record::{
    CodeRef, DatasetRef, DatasetRole, Goal, HyperValue, Hyperparameters, MetricSpec, VersionRecord,
};
use super::reference::VersionNumber;
use crate::digest::Digest;

pub(crate) mod format;

// ----- metrics ---------------------------------------------------------------------

/// How one metric moved from version a to version b.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum MetricVerdict {
    /// Better by more than the tolerance, by the metric's goal.
    Improved,
    /// Worse by more than the tolerance, by the metric's goal.
    Regressed,
    /// Within the tolerance (equal, when the metric has no spec or no tolerance).
    Unchanged,
    /// Different, but the metric has no spec saying which way is better.
    Changed,
    /// Only version a has the metric.
    OnlyInA,
    /// Only version b has the metric.
    OnlyInB,
}

impl MetricVerdict {
    /// The serialized name: `improved`, `only_in_a`, …
    pub fn as_str(self) -> &'static str {
        match self {
            MetricVerdict::Improved => "improved",
            MetricVerdict::Regressed => "regressed",
            MetricVerdict::Unchanged => "unchanged",
            MetricVerdict::Changed => "changed",
            MetricVerdict::OnlyInA => "only_in_a",
            MetricVerdict::OnlyInB => "only_in_b",
        }
    }
}

/// The verdict on a metric that both versions have, by the rules in the
/// [`VersionDiff`] docs.
///
/// ```
/// use modelreg::{MetricSpec, MetricVerdict, metric_verdict};
/// let auc = MetricSpec::maximize().with_tolerance(0.01);
/// assert_eq!(metric_verdict(0.90, 0.93, Some(&auc)), MetricVerdict::Improved);
/// assert_eq!(metric_verdict(0.91, 0.90, Some(&auc)), MetricVerdict::Unchanged);
/// assert_eq!(metric_verdict(0.90, 0.85, Some(&auc)), MetricVerdict::Regressed);
/// let loss = MetricSpec::minimize();
/// assert_eq!(metric_verdict(0.30, 0.25, Some(&loss)), MetricVerdict::Improved);
/// assert_eq!(metric_verdict(0.30, 0.25, None), MetricVerdict::Changed);
/// ```
pub fn metric_verdict(a: f64, b: f64, spec: Option<&MetricSpec>) -> MetricVerdict {
    let Some(spec) = spec else {
        return if a == b {
            MetricVerdict::Unchanged
        } else {
            MetricVerdict::Changed
        };
    };
    let delta = b - a;
    let unchanged = match spec.tolerance {
        None => a == b,
        // The inputs are decimal values rounded to binary; allow the subtraction's
        // rounding so a change of exactly the tolerance counts as within it.
        Some(t) => delta.abs() <= t + 4.0 * f64::EPSILON * a.abs().max(b.abs()),
    };
    if unchanged {
        return MetricVerdict::Unchanged;
    }
    match (spec.goal, delta > 0.0) {
        (Goal::Maximize, true) | (Goal::Minimize, false) => MetricVerdict::Improved,
        _ => MetricVerdict::Regressed,
    }
}

/// One metric in both versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct MetricDiff {
    /// The metric.
    pub name: MetricName,
    /// Its value in version a.
    pub a: Option<f64>,
    /// Its value in version b.
    pub b: Option<f64>,
    /// `b − a`, when both have it.
    pub change: Option<f64>,
    /// `(b − a) / |a|`: the change as a fraction of a (`0.05` = 5 % higher), signed
    /// like the change. `None` when a is 0 or either value is missing.
    pub relative: Option<f64>,
    /// How the metric is judged, if the model says.
    pub spec: Option<MetricSpec>,
    /// The verdict.
    pub verdict: MetricVerdict,
}

/// The verdict on a comparison as a whole (rules in the [`VersionDiff`] docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum OverallVerdict {
    /// At least one metric improved and none regressed.
    Improved,
    /// At least one metric regressed and none improved.
    Regressed,
    /// Some metrics improved and some regressed.
    Mixed,
    /// Every metric is unchanged within its tolerance.
    Unchanged,
    /// Nothing could be judged: no metrics, or only changes without a spec or
    /// metrics that one version lacks.
    Inconclusive,
}

impl OverallVerdict {
    /// Whether any metric regressed (`regressed` or `mixed`): what a gate that
    /// refuses every regression checks.
    pub fn has_regression(self) -> bool {
        matches!(self, OverallVerdict::Regressed | OverallVerdict::Mixed)
    }

    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            OverallVerdict::Improved => "improved",
            OverallVerdict::Regressed => "regressed",
            OverallVerdict::Mixed => "mixed",
            OverallVerdict::Unchanged => "unchanged",
            OverallVerdict::Inconclusive => "inconclusive",
        }
    }

    /// The overall verdict on a set of metric verdicts.
    pub fn of(verdicts: impl IntoIterator<Item = MetricVerdict>) -> Self {
        let (mut improved, mut regressed, mut all_unchanged, mut any) = (false, false, true, false);
        for v in verdicts {
            any = true;
            improved |= v == MetricVerdict::Improved;
            regressed |= v == MetricVerdict::Regressed;
            all_unchanged &= v == MetricVerdict::Unchanged;
        }
        match (improved, regressed) {
            (true, true) => OverallVerdict::Mixed,
            (false, true) => OverallVerdict::Regressed,
            (true, false) => OverallVerdict::Improved,
            (false, false) if any && all_unchanged => OverallVerdict::Unchanged,
            (false, false) => OverallVerdict::Inconclusive,
        }
    }
}

// ----- keyed values ----------------------------------------------------------------

/// A key whose value differs: `{"key":…,"a":…,"b":…}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct ValueChange<T> {
    /// The key (dotted for nested values, e.g. `optimizer.lr`).
    pub key: String,
    /// The value in version a.
    pub a: T,
    /// The value in version b.
    pub b: T,
}

/// A key only one version has: `{"key":…,"value":…}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct KeyedValue<T> {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: T,
}

/// The differences between two key → value maps, each list sorted by key. Keys
/// with equal values are not listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct MapDiff<T> {
    /// Keys in both with different values.
    pub changed: Vec<ValueChange<T>>,
    /// Keys only in b.
    pub added: Vec<KeyedValue<T>>,
    /// Keys only in a.
    pub removed: Vec<KeyedValue<T>>,
}

impl<T> Default for MapDiff<T> {
    fn default() -> Self {
        MapDiff {
            changed: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<T: PartialEq + Clone> MapDiff<T> {
    /// The differences from `a` to `b`.
    pub fn between(a: &BTreeMap<String, T>, b: &BTreeMap<String, T>) -> Self {
        let mut d = MapDiff::default();
        for (k, va) in a {
            match b.get(k) {
                Some(vb) if vb == va => {}
                Some(vb) => d.changed.push(ValueChange {
                    key: k.clone(),
                    a: va.clone(),
                    b: vb.clone(),
                }),
                None => d.removed.push(KeyedValue {
                    key: k.clone(),
                    value: va.clone(),
                }),
            }
        }
        for (k, vb) in b {
            if !a.contains_key(k) {
                d.added.push(KeyedValue {
                    key: k.clone(),
                    value: vb.clone(),
                });
            }
        }
        d
    }
}

impl<T> MapDiff<T> {
    /// Whether the maps are equal.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// Flattens hyperparameters: nested maps become dotted keys (`optimizer.lr`);
/// lists, scalars and empty maps are leaves.
///
/// A key that itself contains a dot can coincide with a nested one (`"a.b"` and
/// `a → b`); the first in key order is kept. Record such keys nested instead.
///
/// ```
/// use modelreg::{HyperValue, Hyperparameters, flatten_hyperparameters};
/// let mut optimizer = std::collections::BTreeMap::new();
/// optimizer.insert("lr".to_owned(), HyperValue::Float(0.001));
/// optimizer.insert("name".to_owned(), HyperValue::from("adam"));
/// let mut h = Hyperparameters::new();
/// h.insert("optimizer".into(), HyperValue::Map(optimizer));
/// h.insert("layers".into(), HyperValue::from(vec![64, 32]));
/// let flat = flatten_hyperparameters(&h);
/// assert_eq!(flat.keys().collect::<Vec<_>>(), ["layers", "optimizer.lr", "optimizer.name"]);
/// ```
pub fn flatten_hyperparameters(h: &Hyperparameters) -> BTreeMap<String, HyperValue> {
    fn walk(
        prefix: &str,
        map: &BTreeMap<String, HyperValue>,
        out: &mut BTreeMap<String, HyperValue>,
    ) {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                HyperValue::Map(m) if !m.is_empty() => walk(&key, m, out),
                v => {
                    out.entry(key).or_insert_with(|| v.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", h, &mut out);
    out
}

// ----- datasets, code, files -------------------------------------------------------

/// A dataset both versions used in the same role, at different versions or digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct DatasetChange {
    /// The dataset as version a used it.
    pub a: DatasetRef,
    /// The dataset as version b used it.
    pub b: DatasetRef,
}

/// How the datasets differ. Datasets are matched by name and role; a match whose
/// version label or digest differs is changed (a different URI alone is not).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct DatasetDiff {
    /// Same name and role, different version or digest.
    pub changed: Vec<DatasetChange>,
    /// Only b used them (in that role).
    pub added: Vec<DatasetRef>,
    /// Only a used them (in that role).
    pub removed: Vec<DatasetRef>,
}

impl DatasetDiff {
    /// The differences from `a`'s datasets to `b`'s.
    pub fn between(a: &[DatasetRef], b: &[DatasetRef]) -> Self {
        fn group(ds: &[DatasetRef]) -> BTreeMap<(&str, DatasetRole), Vec<&DatasetRef>> {
            let mut m: BTreeMap<_, Vec<_>> = BTreeMap::new();
            for d in ds {
                m.entry((d.name.as_str(), d.role)).or_default().push(d);
            }
            m
        }
        let same = |x: &DatasetRef, y: &DatasetRef| x.version == y.version && x.digest == y.digest;
        let (ga, gb) = (group(a), group(b));
        let keys: BTreeSet<_> = ga.keys().chain(gb.keys()).collect();
        let mut d = DatasetDiff::default();
        for k in keys {
            let mut xs: Vec<&DatasetRef> = ga.get(k).cloned().unwrap_or_default();
            let mut ys: Vec<&DatasetRef> = gb.get(k).cloned().unwrap_or_default();
            // Drop pairs that are the same dataset version; pair up what is left in
            // order (the common case is one each: a version bump).
            xs.retain(|x| match ys.iter().position(|y| same(x, y)) {
                Some(i) => {
                    ys.remove(i);
                    false
                }
                None => true,
            });
            let mut ys = ys.into_iter();
            for x in xs {
                match ys.next() {
                    Some(y) => d.changed.push(DatasetChange {
                        a: x.clone(),
                        b: y.clone(),
                    }),
                    None => d.removed.push(x.clone()),
                }
            }
            d.added.extend(ys.cloned());
        }
        d
    }

    /// Whether both used the same datasets.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// The code of a and b, when it differs (commit, repository or dirtiness).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct CodeChange {
    /// Version a's code.
    pub a: Option<CodeRef>,
    /// Version b's code.
    pub b: Option<CodeRef>,
}

/// A file at the same path in both artifacts, with different contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct FileChange {
    /// Its path.
    pub path: RelPath,
    /// Its size in a.
    pub a_size: u64,
    /// Its size in b.
    pub b_size: u64,
    /// Its digest in a.
    pub a_digest: Digest,
    /// Its digest in b.
    pub b_digest: Digest,
}

/// How two artifacts' files differ, by path and digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct ArtifactDiff {
    /// Paths only in b.
    pub added: Vec<ManifestEntry>,
    /// Paths only in a.
    pub removed: Vec<ManifestEntry>,
    /// Paths in both with different digests.
    pub changed: Vec<FileChange>,
    /// How many paths are identical in both.
    pub unchanged: u64,
    /// Total size of a's files.
    pub a_bytes: u64,
    /// Total size of b's files.
    pub b_bytes: u64,
    /// How many of b's bytes a already has: the summed size of b's files whose
    /// digest is also a file of a, at any path. The store keeps those once, so
    /// `b_bytes − shared_bytes` is what b added to it (at most).
    pub shared_bytes: u64,
}

impl ArtifactDiff {
    /// The differences from manifest `a` to manifest `b`.
    pub fn between(a: &Manifest, b: &Manifest) -> Self {
        let in_a: BTreeSet<&Digest> = a.entries().iter().map(|e| &e.digest).collect();
        let mut d = ArtifactDiff {
            a_bytes: a.total_size(),
            b_bytes: b.total_size(),
            shared_bytes: b
                .entries()
                .iter()
                .filter(|e| in_a.contains(&e.digest))
                .map(|e| e.size)
                .sum(),
            ..ArtifactDiff::default()
        };
        // Both manifests are sorted by path: merge them.
        let (mut xs, mut ys) = (a.entries().iter().peekable(), b.entries().iter().peekable());
        loop {
            match (xs.peek(), ys.peek()) {
                (Some(x), Some(y)) if x.path == y.path => {
                    if x.digest == y.digest {
                        d.unchanged += 1;
                    } else {
                        d.changed.push(FileChange {
                            path: x.path.clone(),
                            a_size: x.size,
                            b_size: y.size,
                            a_digest: x.digest,
                            b_digest: y.digest,
                        });
                    }
                    xs.next();
                    ys.next();
                }
                (Some(x), Some(y)) if x.path.as_str() < y.path.as_str() => {
                    d.removed.push((*x).clone());
                    xs.next();
                }
                (Some(_), Some(y)) | (None, Some(y)) => {
                    d.added.push((*y).clone());
                    ys.next();
                }
                (Some(x), None) => {
                    d.removed.push((*x).clone());
                    xs.next();
                }
                (None, None) => break,
            }
        }
        d
    }

    /// Whether the artifacts have the same files.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

// ----- the comparison --------------------------------------------------------------

/// Which version one side of a comparison is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct VersionSummary {
    /// Its model.
    pub model: ModelName,
    /// Its number.
    pub number: VersionNumber,
    /// Its semver label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "serve", schema(value_type = Option<String>))]
    pub semver: Option<semver::Version>,
    /// The digest of its artifact's manifest.
    pub artifact: Digest,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl VersionSummary {
    /// Summarizes version `record` of `model`.
    pub fn of(model: &ModelName, record: &VersionRecord) -> Self {
        VersionSummary {
            model: model.clone(),
            number: record.number,
            semver: record.semver.clone(),
            artifact: record.artifact,
            created_at: record.created_at,
        }
    }

    /// The version's key, `model/number`.
    pub fn key(&self) -> VersionKey {
        VersionKey::new(self.model.clone(), self.number)
    }
}

/// Everything that differs between version a and version b.
///
/// Serialized (snake_case, stable) as
/// `{"a":{…},"b":{…},"verdict":"improved","metrics":[{"name":"auc","a":0.9,"b":0.93,
/// "change":0.03,"relative":0.033,"spec":{"goal":"maximize"},"verdict":"improved"}],
/// "hyperparameters":{"changed":[{"key":"lr","a":0.1,"b":0.01}],"added":[],"removed":[]},
/// "environment":{…same shape…},"datasets":{"changed":[{"a":{…},"b":{…}}],"added":[],
/// "removed":[]},"code":null,"artifact":{"added":[…],"removed":[…],"changed":[…],
/// "unchanged":3,"a_bytes":…,"b_bytes":…,"shared_bytes":…}}`.
/// `Display` renders it as an aligned text table.
///
/// Comparing two versions: metrics judged by the model's goals, hyperparameters,
/// environment, datasets, code and files. Pure: the registry gathers the records,
/// specs and manifests, and [`compare_versions`] does the rest.
///
/// ## Verdicts
///
/// Each metric gets a [`MetricVerdict`] from [`metric_verdict`]:
///
/// | case | verdict |
/// |---|---|
/// | only one version has the metric | `only_in_a` / `only_in_b` |
/// | spec, `|b − a|` ≤ tolerance (none: `a == b`) | `unchanged` |
/// | spec `maximize`, b > a (or `minimize`, b < a) | `improved` |
/// | spec, otherwise | `regressed` |
/// | no spec, `a == b` | `unchanged` |
/// | no spec, `a != b` | `changed` (no direction to judge by) |
///
/// A tolerance is compared with a slack of a few units in the last place of the
/// values, so `0.91 → 0.90` with tolerance `0.01` is unchanged although the
/// floating-point difference is `0.010000000000000009`.
///
/// The [`OverallVerdict`] only counts judged metrics (`improved`, `regressed`):
/// `mixed` if some improved and some regressed, `regressed` if some regressed and
/// none improved, `improved` if some improved and none regressed, `unchanged` if
/// there are metrics and every one is `unchanged`, and `inconclusive` otherwise
/// (no metrics, or only changes that cannot be judged). A gate that must refuse
/// any regression asks [`OverallVerdict::has_regression`], which is true for
/// `mixed` too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct VersionDiff {
    /// The baseline.
    pub a: VersionSummary,
    /// The version compared with it.
    pub b: VersionSummary,
    /// The verdict over all metrics.
    pub verdict: OverallVerdict,
    /// Every metric either version has, by name.
    pub metrics: Vec<MetricDiff>,
    /// Hyperparameters, flattened with dotted keys.
    pub hyperparameters: MapDiff<HyperValue>,
    /// Training environment, flattened by [`Environment::flatten`](super::Environment::flatten).
    pub environment: MapDiff<String>,
    /// Datasets.
    pub datasets: DatasetDiff,
    /// The code, when it differs.
    pub code: Option<CodeChange>,
    /// Files, when both manifests were given.
    pub artifact: Option<ArtifactDiff>,
}

/// Compares version `a` (the baseline) with version `b`.
///
/// `specs` judge the metrics (a metric without a spec gets `changed`/`unchanged`);
/// `manifests` are a's and b's, for the file comparison (`artifact` is `None`
/// without them).
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// # use modelreg::*;
/// # let record = |n: u64, auc: f64| VersionRecord {
/// #     model: ModelName::new("fraud").unwrap(),
/// #     number: VersionNumber::new(n).unwrap(), semver: None, artifact: Digest::of(b""), size: 0,
/// #     files: 0, created_at: chrono::DateTime::UNIX_EPOCH, created_by: Actor::new("ci").unwrap(),
/// #     description: String::new(), tags: Tags::new(), provenance: Provenance::default(),
/// #     metrics: Metrics::new().with("auc", auc).unwrap(), deprecated: None, stage: Default::default(), stage_since: None, approvals: Default::default(), reached: Default::default(), scan: None, purged: None, signatures: Vec::new() };
/// use std::collections::BTreeMap;
/// let fraud = ModelName::new("fraud")?;
/// let specs = BTreeMap::from([(MetricName::new("auc")?, MetricSpec::maximize())]);
/// let diff = compare_versions((&fraud, &record(1, 0.90)), (&fraud, &record(2, 0.93)), &specs, None);
/// assert_eq!(diff.verdict, OverallVerdict::Improved);
/// assert_eq!(diff.metrics[0].verdict, MetricVerdict::Improved);
/// assert!(diff.to_string().contains("auc"));
/// # Ok(()) }
/// ```
pub fn compare_versions(
    a: (&ModelName, &VersionRecord),
    b: (&ModelName, &VersionRecord),
    specs: &BTreeMap<MetricName, MetricSpec>,
    manifests: Option<(&Manifest, &Manifest)>,
) -> VersionDiff {
    let ((ma, ra), (mb, rb)) = (a, b);
    let metrics = diff_metrics(ra, rb, specs);
    let verdict = OverallVerdict::of(metrics.iter().map(|m| m.verdict));
    let (pa, pb) = (&ra.provenance, &rb.provenance);
    VersionDiff {
        a: VersionSummary::of(ma, ra),
        b: VersionSummary::of(mb, rb),
        verdict,
        metrics,
        hyperparameters: MapDiff::between(
            &flatten_hyperparameters(&pa.hyperparameters),
            &flatten_hyperparameters(&pb.hyperparameters),
        ),
        environment: MapDiff::between(&pa.environment.flatten(), &pb.environment.flatten()),
        datasets: DatasetDiff::between(&pa.datasets, &pb.datasets),
        code: (pa.code != pb.code).then(|| CodeChange {
            a: pa.code.clone(),
            b: pb.code.clone(),
        }),
        artifact: manifests.map(|(x, y)| ArtifactDiff::between(x, y)),
    }
}

fn diff_metrics(
    a: &VersionRecord,
    b: &VersionRecord,
    specs: &BTreeMap<MetricName, MetricSpec>,
) -> Vec<MetricDiff> {
    let names: BTreeSet<&MetricName> = a
        .metrics
        .iter()
        .chain(b.metrics.iter())
        .map(|(k, _)| k)
        .collect();
    names
        .into_iter()
        .map(|name| {
            let (va, vb) = (a.metrics.get(name.as_str()), b.metrics.get(name.as_str()));
            let spec = specs.get(name).copied();
            let (change, relative, verdict) = match (va, vb) {
                (Some(x), Some(y)) => (
                    Some(y - x),
                    (x != 0.0).then(|| (y - x) / x.abs()),
                    metric_verdict(x, y, spec.as_ref()),
                ),
                (Some(_), None) => (None, None, MetricVerdict::OnlyInA),
                _ => (None, None, MetricVerdict::OnlyInB),
            };
            MetricDiff {
                name: name.clone(),
                a: va,
                b: vb,
                change,
                relative,
                spec,
                verdict,
            }
        })
        .collect()
}

// ----- metric history --------------------------------------------------------------

/// One value of a metric over a model's versions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    /// The version.
    pub version: VersionNumber,
    /// When the version was registered.
    pub created_at: DateTime<Utc>,
    /// The metric's value (the latest, if metrics were added more than once).
    pub value: f64,
}

/// Metric `name` across `versions` that `keep` accepts, in the order given,
/// skipping versions without it: a series ready to plot.
pub fn metric_history<'a>(
    versions: impl IntoIterator<Item = &'a VersionRecord>,
    name: &str,
    mut keep: impl FnMut(&VersionRecord) -> bool,
) -> Vec<MetricPoint> {
    versions
        .into_iter()
        .filter(|v| keep(v))
        .filter_map(|v| {
            v.metrics.get(name).map(|value| MetricPoint {
                version: v.number,
                created_at: v.created_at,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::format::{bytes, num, signed};
    use super::*;
    use crate::domain::{Actor, Environment, Metrics, Provenance, Tags};

    fn record(n: u64, metrics: &[(&str, f64)], provenance: Provenance) -> VersionRecord {
        let mut m = Metrics::new();
        for (k, v) in metrics {
            m = m.with(k, *v).unwrap();
        }
        VersionRecord {
            model: crate::domain::ModelName::unset(),
            number: VersionNumber::new(n).unwrap(),
            semver: None,
            artifact: Digest::of(&n.to_le_bytes()),
            size: 0,
            files: 0,
            created_at: chrono::DateTime::UNIX_EPOCH,
            created_by: Actor::new("ci").unwrap(),
            description: String::new(),
            tags: Tags::new(),
            provenance,
            metrics: m,
            deprecated: None,
            stage: Default::default(),
            stage_since: None,
            approvals: Default::default(),
            reached: Default::default(),
            scan: None,
            purged: None,
            signatures: Vec::new(),
        }
    }

    fn specs(s: &[(&str, MetricSpec)]) -> BTreeMap<MetricName, MetricSpec> {
        s.iter()
            .map(|(k, v)| (MetricName::new(*k).unwrap(), *v))
            .collect()
    }

    fn compare(
        a: &VersionRecord,
        b: &VersionRecord,
        s: &BTreeMap<MetricName, MetricSpec>,
    ) -> VersionDiff {
        let m = ModelName::new("m").unwrap();
        compare_versions((&m, a), (&m, b), s, None)
    }

    #[test]
    fn verdicts_by_goal_and_tolerance() {
        use MetricVerdict::*;
        let max = MetricSpec::maximize();
        let min = MetricSpec::minimize();
        let max_t = max.with_tolerance(0.01);
        let min_t = min.with_tolerance(0.01);
        let cases = [
            (0.5, 0.6, Some(max), Improved),
            (0.6, 0.5, Some(max), Regressed),
            (0.5, 0.5, Some(max), Unchanged),
            (0.5, 0.5 + 1e-12, Some(max), Improved), // no tolerance: any change counts
            (0.5, 0.6, Some(min), Regressed),
            (0.6, 0.5, Some(min), Improved),
            (0.90, 0.91, Some(max_t), Unchanged), // exactly the tolerance
            (0.91, 0.90, Some(max_t), Unchanged),
            (0.90, 0.9101, Some(max_t), Improved),
            (0.90, 0.8899, Some(max_t), Regressed),
            (0.20, 0.19, Some(min_t), Unchanged),
            (0.20, 0.1899, Some(min_t), Improved),
            (0.20, 0.2101, Some(min_t), Regressed),
            (-1.0, -2.0, Some(max), Regressed),
            (1.0, 2.0, None, Changed),
            (1.0, 1.0, None, Unchanged),
        ];
        for (a, b, spec, want) in cases {
            assert_eq!(
                metric_verdict(a, b, spec.as_ref()),
                want,
                "{a} → {b} with {spec:?}"
            );
        }
    }

    #[test]
    fn relative_change_and_one_sided_metrics() {
        let s = specs(&[
            ("auc", MetricSpec::maximize()),
            ("loss", MetricSpec::minimize()),
        ]);
        let a = record(
            1,
            &[("auc", 0.0), ("loss", -0.5), ("old", 1.0)],
            Provenance::default(),
        );
        let b = record(
            2,
            &[("auc", 0.2), ("loss", -0.25), ("new", 2.0)],
            Provenance::default(),
        );
        let d = compare(&a, &b, &s);
        let m: BTreeMap<&str, &MetricDiff> =
            d.metrics.iter().map(|m| (m.name.as_str(), m)).collect();
        assert_eq!(m["auc"].change, Some(0.2));
        assert_eq!(m["auc"].relative, None); // a is zero
        assert_eq!(m["auc"].verdict, MetricVerdict::Improved);
        assert_eq!(m["loss"].relative, Some(0.5)); // relative to |a|: up by half
        assert_eq!(m["loss"].verdict, MetricVerdict::Regressed);
        assert_eq!(m["old"].verdict, MetricVerdict::OnlyInA);
        assert_eq!((m["old"].change, m["old"].relative), (None, None));
        assert_eq!(m["new"].verdict, MetricVerdict::OnlyInB);
        assert_eq!(d.verdict, OverallVerdict::Mixed);
        assert!(d.verdict.has_regression());
    }

    #[test]
    fn overall_verdict_rules() {
        use MetricVerdict::*;
        let of = |v: &[MetricVerdict]| OverallVerdict::of(v.iter().copied());
        assert_eq!(
            of(&[Improved, Unchanged, Changed, OnlyInA]),
            OverallVerdict::Improved
        );
        assert_eq!(of(&[Regressed, Unchanged]), OverallVerdict::Regressed);
        assert_eq!(of(&[Regressed, Improved]), OverallVerdict::Mixed);
        assert_eq!(of(&[Unchanged, Unchanged]), OverallVerdict::Unchanged);
        assert_eq!(of(&[Unchanged, Changed]), OverallVerdict::Inconclusive);
        assert_eq!(of(&[OnlyInB]), OverallVerdict::Inconclusive);
        assert_eq!(of(&[]), OverallVerdict::Inconclusive);
        assert!(!OverallVerdict::Improved.has_regression());
    }

    #[test]
    fn nested_hyperparameters_diff_with_dotted_keys() {
        let h = |json: &str| -> Hyperparameters { serde_json::from_str(json).unwrap() };
        let a = h(
            r#"{"optimizer":{"name":"adam","lr":0.001,"betas":[0.9,0.999]},"epochs":3,"dropout":0.1,"sched":{}}"#,
        );
        let b = h(
            r#"{"optimizer":{"name":"adam","lr":0.0001,"betas":[0.9,0.99],"wd":{"x":1}},"epochs":3.0,"sched":{}}"#,
        );
        let d = MapDiff::between(&flatten_hyperparameters(&a), &flatten_hyperparameters(&b));
        let keys = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            d.changed.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
            keys(vec!["epochs", "optimizer.betas", "optimizer.lr"]) // 3 vs 3.0: int vs float
        );
        assert_eq!(d.changed[2].a, HyperValue::Float(0.001));
        assert_eq!(
            d.added.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["optimizer.wd.x"]
        );
        assert_eq!(
            d.removed.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["dropout"]
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["changed"][2],
            serde_json::json!({"key": "optimizer.lr", "a": 0.001, "b": 0.0001})
        );
        assert_eq!(
            json["removed"][0],
            serde_json::json!({"key": "dropout", "value": 0.1})
        );
    }

    #[test]
    fn environment_and_datasets_and_code() {
        let ds = |n: &str, role, v: &str| DatasetRef::new(n, role).version(v);
        let pa = Provenance {
            environment: Environment::default()
                .with_framework("torch", "2.3.0")
                .into(),
            datasets: vec![
                ds("clicks", DatasetRole::Train, "v3"),
                ds("clicks", DatasetRole::Eval, "v3"),
                ds("views", DatasetRole::Train, "v1"),
            ],
            code: Some(CodeRef {
                repository: None,
                commit: "aaa".into(),
                dirty: false,
            }),
            ..Provenance::default()
        };
        let mut pb = pa.clone();
        pb.environment = Environment::default()
            .with_framework("torch", "2.4.1")
            .into();
        std::sync::Arc::make_mut(&mut pb.environment).cuda = Some("12.4".into());
        pb.datasets = vec![
            ds("clicks", DatasetRole::Train, "v4"),
            ds("clicks", DatasetRole::Eval, "v3").uri("s3://elsewhere"), // same identity
            ds("labels", DatasetRole::Train, "v1"),
        ];
        pb.code = Some(CodeRef {
            repository: None,
            commit: "bbb".into(),
            dirty: true,
        });
        let d = compare(&record(1, &[], pa), &record(2, &[], pb), &BTreeMap::new());
        assert_eq!(d.environment.changed[0].key, "framework.torch");
        assert_eq!(d.environment.added[0].key, "cuda");
        assert_eq!(d.datasets.changed.len(), 1);
        assert_eq!(d.datasets.changed[0].a.version.as_deref(), Some("v3"));
        assert_eq!(d.datasets.changed[0].b.version.as_deref(), Some("v4"));
        assert_eq!(d.datasets.added[0].name, "labels");
        assert_eq!(d.datasets.removed[0].name, "views");
        assert_eq!(d.code.as_ref().unwrap().b.as_ref().unwrap().commit, "bbb");
        assert_eq!(d.verdict, OverallVerdict::Inconclusive);
    }

    fn entry(path: &str, content: &[u8]) -> ManifestEntry {
        ManifestEntry {
            path: RelPath::new(path).unwrap(),
            size: content.len() as u64,
            digest: Digest::of(content),
            sha256: Some(crate::Sha256::of(content)),
        }
    }

    #[test]
    fn artifact_files_and_shared_bytes() {
        let a = Manifest::new(vec![
            entry("config.json", b"{}"),
            entry("model.bin", b"weights-v1"),
            entry("old.txt", b"gone"),
            entry("tokenizer.json", b"tok"),
        ])
        .unwrap();
        let b = Manifest::new(vec![
            entry("adapter.bin", b"adapter"),
            entry("base/model.bin", b"weights-v1"), // moved, same bytes
            entry("config.json", b"{}"),
            entry("model.bin", b"weights-v2!"),
            entry("tokenizer.json", b"tok"),
        ])
        .unwrap();
        let d = ArtifactDiff::between(&a, &b);
        assert_eq!(d.unchanged, 2);
        assert_eq!(
            d.added.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["adapter.bin", "base/model.bin"]
        );
        assert_eq!(
            d.removed
                .iter()
                .map(|e| e.path.as_str())
                .collect::<Vec<_>>(),
            ["old.txt"]
        );
        assert_eq!(d.changed.len(), 1);
        assert_eq!((d.changed[0].a_size, d.changed[0].b_size), (10, 11));
        assert_eq!(d.b_bytes, 7 + 10 + 2 + 11 + 3);
        assert_eq!(d.shared_bytes, 10 + 2 + 3);
        assert_eq!(d.a_bytes, 2 + 10 + 4 + 3);
        assert!(ArtifactDiff::between(&a, &a).is_empty());
    }

    #[test]
    fn table_is_aligned_and_serde_round_trips() {
        let s = specs(&[("auc", MetricSpec::maximize().with_tolerance(0.005))]);
        let hp = |lr: f64| -> Hyperparameters {
            BTreeMap::from([("lr".to_owned(), HyperValue::Float(lr))])
        };
        let pa = Provenance {
            hyperparameters: hp(0.001).into(),
            ..Provenance::default()
        };
        let pb = Provenance {
            hyperparameters: hp(0.0001).into(),
            ..Provenance::default()
        };
        let a = record(1, &[("auc", 0.9), ("eval/loss", 0.25)], pa);
        let mut b = record(2, &[("auc", 0.93), ("eval/loss", 0.2)], pb);
        b.semver = Some(semver::Version::new(1, 1, 0));
        let m = ModelName::new("fraud").unwrap();
        let ma = Manifest::new(vec![entry("model.bin", b"one")]).unwrap();
        let mb = Manifest::new(vec![entry("model.bin", b"two"), entry("extra.bin", b"x")]).unwrap();
        let d = compare_versions((&m, &a), (&m, &b), &s, Some((&ma, &mb)));
        let table = d.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("b: fraud/2 (1.1.0)  blake3:"),
            "{table}"
        );
        assert_eq!(
            lines[2],
            "verdict: improved (1 improved, 0 regressed, 0 unchanged, 1 other)"
        );
        let metric_lines: Vec<&str> = lines[4..7].to_vec();
        assert_eq!(
            metric_lines,
            [
                "  metric        a     b  change  relative  verdict   goal",
                "  auc         0.9  0.93   +0.03     +3.3%  improved  maximize ±0.005",
                "  eval/loss  0.25   0.2   -0.05    -20.0%  changed   -",
            ],
            "{table}"
        );
        assert!(
            table.contains("  ~  lr              0.001  0.0001\n"),
            "{table}"
        );
        assert!(
            table.contains("b shares 0 B of its 4 B with a, 0.0%"),
            "{table}"
        );
        assert!(
            table.contains("  ~  model.bin  3 B  3 B\n  +  extra.bin    -  1 B\n"),
            "{table}"
        );

        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains(r#""verdict":"improved""#));
        assert!(
            json.contains(r#""spec":{"goal":"maximize","tolerance":0.005}"#),
            "{json}"
        );
        let back: VersionDiff = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn numbers_for_the_table() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.91), "0.91");
        assert_eq!(num(0.020000000000000018), "0.02");
        assert_eq!(num(12345.0), "12345");
        assert_eq!(num(120.0), "120");
        assert_eq!(num(0.00015), "0.00015");
        assert_eq!(num(0.1 + 0.2), "0.3");
        assert_eq!(num(-1234.5678), "-1234.57");
        assert_eq!(num(1e-7), "1.000e-7");
        assert_eq!(signed(-0.5), "-0.5");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn history_skips_versions_without_the_metric() {
        let vs = [
            record(1, &[("auc", 0.8)], Provenance::default()),
            record(2, &[], Provenance::default()),
            record(3, &[("auc", 0.9)], Provenance::default()),
            record(4, &[("auc", 0.7)], Provenance::default()),
        ];
        let h = metric_history(&vs, "auc", |v| v.number.get() != 4);
        assert_eq!(
            h.iter()
                .map(|p| (p.version.get(), p.value))
                .collect::<Vec<_>>(),
            [(1, 0.8), (3, 0.9)]
        );
    }
}
