//! Signed versions, written once: signing and attaching OMS bundles, verifying
//! them against a trust policy, the `signed` gate and fetches that require
//! signatures. Instantiated for every backend by `tests/registry_behaviour.rs`
//! (listed with the lifecycle tests, re-exported from `lifecycle_suite`).

use modelreg::signing::{KeyId, PublicKey, SigningKey, TrustPolicy, verify_bundle};
use modelreg::{
    ArtifactSource, Error, EventKind, FetchOptions, GateSpec, HistoryFilter, NewVersion, Registry,
    SignatureFailure, Stage, VersionRecord,
};

use super::backends::Fixture;
use super::lifecycle_suite::{refused, snapshot, verdict};
use super::registry_suite::{actor, create, register_bytes};

/// The fixtures `model_signing` 1.1.1 made (tests/fixtures/model-signing).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model-signing");

/// A fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// The public key the fixtures were signed with.
pub fn their_key() -> PublicKey {
    PublicKey::from_pem(&String::from_utf8(fixture("model-signing-key.pub.pem")).expect("utf-8"))
        .expect("pem")
}

/// Registers the fixture directory `tiny-model` as the next version of `model`.
pub async fn register_tiny_model(reg: &Registry, model: &str) -> VersionRecord {
    reg.acting_as(actor("ci"))
        .register(
            model,
            ArtifactSource::dir(format!("{FIXTURES}/tiny-model")),
            NewVersion::new(),
        )
        .await
        .expect("register tiny-model")
        .version
}

fn signature_failure(e: Error) -> SignatureFailure {
    match e {
        Error::Signature { failure, .. } => failure,
        other => panic!("expected Error::Signature, got {other:?}"),
    }
}

pub async fn signing_records_audited_signatures_that_verify(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "sig").await;
    let v = register_tiny_model(&reg, "sig").await;
    let (trainer, evaluator, outsider) = (
        SigningKey::generate(),
        SigningKey::generate(),
        SigningKey::generate(),
    );
    let s1 = reg
        .acting_as(actor("trainer"))
        .sign_version(&v, &trainer, "trained")
        .await
        .expect("sign");
    let s2 = reg
        .acting_as(actor("evaluator"))
        .sign_version("sig/1", &evaluator, "evaluated")
        .await
        .expect("sign");
    assert_eq!(
        (&s1.key, s1.by.as_str(), s1.reason.as_str()),
        (trainer.id(), "trainer", "trained")
    );
    assert_eq!(s1.public_key, trainer.public_key().to_pem());
    assert_eq!(s1.hash, modelreg::signing::FileHash::Sha256);
    // Another process sees both, in order, and the log has the events.
    let other = f.fresh().await;
    assert_eq!(
        other.signatures("sig/1").await.expect("signatures"),
        [s1.clone(), s2.clone()]
    );
    let trail = other
        .history("sig", &HistoryFilter::new().kind("signature_added"))
        .await
        .expect("history");
    assert_eq!(trail.len(), 2);
    assert!(matches!(&trail[0].kind,
        EventKind::SignatureAdded { key, bundle, reason, .. }
            if key == evaluator.id() && *bundle == s2.bundle && reason == "evaluated"));
    assert_eq!(trail[0].actor.as_str(), "evaluator");

    // The stored bundles are OMS bundles of exactly these files.
    let manifest = other.manifest("sig/1").await.expect("manifest");
    let bundles = other.signature_bundles("sig/1").await.expect("bundles");
    assert_eq!(bundles.len(), 2);
    assert_eq!(
        bundles[0].media_type,
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let verified = verify_bundle(
        &bundles[0].bytes,
        &manifest,
        &[trainer.public_key().clone()],
    )
    .expect("verifies");
    assert_eq!((&verified.key, verified.files), (trainer.id(), 3));
    assert_eq!(
        other
            .signature_bundle("sig/1", s2.bundle)
            .await
            .expect("bundle"),
        bundles[1].bytes
    );
    assert!(matches!(
        other
            .signature_bundle("sig/1", modelreg::Digest::of(b"no"))
            .await,
        Err(Error::NotFound { .. })
    ));

    // Policies.
    let both = TrustPolicy::new()
        .key(trainer.public_key())
        .key_id(evaluator.id().clone())
        .min(2);
    let report = other
        .verify_signatures("sig/1", &both)
        .await
        .expect("verify");
    assert!(report.passes(), "{report:?}");
    assert_eq!(report.trusted.len(), 2);
    assert!(report.checks.iter().all(|c| c.valid && c.trusted));
    let strangers = TrustPolicy::new().key(outsider.public_key());
    let report = other
        .verify_signatures("sig/1", &strangers)
        .await
        .expect("verify");
    assert!(!report.passes());
    assert!(report.checks.iter().all(|c| c.valid && !c.trusted));
    assert_eq!(
        signature_failure(report.into_result().expect_err("refused")),
        SignatureFailure::PolicyNotMet
    );

    // The same key signing the same files again makes the same bundle.
    let before = snapshot(&reg, "sig").await;
    assert!(matches!(
        reg.acting_as(actor("trainer"))
            .sign_version("sig/1", &trainer, "again")
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(snapshot(&reg, "sig").await, before);
}

pub async fn external_bundles_attach_only_when_they_match(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "ext").await;
    let v = register_tiny_model(&reg, "ext").await;
    let other_files = register_bytes(&reg, "ext", "weights.bin", "other bytes").await;
    let me = reg.acting_as(actor("release"));
    let bundle = fixture("model-signing-key.sig.json");
    let before = snapshot(&reg, "ext").await;

    // Hostile and mistaken bundles: typed refusals, nothing recorded.
    let wrong_key = SigningKey::generate();
    let cases: Vec<(&str, Vec<u8>, PublicKey, SignatureFailure, u64)> = vec![
        (
            "wrong key",
            bundle.clone(),
            wrong_key.public_key().clone(),
            SignatureFailure::UnknownKey,
            1,
        ),
        (
            "other files",
            bundle.clone(),
            their_key(),
            SignatureFailure::FilesMismatch,
            other_files.number.get(),
        ),
        (
            "tampered payload",
            tamper_payload(&bundle),
            their_key(),
            SignatureFailure::BadSignature,
            1,
        ),
        (
            "malformed JSON",
            bundle[..bundle.len() / 2].to_vec(),
            their_key(),
            SignatureFailure::Malformed,
            1,
        ),
    ];
    for (what, bytes, key, expected, n) in cases {
        let e = me
            .add_signature(format!("ext/{n}"), bytes, &key, what)
            .await
            .expect_err(what);
        assert_eq!(signature_failure(e), expected, "{what}");
    }
    assert_eq!(snapshot(&reg, "ext").await, before);

    // The real bundles, SHA-256 and BLAKE3.
    let s = me
        .add_signature(&v, bundle.clone(), &their_key(), "signed by model_signing")
        .await
        .expect("attach");
    assert_eq!(&s.key, their_key().id());
    assert_eq!(s.hash, modelreg::signing::FileHash::Sha256);
    let b3 = me
        .add_signature(
            &v,
            fixture("model-signing-key-blake3.sig.json"),
            &their_key(),
            "",
        )
        .await
        .expect("attach blake3");
    assert_eq!(b3.hash, modelreg::signing::FileHash::Blake3);
    // The bytes are kept as given.
    assert_eq!(
        reg.signature_bundle("ext/1", s.bundle)
            .await
            .expect("bundle"),
        bundle
    );
    let policy = TrustPolicy::new().key(&their_key());
    let report = f
        .fresh()
        .await
        .verify_signatures("ext/1", &policy)
        .await
        .expect("verify");
    assert_eq!(report.trusted, [their_key().id().clone()]);
}

/// The fixture bundle with one file digest changed in its payload: well-formed,
/// and for other bytes than the ones signed.
pub fn tamper_payload(bundle: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut json: serde_json::Value = serde_json::from_slice(bundle).expect("json");
    let payload = b64
        .decode(json["dsseEnvelope"]["payload"].as_str().expect("payload"))
        .expect("base64");
    let text = String::from_utf8(payload)
        .expect("utf-8")
        .replace("785b0751", "00000000");
    json["dsseEnvelope"]["payload"] = b64.encode(text).into();
    serde_json::to_vec(&json).expect("json")
}

pub async fn signed_gate_counts_distinct_accepted_keys(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "gate").await;
    let v = register_tiny_model(&reg, "gate").await;
    let (trainer, approver, outsider) = (
        SigningKey::generate(),
        SigningKey::generate(),
        SigningKey::generate(),
    );
    let alice = reg.acting_as(actor("alice"));
    let by: Vec<KeyId> = vec![trainer.id().clone(), approver.id().clone()];
    // Impossible specs are refused.
    for bad in [
        GateSpec::Signed { by: vec![], min: 0 },
        GateSpec::Signed {
            by: by.clone(),
            min: 3,
        },
    ] {
        assert!(matches!(
            alice.set_gates("gate", Stage::Staging, vec![bad]).await,
            Err(Error::InvalidInput { .. })
        ));
    }
    alice
        .set_gates(
            "gate",
            Stage::Staging,
            vec![GateSpec::Signed {
                by: by.clone(),
                min: 2,
            }],
        )
        .await
        .expect("gates");

    let before = snapshot(&reg, "gate").await;
    assert_eq!(
        refused(
            alice.transition(&v, Stage::Staging, "").await,
            "gate",
            1,
            Stage::Staging
        ),
        [verdict(
            "signed(2)",
            false,
            "v1 has 0 signature(s), none by a key the gate accepts (2 required)"
        )]
    );
    assert_eq!(snapshot(&reg, "gate").await, before);

    // One accepted key, and a key the gate does not list: still refused.
    alice.sign_version(&v, &trainer, "").await.expect("sign");
    alice.sign_version(&v, &outsider, "").await.expect("sign");
    assert_eq!(
        refused(
            alice.transition(&v, Stage::Staging, "").await,
            "gate",
            1,
            Stage::Staging
        ),
        [verdict(
            "signed(2)",
            false,
            &format!(
                "signed by 1 accepted key(s) ({}), 2 required",
                trainer.id().short()
            )
        )]
    );

    alice.sign_version(&v, &approver, "").await.expect("sign");
    let event = alice
        .transition(&v, Stage::Staging, "signed twice")
        .await
        .expect("moves");
    let mut short = [trainer.id().short(), approver.id().short()];
    short.sort();
    let EventKind::StageChanged { gates, .. } = &event.kind else {
        panic!("{event:?}")
    };
    assert_eq!(
        gates,
        &[verdict(
            "signed(2)",
            true,
            &format!("signed by 2 key(s): {}, {}", short[0], short[1])
        )]
    );
}

pub async fn fetch_with_a_trust_policy_hands_out_only_signed_versions(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "ft").await;
    let v = register_tiny_model(&reg, "ft").await;
    let key = SigningKey::generate();
    let policy = TrustPolicy::new().key(key.public_key());
    let dest = f.scratch().join("unsigned");
    let e = reg
        .fetch(&v, &dest, FetchOptions::new().trust(policy.clone()))
        .await
        .expect_err("unsigned");
    assert_eq!(signature_failure(e), SignatureFailure::PolicyNotMet);
    assert!(!dest.exists(), "nothing is written");
    // Without a policy the fetch is as before.
    reg.fetch(&v, &dest, FetchOptions::new())
        .await
        .expect("fetch");

    let s = reg
        .acting_as(actor("ci"))
        .sign_version(&v, &key, "")
        .await
        .expect("sign");
    let dest = f.scratch().join("signed");
    let report = reg
        .fetch("ft/1", &dest, FetchOptions::new().trust(policy.clone()))
        .await
        .expect("signed fetch");
    assert_eq!(report.files, 3);
    assert_eq!(
        std::fs::read(dest.join("weights.bin")).expect("read"),
        fixture("tiny-model/weights.bin")
    );

    // A bundle altered in the store no longer counts: nothing is handed out.
    let bytes = reg
        .signature_bundle("ft/1", s.bundle)
        .await
        .expect("bundle");
    f.corrupt_blob(&s.bundle, &tamper_payload(&bytes));
    let other = f.fresh().await;
    let report = other
        .verify_signatures("ft/1", &policy)
        .await
        .expect("verify");
    assert!(!report.passes());
    assert!(!report.checks[0].valid && report.checks[0].problem.is_some());
    let dest = f.scratch().join("tampered");
    let e = other
        .fetch("ft/1", &dest, FetchOptions::new().trust(policy))
        .await
        .expect_err("tampered");
    assert_eq!(signature_failure(e), SignatureFailure::PolicyNotMet);
    assert!(!dest.exists(), "nothing is written");
}

pub async fn model_cache_with_a_trust_policy_hands_out_only_signed_versions(f: &Fixture) {
    use modelreg::{CacheOptions, ModelCache};
    let reg = f.registry();
    create(&reg, "mc").await;
    let v = register_tiny_model(&reg, "mc").await;
    let key = SigningKey::generate();
    let root = f.scratch().join("cache");
    let plain = ModelCache::open(&root, reg.clone(), CacheOptions::new())
        .await
        .expect("open");
    // Cached by a reader without a policy: still refused to one with a policy.
    drop(plain.get("mc/1").await.expect("unsigned, no policy"));
    let strict = ModelCache::open(
        &root,
        reg.clone(),
        CacheOptions::new().trust(TrustPolicy::new().key(key.public_key())),
    )
    .await
    .expect("open");
    let e = strict.get("mc/1").await.expect_err("unsigned");
    assert_eq!(signature_failure(e), SignatureFailure::PolicyNotMet);
    reg.acting_as(actor("ci"))
        .sign_version(&v, &key, "")
        .await
        .expect("sign");
    let model = strict.get("mc/1").await.expect("signed");
    assert_eq!(
        std::fs::read(model.path().join("config.json")).expect("read"),
        fixture("tiny-model/config.json")
    );
}
