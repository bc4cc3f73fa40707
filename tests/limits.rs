//! Size limits on what users write (`modelreg::limits`): each limit is accepted
//! at the limit and refused one past it with `Error::TooLarge`, and a refused
//! command appends nothing. Text is counted in characters, so the texts here are
//! made of two-byte characters where that makes a difference.

use std::collections::BTreeMap;
use std::sync::Arc;

use modelreg::limits::*;
use modelreg::store::ArtifactStore;
use modelreg::{
    Actor, ArtifactSource, CreateModel, DatasetRef, DatasetRole, Environment, Error, HyperValue,
    Hyperparameters, NewVersion, Provenance, Registry, TagKey, Tags,
};

fn alice() -> Actor {
    Actor::new("alice").expect("actor")
}

async fn registry() -> Registry {
    let reg = Registry::in_memory();
    reg.acting_as(alice())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    reg
}

async fn events(reg: &Registry) -> usize {
    reg.events("fraud").await.expect("events").len()
}

/// `n` characters of two bytes each.
fn text(n: usize) -> String {
    "é".repeat(n)
}

fn source() -> ArtifactSource {
    ArtifactSource::bytes("model.bin", "weights").expect("source")
}

/// Registers a version with `provenance` and `description`.
async fn register(
    reg: &Registry,
    provenance: Provenance,
    description: String,
) -> modelreg::Result<u64> {
    reg.acting_as(alice())
        .register(
            "fraud",
            source(),
            NewVersion::new()
                .description(description)
                .provenance(provenance),
        )
        .await
        .map(|v| v.number.get())
}

/// `ok` is accepted and appends one event; `too_large` is refused with
/// `TooLarge { limit, actual: limit + 1 }` in `unit`, appending nothing.
macro_rules! at_and_past_the_limit {
    ($reg:expr, $limit:expr, $unit:expr, ok: $ok:expr, too_large: $bad:expr $(,)?) => {{
        let reg = $reg;
        let before = events(reg).await;
        match $bad {
            Err(Error::TooLarge {
                unit,
                limit,
                actual,
                ..
            }) => {
                assert_eq!(
                    (unit, limit, actual),
                    ($unit, $limit as u64, $limit as u64 + 1)
                );
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(events(reg).await, before, "nothing appended");
        $ok.expect("accepted at the limit");
        assert_eq!(events(reg).await, before + 1);
    }};
}

#[tokio::test]
async fn version_description() {
    let reg = registry().await;
    at_and_past_the_limit!(
        &reg,
        MAX_DESCRIPTION_CHARS,
        "characters",
        ok: register(&reg, Provenance::default(), text(MAX_DESCRIPTION_CHARS)).await,
        too_large: register(&reg, Provenance::default(), text(MAX_DESCRIPTION_CHARS + 1)).await,
    );
}

fn hyper(values: impl IntoIterator<Item = (String, HyperValue)>) -> Provenance {
    let h: Hyperparameters = values.into_iter().collect();
    Provenance {
        hyperparameters: Arc::new(h),
        ..Provenance::default()
    }
}

#[tokio::test]
async fn hyperparameter_string_nested_or_not() {
    let reg = registry().await;
    let string = |n| hyper([("prompt".to_owned(), HyperValue::String(text(n)))]);
    at_and_past_the_limit!(
        &reg,
        MAX_HYPERPARAMETER_STRING_CHARS,
        "characters",
        ok: register(&reg, string(MAX_HYPERPARAMETER_STRING_CHARS), String::new()).await,
        too_large: register(&reg, string(MAX_HYPERPARAMETER_STRING_CHARS + 1), String::new()).await,
    );
    let nested = |n| {
        hyper([(
            "optimizer".to_owned(),
            HyperValue::Map(BTreeMap::from([(
                "schedule".to_owned(),
                HyperValue::List(vec![HyperValue::String(text(n))]),
            )])),
        )])
    };
    at_and_past_the_limit!(
        &reg,
        MAX_HYPERPARAMETER_STRING_CHARS,
        "characters",
        ok: register(&reg, nested(MAX_HYPERPARAMETER_STRING_CHARS), String::new()).await,
        too_large: register(&reg, nested(MAX_HYPERPARAMETER_STRING_CHARS + 1), String::new()).await,
    );
}

#[tokio::test]
async fn hyperparameter_entries_and_names() {
    let reg = registry().await;
    let list = |n| {
        hyper([(
            "layers".to_owned(),
            HyperValue::List(vec![HyperValue::Int(1); n]),
        )])
    };
    at_and_past_the_limit!(
        &reg,
        MAX_HYPERPARAMETER_ENTRIES,
        "entries",
        ok: register(&reg, list(MAX_HYPERPARAMETER_ENTRIES), String::new()).await,
        too_large: register(&reg, list(MAX_HYPERPARAMETER_ENTRIES + 1), String::new()).await,
    );
    let named = |n| hyper([(text(n), HyperValue::Bool(true))]);
    at_and_past_the_limit!(
        &reg,
        MAX_HYPERPARAMETER_NAME_CHARS,
        "characters",
        ok: register(&reg, named(MAX_HYPERPARAMETER_NAME_CHARS), String::new()).await,
        too_large: register(&reg, named(MAX_HYPERPARAMETER_NAME_CHARS + 1), String::new()).await,
    );
}

#[tokio::test]
async fn datasets_and_environment() {
    let reg = registry().await;
    let uri = |n| Provenance {
        datasets: vec![DatasetRef::new("clicks", DatasetRole::Train).uri(text(n))],
        ..Provenance::default()
    };
    at_and_past_the_limit!(
        &reg,
        MAX_DATASET_URI_CHARS,
        "characters",
        ok: register(&reg, uri(MAX_DATASET_URI_CHARS), String::new()).await,
        too_large: register(&reg, uri(MAX_DATASET_URI_CHARS + 1), String::new()).await,
    );
    let datasets = |n| Provenance {
        datasets: vec![DatasetRef::new("clicks", DatasetRole::Train); n],
        ..Provenance::default()
    };
    at_and_past_the_limit!(
        &reg,
        MAX_DATASETS,
        "entries",
        ok: register(&reg, datasets(MAX_DATASETS), String::new()).await,
        too_large: register(&reg, datasets(MAX_DATASETS + 1), String::new()).await,
    );
    let env = |n| Provenance {
        environment: Arc::new(Environment::default().with_framework("torch", text(n))),
        ..Provenance::default()
    };
    at_and_past_the_limit!(
        &reg,
        MAX_ENVIRONMENT_VALUE_CHARS,
        "characters",
        ok: register(&reg, env(MAX_ENVIRONMENT_VALUE_CHARS), String::new()).await,
        too_large: register(&reg, env(MAX_ENVIRONMENT_VALUE_CHARS + 1), String::new()).await,
    );
}

fn tags(n: usize, value: &str) -> Tags {
    (0..n)
        .map(|i| (TagKey::new(format!("t{i}")).expect("key"), value.to_owned()))
        .collect()
}

#[tokio::test]
async fn tags_values_and_count() {
    let reg = registry().await;
    let me = alice();
    at_and_past_the_limit!(
        &reg,
        MAX_TAG_VALUE_CHARS,
        "characters",
        ok: reg.acting_as(me.clone()).set_model_tags("fraud", tags(1, &text(MAX_TAG_VALUE_CHARS)), vec![]).await,
        too_large: reg
            .acting_as(me.clone()).set_model_tags("fraud", tags(1, &text(MAX_TAG_VALUE_CHARS + 1)), vec![])
            .await,
    );
    at_and_past_the_limit!(
        &reg,
        MAX_TAGS,
        "entries",
        ok: reg.acting_as(me.clone()).set_model_tags("fraud", tags(MAX_TAGS, "x"), vec![]).await,
        too_large: reg.acting_as(me.clone()).set_model_tags("fraud", tags(MAX_TAGS + 1, "x"), vec![]).await,
    );
}

#[tokio::test]
async fn reasons() {
    let reg = registry().await;
    register(&reg, Provenance::default(), String::new())
        .await
        .expect("register");
    at_and_past_the_limit!(
        &reg,
        MAX_REASON_CHARS,
        "characters",
        ok: reg.acting_as(alice()).deprecate("fraud/1", text(MAX_REASON_CHARS)).await,
        too_large: reg.acting_as(alice()).deprecate("fraud/1", text(MAX_REASON_CHARS + 1)).await,
    );
}

/// Fields each within their limit can still add up to more than an event may
/// hold: the event as a whole is refused, before anything is uploaded.
#[tokio::test]
async fn an_event_as_a_whole() {
    let reg = registry().await;
    // 60,000 two-byte characters: 120,000 bytes of JSON per value.
    let big = |n: usize| hyper((0..n).map(|i| (format!("p{i}"), HyperValue::String(text(60_000)))));
    let before = events(&reg).await;
    match register(&reg, big(9), String::new()).await {
        Err(Error::TooLarge {
            unit: "bytes",
            limit,
            actual,
            ..
        }) => {
            assert_eq!(limit, MAX_EVENT_BYTES as u64);
            assert!(actual > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(events(&reg).await, before, "nothing appended");
    assert!(
        reg.artifact_store()
            .head(&modelreg::Digest::of(b"weights"))
            .await
            .expect("head")
            .is_none(),
        "refused before the upload"
    );
    register(&reg, big(8), String::new())
        .await
        .expect("960,000 bytes of hyperparameters fit");
    assert_eq!(events(&reg).await, before + 1);
}
