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

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use modelreg::store::object::{UPLOAD_CONCURRENCY, object_store_from_url, part_size, stores_in};
use modelreg::{Actor, ArtifactSource, CreateModel, FetchOptions, NewVersion, Registry};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
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
