//! An OCI image layout as one tar archive (what `--tar-path` writes, and
//! `docker load` and containerd read): the same names as a layout
//! directory, each blob once, headers that do not depend on the machine or
//! the time, and the archive renamed into place only when whole.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use kiln_oci::{Digest, Index};

use super::{blob_name, persist, temp_beside, LayoutError, INDEX_FILE, MARKER, MARKER_FILE};

/// A tar being filled with a layout's entries.
pub struct LayoutTar<W: Write> {
    tar: ::tar::Builder<W>,
    blobs: BTreeSet<Digest>,
}

impl<W: Write> LayoutTar<W> {
    /// An empty archive writing to `out`.
    pub fn new(out: W) -> LayoutTar<W> {
        let mut tar = ::tar::Builder::new(out);
        tar.mode(::tar::HeaderMode::Deterministic);
        LayoutTar {
            tar,
            blobs: BTreeSet::new(),
        }
    }

    /// Adds the file `from` as the blob `digest` (once: a blob added before
    /// is skipped). The file is trusted to be that blob.
    ///
    /// # Errors
    /// Reading the file or writing the archive.
    pub fn append_blob_file(&mut self, digest: &Digest, from: &Path) -> io::Result<()> {
        if self.blobs.insert(digest.clone()) {
            self.tar.append_path_with_name(from, blob_name(digest))?;
        }
        Ok(())
    }

    /// Adds `bytes` as the blob `digest` (once).
    ///
    /// # Errors
    /// Writing the archive.
    pub fn append_blob(&mut self, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        if self.blobs.insert(digest.clone()) {
            self.append_file(&blob_name(digest), bytes)?;
        }
        Ok(())
    }

    /// Adds `index.json`.
    ///
    /// # Errors
    /// Writing the archive.
    pub fn append_index(&mut self, index: &Index) -> io::Result<()> {
        self.append_file(INDEX_FILE, &index.to_vec())
    }

    /// Adds the `oci-layout` marker.
    ///
    /// # Errors
    /// Writing the archive.
    pub fn append_marker(&mut self) -> io::Result<()> {
        self.append_file(MARKER_FILE, MARKER)
    }

    /// Adds a regular file `name` holding `bytes` (mode 0644, time 0): for
    /// files beside the layout's own, such as Docker's `manifest.json`.
    ///
    /// # Errors
    /// Writing the archive.
    pub fn append_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut header = ::tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(::tar::EntryType::Regular);
        self.tar.append_data(&mut header, name, bytes)
    }

    /// Ends the archive and hands back the writer.
    ///
    /// # Errors
    /// Writing the archive's end.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

/// Writes the archive at `path` with what `fill` adds: to a temp file beside
/// it first, synced, then renamed (as every file of a layout is), so `path`
/// is whole or absent and a failed write leaves nothing behind. Missing
/// parent directories are created.
///
/// # Errors
/// [`LayoutError::Io`] naming the parent directory when it cannot be
/// created, else naming `path`.
pub fn write_tar_file(
    path: &Path,
    fill: impl FnOnce(&mut LayoutTar<BufWriter<File>>) -> io::Result<()>,
) -> Result<(), LayoutError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(LayoutError::io(parent))?;
    }
    let tmp = temp_beside(path)?;
    let file = tmp.as_file().try_clone().map_err(LayoutError::io(path))?;
    let written = (|| -> io::Result<()> {
        let mut tar = LayoutTar::new(BufWriter::new(file));
        fill(&mut tar)?;
        let mut out = tar.finish()?;
        out.flush()?;
        out.get_ref().sync_all()
    })();
    written.map_err(LayoutError::io(path))?;
    persist(tmp, path)
}
