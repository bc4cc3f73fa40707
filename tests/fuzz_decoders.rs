//! Property-driven fuzzing of everything that decodes untrusted bytes: event
//! records, checkpoints, manifests and version references. (cargo-fuzz needs a
//! nightly toolchain, which this project's machines do not have; proptest drives
//! the same entry points on stable.)
//!
//! Inputs are random bytes and, more usefully, valid records mutated by flips,
//! insertions, deletions and truncation — half of them resealed with a fresh
//! checksum so the mutation reaches the JSON decoder instead of stopping at the
//! checksum. Every decoder must return `Ok` or a typed error, never panic, and
//! whatever it accepts must re-encode to an equal value.
//!
//! `MODELREG_FUZZ_CASES` sets the cases per target (default 2,000).

use modelreg::format::{decode_checkpoint, encode_checkpoint};
use modelreg::format::{seal, unseal};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, Event, Manifest, Metrics, ModelName, ModelState,
    NewVersion, Registry, SetAlias, Stage, VersionRef,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("MODELREG_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    Truncate { at: usize },
    Splice { at: usize, text: &'static str },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        at.prop_map(|at| Mutation::Delete { at }),
        at.prop_map(|at| Mutation::Truncate { at }),
        (
            at,
            prop::sample::select(vec![
                "\"format\":99,",
                "\"../x\"",
                "1e999",
                "-1",
                "null",
                "{}",
                "[]",
                "\"\\u0000\"",
                "18446744073709551616",
                "\"type\":\"stage_changed\",",
                "\"production\"",
            ])
        )
            .prop_map(|(at, text)| Mutation::Splice { at, text }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
        match m {
            Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
            Mutation::Insert { at, byte } => bytes.insert(pos(*at), *byte),
            Mutation::Delete { at } if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::Truncate { at } => bytes.truncate(pos(*at)),
            Mutation::Splice { at, text } => {
                let p = pos(*at);
                bytes.splice(p..p, text.bytes());
            }
            _ => {}
        }
    }
    bytes
}

/// The JSON line of a sealed record, mutated, and resealed or not.
fn mutated_record(sealed: &[u8], mutations: &[Mutation], reseal: bool) -> Vec<u8> {
    if reseal {
        let json = unseal(|| "seed".into(), sealed)
            .expect("seed record")
            .to_vec();
        seal(mutate(json, mutations))
    } else {
        mutate(sealed.to_vec(), mutations)
    }
}

/// A model with every kind of event, as seeds.
fn seed_log() -> (ModelName, Vec<Event>, ModelState) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let reg = Registry::in_memory();
        let me = Actor::new("fuzz").expect("actor");
        let other = Actor::new("approver").expect("actor");
        reg.acting_as(me.clone())
            .create_model("fuzz", CreateModel::new().description("seed"))
            .await
            .expect("create");
        for i in 0..2 {
            reg.acting_as(me.clone())
                .register(
                    "fuzz",
                    ArtifactSource::files([
                        ("a.bin", format!("a{i}")),
                        ("d/b.txt", format!("b{i}")),
                    ])
                    .expect("source"),
                    NewVersion::new()
                        .semver(semver::Version::new(1, i, 0))
                        .metrics(Metrics::new().with("auc", 0.9).expect("metric")),
                )
                .await
                .expect("register");
        }
        for s in [Stage::Staging, Stage::Validation, Stage::Production] {
            reg.acting_as(me.clone())
                .transition("fuzz/1", s, "seed")
                .await
                .expect("move");
        }
        reg.acting_as(other.clone())
            .approve("fuzz/2", Stage::Production, "ok")
            .await
            .expect("approve");
        reg.acting_as(me.clone())
            .set_alias("fuzz/2", "champion", SetAlias::new())
            .await
            .expect("alias");
        reg.acting_as(me.clone())
            .add_metrics("fuzz/2", Metrics::new().with("f1", 0.5).expect("m"))
            .await
            .expect("metrics");
        let events = reg.events("fuzz").await.expect("events");
        let state = reg.model("fuzz").await.expect("state");
        (ModelName::new("fuzz").expect("name"), events, state)
    })
}

#[test]
fn event_decoding_never_panics_and_round_trips() {
    let (model, events, _) = seed_log();
    let seeds: Vec<(u64, Vec<u8>)> = events.iter().map(|e| (e.seq, e.to_bytes())).collect();
    let strategy = (
        0..seeds.len(),
        prop::collection::vec(mutation(), 0..4),
        any::<bool>(),
    );
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&strategy, |(i, mutations, reseal)| {
            let (seq, bytes) = &seeds[i];
            let input = mutated_record(bytes, &mutations, reseal);
            if let Ok(e) = Event::from_bytes(&model, *seq, &input) {
                accepted.set(accepted.get() + 1);
                let again = Event::from_bytes(&model, *seq, &e.to_bytes()).expect("re-decode");
                prop_assert_eq!(again, e);
            }
            Ok(())
        })
        .expect("event decoding");
    // Unmutated seeds are among the inputs: some must be accepted.
    assert!(accepted.get() > 0);
}

#[test]
fn random_bytes_never_panic_any_decoder() {
    let model = ModelName::new("fuzz").expect("name");
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            let _ = Event::from_bytes(&model, 1, &bytes);
            let _ = decode_checkpoint(&model, 1, &bytes);
            let _ = Manifest::from_bytes(&bytes);
            let _ = Event::from_bytes(&model, 1, &seal(bytes.clone()));
            let _ = decode_checkpoint(&model, 1, &seal(bytes.clone()));
            Ok(())
        })
        .expect("random bytes");
}

#[test]
fn checkpoint_decoding_never_panics_and_round_trips() {
    let (model, _, state) = seed_log();
    let seed = encode_checkpoint(&state);
    let strategy = (prop::collection::vec(mutation(), 0..4), any::<bool>());
    runner()
        .run(&strategy, |(mutations, reseal)| {
            let input = mutated_record(&seed, &mutations, reseal);
            if let Ok(s) = decode_checkpoint(&model, state.seq(), &input) {
                let again =
                    decode_checkpoint(&model, s.seq(), &encode_checkpoint(&s)).expect("re-decode");
                prop_assert_eq!(again, s);
            }
            Ok(())
        })
        .expect("checkpoint decoding");
}

#[test]
fn manifest_decoding_never_panics_and_accepts_only_canonical_bytes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let seed = rt.block_on(async {
        let reg = Registry::in_memory();
        let me = Actor::new("fuzz").expect("actor");
        reg.acting_as(me.clone())
            .create_model("m", CreateModel::new())
            .await
            .expect("create");
        reg.acting_as(me)
            .register(
                "m",
                ArtifactSource::files([("a.bin", "a"), ("dir/b.bin", "b"), ("dir/c/d.txt", "d")])
                    .expect("source"),
                NewVersion::new(),
            )
            .await
            .expect("register");
        reg.manifest("m/1").await.expect("manifest").to_bytes()
    });
    runner()
        .run(&prop::collection::vec(mutation(), 0..4), |mutations| {
            let input = mutate(seed.clone(), &mutations);
            if let Ok(m) = Manifest::from_bytes(&input) {
                // One artifact, one identity: accepted bytes are the canonical ones.
                prop_assert_eq!(m.to_bytes(), input.clone());
                prop_assert_eq!(m.digest(), Digest::of(&input));
                for e in m.entries() {
                    prop_assert!(
                        !e.path
                            .as_str()
                            .split('/')
                            .any(|s| s == ".." || s.is_empty())
                    );
                }
            }
            Ok(())
        })
        .expect("manifest decoding");
}

#[test]
fn reference_parsing_never_panics_and_round_trips() {
    let strategy = prop_oneof!["\\PC{0,40}", "[a-z0-9._-]{1,12}[/:@#][a-z0-9.+:-]{0,70}",];
    runner()
        .run(&strategy, |s| {
            if let Ok(r) = s.parse::<VersionRef>() {
                prop_assert_eq!(r.to_string().parse::<VersionRef>().expect("re-parse"), r);
            }
            Ok(())
        })
        .expect("reference parsing");
}
