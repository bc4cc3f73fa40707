//! Real object-storage servers for the suites, found through the environment.
//!
//! - `MODELREG_TEST_S3_URL`, e.g. `s3://modelreg-test`: an S3-protocol server (moto
//!   in CI), configured by the standard `AWS_*` variables (`AWS_ENDPOINT`,
//!   `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, …). Needs the `aws` feature.
//! - `MODELREG_TEST_AZURE_URL`, e.g. `az://modelreg-test`: Azure Blob (Azurite in
//!   CI), configured by `AZURE_*` (`AZURE_STORAGE_USE_EMULATOR=true`). Needs the
//!   `azure` feature.
//!
//! The bucket or container must exist; every test works below a prefix of its own.
//! `.ci/run` starts both servers and sets all of this. When a server is not
//! configured its tests pass without running and say so on stderr, once per test
//! binary — unless `CI` is set, where a missing server fails the test.

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An object-storage server some tests run against.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    /// S3 protocol (moto).
    S3,
    /// Azure Blob (Azurite).
    Azure,
}

static S3_NOTICE: Once = Once::new();
static AZURE_NOTICE: Once = Once::new();
static NEXT_PREFIX: AtomicUsize = AtomicUsize::new(0);

impl Server {
    /// The variable naming the server's base URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Server::S3 => "MODELREG_TEST_S3_URL",
            Server::Azure => "MODELREG_TEST_AZURE_URL",
        }
    }

    fn feature(self) -> (&'static str, bool) {
        match self {
            Server::S3 => ("aws", cfg!(feature = "aws")),
            Server::Azure => ("azure", cfg!(feature = "azure")),
        }
    }

    fn notice(self) -> &'static Once {
        match self {
            Server::S3 => &S3_NOTICE,
            Server::Azure => &AZURE_NOTICE,
        }
    }

    /// The server's base URL, or `None` (after saying so) when the tests cannot run
    /// against it. Panics when `CI` is set and the server is not configured.
    pub fn base_url(self) -> Option<String> {
        let var = self.env_var();
        let (feature, built_with) = self.feature();
        let url = std::env::var(var).ok().filter(|u| !u.is_empty());
        let why_not = match (&url, built_with) {
            (Some(url), true) => return Some(url.trim_end_matches('/').to_owned()),
            (None, _) => format!("{var} is not set"),
            (Some(_), false) => format!("this test build lacks the `{feature}` feature"),
        };
        if in_ci() {
            panic!("CI is set but the {self:?} server suites cannot run: {why_not}");
        }
        self.notice().call_once(|| {
            // Straight to the process's stderr: the test harness captures `eprintln!`
            // of passing tests, and this must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\nNOTE: the {self:?} object-storage tests did NOT run ({why_not}); \
                 they pass vacuously. `bash .ci/run` starts the servers and runs them.\n"
            );
        });
        None
    }

    /// A URL below the server's base URL that no other test uses, or `None` as
    /// [`base_url`](Self::base_url) says.
    pub fn unique_url(self) -> Option<String> {
        let base = self.base_url()?;
        Some(format!("{base}/{}", unique_name()))
    }
}

/// A name no other test in this run or an earlier one uses: process, time, counter.
pub fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{nanos}-{}",
        std::process::id(),
        NEXT_PREFIX.fetch_add(1, Ordering::SeqCst)
    )
}

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}
