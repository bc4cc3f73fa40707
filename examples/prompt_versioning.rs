//! A chatbot's system prompt and model configuration, versioned like a model:
//! each version is a few in-memory files (no weights: the "model" is a provider's
//! model name, a temperature, a prompt), two versions are compared, and the new
//! one is promoted through staging and validation to production — and rolled
//! back when it misbehaves.
//!
//! ```text
//! cargo run --example prompt_versioning
//! ```

use std::collections::BTreeMap;

use modelreg::{
    Actor, ArtifactSource, CreateModel, HistoryFilter, Manifest, MetricSpec, Metrics, NewVersion,
    Registry, Stage,
};

/// One version of the bot: its system prompt and its generation settings.
struct Bot {
    prompt: &'static str,
    config: serde_json::Value,
}

impl Bot {
    fn files(&self) -> modelreg::Result<ArtifactSource> {
        ArtifactSource::files([
            ("system_prompt.md", self.prompt.as_bytes().to_vec()),
            (
                "config.json",
                serde_json::to_vec_pretty(&self.config).unwrap_or_default(),
            ),
        ])
    }
}

fn v1() -> Bot {
    Bot {
        prompt: "You are the support assistant of Acme Telecom.\n\
                 Answer questions about plans, bills and outages.\n\
                 Be concise.\n\
                 Never promise refunds.\n",
        config: serde_json::json!({
            "provider": "openai",
            "model": "gpt-4o-mini",
            "temperature": 0.7,
            "max_tokens": 512,
            "tools": ["lookup_bill"],
        }),
    }
}

fn v2() -> Bot {
    Bot {
        prompt: "You are the support assistant of Acme Telecom.\n\
                 Answer questions about plans, bills, outages and roaming.\n\
                 Be concise and cite the customer's plan by name.\n\
                 Never promise refunds.\n\
                 Escalate to a human after two failed answers.\n",
        config: serde_json::json!({
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.2,
            "max_tokens": 512,
            "tools": ["lookup_bill", "check_outage"],
        }),
    }
}

/// A line diff (longest common subsequence): `-` removed, `+` added, ` ` kept.
fn diff_lines(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

/// The settings that differ between two JSON objects: key → (old, new).
fn diff_config(
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> BTreeMap<String, (String, String)> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let show = |v: Option<&serde_json::Value>| v.map_or("(absent)".into(), |v| v.to_string());
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), (show(a.get(k)), show(b.get(k)))))
        .collect()
}

/// The files whose bytes differ between two manifests.
fn changed_files(old: &Manifest, new: &Manifest) -> Vec<String> {
    let mut paths: Vec<&str> = old
        .entries()
        .iter()
        .chain(new.entries())
        .map(|e| e.path.as_str())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| old.get(p).map(|e| e.digest) != new.get(p).map(|e| e.digest))
        .map(str::to_owned)
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::in_memory();
    let author = Actor::new("prompt-engineer@example.com")?;
    let lead = Actor::new("support-lead@example.com")?;
    registry
        .acting_as(author.clone())
        .create_model(
            "support-bot",
            CreateModel::new()
                .description("Acme Telecom support chatbot: prompt + generation settings")
                .metric("resolution_rate", MetricSpec::maximize())
                .metric("cost_per_chat_usd", MetricSpec::minimize()),
        )
        .await?;

    // Each version is its files plus offline evaluation metrics.
    let mut versions = Vec::new();
    for (bot, semver, resolution, cost) in
        [(v1(), "1.0.0", 0.71, 0.0021), (v2(), "1.1.0", 0.78, 0.0094)]
    {
        let v = registry
            .acting_as(author.clone())
            .register(
                "support-bot",
                bot.files()?,
                NewVersion::new()
                    .semver(semver)
                    .tag("provider", bot.config["provider"].as_str().unwrap_or("?"))
                    .metrics(
                        Metrics::new()
                            .with("resolution_rate", resolution)?
                            .with("cost_per_chat_usd", cost)?,
                    ),
            )
            .await?;
        println!(
            "registered support-bot:{semver} as support-bot/{} = {}",
            v.number, v.artifact
        );
        versions.push(v);
    }

    // v1 goes to production first.
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        registry
            .acting_as(lead.clone())
            .transition("support-bot:1.0.0", stage, "initial launch")
            .await?;
    }

    // ----- compare 1.0.0 and 1.1.0 -------------------------------------------------------
    println!("\n== support-bot:1.0.0 -> support-bot:1.1.0");
    let (m1, m2) = (
        registry.manifest("support-bot:1.0.0").await?,
        registry.manifest("support-bot:1.1.0").await?,
    );
    println!("files changed: {}", changed_files(&m1, &m2).join(", "));
    let (old, new) = (v1(), v2());
    println!("\nconfig.json:");
    for (key, (a, b)) in diff_config(&old.config, &new.config) {
        println!("  {key:<12} {a} -> {b}");
    }
    println!("\nsystem_prompt.md:");
    for line in diff_lines(old.prompt, new.prompt) {
        println!("  {line}");
    }
    println!("\nmetrics:");
    for name in ["resolution_rate", "cost_per_chat_usd"] {
        let get = |v: &modelreg::VersionRecord| v.metrics.get(name).unwrap_or(f64::NAN);
        let (a, b) = (get(&versions[0]), get(&versions[1]));
        println!(
            "  {name:<18} {a:<8} -> {b:<8} ({:+.1}%)",
            (b - a) / a * 100.0
        );
    }

    // ----- promote like a model ----------------------------------------------------------
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        registry
            .acting_as(lead.clone())
            .transition("support-bot:1.1.0", stage, "better resolution rate")
            .await?;
    }
    let live = registry.resolve("support-bot@production").await?;
    println!(
        "\nproduction: support-bot/{} ({})",
        live.number,
        live.semver
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert_eq!(live.number, versions[1].number);

    // A serving process reads the live prompt and settings straight from the registry.
    let dir = tempfile::tempdir()?;
    registry
        .fetch(
            "support-bot@production",
            dir.path().join("bot"),
            modelreg::FetchOptions::new(),
        )
        .await?;
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bot/config.json"))?)?;
    println!(
        "serving with {} at temperature {}",
        config["model"], config["temperature"]
    );

    // The cost per chat quadrupled in the first hour: roll back, audited.
    registry
        .acting_as(lead.clone())
        .rollback("support-bot", "cost per chat up 4x in production")
        .await?;
    let live = registry.resolve("support-bot@production").await?;
    assert_eq!(live.number, versions[0].number);
    println!(
        "rolled back: production is support-bot/{} again",
        live.number
    );

    println!("\naudit trail (newest first):");
    let trail = registry
        .history(
            "support-bot",
            &HistoryFilter::new()
                .kind("stage_changed")
                .kind("rolled_back"),
        )
        .await?;
    for e in trail.iter().take(4) {
        let what = match &e.kind {
            modelreg::EventKind::StageChanged {
                version,
                from,
                to,
                reason,
                ..
            } => format!("support-bot/{version} {from} -> {to} ({reason})"),
            modelreg::EventKind::RolledBack {
                restored,
                displaced,
                reason,
            } => format!("rollback {displaced} -> {restored} ({reason})"),
            other => other.name().to_owned(),
        };
        println!("  #{:<3} {:<26} {what}", e.seq, e.actor.as_str());
    }
    Ok(())
}
