//! Signed versions: the registry signs a version's files, or verifies a bundle
//! made elsewhere, stores the bundle content-addressed in the artifact store and
//! records a `signature_added` event; it verifies recorded signatures against a
//! caller's [`TrustPolicy`]. The byte-level rules live in
//! [`signing`](crate::signing), which knows no store.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;

use super::fetch::digest_of;
use super::{IntoVersionRef, Registry, gc};
use crate::digest::Digest;
use crate::domain::{Actor, EventKind, Manifest, VersionRecord, VersionSignature};
use crate::error::{Error, Result, SignatureFailure};
use crate::offload::offload;
use crate::signing::{
    BUNDLE_MEDIA_TYPE, FileHash, KeyId, PublicKey, SigningKey, TrustPolicy, sign_manifest,
    verify_bundle,
};
use crate::store::ArtifactStoreExt as _;

/// The largest signature bundle the registry stores or reads (a bundle lists
/// one line per file: a million files fit well below it).
const MAX_BUNDLE_BYTES: usize = 256 << 20;

/// A signature of a version with its bundle's bytes: what
/// [`Registry::signature_bundles`] returns, e.g. to attach the bundle to an OCI
/// artifact as a referrer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureBundle {
    /// The signature as recorded.
    pub signature: VersionSignature,
    /// The bundle's bytes (Sigstore bundle JSON), as signed.
    pub bytes: Bytes,
    /// Their media type, [`BUNDLE_MEDIA_TYPE`].
    pub media_type: &'static str,
}

/// The verdict on one recorded signature: what [`SignatureReport`] lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SignatureCheck {
    /// The signature as recorded.
    pub signature: VersionSignature,
    /// Whether the policy trusts its key.
    pub trusted: bool,
    /// Whether its bundle verified, now, against the version's files and the
    /// recorded public key.
    pub valid: bool,
    /// Why it did not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What [`Registry::verify_signatures`] found: every signature of the version
/// checked again, and whether enough trusted ones verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SignatureReport {
    /// The version, `model/number`.
    pub version: String,
    /// Every recorded signature, in the order they were added.
    pub checks: Vec<SignatureCheck>,
    /// The distinct trusted keys whose signature verified.
    pub trusted: Vec<KeyId>,
    /// How many the policy requires.
    pub required: usize,
}

impl SignatureReport {
    /// Whether enough distinct trusted keys signed.
    pub fn passes(&self) -> bool {
        self.trusted.len() >= self.required
    }

    /// `Ok(self)` when the policy is met, otherwise [`Error::Signature`] with
    /// [`SignatureFailure::PolicyNotMet`], naming what was found.
    pub fn into_result(self) -> Result<SignatureReport> {
        if self.passes() {
            return Ok(self);
        }
        let mut found: Vec<String> = self
            .checks
            .iter()
            .map(|c| match (&c.problem, c.trusted) {
                (Some(p), _) => format!("key {}: {p}", c.signature.key.short()),
                (None, false) => format!("key {}: not trusted", c.signature.key.short()),
                (None, true) => format!("key {}: valid", c.signature.key.short()),
            })
            .collect();
        if found.is_empty() {
            found.push("no signature recorded".into());
        }
        Err(Error::Signature {
            what: format!("signatures of {}", self.version),
            failure: SignatureFailure::PolicyNotMet,
            reason: format!(
                "{} trusted key(s) signed, {} required ({})",
                self.trusted.len(),
                self.required,
                found.join("; ")
            ),
        })
    }
}

impl Registry {
    /// The implementation of [`Session::sign_version`](super::Session::sign_version).
    pub(crate) async fn sign_version(
        &self,
        version: impl IntoVersionRef,
        key: &SigningKey,
        reason: &str,
        actor: &Actor,
    ) -> Result<VersionSignature> {
        let v = self.resolve(version).await?;
        let manifest = self.verified_manifest(&v.artifact).await?;
        let (k, name) = (key.clone(), v.model.to_string());
        let bundle =
            offload(move || sign_manifest(&manifest, &name, FileHash::Sha256, &k)).await??;
        self.record_signature(
            &v,
            bundle.into(),
            key.public_key(),
            FileHash::Sha256,
            reason,
            actor,
        )
        .await
    }

    /// The implementation of [`Session::add_signature`](super::Session::add_signature).
    pub(crate) async fn add_signature(
        &self,
        version: impl IntoVersionRef,
        bundle: Bytes,
        key: &PublicKey,
        reason: &str,
        actor: &Actor,
    ) -> Result<VersionSignature> {
        check_size(bundle.len())?;
        let v = self.resolve(version).await?;
        let manifest = self.verified_manifest(&v.artifact).await?;
        let (b, k) = (bundle.clone(), key.clone());
        let verified = offload(move || verify_bundle(&b, &manifest, &[k]))
            .await?
            .map_err(|e| in_context(e, &v))?;
        self.record_signature(&v, bundle, key, verified.hash, reason, actor)
            .await
    }

    /// Stores `bundle` (protected from a concurrent collection by an intent,
    /// as a registration's blobs are) and appends the event.
    async fn record_signature(
        &self,
        v: &VersionRecord,
        bundle: Bytes,
        key: &PublicKey,
        hash: FileHash,
        reason: &str,
        actor: &Actor,
    ) -> Result<VersionSignature> {
        let meta = self.inner.metadata.as_ref();
        let digest = digest_of(bundle.clone()).await?;
        // After the intent, no sweep deletes the blob: one that started before
        // has ended (announce waits), one that starts later reads the intent.
        let intent = gc::Intent::announce(meta, BTreeSet::from([digest])).await?;
        let recorded = async {
            self.inner.artifacts.put_bytes(bundle).await?;
            let record = self
                .commit_on_version(&v.reference(), actor, |n| EventKind::SignatureAdded {
                    version: n,
                    key: key.id().clone(),
                    public_key: key.to_pem().to_owned(),
                    hash,
                    bundle: digest,
                    reason: reason.to_owned(),
                })
                .await?;
            record
                .signatures
                .iter()
                .rev()
                .find(|s| s.bundle == digest)
                .cloned()
                .ok_or_else(|| Error::not_found(format!("the signature just added to {}", what(v))))
        }
        .await;
        intent.withdraw(meta).await;
        recorded
    }

    /// The signatures recorded for a version, in the order they were added.
    pub async fn signatures(&self, version: impl IntoVersionRef) -> Result<Vec<VersionSignature>> {
        Ok(self.resolve_shared(version).await?.signatures.clone())
    }

    /// The bytes of one signature bundle of a version, by the bundle's digest
    /// (as [`VersionSignature::bundle`] records it); [`Error::NotFound`] when the
    /// version has no such signature, [`Error::Integrity`] when the stored bytes
    /// do not match.
    pub async fn signature_bundle(
        &self,
        version: impl IntoVersionRef,
        bundle: Digest,
    ) -> Result<Bytes> {
        let v = self.resolve_shared(version).await?;
        if !v.signatures.iter().any(|s| s.bundle == bundle) {
            return Err(Error::not_found(format!(
                "signature {bundle} of {}",
                what(&v)
            )));
        }
        self.read_bundle(&bundle).await
    }

    /// Every signature of a version with its bundle's bytes and media type
    /// ([`BUNDLE_MEDIA_TYPE`]), in the order they were added: what an exporter
    /// attaches beside the files (an OCI referrer, a `model.sig` file).
    pub async fn signature_bundles(
        &self,
        version: impl IntoVersionRef,
    ) -> Result<Vec<SignatureBundle>> {
        let v = self.resolve_shared(version).await?;
        let mut out = Vec::with_capacity(v.signatures.len());
        for s in &v.signatures {
            out.push(SignatureBundle {
                signature: s.clone(),
                bytes: self.read_bundle(&s.bundle).await?,
                media_type: BUNDLE_MEDIA_TYPE,
            });
        }
        Ok(out)
    }

    /// Verifies every signature of a version again, now (each bundle against
    /// the version's files and its recorded public key), and judges them by
    /// `policy`: the report says which verified and whether enough distinct
    /// trusted keys signed ([`SignatureReport::passes`];
    /// [`SignatureReport::into_result`] turns a failure into
    /// [`Error::Signature`]). A bundle that is missing, altered or no longer
    /// matches is a problem in the report, not an error; a store that cannot
    /// be read is an error.
    pub async fn verify_signatures(
        &self,
        version: impl IntoVersionRef,
        policy: &TrustPolicy,
    ) -> Result<SignatureReport> {
        let v = self.resolve_shared(version).await?;
        let manifest = self.verified_manifest(&v.artifact).await?;
        self.check_signatures(&v, manifest, policy).await
    }

    /// [`verify_signatures`](Self::verify_signatures) of a resolved version.
    pub(crate) async fn check_signatures(
        &self,
        v: &VersionRecord,
        manifest: Arc<Manifest>,
        policy: &TrustPolicy,
    ) -> Result<SignatureReport> {
        let mut checks = Vec::with_capacity(v.signatures.len());
        let mut trusted = BTreeSet::new();
        for s in &v.signatures {
            let problem = match self.read_bundle(&s.bundle).await {
                Ok(bytes) => {
                    let (m, pem) = (Arc::clone(&manifest), s.public_key.clone());
                    let checked = offload(move || {
                        let key = PublicKey::from_pem(&pem)?;
                        verify_bundle(&bytes, &m, &[key])
                    })
                    .await?;
                    match checked {
                        Ok(verified) if verified.key == s.key => None,
                        Ok(verified) => Some(format!("made with key {}", verified.key)),
                        Err(e) => Some(e.to_string()),
                    }
                }
                Err(
                    e @ (Error::NotFound { .. }
                    | Error::Integrity { .. }
                    | Error::Corrupt { .. }
                    | Error::TooLarge { .. }),
                ) => Some(e.to_string()),
                Err(e) => return Err(e),
            };
            let is_trusted = policy.trusts(&s.key);
            if is_trusted && problem.is_none() {
                trusted.insert(s.key.clone());
            }
            checks.push(SignatureCheck {
                signature: s.clone(),
                trusted: is_trusted,
                valid: problem.is_none(),
                problem,
            });
        }
        Ok(SignatureReport {
            version: what(v),
            checks,
            trusted: trusted.into_iter().collect(),
            required: policy.required(),
        })
    }

    /// Reads and checks a bundle's blob.
    async fn read_bundle(&self, digest: &Digest) -> Result<Bytes> {
        let store = self.inner.artifacts.as_ref();
        let mut stream = store.get(digest).await.map_err(|e| match e {
            Error::NotFound { .. } => {
                Error::blob_not_found(*digest, format!("signature bundle {digest}"))
            }
            e => e,
        })?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
            check_size(buf.len())?;
        }
        let buf = buf.freeze();
        let actual = digest_of(buf.clone()).await?;
        if actual != *digest {
            return Err(Error::Integrity {
                what: format!("signature bundle {digest}"),
                expected: *digest,
                actual,
                location: Some(store.location(digest)),
            });
        }
        Ok(buf)
    }
}

fn check_size(len: usize) -> Result<()> {
    if len > MAX_BUNDLE_BYTES {
        return Err(Error::TooLarge {
            what: "signature bundle".into(),
            unit: "bytes",
            limit: MAX_BUNDLE_BYTES as u64,
            actual: len as u64,
        });
    }
    Ok(())
}

fn what(v: &VersionRecord) -> String {
    format!("{}/{}", v.model, v.number)
}

/// Names the version in a signature error.
fn in_context(e: Error, v: &VersionRecord) -> Error {
    match e {
        Error::Signature {
            failure, reason, ..
        } => Error::Signature {
            what: format!("signature bundle for {}", what(v)),
            failure,
            reason,
        },
        e => e,
    }
}
