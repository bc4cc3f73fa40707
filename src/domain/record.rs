//! What a version records: metrics, hyperparameters, environment, provenance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lifecycle::{Approval, Stage};
use super::limits;
use super::name::{Actor, MetricName, ModelName, TagKey, check_text};
use super::reference::{Selector, VersionNumber, VersionRef};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Free-form key/value labels on a model or a version. Keys follow [`MetricName`]'s
/// rules; values are text of at most
/// [`MAX_TAG_VALUE_CHARS`](super::limits::MAX_TAG_VALUE_CHARS) characters, and one
/// event sets at most [`MAX_TAGS`](super::limits::MAX_TAGS) of them.
pub type Tags = BTreeMap<TagKey, String>;

/// Checks tag values (keys are checked by their type).
pub(crate) fn check_tags(tags: &Tags) -> Result<()> {
    for (k, v) in tags {
        check_text(
            &format!("value of tag '{k}'"),
            v,
            limits::MAX_TAG_VALUE_CHARS,
        )?;
    }
    Ok(())
}

/// Metric values of a version: name → finite `f64`.
///
/// NaN and infinities are rejected: they cannot be compared, and JSON cannot carry
/// them.
///
/// ```
/// use modelreg::Metrics;
/// let m = Metrics::new().with("auc", 0.91).unwrap().with("eval/loss", 0.23).unwrap();
/// assert_eq!(m.get("auc"), Some(0.91));
/// assert!(Metrics::new().with("auc", f64::NAN).is_err());
/// assert!(Metrics::new().with("auc", f64::INFINITY).is_err());
/// ```
///
/// Serialized as a JSON object sorted by name. Held as a sorted vector: a
/// version has a handful of metrics, and a model 100,000 versions, so a map's
/// node of eleven slots per version would be most of its memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics(Vec<(MetricName, f64)>);

impl Metrics {
    /// No metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a metric, checking the name and that the value is finite.
    pub fn with(mut self, name: &str, value: f64) -> Result<Self> {
        self.insert(MetricName::new(name)?, value)?;
        Ok(self)
    }

    /// Adds or replaces a metric, checking that the value is finite.
    pub fn insert(&mut self, name: MetricName, value: f64) -> Result<()> {
        check_metric_value(&name, value)?;
        self.set(name, value);
        Ok(())
    }

    /// Adds or replaces a metric whose value was checked, keeping the order.
    fn set(&mut self, name: MetricName, value: f64) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// A metric's value.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1)
    }

    /// All metrics, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&MetricName, f64)> {
        self.0.iter().map(|(k, v)| (k, *v))
    }

    /// The number of metrics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds or replaces every metric of `other`.
    pub fn merge(&mut self, other: &Metrics) {
        for (k, v) in &other.0 {
            self.set(k.clone(), *v);
        }
    }
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Metrics;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of metric names to finite numbers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Metrics, A::Error> {
                let mut entries: Vec<(MetricName, f64)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((k, v)) = map.next_entry::<MetricName, f64>()? {
                    check_metric_value(&k, v).map_err(serde::de::Error::custom)?;
                    entries.push((k, v));
                }
                // As a map would: sorted, and the last of repeated names wins.
                entries.reverse();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.dedup_by(|later, kept| later.0 == kept.0);
                entries.shrink_to_fit();
                Ok(Metrics(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

fn check_metric_value(name: &MetricName, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid_input(
            format!("metric '{name}'"),
            format!("{value} is not a finite number"),
        ))
    }
}

impl TryFrom<BTreeMap<MetricName, f64>> for Metrics {
    type Error = Error;
    fn try_from(map: BTreeMap<MetricName, f64>) -> Result<Self> {
        for (k, v) in &map {
            check_metric_value(k, *v)?;
        }
        Ok(Metrics(map.into_iter().collect()))
    }
}

impl From<Metrics> for BTreeMap<MetricName, f64> {
    fn from(m: Metrics) -> Self {
        m.0.into_iter().collect()
    }
}

/// Whether higher or lower values of a metric are better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum Goal {
    /// Higher is better (accuracy, AUC).
    Maximize,
    /// Lower is better (loss, latency).
    Minimize,
}

/// The serialized (snake_case) names, for text: `as_str` and `Display`.
macro_rules! snake_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name it serializes to.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            /// The name it serializes to.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}
pub(crate) use snake_names;

snake_names!(Goal { Maximize => "maximize", Minimize => "minimize" });

/// How a model's metric is judged: its goal and how much worse a value may be
/// before it counts as a regression.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct MetricSpec {
    /// Higher or lower is better.
    pub goal: Goal,
    /// An absolute change no larger than this counts as unchanged (finite, ≥ 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

impl MetricSpec {
    /// Higher is better, no tolerance.
    pub fn maximize() -> Self {
        MetricSpec {
            goal: Goal::Maximize,
            tolerance: None,
        }
    }

    /// Lower is better, no tolerance.
    pub fn minimize() -> Self {
        MetricSpec {
            goal: Goal::Minimize,
            tolerance: None,
        }
    }

    /// The same spec with an absolute tolerance.
    pub fn with_tolerance(self, tolerance: f64) -> Self {
        MetricSpec {
            tolerance: Some(tolerance),
            ..self
        }
    }

    pub(crate) fn check(&self, name: &MetricName) -> Result<()> {
        match self.tolerance {
            Some(t) if !(t.is_finite() && t >= 0.0) => Err(Error::invalid_input(
                format!("tolerance of metric '{name}'"),
                "must be a finite number ≥ 0",
            )),
            _ => Ok(()),
        }
    }
}

/// A typed hyperparameter value.
///
/// Serialized as plain JSON (`true`, `3`, `0.5`, `"adam"`, `[…]`, `{…}`); integers
/// and floats stay distinct through a round trip. Floats must be finite; nesting is
/// limited to [`HyperValue::MAX_DEPTH`] levels.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HyperValue {
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A finite float.
    Float(f64),
    /// Text.
    String(String),
    /// A list of values.
    List(Vec<HyperValue>),
    /// Named values.
    Map(BTreeMap<String, HyperValue>),
}

/// Reads any JSON value but `null` straight into its variant: an integer that
/// fits `i64` is an `Int`, any other number a `Float` (what the untagged derive
/// did, without buffering each value and trying the variants in turn).
impl<'de> Deserialize<'de> for HyperValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = HyperValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a hyperparameter value (bool, number, string, list or map)")
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<HyperValue, E> {
                Ok(HyperValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<HyperValue, E> {
                Ok(HyperValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<HyperValue, E> {
                Ok(i64::try_from(v).map_or(HyperValue::Float(v as f64), HyperValue::Int))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<HyperValue, E> {
                Ok(HyperValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<HyperValue, E> {
                Ok(HyperValue::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<HyperValue, E> {
                Ok(HyperValue::String(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<HyperValue, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(HyperValue::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<HyperValue, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, HyperValue>()? {
                    out.insert(k, v);
                }
                Ok(HyperValue::Map(out))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl HyperValue {
    /// How deeply lists and maps may nest.
    pub const MAX_DEPTH: usize = 32;

    pub(crate) fn check(&self, path: &str, depth: usize) -> Result<()> {
        if depth > Self::MAX_DEPTH {
            return Err(Error::invalid_input(
                format!("hyperparameter '{path}'"),
                format!("nested deeper than {} levels", Self::MAX_DEPTH),
            ));
        }
        match self {
            HyperValue::Float(f) if !f.is_finite() => Err(Error::invalid_input(
                format!("hyperparameter '{path}'"),
                format!("{f} is not a finite number"),
            )),
            HyperValue::List(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| v.check(&format!("{path}[{i}]"), depth + 1)),
            HyperValue::Map(map) => map
                .iter()
                .try_for_each(|(k, v)| v.check(&format!("{path}.{k}"), depth + 1)),
            _ => Ok(()),
        }
    }
}

impl Drop for HyperValue {
    /// Drops nested lists and maps with a heap stack instead of recursion, so that
    /// even a hostile value nested far deeper than [`HyperValue::MAX_DEPTH`] (which
    /// validation then rejects) cannot overflow the thread's stack.
    fn drop(&mut self) {
        fn take_children(v: &mut HyperValue, into: &mut Vec<HyperValue>) {
            match v {
                HyperValue::List(items) => into.append(items),
                HyperValue::Map(map) => into.extend(std::mem::take(map).into_values()),
                _ => {}
            }
        }
        let mut stack = Vec::new();
        take_children(self, &mut stack);
        while let Some(mut child) = stack.pop() {
            take_children(&mut child, &mut stack);
            // `child` now has no children: dropping it does not recurse.
        }
    }
}

macro_rules! hyper_from {
    ($($t:ty => $v:ident $(as $cast:ty)?),*) => {$(
        impl From<$t> for HyperValue {
            fn from(x: $t) -> Self { HyperValue::$v(x $(as $cast)?) }
        }
    )*};
}
hyper_from!(bool => Bool, i64 => Int, i32 => Int as i64, u32 => Int as i64, u16 => Int as i64, u8 => Int as i64, f64 => Float, f32 => Float as f64, String => String);

/// A count (`usize`, `u64`) is an integer when it fits `i64`, else a float, as
/// a JSON number that large reads back.
impl From<u64> for HyperValue {
    fn from(x: u64) -> Self {
        i64::try_from(x).map_or(HyperValue::Float(x as f64), HyperValue::Int)
    }
}

impl From<usize> for HyperValue {
    fn from(x: usize) -> Self {
        HyperValue::from(x as u64)
    }
}

impl From<&str> for HyperValue {
    fn from(s: &str) -> Self {
        HyperValue::String(s.to_owned())
    }
}

impl<T: Into<HyperValue>> From<Vec<T>> for HyperValue {
    fn from(v: Vec<T>) -> Self {
        HyperValue::List(v.into_iter().map(Into::into).collect())
    }
}

/// Hyperparameters: name → typed value.
pub type Hyperparameters = BTreeMap<String, HyperValue>;

/// Where a model was trained: frameworks, accelerators, runtimes, machine.
///
/// Every field is optional; [`Environment::capture`] fills in what the running
/// process can detect about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Environment {
    /// Framework → version, e.g. `torch → 2.4.1`, `candle → 0.8`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub frameworks: BTreeMap<String, String>,
    /// CUDA toolkit version, e.g. `12.4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// GPU driver version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Language runtime → version, e.g. `python → 3.11.7`, `rust → 1.95.0`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub runtimes: BTreeMap<String, String>,
    /// Operating system, e.g. `linux (Debian GNU/Linux 12)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// CPU architecture, e.g. `x86_64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// CPU model name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Number of logical CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    /// GPU model names, one per device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// Anything else.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl Environment {
    /// The same environment with a framework version added.
    pub fn with_framework(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.frameworks.insert(name.into(), version.into());
        self
    }

    /// Flattens the environment into `key → value` pairs (`framework.torch`,
    /// `cuda`, `gpu.0`, …), the form comparisons use.
    pub fn flatten(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.frameworks {
            out.insert(format!("framework.{k}"), v.clone());
        }
        for (k, v) in &self.runtimes {
            out.insert(format!("runtime.{k}"), v.clone());
        }
        for (k, v) in [
            ("cuda", &self.cuda),
            ("driver", &self.driver),
            ("os", &self.os),
            ("arch", &self.arch),
            ("cpu", &self.cpu),
        ] {
            if let Some(v) = v {
                out.insert(k.to_owned(), v.clone());
            }
        }
        if let Some(n) = self.cpu_count {
            out.insert("cpu_count".into(), n.to_string());
        }
        for (i, g) in self.gpus.iter().enumerate() {
            out.insert(format!("gpu.{i}"), g.clone());
        }
        for (k, v) in &self.extra {
            out.insert(format!("extra.{k}"), v.clone());
        }
        out
    }
}

/// The source code a version was trained from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct CodeRef {
    /// Repository URL or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Commit id.
    pub commit: String,
    /// Whether the working tree had uncommitted changes.
    #[serde(default)]
    pub dirty: bool,
}

/// What a dataset was used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum DatasetRole {
    /// Training data.
    Train,
    /// Validation data (model selection, early stopping).
    Validation,
    /// Evaluation data.
    Eval,
    /// Held-out test data.
    Test,
    /// Any other use.
    Other,
}

snake_names!(DatasetRole {
    Train => "train",
    Validation => "validation",
    Eval => "eval",
    Test => "test",
    Other => "other",
});

/// A dataset version a model version was built or evaluated with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct DatasetRef {
    /// The dataset's name.
    pub name: String,
    /// Its version label, as the data system names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Content digest of the data, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Where it lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// What it was used for.
    pub role: DatasetRole,
}

impl DatasetRef {
    /// A dataset reference with a name and a role.
    pub fn new(name: impl Into<String>, role: DatasetRole) -> Self {
        DatasetRef {
            name: name.into(),
            version: None,
            digest: None,
            uri: None,
            role,
        }
    }

    /// With a version label.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// With a content digest.
    pub fn digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// With a location.
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = Some(uri.into());
        self
    }
}

/// How a version relates to a parent version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum Relation {
    /// Further trained from the parent's weights.
    FineTunedFrom,
    /// Trained to imitate the parent.
    DistilledFrom,
    /// The parent at lower precision.
    QuantizedFrom,
    /// Same recipe as the parent, trained again (new data, new seed).
    RetrainedFrom,
    /// Any other derivation.
    DerivedFrom,
}

snake_names!(Relation {
    FineTunedFrom => "fine_tuned_from",
    DistilledFrom => "distilled_from",
    QuantizedFrom => "quantized_from",
    RetrainedFrom => "retrained_from",
    DerivedFrom => "derived_from",
});

/// A parent version in another (or the same) model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct ParentRef {
    /// The parent's model.
    pub model: ModelName,
    /// The parent's version number.
    pub version: VersionNumber,
    /// How this version derives from it.
    pub relation: Relation,
}

/// Where a version came from.
///
/// The hyperparameters and the environment are shared ([`Arc`]): versions
/// trained by one pipeline usually repeat them, and a model with 100,000
/// versions then holds each distinct value once, not 100,000 times. Build them
/// as usual and convert with `.into()`; read them through the `Arc` as if it
/// were not there; change one with [`Arc::make_mut`].
///
/// ```
/// use modelreg::{Environment, HyperValue, Provenance};
/// use std::sync::Arc;
/// let mut p = Provenance {
///     hyperparameters: Arc::new([("lr".to_owned(), HyperValue::Float(3e-4))].into()),
///     environment: Environment::default().with_framework("torch", "2.4.1").into(),
///     ..Provenance::default()
/// };
/// assert_eq!(p.environment.frameworks["torch"], "2.4.1");
/// Arc::make_mut(&mut p.environment).cuda = Some("12.4".into());
/// assert_eq!(p.environment.cuda.as_deref(), Some("12.4"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Provenance {
    /// The code it was trained with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeRef>,
    /// The data it was trained and evaluated with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetRef>,
    /// The versions it derives from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentRef>,
    /// Its hyperparameters (shared, see above).
    #[serde(skip_serializing_if = "is_empty_shared")]
    #[cfg_attr(feature = "serve", schema(value_type = BTreeMap<String, HyperValue>))]
    pub hyperparameters: Arc<Hyperparameters>,
    /// Where it was trained (shared, see above).
    pub environment: Arc<Environment>,
}

fn is_empty_shared(h: &Arc<Hyperparameters>) -> bool {
    h.is_empty()
}

impl Provenance {
    /// Makes this provenance share its hyperparameters and environment with
    /// `other`'s where they are equal, so equal values are held once.
    pub(crate) fn share_with(&mut self, other: &Provenance) {
        if !Arc::ptr_eq(&self.hyperparameters, &other.hyperparameters)
            && self.hyperparameters == other.hyperparameters
        {
            self.hyperparameters = Arc::clone(&other.hyperparameters);
        }
        if !Arc::ptr_eq(&self.environment, &other.environment)
            && self.environment == other.environment
        {
            self.environment = Arc::clone(&other.environment);
        }
    }
}

impl Provenance {
    /// The rules and every limit (see [`limits`]): what a new version must pass.
    pub(crate) fn check(&self) -> Result<()> {
        self.check_rules()?;
        limits::check_provenance(self)
    }

    /// The rules that every replayed version passes too (the limits added later
    /// are checked on write only, so older logs still open).
    pub(crate) fn check_rules(&self) -> Result<()> {
        if let Some(code) = &self.code {
            check_text("code commit", &code.commit, limits::MAX_CODE_COMMIT_CHARS)?;
            if code.commit.trim().is_empty() {
                return Err(Error::invalid_input("code commit", "must not be empty"));
            }
        }
        for d in &self.datasets {
            if d.name.trim().is_empty() {
                return Err(Error::invalid_input("dataset name", "must not be empty"));
            }
            check_text("dataset name", &d.name, limits::MAX_DATASET_NAME_CHARS)?;
        }
        for (k, v) in self.hyperparameters.iter() {
            if k.is_empty() {
                return Err(Error::invalid_input(
                    "hyperparameter name",
                    "must not be empty",
                ));
            }
            v.check(k, 1)?;
        }
        Ok(())
    }
}

/// One registered version of a model, as stored in its `version_registered` event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct VersionRecord {
    /// The model it is a version of. Not stored in the log's records (each log
    /// is one model's): the fold fills it in.
    #[serde(
        default = "ModelName::unset",
        skip_serializing_if = "ModelName::is_unset"
    )]
    pub model: ModelName,
    /// Its sequential number.
    pub number: VersionNumber,
    /// Its semver label, unique within the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "serve", schema(value_type = Option<String>))]
    pub semver: Option<semver::Version>,
    /// The digest of its artifact's manifest.
    pub artifact: Digest,
    /// Total size of the artifact's files in bytes.
    pub size: u64,
    /// Number of files in the artifact.
    pub files: u64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Who registered it.
    pub created_by: Actor,
    /// What it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "serve", schema(value_type = BTreeMap<TagKey, String>))]
    pub tags: Tags,
    /// Where it came from.
    #[serde(default)]
    pub provenance: Provenance,
    /// How good it is (metrics added later are merged in).
    #[serde(default, skip_serializing_if = "Metrics::is_empty")]
    pub metrics: Metrics,
    /// Set when the version was deprecated: it stays resolvable by number, semver
    /// and digest, but `@latest` skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<Deprecation>,
    /// Its lifecycle stage (`none` when registered).
    #[serde(default, skip_serializing_if = "is_default")]
    pub stage: Stage,
    /// When it entered its current stage (absent: still in `none` since creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_since: Option<DateTime<Utc>>,
    /// The latest decision of each approver, per target stage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<Stage, BTreeMap<Actor, Approval>>,
    /// Every stage the version has been in, besides `none` (it may have left them).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub reached: BTreeSet<Stage>,
    /// The latest format scan of its files (absent: never scanned), from a
    /// [`formats_scanned`](crate::EventKind::FormatsScanned) event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<FormatScan>,
    /// Set when the version's artifact was purged (see
    /// [`retention`](crate::retention)): the record stays, its files are
    /// no longer kept, and fetching it is [`Error::Purged`](crate::Error::Purged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged: Option<super::retention::Purge>,
    /// The signatures of its files, in the order they were added, from
    /// [`signature_added`](crate::EventKind::SignatureAdded) events. Each was
    /// verified against the version's files and its public key when it was
    /// added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<VersionSignature>,
}

/// A signature of a version's files, as recorded in its log: an OMS v1.0
/// bundle (stored in the artifact store under `bundle`) made with the key
/// `key`, verified when it was added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct VersionSignature {
    /// The signing key's id (the SHA-256 of `public_key`).
    pub key: crate::signing::KeyId,
    /// The signing key's public key, SPKI PEM.
    pub public_key: String,
    /// Which digest of each file the bundle lists.
    pub hash: crate::signing::FileHash,
    /// The bundle's BLAKE3 digest: its blob in the artifact store.
    #[cfg_attr(feature = "serve", schema(value_type = String))]
    pub bundle: crate::digest::Digest,
    /// When it was added.
    pub at: DateTime<Utc>,
    /// Who added it (signed, or attached a bundle made elsewhere).
    pub by: Actor,
    /// Why (`trained`, `evaluated`, `approved for production`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// The verdict of the [format scanner](crate::scan) on every file of a
/// version, as recorded in its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct FormatScan {
    /// The scanner's version ([`SCANNER_VERSION`](crate::scan::SCANNER_VERSION)
    /// of the build that scanned).
    pub scanner: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// Who asked for it.
    pub by: Actor,
    /// The verdict on every file that is not plain data, and on every file
    /// refused, in path order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::scan::FileVerdict>,
    /// How many other files are plain data that passed.
    #[serde(default)]
    pub data_files: u64,
}

impl FormatScan {
    /// The files refused.
    pub fn refused(&self) -> impl Iterator<Item = &crate::scan::FileVerdict> {
        self.files.iter().filter(|f| !f.passed())
    }
}

impl VersionRecord {
    /// The reference to this version by number, `model/number`: what
    /// `format!("{model}/{n}")` would build, without a parse. Records (and
    /// `&VersionRecord`) are also accepted directly wherever a command takes a
    /// reference.
    pub fn reference(&self) -> VersionRef {
        VersionRef {
            model: self.model.clone(),
            selector: Selector::Number(self.number),
        }
    }
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// Why and when a version was deprecated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Deprecation {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: Actor,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_are_the_serialized_names() {
        use crate::domain::lifecycle::Decision;
        fn same<T: Serialize + std::fmt::Display>(v: T) {
            assert_eq!(serde_json::to_value(&v).unwrap(), v.to_string());
        }
        [Goal::Maximize, Goal::Minimize].into_iter().for_each(same);
        [Decision::Approve, Decision::Reject]
            .into_iter()
            .for_each(same);
        use DatasetRole as R;
        [R::Train, R::Validation, R::Eval, R::Test, R::Other]
            .into_iter()
            .for_each(same);
        use Relation as L;
        [
            L::FineTunedFrom,
            L::DistilledFrom,
            L::QuantizedFrom,
            L::RetrainedFrom,
            L::DerivedFrom,
        ]
        .into_iter()
        .for_each(same);
    }

    #[test]
    fn metrics_stay_sorted_unique_and_read_like_a_map() {
        let mut m = Metrics::new()
            .with("loss", 0.3)
            .and_then(|m| m.with("auc", 0.9))
            .and_then(|m| m.with("f1", 0.8))
            .unwrap();
        m.insert(MetricName::new("auc").unwrap(), 0.95).unwrap();
        let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["auc", "f1", "loss"]);
        assert_eq!((m.get("auc"), m.get("zzz"), m.len()), (Some(0.95), None, 3));
        m.merge(
            &Metrics::new()
                .with("aa", 1.0)
                .unwrap()
                .with("loss", 0.2)
                .unwrap(),
        );
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"aa":1.0,"auc":0.95,"f1":0.8,"loss":0.2}"#);
        assert_eq!(serde_json::from_str::<Metrics>(&json).unwrap(), m);
        // Unsorted input is sorted; of a repeated name the last value wins, as
        // with a map; a bad name or a non-number is an error.
        let read: Metrics = serde_json::from_str(r#"{"f1":1,"auc":2,"f1":3}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"auc":2.0,"f1":3.0}"#
        );
        assert!(serde_json::from_str::<Metrics>(r#"{"Bad Name!":1}"#).is_err());
        assert!(serde_json::from_str::<Metrics>(r#"{"auc":"x"}"#).is_err());
        assert!(serde_json::from_str::<Metrics>(r#"{"auc":1e400}"#).is_err());
        let map: BTreeMap<MetricName, f64> = read.clone().into();
        assert_eq!(Metrics::try_from(map).unwrap(), read);
    }

    #[test]
    fn dropping_a_very_deep_value_does_not_overflow_the_stack() {
        let mut v = HyperValue::Int(0);
        for i in 0..1_000_000 {
            v = if i % 2 == 0 {
                HyperValue::List(vec![v])
            } else {
                HyperValue::Map([("k".to_owned(), v)].into())
            };
        }
        assert!(v.check("deep", 1).is_err());
        drop(v);
    }

    #[test]
    fn every_json_value_but_null_reads_into_its_variant() {
        let h: Hyperparameters = serde_json::from_str(
            r#"{"b":true,"i":-3,"u":18446744073709551615,"f":0.5,"s":"adam","l":[1,"x"],"m":{"k":[]}}"#,
        )
        .unwrap();
        assert_eq!(h["b"], HyperValue::Bool(true));
        assert_eq!(h["i"], HyperValue::Int(-3));
        assert_eq!(h["u"], HyperValue::Float(18446744073709551615.0));
        assert_eq!(h["f"], HyperValue::Float(0.5));
        assert_eq!(h["s"], HyperValue::String("adam".into()));
        assert_eq!(
            h["l"],
            HyperValue::List(vec![HyperValue::Int(1), HyperValue::String("x".into())])
        );
        assert_eq!(
            h["m"],
            HyperValue::Map([("k".to_owned(), HyperValue::List(vec![]))].into())
        );
        assert!(serde_json::from_str::<Hyperparameters>(r#"{"n":null}"#).is_err());
    }

    #[test]
    fn ints_and_floats_stay_apart_through_json() {
        let h: Hyperparameters = [
            ("epochs".to_owned(), HyperValue::Int(3)),
            ("lr".to_owned(), HyperValue::Float(3.0)),
        ]
        .into();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"epochs":3,"lr":3.0}"#);
        assert_eq!(serde_json::from_str::<Hyperparameters>(&json).unwrap(), h);
    }
}

#[cfg(test)]
mod hyper_from_counts {
    use super::HyperValue;

    #[test]
    fn counts_are_integers_until_they_do_not_fit() {
        assert_eq!(HyperValue::from(12usize), HyperValue::Int(12));
        assert_eq!(
            HyperValue::from(u64::MAX),
            HyperValue::Float(u64::MAX as f64)
        );
    }
}
