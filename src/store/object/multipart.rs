//! Multipart uploads: part sizes, cutting a stream into parts while hashing it,
//! and an upload that is aborted unless it is completed.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use tokio::task::JoinSet;

use super::Root;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hashing;
use crate::progress::{self, Meter, MeterExt};
use crate::store::ByteStream;
use crate::store::traffic::{self, Counter, CounterExt};

/// The smallest multipart part S3 accepts (except the last), and our smallest part.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's limit on the number of parts of one upload.
pub const MAX_PARTS: u64 = 10_000;
/// Part size for streams of unknown length: 10 000 parts make about 78 GiB.
pub const STREAM_PART_SIZE: u64 = 8 << 20;
/// How many parts of one upload are in flight at once.
pub const UPLOAD_CONCURRENCY: usize = 8;

/// The part size for an upload of `size` bytes: at least [`MIN_PART_SIZE`], and
/// large enough that the upload needs at most [`MAX_PARTS`] parts, rounded up to a
/// whole MiB. Every part but the last has this size.
///
/// ```
/// use modelreg::store::object::part_size;
/// const MIB: u64 = 1 << 20;
/// assert_eq!(part_size(256 * MIB), 5 * MIB);
/// // 100 GB: 10 000 parts of 10 MiB hold 104.9 GB.
/// assert_eq!(part_size(100_000_000_000), 10 * MIB);
/// assert!(part_size(100_000_000_000) * 10_000 >= 100_000_000_000);
/// ```
pub fn part_size(size: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB);
    needed.max(MIN_PART_SIZE)
}

/// Cuts a stream into parts of exactly `size` bytes (the last one shorter),
/// hashing every byte it hands out.
pub(super) struct PartReader {
    data: ByteStream,
    size: u64,
    hasher: blake3::Hasher,
    /// Bytes pulled from the stream beyond the last part.
    carry: Option<Bytes>,
    ended: bool,
}

impl PartReader {
    pub(super) fn new(data: ByteStream, size: u64) -> Self {
        PartReader {
            data,
            size,
            hasher: blake3::Hasher::new(),
            carry: None,
            ended: false,
        }
    }

    /// The next part: `size` bytes, or fewer (possibly none) when the stream ended.
    pub(super) async fn next_part(&mut self) -> Result<Vec<Bytes>> {
        let mut part = Vec::new();
        let mut len = 0u64;
        while len < self.size {
            let chunk = match self.carry.take() {
                Some(chunk) => chunk,
                None => match self.data.next().await {
                    Some(chunk) => {
                        let chunk = chunk?;
                        let hasher = std::mem::take(&mut self.hasher);
                        // Not counted here: the upload counts parts as they land.
                        self.hasher = hashing::update(hasher, chunk.clone(), None).await?;
                        chunk
                    }
                    None => {
                        self.ended = true;
                        break;
                    }
                },
            };
            let room = self.size - len;
            let mut chunk = chunk;
            if chunk.len() as u64 > room {
                // `room` is below `size`, which fits in memory: it fits a usize.
                self.carry = Some(chunk.split_off(room as usize));
            }
            len += chunk.len() as u64;
            part.push(chunk);
        }
        Ok(part)
    }

    /// Whether the stream has ended (the last part may still be unsent).
    pub(super) fn ended(&self) -> bool {
        self.ended && self.carry.is_none()
    }

    /// The digest of everything read.
    pub(super) fn digest(&self) -> Digest {
        self.hasher.finalize().into()
    }
}

/// A multipart upload that is aborted unless it is completed: explicitly on error,
/// and in the background if it is dropped half-way (a cancelled put).
pub(super) struct Upload {
    root: Arc<Root>,
    path: Path,
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts in flight, each its own task so that they progress while the next part
    /// is read, each giving its length back once it is stored. Dropping the set
    /// cancels them.
    parts: JoinSet<object_store::Result<u64>>,
    /// Counts the bytes of each part stored (the task's meter when the upload
    /// started: the part tasks do not see it).
    meter: Option<Meter>,
    /// Counts each call and the bytes of each part (the task's counter when
    /// the upload started).
    traffic: Option<Counter>,
}

impl Upload {
    pub(super) async fn start(root: &Arc<Root>, path: Path) -> Result<Self> {
        let traffic = traffic::counter();
        traffic.request(0);
        let upload = root
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| root.error("put", &path, e))?;
        Ok(Upload {
            root: Arc::clone(root),
            path,
            upload: Some(upload),
            parts: JoinSet::new(),
            meter: progress::meter(),
            traffic,
        })
    }

    /// Sends a part, first waiting while [`UPLOAD_CONCURRENCY`] are in flight.
    pub(super) async fn put_part(&mut self, payload: PutPayload) -> Result<()> {
        while self.parts.len() >= UPLOAD_CONCURRENCY {
            self.join_one().await?;
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.finished());
        };
        let len = payload.content_length() as u64;
        self.traffic.request(len);
        let part = upload.put_part(payload);
        self.parts.spawn(async move { part.await.map(|()| len) });
        Ok(())
    }

    /// Waits for one part in flight, counts it, and reports its failure.
    async fn join_one(&mut self) -> Result<()> {
        match self.parts.join_next().await {
            None => Ok(()),
            Some(Ok(Ok(len))) => {
                self.meter.as_ref().add(len);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(self.root.error("put", &self.path, e)),
            Some(Err(join)) => match join.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => Err(self.root.error("put", &self.path, e.into())),
            },
        }
    }

    /// Waits for every part, then publishes the object; aborts if a part failed.
    pub(super) async fn complete(mut self) -> Result<()> {
        while !self.parts.is_empty() {
            if let Err(e) = self.join_one().await {
                self.abort().await;
                return Err(e);
            }
        }
        let Some(mut upload) = self.upload.take() else {
            return Err(self.finished());
        };
        self.traffic.request(0);
        if let Err(e) = upload.complete().await {
            if let Err(abort) = upload.abort().await {
                warn_abort_failed(&self.root.location(&self.path), &abort);
            }
            return Err(self.root.error("put", &self.path, e));
        }
        Ok(())
    }

    /// Cancels the parts in flight and aborts the upload: nothing is published.
    pub(super) async fn abort(mut self) {
        self.parts.shutdown().await;
        if let Some(mut upload) = self.upload.take() {
            self.traffic.request(0);
            // Best effort: an upload that is never completed stays invisible anyway.
            if let Err(e) = upload.abort().await {
                warn_abort_failed(&self.root.location(&self.path), &e);
            }
        }
    }

    fn finished(&self) -> Error {
        self.root.error(
            "put",
            &self.path,
            object_store::Error::Generic {
                store: "modelreg",
                source: "multipart upload already finished".into(),
            },
        )
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // A put cancelled mid-way: abort in the background if a runtime is there.
        if let Some(mut upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let object = self.root.location(&self.path);
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    warn_abort_failed(&object, &e);
                }
            });
        }
    }
}

/// An aborted multipart upload that could not be aborted keeps its parts (and
/// their cost) until the bucket's lifecycle rule removes them.
fn warn_abort_failed(object: &str, error: &object_store::Error) {
    tracing::warn!(
        object, error = %error,
        "could not abort a multipart upload: its parts stay stored until the \
         bucket's lifecycle rule for incomplete uploads removes them"
    );
}
