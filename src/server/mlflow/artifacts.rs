//! `/api/2.0/mlflow-artifacts/artifacts`: staged uploads and registered
//! versions' files (see the [module documentation](super) for the two
//! namespaces).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::staged::{self, Claim};
use super::{ARTIFACTS, Call, MlError, MlResult, invalid};
use crate::server::State;
use crate::server::auth::Role;
use crate::server::error::ApiError;
use crate::server::files;
use crate::store::fsutil::TempFile;
use crate::{ArtifactSource, ManifestEntry, ModelName, RelPath, VersionNumber, VersionRef};

/// The first path segment under which registered versions are read
/// (`models/<model>/<n>/…`); uploads below it are refused.
pub(super) const MODELS: &str = "models";

/// Where uploads are staged, below the server's staging directory.
pub(super) const STAGED: &str = "mlflow-artifacts";

/// Where uploads stream before they are renamed into place (beside
/// [`STAGED`], so a listing never shows a half-received file).
pub(super) const STAGED_TMP: &str = "mlflow-artifacts.tmp";

fn staged_root(state: &State) -> PathBuf {
    state.staging_dir().join(STAGED)
}

/// The artifact path a request names after the API's prefix, percent-decoded
/// (`%2e%2e` is `..`, then refused like `..`).
fn request_path(call: &Call) -> MlResult<String> {
    let raw = call.uri.path().strip_prefix(ARTIFACTS).unwrap_or("");
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|p| p.into_owned())
        .map_err(|_| invalid("the artifact path is not UTF-8"))
}

fn rel_path(text: &str) -> MlResult<RelPath> {
    RelPath::new(text).map_err(|e| invalid(format!("artifact path {text:?}: {e}")))
}

/// A path uploads may be written to: a [`RelPath`] outside [`MODELS`].
fn upload_path(text: &str) -> MlResult<RelPath> {
    let rel = rel_path(text)?;
    if rel.segments().next() == Some(MODELS) {
        return Err(invalid(format!(
            "artifact path {text:?}: '{MODELS}/' is reserved for registered versions \
             (mlflow-artifacts:/{MODELS}/<model>/<n>); upload elsewhere and register \
             from there"
        )));
    }
    Ok(rel)
}

/// Where the files a `model-versions/create` names were staged: `source` is
/// `mlflow-artifacts:/<path>` or `mlflow-artifacts://<host>/<path>` naming
/// an uploaded directory or file. The [`Claim`] keeps the sweep away from
/// them until it is dropped, or consumed once the version is registered.
pub(super) async fn staged_source(
    state: &State,
    source: &str,
) -> MlResult<(ArtifactSource, Claim)> {
    let only = || {
        invalid(format!(
            "source {source:?} is not accepted: only mlflow-artifacts:/<path> sources naming \
             files uploaded to this server first (PUT {ARTIFACTS}/<path>/<file>) can be \
             registered"
        ))
    };
    let rest = source.strip_prefix("mlflow-artifacts:").ok_or_else(only)?;
    let rest = match rest.strip_prefix("//") {
        // The authority names the server the client talked to; the path is
        // what counts.
        Some(after) => after.find('/').map(|i| &after[i..]).ok_or_else(only)?,
        None => rest,
    };
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let rel = rel_path(rest)?;
    if rel.segments().next() == Some(MODELS) {
        return Err(invalid(format!(
            "source {source:?} names a registered version's files; register from an \
             uploaded directory instead"
        )));
    }
    let root = staged_root(state);
    let full = root.join(rel.as_str());
    let claimed = {
        let state = state.clone();
        let rel = rel.as_str().to_owned();
        tokio::task::spawn_blocking(move || state.staged.claim(&root, &rel))
            .await
            .map_err(|e| ApiError::internal(format!("reading the staged uploads failed: {e}")))?
    };
    let meta = match claimed {
        Ok(Some(meta)) => meta,
        Ok(None) => {
            return Err(invalid(format!(
                "source {source:?} names nothing uploaded: PUT its files to \
                 {ARTIFACTS}/{rel}/<file> first (staged files are removed once a version \
                 is registered from them, and after {:?} unregistered)",
                state.options.staged_upload_max_age
            )));
        }
        Err(e) => {
            return Err(
                ApiError::internal(format!("cannot read the staged upload '{rel}': {e}")).into(),
            );
        }
    };
    let claim = Claim::new(state, rel.as_str().to_owned());
    if meta.is_dir() {
        Ok((ArtifactSource::dir(full), claim))
    } else if meta.is_file() {
        Ok((ArtifactSource::file(full), claim))
    } else {
        Err(only())
    }
}

/// `GET artifacts?path=`: the entries directly below `path` (relative to it,
/// as MLflow lists them). A path that names a file or nothing lists nothing.
pub(super) async fn list(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let path = p.opt_text("path")?.unwrap_or("").trim_matches('/');
    let files = if path.is_empty() {
        let mut files = list_staged(&call.state, None).await?;
        if !call.state.registry.list_models().await?.is_empty() {
            files.push(json!({ "path": MODELS, "is_dir": true }));
        }
        files
    } else {
        let rel = rel_path(path)?;
        let segments: Vec<&str> = rel.segments().collect();
        if segments[0] == MODELS {
            list_registered(&call.state, &segments[1..]).await?
        } else {
            list_staged(&call.state, Some(&rel)).await?
        }
    };
    Ok(Json(json!({ "files": files })))
}

/// Entries of a staged directory (none if it is missing or a file), by name.
async fn list_staged(state: &State, rel: Option<&RelPath>) -> MlResult<Vec<Value>> {
    let root = staged_root(state);
    let dir = match rel {
        Some(rel) => root.join(rel.as_str()),
        None => root,
    };
    let listed = tokio::task::spawn_blocking(move || -> io::Result<Vec<Value>> {
        let mut out = Vec::new();
        for (entry, meta) in staged::entries(&dir)? {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if meta.is_dir() {
                out.push(json!({ "path": name, "is_dir": true }));
            } else if meta.is_file() {
                out.push(json!({ "path": name, "is_dir": false, "file_size": meta.len() }));
            }
        }
        out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(format!("listing the staged uploads failed: {e}")))?;
    listed.map_err(|e| ApiError::internal(format!("cannot list the staged uploads: {e}")).into())
}

/// `models/…` listings: models, a model's versions, a version's files.
async fn list_registered(state: &State, below: &[&str]) -> MlResult<Vec<Value>> {
    let registry = &state.registry;
    let dir = |name: String| json!({ "path": name, "is_dir": true });
    match below {
        [] => Ok(registry
            .list_models()
            .await?
            .into_iter()
            .map(|m| dir(m.to_string()))
            .collect()),
        [model] => Ok(registry
            .model(*model)
            .await?
            .versions()
            .iter()
            .map(|v| dir(v.number.to_string()))
            .collect()),
        [model, n, inner @ ..] => {
            let manifest = registry.manifest(&version_ref(model, n)?).await?;
            Ok(children(manifest.entries(), &inner.join("/")))
        }
    }
}

fn version_ref(model: &str, n: &str) -> MlResult<VersionRef> {
    let number = n
        .parse::<u64>()
        .ok()
        .and_then(|n| VersionNumber::new(n).ok())
        .ok_or_else(|| invalid(format!("'{n}' is not a version number")))?;
    Ok(VersionRef::number(ModelName::new(model)?, number))
}

/// The files and directories directly below `prefix` (empty: the root) in a
/// manifest's entries, which are sorted by path, so the entries below one
/// directory are contiguous.
fn children(entries: &[ManifestEntry], prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut last_dir: Option<&str> = None;
    for e in entries {
        let path = e.path.as_str();
        let rest = if prefix.is_empty() {
            path
        } else {
            match path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                Some(rest) => rest,
                None => continue,
            }
        };
        match rest.split_once('/') {
            Some((dir, _)) => {
                if last_dir != Some(dir) {
                    out.push(json!({ "path": dir, "is_dir": true }));
                    last_dir = Some(dir);
                }
            }
            None => out.push(json!({ "path": rest, "is_dir": false, "file_size": e.size })),
        }
    }
    out
}

/// `GET|HEAD artifacts/{path}`: a registered version's file (streamed and
/// verified, with `ETag` and `Range`), or a staged upload.
pub(super) async fn download(call: Call) -> MlResult<Response> {
    let text = request_path(&call)?;
    let rel = rel_path(&text)?;
    let segments: Vec<&str> = rel.segments().collect();
    if segments[0] != MODELS {
        return download_staged(&call.state, &rel).await;
    }
    let [_, model, n, file @ ..] = segments.as_slice() else {
        return Err(not_found(format!(
            "'{rel}' is a directory: files are at {MODELS}/<model>/<n>/<path>"
        )));
    };
    if file.is_empty() {
        return Err(not_found(format!("'{rel}' is a directory")));
    }
    let r = version_ref(model, n)?;
    let manifest = call.state.registry.manifest(&r).await?;
    let file = file.join("/");
    let entry = manifest
        .get(&file)
        .ok_or_else(|| not_found(format!("{}/{} has no file '{file}'", r.model, n)))?;
    let etag = entry.digest.to_hex();
    Ok(files::serve(
        &call.state,
        &call.method,
        &call.headers,
        entry,
        &etag,
        HeaderMap::new(),
    )
    .await?)
}

fn not_found(message: String) -> MlError {
    ApiError::not_found(message).into()
}

/// A staged file, streamed from disk (a directory or anything else is 404).
async fn download_staged(state: &State, rel: &RelPath) -> MlResult<Response> {
    let full = staged_root(state).join(rel.as_str());
    let missing = || not_found(format!("no uploaded file '{rel}'"));
    match tokio::fs::symlink_metadata(&full).await {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(missing()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(ApiError::internal(format!("cannot read '{rel}': {e}")).into()),
    }
    let file = match tokio::fs::File::open(&full).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(ApiError::internal(format!("cannot read '{rel}': {e}")).into()),
    };
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(format!("cannot read '{rel}': {e}")))?
        .len();
    // The file read so far, 256 KiB at a time: never whole in memory.
    let chunks = futures::stream::try_unfold(file, |mut f| async move {
        let mut buf = BytesMut::with_capacity(256 * 1024);
        let n = f.read_buf(&mut buf).await?;
        Ok::<_, io::Error>((n > 0).then(|| (buf.freeze(), f)))
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// What the request task hands the thread that writes an upload.
enum Piece {
    Data(Bytes),
    /// Every byte was received: publish the file.
    Done,
}

/// `PUT artifacts/{path}`: one file, streamed to a temp file and renamed
/// into `<staging>/mlflow-artifacts/<path>` once complete (replacing an
/// earlier upload of the same path). The writer role is checked before a
/// byte is read; beyond `max_upload_bytes` the upload is refused (413) and
/// nothing is staged.
pub(super) async fn upload(call: Call) -> MlResult {
    call.caller.require(Role::Writer, call.state.read_only())?;
    let rel = upload_path(&request_path(&call)?)?;
    let state = call.state.clone();
    let limit = state.options.max_upload_bytes;
    let declared = call
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(upload_too_large(limit));
    }
    let _permit = state
        .uploads
        .acquire()
        .await
        .map_err(|_| ApiError::internal("the upload queue is closed"))?;
    let root = state.staging_dir();
    let target = root.join(STAGED).join(rel.as_str());
    let tmp_dir = root.join(STAGED_TMP);
    let (tx, rx) = mpsc::channel::<Piece>(8);
    let shared = state.clone();
    let writer = tokio::task::spawn_blocking(move || write_staged(rx, &shared, &tmp_dir, &target));
    let mut body = call.body.into_data_stream();
    let mut received = 0u64;
    let mut refused = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                refused = Some(invalid(format!("the upload of '{rel}' broke off: {e}")));
                break;
            }
        };
        received += chunk.len() as u64;
        if received > limit {
            refused = Some(upload_too_large(limit));
            break;
        }
        if tx.send(Piece::Data(chunk)).await.is_err() {
            // The writer stopped on an error, reported below.
            break;
        }
    }
    if refused.is_none() {
        // Fails only if the writer already stopped on an error.
        let _ = tx.send(Piece::Done).await;
    }
    // Without `Done`, the writer drops its temp file, which removes it.
    drop(tx);
    let written = writer
        .await
        .map_err(|e| ApiError::internal(format!("staging '{rel}' failed: {e}")))?;
    if let Some(e) = refused {
        return Err(e);
    }
    match written {
        Ok(true) => Ok(Json(json!({}))),
        Ok(false) => Err(ApiError::internal(format!("staging '{rel}' stopped early")).into()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::IsADirectory
            ) =>
        {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "cannot stage '{rel}': it or one of its directories collides with an \
                     uploaded file or directory of the same name ({e})"
                ),
            )
            .into())
        }
        Err(e) => Err(ApiError::internal(format!("cannot stage '{rel}': {e}")).into()),
    }
}

fn upload_too_large(limit: u64) -> MlError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the upload is larger than this server accepts ({limit} bytes)"),
    )
    .into()
}

/// Writes the pieces to a temp file in `tmp_dir` and, on [`Piece::Done`],
/// publishes it at `target` (synced, renamed, directory synced). Returns
/// whether it published; if the channel closes first, the temp file is
/// removed and nothing appears. (Temp files a crash cut off are the sweep's.)
fn write_staged(
    mut rx: mpsc::Receiver<Piece>,
    state: &State,
    tmp_dir: &Path,
    target: &Path,
) -> io::Result<bool> {
    let mut tmp = TempFile::create(tmp_dir)?;
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::Data(bytes) => tmp.file().write_all(&bytes)?,
            Piece::Done => {
                state.staged.publish(tmp, target)?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn entry(path: &str, size: u64) -> ManifestEntry {
        ManifestEntry {
            path: RelPath::new(path).unwrap(),
            size,
            digest: Digest::of(path.as_bytes()),
            sha256: None,
        }
    }

    #[test]
    fn children_lists_one_level() {
        let entries = [
            entry("MLmodel", 1),
            entry("a.b", 2),
            entry("a/x", 3),
            entry("a/y/z", 4),
            entry("b", 5),
        ];
        let names = |prefix| -> Vec<(String, bool)> {
            children(&entries, prefix)
                .iter()
                .map(|v| (v["path"].as_str().unwrap().to_owned(), v["is_dir"] == true))
                .collect()
        };
        assert_eq!(
            names(""),
            [
                ("MLmodel".into(), false),
                ("a.b".into(), false),
                ("a".into(), true),
                ("b".into(), false)
            ]
        );
        assert_eq!(names("a"), [("x".into(), false), ("y".into(), true)]);
        assert_eq!(names("a/y"), [("z".into(), false)]);
        // A file, or nothing: no entries.
        assert!(names("b").is_empty());
        assert!(names("nope").is_empty());
    }

    #[test]
    fn upload_paths_stay_in_their_namespace() {
        assert!(upload_path("uploads/x/model.bin").is_ok());
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/../../b",
            "models/m/1/x",
            "models",
        ] {
            assert!(upload_path(bad).is_err(), "{bad}");
        }
    }
}
