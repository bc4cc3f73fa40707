//! Stores on object storage — S3, Google Cloud Storage, Azure Blob, and also
//! object_store's local-file and in-memory stores — through any
//! `Arc<dyn object_store::ObjectStore>` under a key prefix.
//!
//! # Layout
//!
//! The same names as the [local stores](super::local), below a prefix; a registry
//! at `<prefix>` keeps its metadata under `<prefix>/metadata` and its blobs under
//! `<prefix>/artifacts` ([`stores_in`]):
//!
//! ```text
//! <prefix>/metadata/logs/v1/<log>/records/<seq, 20 digits>.rec
//! <prefix>/metadata/logs/v1/<log>/checkpoints/<seq, 20 digits>.ckpt
//! <prefix>/metadata/leases/v1/<lease>
//! <prefix>/artifacts/blobs/v1/blake3/<hex[0..2]>/<hex[2..4]>/<hex>
//! ```
//!
//! A log key is one path segment, percent-encoded the way object_store encodes
//! segments (model names never need it).
//!
//! # Guarantees, and how
//!
//! - **An append is one create-if-absent PUT** (`PutMode::Create`: `If-None-Match: *`
//!   on S3 and Azure, a hard link on local files). Of any number of writers appending
//!   the same record, one succeeds and the others get [`Error::AlreadyExists`].
//!   Nothing here needs compare-and-swap (`PutMode::Update`), which object_store's
//!   `LocalFileSystem` does not have.
//! - **Checkpoints** are plain overwriting PUTs; the latest is found by listing the
//!   log's checkpoints and taking the highest number (listing order is never
//!   assumed). Old ones are pruned, best effort, so that listing stays one request.
//!   There is no "latest" pointer object: it would cost the same GET that the
//!   listing costs, and could be stale.
//! - **Leases** are plain overwriting PUTs, listed with one LIST of their prefix.
//!   They rely on the service's strong read-after-write consistency for PUT, DELETE
//!   and LIST, which S3, GCS and Azure Blob all give.
//! - **Reading a log** ([`MetadataStore::read_after`]) GETs the first wanted record;
//!   when nothing is new — the usual case, since the registry refreshes before every
//!   query — that one failed GET is the whole cost (cheaper than a LIST on every
//!   provider). When it exists, the rest are found with one listing from that
//!   offset (keys are zero-padded, so services that can start a listing at an
//!   offset do), collected, sorted and taken while consecutive, then fetched
//!   [`READ_CONCURRENCY`] at a time. The listing stops early once every wanted
//!   number has been seen; it never relies on coming back sorted.
//! - **Blobs** are content-addressed, so writing one twice is harmless. A blob that
//!   fits in one part goes up as one create-if-absent PUT (an existing blob is
//!   success). Larger ones are multipart uploads after a `head` finds them missing:
//!   parts of `max(5 MiB, size / 10 000)` rounded up to a MiB (a 100 GB file stays
//!   within S3's 10 000 parts), [`UPLOAD_CONCURRENCY`] parts in flight, hashed while
//!   they are read. The upload is completed only if the bytes hash to the digest;
//!   otherwise, and on any error or cancellation, it is aborted: no blob is ever
//!   published under a digest its bytes do not have, and an interrupted upload
//!   leaves nothing visible.
//! - **Reads stream**: `get` returns the object's byte stream, `get_range` is a
//!   ranged GET, `materialize` writes the stream to the new file on the blocking
//!   pool and syncs it.
//!
//! # Limits
//!
//! - A stream of unknown length ([`ArtifactStore::put_stream`]) goes up in
//!   [`STREAM_PART_SIZE`] parts, so up to about 78 GiB on S3; files, whose size is
//!   known, have no such limit.
//! - An upload holds up to [`UPLOAD_CONCURRENCY`] parts in memory (40 MiB with
//!   5 MiB parts), and the registry uploads up to four files at once.
//! - AWS S3 answers concurrent conditional PUTs of one key with 409, which
//!   object_store reports as `AlreadyExists`, possibly to every contender: a round
//!   of racing appends can have no winner. The registry retries and is unaffected.
//! - object_store retries a PUT after a 5xx. If the lost attempt had landed, the
//!   retried conditional PUT reports [`Error::AlreadyExists`] for a write that
//!   succeeded. The registry tells this from a lost race by reading the record
//!   back: its own bytes (its time to the nanosecond, its checksum) mean the
//!   append succeeded, so it neither fails nor appends the command twice. A
//!   caller of [`MetadataStore::append`] outside a `Registry` must do the same.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResultPayload, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutPayload,
};
use tokio::task::JoinSet;

use super::layout::{
    BLOBS_DIR, CHECKPOINT_EXT, CHECKPOINT_READ_ATTEMPTS, CHECKPOINTS, KEEP_CHECKPOINTS, LEASES_DIR,
    LOGS_DIR, RECORD_EXT, RECORDS, parse_blob_name, parse_seq_file_name, seq_file_name,
};
use super::{
    ArtifactStore, BlobMeta, ByteStream, Checkpoint, Imported, LinkMode, LogRecord, Materialized,
    MetadataItem, MetadataStore, Placed, check_lease_key, check_log_key, check_seq, fsutil,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hashing;

/// How many records [`MetadataStore::read_after`] fetches at once.
pub const READ_CONCURRENCY: usize = 16;
/// How many logs [`MetadataStore::list_logs`] checks for records at once.
const LIST_CONCURRENCY: usize = 16;
/// The smallest multipart part S3 accepts (except the last), and our smallest part.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's limit on the number of parts of one upload.
pub const MAX_PARTS: u64 = 10_000;
/// Part size for streams of unknown length: 10 000 parts make about 78 GiB.
pub const STREAM_PART_SIZE: u64 = 8 << 20;
/// How many parts of one upload are in flight at once.
pub const UPLOAD_CONCURRENCY: usize = 8;
/// Chunks queued between a download and the thread writing them to a file.
const WRITE_QUEUE: usize = 16;

/// The part size for an upload of `size` bytes: at least [`MIN_PART_SIZE`], and
/// large enough that the upload needs at most [`MAX_PARTS`] parts, rounded up to a
/// whole MiB. Every part but the last has this size.
///
/// ```
/// use modelreg::store::object::part_size;
/// const MIB: u64 = 1 << 20;
/// assert_eq!(part_size(256 * MIB), 5 * MIB);
/// // 100 GB: 10 000 parts of 10 MiB hold 104.9 GB.
/// assert_eq!(part_size(100_000_000_000), 10 * MIB);
/// assert!(part_size(100_000_000_000) * 10_000 >= 100_000_000_000);
/// ```
pub fn part_size(size: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB);
    needed.max(MIN_PART_SIZE)
}

/// One store's place in an object store, and the name its errors carry.
#[derive(Debug)]
struct Root {
    store: Arc<dyn ObjectStore>,
    /// All keys of this store are below it.
    path: Path,
    /// E.g. `object store s3://bucket/prefix/metadata`.
    label: String,
    /// What an object's key is appended to for its URL (`s3://bucket/`), when the
    /// store was opened by URL.
    url_base: Option<String>,
}

impl Root {
    fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        label: Option<String>,
        url_base: Option<String>,
    ) -> Arc<Self> {
        let label = label.unwrap_or_else(|| format!("object store {store} at '{path}'"));
        Arc::new(Root {
            store,
            path,
            label,
            url_base,
        })
    }

    /// Where the object `key` is, for messages: its URL when the store was opened
    /// by one (`s3://bucket/reg/metadata/…`, `file:///srv/reg/metadata/…`),
    /// otherwise the key and the store.
    fn location(&self, key: &Path) -> String {
        match &self.url_base {
            Some(base) => format!("{base}{key}"),
            None => format!("object '{key}' in {}", self.store),
        }
    }

    /// `self.path` joined with the `/`-separated segments of a layout constant.
    fn dir(&self, layout: &str) -> Path {
        join(self.path.clone(), layout)
    }

    /// An [`Error::Storage`] naming this store and the object.
    fn error(&self, operation: &'static str, key: &Path, source: object_store::Error) -> Error {
        Error::storage(self.label.clone(), operation, key.to_string(), source)
    }

    /// GETs a whole object; `None` if it does not exist.
    async fn get_optional(&self, operation: &'static str, path: &Path) -> Result<Option<Bytes>> {
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(operation, path, e)),
        };
        match got.bytes().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(operation, path, e)),
        }
    }
}

/// `base` joined with the `/`-separated segments of `rel`.
fn join(base: Path, rel: &str) -> Path {
    rel.split('/').fold(base, |path, part| path.join(part))
}

/// The one segment of `path` below `dir`, if `path` is directly in `dir`.
fn name_in(path: &Path, dir: &Path) -> Option<String> {
    let mut rest = path.prefix_match(dir)?;
    let name = rest.next()?;
    rest.next().is_none().then(|| name.as_ref().to_owned())
}

// ---------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------

/// A [`MetadataStore`] on an object store; see the [module docs](self) for the
/// layout and the requests each operation makes.
///
/// Clones share the same store. Any number of handles, on any number of machines,
/// may use one prefix at once.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use modelreg::store::{MetadataStore, ObjectMetadataStore};
/// use object_store::{memory::InMemory, path::Path};
///
/// let store = ObjectMetadataStore::new(Arc::new(InMemory::new()), Path::from("reg/metadata"));
/// store.append("fraud", 1, "first".into()).await?;
/// assert!(store.append("fraud", 1, "again".into()).await.is_err());
/// assert_eq!(store.read_after("fraud", 0, 10).await?[0].bytes, "first");
/// # Ok::<(), modelreg::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ObjectMetadataStore {
    root: Arc<Root>,
}

impl ObjectMetadataStore {
    /// A store keeping its logs in `store` below `root`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path) -> Self {
        ObjectMetadataStore {
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

    fn log_dir(&self, log: &str) -> Path {
        self.root.dir(LOGS_DIR).join(log)
    }

    fn lease_path(&self, key: &str) -> Path {
        self.root.dir(LEASES_DIR).join(key)
    }

    fn records_dir(&self, log: &str) -> Path {
        self.log_dir(log).join(RECORDS)
    }

    fn record_path(&self, log: &str, seq: u64) -> Path {
        self.records_dir(log).join(seq_file_name(seq, RECORD_EXT))
    }

    fn checkpoints_dir(&self, log: &str) -> Path {
        self.log_dir(log).join(CHECKPOINTS)
    }

    /// The checkpoints of `log` by sequence number, newest first.
    async fn list_checkpoints(&self, log: &str) -> Result<Vec<(u64, Path)>> {
        let dir = self.checkpoints_dir(log);
        let mut found: Vec<(u64, Path)> = self
            .root
            .store
            .list(Some(&dir))
            .map_err(|e| self.root.error("list checkpoints", &dir, e))
            .try_filter_map(|meta| {
                let seq = name_in(&meta.location, &dir)
                    .and_then(|name| parse_seq_file_name(&name, CHECKPOINT_EXT));
                futures::future::ready(Ok(seq.map(|seq| (seq, meta.location))))
            })
            .try_collect()
            .await?;
        found.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(found)
    }

    /// The numbers `after + 1, after + 2, …` (at most `wanted` of them) that a listing
    /// of `log`'s records shows, up to the first one missing.
    async fn listed_after(&self, log: &str, after: u64, wanted: u64) -> Result<Vec<u64>> {
        let dir = self.records_dir(log);
        let offset = dir.clone().join(seq_file_name(after, RECORD_EXT));
        let mut listing = self.root.store.list_with_offset(Some(&dir), &offset);
        let mut found = std::collections::BTreeSet::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.root.error("read", &dir, e))?;
            let Some(seq) = name_in(&meta.location, &dir)
                .and_then(|name| parse_seq_file_name(&name, RECORD_EXT))
            else {
                continue;
            };
            if seq > after && seq - after <= wanted {
                found.insert(seq);
                // Every wanted number seen: the rest of the listing cannot add one.
                if found.len() as u64 == wanted {
                    break;
                }
            }
        }
        let mut consecutive = Vec::new();
        let mut next = after.checked_add(1);
        for seq in found {
            if Some(seq) != next {
                break;
            }
            consecutive.push(seq);
            next = seq.checked_add(1);
        }
        Ok(consecutive)
    }

    /// Whether `log` has at least one record.
    async fn has_records(&self, log: &str) -> Result<bool> {
        // Logs are appended from 1: record 1 answers without a listing.
        let first = self.record_path(log, 1);
        match self.root.store.head(&first).await {
            Ok(_) => return Ok(true),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.root.error("list logs", &first, e)),
        }
        // A log that lacks record 1 (or has junk in its tree) is listed.
        let dir = self.records_dir(log);
        let mut listing = self.root.store.list(Some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.root.error("list logs", &dir, e))?;
            let name = name_in(&meta.location, &dir);
            if name.is_some_and(|n| parse_seq_file_name(&n, RECORD_EXT).is_some()) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl MetadataStore for ObjectMetadataStore {
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
        check_log_key(log)?;
        check_seq(log, seq)?;
        let path = self.record_path(log, seq);
        let put = self
            .root
            .store
            .put_opts(&path, PutPayload::from(record), PutMode::Create.into())
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::already_exists(format!(
                "record {seq} of log '{log}'"
            ))),
            Err(e) => Err(self.root.error("append", &path, e)),
        }
    }

    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        check_log_key(log)?;
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Probe: when nothing is new, one GET is the whole cost.
        let Some(bytes) = self
            .root
            .get_optional("read", &self.record_path(log, first))
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut out = vec![LogRecord { seq: first, bytes }];
        let wanted = u64::try_from(limit - 1)
            .unwrap_or(u64::MAX)
            .min(u64::MAX - first);
        if wanted == 0 {
            return Ok(out);
        }
        let seqs = self.listed_after(log, first, wanted).await?;
        let fetched: Vec<(u64, Option<Bytes>)> = stream::iter(seqs)
            .map(|seq| async move {
                let path = self.record_path(log, seq);
                Ok::<_, Error>((seq, self.root.get_optional("read", &path).await?))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        // Records are never deleted; one listed but gone is treated as the end.
        out.extend(
            fetched
                .into_iter()
                .map_while(|(seq, bytes)| Some(LogRecord { seq, bytes: bytes? })),
        );
        Ok(out)
    }

    async fn list_logs(&self) -> Result<Vec<String>> {
        let dir = self.root.dir(LOGS_DIR);
        let listed = self
            .root
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| self.root.error("list logs", &dir, e))?;
        let mut keys = Vec::new();
        for prefix in &listed.common_prefixes {
            let Some(encoded) = name_in(prefix, &dir) else {
                continue;
            };
            let Ok(key) = percent_encoding::percent_decode_str(&encoded).decode_utf8() else {
                continue;
            };
            // Only what `append` would have written: one encoding of a valid key.
            if check_log_key(&key).is_ok() && self.log_dir(&key) == *prefix {
                keys.push(key.into_owned());
            }
        }
        stream::iter(keys)
            .map(|key| async move { Ok::<_, Error>(self.has_records(&key).await?.then_some(key)) })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_filter_map(|key| futures::future::ready(Ok(key)))
            .try_collect()
            .await
    }

    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
        check_log_key(log)?;
        let path = self
            .checkpoints_dir(log)
            .join(seq_file_name(seq, CHECKPOINT_EXT));
        self.root
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.root.error("put checkpoint", &path, e))?;
        // Pruning is best effort: a checkpoint left behind is garbage, not an error.
        match self.list_checkpoints(log).await {
            Ok(all) => {
                for (_, old) in all.iter().skip(KEEP_CHECKPOINTS) {
                    if let Err(e) = self.root.store.delete(old).await {
                        tracing::warn!(
                            checkpoint = %self.root.location(old), error = %e,
                            "could not prune an old checkpoint"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(log, error = %e, "could not list checkpoints to prune"),
        }
        Ok(())
    }

    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
        check_log_key(log)?;
        // A listed checkpoint can be pruned before it is read, but only after a newer
        // one was written: list again and the newer one is found.
        for _ in 0..CHECKPOINT_READ_ATTEMPTS {
            let listed = self.list_checkpoints(log).await?;
            if listed.is_empty() {
                return Ok(None);
            }
            for (seq, path) in listed {
                if let Some(bytes) = self.root.get_optional("read checkpoint", &path).await? {
                    return Ok(Some(Checkpoint { seq, bytes }));
                }
            }
        }
        let dir = self.checkpoints_dir(log);
        Err(self.root.error(
            "read checkpoint",
            &dir,
            object_store::Error::Generic {
                store: "modelreg",
                source: "checkpoints kept being pruned while they were read".into(),
            },
        ))
    }
    async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()> {
        check_lease_key(key)?;
        let path = self.lease_path(key);
        self.root
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.root.error("put lease", &path, e))?;
        Ok(())
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Bytes>> {
        check_lease_key(key)?;
        self.root
            .get_optional("get lease", &self.lease_path(key))
            .await
    }

    async fn list_leases(&self) -> Result<Vec<String>> {
        let dir = self.root.dir(LEASES_DIR);
        self.root
            .store
            .list(Some(&dir))
            .map_err(|e| self.root.error("list leases", &dir, e))
            .try_filter_map(|meta| {
                // Only what `put_lease` would have written: one encoding of a valid key.
                let key = name_in(&meta.location, &dir).and_then(|encoded| {
                    let key = percent_encoding::percent_decode_str(&encoded)
                        .decode_utf8()
                        .ok()?
                        .into_owned();
                    (check_lease_key(&key).is_ok() && self.lease_path(&key) == meta.location)
                        .then_some(key)
                });
                futures::future::ready(Ok(key))
            })
            .try_collect()
            .await
    }

    async fn delete_lease(&self, key: &str) -> Result<()> {
        check_lease_key(key)?;
        let path = self.lease_path(key);
        match self.root.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.root.error("delete lease", &path, e)),
        }
    }

    /// The object's URL (`s3://bucket/reg/metadata/logs/v1/…`) when the store was
    /// opened by URL, otherwise its key and the store.
    fn location(&self, log: &str, item: MetadataItem) -> String {
        let path = match item {
            MetadataItem::Record(seq) => self.record_path(log, seq),
            MetadataItem::Checkpoint(seq) => self
                .checkpoints_dir(log)
                .join(seq_file_name(seq, CHECKPOINT_EXT)),
        };
        self.root.location(&path)
    }
}

// ---------------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------------

/// An [`ArtifactStore`] on an object store; see the [module docs](self) for the
/// layout, multipart uploads and their limits.
///
/// Clones share the same store. [`materialize`](ArtifactStore::materialize) always
/// copies (an object store has no links), and memory stays bounded whatever the blob
/// size: about [`UPLOAD_CONCURRENCY`] parts per upload.
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
    root: Arc<Root>,
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
        join(self.root.path.clone(), &super::layout::blob_key(digest))
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

/// Cuts a stream into parts of exactly `size` bytes (the last one shorter),
/// hashing every byte it hands out.
struct PartReader {
    data: ByteStream,
    size: u64,
    hasher: blake3::Hasher,
    /// Bytes pulled from the stream beyond the last part.
    carry: Option<Bytes>,
    ended: bool,
}

impl PartReader {
    fn new(data: ByteStream, size: u64) -> Self {
        PartReader {
            data,
            size,
            hasher: blake3::Hasher::new(),
            carry: None,
            ended: false,
        }
    }

    /// The next part: `size` bytes, or fewer (possibly none) when the stream ended.
    async fn next_part(&mut self) -> Result<Vec<Bytes>> {
        let mut part = Vec::new();
        let mut len = 0u64;
        while len < self.size {
            let chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None => match self.data.next().await {
                    Some(chunk) => {
                        let chunk = chunk?;
                        let hasher = std::mem::take(&mut self.hasher);
                        self.hasher = hashing::update(hasher, chunk.clone()).await?;
                        chunk
                    }
                    None => {
                        self.ended = true;
                        break;
                    }
                },
            };
            let room = self.size - len;
            let mut chunk = chunk;
            if chunk.len() as u64 > room {
                // `room` is below `size`, which fits in memory: it fits a usize.
                self.carry = Some(chunk.split_off(room as usize));
            }
            len += chunk.len() as u64;
            part.push(chunk);
        }
        Ok(part)
    }

    /// Whether the stream has ended (the last part may still be unsent).
    fn ended(&self) -> bool {
        self.ended && self.carry.is_none()
    }

    /// The digest of everything read.
    fn digest(&self) -> Digest {
        self.hasher.finalize().into()
    }
}

/// A multipart upload that is aborted unless it is completed: explicitly on error,
/// and in the background if it is dropped half-way (a cancelled put).
struct Upload {
    root: Arc<Root>,
    path: Path,
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts in flight, each its own task so that they progress while the next part
    /// is read. Dropping the set cancels them.
    parts: JoinSet<object_store::Result<()>>,
}

impl Upload {
    async fn start(root: &Arc<Root>, path: Path) -> Result<Self> {
        let upload = root
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| root.error("put", &path, e))?;
        Ok(Upload {
            root: Arc::clone(root),
            path,
            upload: Some(upload),
            parts: JoinSet::new(),
        })
    }

    /// Sends a part, first waiting while [`UPLOAD_CONCURRENCY`] are in flight.
    async fn put_part(&mut self, payload: PutPayload) -> Result<()> {
        while self.parts.len() >= UPLOAD_CONCURRENCY {
            self.join_one().await?;
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.finished());
        };
        self.parts.spawn(upload.put_part(payload));
        Ok(())
    }

    /// Waits for one part in flight and reports its failure.
    async fn join_one(&mut self) -> Result<()> {
        match self.parts.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(self.root.error("put", &self.path, e)),
            Some(Err(join)) => match join.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => Err(self.root.error("put", &self.path, e.into())),
            },
        }
    }

    /// Waits for every part, then publishes the object; aborts if a part failed.
    async fn complete(mut self) -> Result<()> {
        while !self.parts.is_empty() {
            if let Err(e) = self.join_one().await {
                self.abort().await;
                return Err(e);
            }
        }
        let Some(mut upload) = self.upload.take() else {
            return Err(self.finished());
        };
        if let Err(e) = upload.complete().await {
            if let Err(abort) = upload.abort().await {
                warn_abort_failed(&self.root.location(&self.path), &abort);
            }
            return Err(self.root.error("put", &self.path, e));
        }
        Ok(())
    }

    /// Cancels the parts in flight and aborts the upload: nothing is published.
    async fn abort(mut self) {
        self.parts.shutdown().await;
        if let Some(mut upload) = self.upload.take() {
            // Best effort: an upload that is never completed stays invisible anyway.
            if let Err(e) = upload.abort().await {
                warn_abort_failed(&self.root.location(&self.path), &e);
            }
        }
    }

    fn finished(&self) -> Error {
        self.root.error(
            "put",
            &self.path,
            object_store::Error::Generic {
                store: "modelreg",
                source: "multipart upload already finished".into(),
            },
        )
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // A put cancelled mid-way: abort in the background if a runtime is there.
        if let Some(mut upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let object = self.root.location(&self.path);
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    warn_abort_failed(&object, &e);
                }
            });
        }
    }
}

/// An aborted multipart upload that could not be aborted keeps its parts (and
/// their cost) until the bucket's lifecycle rule removes them.
fn warn_abort_failed(object: &str, error: &object_store::Error) {
    tracing::warn!(
        object, error = %error,
        "could not abort a multipart upload: its parts stay stored until the \
         bucket's lifecycle rule for incomplete uploads removes them"
    );
}

/// Runs `f` on the blocking pool; a panic in `f` is resumed here.
async fn blocking<T: Send + 'static>(
    root: &Root,
    operation: &'static str,
    key: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    crate::offload::offload_or(f, |e| root.error(operation, key, e.into())).await
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

/// A message from the task pulling a download to the thread writing it.
enum WriteMsg {
    Chunk(Bytes),
    /// The stream ended normally. If the channel closes without it, the stream
    /// failed or the materialize was cancelled.
    End,
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
        let source = path.to_owned();
        let key = self.root.dir(BLOBS_DIR);
        let (digest, size, before) = blocking(&self.root, "put", &key, move || {
            let file = File::open(&source)?;
            let before = file.metadata()?;
            let (digest, size) = hashing::hash_open_file(&file)?;
            Ok::<_, io::Error>((digest, size, before))
        })
        .await?
        .map_err(|e| Error::io(path, e))?;
        let changed = || Error::SourceChanged {
            path: path.to_owned(),
        };
        if !before.is_file() || size != before.len() {
            return Err(changed());
        }
        if self.exists(&digest).await? {
            return Ok(Imported::new(digest, size, None));
        }
        match self.put_file(&digest, path).await {
            Ok(()) => Ok(Imported::new(digest, size, Some(Materialized::Copied))),
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
                    let written = hashing::copy_hashing(&src, &file, &file)?;
                    finish_new_file(&file, &target)?;
                    Ok(written)
                })
                .await?
                .map_err(|e| Error::io(dest, e))
            }
            GetResultPayload::Stream(stream) => {
                write_stream(&self.root, &path, stream, file, dest).await
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

/// Writes a download into `file` on the blocking pool, hashing what it writes and
/// syncing it at the end; returns the digest and length written.
async fn write_stream(
    root: &Arc<Root>,
    key: &Path,
    mut stream: BoxStream<'static, object_store::Result<Bytes>>,
    mut file: File,
    dest: &FsPath,
) -> Result<(Digest, u64)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteMsg>(WRITE_QUEUE);
    let target = dest.to_owned();
    let writer = blocking(root, "materialize", key, move || {
        let mut hasher = blake3::Hasher::new();
        loop {
            match rx.blocking_recv() {
                Some(WriteMsg::Chunk(chunk)) => {
                    hasher.update(&chunk);
                    file.write_all(&chunk)?;
                }
                Some(WriteMsg::End) => break,
                // The download failed or was cancelled; its error is the one returned.
                None => return Err(io::Error::other("download ended early")),
            }
        }
        finish_new_file(&file, &target)?;
        Ok((hasher.finalize().into(), hasher.count()))
    });
    let feed = async move {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| root.error("materialize", key, e))?;
            if tx.send(WriteMsg::Chunk(chunk)).await.is_err() {
                // The writer failed; its error is the one returned.
                return Ok(());
            }
        }
        let _ = tx.send(WriteMsg::End).await;
        Ok(())
    };
    let (fed, written): (Result<()>, Result<io::Result<(Digest, u64)>>) =
        futures::join!(feed, writer);
    fed?;
    written?.map_err(|e| Error::io(dest, e))
}

/// Makes a file just written at `path` durable: its data, and its name.
fn finish_new_file(file: &File, path: &FsPath) -> io::Result<()> {
    file.sync_all()?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(FsPath::new("."));
    fsutil::sync_dir(parent)
}

// ---------------------------------------------------------------------------------
// Opening by URL
// ---------------------------------------------------------------------------------

/// The two stores of a registry at `prefix` in `store`: metadata under
/// `<prefix>/metadata`, blobs under `<prefix>/artifacts`, the layout
/// [`Registry::open_url`](crate::Registry::open_url) uses.
pub fn stores_in(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
) -> (ObjectMetadataStore, ObjectArtifactStore) {
    let label = format!("object store {store} at '{prefix}'");
    named_stores(store, prefix, &label, None)
}

fn named_stores(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
    label: &str,
    url_base: Option<String>,
) -> (ObjectMetadataStore, ObjectArtifactStore) {
    let metadata = prefix.clone().join("metadata");
    let artifacts = prefix.clone().join("artifacts");
    (
        ObjectMetadataStore {
            root: Root::new(
                Arc::clone(&store),
                metadata,
                Some(format!("{label} (metadata)")),
                url_base.clone(),
            ),
        },
        ObjectArtifactStore {
            root: Root::new(
                store,
                artifacts,
                Some(format!("{label} (artifacts)")),
                url_base,
            ),
        },
    )
}

/// The two stores of the registry a URL names, configured from the environment:
/// [`object_store_from_url`], then [`stores_in`] at the URL's path. Errors name the
/// store by its URL.
pub fn stores_from_url(url: &str) -> Result<(ObjectMetadataStore, ObjectArtifactStore)> {
    let (store, prefix) = object_store_from_url(url)?;
    let label = format!("object store {}", url.trim_end_matches('/'));
    let base = url::Url::parse(url)
        .ok()
        .and_then(|parsed| url_base(&parsed, &prefix));
    Ok(named_stores(store, &prefix, &label, base))
}

/// What an object's key is appended to for its URL: the URL without the `prefix`
/// it gives inside the store (`s3://bucket/` for `s3://bucket/reg`). `None` when
/// the URL does not end in the prefix as written (a form such as
/// `https://account.blob.core.windows.net/container/reg`), and keys are then named
/// with their store instead.
fn url_base(parsed: &url::Url, prefix: &Path) -> Option<String> {
    let mut url = parsed.clone();
    url.set_query(None);
    url.set_fragment(None);
    let whole = url.as_str();
    if prefix.as_ref().is_empty() {
        return Some(if whole.ends_with('/') {
            whole.to_owned()
        } else {
            format!("{whole}/")
        });
    }
    let base = whole.trim_end_matches('/').strip_suffix(prefix.as_ref())?;
    base.ends_with('/').then(|| base.to_owned())
}

/// The object store a URL names, configured from the environment, and the path the
/// URL gives inside it.
///
/// | URL | store | configuration |
/// |---|---|---|
/// | `s3://bucket/prefix` | Amazon S3 or compatible (feature `aws`) | `AWS_*` variables, as `AmazonS3Builder::from_env` |
/// | `gs://bucket/prefix` | Google Cloud Storage (feature `gcp`) | `GOOGLE_*` variables, as `GoogleCloudStorageBuilder::from_env` |
/// | `az://container/prefix` | Azure Blob Storage (feature `azure`) | `AZURE_*` variables, as `MicrosoftAzureBuilder::from_env` |
/// | `file:///path` | local files (object_store's `LocalFileSystem`, fsync on) | – |
/// | `memory://` | a new, empty in-memory store | – |
///
/// What the URL says (bucket, container) wins over the environment. Other URL forms
/// object_store understands (`https://…amazonaws.com/…`, `abfss://…`) work too.
/// Nothing is contacted here: bad credentials show on first use. Use it to wrap the
/// store (with object_store's `LimitStore`, a cache, instrumentation) before
/// handing it to [`stores_in`].
///
/// Fails with [`Error::InvalidInput`] for a URL that does not parse, a scheme that is
/// not an object store, or one whose feature this build lacks, and with
/// [`Error::Storage`] when the store's configuration is incomplete.
pub fn object_store_from_url(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid_input(format!("URL '{url}'"), e.to_string()))?;
    let (scheme, prefix) = object_store::ObjectStoreScheme::parse(&parsed)
        .map_err(|e| Error::invalid_input(format!("URL '{url}'"), e.to_string()))?;
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    let failed = |e| Error::storage(format!("object store {url}"), "open", url, e);
    use object_store::ObjectStoreScheme as Scheme;
    let store: Arc<dyn ObjectStore> = match scheme {
        Scheme::Memory => Arc::new(object_store::memory::InMemory::new()),
        // Durable like the local stores: files and directories are synced.
        Scheme::Local => Arc::new(object_store::local::LocalFileSystem::new().with_fsync(true)),
        #[cfg(feature = "aws")]
        Scheme::AmazonS3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(failed)?,
        ),
        #[cfg(feature = "gcp")]
        Scheme::GoogleCloudStorage => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(failed)?,
        ),
        #[cfg(feature = "azure")]
        Scheme::MicrosoftAzure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(failed)?,
        ),
        #[cfg(not(feature = "aws"))]
        Scheme::AmazonS3 => return Err(lacks_feature(url, "aws")),
        #[cfg(not(feature = "gcp"))]
        Scheme::GoogleCloudStorage => return Err(lacks_feature(url, "gcp")),
        #[cfg(not(feature = "azure"))]
        Scheme::MicrosoftAzure => return Err(lacks_feature(url, "azure")),
        other => {
            return Err(Error::invalid_input(
                format!("URL '{url}'"),
                format!("{other:?} is not an object store modelreg opens"),
            ));
        }
    };
    Ok((store, prefix))
}

/// The error for a URL whose store this build was compiled without.
#[cfg(not(all(feature = "aws", feature = "gcp", feature = "azure")))]
fn lacks_feature(url: &str, feature: &str) -> Error {
    Error::invalid_input(
        format!("URL '{url}'"),
        format!("this build of modelreg lacks the `{feature}` feature"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_fit_every_file_in_ten_thousand_parts() {
        const MIB: u64 = 1 << 20;
        for size in [
            0,
            1,
            MIN_PART_SIZE,
            MIN_PART_SIZE * MAX_PARTS,
            MIN_PART_SIZE * MAX_PARTS + 1,
            100_000_000_000,
            5 << 40,
        ] {
            let part = part_size(size);
            assert!(part >= MIN_PART_SIZE, "{size}");
            assert_eq!(part % MIB, 0, "{size}");
            assert!(size.div_ceil(part) <= MAX_PARTS, "{size}: {part}");
        }
        assert_eq!(part_size(MIN_PART_SIZE * MAX_PARTS + 1), 6 * MIB);
    }

    #[test]
    fn urls_name_stores_and_prefixes() {
        let (m, a) = stores_from_url("memory://").unwrap();
        assert_eq!(m.root().as_ref(), "metadata");
        assert_eq!(a.root().as_ref(), "artifacts");
        let (m, _) = stores_from_url("file:///srv/registry/").unwrap();
        assert_eq!(m.root().as_ref(), "srv/registry/metadata");
        for bad in ["not a url", "ftp://host/x", "http://example.com/x"] {
            let e = stores_from_url(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{bad}: {e:?}");
        }
        #[cfg(not(feature = "aws"))]
        {
            let e = stores_from_url("s3://bucket/x").unwrap_err();
            assert!(e.to_string().contains("`aws` feature"), "{e}");
        }
    }

    #[test]
    fn log_keys_round_trip_through_path_encoding() {
        let (m, _) = stores_from_url("memory://").unwrap();
        let dir = m.root.dir(LOGS_DIR);
        for key in [
            "fraud",
            "...",
            "with space",
            "a%b",
            "tab\there",
            "modèle-ü",
            "{x}",
        ] {
            let path = m.log_dir(key);
            let encoded = name_in(&path, &dir).unwrap();
            let decoded = percent_encoding::percent_decode_str(&encoded)
                .decode_utf8()
                .unwrap();
            assert_eq!(decoded, key);
        }
    }
}
