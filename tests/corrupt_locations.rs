//! Damage names its file: a damaged event, checkpoint, blob or manifest is reported
//! with where it is stored — the file path on local disk, the object URL on object
//! storage — in the error's `location` field and in its message. The location is
//! checked by reading the damaged bytes back from it.
//!
//! Runs on a local directory and on object_store's `LocalFileSystem` through a
//! `file://` URL always, and on the S3 (moto) and Azure (Azurite) servers that
//! `tests/common/servers.rs` finds (in CI a missing server fails).

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use common::servers::Server;
use common::targets::{Target, is_url, open_with_checkpoints};
use modelreg::store::object::object_store_from_url;
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Error, ModelState, NewVersion, Registry,
};
use object_store::ObjectStoreExt;

/// Events 1 (create) to 4 (three registrations); checkpoints at 2 and 4.
const CHECKPOINT_EVERY: u64 = 2;

/// Where the registry at `target` keeps `rel` (a path below its root, such as
/// `metadata/logs/v1/…`), as a location string: the layout is documented, so
/// this is what the store must name.
fn expected_location(target: &Target, rel: &str) -> String {
    format!("{}/{rel}", target.spec)
}

fn record(seq: u64) -> String {
    format!("metadata/logs/v1/fraud/records/{seq:020}.rec")
}

fn checkpoint(seq: u64) -> String {
    format!("metadata/logs/v1/fraud/checkpoints/{seq:020}.ckpt")
}

/// Where the registry at `target` keeps blob `digest`: the local store writes
/// `blobs/v2` (one level of shards), object stores `blobs/v1` (two).
fn blob(target: &Target, digest: &Digest) -> String {
    let hex = digest.to_hex();
    if target.name == "local" {
        format!("artifacts/blobs/v2/blake3/{}/{hex}", &hex[..2])
    } else {
        format!(
            "artifacts/blobs/v1/blake3/{}/{}/{hex}",
            &hex[..2],
            &hex[2..4]
        )
    }
}

/// The bytes stored at `location`: a local path, or an object URL (`file://`,
/// `s3://`, `az://`) read through object_store.
async fn read_at(location: &str) -> Vec<u8> {
    if is_url(location) {
        let (store, path) = object_store_from_url(location).expect("location is a URL");
        let got = store
            .get(&path)
            .await
            .unwrap_or_else(|e| panic!("no object at {location}: {e}"));
        got.bytes().await.expect("object bytes").to_vec()
    } else {
        fs::read(location).unwrap_or_else(|e| panic!("no file at {location}: {e}"))
    }
}

/// Replaces what is stored at `rel` below the registry's root with `bytes`.
async fn overwrite(target: &Target, rel: &str, bytes: Vec<u8>) {
    let location = expected_location(target, rel);
    if is_url(&location) {
        let (store, path) = object_store_from_url(&location).expect("URL");
        store
            .put(&path, Bytes::from(bytes).into())
            .await
            .expect("overwrite object");
    } else {
        let path = Path::new(&location);
        let mut perms = fs::metadata(path).expect("stat").permissions();
        perms.set_mode(0o644);
        fs::set_permissions(path, perms).expect("chmod");
        fs::write(path, bytes).expect("overwrite file");
    }
}

/// A model with three versions, and its state.
async fn populate(target: &Target) -> (Registry, ModelState) {
    let reg = open_with_checkpoints(&target.spec, CHECKPOINT_EVERY);
    let me = Actor::new("ci").expect("actor");
    reg.acting_as(me.clone())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    for i in 0..3 {
        reg.acting_as(me.clone())
            .register(
                "fraud",
                ArtifactSource::bytes("m.bin", format!("weights {i}")).expect("source"),
                NewVersion::new(),
            )
            .await
            .expect("register");
    }
    let state = reg.model("fraud").await.expect("model");
    (reg, state)
}

/// A fresh registry over the same stores: nothing cached.
fn reopen(target: &Target) -> Registry {
    open_with_checkpoints(&target.spec, CHECKPOINT_EVERY)
}

/// Asserts `e` names `location` in its field and its message.
fn assert_names(e: &Error, location: &str) {
    assert_eq!(e.location(), Some(location), "{e:?}");
    assert!(e.to_string().contains(location), "{e}");
}

async fn a_damaged_event_names_its_file(target: Target) {
    populate(&target).await;
    // The newest event: a cold open reads it to confirm the checkpoint at 4, finds
    // it damaged, drops the checkpoint and replays the log up to it.
    let rel = record(4);
    let location = expected_location(&target, &rel);
    let mut bytes = read_at(&location).await;
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    overwrite(&target, &rel, bytes.clone()).await;
    assert_eq!(
        read_at(&location).await,
        bytes,
        "the location holds the damage"
    );

    // Folding, the raw log, check.
    let e = assert_err!(
        reopen(&target).model("fraud").await,
        Error::Corrupt { ref record, .. } if record == "event 4 of model 'fraud'"
    );
    assert_names(&e, &location);
    let e = assert_err!(reopen(&target).events("fraud").await, Error::Corrupt { .. });
    assert_names(&e, &location);
    let report = reopen(&target).check().await.expect("check");
    let problem = report
        .problems
        .iter()
        .find(|p| p.subject == "event 4 of model 'fraud'")
        .unwrap_or_else(|| panic!("{:#?}", report.problems));
    assert_eq!(problem.location.as_deref(), Some(location.as_str()));
    assert!(problem.detail.contains(&location), "{}", problem.detail);
}

async fn a_damaged_checkpoint_is_ignored_by_reads_and_reported_by_check(target: Target) {
    let (_, expected) = populate(&target).await;
    let rel = checkpoint(4);
    let location = expected_location(&target, &rel);
    let mut bytes = read_at(&location).await;
    let i = bytes.len() / 3;
    bytes[i] ^= 0x20;
    overwrite(&target, &rel, bytes.clone()).await;
    assert_eq!(read_at(&location).await, bytes);

    let state = reopen(&target)
        .model("fraud")
        .await
        .expect("a damaged checkpoint must not stop a read");
    assert_eq!(state, expected, "the log was replayed");

    let report = reopen(&target).check().await.expect("check");
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.subject, "checkpoint 4 of model 'fraud'");
    assert_eq!(problem.location.as_deref(), Some(location.as_str()));
    assert!(problem.detail.contains(&location), "{}", problem.detail);
}

async fn damaged_blobs_and_manifests_name_their_objects(target: Target) {
    let (_, state) = populate(&target).await;
    // A file's blob.
    let weights = Digest::of(b"weights 1");
    let location = expected_location(&target, &blob(&target, &weights));
    assert_eq!(read_at(&location).await, b"weights 1");
    overwrite(&target, &blob(&target, &weights), b"weights X".to_vec()).await;
    let e = assert_err!(
        reopen(&target).verify("fraud/2").await,
        Error::Integrity { .. }
    );
    assert_names(&e, &location);
    let dest = tempfile::tempdir().expect("temp dir");
    let e = assert_err!(
        reopen(&target)
            .fetch(
                "fraud/2",
                dest.path().join("out"),
                modelreg::FetchOptions::new()
            )
            .await,
        Error::Integrity { .. }
    );
    assert_names(&e, &location);

    // A version's manifest.
    let manifest = state.versions()[2].artifact;
    let manifest_location = expected_location(&target, &blob(&target, &manifest));
    let mut bytes = read_at(&manifest_location).await;
    bytes[0] ^= 0x01;
    overwrite(&target, &blob(&target, &manifest), bytes).await;
    let e = assert_err!(
        reopen(&target).manifest("fraud/3").await,
        Error::Integrity { .. }
    );
    assert_names(&e, &manifest_location);

    let report = reopen(&target).check().await.expect("check");
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
    for (subject, at) in [
        ("fraud/2 file 'm.bin'", &location),
        ("fraud/3 manifest", &manifest_location),
    ] {
        let problem = report
            .problems
            .iter()
            .find(|p| p.subject.starts_with(subject))
            .unwrap_or_else(|| panic!("{subject}: {:#?}", report.problems));
        assert_eq!(problem.location.as_ref(), Some(at), "{subject}");
        assert!(problem.detail.contains(at.as_str()), "{}", problem.detail);
    }
}

/// Runs each scenario on each target, as `mod <target> { #[test] fn <scenario>() }`.
macro_rules! scenarios {
    (targets: [$($(#[$attr:meta])* $target:ident => $make:expr),*], scenarios: $scenarios:tt $(,)?) => {
        $( scenarios!(@target [$(#[$attr])*] $target, $make, $scenarios); )*
    };
    (@target $attrs:tt $target:ident, $make:expr, [$($scenario:ident),* $(,)?]) => {
        mod $target {
            #[allow(unused_imports)]
            use super::*;
            $( scenarios!(@one $attrs $scenario, $make); )*
        }
    };
    (@one [$(#[$attr:meta])*] $scenario:ident, $make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $scenario() {
            super::$scenario($make).await;
        }
    };
}

scenarios! {
    targets: [
        local => Target::local(),
        file_url => Target::file_url(),
        #[cfg_attr(not(modelreg_s3), ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)")]
        s3 => Target::server(Server::S3),
        #[cfg_attr(not(modelreg_azure), ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)")]
        azure => Target::server(Server::Azure)
    ],
    scenarios: [
        a_damaged_event_names_its_file,
        a_damaged_checkpoint_is_ignored_by_reads_and_reported_by_check,
        damaged_blobs_and_manifests_name_their_objects,
    ],
}
