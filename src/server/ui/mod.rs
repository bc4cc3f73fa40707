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
//! - `/ui/login`: a form that trades a token for a session cookie.
//!
//! Pages are [`maud`] templates, which escape every value they interpolate
//! (model names are checked by the library, but tags, descriptions, metric
//! names, actors and reasons are free text). They carry no script: the
//! `Content-Security-Policy` header allows none, and styles only from the
//! embedded stylesheet, so markup that slipped through could not run.
//!
//! **Browsers and tokens.** A browser cannot send a bearer header on a link,
//! so `POST /ui/login` takes a token from a form and sets it as an `HttpOnly`,
//! `SameSite=Strict` cookie. The cookie is honoured only on `GET` and `HEAD`
//! and only with the reader role, whatever the token's own role: it opens the
//! pages and the file downloads they link to, and never authorizes a change,
//! so a page elsewhere cannot make a signed-in browser write (no CSRF). On a
//! server without tokens, or with anonymous reading, no sign-in is needed.

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
use super::auth::{self, Caller};
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
        .route("/ui/models/{model}/versions/{version}", get(version::page))
        .route(
            "/ui/models/{model}/versions/{version}/lineage",
            get(lineage::version_page),
        )
        .route("/ui/lineage/dataset", get(lineage::dataset_page))
        .layer(axum::middleware::map_response(secure_headers))
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

/// Who is looking, for the page header.
pub(crate) struct Viewer {
    identity: Option<Actor>,
    /// Signed in through the session cookie (so a "Sign out" applies).
    session: bool,
    read_only: bool,
}

impl FromRequestParts<State> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, UiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Viewer {
            session: caller.identity.is_some() && auth::session_token(parts).is_some(),
            identity: caller.identity,
            read_only: state.read_only(),
        })
    }
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
                                span { "Signed in as " strong { (id) } " (read)" }
                                @if v.session {
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
            "Any token the server accepts (see " code { "modelreg serve --help" } "). "
            "In the browser it grants reading only, kept in an HttpOnly cookie; changes go through the API or the CLI."
        }
    };
    html_response(status, shell("Sign in", None, &[], body))
}

/// The session cookie's name.
const SESSION_COOKIE: &str = auth::SESSION_COOKIE;

/// Checks the form's token and sets it as the session cookie.
async fn login(
    axum::extract::State(s): axum::extract::State<State>,
    body: bytes::Bytes,
) -> Response {
    if s.read_only() {
        return Redirect::to("/ui/").into_response();
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

async fn logout() -> Response {
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

/// The HTTP method of a request the session cookie may authorize.
pub(crate) fn cookie_allowed(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}
