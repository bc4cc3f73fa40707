//! OCI registries: versions pushed and pulled as CNCF ModelPack artifacts
//! (feature `oci`).
//!
//! [`Registry::push_oci`](crate::Registry::push_oci) sends a version to any OCI
//! registry as a ModelPack model: a manifest with `artifactType`
//! [`MODEL_ARTIFACT_TYPE`], a config ([`MODEL_CONFIG_MEDIA_TYPE`]) built from
//! the version's record, and one raw layer per file, annotated with its path
//! ([`FILEPATH_ANNOTATION`]) and named by its SHA-256.
//! [`Session::pull_oci`](crate::Session::pull_oci) does the reverse: it
//! downloads every layer of a ModelPack artifact, checks each against its
//! SHA-256, and registers the files as a new version whose tags record where
//! they came from. [`Registry::attach_oci_referrer`](crate::Registry::attach_oci_referrer)
//! attaches a blob (a signature, an SBOM) to a pushed manifest as an OCI 1.1
//! referrer, through the Referrers API where the registry has one and the
//! referrers tag schema where it does not.
//!
//! The mapping (what is kept, what is lost) is in `docs/design.md`, "OCI
//! ModelPack".

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

pub(crate) mod client;
pub(crate) mod modelpack;

pub use modelpack::{
    FILEPATH_ANNOTATION, MODEL_ARTIFACT_TYPE, MODEL_CONFIG_MEDIA_TYPE, RECORD_ANNOTATION,
    TITLE_ANNOTATION,
};

use crate::domain::VersionRecord;
use crate::error::{OciProblem, Result};
use client::OciClient;
use modelpack::{Descriptor, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, referrer_manifest};

/// How to reach an OCI registry.
///
/// ```
/// use modelreg::oci::OciOptions;
/// let local = OciOptions::new().plain_http(true);
/// let hub = OciOptions::new().basic_auth("robot", "s3cret");
/// # let _ = (local, hub);
/// ```
#[derive(Clone)]
pub struct OciOptions {
    pub(crate) plain_http: bool,
    pub(crate) basic_auth: Option<(String, String)>,
    pub(crate) connect_timeout: Duration,
}

impl Default for OciOptions {
    fn default() -> Self {
        OciOptions {
            plain_http: false,
            basic_auth: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for OciOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciOptions")
            .field("plain_http", &self.plain_http)
            .field("basic_auth", &self.basic_auth.as_ref().map(|(u, _)| u))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl OciOptions {
    /// HTTPS, anonymous, a 10 s connect timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Speak plain HTTP instead of HTTPS (a registry on localhost, a test).
    pub fn plain_http(mut self, yes: bool) -> Self {
        self.plain_http = yes;
        self
    }

    /// Authenticate with a user name and password (or token), exchanged for a
    /// bearer token where the registry asks for one.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// How long to wait for a connection before the registry counts as
    /// unreachable.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// The annotation on a pushed signature's referrer naming its key id (the
/// SHA-256 of the public key, the OMS key hint).
pub const SIGNATURE_KEY_ANNOTATION: &str = "dev.modelreg.signature.key";
/// The annotation naming who added the signature, as the log records it.
pub const SIGNATURE_BY_ANNOTATION: &str = "dev.modelreg.signature.by";
/// The annotation carrying why the signature was added (may be empty).
pub const SIGNATURE_REASON_ANNOTATION: &str = "dev.modelreg.signature.reason";

/// A blob to attach to a manifest as an OCI referrer: a signature bundle, an
/// SBOM, an evaluation report.
///
/// ```
/// use modelreg::oci::Referrer;
/// let r = Referrer::new("application/vnd.dev.sigstore.bundle.v0.3+json", "{}")
///     .annotation("dev.modelreg.signer", "ci@example.com");
/// # let _ = r;
/// ```
#[derive(Clone, Debug)]
pub struct Referrer {
    pub(crate) artifact_type: String,
    pub(crate) media_type: String,
    pub(crate) bytes: Bytes,
    pub(crate) annotations: BTreeMap<String, String>,
}

impl Referrer {
    /// A referrer of `artifact_type` whose one layer is `bytes`, of the same
    /// media type.
    pub fn new(artifact_type: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        let artifact_type = artifact_type.into();
        Referrer {
            media_type: artifact_type.clone(),
            artifact_type,
            bytes: bytes.into(),
            annotations: BTreeMap::new(),
        }
    }

    /// The layer's media type, when it differs from the artifact type.
    pub fn media_type(mut self, media_type: impl Into<String>) -> Self {
        self.media_type = media_type.into();
        self
    }

    /// An annotation on the referrer's manifest.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

/// How a referrer was made discoverable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "via")]
#[non_exhaustive]
pub enum ReferrersIndex {
    /// The registry lists it through its Referrers API, and the tag schema's
    /// index does not.
    Api,
    /// The referrer is in the image index under the tag schema's tag,
    /// `sha256-<hex of the subject>`: added there because the registry has no
    /// Referrers API, or already there (attached before).
    TagSchema {
        /// The tag.
        tag: String,
    },
}

/// What [`attach_oci_referrer`](crate::Registry::attach_oci_referrer) did.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct AttachReport {
    /// The subject's manifest digest, `sha256:…`.
    pub subject: String,
    /// The referrer manifest's digest.
    pub digest: String,
    /// Its artifact type.
    pub artifact_type: String,
    /// How it is discoverable.
    pub index: ReferrersIndex,
}

/// What [`push_oci`](crate::Registry::push_oci) did.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct PushReport {
    /// Where it was pushed, as given.
    pub reference: String,
    /// The manifest's digest, `sha256:…`: pull `repository@digest` for
    /// exactly these bytes.
    pub digest: String,
    /// The number of layers (files).
    pub layers: u64,
    /// Their total size.
    pub bytes: u64,
    /// Layers the registry had already and that were not sent again.
    pub layers_present: u64,
    /// The referrers attached, in the order given.
    pub referrers: Vec<AttachReport>,
}

/// What [`pull_oci`](crate::Session::pull_oci) did.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct PullReport {
    /// Where it was pulled from, as given.
    pub reference: String,
    /// The manifest's digest, `sha256:…`.
    pub digest: String,
    /// The version registered.
    pub version: VersionRecord,
    /// The number of files.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

/// Attaches `referrer` to the manifest `subject` (a digest) in the repository
/// of `client`: uploads its blob, the empty config and its manifest (with
/// `subject`), then makes it discoverable. A registry with the Referrers API
/// lists it from then on; otherwise it is added to the tag schema's index
/// (read, add, write: two writers attaching to one subject at once may lose
/// one entry, as the distribution spec warns; attaching again restores it).
/// A referrer the tag schema's index lists already is reported as listed
/// there ([`ReferrersIndex::TagSchema`]), whether or not the registry also
/// has the API.
pub(crate) async fn attach(
    client: &OciClient,
    subject: &Descriptor,
    referrer: &Referrer,
) -> Result<AttachReport> {
    client.push_bytes(Bytes::from_static(b"{}")).await?;
    let blob = client.push_bytes(referrer.bytes.clone()).await?;
    let layer = Descriptor {
        media_type: referrer.media_type.clone(),
        digest: blob,
        size: referrer.bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    let manifest = referrer_manifest(
        &referrer.artifact_type,
        layer,
        subject.clone(),
        referrer.annotations.clone(),
    );
    let bytes = manifest.to_bytes();
    let size = bytes.len() as u64;
    let digest = modelpack::oci_digest(&crate::digest::Sha256::of(&bytes));
    client
        .push_manifest(&client.at_digest(&digest), bytes, MANIFEST_MEDIA_TYPE)
        .await?;
    // `oci-client`'s listing does not say whether the Referrers API answered
    // or its tag-schema fallback did, so the tag schema's index is read first:
    // a referrer already in it (a re-push to a registry without the API) is
    // discoverable through it, and only a referrer listed while absent from it
    // was listed by the API.
    let tag = subject.digest.replace(':', "-");
    let mut index = client.tag_schema_index(&subject.digest).await?;
    let index = if index.manifests.iter().any(|d| d.digest == digest) {
        ReferrersIndex::TagSchema { tag }
    } else if client
        .referrers(&subject.digest)
        .await?
        .iter()
        .any(|d| d.digest == digest)
    {
        ReferrersIndex::Api
    } else {
        index.manifests.push(Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            digest: digest.clone(),
            size,
            artifact_type: Some(referrer.artifact_type.clone()),
            annotations: referrer.annotations.clone(),
        });
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| client.error(OciProblem::Refused, format!("encoding the index: {e}")))?;
        client
            .push_manifest(&client.at_tag(&tag), bytes, INDEX_MEDIA_TYPE)
            .await?;
        ReferrersIndex::TagSchema { tag }
    };
    Ok(AttachReport {
        subject: subject.digest.clone(),
        digest,
        artifact_type: referrer.artifact_type.clone(),
        index,
    })
}
