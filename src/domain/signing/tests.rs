//! Against the bundles the real `model_signing` 1.1.1 wrote for
//! `tests/fixtures/model-signing/tiny-model` (see the README there).

use super::*;
use crate::digest::Digest;
use crate::domain::manifest::{ManifestEntry, RelPath};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model-signing");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn entry(path: &str, bytes: &[u8]) -> ManifestEntry {
    ManifestEntry {
        path: RelPath::new(path).unwrap(),
        size: bytes.len() as u64,
        digest: Digest::of(bytes),
        sha256: Some(Sha256::of(bytes)),
    }
}

/// The tiny model's manifest, with `change` applied to its files first.
fn tiny_model_with(change: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Manifest {
    let mut files: Vec<(String, Vec<u8>)> = ["config.json", "tokenizer/vocab.txt", "weights.bin"]
        .iter()
        .map(|p| (p.to_string(), fixture(&format!("tiny-model/{p}"))))
        .collect();
    change(&mut files);
    Manifest::new(files.iter().map(|(p, b)| entry(p, b)).collect()).unwrap()
}

fn tiny_model() -> Manifest {
    tiny_model_with(|_| {})
}

fn their_key() -> PublicKey {
    PublicKey::from_pem(std::str::from_utf8(&fixture("model-signing-key.pub.pem")).unwrap())
        .unwrap()
}

fn failure_of(r: Result<Verified>) -> SignatureFailure {
    match r {
        Err(Error::Signature { failure, .. }) => failure,
        other => panic!("expected a signature error, got {other:?}"),
    }
}

#[test]
fn key_id_is_the_hint_model_signing_writes() {
    // `sha256sum model-signing-key.pub.pem`.
    assert_eq!(
        their_key().id().as_str(),
        "2f3e9b0b58da9bbc3e0e3b8efc3372a10fb07600eee3af82ab229a67a7f3dfa6"
    );
    assert_eq!(
        their_key().to_pem().as_bytes(),
        fixture("model-signing-key.pub.pem")
    );
}

#[test]
fn pae_is_the_dsse_encoding() {
    assert_eq!(
        pae(PAYLOAD_TYPE, b"{}"),
        b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

#[test]
fn model_signing_bundles_verify_sha256_and_blake3() {
    let v = verify_bundle(
        &fixture("model-signing-key.sig.json"),
        &tiny_model(),
        &[their_key()],
    )
    .unwrap();
    assert_eq!(
        (v.key.clone(), v.hash, v.subject.as_str(), v.files),
        (their_key().id().clone(), FileHash::Sha256, "tiny-model", 3)
    );
    let v = verify_bundle(
        &fixture("model-signing-key-blake3.sig.json"),
        &tiny_model(),
        &[their_key()],
    )
    .unwrap();
    assert_eq!(v.hash, FileHash::Blake3);
}

#[test]
fn other_files_fail_as_files_mismatch() {
    let bundle = fixture("model-signing-key.sig.json");
    let key = [their_key()];
    let appended = tiny_model_with(|f| f[2].1.push(0));
    assert_eq!(
        failure_of(verify_bundle(&bundle, &appended, &key)),
        SignatureFailure::FilesMismatch
    );
    let extra = tiny_model_with(|f| f.push(("extra.txt".into(), b"x".to_vec())));
    let err = verify_bundle(&bundle, &extra, &key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'extra.txt' is not signed"), "{err}");
    let fewer = tiny_model_with(|f| {
        f.remove(0);
    });
    let err = verify_bundle(&bundle, &fewer, &key)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'config.json' is signed but not a file"),
        "{err}"
    );
    // A version registered before SHA-256 digests were recorded cannot be
    // checked against a SHA-256 bundle.
    let old = Manifest::new(
        tiny_model()
            .entries()
            .iter()
            .map(|e| ManifestEntry {
                sha256: None,
                ..e.clone()
            })
            .collect(),
    )
    .unwrap();
    assert_eq!(
        failure_of(verify_bundle(&bundle, &old, &key)),
        SignatureFailure::FilesMismatch
    );
}

#[test]
fn another_key_fails() {
    let bundle = fixture("model-signing-key.sig.json");
    let other = SigningKey::generate();
    assert_eq!(
        failure_of(verify_bundle(
            &bundle,
            &tiny_model(),
            &[other.public_key().clone()]
        )),
        SignatureFailure::UnknownKey
    );
    assert_eq!(
        failure_of(verify_bundle(&bundle, &tiny_model(), &[])),
        SignatureFailure::UnknownKey
    );
    // A bundle claiming our key's id but signed by theirs does not verify.
    let text = String::from_utf8(bundle)
        .unwrap()
        .replace(their_key().id().as_str(), other.id().as_str());
    assert_eq!(
        failure_of(verify_bundle(
            text.as_bytes(),
            &tiny_model(),
            &[other.public_key().clone()]
        )),
        SignatureFailure::BadSignature
    );
}

/// Every byte of the bundle flipped, one at a time: nothing verifies but
/// what is the same bundle again (a flip in JSON whitespace, or in base64
/// padding bits, may leave the decoded bundle unchanged).
#[test]
fn a_flipped_byte_anywhere_is_refused_with_a_typed_error() {
    let bundle = fixture("model-signing-key.sig.json");
    let manifest = tiny_model();
    let key = [their_key()];
    let original = Bundle::parse(&bundle).unwrap();
    let mut accepted = 0;
    for i in 0..bundle.len() {
        let mut b = bundle.clone();
        b[i] ^= 0x01;
        match verify_bundle(&b, &manifest, &key) {
            Ok(_) => {
                let same = Bundle::parse(&b).unwrap();
                assert!(
                    same.payload == original.payload && same.signatures == original.signatures,
                    "byte {i} changed the bundle and it still verified"
                );
                accepted += 1;
            }
            Err(Error::Signature { .. }) => {}
            Err(e) => panic!("byte {i}: untyped refusal {e}"),
        }
    }
    assert!(accepted < bundle.len() / 50, "{accepted} flips accepted");
}

#[test]
fn tampered_payload_fails_even_when_consistent() {
    // Re-encode the payload with another digest for weights.bin: the statement
    // is well formed, the signature no longer covers it.
    let bundle: serde_json::Value =
        serde_json::from_slice(&fixture("model-signing-key.sig.json")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let text = String::from_utf8(payload)
        .unwrap()
        .replace("785b07", "000000");
    let mut tampered = bundle.clone();
    tampered["dsseEnvelope"]["payload"] = b64.encode(text.as_bytes()).into();
    assert_eq!(
        failure_of(verify_bundle(
            &serde_json::to_vec(&tampered).unwrap(),
            &tiny_model(),
            &[their_key()]
        )),
        SignatureFailure::BadSignature
    );
}

#[test]
fn malformed_and_unsupported_bundles_are_typed() {
    let m = tiny_model();
    let k = [their_key()];
    for junk in [&b""[..], b"{", b"[]", b"{\"mediaType\":1}", b"\xff\xfe"] {
        assert_eq!(
            failure_of(verify_bundle(junk, &m, &k)),
            SignatureFailure::Malformed
        );
    }
    let keyless = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial":{"certificate":{"rawBytes":"AA=="},"tlogEntries":[]},
        "dsseEnvelope":{"payload":"","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":""}]}}"#;
    assert_eq!(
        failure_of(verify_bundle(keyless, &m, &k)),
        SignatureFailure::Unsupported
    );
    let no_sig = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial":{"publicKey":{"hint":""}},
        "dsseEnvelope":{"payload":"","payloadType":"application/vnd.in-toto+json","signatures":[]}}"#;
    assert_eq!(
        failure_of(verify_bundle(no_sig, &m, &k)),
        SignatureFailure::Malformed
    );
}

#[test]
fn our_bundles_round_trip_and_match_the_fixture_statement() {
    let key = SigningKey::generate();
    let again = SigningKey::from_pem(&key.to_pem()).unwrap();
    assert_eq!(again.id(), key.id());
    for hash in [FileHash::Sha256, FileHash::Blake3] {
        let bundle = sign_manifest(&tiny_model(), "tiny-model", hash, &key).unwrap();
        let v = verify_bundle(&bundle, &tiny_model(), &[key.public_key().clone()]).unwrap();
        assert_eq!((v.hash, v.files, &v.key), (hash, 3, key.id()));
        // The statement's digests are those model_signing computed.
        let ours = Bundle::parse(&bundle).unwrap();
        let theirs = Bundle::parse(&fixture(match hash {
            FileHash::Sha256 => "model-signing-key.sig.json",
            FileHash::Blake3 => "model-signing-key-blake3.sig.json",
        }))
        .unwrap();
        let s = |b: &Bundle| -> serde_json::Value { serde_json::from_slice(&b.payload).unwrap() };
        assert_eq!(s(&ours)["subject"], s(&theirs)["subject"]);
        assert_eq!(
            s(&ours)["predicate"]["resources"],
            s(&theirs)["predicate"]["resources"]
        );
        assert_eq!(ours.key_hint(), Some(key.id()));
    }
    assert!(
        SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            .is_err()
    );
    assert!(PublicKey::from_pem("nope").is_err());
}
