//! Every store backend against the one conformance suite in `common/store_suite.rs`.
//!
//! To add a backend: write a fixture function returning a fresh, empty store and add
//! one `metadata_suite!` / `artifact_suite!` line for it (and one for it behind
//! `Arc<dyn …>`).
//!
//! The object-store backends run on object_store's `InMemory` and `LocalFileSystem`
//! always, and on real servers (S3 protocol, Azure Blob) when `tests/common/servers.rs`
//! finds them configured; each fixture works below a prefix of its own.

// Helpers outside `#[test]` functions (which clippy.toml already covers) fail
// by panicking too.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::servers::{Server, unique_name};
use common::store_suite::Fixture;
use modelreg::store::object::stores_from_url;
use modelreg::store::{
    ArtifactStore, LocalArtifactOptions, LocalArtifactStore, LocalMetadataStore,
    MemoryArtifactStore, MemoryMetadataStore, MetadataStore, ObjectArtifactOptions,
    ObjectArtifactStore, ObjectMetadataStore, PackOptions,
};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

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

/// The local store with packing on for every file (no size threshold), so
/// each blob of the suite goes through packs, recipes and the chunk index.
fn packed_local_artifacts() -> Fixture<LocalArtifactStore> {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalArtifactOptions::new().packed(PackOptions::new().min_file_size(0));
    let store = LocalArtifactStore::open_with(dir.path().join("artifacts"), options).unwrap();
    Fixture::in_dir(store, dir)
}

/// object_store's `InMemory`, below a prefix.
fn object_memory_metadata() -> Fixture<ObjectMetadataStore> {
    let prefix = Path::from(format!("{}/metadata", unique_name()));
    Fixture::new(ObjectMetadataStore::new(Arc::new(InMemory::new()), prefix))
}

fn object_memory_artifacts() -> Fixture<ObjectArtifactStore> {
    let prefix = Path::from(format!("{}/artifacts", unique_name()));
    Fixture::new(ObjectArtifactStore::new(Arc::new(InMemory::new()), prefix))
}

/// The object store with packing on for every file (no size threshold), so
/// each blob of the suite goes through packs, recipes and ranged reads.
fn packed_object_memory_artifacts() -> Fixture<ObjectArtifactStore> {
    let prefix = Path::from(format!("{}/artifacts", unique_name()));
    Fixture::new(
        ObjectArtifactStore::new(Arc::new(InMemory::new()), prefix)
            .with_options(packed_object_options()),
    )
}

fn packed_object_options() -> ObjectArtifactOptions {
    ObjectArtifactOptions::new().packed(PackOptions::new().min_file_size(0))
}

/// object_store's `LocalFileSystem` on a temp directory, as a `file://` URL opens it.
fn object_local_stores() -> (ObjectMetadataStore, ObjectArtifactStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/registry", dir.path().display());
    let (metadata, artifacts) = stores_from_url(&url).unwrap();
    (metadata, artifacts, dir)
}

fn object_local_metadata() -> Fixture<ObjectMetadataStore> {
    let (metadata, _, dir) = object_local_stores();
    Fixture::in_dir(metadata, dir)
}

fn object_local_artifacts() -> Fixture<ObjectArtifactStore> {
    let (_, artifacts, dir) = object_local_stores();
    Fixture::in_dir(artifacts, dir)
}

/// `LocalFileSystem` rooted at the temp directory (its own prefix handling) rather
/// than at `/` with the directory as the key prefix.
fn object_local_rooted_metadata() -> Fixture<ObjectMetadataStore> {
    let dir = tempfile::tempdir().unwrap();
    let fs = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    Fixture::in_dir(
        ObjectMetadataStore::new(Arc::new(fs), Path::from("metadata")),
        dir,
    )
}

/// A fresh prefix on a configured server.
fn server_metadata(server: Server) -> Fixture<ObjectMetadataStore> {
    let url = server.unique_url();
    Fixture::new(stores_from_url(&url).unwrap().0)
}

fn server_artifacts(server: Server) -> Fixture<ObjectArtifactStore> {
    let url = server.unique_url();
    Fixture::new(stores_from_url(&url).unwrap().1)
}

fn packed_server_artifacts(server: Server) -> Fixture<ObjectArtifactStore> {
    let url = server.unique_url();
    Fixture::new(
        stores_from_url(&url)
            .unwrap()
            .1
            .with_options(packed_object_options()),
    )
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
    metadata_suite!(object_memory, object_memory_metadata());
    metadata_suite!(object_local, object_local_metadata());
    metadata_suite!(object_local_rooted, object_local_rooted_metadata());
    metadata_suite!(object_arc_dyn, dyn_metadata(object_memory_metadata()));
    metadata_suite!(
        #[cfg_attr(
            not(modelreg_s3),
            ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
        )]
        s3,
        server_metadata(Server::S3)
    );
    metadata_suite!(
        #[cfg_attr(
            not(modelreg_azure),
            ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)"
        )]
        azure,
        server_metadata(Server::Azure)
    );
}

mod artifacts {
    use super::*;

    artifact_suite!(memory, memory_artifacts());
    artifact_suite!(local, local_artifacts());
    artifact_suite!(memory_arc_dyn, dyn_artifacts(memory_artifacts()));
    artifact_suite!(local_arc_dyn, dyn_artifacts(local_artifacts()));
    artifact_suite!(local_packed, packed_local_artifacts());
    artifact_suite!(
        local_packed_arc_dyn,
        dyn_artifacts(packed_local_artifacts())
    );
    artifact_suite!(object_memory, object_memory_artifacts());
    artifact_suite!(object_local, object_local_artifacts());
    artifact_suite!(object_arc_dyn, dyn_artifacts(object_memory_artifacts()));
    artifact_suite!(object_memory_packed, packed_object_memory_artifacts());
    artifact_suite!(
        object_packed_arc_dyn,
        dyn_artifacts(packed_object_memory_artifacts())
    );
    artifact_suite!(
        #[cfg_attr(
            not(modelreg_s3),
            ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
        )]
        s3_packed,
        packed_server_artifacts(Server::S3)
    );
    artifact_suite!(
        #[cfg_attr(
            not(modelreg_azure),
            ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)"
        )]
        azure_packed,
        packed_server_artifacts(Server::Azure)
    );
    artifact_suite!(
        #[cfg_attr(
            not(modelreg_s3),
            ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
        )]
        s3,
        server_artifacts(Server::S3)
    );
    artifact_suite!(
        #[cfg_attr(
            not(modelreg_azure),
            ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)"
        )]
        azure,
        server_artifacts(Server::Azure)
    );
}
