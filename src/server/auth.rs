//! Who is calling and what they may do: bearer tokens mapped to an identity
//! and a [`Role`].
//!
//! Roles are ordered, each allowing what the ones before it allow:
//! - [`Role::Reader`]: every `GET`/`HEAD`;
//! - [`Role::Writer`]: create models, register versions (uploads), metrics,
//!   tags, aliases, traffic splits, transitions and rollbacks (gates still run);
//! - [`Role::Approver`]: approve and reject a stage;
//! - [`Role::Admin`]: delete models (the MLflow API's delete) and anything else.
//!
//! The actor written to the audit trail is the token's identity; a name the
//! client sends in a body or header is never used for it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;

use super::State;
use super::error::{ApiError, ApiResult};
use crate::{Actor, Error, Result, Session};

/// What a token allows. Roles are ordered, each allowing what the ones
/// before it allow: readers read; writers also create models, upload versions
/// and change metrics, tags, aliases, splits and stages (gates still run);
/// approvers also approve and reject; admins may do everything (the MLflow
/// API's deletions, the webhook status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads.
    Reader,
    /// Reads and writes, except approvals and deletions.
    Writer,
    /// Writes and approvals.
    Approver,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's name as configured: `reader`, `writer`, `approver`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            _ => Err(Error::invalid_input(
                "role",
                format!("{s:?} is not one of reader, writer, approver, admin"),
            )),
        }
    }
}

/// The configured tokens.
///
/// From a JSON file ([`Tokens::from_file`]):
/// ```json
/// {"anonymous_read": false,
///  "tokens": [{"identity": "ci@example.com", "role": "writer", "token": "…"}]}
/// ```
/// or from text ([`Tokens::parse`], what `MODELREG_SERVE_TOKENS` holds):
/// `identity:role:token` entries separated by commas or whitespace; the token
/// is everything after the second `:`.
///
/// ```
/// use modelreg::server::{Role, Tokens};
/// let t = Tokens::parse("ci@example.com:writer:s3cret-token-0001-ci, alice:approver:s3cret-token-0002-al").unwrap();
/// assert_eq!(t.lookup("s3cret-token-0002-al").map(|(who, role)| (who.as_str(), role)), Some(("alice", Role::Approver)));
/// assert!(t.lookup("nope").is_none());
/// assert!(Tokens::parse("alice:owner:x").is_err()); // unknown role
/// assert!(Tokens::parse("alice:reader:short").is_err()); // tokens have at least 16 characters
/// ```
#[derive(Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, (Actor, Role)>,
    anonymous_read: bool,
}

impl fmt::Debug for Tokens {
    // Never prints a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.by_token.len())
            .field("anonymous_read", &self.anonymous_read)
            .finish()
    }
}

/// The shortest token accepted: guessing one must not be practical.
const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// No tokens: the server is read-only (see [`ServerOptions`](super::ServerOptions)).
    pub fn none() -> Self {
        Tokens::default()
    }

    /// Parses `identity:role:token` entries (see the type's documentation).
    pub fn parse(text: &str) -> Result<Self> {
        let mut tokens = Tokens::default();
        for entry in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let mut parts = entry.splitn(3, ':');
            let (Some(identity), Some(role), Some(token)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(Error::invalid_input(
                    "token entry",
                    "expected identity:role:token",
                ));
            };
            tokens.add(Actor::new(identity)?, role.parse()?, token)?;
        }
        Ok(tokens)
    }

    /// Reads a JSON token file (see the type's documentation).
    pub fn from_file(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            anonymous_read: bool,
            tokens: Vec<Entry>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            identity: String,
            role: Role,
            token: String,
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file: File = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid_input(format!("token file {}", path.display()), e.to_string())
        })?;
        let mut tokens = Tokens {
            anonymous_read: file.anonymous_read,
            ..Tokens::default()
        };
        for e in file.tokens {
            tokens.add(Actor::new(e.identity)?, e.role, &e.token)?;
        }
        Ok(tokens)
    }

    /// Adds one token.
    pub fn add(&mut self, identity: Actor, role: Role, token: &str) -> Result<()> {
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_input(
                format!("token of {identity}"),
                format!("needs at least {MIN_TOKEN_LEN} printable ASCII characters and no spaces"),
            ));
        }
        if self
            .by_token
            .insert(token.to_owned(), (identity, role))
            .is_some()
        {
            return Err(Error::invalid_input(
                "tokens",
                "the same token is configured twice",
            ));
        }
        Ok(())
    }

    /// Lets requests without a token read (they still cannot write).
    pub fn anonymous_read(mut self, allow: bool) -> Self {
        self.anonymous_read = allow;
        self
    }

    /// Whether any token is configured.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// The identity and role of `token`, compared in constant time per
    /// candidate.
    pub fn lookup(&self, token: &str) -> Option<(&Actor, Role)> {
        // Every configured token is compared in full, so the time taken does
        // not say how much of a guess matched.
        let mut found = None;
        for (candidate, (who, role)) in &self.by_token {
            if constant_time_eq(candidate.as_bytes(), token.as_bytes()) {
                found = Some((who, *role));
            }
        }
        found
    }
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of a request: who (when a token was given) and what they may do.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's identity; `None` for an anonymous caller.
    pub identity: Option<Actor>,
    /// What the caller may do; `None` for an anonymous caller who may not even read.
    pub role: Option<Role>,
}

impl Caller {
    /// The caller's identity if their role is at least `role`; otherwise 401
    /// (anonymous) or 403 (a token with a lesser role).
    pub fn require(&self, role: Role, read_only: bool) -> ApiResult<Actor> {
        if read_only && role > Role::Reader {
            return Err(ApiError::forbidden(
                "this server is read-only: it was started without tokens (see modelreg serve --help)",
            ));
        }
        match (&self.identity, self.role) {
            (Some(who), Some(have)) if have >= role => Ok(who.clone()),
            (Some(who), Some(have)) => Err(ApiError::forbidden(format!(
                "{who} has the {have} role; this needs {role}"
            ))),
            (None, Some(have)) if have >= role => {
                // Anonymous readers never write, so no actor is needed.
                Ok(Actor::new("anonymous").expect("a valid actor name"))
            }
            _ => Err(ApiError::unauthorized(format!(
                "this needs a bearer token with the {role} role"
            ))),
        }
    }
}

impl FromRequestParts<State> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> ApiResult<Self> {
        let tokens = &state.tokens;
        if tokens.is_empty() {
            // A read-only server without tokens ignores credentials: a client
            // that always sends one (a Hugging Face login) can still read.
            return Ok(Caller {
                identity: None,
                role: Some(Role::Reader),
            });
        }
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .map(str::trim)
                    .ok_or_else(|| {
                        ApiError::unauthorized("Authorization must be 'Bearer <token>'")
                    })?,
            ),
        };
        match header {
            Some(token) => match tokens.lookup(token) {
                Some((who, role)) => Ok(Caller {
                    identity: Some(who.clone()),
                    role: Some(role),
                }),
                None => Err(ApiError::unauthorized("the bearer token is not valid")),
            },
            None => {
                // The web UI's session cookie (see `super::ui`): as a reader
                // whatever the token's role, on reads and on the UI's own action
                // route only, so that no API request a browser is tricked into
                // sending can change anything. The action route checks the
                // form's CSRF token and the token's role itself.
                let session = super::ui::cookie_allowed(&parts.method, parts.uri.path())
                    .then(|| session_token(&parts.headers))
                    .flatten()
                    .and_then(|token| tokens.lookup(&token).map(|(who, _)| who.clone()));
                Ok(match session {
                    Some(who) => Caller {
                        identity: Some(who),
                        role: Some(Role::Reader),
                    },
                    None => Caller {
                        identity: None,
                        role: tokens.anonymous_read.then_some(Role::Reader),
                    },
                })
            }
        }
    }
}

/// The name of the web UI's session cookie, which holds a token.
pub(crate) const SESSION_COOKIE: &str = "modelreg_session";

/// The token in the request's session cookie, if it has one.
pub(crate) fn session_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .and_then(|(_, value)| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .ok()
                .map(|t| t.into_owned())
        })
        .filter(|t| !t.is_empty())
}

/// The identity of the caller of `parts`, if their role is at least `role`
/// (see [`Caller::require`]).
async fn identity(parts: &mut Parts, state: &State, role: Role) -> ApiResult<Actor> {
    let caller = Caller::from_request_parts(parts, state).await?;
    caller.require(role, state.read_only())
}

/// One extractor per role a write may need, each yielding the registry acting
/// as the caller's identity.
///
/// They are taken from the request's parts, and axum runs those in argument
/// order and the body extractor last: a handler that lists its role first
/// refuses a caller without it (401, 403, or 403 on a read-only server) before
/// its path, query or body is looked at, so a reader's malformed body is a
/// 403, never a 400, and nothing of it is read.
macro_rules! role_extractors {
    ($($(#[$doc:meta])* $name:ident => $role:expr;)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name(pub(crate) Session);

        impl FromRequestParts<State> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &State) -> ApiResult<Self> {
                let actor = identity(parts, state, $role).await?;
                Ok($name(state.registry.acting_as(actor)))
            }
        }
    )+};
}

role_extractors! {
    /// A caller with at least the writer role.
    Writer => Role::Writer;
    /// A caller with at least the approver role.
    Approver => Role::Approver;
    /// A caller with the admin role.
    Admin => Role::Admin;
}
