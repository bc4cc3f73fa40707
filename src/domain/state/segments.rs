//! Format 5 checkpoints: the versions in immutable *segments* of a fixed range
//! of version numbers, each named by the digest of its bytes and stored once,
//! plus a small sealed *head* with the rest of the state and the list of
//! segments it is made of.
//!
//! A checkpoint then costs what changed since the last one: the segments whose
//! records changed (the newest, growing one; one whose version was promoted,
//! tagged, …) and the head. The codec is pure: the registry fetches and stores
//! the segments ([`MetadataStore`](crate::store::MetadataStore)'s checkpoint
//! parts).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use bytes::Bytes;

use super::ModelState;
use super::checkpoint::{StateRef, finish};
use super::versions::{Lazy, LazySegment, Versions, split_patch, split_segment};
use crate::digest::Digest;
use crate::domain::name::ModelName;
use crate::domain::record::VersionRecord;
use crate::domain::reference::VersionNumber;
use crate::error::{Error, Result};

/// The checkpoint format of a segmented checkpoint's head, as this build
/// writes it: format 7, format 6 with *patches*: parts holding the records
/// that changed since their segment was written (a patch's record wins over
/// its segment's copy, a later patch's over an earlier one's), so a change to
/// an old version costs a record in a patch, not its whole segment. Format 6
/// segments start with an index line (each version's artifact digest, semver,
/// and which one is in production), so a state is read without decoding its
/// records; they are decoded when first asked for. Format 6 heads (no
/// patches) and format 5 heads (segments without an index, decoded whole on
/// read) still load.
pub const SEGMENTED_FORMAT: u32 = 7;

/// The segmented format whose segments have an index but no patches.
pub(super) const INDEXED_FORMAT: u32 = 6;

/// The first segmented format, whose segments have no index.
pub(super) const UNINDEXED_FORMAT: u32 = 5;

/// Whether checkpoint format `format` is a segmented one.
pub(super) fn is_segmented(format: u32) -> bool {
    (UNINDEXED_FORMAT..=SEGMENTED_FORMAT).contains(&format)
}

/// Versions per segment unless the registry is told otherwise
/// ([`RegistryBuilder::checkpoint_segment`](crate::RegistryBuilder::checkpoint_segment)):
/// about 370 KiB of records at 100,000 versions, 98 segments, so a head lists
/// them in a few KiB and a changed record rewrites 1% of the state.
pub const SEGMENT_VERSIONS: usize = 1024;

/// One segment of a format 5 checkpoint, as its head lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The number of its first version.
    pub first: u64,
    /// How many versions it holds (consecutive from `first`).
    pub count: u64,
    /// The BLAKE3 digest of its bytes, which name it and are checked on read.
    pub digest: Digest,
    /// Its length in bytes.
    pub len: u64,
}

impl Segment {
    /// The name it is stored under beside the log's checkpoints:
    /// `<first, 20 digits>-<digest hex>`. Equal bytes get the same name.
    pub fn name(&self) -> String {
        format!("{:020}-{}", self.first, self.digest.to_hex())
    }
}

/// One patch of a format 7 checkpoint, as its head lists it: records of any
/// versions that changed since their segment was written.
///
/// Level 2 is rewritten rarely (it absorbs level 1 when level 1 has cost as
/// many record writes as rewriting it would); level 1 is rewritten at every
/// checkpoint and holds what changed since level 2 was written. A head lists
/// its patches in order of precedence: a record in a later one wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// 2 (rewritten when level 1 is folded into it) or 1 (rewritten at every
    /// checkpoint).
    pub level: u8,
    /// How many records it holds.
    pub count: u64,
    /// The BLAKE3 digest of its bytes, which name it and are checked on read.
    pub digest: Digest,
    /// Its length in bytes.
    pub len: u64,
    /// Level 1: the records written to level 1 patches since the level 2
    /// patch was written, this one's included (what decides when to fold).
    #[serde(default)]
    pub written: u64,
}

impl Patch {
    /// The name it is stored under beside the log's checkpoints: a segment's
    /// name with first version 0, `00000000000000000000-<digest hex>`.
    pub fn name(&self) -> String {
        format!("{:020}-{}", 0, self.digest.to_hex())
    }

    /// As a [`Segment`] of first version 0 (for naming and messages).
    pub(super) fn as_segment(&self) -> Segment {
        Segment {
            first: 0,
            count: self.count,
            digest: self.digest,
            len: self.len,
        }
    }
}

/// Encodes `records` (of any versions, in increasing order of number) as a
/// level `level` patch: the patch as the head lists it, and its bytes (the
/// head's digest checks them): an index line — a segment's index plus the
/// version numbers — then the records as a chunk:
///
/// ```text
/// {"numbers":[7,1031,…],"count":N,"digests":"…","semvers":[[i,"1.2.0"],…],"production":i}
/// {chunk}
/// ```
pub fn encode_patch(level: u8, written: u64, records: &[Arc<VersionRecord>]) -> (Patch, Vec<u8>) {
    let bytes = super::versions::join_patch(records);
    let patch = Patch {
        level,
        count: records.len() as u64,
        digest: Digest::of(&bytes),
        len: bytes.len() as u64,
        written,
    };
    (patch, bytes)
}

/// Encodes `records` (versions `first..first + records.len()`) as one segment:
/// the segment as the head lists it, and its bytes (unsealed, the head's
/// digest checks them): an index line, then the records as a chunk (see
/// `domain/chunk.rs`):
///
/// ```text
/// {"count":N,"digests":"<64 hex digits per version>","semvers":[[i,"1.2.0"],…],"production":i}
/// {chunk}
/// ```
pub fn encode_segment(first: u64, records: &[Arc<VersionRecord>]) -> (Segment, Vec<u8>) {
    let bytes = super::versions::join_segment(records);
    let segment = Segment {
        first,
        count: records.len() as u64,
        digest: Digest::of(&bytes),
        len: bytes.len() as u64,
    };
    (segment, bytes)
}

#[derive(Serialize)]
struct HeadRef<'a> {
    format: u32,
    seq: u64,
    versions: usize,
    segments: &'a [Segment],
    patches: &'a [Patch],
    state: StateRef<'a>,
}

#[derive(Deserialize)]
struct HeadIn {
    seq: u64,
    versions: usize,
    segments: Vec<Segment>,
    #[serde(default)]
    patches: Vec<Patch>,
    state: ModelState,
}

/// Encodes the head of a segmented checkpoint of `state` without patches
/// ([`encode_patched_head`] with none).
pub fn encode_segmented_head(state: &ModelState, segments: &[Segment]) -> Vec<u8> {
    encode_patched_head(state, segments, &[])
}

/// Encodes the head of a format 7 checkpoint of `state`, whose versions are in
/// `segments` (in order, covering `1..=versions` with no gap) as changed by
/// `patches` (in order of precedence), sealed with its checksum:
///
/// ```text
/// {"format":7,"seq":N,"versions":V,"segments":[{"first":1,"count":1024,"digest":"blake3:…","len":…},…],
///  "patches":[{"level":2,"count":…,"digest":"blake3:…","len":…,"written":0},…],"state":{…,"versions":[],…}}
/// ```
pub fn encode_patched_head(state: &ModelState, segments: &[Segment], patches: &[Patch]) -> Vec<u8> {
    let head = HeadRef {
        format: SEGMENTED_FORMAT,
        seq: state.seq,
        versions: state.versions.len(),
        segments,
        patches,
        state: state.wire(&[]),
    };
    // Invariant: plain data serialized into memory, which cannot fail.
    crate::domain::codec::seal(
        serde_json::to_vec(&head).expect("a checkpoint head always serializes"),
    )
}

/// The segments a state holds, read and checked when it was read (see
/// [`ModelState::held_segments`]): what assembling another checkpoint of the
/// same model need not read again.
#[derive(Default)]
pub(crate) struct HeldSegments(pub(super) HashMap<Digest, Arc<LazySegment>>);

impl HeldSegments {
    /// How many segments it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The head of a format 5 checkpoint, decoded and checked: the state without
/// its versions, and the segments that hold them.
#[derive(Debug)]
pub struct SegmentedHead {
    format: u32,
    seq: u64,
    versions: usize,
    segments: Vec<Segment>,
    patches: Vec<Patch>,
    state: ModelState,
}

impl SegmentedHead {
    /// Decodes the head of a format 5 checkpoint stored for position `seq` of
    /// `model`'s log (its seal is checked by the caller's `unseal`).
    pub(super) fn decode(
        model: &ModelName,
        seq: u64,
        format: u32,
        json: &[u8],
    ) -> Result<SegmentedHead> {
        let record = || format!("checkpoint {seq} of model '{model}'");
        let head: HeadIn = serde_json::from_slice(json)
            .map_err(|e| Error::corrupt(record(), format!("undecodable: {e}")))?;
        if !head.state.versions.is_empty() {
            return Err(Error::corrupt(record(), "versions in the header"));
        }
        if head.seq != seq || head.state.seq != seq || head.state.name != *model {
            return Err(Error::corrupt(record(), "covers another position or model"));
        }
        // The segments tile 1..=versions in order.
        let mut next = 1u64;
        for s in &head.segments {
            if s.first != next || s.count == 0 {
                return Err(Error::corrupt(
                    record(),
                    format!("segment {} does not follow the one before it", s.name()),
                ));
            }
            next = s.first.saturating_add(s.count);
        }
        if format < SEGMENTED_FORMAT && !head.patches.is_empty() {
            return Err(Error::corrupt(record(), "patches in a format 6 or 5 head"));
        }
        if next - 1 != head.versions as u64 {
            return Err(Error::corrupt(
                record(),
                format!(
                    "records {} versions, its segments hold {}",
                    head.versions,
                    next - 1
                ),
            ));
        }
        Ok(SegmentedHead {
            format,
            seq: head.seq,
            versions: head.versions,
            segments: head.segments,
            patches: head.patches,
            state: head.state,
        })
    }

    /// The position of the log it covers.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its format: 7 ([`SEGMENTED_FORMAT`]), 6 (no patches) or 5 (segments
    /// without an index).
    pub fn format(&self) -> u32 {
        self.format
    }

    /// Its segments, in order of version numbers.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Its patches, in order of precedence (a record in a later one wins).
    pub fn patches(&self) -> &[Patch] {
        &self.patches
    }

    /// The names of the parts it is made of, in the order
    /// [`assemble`](Self::assemble) takes their bytes: its segments, then its
    /// patches.
    pub fn part_names(&self) -> Vec<String> {
        let segments = self.segments.iter().map(Segment::name);
        segments
            .chain(self.patches.iter().map(Patch::name))
            .collect()
    }

    /// The state, from this head and the bytes of its parts (in the order of
    /// [`part_names`](Self::part_names)): each part's bytes are checked against
    /// its digest on up to one thread per core. Formats 6 and 7: each part's
    /// index is decoded and its records are left in it, to be decoded when
    /// first asked for; format 5: every segment is decoded. A part that is
    /// missing, torn or damaged, or whose index disagrees with the others, is
    /// [`Error::Corrupt`] naming it: the checkpoint is not trusted.
    pub fn assemble(self, parts: &[Bytes]) -> Result<ModelState> {
        let parts: Vec<Option<Bytes>> = parts.iter().cloned().map(Some).collect();
        self.assemble_with(&parts, &HeldSegments::default())
    }

    /// Whether segment `i` of [`segments`](Self::segments) need not be read:
    /// `held` has it (same entry: digest, range and length), already read and
    /// checked. Only formats 6 and 7 take held segments; patches are always
    /// read.
    pub(crate) fn holds(&self, held: &HeldSegments, i: usize) -> bool {
        self.format >= INDEXED_FORMAT
            && self
                .segments
                .get(i)
                .is_some_and(|s| held.0.get(&s.digest).is_some_and(|h| h.segment() == s))
    }

    /// [`assemble`](Self::assemble), where `parts[i]` is `None` for a segment
    /// `held` has ([`holds`](Self::holds)): that one is taken as it is held
    /// (its bytes were checked against the same digest when it was read, and
    /// its records, decoded or not, are shared) instead of being read again.
    pub(crate) fn assemble_with(
        self,
        parts: &[Option<Bytes>],
        held: &HeldSegments,
    ) -> Result<ModelState> {
        let record = || format!("checkpoint {} of model '{}'", self.seq, self.state.name);
        let listed = self.segments.len() + self.patches.len();
        if parts.len() != listed {
            return Err(Error::corrupt(
                record(),
                format!("{} parts read, its head lists {listed}", parts.len()),
            ));
        }
        let names = self.part_names();
        let unread =
            |i: usize| Error::corrupt(record(), format!("its part {} was not read", names[i]));
        if self.format >= INDEXED_FORMAT {
            // Patches are never held.
            if let Some(i) = (self.segments.len()..listed).find(|i| parts[*i].is_none()) {
                return Err(unread(i));
            }
            return self.assemble_lazy(parts, held);
        }
        let parts: Vec<Bytes> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| p.clone().ok_or_else(|| unread(i)))
            .collect::<Result<_>>()?;
        self.assemble_whole(&parts)
    }

    fn assemble_lazy(self, parts: &[Option<Bytes>], held: &HeldSegments) -> Result<ModelState> {
        let model = self.state.name.clone();
        let seq = self.seq;
        let record = || format!("checkpoint {seq} of model '{model}'");
        let (parts, patch_parts) = parts.split_at(self.segments.len());
        // Checked above: every patch was read.
        let patch_parts: Vec<Bytes> = patch_parts.iter().flatten().cloned().collect();
        let jobs: Vec<(&Segment, &Option<Bytes>)> = self.segments.iter().zip(parts).collect();
        let split = crate::domain::par::map(&jobs, |(s, bytes)| {
            let segment = match bytes {
                Some(bytes) => {
                    if bytes.len() as u64 != s.len || Digest::of(bytes) != s.digest {
                        return Err(format!(
                            "segment {} is torn or damaged: its bytes do not hash to its name",
                            s.name()
                        ));
                    }
                    let (index, records) =
                        split_segment(bytes).map_err(|e| format!("segment {}: {e}", s.name()))?;
                    Arc::new(LazySegment::new(
                        model.clone(),
                        (*s).clone(),
                        None,
                        index,
                        records,
                    ))
                }
                None => match held.0.get(&s.digest).filter(|h| h.segment() == *s) {
                    Some(h) => Arc::clone(h),
                    None => return Err(format!("its segment {} was not read", s.name())),
                },
            };
            let index = segment.index();
            if index.count() as u64 != s.count {
                return Err(format!(
                    "segment {} indexes {} versions, its head says {}",
                    s.name(),
                    index.count(),
                    s.count
                ));
            }
            let digests = index
                .digests()
                .map_err(|e| format!("segment {}: {e}", s.name()))?;
            Ok((segment, digests))
        });
        let mut state = self.state;
        state.by_digest.reserve(self.versions);
        let mut lazy = Vec::with_capacity(self.segments.len());
        // Each version's artifact digest, to check the patches' against
        // (only when there are some).
        let mut artifacts = Vec::new();
        let mut in_production = Vec::new();
        for (segment, split) in self.segments.into_iter().zip(split) {
            let (read, digests) = split.map_err(|e| Error::corrupt(record(), e))?;
            let index = read.index();
            let number = |offset: u32| -> Result<VersionNumber> {
                VersionNumber::new(segment.first + u64::from(offset))
                    .ok()
                    .filter(|_| u64::from(offset) < segment.count)
                    .ok_or_else(|| {
                        Error::corrupt(
                            record(),
                            format!(
                                "segment {} indexes a version it does not hold",
                                segment.name()
                            ),
                        )
                    })
            };
            if !self.patches.is_empty() {
                artifacts.extend_from_slice(&digests);
            }
            // In order, so the last version indexed for a digest is the newest.
            for (i, d) in digests.into_iter().enumerate() {
                state.by_digest.insert(d, number(i as u32)?);
            }
            for (i, v) in index.semvers() {
                state.by_semver.insert(v.clone(), number(*i)?);
            }
            if let Some(i) = index.production() {
                in_production.push(number(i)?);
            }
            lazy.push(read);
        }
        // Patches: each checked against its digest, its index against the
        // segments' (a version's artifact and semver never change); whether a
        // version is in production is what the last part holding it says.
        let patch_jobs: Vec<(&Patch, &Bytes)> = self.patches.iter().zip(&patch_parts).collect();
        let split = crate::domain::par::map(&patch_jobs, |(p, bytes)| {
            let name = p.name();
            if bytes.len() as u64 != p.len || Digest::of(bytes) != p.digest {
                return Err(format!(
                    "patch {name} is torn or damaged: its bytes do not hash to its name"
                ));
            }
            let (numbers, index, records) =
                split_patch(bytes).map_err(|e| format!("patch {name}: {e}"))?;
            if numbers.len() as u64 != p.count || index.count() != numbers.len() {
                return Err(format!(
                    "patch {name} indexes {} versions, its head says {}",
                    numbers.len(),
                    p.count
                ));
            }
            let digests = index.digests().map_err(|e| format!("patch {name}: {e}"))?;
            Ok((numbers, index, records, digests))
        });
        let labelled: std::collections::HashSet<VersionNumber> = if self.patches.is_empty() {
            Default::default()
        } else {
            state.by_semver.values().copied().collect()
        };
        let mut top: std::collections::HashMap<u64, bool> = Default::default();
        let mut patches = Vec::with_capacity(self.patches.len());
        for (patch, split) in self.patches.into_iter().zip(split) {
            let (numbers, index, records, digests) =
                split.map_err(|e| Error::corrupt(record(), e))?;
            let name = patch.name();
            let bad = |what: String| Error::corrupt(record(), format!("patch {name} {what}"));
            if patch.level != 1 && patch.level != 2 {
                return Err(bad(format!("has level {}", patch.level)));
            }
            if numbers.first() == Some(&0)
                || numbers.last().is_some_and(|n| *n > self.versions as u64)
                || !numbers.windows(2).all(|w| w[0] < w[1])
            {
                return Err(bad(
                    "lists versions out of order or that the checkpoint does not hold".into(),
                ));
            }
            for (n, d) in numbers.iter().zip(&digests) {
                if artifacts.get((n - 1) as usize) != Some(d) {
                    return Err(bad(format!(
                        "gives version {n} another artifact than its segment"
                    )));
                }
            }
            let mut semvers = 0;
            for (pos, v) in index.semvers() {
                let n = numbers.get(*pos as usize).copied().unwrap_or(0);
                if state.by_semver.get(v).map(|x| x.get()) != Some(n) {
                    return Err(bad(format!("gives version {n} another semver")));
                }
                semvers += 1;
            }
            let segment_semvers = numbers
                .iter()
                .filter(|n| VersionNumber::new(**n).is_ok_and(|v| labelled.contains(&v)))
                .count();
            if semvers != segment_semvers {
                return Err(bad("drops a version's semver".into()));
            }
            for (pos, n) in numbers.iter().enumerate() {
                top.insert(*n, index.production() == Some(pos as u32));
            }
            let segment = patch.as_segment();
            patches.push(
                LazySegment::new(model.clone(), segment, Some(numbers), index, records)
                    .with_patch(patch),
            );
        }
        let mut production = in_production
            .into_iter()
            .filter(|v| !top.contains_key(&v.get()))
            .chain(
                top.iter()
                    .filter(|(_, p)| **p)
                    .filter_map(|(n, _)| VersionNumber::new(*n).ok()),
            );
        state.production = production.next();
        if production.next().is_some() {
            return Err(Error::corrupt(record(), "two versions in production"));
        }
        state.versions = Versions::lazy(Lazy::new(lazy, patches));
        finish(&model, seq, seq, state, Some(self.versions))
    }

    fn assemble_whole(self, parts: &[Bytes]) -> Result<ModelState> {
        let model = self.state.name.clone();
        let seq = self.seq;
        let record = || format!("checkpoint {seq} of model '{model}'");
        let jobs: Vec<(&Segment, &[u8])> = self
            .segments
            .iter()
            .zip(parts)
            .map(|(s, b)| (s, b.as_ref()))
            .collect();
        let decoded = crate::domain::par::map(&jobs, |(s, bytes)| {
            if bytes.len() as u64 != s.len || Digest::of(bytes) != s.digest {
                return Err(format!(
                    "segment {} is torn or damaged: its bytes do not hash to its name",
                    s.name()
                ));
            }
            let records = crate::domain::chunk::decode(bytes)
                .map_err(|e| format!("segment {} is undecodable: {e}", s.name()))?;
            if records.len() as u64 != s.count {
                return Err(format!(
                    "segment {} holds {} versions, its head says {}",
                    s.name(),
                    records.len(),
                    s.count
                ));
            }
            Ok(records)
        });
        let mut state = self.state;
        state.versions.reserve(self.versions);
        state.by_digest.reserve(self.versions);
        for records in decoded {
            let records = records.map_err(|e| Error::corrupt(record(), e))?;
            for v in records {
                state.push_loaded(v)?;
            }
        }
        finish(&model, seq, seq, state, Some(self.versions))
    }
}

/// What the versions of `state` look like as segments of `per` versions:
/// the range of version indexes each covers, in order.
pub fn segment_ranges(versions: usize, per: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let per = per.max(1);
    (0..versions.div_ceil(per)).map(move |i| i * per..((i + 1) * per).min(versions))
}
