//! OCI push and pull (feature `oci`): where the ModelPack mapping
//! (`crate::oci::modelpack`), the OCI client (`crate::oci::client`) and the
//! stores meet.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use sha2::Digest as _;

use super::{
    ArtifactSource, CreateModel, IntoModelName, IntoVersionRef, NewVersion, Registry, Session,
};
use crate::digest::Sha256;
use crate::domain::Provenance;
use crate::error::{Error, OciProblem, Result};
use crate::oci::client::OciClient;
use crate::oci::modelpack::{
    self, Descriptor, INDEX_MEDIA_TYPE, LayerFile, MANIFEST_MEDIA_TYPE, oci_digest,
};
use crate::oci::{
    AttachReport, OciOptions, PullReport, PushReport, Referrer, SIGNATURE_BY_ANNOTATION,
    SIGNATURE_KEY_ANNOTATION, SIGNATURE_REASON_ANNOTATION, attach,
};

/// The manifest media types a pull accepts from the registry, so that an
/// index or a Docker image is reported for what it is (not ModelPack) rather
/// than as not found; anything but an OCI image manifest is then refused.
const PULL_ACCEPT: &[&str] = &[
    MANIFEST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl Registry {
    /// Pushes a version to an OCI registry as a CNCF ModelPack artifact, under
    /// `reference` (`registry/repository:tag`), then attaches the version's
    /// recorded signatures (each OMS bundle as a referrer of artifact type
    /// [`BUNDLE_MEDIA_TYPE`](crate::signing::BUNDLE_MEDIA_TYPE), annotated with
    /// its key id, signer and reason) and `referrers` to it (see
    /// [`attach_oci_referrer`](Self::attach_oci_referrer)), so `cosign`-style
    /// tools and `model_signing` users find the signatures beside the model.
    ///
    /// Each file becomes one raw layer, streamed from the artifact store in
    /// chunks (never whole in memory) and named by the SHA-256 recorded at
    /// registration (computed from the store, by reading the file once more,
    /// for versions registered before it was recorded); the registry checks
    /// every byte against it, so bytes that changed in the store are refused
    /// there, not published. Layers the registry has already are not sent.
    /// Blobs go first, the manifest last: a push that fails leaves at most
    /// unreferenced blobs in the OCI registry.
    ///
    /// Errors: [`Error::NotFound`] for the version, [`Error::InvalidInput`]
    /// for a reference that does not parse (or names a digest other than the
    /// manifest's), [`Error::Oci`] for the registry.
    #[tracing::instrument(name = "push_oci", level = "info", skip_all)]
    pub async fn push_oci(
        &self,
        version: impl IntoVersionRef,
        reference: &str,
        options: &OciOptions,
        referrers: Vec<Referrer>,
    ) -> Result<PushReport> {
        let client = OciClient::new(reference, options, "push")?;
        let record = self.resolve(version).await?;
        let manifest = self.verified_manifest(&record.artifact).await?;
        let store = Arc::clone(&self.inner.artifacts);
        let mut files = Vec::with_capacity(manifest.len());
        for e in manifest.entries() {
            let sha256 = match e.sha256 {
                Some(s) => s,
                None => {
                    let mut hasher = sha2::Sha256::new();
                    let mut stream = store.get(&e.digest).await?;
                    while let Some(chunk) = stream.try_next().await? {
                        hasher.update(&chunk);
                    }
                    Sha256::from_bytes(hasher.finalize().into())
                }
            };
            files.push(LayerFile {
                path: e.path.clone(),
                size: e.size,
                sha256,
            });
        }
        let (config, image) = modelpack::build(&record, &manifest, &files);
        let bytes = image.to_bytes();
        let digest = oci_digest(&Sha256::of(&bytes));
        if let Some(d) = client.reference().digest()
            && d != digest
        {
            return Err(Error::invalid_input(
                format!("OCI reference {reference:?}"),
                format!("names digest {d}, but the manifest's is {digest}"),
            ));
        }
        client.push_bytes(Bytes::from(config)).await?;
        let mut present = 0;
        for (f, e) in files.iter().zip(manifest.entries()) {
            let layer = oci_digest(&f.sha256);
            if client.blob_exists(&layer).await? {
                present += 1;
                continue;
            }
            let stream = store.get(&e.digest).await?;
            client.push_stream(&layer, stream).await?;
        }
        let size = bytes.len() as u64;
        client
            .push_manifest(client.reference(), bytes, MANIFEST_MEDIA_TYPE)
            .await?;
        let subject = Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            digest: digest.clone(),
            size,
            artifact_type: Some(modelpack::MODEL_ARTIFACT_TYPE.to_owned()),
            annotations: Default::default(),
        };
        let mut all = Vec::with_capacity(record.signatures.len() + referrers.len());
        for b in self.signature_bundles(record.reference()).await? {
            all.push(
                Referrer::new(b.media_type, b.bytes)
                    .annotation(SIGNATURE_KEY_ANNOTATION, b.signature.key.as_str())
                    .annotation(SIGNATURE_BY_ANNOTATION, b.signature.by.as_str())
                    .annotation(SIGNATURE_REASON_ANNOTATION, b.signature.reason),
            );
        }
        all.extend(referrers);
        let mut attached = Vec::with_capacity(all.len());
        for r in &all {
            attached.push(attach(&client, &subject, r).await?);
        }
        Ok(PushReport {
            reference: reference.to_owned(),
            digest,
            layers: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            layers_present: present,
            referrers: attached,
        })
    }

    /// Attaches `referrer` (a signature bundle, an SBOM: an artifact type and
    /// one blob) to the manifest at `subject` (`registry/repository:tag` or
    /// `…@sha256:…`) as an OCI 1.1 referrer: a manifest whose `subject` names
    /// it. Where the registry has the Referrers API it lists the referrer from
    /// then on; where it has none (CNCF distribution 2.8, many others) the
    /// referrer is added to the image index under the tag schema's tag
    /// `sha256-<hex>` (read, add, write). Attaching the same bytes again adds
    /// nothing.
    #[tracing::instrument(name = "attach_oci_referrer", level = "info", skip_all)]
    pub async fn attach_oci_referrer(
        &self,
        subject: &str,
        referrer: Referrer,
        options: &OciOptions,
    ) -> Result<AttachReport> {
        let client = OciClient::new(subject, options, "attach referrer")?;
        let (bytes, digest) = client
            .pull_manifest(client.reference(), &[MANIFEST_MEDIA_TYPE])
            .await?;
        let m: modelpack::ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
            client.error(
                OciProblem::NotModelPack,
                format!("the subject does not decode as an OCI image manifest: {e}"),
            )
        })?;
        let subject = Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            digest,
            size: bytes.len() as u64,
            artifact_type: m.artifact_type,
            annotations: Default::default(),
        };
        attach(&client, &subject, &referrer).await
    }
}

/// A staging directory for a pull's files, removed (off the async worker)
/// when dropped.
struct Staging(Option<PathBuf>);

impl Staging {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "modelreg-oci-pull-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Staging(Some(dir))
    }

    fn path(&self) -> &std::path::Path {
        self.0.as_deref().unwrap_or(std::path::Path::new(""))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let remove = move || {
                let _ = std::fs::remove_dir_all(&dir);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(remove)),
                Err(_) => remove(),
            }
        }
    }
}

impl Session {
    /// Pulls a CNCF ModelPack artifact from an OCI registry (`reference`:
    /// `registry/repository:tag` or `…@sha256:…`) and registers its files as
    /// the next version of `model` (created if it does not exist), acting as
    /// this session's actor.
    ///
    /// Every layer is downloaded into a staging directory under the system's
    /// temporary directory, hashed on the way and checked against its SHA-256
    /// and size; each lands at the path its `org.cncf.model.filepath`
    /// annotation names (else `org.opencontainers.image.title`), checked as a
    /// manifest's paths are. Only when every layer matched is anything
    /// registered. The version records where it came from in its tags:
    /// `oci.source` (the reference as given) and `oci.digest` (the manifest's
    /// digest). Its description, metrics, hyperparameters, environment, code
    /// and datasets come from `version` where set there, else from what the
    /// artifact carries (the ModelPack config's description; a modelreg
    /// push's record annotation). Parents, stages, approvals and aliases do
    /// not travel (see docs/design.md).
    ///
    /// Errors: [`Error::InvalidPath`] for a hostile layer path (`../x`);
    /// [`Error::Oci`] with [`OciProblem::NotModelPack`] for an artifact that is
    /// not a ModelPack model, [`OciProblem::DigestMismatch`] for a layer whose
    /// bytes are not what its descriptor says, [`OciProblem::Unreachable`],
    /// [`OciProblem::NotFound`] or [`OciProblem::Refused`] for the registry.
    /// On any error nothing is registered and the staging directory is
    /// removed.
    #[tracing::instrument(name = "pull_oci", level = "info", skip_all)]
    pub async fn pull_oci(
        &self,
        reference: &str,
        model: impl IntoModelName,
        options: &OciOptions,
        version: NewVersion,
    ) -> Result<PullReport> {
        let model = model.into_model_name()?;
        let client = OciClient::new(reference, options, "pull")?;
        let (bytes, digest) = client
            .pull_manifest(client.reference(), PULL_ACCEPT)
            .await?;
        let artifact = modelpack::parse_manifest(reference, &bytes)?;
        let config = client.pull_small(&artifact.config).await?;
        let config = modelpack::parse_config(reference, &config)?;
        let staging = Staging::new();
        tokio::fs::create_dir_all(staging.path())
            .await
            .map_err(|e| Error::io(staging.path(), e))?;
        let mut total = 0;
        for layer in &artifact.layers {
            let descriptor = Descriptor {
                media_type: String::new(),
                digest: layer.digest.clone(),
                size: layer.size,
                artifact_type: None,
                annotations: Default::default(),
            };
            let mut dest = staging.path().to_path_buf();
            dest.extend(layer.path.segments());
            client.pull_to_file(&descriptor, &dest).await?;
            total += layer.size;
            debug_assert_eq!(oci_digest(&layer.sha256), layer.digest);
        }
        let mut version = version;
        if version.description.is_empty()
            && let Some(d) = config.descriptor.description.clone()
        {
            version.description = d;
        }
        if let Some(note) = artifact.note {
            for (k, v) in note.tags {
                version.tags.entry(k).or_insert(v);
            }
            if version.metrics.is_empty() {
                version.metrics = note.metrics;
            }
            if version.provenance == Provenance::default() {
                version.provenance = Provenance {
                    parents: Vec::new(),
                    ..note.provenance
                };
            }
        }
        version = version
            .tag("oci.source", reference)
            .tag("oci.digest", digest.clone());
        self.ensure_model(model.clone(), CreateModel::new()).await?;
        let registered = self
            .register(
                model,
                ArtifactSource::Dir(staging.path().to_path_buf()),
                version,
            )
            .await?;
        drop(staging);
        Ok(PullReport {
            reference: reference.to_owned(),
            digest,
            version: registered.into(),
            files: artifact.layers.len() as u64,
            bytes: total,
        })
    }
}
