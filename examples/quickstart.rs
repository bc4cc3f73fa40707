//! The main job, end to end on the embedded local-disk default: create a registry
//! in a directory, register a model version from files, resolve it, fetch it
//! (verified) into another directory, and print what happened.
//!
//! ```text
//! cargo run --example quickstart [REGISTRY_DIR]
//! ```
//!
//! Without an argument the registry lives in a fresh temporary directory.

use std::path::{Path, PathBuf};

use modelreg::{
    Actor, ArtifactSource, CreateModel, DatasetRef, DatasetRole, FetchOptions, GcOptions,
    MetricSpec, NewVersion, Registry,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let root: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.path().join("registry"));

    // 1. Something to register: a small "trained model" directory.
    let model_dir = scratch.path().join("training-output");
    write_fake_checkpoint(&model_dir)?;

    // 2. The registry: a directory on local disk, nothing else to run.
    let registry = Registry::open_local(&root).await?;
    println!("registry at {}", root.display());
    let me = registry.acting_as(Actor::new("quickstart@example.com")?);
    // Created on the first run; later runs add versions to it.
    me.ensure_model(
        "churn",
        CreateModel::new()
            .description("customer churn classifier")
            .metric("auc", MetricSpec::maximize().with_tolerance(0.002))
            .metric("log_loss", MetricSpec::minimize()),
    )
    .await?;

    // 3. Register a version with its provenance and metrics.
    let version = me
        .register(
            "churn",
            ArtifactSource::dir(&model_dir),
            NewVersion::new()
                .description("baseline logistic regression")
                .tag("team", "growth")
                .metric("auc", 0.874)
                .metric("log_loss", 0.31)
                .param("learning_rate", 0.05)
                .param("epochs", 20)
                .param("optimizer", "adam")
                .dataset(DatasetRef::new("customers", DatasetRole::Train).version("2026-11-01"))
                .dataset(
                    DatasetRef::new("customers-holdout", DatasetRole::Test).version("2026-11-01"),
                )
                .code_commit("4f9c2d1")
                .environment_captured()
                .framework("linfa", "0.7"),
        )
        .await?;
    println!(
        "registered {}: {} files, {} bytes ({} new), artifact {}",
        version.reference(),
        version.files,
        version.size,
        version.report.bytes_stored,
        version.artifact
    );

    // 4. Resolve it the way an inference server would.
    let resolved = registry.resolve("churn@latest").await?;
    println!("churn@latest resolves to {}", resolved.reference());
    for entry in registry.manifest(&resolved).await?.entries() {
        println!(
            "  {:<28} {:>8} bytes  {}",
            entry.path, entry.size, entry.digest
        );
    }

    // 5. Fetch it, verified, into a serving directory.
    let serve_dir = scratch.path().join("serving");
    let report = registry
        .fetch(&resolved, &serve_dir, FetchOptions::new())
        .await?;
    println!(
        "fetched {} files ({} bytes) into {}, every digest checked",
        report.files,
        report.bytes,
        report.path.display()
    );
    let config = std::fs::read_to_string(serve_dir.join("config.json"))?;
    println!("config.json: {config}");

    // 6. The audit trail.
    for event in registry.events("churn").await? {
        println!(
            "  event {:>3}  {}  {:<20} by {}",
            event.seq,
            event.time.format("%Y-%m-%d %H:%M:%S"),
            event.kind.name(),
            event.actor
        );
    }

    // 7. Housekeeping: a garbage collection deletes only blobs no version
    //    references (here: none, every blob belongs to a version), and `check`
    //    re-reads and re-hashes everything without changing anything.
    let gc = registry
        .gc(GcOptions::new(std::time::Duration::from_secs(3600)))
        .await?;
    println!(
        "gc: {} blobs, {} referenced, {} deleted",
        gc.blobs,
        gc.referenced,
        gc.deleted.len()
    );
    let check = registry.check().await?;
    println!(
        "check: {} events, {} blobs re-hashed, {} problems",
        check.events,
        check.blobs,
        check.problems.len()
    );
    Ok(())
}

/// Writes a small model directory: weights, a config and a tokenizer.
fn write_fake_checkpoint(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("tokenizer"))?;
    let weights: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(dir.join("weights.bin"), weights)?;
    std::fs::write(
        dir.join("config.json"),
        r#"{"features": 42, "threshold": 0.5}"#,
    )?;
    std::fs::write(dir.join("tokenizer/vocab.txt"), "churn\nretain\n")?;
    Ok(())
}
