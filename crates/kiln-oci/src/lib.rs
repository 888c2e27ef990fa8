//! OCI and Docker image types, image references, and the registry client.
//!
//! This crate knows nothing about Dockerfiles. It owns the data that passes
//! between kiln's rooms ([`Digest`], media types, manifests and configs) and
//! every byte that crosses the network to a registry.
//!
//! * [`reference`]: image references with Docker's normalisation.
//! * [`manifest`], [`image`], [`platform`]: manifests, indexes, the image
//!   config and platform matching, as serde structs that keep unknown fields.
//! * [`auth`]: credentials from Docker config files and credential helpers.
//! * [`builtin_helpers`]: the Kaniko fork's `--credential-helpers` sources.
//! * [`registry`]: the async registry client (auth challenges, mirrors,
//!   retries, verified blob streams, chunked uploads, cross-repo mounts).
//!
//! ```
//! use kiln_oci::{Digest, Platform, Reference};
//! let r: Reference = "busybox".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.api_host(), "registry-1.docker.io");
//! let p: Platform = "linux/arm64".parse().unwrap();
//! assert!(p.matches(&"linux/arm64/v8".parse().unwrap()));
//! let d = Digest::sha256_of(b"hello");
//! assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
//! ```
//!
//! Pulling an image's manifest and config:
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_oci::RegistryError> {
//! use kiln_oci::auth::CredentialStore;
//! use kiln_oci::{Platform, RegistryClient, RegistryOptions};
//! let options = RegistryOptions { credentials: CredentialStore::from_env(), ..Default::default() };
//! let client = RegistryClient::new(options)?;
//! let image = client.pull_image(&"busybox".parse().unwrap(), &Platform::host()).await?;
//! println!("{} has {} layers", image.digest, image.manifest.layers.len());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod auth;
pub mod builtin_helpers;
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
    RegistryOptions, Repository, TransferObserver,
};
