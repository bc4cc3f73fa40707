//! Signatures of a version's files in the OpenSSF Model Signing (OMS) v1.0
//! format, with the `key` method (ECDSA P-256): pure functions over bytes, a
//! [`Manifest`] and public keys. No store, no clock.
//!
//! A signature is a Sigstore bundle (JSON, media type [`BUNDLE_MEDIA_TYPE`]) whose
//! DSSE envelope carries an in-toto statement: predicate type
//! [`PREDICATE_TYPE`], one resource per file (its `/`-separated path, the hash
//! algorithm and the file's digest, sorted by path), and one subject whose
//! SHA-256 is taken over the resources' raw digest bytes concatenated in that
//! order. The envelope's signature is ECDSA P-256 over SHA-256 of the DSSE
//! pre-authentication encoding ([`pae`]), DER-encoded; the bundle names the key
//! by a hint, the hex SHA-256 of the public key's SPKI PEM text ([`KeyId`]).
//! These are the bytes the `model_signing` Python package (1.x) writes and
//! reads, so each verifies the other's bundles.
//!
//! What a valid signature proves: the holder of the private key approved
//! exactly these file paths with exactly these bytes. Not that the key holder
//! is to be trusted, nor anything about how the files were made: that is the
//! caller's [`TrustPolicy`].

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _, LineEnding};
use serde::{Deserialize, Serialize};

use super::manifest::Manifest;
use crate::digest::Sha256;
use crate::error::{Error, Result, SignatureFailure};

/// The media type of a Sigstore bundle in JSON, version 0.3: what
/// [`sign_manifest`] writes, and the media type to attach a bundle under (an
/// OCI referrer's `artifactType`, an HTTP `Content-Type`).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The in-toto predicate type of an OMS v1.0 signature.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The paths `model_signing` leaves out of a directory by default; written in
/// the bundle's serialization so that its verifier, hashing a checkout of the
/// files, leaves them out too (unless a signed file is one of them).
const DEFAULT_IGNORE_PATHS: [&str; 4] = [".github", ".gitattributes", ".git", ".gitignore"];

/// Which digest of each file a signature lists.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub enum FileHash {
    /// SHA-256, the interoperable default: `model_signing`'s command line
    /// verifies only these.
    #[default]
    Sha256,
    /// BLAKE3, the registry's own file id (verified by `model_signing`'s Python
    /// API, not its command line).
    Blake3,
}

impl FileHash {
    /// The name written in the statement (`sha256`, `blake3`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FileHash::Sha256 => "sha256",
            FileHash::Blake3 => "blake3",
        }
    }
}

impl fmt::Display for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for FileHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sha256" => Ok(FileHash::Sha256),
            "blake3" => Ok(FileHash::Blake3),
            _ => Err(Error::invalid_input(
                "file hash",
                format!("{s:?}: expected sha256 or blake3"),
            )),
        }
    }
}

/// A public key's id: the 64 lowercase hex digits of the SHA-256 of its SPKI
/// PEM text (64-column lines, `\n` line ends, a final newline), which is the
/// key hint of an OMS bundle signed with the `key` method
/// (`openssl pkey -pubout | sha256sum` prints it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema), schema(value_type = String, example = "2f3e9b0b58da9bbc3e0e3b8efc3372a10fb07600eee3af82ab229a67a7f3dfa6"))]
pub struct KeyId(String);

impl KeyId {
    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for KeyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(KeyId(s.to_ascii_lowercase()))
        } else {
            Err(Error::invalid_name(
                "key id",
                s,
                "expected 64 hex digits (the SHA-256 of the public key's PEM)",
            ))
        }
    }
}

impl TryFrom<String> for KeyId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.0
    }
}

/// An ECDSA P-256 public key that verifies signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: p256::ecdsa::VerifyingKey,
    pem: String,
    id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("id", &self.id).finish()
    }
}

impl PublicKey {
    /// Reads a public key from SPKI PEM text (`-----BEGIN PUBLIC KEY-----`, what
    /// `openssl pkey -pubout` writes). Another curve or malformed text is
    /// [`Error::InvalidInput`].
    pub fn from_pem(pem: &str) -> Result<Self> {
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
            Error::invalid_input(
                "public key",
                format!("not an ECDSA P-256 public key in SPKI PEM: {e}"),
            )
        })?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: p256::ecdsa::VerifyingKey) -> Self {
        // Invariant: encoding a valid point as SPKI PEM into memory cannot fail.
        let pem = key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key always encodes as PEM");
        let id = KeyId(Sha256::of(pem.as_bytes()).to_hex());
        PublicKey { key, pem, id }
    }

    /// Its id (the OMS key hint).
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Its SPKI PEM text, in the canonical form its id hashes.
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    fn verifies(&self, message: &[u8], der: &[u8]) -> bool {
        let Ok(sig) = p256::ecdsa::Signature::from_der(der) else {
            return false;
        };
        // Signers other than this crate (OpenSSL, Python's `cryptography`) do not
        // normalize s; either form is the same signature.
        let sig = sig.normalize_s().unwrap_or(sig);
        self.key.verify(message, &sig).is_ok()
    }
}

/// An ECDSA P-256 private key that signs versions. Where it lives (a file, a
/// secret manager, an HSM exporting PEM) is the caller's business; the registry
/// never stores it.
#[derive(Clone)]
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.public.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a private key from PEM: PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes)
    /// or SEC1 (`-----BEGIN EC PRIVATE KEY-----`, `openssl ecparam -genkey`).
    /// Encrypted keys, other curves and malformed text are
    /// [`Error::InvalidInput`].
    pub fn from_pem(pem: &str) -> Result<Self> {
        let pem = pem.trim();
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .ok()
            .or_else(|| {
                p256::SecretKey::from_sec1_pem(pem)
                    .ok()
                    .map(p256::ecdsa::SigningKey::from)
            })
            .ok_or_else(|| {
                Error::invalid_input(
                    "private key",
                    "not an unencrypted ECDSA P-256 private key in PKCS#8 or SEC1 PEM",
                )
            })?;
        Ok(Self::from_key(key))
    }

    /// A new key from the operating system's randomness (for tests and
    /// examples: keep real keys where the organisation keeps its secrets).
    pub fn generate() -> Self {
        Self::from_key(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    fn from_key(key: p256::ecdsa::SigningKey) -> Self {
        let public = PublicKey::from_key(*key.verifying_key());
        SigningKey { key, public }
    }

    /// Its PKCS#8 PEM text (to save a [generated](Self::generate) key).
    pub fn to_pem(&self) -> String {
        use p256::pkcs8::EncodePrivateKey as _;
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| s.to_string())
            // Invariant: a valid scalar always encodes.
            .expect("a P-256 private key always encodes as PEM")
    }

    /// Its public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Its public key's id.
    pub fn id(&self) -> &KeyId {
        &self.public.id
    }
}

/// The DSSE pre-authentication encoding of a payload: the bytes a DSSE
/// signature signs, `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`,
/// lengths in decimal ASCII.
///
/// ```
/// use modelreg::signing::pae;
/// assert_eq!(pae("t", b"hello"), b"DSSEv1 1 t 5 hello");
/// ```
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

// ---- The wire shapes (Sigstore bundle JSON and the in-toto statement). ----

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleJson {
    media_type: String,
    verification_material: Material,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dsse_envelope: Option<Envelope>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<Hint>,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Hint {
    #[serde(default)]
    hint: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature {
    sig: String,
    #[serde(default)]
    keyid: String,
}

#[derive(Serialize, Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Serialize, Deserialize)]
struct Subject {
    name: String,
    digest: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Predicate {
    serialization: Serialization,
    resources: Vec<Resource>,
}

#[derive(Serialize, Deserialize)]
struct Serialization {
    method: String,
    hash_type: String,
    #[serde(default)]
    allow_symlinks: bool,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Resource {
    name: String,
    algorithm: String,
    digest: String,
}

fn failure(failure: SignatureFailure, reason: impl Into<String>) -> Error {
    Error::Signature {
        what: "signature bundle".into(),
        failure,
        reason: reason.into(),
    }
}

fn malformed(reason: impl Into<String>) -> Error {
    failure(SignatureFailure::Malformed, reason)
}

/// The digest a signature of `hash` lists for each file of `manifest`, in path
/// order (the manifest's order, which is byte order like `model_signing`'s).
fn file_digests(manifest: &Manifest, hash: FileHash) -> Result<Vec<(String, Vec<u8>)>> {
    manifest
        .entries()
        .iter()
        .map(|e| {
            let digest = match hash {
                FileHash::Blake3 => e.digest.as_bytes().to_vec(),
                FileHash::Sha256 => e
                    .sha256
                    .ok_or_else(|| {
                        Error::invalid_input(
                            format!("file '{}'", e.path),
                            "the version was registered before SHA-256 digests were recorded: \
                             sign it with BLAKE3, or register its files again",
                        )
                    })?
                    .as_bytes()
                    .to_vec(),
            };
            Ok((e.path.as_str().to_owned(), digest))
        })
        .collect()
}

/// Signs every file of `manifest`: the OMS v1.0 bundle (JSON bytes) with one
/// resource per file, its digest per `hash`, and `name` as the statement's
/// subject name (the model's name, where `model_signing` writes the directory's).
///
/// A SHA-256 signature of a version registered before SHA-256 digests were
/// recorded is [`Error::InvalidInput`].
pub fn sign_manifest(
    manifest: &Manifest,
    name: &str,
    hash: FileHash,
    key: &SigningKey,
) -> Result<Vec<u8>> {
    let files = file_digests(manifest, hash)?;
    let mut subject = Vec::with_capacity(files.len() * 32);
    for (_, d) in &files {
        subject.extend_from_slice(d);
    }
    let statement = Statement {
        type_: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: name.into(),
            digest: [("sha256".to_owned(), Sha256::of(&subject).to_hex())].into(),
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            serialization: Serialization {
                method: "files".into(),
                hash_type: hash.as_str().into(),
                allow_symlinks: false,
                ignore_paths: DEFAULT_IGNORE_PATHS
                    .iter()
                    .filter(|p| {
                        !manifest.entries().iter().any(|e| {
                            let path = e.path.as_str();
                            path == **p || path.starts_with(&format!("{p}/"))
                        })
                    })
                    .map(|p| (*p).to_owned())
                    .collect(),
            },
            resources: files
                .iter()
                .map(|(name, d)| Resource {
                    name: name.clone(),
                    algorithm: hash.as_str().into(),
                    digest: hex(d),
                })
                .collect(),
        },
    };
    // Invariant: these structs hold strings and vectors only.
    let payload = serde_json::to_vec(&statement).expect("a statement always serializes");
    let sig: p256::ecdsa::Signature = key.key.sign(&pae(PAYLOAD_TYPE, &payload));
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = BundleJson {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: Material {
            public_key: Some(Hint {
                hint: key.id().to_string(),
            }),
            tlog_entries: Vec::new(),
        },
        dsse_envelope: Some(Envelope {
            payload: b64.encode(&payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                sig: b64.encode(sig.to_der().as_bytes()),
                keyid: String::new(),
            }],
        }),
    };
    Ok(serde_json::to_vec(&bundle).expect("a bundle always serializes"))
}

/// A bundle whose JSON shape was read: what it claims, before anything is
/// verified ([`Bundle::verify`]).
pub struct Bundle {
    hint: Option<KeyId>,
    payload: Vec<u8>,
    signatures: Vec<Vec<u8>>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("hint", &self.hint)
            .field("payload_bytes", &self.payload.len())
            .field("signatures", &self.signatures.len())
            .finish()
    }
}

/// What a verified bundle says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The key that made the signature.
    pub key: KeyId,
    /// Which digest of each file it lists.
    pub hash: FileHash,
    /// The statement's subject name.
    pub subject: String,
    /// How many files it lists (every file of the manifest).
    pub files: usize,
}

impl Bundle {
    /// Reads a Sigstore bundle's JSON. Anything but a DSSE bundle of the `key`
    /// method is a typed refusal: malformed JSON, a missing envelope or
    /// signature, invalid base64 are [`SignatureFailure::Malformed`]; a
    /// certificate (keyless) bundle or a message-signature bundle
    /// [`SignatureFailure::Unsupported`].
    pub fn parse(bytes: &[u8]) -> Result<Bundle> {
        let json: BundleJson =
            serde_json::from_slice(bytes).map_err(|e| malformed(format!("not a bundle: {e}")))?;
        if !json
            .media_type
            .starts_with("application/vnd.dev.sigstore.bundle")
        {
            return Err(malformed(format!(
                "media type {:?} is not a Sigstore bundle's",
                json.media_type
            )));
        }
        let Some(hint) = json.verification_material.public_key else {
            return Err(failure(
                SignatureFailure::Unsupported,
                "no public key hint: certificate (keyless) bundles are not supported yet",
            ));
        };
        let Some(envelope) = json.dsse_envelope else {
            return Err(failure(
                SignatureFailure::Unsupported,
                "no DSSE envelope (a message-signature bundle is not an OMS signature)",
            ));
        };
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(malformed(format!(
                "payload type {:?}, {PAYLOAD_TYPE:?} expected",
                envelope.payload_type
            )));
        }
        if envelope.signatures.is_empty() {
            return Err(malformed("the envelope has no signature"));
        }
        let hint = match hint.hint.as_str() {
            "" => None,
            h => Some(
                h.parse::<KeyId>()
                    .map_err(|_| malformed(format!("key hint {h:?} is not 64 hex digits")))?,
            ),
        };
        Ok(Bundle {
            hint,
            payload: decode_b64(&envelope.payload, "payload")?,
            signatures: envelope
                .signatures
                .iter()
                .map(|s| decode_b64(&s.sig, "signature"))
                .collect::<Result<_>>()?,
        })
    }

    /// The key id the bundle names, if any.
    pub fn key_hint(&self) -> Option<&KeyId> {
        self.hint.as_ref()
    }

    /// Verifies the bundle: signed by one of `keys` (the one its hint names,
    /// when it names one), over an OMS v1.0 statement whose files are exactly
    /// those of `manifest` with the same digests.
    ///
    /// Refusals are [`Error::Signature`]: [`SignatureFailure::UnknownKey`] when
    /// no key of `keys` is the one named, [`SignatureFailure::BadSignature`]
    /// when the signature does not verify, [`SignatureFailure::FilesMismatch`]
    /// when the statement lists other files or other digests,
    /// [`SignatureFailure::Malformed`] or [`SignatureFailure::Unsupported`] for
    /// a statement this build cannot read.
    pub fn verify(&self, manifest: &Manifest, keys: &[PublicKey]) -> Result<Verified> {
        let key = self.signer(keys)?;
        let statement: Statement = serde_json::from_slice(&self.payload)
            .map_err(|e| malformed(format!("the payload is not an in-toto statement: {e}")))?;
        if statement.type_ != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
            return Err(failure(
                SignatureFailure::Unsupported,
                format!(
                    "statement {:?} with predicate {:?}, an OMS v1.0 signature ({PREDICATE_TYPE}) expected",
                    statement.type_, statement.predicate_type
                ),
            ));
        }
        let ser = &statement.predicate.serialization;
        if ser.method != "files" {
            return Err(failure(
                SignatureFailure::Unsupported,
                format!(
                    "serialization method {:?} (only \"files\" is supported)",
                    ser.method
                ),
            ));
        }
        let hash: FileHash = ser.hash_type.parse().map_err(|_| {
            failure(
                SignatureFailure::Unsupported,
                format!(
                    "hash type {:?} (sha256 and blake3 are supported)",
                    ser.hash_type
                ),
            )
        })?;
        let resources = &statement.predicate.resources;
        if let Some(r) = resources.iter().find(|r| r.algorithm != ser.hash_type) {
            return Err(malformed(format!(
                "resource '{}' uses {}, the statement says {}",
                r.name, r.algorithm, ser.hash_type
            )));
        }
        // The subject commits to the resources: recompute it from them, sorted.
        let mut sorted: Vec<&Resource> = resources.iter().collect();
        sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let mut concat = Vec::new();
        for r in &sorted {
            concat.extend(
                unhex(&r.digest).ok_or_else(|| {
                    malformed(format!("resource '{}': digest is not hex", r.name))
                })?,
            );
        }
        let [subject] = statement.subject.as_slice() else {
            return Err(malformed(format!(
                "{} subjects, one expected",
                statement.subject.len()
            )));
        };
        let expected = Sha256::of(&concat).to_hex();
        if subject.digest.get("sha256").map(|d| d.to_ascii_lowercase()) != Some(expected) {
            return Err(malformed(
                "the subject's sha256 is not the digest of the resources' digests",
            ));
        }
        // The files: exactly the manifest's, with the same digests.
        let files = file_digests(manifest, hash)
            .map_err(|e| failure(SignatureFailure::FilesMismatch, e.to_string()))?;
        let mut listed = BTreeSet::new();
        for r in &sorted {
            if !listed.insert(r.name.as_str()) {
                return Err(malformed(format!("resource '{}' is listed twice", r.name)));
            }
        }
        let mut problems = Vec::new();
        for (path, digest) in &files {
            match sorted.binary_search_by(|r| r.name.as_bytes().cmp(path.as_bytes())) {
                Err(_) => problems.push(format!("'{path}' is not signed")),
                Ok(i) if unhex(&sorted[i].digest).as_deref() != Some(digest.as_slice()) => problems
                    .push(format!(
                        "'{path}' has another {hash} digest than the one signed"
                    )),
                Ok(_) => {}
            }
        }
        for r in &sorted {
            if files
                .binary_search_by(|(p, _)| p.as_bytes().cmp(r.name.as_bytes()))
                .is_err()
            {
                problems.push(format!(
                    "'{}' is signed but not a file of the version",
                    r.name
                ));
            }
        }
        if !problems.is_empty() {
            problems.truncate(5);
            return Err(failure(
                SignatureFailure::FilesMismatch,
                problems.join("; "),
            ));
        }
        Ok(Verified {
            key: key.id().clone(),
            hash,
            subject: subject.name.clone(),
            files: files.len(),
        })
    }

    /// The key among `keys` whose signature of the envelope verifies.
    fn signer<'k>(&self, keys: &'k [PublicKey]) -> Result<&'k PublicKey> {
        let candidates: Vec<&PublicKey> = match &self.hint {
            Some(h) => keys.iter().filter(|k| k.id() == h).collect(),
            None => keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(failure(
                SignatureFailure::UnknownKey,
                match &self.hint {
                    Some(h) => format!("signed with key {h}, which is not among the keys given"),
                    None => "no key given to verify with".into(),
                },
            ));
        }
        let message = pae(PAYLOAD_TYPE, &self.payload);
        candidates
            .into_iter()
            .find(|k| self.signatures.iter().any(|s| k.verifies(&message, s)))
            .ok_or_else(|| {
                failure(
                    SignatureFailure::BadSignature,
                    "the envelope's signature does not verify with the key",
                )
            })
    }
}

/// Verifies a bundle's bytes against a manifest and keys: [`Bundle::parse`]
/// then [`Bundle::verify`].
pub fn verify_bundle(bytes: &[u8], manifest: &Manifest, keys: &[PublicKey]) -> Result<Verified> {
    Bundle::parse(bytes)?.verify(manifest, keys)
}

/// Which signatures a caller trusts: keys by id, and how many distinct ones
/// must have signed a version.
///
/// ```
/// use modelreg::signing::{SigningKey, TrustPolicy};
/// let trainer = SigningKey::generate();
/// let policy = TrustPolicy::new().key(trainer.public_key()).min(1);
/// assert!(policy.trusts(trainer.id()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPolicy {
    keys: BTreeSet<KeyId>,
    min: usize,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy {
            keys: BTreeSet::new(),
            min: 1,
        }
    }
}

impl TrustPolicy {
    /// No key trusted yet; one signature required.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts signatures made with `key`.
    pub fn key(mut self, key: &PublicKey) -> Self {
        self.keys.insert(key.id().clone());
        self
    }

    /// Trusts signatures made with the key whose id is `id` (the registry keeps
    /// each signature's public key, whose text hashes to its id).
    pub fn key_id(mut self, id: KeyId) -> Self {
        self.keys.insert(id);
        self
    }

    /// How many distinct trusted keys must have signed (default 1; 0 is taken
    /// as 1: a policy that needs no signature is no policy).
    pub fn min(mut self, n: usize) -> Self {
        self.min = n.max(1);
        self
    }

    /// The trusted key ids.
    pub fn keys(&self) -> &BTreeSet<KeyId> {
        &self.keys
    }

    /// How many distinct trusted keys must have signed.
    pub fn required(&self) -> usize {
        self.min
    }

    /// Whether `id` is trusted.
    pub fn trusts(&self, id: &KeyId) -> bool {
        self.keys.contains(id)
    }
}

fn decode_b64(s: &str, what: &str) -> Result<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|e| malformed(format!("the {what} is not base64: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
