//! The metadata store on an object store: logs of records, checkpoints and
//! leases, each under its own prefix.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use super::{Root, name_in};
use crate::error::{Error, Result};
use crate::store::layout::{
    CHECKPOINT_EXT, CHECKPOINT_READ_ATTEMPTS, CHECKPOINTS, LEASES_DIR, LOGS_DIR, PARTS, RECORD_EXT,
    RECORDS, parse_seq_file_name, prunable_checkpoints, seq_file_name,
};
use crate::store::{
    Checkpoint, CheckpointPart, LogRecord, MetadataItem, MetadataStore, check_lease_key,
    check_log_key, check_part_key, check_seq,
};

/// How many records [`MetadataStore::read_after`] fetches at once.
pub const READ_CONCURRENCY: usize = 16;
/// How many logs [`MetadataStore::list_logs`] checks for records at once.
const LIST_CONCURRENCY: usize = 16;

/// A [`MetadataStore`] on an object store; see the [module docs](super) for the
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
    pub(super) root: Arc<Root>,
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
                for (_, old) in prunable_checkpoints(&all) {
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
    async fn checkpoint_at_or_before(&self, log: &str, at_most: u64) -> Result<Option<Checkpoint>> {
        check_log_key(log)?;
        // One pruned between the listing and the read leaves an older one, as
        // good for a fold (only longer to fold from).
        for (seq, path) in self.list_checkpoints(log).await? {
            if seq > at_most {
                continue;
            }
            if let Some(bytes) = self.root.get_optional("read checkpoint", &path).await? {
                return Ok(Some(Checkpoint { seq, bytes }));
            }
        }
        Ok(None)
    }

    fn keeps_checkpoint_parts(&self) -> bool {
        true
    }

    async fn put_checkpoint_part(&self, log: &str, name: &str, bytes: Bytes) -> Result<()> {
        check_part_key(log, name)?;
        let path = self.log_dir(log).join(PARTS).join(name);
        self.root
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.root.error("put checkpoint part", &path, e))?;
        Ok(())
    }

    async fn get_checkpoint_part(&self, log: &str, name: &str) -> Result<Option<Bytes>> {
        check_part_key(log, name)?;
        let path = self.log_dir(log).join(PARTS).join(name);
        self.root.get_optional("read checkpoint part", &path).await
    }

    async fn list_checkpoint_parts(&self, log: &str) -> Result<Vec<CheckpointPart>> {
        check_log_key(log)?;
        let dir = self.log_dir(log).join(PARTS);
        self.root
            .store
            .list(Some(&dir))
            .map_err(|e| self.root.error("list checkpoint parts", &dir, e))
            .try_filter_map(|meta| {
                let part = name_in(&meta.location, &dir).map(|name| CheckpointPart {
                    name,
                    size: meta.size,
                    last_modified: Some(meta.last_modified),
                });
                futures::future::ready(Ok(part))
            })
            .try_collect()
            .await
    }

    async fn delete_checkpoint_part(&self, log: &str, name: &str) -> Result<()> {
        check_part_key(log, name)?;
        let path = self.log_dir(log).join(PARTS).join(name);
        match self.root.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.root.error("delete checkpoint part", &path, e)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::object::stores_from_url;

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
