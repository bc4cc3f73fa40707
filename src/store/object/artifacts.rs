//! The artifact store on an object store: content-addressed blobs, put in one
//! PUT or as a multipart upload, read as streams, ranges or new files.

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

use super::download::write_stream;
use super::multipart::{PartReader, STREAM_PART_SIZE, Upload, part_size};
use super::{Root, blocking, join};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hashing;
use crate::progress;
use crate::store::layout::{BLOBS_DIR, parse_blob_name};
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
}

impl ObjectArtifactStore {
    /// A store keeping its blobs in `store` below `root`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path) -> Self {
        ObjectArtifactStore {
            root: Root::new(store, root, None, None),
        }
    }

    /// The object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.root.store
    }

    /// The prefix every key of this store is below.
    pub fn root(&self) -> &Path {
        &self.root.path
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        join(
            self.root.path.clone(),
            &crate::store::layout::blob_key(digest),
        )
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
    ) -> Result<()> {
        check_digest(digest, actual, what)?;
        let path = self.blob_path(digest);
        match self
            .root
            .store
            .put_opts(&path, payload, PutMode::Create.into())
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(self.root.error("put", &path, e)),
        }
    }

    /// Whether the blob is stored.
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
        let path = self.blob_path(digest);
        match self.root.store.head(&path).await {
            Ok(meta) => Ok(Some(BlobMeta {
                size: meta.size,
                last_modified: Some(meta.last_modified),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.root.error("head", &path, e)),
        }
    }

    async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
        let what = || format!("stream put as {digest}");
        let mut parts = PartReader::new(data, STREAM_PART_SIZE);
        let first = parts.next_part().await?;
        // A stream that ends within its first part goes up in one PUT.
        if parts.ended() {
            let payload = first.into_iter().collect();
            return self.put_small(digest, payload, parts.digest(), what).await;
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
            return self.put_small(digest, bytes.into(), actual, what).await;
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
        let path = self.blob_path(digest);
        let got = match self.root.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Err(self.not_found(digest)),
            Err(e) => return Err(self.root.error("get", &path, e)),
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
        // object_store refuses empty ranges: ask only whether the blob is that long.
        if range.is_empty() {
            let size = self
                .head(digest)
                .await?
                .ok_or_else(|| self.not_found(digest))?
                .size;
            return if range.end > size {
                Err(out_of_range(size))
            } else {
                Ok(Bytes::new())
            };
        }
        let path = self.blob_path(digest);
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
        let path = self.blob_path(digest);
        match self.root.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.root.error("delete", &path, e)),
        }
    }

    async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
        let dir = self.root.dir(BLOBS_DIR);
        let root = Arc::clone(&self.root);
        let listing = self.root.store.list(Some(&dir));
        Ok(Box::pin(listing.filter_map(move |meta| {
            let found = match meta {
                Err(e) => Some(Err(root.error("list", &dir, e))),
                Ok(meta) => {
                    // Only `<shard>/<sub-shard>/<hex>` in its own shard is a blob.
                    let parts: Option<Vec<String>> = meta
                        .location
                        .prefix_match(&dir)
                        .map(|rest| rest.map(|p| p.as_ref().to_owned()).collect());
                    match parts.as_deref() {
                        Some([shard, sub, name]) => parse_blob_name(shard, sub, name).map(Ok),
                        _ => None,
                    }
                }
            };
            futures::future::ready(found)
        })))
    }

    async fn materialize(&self, digest: &Digest, dest: &FsPath, _mode: LinkMode) -> Result<Placed> {
        let path = self.blob_path(digest);
        // Ask for the blob first: a missing one must not leave a file behind.
        let got = match self.root.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Err(self.not_found(digest)),
            Err(e) => return Err(self.root.error("materialize", &path, e)),
        };
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

    /// The object's URL when the store was opened by URL, otherwise its key and
    /// the store.
    fn location(&self, digest: &Digest) -> String {
        self.root.location(&self.blob_path(digest))
    }
}
