//! OCI and Docker image types, image references, and the registry client.
//!
//! This crate knows nothing about Dockerfiles. It owns the data that passes
//! between kiln's rooms ([`Digest`], media types, manifests and configs) and
//! every byte that crosses the network to a registry.
//!
//! ```
//! use kiln_oci::Digest;
//! let d = Digest::sha256_of(b"hello");
//! assert_eq!(d.to_string().len(), "sha256:".len() + 64);
//! let parsed: Digest = d.to_string().parse().unwrap();
//! assert_eq!(parsed, d);
//! ```
#![deny(missing_docs)]

pub mod auth;
pub mod digest;
pub mod image;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod reference;
pub mod registry;

pub use digest::{Digest, DigestError, DigestWriter};
pub use image::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use manifest::{Descriptor, Index, Manifest, ManifestError};
pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError};
pub use registry::{
    Access, BlobSource, BlobStream, PulledImage, PushOutcome, RegistryClient, RegistryError,
    RegistryOptions, Repository,
};
