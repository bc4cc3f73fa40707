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
