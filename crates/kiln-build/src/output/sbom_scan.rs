//! Reads the final image's layers, bottom first, for the files the SBOM's
//! cataloguers want (see `kiln_attest::sbom`), applying each layer's
//! whiteouts and opaque directories to what lower layers left, and for
//! every regular file's checksums, hashed as its bytes stream by. Nothing
//! is unpacked: only those few files' contents are kept in memory.
//!
//! A layer the build streamed anyway (a base layer unpacked under a RUN,
//! every layer the build wrote) is read while it streams: [`LayerScans`]
//! is the tap (`kiln_layer::tap`) the writer and the extractor hand each
//! layer's tar to, scanned on a thread of its own beside the build and
//! kept by diff_id. The SBOM then reads only the layers no step streamed
//! (a base no RUN unpacked, steps taken from the cache).

use super::{layer_file, OutputError};
use crate::model::assemble::BuiltImage;
use crate::model::blobs::BlobStore;
use futures::StreamExt as _;
use kiln_attest::sbom::files::HashingReader;
use kiln_attest::sbom::{golang, Collector, Digests, Inventory, Package, MAX_FILE};
use kiln_layer::tap::{PipeWriter, Tap, TapHandle, TapSink};
use kiln_layer::EntryKind;
use kiln_oci::media::Compression;
use kiln_oci::Digest;
use std::collections::HashMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The packages and regular files in `image`'s file system, and how many
/// of its layers were scanned as the build streamed them (`scans`); the
/// others are read (decompressed, hashed) on as many threads as there are
/// cores, since that is nearly all of the SBOM's cost. The layers'
/// changes are applied bottom first, as each lower one is done.
pub(crate) async fn inventory(
    image: &BuiltImage,
    blobs: &BlobStore,
    scans: Option<&LayerScans>,
) -> Result<(Inventory, usize), OutputError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut reads = futures::stream::iter(&image.layers)
        .map(|layer| async move {
            if let Some(scans) = scans {
                let (scans, diff_id) = (scans.clone(), layer.diff_id.clone());
                let scanned = tokio::task::spawn_blocking(move || scans.take(&diff_id))
                    .await
                    .expect("SBOM scan waiting task panicked");
                if let Some(changes) = scanned {
                    return Ok(changes);
                }
            }
            let path = layer_file(blobs, layer).await?;
            let compression = Compression::of_media_type(&layer.descriptor.media_type);
            let digest = layer.descriptor.digest.clone();
            let diff_id = layer.diff_id.clone();
            tokio::task::spawn_blocking(move || read_layer(&path, compression, diff_id))
                .await
                .expect("SBOM layer reading task panicked")
                .map(Arc::new)
                .map_err(|source| OutputError::Sbom {
                    layer: digest,
                    source,
                })
        })
        .buffered(threads);
    let mut collector = Collector::new();
    let mut streamed = 0;
    while let Some(changes) = reads.next().await {
        let changes = changes?;
        streamed += usize::from(changes.streamed);
        changes.apply(&mut collector);
    }
    Ok((collector.inventory(), streamed))
}

/// Layers scanned as the build streams them, by diff_id: a [`Tap`] for
/// the writer's and the extractor's options. Each layer is read on a
/// thread of its own from a bounded pipe, so a scan that falls behind
/// slows its layer's stream rather than holding the layer in memory.
#[derive(Clone, Default)]
pub(crate) struct LayerScans {
    done: Arc<Mutex<HashMap<Digest, Scan>>>,
}

enum Scan {
    Running(JoinHandle<Result<LayerChanges, kiln_layer::Error>>),
    Done(Arc<LayerChanges>),
}

/// Pieces of 256 KiB between a layer's stream and its scan.
const PIPE_DEPTH: usize = 16;

impl LayerScans {
    /// This, as writers' and extractions' options carry it.
    pub(crate) fn handle(&self) -> TapHandle {
        TapHandle(Arc::new(self.clone()))
    }

    /// What the layer `diff_id` holds, waiting for its scan to end; `None`
    /// when no verified stream of it was scanned, or its scan failed (the
    /// layer is then read, which reports the failure).
    fn take(&self, diff_id: &Digest) -> Option<Arc<LayerChanges>> {
        let mut done = self.done.lock().expect("SBOM scans lock");
        let running = match done.remove(diff_id)? {
            Scan::Done(changes) => {
                done.insert(diff_id.clone(), Scan::Done(changes.clone()));
                return Some(changes);
            }
            Scan::Running(running) => running,
        };
        // Joined under the lock: a layer listed twice waits for the one
        // scan rather than reading the blob.
        match running.join().expect("SBOM scan thread panicked") {
            Ok(changes) => {
                let changes = Arc::new(changes);
                done.insert(diff_id.clone(), Scan::Done(changes.clone()));
                Some(changes)
            }
            Err(e) => {
                tracing::debug!("SBOM: the scan of {diff_id} failed ({e}); reading it");
                None
            }
        }
    }
}

impl Tap for LayerScans {
    fn open(&self) -> Option<Box<dyn TapSink>> {
        let (pipe, reader) = kiln_layer::tap::channel(PIPE_DEPTH);
        let scan = std::thread::Builder::new()
            .name("sbom-scan".into())
            .spawn(move || {
                let mut changes = scan_tar(reader, "the layer being streamed")?;
                changes.streamed = true;
                Ok(changes)
            })
            .map_err(|e| tracing::debug!("SBOM: no thread to scan a layer with ({e})"))
            .ok()?;
        Some(Box::new(ScanSink {
            pipe,
            scan,
            scans: self.clone(),
        }))
    }
}

/// One layer's stream on its way to its scan.
struct ScanSink {
    pipe: PipeWriter,
    scan: JoinHandle<Result<LayerChanges, kiln_layer::Error>>,
    scans: LayerScans,
}

impl TapSink for ScanSink {
    fn write(&mut self, bytes: &[u8]) {
        self.pipe.write(bytes);
    }

    fn finish(self: Box<Self>, diff_id: &Digest) {
        let ScanSink { pipe, scan, scans } = *self;
        pipe.close();
        // The same layer streamed twice (two stages unpacking one base):
        // either scan will do.
        scans
            .done
            .lock()
            .expect("SBOM scans lock")
            .entry(diff_id.clone())
            .or_insert(Scan::Running(scan));
    }
}

/// What one layer does to the files the cataloguers want.
#[derive(Debug, Clone, Default, PartialEq)]
struct LayerChanges {
    /// Scanned as the build streamed it, rather than read for the SBOM.
    streamed: bool,
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
    fn apply(&self, collector: &mut Collector) {
        for dir in &self.opaque {
            collector.remove_below(dir);
        }
        for path in &self.removed {
            collector.remove(path);
        }
        for (path, content) in &self.added {
            collector.add(path, content.clone());
        }
        for (path, packages) in &self.binaries {
            collector.add_binary(path, packages.clone());
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
) -> Result<LayerChanges, kiln_layer::Error> {
    let mut reader = kiln_layer::reader::open_blob(path, compression)?.expect_diff_id(diff_id);
    let label = reader.label().to_string();
    let changes = scan_tar(&mut reader, &label)?;
    reader.finish()?;
    Ok(changes)
}

/// What the layer whose uncompressed tar `tar` streams does to the files.
fn scan_tar(tar: impl Read, label: &str) -> Result<LayerChanges, kiln_layer::Error> {
    let mut changes = LayerChanges::default();
    kiln_layer::list::visit_tar_with_content(tar, label, |entry, content| {
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
    })?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
    use kiln_layer::reader::open_blob;
    use kiln_layer::{Entry, EntryMeta, LayerBlob, LayerOptions, LayerWriter};
    use std::path::Path;

    /// A layer holding what a scan looks at: a package database, a
    /// Python distribution, an executable ELF file, a file larger than the
    /// pipe between a stream and its scan holds, a hard link, a symlink,
    /// a directory, a whiteout and an opaque directory.
    fn write_layer(dir: &Path, tap: Option<TapHandle>) -> LayerBlob {
        let mut options = LayerOptions::new(Compression::Gzip);
        if let Some(tap) = tap {
            options = options.with_tap(tap);
        }
        let mut w = LayerWriter::new(dir, &options).unwrap();
        let mut file = |path: &str, mode: u32, content: &[u8]| {
            let entry = Entry::new(
                path,
                EntryKind::File {
                    size: content.len() as u64,
                },
                EntryMeta::with_mode(mode),
            );
            w.append(&entry, Some(&mut &content[..])).unwrap();
        };
        file(
            "var/lib/dpkg/status",
            0o644,
            b"Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5\n",
        );
        file(
            "usr/lib/python3/dist-packages/demo-1.0.dist-info/METADATA",
            0o644,
            b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        );
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(4096, 1);
        file("usr/bin/tool", 0o755, &elf);
        let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
        file("srv/big", 0o644, &big);
        let mut other = |path: &str, kind: EntryKind| {
            w.append(&Entry::new(path, kind, EntryMeta::with_mode(0o755)), None)
                .unwrap();
        };
        other(
            "srv/big-link",
            EntryKind::HardLink {
                target: "srv/big".into(),
            },
        );
        other(
            "bin",
            EntryKind::Symlink {
                target: "usr/bin".into(),
            },
        );
        other("opt", EntryKind::Dir);
        other("opt", EntryKind::Opaque);
        other("etc/gone", EntryKind::Whiteout);
        w.finish().unwrap()
    }

    #[test]
    fn a_streamed_layer_scans_as_reading_its_blob_does() {
        let dir = tempfile::tempdir().unwrap();
        let scans = LayerScans::default();
        let blob = write_layer(dir.path(), Some(scans.handle()));
        let read = read_layer(&blob.path, Some(blob.compression), blob.diff_id.clone()).unwrap();
        assert!(!read.streamed);
        assert_eq!(read.files.len(), 4);
        assert_eq!(read.added.len(), 2);
        let written = scans
            .take(&blob.diff_id)
            .expect("the written layer was scanned");
        assert!(written.streamed);
        let as_read = |c: &LayerChanges| LayerChanges {
            streamed: false,
            ..c.clone()
        };
        assert_eq!(as_read(&written), read);
        // Taken again (a layer the image lists twice): the same scan.
        assert!(Arc::ptr_eq(&scans.take(&blob.diff_id).unwrap(), &written));

        // Unpacking the blob scans the same.
        let unpacked = LayerScans::default();
        let root = tempfile::tempdir().unwrap();
        let reader = open_blob(&blob.path, None)
            .unwrap()
            .expect_diff_id(blob.diff_id.clone());
        let options = ExtractOptions::new(ApplyMode::Flatten).with_tap(unpacked.handle());
        extract(reader, root.path(), &options).unwrap();
        assert_eq!(as_read(&unpacked.take(&blob.diff_id).unwrap()), read);

        // A stream whose diff_id is not the expected one is not kept.
        let wrong = LayerScans::default();
        let root = tempfile::tempdir().unwrap();
        let reader = open_blob(&blob.path, None)
            .unwrap()
            .expect_diff_id(blob.digest.clone());
        let options = ExtractOptions::new(ApplyMode::Flatten).with_tap(wrong.handle());
        assert!(extract(reader, root.path(), &options).is_err());
        assert!(wrong.take(&blob.diff_id).is_none());
        assert!(wrong.done.lock().unwrap().is_empty());
    }
}
