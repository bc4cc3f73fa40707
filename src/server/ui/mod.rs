//! The web UI: server-rendered HTML pages under `/ui/` for people, over the
//! same [`Registry`](crate::Registry) calls as the REST API.
//!
//! - `/ui/`: every model (search by name or tag);
//! - `/ui/models/{model}`: its versions, paged, filtered and sorted by the
//!   registry's paged listing, and a trend chart of each goal metric;
//! - `/ui/models/{model}/versions/{version}`: a version's record, provenance,
//!   files and its comparison with production (or a version picked);
//! - `/ui/models/{model}?at=…`: the same as the model was at a past time;
//! - `/ui/models/{model}/versions/{version}/lineage`: what a version was built
//!   from and what was built from it, drawn as SVG;
//! - `/ui/lineage/dataset?name=…`: every version a dataset affects;
//! - `/ui/models/{model}/history`: the audit trail, paged and filtered;
//! - `/ui/login`: a form that trades a token for a session cookie;
//! - `POST /ui/models/{model}/actions`: a change asked for in a form, shown on a
//!   confirmation page first, then made (see **Actions** below).
//!
//! Pages are [`maud`] templates, which escape every value they interpolate
//! (model names are checked by the library, but tags, descriptions, metric
//! names, actors and reasons are free text). They carry no script: the
//! `Content-Security-Policy` header allows none, and styles only from the
//! embedded stylesheet, so markup that slipped through could not run.
//!
//! **Browsers and tokens.** A browser cannot send a bearer header on a link,
//! so `POST /ui/login` takes a token from a form and sets it as an `HttpOnly`,
//! `SameSite=Strict` cookie. Everywhere but one route the cookie is honoured
//! only on `GET` and `HEAD` and only with the reader role, whatever the
//! token's own role: it opens the pages and the file downloads they link to,
//! and the REST API never takes it for a change. On a server without tokens,
//! or with anonymous reading, no sign-in is needed.
//!
//! **Actions.** The one route where the cookie may change something is
//! `POST /ui/models/{model}/actions` ([`actions`]): promote, approve or reject,
//! set an alias, roll back, change the traffic split, each first shown on a
//! confirmation page with the gates it will meet. There the token's own role
//! counts, and only after three checks against cross-site requests: the
//! cookie is `SameSite=Strict`; a browser's `Origin` must be this server and
//! its `Sec-Fetch-Site`, when sent, `same-origin`; and the form must carry the
//! session's CSRF token, an HMAC-SHA256 of a fixed label keyed by the session's
//! token ([`csrf_token`]), which a page elsewhere cannot read or compute. The
//! sign-in and sign-out forms get the `Origin` check too (they have no session
//! to derive a token from).

mod actions;
mod chart;
mod history;
mod lineage;
mod model;
mod models;
mod version;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;

use super::State;
use super::auth::{self, Caller, Role};
use super::error::ApiError;
use crate::{Actor, Stage};

/// The stylesheet, embedded in the binary.
const STYLE: &str = include_str!("style.css");

/// The tab icon, embedded in the binary (without one, every browser asks for
/// `/favicon.ico` and logs the 404).
const FAVICON: &str = include_str!("favicon.svg");

/// Versions and events per page.
const PAGE_SIZE: usize = 50;

/// The UI's routes (and `/`, which leads to them).
pub(crate) fn routes(_state: &State) -> Router<State> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(models::page))
        .route("/ui/assets/style.css", get(style))
        .route("/ui/assets/favicon.svg", get(favicon))
        .route(
            "/favicon.ico",
            get(|| async { Redirect::to("/ui/assets/favicon.svg") }),
        )
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/models/{model}", get(model::page))
        .route("/ui/models/{model}/history", get(history::page))
        .route(ACTIONS_ROUTE, post(actions::act))
        .route("/ui/models/{model}/versions/{version}", get(version::page))
        .route(
            "/ui/models/{model}/versions/{version}/lineage",
            get(lineage::version_page),
        )
        .route("/ui/lineage/dataset", get(lineage::dataset_page))
        .layer(axum::middleware::map_response(secure_headers))
}

/// The route of every change made from the UI.
const ACTIONS_ROUTE: &str = "/ui/models/{model}/actions";

/// Whether `path` is the UI's action route (`/ui/models/{model}/actions`).
fn is_actions(path: &str) -> bool {
    path.strip_prefix("/ui/models/")
        .and_then(|rest| rest.strip_suffix("/actions"))
        .is_some_and(|model| !model.is_empty() && !model.contains('/'))
}

/// Whether `path` is the UI's: its errors are HTML pages.
pub(crate) fn owns(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/") || path == "/favicon.ico"
}

/// The UI's routes that anyone may reach: the sign-in form, the stylesheet
/// and the icon (none shows registry data).
pub(crate) fn public(path: &str) -> bool {
    matches!(
        path,
        "/ui/login"
            | "/ui/logout"
            | "/ui/assets/style.css"
            | "/ui/assets/favicon.svg"
            | "/favicon.ico"
    )
}

/// No script, styles only from this server, no framing, no sniffing, and no
/// page kept in a shared cache (pages show data behind a token).
async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        FAVICON,
    )
        .into_response()
}

/// A failed page: the API's error, rendered as HTML.
pub(crate) struct UiError(ApiError);

type UiResult = Result<Response, UiError>;

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        error_response(self.0)
    }
}

/// `e` as a page: the sign-in form for a 401, else its status and message.
pub(crate) fn error_response(e: ApiError) -> Response {
    if e.status == StatusCode::UNAUTHORIZED {
        return login_page(StatusCode::UNAUTHORIZED, None, Some(&e.message));
    }
    let title = e.status.canonical_reason().unwrap_or("Error");
    let body = html! {
        h1 { (title) }
        p.error role="alert" { (e.message) }
        p { a href="/ui/" { "All models" } }
    };
    html_response(e.status, shell(title, None, &[], body))
}

fn html_response(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

fn ok(page: Markup) -> UiResult {
    Ok(html_response(StatusCode::OK, page))
}

/// Who is looking, for the page header and the action forms.
pub(crate) struct Viewer {
    identity: Option<Actor>,
    /// The role of the token the page was asked with: for a session, the
    /// token's own role (what its actions may do), not the reader role the
    /// cookie reads with.
    role: Option<Role>,
    /// The CSRF token of the session, when signed in through the session
    /// cookie (so a "Sign out" applies, and action forms can be posted).
    csrf: Option<String>,
    read_only: bool,
}

impl Viewer {
    /// The CSRF token for a form of an action that needs `role`, if this
    /// viewer may post one: signed in through a session whose token has the
    /// role, on a server that takes changes.
    fn may(&self, role: Role) -> Option<&str> {
        if self.read_only || self.role.is_none_or(|have| have < role) {
            return None;
        }
        self.csrf.as_deref()
    }
}

impl FromRequestParts<State> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, UiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        // The cookie counts only when no bearer header was sent (which wins).
        let session = (caller.identity.is_some()
            && !parts.headers.contains_key(header::AUTHORIZATION))
        .then(|| auth::session_token(&parts.headers))
        .flatten()
        .and_then(|token| {
            let (_, role) = state.tokens.lookup(&token)?;
            Some((role, csrf_token(&token)))
        });
        Ok(Viewer {
            identity: caller.identity,
            role: session.as_ref().map(|(role, _)| *role).or(caller.role),
            csrf: session.map(|(_, csrf)| csrf),
            read_only: state.read_only(),
        })
    }
}

/// The CSRF token of a session whose cookie holds `token`: the hex
/// HMAC-SHA256 of a fixed label keyed by the token. Only the token's holder
/// and the server can compute it; it reveals nothing of the token, changes
/// with it, and needs no state on the server, so every server over the same
/// tokens accepts every other's forms.
pub(crate) fn csrf_token(token: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"modelreg web UI form token v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses (403) a request a browser sent from another site: an `Origin`
/// that is not this server (the `Host` it was sent to), or a
/// `Sec-Fetch-Site` other than `same-origin`. A request with neither header
/// did not come from a modern browser's cross-site form; the CSRF token
/// still guards it.
pub(crate) fn same_origin(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: String| {
        Err(ApiError::forbidden(format!(
            "refused a cross-site request: {why}"
        )))
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return refuse(format!(
            "Sec-Fetch-Site is {:?}",
            String::from_utf8_lossy(site.as_bytes())
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_empty() || authority != Some(host) {
            return refuse(format!("Origin {origin:?} is not this server ({host:?})"));
        }
    }
    Ok(())
}

/// [`Query`](super::extract::Query) parameters whose rejection (the API's
/// error) is rendered as an HTML page.
pub(crate) struct Q<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = UiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, UiError> {
        let super::extract::Query(v) =
            super::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Q(v))
    }
}

/// [`Path`](super::extract::Path) parameters whose rejection is rendered as
/// an HTML page.
pub(crate) struct P<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = UiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, UiError> {
        let super::extract::Path(v) =
            super::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(P(v))
    }
}

/// The page around `body`: header with the way home and who is looking, and
/// a breadcrumb trail of `(label, href)` links.
fn shell(
    title: &str,
    viewer: Option<&Viewer>,
    crumbs: &[(String, String)],
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · modelreg" }
                link rel="stylesheet" href="/ui/assets/style.css";
                link rel="icon" type="image/svg+xml" href="/ui/assets/favicon.svg";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "modelreg" }
                    nav aria-label="Breadcrumb" {
                        ol.crumbs {
                            li { a href="/ui/" { "Models" } }
                            @for (label, href) in crumbs {
                                li { a href=(href) { (label) } }
                            }
                        }
                    }
                    @if let Some(v) = viewer {
                        div.who {
                            @if v.read_only {
                                span.mode title="Started without tokens: every change is refused" { "read-only server" }
                            } @else if let Some(id) = &v.identity {
                                span { "Signed in as " strong { (id) } " (" (v.role.map_or("read", Role::as_str)) ")" }
                                @if v.csrf.is_some() {
                                    form.inline method="post" action="/ui/logout" {
                                        button.link type="submit" { "Sign out" }
                                    }
                                }
                            } @else {
                                span.mode { "anonymous read" }
                                " "
                                a href="/ui/login" { "Sign in" }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

async fn login_form(axum::extract::State(s): axum::extract::State<State>) -> Response {
    if s.read_only() {
        return Redirect::to("/ui/").into_response();
    }
    login_page(StatusCode::OK, None, None)
}

fn login_page(status: StatusCode, note: Option<&str>, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        @if let Some(n) = note { p { (n) } }
        form.login method="post" action="/ui/login" {
            label for="token" { "Access token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            button type="submit" { "Sign in" }
        }
        p.muted {
            "Any token the server accepts (see " code { "modelreg serve --help" } "), kept in an HttpOnly cookie. "
            "A reader token opens the pages; a writer or approver token also offers the changes its role allows, "
            "each shown on a confirmation page before it is made."
        }
    };
    html_response(status, shell("Sign in", None, &[], body))
}

/// The session cookie's name.
const SESSION_COOKIE: &str = auth::SESSION_COOKIE;

/// Checks the form's token and sets it as the session cookie.
async fn login(
    axum::extract::State(s): axum::extract::State<State>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if s.read_only() {
        return Redirect::to("/ui/").into_response();
    }
    if let Err(e) = same_origin(&headers) {
        return error_response(e);
    }
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    if s.tokens.lookup(&token).is_none() {
        return login_page(
            StatusCode::UNAUTHORIZED,
            None,
            Some("That token is not valid."),
        );
    }
    let value = percent_encoding::utf8_percent_encode(&token, percent_encoding::NON_ALPHANUMERIC);
    let cookie =
        format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200");
    let mut response = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(headers: axum::http::HeaderMap) -> Response {
    if let Err(e) = same_origin(&headers) {
        return error_response(e);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("modelreg_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// `/ui/…?query` with the pairs percent-encoded (empty values left out).
fn href(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

/// A path segment, percent-encoded (file paths keep their `/`).
fn segment(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

fn model_href(model: &str) -> String {
    format!("/ui/models/{}", segment(model))
}

fn version_href(model: &str, n: impl std::fmt::Display) -> String {
    format!("/ui/models/{}/versions/{n}", segment(model))
}

fn stage_badge(stage: Stage) -> Markup {
    html! { span class={ "badge stage-" (stage.as_str()) } { (stage) } }
}

fn time(t: chrono::DateTime<chrono::Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

fn tags(tags: &crate::Tags) -> Markup {
    html! {
        @if !tags.is_empty() {
            ul.chips aria-label="Tags" {
                @for (k, v) in tags {
                    li.chip { (k) @if !v.is_empty() { "=" (v) } }
                }
            }
        }
    }
}

/// A number as the comparison table writes it.
fn num(x: f64) -> String {
    crate::domain::diff::format::num(x)
}

/// Whether the session cookie may identify a request: reads anywhere, and
/// the UI's action route (which checks the CSRF token and the role itself).
pub(crate) fn cookie_allowed(method: &Method, path: &str) -> bool {
    method == Method::GET || method == Method::HEAD || (method == Method::POST && is_actions(path))
}
