//! Child processes for multi-process tests: the test binary runs itself with one
//! test selected and environment variables telling that test what to do.

use std::ffi::OsStr;
use std::process::{Child, Command, Output, Stdio};

/// Runs this test binary with only `test` selected (output piped) and `env` set.
pub fn spawn_child<K, V>(test: &str, env: impl IntoIterator<Item = (K, V)>) -> Child
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let exe = std::env::current_exe().expect("current test binary");
    Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// Waits for children off the async workers and asserts each ran its one test
/// and passed.
pub async fn wait_children(children: Vec<Child>) -> Vec<Output> {
    let outputs: Vec<Output> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait for child"))
            .collect()
    })
    .await
    .expect("join");
    for (i, out) in outputs.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child {i} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // Guards against the filter matching nothing, which also exits 0.
        assert!(
            stdout.contains("1 passed"),
            "child {i} ran no test:\n{stdout}"
        );
    }
    outputs
}
