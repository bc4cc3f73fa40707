//! Lifecycle commands: stage transitions through gates, approvals, rollback,
//! aliases, stored gates, the audit trail and time travel.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::engine::LogBack;
use super::options::{HistoryFilter, SetAlias};
use super::{IntoModelName, IntoVersionRef, Registry, blocking, pinned_version};
use crate::domain::{
    Actor, AliasName, Decision, Event, EventKind, Gate, GateSpec, GateVerdict, ModelName,
    ModelState, Stage, Transition, TransitionCheck, VersionNumber, VersionRecord,
};
use crate::error::{Error, Missing, Result};

impl Registry {
    /// The implementation of [`Session::transition`](super::Session::transition).
    pub(crate) async fn transition(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
        actor: &Actor,
        reason: impl Into<String>,
    ) -> Result<Event> {
        let r = version.into_version_ref()?;
        let reason = reason.into();
        let mut number = None;
        let mut basis = None;
        let (event, _) = self
            .commit(&r.model, actor, |s, time| {
                let v = pinned_version(s, &r, &mut number)?;
                // A promotion decides over the current production version; other
                // moves only over the candidate's own stage.
                let production = match to {
                    Stage::Production => s.production().map(|p| p.number),
                    _ => None,
                };
                pin(s, &mut basis, (v.stage, production), |then, now| {
                    if then.0 != now.0 {
                        format!(
                            "the stage of version {} (was {}, now {})",
                            v.number, then.0, now.0
                        )
                    } else {
                        production_changed(then.1, now.1)
                    }
                })?;
                let from = v.stage;
                allowed_move(s, v, to)?;
                let gates = self.run_gates(s, v, to, actor, time)?;
                Ok(EventKind::StageChanged {
                    version: v.number,
                    from,
                    to,
                    reason: reason.clone(),
                    gates,
                    archived: match to {
                        Stage::Production => s.production().map(|p| p.number),
                        _ => None,
                    },
                })
            })
            .await?;
        Ok(event)
    }

    /// The implementation of
    /// [`Session::check_transition`](super::Session::check_transition): the
    /// checks of [`transition`](Self::transition) on a snapshot of the state,
    /// without appending anything.
    pub(crate) async fn check_transition(
        &self,
        version: impl IntoVersionRef,
        to: Stage,
        requester: &Actor,
    ) -> Result<TransitionCheck> {
        let r = version.into_version_ref()?;
        // A copy of the state: gates (user code among them) run with no lock held.
        let s = self.model(&r.model).await?;
        let v = s.resolve(&r.selector)?;
        let from = v.stage;
        allowed_move(&s, v, to)?;
        // The time the transition would carry if it were committed now.
        let at = Utc::now().max(s.updated_at());
        Ok(TransitionCheck {
            version: v.number,
            from,
            to,
            gates: self.gate_verdicts(&s, v, to, requester, at),
            archives: match to {
                Stage::Production => s.production().map(|p| p.number),
                _ => None,
            },
        })
    }

    /// The implementation of [`Session::check_gates`](super::Session::check_gates).
    pub(crate) async fn check_gates(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        requester: &Actor,
    ) -> Result<Vec<GateVerdict>> {
        let r = version.into_version_ref()?;
        let s = self.model(&r.model).await?;
        let v = s.resolve(&r.selector)?;
        let at = Utc::now().max(s.updated_at());
        Ok(self.gate_verdicts(&s, v, stage, requester, at))
    }

    /// The implementation of [`Session::promote`](super::Session::promote).
    pub(crate) async fn promote(
        &self,
        version: impl IntoVersionRef,
        actor: &Actor,
        reason: impl Into<String>,
    ) -> Result<Event> {
        self.transition(version, Stage::Production, actor, reason)
            .await
    }

    /// The implementation of [`Session::approve`](super::Session::approve).
    pub(crate) async fn approve(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        approver: &Actor,
        comment: impl Into<String>,
    ) -> Result<Event> {
        self.decide(version, stage, approver, Decision::Approve, comment.into())
            .await
    }

    /// The implementation of [`Session::reject`](super::Session::reject).
    pub(crate) async fn reject(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        approver: &Actor,
        comment: impl Into<String>,
    ) -> Result<Event> {
        self.decide(version, stage, approver, Decision::Reject, comment.into())
            .await
    }

    async fn decide(
        &self,
        version: impl IntoVersionRef,
        stage: Stage,
        approver: &Actor,
        decision: Decision,
        comment: String,
    ) -> Result<Event> {
        let r = version.into_version_ref()?;
        let mut number = None;
        let (event, _) = self
            .commit(&r.model, approver, |s, _| {
                let n = pinned_version(s, &r, &mut number)?.number;
                Ok(EventKind::ApprovalRecorded {
                    version: n,
                    stage,
                    decision,
                    comment: comment.clone(),
                })
            })
            .await?;
        Ok(event)
    }

    /// The implementation of [`Session::rollback`](super::Session::rollback).
    pub(crate) async fn rollback(
        &self,
        model: impl IntoModelName,
        actor: &Actor,
        reason: impl Into<String>,
    ) -> Result<Event> {
        let model = model.into_model_name()?;
        let reason = reason.into();
        let mut basis = None;
        let (event, _) = self
            .commit(&model, actor, |s, _| {
                let current = s.production().map(|p| p.number);
                pin(s, &mut basis, current, production_changed)?;
                let displaced = current.ok_or_else(|| {
                    Error::version_not_found(&model, format!("{model}@production"))
                })?;
                let restored = s.rollback_target().ok_or_else(|| {
                    Error::missing(
                        crate::error::Missing::Version {
                            model: model.to_string(),
                            reference: format!("{model}@production"),
                        },
                        format!(
                            "an earlier production version of model '{model}' (only {displaced} ever held it)"
                        ),
                    )
                })?;
                Ok(EventKind::RolledBack {
                    restored,
                    displaced,
                    reason: reason.clone(),
                })
            })
            .await?;
        Ok(event)
    }

    /// The implementation of [`Session::set_alias`](super::Session::set_alias).
    pub(crate) async fn set_alias(
        &self,
        version: impl IntoVersionRef,
        alias: &str,
        options: SetAlias,
        actor: &Actor,
    ) -> Result<Event> {
        let r = version.into_version_ref()?;
        let alias = AliasName::new(alias)?;
        let mut number = None;
        let mut basis = None;
        let (event, _) = self
            .commit(&r.model, actor, |s, time| {
                let v = pinned_version(s, &r, &mut number)?;
                let current = s.alias(&alias).cloned();
                pin(
                    s,
                    &mut basis,
                    current.as_ref().map(|c| c.version),
                    |then, now| format!("alias '{alias}' (was {}, now {})", show(then), show(now)),
                )?;
                let was_protected = current.is_some_and(|c| c.protected);
                let protected = options.protected.unwrap_or(was_protected);
                let gates = if was_protected || protected {
                    self.run_gates(s, v, Stage::Production, actor, time)?
                } else {
                    Vec::new()
                };
                Ok(EventKind::AliasSet {
                    alias: alias.clone(),
                    version: v.number,
                    protected,
                    reason: options.reason.clone(),
                    gates,
                })
            })
            .await?;
        Ok(event)
    }

    /// The implementation of [`Session::remove_alias`](super::Session::remove_alias).
    pub(crate) async fn remove_alias(
        &self,
        model: impl IntoModelName,
        alias: &str,
        actor: &Actor,
        reason: impl Into<String>,
    ) -> Result<Event> {
        let model = model.into_model_name()?;
        let alias = AliasName::new(alias)?;
        let reason = reason.into();
        let (event, _) = self
            .commit(&model, actor, |s, time| {
                let target = s.alias(&alias).ok_or_else(|| {
                    Error::missing(
                        crate::error::Missing::Alias {
                            model: model.to_string(),
                            alias: alias.to_string(),
                        },
                        format!("alias '{alias}' of model '{model}'"),
                    )
                })?;
                let gates = match (target.protected, s.version(target.version)) {
                    (true, Some(v)) => self.run_gates(s, v, Stage::Production, actor, time)?,
                    _ => Vec::new(),
                };
                Ok(EventKind::AliasRemoved {
                    alias: alias.clone(),
                    version: Some(target.version),
                    reason: reason.clone(),
                    gates,
                })
            })
            .await?;
        Ok(event)
    }

    /// The implementation of [`Session::set_gates`](super::Session::set_gates).
    pub(crate) async fn set_gates(
        &self,
        model: impl IntoModelName,
        stage: Stage,
        gates: Vec<GateSpec>,
        actor: &Actor,
    ) -> Result<Event> {
        let model = model.into_model_name()?;
        let (event, _) = self
            .commit(&model, actor, |_, _| {
                Ok(EventKind::GatesSet {
                    stage,
                    gates: gates.clone(),
                })
            })
            .await?;
        Ok(event)
    }

    /// The audit trail: the model's events that match `filter`, newest first.
    ///
    /// Reads the log backwards from its end and stops where no older event can
    /// match (before [`since`](HistoryFilter::since), or at the registration
    /// of the [`version`](HistoryFilter::version) asked about), else at the
    /// log's start; a frontend showing the latest events reads only what it
    /// shows with [`history_page`](Self::history_page).
    pub async fn history(
        &self,
        model: impl IntoModelName,
        filter: &HistoryFilter,
    ) -> Result<Vec<Event>> {
        let model = model.into_model_name()?;
        let page = self.history_back(&model, filter, None, None).await?;
        Ok(page.items)
    }

    /// One page of the audit trail, newest first: at most `limit` events that
    /// match `filter`, older than the event numbered `before` (from the newest
    /// when `None`). [`Page::next`](crate::Page::next) is the `before` of the
    /// next page, `None` once no older event can match: the log's first event
    /// is on a page, or the filter rules out everything older (an event before
    /// its [`since`](HistoryFilter::since), the registration of its
    /// [`version`](HistoryFilter::version)).
    ///
    /// Sees every event appended before the call began, as other queries do.
    /// Reads the log backwards from its end in batches (the first the size of
    /// the page, then what is still missing, doubled for every batch read, up
    /// to 1,024 records), so showing the latest
    /// events of a long log reads about as many records as it shows, not the
    /// whole log; a filter that matches rarely reads more, at most to the
    /// point it rules out. The newest events come from what the registry
    /// already read (no request), older ones from the event archives written
    /// with each checkpoint (one request per 1,024 events on object storage),
    /// and only the rest from the log's records.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let ci = registry.acting_as(Actor::new("ci")?);
    /// ci.create_model("fraud", CreateModel::new()).await?;
    /// for i in 0..5 {
    ///     ci.register("fraud", ArtifactSource::bytes("m.bin", format!("w{i}"))?, NewVersion::new()).await?;
    /// }
    /// let all = HistoryFilter::new();
    /// let page = registry.history_page("fraud", &all, None, 2).await?;
    /// assert_eq!(page.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 5]);
    /// let older = registry.history_page("fraud", &all, page.next, 10).await?;
    /// assert_eq!(older.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 3, 2, 1]);
    /// assert_eq!(older.next, None);
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn history_page(
        &self,
        model: impl IntoModelName,
        filter: &HistoryFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<crate::Page<Event, u64>> {
        let model = model.into_model_name()?;
        self.history_back(&model, filter, before, Some(limit.max(1)))
            .await
    }

    /// [`history_page`](Self::history_page), or with no `limit` the whole
    /// [`history`](Self::history): the log read backwards from its newest
    /// event (or the one before `before`) until `limit` events match or no
    /// older one can.
    async fn history_back(
        &self,
        model: &ModelName,
        filter: &HistoryFilter,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<crate::Page<Event, u64>> {
        let newest = self.read(model, ModelState::seq).await?;
        // The newest event to look at.
        let end = before.map_or(newest, |b| b.saturating_sub(1).min(newest));
        let limit = limit.unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut ruled_out = false;
        // The newest event not looked at yet.
        let mut unread = end;
        let mut log = LogBack::new(self, model, end, newest);
        'read: while !ruled_out && items.len() < limit && unread > 0 {
            // Without a limit, start small and double: a `since` of the last
            // hour then reads about what it returns.
            let wants = if limit == usize::MAX {
                64
            } else {
                limit - items.len()
            };
            for event in log.next(wants).await? {
                unread = event.seq - 1;
                ruled_out = filter.rules_out_older(&event);
                if filter.matches(&event) {
                    items.push(event);
                }
                if ruled_out || items.len() == limit {
                    break 'read;
                }
            }
        }
        let next = (!ruled_out && unread > 0).then_some(unread + 1);
        Ok(crate::Page {
            items,
            next,
            total: None,
        })
    }

    /// The model as it was at time `at`: the fold of every event up to and
    /// including `at`. [`Error::NotFound`] if the model did not exist yet.
    ///
    /// At or after the model's last change this is the current state (no read
    /// beyond the usual check for new events). Before it, a binary search over
    /// the log finds the last event at or before `at` (one record read per
    /// step), and the fold starts from the newest checkpoint the store kept
    /// that covers no later event
    /// ([`MetadataStore::checkpoint_at_or_before`](crate::store::MetadataStore::checkpoint_at_or_before):
    /// the local and object stores keep one per window of the log's history),
    /// else from the log's start; either way the log is read up to `at` only,
    /// not to its end. So its cost is a checkpoint's decode plus the events
    /// between that checkpoint and `at`, not the whole log before `at`.
    ///
    /// The last few states folded this way are kept (a past state never
    /// changes; its records are shared with the current state where equal,
    /// by a background task after the call): asking again for a time with
    /// the same last event costs the search and a copy of pointers, and a
    /// time a little later folds on from the kept state.
    pub async fn model_as_of(
        &self,
        model: impl IntoModelName,
        at: DateTime<Utc>,
    ) -> Result<ModelState> {
        let model = model.into_model_name()?;
        let every = self.inner.checkpoint_every;
        let live = self.snapshot(&model).await?;
        if live.updated_at() <= at {
            return Ok(ModelState::clone(&live));
        }
        let not_yet = || {
            Error::missing(
                Missing::Model {
                    model: model.to_string(),
                },
                format!("model '{model}' as of {at}"),
            )
        };
        // Event `seq` is later than `at` (the state's last change is).
        let last = self.last_event_at_or_before(&model, live.seq(), at).await?;
        if last == 0 {
            return Err(not_yet());
        }
        // A state folded before, as near as a kept checkpoint is sure to be.
        let cached = self
            .inner
            .as_of
            .nearest(&model, last)
            .filter(|c| last - c.seq() <= last / 128 + every);
        if let Some(c) = &cached
            && c.seq() == last
        {
            return Ok(ModelState::clone(c));
        }
        let base = match cached {
            Some(c) => Some(ModelState::clone(&c)),
            // A checkpoint can only help when a replay would read at least one
            // checkpoint interval; otherwise reading it costs more than it saves.
            None if every > 0 && last >= every => self
                // The segments it has in common with the live state (most,
                // far back) are taken from it, not read again: read, checked
                // and decoded once for both.
                .load_checkpoint_at_or_before(&model, last, &live)
                .await
                .filter(|base| base.updated_at() <= at),
            None => None,
        };
        let folded = self
            .fold_from(&model, base, Some(at), None)
            .await
            .map_err(|e| match e {
                Error::NotFound {
                    missing: Missing::Model { .. },
                    ..
                } => not_yet(),
                e => e,
            })?;
        // Kept with its records shared with the live state where they are
        // equal (most of them), so it costs pointers, not a copy of the model.
        // Comparing the records takes longer than the fold (~5 µs each), so a
        // background task does it after this call returns; a state decoded
        // from a checkpoint shares no record with the live one until then.
        let kept = folded.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let shared = blocking(move || {
                let mut kept = kept;
                kept.share_records_with(&live);
                Arc::new(kept)
            })
            .await;
            if let Ok(shared) = shared {
                this.inner.as_of.put(shared);
            }
        });
        Ok(folded)
    }

    /// Resolves a reference as it resolved at time `at`: which version was in
    /// production, held an alias, or was the latest at that moment.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let me = registry.acting_as(Actor::new("alice")?);
    /// me.create_model("fraud", CreateModel::new()).await?;
    /// for weights in ["v1", "v2"] {
    ///     let v = me.register("fraud", ArtifactSource::bytes("m.bin", weights)?, NewVersion::new()).await?;
    ///     for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
    ///         me.transition(&v, stage, "").await?;
    ///     }
    /// }
    /// let history = registry.history("fraud", &HistoryFilter::new().kind("stage_changed")).await?;
    /// let first_promotion = history.iter().rev().find(|e| matches!(e.kind, EventKind::StageChanged { to: Stage::Production, .. })).unwrap();
    /// let then = registry.resolve_as_of("fraud@production", first_promotion.time).await?;
    /// let now = registry.resolve("fraud@production").await?;
    /// assert_eq!((then.number.get(), now.number.get()), (1, 2));
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn resolve_as_of(
        &self,
        reference: impl IntoVersionRef,
        at: DateTime<Utc>,
    ) -> Result<VersionRecord> {
        let r = reference.into_version_ref()?;
        let state = self.model_as_of(&r.model, at).await?;
        state.resolve(&r.selector).cloned().map_err(|_| {
            Error::missing(
                crate::error::Missing::Version {
                    model: r.model.to_string(),
                    reference: r.to_string(),
                },
                format!("version {r} as of {at}"),
            )
        })
    }

    /// Runs the stored and in-process gates for moving `v` to `to`; every verdict
    /// if all pass, [`Error::GateRejected`] listing the failures otherwise.
    fn run_gates(
        &self,
        s: &ModelState,
        v: &VersionRecord,
        to: Stage,
        requester: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Vec<GateVerdict>> {
        let verdicts = self.gate_verdicts(s, v, to, requester, at);
        let failed: Vec<GateVerdict> = verdicts.iter().filter(|v| !v.passed).cloned().collect();
        if failed.is_empty() {
            Ok(verdicts)
        } else {
            Err(Error::GateRejected {
                model: s.name().to_string(),
                version: v.number.get(),
                to,
                failed,
            })
        }
    }

    /// Every gate's verdict on moving `v` to `to`: the model's stored gates for
    /// `to`, then this registry's in-process ones, in that order.
    fn gate_verdicts(
        &self,
        s: &ModelState,
        v: &VersionRecord,
        to: Stage,
        requester: &Actor,
        at: DateTime<Utc>,
    ) -> Vec<GateVerdict> {
        let t = Transition {
            candidate: v,
            from: v.stage,
            to,
            requester,
            at,
            state: s,
        };
        let stored = s.gates().get(&to).into_iter().flatten();
        let stored = stored.map(|g| g as &dyn Gate);
        let local = self
            .inner
            .gates
            .get(&(s.name().clone(), to))
            .into_iter()
            .flatten()
            .map(|g| g.as_ref());
        stored
            .chain(local)
            .map(|g| {
                let (passed, reason) = match g.check(&t) {
                    Ok(why) => (true, why),
                    Err(why) => (false, why),
                };
                GateVerdict {
                    gate: g.name(),
                    passed,
                    reason,
                }
            })
            .collect()
    }
}

/// Records what a command decided on at its first attempt; on a retry, fails with
/// [`Error::ConcurrentChange`] (described by `what`) if it has changed since.
fn pin<T: PartialEq + Copy>(
    s: &ModelState,
    basis: &mut Option<T>,
    now: T,
    what: impl FnOnce(T, T) -> String,
) -> Result<()> {
    match *basis {
        None => {
            *basis = Some(now);
            Ok(())
        }
        Some(then) if then == now => Ok(()),
        Some(then) => Err(Error::ConcurrentChange {
            model: s.name().to_string(),
            what: what(then, now),
        }),
    }
}

fn production_changed(then: Option<VersionNumber>, now: Option<VersionNumber>) -> String {
    format!(
        "the production version (was {}, now {})",
        show(then),
        show(now)
    )
}

fn show(v: Option<VersionNumber>) -> String {
    v.map_or_else(|| "none".into(), |n| n.to_string())
}

/// Refuses with [`Error::InvalidTransition`] a move of `v` (a version of `s`)
/// to `to` that the stage table does not allow.
fn allowed_move(s: &ModelState, v: &VersionRecord, to: Stage) -> Result<()> {
    let from = v.stage;
    if from.can_move_to(to) {
        return Ok(());
    }
    Err(Error::InvalidTransition {
        model: s.name().to_string(),
        version: v.number.get(),
        from,
        to,
        allowed: from.allowed_targets().to_vec(),
    })
}
