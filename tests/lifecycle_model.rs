//! Model-based property test of the lifecycle: random sequences of register,
//! transition, approve, rollback and alias commands go to a registry and to a
//! small reference model; after every step the two agree and the invariants hold
//! (at most one production version; the log replays to the same state; "as of
//! now" equals the current state; rollback restores exactly the previous
//! production version).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use modelreg::{
    Actor, ArtifactSource, CreateModel, Error, ModelState, NewVersion, Registry, SetAlias, Stage,
    VersionFilter,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Clone, Debug)]
enum Op {
    Register,
    Transition {
        version: u64,
        to: Stage,
    },
    /// One step along the happy path none → staging → validation → production (and
    /// archived → staging), so that random runs reach production and roll back.
    Advance {
        version: u64,
    },
    Approve {
        version: u64,
        to: Stage,
    },
    Rollback,
    SetAlias {
        alias: usize,
        version: u64,
    },
    RemoveAlias {
        alias: usize,
    },
}

const ALIASES: [&str; 2] = ["champion", "challenger"];

fn op() -> impl Strategy<Value = Op> {
    let stage = prop::sample::select(Stage::ALL.to_vec());
    prop_oneof![
        2 => Just(Op::Register),
        3 => (1..6u64, stage.clone()).prop_map(|(version, to)| Op::Transition { version, to }),
        6 => (1..5u64).prop_map(|version| Op::Advance { version }),
        1 => (1..6u64, stage).prop_map(|(version, to)| Op::Approve { version, to }),
        2 => Just(Op::Rollback),
        1 => (0..2usize, 1..6u64).prop_map(|(alias, version)| Op::SetAlias { alias, version }),
        1 => (0..2usize).prop_map(|alias| Op::RemoveAlias { alias }),
    ]
}

/// What the lifecycle should look like, kept the simplest possible way.
#[derive(Debug, Default)]
struct Reference {
    stages: Vec<Stage>,
    production_history: Vec<u64>,
    /// Every version that was ever in production.
    served: BTreeSet<u64>,
    aliases: BTreeMap<&'static str, u64>,
}

impl Reference {
    fn production(&self) -> Option<u64> {
        (1..=self.stages.len() as u64).find(|n| self.stages[*n as usize - 1] == Stage::Production)
    }
    fn exists(&self, v: u64) -> bool {
        v >= 1 && v as usize <= self.stages.len()
    }
}

/// Applies `op` to both; returns an error message when they disagree.
async fn step(reg: &Registry, model: &mut Reference, op: &Op, actor: &Actor) -> Result<(), String> {
    match op {
        Op::Register => {
            let n = model.stages.len() + 1;
            let src = ArtifactSource::bytes("m.bin", format!("weights {n}")).map_err(e)?;
            let v = reg
                .acting_as(actor.clone())
                .register("m", src, NewVersion::new())
                .await
                .map_err(e)?;
            model.stages.push(Stage::None);
            check(v.number.get() == n as u64, "version numbers are sequential")
        }
        Op::Advance { version } => {
            let to = match model.stages.get(*version as usize - 1) {
                Some(Stage::None | Stage::Archived) => Stage::Staging,
                Some(Stage::Staging) => Stage::Validation,
                Some(Stage::Validation) => Stage::Production,
                Some(Stage::Production) | None => Stage::Archived,
            };
            Box::pin(step(
                reg,
                model,
                &Op::Transition {
                    version: *version,
                    to,
                },
                actor,
            ))
            .await
        }
        Op::Transition { version, to } => {
            let r = reg
                .acting_as(actor.clone())
                .transition(format!("m/{version}"), *to, "prop")
                .await;
            if !model.exists(*version) {
                return check(matches!(r, Err(Error::NotFound { .. })), "missing version");
            }
            let from = model.stages[*version as usize - 1];
            if !from.can_move_to(*to) {
                return match r {
                    Err(Error::InvalidTransition { allowed, .. })
                        if allowed == from.allowed_targets() =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{from}->{to} should be refused, got {other:?}")),
                };
            }
            r.map_err(e)?;
            if *to == Stage::Production {
                if let Some(p) = model.production() {
                    model.stages[p as usize - 1] = Stage::Archived;
                }
                if model.production_history.last() != Some(version) {
                    model.production_history.push(*version);
                }
                model.served.insert(*version);
            }
            model.stages[*version as usize - 1] = *to;
            Ok(())
        }
        Op::Approve { version, to } => {
            let r = reg
                .acting_as(actor.clone())
                .approve(format!("m/{version}"), *to, "ok")
                .await;
            match (model.exists(*version), *to == Stage::None, r) {
                (false, _, Err(Error::NotFound { .. })) => Ok(()),
                (true, true, Err(Error::InvalidInput { .. })) => Ok(()),
                (true, false, Ok(_)) => Ok(()),
                (_, _, other) => Err(format!("approve: {other:?}")),
            }
        }
        Op::Rollback => {
            let before = model.production();
            let r = reg.acting_as(actor.clone()).rollback("m", "prop").await;
            let n = model.production_history.len();
            match before {
                Some(cur) if n >= 2 && model.production_history[n - 1] == cur => {
                    r.map_err(e)?;
                    model.production_history.pop();
                    let prev = model.production_history[n - 2];
                    model.stages[cur as usize - 1] = Stage::Archived;
                    model.stages[prev as usize - 1] = Stage::Production;
                    // Rollback restores exactly the previous production version.
                    let now = reg.resolve("m@production").await.map_err(e)?;
                    check(now.number.get() == prev, "rollback restores the previous")
                }
                _ => check(matches!(r, Err(Error::NotFound { .. })), "rollback refused"),
            }
        }
        Op::SetAlias { alias, version } => {
            let name = ALIASES[*alias];
            let r = reg
                .acting_as(actor.clone())
                .set_alias(format!("m/{version}"), name, SetAlias::new())
                .await;
            if model.exists(*version) {
                r.map_err(e)?;
                model.aliases.insert(name, *version);
                Ok(())
            } else {
                check(matches!(r, Err(Error::NotFound { .. })), "alias to missing")
            }
        }
        Op::RemoveAlias { alias } => {
            let name = ALIASES[*alias];
            let r = reg
                .acting_as(actor.clone())
                .remove_alias("m", name, "prop")
                .await;
            if model.aliases.remove(name).is_some() {
                r.map(drop).map_err(e)
            } else {
                check(
                    matches!(r, Err(Error::NotFound { .. })),
                    "remove missing alias",
                )
            }
        }
    }
}

/// The registry agrees with the reference, and the invariants hold.
async fn invariants(reg: &Registry, model: &Reference) -> Result<(), String> {
    let state = reg.model("m").await.map_err(e)?;
    let stages: Vec<Stage> = state.versions().iter().map(|v| v.stage).collect();
    check(stages == model.stages, "stages agree")?;
    let in_production = stages.iter().filter(|s| **s == Stage::Production).count();
    check(in_production <= 1, "at most one production version")?;
    check(
        state.production().map(|v| v.number.get()) == model.production(),
        "production pointer agrees",
    )?;
    let history: Vec<u64> = state.production_history().iter().map(|n| n.get()).collect();
    check(
        history == model.production_history,
        "production history agrees",
    )?;
    let aliases: BTreeMap<&str, u64> = state
        .aliases()
        .iter()
        .map(|(k, t)| (k.as_str(), t.version.get()))
        .collect();
    let expected: BTreeMap<&str, u64> = model.aliases.iter().map(|(k, v)| (*k, *v)).collect();
    check(aliases == expected, "aliases agree")?;
    // Filters by stage agree with the reference: current stage, and every version
    // that ever entered production.
    let in_staging: Vec<u64> = reg
        .list_versions("m", &VersionFilter::new().stage(Stage::Staging))
        .await
        .map_err(e)?
        .iter()
        .map(|v| v.number.get())
        .collect();
    let expected: Vec<u64> = (1..=model.stages.len() as u64)
        .filter(|n| model.stages[*n as usize - 1] == Stage::Staging)
        .collect();
    check(in_staging == expected, "stage filter agrees")?;
    let served: BTreeSet<u64> = reg
        .list_versions("m", &VersionFilter::new().reached(Stage::Production))
        .await
        .map_err(e)?
        .iter()
        .map(|v| v.number.get())
        .collect();
    let expected: BTreeSet<u64> = model.production_history.iter().copied().collect();
    check(
        served.is_superset(&expected),
        "every production holder reached production",
    )?;
    // The log replays to the same state, and "as of now" is the current state.
    let replayed = ModelState::replay(reg.events("m").await.map_err(e)?).map_err(e)?;
    check(replayed == state, "the log replays to the same state")?;
    let now = reg.model_as_of("m", Utc::now()).await.map_err(e)?;
    check(now == state, "as of now equals the current state")?;
    // A cold registry over the same stores (checkpoint + tail) agrees too.
    reg.clear_cache();
    check(
        reg.model("m").await.map_err(e)? == state,
        "cold open agrees",
    )
}

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_owned()) }
}

#[test]
fn lifecycle_matches_reference_model() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cases = std::env::var("MODELREG_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        rt.block_on(async {
            // Checkpoints every 4 events, so cold opens go through them.
            let reg = Registry::builder()
                .metadata(std::sync::Arc::new(
                    modelreg::store::MemoryMetadataStore::new(),
                ))
                .artifacts(std::sync::Arc::new(
                    modelreg::store::MemoryArtifactStore::new(),
                ))
                .checkpoint_every(4)
                .build()
                .map_err(e)?;
            let actor = Actor::new("prop").map_err(e)?;
            reg.acting_as(actor.clone())
                .create_model("m", CreateModel::new())
                .await
                .map_err(e)?;
            let mut model = Reference::default();
            for (i, op) in ops.iter().enumerate() {
                step(&reg, &mut model, op, &actor)
                    .await
                    .map_err(|m| format!("step {i} {op:?}: {m}"))?;
                invariants(&reg, &model)
                    .await
                    .map_err(|m| format!("after step {i} {op:?}: {m}"))?;
            }
            Ok::<(), String>(())
        })
        .map_err(TestCaseError::fail)
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}
