//! Registry credentials and the registry client.
//!
//! This crate knows nothing about Dockerfiles. It owns every byte that
//! crosses the network to a registry and the credentials that go with it.
//! The image-spec types ([`Digest`], media types, references, manifests and
//! configs) live in `kiln-image-spec`; they are re-exported here under their
//! old paths (`kiln_oci::Digest`, `kiln_oci::media`) so callers that also
//! talk to registries need one dependency.
//!
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
pub mod registry;

pub use kiln_image_spec::{digest, image, manifest, media, platform, reference};
pub use kiln_image_spec::{
    ContainerConfig, Descriptor, Digest, DigestError, DigestWriter, Healthcheck, History,
    ImageConfig, Index, Manifest, ManifestError, Platform, PlatformError, Reference,
    ReferenceError, RootFs,
};
pub use registry::{
    Access, BlobSource, BlobStream, GrowingBlob, GrowingEnd, PulledImage, PushOutcome,
    RegistryClient, RegistryError, RegistryOptions, Repository, TransferObserver,
};
