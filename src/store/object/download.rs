//! Downloads into a new local file: the chunks pulled from the object store are
//! written, hashed and synced on the blocking pool.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;

use super::{Root, blocking};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::fsutil;

/// Chunks queued between a download and the thread writing them to a file.
const WRITE_QUEUE: usize = 16;

/// A message from the task pulling a download to the thread writing it.
enum WriteMsg {
    Chunk(Bytes),
    /// The stream ended normally. If the channel closes without it, the stream
    /// failed or the materialize was cancelled.
    End,
}

/// Writes a download into `file` on the blocking pool, hashing what it writes and
/// syncing it at the end; returns the digest and length written.
pub(super) async fn write_stream(
    root: &Arc<Root>,
    key: &Path,
    mut stream: BoxStream<'static, object_store::Result<Bytes>>,
    mut file: File,
    dest: &FsPath,
) -> Result<(Digest, u64)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteMsg>(WRITE_QUEUE);
    let target = dest.to_owned();
    let writer = blocking(root, "materialize", key, move || {
        let mut hasher = blake3::Hasher::new();
        loop {
            match rx.blocking_recv() {
                Some(WriteMsg::Chunk(chunk)) => {
                    hasher.update(&chunk);
                    file.write_all(&chunk)?;
                }
                Some(WriteMsg::End) => break,
                // The download failed or was cancelled; its error is the one returned.
                None => return Err(io::Error::other("download ended early")),
            }
        }
        finish_new_file(&file, &target)?;
        Ok((hasher.finalize().into(), hasher.count()))
    });
    let feed = async move {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| root.error("materialize", key, e))?;
            if tx.send(WriteMsg::Chunk(chunk)).await.is_err() {
                // The writer failed; its error is the one returned.
                return Ok(());
            }
        }
        let _ = tx.send(WriteMsg::End).await;
        Ok(())
    };
    let (fed, written): (Result<()>, Result<io::Result<(Digest, u64)>>) =
        futures::join!(feed, writer);
    fed?;
    written?.map_err(|e| Error::io(dest, e))
}

/// Makes a file just written at `path` durable: its data, and its name.
pub(super) fn finish_new_file(file: &File, path: &FsPath) -> io::Result<()> {
    file.sync_all()?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(FsPath::new("."));
    fsutil::sync_dir(parent)
}
