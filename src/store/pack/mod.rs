//! Packs, pack indexes and recipes: chunk-level deduplication below the
//! [`ArtifactStore`](super::ArtifactStore) contract.
//!
//! A file is still named by BLAKE3 of its bytes. A store with packing on cuts a
//! large file into chunks (`chunking::chunk_file`), looks each chunk up in the
//! chunk index, writes only the chunks it has not stored yet into a new
//! *pack* (chunks back to back, about [`PackOptions::pack_size`] bytes) with an
//! *index* beside it (each chunk's hash, offset and length; the pack is named by
//! a hash of that list, `PackIndex::new`), and records the file as a *recipe*: its size and the
//! ordered terms `(pack, offset, len)` that rebuild it, adjacent chunks of one
//! pack merged into one term. See docs/design.md, "Packs".
//!
//! Write order, which the crash argument rests on: a pack is durable before its
//! index, and the index before any recipe that uses it, and the recipe before
//! the put returns (before the manifest and the event that name the file). So
//! an index never names a missing pack, and a recipe never a missing chunk; a
//! crash leaves at most packs without index or packs no recipe uses, which are
//! garbage, never a visible file.
//!
//! Everything here is generic over `PackBackend`, a handful of blocking calls
//! on immutable objects, so the object-store backend can reuse it; the local
//! store implements it on its directory tree.

use std::collections::HashMap;
use std::io::{self, Write};
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Sha256};
use crate::error::{Error, Result};
use crate::progress::{Meter, MeterExt};

use super::layout::{PACKS_DIR, pack_index_key, pack_key, recipe_key};

use super::chunking;

mod chunk_index;
pub(crate) mod repack;

pub(crate) use chunk_index::SharedIndex;
pub use repack::PackCollection;

/// Format version of recipes and retirement records.
const FORMAT: u32 = 1;

/// Format version of pack indexes written: 2, the pack named by its chunk list
/// ([`PackIndex::new`]). Format 1 (unreleased builds of 2026-12, the pack
/// named by BLAKE3 of its bytes) is still read; its name cannot be checked
/// against the index.
const INDEX_FORMAT: u32 = 2;

/// The derive-key context of pack names (BLAKE3's domain separation: no pack
/// name is the hash of any file's bytes).
const PACK_NAME_CONTEXT: &str = "modelreg 2026-12-05 pack name from its chunk list";

/// How a store packs files. Off unless given to a store (e.g.
/// [`LocalArtifactOptions::packed`](super::local::LocalArtifactOptions::packed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PackOptions {
    /// Files smaller than this stay whole blobs (default 4 MiB): a handful of
    /// chunks saves little, and configs and tokenizers are read whole anyway.
    pub min_file_size: u64,
    /// A pack is closed once it holds this many bytes (default 32 MiB; the
    /// setter keeps it within 1 MiB..=1 GiB, and chunks past 4 GiB of a pack
    /// are not deduplicated against).
    pub pack_size: u64,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            min_file_size: 4 << 20,
            pack_size: 32 << 20,
        }
    }
}

impl PackOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files smaller than `bytes` stay whole blobs.
    pub fn min_file_size(mut self, bytes: u64) -> Self {
        self.min_file_size = bytes;
        self
    }

    /// Packs are closed at `bytes` (at least 1 MiB, at most 1 GiB).
    pub fn pack_size(mut self, bytes: u64) -> Self {
        self.pack_size = bytes.clamp(1 << 20, 1 << 30);
        self
    }
}

/// Blocking access to immutable objects, keyed by [`layout`](super::layout)
/// paths relative to a store's root. The local store implements it on files;
/// an object store would on objects.
pub(crate) trait PackBackend: Send + Sync {
    /// An object being written, before it has a name.
    type Staged: Write + Send;
    /// Starts a new object.
    fn stage(&self) -> io::Result<Self::Staged>;
    /// Makes a staged object's bytes durable ahead of [`publish`](Self::publish)
    /// (which then need not), e.g. on another thread while the next object is
    /// written; nothing is written to it afterwards. `key` is the name
    /// `publish` will give it: a backend whose objects cannot be renamed (the
    /// object store) uploads it there now, so a file's packs are not all held
    /// until its end (an object uploaded for a file that turns out stored is
    /// garbage, which gc retires). The default does nothing, for backends
    /// whose `publish` is one step.
    fn sync_staged(&self, staged: &mut Self::Staged, key: &str) -> io::Result<()> {
        let _ = (staged, key);
        Ok(())
    }
    /// Makes a staged object durable under `key`. An existing `key` (same name,
    /// same bytes: keys are content addresses) is success.
    fn publish(&self, staged: Self::Staged, key: &str) -> io::Result<()>;
    /// Publishes several staged objects (as [`publish`](Self::publish) each),
    /// all durable when it returns; a backend may batch what they share (the
    /// local store syncs their directory once).
    fn publish_all(&self, objects: Vec<(Self::Staged, String)>) -> io::Result<()> {
        for (staged, key) in objects {
            self.publish(staged, &key)?;
        }
        Ok(())
    }
    /// Writes the small object `key` durably (create-only, as `publish`).
    fn put_small(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let mut staged = self.stage()?;
        staged.write_all(bytes)?;
        self.publish(staged, key)
    }
    /// Replaces the small object `key` atomically (readers see the old bytes
    /// or the new ones), durably. Only repacking rewrites an object (a recipe,
    /// whose name is its file's BLAKE3 and stays); a backend that cannot
    /// replace says so and its packs are not repacked.
    fn replace_small(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let _ = (key, bytes);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this store does not replace objects",
        ))
    }
    /// Reads a whole small object; `None` if it does not exist.
    fn get_small(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    /// Reads several small objects (as [`get_small`](Self::get_small) each),
    /// the answers in the order of `keys`. The default reads them one after
    /// the other; a backend where a read is a round trip (the object store)
    /// overlaps them.
    fn get_small_many(&self, keys: &[String]) -> Vec<io::Result<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get_small(k)).collect()
    }
    /// Fills `buf` from `key` at `offset`.
    fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The names directly under the prefix `dir` (no recursion): objects and
    /// the next level of prefixes (directories).
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Every object below the prefix `dir`, at any depth, as paths relative to
    /// it (`ab/cd/<hex>`), in no particular order. A missing `dir` is empty.
    fn list_tree(&self, dir: &str) -> io::Result<Vec<String>>;
    /// The length of the object `key`; `None` if it does not exist.
    fn size(&self, key: &str) -> io::Result<Option<u64>>;
    /// Removes `key`; a missing one is not an error.
    fn delete(&self, key: &str) -> io::Result<()>;
    /// Whether `key` exists.
    fn exists(&self, key: &str) -> io::Result<bool>;
    /// Where `key` is, for messages (a path or URL).
    fn location(&self, key: &str) -> String;
}

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

/// A pack's index: every chunk in the pack, in pack order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackIndex {
    format: u32,
    /// The pack's name: [`pack_name`] of the chunks (format 2), or BLAKE3 of
    /// the pack's bytes (format 1).
    pub(crate) pack: Digest,
    /// The pack's length.
    pub(crate) size: u64,
    /// `(hash, offset, len)` of each chunk.
    pub(crate) chunks: Vec<(Digest, u64, u32)>,
}

/// One run of a file's bytes in a pack: `len` bytes at `offset` of pack
/// `packs[pack]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Term(pub(crate) u32, pub(crate) u64, pub(crate) u64);

/// How to rebuild a packed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Recipe {
    format: u32,
    /// The file's BLAKE3 (its name).
    pub(crate) digest: Digest,
    /// The file's length: the sum of the terms' lengths.
    pub(crate) size: u64,
    /// The packs the terms refer to, each once.
    pub(crate) packs: Vec<Digest>,
    /// The file's bytes, in order.
    pub(crate) terms: Vec<Term>,
}

/// Decodes a JSON object whose `format` is one of `1..=newest`.
fn decode<T: serde::de::DeserializeOwned>(
    what: impl Fn() -> String,
    bytes: &[u8],
    newest: u32,
) -> Result<T> {
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let version: Version =
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what(), e.to_string()))?;
    if !(1..=newest).contains(&version.format) {
        return Err(Error::UnsupportedFormat {
            record: what(),
            found: version.format,
            supported: newest,
            location: None,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what(), e.to_string()))
}

impl Recipe {
    /// Decodes and checks a recipe read from `key`.
    pub(crate) fn decode(bytes: &[u8], expected: &Digest, location: String) -> Result<Recipe> {
        let what = || format!("recipe of {expected}");
        let recipe: Recipe = decode(what, bytes, FORMAT).map_err(|e| {
            let location = location.clone();
            e.at(move || location)
        })?;
        let sum: Option<u64> = recipe
            .terms
            .iter()
            .try_fold(0u64, |a, t| a.checked_add(t.2));
        let bad = if recipe.digest != *expected {
            Some("names another file".to_owned())
        } else if sum != Some(recipe.size) {
            Some("terms do not add up to the size".to_owned())
        } else if recipe
            .terms
            .iter()
            .any(|t| t.0 as usize >= recipe.packs.len())
        {
            Some("a term names a pack that is not listed".to_owned())
        } else {
            None
        };
        match bad {
            Some(reason) => Err(Error::Corrupt {
                record: what(),
                reason,
                location: Some(location),
            }),
            None => Ok(recipe),
        }
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .unwrap_or_else(|e| unreachable!("plain data always serializes: {e}"))
    }
}

/// The name of a pack holding `chunks` (`(hash, offset, len)`, in pack
/// order) in `size` bytes: BLAKE3, in its own derive-key domain, of the
/// size and of each chunk's hash, offset and length (little-endian).
///
/// The chunk hashes commit to the pack's bytes as a hash of the bytes would
/// (a pack is its chunks back to back, each chunk named by BLAKE3 of its
/// bytes), so a writer need not hash every byte a second time as it packs it,
/// and an index is checked against its pack's name without reading the pack.
/// The same chunks in the same order make the same name, whoever packs them.
fn pack_name(chunks: &[(Digest, u64, u32)], size: u64) -> Digest {
    let mut hasher = blake3::Hasher::new_derive_key(PACK_NAME_CONTEXT);
    hasher.update(&size.to_le_bytes());
    for (hash, offset, len) in chunks {
        hasher.update(hash.as_bytes());
        hasher.update(&offset.to_le_bytes());
        hasher.update(&len.to_le_bytes());
    }
    Digest::from_bytes(*hasher.finalize().as_bytes())
}

impl PackIndex {
    /// The index of a pack of `chunks` (`(hash, offset, len)`, in pack order,
    /// back to back) in `size` bytes, naming the pack by them.
    pub(crate) fn new(chunks: Vec<(Digest, u64, u32)>, size: u64) -> PackIndex {
        PackIndex {
            format: INDEX_FORMAT,
            pack: pack_name(&chunks, size),
            size,
            chunks,
        }
    }

    fn decode(bytes: &[u8], pack: &Digest, location: String) -> Result<PackIndex> {
        let what = || format!("index of pack {pack}");
        let index: PackIndex = decode(what, bytes, INDEX_FORMAT).map_err(|e| {
            let location = location.clone();
            e.at(move || location)
        })?;
        let bad = if index.pack != *pack {
            Some("names another pack")
        } else if index.format >= 2 && pack_name(&index.chunks, index.size) != *pack {
            Some("its chunk list is not the pack's (the name is a hash of it)")
        } else {
            None
        };
        match bad {
            Some(reason) => Err(Error::Corrupt {
                record: what(),
                reason: reason.into(),
                location: Some(location),
            }),
            None => Ok(index),
        }
    }
}

/// Reads the index of `pack`.
pub(crate) fn read_index<B: PackBackend>(backend: &B, pack: &Digest) -> Result<Option<PackIndex>> {
    let key = pack_index_key(pack);
    let bytes = backend
        .get_small(&key)
        .map_err(|e| storage(backend, "read pack index", &key, e))?;
    bytes
        .map(|b| PackIndex::decode(&b, pack, backend.location(&key)))
        .transpose()
}

/// Reads the recipe of `digest`, if the file is packed.
pub(crate) fn read_recipe<B: PackBackend>(backend: &B, digest: &Digest) -> Result<Option<Recipe>> {
    let key = recipe_key(digest);
    let bytes = backend
        .get_small(&key)
        .map_err(|e| storage(backend, "read recipe", &key, e))?;
    bytes
        .map(|b| Recipe::decode(&b, digest, backend.location(&key)))
        .transpose()
}

fn storage<B: PackBackend>(backend: &B, op: &'static str, key: &str, e: io::Error) -> Error {
    Error::storage(backend.location(""), op, key, e)
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// What [`store_file`] stored.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// BLAKE3 of the file's bytes as read.
    pub(crate) digest: Digest,
    /// SHA-256 of the same bytes.
    pub(crate) sha256: Sha256,
    /// Their length.
    pub(crate) size: u64,
    /// Bytes written into new packs (chunks not stored before).
    pub(crate) new_bytes: u64,
    /// Whether the recipe was written (false: it existed already).
    pub(crate) written: bool,
}

/// A pack being filled.
struct OpenPack<S> {
    staged: S,
    chunks: Vec<(Digest, u64, u32)>,
    size: u64,
    /// Its slot in the recipe's pack table.
    slot: u32,
}

/// Bytes handed to the SHA-256 thread at a time.
const SHA_BATCH: usize = 4 << 20;

/// Batches of bytes with the SHA-256 thread at most: one being hashed, one
/// queued, one being filled.
const SHA_BUFFERS: usize = 3;

/// Chunks at least this long are hashed into the file's BLAKE3 on every core;
/// shorter ones on the calling thread.
const PARALLEL_HASH: usize = 256 << 10;

fn update(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() >= PARALLEL_HASH {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
}

/// Cuts the file at `path` (open as `file`) into chunks, stores the chunks the
/// store lacks into new packs, and writes the file's recipe, in the order the
/// module docs give.
///
/// One read of the file does everything: each chunk's bytes, as the chunker
/// reads them, are hashed into the file's BLAKE3 (its name), handed to a
/// thread that feeds SHA-256, and, if the chunk is new, appended to the open
/// pack (whose name comes from its chunks' hashes, [`PackIndex::new`]: the
/// chunker hashed them already). A full pack is fsynced on another thread while the
/// file is still read ([`PackBackend::sync_staged`]). Packs are named
/// (published), then their indexes written, then the recipe, only once the
/// file's digest is known and wanted: a file that turns out to be stored
/// already (`known`, or a recipe under its name), or that does not hash to
/// `expected` ([`Error::Integrity`]), leaves nothing behind. The digest is of the bytes read, which are the
/// bytes stored: a source that changes meanwhile is the caller's to notice
/// (its metadata and length).
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_file<B: PackBackend>(
    backend: &B,
    index: &SharedIndex,
    options: &PackOptions,
    path: &std::path::Path,
    file: &std::fs::File,
    expected: Option<&Digest>,
    known: &dyn Fn(&Digest) -> Result<bool>,
    meter: Option<&Meter>,
) -> Result<Stored> {
    use sha2::Digest as _;
    use std::sync::mpsc;

    index.with(|i| i.refresh(backend))?;
    let (to_sha, sha_batches) = mpsc::sync_channel::<Vec<u8>>(1);
    let (sha_done, done_batches) = mpsc::channel::<Vec<u8>>();
    let (to_syncer, to_sync) = mpsc::channel::<(B::Staged, PackIndex)>();
    std::thread::scope(|scope| {
        let sha_thread = scope.spawn(move || {
            let mut sha = sha2::Sha256::new();
            for batch in sha_batches {
                sha.update(&batch);
                // The reader stops taking batches back only when it is done.
                let _ = sha_done.send(batch);
            }
            sha
        });
        // A full pack's fsync, and its index's writing and fsync, run here
        // while the file is read; both come back, synced, to be named once
        // the file is known to be new.
        /// Synced packs and synced indexes, each with its key.
        type Synced<S> = (Vec<(S, String)>, Vec<(S, String)>);
        let syncer = scope.spawn(move || -> Result<Synced<B::Staged>> {
            let (mut packs, mut indexes) = (Vec::new(), Vec::new());
            for (mut staged, pack_index) in to_sync {
                let name = pack_index.pack;
                let key = pack_key(&name);
                backend
                    .sync_staged(&mut staged, &key)
                    .map_err(|e| storage(backend, "write pack", &key, e))?;
                packs.push((staged, key));
                let key = pack_index_key(&name);
                let bytes = serde_json::to_vec(&pack_index)
                    .unwrap_or_else(|e| unreachable!("plain data always serializes: {e}"));
                let index_err = |e| storage(backend, "write pack index", &key, e);
                let mut staged = backend.stage().map_err(index_err)?;
                staged.write_all(&bytes).map_err(index_err)?;
                backend.sync_staged(&mut staged, &key).map_err(index_err)?;
                indexes.push((staged, key));
            }
            Ok((packs, indexes))
        });
        let mut file_hash = blake3::Hasher::new();
        let mut packs: Vec<Digest> = Vec::new();
        let mut terms: Vec<Term> = Vec::new();
        let mut open: Option<OpenPack<B::Staged>> = None;
        let mut pack_slots: HashMap<Digest, u32> = HashMap::new();
        // This file's new chunks, in the packs it wrote: repeats within the
        // file, before any index names them.
        let mut mine: HashMap<Digest, (u32, u64, u32)> = HashMap::new();
        let mut new_packs: Vec<PackIndex> = Vec::new();
        let (mut new_bytes, mut size) = (0u64, 0u64);
        // Packs the chunk index offered, and whether they are there (a
        // collection may have deleted one after its index was read).
        let mut present: HashMap<Digest, bool> = HashMap::new();
        let mut batch: Vec<u8> = Vec::with_capacity(SHA_BATCH);
        let mut allocated = 1;
        let sha_stopped = || {
            let e = io::Error::other("the SHA-256 thread stopped");
            Error::io(path, e)
        };
        let push = |terms: &mut Vec<Term>, t: Term| match terms.last_mut() {
            Some(last) if last.0 == t.0 && last.1 + last.2 == t.1 => last.2 += t.2,
            _ => terms.push(t),
        };
        let close = move |p: OpenPack<B::Staged>,
                          packs: &mut Vec<Digest>,
                          new_packs: &mut Vec<PackIndex>|
              -> Result<()> {
            let pack_index = PackIndex::new(p.chunks, p.size);
            packs[p.slot as usize] = pack_index.pack;
            new_packs.push(pack_index.clone());
            let stopped = || io::Error::other("the syncing thread stopped");
            to_syncer
                .send((p.staged, pack_index))
                .map_err(|_| storage(backend, "write pack", PACKS_DIR, stopped()))
        };
        let params = chunking::ChunkParams::default();
        let read = chunking::chunk_open_file_with(file, path, &params, |chunk, bytes| {
            if chunk.offset != size {
                return Err(Error::SourceChanged {
                    path: path.to_owned(),
                });
            }
            update(&mut file_hash, bytes);
            // To SHA-256, in batches, on the other thread.
            let mut rest = bytes;
            while !rest.is_empty() {
                let n = rest.len().min(SHA_BATCH - batch.len());
                batch.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if batch.len() == SHA_BATCH {
                    let next = match done_batches.try_recv() {
                        Ok(buf) => Ok(buf),
                        Err(_) if allocated < SHA_BUFFERS => {
                            allocated += 1;
                            Ok(Vec::with_capacity(SHA_BATCH))
                        }
                        Err(_) => done_batches.recv(),
                    };
                    let mut next = next.map_err(|_| sha_stopped())?;
                    next.clear();
                    to_sha
                        .send(std::mem::replace(&mut batch, next))
                        .map_err(|_| sha_stopped())?;
                }
            }
            meter.add(bytes.len() as u64);
            size += u64::from(chunk.len);
            // Stored by this file already?
            if let Some(&(slot, offset, len)) = mine.get(&chunk.hash) {
                push(&mut terms, Term(slot, offset, u64::from(len)));
                return Ok(());
            }
            if let Some((pack, loc)) = index.with(|i| i.lookup(&chunk.hash))
                && loc.len == chunk.len
                && repack::pack_present(backend, &mut present, &pack)?
            {
                let slot = slot_of(&mut packs, &mut pack_slots, pack);
                push(
                    &mut terms,
                    Term(slot, u64::from(loc.offset), u64::from(loc.len)),
                );
                return Ok(());
            }
            // A new chunk.
            if open.is_none() {
                let staged = backend
                    .stage()
                    .map_err(|e| storage(backend, "write pack", PACKS_DIR, e))?;
                let slot = packs.len() as u32;
                packs.push(Digest::from_bytes([0; 32]));
                open = Some(OpenPack {
                    staged,
                    chunks: Vec::new(),
                    size: 0,
                    slot,
                });
            }
            let p = open.as_mut().unwrap_or_else(|| unreachable!());
            p.staged
                .write_all(bytes)
                .map_err(|e| storage(backend, "write pack", PACKS_DIR, e))?;
            let offset = p.size;
            p.chunks.push((chunk.hash, offset, chunk.len));
            mine.insert(chunk.hash, (p.slot, offset, chunk.len));
            p.size += u64::from(chunk.len);
            new_bytes += u64::from(chunk.len);
            push(&mut terms, Term(p.slot, offset, u64::from(chunk.len)));
            if p.size >= options.pack_size
                && let Some(p) = open.take()
            {
                close(p, &mut packs, &mut new_packs)?;
            }
            Ok(())
        });
        let closed = match (read, open.take()) {
            (Ok(_), Some(p)) => close(p, &mut packs, &mut new_packs),
            (read, _) => read.map(drop),
        };
        // The last batch to SHA-256, then both threads' ends.
        let fed = if closed.is_ok() && !batch.is_empty() {
            to_sha.send(batch).map_err(|_| sha_stopped())
        } else {
            Ok(())
        };
        drop((to_sha, close));
        let synced = syncer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let sha = sha_thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // The syncer's own failure first: it makes the reader's sends fail.
        let synced = synced?;
        closed.and(fed)?;
        let digest: Digest = Digest::from_bytes(*file_hash.finalize().as_bytes());
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(Error::Integrity {
                what: format!("file {} put as {expected}", path.display()),
                expected: *expected,
                actual: digest,
                location: None,
            });
        }
        let sha256 = Sha256::from_bytes(sha.finalize().into());
        let key = recipe_key(&digest);
        let existing = backend
            .exists(&key)
            .map_err(|e| storage(backend, "write recipe", &key, e))?;
        // A recipe naming a pack a collection deleted (written by a writer
        // whose chunk index predated the pack's retirement) is not a stored
        // file: this one replaces it.
        let dangling = existing
            && match read_recipe(backend, &digest) {
                Ok(Some(old)) => !repack::recipe_intact(backend, &old)
                    .map_err(|e| storage(backend, "write recipe", &key, e))?,
                Ok(None) | Err(_) => true,
            };
        let exists = (existing && !dangling) || known(&digest)?;
        if exists {
            // Its new packs (if any) are dropped unnamed.
            return Ok(Stored {
                digest,
                sha256,
                size,
                new_bytes: 0,
                written: false,
            });
        }
        // The packs' and indexes' bytes are durable: the packs' names, then
        // the indexes', then the recipe that uses them.
        let (synced_packs, synced_indexes) = synced;
        backend
            .publish_all(synced_packs)
            .map_err(|e| storage(backend, "write pack", PACKS_DIR, e))?;
        backend
            .publish_all(synced_indexes)
            .map_err(|e| storage(backend, "write pack index", PACKS_DIR, e))?;
        index.with(|i| new_packs.iter().for_each(|p| i.add(p)));
        let recipe = Recipe {
            format: FORMAT,
            digest,
            size,
            packs,
            terms,
        };
        if dangling {
            backend.replace_small(&key, &recipe.encode())
        } else {
            backend.put_small(&key, &recipe.encode())
        }
        .map_err(|e| storage(backend, "write recipe", &key, e))?;
        Ok(Stored {
            digest,
            sha256,
            size,
            new_bytes,
            written: true,
        })
    })
}

fn slot_of(packs: &mut Vec<Digest>, slots: &mut HashMap<Digest, u32>, pack: Digest) -> u32 {
    *slots.entry(pack).or_insert_with(|| {
        packs.push(pack);
        (packs.len() - 1) as u32
    })
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// The pieces of a recipe that cover `range` of the file: `(pack, offset in
/// pack, len)`, in file order. Terms are already merged where adjacent, so
/// each piece is one sequential read.
pub(crate) fn plan(recipe: &Recipe, range: Range<u64>) -> Vec<(Digest, u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for t in &recipe.terms {
        let (start, end) = (at, at + t.2);
        at = end;
        if end <= range.start || start >= range.end {
            continue;
        }
        let from = range.start.max(start);
        let to = range.end.min(end);
        out.push((recipe.packs[t.0 as usize], t.1 + (from - start), to - from));
    }
    out
}

/// Reads `range` of a packed file.
pub(crate) fn read_range<B: PackBackend>(
    backend: &B,
    recipe: &Recipe,
    range: Range<u64>,
) -> Result<Vec<u8>> {
    let len = usize::try_from(range.end - range.start).map_err(|_| {
        Error::invalid_input(
            format!("range {range:?} of blob {}", recipe.digest),
            "larger than this platform's address space",
        )
    })?;
    let mut out = vec![0; len];
    let mut at = 0usize;
    for (pack, offset, len) in plan(recipe, range) {
        let key = pack_key(&pack);
        let piece = &mut out[at..at + len as usize];
        backend
            .read_at(&key, offset, piece)
            .map_err(|e| missing_pack(backend, recipe, &key, e))?;
        at += len as usize;
    }
    Ok(out)
}

/// The error for a pack read that failed: a missing pack is a damaged store
/// (the recipe names it), reported as [`Error::Corrupt`] of the file's recipe.
pub(crate) fn missing_pack<B: PackBackend>(
    backend: &B,
    recipe: &Recipe,
    key: &str,
    e: io::Error,
) -> Error {
    if matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
    ) {
        Error::Corrupt {
            record: format!("recipe of {}", recipe.digest),
            reason: format!("pack data it names is missing: {e}"),
            location: Some(backend.location(key)),
        }
    } else {
        storage(backend, "read pack", key, e)
    }
}

/// Hashes a packed file as stored, `piece` bytes per read.
pub(crate) fn hash_recipe<B: PackBackend>(
    backend: &B,
    recipe: &Recipe,
    meter: Option<&Meter>,
) -> Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = Vec::new();
    const PIECE: u64 = 4 << 20;
    let mut size = 0;
    for (pack, mut offset, mut len) in plan(recipe, 0..recipe.size) {
        let key = pack_key(&pack);
        while len > 0 {
            let n = len.min(PIECE);
            buf.resize(n as usize, 0);
            backend
                .read_at(&key, offset, &mut buf)
                .map_err(|e| missing_pack(backend, recipe, &key, e))?;
            hasher.update(&buf);
            meter.add(n);
            (offset, len, size) = (offset + n, len - n, size + n);
        }
    }
    Ok((Digest::from_bytes(*hasher.finalize().as_bytes()), size))
}

/// Finds the damage that makes a packed file hash wrong: re-hashes the chunks
/// of every pack the recipe uses, within the ranges it uses, against the
/// pack's index. The error names the first damaged pack (or its missing
/// index) as [`Error::Integrity`] of the chunk; `None` if every chunk matches
/// (then the recipe itself is wrong).
pub(crate) fn locate_damage<B: PackBackend>(backend: &B, recipe: &Recipe) -> Option<Error> {
    for (slot, pack) in recipe.packs.iter().enumerate() {
        let used: Vec<(u64, u64)> = recipe
            .terms
            .iter()
            .filter(|t| t.0 as usize == slot)
            .map(|t| (t.1, t.1 + t.2))
            .collect();
        let index = match read_index(backend, pack) {
            Ok(Some(index)) => index,
            Ok(None) => {
                return Some(Error::Corrupt {
                    record: format!("pack {pack}"),
                    reason: "its index is missing".into(),
                    location: Some(backend.location(&pack_index_key(pack))),
                });
            }
            Err(e) => return Some(e),
        };
        let key = pack_key(pack);
        let mut buf = Vec::new();
        for (hash, offset, len) in &index.chunks {
            let end = offset + u64::from(*len);
            if !used.iter().any(|(s, e)| *offset < *e && end > *s) {
                continue;
            }
            buf.resize(*len as usize, 0);
            if let Err(e) = backend.read_at(&key, *offset, &mut buf) {
                return Some(missing_pack(backend, recipe, &key, e));
            }
            let actual = Digest::of(&buf);
            if actual != *hash {
                return Some(Error::Integrity {
                    what: format!(
                        "chunk at bytes {offset}..{end} of pack {pack}, used by file {}",
                        recipe.digest
                    ),
                    expected: *hash,
                    actual,
                    location: Some(backend.location(&key)),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(terms: &[(u32, u64, u64)]) -> Recipe {
        Recipe {
            format: FORMAT,
            digest: Digest::of(b"x"),
            size: terms.iter().map(|t| t.2).sum(),
            packs: vec![Digest::of(b"a"), Digest::of(b"b")],
            terms: terms.iter().map(|t| Term(t.0, t.1, t.2)).collect(),
        }
    }

    #[test]
    fn a_plan_covers_exactly_the_range_asked() {
        let r = recipe(&[(0, 100, 10), (1, 0, 5), (0, 0, 20)]);
        let (a, b) = (r.packs[0], r.packs[1]);
        assert_eq!(plan(&r, 0..35), [(a, 100, 10), (b, 0, 5), (a, 0, 20)]);
        assert_eq!(plan(&r, 8..12), [(a, 108, 2), (b, 0, 2)]);
        assert_eq!(plan(&r, 15..16), [(a, 0, 1)]);
        assert!(plan(&r, 35..35).is_empty());
    }

    #[test]
    fn recipes_round_trip_and_bad_ones_are_typed_errors() {
        let r = recipe(&[(0, 0, 3), (1, 7, 4)]);
        let bytes = r.encode();
        assert_eq!(Recipe::decode(&bytes, &r.digest, "here".into()).unwrap(), r);
        let err = Recipe::decode(&bytes, &Digest::of(b"y"), "here".into()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let mut bad = r.clone();
        bad.size += 1;
        let err = Recipe::decode(&bad.encode(), &r.digest, "here".into()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let mut future = r.clone();
        future.format = 9;
        let err = Recipe::decode(&future.encode(), &r.digest, "here".into()).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { found: 9, .. }),
            "{err:?}"
        );
        let err = Recipe::decode(b"{", &r.digest, "here".into()).unwrap_err();
        assert_eq!(err.location(), Some("here"));
    }

    #[test]
    fn a_pack_index_is_checked_against_its_name() {
        let chunks = vec![(Digest::of(b"ab"), 0, 2), (Digest::of(b"cde"), 2, 3)];
        let index = PackIndex::new(chunks.clone(), 5);
        let bytes = serde_json::to_vec(&index).unwrap();
        assert_eq!(
            PackIndex::decode(&bytes, &index.pack, "here".into()).unwrap(),
            index
        );
        // The same chunks name the same pack; any other list another one.
        assert_eq!(PackIndex::new(chunks.clone(), 5).pack, index.pack);
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        let mut shifted = chunks.clone();
        shifted[1].1 = 3;
        for other in [
            PackIndex::new(swapped, 5),
            PackIndex::new(shifted, 6),
            PackIndex::new(chunks[..1].to_vec(), 2),
        ] {
            assert_ne!(other.pack, index.pack);
        }
        // Not BLAKE3 of the bytes: another domain.
        assert_ne!(index.pack, Digest::of(b"abcde"));
        // An index whose chunk list was changed no longer matches its name.
        let mut lying = index.clone();
        lying.chunks[1].0 = Digest::of(b"xyz");
        let err = PackIndex::decode(
            &serde_json::to_vec(&lying).unwrap(),
            &index.pack,
            "here".into(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { reason, .. } if reason.contains("chunk list")),
            "{err:?}"
        );
        assert_eq!(err.location(), Some("here"));
        // Format 1 (named by the pack's bytes) is read without that check.
        let mut old = lying;
        old.format = 1;
        let bytes = serde_json::to_vec(&old).unwrap();
        assert!(PackIndex::decode(&bytes, &index.pack, "here".into()).is_ok());
        let mut future = index;
        future.format = 3;
        let bytes = serde_json::to_vec(&future).unwrap();
        let err = PackIndex::decode(&bytes, &future.pack, "here".into()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedFormat {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
