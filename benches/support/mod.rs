//! What the benches share: settings from the environment, a source file, and
//! interleaved baseline/ours timing with a ratio report.

#![allow(dead_code)]

pub mod dedup_scenarios;
pub mod fixture;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// A number from the environment, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether `cargo bench` runs us: it passes `--bench`, `cargo test --benches` does not.
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Writes `mib` MiB to `path`, distinct in every MiB so nothing dedups, and syncs it.
pub fn write_source(path: &Path, mib: u64) {
    let mut f = File::create(path).expect("create source");
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (j as u64 ^ i.wrapping_mul(0x9E37_79B9)) as u8;
        }
        f.write_all(&block).expect("write source");
    }
    f.sync_all().expect("sync source");
}

/// Timings of one operation: ours, and the baseline measured before and after it.
pub struct Series {
    name: &'static str,
    ours: Vec<Duration>,
    base: Vec<Duration>,
    ratios: Vec<f64>,
}

impl Series {
    pub fn new(name: &'static str) -> Self {
        Series {
            name,
            ours: vec![],
            base: vec![],
            ratios: vec![],
        }
    }

    /// One pair: the baseline before, ours, the baseline after; the ratio is ours
    /// over the mean of the two baselines.
    pub fn pair(&mut self, before: Duration, ours: Duration, after: Duration) {
        let base = (before + after) / 2;
        self.ours.push(ours);
        self.base.push(before);
        self.base.push(after);
        self.ratios.push(ours.as_secs_f64() / base.as_secs_f64());
    }

    /// Prints the median, min and max ratio, the ratio of the best (fastest)
    /// sample of ours to the best of the baseline, and every sample.
    ///
    /// The best-of-run ratio is the one to read when the baseline's samples
    /// scatter: on these VMs writing 1 GiB into the page cache takes 0.4 s or
    /// up to 19 s at random (memory handed back to the host is slow to touch
    /// again), which makes a per-pair ratio whatever that pair's copies hit.
    pub fn report(&mut self) {
        let ms = |d: &Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        self.ratios.sort_by(|a, b| a.total_cmp(b));
        let median = self.ratios[self.ratios.len() / 2];
        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default().as_secs_f64();
        println!(
            "{:<10} ratio median {:.2}x (min {:.2}, max {:.2}), best/best {:.2}x; ours ms [{}]; baseline ms [{}]",
            self.name,
            median,
            self.ratios[0],
            self.ratios[self.ratios.len() - 1],
            best(&self.ours) / best(&self.base),
            self.ours.iter().map(ms).collect::<Vec<_>>().join(" "),
            self.base.iter().map(ms).collect::<Vec<_>>().join(" "),
        );
    }
}

/// A scratch directory (under `MODELREG_BENCH_DIR`, default the current one) with a
/// `mib` MiB source file `model.bin` in it, read once so the page cache is warm.
pub fn scratch_source(mib: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp =
        tempfile::tempdir_in(std::env::var("MODELREG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let src = tmp.path().join("model.bin");
    write_source(&src, mib);
    std::fs::read(&src).expect("warm the page cache");
    (tmp, src)
}

/// `d` in the unit that suits it: ns, µs or ms.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-6 {
        format!("{:.0} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

/// The `q` quantile (0..=1) of sorted samples.
fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

impl Series {
    /// Prints median, min and max of ours, of the baseline and of the ratio, and
    /// ours' p95 and p99 when there are enough samples; for series too long to
    /// list (such as one sample per registration).
    pub fn summary(&mut self) {
        let mut ours = self.ours.clone();
        let mut base = self.base.clone();
        ours.sort();
        base.sort();
        self.ratios.sort_by(|a, b| a.total_cmp(b));
        let stats = |v: &[Duration]| {
            format!(
                "median {} (min {}, max {})",
                human(quantile(v, 0.5)),
                human(v[0]),
                human(v[v.len() - 1])
            )
        };
        let tail = if ours.len() >= 20 {
            format!(
                ", p95 {}, p99 {}",
                human(quantile(&ours, 0.95)),
                human(quantile(&ours, 0.99))
            )
        } else {
            String::new()
        };
        println!(
            "{:<12} n={:<5} ours {}{}\n{:<12} {:<7} baseline {}\n{:<12} {:<7} ratio median {:.2}x (min {:.2}, max {:.2})",
            self.name,
            ours.len(),
            stats(&ours),
            tail,
            "",
            "",
            stats(&base),
            "",
            "",
            quantile(&self.ratios, 0.5),
            self.ratios[0],
            self.ratios[self.ratios.len() - 1],
        );
    }
}

/// A realistic new version (a record of ~1 KiB): description, tags, metrics,
/// code and data provenance, varying with `i`.
pub fn new_version(i: u64) -> modelreg::NewVersion {
    let provenance: modelreg::Provenance = serde_json::from_value(serde_json::json!({
        "code": {"repository": "https://git.example.com/ml/fraud", "commit": format!("{i:040x}"), "dirty": false},
        "datasets": [
            {"name": "transactions", "version": format!("2026-03-{:02}", i % 28 + 1), "role": "train"},
            {"name": "transactions-holdout", "version": "2026-03-01", "role": "eval"}
        ],
        "hyperparameters": {"lr": 0.0003, "epochs": 12, "batch_size": 256, "optimizer": "adamw"},
        "environment": {"frameworks": {"torch": "2.4.1"}, "runtimes": {"python": "3.11.7"},
                        "os": "linux (Debian GNU/Linux 12)", "arch": "x86_64", "cuda": "12.4"}
    }))
    .expect("provenance");
    modelreg::NewVersion::new()
        .description(format!("nightly retrain {i}"))
        .tag("team", "risk")
        .tag("cohort", format!("c{}", i % 10))
        .metrics(
            modelreg::Metrics::new()
                .with("auc", 0.9 + (i % 97) as f64 / 10_000.0)
                .and_then(|m| m.with("eval/loss", 0.2 + (i % 89) as f64 / 10_000.0))
                .and_then(|m| m.with("f1", 0.8 + (i % 83) as f64 / 10_000.0))
                .expect("metrics"),
        )
        .provenance(provenance)
}

/// The copy baseline: `cp src dst` then `fsync` of the copy (what a durable
/// store of the file must at least do); the copy is removed afterwards.
pub fn copy_and_sync(src: &Path, dst: &Path) -> Duration {
    let t = std::time::Instant::now();
    std::fs::copy(src, dst).expect("copy");
    File::open(dst).and_then(|f| f.sync_all()).expect("fsync");
    let d = t.elapsed();
    std::fs::remove_file(dst).expect("remove copy");
    d
}

/// [`copy_and_sync`] with its two parts timed apart: the copy (`cp`), then
/// the fsync of the copy; the copy is removed afterwards.
pub fn copy_then_sync(src: &Path, dst: &Path) -> (Duration, Duration) {
    let t = std::time::Instant::now();
    std::fs::copy(src, dst).expect("copy");
    let copied = t.elapsed();
    File::open(dst).and_then(|f| f.sync_all()).expect("fsync");
    let synced = t.elapsed() - copied;
    std::fs::remove_file(dst).expect("remove copy");
    (copied, synced)
}

/// The load average (1, 5, 15 minutes) from `/proc/loadavg`, as printed.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Reads `src` in 2 MiB pieces, in order, handing each to `hash`: how the
/// one-core baselines read, as `sha256sum` does.
fn read_in_pieces(src: &Path, mut hash: impl FnMut(&[u8])) {
    use std::io::Read;
    let mut file = File::open(src).expect("open");
    let mut buf = vec![0u8; 2 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hash(&buf[..n]);
    }
}

/// Raw BLAKE3 on one thread: `src` read in 2 MiB pieces, each fed to
/// `Hasher::update` (which uses SIMD but no other core).
pub fn raw_blake3_one_thread(src: &Path) -> Duration {
    let t = std::time::Instant::now();
    let mut h = blake3::Hasher::new();
    read_in_pieces(src, |piece| {
        h.update(piece);
    });
    std::hint::black_box(h.finalize());
    t.elapsed()
}

/// The raw BLAKE3 baseline: the file memory-mapped and hashed on every core,
/// as `b3sum` does.
pub fn raw_blake3(src: &Path) -> Duration {
    let t = std::time::Instant::now();
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(src).expect("hash");
    std::hint::black_box(h.finalize());
    t.elapsed()
}

/// The raw SHA-256 baseline: one core reads `src` in 2 MiB pieces and hashes
/// them in order (SHA-256 cannot be split across cores), as `sha256sum` does.
pub fn raw_sha256(src: &std::path::Path) -> std::time::Duration {
    use sha2::Digest as _;
    let t = std::time::Instant::now();
    let mut h = sha2::Sha256::new();
    read_in_pieces(src, |piece| h.update(piece));
    std::hint::black_box(h.finalize());
    t.elapsed()
}
