//! Reads the final image's layers, bottom first, for the files the SBOM's
//! cataloguers want (see `kiln_attest::sbom`), applying each layer's
//! whiteouts and opaque directories to what lower layers left, and for
//! every regular file's checksums, hashed as its bytes stream by. Nothing
//! is unpacked: only those few files' contents are kept in memory.

use super::{layer_file, OutputError};
use crate::engine::assemble::BuiltImage;
use crate::engine::blobs::BlobStore;
use futures::StreamExt as _;
use kiln_attest::sbom::files::HashingReader;
use kiln_attest::sbom::{golang, Collector, Digests, Inventory, Package, MAX_FILE};
use kiln_layer::EntryKind;
use kiln_oci::media::Compression;
use std::io::Read;
use std::ops::ControlFlow;

/// The packages and regular files in `image`'s file system. Layers are
/// read (decompressed, hashed) on as many threads as there are cores, since
/// that is nearly all of the SBOM's cost; their changes are applied bottom
/// first, as each lower one is done.
pub(crate) async fn inventory(
    image: &BuiltImage,
    blobs: &BlobStore,
) -> Result<Inventory, OutputError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut reads = futures::stream::iter(&image.layers)
        .map(|layer| async move {
            let path = layer_file(blobs, layer).await?;
            let compression = Compression::of_media_type(&layer.descriptor.media_type);
            let digest = layer.descriptor.digest.clone();
            let diff_id = layer.diff_id.clone();
            tokio::task::spawn_blocking(move || read_layer(&path, compression, diff_id))
                .await
                .expect("SBOM layer reading task panicked")
                .map_err(|message| OutputError::Sbom {
                    layer: digest,
                    message,
                })
        })
        .buffered(threads);
    let mut collector = Collector::new();
    while let Some(changes) = reads.next().await {
        changes?.apply(&mut collector);
    }
    Ok(collector.inventory())
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
    /// Every regular file with its checksums.
    files: Vec<(String, Digests)>,
    /// Hard links (path, target): regular files with their target's
    /// content, in this layer or a lower one.
    hard_links: Vec<(String, String)>,
    symlinks: Vec<(String, String)>,
    dirs: Vec<String>,
    /// Devices, FIFOs: no regular file, but they hide a lower one.
    others: Vec<String>,
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
        for dir in &self.dirs {
            collector.add_directory(dir);
        }
        for (path, digests) in &self.files {
            collector.add_file(path, *digests);
        }
        for (path, target) in &self.symlinks {
            collector.add_symlink(path, target);
        }
        for path in &self.others {
            collector.add_other(path);
        }
        for (path, target) in &self.hard_links {
            match collector.file(target) {
                Some(digests) => collector.add_file(path, digests),
                None => collector.add_other(path),
            }
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
            EntryKind::File { size } => {
                let mut content = HashingReader::new(content);
                if Collector::wants(&name) {
                    let limit = Collector::read_limit(&name);
                    if *size > limit && limit == MAX_FILE {
                        tracing::warn!("SBOM: /{name} is {size} bytes, more than a package database holds; left out");
                        changes.removed.push(name.to_string());
                    } else {
                        let mut bytes = Vec::with_capacity((*size).min(limit) as usize);
                        (&mut content).take(limit).read_to_end(&mut bytes)?;
                        changes.added.push((name.to_string(), bytes));
                    }
                } else {
                    let mut packages = Vec::new();
                    if entry.meta.mode & 0o111 != 0 && *size >= 64 {
                        let mut magic = [0u8; 4];
                        content.read_exact(&mut magic)?;
                        if golang::is_elf(&magic) {
                            let mut whole = std::io::Read::chain(&magic[..], &mut content);
                            packages = golang::parse_stream(&mut whole, &name)?;
                        }
                    }
                    changes.binaries.push((name.to_string(), packages));
                }
                changes.files.push((name.into_owned(), content.finish()?));
            }
            EntryKind::HardLink { target } => {
                // A link where a lower layer had a wanted file hides that
                // file; its content is not read through the link.
                if Collector::wants(&name) {
                    changes.removed.push(name.to_string());
                }
                let target = target.to_string_lossy().into_owned();
                changes.hard_links.push((name.into_owned(), target));
            }
            EntryKind::Symlink { target } => {
                let target = target.to_string_lossy().into_owned();
                changes.symlinks.push((name.into_owned(), target));
            }
            EntryKind::Dir => changes.dirs.push(name.into_owned()),
            _ => changes.others.push(name.into_owned()),
        }
        Ok(ControlFlow::Continue(()))
    })
    .map_err(|e| e.to_string())?;
    reader.finish().map_err(|e| e.to_string())?;
    Ok(changes)
}
