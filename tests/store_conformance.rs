//! Every store backend against the one conformance suite in `common/store_suite.rs`.
//!
//! To add a backend: write a fixture function returning a fresh, empty store and add
//! one `metadata_suite!` / `artifact_suite!` line for it (and one for it behind
//! `Arc<dyn …>`).

// Helpers outside `#[test]` functions (which clippy.toml already covers) fail
// by panicking too.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::store_suite::Fixture;
use modelreg::store::{
    ArtifactStore, LocalArtifactStore, LocalMetadataStore, MemoryArtifactStore,
    MemoryMetadataStore, MetadataStore,
};

fn memory_metadata() -> Fixture<MemoryMetadataStore> {
    Fixture::new(MemoryMetadataStore::new())
}

fn local_metadata() -> Fixture<LocalMetadataStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalMetadataStore::open(dir.path().join("metadata")).unwrap();
    Fixture::in_dir(store, dir)
}

fn memory_artifacts() -> Fixture<MemoryArtifactStore> {
    Fixture::new(MemoryArtifactStore::new())
}

fn local_artifacts() -> Fixture<LocalArtifactStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalArtifactStore::open(dir.path().join("artifacts")).unwrap();
    Fixture::in_dir(store, dir)
}

/// The same store behind `Arc<dyn MetadataStore>`: object safety and the forwarding impl.
fn dyn_metadata<S: MetadataStore>(fixture: Fixture<S>) -> Fixture<Arc<dyn MetadataStore>> {
    fixture.map(|s| Arc::new(s) as Arc<dyn MetadataStore>)
}

/// The same store behind `Arc<dyn ArtifactStore>`: object safety and the forwarding impl.
fn dyn_artifacts<S: ArtifactStore>(fixture: Fixture<S>) -> Fixture<Arc<dyn ArtifactStore>> {
    fixture.map(|s| Arc::new(s) as Arc<dyn ArtifactStore>)
}

mod metadata {
    use super::*;

    metadata_suite!(memory, memory_metadata());
    metadata_suite!(local, local_metadata());
    metadata_suite!(memory_arc_dyn, dyn_metadata(memory_metadata()));
    metadata_suite!(local_arc_dyn, dyn_metadata(local_metadata()));
}

mod artifacts {
    use super::*;

    artifact_suite!(memory, memory_artifacts());
    artifact_suite!(local, local_artifacts());
    artifact_suite!(memory_arc_dyn, dyn_artifacts(memory_artifacts()));
    artifact_suite!(local_arc_dyn, dyn_artifacts(local_artifacts()));
}
