//! A `modelreg::server::Server` started by a test on a free loopback port, and
//! the Python interpreter that holds the real HTTP clients
//! (`huggingface_hub`, `mlflow`).
//!
//! `MODELREG_TEST_PYTHON` names that interpreter; `.ci/run` installs the
//! clients from PyPI into a venv and sets it. Like the object-storage servers
//! (`servers.rs`), whether it is configured is decided at compile time
//! (`build.rs` sets the cfg `modelreg_pyclients`), so the client tests show as
//! ignored without it, and in CI `python_clients_configured_in_ci` fails.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use modelreg::Registry;
use modelreg::server::{Server, ServerOptions};

/// A server running on its own runtime thread until dropped.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT` with no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
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

/// Starts a server over `registry` on 127.0.0.1 with a free port, on a
/// multi-threaded runtime of its own (so blocking test code can call it).
pub fn start(registry: Registry, options: ServerOptions) -> Running {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            addr_tx
                .send(listener.local_addr().expect("its address"))
                .expect("the test waits for the address");
            let server = Server::new(registry, options);
            server
                .serve(listener, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("the server runs");
        });
    });
    let addr = addr_rx.recv().expect("the server started");
    Running {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// The interpreter with the real clients. Panics when it is not configured:
/// only tests that are ignored without it call this.
pub fn python() -> String {
    match std::env::var("MODELREG_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    {
        Some(p) if cfg!(modelreg_pyclients) => p,
        _ => panic!(
            "the client tests need MODELREG_TEST_PYTHON (a Python with huggingface_hub and \
             mlflow-skinny) and the `serve` feature; `bash .ci/run` installs them and sets it"
        ),
    }
}

/// Runs `script` with the clients' interpreter in `cwd`, with `env` added;
/// panics with its output if it fails.
pub fn run_python(script: &str, cwd: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(script).current_dir(cwd);
    // No telemetry or update checks from the clients, and nothing read from the
    // user's own configuration.
    cmd.env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
        .env("HF_HOME", cwd.join("hf-home"))
        .env_remove("HF_TOKEN")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the client interpreter");
    assert!(
        out.status.success(),
        "the client script failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An answer read by [`raw_request`].
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as received: shorter than `Content-Length` when the server cut
    /// the connection (a reset ends the body, it is not an error here).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection, with `path` sent exactly as
/// given (no normalisation of `..` or percent escapes, unlike real clients),
/// and the whole answer read until the server closes the connection.
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    use std::io::{Read, Write};

    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the server");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("set a read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset is how a server aborts a response mid-body.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete header in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// The data of a chunked body, as far as it is complete.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        let data = &raw[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        raw = data.get(size + 2..).unwrap_or_default();
    }
    out
}
