//! Register and fetch through packs (issue 17), each against `cp` + fsync of the
//! same file in the same run, on a packed local registry and, for comparison,
//! on the default (unpacked) one; and what each stores on disk.
//!
//! ```text
//! cargo bench --bench packs                                   # ~256 MiB base, 3 pairs
//! MODELREG_BENCH_MIB=512 MODELREG_BENCH_PAIRS=5 cargo bench --bench packs
//! MODELREG_BENCH_MIB=8 MODELREG_BENCH_PAIRS=1 cargo bench --bench packs  # smoke run
//! MODELREG_BENCH_RSS_MIB=4096 cargo bench --bench packs   # peak RSS only (below)
//! ```
//!
//! With `MODELREG_BENCH_RSS_MIB` set, the bench does only this: write a
//! pseudo-random file of that many MiB, register it into a fresh packed
//! registry in one child process and fetch it in another, each printing its
//! time and peak RSS (`VmHWM`); then delete both.
//!
//! The files are scenario (a) of `benches/support/dedup_scenarios.rs` (a
//! Llama-shaped BF16 safetensors checkpoint of about `MODELREG_BENCH_MIB` MiB,
//! and its variant 1: a LoRA merged into the q and v projections, its own
//! `__metadata__`, so every tensor offset shifts), cached under
//! `<target>/bench-fixtures/dedup-<mib>/` as `benches/dedup.rs` caches them.
//!
//! The packed registry is opened as a new user would:
//! `Registry::open_local_with(dir, LocalArtifactOptions::new().packed(PackOptions::new()))`;
//! the plain one with `Registry::open_local(dir)`. Each pair makes a fresh
//! registry of each kind and, in each, times:
//! - `reg-base`: register the base (nothing in the store to dedup against);
//! - `reg-var`: register variant 1 (the base already stored);
//! - `fetch-var`: fetch variant 1 (from packs, reconstructed from its recipe,
//!   on the packed registry), to a fresh directory; fetch re-hashes what it
//!   placed;
//! - `fetch-base`: fetch the base (from packs: one term per pack, where the
//!   variant's recipe alternates between the base's packs and its own);
//!
//! each between two runs of its baseline, `std::fs::copy` (copy_file_range,
//! like `cp`) of the same file + fsync of the copy; the ratio is ours over
//! the mean of the two, and the report gives its median, min and max over
//! the pairs. The page cache is warm (both files are read before timing), and
//! each registry's hash cache is new, so every registration hashes its file.
//! Then the parts of a packed registration, each against `cp` + fsync of the
//! base: raw BLAKE3 over both cores (`update_mmap_rayon`), raw SHA-256
//! (sequential 2 MiB reads, one core) and `chunk_file` with the default
//! parameters. After each pair, the store size: bytes on disk (allocated blocks) of the
//! registry's `artifacts` directory, against the sum of the two files.

mod support;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use modelreg::store::chunking::{ChunkParams, chunk_file};
use modelreg::store::{LocalArtifactOptions, PackOptions};
use modelreg::{Actor, ArtifactSource, CreateModel, FetchOptions, NewVersion, Registry};
use support::dedup_scenarios::{self, Kind};
use support::fixture::fixtures_root;
use support::{Series, benchmarking, copy_and_sync, env_num, raw_blake3, raw_sha256};

/// The default chunking of the file (read + BLAKE3 of every chunk), as the
/// packed store's first pass over it does.
fn chunk(src: &Path) -> Duration {
    timed(|| drop(chunk_file(src, &ChunkParams::default()).expect("chunk")))
}

fn actor() -> Actor {
    Actor::new("bench").expect("actor")
}

/// A fresh registry at `root`, packed or not, with the model `bench`.
fn registry(rt: &tokio::runtime::Runtime, root: &Path, packed: bool) -> Registry {
    let reg = if packed {
        let options = LocalArtifactOptions::new().packed(PackOptions::new());
        rt.block_on(Registry::open_local_with(root, options))
    } else {
        rt.block_on(Registry::open_local(root))
    }
    .expect("open");
    rt.block_on(
        reg.acting_as(actor())
            .create_model("bench", CreateModel::new()),
    )
    .expect("create");
    reg
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Times `ours` between two runs of `baseline`.
fn pair(series: &mut Series, baseline: impl Fn() -> Duration, ours: impl FnOnce() -> Duration) {
    let before = baseline();
    let ours = ours();
    let after = baseline();
    series.pair(before, ours, after);
}

/// Bytes on disk (allocated blocks) and apparent bytes of the files under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let (mut disk, mut len) = (0, 0);
    for entry in fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("stat");
        if meta.is_dir() {
            let (d, l) = disk_usage(&entry.path());
            disk += d;
            len += l;
        } else {
            disk += meta.blocks() * 512;
            len += meta.len();
        }
    }
    (disk, len)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The rows of one kind of registry.
struct Rows {
    name: &'static str,
    packed: bool,
    register_base: Series,
    register_variant: Series,
    fetch_variant: Series,
    fetch_base: Series,
    /// (on disk, apparent) bytes of the artifact store after each pair.
    sizes: Vec<(u64, u64)>,
}

impl Rows {
    fn new(name: &'static str, packed: bool) -> Self {
        Rows {
            name,
            packed,
            register_base: Series::new("reg-base"),
            register_variant: Series::new("reg-var"),
            fetch_variant: Series::new("fetch-var"),
            fetch_base: Series::new("fetch-base"),
            sizes: vec![],
        }
    }

    /// One pair of every row on a fresh registry under `tmp`.
    fn pair(&mut self, rt: &tokio::runtime::Runtime, tmp: &Path, i: u64, base: &Path, var: &Path) {
        let root = tmp.join(format!("{}-{i}", self.name));
        let reg = registry(rt, &root, self.packed);
        let copy_base = || copy_and_sync(base, &tmp.join("copy"));
        let copy_var = || copy_and_sync(var, &tmp.join("copy"));
        let register = |file: &Path| {
            rt.block_on(reg.acting_as(actor()).register(
                "bench",
                ArtifactSource::file(file),
                NewVersion::new(),
            ))
            .expect("register")
            .version
        };
        pair(&mut self.register_base, copy_base, || {
            timed(|| drop(register(base)))
        });
        pair(&mut self.register_variant, copy_var, || {
            timed(|| drop(register(var)))
        });
        // Fetches `version` into a fresh directory `out-<what>-…` under `tmp`.
        let fetch = |version: &str, what: &str| {
            let out = tmp.join(format!("out-{what}-{}-{i}", self.name));
            let took = timed(|| {
                rt.block_on(reg.fetch(version, &out, FetchOptions::new()))
                    .map(drop)
                    .expect("fetch")
            });
            fs::remove_dir_all(&out).ok();
            took
        };
        pair(&mut self.fetch_variant, copy_var, || {
            fetch("bench/2", "var")
        });
        pair(&mut self.fetch_base, copy_base, || fetch("bench/1", "base"));
        self.sizes.push(disk_usage(&root.join("artifacts")));
        fs::remove_dir_all(&root).ok();
    }

    fn report(&mut self, files: u64) {
        println!("{}:", self.name);
        self.register_base.report();
        self.register_variant.report();
        self.fetch_variant.report();
        self.fetch_base.report();
        let (disk, len) = self.sizes[self.sizes.len() / 2];
        println!(
            "store      {:.1} MiB on disk ({:.1} MiB apparent) for {:.1} MiB of files: {:.3}x",
            mib(disk),
            mib(len),
            mib(files),
            disk as f64 / files as f64
        );
    }
}

/// Peak resident memory of this process so far (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status")
        * 1024
}

/// The child of [`rss`]: registers the file `MODELREG_BENCH_RSS_FILE` into
/// (`register`) or fetches it from (`fetch`) the packed registry at
/// `MODELREG_BENCH_RSS_ROOT`, then prints its peak RSS.
fn rss_child(what: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let root = std::env::var("MODELREG_BENCH_RSS_ROOT").expect("root");
    let file = std::env::var("MODELREG_BENCH_RSS_FILE").expect("file");
    let t = Instant::now();
    if what == "register" {
        let reg = registry(&rt, Path::new(&root), true);
        rt.block_on(reg.acting_as(actor()).register(
            "bench",
            ArtifactSource::file(&file),
            NewVersion::new(),
        ))
        .expect("register");
    } else {
        let options = LocalArtifactOptions::new().packed(PackOptions::new());
        let reg = rt
            .block_on(Registry::open_local_with(&root, options))
            .expect("open");
        let out = Path::new(&root).with_extension("out");
        rt.block_on(reg.fetch("bench/1", &out, FetchOptions::new()))
            .expect("fetch");
    }
    println!(
        "{what:<9} {:.1} s, peak RSS {:.1} MiB",
        t.elapsed().as_secs_f64(),
        mib(peak_rss())
    );
}

/// Peak RSS of registering, then fetching, a new file of `mib` MiB
/// (pseudo-random: content-defined chunks, the most chunks per byte) in a
/// packed local registry, each in a child process of its own; the file and
/// the registry are deleted after.
fn rss(mib_size: u64) {
    let tmp =
        tempfile::tempdir_in(std::env::var("MODELREG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let file = tmp.path().join("big.bin");
    let t = Instant::now();
    {
        use std::io::{Read, Write};
        let mut out =
            std::io::BufWriter::with_capacity(4 << 20, File::create(&file).expect("create"));
        let mut xof = blake3::Hasher::new().update(b"rss").finalize_xof();
        let mut buf = vec![0u8; 4 << 20];
        for _ in 0..mib_size / 4 {
            xof.read_exact(&mut buf).expect("xof");
            out.write_all(&buf).expect("write");
        }
        out.into_inner().expect("flush").sync_all().expect("sync");
    }
    println!(
        "rss: a {mib_size} MiB pseudo-random file written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let root = tmp.path().join("reg");
    for what in ["register", "fetch"] {
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .arg("--bench")
            .env("MODELREG_BENCH_RSS_CHILD", what)
            .env("MODELREG_BENCH_RSS_ROOT", &root)
            .env("MODELREG_BENCH_RSS_FILE", &file)
            .status()
            .expect("run child");
        assert!(status.success(), "{what} child failed");
    }
}

fn main() {
    if !benchmarking() {
        return;
    }
    if let Ok(what) = std::env::var("MODELREG_BENCH_RSS_CHILD") {
        return rss_child(&what);
    }
    if let Ok(size) = std::env::var("MODELREG_BENCH_RSS_MIB") {
        return rss(size.parse().expect("MODELREG_BENCH_RSS_MIB: MiB"));
    }
    let base_mib = env_num("MODELREG_BENCH_MIB", 256);
    let pairs = env_num("MODELREG_BENCH_PAIRS", 3).max(1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Instant::now();
    let dir = fixtures_root().join(format!("dedup-{base_mib}"));
    let scenario = dedup_scenarios::generate_first(Kind::LoraQv, base_mib, &dir, 1);
    let (base, var) = (&scenario.files[0], &scenario.files[1]);
    let (base_len, var_len) = (
        fs::metadata(base).expect("stat").len(),
        fs::metadata(var).expect("stat").len(),
    );
    println!(
        "{} base {:.1} MiB + variant 1 {:.1} MiB (tensor-granularity ideal {:.1} MiB), \
         generated or found in {:.1} s; {pairs} pairs, page cache warm, fsync included",
        Kind::LoraQv.name(),
        mib(base_len),
        mib(var_len),
        mib(scenario.ideal),
        t.elapsed().as_secs_f64()
    );
    // Durable and in the page cache, so no row pays for writing or reading
    // the sources from disk.
    for f in [base, var] {
        File::open(f)
            .and_then(|f| f.sync_all())
            .expect("sync source");
        fs::read(f).expect("warm the page cache");
    }
    let tmp =
        tempfile::tempdir_in(std::env::var("MODELREG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    // What a packed registration is made of, each against cp + fsync of
    // the base: the parts' ratios bound what the whole can reach.
    let mut parts = [
        (Series::new("b3-rayon"), raw_blake3 as fn(&Path) -> Duration),
        (Series::new("sha256"), raw_sha256),
        (Series::new("chunk"), chunk),
    ];
    let mut packed = Rows::new("packed", true);
    let mut plain = Rows::new("plain", false);
    for i in 0..pairs {
        // Alternate which kind goes first, so neither always runs on the
        // page cache and dirty pages the other left.
        let (first, second) = if i % 2 == 0 {
            (&mut packed, &mut plain)
        } else {
            (&mut plain, &mut packed)
        };
        first.pair(&rt, tmp.path(), i, base, var);
        second.pair(&rt, tmp.path(), i, base, var);
        for (series, part) in &mut parts {
            pair(
                series,
                || copy_and_sync(base, &tmp.path().join("copy")),
                || part(base),
            );
        }
    }
    println!(
        "(baseline of every row: cp + fsync of the same file; targets with packs: reg-base <= 1.2x, reg-var <= 0.5x, fetch-var <= 1.3x)"
    );
    packed.report(base_len + var_len);
    plain.report(base_len + var_len);
    println!(
        "parts, on the base (b3-rayon: BLAKE3 update_mmap_rayon; sha256: sequential \
         2 MiB reads; chunk: chunk_file with the default ChunkParams):"
    );
    for (series, _) in &mut parts {
        series.report();
    }
}
