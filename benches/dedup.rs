//! What chunk-level deduplication would store for fine-tune scenarios (issue 17),
//! against the ideal at tensor granularity, and what cutting costs against raw
//! BLAKE3 of the same bytes in the same run.
//!
//! ```text
//! cargo bench --bench dedup                                # 512 MiB base, 5 settings
//! MODELREG_BENCH_MIB=64 cargo bench --bench dedup          # quicker
//! MODELREG_BENCH_DEDUP_SETTINGS=default cargo bench --bench dedup   # only the defaults
//! MODELREG_BENCH_KEEP=1 cargo bench --bench dedup          # keep the generated files
//! ```
//!
//! The scenarios (benches/support/dedup_scenarios.rs): four Llama-shaped BF16
//! safetensors checkpoints with 9 variants each (LoRA merged into q/v; top
//! quarter of the layers trained; vocabulary extended by appended rows; LoRA
//! merged into every linear layer), each variant with its own `__metadata__`,
//! and an opaque file with 9 variants (5 % contiguous rewrite; 1 % of its
//! 4 KiB blocks rewritten). Files are generated deterministically under
//! `<target>/bench-fixtures/dedup-<mib>/` and, unless `MODELREG_BENCH_KEEP=1`
//! or the base is at most 64 MiB, removed after each scenario (60 files of
//! 512 MiB would hold 30 GiB).
//!
//! Per scenario and chunk setting: `stored` = bytes of the distinct chunks of
//! the base and its 9 variants, `ideal` = base + each variant's header and
//! changed tensors (or rewritten bytes), their ratio (target ≤ 1.1× for the
//! safetensors scenarios), chunk count and mean/min/max size. Throughput:
//! each file is hashed with raw BLAKE3 (`update_mmap_rayon`, both cores), cut
//! with `chunk_file`, hashed again; `cut/b3` is the median of chunking time
//! over the mean of the two hashes (the page cache is warm: every file was
//! just written).

mod support;

use std::collections::HashMap;
use std::time::Instant;

use modelreg::Digest;
use modelreg::store::chunking::{ChunkParams, chunk_file};
use support::dedup_scenarios::{self, ALL, Scenario};
use support::fixture::fixtures_root;
use support::{Series, benchmarking, env_num, raw_blake3};

/// The settings compared: name, tensor block, CDC min/avg/max. Each differs
/// from the default in one respect where it can, so its row shows what that
/// size costs.
fn settings() -> Vec<(&'static str, ChunkParams)> {
    let others = [
        ("blk64K", (64 << 10, 16 << 10, 64 << 10, 256 << 10)),
        ("blk256K", (256 << 10, 16 << 10, 64 << 10, 256 << 10)),
        ("cdc256K", (1 << 20, 64 << 10, 256 << 10, 1 << 20)),
        ("cdc1M", (1 << 20, 256 << 10, 1 << 20, 4 << 20)),
    ];
    let mut out = vec![("default", ChunkParams::default())];
    if std::env::var("MODELREG_BENCH_DEDUP_SETTINGS").as_deref() != Ok("default") {
        for (name, (b, min, avg, max)) in others {
            out.push((name, ChunkParams::new(b, min, avg, max).expect("params")));
        }
    }
    out
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn measure(s: &Scenario, name: &str, params: &ChunkParams) {
    let mut unique: HashMap<Digest, u32> = HashMap::new();
    let (mut count, mut min, mut max) = (0u64, u32::MAX, 0u32);
    let mut series = Series::new("cut/b3");
    for f in &s.files {
        let before = raw_blake3(f);
        let t = Instant::now();
        let chunks = chunk_file(f, params).expect("chunk");
        let ours = t.elapsed();
        let after = raw_blake3(f);
        series.pair(before, ours, after);
        for c in chunks {
            count += 1;
            min = min.min(c.len);
            max = max.max(c.len);
            unique.insert(c.hash, c.len);
        }
    }
    let stored: u64 = unique.values().map(|&l| u64::from(l)).sum();
    println!(
        "{:<16} {:<8} block {:>5} KiB cdc {}/{}/{} KiB: stored {:.1} MiB, ideal {:.1} MiB, ratio {:.3}x (of all {:.1} MiB: {:.3}); \
         {} chunks ({} distinct), mean {:.0} KiB, min {} B, max {} KiB",
        s.kind.name(),
        name,
        params.tensor_block() >> 10,
        params.cdc_min() >> 10,
        params.cdc_avg() >> 10,
        params.cdc_max() >> 10,
        mib(stored),
        mib(s.ideal),
        stored as f64 / s.ideal as f64,
        mib(s.total),
        stored as f64 / s.total as f64,
        count,
        unique.len(),
        s.total as f64 / count as f64 / 1024.0,
        min,
        max >> 10,
    );
    series.report();
}

fn main() {
    if !benchmarking() {
        return;
    }
    let base_mib = env_num("MODELREG_BENCH_MIB", 512);
    let keep = env_num("MODELREG_BENCH_KEEP", u64::from(base_mib <= 64)) == 1;
    let dir = fixtures_root().join(format!("dedup-{base_mib}"));
    let shape = dedup_scenarios::Shape::for_mib(base_mib);
    println!(
        "base ~{base_mib} MiB: hidden {}, mlp {}, k/v {}, {} layers, vocabulary {}; 1 base + {} variants per scenario",
        shape.hidden,
        shape.inter,
        shape.kv,
        shape.layers,
        shape.vocab,
        dedup_scenarios::VARIANTS
    );
    let settings = settings();
    for kind in ALL {
        let t = Instant::now();
        let s = dedup_scenarios::generate(kind, base_mib, &dir);
        println!(
            "{}: {} files, {:.1} MiB, generated or found in {:.1} s",
            kind.name(),
            s.files.len(),
            mib(s.total),
            t.elapsed().as_secs_f64()
        );
        for (name, params) in &settings {
            // Tensor blocks do not apply to opaque files, and the
            // content-defined sizes only to the headers of checkpoints.
            let irrelevant = if kind.is_safetensors() { "cdc" } else { "blk" };
            if name.starts_with(irrelevant) {
                continue;
            }
            measure(&s, name, params);
        }
        if !keep {
            std::fs::remove_dir_all(dir.join(kind.name())).expect("remove scenario");
        }
    }
}
