//! Helpers shared by integration tests.

pub mod store_suite;
