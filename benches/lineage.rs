//! Impact queries on a large lineage graph: `LineageGraph::downstream` of a dataset,
//! measured against a naive linear scan over every version record (repeated until
//! nothing changes), interleaved in the same run.
//!
//! ```text
//! cargo bench --bench lineage                    # 100 models x 1,000 versions, 15 rounds
//! MODELREG_BENCH_MODELS=20 MODELREG_BENCH_VERSIONS=500 MODELREG_BENCH_ROUNDS=9 cargo bench --bench lineage
//! ```
//!
//! The graph is built in memory from `VersionRecord`s (what `Registry::lineage`
//! does after reading the stores), so the figures are the query alone. Each model
//! has blocks of 10 versions, a base and 9 fine-tunes of it; every 100th version
//! is distilled from the same version of the previous model. Datasets:
//!
//! - `web-corpus@2024-06`, the popular one: training data of every 50th version
//!   (2% directly; with their fine-tunes about 20% of all versions are affected);
//! - `train-<model>@v<i/100>`: each model's own, in blocks of 100 versions;
//! - `eval-<model % 10>@v1`: evaluation data shared by 10 models.
//!
//! The baseline scans the records in model and version order, so parents come
//! before children and it settles in two passes: the most favourable order a scan
//! can have. It allocates nothing per record. Each round runs baseline, ours,
//! baseline; reported are medians over the rounds and ours / mean(baselines).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelreg::{
    Actor, CodeRef, DatasetKey, DatasetRef, DatasetRole, Digest, HyperValue, LineageGraph,
    LineageNode, Metrics, ModelName, ParentRef, Provenance, Relation, Tags, VersionNumber,
    VersionRecord,
};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const POPULAR: (&str, &str) = ("web-corpus", "2024-06");

fn model_name(m: u64) -> ModelName {
    ModelName::new(format!("model-{m:03}")).expect("valid model name")
}

fn record(m: u64, i: u64, models: &[ModelName]) -> VersionRecord {
    let n = |x: u64| VersionNumber::new(x).expect("non-zero");
    let mut datasets = vec![
        DatasetRef::new(format!("train-{m}"), DatasetRole::Train).version(format!("v{}", i / 100)),
        DatasetRef::new(format!("eval-{}", m % 10), DatasetRole::Eval).version("v1"),
    ];
    if i % 50 == 1 {
        datasets.push(DatasetRef::new(POPULAR.0, DatasetRole::Train).version(POPULAR.1));
    }
    let mut parents = Vec::new();
    if i % 10 != 1 {
        parents.push(ParentRef {
            model: models[m as usize].clone(),
            version: n(i - (i - 1) % 10),
            relation: Relation::FineTunedFrom,
        });
    }
    if i % 100 == 1 && m > 0 {
        parents.push(ParentRef {
            model: models[m as usize - 1].clone(),
            version: n(i),
            relation: Relation::DistilledFrom,
        });
    }
    let mut hyperparameters = modelreg::Hyperparameters::new();
    hyperparameters.insert("lr".into(), HyperValue::Float(1e-4));
    hyperparameters.insert("epochs".into(), HyperValue::Int((i % 5) as i64 + 1));
    VersionRecord {
        model: models[m as usize].clone(),
        number: n(i),
        semver: None,
        artifact: Digest::of(&(m << 32 | i).to_le_bytes()),
        size: 1 << 30,
        files: 3,
        created_at: chrono::DateTime::UNIX_EPOCH,
        created_by: Actor::new("ci").expect("valid actor"),
        description: String::new(),
        tags: Tags::new(),
        provenance: Provenance {
            code: Some(CodeRef {
                repository: Some("git@example.com:ml/train.git".into()),
                commit: format!("c{m}-{}", i / 50),
                dirty: false,
            }),
            datasets,
            parents,
            hyperparameters: hyperparameters.into(),
            ..Provenance::default()
        },
        metrics: Metrics::new().with("auc", 0.9).expect("finite"),
        deprecated: None,
        stage: Default::default(),
        stage_since: None,
        approvals: Default::default(),
        reached: Default::default(),
        scan: None,
        purged: None,
        signatures: Vec::new(),
    }
}

/// The naive answer: scan every record, mark it if it used the dataset or has a
/// marked parent, until a pass marks nothing new.
fn naive_downstream<'a>(
    records: &'a [(ModelName, Arc<VersionRecord>)],
    ds: &DatasetKey,
) -> HashSet<(&'a ModelName, VersionNumber)> {
    let mut affected: HashSet<(&ModelName, VersionNumber)> = HashSet::new();
    loop {
        let before = affected.len();
        for (m, r) in records {
            if affected.contains(&(m, r.number)) {
                continue;
            }
            let p = &r.provenance;
            let uses = p
                .datasets
                .iter()
                .any(|d| d.name == ds.name && d.version == ds.version && d.digest == ds.digest);
            if uses
                || p.parents
                    .iter()
                    .any(|pr| affected.contains(&(&pr.model, pr.version)))
            {
                affected.insert((m, r.number));
            }
        }
        if affected.len() == before {
            return affected;
        }
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() {
    let n_models = env_num("MODELREG_BENCH_MODELS", 100);
    let n_versions = env_num("MODELREG_BENCH_VERSIONS", 1000);
    let rounds = env_num("MODELREG_BENCH_ROUNDS", 15).max(1);

    let models: Vec<ModelName> = (0..n_models).map(model_name).collect();
    let t = Instant::now();
    let records: Vec<(ModelName, Arc<VersionRecord>)> = (0..n_models)
        .flat_map(|m| (1..=n_versions).map(move |i| (m, i)))
        .map(|(m, i)| (models[m as usize].clone(), Arc::new(record(m, i, &models))))
        .collect();
    let generated = t.elapsed();

    let t = Instant::now();
    let mut graph = LineageGraph::new();
    for (m, r) in &records {
        graph
            .add_version(m.clone(), r.clone())
            .expect("unique versions");
    }
    let built = t.elapsed();
    println!(
        "lineage: {n_models} models x {n_versions} versions = {} versions, {} nodes, {} edges; \
         records generated in {} ms, graph built in {} ms",
        records.len(),
        graph.len(),
        graph.edges().count(),
        ms(generated),
        ms(built),
    );

    let queries = [
        (
            "popular dataset",
            DatasetKey::new(POPULAR.0).version(POPULAR.1),
        ),
        (
            "one model's dataset",
            DatasetKey::new(format!("train-{}", n_models / 2)).version("v3"),
        ),
    ];
    for (what, ds) in queries {
        let node = LineageNode::Dataset(ds.clone());
        let ours_result = graph.downstream(&node, None).expect("dataset in graph");
        let naive_result = naive_downstream(&records, &ds);
        let affected = ours_result.versions().count();
        assert_eq!(affected, naive_result.len(), "both find the same versions");
        for v in ours_result.versions() {
            let k = v.version().expect("a version");
            assert!(naive_result.contains(&(&k.model, k.version)));
        }

        let (mut ours, mut base, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            black_box(naive_downstream(&records, &ds));
            let before = t.elapsed();
            let t = Instant::now();
            black_box(graph.downstream(&node, None).expect("dataset in graph"));
            let mine = t.elapsed();
            let t = Instant::now();
            black_box(naive_downstream(&records, &ds));
            let after = t.elapsed();
            ours.push(mine);
            base.push(before);
            base.push(after);
            ratios.push(mine.as_secs_f64() / ((before + after) / 2).as_secs_f64());
        }
        ratios.sort_by(|a, b| a.total_cmp(b));
        let ratio = ratios[ratios.len() / 2];
        println!(
            "downstream of {what} {ds} ({affected} versions affected, {rounds} rounds): \
             ours median {} ms (min {}, max {}); naive scan median {} ms; \
             ratio ours/naive {ratio:.3} ({:.1}x faster)",
            ms(median(&mut ours)),
            ms(ours[0]),
            ms(ours[ours.len() - 1]),
            ms(median(&mut base)),
            1.0 / ratio,
        );
    }
}
