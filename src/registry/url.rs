//! Opening a registry from a URL: object storage, local files or memory.

use std::sync::Arc;

use super::Registry;
use crate::error::Result;
use crate::store::object::{ObjectArtifactOptions, stores_from_url};

/// How often a registry opened by URL checkpoints a model's state.
///
/// Lower than the builder's default (1000): on object storage each record of the
/// tail after the latest checkpoint is one GET (16 in flight), so a cold open costs
/// about `CHECKPOINT_EVERY / 16` round trips at worst, while a checkpoint costs one
/// PUT, one LIST and a DELETE per 100 events.
pub(super) const CHECKPOINT_EVERY: u64 = 100;

/// See [`Registry::open_url`].
pub(super) async fn open(url: &str, options: ObjectArtifactOptions) -> Result<Registry> {
    let (metadata, artifacts) = stores_from_url(url)?;
    let artifacts = artifacts.with_options(options);
    Registry::builder()
        .metadata(Arc::new(metadata))
        .artifacts(Arc::new(artifacts))
        .checkpoint_every(CHECKPOINT_EVERY)
        .build()
}
