//! A training script, not async, that registers what it trains: logistic
//! regression by gradient descent on generated (seeded) data, weights saved in the
//! safetensors format, provenance captured (git commit of the working directory,
//! dataset digest, hyperparameters, environment), and held-out metrics recorded.
//! It uses the blocking facade, as a training script would.
//!
//! ```text
//! cargo run --example train_and_register            # registry in a temp directory
//! cargo run --example train_and_register -- ./reg   # or in ./reg
//! ```

#[path = "common/safetensors.rs"]
mod safetensors;

use std::collections::BTreeMap;

use modelreg::blocking::Registry;
use modelreg::{
    Actor, ArtifactSource, CreateModel, DatasetRef, DatasetRole, Digest, FetchOptions, MetricSpec,
    NewVersion, Stage,
};
use safetensors::Logistic;

const FEATURES: usize = 4;
const SAMPLES: usize = 4000;
const SEED: u64 = 20261127;
const EPOCHS: usize = 400;
const LEARNING_RATE: f32 = 0.5;
const L2: f64 = 1e-3;
const TEST_FRACTION: f64 = 0.2;

/// One labelled example.
struct Example {
    x: [f32; FEATURES],
    y: f32,
}

/// Draws a dataset from a known logistic model with noise, deterministically.
fn generate(seed: u64) -> Vec<Example> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let truth = Logistic {
        weight: vec![1.5, -2.0, 0.75, 0.0],
        bias: -0.25,
    };
    // Box–Muller: two uniforms to one standard normal.
    let mut normal = move || {
        let (u, v) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    };
    let mut coin = fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
    (0..SAMPLES)
        .map(|_| {
            let x = [normal(), normal(), normal(), normal()];
            let y = if coin.f32() < truth.predict(&x) {
                1.0
            } else {
                0.0
            };
            Example { x, y }
        })
        .collect()
}

/// The dataset's bytes, for its digest: little-endian features then label.
fn dataset_bytes(data: &[Example]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * (FEATURES + 1) * 4);
    for e in data {
        for v in e.x.iter().chain([&e.y]) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Full-batch gradient descent on the mean log loss plus an L2 penalty.
fn train(data: &[Example]) -> Logistic {
    let mut model = Logistic {
        weight: vec![0.0; FEATURES],
        bias: 0.0,
    };
    let n = data.len() as f32;
    for _ in 0..EPOCHS {
        let mut grad_w = [0.0f32; FEATURES];
        let mut grad_b = 0.0f32;
        for e in data {
            let err = model.predict(&e.x) - e.y;
            for (g, x) in grad_w.iter_mut().zip(e.x) {
                *g += err * x;
            }
            grad_b += err;
        }
        for (w, g) in model.weight.iter_mut().zip(grad_w) {
            *w -= LEARNING_RATE * (g / n + L2 as f32 * *w);
        }
        model.bias -= LEARNING_RATE * grad_b / n;
    }
    model
}

/// Accuracy at threshold 0.5 and mean log loss.
fn evaluate(model: &Logistic, data: &[Example]) -> (f64, f64) {
    let mut correct = 0usize;
    let mut loss = 0.0f64;
    for e in data {
        let p = f64::from(model.predict(&e.x)).clamp(1e-7, 1.0 - 1e-7);
        if (p >= 0.5) == (e.y == 1.0) {
            correct += 1;
        }
        loss -= if e.y == 1.0 { p.ln() } else { (1.0 - p).ln() };
    }
    (correct as f64 / data.len() as f64, loss / data.len() as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let root = match std::env::args().nth(1) {
        Some(dir) => dir.into(),
        None => tmp.path().join("registry"),
    };

    // ----- data -------------------------------------------------------------------
    let mut data = generate(SEED);
    let test_len = (data.len() as f64 * TEST_FRACTION) as usize;
    let test = data.split_off(data.len() - test_len);
    println!(
        "data: {} training and {} held-out examples (seed {SEED})",
        data.len(),
        test.len()
    );

    // ----- training -----------------------------------------------------------------
    let model = train(&data);
    let (train_acc, train_loss) = evaluate(&model, &data);
    let (accuracy, log_loss) = evaluate(&model, &test);
    println!(
        "trained: weight {:?}, bias {:.3}",
        model
            .weight
            .iter()
            .map(|w| format!("{w:.3}"))
            .collect::<Vec<_>>(),
        model.bias
    );
    println!("train accuracy {train_acc:.3}, log loss {train_loss:.4}");
    println!("held-out accuracy {accuracy:.3}, log loss {log_loss:.4}");
    assert!(accuracy > 0.75, "the model learned something");

    // ----- the artifact: safetensors weights and a config -----------------------------
    let out = tmp.path().join("checkpoint");
    std::fs::create_dir_all(&out)?;
    let meta = BTreeMap::from([("format".to_owned(), "pt".to_owned())]);
    std::fs::write(out.join("model.safetensors"), model.to_safetensors(&meta))?;
    let config = serde_json::json!({
        "architecture": "logistic_regression",
        "features": ["tenure", "support_calls", "monthly_spend", "noise"],
        "threshold": 0.5,
    });
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    // What was written reads back to the same model.
    let reread = Logistic::from_safetensors(&std::fs::read(out.join("model.safetensors"))?)?;
    assert_eq!(reread, model);

    // ----- register: files, metrics, hyperparameters, data, code, environment -------
    let registry = Registry::open_local(&root)?;
    let me = registry.acting_as(Actor::new("train_and_register@example.com")?);
    me.ensure_model(
        "churn",
        CreateModel::new()
            .description("customer churn, logistic regression")
            .metric("accuracy", MetricSpec::maximize())
            .metric("log_loss", MetricSpec::minimize()),
    )?;
    let dataset = |role| DatasetRef::new("synthetic-churn", role).version(format!("seed-{SEED}"));
    let v = me.register(
        "churn",
        ArtifactSource::dir(&out),
        NewVersion::new()
            .description(format!("{EPOCHS} epochs of gradient descent"))
            .metric("accuracy", accuracy)
            .metric("log_loss", log_loss)
            .metric("train_log_loss", train_loss)
            .param("epochs", EPOCHS as i64)
            .param("learning_rate", LEARNING_RATE)
            .param("l2", L2)
            .param("seed", SEED as i64)
            .param("optimizer", "full-batch gd")
            .dataset(dataset(DatasetRole::Train).digest(Digest::of(&dataset_bytes(&data))))
            .dataset(dataset(DatasetRole::Test).digest(Digest::of(&dataset_bytes(&test))))
            .code_from_git(".")
            .environment_captured(),
    )?;
    me.transition(&v, Stage::Staging, "fresh from training")?;

    // ----- what the registry now holds ------------------------------------------------
    println!(
        "\nregistered {} = {} ({} files, {} bytes, {} bytes new in {:.2?})",
        v.reference(),
        v.artifact,
        v.files,
        v.size,
        v.report.bytes_stored,
        v.report.elapsed
    );
    println!("  stage: {}", registry.resolve(&v)?.stage);
    match &v.provenance.code {
        Some(c) => println!(
            "  code: commit {}{}",
            c.commit,
            if c.dirty {
                " (uncommitted changes)"
            } else {
                ""
            }
        ),
        None => println!("  code: not in a git repository, no commit recorded"),
    }
    for d in &v.provenance.datasets {
        println!(
            "  dataset {} {} ({:?}) {}",
            d.name,
            d.version.as_deref().unwrap_or("-"),
            d.role,
            d.digest.map(|d| d.to_string()).unwrap_or_default()
        );
    }
    println!(
        "  hyperparameters: {}",
        serde_json::to_string(&v.provenance.hyperparameters)?
    );
    println!(
        "  environment: {} on {}",
        v.provenance.environment.os.as_deref().unwrap_or("?"),
        v.provenance.environment.arch.as_deref().unwrap_or("?")
    );
    println!("  metrics: {}", serde_json::to_string(&v.metrics)?);
    for e in registry.manifest(&v)?.entries() {
        println!(
            "  file {:<20} {:>6} bytes  {}",
            e.path.as_str(),
            e.size,
            e.digest
        );
    }

    // ----- fetch it back: same weights, verified ---------------------------------------
    let fetched = tmp.path().join("fetched");
    registry.fetch(&v, &fetched, FetchOptions::new())?;
    let weights = Logistic::from_safetensors(&std::fs::read(fetched.join("model.safetensors"))?)?;
    assert_eq!(weights, model);
    println!("\nfetched {} back: same weights, verified", v.reference());
    Ok(())
}
