//! Downloads of one file of a version, shared by the REST, Hugging Face and
//! MLflow routes: `HEAD` and `GET`, `ETag`/`If-None-Match`, a single `Range`,
//! streamed from the artifact store a chunk at a time (never a whole file in
//! memory). A whole-file `GET` is hashed as it streams; if the bytes do not
//! match the manifest's digest the connection is cut before the last byte, so
//! a client never receives a complete corrupt file.

use std::ops::Range;

use axum::body::Body;
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, stream};

use super::State;
use super::error::{ApiError, ApiResult};
use crate::{Digest, Error, ManifestEntry};

/// How much one ranged read asks the store for.
const RANGE_CHUNK: u64 = 8 << 20;

/// Answers `method` (`HEAD` or `GET`) for `entry` with the given entity tag
/// (unquoted) and extra headers.
pub(crate) async fn serve(
    state: &State,
    method: &Method,
    request: &HeaderMap,
    entry: &ManifestEntry,
    etag: &str,
    extra: HeaderMap,
) -> ApiResult<Response> {
    let size = entry.size;
    let quoted = format!("\"{etag}\"");
    let mut headers = extra;
    headers.insert(ETAG, header(&quoted)?);
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(inm) = request.get(IF_NONE_MATCH)
        && matches_etag(inm, etag)
    {
        return respond(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }
    let range = match request.get(RANGE).and_then(|r| r.to_str().ok()) {
        None => None,
        Some(text) => match parse_range(text, size) {
            RangeSpec::Ignore => None,
            RangeSpec::Satisfiable(r) => Some(r),
            RangeSpec::Unsatisfiable => {
                let mut response = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "invalid_input",
                    format!("range {text:?} is outside the file's {size} bytes"),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(CONTENT_RANGE, header(&format!("bytes */{size}"))?);
                return Ok(response);
            }
        },
    };
    let (status, span) = match &range {
        Some(r) => {
            headers.insert(
                CONTENT_RANGE,
                header(&format!("bytes {}-{}/{size}", r.start, r.end - 1))?,
            );
            (StatusCode::PARTIAL_CONTENT, r.clone())
        }
        None => (StatusCode::OK, 0..size),
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(span.end - span.start));
    if method == Method::HEAD {
        return respond(status, headers, Body::empty());
    }
    let store = state.registry.artifact_store().clone();
    let digest = entry.digest;
    let body = if range.is_none() {
        let stream = store.get(&digest).await.map_err(ApiError::from)?;
        if state.options.verify_downloads {
            Body::from_stream(verified(
                stream,
                digest,
                size,
                entry.path.as_str().to_owned(),
            ))
        } else {
            Body::from_stream(stream)
        }
    } else {
        let chunks = stream::iter(chunked(span)).then(move |r| {
            let store = store.clone();
            async move { store.get_range(&digest, r).await }
        });
        Body::from_stream(chunks)
    };
    respond(status, headers, body)
}

/// How many chunks (of the store's size, 1 MiB for a local store) a verified
/// download reads and hashes ahead of what the connection has sent.
const AHEAD: usize = 2;

/// Passes `stream` through, hashing it; the last chunk is held back until the
/// digest and length are checked, and replaced by an error if they differ.
///
/// The store is read and hashed by a task of its own, [`AHEAD`] chunks in
/// front of the connection, so the hash of one chunk overlaps the socket
/// write of the one before on another worker thread instead of following it.
/// When the client goes away the body (and with it the receiver) is dropped;
/// the reader's next send fails and it stops, dropping the store's stream.
fn verified(
    mut stream: crate::store::ByteStream,
    digest: Digest,
    size: u64,
    path: String,
) -> impl futures::Stream<Item = Result<Bytes, Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Error>>(AHEAD);
    tokio::spawn(async move {
        let mut hasher = blake3::Hasher::new();
        let mut held = None::<Bytes>;
        loop {
            let next = tokio::select! {
                biased;
                () = tx.closed() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    if let Some(prev) = held.replace(chunk)
                        && tx.send(Ok(prev)).await.is_err()
                    {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => break,
            }
        }
        let actual = Digest::from(hasher.finalize());
        let last = if actual != digest || hasher.count() != size {
            Err(Error::Integrity {
                what: format!("file '{path}' while serving it"),
                expected: digest,
                actual,
                location: None,
            })
        } else {
            match held {
                Some(last) => Ok(last),
                None => return,
            }
        };
        let _ = tx.send(last).await;
    });
    receiver_stream(rx)
}

/// The items of `rx` as a stream, ending when every sender is gone.
fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

/// `span` cut into store reads of at most [`RANGE_CHUNK`] bytes.
fn chunked(span: Range<u64>) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut at = span.start;
    while at < span.end {
        let end = (at + RANGE_CHUNK).min(span.end);
        out.push(at..end);
        at = end;
    }
    out
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn header(text: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(text).map_err(|_| ApiError::internal("a header value is not valid"))
}

/// Whether an `If-None-Match` value names `etag` (or is `*`). Weak tags match
/// too: a GET may use the weak comparison.
fn matches_etag(value: &HeaderValue, etag: &str) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    text.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == etag)
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum RangeSpec {
    /// Not a single byte range this server serves (another unit, several
    /// ranges, malformed): answer with the whole file, as RFC 9110 allows.
    Ignore,
    /// The bytes `start..end` (end exclusive, within the file).
    Satisfiable(Range<u64>),
    /// A byte range that starts at or after the end of the file.
    Unsatisfiable,
}

/// Parses one `bytes=` range against a file of `size` bytes (RFC 9110 §14.1.2).
pub(crate) fn parse_range(text: &str, size: u64) -> RangeSpec {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignore;
    };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let parse = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match parse(suffix) {
            None => RangeSpec::Ignore,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Satisfiable(size.saturating_sub(n)..size),
        },
        (start, end) => {
            let Some(start) = parse(start) else {
                return RangeSpec::Ignore;
            };
            let end = if end.is_empty() {
                size.saturating_sub(1)
            } else {
                match parse(end) {
                    Some(e) if e >= start => e.min(size.saturating_sub(1)),
                    _ => return RangeSpec::Ignore,
                }
            };
            if start >= size {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Satisfiable(start..end + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-9", 100), Satisfiable(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Satisfiable(90..100));
        assert_eq!(parse_range("bytes=90-500", 100), Satisfiable(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Satisfiable(90..100));
        assert_eq!(parse_range("bytes=-500", 100), Satisfiable(0..100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        for ignored in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-",
            "bytes=",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(ignored, 100), Ignore, "{ignored}");
        }
    }

    #[test]
    fn chunks_cover_the_span_exactly() {
        let span = 3..(2 * RANGE_CHUNK + 5);
        let parts = chunked(span.clone());
        assert_eq!(parts.first().map(|r| r.start), Some(span.start));
        assert_eq!(parts.last().map(|r| r.end), Some(span.end));
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        assert!(chunked(5..5).is_empty());
    }
}
