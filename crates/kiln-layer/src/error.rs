//! The crate's one error type. Every variant names what it was working on: the
//! entry path inside the layer, the file on disk, or the layer's label (usually
//! its digest) so that a failure deep inside a build can be traced to its input.

use kiln_image_spec::Digest;
use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while writing, reading or extracting a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation on a host path failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("create temp file in", "read", ...).
        action: &'static str,
        /// The host path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Writing one entry into the layer stream failed.
    #[error("write layer entry {entry:?}: {source}")]
    WriteEntry {
        /// The entry path inside the layer.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },

    /// Finishing the layer stream (compressor, flush, rename) failed.
    #[error("finish layer blob in {dir}: {source}")]
    Finish {
        /// The directory the blob was being written into.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// An entry path is not acceptable in a layer (empty, `..`, NUL, ...).
    #[error("invalid layer entry path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A regular file's content did not match its declared size (the file
    /// changed while it was being archived, or the reader was short).
    #[error("layer entry {entry:?}: declared {expected} bytes but the content had {actual}")]
    SizeMismatch {
        /// The entry path inside the layer.
        entry: String,
        /// The size written in the header.
        expected: u64,
        /// The bytes the content actually had (at least).
        actual: u64,
    },

    /// Reading or decompressing a layer stream failed.
    #[error("read layer {layer}: {source}")]
    Read {
        /// The layer's label (digest or file name).
        layer: String,
        /// The underlying error.
        source: io::Error,
    },

    /// A tar header in a layer could not be parsed.
    #[error("layer {layer}: bad tar entry {entry:?}: {source}")]
    BadEntry {
        /// The layer's label.
        layer: String,
        /// The entry path, as far as it could be read.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },

    /// The uncompressed stream's sha256 differs from the expected diff_id.
    #[error("layer {layer}: diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The layer's label.
        layer: String,
        /// The diff_id the caller expected.
        expected: Digest,
        /// The digest of the stream actually read.
        actual: Digest,
    },

    /// An entry would write outside the extraction root or is otherwise hostile.
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    Unsafe {
        /// The layer's label.
        layer: String,
        /// The entry path as found in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },

    /// Applying one entry to the extraction root failed.
    #[error("layer {layer}: extract {entry:?}: {action}: {source}")]
    Extract {
        /// The layer's label.
        layer: String,
        /// The entry path inside the layer.
        entry: String,
        /// What was being done ("create file", "chown", ...).
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },

    /// Walking a directory tree to archive it failed.
    #[error("walk {path}: {source}")]
    Walk {
        /// The path where the walk failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Options that contradict each other or are out of range.
    #[error("invalid layer options: {0}")]
    Options(String),
}
