//! Reading and writing checkpoints in segments (format 5): the registry's half
//! of `domain/state/segments.rs`, which it joins to the store's checkpoint
//! parts.
//!
//! Write order is the crash argument: every segment a head names is stored
//! (durable) before the head is, so a head that can be read never names a
//! segment that was not written. A segment is named by the digest of its bytes
//! and checked against it on read, so a torn, damaged or missing one makes the
//! checkpoint untrusted (the registry then folds from an older one, or from
//! event 1), never a wrong state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::domain::state::{
    CheckpointHead, HeldSegments, Patch, Segment, decode_checkpoint_head, encode_patch,
    encode_patched_head, encode_segment, segment_ranges,
};
use crate::domain::{ModelName, ModelState, VersionNumber, VersionRecord};
use crate::error::{Error, Result};
use crate::offload::offload;
use crate::store::{Checkpoint, MetadataStore};

/// How many parts are read or written at once.
const PART_CONCURRENCY: usize = 16;

/// When level 1 is folded into level 2, a segment is rewritten (and its
/// records leave the patches) if at least one in `REWRITE_SHARE` of its
/// records differ from it (docs/design.md, "Patches").
const REWRITE_SHARE: usize = 8;

/// How long after it last put or read a part the writer names it in a new
/// head without putting it again. Part collection (`parts_gc`) deletes a part
/// only once it was unnamed for the collection's grace period and not put
/// within it; a writer naming a part it remembers from longer ago than half
/// the grace period re-puts it first, so no collection deletes it before the
/// head that names it is put (docs/design.md, "Checkpoints", "Garbage.").
/// The writer cannot know the grace period of a collection yet to run: this
/// is half the hour the CLI's `gc --grace` defaults to, the least a
/// collection should use while writers run. The cost is a copy of the parts
/// a long-lived writer keeps naming (the whole state's) every half hour.
pub(crate) const REPUT_AFTER: Duration = Duration::from_secs(30 * 60);

/// The parts this process knows to be stored for a model, with the records
/// each segment was encoded from: a record that changed since is another `Arc`
/// (a change to a shared record copies it), so comparing pointers finds the
/// records that differ from their segment without encoding anything.
/// (Segments and the level 2 patch a state was read with the state itself
/// knows: `ModelState::stored_segment`, `ModelState::stored_patch`.)
/// A level 2 patch this process wrote, with the records it holds by index.
type StoredPatch = (Patch, BTreeMap<usize, Arc<VersionRecord>>);

/// Records a segment was encoded from.
type Held = Vec<Arc<VersionRecord>>;

/// Whether the level 2 patch holds the record at an index as it is now.
type IsCopy<'a> = Box<dyn Fn(usize) -> bool + 'a>;

/// Parts to put: name and bytes.
type Parts = Vec<(String, Bytes)>;

#[derive(Debug, Default)]
pub(crate) struct Written {
    segments: Vec<(Segment, Option<Vec<Arc<VersionRecord>>>)>,
    /// The level 2 patch the last head named, with its records; `None`:
    /// the one the state was read with, if any.
    level_2: Option<Option<StoredPatch>>,
    /// Records written to level 1 patches since level 2 was written.
    level_1_written: u64,
    /// When this process last put or read each part the last head named
    /// (read: the time just before the head was read).
    seen: HashMap<String, Instant>,
}

impl Written {
    /// Whether the segment for versions `first..` that the last head named is
    /// one this process wrote (so it knows the records it was encoded from).
    fn wrote(&self, first: u64) -> bool {
        self.segments
            .binary_search_by_key(&first, |(s, _)| s.first)
            .is_ok_and(|i| self.segments[i].1.is_some())
    }

    /// The stored segment for versions `first..` whose records are now
    /// `records`, the records it was encoded from, and the indexes (in the
    /// state) of those that differ from them, if this process wrote it.
    fn find(
        &self,
        first: u64,
        records: &[Arc<VersionRecord>],
    ) -> Option<(&Segment, &Held, Vec<usize>)> {
        let i = self
            .segments
            .binary_search_by_key(&first, |(s, _)| s.first)
            .ok()?;
        let (segment, held) = &self.segments[i];
        let held = held.as_ref()?;
        if held.len() != records.len() {
            return None;
        }
        let start = (first - 1) as usize;
        let differ = (held.iter().zip(records).enumerate())
            .filter(|(_, (a, b))| !Arc::ptr_eq(a, b))
            .map(|(k, _)| start + k)
            .collect();
        Some((segment, held, differ))
    }
}

/// A checkpoint read back whole: its state, and (formats 6 and 7) what the
/// writer needs to know of its parts.
pub(crate) async fn read(
    meta: &dyn MetadataStore,
    model: &ModelName,
    cp: Checkpoint,
) -> Result<(ModelState, Option<Written>)> {
    read_holding(meta, model, cp, HeldSegments::default()).await
}

/// [`read`], reading only the segments `held` does not have: a past
/// checkpoint of a model shares most of its segments with the current state,
/// which were read and checked against the same digests when it was read, so
/// time travel reads and hashes the few that differ, not the whole state.
pub(crate) async fn read_holding(
    meta: &dyn MetadataStore,
    model: &ModelName,
    cp: Checkpoint,
    held: HeldSegments,
) -> Result<(ModelState, Option<Written>)> {
    let read_at = Instant::now();
    let (name, seq) = (model.clone(), cp.seq);
    let head = offload(move || decode_checkpoint_head(&name, seq, &cp.bytes)).await??;
    let head = match head {
        CheckpointHead::Whole(state) => return Ok((state, None)),
        CheckpointHead::Segmented(head) => head,
    };
    let segments = head.segments().len();
    let names = head.part_names();
    let wanted: Vec<Option<String>> = (names.iter().cloned())
        .enumerate()
        .map(|(i, name)| (i >= segments || !head.holds(&held, i)).then_some(name))
        .collect();
    let parts: Vec<Option<Bytes>> = futures::stream::iter(wanted)
        .map(|part| async move {
            let Some(part) = part else {
                return Ok(None);
            };
            meta.get_checkpoint_part(model.as_str(), &part)
                .await?
                .map(Some)
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("checkpoint {seq} of model '{model}'"),
                        format!("its part {part} is missing"),
                    )
                })
        })
        .buffered(PART_CONCURRENCY)
        .try_collect()
        .await?;
    // A format 5 checkpoint's segments have no index: the next checkpoint
    // writes indexed segments in their place (once).
    let indexed = head.format() > 5;
    let level_1_written = (head.patches().iter())
        .filter(|p| p.level == 1)
        .map(|p| p.written)
        .max()
        .unwrap_or(0);
    let state = offload(move || head.assemble_with(&parts, &held)).await??;
    Ok((
        state,
        indexed.then(|| Written {
            level_1_written,
            seen: names.into_iter().map(|n| (n, read_at)).collect(),
            ..Written::default()
        }),
    ))
}

/// A segment range as the next head names it.
enum Planned {
    /// Stored already: named as it is, with the indexes of the records that
    /// differ from it (which a patch must hold), and the records it was
    /// encoded from if this process knows them.
    Kept {
        segment: Segment,
        held: Option<Vec<Arc<VersionRecord>>>,
        differ: Vec<usize>,
        range: std::ops::Range<usize>,
    },
    /// To be written from these records.
    New(Segment, Vec<u8>, Vec<Arc<VersionRecord>>),
}

/// Writes a format 7 checkpoint of `state`: the segments of `per` versions
/// that are not stored yet (or, when level 1 is folded into level 2, hold many
/// records that changed), the patches, then the head. Returns what is stored
/// now, and the bytes written (parts and head).
///
/// The rule (docs/design.md, "Patches"): a record that differs from its
/// stored segment is in the level 1 patch, rewritten at every checkpoint,
/// unless the level 2 patch holds it as it is. Level 1 is folded into level 2
/// (level 2 rewritten, level 1 dropped) once the records written to level 1
/// since level 2 was written reach level 2's size; a fold also rewrites the
/// segments that differ from their records in one in [`REWRITE_SHARE`] or more.
pub(super) async fn write(
    meta: &dyn MetadataStore,
    state: Arc<ModelState>,
    per: usize,
    known: Option<Arc<Written>>,
) -> Result<(Written, u64)> {
    let model = state.name().clone();
    let seq = state.seq();
    let started = Instant::now();
    let seen = known.as_ref().map(|k| k.seen.clone()).unwrap_or_default();
    // Encoding is CPU work: on the blocking pool, one thread (a background
    // checkpoint should not take every core from the commands that go on).
    let (mut written, new, head, named) =
        offload(move || plan(&state, per, known.as_deref())).await??;
    // Parts named but not written now, remembered from too long ago (or not
    // at all): put again, so that no collection deletes them before the head
    // is put (`REPUT_AFTER`).
    let mut put_now: HashSet<String> = new.iter().map(|(n, _)| n.clone()).collect();
    let stale: Vec<String> = (named.iter())
        .filter(|n| !put_now.contains(*n))
        .filter(|n| {
            seen.get(*n)
                .is_none_or(|t| started.duration_since(*t) >= REPUT_AFTER)
        })
        .cloned()
        .collect();
    let mut bytes = head.len() as u64;
    bytes += new.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    futures::stream::iter(stale.clone())
        .map(|part| {
            let model = &model;
            async move {
                let b = meta.get_checkpoint_part(model.as_str(), &part).await?;
                let b = b.ok_or_else(|| {
                    Error::corrupt(
                        format!("checkpoint {seq} of model '{model}'"),
                        format!("its part {part} is no longer stored (collected)"),
                    )
                })?;
                meta.put_checkpoint_part(model.as_str(), &part, b).await
            }
        })
        .buffer_unordered(PART_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    // Parts first, all of them durable, then the head that names them.
    futures::stream::iter(new)
        .map(|(part, b)| {
            let model = &model;
            async move { meta.put_checkpoint_part(model.as_str(), &part, b).await }
        })
        .buffer_unordered(PART_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    meta.put_checkpoint(model.as_str(), seq, Bytes::from(head))
        .await?;
    put_now.extend(stale);
    written.seen = (named.into_iter())
        .map(|n| {
            let t = match seen.get(&n) {
                Some(t) if !put_now.contains(&n) => *t,
                _ => started,
            };
            (n, t)
        })
        .collect();
    Ok((written, bytes))
}

/// What [`write`] stores: the writer's memory after it (without the times it
/// saw parts), the new parts, the head, and the names of every part the head
/// names.
fn plan(
    state: &ModelState,
    per: usize,
    known: Option<&Written>,
) -> Result<(Written, Parts, Vec<u8>, Vec<String>)> {
    let undecodable = |what: String| {
        Error::corrupt(
            format!("state of model '{}'", state.name()),
            format!("{what} cannot be decoded from the segment read"),
        )
    };
    let record = |i: usize| -> Result<Arc<VersionRecord>> {
        VersionNumber::new(i as u64 + 1)
            .ok()
            .and_then(|n| state.shared_version(n))
            .cloned()
            .ok_or_else(|| undecodable(format!("version {}", i + 1)))
    };
    let rewrite = |range: std::ops::Range<usize>| -> Result<Planned> {
        let records = state
            .records(range.clone())
            .ok_or_else(|| undecodable(format!("versions {}..", range.start + 1)))?;
        let (segment, bytes) = encode_segment(range.start as u64 + 1, &records);
        Ok(Planned::New(segment, bytes, records))
    };
    let mut planned = Vec::new();
    for range in segment_ranges(state.version_count(), per) {
        let first = range.start as u64 + 1;
        // Read from a checkpoint: named as it is, and not decoded for this —
        // unless this process wrote the range since (a fold rewrote it): the
        // state still knows the segment it was read with, whose differences
        // only grow, and comparing with that one would rewrite the range at
        // every fold.
        if !known.is_some_and(|k| k.wrote(first))
            && let Some((segment, differ)) = state.stored_segment(range.clone())
        {
            planned.push(Planned::Kept {
                segment: segment.clone(),
                held: None,
                differ,
                range,
            });
            continue;
        }
        let records = state
            .records(range.clone())
            .ok_or_else(|| undecodable(format!("versions {first}..")))?;
        match known.and_then(|k| k.find(first, &records)) {
            Some((segment, held, differ)) => planned.push(Planned::Kept {
                segment: segment.clone(),
                held: Some(held.clone()),
                differ,
                range,
            }),
            None => {
                let (segment, bytes) = encode_segment(first, &records);
                planned.push(Planned::New(segment, bytes, records));
            }
        }
    }

    // The level 2 patch the last head named, the versions it holds, and
    // whether it holds a version as the state has it now.
    let (level_2, holds, copy): (Option<Patch>, Vec<usize>, IsCopy<'_>) =
        match known.and_then(|k| k.level_2.as_ref()) {
            Some(Some((patch, records))) => (
                Some(patch.clone()),
                records.keys().copied().collect(),
                Box::new(move |i| {
                    let now = VersionNumber::new(i as u64 + 1)
                        .ok()
                        .and_then(|n| state.shared_version(n));
                    matches!((records.get(&i), now), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
                }),
            ),
            Some(None) => (None, Vec::new(), Box::new(|_| false)),
            None => match state.stored_patch() {
                Some((patch, holds)) => (
                    Some(patch.clone()),
                    holds,
                    Box::new(|i| state.is_stored_patch_copy(i)),
                ),
                None => (None, Vec::new(), Box::new(|_| false)),
            },
        };
    // Level 1: what differs from its segment and level 2 does not hold as it
    // is, and what level 2 holds that is no longer so (it would win over the
    // segment otherwise).
    let mut level_1: BTreeSet<usize> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Kept { differ, .. } => Some(differ),
            Planned::New(..) => None,
        })
        .flatten()
        .copied()
        .filter(|i| !copy(*i))
        .collect();
    level_1.extend(holds.iter().copied().filter(|i| !copy(*i)));
    let level_1_written = known.map_or(0, |k| k.level_1_written);
    let level_2_count = level_2.as_ref().map_or(0, |p| p.count);
    let fold = level_1_written + level_1.len() as u64 >= level_2_count;

    let mut new = Vec::new();
    let mut patches = Vec::new();
    let (next_level_2, next_written) = if fold {
        // Segments that differ in many records are rewritten; the records
        // that differ from the others make the new level 2.
        let mut keep = BTreeSet::new();
        for p in &mut planned {
            if let Planned::Kept { differ, range, .. } = p {
                if differ.len() * REWRITE_SHARE >= range.len() {
                    *p = rewrite(range.clone())?;
                } else {
                    keep.extend(differ.iter().copied());
                }
            }
        }
        if keep.is_empty() {
            (Some(None), 0)
        } else {
            let records: Vec<Arc<VersionRecord>> =
                keep.iter().map(|i| record(*i)).collect::<Result<_>>()?;
            let (patch, bytes) = encode_patch(2, 0, &records);
            new.push((patch.name(), Bytes::from(bytes)));
            patches.push(patch.clone());
            let held = keep.into_iter().zip(records).collect();
            (Some(Some((patch, held))), 0)
        }
    } else {
        if let Some(patch) = &level_2 {
            patches.push(patch.clone());
        }
        let written = level_1_written + level_1.len() as u64;
        if !level_1.is_empty() {
            let records: Vec<Arc<VersionRecord>> =
                level_1.iter().map(|i| record(*i)).collect::<Result<_>>()?;
            let (patch, bytes) = encode_patch(1, written, &records);
            new.push((patch.name(), Bytes::from(bytes)));
            patches.push(patch);
        }
        // Level 2 is named as it was: what the writer knew of it stays.
        let same = known.and_then(|k| k.level_2.clone());
        (same, written)
    };

    let mut segments = Vec::with_capacity(planned.len());
    let mut held = Vec::with_capacity(planned.len());
    for p in planned {
        match p {
            Planned::Kept {
                segment, held: h, ..
            } => {
                segments.push(segment);
                held.push(h);
            }
            Planned::New(segment, bytes, records) => {
                new.push((segment.name(), Bytes::from(bytes)));
                segments.push(segment);
                held.push(Some(records));
            }
        }
    }
    let head = encode_patched_head(state, &segments, &patches);
    let named = (segments.iter().map(Segment::name))
        .chain(patches.iter().map(Patch::name))
        .collect();
    let written = Written {
        segments: segments.into_iter().zip(held).collect(),
        level_2: next_level_2,
        level_1_written: next_written,
        seen: HashMap::new(),
    };
    Ok((written, new, head, named))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::encode_segmented_head;
    use crate::store::MemoryMetadataStore;
    use crate::{Actor, ArtifactSource, CreateModel, Metrics, NewVersion, Registry, Session};

    /// A registry on `meta` (artifacts in memory, no automatic checkpoints)
    /// with an empty model `m`, and a session on it.
    async fn model_m(meta: Arc<MemoryMetadataStore>) -> (Registry, Session) {
        let reg = Registry::builder()
            .metadata(meta)
            .artifacts(Arc::new(crate::store::MemoryArtifactStore::new()))
            .checkpoint_every(0)
            .build()
            .expect("registry");
        let me = reg.acting_as(Actor::new("ci").expect("actor"));
        me.create_model("m", CreateModel::new())
            .await
            .expect("create");
        (reg, me)
    }

    /// The latest checkpoint of model `m`.
    async fn latest(meta: &dyn MetadataStore) -> Checkpoint {
        meta.latest_checkpoint("m")
            .await
            .expect("read")
            .expect("checkpoint")
    }

    /// The length of the segment of the versions at `range` of `state`.
    fn segment_len(state: &ModelState, range: std::ops::Range<usize>) -> u64 {
        encode_segment(range.start as u64 + 1, &state.versions()[range])
            .1
            .len() as u64
    }

    /// [`model_m`] with 40 versions described as `description`.
    async fn forty_versions(description: &str) -> (Registry, Session) {
        let (reg, me) = model_m(Arc::new(MemoryMetadataStore::new())).await;
        for i in 0..40 {
            let source = ArtifactSource::bytes("w", format!("weights {i}")).expect("source");
            me.register("m", source, NewVersion::new().description(description))
                .await
                .expect("register");
        }
        (reg, me)
    }

    /// A checkpoint after a change writes the segments that changed and the
    /// head, not the model; what it wrote reads back as the state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_writes_only_the_segments_that_changed() {
        let (reg, me) = forty_versions(&"x".repeat(200)).await;
        let meta = MemoryMetadataStore::new();
        let name = crate::ModelName::new("m").expect("name");
        let first = Arc::new(reg.model("m").await.expect("model"));
        let (known, all) = write(&meta, Arc::clone(&first), 8, None)
            .await
            .expect("first checkpoint");
        let known = Arc::new(known);

        // Version 3 changes: its segment (versions 1..=8) and the head.
        let metrics = Metrics::new().with("auc", 0.9).expect("metric");
        me.add_metrics("m/3", metrics).await.expect("metrics");
        let second = Arc::new(reg.model("m").await.expect("model"));
        let (known2, changed) = write(&meta, Arc::clone(&second), 8, Some(Arc::clone(&known)))
            .await
            .expect("second checkpoint");
        let head =
            |s: &ModelState, segments: &[Segment]| encode_segmented_head(s, segments).len() as u64;
        let segs2: Vec<Segment> = known2.segments.iter().map(|(s, _)| s.clone()).collect();
        assert_eq!(changed, segment_len(&second, 0..8) + head(&second, &segs2));
        assert!(changed * 3 < all, "{changed} of {all} bytes");
        let cp = latest(&meta).await;
        assert_eq!(
            crate::format::read_checkpoint(&meta, &name, cp)
                .await
                .expect("reads"),
            *second
        );

        // Nothing changed: only the head is written again.
        let (_, again) = write(&meta, Arc::clone(&second), 8, Some(Arc::new(known2)))
            .await
            .expect("third checkpoint");
        assert_eq!(again, head(&second, &segs2));

        // Read back, the records stay in their segments; a change to version
        // 20 (segment 17..=24) then costs that segment and the head, without
        // the other segments being decoded, and so again once the state was
        // asked for whole and settled into plain memory.
        let cp = latest(&meta).await;
        let (mut lazy, read_back) = read(&meta, &name, cp).await.expect("reads");
        let read_back = Arc::new(read_back.expect("format 6 is remembered"));
        assert!(lazy.is_partly_decoded());
        let mut settled = lazy.clone();
        assert_eq!(settled.versions(), second.versions());
        let change = crate::domain::Event {
            seq: lazy.seq() + 1,
            model: name.clone(),
            time: lazy.updated_at(),
            actor: Actor::new("ci").expect("actor"),
            kind: crate::domain::EventKind::MetricsAdded {
                version: crate::VersionNumber::new(20).expect("number"),
                metrics: Metrics::new().with("auc", 0.1).expect("metric"),
                overridden: None,
            },
        };
        lazy.apply(change.clone()).expect("applies");
        settled.apply(change).expect("applies");
        assert!(!settled.is_partly_decoded());
        for state in [lazy, settled] {
            let partly = state.is_partly_decoded();
            let state = Arc::new(state);
            let (written, bytes) =
                write(&meta, Arc::clone(&state), 8, Some(Arc::clone(&read_back)))
                    .await
                    .expect("checkpoint");
            assert_eq!(
                partly,
                state.is_partly_decoded(),
                "nothing decoded to write it"
            );
            let segs: Vec<Segment> = written.segments.iter().map(|(s, _)| s.clone()).collect();
            assert_eq!(
                bytes,
                segment_len(&state, 16..24) + head(&state, &segs),
                "partly decoded: {partly}"
            );
        }
    }

    /// A segment the writer rewrote is what later checkpoints compare with,
    /// not the one the state was read with: a state read from a checkpoint
    /// and changed for a long time (a registry opened once, a server) would
    /// otherwise find its old segments ever more changed, and rewrite them at
    /// every fold — every checkpoint, once the fold leaves level 2 empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rewritten_segment_is_not_rewritten_for_older_changes() {
        let (reg, _) = forty_versions(&"x".repeat(200)).await;
        let meta = MemoryMetadataStore::new();
        let name = crate::ModelName::new("m").expect("name");
        let first = Arc::new(reg.model("m").await.expect("model"));
        write(&meta, first, 8, None)
            .await
            .expect("first checkpoint");
        let cp = latest(&meta).await;
        let (mut state, read_back) = read(&meta, &name, cp).await.expect("reads");
        let mut known = Arc::new(read_back.expect("format 7 is remembered"));
        let head = |s: &ModelState, w: &Written| {
            let segments: Vec<Segment> = w.segments.iter().map(|(s, _)| s.clone()).collect();
            encode_segmented_head(s, &segments).len() as u64
        };
        // One change to an old version per checkpoint, each in another
        // segment; with no level 2 yet, every checkpoint folds, and a segment
        // with one record of its eight changed is rewritten.
        for (round, version) in [3u64, 20, 35].into_iter().enumerate() {
            state
                .apply(crate::domain::Event {
                    seq: state.seq() + 1,
                    model: name.clone(),
                    time: state.updated_at(),
                    actor: Actor::new("ci").expect("actor"),
                    kind: crate::domain::EventKind::MetricsAdded {
                        version: crate::VersionNumber::new(version).expect("number"),
                        metrics: Metrics::new().with("auc", 0.5).expect("metric"),
                        overridden: None,
                    },
                })
                .expect("applies");
            let now = Arc::new(state.clone());
            let (written, bytes) = write(&meta, Arc::clone(&now), 8, Some(Arc::clone(&known)))
                .await
                .expect("checkpoint");
            let start = (version as usize - 1) / 8 * 8;
            assert_eq!(
                bytes,
                segment_len(&now, start..start + 8) + head(&now, &written),
                "round {round}: only the segment of version {version} and the head"
            );
            known = Arc::new(written);
            let cp = latest(&meta).await;
            assert_eq!(
                crate::format::read_checkpoint(&meta, &name, cp)
                    .await
                    .expect("reads"),
                *now
            );
        }
    }

    /// A past checkpoint is read holding the current state's segments: only
    /// the ones it does not share with it are read. Here the store's copies of
    /// the shared ones are damaged after the current state was read; read
    /// alone, the past checkpoint is refused for them, read holding the
    /// current state it is the past state (it never read them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_past_checkpoint_reads_only_the_segments_the_current_state_does_not_hold() {
        let (reg, me) = forty_versions("").await;
        let meta = MemoryMetadataStore::new();
        let name = crate::ModelName::new("m").expect("name");
        let past = Arc::new(reg.model("m").await.expect("model"));
        let (known, _) = write(&meta, Arc::clone(&past), 8, None)
            .await
            .expect("past checkpoint");
        let shared: Vec<String> = known.segments[1..].iter().map(|(s, _)| s.name()).collect();
        let past_cp = latest(&meta).await;
        // Version 3 changes: segment 1..=8 differs, the other four are shared.
        let metrics = Metrics::new().with("auc", 0.9).expect("metric");
        me.add_metrics("m/3", metrics).await.expect("metrics");
        let now = Arc::new(reg.model("m").await.expect("model"));
        write(&meta, now, 8, Some(Arc::new(known)))
            .await
            .expect("current checkpoint");
        let cp = latest(&meta).await;
        let (current, _) = read(&meta, &name, cp).await.expect("reads");

        for part in &shared {
            meta.put_checkpoint_part("m", part, Bytes::from_static(b"damaged"))
                .await
                .expect("damage");
        }
        assert!(matches!(
            read(&meta, &name, past_cp.clone()).await,
            Err(Error::Corrupt { .. })
        ));
        let (back, _) = read_holding(&meta, &name, past_cp, current.held_segments())
            .await
            .expect("reads the one segment it does not hold");
        assert_eq!(back.versions(), past.versions());
        assert_eq!(back.seq(), past.seq());
    }

    /// Changes scattered over old versions, checkpoint after checkpoint, go
    /// to patches instead of rewriting their segments: each head reads back
    /// as the state (through a fresh lazy read too, and a writer that starts
    /// from one), level 1 is folded into level 2 now and then, and the bytes
    /// written stay well under what rewriting every touched segment costs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scattered_changes_are_patched_not_rewritten() {
        let store = Arc::new(MemoryMetadataStore::new());
        let (reg, me) = model_m(store.clone()).await;
        let mut registered = 0u64;
        let register = |n: u64| {
            let me = me.clone();
            async move {
                let source = ArtifactSource::bytes("w", format!("weights {n}")).expect("source");
                me.register("m", source, NewVersion::new().description("x".repeat(200)))
                    .await
                    .expect("register");
            }
        };
        for _ in 0..256 {
            registered += 1;
            register(registered).await;
        }
        let name = crate::ModelName::new("m").expect("name");
        let meta: &dyn MetadataStore = store.as_ref();
        let per = 64;
        let (known, _) = write(
            meta,
            Arc::new(reg.model("m").await.expect("model")),
            per,
            None,
        )
        .await
        .expect("first checkpoint");
        let mut known = Arc::new(known);
        let (mut ours, mut naive) = (0u64, 0u64);
        let (mut folds, mut patched_heads) = (0, 0);
        for window in 0..40u64 {
            let mut touched = BTreeSet::new();
            for j in 0..6u64 {
                let v = 1 + (window * 6 + j) * 97 % 250;
                touched.insert((v - 1) / per as u64);
                let metrics = Metrics::new()
                    .with("auc", (window * 6 + j) as f64 / 1e3)
                    .expect("metric");
                me.add_metrics(format!("m/{v}"), metrics)
                    .await
                    .expect("metrics");
            }
            // Now and then an old version goes to production (archiving the
            // one there): the patches carry stages too.
            if window % 3 == 0 {
                let v = format!("m/{}", 1 + window * 53 % 250);
                for stage in [crate::Stage::Staging, crate::Stage::Validation] {
                    me.transition(v.as_str(), stage, "test")
                        .await
                        .expect("transition");
                }
                me.promote(v.as_str(), "test").await.expect("promote");
            }
            registered += 1;
            register(registered).await;
            let state = Arc::new(reg.model("m").await.expect("model"));
            // What rewriting each touched segment (and the growing one) costs.
            for k in touched
                .iter()
                .chain([&((state.version_count() as u64 - 1) / per as u64)])
            {
                let start = *k as usize * per;
                let end = (start + per).min(state.version_count());
                naive += encode_segment(start as u64 + 1, &state.versions()[start..end])
                    .1
                    .len() as u64;
            }
            // Every fifth window, as a new process would: the state read
            // lazily from the last checkpoint, changed, and written from what
            // that read knows.
            let (state, from) = if window % 5 == 4 {
                let cp = latest(meta).await;
                let (mut lazy, read_back) = read(meta, &name, cp).await.expect("reads");
                let read_back = read_back.expect("format 7 is remembered");
                let filter = crate::HistoryFilter::default();
                let log = reg.history("m", &filter).await.expect("history");
                let from = lazy.seq();
                for event in log.into_iter().rev().filter(|e| e.seq > from) {
                    lazy.apply(event).expect("applies");
                }
                assert_eq!(lazy, *state);
                (Arc::new(lazy), Arc::new(read_back))
            } else {
                (state, Arc::clone(&known))
            };
            let (written, bytes) = write(meta, Arc::clone(&state), per, Some(from))
                .await
                .expect("checkpoint");
            ours += bytes;
            if written.level_1_written == 0 {
                folds += 1;
            }
            known = Arc::new(written);
            let cp = latest(meta).await;
            let head = match decode_checkpoint_head(&name, cp.seq, &cp.bytes).expect("head") {
                CheckpointHead::Segmented(head) => head,
                CheckpointHead::Whole(_) => panic!("a segmented checkpoint"),
            };
            assert_eq!(head.format(), 7);
            patched_heads += usize::from(!head.patches().is_empty());
            assert_eq!(
                crate::format::read_checkpoint(meta, &name, cp.clone())
                    .await
                    .expect("reads whole"),
                *state
            );
            let (lazy, _) = read(meta, &name, cp).await.expect("reads lazily");
            assert_eq!(lazy, *state, "window {window}");
        }
        assert!(patched_heads > 30, "{patched_heads} heads with patches");
        // Level 1 is folded into level 2 every few windows at this scale
        // (level 2 stays small: a segment of 64 with 8 changed records is
        // rewritten), not at every one.
        assert!((3..36).contains(&folds), "{folds} folds");
        assert!(
            ours * 2 < naive,
            "{ours} bytes written, {naive} rewriting touched segments"
        );
    }

    /// The writer puts again the parts it names but remembers from longer
    /// ago than [`REPUT_AFTER`] (a collection may be about to delete them),
    /// and only those; one that is gone fails the checkpoint rather than
    /// naming it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remembered_parts_are_put_again_once_old() {
        let (reg, _me) = forty_versions("x").await;
        let meta = MemoryMetadataStore::new();
        let state = Arc::new(reg.model("m").await.expect("model"));
        let times = |meta: &MemoryMetadataStore| {
            let meta = meta.clone();
            async move {
                (meta.list_checkpoint_parts("m").await.expect("list"))
                    .into_iter()
                    .map(|p| (p.name, p.last_modified.expect("time")))
                    .collect::<BTreeMap<_, _>>()
            }
        };
        let (known, _) = write(&meta, Arc::clone(&state), 8, None)
            .await
            .expect("first");
        let first = times(&meta).await;
        assert_eq!(first.len(), 5);

        // Remembered recently: named as they are, not put.
        let (known, _) = write(&meta, Arc::clone(&state), 8, Some(Arc::new(known)))
            .await
            .expect("second");
        assert_eq!(times(&meta).await, first);

        // Remembered from too long ago: every named part is put again.
        let Some(long_ago) = Instant::now().checked_sub(REPUT_AFTER + Duration::from_secs(1))
        else {
            return; // a machine up for less than half an hour
        };
        let mut old = known;
        old.seen.values_mut().for_each(|t| *t = long_ago);
        let (known, _) = write(&meta, Arc::clone(&state), 8, Some(Arc::new(old)))
            .await
            .expect("third");
        let again = times(&meta).await;
        assert_eq!(again.len(), 5);
        for (name, t) in &again {
            assert!(*t > first[name], "{name} put again");
        }
        assert!(known.seen.values().all(|t| *t > long_ago));

        // One that is gone is not named.
        let mut old = known;
        old.seen.values_mut().for_each(|t| *t = long_ago);
        let gone = first.keys().next().expect("a part").clone();
        meta.delete_checkpoint_part("m", &gone)
            .await
            .expect("delete");
        let before = meta.latest_checkpoint("m").await.expect("read");
        let err = write(&meta, Arc::clone(&state), 8, Some(Arc::new(old)))
            .await
            .expect_err("a remembered part is gone");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&gone), "{err}");
        assert_eq!(meta.latest_checkpoint("m").await.expect("read"), before);
    }
}
