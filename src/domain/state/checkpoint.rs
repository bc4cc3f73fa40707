//! The checkpoint codec: a [`ModelState`] as sealed, chunked JSON and back, the
//! wire structs it is (de)serialized through, and the checks that decide whether
//! a decoded state may be trusted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ModelState;
use crate::domain::event::{Event, EventKind};
use crate::domain::lifecycle::{AliasTarget, GatePolicy, Stage};
use crate::domain::name::{Actor, AliasName, MetricName, ModelName};
use crate::domain::record::{MetricSpec, Tags, VersionRecord};
use crate::domain::reference::VersionNumber;
use crate::domain::routing::TrafficSplit;
use crate::error::{Error, Result};

/// The checkpoint format version written by this build. Format 2 added the
/// lifecycle (stages, aliases, approvals, gates) and the traffic split; format 3
/// stores the versions in separately decodable chunks after a small header, so a
/// large checkpoint decodes on every core. Format 4 is format 3 with purged
/// versions in it (their `purged` field): it is written only for a state that
/// has one, so an older build stops at it rather than take a purged version for
/// a live one, and reads every other checkpoint as before. Format 1, 2 and 3
/// checkpoints still load. Format 5 is a small head that lists the versions'
/// segments, stored apart (see `segments.rs`): written for a state of at least
/// one full segment to a store that keeps checkpoint parts; it is read with
/// [`read_checkpoint`](crate::format::read_checkpoint), not with
/// [`decode_checkpoint`] alone. Format 6 is format 5 with an index at the
/// start of each segment, so a checkpoint is read without decoding its
/// records (they are decoded when first asked for). Format 7 is format 6 with
/// *patches*: parts holding the records that changed since their segment was
/// written, so a change to an old version does not rewrite its segment.
pub const CHECKPOINT_FORMAT: u32 = 7;

/// Versions per chunk of a format 3 checkpoint: small enough that the chunks of
/// a large model spread evenly over the cores, large enough that a chunk's
/// framing (a few bytes in the header) costs nothing.
pub(super) const CHECKPOINT_CHUNK: usize = 2048;

#[derive(Deserialize)]
pub(super) struct StateWire {
    name: ModelName,
    #[serde(default)]
    description: String,
    created_at: DateTime<Utc>,
    created_by: Actor,
    #[serde(default)]
    metric_specs: BTreeMap<MetricName, MetricSpec>,
    #[serde(default)]
    tags: Tags,
    versions: Vec<VersionRecord>,
    seq: u64,
    updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    aliases: BTreeMap<AliasName, AliasTarget>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    production_history: Vec<VersionNumber>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    gates: GatePolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traffic_split: Option<TrafficSplit>,
}

impl TryFrom<StateWire> for ModelState {
    type Error = Error;
    fn try_from(w: StateWire) -> Result<Self> {
        let mut s = ModelState {
            name: w.name,
            description: w.description,
            created_at: w.created_at,
            created_by: w.created_by,
            metric_specs: w.metric_specs,
            tags: w.tags,
            versions: Vec::with_capacity(w.versions.len()).into(),
            seq: w.seq,
            updated_at: w.updated_at,
            aliases: w.aliases,
            production_history: w.production_history,
            gates: w.gates,
            traffic_split: w.traffic_split,
            by_semver: BTreeMap::new(),
            by_digest: HashMap::new(),
            production: None,
        };
        for mut v in w.versions {
            if let Some(previous) = s.versions.last() {
                v.provenance.share_with(&previous.provenance);
            }
            s.push_loaded(Arc::new(v))?;
        }
        Ok(s)
    }
}

/// The serialized form of a [`ModelState`], borrowed: the same fields as
/// [`StateWire`] reads, so serializing copies nothing.
#[derive(Serialize)]
pub(super) struct StateRef<'a> {
    name: &'a ModelName,
    description: &'a str,
    created_at: &'a DateTime<Utc>,
    created_by: &'a Actor,
    metric_specs: &'a BTreeMap<MetricName, MetricSpec>,
    tags: &'a Tags,
    versions: &'a [Arc<VersionRecord>],
    seq: u64,
    updated_at: &'a DateTime<Utc>,
    #[serde(skip_serializing_if = "is_empty_map")]
    aliases: &'a BTreeMap<AliasName, AliasTarget>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    production_history: &'a [VersionNumber],
    #[serde(skip_serializing_if = "is_empty_map")]
    gates: &'a GatePolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic_split: Option<&'a TrafficSplit>,
}

fn is_empty_map<K, V>(m: &&BTreeMap<K, V>) -> bool {
    m.is_empty()
}

impl ModelState {
    /// The state's serialized form, with `versions` in place of its own.
    pub(super) fn wire<'a>(&'a self, versions: &'a [Arc<VersionRecord>]) -> StateRef<'a> {
        StateRef {
            name: &self.name,
            description: &self.description,
            created_at: &self.created_at,
            created_by: &self.created_by,
            metric_specs: &self.metric_specs,
            tags: &self.tags,
            versions,
            seq: self.seq,
            updated_at: &self.updated_at,
            aliases: &self.aliases,
            production_history: &self.production_history,
            gates: &self.gates,
            traffic_split: self.traffic_split.as_ref(),
        }
    }

    /// Appends a version read from a checkpoint, checking that numbers stay dense
    /// and at most one version is in production, and indexes it.
    pub(super) fn push_loaded(&mut self, mut v: Arc<VersionRecord>) -> Result<()> {
        // Freshly decoded, so not shared: this sets the field in place.
        Arc::make_mut(&mut v).model = self.name.clone();
        if v.number.get() != self.versions.len() as u64 + 1 {
            return Err(Error::corrupt(
                format!("state of model '{}'", self.name),
                "version numbers are not dense from 1",
            ));
        }
        self.index(&v);
        if v.stage == Stage::Production {
            if self.production.is_some() {
                return Err(Error::corrupt(
                    format!("state of model '{}'", self.name),
                    "two versions in production",
                ));
            }
            self.production = Some(v.number);
        }
        self.versions.push(v);
        Ok(())
    }
}

impl Serialize for ModelState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.wire(self.versions.as_slice()).serialize(s)
    }
}

/// Encodes a checkpoint of `state`, sealed with its checksum.
///
/// Format 3: one JSON header, then the versions in JSON chunks of up to 2,048
/// versions each, back to back:
///
/// ```text
/// {"format":3,"seq":N,"chunks":[len,…],"versions":V,"state":{…,"versions":[],…}}{chunk}{chunk}…
/// ```
///
/// `chunks` gives each chunk's length in bytes, so the chunks are decoded
/// independently (on every core, see [`decode_checkpoint`]). The header's state is [`ModelState`]'s JSON with no versions.
/// A chunk stores each distinct code, datasets, hyperparameters and environment
/// once and the versions refer to them by index (see `domain/chunk.rs`).
pub fn encode_checkpoint(state: &ModelState) -> Vec<u8> {
    #[derive(Serialize)]
    struct Head<'a> {
        format: u32,
        seq: u64,
        chunks: Vec<usize>,
        /// How many versions the chunks hold: checked on load, so a checkpoint
        /// that lost versions is not trusted.
        versions: usize,
        state: StateRef<'a>,
    }
    let parts: Vec<&[Arc<VersionRecord>]> =
        state.versions.as_slice().chunks(CHECKPOINT_CHUNK).collect();
    // One thread: a large checkpoint is encoded in the background, beside the
    // commands that go on, and should not take every core from them.
    let chunks: Vec<Vec<u8>> = parts
        .iter()
        .map(|c| crate::domain::chunk::encode(c))
        .collect();
    let head = Head {
        format: if state.versions.as_slice().iter().any(|v| v.purged.is_some()) {
            4
        } else {
            3
        },
        seq: state.seq,
        chunks: chunks.iter().map(Vec::len).collect(),
        versions: state.versions.len(),
        state: state.wire(&[]),
    };
    // Invariant: the header is plain data (string map keys only) serialized into
    // memory, which cannot fail; an empty header would be an unreadable checkpoint.
    let mut out = serde_json::to_vec(&head).expect("a checkpoint header always serializes");
    out.reserve_exact(chunks.iter().map(Vec::len).sum::<usize>() + 80);
    for c in &chunks {
        out.extend_from_slice(c);
    }
    crate::domain::codec::seal(out)
}

/// Decodes a checkpoint stored for position `seq` of `model`'s log (format 1, 2,
/// 3 or 4). A format 3 or 4 checkpoint's chunks of versions are decoded in parallel on
/// up to [`std::thread::available_parallelism`] threads.
pub fn decode_checkpoint(model: &ModelName, seq: u64, bytes: &[u8]) -> Result<ModelState> {
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    #[derive(Deserialize)]
    struct In {
        seq: u64,
        state: ModelState,
    }
    #[derive(Deserialize)]
    struct Head {
        seq: u64,
        chunks: Vec<usize>,
        /// Absent from checkpoints written before 0.2.
        #[serde(default)]
        versions: Option<usize>,
        state: ModelState,
    }
    let record = || format!("checkpoint {seq} of model '{model}'");
    let undecodable = |e: serde_json::Error| Error::corrupt(record(), format!("undecodable: {e}"));
    let bytes = crate::domain::codec::unseal(record, bytes)?;
    // This build writes `{"format":N,` first: read N without scanning the whole
    // record; anything else is parsed in full.
    let format = match peek_format(bytes) {
        Some(f) => f,
        None => {
            serde_json::from_slice::<Format>(bytes)
                .map_err(undecodable)?
                .format
        }
    };
    if format == 0 || format > CHECKPOINT_FORMAT {
        return Err(Error::UnsupportedFormat {
            record: record(),
            found: format,
            supported: CHECKPOINT_FORMAT,
            location: None,
        });
    }
    if super::segments::is_segmented(format) {
        return Err(Error::invalid_input(
            record(),
            "a format 5, 6 or 7 checkpoint holds its versions in segments apart: read it with \
             `read_checkpoint`, which fetches them",
        ));
    }
    let (found, state, versions) = if format < 3 {
        let c: In = serde_json::from_slice(bytes).map_err(undecodable)?;
        (c.seq, c.state, None)
    } else {
        let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Head>();
        let head = match stream.next() {
            Some(head) => head.map_err(undecodable)?,
            None => return Err(Error::corrupt(record(), "no header")),
        };
        let mut at = stream.byte_offset();
        let mut parts = Vec::with_capacity(head.chunks.len());
        for len in &head.chunks {
            let end = at
                .checked_add(*len)
                .filter(|end| *end <= bytes.len())
                .ok_or_else(|| Error::corrupt(record(), "a chunk runs past the end"))?;
            parts.push(&bytes[at..end]);
            at = end;
        }
        if at != bytes.len() {
            return Err(Error::corrupt(record(), "bytes after the last chunk"));
        }
        if !head.state.versions.is_empty() {
            return Err(Error::corrupt(record(), "versions in the header"));
        }
        let decoded = crate::domain::par::map(&parts, |p| crate::domain::chunk::decode(p));
        let mut state = head.state;
        let total = decoded.iter().map(|d| d.as_ref().map_or(0, Vec::len)).sum();
        state.versions.reserve(total);
        state.by_digest.reserve(total);
        for chunk in decoded {
            let chunk =
                chunk.map_err(|e| Error::corrupt(record(), format!("undecodable chunk: {e}")))?;
            for v in chunk {
                state.push_loaded(v)?;
            }
        }
        (head.seq, state, head.versions)
    };
    finish(model, seq, found, state, versions)
}

/// Decodes a checkpoint stored for position `seq` of `model`'s log as far as
/// it can without other reads: a whole state (formats 1 to 4), or the head of
/// a segmented one (format 5), whose segments the caller fetches and
/// [`assemble`](super::segments::SegmentedHead::assemble)s.
pub fn decode_checkpoint_head(model: &ModelName, seq: u64, bytes: &[u8]) -> Result<CheckpointHead> {
    let record = || format!("checkpoint {seq} of model '{model}'");
    let json = crate::domain::codec::unseal(record, bytes)?;
    if let Some(format) = peek_format(json).filter(|f| super::segments::is_segmented(*f)) {
        return super::segments::SegmentedHead::decode(model, seq, format, json)
            .map(CheckpointHead::Segmented);
    }
    decode_checkpoint(model, seq, bytes).map(CheckpointHead::Whole)
}

/// A checkpoint decoded as far as its own bytes go
/// ([`decode_checkpoint_head`]).
#[derive(Debug)]
pub enum CheckpointHead {
    /// A whole state (formats 1 to 4).
    Whole(ModelState),
    /// The head of a segmented checkpoint (format 5): its segments are to be read.
    Segmented(super::segments::SegmentedHead),
}

/// The checks every decoded checkpoint passes before it is trusted: it covers
/// position `seq` of `model`'s log (`found` is the position it says it
/// covers), holds the `versions` it says it holds, and breaks no rule a fold
/// keeps.
pub(super) fn finish(
    model: &ModelName,
    seq: u64,
    found: u64,
    state: ModelState,
    versions: Option<usize>,
) -> Result<ModelState> {
    let record = || format!("checkpoint {seq} of model '{model}'");
    if found != seq || state.seq != seq || state.name != *model {
        return Err(Error::corrupt(record(), "covers another position or model"));
    }
    if let Some(n) = versions
        && n != state.versions.len()
    {
        return Err(Error::corrupt(
            record(),
            format!("records {n} versions, holds {}", state.versions.len()),
        ));
    }
    state
        .check_folded()
        .map_err(|reason| Error::corrupt(record(), reason))?;
    Ok(state)
}

impl ModelState {
    /// Checks what every fold of a log guarantees, for a state that was not
    /// folded here (a checkpoint): a cache that breaks one is not trusted.
    /// Dense version numbers from 1 and at most one version in production are
    /// checked as the versions are loaded.
    fn check_folded(&self) -> std::result::Result<(), String> {
        // Event 1 creates the model; each version was registered by one more.
        if self.seq == 0 || self.versions.len() as u64 > self.seq - 1 {
            return Err(format!(
                "{} versions cannot have been registered in {} events",
                self.versions.len(),
                self.seq
            ));
        }
        if self.updated_at < self.created_at {
            return Err("updated before it was created".into());
        }
        let n = self.versions.len() as u64;
        let exists = |v: VersionNumber| v.get() <= n;
        if let Some((alias, _)) = self.aliases.iter().find(|(_, t)| !exists(t.version)) {
            return Err(format!("alias '{alias}' points at a missing version"));
        }
        if self.production_history.iter().any(|v| !exists(*v)) {
            return Err("the production history names a missing version".into());
        }
        let labelled = self.versions.labelled();
        if labelled != self.by_semver.len() {
            return Err("two versions share a semver".into());
        }
        Ok(())
    }
}

impl ModelState {
    /// Whether `event`, read from the log at this state's `seq`, is the last
    /// event this state folded: same time, and the version it is about exists
    /// (a registration's version is the newest). What is wrong, if not.
    pub(crate) fn confirmed_by(&self, event: &Event) -> std::result::Result<(), String> {
        if event.seq != self.seq || event.time != self.updated_at {
            return Err(format!(
                "event {} of the log is not the last one it folded",
                self.seq
            ));
        }
        let newest = self.versions.len() as u64;
        match (&event.kind, event.kind.version()) {
            (EventKind::VersionRegistered { .. }, Some(n)) if n.get() != newest => Err(format!(
                "event {} registered version {n}, the newest it holds is {newest}",
                self.seq
            )),
            (_, Some(n)) if n.get() > newest => Err(format!(
                "event {} is about version {n}, which it does not hold",
                self.seq
            )),
            _ => Ok(()),
        }
    }
}

/// The `N` of a record that starts `{"format":N,`, if it does.
pub(super) fn peek_format(json: &[u8]) -> Option<u32> {
    let rest = json.strip_prefix(br#"{"format":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}
