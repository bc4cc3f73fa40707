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

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::domain::state::{
    CheckpointHead, HeldSegments, SEGMENTED_FORMAT, Segment, decode_checkpoint_head,
    encode_segment, encode_segmented_head, segment_ranges,
};
use crate::domain::{ModelName, ModelState, VersionRecord};
use crate::error::{Error, Result};
use crate::offload::offload;
use crate::store::{Checkpoint, MetadataStore};

/// How many segments are read or written at once.
const PART_CONCURRENCY: usize = 16;

/// The segments this process knows to be stored for a model, with the records
/// each was encoded from: a record that changed since is another `Arc` (a
/// change to a shared record copies it), so comparing pointers finds the
/// segments to write again without encoding the others. (Segments a state was
/// read from and still holds unchanged, the state itself knows:
/// `ModelState::pristine_segment`; they are listed here without records.)
#[derive(Debug, Default)]
pub(crate) struct Written {
    segments: Vec<(Segment, Option<Vec<Arc<VersionRecord>>>)>,
}

impl Written {
    /// The stored segment for `records` (versions `first..`), if one holds
    /// exactly these records.
    fn find(&self, first: u64, records: &[Arc<VersionRecord>]) -> Option<&Segment> {
        let i = self
            .segments
            .binary_search_by_key(&first, |(s, _)| s.first)
            .ok()?;
        let (segment, held) = &self.segments[i];
        let held = held.as_ref()?;
        (held.len() == records.len() && held.iter().zip(records).all(|(a, b)| Arc::ptr_eq(a, b)))
            .then_some(segment)
    }
}

/// A checkpoint read back whole: its state, and (format 5) the segments it
/// was assembled from.
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
    let (name, seq) = (model.clone(), cp.seq);
    let head = offload(move || decode_checkpoint_head(&name, seq, &cp.bytes)).await??;
    let head = match head {
        CheckpointHead::Whole(state) => return Ok((state, None)),
        CheckpointHead::Segmented(head) => head,
    };
    let wanted: Vec<Option<String>> = head
        .segments()
        .iter()
        .enumerate()
        .map(|(i, s)| (!head.holds(&held, i)).then(|| s.name()))
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
                        format!("its segment {part} is missing"),
                    )
                })
        })
        .buffered(PART_CONCURRENCY)
        .try_collect()
        .await?;
    // A format 5 checkpoint's segments have no index: the next checkpoint
    // writes format 6 segments in their place (once).
    let indexed = head.format() == SEGMENTED_FORMAT;
    let state = offload(move || head.assemble_with(&parts, &held)).await??;
    Ok((state, indexed.then(Written::default)))
}

/// Writes a format 5 checkpoint of `state`: the segments of `per` versions
/// that `known` does not hold as they are, then the head. Returns what is
/// stored now, and the bytes written (segments and head).
pub(super) async fn write(
    meta: &dyn MetadataStore,
    state: Arc<ModelState>,
    per: usize,
    known: Option<Arc<Written>>,
) -> Result<(Written, u64)> {
    let model = state.name().clone();
    let seq = state.seq();
    // Encoding is CPU work: on the blocking pool, one thread (a background
    // checkpoint should not take every core from the commands that go on).
    let (written, new, head) = offload(move || {
        let mut segments = Vec::new();
        let mut held = Vec::new();
        let mut new = Vec::new();
        for range in segment_ranges(state.version_count(), per) {
            let first = range.start as u64 + 1;
            // Read from a checkpoint and unchanged: stored as it is, and not
            // decoded for this.
            if let Some(segment) = state.pristine_segment(range.clone()) {
                segments.push(segment.clone());
                held.push(None);
                continue;
            }
            let records = state.records(range.clone()).ok_or_else(|| {
                Error::corrupt(
                    format!("state of model '{}'", state.name()),
                    format!("versions {first}.. cannot be decoded from the segment read"),
                )
            })?;
            match known.as_deref().and_then(|k| k.find(first, &records)) {
                Some(segment) => segments.push(segment.clone()),
                None => {
                    let (segment, bytes) = encode_segment(first, &records);
                    new.push((segment.name(), Bytes::from(bytes)));
                    segments.push(segment);
                }
            }
            held.push(Some(records));
        }
        let head = encode_segmented_head(&state, &segments);
        let written = Written {
            segments: segments.into_iter().zip(held).collect(),
        };
        Ok::<_, Error>((written, new, head))
    })
    .await??;
    let mut bytes = head.len() as u64;
    bytes += new.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    // Segments first, all of them durable, then the head that names them.
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
    Ok((written, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryMetadataStore;
    use crate::{Actor, ArtifactSource, CreateModel, Metrics, NewVersion, Registry};

    /// A checkpoint after a change writes the segments that changed and the
    /// head, not the model; what it wrote reads back as the state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_writes_only_the_segments_that_changed() {
        let reg = Registry::builder()
            .metadata(Arc::new(MemoryMetadataStore::new()))
            .artifacts(Arc::new(crate::store::MemoryArtifactStore::new()))
            .checkpoint_every(0)
            .build()
            .expect("registry");
        let me = reg.acting_as(Actor::new("ci").expect("actor"));
        me.create_model("m", CreateModel::new())
            .await
            .expect("create");
        for i in 0..40 {
            let source = ArtifactSource::bytes("w", format!("weights {i}")).expect("source");
            me.register("m", source, NewVersion::new().description("x".repeat(200)))
                .await
                .expect("register");
        }
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
        let segment = |s: &ModelState, r: std::ops::Range<usize>| {
            encode_segment(r.start as u64 + 1, &s.versions()[r]).1.len() as u64
        };
        let head =
            |s: &ModelState, segments: &[Segment]| encode_segmented_head(s, segments).len() as u64;
        let segs2: Vec<Segment> = known2.segments.iter().map(|(s, _)| s.clone()).collect();
        assert_eq!(changed, segment(&second, 0..8) + head(&second, &segs2));
        assert!(changed * 3 < all, "{changed} of {all} bytes");
        let cp = meta
            .latest_checkpoint("m")
            .await
            .expect("read")
            .expect("checkpoint");
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
        let cp = meta
            .latest_checkpoint("m")
            .await
            .expect("read")
            .expect("checkpoint");
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
                segment(&state, 16..24) + head(&state, &segs),
                "partly decoded: {partly}"
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
        let reg = Registry::builder()
            .metadata(Arc::new(MemoryMetadataStore::new()))
            .artifacts(Arc::new(crate::store::MemoryArtifactStore::new()))
            .checkpoint_every(0)
            .build()
            .expect("registry");
        let me = reg.acting_as(Actor::new("ci").expect("actor"));
        me.create_model("m", CreateModel::new())
            .await
            .expect("create");
        for i in 0..40 {
            let source = ArtifactSource::bytes("w", format!("weights {i}")).expect("source");
            me.register("m", source, NewVersion::new())
                .await
                .expect("register");
        }
        let meta = MemoryMetadataStore::new();
        let name = crate::ModelName::new("m").expect("name");
        let past = Arc::new(reg.model("m").await.expect("model"));
        let (known, _) = write(&meta, Arc::clone(&past), 8, None)
            .await
            .expect("past checkpoint");
        let shared: Vec<String> = known.segments[1..].iter().map(|(s, _)| s.name()).collect();
        let past_cp = meta
            .latest_checkpoint("m")
            .await
            .expect("read")
            .expect("checkpoint");
        // Version 3 changes: segment 1..=8 differs, the other four are shared.
        let metrics = Metrics::new().with("auc", 0.9).expect("metric");
        me.add_metrics("m/3", metrics).await.expect("metrics");
        let now = Arc::new(reg.model("m").await.expect("model"));
        write(&meta, now, 8, Some(Arc::new(known)))
            .await
            .expect("current checkpoint");
        let cp = meta
            .latest_checkpoint("m")
            .await
            .expect("read")
            .expect("checkpoint");
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
}
