//! Compare a fine-tuned candidate with its baseline, then ask the lineage graph
//! what it was built from and what a bad dataset would affect.
//!
//! ```text
//! cargo run --example compare
//! ```
//!
//! The registry lives in a fresh temporary directory; the "checkpoints" are a few
//! generated files.

use std::path::Path;

use modelreg::{
    Actor, ArtifactSource, CodeRef, CreateModel, DatasetKey, DatasetRef, DatasetRole, Environment,
    HyperValue, Hyperparameters, MetricSpec, Metrics, NewVersion, ParentRef, Provenance, Registry,
    Relation, Stage, VersionFilter,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let registry = Registry::open_local(scratch.path().join("registry")).await?;
    let ci = Actor::new("train-ci@example.com")?;

    registry
        .acting_as(ci.clone())
        .create_model(
            "sentiment",
            CreateModel::new()
                .description("review sentiment classifier")
                .metric("accuracy", MetricSpec::maximize().with_tolerance(0.002))
                .metric("eval/loss", MetricSpec::minimize())
                .metric("latency_ms", MetricSpec::minimize().with_tolerance(0.5)),
        )
        .await?;

    // The baseline: trained from scratch on reviews@2026-10.
    let base_dir = scratch.path().join("baseline");
    write_checkpoint(&base_dir, 1, false)?;
    let baseline = registry
        .acting_as(ci.clone())
        .register(
            "sentiment",
            ArtifactSource::dir(&base_dir),
            NewVersion::new()
                .semver("1.0.0")
                .description("baseline")
                .provenance(Provenance {
                    code: Some(code("8d2f0a1")),
                    datasets: vec![
                        DatasetRef::new("reviews", DatasetRole::Train).version("2026-10"),
                        DatasetRef::new("reviews-holdout", DatasetRole::Eval).version("v2"),
                    ],
                    hyperparameters: hyperparameters(3e-4, 3, None).into(),
                    environment: Environment::default()
                        .with_framework("torch", "2.4.1")
                        .with_framework("transformers", "4.46.0")
                        .into(),
                    ..Provenance::default()
                })
                .metrics(
                    Metrics::new()
                        .with("accuracy", 0.912)?
                        .with("eval/loss", 0.241)?
                        .with("latency_ms", 8.1)?,
                ),
        )
        .await?;

    // The candidate: fine-tuned from the baseline on November's reviews, with an
    // adapter; the tokenizer and config are unchanged (and stored once).
    let cand_dir = scratch.path().join("candidate");
    write_checkpoint(&cand_dir, 2, true)?;
    let candidate = registry
        .acting_as(ci.clone())
        .register(
            "sentiment",
            ArtifactSource::dir(&cand_dir),
            NewVersion::new()
                .semver("1.1.0")
                .description("fine-tuned on November reviews")
                .provenance(Provenance {
                    code: Some(code("c41e9b7")),
                    datasets: vec![
                        DatasetRef::new("reviews", DatasetRole::Train).version("2026-11"),
                        DatasetRef::new("reviews-holdout", DatasetRole::Eval).version("v2"),
                    ],
                    parents: vec![ParentRef {
                        model: "sentiment".parse()?,
                        version: baseline.number,
                        relation: Relation::FineTunedFrom,
                    }],
                    hyperparameters: hyperparameters(5e-5, 1, Some(16)).into(),
                    environment: Environment::default()
                        .with_framework("torch", "2.5.0")
                        .with_framework("transformers", "4.46.0")
                        .into(),
                })
                .metrics(
                    Metrics::new()
                        .with("accuracy", 0.927)?
                        .with("eval/loss", 0.198)?
                        .with("latency_ms", 8.4)?
                        .with("f1", 0.918)?,
                ),
        )
        .await?;

    // The baseline serves in production; the common question is "the candidate
    // against whatever is in production".
    let me = Actor::new("release-bot")?;
    let base = format!("sentiment/{}", baseline.number);
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        registry
            .acting_as(me.clone())
            .transition(base.as_str(), stage, "baseline")
            .await?;
    }

    println!("== sentiment@production vs sentiment/2 ==\n");
    let diff = registry
        .compare(
            "sentiment@production",
            format!("sentiment/{}", candidate.number),
        )
        .await?;
    println!("{diff}");

    println!("== what sentiment@latest was built from (Mermaid) ==\n");
    let upstream = registry.upstream("sentiment@latest", None).await?;
    println!("{}", upstream.to_mermaid());

    println!("== if reviews@2026-10 turns out to be bad ==\n");
    let bad = DatasetKey::new("reviews").version("2026-10");
    for v in registry.downstream(&bad, None).await?.versions() {
        let record = v
            .record
            .as_deref()
            .ok_or("affected version without record")?;
        println!(
            "  affected: {} (depth {}, stage {}) {}{}",
            v.node,
            v.depth,
            record.stage,
            record.description,
            if record.stage == Stage::Production {
                "  <- SERVING: roll back or retrain"
            } else {
                ""
            }
        );
    }

    println!("\n== accuracy over versions ==\n");
    for p in registry
        .metric_history("sentiment", "accuracy", &VersionFilter::new())
        .await?
    {
        println!(
            "  v{}  {}  {}",
            p.version,
            p.created_at.format("%F %T"),
            p.value
        );
    }
    Ok(())
}

fn code(commit: &str) -> CodeRef {
    CodeRef {
        repository: Some("https://git.example.com/ml/sentiment".into()),
        commit: commit.into(),
        dirty: false,
    }
}

fn hyperparameters(lr: f64, epochs: i64, lora_rank: Option<i64>) -> Hyperparameters {
    let mut optimizer = Hyperparameters::new();
    optimizer.insert("name".into(), HyperValue::from("adamw"));
    optimizer.insert("lr".into(), HyperValue::Float(lr));
    let mut h = Hyperparameters::new();
    h.insert("optimizer".into(), HyperValue::Map(optimizer));
    h.insert("epochs".into(), HyperValue::Int(epochs));
    h.insert("max_len".into(), HyperValue::Int(256));
    if let Some(r) = lora_rank {
        let lora = [("rank".to_owned(), HyperValue::Int(r))].into();
        h.insert("lora".into(), HyperValue::Map(lora));
    }
    h
}

/// A tiny checkpoint: shared config and tokenizer, weights that differ by `seed`,
/// and an adapter when asked.
fn write_checkpoint(dir: &Path, seed: u8, adapter: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), br#"{"layers":6,"hidden":384}"#)?;
    std::fs::write(dir.join("tokenizer.json"), vec![b't'; 20_000])?;
    let weights: Vec<u8> = (0..200_000u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(dir.join("model.safetensors"), weights)?;
    if adapter {
        std::fs::write(dir.join("adapter.safetensors"), vec![seed; 8_192])?;
    }
    Ok(())
}
