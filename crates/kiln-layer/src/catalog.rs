//! What a layer holds, recorded while it is written or unpacked.
//!
//! A builder that needs to describe a layer later (which paths it adds,
//! deletes or hides, and the text of a few small files such as
//! `/etc/passwd`) would otherwise have to read the whole blob again:
//! decompress it, parse every header. The writer and the extractor see
//! every entry anyway, so when asked they note each one as it passes.

use crate::writer::EntryKind;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Which file contents a catalog keeps besides the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogOptions {
    /// Layer paths (normalized: relative, no leading `/`) whose content
    /// is kept, when they are regular files.
    pub texts: Vec<PathBuf>,
    /// Largest content kept; a bigger file is listed without it.
    pub text_limit: u64,
}

impl CatalogOptions {
    /// Keeps the content of `paths` (leading `/` optional) up to `limit` bytes.
    pub fn keeping(paths: &[&str], limit: u64) -> CatalogOptions {
        CatalogOptions {
            texts: paths
                .iter()
                .map(|p| PathBuf::from(p.trim_start_matches('/')))
                .collect(),
            text_limit: limit,
        }
    }

    /// True when the content of a `kind` entry at `path` is to be kept.
    fn keeps(&self, path: &Path, kind: &EntryKind) -> bool {
        match kind {
            EntryKind::File { size } => {
                *size <= self.text_limit && self.texts.iter().any(|t| t == path)
            }
            _ => false,
        }
    }
}

/// A layer's entries in layer order, as written or read: normalized paths
/// (relative, no leading `/`), whiteouts as [`EntryKind::Whiteout`] on the
/// deleted path, opaque directories as [`EntryKind::Opaque`] on the
/// directory, plus the content of the files [`CatalogOptions`] named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Every entry's path and kind, in order (a path may come twice).
    pub entries: Vec<(PathBuf, EntryKind)>,
    /// Content of the kept files, by path; the last entry for a path wins.
    pub texts: BTreeMap<PathBuf, Vec<u8>>,
}

/// Builds a [`Catalog`] entry by entry.
#[derive(Debug)]
pub(crate) struct Recorder {
    options: CatalogOptions,
    catalog: Catalog,
}

impl Recorder {
    pub(crate) fn new(options: CatalogOptions) -> Recorder {
        Recorder {
            options,
            catalog: Catalog::default(),
        }
    }

    /// Notes an entry of `kind` at `path` (normalized). When its content
    /// is to be kept it is read from `content` here, and the returned bytes
    /// must be used in its place.
    pub(crate) fn note<R: Read + ?Sized>(
        &mut self,
        path: &Path,
        kind: &EntryKind,
        content: Option<&mut R>,
    ) -> io::Result<Option<Vec<u8>>> {
        self.catalog
            .entries
            .push((path.to_path_buf(), kind.clone()));
        let (true, Some(content), EntryKind::File { size }) =
            (self.options.keeps(path, kind), content, kind)
        else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(*size as usize);
        content.take(*size).read_to_end(&mut bytes)?;
        self.catalog.texts.insert(path.to_path_buf(), bytes.clone());
        Ok(Some(bytes))
    }

    pub(crate) fn finish(self) -> Catalog {
        self.catalog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_entries_in_order_and_only_the_named_small_files() {
        let mut r = Recorder::new(CatalogOptions::keeping(&["/etc/passwd", "/etc/group"], 8));
        let file = |size| EntryKind::File { size };
        let mut note = |path: &str, kind: EntryKind, content: Option<&[u8]>| {
            let mut content = content;
            r.note(Path::new(path), &kind, content.as_mut()).unwrap()
        };
        assert_eq!(note("etc", EntryKind::Dir, None), None);
        assert_eq!(
            note("etc/passwd", file(8), Some(b"root:x:0")),
            Some(b"root:x:0".to_vec())
        );
        assert_eq!(
            note("etc/group", file(22), Some(b"too long for the limit")),
            None
        );
        assert_eq!(note("etc/hosts", file(1), Some(b"x")), None);
        assert_eq!(note("tmp", EntryKind::Whiteout, None), None);
        let c = r.finish();
        let paths: Vec<_> = c.entries.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            ["etc", "etc/passwd", "etc/group", "etc/hosts", "tmp"]
        );
        assert_eq!(c.entries[4].1, EntryKind::Whiteout);
        assert_eq!(c.texts.len(), 1);
        assert_eq!(c.texts[&PathBuf::from("etc/passwd")], b"root:x:0");
    }
}
