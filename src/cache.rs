//! A local cache of verified model files, for inference servers.
//!
//! [`ModelCache::get`] resolves a reference and returns a [`CachedModel`]: a guard
//! holding the path of a directory with the version's files, fully verified,
//! downloading them on first use. Entries are keyed by artifact digest, so two
//! versions with the same bytes share one entry and a version switch is just a
//! different path. Threads and processes that share the cache directory download
//! each artifact once; a size limit evicts the least recently used entries that
//! nobody holds.
//!
//! # Layout and locking
//!
//! ```text
//! <dir>/v1/
//!   entries/<hex>/            one published entry, <hex> = manifest digest
//!     files/…                 the artifact's files
//!     manifest                the manifest's canonical bytes (hash to <hex>)
//!     complete                marker written last: {"format":1,"artifact":…,"size":…,"files":…}
//!   locks/<hex>.lock          the entry's lock file; its mtime is the entry's last use
//!   tmp/<hex>/                staging, touched only by the holder of <hex>'s exclusive lock
//!   trash/                    entries being deleted
//!   evict.lock                held while one process evicts
//! ```
//!
//! Every entry has a lock file, locked with `flock`-style locks
//! ([`File::lock_shared`], [`File::try_lock`]), which work between threads (each
//! opens its own handle) and processes, and are released by the OS if a process
//! dies:
//! - a [`CachedModel`] holds a **shared** lock for as long as it lives: the entry
//!   is in use and is never evicted or replaced;
//! - downloading, repairing and evicting an entry take the **exclusive** lock,
//!   with `try_lock`, so they never wait behind a long-lived guard.
//!
//! An entry is published by renaming a staging directory in which the files were
//! fetched and verified ([`Registry::fetch`]), then the manifest and last the
//! `complete` marker written and synced. A reader therefore sees a whole entry or
//! none, and checks it before use: marker and manifest must name the entry's
//! digest and every file must exist with its size ([`CacheOptions::verify_on_open`]
//! re-hashes every file as well). An entry that fails the check is moved to the
//! trash and fetched again.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::domain::{Manifest, Selector, VersionRecord, VersionRef};
use crate::error::{Error, Result};
use crate::hashing::hash_file;
use crate::registry::{FetchOptions, IntoVersionRef, Registry};
use crate::store::LinkMode;
use crate::store::fsutil::{ensure_dir, publish_dir, write_new_file};

/// The layout version: the directory below the cache root that holds everything.
const LAYOUT: &str = "v1";
const ENTRIES: &str = "entries";
const LOCKS: &str = "locks";
const TMP: &str = "tmp";
const TRASH: &str = "trash";
const EVICT_LOCK: &str = "evict.lock";
const FILES: &str = "files";
const MANIFEST: &str = "manifest";
const COMPLETE: &str = "complete";
/// The format of the `complete` marker.
const MARKER_FORMAT: u32 = 1;
/// How many times [`ModelCache::get`] finds the entry's exclusive lock taken by
/// someone else (a reader checking it, a guard on an entry that went bad) before
/// it gives up. With the backoff below that is about two seconds.
const MAX_BUSY: u32 = 100;

/// How a [`ModelCache`] behaves.
///
/// ```
/// use modelreg::CacheOptions;
/// let opts = CacheOptions::new().max_bytes(20 << 30).verify_on_open(true);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug)]
pub struct CacheOptions {
    max_bytes: u64,
    verify_on_open: bool,
    link: LinkMode,
    trust: Option<crate::signing::TrustPolicy>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            max_bytes: u64::MAX,
            verify_on_open: false,
            link: LinkMode::Copy,
            trust: None,
        }
    }
}

impl CacheOptions {
    /// No size limit, cheap checks on open, files copied.
    pub fn new() -> Self {
        Self::default()
    }

    /// Evict least recently used entries nobody holds while the cached artifacts
    /// together exceed `max_bytes` (file bytes; the few bytes of bookkeeping per
    /// entry are not counted). Entries in use are never evicted, so the cache can
    /// exceed the limit while they are held.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Re-hash every file of an entry each time it is handed out, not only when it
    /// is downloaded (the default checks the marker, the manifest's digest and each
    /// file's size). Costs a full read of the model per [`ModelCache::get`].
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// How files are placed when downloaded (see [`FetchOptions::link`]); copying
    /// by default. With [`LinkMode::HardLink`] on a local store, entries share the
    /// store's read-only blob files and use no extra space.
    pub fn link(mut self, mode: LinkMode) -> Self {
        self.link = mode;
        self
    }

    /// Hands out only versions that enough keys `policy` trusts have signed:
    /// every [`ModelCache::get`] verifies the version's signatures again (see
    /// [`Registry::verify_signatures`]) before it downloads or hands out
    /// anything, cached or not, and fails with
    /// [`Error::Signature`](crate::Error::Signature) when the policy is not met.
    pub fn trust(mut self, policy: crate::signing::TrustPolicy) -> Self {
        self.trust = Some(policy);
        self
    }
}

/// A local cache of verified model files, shared by threads and processes that
/// open the same directory. Cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use modelreg::*;
/// # let tmp = tempfile::tempdir().unwrap();
/// let registry = Registry::in_memory();
/// let me = registry.acting_as(Actor::new("alice")?);
/// me.create_model("fraud", CreateModel::new()).await?;
/// me.register("fraud", ArtifactSource::bytes("model.bin", "weights")?, NewVersion::new()).await?;
///
/// let cache = ModelCache::open(tmp.path().join("cache"), registry, CacheOptions::new()).await?;
/// let model = cache.get("fraud@latest").await?;
/// assert!(model.downloaded());
/// assert_eq!(std::fs::read(model.path().join("model.bin")).unwrap(), b"weights");
/// // The second time it is on disk already.
/// assert!(!cache.get("fraud/1").await?.downloaded());
/// # Ok::<(), modelreg::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct ModelCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    /// `<dir>/v1`.
    root: PathBuf,
    registry: Registry,
    options: CacheOptions,
}

impl fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelCache")
            .field("root", &self.inner.root)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A cached version's files, verified, held "in use": while this guard lives the
/// entry is neither evicted nor replaced, by this process or any other. Drop it
/// when the server stops using the files (after loading them into memory, or when
/// it switches to another version).
#[derive(Debug)]
pub struct CachedModel {
    path: PathBuf,
    version: VersionRecord,
    manifest: Manifest,
    downloaded: bool,
    /// Holds the shared lock on the entry's lock file; closing it releases the lock.
    _lock: File,
}

impl CachedModel {
    /// The directory with the version's files (`path().join("model.safetensors")`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version the reference resolved to.
    pub fn version(&self) -> &VersionRecord {
        &self.version
    }

    /// The files and their digests.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether this call downloaded the files (false: they were cached, or another
    /// thread or process downloaded them while this call waited).
    pub fn downloaded(&self) -> bool {
        self.downloaded
    }
}

impl AsRef<Path> for CachedModel {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// One entry of the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// The artifact (manifest digest).
    pub artifact: Digest,
    /// Bytes of its files.
    pub size: u64,
    /// When a [`ModelCache::get`] last handed it out (or it was downloaded).
    pub last_used: SystemTime,
}

/// What [`ModelCache::evict`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvictReport {
    /// The entries removed, least recently used first.
    pub evicted: Vec<Digest>,
    /// Their bytes.
    pub freed_bytes: u64,
    /// Entries that would have been evicted but were in use.
    pub skipped_in_use: usize,
    /// Bytes of the entries left.
    pub remaining_bytes: u64,
}

/// The `complete` marker of an entry.
#[derive(Serialize, Deserialize)]
struct Marker {
    format: u32,
    artifact: Digest,
    size: u64,
    files: u64,
}

/// The result of checking an entry.
enum Check {
    Valid(Manifest),
    Missing,
    Invalid(String),
}

impl ModelCache {
    /// Opens (creating if needed) the cache in `dir`, downloading through
    /// `registry`. Leftovers of crashed downloads and evictions are removed.
    pub async fn open(
        dir: impl AsRef<Path>,
        registry: Registry,
        options: CacheOptions,
    ) -> Result<ModelCache> {
        let root = dir.as_ref().join(LAYOUT);
        let r = root.clone();
        blocking(move || -> Result<()> {
            for sub in [ENTRIES, LOCKS, TMP, TRASH] {
                let d = r.join(sub);
                ensure_dir(&d).map_err(|e| Error::io(&d, e))?;
            }
            sweep_leftovers(&r);
            Ok(())
        })
        .await??;
        Ok(ModelCache {
            inner: Arc::new(CacheInner {
                root,
                registry,
                options,
            }),
        })
    }

    /// The registry the cache downloads from.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The version `reference` resolves to now, as local verified files.
    ///
    /// Downloads them on first use through [`Registry::fetch`] (which re-hashes
    /// every file), once for all threads and processes that ask at the same time:
    /// the others wait and share the result. An entry found corrupt or incomplete
    /// is fetched again; if it is corrupt *and* in use by another guard it cannot
    /// be replaced under that guard, and the call fails with [`Error::Corrupt`]
    /// after about two seconds of retrying. After a download, least recently used
    /// entries are evicted down to [`CacheOptions::max_bytes`].
    pub async fn get(&self, reference: impl IntoVersionRef) -> Result<CachedModel> {
        let r = reference.into_version_ref()?;
        let version = self.inner.registry.resolve(&r).await?;
        // A purged version is refused even when its files are in this cache:
        // purged means no longer served, wherever the bytes are.
        crate::domain::state::not_purged(&version)?;
        if let Some(policy) = &self.inner.options.trust {
            self.inner
                .registry
                .verify_signatures(version.reference(), policy)
                .await?
                .into_result()?;
        }
        let digest = version.artifact;
        // Fetch by digest, so an alias moving meanwhile cannot change the bytes.
        let pinned = VersionRef {
            model: r.model.clone(),
            selector: Selector::Digest(digest),
        };
        let root = self.inner.root.clone();
        let verify = self.inner.options.verify_on_open;
        let mut downloaded = false;
        let mut busy = 0u32;
        loop {
            // Wait for any downloader or evictor, then check the entry.
            let (root2, d) = (root.clone(), digest);
            let found = blocking(move || -> Result<(File, Check)> {
                let lock = lock_shared(&root2, &d)?;
                let check = check_entry(&root2, &d, verify)?;
                Ok((lock, check))
            })
            .await??;
            let check = match found {
                (lock, Check::Valid(manifest)) => {
                    // The entry's last use, for LRU; failing to record it only
                    // makes it look older.
                    if let Err(e) = lock.set_modified(SystemTime::now()) {
                        tracing::warn!(
                            entry = %entry_dir(&root, &digest).display(), error = %e,
                            "could not record a cache entry's use; it looks older to eviction"
                        );
                    }
                    let guard = CachedModel {
                        path: entry_dir(&root, &digest).join(FILES),
                        version,
                        manifest,
                        downloaded,
                        _lock: lock,
                    };
                    if downloaded {
                        // Best effort: the model is here; a failed eviction only
                        // leaves the cache over its limit until the next one.
                        if let Err(e) = self.evict().await {
                            tracing::warn!(
                                cache = %root.display(), error = %e,
                                "cache eviction failed; the cache may stay over its limit"
                            );
                        }
                    }
                    return Ok(guard);
                }
                (lock, check) => {
                    drop(lock);
                    check
                }
            };
            let (root2, d) = (root.clone(), digest);
            let exclusive = blocking(move || try_lock_exclusive(&lock_path(&root2, &d))).await??;
            let Some(exclusive) = exclusive else {
                // Someone else holds the entry: a downloader (the next shared lock
                // waits for it), or readers checking it, or a guard on an entry
                // that went bad under it.
                busy += 1;
                if busy >= MAX_BUSY {
                    return Err(match check {
                        Check::Invalid(reason) => Error::corrupt(
                            format!("cache entry {digest} in {}", root.display()),
                            format!(
                                "{reason}; it is in use, so it cannot be fetched again until released"
                            ),
                        ),
                        _ => Error::io(
                            lock_path(&root, &digest),
                            io::Error::new(
                                io::ErrorKind::WouldBlock,
                                format!(
                                    "cache entry {digest} stayed locked by others through {busy} attempts"
                                ),
                            ),
                        ),
                    });
                }
                let backoff = Duration::from_millis(u64::from(busy.min(20)));
                tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await;
                continue;
            };
            // Holding the exclusive lock: check again (another process may have just
            // published it), otherwise (re)fetch.
            let (root2, d) = (root.clone(), digest);
            let recheck = blocking(move || check_entry(&root2, &d, verify)).await??;
            if !matches!(recheck, Check::Valid(_)) {
                self.download(&pinned, &digest).await?;
                downloaded = true;
            }
            drop(exclusive);
        }
    }

    /// Fetches `digest` into its entry. The caller holds the entry's exclusive lock.
    async fn download(&self, pinned: &VersionRef, digest: &Digest) -> Result<()> {
        let root = self.inner.root.clone();
        let staging = root.join(TMP).join(digest.to_hex());
        {
            let (root, staging, d) = (root.clone(), staging.clone(), *digest);
            blocking(move || -> Result<()> {
                // Leftovers of a crashed download of this entry: ours to remove,
                // since we hold its lock.
                remove_if_exists(&staging)?;
                let entry = entry_dir(&root, &d);
                if fs::symlink_metadata(&entry).is_ok() {
                    discard(&root, &entry)?;
                }
                ensure_dir(&staging).map_err(|e| Error::io(&staging, e))
            })
            .await??;
        }
        let result = self.fill_and_publish(pinned, digest, &staging).await;
        if result.is_err() {
            let s = staging.clone();
            if let Err(e) = blocking(move || remove_if_exists(&s)).await.and_then(|r| r) {
                tracing::warn!(
                    dir = %staging.display(), error = %e,
                    "could not remove a failed download's staging directory"
                );
            }
        }
        result
    }

    async fn fill_and_publish(
        &self,
        pinned: &VersionRef,
        digest: &Digest,
        staging: &Path,
    ) -> Result<()> {
        let registry = &self.inner.registry;
        let manifest = registry.manifest(pinned).await?;
        let bytes = manifest.to_bytes();
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(Error::Integrity {
                what: format!("manifest of {pinned}"),
                expected: *digest,
                actual,
                location: None,
            });
        }
        // Under a trust policy the download also checks each file's SHA-256,
        // the digest the signatures cover (see `FetchOptions::trust`); `get`
        // has just verified the signatures, so they are not verified again.
        let mut fetch = FetchOptions::new().link(self.inner.options.link);
        fetch.check_sha256 = self.inner.options.trust.is_some();
        registry.fetch(pinned, staging.join(FILES), fetch).await?;
        let marker = Marker {
            format: MARKER_FORMAT,
            artifact: *digest,
            size: manifest.total_size(),
            files: manifest.len() as u64,
        };
        // A format number, a digest and two integers always serialize; were it to
        // fail, the entry is not finished (an empty marker would look damaged).
        let marker =
            serde_json::to_vec(&marker).map_err(|e| Error::io(staging.join(COMPLETE), e.into()))?;
        let (root, staging, d) = (self.inner.root.clone(), staging.to_owned(), *digest);
        blocking(move || -> Result<()> {
            let io = |p: &Path| {
                let p = p.to_owned();
                move |e| Error::io(p, e)
            };
            let m = staging.join(MANIFEST);
            write_new_file(&m, &bytes).map_err(io(&m))?;
            // Written last: an entry without it was never finished.
            let c = staging.join(COMPLETE);
            write_new_file(&c, &marker).map_err(io(&c))?;
            // `files/` was published durably by the fetch; the rest is synced here.
            let entry = entry_dir(&root, &d);
            publish_dir(&staging, &entry, false).map_err(io(&entry))
        })
        .await?
    }

    /// Evicts least recently used entries that nobody holds until the cache is
    /// within [`CacheOptions::max_bytes`]; also removes broken entries nobody
    /// holds. Runs after every download; call it to trim after lowering the limit.
    /// If another process is evicting at the same moment, returns at once with an
    /// empty report.
    pub async fn evict(&self) -> Result<EvictReport> {
        let (root, max) = (self.inner.root.clone(), self.inner.options.max_bytes);
        blocking(move || evict_blocking(&root, max)).await?
    }

    /// Every complete entry, least recently used first.
    pub async fn entries(&self) -> Result<Vec<CacheEntry>> {
        let root = self.inner.root.clone();
        blocking(move || {
            let mut entries: Vec<CacheEntry> = list_entries(&root)?
                .into_iter()
                .filter_map(|(artifact, size)| {
                    Some(CacheEntry {
                        artifact,
                        size: size?,
                        last_used: last_used(&root, &artifact),
                    })
                })
                .collect();
            entries.sort_by_key(|e| e.last_used);
            Ok(entries)
        })
        .await?
    }

    /// Bytes of all complete entries.
    pub async fn usage(&self) -> Result<u64> {
        Ok(self.entries().await?.iter().map(|e| e.size).sum())
    }

    /// Where the files of `artifact` are (or would be) cached. For tests and
    /// tooling; use [`get`](Self::get) to read them.
    pub fn entry_path(&self, artifact: &Digest) -> PathBuf {
        entry_dir(&self.inner.root, artifact).join(FILES)
    }
}

// ----- blocking helpers ------------------------------------------------------------

use crate::offload::offload as blocking;

fn entry_dir(root: &Path, d: &Digest) -> PathBuf {
    root.join(ENTRIES).join(d.to_hex())
}

fn lock_path(root: &Path, d: &Digest) -> PathBuf {
    root.join(LOCKS).join(format!("{}.lock", d.to_hex()))
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Whether the open `file` is still the one at `path`. An evictor deletes an
/// entry's lock file while holding it exclusively; whoever locked the old file
/// meanwhile holds a lock nobody else will see and must start over.
fn still_linked(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().map_err(|e| Error::io(path, e))?;
    match fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Takes a shared lock on `d`'s entry, waiting for an exclusive holder.
fn lock_shared(root: &Path, d: &Digest) -> Result<File> {
    let path = lock_path(root, d);
    loop {
        let file = open_lock_file(&path)?;
        file.lock_shared().map_err(|e| Error::io(&path, e))?;
        if still_linked(&file, &path)? {
            return Ok(file);
        }
    }
}

/// Takes the exclusive lock at `path` if nobody holds it.
fn try_lock_exclusive(path: &Path) -> Result<Option<File>> {
    loop {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => {
                if still_linked(&file, path)? {
                    return Ok(Some(file));
                }
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
    }
}

/// Checks an entry: marker, manifest, files' presence and sizes, and with `verify`
/// their digests. The caller holds the entry's lock (shared or exclusive).
fn check_entry(root: &Path, d: &Digest, verify: bool) -> Result<Check> {
    let entry = entry_dir(root, d);
    match fs::symlink_metadata(&entry) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Check::Missing),
        Err(e) => return Err(Error::io(&entry, e)),
    }
    let invalid = |why: String| Ok(Check::Invalid(why));
    let marker = match fs::read(entry.join(COMPLETE)) {
        Ok(bytes) => bytes,
        Err(_) => return invalid("no completion marker".into()),
    };
    match serde_json::from_slice::<Marker>(&marker) {
        Ok(m) if m.format == MARKER_FORMAT && m.artifact == *d => {}
        _ => return invalid("completion marker does not name this entry".into()),
    }
    let bytes = match fs::read(entry.join(MANIFEST)) {
        Ok(b) => b,
        Err(_) => return invalid("no manifest".into()),
    };
    if Digest::of(&bytes) != *d {
        return invalid("manifest does not hash to the entry's digest".into());
    }
    let manifest = match Manifest::from_bytes(&bytes) {
        Ok(m) => m,
        Err(e) => return invalid(format!("manifest: {e}")),
    };
    let files = entry.join(FILES);
    for e in manifest.entries() {
        let mut p = files.clone();
        p.extend(e.path.segments());
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.len() == e.size => {}
            Ok(m) if m.is_file() => {
                return invalid(format!(
                    "file '{}' has {} bytes, expected {}",
                    e.path,
                    m.len(),
                    e.size
                ));
            }
            _ => return invalid(format!("file '{}' is missing", e.path)),
        }
        if verify {
            match hash_file(&p, None) {
                Ok((actual, _)) if actual == e.digest => {}
                Ok((actual, _)) => {
                    return invalid(format!(
                        "file '{}' hashes to {actual}, expected {}",
                        e.path, e.digest
                    ));
                }
                Err(err) => return invalid(format!("file '{}': {err}", e.path)),
            }
        }
    }
    Ok(Check::Valid(manifest))
}

fn remove_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Moves `entry` out of `entries/` in one rename (so no reader sees it half
/// deleted), then deletes it.
fn discard(root: &Path, entry: &Path) -> Result<()> {
    let name = entry
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trash = root
        .join(TRASH)
        .join(format!("{name}-{:016x}", fastrand::u64(..)));
    fs::rename(entry, &trash).map_err(|e| Error::io(entry, e))?;
    // Best effort: the entry is gone from `entries/`; a failure leaves garbage in
    // the trash, swept at the next open.
    if let Err(e) = fs::remove_dir_all(&trash) {
        warn_left(&trash, &e);
    }
    Ok(())
}

/// Every directory in `entries/` with a digest for a name, with the size its
/// marker records (`None`: no readable marker, a broken entry).
fn list_entries(root: &Path) -> Result<Vec<(Digest, Option<u64>)>> {
    let dir = root.join(ENTRIES);
    let mut out = Vec::new();
    for item in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let item = item.map_err(|e| Error::io(&dir, e))?;
        let Some(d) = item
            .file_name()
            .to_str()
            .and_then(|n| Digest::from_hex(n).ok())
        else {
            continue;
        };
        let size = fs::read(item.path().join(COMPLETE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
            .filter(|m| m.format == MARKER_FORMAT && m.artifact == d)
            .map(|m| m.size);
        out.push((d, size));
    }
    Ok(out)
}

fn last_used(root: &Path, d: &Digest) -> SystemTime {
    fs::metadata(lock_path(root, d))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn evict_blocking(root: &Path, max_bytes: u64) -> Result<EvictReport> {
    let mut report = EvictReport::default();
    let evict_lock = root.join(EVICT_LOCK);
    let Some(_evicting) = try_lock_exclusive(&evict_lock)? else {
        return Ok(report);
    };
    let mut candidates: Vec<(SystemTime, Digest, Option<u64>)> = list_entries(root)?
        .into_iter()
        .map(|(d, size)| (last_used(root, &d), d, size))
        .collect();
    // Broken entries first (they hold no usable model), then least recently used.
    candidates.sort_by_key(|(t, d, size)| (size.is_some(), *t, *d));
    let mut total: u64 = candidates.iter().filter_map(|c| c.2).sum();
    for (_, d, size) in candidates {
        if size.is_some() && total <= max_bytes {
            break;
        }
        let lock = lock_path(root, &d);
        let Some(held) = try_lock_exclusive(&lock)? else {
            if size.is_some() {
                report.skipped_in_use += 1;
            }
            continue;
        };
        let entry = entry_dir(root, &d);
        if fs::symlink_metadata(&entry).is_ok() {
            discard(root, &entry)?;
        }
        // Deleted while held: whoever opened it meanwhile notices and starts over.
        if let Err(e) = fs::remove_file(&lock)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn_left(&lock, &e);
        }
        drop(held);
        if let Some(size) = size {
            total -= size;
            report.freed_bytes += size;
            report.evicted.push(d);
        }
    }
    report.remaining_bytes = total;
    Ok(report)
}

/// A file or directory the cache meant to remove is left behind (garbage that
/// the next open sweeps again, never a wrong model).
fn warn_left(path: &Path, error: &io::Error) {
    tracing::warn!(
        path = %path.display(), %error,
        "could not remove a cache leftover; it is swept again at the next open"
    );
}

/// Removes what crashed processes left: the trash, and staging directories whose
/// entry nobody holds.
fn sweep_leftovers(root: &Path) {
    if let Ok(items) = fs::read_dir(root.join(TRASH)) {
        for item in items.flatten() {
            if let Err(e) = fs::remove_dir_all(item.path()) {
                warn_left(&item.path(), &e);
            }
        }
    }
    if let Ok(items) = fs::read_dir(root.join(TMP)) {
        for item in items.flatten() {
            let Some(d) = item
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            if let Ok(Some(_held)) = try_lock_exclusive(&lock_path(root, &d))
                && let Err(e) = fs::remove_dir_all(item.path())
            {
                warn_left(&item.path(), &e);
            }
        }
    }
}
