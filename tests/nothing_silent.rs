//! Failures the registry survives on purpose are logged, never silent: a
//! checkpoint it does not trust, a log key that is not a model, a checkpoint it
//! cannot write. And a checkpoint is checked before it is trusted.
//!
//! The library installs no subscriber; these tests install a tiny one that
//! collects warnings, for the current thread only (`with_default`), and run
//! the registry on a current-thread runtime so every event reaches it.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use modelreg::store::{MemoryArtifactStore, MemoryMetadataStore, MetadataStore};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Metrics, ModelState, NewVersion, Registry,
};

/// Collects the message and fields of every warning (and error) event.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().expect("not poisoned").push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` on a current-thread runtime with `warnings` collecting.
fn with_warnings<F: std::future::Future>(warnings: &Warnings, f: F) -> F::Output {
    tracing::subscriber::with_default(warnings.clone(), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
}

fn alice() -> Actor {
    Actor::new("alice").expect("actor")
}

fn registry(meta: &Arc<MemoryMetadataStore>, checkpoint_every: u64) -> Registry {
    Registry::builder()
        .metadata(meta.clone())
        .artifacts(Arc::new(MemoryArtifactStore::new()))
        .checkpoint_every(checkpoint_every)
        .build()
        .expect("build")
}

/// A format 3 checkpoint taken apart: its header (as JSON values) and its one
/// chunk of versions.
struct Parts {
    seq: u64,
    state: serde_json::Value,
    chunk: serde_json::Value,
}

fn take_apart(bytes: &[u8]) -> Parts {
    // The sealed record is its JSON, a newline, the checksum line.
    let body = bytes.strip_suffix(b"\n").expect("sealed");
    let split = body
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("checksum line");
    let json = &bytes[..split];
    let mut values = serde_json::Deserializer::from_slice(json).into_iter::<serde_json::Value>();
    let head = values.next().expect("header").expect("header decodes");
    let chunk = values.next().expect("one chunk").expect("chunk decodes");
    assert!(values.next().is_none(), "a small model has one chunk");
    assert_eq!(head["format"], 3);
    assert_eq!(head["chunks"].as_array().map(Vec::len), Some(1));
    Parts {
        seq: head["seq"].as_u64().expect("seq"),
        state: head["state"].clone(),
        chunk,
    }
}

/// The checkpoint `parts` make, claiming `versions` versions, sealed. Written
/// field by field: this build's reader looks for `{"format":N,` first.
fn put_together(parts: &Parts, versions: usize) -> Bytes {
    let chunk = parts.chunk.to_string();
    let json = format!(
        r#"{{"format":3,"seq":{},"chunks":[{}],"versions":{versions},"state":{}}}{chunk}"#,
        parts.seq,
        chunk.len(),
        parts.state
    );
    let digest = Digest::of(json.as_bytes());
    Bytes::from(format!("{json}\n{digest}\n"))
}

/// A model of three versions whose fifth event (metrics on version 1) is
/// checkpointed. Returns the state a full fold gives.
async fn three_versions_checkpointed(meta: &Arc<MemoryMetadataStore>) -> ModelState {
    let writer = registry(meta, 5);
    writer
        .acting_as(alice())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create");
    for i in 0..3 {
        let source = ArtifactSource::bytes("model.bin", format!("weights {i}")).expect("source");
        writer
            .acting_as(alice())
            .register("fraud", source, NewVersion::new())
            .await
            .expect("register");
    }
    writer
        .acting_as(alice())
        .add_metrics("fraud/1", Metrics::new().with("auc", 0.9).expect("metric"))
        .await
        .expect("metrics");
    let checkpoint = meta
        .latest_checkpoint("fraud")
        .await
        .expect("read")
        .expect("a checkpoint at event 5");
    assert_eq!(checkpoint.seq, 5);
    writer.model("fraud").await.expect("model")
}

fn ignored_checkpoint(warnings: &[String]) -> bool {
    warnings
        .iter()
        .any(|w| w.contains("checkpoint") && w.contains("replaying the log"))
}

/// A checkpoint that lost its newest version (a writer or decoder that dropped
/// part of its output) still has dense version numbers and decodes; it is not
/// trusted, because it records how many versions it holds. The state opened is
/// the fold of the log, and the reason is logged. The same checkpoint rebuilt
/// without the loss is trusted (so the test fails for the right reason).
#[test]
fn a_checkpoint_missing_a_version_is_not_trusted_and_says_so() {
    let warnings = Warnings::default();
    with_warnings(&warnings, async {
        let meta = Arc::new(MemoryMetadataStore::new());
        let folded = three_versions_checkpointed(&meta).await;
        let original = meta
            .latest_checkpoint("fraud")
            .await
            .expect("read")
            .expect("checkpoint");
        let mut parts = take_apart(&original.bytes);

        // Rebuilt unchanged: trusted, nothing logged.
        meta.put_checkpoint("fraud", 5, put_together(&parts, 3))
            .await
            .expect("put");
        let reader = registry(&meta, 0);
        assert_eq!(reader.model("fraud").await.expect("model"), folded);
        assert_eq!(warnings.take(), Vec::<String>::new());

        // Version 3 removed, the header still saying 3.
        let rows = parts.chunk["versions"].as_array_mut().expect("rows");
        rows.pop();
        meta.put_checkpoint("fraud", 5, put_together(&parts, 3))
            .await
            .expect("put");
        let reader = registry(&meta, 0);
        let opened = reader.model("fraud").await.expect("model");
        assert_eq!(opened.versions().len(), 3);
        assert_eq!(opened, folded);
        let logged = warnings.take();
        assert!(ignored_checkpoint(&logged), "{logged:?}");
        assert!(
            logged
                .iter()
                .any(|w| w.contains("records 3 versions, holds 2")),
            "{logged:?}"
        );
    });
}

/// A checkpoint consistent in itself (it claims the two versions it holds) that
/// the log does not continue: the event after it registers version 4, which
/// cannot follow a state of two versions. It is discarded, the log is replayed
/// from event 1, and that is logged. (Without a later registration, or another
/// event about a version it lacks, such a checkpoint cannot be told from a good
/// one without replaying the log, which is what it exists to avoid; the checks
/// catch a writer or decoder that lost versions, not a forger.)
#[test]
fn a_checkpoint_the_log_does_not_continue_is_discarded() {
    let warnings = Warnings::default();
    with_warnings(&warnings, async {
        let meta = Arc::new(MemoryMetadataStore::new());
        three_versions_checkpointed(&meta).await;
        let writer = registry(&meta, 0);
        let source = ArtifactSource::bytes("model.bin", "weights 4").expect("source");
        let v4 = writer
            .acting_as(alice())
            .register("fraud", source, NewVersion::new())
            .await
            .expect("register");
        assert_eq!(v4.number.get(), 4);
        let expected = writer.model("fraud").await.expect("model");

        let original = meta
            .latest_checkpoint("fraud")
            .await
            .expect("read")
            .expect("checkpoint");
        assert_eq!(original.seq, 5);
        let mut parts = take_apart(&original.bytes);
        parts.chunk["versions"].as_array_mut().expect("rows").pop();
        meta.put_checkpoint("fraud", 5, put_together(&parts, 2))
            .await
            .expect("put");
        assert_eq!(warnings.take(), Vec::<String>::new());

        let reader = registry(&meta, 0);
        let opened = reader.model("fraud").await.expect("model");
        assert_eq!(opened.versions().len(), 4);
        assert_eq!(opened, expected);
        let logged = warnings.take();
        assert!(
            logged.iter().any(|w| w.contains("does not continue")),
            "{logged:?}"
        );
    });
}

/// `list_models` skips log keys that are not model names (not ours), and says
/// which.
#[test]
fn list_models_says_which_keys_it_skips() {
    let warnings = Warnings::default();
    with_warnings(&warnings, async {
        let meta = Arc::new(MemoryMetadataStore::new());
        let reg = registry(&meta, 0);
        reg.acting_as(alice())
            .create_model("fraud", CreateModel::new())
            .await
            .expect("create");
        meta.append("Not_A_Model", 1, Bytes::from_static(b"something else"))
            .await
            .expect("append");
        let names = reg.list_models().await.expect("list");
        assert_eq!(names.len(), 1);
        let logged = warnings.take();
        assert!(
            logged
                .iter()
                .any(|w| w.contains("Not_A_Model") && w.contains("not a model")),
            "{logged:?}"
        );
    });
}
