//! Verified manifests, kept by digest: a manifest is immutable (its digest is
//! its name), so once read and verified it can answer again without a read or
//! a hash. Bounded by the number of entries the kept manifests hold in total.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::domain::Manifest;
use crate::error::Result;
use crate::store::ArtifactStore;

use super::fetch;

/// At most this many manifest entries (files) are kept in total: about
/// 100 bytes each, so some 25 MiB at most.
const MAX_ENTRIES: usize = 256 * 1024;

#[derive(Default)]
pub(super) struct Manifests {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_digest: HashMap<Digest, Arc<Manifest>>,
    /// Insertion order, oldest first: evicted first.
    order: VecDeque<Digest>,
    entries: usize,
}

impl Manifests {
    /// The verified manifest stored under `digest`, read (and verified) only if
    /// it is not kept already.
    pub(super) async fn get(
        &self,
        store: &dyn ArtifactStore,
        digest: &Digest,
    ) -> Result<Arc<Manifest>> {
        if let Some(m) = self.lock().by_digest.get(digest) {
            return Ok(Arc::clone(m));
        }
        let manifest = Arc::new(fetch::load_manifest(store, digest).await?);
        self.keep(*digest, Arc::clone(&manifest));
        Ok(manifest)
    }

    fn keep(&self, digest: Digest, manifest: Arc<Manifest>) {
        let size = manifest.len().max(1);
        if size > MAX_ENTRIES {
            return;
        }
        let mut kept = self.lock();
        if kept.by_digest.contains_key(&digest) {
            return;
        }
        while kept.entries + size > MAX_ENTRIES {
            let Some(old) = kept.order.pop_front() else {
                break;
            };
            if let Some(m) = kept.by_digest.remove(&old) {
                kept.entries -= m.len().max(1);
            }
        }
        kept.entries += size;
        kept.order.push_back(digest);
        kept.by_digest.insert(digest, manifest);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
