//! Reads the final image's layers, bottom first, for the files the SBOM's
//! cataloguers want (see `kiln_attest::sbom`), applying each layer's
//! whiteouts and opaque directories to what lower layers left. Nothing is
//! unpacked: only those few files' contents are kept in memory.

use super::{layer_file, OutputError};
use crate::engine::assemble::BuiltImage;
use crate::engine::blobs::BlobStore;
use kiln_attest::sbom::{golang, Collector, Package, MAX_FILE};
use kiln_layer::EntryKind;
use kiln_oci::media::Compression;
use std::io::Read;
use std::ops::ControlFlow;

/// The packages in `image`'s file system.
pub(crate) async fn packages(
    image: &BuiltImage,
    blobs: &BlobStore,
) -> Result<Vec<Package>, OutputError> {
    let mut collector = Collector::new();
    for layer in &image.layers {
        let path = layer_file(blobs, layer).await?;
        let compression = Compression::of_media_type(&layer.descriptor.media_type);
        let digest = layer.descriptor.digest.clone();
        let diff_id = layer.diff_id.clone();
        let changes = tokio::task::spawn_blocking(move || read_layer(&path, compression, diff_id))
            .await
            .expect("SBOM layer reading task panicked")
            .map_err(|message| OutputError::Sbom {
                layer: digest,
                message,
            })?;
        changes.apply(&mut collector);
    }
    Ok(collector.packages())
}

/// What one layer does to the files the cataloguers want.
#[derive(Default)]
struct LayerChanges {
    removed: Vec<String>,
    opaque: Vec<String>,
    added: Vec<(String, Vec<u8>)>,
    /// Every other regular file, with the Go modules of those that are Go
    /// binaries: a file replaces whatever binary a lower layer had there.
    binaries: Vec<(String, Vec<Package>)>,
}

impl LayerChanges {
    /// A layer's deletions apply to the layers below it, whatever their
    /// place in its tar; then its own files.
    fn apply(self, collector: &mut Collector) {
        for dir in &self.opaque {
            collector.remove_below(dir);
        }
        for path in &self.removed {
            collector.remove(path);
        }
        for (path, content) in self.added {
            collector.add(&path, content);
        }
        for (path, packages) in self.binaries {
            collector.add_binary(&path, packages);
        }
    }
}

fn read_layer(
    path: &std::path::Path,
    compression: Option<Compression>,
    diff_id: kiln_oci::Digest,
) -> Result<LayerChanges, String> {
    let mut reader = kiln_layer::reader::open_blob(path, compression)
        .map_err(|e| e.to_string())?
        .expect_diff_id(diff_id);
    let mut changes = LayerChanges::default();
    kiln_layer::list::visit_entries_with_content(&mut reader, |entry, content| {
        let name = entry.path.to_string_lossy();
        match &entry.kind {
            EntryKind::Whiteout => changes.removed.push(name.into_owned()),
            EntryKind::Opaque => changes.opaque.push(name.into_owned()),
            EntryKind::File { size } if Collector::wants(&name) => {
                let limit = Collector::read_limit(&name);
                if *size > limit && limit == MAX_FILE {
                    tracing::warn!("SBOM: /{name} is {size} bytes, more than a package database holds; left out");
                    changes.removed.push(name.into_owned());
                } else {
                    let mut bytes = Vec::with_capacity((*size).min(limit) as usize);
                    content.take(limit).read_to_end(&mut bytes)?;
                    changes.added.push((name.into_owned(), bytes));
                }
            }
            EntryKind::File { size } => {
                let mut packages = Vec::new();
                if entry.meta.mode & 0o111 != 0 && *size >= 64 {
                    let mut magic = [0u8; 4];
                    content.read_exact(&mut magic)?;
                    if golang::is_elf(&magic) {
                        let mut whole = std::io::Read::chain(&magic[..], content);
                        packages = golang::parse_stream(&mut whole, &name)?;
                    }
                }
                changes.binaries.push((name.into_owned(), packages));
            }
            // A link where a lower layer had a wanted file hides that file.
            EntryKind::Symlink { .. } | EntryKind::HardLink { .. } if Collector::wants(&name) => {
                changes.removed.push(name.into_owned())
            }
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    })
    .map_err(|e| e.to_string())?;
    reader.finish().map_err(|e| e.to_string())?;
    Ok(changes)
}
