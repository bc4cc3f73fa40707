//! What a frontend does with the registry — the read side that a web UI, a
//! dashboard or a command-line tool is built on: list the models, list a model's
//! versions with their stage and metrics, compare the candidate with what is in
//! production, and answer in JSON. The JSON is the records' own serde shapes
//! (`VersionRecord`, `VersionDiff`), so every interface speaks the same one.
//!
//! A frontend only reads: it holds a `Registry`, never a `Session`. The registry
//! it reads is filled first by a training job, in a temporary directory.
//!
//! ```text
//! cargo run --example frontend
//! ```

use std::path::Path;

use modelreg::{
    Actor, ArtifactSource, CreateModel, MetricSpec, NewVersion, Registry, Stage, VersionFilter,
};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("registry");
    train(&dir).await?;

    let registry = Registry::open_local(&dir).await?;

    // ----- GET /models: every model, what it is and what serves ---------------------
    let mut models = Vec::new();
    for name in registry.list_models().await? {
        let m = registry.model(&name).await?;
        models.push(json!({
            "name": m.name(),
            "description": m.description(),
            "versions": m.versions().len(),
            "production": m.production().map(|v| v.reference()),
        }));
    }
    println!("GET /models\n{}\n", serde_json::to_string_pretty(&models)?);

    // ----- GET /models/fraud/versions: stage and metrics of each version -------------
    let versions = registry
        .list_versions("fraud", &VersionFilter::new())
        .await?;
    println!("GET /models/fraud/versions");
    println!("{:<9} {:<7} {:<11} metrics", "version", "semver", "stage");
    for v in &versions {
        let semver = v.semver.as_ref().map(ToString::to_string);
        let metrics: Vec<String> = v.metrics.iter().map(|(k, x)| format!("{k}={x}")).collect();
        println!(
            "{:<9} {:<7} {:<11} {}",
            v.reference().to_string(),
            semver.as_deref().unwrap_or("-"),
            v.stage,
            metrics.join(" ")
        );
    }
    // The same list for programs: one record per line, in its serde shape.
    for v in &versions {
        println!("{}", serde_json::to_string(v)?);
    }

    // ----- GET /models/fraud/compare: the candidate against production ----------------
    let production = registry.resolve("fraud@production").await?;
    let candidate = registry
        .list_versions("fraud", &VersionFilter::new().stage(Stage::Validation))
        .await?
        .pop()
        .ok_or("no candidate in validation")?;
    let diff = registry.compare(&production, &candidate).await?;
    println!("\n{diff}");
    let diff_json = serde_json::to_string_pretty(&diff)?;
    println!("GET /models/fraud/compare\n{diff_json}");

    // ----- what a client of this frontend can rely on ---------------------------------
    let models: serde_json::Value = serde_json::to_value(&models)?;
    assert_eq!(models[0]["name"], "churn");
    assert_eq!(models[0]["production"], serde_json::Value::Null);
    assert_eq!(models[1]["name"], "fraud");
    assert_eq!(models[1]["production"], "fraud/1");
    assert_eq!(models[1]["versions"], 3);
    let stages: Vec<Stage> = versions.iter().map(|v| v.stage).collect();
    assert_eq!(
        stages,
        [Stage::Production, Stage::Validation, Stage::Staging]
    );
    let diff: serde_json::Value = serde_json::from_str(&diff_json)?;
    assert_eq!(
        (&diff["a"]["number"], &diff["b"]["number"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(diff["verdict"], "improved");
    let verdicts: Vec<(&str, &str)> = diff["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["name"].as_str()?, m["verdict"].as_str()?)))
        .collect();
    assert_eq!(verdicts, [("auc", "improved"), ("latency_ms", "improved")]);
    println!("\nthe candidate fraud/2 improves on production fraud/1 in every metric");
    Ok(())
}

/// What training jobs left in the registry: `fraud` with a version in each of
/// production, validation and staging, and `churn` with one unreviewed version.
async fn train(dir: &Path) -> modelreg::Result<()> {
    let ci = Registry::open_local(dir)
        .await?
        .acting_as(Actor::new("train-ci@example.com")?);
    ci.create_model(
        "fraud",
        CreateModel::new()
            .description("card fraud scoring")
            .metric("auc", MetricSpec::maximize().with_tolerance(0.002))
            .metric("latency_ms", MetricSpec::minimize().with_tolerance(0.5)),
    )
    .await?;
    let mut stages = [Stage::Production, Stage::Validation, Stage::Staging].into_iter();
    for (semver, auc, latency_ms) in [
        ("1.0.0", 0.912, 12.0),
        ("1.1.0", 0.927, 10.9),
        ("1.2.0", 0.915, 11.8),
    ] {
        let v = ci
            .register(
                "fraud",
                ArtifactSource::bytes("model.bin", format!("weights {semver}"))?,
                NewVersion::new()
                    .semver(semver)
                    .metric("auc", auc)
                    .metric("latency_ms", latency_ms),
            )
            .await?;
        if let Some(stage) = stages.next() {
            ci.promote_to(&v, stage, "offline evaluation").await?;
        }
    }
    ci.create_model("churn", CreateModel::new().description("customer churn"))
        .await?;
    ci.register(
        "churn",
        ArtifactSource::bytes("model.bin", "churn weights")?,
        NewVersion::new().metric("accuracy", 0.83),
    )
    .await?;
    Ok(())
}
