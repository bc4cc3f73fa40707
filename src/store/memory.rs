//! In-memory stores: for tests, examples and short-lived registries.
//!
//! Everything lives in the process's heap and is gone when the last handle is
//! dropped. Clones share the same data.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use super::layout::{blob_key, metadata_key};
use super::{
    ArtifactStore, BlobMeta, ByteStream, Checkpoint, CheckpointPart, Imported, LinkMode, LogRecord,
    Materialized, MetadataItem, MetadataStore, Placed, check_lease_key, check_log_key,
    check_part_key, check_seq,
};
use crate::digest::{Digest, Sha256};
use crate::error::{Error, Result};
use crate::progress::{self, Meter, MeterExt};

/// How much of a file is read, or of a blob written, at a time, so that a meter
/// hears of a large one as it goes.
const SLICE: usize = 1 << 20;

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every
/// critical section below leaves the maps consistent before it can panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Default)]
struct Logs {
    records: HashMap<String, BTreeMap<u64, Bytes>>,
    checkpoints: HashMap<String, BTreeMap<u64, Bytes>>,
    /// Checkpoint parts by log and name, with when each was put.
    parts: HashMap<(String, String), (Bytes, DateTime<Utc>)>,
    leases: HashMap<String, Bytes>,
}

/// A [`MetadataStore`] in memory.
///
/// ```
/// # tokio_test_block_on(async {
/// use modelreg::store::{MemoryMetadataStore, MetadataStore};
/// let store = MemoryMetadataStore::new();
/// store.append("fraud", 1, "first".into()).await?;
/// assert!(store.append("fraud", 1, "again".into()).await.is_err());
/// assert_eq!(store.read_after("fraud", 0, 10).await?.len(), 1);
/// # Ok::<(), modelreg::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) }
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryMetadataStore {
    inner: Arc<Mutex<Logs>>,
}

impl MemoryMetadataStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl MetadataStore for MemoryMetadataStore {
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
        check_log_key(log)?;
        check_seq(log, seq)?;
        let mut logs = lock(&self.inner);
        let entries = logs.records.entry(log.to_owned()).or_default();
        if entries.contains_key(&seq) {
            return Err(Error::already_exists(format!(
                "record {seq} of log '{log}'"
            )));
        }
        entries.insert(seq, record);
        Ok(())
    }

    fn probe(&self, log: &str, seq: u64) -> Option<Result<bool>> {
        if let Err(e) = check_log_key(log) {
            return Some(Err(e));
        }
        let logs = lock(&self.inner);
        Some(Ok(logs
            .records
            .get(log)
            .is_some_and(|entries| entries.contains_key(&seq))))
    }

    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>> {
        check_log_key(log)?;
        let logs = lock(&self.inner);
        let Some(entries) = logs.records.get(log) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut next = after.saturating_add(1);
        while out.len() < limit {
            match entries.get(&next) {
                Some(bytes) => out.push(LogRecord {
                    seq: next,
                    bytes: bytes.clone(),
                }),
                None => break,
            }
            next += 1;
        }
        Ok(out)
    }

    async fn list_logs(&self) -> Result<Vec<String>> {
        let logs = lock(&self.inner);
        Ok(logs
            .records
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
        check_log_key(log)?;
        lock(&self.inner)
            .checkpoints
            .entry(log.to_owned())
            .or_default()
            .insert(seq, bytes);
        Ok(())
    }

    async fn checkpoint_at_or_before(&self, log: &str, at_most: u64) -> Result<Option<Checkpoint>> {
        check_log_key(log)?;
        let logs = lock(&self.inner);
        Ok(logs
            .checkpoints
            .get(log)
            .and_then(|c| c.range(..=at_most).next_back())
            .map(|(seq, bytes)| Checkpoint {
                seq: *seq,
                bytes: bytes.clone(),
            }))
    }

    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
        check_log_key(log)?;
        let logs = lock(&self.inner);
        Ok(logs
            .checkpoints
            .get(log)
            .and_then(|c| c.last_key_value())
            .map(|(seq, bytes)| Checkpoint {
                seq: *seq,
                bytes: bytes.clone(),
            }))
    }

    fn keeps_checkpoint_parts(&self) -> bool {
        true
    }

    async fn put_checkpoint_part(&self, log: &str, name: &str, bytes: Bytes) -> Result<()> {
        check_part_key(log, name)?;
        lock(&self.inner)
            .parts
            .insert((log.to_owned(), name.to_owned()), (bytes, Utc::now()));
        Ok(())
    }

    async fn get_checkpoint_part(&self, log: &str, name: &str) -> Result<Option<Bytes>> {
        check_part_key(log, name)?;
        Ok(lock(&self.inner)
            .parts
            .get(&(log.to_owned(), name.to_owned()))
            .map(|(bytes, _)| bytes.clone()))
    }

    async fn list_checkpoint_parts(&self, log: &str) -> Result<Vec<CheckpointPart>> {
        check_log_key(log)?;
        Ok(lock(&self.inner)
            .parts
            .iter()
            .filter(|((l, _), _)| l == log)
            .map(|((_, name), (bytes, put))| CheckpointPart {
                name: name.clone(),
                size: bytes.len() as u64,
                last_modified: Some(*put),
            })
            .collect())
    }

    async fn delete_checkpoint_part(&self, log: &str, name: &str) -> Result<()> {
        check_part_key(log, name)?;
        lock(&self.inner)
            .parts
            .remove(&(log.to_owned(), name.to_owned()));
        Ok(())
    }

    async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()> {
        check_lease_key(key)?;
        lock(&self.inner).leases.insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Bytes>> {
        check_lease_key(key)?;
        Ok(lock(&self.inner).leases.get(key).cloned())
    }

    async fn list_leases(&self) -> Result<Vec<String>> {
        Ok(lock(&self.inner).leases.keys().cloned().collect())
    }

    async fn delete_lease(&self, key: &str) -> Result<()> {
        check_lease_key(key)?;
        lock(&self.inner).leases.remove(key);
        Ok(())
    }

    /// `memory:logs/v1/<log>/records/<seq>.rec`: the persistent stores' layout.
    fn location(&self, log: &str, item: MetadataItem) -> String {
        format!("memory:{}", metadata_key(log, item))
    }
}

/// Stored blobs with the time each was first put.
type Blobs = HashMap<Digest, (Bytes, DateTime<Utc>)>;

/// An [`ArtifactStore`] in memory. Blobs are held whole, so it is meant for small
/// artifacts (tests, prompts, configurations).
#[derive(Debug, Default, Clone)]
pub struct MemoryArtifactStore {
    blobs: Arc<Mutex<Blobs>>,
}

impl MemoryArtifactStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the stored bytes of a blob without checking them: for tests that need
    /// a corrupted store. Returns whether the blob existed.
    pub fn corrupt_for_testing(&self, digest: &Digest, bytes: Bytes) -> bool {
        let mut blobs = lock(&self.blobs);
        match blobs.get_mut(digest) {
            Some(entry) => {
                entry.0 = bytes;
                true
            }
            None => false,
        }
    }

    fn publish(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(Error::Integrity {
                what: format!("blob put as {digest}"),
                expected: *digest,
                actual,
                location: None,
            });
        }
        lock(&self.blobs)
            .entry(*digest)
            .or_insert_with(|| (bytes, Utc::now()));
        Ok(())
    }

    fn bytes_of(&self, digest: &Digest) -> Result<Bytes> {
        lock(&self.blobs)
            .get(digest)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| {
                Error::blob_not_found(*digest, format!("blob {digest} in memory artifact store"))
            })
    }
}

#[async_trait]
impl ArtifactStore for MemoryArtifactStore {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
        Ok(lock(&self.blobs).get(digest).map(|(b, t)| BlobMeta {
            size: b.len() as u64,
            last_modified: Some(*t),
        }))
    }

    async fn put_stream(&self, digest: &Digest, mut data: ByteStream) -> Result<()> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = data.next().await {
            buf.extend_from_slice(&chunk?);
        }
        self.publish(digest, buf.freeze())
    }

    async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()> {
        let owned = path.to_owned();
        let bytes = crate::offload::offload(move || std::fs::read(&owned))
            .await?
            .map_err(|e| Error::io(path, e))?;
        self.publish(digest, Bytes::from(bytes))
    }

    async fn import_file(&self, path: &Path, _mode: LinkMode) -> Result<Imported> {
        let owned = path.to_owned();
        let meter = progress::meter();
        let bytes = crate::offload::offload(move || read_counting(&owned, meter.as_ref()))
            .await?
            .map_err(|e| Error::io(path, e))?;
        // What is hashed is what is stored: the bytes read, once.
        let bytes = Bytes::from(bytes);
        let (digest, sha256) = if bytes.len() <= 64 << 10 {
            (Digest::of(&bytes), Sha256::of(&bytes))
        } else {
            let b = bytes.clone();
            crate::offload::offload(move || (Digest::of(&b), Sha256::of(&b))).await?
        };
        let size = bytes.len() as u64;
        let placed = if self.head(&digest).await?.is_some() {
            None
        } else {
            self.publish(&digest, bytes)?;
            Some(Materialized::Copied)
        };
        Ok(Imported::new(digest, size, placed).with_sha256(sha256))
    }

    async fn get(&self, digest: &Digest) -> Result<ByteStream> {
        let bytes = self.bytes_of(digest)?;
        Ok(Box::pin(stream::once(async move { Ok(bytes) })))
    }

    async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes> {
        let bytes = self.bytes_of(digest)?;
        if range.start > range.end || range.end > bytes.len() as u64 {
            return Err(Error::invalid_input(
                format!("range {range:?} of blob {digest}"),
                format!("blob has {} bytes", bytes.len()),
            ));
        }
        Ok(bytes.slice(range.start as usize..range.end as usize))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        lock(&self.blobs).remove(digest);
        Ok(())
    }

    async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
        let all: Vec<Result<Digest>> = lock(&self.blobs).keys().map(|d| Ok(*d)).collect();
        Ok(Box::pin(stream::iter(all)))
    }

    async fn materialize(&self, digest: &Digest, dest: &Path, _mode: LinkMode) -> Result<Placed> {
        let bytes = self.bytes_of(digest)?;
        let size = bytes.len() as u64;
        let owned = dest.to_owned();
        let meter = progress::meter();
        let written =
            crate::offload::offload(move || write_hashing(&owned, &bytes, meter.as_ref()))
                .await?
                .map_err(|e| Error::io(dest, e))?;
        Ok(Placed::new(Materialized::Copied, written, size))
    }

    /// `memory:blobs/v1/blake3/ab/cd/<hex>`: the persistent stores' layout.
    fn location(&self, digest: &Digest) -> String {
        format!("memory:{}", blob_key(digest))
    }
}

/// Reads the file at `path` whole, [`SLICE`] at a time, counting each on `meter`.
fn read_counting(path: &Path, meter: Option<&Meter>) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let expected = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    loop {
        let n = (&mut file).take(SLICE as u64).read_to_end(&mut bytes)?;
        if n == 0 {
            return Ok(bytes);
        }
        meter.add(n as u64);
    }
}

/// Writes `bytes` to the new file `dest` (which must not exist) and syncs it,
/// hashing what it writes, [`SLICE`] at a time, each counted on `meter`.
fn write_hashing(dest: &Path, bytes: &[u8], meter: Option<&Meter>) -> io::Result<Digest> {
    let mut file = super::fsutil::create_new(dest)?;
    let mut hasher = blake3::Hasher::new();
    for slice in bytes.chunks(SLICE) {
        hasher.update(slice);
        file.write_all(slice)?;
        meter.add(slice.len() as u64);
    }
    super::fsutil::sync_file(&file, dest)?;
    Ok(hasher.finalize().into())
}
