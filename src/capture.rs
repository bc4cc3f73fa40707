//! Capturing the training environment of the running process.
//!
//! Kept out of [`domain`](crate::domain) because it reads the machine (files under
//! `/proc` and `/etc`, environment variables, and `nvidia-smi` when present); the
//! [`Environment`] it fills in is plain data.

use std::process::Command;
use std::time::Duration;

use crate::domain::Environment;

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
