//! Every changing command runs in a span named after it with its actor, and
//! every appended event is reported at debug level with its model and number,
//! so an operator can see who did what without the library installing a
//! subscriber.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion, Registry, Stage};

/// Records each span's name and fields, and each event's fields with the name
/// of the spans it happened in.
#[derive(Clone, Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    spans: Arc<Mutex<Vec<String>>>,
    stack: Arc<Mutex<Vec<u64>>>,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(format!("{} ", span.metadata().name()));
        span.record(&mut fields);
        let mut spans = self.spans.lock().expect("not poisoned");
        spans.push(fields.0);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let spans = self.spans.lock().expect("not poisoned");
        let within: Vec<String> = self
            .stack
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|id| spans[*id as usize - 1].clone())
            .collect();
        self.lines
            .lock()
            .expect("not poisoned")
            .push(format!("{} | in {within:?}", fields.0));
    }
    fn enter(&self, id: &tracing::span::Id) {
        self.stack.lock().expect("not poisoned").push(id.into_u64());
    }
    fn exit(&self, _: &tracing::span::Id) {
        self.stack.lock().expect("not poisoned").pop();
    }
}

#[test]
fn commands_run_in_spans_with_their_actor_and_appends_are_reported() {
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let registry = Registry::in_memory();
                let me = registry.acting_as(Actor::new("alice").expect("actor"));
                me.create_model("fraud", CreateModel::new())
                    .await
                    .expect("create");
                let v = me
                    .register(
                        "fraud",
                        ArtifactSource::bytes("m.bin", "w").expect("path"),
                        NewVersion::new(),
                    )
                    .await
                    .expect("register");
                me.transition(&v, Stage::Staging, "try")
                    .await
                    .expect("move");
            })
    });
    let spans = recorder.spans.lock().expect("not poisoned").clone();
    for command in ["register", "transition"] {
        assert!(
            spans
                .iter()
                .any(|s| s.starts_with(&format!("{command} ")) && s.contains("actor=alice")),
            "no span for {command} with its actor in {spans:?}"
        );
    }
    let lines = recorder.lines.lock().expect("not poisoned").clone();
    let appended: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("message=appended"))
        .collect();
    assert_eq!(appended.len(), 2, "{lines:?}");
    assert!(appended[0].contains("seq=2") && appended[0].contains("version_registered"));
    assert!(
        appended[0].contains("commit model=fraud"),
        "{}",
        appended[0]
    );
    assert!(appended[1].contains("seq=3") && appended[1].contains("stage_changed"));
    assert!(
        appended[1].contains("transition actor=alice"),
        "{}",
        appended[1]
    );
}
