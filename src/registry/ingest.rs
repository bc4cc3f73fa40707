//! Turning files into stored blobs and a manifest.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::digest::{Digest, Sha256};
use crate::domain::{Manifest, ManifestEntry, RelPath, VersionRecord};
use crate::error::{Error, Result};
use crate::hash_cache::HashCache;
use crate::hashing::Hashed;
use crate::progress::{FileProgress, Progress, ProgressExt};
use crate::store::{ArtifactStore, ArtifactStoreExt, LinkMode, Materialized};

/// Where a new version's files come from.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::ArtifactSource;
/// let weights = ArtifactSource::dir("out/checkpoint-1200");
/// let single = ArtifactSource::file("out/model.onnx");
/// // A prompt or a configuration is a version too.
/// let prompt = ArtifactSource::bytes("system_prompt.txt", "You are a helpful assistant.")?;
/// # let _ = (weights, single, prompt); Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ArtifactSource {
    /// Every regular file below a directory, at its path relative to it.
    ///
    /// Symbolic links are followed only when their target stays inside the
    /// directory; one that leads outside it, and device files, FIFOs and sockets, are
    /// [`Error::InvalidPath`]. File names must be UTF-8.
    Dir(PathBuf),
    /// One file, stored under its file name.
    File(PathBuf),
    /// Files held in memory.
    Bytes(Vec<(RelPath, Bytes)>),
}

impl ArtifactSource {
    /// Every file below `dir`.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        ArtifactSource::Dir(dir.into())
    }

    /// One file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        ArtifactSource::File(path.into())
    }

    /// One in-memory file at `path`.
    pub fn bytes(path: &str, bytes: impl Into<Bytes>) -> Result<Self> {
        Ok(ArtifactSource::Bytes(vec![(
            RelPath::new(path)?,
            bytes.into(),
        )]))
    }

    /// Where the file stored at `rel` comes from, for messages: the file below a
    /// directory, the single file, or `rel` itself for in-memory files.
    pub(crate) fn path_of(&self, rel: &RelPath) -> PathBuf {
        match self {
            ArtifactSource::Dir(dir) => dir.join(rel.as_str()),
            ArtifactSource::File(path) => path.clone(),
            ArtifactSource::Bytes(_) => PathBuf::from(rel.as_str()),
        }
    }

    /// Several in-memory files.
    pub fn files<I, P, B>(files: I) -> Result<Self>
    where
        I: IntoIterator<Item = (P, B)>,
        P: Into<String>,
        B: Into<Bytes>,
    {
        files
            .into_iter()
            .map(|(p, b)| Ok((RelPath::new(p)?, b.into())))
            .collect::<Result<Vec<_>>>()
            .map(ArtifactSource::Bytes)
    }
}

/// How many files are hashed and uploaded at once.
const CONCURRENCY: usize = 4;

/// Stores every file of `source` that the store does not have yet, then the
/// manifest (in-memory files: together with it, see [`Planned`]), and returns
/// the manifest and its digest.
///
/// Every path is checked as a manifest would before any byte moves, so a source
/// the manifest rejects leaves nothing behind. Bytes already stored are not stored
/// again. Local files are taken in as `link` allows (see [`LinkMode`]). Nothing
/// here touches metadata: a failure while storing leaves at most unreferenced
/// blobs. `progress` hears of the files (not the manifest) as
/// [`NewVersion::progress`](crate::NewVersion::progress) says.
pub(crate) async fn ingest(
    store: &dyn ArtifactStore,
    source: ArtifactSource,
    cache: Option<&HashCache>,
    link: LinkMode,
    progress: Option<&Progress>,
) -> Result<(Manifest, Digest, IngestStats)> {
    if let ArtifactSource::Bytes(files) = source {
        return Planned::new(&files)?.store(store, progress).await;
    }
    let (manifest, mut stats, deferred) =
        ingest_files(store, source, cache, link, progress).await?;
    let (digest, bytes) = manifest_blob(&manifest).await?;
    let (files, manifest_put) = futures::join!(
        store_blobs(store, deferred),
        store.put_bytes_if_absent(&digest, bytes)
    );
    stats.add(files?);
    manifest_put?;
    Ok((manifest, digest, stats))
}

/// Small files read whole by [`ingest_files`], whose blobs the caller stores
/// with [`store_blobs`] (the store checks each digest against the bytes as it
/// writes), and counts then: whether the store had a blob of up to
/// [`SEND_MAX`] bytes is found by the write itself, not asked first.
#[derive(Default)]
pub(crate) struct Deferred {
    /// Each distinct blob's bytes.
    blobs: HashMap<Digest, Bytes>,
    /// Each file read whole: its blob and size (a blob several paths share
    /// once per path).
    files: Vec<(Digest, u64)>,
}

/// Files up to this size, in copy mode, are read into memory and hashed, and
/// their blobs stored beside the manifest ([`Deferred`]) rather than each
/// imported (and made durable) before the manifest can be built: for a small
/// model, the durable writes of its files, its manifest and its event then
/// overlap.
const DEFER_MAX: u64 = 64 << 10;

/// Stores the `deferred` blobs, a few at a time, each with one
/// create-if-absent write, and counts their files: the first path of a blob
/// this call stored as stored (copied), every other as present.
pub(crate) async fn store_blobs(
    store: &dyn ArtifactStore,
    deferred: Deferred,
) -> Result<IngestStats> {
    let mut stored: HashSet<Digest> = futures::stream::iter(deferred.blobs)
        .map(|(digest, bytes)| async move {
            Ok::<_, Error>(
                store
                    .put_bytes_if_absent(&digest, bytes)
                    .await?
                    .then_some(digest),
            )
        })
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|stored| futures::future::ready(Ok(stored)))
        .try_collect()
        .await?;
    let mut stats = IngestStats::default();
    for (digest, size) in deferred.files {
        let placed = if stored.remove(&digest) {
            Placed::Stored(Some(Materialized::Copied))
        } else {
            Placed::Present
        };
        stats.count(size, placed);
    }
    Ok(stats)
}

/// The manifest's bytes and their digest (hashed on the blocking pool when
/// large, as [`put_bytes`](crate::store::ArtifactStoreExt::put_bytes) does).
pub(crate) async fn manifest_blob(manifest: &Manifest) -> Result<(Digest, Bytes)> {
    let bytes = Bytes::from(manifest.to_bytes());
    let digest = if bytes.len() <= super::fetch::HASH_INLINE_MAX {
        Digest::of(&bytes)
    } else {
        let b = bytes.clone();
        blocking(move || Digest::of(&b)).await?
    };
    Ok((digest, bytes))
}

/// Stores the files of a source on disk (a file or a directory) as
/// [`ingest`] does, except the manifest and the small files it read whole
/// ([`Deferred`]): returns them, for the caller to store (a registration
/// stores them while it prepares the version's event).
pub(crate) async fn ingest_files(
    store: &dyn ArtifactStore,
    source: ArtifactSource,
    cache: Option<&HashCache>,
    link: LinkMode,
    progress: Option<&Progress>,
) -> Result<(Manifest, IngestStats, Deferred)> {
    let mut stats = IngestStats::default();
    let manifest = match source {
        ArtifactSource::Bytes(files) => {
            let (manifest, _, stats) = Planned::new(&files)?.store(store, progress).await?;
            return Ok((manifest, stats, Deferred::default()));
        }
        ArtifactSource::File(path) => {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| {
                    Error::invalid_path(path.display().to_string(), "has no UTF-8 file name")
                })?
                .to_owned();
            let rel = RelPath::new(name)?;
            // The file's metadata and what `store_file` looks up first, in one
            // trip to the blocking pool.
            let (abs, c) = (path.clone(), cache.cloned());
            let (meta, looked) = blocking(move || match fs::metadata(&abs) {
                Ok(m) if m.is_file() => {
                    let small = is_small(link, m.len());
                    let looked = (c.is_some() || small).then(|| look(c.as_ref(), &abs, small));
                    (Ok(m), looked)
                }
                other => (other, None),
            })
            .await?;
            let size = match meta {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => {
                    return Err(Error::invalid_path(
                        path.display().to_string(),
                        "is not a regular file",
                    ));
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
            let file = SourceFile {
                rel,
                abs: path,
                size,
                looked: looked.transpose()?,
            };
            store_files(store, vec![file], cache, link, progress, &mut stats).await?
        }
        ArtifactSource::Dir(dir) => {
            let files = blocking(move || walk(&dir)).await??;
            store_files(store, files, cache, link, progress, &mut stats).await?
        }
    };
    let (manifest, deferred) = manifest;
    Ok((manifest, stats, deferred))
}

/// What ingest did with a version's files, for the [`RegisterReport`]
/// (`crate::RegisterReport`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IngestStats {
    pub(crate) files_stored: u64,
    pub(crate) bytes_stored: u64,
    pub(crate) files_present: u64,
    pub(crate) bytes_present: u64,
    pub(crate) files_linked: u64,
    pub(crate) files_copied: u64,
    pub(crate) hash_cache_hits: u64,
}

impl IngestStats {
    /// Adds the counts of `other`, another part of the same ingest.
    pub(crate) fn add(&mut self, other: IngestStats) {
        self.files_stored += other.files_stored;
        self.bytes_stored += other.bytes_stored;
        self.files_present += other.files_present;
        self.bytes_present += other.bytes_present;
        self.files_linked += other.files_linked;
        self.files_copied += other.files_copied;
        self.hash_cache_hits += other.hash_cache_hits;
    }

    fn count(&mut self, size: u64, placed: Placed) {
        match placed {
            Placed::CacheHit => {
                self.hash_cache_hits += 1;
                self.files_present += 1;
                self.bytes_present += size;
            }
            Placed::Present => {
                self.files_present += 1;
                self.bytes_present += size;
            }
            Placed::Deferred => {}
            Placed::Stored(how) => {
                self.files_stored += 1;
                self.bytes_stored += size;
                match how {
                    Some(Materialized::Reflinked | Materialized::HardLinked) => {
                        self.files_linked += 1
                    }
                    Some(Materialized::Copied) => self.files_copied += 1,
                    None => {}
                }
            }
        }
    }
}

/// How one file entered the store.
#[derive(Clone, Copy, Debug)]
enum Placed {
    /// The hash cache knew the file and the store had its blob: not read at all.
    CacheHit,
    /// Read and hashed; the store had the blob already.
    Present,
    /// Stored new; `Some` says how a local file was placed.
    Stored(Option<Materialized>),
    /// Read whole and hashed; its blob is stored (or found stored) with the
    /// manifest's, and counted then ([`Deferred`]).
    Deferred,
}

/// A source whose manifest is known before anything is stored: in-memory files,
/// whose digests are computed from the bytes at hand. (Local files are named by
/// the digest of what the store holds, known only once they are stored.)
pub(crate) struct Planned {
    manifest: Manifest,
    digest: Digest,
    /// The manifest's digest and bytes, then each distinct file's.
    blobs: Vec<(Digest, Bytes)>,
}

impl Planned {
    /// The plan for `source`: `None` unless its files are in memory. Paths are
    /// checked as [`Manifest::new`] does. Files larger in total than a few dozen
    /// KiB are hashed on the blocking pool.
    pub(crate) async fn of(source: &ArtifactSource) -> Result<Option<Planned>> {
        match source {
            ArtifactSource::Bytes(files) => {
                let total: usize = files.iter().map(|(_, b)| b.len()).sum();
                if total <= super::fetch::HASH_INLINE_MAX {
                    return Planned::new(files).map(Some);
                }
                let files = files.clone();
                blocking(move || Planned::new(&files)).await?.map(Some)
            }
            ArtifactSource::File(_) | ArtifactSource::Dir(_) => Ok(None),
        }
    }

    /// The plan for in-memory `files`.
    fn new(files: &[(RelPath, Bytes)]) -> Result<Planned> {
        let mut entries = Vec::with_capacity(files.len());
        let mut seen = HashSet::with_capacity(files.len());
        let mut blobs = Vec::with_capacity(files.len() + 1);
        for (path, bytes) in files {
            let digest = Digest::of(bytes);
            entries.push(ManifestEntry {
                path: path.clone(),
                size: bytes.len() as u64,
                digest,
                sha256: Some(Sha256::of(bytes)),
            });
            if seen.insert(digest) {
                blobs.push((digest, bytes.clone()));
            }
        }
        let manifest = Manifest::new(entries)?;
        let bytes = Bytes::from(manifest.to_bytes());
        let digest = Digest::of(&bytes);
        blobs.insert(0, (digest, bytes));
        Ok(Planned {
            digest,
            manifest,
            blobs,
        })
    }

    /// The manifest's digest, the files' total size and their number: what
    /// the version's record says of its artifact.
    pub(crate) fn sizes(&self) -> (Digest, u64, u64) {
        (
            self.digest,
            self.manifest.total_size(),
            self.manifest.len() as u64,
        )
    }

    /// Every digest the version will reference: the manifest and its files.
    pub(crate) fn digests(&self) -> BTreeSet<Digest> {
        std::iter::once(self.digest)
            .chain(self.manifest.entries().iter().map(|e| e.digest))
            .collect()
    }

    /// Stores the manifest and the files the store lacks, a few at a time, and
    /// returns the manifest and its digest.
    ///
    /// The manifest need not wait for its files (their digests are known), so
    /// their durable writes overlap. A manifest stored without its files is as
    /// harmless as a file stored without its manifest: only the version's event,
    /// appended after both, makes either reachable.
    ///
    /// `progress` hears of every file once its blob is stored or found stored: a
    /// blob that several paths share reports each of them (the bytes the store
    /// counted while storing it go to the first).
    pub(crate) async fn store(
        self,
        store: &dyn ArtifactStore,
        progress: Option<&Progress>,
    ) -> Result<(Manifest, Digest, IngestStats)> {
        progress.started(self.manifest.len() as u64, self.manifest.total_size());
        let mut paths_of: HashMap<Digest, Vec<&ManifestEntry>> = HashMap::new();
        if progress.is_some() {
            for e in self.manifest.entries() {
                paths_of.entry(e.digest).or_default().push(e);
            }
        }
        let paths_of = &paths_of;
        // The manifest is blob 0; it is not one of the version's files.
        let placed: Vec<(u64, Placed)> = futures::stream::iter(self.blobs.into_iter().enumerate())
            .map(|(i, (digest, bytes))| async move {
                let size = bytes.len() as u64;
                // Blob 0, the manifest, is no file.
                let paths = match paths_of.get(&digest) {
                    Some(paths) if i > 0 => paths.as_slice(),
                    _ => &[],
                };
                let file = FileProgress::new(progress.filter(|_| !paths.is_empty()), size);
                let placed = file
                    .track(async {
                        // The store checks the bytes against the digest as it
                        // writes; one create-if-absent write where it has one.
                        Ok::<_, Error>(if store.put_bytes_if_absent(&digest, bytes).await? {
                            Placed::Stored(None)
                        } else {
                            Placed::Present
                        })
                    })
                    .await?;
                if let Some((first, others)) = paths.split_first() {
                    file.done(first.path.as_str(), first.size);
                    for e in others {
                        progress.file(e.path.as_str(), e.size);
                    }
                }
                Ok::<_, Error>((i, size, placed))
            })
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|(i, size, placed)| {
                futures::future::ready(Ok((i > 0).then_some((size, placed))))
            })
            .try_collect()
            .await?;
        let mut stats = IngestStats::default();
        for (size, p) in placed {
            stats.count(size, p);
        }
        // A file that repeats within the version is stored once and present after.
        let distinct = stats.files_stored + stats.files_present;
        let repeated = self.manifest.len() as u64 - distinct;
        stats.files_present += repeated;
        stats.bytes_present +=
            self.manifest.total_size() - stats.bytes_stored - stats.bytes_present;
        Ok((self.manifest, self.digest, stats))
    }
}

/// A local file to store.
struct SourceFile {
    /// Its path in the version.
    rel: RelPath,
    /// Where it is read from.
    abs: PathBuf,
    /// Its size when it was listed, for progress: the manifest has the size of
    /// what was stored.
    size: u64,
    /// What [`look`] found when it was listed, if it looked then.
    looked: Option<Looked>,
}

/// Checks the files' paths, then stores each file the store lacks, a few at a
/// time, and builds their manifest from the digests of what was stored.
async fn store_files(
    store: &dyn ArtifactStore,
    files: Vec<SourceFile>,
    cache: Option<&HashCache>,
    link: LinkMode,
    progress: Option<&Progress>,
    stats: &mut IngestStats,
) -> Result<(Manifest, Deferred)> {
    let mut paths: Vec<&RelPath> = files.iter().map(|f| &f.rel).collect();
    paths.sort();
    Manifest::check_paths(&paths)?;
    progress.started(files.len() as u64, files.iter().map(|f| f.size).sum());
    let stored: Vec<(ManifestEntry, Placed, Option<Bytes>)> = futures::stream::iter(files)
        .map(|f| async move {
            let file = FileProgress::new(progress, f.size);
            let (hashed, placed, read) = file
                .track(store_file(store, &f.abs, f.size, f.looked, cache, link))
                .await?;
            file.done(f.rel.as_str(), hashed.size);
            let entry = ManifestEntry {
                path: f.rel,
                size: hashed.size,
                digest: hashed.digest,
                sha256: Some(hashed.sha256),
            };
            Ok::<_, Error>((entry, placed, read))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut entries = Vec::with_capacity(stored.len());
    let mut deferred = Deferred::default();
    for (entry, placed, read) in stored {
        stats.count(entry.size, placed);
        if let Some(bytes) = read {
            deferred.files.push((entry.digest, entry.size));
            deferred.blobs.insert(entry.digest, bytes);
        }
        entries.push(entry);
    }
    Ok((Manifest::new(entries)?, deferred))
}

/// Reads the file at `path` whole, with its digest and SHA-256, if it is a
/// regular file of at most [`DEFER_MAX`] bytes (`None` otherwise); the
/// metadata it had, for the hash cache. [`Error::SourceChanged`] if it
/// changed while it was read. Blocking.
fn read_small(path: &Path) -> Result<Option<(Hashed, Bytes, fs::Metadata)>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let err = |e| Error::io(path, e);
    let file = fs::File::open(path).map_err(err)?;
    let before = file.metadata().map_err(err)?;
    if !before.is_file() || before.len() > DEFER_MAX {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(before.len() as usize);
    file.take(DEFER_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    let after = fs::metadata(path).map_err(err)?;
    let mark = |m: &fs::Metadata| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    };
    if mark(&before) != mark(&after) || bytes.len() as u64 != after.len() {
        return Err(Error::SourceChanged {
            path: path.to_owned(),
        });
    }
    let hashed = Hashed {
        digest: Digest::of(&bytes),
        sha256: Sha256::of(&bytes),
        size: bytes.len() as u64,
    };
    Ok(Some((hashed, Bytes::from(bytes), before)))
}

/// Whether a file of `size` bytes is read whole and stored beside the
/// manifest ([`Deferred`]) rather than imported.
fn is_small(link: LinkMode, size: u64) -> bool {
    link == LinkMode::Copy && size <= DEFER_MAX
}

/// Small files up to this size are not asked about before their
/// create-if-absent write ([`Deferred`]): the write costs what the question
/// would (an object store's HEAD carries about as many bytes of headers; a
/// local store's write checks first in the same call), so a stored one costs
/// the same one request, and a new one a request fewer. Larger small files
/// are asked about first, so that stored bytes are not sent again.
const SEND_MAX: u64 = 4 << 10;

/// A small file [`look`] read whole: returned with its bytes to store beside
/// the manifest, unless it is larger than [`SEND_MAX`] and the store has it.
async fn read_whole(
    store: &dyn ArtifactStore,
    hashed: Hashed,
    bytes: Bytes,
) -> Result<(Hashed, Placed, Option<Bytes>)> {
    if hashed.size > SEND_MAX && store.contains(&hashed.digest).await? {
        return Ok((hashed, Placed::Present, None));
    }
    Ok((hashed, Placed::Deferred, Some(bytes)))
}

/// What [`look`] found out about a local file.
enum Looked {
    /// The hash cache knows it, unchanged.
    Cached(Hashed),
    /// Read whole ([`read_small`]), with its hashes.
    Read(Hashed, Bytes),
    /// Neither: too large to read whole (or not asked to), with the metadata
    /// the hash cache's lookup saw, if it was asked.
    Neither(Option<fs::Metadata>),
}

/// The hash cache's answer for the file at `path`, or else, if `small`, the
/// file read whole and hashed (and remembered by the cache): everything
/// [`store_file`] asks of the file system before it asks the store, in one
/// trip to the blocking pool. Blocking.
fn look(cache: Option<&HashCache>, path: &Path, small: bool) -> Result<Looked> {
    let mut before = None;
    if let Some(cache) = cache {
        match cache.lookup(path).map_err(|e| Error::io(path, e))? {
            Ok(hashed) => return Ok(Looked::Cached(hashed)),
            Err(meta) => before = Some(meta),
        }
    }
    if small && let Some((hashed, bytes, read_meta)) = read_small(path)? {
        if let Some(cache) = cache {
            cache.remember(path, before.as_ref().unwrap_or(&read_meta), &hashed);
        }
        return Ok(Looked::Read(hashed, bytes));
    }
    Ok(Looked::Neither(before))
}

/// Stores one local file, returning the digest, SHA-256 and size of what the
/// store holds.
///
/// An unchanged file the hash cache knows, whose blob is stored, costs a `stat`, a
/// cache read and a `head`. Anything else goes to
/// [`ArtifactStore::import_file`], which hashes what it stores: so a stale cache
/// entry can at worst skip storing bytes that are already stored under that digest,
/// never put wrong bytes under a digest, and the manifest names what was stored.
/// The SHA-256 comes from the same place as the digest: the cache entry, or the
/// store's read of the bytes it stored (see [`stored_sha256`] for a store that
/// does not compute it).
///
/// A small file in copy mode (at most [`DEFER_MAX`] bytes when listed and
/// when read) is read whole and hashed instead, and returned with its bytes
/// unless the store has them: the caller stores them with one
/// create-if-absent write each ([`Deferred`]). Up to [`SEND_MAX`] bytes the
/// store is not asked first: the write finds out.
///
/// `looked`: what [`look`] found when the file was listed, if it looked
/// then (a single-file source does: one trip to the blocking pool fewer).
async fn store_file(
    store: &dyn ArtifactStore,
    abs: &Path,
    listed_size: u64,
    looked: Option<Looked>,
    cache: Option<&HashCache>,
    link: LinkMode,
) -> Result<(Hashed, Placed, Option<Bytes>)> {
    let small = is_small(link, listed_size);
    let looked = match looked {
        None if cache.is_some() || small => {
            let (c, p) = (cache.cloned(), abs.to_owned());
            Some(blocking(move || look(c.as_ref(), &p, small)).await??)
        }
        looked => looked,
    };
    // The metadata the cache's lookup saw, for the cache entry after import.
    let before = match looked {
        Some(Looked::Cached(hashed)) => {
            if store.contains(&hashed.digest).await? {
                return Ok((hashed, Placed::CacheHit, None));
            }
            // Stored no more (a collection): read it as if not cached.
            if small {
                let p = abs.to_owned();
                if let Looked::Read(hashed, bytes) =
                    blocking(move || look(None, &p, true)).await??
                {
                    return read_whole(store, hashed, bytes).await;
                }
            }
            None
        }
        Some(Looked::Read(hashed, bytes)) => return read_whole(store, hashed, bytes).await,
        Some(Looked::Neither(meta)) => meta,
        None => None,
    };
    let imported = store.import_file(abs, link).await?;
    let hashed = Hashed {
        digest: imported.digest,
        sha256: match imported.sha256 {
            Some(sha256) => sha256,
            None => stored_sha256(store, &imported.digest).await?,
        },
        size: imported.size,
    };
    if let (Some(cache), Some(before)) = (cache, before) {
        let (c, p) = (cache.clone(), abs.to_owned());
        blocking(move || c.remember(&p, &before, &hashed)).await?;
    }
    let placed = match imported.placed {
        None => Placed::Present,
        how => Placed::Stored(how),
    };
    Ok((hashed, placed, None))
}

/// The SHA-256 of the blob `digest`, read back from `store`: for a store whose
/// [`import_file`](ArtifactStore::import_file) does not report it (the built-in
/// stores all do). The blob is hashed with BLAKE3 in the same read, so the
/// SHA-256 is known to be of the bytes stored under `digest`; anything else is
/// [`Error::Integrity`]. Not counted as progress: the import counted the file.
async fn stored_sha256(store: &dyn ArtifactStore, digest: &Digest) -> Result<Sha256> {
    let read = crate::hashing::hash_stream_with_sha256(store.get(digest).await?, None).await?;
    if read.digest != *digest {
        return Err(Error::Integrity {
            what: format!("blob {digest} read back for its SHA-256"),
            expected: *digest,
            actual: read.digest,
            location: Some(store.location(digest)),
        });
    }
    Ok(read.sha256)
}

pub(crate) use crate::offload::offload as blocking;

/// How deep a source directory may nest.
const MAX_DEPTH: usize = 128;

/// Lists the regular files below `root` (blocking).
fn walk(root: &Path) -> Result<Vec<SourceFile>> {
    let canonical_root = fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    if !canonical_root.is_dir() {
        return Err(Error::invalid_path(
            root.display().to_string(),
            "is not a directory",
        ));
    }
    let mut out = Vec::new();
    let mut ancestors = HashSet::new();
    ancestors.insert(canonical_root.clone());
    walk_dir(
        &canonical_root,
        &canonical_root,
        "",
        0,
        &mut ancestors,
        &mut out,
    )?;
    Ok(out)
}

fn walk_dir(
    root: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    ancestors: &mut HashSet<PathBuf>,
    out: &mut Vec<SourceFile>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid_path(
            prefix,
            format!("nests deeper than {MAX_DEPTH} directories"),
        ));
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let abs = dir.join(&name);
        let name = name.to_str().ok_or_else(|| {
            Error::invalid_path(abs.display().to_string(), "file name is not UTF-8")
        })?;
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        let (target, meta) = if meta.file_type().is_symlink() {
            let target = fs::canonicalize(&abs).map_err(|e| Error::io(&abs, e))?;
            if !target.starts_with(root) {
                return Err(Error::invalid_path(
                    rel,
                    format!(
                        "is a symbolic link to {}, outside the source directory",
                        target.display()
                    ),
                ));
            }
            let meta = fs::metadata(&target).map_err(|e| Error::io(&target, e))?;
            (target, meta)
        } else {
            (abs, meta)
        };
        if meta.is_dir() {
            // A link to a directory that contains it would loop forever.
            if !ancestors.insert(target.clone()) {
                return Err(Error::invalid_path(
                    rel,
                    "links to a directory that contains it",
                ));
            }
            let walked = walk_dir(root, &target, &rel, depth + 1, ancestors, out);
            ancestors.remove(&target);
            walked?;
        } else if meta.is_file() {
            out.push(SourceFile {
                rel: RelPath::new(rel)?,
                abs: target,
                size: meta.len(),
                looked: None,
            });
        } else {
            return Err(Error::invalid_path(
                rel,
                "is not a regular file or directory (device, FIFO or socket)",
            ));
        }
    }
    Ok(())
}

/// A registered version and what registering it did: what
/// [`Session::register`](crate::Session::register) returns. It dereferences to
/// the [`VersionRecord`], so `registered.number` and `&*registered` work as on
/// the record.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The new version.
    pub version: VersionRecord,
    /// What was stored, linked, copied or found already stored, and how long it
    /// took.
    pub report: RegisterReport,
}

impl std::ops::Deref for Registered {
    type Target = VersionRecord;

    fn deref(&self) -> &VersionRecord {
        &self.version
    }
}

impl From<Registered> for VersionRecord {
    fn from(r: Registered) -> VersionRecord {
        r.version
    }
}

/// What a registration did with the version's files.
///
/// Every file of the version is counted once, as stored new
/// (`files_stored`) or found already stored (`files_present`: an identical file
/// of an earlier version, or an earlier file of this one); `files_linked` and
/// `files_copied` say how the new local files were placed, and
/// `hash_cache_hits` how many unchanged local files were not read at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct RegisterReport {
    /// Files in the version.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Files whose bytes were stored new.
    pub files_stored: u64,
    /// Bytes stored new.
    pub bytes_stored: u64,
    /// Files whose bytes the store already had.
    pub files_present: u64,
    /// Bytes the store already had.
    pub bytes_present: u64,
    /// New local files placed by reflink or hard link instead of a copy
    /// ([`NewVersion::link`](crate::NewVersion::link)).
    pub files_linked: u64,
    /// New local files copied into the store.
    pub files_copied: u64,
    /// Local files whose digest came from the hash cache (unchanged since they
    /// were last registered): not read.
    pub hash_cache_hits: u64,
    /// Requests the artifact store sent to its server for this registration
    /// (HEAD, GET, LIST, PUT, each multipart call): counted by stores on object
    /// storage; 0 for local and in-memory stores, which send none.
    #[serde(default)]
    pub requests_sent: u64,
    /// Bytes the artifact store uploaded for this registration: with packing on
    /// object storage ([`ObjectArtifactOptions::packed`]), about the chunks it
    /// did not have, plus pack indexes, recipes and the manifest; 0 for local
    /// and in-memory stores.
    ///
    /// [`ObjectArtifactOptions::packed`]: crate::store::object::ObjectArtifactOptions::packed
    #[serde(default)]
    pub bytes_sent: u64,
    /// How long the registration took, hashing and storing included (in JSON:
    /// milliseconds, with a fraction).
    #[serde(with = "duration_ms")]
    #[cfg_attr(feature = "serve", schema(value_type = f64))]
    pub elapsed: std::time::Duration,
}

/// A duration as whole milliseconds (fractional part as a float) on the wire.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(
        d: &Duration,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use futures::stream::BoxStream;

    use super::*;
    use crate::hashing::tests::SIZES;
    use crate::store::{
        BlobMeta, ByteStream, Imported, MemoryArtifactStore, MemoryMetadataStore,
        ObjectArtifactStore, Placed as PlacedBlob, TempSweep,
    };
    use crate::{Actor, CreateModel, NewVersion, Registry};

    /// `size` bytes of a pattern that `seed` shifts, so each seed's files are new
    /// blobs.
    fn bytes(size: usize, seed: usize) -> Vec<u8> {
        (0..size).map(|i| ((i + seed) % 251) as u8).collect()
    }

    /// SHA-256 by the `sha2` crate in one call, not by the windows under test.
    fn sha256(bytes: &[u8]) -> Sha256 {
        use sha2::Digest as _;
        Sha256::from_bytes(sha2::Sha256::digest(bytes).into())
    }

    /// A registry with the model `m`.
    async fn with_model(reg: Registry) -> Registry {
        reg.acting_as(Actor::new("ci").unwrap())
            .create_model("m", CreateModel::new())
            .await
            .unwrap();
        reg
    }

    /// Registers `source` as a version of `m` and checks its manifest against
    /// `files`: every path, with the size and the SHA-256 of its bytes.
    async fn check(
        reg: &Registry,
        source: ArtifactSource,
        link: LinkMode,
        files: &[(String, Vec<u8>)],
        what: &str,
    ) {
        let v = reg
            .acting_as(Actor::new("ci").unwrap())
            .register("m", source, NewVersion::new().link(link))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let manifest = reg
            .manifest(format!("m/{}", v.number).as_str())
            .await
            .unwrap();
        let got: Vec<_> = manifest
            .entries()
            .iter()
            .map(|e| (e.path.as_str(), e.size, e.sha256))
            .collect();
        let mut want: Vec<_> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.len() as u64, Some(sha256(b))))
            .collect();
        want.sort();
        assert_eq!(got, want, "{what}");
    }

    /// Every ingest path records each file's SHA-256, for files of every size
    /// around the hashing cut-offs (one read, 2 MiB windows, 32 MiB copy
    /// windows): a directory, single files and in-memory files, on a local
    /// registry in every link mode (reflink falls back to a copy where the
    /// filesystem has none), on memory stores and on object storage.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_ingest_path_records_each_files_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let object = Registry::builder()
            .metadata(Arc::new(MemoryMetadataStore::new()))
            .artifacts(Arc::new(ObjectArtifactStore::new(
                Arc::new(object_store::memory::InMemory::new()),
                object_store::path::Path::from("artifacts"),
            )))
            .build()
            .unwrap();
        let all_modes = [LinkMode::Copy, LinkMode::Reflink, LinkMode::HardLink];
        let registries = [
            (
                "local",
                Registry::open_local(dir.path().join("local"))
                    .await
                    .unwrap(),
                &all_modes[..],
            ),
            ("memory", Registry::in_memory(), &all_modes[..1]),
            ("object", object, &all_modes[..1]),
        ];
        for (name, reg, modes) in registries {
            let reg = with_model(reg).await;
            for (seed, &mode) in modes.iter().enumerate() {
                let files: Vec<(String, Vec<u8>)> = SIZES
                    .iter()
                    .map(|&n| (format!("f{n:08}"), bytes(n, seed)))
                    .collect();
                let src = dir.path().join(format!("{name}-{mode:?}"));
                fs::create_dir_all(&src).unwrap();
                for (p, b) in &files {
                    fs::write(src.join(p), b).unwrap();
                }
                let what = format!("{name} {mode:?}");
                check(&reg, ArtifactSource::dir(&src), mode, &files, &what).await;
                // Single files, whose blobs are stored now: the store finds them
                // present after hashing.
                for (p, b) in [&files[0], &files[7], &files[files.len() - 1]] {
                    let one = [(p.clone(), b.clone())];
                    let source = ArtifactSource::file(src.join(p));
                    check(&reg, source, mode, &one, &format!("{what} file {p}")).await;
                }
            }
            let files: Vec<(String, Vec<u8>)> = SIZES
                .iter()
                .map(|&n| (format!("mem/f{n:08}"), bytes(n, 7)))
                .collect();
            let in_memory = files
                .iter()
                .map(|(p, b)| (RelPath::new(p.clone()).unwrap(), Bytes::from(b.clone())))
                .collect();
            let source = ArtifactSource::Bytes(in_memory);
            let what = format!("{name} in memory");
            check(&reg, source, LinkMode::Copy, &files, &what).await;
            let one = [("prompt.txt".to_owned(), b"You are helpful.".to_vec())];
            let source = ArtifactSource::bytes("prompt.txt", &b"You are helpful."[..]).unwrap();
            check(&reg, source, LinkMode::Copy, &one, &what).await;
        }
    }

    /// A store of someone else's that does not report the SHA-256 of what it
    /// imported (here: the memory store with it dropped).
    #[derive(Debug)]
    struct WithoutSha256(MemoryArtifactStore);

    #[async_trait]
    impl ArtifactStore for WithoutSha256 {
        async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
            self.0.head(digest).await
        }
        async fn put_stream(&self, digest: &Digest, data: ByteStream) -> Result<()> {
            self.0.put_stream(digest, data).await
        }
        async fn put_file(&self, digest: &Digest, path: &Path) -> Result<()> {
            self.0.put_file(digest, path).await
        }
        async fn import_file(&self, path: &Path, mode: LinkMode) -> Result<Imported> {
            let imported = self.0.import_file(path, mode).await?;
            assert!(imported.sha256.is_some(), "the memory store reports it");
            Ok(Imported::new(
                imported.digest,
                imported.size,
                imported.placed,
            ))
        }
        async fn get(&self, digest: &Digest) -> Result<ByteStream> {
            self.0.get(digest).await
        }
        async fn get_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes> {
            self.0.get_range(digest, range).await
        }
        async fn delete(&self, digest: &Digest) -> Result<()> {
            self.0.delete(digest).await
        }
        async fn list(&self) -> Result<BoxStream<'static, Result<Digest>>> {
            self.0.list().await
        }
        async fn remove_stale_temp_files(&self, older_than: Duration) -> Result<TempSweep> {
            self.0.remove_stale_temp_files(older_than).await
        }
        async fn materialize(
            &self,
            digest: &Digest,
            dest: &Path,
            mode: LinkMode,
        ) -> Result<PlacedBlob> {
            self.0.materialize(digest, dest, mode).await
        }
        fn location(&self, digest: &Digest) -> String {
            self.0.location(digest)
        }
    }

    /// A store that does not report the SHA-256 still gets it into the
    /// manifest: the registry reads the stored blob back for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_does_not_report_sha256_still_gets_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::builder()
            .metadata(Arc::new(MemoryMetadataStore::new()))
            .artifacts(Arc::new(WithoutSha256(MemoryArtifactStore::new())))
            .build()
            .unwrap();
        let reg = with_model(reg).await;
        let files: Vec<(String, Vec<u8>)> = [0, 5, (4 << 20) + 7]
            .iter()
            .map(|&n| (format!("f{n}"), bytes(n, 3)))
            .collect();
        for (p, b) in &files {
            fs::write(dir.path().join(p), b).unwrap();
        }
        check(
            &reg,
            ArtifactSource::dir(dir.path()),
            LinkMode::Copy,
            &files,
            "dir",
        )
        .await;
    }
}
