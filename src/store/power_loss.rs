//! Power-loss simulation for the local stores (test builds only).
//!
//! A SIGKILL keeps the page cache, so it never loses a write that was not synced;
//! a power cut does. This module models what a power cut may leave, in the manner
//! of LevelDB's `FaultInjectionTestEnv` and of redb's crash-consistency backend
//! (live versus durable state), applied to directory trees:
//!
//! 1. **Record.** While a [`Recorder`] is active for a root directory, every
//!    mutation the stores make below it through the [`fsutil`](super::fsutil) seam
//!    (create, fsync file, hard link, rename, remove, mkdir, fsync directory) is
//!    appended to a trace, after it succeeded on the real filesystem. A file's
//!    bytes are read when it is fsynced (writes themselves are not traced).
//! 2. **Replay.** [`Replay`] applies the trace one operation at a time to a model
//!    of inodes. A file inode knows the content of its last fsync and whether it
//!    may have been written since. A directory inode keeps, for each name, the
//!    values (inode or absent) the name has had since the directory's last fsync;
//!    the first of them is the durable one, the last the live one.
//! 3. **Cut.** After any prefix of the trace, [`Replay::uncertain`] lists what a
//!    power cut leaves undecided, and [`Replay::image`] builds the tree for one
//!    decision of each:
//!    - a name changed since its directory's last fsync takes *any* of the values
//!      it had since (the durable one, the live one, or one in between), each name
//!      independently — so a new entry may vanish, a removed one come back, a
//!      renamed file appear under both names or its target keep the old file (a
//!      rename never leaves the target missing if it existed before: every value
//!      of that name is a file);
//!    - a directory whose own name does not survive takes its whole subtree with
//!      it, synced or not;
//!    - a file not fsynced since it was created (or brought in from outside the
//!      root) holds what its last fsync wrote (nothing if none), zeros, a prefix
//!      of its last known bytes, or all of them.
//!
//!    Synced data under synced names always survives. This is the POSIX contract,
//!    and more pessimistic than ext4 or XFS, whose journals keep metadata changes
//!    in order: a store correct here is correct there.
//!
//! Not modelled: writes after a file's fsync (the stores never write to a file
//! after syncing it), metadata such as permissions and times, and a directory's
//! fsync failing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One traced mutation; paths are relative to the recorder's root, as components
/// (an empty path is the root itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A new, empty file.
    Create(Vec<String>),
    /// A file's content made durable: its bytes at that moment.
    SyncFile(Vec<String>, Vec<u8>),
    /// A second name for an existing file.
    Link(Vec<String>, Vec<String>),
    /// A file from outside the root gets a name inside it (hard link or rename
    /// in); its content, read then, is not known to be durable.
    Import(Vec<String>, Vec<u8>),
    /// A name moves (replacing the target's file, if any).
    Rename(Vec<String>, Vec<String>),
    /// A name is removed (or renamed out of the root).
    Remove(Vec<String>),
    /// A new, empty directory.
    Mkdir(Vec<String>),
    /// A directory's names made durable.
    SyncDir(Vec<String>),
}

/// Decides which traced calls a [`Recorder`] leaves out of its trace, as if the
/// store had never made them (e.g. every directory fsync under `metadata/`): a
/// way to check that the simulation notices a missing fsync.
pub(crate) type Omit = fn(&Op) -> bool;

#[derive(Debug)]
struct Recording {
    root: PathBuf,
    omit: Option<Omit>,
    ops: Mutex<Vec<Op>>,
}

/// How many recordings are active: the hooks return at once when none is.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static RECORDINGS: Mutex<Vec<Arc<Recording>>> = Mutex::new(Vec::new());
/// Directories below which the real fsyncs are skipped, and how many there are.
static NO_SYNC: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static NO_SYNC_ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// While it lives, `fsutil` skips the real fsyncs below a directory (still
/// tracing them): for trees whose durability the model decides (a traced run)
/// or that are thrown away (a tree built after a cut), so that a sweep is not
/// bound by the disk's fsync latency.
#[derive(Debug)]
pub(crate) struct SkipSyncs(PathBuf);

impl SkipSyncs {
    /// Skips the real fsyncs below `root`.
    pub(crate) fn below(root: &Path) -> SkipSyncs {
        lock(&NO_SYNC).push(root.to_owned());
        NO_SYNC_ACTIVE.fetch_add(1, Ordering::SeqCst);
        SkipSyncs(root.to_owned())
    }
}

impl Drop for SkipSyncs {
    fn drop(&mut self) {
        let mut roots = lock(&NO_SYNC);
        if let Some(i) = roots.iter().position(|r| *r == self.0) {
            roots.swap_remove(i);
        }
        NO_SYNC_ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the real fsync of `path` is skipped.
pub(crate) fn skips_syncs(path: &Path) -> bool {
    NO_SYNC_ACTIVE.load(Ordering::Relaxed) > 0
        && lock(&NO_SYNC).iter().any(|root| path.starts_with(root))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Traces the mutations below one directory while it lives.
///
/// Several recorders (for different roots, e.g. in tests running in parallel) may
/// be active at once; each sees only the paths below its root.
#[derive(Debug)]
pub(crate) struct Recorder {
    recording: Arc<Recording>,
}

impl Recorder {
    /// Starts tracing below `root`, an existing directory whose current content
    /// counts as durable.
    pub(crate) fn start(root: &Path) -> Recorder {
        Recorder::start_omitting(root, None)
    }

    /// Like [`start`](Self::start), leaving the calls `omit` picks out of the trace.
    pub(crate) fn start_omitting(root: &Path, omit: Option<Omit>) -> Recorder {
        let recording = Arc::new(Recording {
            root: root.to_owned(),
            omit,
            ops: Mutex::new(Vec::new()),
        });
        lock(&RECORDINGS).push(Arc::clone(&recording));
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Recorder { recording }
    }

    /// How many operations are traced so far.
    pub(crate) fn len(&self) -> usize {
        lock(&self.recording.ops).len()
    }

    /// The trace so far.
    pub(crate) fn ops(&self) -> Vec<Op> {
        lock(&self.recording.ops).clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        lock(&RECORDINGS).retain(|r| !Arc::ptr_eq(r, &self.recording));
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `path` as components relative to `root`, if it is below it (or is it).
fn relative(root: &Path, path: &Path) -> Option<Vec<String>> {
    let rest = path.strip_prefix(root).ok()?;
    rest.components()
        .map(|c| match c {
            Component::Normal(name) => name.to_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// Appends the op `make` builds (from the paths relative to each active root) to
/// every recording that `paths` concern.
fn record(paths: &[&Path], make: impl Fn(&[Option<Vec<String>>]) -> Option<Op>) {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    for recording in lock(&RECORDINGS).iter() {
        let rel: Vec<Option<Vec<String>>> =
            paths.iter().map(|p| relative(&recording.root, p)).collect();
        if rel.iter().all(Option::is_none) {
            continue;
        }
        if let Some(op) = make(&rel)
            && !recording.omit.is_some_and(|omit| omit(&op))
        {
            lock(&recording.ops).push(op);
        }
    }
}

/// Reads a file for the trace; a file the simulator cannot read is a broken test.
fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("power-loss trace: read {}: {e}", path.display()))
}

pub(crate) fn record_create(path: &Path) {
    record(&[path], |rel| rel[0].clone().map(Op::Create));
}

pub(crate) fn record_sync_file(path: &Path) {
    record(&[path], |rel| {
        rel[0].clone().map(|p| Op::SyncFile(p, read(path)))
    });
}

pub(crate) fn record_link(from: &Path, to: &Path) {
    record(&[from, to], |rel| match (&rel[0], &rel[1]) {
        (Some(f), Some(t)) => Some(Op::Link(f.clone(), t.clone())),
        (None, Some(t)) => Some(Op::Import(t.clone(), read(to))),
        // A link out of the root changes nothing below it.
        _ => None,
    });
}

pub(crate) fn record_rename(from: &Path, to: &Path) {
    record(&[from, to], |rel| match (&rel[0], &rel[1]) {
        (Some(f), Some(t)) => Some(Op::Rename(f.clone(), t.clone())),
        (None, Some(t)) => Some(Op::Import(t.clone(), read(to))),
        (Some(f), None) => Some(Op::Remove(f.clone())),
        (None, None) => None,
    });
}

pub(crate) fn record_remove(path: &Path) {
    record(&[path], |rel| rel[0].clone().map(Op::Remove));
}

pub(crate) fn record_mkdir(path: &Path) {
    record(&[path], |rel| rel[0].clone().map(Op::Mkdir));
}

pub(crate) fn record_sync_dir(path: &Path) {
    record(&[path], |rel| rel[0].clone().map(Op::SyncDir));
}

// ---------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------

type Ino = usize;

#[derive(Clone, Debug)]
enum Inode {
    File {
        /// What its last fsync made durable (`None`: never synced).
        synced: Option<Arc<[u8]>>,
        /// Whether it may hold bytes that were not synced (created or imported
        /// since the last fsync).
        dirty: bool,
        /// The last bytes seen (at an fsync or an import).
        known: Option<Arc<[u8]>>,
    },
    Dir {
        /// Per name, the values it had since the directory's last fsync: the
        /// first is durable, the last is live. Never empty.
        names: BTreeMap<String, Vec<Option<Ino>>>,
    },
}

/// Something a power cut leaves undecided.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Undecided {
    /// A name in a directory, which may take any of `options` values.
    Name(Ino, String, usize),
    /// The content of an unsynced file, one of [`CONTENT_OPTIONS`] variants.
    Content(Ino),
}

impl Undecided {
    /// How many outcomes it has.
    pub(crate) fn options(&self) -> usize {
        match self {
            Undecided::Name(_, _, n) => *n,
            Undecided::Content(_) => CONTENT_OPTIONS,
        }
    }
}

/// Outcomes for an unsynced file: the last synced bytes (or none), zeros, a
/// prefix of the last known bytes, all of them.
const CONTENT_OPTIONS: usize = 4;
/// Length of the zeros standing for an unsynced file whose bytes were never seen.
const UNKNOWN_LEN: usize = 512;

/// A directory tree as a power cut left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tree {
    /// A directory and its entries.
    Dir(BTreeMap<String, Tree>),
    /// A file and its bytes.
    File(Vec<u8>),
}

impl Tree {
    /// Writes the tree's entries into the existing directory `at`.
    pub(crate) fn materialize(&self, at: &Path) -> std::io::Result<()> {
        let Tree::Dir(entries) = self else {
            return Err(std::io::Error::other("the root of a tree is a directory"));
        };
        for (name, entry) in entries {
            let path = at.join(name);
            match entry {
                Tree::Dir(_) => {
                    fs::create_dir(&path)?;
                    entry.materialize(&path)?;
                }
                Tree::File(bytes) => fs::write(&path, bytes)?,
            }
        }
        Ok(())
    }

    /// The entry at `path` (components), if any.
    pub(crate) fn get(&self, path: &[&str]) -> Option<&Tree> {
        let mut at = self;
        for name in path {
            let Tree::Dir(entries) = at else {
                return None;
            };
            at = entries.get(*name)?;
        }
        Some(at)
    }

    /// The paths of all files, `/`-joined.
    pub(crate) fn files(&self) -> Vec<String> {
        fn walk(tree: &Tree, prefix: &str, out: &mut Vec<String>) {
            match tree {
                Tree::File(_) => out.push(prefix.to_owned()),
                Tree::Dir(entries) => {
                    for (name, entry) in entries {
                        let path = if prefix.is_empty() {
                            name.clone()
                        } else {
                            format!("{prefix}/{name}")
                        };
                        walk(entry, &path, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self, "", &mut out);
        out
    }
}

/// The trace applied to a model of inodes; see the [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct Replay {
    inodes: Vec<Inode>,
}

const ROOT: Ino = 0;

impl Default for Replay {
    fn default() -> Self {
        Replay {
            inodes: vec![Inode::Dir {
                names: BTreeMap::new(),
            }],
        }
    }
}

impl Replay {
    /// A model of an empty, durable root directory.
    pub(crate) fn new() -> Self {
        Replay::default()
    }

    fn names(&mut self, dir: Ino) -> &mut BTreeMap<String, Vec<Option<Ino>>> {
        match &mut self.inodes[dir] {
            Inode::Dir { names } => names,
            Inode::File { .. } => panic!("power-loss model: inode {dir} is not a directory"),
        }
    }

    /// The live inode at `path`.
    fn resolve(&self, path: &[String]) -> Ino {
        let mut at = ROOT;
        for name in path {
            let Inode::Dir { names } = &self.inodes[at] else {
                panic!("power-loss model: {path:?}: a file where a directory belongs");
            };
            at = names
                .get(name)
                .and_then(|values| *values.last().expect("never empty"))
                .unwrap_or_else(|| panic!("power-loss model: {path:?} does not exist"));
        }
        at
    }

    /// Sets the live value of the name `path`.
    fn set(&mut self, path: &[String], value: Option<Ino>) {
        let (name, parent) = path
            .split_last()
            .expect("power-loss model: the root has no name");
        let dir = self.resolve(parent);
        let values = self.names(dir).entry(name.clone()).or_insert(vec![None]);
        if values.last() != Some(&value) {
            values.push(value);
        }
    }

    fn new_inode(&mut self, inode: Inode) -> Ino {
        self.inodes.push(inode);
        self.inodes.len() - 1
    }

    /// Applies one traced operation.
    pub(crate) fn apply(&mut self, op: &Op) {
        match op {
            Op::Create(path) => {
                let ino = self.new_inode(Inode::File {
                    synced: None,
                    dirty: true,
                    known: None,
                });
                self.set(path, Some(ino));
            }
            Op::Import(path, bytes) => {
                let ino = self.new_inode(Inode::File {
                    synced: None,
                    dirty: true,
                    known: Some(bytes.as_slice().into()),
                });
                self.set(path, Some(ino));
            }
            Op::SyncFile(path, bytes) => {
                let ino = self.resolve(path);
                let bytes: Arc<[u8]> = bytes.as_slice().into();
                match &mut self.inodes[ino] {
                    Inode::File {
                        synced,
                        dirty,
                        known,
                    } => {
                        *synced = Some(Arc::clone(&bytes));
                        *known = Some(bytes);
                        *dirty = false;
                    }
                    Inode::Dir { .. } => panic!("power-loss model: {path:?} is a directory"),
                }
            }
            Op::Link(from, to) => {
                let ino = self.resolve(from);
                self.set(to, Some(ino));
            }
            Op::Rename(from, to) => {
                if from != to {
                    let ino = self.resolve(from);
                    self.set(to, Some(ino));
                    self.set(from, None);
                }
            }
            Op::Remove(path) => self.set(path, None),
            Op::Mkdir(path) => {
                let ino = self.new_inode(Inode::Dir {
                    names: BTreeMap::new(),
                });
                self.set(path, Some(ino));
            }
            Op::SyncDir(path) => {
                let dir = self.resolve(path);
                let names = self.names(dir);
                names.retain(|_, values| values.last().is_some_and(Option::is_some));
                for values in names.values_mut() {
                    values.drain(..values.len() - 1);
                }
            }
        }
    }

    /// What a power cut now leaves undecided, among everything reachable from the
    /// root by any outcome, in a stable order.
    pub(crate) fn uncertain(&self) -> Vec<Undecided> {
        let mut out = Vec::new();
        let mut seen = vec![false; self.inodes.len()];
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if std::mem::replace(&mut seen[ino], true) {
                continue;
            }
            match &self.inodes[ino] {
                Inode::File { dirty, .. } => {
                    if *dirty {
                        out.push(Undecided::Content(ino));
                    }
                }
                Inode::Dir { names } => {
                    for (name, values) in names {
                        if values.len() > 1 {
                            out.push(Undecided::Name(ino, name.clone(), values.len()));
                        }
                        stack.extend(values.iter().flatten());
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The tree a power cut leaves when each of `undecided` (from
    /// [`uncertain`](Self::uncertain)) has the outcome at the same index of
    /// `outcomes`.
    pub(crate) fn image(&self, undecided: &[Undecided], outcomes: &[usize]) -> Tree {
        let mut names = BTreeMap::new();
        let mut contents = BTreeMap::new();
        for (u, &o) in undecided.iter().zip(outcomes) {
            match u {
                Undecided::Name(dir, name, _) => {
                    names.insert((*dir, name.as_str()), o);
                }
                Undecided::Content(ino) => {
                    contents.insert(*ino, o);
                }
            }
        }
        self.build(ROOT, &names, &contents, 0)
    }

    fn build(
        &self,
        ino: Ino,
        names: &BTreeMap<(Ino, &str), usize>,
        contents: &BTreeMap<Ino, usize>,
        depth: usize,
    ) -> Tree {
        assert!(depth < 64, "power-loss model: a directory cycle");
        match &self.inodes[ino] {
            Inode::File {
                synced,
                dirty,
                known,
            } => {
                let base = synced.as_deref().unwrap_or_default();
                if !dirty {
                    return Tree::File(base.to_vec());
                }
                let known = known.as_deref();
                let len = known.map_or(UNKNOWN_LEN, <[u8]>::len);
                Tree::File(match contents.get(&ino).copied().unwrap_or(0) {
                    0 => base.to_vec(),
                    1 => vec![0; len],
                    2 => known.map_or_else(Vec::new, |k| k[..k.len() / 2].to_vec()),
                    _ => known.map_or_else(|| vec![0; len], <[u8]>::to_vec),
                })
            }
            Inode::Dir { names: entries } => {
                let mut out = BTreeMap::new();
                for (name, values) in entries {
                    let pick = if values.len() > 1 {
                        names.get(&(ino, name.as_str())).copied().unwrap_or(0)
                    } else {
                        0
                    };
                    if let Some(child) = values[pick.min(values.len() - 1)] {
                        out.insert(name.clone(), self.build(child, names, contents, depth + 1));
                    }
                }
                Tree::Dir(out)
            }
        }
    }

    /// The outcomes to try for `undecided`: every combination when there are at
    /// most `exhaustive` of them; otherwise the all-durable and the all-live
    /// extremes plus `samples` random combinations drawn from `rng`.
    pub(crate) fn outcomes(
        undecided: &[Undecided],
        exhaustive: usize,
        samples: usize,
        rng: &mut fastrand::Rng,
    ) -> Vec<Vec<usize>> {
        let total = undecided
            .iter()
            .try_fold(1usize, |acc, u| acc.checked_mul(u.options()));
        if let Some(total) = total
            && total <= exhaustive
        {
            return (0..total)
                .map(|mut n| {
                    undecided
                        .iter()
                        .map(|u| {
                            let o = n % u.options();
                            n /= u.options();
                            o
                        })
                        .collect()
                })
                .collect();
        }
        let mut out = vec![
            vec![0; undecided.len()],
            undecided.iter().map(|u| u.options() - 1).collect(),
        ];
        for _ in 0..samples {
            out.push(undecided.iter().map(|u| rng.usize(..u.options())).collect());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::fsutil::{self, PublishMode};
    use super::*;

    /// Every tree a power cut may leave after the whole trace.
    fn all_images(recorder: &Recorder) -> Vec<Tree> {
        let mut replay = Replay::new();
        for op in recorder.ops() {
            replay.apply(&op);
        }
        let undecided = replay.uncertain();
        let mut rng = fastrand::Rng::with_seed(1);
        Replay::outcomes(&undecided, usize::MAX, 0, &mut rng)
            .iter()
            .map(|o| replay.image(&undecided, o))
            .collect()
    }

    fn file<'t>(tree: &'t Tree, path: &[&str]) -> Option<&'t [u8]> {
        match tree.get(path)? {
            Tree::File(bytes) => Some(bytes),
            Tree::Dir(_) => None,
        }
    }

    #[test]
    fn a_published_file_survives_every_power_cut() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(dir.path());
        let target = dir.path().join("a/b/c");
        fsutil::publish(
            &target,
            &dir.path().join("tmp"),
            PublishMode::CreateNew,
            |f| f.write_all(b"hello"),
        )
        .unwrap();
        let images = all_images(&recorder);
        // Only the temp file's name in the never-synced tmp/ is undecided.
        assert!(images.len() > 1, "{images:?}");
        for image in &images {
            assert_eq!(file(image, &["a", "b", "c"]), Some(&b"hello"[..]));
        }
        // Its removal may be lost: a leftover temp file is garbage, never data.
        assert!(images.iter().any(|i| i.files().len() == 2));
    }

    #[test]
    fn a_directory_another_writer_created_is_made_durable_before_it_is_relied_on() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(dir.path());
        fsutil::ensure_dir(&dir.path().join("tmp")).unwrap();
        fsutil::ensure_dir(&dir.path().join("blobs")).unwrap();
        // Another writer made `blobs/shard/` and has not synced `blobs/` yet.
        fsutil::create_dir(&dir.path().join("blobs/shard")).unwrap();
        fsutil::publish(
            &dir.path().join("blobs/shard/blob"),
            &dir.path().join("tmp"),
            PublishMode::CreateNew,
            |f| f.write_all(b"acknowledged"),
        )
        .unwrap();
        for image in all_images(&recorder) {
            assert_eq!(
                file(&image, &["blobs", "shard", "blob"]),
                Some(&b"acknowledged"[..])
            );
        }
    }

    #[test]
    fn a_store_opened_over_an_unsynced_tree_makes_it_durable_before_its_first_ack() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(dir.path());
        // Another process made the tree and died before syncing any of its names;
        // opening it only reads (no fsync), so the first append must sync them.
        let root = dir.path().join("metadata");
        for d in [
            &root,
            &root.join("logs"),
            &root.join("logs/v1"),
            &root.join("tmp"),
        ] {
            fsutil::create_dir(d).unwrap();
        }
        let store = crate::store::LocalMetadataStore::open(&root).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(crate::store::MetadataStore::append(
            &store,
            "m",
            1,
            bytes::Bytes::from_static(b"acknowledged"),
        ))
        .unwrap();
        let path = [
            "metadata",
            "logs",
            "v1",
            "m",
            "records",
            "00000000000000000001.rec",
        ];
        let images = all_images(&recorder);
        assert!(!images.is_empty());
        for image in &images {
            assert_eq!(file(image, &path), Some(&b"acknowledged"[..]), "{image:?}");
        }
    }

    #[test]
    fn a_name_whose_directory_was_not_synced_may_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(dir.path());
        let path = dir.path().join("f");
        let f = fsutil::create_new(&path).unwrap();
        (&f).write_all(b"data").unwrap();
        fsutil::sync_file(&f, &path).unwrap();
        let images = all_images(&recorder);
        assert_eq!(images.len(), 2);
        assert!(images.iter().any(|i| file(i, &["f"]).is_none()));
        assert!(images.iter().any(|i| file(i, &["f"]) == Some(b"data")));
        // Syncing the directory settles it.
        fsutil::sync_dir(dir.path()).unwrap();
        let images = all_images(&recorder);
        assert_eq!(images.len(), 1);
        assert_eq!(file(&images[0], &["f"]), Some(&b"data"[..]));
    }

    #[test]
    fn a_directory_whose_own_name_was_not_synced_takes_its_synced_content_along() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(dir.path());
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        super::record_mkdir(&sub); // as a raw create_dir, without `ensure_dir`'s sync
        let path = sub.join("f");
        let f = fsutil::create_new(&path).unwrap();
        fsutil::sync_file(&f, &path).unwrap();
        fsutil::sync_dir(&sub).unwrap();
        let images = all_images(&recorder);
        assert!(images.iter().any(|i| i.get(&["sub"]).is_none()));
        // `ensure_dir` syncs the parent: then nothing is undecided.
        let other = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(other.path());
        fsutil::ensure_dir(&other.path().join("x/y")).unwrap();
        let images = all_images(&recorder);
        assert_eq!(images.len(), 1);
        assert!(images[0].get(&["x", "y"]).is_some());
    }

    #[test]
    fn a_file_linked_before_its_fsync_may_show_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(dir.path());
        let (tmp, target) = (dir.path().join("t"), dir.path().join("f"));
        let f = fsutil::create_new(&tmp).unwrap();
        (&f).write_all(b"abcd").unwrap();
        fsutil::hard_link(&tmp, &target).unwrap();
        fsutil::sync_dir(dir.path()).unwrap();
        fsutil::sync_file(&f, &tmp).unwrap(); // too late: the power may fail before
        let mut replay = Replay::new();
        let ops = recorder.ops();
        for op in &ops[..ops.len() - 1] {
            replay.apply(op);
        }
        let undecided = replay.uncertain();
        let mut rng = fastrand::Rng::with_seed(1);
        let contents: Vec<Option<Vec<u8>>> = Replay::outcomes(&undecided, usize::MAX, 0, &mut rng)
            .iter()
            .map(|o| file(&replay.image(&undecided, o), &["f"]).map(<[u8]>::to_vec))
            .collect();
        // Bytes were never seen before the fsync: the model has only zeros to offer.
        assert!(contents.contains(&Some(Vec::new())));
        assert!(contents.contains(&Some(vec![0; UNKNOWN_LEN])));
    }

    #[test]
    fn a_replacing_rename_never_leaves_the_target_missing() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let target = dir.path().join("t");
        for bytes in [&b"old"[..], b"new"] {
            let recorder = Recorder::start(dir.path());
            fsutil::publish(&target, &tmp, PublishMode::Replace, |f| f.write_all(bytes)).unwrap();
            drop(recorder);
        }
        // Trace a replacement whose directory fsync is left out.
        let recorder =
            Recorder::start_omitting(dir.path(), Some(|op| matches!(op, Op::SyncDir(_))));
        let before = fs::read(&target).unwrap();
        assert_eq!(before, b"new");
        fsutil::publish(&target, &tmp, PublishMode::Replace, |f| {
            f.write_all(b"newer")
        })
        .unwrap();
        // The root's existing content is durable by definition: model it.
        let mut replay = Replay::new();
        replay.apply(&Op::Create(vec!["t".into()]));
        replay.apply(&Op::SyncFile(vec!["t".into()], before));
        replay.apply(&Op::Mkdir(vec!["tmp".into()]));
        replay.apply(&Op::SyncDir(vec![]));
        for op in recorder.ops() {
            replay.apply(&op);
        }
        let undecided = replay.uncertain();
        let mut rng = fastrand::Rng::with_seed(1);
        let seen: Vec<Option<Vec<u8>>> = Replay::outcomes(&undecided, usize::MAX, 0, &mut rng)
            .iter()
            .map(|o| file(&replay.image(&undecided, o), &["t"]).map(<[u8]>::to_vec))
            .collect();
        assert!(seen.contains(&Some(b"new".to_vec())));
        assert!(seen.contains(&Some(b"newer".to_vec())));
        assert!(!seen.contains(&None), "{seen:?}");
    }

    #[test]
    fn paths_outside_the_root_are_not_traced() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let recorder = Recorder::start(&dir.path().join("root"));
        fsutil::ensure_dir(&other.path().join("x")).unwrap();
        assert_eq!(recorder.len(), 0);
        // A file brought in from outside is new to the model, and unsynced.
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::write(other.path().join("x/f"), b"outside").unwrap();
        fsutil::hard_link(&other.path().join("x/f"), &dir.path().join("root/f")).unwrap();
        assert_eq!(
            recorder.ops(),
            vec![Op::Import(vec!["f".into()], b"outside".to_vec())]
        );
    }
}
