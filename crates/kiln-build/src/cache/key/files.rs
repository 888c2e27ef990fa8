//! Digests of a step's file inputs, in the key encoding: the sources a
//! COPY/ADD plan names, and a build-context tree bound into a RUN.
//!
//! Both leave modification times out, so a fresh checkout of the same
//! files hits the cache; both stream file contents from disk.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln_oci::Digest;
use sha2::{Digest as _, Sha256};

use super::encoder::Encoder;
use crate::copy::{CopyError, CopyPlan, EntryKind, EntrySource, PlanEntry};

impl CopyPlan {
    /// The digest the cache key uses for this copy's inputs: for each entry
    /// in plan order (sorted by path), its kind, image path, mode, owner
    /// and content (a file's sha256, a link's target, a device's numbers).
    pub fn inputs_digest(&self) -> Result<Digest, CopyError> {
        let mut e = Encoder::new("copy-inputs");
        e.list("entries", self.entries().len());
        for entry in self.entries() {
            let PlanEntry {
                path,
                kind,
                source,
                mode,
                uid,
                gid,
                // Left out so that a fresh checkout hits the cache.
                mtime: _,
            } = entry;
            e.str(
                "kind",
                match kind {
                    EntryKind::Dir => "dir",
                    EntryKind::File => "file",
                    EntryKind::Symlink => "symlink",
                    EntryKind::HardLink => "hardlink",
                    EntryKind::Fifo => "fifo",
                    EntryKind::CharDevice => "char-device",
                    EntryKind::BlockDevice => "block-device",
                },
            );
            e.str("path", path);
            e.num("mode", u64::from(*mode));
            e.num("uid", u64::from(*uid));
            e.num("gid", u64::from(*gid));
            match source {
                EntrySource::None => e.str("source", "none"),
                EntrySource::Bytes(b) => e.bytes("content-sha256", &Sha256::digest(b)),
                EntrySource::Path(p) => {
                    let sum = file_sha256(p).map_err(|source| CopyError::Io {
                        path: p.clone(),
                        source,
                    })?;
                    e.bytes("content-sha256", &sum);
                }
                EntrySource::Link(target) => e.str("link", target),
                EntrySource::Device { major, minor } => {
                    e.num("major", u64::from(*major));
                    e.num("minor", u64::from(*minor));
                }
            }
        }
        Ok(e.finish())
    }
}

/// The digest of a file tree bound into a RUN from the build context: for
/// each path under `top` (relative, sorted by name), its kind, permission
/// bits and content or link target. Owners are left out: the context's
/// owners are the checkout's, not something the Dockerfile chose.
pub fn tree_digest(top: &Path) -> io::Result<Digest> {
    let mut e = Encoder::new("context-tree");
    let walk = walkdir::WalkDir::new(top)
        .follow_links(false)
        .sort_by_file_name();
    for item in walk {
        let item = item.map_err(io::Error::from)?;
        let rel = item.path().strip_prefix(top).unwrap_or(item.path());
        let meta = item.path().symlink_metadata()?;
        let kind = meta.file_type();
        e.bytes("path", rel.as_os_str().as_encoded_bytes());
        e.num("mode", u64::from(meta.mode() & 0o7777));
        if kind.is_dir() {
            e.str("kind", "dir");
        } else if kind.is_symlink() {
            e.str("kind", "symlink");
            let target = fs::read_link(item.path())?;
            e.bytes("link", target.as_os_str().as_encoded_bytes());
        } else if kind.is_file() {
            e.str("kind", "file");
            e.bytes("content-sha256", &file_sha256(item.path())?);
        } else {
            e.str("kind", "other");
        }
    }
    Ok(e.finish())
}

fn file_sha256(path: &Path) -> io::Result<[u8; 32]> {
    let mut content = Sha256::new();
    io::copy(&mut File::open(path)?, &mut content)?;
    Ok(content.finalize().into())
}
