//! `modelreg serve` as a process: what it refuses, what it says at startup, and
//! that SIGTERM stops it cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::request;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modelreg"));
    c.env_remove("MODELREG_REGISTRY")
        .env_remove("MODELREG_SERVE_TOKENS")
        .env_remove("MODELREG_SERVE_TOKENS_FILE")
        .env("MODELREG_ACTOR", "tester");
    c
}

fn registry() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("m.bin");
    std::fs::write(&src, b"weights").expect("write");
    let out = bin()
        .args(["--registry"])
        .arg(dir.path().join("reg"))
        .args(["version", "register", "fraud", "--no-code"])
        .arg(&src)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn without_tokens_it_refuses_to_listen_beyond_loopback() {
    let dir = registry();
    let out = bin()
        .arg("--registry")
        .arg(dir.path().join("reg"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without tokens"), "{err}");
    let out = bin()
        .arg("--registry")
        .arg(dir.path().join("reg"))
        .args(["serve", "--listen", "localhost-ish"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .arg("--registry")
        .arg(dir.path().join("nothing-here"))
        .args(["serve"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "no registry there");
    let out = bin()
        .arg("--registry")
        .arg(dir.path().join("reg"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MODELREG_SERVE_TOKENS", "alice:owner:0123456789abcdef")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown role is a usage error"
    );
}

#[test]
fn it_serves_with_tokens_and_stops_on_sigterm() {
    let dir = registry();
    let mut child = bin()
        .arg("--registry")
        .arg(dir.path().join("reg"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "MODELREG_SERVE_TOKENS",
            "reader@example.com:reader:reader-token-0123456789",
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = lines.next().expect("a startup line").expect("text");
    assert!(first.contains("tokens required for writes"), "{first}");
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .expect("the address in the startup line")
        .parse()
        .expect("an address");
    let anonymous = request(addr, "GET", "/api/v1/models", &[], b"");
    assert_eq!(anonymous.status, 401);
    let ok = request(
        addr,
        "GET",
        "/api/v1/models",
        &[("Authorization", "Bearer reader-token-0123456789")],
        b"",
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()[0]["name"], "fraud");

    // An open event stream must not hold the shutdown up.
    let mut sse = std::net::TcpStream::connect(addr).expect("connect");
    std::io::Write::write_all(
        &mut sse,
        b"GET /api/v1/models/fraud/events HTTP/1.1\r\nHost: x\r\n\
          Authorization: Bearer reader-token-0123456789\r\n\r\n",
    )
    .expect("request");
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut sse, &mut head).expect("the stream's status line");
    assert_eq!(&head, b"HTTP/1.1 200");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopping")), "{rest:?}");
    assert!(
        !rest.iter().any(|l| l.contains("abandoned")),
        "the event stream held the shutdown up: {rest:?}"
    );
    drop(sse);
}

#[test]
fn with_json_it_says_where_it_listens_on_stdout() {
    let dir = registry();
    let mut child = bin()
        .arg("--registry")
        .arg(dir.path().join("reg"))
        .args(["--json", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a startup line").expect("text");
    let ready: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    assert_eq!(ready["read_only"], true, "{ready}");
    let url = ready["listening"].as_str().expect("listening");
    let addr = url
        .strip_prefix("http://")
        .expect("an http URL")
        .parse()
        .expect("an address with the port it picked");
    assert_eq!(ready["openapi"], format!("{url}/openapi.json"));
    assert_eq!(ready["hf_endpoint"], url);
    let spec = request(addr, "GET", "/openapi.json", &[], b"");
    assert_eq!(spec.status, 200);
    let models = request(addr, "GET", "/api/v1/models", &[], b"");
    assert_eq!(models.status, 200, "read-only still reads from loopback");
    assert_eq!(models.json()[0]["name"], "fraud");
    child.kill().expect("kill");
    child.wait().expect("wait");
}
