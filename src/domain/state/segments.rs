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
use super::versions::{Lazy, LazySegment, Versions, split_segment};
use crate::digest::Digest;
use crate::domain::name::ModelName;
use crate::domain::record::VersionRecord;
use crate::domain::reference::VersionNumber;
use crate::error::{Error, Result};

/// The checkpoint format of a segmented checkpoint's head, as this build
/// writes it: format 6, whose segments start with an index line (each
/// version's artifact digest, semver, and which one is in production), so a
/// state is read without decoding its records; they are decoded when first
/// asked for. Format 5 heads (segments without an index, decoded whole on
/// read) still load.
pub const SEGMENTED_FORMAT: u32 = 6;

/// The first segmented format, whose segments have no index.
pub(super) const UNINDEXED_FORMAT: u32 = 5;

/// Whether checkpoint format `format` is a segmented one.
pub(super) fn is_segmented(format: u32) -> bool {
    format == UNINDEXED_FORMAT || format == SEGMENTED_FORMAT
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
    state: StateRef<'a>,
}

#[derive(Deserialize)]
struct HeadIn {
    seq: u64,
    versions: usize,
    segments: Vec<Segment>,
    state: ModelState,
}

/// Encodes the head of a format 5 checkpoint of `state`, whose versions are in
/// `segments` (in order, covering `1..=versions` with no gap), sealed with its
/// checksum:
///
/// ```text
/// {"format":5,"seq":N,"versions":V,"segments":[{"first":1,"count":1024,"digest":"blake3:…","len":…},…],"state":{…,"versions":[],…}}
/// ```
pub fn encode_segmented_head(state: &ModelState, segments: &[Segment]) -> Vec<u8> {
    let head = HeadRef {
        format: SEGMENTED_FORMAT,
        seq: state.seq,
        versions: state.versions.len(),
        segments,
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
            state: head.state,
        })
    }

    /// The position of the log it covers.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its format: 6 ([`SEGMENTED_FORMAT`]), or 5 (segments without an index).
    pub fn format(&self) -> u32 {
        self.format
    }

    /// Its segments, in order of version numbers.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The state, from this head and the bytes of its segments (in the order of
    /// [`segments`](Self::segments)): each segment's bytes are checked against
    /// its digest on up to one thread per core. Format 6: each segment's index
    /// is decoded and its records are left in it, to be decoded when first
    /// asked for; format 5: every segment is decoded. A segment that is
    /// missing, torn or damaged is [`Error::Corrupt`] naming it: the checkpoint
    /// is not trusted.
    pub fn assemble(self, parts: &[Bytes]) -> Result<ModelState> {
        let parts: Vec<Option<Bytes>> = parts.iter().cloned().map(Some).collect();
        self.assemble_with(&parts, &HeldSegments::default())
    }

    /// Whether segment `i` of [`segments`](Self::segments) need not be read:
    /// `held` has it (same entry: digest, range and length), already read and
    /// checked. Only a format 6 head takes held segments.
    pub(crate) fn holds(&self, held: &HeldSegments, i: usize) -> bool {
        self.format == SEGMENTED_FORMAT
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
        if parts.len() != self.segments.len() {
            return Err(Error::corrupt(
                record(),
                format!(
                    "{} segments read, its head lists {}",
                    parts.len(),
                    self.segments.len()
                ),
            ));
        }
        if self.format == SEGMENTED_FORMAT {
            return self.assemble_lazy(parts, held);
        }
        let parts: Vec<Bytes> = parts
            .iter()
            .zip(&self.segments)
            .map(|(p, s)| {
                p.clone().ok_or_else(|| {
                    Error::corrupt(record(), format!("its segment {} was not read", s.name()))
                })
            })
            .collect::<Result<_>>()?;
        self.assemble_whole(&parts)
    }

    fn assemble_lazy(self, parts: &[Option<Bytes>], held: &HeldSegments) -> Result<ModelState> {
        let model = self.state.name.clone();
        let seq = self.seq;
        let record = || format!("checkpoint {seq} of model '{model}'");
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
            // In order, so the last version indexed for a digest is the newest.
            for (i, d) in digests.into_iter().enumerate() {
                state.by_digest.insert(d, number(i as u32)?);
            }
            for (i, v) in index.semvers() {
                state.by_semver.insert(v.clone(), number(*i)?);
            }
            if let Some(i) = index.production() {
                if state.production.is_some() {
                    return Err(Error::corrupt(record(), "two versions in production"));
                }
                state.production = Some(number(i)?);
            }
            lazy.push(read);
        }
        state.versions = Versions::lazy(Lazy::new(lazy));
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
