//! Where the multi-process harnesses (`tests/crash.rs`, `tests/torture.rs`) put
//! their registry: a local directory (packed or not), object_store's
//! `LocalFileSystem` through a `file://` URL, or a real S3 or Azure server. A
//! child process is told the target as one string, its [`spec`](Target::spec):
//! a directory path, `packed:` and a directory path, or a URL.

use std::path::Path;
use std::sync::Arc;

use modelreg::Registry;
use modelreg::store::object::stores_from_url;
use modelreg::store::{LocalArtifactOptions, LocalArtifactStore, LocalMetadataStore, PackOptions};
use tempfile::TempDir;

use super::servers::Server;

/// A fresh, empty registry location.
#[derive(Debug)]
pub struct Target {
    /// What children are told: a directory path or a URL.
    pub spec: String,
    /// A name for messages: `local`, `file`, `s3`, `azure`.
    pub name: &'static str,
    /// Keeps a local directory alive for as long as the target.
    _dir: Option<TempDir>,
}

impl Target {
    /// A directory on local disk, opened with the local stores.
    pub fn local() -> Target {
        let dir = TempDir::new().expect("temp dir");
        Target {
            spec: dir.path().join("reg").display().to_string(),
            name: "local",
            _dir: Some(dir),
        }
    }

    /// A directory on local disk whose artifact store packs the files it
    /// imports from disk ([`packed_options`]); its spec is the directory
    /// prefixed with `packed:`.
    pub fn local_packed() -> Target {
        let dir = TempDir::new().expect("temp dir");
        Target {
            spec: format!("{PACKED}{}", dir.path().join("reg").display()),
            name: "packed",
            _dir: Some(dir),
        }
    }

    /// A local directory reached as a `file://` URL: object_store's
    /// `LocalFileSystem` under the object stores.
    pub fn file_url() -> Target {
        let dir = TempDir::new().expect("temp dir");
        Target {
            spec: format!("file://{}/reg", dir.path().display()),
            name: "file",
            _dir: Some(dir),
        }
    }

    /// A prefix of its own on a configured server (see [`Server::unique_url`]).
    pub fn server(server: Server) -> Target {
        Target {
            spec: server.unique_url(),
            name: match server {
                Server::S3 => "s3",
                Server::Azure => "azure",
            },
            _dir: None,
        }
    }

    /// Whether this target is a real server (slower: the harnesses size their
    /// default runs down for it).
    pub fn is_server(&self) -> bool {
        matches!(self.name, "s3" | "azure")
    }
}

/// Whether `spec` is a URL rather than a directory.
pub fn is_url(spec: &str) -> bool {
    spec.contains("://")
}

/// The prefix of a packed local target's spec.
const PACKED: &str = "packed:";

/// The artifact options of a packed local target: files from disk of 128 KiB
/// or more go into packs of 1 MiB.
pub fn packed_options() -> LocalArtifactOptions {
    LocalArtifactOptions::new().packed(
        PackOptions::new()
            .min_file_size(128 << 10)
            .pack_size(1 << 20),
    )
}

/// The directory of a local `spec` (packed or not), and its artifact options.
fn local_spec(spec: &str) -> (&Path, LocalArtifactOptions) {
    match spec.strip_prefix(PACKED) {
        Some(dir) => (Path::new(dir), packed_options()),
        None => (Path::new(spec), LocalArtifactOptions::new()),
    }
}

/// Where a target's child processes may write source files of their own: a
/// directory beside a local registry, else the system's temp directory.
pub fn scratch_beside(spec: &str) -> std::path::PathBuf {
    if is_url(spec) {
        return std::env::temp_dir();
    }
    let (dir, _) = local_spec(spec);
    dir.parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
}

/// A registry over the stores `spec` names, checkpointing every
/// `checkpoint_every` events. A URL gets the stores `Registry::open_url` builds
/// (`stores_from_url`); a directory gets the local stores in the layout of
/// `Registry::open_local`.
pub fn open_with_checkpoints(spec: &str, checkpoint_every: u64) -> Registry {
    let builder = if is_url(spec) {
        let (metadata, artifacts) = stores_from_url(spec).expect("stores from URL");
        Registry::builder()
            .metadata(Arc::new(metadata))
            .artifacts(Arc::new(artifacts))
    } else {
        let (root, options) = local_spec(spec);
        Registry::builder()
            .metadata(Arc::new(
                LocalMetadataStore::open(root.join("metadata")).expect("metadata store"),
            ))
            .artifacts(Arc::new(
                LocalArtifactStore::open_with(root.join("artifacts"), options)
                    .expect("artifact store"),
            ))
    };
    builder
        .checkpoint_every(checkpoint_every)
        .build()
        .expect("registry")
}

/// The registry at `spec` as a user opens it: `Registry::open_url` for a URL,
/// `Registry::open_local` for a directory (`open_local_with` and the packed
/// options for a packed one).
pub async fn open_default(spec: &str) -> Registry {
    if is_url(spec) {
        Registry::open_url(spec).await.expect("open_url")
    } else {
        let (dir, options) = local_spec(spec);
        Registry::open_local_with(dir, options)
            .await
            .expect("open_local")
    }
}
