//! Startup cost of the `modelreg` binary: `modelreg version show fraud@production`
//! on a local registry of 1,000 versions, as a fresh process, against its
//! baseline measured in the same run: `cat` of one small file as a fresh process
//! plus the registry's cold open (a new `Registry` over the directory and the
//! first `resolve`). The target is a ratio of at most 2×. Two rows:
//!
//! - `show vs warm`: the cold open timed in this process, whose heap, blocking
//!   threads and "directories known durable" are warm from the previous pairs
//!   (the strict baseline);
//! - `show vs fresh`: the cold open timed inside a fresh child process (this bench
//!   re-executed), from before `open_local` to the resolved version, as the
//!   metadata bench's `cold open, new process` row does.
//!
//! ```text
//! cargo bench --features cli --bench cli_startup
//! MODELREG_BENCH_VERSIONS=1000 MODELREG_BENCH_PAIRS=30 cargo bench --features cli --bench cli_startup
//! ```
//!
//! Each pair times the baseline, the binary, and the baseline again; the ratio is
//! the binary over the mean of the two baselines. The page cache is warm.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modelreg::{Actor, ArtifactSource, CreateModel, NewVersion, Registry, Stage};
use support::{Series, benchmarking, env_num};

fn run_quiet(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    let d = t.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    d
}

/// Set to a registry directory, the bench runs as a child: it times one cold
/// open and resolve, prints the nanoseconds and exits.
const CHILD_OPEN: &str = "MODELREG_BENCH_CHILD_OPEN";

/// The child side: `Some` if this process is one.
fn child() -> Option<()> {
    let root = std::env::var_os(CHILD_OPEN)?;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Instant::now();
    let reg = rt.block_on(Registry::open_local(&root)).expect("open");
    let v = rt
        .block_on(reg.resolve("fraud@production"))
        .expect("resolve");
    let took = t.elapsed();
    std::hint::black_box(v);
    println!("{}", took.as_nanos());
    std::process::exit(0);
}

/// A cold open and resolve timed inside a fresh child process.
fn open_in_child(dir: &std::path::Path) -> Duration {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_OPEN, dir)
        .output()
        .expect("run child");
    assert!(out.status.success(), "child failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    Duration::from_nanos(text.trim().parse().expect("child's nanoseconds"))
}

fn main() {
    if child().is_some() {
        return;
    }
    let versions = env_num("MODELREG_BENCH_VERSIONS", 1000);
    let pairs = if benchmarking() {
        env_num("MODELREG_BENCH_PAIRS", 30)
    } else {
        2
    };
    let versions = if benchmarking() { versions } else { 20 };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("registry");
    let t = Instant::now();
    rt.block_on(async {
        let reg = Registry::open_local(&dir).await.expect("open");
        let me = reg.acting_as(Actor::new("bench").expect("actor"));
        me.create_model("fraud", CreateModel::new())
            .await
            .expect("create");
        for i in 0..versions {
            let source = ArtifactSource::bytes("model.bin", format!("weights {i}").into_bytes())
                .expect("src");
            me.register("fraud", source, NewVersion::new().metric("auc", 0.5))
                .await
                .expect("register");
        }
        me.promote_to(
            format!("fraud/{}", versions / 2).as_str(),
            Stage::Production,
            "bench",
        )
        .await
        .expect("promote");
    });
    println!(
        "fixture: {versions} versions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let small = tmp.path().join("small.txt");
    std::fs::write(&small, "fraud/500\n").expect("small file");
    let bin = env!("CARGO_BIN_EXE_modelreg");
    let cli = || {
        run_quiet(
            Command::new(bin)
                .args([
                    "--registry",
                    dir.to_str().expect("utf-8"),
                    "version",
                    "show",
                ])
                .arg("fraud@production"),
        )
    };
    let baseline = || {
        let cat = run_quiet(Command::new("cat").arg(&small));
        let t = Instant::now();
        rt.block_on(async {
            let reg = Registry::open_local(&dir).await.expect("open");
            reg.resolve("fraud@production").await.expect("resolve");
        });
        cat + t.elapsed()
    };
    // Warm the page cache and the binary.
    cli();
    baseline();
    let fresh = || run_quiet(Command::new("cat").arg(&small)) + open_in_child(&dir);
    let mut warm = Series::new("show vs warm");
    let mut cold = Series::new("show vs fresh");
    for _ in 0..pairs {
        let before = baseline();
        let ours = cli();
        let after = baseline();
        warm.pair(before, ours, after);
        let before = fresh();
        let ours = cli();
        let after = fresh();
        cold.pair(before, ours, after);
    }
    warm.report();
    cold.report();
}
