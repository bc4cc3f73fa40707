//! The states [`Registry::model_as_of`](super::Registry::model_as_of) folded
//! last: a small cache, so that looking at a model as of one time again, or as
//! of a time a little later (the next event of its history), folds from there
//! instead of decoding a checkpoint and folding to it again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::domain::{ModelName, ModelState};

use super::lock;

/// How many past states are kept, over all models. Each costs its pointers
/// and indexes (its records are shared with the live state where equal), a few
/// MiB at 100,000 versions.
pub(super) const AS_OF_CACHED: usize = 4;

/// Past states of models, most recently used first.
///
/// A past state is the fold of a model's events `1..=seq`, and a log only
/// grows: an entry never goes stale, and nothing invalidates it.
#[derive(Default)]
pub(super) struct AsOfCache {
    states: Mutex<VecDeque<Arc<ModelState>>>,
}

impl AsOfCache {
    /// The kept state of `model` with the highest `seq` at most `at_most`,
    /// marked as just used.
    pub(super) fn nearest(&self, model: &ModelName, at_most: u64) -> Option<Arc<ModelState>> {
        let mut states = lock(&self.states);
        let (i, _) = states
            .iter()
            .enumerate()
            .filter(|(_, s)| s.name() == model && s.seq() <= at_most)
            .max_by_key(|(_, s)| s.seq())?;
        let state = states.remove(i)?;
        states.push_front(Arc::clone(&state));
        Some(state)
    }

    /// Keeps `state`, dropping the least recently used beyond [`AS_OF_CACHED`].
    pub(super) fn put(&self, state: Arc<ModelState>) {
        let mut states = lock(&self.states);
        states.retain(|s| !(s.name() == state.name() && s.seq() == state.seq()));
        states.push_front(state);
        states.truncate(AS_OF_CACHED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, ArtifactSource, CreateModel, NewVersion, Registry};

    /// States of `model` after each of its events (`states[i].seq() == i + 1`).
    async fn states(registry: &Registry, model: &str) -> Vec<Arc<ModelState>> {
        let me = registry.acting_as(Actor::new("ci").expect("actor"));
        me.create_model(model, CreateModel::new())
            .await
            .expect("create");
        for i in 0..4 {
            let source = ArtifactSource::bytes("w", format!("{model}{i}")).expect("source");
            me.register(model, source, NewVersion::new())
                .await
                .expect("register");
        }
        let events = registry.events(model).await.expect("events");
        (1..=events.len())
            .map(|n| Arc::new(ModelState::replay(events[..n].to_vec()).expect("replay")))
            .collect()
    }

    #[tokio::test]
    async fn the_nearest_older_state_of_the_model_and_the_recently_used_are_kept() {
        let registry = Registry::in_memory();
        let (a, b) = (states(&registry, "a").await, states(&registry, "b").await);
        let cache = AsOfCache::default();
        let name = |s: &[Arc<ModelState>]| s[0].name().clone();
        assert!(cache.nearest(&name(&a), 5).is_none());
        cache.put(Arc::clone(&a[1])); // seq 2
        cache.put(Arc::clone(&a[3])); // seq 4
        cache.put(Arc::clone(&b[4])); // seq 5, another model
        let seq = |s: Option<Arc<ModelState>>| s.map(|s| s.seq());
        assert_eq!(seq(cache.nearest(&name(&a), 5)), Some(4));
        assert_eq!(seq(cache.nearest(&name(&a), 3)), Some(2));
        assert_eq!(seq(cache.nearest(&name(&a), 1)), None);
        assert_eq!(seq(cache.nearest(&name(&b), 4)), None);
        // Putting the same state again keeps one entry; beyond the bound the
        // least recently used goes: `b`'s (a's two were just used).
        cache.put(Arc::clone(&a[3]));
        cache.put(Arc::clone(&a[0]));
        cache.put(Arc::clone(&a[2]));
        assert_eq!(lock(&cache.states).len(), AS_OF_CACHED);
        assert_eq!(seq(cache.nearest(&name(&b), 5)), None);
        assert_eq!(seq(cache.nearest(&name(&a), 3)), Some(3));
    }
}
