//! Events: every change to a model, as appended to its log.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lifecycle::{Decision, GateSpec, GateVerdict, Stage};
use super::name::{Actor, AliasName, MetricName, ModelName, TagKey};
use super::record::{MetricSpec, Metrics, Tags, VersionRecord};
use super::reference::VersionNumber;
use super::routing::TrafficSplit;
use crate::error::{Error, Result};

/// The newest event format version this build reads and writes. Adding an optional
/// field keeps it; a new kind of event or a changed meaning bumps it.
///
/// - 1: model, version, metrics, tags, metric specs, deprecation events;
/// - 2: adds the lifecycle events (stage changes, rollback, approvals, aliases,
///   gates) and traffic splits;
/// - 3: adds format scans (`formats_scanned`);
/// - 4: adds purges of a version's artifact (`version_purged`);
/// - 5: adds signatures (`signature_added`);
/// - 6: adds edits of a version's description (`version_description_set`).
///
/// Each event is written with the lowest format that has its kind
/// ([`EventKind::format`]), so a log that uses no lifecycle event stays readable by
/// builds that only know format 1.
pub const EVENT_FORMAT: u32 = 6;

/// One change to a model, with who made it and when.
///
/// Serialized (see [`Event::to_bytes`]) as
/// `{"format":1,"seq":3,"model":"fraud","time":"2026-…Z","actor":"alice","event":{"type":"metrics_added",…}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// The log's records add `format` (`to_bytes`); the JSON of an `Event` has none.
#[cfg_attr(
    feature = "serve",
    derive(utoipa::ToSchema),
    schema(description = "One change to a model, with who made it and when.")
)]
pub struct Event {
    /// Position in the model's log: 1 for `model_created`, then 2, 3, …
    pub seq: u64,
    /// The model.
    pub model: ModelName,
    /// When, never earlier than the previous event's time in the same log.
    pub time: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// What.
    #[serde(rename = "event")]
    pub kind: EventKind,
}

/// What an [`Event`] changed. Serialized with a `"type"` field in snake case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum EventKind {
    /// The model was created. Always event 1.
    ModelCreated {
        /// What the model is for.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
        /// How its metrics are judged.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        metric_specs: BTreeMap<MetricName, MetricSpec>,
        /// Its labels.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        #[cfg_attr(feature = "serve", schema(value_type = BTreeMap<TagKey, String>))]
        tags: Tags,
    },
    /// A version was registered.
    VersionRegistered {
        /// The new version.
        version: Box<VersionRecord>,
    },
    /// Metrics were added to (or replaced on) a version.
    MetricsAdded {
        /// The version.
        version: VersionNumber,
        /// The new values.
        metrics: Metrics,
        /// Why the version's immutability was overridden, when it was in
        /// production (see [`Session::override_immutable`](crate::Session::override_immutable)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overridden: Option<String>,
    },
    /// Tags of a version, or of the model itself when `version` is absent, were set
    /// or removed.
    TagsSet {
        /// The version, or none for the model.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<VersionNumber>,
        /// Tags added or replaced.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        #[cfg_attr(feature = "serve", schema(value_type = BTreeMap<TagKey, String>))]
        set: Tags,
        /// Tags removed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removed: Vec<TagKey>,
        /// Why the version's immutability was overridden, when it was in
        /// production (see [`Session::override_immutable`](crate::Session::override_immutable)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overridden: Option<String>,
    },
    /// The model's metric specs were added or replaced.
    MetricSpecsSet {
        /// The specs added or replaced.
        specs: BTreeMap<MetricName, MetricSpec>,
    },
    /// A version was deprecated: `@latest` skips it from now on.
    VersionDeprecated {
        /// The version.
        version: VersionNumber,
        /// Why.
        reason: String,
    },
    /// A version moved from one stage to another after every gate passed. When it
    /// moved to production, the previous production version (if any) was archived
    /// in the same event.
    StageChanged {
        /// The version.
        version: VersionNumber,
        /// Its stage before.
        from: Stage,
        /// Its stage after.
        to: Stage,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
        /// Every gate's verdict (all passed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<GateVerdict>,
        /// The production version archived by this promotion.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archived: Option<VersionNumber>,
    },
    /// Production went back to the version that held it before the current one,
    /// which was archived.
    RolledBack {
        /// The version back in production.
        restored: VersionNumber,
        /// The version that left production.
        displaced: VersionNumber,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// An approver approved or rejected moving a version to a stage.
    ApprovalRecorded {
        /// The version.
        version: VersionNumber,
        /// The target stage decided on.
        stage: Stage,
        /// Approve or reject.
        decision: Decision,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        comment: String,
    },
    /// An alias was set or moved.
    AliasSet {
        /// The alias.
        alias: AliasName,
        /// The version it now points at.
        version: VersionNumber,
        /// Whether moving or removing it must pass the production gates.
        #[serde(default)]
        protected: bool,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
        /// Gate verdicts, when the alias was protected (all passed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<GateVerdict>,
    },
    /// An alias was removed.
    AliasRemoved {
        /// The alias.
        alias: AliasName,
        /// The version it pointed at (absent in records written before it was
        /// recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<VersionNumber>,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
        /// Gate verdicts, when the alias was protected (all passed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<GateVerdict>,
    },
    /// The stored gates for moving versions into a stage were replaced.
    GatesSet {
        /// The target stage.
        stage: Stage,
        /// The gates (empty: none).
        gates: Vec<GateSpec>,
    },
    /// The model's traffic split was set, replaced, or (when `split` is absent)
    /// cleared.
    TrafficSplitSet {
        /// The new split; none clears it, and requests fall back to `@production`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        split: Option<TrafficSplit>,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// The [format scanner](crate::scan) read a version's files; its verdicts.
    /// The version's [`scan`](VersionRecord::scan) is this one from now on.
    FormatsScanned {
        /// The version.
        version: VersionNumber,
        /// The scanner's version.
        scanner: u32,
        /// The verdict on every file that is not plain data, and on every
        /// file refused, in path order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<crate::scan::FileVerdict>,
        /// How many other files are plain data that passed.
        #[serde(default)]
        data_files: u64,
    },
    /// A version's artifact was purged: its record and history stay, its files
    /// are no longer kept (garbage collection reclaims the blobs no other version
    /// uses) and fetching it fails with [`Error::Purged`](crate::Error::Purged).
    /// The version's [`purged`](VersionRecord::purged) is set from now on.
    VersionPurged {
        /// The version.
        version: VersionNumber,
        /// Why.
        reason: String,
    },
    /// A signature of a version's files was added: an OMS v1.0 bundle, verified
    /// against the files and `public_key` before the event was written.
    SignatureAdded {
        /// The version.
        version: VersionNumber,
        /// The signing key's id, the SHA-256 of `public_key`.
        key: crate::signing::KeyId,
        /// The signing key's public key, SPKI PEM.
        public_key: String,
        /// Which digest of each file the bundle lists.
        hash: crate::signing::FileHash,
        /// The bundle's blob in the artifact store.
        #[cfg_attr(feature = "serve", schema(value_type = String))]
        bundle: crate::digest::Digest,
        /// Why.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// A version's description was replaced (empty: cleared). The version's
    /// [`description`](VersionRecord::description) is this one from now on.
    VersionDescriptionSet {
        /// The version.
        version: VersionNumber,
        /// The new description.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
        /// Why the version's immutability was overridden, when it was in
        /// production (see [`Session::override_immutable`](crate::Session::override_immutable)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overridden: Option<String>,
    },
}

impl EventKind {
    /// The kind's name as serialized (`model_created`, `version_registered`, …).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ModelCreated { .. } => "model_created",
            EventKind::VersionRegistered { .. } => "version_registered",
            EventKind::MetricsAdded { .. } => "metrics_added",
            EventKind::TagsSet { .. } => "tags_set",
            EventKind::MetricSpecsSet { .. } => "metric_specs_set",
            EventKind::VersionDeprecated { .. } => "version_deprecated",
            EventKind::StageChanged { .. } => "stage_changed",
            EventKind::RolledBack { .. } => "rolled_back",
            EventKind::ApprovalRecorded { .. } => "approval_recorded",
            EventKind::AliasSet { .. } => "alias_set",
            EventKind::AliasRemoved { .. } => "alias_removed",
            EventKind::GatesSet { .. } => "gates_set",
            EventKind::TrafficSplitSet { .. } => "traffic_split_set",
            EventKind::FormatsScanned { .. } => "formats_scanned",
            EventKind::VersionPurged { .. } => "version_purged",
            EventKind::SignatureAdded { .. } => "signature_added",
            EventKind::VersionDescriptionSet { .. } => "version_description_set",
        }
    }

    /// The lowest event format that has this kind (see [`EVENT_FORMAT`]).
    pub fn format(&self) -> u32 {
        match self {
            EventKind::ModelCreated { .. }
            | EventKind::VersionRegistered { .. }
            | EventKind::MetricsAdded { .. }
            | EventKind::TagsSet { .. }
            | EventKind::MetricSpecsSet { .. }
            | EventKind::VersionDeprecated { .. } => 1,
            EventKind::FormatsScanned { .. } => 3,
            EventKind::VersionPurged { .. } => 4,
            EventKind::SignatureAdded { .. } => 5,
            EventKind::VersionDescriptionSet { .. } => 6,
            _ => 2,
        }
    }

    /// The version the event is about, if it is about one.
    pub fn version(&self) -> Option<VersionNumber> {
        match self {
            EventKind::VersionRegistered { version } => Some(version.number),
            EventKind::MetricsAdded { version, .. }
            | EventKind::VersionDeprecated { version, .. }
            | EventKind::StageChanged { version, .. }
            | EventKind::ApprovalRecorded { version, .. }
            | EventKind::AliasSet { version, .. }
            | EventKind::FormatsScanned { version, .. }
            | EventKind::VersionPurged { version, .. } => Some(*version),
            EventKind::SignatureAdded { version, .. }
            | EventKind::VersionDescriptionSet { version, .. } => Some(*version),
            EventKind::RolledBack { restored, .. } => Some(*restored),
            EventKind::TagsSet { version, .. } | EventKind::AliasRemoved { version, .. } => {
                *version
            }
            EventKind::ModelCreated { .. }
            | EventKind::MetricSpecsSet { .. }
            | EventKind::GatesSet { .. }
            | EventKind::TrafficSplitSet { .. } => None,
        }
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    format: u32,
    #[serde(flatten)]
    event: &'a Event,
}

#[derive(Deserialize)]
struct WireIn {
    format: u32,
    #[serde(flatten)]
    event: Event,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

impl Event {
    /// Encodes the event with its format version, sealed with its checksum (see
    /// [`format::seal`](crate::format::seal)), as stored in the log.
    ///
    /// This does not check the [`limits`](crate::limits) on what is written;
    /// the registry does before it appends.
    pub fn to_bytes(&self) -> Vec<u8> {
        let json = serde_json::to_vec(&WireOut {
            format: self.kind.format(),
            event: self,
        })
        // Invariant: serializing an event into memory cannot fail. Every map key
        // is a string, every type's `Serialize` is derived or infallible, and
        // serde_json writes a non-finite float as `null` rather than failing.
        .expect("an event always serializes to JSON");
        super::codec::seal(json)
    }

    /// Decodes the record stored at position `seq` of the log of `model`.
    ///
    /// The checksum is checked first, then the format version: an unknown one is
    /// [`Error::UnsupportedFormat`], never skipped. A record that does not decode,
    /// or that claims another position or model than where it is stored, is
    /// [`Error::Corrupt`].
    pub fn from_bytes(model: &ModelName, seq: u64, bytes: &[u8]) -> Result<Event> {
        let record = || format!("event {seq} of model '{model}'");
        let bytes = super::codec::unseal(record, bytes)?;
        let unsupported = |found| Error::UnsupportedFormat {
            record: record(),
            found,
            supported: EVENT_FORMAT,
            location: None,
        };
        // One parse when the record decodes (folds read thousands); only one
        // that does not is parsed again for its format alone, so a record of a
        // newer format is reported as such rather than as undecodable.
        let wire: WireIn = match serde_json::from_slice(bytes) {
            Ok(wire) => wire,
            Err(e) => {
                let f: FormatOnly = serde_json::from_slice(bytes)
                    .map_err(|e| Error::corrupt(record(), format!("undecodable: {e}")))?;
                if f.format == 0 || f.format > EVENT_FORMAT {
                    return Err(unsupported(f.format));
                }
                return Err(Error::corrupt(record(), format!("undecodable: {e}")));
            }
        };
        if wire.format == 0 || wire.format > EVENT_FORMAT {
            return Err(unsupported(wire.format));
        }
        let event = wire.event;
        if event.kind.format() > wire.format {
            return Err(Error::corrupt(
                record(),
                format!(
                    "a {} event cannot appear in format {}",
                    event.kind.name(),
                    wire.format
                ),
            ));
        }
        if event.seq != seq || event.model != *model {
            return Err(Error::corrupt(
                record(),
                format!(
                    "claims to be event {} of model '{}'",
                    event.seq, event.model
                ),
            ));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::{Decision, Stage};

    fn sample() -> Event {
        Event {
            seq: 2,
            model: ModelName::new("fraud").unwrap(),
            time: "2026-11-27T10:00:00Z".parse().unwrap(),
            actor: Actor::new("alice").unwrap(),
            kind: EventKind::MetricsAdded {
                version: VersionNumber::FIRST,
                metrics: Metrics::new().with("auc", 0.5).unwrap(),
                overridden: None,
            },
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        let json = json_of(&sample());
        assert_eq!(
            json,
            r#"{"format":1,"seq":2,"model":"fraud","time":"2026-11-27T10:00:00Z","actor":"alice","event":{"type":"metrics_added","version":1,"metrics":{"auc":0.5}}}"#
        );
        let model = ModelName::new("fraud").unwrap();
        assert_eq!(
            Event::from_bytes(&model, 2, &sealed(&json)).unwrap(),
            sample()
        );
        assert_eq!(
            sample().to_bytes(),
            format!("{json}\n{}\n", crate::Digest::of(json.as_bytes())).into_bytes()
        );
    }

    /// The JSON line of an encoded event.
    fn json_of(e: &Event) -> String {
        let text = String::from_utf8(e.to_bytes()).unwrap();
        text.split('\n').next().unwrap().to_owned()
    }

    fn sealed(json: &str) -> Vec<u8> {
        crate::domain::codec::seal(json.as_bytes().to_vec())
    }

    #[test]
    fn future_format_misplaced_and_garbage_records_are_typed_errors() {
        let model = ModelName::new("fraud").unwrap();
        let json = json_of(&sample());
        // Each altered record is resealed, so the check under test is reached
        // rather than the checksum.
        let next = EVENT_FORMAT + 1;
        let future = json.replace("\"format\":1", &format!("\"format\":{next}"));
        assert!(matches!(
            Event::from_bytes(&model, 2, &sealed(&future)),
            Err(Error::UnsupportedFormat {
                found,
                supported: EVENT_FORMAT,
                ..
            }) if found == next
        ));
        assert!(matches!(
            Event::from_bytes(&model, 3, &sealed(&json)),
            Err(Error::Corrupt { .. })
        ));
        let other = ModelName::new("other").unwrap();
        assert!(matches!(
            Event::from_bytes(&other, 2, &sealed(&json)),
            Err(Error::Corrupt { .. })
        ));
        for garbage in ["", "{", "\u{0}\u{1}", &json[..json.len() / 2]] {
            assert!(matches!(
                Event::from_bytes(&model, 2, &sealed(garbage)),
                Err(Error::Corrupt { .. })
            ));
        }
        let unknown_kind = json.replace("metrics_added", "teleported");
        assert!(matches!(
            Event::from_bytes(&model, 2, &sealed(&unknown_kind)),
            Err(Error::Corrupt { .. })
        ));
        // A lifecycle kind claiming format 1 is not a format-1 record.
        let lifecycle = Event {
            kind: EventKind::ApprovalRecorded {
                version: VersionNumber::FIRST,
                stage: Stage::Production,
                decision: Decision::Approve,
                comment: String::new(),
            },
            ..sample()
        };
        let json = json_of(&lifecycle);
        assert!(json.starts_with("{\"format\":2,"), "{json}");
        assert!(Event::from_bytes(&model, 2, &sealed(&json)).is_ok());
        assert!(matches!(
            Event::from_bytes(
                &model,
                2,
                &sealed(&json.replace("\"format\":2", "\"format\":1"))
            ),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn a_flipped_bit_that_still_parses_is_caught_by_the_checksum() {
        let model = ModelName::new("fraud").unwrap();
        let bytes = sample().to_bytes();
        let text = String::from_utf8(bytes).unwrap().replace("0.5", "0.4");
        assert!(matches!(
            Event::from_bytes(&model, 2, text.as_bytes()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn nan_metric_in_a_record_is_rejected() {
        let model = ModelName::new("fraud").unwrap();
        let json = json_of(&sample()).replace("0.5", "1e999");
        assert!(Event::from_bytes(&model, 2, &sealed(&json)).is_err());
    }
}
