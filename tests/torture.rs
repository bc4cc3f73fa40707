//! Concurrency torture: several processes run random mixed operations (register,
//! add metrics, alias, transitions, approvals, rollback) on one local registry at
//! once. Each child prints every operation it saw acknowledged; afterwards a
//! checker replays the log and asserts the invariants: unique gap-free version
//! numbers, at most one production version at every point of the history, no
//! acknowledged registration or approval lost, every version's blobs present.
//!
//! Size: `MODELREG_TORTURE_PROCS` (default 8) × `MODELREG_TORTURE_OPS` (default 250).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use modelreg::{
    Actor, ArtifactSource, CreateModel, Error, EventKind, GateSpec, Metrics, ModelState,
    NewVersion, Registry, SetAlias, Stage,
};

const CHILD_DIR: &str = "MODELREG_TORTURE_DIR";
const CHILD_ID: &str = "MODELREG_TORTURE_ID";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child: runs its share of random operations and prints what was
/// acknowledged, one line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_child() {
    let (Ok(dir), Ok(id)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ID)) else {
        return; // Only runs when spawned by the parent test.
    };
    let ops = env_num("MODELREG_TORTURE_OPS", 250);
    let reg = Registry::open_local(&dir).await.expect("open");
    let me = Actor::new(format!("child-{id}")).expect("actor");
    let mut rng = fastrand::Rng::with_seed(id.parse::<u64>().expect("id") * 7919 + 1);
    let mut tolerated = 0usize;
    for i in 0..ops {
        let state = reg.model("torture").await.expect("model");
        let count = state.versions().len() as u64;
        let pick = |rng: &mut fastrand::Rng| format!("torture/{}", rng.u64(1..=count.max(1)));
        let roll = rng.u32(0..100);
        let result: Result<String, Error> = if roll < 30 || count == 0 {
            let payload = format!("child {id} op {i}");
            reg.register(
                "torture",
                ArtifactSource::bytes("model.bin", payload.clone()).expect("source"),
                NewVersion::by(me.clone()),
            )
            .await
            .map(|v| format!("register {} {payload}", v.number))
        } else if roll < 45 {
            let r = pick(&mut rng);
            let metrics = Metrics::new().with("auc", rng.f64()).expect("metric");
            reg.add_metrics(r.as_str(), metrics, &me)
                .await
                .map(|v| format!("metrics {}", v.number))
        } else if roll < 55 {
            let r = pick(&mut rng);
            let alias = ["champion", "challenger"][rng.usize(0..2)];
            reg.set_alias(r.as_str(), alias, SetAlias::by(me.clone()))
                .await
                .map(|e| format!("alias {alias} {}", e.kind.version().map_or(0, |v| v.get())))
        } else if roll < 80 {
            let r = pick(&mut rng);
            let stage = state
                .resolve(&r.parse::<modelreg::VersionRef>().expect("ref").selector)
                .map(|v| v.stage)
                .unwrap_or_default();
            let to = match stage {
                Stage::None | Stage::Archived => Stage::Staging,
                Stage::Staging => Stage::Validation,
                Stage::Validation => Stage::Production,
                Stage::Production => Stage::Archived,
            };
            reg.transition(r.as_str(), to, &me, "torture")
                .await
                .map(|e| {
                    format!(
                        "transition {} {to}",
                        e.kind.version().map_or(0, |v| v.get())
                    )
                })
        } else if roll < 93 {
            let r = pick(&mut rng);
            reg.approve(r.as_str(), Stage::Production, &me, "")
                .await
                .map(|e| format!("approve {}", e.kind.version().map_or(0, |v| v.get())))
        } else {
            reg.rollback("torture", &me, "torture")
                .await
                .map(|e| format!("rollback {}", e.kind.version().map_or(0, |v| v.get())))
        };
        match result {
            Ok(line) => println!("ACK {line}"),
            // Refusals the rules allow under contention: the log is unchanged.
            Err(
                e @ (Error::InvalidTransition { .. }
                | Error::GateRejected { .. }
                | Error::ConcurrentChange { .. }
                | Error::NotFound { .. }
                | Error::Conflict { .. }),
            ) => {
                println!("REFUSED {e}");
                tolerated += 1
            }
            Err(e) => panic!("child {id} op {i}: unexpected error {e}"),
        }
    }
    println!("TOLERATED {tolerated}");
}

#[test]
fn processes_racing_mixed_operations_keep_every_invariant() {
    let procs = env_num("MODELREG_TORTURE_PROCS", 8);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("reg");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let reg = Registry::open_local(&root).await.expect("open");
        let lead = Actor::new("lead").expect("actor");
        reg.create_model("torture", CreateModel::by(lead.clone()))
            .await
            .expect("create");
        // Promotions need one approval (not the requester's own): approvals matter.
        reg.set_gates(
            "torture",
            Stage::Production,
            vec![GateSpec::Approvals {
                required: 1,
                from: BTreeSet::new(),
            }],
            &lead,
        )
        .await
        .expect("gates");
    });

    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..procs)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "torture_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, &root)
                .env(CHILD_ID, id.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut acks = Vec::new();
    let mut tolerated = 0usize;
    for (id, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("child output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child {id} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in stdout.lines() {
            // libtest prints "test torture_child ... " without a newline before the
            // test runs, so the first report shares its line.
            let line = line.rsplit("... ").next().unwrap_or(line);
            if let Some(ack) = line.strip_prefix("ACK ") {
                acks.push((id, ack.to_owned()));
            } else if let Some(n) = line.strip_prefix("TOLERATED ") {
                tolerated += n.trim().parse::<usize>().expect("count");
            }
        }
    }
    rt.block_on(check(&root, &acks));
    eprintln!(
        "torture: {procs} processes, {} acknowledged operations, {tolerated} refused as the rules allow, 0 lost",
        acks.len()
    );
}

/// Replays the log and checks every invariant against the acknowledgements.
async fn check(root: &Path, acks: &[(usize, String)]) {
    let reg = Registry::open_local(root).await.expect("open");
    let events = reg.events("torture").await.expect("events");
    let state = reg.model("torture").await.expect("model");
    assert_eq!(
        ModelState::replay(events.clone()).expect("replay"),
        state,
        "the log replays to the current state"
    );

    // At most one production version at every point of the history.
    let mut folded = ModelState::genesis(&events[0]).expect("genesis");
    for e in events.iter().skip(1).cloned() {
        folded.apply(e).expect("apply");
        let n = folded
            .versions()
            .iter()
            .filter(|v| v.stage == Stage::Production)
            .count();
        assert!(n <= 1, "two production versions at event {}", folded.seq());
    }

    // Unique, gap-free numbers, and every acknowledged registration present with
    // its own payload.
    let numbers: Vec<u64> = state.versions().iter().map(|v| v.number.get()).collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    let mut registered = 0;
    let mut approvals = 0;
    for (id, ack) in acks {
        let words: Vec<&str> = ack.split(' ').collect();
        match words[0] {
            "register" => {
                registered += 1;
                let number: u64 = words[1].parse().expect("number");
                let payload = words[2..].join(" ");
                let v = reg
                    .resolve(format!("torture/{number}"))
                    .await
                    .expect("acknowledged version exists");
                let manifest = reg
                    .manifest(format!("torture/{number}"))
                    .await
                    .expect("manifest");
                assert_eq!(
                    manifest.entries()[0].digest,
                    modelreg::Digest::of(payload.as_bytes()),
                    "version {number} holds child {id}'s payload"
                );
                assert_eq!(v.created_by.as_str(), format!("child-{id}"));
            }
            "approve" => {
                approvals += 1;
                let number: u64 = words[1].parse().expect("number");
                let found = events.iter().any(|e| {
                    e.actor.as_str() == format!("child-{id}")
                        && matches!(&e.kind, EventKind::ApprovalRecorded { version, .. } if version.get() == number)
                });
                assert!(found, "child {id}'s approval of {number} is in the log");
            }
            _ => {}
        }
    }
    assert_eq!(
        registered,
        state.versions().len(),
        "no unacknowledged version"
    );
    assert!(approvals > 0, "the mix exercised approvals");

    // Every version's blobs are present and intact.
    for v in state.versions() {
        reg.verify(format!("torture/{}", v.number))
            .await
            .expect("verifies");
    }
}
