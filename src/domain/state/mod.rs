//! `ModelState`: the fold of a model's events, and the rules events must obey.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::event::{Event, EventKind};
use super::lifecycle::{AliasTarget, Approval, GatePolicy, Stage};
use super::limits::{MAX_DESCRIPTION_CHARS, MAX_REASON_CHARS};
use super::name::{Actor, AliasName, MetricName, ModelName, check_text};
use super::record::{
    Deprecation, FormatScan, MetricSpec, Tags, VersionRecord, VersionSignature, check_tags,
};
use super::reference::{Selector, VersionNumber, VersionRef};
use super::retention::Purge;
use super::routing::{TrafficSplit, check_split_set};
use crate::digest::Digest;
use crate::error::{Error, Result};

mod checkpoint;
mod segments;
mod versions;

use versions::Versions;

use checkpoint::StateWire;
pub use checkpoint::{
    CHECKPOINT_FORMAT, CheckpointHead, decode_checkpoint, decode_checkpoint_head, encode_checkpoint,
};
pub(crate) use segments::HeldSegments;
pub use segments::{
    Patch, SEGMENT_VERSIONS, SEGMENTED_FORMAT, Segment, SegmentedHead, encode_patch,
    encode_patched_head, encode_segment, encode_segmented_head, segment_ranges,
};

/// Everything known about one model: the fold of its events up to some position.
///
/// The same events always fold to the same state, whether replayed from the start
/// or from a checkpoint. [`ModelState::check`] is the one place that says whether an
/// event may follow the current state; [`ModelState::apply`] checks and applies, so a
/// log that was tampered with fails to replay rather than producing a wrong state.
///
/// Serialized as
/// `{"name":…,"description":…,"created_at":…,"created_by":…,"metric_specs":{…},"tags":{…},"versions":[…],"seq":N,"updated_at":…}`;
/// the lookup indexes are rebuilt on load.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "StateWire")]
pub struct ModelState {
    name: ModelName,
    description: String,
    created_at: DateTime<Utc>,
    created_by: Actor,
    metric_specs: BTreeMap<MetricName, MetricSpec>,
    tags: Tags,
    /// Version `n` is at index `n - 1`: numbers are dense from 1. Shared, so a
    /// clone of the state or a listing copies pointers, not records; a change
    /// to a version copies that one record if anyone still holds it. Read
    /// from a format 6 checkpoint, they stay in their segments until asked
    /// for (`versions.rs`).
    versions: Versions,
    seq: u64,
    updated_at: DateTime<Utc>,
    aliases: BTreeMap<AliasName, AliasTarget>,
    /// Every version that entered production, in order; the last one is in
    /// production unless it was archived directly. Rollback pops it.
    production_history: Vec<VersionNumber>,
    gates: GatePolicy,
    traffic_split: Option<TrafficSplit>,
    // Derived indexes, rebuilt from `versions`.
    by_semver: BTreeMap<semver::Version, VersionNumber>,
    /// The newest version of each artifact digest.
    by_digest: HashMap<Digest, VersionNumber>,
    production: Option<VersionNumber>,
}

impl ModelState {
    /// Starts a model's state from its first event, which must be `model_created`
    /// at position 1.
    pub fn genesis(event: &Event) -> Result<Self> {
        let EventKind::ModelCreated {
            description,
            metric_specs,
            tags,
        } = &event.kind
        else {
            return Err(Error::corrupt(
                format!("event {} of model '{}'", event.seq, event.model),
                format!(
                    "a log must start with model_created, found {}",
                    event.kind.name()
                ),
            ));
        };
        if event.seq != 1 {
            return Err(Error::corrupt(
                format!("event {} of model '{}'", event.seq, event.model),
                "model_created must be event 1",
            ));
        }
        check_model_fields(description, metric_specs, tags)?;
        Ok(ModelState {
            name: event.model.clone(),
            description: description.clone(),
            created_at: event.time,
            created_by: event.actor.clone(),
            metric_specs: metric_specs.clone(),
            tags: tags.clone(),
            versions: Versions::default(),
            seq: 1,
            updated_at: event.time,
            aliases: BTreeMap::new(),
            production_history: Vec::new(),
            gates: GatePolicy::new(),
            traffic_split: None,
            by_semver: BTreeMap::new(),
            by_digest: HashMap::new(),
            production: None,
        })
    }

    /// Folds a whole log, from event 1.
    pub fn replay(events: impl IntoIterator<Item = Event>) -> Result<Self> {
        let mut events = events.into_iter();
        let first = events
            .next()
            .ok_or_else(|| Error::corrupt("model log", "is empty"))?;
        let mut state = ModelState::genesis(&first)?;
        for e in events {
            state.apply(e)?;
        }
        Ok(state)
    }

    /// Checks whether an event of this kind may be appended next: the rules
    /// that every event of the log obeys, and the [`limits`](super::limits) on
    /// what is written. Nothing changes.
    pub fn check(&self, kind: &EventKind) -> Result<()> {
        self.check_rules(kind)?;
        super::limits::check_kind(kind)?;
        super::limits::check_kind_size(&self.name, kind)
    }

    /// The rules of [`check`](Self::check), which replaying re-checks for
    /// every event. The size limits added in 0.2 are not among them: a log
    /// written before them still opens.
    fn check_rules(&self, kind: &EventKind) -> Result<()> {
        match kind {
            EventKind::ModelCreated { .. } => {
                Err(Error::already_exists(format!("model '{}'", self.name)))
            }
            EventKind::VersionRegistered { version } => {
                if !version.model.is_unset() && version.model != self.name {
                    return Err(Error::invalid_input(
                        format!("version {} of model '{}'", version.number, self.name),
                        format!("the record names model '{}'", version.model),
                    ));
                }
                let expected = self.next_version_number();
                if version.number != expected {
                    return Err(Error::invalid_input(
                        format!("version {} of model '{}'", version.number, self.name),
                        format!("the next version number is {expected}"),
                    ));
                }
                if let Some(v) = &version.semver
                    && let Some(n) = self.by_semver.get(v)
                {
                    return Err(Error::already_exists(format!(
                        "semver {v} of model '{}' (version {n})",
                        self.name
                    )));
                }
                if version.deprecated.is_some()
                    || version.stage != Stage::None
                    || version.stage_since.is_some()
                    || !version.approvals.is_empty()
                    || !version.reached.is_empty()
                    || version.scan.is_some()
                    || version.purged.is_some()
                    || !version.signatures.is_empty()
                {
                    return Err(Error::invalid_input(
                        format!("version {} of model '{}'", version.number, self.name),
                        "a new version starts unstaged, unapproved, unscanned, unsigned, not deprecated and not purged",
                    ));
                }
                check_text("description", &version.description, MAX_DESCRIPTION_CHARS)?;
                check_tags(&version.tags)?;
                version.provenance.check_rules()
            }
            EventKind::MetricsAdded {
                version,
                metrics,
                overridden,
            } => {
                self.require(*version)?;
                check_override(overridden.as_deref())?;
                if metrics.is_empty() {
                    return Err(Error::invalid_input("metrics", "no metrics given"));
                }
                Ok(())
            }
            EventKind::TagsSet {
                version,
                set,
                removed,
                overridden,
            } => {
                check_override(overridden.as_deref())?;
                if let Some(v) = version {
                    self.require(*v)?;
                }
                if set.is_empty() && removed.is_empty() {
                    return Err(Error::invalid_input("tags", "nothing to set or remove"));
                }
                check_tags(set)
            }
            EventKind::MetricSpecsSet { specs } => {
                check_model_fields("", specs, &Tags::new())?;
                if specs.is_empty() {
                    return Err(Error::invalid_input("metric specs", "no specs given"));
                }
                Ok(())
            }
            EventKind::VersionDeprecated { version, reason } => {
                let v = self.require(*version)?;
                if v.deprecated.is_some() {
                    return Err(Error::invalid_input(
                        format!("version {} of model '{}'", version, self.name),
                        "is already deprecated",
                    ));
                }
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            EventKind::StageChanged {
                version,
                from,
                to,
                reason,
                gates,
                archived,
            } => {
                let v = self.require(*version)?;
                if v.stage != *from {
                    return Err(Error::invalid_input(
                        format!("stage change of {}/{version}", self.name),
                        format!("the version is in {}, not {from}", v.stage),
                    ));
                }
                if !from.can_move_to(*to) {
                    return Err(Error::InvalidTransition {
                        model: self.name.to_string(),
                        version: version.get(),
                        from: *from,
                        to: *to,
                        allowed: from.allowed_targets().to_vec(),
                    });
                }
                if matches!(to, Stage::Staging | Stage::Validation | Stage::Production) {
                    not_purged(v)?;
                }
                check_verdicts(gates)?;
                let expected = match to {
                    Stage::Production => self.production.filter(|p| p != version),
                    _ => None,
                };
                if *archived != expected {
                    return Err(Error::invalid_input(
                        format!("stage change of {}/{version}", self.name),
                        "a promotion archives exactly the current production version",
                    ));
                }
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            EventKind::RolledBack {
                restored,
                displaced,
                reason,
            } => {
                let (current, previous) = self.rollback_pair().ok_or_else(|| {
                    Error::invalid_input(
                        format!("rollback of model '{}'", self.name),
                        match self.production {
                            None => "no version is in production",
                            Some(_) => "no earlier version held production",
                        },
                    )
                })?;
                if (*displaced, *restored) != (current, previous) {
                    return Err(Error::invalid_input(
                        format!("rollback of model '{}'", self.name),
                        format!("production would go back from {current} to {previous}"),
                    ));
                }
                not_purged(self.require(*restored)?)?;
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            EventKind::ApprovalRecorded {
                version,
                stage,
                comment,
                ..
            } => {
                self.require(*version)?;
                if *stage == Stage::None {
                    return Err(Error::invalid_input(
                        "approval",
                        "approvals are for a target stage, not 'none'",
                    ));
                }
                check_text("comment", comment, MAX_REASON_CHARS)
            }
            EventKind::AliasSet {
                version,
                reason,
                gates,
                ..
            } => {
                not_purged(self.require(*version)?)?;
                check_verdicts(gates)?;
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            EventKind::AliasRemoved {
                alias,
                version,
                reason,
                gates,
            } => {
                let Some(target) = self.aliases.get(alias) else {
                    return Err(Error::missing(
                        crate::error::Missing::Alias {
                            model: self.name.to_string(),
                            alias: alias.to_string(),
                        },
                        format!("alias '{alias}' of model '{}'", self.name),
                    ));
                };
                if version.is_some_and(|v| v != target.version) {
                    return Err(Error::invalid_input(
                        format!("removal of alias '{alias}'"),
                        format!(
                            "the alias points at {}, not the version named",
                            target.version
                        ),
                    ));
                }
                check_verdicts(gates)?;
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            EventKind::GatesSet { stage, gates } => {
                if *stage == Stage::None {
                    return Err(Error::invalid_input(
                        "gates",
                        "gates guard moves into a stage; 'none' is never a target",
                    ));
                }
                gates.iter().try_for_each(|g| g.check_spec())
            }
            EventKind::TrafficSplitSet { split, reason } => {
                check_split_set(self, split.as_ref(), reason)
            }
            EventKind::FormatsScanned {
                version,
                files,
                data_files,
                ..
            } => {
                let v = self.require(*version)?;
                let what = || format!("format scan of {}/{version}", self.name);
                if (files.len() as u64).checked_add(*data_files) != Some(v.files) {
                    return Err(Error::invalid_input(
                        what(),
                        format!(
                            "{} verdicts and {data_files} data files for a version of {} files",
                            files.len(),
                            v.files
                        ),
                    ));
                }
                if files.windows(2).any(|w| w[0].path >= w[1].path) {
                    return Err(Error::invalid_input(
                        what(),
                        "the verdicts are not in path order, one per file",
                    ));
                }
                Ok(())
            }
            EventKind::VersionPurged { version, reason } => {
                let v = self.require(*version)?;
                if v.purged.is_some() {
                    return Err(Error::invalid_input(
                        format!("purge of {}/{version}", self.name),
                        "the version is purged already",
                    ));
                }
                let protections = self.protections(*version);
                if !protections.is_empty() {
                    return Err(Error::Protected {
                        model: self.name.to_string(),
                        version: version.get(),
                        protections,
                    });
                }
                if reason.trim().is_empty() {
                    return Err(Error::invalid_input(
                        format!("purge of {}/{version}", self.name),
                        "a reason is required",
                    ));
                }
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            EventKind::SignatureAdded {
                version,
                key,
                public_key,
                bundle,
                reason,
                ..
            } => {
                let v = self.require(*version)?;
                let what = || format!("signature of {}/{version}", self.name);
                let public = crate::signing::PublicKey::from_pem(public_key)?;
                if public.id() != key {
                    return Err(Error::invalid_input(
                        what(),
                        format!("key id {key} is not the SHA-256 of the public key given"),
                    ));
                }
                if v.signatures.iter().any(|s| s.bundle == *bundle) {
                    return Err(Error::already_exists(format!(
                        "signature {bundle} of {}/{version}",
                        self.name
                    )));
                }
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            EventKind::VersionDescriptionSet {
                version,
                description,
                overridden,
            } => {
                self.require(*version)?;
                check_override(overridden.as_deref())?;
                check_text("description", description, MAX_DESCRIPTION_CHARS)
            }
        }
    }

    /// The (current, previous) production versions a rollback would swap.
    fn rollback_pair(&self) -> Option<(VersionNumber, VersionNumber)> {
        let current = self.production?;
        match self.production_history.as_slice() {
            [.., previous, last] if *last == current => Some((current, *previous)),
            _ => None,
        }
    }

    /// Checks `event` against the state and applies it.
    ///
    /// The event must be the next one (`seq` one past [`seq`](Self::seq)), for this
    /// model, no earlier than the previous event, and pass [`check`](Self::check)'s
    /// rules (not the size limits on writing, which an older log may exceed).
    pub fn apply(&mut self, event: Event) -> Result<()> {
        let record = || format!("event {} of model '{}'", event.seq, event.model);
        if event.model != self.name {
            return Err(Error::corrupt(record(), "belongs to another model"));
        }
        if event.seq != self.seq + 1 {
            return Err(Error::corrupt(
                record(),
                format!("expected event {}", self.seq + 1),
            ));
        }
        if event.time < self.updated_at {
            return Err(Error::corrupt(
                record(),
                format!(
                    "its time {} is earlier than the previous event's {}",
                    event.time, self.updated_at
                ),
            ));
        }
        self.check_rules(&event.kind)?;
        match event.kind {
            // `check` rejects model_created on an existing model.
            EventKind::ModelCreated { .. } => {}
            EventKind::VersionRegistered { version } => {
                let mut version = *version;
                version.model = self.name.clone();
                if let Some(previous) = self.versions.last() {
                    version.provenance.share_with(&previous.provenance);
                }
                self.index(&version);
                self.versions.push(Arc::new(version));
            }
            EventKind::MetricsAdded {
                version, metrics, ..
            } => {
                self.version_mut(version).metrics.merge(&metrics);
            }
            EventKind::TagsSet {
                version,
                set,
                removed,
                ..
            } => {
                let tags = match version {
                    Some(v) => &mut self.version_mut(v).tags,
                    None => &mut self.tags,
                };
                for k in &removed {
                    tags.remove(k);
                }
                tags.extend(set);
            }
            EventKind::MetricSpecsSet { specs } => self.metric_specs.extend(specs),
            EventKind::VersionDeprecated { version, reason } => {
                self.version_mut(version).deprecated = Some(Deprecation {
                    at: event.time,
                    by: event.actor,
                    reason,
                });
            }
            EventKind::StageChanged {
                version,
                to,
                archived,
                ..
            } => {
                if let Some(old) = archived {
                    self.set_stage(old, Stage::Archived, event.time);
                }
                self.set_stage(version, to, event.time);
                // A version archived out of production and promoted again is still
                // the same holder: rollback must go to an earlier, different one.
                if to == Stage::Production && self.production_history.last() != Some(&version) {
                    self.production_history.push(version);
                }
            }
            EventKind::RolledBack {
                restored,
                displaced,
                ..
            } => {
                self.production_history.pop();
                self.set_stage(displaced, Stage::Archived, event.time);
                self.set_stage(restored, Stage::Production, event.time);
            }
            EventKind::ApprovalRecorded {
                version,
                stage,
                decision,
                comment,
            } => {
                self.version_mut(version)
                    .approvals
                    .entry(stage)
                    .or_default()
                    .insert(
                        event.actor,
                        Approval {
                            decision,
                            at: event.time,
                            comment,
                        },
                    );
            }
            EventKind::AliasSet {
                alias,
                version,
                protected,
                ..
            } => {
                self.aliases.insert(
                    alias,
                    AliasTarget {
                        version,
                        protected,
                        set_at: event.time,
                        set_by: event.actor,
                    },
                );
            }
            EventKind::AliasRemoved { alias, .. } => {
                self.aliases.remove(&alias);
            }
            EventKind::GatesSet { stage, gates } => {
                if gates.is_empty() {
                    self.gates.remove(&stage);
                } else {
                    self.gates.insert(stage, gates);
                }
            }
            EventKind::TrafficSplitSet { split, .. } => self.traffic_split = split,
            EventKind::FormatsScanned {
                version,
                scanner,
                files,
                data_files,
            } => {
                self.version_mut(version).scan = Some(FormatScan {
                    scanner,
                    at: event.time,
                    by: event.actor,
                    files,
                    data_files,
                });
            }
            EventKind::VersionPurged { version, reason } => {
                self.version_mut(version).purged = Some(Purge {
                    at: event.time,
                    by: event.actor,
                    reason,
                });
            }
            EventKind::SignatureAdded {
                version,
                key,
                public_key,
                hash,
                bundle,
                reason,
            } => {
                self.version_mut(version).signatures.push(VersionSignature {
                    key,
                    public_key,
                    hash,
                    bundle,
                    at: event.time,
                    by: event.actor,
                    reason,
                });
            }
            EventKind::VersionDescriptionSet {
                version,
                description,
                ..
            } => self.version_mut(version).description = description,
        }
        self.seq = event.seq;
        self.updated_at = event.time;
        Ok(())
    }

    fn index(&mut self, v: &VersionRecord) {
        if let Some(s) = &v.semver {
            self.by_semver.insert(s.clone(), v.number);
        }
        // Versions are indexed in order, so the last one indexed is the newest.
        self.by_digest.insert(v.artifact, v.number);
    }

    fn require(&self, n: VersionNumber) -> Result<&VersionRecord> {
        self.version(n)
            .ok_or_else(|| Error::version_not_found(&self.name, format!("{}/{n}", self.name)))
    }

    /// Moves a version to `stage`, keeping the production pointer in step.
    fn set_stage(&mut self, n: VersionNumber, stage: Stage, at: DateTime<Utc>) {
        if self.production == Some(n) {
            self.production = None;
        }
        if stage == Stage::Production {
            self.production = Some(n);
        }
        let v = self.version_mut(n);
        v.stage = stage;
        v.stage_since = Some(at);
        v.reached.insert(stage);
    }

    fn version_mut(&mut self, n: VersionNumber) -> &mut VersionRecord {
        // Invariant: only called after `check` proved the version exists,
        // which decoded its segment (a segment decodes once, for good or not).
        let i = (n.get() - 1) as usize;
        self.versions
            .get_mut(i)
            .expect("a checked version is in the state")
    }

    /// The model's name.
    pub fn name(&self) -> &ModelName {
        &self.name
    }

    /// What the model is for.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// When the model was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// Who created the model.
    pub fn created_by(&self) -> &Actor {
        &self.created_by
    }

    /// How the model's metrics are judged.
    pub fn metric_specs(&self) -> &BTreeMap<MetricName, MetricSpec> {
        &self.metric_specs
    }

    /// The model's own tags.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The position of the last event folded in.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The time of the last event folded in.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }

    /// All versions, oldest first. Each is shared: cloning an `Arc` out of the
    /// slice is how a caller keeps a version without copying it.
    ///
    /// A state read from a format 6 checkpoint decodes all its records the
    /// first time this is called (about 3 µs a record); [`version`](Self::version),
    /// [`resolve`](Self::resolve) and [`latest`](Self::latest) decode only the
    /// segment (1,024 versions) they need.
    pub fn versions(&self) -> &[Arc<VersionRecord>] {
        self.versions.as_slice()
    }

    /// How many versions the model has (registered, whatever became of them).
    pub fn version_count(&self) -> usize {
        self.versions.len()
    }

    /// Makes each version record that equals `other`'s record of the same
    /// number point at `other`'s, so the two states share it; returns how many
    /// it shares. The state is unchanged (equal before and after): this only
    /// saves memory, for a state decoded or folded apart from a live one that
    /// holds mostly the same records (an older state of the same model).
    pub(crate) fn share_records_with(&mut self, other: &ModelState) -> usize {
        self.versions.share_records_with(&other.versions)
    }

    /// The stored segment that the versions at indexes `range` are exactly, if
    /// this state was read from a format 6 checkpoint and none of them changed
    /// since: a checkpoint names it again without decoding or encoding them.
    #[cfg(test)]
    pub(crate) fn pristine_segment(&self, range: std::ops::Range<usize>) -> Option<&Segment> {
        self.versions.pristine(range)
    }

    /// The stored segment the versions at indexes `range` were read from
    /// (format 6 or 7), and the indexes of those that may differ from it
    /// now (a superset: records in a patch read with it, or changed since),
    /// found without decoding the segment.
    pub(crate) fn stored_segment(
        &self,
        range: std::ops::Range<usize>,
    ) -> Option<(&Segment, Vec<usize>)> {
        self.versions.stored(range)
    }

    /// The level 2 patch this state was read with (format 7), and the
    /// version indexes it holds.
    pub(crate) fn stored_patch(&self) -> Option<(&Patch, Vec<usize>)> {
        self.versions.stored_patch()
    }

    /// Whether the version at index `i` is certainly still the copy of it
    /// that [`stored_patch`](Self::stored_patch) holds.
    pub(crate) fn is_stored_patch_copy(&self, i: usize) -> bool {
        self.versions.is_stored_patch_copy(i)
    }

    /// The records at indexes `range` (decoding their segments if need be);
    /// `None` if one cannot be decoded.
    pub(crate) fn records(&self, range: std::ops::Range<usize>) -> Option<Vec<Arc<VersionRecord>>> {
        range.map(|i| self.versions.get(i).cloned()).collect()
    }

    /// Whether some records are still undecoded in the segments the state
    /// was read from.
    pub fn is_partly_decoded(&self) -> bool {
        self.versions.is_lazy()
    }

    /// The segments this state was read from (format 6; still lazy, or kept
    /// once its records settled into memory), each checked against its digest
    /// when it was read: assembling a past checkpoint of the same model takes
    /// the ones it names from here instead of reading them again.
    pub(crate) fn held_segments(&self) -> HeldSegments {
        HeldSegments(self.versions.held_segments())
    }

    /// Makes the segments this state was read from (format 6) that `other`
    /// was read from too (same digest) the ones `other` holds, so their
    /// records are decoded once for both; returns how many. Cheap: nothing is
    /// decoded or compared. (Time travel takes them while reading instead:
    /// [`held_segments`](Self::held_segments).)
    #[cfg(test)]
    pub(crate) fn share_segments_with(&mut self, other: &ModelState) -> usize {
        self.versions.share_segments_with(&other.versions)
    }

    /// Decodes every record a state read from a format 6 checkpoint still
    /// holds in its segments; the first reason one cannot be (its segment's
    /// bytes matched their digest, so a writer's bug or a forgery), as
    /// [`Error::Corrupt`].
    pub fn decode_all(&self) -> Result<()> {
        self.versions
            .decode_all()
            .map_err(|reason| Error::corrupt(format!("state of model '{}'", self.name), reason))
    }

    /// A version by number.
    pub fn version(&self, n: VersionNumber) -> Option<&VersionRecord> {
        self.versions.get((n.get() - 1) as usize).map(|v| &**v)
    }

    /// A version by number, as the state shares it (cloning the `Arc` keeps
    /// it without copying the record).
    pub(crate) fn shared_version(&self, n: VersionNumber) -> Option<&Arc<VersionRecord>> {
        self.versions.get((n.get() - 1) as usize)
    }

    /// The number the next registered version gets.
    pub fn next_version_number(&self) -> VersionNumber {
        // Dense from 1, so the next number is len + 1 (never 0).
        VersionNumber::new(self.versions.len() as u64 + 1).unwrap_or(VersionNumber::FIRST)
    }

    /// The version in production, if any.
    pub fn production(&self) -> Option<&VersionRecord> {
        self.production.and_then(|n| self.version(n))
    }

    /// Every version that entered production, oldest first (rollback walks it
    /// back).
    pub fn production_history(&self) -> &[VersionNumber] {
        &self.production_history
    }

    /// The version production would return to on rollback, if any.
    pub fn rollback_target(&self) -> Option<VersionNumber> {
        self.rollback_pair().map(|(_, previous)| previous)
    }

    /// What an alias points at.
    pub fn alias(&self, alias: &AliasName) -> Option<&AliasTarget> {
        self.aliases.get(alias)
    }

    /// Every alias, by name.
    pub fn aliases(&self) -> &BTreeMap<AliasName, AliasTarget> {
        &self.aliases
    }

    /// The stored gates, per target stage.
    pub fn gates(&self) -> &GatePolicy {
        &self.gates
    }

    /// The traffic split, if one is set.
    pub fn traffic_split(&self) -> Option<&TrafficSplit> {
        self.traffic_split.as_ref()
    }

    /// The latest decision of each approver on moving version `n` to `stage`.
    pub fn approvals(
        &self,
        n: VersionNumber,
        stage: Stage,
    ) -> impl Iterator<Item = (&Actor, &Approval)> {
        self.version(n)
            .and_then(|v| v.approvals.get(&stage))
            .into_iter()
            .flatten()
    }

    /// The newest version that is neither deprecated nor purged.
    pub fn latest(&self) -> Option<&VersionRecord> {
        self.versions
            .iter_rev()
            .find(|v| v.deprecated.is_none() && v.purged.is_none())
            .map(|v| &**v)
    }

    /// The version labelled with `semver`.
    pub fn by_semver(&self, semver: &semver::Version) -> Option<&VersionRecord> {
        self.by_semver.get(semver).and_then(|n| self.version(*n))
    }

    /// The newest version whose artifact has `digest`.
    pub fn by_digest(&self, digest: &Digest) -> Option<&VersionRecord> {
        self.by_digest.get(digest).and_then(|n| self.version(*n))
    }

    /// Resolves a selector to a version.
    pub fn resolve(&self, selector: &Selector) -> Result<&VersionRecord> {
        let r = VersionRef {
            model: self.name.clone(),
            selector: selector.clone(),
        };
        let found = match selector {
            Selector::Number(n) => self.version(*n),
            Selector::Semver(v) => self.by_semver(v),
            Selector::Latest => self.latest(),
            Selector::Digest(d) => self.by_digest(d),
            Selector::Alias(a) => self.alias(a).and_then(|t| self.version(t.version)),
            Selector::Stage(Stage::Production) => self.production(),
            Selector::Stage(st) => self
                .versions
                .iter_rev()
                .find(|v| v.stage == *st)
                .map(|v| &**v),
        };
        found.ok_or_else(|| Error::version_not_found(&self.name, r))
    }
}

/// [`Error::Purged`] if `v`'s artifact was purged: what needs its files (a stage
/// that serves or tries it, an alias, a route, a rollback) cannot point at it.
pub(crate) fn not_purged(v: &VersionRecord) -> Result<()> {
    match &v.purged {
        None => Ok(()),
        Some(p) => Err(Error::Purged {
            model: v.model.to_string(),
            version: v.number.get(),
            at: p.at,
            by: p.by.to_string(),
            reason: p.reason.clone(),
        }),
    }
}

/// Every recorded gate verdict must have passed: a refused transition is never
/// appended.
fn check_verdicts(gates: &[super::lifecycle::GateVerdict]) -> Result<()> {
    match gates.iter().find(|g| !g.passed) {
        Some(g) => Err(Error::invalid_input(
            format!("gate verdict '{}'", g.gate),
            "a recorded transition cannot have a failed gate",
        )),
        None => Ok(()),
    }
}

fn check_model_fields(
    description: &str,
    specs: &BTreeMap<MetricName, MetricSpec>,
    tags: &Tags,
) -> Result<()> {
    check_text("description", description, MAX_DESCRIPTION_CHARS)?;
    for (name, spec) in specs {
        spec.check(name)?;
    }
    check_tags(tags)
}

/// The reason of an immutability override: given, and within the reason limit.
fn check_override(reason: Option<&str>) -> Result<()> {
    match reason {
        None => Ok(()),
        Some(r) if r.trim().is_empty() => Err(Error::invalid_input(
            "immutability override",
            "a reason is required",
        )),
        Some(r) => check_text("override reason", r, MAX_REASON_CHARS),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::checkpoint::{CHECKPOINT_CHUNK, peek_format};
    use super::*;
    use crate::domain::record::{
        CodeRef, DatasetRef, DatasetRole, Environment, Metrics, Provenance,
    };

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            model: ModelName::new("fraud").unwrap(),
            time: DateTime::from_timestamp(1_800_000_000 + seq as i64, 0).unwrap(),
            actor: Actor::new("alice").unwrap(),
            kind,
        }
    }

    /// A model with `n` versions; every third shares its provenance with the one
    /// before, the others differ in code, datasets, hyperparameters or environment.
    fn state(n: u64) -> ModelState {
        let mut events = vec![event(
            1,
            EventKind::ModelCreated {
                description: "fraud".into(),
                metric_specs: BTreeMap::new(),
                tags: Tags::new(),
            },
        )];
        for i in 1..=n {
            let k = i - i % 3;
            let provenance = Provenance {
                code: (k % 2 == 0).then(|| CodeRef {
                    repository: None,
                    commit: format!("c{k}"),
                    dirty: false,
                }),
                datasets: vec![DatasetRef::new(format!("d{}", k % 5), DatasetRole::Train)],
                parents: Vec::new(),
                hyperparameters: Arc::new([("lr".to_owned(), (k as f64 / 7.0).into())].into()),
                environment: Environment::default()
                    .with_framework("torch", format!("{}", k % 4))
                    .into(),
            };
            let version = VersionRecord {
                model: crate::domain::ModelName::unset(),
                number: VersionNumber::new(i).unwrap(),
                semver: None,
                artifact: Digest::of(&i.to_le_bytes()),
                size: i,
                files: 1,
                created_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                created_by: Actor::new("alice").unwrap(),
                description: format!("v{i}"),
                tags: Tags::new(),
                provenance,
                metrics: Metrics::new().with("auc", i as f64 / n as f64).unwrap(),
                deprecated: None,
                stage: Stage::None,
                stage_since: None,
                approvals: BTreeMap::new(),
                reached: BTreeSet::new(),
                scan: None,
                purged: None,
                signatures: Vec::new(),
            };
            events.push(event(
                i + 1,
                EventKind::VersionRegistered {
                    version: Box::new(version),
                },
            ));
        }
        ModelState::replay(events).unwrap()
    }

    fn model() -> ModelName {
        ModelName::new("fraud").unwrap()
    }

    #[test]
    fn format_3_round_trips_across_several_chunks() {
        let s = state(2 * CHECKPOINT_CHUNK as u64 + 5);
        let bytes = encode_checkpoint(&s);
        assert_eq!(peek_format(&bytes), Some(3));
        let back = decode_checkpoint(&model(), s.seq(), &bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.by_digest(&Digest::of(&7u64.to_le_bytes()))
                .unwrap()
                .number
                .get(),
            7
        );
        let empty = state(0);
        assert_eq!(
            decode_checkpoint(&model(), 1, &encode_checkpoint(&empty)).unwrap(),
            empty
        );
    }

    #[test]
    fn a_state_with_a_purged_version_checkpoints_as_format_4() {
        let mut s = state(5);
        assert_eq!(peek_format(&encode_checkpoint(&s)), Some(3));
        s.apply(event(
            s.seq() + 1,
            EventKind::VersionPurged {
                version: VersionNumber::new(2).unwrap(),
                reason: "old".into(),
            },
        ))
        .unwrap();
        let purged = s.version(VersionNumber::new(2).unwrap()).unwrap();
        assert_eq!(purged.purged.as_ref().unwrap().reason, "old");
        let bytes = encode_checkpoint(&s);
        assert_eq!(peek_format(&bytes), Some(4));
        assert_eq!(decode_checkpoint(&model(), s.seq(), &bytes).unwrap(), s);
        // `@latest` skips it only when it is the newest; the newest is 5.
        assert_eq!(s.latest().unwrap().number.get(), 5);
        // Purging twice, or a version that does not exist, does not fold.
        for n in [2, 9] {
            assert!(
                s.clone()
                    .apply(event(
                        s.seq() + 1,
                        EventKind::VersionPurged {
                            version: VersionNumber::new(n).unwrap(),
                            reason: "again".into(),
                        },
                    ))
                    .is_err()
            );
        }
    }

    #[test]
    fn retention_picks_outside_keep_last_and_older_than() {
        use crate::domain::retention::RetentionPolicy;
        use std::time::Duration;
        let s = state(6);
        // Every version of `state` was created at 1_800_000_000.
        let created = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let nums = |p: RetentionPolicy, now| -> Vec<u64> {
            s.retention(&p, now)
                .unwrap()
                .purge
                .iter()
                .map(|n| n.get())
                .collect()
        };
        let later = created + chrono::Duration::days(10);
        assert_eq!(nums(RetentionPolicy::new().keep_last(4), later), [1, 2]);
        assert_eq!(
            nums(RetentionPolicy::new().keep_last(0), later),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(nums(RetentionPolicy::new().keep_last(10), later), [0u64; 0]);
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            nums(RetentionPolicy::new().older_than(week), later).len(),
            6
        );
        assert_eq!(
            nums(RetentionPolicy::new().older_than(week), created).len(),
            0
        );
        assert_eq!(
            nums(RetentionPolicy::new().keep_last(5).older_than(week), later),
            [1]
        );
        // An age past the calendar's range picks nothing, and does not panic.
        assert_eq!(
            nums(RetentionPolicy::new().older_than(Duration::MAX), later).len(),
            0
        );
        assert!(s.retention(&RetentionPolicy::new(), later).is_err());
    }

    /// A format-2 checkpoint of `state(10)`, as the format-2 writer (the
    /// `encode_checkpoint` of commit 4965da4^) wrote it: captured bytes, not
    /// today's serializer, so a reader that changes their meaning fails here.
    const FORMAT_2: &[u8] =
        include_bytes!("../../../tests/fixtures/checkpoint-format-2-fraud-10.ckpt");

    /// A format-3 checkpoint of `state(10)`, as the last writer of whole
    /// checkpoints before segmented ones (format 5) wrote it: captured bytes.
    const FORMAT_3: &[u8] =
        include_bytes!("../../../tests/fixtures/checkpoint-format-3-fraud-10.ckpt");

    #[test]
    fn format_3_checkpoints_still_load() {
        let s = state(10);
        let json = super::super::codec::unseal(String::new, FORMAT_3).unwrap();
        assert!(json.starts_with(br#"{"format":3,"seq":11,"chunks":[3040],"versions":10,"#));
        assert_eq!(decode_checkpoint(&model(), s.seq(), FORMAT_3).unwrap(), s);
        match decode_checkpoint_head(&model(), s.seq(), FORMAT_3).unwrap() {
            CheckpointHead::Whole(whole) => assert_eq!(whole, s),
            CheckpointHead::Segmented(_) => panic!("a whole checkpoint"),
        }
    }

    /// A segmented checkpoint (format 7) assembles to the state from its head
    /// and segments; a segment that is torn, swapped or missing is corrupt,
    /// and so is a head whose segments do not tile the versions.
    #[test]
    fn segmented_checkpoints_assemble_and_refuse_damage() {
        let s = state(10);
        let mut segments = Vec::new();
        let mut parts = Vec::new();
        for r in segment_ranges(s.versions().len(), 4) {
            let (segment, bytes) = encode_segment(r.start as u64 + 1, &s.versions()[r]);
            segments.push(segment);
            parts.push(bytes::Bytes::from(bytes));
        }
        assert_eq!(
            segments
                .iter()
                .map(|g| (g.first, g.count))
                .collect::<Vec<_>>(),
            [(1, 4), (5, 4), (9, 2)]
        );
        let head = encode_segmented_head(&s, &segments);
        let json = super::super::codec::unseal(String::new, &head).unwrap();
        assert!(json.starts_with(br#"{"format":7,"seq":11,"versions":10,"segments":[{"first":1,"#));
        assert!(matches!(
            decode_checkpoint(&model(), s.seq(), &head),
            Err(Error::InvalidInput { .. })
        ));
        let decoded = |head: &[u8]| match decode_checkpoint_head(&model(), s.seq(), head) {
            Ok(CheckpointHead::Segmented(h)) => Ok(h),
            Ok(CheckpointHead::Whole(_)) => panic!("a segmented head"),
            Err(e) => Err(e),
        };
        assert_eq!(decoded(&head).unwrap().assemble(&parts).unwrap(), s);
        // Torn: the segment's bytes cut short.
        let mut torn = parts.clone();
        let half = torn[1].len() / 2;
        torn[1] = torn[1].slice(..half);
        assert!(matches!(
            decoded(&head).unwrap().assemble(&torn),
            Err(Error::Corrupt { .. })
        ));
        // Damaged in place: same length, one byte flipped.
        let mut flipped = parts.clone();
        let mut bytes = flipped[2].to_vec();
        bytes[5] ^= 1;
        flipped[2] = bytes.into();
        assert!(matches!(
            decoded(&head).unwrap().assemble(&flipped),
            Err(Error::Corrupt { .. })
        ));
        // Swapped, or one missing.
        let swapped = [parts[1].clone(), parts[0].clone(), parts[2].clone()];
        assert!(decoded(&head).unwrap().assemble(&swapped).is_err());
        assert!(decoded(&head).unwrap().assemble(&parts[..2]).is_err());
        // A head whose segments skip versions 5..=8.
        let gap = encode_segmented_head(&s, &[segments[0].clone(), segments[2].clone()]);
        assert!(matches!(decoded(&gap), Err(Error::Corrupt { .. })));
        // Another position.
        assert!(decode_checkpoint_head(&model(), s.seq() + 1, &head).is_err());
    }

    /// Segments of `s` of `per` versions, and the head of a checkpoint of them.
    fn segmented(s: &ModelState, per: usize) -> (Vec<Segment>, Vec<bytes::Bytes>, Vec<u8>) {
        let mut segments = Vec::new();
        let mut parts = Vec::new();
        for r in segment_ranges(s.version_count(), per) {
            let (segment, bytes) = encode_segment(r.start as u64 + 1, &s.versions()[r]);
            segments.push(segment);
            parts.push(bytes::Bytes::from(bytes));
        }
        let head = encode_segmented_head(s, &segments);
        (segments, parts, head)
    }

    fn assembled(s: &ModelState, head: &[u8], parts: &[bytes::Bytes]) -> Result<ModelState> {
        match decode_checkpoint_head(&model(), s.seq(), head)? {
            CheckpointHead::Segmented(h) => h.assemble(parts),
            CheckpointHead::Whole(_) => panic!("a segmented head"),
        }
    }

    /// A format 6 checkpoint is read without decoding its records: a lookup
    /// decodes the one segment it needs, a change copies one record out, and
    /// the segments nothing changed in are known to be stored as they are.
    #[test]
    fn a_format_6_state_decodes_records_on_first_touch() {
        let s = state(10);
        let (segments, parts, head) = segmented(&s, 4);
        let back = assembled(&s, &head, &parts).unwrap();
        assert!(back.is_partly_decoded());
        // The lookup maps came from the indexes.
        let seventh = s.version(VersionNumber::new(7).unwrap()).unwrap();
        assert_eq!(back.by_digest(&seventh.artifact), Some(seventh));
        assert_eq!(back.version(VersionNumber::new(7).unwrap()), Some(seventh));
        assert_eq!(back.latest(), s.latest());
        assert!(back.is_partly_decoded(), "segment 1..=4 is still undecoded");
        for (r, segment) in segment_ranges(10, 4).zip(&segments) {
            assert_eq!(back.pristine_segment(r), Some(segment));
        }
        assert_eq!(back.pristine_segment(0..3), None, "not a segment's range");

        // A change to version 2 copies it out of its segment, which is then
        // no longer stored as it is; the others still are.
        let mut changed = back.clone();
        let metrics = Metrics::new().with("auc", 0.5).unwrap();
        let added = event(
            s.seq() + 1,
            EventKind::MetricsAdded {
                version: VersionNumber::new(2).unwrap(),
                metrics: metrics.clone(),
                overridden: None,
            },
        );
        changed.apply(added.clone()).unwrap();
        let mut eager = s.clone();
        eager.apply(added).unwrap();
        assert_eq!(changed.pristine_segment(0..4), None);
        assert_eq!(changed.pristine_segment(4..8), Some(&segments[1]));
        assert_eq!(changed, eager);
        assert_eq!(back, s, "the state it was cloned from is unchanged");

        // Asked for whole, then changed: plain memory again, equal all along.
        assert_eq!(back.versions(), s.versions());
        let mut settled = back.clone();
        settled
            .apply(event(
                s.seq() + 1,
                EventKind::MetricsAdded {
                    version: VersionNumber::new(9).unwrap(),
                    metrics,
                    overridden: None,
                },
            ))
            .unwrap();
        assert!(!settled.is_partly_decoded());
        assert_eq!(settled.pristine_segment(0..4), Some(&segments[0]));
        assert_eq!(settled.pristine_segment(8..10), None, "version 9 changed");
        assert_eq!(settled.version_count(), 10);
        back.decode_all().unwrap();

        // Another read of the checkpoint (a past state, for time travel)
        // takes the segments already decoded, from the state read lazily and
        // from the one that settled alike: nothing left to decode.
        let mut again = assembled(&s, &head, &parts).unwrap();
        assert!(again.is_partly_decoded());
        assert_eq!(again.share_segments_with(&settled), 3);
        assert!(!again.is_partly_decoded(), "its segments came decoded");
        assert_eq!(again, s);
        let mut unrelated = assembled(&s, &head, &parts).unwrap();
        assert_eq!(
            unrelated.share_segments_with(&state(10)),
            0,
            "a folded state has none"
        );

        // Or without reading them at all: another checkpoint of the model
        // (version 9 changed: segments 1..=4 and 5..=8 as `s`'s, 9..=10 not)
        // takes the two it shares from what the settled state holds (`s`'s
        // segments, kept as its origin), and only the third is read. A
        // segment said held that is not is not made up.
        let mut past = s.clone();
        past.apply(event(
            s.seq() + 1,
            EventKind::MetricsAdded {
                version: VersionNumber::new(9).unwrap(),
                metrics: Metrics::new().with("loss", 0.25).unwrap(),
                overridden: None,
            },
        ))
        .unwrap();
        let (_, past_parts, past_head) = segmented(&past, 4);
        let head = || match decode_checkpoint_head(&model(), past.seq(), &past_head).unwrap() {
            CheckpointHead::Segmented(h) => h,
            CheckpointHead::Whole(_) => panic!("a segmented head"),
        };
        let held = settled.held_segments();
        assert_eq!(held.len(), 3);
        let holds: Vec<bool> = (0..3).map(|i| head().holds(&held, i)).collect();
        assert_eq!(holds, [true, true, false]);
        let read: Vec<Option<bytes::Bytes>> = past_parts
            .iter()
            .zip(&holds)
            .map(|(p, held)| (!held).then(|| p.clone()))
            .collect();
        let taken = head().assemble_with(&read, &held).unwrap();
        assert!(
            taken.is_partly_decoded(),
            "the segment read is not decoded yet"
        );
        assert_eq!(taken, past);
        let unread = [None, None, None];
        assert!(matches!(
            head().assemble_with(&unread, &held),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            head().assemble_with(&read[..2], &held),
            Err(Error::Corrupt { .. })
        ));
    }

    /// A segment whose bytes match their digest but whose records disagree
    /// with its index (a writer's bug, or a forged head and segment) is not
    /// served: its versions are missing, the others are read, and
    /// `decode_all` says which segment is wrong.
    #[test]
    fn a_segment_whose_records_disagree_with_its_index_is_not_served() {
        let s = state(8);
        let (mut segments, mut parts, _) = segmented(&s, 4);
        // Segment 2's index, with segment 1's records.
        let (index, _) = versions::split_segment(&parts[1]).unwrap();
        let (_, records) = versions::split_segment(&parts[0]).unwrap();
        let mut forged = serde_json::to_vec(&index).unwrap();
        forged.push(b'\n');
        forged.extend_from_slice(&records);
        segments[1].digest = Digest::of(&forged);
        segments[1].len = forged.len() as u64;
        parts[1] = forged.into();
        let head = encode_segmented_head(&s, &segments);
        let back = assembled(&s, &head, &parts).unwrap();
        assert_eq!(back.version(VersionNumber::new(6).unwrap()), None);
        assert_eq!(
            back.version(VersionNumber::new(2).unwrap()),
            s.version(VersionNumber::new(2).unwrap())
        );
        let err = back.decode_all().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&segments[1].name()), "{err}");
    }

    /// A format 5 checkpoint (segments without an index) still loads, whole.
    #[test]
    fn format_5_checkpoints_still_load() {
        let s = state(10);
        let mut segments = Vec::new();
        let mut parts = Vec::new();
        for r in segment_ranges(10, 4) {
            let bytes = crate::domain::chunk::encode(&s.versions()[r.clone()]);
            segments.push(Segment {
                first: r.start as u64 + 1,
                count: r.len() as u64,
                digest: Digest::of(&bytes),
                len: bytes.len() as u64,
            });
            parts.push(bytes::Bytes::from(bytes));
        }
        let head = encode_segmented_head(&s, &segments);
        let json = super::super::codec::unseal(String::new, &head).unwrap();
        let five = String::from_utf8(json.to_vec()).unwrap().replacen(
            r#"{"format":7,"#,
            r#"{"format":5,"#,
            1,
        );
        let head = super::super::codec::seal(five.into_bytes());
        let back = assembled(&s, &head, &parts).unwrap();
        assert!(!back.is_partly_decoded());
        assert_eq!(back, s);
    }

    /// A format 6 checkpoint (indexed segments, no patches) still loads,
    /// lazily; a format 6 head that lists patches is corrupt.
    #[test]
    fn format_6_checkpoints_still_load() {
        let s = state(10);
        let (_, parts, head) = segmented(&s, 4);
        let json = super::super::codec::unseal(String::new, &head).unwrap();
        let text = String::from_utf8(json.to_vec()).unwrap();
        assert!(text.contains(r#""patches":[]"#), "{text}");
        let six = text.replacen(r#"{"format":7,"#, r#"{"format":6,"#, 1);
        let back = assembled(
            &s,
            &super::super::codec::seal(six.clone().into_bytes()),
            &parts,
        )
        .unwrap();
        assert!(back.is_partly_decoded());
        assert_eq!(back, s);
        // Without the field at all, as format 6 writers wrote it.
        let old = six.replacen(r#","patches":[]"#, "", 1);
        assert_ne!(old, six);
        let back = assembled(&s, &super::super::codec::seal(old.into_bytes()), &parts).unwrap();
        assert_eq!(back, s);

        let (patch, bytes) = encode_patch(1, 1, &[Arc::clone(&s.versions()[1])]);
        let mut with = parts.clone();
        with.push(bytes::Bytes::from(bytes));
        let listed = six.replacen(
            r#""patches":[]"#,
            &format!(r#""patches":[{}]"#, serde_json::to_string(&patch).unwrap()),
            1,
        );
        let err = assembled(&s, &super::super::codec::seal(listed.into_bytes()), &with);
        assert!(matches!(err, Err(Error::Corrupt { .. })), "{err:?}");
    }

    /// `version` moved through the stages to production (archiving the
    /// version there before).
    fn promote(s: &mut ModelState, version: u64) {
        let version = VersionNumber::new(version).unwrap();
        let archived = s.production;
        for (from, to) in [
            (Stage::None, Stage::Staging),
            (Stage::Staging, Stage::Validation),
            (Stage::Validation, Stage::Production),
        ] {
            s.apply(event(
                s.seq() + 1,
                EventKind::StageChanged {
                    version,
                    from,
                    to,
                    reason: String::new(),
                    gates: Vec::new(),
                    archived: if to == Stage::Production {
                        archived
                    } else {
                        None
                    },
                },
            ))
            .unwrap();
        }
    }

    fn add_metric(s: &mut ModelState, version: u64, auc: f64) {
        s.apply(event(
            s.seq() + 1,
            EventKind::MetricsAdded {
                version: VersionNumber::new(version).unwrap(),
                metrics: Metrics::new().with("auc", auc).unwrap(),
                overridden: None,
            },
        ))
        .unwrap();
    }

    /// A format 7 checkpoint: segments written before some records changed,
    /// and patches holding those records. The state read is the changed one:
    /// a record in a patch wins over its segment's copy and a later patch's
    /// over an earlier one's, including which version is in production; the
    /// patches' records are decoded on first touch too. A patch that is
    /// damaged, or whose index disagrees with the segments', is corrupt.
    #[test]
    fn patches_win_over_their_segments() {
        let mut old = state(10);
        promote(&mut old, 3);
        let (segments, parts, _) = segmented(&old, 4);
        let mut new = old.clone();
        add_metric(&mut new, 9, 0.25);
        let level_2_state = new.clone();
        add_metric(&mut new, 9, 0.75);
        promote(&mut new, 6);
        let v = |s: &ModelState, n: u64| Arc::clone(&s.versions()[n as usize - 1]);
        // Level 2 holds 9 as it was before its second change; level 1 holds
        // 9 now, 3 (archived) and 6 (in production).
        let (two, two_bytes) = encode_patch(2, 0, &[v(&level_2_state, 9)]);
        let (one, one_bytes) = encode_patch(1, 3, &[v(&new, 3), v(&new, 6), v(&new, 9)]);
        let mut all = parts.clone();
        all.push(bytes::Bytes::from(two_bytes.clone()));
        all.push(bytes::Bytes::from(one_bytes.clone()));
        let head = encode_patched_head(&new, &segments, &[two.clone(), one.clone()]);
        let back = assembled(&new, &head, &all).unwrap();
        assert!(back.is_partly_decoded());
        assert_eq!(back.production, Some(VersionNumber::new(6).unwrap()));
        assert_eq!(
            back.version(VersionNumber::new(9).unwrap()),
            new.version(VersionNumber::new(9).unwrap())
        );
        assert_ne!(
            back.version(VersionNumber::new(9).unwrap()),
            old.version(VersionNumber::new(9).unwrap())
        );
        assert_eq!(back, new);
        back.decode_all().unwrap();
        // What a writer needs: the segments and the records differing from them.
        let (segment, differ) = back.stored_segment(8..10).unwrap();
        assert_eq!((segment, differ), (&segments[2], vec![8]));
        assert_eq!(back.stored_segment(0..4).unwrap().1, vec![2]);
        assert_eq!(
            back.stored_patch().map(|(p, h)| (p.clone(), h)),
            Some((two.clone(), vec![8]))
        );
        assert!(!back.is_stored_patch_copy(8), "level 1 holds a newer 9");

        // In the other order, level 2's older copy of 9 would win: a
        // different state, so the order is what the head says.
        let swapped = encode_patched_head(&new, &segments, &[one.clone(), two.clone()]);
        let mut swapped_parts = parts.clone();
        swapped_parts.push(bytes::Bytes::from(one_bytes.clone()));
        swapped_parts.push(bytes::Bytes::from(two_bytes.clone()));
        let other = assembled(&new, &swapped, &swapped_parts).unwrap();
        assert_eq!(
            other.version(VersionNumber::new(9).unwrap()),
            level_2_state.version(VersionNumber::new(9).unwrap())
        );

        // A damaged patch is caught by its digest, naming it.
        let mut damaged = all.clone();
        let mut bytes = one_bytes.clone();
        let at = bytes.len() - 5;
        bytes[at] ^= 1;
        damaged[4] = bytes::Bytes::from(bytes);
        let err = assembled(&new, &head, &damaged).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&one.name()), "{err}");
        // A missing one: fewer parts than the head lists.
        assert!(matches!(
            assembled(&new, &head, &all[..4]),
            Err(Error::Corrupt { .. })
        ));

        // Forged patches that hash right but disagree with the segments.
        let forged = |records: &[Arc<VersionRecord>]| {
            let (p, b) = encode_patch(1, 1, records);
            let head = encode_patched_head(&new, &segments, &[p]);
            let mut with = parts.clone();
            with.push(bytes::Bytes::from(b));
            assembled(&new, &head, &with)
        };
        let mut other_artifact = (*v(&new, 9)).clone();
        other_artifact.artifact = Digest::of(b"another");
        let mut labelled = (*v(&new, 9)).clone();
        labelled.semver = Some(semver::Version::new(1, 0, 0));
        for (what, records) in [
            ("another artifact", vec![Arc::new(other_artifact)]),
            ("a semver", vec![Arc::new(labelled)]),
            // 6 in production, 3 still there in its segment.
            ("two in production", vec![v(&new, 6)]),
        ] {
            let err = forged(&records);
            assert!(matches!(err, Err(Error::Corrupt { .. })), "{what}: {err:?}");
        }
        // A version past the last.
        let mut past = (*v(&new, 9)).clone();
        past.number = VersionNumber::new(11).unwrap();
        assert!(matches!(
            forged(&[Arc::new(past)]),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn format_2_checkpoints_still_load() {
        let s = state(10);
        let json = super::super::codec::unseal(String::new, FORMAT_2).unwrap();
        assert!(json.starts_with(br#"{"format":2,"seq":11,"state":{"name":"fraud","#));
        assert_eq!(decode_checkpoint(&model(), s.seq(), FORMAT_2).unwrap(), s);
        // The same record with `format` last: found by a full parse.
        let text = std::str::from_utf8(json).unwrap();
        let body = text
            .strip_prefix(r#"{"format":2,"#)
            .and_then(|t| t.strip_suffix('}'))
            .unwrap();
        let reordered = format!(r#"{{{body},"format":2}}"#);
        assert_eq!(peek_format(reordered.as_bytes()), None);
        let bytes = super::super::codec::seal(reordered.into_bytes());
        assert_eq!(decode_checkpoint(&model(), s.seq(), &bytes).unwrap(), s);
    }

    #[test]
    fn a_newer_format_is_unsupported_and_a_damaged_chunk_corrupt() {
        let s = state(40);
        let seq = s.seq();
        let json = super::super::codec::unseal(String::new, &encode_checkpoint(&s))
            .unwrap()
            .to_vec();
        let text = String::from_utf8(json).unwrap();
        let sealed = |t: String| super::super::codec::seal(t.into_bytes());
        let newer = sealed(text.replacen(r#"{"format":3,"#, r#"{"format":8,"#, 1));
        assert!(matches!(
            decode_checkpoint(&model(), seq, &newer),
            Err(Error::UnsupportedFormat { found: 8, .. })
        ));
        for bad in [
            // A chunk length that runs past the end, or leaves bytes over.
            text.replacen(r#""chunks":["#, r#""chunks":[1"#, 1),
            format!("{text} "),
            // A table index that is not in the table.
            text.replacen("[[0,0,0,0,", "[[0,0,99,0,", 1),
            // Versions in the header.
            text.replacen(r#""versions":[]"#, r#""versions":[1]"#, 1),
        ] {
            assert_ne!(bad, text);
            assert!(
                matches!(
                    decode_checkpoint(&model(), seq, &sealed(bad.clone())),
                    Err(Error::Corrupt { .. })
                ),
                "{}",
                &bad[..200]
            );
        }
    }
}
