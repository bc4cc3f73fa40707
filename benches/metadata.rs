//! Metadata speed on the local store: register, resolve, cold open and listing,
//! at 1,000 and at 100,000 versions, each against the raw operation it competes
//! with, interleaved in the same run.
//!
//! ```text
//! cargo bench --bench metadata                          # 1,000 and 100,000 versions
//! MODELREG_BENCH_VERSIONS=20000 cargo bench --bench metadata
//! MODELREG_BENCH_SIZES=100000,1000 cargo bench --bench metadata  # large one first
//! MODELREG_BENCH_REGISTER=300 MODELREG_BENCH_PAIRS=9 cargo bench --bench metadata
//! ```
//!
//! Rows and their baselines (everything durable: our stores fsync every write):
//! - register: one version with a small in-memory artifact (unique bytes, so its
//!   blob and manifest are new) vs the raw durable create-if-absent append of a
//!   record of the same size as its event (temp file → fsync → hard link → unlink
//!   → directory fsync). One pair per registration, `MODELREG_BENCH_REGISTER`
//!   (default 1000) of them, so the window crosses one checkpoint. `register=`
//!   is the same with an artifact already stored (a quarter as many): only the
//!   event is written, so it measures the metadata path alone.
//! - new user: what a new user tries first, in a registry of its own (created
//!   empty in the scratch directory): `MODELREG_BENCH_NEWUSER` (default 1000)
//!   versions, each from a new 1 KiB file on disk (`ArtifactSource::file`,
//!   written before the timing starts), with 10 hyperparameters and 10
//!   metrics, vs the raw durable append of a record of the size of its event.
//!   Row group `newuser`; it runs once, before the sizes. It also prints what
//!   an empty file's create costs in that file system before and after the
//!   series (see `create_cost`: on this VM it depends on what was deleted in
//!   the last minutes, and a registration makes four creates to the append's
//!   one).
//! - resolve: `resolve("name@production")` and `resolve("name@champion")` on a
//!   warm registry vs a `HashMap` lookup and clone of the same record; batches
//!   of 1000 calls per sample. `, window` rows use a registry built with
//!   `max_staleness(1 s)`, whose warm queries read no store.
//! - route: `route(name, key)` with a 90/10 split over `@champion` and
//!   `@latest`, 1000 distinct keys per sample, vs `ModelState::route` on a state
//!   held in hand (the pure function it wraps).
//! - cold open: a new `Registry` over the directory, first `resolve` (latest
//!   checkpoint + the tail of the log) vs reading the checkpoint file's bytes
//!   (for a segmented one, the head and the segment files it names).
//!   `cold open, new process` is the same in a child process that has done
//!   nothing else (an inference server starting: no warm heap, no thread pool
//!   yet), timed inside the child from before `open_local` to the resolved
//!   version, against a child that reads the checkpoint file.
//! - list / filter: `list_versions` of every version, and of those with a tag
//!   value (one in ten), vs a clone / filter-and-clone of a `Vec` of the same
//!   shared records (`Arc<VersionRecord>`, what `list_versions` returns).
//!
//! - history: the newest 100 events (`history_page(name, &filter, None, 100)`,
//!   what the CLI's `history` and the server's `/history` call) with no filter
//!   and with a kind filter, and `history` with a `since` that 100 events pass,
//!   vs reading the newest 100 record files raw (`fs::read` of each by name, no
//!   decoding), one call per sample.
//!
//! - contend: 8 tasks of one registry move aliases of the model at once (25
//!   moves each per sample), the time per move, vs the raw durable append.
//!   This process's writers of one model take turns at the log rather than
//!   hold a lock across the append; the row shows what their racing costs.
//!
//! - ckptbytes: the bytes the checkpoints write per 1,000 events (files new or
//!   rewritten in the log's `checkpoints` and `parts` directories) against the
//!   bytes of those events (new record files), for 1,000 registrations and for
//!   900 registrations with 100 metric additions to old versions scattered
//!   over the model, `MODELREG_BENCH_WINDOWS` (default 30) windows in a row
//!   (each scattering over other versions), each window's figure and their
//!   mean.
//!
//! `MODELREG_BENCH_ROWS=history,resolve` runs only the named groups (`cold`,
//! `resolve`, `route`, `list`, `history`, `ckptbytes`, `register`, `contend`,
//! `newuser`);
//! all by default.
//!
//! Fixtures (built by `support/fixture.rs`: a model with N versions: a metric spec, rich records of ~1 KiB, one
//! version in production, an alias, a checkpoint 5 events before the end and
//! older ones as a registry keeps them, one per window of the log) are
//! built once and cached under `<target>/bench-fixtures/` (100,000 versions take
//! about a minute: most events are appended through the public `MetadataStore`
//! trait, 8 at a time, the last ones through `Registry`). Each run works on a
//! hard-linked copy, which is safe because record, blob and checkpoint files are
//! never modified in place. The page cache is warm.

mod support;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelreg::{ArtifactSource, HistoryFilter, Registry, VersionFilter};
use support::fixture::{MODEL, actor, fixture, fixtures_root, link_tree, source};
use support::{Series, benchmarking, env_num, new_version};

/// The raw durable create-if-absent append: temp file → fsync → hard link →
/// unlink temp → fsync directory.
fn raw_append(dir: &Path, seq: u64, bytes: &[u8]) -> Duration {
    let t = Instant::now();
    let tmp = dir.join(format!(".tmp-{seq}"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .expect("temp");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    fs::hard_link(&tmp, dir.join(format!("{seq:020}.rec"))).expect("link");
    fs::remove_file(&tmp).expect("unlink");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("dir fsync");
    t.elapsed()
}

/// The median time to create (and close) an empty file in `dir`, over `n`
/// files left there (named by `tag`). The `new user` row prints it: on ext4
/// without a journal (this VM's disk) a create scans past every inode of its
/// group deleted in the last one to five minutes, so a create costs ~7 µs
/// after a quiet spell and ~270 µs after 3,000 files were deleted; a raw
/// append makes one create, a registration of a new file four.
fn create_cost(dir: &Path, tag: &str, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            File::create_new(dir.join(format!(".create-{tag}-{i}"))).expect("create");
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// The size of the newest record file of the fixture's log.
fn last_record_size(root: &Path) -> usize {
    let records = root.join(format!("metadata/logs/v1/{MODEL}/records"));
    let last = fs::read_dir(&records)
        .expect("records")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a record");
    fs::metadata(last).expect("stat").len() as usize
}

/// The newest checkpoint file of the fixture's log.
fn latest_checkpoint_file(root: &Path) -> PathBuf {
    let dir = root.join(format!("metadata/logs/v1/{MODEL}/checkpoints"));
    fs::read_dir(&dir)
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint")
}

/// A registry over `root` whose queries answer from memory for a second after
/// the state was last found current ([`RegistryBuilder::max_staleness`]).
///
/// [`RegistryBuilder::max_staleness`]: modelreg::RegistryBuilder::max_staleness
async fn windowed_registry(root: &Path) -> Registry {
    let (metadata, artifacts) = (root.join("metadata"), root.join("artifacts"));
    Registry::builder()
        .metadata(Arc::new(
            modelreg::store::LocalMetadataStore::open(metadata).expect("metadata"),
        ))
        .artifacts(Arc::new(
            modelreg::store::LocalArtifactStore::open(artifacts).expect("artifacts"),
        ))
        .max_staleness(Duration::from_secs(1))
        .build()
        .expect("registry")
}

/// Whether the row group `group` is to run (`MODELREG_BENCH_ROWS`, default all).
fn wants(group: &str) -> bool {
    std::env::var("MODELREG_BENCH_ROWS")
        .map(|rows| rows.split(',').any(|r| r.trim() == group))
        .unwrap_or(true)
}

/// Times `iters` calls of `f` and returns the time per call.
fn per_call(iters: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

fn run_size(rt: &tokio::runtime::Runtime, n: u64, scratch: &Path) {
    let pairs = env_num("MODELREG_BENCH_PAIRS", 7);
    let registrations = env_num("MODELREG_BENCH_REGISTER", 1000);
    let fixture = fixture(rt, n);
    let root = scratch.join(format!("reg-{n}"));
    let t = Instant::now();
    link_tree(&fixture, &root);
    let linked = t.elapsed();
    // The copy changed the link count of every file: 100,000 dirty inodes that
    // the kernel would write back during the first rows, slowing every fsync
    // (ours and the baselines') for reasons that are the bench's, not the
    // registry's. Write them back first.
    let t = Instant::now();
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    println!(
        "\n== {n} versions (hard-linked copy in {linked:.1?}, then `sync` {}in {:.1?}) ==",
        if synced { "" } else { "FAILED " },
        t.elapsed()
    );

    // Cold open, first: the copy has not been opened by this process yet.
    let ckpt = latest_checkpoint_file(&root);
    println!(
        "checkpoint {} ({:.1} MiB)",
        ckpt.file_name().and_then(|s| s.to_str()).unwrap_or("?"),
        fs::metadata(&ckpt).expect("stat").len() as f64 / (1 << 20) as f64
    );
    let files = checkpoint_files(&root);
    println!(
        "(cold open baseline: reads the latest checkpoint and the {} segments it names, {:.1} MiB in all)",
        files.len() - 1,
        files
            .iter()
            .map(|f| fs::metadata(f).expect("stat").len())
            .sum::<u64>() as f64
            / (1 << 20) as f64
    );
    let raw_read = || {
        let t = Instant::now();
        for f in &files {
            std::hint::black_box(fs::read(f).expect("read checkpoint"));
        }
        t.elapsed()
    };
    let mut cold = Series::new("cold open");
    for _ in 0..if wants("cold") { pairs } else { 0 } {
        let before = raw_read();
        let t = Instant::now();
        let reg = rt.block_on(Registry::open_local(&root)).expect("open");
        let v = rt
            .block_on(reg.resolve(format!("{MODEL}@latest")))
            .expect("resolve");
        let ours = t.elapsed();
        assert_eq!(v.number.get(), n);
        let after = raw_read();
        cold.pair(before, ours, after);
    }
    if wants("cold") {
        cold.summary();
    }

    let mut fresh = Series::new("cold open, new process");
    for _ in 0..if wants("cold") { pairs } else { 0 } {
        let before = in_child(CHILD_READ, &root);
        let ours = in_child(CHILD_OPEN, &root);
        let after = in_child(CHILD_READ, &root);
        fresh.pair(before, ours, after);
    }
    if wants("cold") {
        fresh.summary();
        // What the open cost the child besides time: page faults and peak
        // resident memory (from /proc/self), one run each.
        for (what, var) in [("open", CHILD_OPEN), ("read", CHILD_READ)] {
            let out = std::process::Command::new(std::env::current_exe().expect("own path"))
                .env(var, &root)
                .env(CHILD_RUSAGE, "1")
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            println!(
                "(cold open, new process, {what}: {})",
                text.lines().nth(1).unwrap_or("?")
            );
        }
    }

    // The same run, the same state: reading and decoding the segmented
    // checkpoint (head, 98 segment files, digests, decode) against decoding
    // a whole format 3 checkpoint of it held in memory (no read at all).
    if wants("cold") {
        let meta = modelreg::store::LocalMetadataStore::open(root.join("metadata")).expect("meta");
        let name = modelreg::ModelName::new(MODEL).expect("name");
        let cp = rt
            .block_on(modelreg::store::MetadataStore::latest_checkpoint(
                &meta, MODEL,
            ))
            .expect("read")
            .expect("a checkpoint");
        let read = || {
            let t = Instant::now();
            let s = rt
                .block_on(modelreg::format::read_checkpoint(&meta, &name, cp.clone()))
                .expect("read checkpoint");
            (t.elapsed(), s)
        };
        let (_, state) = read();
        let whole = modelreg::format::encode_checkpoint(&state);
        let seq = state.seq();
        drop(state);
        let decode_whole = || {
            let t = Instant::now();
            std::hint::black_box(
                modelreg::format::decode_checkpoint(&name, seq, &whole).expect("decode"),
            );
            t.elapsed()
        };
        let mut series = Series::new("checkpoint read, segmented vs whole format 3 decode");
        for _ in 0..pairs {
            let before = decode_whole();
            let (ours, s) = read();
            drop(s);
            let after = decode_whole();
            series.pair(before, ours, after);
        }
        series.summary();
    }

    let mut reg = rt.block_on(Registry::open_local(&root)).expect("open");
    let all = rt
        .block_on(reg.list_versions(MODEL, &VersionFilter::new()))
        .expect("list");
    assert_eq!(all.len() as u64, n);

    // Resolve, warm.
    let prod = rt
        .block_on(reg.resolve(format!("{MODEL}@production")))
        .expect("resolve production");
    assert_eq!(prod.number.get(), n / 2);
    let map: HashMap<String, modelreg::VersionRecord> = [
        ("production".to_owned(), prod.clone()),
        ("champion".to_owned(), prod.clone()),
        (
            "latest".to_owned(),
            modelreg::VersionRecord::clone(&all[all.len() - 1]),
        ),
    ]
    .into();
    let batch = 1000;
    let raw_lookup = |key: &'static str| {
        per_call(batch, || {
            std::hint::black_box(map.get(std::hint::black_box(key)).cloned());
        })
    };
    // The same directory with queries answered from memory within a window
    // (`max_staleness`), as an inference server resolving per request would.
    let windowed = rt.block_on(windowed_registry(&root));
    // A split for the route rows (one more event on this run's copy).
    let split = modelreg::TrafficSplit::new([("@champion", 90), ("@latest", 10)]).expect("split");
    rt.block_on(
        reg.acting_as(actor())
            .set_traffic_split(MODEL, split, "bench"),
    )
    .expect("split");
    // Warm: the windowed registry's first query is its cold open.
    rt.block_on(windowed.resolve(format!("{MODEL}@latest")))
        .expect("warm");
    for (row, registry, alias) in [
        ("resolve", &reg, "production"),
        ("resolve @alias", &reg, "champion"),
        ("resolve @alias, window", &windowed, "champion"),
    ] {
        if !wants("resolve") {
            break;
        }
        let reference = format!("{MODEL}@{alias}");
        let mut series = Series::new(row);
        for _ in 0..pairs.max(9) {
            let before = raw_lookup(alias);
            let ours = rt.block_on(async {
                let t = Instant::now();
                for _ in 0..batch {
                    std::hint::black_box(
                        registry.resolve(reference.as_str()).await.expect("resolve"),
                    );
                }
                t.elapsed() / batch
            });
            let after = raw_lookup(alias);
            series.pair(before, ours, after);
        }
        series.summary();
    }

    // Route: against `ModelState::route` on a state held in hand (the pure
    // function `route` wraps: hash the key, pick the route, resolve its target).
    let held = rt.block_on(reg.model(MODEL)).expect("model");
    let keys: Vec<String> = (0..batch).map(|i| format!("user-{i}")).collect();
    let raw_route = || {
        let t = Instant::now();
        for key in &keys {
            std::hint::black_box(held.route(key.as_bytes()).expect("route"));
        }
        t.elapsed() / batch
    };
    for (row, registry) in [("route", &reg), ("route, window", &windowed)] {
        if !wants("route") {
            break;
        }
        let mut series = Series::new(row);
        for _ in 0..pairs.max(9) {
            let before = raw_route();
            let ours = rt.block_on(async {
                let t = Instant::now();
                for key in &keys {
                    std::hint::black_box(registry.route(MODEL, key).await.expect("route"));
                }
                t.elapsed() / batch
            });
            let after = raw_route();
            series.pair(before, ours, after);
        }
        series.summary();
    }

    // List and filter.
    let filter = VersionFilter::new().tag_value("cohort", "c3");
    let mut list = Series::new("list all");
    let mut filtered = Series::new("filter 1/10");
    let raw_clone = || {
        let t = Instant::now();
        std::hint::black_box(all.clone());
        t.elapsed()
    };
    let cohort = modelreg::TagKey::new("cohort").expect("tag key");
    let raw_filter = || {
        let t = Instant::now();
        std::hint::black_box(
            all.iter()
                .filter(|v| v.tags.get(&cohort).is_some_and(|c| c == "c3"))
                .cloned()
                .collect::<Vec<_>>(),
        );
        t.elapsed()
    };
    for _ in 0..if wants("list") { pairs } else { 0 } {
        let before = raw_clone();
        let t = Instant::now();
        let got = rt
            .block_on(reg.list_versions(MODEL, &VersionFilter::new()))
            .expect("list");
        let ours = t.elapsed();
        assert_eq!(got.len() as u64, n);
        drop(got);
        let after = raw_clone();
        list.pair(before, ours, after);

        let before = raw_filter();
        let t = Instant::now();
        let got = rt
            .block_on(reg.list_versions(MODEL, &filter))
            .expect("filter");
        let ours = t.elapsed();
        assert!(!got.is_empty());
        drop(got);
        let after = raw_filter();
        filtered.pair(before, ours, after);
    }
    if wants("list") {
        list.summary();
        filtered.summary();
    }

    if wants("history") {
        history_rows(rt, &reg, &root, pairs);
    }
    if wants("ckptbytes") {
        drop(reg);
        checkpoint_bytes_rows(rt, &root, n);
        reg = rt.block_on(Registry::open_local(&root)).expect("open");
    }
    if !wants("register") && !wants("contend") {
        drop(reg);
        fs::remove_dir_all(&root).ok();
        return;
    }

    // Register: one raw append before and after each registration.
    let record = vec![b'x'; last_record_size(&root)];
    let raw_dir = scratch.join(format!("raw-{n}"));
    fs::create_dir_all(&raw_dir).expect("raw dir");
    let trainer = reg.acting_as(actor());
    let mut register = Series::new("register");
    let mut seq = 0;
    let mut slowest = (Duration::ZERO, 0);
    let registrations = if wants("register") { registrations } else { 0 };
    for i in 0..registrations {
        seq += 1;
        let before = raw_append(&raw_dir, seq, &record);
        let t = Instant::now();
        let v = rt
            .block_on(trainer.register(MODEL, source(n + 1 + i), new_version(n + 1 + i)))
            .expect("register");
        let ours = t.elapsed();
        if ours > slowest.0 {
            slowest = (ours, v.number.get());
        }
        seq += 1;
        let after = raw_append(&raw_dir, seq, &record);
        register.pair(before, ours, after);
    }
    if registrations > 0 {
        println!(
            "(register: record {} bytes; slowest was version {} at {:.2?}; a checkpoint is written when the log reaches a multiple of 1000 events)",
            record.len(),
            slowest.1,
            slowest.0
        );
        register.summary();
    }

    // The same, with an artifact the store already has: only the event is written,
    // so this is the metadata path alone.
    let mut dedup = Series::new("register=");
    let same = 0;
    for i in 0..registrations / 4 {
        seq += 1;
        let before = raw_append(&raw_dir, seq, &record);
        let t = Instant::now();
        rt.block_on(trainer.register(MODEL, source(same), new_version(n + i)))
            .expect("register");
        let ours = t.elapsed();
        seq += 1;
        let after = raw_append(&raw_dir, seq, &record);
        dedup.pair(before, ours, after);
    }
    if registrations > 0 {
        println!(
            "(register=: the artifact's blob and manifest are stored already: one durable write, the event)"
        );
        dedup.summary();
    }
    if wants("contend") {
        contend_rows(rt, &reg, &raw_dir, &record, &mut seq, pairs);
    }
    drop(reg);
    fs::remove_dir_all(&raw_dir).ok();
    fs::remove_dir_all(&root).ok();
}

/// The new-user row: a registry of its own, versions from new 1 KiB files
/// with 10 hyperparameters and 10 metrics each, one raw append before and
/// after each registration.
fn new_user_rows(rt: &tokio::runtime::Runtime, scratch: &Path) {
    let count = env_num("MODELREG_BENCH_NEWUSER", 1000);
    let root = scratch.join("new-user");
    let files = scratch.join("new-user-files");
    let raw_dir = scratch.join("new-user-raw");
    fs::create_dir_all(&files).expect("files dir");
    fs::create_dir_all(&raw_dir).expect("raw dir");
    let created_before = create_cost(&raw_dir, "before", 100);
    let reg = rt.block_on(Registry::open_local(&root)).expect("open");
    let me = reg.acting_as(actor());
    rt.block_on(me.create_model("churn", modelreg::CreateModel::new()))
        .expect("create model");
    let version = |i: u64| {
        let mut v = modelreg::NewVersion::new();
        for p in 0..10u64 {
            v = v.param(format!("param_{p}"), (i * 10 + p) as f64 / 7.0);
        }
        for m in 0..10u64 {
            v = v.metric(&format!("metric_{m}"), (i + m) as f64 / 1000.0);
        }
        v
    };
    // One registration outside the series, for the record size of the baseline.
    let first = files.join("model-0.bin");
    fs::write(&first, [0u8; 1024]).expect("file");
    rt.block_on(me.register("churn", ArtifactSource::file(&first), version(0)))
        .expect("register");
    let records = root.join("metadata/logs/v1/churn/records");
    let record = vec![
        b'x';
        fs::read_dir(&records)
            .expect("records")
            .filter_map(|e| e.ok().and_then(|e| e.metadata().ok()).map(|m| m.len()))
            .max()
            .expect("a record") as usize
    ];
    let mut series = Series::new("new user");
    let mut seq = 0;
    for i in 1..=count {
        let file = files.join(format!("model-{i}.bin"));
        let mut bytes = [0u8; 1024];
        for (j, b) in bytes.iter_mut().enumerate() {
            *b = (j as u64 ^ i.wrapping_mul(0x9E37_79B9)) as u8;
        }
        bytes[..8].copy_from_slice(&i.to_le_bytes());
        fs::write(&file, bytes).expect("file");
        seq += 1;
        let before = raw_append(&raw_dir, seq, &record);
        let t = Instant::now();
        rt.block_on(me.register("churn", ArtifactSource::file(&file), version(i)))
            .expect("register");
        let ours = t.elapsed();
        seq += 1;
        let after = raw_append(&raw_dir, seq, &record);
        series.pair(before, ours, after);
    }
    println!(
        "(new user: {count} versions of a new 1 KiB file, 10 hyperparameters, 10 metrics; record {} bytes; \
         an empty file's create here took {:.1?} before the series and {:.1?} after, median of 100)",
        record.len(),
        created_before,
        create_cost(&raw_dir, "after", 100),
    );
    series.summary();
    drop(reg);
    for dir in [&root, &files, &raw_dir] {
        fs::remove_dir_all(dir).ok();
    }
}

/// The contend row: 8 tasks moving aliases at once, per move, against the raw
/// durable append.
fn contend_rows(
    rt: &tokio::runtime::Runtime,
    reg: &Registry,
    raw_dir: &Path,
    record: &[u8],
    seq: &mut u64,
    pairs: u64,
) {
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let mut contend = Series::new("contend x8");
    for round in 0..pairs {
        *seq += 1;
        let before = raw_append(raw_dir, *seq, record);
        let t = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let mover = reg.acting_as(actor());
                    tokio::spawn(async move {
                        for i in 0..EACH {
                            mover
                                .set_alias(
                                    format!("{MODEL}/{}", 1 + (round + i) % 50),
                                    format!("task-{task}").as_str(),
                                    modelreg::SetAlias::new(),
                                )
                                .await
                                .expect("set alias");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        });
        let ours = t.elapsed() / (TASKS * EACH) as u32;
        *seq += 1;
        let after = raw_append(raw_dir, *seq, record);
        contend.pair(before, ours, after);
    }
    println!("(contend x8: {TASKS} tasks x {EACH} alias moves per sample, time per move)");
    contend.summary();
}

/// The history rows: the newest 100 events, against reading their record files.
fn history_rows(rt: &tokio::runtime::Runtime, reg: &Registry, root: &Path, pairs: u64) {
    let newest = rt.block_on(reg.model(MODEL)).expect("model").seq();
    let records = root.join(format!("metadata/logs/v1/{MODEL}/records"));
    let last: Vec<PathBuf> = (newest - 99..=newest)
        .rev()
        .map(|seq| records.join(format!("{seq:020}.rec")))
        .collect();
    let raw_read = || {
        let t = Instant::now();
        for path in &last {
            std::hint::black_box(fs::read(path).expect("read record"));
        }
        t.elapsed()
    };
    let oldest_shown = rt
        .block_on(reg.history_page(MODEL, &HistoryFilter::new(), None, 100))
        .expect("history")
        .items
        .last()
        .expect("an event")
        .time;
    let rows = [
        ("history last 100", HistoryFilter::new(), true),
        (
            "history last 100, kind",
            HistoryFilter::new().kind("version_registered"),
            true,
        ),
        // `history` (no limit) with a `since` the newest 100 events pass: it
        // stops at the first older event instead of reading the whole log.
        (
            "history since",
            HistoryFilter::new().since(oldest_shown),
            false,
        ),
    ];
    // What `history` cost when it read the whole log forward (0.2 before the
    // tail read): `events`, one sample.
    let t = Instant::now();
    let all = rt.block_on(reg.events(MODEL)).expect("events");
    println!(
        "(whole log read forward, as `history` did before it read from the tail: {} events in {:.1?})",
        all.len(),
        t.elapsed()
    );
    drop(all);
    for (row, filter, paged) in rows {
        let mut series = Series::new(row);
        for _ in 0..pairs.max(9) {
            let before = raw_read();
            let t = Instant::now();
            let got = if paged {
                rt.block_on(reg.history_page(MODEL, &filter, None, 100))
                    .expect("history")
                    .items
            } else {
                rt.block_on(reg.history(MODEL, &filter)).expect("history")
            };
            let ours = t.elapsed();
            assert!(got.len() >= 95, "{row}: {}", got.len());
            std::hint::black_box(got);
            let after = raw_read();
            series.pair(before, ours, after);
        }
        series.summary();
    }
}

/// Child modes: the parent sets one of these to a path and the child prints
/// how long its one operation took, in nanoseconds, and exits.
const CHILD_OPEN: &str = "MODELREG_BENCH_CHILD_OPEN";
const CHILD_READ: &str = "MODELREG_BENCH_CHILD_READ";
/// Set beside a child mode: the child also prints its page faults and peak
/// resident set on a second line.
const CHILD_RUSAGE: &str = "MODELREG_BENCH_CHILD_RUSAGE";

/// The child's minor and major page faults (/proc/self/stat fields 10 and 12)
/// and peak resident set (VmHWM of /proc/self/status), as a line.
fn own_usage() -> String {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or("?");
    let hwm = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map_or("?".to_owned(), |l| l["VmHWM:".len()..].trim().to_owned());
    format!(
        "minor faults {}, major faults {}, peak RSS {hwm}",
        field(10),
        field(12)
    )
}

/// The files a cold open reads at least: the latest checkpoint and, for a
/// segmented one, the segments it names.
fn checkpoint_files(root: &Path) -> Vec<PathBuf> {
    let head = latest_checkpoint_file(root);
    let bytes = fs::read(&head).expect("read checkpoint");
    let text = String::from_utf8_lossy(&bytes);
    let parts = root.join(format!("metadata/logs/v1/{MODEL}/parts"));
    let mut files = vec![head];
    if let Ok(dir) = fs::read_dir(&parts) {
        let mut named: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split_once('-'))
                    .is_some_and(|(_, hex)| text.contains(hex))
            })
            .collect();
        named.sort();
        files.extend(named);
    }
    files
}

/// Bytes in the files under `dirs` (relative to the model's log directory),
/// by path.
fn log_files(root: &Path, dirs: &[&str]) -> HashMap<PathBuf, u64> {
    let log = root.join(format!("metadata/logs/v1/{MODEL}"));
    let mut out = HashMap::new();
    for d in dirs {
        if let Ok(dir) = fs::read_dir(log.join(d)) {
            for e in dir.flatten() {
                let len = e.metadata().map_or(0, |m| m.len());
                out.insert(e.path(), len);
            }
        }
    }
    out
}

/// The `ckptbytes` rows: the bytes checkpoints write per 1,000 events against
/// the bytes of those events, for 1,000 registrations and for 1,000 events of
/// which one in ten adds a metric to an old version (scattered over the
/// model). Files new or rewritten in the log's `records`, `checkpoints` and
/// `parts` directories are counted once the background checkpoint is written.
fn checkpoint_bytes_rows(rt: &tokio::runtime::Runtime, root: &Path, n: u64) {
    let reg = rt.block_on(Registry::open_local(root)).expect("open");
    let trainer = reg.acting_as(actor());
    let mut next = rt
        .block_on(reg.model(MODEL))
        .expect("model")
        .versions()
        .len() as u64
        + 1;
    let windows = env_num("MODELREG_BENCH_WINDOWS", 30);
    let mut runs = vec![("1,000 registrations", false, 0)];
    // Scattered changes go to patches whose cost grows over windows (level 1
    // is folded into level 2 now and then): one window says little, so
    // several in a row, each scattering over other versions.
    runs.extend((0..windows).map(|w| ("900 registrations + 100 old-version metrics", true, w)));
    let mut scattered_rows: Vec<(u64, u64)> = Vec::new();
    for (row, scattered, window) in runs {
        let seq = rt.block_on(reg.model(MODEL)).expect("model").seq();
        // Events up to the next multiple of 1,000 first: the window then
        // starts just after a checkpoint and ends with the next one.
        let start = seq.div_ceil(1000) * 1000;
        for _ in seq..start {
            rt.block_on(trainer.register(MODEL, source(next), new_version(next)))
                .expect("register");
            next += 1;
        }
        wait_for_checkpoint(rt, &reg, start);
        let before = log_files(root, &["records", "checkpoints", "parts"]);
        let t = Instant::now();
        for i in 0..1000u64 {
            if scattered && i % 10 == 9 {
                // Any old version but the one in production, whose metrics
                // are frozen.
                let old = 1 + (i * 7919 + window * 104_729) % (n - 1);
                let old = if old == n / 2 { old + 1 } else { old };
                let metrics = modelreg::Metrics::new()
                    .with("auc", 0.5 + i as f64 / 1e4)
                    .expect("metric");
                rt.block_on(trainer.add_metrics(format!("{MODEL}/{old}"), metrics))
                    .expect("metrics");
            } else {
                rt.block_on(trainer.register(MODEL, source(next), new_version(next)))
                    .expect("register");
                next += 1;
            }
        }
        let took = t.elapsed();
        wait_for_checkpoint(rt, &reg, start + 1000);
        let after = log_files(root, &["records", "checkpoints", "parts"]);
        let (mut events, mut checkpoints) = (0u64, 0u64);
        for (path, len) in &after {
            if before.get(path) == Some(len) {
                continue;
            }
            if path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|d| d == "records")
            {
                events += len;
            } else {
                checkpoints += len;
            }
        }
        println!(
            "{row:<48} {n} versions{}: events {:.1} KiB, checkpoint {:.1} KiB written, ratio {:.2} (target <= 2), {:.1?} for the 1,000 events",
            if scattered {
                format!(", window {}", window + 1)
            } else {
                String::new()
            },
            events as f64 / 1024.0,
            checkpoints as f64 / 1024.0,
            checkpoints as f64 / events.max(1) as f64,
            took
        );
        if scattered {
            scattered_rows.push((events, checkpoints));
        }
    }
    if !scattered_rows.is_empty() {
        let events: u64 = scattered_rows.iter().map(|r| r.0).sum();
        let written: u64 = scattered_rows.iter().map(|r| r.1).sum();
        let worst = scattered_rows.iter().map(|r| r.1).max().unwrap_or(0);
        let k = scattered_rows.len() as f64;
        println!(
            "{:<48} {n} versions, {} windows: events {:.1} KiB, checkpoint {:.1} KiB written per window (worst {:.1} KiB), ratio {:.2} (target <= 2)",
            "900 registrations + 100 old-version metrics",
            scattered_rows.len(),
            events as f64 / 1024.0 / k,
            written as f64 / 1024.0 / k,
            worst as f64 / 1024.0,
            written as f64 / events.max(1) as f64,
        );
    }
}

/// Waits until the latest checkpoint covers event `seq`.
fn wait_for_checkpoint(rt: &tokio::runtime::Runtime, reg: &Registry, seq: u64) {
    let meta = reg.metadata_store().clone();
    for _ in 0..6000 {
        let cp = rt
            .block_on(meta.latest_checkpoint(MODEL))
            .expect("read checkpoint");
        if cp.is_some_and(|c| c.seq >= seq) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no checkpoint at {seq}");
}

/// Runs this bench binary as a child in mode `var` on `path`; its timing.
fn in_child(var: &str, path: &Path) -> Duration {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(var, path)
        .output()
        .expect("run child");
    assert!(out.status.success(), "child failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    Duration::from_nanos(text.trim().parse().expect("child's nanoseconds"))
}

/// The child side of [`in_child`], if this process is one.
fn child() -> Option<()> {
    if let Some(root) = std::env::var_os(CHILD_OPEN) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let t = Instant::now();
        let reg = rt.block_on(Registry::open_local(&root)).expect("open");
        let v = rt
            .block_on(reg.resolve(format!("{MODEL}@latest")))
            .expect("resolve");
        let took = t.elapsed();
        std::hint::black_box(v);
        println!("{}", took.as_nanos());
        if std::env::var_os(CHILD_RUSAGE).is_some() {
            println!("{}", own_usage());
        }
        // Exiting frees the state; dropping it first would only cost time.
        std::process::exit(0);
    }
    let root = PathBuf::from(std::env::var_os(CHILD_READ)?);
    let files = checkpoint_files(&root);
    let t = Instant::now();
    for f in &files {
        std::hint::black_box(fs::read(f).expect("read checkpoint"));
    }
    println!("{}", t.elapsed().as_nanos());
    if std::env::var_os(CHILD_RUSAGE).is_some() {
        println!("{}", own_usage());
    }
    Some(())
}

fn main() {
    if child().is_some() {
        return;
    }
    if !benchmarking() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let big = env_num("MODELREG_BENCH_VERSIONS", 100_000);
    // The sizes to run, in order (default: 1,000 then the large one). The
    // second size's rows meet a disk that has just absorbed the first's
    // thousands of fsyncs; this VM's disk slows down after such bursts, so
    // reversing the order shows which differences are the disk's.
    let sizes: Vec<u64> = match std::env::var("MODELREG_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("MODELREG_BENCH_SIZES: comma-separated numbers")
            })
            .collect(),
        Err(_) => vec![1000, big],
    };
    let root = fixtures_root();
    fs::create_dir_all(&root).expect("fixtures dir");
    // Same filesystem as the fixtures, for the hard-linked copies.
    let scratch = tempfile::tempdir_in(&root).expect("scratch");
    println!("page cache warm, fsync included, 2 pairs of baselines around each sample");
    if wants("newuser") {
        new_user_rows(&rt, scratch.path());
    }
    let groups = [
        "cold",
        "resolve",
        "route",
        "list",
        "history",
        "ckptbytes",
        "register",
        "contend",
    ];
    if !groups.iter().any(|g| wants(g)) {
        return;
    }
    for n in sizes {
        run_size(&rt, n, scratch.path());
    }
}
