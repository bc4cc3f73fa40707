//! modelreg: an embeddable model registry.

pub mod digest;
pub mod error;
pub(crate) mod hashing;
pub mod store;

pub use digest::Digest;
pub use error::{Error, Result};
