//! The lifecycle end to end: three versions move through staging and validation
//! to production behind gates and approvals; one promotion is refused and says
//! why; production rolls back; the audit trail and "what was in production at
//! time T" are printed.
//!
//! ```text
//! cargo run --example lifecycle
//! ```

use std::collections::BTreeSet;

use modelreg::{
    Actor, ArtifactSource, Baseline, CreateModel, DatasetRef, DatasetRole, Error, EventKind,
    GateSpec, HistoryFilter, MetricSpec, NewVersion, Registered, Registry, Session, SetAlias,
    Stage,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let registry = Registry::open_local(dir.path().join("registry")).await?;
    let ml = registry.acting_as(Actor::new("trainer@example.com")?);
    let lead = registry.acting_as(Actor::new("lead@example.com")?);
    let risk = registry.acting_as(Actor::new("risk-officer@example.com")?);

    ml.create_model(
        "fraud",
        CreateModel::new()
            .description("card fraud scoring")
            .metric("auc", MetricSpec::maximize().with_tolerance(0.002))
            .metric("latency_ms", MetricSpec::minimize().with_tolerance(1.0)),
    )
    .await?;

    // Gates stored in the model's log: every writer on every machine applies them.
    lead.set_gates(
        "fraud",
        Stage::Production,
        vec![
            GateSpec::MetricsNoWorse {
                against: Baseline::Production,
                metrics: vec![],
            },
            GateSpec::Approvals {
                required: 2,
                from: BTreeSet::from([lead.actor().clone(), risk.actor().clone()]),
            },
            GateSpec::ProvenanceComplete,
        ],
    )
    .await?;
    lead.set_gates(
        "fraud",
        Stage::Validation,
        vec![GateSpec::MinTimeInStage { seconds: 0 }],
    )
    .await?;
    println!(
        "gates: production needs no metric regression, 2 approvals (lead, risk) and provenance"
    );

    // Three candidates: v1 the baseline, v2 better, v3 worse.
    let v1 = candidate(&ml, 1, 0.910, 12.0).await?;
    let v2 = candidate(&ml, 2, 0.924, 11.5).await?;
    let v3 = candidate(&ml, 3, 0.905, 14.0).await?;

    // v1 to production: approvals from the lead and risk.
    lead.approve(&v1, Stage::Production, "baseline").await?;
    risk.approve(&v1, Stage::Production, "ok").await?;
    ml.promote(&v1, "first production model").await?;
    println!("fraud@production = {}", v1.reference());

    // v2 with only one approval: refused, nothing changes.
    lead.approve(&v2, Stage::Production, "better auc").await?;
    match ml.promote(&v2, "better auc").await {
        Err(Error::GateRejected { failed, .. }) => {
            println!("promoting {} refused:", v2.reference());
            for f in failed {
                println!("  {}: {}", f.gate, f.reason);
            }
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    risk.approve(&v2, Stage::Production, "ok").await?;
    let promoted = ml.promote(&v2, "better auc").await?;
    if let EventKind::StageChanged {
        gates, archived, ..
    } = &promoted.kind
    {
        println!(
            "{} promoted (archived v{}):",
            v2.reference(),
            archived.map_or(0, |n| n.get())
        );
        for g in gates {
            println!("  passed {}: {}", g.gate, g.reason);
        }
    }
    let before_v3 = promoted.time;

    // v3 regresses: the metrics gate refuses even with both approvals.
    lead.approve(&v3, Stage::Production, "").await?;
    risk.approve(&v3, Stage::Production, "").await?;
    if let Err(e) = ml.promote(&v3, "new features").await {
        println!("promoting {} refused: {e}", v3.reference());
    }

    // A protected alias moves only through the same gates.
    ml.set_alias(
        &v2,
        "champion",
        SetAlias::new().protected(true).reason("current best"),
    )
    .await?;

    // An incident: roll back to v1, one audited event.
    let rb = lead
        .rollback("fraud", "fraud/2 misfires on new card type")
        .await?;
    println!(
        "rolled back: fraud@production = {}",
        registry.resolve("fraud@production").await?.reference()
    );

    println!("\naudit trail of fraud's production stage, newest first:");
    let trail = registry
        .history(
            "fraud",
            &HistoryFilter::new()
                .kind("stage_changed")
                .kind("rolled_back")
                .kind("approval_recorded"),
        )
        .await?;
    for e in &trail {
        let what = match &e.kind {
            EventKind::StageChanged {
                version, from, to, ..
            } => format!("v{version} {from} -> {to}"),
            EventKind::RolledBack {
                restored,
                displaced,
                ..
            } => format!("rollback v{displaced} -> v{restored}"),
            EventKind::ApprovalRecorded {
                version,
                stage,
                decision,
                ..
            } => format!("{decision:?} v{version} for {stage}"),
            other => other.name().to_owned(),
        };
        println!(
            "  #{:<3} {}  {:<26} {}",
            e.seq,
            e.time.format("%H:%M:%S%.3f"),
            e.actor,
            what
        );
    }

    let then = registry
        .resolve_as_of("fraud@production", before_v3)
        .await?;
    let now = registry.resolve("fraud@production").await?;
    println!(
        "\nin production at {}: {}; after the rollback at {}: {}",
        before_v3.format("%H:%M:%S%.3f"),
        then.reference(),
        rb.time.format("%H:%M:%S%.3f"),
        now.reference()
    );
    Ok(())
}

/// Registers candidate `i` with its metrics and provenance, and moves it through
/// staging to validation.
async fn candidate(
    ml: &Session,
    i: u32,
    auc: f64,
    latency_ms: f64,
) -> modelreg::Result<Registered> {
    let v = ml
        .register(
            "fraud",
            ArtifactSource::bytes("model.bin", format!("weights of candidate {i}"))?,
            NewVersion::new()
                .metric("auc", auc)
                .metric("latency_ms", latency_ms)
                .code_commit(format!("c0ffee{i}"))
                .dataset(DatasetRef::new("transactions", DatasetRole::Train).version("2026-11")),
        )
        .await?;
    println!(
        "registered {} auc={auc} latency={latency_ms}ms",
        v.reference()
    );
    ml.transition(&v, Stage::Staging, "smoke tests passed")
        .await?;
    ml.transition(&v, Stage::Validation, "offline eval done")
        .await?;
    Ok(v)
}
