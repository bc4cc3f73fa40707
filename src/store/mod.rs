//! Storage backends: bytes and keys only, no domain rules.
//!
//! Two small traits, each implemented in memory, on the local filesystem and on
//! object storage (S3, GCS, Azure Blob and anything else `object_store` reaches):
//!
//! - [`MetadataStore`]: numbered, append-only logs (one per model) with
//!   create-if-absent appends, plus checkpoints that cache a log's fold, plus
//!   *leases*: small named records that announce work in progress.
//! - [`ArtifactStore`]: content-addressed blobs keyed by their BLAKE3 [`Digest`].
//!
//! Stores do not know what a model, a version or an event is: the
//! [`Registry`](crate::Registry) gives them opaque keys and bytes. Conveniences that
//! every backend would write the same way live in [`ArtifactStoreExt`], which has a
//! blanket implementation and is never implemented by hand.
//!
//! Both traits are object-safe; the registry holds them as `Arc<dyn …>`.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream};

use crate::digest::{Digest, Sha256};
use crate::error::{Error, Result};

pub mod chunking;
pub(crate) mod fsutil;
pub(crate) mod layout;
pub mod local;
pub mod memory;
pub mod object;
pub mod pack;
pub(crate) mod pipe;
#[cfg(test)]
pub(crate) mod power_loss;
pub(crate) mod traffic;

pub use local::{LocalArtifactOptions, LocalArtifactStore, LocalMetadataStore};
pub use memory::{MemoryArtifactStore, MemoryMetadataStore};
pub use object::{ObjectArtifactOptions, ObjectArtifactStore, ObjectMetadataStore};
pub use pack::{PackCollection, PackOptions};

/// A stream of byte chunks, as blobs are read and written.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// One record of a log as read back: its sequence number and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The record's sequence number (1, 2, 3, …).
    pub seq: u64,
    /// The record's bytes, exactly as appended.
    pub bytes: Bytes,
}

/// A checkpoint as read back: the sequence number it covers and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last log record the checkpoint covers.
    pub seq: u64,
    /// The checkpoint's bytes, exactly as written.
    pub bytes: Bytes,
}

/// A checkpoint part as [`MetadataStore::list_checkpoint_parts`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointPart {
    /// Its name beside the log.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last put, where the store knows it.
    pub last_modified: Option<DateTime<Utc>>,
}

/// An item of a [`MetadataStore`] log, for [`MetadataStore::location`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataItem {
    /// Record `seq` of the log.
    Record(u64),
    /// The checkpoint covering records `1..=seq`.
    Checkpoint(u64),
}

/// Append-only, numbered logs with create-if-absent appends.
///
/// Contract, which the conformance suite checks for every implementation:
/// - a log key is one path segment: 1 to 255 bytes, none of `/`, `\`, NUL, not `.`
///   or `..`; anything else is [`Error::InvalidName`];
/// - records of a log are numbered from 1 (appending 0 is [`Error::InvalidInput`]);
///   [`append`](Self::append) of number `seq`
///   succeeds only if no record `seq` exists in that log, and otherwise fails with
///   [`Error::AlreadyExists`] without changing anything: of any number of concurrent
///   appends of the same `seq`, exactly one succeeds;
/// - a successful append is durable when it returns (for persistent stores);
/// - [`read_after`](Self::read_after) returns records `after + 1, after + 2, …` in
///   order, stopping at the first missing number or after `limit` records;
/// - checkpoints are opaque caches: [`put_checkpoint`](Self::put_checkpoint) may
///   overwrite, and [`latest_checkpoint`](Self::latest_checkpoint) returns the one
///   with the highest `seq` (or `None`);
///   [`checkpoint_at_or_before`](Self::checkpoint_at_or_before) one with
///   `seq` at most the given number (or `None`). Listing order is never relied on;
/// - leases are small named records beside the logs, with the same key rules as
///   logs: [`put_lease`](Self::put_lease) creates or replaces one, whole and
///   visible to every reader when it returns. It need not survive a crash of the
///   machine, and may then read back damaged: a lease announces the work of a
///   process, which does not survive the crash either, [`delete_lease`](Self::delete_lease) removes one (a missing one
///   is not an error). Leases are *linearizable*: a lease put before
///   [`list_leases`](Self::list_leases) starts is listed by it, and one deleted
///   before is not. The registry builds garbage collection on this (a collector and a
///   registration each write their lease, then read the other's).
/// - checkpoint parts are immutable named blobs beside a log's checkpoints (the
///   name follows the log key rules): a store that keeps them says so with
///   [`keeps_checkpoint_parts`](Self::keeps_checkpoint_parts);
///   [`put_checkpoint_part`](Self::put_checkpoint_part) creates or replaces one,
///   whole, durable when it returns, and
///   [`get_checkpoint_part`](Self::get_checkpoint_part) reads it back (`None` if
///   there is none). The registry names each part by the digest of its bytes
///   and checks them on read; the store only keeps them.
///   [`list_checkpoint_parts`](Self::list_checkpoint_parts) lists a log's
///   parts (name, size, last-modified time) and
///   [`delete_checkpoint_part`](Self::delete_checkpoint_part) removes one (a
///   missing one is not an error): the registry's garbage collection decides
///   which parts are live, the store knows nothing of it;
/// - [`location`](Self::location) names where an item is or would be stored,
///   distinct for distinct items, without touching the store.
#[async_trait]
pub trait MetadataStore: Send + Sync + fmt::Debug + 'static {
    /// Appends record `seq` to `log`, only if it does not exist yet.
    async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()>;

    /// Does ahead of time the part of [`append`](Self::append) that need not
    /// wait for anything else: on the local store, writing the record to a temp
    /// file and syncing it. Nothing is part of the log, or visible to readers,
    /// until [`publish_append`](Self::publish_append) returns; a prepared
    /// append that is dropped unpublished leaves at most a temp file (removed
    /// when dropped, or by [`remove_stale_temp_files`](Self::remove_stale_temp_files)
    /// after a crash).
    ///
    /// The registry prepares a new version's event while the version's blobs
    /// are being stored, so that the event's own durable write overlaps theirs
    /// and only its publication waits for them. The default keeps the record
    /// in memory and does nothing else, which is always correct: a store (or a
    /// wrapper) that does not override both methods appends in
    /// `publish_append` as [`append`](Self::append) does.
    async fn prepare_append(&self, log: &str, seq: u64, record: Bytes) -> Result<PreparedAppend> {
        Ok(PreparedAppend::new(log, seq, record))
    }

    /// Appends the record that [`prepare_append`](Self::prepare_append)
    /// prepared, with the contract of [`append`](Self::append): only if record
    /// `seq` of the log does not exist yet ([`Error::AlreadyExists`] if it
    /// does), durable when this returns. The default appends the record with
    /// [`append`](Self::append), ignoring whatever the store staged.
    async fn publish_append(&self, prepared: PreparedAppend) -> Result<()> {
        let PreparedAppend {
            log, seq, record, ..
        } = prepared;
        self.append(&log, seq, record).await
    }

    /// Reads up to `limit` consecutive records of `log` after `after`.
    /// A log that does not exist reads as empty.
    async fn read_after(&self, log: &str, after: u64, limit: usize) -> Result<Vec<LogRecord>>;

    /// Lists the keys of all logs that have at least one record, in no particular order.
    async fn list_logs(&self) -> Result<Vec<String>>;

    /// Stores a checkpoint of `log` covering records `1..=seq`.
    async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()>;

    /// The checkpoint of `log` with the highest `seq`, if any.
    async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>>;

    /// The checkpoint of `log` with the highest `seq` at most `at_most`, among
    /// those the store kept, if any: where time travel to a point before the
    /// latest checkpoint starts folding.
    ///
    /// Which older checkpoints a store keeps is its choice (the local and
    /// object stores keep one per window of the log's history, the memory store
    /// all of them); any answer with `seq <= at_most` is correct, a nearer one
    /// is only faster. The default keeps the old contract: the latest
    /// checkpoint if it is old enough, else `None` (a fold from record 1).
    async fn checkpoint_at_or_before(&self, log: &str, at_most: u64) -> Result<Option<Checkpoint>> {
        Ok(self
            .latest_checkpoint(log)
            .await?
            .filter(|c| c.seq <= at_most))
    }

    /// Whether this store keeps checkpoint parts
    /// ([`put_checkpoint_part`](Self::put_checkpoint_part)). The registry
    /// writes checkpoints in parts (format 5) only to a store that does, and
    /// whole checkpoints to any other. The default, `false`, is always correct:
    /// a wrapper that does not forward the part methods must not forward this.
    fn keeps_checkpoint_parts(&self) -> bool {
        false
    }

    /// Stores the checkpoint part `name` of `log`, creating or replacing it:
    /// a reader sees the old bytes or the new ones, whole, and the new ones are
    /// durable when this returns. The default keeps nothing and says so
    /// ([`Error::InvalidInput`]).
    async fn put_checkpoint_part(&self, log: &str, name: &str, bytes: Bytes) -> Result<()> {
        let _ = bytes;
        Err(Error::invalid_input(
            format!("checkpoint part '{name}' of log '{log}'"),
            "this store keeps no checkpoint parts",
        ))
    }

    /// The bytes of the checkpoint part `name` of `log`, or `None` if there is
    /// none. The default, for a store that keeps none, is `None`.
    async fn get_checkpoint_part(&self, log: &str, name: &str) -> Result<Option<Bytes>> {
        let _ = (log, name);
        Ok(None)
    }

    /// Every checkpoint part of `log`, with its size and when it was last put,
    /// in no particular order; whatever the names (the store keeps any part it
    /// was given, and lists it). A log without parts lists none. The default,
    /// for a store that keeps none, lists none.
    async fn list_checkpoint_parts(&self, log: &str) -> Result<Vec<CheckpointPart>> {
        let _ = log;
        Ok(Vec::new())
    }

    /// Removes the checkpoint part `name` of `log`. A part that does not exist
    /// is not an error (another collector may have removed it). The default,
    /// for a store that keeps none, does nothing.
    async fn delete_checkpoint_part(&self, log: &str, name: &str) -> Result<()> {
        let _ = (log, name);
        Ok(())
    }

    /// Creates or replaces the lease `key`.
    async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()>;

    /// The bytes of the lease `key`, or `None` if there is none.
    async fn get_lease(&self, key: &str) -> Result<Option<Bytes>>;

    /// The keys of every lease, in no particular order.
    async fn list_leases(&self) -> Result<Vec<String>>;

    /// Deletes the lease `key`. Deleting a missing lease is not an error.
    async fn delete_lease(&self, key: &str) -> Result<()>;

    /// Removes the temp files that writers which died left behind, as
    /// [`ArtifactStore::remove_stale_temp_files`] does.
    async fn remove_stale_temp_files(&self, older_than: Duration) -> Result<TempSweep> {
        let _ = older_than;
        Ok(TempSweep::default())
    }

    /// Whether record `seq` of `log` exists, if the store can tell at once without
    /// a round trip; `None` if it cannot (then callers use
    /// [`read_after`](Self::read_after)).
    ///
    /// This is how a reader learns cheaply that nothing was appended since it last
    /// looked, so it must be exact: `Some(Ok(false))` only if no append of `seq`
    /// had returned before the call began, in this or any other process. It runs
    /// on the caller's thread, also on an async worker, so only a store whose
    /// answer costs no more than a lookup in memory (the memory store) or one
    /// metadata call served by the kernel's caches (a `stat` on the local store)
    /// answers it. The default, `None`, is always correct: a wrapper that does not
    /// forward it is only slower, never wrong, and a wrapper that changes what
    /// `read_after` returns (fault injection, filtering) must not forward it.
    fn probe(&self, log: &str, seq: u64) -> Option<Result<bool>> {
        let _ = (log, seq);
        None
    }

    /// Where `item` of `log` is, or would be, stored, for messages that must point
    /// a person at it: a file path for local files, an object URL (or the key and
    /// the store) for object storage. Pure: it neither checks the key nor touches
    /// the store. Errors about a damaged record carry it
    /// ([`Error::location`](crate::Error::location)).
    fn location(&self, log: &str, item: MetadataItem) -> String;
}

/// A record written ahead of its append by
/// [`MetadataStore::prepare_append`], to be appended by
/// [`MetadataStore::publish_append`] of the same store.
///
/// It names the log and position and holds the record; a store may stage
/// more with it ([`with_staged`](Self::with_staged)), e.g. the synced temp
/// file its publication links into place. Dropping it unpublished appends
/// nothing.
pub struct PreparedAppend {
    log: String,
    seq: u64,
    record: Bytes,
    staged: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl PreparedAppend {
    /// Record `seq` of `log`, with nothing staged.
    pub fn new(log: &str, seq: u64, record: Bytes) -> Self {
        PreparedAppend {
            log: log.to_owned(),
            seq,
            record,
            staged: None,
        }
    }

    /// The same, with what the store staged for its publication.
    pub fn with_staged(mut self, staged: Box<dyn std::any::Any + Send + Sync>) -> Self {
        self.staged = Some(staged);
        self
    }

    /// The log the record is for.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// The record's position in the log.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record.
    pub fn record(&self) -> &Bytes {
        &self.record
    }

    /// Takes what the store staged, if it is a `T` (the store that staged it
    /// knows its type); `None` otherwise, and then it stays.
    pub fn take_staged<T: std::any::Any + Send + Sync>(&mut self) -> Option<Box<T>> {
        match self.staged.take()?.downcast::<T>() {
            Ok(staged) => Some(staged),
            Err(other) => {
                self.staged = Some(other);
                None
            }
        }
    }
}

impl fmt::Debug for PreparedAppend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedAppend")
            .field("log", &self.log)
            .field("seq", &self.seq)
            .field("record", &self.record.len())
            .field("staged", &self.staged.is_some())
            .finish()
    }
}

/// What [`ArtifactStore::remove_stale_temp_files`] or
/// [`MetadataStore::remove_stale_temp_files`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TempSweep {
    /// Temp files removed.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// What a store knows about one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobMeta {
    /// The blob's size in bytes.
    pub size: u64,
    /// When the blob was last written, where the store knows it.
    pub last_modified: Option<DateTime<Utc>>,
}

/// How bytes may move between a local file and the store: how
/// [`ArtifactStore::materialize`] places a blob at a destination, and how
/// [`ArtifactStore::import_file`] takes a source file in.
///
/// The rule for links: a stored blob must never change through a user's path.
/// A reflink is a private copy-on-write clone, so it is always allowed. A hard
/// link shares the inode, so it is made only to a read-only file (as DVC and
/// git-annex do): importing by hard link makes the *source file* read-only
/// (`0o444`), and a materialized hard link is the read-only blob itself. A process
/// that writes to it anyway (root ignores the mode; a writer that opened the file
/// before it was linked; anyone after `chmod`) changes the stored blob. That is
/// detected, never served: fetch and verify re-hash what they read and fail with
/// [`Error::Integrity`]. Tools that save by writing a new file and renaming it over
/// the old path (most editors and checkpoint writers) leave the blob untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LinkMode {
    /// Copy the bytes. Always safe: the copy is independent of the original.
    #[default]
    Copy,
    /// Reflink (copy-on-write clone) where the filesystem supports it (Btrfs, XFS,
    /// APFS, …), otherwise copy. Safe: writing to either side never changes the
    /// other.
    Reflink,
    /// Hard link where possible (same filesystem), otherwise copy. The two names
    /// then share one read-only file; see the rule above.
    HardLink,
}

/// How bytes were actually placed, by [`ArtifactStore::materialize`] or
/// [`ArtifactStore::import_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Materialized {
    /// The bytes were copied.
    Copied,
    /// The new file is a copy-on-write clone of the original.
    Reflinked,
    /// The new name is a hard link to the original file.
    HardLinked,
}

/// What [`ArtifactStore::materialize`] did: how the blob was placed, and the digest
/// and size of the bytes now at the destination, read back from it.
///
/// The store measures, the caller judges: a blob damaged in the store shows up as a
/// `digest` other than the one asked for, and the registry reports it as
/// [`Error::Integrity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placed {
    /// How the bytes got there.
    pub how: Materialized,
    /// The BLAKE3 digest of the bytes at the destination.
    pub digest: Digest,
    /// Their length.
    pub size: u64,
}

impl Placed {
    /// A placement of `size` bytes hashing to `digest`.
    pub fn new(how: Materialized, digest: Digest, size: u64) -> Self {
        Placed { how, digest, size }
    }
}

/// What [`ArtifactStore::import_file`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// The digest of the bytes stored (the file's digest, if it did not change).
    pub digest: Digest,
    /// The SHA-256 of the same bytes, if the store computed it from the same
    /// read as `digest` (every built-in store does). `None` makes the registry
    /// read the stored blob once more to compute it.
    pub sha256: Option<Sha256>,
    /// Their length.
    pub size: u64,
    /// How the bytes entered the store, or `None` if it had them already.
    pub placed: Option<Materialized>,
}

impl Imported {
    /// An import of `size` bytes hashing to `digest`, without their SHA-256.
    pub fn new(digest: Digest, size: u64, placed: Option<Materialized>) -> Self {
        Imported {
            digest,
            sha256: None,
            size,
            placed,
        }
    }

    /// The same import, with the SHA-256 of the bytes stored.
    pub fn with_sha256(self, sha256: Sha256) -> Self {
        Imported {
            sha256: Some(sha256),
            ..self
        }
    }
}

/// Content-addressed blobs, keyed by their BLAKE3 digest.
///
/// Contract, which the conformance suite checks for every implementation:
/// - [`put_stream`](Self::put_stream) and [`put_file`](Self::put_file) hash what they
///   store and publish it under `digest` only if it matches; on mismatch they fail
///   with [`Error::Integrity`] and nothing becomes visible. Putting a blob that
///   exists already succeeds and changes nothing. A put is atomic: readers see the
///   whole blob or none, and it is durable when it returns (for persistent stores);
/// - [`import_file`](Self::import_file) stores a file whose digest the caller does
///   not know: the digest it returns is that of the bytes it published, computed from
///   them (never trusted from elsewhere), and so is the SHA-256 it may return with
///   it (from the same read, so that the file is read once). If the source changed while it was read, it
///   fails with [`Error::SourceChanged`] (detection is by the file's size, times and
///   inode, see the implementations). With [`LinkMode::HardLink`] the store may share
///   the source's inode and make it read-only; see [`LinkMode`];
/// - [`materialize`](Self::materialize) reports the digest and size of what it wrote,
///   hashed from the destination;
/// - reads of a missing blob fail with [`Error::NotFound`]; deleting a missing blob
///   succeeds;
/// - reads return stored bytes as they are: verifying them is the caller's job
///   (a corrupted disk is reported by the registry, which re-hashes everything it
///   reads);
/// - [`location`](Self::location) names where a blob is or would be stored,
///   distinct for distinct digests, without touching the store;
/// - memory stays bounded whatever the blob size, except in the memory store.
///
/// Progress: for an operation that reports [`Progress`](crate::Progress), the
/// registry runs each file's store call with a byte counter set for the task,
/// which the built-in stores feed as they read, write or hash (this trait has
/// no parameter for it). A store of your own reports nothing, and each of its
/// files counts whole when it is done, so a progress bar moves per file rather
/// than within one; the default [`hash_stored`](Self::hash_stored) counts as it
/// hashes.
#[async_trait]
pub trait ArtifactStore: Send + Sync + fmt::Debug + 'static {
    /// Size and age of a blob, or `None` if it is not stored.
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>>;

    /// Stores the bytes of `data` under `digest`, checking that they hash to it.
    async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()>;

    /// Stores `bytes` under `digest` unless the blob is stored already, and
    /// says whether this call stored them (`false`: found stored). The bytes
    /// are checked against the digest as [`put_stream`](Self::put_stream)
    /// checks them.
    ///
    /// The default asks [`head`](Self::head), then calls `put_stream`. A store
    /// with a create-if-absent write can answer with that one write instead:
    /// the object store does for a blob it keeps whole in one PUT (one request
    /// where the default makes two or three).
    async fn put_bytes_if_absent(&self, digest: &Digest, bytes: Bytes) -> Result<bool> {
        put_bytes_asking_first(self, digest, bytes).await
    }

    /// Stores the local file at `path` under `digest`, checking that it hashes to it.
    async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()>;

    /// Stores the local file at `path` under the digest of its bytes, which the
    /// caller does not know yet, by copy or (where `mode` allows and the store can)
    /// by reflink or hard link, and returns what was stored.
    ///
    /// Stores that need the digest before they write (object storage keys blobs by
    /// it) hash the file first and then [`put_file`](Self::put_file) it; the local
    /// store copies and hashes in one pass. The built-in stores compute the
    /// SHA-256 of the bytes in the pass that computes their digest
    /// ([`Imported::with_sha256`]); a store that does not leaves the registry to
    /// read the stored blob again for it.
    async fn import_file(&self, path: &Path, mode: LinkMode) -> Result<Imported>;

    /// Reads a blob as a stream of chunks.
    async fn get(&self, digest: &Digest) -> Result<ByteStream>;

    /// Reads `range` of a blob. A range past the end is [`Error::InvalidInput`].
    async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes>;

    /// Reads a stored blob back and hashes it: the digest and length of the bytes
    /// stored under `digest`, which verification compares with `digest`
    /// ([`Registry::verify`](crate::Registry::verify),
    /// [`check`](crate::Registry::check)). [`Error::NotFound`] if it is not stored.
    ///
    /// The default hashes the [`get`](Self::get) stream as it arrives; the local
    /// store hashes its file on every core, like [`Digest::of_file`].
    async fn hash_stored(&self, digest: &Digest) -> Result<(Digest, u64)> {
        crate::hashing::hash_stream(self.get(digest).await?, crate::progress::meter()).await
    }

    /// Deletes a blob. Deleting a missing blob is not an error.
    async fn delete(&self, digest: &Digest) -> Result<()>;

    /// Lists every stored blob, in no particular order.
    async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>>;

    /// Removes the temp files that writers which died (a crash, a kill, a power
    /// cut) left behind: those not modified for `older_than`. A writer still
    /// filling one modifies it as it writes, so it is only touched if it stalled
    /// that long, and then its write fails without publishing anything. Stores
    /// that keep no temp files (the default) remove nothing.
    async fn remove_stale_temp_files(&self, older_than: Duration) -> Result<TempSweep> {
        let _ = older_than;
        Ok(TempSweep::default())
    }

    /// Step 1 of collecting packs, for stores that keep files as chunks in
    /// packs (the default, for stores that do not, does nothing): every pack
    /// whose share of bytes no stored file uses reaches `dead_percent` has its
    /// used chunks copied into new packs and the files that used it pointed at
    /// them, and is then *retired* (its chunks are no longer offered for
    /// deduplication); a pack no file uses is retired as it is. Retired packs
    /// stay readable until [`delete_retired_packs`](Self::delete_retired_packs).
    ///
    /// Called by [`Registry::gc`](crate::Registry::gc) after unreferenced blobs
    /// are deleted, inside its leases protocol; calling it directly is safe for
    /// the files (none changes), but only the registry knows when deleting the
    /// retired packs is.
    async fn repack(&self, dead_percent: u8, dry_run: bool) -> Result<PackCollection> {
        let _ = (dead_percent, dry_run);
        Ok(PackCollection::default())
    }

    /// Step 2 of collecting packs: deletes the packs retired before
    /// `retired_before` that no stored file uses. The default does nothing.
    ///
    /// Only safe while no writer can name a retired pack in a file it is about
    /// to store: [`Registry::gc`](crate::Registry::gc) calls it under a sweep
    /// lease that registrations wait for, and then check their files.
    async fn delete_retired_packs(
        &self,
        retired_before: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<PackCollection> {
        let _ = (retired_before, dry_run);
        Ok(PackCollection::default())
    }

    /// Writes the blob to the new file `dest` (which must not exist; its directory
    /// must), by link or copy as `mode` allows, durable when this returns, and
    /// reports the digest of the bytes now at `dest`. A missing blob is
    /// [`Error::NotFound`] and leaves no file.
    async fn materialize(&self, digest: &Digest, dest: &Path, mode: LinkMode) -> Result<Placed>;

    /// Where the blob `digest` is, or would be, stored, for messages that must point
    /// a person at it: a file path, an object URL (or the key and the store). It
    /// changes nothing and sends no request; the local store may `stat` a file
    /// to tell which of its two blob layouts holds the blob.
    fn location(&self, digest: &Digest) -> String;
}

/// Conveniences over [`ArtifactStore`], for every implementation.
#[async_trait]
pub trait ArtifactStoreExt: ArtifactStore {
    /// Whether a blob is stored.
    async fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.head(digest).await?.is_some())
    }

    /// Stores `bytes` under their own digest and returns it. More than 64 KiB
    /// are hashed on tokio's blocking pool, not on the calling task's worker.
    async fn put_bytes(&self, bytes: Bytes) -> Result<Digest> {
        let digest = if bytes.len() <= 64 << 10 {
            Digest::of(&bytes)
        } else {
            let b = bytes.clone();
            crate::offload::offload(move || Digest::of(&b)).await?
        };
        let one: ByteStream = Box::pin(stream::once(async move { Ok(bytes) }));
        self.put_stream(&digest, one).await?;
        Ok(digest)
    }
}

impl<T: ArtifactStore + ?Sized> ArtifactStoreExt for T {}

/// Checks a record number against the [`MetadataStore`] contract (numbered from 1).
/// [`ArtifactStore::put_bytes_if_absent`] as the trait's default does it:
/// [`head`](ArtifactStore::head), then, if the blob is absent,
/// [`put_stream`](ArtifactStore::put_stream) of the bytes as one chunk. For
/// the stores that override it, the cases their one write does not cover
/// (packed files).
pub(crate) async fn put_bytes_asking_first<S: ArtifactStore + ?Sized>(
    store: &S,
    digest: &Digest,
    bytes: Bytes,
) -> Result<bool> {
    if store.head(digest).await?.is_some() {
        return Ok(false);
    }
    let one: ByteStream = Box::pin(stream::once(async move { Ok(bytes) }));
    store.put_stream(digest, one).await?;
    Ok(true)
}

pub(crate) fn check_seq(log: &str, seq: u64) -> Result<()> {
    if seq == 0 {
        return Err(Error::invalid_input(
            format!("record 0 of log '{log}'"),
            "records are numbered from 1",
        ));
    }
    Ok(())
}

/// Checks a log key against the [`MetadataStore`] contract.
pub(crate) fn check_log_key(log: &str) -> Result<()> {
    check_key("log key", log)
}

/// Checks a log key and a checkpoint part's name against the
/// [`MetadataStore`] contract (both follow the log key rules).
pub(crate) fn check_part_key(log: &str, name: &str) -> Result<()> {
    check_key("log key", log)?;
    check_key("checkpoint part name", name)
}

/// Checks a lease key against the [`MetadataStore`] contract (the rules of log keys).
pub(crate) fn check_lease_key(key: &str) -> Result<()> {
    check_key("lease key", key)
}

fn check_key(kind: &'static str, log: &str) -> Result<()> {
    let reason = if log.is_empty() {
        "is empty"
    } else if log.len() > 255 {
        "is longer than 255 bytes"
    } else if log == "." || log == ".." {
        "is a relative path component"
    } else if log.contains(['/', '\\', '\0']) {
        "contains '/', '\\' or NUL"
    } else {
        return Ok(());
    };
    Err(Error::invalid_name(kind, log, reason))
}

macro_rules! forward_metadata_store {
    ($ty:ty) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: MetadataStore + ?Sized> MetadataStore for $ty {
            async fn append(&self, log: &str, seq: u64, record: Bytes) -> Result<()> {
                (**self).append(log, seq, record).await
            }
            async fn prepare_append(
                &self,
                log: &str,
                seq: u64,
                record: Bytes,
            ) -> Result<PreparedAppend> {
                (**self).prepare_append(log, seq, record).await
            }
            async fn publish_append(&self, prepared: PreparedAppend) -> Result<()> {
                (**self).publish_append(prepared).await
            }
            async fn read_after(
                &self,
                log: &str,
                after: u64,
                limit: usize,
            ) -> Result<Vec<LogRecord>> {
                (**self).read_after(log, after, limit).await
            }
            async fn list_logs(&self) -> Result<Vec<String>> {
                (**self).list_logs().await
            }
            async fn put_checkpoint(&self, log: &str, seq: u64, bytes: Bytes) -> Result<()> {
                (**self).put_checkpoint(log, seq, bytes).await
            }
            async fn latest_checkpoint(&self, log: &str) -> Result<Option<Checkpoint>> {
                (**self).latest_checkpoint(log).await
            }
            async fn checkpoint_at_or_before(
                &self,
                log: &str,
                at_most: u64,
            ) -> Result<Option<Checkpoint>> {
                (**self).checkpoint_at_or_before(log, at_most).await
            }
            fn keeps_checkpoint_parts(&self) -> bool {
                (**self).keeps_checkpoint_parts()
            }
            async fn put_checkpoint_part(&self, log: &str, name: &str, bytes: Bytes) -> Result<()> {
                (**self).put_checkpoint_part(log, name, bytes).await
            }
            async fn get_checkpoint_part(&self, log: &str, name: &str) -> Result<Option<Bytes>> {
                (**self).get_checkpoint_part(log, name).await
            }
            async fn list_checkpoint_parts(&self, log: &str) -> Result<Vec<CheckpointPart>> {
                (**self).list_checkpoint_parts(log).await
            }
            async fn delete_checkpoint_part(&self, log: &str, name: &str) -> Result<()> {
                (**self).delete_checkpoint_part(log, name).await
            }
            async fn put_lease(&self, key: &str, bytes: Bytes) -> Result<()> {
                (**self).put_lease(key, bytes).await
            }
            async fn get_lease(&self, key: &str) -> Result<Option<Bytes>> {
                (**self).get_lease(key).await
            }
            async fn list_leases(&self) -> Result<Vec<String>> {
                (**self).list_leases().await
            }
            async fn delete_lease(&self, key: &str) -> Result<()> {
                (**self).delete_lease(key).await
            }
            async fn remove_stale_temp_files(&self, older_than: Duration) -> Result<TempSweep> {
                (**self).remove_stale_temp_files(older_than).await
            }
            fn probe(&self, log: &str, seq: u64) -> Option<Result<bool>> {
                (**self).probe(log, seq)
            }
            fn location(&self, log: &str, item: MetadataItem) -> String {
                (**self).location(log, item)
            }
        }
    };
}

macro_rules! forward_artifact_store {
    ($ty:ty) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: ArtifactStore + ?Sized> ArtifactStore for $ty {
            async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
                (**self).head(digest).await
            }
            async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
                (**self).put_stream(digest, data).await
            }
            async fn put_bytes_if_absent(&self, digest: &Digest, bytes: Bytes) -> Result<bool> {
                (**self).put_bytes_if_absent(digest, bytes).await
            }
            async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()> {
                (**self).put_file(digest, path).await
            }
            async fn import_file(&self, path: &Path, mode: LinkMode) -> Result<Imported> {
                (**self).import_file(path, mode).await
            }
            async fn get(&self, digest: &Digest) -> Result<ByteStream> {
                (**self).get(digest).await
            }
            async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes> {
                (**self).get_range(digest, range).await
            }
            async fn hash_stored(&self, digest: &Digest) -> Result<(Digest, u64)> {
                (**self).hash_stored(digest).await
            }
            async fn delete(&self, digest: &Digest) -> Result<()> {
                (**self).delete(digest).await
            }
            async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
                (**self).list().await
            }
            async fn remove_stale_temp_files(&self, older_than: Duration) -> Result<TempSweep> {
                (**self).remove_stale_temp_files(older_than).await
            }
            async fn materialize(
                &self,
                digest: &Digest,
                dest: &Path,
                mode: LinkMode,
            ) -> Result<Placed> {
                (**self).materialize(digest, dest, mode).await
            }
            async fn repack(&self, dead_percent: u8, dry_run: bool) -> Result<PackCollection> {
                (**self).repack(dead_percent, dry_run).await
            }
            async fn delete_retired_packs(
                &self,
                retired_before: DateTime<Utc>,
                dry_run: bool,
            ) -> Result<PackCollection> {
                (**self).delete_retired_packs(retired_before, dry_run).await
            }
            fn location(&self, digest: &Digest) -> String {
                (**self).location(digest)
            }
        }
    };
}

forward_metadata_store!(Arc<T>);
forward_metadata_store!(Box<T>);
forward_artifact_store!(Arc<T>);
forward_artifact_store!(Box<T>);
