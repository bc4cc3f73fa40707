//! What a frontend does with the registry — the read side that a web UI, a
//! dashboard or a command-line tool is built on: list the models with a summary
//! of each, list a model's versions best first a page at a time (ordered by a
//! metric, the next page asked for with the token the last one ended with),
//! compare the candidate with what is in production, and answer in JSON. The
//! JSON is the library's own serde shapes (`ModelSummary`, `Page` of
//! `VersionRecord`, `VersionDiff`), so every interface speaks the same one.
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
    VersionNumber, VersionPage,
};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("registry");
    train(&dir).await?;

    let registry = Registry::open_local(&dir).await?;

    // ----- GET /models: every model, what it is and what serves ---------------------
    let models = registry.model_summaries().await?;
    println!("GET /models");
    println!(
        "{:<7} {:<19} {:>8} {:>7} {:>10}  updated",
        "model", "description", "versions", "latest", "production"
    );
    let v = |n: Option<VersionNumber>| n.map_or("-".to_owned(), |n| format!("v{n}"));
    for m in &models {
        println!(
            "{:<7} {:<19} {:>8} {:>7} {:>10}  {}",
            m.name,
            m.description,
            m.versions,
            v(m.latest),
            v(m.production),
            m.updated_at.format("%H:%M:%S")
        );
    }
    // The same list for programs, in the summaries' serde shape.
    let models_json = serde_json::to_string_pretty(&models)?;
    println!("{models_json}\n");

    // ----- GET /models/fraud/versions?order_by=auc&desc&limit=2: best first, paged -----
    let best = VersionPage::new().by_metric("auc").descending().limit(2);
    let mut pages = vec![
        registry
            .list_versions_page("fraud", &VersionFilter::new(), best.clone())
            .await?,
    ];
    // A client asks for the next page with the token the last one ended with.
    while let Some(token) = pages.last().and_then(|p| p.next.clone()) {
        let page = registry
            .list_versions_page("fraud", &VersionFilter::new(), best.clone().after(token))
            .await?;
        pages.push(page);
    }
    let mut pages_json = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        println!(
            "GET /models/fraud/versions?order_by=auc&desc&limit=2 (page {})",
            i + 1
        );
        println!("{:<9} {:<7} {:<11} metrics", "version", "semver", "stage");
        for v in &page.items {
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
        // The page for programs: its records in their serde shape and the token.
        let json = serde_json::to_string(page)?;
        println!("{json}\n");
        pages_json.push(json);
    }

    // ----- GET /models/fraud/compare: the candidate against production ----------------
    let production = registry.resolve("fraud@production").await?;
    let candidate = registry
        .list_versions("fraud", &VersionFilter::new().stage(Stage::Validation))
        .await?
        .pop()
        .ok_or("no candidate in validation")?;
    let diff = registry.compare(&production, &candidate).await?;
    println!("{diff}");
    let diff_json = serde_json::to_string_pretty(&diff)?;
    println!("GET /models/fraud/compare\n{diff_json}");

    // ----- what a client of this frontend can rely on ---------------------------------
    // Read back from the JSON printed, as a client would.
    let models: serde_json::Value = serde_json::from_str(&models_json)?;
    let table: Vec<_> = models
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (&m["name"], &m["versions"], &m["latest"], &m["production"]))
        .collect();
    let null = serde_json::Value::Null;
    assert_eq!(
        table,
        [
            (&json!("churn"), &json!(1), &json!(1), &null),
            (&json!("fraud"), &json!(3), &json!(3), &json!(1)),
        ]
    );
    assert_eq!(models[1]["description"], "card fraud scoring");
    // Best auc first across both pages, each version once, the last page without a token.
    let pages: Vec<serde_json::Value> = pages_json
        .iter()
        .map(|p| serde_json::from_str(p))
        .collect::<Result<_, _>>()?;
    let pages: Vec<_> = pages
        .iter()
        .map(|p| {
            let items = p["items"].as_array().into_iter().flatten().map(|v| {
                let number = v["number"].as_u64().unwrap_or_default();
                let auc = v["metrics"]["auc"].as_f64().unwrap_or(f64::NAN);
                (number, auc, v["stage"].as_str().unwrap_or_default())
            });
            (items.collect::<Vec<_>>(), p.get("next").is_some())
        })
        .collect();
    assert_eq!(
        pages,
        [
            (vec![(2, 0.927, "validation"), (3, 0.915, "staging")], true),
            (vec![(1, 0.912, "production")], false),
        ]
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
