//! OCI and Docker image-spec types: the data that passes between kiln's rooms.
//!
//! Everything here is values and their parsing; nothing reads a file or
//! touches the network. The registry client and credentials live in
//! `kiln-oci`, which re-exports these modules.
//!
//! * [`digest`]: content digests and a hashing writer.
//! * [`mod@error`]: an error and its causes as one line of text.
//! * [`media`]: media type strings and layer compression.
//! * [`mod@reference`]: image references with Docker's normalisation.
//! * [`manifest`], [`image`], [`platform`]: manifests, indexes, the image
//!   config and platform matching, as serde structs that keep unknown fields.
//!
//! ```
//! use kiln_image_spec::{Digest, Platform, Reference};
//! let r: Reference = "busybox".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.api_host(), "registry-1.docker.io");
//! let p: Platform = "linux/arm64".parse().unwrap();
//! assert!(p.matches(&"linux/arm64/v8".parse().unwrap()));
//! let d = Digest::sha256_of(b"hello");
//! assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
//! ```
#![deny(missing_docs)]

pub mod digest;
pub mod error;
pub mod image;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod reference;

pub use digest::{Digest, DigestError, DigestWriter};
pub use image::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use manifest::{Descriptor, Index, Manifest, ManifestError};
pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError};
