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
    Actor, ArtifactSource, Baseline, CodeRef, CreateModel, DatasetRef, DatasetRole, Error,
    EventKind, GateSpec, HistoryFilter, MetricSpec, Metrics, NewVersion, Provenance, Registry,
    SetAlias, Stage,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let registry = Registry::open_local(dir.path().join("registry")).await?;
    let ml = Actor::new("trainer@example.com")?;
    let lead = Actor::new("lead@example.com")?;
    let risk = Actor::new("risk-officer@example.com")?;

    registry
        .acting_as(ml.clone())
        .create_model(
            "fraud",
            CreateModel::new()
                .description("card fraud scoring")
                .metric("auc", MetricSpec::maximize().with_tolerance(0.002))
                .metric("latency_ms", MetricSpec::minimize().with_tolerance(1.0)),
        )
        .await?;

    // Gates stored in the model's log: every writer on every machine applies them.
    registry
        .acting_as(lead.clone())
        .set_gates(
            "fraud",
            Stage::Production,
            vec![
                GateSpec::MetricsNoWorse {
                    against: Baseline::Production,
                    metrics: vec![],
                },
                GateSpec::Approvals {
                    required: 2,
                    from: BTreeSet::from([lead.clone(), risk.clone()]),
                },
                GateSpec::ProvenanceComplete,
            ],
        )
        .await?;
    registry
        .acting_as(lead.clone())
        .set_gates(
            "fraud",
            Stage::Validation,
            vec![GateSpec::MinTimeInStage { seconds: 0 }],
        )
        .await?;
    println!(
        "gates: production needs no metric regression, 2 approvals (lead, risk) and provenance"
    );

    // Three versions: v1 the baseline, v2 better, v3 worse.
    for (i, auc, latency) in [(1, 0.910, 12.0), (2, 0.924, 11.5), (3, 0.905, 14.0)] {
        let v = registry
            .acting_as(ml.clone())
            .register(
                "fraud",
                ArtifactSource::bytes("model.bin", format!("weights of candidate {i}"))?,
                NewVersion::new()
                    .provenance(Provenance {
                        code: Some(CodeRef {
                            repository: None,
                            commit: format!("c0ffee{i}"),
                            dirty: false,
                        }),
                        datasets: vec![
                            DatasetRef::new("transactions", DatasetRole::Train).version("2026-11"),
                        ],
                        ..Provenance::default()
                    })
                    .metrics(
                        Metrics::new()
                            .with("auc", auc)?
                            .with("latency_ms", latency)?,
                    ),
            )
            .await?;
        println!(
            "registered fraud/{} auc={auc} latency={latency}ms",
            v.number
        );
        let r = format!("fraud/{}", v.number);
        registry
            .acting_as(ml.clone())
            .transition(&*r, Stage::Staging, "smoke tests passed")
            .await?;
        registry
            .acting_as(ml.clone())
            .transition(&*r, Stage::Validation, "offline eval done")
            .await?;
    }

    // v1 to production: approvals from the lead and risk.
    registry
        .acting_as(lead.clone())
        .approve("fraud/1", Stage::Production, "baseline")
        .await?;
    registry
        .acting_as(risk.clone())
        .approve("fraud/1", Stage::Production, "ok")
        .await?;
    registry
        .acting_as(ml.clone())
        .promote("fraud/1", "first production model")
        .await?;
    println!("fraud@production = fraud/1");

    // v2 with only one approval: refused, nothing changes.
    registry
        .acting_as(lead.clone())
        .approve("fraud/2", Stage::Production, "better auc")
        .await?;
    match registry
        .acting_as(ml.clone())
        .promote("fraud/2", "better auc")
        .await
    {
        Err(Error::GateRejected { failed, .. }) => {
            println!("promoting fraud/2 refused:");
            for f in failed {
                println!("  {}: {}", f.gate, f.reason);
            }
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    registry
        .acting_as(risk.clone())
        .approve("fraud/2", Stage::Production, "ok")
        .await?;
    let promoted = registry
        .acting_as(ml.clone())
        .promote("fraud/2", "better auc")
        .await?;
    if let EventKind::StageChanged {
        gates, archived, ..
    } = &promoted.kind
    {
        println!(
            "fraud/2 promoted (archived fraud/{}):",
            archived.map_or(0, |n| n.get())
        );
        for g in gates {
            println!("  passed {}: {}", g.gate, g.reason);
        }
    }
    let before_v3 = promoted.time;

    // v3 regresses: the metrics gate refuses even with both approvals.
    registry
        .acting_as(lead.clone())
        .approve("fraud/3", Stage::Production, "")
        .await?;
    registry
        .acting_as(risk.clone())
        .approve("fraud/3", Stage::Production, "")
        .await?;
    if let Err(e) = registry
        .acting_as(ml.clone())
        .promote("fraud/3", "new features")
        .await
    {
        println!("promoting fraud/3 refused: {e}");
    }

    // A protected alias moves only through the same gates.
    registry
        .acting_as(ml.clone())
        .set_alias(
            "fraud/2",
            "champion",
            SetAlias::new().protected(true).reason("current best"),
        )
        .await?;

    // An incident: roll back to v1, one audited event.
    let rb = registry
        .acting_as(lead.clone())
        .rollback("fraud", "fraud/2 misfires on new card type")
        .await?;
    println!(
        "rolled back: fraud@production = fraud/{}",
        registry.resolve("fraud@production").await?.number
    );

    println!("\naudit trail of the production stage, newest first:");
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
            } => format!("fraud/{version} {from} -> {to}"),
            EventKind::RolledBack {
                restored,
                displaced,
                ..
            } => format!("rollback fraud/{displaced} -> fraud/{restored}"),
            EventKind::ApprovalRecorded {
                version,
                stage,
                decision,
                ..
            } => format!("{decision:?} fraud/{version} for {stage}"),
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
        "\nin production at {}: fraud/{}; after the rollback at {}: fraud/{}",
        before_v3.format("%H:%M:%S%.3f"),
        then.number,
        rb.time.format("%H:%M:%S%.3f"),
        now.number
    );
    Ok(())
}
