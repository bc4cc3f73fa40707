//! Local-filesystem stores (being implemented).

/// A [`MetadataStore`](super::MetadataStore) in a local directory.
#[derive(Debug)]
pub struct LocalMetadataStore;

/// An [`ArtifactStore`](super::ArtifactStore) in a local directory.
#[derive(Debug)]
pub struct LocalArtifactStore;
