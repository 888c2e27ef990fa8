//! What every output is: an [`OutputSink`] is handed the finished image
//! and writes it somewhere. Each sink is made with what it alone needs
//! (destinations, a path, tags), so a new output is one new type
//! implementing the trait, added to the list the engine builds from the
//! options; nothing else changes.

use super::attest::Attached;
use super::push::PushReport;
use super::OutputError;
use crate::model::assemble::BuiltImage;
use crate::model::blobs::BlobStore;

/// The assembled image, as every output sees it.
#[derive(Clone, Copy)]
pub struct Finished<'a> {
    /// The image: layers, config, manifest.
    pub image: &'a BuiltImage,
    /// Its statements and the index around it, when asked for.
    pub attached: Option<&'a Attached>,
    /// Where its layers' blobs are (fetched when remote).
    pub blobs: &'a BlobStore,
}

/// A destination an output pushed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The destination as given.
    pub destination: String,
    /// What the push did.
    pub report: PushReport,
}

/// What an output did that the build reports: the pushes (only a registry
/// output has any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Each destination pushed, in order.
    pub pushed: Vec<Pushed>,
}

/// Somewhere a finished image is written.
#[async_trait::async_trait]
pub trait OutputSink: Send + Sync {
    /// Writes `finished` to this output.
    ///
    /// # Errors
    /// Whatever stopped the write: a file, a registry, a layer to fetch.
    async fn write(&self, finished: &Finished<'_>) -> Result<Written, OutputError>;
}
