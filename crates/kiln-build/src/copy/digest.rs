//! The cache input digest of a [`CopyPlan`].
//!
//! Encoding (version 1), hashed with sha256 in one stream:
//! `"kiln-copy-inputs-v1\n"`, then for each entry in plan order (sorted by
//! path): a kind byte (`d`, `f`, `l` symlink, `h` hard link, `p` FIFO, `c`
//! and `b` device nodes), the image path as a u64 little-endian length and
//! its bytes, mode, uid and gid as u32 little-endian, then for files the
//! 32-byte sha256 of the content, for links the target (length-prefixed)
//! and for device nodes the major and minor numbers as u32 little-endian.
//! Mtimes are deliberately left out: a fresh checkout must hit the cache.

use super::{CopyError, CopyPlan, EntryKind, EntrySource};
use kiln_oci::Digest;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io;

impl CopyPlan {
    /// The digest the cache key uses for this copy's inputs: paths, kinds,
    /// modes, owners and contents, never mtimes. File contents are streamed
    /// from disk.
    pub fn inputs_digest(&self) -> Result<Digest, CopyError> {
        let mut h = Sha256::new();
        h.update(b"kiln-copy-inputs-v1\n");
        for e in self.entries() {
            h.update([match e.kind {
                EntryKind::Dir => b'd',
                EntryKind::File => b'f',
                EntryKind::Symlink => b'l',
                EntryKind::HardLink => b'h',
                EntryKind::Fifo => b'p',
                EntryKind::CharDevice => b'c',
                EntryKind::BlockDevice => b'b',
            }]);
            put_bytes(&mut h, e.path.as_bytes());
            h.update(e.mode.to_le_bytes());
            h.update(e.uid.to_le_bytes());
            h.update(e.gid.to_le_bytes());
            match &e.source {
                EntrySource::None => {}
                EntrySource::Bytes(b) => h.update(Sha256::digest(b)),
                EntrySource::Path(p) => {
                    let mut content = Sha256::new();
                    let mut f = File::open(p).map_err(|source| CopyError::Io {
                        path: p.clone(),
                        source,
                    })?;
                    io::copy(&mut f, &mut content).map_err(|source| CopyError::Io {
                        path: p.clone(),
                        source,
                    })?;
                    h.update(content.finalize());
                }
                EntrySource::Link(t) => put_bytes(&mut h, t.as_bytes()),
                EntrySource::Device { major, minor } => {
                    h.update(major.to_le_bytes());
                    h.update(minor.to_le_bytes());
                }
            }
        }
        Ok(Digest::from_sha256(h.finalize().into()))
    }
}

fn put_bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}
