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
    Actor, ArtifactSource, CodeRef, CreateModel, DatasetKey, DatasetRef, DatasetRole, HyperValue,
    MetricSpec, NewVersion, Registry, Relation, Stage, VersionFilter,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let registry = Registry::open_local(scratch.path().join("registry")).await?;
    let ci = registry.acting_as(Actor::new("train-ci@example.com")?);

    ci.create_model(
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
    let baseline = ci
        .register(
            "sentiment",
            ArtifactSource::dir(&base_dir),
            NewVersion::new()
                .semver("1.0.0")
                .description("baseline")
                .metric("accuracy", 0.912)
                .metric("eval/loss", 0.241)
                .metric("latency_ms", 8.1)
                .param(
                    "optimizer",
                    group([("name", "adamw".into()), ("lr", 3e-4.into())]),
                )
                .param("epochs", 3)
                .param("max_len", 256)
                .dataset(DatasetRef::new("reviews", DatasetRole::Train).version("2026-10"))
                .dataset(DatasetRef::new("reviews-holdout", DatasetRole::Eval).version("v2"))
                .code(code("8d2f0a1"))
                .framework("torch", "2.4.1")
                .framework("transformers", "4.46.0"),
        )
        .await?;

    // The candidate: fine-tuned from the baseline on November's reviews, with an
    // adapter; the tokenizer and config are unchanged (and stored once).
    let cand_dir = scratch.path().join("candidate");
    write_checkpoint(&cand_dir, 2, true)?;
    let candidate = ci
        .register(
            "sentiment",
            ArtifactSource::dir(&cand_dir),
            NewVersion::new()
                .semver("1.1.0")
                .description("fine-tuned on November reviews")
                .metric("accuracy", 0.927)
                .metric("eval/loss", 0.198)
                .metric("latency_ms", 8.4)
                .metric("f1", 0.918)
                .param(
                    "optimizer",
                    group([("name", "adamw".into()), ("lr", 5e-5.into())]),
                )
                .param("epochs", 1)
                .param("max_len", 256)
                .param("lora", group([("rank", 16.into())]))
                .dataset(DatasetRef::new("reviews", DatasetRole::Train).version("2026-11"))
                .dataset(DatasetRef::new("reviews-holdout", DatasetRole::Eval).version("v2"))
                .parent(&baseline, Relation::FineTunedFrom)
                .code(code("c41e9b7"))
                .framework("torch", "2.5.0")
                .framework("transformers", "4.46.0"),
        )
        .await?;

    // The baseline serves in production; the common question is "the candidate
    // against whatever is in production".
    let release = registry.acting_as(Actor::new("release-bot")?);
    release
        .promote_to(&baseline, Stage::Production, "baseline")
        .await?;

    println!("== sentiment@production vs {} ==\n", candidate.reference());
    let diff = registry.compare("sentiment@production", &candidate).await?;
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

/// A commit of the sentiment repository.
fn code(commit: &str) -> CodeRef {
    CodeRef {
        repository: Some("https://git.example.com/ml/sentiment".into()),
        commit: commit.into(),
        dirty: false,
    }
}

/// A group of hyperparameters, nested as in a training config.
fn group<const N: usize>(entries: [(&str, HyperValue); N]) -> HyperValue {
    HyperValue::Map(entries.map(|(k, v)| (k.to_owned(), v)).into())
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
