//! Downloads into a new local file: the chunks pulled from the object store are
//! written, hashed and synced on the blocking pool.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;

use super::{Root, blocking};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::progress::{Meter, MeterExt};
use crate::store::fsutil;
use crate::store::pipe::pipe;

/// Chunks queued between a download and the thread writing them to a file.
const WRITE_QUEUE: usize = 16;

/// The most a chunk is written and hashed at once, so that `meter` hears of a
/// download that arrives as one chunk (object_store's `InMemory`) as it goes.
const WRITE_SLICE: usize = 1 << 20;

/// Writes a download into `file` on the blocking pool, hashing what it writes and
/// syncing it at the end; returns the digest and length written. `meter` counts
/// the bytes written.
pub(super) async fn write_stream(
    root: &Arc<Root>,
    key: &Path,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    mut file: File,
    dest: &FsPath,
    meter: Option<Meter>,
) -> Result<(Digest, u64)> {
    let stream = stream.map_err(|e| root.error("materialize", key, e));
    let target = dest.to_owned();
    let (fed, written) = pipe(stream, WRITE_QUEUE, |mut chunks| {
        blocking(root, "materialize", key, move || {
            let mut hasher = blake3::Hasher::new();
            // An error means the download failed or was cancelled; its error is
            // the one returned.
            while let Some(chunk) = chunks.next_chunk()? {
                for slice in chunk.chunks(WRITE_SLICE) {
                    hasher.update(slice);
                    file.write_all(slice)?;
                    meter.as_ref().add(slice.len() as u64);
                }
            }
            fsutil::sync_new_file(&file, &target)?;
            Ok::<_, io::Error>((hasher.finalize().into(), hasher.count()))
        })
    })
    .await;
    fed?;
    written?.map_err(|e| Error::io(dest, e))
}
