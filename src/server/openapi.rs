//! The schemas of what the REST API sends, for its OpenAPI document.
//!
//! The records derive `ToSchema` next to their serde derives (behind this
//! feature). Types whose JSON is written by hand — names and digests sent as
//! strings, [`Metrics`], [`TrafficSplit`], [`Manifest`], [`HyperValue`] — are
//! described here, by hand, as what their `Serialize` writes.

use std::borrow::Cow;

use utoipa::ToSchema;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr};

use crate::domain::manifest::MANIFEST_FORMAT;
use crate::{
    Actor, AliasName, Digest, HyperValue, Manifest, ManifestEntry, MetricName, Metrics, ModelName,
    RelPath, RouteTarget, TrafficSplit, VersionNumber,
};

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
        .required("digest"),
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
