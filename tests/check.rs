//! `Registry::check` reports every problem in a local registry — corrupt and
//! missing blobs, a damaged event, a damaged checkpoint — and changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use modelreg::store::{LocalArtifactStore, LocalMetadataStore};
use modelreg::{Actor, ArtifactSource, CreateModel, Digest, NewVersion, Registry};

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn blob_path(root: &Path, content: &[u8]) -> PathBuf {
    let hex = Digest::of(content).to_hex();
    root.join(format!("artifacts/blobs/v2/blake3/{}/{hex}", &hex[..2]))
}

fn writable(path: &Path) {
    let mut perms = fs::metadata(path).expect("stat").permissions();
    perms.set_mode(0o644);
    fs::set_permissions(path, perms).expect("chmod");
}

#[tokio::test]
async fn check_reports_every_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    let reg = Registry::builder()
        .metadata(Arc::new(
            LocalMetadataStore::open(root.join("metadata")).expect("meta"),
        ))
        .artifacts(Arc::new(
            LocalArtifactStore::open(root.join("artifacts")).expect("art"),
        ))
        .checkpoint_every(2)
        .build()
        .expect("build");
    let me = Actor::new("ci").expect("actor");
    for model in ["fraud", "churn", "spam"] {
        reg.acting_as(me.clone())
            .create_model(model, CreateModel::new())
            .await
            .expect("create");
        for i in 0..2 {
            reg.acting_as(me.clone())
                .register(
                    model,
                    ArtifactSource::files([
                        ("weights.bin", format!("{model} weights {i}")),
                        ("shared.txt", "same in every version".to_owned()),
                    ])
                    .expect("source"),
                    NewVersion::new(),
                )
                .await
                .expect("register");
        }
    }
    let clean = reg.check().await.expect("check");
    assert!(clean.is_ok(), "{:?}", clean.problems);
    assert_eq!((clean.models, clean.versions, clean.events), (3, 6, 9));
    // 6 weights + 1 shared file + 6 manifests, each hashed once.
    assert_eq!(clean.blobs, 13);
    assert_eq!(clean.checkpoints, 3);

    // Damage: a corrupt blob (fraud), a missing blob (churn), a damaged event
    // (spam), and a damaged checkpoint (fraud).
    let corrupt = blob_path(&root, b"fraud weights 1");
    writable(&corrupt);
    fs::write(&corrupt, "not the weights").expect("corrupt");
    fs::remove_file(blob_path(&root, b"churn weights 0")).expect("delete");
    let event = root.join("metadata/logs/v1/spam/records/00000000000000000002.rec");
    writable(&event);
    let mut bytes = fs::read(&event).expect("event");
    bytes[10] ^= 0x01;
    fs::write(&event, bytes).expect("damage event");
    let checkpoint = root.join("metadata/logs/v1/fraud/checkpoints/00000000000000000002.ckpt");
    writable(&checkpoint);
    fs::write(&checkpoint, "garbage").expect("damage checkpoint");

    let before = files(&root);
    let report = Registry::open_local(&root)
        .await
        .expect("open")
        .check()
        .await
        .expect("check");
    assert_eq!(files(&root), before, "check changed files");
    let subjects: Vec<&str> = report.problems.iter().map(|p| p.subject.as_str()).collect();
    assert_eq!(report.problems.len(), 4, "{:#?}", report.problems);
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("fraud/2 file 'weights.bin'")),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("churn/1 file 'weights.bin'")),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"event 2 of model 'spam'"),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"checkpoint 2 of model 'fraud'"),
        "{subjects:?}"
    );
    let detail = |prefix: &str| {
        report
            .problems
            .iter()
            .find(|p| p.subject.starts_with(prefix))
            .map(|p| p.detail.clone())
            .unwrap_or_default()
    };
    assert!(
        detail("fraud/2").contains("integrity"),
        "{}",
        detail("fraud/2")
    );
    assert!(
        detail("churn/1").contains("not found"),
        "{}",
        detail("churn/1")
    );
    assert!(
        detail("event 2").contains("checksum"),
        "{}",
        detail("event 2")
    );
    // The healthy parts were still checked: every model, the readable versions.
    assert_eq!(report.models, 3);
    assert_eq!(report.versions, 4);
}
