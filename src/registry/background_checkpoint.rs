//! Checkpoints of large states are written after the command returns: the
//! background path, exercised on a small model by lowering its threshold.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::state::decode_checkpoint;
use crate::store::{MemoryArtifactStore, MemoryMetadataStore, MetadataStore};
use crate::{Actor, ArtifactSource, CreateModel, ModelName, ModelState, NewVersion, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_checkpoint_folds_to_the_same_state() {
    let meta = Arc::new(MemoryMetadataStore::new());
    let reg = Registry::builder()
        .metadata(meta.clone())
        .artifacts(Arc::new(MemoryArtifactStore::new()))
        .checkpoint_every(4)
        .background_checkpoint_from(0)
        .build()
        .expect("registry");
    let alice = Actor::new("alice").expect("actor");
    reg.acting_as(alice.clone())
        .create_model("fraud", CreateModel::new())
        .await
        .expect("create"); // 1
    for i in 0..3 {
        let source = ArtifactSource::bytes("m.bin", format!("weights {i}")).expect("source");
        reg.acting_as(alice.clone())
            .register("fraud", source, NewVersion::new())
            .await
            .expect("register"); // 2..=4
    }
    // The command that reached event 4 returned; its checkpoint follows.
    let mut cp = None;
    for _ in 0..500 {
        cp = meta.latest_checkpoint("fraud").await.expect("read");
        if cp.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cp = cp.expect("a background checkpoint was written");
    assert_eq!(cp.seq, 4);
    let name = ModelName::new("fraud").expect("name");
    let history = reg.events("fraud").await.expect("events");
    assert_eq!(
        decode_checkpoint(&name, 4, &cp.bytes).expect("decodes"),
        ModelState::replay(history).expect("replay")
    );
    // Only one at a time per model: the flag is clear once it is written.
    let slot = reg.slot(&name);
    for _ in 0..500 {
        if !slot
            .checkpointing
            .load(std::sync::atomic::Ordering::Acquire)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !slot
            .checkpointing
            .load(std::sync::atomic::Ordering::Acquire)
    );
}
