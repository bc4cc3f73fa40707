//! The metadata fixture: a model `fraud` with N versions of ~1 KiB records,
//! built once and cached under `<target>/bench-fixtures/` (see
//! benches/metadata.rs for its shape). Shared by the metadata and serve
//! benches.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use modelreg::{
    Actor, ArtifactSource, CreateModel, Event, EventKind, MetricSpec, Registry, SetAlias, Stage,
    VersionNumber,
};

use super::new_version;

pub const MODEL: &str = "fraud";

pub fn actor() -> Actor {
    Actor::new("trainer@example.com").expect("actor")
}

pub fn source(i: u64) -> ArtifactSource {
    ArtifactSource::bytes("model.bin", format!("weights of version {i}")).expect("source")
}

/// `<target>/bench-fixtures`: the bench binary is `<target>/release/deps/metadata-…`.
pub fn fixtures_root() -> PathBuf {
    if let Ok(dir) = std::env::var("MODELREG_BENCH_FIXTURES") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("target dir")
        .join("bench-fixtures")
}

/// The cached registry directory with `n` versions of `MODEL`, built if missing.
pub fn fixture(rt: &tokio::runtime::Runtime, n: u64) -> PathBuf {
    assert!(
        n >= 1000 && n.is_multiple_of(1000),
        "versions: a multiple of 1000"
    );
    // `-windows256`: older checkpoints are kept, one per 1/256 of the log
    // (renamed when the stores' window count changes, which decides them).
    let dir = fixtures_root().join(format!(
        "metadata-{n}-ckpt{}-windows256",
        modelreg::format::CHECKPOINT_FORMAT
    ));
    if dir.join("complete").exists() {
        return dir;
    }
    let _ = fs::remove_dir_all(&dir);
    let t = Instant::now();
    rt.block_on(build_fixture(&dir, n));
    File::create(dir.join("complete")).expect("mark fixture complete");
    println!("built fixture of {n} versions in {:.1?}", t.elapsed());
    dir
}

/// Event 1 creates the model, version 1 is registered through the registry; the
/// events of versions 2..=n-5 are appended raw (each a copy of version 1's record
/// with its own number, time and digest), with a checkpoint put at every
/// multiple of 1,000 events as a registry would (the store prunes them to one
/// per window of the log, as it does a registry's); then through the registry: version n/2
/// goes to production (3 events), gets alias `champion` (event n, which writes the
/// checkpoint), and versions n-4..=n are registered (events n+1..=n+5).
pub async fn build_fixture(dir: &Path, n: u64) {
    let reg = Registry::open_local(dir).await.expect("open");
    let me = actor();
    reg.acting_as(me.clone())
        .create_model(
            MODEL,
            CreateModel::new().metric("auc", MetricSpec::maximize()),
        )
        .await
        .expect("create");
    let template = reg
        .acting_as(me.clone())
        .register(MODEL, source(1), new_version(1))
        .await
        .expect("register 1")
        .version;
    let store = reg.metadata_store().clone();
    let model = template_model();
    let start = template.created_at;
    let cohort = modelreg::TagKey::new("cohort").expect("tag key");
    // The raw events are folded here as well, and a checkpoint is put every
    // 1,000 events as a registry would (the store prunes them as it does for
    // a registry's), so time travel finds the checkpoints it would have.
    let mut state = reg.model(MODEL).await.expect("model after version 1");
    // The raw checkpoints are segmented (format 5) as a registry writes them:
    // a full segment is written once (raw events only add versions), the
    // growing last one at every checkpoint.
    let per = modelreg::format::SEGMENT_VERSIONS;
    let mut full: Vec<modelreg::format::Segment> = Vec::new();
    let last = n - 5;
    let mut number = 2;
    while number <= last {
        let chunk_end = ((number + 1) / 1000 + 1) * 1000 - 1; // event 1000·k is version 1000·k - 1
        let chunk: Vec<Event> = (number..=chunk_end.min(last))
            .map(|number| {
                let mut v = template.clone();
                v.number = VersionNumber::new(number).expect("number");
                v.created_at = start + chrono::Duration::milliseconds(number as i64);
                v.artifact = modelreg::Digest::of(&number.to_le_bytes());
                v.description = format!("nightly retrain {number}");
                v.tags.insert(cohort.clone(), format!("c{}", number % 10));
                Event {
                    seq: number + 1,
                    model: model.clone(),
                    time: v.created_at,
                    actor: me.clone(),
                    kind: EventKind::VersionRegistered {
                        version: Box::new(v),
                    },
                }
            })
            .collect();
        number = chunk_end.min(last) + 1;
        futures::stream::iter(chunk.iter().map(|event| {
            let store = store.clone();
            let bytes = event.to_bytes();
            async move { store.append(MODEL, event.seq, bytes.into()).await }
        }))
        .buffer_unordered(8)
        .for_each(|r| async move { r.expect("raw append") })
        .await;
        for event in chunk {
            state.apply(event).expect("fold a raw event");
        }
        if state.seq().is_multiple_of(1000) && state.versions().len() < per {
            store
                .put_checkpoint(
                    MODEL,
                    state.seq(),
                    modelreg::format::encode_checkpoint(&state).into(),
                )
                .await
                .expect("put checkpoint");
        } else if state.seq().is_multiple_of(1000) {
            let versions = state.versions();
            let mut segments = full.clone();
            let mut at = full.len() * per;
            while at < versions.len() {
                let end = (at + per).min(versions.len());
                let (segment, bytes) =
                    modelreg::format::encode_segment(at as u64 + 1, &versions[at..end]);
                store
                    .put_checkpoint_part(MODEL, &segment.name(), bytes.into())
                    .await
                    .expect("put segment");
                if end - at == per {
                    full.push(segment.clone());
                }
                segments.push(segment);
                at = end;
            }
            store
                .put_checkpoint(
                    MODEL,
                    state.seq(),
                    modelreg::format::encode_segmented_head(&state, &segments).into(),
                )
                .await
                .expect("put checkpoint");
        }
    }
    let prod = format!("{MODEL}/{}", n / 2);
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        reg.acting_as(me.clone())
            .transition(prod.as_str(), stage, "nightly promotion")
            .await
            .expect("transition");
    }
    reg.acting_as(me.clone())
        .set_alias(prod.as_str(), "champion", SetAlias::new())
        .await
        .expect("alias");
    for i in n - 4..=n {
        reg.acting_as(me.clone())
            .register(MODEL, source(i), new_version(i))
            .await
            .expect("register");
    }
    let state = reg.model(MODEL).await.expect("model");
    assert_eq!(state.versions().len() as u64, n);
    assert_eq!(state.seq(), n + 5);
    // A large model's checkpoint is written in the background: wait for it.
    while store
        .latest_checkpoint(MODEL)
        .await
        .expect("read checkpoint")
        .is_none_or(|c| c.seq < n)
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn template_model() -> modelreg::ModelName {
    modelreg::ModelName::new(MODEL).expect("model name")
}

/// Hard-links every file of `from` into the new tree `to`.
pub fn link_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            link_tree(&entry.path(), &target);
        } else {
            fs::hard_link(entry.path(), &target).expect("hard link");
        }
    }
}
