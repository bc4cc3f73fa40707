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
    Actor, ArtifactSource, CreateModel, EventKind, FetchOptions, HistoryFilter, Manifest,
    MetricSpec, NewVersion, Registered, Registry, Session, Stage, VersionRecord,
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

fn bot_1_0() -> Bot {
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

fn bot_1_1() -> Bot {
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

/// Registers `bot` as version `semver` with its offline evaluation.
async fn register(
    author: &Session,
    bot: &Bot,
    semver: &str,
    resolution_rate: f64,
    cost_per_chat_usd: f64,
) -> modelreg::Result<Registered> {
    let v = author
        .register(
            "support-bot",
            bot.files()?,
            NewVersion::new()
                .semver(semver)
                .tag("provider", bot.config["provider"].as_str().unwrap_or("?"))
                .metric("resolution_rate", resolution_rate)
                .metric("cost_per_chat_usd", cost_per_chat_usd),
        )
        .await?;
    println!(
        "registered support-bot:{semver} as {} = {}",
        v.reference(),
        v.artifact
    );
    Ok(v)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::in_memory();
    let author = registry.acting_as(Actor::new("prompt-engineer@example.com")?);
    let lead = registry.acting_as(Actor::new("support-lead@example.com")?);
    author
        .create_model(
            "support-bot",
            CreateModel::new()
                .description("Acme Telecom support chatbot: prompt + generation settings")
                .metric("resolution_rate", MetricSpec::maximize())
                .metric("cost_per_chat_usd", MetricSpec::minimize()),
        )
        .await?;

    // Each version is its files plus offline evaluation metrics.
    let (old, new) = (bot_1_0(), bot_1_1());
    let v1 = register(&author, &old, "1.0.0", 0.71, 0.0021).await?;
    let v2 = register(&author, &new, "1.1.0", 0.78, 0.0094).await?;

    // v1 goes to production first.
    lead.promote_to(&v1, Stage::Production, "initial launch")
        .await?;

    // ----- compare 1.0.0 and 1.1.0 -------------------------------------------------------
    println!("\n== support-bot:1.0.0 -> support-bot:1.1.0");
    let (m1, m2) = (registry.manifest(&v1).await?, registry.manifest(&v2).await?);
    println!("files changed: {}", changed_files(&m1, &m2).join(", "));
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
        let get = |v: &VersionRecord| v.metrics.get(name).unwrap_or(f64::NAN);
        let (a, b) = (get(&v1), get(&v2));
        println!(
            "  {name:<18} {a:<8} -> {b:<8} ({:+.1}%)",
            (b - a) / a * 100.0
        );
    }

    // ----- promote like a model ----------------------------------------------------------
    lead.promote_to(&v2, Stage::Production, "better resolution rate")
        .await?;
    let live = registry.resolve("support-bot@production").await?;
    println!(
        "\nproduction: {} ({})",
        live.reference(),
        live.semver
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert_eq!(live.number, v2.number);

    // A serving process reads the live prompt and settings straight from the registry.
    let dir = tempfile::tempdir()?;
    registry
        .fetch(
            "support-bot@production",
            dir.path().join("bot"),
            FetchOptions::new(),
        )
        .await?;
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bot/config.json"))?)?;
    println!(
        "serving with {} at temperature {}",
        config["model"], config["temperature"]
    );

    // The cost per chat quadrupled in the first hour: roll back, audited.
    lead.rollback("support-bot", "cost per chat up 4x in production")
        .await?;
    let live = registry.resolve("support-bot@production").await?;
    assert_eq!(live.number, v1.number);
    println!("rolled back: production is {} again", live.reference());

    println!("\naudit trail of support-bot (newest first):");
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
            EventKind::StageChanged {
                version,
                from,
                to,
                reason,
                ..
            } => format!("v{version} {from} -> {to} ({reason})"),
            EventKind::RolledBack {
                restored,
                displaced,
                reason,
            } => format!("rollback v{displaced} -> v{restored} ({reason})"),
            other => other.name().to_owned(),
        };
        println!("  #{:<3} {:<26} {what}", e.seq, e.actor.as_str());
    }
    Ok(())
}
