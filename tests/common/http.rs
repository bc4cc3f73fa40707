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

/// An HTTP response as a test reads it.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Whether the body ended as announced (`Content-Length` bytes, or the last
    /// chunk): a server that cuts a transfer short leaves this `false`.
    pub complete: bool,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON. Panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What [`raw_request`] answers.
pub type RawResponse = Reply;

/// [`request`] without a body.
pub fn raw_request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, method, path, headers, b"")
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole answer.
/// A plain socket, so hostile requests (raw `..` in paths, bad headers) reach
/// the server exactly as written.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("a timeout");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    // The server may answer (and close) before reading a large body: ignore
    // write errors and read what it said.
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_reply(&raw, method == "HEAD")
}

fn parse_reply(raw: &[u8], head_only: bool) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if head_only || status == 204 || status == 304 {
        return Reply {
            status,
            headers,
            body: Vec::new(),
            complete: true,
        };
    }
    if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let (body, complete) = dechunk(rest);
        return Reply {
            status,
            headers,
            body,
            complete,
        };
    }
    let complete = match find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => rest.len() == n,
        None => true,
    };
    Reply {
        status,
        headers,
        body: rest.to_vec(),
        complete,
    }
}

fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (out, false);
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            return (out, true);
        }
        if rest.len() < size + 2 {
            out.extend_from_slice(&rest[..rest.len().min(size)]);
            return (out, false);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A `multipart/form-data` body: `(field name, file name, bytes)` per part;
/// returns the content type (with its boundary) and the body.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "modelreg-test-boundary-7d1f3a";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Where screenshots go: `<target>/ui-screenshots/` (the test binary is in
/// `<target>/debug/deps/`).
pub fn screenshot_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let target = exe
        .ancestors()
        .nth(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"));
    target.join("ui-screenshots")
}
