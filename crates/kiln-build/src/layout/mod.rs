//! The OCI image layout format, written and read in one place: the
//! `oci-layout` marker, `blobs/<algorithm>/<hex>`, and `index.json`.
//!
//! The layer cache (`--cache-repo oci:PATH`), `kiln warm`'s base images,
//! `--oci-layout-path`, `--tar-path` and the several-platform join all keep
//! images in this form; they differ only in what they put in it. This module
//! sits below all of them and imports nothing else of the crate.
//!
//! * [`Layout`]: a layout directory: its skeleton, blobs put atomically
//!   (a temp file beside the target, then a rename, so a reader never sees a
//!   partial blob) and read back verified, `index.json` read and written.
//! * [`refs`]: editing `index.json`'s list under
//!   `org.opencontainers.image.ref.name`, keeping every other entry.
//! * [`tar`]: the same entries as one tar archive.
//! * [`lock`]: the `flock` that serialises `index.json` rewrites when
//!   several processes share a layout.

pub mod blob;
pub mod lock;
pub mod refs;
pub mod tar;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use kiln_oci::{Digest, Index, ManifestError};

pub use blob::{BlobWriter, IncomingBlob};
pub use refs::REF_NAME;

/// The marker file's name.
pub const MARKER_FILE: &str = "oci-layout";
/// The marker file's content: the layout version this writes.
pub const MARKER: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The top index's file name.
pub const INDEX_FILE: &str = "index.json";
/// The file whose `flock` serialises `index.json` rewrites.
const INDEX_LOCK_FILE: &str = "index.json.lock";

/// Where the blob `digest` lives inside a layout, relative to its root:
/// `blobs/sha256/<hex>` (the same name in a directory and in a tar).
pub fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// What went wrong with a layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Bytes that were to be a blob hash to something else.
    #[error("{}: has digest {actual}, expected {expected}", path.display())]
    Digest {
        /// The blob file, or the file its bytes came from.
        path: PathBuf,
        /// What the bytes hash to.
        actual: Digest,
        /// What they were meant to be.
        expected: Digest,
    },
    /// `index.json` does not parse.
    #[error("{}: {source}", path.display())]
    Document {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ManifestError,
    },
}

impl LayoutError {
    /// [`LayoutError::Digest`] naming `path` unless `actual` is `expected`.
    pub(crate) fn check_digest(
        path: &Path,
        actual: Digest,
        expected: &Digest,
    ) -> Result<(), LayoutError> {
        if &actual == expected {
            return Ok(());
        }
        Err(LayoutError::Digest {
            path: path.to_path_buf(),
            actual,
            expected: expected.clone(),
        })
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LayoutError {
        let path = path.into();
        move |source| LayoutError::Io { path, source }
    }
}

/// One file among a layout's blobs.
#[derive(Debug, Clone)]
pub struct BlobFile {
    /// Its file name (the digest's hex for a blob; anything else is debris,
    /// such as the temp file of a writer that died).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
}

impl BlobFile {
    /// The sha256 digest the file is named for, when its name is one.
    pub fn digest(&self) -> Option<Digest> {
        format!("sha256:{}", self.name).parse().ok()
    }
}

/// An OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout at `dir`, as it is (nothing is read or created).
    pub fn open(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }

    /// The layout at `dir`, with its skeleton created where missing: the
    /// blob directory and the `oci-layout` marker. What is already there
    /// (blobs, `index.json`) is kept.
    ///
    /// # Errors
    /// The directory or the marker cannot be written.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Layout, LayoutError> {
        let layout = Layout::open(dir);
        let blobs = layout.blob_dir();
        fs::create_dir_all(&blobs).map_err(LayoutError::io(&blobs))?;
        let marker = layout.dir.join(MARKER_FILE);
        if fs::read(&marker).ok().as_deref() != Some(MARKER) {
            write_atomic(&marker, MARKER)?;
        }
        Ok(layout)
    }

    /// The layout's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of sha256 blobs.
    pub fn blob_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(blob_name(digest))
    }

    /// True when the blob `digest` is present (its bytes are not checked).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    /// Every file in the sha256 blob directory.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn blob_files(&self) -> Result<Vec<BlobFile>, LayoutError> {
        let dir = self.blob_dir();
        let mut files = Vec::new();
        for item in fs::read_dir(&dir).map_err(LayoutError::io(&dir))? {
            let item = item.map_err(LayoutError::io(&dir))?;
            files.push(BlobFile {
                name: item.file_name().to_string_lossy().into_owned(),
                path: item.path(),
            });
        }
        Ok(files)
    }

    /// Puts `bytes` as a blob named by their digest (unless present) and
    /// returns the digest.
    ///
    /// # Errors
    /// The blob cannot be written.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest, LayoutError> {
        let digest = Digest::sha256_of(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Puts `bytes` as the blob `digest` (unless present), refusing bytes
    /// that hash to something else.
    ///
    /// # Errors
    /// [`LayoutError::Digest`] for such bytes (nothing is written), or the
    /// blob cannot be written.
    pub fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), LayoutError> {
        let path = self.blob_path(digest);
        LayoutError::check_digest(&path, Digest::sha256_of(bytes), digest)?;
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(())
    }

    /// Copies the file `from` in as the blob `digest` (unless present),
    /// hashing it on the way and refusing it when it is something else.
    ///
    /// # Errors
    /// [`LayoutError::Digest`] naming `from` when its bytes do not match
    /// (nothing is left behind), or file errors.
    pub fn copy_blob(&self, digest: &Digest, from: &Path) -> Result<(), LayoutError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let mut src = fs::File::open(from).map_err(LayoutError::io(from))?;
        let mut writer = self.blob_writer(digest)?;
        let target = self.blob_path(digest);
        // Read errors name the source, write errors the blob.
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = io::Read::read(&mut src, &mut buf).map_err(LayoutError::io(from))?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .map_err(LayoutError::io(&target))?;
        }
        writer.finish().map_err(|e| match e {
            LayoutError::Digest {
                actual, expected, ..
            } => LayoutError::Digest {
                path: from.to_path_buf(),
                actual,
                expected,
            },
            other => other,
        })
    }

    /// Puts the file `from`, already known to be the blob `digest` (it was
    /// verified when it was made), into the layout (unless present): a hard
    /// link when both are on one filesystem, which costs nothing, else a
    /// copy through a temp file. Either way the blob is synced to disk: the
    /// layer writer leaves its scratch blobs unsynced, and a layout is kept.
    ///
    /// # Errors
    /// File errors.
    pub fn link_blob(&self, digest: &Digest, from: &Path) -> Result<(), LayoutError> {
        let target = self.blob_path(digest);
        if target.exists() {
            return Ok(());
        }
        // A link appears whole; a concurrent writer of the same blob may win.
        match fs::hard_link(from, &target) {
            Ok(()) => return sync_file(&target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(_) => {}
        }
        let tmp = temp_beside(&target)?;
        fs::copy(from, tmp.path()).map_err(LayoutError::io(&target))?;
        tmp.as_file().sync_all().map_err(LayoutError::io(&target))?;
        persist(tmp, &target)
    }

    /// A writer for the blob `digest` that hashes what it is given and puts
    /// the blob in place only when the digest matches.
    ///
    /// # Errors
    /// The temp file cannot be made.
    pub fn blob_writer(&self, digest: &Digest) -> Result<BlobWriter, LayoutError> {
        let target = self.blob_path(digest);
        Ok(BlobWriter::new(
            temp_beside(&target)?,
            target,
            digest.clone(),
        ))
    }

    /// A temp file beside the blob `digest` for a writer that checks the
    /// digest itself (a registry download), put in place by
    /// [`IncomingBlob::keep`].
    ///
    /// # Errors
    /// The temp file cannot be made.
    pub fn incoming_blob(&self, digest: &Digest) -> Result<IncomingBlob, LayoutError> {
        let target = self.blob_path(digest);
        Ok(IncomingBlob::new(temp_beside(&target)?, target))
    }

    /// The blob `digest`, checked against it.
    ///
    /// # Errors
    /// The file cannot be read, or [`LayoutError::Digest`] when it holds
    /// something else.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(LayoutError::io(&path))?;
        LayoutError::check_digest(&path, Digest::sha256_of(&bytes), digest)?;
        Ok(bytes)
    }

    /// Where `index.json` is.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    /// `index.json`, or `None` when the layout has none yet.
    ///
    /// # Errors
    /// It exists and cannot be read or parsed.
    pub fn read_index(&self) -> Result<Option<Index>, LayoutError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => Index::from_slice(&bytes)
                .map(Some)
                .map_err(|source| LayoutError::Document { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LayoutError::io(path)(e)),
        }
    }

    /// `index.json` to add to: an empty OCI index when there is none or it
    /// cannot be read (an output replaces what it cannot use, as Kaniko does).
    pub fn index_or_empty(&self) -> Index {
        self.read_index()
            .ok()
            .flatten()
            .unwrap_or_else(|| Index::new(true, Vec::new()))
    }

    /// Replaces `index.json` with `index` (a temp file and a rename, so a
    /// reader sees the old or the new one whole).
    ///
    /// # Errors
    /// It cannot be written.
    pub fn write_index(&self, index: &Index) -> Result<(), LayoutError> {
        write_atomic(&self.index_path(), &index.to_vec())
    }

    /// Read-modify-write of `index.json` under an exclusive lock on
    /// `index.json.lock`, for layouts several processes add to at once:
    /// no change is lost to another's. Readers need no lock.
    ///
    /// # Errors
    /// The lock, `index.json`, or what `change` returns.
    pub fn update_index<E: From<LayoutError>>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<(), E>,
    ) -> Result<(), E> {
        let _lock = lock::FileLock::exclusive(&self.dir.join(INDEX_LOCK_FILE))?;
        let mut index = self
            .read_index()?
            .unwrap_or_else(|| Index::new(true, Vec::new()));
        change(&mut index)?;
        Ok(self.write_index(&index)?)
    }
}

/// Writes `bytes` to `path` through a synced temp file and a rename.
///
/// # Errors
/// File errors.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes).map_err(LayoutError::io(path))?;
    tmp.as_file().sync_all().map_err(LayoutError::io(path))?;
    persist(tmp, path)
}

/// Flushes the file at `path` to disk.
fn sync_file(path: &Path) -> Result<(), LayoutError> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(LayoutError::io(path))
}

/// A temp file beside `target`, so the rename into place stays on one
/// filesystem. Created with the mode `File::create` gives (0666 less the
/// umask), not tempfile's private 0600: a layout or tar written for the
/// user is read by other tools and users, as before it went through here.
fn temp_beside(target: &Path) -> Result<tempfile::NamedTempFile, LayoutError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = target.parent().unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(LayoutError::io(dir))
}

/// Renames a finished temp file into place. A concurrent writer of the same
/// content-addressed file may win: the result is the same bytes.
fn persist(tmp: tempfile::NamedTempFile, target: &Path) -> Result<(), LayoutError> {
    tmp.persist(target)
        .map(|_| ())
        .map_err(|e| LayoutError::io(target)(e.error))
}

#[cfg(test)]
mod tests;
