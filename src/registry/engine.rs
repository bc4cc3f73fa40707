//! The engine under every command: per-model slots holding the cached fold,
//! reading and refreshing it from the log (`read`, `refresh`, `load`,
//! `load_checkpoint`), committing events (`commit`, `append`), checkpoints
//! (`maybe_checkpoint`, `write_checkpoint`) and eviction of idle slots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::domain::state::{HeldSegments, encode_checkpoint};
use crate::domain::{Actor, Event, EventKind, ModelName, ModelState, VersionRecord, VersionRef};
use crate::error::{Error, Result};
use crate::store::{LogRecord, MetadataStore};

use super::archives::{self, BLOCK, Tail};
use super::ingest::blocking;
use super::segmented::{self, Written};
use super::turn::Turn;
use super::{Registry, lock, pinned_version};

/// How many older checkpoints are tried when the latest one cannot be
/// trusted, before the log is replayed from event 1.
const OLDER_CHECKPOINTS_TRIED: usize = 2;

/// How many log records are read per store call while folding.
pub(super) const READ_BATCH: usize = 1024;

/// One model's cached fold.
///
/// Nothing holds `state` across an await: readers fold the log's new records
/// without it and apply them under it (records are immutable, so a record read by
/// anyone is the record), so a read future that is kept half-polled blocks nobody.
/// Writers hold no lock across a store call either: they take turns at the
/// log's next position ([`Turn`]), but a turn is waited for only about as long
/// as turns usually take, so a command stalled on the store or kept half-polled
/// delays other writers once, briefly, and blocks none.
#[derive(Default)]
pub(super) struct Slot {
    /// The fold, `None` until first loaded (or after a failed apply). Only ever
    /// moves forward while `Some`.
    ///
    /// Shared (`Arc`) so a command can decide on a snapshot with no lock held
    /// (its gates may take their time); folding copies it only if a snapshot
    /// is out at that moment.
    state: RwLock<Option<Arc<ModelState>>>,
    /// This process's writers take turns at the log's next position; a turn
    /// is waited for only briefly (see [`Turn`]), so no writer is stalled by
    /// another's store call for long.
    turn: Turn,
    /// Set while a background checkpoint of this model is being written: at most
    /// one at a time.
    pub(super) checkpointing: AtomicBool,
    /// The segments of the model's last format 5 checkpoint this process
    /// wrote or read, so the next one writes only those that changed.
    written: std::sync::Mutex<Option<Arc<Written>>>,
    /// The raw records of the newest events folded or appended (see
    /// [`archives`]): the newest events of the audit trail without a request,
    /// and what the checkpoint writer archives.
    pub(super) tail: std::sync::Mutex<Tail>,
    /// When the slot was last handed out (a tick of `Inner::ticks`), for
    /// evicting the least recently used.
    last_used: AtomicU64,
    /// When `state` was last known to hold the whole log: the time (nanoseconds
    /// since `Inner::epoch`, plus one; 0 = never) at which a refresh that found
    /// nothing newer *began*. Only kept when the registry allows stale reads
    /// ([`RegistryBuilder::max_staleness`](super::RegistryBuilder::max_staleness)).
    confirmed_at: AtomicU64,
}

/// Clears [`Slot::checkpointing`] when the background checkpoint ends, however
/// it ends (a runtime shutting down drops the task).
struct CheckpointGuard(Arc<Slot>);

impl Drop for CheckpointGuard {
    fn drop(&mut self) {
        self.0.checkpointing.store(false, Ordering::Release);
    }
}

impl Slot {
    fn read(&self) -> RwLockReadGuard<'_, Option<Arc<ModelState>>> {
        match self.state.read() {
            Ok(g) => g,
            Err(_) => {
                // A panic while the state was written: drop it, the log is the truth.
                drop(self.write());
                self.state.read().unwrap_or_else(|p| p.into_inner())
            }
        }
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Option<Arc<ModelState>>> {
        self.state.write().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            *g = None;
            self.state.clear_poison();
            g
        })
    }

    fn seq(&self) -> Option<u64> {
        self.read().as_ref().map(|s| s.seq())
    }
}

/// Drops the least recently used slots that nobody holds (only the map does:
/// no command, query or background checkpoint is using them) until a quarter
/// of `max` is free, so eviction runs once per `max / 4` new models, not on
/// every one. A slot in use is never dropped: two slots for one model would
/// let two writers of this process race for one log position.
fn evict(models: &mut HashMap<ModelName, Arc<Slot>>, max: usize) {
    let target = max - max / 4;
    let mut idle: Vec<(u64, ModelName)> = models
        .iter()
        .filter(|(_, slot)| Arc::strong_count(slot) == 1)
        .map(|(name, slot)| (slot.last_used.load(Ordering::Relaxed), name.clone()))
        .collect();
    idle.sort_unstable();
    let excess = models.len().saturating_sub(target);
    for (_, name) in idle.into_iter().take(excess) {
        models.remove(&name);
    }
}

impl Registry {
    pub(super) fn slot(&self, model: &ModelName) -> Arc<Slot> {
        let mut models = lock(&self.inner.models);
        let slot = models.entry(model.clone()).or_default().clone();
        let tick = self.inner.ticks.fetch_add(1, Ordering::Relaxed);
        slot.last_used.store(tick, Ordering::Relaxed);
        if models.len() > self.inner.max_models {
            evict(&mut models, self.inner.max_models);
        }
        slot
    }

    /// Brings the cached state of `model` up to date and runs `f` on it.
    ///
    /// `f` sees every event whose append returned before this call began, in this
    /// process or any other (and maybe later ones) — or, on a registry built with
    /// a [`max_staleness`](super::RegistryBuilder::max_staleness) window, every
    /// event this registry appended and every other event appended before the
    /// state was last confirmed current, at most that window ago.
    pub(super) async fn read<R>(
        &self,
        model: &ModelName,
        f: impl FnOnce(&ModelState) -> R,
    ) -> Result<R> {
        let slot = self.slot(model);
        if self.recently_confirmed(&slot)
            && let Some(state) = slot.read().as_ref()
        {
            return Ok(f(state));
        }
        loop {
            self.refresh(model, &slot).await?;
            // `None` only if a failed apply dropped the state meanwhile: fold again.
            if let Some(state) = slot.read().as_ref() {
                return Ok(f(state));
            }
        }
    }

    /// The state of `model` brought up to date as [`read`](Self::read) does,
    /// shared: a pointer to the fold, not a copy (a later fold copies it only
    /// if it is still held then).
    pub(super) async fn snapshot(&self, model: &ModelName) -> Result<Arc<ModelState>> {
        let slot = self.slot(model);
        if self.recently_confirmed(&slot)
            && let Some(state) = slot.read().as_ref()
        {
            return Ok(Arc::clone(state));
        }
        loop {
            self.refresh(model, &slot).await?;
            if let Some(state) = slot.read().as_ref() {
                return Ok(Arc::clone(state));
            }
        }
    }

    /// Runs `f` on the cached state of `model` as it is, without asking the
    /// store; `None` if nothing is cached. The answer may be behind the log:
    /// only for decisions that are taken again on a fresh state.
    pub(super) fn cached<R>(
        &self,
        model: &ModelName,
        f: impl FnOnce(&ModelState) -> R,
    ) -> Option<R> {
        self.slot(model).read().as_ref().map(|s| f(s))
    }

    /// Nanoseconds since the registry's epoch, plus one (0 means "never").
    fn now_stamp(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether reads may skip the store: the registry allows stale reads and a
    /// refresh that began less than the window ago found the slot's state current.
    fn recently_confirmed(&self, slot: &Slot) -> bool {
        let window = self.inner.max_staleness;
        if window == 0 {
            return false;
        }
        let at = slot.confirmed_at.load(Ordering::Acquire);
        at != 0 && self.now_stamp().saturating_sub(at) < window
    }

    /// Records that the state held the whole log when a refresh began at `began`
    /// (from [`now_stamp`](Self::now_stamp)); never moves the stamp backwards.
    fn confirm(&self, slot: &Slot, began: Option<u64>) {
        if let Some(began) = began {
            slot.confirmed_at.fetch_max(began, Ordering::AcqRel);
        }
    }

    /// Folds the events `model`'s cached state has not seen; loads from the latest
    /// checkpoint first if nothing is cached. [`Error::NotFound`] if the model has
    /// no log.
    ///
    /// No lock is held while the store is read. When nothing is new this costs one
    /// [`probe`](MetadataStore::probe) where the store answers it (a `stat` on the
    /// local store), else one `read_after` that finds nothing.
    ///
    /// Always asks the store, whatever the registry's staleness window; when the
    /// registry has one, a refresh that reaches the end of the log stamps the
    /// slot with the time it began (what [`read`](Self::read) checks).
    pub(super) async fn refresh(&self, model: &ModelName, slot: &Slot) -> Result<()> {
        let meta = &self.inner.metadata;
        // Taken before the store is asked: whatever was appended before it is
        // in what the store answers.
        let began = (self.inner.max_staleness != 0).then(|| self.now_stamp());
        loop {
            let Some(seq) = slot.seq() else {
                let (loaded, written, tail) = self.load(model).await?;
                if let Some(written) = written {
                    *lock(&slot.written) = Some(Arc::new(written));
                }
                let mut cached = slot.write();
                if cached.as_ref().is_none_or(|s| s.seq() < loaded.seq()) {
                    *cached = Some(Arc::new(loaded));
                    *lock(&slot.tail) = tail;
                }
                // Loading folded to the end of the log as it was then.
                self.confirm(slot, began);
                return Ok(());
            };
            if let Some(next) = meta.probe(model.as_str(), seq + 1)
                && !next?
            {
                self.confirm(slot, began);
                return Ok(());
            }
            let batch = meta.read_after(model.as_str(), seq, READ_BATCH).await?;
            let done = batch.len() < READ_BATCH;
            let raw = batch.clone();
            let events = batch
                .into_iter()
                .map(|rec| {
                    Event::from_bytes(model, rec.seq, &rec.bytes)
                        .map_err(self.record_at(model, rec.seq))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut cached = slot.write();
            let Some(state) = cached.as_mut().map(Arc::make_mut) else {
                continue;
            };
            // Another task may have applied some of them meanwhile.
            for event in events {
                if event.seq > state.seq() {
                    let seq = event.seq;
                    state.apply(event).map_err(self.record_at(model, seq))?;
                }
            }
            // Under the state's lock, so the tail follows the state in order.
            self.keep_raw(slot, raw);
            drop(cached);
            if done {
                self.confirm(slot, began);
                return Ok(());
            }
        }
    }

    /// Folds `model`'s log from its latest checkpoint (or from event 1) to its
    /// end; with the segments the checkpoint was read from and the raw records
    /// folded after it (the newest [`Tail::keep`] of them), which start after
    /// the checkpoint's archive.
    pub(super) async fn load(
        &self,
        model: &ModelName,
    ) -> Result<(ModelState, Option<Written>, Tail)> {
        let (checkpoint, written) = match self.load_checkpoint(model).await {
            Some((state, written)) => (Some(state), written),
            None => (None, None),
        };
        let mut tail = Tail::default();
        let keep = self.tail_keep();
        let from = checkpoint.as_ref().map_or(0, ModelState::seq);
        let state = self
            .fold_from(model, checkpoint, None, Some((&mut tail, keep)))
            .await?;
        // A checkpoint the log did not continue was dropped: then the tail
        // starts at event 1, and no archive is known.
        if tail.span().is_none_or(|(first, _)| first == from + 1) {
            tail.archived = from;
        }
        Ok((state, written, tail))
    }

    /// How many raw records a slot's tail keeps.
    fn tail_keep(&self) -> usize {
        Tail::keep(self.inner.checkpoint_every)
    }

    /// Adds records just folded or appended to the slot's tail.
    pub(super) fn keep_raw(&self, slot: &Slot, raw: Vec<LogRecord>) {
        let keep = self.tail_keep();
        let mut tail = lock(&slot.tail);
        for rec in raw {
            tail.push(rec, keep);
        }
    }

    /// Folds `model`'s log after `checkpoint` (from event 1 if `None`) to its
    /// end, or only up to and including time `until`.
    ///
    /// A checkpoint the log does not continue (an event after it does not apply)
    /// is discarded and the log replayed from event 1, as for a corrupt one.
    pub(super) async fn fold_from(
        &self,
        model: &ModelName,
        checkpoint: Option<ModelState>,
        until: Option<DateTime<Utc>>,
        mut raw: Option<(&mut Tail, usize)>,
    ) -> Result<ModelState> {
        let seq = checkpoint.as_ref().map(ModelState::seq);
        let first = raw.as_mut().map(|(t, k)| (&mut **t, *k));
        match self.fold(model, checkpoint, until, first).await {
            Err(e) if seq.is_some() && !matches!(e, Error::Storage { .. } | Error::Io { .. }) => {
                tracing::warn!(
                    model = %model, checkpoint = seq, error = %e,
                    "the log does not continue the checkpoint: ignoring it, replaying the log"
                );
                if let Some((tail, _)) = raw.as_mut() {
                    **tail = Tail::default();
                }
                self.fold(model, None, until, raw).await
            }
            folded => folded,
        }
    }

    /// Folds `model`'s log after `state` (from event 1 if `None`) to its end,
    /// or only up to and including time `until`: the read stops at the first
    /// event after it (times never go backwards in a log).
    async fn fold(
        &self,
        model: &ModelName,
        mut state: Option<ModelState>,
        until: Option<DateTime<Utc>>,
        mut raw: Option<(&mut Tail, usize)>,
    ) -> Result<ModelState> {
        let after = state.as_ref().map_or(0, ModelState::seq);
        self.read_log(model, after, |event, rec| {
            if until.is_some_and(|t| event.time > t) {
                return Ok(false);
            }
            if let Some((tail, keep)) = raw.as_mut() {
                tail.push(rec.clone(), *keep);
            }
            let at = self.record_at(model, event.seq);
            match &mut state {
                Some(state) => state.apply(event).map_err(at)?,
                None => state = Some(ModelState::genesis(&event).map_err(at)?),
            }
            Ok(true)
        })
        .await?;
        state.ok_or_else(|| Error::model_not_found(model))
    }

    /// Reads `model`'s events after the event numbered `after`, oldest first, in
    /// batches of [`READ_BATCH`], handing each to `visit` until it returns
    /// `false` (nothing more is read) or the log ends. The one loop that reads a
    /// log forward: folding, [`events`](Registry::events) and
    /// [`model_as_of`](Registry::model_as_of) all go through it.
    pub(super) async fn read_log(
        &self,
        model: &ModelName,
        mut after: u64,
        mut visit: impl FnMut(Event, &LogRecord) -> Result<bool>,
    ) -> Result<()> {
        loop {
            let batch = self
                .inner
                .metadata
                .read_after(model.as_str(), after, READ_BATCH)
                .await?;
            let done = batch.len() < READ_BATCH;
            for rec in batch {
                after = rec.seq;
                let event = Event::from_bytes(model, rec.seq, &rec.bytes)
                    .map_err(self.record_at(model, rec.seq))?;
                if !visit(event, &rec)? {
                    return Ok(());
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// The latest checkpoint of `model`, if there is one that agrees with the log.
    /// A checkpoint is only a cache: one that cannot be read, does not decode, or
    /// disagrees with the event it claims to cover is ignored and the log replayed.
    /// Each reason to ignore one is logged as a warning, and the next older
    /// checkpoint the store kept is tried (a few of them) before the whole log.
    ///
    /// With the state, the segments it was read from (format 5).
    pub(super) async fn load_checkpoint(
        &self,
        model: &ModelName,
    ) -> Option<(ModelState, Option<Written>)> {
        let meta = &self.inner.metadata;
        let mut found = meta.latest_checkpoint(model.as_str()).await;
        for _ in 0..OLDER_CHECKPOINTS_TRIED {
            let seq = match &found {
                Ok(Some(cp)) => cp.seq,
                _ => return self.confirmed_checkpoint(model, found, None).await,
            };
            if let Some(loaded) = self.confirmed_checkpoint(model, found, None).await {
                return Some(loaded);
            }
            if seq <= 1 {
                return None;
            }
            found = meta.checkpoint_at_or_before(model.as_str(), seq - 1).await;
        }
        self.confirmed_checkpoint(model, found, None).await
    }

    /// The newest checkpoint of `model` that covers at most the events
    /// `1..=at_most` ([`MetadataStore::checkpoint_at_or_before`]), if there is
    /// one that agrees with the log; ignored as in
    /// [`load_checkpoint`](Self::load_checkpoint) otherwise. The segments
    /// `current` (a state of the same model) was read from are not read again:
    /// a past checkpoint shares most of them.
    pub(super) async fn load_checkpoint_at_or_before(
        &self,
        model: &ModelName,
        at_most: u64,
        current: &ModelState,
    ) -> Option<ModelState> {
        let found = self
            .inner
            .metadata
            .checkpoint_at_or_before(model.as_str(), at_most)
            .await;
        self.confirmed_checkpoint(model, found, Some(current.held_segments()))
            .await
            .map(|(state, _)| state)
            .filter(|state| state.seq() <= at_most)
    }

    /// Decodes a checkpoint the store `found` and checks it against the event
    /// it claims to cover; `None` (with a warning saying why) if there is none,
    /// or it cannot be read, does not decode or disagrees with the log. The
    /// segments in `held` are taken from there instead of being read.
    async fn confirmed_checkpoint(
        &self,
        model: &ModelName,
        found: Result<Option<crate::store::Checkpoint>>,
        held: Option<HeldSegments>,
    ) -> Option<(ModelState, Option<Written>)> {
        let ignored = |seq: Option<u64>, why: &dyn std::fmt::Display| {
            tracing::warn!(
                model = %model, checkpoint = seq, reason = %why,
                "ignoring the checkpoint, replaying the log"
            );
            None
        };
        let meta = &self.inner.metadata;
        let cp = match found {
            Ok(cp) => cp?,
            Err(e) => return ignored(None, &e),
        };
        let seq = cp.seq;
        let read = segmented::read_holding(meta.as_ref(), model, cp, held.unwrap_or_default());
        let (state, written) = match read.await {
            Ok(read) => read,
            Err(e) => return ignored(Some(seq), &e),
        };
        let covered = match meta
            .read_after(model.as_str(), seq.saturating_sub(1), 1)
            .await
        {
            Ok(covered) => covered,
            Err(e) => return ignored(Some(seq), &e),
        };
        let Some(rec) = covered.first().filter(|r| r.seq == seq) else {
            return ignored(Some(seq), &"the event it covers is not in the log");
        };
        let event = match Event::from_bytes(model, rec.seq, &rec.bytes) {
            Ok(event) => event,
            Err(e) => return ignored(Some(seq), &e),
        };
        match state.confirmed_by(&event) {
            Ok(()) => Some((state, written)),
            Err(why) => ignored(Some(seq), &why),
        }
    }

    /// The number of the last event of `model`'s log at or before time `at`,
    /// searching events `1..end` (0 if event 1 is later than `at`). Event `end`
    /// must exist and be later than `at`.
    ///
    /// A binary search over the log, one record read per step (17 at 100,000
    /// events): times never go backwards in a log, which is what lets a fold
    /// "as of" a time stop at the first event after it.
    pub(super) async fn last_event_at_or_before(
        &self,
        model: &ModelName,
        end: u64,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        // Event `lo` is at or before `at` (0: before the log), event `hi` after.
        let (mut lo, mut hi) = (0u64, end);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let records = self
                .inner
                .metadata
                .read_after(model.as_str(), mid - 1, 1)
                .await?;
            let Some(rec) = records.first().filter(|r| r.seq == mid) else {
                return Err(self.record_at(model, mid)(Error::corrupt(
                    format!("event {mid} of model '{model}'"),
                    format!("missing from the log, which has events up to {end}"),
                )));
            };
            let event =
                Event::from_bytes(model, mid, &rec.bytes).map_err(self.record_at(model, mid))?;
            if event.time <= at {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Appends the event `make` builds from the fresh state, retrying on conflict.
    ///
    /// Each attempt folds the log up to date, builds the event from that state (so
    /// numbers and references are recomputed), checks it, and appends it at the
    /// next position with create-if-absent. Losing the race means another writer
    /// took that position: wait a little, and try again from the top.
    #[tracing::instrument(level = "debug", skip_all, fields(model = %model))]
    pub(super) async fn commit(
        &self,
        model: &ModelName,
        actor: &Actor,
        make: impl FnMut(&ModelState, DateTime<Utc>) -> Result<EventKind>,
    ) -> Result<(Event, Option<VersionRecord>)> {
        self.commit_after(model, actor, make, 0).await
    }

    /// [`commit`](Self::commit) after `lost` appends of the same command lost
    /// their race already (a prepared one, [`commit_prepared`](Self::commit_prepared)):
    /// they count against the retry policy's attempts.
    async fn commit_after(
        &self,
        model: &ModelName,
        actor: &Actor,
        mut make: impl FnMut(&ModelState, DateTime<Utc>) -> Result<EventKind>,
        lost: u32,
    ) -> Result<(Event, Option<VersionRecord>)> {
        let slot = self.slot(model);
        let policy = self.inner.retry;
        let mut attempt = lost;
        if lost > 0 {
            if attempt >= policy.max_attempts {
                return Err(Error::Conflict {
                    model: model.to_string(),
                    attempts: attempt,
                });
            }
            tokio::time::sleep(policy.delay(attempt)).await;
        }
        loop {
            attempt += 1;
            let appended = {
                // Not a lock: a turn held by a stalled or abandoned command is
                // waited for briefly, then taken (the append is create-if-absent,
                // so going ahead is safe; the loser retries).
                let _turn = slot.turn.take().await;
                self.refresh(model, &slot).await?;
                let event = {
                    // A snapshot: the command and its gates decide with no lock
                    // held, so a slow gate stalls no reader and no fold.
                    let snapshot = slot.read().clone();
                    // `None` only if a failed apply dropped the state: fold again.
                    let Some(state) = snapshot else {
                        continue;
                    };
                    // The log's order is the truth; times never go backwards in it
                    // even when writers' clocks disagree.
                    let time = Utc::now().max(state.updated_at());
                    let kind = make(&state, time)?;
                    state.check(&kind)?;
                    Event {
                        seq: state.seq() + 1,
                        model: model.clone(),
                        time,
                        actor: actor.clone(),
                        kind,
                    }
                };
                let bytes = Bytes::from(crate::domain::limits::encode(&event)?);
                match self.append(model, event.seq, bytes.clone()).await {
                    Ok(()) => {
                        tracing::debug!(
                            seq = event.seq,
                            kind = event.kind.name(),
                            attempt,
                            "appended"
                        );
                        let version = applied(&slot, &event, &bytes, self.tail_keep())?;
                        Some((event, version))
                    }
                    Err(Error::AlreadyExists { .. }) => None,
                    Err(e) => return Err(e),
                }
            };
            if let Some((event, version)) = appended {
                // After the turn: a checkpoint written inline (small models)
                // delays this command only.
                self.maybe_checkpoint(&slot, event.seq).await;
                return Ok((event, version));
            }
            if attempt >= policy.max_attempts {
                return Err(Error::Conflict {
                    model: model.to_string(),
                    attempts: attempt,
                });
            }
            tokio::time::sleep(policy.delay(attempt)).await;
        }
    }

    /// Builds the event `make` makes on the state of `model` as it is now (as
    /// [`commit`](Self::commit) would on its first attempt) and prepares its
    /// append ([`MetadataStore::prepare_append`](crate::store::MetadataStore::prepare_append)),
    /// so that its durable write can overlap other work; nothing is appended.
    /// [`commit_prepared`](Self::commit_prepared) publishes it.
    ///
    /// `None` when the command refuses on this state: then `commit_prepared`
    /// commits as `commit` does, and reports the refusal from the state it
    /// folds then. A store that fails fails the command, as in `commit`.
    pub(super) async fn prepare_commit(
        &self,
        model: &ModelName,
        actor: &Actor,
        make: impl FnOnce(&ModelState, DateTime<Utc>) -> Result<EventKind>,
    ) -> Result<Option<Prepared>> {
        let built = self
            .read(model, |state| {
                let time = Utc::now().max(state.updated_at());
                let kind = make(state, time)?;
                state.check(&kind)?;
                Ok::<_, Error>(Event {
                    seq: state.seq() + 1,
                    model: model.clone(),
                    time,
                    actor: actor.clone(),
                    kind,
                })
            })
            .await?;
        // A refusal is reported by the commit, from the state it folds then.
        let Ok(event) = built else { return Ok(None) };
        let Ok(encoded) = crate::domain::limits::encode(&event) else {
            return Ok(None);
        };
        let bytes = Bytes::from(encoded);
        let append = self
            .inner
            .metadata
            .prepare_append(model.as_str(), event.seq, bytes.clone())
            .await?;
        Ok(Some(Prepared {
            event,
            bytes,
            append,
        }))
    }

    /// Publishes the append [`prepare_commit`](Self::prepare_commit) prepared
    /// if its position is still free (the state it was built on is then the
    /// log's state just before it, so the checks it passed are the ones
    /// [`commit`](Self::commit) would make); otherwise, or with nothing
    /// prepared, commits `make` as `commit` does.
    #[tracing::instrument(name = "commit", level = "debug", skip_all, fields(model = %model))]
    pub(super) async fn commit_prepared(
        &self,
        model: &ModelName,
        actor: &Actor,
        prepared: Option<Prepared>,
        make: impl FnMut(&ModelState, DateTime<Utc>) -> Result<EventKind>,
    ) -> Result<(Event, Option<VersionRecord>)> {
        if let Some(Prepared {
            event,
            bytes,
            append,
        }) = prepared
        {
            let slot = self.slot(model);
            let published = {
                let _turn = slot.turn.take().await;
                match self.inner.metadata.publish_append(append).await {
                    Ok(()) => Some(applied(&slot, &event, &bytes, self.tail_keep())?),
                    Err(Error::AlreadyExists { .. })
                        if self.ours(model, event.seq, &bytes).await? =>
                    {
                        Some(applied(&slot, &event, &bytes, self.tail_keep())?)
                    }
                    Err(Error::AlreadyExists { .. }) => None,
                    Err(e) => return Err(e),
                }
            };
            if let Some(version) = published {
                tracing::debug!(
                    seq = event.seq,
                    kind = event.kind.name(),
                    "appended (prepared)"
                );
                self.maybe_checkpoint(&slot, event.seq).await;
                return Ok((event, version));
            }
            // The prepared append lost its race: that was the first attempt.
            return self.commit_after(model, actor, make, 1).await;
        }
        self.commit(model, actor, make).await
    }

    /// Whether record `seq` of `model` holds `bytes`: an append reported as
    /// taken that was our own (see [`append`](Self::append)).
    async fn ours(&self, model: &ModelName, seq: u64, bytes: &Bytes) -> Result<bool> {
        let stored = self
            .inner
            .metadata
            .read_after(model.as_str(), seq - 1, 1)
            .await?;
        Ok(matches!(stored.first(), Some(r) if r.seq == seq && r.bytes == *bytes))
    }

    /// Appends record `seq`, telling our own write from another writer's.
    ///
    /// A store may retry a conditional write whose first attempt landed (an
    /// object store retrying a PUT after a timeout or a 5xx), and then report our
    /// own record as taken. Reading the record back tells: the same bytes (which
    /// carry this writer's time to the nanosecond and its checksum) mean it is
    /// ours, and the append succeeded.
    pub(super) async fn append(&self, model: &ModelName, seq: u64, bytes: Bytes) -> Result<()> {
        let meta = &self.inner.metadata;
        match meta.append(model.as_str(), seq, bytes.clone()).await {
            Err(Error::AlreadyExists { what }) => {
                if self.ours(model, seq, &bytes).await? {
                    Ok(())
                } else {
                    Err(Error::AlreadyExists { what })
                }
            }
            other => other,
        }
    }

    /// Commits an event about the version `r` resolved to on the first attempt
    /// (retries act on that same version even if `@latest` or an alias moved).
    pub(super) async fn commit_on_version(
        &self,
        r: &VersionRef,
        actor: &Actor,
        make: impl Fn(crate::domain::VersionNumber) -> EventKind,
    ) -> Result<VersionRecord> {
        let mut number = None;
        let (_, record) = self
            .commit(&r.model, actor, |s, _| {
                Ok(make(pinned_version(s, r, &mut number)?.number))
            })
            .await?;
        record.ok_or_else(|| Error::version_not_found(&r.model, r))
    }

    /// Writes a checkpoint if event `seq` (just committed) is a multiple of
    /// `checkpoint_every`: before returning for a small state, in a background
    /// task for a large one (at most one per model at a time; skipped while one
    /// runs), so the command's latency does not grow with the model.
    pub(super) async fn maybe_checkpoint(&self, slot: &Arc<Slot>, seq: u64) {
        let every = self.inner.checkpoint_every;
        if every == 0 || !seq.is_multiple_of(every) {
            return;
        }
        let versions = slot.read().as_ref().map_or(0, |s| s.version_count());
        if versions < self.inner.background_checkpoint_from {
            self.write_checkpoint(Arc::clone(slot)).await;
            return;
        }
        if slot.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = CheckpointGuard(Arc::clone(slot));
        let this = self.clone();
        tokio::spawn(async move {
            this.write_checkpoint(Arc::clone(&guard.0)).await;
            drop(guard);
        });
    }

    /// Writes a checkpoint of the slot's current state. Best effort: the events
    /// are committed; a missing checkpoint only makes the next cold open replay
    /// more of the log.
    ///
    /// On the blocking pool, the state is cloned under its read lock and encoded
    /// without it, so events folded meanwhile wait for the clone only.
    pub(super) async fn write_checkpoint(&self, slot: Arc<Slot>) {
        let per = self.inner.checkpoint_segment;
        let meta = &self.inner.metadata;
        if meta.keeps_checkpoint_parts() {
            // Copied under the lock (pointers to the shared versions) on the
            // blocking pool, as below: a fold meanwhile then copies nothing.
            let from = Arc::clone(&slot);
            let snapshot = blocking(move || from.read().as_deref().cloned())
                .await
                .ok()
                .flatten();
            if let Some(state) = snapshot.filter(|s| s.version_count() >= per) {
                let state = Arc::new(state);
                let (name, seq) = (state.name().clone(), state.seq());
                // Before the head: a reader that opens it finds its archive.
                self.write_archives(&slot, &name, seq).await;
                let known = lock(&slot.written).clone();
                match segmented::write(meta.as_ref(), state, per, known).await {
                    Ok((written, _bytes)) => *lock(&slot.written) = Some(Arc::new(written)),
                    Err(e) => tracing::warn!(
                        model = name.as_str(), checkpoint = seq, error = %e,
                        "could not write a checkpoint; the next cold open replays more of the log"
                    ),
                }
                return;
            }
        }
        let from = Arc::clone(&slot);
        let encoded = blocking(move || {
            // Copied under the lock (pointers to the shared versions): a fold
            // meanwhile then copies nothing.
            let snapshot = ModelState::clone(from.read().as_deref()?);
            Some((
                snapshot.name().clone(),
                snapshot.seq(),
                encode_checkpoint(&snapshot),
            ))
        })
        .await;
        if let Ok(Some((name, seq, _))) = &encoded {
            // Before the checkpoint: a reader that opens it finds its archive.
            self.write_archives(&slot, name, *seq).await;
        }
        let stored = match encoded {
            Ok(Some((name, seq, bytes))) => self
                .inner
                .metadata
                .put_checkpoint(name.as_str(), seq, Bytes::from(bytes))
                .await
                .map_err(|e| (Some(name), Some(seq), e)),
            Ok(None) => Ok(()),
            Err(e) => Err((None, None, e)),
        };
        if let Err((model, seq, e)) = stored {
            tracing::warn!(
                model = model.as_ref().map(|m| m.as_str()), checkpoint = seq, error = %e,
                "could not write a checkpoint; the next cold open replays more of the log"
            );
        }
    }
}

/// Reads a log backwards from an event, a batch per [`next`](Self::next):
/// the newest events of a long log without reading the rest, and without a
/// request per event where it can be helped. Each batch comes from the first
/// source that has it: the slot's tail (no request), an event archive (one
/// request per [`BLOCK`] events; see [`archives`]), else the log's records.
pub(super) struct LogBack<'a> {
    registry: &'a Registry,
    model: &'a ModelName,
    slot: Arc<Slot>,
    /// The newest event not read yet; 0 once event 1 has been read.
    end: u64,
    /// The log's newest event when the read began: which blocks are complete.
    newest: u64,
    /// Batches read from the store (an archive or the log) so far.
    reads: u32,
    /// Records read ahead (oldest first, the last one `end`) and whether
    /// they come from an archive (so are decoded for the first time).
    pending: Vec<LogRecord>,
    archived: bool,
    /// The start of a block whose archive is missing or damaged: its
    /// events are read from the log's records.
    unarchived: Option<u64>,
}

impl<'a> LogBack<'a> {
    /// A reader of `model`'s events `end`, `end - 1`, … 1, of a log whose
    /// newest event is `newest`. Every record up to
    /// `end` must exist: `end` is at most a folded state's `seq`, and records
    /// are never deleted, also not once a checkpoint covers them.
    pub(super) fn new(registry: &'a Registry, model: &'a ModelName, end: u64, newest: u64) -> Self {
        LogBack {
            registry,
            model,
            slot: registry.slot(model),
            end,
            newest,
            reads: 0,
            pending: Vec::new(),
            archived: false,
            unarchived: None,
        }
    }

    /// The next batch, newest first; empty once event 1 has been read.
    ///
    /// The caller says how many more events it `wants`, and gets at most
    /// that many, decoded. What is read ahead is a batch of that many (at
    /// least 16), doubled for each batch already read from the store (not
    /// the tail), at most [`READ_BATCH`]: a caller that wants the newest few
    /// reads from the log's records about as many, one whose filter matches
    /// rarely reaches the log's start in a few store calls per
    /// [`READ_BATCH`] records, and either decodes only the events it is
    /// handed. A record missing below `end` is [`Error::Corrupt`] naming it,
    /// never a silently shorter history.
    pub(super) async fn next(&mut self, wants: usize) -> Result<Vec<Event>> {
        let model = self.model;
        if self.end == 0 {
            return Ok(Vec::new());
        }
        loop {
            if self.pending.is_empty() {
                let batch = wants
                    .max(16)
                    .checked_shl(self.reads.min(16))
                    .unwrap_or(usize::MAX)
                    .min(READ_BATCH) as u64;
                if self.fill(batch).await? {
                    self.reads += 1;
                }
            }
            // Decode what the caller wants, not the whole batch read ahead:
            // the rest stays pending for its next call.
            let take = self.pending.len().min(wants.max(1));
            let taken = self.pending.split_off(self.pending.len() - take);
            let mut events = Vec::with_capacity(taken.len());
            let mut bad = None;
            for rec in taken.iter().rev() {
                match Event::from_bytes(model, rec.seq, &rec.bytes) {
                    Ok(event) => events.push(event),
                    Err(e) => {
                        bad = Some((rec.seq, e));
                        break;
                    }
                }
            }
            match bad {
                None => {
                    self.end = taken.first().map_or(0, |r| r.seq - 1);
                    return Ok(events);
                }
                Some((seq, e)) if self.archived => {
                    // Its digest matched, yet a record does not decode: read
                    // the block from the log instead.
                    tracing::warn!(
                        model = %model, event = seq, error = %e,
                        "ignoring an event archive whose record does not decode; reading the log"
                    );
                    self.pending.clear();
                    self.unarchived = Some(archives::block_start(self.end));
                }
                Some((seq, e)) => return Err(self.registry.record_at(model, seq)(e)),
            }
        }
    }

    /// Reads ahead the records ending at `end`: from the tail if it holds
    /// `end`, else the archive of `end`'s block (the partial one a checkpoint
    /// at `end` wrote, or the complete block), else up to `batch` records of
    /// the log, not past the block's start.
    ///
    /// Returns whether the records came from the store (an archive or the
    /// log), not the tail.
    async fn fill(&mut self, batch: u64) -> Result<bool> {
        let (model, end) = (self.model, self.end);
        let lo = end.saturating_sub(batch - 1).max(1);
        let held = lock(&self.slot.tail).range(lo, end);
        if held.last().is_some_and(|r| r.seq == end) {
            self.pending = held;
            self.archived = false;
            return Ok(false);
        }
        let start = archives::block_start(end);
        let meta = self.registry.inner.metadata.as_ref();
        if self.unarchived != Some(start) {
            // The partial block first, ending at the checkpoint this process
            // last archived or opened the model from if that is in this
            // block (where the tail starts, the checkpoint's archive ends).
            let full = start + BLOCK - 1;
            let known = lock(&self.slot.tail).archived;
            let partial = if (end..full).contains(&known) {
                known
            } else {
                end
            };
            let mut found = None;
            if partial < full {
                found = archives::read(meta, model, start, partial).await;
            }
            if found.is_none() && full <= self.newest {
                found = archives::read(meta, model, start, full).await;
            }
            match found {
                Some(mut records) => {
                    records.truncate((end - start + 1) as usize);
                    self.pending = records;
                    self.archived = true;
                    return Ok(true);
                }
                None => self.unarchived = Some(start),
            }
        }
        let from = lo.max(start) - 1;
        let records = meta
            .read_after(model.as_str(), from, (end - from) as usize)
            .await?;
        // `read_after` returns consecutive records from `from + 1`.
        if records.len() as u64 != end - from || records.last().map(|r| r.seq) != Some(end) {
            let missing = from + 1 + records.len() as u64;
            return Err(self.registry.record_at(model, missing)(Error::corrupt(
                format!("event {missing} of model '{model}'"),
                format!("missing from the log, which has events up to {end}"),
            )));
        }
        self.pending = records;
        self.archived = false;
        Ok(true)
    }
}

#[cfg(test)]
mod state_cache {
    use super::*;
    use crate::store::{MemoryArtifactStore, MemoryMetadataStore};
    use crate::{ArtifactSource, CreateModel, NewVersion};

    #[tokio::test]
    async fn idle_states_are_evicted_beyond_the_bound_and_fold_again() {
        let registry = Registry::builder()
            .metadata(Arc::new(MemoryMetadataStore::new()))
            .artifacts(Arc::new(MemoryArtifactStore::new()))
            .max_cached_models(4)
            .build()
            .expect("registry");
        let me = registry.acting_as(Actor::new("ci").expect("actor"));
        for i in 0..10 {
            let model = format!("m{i}");
            me.create_model(&*model, CreateModel::new())
                .await
                .expect("create");
            me.register(
                &*model,
                ArtifactSource::bytes("w", format!("{i}")).expect("path"),
                NewVersion::new(),
            )
            .await
            .expect("register");
            assert!(
                lock(&registry.inner.models).len() <= 4,
                "bounded after m{i}"
            );
        }
        // The most recently used stay; an evicted one folds again, unchanged.
        assert!(lock(&registry.inner.models).contains_key(&ModelName::new("m9").expect("name")));
        assert!(!lock(&registry.inner.models).contains_key(&ModelName::new("m0").expect("name")));
        let v = registry
            .resolve("m0@latest")
            .await
            .expect("resolve evicted model");
        assert_eq!(v.number.get(), 1);
        assert!(lock(&registry.inner.models).len() <= 4);
    }

    #[test]
    fn a_slot_in_use_is_never_evicted() {
        let mut models: HashMap<ModelName, Arc<Slot>> = HashMap::new();
        let held = Arc::new(Slot::default());
        models.insert(ModelName::new("held").expect("name"), Arc::clone(&held));
        for i in 0..7 {
            let slot = Slot::default();
            slot.last_used.store(i + 1, Ordering::Relaxed);
            models.insert(
                ModelName::new(format!("m{i}")).expect("name"),
                Arc::new(slot),
            );
        }
        evict(&mut models, 4);
        assert_eq!(models.len(), 3);
        assert!(models.contains_key(&ModelName::new("held").expect("name")));
        assert!(models.contains_key(&ModelName::new("m6").expect("name")));
    }
}

/// An event built and its append prepared ahead of its commit
/// ([`Registry::prepare_commit`]).
#[derive(Debug)]
pub(super) struct Prepared {
    event: Event,
    bytes: Bytes,
    append: crate::store::PreparedAppend,
}

/// Applies `event`, just appended, to the slot's cached state if that state is
/// the one just before it, and returns the version the event is about as it is
/// now. A reader may have folded the event from the log first; a state dropped
/// meanwhile is folded again on next read.
fn applied(
    slot: &Slot,
    event: &Event,
    bytes: &Bytes,
    keep: usize,
) -> Result<Option<VersionRecord>> {
    let mut cached = slot.write();
    if let Some(state) = cached.as_mut().map(Arc::make_mut)
        && state.seq() + 1 == event.seq
    {
        if let Err(e) = state.apply(event.clone()) {
            // Cannot happen after `check`; refold from the log if it does.
            *cached = None;
            return Err(e);
        }
        // Pushed under the state's lock, so the tail follows the state in
        // order; a tail whose newest record is not `seq - 1` starts anew.
        lock(&slot.tail).push(
            LogRecord {
                seq: event.seq,
                bytes: bytes.clone(),
            },
            keep,
        );
    }
    Ok(event
        .kind
        .version()
        .and_then(|n| cached.as_ref()?.version(n).cloned()))
}
