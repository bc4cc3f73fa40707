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
