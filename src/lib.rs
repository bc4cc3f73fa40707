//! modelreg: an embeddable model registry.

pub mod digest;
pub mod domain;
pub mod error;
pub(crate) mod hashing;
pub mod registry;
pub mod store;

pub use digest::Digest;
pub use domain::*;
pub use error::{Error, Result};
pub use registry::{
    ArtifactSource, CreateModel, FetchOptions, FetchReport, IntoModelName, IntoVersionRef,
    NewVersion, Registry, RegistryBuilder, RetryPolicy, VerifyReport, VersionFilter,
};
