//! Register and fetch of one large file on the local store, each measured against
//! the raw operation it competes with, interleaved in the same run.
//!
//! ```text
//! cargo bench --bench ingest                     # 256 MiB, 5 pairs
//! MODELREG_BENCH_MIB=1024 MODELREG_BENCH_PAIRS=7 cargo bench --bench ingest
//! ```
//!
//! Baselines, at equal durability (our stores fsync every blob):
//! - register  vs `std::fs::copy` (copy_file_range, like `cp`) + fsync of the copy;
//! - fetch     vs the same copy + fsync, from the stored blob;
//! - hashing   vs raw `blake3::Hasher::update_mmap_rayon` of the same file.
//!
//! The page cache is warm (the source is read once before timing). These VMs are
//! noisy (see ../shared/INFRA.md), so each pair runs baseline, ours, baseline and
//! reports the median, min and max of ours / mean(baselines) over all pairs.

mod support;

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, Instant};

use modelreg::{Actor, ArtifactSource, CreateModel, FetchOptions, NewVersion, Registry};
use support::{Series, benchmarking, env_num, scratch_source};

fn copy_and_sync(src: &Path, dst: &Path) -> Duration {
    let t = Instant::now();
    fs::copy(src, dst).expect("copy");
    File::open(dst).and_then(|f| f.sync_all()).expect("fsync");
    let d = t.elapsed();
    fs::remove_file(dst).expect("remove copy");
    d
}

fn raw_blake3(src: &Path) -> Duration {
    let t = Instant::now();
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(src).expect("hash");
    std::hint::black_box(h.finalize());
    t.elapsed()
}

fn main() {
    if !benchmarking() {
        return;
    }
    let mib = env_num("MODELREG_BENCH_MIB", 256);
    let pairs = env_num("MODELREG_BENCH_PAIRS", 5);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (tmp, src) = scratch_source(mib);
    println!("file {mib} MiB, {pairs} pairs, page cache warm, fsync included");

    let actor = Actor::new("bench").expect("actor");
    let mut register = Series::new("register");
    let mut fetch = Series::new("fetch");
    let mut hash = Series::new("hash");
    for i in 0..pairs {
        // A fresh registry per pair, so every register stores new bytes.
        let root = tmp.path().join(format!("reg{i}"));
        let reg = rt.block_on(Registry::open_local(&root)).expect("open");
        rt.block_on(reg.create_model("bench", CreateModel::by(actor.clone())))
            .expect("create");

        let before = copy_and_sync(&src, &tmp.path().join("copy"));
        let t = Instant::now();
        rt.block_on(reg.register(
            "bench",
            ArtifactSource::file(&src),
            NewVersion::by(actor.clone()),
        ))
        .expect("register");
        let ours = t.elapsed();
        let after = copy_and_sync(&src, &tmp.path().join("copy"));
        register.pair(before, ours, after);

        let before = copy_and_sync(&src, &tmp.path().join("copy"));
        let out = tmp.path().join(format!("out{i}"));
        let t = Instant::now();
        rt.block_on(reg.fetch("bench/1", &out, FetchOptions::new()))
            .expect("fetch");
        let ours = t.elapsed();
        let after = copy_and_sync(&src, &tmp.path().join("copy"));
        fetch.pair(before, ours, after);

        let before = raw_blake3(&src);
        let t = Instant::now();
        rt.block_on(reg.verify("bench/1")).expect("verify");
        let ours = t.elapsed();
        let after = raw_blake3(&src);
        hash.pair(before, ours, after);

        fs::remove_dir_all(&out).ok();
        fs::remove_dir_all(&root).ok();
    }
    register.report();
    fetch.report();
    println!(
        "(hash = registry.verify, streaming re-hash from the store, vs raw mmap+rayon BLAKE3)"
    );
    hash.report();
}
