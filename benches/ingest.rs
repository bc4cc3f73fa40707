//! Register, re-register, fetch and hash of one large file on the local store, each
//! measured against the raw operation it competes with, interleaved in the same run;
//! and the peak memory of registering and fetching, measured in child processes.
//!
//! ```text
//! cargo bench --bench ingest                                        # 256 MiB, 5 pairs
//! MODELREG_BENCH_MIB=1024 MODELREG_BENCH_PAIRS=7 cargo bench --bench ingest
//! MODELREG_BENCH_RSS_MIB=4096 MODELREG_BENCH_PAIRS=0 cargo bench --bench ingest  # peak RSS only
//! MODELREG_BENCH_PROGRESS=1 cargo bench --bench ingest   # with a progress callback
//! ```
//!
//! With `MODELREG_BENCH_PROGRESS=1`, every register, fetch and verify runs with a
//! `Progress` callback that adds each `Bytes` delta to an atomic, as a progress
//! bar does; compare its ratios with a run without to see what progress costs.
//!
//! Baselines, at equal durability (our stores fsync every blob):
//! - register, re-register, fetch: `std::fs::copy` (copy_file_range, like `cp`) of the
//!   same file + fsync of the copy;
//! - hash: raw `blake3::Hasher::update_mmap_rayon` of the same file;
//! - the SHA-256 every registration records beside BLAKE3: raw `sha2::Sha256`
//!   over the same file, read in 2 MiB buffers on one thread (SHA-256 is
//!   sequential). A registration hashes its file once with both, so one SHA-256
//!   pass is its floor on a machine where SHA-256 is slower than BLAKE3 on all
//!   cores: `register/s` and `reg-link/s` report ours against it, `floor-sha`
//!   that raw SHA-256 against `cp` + fsync, and `sha/b3` raw SHA-256 against raw
//!   BLAKE3.
//!
//! "link" rows register with `NewVersion::link(LinkMode::HardLink)` (the source
//! becomes read-only and shares its inode with the store) and fetch with
//! `FetchOptions::link(LinkMode::HardLink)`; fetch always re-hashes what it placed.
//! Each link pair runs copy, raw BLAKE3, raw SHA-256, ours, raw SHA-256, raw
//! BLAKE3, copy, and reports ours against the copy (the target), ours against
//! the raw BLAKE3 of the linked file (`*/h`: the overhead above one BLAKE3
//! pass, the floor of `fetch-link`) and against its raw SHA-256 (`reg-link/s`:
//! the floor of `reg-link`, which hashes with both), and each raw hash against
//! the copy (`floor-*`: the best ratio the row could reach in the same run).
//! The page cache is warm (the source is read once before timing). These VMs are
//! noisy (writing 1 GiB into the page cache takes ~0.25 s or 1–2.6 s, seemingly
//! at random), so each pair runs baseline, ours, baseline and
//! reports the median, min and max of ours / mean(baselines) over all pairs.
//!
//! Peak RSS: the bench re-executes itself once per operation (register, fetch,
//! hash) on a fresh file of `MODELREG_BENCH_RSS_MIB` MiB; each child reports its
//! `VmHWM` from `/proc/self/status`, which counts mapped file pages too.

mod support;

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use modelreg::store::{LinkMode, LocalArtifactOptions, PackOptions};
use modelreg::{
    Actor, ArtifactSource, CreateModel, Digest, FetchOptions, NewVersion, Progress, ProgressEvent,
    Registry, VersionRecord,
};
use support::{
    Series, benchmarking, copy_and_sync, copy_then_sync, env_num, load_average, raw_blake3,
    raw_blake3_one_thread, raw_sha256, scratch_source,
};

/// A fresh registry at `root` with the model `bench`.
fn registry(rt: &tokio::runtime::Runtime, root: &Path) -> Registry {
    let reg = rt.block_on(Registry::open_local(root)).expect("open");
    rt.block_on(
        reg.acting_as(actor())
            .create_model("bench", CreateModel::new()),
    )
    .expect("create");
    reg
}

fn actor() -> Actor {
    Actor::new("bench").expect("actor")
}

/// `Bytes` events and bytes the callback of `MODELREG_BENCH_PROGRESS=1` heard.
static EVENTS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// A callback that counts bytes as a progress bar would, if
/// `MODELREG_BENCH_PROGRESS=1`.
fn progress() -> Option<Progress> {
    (env_num("MODELREG_BENCH_PROGRESS", 0) == 1).then(|| {
        Progress::new(|e| {
            if let ProgressEvent::Bytes { bytes } = e {
                EVENTS.fetch_add(1, Ordering::Relaxed);
                BYTES.fetch_add(*bytes, Ordering::Relaxed);
            }
        })
    })
}

fn register(
    rt: &tokio::runtime::Runtime,
    reg: &Registry,
    src: &Path,
    link: LinkMode,
) -> VersionRecord {
    let mut version = NewVersion::new().link(link);
    if let Some(p) = progress() {
        version = version.progress(p);
    }
    rt.block_on(
        reg.acting_as(actor())
            .register("bench", ArtifactSource::file(src), version),
    )
    .expect("register")
    .version
}

/// Fetch options with `link`, and the bench's progress callback if any.
fn fetch_options(link: LinkMode) -> FetchOptions {
    let options = FetchOptions::new().link(link);
    match progress() {
        Some(p) => options.progress(p),
        None => options,
    }
}

/// Verifies `bench/1`, with the bench's progress callback if any.
fn verify(rt: &tokio::runtime::Runtime, reg: &Registry) {
    match progress() {
        Some(p) => rt.block_on(reg.verify_with_progress("bench/1", p)),
        None => rt.block_on(reg.verify("bench/1")),
    }
    .expect("verify");
}

/// Times `ours` between two runs of `baseline`.
fn pair(series: &mut Series, baseline: impl Fn() -> Duration, ours: impl FnOnce() -> Duration) {
    let before = baseline();
    let ours = ours();
    let after = baseline();
    series.pair(before, ours, after);
}

/// Times `ours` between two runs of each baseline, nested (`a`, `b`, ours, `b`,
/// `a`), and reports it against each.
fn pair2(
    (series_a, a): (&mut Series, impl Fn() -> Duration),
    (series_b, b): (&mut Series, impl Fn() -> Duration),
    ours: impl FnOnce() -> Duration,
) {
    let (a_before, b_before) = (a(), b());
    let ours = ours();
    let (b_after, a_after) = (b(), a());
    series_a.pair(a_before, ours, a_after);
    series_b.pair(b_before, ours, b_after);
}

/// The series of one link row: `ours` against `cp` + fsync, `ours` against the
/// raw BLAKE3 and the raw SHA-256 of the file (a link row is one hash pass plus
/// a few fsyncs, so the slower of the hashes it does is its floor), and each raw
/// hash against `cp` + fsync (the best ratio the row could reach in this run).
struct LinkRow {
    vs_copy: Series,
    vs_hash: Series,
    vs_sha: Series,
    floor: Series,
    floor_sha: Series,
}

impl LinkRow {
    fn new(name: &'static str, vs_hash: &'static str, vs_sha: &'static str) -> Self {
        LinkRow {
            vs_copy: Series::new(name),
            vs_hash: Series::new(vs_hash),
            vs_sha: Series::new(vs_sha),
            floor: Series::new("floor-b3"),
            floor_sha: Series::new("floor-sha"),
        }
    }

    /// Times copy, hash, sha, ours, sha, hash, copy.
    fn pair(
        &mut self,
        copy: impl Fn() -> Duration,
        hash: impl Fn() -> Duration,
        sha: impl Fn() -> Duration,
        ours: impl FnOnce() -> Duration,
    ) {
        let copy_before = copy();
        let hash_before = hash();
        let sha_before = sha();
        let ours = ours();
        let sha_after = sha();
        let hash_after = hash();
        let copy_after = copy();
        self.vs_copy.pair(copy_before, ours, copy_after);
        self.vs_hash.pair(hash_before, ours, hash_after);
        self.vs_sha.pair(sha_before, ours, sha_after);
        self.floor
            .pair(copy_before, (hash_before + hash_after) / 2, copy_after);
        self.floor_sha
            .pair(copy_before, (sha_before + sha_after) / 2, copy_after);
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    if let Ok(op) = std::env::var("MODELREG_BENCH_CHILD") {
        return child(&op);
    }
    if !benchmarking() {
        return;
    }
    let mib = env_num("MODELREG_BENCH_MIB", 256);
    let pairs = env_num("MODELREG_BENCH_PAIRS", 5);
    if pairs > 0 {
        headline(mib, pairs);
        if std::env::var("MODELREG_BENCH_ONLY").as_deref() != Ok("headline") {
            timings(mib, pairs);
        }
    }
    let rss_mib = env_num("MODELREG_BENCH_RSS_MIB", 0);
    if rss_mib > 0 {
        peak_rss(rss_mib);
    }
}

/// Writes `mib` MiB of pseudo-random bytes (BLAKE3's output stream: no two
/// chunks alike, as in trained weights) to `path`, syncs it and reads it once
/// so the page cache is warm.
fn random_source(path: &Path, mib: u64) {
    use std::io::{Read, Write};
    let mut out = std::io::BufWriter::with_capacity(4 << 20, File::create(path).expect("create"));
    let mut xof = blake3::Hasher::new().update(b"headline").finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        xof.read_exact(&mut buf).expect("xof");
        out.write_all(&buf).expect("write");
    }
    out.into_inner().expect("flush").sync_all().expect("sync");
    fs::read(path).expect("warm the page cache");
}

/// The headline rows: registering a new file as a new user would, against `cp`
/// then fsync of the copy timed in the same repetitions.
///
/// Each pair: `cp` + fsync, register into a fresh `Registry::open_local(dir)`
/// (default options; the hash cache is the new registry's own, so it knows
/// nothing), `cp` + fsync, register into a fresh packed registry
/// (`open_local_with(dir, LocalArtifactOptions::new().packed(PackOptions::new()))`),
/// `cp` + fsync (the two registrations swap places every other pair), then the
/// floors: raw BLAKE3 on one thread, raw BLAKE3 on every core
/// (`update_mmap_rayon`), raw SHA-256 (one thread), and `cp` + fsync once more.
/// Each registration is `ArtifactSource::file` of a page-cache-warm,
/// pseudo-random file of `mib` MiB, timed from the call to its return; a
/// registry is opened (and its model created) before the clock starts and
/// deleted after the pair. Ratios are over the mean of the `cp` + fsync right
/// before and right after.
fn headline(mib: u64, pairs: u64) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tmp =
        tempfile::tempdir_in(std::env::var("MODELREG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let src = tmp.path().join("weights.bin");
    random_source(&src, mib);
    println!(
        "headline: a new {mib} MiB pseudo-random file, {pairs} pairs, page cache warm; \
         load average {}",
        load_average()
    );
    let copy_path = tmp.path().join("copy");
    let mut copies: Vec<(Duration, Duration)> = Vec::new();
    let mut copy = || {
        let (c, s) = copy_then_sync(&src, &copy_path);
        copies.push((c, s));
        c + s
    };
    let mut plain = Series::new("user-reg");
    let mut packed = Series::new("user-pack");
    let mut floors = [
        (
            Series::new("b3-1t"),
            raw_blake3_one_thread as fn(&Path) -> Duration,
        ),
        (Series::new("b3-mt"), raw_blake3),
        (Series::new("sha256"), raw_sha256),
    ];
    for i in 0..pairs {
        let open = |name: &str, pack: bool| {
            let root = tmp.path().join(format!("{name}{i}"));
            let reg = if pack {
                let options = LocalArtifactOptions::new().packed(PackOptions::new());
                rt.block_on(Registry::open_local_with(&root, options))
            } else {
                rt.block_on(Registry::open_local(&root))
            }
            .expect("open");
            rt.block_on(
                reg.acting_as(actor())
                    .create_model("bench", CreateModel::new()),
            )
            .expect("create");
            (root, reg)
        };
        let register = |reg: &Registry| {
            timed(|| {
                rt.block_on(reg.acting_as(actor()).register(
                    "bench",
                    ArtifactSource::file(&src),
                    NewVersion::new(),
                ))
                .map(drop)
                .expect("register")
            })
        };
        let (plain_root, plain_reg) = open("user-plain", false);
        let (packed_root, packed_reg) = open("user-packed", true);
        let c0 = copy();
        let (first, second) = if i % 2 == 0 {
            (&plain_reg, &packed_reg)
        } else {
            (&packed_reg, &plain_reg)
        };
        let t_first = register(first);
        let c1 = copy();
        let t_second = register(second);
        let c2 = copy();
        let (t_plain, t_packed) = if i % 2 == 0 {
            (t_first, t_second)
        } else {
            (t_second, t_first)
        };
        let (b_plain, b_packed) = if i % 2 == 0 {
            ((c0, c1), (c1, c2))
        } else {
            ((c1, c2), (c0, c1))
        };
        plain.pair(b_plain.0, t_plain, b_plain.1);
        packed.pair(b_packed.0, t_packed, b_packed.1);
        let raw: Vec<Duration> = floors.iter().map(|(_, f)| f(&src)).collect();
        let c3 = copy();
        for ((series, _), t) in floors.iter_mut().zip(raw) {
            series.pair(c2, t, c3);
        }
        drop((plain_reg, packed_reg));
        fs::remove_dir_all(&plain_root).ok();
        fs::remove_dir_all(&packed_root).ok();
    }
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    println!(
        "(baseline of every headline row: cp, then fsync of the copy; cp ms [{}]; fsync ms [{}])",
        copies.iter().map(|c| ms(c.0)).collect::<Vec<_>>().join(" "),
        copies.iter().map(|c| ms(c.1)).collect::<Vec<_>>().join(" "),
    );
    plain.report();
    packed.report();
    println!("(floors: b3-1t raw BLAKE3 one thread, b3-mt update_mmap_rayon, sha256 one thread)");
    for (series, _) in &mut floors {
        series.report();
    }
    println!("headline done; load average {}", load_average());
}

fn timings(mib: u64, pairs: u64) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (tmp, src) = scratch_source(mib);
    // Hard-link registration makes its source read-only and shares it with the
    // store: give it a file of its own.
    let linked_src = tmp.path().join("linked.bin");
    fs::copy(&src, &linked_src).expect("copy source");
    // Durable like `src`, so that no row pays for writing the source itself.
    File::open(&linked_src)
        .and_then(|f| f.sync_all())
        .expect("sync source");
    fs::read(&linked_src).expect("warm the page cache");
    // The hash cache records only files whose times are over two seconds old.
    std::thread::sleep(Duration::from_millis(2100));
    let with = if progress().is_some() {
        "with a progress callback"
    } else {
        "no progress callback"
    };
    println!("file {mib} MiB, {pairs} pairs, page cache warm, fsync included, {with}");

    let copy = || copy_and_sync(&src, &tmp.path().join("copy"));
    let hash = || raw_blake3(&src);
    let sha = || raw_sha256(&src);
    let mut s_register = Series::new("register");
    let mut s_register_sha = Series::new("register/s");
    let mut s_reregister = Series::new("re-reg");
    let mut s_fetch = Series::new("fetch");
    let mut s_link_register = LinkRow::new("reg-link", "reg-link/h", "reg-link/s");
    let mut s_link_fetch = LinkRow::new("fetch-link", "fetch-lk/h", "fetch-lk/s");
    let mut s_hash = Series::new("hash");
    let mut s_sha = Series::new("sha/b3");
    let mut s_verify = Series::new("verify");
    for i in 0..pairs {
        // Fresh registries per pair, so every first register stores new bytes.
        let root = tmp.path().join(format!("reg{i}"));
        let reg = registry(&rt, &root);
        pair2((&mut s_register, copy), (&mut s_register_sha, sha), || {
            timed(|| drop(register(&rt, &reg, &src, LinkMode::Copy)))
        });
        pair(&mut s_reregister, copy, || {
            timed(|| drop(register(&rt, &reg, &src, LinkMode::Copy)))
        });
        let out = tmp.path().join(format!("out{i}"));
        pair(&mut s_fetch, copy, || {
            timed(|| {
                rt.block_on(reg.fetch("bench/1", &out, fetch_options(LinkMode::Copy)))
                    .map(drop)
                    .expect("fetch")
            })
        });
        pair(&mut s_hash, hash, || {
            timed(|| {
                std::hint::black_box(Digest::of_file(&src).expect("hash"));
            })
        });
        pair(&mut s_verify, hash, || timed(|| verify(&rt, &reg)));
        pair(&mut s_sha, hash, sha);
        fs::remove_dir_all(&out).ok();
        fs::remove_dir_all(&root).ok();

        let root = tmp.path().join(format!("link{i}"));
        let reg = registry(&rt, &root);
        // The hash baseline of the link rows reads the file they link.
        let linked_hash = || raw_blake3(&linked_src);
        let linked_sha = || raw_sha256(&linked_src);
        s_link_register.pair(copy, linked_hash, linked_sha, || {
            timed(|| drop(register(&rt, &reg, &linked_src, LinkMode::HardLink)))
        });
        s_link_fetch.pair(copy, linked_hash, linked_sha, || {
            timed(|| {
                rt.block_on(reg.fetch("bench/1", &out, fetch_options(LinkMode::HardLink)))
                    .map(drop)
                    .expect("fetch")
            })
        });
        fs::remove_dir_all(&out).ok();
        fs::remove_dir_all(&root).ok();
    }
    println!("(baseline of register, re-reg, fetch and the link rows: cp + fsync of the copy)");
    s_register.report();
    s_reregister.report();
    s_fetch.report();
    s_link_register.vs_copy.report();
    s_link_fetch.vs_copy.report();
    println!(
        "(*/h: against raw BLAKE3 update_mmap_rayon of the same file; \
         */s: against raw SHA-256 of it, sequential 2 MiB reads)"
    );
    s_register_sha.report();
    s_link_register.vs_hash.report();
    s_link_register.vs_sha.report();
    s_link_fetch.vs_hash.report();
    s_link_fetch.vs_sha.report();
    println!(
        "(floor-*: the raw hash against cp + fsync, the best ratio a link row could reach; \
         from the reg-link pairs, then the fetch-link pairs)"
    );
    s_link_register.floor.report();
    s_link_register.floor_sha.report();
    s_link_fetch.floor.report();
    s_link_fetch.floor_sha.report();
    println!("(baseline of hash, verify and sha/b3: raw BLAKE3 update_mmap_rayon of the file)");
    s_hash.report();
    s_verify.report();
    s_sha.report();
    let events = EVENTS.load(Ordering::Relaxed);
    if events > 0 {
        println!(
            "progress: {events} Bytes events for {:.0} MiB counted",
            BYTES.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
        );
    }
}

/// Runs each operation in a child process on a fresh `mib` MiB file and prints its
/// peak resident set.
fn peak_rss(mib: u64) {
    let (tmp, src) = scratch_source(mib);
    let root = tmp.path().join("reg");
    let exe = std::env::current_exe().expect("current exe");
    println!("peak RSS (VmHWM) of one child process per operation, {mib} MiB file:");
    // Other bytes than `src`, so that registering it by hard link stores a new blob.
    let link_src = tmp.path().join("linked.bin");
    fs::copy(&src, &link_src).expect("copy source");
    File::options()
        .write(true)
        .open(&link_src)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, b"other bytes")?;
            f.sync_all()
        })
        .expect("change the copy");
    for op in ["hash", "register", "fetch", "register-link", "fetch-link"] {
        let out = Command::new(&exe)
            .env("MODELREG_BENCH_CHILD", op)
            .env(
                "MODELREG_BENCH_SRC",
                if op == "register-link" {
                    &link_src
                } else {
                    &src
                },
            )
            .env("MODELREG_BENCH_ROOT", &root)
            .env("MODELREG_BENCH_OUT", tmp.path().join(format!("out-{op}")))
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "{op}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// One operation in a child process; prints its peak RSS.
fn child(op: &str) {
    let var = |name: &str| std::path::PathBuf::from(std::env::var_os(name).expect(name));
    let (src, root, out) = (
        var("MODELREG_BENCH_SRC"),
        var("MODELREG_BENCH_ROOT"),
        var("MODELREG_BENCH_OUT"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Instant::now();
    match op {
        "hash" => {
            std::hint::black_box(Digest::of_file(&src).expect("hash"));
        }
        "register" | "register-link" => {
            let reg = if op == "register" {
                registry(&rt, &root)
            } else {
                rt.block_on(Registry::open_local(&root)).expect("open")
            };
            let link = if op == "register" {
                LinkMode::Copy
            } else {
                LinkMode::HardLink
            };
            register(&rt, &reg, &src, link);
        }
        "fetch" | "fetch-link" => {
            let reg = rt.block_on(Registry::open_local(&root)).expect("open");
            let (version, link) = if op == "fetch" {
                ("bench/1", LinkMode::Copy)
            } else {
                ("bench/2", LinkMode::HardLink)
            };
            rt.block_on(reg.fetch(version, &out, FetchOptions::new().link(link)))
                .expect("fetch");
        }
        _ => panic!("unknown child operation {op}"),
    }
    let elapsed = t.elapsed();
    let status = fs::read_to_string("/proc/self/status").expect("status");
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("VmHWM");
    println!(
        "  {op:<14} peak RSS {:>6.1} MiB  ({:.2} s)",
        hwm as f64 / 1024.0,
        elapsed.as_secs_f64()
    );
}
