//! The version records of a [`ModelState`](super::ModelState): in memory, or —
//! for a state read from a format 6 checkpoint — still in the segments they were
//! read from, each decoded the first time one of its records is asked for.
//!
//! A cold open of a large model then costs reading and hashing its segments and
//! decoding their small *indexes* (each version's artifact digest, semver and
//! whether it is in production: what the state's lookup maps need), not
//! decoding 100,000 records. A record that changes after the open is copied
//! out of its segment (into `changed`); new versions go to `tail`. Asking for
//! every record as one slice ([`Versions::as_slice`]) decodes every segment
//! once and keeps the list; the first change after that folds everything into
//! plain memory again.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::segments::{Patch, Segment};
use crate::digest::Digest;
use crate::domain::lifecycle::Stage;
use crate::domain::name::ModelName;
use crate::domain::record::VersionRecord;

/// A state's version records; version `n` is at index `n - 1`.
#[derive(Default)]
pub(super) struct Versions {
    /// Versions `1..=lazy.len`, as read from a checkpoint's segments.
    lazy: Option<Arc<Lazy>>,
    /// Records of `lazy`'s range that changed since they were read, by index.
    changed: BTreeMap<usize, Arc<VersionRecord>>,
    /// The versions after `lazy`'s (all of them without `lazy`).
    tail: Vec<Arc<VersionRecord>>,
    /// Every record, once asked for as one slice (only with `lazy`).
    flat: OnceLock<Vec<Arc<VersionRecord>>>,
    /// The segments the list was read from, kept once it settled into plain
    /// memory: a past state read from a checkpoint shares the ones it holds
    /// too (same digest), decoded, instead of decoding them again.
    origin: Option<Arc<Lazy>>,
}

impl Clone for Versions {
    fn clone(&self) -> Self {
        Versions {
            lazy: self.lazy.clone(),
            changed: self.changed.clone(),
            tail: self.tail.clone(),
            flat: self.flat.clone(),
            origin: self.origin.clone(),
        }
    }
}

impl fmt::Debug for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Versions")
            .field("len", &self.len())
            .field(
                "lazy_segments",
                &self.lazy.as_ref().map_or(0, |l| l.segments.len()),
            )
            .field("changed", &self.changed.len())
            .finish()
    }
}

impl PartialEq for Versions {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && (0..self.len()).all(|i| match (self.get(i), other.get(i)) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => false,
            })
    }
}

/// The segments a lazily read state's first versions are in, and the patches
/// (format 7) whose records win over their segments'.
#[derive(Clone)]
pub(crate) struct Lazy {
    len: usize,
    segments: Vec<Arc<LazySegment>>,
    patches: Vec<Arc<LazySegment>>,
    /// Version index → (patch, offset in it) of the record that wins: the
    /// last patch holding it.
    patched: BTreeMap<usize, (usize, usize)>,
}

/// One segment (or patch) of a format 6 or 7 checkpoint, read and checked
/// against its digest, its index decoded, its records not yet.
pub(crate) struct LazySegment {
    model: ModelName,
    segment: Segment,
    /// A patch's version numbers (a segment's run from its first).
    numbers: Option<Vec<u64>>,
    /// A patch, as its head lists it.
    patch: Option<Patch>,
    index: SegmentIndex,
    /// The records' bytes (a `domain/chunk.rs` chunk).
    records: Bytes,
    decoded: OnceLock<Result<Vec<Arc<VersionRecord>>, String>>,
}

/// What a segment says about its versions before its records are decoded:
/// enough to build a state's lookup maps.
///
/// ```text
/// {"count":N,"digests":"<64 hex digits per version>","semvers":[[i,"1.2.0"],…],"production":i}
/// ```
/// (`i` counts from the segment's first version; the last two are left out
/// when empty.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentIndex {
    count: usize,
    digests: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    semvers: Vec<(u32, semver::Version)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    production: Option<u32>,
}

impl SegmentIndex {
    /// The index of `records`.
    pub(super) fn of(records: &[Arc<VersionRecord>]) -> SegmentIndex {
        let mut digests = String::with_capacity(records.len() * 64);
        let mut semvers = Vec::new();
        let mut production = None;
        for (i, v) in records.iter().enumerate() {
            digests.push_str(&v.artifact.to_hex());
            if let Some(s) = &v.semver {
                semvers.push((i as u32, s.clone()));
            }
            if v.stage == Stage::Production {
                production = Some(i as u32);
            }
        }
        SegmentIndex {
            count: records.len(),
            digests,
            semvers,
            production,
        }
    }

    /// How many versions it covers.
    pub(super) fn count(&self) -> usize {
        self.count
    }

    /// Each version's artifact digest, in order; an error says what is wrong.
    pub(super) fn digests(&self) -> Result<Vec<Digest>, String> {
        if self.digests.len() != self.count * 64 || !self.digests.is_ascii() {
            return Err(format!(
                "its index lists {} bytes of digests for {} versions",
                self.digests.len(),
                self.count
            ));
        }
        (0..self.count)
            .map(|i| {
                Digest::from_hex(&self.digests[i * 64..(i + 1) * 64]).map_err(|e| e.to_string())
            })
            .collect()
    }

    /// The versions labelled with a semver (offset in the segment, semver).
    pub(super) fn semvers(&self) -> &[(u32, semver::Version)] {
        &self.semvers
    }

    /// The offset of the version in production, if one of these is.
    pub(super) fn production(&self) -> Option<u32> {
        self.production
    }

    /// Whether `records` (the segment's, decoded) are what the index says.
    fn describes(&self, records: &[Arc<VersionRecord>]) -> bool {
        *self == SegmentIndex::of(records)
    }
}

/// Splits a format 6 segment's bytes into its index and its records.
pub(super) fn split_segment(bytes: &Bytes) -> Result<(SegmentIndex, Bytes), String> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("it has no index line")?;
    let index: SegmentIndex = serde_json::from_slice(&bytes[..newline])
        .map_err(|e| format!("its index is undecodable: {e}"))?;
    Ok((index, bytes.slice(newline + 1..)))
}

/// What a patch's index line holds: its version numbers, then a segment's
/// index of its records.
#[derive(Serialize, Deserialize)]
struct PatchIndex {
    numbers: Vec<u64>,
    #[serde(flatten)]
    index: SegmentIndex,
}

/// Splits a format 7 patch's bytes into its version numbers, its index and
/// its records.
pub(super) fn split_patch(bytes: &Bytes) -> Result<(Vec<u64>, SegmentIndex, Bytes), String> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("it has no index line")?;
    let index: PatchIndex = serde_json::from_slice(&bytes[..newline])
        .map_err(|e| format!("its index is undecodable: {e}"))?;
    Ok((index.numbers, index.index, bytes.slice(newline + 1..)))
}

/// A format 7 patch's bytes: its index (with the version numbers) on one
/// line, then its records (in order of number).
pub(super) fn join_patch(records: &[Arc<VersionRecord>]) -> Vec<u8> {
    let index = PatchIndex {
        numbers: records.iter().map(|v| v.number.get()).collect(),
        index: SegmentIndex::of(records),
    };
    // Invariant: plain data serialized into memory, which cannot fail.
    let mut out = serde_json::to_vec(&index).expect("a patch index always serializes");
    out.push(b'\n');
    out.extend_from_slice(&crate::domain::chunk::encode(records));
    out
}

/// A format 6 segment's bytes: its index on one line, then its records.
pub(super) fn join_segment(records: &[Arc<VersionRecord>]) -> Vec<u8> {
    // Invariant: plain data serialized into memory, which cannot fail.
    let mut out =
        serde_json::to_vec(&SegmentIndex::of(records)).expect("a segment index always serializes");
    // The chunk is compact JSON: no raw newline in it, so the first one ends
    // the index.
    out.push(b'\n');
    out.extend_from_slice(&crate::domain::chunk::encode(records));
    out
}

impl LazySegment {
    /// A segment read and checked against `segment`'s digest, split.
    /// `numbers` are a patch's version numbers (`None` for a segment).
    pub(super) fn new(
        model: ModelName,
        segment: Segment,
        numbers: Option<Vec<u64>>,
        index: SegmentIndex,
        records: Bytes,
    ) -> LazySegment {
        LazySegment {
            model,
            segment,
            numbers,
            patch: None,
            index,
            records,
            decoded: OnceLock::new(),
        }
    }

    /// The head's entry it was read for.
    pub(super) fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Its index.
    pub(super) fn index(&self) -> &SegmentIndex {
        &self.index
    }

    /// Its records, decoded on the first call; an error says why they cannot
    /// be (which the digest check makes a bug of the writer, or a forgery).
    fn records(&self) -> &Result<Vec<Arc<VersionRecord>>, String> {
        self.decoded.get_or_init(|| {
            let mut records = crate::domain::chunk::decode(&self.records)
                .map_err(|e| format!("segment {} is undecodable: {e}", self.segment.name()))?;
            if records.len() != self.index.count() {
                return Err(format!(
                    "segment {}'s records disagree with its index",
                    self.segment.name()
                ));
            }
            for (i, v) in records.iter_mut().enumerate() {
                let expected = match &self.numbers {
                    Some(numbers) => numbers.get(i).copied().unwrap_or(0),
                    None => self.segment.first + i as u64,
                };
                if v.number.get() != expected {
                    return Err(format!(
                        "segment {} holds version {} where {expected} belongs",
                        self.segment.name(),
                        v.number,
                    ));
                }
                // Freshly decoded, so not shared: this sets the field in place.
                Arc::make_mut(v).model = self.model.clone();
            }
            if !self.index.describes(&records) {
                return Err(format!(
                    "segment {}'s records disagree with its index",
                    self.segment.name()
                ));
            }
            Ok(records)
        })
    }

    fn get(&self, offset: usize) -> Option<&Arc<VersionRecord>> {
        self.records().as_ref().ok()?.get(offset)
    }

    /// The same, as the patch `patch`.
    pub(super) fn with_patch(mut self, patch: Patch) -> LazySegment {
        self.patch = Some(patch);
        self
    }
}

impl Lazy {
    /// Versions `1..` in `segments` (in order, tiling from 1) as changed by
    /// `patches` (in order of precedence; their numbers checked to be in
    /// range).
    pub(super) fn new(segments: Vec<Arc<LazySegment>>, patches: Vec<LazySegment>) -> Lazy {
        let len = segments.iter().map(|s| s.segment.count as usize).sum();
        let mut patched = BTreeMap::new();
        for (k, p) in patches.iter().enumerate() {
            for (pos, n) in p.numbers.iter().flatten().enumerate() {
                patched.insert((*n as usize).saturating_sub(1), (k, pos));
            }
        }
        Lazy {
            len,
            segments,
            patches: patches.into_iter().map(Arc::new).collect(),
            patched,
        }
    }

    /// The parts it holds (segments, then patches).
    fn parts(&self) -> impl Iterator<Item = &Arc<LazySegment>> {
        self.segments.iter().chain(self.patches.iter())
    }

    /// Its segments.
    pub(super) fn segments(&self) -> impl Iterator<Item = (&Segment, &SegmentIndex)> {
        self.segments.iter().map(|s| (&s.segment, &s.index))
    }

    fn segment_of(&self, i: usize) -> Option<&LazySegment> {
        // Segments are equal-sized but the last; search to be exact anyway.
        let at = self
            .segments
            .partition_point(|s| (s.segment.first - 1) as usize <= i);
        let s = self.segments.get(at.checked_sub(1)?)?;
        ((i - (s.segment.first - 1) as usize) < s.segment.count as usize).then_some(&**s)
    }

    fn get(&self, i: usize) -> Option<&Arc<VersionRecord>> {
        if let Some((k, pos)) = self.patched.get(&i) {
            return self.patches.get(*k)?.get(*pos);
        }
        let s = self.segment_of(i)?;
        s.get(i - (s.segment.first - 1) as usize)
    }

    /// The level 2 patch, if it has one: the patch it was read with that
    /// later checkpoints keep naming until level 1 is folded into it.
    fn level_2(&self) -> Option<(usize, &Arc<LazySegment>)> {
        self.patches
            .iter()
            .enumerate()
            .find(|(_, p)| p.patch.as_ref().is_some_and(|p| p.level == 2))
    }
}

impl Versions {
    /// A lazily read list.
    pub(super) fn lazy(lazy: Lazy) -> Versions {
        Versions {
            lazy: Some(Arc::new(lazy)),
            ..Versions::default()
        }
    }

    fn lazy_len(&self) -> usize {
        self.lazy.as_ref().map_or(0, |l| l.len)
    }

    /// Whether there are none.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many versions there are.
    pub(super) fn len(&self) -> usize {
        self.lazy_len() + self.tail.len()
    }

    /// The record at index `i`, decoding its segment if need be. `None` past
    /// the end, or if its segment cannot be decoded.
    pub(super) fn get(&self, i: usize) -> Option<&Arc<VersionRecord>> {
        let Some(lazy) = &self.lazy else {
            return self.tail.get(i);
        };
        if i >= lazy.len {
            return self.tail.get(i - lazy.len);
        }
        if let Some(v) = self.changed.get(&i) {
            return Some(v);
        }
        if let Some(flat) = self.flat.get() {
            return flat.get(i);
        }
        lazy.get(i)
    }

    /// The newest record.
    pub(super) fn last(&self) -> Option<&Arc<VersionRecord>> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The records from the newest back, decoding segments as they are reached.
    pub(super) fn iter_rev(&self) -> impl Iterator<Item = &Arc<VersionRecord>> {
        (0..self.len()).rev().filter_map(|i| self.get(i))
    }

    /// Every record, in order. A lazily read list decodes every segment the
    /// first time and keeps the list; a segment that cannot be decoded ends
    /// it there.
    pub(super) fn as_slice(&self) -> &[Arc<VersionRecord>] {
        if self.lazy.is_none() {
            return &self.tail;
        }
        self.flat.get_or_init(|| {
            let mut all = Vec::with_capacity(self.len());
            for i in 0..self.len() {
                match self.get(i) {
                    Some(v) => all.push(Arc::clone(v)),
                    None => break,
                }
            }
            all
        })
    }

    /// Folds a lazily read list that was asked for whole into plain memory,
    /// before a change.
    fn settle(&mut self) {
        if self.lazy.is_some()
            && let Some(flat) = self.flat.take()
            && flat.len() == self.len()
        {
            self.tail = flat;
            self.origin = self.lazy.take();
            self.changed.clear();
        }
    }

    /// Appends the next version.
    pub(super) fn push(&mut self, v: Arc<VersionRecord>) {
        self.settle();
        self.tail.push(v);
    }

    /// Room for `n` more versions.
    pub(super) fn reserve(&mut self, n: usize) {
        self.tail.reserve_exact(n);
    }

    /// The record at index `i`, to change (copied first if anyone else holds
    /// it). `None` past the end, or if its segment cannot be decoded.
    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut VersionRecord> {
        self.settle();
        let lazy_len = self.lazy_len();
        if i >= lazy_len {
            return self.tail.get_mut(i - lazy_len).map(Arc::make_mut);
        }
        if !self.changed.contains_key(&i) {
            let v = Arc::clone(self.lazy.as_ref()?.get(i)?);
            self.changed.insert(i, v);
        }
        self.changed.get_mut(&i).map(Arc::make_mut)
    }

    /// How many versions carry a semver, counted without decoding records
    /// (semvers are set at registration and never change).
    pub(super) fn labelled(&self) -> usize {
        let lazy = self
            .lazy
            .as_ref()
            .map_or(0, |l| l.segments().map(|(_, ix)| ix.semvers().len()).sum());
        lazy + self.tail.iter().filter(|v| v.semver.is_some()).count()
    }

    /// The stored segment that versions `range` (by index) were read from,
    /// and the indexes of those that may differ from it now (in a patch
    /// read with it, or changed since; a superset, in order): a checkpoint
    /// can name the segment again, with those records in a patch, without
    /// decoding or encoding the others.
    pub(super) fn stored(&self, range: std::ops::Range<usize>) -> Option<(&Segment, Vec<usize>)> {
        if let Some(lazy) = &self.lazy {
            let s = lazy.segment_of(range.start)?;
            let first = (s.segment.first - 1) as usize;
            if first != range.start || s.segment.count as usize != range.len() {
                return None;
            }
            let mut differ: Vec<usize> =
                lazy.patched.range(range.clone()).map(|(i, _)| *i).collect();
            differ.extend(self.changed.range(range).map(|(i, _)| *i));
            differ.sort_unstable();
            differ.dedup();
            return Some((&s.segment, differ));
        }
        // Settled into plain memory: a record that differs from its segment
        // is another `Arc` than the one the segment decoded.
        let s = self.origin.as_ref()?.segment_of(range.start)?;
        let decoded = s.decoded.get()?.as_ref().ok()?;
        let mine = self.tail.get(range.clone())?;
        if (s.segment.first - 1) as usize != range.start || decoded.len() != mine.len() {
            return None;
        }
        let differ = (decoded.iter().zip(mine).enumerate())
            .filter(|(_, (a, b))| !Arc::ptr_eq(a, b))
            .map(|(k, _)| range.start + k)
            .collect();
        Some((&s.segment, differ))
    }

    /// The stored segment that versions `range` (by index) are exactly, if
    /// none of them differs from it.
    #[cfg(test)]
    pub(super) fn pristine(&self, range: std::ops::Range<usize>) -> Option<&Segment> {
        self.stored(range)
            .and_then(|(s, differ)| differ.is_empty().then_some(s))
    }

    /// The level 2 patch this list was read with (format 7), with the
    /// version indexes it holds.
    pub(super) fn stored_patch(&self) -> Option<(&super::segments::Patch, Vec<usize>)> {
        let lazy = self.lazy.as_ref().or(self.origin.as_ref())?;
        let (_, p) = lazy.level_2()?;
        let patch = p.patch.as_ref()?;
        let holds = p
            .numbers
            .iter()
            .flatten()
            .map(|n| (*n as usize).saturating_sub(1));
        Some((patch, holds.collect()))
    }

    /// Whether the record at index `i` is certainly the copy the level 2
    /// patch this list was read with holds (so that patch can be named
    /// again for it).
    pub(super) fn is_stored_patch_copy(&self, i: usize) -> bool {
        if let Some(lazy) = &self.lazy {
            return !self.changed.contains_key(&i)
                && lazy
                    .level_2()
                    .is_some_and(|(k, _)| lazy.patched.get(&i).is_some_and(|(top, _)| *top == k));
        }
        let Some((_, p)) = self.origin.as_ref().and_then(|o| o.level_2()) else {
            return false;
        };
        let (Some(numbers), Some(Ok(decoded))) = (&p.numbers, p.decoded.get()) else {
            return false;
        };
        let Ok(pos) = numbers.binary_search(&(i as u64 + 1)) else {
            return false;
        };
        match (decoded.get(pos), self.tail.get(i)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The segments this list was read from (still lazy, or kept as its
    /// origin once settled), each read and checked against its digest then,
    /// by digest. Not its patches: a patch's level is its head's, not in its
    /// bytes, and patches are small enough to read again.
    pub(super) fn held_segments(&self) -> HashMap<Digest, Arc<LazySegment>> {
        self.lazy
            .as_ref()
            .or(self.origin.as_ref())
            .map(|l| {
                l.segments
                    .iter()
                    .map(|s| (s.segment.digest, Arc::clone(s)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes each of this list's segments that `other` holds too (same
    /// digest) the one `other` holds, so they are decoded once for both.
    /// Returns how many it shares.
    pub(super) fn share_segments_with(&mut self, other: &Versions) -> usize {
        let theirs = other.lazy.as_ref().or(other.origin.as_ref());
        let (Some(mine), Some(theirs)) = (self.lazy.as_mut(), theirs) else {
            return 0;
        };
        let by_digest: HashMap<Digest, &Arc<LazySegment>> =
            theirs.parts().map(|s| (s.segment.digest, s)).collect();
        let mut shared = 0;
        let mine = Arc::make_mut(mine);
        for s in mine.segments.iter_mut().chain(mine.patches.iter_mut()) {
            // (A patch's level is the head's, not in its bytes: the same
            // bytes as another level are not the same part.)
            if let Some(t) = by_digest
                .get(&s.segment.digest)
                .filter(|t| t.patch == s.patch)
            {
                if !Arc::ptr_eq(s, t) {
                    *s = Arc::clone(t);
                }
                shared += 1;
            }
        }
        shared
    }

    /// Decodes every record not decoded yet; the first reason one cannot be.
    pub(super) fn decode_all(&self) -> Result<(), String> {
        let Some(lazy) = &self.lazy else {
            return Ok(());
        };
        let parts: Vec<&Arc<LazySegment>> = lazy.parts().collect();
        let results = crate::domain::par::map(&parts, |s| s.records().as_ref().err().cloned());
        match results.into_iter().flatten().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether some records are still in undecoded segments.
    pub(super) fn is_lazy(&self) -> bool {
        self.lazy
            .as_ref()
            .is_some_and(|l| l.parts().any(|s| s.decoded.get().is_none()))
    }

    /// Records of `self` not shared with `other`'s records of the same number
    /// but equal to them are made to point at `other`'s. Only records already
    /// in memory on both sides are compared (nothing is decoded for this).
    pub(super) fn share_records_with(&mut self, other: &Versions) -> usize {
        let mut shared = self.share_segments_with(other);
        let decoded = |v: &Versions, i: usize| -> Option<Arc<VersionRecord>> {
            match &v.lazy {
                Some(l) if i < l.len && !v.changed.contains_key(&i) => {
                    if let Some((k, pos)) = l.patched.get(&i) {
                        let records = l.patches.get(*k)?.decoded.get()?.as_ref().ok()?;
                        return records.get(*pos).cloned();
                    }
                    let s = l.segment_of(i)?;
                    let records = s.decoded.get()?.as_ref().ok()?;
                    records.get(i - (s.segment.first - 1) as usize).cloned()
                }
                _ => v.get(i).cloned(),
            }
        };
        // Only plain records (not in segments) are replaced one by one.
        let lazy_len = self.lazy_len();
        for (k, mine) in self.tail.iter_mut().enumerate() {
            let Some(theirs) = decoded(other, lazy_len + k) else {
                continue;
            };
            if Arc::ptr_eq(mine, &theirs) {
                shared += 1;
            } else if **mine == *theirs {
                *mine = theirs;
                shared += 1;
            }
        }
        shared
    }
}

impl From<Vec<Arc<VersionRecord>>> for Versions {
    fn from(tail: Vec<Arc<VersionRecord>>) -> Self {
        Versions {
            tail,
            ..Versions::default()
        }
    }
}
