//! Concurrency torture: several processes run random mixed operations (register,
//! add metrics, alias, transitions, approvals, rollback) on one registry at once.
//! Each child prints every operation it saw acknowledged; afterwards a checker
//! replays the log and asserts the invariants: unique gap-free version numbers, at
//! most one production version at every point of the history, no acknowledged
//! registration or approval lost, every version's blobs present.
//!
//! It runs on four targets (`tests/common/targets.rs`), each opened the way a user
//! would: a local directory (`Registry::open_local`) and object_store's
//! `LocalFileSystem` through a `file://` URL (`Registry::open_url`) always, and the
//! S3 (moto) and Azure (Azurite) servers that `tests/common/servers.rs` finds (in
//! CI a missing server fails the test).
//!
//! Size: `MODELREG_TORTURE_PROCS` (default 8) processes on every target (on S3
//! only with `MODELREG_TEST_S3_ATOMIC=1`; see the S3 test for why), each
//! running `MODELREG_TORTURE_OPS` operations (default 250) on the local and
//! `file://` targets and `MODELREG_TORTURE_SERVER_OPS` (default 40, to keep CI
//! short; 250 for the full run) on each server.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::env_num;
use common::servers::Server;
use common::targets::{Target, open_default};

use modelreg::{
    Actor, ArtifactSource, CreateModel, Error, EventKind, GateSpec, Metrics, ModelState,
    NewVersion, SetAlias, Stage,
};

const CHILD_TARGET: &str = "MODELREG_TORTURE_TARGET";
const CHILD_ID: &str = "MODELREG_TORTURE_ID";
const CHILD_OPS: &str = "MODELREG_TORTURE_CHILD_OPS";

/// The child: runs its share of random operations and prints what was
/// acknowledged, one line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_child() {
    let (Ok(target), Ok(id)) = (std::env::var(CHILD_TARGET), std::env::var(CHILD_ID)) else {
        return; // Only runs when spawned by the parent test.
    };
    let ops = env_num(CHILD_OPS, 0);
    let reg = open_default(&target).await;
    let me = Actor::new(format!("child-{id}")).expect("actor");
    let mut rng = fastrand::Rng::with_seed(id.parse::<u64>().expect("id") * 7919 + 1);
    let mut tolerated = 0usize;
    for i in 0..ops {
        // A read that fails on an overloaded test server changes nothing: skip the
        // operation (it is not acknowledged, so the checker expects nothing of it).
        let state = match reg.model("torture").await {
            Ok(state) => state,
            Err(e @ Error::Storage { .. }) => {
                println!("UNKNOWN read {e}");
                continue;
            }
            Err(e) => panic!("child {id} op {i}: unexpected error reading the model: {e}"),
        };
        let count = state.versions().len() as u64;
        let pick = |rng: &mut fastrand::Rng| format!("torture/{}", rng.u64(1..=count.max(1)));
        let roll = rng.u32(0..100);
        let is_register = roll < 30 || count == 0;
        let result: Result<String, Error> = if is_register {
            let payload = format!("child {id} op {i}");
            reg.acting_as(me.clone())
                .register(
                    "torture",
                    ArtifactSource::bytes("model.bin", payload.clone()).expect("source"),
                    NewVersion::new(),
                )
                .await
                .map(|v| format!("register {} {payload}", v.number))
        } else if roll < 45 {
            let r = pick(&mut rng);
            let metrics = Metrics::new().with("auc", rng.f64()).expect("metric");
            reg.acting_as(me.clone())
                .add_metrics(r.as_str(), metrics)
                .await
                .map(|v| format!("metrics {}", v.number))
        } else if roll < 55 {
            let r = pick(&mut rng);
            let alias = ["champion", "challenger"][rng.usize(0..2)];
            reg.acting_as(me.clone())
                .set_alias(r.as_str(), alias, SetAlias::new())
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
            reg.acting_as(me.clone())
                .transition(r.as_str(), to, "torture")
                .await
                .map(|e| {
                    format!(
                        "transition {} {to}",
                        e.kind.version().map_or(0, |v| v.get())
                    )
                })
        } else if roll < 93 {
            let r = pick(&mut rng);
            reg.acting_as(me.clone())
                .approve(r.as_str(), Stage::Production, "")
                .await
                .map(|e| format!("approve {}", e.kind.version().map_or(0, |v| v.get())))
        } else {
            reg.acting_as(me.clone())
                .rollback("torture", "torture")
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
                | Error::Conflict { .. }
                // Metrics for a version another child has just promoted: a
                // production version's metrics change only by override.
                | Error::Immutable { .. }),
            ) => {
                println!("REFUSED {e}");
                tolerated += 1
            }
            // A request that failed or timed out (an overloaded test server): the
            // write may or may not have landed. Not acknowledged, so the checker
            // allows it either way; `UNKNOWN register` bounds extra versions.
            Err(e @ Error::Storage { .. }) => {
                let what = if is_register { "register" } else { "other" };
                println!("UNKNOWN {what} {e}");
            }
            Err(e) => panic!("child {id} op {i}: unexpected error {e}"),
        }
    }
    println!("TOLERATED {tolerated}");
}

#[test]
fn local_processes_racing_mixed_operations_keep_every_invariant() {
    run(Target::local(), env_num("MODELREG_TORTURE_OPS", 250));
}

#[test]
fn file_url_processes_racing_mixed_operations_keep_every_invariant() {
    run(Target::file_url(), env_num("MODELREG_TORTURE_OPS", 250));
}

/// On moto one writer by default: moto answers two racing create-only PUTs of
/// one key with 200 both (its `If-None-Match: *` check and its write are not one
/// step: moto 5.2 `s3/responses.py`), so the later silently replaces the earlier
/// and an acknowledged event is lost. Seen in the full run (two `PUT … 200` for
/// one record key in moto's access log; 4 such keys in 7,773 record PUTs); real S3
/// does not do this. Set `MODELREG_TEST_S3_ATOMIC=1` against a server whose
/// conditional PUTs are atomic to race `MODELREG_TORTURE_PROCS` writers there
/// too. Azurite, whose conditional writes are atomic, runs the race.
#[test]
#[cfg_attr(
    not(modelreg_s3),
    ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)"
)]
fn s3_processes_racing_mixed_operations_keep_every_invariant() {
    let target = Target::server(Server::S3);
    let atomic = std::env::var("MODELREG_TEST_S3_ATOMIC").is_ok_and(|v| v == "1");
    let procs = if atomic { None } else { Some(1) };
    run_with(target, procs, env_num("MODELREG_TORTURE_SERVER_OPS", 40));
}

#[test]
#[cfg_attr(
    not(modelreg_azure),
    ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)"
)]
fn azure_processes_racing_mixed_operations_keep_every_invariant() {
    let target = Target::server(Server::Azure);
    run(target, env_num("MODELREG_TORTURE_SERVER_OPS", 40));
}

/// Runs `MODELREG_TORTURE_PROCS` children of `ops` operations each on `target`,
/// then checks the invariants.
fn run(target: Target, ops: usize) {
    run_with(target, None, ops)
}

/// [`run`] with `procs` children instead of `MODELREG_TORTURE_PROCS`, if given.
fn run_with(target: Target, procs: Option<usize>, ops: usize) {
    let started = Instant::now();
    let procs = procs.unwrap_or_else(|| env_num("MODELREG_TORTURE_PROCS", 8));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let reg = open_default(&target.spec).await;
        let lead = Actor::new("lead").expect("actor");
        reg.acting_as(lead.clone())
            .create_model("torture", CreateModel::new())
            .await
            .expect("create");
        // Promotions need one approval (not the requester's own): approvals matter.
        reg.acting_as(lead.clone())
            .set_gates(
                "torture",
                Stage::Production,
                vec![GateSpec::Approvals {
                    required: 1,
                    from: BTreeSet::new(),
                }],
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
                .env(CHILD_TARGET, &target.spec)
                .env(CHILD_ID, id.to_string())
                .env(CHILD_OPS, ops.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut acks = Vec::new();
    let mut tolerated = 0usize;
    let (mut unknown, mut unknown_registers) = (0usize, 0usize);
    for (id, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("child output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: child {id} failed:\n{stdout}\n{}",
            target.name,
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
            } else if let Some(what) = line.strip_prefix("UNKNOWN ") {
                unknown += 1;
                unknown_registers += usize::from(what.starts_with("register "));
            }
        }
    }
    rt.block_on(check(&target, &acks, unknown_registers));
    eprintln!(
        "torture ({}): {procs} processes × {ops} operations, {} acknowledged, {tolerated} refused as the rules allow, {unknown} failed requests (outcome unknown), 0 lost, {:.0} s",
        target.name,
        acks.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Replays the log and checks every invariant against the acknowledgements.
async fn check(target: &Target, acks: &[(usize, String)], unknown_registers: usize) {
    let reg = open_default(&target.spec).await;
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
    // Every version was acknowledged, except those whose request failed with an
    // unknown outcome.
    let versions = state.versions().len();
    assert!(
        (registered..=registered + unknown_registers).contains(&versions),
        "{versions} versions for {registered} acknowledged and {unknown_registers} unknown registrations"
    );
    assert!(approvals > 0, "the mix exercised approvals");

    // Every version's blobs are present and intact.
    for v in state.versions() {
        reg.verify(format!("torture/{}", v.number))
            .await
            .expect("verifies");
    }
}
