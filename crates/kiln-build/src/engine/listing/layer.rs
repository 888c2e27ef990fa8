//! One layer's listing: every path it adds, replaces or deletes, with its
//! kind, and the text of the few files the engine reads.

use super::super::image_text::TEXT_LIMIT;
use kiln_layer::list::visit_entries_with_content;
use kiln_layer::reader::open_blob;
use kiln_layer::{Catalog, CatalogOptions, EntryKind};
use kiln_oci::media::Compression;
use kiln_oci::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

/// Files whose text a listing keeps (for `--chown` and USER names).
pub(crate) const TEXT_FILES: [&str; 2] = ["/etc/passwd", "/etc/group"];

/// The kind of a listed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file (or a hard link to one).
    File,
    /// A symbolic link to this target.
    Symlink(String),
    /// A device, FIFO or socket.
    Other,
}

/// One layer's paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerListing {
    /// Paths the layer adds or replaces (absolute, normalised, no trailing
    /// slash; the root itself is the empty path).
    pub entries: BTreeMap<String, Kind>,
    /// Paths the layer deletes from the layers below.
    pub whiteouts: Vec<String>,
    /// Directories whose lower contents the layer hides.
    pub opaque: Vec<String>,
    /// Text of the [`TEXT_FILES`] the layer contains.
    pub texts: BTreeMap<String, String>,
}

impl LayerListing {
    /// Lists a layer blob on disk, checking its diff_id.
    pub fn from_blob(
        path: &Path,
        media_type: &str,
        diff_id: &Digest,
    ) -> Result<LayerListing, kiln_layer::Error> {
        let mut reader = open_blob(path, Compression::of_media_type(media_type))?
            .expect_diff_id(diff_id.clone());
        let mut listing = LayerListing::default();
        visit_entries_with_content(&mut reader, |entry, content| {
            let text = match entry.kind {
                EntryKind::File { size } if size <= TEXT_LIMIT && is_text_file(&entry.path) => {
                    let mut text = String::new();
                    content.read_to_string(&mut text).ok().map(|_| text)
                }
                _ => None,
            };
            listing.add(&entry.path, &entry.kind, text);
            Ok(ControlFlow::Continue(()))
        })?;
        reader.finish()?;
        Ok(listing)
    }

    /// The listing of a layer from the catalog its writer or its unpacking
    /// recorded (with [`catalog_options`]): what [`LayerListing::from_blob`]
    /// would say, without reading the blob again.
    pub fn from_catalog(catalog: &Catalog) -> LayerListing {
        let mut listing = LayerListing::default();
        for (path, kind) in &catalog.entries {
            let text = match kind {
                EntryKind::File { .. } => catalog
                    .texts
                    .get(path)
                    .and_then(|bytes| String::from_utf8(bytes.clone()).ok()),
                _ => None,
            };
            listing.add(path, kind, text);
        }
        listing
    }

    /// Adds one layer entry (its normalized layer path), with the text of
    /// the file when it is one of [`TEXT_FILES`].
    fn add(&mut self, path: &Path, kind: &EntryKind, text: Option<String>) {
        let path = format!("/{}", path.display());
        let path = path.trim_end_matches('/').to_string();
        let kind = match kind {
            EntryKind::Dir => Kind::Dir,
            EntryKind::File { .. } => {
                if let Some(text) = text {
                    self.texts.insert(path.clone(), text);
                }
                Kind::File
            }
            EntryKind::HardLink { .. } => Kind::File,
            EntryKind::Symlink { target } => Kind::Symlink(target.display().to_string()),
            EntryKind::Whiteout => {
                self.whiteouts.push(path);
                return;
            }
            EntryKind::Opaque => {
                self.opaque.push(path.clone());
                Kind::Dir
            }
            _ => Kind::Other,
        };
        self.entries.insert(path, kind);
    }
}

fn is_text_file(layer_path: &Path) -> bool {
    let path = format!("/{}", layer_path.display());
    TEXT_FILES.contains(&path.as_str())
}

/// What a layer writer or an unpacking records so that the layer's listing
/// needs no second read of its blob.
pub(crate) fn catalog_options() -> CatalogOptions {
    CatalogOptions::keeping(&TEXT_FILES, TEXT_LIMIT)
}
