//! Blobs on their way into a layout: written to a temp file beside their
//! place and renamed into it once whole, so a reader never sees a partial
//! blob and a failed write leaves nothing behind.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use kiln_oci::{Digest, DigestWriter};
use tempfile::NamedTempFile;

use super::{persist, LayoutError};

/// A blob being streamed in: hashed as it is written, put in place by
/// [`BlobWriter::finish`] only when it is the digest it was opened for.
/// Dropped unfinished, its temp file is removed.
pub struct BlobWriter {
    file: DigestWriter<NamedTempFile>,
    target: PathBuf,
    expected: Digest,
}

impl BlobWriter {
    pub(super) fn new(tmp: NamedTempFile, target: PathBuf, expected: Digest) -> BlobWriter {
        BlobWriter {
            file: DigestWriter::new(tmp),
            target,
            expected,
        }
    }

    /// Checks the digest of what was written and renames the blob into place.
    ///
    /// # Errors
    /// [`LayoutError::Digest`] naming the blob's place when the bytes are
    /// something else (the temp file is removed), or file errors.
    pub fn finish(self) -> Result<(), LayoutError> {
        let (tmp, actual, _) = self.file.finish();
        LayoutError::check_digest(&self.target, actual, &self.expected)?;
        persist(tmp, &self.target)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A temp file beside a blob's place for a writer that verifies the bytes
/// itself (a registry download checks the digest as it streams).
/// Dropped without [`IncomingBlob::keep`], its temp file is removed.
pub struct IncomingBlob {
    tmp: NamedTempFile,
    target: PathBuf,
}

impl IncomingBlob {
    pub(super) fn new(tmp: NamedTempFile, target: PathBuf) -> IncomingBlob {
        IncomingBlob { tmp, target }
    }

    /// Where the writer writes.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the finished file into the blob's place.
    ///
    /// # Errors
    /// The rename fails.
    pub fn keep(self) -> Result<(), LayoutError> {
        persist(self.tmp, &self.target)
    }
}
