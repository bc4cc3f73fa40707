//! Capturing the training environment of the running process.
//!
//! Kept out of [`domain`](crate::domain) because it reads the machine (files under
//! `/proc` and `/etc`, environment variables, and `nvidia-smi` when present); the
//! [`Environment`] it fills in is plain data.

use std::process::Command;
use std::time::Duration;

use std::path::Path;

use crate::NewVersion;
use crate::domain::{CodeRef, Environment};

impl Environment {
    /// What the running process can detect about itself: OS and distribution,
    /// CPU architecture, model and count, the `modelreg` version, the CUDA version
    /// (from `CUDA_VERSION`), and GPU names and driver version from `nvidia-smi` if
    /// it is installed. Anything that cannot be detected is left empty; this never
    /// fails. Blocking: it may run `nvidia-smi` (bounded to a few seconds).
    ///
    /// ```
    /// let env = modelreg::Environment::capture();
    /// assert_eq!(env.arch.as_deref(), Some(std::env::consts::ARCH));
    /// ```
    pub fn capture() -> Environment {
        let mut env = Environment {
            arch: Some(std::env::consts::ARCH.to_owned()),
            os: Some(os_description()),
            cpu: cpu_model(),
            cpu_count: std::thread::available_parallelism()
                .ok()
                .and_then(|n| u32::try_from(n.get()).ok()),
            cuda: std::env::var("CUDA_VERSION").ok().filter(|v| !v.is_empty()),
            ..Environment::default()
        };
        env.frameworks
            .insert("modelreg".into(), env!("CARGO_PKG_VERSION").into());
        if let Some((gpus, driver)) = nvidia_gpus() {
            env.gpus = gpus;
            env.driver = driver;
        }
        env
    }
}

fn os_description() -> String {
    let family = std::env::consts::OS;
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        });
    match pretty {
        Some(p) => format!("{family} ({p})"),
        None => family.to_owned(),
    }
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// GPU names and the driver version, from `nvidia-smi`, waiting at most 5 s.
fn nvidia_gpus() -> Option<(Vec<String>, Option<String>)> {
    let mut child = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait().ok()? {
            Some(status) if status.success() => break,
            Some(_) => return None,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                return None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    let mut gpus = Vec::new();
    let mut driver = None;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split(',').map(str::trim);
        gpus.push(parts.next()?.to_owned());
        driver = parts.next().map(str::to_owned).or(driver);
    }
    Some((gpus, driver))
}

/// Fills in what `version` asked to capture when its command runs: the
/// environment ([`NewVersion::environment_captured`]) and the code commit
/// ([`NewVersion::code_from_git`]). Blocking: it runs `git` and may run
/// `nvidia-smi`.
pub(crate) fn fill_in(mut version: NewVersion) -> NewVersion {
    if std::mem::take(&mut version.capture_environment) {
        let mut captured = Environment::capture();
        // Frameworks the caller named win over what capture detects.
        let given = &version.provenance.environment;
        captured
            .frameworks
            .extend(given.frameworks.iter().map(|(k, v)| (k.clone(), v.clone())));
        captured
            .runtimes
            .extend(given.runtimes.iter().map(|(k, v)| (k.clone(), v.clone())));
        captured
            .extra
            .extend(given.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        version.provenance.environment = captured.into();
    }
    if let Some(dir) = version.capture_code.take() {
        version.provenance.code = CodeRef::from_git(&dir);
    }
    version
}

impl CodeRef {
    /// The commit checked out in the git working tree at `dir`: `HEAD`, whether
    /// tracked or untracked files differ from it (`dirty`), and the URL of the
    /// `origin` remote if there is one. `None` when `git` is not installed or
    /// `dir` is not in a repository. Blocking: it runs `git`.
    pub fn from_git(dir: &Path) -> Option<CodeRef> {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let commit = git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty())?;
        let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
        let repository = git(&["config", "--get", "remote.origin.url"]).filter(|r| !r.is_empty());
        Some(CodeRef {
            repository,
            commit,
            dirty,
        })
    }
}
