//! The fine-tune scenarios of `benches/dedup.rs`, small: the chunker stores
//! each safetensors scenario within 1.1× of the ideal at tensor granularity,
//! and the generator is deterministic.

#[path = "../benches/support/dedup_scenarios.rs"]
mod dedup_scenarios;

use std::collections::HashMap;

use dedup_scenarios::{ALL, Kind, Scenario, VARIANTS, generate};
use modelreg::Digest;
use modelreg::store::chunking::{ChunkParams, Format, chunk_file, file_format};

/// Bytes of the distinct chunks of all the scenario's files.
fn stored(s: &Scenario, params: &ChunkParams) -> u64 {
    let mut unique: HashMap<Digest, u32> = HashMap::new();
    for f in &s.files {
        for c in chunk_file(f, params).expect("chunk") {
            unique.insert(c.hash, c.len);
        }
    }
    unique.values().map(|&l| u64::from(l)).sum()
}

/// Blocks small enough that the few-MiB tensors here span several.
fn params() -> ChunkParams {
    ChunkParams::new(16 << 10, 4 << 10, 16 << 10, 64 << 10).expect("params")
}

#[test]
fn safetensors_scenarios_store_within_1_1_of_the_ideal() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ALL.into_iter().filter(|k| k.is_safetensors()) {
        let s = generate(kind, 8, dir.path());
        assert_eq!(s.files.len() as u64, VARIANTS + 1);
        for f in &s.files {
            assert_eq!(file_format(f).expect("format"), Format::Safetensors);
        }
        let stored = stored(&s, &params());
        let ratio = stored as f64 / s.ideal as f64;
        assert!(
            ratio <= 1.1,
            "{}: stored {stored}, ideal {}, {ratio:.3}×",
            kind.name(),
            s.ideal
        );
        // And below storing every file whole (LoRA in every linear layer
        // changes about 70 % of the weights).
        assert!(
            stored * 10 < s.total * 8,
            "{}: {stored} of {}",
            kind.name(),
            s.total
        );
        if kind == Kind::VocabExtended {
            // Appended rows keep the old rows' blocks: below the ideal at
            // tensor granularity, which counts each grown tensor whole.
            assert!(ratio < 0.9, "vocab-extended: {ratio:.3}×");
        }
    }
}

#[test]
fn opaque_scenarios_share_most_of_their_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in [Kind::OpaqueRewrite, Kind::OpaqueScattered] {
        let s = generate(kind, 8, dir.path());
        assert_eq!(file_format(&s.files[0]).expect("format"), Format::Opaque);
        let stored = stored(&s, &params());
        // 1 % of 4 KiB blocks touches most 16 KiB chunks' neighbours rarely;
        // a 5 % run costs itself plus a chunk on each side.
        let ratio = stored as f64 / s.ideal as f64;
        assert!(ratio < 3.0, "{}: {ratio:.3}× the ideal", kind.name());
        assert!(
            stored * 2 < s.total,
            "{}: {stored} of {}",
            kind.name(),
            s.total
        );
    }
}

#[test]
fn the_generator_is_deterministic_and_cached() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for kind in [Kind::VocabExtended, Kind::OpaqueScattered] {
        let one = generate(kind, 2, a.path());
        let two = generate(kind, 2, b.path());
        assert_eq!((one.total, one.ideal), (two.total, two.ideal));
        for (x, y) in one.files.iter().zip(&two.files) {
            assert_eq!(
                Digest::of_file(x).expect("hash"),
                Digest::of_file(y).expect("hash")
            );
        }
        // Variants differ from the base and from each other.
        let digests: std::collections::HashSet<Digest> = one
            .files
            .iter()
            .map(|f| Digest::of_file(f).expect("hash").0)
            .collect();
        assert_eq!(digests.len() as u64, VARIANTS + 1);
        // A second run finds the files and rewrites nothing.
        let mtime = std::fs::metadata(&one.files[3])
            .and_then(|m| m.modified())
            .expect("mtime");
        generate(kind, 2, a.path());
        let again = std::fs::metadata(&one.files[3])
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(mtime, again);
    }
}
