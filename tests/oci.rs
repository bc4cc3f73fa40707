//! OCI push and pull of versions as CNCF ModelPack artifacts, against a real OCI
//! registry (Debian's `docker-registry`, CNCF distribution 2.8, which has no
//! Referrers API), with the `oras` Python SDK pulling what modelreg pushed.
//!
//! `MODELREG_TEST_OCI_REGISTRY` (`host:port`, plain HTTP, no auth) names the
//! registry; `.ci/run` starts it and sets it, and `MODELREG_TEST_OCI_STORAGE`
//! (its storage directory, for the test that corrupts a stored blob). Whether
//! it is configured is decided when the tests are compiled (`build.rs` sets
//! `modelreg_oci`), so without it the registry tests show as ignored; in CI
//! `oci_registry_configured_in_ci` fails then.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use modelreg::oci::{OciOptions, Referrer, ReferrersIndex};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Error, NewVersion, OciProblem, Registry, Sha256, TagKey,
};

const SIGSTORE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

fn me() -> Actor {
    Actor::new("trainer").expect("valid actor")
}

fn options() -> OciOptions {
    OciOptions::new().plain_http(true)
}

#[test]
fn oci_registry_configured_in_ci() {
    if common::servers::in_ci() {
        assert!(
            compiled_in(),
            "CI must run the OCI tests: MODELREG_TEST_OCI_REGISTRY was not set when the tests \
             were built (`.ci/run` starts docker-registry and sets it)"
        );
    }
}

/// Whether this build runs the registry tests (`build.rs` saw the variable and
/// the feature).
fn compiled_in() -> bool {
    cfg!(modelreg_oci)
}

/// The registry's `host:port`. Panics when it is not configured: only tests
/// ignored without it call this.
fn registry_host() -> String {
    match std::env::var("MODELREG_TEST_OCI_REGISTRY") {
        Ok(h) if !h.is_empty() && compiled_in() => h,
        _ => panic!(
            "the OCI tests need MODELREG_TEST_OCI_REGISTRY (host:port of a plain-HTTP registry) \
             when they are built, and the `oci` feature; `bash .ci/run` starts one"
        ),
    }
}

/// A repository no other test uses.
fn repository() -> String {
    format!(
        "{}/modelreg/{}",
        registry_host(),
        common::servers::unique_name()
    )
}

/// Bytes that differ at every offset and are large enough to be sent in
/// several chunks.
fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .expect("below")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// A version with nested files, an empty file, a multi-chunk file, metrics and
/// hyperparameters.
async fn source_version(reg: &Registry) -> BTreeMap<String, Vec<u8>> {
    let files = BTreeMap::from([
        ("config.json".to_owned(), br#"{"hidden":4}"#.to_vec()),
        ("weights/model.safetensors".to_owned(), big(9 << 20)),
        ("README.md".to_owned(), b"# fraud\n".to_vec()),
        ("empty.txt".to_owned(), Vec::new()),
    ]);
    let me = reg.acting_as(me());
    me.create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    me.register(
        "fraud",
        ArtifactSource::files(files.clone()).expect("paths"),
        NewVersion::new()
            .description("retrained on November data")
            .metric("auc", 0.93)
            .param("lr", 0.0003)
            .framework("torch", "2.4.1")
            .tag("team", "risk"),
    )
    .await
    .expect("register");
    files
}

/// Push a version, pull it back into another registry: the same files, byte
/// for byte, the record's metrics, parameters and environment, and tags saying
/// where it came from. Pushing again sends no layer twice.
#[tokio::test]
#[cfg_attr(not(modelreg_oci), ignore = "needs MODELREG_TEST_OCI_REGISTRY")]
async fn push_then_pull_into_another_registry_gives_identical_files() {
    let source = Registry::in_memory();
    let files = source_version(&source).await;
    let reference = format!("{}:v1", repository());
    let pushed = source
        .push_oci("fraud/1", &reference, &options(), vec![])
        .await
        .expect("push");
    assert_eq!(pushed.layers, 4);
    assert_eq!(pushed.layers_present, 0);
    assert_eq!(
        pushed.bytes,
        files.values().map(|f| f.len() as u64).sum::<u64>()
    );
    assert!(pushed.digest.starts_with("sha256:"), "{}", pushed.digest);

    let again = source
        .push_oci("fraud/1", &reference, &options(), vec![])
        .await
        .expect("push again");
    assert_eq!(
        again.digest, pushed.digest,
        "the same version, the same manifest"
    );
    assert_eq!(again.layers_present, 4);

    let tmp = tempfile::tempdir().expect("tmp");
    let target = Registry::open_local(tmp.path().join("registry"))
        .await
        .expect("open");
    let pulled = target
        .acting_as(me())
        .pull_oci(&reference, "copy", &options(), NewVersion::new())
        .await
        .expect("pull");
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(pulled.files, 4);
    let v = &pulled.version;
    assert_eq!((v.model.as_str(), v.number.get()), ("copy", 1));
    let tag = |k: &str| v.tags.get(&TagKey::new(k).expect("key")).cloned();
    assert_eq!(tag("oci.source"), Some(reference.clone()));
    assert_eq!(tag("oci.digest"), Some(pushed.digest.clone()));
    assert_eq!(tag("team").as_deref(), Some("risk"));
    assert_eq!(v.description, "retrained on November data");
    assert_eq!(v.metrics.get("auc"), Some(0.93));
    assert_eq!(v.provenance.environment.frameworks["torch"], "2.4.1");
    assert!(v.provenance.hyperparameters.contains_key("lr"));

    let out = tmp.path().join("out");
    target
        .fetch("copy/1", &out, Default::default())
        .await
        .expect("fetch");
    assert_eq!(files_of(&out), files);
    // The same bytes, so the same artifact id as the source's version.
    assert_eq!(
        v.artifact,
        source.resolve("fraud/1").await.expect("resolve").artifact
    );

    // By digest too.
    let by_digest = format!(
        "{}@{}",
        reference.rsplit_once(':').expect("tag").0,
        pushed.digest
    );
    let again = target
        .acting_as(me())
        .pull_oci(
            &by_digest,
            "copy",
            &options(),
            NewVersion::new().semver("1.0.0"),
        )
        .await
        .expect("pull by digest");
    assert_eq!(again.version.number.get(), 2);
    assert_eq!(again.version.artifact, v.artifact);
}

/// What the registry holds is a ModelPack artifact other tools read: the
/// manifest's artifact type, config and layer media types, path annotations
/// and SHA-256 digests, read back with the OCI client crate itself.
#[tokio::test]
#[cfg_attr(not(modelreg_oci), ignore = "needs MODELREG_TEST_OCI_REGISTRY")]
async fn the_pushed_manifest_is_modelpack() {
    let source = Registry::in_memory();
    let files = source_version(&source).await;
    let reference = format!("{}:v1", repository());
    source
        .push_oci("fraud/1", &reference, &options(), vec![])
        .await
        .expect("push");
    let (client, r) = raw_client(&reference);
    let (manifest, _) = client
        .pull_manifest_raw(
            &r,
            &oci_client::secrets::RegistryAuth::Anonymous,
            &["application/vnd.oci.image.manifest.v1+json"],
        )
        .await
        .expect("manifest");
    let m: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    assert_eq!(m["artifactType"], modelreg::oci::MODEL_ARTIFACT_TYPE);
    assert_eq!(
        m["config"]["mediaType"],
        modelreg::oci::MODEL_CONFIG_MEDIA_TYPE
    );
    let layers = m["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), files.len());
    for l in layers {
        let path = l["annotations"][modelreg::oci::FILEPATH_ANNOTATION]
            .as_str()
            .expect("path");
        assert_eq!(l["annotations"][modelreg::oci::TITLE_ANNOTATION], path);
        let want = format!("sha256:{}", Sha256::of(&files[path]).to_hex());
        assert_eq!(l["digest"], want.as_str(), "{path}");
        assert_eq!(l["size"], files[path].len() as u64, "{path}");
    }
    let kinds: Vec<_> = layers
        .iter()
        .map(|l| {
            (
                l["annotations"][modelreg::oci::FILEPATH_ANNOTATION]
                    .as_str()
                    .unwrap_or_default(),
                l["mediaType"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(kinds.contains(&(
        "weights/model.safetensors",
        "application/vnd.cncf.model.weight.v1.raw"
    )));
    assert!(kinds.contains(&(
        "config.json",
        "application/vnd.cncf.model.weight.config.v1.raw"
    )));
    assert!(kinds.contains(&("README.md", "application/vnd.cncf.model.doc.v1.raw")));

    let config_digest = m["config"]["digest"].as_str().expect("digest").to_owned();
    let mut config = Vec::new();
    client
        .pull_blob(&r, config_digest.as_str(), &mut config)
        .await
        .expect("config");
    let c: serde_json::Value = serde_json::from_slice(&config).expect("config json");
    assert_eq!(c["descriptor"]["name"], "fraud");
    assert_eq!(c["descriptor"]["version"], "1");
    assert_eq!(c["descriptor"]["authors"][0], "trainer");
    assert_eq!(c["config"]["format"], "safetensors");
    assert_eq!(c["modelfs"]["type"], "layers");
    let diff_ids: Vec<_> = layers.iter().map(|l| l["digest"].clone()).collect();
    assert_eq!(c["modelfs"]["diffIds"], serde_json::Value::Array(diff_ids));
}

fn raw_client(reference: &str) -> (oci_client::Client, oci_client::Reference) {
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    (client, reference.parse().expect("reference"))
}

/// Referrers on a registry without the Referrers API: each is added to the
/// tag schema's index (`sha256-<hex>`), the first is kept when a second is
/// attached, attaching the same bytes again adds nothing, and the OCI client's
/// own referrers listing finds them with their artifact types and bytes.
#[tokio::test]
#[cfg_attr(not(modelreg_oci), ignore = "needs MODELREG_TEST_OCI_REGISTRY")]
async fn referrers_are_attached_through_the_tag_schema_and_discoverable() {
    let source = Registry::in_memory();
    source_version(&source).await;
    let reference = format!("{}:v1", repository());
    let bundle = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#;
    let pushed = source
        .push_oci(
            "fraud/1",
            &reference,
            &options(),
            vec![Referrer::new(SIGSTORE, &bundle[..]).annotation("dev.modelreg.signer", "ci")],
        )
        .await
        .expect("push");
    let tag = format!("sha256-{}", pushed.digest.trim_start_matches("sha256:"));
    assert_eq!(pushed.referrers.len(), 1);
    assert_eq!(pushed.referrers[0].subject, pushed.digest);
    assert_eq!(
        pushed.referrers[0].index,
        ReferrersIndex::TagSchema { tag: tag.clone() }
    );

    let sbom = source
        .attach_oci_referrer(
            &reference,
            Referrer::new("application/spdx+json", "{\"spdxVersion\":\"SPDX-2.3\"}"),
            &options(),
        )
        .await
        .expect("attach");
    assert_eq!(sbom.subject, pushed.digest);
    let again = source
        .attach_oci_referrer(
            &reference,
            Referrer::new(SIGSTORE, &bundle[..]).annotation("dev.modelreg.signer", "ci"),
            &options(),
        )
        .await
        .expect("attach again");
    assert_eq!(again.digest, pushed.referrers[0].digest);
    // Listed already, and through the tag schema: this registry has no API.
    assert_eq!(again.index, ReferrersIndex::TagSchema { tag: tag.clone() });

    let (client, r) = raw_client(&reference);
    let subject = oci_client::Reference::with_digest(
        r.registry().to_owned(),
        r.repository().to_owned(),
        pushed.digest.clone(),
    );
    let index = client
        .pull_referrers(&subject, None)
        .await
        .expect("referrers");
    let mut listed: Vec<_> = index
        .manifests
        .iter()
        .map(|m| {
            (
                m.artifact_type.clone().unwrap_or_default(),
                m.digest.clone(),
            )
        })
        .collect();
    listed.sort();
    let mut want = vec![
        (SIGSTORE.to_owned(), pushed.referrers[0].digest.clone()),
        ("application/spdx+json".to_owned(), sbom.digest.clone()),
    ];
    want.sort();
    assert_eq!(listed, want);

    // The referrer's manifest names the subject and carries the bytes.
    let (m, blob) = referrer_at(&client, &r, &pushed.referrers[0].digest).await;
    assert_eq!(m["subject"]["digest"], pushed.digest.as_str());
    assert_eq!(m["artifactType"], SIGSTORE);
    assert_eq!(m["annotations"]["dev.modelreg.signer"], "ci");
    assert_eq!(blob, bundle);
    // The fallback tag itself holds an image index.
    let (raw, _) = client
        .pull_manifest_raw(
            &oci_client::Reference::with_tag(
                r.registry().to_owned(),
                r.repository().to_owned(),
                tag,
            ),
            &oci_client::secrets::RegistryAuth::Anonymous,
            &["application/vnd.oci.image.index.v1+json"],
        )
        .await
        .expect("index");
    let idx: serde_json::Value = serde_json::from_slice(&raw).expect("json");
    assert_eq!(idx["manifests"].as_array().map(Vec::len), Some(2));
}

/// The referrer manifest at `digest` in `r`'s repository, and the bytes of
/// its one layer.
async fn referrer_at(
    client: &oci_client::Client,
    r: &oci_client::Reference,
    digest: &str,
) -> (serde_json::Value, Vec<u8>) {
    let at = oci_client::Reference::with_digest(
        r.registry().to_owned(),
        r.repository().to_owned(),
        digest.to_owned(),
    );
    let (raw, _) = client
        .pull_manifest_raw(
            &at,
            &oci_client::secrets::RegistryAuth::Anonymous,
            &["application/vnd.oci.image.manifest.v1+json"],
        )
        .await
        .expect("referrer manifest");
    let m: serde_json::Value = serde_json::from_slice(&raw).expect("json");
    let mut blob = Vec::new();
    client
        .pull_blob(
            r,
            m["layers"][0]["digest"].as_str().expect("digest"),
            &mut blob,
        )
        .await
        .expect("blob");
    (m, blob)
}

/// The `oras` Python SDK pulls what modelreg pushed: every file, byte for byte,
/// at its path.
#[test]
#[cfg_attr(
    not(all(modelreg_oci, modelreg_pyclients)),
    ignore = "needs MODELREG_TEST_OCI_REGISTRY and MODELREG_TEST_PYTHON (with oras)"
)]
fn oras_pulls_what_modelreg_pushed() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let source = Registry::in_memory();
    let files = rt.block_on(source_version(&source));
    let reference = format!("{}:v1", repository());
    rt.block_on(source.push_oci("fraud/1", &reference, &options(), vec![]))
        .expect("push");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let python = std::env::var("MODELREG_TEST_PYTHON").expect("MODELREG_TEST_PYTHON");
    let script = r#"
import sys, oras.client
client = oras.client.OrasClient(insecure=True)
for f in client.pull(target=sys.argv[1], outdir=sys.argv[2]):
    print(f)
"#;
    let run = std::process::Command::new(python)
        .args(["-c", script, &reference])
        .arg(&out)
        .output()
        .expect("python");
    assert!(
        run.status.success(),
        "oras pull failed: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(files_of(&out), files);
}

/// Pushes a hand-made manifest (with its blobs) under `reference`.
async fn push_raw(reference: &str, manifest: serde_json::Value, blobs: &[&[u8]]) {
    let (client, r) = raw_client(reference);
    for b in blobs {
        let digest = format!("sha256:{}", Sha256::of(b).to_hex());
        client
            .push_blob(&r, b.to_vec(), &digest)
            .await
            .expect("blob");
    }
    client
        .push_manifest_raw(
            &r,
            serde_json::to_vec(&manifest).expect("json"),
            reqwest::header::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
        )
        .await
        .expect("manifest");
}

fn descriptor(media_type: &str, bytes: &[u8], path: Option<&str>) -> serde_json::Value {
    let mut d = serde_json::json!({
        "mediaType": media_type,
        "digest": format!("sha256:{}", Sha256::of(bytes).to_hex()),
        "size": bytes.len(),
    });
    if let Some(p) = path {
        d["annotations"] = serde_json::json!({ "org.cncf.model.filepath": p });
    }
    d
}

fn modelpack(layers: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": descriptor("application/vnd.cncf.model.config.v1+json", CONFIG, None),
        "layers": layers,
    })
}

const CONFIG: &[u8] =
    br#"{"descriptor":{"name":"evil"},"config":{},"modelfs":{"type":"layers","diffIds":[]}}"#;
const WEIGHT: &str = "application/vnd.cncf.model.weight.v1.raw";

/// Pulling `reference` fails as `check` says, and leaves nothing registered.
async fn pull_refused(reference: &str, check: impl FnOnce(&Error) -> bool) {
    let target = Registry::in_memory();
    let err = target
        .acting_as(me())
        .pull_oci(reference, "evil", &options(), NewVersion::new())
        .await
        .expect_err("refused");
    assert!(check(&err), "{err:?}");
    assert!(
        target.list_models().await.expect("list").is_empty(),
        "nothing may be registered after {err}"
    );
}

/// Hostile and foreign artifacts: a layer path that climbs out (`../x`), an
/// absolute one, a layer whose size differs from its bytes, a plain container
/// image, a Docker-style manifest without ModelPack types. Each is a typed
/// error and nothing is registered.
#[tokio::test]
#[cfg_attr(not(modelreg_oci), ignore = "needs MODELREG_TEST_OCI_REGISTRY")]
async fn hostile_and_foreign_artifacts_are_refused_and_nothing_is_registered() {
    let repo = repository();
    let w: &[u8] = b"weights";
    for (tag, path) in [
        ("climb", "../x"),
        ("absolute", "/etc/passwd"),
        ("deep", "a/../../b"),
    ] {
        let reference = format!("{repo}:{tag}");
        push_raw(
            &reference,
            modelpack(vec![descriptor(WEIGHT, w, Some(path))]),
            &[CONFIG, w],
        )
        .await;
        pull_refused(&reference, |e| matches!(e, Error::InvalidPath { .. })).await;
    }

    // Two layers at one path.
    let reference = format!("{repo}:twice");
    push_raw(
        &reference,
        modelpack(vec![
            descriptor(WEIGHT, w, Some("m.bin")),
            descriptor(WEIGHT, b"other", Some("m.bin")),
        ]),
        &[CONFIG, w, b"other"],
    )
    .await;
    pull_refused(&reference, |e| matches!(e, Error::InvalidPath { .. })).await;

    // A descriptor whose size is not its blob's.
    let reference = format!("{repo}:size");
    let mut d = descriptor(WEIGHT, w, Some("m.bin"));
    d["size"] = serde_json::json!(w.len() + 5);
    push_raw(&reference, modelpack(vec![d]), &[CONFIG, w]).await;
    pull_refused(&reference, |e| {
        matches!(
            e,
            Error::Oci {
                problem: OciProblem::DigestMismatch,
                ..
            }
        )
    })
    .await;

    // A plain container image.
    let reference = format!("{repo}:image");
    let image_config: &[u8] =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    push_raw(
        &reference,
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", image_config, None),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", w, None)],
        }),
        &[image_config, w],
    )
    .await;
    pull_refused(&reference, |e| {
        matches!(
            e,
            Error::Oci {
                problem: OciProblem::NotModelPack,
                ..
            }
        )
    })
    .await;

    // A tag that does not exist.
    pull_refused(&format!("{repo}:missing"), |e| {
        matches!(
            e,
            Error::Oci {
                problem: OciProblem::NotFound,
                ..
            }
        )
    })
    .await;
}

/// A layer whose stored bytes were changed in the registry's storage (same
/// size, other content): the SHA-256 check on download refuses it.
#[tokio::test]
#[cfg_attr(not(modelreg_oci), ignore = "needs MODELREG_TEST_OCI_REGISTRY")]
async fn a_layer_whose_bytes_do_not_match_its_digest_is_refused() {
    let Some(storage) = std::env::var_os("MODELREG_TEST_OCI_STORAGE").map(PathBuf::from) else {
        assert!(
            !common::servers::in_ci(),
            "CI must set MODELREG_TEST_OCI_STORAGE (the registry's storage directory)"
        );
        eprintln!("MODELREG_TEST_OCI_STORAGE not set: the corruption case is skipped");
        return;
    };
    let repo = repository();
    let reference = format!("{repo}:v1");
    let w = format!(
        "weights only this test stores {}",
        common::servers::unique_name()
    );
    push_raw(
        &reference,
        modelpack(vec![descriptor(WEIGHT, w.as_bytes(), Some("m.bin"))]),
        &[CONFIG, w.as_bytes()],
    )
    .await;
    let hex = Sha256::of(w.as_bytes()).to_hex();
    let data = storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut bytes = std::fs::read(&data).expect("stored blob");
    bytes[0] ^= 0xff;
    std::fs::write(&data, &bytes).expect("corrupt");
    pull_refused(&reference, |e| {
        matches!(
            e,
            Error::Oci {
                problem: OciProblem::DigestMismatch,
                ..
            }
        )
    })
    .await;
}

/// A registry nobody listens at is unreachable, typed, and nothing is
/// registered; a reference that does not parse is invalid input. Neither
/// needs a registry.
#[tokio::test]
async fn an_unreachable_registry_and_a_bad_reference_are_typed_errors() {
    // Port 9 (discard) on localhost: nothing listens there in a test machine.
    let reference = "127.0.0.1:9/modelreg/fraud:v1";
    pull_refused(reference, |e| {
        matches!(
            e,
            Error::Oci {
                problem: OciProblem::Unreachable,
                operation: "pull",
                ..
            }
        )
    })
    .await;
    let source = Registry::in_memory();
    source_version(&source).await;
    let err = source
        .push_oci("fraud/1", reference, &options(), vec![])
        .await
        .expect_err("unreachable");
    assert!(
        matches!(
            err,
            Error::Oci {
                problem: OciProblem::Unreachable,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err!(
        source
            .push_oci("fraud/1", "Not A Reference!", &options(), vec![])
            .await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        source
            .push_oci("fraud/9", reference, &options(), vec![])
            .await,
        Error::NotFound { .. }
    );
}

/// A signed version is pushed with its OMS bundles as referrers: each bundle's
/// bytes, its artifact type and its key id reach the OCI registry, where any
/// referrers client finds them.
#[tokio::test]
#[cfg_attr(not(modelreg_oci), ignore = "needs MODELREG_TEST_OCI_REGISTRY")]
async fn a_signed_version_is_pushed_with_its_signatures_as_referrers() {
    let source = Registry::in_memory();
    source_version(&source).await;
    let key = modelreg::signing::SigningKey::generate();
    let sig = source
        .acting_as(me())
        .sign_version("fraud/1", &key, "evaluated")
        .await
        .expect("sign");
    let reference = format!("{}:signed", repository());
    let pushed = source
        .push_oci("fraud/1", &reference, &options(), Vec::new())
        .await
        .expect("push");
    assert_eq!(pushed.referrers.len(), 1, "{pushed:?}");
    let tag = format!("sha256-{}", pushed.digest.trim_start_matches("sha256:"));
    assert_eq!(
        pushed.referrers[0].index,
        ReferrersIndex::TagSchema { tag: tag.clone() }
    );
    // Pushing again finds the signature in the tag schema's index, says so
    // (distribution 2.8 has no Referrers API to credit), and adds no entry.
    let again = source
        .push_oci("fraud/1", &reference, &options(), Vec::new())
        .await
        .expect("push again");
    assert_eq!(again.digest, pushed.digest);
    assert_eq!(again.referrers.len(), 1, "{again:?}");
    assert_eq!(again.referrers[0].digest, pushed.referrers[0].digest);
    assert_eq!(again.referrers[0].index, ReferrersIndex::TagSchema { tag });
    let json = serde_json::to_value(&again.referrers[0]).expect("json");
    assert_eq!(json["index"]["via"], "tag_schema", "{json}");

    let (client, r) = raw_client(&reference);
    let subject = oci_client::Reference::with_digest(
        r.registry().to_owned(),
        r.repository().to_owned(),
        pushed.digest.clone(),
    );
    let index = client
        .pull_referrers(&subject, None)
        .await
        .expect("referrers");
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(
        index.manifests[0].artifact_type.as_deref(),
        Some(modelreg::signing::BUNDLE_MEDIA_TYPE)
    );
    let (m, blob) = referrer_at(&client, &r, &index.manifests[0].digest).await;
    assert_eq!(m["subject"]["digest"], pushed.digest.as_str());
    assert_eq!(
        m["annotations"][modelreg::oci::SIGNATURE_KEY_ANNOTATION],
        key.id().as_str()
    );
    assert_eq!(
        m["annotations"][modelreg::oci::SIGNATURE_REASON_ANNOTATION],
        "evaluated"
    );
    let stored = source
        .signature_bundle("fraud/1", sig.bundle)
        .await
        .expect("bundle");
    assert_eq!(blob, stored);
    // What the registry holds verifies against the version's files.
    let manifest = source.manifest("fraud/1").await.expect("manifest");
    modelreg::signing::verify_bundle(&blob, &manifest, &[key.public_key().clone()])
        .expect("the pushed bundle verifies");
}
