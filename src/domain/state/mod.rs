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
mod tests;
