//! The registry client: options, auth challenges, transfers.

mod blob_stream;
mod challenge;
mod client;
mod error;
mod flags;
mod growing_upload;
mod manifest_settle;
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
pub use flags::{
    parse_client_cert, parse_host_path, parse_pull_routes, FlagError, PullRoutes, REGISTRY_MAP_ENV,
    REGISTRY_MIRROR_ENV,
};
pub use growing_upload::{GrowingBlob, GrowingEnd};
pub use meter::TransferObserver;
pub use options::{Access, ClientCert, RegistryOptions};
pub use pull::{PulledImage, CONFIG_SIZE_LIMIT, MAX_LAYERS};
pub use retry::{RetryPolicy, Transient};
