//! A cache of file digests keyed by what the filesystem says about the file, so
//! re-registering an unchanged multi-GB file does not read it again.
//!
//! The key is (device, inode, size, modification time, change time), all to the
//! nanosecond. The change time (`ctime`) moves on every write and cannot be set
//! back by user tools (`touch` sets only `mtime`), so a file whose key is
//! unchanged has not been written. Entries are only stored when the file did not
//! change while it was hashed and its times are more than two seconds old: a file
//! written twice within one timestamp tick (the "racily clean" case git guards
//! against) is always hashed again.
//!
//! On disk: `<dir>/<key[0..2]>/<key>` holding two lines, the file's BLAKE3 digest
//! (`blake3:<hex>`) and its SHA-256 (`sha256:<hex>`), both of which a
//! registration records. Entries are written atomically but not fsynced: a lost
//! entry only costs a re-hash. A damaged or unreadable entry is a miss, and so is
//! one written before SHA-256 was recorded (the digest alone): the file is hashed
//! again once, and its entry replaced.

use std::fs::{self, Metadata};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, Sha256};
use crate::hashing::Hashed;
#[cfg(test)]
use crate::hashing::hash_file_with_sha256;
use crate::store::fsutil;

/// How old a file's times must be before its digest is cached.
const SETTLE: Duration = Duration::from_secs(2);

/// See the [module documentation](self).
#[derive(Debug, Clone)]
pub(crate) struct HashCache {
    dir: PathBuf,
}

impl HashCache {
    /// A cache in `dir` (created when the first entry is stored).
    pub(crate) fn new(dir: PathBuf) -> Self {
        HashCache { dir }
    }

    fn entry(&self, meta: &Metadata) -> PathBuf {
        let mut key = blake3::Hasher::new();
        key.update(b"modelreg hash cache v1");
        for n in [
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ] {
            key.update(&n.to_le_bytes());
        }
        let hex = key.finalize().to_hex();
        self.dir.join(&hex[..2]).join(hex.as_str())
    }

    fn get(&self, meta: &Metadata) -> Option<(Digest, Sha256)> {
        let entry = self.entry(meta);
        match fs::read_to_string(&entry) {
            Ok(text) => parse_entry(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(
                    entry = %entry.display(), error = %e,
                    "could not read a hash cache entry; the file will be hashed again"
                );
                None
            }
        }
    }

    fn put(&self, meta: &Metadata, digest: &Digest, sha256: &Sha256) {
        let target = self.entry(meta);
        let tmp = self.dir.join("tmp");
        // Best effort: a failed write only means the next registration hashes again.
        if let Err(e) = fsutil::publish(&target, &tmp, fsutil::PublishMode::Replace, |f| {
            f.write_all(format!("{digest}\n{SHA256_PREFIX}{sha256}\n").as_bytes())
        }) {
            tracing::warn!(
                entry = %target.display(), error = %e,
                "could not write a hash cache entry; the file will be hashed again"
            );
        }
    }

    /// The cached hashes and size of the file at `path` (`Ok`), or, on a miss, its
    /// metadata now (`Err`), to hand to [`remember`](Self::remember) once the file
    /// is hashed. Blocking.
    pub(crate) fn lookup(&self, path: &Path) -> std::io::Result<Result<Hashed, Metadata>> {
        let before = fs::metadata(path)?;
        Ok(match self.get(&before) {
            Some((digest, sha256)) => Ok(Hashed {
                digest,
                sha256,
                size: before.len(),
            }),
            None => Err(before),
        })
    }

    /// Records that the file at `path`, whose metadata was `before` when hashing
    /// began, hashed to `hashed` — only if the file did not change meanwhile and is
    /// old enough (see the module documentation). Blocking.
    pub(crate) fn remember(&self, path: &Path, before: &Metadata, hashed: &Hashed) {
        if let Ok(after) = fs::metadata(path)
            && unchanged(before, &after)
            && hashed.size == after.len()
            && settled(&after)
        {
            self.put(&after, &hashed.digest, &hashed.sha256);
        }
    }

    /// Hashes `path`, or returns the cached hashes of an unchanged file. Blocking.
    #[cfg(test)]
    pub(crate) fn hash(&self, path: &Path) -> std::io::Result<Hashed> {
        let before = match self.lookup(path)? {
            Ok(hit) => return Ok(hit),
            Err(before) => before,
        };
        let hashed = hash_file_with_sha256(path, None)?;
        self.remember(path, &before, &hashed);
        Ok(hashed)
    }
}

/// How an entry's second line starts.
const SHA256_PREFIX: &str = "sha256:";

/// The digest and SHA-256 of an entry's text; `None` for anything else (an
/// entry of the digest alone, from before SHA-256 was recorded, included).
fn parse_entry(text: &str) -> Option<(Digest, Sha256)> {
    let mut lines = text.lines();
    let digest = lines.next()?.parse().ok()?;
    let sha256 = lines.next()?.strip_prefix(SHA256_PREFIX)?.parse().ok()?;
    lines.next().is_none().then_some((digest, sha256))
}

fn unchanged(a: &Metadata, b: &Metadata) -> bool {
    (
        a.dev(),
        a.ino(),
        a.size(),
        a.mtime(),
        a.mtime_nsec(),
        a.ctime(),
        a.ctime_nsec(),
    ) == (
        b.dev(),
        b.ino(),
        b.size(),
        b.mtime(),
        b.mtime_nsec(),
        b.ctime(),
        b.ctime_nsec(),
    )
}

fn settled(meta: &Metadata) -> bool {
    let Some(now) = SystemTime::now().checked_sub(SETTLE) else {
        return false;
    };
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
    meta.modified().is_ok_and(|m| m <= now) && ctime <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits until a file just written is old enough to be cached (its ctime
    /// cannot be set back, so there is no shortcut).
    fn settle() {
        std::thread::sleep(SETTLE + Duration::from_millis(100));
    }

    #[test]
    fn caches_unchanged_files_and_misses_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::new(dir.path().join("cache"));
        let file = dir.path().join("weights.bin");
        fs::write(&file, b"version one").unwrap();
        let one = (Digest::of(b"version one"), Sha256::of(b"version one"));
        // Too fresh to cache: hashed, not stored.
        let hashed = cache.hash(&file).unwrap();
        assert_eq!((hashed.digest, hashed.sha256), one);
        assert!(cache.get(&fs::metadata(&file).unwrap()).is_none());
        settle();
        assert_eq!(cache.hash(&file).unwrap().digest, one.0);
        let meta = fs::metadata(&file).unwrap();
        assert_eq!(cache.get(&meta), Some(one));

        // A planted wrong entry shows the cache is really used for this key...
        cache.put(&meta, &Digest::of(b"planted"), &Sha256::of(b"planted"));
        let hashed = cache.hash(&file).unwrap();
        assert_eq!(
            (hashed.digest, hashed.sha256),
            (Digest::of(b"planted"), Sha256::of(b"planted"))
        );
        // ...and any write (same size, even with mtime put back) changes the key.
        let mtime = meta.modified().unwrap();
        fs::write(&file, b"version two").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            cache.hash(&file).unwrap().digest,
            Digest::of(b"version two")
        );
    }

    /// An entry as builds before SHA-256 wrote it (the digest's text alone) is a
    /// miss: the file is hashed again and the entry replaced by one with both.
    #[test]
    fn an_entry_without_sha256_is_a_miss_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::new(dir.path().join("cache"));
        let file = dir.path().join("weights.bin");
        fs::write(&file, b"weights").unwrap();
        settle();
        let meta = fs::metadata(&file).unwrap();
        // A planted digest-only entry, with a wrong digest so a hit would show.
        let entry = cache.entry(&meta);
        fs::create_dir_all(entry.parent().unwrap()).unwrap();
        fs::write(&entry, Digest::of(b"planted").to_string()).unwrap();
        assert!(cache.get(&meta).is_none());
        assert!(cache.lookup(&file).unwrap().is_err());
        let hashed = cache.hash(&file).unwrap();
        assert_eq!(hashed.digest, Digest::of(b"weights"));
        assert_eq!(hashed.sha256, Sha256::of(b"weights"));
        assert_eq!(
            cache.get(&meta),
            Some((Digest::of(b"weights"), Sha256::of(b"weights")))
        );
        assert_eq!(
            fs::read_to_string(&entry).unwrap(),
            format!(
                "{}\nsha256:{}\n",
                Digest::of(b"weights"),
                Sha256::of(b"weights")
            )
        );
    }

    #[test]
    fn damaged_entries_are_misses() {
        let d = Digest::of(b"x");
        let s = Sha256::of(b"x");
        assert_eq!(parse_entry(&format!("{d}\nsha256:{s}\n")), Some((d, s)));
        assert_eq!(parse_entry(&format!("{d}\nsha256:{s}")), Some((d, s)));
        for bad in [
            String::new(),
            d.to_string(),
            format!("{d}\n"),
            format!("{d}\n{s}\n"),
            format!("{d}\nsha256:{}\n", &s.to_hex()[..60]),
            format!("{d}\nsha256:{s}\nmore\n"),
            format!("sha256:{s}\n{d}\n"),
        ] {
            assert_eq!(parse_entry(&bad), None, "{bad:?}");
        }
    }
}
