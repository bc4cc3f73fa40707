//! Power loss below the local stores: a registry workload on local disk is traced
//! by the [power-loss simulator](crate::store::power_loss); after every prefix of
//! the trace (a power cut after filesystem operation k) the directory trees the
//! cut may leave are built, written to disk, and opened with
//! [`Registry::open_local`]. Each must:
//!
//! - open, list its models and read every log without error;
//! - hold every command acknowledged before the cut — each model's events are
//!   exactly the first n events of the uncut run, n at least what was
//!   acknowledged and at most one more (the command in flight);
//! - fold with its checkpoints to the same state as without them;
//! - pass [`Registry::check`] with no problem: every visible version's manifest
//!   and blobs present and hashing to their digests (no partial version);
//! - accept a new registration (the leftovers of the cut do not block writers).
//!
//! Allowed leftovers, invisible to readers and not reported by `check`: temp
//! files in `tmp/` whose removal was not synced, and blobs no event references
//! (those of a registration in flight, or a delete lost).
//!
//! `MODELREG_POWER_SAMPLES` sets the random outcomes tried per cut point when there
//! are too many to try all (default 4, besides the two extremes);
//! `MODELREG_POWER_EXHAUSTIVE` the number of outcomes up to which all are tried
//! (default 8); `MODELREG_POWER_SEED` the seed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::store::power_loss::{Omit, Op, Recorder, Replay, SkipSyncs, Tree};
use crate::store::{LocalArtifactOptions, LocalArtifactStore, LocalMetadataStore, PackOptions};
use crate::{
    Actor, ArtifactSource, CreateModel, Error, Metrics, ModelState, NewVersion, Registry, Result,
    SetAlias, Stage,
};

const MODELS: [&str; 2] = ["m", "n"];
const STEPS: usize = 14;

/// Step `i` of the workload: one command, so at most one event.
async fn step(reg: &Registry, i: usize, source_dir: &Path) -> Result<()> {
    let me = Actor::new("ci")?;
    let approver = Actor::new("approver")?;
    let version = |n: usize| -> Result<NewVersion> {
        Ok(NewVersion::new().metrics(Metrics::new().with("auc", 0.5 + n as f64 / 100.0)?))
    };
    match i {
        0 => reg
            .acting_as(me)
            .create_model("m", CreateModel::new())
            .await
            .map(drop),
        1 => reg
            .acting_as(me.clone())
            .register(
                "m",
                ArtifactSource::files([
                    ("weights.bin", vec![1u8; 3000]),
                    ("config.json", b"{}".to_vec()),
                ])?,
                version(1)?,
            )
            .await
            .map(drop),
        2 => reg
            .acting_as(me)
            .create_model("n", CreateModel::new())
            .await
            .map(drop),
        // From a directory on disk: `put_file`, and the hash cache under the registry.
        3 => reg
            .acting_as(me.clone())
            .register("m", ArtifactSource::dir(source_dir), version(2)?)
            .await
            .map(drop),
        4 => reg
            .acting_as(me.clone())
            .transition("m/1", Stage::Staging, "")
            .await
            .map(drop),
        5 => reg
            .acting_as(me.clone())
            .add_metrics("m/1", Metrics::new().with("f1", 0.7)?)
            .await
            .map(drop),
        6 => reg
            .acting_as(me.clone())
            .transition("m/1", Stage::Validation, "")
            .await
            .map(drop),
        7 => reg.acting_as(me.clone()).promote("m/1", "").await.map(drop),
        // Shares `config.json` with m/1: a blob that is already stored.
        8 => reg
            .acting_as(me.clone())
            .register(
                "n",
                ArtifactSource::files([
                    ("model.onnx", vec![2u8; 5000]),
                    ("config.json", b"{}".to_vec()),
                ])?,
                version(3)?,
            )
            .await
            .map(drop),
        9 => reg
            .acting_as(me)
            .set_alias("m/2", "challenger", SetAlias::new())
            .await
            .map(drop),
        10 => reg
            .acting_as(approver.clone())
            .approve("m/2", Stage::Production, "")
            .await
            .map(drop),
        11 => reg
            .acting_as(me.clone())
            .transition("m/2", Stage::Staging, "")
            .await
            .map(drop),
        12 => reg
            .acting_as(me.clone())
            .deprecate("n/1", "superseded")
            .await
            .map(drop),
        _ => reg
            .acting_as(me.clone())
            .remove_alias("m", "challenger", "")
            .await
            .map(drop),
    }
}

/// The artifact options of a packed sweep: files from disk of 1 KiB or more
/// (the workload's `weights.bin`) cut into chunks and written into packs, with
/// their indexes and recipes.
fn packed_options() -> LocalArtifactOptions {
    LocalArtifactOptions::new().packed(PackOptions::new().min_file_size(1024))
}

/// The workload's registry: checkpoints every 3 events, so cuts also land while
/// checkpoints are written and pruned. The layout is `open_local`'s; packed
/// files with `packed`.
fn registry(dir: &Path, packed: bool) -> Result<Registry> {
    let options = if packed {
        packed_options()
    } else {
        LocalArtifactOptions::new()
    };
    Registry::builder()
        .metadata(Arc::new(LocalMetadataStore::open(dir.join("metadata"))?))
        .artifacts(Arc::new(LocalArtifactStore::open_with(
            dir.join("artifacts"),
            options,
        )?))
        .hash_cache(dir.join("cache/hashes"))
        .checkpoint_every(3)
        .build()
}

/// How a sweep runs.
struct Sweep {
    /// Random outcomes per cut point beyond the two extremes.
    samples: usize,
    /// Up to this many outcomes, all are tried.
    exhaustive: usize,
    seed: u64,
    /// Calls left out of the trace, as if the stores did not make them.
    omit: Option<Omit>,
    /// Whether to register a new version on every recovered registry.
    write_after: bool,
    /// Whether the artifact store packs (`packed_options`).
    packed: bool,
}

impl Sweep {
    fn from_env() -> Self {
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Sweep {
            samples: env("MODELREG_POWER_SAMPLES", 4) as usize,
            exhaustive: env("MODELREG_POWER_EXHAUSTIVE", 8) as usize,
            seed: env("MODELREG_POWER_SEED", 7),
            omit: None,
            write_after: true,
            packed: false,
        }
    }

    /// Only the two extremes (all durable, all live) per cut point.
    fn extremes(omit: Omit) -> Self {
        Sweep {
            samples: 0,
            exhaustive: 2,
            seed: 1,
            omit: Some(omit),
            write_after: false,
            packed: false,
        }
    }
}

/// What a sweep tried and found.
#[derive(Debug, Default)]
struct Figures {
    /// Filesystem operations the workload made (cut points: one more).
    ops: usize,
    cut_points: usize,
    /// Trees built and opened.
    images: usize,
    /// Most undecided names and contents at one cut point.
    max_undecided: usize,
    /// Acknowledged commands checked present, summed over images.
    acked_checked: usize,
    /// Images holding the command in flight.
    in_flight_landed: usize,
    /// Operations on packs, pack indexes and recipes.
    pack_ops: usize,
    /// Images with leftover temp files / blobs no event references.
    leftover_temp: usize,
    leftover_blobs: usize,
    /// Everything that did not hold (empty when the stores are right).
    failures: Vec<String>,
}

/// The per-model event counts acknowledged at a point of the trace.
type Counts = BTreeMap<&'static str, usize>;

async fn counts(reg: &Registry) -> Counts {
    let mut out = Counts::new();
    for m in MODELS {
        let n = match reg.model(m).await {
            Ok(state) => state.seq() as usize,
            Err(_) => 0,
        };
        out.insert(m, n);
    }
    out
}

/// A scratch directory in memory where there is one (`/dev/shm`): the sweep
/// creates and removes some 30 files per tree, which a loaded disk makes slow.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("tempdir")
}

async fn run_sweep(sweep: &Sweep) -> Figures {
    let scratch = scratch_dir();
    let root = scratch.path().join("rec");
    let source = scratch.path().join("src");
    std::fs::create_dir_all(source.join("sub")).expect("source dir");
    std::fs::write(source.join("weights.bin"), vec![3u8; 4000]).expect("source file");
    std::fs::write(source.join("sub/vocab.txt"), b"a b c").expect("source file");
    std::fs::create_dir(&root).expect("root");
    // The model decides what is durable; the disk's fsyncs would only cost time.
    let _no_syncs = SkipSyncs::below(scratch.path());

    // The uncut run, traced; `acks[j]` is (trace length, counts) once step j returned.
    let recorder = Recorder::start_omitting(&root, sweep.omit);
    let reg = registry(&root.join("reg"), sweep.packed).expect("registry");
    let mut acks: Vec<(usize, Counts)> = vec![(0, counts(&reg).await)];
    for i in 0..STEPS {
        step(&reg, i, &source)
            .await
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        let at = recorder.len();
        acks.push((at, counts(&reg).await));
    }
    let ops = recorder.ops();
    drop(recorder);
    if std::env::var("MODELREG_POWER_TRACE").is_ok() {
        for (i, op) in ops.iter().enumerate() {
            let short = match op {
                Op::SyncFile(p, bytes) => {
                    format!("SyncFile({}, {} bytes)", p.join("/"), bytes.len())
                }
                Op::Import(p, bytes) => format!("Import({}, {} bytes)", p.join("/"), bytes.len()),
                op => format!("{op:?}"),
            };
            eprintln!("op {i}: {short}");
        }
    }
    let mut full = BTreeMap::new();
    for m in MODELS {
        full.insert(m, reg.events(m).await.expect("events"));
    }
    drop(reg);

    let mut figures = Figures {
        ops: ops.len(),
        pack_ops: ops.iter().filter(|op| touches_packs(op)).count(),
        ..Figures::default()
    };
    let mut rng = fastrand::Rng::with_seed(sweep.seed);
    let mut replay = Replay::new();
    let image_dir = scratch.path().join("image");
    for k in 0..=ops.len() {
        if k > 0 {
            replay.apply(&ops[k - 1]);
        }
        figures.cut_points += 1;
        // Acknowledged: the last step that returned by op k; in flight: the next.
        let acked = acks.iter().rposition(|(at, _)| *at <= k).expect("acks[0]");
        let lo = &acks[acked].1;
        let hi = &acks[(acked + 1).min(acks.len() - 1)].1;
        let undecided = replay.uncertain();
        figures.max_undecided = figures.max_undecided.max(undecided.len());
        for (n, outcome) in Replay::outcomes(&undecided, sweep.exhaustive, sweep.samples, &mut rng)
            .iter()
            .enumerate()
        {
            let tree = replay.image(&undecided, outcome);
            let label = format!(
                "cut after op {k} of {} ({:?}), outcome {n}",
                ops.len(),
                ops.get(k.wrapping_sub(1))
            );
            std::fs::create_dir(&image_dir).expect("image dir");
            tree.materialize(&image_dir).expect("materialize");
            figures.images += 1;
            if let Err(failure) = check_image(
                &image_dir.join("reg"),
                &tree,
                (lo, hi),
                &full,
                sweep,
                &mut figures,
            )
            .await
            {
                figures.failures.push(format!("{label}: {failure}"));
            }
            figures.acked_checked += acked;
            std::fs::remove_dir_all(&image_dir).expect("clean image dir");
        }
    }
    figures
}

/// Whether an operation is on a pack, a pack index or a recipe.
fn touches_packs(op: &Op) -> bool {
    let on = |p: &Vec<String>| p.iter().any(|c| c == "packs" || c == "recipes");
    match op {
        Op::Create(p)
        | Op::SyncFile(p, _)
        | Op::Import(p, _)
        | Op::Remove(p)
        | Op::Mkdir(p)
        | Op::SyncDir(p) => on(p),
        Op::Link(a, b) | Op::Rename(a, b) => on(a) || on(b),
    }
}

/// Opens one tree and checks it; `Err` says what did not hold.
async fn check_image(
    dir: &Path,
    tree: &Tree,
    (lo, hi): (&Counts, &Counts),
    full: &BTreeMap<&str, Vec<crate::Event>>,
    sweep: &Sweep,
    figures: &mut Figures,
) -> std::result::Result<(), String> {
    let opened = if sweep.packed {
        Registry::open_local_with(dir, packed_options()).await
    } else {
        Registry::open_local(dir).await
    };
    let reg = opened.map_err(|e| format!("does not open: {e}"))?;
    let listed = reg
        .list_models()
        .await
        .map_err(|e| format!("list_models: {e}"))?;
    let mut landed = false;
    for m in MODELS {
        let events = match reg.events(m).await {
            Ok(events) => events,
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(format!("events of {m}: {e}")),
        };
        let (min, max) = (lo[m], hi[m]);
        if events.len() < min {
            return Err(format!(
                "LOST: model {m} has {} events, {min} were acknowledged",
                events.len()
            ));
        }
        if events.len() > max {
            return Err(format!(
                "model {m} has {} events, at most {max} were written",
                events.len()
            ));
        }
        landed |= events.len() > min;
        if events[..] != full[m][..events.len()] {
            return Err(format!("model {m}: events differ from the ones written"));
        }
        if events.is_empty() {
            if listed.iter().any(|l| l.as_str() == m) {
                return Err(format!("model {m} listed without events"));
            }
            continue;
        }
        let state = reg.model(m).await.map_err(|e| format!("model {m}: {e}"))?;
        let replayed = ModelState::replay(events).map_err(|e| format!("replay {m}: {e}"))?;
        if state != replayed {
            return Err(format!(
                "model {m}: the checkpointed state differs from the log's"
            ));
        }
    }
    figures.in_flight_landed += usize::from(landed);
    let report = reg.check().await.map_err(|e| format!("check: {e}"))?;
    if !report.is_ok() {
        return Err(format!("check: {:?}", report.problems));
    }
    let files = tree.files();
    figures.leftover_temp += usize::from(files.iter().any(|f| f.contains("/tmp/.tmp-")));
    let blobs = files.iter().filter(|f| f.contains("/blobs/")).count() as u64;
    figures.leftover_blobs += usize::from(blobs > report.blobs);
    if sweep.write_after {
        let me = Actor::new("after").map_err(|e| e.to_string())?;
        if let Err(Error::NotFound { .. }) = reg.model("m").await {
            reg.acting_as(me.clone())
                .create_model("m", CreateModel::new())
                .await
                .map_err(|e| format!("create after the cut: {e}"))?;
        }
        let source =
            ArtifactSource::files([("weights.bin", vec![1u8; 3000])]).map_err(|e| e.to_string())?;
        let v = reg
            .acting_as(me)
            .register("m", source, NewVersion::new())
            .await
            .map_err(|e| format!("register after the cut: {e}"))?;
        reg.verify(&v)
            .await
            .map_err(|e| format!("verify after the cut: {e}"))?;
    }
    Ok(())
}

/// Renders the figures for the test output (and `docs/reliability.md`).
fn summary(f: &Figures) -> String {
    format!(
        "{} filesystem ops ({} on packs and recipes), {} cut points, {} trees opened (at most \
         {} undecided names or contents at one cut), {} acknowledged commands checked, {} trees \
         with the command in flight landed, {} with leftover temp files, {} with unreferenced \
         blobs; {} failures",
        f.ops,
        f.pack_ops,
        f.cut_points,
        f.images,
        f.max_undecided,
        f.acked_checked,
        f.in_flight_landed,
        f.leftover_temp,
        f.leftover_blobs,
        f.failures.len()
    )
}

/// Prints a sweep's figures under `label`; fails unless every cut point was
/// tried and every tree held.
fn assert_every_cut_held(label: &str, figures: &Figures) {
    eprintln!("{label}: {}", summary(figures));
    assert!(
        figures.failures.is_empty(),
        "{} failures, first: {:#?}",
        figures.failures.len(),
        &figures.failures[..figures.failures.len().min(5)]
    );
    assert_eq!(figures.cut_points, figures.ops + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_power_cut_keeps_acknowledged_commands_and_no_partial_version() {
    let figures = run_sweep(&Sweep::from_env()).await;
    assert_every_cut_held("power-loss sweep", &figures);
    // Some cut points had outcomes to choose between.
    assert!(figures.images > 2 * figures.cut_points);
    assert!(figures.in_flight_landed > 0 && figures.leftover_temp > 0);
}

/// The same workload on a packed artifact store: `weights.bin` from disk goes
/// into a pack with its index and recipe (published in that order before the
/// event), and every cut of that path must leave no version whose file cannot
/// be rebuilt and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_power_cut_of_a_packed_store_keeps_acknowledged_commands_and_no_partial_version() {
    // Half the random outcomes per cut of the plain sweep (it covers the same
    // metadata path): every cut point is still tried, each with both extremes.
    let plain = Sweep::from_env();
    let figures = run_sweep(&Sweep {
        packed: true,
        samples: plain.samples / 2,
        ..plain
    })
    .await;
    assert_every_cut_held("power-loss sweep, packed", &figures);
    // The pack path was traced (a pack, its index and a recipe at least).
    assert!(figures.pack_ops >= 6, "{}", summary(&figures));
    // And the sweep sees it: without the fsyncs of the pack directories, a
    // published pack's name can vanish under a version whose recipe names it.
    let figures = run_sweep(&Sweep {
        packed: true,
        ..Sweep::extremes(|op| matches!(op, Op::SyncDir(p) if p.iter().any(|c| c == "packs")))
    })
    .await;
    eprintln!(
        "packed, without pack directory fsyncs: {}",
        summary(&figures)
    );
    assert!(
        figures.failures.iter().any(|f| f.contains("check")),
        "{}",
        summary(&figures)
    );
}

/// Whether an op syncs a directory below `metadata/logs`.
fn syncs_log_dir(op: &Op) -> bool {
    matches!(op, Op::SyncDir(p) if p.starts_with(&["reg".into(), "metadata".into(), "logs".into()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_notices_a_missing_fsync() {
    // Without the directory fsyncs of the logs, acknowledged events can vanish.
    let figures = run_sweep(&Sweep::extremes(syncs_log_dir)).await;
    eprintln!("without log directory fsyncs: {}", summary(&figures));
    assert!(
        figures.failures.iter().any(|f| f.contains("LOST")),
        "{}",
        summary(&figures)
    );
    // Without the file fsyncs of blobs, a visible version can have wrong bytes.
    let figures = run_sweep(&Sweep::extremes(|op| {
        matches!(op, Op::SyncFile(p, _) if p.first().is_some_and(|r| r == "reg") && p.get(1).is_some_and(|s| s == "artifacts"))
    }))
    .await;
    eprintln!("without blob file fsyncs: {}", summary(&figures));
    assert!(
        figures.failures.iter().any(|f| f.contains("check")),
        "{}",
        summary(&figures)
    );
    // Without the fsync of `blake3/` after a shard directory is made in it, the
    // shard and its (synced) blobs can vanish under a registered version.
    let figures = run_sweep(&Sweep::extremes(
        |op| matches!(op, Op::SyncDir(p) if p.last().is_some_and(|d| d == "blake3")),
    ))
    .await;
    eprintln!("without shard directory fsyncs: {}", summary(&figures));
    assert!(
        figures
            .failures
            .iter()
            .any(|f| f.contains("check") && f.contains("not found")),
        "{}: {:?}",
        summary(&figures),
        figures.failures.first()
    );
}
