//! Local archives: compression detected by content, as Docker does, and tar
//! reading that cannot escape its destination.
//!
//! ADD turns an archive into plan entries (each keeping its own mode, owner
//! and mtime; file bodies are spooled to the build's scratch directory); a
//! `tar://` context is unpacked to disk with the `tar` crate's `unpack_in`,
//! which refuses `..` and writes through no symlink.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use kiln_oci::media::Compression;

mod tar_rules;

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry would land outside the destination.
    #[error("archive entry {entry:?} points outside the destination")]
    Breakout {
        /// The entry name (or link target) as stored.
        entry: String,
    },
    /// An entry name is not UTF-8.
    #[error("archive entry names must be valid UTF-8")]
    NonUtf8,
    /// An entry cannot be unpacked where the archive puts it.
    #[error("archive entry {entry:?}: {reason}")]
    Inconsistent {
        /// The entry, as a cleaned path inside the destination.
        entry: String,
        /// Why.
        reason: String,
    },
}

/// Opens `path` and returns a reader of its decompressed bytes.
pub fn open_decompressed(path: &Path) -> Result<Box<dyn Read>, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = [0u8; 8];
    let n = {
        let mut f = File::open(path).map_err(io_err)?;
        read_up_to(&mut f, &mut head).map_err(io_err)?
    };
    let file = BufReader::new(File::open(path).map_err(io_err)?);
    Ok(match Compression::detect(&head[..n]) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(io_err)?)
        }
        // Plain tar: no magic bytes recognised.
        _ => Box::new(file),
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// True when `path` is a (possibly compressed) tar archive: its decompressed
/// stream starts with a valid tar header, the test Docker applies to ADD.
pub fn is_archive(path: &Path) -> bool {
    let Ok(reader) = open_decompressed(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(reader);
    let Ok(mut entries) = archive.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(_)))
}

/// Cleans an entry name (or hard-link target) into a relative path inside
/// the destination: a leading `/` is dropped (the name is taken relative to
/// the destination, as Docker does), `.` is skipped, and a `..` that would
/// climb above the destination is an error.
pub fn clean_entry_path(name: &str) -> Result<String, ArchiveError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ArchiveError::Breakout {
                        entry: name.to_string(),
                    });
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// What one archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveItemKind {
    /// A directory.
    Dir,
    /// A regular file, spooled to this scratch path.
    File(PathBuf),
    /// A symlink with this (unchanged) target.
    Symlink(String),
    /// A hard link to this cleaned path inside the archive.
    HardLink(String),
}

/// One entry read from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveItem {
    /// Cleaned path relative to the destination; never empty.
    pub path: String,
    /// Kind and payload.
    pub kind: ArchiveItemKind,
    /// Permission bits from the header.
    pub mode: u32,
    /// Owner from the header.
    pub uid: u32,
    /// Group from the header.
    pub gid: u32,
    /// Modification time (seconds) from the header.
    pub mtime: i64,
}

/// Reads every entry of the archive at `path`, spooling file bodies into
/// `scratch` (one file per entry), settled into what unpacking them in
/// order leaves ([`tar_rules`]). Device nodes and FIFOs are skipped:
/// an unprivileged build cannot represent them faithfully anyway.
pub fn read_items(path: &Path, scratch: &Path) -> Result<Vec<ArchiveItem>, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(scratch).map_err(|source| ArchiveError::Io {
        path: scratch.to_path_buf(),
        source,
    })?;
    let mut archive = tar::Archive::new(open_decompressed(path)?);
    let mut items = Vec::new();
    for (index, entry) in archive.entries().map_err(io_err)?.enumerate() {
        let mut entry = entry.map_err(io_err)?;
        let raw = entry.path().map_err(io_err)?;
        let name = raw.to_str().ok_or(ArchiveError::NonUtf8)?.to_string();
        let rel = clean_entry_path(&name)?;
        if rel.is_empty() {
            continue;
        }
        let header = entry.header();
        let mode = header.mode().map_err(io_err)? & 0o7777;
        let uid = header.uid().map_err(io_err)? as u32;
        let gid = header.gid().map_err(io_err)? as u32;
        let mtime = header.mtime().map_err(io_err)? as i64;
        let kind = match header.entry_type() {
            tar::EntryType::Directory => ArchiveItemKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let spool = scratch.join(format!("entry-{index}"));
                let mut out = File::create(&spool).map_err(|source| ArchiveError::Io {
                    path: spool.clone(),
                    source,
                })?;
                io::copy(&mut entry, &mut out).map_err(io_err)?;
                ArchiveItemKind::File(spool)
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(io_err)?.unwrap_or_default();
                ArchiveItemKind::Symlink(target.to_str().ok_or(ArchiveError::NonUtf8)?.to_string())
            }
            tar::EntryType::Link => {
                let target = entry.link_name().map_err(io_err)?.unwrap_or_default();
                let target = clean_entry_path(target.to_str().ok_or(ArchiveError::NonUtf8)?)?;
                ArchiveItemKind::HardLink(target)
            }
            _ => continue,
        };
        items.push(ArchiveItem {
            path: rel,
            kind,
            mode,
            uid,
            gid,
            mtime,
        });
    }
    tar_rules::settle(items)
}

/// Unpacks the archive at `path` into `dest` (which must exist). Entries that
/// would land outside `dest` are an error.
pub fn extract_to_dir(path: &Path, dest: &Path) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(open_decompressed(path)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let name = entry.path().map_err(io_err)?.to_string_lossy().into_owned();
        clean_entry_path(&name)?;
        if let Ok(Some(link)) = entry.link_name() {
            if entry.header().entry_type().is_hard_link() {
                clean_entry_path(&link.to_string_lossy())?;
            }
        }
        let unpacked = entry.unpack_in(dest).map_err(io_err)?;
        if !unpacked {
            return Err(ArchiveError::Breakout { entry: name });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_entry_paths() {
        assert_eq!(clean_entry_path("./a/b").unwrap(), "a/b");
        assert_eq!(clean_entry_path("/etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(clean_entry_path("a/../b").unwrap(), "b");
        assert!(matches!(
            clean_entry_path("../x"),
            Err(ArchiveError::Breakout { .. })
        ));
        assert!(matches!(
            clean_entry_path("a/../../x"),
            Err(ArchiveError::Breakout { .. })
        ));
    }

    #[test]
    fn plain_text_is_not_an_archive() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.txt");
        fs::write(&p, "just text, long enough to not be a header").unwrap();
        assert!(!is_archive(&p));
    }
}
