//! Durable local-file primitives shared by the local stores and fetch.
//!
//! [`publish`] is the one place that turns bytes into a visible file: write to a temp
//! file, `sync_all`, then rename (replace) or hard link (create-only) into place,
//! then fsync the directory. No call site repeats those steps. All functions block:
//! call them from a blocking thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How [`publish`] puts the finished temp file into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishMode {
    /// Create the target only if it does not exist (hard link, which fails on an
    /// existing name atomically).
    CreateNew,
    /// Replace the target if it exists (rename).
    Replace,
}

/// What [`publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// The target now holds the new bytes.
    Written,
    /// [`PublishMode::CreateNew`] found the target already there; nothing changed.
    AlreadyExists,
}

/// Atomically and durably publishes a file at `target`.
///
/// `fill` writes the content into a fresh temp file created in `tmp_dir` (which must
/// be on the same filesystem as `target`). The temp file is synced, moved into place
/// as `mode` says, and `target`'s directory (created if missing) is synced. On any
/// error, and when the target already existed, the temp file is removed. Whatever
/// happens, a reader sees either no `target` or a complete one.
pub(crate) fn publish<T>(
    target: &Path,
    tmp_dir: &Path,
    mode: PublishMode,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<(Published, T)> {
    let mut tmp = TempFile::create(tmp_dir)?;
    let value = fill(tmp.file())?;
    let published = tmp.publish(target, mode)?;
    Ok((published, value))
}

/// A temp file that is removed when dropped unless [`publish`](Self::publish) moved
/// it into place.
///
/// For writers that do not fit [`publish`]'s closure (they need the temp file's
/// path, e.g. to hash it by memory map, or fill it across several calls). The
/// publishing steps still live in one place, [`TempFile::publish`], which
/// [`publish`] itself uses.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    file: File,
    /// Whether the temp name still has to be removed on drop.
    armed: bool,
}

impl TempFile {
    /// Creates a uniquely named, empty temp file in `dir` (creating `dir` if needed).
    pub(crate) fn create(dir: &Path) -> io::Result<Self> {
        let (path, file) = create_temp(dir)?;
        Ok(TempFile {
            path,
            file,
            armed: true,
        })
    }

    /// A new temp name in `dir` (created if needed) for the existing file
    /// `original`, by hard link, opened for reading. [`publish`](Self::publish)
    /// then links that same inode into place. Fails (leaving nothing) where hard
    /// links cannot be made, e.g. across filesystems.
    pub(crate) fn hard_link_of(dir: &Path, original: &Path) -> io::Result<Self> {
        ensure_dir(dir)?;
        loop {
            let path = dir.join(temp_name());
            match fs::hard_link(original, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            return match File::open(&path) {
                // From here on, dropping the temp file removes the name again.
                Ok(file) => Ok(TempFile {
                    path,
                    file,
                    armed: true,
                }),
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    Err(e)
                }
            };
        }
    }

    /// The temp file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open temp file, for writing.
    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the temp file, moves it to `target` as `mode` says, and syncs
    /// `target`'s directory (created if missing). The temp name is gone afterwards,
    /// whatever the outcome.
    pub(crate) fn publish(mut self, target: &Path, mode: PublishMode) -> io::Result<Published> {
        self.file.flush()?;
        self.file.sync_all()?;
        let parent = target
            .parent()
            .ok_or_else(|| io::Error::other("publish target has no parent directory"))?;
        ensure_dir(parent)?;
        let published = match mode {
            PublishMode::Replace => {
                fs::rename(&self.path, target)?;
                // The temp name is the target now: removing it would remove the target.
                self.armed = false;
                Published::Written
            }
            PublishMode::CreateNew => match fs::hard_link(&self.path, target) {
                Ok(()) => Published::Written,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Published::AlreadyExists,
                Err(e) => return Err(e),
            },
        };
        if published == Published::Written {
            sync_dir(parent)?;
        }
        Ok(published)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a hard link (or an error) the temp name is removed here. Failing to
        // remove it leaves garbage, never wrong data.
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a uniquely named, empty temp file in `dir` (creating `dir` if needed).
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    ensure_dir(dir)?;
    loop {
        let path = dir.join(temp_name());
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A fresh temp file name.
fn temp_name() -> String {
    format!(
        "{TEMP_PREFIX}{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    )
}

/// How every temp file name starts, so listings can tell them from data.
const TEMP_PREFIX: &str = ".tmp-";

/// Creates `dir` and its missing ancestors, syncing each parent in which a
/// directory was created, so the new directories survive a crash.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Syncs a directory, making the names created or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to the new file `path` (which must not exist) and syncs it.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_new_does_not_replace_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let target = dir.path().join("a/b/c");
        let (p, ()) = publish(&target, &tmp, PublishMode::CreateNew, |f| {
            f.write_all(b"one")
        })
        .unwrap();
        assert_eq!(p, Published::Written);
        let (p, ()) = publish(&target, &tmp, PublishMode::CreateNew, |f| {
            f.write_all(b"two")
        })
        .unwrap();
        assert_eq!(p, Published::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"one");
        let (p, ()) = publish(&target, &tmp, PublishMode::Replace, |f| {
            f.write_all(b"three")
        })
        .unwrap();
        assert_eq!(p, Published::Written);
        assert_eq!(fs::read(&target).unwrap(), b"three");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn failed_fill_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let target = dir.path().join("t");
        let err = publish(
            &target,
            &tmp,
            PublishMode::CreateNew,
            |f| -> io::Result<()> {
                f.write_all(b"partial")?;
                Err(io::Error::other("boom"))
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "boom");
        assert!(!target.exists());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
