//! Support shared by the integration tests: the backends a registry runs on and the
//! behaviour suite that every backend must pass.

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

pub mod backends;
pub mod registry_suite;
