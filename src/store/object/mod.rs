//! Stores on object storage — S3, Google Cloud Storage, Azure Blob, and also
//! object_store's local-file and in-memory stores — through any
//! `Arc<dyn object_store::ObjectStore>` under a key prefix.
//!
//! # Layout
//!
//! The same names as the [local stores](super::local), below a prefix; a registry
//! at `<prefix>` keeps its metadata under `<prefix>/metadata` and its blobs under
//! `<prefix>/artifacts` ([`stores_in`]):
//!
//! ```text
//! <prefix>/metadata/logs/v1/<log>/records/<seq, 20 digits>.rec
//! <prefix>/metadata/logs/v1/<log>/checkpoints/<seq, 20 digits>.ckpt
//! <prefix>/metadata/leases/v1/<lease>
//! <prefix>/artifacts/blobs/v1/blake3/<hex[0..2]>/<hex[2..4]>/<hex>
//! ```
//!
//! A log key is one path segment, percent-encoded the way object_store encodes
//! segments (model names never need it).
//!
//! # Guarantees, and how
//!
//! - **An append is one create-if-absent PUT** (`PutMode::Create`: `If-None-Match: *`
//!   on S3 and Azure, a hard link on local files). Of any number of writers appending
//!   the same record, one succeeds and the others get [`Error::AlreadyExists`].
//!   Nothing here needs compare-and-swap (`PutMode::Update`), which object_store's
//!   `LocalFileSystem` does not have.
//! - **Checkpoints** are plain overwriting PUTs; the latest is found by listing the
//!   log's checkpoints and taking the highest number (listing order is never
//!   assumed). Old ones are pruned, best effort, so that listing stays one request.
//!   There is no "latest" pointer object: it would cost the same GET that the
//!   listing costs, and could be stale.
//! - **Leases** are plain overwriting PUTs, listed with one LIST of their prefix.
//!   They rely on the service's strong read-after-write consistency for PUT, DELETE
//!   and LIST, which S3, GCS and Azure Blob all give.
//! - **Reading a log** ([`MetadataStore::read_after`](super::MetadataStore::read_after)) GETs the first wanted record;
//!   when nothing is new — the usual case, since the registry refreshes before every
//!   query — that one failed GET is the whole cost (cheaper than a LIST on every
//!   provider). When it exists, the rest are found with one listing from that
//!   offset (keys are zero-padded, so services that can start a listing at an
//!   offset do), collected, sorted and taken while consecutive, then fetched
//!   [`READ_CONCURRENCY`] at a time. The listing stops early once every wanted
//!   number has been seen; it never relies on coming back sorted.
//! - **Blobs** are content-addressed, so writing one twice is harmless. A blob that
//!   fits in one part goes up as one create-if-absent PUT (an existing blob is
//!   success). Larger ones are multipart uploads after a `head` finds them missing:
//!   parts of `max(5 MiB, size / 10 000)` rounded up to a MiB (a 100 GB file stays
//!   within S3's 10 000 parts), [`UPLOAD_CONCURRENCY`] parts in flight, hashed while
//!   they are read. The upload is completed only if the bytes hash to the digest;
//!   otherwise, and on any error or cancellation, it is aborted: no blob is ever
//!   published under a digest its bytes do not have, and an interrupted upload
//!   leaves nothing visible.
//! - **Reads stream**: `get` returns the object's byte stream, `get_range` is a
//!   ranged GET, `materialize` writes the stream to the new file on the blocking
//!   pool and syncs it.
//!
//! # Limits
//!
//! - A stream of unknown length ([`ArtifactStore::put_stream`](super::ArtifactStore::put_stream)) goes up in
//!   [`STREAM_PART_SIZE`] parts, so up to about 78 GiB on S3; files, whose size is
//!   known, have no such limit.
//! - An upload holds up to [`UPLOAD_CONCURRENCY`] parts in memory (40 MiB with
//!   5 MiB parts), and the registry uploads up to four files at once.
//! - AWS S3 answers concurrent conditional PUTs of one key with 409, which
//!   object_store reports as `AlreadyExists`, possibly to every contender: a round
//!   of racing appends can have no winner. The registry retries and is unaffected.
//! - object_store retries a PUT after a 5xx. If the lost attempt had landed, the
//!   retried conditional PUT reports [`Error::AlreadyExists`] for a write that
//!   succeeded. The registry tells this from a lost race by reading the record
//!   back: its own bytes (its time to the nanosecond, its checksum) mean the
//!   append succeeded, so it neither fails nor appends the command twice. A
//!   caller of [`MetadataStore::append`](super::MetadataStore::append) outside a `Registry` must do the same.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

mod artifacts;
mod download;
mod metadata;
mod multipart;
mod packs;
mod url;

pub use artifacts::ObjectArtifactStore;
pub use metadata::{ObjectMetadataStore, READ_CONCURRENCY};
pub use multipart::{MAX_PARTS, MIN_PART_SIZE, STREAM_PART_SIZE, UPLOAD_CONCURRENCY, part_size};
pub use packs::ObjectArtifactOptions;
pub use url::{object_store_from_url, stores_from_url, stores_in};

/// One store's place in an object store, and the name its errors carry.
#[derive(Debug)]
pub(super) struct Root {
    store: Arc<dyn ObjectStore>,
    /// All keys of this store are below it.
    path: Path,
    /// E.g. `object store s3://bucket/prefix/metadata`.
    label: String,
    /// What an object's key is appended to for its URL (`s3://bucket/`), when the
    /// store was opened by URL.
    url_base: Option<String>,
}

impl Root {
    fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        label: Option<String>,
        url_base: Option<String>,
    ) -> Arc<Self> {
        let label = label.unwrap_or_else(|| format!("object store {store} at '{path}'"));
        Arc::new(Root {
            store,
            path,
            label,
            url_base,
        })
    }

    /// Where the object `key` is, for messages: its URL when the store was opened
    /// by one (`s3://bucket/reg/metadata/…`, `file:///srv/reg/metadata/…`),
    /// otherwise the key and the store.
    fn location(&self, key: &Path) -> String {
        match &self.url_base {
            Some(base) => format!("{base}{key}"),
            None => format!("object '{key}' in {}", self.store),
        }
    }

    /// `self.path` joined with the `/`-separated segments of a layout constant.
    fn dir(&self, layout: &str) -> Path {
        join(self.path.clone(), layout)
    }

    /// An [`Error::Storage`] naming this store and the object.
    fn error(&self, operation: &'static str, key: &Path, source: object_store::Error) -> Error {
        Error::storage(self.label.clone(), operation, key.to_string(), source)
    }

    /// GETs a whole object; `None` if it does not exist.
    async fn get_optional(&self, operation: &'static str, path: &Path) -> Result<Option<Bytes>> {
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(operation, path, e)),
        };
        match got.bytes().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(operation, path, e)),
        }
    }
}

/// `base` joined with the `/`-separated segments of `rel`.
fn join(base: Path, rel: &str) -> Path {
    rel.split('/').fold(base, |path, part| path.join(part))
}

/// The one segment of `path` below `dir`, if `path` is directly in `dir`.
fn name_in(path: &Path, dir: &Path) -> Option<String> {
    let mut rest = path.prefix_match(dir)?;
    let name = rest.next()?;
    rest.next().is_none().then(|| name.as_ref().to_owned())
}

/// Runs `f` on the blocking pool; a panic in `f` is resumed here.
async fn blocking<T: Send + 'static>(
    root: &Root,
    operation: &'static str,
    key: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    crate::offload::offload_or(f, |e| root.error(operation, key, e.into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_fit_every_file_in_ten_thousand_parts() {
        const MIB: u64 = 1 << 20;
        for size in [
            0,
            1,
            MIN_PART_SIZE,
            MIN_PART_SIZE * MAX_PARTS,
            MIN_PART_SIZE * MAX_PARTS + 1,
            100_000_000_000,
            5 << 40,
        ] {
            let part = part_size(size);
            assert!(part >= MIN_PART_SIZE, "{size}");
            assert_eq!(part % MIB, 0, "{size}");
            assert!(size.div_ceil(part) <= MAX_PARTS, "{size}: {part}");
        }
        assert_eq!(part_size(MIN_PART_SIZE * MAX_PARTS + 1), 6 * MIB);
    }

    #[test]
    fn urls_name_stores_and_prefixes() {
        let (m, a) = stores_from_url("memory://").unwrap();
        assert_eq!(m.root().as_ref(), "metadata");
        assert_eq!(a.root().as_ref(), "artifacts");
        let (m, _) = stores_from_url("file:///srv/registry/").unwrap();
        assert_eq!(m.root().as_ref(), "srv/registry/metadata");
        for bad in ["not a url", "ftp://host/x", "http://example.com/x"] {
            let e = stores_from_url(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{bad}: {e:?}");
        }
        #[cfg(not(feature = "aws"))]
        {
            let e = stores_from_url("s3://bucket/x").unwrap_err();
            assert!(e.to_string().contains("`aws` feature"), "{e}");
        }
    }
}
