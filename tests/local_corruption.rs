//! Damaged metadata on local disk: a flipped byte in an event is a typed error
//! naming the event and its file (even when the damaged record still parses as
//! JSON), and a
//! damaged checkpoint is ignored in favour of replaying the log.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod common;

use common::targets::open_with_checkpoints;
use modelreg::{Actor, ArtifactSource, CreateModel, Error, Metrics, NewVersion, Registry};

fn record_file(root: &Path, model: &str, seq: u64) -> PathBuf {
    root.join(format!("metadata/logs/v1/{model}/records/{seq:020}.rec"))
}

/// Overwrites a (possibly read-only) file with `f` applied to its bytes.
fn damage(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).expect("read record");
    f(&mut bytes);
    let mut perms = fs::metadata(path).expect("stat").permissions();
    perms.set_mode(0o644);
    fs::set_permissions(path, perms).expect("chmod");
    fs::write(path, bytes).expect("write");
}

/// A local registry at `root` (its `metadata` and `artifacts` below it) that
/// writes a checkpoint every `every` events (0: never).
fn checkpointing_every(root: &Path, every: u64) -> Registry {
    Registry::builder()
        .metadata(std::sync::Arc::new(
            modelreg::store::LocalMetadataStore::open(root.join("metadata")).expect("meta"),
        ))
        .artifacts(std::sync::Arc::new(
            modelreg::store::LocalArtifactStore::open(root.join("artifacts")).expect("art"),
        ))
        .checkpoint_every(every)
        .build()
        .expect("build")
}

async fn registry_with_metric(root: &Path) -> Registry {
    let reg = Registry::open_local(root).await.expect("open");
    let me = Actor::new("ci").expect("actor");
    reg.acting_as(me.clone())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    reg.acting_as(me.clone())
        .register(
            "fraud",
            ArtifactSource::bytes("m.bin", "w").expect("source"),
            NewVersion::new().metrics(Metrics::new().with("auc", 0.91).expect("metric")),
        )
        .await
        .expect("register");
    reg
}

#[tokio::test]
async fn a_damaged_event_that_still_parses_is_reported_not_folded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    registry_with_metric(&root).await;
    // 0.91 -> 0.81: still valid JSON, still a valid event, silently wrong without
    // the checksum.
    damage(&record_file(&root, "fraud", 2), |b| {
        let text = String::from_utf8(b.clone()).expect("utf8");
        assert!(text.contains("0.91"));
        *b = text.replacen("0.91", "0.81", 1).into_bytes();
    });
    let reopened = Registry::open_local(&root).await.expect("open");
    match reopened.resolve("fraud/1").await {
        Err(Error::Corrupt {
            record,
            reason,
            location,
        }) => {
            assert_eq!(record, "event 2 of model 'fraud'");
            assert!(reason.contains("checksum"), "{reason}");
            let file = record_file(&root, "fraud", 2).display().to_string();
            assert_eq!(location.as_deref(), Some(file.as_str()), "names the file");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn truncated_and_garbage_events_are_corrupt() {
    for (name, how) in [
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)) as Box<dyn Fn(&mut Vec<u8>)>,
        ),
        (
            "garbage",
            Box::new(|b: &mut Vec<u8>| *b = b"\x00\xffnot a record".to_vec()),
        ),
        ("empty", Box::new(|b: &mut Vec<u8>| b.clear())),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("reg");
        registry_with_metric(&root).await;
        damage(&record_file(&root, "fraud", 2), how);
        let reopened = Registry::open_local(&root).await.expect("open");
        let r = reopened.model("fraud").await;
        assert!(
            matches!(&r, Err(Error::Corrupt { record, .. }) if record == "event 2 of model 'fraud'"),
            "{name}: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_damaged_checkpoint_is_ignored_and_the_log_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    let me = Actor::new("ci").expect("actor");
    {
        let reg = checkpointing_every(&root, 2);
        reg.acting_as(me.clone())
            .create_model("fraud", CreateModel::new())
            .await
            .expect("create");
        for i in 0..3 {
            reg.acting_as(me.clone())
                .register(
                    "fraud",
                    ArtifactSource::bytes("m.bin", format!("w{i}")).expect("source"),
                    NewVersion::new(),
                )
                .await
                .expect("register");
        }
    }
    let checkpoints = root.join("metadata/logs/v1/fraud/checkpoints");
    let newest = fs::read_dir(&checkpoints)
        .expect("checkpoints")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a checkpoint was written");
    let expected = Registry::open_local(&root)
        .await
        .expect("open")
        .model("fraud")
        .await
        .expect("model");
    damage(&newest, |b| {
        let i = b.len() / 3;
        b[i] ^= 0x20;
    });
    let state = Registry::open_local(&root)
        .await
        .expect("open")
        .model("fraud")
        .await
        .expect("a bad checkpoint must not stop the fold");
    assert_eq!(state, expected);
    assert_eq!(state.versions().len(), 3);
}

/// `model_as_of` a time after the latest checkpoint folds from that checkpoint,
/// not from event 1: with event 1 damaged it still answers (and equals the
/// answer from before the damage), while a time before the checkpoint has to
/// replay the log and reports the damage.
#[tokio::test]
async fn time_travel_after_a_checkpoint_starts_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    let reg = open_with_checkpoints(root.to_str().expect("utf-8 path"), 10);
    let me = reg.acting_as(Actor::new("ci").expect("actor"));
    me.create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    let register = |i: u32| {
        let me = me.clone();
        async move {
            me.register(
                "fraud",
                ArtifactSource::bytes("m.bin", format!("w{i}")).expect("source"),
                NewVersion::new(),
            )
            .await
            .expect("register")
        }
    };
    // Events 1..=13; the checkpoint covers event 10.
    for i in 0..12 {
        register(i).await;
    }
    let early = reg.events("fraud").await.expect("events")[4].time;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let t = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    register(12).await;
    register(13).await;
    let before_damage = reg.model_as_of("fraud", t).await.expect("as of");
    assert_eq!(before_damage.seq(), 13);
    assert_eq!(before_damage.versions().len(), 12);

    damage(&record_file(&root, "fraud", 1), |b| b[0] ^= 0xff);
    for registry in [
        reg.clone(),
        open_with_checkpoints(root.to_str().expect("utf-8 path"), 10),
    ] {
        assert_eq!(
            registry.model_as_of("fraud", t).await.expect("as of"),
            before_damage
        );
        match registry.model_as_of("fraud", early).await {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("a time before the checkpoint must replay event 1: {other:?}"),
        }
    }
}

/// A record missing from the middle of a log (records are never deleted, also
/// not after a checkpoint covers them) never makes a silently shorter audit
/// trail: the process that wrote the events still has them (its tail, read
/// back as they were appended), and any other process gets an error naming
/// the missing record.
#[tokio::test]
async fn a_record_missing_from_the_log_is_corrupt_in_the_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    drop(registry_with_metric(&root).await);
    let reg = checkpointing_every(&root, 22);
    let me = reg.acting_as(Actor::new("ci").expect("actor"));
    for i in 0..20 {
        me.register(
            "fraud",
            ArtifactSource::bytes("m.bin", format!("w{i}")).expect("source"),
            NewVersion::new(),
        )
        .await
        .expect("register");
    }
    // The checkpoint at 22 is written in the background.
    let checkpoint = root.join("metadata/logs/v1/fraud/checkpoints/00000000000000000022.ckpt");
    for _ in 0..500 {
        if checkpoint.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(checkpoint.exists(), "a checkpoint after the gap");
    let written = reg
        .history("fraud", &modelreg::HistoryFilter::new())
        .await
        .expect("history");
    let gone = record_file(&root, "fraud", 3);
    fs::remove_file(&gone).expect("remove record");
    // The writer serves the events it appended from memory: whole.
    let again = reg
        .history("fraud", &modelreg::HistoryFilter::new())
        .await
        .expect("the writer's history");
    assert_eq!(again, written);
    assert_eq!(again.len(), 22);
    // Another process whose state comes from a checkpoint after the gap,
    // with no other copy of the event (its archive removed), reads the log
    // there: the gap is an error naming the missing record.
    let open_other = || checkpointing_every(&root, 0);
    // While the checkpoint's event archive holds it, the event is read from
    // there: whole.
    let archived = open_other()
        .history("fraud", &modelreg::HistoryFilter::new())
        .await
        .expect("history from the archive");
    assert_eq!(archived, written);
    let other = open_other();
    let parts = root.join("metadata/logs/v1/fraud/parts");
    for entry in fs::read_dir(&parts).into_iter().flatten() {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("events-"))
        {
            fs::remove_file(path).expect("remove archive");
        }
    }
    for filter in [
        modelreg::HistoryFilter::new(),
        modelreg::HistoryFilter::new().kind("model_created"),
    ] {
        match other.history("fraud", &filter).await {
            Err(Error::Corrupt {
                record, location, ..
            }) => {
                assert_eq!(record, "event 3 of model 'fraud'");
                let file = gone.display().to_string();
                assert_eq!(location.as_deref(), Some(file.as_str()), "names the file");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
