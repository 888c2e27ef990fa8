//! The registry client: options, auth challenges, transfers.

mod blob_stream;
mod challenge;
mod client;
mod error;
mod meter;
mod options;
mod pull;
mod retry;
mod transport;

pub use blob_stream::BlobStream;
pub use challenge::Challenge;
pub use client::{
    BlobSource, FetchedManifest, ManifestHead, ManifestPut, PushOutcome, RegistryClient,
    Repository, MANIFEST_SIZE_LIMIT,
};
pub use error::{OciError, OciErrors, RegistryError};
pub use meter::TransferObserver;
pub use options::{
    parse_client_cert, parse_host_path, parse_registry_map, Access, ClientCert, RegistryOptions,
};
pub use pull::{PulledImage, CONFIG_SIZE_LIMIT, MAX_LAYERS};
pub use retry::{RetryPolicy, Transient};
