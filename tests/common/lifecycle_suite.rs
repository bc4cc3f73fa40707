//! The lifecycle's behaviour, written once: stages and the transition table,
//! gates, approvals, rollback, aliases, the audit trail, time travel and racing
//! promotions.
//!
//! Every `pub async fn` here taking a [`Fixture`] is a test:
//! `tests/registry_behaviour.rs` instantiates each one for every backend. Every
//! assertion names exact values and exact error variants; a refused command is
//! checked to have changed nothing (same event count, same state).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use modelreg::format::decode_checkpoint;
use modelreg::store::{Checkpoint, LogRecord, MetadataItem, MetadataStore};
use modelreg::{
    Actor, AliasName, AliasTarget, Approval, ArtifactSource, Baseline, CodeRef, DatasetRef,
    DatasetRole, Decision, Error, Event, EventKind, Gate, GateSpec, GateVerdict, HistoryFilter,
    MetricSpec, Metrics, ModelName, ModelState, NewVersion, Provenance, Registry, SetAlias, Stage,
    Transition, VersionRecord,
};

use super::backends::Fixture;
use super::registry_suite::{actor, create, event_count, key, num, register_bytes, register_with};

// ----- helpers -------------------------------------------------------------------

/// The transition table as the lifecycle is specified, written out independently
/// of [`Stage::allowed_targets`].
pub const TABLE: [(Stage, &[Stage]); 5] = [
    (Stage::None, &[Stage::Staging, Stage::Archived]),
    (Stage::Staging, &[Stage::Validation, Stage::Archived]),
    (
        Stage::Validation,
        &[Stage::Production, Stage::Staging, Stage::Archived],
    ),
    (Stage::Production, &[Stage::Archived]),
    (Stage::Archived, &[Stage::Staging]),
];

/// The legal moves that bring a version in `none` to `stage`.
pub fn path_to(stage: Stage) -> &'static [Stage] {
    match stage {
        Stage::None => &[],
        Stage::Staging => &[Stage::Staging],
        Stage::Validation => &[Stage::Staging, Stage::Validation],
        Stage::Production => &[Stage::Staging, Stage::Validation, Stage::Production],
        Stage::Archived => &[Stage::Archived],
    }
}

/// Moves version `n` of `model` (in `none`) to `stage` through legal moves, as
/// `mover`, and checks it got there.
pub async fn bring_to(reg: &Registry, model: &str, n: u64, stage: Stage) {
    for &s in path_to(stage) {
        reg.acting_as(actor("mover"))
            .transition(format!("{model}/{n}"), s, "setup")
            .await
            .unwrap_or_else(|e| panic!("move {model}/{n} to {s}: {e}"));
    }
    assert_eq!(stage_of(reg, model, n).await, stage);
}

/// The stage of version `n` of `model`.
pub async fn stage_of(reg: &Registry, model: &str, n: u64) -> Stage {
    reg.resolve(format!("{model}/{n}"))
        .await
        .unwrap_or_else(|e| panic!("resolve {model}/{n}: {e}"))
        .stage
}

/// The number of the version of `model` in production, after checking that no two
/// versions are there and that the state's production pointer agrees.
pub async fn in_production(reg: &Registry, model: &str) -> Option<u64> {
    let state = reg.model(model).await.expect("model");
    let prod: Vec<u64> = state
        .versions()
        .iter()
        .filter(|v| v.stage == Stage::Production)
        .map(|v| v.number.get())
        .collect();
    assert!(prod.len() <= 1, "several versions in production: {prod:?}");
    assert_eq!(
        state.production().map(|v| v.number.get()),
        prod.first().copied()
    );
    prod.first().copied()
}

/// The event count and state of `model`, to prove that a refused command changed
/// nothing.
pub async fn snapshot(reg: &Registry, model: &str) -> (usize, ModelState) {
    (
        event_count(reg, model).await,
        reg.model(model).await.expect("model"),
    )
}

/// A gate verdict.
pub fn verdict(gate: &str, passed: bool, reason: &str) -> GateVerdict {
    GateVerdict {
        gate: gate.to_owned(),
        passed,
        reason: reason.to_owned(),
    }
}

/// Checks that `result` is `GateRejected` for `model`/`version` moving to `to`,
/// and returns the failed verdicts it lists.
pub fn refused(
    result: Result<Event, Error>,
    model: &str,
    version: u64,
    to: Stage,
) -> Vec<GateVerdict> {
    let e = assert_err!(result, Error::GateRejected { .. });
    let Error::GateRejected {
        model: m,
        version: v,
        to: t,
        failed,
    } = e
    else {
        unreachable!("matched above")
    };
    assert_eq!((m.as_str(), v, t), (model, version, to));
    assert!(
        failed.iter().all(|f| !f.passed),
        "a passed gate is listed as failed: {failed:?}"
    );
    failed
}

/// Metrics from pairs.
pub fn metrics(pairs: &[(&str, f64)]) -> Metrics {
    pairs.iter().fold(Metrics::new(), |m, (k, v)| {
        m.with(k, *v).expect("valid metric")
    })
}

/// A version by `ci` with `metrics`.
pub fn with_metrics(pairs: &[(&str, f64)]) -> NewVersion {
    NewVersion::new().metrics(metrics(pairs))
}

/// Provenance with a code commit (`abc123`) and `datasets` training datasets.
pub fn provenance(code: bool, datasets: usize) -> Provenance {
    Provenance {
        code: code.then(|| CodeRef {
            repository: None,
            commit: "abc123".into(),
            dirty: false,
        }),
        datasets: (0..datasets)
            .map(|i| DatasetRef::new(format!("transactions-{i}"), DatasetRole::Train))
            .collect(),
        ..Provenance::default()
    }
}

/// An alias name.
pub fn alias(name: &str) -> AliasName {
    AliasName::new(name).expect("valid alias")
}

/// The reason a `min_time_in_stage` gate gives, with the seconds it counted
/// (`12s in staging`) replaced by `N` (they depend on how fast the machine is).
/// Other reasons are returned as they are.
pub fn without_seconds(reason: &str) -> String {
    let Some(end) = reason.find("s in ") else {
        return reason.to_owned();
    };
    let start = reason[..end]
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .len();
    if start == end {
        return reason.to_owned();
    }
    format!("{}N{}", &reason[..start], &reason[end..])
}

/// An in-process gate whose verdict the test sets, and which records every
/// transition it is asked about.
#[derive(Debug)]
pub struct ScriptedGate {
    name: String,
    verdict: Mutex<Result<String, String>>,
    seen: Mutex<Vec<Seen>>,
}

/// What a [`ScriptedGate`] saw of one transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// The candidate's number.
    pub candidate: u64,
    /// Its stage.
    pub from: Stage,
    /// The stage requested.
    pub to: Stage,
    /// Who asked.
    pub requester: Actor,
    /// When the transition would happen.
    pub at: DateTime<Utc>,
    /// The production version in the state the gate was shown.
    pub production: Option<u64>,
}

impl ScriptedGate {
    /// A gate named `name` that passes with `why` until told otherwise.
    pub fn passing(name: &str, why: &str) -> Arc<ScriptedGate> {
        Arc::new(ScriptedGate {
            name: name.to_owned(),
            verdict: Mutex::new(Ok(why.to_owned())),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// A gate named `name` that refuses with `why` until told otherwise.
    pub fn refusing(name: &str, why: &str) -> Arc<ScriptedGate> {
        let g = ScriptedGate::passing(name, "");
        g.set(Err(why.to_owned()));
        g
    }

    /// Sets the verdict from now on.
    pub fn set(&self, verdict: Result<String, String>) {
        *self.verdict.lock().expect("not poisoned") = verdict;
    }

    /// Every transition checked so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Gate for ScriptedGate {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn check(&self, t: &Transition<'_>) -> Result<String, String> {
        self.seen.lock().expect("not poisoned").push(Seen {
            candidate: t.candidate.number.get(),
            from: t.from,
            to: t.to,
            requester: t.requester.clone(),
            at: t.at,
            production: t.state.production().map(|p| p.number.get()),
        });
        self.verdict.lock().expect("not poisoned").clone()
    }
}

// ----- the transition table ----------------------------------------------------------

/// For every (from, to) pair of stages, a version brought to `from` by legal moves
/// and then asked to move to `to` moves (one `stage_changed` event recording both
/// stages) exactly when the table allows it; otherwise the move is
/// `InvalidTransition` naming the allowed targets, and the log and state are
/// unchanged. Never two versions in production along the way.
pub async fn transition_table_is_enforced(f: &Fixture) {
    assert_eq!(Stage::ALL, TABLE.map(|(s, _)| s));
    for (from, targets) in TABLE {
        assert_eq!(from.allowed_targets(), targets, "targets from {from}");
    }

    let reg = f.registry();
    create(&reg, "table").await;
    let who = actor("alice");
    let mut n = 0;
    let mut moved = 0;
    for (from, targets) in TABLE {
        for to in Stage::ALL {
            n += 1;
            let v = register_bytes(&reg, "table", "m.bin", format!("{from} to {to}")).await;
            assert_eq!(v.number.get(), n);
            bring_to(&reg, "table", n, from).await;
            let (count, before) = snapshot(&reg, "table").await;
            let production = before.production().map(|p| p.number);
            let reason = format!("{from} to {to}");
            let result = reg
                .acting_as(who.clone())
                .transition(format!("table/{n}"), to, reason.clone())
                .await;
            let allowed = targets.contains(&to);
            assert_eq!(from.can_move_to(to), allowed, "{from} -> {to}");
            if allowed {
                let e = result.unwrap_or_else(|err| panic!("{from} -> {to}: {err}"));
                assert_eq!(e.seq, count as u64 + 1);
                assert_eq!(e.actor, who);
                assert_eq!(
                    e.kind,
                    EventKind::StageChanged {
                        version: num(n),
                        from,
                        to,
                        reason,
                        gates: vec![],
                        archived: if to == Stage::Production {
                            production
                        } else {
                            None
                        },
                    }
                );
                assert_eq!(stage_of(&reg, "table", n).await, to);
                assert_eq!(event_count(&reg, "table").await, count + 1);
                moved += 1;
            } else {
                let e = assert_err!(result, Error::InvalidTransition { .. });
                let msg = e.to_string();
                let Error::InvalidTransition {
                    model,
                    version,
                    from: f2,
                    to: t2,
                    allowed,
                } = e
                else {
                    unreachable!("matched above")
                };
                assert_eq!((model.as_str(), version, f2, t2), ("table", n, from, to));
                assert_eq!(allowed, targets.to_vec(), "{from} -> {to}");
                let names: Vec<&str> = targets.iter().map(|s| s.as_str()).collect();
                assert!(
                    msg.contains(&format!(
                        "allowed targets from {from} are {}",
                        names.join(", ")
                    )),
                    "{msg}"
                );
                assert_eq!(snapshot(&reg, "table").await, (count, before));
            }
            in_production(&reg, "table").await;
        }
    }
    assert_eq!(moved, 9);
    // Another process's view folds the same log to the same state.
    assert_eq!(
        f.fresh().await.model("table").await.expect("model"),
        reg.model("table").await.expect("model")
    );
}

/// Stage references resolve from the lifecycle: `@production` to the version in
/// production, `@staging`, `@validation` and `@archived` to the newest version in
/// that stage; with none there they are `NotFound`; `@none` is not a selector.
pub async fn stage_references_resolve(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "staged").await;
    for i in 1..=5 {
        register_bytes(&reg, "staged", "m.bin", format!("w{i}")).await;
    }
    for sel in ["production", "staging", "validation", "archived"] {
        assert_err!(
            reg.resolve(format!("staged@{sel}")).await,
            Error::NotFound { .. }
        );
    }
    assert_err!(
        reg.resolve("staged@none").await,
        Error::InvalidReference { .. }
    );
    bring_to(&reg, "staged", 1, Stage::Staging).await;
    bring_to(&reg, "staged", 2, Stage::Staging).await;
    bring_to(&reg, "staged", 3, Stage::Validation).await;
    bring_to(&reg, "staged", 4, Stage::Production).await;
    bring_to(&reg, "staged", 5, Stage::Archived).await;
    let n = |r: Result<VersionRecord, Error>| r.expect("resolves").number.get();
    assert_eq!(n(reg.resolve("staged@staging").await), 2);
    assert_eq!(n(reg.resolve("staged@validation").await), 3);
    assert_eq!(n(reg.resolve("staged@production").await), 4);
    assert_eq!(n(reg.resolve("staged@archived").await), 5);
    // A transition by stage reference moves the version it resolves to.
    reg.acting_as(actor("bob"))
        .transition("staged@staging", Stage::Validation, "")
        .await
        .expect("move");
    assert_eq!(stage_of(&reg, "staged", 2).await, Stage::Validation);
    assert_eq!(n(reg.resolve("staged@staging").await), 1);
    assert_eq!(n(reg.resolve("staged@validation").await), 3);
}

// ----- production ------------------------------------------------------------------

/// Promoting v2 while v1 is in production archives v1 in the same event
/// (`archived: Some(1)`); `@production` resolves to v2; never two versions in
/// production. Archiving the production version directly leaves none.
pub async fn promotion_archives_the_previous_production_version(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fraud").await;
    for i in 1..=3 {
        register_bytes(&reg, "fraud", "m.bin", format!("w{i}")).await;
    }
    let who = actor("alice");
    bring_to(&reg, "fraud", 1, Stage::Validation).await;
    let e1 = reg
        .acting_as(who.clone())
        .promote("fraud/1", "first")
        .await
        .expect("promote");
    assert!(
        matches!(
            e1.kind,
            EventKind::StageChanged {
                to: Stage::Production,
                archived: None,
                ..
            }
        ),
        "{e1:?}"
    );
    assert_eq!(in_production(&reg, "fraud").await, Some(1));

    bring_to(&reg, "fraud", 2, Stage::Validation).await;
    let count = event_count(&reg, "fraud").await;
    let e2 = reg
        .acting_as(who.clone())
        .promote("fraud/2", "better")
        .await
        .expect("promote");
    assert_eq!(
        e2.kind,
        EventKind::StageChanged {
            version: num(2),
            from: Stage::Validation,
            to: Stage::Production,
            reason: "better".into(),
            gates: vec![],
            archived: Some(num(1)),
        }
    );
    // One event did both.
    assert_eq!(event_count(&reg, "fraud").await, count + 1);
    assert_eq!(
        reg.resolve("fraud@production")
            .await
            .expect("resolve")
            .number,
        num(2)
    );
    let state = reg.model("fraud").await.expect("model");
    let v1 = state.version(num(1)).expect("v1");
    let v2 = state.version(num(2)).expect("v2");
    assert_eq!((v1.stage, v1.stage_since), (Stage::Archived, Some(e2.time)));
    assert_eq!(
        (v2.stage, v2.stage_since),
        (Stage::Production, Some(e2.time))
    );
    assert_eq!(state.production_history(), [num(1), num(2)]);
    assert_eq!(state.rollback_target(), Some(num(1)));
    assert_eq!(in_production(&reg, "fraud").await, Some(2));

    // Promoting by stage reference, seen from another registry.
    bring_to(&reg, "fraud", 3, Stage::Validation).await;
    let other = f.fresh().await;
    let e3 = other
        .acting_as(who.clone())
        .promote("fraud@validation", "")
        .await
        .expect("promote");
    assert!(
        matches!(e3.kind, EventKind::StageChanged { version, archived: Some(old), .. } if version == num(3) && old == num(2)),
        "{e3:?}"
    );
    let stages: Vec<Stage> = reg
        .model("fraud")
        .await
        .expect("model")
        .versions()
        .iter()
        .map(|v| v.stage)
        .collect();
    assert_eq!(
        stages,
        [Stage::Archived, Stage::Archived, Stage::Production]
    );
    assert_eq!(in_production(&other, "fraud").await, Some(3));

    // Leaving production directly: no version is in production any more.
    let e4 = reg
        .acting_as(who.clone())
        .transition("fraud/3", Stage::Archived, "retired")
        .await
        .expect("archive");
    assert!(
        matches!(e4.kind, EventKind::StageChanged { archived: None, .. }),
        "{e4:?}"
    );
    assert_eq!(in_production(&reg, "fraud").await, None);
    assert_err!(
        reg.resolve("fraud@production").await,
        Error::NotFound { .. }
    );
    let state = reg.model("fraud").await.expect("model");
    assert_eq!(state.production_history(), [num(1), num(2), num(3)]);
    assert_eq!(state.rollback_target(), None);
}

/// Every transition event records who, when (between the call's start and end),
/// from, to, the reason and every gate's verdict; the event in the log is the one
/// returned, and another registry reads it back identically.
pub async fn transition_events_record_everything(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "audit").await;
    let alice = actor("alice");
    reg.acting_as(alice.clone())
        .set_gates(
            "audit",
            Stage::Staging,
            vec![
                GateSpec::ProvenanceComplete,
                GateSpec::MinTimeInStage { seconds: 0 },
            ],
        )
        .await
        .expect("gates");
    register_with(
        &reg,
        "audit",
        "m.bin",
        "w",
        NewVersion::new().provenance(provenance(true, 2)),
    )
    .await;

    let bob = actor("bob");
    let before = Utc::now();
    let e = reg
        .acting_as(bob.clone())
        .transition("audit/1", Stage::Staging, "ready for staging")
        .await
        .expect("move");
    let after = Utc::now();
    assert_eq!(e.seq, 4);
    assert_eq!(e.model.as_str(), "audit");
    assert_eq!(e.actor, bob);
    assert!(
        before <= e.time && e.time <= after,
        "{before} {e:?} {after}"
    );
    let EventKind::StageChanged {
        version,
        from,
        to,
        reason,
        gates,
        archived,
    } = &e.kind
    else {
        panic!("expected stage_changed, got {e:?}")
    };
    assert_eq!(
        (*version, *from, *to, reason.as_str(), *archived),
        (
            num(1),
            Stage::None,
            Stage::Staging,
            "ready for staging",
            None
        )
    );
    assert_eq!(gates.len(), 2, "{gates:?}");
    assert_eq!(
        gates[0],
        verdict(
            "provenance_complete",
            true,
            "code abc123 and 2 dataset(s) recorded"
        )
    );
    assert_eq!(
        (
            gates[1].gate.as_str(),
            gates[1].passed,
            without_seconds(&gates[1].reason).as_str()
        ),
        ("min_time_in_stage(0s)", true, "Ns in none")
    );

    let events = reg.events("audit").await.expect("events");
    assert_eq!(events.last(), Some(&e));
    assert_eq!(
        f.fresh().await.events("audit").await.expect("events"),
        events
    );
    let v = reg.resolve("audit/1").await.expect("resolve");
    assert_eq!((v.stage, v.stage_since), (Stage::Staging, Some(e.time)));

    // A move with no gates for its target records none, and keeps the reason.
    let e = reg
        .acting_as(alice.clone())
        .transition("audit/1", Stage::Validation, "")
        .await
        .expect("move");
    assert_eq!(
        e.kind,
        EventKind::StageChanged {
            version: num(1),
            from: Stage::Staging,
            to: Stage::Validation,
            reason: String::new(),
            gates: vec![],
            archived: None,
        }
    );
    assert_eq!(e.actor, alice);
}

// ----- gates ---------------------------------------------------------------------------

/// `metrics_no_worse(production)`: passes with no baseline; compares every metric
/// with a spec, honouring goal and tolerance (a change exactly at the tolerance
/// passes); a metric without a spec is ignored; a candidate missing a compared
/// metric fails; every failing metric is named. The baseline follows production.
pub async fn metrics_no_worse_against_production(f: &Fixture) {
    let reg = f.registry();
    let alice = actor("alice");
    reg.acting_as(alice.clone())
        .create_model(
            "scored",
            modelreg::CreateModel::new()
                .metric("auc", MetricSpec::maximize().with_tolerance(0.125))
                .metric("latency", MetricSpec::minimize().with_tolerance(5.0))
                .metric("loss", MetricSpec::minimize()),
        )
        .await
        .expect("create");
    let gate = GateSpec::MetricsNoWorse {
        against: Baseline::Production,
        metrics: vec![],
    };
    reg.acting_as(alice.clone())
        .set_gates("scored", Stage::Production, vec![gate.clone()])
        .await
        .expect("gates");
    assert_eq!(gate.name(), "metrics_no_worse(production)");
    let name = "metrics_no_worse(production)";
    let versions: [&[(&str, f64)]; 6] = [
        // v1: the first production version.
        &[
            ("auc", 0.75),
            ("latency", 10.0),
            ("loss", 0.5),
            ("extra", 1.0),
        ],
        // v2: auc worse by exactly its tolerance, latency within its tolerance.
        &[
            ("auc", 0.625),
            ("latency", 15.0),
            ("loss", 0.5),
            ("extra", 0.0),
        ],
        // v3: auc worse beyond its tolerance.
        &[("auc", 0.5), ("latency", 10.0), ("loss", 0.5)],
        // v4: latency beyond its tolerance and loss worse with none.
        &[("auc", 0.75), ("latency", 16.0), ("loss", 0.625)],
        // v5: no auc at all.
        &[("latency", 10.0), ("loss", 0.5)],
        // v6: better on every metric: higher auc, lower latency and loss.
        &[("auc", 1.0), ("latency", 1.0), ("loss", 0.0)],
    ];
    for (i, m) in versions.iter().enumerate() {
        register_with(&reg, "scored", "m.bin", format!("w{i}"), with_metrics(m)).await;
        bring_to(&reg, "scored", i as u64 + 1, Stage::Validation).await;
    }

    let e = reg
        .acting_as(alice.clone())
        .promote("scored/1", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, .. }
            if *gates == [verdict(name, true, "no baseline version to compare with")]),
        "{e:?}"
    );

    let refusals = [
        (
            3,
            "auc: 0.5 vs 0.75 in v1 is worse by 0.250000 (tolerance 0.125)",
        ),
        (
            4,
            "latency: 16 vs 10 in v1 is worse by 6.000000 (tolerance 5); \
             loss: 0.625 vs 0.5 in v1 is worse by 0.125000 (tolerance 0)",
        ),
        (5, "auc: missing (baseline v1 has 0.75)"),
    ];
    for (n, why) in refusals {
        let before = snapshot(&reg, "scored").await;
        let failed = refused(
            reg.acting_as(alice.clone())
                .promote(format!("scored/{n}"), "")
                .await,
            "scored",
            n,
            Stage::Production,
        );
        assert_eq!(failed, [verdict(name, false, why)], "v{n}");
        assert_eq!(snapshot(&reg, "scored").await, before, "v{n}");
    }
    assert_eq!(in_production(&reg, "scored").await, Some(1));

    // Better everywhere passes; so does worse within tolerance.
    let e = reg
        .acting_as(alice.clone())
        .promote("scored/6", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, archived: Some(old), .. }
            if *old == num(1) && *gates == [verdict(name, true, "against v1: auc 1 vs 0.75, latency 1 vs 10, loss 0 vs 0.5")]),
        "{e:?}"
    );
    reg.acting_as(alice.clone())
        .rollback("scored", "undo")
        .await
        .expect("rollback");
    let e = reg
        .acting_as(alice.clone())
        .promote("scored/2", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, archived: Some(old), .. }
            if *old == num(1) && *gates == [verdict(name, true, "against v1: auc 0.625 vs 0.75, latency 15 vs 10, loss 0.5 vs 0.5")]),
        "{e:?}"
    );

    // The baseline is now v2, against which v3's auc is within tolerance.
    let e = reg
        .acting_as(alice.clone())
        .promote("scored/3", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, archived: Some(old), .. }
            if *old == num(2) && *gates == [verdict(name, true, "against v2: auc 0.5 vs 0.625, latency 10 vs 15, loss 0.5 vs 0.5")]),
        "{e:?}"
    );
    assert_eq!(in_production(&reg, "scored").await, Some(3));
}

/// `metrics_no_worse(@alias)` compares with the version the alias points at, not
/// with production; passes while the alias is unset and when the candidate is
/// the baseline; with `metrics` given, compares only those, and a named metric
/// without a spec fails.
pub async fn metrics_no_worse_against_an_alias(f: &Fixture) {
    let reg = f.registry();
    let alice = actor("alice");
    reg.acting_as(alice.clone())
        .create_model(
            "aliased",
            modelreg::CreateModel::new()
                .metric("auc", MetricSpec::maximize())
                .metric("latency", MetricSpec::minimize()),
        )
        .await
        .expect("create");
    let against = Baseline::Alias(alias("champion"));
    let gate = GateSpec::MetricsNoWorse {
        against: against.clone(),
        metrics: vec![],
    };
    let name = "metrics_no_worse(@champion)";
    assert_eq!(gate.name(), name);
    reg.acting_as(alice.clone())
        .set_gates("aliased", Stage::Validation, vec![gate])
        .await
        .expect("gates");
    let aucs = [0.75, 0.5, 0.875, 0.25, 0.125];
    for (i, auc) in aucs.iter().enumerate() {
        register_with(
            &reg,
            "aliased",
            "m.bin",
            format!("w{i}"),
            with_metrics(&[("auc", *auc), ("latency", 10.0)]),
        )
        .await;
        bring_to(&reg, "aliased", i as u64 + 1, Stage::Staging).await;
    }
    let validate = |n: u64| {
        let reg = reg.clone();
        let alice = alice.clone();
        async move {
            reg.acting_as(alice.clone())
                .transition(format!("aliased/{n}"), Stage::Validation, "")
                .await
        }
    };
    let passed_with = |e: &Event| match &e.kind {
        EventKind::StageChanged { gates, .. } => gates.clone(),
        other => panic!("expected stage_changed, got {other:?}"),
    };

    // No alias yet: no baseline. v4 (the worst) goes all the way to production.
    let e = validate(4).await.expect("validate");
    assert_eq!(
        passed_with(&e),
        [verdict(name, true, "no baseline version to compare with")]
    );
    reg.acting_as(alice.clone())
        .promote("aliased/4", "")
        .await
        .expect("promote");

    let champion = |n: u64| {
        let reg = reg.clone();
        let alice = alice.clone();
        async move {
            reg.acting_as(alice.clone())
                .set_alias(format!("aliased/{n}"), "champion", SetAlias::new())
                .await
                .expect("set alias");
        }
    };
    champion(1).await;
    // v2 beats production (v4) but not the champion (v1).
    let before = snapshot(&reg, "aliased").await;
    assert_eq!(
        refused(validate(2).await, "aliased", 2, Stage::Validation),
        [verdict(
            name,
            false,
            "auc: 0.5 vs 0.75 in v1 is worse by 0.250000 (tolerance 0)"
        )]
    );
    assert_eq!(snapshot(&reg, "aliased").await, before);
    let e = validate(3).await.expect("validate");
    assert_eq!(
        passed_with(&e),
        [verdict(
            name,
            true,
            "against v1: auc 0.875 vs 0.75, latency 10 vs 10"
        )]
    );

    // Moving the alias moves the baseline.
    champion(3).await;
    assert_eq!(
        refused(validate(2).await, "aliased", 2, Stage::Validation),
        [verdict(
            name,
            false,
            "auc: 0.5 vs 0.875 in v3 is worse by 0.375000 (tolerance 0)"
        )]
    );
    champion(2).await;
    let e = validate(2).await.expect("validate");
    assert_eq!(
        passed_with(&e),
        [verdict(name, true, "the candidate is the baseline")]
    );

    // Only latency compared: v5's poor auc no longer matters; a metric without a
    // spec cannot be compared and fails.
    reg.acting_as(alice.clone())
        .set_gates(
            "aliased",
            Stage::Validation,
            vec![GateSpec::MetricsNoWorse {
                against: against.clone(),
                metrics: vec![key("latency"), key("throughput")],
            }],
        )
        .await
        .expect("gates");
    assert_eq!(
        refused(validate(5).await, "aliased", 5, Stage::Validation),
        [verdict(
            name,
            false,
            "throughput: the model has no metric spec for it"
        )]
    );
    reg.acting_as(alice.clone())
        .set_gates(
            "aliased",
            Stage::Validation,
            vec![GateSpec::MetricsNoWorse {
                against,
                metrics: vec![key("latency")],
            }],
        )
        .await
        .expect("gates");
    let e = validate(5).await.expect("validate");
    assert_eq!(
        passed_with(&e),
        [verdict(name, true, "against v2: latency 10 vs 10")]
    );
}

/// `approvals(n)`: distinct approvers for this version and target stage; the
/// requester's own approval does not count; approving twice counts once;
/// approvals for another stage do not count; the latest decision of each approver
/// wins; a standing rejection refuses even with enough approvals; with `from`,
/// only those approvers count (approvals and rejections alike).
pub async fn approvals_gate(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "approved").await;
    let (alice, bob, carol, dave, erin) = (
        actor("alice"),
        actor("bob"),
        actor("carol"),
        actor("dave"),
        actor("erin"),
    );
    let gate = GateSpec::Approvals {
        required: 2,
        from: BTreeSet::new(),
    };
    assert_eq!(gate.name(), "approvals(2)");
    reg.acting_as(alice.clone())
        .set_gates("approved", Stage::Production, vec![gate])
        .await
        .expect("gates");
    for i in 1..=2 {
        register_bytes(&reg, "approved", "m.bin", format!("w{i}")).await;
        bring_to(&reg, "approved", i, Stage::Validation).await;
    }
    let attempt = |who: &Actor| {
        let reg = reg.clone();
        let who = who.clone();
        async move {
            refused(
                reg.acting_as(who.clone()).promote("approved/1", "").await,
                "approved",
                1,
                Stage::Production,
            )
        }
    };
    let approvals = |why: &str| vec![verdict("approvals(2)", false, why)];

    assert_eq!(attempt(&alice).await, approvals("0 of 2 approvals"));
    let approve = |n: u64, stage: Stage, who: &Actor| {
        let reg = reg.clone();
        let who = who.clone();
        async move {
            reg.acting_as(who.clone())
                .approve(format!("approved/{n}"), stage, "")
                .await
                .expect("approve");
        }
    };
    approve(1, Stage::Production, &alice).await;
    approve(1, Stage::Production, &bob).await;
    approve(1, Stage::Production, &bob).await;
    // Approvals of another stage or version do not count.
    approve(1, Stage::Staging, &carol).await;
    approve(2, Stage::Production, &carol).await;
    assert_eq!(attempt(&alice).await, approvals("1 of 2 approvals (bob)"));
    assert_eq!(attempt(&bob).await, approvals("1 of 2 approvals (alice)"));

    reg.acting_as(carol.clone())
        .reject("approved/1", Stage::Production, "bias not checked")
        .await
        .expect("reject");
    approve(1, Stage::Production, &dave).await;
    let before = snapshot(&reg, "approved").await;
    assert_eq!(
        attempt(&alice).await,
        approvals("rejected by carol (bias not checked)")
    );
    assert_eq!(snapshot(&reg, "approved").await, before);

    // carol changes her mind: her latest decision counts.
    approve(1, Stage::Production, &carol).await;
    let e = reg
        .acting_as(alice.clone())
        .promote("approved/1", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, .. }
            if *gates == [verdict("approvals(2)", true, "approved by bob, carol, dave")]),
        "{e:?}"
    );

    // Only erin counts now; bob's approval and rejection are ignored.
    let gate = GateSpec::Approvals {
        required: 1,
        from: BTreeSet::from([erin.clone()]),
    };
    assert_eq!(gate.name(), "approvals(1)");
    reg.acting_as(alice.clone())
        .set_gates("approved", Stage::Production, vec![gate])
        .await
        .expect("gates");
    approve(2, Stage::Production, &bob).await;
    assert_eq!(
        refused(
            reg.acting_as(alice.clone()).promote("approved/2", "").await,
            "approved",
            2,
            Stage::Production
        ),
        [verdict("approvals(1)", false, "0 of 1 approvals")]
    );
    approve(2, Stage::Production, &erin).await;
    reg.acting_as(bob.clone())
        .reject("approved/2", Stage::Production, "no")
        .await
        .expect("reject");
    let e = reg
        .acting_as(alice.clone())
        .promote("approved/2", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, archived: Some(old), .. }
            if *old == num(1) && *gates == [verdict("approvals(1)", true, "approved by erin")]),
        "{e:?}"
    );

    // Approvals are per target stage: for a move into validation, only approvals
    // of validation count.
    reg.acting_as(alice.clone())
        .set_gates(
            "approved",
            Stage::Validation,
            vec![GateSpec::Approvals {
                required: 1,
                from: BTreeSet::new(),
            }],
        )
        .await
        .expect("gates");
    register_bytes(&reg, "approved", "m.bin", "w3").await;
    bring_to(&reg, "approved", 3, Stage::Staging).await;
    approve(3, Stage::Production, &bob).await;
    approve(3, Stage::Staging, &carol).await;
    assert_eq!(
        refused(
            reg.acting_as(alice.clone())
                .transition("approved/3", Stage::Validation, "")
                .await,
            "approved",
            3,
            Stage::Validation
        ),
        [verdict("approvals(1)", false, "0 of 1 approvals")]
    );
    approve(3, Stage::Validation, &dave).await;
    let e = reg
        .acting_as(alice.clone())
        .transition("approved/3", Stage::Validation, "")
        .await
        .expect("move");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, .. }
            if *gates == [verdict("approvals(1)", true, "approved by dave")]),
        "{e:?}"
    );
}

/// `provenance_complete` needs a code commit and at least one dataset;
/// `min_time_in_stage` counts from when the version entered its current stage
/// (not from its registration): 0 seconds always passes, an hour refuses.
pub async fn provenance_and_time_in_stage_gates(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "prov").await;
    let alice = actor("alice");
    reg.acting_as(alice.clone())
        .set_gates("prov", Stage::Staging, vec![GateSpec::ProvenanceComplete])
        .await
        .expect("gates");
    let cases = [
        ((false, 0), Err("no code commit recorded")),
        ((true, 0), Err("no dataset recorded")),
        ((false, 2), Err("no code commit recorded")),
        ((true, 1), Ok("code abc123 and 1 dataset(s) recorded")),
        ((true, 3), Ok("code abc123 and 3 dataset(s) recorded")),
    ];
    for (i, ((code, datasets), expected)) in cases.into_iter().enumerate() {
        let n = i as u64 + 1;
        let v = NewVersion::new().provenance(provenance(code, datasets));
        register_with(&reg, "prov", "m.bin", format!("w{n}"), v).await;
        let before = snapshot(&reg, "prov").await;
        let result = reg
            .acting_as(alice.clone())
            .transition(format!("prov/{n}"), Stage::Staging, "")
            .await;
        match expected {
            Ok(why) => {
                let e = result.unwrap_or_else(|e| panic!("v{n}: {e}"));
                assert!(
                    matches!(&e.kind, EventKind::StageChanged { gates, .. }
                        if *gates == [verdict("provenance_complete", true, why)]),
                    "v{n}: {e:?}"
                );
            }
            Err(why) => {
                assert_eq!(
                    refused(result, "prov", n, Stage::Staging),
                    [verdict("provenance_complete", false, why)],
                    "v{n}"
                );
                assert_eq!(snapshot(&reg, "prov").await, before, "v{n}");
            }
        }
    }

    // Time in stage, for moves into validation.
    let set_min = |seconds: u64| {
        let reg = reg.clone();
        let alice = alice.clone();
        async move {
            reg.acting_as(alice.clone())
                .set_gates(
                    "prov",
                    Stage::Validation,
                    vec![GateSpec::MinTimeInStage { seconds }],
                )
                .await
                .expect("gates");
        }
    };
    set_min(3600).await;
    let before = snapshot(&reg, "prov").await;
    let failed = refused(
        reg.acting_as(alice.clone())
            .transition("prov/4", Stage::Validation, "")
            .await,
        "prov",
        4,
        Stage::Validation,
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].gate, "min_time_in_stage(3600s)");
    assert_eq!(
        without_seconds(&failed[0].reason),
        "only Ns in staging, 3600s required"
    );
    assert_eq!(snapshot(&reg, "prov").await, before);

    set_min(0).await;
    let e = reg
        .acting_as(alice.clone())
        .transition("prov/4", Stage::Validation, "")
        .await
        .expect("move");
    let EventKind::StageChanged { gates, .. } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(gates.len(), 1, "{gates:?}");
    assert_eq!(
        (
            gates[0].gate.as_str(),
            gates[0].passed,
            without_seconds(&gates[0].reason).as_str()
        ),
        ("min_time_in_stage(0s)", true, "Ns in staging")
    );

    // v5 was registered a while ago but entered staging just now: one second in
    // staging is not there yet; after waiting it is.
    set_min(1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = reg
        .acting_as(alice.clone())
        .transition("prov/5", Stage::Archived, "")
        .await
        .expect("archive");
    reg.acting_as(alice.clone())
        .transition("prov/5", Stage::Staging, "")
        .await
        .expect("back to staging");
    let failed = refused(
        reg.acting_as(alice.clone())
            .transition("prov/5", Stage::Validation, "")
            .await,
        "prov",
        5,
        Stage::Validation,
    );
    assert_eq!(
        failed,
        [verdict(
            "min_time_in_stage(1s)",
            false,
            "only 0s in staging, 1s required"
        )]
    );
    // Registered over a second before: counting from registration would pass.
    let created = reg.resolve("prov/5").await.expect("v5").created_at;
    assert!(e.time - created >= TimeDelta::seconds(1), "{created} {e:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reg.acting_as(alice.clone())
        .transition("prov/5", Stage::Validation, "")
        .await
        .expect("a second in staging has passed");
}

/// When several gates refuse at once, `GateRejected` lists every one that failed,
/// stored gates first in their order and then in-process ones, each with its
/// reason, and none that passed; nothing changes, as seen from this registry and
/// from another.
pub async fn every_failed_gate_is_reported(f: &Fixture) {
    let reg = f.registry();
    let alice = actor("alice");
    reg.acting_as(alice.clone())
        .create_model(
            "strict",
            modelreg::CreateModel::new().metric("auc", MetricSpec::maximize()),
        )
        .await
        .expect("create");
    register_with(
        &reg,
        "strict",
        "m.bin",
        "w1",
        with_metrics(&[("auc", 0.75)]),
    )
    .await;
    register_with(&reg, "strict", "m.bin", "w2", with_metrics(&[("auc", 0.5)])).await;
    bring_to(&reg, "strict", 1, Stage::Production).await;
    bring_to(&reg, "strict", 2, Stage::Validation).await;
    reg.acting_as(alice.clone())
        .set_gates(
            "strict",
            Stage::Production,
            vec![
                GateSpec::ProvenanceComplete,
                GateSpec::Approvals {
                    required: 1,
                    from: BTreeSet::new(),
                },
                GateSpec::MinTimeInStage { seconds: 0 },
                GateSpec::MetricsNoWorse {
                    against: Baseline::Production,
                    metrics: vec![],
                },
                GateSpec::MinTimeInStage { seconds: 3600 },
            ],
        )
        .await
        .expect("gates");
    let freeze = ScriptedGate::refusing("change_freeze", "changes are frozen until Monday");
    let also = ScriptedGate::passing("business_hours", "within hours");
    let strict = ModelName::new("strict").expect("valid");
    let gated = f.registry_with(|b| {
        b.gate(strict.clone(), Stage::Production, freeze.clone())
            .gate(strict.clone(), Stage::Production, also.clone())
    });

    let before = snapshot(&reg, "strict").await;
    let result = gated.acting_as(alice.clone()).promote("strict/2", "").await;
    let message = match &result {
        Err(e) => e.to_string(),
        Ok(e) => panic!("promoted: {e:?}"),
    };
    let failed = refused(result, "strict", 2, Stage::Production);
    let shown: Vec<(String, String)> = failed
        .iter()
        .map(|v| (v.gate.clone(), without_seconds(&v.reason)))
        .collect();
    let expected = [
        ("provenance_complete", "no code commit recorded"),
        ("approvals(1)", "0 of 1 approvals"),
        (
            "metrics_no_worse(production)",
            "auc: 0.5 vs 0.75 in v1 is worse by 0.250000 (tolerance 0)",
        ),
        (
            "min_time_in_stage(3600s)",
            "only Ns in validation, 3600s required",
        ),
        ("change_freeze", "changes are frozen until Monday"),
    ];
    assert_eq!(
        shown,
        expected
            .iter()
            .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
            .collect::<Vec<_>>()
    );
    for (gate, reason) in &expected[..3] {
        assert!(message.contains(&format!("{gate}: {reason}")), "{message}");
    }
    assert!(message.contains("strict/2"), "{message}");
    assert_eq!(also.seen().len(), 1, "the passing in-process gate ran too");
    assert_eq!(snapshot(&reg, "strict").await, before);
    assert_eq!(snapshot(&gated, "strict").await, before);
    assert_eq!(
        f.fresh().await.model("strict").await.expect("model"),
        before.1
    );
    assert_eq!(in_production(&reg, "strict").await, Some(1));

    // Without the in-process gates, the stored ones alone refuse.
    let failed = refused(
        reg.acting_as(alice.clone()).promote("strict/2", "").await,
        "strict",
        2,
        Stage::Production,
    );
    let gates: Vec<&str> = failed.iter().map(|v| v.gate.as_str()).collect();
    assert_eq!(
        gates,
        [
            "provenance_complete",
            "approvals(1)",
            "metrics_no_worse(production)",
            "min_time_in_stage(3600s)"
        ]
    );
    assert_eq!(snapshot(&reg, "strict").await, before);
}

/// Gates set through one registry are in the model's log: a registry that shares
/// only the stores (another process) applies them, and sees them removed.
pub async fn stored_gates_apply_to_every_registry(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "shared").await;
    let alice = actor("alice");
    for i in 1..=2 {
        register_bytes(&reg, "shared", "m.bin", format!("w{i}")).await;
        bring_to(&reg, "shared", i, Stage::Validation).await;
    }
    let spec = GateSpec::Approvals {
        required: 1,
        from: BTreeSet::new(),
    };
    let e = reg
        .acting_as(alice.clone())
        .set_gates("shared", Stage::Production, vec![spec.clone()])
        .await
        .expect("gates");
    assert_eq!(
        e.kind,
        EventKind::GatesSet {
            stage: Stage::Production,
            gates: vec![spec.clone()],
        }
    );
    assert_eq!(e.actor, alice);

    let other = f.fresh().await;
    assert_eq!(
        other.model("shared").await.expect("model").gates(),
        &BTreeMap::from([(Stage::Production, vec![spec])])
    );
    let before = snapshot(&reg, "shared").await;
    assert_eq!(
        refused(
            other.acting_as(alice.clone()).promote("shared/1", "").await,
            "shared",
            1,
            Stage::Production
        ),
        [verdict("approvals(1)", false, "0 of 1 approvals")]
    );
    assert_eq!(snapshot(&reg, "shared").await, before);
    other
        .acting_as(actor("bob"))
        .approve("shared/1", Stage::Production, "")
        .await
        .expect("approve");
    let e = f
        .fresh()
        .await
        .acting_as(alice.clone())
        .promote("shared/1", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, .. }
            if *gates == [verdict("approvals(1)", true, "approved by bob")]),
        "{e:?}"
    );

    // An empty list removes the stage's gates, everywhere.
    reg.acting_as(alice.clone())
        .set_gates("shared", Stage::Production, vec![])
        .await
        .expect("gates");
    assert!(
        other
            .model("shared")
            .await
            .expect("model")
            .gates()
            .is_empty()
    );
    let e = other
        .acting_as(alice.clone())
        .promote("shared/2", "")
        .await
        .expect("promote");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, archived: Some(old), .. }
            if gates.is_empty() && *old == num(1)),
        "{e:?}"
    );
}

/// A custom `Gate` attached with `RegistryBuilder::gate` runs for its model and
/// target stage only, sees the transition as it would happen (candidate, stages,
/// requester, time, state), has its verdict recorded, and its refusal is
/// reported. It lives in that registry only.
pub async fn in_process_gates_run_and_refuse(f: &Fixture) {
    let gate = ScriptedGate::passing("scripted", "looks fine");
    let model = ModelName::new("inproc").expect("valid");
    let reg = f.registry_with(|b| b.gate(model.clone(), Stage::Staging, gate.clone()));
    create(&reg, "inproc").await;
    create(&reg, "elsewhere").await;
    for i in 1..=3 {
        register_bytes(&reg, "inproc", "m.bin", format!("w{i}")).await;
    }
    register_bytes(&reg, "elsewhere", "m.bin", "w").await;
    bring_to(&reg, "inproc", 3, Stage::Production).await;
    gate.seen.lock().expect("not poisoned").clear();

    let bob = actor("bob");
    let e = reg
        .acting_as(bob.clone())
        .transition("inproc/1", Stage::Staging, "try it")
        .await
        .expect("move");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, .. }
            if *gates == [verdict("scripted", true, "looks fine")]),
        "{e:?}"
    );
    assert_eq!(
        gate.seen(),
        [Seen {
            candidate: 1,
            from: Stage::None,
            to: Stage::Staging,
            requester: bob.clone(),
            at: e.time,
            production: Some(3),
        }]
    );

    // Other target stages and other models do not run it.
    reg.acting_as(bob.clone())
        .transition("inproc/1", Stage::Validation, "")
        .await
        .expect("move");
    reg.acting_as(bob.clone())
        .transition("elsewhere/1", Stage::Staging, "")
        .await
        .expect("move");
    assert_eq!(gate.seen().len(), 1);

    gate.set(Err("not today".into()));
    let before = snapshot(&reg, "inproc").await;
    assert_eq!(
        refused(
            reg.acting_as(bob.clone())
                .transition("inproc/2", Stage::Staging, "")
                .await,
            "inproc",
            2,
            Stage::Staging
        ),
        [verdict("scripted", false, "not today")]
    );
    assert_eq!(snapshot(&reg, "inproc").await, before);
    assert_eq!(gate.seen().len(), 2);

    // A registry without the gate is not bound by it.
    let e = f
        .fresh()
        .await
        .acting_as(bob.clone())
        .transition("inproc/2", Stage::Staging, "")
        .await
        .expect("move");
    assert!(
        matches!(&e.kind, EventKind::StageChanged { gates, .. } if gates.is_empty()),
        "{e:?}"
    );
    assert_eq!(gate.seen().len(), 2);
}

/// `check_transition` judges a move as the transition would (every gate's
/// verdict, passing or refusing, stored gates then in-process ones, and the
/// production version a promotion archives) and records nothing; the
/// transition asked for next gets the same verdicts. `check_gates` judges a
/// version for a stage whatever its own stage, as a protected alias's move
/// does, and records nothing either.
pub async fn check_transition_and_check_gates_judge_without_recording(f: &Fixture) {
    let gate = ScriptedGate::passing("scripted", "looks fine");
    let model = ModelName::new("checked").expect("valid");
    let reg = f.registry_with(|b| b.gate(model.clone(), Stage::Production, gate.clone()));
    create(&reg, "checked").await;
    register_bytes(&reg, "checked", "m.bin", "w1").await;
    register_bytes(&reg, "checked", "m.bin", "w2").await;
    bring_to(&reg, "checked", 1, Stage::Production).await;
    bring_to(&reg, "checked", 2, Stage::Validation).await;
    reg.acting_as(actor("alice"))
        .set_gates(
            "checked",
            Stage::Production,
            vec![GateSpec::Approvals {
                required: 1,
                from: BTreeSet::new(),
            }],
        )
        .await
        .expect("gates");
    gate.seen.lock().expect("not poisoned").clear();
    let bob = reg.acting_as(actor("bob"));

    let before = snapshot(&reg, "checked").await;
    let check = bob
        .check_transition("checked/2", Stage::Production)
        .await
        .expect("check");
    assert_eq!(
        (check.version, check.from, check.to, check.archives),
        (num(2), Stage::Validation, Stage::Production, Some(num(1)))
    );
    assert_eq!(
        check.gates,
        [
            verdict("approvals(1)", false, "0 of 1 approvals"),
            verdict("scripted", true, "looks fine"),
        ]
    );
    assert!(!check.passes());
    assert_eq!(
        check.failed().cloned().collect::<Vec<_>>(),
        [verdict("approvals(1)", false, "0 of 1 approvals")]
    );
    assert_eq!(snapshot(&reg, "checked").await, before, "nothing recorded");
    let seen = gate.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (
            seen[0].candidate,
            seen[0].from,
            seen[0].to,
            &seen[0].requester,
            seen[0].production
        ),
        (
            2,
            Stage::Validation,
            Stage::Production,
            &actor("bob"),
            Some(1)
        ),
        "the gate is shown the move as the transition would show it"
    );
    assert!(seen[0].at >= before.1.updated_at());

    // The approval turns the verdict; the transition then gets what the check said.
    reg.acting_as(actor("carol"))
        .approve("checked/2", Stage::Production, "ok")
        .await
        .expect("approve");
    let check = bob
        .check_transition("checked@validation", Stage::Production)
        .await
        .expect("check");
    assert!(check.passes(), "{check:?}");
    let e = bob.promote("checked/2", "go").await.expect("promote");
    match &e.kind {
        EventKind::StageChanged {
            gates, archived, ..
        } => assert_eq!((gates, *archived), (&check.gates, check.archives)),
        other => panic!("{other:?}"),
    }

    // A move that is not to production archives nothing and runs no production gate.
    let check = bob
        .check_transition("checked/1", Stage::Staging)
        .await
        .expect("check");
    assert_eq!(
        (check.from, check.to, check.archives, check.gates.len()),
        (Stage::Archived, Stage::Staging, None, 0)
    );
    assert!(check.passes());

    // `check_gates` judges any version for a stage, as a protected alias's move
    // runs the production gates whatever the version's stage: v1 is archived.
    let before = snapshot(&reg, "checked").await;
    assert_eq!(
        bob.check_gates("checked/1", Stage::Production)
            .await
            .expect("gates"),
        [
            verdict("approvals(1)", false, "0 of 1 approvals"),
            verdict("scripted", true, "looks fine"),
        ]
    );
    gate.set(Err("not now".into()));
    let refused_alias = bob
        .set_alias(
            "checked/1",
            "guarded",
            modelreg::SetAlias::new().protected(true),
        )
        .await;
    let Err(Error::GateRejected { failed, .. }) = refused_alias else {
        panic!("{refused_alias:?}")
    };
    assert_eq!(
        failed,
        bob.check_gates("checked/1", Stage::Production)
            .await
            .expect("gates")
            .into_iter()
            .filter(|g| !g.passed)
            .collect::<Vec<_>>(),
        "what the alias's move was refused with"
    );
    assert_eq!(
        bob.check_gates("checked/2", Stage::Staging)
            .await
            .expect("no staging gates"),
        []
    );
    assert_err!(
        bob.check_gates("checked/9", Stage::Production).await,
        Error::NotFound { .. }
    );
    assert_eq!(snapshot(&reg, "checked").await, before);

    // What the transition would refuse before its gates, the check refuses too.
    let before = snapshot(&reg, "checked").await;
    assert_err!(
        bob.check_transition("checked/2", Stage::Staging).await,
        Error::InvalidTransition {
            from: Stage::Production,
            to: Stage::Staging,
            ..
        }
    );
    assert_err!(
        bob.check_transition("checked/9", Stage::Staging).await,
        Error::NotFound { .. }
    );
    assert_err!(
        bob.check_transition("nothing-here/1", Stage::Staging).await,
        Error::NotFound { .. }
    );
    assert_eq!(snapshot(&reg, "checked").await, before);
}

/// A built-in gate attached in-process skips the checks `set_gates` makes, so it
/// must itself refuse a time in stage too long to represent, rather than wrap it
/// round to a negative time that always passes (`u64::MAX`) or panic in the date
/// arithmetic (`i64::MAX`).
pub async fn in_process_min_time_in_stage_beyond_range_refuses(f: &Fixture) {
    let model = ModelName::new("forever").expect("valid");
    let gate = |seconds: u64| Arc::new(GateSpec::MinTimeInStage { seconds });
    let reg = f.registry_with(|b| {
        b.gate(model.clone(), Stage::Staging, gate(u64::MAX)).gate(
            model.clone(),
            Stage::Validation,
            gate(i64::MAX as u64),
        )
    });
    create(&reg, "forever").await;
    register_bytes(&reg, "forever", "m.bin", "w").await;
    let alice = actor("alice");
    let before = snapshot(&reg, "forever").await;
    let failed = refused(
        reg.acting_as(alice.clone())
            .transition("forever/1", Stage::Staging, "")
            .await,
        "forever",
        1,
        Stage::Staging,
    );
    assert_eq!(
        failed.iter().map(|v| v.gate.as_str()).collect::<Vec<_>>(),
        [format!("min_time_in_stage({}s)", u64::MAX)]
    );
    assert_eq!(snapshot(&reg, "forever").await, before);

    f.registry()
        .acting_as(alice.clone())
        .transition("forever/1", Stage::Staging, "")
        .await
        .expect("move without the in-process gates");
    let attempt = tokio::spawn({
        let reg = reg.clone();
        async move {
            reg.acting_as(actor("alice"))
                .transition("forever/1", Stage::Validation, "")
                .await
        }
    })
    .await
    .expect("the gate does not panic");
    let failed = refused(attempt, "forever", 1, Stage::Validation);
    assert_eq!(
        failed.iter().map(|v| v.gate.as_str()).collect::<Vec<_>>(),
        [format!("min_time_in_stage({}s)", i64::MAX)]
    );
}

/// Gate specs are checked before they are stored: an approvals gate needing none,
/// a time in stage too long to represent, and gates for moves into `none` are
/// `InvalidInput`, and nothing is written.
pub async fn invalid_gate_specs_are_rejected(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "specs").await;
    let alice = actor("alice");
    let bad = [
        (
            Stage::Production,
            GateSpec::Approvals {
                required: 0,
                from: BTreeSet::new(),
            },
        ),
        (
            Stage::Production,
            GateSpec::MinTimeInStage { seconds: u64::MAX },
        ),
        (Stage::None, GateSpec::ProvenanceComplete),
    ];
    for (stage, spec) in bad {
        assert_err!(
            reg.acting_as(alice.clone())
                .set_gates("specs", stage, vec![spec.clone()])
                .await,
            Error::InvalidInput { .. }
        );
    }
    assert_err!(
        reg.acting_as(alice.clone())
            .set_gates("nope", Stage::Staging, vec![])
            .await,
        Error::NotFound { .. }
    );
    assert_eq!(event_count(&reg, "specs").await, 1);
    assert!(reg.model("specs").await.expect("model").gates().is_empty());
}

// ----- approvals -------------------------------------------------------------------

/// Approvals and rejections are `approval_recorded` events with the approver as
/// actor, the version, target stage, decision and comment; the version keeps each
/// approver's latest decision per stage. Approving a move into `none`, or a
/// version that does not exist, is refused and writes nothing.
pub async fn approvals_are_events(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "voted").await;
    register_bytes(&reg, "voted", "m.bin", "w").await;
    let (bob, carol) = (actor("bob"), actor("carol"));

    let e1 = reg
        .acting_as(bob.clone())
        .approve("voted/1", Stage::Production, "looks good")
        .await
        .expect("approve");
    assert_eq!((e1.seq, &e1.actor), (3, &bob));
    assert_eq!(
        e1.kind,
        EventKind::ApprovalRecorded {
            version: num(1),
            stage: Stage::Production,
            decision: Decision::Approve,
            comment: "looks good".into(),
        }
    );
    let e2 = reg
        .acting_as(carol.clone())
        .reject("voted@latest", Stage::Production, "drift")
        .await
        .expect("reject");
    assert_eq!((e2.seq, &e2.actor), (4, &carol));
    assert_eq!(
        e2.kind,
        EventKind::ApprovalRecorded {
            version: num(1),
            stage: Stage::Production,
            decision: Decision::Reject,
            comment: "drift".into(),
        }
    );
    let e3 = reg
        .acting_as(bob.clone())
        .reject("voted/1", Stage::Production, "")
        .await
        .expect("reject");
    let e4 = reg
        .acting_as(bob.clone())
        .approve("voted/1", Stage::Staging, "")
        .await
        .expect("approve");

    let v = reg.resolve("voted/1").await.expect("resolve");
    let approval = |decision, at, comment: &str| Approval {
        decision,
        at,
        comment: comment.into(),
    };
    assert_eq!(
        v.approvals,
        BTreeMap::from([
            (
                Stage::Staging,
                BTreeMap::from([(bob.clone(), approval(Decision::Approve, e4.time, ""))])
            ),
            (
                Stage::Production,
                BTreeMap::from([
                    (bob.clone(), approval(Decision::Reject, e3.time, "")),
                    (carol.clone(), approval(Decision::Reject, e2.time, "drift")),
                ])
            ),
        ])
    );
    let state = reg.model("voted").await.expect("model");
    let prod: Vec<(&Actor, &Approval)> = state.approvals(num(1), Stage::Production).collect();
    assert_eq!(prod.len(), 2);
    assert_eq!(state.approvals(num(1), Stage::Validation).count(), 0);
    assert_eq!(
        f.fresh().await.resolve("voted/1").await.expect("resolve"),
        v
    );

    let count = event_count(&reg, "voted").await;
    assert_err!(
        reg.acting_as(bob.clone())
            .approve("voted/1", Stage::None, "")
            .await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        reg.acting_as(bob.clone())
            .approve("voted/2", Stage::Production, "")
            .await,
        Error::NotFound { .. }
    );
    assert_eq!(event_count(&reg, "voted").await, count);

    let history = reg
        .history("voted", &HistoryFilter::new().kind("approval_recorded"))
        .await
        .expect("history");
    assert_eq!(history, [e4, e3, e2, e1]);
}

// ----- rollback --------------------------------------------------------------------

/// After promoting v1, v2, v3: rollback puts v2 back in production and archives
/// v3, as one `rolled_back` event; again, v1; a third time there is nothing to go
/// back to (`NotFound`, nothing written). Rollback passes no gates. With nothing in
/// production, or only one version ever there, rollback is `NotFound`.
/// A version archived out of production and promoted again is one holder, not
/// two: rollback goes to the version before it, never from it to itself.
pub async fn rollback_never_restores_the_current_version(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "again").await;
    let carol = actor("carol");
    for i in 1..=2 {
        register_bytes(&reg, "again", "m.bin", format!("w{i}")).await;
    }
    bring_to(&reg, "again", 1, Stage::Production).await;
    reg.acting_as(carol.clone())
        .transition("again/1", Stage::Archived, "pause")
        .await
        .expect("archive");
    bring_to(&reg, "again", 1, Stage::Production).await;
    assert_eq!(
        reg.model("again")
            .await
            .expect("model")
            .production_history(),
        [num(1)]
    );
    assert_err!(
        reg.acting_as(carol.clone()).rollback("again", "").await,
        Error::NotFound { .. }
    );

    bring_to(&reg, "again", 2, Stage::Production).await;
    reg.acting_as(carol.clone())
        .transition("again/2", Stage::Archived, "pause")
        .await
        .expect("archive");
    bring_to(&reg, "again", 2, Stage::Production).await;
    let e = reg
        .acting_as(carol.clone())
        .rollback("again", "")
        .await
        .expect("rollback");
    assert_eq!(
        e.kind,
        EventKind::RolledBack {
            restored: num(1),
            displaced: num(2),
            reason: String::new(),
        }
    );
}

pub async fn rollback_walks_production_back(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "rb").await;
    let (alice, carol) = (actor("alice"), actor("carol"));
    for i in 1..=3 {
        register_bytes(&reg, "rb", "m.bin", format!("w{i}")).await;
    }
    assert_err!(
        reg.acting_as(carol.clone()).rollback("rb", "").await,
        Error::NotFound { .. }
    );
    bring_to(&reg, "rb", 1, Stage::Production).await;
    let count = event_count(&reg, "rb").await;
    assert_err!(
        reg.acting_as(carol.clone()).rollback("rb", "").await,
        Error::NotFound { .. }
    );
    assert_eq!(event_count(&reg, "rb").await, count);
    bring_to(&reg, "rb", 2, Stage::Production).await;
    bring_to(&reg, "rb", 3, Stage::Production).await;
    assert_eq!(
        reg.model("rb").await.expect("model").production_history(),
        [num(1), num(2), num(3)]
    );
    // Gates that would refuse any promotion do not hold a rollback back.
    reg.acting_as(alice.clone())
        .set_gates(
            "rb",
            Stage::Production,
            vec![GateSpec::Approvals {
                required: 5,
                from: BTreeSet::new(),
            }],
        )
        .await
        .expect("gates");

    let count = event_count(&reg, "rb").await;
    let e = reg
        .acting_as(carol.clone())
        .rollback("rb", "v3 drops conversions")
        .await
        .expect("rollback");
    assert_eq!((e.seq, &e.actor), (count as u64 + 1, &carol));
    assert_eq!(
        e.kind,
        EventKind::RolledBack {
            restored: num(2),
            displaced: num(3),
            reason: "v3 drops conversions".into(),
        }
    );
    assert_eq!(event_count(&reg, "rb").await, count + 1);
    assert_eq!(in_production(&reg, "rb").await, Some(2));
    assert_eq!(
        reg.resolve("rb@production").await.expect("resolve").number,
        num(2)
    );
    let state = reg.model("rb").await.expect("model");
    let (v2, v3) = (
        state.version(num(2)).expect("v2"),
        state.version(num(3)).expect("v3"),
    );
    assert_eq!(
        (v2.stage, v2.stage_since),
        (Stage::Production, Some(e.time))
    );
    assert_eq!((v3.stage, v3.stage_since), (Stage::Archived, Some(e.time)));
    assert_eq!(state.production_history(), [num(1), num(2)]);
    assert_eq!(state.rollback_target(), Some(num(1)));

    let other = f.fresh().await;
    let e = other
        .acting_as(alice.clone())
        .rollback("rb", "")
        .await
        .expect("rollback");
    assert_eq!(
        e.kind,
        EventKind::RolledBack {
            restored: num(1),
            displaced: num(2),
            reason: String::new(),
        }
    );
    assert_eq!(in_production(&reg, "rb").await, Some(1));
    let stages: Vec<Stage> = reg
        .model("rb")
        .await
        .expect("model")
        .versions()
        .iter()
        .map(|v| v.stage)
        .collect();
    assert_eq!(
        stages,
        [Stage::Production, Stage::Archived, Stage::Archived]
    );

    let before = snapshot(&reg, "rb").await;
    assert_err!(
        reg.acting_as(carol.clone()).rollback("rb", "").await,
        Error::NotFound { .. }
    );
    assert_eq!(snapshot(&reg, "rb").await, before);
    let rollbacks = reg
        .history("rb", &HistoryFilter::new().kind("rolled_back"))
        .await
        .expect("history");
    assert_eq!(rollbacks.len(), 2);

    // With the production version archived directly, there is nothing to leave.
    reg.acting_as(alice.clone())
        .transition("rb/1", Stage::Archived, "")
        .await
        .expect("archive");
    assert_err!(
        reg.acting_as(carol.clone()).rollback("rb", "").await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.acting_as(carol.clone()).rollback("ghost", "").await,
        Error::NotFound { .. }
    );
}

// ----- aliases ---------------------------------------------------------------------

/// Aliases are set, moved and removed by events that record actor and reason;
/// `name@alias` resolves to the target (from another registry too); an unset
/// alias is `NotFound`, as is removing it; reserved and malformed alias names are
/// `InvalidName` and write nothing.
pub async fn aliases_set_move_and_remove(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "aliases").await;
    for i in 1..=2 {
        register_bytes(&reg, "aliases", "m.bin", format!("w{i}")).await;
    }
    let (alice, bob, carol) = (actor("alice"), actor("bob"), actor("carol"));
    assert_err!(
        reg.resolve("aliases@champion").await,
        Error::NotFound { .. }
    );

    let e = reg
        .acting_as(alice.clone())
        .set_alias("aliases/1", "champion", SetAlias::new().reason("best auc"))
        .await
        .expect("set");
    assert_eq!((e.seq, &e.actor), (4, &alice));
    assert_eq!(
        e.kind,
        EventKind::AliasSet {
            alias: alias("champion"),
            version: num(1),
            protected: false,
            reason: "best auc".into(),
            gates: vec![],
        }
    );
    assert_eq!(
        reg.resolve("aliases@champion")
            .await
            .expect("resolve")
            .number,
        num(1)
    );
    assert_eq!(
        reg.model("aliases")
            .await
            .expect("model")
            .alias(&alias("champion")),
        Some(&AliasTarget {
            version: num(1),
            protected: false,
            set_at: e.time,
            set_by: alice.clone(),
        })
    );

    let e = reg
        .acting_as(bob.clone())
        .set_alias("aliases/2", "champion", SetAlias::new().reason("retrained"))
        .await
        .expect("move");
    assert_eq!(e.actor, bob);
    assert!(
        matches!(&e.kind, EventKind::AliasSet { version, reason, .. } if *version == num(2) && reason == "retrained"),
        "{e:?}"
    );
    assert_eq!(
        reg.resolve("aliases@champion")
            .await
            .expect("resolve")
            .number,
        num(2)
    );
    reg.acting_as(bob.clone())
        .set_alias("aliases/1", "challenger", SetAlias::new())
        .await
        .expect("set");
    // An alias can be set from any reference, another alias included.
    reg.acting_as(bob.clone())
        .set_alias("aliases@champion", "backup", SetAlias::new())
        .await
        .expect("set");
    let targets: Vec<(String, u64, Actor)> = reg
        .model("aliases")
        .await
        .expect("model")
        .aliases()
        .iter()
        .map(|(a, t)| (a.to_string(), t.version.get(), t.set_by.clone()))
        .collect();
    assert_eq!(
        targets,
        [
            ("backup".to_owned(), 2, bob.clone()),
            ("challenger".to_owned(), 1, bob.clone()),
            ("champion".to_owned(), 2, bob.clone()),
        ]
    );
    let other = f.fresh().await;
    assert_eq!(
        other
            .resolve("aliases@challenger")
            .await
            .expect("resolve")
            .number,
        num(1)
    );

    let e = reg
        .acting_as(carol.clone())
        .remove_alias("aliases", "champion", "retired")
        .await
        .expect("remove");
    assert_eq!(e.actor, carol);
    assert_eq!(
        e.kind,
        EventKind::AliasRemoved {
            alias: alias("champion"),
            version: Some(num(2)),
            reason: "retired".into(),
            gates: vec![],
        }
    );
    // The removal is part of the version's history.
    let trail = reg
        .history("aliases", &HistoryFilter::new().version(num(2)))
        .await
        .expect("history");
    assert_eq!(trail[0].kind.name(), "alias_removed");
    assert_err!(
        reg.resolve("aliases@champion").await,
        Error::NotFound { .. }
    );
    assert_err!(
        other.resolve("aliases@champion").await,
        Error::NotFound { .. }
    );
    // The versions themselves are untouched.
    assert_eq!(stage_of(&reg, "aliases", 2).await, Stage::None);

    let before = snapshot(&reg, "aliases").await;
    assert_err!(
        reg.acting_as(carol.clone())
            .remove_alias("aliases", "champion", "")
            .await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.acting_as(carol.clone())
            .remove_alias("aliases", "never", "")
            .await,
        Error::NotFound { .. }
    );
    for reserved in [
        "latest",
        "none",
        "staging",
        "validation",
        "production",
        "archived",
    ] {
        assert_err!(
            reg.acting_as(alice.clone())
                .set_alias("aliases/1", reserved, SetAlias::new())
                .await,
            Error::InvalidName { kind: "alias", .. }
        );
        assert_err!(
            reg.acting_as(alice.clone())
                .remove_alias("aliases", reserved, "")
                .await,
            Error::InvalidName { kind: "alias", .. }
        );
    }
    for bad in ["", "Champion", "1st", "a.b", "eu/canary", "x y"] {
        assert_err!(
            reg.acting_as(alice.clone())
                .set_alias("aliases/1", bad, SetAlias::new())
                .await,
            Error::InvalidName { kind: "alias", .. }
        );
    }
    assert_err!(
        reg.acting_as(alice.clone())
            .set_alias("aliases/3", "canary", SetAlias::new())
            .await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.acting_as(alice.clone())
            .set_alias("ghost/1", "canary", SetAlias::new())
            .await,
        Error::NotFound { .. }
    );
    assert_eq!(snapshot(&reg, "aliases").await, before);
}

/// A protected alias moves (or is removed, or loses its protection) only through
/// the production gates, stored and in-process, with its new (or current) target
/// as the candidate; refused, nothing changes. Protecting a new alias runs them
/// too. An unprotected alias moves without gates.
pub async fn protected_aliases_pass_production_gates(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "guarded").await;
    let (alice, bob, carol) = (actor("alice"), actor("bob"), actor("carol"));
    for i in 1..=4 {
        register_bytes(&reg, "guarded", "m.bin", format!("w{i}")).await;
    }
    reg.acting_as(alice.clone())
        .set_gates(
            "guarded",
            Stage::Production,
            vec![GateSpec::Approvals {
                required: 1,
                from: BTreeSet::new(),
            }],
        )
        .await
        .expect("gates");
    let approve = |n: u64, who: &Actor| {
        let reg = reg.clone();
        let who = who.clone();
        async move {
            reg.acting_as(who.clone())
                .approve(format!("guarded/{n}"), Stage::Production, "")
                .await
                .expect("approve");
        }
    };
    let set = |n: u64, name: &'static str, protected: Option<bool>| {
        let reg = reg.clone();
        let alice = alice.clone();
        async move {
            let mut opts = SetAlias::new().reason("move");
            if let Some(p) = protected {
                opts = opts.protected(p);
            }
            reg.acting_as(alice)
                .set_alias(format!("guarded/{n}"), name, opts)
                .await
        }
    };
    let gates_of = |e: &Event| match &e.kind {
        EventKind::AliasSet {
            gates, protected, ..
        } => (gates.clone(), *protected),
        EventKind::AliasRemoved { gates, .. } => (gates.clone(), false),
        other => panic!("expected an alias event, got {other:?}"),
    };
    let no_approval = || vec![verdict("approvals(1)", false, "0 of 1 approvals")];

    // Protecting a new alias runs the gates on its target.
    let before = snapshot(&reg, "guarded").await;
    assert_eq!(
        refused(
            set(1, "champion", Some(true)).await,
            "guarded",
            1,
            Stage::Production
        ),
        no_approval()
    );
    assert_eq!(snapshot(&reg, "guarded").await, before);
    approve(1, &bob).await;
    let e = set(1, "champion", Some(true)).await.expect("set");
    assert_eq!(
        gates_of(&e),
        (vec![verdict("approvals(1)", true, "approved by bob")], true)
    );

    // Moving it (protection unchanged) runs them on the new target.
    let before = snapshot(&reg, "guarded").await;
    assert_eq!(
        refused(
            set(2, "champion", None).await,
            "guarded",
            2,
            Stage::Production
        ),
        no_approval()
    );
    assert_eq!(snapshot(&reg, "guarded").await, before);
    approve(2, &bob).await;
    let e = set(2, "champion", None).await.expect("move");
    assert_eq!(
        gates_of(&e),
        (vec![verdict("approvals(1)", true, "approved by bob")], true)
    );
    assert_eq!(
        reg.resolve("guarded@champion")
            .await
            .expect("resolve")
            .number,
        num(2)
    );

    // A standing rejection of its target blocks unprotecting and removing it.
    reg.acting_as(carol.clone())
        .reject("guarded/2", Stage::Production, "bias")
        .await
        .expect("reject");
    let before = snapshot(&reg, "guarded").await;
    let rejected = vec![verdict("approvals(1)", false, "rejected by carol (bias)")];
    assert_eq!(
        refused(
            set(2, "champion", Some(false)).await,
            "guarded",
            2,
            Stage::Production
        ),
        rejected
    );
    assert_eq!(
        refused(
            reg.acting_as(alice.clone())
                .remove_alias("guarded", "champion", "")
                .await,
            "guarded",
            2,
            Stage::Production
        ),
        rejected
    );
    assert_eq!(snapshot(&reg, "guarded").await, before);
    assert!(
        before
            .1
            .alias(&alias("champion"))
            .is_some_and(|t| t.protected && t.version == num(2))
    );

    // The gates pass again: unprotecting goes through them and records them.
    approve(2, &carol).await;
    let e = set(2, "champion", Some(false)).await.expect("unprotect");
    assert_eq!(
        gates_of(&e),
        (
            vec![verdict("approvals(1)", true, "approved by bob, carol")],
            false
        )
    );
    // Unprotected, it moves to an unapproved version without gates.
    let e = set(3, "champion", None).await.expect("move");
    assert_eq!(gates_of(&e), (vec![], false));
    let e = reg
        .acting_as(alice.clone())
        .remove_alias("guarded", "champion", "")
        .await
        .expect("remove");
    assert_eq!(gates_of(&e), (vec![], false));

    // Removing a protected alias passes the gates with its target as candidate.
    approve(4, &bob).await;
    set(4, "safe", Some(true)).await.expect("protect");
    let e = reg
        .acting_as(alice.clone())
        .remove_alias("guarded", "safe", "")
        .await
        .expect("remove");
    assert_eq!(
        gates_of(&e),
        (
            vec![verdict("approvals(1)", true, "approved by bob")],
            false
        )
    );

    // In-process production gates guard protected aliases as well.
    set(4, "safe", Some(true)).await.expect("protect");
    let freeze = ScriptedGate::refusing("freeze", "frozen");
    let model = ModelName::new("guarded").expect("valid");
    let gated = f.registry_with(|b| b.gate(model.clone(), Stage::Production, freeze.clone()));
    let before = snapshot(&reg, "guarded").await;
    assert_eq!(
        refused(
            gated
                .acting_as(alice.clone())
                .set_alias("guarded/1", "safe", SetAlias::new())
                .await,
            "guarded",
            1,
            Stage::Production
        ),
        [verdict("freeze", false, "frozen")]
    );
    assert_eq!(snapshot(&reg, "guarded").await, before);
    let seen = freeze.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].candidate, seen[0].from, seen[0].to),
        (1, Stage::None, Stage::Production)
    );
    // None of this moved a version's stage.
    for n in 1..=4 {
        assert_eq!(stage_of(&reg, "guarded", n).await, Stage::None);
    }
}

// ----- the audit trail ---------------------------------------------------------------

/// Builds the `audited` model: 18 events by alice, ci, bob and carol (see the
/// numbers in the comments), with promotions, a rollback, an approval, gates and
/// an alias set and removed.
async fn audited(reg: &Registry) {
    let (alice, bob, carol) = (actor("alice"), actor("bob"), actor("carol"));
    create(reg, "audited").await; // 1 alice
    for i in 1..=3 {
        register_bytes(reg, "audited", "m.bin", format!("w{i}")).await; // 2, 3, 4 ci
    }
    let mv = |n: u64, to: Stage, who: &Actor| {
        let reg = reg.clone();
        let who = who.clone();
        async move {
            reg.acting_as(who.clone())
                .transition(format!("audited/{n}"), to, "")
                .await
                .expect("move");
        }
    };
    mv(1, Stage::Staging, &alice).await; // 5
    mv(1, Stage::Validation, &alice).await; // 6
    mv(1, Stage::Production, &bob).await; // 7
    mv(2, Stage::Staging, &alice).await; // 8
    mv(2, Stage::Validation, &alice).await; // 9
    reg.acting_as(carol.clone())
        .approve("audited/2", Stage::Production, "")
        .await
        .expect("approve"); // 10
    mv(2, Stage::Production, &bob).await; // 11: archives 1
    reg.acting_as(carol.clone())
        .set_alias("audited/1", "champion", SetAlias::new())
        .await
        .expect("alias"); // 12
    mv(3, Stage::Staging, &alice).await; // 13
    mv(3, Stage::Validation, &alice).await; // 14
    mv(3, Stage::Production, &bob).await; // 15: archives 2
    reg.acting_as(carol.clone())
        .rollback("audited", "")
        .await
        .expect("rollback"); // 16: restores 2, displaces 3
    reg.acting_as(alice.clone())
        .set_gates(
            "audited",
            Stage::Production,
            vec![GateSpec::ProvenanceComplete],
        )
        .await
        .expect("gates"); // 17
    reg.acting_as(carol.clone())
        .remove_alias("audited", "champion", "")
        .await
        .expect("remove"); // 18
}

/// `history` is the log newest first, filtered: by version (including the events
/// where it was archived by a promotion, or displaced or restored by a rollback),
/// by actor, by one or several kinds, and by all of these at once.
pub async fn history_is_newest_first_and_filters(f: &Fixture) {
    let reg = f.registry();
    audited(&reg).await;
    let events = reg.events("audited").await.expect("events");
    assert_eq!(events.len(), 18);
    let seqs = |filter: HistoryFilter| {
        let reg = reg.clone();
        let events = events.clone();
        async move {
            let history = reg.history("audited", &filter).await.expect("history");
            for e in &history {
                assert_eq!(e, &events[e.seq as usize - 1], "history event {}", e.seq);
            }
            history.iter().map(|e| e.seq).collect::<Vec<u64>>()
        }
    };
    assert_eq!(
        seqs(HistoryFilter::new()).await,
        (1..=18).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(HistoryFilter::new().version(num(1))).await,
        [18, 12, 11, 7, 6, 5, 2] // 18: the alias removed pointed at version 1
    );
    assert_eq!(
        seqs(HistoryFilter::new().version(num(2))).await,
        [16, 15, 11, 10, 9, 8, 3]
    );
    assert_eq!(
        seqs(HistoryFilter::new().version(num(3))).await,
        [16, 15, 14, 13, 4]
    );
    assert_eq!(
        seqs(HistoryFilter::new().actor(actor("bob"))).await,
        [15, 11, 7]
    );
    assert_eq!(
        seqs(HistoryFilter::new().actor(actor("carol"))).await,
        [18, 16, 12, 10]
    );
    assert_eq!(
        seqs(HistoryFilter::new().actor(actor("ci"))).await,
        [4, 3, 2]
    );
    assert_eq!(
        seqs(
            HistoryFilter::new()
                .kind("stage_changed")
                .kind("rolled_back")
        )
        .await,
        [16, 15, 14, 13, 11, 9, 8, 7, 6, 5]
    );
    assert_eq!(
        seqs(HistoryFilter::new().kind("alias_set").kind("alias_removed")).await,
        [18, 12]
    );
    assert_eq!(seqs(HistoryFilter::new().kind("gates_set")).await, [17]);
    assert_eq!(
        seqs(HistoryFilter::new().version(num(2)).actor(actor("bob"))).await,
        [15, 11]
    );
    assert_eq!(
        seqs(
            HistoryFilter::new()
                .version(num(3))
                .kind("rolled_back")
                .actor(actor("carol"))
        )
        .await,
        [16]
    );
    assert!(
        seqs(HistoryFilter::new().kind("teleported"))
            .await
            .is_empty()
    );
    assert!(seqs(HistoryFilter::new().version(num(9))).await.is_empty());
    assert_err!(
        reg.history("ghost", &HistoryFilter::new()).await,
        Error::NotFound { .. }
    );
    // Another registry tells the same story.
    assert_eq!(
        f.fresh()
            .await
            .history("audited", &HistoryFilter::new().version(num(1)))
            .await
            .expect("history")
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [18, 12, 11, 7, 6, 5, 2]
    );
}

// ----- time travel -----------------------------------------------------------------

/// Builds the `travel` model (17 events) and returns, for each event, what
/// `@production`, `@champion` and `@latest` resolve to once it is applied.
async fn travel(reg: &Registry) -> Vec<(Option<u64>, Option<u64>, Option<u64>)> {
    let who = actor("alice");
    create(reg, "travel").await; // 1
    for i in 1..=3 {
        register_bytes(reg, "travel", "m.bin", format!("w{i}")).await; // 2..=4
    }
    bring_to(reg, "travel", 1, Stage::Production).await; // 5..=7
    bring_to(reg, "travel", 2, Stage::Production).await; // 8..=10
    let champion = |n: u64| {
        let reg = reg.clone();
        let who = who.clone();
        async move {
            reg.acting_as(who)
                .set_alias(format!("travel/{n}"), "champion", SetAlias::new())
                .await
                .expect("alias");
        }
    };
    champion(1).await; // 11
    bring_to(reg, "travel", 3, Stage::Production).await; // 12..=14
    champion(3).await; // 15
    reg.acting_as(who.clone())
        .rollback("travel", "")
        .await
        .expect("rollback"); // 16
    reg.acting_as(who.clone())
        .remove_alias("travel", "champion", "")
        .await
        .expect("remove"); // 17
    vec![
        (None, None, None),       // 1
        (None, None, Some(1)),    // 2
        (None, None, Some(2)),    // 3
        (None, None, Some(3)),    // 4
        (None, None, Some(3)),    // 5
        (None, None, Some(3)),    // 6
        (Some(1), None, Some(3)), // 7
        (Some(1), None, Some(3)), // 8
        (Some(1), None, Some(3)), // 9
        (Some(2), None, Some(3)), // 10
        (Some(2), Some(1), Some(3)),
        (Some(2), Some(1), Some(3)),
        (Some(2), Some(1), Some(3)),
        (Some(3), Some(1), Some(3)), // 14
        (Some(3), Some(3), Some(3)), // 15
        (Some(2), Some(3), Some(3)), // 16
        (Some(2), None, Some(3)),    // 17
    ]
}

/// `resolve_as_of` answers as the registry would have at that moment, and
/// `model_as_of` is the fold of every event at or before it: checked at every
/// event's exact time (events with equal times all count) and between events.
/// Before the model existed both are `NotFound`; after the last event the state
/// is the current one.
pub async fn time_travel_resolves_as_of(f: &Fixture) {
    let reg = f.registry();
    let after_event = travel(&reg).await;
    let events = reg.events("travel").await.expect("events");
    assert_eq!(events.len(), after_event.len());
    let other = f.fresh().await;

    let mut instants: Vec<DateTime<Utc>> = events.iter().map(|e| e.time).collect();
    for w in events.windows(2) {
        instants.push(w[0].time + (w[1].time - w[0].time) / 2);
    }
    for t in instants {
        // The last event at or before t.
        let upto = events.iter().take_while(|e| e.time <= t).count();
        assert!(upto >= 1);
        let (production, champion, latest) = after_event[upto - 1];
        let state = reg.model_as_of("travel", t).await.expect("model as of");
        assert_eq!(state.seq(), upto as u64, "as of {t}");
        assert_eq!(
            state,
            ModelState::replay(events[..upto].to_vec()).expect("replay")
        );
        for (sel, expected) in [
            ("production", production),
            ("champion", champion),
            ("latest", latest),
        ] {
            let r = format!("travel@{sel}");
            for registry in [&reg, &other] {
                match (registry.resolve_as_of(r.as_str(), t).await, expected) {
                    (Ok(v), Some(n)) => assert_eq!(v.number.get(), n, "{r} as of {t}"),
                    (Err(Error::NotFound { .. }), None) => {}
                    (got, _) => {
                        panic!("{r} as of {t} (event {upto}): expected {expected:?}, got {got:?}")
                    }
                }
            }
        }
    }
    // A version as it was: v1 as of its promotion (event 7) was in production,
    // unless the promotion of v2 (event 10, archiving it) has the same time.
    let promoted = events[6].time;
    let upto = events.iter().take_while(|e| e.time <= promoted).count();
    assert_eq!(
        reg.resolve_as_of("travel/1", promoted)
            .await
            .expect("as of")
            .stage,
        if upto >= 10 {
            Stage::Archived
        } else {
            Stage::Production
        }
    );

    let before = events[0].time - TimeDelta::nanoseconds(1);
    assert_err!(
        reg.model_as_of("travel", before).await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.resolve_as_of("travel@latest", before).await,
        Error::NotFound { .. }
    );
    assert_err!(
        reg.model_as_of("ghost", Utc::now()).await,
        Error::NotFound { .. }
    );
    let later = events[16].time + TimeDelta::days(1);
    assert_eq!(
        reg.model_as_of("travel", later).await.expect("as of"),
        reg.model("travel").await.expect("model")
    );
}

/// Time travel to any point folds from the nearest checkpoint the store kept
/// at or before it, not only the latest, and answers exactly the fold of every
/// event up to that point: checked at every event's time and between events,
/// on a model of 70 events checkpointed every 3 (so the store has pruned some
/// and kept one per window), by the registry that wrote it and by a cold one.
/// A kept checkpoint that is damaged is ignored, never trusted.
pub async fn time_travel_from_older_checkpoints_is_the_full_fold(f: &Fixture) {
    let reg = f.registry_with(|b| b.checkpoint_every(3));
    let who = actor("alice");
    create(&reg, "far").await; // 1
    for i in 1..=40u64 {
        register_bytes(&reg, "far", "m.bin", format!("w{i}")).await;
        if i % 8 == 0 {
            bring_to(&reg, "far", i, Stage::Production).await;
        }
        if i % 6 == 0 {
            reg.acting_as(who.clone())
                .set_alias(format!("far/{}", i - 1), "champion", SetAlias::new())
                .await
                .expect("alias");
        }
    }
    let events = reg.events("far").await.expect("events");
    let n = events.len() as u64;
    assert_eq!(n, 1 + 40 + 5 * 3 + 6);
    let store = reg.metadata_store().clone();
    // An older checkpoint was kept, and not from before the middle's window.
    let older = store
        .checkpoint_at_or_before("far", n / 2)
        .await
        .expect("read")
        .expect("a checkpoint before the middle was kept");
    assert!(older.seq <= n / 2 && n / 2 - older.seq <= n / 8 + 2 + 3);

    let mut instants: Vec<DateTime<Utc>> = events.iter().map(|e| e.time).collect();
    for w in events.windows(2) {
        instants.push(w[0].time + (w[1].time - w[0].time) / 2);
    }
    let check = |registry: Registry, instants: Vec<DateTime<Utc>>| {
        let events = events.clone();
        async move {
            for t in instants {
                let upto = events.iter().take_while(|e| e.time <= t).count();
                let state = registry.model_as_of("far", t).await.expect("model as of");
                assert_eq!(
                    state,
                    ModelState::replay(events[..upto].to_vec()).expect("replay"),
                    "as of {t} (event {upto})"
                );
            }
        }
    };
    check(reg.clone(), instants.clone()).await;
    let cold = f.registry_with(|b| b.checkpoint_every(3));
    check(cold, instants.clone()).await;

    // Damage the kept checkpoint before the middle: it is ignored (the fold
    // starts from an older one or from event 1), the answer is the same.
    store
        .put_checkpoint("far", older.seq, "not a checkpoint".into())
        .await
        .expect("overwrite");
    let near: Vec<DateTime<Utc>> = events
        [older.seq as usize - 1..(older.seq as usize + 3).min(events.len())]
        .iter()
        .map(|e| e.time)
        .collect();
    check(f.registry_with(|b| b.checkpoint_every(3)), near).await;
}

// ----- concurrency -----------------------------------------------------------------

/// How many rounds [`concurrent_promotions_never_make_two_productions`] runs on
/// fresh registries, and then on a [`racing_pair`].
pub const RACE_ROUNDS: u64 = 10;

/// What [`HookedAppends`] runs before an append: given how many appends came
/// before this one (0 for the first), a future the append waits for.
pub type AppendHook = Box<dyn Fn(usize) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// A metadata store that runs a hook before each append goes through, so a test
/// can hold an append at a chosen point (two racers meeting, a stalled write);
/// everything else goes straight to `inner`.
pub struct HookedAppends {
    inner: Arc<dyn MetadataStore>,
    arrivals: AtomicUsize,
    hook: AppendHook,
}

impl HookedAppends {
    /// Wraps `inner`, running `hook` before every append.
    pub fn new(inner: Arc<dyn MetadataStore>, hook: AppendHook) -> Arc<Self> {
        Arc::new(HookedAppends {
            inner,
            arrivals: AtomicUsize::new(0),
            hook,
        })
    }
}

impl std::fmt::Debug for HookedAppends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedAppends")
            .field("inner", &self.inner)
            .field("arrivals", &self.arrivals)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl MetadataStore for HookedAppends {
    async fn append(&self, log: &str, seq: u64, record: bytes::Bytes) -> modelreg::Result<()> {
        (self.hook)(self.arrivals.fetch_add(1, Ordering::SeqCst)).await;
        self.inner.append(log, seq, record).await
    }
    async fn read_after(
        &self,
        log: &str,
        after: u64,
        limit: usize,
    ) -> modelreg::Result<Vec<LogRecord>> {
        self.inner.read_after(log, after, limit).await
    }
    async fn list_logs(&self) -> modelreg::Result<Vec<String>> {
        self.inner.list_logs().await
    }
    async fn put_checkpoint(
        &self,
        log: &str,
        seq: u64,
        bytes: bytes::Bytes,
    ) -> modelreg::Result<()> {
        self.inner.put_checkpoint(log, seq, bytes).await
    }
    async fn latest_checkpoint(&self, log: &str) -> modelreg::Result<Option<Checkpoint>> {
        self.inner.latest_checkpoint(log).await
    }
    async fn put_lease(&self, key: &str, bytes: bytes::Bytes) -> modelreg::Result<()> {
        self.inner.put_lease(key, bytes).await
    }
    async fn get_lease(&self, key: &str) -> modelreg::Result<Option<bytes::Bytes>> {
        self.inner.get_lease(key).await
    }
    async fn list_leases(&self) -> modelreg::Result<Vec<String>> {
        self.inner.list_leases().await
    }
    async fn delete_lease(&self, key: &str) -> modelreg::Result<()> {
        self.inner.delete_lease(key).await
    }
    fn location(&self, log: &str, item: MetadataItem) -> String {
        self.inner.location(log, item)
    }
}

/// A registry over `reg`'s artifact store and `meta`, sharing no cache with
/// `reg`.
fn registry_over(reg: &Registry, meta: Arc<dyn MetadataStore>) -> Registry {
    Registry::builder()
        .metadata(meta)
        .artifacts(reg.artifact_store().clone())
        .build()
        .expect("builder with both stores")
}

/// Two registries over `reg`'s stores that share no cache, whose first two
/// appends wait for each other (for at most ten seconds) before going through:
/// each has read the log before either appends, so one command on each is a
/// certain race, not up to the scheduler.
pub fn racing_pair(reg: &Registry) -> [Registry; 2] {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let store = HookedAppends::new(
        reg.metadata_store().clone(),
        Box::new(move |n| {
            let barrier = barrier.clone();
            Box::pin(async move {
                if n < 2 {
                    // A racer that fails before appending must not hang the other.
                    let _ = tokio::time::timeout(Duration::from_secs(10), barrier.wait()).await;
                }
            })
        }),
    );
    [registry_over(reg, store.clone()), registry_over(reg, store)]
}

/// A command whose append is stalled in the store (a hung S3 PUT), and whose
/// future is then kept without being polled, blocks no other writer or reader
/// of the model in the same registry; once the store answers, the stalled
/// command loses its log position to the writer that went ahead, retries on
/// the fresh state and lands after it.
pub async fn abandoned_command_blocks_no_writer(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "stall").await;
    register_bytes(&reg, "stall", "m.bin", "one").await;
    register_bytes(&reg, "stall", "m.bin", "two").await;
    let count = event_count(&reg, "stall").await;

    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (e, r) = (entered.clone(), release.clone());
    let store = HookedAppends::new(
        reg.metadata_store().clone(),
        Box::new(move |n| {
            let (e, r) = (e.clone(), r.clone());
            Box::pin(async move {
                if n == 0 {
                    e.notify_one();
                    drop(r.acquire().await.expect("semaphore open"));
                }
            })
        }),
    );
    let one = registry_over(&reg, store);
    let session = one.acting_as(actor("stalled"));
    let mut stalled = Box::pin(session.transition("stall/1", Stage::Staging, "stalled"));
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            r = &mut stalled => panic!("the stalled append went through: {r:?}"),
            () = entered.notified() => {}
        }
    })
    .await
    .expect("the first command reached its append");

    // `stalled` is kept, half-polled, holding whatever it holds.
    let went_ahead = tokio::time::timeout(
        Duration::from_secs(10),
        one.acting_as(actor("ahead"))
            .transition("stall/2", Stage::Staging, "went ahead"),
    )
    .await
    .expect("a writer was blocked by a stalled, half-polled command")
    .expect("transition");
    assert_eq!(went_ahead.seq, count as u64 + 1);
    let state = tokio::time::timeout(Duration::from_secs(10), one.model("stall"))
        .await
        .expect("a reader was blocked by a stalled, half-polled command")
        .expect("model");
    assert_eq!(state.seq(), count as u64 + 1);
    assert_eq!(stage_of(&one, "stall", 1).await, Stage::None);

    release.add_permits(1);
    let late = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the released command finished")
        .expect("the released command retried and landed");
    assert_eq!(late.seq, count as u64 + 2, "it lost its first position");
    assert_eq!(stage_of(&reg, "stall", 1).await, Stage::Staging);
    assert_eq!(stage_of(&reg, "stall", 2).await, Stage::Staging);
    assert_eq!(event_count(&reg, "stall").await, count + 2);
    let trail = reg
        .history("stall", &HistoryFilter::default())
        .await
        .expect("history");
    let movers: Vec<_> = trail[..2].iter().map(|e| e.actor.to_string()).collect();
    assert_eq!(
        movers,
        ["stalled", "ahead"],
        "newest first: the stalled one landed last"
    );
}

/// Runs `a` and `b` at once, each on its own task, and returns both results.
pub async fn race<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future + Send + 'static,
    A::Output: Send + 'static,
    B: std::future::Future + Send + 'static,
    B::Output: Send + 'static,
{
    let (a, b) = (tokio::spawn(a), tokio::spawn(b));
    (
        a.await.expect("task did not panic"),
        b.await.expect("task did not panic"),
    )
}

/// One round of a promotion race on model `race`: registers two versions, moves
/// them to validation through `reg`, then has `racers[0]` and `racers[1]` promote
/// one each, started together by a barrier. Checks every invariant of the round
/// and appends the winners to `history`; returns whether exactly one won.
async fn race_round(
    reg: &Registry,
    racers: &[Registry; 2],
    round: u64,
    history: &mut Vec<u64>,
) -> bool {
    let (a, b) = (2 * round + 1, 2 * round + 2);
    for n in [a, b] {
        register_bytes(reg, "race", "m.bin", format!("round {round} v{n}")).await;
        bring_to(reg, "race", n, Stage::Validation).await;
    }
    let previous = in_production(reg, "race").await;
    let count = event_count(reg, "race").await;
    // Both racers have folded the log up to here, so neither starts with a longer
    // read than the other.
    for r in racers {
        assert_eq!(r.model("race").await.expect("model").seq(), count as u64);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let tasks: Vec<_> = [(racers[0].clone(), a), (racers[1].clone(), b)]
        .into_iter()
        .map(|(r, n)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let who = actor(&format!("promoter of v{n}"));
                (
                    n,
                    r.acting_as(who.clone())
                        .promote(format!("race/{n}"), "race")
                        .await,
                )
            })
        })
        .collect();
    let mut won: Vec<Event> = Vec::new();
    let mut lost: Vec<(u64, String)> = Vec::new();
    for t in tasks {
        match t.await.expect("task did not panic") {
            (_, Ok(e)) => won.push(e),
            (n, Err(Error::ConcurrentChange { model, what })) => {
                assert_eq!(model, "race");
                lost.push((n, what));
            }
            (n, Err(e)) => {
                panic!("round {round}: v{n}: expected Ok or ConcurrentChange, got {e:?}")
            }
        }
    }
    won.sort_by_key(|e| e.seq);
    assert!(!won.is_empty(), "round {round}: nobody won");
    let events = reg.events("race").await.expect("events");
    assert_eq!(events.len(), count + won.len(), "round {round}");
    let mut production = previous;
    for e in &won {
        let n = e.kind.version().expect("about a version").get();
        assert_eq!(
            e.kind,
            EventKind::StageChanged {
                version: num(n),
                from: Stage::Validation,
                to: Stage::Production,
                reason: "race".into(),
                gates: vec![],
                archived: production.map(num),
            },
            "round {round}"
        );
        assert_eq!(&events[e.seq as usize - 1], e, "round {round}");
        production = Some(n);
        history.push(n);
    }
    assert_eq!(won[0].seq, count as u64 + 1);
    let one_winner = if let [(n, what)] = lost.as_slice() {
        let winner = won[0].kind.version().expect("about a version");
        assert_eq!(
            *what,
            format!(
                "the production version (was {}, now {winner})",
                previous.map_or_else(|| "none".to_owned(), |p| p.to_string())
            ),
            "round {round}"
        );
        assert_eq!(stage_of(reg, "race", *n).await, Stage::Validation);
        true
    } else {
        false
    };
    assert_eq!(in_production(reg, "race").await, production);
    for r in racers {
        assert_eq!(in_production(r, "race").await, production);
    }
    one_winner
}

/// Two registries that share only the stores race to promote two different
/// versions (both in validation), started together by a barrier, round after
/// round. Each command pins the production version it saw first, so when both
/// start from the same state exactly one succeeds and the other fails with
/// `ConcurrentChange` naming the production change (if one started after the
/// other finished, both succeed, the second archiving the first). Never two
/// versions in production; every success is its `stage_changed` event in the log;
/// failures write nothing; the production history is the successes in log order.
///
/// First on fresh registries, where whether the calls overlap is up to the
/// scheduler (reported); then on [`racing_pair`]s, where both have read the log
/// before either appends, so exactly one wins every round.
pub async fn concurrent_promotions_never_make_two_productions(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "race").await;
    let mut history: Vec<u64> = Vec::new();
    let racers = [f.fresh().await, f.fresh().await];
    let mut one_winner = 0;
    for round in 0..RACE_ROUNDS {
        one_winner += u64::from(race_round(&reg, &racers, round, &mut history).await);
    }
    let mut forced = 0;
    for round in RACE_ROUNDS..2 * RACE_ROUNDS {
        let racers = racing_pair(&reg);
        forced += u64::from(race_round(&reg, &racers, round, &mut history).await);
    }
    eprintln!(
        "{}: promotion races with exactly one winner: {one_winner} of {RACE_ROUNDS} \
         on fresh registries, {forced} of {RACE_ROUNDS} on racing pairs",
        f.name
    );
    // On a racing pair both have read the log before either appends.
    assert_eq!(forced, RACE_ROUNDS);

    let state = reg.model("race").await.expect("model");
    let history: Vec<_> = history.into_iter().map(num).collect();
    assert_eq!(state.production_history(), history.as_slice());
    let events = reg.events("race").await.expect("events");
    assert_eq!(ModelState::replay(events).expect("replay"), state);
    assert_eq!(f.fresh().await.model("race").await.expect("model"), state);
}

/// Checks that exactly one of two racing commands succeeded and that the other
/// failed with `ConcurrentChange` on `model`; returns which one won (0 or 1), its
/// event, and what the loser says changed.
pub fn one_winner(model: &str, results: [Result<Event, Error>; 2]) -> (usize, Event, String) {
    match results {
        [Ok(e), Err(Error::ConcurrentChange { model: m, what })] => {
            assert_eq!(m, model);
            (0, e, what)
        }
        [Err(Error::ConcurrentChange { model: m, what }), Ok(e)] => {
            assert_eq!(m, model);
            (1, e, what)
        }
        other => panic!("expected exactly one success and one ConcurrentChange, got {other:?}"),
    }
}

/// Racing pairs (both read the log before either appends) on everything a
/// command pins: two rollbacks at once go back one step, not two; a rollback and
/// a promotion, two moves of one alias, and two moves of one version each have
/// exactly one winner, and the loser, told what changed, wrote nothing.
pub async fn racing_commands_have_one_winner(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "contend").await;
    for i in 1..=5 {
        register_bytes(&reg, "contend", "m.bin", format!("w{i}")).await;
    }
    for n in 1..=3 {
        bring_to(&reg, "contend", n, Stage::Production).await;
    }
    bring_to(&reg, "contend", 4, Stage::Validation).await;
    bring_to(&reg, "contend", 5, Stage::Validation).await;

    // Two operators roll back the same bad release at once.
    let count = event_count(&reg, "contend").await;
    let [a, b] = racing_pair(&reg);
    let (ra, rb) = race(
        async move { a.acting_as(actor("a")).rollback("contend", "").await },
        async move { b.acting_as(actor("b")).rollback("contend", "").await },
    )
    .await;
    let (_, won, what) = one_winner("contend", [ra, rb]);
    assert_eq!(
        won.kind,
        EventKind::RolledBack {
            restored: num(2),
            displaced: num(3),
            reason: String::new(),
        }
    );
    assert_eq!(what, "the production version (was 3, now 2)");
    assert_eq!(event_count(&reg, "contend").await, count + 1);
    assert_eq!(in_production(&reg, "contend").await, Some(2));
    assert_eq!(
        reg.model("contend")
            .await
            .expect("model")
            .production_history(),
        [num(1), num(2)]
    );

    // A rollback and a promotion at once.
    let [a, b] = racing_pair(&reg);
    let (ra, rb) = race(
        async move { a.acting_as(actor("a")).promote("contend/4", "").await },
        async move { b.acting_as(actor("b")).rollback("contend", "").await },
    )
    .await;
    let (winner, won, what) = one_winner("contend", [ra, rb]);
    let now = if winner == 0 {
        assert!(
            matches!(won.kind, EventKind::StageChanged { version, archived: Some(old), .. } if version == num(4) && old == num(2)),
            "{won:?}"
        );
        4
    } else {
        assert!(
            matches!(won.kind, EventKind::RolledBack { restored, displaced, .. } if restored == num(1) && displaced == num(2)),
            "{won:?}"
        );
        assert_eq!(stage_of(&reg, "contend", 4).await, Stage::Validation);
        1
    };
    assert_eq!(what, format!("the production version (was 2, now {now})"));
    assert_eq!(event_count(&reg, "contend").await, count + 2);
    assert_eq!(in_production(&reg, "contend").await, Some(now));

    // Two moves of one alias.
    let [a, b] = racing_pair(&reg);
    let (oa, ob) = (SetAlias::new(), SetAlias::new());
    let (ra, rb) = race(
        async move {
            a.acting_as(actor("a"))
                .set_alias("contend/1", "champion", oa)
                .await
        },
        async move {
            b.acting_as(actor("b"))
                .set_alias("contend/2", "champion", ob)
                .await
        },
    )
    .await;
    let (winner, _, what) = one_winner("contend", [ra, rb]);
    let target = winner as u64 + 1;
    assert_eq!(what, format!("alias 'champion' (was none, now {target})"));
    assert_eq!(
        reg.resolve("contend@champion")
            .await
            .expect("resolve")
            .number,
        num(target)
    );
    assert_eq!(event_count(&reg, "contend").await, count + 3);

    // Two moves of one version, to different stages.
    let [a, b] = racing_pair(&reg);
    let (ra, rb) = race(
        async move {
            a.acting_as(actor("a"))
                .transition("contend/5", Stage::Staging, "")
                .await
        },
        async move {
            b.acting_as(actor("b"))
                .transition("contend/5", Stage::Archived, "")
                .await
        },
    )
    .await;
    let (winner, _, what) = one_winner("contend", [ra, rb]);
    let stage = [Stage::Staging, Stage::Archived][winner];
    assert_eq!(
        what,
        format!("the stage of version 5 (was validation, now {stage})")
    );
    assert_eq!(stage_of(&reg, "contend", 5).await, stage);
    assert_eq!(event_count(&reg, "contend").await, count + 4);
    assert_eq!(
        ModelState::replay(reg.events("contend").await.expect("events")).expect("replay"),
        reg.model("contend").await.expect("model")
    );
}

/// A promotion racing a rejection is judged on the state its event follows: if the
/// rejection lands first, the promotion's retry re-runs the gates and is refused;
/// otherwise the promotion's event comes before the rejection. Either way no
/// promotion in the log follows a standing rejection.
pub async fn gates_judge_the_state_the_event_follows(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "judged").await;
    let alice = actor("alice");
    reg.acting_as(alice.clone())
        .set_gates(
            "judged",
            Stage::Production,
            vec![GateSpec::Approvals {
                required: 1,
                from: BTreeSet::new(),
            }],
        )
        .await
        .expect("gates");
    register_bytes(&reg, "judged", "m.bin", "w").await;
    bring_to(&reg, "judged", 1, Stage::Validation).await;
    reg.acting_as(actor("bob"))
        .approve("judged/1", Stage::Production, "")
        .await
        .expect("approve");
    let count = event_count(&reg, "judged").await;

    let [a, b] = racing_pair(&reg);
    let (promoted, rejected) = race(
        async move { a.acting_as(actor("alice")).promote("judged/1", "").await },
        async move {
            b.acting_as(actor("carol"))
                .reject("judged/1", Stage::Production, "no")
                .await
        },
    )
    .await;
    let rejection = rejected.expect("a decision is not pinned to anything");
    match promoted {
        Ok(e) => {
            assert_eq!((e.seq, rejection.seq), (count as u64 + 1, count as u64 + 2));
            assert!(
                matches!(&e.kind, EventKind::StageChanged { gates, .. }
                    if *gates == [verdict("approvals(1)", true, "approved by bob")]),
                "{e:?}"
            );
            assert_eq!(in_production(&reg, "judged").await, Some(1));
        }
        result => {
            assert_eq!(
                refused(result, "judged", 1, Stage::Production),
                [verdict("approvals(1)", false, "rejected by carol (no)")]
            );
            assert_eq!(rejection.seq, count as u64 + 1);
            assert_eq!(in_production(&reg, "judged").await, None);
        }
    }
    assert_eq!(
        ModelState::replay(reg.events("judged").await.expect("events")).expect("replay"),
        reg.model("judged").await.expect("model")
    );
}

// ----- persistence -----------------------------------------------------------------

/// Lifecycle state (stages, production history, aliases, approvals, gates) goes
/// through checkpoints unchanged: a cold registry starting from the latest
/// checkpoint, one without checkpoints and a replay of the log agree, and the cold
/// one keeps working on top of it (a rollback it makes is seen by the first).
pub async fn lifecycle_state_survives_checkpoints(f: &Fixture) {
    let reg = f.registry_with(|b| b.checkpoint_every(2));
    let alice = actor("alice");
    audited(&reg).await;
    reg.acting_as(actor("dave"))
        .approve("audited/3", Stage::Staging, "ok")
        .await
        .expect("approve"); // 19
    reg.acting_as(alice.clone())
        .set_gates("audited", Stage::Production, vec![])
        .await
        .expect("gates"); // 20
    reg.acting_as(alice.clone())
        .set_alias("audited/2", "stable", SetAlias::new().protected(true))
        .await
        .expect("alias"); // 21
    let validation_gates = vec![
        GateSpec::Approvals {
            required: 2,
            from: BTreeSet::from([actor("bob"), actor("carol")]),
        },
        GateSpec::MetricsNoWorse {
            against: Baseline::Alias(alias("stable")),
            metrics: vec![key("auc")],
        },
    ];
    reg.acting_as(alice.clone())
        .set_gates("audited", Stage::Validation, validation_gates.clone())
        .await
        .expect("gates"); // 22
    let events = reg.events("audited").await.expect("events");
    assert_eq!(events.len(), 22);
    let replayed = ModelState::replay(events.clone()).expect("replay");
    let state = reg.model("audited").await.expect("model");
    assert_eq!(state, replayed);
    assert_eq!(state.production_history(), [num(1), num(2)]);
    assert_eq!(
        state.gates(),
        &BTreeMap::from([(Stage::Validation, validation_gates)])
    );
    assert!(
        state
            .alias(&alias("stable"))
            .is_some_and(|t| t.protected && t.version == num(2))
    );

    let cp = reg
        .metadata_store()
        .latest_checkpoint("audited")
        .await
        .expect("read checkpoint")
        .expect("a checkpoint was written");
    assert_eq!(cp.seq, 22);
    let name = ModelName::new("audited").expect("valid");
    assert_eq!(
        decode_checkpoint(&name, cp.seq, &cp.bytes).expect("decodes"),
        replayed
    );
    let cold = f.fresh().await;
    assert_eq!(cold.model("audited").await.expect("model"), replayed);
    let none = f.registry_with(|b| b.checkpoint_every(0));
    assert_eq!(none.model("audited").await.expect("model"), replayed);

    let e = cold
        .acting_as(alice.clone())
        .rollback("audited", "")
        .await
        .expect("rollback");
    assert_eq!(
        e.kind,
        EventKind::RolledBack {
            restored: num(1),
            displaced: num(2),
            reason: String::new(),
        }
    );
    assert_eq!(in_production(&reg, "audited").await, Some(1));
    assert_eq!(
        reg.model("audited").await.expect("model"),
        ModelState::replay(reg.events("audited").await.expect("events")).expect("replay")
    );
}

/// Events of the kinds a format-1 build knows are still written as format 1, so
/// such a build can read a log that uses no lifecycle; lifecycle events are
/// format 2, also after a model's first lifecycle event, format scans 3 and
/// signatures 5 and description edits 6 (purges, 4, are checked in
/// `retention_suite.rs`).
pub async fn lifecycle_events_are_format_2(f: &Fixture) {
    assert_eq!(modelreg::format::EVENT_FORMAT, 6);
    let reg = f.registry();
    audited(&reg).await;
    let alice = actor("alice");
    // Old kinds after lifecycle ones.
    register_bytes(&reg, "audited", "m.bin", "w4").await;
    reg.acting_as(alice.clone())
        .add_metrics("audited/4", metrics(&[("auc", 0.5)]))
        .await
        .expect("metrics");
    reg.acting_as(alice.clone())
        .deprecate("audited/4", "never mind")
        .await
        .expect("deprecate");
    reg.acting_as(alice.clone())
        .scan_formats("audited/4")
        .await
        .expect("scan");
    reg.acting_as(alice.clone())
        .set_version_description("audited/4", "kept for the record")
        .await
        .expect("describe");
    let records = reg
        .metadata_store()
        .read_after("audited", 0, 100)
        .await
        .expect("read log");
    let expected = BTreeMap::from([
        ("model_created", 1),
        ("version_registered", 1),
        ("metrics_added", 1),
        ("version_deprecated", 1),
        ("stage_changed", 2),
        ("approval_recorded", 2),
        ("alias_set", 2),
        ("alias_removed", 2),
        ("rolled_back", 2),
        ("gates_set", 2),
        ("formats_scanned", 3),
        ("version_description_set", 6),
    ]);
    let mut seen = BTreeSet::new();
    for rec in &records {
        // A record is its JSON line, then its checksum line.
        let line = rec
            .bytes
            .split(|b| *b == b'\n')
            .next()
            .expect("a JSON line");
        let json: serde_json::Value = serde_json::from_slice(line).expect("json record");
        let kind = json["event"]["type"].as_str().expect("a type").to_owned();
        let format = json["format"].as_u64().expect("a format");
        assert_eq!(
            Some(&format),
            expected.get(kind.as_str()),
            "event {} ({kind})",
            rec.seq
        );
        seen.insert(kind);
    }
    assert_eq!(
        seen,
        expected
            .keys()
            .map(|k| (*k).to_owned())
            .collect::<BTreeSet<_>>()
    );
}

/// `promote_to` walks the path one audited move at a time and stops at the first
/// gate that refuses, keeping the steps before it.
pub async fn promote_to_walks_the_path_and_stops_at_a_refusing_gate(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "walk").await;
    let lead = reg.acting_as(actor("lead"));
    lead.set_gates(
        "walk",
        Stage::Production,
        vec![GateSpec::Approvals {
            required: 1,
            from: Default::default(),
        }],
    )
    .await
    .expect("gates");
    let ci = reg.acting_as(actor("ci"));
    let v = ci
        .register(
            "walk",
            ArtifactSource::bytes("m.bin", "w").expect("path"),
            NewVersion::new(),
        )
        .await
        .expect("register");
    let refused = ci.promote_to(&v, Stage::Production, "ship").await;
    match refused {
        Err(Error::GateRejected { failed, to, .. }) => {
            assert_eq!(to, Stage::Production);
            assert_eq!(failed.len(), 1);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        reg.resolve(&v).await.expect("resolve").stage,
        Stage::Validation
    );
    let moves = reg
        .history("walk", &HistoryFilter::new().kind("stage_changed"))
        .await
        .expect("history");
    assert_eq!(moves.len(), 2);
    assert!(moves.iter().all(|e| e.actor.as_str() == "ci"));
    lead.approve(&v, Stage::Production, "ok")
        .await
        .expect("approve");
    let events = ci
        .promote_to(&v, Stage::Production, "ship")
        .await
        .expect("promote");
    assert_eq!(events.len(), 1);
    assert_eq!(
        reg.resolve("walk@production")
            .await
            .expect("production")
            .number,
        v.number
    );
    assert!(
        ci.promote_to(&v, Stage::Production, "again")
            .await
            .expect("no-op")
            .is_empty()
    );
    assert!(matches!(
        ci.promote_to(&v, Stage::None, "back").await,
        Err(Error::InvalidTransition { .. })
    ));
}

/// The audit trail in pages, newest first, filtered, and the same events as the
/// whole history in the same order.
pub async fn history_pages_cover_the_trail_newest_first(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "paged").await;
    let (ci, ops) = (reg.acting_as(actor("ci")), reg.acting_as(actor("ops")));
    for i in 0..7 {
        let v = ci
            .register(
                "paged",
                ArtifactSource::bytes("m.bin", format!("w{i}")).expect("path"),
                NewVersion::new(),
            )
            .await
            .expect("register");
        if i % 2 == 0 {
            ops.transition(&v, Stage::Staging, "try")
                .await
                .expect("stage");
        }
    }
    for filter in [
        HistoryFilter::new(),
        HistoryFilter::new().actor(actor("ops")),
        HistoryFilter::new().kind("version_registered"),
    ] {
        let whole = reg.history("paged", &filter).await.expect("history");
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = reg
                .history_page("paged", &filter, before, 3)
                .await
                .expect("page");
            assert!(page.items.len() <= 3);
            paged.extend(page.items);
            match page.next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        let seqs = |es: &[Event]| es.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&paged), seqs(&whole), "{filter:?}");
    }
    let first = reg
        .history("paged", &HistoryFilter::new())
        .await
        .expect("history");
    let last_time = first[0].time;
    let none_after = reg
        .history_page(
            "paged",
            &HistoryFilter::new().since(last_time + chrono::TimeDelta::seconds(1)),
            None,
            5,
        )
        .await
        .expect("page");
    assert!(none_after.items.is_empty());
    assert_eq!(none_after.next, None);
}

/// The history read backwards from the log's end (`history`, `history_page`)
/// returns exactly what a full forward read of the log (`events`), filtered and
/// reversed, returns: for random filters (versions, actors, kinds, time windows),
/// page sizes and starting points, over a log whose first part is covered by
/// checkpoints (read through a registry that loaded from one); and at the edges
/// (no such model, a log of one event, fewer events than asked, a filter that
/// matches nothing).
pub async fn history_tail_agrees_with_a_full_read(f: &Fixture) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let reg = f.registry_with(|b| b.checkpoint_every(7));
    create(&reg, "tail").await;
    let actors = ["ci", "ops", "qa"];
    let mut times = Vec::new();
    for i in 0..24u64 {
        let who = reg.acting_as(actor(actors[i as usize % 3]));
        let v = who
            .register(
                "tail",
                ArtifactSource::bytes("m.bin", format!("w{i}")).expect("path"),
                NewVersion::new(),
            )
            .await
            .expect("register");
        if i % 3 == 0 {
            let ops = reg.acting_as(actor("ops"));
            for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
                ops.transition(&v, stage, "walk").await.expect("transition");
            }
        }
        if i % 5 == 0 {
            // A late evaluation; the version may be in production already,
            // whose metrics only an audited override changes.
            reg.acting_as(actor("qa"))
                .override_immutable("late evaluation")
                .add_metrics(&v, [("auc", 0.5 + i as f64 / 100.0)])
                .await
                .expect("metrics");
        }
        times.push(Utc::now());
    }
    reg.acting_as(actor("ops"))
        .rollback("tail", "bad")
        .await
        .expect("rollback");

    // Another process's view: its state comes from the latest checkpoint, so
    // everything before it is only in the log.
    let fresh = f.fresh().await;
    let newest = fresh.model("tail").await.expect("model").seq();
    let full = reg.events("tail").await.expect("events");
    assert_eq!(full.len() as u64, newest);
    let seqs = |es: &[Event]| es.iter().map(|e| e.seq).collect::<Vec<_>>();
    let kinds = [
        "version_registered",
        "stage_changed",
        "metrics_added",
        "rolled_back",
        "model_created",
        "alias_set",
    ];
    let strategy = (
        proptest::option::of(1u64..=26),
        proptest::option::of(0usize..4),
        proptest::collection::vec(0usize..kinds.len(), 0..3),
        proptest::option::of(0usize..times.len()),
        proptest::option::of(0usize..times.len()),
        1usize..40,
        proptest::option::of(0u64..=newest + 2),
    );
    let mut runner = TestRunner::deterministic();
    for case in 0..48 {
        let (version, who, picked, since, until, limit, before) =
            strategy.new_tree(&mut runner).expect("case").current();
        let mut filter = HistoryFilter::new();
        if let Some(v) = version {
            filter = filter.version(num(v));
        }
        if let Some(a) = who {
            filter = filter.actor(actor(["alice", "ci", "ops", "qa"][a]));
        }
        for k in picked {
            filter = filter.kind(kinds[k]);
        }
        if let Some(i) = since {
            filter = filter.since(times[i]);
        }
        if let Some(i) = until {
            filter = filter.until(times[i]);
        }
        let expected: Vec<Event> = full
            .iter()
            .rev()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        let what = format!(
            "{} case {case}: {filter:?}, limit {limit}, before {before:?}",
            f.name
        );
        for r in [&reg, &fresh] {
            let whole = r.history("tail", &filter).await.expect("history");
            assert_eq!(seqs(&whole), seqs(&expected), "{what}");
            assert_eq!(whole, expected, "{what}");
            // Pages from `before`, concatenated: the expected events older than it.
            let older: Vec<u64> = seqs(&expected)
                .into_iter()
                .filter(|s| before.is_none_or(|b| *s < b))
                .collect();
            let mut paged = Vec::new();
            let mut at = before;
            for _ in 0..=newest {
                let page = r
                    .history_page("tail", &filter, at, limit)
                    .await
                    .expect("page");
                assert!(page.items.len() <= limit, "{what}");
                if at == before {
                    let want = &older[..older.len().min(limit)];
                    assert_eq!(seqs(&page.items), want, "first page, {what}");
                }
                paged.extend(page.items);
                match page.next {
                    Some(n) => {
                        assert!(at.is_none_or(|b| n < b), "next moves back, {what}");
                        at = Some(n);
                    }
                    None => break,
                }
            }
            assert_eq!(seqs(&paged), older, "pages, {what}");
        }
    }

    // Edges.
    assert!(matches!(
        reg.history("no-such", &HistoryFilter::new()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        reg.history_page("no-such", &HistoryFilter::new(), None, 100)
            .await,
        Err(Error::NotFound { .. })
    ));
    create(&reg, "lone").await;
    let lone = reg
        .history_page("lone", &HistoryFilter::new(), None, 100)
        .await
        .expect("page");
    assert_eq!(seqs(&lone.items), [1]);
    assert_eq!(lone.next, None);
    let all = reg
        .history_page("tail", &HistoryFilter::new(), None, 10_000)
        .await
        .expect("page");
    assert_eq!(all.items.len() as u64, newest, "fewer events than asked");
    assert_eq!(all.next, None);
    let nothing = reg
        .history_page("tail", &HistoryFilter::new().kind("gates_set"), None, 100)
        .await
        .expect("page");
    assert!(nothing.items.is_empty());
    assert_eq!(
        nothing.next, None,
        "a filter matching nothing reads to the start"
    );
}

// ----- format policy and immutability -----------------------------------------

/// A torch state dict `{"weight": tensor}` pickled at protocol 2, as the
/// legacy `torch.save` body and `data.pkl` in its archives hold it.
fn state_dict_pickle() -> Vec<u8> {
    let s = |text: &str| {
        let mut b = vec![b'X'];
        b.extend_from_slice(&(text.len() as u32).to_le_bytes());
        b.extend_from_slice(text.as_bytes());
        b
    };
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01".to_vec();
    p.extend(s("weight"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(s("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(s("0"));
    p.extend(s("cpu"));
    p.extend(b"K\x04tQK\x00K\x02K\x02\x86K\x02K\x01\x86\x89h\x00)RtRs.");
    p
}

const OS_SYSTEM: &[u8] = b"cos\nsystem\n(S'echo pwned'\ntR.";

/// The `format_policy` gate decides from the scan recorded in the log: a
/// version never scanned is refused, a scanned one passes or fails on its
/// recorded verdicts (each refused file with its reason), a format outside the
/// gate's list fails, and the passing verdict is recorded in the event.
pub async fn format_policy_gate_decides_from_recorded_scans(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "fmt").await;
    let alice = reg.acting_as(actor("alice"));
    alice
        .set_gates(
            "fmt",
            Stage::Staging,
            vec![GateSpec::FormatPolicy { formats: vec![] }],
        )
        .await
        .expect("gates");
    let register = |files: Vec<(&'static str, Vec<u8>)>| {
        let reg = reg.clone();
        async move {
            reg.acting_as(actor("ci"))
                .register(
                    "fmt",
                    ArtifactSource::files(files).expect("paths"),
                    NewVersion::new(),
                )
                .await
                .expect("register")
                .version
        }
    };
    let mut st = 13u64.to_le_bytes().to_vec();
    st.extend_from_slice(br#"{"w": "x"}   "#);
    let v1 = register(vec![
        ("model.safetensors", st.clone()),
        ("config.json", br#"{"hidden": 8}"#.to_vec()),
        ("tokenizer.json", b"{}".to_vec()),
    ])
    .await;

    // Never scanned: refused, nothing written.
    let before = snapshot(&reg, "fmt").await;
    let result = alice.transition(&v1, Stage::Staging, "").await;
    assert_eq!(
        refused(result, "fmt", 1, Stage::Staging),
        [verdict(
            "format_policy",
            false,
            "v1 has no format scan recorded (scan_formats first)"
        )]
    );
    assert_eq!(snapshot(&reg, "fmt").await, before);

    let scan = reg
        .acting_as(actor("scanner"))
        .scan_formats(&v1)
        .await
        .expect("scan");
    assert_eq!(scan.scanner, modelreg::scan::SCANNER_VERSION);
    assert_eq!(scan.by.as_str(), "scanner");
    assert_eq!(scan.data_files, 2);
    assert_eq!(
        scan.files
            .iter()
            .map(|f| (f.path.as_str(), f.format, f.passed()))
            .collect::<Vec<_>>(),
        [(
            "model.safetensors",
            modelreg::scan::FileFormat::Safetensors,
            true
        )]
    );
    assert_eq!(
        reg.resolve("fmt/1").await.expect("v1").scan,
        Some(scan.clone())
    );
    let e = alice
        .transition(&v1, Stage::Staging, "")
        .await
        .expect("a scanned clean version passes");
    let EventKind::StageChanged { gates, .. } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].gate, "format_policy");
    assert!(gates[0].passed);
    assert!(
        gates[0].reason.starts_with("scanned by scanner at ")
            && gates[0]
                .reason
                .ends_with("(scanner 1): 1 safetensors, 2 data"),
        "{}",
        gates[0].reason
    );
    // The scan is an audited event of its own.
    let trail = reg
        .history("fmt", &HistoryFilter::new().kind("formats_scanned"))
        .await
        .expect("history");
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].actor.as_str(), "scanner");

    // A pickle calling os.system beside a clean state dict: refused, with the
    // file and the reason.
    let v2 = register(vec![
        ("weights.pt", state_dict_pickle()),
        ("extra/model.pkl", OS_SYSTEM.to_vec()),
    ])
    .await;
    let scan = alice.scan_formats(&v2).await.expect("scan");
    assert_eq!(scan.refused().count(), 1);
    let before = snapshot(&reg, "fmt").await;
    let result = alice.transition(&v2, Stage::Staging, "").await;
    assert_eq!(
        refused(result, "fmt", 2, Stage::Staging),
        [verdict(
            "format_policy",
            false,
            "extra/model.pkl (pickle): global os.system at byte 0 is not on the allowlist"
        )]
    );
    assert_eq!(snapshot(&reg, "fmt").await, before);

    // A clean pickle passes the default policy, and fails one without pickles.
    let v3 = register(vec![("weights.pt", state_dict_pickle())]).await;
    alice.scan_formats(&v3).await.expect("scan");
    alice
        .transition(&v3, Stage::Staging, "")
        .await
        .expect("allowlisted globals only");
    use modelreg::scan::FileFormat::{Data, Gguf, Onnx, Safetensors};
    alice
        .set_gates(
            "fmt",
            Stage::Validation,
            vec![GateSpec::FormatPolicy {
                formats: vec![Safetensors, Gguf, Onnx, Data],
            }],
        )
        .await
        .expect("gates");
    let result = alice.transition(&v3, Stage::Validation, "").await;
    assert_eq!(
        refused(result, "fmt", 3, Stage::Validation),
        [verdict(
            "format_policy(safetensors,gguf,onnx,data)",
            false,
            "weights.pt is pickle, not an allowed format"
        )]
    );
    alice
        .transition(&v1, Stage::Validation, "")
        .await
        .expect("safetensors and data only");

    // The spec round-trips through the log: a fresh registry applies it.
    let gates = f
        .fresh()
        .await
        .model("fmt")
        .await
        .expect("model")
        .gates()
        .clone();
    assert_eq!(
        gates[&Stage::Validation],
        [GateSpec::FormatPolicy {
            formats: vec![Safetensors, Gguf, Onnx, Data]
        }]
    );
}

/// Tags and metrics of a version in production are fixed: editing them is
/// `Error::Immutable` and changes nothing; an override with a reason changes
/// them and the event records who and why. Other stages stay editable.
pub async fn production_versions_are_immutable_except_by_override(f: &Fixture) {
    let reg = f.registry();
    create(&reg, "imm").await;
    register_bytes(&reg, "imm", "m.onnx", "one").await;
    register_bytes(&reg, "imm", "m.onnx", "two").await;
    bring_to(&reg, "imm", 1, Stage::Production).await;
    bring_to(&reg, "imm", 2, Stage::Validation).await;
    let alice = reg.acting_as(actor("alice"));
    let tags =
        |v: &str| modelreg::Tags::from([(modelreg::TagKey::new("team").expect("key"), v.into())]);

    let before = snapshot(&reg, "imm").await;
    let e = assert_err!(
        alice.set_version_tags("imm/1", tags("x"), vec![]).await,
        Error::Immutable { .. }
    );
    assert!(
        matches!(&e, Error::Immutable { model, version: 1, stage: Stage::Production, what: "tags" } if model == "imm"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "imm/1 is in production: its tags cannot be changed without an explicit override (override_immutable with a reason)"
    );
    let e = assert_err!(
        alice
            .add_metrics("imm@production", metrics(&[("auc", 0.5)]))
            .await,
        Error::Immutable { .. }
    );
    assert!(
        matches!(
            e,
            Error::Immutable {
                what: "metrics",
                ..
            }
        ),
        "{e:?}"
    );
    let e = assert_err!(
        alice
            .set_version_tags(
                "imm/1",
                modelreg::Tags::new(),
                vec![modelreg::TagKey::new("team").expect("key")]
            )
            .await,
        Error::Immutable { .. }
    );
    assert!(matches!(e, Error::Immutable { what: "tags", .. }));
    assert_eq!(snapshot(&reg, "imm").await, before);

    // Not in production: editable as before.
    alice
        .set_version_tags("imm/2", tags("y"), vec![])
        .await
        .expect("validation is editable");

    // An override needs a reason.
    assert_err!(
        alice
            .override_immutable("  ")
            .set_version_tags("imm/1", tags("x"), vec![])
            .await,
        Error::InvalidInput { .. }
    );
    let o = alice.override_immutable("the team tag was missing at promotion");
    let v = o
        .set_version_tags("imm/1", tags("fraud"), vec![])
        .await
        .expect("override tags");
    assert_eq!(v.tags, tags("fraud"));
    let v = o
        .add_metrics("imm/1", metrics(&[("auc", 0.93)]))
        .await
        .expect("override metrics");
    assert_eq!(v.metrics.get("auc"), Some(0.93));
    let trail = reg
        .history("imm", &HistoryFilter::new().version(num(1)))
        .await
        .expect("history");
    assert!(
        matches!(&trail[0].kind, EventKind::MetricsAdded { overridden: Some(why), .. } if why == "the team tag was missing at promotion"),
        "{:?}",
        trail[0]
    );
    assert!(matches!(
        &trail[1].kind,
        EventKind::TagsSet {
            overridden: Some(_),
            ..
        }
    ));
    assert_eq!(
        (trail[0].actor.as_str(), trail[1].actor.as_str()),
        ("alice", "alice")
    );
    // The state another registry folds from the log is the same.
    assert_eq!(
        f.fresh().await.resolve("imm/1").await.expect("v1").tags,
        tags("fraud")
    );

    // Archived out of production, the version is editable again.
    bring_to(&reg, "imm", 2, Stage::Production).await;
    alice
        .set_version_tags("imm/1", tags("archived"), vec![])
        .await
        .expect("archived is editable");
}

/// A version's description is edited like its tags: freely before
/// production, refused there with `Error::Immutable` naming `description`
/// (nothing written), and through an override whose reason the event keeps.
/// Each edit is an event, so the old text stays in the history; the state
/// through checkpoints and a fresh fold agree; the length limit holds.
pub async fn version_descriptions_are_editable_until_production(f: &Fixture) {
    let reg = f.registry_with(|b| b.checkpoint_every(2));
    create(&reg, "desc").await;
    register_bytes(&reg, "desc", "m.onnx", "one").await;
    let alice = reg.acting_as(actor("alice"));
    bring_to(&reg, "desc", 1, Stage::Staging).await;
    let v = alice
        .set_version_description("desc/1", "first try")
        .await
        .expect("staging is editable");
    assert_eq!(v.description, "first try");
    let v = alice
        .set_version_description("desc@staging", "fraud model, <b>v1</b> & \"friends\"")
        .await
        .expect("edit again");
    assert_eq!(v.description, "fraud model, <b>v1</b> & \"friends\"");
    assert_err!(
        alice
            .set_version_description("desc/1", "x".repeat(65_537))
            .await,
        Error::TooLarge { .. }
    );
    alice
        .set_version_description("desc/1", "y".repeat(65_536))
        .await
        .expect("at the limit");
    alice
        .set_version_description("desc/1", "")
        .await
        .expect("cleared");
    assert_eq!(reg.resolve("desc/1").await.expect("v1").description, "");
    alice
        .set_version_description("desc/1", "serves fraud scores")
        .await
        .expect("set");
    assert_err!(
        alice.set_version_description("desc/9", "nope").await,
        Error::NotFound { .. }
    );

    for s in [Stage::Validation, Stage::Production] {
        alice.transition("desc/1", s, "up").await.expect("move");
    }
    let before = snapshot(&reg, "desc").await;
    let e = assert_err!(
        alice.set_version_description("desc/1", "typo fixed").await,
        Error::Immutable { .. }
    );
    assert!(
        matches!(&e, Error::Immutable { model, version: 1, stage: Stage::Production, what: "description" } if model == "desc"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "desc/1 is in production: its description cannot be changed without an explicit override (override_immutable with a reason)"
    );
    assert_eq!(snapshot(&reg, "desc").await, before);
    assert_err!(
        alice
            .override_immutable("")
            .set_version_description("desc/1", "typo fixed")
            .await,
        Error::InvalidInput { .. }
    );
    assert_eq!(snapshot(&reg, "desc").await, before);

    let v = alice
        .override_immutable("the description named the wrong dataset")
        .set_version_description("desc/1", "serves fraud scores (trained on tx-2026-10)")
        .await
        .expect("override");
    assert_eq!(v.description, "serves fraud scores (trained on tx-2026-10)");
    let trail = reg
        .history(
            "desc",
            &HistoryFilter::new().kind("version_description_set"),
        )
        .await
        .expect("history");
    assert_eq!(trail.len(), 6, "{trail:?}");
    assert_eq!(trail[0].actor.as_str(), "alice");
    assert_eq!(
        trail[0].kind,
        EventKind::VersionDescriptionSet {
            version: num(1),
            description: "serves fraud scores (trained on tx-2026-10)".into(),
            overridden: Some("the description named the wrong dataset".into()),
        }
    );
    assert!(
        matches!(&trail[1].kind, EventKind::VersionDescriptionSet { overridden: None, description, .. } if description == "serves fraud scores"),
        "{:?}",
        trail[1]
    );

    // Checkpoints, a cold registry and a replay of the log agree.
    let replayed = ModelState::replay(reg.events("desc").await.expect("events")).expect("replay");
    assert_eq!(reg.model("desc").await.expect("model"), replayed);
    assert_eq!(
        f.fresh().await.model("desc").await.expect("model"),
        replayed
    );
    assert_eq!(
        f.registry_with(|b| b.checkpoint_every(0))
            .model("desc")
            .await
            .expect("model"),
        replayed
    );
    assert_eq!(
        replayed.version(num(1)).expect("v1").description,
        "serves fraud scores (trained on tx-2026-10)"
    );
}

// The signed-version tests live in their own file and run in this suite
// (`tests/registry_behaviour.rs` lists them with the lifecycle tests).
#[allow(unused_imports)]
pub use super::signing_suite::{
    external_bundles_attach_only_when_they_match,
    fetch_with_a_trust_policy_hands_out_only_signed_versions,
    model_cache_with_a_trust_policy_hands_out_only_signed_versions,
    signed_gate_counts_distinct_accepted_keys, signing_records_audited_signatures_that_verify,
};
