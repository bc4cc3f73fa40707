//! Tells the test suites which object-storage servers they can run against, at
//! compile time, so that a suite without its server is reported by the test runner
//! as *ignored* rather than passing without running (libtest has no way to skip a
//! test at run time).
//!
//! - `modelreg_s3`: `MODELREG_TEST_S3_URL` is set (not empty) and the `aws` feature
//!   is on;
//! - `modelreg_azure`: `MODELREG_TEST_AZURE_URL` is set and the `azure` feature is on;
//! - `modelreg_pyclients`: `MODELREG_TEST_PYTHON` is set (a Python with the real
//!   `huggingface_hub` and `mlflow` clients, installed by `.ci/run`) and the
//!   `serve` feature is on;
//! - `modelreg_model_signing`: `MODELREG_TEST_PYTHON` is set (the same Python,
//!   which `.ci/run` also gives the real `model-signing` package); no feature
//!   needed;
//! - `modelreg_hfhub`: `MODELREG_TEST_HF_HUB_CLIENT` names a build of
//!   `.ci/hf-hub-client` (the Rust `hf-hub` crate) and the `serve` feature is on;
//! - `modelreg_chromium`: `MODELREG_TEST_CHROMIUM` names a Chromium binary (Debian's
//!   `chromium`, installed by `.ci/run`) that loads the web UI's pages headless, and
//!   the `serve` feature is on;
//! - `modelreg_axe`: `MODELREG_TEST_AXE` names axe-core's `axe.min.js` (the npm
//!   package `axe-core`, installed by `.ci/run`), which the web UI's browser
//!   check runs in every page, and the `serve` feature is on.
//!
//! The server tests carry `#[cfg_attr(not(modelreg_s3), ignore = "…")]`; see
//! `tests/common/servers.rs` for the variables and for the test that fails in CI
//! when a server is missing. The library itself never reads these cfgs.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(modelreg_s3)");
    println!("cargo::rustc-check-cfg=cfg(modelreg_azure)");
    println!("cargo::rustc-check-cfg=cfg(modelreg_pyclients)");
    println!("cargo::rustc-check-cfg=cfg(modelreg_hfhub)");
    println!("cargo::rustc-check-cfg=cfg(modelreg_chromium)");
    println!("cargo::rustc-check-cfg=cfg(modelreg_axe)");
    println!("cargo::rustc-check-cfg=cfg(modelreg_oci)");
    println!("cargo::rustc-check-cfg=cfg(modelreg_model_signing)");
    for (var, feature, cfg) in [
        ("MODELREG_TEST_S3_URL", "CARGO_FEATURE_AWS", "modelreg_s3"),
        (
            "MODELREG_TEST_AZURE_URL",
            "CARGO_FEATURE_AZURE",
            "modelreg_azure",
        ),
        (
            "MODELREG_TEST_PYTHON",
            "CARGO_FEATURE_SERVE",
            "modelreg_pyclients",
        ),
        (
            "MODELREG_TEST_HF_HUB_CLIENT",
            "CARGO_FEATURE_SERVE",
            "modelreg_hfhub",
        ),
        (
            "MODELREG_TEST_CHROMIUM",
            "CARGO_FEATURE_SERVE",
            "modelreg_chromium",
        ),
        ("MODELREG_TEST_AXE", "CARGO_FEATURE_SERVE", "modelreg_axe"),
        (
            "MODELREG_TEST_OCI_REGISTRY",
            "CARGO_FEATURE_OCI",
            "modelreg_oci",
        ),
        // Any feature set will do: the interop test needs only the library.
        ("MODELREG_TEST_PYTHON", "", "modelreg_model_signing"),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        let configured = std::env::var_os(var).is_some_and(|v| !v.is_empty());
        if configured && (feature.is_empty() || std::env::var_os(feature).is_some()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
