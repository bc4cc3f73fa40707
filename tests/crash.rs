//! Crash safety: a child process runs registry operations and is killed with
//! SIGKILL at a random moment, over and over on the same registry. After every kill
//! the registry must open without error, every operation the child reported as
//! acknowledged must be there, and no partially registered version may be visible
//! (every version's blobs present and intact).
//!
//! It runs on four targets (`tests/common/targets.rs`): a local directory and
//! object_store's `LocalFileSystem` through a `file://` URL always, and the S3
//! (moto) and Azure (Azurite) servers that `tests/common/servers.rs` finds (in CI a
//! missing server fails the test).
//!
//! Kills: `MODELREG_CRASH_TRIALS` for the local and `file://` targets (default
//! 200), `MODELREG_CRASH_SERVER_TRIALS` for each server (default 40, to keep CI
//! short; 200 for the full run).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::env_num;
use common::servers::Server;
use common::targets::{Target, open_with_checkpoints, scratch_beside};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Error, Metrics, NewVersion, SetAlias, Stage,
};

const CHILD_TARGET: &str = "MODELREG_CRASH_TARGET";
const CHILD_SEED: &str = "MODELREG_CRASH_SEED";
/// Checkpoints every few events, so that kills also land while one is written.
const CHECKPOINT_EVERY: u64 = 5;

/// The child: works until killed, printing `ACK …` after every operation that
/// returned successfully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let (Ok(target), Ok(seed)) = (std::env::var(CHILD_TARGET), std::env::var(CHILD_SEED)) else {
        return; // Only runs when spawned by the parent test.
    };
    let reg = open_with_checkpoints(&target, CHECKPOINT_EVERY);
    let me = Actor::new("child").expect("actor");
    let mut rng = fastrand::Rng::with_seed(seed.parse().expect("seed"));
    // A packed target registers from files on disk, written here (beside
    // the registry, in the parent's temp directory).
    let packed = target.starts_with("packed:");
    let source = scratch_beside(&target).join(format!("src-{seed}"));
    if packed {
        std::fs::create_dir_all(&source).expect("source dir");
    }
    let mut last_big = Vec::new();
    println!("READY");
    for i in 0u64.. {
        let state = reg.model("crash").await.expect("open after earlier kills");
        let count = state.versions().len() as u64;
        let target = format!("crash/{}", rng.u64(1..=count.max(1)));
        let roll = rng.u32(0..100);
        if roll < 40 || count == 0 {
            // Two files, one large enough to take a moment to copy and sync.
            let payload = format!("{seed}-{i}");
            let big = vec![rng.u8(..); 256 * 1024];
            let src = if packed {
                // From disk, so that the store packs `weights.bin` (a pack, its
                // index and a recipe per new file); every other one repeats the
                // previous weights, whose chunks are then found.
                let big = if i % 2 == 1 { last_big.clone() } else { big };
                last_big = big.clone();
                std::fs::write(source.join("payload.txt"), &payload).expect("source");
                std::fs::write(source.join("weights.bin"), &big).expect("source");
                ArtifactSource::dir(&source)
            } else {
                ArtifactSource::files([
                    ("payload.txt", payload.clone().into_bytes()),
                    ("weights.bin", big),
                ])
                .expect("source")
            };
            let v = reg
                .acting_as(me.clone())
                .register("crash", src, NewVersion::new())
                .await
                .expect("register");
            println!("ACK register {} {payload} {}", v.number, v.artifact);
            continue;
        }
        let event = if roll < 60 {
            // The target may be in production, whose metrics change only by
            // an audited override: take it, so metrics events keep landing.
            reg.acting_as(me.clone())
                .override_immutable("crash test")
                .add_metrics(
                    target.as_str(),
                    Metrics::new().with("auc", rng.f64()).expect("metric"),
                )
                .await
                .map(|_| None)
        } else if roll < 75 {
            reg.acting_as(me.clone())
                .set_alias(target.as_str(), "champion", SetAlias::new())
                .await
                .map(Some)
        } else {
            let stage = state
                .resolve(
                    &target
                        .parse::<modelreg::VersionRef>()
                        .expect("ref")
                        .selector,
                )
                .map(|v| v.stage)
                .unwrap_or_default();
            let to = match stage {
                Stage::None | Stage::Archived => Stage::Staging,
                Stage::Staging => Stage::Validation,
                Stage::Validation => Stage::Production,
                Stage::Production => Stage::Archived,
            };
            reg.acting_as(me.clone())
                .transition(target.as_str(), to, "crash test")
                .await
                .map(Some)
        };
        match event {
            Ok(Some(e)) => println!("ACK event {} {}", e.seq, e.kind.name()),
            Ok(None) => println!("ACK metrics {target}"),
            Err(Error::NotFound { .. } | Error::InvalidTransition { .. }) => {}
            Err(e) => panic!("op {i}: {e}"),
        }
    }
}

#[test]
fn local_sigkill_at_random_moments_loses_nothing_acknowledged() {
    run(&Target::local(), env_num("MODELREG_CRASH_TRIALS", 200));
}

/// The same on a local store that packs `weights.bin` (issue 17): kills land
/// while packs, their indexes and recipes are written, and a version whose
/// file is in packs must rebuild and verify after every kill.
#[test]
fn packed_local_sigkill_at_random_moments_loses_nothing_acknowledged() {
    let target = Target::local_packed();
    run(&target, env_num("MODELREG_CRASH_TRIALS", 200) / 5);
    // The kills landed on a store that packs: its files are in packs.
    let packs = scratch_beside(&target.spec).join("reg/artifacts/packs/v1/blake3");
    let names: Vec<String> = std::fs::read_dir(&packs)
        .expect("the packs directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".pack")) && names.iter().any(|n| n.ends_with(".idx")),
        "{names:?}"
    );
}

#[test]
fn file_url_sigkill_at_random_moments_loses_nothing_acknowledged() {
    run(&Target::file_url(), env_num("MODELREG_CRASH_TRIALS", 200));
}

#[test]
#[cfg_attr(
    not(modelreg_s3),
    ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
)]
fn s3_sigkill_at_random_moments_loses_nothing_acknowledged() {
    let target = Target::server(Server::S3);
    run(&target, env_num("MODELREG_CRASH_SERVER_TRIALS", 40));
}

#[test]
#[cfg_attr(
    not(modelreg_azure),
    ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)"
)]
fn azure_sigkill_at_random_moments_loses_nothing_acknowledged() {
    let target = Target::server(Server::Azure);
    run(&target, env_num("MODELREG_CRASH_SERVER_TRIALS", 40));
}

/// What the children acknowledged so far.
#[derive(Default)]
struct Acked {
    /// Version number → (payload, artifact digest).
    registrations: BTreeMap<u64, (String, String)>,
    /// Event number → kind.
    events: Vec<(u64, String)>,
    /// All acknowledgements, metrics included.
    count: usize,
}

/// Kills a child `trials` times at random moments on `target`, checking the
/// registry after each kill.
fn run(target: &Target, trials: u64) {
    let started = Instant::now();
    // Requests to a server take longer: kill over a longer window so that kills
    // land in every phase of an operation there too.
    let window_us = if target.is_server() { 300_000 } else { 150_000 };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        open_with_checkpoints(&target.spec, CHECKPOINT_EVERY)
            .acting_as(Actor::new("setup").expect("actor"))
            .create_model("crash", CreateModel::new())
            .await
            .expect("create");
    });
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = fastrand::Rng::with_seed(42);
    let mut acked = Acked::default();
    for trial in 0..trials {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_TARGET, &target.spec)
            .env(CHILD_SEED, trial.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test crash_child ... " before the first line.
                let line = line.rsplit("... ").next().unwrap_or(&line).to_owned();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is working, then kill it a random moment later.
        let ready = rx.iter().any(|l| l == "READY");
        assert!(
            ready,
            "{}: trial {trial}: child never got ready",
            target.name
        );
        std::thread::sleep(Duration::from_micros(rng.u64(0..window_us)));
        let still_running = child.try_wait().expect("try_wait").is_none();
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        reader.join().expect("reader");
        assert!(
            still_running,
            "{}: trial {trial}: child exited by itself: {status}",
            target.name
        );
        let mut new_versions = Vec::new();
        for line in rx.try_iter() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["ACK", "register", n, payload, artifact] => {
                    let n: u64 = n.parse().expect("n");
                    let earlier = acked
                        .registrations
                        .insert(n, ((*payload).to_owned(), (*artifact).to_owned()));
                    assert!(
                        earlier.is_none(),
                        "{}: trial {trial}: version {n} acknowledged twice: {earlier:?} and {payload}",
                        target.name
                    );
                    new_versions.push(n);
                }
                ["ACK", "event", seq, kind] => acked
                    .events
                    .push((seq.parse().expect("seq"), (*kind).to_owned())),
                ["ACK", ..] => {}
                _ => continue,
            }
            acked.count += 1;
        }
        rt.block_on(check(target, &acked, &new_versions, trial));
    }
    eprintln!(
        "crash ({}): {trials} SIGKILLs, {} acknowledged operations ({} registrations) checked after every kill, 0 lost, {:.0} s",
        target.name,
        acked.count,
        acked.registrations.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The registry opens, holds everything acknowledged, and shows no partial
/// version. Versions acknowledged in this trial have their manifest read and their
/// payload compared; earlier ones must still name the artifact they were
/// acknowledged with (artifacts are immutable and content-addressed, so the same
/// digest is the same files).
async fn check(target: &Target, acked: &Acked, new_versions: &[u64], trial: u64) {
    let name = target.name;
    let reg = open_with_checkpoints(&target.spec, CHECKPOINT_EVERY);
    let state = reg
        .model("crash")
        .await
        .unwrap_or_else(|e| panic!("{name}: trial {trial}: the registry does not open: {e}"));
    let log = reg.events("crash").await.expect("events");
    assert_eq!(
        modelreg::ModelState::replay(log.clone()).expect("replay"),
        state,
        "{name}: trial {trial}: the checkpointed open and the full replay disagree"
    );
    for (n, (_, artifact)) in &acked.registrations {
        let v = state
            .versions()
            .iter()
            .find(|v| v.number.get() == *n)
            .unwrap_or_else(|| panic!("{name}: trial {trial}: acknowledged version {n} lost"));
        assert_eq!(
            v.artifact.to_string(),
            *artifact,
            "{name}: trial {trial}: version {n}"
        );
    }
    for n in new_versions {
        let (payload, _) = &acked.registrations[n];
        let m = reg
            .manifest(format!("crash/{n}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: trial {trial}: version {n}'s manifest: {e}"));
        let entry = m.get("payload.txt").expect("payload file");
        assert_eq!(
            entry.digest,
            Digest::of(payload.as_bytes()),
            "{name}: trial {trial}: version {n}"
        );
    }
    for (seq, kind) in &acked.events {
        let e = log
            .get(*seq as usize - 1)
            .unwrap_or_else(|| panic!("{name}: trial {trial}: acknowledged event {seq} lost"));
        assert_eq!(e.kind.name(), kind, "{name}: trial {trial}: event {seq}");
    }
    // Only whole versions are visible: the newest few must verify (older ones
    // were verified after earlier kills and are immutable).
    for v in state.versions().iter().rev().take(3) {
        reg.verify(format!("crash/{}", v.number))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{name}: trial {trial}: version {} is partial: {e}",
                    v.number
                )
            });
    }
}
