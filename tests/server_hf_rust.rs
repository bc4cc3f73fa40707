//! The Rust `hf-hub` crate (what candle and mistral.rs download through)
//! against `modelreg serve`'s Hugging Face routes: snapshot and single-file
//! downloads by stage, alias, version number and commit id, byte-identical.
//!
//! The client is `.ci/hf-hub-client`, built by `.ci/run` into the target
//! directory; `MODELREG_TEST_HF_HUB_CLIENT` names it (decided at compile time,
//! like the object-storage servers: without it these tests are ignored, and in
//! CI that fails `hf_hub_client_configured_in_ci`).

mod common;

use std::path::Path;
use std::process::Command;

use common::http::{request, start};
use modelreg::server::ServerOptions;
use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion, Registry, SetAlias, Stage};

fn client() -> String {
    match std::env::var("MODELREG_TEST_HF_HUB_CLIENT")
        .ok()
        .filter(|p| !p.is_empty())
    {
        Some(p) if cfg!(modelreg_hfhub) => p,
        _ => panic!(
            "needs MODELREG_TEST_HF_HUB_CLIENT (a build of .ci/hf-hub-client) and the `serve` \
             feature; bash .ci/run builds it and sets it"
        ),
    }
}

/// Version 1 (alias `champion`) and version 2 (production) of `fraud`, each
/// with a nested file, an empty file and a 3 MiB one.
async fn seeded(dir: &Path) -> (Registry, Vec<Vec<(String, Vec<u8>)>>) {
    let registry = Registry::open_local(dir.join("reg")).await.expect("open");
    let me = registry.acting_as(Actor::new("seed").expect("actor"));
    me.create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    let mut versions = Vec::new();
    for v in 1..=2u8 {
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "config.json".into(),
                format!("{{\"version\":{v}}}").into_bytes(),
            ),
            (
                "sub/tokenizer.json".into(),
                format!("{{\"vocab\":{v}}}").into_bytes(),
            ),
            ("empty.txt".into(), Vec::new()),
            (
                "model.safetensors".into(),
                (0..3 << 20)
                    .map(|i: u32| (i.wrapping_mul(31) >> 3) as u8 ^ v)
                    .collect(),
            ),
        ];
        let source = ArtifactSource::files(files.clone()).expect("files");
        me.register("fraud", source, NewVersion::new())
            .await
            .expect("register");
        versions.push(files);
    }
    me.promote_to("fraud/2", Stage::Production, "seed")
        .await
        .expect("promote");
    me.set_alias("fraud/1", "champion", SetAlias::new())
        .await
        .expect("alias");
    (registry, versions)
}

fn run(args: &[&str], home: &Path, endpoint: &str) -> String {
    let out = Command::new(client())
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home)
        .env_remove("HF_TOKEN")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .expect("run hf-hub-client");
    assert!(
        out.status.success(),
        "hf-hub-client {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn assert_same(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (path, bytes) in files {
        let got = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(got == *bytes, "{path} differs from what was registered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(modelreg_hfhub),
    ignore = "needs MODELREG_TEST_HF_HUB_CLIENT (bash .ci/run builds it)"
)]
async fn the_hf_hub_crate_downloads_versions_byte_identical() {
    let dir = tempfile::tempdir().expect("dir");
    let (registry, versions) = seeded(dir.path()).await;
    let s = start(registry, ServerOptions::new());
    let endpoint = s.url();
    let root = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let commit = request(s.addr, "GET", "/api/models/fraud/revision/1", &[], b"").json()["sha"]
            .as_str()
            .expect("a commit id")
            .to_owned();
        for (i, (revision, index)) in [
            ("production", 1),
            ("champion", 0),
            ("1", 0),
            (commit.as_str(), 0),
        ]
        .into_iter()
        .enumerate()
        {
            let out = root.join(format!("snap-{i}"));
            let home = root.join(format!("home-{i}"));
            run(
                &["snapshot", "fraud", revision, out.to_str().expect("utf-8")],
                &home,
                &endpoint,
            );
            assert_same(&out, &versions[index]);
        }
        let home = root.join("home-file");
        let path = run(
            &["file", "fraud", "production", "sub/tokenizer.json"],
            &home,
            &endpoint,
        );
        assert_eq!(std::fs::read(&path).expect("read"), versions[1][1].1);
        let missing = Command::new(client())
            .args(["file", "fraud", "production", "nope.bin"])
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HOME", &home)
            .output()
            .expect("run");
        assert!(!missing.status.success(), "a missing file downloaded");
        drop(s);
    })
    .await
    .expect("client runs");
}

#[test]
fn hf_hub_client_configured_in_ci() {
    if common::servers::in_ci() && !cfg!(modelreg_hfhub) {
        panic!("CI is set but MODELREG_TEST_HF_HUB_CLIENT was not set when the tests were built");
    }
}
