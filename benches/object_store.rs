//! Register and fetch of one large file through an S3 server, each measured against
//! the raw object_store operation it wraps, interleaved in the same run.
//!
//! ```text
//! # with an S3 server configured as for the tests (bash .ci/run sets these):
//! MODELREG_TEST_S3_URL=s3://bucket AWS_ENDPOINT=http://127.0.0.1:5000 AWS_ALLOW_HTTP=true \
//!   AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!   cargo bench --features aws --bench object_store          # 256 MiB, 5 pairs
//! ```
//!
//! `MODELREG_BENCH_S3_URL` overrides the URL; `MODELREG_BENCH_MIB` and
//! `MODELREG_BENCH_PAIRS` the size and the number of pairs. Without a URL the bench
//! says so and does nothing.
//!
//! Baselines, same bytes, same server, same client configuration:
//! - register vs a raw multipart upload of the file with object_store's
//!   `WriteMultipart`: the same part size (`part_size`, 5 MiB here) and the same
//!   number of parts in flight, reading the file in parts on the blocking pool.
//!   Ours also hashes the file before (to look it up) and while uploading, HEADs,
//!   and writes the manifest and the event.
//! - fetch vs a raw `get` streamed into a new file, fsynced. Ours also reads the
//!   manifest, syncs the directory, re-hashes the file and renames it into place.
//!
//! The page cache is warm for the source. Each pair runs baseline, ours, baseline;
//! the report gives the median, min and max of ours / mean(baselines).
//!
//! Rows (`MODELREG_BENCH_ROWS`, comma-separated; all when unset): `requests`,
//! `packs`, `transfer`.
//!
//! `requests` — requests per operation, first: every request the registry
//! sends goes through `FaultyStore` (`tests/common/faulty_store.rs`, counting
//! only: requests by kind, payload bytes sent and received), and the bench
//! prints them per operation — register a small version (one 1 KiB in-memory
//! file, a ~1 KiB record), register bytes already stored, resolve on a warm
//! registry, the cold open of the model (resolve on a new `Registry`), an old
//! version on a new `Registry` (its checkpoint segment), one stage transition,
//! a promotion to production (three events), and the newest 100 events
//! (`history_page`, limit 100), warm and cold — on a model of
//! `MODELREG_BENCH_HISTORY_VERSIONS` versions (default 2,000; most appended raw
//! through `MetadataStore::append`, then a registration that writes the
//! checkpoint, format 7 in segments), checkpointing every 100 events as
//! registries opened by URL do. `MODELREG_BENCH_VERBOSE=1` also prints each
//! request.
//!
//! `packs` — issue 17 over S3: a packed artifact store
//! (`ObjectArtifactOptions::packed`) on the server; a fresh registry registers
//! the LoRA-on-q/v scenario of `benches/support/dedup_scenarios.rs` (base of
//! `MODELREG_BENCH_PACKS_MIB` MiB, default 256, cached under
//! `<target>/bench-fixtures/dedup-<mib>/`), then a second registry (another
//! process's view: it loads the chunk index from the bucket) registers variant
//! 1 through the counting wrapper. It prints the bytes and requests sent for
//! the variant against its changed bytes (header + changed tensors; target ≤
//! 1.2×), and times the variant's registration between two raw `put`s of that
//! many bytes (`MODELREG_BENCH_PACKS_PAIRS` pairs, default 3, each in a fresh
//! prefix).
//!
//! `transfer` — the large-file register and fetch above.

#[path = "../tests/common/faulty_store.rs"]
#[allow(dead_code)]
mod faulty_store;
mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use modelreg::store::object::{UPLOAD_CONCURRENCY, object_store_from_url, part_size, stores_in};
use modelreg::store::{ObjectArtifactOptions, PackOptions};
use modelreg::{Actor, ArtifactSource, CreateModel, FetchOptions, NewVersion, Registry};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use support::dedup_scenarios::{self, Kind};
use support::fixture::fixtures_root;
use support::{Series, benchmarking, env_num, scratch_source};

/// Uploads `src` to `key` as object_store's own multipart writer would.
async fn raw_put(store: &Arc<dyn ObjectStore>, key: &Path, src: &FsPath) -> Duration {
    let t = Instant::now();
    let size = std::fs::metadata(src).expect("stat").len();
    let part = part_size(size);
    let upload = store.put_multipart(key).await.expect("start upload");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part as usize);
    let mut file = Some(File::open(src).expect("open source"));
    loop {
        let f = file.take().expect("file");
        let (f, buf) = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(part as usize);
            (&f).take(part).read_to_end(&mut buf).expect("read");
            (f, buf)
        })
        .await
        .expect("join");
        if buf.is_empty() {
            break;
        }
        writer
            .wait_for_capacity(UPLOAD_CONCURRENCY)
            .await
            .expect("part");
        writer.put(buf.into());
        file = Some(f);
    }
    writer.finish().await.expect("complete upload");
    t.elapsed()
}

/// Downloads `key` into the new file `dest` and syncs it.
async fn raw_get(store: &Arc<dyn ObjectStore>, key: &Path, dest: &FsPath) -> Duration {
    let t = Instant::now();
    let mut stream = store.get(key).await.expect("get").into_stream();
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(16);
    let dest = dest.to_owned();
    let writer = tokio::task::spawn_blocking(move || {
        let mut f = File::create_new(&dest).expect("create");
        for chunk in rx {
            f.write_all(&chunk).expect("write");
        }
        f.sync_all().expect("fsync");
    });
    while let Some(chunk) = stream.next().await {
        tx.send(chunk.expect("chunk")).expect("writer alive");
    }
    drop(tx);
    writer.await.expect("join");
    t.elapsed()
}

/// Counts of the requests logged since `faults` was last cleared, by kind, and
/// the payload bytes sent and received.
fn counted(faults: &faulty_store::Faults) -> String {
    let log = faults.log();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for r in &log {
        match kinds.iter_mut().find(|(k, _)| *k == r.op) {
            Some((_, n)) => *n += 1,
            None => kinds.push((r.op, 1)),
        }
    }
    kinds.sort();
    let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let (sent, received) = faults.bytes();
    format!(
        "{:>4}  {:<44} {sent:>9} {received:>9}",
        log.len(),
        format!("({})", by_kind.join(", "))
    )
}

/// Runs `op` and prints how many requests it made, and how long it took.
fn count<T>(
    rt: &tokio::runtime::Runtime,
    faults: &faulty_store::Faults,
    name: &str,
    op: impl std::future::Future<Output = T>,
) -> T {
    faults.clear_log();
    let t = Instant::now();
    let out = rt.block_on(op);
    let took = t.elapsed();
    println!("{name:<38} {}  {took:.1?}", counted(faults));
    if std::env::var_os("MODELREG_BENCH_VERBOSE").is_some() {
        for r in faults.log() {
            println!("    {} {}", r.op, r.path);
        }
    }
    out
}

/// The request counts per operation (see the module docs).
fn request_counts(rt: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>, prefix: &Path) {
    use modelreg::{Event, EventKind, HistoryFilter, Stage, VersionNumber};
    let n = env_num("MODELREG_BENCH_HISTORY_VERSIONS", 2_000).max(200);
    let faults = faulty_store::Faults::new();
    let counting = faulty_store::FaultyStore::wrap(Arc::clone(store), Arc::clone(&faults));
    let root = prefix.clone().join("requests");
    let open = || {
        let (metadata, artifacts) = stores_in(Arc::clone(&counting), &root);
        Registry::builder()
            .metadata(Arc::new(metadata))
            .artifacts(Arc::new(artifacts))
            .checkpoint_every(100)
            .build()
            .expect("registry")
    };
    let reg = open();
    let me = reg.acting_as(Actor::new("bench").expect("actor"));
    let small = |i: u64| ArtifactSource::bytes("model.bin", format!("{i:01024}")).expect("source");
    count(
        rt,
        &faults,
        "create model",
        me.create_model("fraud", CreateModel::new()),
    )
    .expect("create");
    let template = rt
        .block_on(me.register("fraud", small(1), support::new_version(1)))
        .expect("register")
        .version;
    // Versions 2..=n-2 as raw events (seq = number + 1), then one registration
    // at seq n, which writes the checkpoint.
    let t = Instant::now();
    let model = template.model.clone();
    let metadata = reg.metadata_store().clone();
    rt.block_on(
        futures::stream::iter(2..=n - 2)
            .map(|number| {
                let mut v = template.clone();
                v.number = VersionNumber::new(number).expect("number");
                v.artifact = modelreg::Digest::of(&number.to_le_bytes());
                let event = Event {
                    seq: number + 1,
                    model: model.clone(),
                    time: template.created_at,
                    actor: Actor::new("bench").expect("actor"),
                    kind: EventKind::VersionRegistered {
                        version: Box::new(v),
                    },
                };
                let metadata = metadata.clone();
                async move {
                    metadata
                        .append("fraud", event.seq, event.to_bytes().into())
                        .await
                }
            })
            .buffer_unordered(16)
            .for_each(|r| async move { r.expect("raw append") }),
    );
    rt.block_on(me.register("fraud", small(n - 1), support::new_version(n - 1)))
        .expect("register");
    while rt
        .block_on(metadata.latest_checkpoint("fraud"))
        .expect("checkpoint")
        .is_none_or(|c| c.seq < n)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let head = rt
        .block_on(metadata.latest_checkpoint("fraud"))
        .expect("checkpoint")
        .expect("a checkpoint");
    let format = std::str::from_utf8(&head.bytes[..head.bytes.len().min(64)])
        .ok()
        .and_then(|s| s.strip_prefix("{\"format\":"))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or("?")
        .to_owned();
    println!(
        "(fixture: {} versions, checkpoint at event {} (format {format}, head {} bytes), \
         built in {:.1?})",
        n - 1,
        head.seq,
        head.bytes.len(),
        t.elapsed()
    );
    println!(
        "{:<38} {:>4}  {:<44} {:>9} {:>9}  time",
        "operation", "reqs", "(by kind)", "sent B", "recv B"
    );
    let mut version = n;
    for _ in 0..3 {
        count(
            rt,
            &faults,
            "register small version",
            me.register("fraud", small(version), support::new_version(version)),
        )
        .expect("register");
        version += 1;
    }
    count(
        rt,
        &faults,
        "register, bytes already stored",
        me.register("fraud", small(n), support::new_version(version)),
    )
    .expect("register");
    for _ in 0..2 {
        count(rt, &faults, "resolve, warm", reg.resolve("fraud@latest")).expect("resolve");
    }
    let cold = open();
    count(
        rt,
        &faults,
        "cold open: resolve on a new Registry",
        cold.resolve("fraud@latest"),
    )
    .expect("resolve");
    count(
        rt,
        &faults,
        "cold: resolve an old version",
        open().resolve("fraud/5"),
    )
    .expect("resolve");
    let v = format!("fraud/{}", n / 2);
    count(
        rt,
        &faults,
        "transition (one event)",
        me.transition(v.as_str(), Stage::Staging, "bench"),
    )
    .expect("transition");
    let w = format!("fraud/{}", n / 2 + 1);
    count(
        rt,
        &faults,
        "promote_to production (3 events)",
        me.promote_to(w.as_str(), Stage::Production, "bench"),
    )
    .expect("promote");
    let filter = HistoryFilter::new();
    let page = count(
        rt,
        &faults,
        "history, newest 100",
        reg.history_page("fraud", &filter, None, 100),
    )
    .expect("history");
    assert_eq!(page.items.len(), 100);
    let page = count(
        rt,
        &faults,
        "history, newest 100, cold",
        open().history_page("fraud", &filter, None, 100),
    )
    .expect("history");
    assert_eq!(page.items.len(), 100);
    rt.block_on(async {
        let keys = store.list(Some(&root)).map(|m| m.map(|m| m.location));
        let deleted: Vec<_> = store.delete_stream(keys.boxed()).collect().await;
        deleted.into_iter().collect::<Result<Vec<_>, _>>()
    })
    .expect("clean up");
}

/// A registry over `store` below `root`, its artifacts packed.
fn packed_registry(store: &Arc<dyn ObjectStore>, root: &Path) -> Registry {
    let (metadata, artifacts) = stores_in(Arc::clone(store), root);
    let artifacts = artifacts.with_options(ObjectArtifactOptions::new().packed(PackOptions::new()));
    Registry::builder()
        .metadata(Arc::new(metadata))
        .artifacts(Arc::new(artifacts))
        .build()
        .expect("registry")
}

/// Deletes every object below `root`.
fn delete_below(rt: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>, root: &Path) {
    rt.block_on(async {
        let keys = store.list(Some(root)).map(|m| m.map(|m| m.location));
        let deleted: Vec<_> = store.delete_stream(keys.boxed()).collect().await;
        deleted.into_iter().collect::<Result<Vec<_>, _>>()
    })
    .expect("clean up");
}

/// Issue 17 over S3: a LoRA variant registered into a packed object store
/// (see the module docs), against a raw PUT of its changed bytes.
fn packs_row(rt: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>, prefix: &Path) {
    let mib = env_num("MODELREG_BENCH_PACKS_MIB", 256);
    let pairs = env_num("MODELREG_BENCH_PACKS_PAIRS", 3).max(1);
    let dir = fixtures_root().join(format!("dedup-{mib}"));
    let scenario = dedup_scenarios::generate_first(Kind::LoraQv, mib, &dir, 1);
    let (base, var) = (&scenario.files[0], &scenario.files[1]);
    let base_len = std::fs::metadata(base).expect("stat").len();
    let changed = scenario.ideal - base_len;
    println!(
        "\npacks over S3: {} base {:.1} MiB, variant 1 changes {changed} bytes \
         (its q/v tensors and header); {pairs} pairs",
        Kind::LoraQv.name(),
        base_len as f64 / (1 << 20) as f64,
    );
    // The changed bytes as one buffer, for the raw PUT.
    let raw: bytes::Bytes = {
        let mut f = File::open(var).expect("open variant");
        let mut buf = Vec::with_capacity(changed as usize);
        (&mut f).take(changed).read_to_end(&mut buf).expect("read");
        buf.into()
    };
    let raw_key = prefix.clone().join("packs-raw").join("changed.bin");
    let raw_put = |rt: &tokio::runtime::Runtime| {
        let t = Instant::now();
        rt.block_on(store.put(&raw_key, raw.clone().into()))
            .expect("raw put");
        t.elapsed()
    };
    let mut series = Series::new("reg-var vs raw put");
    let actor = Actor::new("bench").expect("actor");
    for i in 0..pairs {
        let root = prefix.clone().join(format!("packs{i}"));
        let reg = packed_registry(store, &root);
        let me = reg.acting_as(actor.clone());
        rt.block_on(me.create_model("llm", CreateModel::new()))
            .expect("create");
        let b = rt
            .block_on(me.register("llm", ArtifactSource::file(base), NewVersion::new()))
            .expect("register base");
        // Another process's view: a new registry loads the chunk index from
        // the bucket, through the counting wrapper.
        let faults = faulty_store::Faults::new();
        let counting = faulty_store::FaultyStore::wrap(Arc::clone(store), Arc::clone(&faults));
        let reg = packed_registry(&counting, &root);
        let me = reg.acting_as(actor.clone());
        let before = raw_put(rt);
        faults.clear_log();
        let t = Instant::now();
        let v = rt
            .block_on(me.register("llm", ArtifactSource::file(var), NewVersion::new()))
            .expect("register variant");
        let ours = t.elapsed();
        let line = counted(&faults);
        let after = raw_put(rt);
        series.pair(before, ours, after);
        let r = &v.report;
        println!(
            "pair {i}: base sent {} B in {} requests; variant: report {} B in {} requests \
             = {:.3}x the changed bytes; wrapper: {line}",
            b.report.bytes_sent,
            b.report.requests_sent,
            r.bytes_sent,
            r.requests_sent,
            r.bytes_sent as f64 / changed as f64,
        );
        if std::env::var_os("MODELREG_BENCH_VERBOSE").is_some() {
            for q in faults.log() {
                println!("    {} {}", q.op, q.path);
            }
        }
        delete_below(rt, store, &root);
    }
    rt.block_on(store.delete(&raw_key)).expect("clean up");
    series.report();
}

fn main() {
    if !benchmarking() {
        return;
    }
    let Some(url) = ["MODELREG_BENCH_S3_URL", "MODELREG_TEST_S3_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
    else {
        println!(
            "object_store bench SKIPPED: set MODELREG_BENCH_S3_URL or MODELREG_TEST_S3_URL \
             (and the AWS_* variables) to an S3 server, e.g. as .ci/run does"
        );
        return;
    };
    let mib = env_num("MODELREG_BENCH_MIB", 256);
    let pairs = env_num("MODELREG_BENCH_PAIRS", 5);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (tmp, src) = scratch_source(mib);
    let run = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let base_url = format!("{}/{run}", url.trim_end_matches('/'));
    let (store, prefix) = object_store_from_url(&base_url).expect("S3 URL");
    let size = mib << 20;
    println!(
        "{url}: file {mib} MiB, parts of {} MiB, {UPLOAD_CONCURRENCY} in flight, {pairs} pairs; \
         source in the page cache, fetches fsynced",
        part_size(size) >> 20
    );

    let rows = std::env::var("MODELREG_BENCH_ROWS").unwrap_or_default();
    let wants = |row: &str| rows.is_empty() || rows.split(',').any(|r| r == row);
    if wants("requests") {
        request_counts(&rt, &store, &prefix);
    }
    if wants("packs") {
        packs_row(&rt, &store, &prefix);
    }
    if !wants("transfer") {
        return;
    }

    let actor = Actor::new("bench").expect("actor");
    let mut register = Series::new("register");
    let mut fetch = Series::new("fetch");
    let raw_key = prefix.clone().join("raw").join("model.bin");
    for i in 0..pairs {
        // A fresh registry per pair, so every register uploads the bytes.
        let reg_prefix = prefix.clone().join(format!("reg{i}"));
        let (metadata, artifacts) = stores_in(Arc::clone(&store), &reg_prefix);
        let reg = Registry::builder()
            .metadata(Arc::new(metadata))
            .artifacts(Arc::new(artifacts))
            .build()
            .expect("registry");
        rt.block_on(
            reg.acting_as(actor.clone())
                .create_model("bench", CreateModel::new()),
        )
        .expect("create");

        let before = rt.block_on(raw_put(&store, &raw_key, &src));
        let t = Instant::now();
        rt.block_on(reg.acting_as(actor.clone()).register(
            "bench",
            ArtifactSource::file(&src),
            NewVersion::new(),
        ))
        .expect("register");
        let ours = t.elapsed();
        let after = rt.block_on(raw_put(&store, &raw_key, &src));
        register.pair(before, ours, after);

        let raw_out = tmp.path().join("raw.bin");
        let before = rt.block_on(raw_get(&store, &raw_key, &raw_out));
        std::fs::remove_file(&raw_out).expect("remove");
        let out = tmp.path().join(format!("out{i}"));
        let t = Instant::now();
        rt.block_on(reg.fetch("bench/1", &out, FetchOptions::new()))
            .expect("fetch");
        let ours = t.elapsed();
        let after = rt.block_on(raw_get(&store, &raw_key, &raw_out));
        std::fs::remove_file(&raw_out).expect("remove");
        fetch.pair(before, ours, after);

        std::fs::remove_dir_all(&out).ok();
        // Keep the server's memory flat: drop this pair's objects.
        rt.block_on(async {
            let keys = store.list(Some(&reg_prefix)).map(|m| m.map(|m| m.location));
            let deleted: Vec<_> = store.delete_stream(keys.boxed()).collect().await;
            deleted.into_iter().collect::<Result<Vec<_>, _>>()
        })
        .expect("clean up");
    }
    rt.block_on(store.delete(&raw_key)).expect("clean up");
    register.report();
    fetch.report();
}
