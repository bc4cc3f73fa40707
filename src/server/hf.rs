//! The Hugging Face Hub download path: with `HF_ENDPOINT=http://host:port`,
//! `huggingface_hub.snapshot_download("fraud", revision="production")` and
//! `hf_hub_download("fraud", "config.json", revision=…)` fetch a version's
//! files, byte for byte.
//!
//! A *repository* is a model (`fraud`; model names have no `/`, so there are
//! no namespaces). The routes are the ones the clients call:
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/models/{repo}` and `…/revision/{rev}` | `{"id","modelId","sha","siblings",…}` |
//! | `GET /api/models/{repo}/tree/{rev}[/{dir}]` | the files (and directories), paginated |
//! | `HEAD`/`GET /{repo}/resolve/{rev}/{path}` | one file, through the shared download path |
//!
//! # Revisions
//! A revision names one version of the model, parsed as a
//! [`VersionRef`] so the library's rules apply:
//! - 40 lowercase hex digits: a *commit id*, see below;
//! - `main` (what clients ask for when given no revision): the alias `main` if
//!   the model has one, otherwise the newest version that is not deprecated
//!   (`@latest`);
//! - all digits: a version number (`7`); starting with a digit: a semver
//!   label (`1.4.0`); 64 hex digits: a full manifest digest;
//! - anything else: a stage or alias (`production`, `champion`, `latest`).
//!
//! A revision that names no version is `404` with `X-Error-Code:
//! RevisionNotFound`, an unknown model `RepoNotFound`, an unknown file
//! `EntryNotFound`; the clients turn these codes into their exception types.
//! The body is the Hub's `{"error": message}`, and `X-Error-Message` repeats
//! the message (a `HEAD` has no body). A file path that breaks [`RelPath`]'s
//! rules (`..`, absolute, NUL, backslash; percent-encoded or not) is `400`
//! with `EntryNotFound`, before anything is read.
//!
//! # Commit ids, object ids and ETags
//! - The commit of a version is the first 40 hex digits of its manifest
//!   digest ([`VersionRecord::artifact`](crate::VersionRecord)): stable, the
//!   same wherever the registry is served from, and 40 hex digits so the
//!   clients' shortcuts for commit hashes apply (no `/revision` call, cache
//!   folders named by commit). Versions with the same files share a commit;
//!   a commit names the newest of them.
//! - Every file is presented as an LFS file, so clients identify its bytes by
//!   the `lfs.oid` and the `ETag`: both are [`linked_etag`], the SHA-256 the
//!   Hub uses, recorded at ingest (for versions registered before SHA-256
//!   was recorded, the file's BLAKE3 digest in hex). The `ETag` is also the
//!   clients' cache file name, hence plain hex.
//! - A tree entry's git `oid` would be the git blob SHA-1 of the file, which
//!   would mean re-reading every file. It is instead the first 40 hex digits
//!   of the file's BLAKE3 digest ([`blob_oid`]); a directory's is derived the
//!   same way from the paths and digests below it. The clients only store
//!   these ids, and verify files by `lfs.oid` whenever it is present.
//!
//! # Downloads
//! `resolve` serves through the shared download path (`ETag`,
//! `If-None-Match`, one `Range`, whole files verified as they stream) with
//! `X-Repo-Commit`, `X-Linked-Etag` and `X-Linked-Size`. Asked by a named
//! revision, it also sends `Location:` the same file by commit id:
//! `huggingface_hub` downloads from the `HEAD`'s `Location`, so its `GET`
//! fetches the bytes the `HEAD` described even if `production` moves in
//! between.
//!
//! # Limits
//! - Read-only: nothing here writes (no uploads, no commits).
//! - No Xet: no `X-Xet-*` headers and no `xetHash`, so clients download over
//!   plain HTTP.
//! - Versions registered before manifests recorded SHA-256 answer BLAKE3 hex
//!   as `lfs.oid` and `ETag`: for them `HfApi.verify_repo_checksums` reports
//!   every file as a mismatch, and a `local_dir` file found without the
//!   client's metadata is downloaded again rather than trusted.
//! - `lfs.pointerSize` is fixed at 134 bytes (the size of a pointer to a file
//!   of 9 decimal digits); no client reads it.
//! - Tree pages hold at most 1,000 entries (`?limit=`, this server's own
//!   parameter, asks for fewer) and are
//!   chained by `Link: <…>; rel="next"`; the next page's URL names the
//!   commit, so a listing does not change under its reader if `production`
//!   moves. `expand` is accepted and ignored (no `lastCommit`).

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery};
use axum::http::header::{HOST, LINK, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::State;
use super::error::ApiError;
use super::files;
use crate::{
    AliasName, Error, Manifest, ManifestEntry, Missing, ModelName, RelPath, Selector,
    VersionFilter, VersionRecord, VersionRef,
};

/// `X-Error-Code` of an unknown model (and of a refused token: the Hub does
/// not tell a private repository from a missing one).
const REPO_NOT_FOUND: &str = "RepoNotFound";
/// `X-Error-Code` of a revision that names no version.
const REVISION_NOT_FOUND: &str = "RevisionNotFound";
/// `X-Error-Code` of a path that names no file.
const ENTRY_NOT_FOUND: &str = "EntryNotFound";

/// The most entries in one page of a tree listing (the Hub's own page size).
const MAX_PAGE: usize = 1000;
/// The `pointerSize` of every LFS entry (see the module documentation).
const POINTER_SIZE: u64 = 134;
/// How many hex digits a commit id and a git object id have.
const OID_HEX: usize = 40;

/// The routes `huggingface_hub` and `hf-hub` call.
pub(crate) fn routes(_state: &State) -> Router<State> {
    // `get` answers HEAD too; `files::serve` sends no body for it.
    Router::new()
        .route("/api/models/{repo}", get(model_info_main))
        .route("/api/models/{repo}/revision/{rev}", get(model_info))
        .route("/api/models/{repo}/tree/{rev}", get(tree_root))
        .route("/api/models/{repo}/tree/{rev}/{*path}", get(tree_dir))
        .route("/{repo}/resolve/{rev}/{*path}", get(resolve_file))
}

/// Whether `path` is one of this API's.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with("/api/models/") || path.split('/').nth(2) == Some("resolve")
}

/// `e` in the Hub's shape: `{"error": message}` with the `X-Error-Code` the
/// clients map to their exception types, and the message again in
/// `X-Error-Message` (a `HEAD` answer has no body to carry it).
pub(crate) fn error_response(e: ApiError, code: Option<&'static str>) -> Response {
    let code = code.or(match e.kind {
        "unauthorized" => Some(REPO_NOT_FOUND),
        _ => None,
    });
    let mut response = (e.status, axum::Json(json!({ "error": e.message }))).into_response();
    let headers = response.headers_mut();
    if let Some(code) = code {
        headers.insert("x-error-code", HeaderValue::from_static(code));
    }
    if let Ok(message) = HeaderValue::from_str(&header_text(&e.message)) {
        headers.insert("x-error-message", message);
    }
    response
}

/// `text` as a header value: printable ASCII only (anything else becomes
/// `?`), at most 512 characters.
fn header_text(text: &str) -> String {
    text.chars()
        .take(512)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// A failed Hub request: the error, the `X-Error-Code` it is answered with,
/// and the commit when the revision was found (the clients remember that a
/// file is absent from a commit by the `X-Repo-Commit` of its 404).
#[derive(Debug)]
struct HfError {
    // Boxed: handlers return `Result<_, HfError>` everywhere, and the error
    // is the rare path.
    error: Box<ApiError>,
    code: Option<&'static str>,
    commit: Option<String>,
}

impl HfError {
    fn new(status: StatusCode, message: impl Into<String>, code: &'static str) -> Self {
        let kind = if status == StatusCode::BAD_REQUEST {
            "invalid_input"
        } else {
            "not_found"
        };
        HfError {
            error: Box::new(ApiError::new(status, kind, message)),
            code: Some(code),
            commit: None,
        }
    }

    /// The error, answered with `X-Repo-Commit: commit`.
    fn at(mut self, commit: &str) -> Self {
        self.commit = Some(commit.to_owned());
        self
    }

    /// A library error from looking up a model or a version: which of the
    /// Hub's codes it is follows from what was missing.
    fn lookup(e: Error) -> Self {
        let code = match &e {
            Error::NotFound {
                missing: Missing::Model { .. },
                ..
            } => Some(REPO_NOT_FOUND),
            Error::NotFound {
                missing: Missing::Version { .. } | Missing::Alias { .. },
                ..
            } => Some(REVISION_NOT_FOUND),
            _ => None,
        };
        HfError {
            error: Box::new(e.into()),
            code,
            commit: None,
        }
    }
}

impl From<ApiError> for HfError {
    fn from(error: ApiError) -> Self {
        HfError {
            error: Box::new(error),
            code: None,
            commit: None,
        }
    }
}

impl IntoResponse for HfError {
    fn into_response(self) -> Response {
        let mut response = error_response(*self.error, self.code);
        if let Some(commit) = self.commit.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert("x-repo-commit", commit);
        }
        response
    }
}

type HfResult<T> = Result<T, HfError>;

/// The SHA-256 of a file's bytes in hex, as the Hub clients expect it in
/// `lfs.oid`, `ETag` and `X-Linked-Etag` (and as their cache's file name),
/// recorded at ingest. A version registered before SHA-256 was recorded
/// answers with its BLAKE3 hex instead: still a stable, filesystem-safe name,
/// but one the client's own SHA-256 checks do not match.
fn linked_etag(entry: &ManifestEntry) -> String {
    match entry.sha256 {
        Some(sha) => sha.to_hex(),
        None => entry.digest.to_hex(),
    }
}

/// A file's git object id in tree listings: the first 40 hex digits of its
/// BLAKE3 digest (see the module documentation).
fn blob_oid(entry: &ManifestEntry) -> String {
    let mut hex = entry.digest.to_hex();
    hex.truncate(OID_HEX);
    hex
}

/// A directory's git object id: 40 hex digits of the BLAKE3 hash of the
/// relative paths and digests of the files below it (`under`, each of whose
/// paths starts with `prefix`), so it changes exactly when they do.
fn tree_oid(under: &[ManifestEntry], prefix: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"modelreg hf tree v1\0");
    for e in under {
        let rel = e.path.as_str().get(prefix.len()..).unwrap_or_default();
        hasher.update(rel.as_bytes());
        hasher.update(b"\0");
        hasher.update(e.digest.as_bytes());
    }
    let mut hex = hasher.finalize().to_hex().to_string();
    hex.truncate(OID_HEX);
    hex
}

// ----- revisions -------------------------------------------------------------

/// What a Hub revision names, before it is looked up.
#[derive(Debug, PartialEq)]
enum Revision {
    /// 40 hex digits: the (newest) version whose manifest digest starts with
    /// these 20 bytes.
    Commit([u8; OID_HEX / 2]),
    /// `main`: the alias `main` if there is one, else the latest version.
    Main,
    /// Everything else, as the library's reference.
    Ref(VersionRef),
}

/// Parses `rev` (see the module documentation), leaving validation to
/// [`VersionRef`]'s parser.
fn parse_revision(model: &ModelName, rev: &str) -> crate::Result<Revision> {
    if let Some(prefix) = commit_prefix(rev) {
        return Ok(Revision::Commit(prefix));
    }
    if rev == "main" {
        return Ok(Revision::Main);
    }
    let is_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let reference = if rev.len() == 64 && is_hex(rev) {
        format!("{model}#blake3:{rev}")
    } else if !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_digit()) {
        format!("{model}/{rev}")
    } else if rev.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{model}:{rev}")
    } else {
        format!("{model}@{rev}")
    };
    reference.parse().map(Revision::Ref)
}

/// The 20 bytes of a 40-digit lowercase hex commit id (the form the clients
/// recognise as a commit hash).
fn commit_prefix(rev: &str) -> Option<[u8; OID_HEX / 2]> {
    if rev.len() != OID_HEX {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; OID_HEX / 2];
    for (o, pair) in out.iter_mut().zip(rev.as_bytes().chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The commit id of a version: the first 40 hex digits of its manifest digest.
fn commit_of(v: &VersionRecord) -> String {
    let mut hex = v.artifact.to_hex();
    hex.truncate(OID_HEX);
    hex
}

/// A revision looked up.
struct Resolved {
    model: ModelName,
    version: Arc<VersionRecord>,
    commit: String,
}

/// Looks up `rev` of model `repo`.
async fn resolve(state: &State, repo: &str, rev: &str) -> HfResult<Resolved> {
    let model = ModelName::new(repo).map_err(|e| {
        HfError::new(
            StatusCode::NOT_FOUND,
            format!("no model '{repo}' here: {e}"),
            REPO_NOT_FOUND,
        )
    })?;
    let registry = &state.registry;
    let revision = parse_revision(&model, rev).map_err(|e| {
        HfError::new(
            StatusCode::NOT_FOUND,
            format!("revision '{rev}' names no version of '{model}': {e}"),
            REVISION_NOT_FOUND,
        )
    })?;
    let version = match revision {
        Revision::Commit(prefix) => registry
            .list_versions(&model, &VersionFilter::new())
            .await
            .map_err(HfError::lookup)?
            .into_iter()
            .rev()
            .find(|v| v.artifact.as_bytes().starts_with(&prefix))
            .ok_or_else(|| {
                HfError::new(
                    StatusCode::NOT_FOUND,
                    format!("no version of '{model}' has commit {rev}"),
                    REVISION_NOT_FOUND,
                )
            })?,
        Revision::Main => {
            let main = VersionRef {
                model: model.clone(),
                selector: Selector::Alias(AliasName::new("main").map_err(HfError::lookup)?),
            };
            match registry.resolve(main).await {
                Ok(v) => Arc::new(v),
                Err(Error::NotFound {
                    missing: Missing::Version { .. } | Missing::Alias { .. },
                    ..
                }) => Arc::new(
                    registry
                        .resolve(VersionRef::latest(model.clone()))
                        .await
                        .map_err(HfError::lookup)?,
                ),
                Err(e) => return Err(HfError::lookup(e)),
            }
        }
        Revision::Ref(r) => Arc::new(registry.resolve(r).await.map_err(HfError::lookup)?),
    };
    Ok(Resolved {
        commit: commit_of(&version),
        model,
        version,
    })
}

/// The manifest of a resolved version.
async fn manifest(state: &State, r: &Resolved) -> HfResult<Arc<Manifest>> {
    crate::domain::state::not_purged(&r.version).map_err(|e| HfError::from(ApiError::from(e)))?;
    state
        .registry
        .verified_manifest(&r.version.artifact)
        .await
        .map_err(|e| HfError::from(ApiError::from(e)))
}

/// A path parameter that could not be decoded (not UTF-8 once unescaped).
fn path_rejected(e: PathRejection) -> HfError {
    ApiError::bad_request(format!("the request path is not valid: {e}")).into()
}

/// `path` checked as a file path inside a model ([`RelPath`]'s rules); a
/// hostile path (`..`, absolute, NUL) is refused before anything is read.
fn entry_path(path: String) -> HfResult<RelPath> {
    RelPath::new(path).map_err(|e| {
        HfError::new(
            StatusCode::BAD_REQUEST,
            format!("not a file path inside a model: {e}"),
            ENTRY_NOT_FOUND,
        )
    })
}

// ----- model info ------------------------------------------------------------

async fn model_info_main(
    axum::extract::State(state): axum::extract::State<State>,
    params: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> HfResult<Response> {
    let Path(repo) = params.map_err(path_rejected)?;
    info(&state, &repo, "main", query.as_deref()).await
}

async fn model_info(
    axum::extract::State(state): axum::extract::State<State>,
    params: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> HfResult<Response> {
    let Path((repo, rev)) = params.map_err(path_rejected)?;
    info(&state, &repo, &rev, query.as_deref()).await
}

/// The Hub's model info for a revision. `?blobs=true` adds each file's size,
/// object id and LFS block to `siblings`, as the Hub does.
async fn info(state: &State, repo: &str, rev: &str, query: Option<&str>) -> HfResult<Response> {
    let r = resolve(state, repo, rev).await?;
    let manifest = manifest(state, &r).await?;
    let blobs = query_pairs(query).any(|(k, v)| k == "blobs" && flag(&v) == Some(true));
    let siblings: Vec<Value> = manifest
        .entries()
        .iter()
        .map(|e| {
            if blobs {
                json!({
                    "rfilename": e.path.as_str(),
                    "size": e.size,
                    "blobId": blob_oid(e),
                    "lfs": {"sha256": linked_etag(e), "size": e.size, "pointerSize": POINTER_SIZE},
                })
            } else {
                json!({ "rfilename": e.path.as_str() })
            }
        })
        .collect();
    let v = &r.version;
    let tags: Vec<String> = v
        .tags
        .iter()
        .map(|(k, val)| {
            if val.is_empty() {
                k.to_string()
            } else {
                format!("{k}:{val}")
            }
        })
        .collect();
    let modified = v
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = json!({
        "id": r.model.as_str(),
        "modelId": r.model.as_str(),
        "sha": r.commit,
        "private": false,
        "disabled": false,
        "gated": false,
        "tags": tags,
        "lastModified": modified,
        "siblings": siblings,
        // Not the Hub's: which version the revision named.
        "modelreg": {
            "version": v.number.get(),
            "semver": v.semver.as_ref().map(ToString::to_string),
            "stage": v.stage.as_str(),
        },
    });
    Ok(axum::Json(body).into_response())
}

// ----- tree ------------------------------------------------------------------

async fn tree_root(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    params: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> HfResult<Response> {
    let Path((repo, rev)) = params.map_err(path_rejected)?;
    tree(&state, &headers, &repo, &rev, None, query.as_deref()).await
}

async fn tree_dir(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    params: Result<Path<(String, String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> HfResult<Response> {
    let Path((repo, rev, path)) = params.map_err(path_rejected)?;
    // A trailing slash (`tree/main/sub/`) names the directory too.
    let path = path.strip_suffix('/').unwrap_or(&path).to_owned();
    let dir = entry_path(path)?;
    tree(&state, &headers, &repo, &rev, Some(dir), query.as_deref()).await
}

/// What a tree request asks for besides the directory.
#[derive(Debug, PartialEq)]
struct TreeQuery {
    recursive: bool,
    /// The index of the first entry of the page.
    cursor: usize,
    limit: usize,
}

fn parse_tree_query(query: Option<&str>) -> HfResult<TreeQuery> {
    let mut q = TreeQuery {
        recursive: false,
        cursor: 0,
        limit: MAX_PAGE,
    };
    for (key, value) in query_pairs(query) {
        let bad = |what: &str| -> HfError {
            ApiError::bad_request(format!("query parameter {key}={value:?}: {what}")).into()
        };
        match key.as_ref() {
            "recursive" => {
                q.recursive = flag(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "cursor" => {
                q.cursor = value
                    .parse()
                    .map_err(|_| bad("not a cursor of this server"))?
            }
            "limit" => {
                q.limit = match value.parse::<usize>() {
                    Ok(n) if n >= 1 => n.min(MAX_PAGE),
                    _ => return Err(bad("expected a number of entries from 1")),
                }
            }
            // `expand` asks for last commits and security scans, which this
            // server does not have; the entries are the same without them.
            _ => {}
        }
    }
    Ok(q)
}

/// The decoded `key=value` pairs of a query string.
fn query_pairs(
    query: Option<&str>,
) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
}

/// A boolean query value as the clients send it (`True` from Python's `str`).
fn flag(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" | "" => Some(false),
        _ => None,
    }
}

/// One entry of a tree listing.
#[derive(Debug, PartialEq)]
enum Node<'a> {
    File(&'a ManifestEntry),
    Dir { path: &'a str, oid: String },
}

impl Node<'_> {
    fn to_json(&self) -> Value {
        match self {
            Node::File(e) => json!({
                "type": "file",
                "oid": blob_oid(e),
                "size": e.size,
                "path": e.path.as_str(),
                "lfs": {"oid": linked_etag(e), "size": e.size, "pointerSize": POINTER_SIZE},
            }),
            Node::Dir { path, oid } => json!({
                "type": "directory",
                "oid": oid,
                "size": 0,
                "path": path,
            }),
        }
    }
}

/// The entries of directory `dir` (the top level for `None`): its files and
/// subdirectories, or with `recursive` everything below it, each directory
/// before its contents. `None` if no file is below `dir`.
fn list_tree<'a>(
    files: &'a [ManifestEntry],
    dir: Option<&str>,
    recursive: bool,
) -> Option<Vec<Node<'a>>> {
    let prefix = dir.map(|d| format!("{d}/")).unwrap_or_default();
    // Entries are sorted by path, so the paths that start with `prefix` (and
    // those below any one directory) are consecutive.
    let start = files.partition_point(|e| e.path.as_str() < prefix.as_str());
    let len = files[start..]
        .iter()
        .take_while(|e| e.path.as_str().starts_with(&prefix))
        .count();
    if dir.is_some() && len == 0 {
        return None;
    }
    let under = &files[start..start + len];
    let mut out = Vec::new();
    let mut previous: Option<&str> = None;
    for (i, e) in under.iter().enumerate() {
        let full = e.path.as_str();
        let rel = &full[prefix.len()..];
        for (slash, _) in rel.match_indices('/') {
            // A directory is new unless the previous file was below it too.
            let dir_rel = &rel[..=slash];
            if !previous.is_some_and(|p| p.starts_with(dir_rel)) {
                let dir_full = &full[..prefix.len() + slash + 1];
                let below = under[i..]
                    .iter()
                    .take_while(|f| f.path.as_str().starts_with(dir_full))
                    .count();
                out.push(Node::Dir {
                    path: &dir_full[..dir_full.len() - 1],
                    oid: tree_oid(&under[i..i + below], dir_full),
                });
            }
            if !recursive {
                break;
            }
        }
        if recursive || !rel.contains('/') {
            out.push(Node::File(e));
        }
        previous = Some(rel);
    }
    Some(out)
}

/// Characters left as they are in a path segment of a `Link` URL.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One page of the tree of `rev` (below `dir`), with a `Link` to the next.
async fn tree(
    state: &State,
    headers: &HeaderMap,
    repo: &str,
    rev: &str,
    dir: Option<RelPath>,
    query: Option<&str>,
) -> HfResult<Response> {
    let q = parse_tree_query(query)?;
    let r = resolve(state, repo, rev).await?;
    let manifest = manifest(state, &r).await?;
    let dir_str = dir.as_ref().map(RelPath::as_str);
    let not_found = |what: &str| {
        HfError::new(
            StatusCode::NOT_FOUND,
            format!(
                "'{}' {what} in {}/{} (commit {})",
                dir_str.unwrap_or_default(),
                r.model,
                r.version.number,
                r.commit
            ),
            ENTRY_NOT_FOUND,
        )
        .at(&r.commit)
    };
    if let Some(d) = dir_str
        && manifest.get(d).is_some()
    {
        return Err(not_found("is a file, not a directory,"));
    }
    let nodes = list_tree(manifest.entries(), dir_str, q.recursive)
        .ok_or_else(|| not_found("is no directory"))?;
    if q.cursor > nodes.len() {
        return Err(ApiError::bad_request(format!(
            "cursor {} is past the end of the listing ({} entries)",
            q.cursor,
            nodes.len()
        ))
        .into());
    }
    let end = q.cursor.saturating_add(q.limit).min(nodes.len());
    let page: Vec<Value> = nodes[q.cursor..end].iter().map(Node::to_json).collect();
    let mut response = axum::Json(page).into_response();
    if end < nodes.len() {
        let mut path = format!("/api/models/{}/tree/{}", r.model, r.commit);
        if let Some(d) = &dir {
            path.push_str(&encoded(d));
        }
        let next = format!(
            "{}{path}?recursive={}&limit={}&cursor={end}",
            origin(headers),
            q.recursive,
            q.limit
        );
        if let Ok(link) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            response.headers_mut().insert(LINK, link);
        }
    }
    Ok(response)
}

/// `/` and each segment of `path`, percent-encoded, for a URL.
fn encoded(path: &RelPath) -> String {
    let mut out = String::new();
    for segment in path.segments() {
        out.push('/');
        out.extend(utf8_percent_encode(segment, SEGMENT));
    }
    out
}

/// `http://host:port` as the client reached this server (`https` behind a
/// proxy that says so in `X-Forwarded-Proto`), or nothing, making the URL
/// relative, when the request named no usable host.
fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    let Some(host) = host else {
        return String::new();
    };
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

// ----- files -----------------------------------------------------------------

/// `HEAD` or `GET` of one file: the shared download path (`ETag`,
/// `If-None-Match`, `Range`, verified as it streams) with the headers the Hub
/// clients read — `X-Repo-Commit`, `X-Linked-Etag`, `X-Linked-Size`.
async fn resolve_file(
    axum::extract::State(state): axum::extract::State<State>,
    method: Method,
    headers: HeaderMap,
    params: Result<Path<(String, String, String)>, PathRejection>,
) -> HfResult<Response> {
    let Path((repo, rev, path)) = params.map_err(path_rejected)?;
    let path = entry_path(path)?;
    let r = resolve(&state, &repo, &rev).await?;
    let manifest = manifest(&state, &r).await?;
    let Some(entry) = manifest.get(path.as_str()) else {
        return Err(HfError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no file '{path}' in {}/{} (commit {})",
                r.model, r.version.number, r.commit
            ),
            ENTRY_NOT_FOUND,
        )
        .at(&r.commit));
    };
    let etag = linked_etag(entry);
    let mut extra = HeaderMap::new();
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| HfError::from(ApiError::internal("a header value is not valid")))
    };
    extra.insert("x-repo-commit", value(&r.commit)?);
    extra.insert("x-linked-etag", value(&format!("\"{etag}\""))?);
    extra.insert("x-linked-size", HeaderValue::from(entry.size));
    // A named revision can move between a client's HEAD and its GET, and a
    // promotion in between would hand out the new version's bytes under the
    // ETag and commit the HEAD announced (the client checks only the size).
    // huggingface_hub downloads from the HEAD's `Location` when it has one,
    // so naming the commit's URL there pins the GET to the bytes the HEAD
    // described, without the round trip of a redirect.
    let origin = origin(&headers);
    if rev != r.commit && !origin.is_empty() {
        let pinned = format!(
            "{origin}/{}/resolve/{}{}",
            r.model,
            r.commit,
            encoded(&path)
        );
        extra.insert(LOCATION, value(&pinned)?);
    }
    Ok(files::serve(&state, &method, &headers, entry, &etag, extra).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn model() -> ModelName {
        ModelName::new("fraud").expect("a model name")
    }

    fn reference(text: &str) -> Revision {
        Revision::Ref(text.parse().expect("a reference"))
    }

    #[test]
    fn revisions_map_to_references() {
        let m = model();
        let parse = |rev: &str| parse_revision(&m, rev);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let Ok(Revision::Commit(bytes)) = parse(commit) else {
            panic!("a commit id");
        };
        assert_eq!(bytes[0], 0x01);
        assert_eq!(bytes[19], 0x67);
        assert_eq!(parse("main").ok(), Some(Revision::Main));
        assert_eq!(parse("7").ok(), Some(reference("fraud/7")));
        assert_eq!(parse("1.4.0").ok(), Some(reference("fraud:1.4.0")));
        assert_eq!(
            parse("1.4.0-rc.1").ok(),
            Some(reference("fraud:1.4.0-rc.1"))
        );
        assert_eq!(
            parse("production").ok(),
            Some(reference("fraud@production"))
        );
        assert_eq!(parse("latest").ok(), Some(reference("fraud@latest")));
        assert_eq!(parse("champion").ok(), Some(reference("fraud@champion")));
        let full = Digest::of(b"manifest").to_hex();
        assert_eq!(
            parse(&full).ok(),
            Some(reference(&format!("fraud#blake3:{full}")))
        );
        for bad in [
            "",
            "0",
            "07",
            "1.4",
            "none",
            "Champion",
            "refs/pr/1",
            "../x",
            "a@b",
            "x#blake3:00",
            &commit.to_uppercase(),
            &commit[..39],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn entry(path: &str) -> ManifestEntry {
        ManifestEntry {
            path: RelPath::new(path).expect("a path"),
            size: path.len() as u64,
            digest: Digest::of(path.as_bytes()),
            sha256: None,
        }
    }

    fn paths(nodes: &[Node<'_>]) -> Vec<String> {
        nodes
            .iter()
            .map(|n| match n {
                Node::File(e) => e.path.as_str().to_owned(),
                Node::Dir { path, .. } => format!("{path}/"),
            })
            .collect()
    }

    #[test]
    fn trees_list_files_and_directories() {
        let m = Manifest::new(
            [
                "config.json",
                "sub/a.json",
                "sub/deep/b.bin",
                "sub/deep/c.bin",
                "sub/z.json",
                "sub.txt",
                "x/y/z",
            ]
            .into_iter()
            .map(entry)
            .collect(),
        )
        .expect("a manifest");
        let files = m.entries();
        let list = |dir, recursive| list_tree(files, dir, recursive).map(|n| paths(&n));
        assert_eq!(
            list(None, false),
            Some(vec![
                "config.json".into(),
                "sub.txt".into(),
                "sub/".into(),
                "x/".into()
            ])
        );
        assert_eq!(
            list(Some("sub"), false),
            Some(vec![
                "sub/a.json".into(),
                "sub/deep/".into(),
                "sub/z.json".into()
            ])
        );
        assert_eq!(
            list(None, true),
            Some(
                [
                    "config.json",
                    // '.' sorts before '/'.
                    "sub.txt",
                    "sub/",
                    "sub/a.json",
                    "sub/deep/",
                    "sub/deep/b.bin",
                    "sub/deep/c.bin",
                    "sub/z.json",
                    "x/",
                    "x/y/",
                    "x/y/z"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        assert_eq!(
            list(Some("sub/deep"), true),
            Some(vec!["sub/deep/b.bin".into(), "sub/deep/c.bin".into()])
        );
        assert_eq!(list(Some("su"), false), None);
        assert_eq!(list(Some("nowhere"), true), None);
    }

    #[test]
    fn directory_oids_follow_their_contents() {
        let oid = |names: &[&str]| {
            let m = Manifest::new(names.iter().map(|n| entry(n)).collect()).expect("manifest");
            match list_tree(m.entries(), None, false)
                .expect("a listing")
                .as_slice()
            {
                [Node::Dir { oid, .. }, ..] => oid.clone(),
                other => panic!("expected a directory first, got {other:?}"),
            }
        };
        let a = oid(&["d/a", "d/b"]);
        assert_eq!(a.len(), OID_HEX);
        assert_eq!(a, oid(&["d/a", "d/b", "e"]), "a sibling changes nothing");
        assert_ne!(a, oid(&["d/a", "d/c"]));
    }

    #[test]
    fn tree_queries_parse_and_refuse_garbage() {
        let ok = |q| parse_tree_query(Some(q)).expect("a valid query");
        assert_eq!(
            ok("recursive=True&expand=false"),
            TreeQuery {
                recursive: true,
                cursor: 0,
                limit: MAX_PAGE
            }
        );
        assert_eq!(ok("limit=5000&cursor=7").limit, MAX_PAGE);
        assert_eq!(ok("limit=2&cursor=7").cursor, 7);
        assert_eq!(
            parse_tree_query(None).ok().map(|q| q.recursive),
            Some(false)
        );
        for bad in ["recursive=maybe", "cursor=-1", "cursor=x", "limit=0"] {
            assert!(parse_tree_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages_fit_in_a_header() {
        assert_eq!(header_text("a\0b\ncé"), "a?b?c?");
        assert_eq!(header_text(&"x".repeat(2000)).len(), 512);
    }

    #[test]
    fn routes_sit_beside_the_other_apis() {
        // axum panics when a route conflicts with one already inserted; these
        // are the shapes of the REST and MLflow routes merged beside ours.
        let server = super::super::Server::new(
            crate::Registry::in_memory(),
            super::super::ServerOptions::new(),
        );
        let other = || async { "" };
        let _: Router<State> = Router::new()
            .route("/api/v1/models", get(other))
            .route("/api/v1/models/{name}", get(other))
            .route(
                "/api/v1/models/{name}/versions/{version}/files/{*path}",
                get(other),
            )
            .route("/api/2.0/mlflow/registered-models/get", get(other))
            .route("/api/2.0/mlflow-artifacts/artifacts/{*path}", get(other))
            .route("/api/3.0/mlflow/server-info", get(other))
            .merge(routes(&server.state));
    }

    #[test]
    fn owned_paths() {
        assert!(owns("/api/models/fraud/revision/main"));
        assert!(owns("/fraud/resolve/main/config.json"));
        assert!(!owns("/api/v1/models/fraud"));
        assert!(!owns("/fraud/blob/main/config.json"));
    }

    #[test]
    fn link_origins_come_from_the_request() {
        let mut h = HeaderMap::new();
        assert_eq!(origin(&h), "");
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(origin(&h), "http://127.0.0.1:8080");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(origin(&h), "https://127.0.0.1:8080");
        h.insert(HOST, HeaderValue::from_static("evil>; rel=x"));
        assert_eq!(origin(&h), "");
    }
}
