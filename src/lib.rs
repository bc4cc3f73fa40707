//! modelreg: an embeddable model registry.

pub mod digest;
pub mod domain;
pub mod error;
pub(crate) mod hashing;
pub mod store;

pub use digest::Digest;
pub use domain::*;
pub use error::{Error, Result};
