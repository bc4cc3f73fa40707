//! Size limits on what users write into a model's log.
//!
//! Every change to a model is an event that is stored, read back by every
//! process that opens the model, held in memory as part of its state, and
//! rewritten into every checkpoint. A record of a version is normally about a
//! kilobyte; without limits a 100 MB hyperparameter string becomes a 100 MB
//! event that every reader pays for, forever. So every text field and every
//! map or list a user supplies has a limit, and so has the encoded event as a
//! whole ([`MAX_EVENT_BYTES`]), which bounds the sum of fields that are each
//! within their own limit.
//!
//! The limits are generous for real use — a long prompt template, a config of
//! thousands of hyperparameters, a page of release notes — and far below what
//! would hurt. Text is measured in characters (Unicode scalar values), counts
//! in entries, events in bytes. A value over a limit is refused with
//! [`Error::TooLarge`] naming the field, its size and the limit, and nothing
//! is written.
//!
//! The limits apply to what is written: [`ModelState::check`] (which every
//! command runs before appending) and the encoding of an event check them.
//! Replaying a log does not re-check the limits added in 0.2 (only those that
//! older versions enforced already), so a log written before a limit existed
//! still opens.
//!
//! [`ModelState::check`]: super::ModelState::check

use std::io::Write;

use super::event::{Event, EventKind};
use super::name::ModelName;
use super::record::{Environment, HyperValue, Metrics, Provenance, Tags};
use crate::error::{Error, Result};

/// Characters in a model's or a version's description (64 Ki): a page of
/// release notes with room to spare.
pub const MAX_DESCRIPTION_CHARS: usize = 65_536;
/// Characters in the reason of a transition, rollback, deprecation, alias
/// change or traffic split, and in an approval's comment (64 Ki).
pub const MAX_REASON_CHARS: usize = 65_536;
/// Characters in a tag value: a label, a URL, a short note.
pub const MAX_TAG_VALUE_CHARS: usize = 4_096;
/// Tags set on a model or a version by one event, and tags removed by one.
pub const MAX_TAGS: usize = 1_024;
/// Characters in a code reference's commit id (a hash, a tag, a branch name).
pub const MAX_CODE_COMMIT_CHARS: usize = 256;
/// Characters in a code reference's repository (a URL or a name).
pub const MAX_CODE_REPOSITORY_CHARS: usize = 2_048;
/// Characters in a dataset's name.
pub const MAX_DATASET_NAME_CHARS: usize = 512;
/// Characters in a dataset's version label.
pub const MAX_DATASET_VERSION_CHARS: usize = 256;
/// Characters in a dataset's URI (the longest URLs in common use are ~2,000).
pub const MAX_DATASET_URI_CHARS: usize = 2_048;
/// Datasets in one version's provenance.
pub const MAX_DATASETS: usize = 1_024;
/// Parents in one version's provenance.
pub const MAX_PARENTS: usize = 1_024;
/// Characters in a hyperparameter's name, at any level of nesting.
pub const MAX_HYPERPARAMETER_NAME_CHARS: usize = 256;
/// Characters in a hyperparameter's string value, at any level of nesting (64
/// Ki: a prompt template or an inline config file fits).
pub const MAX_HYPERPARAMETER_STRING_CHARS: usize = 65_536;
/// Entries in the hyperparameters, and in each nested list or map of them.
pub const MAX_HYPERPARAMETER_ENTRIES: usize = 10_000;
/// Characters in each name and value of a version's environment (framework
/// and runtime names and versions, CUDA, driver, OS, architecture, CPU, GPUs,
/// extra entries).
pub const MAX_ENVIRONMENT_VALUE_CHARS: usize = 1_024;
/// Entries in each map or list of a version's environment (frameworks,
/// runtimes, GPUs, extra).
pub const MAX_ENVIRONMENT_ENTRIES: usize = 1_024;
/// Metrics recorded by one event (a registration or `add_metrics`).
pub const MAX_METRICS: usize = 10_000;
/// Metric specs set by one event.
pub const MAX_METRIC_SPECS: usize = 1_024;
/// Bytes of one encoded event, as stored (1 MiB). A version's record is
/// usually about a kilobyte; an event a thousand times that still opens fast,
/// while 100,000 of them in one model's state and checkpoints would not.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// [`Error::TooLarge`].
fn too_large(what: String, unit: &'static str, limit: usize, actual: usize) -> Error {
    Error::TooLarge {
        what,
        unit,
        limit: limit as u64,
        actual: actual as u64,
    }
}

/// At most `max` characters (counted only when the bytes could exceed it).
pub(crate) fn text(what: impl FnOnce() -> String, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        let n = s.chars().count();
        if n > max {
            return Err(too_large(what(), "characters", max, n));
        }
    }
    Ok(())
}

/// At most `max` entries.
pub(crate) fn entries(what: impl FnOnce() -> String, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(too_large(what(), "entries", max, n));
    }
    Ok(())
}

/// The limits on an event's fields that [`ModelState::check`](super::ModelState::check)'s
/// rules do not check already (those rules hold for every replayed event too).
/// Cheap: nothing is serialized.
pub(crate) fn check_kind(kind: &EventKind) -> Result<()> {
    match kind {
        EventKind::ModelCreated {
            metric_specs, tags, ..
        } => {
            tag_count("tags", tags)?;
            entries(
                || "metric specs".into(),
                metric_specs.len(),
                MAX_METRIC_SPECS,
            )
        }
        EventKind::VersionRegistered { version } => {
            tag_count("tags", &version.tags)?;
            metric_count(&version.metrics)?;
            check_provenance(&version.provenance)
        }
        EventKind::MetricsAdded { metrics, .. } => metric_count(metrics),
        EventKind::TagsSet { set, removed, .. } => {
            tag_count("tags", set)?;
            entries(|| "removed tags".into(), removed.len(), MAX_TAGS)
        }
        EventKind::MetricSpecsSet { specs } => {
            entries(|| "metric specs".into(), specs.len(), MAX_METRIC_SPECS)
        }
        _ => Ok(()),
    }
}

fn tag_count(what: &str, tags: &Tags) -> Result<()> {
    entries(|| what.into(), tags.len(), MAX_TAGS)
}

fn metric_count(metrics: &Metrics) -> Result<()> {
    entries(|| "metrics".into(), metrics.len(), MAX_METRICS)
}

/// The limits on a provenance that its rules (`Provenance::check_rules`) do
/// not check already.
pub(crate) fn check_provenance(p: &Provenance) -> Result<()> {
    if let Some(code) = &p.code
        && let Some(repo) = &code.repository
    {
        text(|| "code repository".into(), repo, MAX_CODE_REPOSITORY_CHARS)?;
    }
    entries(|| "datasets".into(), p.datasets.len(), MAX_DATASETS)?;
    for d in &p.datasets {
        if let Some(v) = &d.version {
            text(
                || format!("version of dataset '{}'", d.name),
                v,
                MAX_DATASET_VERSION_CHARS,
            )?;
        }
        if let Some(uri) = &d.uri {
            text(
                || format!("uri of dataset '{}'", d.name),
                uri,
                MAX_DATASET_URI_CHARS,
            )?;
        }
    }
    entries(|| "parents".into(), p.parents.len(), MAX_PARENTS)?;
    entries(
        || "hyperparameters".into(),
        p.hyperparameters.len(),
        MAX_HYPERPARAMETER_ENTRIES,
    )?;
    for (k, v) in p.hyperparameters.iter() {
        hyper_name(k)?;
        hyper_value(k, v, 1)?;
    }
    check_environment(&p.environment)
}

fn hyper_name(name: &str) -> Result<()> {
    text(
        || format!("name of hyperparameter '{}'", crate::error::truncate(name)),
        name,
        MAX_HYPERPARAMETER_NAME_CHARS,
    )
}

fn hyper_value(path: &str, v: &HyperValue, depth: usize) -> Result<()> {
    // Depth is a rule (checked first); stop here too, so this walk is bounded
    // whatever called it.
    if depth > HyperValue::MAX_DEPTH {
        return Err(Error::invalid_input(
            format!("hyperparameter '{path}'"),
            format!("nested deeper than {} levels", HyperValue::MAX_DEPTH),
        ));
    }
    match v {
        HyperValue::String(s) => text(
            || format!("hyperparameter '{path}'"),
            s,
            MAX_HYPERPARAMETER_STRING_CHARS,
        ),
        HyperValue::List(items) => {
            entries(
                || format!("hyperparameter '{path}'"),
                items.len(),
                MAX_HYPERPARAMETER_ENTRIES,
            )?;
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| hyper_value(&format!("{path}[{i}]"), v, depth + 1))
        }
        HyperValue::Map(map) => {
            entries(
                || format!("hyperparameter '{path}'"),
                map.len(),
                MAX_HYPERPARAMETER_ENTRIES,
            )?;
            map.iter().try_for_each(|(k, v)| {
                hyper_name(k)?;
                hyper_value(&format!("{path}.{k}"), v, depth + 1)
            })
        }
        _ => Ok(()),
    }
}

fn check_environment(env: &Environment) -> Result<()> {
    let value = |what: &str, s: &str| {
        text(
            || format!("environment {what}"),
            s,
            MAX_ENVIRONMENT_VALUE_CHARS,
        )
    };
    for (what, map) in [
        ("frameworks", &env.frameworks),
        ("runtimes", &env.runtimes),
        ("extra", &env.extra),
    ] {
        entries(
            || format!("environment {what}"),
            map.len(),
            MAX_ENVIRONMENT_ENTRIES,
        )?;
        for (k, v) in map {
            value(&format!("{what} name"), k)?;
            value(&format!("{what} '{}'", crate::error::truncate(k)), v)?;
        }
    }
    for (what, v) in [
        ("cuda", &env.cuda),
        ("driver", &env.driver),
        ("os", &env.os),
        ("arch", &env.arch),
        ("cpu", &env.cpu),
    ] {
        if let Some(v) = v {
            value(what, v)?;
        }
    }
    entries(
        || "environment gpus".into(),
        env.gpus.len(),
        MAX_ENVIRONMENT_ENTRIES,
    )?;
    env.gpus.iter().try_for_each(|g| value("gpu", g))
}

/// Refuses an event kind whose JSON alone exceeds [`MAX_EVENT_BYTES`], before
/// anything is uploaded for it (the envelope adds a few hundred bytes, checked
/// when the event is encoded). Counts the bytes without keeping them.
pub(crate) fn check_kind_size(model: &ModelName, kind: &EventKind) -> Result<()> {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, kind).map_err(|e| {
        Error::invalid_input(
            format!("event {} of model '{model}'", kind.name()),
            format!("cannot be encoded: {e}"),
        )
    })?;
    event_bytes(model, kind, count.0)
}

fn event_bytes(model: &ModelName, kind: &EventKind, len: usize) -> Result<()> {
    if len > MAX_EVENT_BYTES {
        return Err(too_large(
            format!("event {} of model '{model}'", kind.name()),
            "bytes",
            MAX_EVENT_BYTES,
            len,
        ));
    }
    Ok(())
}

/// `event` encoded as stored, after checking it against every limit: what
/// the registry appends.
pub(crate) fn encode(event: &Event) -> Result<Vec<u8>> {
    check_kind(&event.kind)?;
    let bytes = event.to_bytes();
    event_bytes(&event.model, &event.kind, bytes.len())?;
    Ok(bytes)
}
