//! The REST API's OpenAPI 3.1 document, served at `GET /openapi.json`.
//!
//! It is generated from the code: the operations from the handlers'
//! `#[utoipa::path]` annotations in `rest.rs`, `events.rs` and `webhooks.rs`
//! (the same annotations the router takes each route's method and path from,
//! in `rest::Routes`), the bodies from the request types
//! there and from the library's records, whose `ToSchema` is derived next to
//! their serde derives (behind this feature). Types whose JSON is written by
//! hand — names and digests sent as strings, [`Metrics`], [`TrafficSplit`],
//! [`Manifest`] — are described here, by hand, as what their `Serialize` writes;
//! `tests/server_openapi.rs` checks real responses against the document and
//! the committed copy `docs/openapi.json` against what the code generates.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::manifest::MANIFEST_FORMAT;
use crate::{
    Actor, AliasName, Digest, HyperValue, Manifest, ManifestEntry, MetricName, Metrics, ModelName,
    RelPath, RouteTarget, TrafficSplit, VersionNumber,
};

/// The document as served: pretty JSON, built on first use.
pub(crate) fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn build() -> String {
    let mut doc = serde_json::to_value(super::rest::document())
        // Invariant: the document is plain data (strings, numbers, maps) and
        // serializes like any other value.
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
    tidy_descriptions(&mut doc);
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// The `GET /openapi.json` handler's response.
pub(crate) fn respond() -> Response {
    ([(CONTENT_TYPE, "application/json")], document_json()).into_response()
}

/// What `info.description` says: the other two APIs are there too, and where.
pub(crate) const DESCRIPTION: &str = "\
The REST JSON API of a modelreg registry server (`modelreg serve`): models, \
versions and their files, the lifecycle, aliases, traffic splits, the audit \
trail and lineage, a model's events as server-sent events, and the webhooks' \
deliveries.

The same server also answers two compatible APIs that this document does not \
describe; their upstream projects document them:
- `/api/models/` and `/{model}/resolve/{revision}/{path}`: the Hugging Face \
Hub download path (`HF_ENDPOINT=http://host:port` for `huggingface_hub`);
- `/api/2.0/mlflow/` and `/api/3.0/mlflow/`: the MLflow model registry \
(registered models, model versions, aliases, artifact downloads). MLflow \
tracking (experiments, runs) is out of scope.

Every route needs a bearer token with the reader role at least, unless the \
server allows anonymous reading or has no tokens (then it is read-only). \
Errors are `{\"error\":{\"kind\",\"status\",\"message\"}}`.";

/// The bearer-token security scheme every write names.
pub(crate) struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token configured with `MODELREG_SERVE_TOKENS` or `--tokens-file`. \
                         Its role (reader < writer < approver < admin) decides what it may do: \
                         each operation's security names the least role it needs. Its identity \
                         is the actor written to the audit trail.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The responses that do not depend on the handler, added to every operation
/// that lacks them:
/// - 401 on every route: the reader check runs before any handler;
/// - 403 on every operation that names its own security, which is the role
///   above reader it needs (reads inherit the document's): the role
///   extractor refuses a lesser role, and a read-only server everyone;
/// - 400, 413, 415 and 422 on every JSON request body: the body extractor's
///   rejections (malformed, too large, not JSON, wrong shape);
/// - 500 and 503 on every route that reads the registry (all but those tagged
///   [`REGISTRY_UNREAD`]): a stored record that fails its check, a storage
///   failure.
pub(crate) struct CommonResponses;

/// The tags of operations that answer without reading the registry: this
/// document, and the webhooks' records (kept in memory).
const REGISTRY_UNREAD: [&str; 2] = ["meta", "webhooks"];

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                let json_body = op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                let reads_registry = !op
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| REGISTRY_UNREAD.contains(&t.as_str())));
                let mut add = |status: &str, name: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| Ref::from_response_name(name).into());
                };
                add("401", "Unauthorized");
                if op.security.is_some() {
                    add("403", "Forbidden");
                }
                if json_body {
                    add("400", "BadRequest");
                    add("413", "PayloadTooLarge");
                    add("415", "UnsupportedMediaType");
                    add("422", "Unprocessable");
                }
                if reads_registry {
                    add("500", "ServerError");
                    add("503", "Unavailable");
                }
            }
        }
    }
}

/// Schemas of bodies that are not JSON: a string of a media type, with a
/// description (`None`: the response's own says it all).
macro_rules! raw_bodies {
    ($($(#[$doc:meta])* $name:ident => $media_type:literal, $description:expr;)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type($media_type)
                    .description($description)
                    .into()
            }
        }

        impl ToSchema for $name {}
    )+};
}

raw_bodies! {
    /// The bytes of a file.
    Binary => "application/octet-stream", None::<&str>;
    /// A server-sent-events body (each event's `data` is JSON, the whole is not).
    EventStream => "text/event-stream", Some(
        "Events separated by blank lines, each `id: <seq>`, `event: <kind>` and \
         `data: <the Event as JSON, see the Event schema>`; an `event: error` carries \
         a message as its data. Lines starting with `:` keep the connection open.",
    );
}

// ----- the error body ------------------------------------------------------------

/// The body of every error answer of the REST API.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail<'a> {
    /// A stable name for programs: `not_found`, `conflict`, `refused` (a gate
    /// or the lifecycle refused the change), `invalid_input`, `unauthorized`,
    /// `forbidden`, `too_large`, `integrity` (stored bytes do not match their
    /// digest), `unavailable` (the storage failed), `internal`.
    #[schema(value_type = String, example = "not_found", pattern = "^[a-z_]+$")]
    pub(crate) kind: &'a str,
    /// The HTTP status, repeated.
    pub(crate) status: u16,
    /// What went wrong, in one line, naming the model, version or file.
    pub(crate) message: &'a str,
}

/// One error response per status the API uses, each with [`ErrorBody`].
macro_rules! error_responses {
    ($($name:ident => $description:literal),+ $(,)?) => {$(
        #[doc = $description]
        pub(crate) struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                (
                    stringify!($name),
                    utoipa::openapi::ResponseBuilder::new()
                        .description($description)
                        .content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .into(),
                )
            }
        }
    )+};
}

error_responses! {
    BadRequest => "The request is malformed: bad JSON, an invalid name, reference, path or \
        parameter (`invalid_input`).",
    Unauthorized => "No bearer token, or one that matches no configured token \
        (`unauthorized`). Reads need no token on a server without tokens or with anonymous \
        reading allowed.",
    Forbidden => "The token's role does not allow this, or the server has no tokens and is \
        read-only (`forbidden`).",
    NotFound => "The model, version, alias, file or split does not exist (`not_found`).",
    Conflict => "The change conflicts with the registry's state: it exists already, or was \
        changed concurrently (`conflict`), or a gate or the lifecycle refused it (`refused`, \
        with the gates' reasons).",
    Gone => "The version's files were purged: its record and history remain (`purged`).",
    PayloadTooLarge => "The body is larger than the server accepts (`too_large`).",
    UnsupportedMediaType => "The body is not `application/json` (`invalid_input`).",
    Unprocessable => "The body is JSON of the wrong shape: a missing or unknown field, a \
        value of the wrong type (`invalid_input`).",
    RangeNotSatisfiable => "The `Range` starts past the end of the file (`invalid_input`; \
        `Content-Range: bytes */<size>`).",
    ServerError => "Stored bytes do not match their digest (`integrity`), or the server \
        failed (`internal`).",
    Unavailable => "The storage failed or could not be reached (`unavailable`).",
}

// ----- records whose JSON is written by hand ---------------------------------------

/// A string schema.
fn text(description: &str, pattern: Option<&str>, max: Option<usize>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .min_length(Some(1))
        .max_length(max)
}

/// `ToSchema` (named `$name`) from a schema expression, with `$refs` adding
/// the schemas it refers to.
///
/// The schema itself is given through `utoipa::__dev::ComposeSchema`, which
/// gives `PartialSchema` through utoipa's blanket impl: the derived schemas of
/// maps, sets and options require it of their keys and items (utoipa 5 has no
/// public trait for this; the derive implements the same one).
macro_rules! hand_written {
    ($ty:ty, $name:literal, $schema:expr) => {
        hand_written!($ty, $name, $schema, |_schemas| {});
    };
    ($ty:ty, $name:literal, $schema:expr, |$schemas:ident| $refs:block) => {
        impl utoipa::__dev::ComposeSchema for $ty {
            fn compose(_generics: Vec<RefOr<Schema>>) -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn schemas($schemas: &mut Vec<(String, RefOr<Schema>)>) {
                $refs
            }
        }
    };
}

/// Adds `T` and what it refers to.
fn with<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

fn reference<T: ToSchema>() -> Ref {
    Ref::from_schema_name(T::name())
}

hand_written!(
    ModelName,
    "ModelName",
    text(
        "A model's name: lowercase letters, digits, `-`, `_` and `.`, starting with a \
         letter or a digit.",
        Some("^[a-z0-9][a-z0-9._-]*$"),
        Some(128),
    )
    .examples(["fraud-detector"])
);

hand_written!(
    AliasName,
    "AliasName",
    text(
        "An alias: lowercase letters, digits, `-` and `_`, starting with a letter; not \
         `latest` nor a stage name.",
        Some("^[a-z][a-z0-9_-]*$"),
        Some(64),
    )
    .examples(["champion"])
);

hand_written!(
    MetricName,
    "MetricName",
    text(
        "A metric's name or a tag key: letters, digits and `_ - . / @ :`, starting with a \
         letter or a digit.",
        Some("^[A-Za-z0-9][A-Za-z0-9_./@:-]*$"),
        Some(128),
    )
    .examples(["eval/loss"])
);

hand_written!(
    Actor,
    "Actor",
    text(
        "Who did something (a token's identity): not only white space, no control \
         characters.",
        None,
        Some(256),
    )
    .examples(["ci@example.com"])
);

hand_written!(
    VersionNumber,
    "VersionNumber",
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .description(Some(
            "A version's number within its model, from 1, never reused."
        ))
);

hand_written!(
    Digest,
    "Digest",
    text(
        "A BLAKE3 content digest: `blake3:` and 64 lowercase hexadecimal digits.",
        Some("^blake3:[0-9a-f]{64}$"),
        None,
    )
    .min_length(None)
);

hand_written!(
    RelPath,
    "RelPath",
    text(
        "A file's relative, `/`-separated path inside an artifact (no `.` or `..` segment, \
         no empty segment, no backslash or control character).",
        None,
        Some(4096),
    )
    .examples(["weights/model.safetensors"])
);

hand_written!(
    RouteTarget,
    "RouteTarget",
    text(
        "A selector within the split's model: `@<alias>`, `@production` (or another \
         stage), `@latest`, `/<number>`, `:<semver>` or `#blake3:<hex>`.",
        Some("^[@/:#]"),
        None,
    )
    .examples(["@champion"])
);

hand_written!(
    Metrics,
    "Metrics",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Metric values by name, finite numbers."))
        .property_names(Some(
            text(
                "A metric name.",
                Some("^[A-Za-z0-9][A-Za-z0-9_./@:-]*$"),
                Some(128)
            )
            .build()
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
                .into()
        ))))
        .examples([serde_json::json!({ "auc": 0.93 })])
);

// Derived serde (untagged), but an integer is also a number: utoipa's `oneOf`
// would make `3` match two branches, which JSON Schema rejects.
hand_written!(
    HyperValue,
    "HyperValue",
    utoipa::openapi::schema::AnyOfBuilder::new()
        .description(Some(
            "A hyperparameter: a boolean, an integer, a finite float, a string, a list or \
             a map of hyperparameters (integers and floats stay distinct)."
        ))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ArrayBuilder::new().items(reference::<HyperValue>()))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(reference::<HyperValue>()))
        )
        .examples([serde_json::json!({ "lr": 0.001, "layers": [64, 32] })])
);

hand_written!(
    TrafficSplit,
    "TrafficSplit",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Weighted routes over selectors of one model; a request key picks a route by \
             hash (the same key always the same route while the split is unchanged). \
             Targets are distinct; the weights are positive and total at most 1,000,000."
        ))
        .property(
            "routes",
            ArrayBuilder::new()
                .items(reference::<crate::Route>())
                .min_items(Some(1))
                .max_items(Some(TrafficSplit::MAX_ROUTES)),
        )
        .required("routes")
        .property(
            "salt",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(128))
                .description(Some(
                    "Mixed into the hash: a new salt reshuffles every key. Absent when empty."
                )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false))),
    |schemas| {
        with::<crate::Route>(schemas);
    }
);

hand_written!(
    ManifestEntry,
    "ManifestEntry",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("One file of an artifact."))
        .property("path", reference::<RelPath>())
        .required("path")
        .property(
            "size",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0))
                .description(Some("Its size in bytes.")),
        )
        .required("size")
        .property("digest", reference::<Digest>())
        .required("digest")
        .property(
            "sha256",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9a-f]{64}$"))
                .description(Some(
                    "The SHA-256 of the same bytes in lowercase hex, recorded at ingest. \
                     Absent in versions registered before it was recorded.",
                )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false))),
    |schemas| {
        with::<RelPath>(schemas);
        with::<Digest>(schemas);
    }
);

hand_written!(
    Manifest,
    "Manifest",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("The files of one artifact, sorted by path."))
        .property(
            "format",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([MANIFEST_FORMAT]))
                .description(Some("The manifest's format version.")),
        )
        .required("format")
        .property(
            "files",
            ArrayBuilder::new().items(reference::<ManifestEntry>()),
        )
        .required("files"),
    |schemas| {
        with::<ManifestEntry>(schemas);
    }
);

// ----- descriptions ----------------------------------------------------------------

/// Rewrites the descriptions taken from doc comments for readers of the
/// document rather than of rustdoc: doctests dropped, intra-doc links reduced
/// to their text.
fn tidy_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "description" || key == "summary" => {
                        *s = tidy(s);
                    }
                    _ => tidy_descriptions(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy_descriptions),
        _ => {}
    }
}

fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    let mut joinable = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let line = line.trim();
        if line.is_empty() && (out.is_empty() || out.ends_with('\n')) {
            continue;
        }
        let starts_block = line.is_empty()
            || line.starts_with("- ")
            || line.starts_with("* ")
            || line.starts_with('|')
            || line.starts_with('#');
        if joinable && !starts_block {
            // A line wrapped for the source, not for the reader.
            out.push(' ');
        } else if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
        joinable = !line.is_empty() && !line.starts_with('|');
    }
    unlink(out.trim())
}

/// `[text](target)` → `text`, `[`X`]` → `` `X` ``, for rustdoc link forms.
fn unlink(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &after[..close];
        let tail = &after[close + 1..];
        if let Some(target) = tail.strip_prefix('(')
            && let Some(end) = target.find(')')
            && !target.starts_with("http")
        {
            out.push_str(inner);
            rest = &target[end + 1..];
        } else if inner.starts_with('`') && inner.ends_with('`') {
            out.push_str(inner);
            rest = tail;
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefixes the description names are those the other two APIs own.
    #[test]
    fn the_description_names_the_other_apis_prefixes() {
        let paths: Vec<&str> = DESCRIPTION
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|p| p.starts_with('/'))
            .collect();
        assert_eq!(paths.len(), 4, "{paths:?}");
        for p in paths {
            let example = p.replace(['{', '}'], "") + "x";
            assert!(
                super::super::hf::owns(&example) || super::super::mlflow::owns(&example),
                "{p} is neither the Hugging Face API's nor MLflow's"
            );
        }
    }

    #[test]
    fn descriptions_lose_doctests_and_link_targets() {
        let doc = "Where [`Stage`](crate::Stage) goes;\nsee [`Registry`].\n\n```\nlet x = 1;\n```\n\nA [b] c:\n- one,\n  wrapped;\n- [two](https://example.com).";
        assert_eq!(
            tidy(doc),
            "Where `Stage` goes; see `Registry`.\n\nA [b] c:\n- one, wrapped;\n- [two](https://example.com)."
        );
    }
}
