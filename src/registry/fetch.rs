//! Reading artifacts back: manifests, verified fetches into a directory, and
//! verification of stored blobs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use futures::StreamExt;

use super::ingest::blocking;
use crate::digest::Digest;
use crate::domain::{Manifest, ManifestEntry};
use crate::error::{Error, Result};
use crate::hashing::hash_file_with_sha256;
use crate::progress::{FileProgress, Progress, ProgressExt};
use crate::store::{ArtifactStore, LinkMode, Materialized};

/// The largest manifest the registry reads (a million files fit well below it).
const MAX_MANIFEST_BYTES: usize = 512 << 20;

/// Reads, verifies and decodes the manifest stored under `digest`.
pub(crate) async fn load_manifest(store: &dyn ArtifactStore, digest: &Digest) -> Result<Manifest> {
    let mut stream = store.get(digest).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::blob_not_found(*digest, format!("manifest blob {digest}")),
        e => e,
    })?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > MAX_MANIFEST_BYTES {
            return Err(Error::corrupt(
                format!("manifest {digest}"),
                format!("larger than {MAX_MANIFEST_BYTES} bytes"),
            )
            .at(|| store.location(digest)));
        }
    }
    let buf = buf.freeze();
    let actual = digest_of(buf.clone()).await?;
    if actual != *digest {
        return Err(Error::Integrity {
            what: format!("manifest {digest}"),
            expected: *digest,
            actual,
            location: Some(store.location(digest)),
        });
    }
    Manifest::from_bytes(&buf).map_err(|e| e.at(|| store.location(digest)))
}

/// Bytes up to this size are hashed where they are (about 30 µs of BLAKE3);
/// larger ones on the blocking pool, so an async worker never hashes for long.
pub(crate) const HASH_INLINE_MAX: usize = 64 << 10;

/// The digest of `bytes`, hashed on the blocking pool when they are large.
pub(crate) async fn digest_of(bytes: bytes::Bytes) -> Result<Digest> {
    if bytes.len() <= HASH_INLINE_MAX {
        return Ok(Digest::of(&bytes));
    }
    super::ingest::blocking(move || Digest::of(&bytes)).await
}

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchReport {
    /// The directory that now holds the files.
    pub path: PathBuf,
    /// How many files were written.
    pub files: u64,
    /// How many bytes they hold.
    pub bytes: u64,
    /// How many of them were placed by reflink or hard link rather than copied.
    pub linked: u64,
}

/// What a verification checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// Files whose blobs were re-hashed (the manifest itself not counted).
    pub files: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
}

/// Writes every file of `manifest` below `dest`, verified.
///
/// Files are placed in a staging directory beside `dest`; the store hashes each one
/// from what it wrote there ([`Placed`](crate::store::Placed)), and only when every
/// file matches its manifest entry is the staging directory renamed to `dest`.
/// On any failure, and if the future is dropped before it finishes, the staging
/// directory is removed ([`Staging`]), so `dest` either holds the whole verified
/// artifact or is left as it was. `dest` must not exist, or be an empty
/// directory. `what` names the version in error messages; `progress` hears of
/// each file once it is verified.
///
/// With `check_sha256`, every placed file is also hashed with SHA-256 and
/// compared with its manifest entry's (where it has one) before anything is
/// published: a fetch under a trust policy checks the digests the signatures
/// cover, not only the BLAKE3 ones the store is keyed by.
pub(crate) async fn fetch_into(
    store: &dyn ArtifactStore,
    manifest: &Manifest,
    dest: &Path,
    link: LinkMode,
    what: &str,
    progress: Option<&Progress>,
    check_sha256: bool,
) -> Result<FetchReport> {
    let dest = dest.to_owned();
    // The guard is made where the directory is: a fetch dropped while the
    // blocking pool creates it still removes it (the guard is the task's output,
    // dropped with it).
    let staging = {
        let dest = dest.clone();
        blocking(move || prepare_staging(&dest)).await??
    };
    progress.started(manifest.len() as u64, manifest.total_size());
    let placed = match place_all(store, manifest, staging.path(), link, what, progress).await {
        Ok(linked) if check_sha256 => {
            let (dir, entries, what) = (
                staging.path().to_owned(),
                manifest.entries().to_vec(),
                what.to_owned(),
            );
            blocking(move || sha256_matches(&dir, &entries, &what))
                .await
                .and_then(|checked| checked)
                .map(|()| linked)
        }
        placed => placed,
    };
    match placed {
        Ok(linked) => {
            // Publishing and removing after a failed publish run in one task, so a
            // fetch dropped meanwhile cannot remove the directory mid-rename.
            let published = {
                let dest = dest.clone();
                blocking(move || {
                    publish_dir(staging.path(), &dest)?;
                    staging.published();
                    Ok::<_, Error>(())
                })
            };
            published.await??;
            Ok(FetchReport {
                path: dest,
                files: manifest.len() as u64,
                bytes: manifest.total_size(),
                linked,
            })
        }
        Err(e) => {
            // Removed on the blocking pool, not by the guard's drop on this worker.
            // Should the pool not run it (the runtime is shutting down), the
            // closure is dropped, and the guard with it.
            let _ = blocking(move || drop(staging)).await;
            Err(e)
        }
    }
}

/// A fetch's staging directory, removed when dropped unless it was published.
///
/// Dropping it removes the directory where it is dropped, synchronously: on the
/// blocking pool after a failure, but on an async worker when the fetch's future
/// is dropped (cancelled), since a drop cannot wait for the pool and the caller
/// must find no staging directory once the future is gone. Cancellation is rare,
/// and a staging directory holds one version's files.
struct Staging {
    path: PathBuf,
    published: bool,
}

impl Staging {
    fn path(&self) -> &Path {
        &self.path
    }

    /// The directory was renamed to its destination: nothing to remove.
    fn published(mut self) {
        self.published = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            remove_staging(&self.path);
        }
    }
}

/// Removes a staging directory that will not be published, with a warning if it
/// cannot.
///
/// It is first renamed out of the way: a fetch dropped while the blocking pool
/// places a file leaves that work running, and a file it creates through the old
/// name after `remove_dir_all` listed the directory would make the removal fail.
/// Through a name that no longer exists, creating fails instead. (Nothing below
/// creates the staging directory itself again: see [`create_parents`].)
fn remove_staging(staging: &Path) {
    let mut doomed = staging.as_os_str().to_owned();
    doomed.push("-removing");
    let doomed = PathBuf::from(doomed);
    let target = match fs::rename(staging, &doomed) {
        Ok(()) => doomed,
        // Published after all, or already removed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(_) => staging.to_owned(),
    };
    match fs::remove_dir_all(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            dir = %target.display(), error = %e,
            "could not remove a failed or cancelled fetch's staging directory"
        ),
    }
}

async fn place_all(
    store: &dyn ArtifactStore,
    manifest: &Manifest,
    staging: &Path,
    link: LinkMode,
    what: &str,
    progress: Option<&Progress>,
) -> Result<u64> {
    let mut linked = 0;
    for entry in manifest.entries() {
        // RelPath has no absolute, `.`, `..` or empty segments, and the staging
        // directory is ours and new, so every target stays inside it.
        let mut target = staging.to_path_buf();
        target.extend(entry.path.segments());
        if entry.path.segments().nth(1).is_some() {
            let (staging, segments) = (staging.to_owned(), entry.path.clone());
            blocking(move || create_parents(&staging, segments.segments())).await??;
        }
        let file = FileProgress::new(progress, entry.size);
        let placed = file
            .track(store.materialize(&entry.digest, &target, link))
            .await
            .map_err(|e| match e {
                Error::NotFound { .. } => Error::blob_not_found(
                    entry.digest,
                    format!("blob {} (file '{}' of {what})", entry.digest, entry.path),
                ),
                e => e,
            })?;
        if placed.how != Materialized::Copied {
            linked += 1;
        }
        // The store hashed what it placed, reading it back from the target.
        if placed.digest != entry.digest || placed.size != entry.size {
            return Err(Error::Integrity {
                what: format!("file '{}' of {what}", entry.path),
                expected: entry.digest,
                actual: placed.digest,
                location: Some(store.location(&entry.digest)),
            });
        }
        file.done(entry.path.as_str(), entry.size);
    }
    Ok(linked)
}

/// Checks the SHA-256 of each file placed below `staging` against its entry's,
/// where the entry has one: [`Error::Signature`] with
/// [`SignatureFailure::FilesMismatch`](crate::SignatureFailure::FilesMismatch)
/// naming the first file that differs.
fn sha256_matches(staging: &Path, entries: &[ManifestEntry], what: &str) -> Result<()> {
    for entry in entries {
        let Some(expected) = entry.sha256 else {
            continue;
        };
        let mut path = staging.to_path_buf();
        path.extend(entry.path.segments());
        let hashed = hash_file_with_sha256(&path, None).map_err(|e| Error::io(&path, e))?;
        if hashed.sha256 != expected {
            return Err(Error::Signature {
                what: format!("file '{}' of {what}", entry.path),
                failure: crate::SignatureFailure::FilesMismatch,
                reason: format!(
                    "its SHA-256 is {}, not the {expected} its manifest lists and its signatures cover",
                    hashed.sha256
                ),
            });
        }
    }
    Ok(())
}

/// Creates the directories that hold the file at `segments` below `staging`, but
/// never `staging` itself: once a cancelled fetch has moved it away to remove it
/// ([`remove_staging`]), placing a file still under way must fail, not make it
/// again.
fn create_parents<'a>(staging: &Path, segments: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut segments = segments.peekable();
    let mut dir = staging.to_path_buf();
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            break;
        }
        dir.push(segment);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    Ok(())
}

/// Checks `dest` and creates a fresh staging directory beside it.
fn prepare_staging(dest: &Path) -> Result<Staging> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::already_exists(format!(
                    "non-empty destination directory {}",
                    dest.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(Error::already_exists(format!(
                "destination {} (a file)",
                dest.display()
            )));
        }
        Err(e) => return Err(Error::io(dest, e)),
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fetch".into());
    loop {
        let staging = parent.join(format!(".{name}.modelreg-{:016x}", fastrand::u64(..)));
        match fs::create_dir(&staging) {
            Ok(()) => {
                return Ok(Staging {
                    path: staging,
                    published: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&staging, e)),
        }
    }
}

/// Renames the verified `staging` directory to `dest`, durably (every directory
/// below it synced first, so a crash after return cannot leave `dest` with
/// missing entries). `dest` was checked empty when staging began; if that
/// changed, removing it fails.
fn publish_dir(staging: &Path, dest: &Path) -> Result<()> {
    crate::store::fsutil::publish_dir(staging, dest, true).map_err(|e| Error::io(dest, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256;
    use crate::domain::RelPath;
    use crate::store::{ArtifactStoreExt, MemoryArtifactStore};

    /// A manifest whose BLAKE3 column was rewritten to name other bytes, with
    /// the SHA-256 column (what a signature covers) left as signed: fetched
    /// as usual it passes (the store's own check is BLAKE3), under a trust
    /// policy's SHA-256 check it fails and nothing is published.
    #[tokio::test]
    async fn the_sha256_check_catches_bytes_the_blake3_column_was_rewritten_for() {
        let store = MemoryArtifactStore::new();
        let (signed, swapped) = (
            b"the weights that were signed",
            b"other weights, same size!!!",
        );
        let digest = store
            .put_bytes(bytes::Bytes::from_static(swapped))
            .await
            .unwrap();
        let entry = |sha256| ManifestEntry {
            path: RelPath::new("dir/model.bin").unwrap(),
            size: swapped.len() as u64,
            digest,
            sha256,
        };
        let forged = Manifest::new(vec![entry(Some(Sha256::of(signed)))]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fetch = |manifest: Manifest, dest: PathBuf, check| {
            let store = store.clone();
            async move {
                fetch_into(
                    &store,
                    &manifest,
                    &dest,
                    LinkMode::Copy,
                    "fraud/3",
                    None,
                    check,
                )
                .await
            }
        };

        let plain = fetch(forged.clone(), dir.path().join("plain"), false).await;
        assert!(plain.is_ok(), "{plain:?}");
        let err = fetch(forged, dir.path().join("trusted"), true)
            .await
            .unwrap_err();
        match &err {
            Error::Signature {
                failure,
                what,
                reason,
            } => {
                assert_eq!(*failure, crate::SignatureFailure::FilesMismatch);
                assert!(
                    what.contains("dir/model.bin") && what.contains("fraud/3"),
                    "{what}"
                );
                assert!(
                    reason.contains(&Sha256::of(swapped).to_string()),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["plain"], "nothing published, no staging left");

        // The true SHA-256, or none recorded (an old manifest): it passes.
        for sha in [Some(Sha256::of(swapped)), None] {
            let m = Manifest::new(vec![entry(sha)]).unwrap();
            let dest = dir.path().join(format!("ok-{}", sha.is_some()));
            assert!(fetch(m, dest.clone(), true).await.is_ok());
            assert_eq!(fs::read(dest.join("dir/model.bin")).unwrap(), swapped);
        }
    }
}
