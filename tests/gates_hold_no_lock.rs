//! A command decides on a snapshot of the model's state with no lock held: an
//! in-process gate that takes its time stalls neither readers of the model nor
//! the folding of other writers' events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use modelreg::store::{MemoryArtifactStore, MemoryMetadataStore};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Gate, ModelName, NewVersion, Registry, Stage, Transition,
};

/// Blocks its first check until `release` is called, then passes.
#[derive(Debug, Default)]
struct SlowGate {
    entered: (Mutex<bool>, Condvar),
    released: (Mutex<bool>, Condvar),
    first: AtomicBool,
}

impl SlowGate {
    fn wait_entered(&self) {
        let (lock, cv) = &self.entered;
        let guard = lock.lock().expect("lock");
        let (_g, timeout) = cv
            .wait_timeout_while(guard, Duration::from_secs(30), |e| !*e)
            .expect("lock");
        assert!(!timeout.timed_out(), "the gate never ran");
    }

    fn release(&self) {
        let (lock, cv) = &self.released;
        *lock.lock().expect("lock") = true;
        cv.notify_all();
    }
}

impl Gate for SlowGate {
    fn name(&self) -> String {
        "slow".into()
    }

    fn check(&self, _: &Transition<'_>) -> Result<String, String> {
        if !self.first.swap(true, Ordering::SeqCst) {
            {
                let (lock, cv) = &self.entered;
                *lock.lock().expect("lock") = true;
                cv.notify_all();
            }
            let (lock, cv) = &self.released;
            let guard = lock.lock().expect("lock");
            let (_g, timeout) = cv
                .wait_timeout_while(guard, Duration::from_secs(30), |r| !*r)
                .expect("lock");
            if timeout.timed_out() {
                return Err("never released: a reader was blocked behind the gate".into());
            }
        }
        Ok("took its time".into())
    }
}

#[test]
fn a_slow_gate_blocks_no_reader_and_no_fold() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let meta = Arc::new(MemoryMetadataStore::new());
        let blobs = Arc::new(MemoryArtifactStore::new());
        let gate = Arc::new(SlowGate::default());
        let gated = Registry::builder()
            .metadata(meta.clone())
            .artifacts(blobs.clone())
            .gate(
                ModelName::new("m").expect("name"),
                Stage::Staging,
                gate.clone(),
            )
            .build()
            .expect("registry");
        // Another process's view of the same stores.
        let other = Registry::builder()
            .metadata(meta)
            .artifacts(blobs)
            .build()
            .expect("registry");
        let me = gated.acting_as(Actor::new("ci").expect("actor"));
        me.create_model("m", CreateModel::new())
            .await
            .expect("create");
        let v = me
            .register(
                "m",
                ArtifactSource::bytes("w", "w").expect("path"),
                NewVersion::new(),
            )
            .await
            .expect("register");

        let moving = tokio::spawn({
            let me = me.clone();
            let v = v.version.clone();
            async move { me.transition(&v, Stage::Staging, "slowly").await }
        });
        let waiting = gate.clone();
        tokio::task::spawn_blocking(move || waiting.wait_entered())
            .await
            .expect("join");
        // While the gate decides: another writer appends, and a reader of the
        // gated registry folds that event and answers.
        other
            .acting_as(Actor::new("other").expect("actor"))
            .register(
                "m",
                ArtifactSource::bytes("w", "two").expect("path"),
                NewVersion::new(),
            )
            .await
            .expect("other register");
        let latest = tokio::time::timeout(Duration::from_secs(10), gated.resolve("m@latest"))
            .await
            .expect("the read did not wait for the gate")
            .expect("resolve");
        assert_eq!(latest.number.get(), 2);
        gate.release();
        let moved = moving
            .await
            .expect("join")
            .expect("transition after a retry");
        assert_eq!(
            moved.seq, 4,
            "the move lost the race once and was decided again"
        );
        assert_eq!(
            gated.resolve("m/1").await.expect("resolve").stage,
            Stage::Staging
        );
    });
}
