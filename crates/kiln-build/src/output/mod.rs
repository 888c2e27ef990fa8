//! Where a finished image goes: registries, a `docker load` tar, an OCI
//! layout directory, and the digest files CI pipelines read.
//!
//! Every output is an [`sink::OutputSink`] handed the finished image
//! ([`BuiltImage`], statements, [`BlobStore`]); none knows the others.
//! [`push::RegistrySink`], [`docker_tar::DockerTarSink`] and
//! [`oci_layout::OciLayoutSink`] are made with their own extras (destinations,
//! paths, tags); the digest files are written after them, from the digest.

pub mod attest;
pub mod digest_files;
pub mod docker_tar;
pub(crate) mod early_push;
pub(crate) mod growing_layer;
pub mod oci_layout;
pub mod push;
pub(crate) mod sbom_scan;
pub mod sink;

use crate::model::blobs::BlobStore;
use crate::model::image::LayerRef;
use std::io;
use std::path::{Path, PathBuf};

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A registry operation failed.
    #[error("pushing to {destination}: {source}")]
    Push {
        /// The destination as given.
        destination: String,
        /// Why.
        source: Box<kiln_oci::RegistryError>,
    },
    /// A layer could not be read for the SBOM.
    #[error("reading layer {layer} for the SBOM: {source}")]
    Sbom {
        /// The layer digest.
        layer: kiln_oci::Digest,
        /// Why.
        source: kiln_layer::Error,
    },
    /// A blob needed for the output could not be fetched.
    #[error("fetching layer {digest}: {source}")]
    Fetch {
        /// The layer digest.
        digest: kiln_oci::Digest,
        /// Why.
        source: Box<kiln_oci::RegistryError>,
    },
}

/// A layout write in an output's words: every problem is with a file.
impl From<crate::layout::LayoutError> for OutputError {
    fn from(e: crate::layout::LayoutError) -> OutputError {
        use crate::layout::LayoutError;
        match e {
            LayoutError::Io { path, source } => OutputError::Io { path, source },
            LayoutError::Digest {
                path,
                actual,
                expected,
            } => OutputError::Io {
                path,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("has digest {actual}, expected {expected}"),
                ),
            },
            LayoutError::Document { path, source } => OutputError::Io {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, source),
            },
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The local file of a layer's blob, fetching it when it is remote.
pub(crate) async fn layer_file(
    blobs: &BlobStore,
    layer: &LayerRef,
) -> Result<PathBuf, OutputError> {
    blobs
        .local_path(layer)
        .await
        .map_err(|source| OutputError::Fetch {
            digest: layer.descriptor.digest.clone(),
            source: Box::new(source),
        })
}
