//! Interop with the real OpenSSF `model-signing` Python package (PyPI, 1.x):
//! bundles modelreg makes verify with `model_signing verify key`, and bundles
//! `model_signing sign key` makes for a directory verify in modelreg once the
//! same directory is registered.
//!
//! Runs when `MODELREG_TEST_PYTHON` names a Python with `model-signing` and
//! `pyopenssl` installed (`bash .ci/run` sets it up); ignored otherwise, and
//! `model_signing_configured_in_ci` fails in CI if it is missing.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use modelreg::signing::{PublicKey, SigningKey, TrustPolicy};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Error, FetchOptions, NewVersion, Registry, SignatureFailure,
};

fn python() -> String {
    std::env::var("MODELREG_TEST_PYTHON").expect("MODELREG_TEST_PYTHON")
}

/// `python -m model_signing ARGS…`.
fn model_signing(args: &[&str]) -> Output {
    Command::new(python())
        .args(["-m", "model_signing"])
        .args(args)
        .output()
        .expect("run model_signing")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_model(dir: &Path) {
    std::fs::create_dir_all(dir.join("tokenizer")).expect("mkdir");
    std::fs::write(dir.join("config.json"), br#"{"hidden": 8}"#).expect("write");
    std::fs::write(dir.join("tokenizer/vocab.txt"), b"a\nb\nc\n").expect("write");
    let weights: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("weights.bin"), weights).expect("write");
}

async fn registry_with_model(dir: &Path) -> (Registry, modelreg::VersionRecord) {
    let reg = Registry::in_memory();
    let me = reg.acting_as(Actor::new("ci").expect("actor"));
    me.create_model("interop", CreateModel::new())
        .await
        .expect("create");
    let v = me
        .register("interop", ArtifactSource::dir(dir), NewVersion::new())
        .await
        .expect("register")
        .version;
    (reg, v)
}

#[cfg_attr(
    not(modelreg_model_signing),
    ignore = "needs MODELREG_TEST_PYTHON with model-signing (bash .ci/run sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_modelreg_makes_verify_with_model_signing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    write_model(&src);
    let (reg, v) = registry_with_model(&src).await;
    let key = SigningKey::generate();
    let sig = reg
        .acting_as(Actor::new("trainer").expect("actor"))
        .sign_version(&v, &key, "trained")
        .await
        .expect("sign");
    let bundle = reg.signature_bundle(&v, sig.bundle).await.expect("bundle");
    let (sig_path, pub_path) = (tmp.path().join("model.sig"), tmp.path().join("key.pub.pem"));
    std::fs::write(&sig_path, &bundle).expect("write");
    std::fs::write(&pub_path, key.public_key().to_pem()).expect("write");
    // A fresh checkout of the version, as an inference server would get it.
    let checkout = tmp.path().join("checkout");
    reg.fetch(&v, &checkout, FetchOptions::new())
        .await
        .expect("fetch");
    let verify = |dir: &Path, public: &Path| {
        model_signing(&[
            "verify",
            "key",
            dir.to_str().expect("utf-8"),
            "--signature",
            sig_path.to_str().expect("utf-8"),
            "--public_key",
            public.to_str().expect("utf-8"),
        ])
    };
    let out = verify(&checkout, &pub_path);
    assert!(out.status.success(), "{}", text(&out));

    // The verifier is not a rubber stamp: a changed file, an extra file and
    // another key all fail.
    let other = tmp.path().join("other.pub.pem");
    std::fs::write(&other, SigningKey::generate().public_key().to_pem()).expect("write");
    let out = verify(&checkout, &other);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::write(checkout.join("extra.txt"), b"x").expect("write");
    let out = verify(&checkout, &pub_path);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::remove_file(checkout.join("extra.txt")).expect("rm");
    let mut weights = std::fs::read(checkout.join("weights.bin")).expect("read");
    weights[0] ^= 1;
    let path = checkout.join("weights.bin");
    let mut perms = std::fs::metadata(&path).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).expect("chmod");
    std::fs::write(&path, weights).expect("write");
    let out = verify(&checkout, &pub_path);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[cfg_attr(
    not(modelreg_model_signing),
    ignore = "needs MODELREG_TEST_PYTHON with model-signing (bash .ci/run sets it)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_model_signing_makes_verify_in_modelreg() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    write_model(&src);
    // model_signing signs with a key it is given: one of ours, as PKCS#8 PEM.
    let key = SigningKey::generate();
    let key_path = tmp.path().join("key.pem");
    std::fs::write(&key_path, key.to_pem()).expect("write");
    let sig_path = tmp.path().join("model.sig");
    let out = model_signing(&[
        "sign",
        "key",
        src.to_str().expect("utf-8"),
        "--private_key",
        key_path.to_str().expect("utf-8"),
        "--signature",
        sig_path.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let bundle = std::fs::read(&sig_path).expect("read");

    let (reg, v) = registry_with_model(&src).await;
    let me = reg.acting_as(Actor::new("release").expect("actor"));
    let public: &PublicKey = key.public_key();
    // Another key: refused, nothing recorded.
    let wrong = SigningKey::generate();
    let e = me
        .add_signature(&v, bundle.clone(), wrong.public_key(), "")
        .await
        .expect_err("wrong key");
    assert!(
        matches!(
            e,
            Error::Signature {
                failure: SignatureFailure::UnknownKey,
                ..
            }
        ),
        "{e:?}"
    );
    let s = me
        .add_signature(&v, bundle.clone(), public, "signed by model_signing")
        .await
        .expect("attach");
    assert_eq!(&s.key, key.id());
    let report = reg
        .verify_signatures(&v, &TrustPolicy::new().key(public))
        .await
        .expect("verify");
    assert!(report.passes(), "{report:?}");

    // The same bundle does not fit a version with one more file.
    std::fs::write(src.join("extra.txt"), b"x").expect("write");
    let v2 = me
        .register("interop", ArtifactSource::dir(&src), NewVersion::new())
        .await
        .expect("register")
        .version;
    let e = me
        .add_signature(&v2, bundle, public, "")
        .await
        .expect_err("extra file");
    assert!(
        matches!(
            e,
            Error::Signature {
                failure: SignatureFailure::FilesMismatch,
                ..
            }
        ),
        "{e:?}"
    );
}

/// In CI the real `model-signing` package must be there: the interop tests
/// are ignored without it, which must not pass unnoticed.
#[test]
fn model_signing_configured_in_ci() {
    if !common::servers::in_ci() {
        return;
    }
    if !cfg!(modelreg_model_signing) {
        panic!(
            "CI is set but MODELREG_TEST_PYTHON was not set when the tests were built, so the \
             model-signing interop tests are ignored; .ci/run installs it"
        );
    }
    let out = Command::new(python())
        .args(["-c", "import model_signing, OpenSSL; print('ok')"])
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", text(&out));
}
