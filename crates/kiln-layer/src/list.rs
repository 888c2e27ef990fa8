//! Reading a layer's headers without extracting anything: to compare images,
//! or to learn whether a path exists in lower layers.
//!
//! Entries come back in the writer's own vocabulary ([`Entry`]): whiteouts as
//! [`EntryKind::Whiteout`] on the deleted path, opaque markers as
//! [`EntryKind::Opaque`] on their directory, xattrs from PAX records.

use crate::error::{Error, Result};
use crate::path::{is_opaque_marker, normalize, whiteout_target};
use crate::reader::LayerReader;
use crate::writer::{Entry, EntryKind, EntryMeta};
use std::ffi::OsStr;
use std::io::Read;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use tar::EntryType;

/// PAX record prefix for extended attributes.
const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Calls `visit` with each entry of the layer, in tar order, until it returns
/// `ControlFlow::Break`. Content is skipped, not read into memory. Call
/// [`LayerReader::finish`] afterwards to verify the diff_id.
pub fn visit_entries(
    reader: &mut LayerReader<'_>,
    mut visit: impl FnMut(&Entry) -> ControlFlow<()>,
) -> Result<()> {
    visit_entries_with_content(reader, |entry, _| Ok(visit(entry)))
}

/// Like [`visit_entries`], and `visit` may also read the entry's content
/// (regular files; empty for the rest). What it leaves unread is skipped.
pub fn visit_entries_with_content(
    reader: &mut LayerReader<'_>,
    visit: impl FnMut(&Entry, &mut dyn Read) -> std::io::Result<ControlFlow<()>>,
) -> Result<()> {
    let label = reader.label().to_string();
    visit_tar_with_content(reader, &label, visit)
}

/// As [`visit_entries_with_content`], over an uncompressed tar stream from
/// anywhere (a [`crate::tap`] copy of one, already being verified
/// elsewhere); `label` names the layer in errors.
pub fn visit_tar_with_content(
    reader: impl Read,
    label: &str,
    mut visit: impl FnMut(&Entry, &mut dyn Read) -> std::io::Result<ControlFlow<()>>,
) -> Result<()> {
    let label = label.to_string();
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|source| Error::Read {
        layer: label.clone(),
        source,
    })?;
    for raw in entries {
        let mut raw = raw.map_err(|source| Error::BadEntry {
            layer: label.clone(),
            entry: "<header>".into(),
            source,
        })?;
        let Some(entry) = entry_from_tar(&mut raw, &label)? else {
            continue;
        };
        let flow = visit(&entry, &mut raw).map_err(|source| Error::BadEntry {
            layer: label.clone(),
            entry: entry.path.display().to_string(),
            source,
        })?;
        if flow.is_break() {
            break;
        }
    }
    Ok(())
}

/// All entries of a layer, with the diff_id checked if the reader expects one.
pub fn list_entries(mut reader: LayerReader<'_>) -> Result<Vec<Entry>> {
    let mut all = Vec::new();
    visit_entries(&mut reader, |e| {
        all.push(e.clone());
        ControlFlow::Continue(())
    })?;
    reader.finish()?;
    Ok(all)
}

/// Converts one tar entry's header (and PAX records) into an [`Entry`].
/// Paths are normalized (leading `/` dropped); `..` and NUL are refused. An
/// entry for the root directory itself (`./`, written by some tools) carries
/// nothing a layer can apply and yields `None`.
pub(crate) fn entry_from_tar<R: Read>(
    raw: &mut tar::Entry<'_, R>,
    label: &str,
) -> Result<Option<Entry>> {
    let raw_path = raw.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw_path).into_owned();
    let bad = |source: std::io::Error| Error::BadEntry {
        layer: label.to_string(),
        entry: shown.clone(),
        source,
    };
    let unsafe_entry = |reason: String| Error::Unsafe {
        layer: label.to_string(),
        entry: shown.clone(),
        reason,
    };
    let is_root = raw_path.iter().all(|b| matches!(b, b'/' | b'.')) && !raw_path.contains(&0);
    if is_root
        && raw.header().entry_type() == EntryType::Directory
        && !raw_path.windows(2).any(|w| w == b"..")
    {
        return Ok(None);
    }
    let path = normalize(std::path::Path::new(OsStr::from_bytes(&raw_path)))
        .map_err(|reason| unsafe_entry(reason.to_string()))?;

    let header = raw.header();
    let mut meta = EntryMeta {
        mode: header.mode().map_err(bad)? & 0o7777,
        uid: header.uid().map_err(bad)?,
        gid: header.gid().map_err(bad)?,
        mtime: header.mtime().map_err(bad)?,
        uname: header
            .username()
            .ok()
            .flatten()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        gname: header
            .groupname()
            .ok()
            .flatten()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        xattrs: Default::default(),
    };
    let entry_type = header.entry_type();
    let device = || -> Result<(u32, u32)> {
        let major = header.device_major().map_err(bad)?.unwrap_or(0);
        let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
        Ok((major, minor))
    };
    let link = || -> Result<PathBuf> {
        let bytes = raw
            .link_name_bytes()
            .ok_or_else(|| unsafe_entry("link without a target".into()))?;
        Ok(PathBuf::from(OsStr::from_bytes(&bytes)))
    };
    let size = raw.size();
    let kind = match entry_type {
        EntryType::Directory => EntryKind::Dir,
        EntryType::Regular | EntryType::Continuous => EntryKind::File { size },
        EntryType::Symlink => EntryKind::Symlink { target: link()? },
        EntryType::Link => EntryKind::HardLink { target: link()? },
        EntryType::Char => {
            let (major, minor) = device()?;
            EntryKind::CharDevice { major, minor }
        }
        EntryType::Block => {
            let (major, minor) = device()?;
            EntryKind::BlockDevice { major, minor }
        }
        EntryType::Fifo => EntryKind::Fifo,
        other => {
            return Err(unsafe_entry(format!(
                "unsupported tar entry type {:?}",
                other.as_byte() as char
            )))
        }
    };

    if let Some(extensions) = raw.pax_extensions().map_err(bad)? {
        for ext in extensions {
            let ext = ext.map_err(bad)?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix(XATTR_PREFIX)) {
                meta.xattrs
                    .insert(name.to_string(), ext.value_bytes().to_vec());
            }
        }
    }

    // Whiteouts are zero-length regular files with a marker name.
    if let (EntryKind::File { .. }, Some(name)) = (&kind, path.file_name()) {
        if is_opaque_marker(name) {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let dir = dir.ok_or_else(|| unsafe_entry("opaque marker at the root".into()))?;
            return Ok(Some(Entry::new(dir, EntryKind::Opaque, meta)));
        }
        if let Some(target) = whiteout_target(name) {
            if target.is_empty() || target == "." || target == ".." {
                return Err(unsafe_entry("whiteout names no entry".into()));
            }
            let deleted = path.with_file_name(target);
            return Ok(Some(Entry::new(deleted, EntryKind::Whiteout, meta)));
        }
    }
    Ok(Some(Entry::new(path, kind, meta)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{LayerOptions, LayerWriter, MtimePolicy};
    use kiln_image_spec::media::Compression;
    use std::io::Cursor;

    #[test]
    fn lists_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = EntryMeta {
            mode: 0o4755,
            uid: 5_000_000,
            gid: 7,
            mtime: 99,
            ..Default::default()
        };
        meta.xattrs
            .insert("security.capability".into(), vec![1, 2, 3]);
        let long = "d/".to_string() + &"x".repeat(120);
        let written = vec![
            Entry::new("d", EntryKind::Dir, EntryMeta::with_mode(0o1777)),
            Entry::new(long.as_str(), EntryKind::File { size: 3 }, meta.clone()),
            Entry::new(
                "d/l",
                EntryKind::HardLink {
                    target: long.clone().into(),
                },
                meta.clone(),
            ),
            Entry::new(
                "d/s",
                EntryKind::Symlink {
                    target: "/abs".into(),
                },
                EntryMeta::default(),
            ),
            Entry::new("d/gone", EntryKind::Whiteout, EntryMeta::default()),
            Entry::new("d", EntryKind::Opaque, EntryMeta::default()),
            Entry::new(
                "b",
                EntryKind::BlockDevice { major: 8, minor: 1 },
                EntryMeta::default(),
            ),
        ];
        let options = LayerOptions::new(Compression::Zstd).with_mtime(MtimePolicy::Keep);
        let mut w = LayerWriter::new(dir.path(), &options).unwrap();
        for e in &written {
            let mut content = Cursor::new(b"abc".to_vec());
            w.append(e, Some(&mut content)).unwrap();
        }
        let blob = w.finish().unwrap();
        let reader = crate::reader::open_blob(&blob.path, None)
            .unwrap()
            .expect_diff_id(blob.diff_id);
        let listed = list_entries(reader).unwrap();
        assert_eq!(listed, written);
    }

    #[test]
    fn stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LayerWriter::new(dir.path(), &LayerOptions::new(Compression::None)).unwrap();
        for name in ["a", "b", "c"] {
            w.append(
                &Entry::new(name, EntryKind::Dir, EntryMeta::default()),
                None,
            )
            .unwrap();
        }
        let blob = w.finish().unwrap();
        let mut reader = crate::reader::open_blob(&blob.path, None).unwrap();
        let mut seen = Vec::new();
        visit_entries(&mut reader, |e| {
            seen.push(e.path.clone());
            if e.path == std::path::Path::new("b") {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(seen, vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(reader.finish().unwrap(), blob.diff_id);
    }
}
