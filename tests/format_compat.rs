//! Registries written by earlier versions of the crate still open, and mean what
//! they meant: `tests/fixtures/registry-v0.1/` was written by modelreg 0.1.0 and is
//! frozen (see its README.md). The expectations below are facts about those bytes,
//! written down by hand, so a reader that changes what an old record means fails
//! here even if it still decodes it.

use std::path::Path;

use modelreg::{
    Baseline, DatasetRole, Environment, GateSpec, HyperValue, MetricSpec, ParentRef, Provenance,
    Registry, Relation, Stage, VersionNumber,
};

fn actor(name: &str) -> modelreg::Actor {
    modelreg::Actor::new(name).expect("valid actor")
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/registry-v0.1");
const V1: &str = "blake3:f4302f7474ee6d663a12f56cdf5170ffc6b0fb165b6551b50c2a8f96378aeea7";
const V2: &str = "blake3:765cbf49fb86d9ec85ebd6f9dd56b3e02dec4805c2a0db27dd33eac627f3a9da";
const V3: &str = "blake3:42b015b93b09909698c0437c74c6b324759e294b4beb74f9419b54bccaadac3e";
const CHURN1: &str = "blake3:1cc45c892c63e830431196f77c98df37da246afd0e8d67b3b1676fe3ec8ceb8d";
/// The kinds of `fraud`'s 20 events, in log order; a checkpoint covers 1-8 and
/// another 1-16.
const FRAUD_KINDS: [&str; 20] = [
    "model_created",
    "gates_set",
    "version_registered",
    "version_registered",
    "metrics_added",
    "stage_changed",
    "stage_changed",
    "approval_recorded",
    "stage_changed",
    "stage_changed",
    "stage_changed",
    "approval_recorded",
    "stage_changed",
    "rolled_back",
    "alias_set",
    "alias_set",
    "traffic_split_set",
    "version_registered",
    "version_deprecated",
    "tags_set",
];

fn time(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
    rfc3339.parse().expect("a time")
}

fn digest(s: &str) -> modelreg::Digest {
    s.parse().expect("a digest")
}

/// Copies the fixture into a fresh directory (the tests must never write into
/// it), leaving out the files `skip` accepts (paths relative to the fixture).
fn copy_fixture(skip: impl Fn(&Path) -> bool) -> tempfile::TempDir {
    let tmp = tempfile::TempDir::new().expect("temp dir");
    let root = Path::new(FIXTURE);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read fixture dir") {
            let path = entry.expect("dir entry").path();
            let rel = path.strip_prefix(root).expect("below the fixture");
            if path.is_dir() {
                std::fs::create_dir_all(tmp.path().join(rel)).expect("mkdir");
                stack.push(path);
            } else if !skip(rel) {
                std::fs::copy(&path, tmp.path().join(rel)).expect("copy");
            }
        }
    }
    tmp
}

async fn open_copy(skip: impl Fn(&Path) -> bool) -> (tempfile::TempDir, Registry) {
    let tmp = copy_fixture(skip);
    let reg = Registry::open_local(tmp.path())
        .await
        .expect("the 0.1 fixture opens");
    (tmp, reg)
}

fn is_checkpoint(rel: &Path) -> bool {
    rel.extension().is_some_and(|e| e == "ckpt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_0_1_registry_opens_with_its_meaning() -> modelreg::Result<()> {
    let (_tmp, reg) = open_copy(|_| false).await;
    let mut models: Vec<String> = reg
        .list_models()
        .await?
        .iter()
        .map(|m| m.to_string())
        .collect();
    models.sort();
    assert_eq!(models, ["churn", "fraud"]);

    let fraud = reg.model("fraud").await?;
    assert_eq!(fraud.seq(), 20);
    assert_eq!(fraud.description(), "Card fraud scoring");
    assert_eq!(fraud.created_by().as_str(), "alice");
    assert_eq!(fraud.created_at(), time("2026-12-03T17:29:27.364736674Z"));
    assert_eq!(fraud.updated_at(), time("2026-12-03T17:29:27.389419531Z"));
    let tags: Vec<(String, String)> = fraud
        .tags()
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(
        tags,
        [("team".into(), "risk".into()), ("tier".into(), "1".into())]
    );
    let auc = &fraud.metric_specs()[&"auc".parse()?];
    assert_eq!(*auc, MetricSpec::maximize().with_tolerance(0.005));
    assert_eq!(
        fraud.metric_specs()[&"latency_ms".parse()?],
        MetricSpec::minimize()
    );
    assert_eq!(
        fraud.gates()[&Stage::Production],
        vec![
            GateSpec::Approvals {
                required: 1,
                from: Default::default(),
            },
            GateSpec::MetricsNoWorse {
                against: Baseline::Production,
                metrics: Vec::new(),
            },
        ]
    );

    // Versions: numbers, semver, artifacts, sizes, stages, metrics.
    let versions = fraud.versions();
    assert_eq!(versions.len(), 3);
    let facts: Vec<_> = versions
        .iter()
        .map(|v| {
            (
                v.number.get(),
                v.semver.as_ref().map(|s| s.to_string()),
                v.artifact.to_string(),
                v.size,
                v.files,
                v.stage,
                v.created_by.to_string(),
            )
        })
        .collect();
    let semver = |s: &str| Some(s.to_owned());
    assert_eq!(
        facts,
        [
            (
                1,
                semver("1.0.0"),
                V1.into(),
                38,
                3,
                Stage::Production,
                "ci-train".into()
            ),
            (
                2,
                semver("1.1.0"),
                V2.into(),
                29,
                2,
                Stage::Archived,
                "ci-train".into()
            ),
            (
                3,
                semver("1.2.0-rc.1"),
                V3.into(),
                19,
                1,
                Stage::None,
                "ci-train".into()
            ),
        ]
    );
    let metrics = |n: usize| -> Vec<(String, f64)> {
        versions[n]
            .metrics
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    };
    assert_eq!(
        metrics(0),
        [("auc".into(), 0.91), ("latency_ms".into(), 12.5)]
    );
    assert_eq!(
        metrics(1),
        [
            ("auc".into(), 0.93),
            ("f1".into(), 0.8125),
            ("latency_ms".into(), 11.0)
        ]
    );
    assert_eq!(metrics(2), [("auc".into(), 0.905)]);
    assert_eq!(versions[0].description, "first model");
    assert_eq!(versions[0].tags[&"owner".parse()?], "risk");
    assert_eq!(versions[1].tags[&"dataset".parse()?], "nov-2026");
    assert_eq!(
        versions[0].created_at,
        time("2026-12-03T17:29:27.371155818Z")
    );
    // 1 was archived by 2's promotion, and restored by the rollback.
    assert_eq!(
        versions[0].reached,
        [
            Stage::Staging,
            Stage::Validation,
            Stage::Production,
            Stage::Archived
        ]
        .into()
    );
    assert_eq!(versions[0].reached, versions[1].reached);
    assert!(versions[2].reached.is_empty());
    let approval = &versions[0].approvals[&Stage::Production][&actor("bob")];
    assert_eq!(approval.comment, "looks good");
    let dep = versions[2].deprecated.as_ref().expect("3 is deprecated");
    assert_eq!(
        (dep.by.as_str(), dep.reason.as_str(), dep.at),
        (
            "bob",
            "worse than 1.1.0",
            time("2026-12-03T17:29:27.388788282Z")
        )
    );
    assert!(versions[..2].iter().all(|v| v.deprecated.is_none()));

    // Provenance, with nested hyperparameters and the environment.
    let p = &versions[0].provenance;
    let code = p.code.as_ref().expect("code");
    assert_eq!(
        (code.repository.as_deref(), code.commit.as_str(), code.dirty),
        (Some("git@example.com:risk/fraud.git"), "9f2c1e7", false)
    );
    let datasets: Vec<_> = p
        .datasets
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.version.as_deref(),
                d.uri.as_deref(),
                d.role,
            )
        })
        .collect();
    assert_eq!(
        datasets,
        [
            (
                "transactions",
                Some("2026-10"),
                Some("s3://data/transactions/2026-10"),
                DatasetRole::Train
            ),
            (
                "transactions",
                Some("2026-11"),
                None,
                DatasetRole::Validation
            ),
            ("chargebacks", None, None, DatasetRole::Eval),
        ]
    );
    assert_eq!(
        p.datasets[2].digest,
        Some(digest(
            "blake3:2307075a84f096b736f3997a317a0f9fb2407794ba3bf6db77a2bb2ae5b575ca"
        ))
    );
    let h = &p.hyperparameters;
    assert_eq!(h.len(), 6);
    assert_eq!(h["lr"], HyperValue::Float(0.0003));
    assert_eq!(h["epochs"], HyperValue::Int(12));
    assert_eq!(h["optimizer"], HyperValue::String("adam".into()));
    assert_eq!(h["early_stop"], HyperValue::Bool(true));
    assert_eq!(
        h["layers"],
        HyperValue::List(vec![HyperValue::Int(64), HyperValue::Int(32)])
    );
    let HyperValue::Map(schedule) = &h["schedule"] else {
        panic!("schedule is a map: {:?}", h["schedule"]);
    };
    assert_eq!(schedule["kind"], HyperValue::String("cosine".into()));
    assert_eq!(schedule["warmup"], HyperValue::Int(100));
    assert_eq!(
        schedule["decay"],
        HyperValue::Map([("floor".to_owned(), HyperValue::Float(0.1))].into())
    );
    let env = &p.environment;
    assert_eq!(
        env.flatten().into_iter().collect::<Vec<_>>(),
        Environment::flatten(&{
            let mut e = Environment::default()
                .with_framework("torch", "2.4.1")
                .with_framework("numpy", "1.26.4");
            e.cuda = Some("12.4".into());
            e.runtimes.insert("python".into(), "3.11.7".into());
            e.os = Some("linux".into());
            e.arch = Some("x86_64".into());
            e.cpu_count = Some(16);
            e.gpus = vec!["NVIDIA A100".into()];
            e.extra.insert("cluster".into(), "train-eu-1".into());
            e
        })
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(env.cpu_count, Some(16));
    assert_eq!(env.gpus, ["NVIDIA A100"]);
    let p2 = &versions[1].provenance;
    assert_eq!(
        p2.code.as_ref().map(|c| (c.commit.as_str(), c.dirty)),
        Some(("b41d0aa", true))
    );
    assert_eq!(
        p2.parents,
        [ParentRef {
            model: "fraud".parse()?,
            version: VersionNumber::new(1)?,
            relation: Relation::FineTunedFrom,
        }]
    );
    assert_eq!(p2.hyperparameters, p.hyperparameters);
    assert!(versions[2].provenance == Provenance::default());

    // References: production after the rollback, aliases, semver, latest skips the
    // deprecated version, digests.
    let number = |r: modelreg::VersionRecord| r.number.get();
    assert_eq!(number(reg.resolve("fraud@production").await?), 1);
    assert_eq!(
        fraud
            .production_history()
            .iter()
            .map(|n| n.get())
            .collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(number(reg.resolve("fraud@champion").await?), 1);
    assert_eq!(number(reg.resolve("fraud@challenger").await?), 2);
    assert_eq!(number(reg.resolve("fraud@latest").await?), 2);
    assert_eq!(number(reg.resolve("fraud:1.2.0-rc.1").await?), 3);
    assert_eq!(
        number(reg.resolve(format!("fraud#{V2}").as_str()).await?),
        2
    );
    let aliases: Vec<_> = fraud
        .aliases()
        .iter()
        .map(|(name, a)| {
            (
                name.to_string(),
                a.version.get(),
                a.protected,
                a.set_by.to_string(),
            )
        })
        .collect();
    assert_eq!(
        aliases,
        [
            ("challenger".into(), 2, false, "alice".into()),
            ("champion".into(), 1, true, "alice".into()),
        ]
    );

    // The traffic split, and where it sends two keys.
    let split = reg.traffic_split("fraud").await?.expect("a split");
    let routes: Vec<_> = split
        .routes()
        .iter()
        .map(|r| (r.target.to_string(), r.weight))
        .collect();
    assert_eq!(
        routes,
        [("@champion".into(), 90), ("@challenger".into(), 10)]
    );
    assert_eq!(split.salt(), "exp-7");
    let mut picked = Vec::new();
    for key in ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6"] {
        let routed = reg.route("fraud", key).await?;
        assert!(routed.from_split);
        picked.push((routed.target.to_string(), routed.version.number.get()));
    }
    let picked: Vec<(&str, u64)> = picked.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    {}
    assert_eq!(picked, ROUTED);

    // The audit trail.
    let events = reg.events("fraud").await?;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, FRAUD_KINDS);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    assert_eq!(events[13].time, time("2026-12-03T17:29:27.383193004Z"));
    assert_eq!(events[13].actor.as_str(), "bob");
    let modelreg::EventKind::RolledBack {
        restored,
        displaced,
        reason,
    } = &events[13].kind
    else {
        panic!("event 14 is the rollback: {:?}", events[13].kind);
    };
    assert_eq!(
        (restored.get(), displaced.get(), reason.as_str()),
        (1, 2, "false positives up")
    );
    let modelreg::EventKind::StageChanged {
        version,
        from,
        to,
        gates,
        archived,
        ..
    } = &events[12].kind
    else {
        panic!("event 13 is a promotion: {:?}", events[12].kind);
    };
    assert_eq!(
        (version.get(), *from, *to, archived.map(|a| a.get())),
        (2, Stage::Validation, Stage::Production, Some(1))
    );
    let verdicts: Vec<_> = gates
        .iter()
        .map(|g| (g.gate.as_str(), g.passed, g.reason.as_str()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("approvals(1)", true, "approved by carol"),
            (
                "metrics_no_worse(production)",
                true,
                "against v1: auc 0.93 vs 0.91, latency_ms 11 vs 12.5"
            ),
        ]
    );

    // Time travel: between the second promotion (event 13) and the rollback (14),
    // 2 was in production and 1 archived; before the first promotion nothing was.
    let between = time("2026-12-03T17:29:27.383000000Z");
    let then = reg.model_as_of("fraud", between).await?;
    assert_eq!(then.seq(), 13);
    assert_eq!(then.production().map(|v| v.number.get()), Some(2));
    assert_eq!(
        then.version(VersionNumber::new(1)?).map(|v| v.stage),
        Some(Stage::Archived)
    );
    assert!(then.aliases().is_empty() && then.traffic_split().is_none());
    assert_eq!(
        number(reg.resolve_as_of("fraud@production", between).await?),
        2
    );
    let early = reg
        .model_as_of("fraud", time("2026-12-03T17:29:27.378000000Z"))
        .await?;
    assert_eq!((early.seq(), early.production().is_none()), (8, true));
    assert!(matches!(
        reg.model_as_of("fraud", time("2026-12-03T17:29:27Z")).await,
        Err(modelreg::Error::NotFound { .. })
    ));

    // churn: one version, distilled from fraud/2, in staging.
    let churn = reg.model("churn").await?;
    assert_eq!((churn.seq(), churn.versions().len()), (3, 1));
    let c1 = &churn.versions()[0];
    assert_eq!(
        (c1.artifact, c1.stage, c1.semver.is_none()),
        (digest(CHURN1), Stage::Staging, true)
    );
    assert_eq!(
        c1.provenance.parents,
        [ParentRef {
            model: "fraud".parse()?,
            version: VersionNumber::new(2)?,
            relation: Relation::DistilledFrom,
        }]
    );
    Ok(())
}

/// Where the fixture's split sends `user-1` … `user-6`: sticky routing must not
/// move users between variants across versions of the crate.
const ROUTED: [(&str, u64); 6] = [
    ("@champion", 1),
    ("@champion", 1),
    ("@champion", 1),
    ("@champion", 1),
    ("@champion", 1),
    ("@challenger", 2),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_0_1_artifacts_fetch_verified_and_check_finds_nothing() -> modelreg::Result<()> {
    let (tmp, reg) = open_copy(|_| false).await;
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read fetched dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(dir)
                        .expect("below")
                        .to_string_lossy()
                        .into_owned();
                    out.push((rel, std::fs::read(&p).expect("read fetched file")));
                }
            }
        }
        out.sort();
        out
    };
    let expected: [(&str, &[File]); 4] = [
        (
            "fraud/1",
            &[
                ("config.json", b"{\"layers\":2}\n"),
                ("tokenizer/vocab.txt", b"a\nb\nc\n"),
                ("weights.bin", b"fraud weights v1\x00\x01\x02"),
            ],
        ),
        (
            "fraud/2",
            &[
                ("config.json", b"{\"layers\":2}\n"),
                ("weights.bin", b"fraud weights v2"),
            ],
        ),
        ("fraud/3", &[("model.onnx", b"fraud weights v3 rc")]),
        ("churn/1", &[("churn.bin", b"churn weights")]),
    ];
    for (i, (reference, want)) in expected.iter().enumerate() {
        let dest = tmp.path().join(format!("fetched-{i}"));
        let report = reg
            .fetch(*reference, &dest, modelreg::FetchOptions::new())
            .await?;
        let want: Vec<(String, Vec<u8>)> = want
            .iter()
            .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
            .collect();
        assert_eq!(files(&dest), want, "{reference}");
        assert_eq!(report.files, want.len() as u64);
        let verified = reg.verify(*reference).await?;
        assert_eq!(verified.files, want.len() as u64, "{reference}");
    }
    let manifest = reg.manifest("fraud/1").await?;
    let entries: Vec<_> = manifest
        .entries()
        .iter()
        .map(|e| (e.path.to_string(), e.size, e.digest.to_string()))
        .collect();
    let entries: Vec<(&str, u64, &str)> = entries
        .iter()
        .map(|(p, s, d)| (p.as_str(), *s, d.as_str()))
        .collect();
    assert_eq!(entries, MANIFEST_1);
    // Written before SHA-256 was recorded: no entry has one, and the manifest
    // still re-encodes to the bytes its digest names.
    let v1 = reg.resolve("fraud/1").await?;
    assert_eq!(manifest.digest(), v1.artifact);
    assert!(manifest.entries().iter().all(|e| e.sha256.is_none()));

    let report = reg.check().await?;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        (
            report.models,
            report.events,
            report.checkpoints,
            report.versions,
            report.blobs
        ),
        (2, 23, 1, 4, 10)
    );
    Ok(())
}

/// A file of a fetched version: its path and bytes.
type File<'a> = (&'a str, &'a [u8]);

/// `fraud/1`'s manifest: path, size, digest.
const MANIFEST_1: [(&str, u64, &str); 3] = [
    (
        "config.json",
        13,
        "blake3:f726d4f434ced18703f1b348dc8d81dd7691c098097ad3b7f6c11579b101f681",
    ),
    (
        "tokenizer/vocab.txt",
        6,
        "blake3:f2a0aad84bf0cd8c16ae564ee9e5e29ea4c8638741bd0e2e64444b2649c478ef",
    ),
    (
        "weights.bin",
        19,
        "blake3:9ca5232345dc1697c01270145e2deaaa3020773084caab55e1fa9a630d27fb51",
    ),
];

/// The state is the same from the latest checkpoint (16), from the earlier one
/// (8), and from the log alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_0_1_checkpoints_give_the_logs_state() -> modelreg::Result<()> {
    let (_a, all) = open_copy(|_| false).await;
    let (_b, from_8) = open_copy(|rel| rel.ends_with("00000000000000000016.ckpt")).await;
    let (_c, log_only) = open_copy(is_checkpoint).await;
    for model in ["fraud", "churn"] {
        let full = all.model(model).await?;
        assert_eq!(full, log_only.model(model).await?, "{model}");
        assert_eq!(full, from_8.model(model).await?, "{model}");
        assert_eq!(all.events(model).await?, log_only.events(model).await?);
    }
    Ok(())
}

/// Where a local artifact store kept blob `hex` before 0.3 (`v1`, two levels of
/// shards) and where it writes it now (`v2`, one level).
fn blob_paths(root: &Path, hex: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let artifacts = root.join("artifacts/blobs");
    (
        artifacts.join(format!("v1/blake3/{}/{}/{hex}", &hex[..2], &hex[2..4])),
        artifacts.join(format!("v2/blake3/{}/{hex}", &hex[..2])),
    )
}

/// The 0.1 registry (every blob two levels deep in `blobs/v1`) takes new
/// versions, whose new blobs go to `blobs/v2` while those it shares stay where
/// they are, and collection and check see both layouts: gc deletes what only
/// purged versions used from either, keeps the rest, and check finds nothing
/// wrong before or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_0_1_registry_takes_new_versions_and_gc_and_check_see_both_layouts()
-> modelreg::Result<()> {
    let (tmp, reg) = open_copy(|_| false).await;
    // Opening wrote nothing: an old tree is only read.
    assert!(!tmp.path().join("artifacts/blobs/v2").exists());
    let me = reg.acting_as(actor("ci"));
    // `churn.bin` is stored already (v1); `new.bin` is not.
    let source = modelreg::ArtifactSource::files([
        ("churn.bin", &b"churn weights"[..]),
        ("new.bin", &b"churn weights, fine-tuned"[..]),
    ])?;
    let kept = me
        .register("churn", source, modelreg::NewVersion::new())
        .await?;
    let source = modelreg::ArtifactSource::files([("throwaway.bin", &b"purged soon"[..])])?;
    let purged = me
        .register("churn", source, modelreg::NewVersion::new())
        .await?;
    let shared = blake3::hash(b"churn weights").to_hex().to_string();
    let new = blake3::hash(b"churn weights, fine-tuned")
        .to_hex()
        .to_string();
    let throwaway = blake3::hash(b"purged soon").to_hex().to_string();
    let (shared_v1, shared_v2) = blob_paths(tmp.path(), &shared);
    assert!(shared_v1.is_file() && !shared_v2.exists());
    for hex in [
        &new,
        &throwaway,
        &kept.artifact.to_hex(),
        &purged.artifact.to_hex(),
    ] {
        let (v1, v2) = blob_paths(tmp.path(), hex);
        assert!(v2.is_file() && !v1.exists(), "{hex}");
    }
    let report = reg.check().await?;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.blobs, 10 + 4);

    // fraud/3's blobs are in v1, churn's purged version's in v2; only each of
    // them uses its own.
    let onnx = blake3::hash(b"fraud weights v3 rc").to_hex().to_string();
    let fraud_3_manifest = reg.resolve("fraud/3").await?.artifact.to_hex();
    me.purge_version("fraud/3", "superseded").await?;
    me.purge_version(format!("churn/{}", purged.number).as_str(), "tried")
        .await?;
    let gc = reg
        .gc(modelreg::GcOptions::new(std::time::Duration::ZERO))
        .await?;
    let mut deleted: Vec<String> = gc.deleted.iter().map(|d| d.to_hex()).collect();
    deleted.sort();
    let mut want = vec![
        onnx.clone(),
        fraud_3_manifest.clone(),
        throwaway.clone(),
        purged.artifact.to_hex(),
    ];
    want.sort();
    assert_eq!(deleted, want);
    for hex in &want {
        let (v1, v2) = blob_paths(tmp.path(), hex);
        assert!(!v1.exists() && !v2.exists(), "{hex} deleted");
    }
    assert!(shared_v1.is_file());
    let report = reg.check().await?;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.blobs, 14 - 4);
    // What is left still reads from both layouts.
    for reference in ["fraud/1", "fraud/2", "churn/1"] {
        reg.verify(reference).await?;
    }
    reg.verify(format!("churn/{}", kept.number).as_str())
        .await?;
    Ok(())
}
