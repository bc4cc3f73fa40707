//! Support shared by the integration tests: the store conformance suite, the
//! backends a registry runs on, and the registry behaviour and lifecycle suites.

// Each test crate compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

/// Asserts that `$result` is an `Err` matching `$pattern` and evaluates to the
/// error, so the caller can look at its fields. On mismatch the panic shows what
/// came back instead.
macro_rules! assert_err {
    ($result:expr, $($pattern:tt)+) => {
        match $result {
            Err(e) => {
                assert!(
                    matches!(e, $($pattern)+),
                    "expected {}, got {:?}",
                    stringify!($($pattern)+),
                    e
                );
                e
            }
            Ok(v) => panic!("expected {}, got Ok({:?})", stringify!($($pattern)+), v),
        }
    };
}

/// A number from the environment (a trial or operation count), or `default`.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub mod backends;
pub mod children;
pub mod faulty_store;
pub mod fs;
#[cfg(feature = "serve")]
pub mod http;
pub mod lifecycle_suite;
pub mod registry_suite;
#[cfg(feature = "serve")]
pub mod rest;
pub mod retention_suite;
pub mod servers;
pub mod serving_suite;
pub mod signing_suite;
pub mod targets;
// Its helpers fail by panicking on `unwrap`, as `tests/store_conformance.rs` allows
// for its whole crate; here the allowance must be on the module.
#[allow(clippy::unwrap_used)]
pub mod store_suite;
