//! A byte stream written by a blocking thread: the async side pulls the stream
//! and sends its chunks through a bounded channel; the writer (on the blocking
//! pool) receives them with [`Chunks::next_chunk`]. Used wherever a stream lands
//! in a local file (a local store's `put_stream`, an object store's download).

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

/// A message from the task pulling the stream to the thread writing it.
enum Msg {
    Chunk(Bytes),
    /// The stream ended normally. If the channel closes without it, the stream
    /// failed or the pipe was cancelled, and the writer must not finish.
    End,
}

/// The writer's end of a [`pipe`].
pub(crate) struct Chunks(mpsc::Receiver<Msg>);

impl Chunks {
    /// The next chunk, blocking until it comes; `None` once the stream ended
    /// normally. An error when it did not (the stream failed, and [`pipe`]
    /// returns that failure, or the pipe was dropped): the writer then gives up
    /// and publishes nothing.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        match self.0.blocking_recv() {
            Some(Msg::Chunk(chunk)) => Ok(Some(chunk)),
            Some(Msg::End) => Ok(None),
            None => Err(io::Error::other("stream ended early")),
        }
    }
}

/// Feeds `stream` to the writer `start` returns, with up to `queue` chunks in
/// between, and waits for both. Returns the stream's outcome and the writer's:
/// a stream error explains a writer that saw the stream end early, and when the
/// writer fails first the feeding stops (its error is the one to report).
pub(crate) async fn pipe<E, W: Future>(
    mut stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
    queue: usize,
    start: impl FnOnce(Chunks) -> W,
) -> (Result<(), E>, W::Output) {
    let (tx, rx) = mpsc::channel(queue);
    let writer = start(Chunks(rx));
    let feed = async move {
        while let Some(chunk) = stream.next().await {
            if tx.send(Msg::Chunk(chunk?)).await.is_err() {
                // The writer failed; its error is the one returned.
                return Ok(());
            }
        }
        let _ = tx.send(Msg::End).await;
        Ok(())
    };
    futures::join!(feed, writer)
}
