//! The CNCF ModelPack mapping: a version's record and manifest → an OCI image
//! manifest and ModelPack config, and a pulled OCI manifest and config → the
//! files and record of a new version.
//!
//! Pure: no network, no store. The shapes are our own serde structs (not the
//! OCI client's), so the bytes pushed, and therefore their digests, are decided
//! here, and a hostile manifest is decoded by code that checks every field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256;
use crate::domain::{Manifest, Metrics, Provenance, RelPath, Tags, VersionRecord};
use crate::error::{Error, OciProblem, Result};

/// The media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an OCI image index (the referrers tag schema holds one).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The `artifactType` of a ModelPack model manifest.
pub const MODEL_ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
/// The media type of a ModelPack model config.
pub const MODEL_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
/// The layer annotation naming a file's path inside the model.
pub const FILEPATH_ANNOTATION: &str = "org.cncf.model.filepath";
/// The OCI annotation that ORAS and other generic clients name pulled files by.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The manifest annotation holding what modelreg knows of the version beyond the
/// ModelPack config (metrics, hyperparameters, environment, tags), as JSON.
pub const RECORD_ANNOTATION: &str = "dev.modelreg.version";
/// The empty JSON object `{}`, the config of referrer manifests.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `bytes`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: oci_digest(&Sha256::of(bytes)),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI image manifest (image-spec 1.1, with `artifactType` and `subject`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// The manifest's bytes as pushed (compact JSON; its digest is their SHA-256).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An OCI image index: the referrers of a subject under the tag schema.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl ImageIndex {
    /// An index listing nothing.
    pub fn empty() -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(INDEX_MEDIA_TYPE.to_owned()),
            manifests: Vec::new(),
        }
    }
}

/// The ModelPack config (`application/vnd.cncf.model.config.v1+json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelConfig {
    pub descriptor: ModelDescriptor,
    #[serde(default)]
    pub config: ModelTechnical,
    pub modelfs: ModelFs,
}

/// `descriptor`: who, what and when.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, rename = "sourceURL", skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// `config`: technical metadata; modelreg knows only the format.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelTechnical {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// `modelfs`: the layers' uncompressed digests, in layer order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelFs {
    #[serde(rename = "type")]
    pub kind: String,
    /// `diffIds` in the current spec, `diff_ids` in its first drafts.
    #[serde(alias = "diff_ids")]
    pub diff_ids: Vec<String>,
}

/// What modelreg adds in [`RECORD_ANNOTATION`]: the parts of a version's record
/// the ModelPack config has no place for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct RecordNote {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "Metrics::is_empty")]
    pub metrics: Metrics,
    #[serde(default)]
    pub provenance: Provenance,
}

/// `sha256:<hex>`, the OCI spelling of a SHA-256 digest.
pub(crate) fn oci_digest(sha: &Sha256) -> String {
    format!("sha256:{}", sha.to_hex())
}

/// Parses `sha256:<64 lowercase hex>`; any other algorithm or spelling is `None`.
pub(crate) fn parse_oci_digest(digest: &str) -> Option<Sha256> {
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex.parse().ok()
}

/// The ModelPack layer media type of a file, by its name: weights, weight
/// configs (`config.json`, tokenizers), docs, code and datasets, all `raw`
/// (one uncompressed file per layer). Anything unknown counts as weights.
pub(crate) fn layer_media_type(path: &RelPath) -> &'static str {
    let name = path
        .segments()
        .last()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let config_names = [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "preprocessor_config.json",
        "added_tokens.json",
    ];
    if config_names.contains(&name.as_str()) {
        "application/vnd.cncf.model.weight.config.v1.raw"
    } else if name.starts_with("readme") || name.starts_with("license") || ext == "md" {
        "application/vnd.cncf.model.doc.v1.raw"
    } else if matches!(ext, "py" | "sh" | "ipynb" | "rs" | "js") {
        "application/vnd.cncf.model.code.v1.raw"
    } else if matches!(ext, "csv" | "parquet" | "jsonl" | "arrow" | "tsv") {
        "application/vnd.cncf.model.dataset.v1.raw"
    } else {
        "application/vnd.cncf.model.weight.v1.raw"
    }
}

/// The model's format for `config.format`, from its weight files' extensions
/// (the first of safetensors, gguf, onnx, pytorch found), else from the
/// recorded frameworks.
fn model_format(record: &VersionRecord, manifest: &Manifest) -> Option<String> {
    let exts: Vec<String> = manifest
        .entries()
        .iter()
        .filter_map(|e| {
            e.path
                .as_str()
                .rsplit_once('.')
                .map(|(_, x)| x.to_ascii_lowercase())
        })
        .collect();
    let has = |x: &[&str]| exts.iter().any(|e| x.contains(&e.as_str()));
    let by_files = if has(&["safetensors"]) {
        Some("safetensors")
    } else if has(&["gguf"]) {
        Some("gguf")
    } else if has(&["onnx"]) {
        Some("onnx")
    } else if has(&["pt", "pth", "ckpt"]) {
        Some("pytorch")
    } else {
        None
    };
    let frameworks = &record.provenance.environment.frameworks;
    by_files.map(str::to_owned).or_else(|| {
        if frameworks.contains_key("torch") {
            Some("pytorch".into())
        } else {
            frameworks.keys().next().cloned()
        }
    })
}

/// One file of a version as a layer: its path, size and SHA-256.
#[derive(Clone, Debug)]
pub(crate) struct LayerFile {
    pub path: RelPath,
    pub size: u64,
    pub sha256: Sha256,
}

/// The ModelPack config and manifest of a version whose files are `files` (in
/// manifest order, each with its SHA-256). Returns the config's bytes and the
/// manifest (whose config descriptor names those bytes).
pub(crate) fn build(
    record: &VersionRecord,
    manifest: &Manifest,
    files: &[LayerFile],
) -> (Vec<u8>, ImageManifest) {
    let version = record
        .semver
        .as_ref()
        .map_or_else(|| record.number.to_string(), ToString::to_string);
    let code = record.provenance.code.as_ref();
    let config = ModelConfig {
        descriptor: ModelDescriptor {
            created_at: Some(record.created_at),
            authors: vec![record.created_by.to_string()],
            name: Some(record.model.to_string()),
            version: Some(version.clone()),
            description: Some(record.description.clone()).filter(|d| !d.is_empty()),
            source_url: code
                .and_then(|c| c.repository.clone())
                .filter(|r| r.contains("://")),
            revision: code.map(|c| c.commit.clone()),
        },
        config: ModelTechnical {
            format: model_format(record, manifest),
        },
        modelfs: ModelFs {
            kind: "layers".into(),
            diff_ids: files.iter().map(|f| oci_digest(&f.sha256)).collect(),
        },
    };
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let layers = files
        .iter()
        .map(|f| Descriptor {
            media_type: layer_media_type(&f.path).to_owned(),
            digest: oci_digest(&f.sha256),
            size: f.size,
            artifact_type: None,
            annotations: BTreeMap::from([
                (FILEPATH_ANNOTATION.to_owned(), f.path.to_string()),
                (TITLE_ANNOTATION.to_owned(), f.path.to_string()),
            ]),
        })
        .collect();
    let note = RecordNote {
        model: record.model.to_string(),
        number: record.number.get(),
        semver: record.semver.as_ref().map(ToString::to_string),
        tags: record.tags.clone(),
        metrics: record.metrics.clone(),
        provenance: record.provenance.clone(),
    };
    let mut annotations = BTreeMap::from([
        (
            "org.opencontainers.image.created".to_owned(),
            record.created_at.to_rfc3339(),
        ),
        ("org.opencontainers.image.version".to_owned(), version),
        (
            "org.opencontainers.image.title".to_owned(),
            record.model.to_string(),
        ),
    ]);
    if let Ok(json) = serde_json::to_string(&note) {
        annotations.insert(RECORD_ANNOTATION.to_owned(), json);
    }
    let image = ImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        artifact_type: Some(MODEL_ARTIFACT_TYPE.to_owned()),
        config: Descriptor::of(MODEL_CONFIG_MEDIA_TYPE, &config_bytes),
        layers,
        subject: None,
        annotations,
    };
    (config_bytes, image)
}

/// A referrer manifest: `artifact_type`, the empty config, one layer (`blob`)
/// and `subject`.
pub(crate) fn referrer_manifest(
    artifact_type: &str,
    blob: Descriptor,
    subject: Descriptor,
    annotations: BTreeMap<String, String>,
) -> ImageManifest {
    ImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        artifact_type: Some(artifact_type.to_owned()),
        config: Descriptor::of(EMPTY_CONFIG_MEDIA_TYPE, b"{}"),
        layers: vec![blob],
        subject: Some(subject),
        annotations,
    }
}

/// One file of a pulled ModelPack artifact.
#[derive(Clone, Debug)]
pub(crate) struct PulledLayer {
    /// Where the file goes (checked: relative, no `..`, …).
    pub path: RelPath,
    /// The layer's OCI digest, as the manifest spells it.
    pub digest: String,
    /// Its SHA-256.
    pub sha256: Sha256,
    /// Its size.
    pub size: u64,
}

/// A pulled manifest, checked: a ModelPack model whose layers are raw files at
/// safe, distinct paths.
#[derive(Clone, Debug)]
pub(crate) struct PulledArtifact {
    pub config: Descriptor,
    pub layers: Vec<PulledLayer>,
    pub note: Option<RecordNote>,
}

/// Decodes and checks a pulled manifest. `reference` names it in errors.
///
/// - [`OciProblem::NotModelPack`]: not JSON, not an image manifest, neither
///   its `artifactType` nor its config media type is ModelPack's, a layer that
///   is an archive (`tar`, `tar+gzip`, `tar+zstd`: not supported), a digest
///   that is not SHA-256;
/// - [`Error::InvalidPath`]: a layer whose path annotation is missing, unsafe
///   (`../x`, `/etc/passwd`), or collides with another's, as a manifest of our
///   own would be refused.
pub(crate) fn parse_manifest(reference: &str, bytes: &[u8]) -> Result<PulledArtifact> {
    let bad = |detail: String| Error::Oci {
        reference: reference.to_owned(),
        operation: "pull",
        problem: OciProblem::NotModelPack,
        detail,
    };
    let m: ImageManifest = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "the manifest does not decode as an OCI image manifest: {e}"
        ))
    })?;
    if m.media_type
        .as_deref()
        .is_some_and(|t| t != MANIFEST_MEDIA_TYPE)
    {
        return Err(bad(format!(
            "the manifest's media type is {:?}, not {MANIFEST_MEDIA_TYPE}",
            m.media_type.unwrap_or_default()
        )));
    }
    let modelpack = m.artifact_type.as_deref() == Some(MODEL_ARTIFACT_TYPE)
        || m.config.media_type == MODEL_CONFIG_MEDIA_TYPE;
    if !modelpack {
        return Err(bad(format!(
            "artifact type {:?}, config {:?}: expected {MODEL_ARTIFACT_TYPE}",
            m.artifact_type.unwrap_or_default(),
            m.config.media_type
        )));
    }
    let mut layers = Vec::with_capacity(m.layers.len());
    for (i, l) in m.layers.iter().enumerate() {
        if !l.media_type.starts_with("application/vnd.cncf.model.")
            || !l.media_type.ends_with(".raw")
        {
            return Err(bad(format!(
                "layer {i} has media type {:?}; only raw ModelPack layers (one file each) are supported",
                l.media_type
            )));
        }
        let sha256 = parse_oci_digest(&l.digest)
            .ok_or_else(|| bad(format!("layer {i} has digest {:?}, not sha256", l.digest)))?;
        let path = l
            .annotations
            .get(FILEPATH_ANNOTATION)
            .or_else(|| l.annotations.get(TITLE_ANNOTATION))
            .ok_or_else(|| {
                Error::invalid_path(
                    format!("layer {i} ({})", l.digest),
                    format!("has no {FILEPATH_ANNOTATION} annotation"),
                )
            })?;
        layers.push(PulledLayer {
            path: RelPath::new(path.clone())?,
            digest: l.digest.clone(),
            sha256,
            size: l.size,
        });
    }
    // The manifest's own rules: unique paths, no case collisions, no file that
    // is also a directory.
    let mut paths: Vec<&RelPath> = layers.iter().map(|l| &l.path).collect();
    paths.sort();
    Manifest::check_paths(&paths)?;
    if parse_oci_digest(&m.config.digest).is_none() {
        return Err(bad(format!(
            "the config has digest {:?}, not sha256",
            m.config.digest
        )));
    }
    let note = m
        .annotations
        .get(RECORD_ANNOTATION)
        .and_then(|json| serde_json::from_str::<RecordNote>(json).ok());
    Ok(PulledArtifact {
        config: m.config,
        layers,
        note,
    })
}

/// Decodes a ModelPack config. One that does not decode is
/// [`OciProblem::NotModelPack`].
pub(crate) fn parse_config(reference: &str, bytes: &[u8]) -> Result<ModelConfig> {
    serde_json::from_slice(bytes).map_err(|e| Error::Oci {
        reference: reference.to_owned(),
        operation: "pull",
        problem: OciProblem::NotModelPack,
        detail: format!("the model config does not decode: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> RelPath {
        RelPath::new(p).unwrap()
    }

    #[test]
    fn layer_media_types_follow_the_file_kind() {
        assert_eq!(
            layer_media_type(&rel("model.safetensors")),
            "application/vnd.cncf.model.weight.v1.raw"
        );
        assert_eq!(
            layer_media_type(&rel("sub/config.json")),
            "application/vnd.cncf.model.weight.config.v1.raw"
        );
        assert_eq!(
            layer_media_type(&rel("README.md")),
            "application/vnd.cncf.model.doc.v1.raw"
        );
        assert_eq!(
            layer_media_type(&rel("train.py")),
            "application/vnd.cncf.model.code.v1.raw"
        );
        assert_eq!(
            layer_media_type(&rel("eval.csv")),
            "application/vnd.cncf.model.dataset.v1.raw"
        );
    }

    fn manifest_with_layer(path: &str, media_type: &str, artifact_type: &str) -> Vec<u8> {
        let layer = Descriptor {
            media_type: media_type.into(),
            digest: oci_digest(&Sha256::of(b"x")),
            size: 1,
            artifact_type: None,
            annotations: BTreeMap::from([(FILEPATH_ANNOTATION.to_owned(), path.to_owned())]),
        };
        ImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            artifact_type: Some(artifact_type.into()),
            config: Descriptor::of(MODEL_CONFIG_MEDIA_TYPE, b"{}"),
            layers: vec![layer],
            subject: None,
            annotations: BTreeMap::new(),
        }
        .to_bytes()
    }

    #[test]
    fn a_safe_modelpack_manifest_parses() {
        let m = manifest_with_layer(
            "weights/model.bin",
            "application/vnd.cncf.model.weight.v1.raw",
            MODEL_ARTIFACT_TYPE,
        );
        let a = parse_manifest("r", &m).unwrap();
        assert_eq!(a.layers[0].path.as_str(), "weights/model.bin");
        assert_eq!(a.layers[0].sha256, Sha256::of(b"x"));
    }

    #[test]
    fn hostile_and_foreign_manifests_are_refused() {
        for path in ["../x", "/etc/passwd", "a/../../b", "a\\b"] {
            let m = manifest_with_layer(
                path,
                "application/vnd.cncf.model.weight.v1.raw",
                MODEL_ARTIFACT_TYPE,
            );
            assert!(
                matches!(parse_manifest("r", &m), Err(Error::InvalidPath { .. })),
                "{path}"
            );
        }
        let image = manifest_with_layer(
            "x",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.example+json",
        );
        let mut v: serde_json::Value = serde_json::from_slice(&image).unwrap();
        v["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let image = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            parse_manifest("r", &image),
            Err(Error::Oci {
                problem: OciProblem::NotModelPack,
                ..
            })
        ));
        let tar = manifest_with_layer(
            "x",
            "application/vnd.cncf.model.weight.v1.tar",
            MODEL_ARTIFACT_TYPE,
        );
        assert!(matches!(
            parse_manifest("r", &tar),
            Err(Error::Oci {
                problem: OciProblem::NotModelPack,
                ..
            })
        ));
        assert!(matches!(
            parse_manifest("r", b"not json"),
            Err(Error::Oci {
                problem: OciProblem::NotModelPack,
                ..
            })
        ));
    }

    #[test]
    fn the_config_reads_both_spellings_of_diff_ids() {
        for key in ["diffIds", "diff_ids"] {
            let json = format!(
                r#"{{"descriptor":{{"name":"m"}},"modelfs":{{"type":"layers","{key}":["sha256:{}"]}}}}"#,
                "a".repeat(64)
            );
            let c = parse_config("r", json.as_bytes()).unwrap();
            assert_eq!(c.modelfs.diff_ids.len(), 1, "{key}");
        }
    }
}
