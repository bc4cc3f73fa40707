//! Crash safety: a child process runs registry operations on a local registry and
//! is killed with SIGKILL at a random moment, over and over on the same
//! directory. After every kill the registry must open without error, every
//! operation the child reported as acknowledged must be there, and no partially
//! registered version may be visible (every version's blobs present and intact).
//!
//! `MODELREG_CRASH_TRIALS` sets the number of kills (default 200).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use modelreg::store::{LocalArtifactStore, LocalMetadataStore};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Error, Metrics, NewVersion, Registry, SetAlias,
    Stage,
};

const CHILD_DIR: &str = "MODELREG_CRASH_DIR";
const CHILD_SEED: &str = "MODELREG_CRASH_SEED";

/// Checkpoints every few events, so that kills also land while one is written.
fn open(root: &Path) -> Registry {
    Registry::builder()
        .metadata(Arc::new(
            LocalMetadataStore::open(root.join("metadata")).expect("metadata store"),
        ))
        .artifacts(Arc::new(
            LocalArtifactStore::open(root.join("artifacts")).expect("artifact store"),
        ))
        .checkpoint_every(5)
        .build()
        .expect("registry")
}

/// The child: works until killed, printing `ACK …` after every operation that
/// returned successfully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_SEED)) else {
        return; // Only runs when spawned by the parent test.
    };
    let reg = open(Path::new(&dir));
    let me = Actor::new("child").expect("actor");
    let mut rng = fastrand::Rng::with_seed(seed.parse().expect("seed"));
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
            let src = ArtifactSource::files([
                ("payload.txt", payload.clone().into_bytes()),
                ("weights.bin", big),
            ])
            .expect("source");
            let v = reg
                .register("crash", src, NewVersion::by(me.clone()))
                .await
                .expect("register");
            println!("ACK register {} {payload}", v.number);
            continue;
        }
        let event = if roll < 60 {
            reg.add_metrics(
                target.as_str(),
                Metrics::new().with("auc", rng.f64()).expect("metric"),
                &me,
            )
            .await
            .map(|_| None)
        } else if roll < 75 {
            reg.set_alias(target.as_str(), "champion", SetAlias::by(me.clone()))
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
            reg.transition(target.as_str(), to, &me, "crash test")
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
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let trials: u64 = std::env::var("MODELREG_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        open(&root)
            .create_model(
                "crash",
                CreateModel::by(Actor::new("setup").expect("actor")),
            )
            .await
            .expect("create");
    });
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = fastrand::Rng::with_seed(42);
    let mut acknowledged = 0usize;
    let mut killed_mid_run = 0usize;
    let mut registrations: Vec<(u64, String)> = Vec::new();
    let mut events: Vec<(u64, String)> = Vec::new();
    for trial in 0..trials {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, &root)
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
        assert!(ready, "trial {trial}: child never got ready");
        std::thread::sleep(Duration::from_micros(rng.u64(0..150_000)));
        let still_running = child.try_wait().expect("try_wait").is_none();
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        reader.join().expect("reader");
        if still_running {
            killed_mid_run += 1;
        } else {
            panic!("trial {trial}: child exited by itself: {status}");
        }
        for line in rx.try_iter() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["ACK", "register", n, payload] => {
                    registrations.push((n.parse().expect("n"), (*payload).to_owned()))
                }
                ["ACK", "event", seq, kind] => {
                    events.push((seq.parse().expect("seq"), (*kind).to_owned()))
                }
                ["ACK", ..] => {}
                _ => continue,
            }
            acknowledged += 1;
        }
        rt.block_on(check(&root, &registrations, &events, trial));
    }
    eprintln!(
        "crash: {trials} SIGKILLs ({killed_mid_run} mid-run), {acknowledged} acknowledged operations checked after every kill, 0 lost"
    );
}

/// The registry opens, holds everything acknowledged, and shows no partial
/// version.
async fn check(root: &Path, registrations: &[(u64, String)], events: &[(u64, String)], trial: u64) {
    let reg = open(root);
    let state = reg
        .model("crash")
        .await
        .unwrap_or_else(|e| panic!("trial {trial}: the registry does not open: {e}"));
    let log = reg.events("crash").await.expect("events");
    assert_eq!(
        modelreg::ModelState::replay(log.clone()).expect("replay"),
        state,
        "trial {trial}: the checkpointed open and the full replay disagree"
    );
    for (n, payload) in registrations {
        let m = reg
            .manifest(format!("crash/{n}"))
            .await
            .unwrap_or_else(|e| panic!("trial {trial}: acknowledged version {n} lost: {e}"));
        let entry = m.get("payload.txt").expect("payload file");
        assert_eq!(
            entry.digest,
            Digest::of(payload.as_bytes()),
            "trial {trial}: version {n}"
        );
    }
    for (seq, kind) in events {
        let e = log
            .get(*seq as usize - 1)
            .unwrap_or_else(|| panic!("trial {trial}: acknowledged event {seq} lost"));
        assert_eq!(e.kind.name(), kind, "trial {trial}: event {seq}");
    }
    // Only whole versions are visible: the newest few must verify (older ones
    // were verified after earlier kills and are immutable).
    for v in state.versions().iter().rev().take(3) {
        reg.verify(format!("crash/{}", v.number))
            .await
            .unwrap_or_else(|e| panic!("trial {trial}: version {} is partial: {e}", v.number));
    }
}
