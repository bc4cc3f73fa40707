//! The network side of OCI push and pull: one registry repository, through the
//! `oci-client` crate. Knows OCI and bytes; knows no store and no domain rules.

use std::path::Path;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use reqwest::header::HeaderValue;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

use super::OciOptions;
use super::modelpack::{Descriptor, INDEX_MEDIA_TYPE, ImageIndex, oci_digest};
use crate::digest::Sha256;
use crate::error::{Error, OciProblem, Result};

/// The most bytes of a manifest, a config or an index this client reads into
/// memory (distribution's own limit for manifests is 4 MiB).
pub(crate) const MAX_DOCUMENT: u64 = 4 << 20;

/// A client for one repository of one OCI registry, for one operation.
pub(crate) struct OciClient {
    client: Client,
    auth: RegistryAuth,
    /// The reference as the caller wrote it, for messages.
    text: String,
    reference: Reference,
    operation: &'static str,
}

impl OciClient {
    /// Parses `reference` (`registry/repository:tag` or `…@sha256:…`) and makes
    /// a client for its registry. A reference that does not parse is
    /// [`Error::InvalidInput`].
    pub fn new(reference: &str, options: &OciOptions, operation: &'static str) -> Result<Self> {
        let parsed: Reference = reference.parse().map_err(|e| {
            Error::invalid_input(format!("OCI reference {reference:?}"), format!("{e}"))
        })?;
        let config = ClientConfig {
            protocol: if options.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(options.connect_timeout),
            ..ClientConfig::default()
        };
        let auth = match &options.basic_auth {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(OciClient {
            client: Client::new(config),
            auth,
            text: reference.to_owned(),
            reference: parsed,
            operation,
        })
    }

    /// The parsed reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.reference.registry().to_owned(),
            self.reference.repository().to_owned(),
            digest.to_owned(),
        )
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.reference.registry().to_owned(),
            self.reference.repository().to_owned(),
            tag.to_owned(),
        )
    }

    /// An [`Error::Oci`] about this client's reference.
    pub fn error(&self, problem: OciProblem, detail: impl Into<String>) -> Error {
        Error::Oci {
            reference: self.text.clone(),
            operation: self.operation,
            problem,
            detail: detail.into(),
        }
    }

    /// Maps the OCI client's error (`what` says what was being done).
    fn map(&self, what: &str, e: OciDistributionError) -> Error {
        let problem = match &e {
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
                OciProblem::Unreachable
            }
            OciDistributionError::ImageManifestNotFoundError(_) => OciProblem::NotFound,
            OciDistributionError::ServerError { code: 404, .. } => OciProblem::NotFound,
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|x| {
                    matches!(
                        x.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                    )
                }) =>
            {
                OciProblem::NotFound
            }
            _ => OciProblem::Refused,
        };
        self.error(problem, format!("{what}: {}", chain(&e)))
    }

    /// Whether the repository has the blob `digest`.
    pub async fn blob_exists(&self, digest: &str) -> Result<bool> {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        self.client
            .blob_exists(&self.reference, digest)
            .await
            .map_err(|e| self.map(&format!("checking blob {digest}"), e))
    }

    /// Uploads a small blob held in memory, unless the repository has it.
    pub async fn push_bytes(&self, bytes: Bytes) -> Result<String> {
        let digest = oci_digest(&Sha256::of(&bytes));
        if !self.blob_exists(&digest).await? {
            self.client
                .push_blob(&self.reference, bytes, &digest)
                .await
                .map_err(|e| self.map(&format!("uploading blob {digest}"), e))?;
        }
        Ok(digest)
    }

    /// Uploads a blob from a stream, chunk by chunk (PATCH requests of the
    /// client's chunk size). The registry checks the bytes against `digest`.
    pub async fn push_stream<S>(&self, digest: &str, stream: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        let stream = stream.map_err(|e| OciDistributionError::GenericError(Some(e.to_string())));
        self.client
            .push_blob_stream(&self.reference, stream, digest, None)
            .await
            .map(drop)
            .map_err(|e| self.map(&format!("uploading blob {digest}"), e))
    }

    /// Uploads a manifest or index under `at` (a tag or its digest); returns
    /// its digest.
    pub async fn push_manifest(
        &self,
        at: &Reference,
        bytes: Vec<u8>,
        media_type: &'static str,
    ) -> Result<String> {
        let digest = oci_digest(&Sha256::of(&bytes));
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        self.client
            .push_manifest_raw(at, bytes, HeaderValue::from_static(media_type))
            .await
            .map_err(|e| self.map(&format!("uploading manifest {at}"), e))?;
        Ok(digest)
    }

    /// Downloads the manifest at `at` (accepting `media_types`), checked
    /// against the digest the registry names or the reference carries;
    /// returns its bytes and digest.
    pub async fn pull_manifest(
        &self,
        at: &Reference,
        media_types: &[&str],
    ) -> Result<(Bytes, String)> {
        self.client
            .pull_manifest_raw(at, &self.auth, media_types)
            .await
            .map_err(|e| self.map(&format!("downloading manifest {at}"), e))
    }

    /// The referrers index at the tag schema's tag for `subject` (an empty
    /// index when the tag does not exist).
    pub async fn tag_schema_index(&self, subject: &str) -> Result<ImageIndex> {
        let tag = self.at_tag(&subject.replace(':', "-"));
        match self.pull_manifest(&tag, &[INDEX_MEDIA_TYPE]).await {
            Ok((bytes, _)) => serde_json::from_slice(&bytes).map_err(|e| {
                self.error(
                    OciProblem::Refused,
                    format!("the referrers index at tag {tag} does not decode: {e}"),
                )
            }),
            Err(Error::Oci {
                problem: OciProblem::NotFound,
                ..
            }) => Ok(ImageIndex::empty()),
            Err(e) => Err(e),
        }
    }

    /// The referrers of `subject`: through the Referrers API, or through the
    /// tag schema when the registry has no such API (the OCI client falls back
    /// on a 404, as the distribution spec says).
    pub async fn referrers(&self, subject: &str) -> Result<Vec<Descriptor>> {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        let index = self
            .client
            .pull_referrers(&self.at_digest(subject), None)
            .await
            .map_err(|e| self.map(&format!("listing the referrers of {subject}"), e))?;
        Ok(index
            .manifests
            .into_iter()
            .map(|m| Descriptor {
                media_type: m.media_type,
                digest: m.digest,
                size: u64::try_from(m.size).unwrap_or(0),
                artifact_type: m.artifact_type,
                annotations: m.annotations.unwrap_or_default(),
            })
            .collect())
    }

    /// Opens the blob `digest` for reading, checking the size the registry
    /// announces against `size`.
    async fn open_blob(
        &self,
        digest: &str,
        size: u64,
    ) -> Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>> {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        let blob = self
            .client
            .pull_blob_stream(&self.reference, digest)
            .await
            .map_err(|e| self.map(&format!("downloading blob {digest}"), e))?;
        if let Some(len) = blob.content_length
            && len != size
        {
            return Err(self.error(
                OciProblem::DigestMismatch,
                format!("blob {digest} is {len} bytes, its descriptor says {size}"),
            ));
        }
        Ok(blob.stream)
    }

    /// Downloads a small blob (a config) into memory, verified.
    pub async fn pull_small(&self, descriptor: &Descriptor) -> Result<Bytes> {
        if descriptor.size > MAX_DOCUMENT {
            return Err(self.error(
                OciProblem::Refused,
                format!(
                    "blob {} is {} bytes, more than the {MAX_DOCUMENT} read into memory",
                    descriptor.digest, descriptor.size
                ),
            ));
        }
        let mut out = Vec::with_capacity(descriptor.size as usize);
        let mut hasher = sha2::Sha256::new();
        let mut stream = self.open_blob(&descriptor.digest, descriptor.size).await?;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    if out.len() as u64 + c.len() as u64 > descriptor.size {
                        failed = Some("more bytes than its descriptor says".to_owned());
                        break;
                    }
                    hasher.update(&c);
                    out.extend_from_slice(&c);
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        self.check(descriptor, out.len() as u64, hasher, failed)?;
        Ok(Bytes::from(out))
    }

    /// Downloads the blob of `descriptor` into the new file `dest`, hashing on
    /// the way; a blob whose size or SHA-256 differs from the descriptor's is
    /// [`OciProblem::DigestMismatch`] (the file is left for the caller to
    /// remove with its staging directory).
    pub async fn pull_to_file(&self, descriptor: &Descriptor, dest: &Path) -> Result<()> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let mut file = tokio::fs::File::create_new(dest)
            .await
            .map_err(|e| Error::io(dest, e))?;
        let mut hasher = sha2::Sha256::new();
        let mut written = 0u64;
        let mut failed = None;
        let mut stream = self.open_blob(&descriptor.digest, descriptor.size).await?;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    written += c.len() as u64;
                    if written > descriptor.size {
                        failed = Some("more bytes than its descriptor says".to_owned());
                        break;
                    }
                    hasher.update(&c);
                    file.write_all(&c).await.map_err(|e| Error::io(dest, e))?;
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        file.flush().await.map_err(|e| Error::io(dest, e))?;
        drop(file);
        self.check(descriptor, written, hasher, failed)
    }

    /// Whether what was read matches the descriptor. A stream that ended in an
    /// error after delivering the announced size (the OCI client's own digest
    /// check) is judged by the digest; one that broke off early is
    /// [`OciProblem::Unreachable`].
    fn check(
        &self,
        descriptor: &Descriptor,
        read: u64,
        hasher: sha2::Sha256,
        failed: Option<String>,
    ) -> Result<()> {
        let actual = oci_digest(&Sha256::from_bytes(hasher.finalize().into()));
        if read == descriptor.size && actual != descriptor.digest {
            return Err(self.error(
                OciProblem::DigestMismatch,
                format!(
                    "blob {} has SHA-256 {actual}: not the digest its descriptor names",
                    descriptor.digest
                ),
            ));
        }
        if read > descriptor.size {
            return Err(self.error(
                OciProblem::DigestMismatch,
                format!(
                    "blob {} is larger than the {} bytes its descriptor says",
                    descriptor.digest, descriptor.size
                ),
            ));
        }
        if let Some(why) = failed {
            return Err(self.error(
                OciProblem::Unreachable,
                format!("downloading blob {} failed: {why}", descriptor.digest),
            ));
        }
        if read != descriptor.size {
            return Err(self.error(
                OciProblem::DigestMismatch,
                format!(
                    "blob {} is {read} bytes, its descriptor says {}",
                    descriptor.digest, descriptor.size
                ),
            ));
        }
        Ok(())
    }
}

/// An error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let next = src.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = src.source();
    }
    s
}
