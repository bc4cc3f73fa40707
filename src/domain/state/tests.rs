//! Tests of the fold, its checks and the checkpoint formats.

use std::collections::BTreeSet;

use super::checkpoint::{CHECKPOINT_CHUNK, peek_format};
use super::*;
use crate::domain::record::{CodeRef, DatasetRef, DatasetRole, Environment, Metrics, Provenance};

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
const FORMAT_2: &[u8] = include_bytes!("../../../tests/fixtures/checkpoint-format-2-fraud-10.ckpt");

/// A format-3 checkpoint of `state(10)`, as the last writer of whole
/// checkpoints before segmented ones (format 5) wrote it: captured bytes.
const FORMAT_3: &[u8] = include_bytes!("../../../tests/fixtures/checkpoint-format-3-fraud-10.ckpt");

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
    let five =
        String::from_utf8(json.to_vec())
            .unwrap()
            .replacen(r#"{"format":7,"#, r#"{"format":5,"#, 1);
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
