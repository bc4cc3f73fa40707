//! The lifecycle across processes on a local registry: child processes racing to
//! promote different versions of one model leave exactly one version in
//! production, and a log that replays to the state every reader sees.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::children::{spawn_child, wait_children};
use common::lifecycle_suite::{bring_to, in_production, stage_of};
use common::registry_suite::{actor, create, num, register_bytes};
use modelreg::{Error, EventKind, ModelState, Registry, Stage};
use tempfile::TempDir;

/// How many child processes race in each round, each promoting its own version.
const CHILDREN: u64 = 4;
/// How many rounds the race is run.
const ROUNDS: u64 = 3;
/// Tells a child process which registry directory to open.
const CHILD_DIR: &str = "MODELREG_PROMOTE_DIR";
/// Tells a child process which version to promote.
const CHILD_VERSION: &str = "MODELREG_PROMOTE_VERSION";
/// Tells a child process the directory of the start barrier: it creates
/// `ready-<version>` there and waits for `go`.
const CHILD_BARRIER: &str = "MODELREG_PROMOTE_BARRIER";
/// How long anyone waits at the barrier before giving up.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(120);

/// Opens the registry in `dir`.
async fn open(dir: &Path) -> Registry {
    Registry::open_local(dir)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Waits until `path` exists, polling.
async fn wait_for(path: &Path) {
    let deadline = Instant::now() + BARRIER_TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear in time",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What a child reported.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Its promotion is event `seq`.
    Promoted(u64),
    /// It failed with `ConcurrentChange`, saying what changed.
    ConcurrentChange(String),
}

/// Not a test on its own: the body of one child process of
/// [`processes_racing_to_promote_leave_one_production_version`], which runs this
/// test binary with only this test selected. Without the environment variables it
/// does nothing. It reports its outcome on stdout; any other error fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let version: u64 = std::env::var(CHILD_VERSION)
        .expect("version")
        .parse()
        .expect("version is a number");
    let barrier = PathBuf::from(std::env::var_os(CHILD_BARRIER).expect("barrier dir"));
    let reg = open(Path::new(&dir)).await;
    // Fold the log before the start, so that the race is about the promotion.
    assert_eq!(stage_of(&reg, "race", version).await, Stage::Validation);
    std::fs::write(barrier.join(format!("ready-{version}")), b"").expect("report ready");
    wait_for(&barrier.join("go")).await;
    let who = actor(&format!("child {version}"));
    match reg
        .acting_as(who.clone())
        .promote(format!("race/{version}"), "race")
        .await
    {
        Ok(e) => println!("OUTCOME promoted {}", e.seq),
        Err(Error::ConcurrentChange { model, what }) => {
            assert_eq!(model, "race");
            println!("OUTCOME concurrent_change {what}");
        }
        Err(e) => panic!("v{version}: expected Ok or ConcurrentChange, got {e:?}"),
    }
}

/// Reads the one outcome line of a child's output, after checking it ran the
/// child test and exited successfully.
fn outcome(version: u64, out: &Output) -> Outcome {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child for v{version} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Guards against the filter matching nothing, which also exits 0.
    assert!(
        stdout.contains("1 passed"),
        "child for v{version} ran no test:\n{stdout}"
    );
    let lines: Vec<&str> = stdout
        .lines()
        // The harness may have printed the test's name on the same line.
        .filter_map(|l| l.split_once("OUTCOME ").map(|(_, rest)| rest))
        .collect();
    match lines.as_slice() {
        [line] => {
            if let Some(seq) = line.strip_prefix("promoted ") {
                Outcome::Promoted(seq.parse().expect("a seq"))
            } else if let Some(what) = line.strip_prefix("concurrent_change ") {
                Outcome::ConcurrentChange(what.to_owned())
            } else {
                panic!("child for v{version}: unknown outcome {line:?}")
            }
        }
        other => panic!("child for v{version}: expected one outcome, got {other:?}:\n{stdout}"),
    }
}

/// Four processes, each promoting a different version (all in validation) of one
/// model at the same moment, three rounds over. After each round: exactly one
/// version is in production, the last winner; every child that succeeded has its
/// `stage_changed` event in the log, by its actor, archiving the production
/// version before it; every other child failed with `ConcurrentChange` and wrote
/// nothing (its version is still in validation); and replaying the log gives the
/// state that this registry and a freshly opened one see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_to_promote_leave_one_production_version() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("registry");
    let reg = open(&dir).await;
    create(&reg, "race").await;
    let mut production_history = Vec::new();
    let mut winners_per_round = Vec::new();

    for round in 0..ROUNDS {
        let versions: Vec<u64> = (1..=CHILDREN).map(|i| round * CHILDREN + i).collect();
        for &n in &versions {
            register_bytes(&reg, "race", "m.bin", format!("v{n}")).await;
            bring_to(&reg, "race", n, Stage::Validation).await;
        }
        let previous = in_production(&reg, "race").await;
        let count = reg.events("race").await.expect("events").len() as u64;

        let barrier = tmp.path().join(format!("barrier-{round}"));
        std::fs::create_dir(&barrier).expect("barrier dir");
        let children: Vec<_> = versions
            .iter()
            .map(|n| {
                spawn_child(
                    "promotion_child",
                    [
                        (CHILD_DIR, dir.as_os_str()),
                        (CHILD_VERSION, n.to_string().as_ref()),
                        (CHILD_BARRIER, barrier.as_os_str()),
                    ],
                )
            })
            .collect();
        for n in &versions {
            wait_for(&barrier.join(format!("ready-{n}"))).await;
        }
        std::fs::write(barrier.join("go"), b"").expect("open the barrier");
        let outputs: Vec<Output> = wait_children(children).await;

        let events = reg.events("race").await.expect("events");
        let mut won: Vec<(u64, u64)> = Vec::new(); // (seq, version)
        let mut lost: Vec<(u64, String)> = Vec::new();
        for (&n, out) in versions.iter().zip(&outputs) {
            match outcome(n, out) {
                Outcome::Promoted(seq) => won.push((seq, n)),
                Outcome::ConcurrentChange(what) => lost.push((n, what)),
            }
        }
        won.sort_unstable();
        assert!(!won.is_empty(), "round {round}: no child won");
        // A loser saw production move from what it first saw (the version before
        // the round or an earlier winner) to a winner.
        let show = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
        for (n, what) in &lost {
            let explained = won.iter().enumerate().any(|(i, &(_, now))| {
                std::iter::once(previous)
                    .chain(won[..i].iter().map(|&(_, v)| Some(v)))
                    .any(|was| {
                        *what == format!("the production version (was {}, now {now})", show(was))
                    })
            });
            assert!(explained, "round {round}: v{n}: {what}; winners {won:?}");
            assert_eq!(stage_of(&reg, "race", *n).await, Stage::Validation);
        }
        assert_eq!(
            events.len() as u64,
            count + won.len() as u64,
            "round {round}: the log has exactly the winners' events"
        );
        let mut production = previous;
        for (i, &(seq, n)) in won.iter().enumerate() {
            assert_eq!(seq, count + 1 + i as u64, "round {round}");
            let e = &events[seq as usize - 1];
            assert_eq!(e.actor, actor(&format!("child {n}")));
            assert_eq!(
                e.kind,
                EventKind::StageChanged {
                    version: num(n),
                    from: Stage::Validation,
                    to: Stage::Production,
                    reason: "race".into(),
                    gates: vec![],
                    archived: production.map(num),
                },
                "round {round}"
            );
            if let Some(p) = production {
                assert_eq!(stage_of(&reg, "race", p).await, Stage::Archived);
            }
            production = Some(n);
            production_history.push(num(n));
        }
        assert_eq!(in_production(&reg, "race").await, production);
        let state = reg.model("race").await.expect("model");
        assert_eq!(state.production_history(), production_history.as_slice());
        assert_eq!(ModelState::replay(events).expect("replay"), state);
        assert_eq!(open(&dir).await.model("race").await.expect("model"), state);
        winners_per_round.push(won.len());
        assert_eq!(won.len() + lost.len(), CHILDREN as usize);
    }
    eprintln!("promotion races of {CHILDREN} processes: winners per round {winners_per_round:?}");
}
