//! A registry on object storage, opened by URL: register a model version whose
//! weights are large enough for a multipart upload, resolve it, fetch it verified,
//! and print what happened.
//!
//! ```text
//! cargo run --example object_store                                   # memory://
//! cargo run --example object_store -- file:///tmp/registry
//! cargo run --features aws --example object_store -- s3://bucket/demo   # AWS_* variables
//! cargo run --features azure --example object_store -- az://container/demo
//! ```
//!
//! Run it twice against the same URL and the second run registers version 2,
//! uploading nothing new: the files are already stored.

use std::path::Path;
use std::time::Instant;

use modelreg::{Actor, ArtifactSource, CreateModel, FetchOptions, NewVersion, Registry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".to_owned());
    let scratch = tempfile::tempdir()?;

    // 1. Something to register: 12 MiB of weights (three 5 MiB parts) and a config.
    let model_dir = scratch.path().join("training-output");
    write_fake_checkpoint(&model_dir)?;

    // 2. The registry, wherever the URL says; credentials come from the environment.
    let registry = Registry::open_url(&url).await?;
    println!("registry at {url}");
    let me = registry.acting_as(Actor::new("object-store-example@example.com")?);
    let model = me.ensure_model("ranker", CreateModel::new()).await?;
    println!("model 'ranker' has {} versions", model.versions().len());

    // 3. Register: hashed locally, then only what the store lacks is uploaded.
    let version = me
        .register(
            "ranker",
            ArtifactSource::dir(&model_dir),
            NewVersion::new().description("registered by the object_store example"),
        )
        .await?;
    println!(
        "registered {} in {:.2?}: {} files, {} bytes ({} uploaded, {} already stored), artifact {}",
        version.reference(),
        version.report.elapsed,
        version.files,
        version.size,
        version.report.bytes_stored,
        version.report.bytes_present,
        version.artifact
    );

    // 4. Resolve, as an inference server would, and list the files.
    let latest = registry.resolve("ranker@latest").await?;
    println!("ranker@latest resolves to {}", latest.reference());
    for entry in registry.manifest(&latest).await?.entries() {
        println!(
            "  {:<16} {:>9} bytes  {}",
            entry.path, entry.size, entry.digest
        );
    }

    // 5. Fetch it: streamed down, re-hashed, moved into place only if all match.
    let serve_dir = scratch.path().join("serving");
    let started = Instant::now();
    let report = registry
        .fetch(&latest, &serve_dir, FetchOptions::new())
        .await?;
    println!(
        "fetched {} files ({} bytes) in {:.2?} into {}, every digest checked",
        report.files,
        report.bytes,
        started.elapsed(),
        report.path.display()
    );
    println!(
        "model has {} versions and {} events",
        registry.model("ranker").await?.versions().len(),
        registry.events("ranker").await?.len()
    );
    Ok(())
}

/// Writes a model directory: 12 MiB of weights and a small config.
fn write_fake_checkpoint(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let weights: Vec<u8> = (0..12 << 20u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(dir.join("weights.bin"), weights)?;
    std::fs::write(dir.join("config.json"), r#"{"layers": 4, "dim": 256}"#)?;
    Ok(())
}
