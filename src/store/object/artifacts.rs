//! The artifact store on an object store: content-addressed blobs, put in one
//! PUT or as a multipart upload, read as streams, ranges or new files.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutPayload,
};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::download::write_stream;
use super::multipart::{PartReader, STREAM_PART_SIZE, Upload, part_size};
use super::packs::{self, ObjectArtifactOptions, put_packed};
use super::{Root, blocking, join};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hashing;
use crate::progress;
use crate::store::layout::{
    BLOBS_DIR, LOCAL_BLOBS_DIR, PACKS_DIR, RECIPES_DIR, pack_key, parse_blob_name,
    parse_local_blob_name, recipe_key,
};
use crate::store::pack::{self, PackCollection, PackOptions, Recipe, SharedIndex};
use crate::store::traffic;
use crate::store::{ArtifactStore, BlobMeta, ByteStream, Imported, LinkMode, Materialized, Placed};

/// An [`ArtifactStore`] on an object store; see the [module docs](super) for the
/// layout, multipart uploads and their limits.
///
/// Clones share the same store. [`materialize`](ArtifactStore::materialize) always
/// copies (an object store has no links), and memory stays bounded whatever the blob
/// size: about [`UPLOAD_CONCURRENCY`](super::UPLOAD_CONCURRENCY) parts per upload.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use modelreg::store::{ArtifactStore, ArtifactStoreExt, ObjectArtifactStore};
/// use object_store::{memory::InMemory, path::Path};
///
/// let store = ObjectArtifactStore::new(Arc::new(InMemory::new()), Path::from("reg/artifacts"));
/// let digest = store.put_bytes("weights".into()).await?;
/// assert_eq!(store.get_range(&digest, 0..3).await?, "wei");
/// # Ok::<(), modelreg::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ObjectArtifactStore {
    pub(super) root: Arc<Root>,
    /// How large files are packed; `None`: stored whole (the default).
    packing: Option<PackOptions>,
    /// The chunks stored in packs, loaded at the first packed write.
    chunks: Arc<SharedIndex>,
    /// Whether blobs may also be at the local store's `blobs/v2` keys: set
    /// for a `file://` store, whose tree a [`LocalArtifactStore`]
    /// (crate::store::LocalArtifactStore) may have written. Off elsewhere, so
    /// an object store makes no request for a key nothing writes there.
    local_layout: bool,
}

impl ObjectArtifactStore {
    /// A store keeping its blobs in `store` below `root`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path) -> Self {
        Self::at(Root::new(store, root, None, None))
    }

    pub(super) fn at(root: Arc<Root>) -> Self {
        ObjectArtifactStore {
            root,
            packing: None,
            chunks: Arc::default(),
            local_layout: false,
        }
    }

    /// The same store, also reading blobs at the local store's `blobs/v2`
    /// keys (a `file://` store: see [`stores_from_url`](super::stores_from_url)).
    pub(super) fn reading_local_layout(self) -> Self {
        ObjectArtifactStore {
            local_layout: true,
            ..self
        }
    }

    /// The same store, with `options` (packing) for what it writes from now on;
    /// for a store from [`stores_in`](super::stores_in) or
    /// [`stores_from_url`](super::stores_from_url). Clones made before keep
    /// theirs.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use modelreg::store::object::{ObjectArtifactOptions, stores_in};
    /// use modelreg::store::PackOptions;
    /// use object_store::{memory::InMemory, path::Path};
    ///
    /// let (_metadata, artifacts) = stores_in(Arc::new(InMemory::new()), &Path::from("reg"));
    /// let artifacts = artifacts.with_options(ObjectArtifactOptions::new().packed(PackOptions::new()));
    /// # let _ = artifacts;
    /// ```
    pub fn with_options(self, options: ObjectArtifactOptions) -> Self {
        ObjectArtifactStore {
            packing: options.packing,
            chunks: Arc::default(),
            ..self
        }
    }

    /// How many distinct chunks this handle knows are stored in packs (0 before
    /// its first packed write loaded them): what the chunk index holds in
    /// memory, at 32 bytes each.
    pub fn known_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The packing options, if a file of `len` bytes is packed.
    fn packs(&self, len: u64) -> Option<PackOptions> {
        self.packing.filter(|p| len >= p.min_file_size)
    }

    /// The bytes of `digest`: its whole blob's object (one GET), or, with no
    /// blob, its recipe (one GET more); `NotFound` with neither. Asking for
    /// the blob first means a missing file fails before anything is written.
    async fn open_stored(&self, digest: &Digest, operation: &'static str) -> Result<Opened> {
        for path in self.blob_paths(digest) {
            traffic::request(0);
            match self.root.store.get(&path).await {
                Ok(got) => return Ok(Opened::Blob(got, path)),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.root.error(operation, &path, e)),
            }
        }
        let (recipe, _) = self
            .recipe(digest)
            .await?
            .ok_or_else(|| self.not_found(digest))?;
        Ok(Opened::Packed(recipe))
    }

    /// The recipe of `digest` and when it was written, if the file is stored
    /// packed (one GET).
    async fn recipe(&self, digest: &Digest) -> Result<Option<(Recipe, BlobMeta)>> {
        let key = recipe_key(digest);
        let path = join(self.root.path.clone(), &key);
        traffic::request(0);
        let got = match self.root.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.root.error("get", &path, e)),
        };
        let modified = got.meta.last_modified;
        let bytes = match got.bytes().await {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.root.error("get", &path, e)),
        };
        let recipe = Recipe::decode(&bytes, digest, self.root.location(&path))?;
        let meta = BlobMeta {
            size: recipe.size,
            last_modified: Some(modified),
        };
        Ok(Some((recipe, meta)))
    }

    /// Whether every pack `recipe` names is stored: one HEAD per pack,
    /// [`PACK_READS`](packs::PACK_READS) at a time. A recipe naming a pack a
    /// collection deleted (written by a writer whose chunk index predated the
    /// pack's retirement) is a file that is not stored.
    async fn packs_present(&self, recipe: &Recipe) -> Result<bool> {
        let present: Vec<bool> = futures::stream::iter(recipe.packs.clone())
            .map(|pack| {
                let root = Arc::clone(&self.root);
                async move {
                    let path = join(root.path.clone(), &pack_key(&pack));
                    traffic::request(0);
                    match root.store.head(&path).await {
                        Ok(_) => Ok(true),
                        Err(object_store::Error::NotFound { .. }) => Ok(false),
                        Err(e) => Err(root.error("head", &path, e)),
                    }
                }
            })
            .buffer_unordered(packs::PACK_READS)
            .try_collect()
            .await?;
        Ok(present.into_iter().all(|p| p))
    }

    /// Where `digest` is stored whole, with its size and age: one HEAD (one
    /// more on a `file://` store, for a blob at the local store's key).
    async fn whole_blob(&self, digest: &Digest) -> Result<Option<(Path, BlobMeta)>> {
        for path in self.blob_paths(digest) {
            traffic::request(0);
            match self.root.store.head(&path).await {
                Ok(meta) => {
                    let meta = BlobMeta {
                        size: meta.size,
                        last_modified: Some(meta.last_modified),
                    };
                    return Ok(Some((path, meta)));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.root.error("head", &path, e)),
            }
        }
        Ok(None)
    }

    /// Spools a stream into a temp file on local disk, then packs it from there
    /// (the chunker and the pack writer read a file); the temp file is removed
    /// after, whatever happens.
    async fn put_stream_packed(
        &self,
        digest: &Digest,
        options: PackOptions,
        first: Vec<Bytes>,
        mut parts: PartReader,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let spool = Spool::new();
        let write_err = |e| Error::io(&spool.0, e);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&spool.0)
            .await
            .map_err(write_err)?;
        let mut part = first;
        while !part.is_empty() {
            for b in &part {
                file.write_all(b).await.map_err(write_err)?;
            }
            part = parts.next_part().await?;
        }
        file.flush().await.map_err(write_err)?;
        drop(file);
        check_digest(digest, parts.digest(), || format!("stream put as {digest}"))?;
        let stored = put_packed(
            &self.root,
            &self.chunks,
            options,
            &spool.0,
            Some(*digest),
            None,
        )
        .await;
        spool.remove().await;
        stored.map(drop)
    }

    /// The object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.root.store
    }

    /// The prefix every key of this store is below.
    pub fn root(&self) -> &Path {
        &self.root.path
    }

    /// The key a blob is written at (`blobs/v1`).
    fn blob_path(&self, digest: &Digest) -> Path {
        join(
            self.root.path.clone(),
            &crate::store::layout::blob_key(digest),
        )
    }

    /// The keys a blob is looked for at, in order: on a `file://` store the
    /// local store's (`blobs/v2`, where it writes since 0.3) first, then
    /// [`blob_path`](Self::blob_path).
    fn blob_paths(&self, digest: &Digest) -> Vec<Path> {
        let mut paths = Vec::with_capacity(2);
        if self.local_layout {
            paths.push(join(
                self.root.path.clone(),
                &crate::store::layout::local_blob_key(digest),
            ));
        }
        paths.push(self.blob_path(digest));
        paths
    }

    fn not_found(&self, digest: &Digest) -> Error {
        Error::blob_not_found(*digest, format!("blob {digest} in {}", self.root.label))
    }

    /// Stores one part's worth of bytes (or less) with a create-if-absent PUT, after
    /// checking their digest. An existing blob is success: same key, same bytes.
    async fn put_small(
        &self,
        digest: &Digest,
        payload: PutPayload,
        actual: Digest,
        what: impl FnOnce() -> String,
    ) -> Result<bool> {
        check_digest(digest, actual, what)?;
        let path = self.blob_path(digest);
        traffic::request(payload.content_length() as u64);
        match self
            .root
            .store
            .put_opts(&path, payload, PutMode::Create.into())
            .await
        {
            Ok(_) => Ok(true),
            // Content addressed: the blob there has these bytes.
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.root.error("put", &path, e)),
        }
    }

    /// Whether the blob is stored (whole or packed).
    async fn exists(&self, digest: &Digest) -> Result<bool> {
        Ok(self.head(digest).await?.is_some())
    }

    /// Uploads the parts `send` produces as one multipart upload of blob `digest`,
    /// and completes it only if `send` succeeds with that digest; in every other
    /// case the upload is aborted and nothing is published.
    async fn put_multipart<F>(
        &self,
        digest: &Digest,
        what: impl FnOnce() -> String,
        send: impl FnOnce(Upload) -> F,
    ) -> Result<()>
    where
        F: Future<Output = (Upload, Result<Digest>)>,
    {
        let upload = Upload::start(&self.root, self.blob_path(digest)).await?;
        let (upload, sent) = send(upload).await;
        match sent.and_then(|actual| check_digest(digest, actual, what)) {
            Ok(()) => upload.complete().await,
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }
}

/// [`Error::Integrity`] unless `actual` is `expected`.
fn check_digest(expected: &Digest, actual: Digest, what: impl FnOnce() -> String) -> Result<()> {
    if actual == *expected {
        return Ok(());
    }
    Err(Error::Integrity {
        what: what(),
        expected: *expected,
        actual,
        location: None,
    })
}

/// Reads up to `n` bytes of `file` from where it stands, hashing them.
fn read_part(
    mut file: File,
    mut hasher: blake3::Hasher,
    n: u64,
) -> io::Result<(File, blake3::Hasher, Bytes)> {
    let mut buf = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    (&mut file).take(n).read_to_end(&mut buf)?;
    hasher.update(&buf);
    Ok((file, hasher, Bytes::from(buf)))
}

#[async_trait]
impl ArtifactStore for ObjectArtifactStore {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
        if let Some((_, meta)) = self.whole_blob(digest).await? {
            return Ok(Some(meta));
        }
        // A packed file: its size is the recipe's, its age the recipe's;
        // one naming a pack a collection deleted is not a stored file.
        match self.recipe(digest).await? {
            Some((recipe, meta)) if self.packs_present(&recipe).await? => Ok(Some(meta)),
            _ => Ok(None),
        }
    }

    async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
        let what = || format!("stream put as {digest}");
        let mut parts = PartReader::new(data, STREAM_PART_SIZE);
        let first = parts.next_part().await?;
        let len: u64 = first.iter().map(|b| b.len() as u64).sum();
        if let Some(options) = self.packing
            && (!parts.ended() || len >= options.min_file_size)
        {
            // Content addressed: a stored blob already has these bytes.
            if self.exists(digest).await? {
                return Ok(());
            }
            return self.put_stream_packed(digest, options, first, parts).await;
        }
        // A stream that ends within its first part goes up in one PUT.
        if parts.ended() {
            let payload = first.into_iter().collect();
            return self
                .put_small(digest, payload, parts.digest(), what)
                .await
                .map(drop);
        }
        // Content addressed: a stored blob already has these bytes.
        if self.exists(digest).await? {
            return Ok(());
        }
        self.put_multipart(digest, what, |mut upload| async move {
            let sent = async {
                let mut part = first;
                while !part.is_empty() {
                    upload.put_part(part.into_iter().collect()).await?;
                    part = parts.next_part().await?;
                }
                Ok(parts.digest())
            }
            .await;
            (upload, sent)
        })
        .await
    }

    /// A blob this store keeps whole in one PUT (not packed, smaller than one
    /// stream part) is one create-if-absent PUT, `AlreadyExists` meaning found
    /// stored: no HEAD first, nor the GET of a recipe that a HEAD finding no
    /// whole blob adds. Anything else as the default does. A file some other
    /// handle stored packed (with a smaller `min_file_size`) is then stored
    /// again whole, as `put_stream` of the same bytes would store it.
    async fn put_bytes_if_absent(&self, digest: &Digest, bytes: Bytes) -> Result<bool> {
        let len = bytes.len() as u64;
        // On a `file://` store the blob may be at the local store's key, which
        // a create-if-absent PUT at ours does not see: ask first there too.
        if self.packs(len).is_some() || len >= STREAM_PART_SIZE || self.local_layout {
            return crate::store::put_bytes_asking_first(self, digest, bytes).await;
        }
        let actual = if len <= 64 << 10 {
            Digest::of(&bytes)
        } else {
            let b = bytes.clone();
            crate::offload::offload(move || Digest::of(&b)).await?
        };
        let what = || format!("{len} bytes put as {digest}");
        self.put_small(digest, bytes.into(), actual, what).await
    }

    async fn put_file(&self, digest: &Digest, path: &FsPath) -> Result<()> {
        let blob = self.blob_path(digest);
        let what = || format!("file {} put as {digest}", path.display());
        let source = path.to_owned();
        let opened = blocking(&self.root, "put", &blob, move || {
            let file = File::open(&source)?;
            let size = file.metadata()?.len();
            Ok::<_, io::Error>((file, size))
        })
        .await?;
        let (file, size) = opened.map_err(|e| Error::io(path, e))?;
        if let Some(options) = self.packs(size) {
            if self.exists(digest).await? {
                return Ok(());
            }
            let meter = progress::meter();
            put_packed(
                &self.root,
                &self.chunks,
                options,
                path,
                Some(*digest),
                meter,
            )
            .await?;
            return Ok(());
        }
        let part = part_size(size);
        let read = |file, hasher| {
            blocking(&self.root, "put", &blob, move || {
                read_part(file, hasher, part)
            })
        };
        if size <= part {
            let (_, hasher, bytes) = read(file, blake3::Hasher::new())
                .await?
                .map_err(|e| Error::io(path, e))?;
            let actual = hasher.finalize().into();
            return self
                .put_small(digest, bytes.into(), actual, what)
                .await
                .map(drop);
        }
        // Content addressed: a stored blob already has these bytes.
        if self.exists(digest).await? {
            return Ok(());
        }
        self.put_multipart(digest, what, |mut upload| async move {
            let sent = async {
                let mut state = (file, blake3::Hasher::new());
                loop {
                    let (file, hasher) = state;
                    let (file, hasher, bytes) =
                        read(file, hasher).await?.map_err(|e| Error::io(path, e))?;
                    // While this part is read and hashed, the previous ones upload.
                    let last = (bytes.len() as u64) < part;
                    if !bytes.is_empty() {
                        upload.put_part(bytes.into()).await?;
                    }
                    if last {
                        // The bytes sent are the bytes hashed, whatever the file does.
                        return Ok(hasher.finalize().into());
                    }
                    state = (file, hasher);
                }
            }
            .await;
            (upload, sent)
        })
        .await
    }

    async fn import_file(&self, path: &FsPath, _mode: LinkMode) -> Result<Imported> {
        // Blobs are keyed by digest: hash first, then upload what is missing.
        // Progress counts both passes; a blob found stored skips the second.
        let meter = progress::meter();
        if let Some(meter) = &meter {
            meter.passes(2);
        }
        let source = path.to_owned();
        let key = self.root.dir(BLOBS_DIR);
        let (hashed, before) = blocking(&self.root, "put", &key, move || {
            let file = File::open(&source)?;
            let before = file.metadata()?;
            let hashed = hashing::hash_open_file_with_sha256(&file, meter.as_ref())?;
            Ok::<_, io::Error>((hashed, before))
        })
        .await?
        .map_err(|e| Error::io(path, e))?;
        let hashing::Hashed {
            digest,
            sha256,
            size,
        } = hashed;
        let changed = || Error::SourceChanged {
            path: path.to_owned(),
        };
        if !before.is_file() || size != before.len() {
            return Err(changed());
        }
        if self.exists(&digest).await? {
            return Ok(Imported::new(digest, size, None).with_sha256(sha256));
        }
        if let Some(options) = self.packs(size) {
            let meter = progress::meter();
            let stored = put_packed(&self.root, &self.chunks, options, path, Some(digest), meter)
                .await
                .map_err(|e| match e {
                    // The bytes packed are not the bytes hashed: the file changed.
                    Error::Integrity { .. } => changed(),
                    e => e,
                })?;
            return Ok(
                Imported::new(stored.digest, stored.size, Some(Materialized::Copied))
                    .with_sha256(stored.sha256),
            );
        }
        // The upload checks BLAKE3 only: bytes that still hash to `digest` are the
        // bytes `sha256` was computed from.
        match self.put_file(&digest, path).await {
            Ok(()) => {
                Ok(Imported::new(digest, size, Some(Materialized::Copied)).with_sha256(sha256))
            }
            // The upload hashes what it sends: a mismatch means the file changed.
            Err(Error::Integrity { .. }) => Err(changed()),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, digest: &Digest) -> Result<ByteStream> {
        let (got, path) = match self.open_stored(digest, "get").await? {
            Opened::Blob(got, path) => (got, path),
            Opened::Packed(recipe) => {
                return Ok(packs::read_stream(Arc::clone(&self.root), Arc::new(recipe)));
            }
        };
        let root = Arc::clone(&self.root);
        Ok(Box::pin(
            got.into_stream()
                .map_err(move |e| root.error("get", &path, e)),
        ))
    }

    async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes> {
        let out_of_range = |size: u64| {
            Error::invalid_input(
                format!("range {range:?} of blob {digest}"),
                format!("blob has {size} bytes"),
            )
        };
        if range.start > range.end {
            return Err(Error::invalid_input(
                format!("range {range:?} of blob {digest}"),
                "starts after it ends",
            ));
        }
        let Some((path, meta)) = self.whole_blob(digest).await? else {
            // A packed file is read from its packs.
            let (recipe, _) = self
                .recipe(digest)
                .await?
                .ok_or_else(|| self.not_found(digest))?;
            if range.end > recipe.size {
                return Err(out_of_range(recipe.size));
            }
            return packs::read_range(&self.root, &recipe, range).await;
        };
        // object_store refuses empty ranges: the HEAD said how long the blob is.
        if range.is_empty() {
            return if range.end > meta.size {
                Err(out_of_range(meta.size))
            } else {
                Ok(Bytes::new())
            };
        }
        let options = GetOptions::new().with_range(Some(range.clone()));
        let got = match self.root.store.get_opts(&path, options).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Err(self.not_found(digest)),
            Err(e) => {
                // A range that starts past the end fails the request; say so.
                return match self.head(digest).await? {
                    None => Err(self.not_found(digest)),
                    Some(meta) if range.end > meta.size => Err(out_of_range(meta.size)),
                    Some(_) => Err(self.root.error("get", &path, e)),
                };
            }
        };
        // A range that ends past the end comes back cut short.
        if range.end > got.meta.size {
            return Err(out_of_range(got.meta.size));
        }
        got.bytes()
            .await
            .map_err(|e| self.root.error("get", &path, e))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        // A packed file's recipe too: its chunks stay in their packs.
        let mut paths = self.blob_paths(digest);
        paths.push(join(self.root.path.clone(), &recipe_key(digest)));
        for path in paths {
            traffic::request(0);
            match self.root.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.root.error("delete", &path, e)),
            }
        }
        Ok(())
    }

    async fn hash_stored(&self, digest: &Digest) -> Result<(Digest, u64)> {
        let meter = progress::meter();
        if self.whole_blob(digest).await?.is_none()
            && let Some((recipe, _)) = self.recipe(digest).await?
        {
            return packs::hash_stored(&self.root, recipe, meter).await;
        }
        hashing::hash_stream(self.get(digest).await?, meter).await
    }

    async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
        // Whole blobs, then packed files (recipes), sharded alike.
        let blobs = list_sharded(&self.root, BLOBS_DIR, Shards::TwoLevels);
        let recipes = list_sharded(&self.root, RECIPES_DIR, Shards::TwoLevels);
        if !self.local_layout {
            return Ok(Box::pin(blobs.chain(recipes)));
        }
        // A `file://` store: the local store's blobs first, then the others
        // not among them (a blob both layouts hold is listed once).
        let local: BTreeSet<Digest> = list_sharded(&self.root, LOCAL_BLOBS_DIR, Shards::Flat)
            .try_collect()
            .await?;
        let first: Vec<Result<Digest>> = local.iter().copied().map(Ok).collect();
        let others = blobs.try_filter(move |d| futures::future::ready(!local.contains(d)));
        Ok(Box::pin(
            futures::stream::iter(first).chain(others).chain(recipes),
        ))
    }

    async fn repack(&self, dead_percent: u8, dry_run: bool) -> Result<PackCollection> {
        let request = pack::repack::RepackRequest {
            threshold: f64::from(dead_percent.min(100)) / 100.0,
            pack_size: self.packing.unwrap_or_default().pack_size,
            dry_run,
        };
        let backend = packs::Objects::here(&self.root);
        let key = self.root.dir(PACKS_DIR);
        blocking(&self.root, "repack", &key, move || {
            pack::repack::repack(&backend, &request)
        })
        .await?
    }

    async fn delete_retired_packs(
        &self,
        retired_before: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<PackCollection> {
        let backend = packs::Objects::here(&self.root);
        let key = self.root.dir(PACKS_DIR);
        blocking(&self.root, "delete retired packs", &key, move || {
            pack::repack::delete_retired(&backend, retired_before, dry_run)
        })
        .await?
    }

    async fn materialize(&self, digest: &Digest, dest: &FsPath, _mode: LinkMode) -> Result<Placed> {
        match self.open_stored(digest, "materialize").await? {
            Opened::Blob(got, path) => self.materialize_blob(got, &path, dest).await,
            Opened::Packed(recipe) => {
                packs::materialize(&self.root, recipe, dest, progress::meter()).await
            }
        }
    }

    /// The object's URL when the store was opened by URL, otherwise its key and
    /// the store. On a `file://` store, the local store's key if a file is
    /// there (one `stat`).
    fn location(&self, digest: &Digest) -> String {
        let paths = self.blob_paths(digest);
        let found = paths.iter().find(|path| {
            // `LocalFileSystem::new()` keeps a key at `/<key>`.
            self.local_layout && FsPath::new("/").join(path.as_ref()).exists()
        });
        self.root
            .location(found.unwrap_or_else(|| &paths[paths.len() - 1]))
    }
}

/// A stored file as [`ObjectArtifactStore::open_stored`] found it.
enum Opened {
    /// A whole blob: its GET, under way, and its key.
    Blob(object_store::GetResult, Path),
    /// Packed: its recipe.
    Packed(Recipe),
}

/// How a layout's keys are sharded below its directory.
#[derive(Clone, Copy)]
enum Shards {
    /// `<shard>/<sub-shard>/<hex>`: `blobs/v1`, `recipes/v1`.
    TwoLevels,
    /// `<shard>/<hex>`: the local store's `blobs/v2`.
    Flat,
}

/// The digests stored under `layout` (`blobs/…` or `recipes/…`): keys
/// sharded as `shards` says, each in its own shard; other keys are skipped.
fn list_sharded(
    root: &Arc<Root>,
    layout: &str,
    shards: Shards,
) -> BoxStream<'static, Result<Digest>> {
    let dir = root.dir(layout);
    let root = Arc::clone(root);
    let listing = root.store.list(Some(&dir));
    Box::pin(listing.filter_map(move |meta| {
        let found = match meta {
            Err(e) => Some(Err(root.error("list", &dir, e))),
            Ok(meta) => {
                let parts: Option<Vec<String>> = meta
                    .location
                    .prefix_match(&dir)
                    .map(|rest| rest.map(|p| p.as_ref().to_owned()).collect());
                match (shards, parts.as_deref()) {
                    (Shards::TwoLevels, Some([shard, sub, name])) => {
                        parse_blob_name(shard, sub, name).map(Ok)
                    }
                    (Shards::Flat, Some([shard, name])) => {
                        parse_local_blob_name(shard, name).map(Ok)
                    }
                    _ => None,
                }
            }
        };
        futures::future::ready(found)
    }))
}

impl ObjectArtifactStore {
    /// Writes a whole blob's download `got` to the new file `dest`.
    async fn materialize_blob(
        &self,
        got: object_store::GetResult,
        path: &Path,
        dest: &FsPath,
    ) -> Result<Placed> {
        let path = path.clone();
        let target = dest.to_owned();
        let meter = progress::meter();
        let created = blocking(&self.root, "materialize", &path, move || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&target)
        })
        .await?;
        let file = created.map_err(|e| Error::io(dest, e))?;
        let placed = match got.payload {
            // A local file: copied by the kernel (copy_file_range) where it can, and
            // hashed as it lands.
            GetResultPayload::File(src, _) => {
                let target = dest.to_owned();
                blocking(&self.root, "materialize", &path, move || {
                    let written = hashing::copy_hashing(&src, &file, &file, meter.as_ref())?;
                    crate::store::fsutil::sync_new_file(&file, &target)?;
                    Ok(written)
                })
                .await?
                .map_err(|e| Error::io(dest, e))
            }
            GetResultPayload::Stream(stream) => {
                write_stream(&self.root, &path, stream, file, dest, meter).await
            }
        };
        match placed {
            Ok((digest, size)) => Ok(Placed::new(Materialized::Copied, digest, size)),
            Err(e) => {
                // The file is ours (created above): leave nothing half-written behind.
                if let Err(e) = tokio::fs::remove_file(dest).await {
                    tracing::warn!(
                        file = %dest.display(), error = %e,
                        "could not remove a half-written file"
                    );
                }
                Err(e)
            }
        }
    }
}

/// A temp file on local disk for a stream being packed, removed when done
/// (or, on an early return or cancellation, when dropped).
struct Spool(PathBuf);

impl Spool {
    fn new() -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Spool(std::env::temp_dir().join(format!(
            ".modelreg-spool-{}-{n}-{nanos}",
            std::process::id()
        )))
    }

    async fn remove(self) {
        if let Err(e) = tokio::fs::remove_file(&self.0).await
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.0.display(), error = %e, "could not remove a spool file");
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Removed by `remove` already on the usual path: this is the fallback.
        let _ = std::fs::remove_file(&self.0);
    }
}
