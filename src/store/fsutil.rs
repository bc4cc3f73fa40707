//! Durable local-file primitives shared by the local stores and fetch.
//!
//! [`publish`] is the one place that turns bytes into a visible file: write to a temp
//! file, `sync_all`, then rename (replace) or hard link (create-only) into place,
//! then fsync the directory. [`publish_dir`] does the same for a staged directory
//! (a fetch, a cache entry), and [`sync_new_file`] for a file written in place (an
//! object store's download). No call site repeats those steps; callers check
//! digests, these functions only make what was checked visible and durable. All
//! functions block: call them from a blocking thread.
//!
//! # The mutation seam
//!
//! Every change the local stores make to their directory trees goes through the
//! few functions at the end of this module ([`create_new`], [`sync_file`],
//! [`hard_link`], [`rename`], [`remove_file`], `create_dir`, [`sync_dir`]), never
//! through `std::fs` directly. In test builds each of them also reports the change
//! to the power-loss simulator (`store::power_loss`), which replays the trace to
//! build the directory trees a power cut could leave; in other builds they are the
//! plain `std::fs` calls. (Test builds also skip the real fsyncs below a directory
//! the simulator owns: there the model, not the disk, decides what is durable.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// How [`publish`] puts the finished temp file into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishMode {
    /// Create the target only if it does not exist (hard link, which fails on an
    /// existing name atomically).
    CreateNew,
    /// Replace the target if it exists (rename).
    Replace,
    /// Replace the target if it exists (rename), syncing nothing: the new file is
    /// visible to every reader at once, and whole (the rename is atomic), but a
    /// crash of the machine may lose it, or leave it empty or torn. For records
    /// that die with their writer (leases), whose readers treat a damaged one as
    /// left by a crash.
    ReplaceVisible,
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
/// path, e.g. to hash the file once written, or fill it across several calls). The
/// publishing steps still live in one place, [`TempFile::publish`], which
/// [`publish`] itself uses.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    file: File,
    /// Whether the temp name still has to be removed on drop.
    armed: bool,
    /// Whether [`sync`](Self::sync) made the content durable already.
    synced: AtomicBool,
}

impl TempFile {
    /// Creates a uniquely named, empty temp file in `dir` (creating `dir` if needed).
    pub(crate) fn create(dir: &Path) -> io::Result<Self> {
        let (path, file) = create_temp(dir)?;
        Ok(TempFile {
            path,
            file,
            armed: true,
            synced: AtomicBool::new(false),
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
            match hard_link(original, &path) {
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
                    synced: AtomicBool::new(false),
                }),
                Err(e) => {
                    remove_temp(&path);
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

    /// The open temp file, for reading (from several threads at once).
    pub(crate) fn file_ref(&self) -> &File {
        &self.file
    }

    /// Makes the content durable now, so that [`publish`](Self::publish) need not:
    /// e.g. on one thread while another reads the file. Nothing may be written to
    /// the file after it.
    pub(crate) fn sync(&self) -> io::Result<()> {
        sync_file(&self.file, &self.path)?;
        self.synced.store(true, Ordering::Release);
        Ok(())
    }

    /// Syncs the temp file (unless [`sync`](Self::sync) did), moves it to
    /// `target` as `mode` says, and syncs `target`'s directory (created if
    /// missing). The temp name is gone afterwards, whatever the outcome.
    ///
    /// The file's fsync comes before its new name: a name that survives a power
    /// cut never shows missing bytes. Directories created for the target have
    /// their names synced after the link, at the same time as the target's
    /// directory ([`sync_dirs`]); nothing is acknowledged before all of them are
    /// durable.
    pub(crate) fn publish(mut self, target: &Path, mode: PublishMode) -> io::Result<Published> {
        self.file.flush()?;
        let parent = target
            .parent()
            .ok_or_else(|| io::Error::other("publish target has no parent directory"))?;
        // Missing directories are made before the file's fsync, not after: a
        // new directory is harmless before anything is linked into it, and made
        // now its entry rides in the journal commit that fsync forces, instead
        // of a `mkdir` waiting for that commit to end (measured on ext4: up to
        // 1.5 ms per new blob shard) and then needing one of its own.
        let unsynced = if mode == PublishMode::ReplaceVisible {
            ensure_dir(parent)?;
            Vec::new()
        } else {
            create_dirs(parent)?
        };
        if mode != PublishMode::ReplaceVisible && !self.synced.load(Ordering::Acquire) {
            sync_file(&self.file, &self.path)?;
        }
        let published = match mode {
            PublishMode::Replace | PublishMode::ReplaceVisible => {
                rename(&self.path, target)?;
                // The temp name is the target now: removing it would remove the target.
                self.armed = false;
                Published::Written
            }
            PublishMode::CreateNew => match hard_link(&self.path, target) {
                Ok(()) => Published::Written,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Published::AlreadyExists,
                Err(e) => return Err(e),
            },
        };
        // Whether or not the target was written, the caller relies on the
        // directories (an existing target is only as durable as they are).
        let written = published == Published::Written && mode != PublishMode::ReplaceVisible;
        settle_dirs(written.then_some(parent), unsynced)?;
        Ok(published)
    }
}

/// Publishes several temp files create-only (an existing target is success,
/// as [`TempFile::publish`] with [`PublishMode::CreateNew`]): each is synced
/// (unless [`TempFile::sync`] did) and linked to its target, then every
/// target directory is synced at once ([`sync_dirs`]), so a batch costs one
/// directory fsync per directory instead of one per file. Nothing of the batch
/// is acknowledged before all of it is durable; a caller that needs one batch
/// durable before another (packs before their indexes) publishes them in turn.
pub(crate) fn publish_all(files: Vec<(TempFile, PathBuf)>) -> io::Result<()> {
    let mut targets: Vec<PathBuf> = Vec::new();
    let mut unsynced = Vec::new();
    for (mut tmp, target) in files {
        tmp.file.flush()?;
        if !tmp.synced.load(Ordering::Acquire) {
            sync_file(&tmp.file, &tmp.path)?;
        }
        let parent = target
            .parent()
            .ok_or_else(|| io::Error::other("publish target has no parent directory"))?;
        unsynced.extend(create_dirs(parent)?);
        match hard_link(&tmp.path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // Synced whether or not this file was the one linked: the caller
        // relies on the directory (see `TempFile::publish`).
        if !targets.iter().any(|t| t == parent) {
            targets.push(parent.to_owned());
        }
    }
    let parents = unsynced
        .iter()
        .filter_map(|d| d.parent().filter(|p| !p.as_os_str().is_empty()));
    let mut to_sync: Vec<&Path> = targets.iter().map(PathBuf::as_path).collect();
    for p in parents {
        if !to_sync.contains(&p) {
            to_sync.push(p);
        }
    }
    sync_dirs(&to_sync)?;
    durable_dirs().extend(unsynced);
    Ok(())
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a hard link (or an error) the temp name is removed here. Failing to
        // remove it leaves garbage, never wrong data.
        if self.armed {
            remove_temp(&self.path);
        }
    }
}

/// Removes a temp file, best effort: one left behind is garbage (gc removes it
/// once stale), never wrong data, so a failure is logged and not returned.
fn remove_temp(path: &Path) {
    match remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => tracing::warn!(
            file = %path.display(), error = %e,
            "could not remove a temp file; gc removes it once stale"
        ),
        _ => {}
    }
}

/// Creates a uniquely named, empty temp file in `dir` (creating `dir` if needed).
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    ensure_dir(dir)?;
    loop {
        let path = dir.join(temp_name());
        match create_new(&path) {
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

/// Removes the temp files in `dir` (names made by [`TempFile::create`]) not
/// modified for `older_than`; returns how many and their size. A file that
/// vanishes meanwhile (its writer published or removed it) is skipped.
pub(crate) fn remove_stale_temps(
    dir: &Path,
    older_than: std::time::Duration,
) -> io::Result<super::TempSweep> {
    let mut swept = super::TempSweep::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(swept),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let idle = meta
            .modified()?
            .elapsed()
            .unwrap_or(std::time::Duration::ZERO);
        if !meta.is_file() || idle < older_than {
            continue;
        }
        match remove_file(&entry.path()) {
            Ok(()) => {
                swept.files += 1;
                swept.bytes += meta.len();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(swept)
}

/// Creates `dir` and its missing ancestors, and makes sure each of their names is
/// durable: its parent is synced once per process, whoever created it.
///
/// Syncing only when this call created the directory is not enough: another
/// thread or process may have created it a moment ago and not yet synced its
/// parent, and a file published into it now and acknowledged could be lost with
/// the directory in a power cut. So the first time a process relies on a
/// directory it syncs the parent itself; the directories known durable are kept
/// in a process-wide set, so later calls cost one lookup.
///
/// Every missing level is created first, then the parents are synced, all at
/// once (one thread each): each sync makes one name durable and none depends on
/// another, so a new two-level blob shard costs one directory fsync's wait, not
/// two. Nothing is known durable, or returned, before all of them are done.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if known_durable(dir) {
        return Ok(());
    }
    // `dir` and its ancestors up to the first one known durable, innermost first.
    let mut levels = vec![dir];
    while let Some(parent) = levels
        .last()
        .and_then(|level| level.parent())
        .filter(|p| !p.as_os_str().is_empty())
    {
        if known_durable(parent) {
            break;
        }
        levels.push(parent);
    }
    for level in levels.iter().rev() {
        match create_dir(level) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && level.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    let parents: Vec<&Path> = levels
        .iter()
        .filter_map(|level| level.parent().filter(|p| !p.as_os_str().is_empty()))
        .collect();
    sync_dirs(&parents)?;
    let mut known = durable_dirs();
    for level in levels {
        known.insert(level.to_owned());
    }
    Ok(())
}

/// Creates `dir` like [`ensure_dir`] and the directories `names` in it, and
/// makes their names durable with one fsync of `dir`, whoever created them (as
/// [`ensure_dir`] does, for the same reason); then remembers them as durable,
/// so that [`TempFile::publish`] into one of them creates and syncs no
/// directory but its target's. Nothing is remembered unless all of it is done.
pub(crate) fn ensure_subdirs(
    dir: &Path,
    names: impl IntoIterator<Item = impl AsRef<Path>>,
) -> io::Result<()> {
    ensure_dir(dir)?;
    let subdirs: Vec<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
    {
        let known = durable_dirs();
        if subdirs.iter().all(|d| known.contains(d)) {
            return Ok(());
        }
    }
    for sub in &subdirs {
        match create_dir(sub) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && sub.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(dir)?;
    durable_dirs().extend(subdirs);
    Ok(())
}

/// Creates `dir` and its missing ancestors like [`ensure_dir`], but leaves the
/// fsyncs that make their names durable to the caller: returns the directories
/// (deepest first) whose names are not known durable yet, for [`settle_dirs`]
/// once the caller has created what it wants inside. Until then a power cut may
/// take them, and whatever is in them, away; so nothing created in them may be
/// acknowledged before `settle_dirs` returns.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut unsynced = Vec::new();
    let mut next = Some(dir);
    // Walk up to the first directory known durable (or the root), then create
    // downwards.
    while let Some(d) = next.filter(|d| !d.as_os_str().is_empty() && !known_durable(d)) {
        unsynced.push(d.to_owned());
        next = d.parent();
    }
    for d in unsynced.iter().rev() {
        match create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(unsynced)
}

/// Syncs `target_dir` (if any) and makes the names of `dirs` (as
/// [`create_dirs`] returned them) durable by syncing each one's parent, all at
/// once ([`sync_dirs`]); then remembers `dirs` as durable.
fn settle_dirs(target_dir: Option<&Path>, dirs: Vec<PathBuf>) -> io::Result<()> {
    let parents = dirs
        .iter()
        .filter_map(|d| d.parent().filter(|p| !p.as_os_str().is_empty()));
    let to_sync: Vec<&Path> = target_dir.into_iter().chain(parents).collect();
    sync_dirs(&to_sync)?;
    // Only now: another thread must not skip a sync this call has not done yet.
    durable_dirs().extend(dirs);
    Ok(())
}

/// Syncs every directory in `dirs`, concurrently: a thread each beyond the
/// first (one after the other where no thread can be
/// started). On ext4 each directory fsync forces a journal commit, one after the
/// other when called in turn; concurrent ones share a commit (measured here:
/// three directory fsyncs in a row 10 ms, at once 5 ms, medians of 60).
/// Fails if any sync failed, after all of them ended.
pub(crate) fn sync_dirs(dirs: &[&Path]) -> io::Result<()> {
    let Some((first, rest)) = dirs.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        return sync_dir(first);
    }
    std::thread::scope(|scope| {
        let spawned: Vec<_> = rest
            .iter()
            .map(|dir| {
                let handle = std::thread::Builder::new()
                    .name("modelreg-fsync".into())
                    .spawn_scoped(scope, || sync_dir(dir));
                (dir, handle)
            })
            .collect();
        let mut synced = sync_dir(first);
        for (dir, handle) in spawned {
            let result = match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => sync_dir(dir),
            };
            synced = synced.and(result);
        }
        synced
    })
}

/// Directories whose names this process has made durable (see [`ensure_dir`]).
fn durable_dirs() -> std::sync::MutexGuard<'static, std::collections::HashSet<PathBuf>> {
    static DIRS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    DIRS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `dir` is known durable and still there (it may have been removed and
/// created again since, by someone else).
fn known_durable(dir: &Path) -> bool {
    if !durable_dirs().contains(dir) {
        return false;
    }
    if dir.is_dir() {
        return true;
    }
    durable_dirs().remove(dir);
    false
}

/// Makes a file just written at `path` durable: its data, then its name (by
/// syncing its directory). For files written in place rather than published,
/// such as a blob an object store downloads straight to its destination.
pub(crate) fn sync_new_file(file: &File, path: &Path) -> io::Result<()> {
    sync_file(file, path)?;
    sync_dir(parent_or_dot(path))
}

/// Publishes the directory `staging`, whose files are complete and synced, as
/// `target`: syncs `staging` (or, with `whole_tree`, every directory below it
/// too), renames it to `target`, then syncs `target`'s parent. A reader sees no
/// `target` or all of it, and after a crash a published `target` has every entry.
/// `target` must not exist, or be an empty directory (which is replaced; removing
/// it fails if it is not empty). `staging` must be on `target`'s filesystem.
pub(crate) fn publish_dir(staging: &Path, target: &Path, whole_tree: bool) -> io::Result<()> {
    if whole_tree {
        sync_tree(staging)?;
    } else {
        sync_dir(staging)?;
    }
    if target.is_dir() {
        fs::remove_dir(target)?;
    }
    rename(staging, target)?;
    sync_dir(parent_or_dot(target))
}

/// Syncs `dir` and every directory below it, deepest first.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// The directory holding `path` (`.` for a bare name).
fn parent_or_dot(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to the new file `path` (which must not exist) and syncs it.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = create_new(path)?;
    f.write_all(bytes)?;
    sync_file(&f, path)
}

// ---------------------------------------------------------------------------------
// The mutation seam: the only `std::fs` calls that change a store's tree.
// Each reports a change only once it has succeeded: a failed call changed nothing.
// ---------------------------------------------------------------------------------

/// Creates the new, empty file `path` for writing; fails if the name exists.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    #[cfg(test)]
    super::power_loss::record_create(path);
    Ok(file)
}

/// Syncs `file` (open at `path`), making its content durable — but not its name,
/// which is durable once its directory is synced.
pub(crate) fn sync_file(file: &File, path: &Path) -> io::Result<()> {
    #[cfg(test)]
    if super::power_loss::skips_syncs(path) {
        super::power_loss::record_sync_file(path);
        return Ok(());
    }
    file.sync_all()?;
    #[cfg(test)]
    super::power_loss::record_sync_file(path);
    #[cfg(not(test))]
    let _ = path;
    Ok(())
}

/// Gives the file `from` the new name `to`; fails if `to` exists.
pub(crate) fn hard_link(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    #[cfg(test)]
    super::power_loss::record_link(from, to);
    Ok(())
}

/// Renames `from` to `to`, replacing `to` atomically if it exists.
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    #[cfg(test)]
    super::power_loss::record_rename(from, to);
    Ok(())
}

/// Removes the name `path` (the file goes when its last name and handle do).
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    #[cfg(test)]
    super::power_loss::record_remove(path);
    Ok(())
}

/// Creates the directory `path`, whose parent exists. Use [`ensure_dir`], which
/// also makes the new name durable.
pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    fs::create_dir(path)?;
    #[cfg(test)]
    super::power_loss::record_mkdir(path);
    Ok(())
}

/// Syncs a directory, making the names created or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    if super::power_loss::skips_syncs(dir) {
        super::power_loss::record_sync_dir(dir);
        return Ok(());
    }
    File::open(dir)?.sync_all()?;
    #[cfg(test)]
    super::power_loss::record_sync_dir(dir);
    Ok(())
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
