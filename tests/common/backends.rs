//! The backends the behaviour suite runs on, as [`Fixture`]s.
//!
//! A fixture owns one pair of stores and hands out registries over them: the
//! primary one, and fresh ones that share nothing with it but the stores (what a
//! second process would see). What differs between backends — how a blob is
//! corrupted behind the registry's back — is a field here, not a copy of a test.
//!
//! To add a backend: write a constructor here and add its name to the list in
//! `tests/registry_behaviour.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use modelreg::store::object::{ObjectArtifactOptions, stores_from_url, stores_in};
use modelreg::store::{
    ArtifactStore, LocalArtifactStore, LocalMetadataStore, MemoryArtifactStore,
    MemoryMetadataStore, MetadataStore,
};
use modelreg::{Digest, Registry, RegistryBuilder};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tempfile::TempDir;

use super::fs::disk_usage;
use super::servers::{Server, unique_name};

/// Makes a new registry over the fixture's stores.
type Reopen = Box<dyn Fn() -> BoxFuture<'static, Registry> + Send + Sync>;

/// How a test reaches a blob's stored bytes without going through the registry.
enum BlobAccess {
    /// The memory store, which has a hook for exactly this.
    Memory(MemoryArtifactStore),
    /// The root of a local artifact store; blobs live at
    /// `blobs/v2/blake3/<hex[0..2]>/<hex>` below it (before 0.3:
    /// `blobs/v1/blake3/<hex[0..2]>/<hex[2..4]>/<hex>`).
    Local(PathBuf),
    /// An object store and the artifact store's prefix in it (same layout).
    Object(Arc<dyn ObjectStore>, object_store::path::Path),
}

/// One backend under test: a registry, a way to open more over the same stores, and
/// a scratch directory for sources and fetch destinations.
pub struct Fixture {
    /// The backend's name, for messages.
    pub name: &'static str,
    /// Whether `LinkMode::HardLink` fetches hard-link blobs (a local store whose
    /// blobs are on the scratch directory's filesystem) rather than copying.
    pub hard_links: bool,
    registry: Registry,
    reopen: Reopen,
    blobs: BlobAccess,
    /// Holds the local stores (if any) and the scratch directory.
    dir: TempDir,
    /// On the S3 test server: the store and the prefix every object of this
    /// fixture is under, which [`clean_up`](Self::clean_up) empties (`None`
    /// elsewhere, Azurite included).
    server: Option<(Arc<dyn ObjectStore>, object_store::path::Path)>,
}

impl Fixture {
    /// The primary registry (a clone: clones share caches).
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// A new registry over the same stores that shares no cache with the primary
    /// one: another process's view.
    pub async fn fresh(&self) -> Registry {
        (self.reopen)().await
    }

    /// A registry over the primary registry's store instances, configured by
    /// `configure` (checkpoint interval, retry policy).
    pub fn registry_with(
        &self,
        configure: impl FnOnce(RegistryBuilder) -> RegistryBuilder,
    ) -> Registry {
        configure(
            Registry::builder()
                .metadata(self.registry.metadata_store().clone())
                .artifacts(self.registry.artifact_store().clone()),
        )
        .build()
        .expect("builder with both stores")
    }

    /// A directory of the test's own, outside the stores.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// Replaces the stored bytes of blob `digest` with `bytes`, behind the
    /// registry's back (bit rot, a careless admin).
    pub fn corrupt_blob(&self, digest: &Digest, bytes: &[u8]) {
        match &self.blobs {
            BlobAccess::Memory(store) => assert!(
                store.corrupt_for_testing(digest, bytes.to_vec().into()),
                "blob {digest} is not in the store"
            ),
            BlobAccess::Local(root) => corrupt_local_blob(root, digest, bytes),
            BlobAccess::Object(store, root) => corrupt_object_blob(store, root, digest, bytes),
        }
    }

    /// Whether the fixture's artifact store keeps files as chunks in packs.
    pub fn packed(&self) -> bool {
        self.name.ends_with("_packed")
    }

    /// Every byte the artifact store keeps, read behind the registry's back:
    /// whole blobs, packs, their indexes and retirement records, recipes.
    pub async fn stored_bytes(&self) -> u64 {
        match &self.blobs {
            BlobAccess::Memory(store) => {
                use futures::TryStreamExt;
                let digests: Vec<Digest> = store
                    .list()
                    .await
                    .expect("list blobs")
                    .try_collect()
                    .await
                    .expect("list blobs");
                let mut total = 0;
                for d in digests {
                    total += store.head(&d).await.expect("head").map_or(0, |m| m.size);
                }
                total
            }
            BlobAccess::Local(root) => disk_usage(root),
            BlobAccess::Object(store, root) => {
                use futures::TryStreamExt;
                let objects: Vec<object_store::ObjectMeta> = store
                    .list(Some(root))
                    .try_collect()
                    .await
                    .expect("list objects");
                objects.iter().map(|o| o.size).sum()
            }
        }
    }

    /// Deletes every object the fixture stored on the S3 test server
    /// (nothing elsewhere: a temporary directory goes with the fixture). moto
    /// keeps everything in memory and lists by scanning it, so the suites
    /// empty their prefix after each passing test; a failing test's objects
    /// stay for a look. A failure to delete is reported, not a test failure.
    ///
    /// Not on Azurite, though it slows down as it fills too (the same 6
    /// tests took 2.6 s on a fresh one, 21.8 s on one holding a few thousand
    /// tests' objects): in both CI runs made with it emptied this way
    /// (`delete_stream`, which object_store sends to Azure as batch
    /// requests), a later test process's first 8 concurrent PUTs were never
    /// answered; not reproduced alone, not understood. Azurite is kept small
    /// instead by running the metadata-only tests once, not per artifact
    /// store (tests/registry_behaviour.rs).
    pub async fn clean_up(&self) {
        use futures::{StreamExt, TryStreamExt};
        let Some((store, prefix)) = &self.server else {
            return;
        };
        let listed = store.list(Some(prefix)).map_ok(|o| o.location).boxed();
        let deleted: Result<Vec<_>, _> = store.delete_stream(listed).try_collect().await;
        if let Err(e) = deleted {
            eprintln!("{}: could not empty {prefix}: {e}", self.name);
        }
    }

    // ----- backends --------------------------------------------------------------

    /// Memory stores through the builder, as `Registry::in_memory` has them.
    pub async fn memory() -> Fixture {
        memory_fixture("memory", None, |m, a| (Arc::new(m), Arc::new(a)))
    }

    /// Memory stores with a checkpoint every 3 events, so that every behaviour is
    /// also checked on states loaded from checkpoints.
    pub async fn memory_checkpoints() -> Fixture {
        memory_fixture("memory_checkpoints", Some(3), |m, a| {
            (Arc::new(m), Arc::new(a))
        })
    }

    /// Memory stores boxed as trait objects and wrapped again, so the registry only
    /// ever calls them through the forwarding impls for `Box<dyn …>`.
    pub async fn dyn_memory() -> Fixture {
        memory_fixture("dyn_memory", None, |m, a| {
            let m: Box<dyn MetadataStore> = Box::new(m);
            let a: Box<dyn ArtifactStore> = Box::new(a);
            (as_dyn_metadata(m), as_dyn_artifacts(a))
        })
    }

    /// Local stores in a temp directory, opened by `Registry::open_local` (and
    /// opened again, as another process would, for each fresh registry).
    pub async fn local() -> Fixture {
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("registry");
        let open = move || -> BoxFuture<'static, Registry> {
            let root = root.clone();
            Box::pin(async move {
                Registry::open_local(&root)
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e}", root.display()))
            })
        };
        let registry = open().await;
        local_fixture("local", dir, registry, Box::new(open))
    }

    /// Local stores with packing on for every file (`Registry::open_local_with`,
    /// no size threshold), so each file goes through packs and recipes.
    pub async fn local_packed() -> Fixture {
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("registry");
        let open = move || -> BoxFuture<'static, Registry> {
            let root = root.clone();
            Box::pin(async move {
                let options = modelreg::store::LocalArtifactOptions::new()
                    .packed(modelreg::store::PackOptions::new().min_file_size(0));
                Registry::open_local_with(&root, options)
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e}", root.display()))
            })
        };
        let registry = open().await;
        // Packed files are rebuilt from packs: never a hard link to the store.
        Fixture {
            hard_links: false,
            ..local_fixture("local_packed", dir, registry, Box::new(open))
        }
    }

    /// Local stores opened by hand and given to the builder as `Arc<dyn …>`
    /// wrapped in another `Arc`, so every call goes through the forwarding impls
    /// for `Arc<dyn …>`.
    pub async fn dyn_local() -> Fixture {
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("registry");
        let open = move || -> BoxFuture<'static, Registry> {
            let root = root.clone();
            Box::pin(async move {
                let (m, a) = tokio::task::spawn_blocking(move || {
                    (
                        LocalMetadataStore::open(root.join("metadata")).expect("open metadata"),
                        LocalArtifactStore::open(root.join("artifacts")).expect("open artifacts"),
                    )
                })
                .await
                .expect("join");
                let m: Arc<dyn MetadataStore> = Arc::new(m);
                let a: Arc<dyn ArtifactStore> = Arc::new(a);
                Registry::builder()
                    .metadata(as_dyn_metadata(m))
                    .artifacts(as_dyn_artifacts(a))
                    .build()
                    .expect("builder with both stores")
            })
        };
        let registry = open().await;
        local_fixture("dyn_local", dir, registry, Box::new(open))
    }
}

impl Fixture {
    /// object_store's `InMemory`: registries over one shared store, under a prefix.
    pub async fn object_memory() -> Fixture {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let prefix = object_store::path::Path::from(unique_name());
        let open = {
            let (store, prefix) = (Arc::clone(&store), prefix.clone());
            move || {
                let (m, a) = stores_in(Arc::clone(&store), &prefix);
                Registry::builder()
                    .metadata(Arc::new(m))
                    .artifacts(Arc::new(a))
                    .build()
                    .expect("builder with both stores")
            }
        };
        let registry = open();
        Fixture {
            name: "object_memory",
            hard_links: false,
            registry,
            reopen: Box::new(move || {
                let r = open();
                Box::pin(async move { r })
            }),
            blobs: BlobAccess::Object(store, prefix.join("artifacts")),
            dir: TempDir::new().expect("temp dir"),
            server: None,
        }
    }

    /// object_store's `InMemory` with packing on for every file (no size
    /// threshold): registries over one shared store, each with its own chunk
    /// index, as separate processes would have.
    pub async fn object_memory_packed() -> Fixture {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let prefix = object_store::path::Path::from(unique_name());
        let open = {
            let (store, prefix) = (Arc::clone(&store), prefix.clone());
            move || {
                let (m, a) = stores_in(Arc::clone(&store), &prefix);
                Registry::builder()
                    .metadata(Arc::new(m))
                    .artifacts(Arc::new(a.with_options(packed_object_options())))
                    .build()
                    .expect("builder with both stores")
            }
        };
        let registry = open();
        Fixture {
            name: "object_memory_packed",
            hard_links: false,
            registry,
            reopen: Box::new(move || {
                let r = open();
                Box::pin(async move { r })
            }),
            blobs: BlobAccess::Object(store, prefix.join("artifacts")),
            dir: TempDir::new().expect("temp dir"),
            server: None,
        }
    }

    /// object_store's `LocalFileSystem`, opened by `Registry::open_url("file://…")`
    /// (and opened again for each fresh registry). Its blobs are where a local
    /// artifact store keeps them: the layouts are the same.
    pub async fn object_local() -> Fixture {
        let dir = TempDir::new().expect("temp dir");
        let root = dir.path().join("registry");
        let url = format!("file://{}", root.display());
        let open = url_opener(url);
        let registry = open().await;
        Fixture {
            name: "object_local",
            hard_links: false,
            registry,
            reopen: open,
            blobs: BlobAccess::Local(root.join("artifacts")),
            dir,
            server: None,
        }
    }

    /// An S3-protocol server (moto in CI), by `Registry::open_url("s3://…")` below a
    /// fresh prefix (tests using it are ignored when none is configured: `servers.rs`).
    pub async fn s3() -> Fixture {
        server_fixture("s3", Server::S3).await
    }

    /// Azure Blob (Azurite in CI), by `Registry::open_url("az://…")`.
    pub async fn azure() -> Fixture {
        server_fixture("azure", Server::Azure).await
    }

    /// [`s3`](Self::s3) with packing on for every file
    /// (`Registry::open_url_with`).
    pub async fn s3_packed() -> Fixture {
        packed_server_fixture("s3_packed", Server::S3).await
    }

    /// [`azure`](Self::azure) with packing on for every file.
    pub async fn azure_packed() -> Fixture {
        packed_server_fixture("azure_packed", Server::Azure).await
    }
}

/// Packing for every file, whatever its size.
pub fn packed_object_options() -> ObjectArtifactOptions {
    ObjectArtifactOptions::new().packed(modelreg::store::PackOptions::new().min_file_size(0))
}

async fn packed_server_fixture(name: &'static str, server: Server) -> Fixture {
    let url = server.unique_url();
    let (_, artifacts) = stores_from_url(&url).expect("configured server URL");
    let blobs = BlobAccess::Object(
        Arc::clone(artifacts.object_store()),
        artifacts.root().clone(),
    );
    let open = Box::new({
        let url = url.clone();
        move || -> BoxFuture<'static, Registry> {
            let url = url.clone();
            Box::pin(async move {
                Registry::open_url_with(&url, packed_object_options())
                    .await
                    .unwrap_or_else(|e| panic!("open {url}: {e}"))
            })
        }
    });
    let registry = open().await;
    Fixture {
        name,
        hard_links: false,
        registry,
        reopen: open,
        blobs,
        dir: TempDir::new().expect("temp dir"),
        server: matches!(server, Server::S3).then(|| server_prefix(&url, &artifacts)),
    }
}

/// The object store of a test server's `url` (`artifacts`, the artifact
/// store opened from it) and the prefix the URL names, for
/// [`Fixture::clean_up`].
fn server_prefix(
    url: &str,
    artifacts: &modelreg::store::object::ObjectArtifactStore,
) -> (Arc<dyn ObjectStore>, object_store::path::Path) {
    let unique = url.rsplit('/').next().expect("a prefix");
    (
        Arc::clone(artifacts.object_store()),
        object_store::path::Path::from(unique),
    )
}

/// Opens a registry at `url` each time it is called, as another process would.
fn url_opener(url: String) -> Reopen {
    Box::new(move || -> BoxFuture<'static, Registry> {
        let url = url.clone();
        Box::pin(async move {
            Registry::open_url(&url)
                .await
                .unwrap_or_else(|e| panic!("open {url}: {e}"))
        })
    })
}

async fn server_fixture(name: &'static str, server: Server) -> Fixture {
    let url = server.unique_url();
    let (_, artifacts) = stores_from_url(&url).expect("configured server URL");
    let blobs = BlobAccess::Object(
        Arc::clone(artifacts.object_store()),
        artifacts.root().clone(),
    );
    let open = url_opener(url.clone());
    let registry = open().await;
    Fixture {
        name,
        hard_links: false,
        registry,
        reopen: open,
        blobs,
        dir: TempDir::new().expect("temp dir"),
        server: matches!(server, Server::S3).then(|| server_prefix(&url, &artifacts)),
    }
}

/// Overwrites the object of blob `digest` in an object-store artifact store rooted
/// at `root`. Blocks: the suite's corruption hook is synchronous.
fn corrupt_object_blob(
    store: &Arc<dyn ObjectStore>,
    root: &object_store::path::Path,
    digest: &Digest,
    bytes: &[u8],
) {
    use object_store::ObjectStoreExt;
    let hex = digest.to_hex();
    let path = ["blobs", "v1", "blake3", &hex[0..2], &hex[2..4], &hex]
        .into_iter()
        .fold(root.clone(), |p, part| p.join(part));
    let put = store.put(&path, bytes.to_vec().into());
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(put))
        .unwrap_or_else(|e| panic!("overwrite {path}: {e}"));
}

/// A fixture over the local stores in `dir/registry`.
fn local_fixture(name: &'static str, dir: TempDir, registry: Registry, reopen: Reopen) -> Fixture {
    let artifacts = dir.path().join("registry").join("artifacts");
    Fixture {
        name,
        // The scratch directory is on the same filesystem as the blobs.
        hard_links: true,
        registry,
        reopen,
        blobs: BlobAccess::Local(artifacts),
        dir,
        server: None,
    }
}

/// Turns memory stores into the trait objects a registry is given.
type WrapMemory = fn(
    MemoryMetadataStore,
    MemoryArtifactStore,
) -> (Arc<dyn MetadataStore>, Arc<dyn ArtifactStore>);

/// Builds a fixture over fresh memory stores; `wrap` turns them into the trait
/// objects the registry is given (each registry gets its own wrapping).
fn memory_fixture(name: &'static str, checkpoint_every: Option<u64>, wrap: WrapMemory) -> Fixture {
    let metadata = MemoryMetadataStore::new();
    let artifacts = MemoryArtifactStore::new();
    let open = {
        let (metadata, artifacts) = (metadata.clone(), artifacts.clone());
        move || {
            let (m, a) = wrap(metadata.clone(), artifacts.clone());
            let mut b = Registry::builder().metadata(m).artifacts(a);
            if let Some(n) = checkpoint_every {
                b = b.checkpoint_every(n);
            }
            b.build().expect("builder with both stores")
        }
    };
    let registry = open();
    Fixture {
        name,
        hard_links: false,
        registry,
        reopen: Box::new(move || {
            let r = open();
            Box::pin(async move { r })
        }),
        blobs: BlobAccess::Memory(artifacts),
        dir: TempDir::new().expect("temp dir"),
        server: None,
    }
}

/// Passes any metadata store, `Arc<dyn …>` and `Box<dyn …>` included, where a
/// generic store is expected: the compile-time proof that the trait is object safe
/// and that the forwarding impls exist.
pub fn as_dyn_metadata<S: MetadataStore>(store: S) -> Arc<dyn MetadataStore> {
    Arc::new(store)
}

/// [`as_dyn_metadata`] for artifact stores.
pub fn as_dyn_artifacts<S: ArtifactStore>(store: S) -> Arc<dyn ArtifactStore> {
    Arc::new(store)
}

/// Where a local artifact store rooted at `root` keeps blob `digest`: in the
/// layout before 0.3 if it is there, else where it writes blobs now.
pub fn local_blob_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.to_hex();
    let old = root
        .join("blobs/v1/blake3")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex);
    if old.exists() {
        return old;
    }
    root.join("blobs/v2/blake3").join(&hex[0..2]).join(&hex)
}

/// Overwrites a local blob file (stored read-only) with `bytes`. A file stored
/// packed gets a whole blob file with `bytes` instead, which readers prefer to
/// its recipe: the same damage, seen the same way.
pub fn corrupt_local_blob(root: &Path, digest: &Digest, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let path = local_blob_path(root, digest);
    if !path.exists() {
        let parent = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(parent).expect("blob shard");
        std::fs::write(&path, b"").expect("shadowing blob");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("make {} writable: {e}", path.display()));
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("overwrite {}: {e}", path.display()));
}
