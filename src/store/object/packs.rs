//! Packs on object storage: the [`PackBackend`] of an [`ObjectArtifactStore`],
//! and reads of packed files by ranged GETs.
//!
//! Writing reuses the pack module as it is: `pack::store_file` runs on the
//! blocking pool (it reads and hashes the source file), and each object call
//! it makes is one request driven to completion with the runtime's
//! [`Handle::block_on`]. A pack is assembled in memory (at most
//! [`PackOptions::pack_size`] plus one chunk) and sent as one create-if-absent
//! PUT, then its index, then the recipe: the local store's order.
//!
//! Reading goes the other way, async end to end: a range of a packed file is
//! planned into `(pack, offset, len)` pieces, the pieces are grouped by pack,
//! and each pack's pieces are one `get_ranges` call (object_store merges
//! nearby ranges and fetches up to ten at a time), the packs
//! [`PACK_READS`] at a time.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode};
use tokio::runtime::Handle;

use super::{Root, blocking, join};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hashing;
use crate::progress::{Meter, MeterExt};
use crate::store::layout::{pack_key, recipe_key};
use crate::store::pack::{self, PackBackend, PackOptions, Recipe};
use crate::store::traffic::{self, Counter, CounterExt};
use crate::store::{ByteStream, Materialized, Placed};

/// Packs whose ranges are fetched at once for one read.
pub(super) const PACK_READS: usize = 8;

/// How much of a packed file one step of a streamed read or a download
/// fetches: the unit of memory (a few of them are in flight).
pub(super) const READ_WINDOW: u64 = 16 << 20;

/// Windows fetched ahead of the one being written.
const WINDOWS_AHEAD: usize = 2;

/// What object_store's `get_ranges` merges into one request: ranges less
/// than this apart (its `OBJECT_STORE_COALESCE_DEFAULT`).
const COALESCE: u64 = 1 << 20;

/// How an [`ObjectArtifactStore`](super::ObjectArtifactStore) stores what it
/// is given, for [`ObjectArtifactStore::with_options`](super::ObjectArtifactStore::with_options)
/// and [`Registry::open_url_with`](crate::Registry::open_url_with); the same
/// options as the local store's
/// ([`LocalArtifactOptions`](crate::store::LocalArtifactOptions)).
///
/// ```
/// use modelreg::store::PackOptions;
/// use modelreg::store::object::ObjectArtifactOptions;
/// let options = ObjectArtifactOptions::new().packed(PackOptions::new());
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectArtifactOptions {
    /// Chunk-level deduplication of large files into packs; `None` (the
    /// default) stores every file as a whole blob.
    pub packing: Option<PackOptions>,
}

impl ObjectArtifactOptions {
    /// The defaults: whole blobs, no packing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Packs files of at least [`PackOptions::min_file_size`] bytes: each is cut
    /// into chunks, and only the chunks the store lacks are uploaded, into
    /// packs (see docs/design.md, "Packs on object storage"). Whatever this
    /// option, a store reads both whole blobs and packed files.
    pub fn packed(mut self, options: PackOptions) -> Self {
        self.packing = Some(options);
        self
    }
}

/// The object store as a [`PackBackend`]: called from a blocking thread, each
/// call one request (a listing: one per thousand keys) run on the runtime of
/// `handle`, counted in `traffic`.
pub(super) struct Objects {
    pub(super) root: Arc<Root>,
    pub(super) handle: Handle,
    pub(super) traffic: Option<Counter>,
}

impl Objects {
    /// A backend for the current task: its runtime and its traffic counter.
    /// Called in async context; used on the blocking pool.
    pub(super) fn here(root: &Arc<Root>) -> Self {
        Objects {
            root: Arc::clone(root),
            handle: Handle::current(),
            traffic: traffic::counter(),
        }
    }

    fn path(&self, key: &str) -> Path {
        join(self.root.path.clone(), key)
    }
}

/// An object_store error as the `io::Error` the pack module sorts by kind.
fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

impl PackBackend for Objects {
    type Staged = Vec<u8>;

    fn stage(&self) -> io::Result<Vec<u8>> {
        Ok(Vec::new())
    }

    fn sync_staged(&self, staged: &mut Vec<u8>, key: &str) -> io::Result<()> {
        // Uploaded now, at its name, from the writer's syncing thread: a
        // file's packs are not all held in memory until its end. What is
        // left staged is empty, which `publish` takes as done (a pack or an
        // index is never empty).
        self.publish(std::mem::take(staged), key)
    }

    fn publish(&self, staged: Vec<u8>, key: &str) -> io::Result<()> {
        if staged.is_empty() {
            return Ok(());
        }
        let path = self.path(key);
        self.traffic.request(staged.len() as u64);
        let put = self
            .root
            .store
            .put_opts(&path, staged.into(), PutMode::Create.into());
        match self.handle.block_on(put) {
            // Content addressed: an existing object has these bytes.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    fn replace_small(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        // An overwriting PUT: readers see the old object or the new one,
        // whole (S3, GCS and Azure replace an object atomically).
        let path = self.path(key);
        self.traffic.request(bytes.len() as u64);
        let put = self.root.store.put_opts(
            &path,
            Bytes::copy_from_slice(bytes).into(),
            PutMode::Overwrite.into(),
        );
        self.handle.block_on(put).map(drop).map_err(io_error)
    }

    fn get_small_many(&self, keys: &[String]) -> Vec<io::Result<Option<Vec<u8>>>> {
        // [`PACK_READS`] GETs in flight, the answers in order.
        let reads = futures::stream::iter(keys)
            .map(|key| {
                let path = self.path(key);
                let traffic = self.traffic.clone();
                async move {
                    traffic.request(0);
                    match self.root.store.get(&path).await {
                        Ok(got) => match got.bytes().await {
                            Ok(bytes) => Ok(Some(bytes.to_vec())),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(io_error(e)),
                        },
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(io_error(e)),
                    }
                }
            })
            .buffered(PACK_READS)
            .collect();
        self.handle.block_on(reads)
    }

    fn get_small(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(key);
        self.traffic.request(0);
        let got = self.handle.block_on(async {
            match self.root.store.get(&path).await {
                Ok(got) => got.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(bytes) => Ok(bytes.map(|b| b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.path(key);
        self.traffic.request(0);
        let range = offset..offset + buf.len() as u64;
        let got = self
            .handle
            .block_on(self.root.store.get_range(&path, range))
            .map_err(io_error)?;
        if got.len() != buf.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&got);
        Ok(())
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let path = self.path(dir);
        let listed = self
            .handle
            .block_on(self.root.store.list_with_delimiter(Some(&path)))
            .map_err(io_error)?;
        // One request per page of a thousand keys.
        for _ in 0..listed.objects.len().div_ceil(1000).max(1) {
            self.traffic.request(0);
        }
        Ok(listed
            .objects
            .iter()
            .map(|o| &o.location)
            .chain(&listed.common_prefixes)
            .filter_map(|p| super::name_in(p, &path))
            .collect())
    }

    fn list_tree(&self, dir: &str) -> io::Result<Vec<String>> {
        // One listing of the whole prefix (a request per thousand keys), not
        // one per shard directory.
        let path = self.path(dir);
        let objects: Vec<_> = self
            .handle
            .block_on(self.root.store.list(Some(&path)).try_collect())
            .map_err(io_error)?;
        for _ in 0..objects.len().div_ceil(1000).max(1) {
            self.traffic.request(0);
        }
        Ok(objects
            .iter()
            .filter_map(|o: &object_store::ObjectMeta| {
                let parts: Vec<String> = o
                    .location
                    .prefix_match(&path)?
                    .map(|p| p.as_ref().to_owned())
                    .collect();
                (!parts.is_empty()).then(|| parts.join("/"))
            })
            .collect())
    }

    fn size(&self, key: &str) -> io::Result<Option<u64>> {
        let path = self.path(key);
        self.traffic.request(0);
        match self.handle.block_on(self.root.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.path(key);
        self.traffic.request(0);
        match self.handle.block_on(self.root.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        let path = self.path(key);
        self.traffic.request(0);
        match self.handle.block_on(self.root.store.head(&path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    fn location(&self, key: &str) -> String {
        if key.is_empty() {
            return self.root.label.clone();
        }
        self.root.location(&self.path(key))
    }
}

/// Packs the local file at `source` into `root` on the blocking pool (see
/// `pack::store_file`), counting its requests in the task's traffic counter.
pub(super) async fn put_packed(
    root: &Arc<Root>,
    index: &Arc<pack::SharedIndex>,
    options: PackOptions,
    source: &FsPath,
    expected: Option<Digest>,
    meter: Option<Meter>,
) -> Result<pack::Stored> {
    let backend = Objects::here(root);
    let index = Arc::clone(index);
    let path = source.to_owned();
    let key = root.dir(crate::store::layout::PACKS_DIR);
    let stored = blocking(root, "put", &key, move || {
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        pack::store_file(
            &backend,
            &index,
            &options,
            &path,
            &file,
            expected.as_ref(),
            // Whole blobs are looked for before packing (`put_file`), and a
            // recipe under the digest is checked by `store_file` itself.
            &|_| Ok(false),
            meter.as_ref(),
        )
    })
    .await??;
    tracing::debug!(
        digest = %stored.digest, size = stored.size, new_bytes = stored.new_bytes,
        "packed a file"
    );
    Ok(stored)
}

/// How many requests object_store's `get_ranges` makes for `ranges` of one
/// object: ranges closer than [`COALESCE`] are merged into one.
fn coalesced_requests(ranges: &[Range<u64>]) -> u64 {
    let mut sorted: Vec<&Range<u64>> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.start);
    let mut count = 0;
    let mut end: Option<u64> = None;
    for r in sorted {
        match end {
            Some(e) if r.start <= e.saturating_add(COALESCE) => end = Some(e.max(r.end)),
            _ => {
                count += 1;
                end = Some(r.end);
            }
        }
    }
    count
}

/// Reads `range` (within the file) of a packed file: each pack's pieces in
/// one `get_ranges` call, [`PACK_READS`] packs at a time. A pack that is
/// missing or too short is [`Error::Corrupt`] of the recipe.
pub(super) async fn read_range(
    root: &Arc<Root>,
    recipe: &Recipe,
    range: Range<u64>,
) -> Result<Bytes> {
    let len = usize::try_from(range.end - range.start).map_err(|_| {
        Error::invalid_input(
            format!("range {range:?} of blob {}", recipe.digest),
            "larger than this platform's address space",
        )
    })?;
    // object_store refuses empty ranges; an empty read plans empty pieces.
    let pieces: Vec<_> = pack::plan(recipe, range)
        .into_iter()
        .filter(|p| p.2 > 0)
        .collect();
    // Each pack's ranges, and where each lands in the output.
    let mut by_pack: HashMap<Digest, (Vec<Range<u64>>, Vec<usize>)> = HashMap::new();
    let mut at = 0usize;
    for (pack, offset, len) in &pieces {
        let entry = by_pack.entry(*pack).or_default();
        entry.0.push(*offset..offset + len);
        entry.1.push(at);
        at += *len as usize;
    }
    let traffic = traffic::counter();
    let fetched: Vec<Fetched> = futures::stream::iter(by_pack)
        .map(|(pack, (ranges, places))| {
            let root = Arc::clone(root);
            let traffic = traffic.clone();
            async move {
                let key = pack_key(&pack);
                let path = join(root.path.clone(), &key);
                for _ in 0..coalesced_requests(&ranges) {
                    traffic.request(0);
                }
                let got = root.store.get_ranges(&path, &ranges).await;
                Ok::<_, (object_store::Error, String)>(Fetched {
                    bytes: got.map_err(|e| (e, key.clone()))?,
                    places,
                    ranges,
                    key,
                })
            }
        })
        .buffer_unordered(PACK_READS)
        .map_err(|(e, key)| pack::missing_pack(&Located(root), recipe, &key, io_error(e)))
        .try_collect()
        .await?;
    let mut out = BytesMut::zeroed(len);
    for Fetched {
        bytes,
        places,
        ranges,
        key,
    } in fetched
    {
        for ((b, place), r) in bytes.iter().zip(places).zip(ranges) {
            if b.len() as u64 != r.end - r.start {
                return Err(pack::missing_pack(
                    &Located(root),
                    recipe,
                    &key,
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            out[place..place + b.len()].copy_from_slice(b);
        }
    }
    Ok(out.freeze())
}

/// One pack's pieces of a read: their bytes, where each lands in the output,
/// the ranges asked for, and the pack's key.
struct Fetched {
    bytes: Vec<Bytes>,
    places: Vec<usize>,
    ranges: Vec<Range<u64>>,
    key: String,
}

/// The windows of a file of `size` bytes, in order.
fn windows(size: u64) -> impl Iterator<Item = Range<u64>> {
    (0..size.div_ceil(READ_WINDOW)).map(move |i| i * READ_WINDOW..((i + 1) * READ_WINDOW).min(size))
}

/// A packed file as a stream, a window at a time, [`WINDOWS_AHEAD`] fetched
/// ahead of the reader.
pub(super) fn read_stream(root: Arc<Root>, recipe: Arc<Recipe>) -> ByteStream {
    let traffic = traffic::counter();
    Box::pin(
        futures::stream::iter(windows(recipe.size))
            .map(move |w| {
                let (root, recipe) = (Arc::clone(&root), Arc::clone(&recipe));
                let read = async move { read_range(&root, &recipe, w).await };
                match traffic.clone() {
                    Some(c) => futures::future::Either::Left(traffic::scoped(c, read)),
                    None => futures::future::Either::Right(read),
                }
            })
            .buffered(WINDOWS_AHEAD),
    )
}

/// Rebuilds a packed file at the new path `dest`, a window at a time (the
/// next ones fetched while one is written), synced, hashed as written. A
/// damaged pack is reported where it is (`pack::locate_damage`); on any error
/// no file is left behind.
pub(super) async fn materialize(
    root: &Arc<Root>,
    recipe: Recipe,
    dest: &FsPath,
    meter: Option<Meter>,
) -> Result<Placed> {
    let target = dest.to_owned();
    let key = root.dir(&recipe_key(&recipe.digest));
    let file = blocking(root, "materialize", &key, move || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&target)
    })
    .await?
    .map_err(|e| Error::io(dest, e))?;
    let recipe = Arc::new(recipe);
    let written = async {
        let mut windows = read_stream(Arc::clone(root), Arc::clone(&recipe));
        let mut state = (file, blake3::Hasher::new());
        while let Some(bytes) = windows.try_next().await? {
            let (mut file, mut hasher) = state;
            let meter = meter.clone();
            state = blocking(root, "materialize", &key, move || {
                for slice in bytes.chunks(1 << 20) {
                    hasher.update(slice);
                    file.write_all(slice)?;
                    meter.as_ref().add(slice.len() as u64);
                }
                Ok::<_, io::Error>((file, hasher))
            })
            .await?
            .map_err(|e| Error::io(dest, e))?;
        }
        let (file, hasher) = state;
        let target = dest.to_owned();
        blocking(root, "materialize", &key, move || {
            crate::store::fsutil::sync_new_file(&file, &target)
        })
        .await?
        .map_err(|e| Error::io(dest, e))?;
        let digest: Digest = hasher.finalize().into();
        if digest != recipe.digest {
            let backend = Objects::here(root);
            let damaged = Arc::clone(&recipe);
            if let Some(damage) = blocking(root, "materialize", &key, move || {
                pack::locate_damage(&backend, &damaged)
            })
            .await?
            {
                return Err(damage);
            }
        }
        Ok(Placed::new(Materialized::Copied, digest, hasher.count()))
    }
    .await;
    if written.is_err()
        && let Err(e) = tokio::fs::remove_file(dest).await
    {
        tracing::warn!(file = %dest.display(), error = %e, "could not remove a half-written file");
    }
    written
}

/// Hashes a packed file as stored, reading it as [`read_stream`] does; a
/// mismatch is reported where the damage is, as on the local store.
pub(super) async fn hash_stored(
    root: &Arc<Root>,
    recipe: Recipe,
    meter: Option<Meter>,
) -> Result<(Digest, u64)> {
    let recipe = Arc::new(recipe);
    let stream = read_stream(Arc::clone(root), Arc::clone(&recipe));
    let (digest, size) = hashing::hash_stream(stream, meter).await?;
    if digest != recipe.digest {
        let backend = Objects::here(root);
        let key = root.dir(&recipe_key(&recipe.digest));
        if let Some(damage) = blocking(root, "hash", &key, move || {
            pack::locate_damage(&backend, &recipe)
        })
        .await?
        {
            return Err(damage);
        }
    }
    Ok((digest, size))
}

/// Names objects for the pack module's errors, in async code (no requests).
struct Located<'a>(&'a Arc<Root>);

impl PackBackend for Located<'_> {
    type Staged = Vec<u8>;
    fn stage(&self) -> io::Result<Vec<u8>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn publish(&self, _: Vec<u8>, _: &str) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn get_small(&self, _: &str) -> io::Result<Option<Vec<u8>>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn read_at(&self, _: &str, _: u64, _: &mut [u8]) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn list(&self, _: &str) -> io::Result<Vec<String>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn list_tree(&self, _: &str) -> io::Result<Vec<String>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn size(&self, _: &str) -> io::Result<Option<u64>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn delete(&self, _: &str) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn exists(&self, _: &str) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn location(&self, key: &str) -> String {
        if key.is_empty() {
            return self.0.label.clone();
        }
        self.0.location(&join(self.0.path.clone(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_closer_than_a_mebibyte_are_one_request() {
        const M: u64 = 1 << 20;
        assert_eq!(coalesced_requests(&[]), 0);
        assert_eq!(coalesced_requests(&[0..10, 20..30]), 1);
        assert_eq!(coalesced_requests(&[5 * M..6 * M, 0..M]), 2);
        assert_eq!(coalesced_requests(&[0..M, 2 * M..3 * M, 10 * M..11 * M]), 2);
    }

    #[test]
    fn windows_cover_the_file_once() {
        let w: Vec<_> = windows(2 * READ_WINDOW + 5).collect();
        assert_eq!(
            w,
            [
                0..READ_WINDOW,
                READ_WINDOW..2 * READ_WINDOW,
                2 * READ_WINDOW..2 * READ_WINDOW + 5
            ]
        );
        assert_eq!(windows(0).count(), 0);
    }
}
