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
//! `.ci/run` starts both servers and sets all of this.
//!
//! Whether a server is configured is decided when the tests are **compiled**:
//! `build.rs` sets the cfg `modelreg_s3` (`modelreg_azure`) when the variable is set
//! and the feature is on, and every test that needs the server carries
//! `#[cfg_attr(not(modelreg_s3), ignore = "…")]`. So without a server its tests
//! show as *ignored* in the summary, never as passed. Changing a variable rebuilds
//! the tests. In CI (`CI` set) a missing server fails
//! `object_servers::servers_configured_in_ci`, and a server test run anyway
//! (`--include-ignored`) without its server fails.

use std::sync::atomic::{AtomicUsize, Ordering};

/// An object-storage server some tests run against.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    /// S3 protocol (moto).
    S3,
    /// Azure Blob (Azurite).
    Azure,
}

static NEXT_PREFIX: AtomicUsize = AtomicUsize::new(0);

impl Server {
    /// Both servers.
    pub const ALL: [Server; 2] = [Server::S3, Server::Azure];

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

    /// Whether this build runs the server's tests (`build.rs` saw its variable and
    /// feature), and if not, why not.
    pub fn compiled_in(self) -> Result<(), String> {
        let compiled = match self {
            Server::S3 => cfg!(modelreg_s3),
            Server::Azure => cfg!(modelreg_azure),
        };
        let (feature, built_with) = self.feature();
        match (compiled, built_with) {
            (true, _) => Ok(()),
            (false, false) => Err(format!("this test build lacks the `{feature}` feature")),
            (false, true) => Err(format!(
                "{} was not set when the tests were built",
                self.env_var()
            )),
        }
    }

    /// The server's base URL. Panics when it is not configured: only tests that
    /// are ignored without the server call this (see the module docs).
    pub fn base_url(self) -> String {
        let var = self.env_var();
        match std::env::var(var).ok().filter(|u| !u.is_empty()) {
            Some(url) if self.compiled_in().is_ok() => url.trim_end_matches('/').to_owned(),
            Some(_) => panic!(
                "the {self:?} server tests cannot run: {}",
                self.compiled_in().err().unwrap_or_default()
            ),
            None => panic!(
                "the {self:?} server tests need {var} (and the `{}` feature); \
                 `bash .ci/run` starts the servers and sets it",
                self.feature().0
            ),
        }
    }

    /// A URL below the server's base URL that no other test uses.
    pub fn unique_url(self) -> String {
        format!("{}/{}", self.base_url(), unique_name())
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
