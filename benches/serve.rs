//! The HTTP server (`modelreg serve`), each target against its baseline measured
//! in the same run:
//!
//! - **download**: `GET …/files/model.bin` of a 1 GiB version file over loopback,
//!   read by a raw HTTP/1.1 client into a sink, with download verification on
//!   (the default) and off, vs `cat BLOB > /dev/null` (a process), a plain
//!   read loop in this process over the same blob file, and two plain static
//!   file servers over the same loopback: axum with `tower_http`'s `ServeFile`,
//!   and a raw thread writing an HTTP head and the file (read/write loop, or
//!   `sendfile`). Page cache warm; each server download sits between two
//!   samples of each baseline. Target ≤ 1.3× (the issue allows `cat` or a plain
//!   static file server; `cat` never touches a socket, see docs/performance.md).
//! - **resolve**: `GET /api/v1/models/fraud/versions/production` on a model of
//!   1,000 versions (~1 KiB records, the metadata bench's shape), driven by a
//!   loopback load generator of 64 keep-alive HTTP/1.1 connections, one request
//!   in flight on each, for a fixed window after a warm-up: requests/s, p50, p99.
//!   Baselines: the same load against a minimal axum handler answering a
//!   constant JSON body of the same size (what HTTP itself costs here), and
//!   `registry.resolve` in process. Rounds alternate baseline and ours. Target
//!   ≥ 20,000 requests/s.
//! - **pages**: each web UI page, `GET` over loopback one at a time (a new
//!   connection each, the body read to its end), on the metadata bench's
//!   fixture (`support/fixture.rs`) at 1,000 and 100,000 versions: models,
//!   model, its second page, a filtered and metric-sorted view, the newest
//!   version compared with the one before (the fixture's production version
//!   was appended raw and has no manifest to compare), history, the newest version's lineage,
//!   the impact of the dataset every version but five was trained with, and
//!   the model as of a time after its last checkpoint and before it (at version
//!   n/4, and the worst case: just before a kept checkpoint, as far as the
//!   fixture's kept checkpoints allow from the one before it), and the
//!   confirmation pages of two actions (`POST …/actions` without `confirm`,
//!   signed in: moving the newest version to staging with its gates judged,
//!   and a rollback), which change nothing. Baseline:
//!   the REST JSON `GET` of the same version, before and after each page
//!   sample. Target: every page under 100 ms.
//! - **rss**: the `modelreg` binary (`modelreg serve`, a separate process) takes
//!   a multipart upload of a 4 GiB file streamed from disk by the client, then
//!   serves it back; its peak resident set (`VmHWM` of `/proc/<pid>/status`)
//!   for each, against its resident set when idle after start. Target ≤ 128 MiB.
//!
//! The servers run on their own two-worker tokio runtimes (what `modelreg serve`
//! uses on a 2-core machine) and share the machine's cores with the client:
//! nothing is pinned.
//!
//! ```text
//! cargo bench --features serve,cli --bench serve
//! MODELREG_BENCH_ONLY=resolve cargo bench --features serve,cli --bench serve
//! MODELREG_BENCH_ONLY=pages cargo bench --features serve,cli --bench serve
//! MODELREG_BENCH_BIG_GIB=1 MODELREG_BENCH_DIR=/work cargo bench --features serve,cli --bench serve
//! ```
//!
//! Settings (environment): `MODELREG_BENCH_ONLY` (any of
//! `download,resolve,pages,rss`), `MODELREG_BENCH_PAGE_SIZES` (`1000,100000`),
//! `MODELREG_BENCH_PAGE_REPS` (7),
//! `MODELREG_BENCH_DIR` (scratch files; default the current directory),
//! `MODELREG_BENCH_MIB` (download size, 1024), `MODELREG_BENCH_REPS` (download
//! repetitions, 7), `MODELREG_BENCH_VERSIONS` (1000),
//! `MODELREG_BENCH_CONNECTIONS` (64), `MODELREG_BENCH_SECS` (5),
//! `MODELREG_BENCH_WARMUP_SECS` (1), `MODELREG_BENCH_ROUNDS` (3 of each),
//! `MODELREG_BENCH_BIG_GIB` (4). `cargo bench` builds the `modelreg` binary with
//! the bench's features (`cli,serve`) in the same profile; the bench runs
//! `CARGO_BIN_EXE_modelreg`.
//!
//! Without `--bench` (`cargo test --benches --features serve,cli`) every part
//! runs once on small sizes, as a smoke test.

mod support;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use modelreg::server::{Server, ServerOptions, Tokens};
use modelreg::store::LinkMode;
use modelreg::{
    Actor, ArtifactSource, CreateModel, DatasetRef, DatasetRole, NewVersion, Registry, Relation,
    Stage,
};
use support::fixture::{MODEL, fixture, link_tree};
use support::{Series, benchmarking, env_num, human, new_version, write_source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The writer token of every server here.
const TOKEN: &str = "bench-writer-token-0123456789abcdef";
const IDENTITY: &str = "bench@example.com";

/// How much the raw clients and the read loop read at a time.
const READ_BUF: usize = 256 << 10;

fn main() {
    let only = std::env::var("MODELREG_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if wanted("download") {
        download_part();
    }
    if wanted("resolve") {
        resolve_part();
    }
    if wanted("pages") {
        pages_part();
    }
    if wanted("rss") {
        rss_part();
    }
    println!(
        "load average at end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::var("MODELREG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("scratch directory")
}

fn tokens() -> Tokens {
    Tokens::parse(&format!("{IDENTITY}:writer:{TOKEN}")).expect("tokens")
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

// ----- servers in this process ---------------------------------------------------

/// A server on its own two-worker runtime thread, stopped when dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU time so far of this process's threads named `name` (from
/// `/proc/self/task/*/schedstat`, in nanoseconds; the time of threads that
/// have exited is lost, so compare only runtimes whose threads stay).
fn cpu_time(name: &str) -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        total += std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
    }
    Duration::from_nanos(total)
}

/// The CPU time of this thread so far.
fn own_cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Runs `serve(listener, stopped)` on a fresh 127.0.0.1 port, on threads
/// named `name` (at most 15 bytes, see [`cpu_time`]).
fn spawn_server<F, Fut>(name: &'static str, serve: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            addr_tx
                .send(listener.local_addr().expect("address"))
                .expect("send the address");
            serve(listener, stop_rx).await;
        });
    });
    Running {
        addr: addr_rx.recv().expect("the server started"),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// `Server` over `registry` with `options`.
fn start_modelreg(name: &'static str, registry: Registry, options: ServerOptions) -> Running {
    spawn_server(name, move |listener, stop| async move {
        Server::new(registry, options)
            .serve(listener, async {
                let _ = stop.await;
            })
            .await
            .expect("serve");
    })
}

/// The smallest axum server answering `body` as JSON on the resolve route.
fn start_constant(body: bytes::Bytes) -> Running {
    use axum::http::header::CONTENT_TYPE;
    spawn_server("srv-constant", move |listener, stop| async move {
        let app = axum::Router::new().route(
            "/api/v1/models/{model}/versions/{version}",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body) }
            }),
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
            .expect("serve");
    })
}

// ----- a raw blocking HTTP/1.1 client --------------------------------------------

/// Reads up to the end of the response head; returns the status, the
/// `Content-Length` and the body bytes already read.
fn read_head(s: &mut TcpStream) -> (u16, Option<u64>, Vec<u8>) {
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut buf).expect("read the response head");
        assert!(n > 0, "the server closed before its response head");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    });
    (status, length, raw[end + 4..].to_vec())
}

/// `GET target` (`Connection: close`), the body read into a sink; returns its
/// length, checked against `Content-Length`.
fn download(addr: SocketAddr, target: &str, buf: &mut [u8]) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = bearer();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let (status, length, early) = read_head(&mut s);
    assert_eq!(status, 200, "GET {target}");
    let length = length.expect("a Content-Length");
    let mut got = early.len() as u64;
    loop {
        let n = s.read(buf).expect("read the body");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert_eq!(got, length, "GET {target}: the body was cut short");
    got
}

/// `cat path > /dev/null` as a process.
fn cat(path: &Path) -> Duration {
    let null = std::fs::File::create("/dev/null").expect("/dev/null");
    let t = Instant::now();
    let status = Command::new("cat")
        .arg(path)
        .stdout(null)
        .status()
        .expect("run cat");
    let took = t.elapsed();
    assert!(status.success());
    took
}

/// A plain read loop over `path` in this process.
fn read_loop(path: &Path, buf: &mut [u8]) -> Duration {
    let t = Instant::now();
    let mut f = std::fs::File::open(path).expect("open");
    let mut total = 0u64;
    loop {
        let n = f.read(buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    std::hint::black_box(total);
    t.elapsed()
}

/// The floor of any server that sends a file over loopback TCP: a thread that
/// answers each connection with a minimal HTTP/1.1 head and the file's bytes,
/// `GET /rw` with a read/write loop through a 1 MiB buffer (what our server's
/// data path does, without hashing), `GET /sendfile` with `std::io::copy`, which
/// Linux does with `sendfile` (no copy through user space).
fn start_raw_file_server(path: &Path) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&byte[..n]),
                }
            }
            let mut f = std::fs::File::open(&path).expect("open");
            let len = f.metadata().expect("size").len();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            if head.starts_with(b"GET /sendfile ") {
                let _ = std::io::copy(&mut f, &mut s);
            } else {
                loop {
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    });
    addr
}

/// A plain static file server: axum with `tower_http::services::ServeFile`
/// (what an axum application serves a file with) at `/static`, on a two-worker
/// runtime like ours.
fn start_static_server(path: &Path) -> Running {
    let path = path.to_owned();
    spawn_server("srv-static", move |listener, stop| async move {
        let app = axum::Router::new()
            .route_service("/static", tower_http::services::ServeFile::new(path));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
            .expect("serve");
    })
}

/// One thread hashing `path` with BLAKE3 in 1 MiB chunks, as a verified
/// download does.
fn hash_loop(path: &Path) -> Duration {
    let t = Instant::now();
    let mut f = std::fs::File::open(path).expect("open");
    let mut hasher = blake3::Hasher::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut chunk).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
    }
    std::hint::black_box(hasher.finalize());
    t.elapsed()
}

fn mib_per_s(mib: u64, d: Duration) -> String {
    format!("{:.0} MiB/s", mib as f64 / d.as_secs_f64())
}

/// Median and min of `v`, with the throughput of each.
fn median_min(mib: u64, v: &[Duration]) -> String {
    let mut v = v.to_vec();
    v.sort();
    let median = v[v.len() / 2];
    format!(
        "median {} ({}), min {} ({})",
        human(median),
        mib_per_s(mib, median),
        human(v[0]),
        mib_per_s(mib, v[0])
    )
}

// ----- 1. download vs cat --------------------------------------------------------

fn download_part() {
    let mib = if benchmarking() {
        env_num("MODELREG_BENCH_MIB", 1024)
    } else {
        8
    };
    let reps = if benchmarking() {
        env_num("MODELREG_BENCH_REPS", 7) as usize
    } else {
        1
    };
    println!("\n## download: {mib} MiB over loopback vs cat, {reps} repetitions");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tmp = scratch();
    let src = tmp.path().join("model.bin");
    write_source(&src, mib);
    let registry = rt.block_on(async {
        let registry = Registry::open_local(tmp.path().join("registry"))
            .await
            .expect("open");
        let me = registry.acting_as(Actor::new(IDENTITY).expect("actor"));
        me.create_model("big", CreateModel::new())
            .await
            .expect("create");
        me.register(
            "big",
            ArtifactSource::file(&src),
            NewVersion::new().link(LinkMode::HardLink),
        )
        .await
        .expect("register");
        registry
    });
    let entry = rt
        .block_on(registry.manifest("big/1"))
        .expect("manifest")
        .get("model.bin")
        .expect("the file")
        .clone();
    let hex = entry.digest.to_hex();
    let blob = tmp
        .path()
        .join("registry/artifacts/blobs/v2/blake3")
        .join(&hex[0..2])
        .join(&hex);
    assert_eq!(
        std::fs::metadata(&blob).expect("the blob file").len(),
        mib << 20
    );
    let verified = start_modelreg(
        "srv-verified",
        registry.clone(),
        ServerOptions::new().tokens(tokens()),
    );
    let unverified = start_modelreg(
        "srv-unverified",
        registry,
        ServerOptions::new()
            .tokens(tokens())
            .verify_downloads(false),
    );
    let raw = start_raw_file_server(&blob);
    let plain = start_static_server(&blob);
    let target = "/api/v1/models/big/versions/1/files/model.bin";
    let mut buf = vec![0u8; READ_BUF];
    let mut get = |addr, target: &str| {
        let t = Instant::now();
        let n = download(addr, target, &mut buf);
        assert_eq!(n, mib << 20);
        t.elapsed()
    };
    // The baselines, measured before the first download and after each pair.
    let mut read_buf = vec![0u8; READ_BUF];
    let mut baselines = |get: &mut dyn FnMut(SocketAddr, &str) -> Duration| {
        [
            cat(&blob),
            read_loop(&blob, &mut read_buf),
            get(raw, "/rw"),
            get(raw, "/sendfile"),
            hash_loop(&blob),
            get(plain.addr, "/static"),
        ]
    };
    const NAMES: [&str; 6] = [
        "cat > /dev/null",
        "read loop",
        "raw TCP, read/write",
        "raw TCP, sendfile",
        "BLAKE3, one thread",
        "static (ServeFile)",
    ];
    // Warm the page cache, the servers and the client.
    baselines(&mut get);
    get(verified.addr, target);
    get(unverified.addr, target);

    let mut on_cat = Series::new("on/cat");
    let mut off_cat = Series::new("off/cat");
    let mut on_read = Series::new("on/read");
    let mut off_read = Series::new("off/read");
    let mut on_tcp = Series::new("on/raw TCP");
    let mut off_tcp = Series::new("off/raw TCP");
    let mut on_static = Series::new("on/static");
    let mut off_static = Series::new("off/static");
    let mut rw_cat = Series::new("rawTCP/cat");
    let mut base: Vec<[Duration; 6]> = vec![baselines(&mut get)];
    let (mut ons, mut offs) = (vec![], vec![]);
    for i in 0..reps {
        // Alternate which server goes first.
        let (on, off) = if i % 2 == 0 {
            let on = get(verified.addr, target);
            (on, get(unverified.addr, target))
        } else {
            let off = get(unverified.addr, target);
            (get(verified.addr, target), off)
        };
        let after = baselines(&mut get);
        let before = base[i];
        on_cat.pair(before[0], on, after[0]);
        off_cat.pair(before[0], off, after[0]);
        on_read.pair(before[1], on, after[1]);
        off_read.pair(before[1], off, after[1]);
        on_tcp.pair(before[2], on, after[2]);
        off_tcp.pair(before[2], off, after[2]);
        on_static.pair(before[5], on, after[5]);
        off_static.pair(before[5], off, after[5]);
        rw_cat.pair(before[0], before[2], after[0]);
        ons.push(on);
        offs.push(off);
        base.push(after);
    }
    for (k, name) in NAMES.iter().enumerate() {
        let samples: Vec<Duration> = base.iter().map(|b| b[k]).collect();
        println!("{name:<22} {}", median_min(mib, &samples));
    }
    println!("{:<22} {}", "HTTP, verify on", median_min(mib, &ons));
    println!("{:<22} {}", "HTTP, verify off", median_min(mib, &offs));
    for s in [
        &mut on_cat,
        &mut off_cat,
        &mut on_read,
        &mut off_read,
        &mut on_tcp,
        &mut off_tcp,
        &mut on_static,
        &mut off_static,
        &mut rw_cat,
    ] {
        s.summary();
    }
}

// ----- 2. resolve under load -----------------------------------------------------

/// What one load run saw.
struct Load {
    requests: u64,
    window: Duration,
    /// Latencies of the requests inside the window, sorted.
    latencies: Vec<Duration>,
    /// CPU time of the server's threads during the window.
    server_cpu: Duration,
    /// CPU time of the load generator's thread during the window.
    client_cpu: Duration,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    fn quantile(&self, q: f64) -> Duration {
        self.latencies[((self.latencies.len() - 1) as f64 * q).round() as usize]
    }

    /// The time per request at this concurrency (the inverse of the rate), for
    /// the ratio.
    fn per_request(&self) -> Duration {
        self.window.div_f64(self.requests as f64)
    }

    /// Server CPU time per request.
    fn server_cpu(&self) -> Duration {
        self.server_cpu.div_f64(self.requests as f64)
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<9} {:>8.0} req/s  p50 {:>9}  p99 {:>9}  server CPU {:>8}/req, client {:>8}/req  ({} requests)",
            self.per_second(),
            human(self.quantile(0.5)),
            human(self.quantile(0.99)),
            human(self.server_cpu()),
            human(self.client_cpu.div_f64(self.requests as f64)),
            self.requests
        )
    }
}

/// `connections` keep-alive connections to `addr` (loopback only), each
/// sending `GET target` and reading the whole answer before the next, for
/// `warmup` + `window`; counts the requests started and finished inside the
/// window, and the CPU time the threads named `server` and this thread spent
/// in it. Runs on this thread.
fn load(
    server: &'static str,
    addr: SocketAddr,
    target: &str,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> Load {
    assert!(
        addr.ip().is_loopback(),
        "the load generator stays on loopback"
    );
    let request: Arc<[u8]> = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\r\n",
        bearer()
    )
    .into_bytes()
    .into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let start = Instant::now();
        let from = start + warmup;
        let until = from + window;
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let request = Arc::clone(&request);
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).expect("nodelay");
                let mut buf = vec![0u8; 16 << 10];
                let mut latencies = Vec::new();
                loop {
                    let sent = Instant::now();
                    if sent >= until {
                        break;
                    }
                    s.write_all(&request).await.expect("send");
                    read_response(&mut s, &mut buf).await;
                    let done = Instant::now();
                    if sent >= from && done <= until {
                        latencies.push(done - sent);
                    }
                }
                latencies
            }));
        }
        tokio::time::sleep_until(from.into()).await;
        let (server_from, client_from) = (cpu_time(server), own_cpu_time());
        tokio::time::sleep_until(until.into()).await;
        let (server_cpu, client_cpu) =
            (cpu_time(server) - server_from, own_cpu_time() - client_from);
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("connection task"));
        }
        latencies.sort();
        Load {
            requests: latencies.len() as u64,
            window,
            latencies,
            server_cpu,
            client_cpu,
        }
    })
}

/// Reads one response with a `Content-Length` body into `buf` (large enough
/// for head and body) and checks it is a 200.
async fn read_response(s: &mut tokio::net::TcpStream, buf: &mut [u8]) {
    let mut have = 0;
    let (head_end, length) = loop {
        let n = s.read(&mut buf[have..]).await.expect("read");
        assert!(n > 0, "the server closed a keep-alive connection");
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..have])
            );
            let length = head
                .split(|&b| b == b'\n')
                .find_map(|line| {
                    let line = std::str::from_utf8(line).ok()?;
                    let (k, v) = line.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .expect("a Content-Length");
            break (end + 4, length);
        }
    };
    let total = head_end + length;
    assert!(total <= buf.len(), "a response larger than the buffer");
    while have < total {
        let n = s.read(&mut buf[have..total]).await.expect("read");
        assert!(n > 0, "the server closed mid-body");
        have += n;
    }
    assert_eq!(have, total, "more than one response at once");
}

/// In-process `resolve` calls per second by `tasks` tasks on a two-worker
/// runtime, for `window`; and the time of one call on one task.
fn resolve_rate(registry: &Registry, tasks: usize, window: Duration) -> (f64, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let calls = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (registry, calls, stop) = (registry.clone(), calls.clone(), stop.clone());
            handles.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(
                        registry.resolve("fraud@production").await.expect("resolve"),
                    );
                    calls.fetch_add(1, Ordering::Relaxed);
                    // Let the other tasks (and the timer) run, as a server's do.
                    tokio::task::yield_now().await;
                }
            }));
        }
        tokio::time::sleep(window).await;
        stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        for h in handles {
            h.await.expect("task");
        }
        let rate = calls.load(Ordering::Relaxed) as f64 / (window + t.elapsed()).as_secs_f64();
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(registry.resolve("fraud@production").await.expect("resolve"));
        }
        (rate, t.elapsed() / n)
    })
}

fn resolve_part() {
    let bench = benchmarking();
    let versions = if bench {
        env_num("MODELREG_BENCH_VERSIONS", 1000)
    } else {
        20
    };
    let connections = if bench {
        env_num("MODELREG_BENCH_CONNECTIONS", 64) as usize
    } else {
        8
    };
    let (warmup, window, rounds) = if bench {
        (
            Duration::from_secs(env_num("MODELREG_BENCH_WARMUP_SECS", 1)),
            Duration::from_secs(env_num("MODELREG_BENCH_SECS", 5)),
            env_num("MODELREG_BENCH_ROUNDS", 3) as usize,
        )
    } else {
        (Duration::from_millis(100), Duration::from_millis(300), 1)
    };
    println!(
        "\n## resolve: {connections} keep-alive connections, {warmup:?} warm-up + {window:?}, \
         {rounds} rounds; server (2 workers) and load generator (1 thread) share the machine's {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let tmp = scratch();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Instant::now();
    let registry = rt.block_on(async {
        let registry = Registry::open_local(tmp.path().join("registry"))
            .await
            .expect("open");
        let me = registry.acting_as(Actor::new(IDENTITY).expect("actor"));
        me.create_model("fraud", CreateModel::new())
            .await
            .expect("create");
        for i in 1..=versions {
            let source =
                ArtifactSource::bytes("model.bin", format!("weights of version {i}")).expect("src");
            me.register("fraud", source, new_version(i))
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
        registry
    });
    drop(rt);
    println!(
        "fixture: {versions} versions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let target = "/api/v1/models/fraud/versions/production";
    let ours = start_modelreg(
        "srv-resolve",
        registry.clone(),
        ServerOptions::new().tokens(tokens()),
    );
    // The constant baseline answers exactly the bytes ours does.
    let mut all = Vec::new();
    let mut s = TcpStream::connect(ours.addr).expect("connect");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        bearer()
    )
    .expect("request");
    s.read_to_end(&mut all).expect("response");
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&all)
    );
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let record = bytes::Bytes::copy_from_slice(&all[head_end..]);
    println!(
        "response body: {} bytes of JSON; response head: {} bytes",
        record.len(),
        head_end
    );
    let constant = start_constant(record);

    let (rate_before, one_before) =
        resolve_rate(&registry, connections, window.min(Duration::from_secs(2)));
    let mut series = Series::new("s/req ratio");
    let mut cpu = Series::new("server CPU");
    let mut consts = Vec::new();
    let mut ourses = Vec::new();
    let base = || {
        load(
            "srv-constant",
            constant.addr,
            target,
            connections,
            warmup,
            window,
        )
    };
    let mut before = base();
    println!("{}", before.line("constant"));
    for _ in 0..rounds {
        let l = load(
            "srv-resolve",
            ours.addr,
            target,
            connections,
            warmup,
            window,
        );
        println!("{}", l.line("resolve"));
        let after = base();
        println!("{}", after.line("constant"));
        series.pair(before.per_request(), l.per_request(), after.per_request());
        cpu.pair(before.server_cpu(), l.server_cpu(), after.server_cpu());
        consts.push(before);
        ourses.push(l);
        before = after;
    }
    consts.push(before);
    let (rate_after, one_after) =
        resolve_rate(&registry, connections, window.min(Duration::from_secs(2)));
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut ours_rps: Vec<f64> = ourses.iter().map(Load::per_second).collect();
    let mut const_rps: Vec<f64> = consts.iter().map(Load::per_second).collect();
    let mut p50: Vec<f64> = ourses
        .iter()
        .map(|l| l.quantile(0.5).as_secs_f64())
        .collect();
    let mut p99: Vec<f64> = ourses
        .iter()
        .map(|l| l.quantile(0.99).as_secs_f64())
        .collect();
    println!(
        "resolve over HTTP: median {:.0} req/s (min {:.0}, max {:.0}); p50 {:.2} ms, p99 {:.2} ms (medians of rounds)",
        median(&mut ours_rps),
        ours_rps[0],
        ours_rps[ours_rps.len() - 1],
        median(&mut p50) * 1e3,
        median(&mut p99) * 1e3
    );
    println!(
        "constant JSON:     median {:.0} req/s (min {:.0}, max {:.0})",
        median(&mut const_rps),
        const_rps[0],
        const_rps[const_rps.len() - 1],
    );
    println!(
        "in process:        {:.0} / {:.0} resolves/s ({connections} tasks, 2 workers; before / after); \
         one call {} / {}",
        rate_before,
        rate_after,
        human(one_before),
        human(one_after)
    );
    series.summary();
    cpu.summary();
}

// ----- 4. web UI pages at 1,000 and 100,000 versions ---------------------------

/// One `GET` of `target` (a new connection, the whole body read).
fn get_page(addr: SocketAddr, target: &str, buf: &mut [u8]) -> Duration {
    let t = Instant::now();
    download(addr, target, buf);
    t.elapsed()
}

/// The web UI's CSRF token of a session of [`TOKEN`], as the server derives it
/// (`src/server/ui/mod.rs`, `csrf_token`).
fn csrf() -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes()).expect("any key");
    mac.update(b"modelreg web UI form token v1");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One action form posted as a signed-in browser would, without `confirm`
/// (a new connection, the whole confirmation page read): must be 200.
fn post_page(addr: SocketAddr, target: &str, form: &str, buf: &mut [u8]) -> Duration {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nCookie: modelreg_session={TOKEN}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    )
    .expect("send the form");
    let (status, length, early) = read_head(&mut s);
    assert_eq!(status, 200, "POST {target} {form}");
    let mut got = early.len() as u64;
    loop {
        let n = s.read(buf).expect("read the body");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert_eq!(Some(got), length, "POST {target}: the body was cut short");
    t.elapsed()
}

fn pages_part() {
    let sizes: Vec<u64> = std::env::var("MODELREG_BENCH_PAGE_SIZES")
        .unwrap_or_else(|_| {
            if benchmarking() {
                "1000,100000".into()
            } else {
                "1000".into()
            }
        })
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let reps = if benchmarking() {
        env_num("MODELREG_BENCH_PAGE_REPS", 7) as usize
    } else {
        1
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut buf = vec![0u8; READ_BUF];
    for n in sizes {
        let scratch = scratch();
        let root = scratch.path().join("reg");
        link_tree(&fixture(&rt, n), &root);
        let registry = rt
            .block_on(Registry::open_local(&root))
            .expect("open the fixture");
        // Times to travel to: after the checkpoint (event n) and long before it.
        let created = |v: u64| {
            rt.block_on(registry.resolve(format!("{MODEL}/{v}").as_str()))
                .expect("a version")
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .replace('+', "%2B")
        };
        let (recent, early) = (created(n - 2), created(n / 4));
        // The worst case: just before a kept checkpoint, as far as can be from
        // the kept one before it (the fold reads the records between them).
        let worst_gap = {
            let dir = root.join(format!("metadata/logs/v1/{MODEL}/checkpoints"));
            let mut kept: Vec<u64> = std::fs::read_dir(&dir)
                .expect("checkpoints")
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".ckpt")?
                        .parse()
                        .ok()
                })
                .collect();
            kept.sort_unstable();
            println!("checkpoints kept at {n} versions: {kept:?}");
            // Before the first, the fold starts at the log's start.
            kept.insert(0, 0);
            kept.windows(2)
                .map(|p| (p[1] - p[0], p[0], p[1]))
                .max()
                .expect("a checkpoint")
        };
        // Event `seq` registers version `seq - 1`: the version before the newer one.
        let worst = created(worst_gap.2 - 2);
        println!(
            "as of worst: version {} (event {}), the nearest older checkpoint at event {} (0: none): {} events to fold",
            worst_gap.2 - 2,
            worst_gap.2 - 1,
            worst_gap.1,
            worst_gap.2 - 1 - worst_gap.1
        );
        let server = start_modelreg(
            "srv-pages",
            registry.clone(),
            ServerOptions::new().tokens(tokens()),
        );
        let m = format!("/ui/models/{MODEL}");
        // The server reads every model before it takes connections (its
        // warm-up): the first answer waits for that, in the backlog.
        let ready = get_page(server.addr, "/ui/", &mut buf);
        let first = get_page(server.addr, &m, &mut buf);
        println!(
            "pages at {n} versions (first answer after start, the warm-up: {}; then first model page: {})",
            human(ready),
            human(first)
        );
        let rows: Vec<(&'static str, String)> = vec![
            ("models", "/ui/".to_owned()),
            ("model", m.clone()),
            ("model p2", format!("{m}?after={}", n - 49)),
            (
                "filtered",
                format!("{m}?stage=none&tag=cohort%3Dc3&sort=auc&order=desc"),
            ),
            // Against n-1: the fixture's raw-appended versions (production
            // among them) have no manifest blob to compare.
            ("version", format!("{m}/versions/{n}?against={}", n - 1)),
            ("history", format!("{m}/history")),
            ("lineage", format!("{m}/versions/{n}/lineage")),
            (
                "dataset",
                "/ui/lineage/dataset?name=transactions&version=2026-03-02".to_owned(),
            ),
            ("as of new", format!("{m}?at={recent}")),
            ("as of old", format!("{m}?at={early}")),
            ("as of worst", format!("{m}?at={worst}")),
        ];
        let baseline = format!("/api/v1/models/{MODEL}/versions/{n}");
        let csrf = csrf();
        let actions = format!("{m}/actions");
        let forms: Vec<(&'static str, String)> = vec![
            (
                "confirm move",
                format!("csrf={csrf}&action=move&version={n}&to=staging&reason=bench"),
            ),
            (
                "confirm rollback",
                format!("csrf={csrf}&action=rollback&reason=bench"),
            ),
        ];
        let pages = rows.iter().map(|(name, target)| (*name, target, None));
        let posts = forms
            .iter()
            .map(|(name, form)| (*name, &actions, Some(form)));
        for (name, target, form) in pages.chain(posts) {
            let fetch = |buf: &mut [u8]| match form {
                None => get_page(server.addr, target, buf),
                Some(f) => post_page(server.addr, target, f, buf),
            };
            // One warm-up (reported: the first view, before any cache), then
            // baseline, page, baseline.
            let first = fetch(&mut buf);
            println!("{name}: first view {}", human(first));
            let mut series = Series::new(name);
            for _ in 0..reps {
                let before = get_page(server.addr, &baseline, &mut buf);
                let ours = fetch(&mut buf);
                let after = get_page(server.addr, &baseline, &mut buf);
                series.pair(before, ours, after);
            }
            series.summary();
        }
        // After a registration the lineage pages see a graph brought up to date,
        // not built anew: the first view of each after one new version.
        let me = registry.acting_as(Actor::new("bench").expect("actor"));
        let dataset = DatasetRef::new("transactions", DatasetRole::Train).version("2026-03-02");
        let v = rt
            .block_on(
                me.register(
                    MODEL,
                    ArtifactSource::bytes("model.bin", "after").expect("source"),
                    NewVersion::new()
                        .dataset(dataset)
                        .parent(format!("{MODEL}/{n}"), Relation::FineTunedFrom),
                ),
            )
            .expect("register")
            .number;
        for (name, target) in [
            (
                "lineage after a registration",
                format!("{m}/versions/{v}/lineage"),
            ),
            (
                "dataset after it",
                "/ui/lineage/dataset?name=transactions&version=2026-03-02".to_owned(),
            ),
        ] {
            println!(
                "{name}: first view {}",
                human(get_page(server.addr, &target, &mut buf))
            );
        }
        drop(server);
    }
}

// ----- 3. peak RSS of `modelreg serve` with a big upload and download ---------------

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib_of(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The `modelreg serve` child, terminated (SIGTERM, then killed) when dropped.
struct ServeProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServeProcess {
    fn start(registry: &Path) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelreg"))
            .arg("--registry")
            .arg(registry)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(
                "MODELREG_SERVE_TOKENS",
                format!("{IDENTITY}:writer:{TOKEN}"),
            )
            .env_remove("MODELREG_SERVE_TOKENS_FILE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn modelreg serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let first = lines.next().expect("a startup line").expect("text");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        // Keep draining its stderr so it never blocks on a full pipe; echo it,
        // as it only speaks on trouble.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("  (server) {line}");
            }
        });
        ServeProcess { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it as a service manager would; true if it exited cleanly.
    fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Samples `pid`'s `VmRSS` every 10 ms until dropped; the largest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = text
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    m.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// Resets `pid`'s `VmHWM` to its current resident set; false if the kernel
/// refused.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// `POST`s `file` as the one file (`model.bin`) of a new version of `model`,
/// streamed from disk through a fixed buffer; returns the answer's body.
fn upload(addr: SocketAddr, model: &str, file: &Path, buf: &mut [u8]) -> String {
    let boundary = "modelreg-bench-boundary-5f0c2a";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n\
         {{\"description\":\"uploaded by the serve bench\"}}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let size = std::fs::metadata(file).expect("the upload's size").len();
    let length = head.len() as u64 + size + tail.len() as u64;
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /api/v1/models/{model}/versions HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n{head}",
        bearer()
    )
    .expect("send the head");
    let mut f = std::fs::File::open(file).expect("open the upload");
    let mut sent = 0u64;
    loop {
        let n = f.read(buf).expect("read the upload");
        if n == 0 {
            break;
        }
        if let Err(e) = s.write_all(&buf[..n]) {
            // The server stopped reading: say what it answered, if anything.
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            panic!(
                "the server stopped the upload after {sent} bytes ({e}); it answered {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
        sent += n as u64;
    }
    assert_eq!(sent, size);
    s.write_all(tail.as_bytes()).expect("send the tail");
    let (status, _, mut body) = read_head(&mut s);
    s.read_to_end(&mut body).expect("the answer");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 201, "upload: {body}");
    body
}

fn rss_part() {
    let mib = if benchmarking() {
        env_num("MODELREG_BENCH_BIG_GIB", 4) * 1024
    } else {
        16
    };
    println!("\n## rss: `modelreg serve` uploading and serving {mib} MiB");
    let tmp = scratch();
    let registry = tmp.path().join("registry");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(Registry::open_local(&registry))
        .expect("create the registry");
    let src = tmp.path().join("big.bin");
    let t = Instant::now();
    write_source(&src, mib);
    let written = t.elapsed();
    println!(
        "source written and synced in {:.1} s ({}; what the disk takes now)",
        written.as_secs_f64(),
        mib_per_s(mib, written)
    );
    let mut buf = vec![0u8; READ_BUF];
    read_loop(&src, &mut buf);
    let cat_before = cat(&src);

    let mut server = ServeProcess::start(&registry);
    let pid = server.pid();
    // Idle: after start and one small request.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    write!(
        s,
        "GET /api/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        bearer()
    )
    .expect("request");
    assert_eq!(read_head(&mut s).0, 200);
    drop(s);
    std::thread::sleep(Duration::from_millis(500));
    let (idle_rss, idle_hwm) = memory(pid);

    let sampler = Sampler::start(pid);
    let t = Instant::now();
    let answer = upload(server.addr, "big", &src, &mut buf);
    let up = t.elapsed();
    let up_sampled = sampler.finish();
    let (_, up_hwm) = memory(pid);
    assert!(answer.contains("\"number\":1"), "{answer}");

    let reset = reset_peak(pid);
    let sampler = Sampler::start(pid);
    let t = Instant::now();
    let got = download(
        server.addr,
        "/api/v1/models/big/versions/1/files/model.bin",
        &mut buf,
    );
    let down = t.elapsed();
    let down_sampled = sampler.finish();
    let (end_rss, end_hwm) = memory(pid);
    assert_eq!(got, mib << 20);
    let cat_after = cat(&src);
    let clean = server.stop();

    println!(
        "idle after start      VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib_of(idle_rss),
        mib_of(idle_hwm)
    );
    println!(
        "upload {mib} MiB        VmHWM {:.1} MiB (largest VmRSS sampled {:.1} MiB); {:.1} s, {}",
        mib_of(up_hwm),
        mib_of(up_sampled),
        up.as_secs_f64(),
        mib_per_s(mib, up)
    );
    println!(
        "download {mib} MiB      VmHWM {:.1} MiB{} (largest VmRSS sampled {:.1} MiB); {:.1} s, {}",
        mib_of(end_hwm),
        if reset {
            ", peak reset before it"
        } else {
            ", since start: the peak could not be reset"
        },
        mib_of(down_sampled),
        down.as_secs_f64(),
        mib_per_s(mib, down)
    );
    println!(
        "after                 VmRSS {:.1} MiB; peak over idle: {:.1} MiB; stopped cleanly: {clean}",
        mib_of(end_rss),
        mib_of(up_hwm.max(end_hwm).saturating_sub(idle_hwm)),
    );
    println!(
        "cat of the source (context): {} / {}",
        mib_per_s(mib, cat_before),
        mib_per_s(mib, cat_after)
    );
    drop(server);
    std::fs::remove_file(&src).expect("remove the source");
    drop(tmp);
}
