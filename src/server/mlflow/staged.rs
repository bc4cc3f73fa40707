//! The lifetime of staged MLflow uploads (`<staging>/mlflow-artifacts/`).
//!
//! Three parties change that tree: uploads publish files into it, a
//! registration that succeeded removes its source from it ("consumes" it),
//! and the sweep removes what nobody registered within the maximum age. Two
//! locks keep them apart, always taken in this order:
//!
//! - `tree` is held shared while an upload creates its directories and
//!   renames its file in, and exclusively while anything is removed, so a
//!   removal never takes a directory an upload is about to rename into, nor
//!   a file that was replaced by a fresh upload a moment ago.
//! - `in_use` counts the registrations reading each staged path. Neither a
//!   consumption nor the sweep removes a path that overlaps one in use; a
//!   registration claims its source (and checks that it exists) under it.
//!
//! Both are only ever taken on blocking threads.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use super::artifacts::{STAGED, STAGED_TMP};
use crate::server::State;
use crate::server::staging;
use crate::store::fsutil::{self, PublishMode, TempFile};

/// Where a consumed source is renamed to, in [`STAGED_TMP`], before it is
/// removed: `consumed-<pid>-<random>` (a server that dies between the two
/// steps leaves one; the sweep removes those whose process is gone).
const CONSUMED: &str = "consumed-";

/// The locks of one server's staged uploads (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct StagedUploads {
    tree: RwLock<()>,
    in_use: Mutex<HashMap<String, usize>>,
}

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Staged files not modified for the maximum age.
    pub(crate) files: u64,
    /// Their size.
    pub(crate) bytes: u64,
    /// Temp files of uploads cut off by a crash, and consumed sources a dead
    /// server left.
    pub(crate) leftovers: u64,
}

/// Whether one of two staged paths (relative, `/`-separated) is the other or
/// lies below it.
fn overlaps(a: &str, b: &str) -> bool {
    let below = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || below(a, b) || below(b, a)
}

impl StagedUploads {
    fn in_use(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.in_use.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn busy(&self, rel: &str) -> bool {
        self.in_use().keys().any(|used| overlaps(used, rel))
    }

    /// Publishes an upload's complete temp file at `target` (replacing an
    /// earlier upload of the same path). Blocks.
    pub(super) fn publish(&self, tmp: TempFile, target: &Path) -> io::Result<()> {
        let _shared = self.tree.read().unwrap_or_else(PoisonError::into_inner);
        tmp.publish(target, PublishMode::Replace)?;
        Ok(())
    }

    /// Claims the staged path `rel` (below `root`) for a registration, if
    /// something is staged there: its metadata, or `None`. Blocks.
    pub(super) fn claim(&self, root: &Path, rel: &str) -> io::Result<Option<std::fs::Metadata>> {
        let mut in_use = self.in_use();
        match std::fs::symlink_metadata(root.join(rel)) {
            Ok(meta) => {
                *in_use.entry(rel.to_owned()).or_insert(0) += 1;
                Ok(Some(meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends a registration's claim on `rel`.
    fn release(&self, rel: &str) {
        let mut in_use = self.in_use();
        if let Some(n) = in_use.get_mut(rel) {
            *n -= 1;
            if *n == 0 {
                in_use.remove(rel);
            }
        }
    }

    /// Ends a successful registration's claim and removes `rel` from the
    /// staged tree, unless another registration is reading it (or a path
    /// overlapping it): the last one to finish removes it. The source is
    /// renamed out of the tree first, so it disappears at once and whole,
    /// then deleted; directories it leaves empty go too. Blocks.
    fn consume(&self, staging: &Path, rel: &str) -> io::Result<bool> {
        let root = staging.join(STAGED);
        let away = staging.join(STAGED_TMP).join(format!(
            "{CONSUMED}{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        {
            let _exclusive = self.tree.write().unwrap_or_else(PoisonError::into_inner);
            self.release(rel);
            if self.busy(rel) {
                return Ok(false);
            }
            let source = root.join(rel);
            fsutil::ensure_dir(away.parent().unwrap_or(staging))?;
            match fsutil::rename(&source, &away) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            let parent = source.parent().unwrap_or(&root);
            fsutil::sync_dirs(&[parent, away.parent().unwrap_or(staging)])?;
            prune_empty_dirs(&root, parent);
        }
        remove_any(&away)?;
        Ok(true)
    }

    /// Removes the staged files not modified for `max_age` (except below a
    /// path a registration is reading) and the directories that leaves
    /// empty; the temp files of uploads older than that; and consumed sources
    /// whose server died before deleting them. Blocks.
    pub(crate) fn sweep(&self, staging: &Path, max_age: Duration) -> io::Result<Swept> {
        let mut swept = Swept::default();
        let tmp = staging.join(STAGED_TMP);
        swept.leftovers += fsutil::remove_stale_temps(&tmp, max_age)?.files;
        for (entry, _) in entries(&tmp)? {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(CONSUMED))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if pid.is_some_and(staging::process_gone) && remove_any(&entry.path()).is_ok() {
                swept.leftovers += 1;
            }
        }
        let root = staging.join(STAGED);
        let mut stale = Vec::new();
        let mut dirs = Vec::new();
        walk(&root, &root, max_age, &mut stale, &mut dirs)?;
        for (path, rel) in stale {
            let _exclusive = self.tree.write().unwrap_or_else(PoisonError::into_inner);
            if self.busy(&rel) {
                continue;
            }
            // Looked at again under the lock: an upload may have replaced it.
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_dir() && idle(&meta) >= max_age {
                match fsutil::remove_file(&path) {
                    Ok(()) => {
                        swept.files += 1;
                        swept.bytes += meta.len();
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // Deepest first, so a directory emptied by its children goes too.
        dirs.sort_by_key(|(_, rel)| std::cmp::Reverse(rel.matches('/').count()));
        for (path, rel) in dirs {
            let _exclusive = self.tree.write().unwrap_or_else(PoisonError::into_inner);
            if !self.busy(&rel) {
                // Fails, leaving it, unless it is empty.
                let _ = std::fs::remove_dir(&path);
            }
        }
        Ok(swept)
    }
}

/// Sweeps the staged uploads now, then every quarter of
/// `staged_upload_max_age` (at least 1 s, at most 1 h), until the server
/// stops. A failed sweep is logged and tried again next time.
pub(crate) async fn sweep_periodically(state: State) {
    let max_age = state.options.staged_upload_max_age;
    let every = (max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut stopping = state.stopping.subscribe();
    loop {
        let shared = state.clone();
        let staging = state.staging_dir();
        let swept =
            tokio::task::spawn_blocking(move || shared.staged.sweep(&staging, max_age)).await;
        match swept {
            Ok(Ok(s)) if s == Swept::default() => {}
            Ok(Ok(s)) => tracing::info!(
                files = s.files,
                bytes = s.bytes,
                leftovers = s.leftovers,
                ?max_age,
                "removed staged MLflow uploads nobody registered"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping the staged MLflow uploads failed"),
            Err(e) => tracing::warn!(error = %e, "sweeping the staged MLflow uploads failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// A registration's hold on its staged source: released when dropped, or
/// [consumed](Claim::consumed) once the version is registered.
pub(super) struct Claim {
    state: State,
    rel: String,
    live: bool,
}

impl Claim {
    pub(super) fn new(state: &State, rel: String) -> Self {
        Claim {
            state: state.clone(),
            rel,
            live: true,
        }
    }

    /// The version was registered from the source: its staged files are no
    /// longer needed and are removed (see [`StagedUploads::consume`]). A
    /// failure only leaves them for the sweep, so it is logged, not returned.
    pub(super) async fn consumed(mut self) {
        self.live = false;
        let state = self.state.clone();
        let rel = std::mem::take(&mut self.rel);
        let staging = state.staging_dir();
        let done =
            tokio::task::spawn_blocking(move || state.staged.consume(&staging, &rel).map(|_| rel))
                .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "could not remove a registered upload's staged files; the sweep removes them once stale"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "removing a registered upload's staged files failed")
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.live {
            self.state.staged.release(&self.rel);
        }
    }
}

/// How long ago `meta`'s file was last modified (zero if in the future).
fn idle(meta: &std::fs::Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or(Duration::ZERO)
}

/// Collects the entries below `dir` not modified for `max_age` (other than
/// directories) and every directory below `root`, each with its path
/// relative to `root`.
fn walk(
    root: &Path,
    dir: &Path,
    max_age: Duration,
    stale: &mut Vec<(PathBuf, String)>,
    dirs: &mut Vec<(PathBuf, String)>,
) -> io::Result<()> {
    for (entry, meta) in entries(dir)? {
        let path = entry.path();
        let Some(rel) = path
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &path, max_age, stale, dirs)?;
            dirs.push((path, rel));
        } else if idle(&meta) >= max_age {
            stale.push((path, rel));
        }
    }
    Ok(())
}

/// The entries of `dir` with their metadata, skipping those removed while
/// listed; a missing `dir` (or a file) has none.
pub(super) fn entries(dir: &Path) -> io::Result<Vec<(std::fs::DirEntry, std::fs::Metadata)>> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry?;
        match entry.metadata() {
            Ok(meta) => out.push((entry, meta)),
            // Replaced or removed while listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Removes the empty directories from `dir` up to (not including) `root`.
fn prune_empty_dirs(root: &Path, mut dir: &Path) {
    while dir != root && dir.starts_with(root) && std::fs::remove_dir(dir).is_ok() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => break,
        }
    }
}

/// Removes a file or a whole directory; one already gone is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn write(path: &Path, age: Duration) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"bytes").unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn overlapping_paths() {
        assert!(overlaps("a/b", "a/b"));
        assert!(overlaps("a", "a/b"));
        assert!(overlaps("a/b/c", "a/b"));
        assert!(!overlaps("a/b", "a/bc"));
        assert!(!overlaps("a/bc", "a/b"));
        assert!(!overlaps("x", "y"));
    }

    #[test]
    fn the_sweep_removes_only_stale_unclaimed_files() {
        let staging = tempfile::tempdir().unwrap();
        let root = staging.path().join(STAGED);
        let day = Duration::from_secs(24 * 3600);
        write(&root.join("old/a/model.bin"), 2 * day);
        write(&root.join("old/b.txt"), 2 * day);
        write(&root.join("mixed/old.bin"), 2 * day);
        write(&root.join("mixed/fresh.bin"), Duration::ZERO);
        write(&root.join("claimed/x/old.bin"), 2 * day);
        let tmp = staging.path().join(STAGED_TMP);
        let dead = tmp.join(format!("{CONSUMED}4294967294-00ab"));
        write(&dead.join("f.bin"), Duration::ZERO);
        let mine = tmp.join(format!("{CONSUMED}{}-00cd", std::process::id()));
        write(&mine.join("f.bin"), Duration::ZERO);

        let staged = StagedUploads::default();
        assert!(staged.claim(&root, "claimed/x").unwrap().is_some());
        assert!(staged.claim(&root, "never/uploaded").unwrap().is_none());
        let swept = staged.sweep(staging.path(), day).unwrap();
        assert_eq!((swept.files, swept.bytes, swept.leftovers), (3, 15, 1));
        assert!(!root.join("old").exists(), "emptied directories go too");
        assert!(!root.join("mixed/old.bin").exists());
        assert!(root.join("mixed/fresh.bin").exists());
        assert!(root.join("claimed/x/old.bin").exists());
        assert!(!dead.exists() && mine.exists());
        assert!(root.exists(), "the root stays");

        // Released, the claimed file is swept like any other.
        staged.release("claimed/x");
        assert_eq!(staged.sweep(staging.path(), day).unwrap().files, 1);
        assert!(!root.join("claimed").exists());
    }

    #[test]
    fn consuming_removes_the_source_unless_another_registration_reads_it() {
        let staging = tempfile::tempdir().unwrap();
        let root = staging.path().join(STAGED);
        write(&root.join("up/x/model.bin"), Duration::ZERO);
        write(&root.join("up/x/conf/c.json"), Duration::ZERO);
        write(&root.join("up/y/model.bin"), Duration::ZERO);
        let staged = StagedUploads::default();
        assert!(staged.claim(&root, "up/x").unwrap().is_some());
        assert!(staged.claim(&root, "up").unwrap().is_some());
        // `up` is still being read: `up/x` stays.
        assert!(!staged.consume(staging.path(), "up/x").unwrap());
        assert!(root.join("up/x/model.bin").exists());
        assert!(staged.consume(staging.path(), "up").unwrap());
        assert!(!root.join("up").exists());
        assert!(root.exists());
        let tmp = staging.path().join(STAGED_TMP);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert!(staged.in_use().is_empty());
    }
}
