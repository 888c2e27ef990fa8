//! A stage's root filesystem, materialized on demand: the image's layers
//! applied in order into a private directory, each one once. COPY needs it
//! to know what a destination already is and to read `/etc/passwd` for
//! `--chown`; `COPY --from` reads files out of it.

use super::blobs::BlobStore;
use super::growing::{DownloadFailed, DownloadWatch, GrowingFile};
use super::image::{ImageState, LayerRef};
use crate::copy::FileKind;
use futures::future::try_join_all;
use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
use kiln_layer::reader::open_stream;
use kiln_layer::resolve::{in_root, ResolveOptions};
use kiln_layer::tap::TapHandle;
use kiln_layer::{Catalog, CatalogOptions};
use kiln_oci::media::Compression;
use std::fs;
use std::path::{Path, PathBuf};

/// Why a root filesystem could not be materialized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootfsError {
    /// A layer could not be downloaded.
    #[error("downloading layer {digest}: {source}")]
    Download {
        /// The layer.
        digest: kiln_oci::Digest,
        /// Why.
        source: Box<kiln_oci::RegistryError>,
    },
    /// A layer could not be applied.
    #[error("unpacking layer {digest}: {source}")]
    Extract {
        /// The layer.
        digest: kiln_oci::Digest,
        /// Why.
        source: kiln_layer::Error,
    },
    /// The directory could not be made.
    #[error("creating {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A root filesystem directory and how many of an image's layers it holds.
#[derive(Debug, Clone)]
pub struct Rootfs {
    dir: PathBuf,
    applied: Vec<kiln_oci::Digest>,
}

impl Rootfs {
    /// An empty root at `dir` (created now).
    pub fn new(dir: PathBuf) -> Result<Rootfs, RootfsError> {
        fs::create_dir_all(&dir).map_err(|source| RootfsError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Rootfs {
            dir,
            applied: Vec::new(),
        })
    }

    /// Records that the root already holds layer `digest` (a RUN's changes
    /// were folded in), the next on top of those applied.
    pub fn mark_applied(&mut self, digest: &kiln_oci::Digest) {
        self.applied.push(digest.clone());
    }

    /// Records that the root holds `digest`, the layer at `at` in the image
    /// (recorded after the layers above it; see `engine::pending`).
    pub fn insert_applied(&mut self, at: usize, digest: &kiln_oci::Digest) {
        self.applied
            .insert(at.min(self.applied.len()), digest.clone());
    }

    /// True when the root holds exactly `image`'s layers.
    pub fn holds(&self, image: &ImageState) -> bool {
        image.layers.len() == self.applied.len()
            && image
                .layers
                .iter()
                .zip(&self.applied)
                .all(|(l, d)| &l.descriptor.digest == d)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Brings the root up to `image`: applies the layers it does not hold
    /// yet. The image must extend what was applied before (layers are only
    /// ever added on top). With `catalog`, returns what each layer that
    /// came from a registry holds, recorded as it was unpacked; with `tap`,
    /// hands each layer's tar stream to it as it is unpacked.
    pub async fn sync(
        &mut self,
        image: &ImageState,
        blobs: &BlobStore,
        catalog: Option<&CatalogOptions>,
        tap: Option<&TapHandle>,
    ) -> Result<Vec<(LayerRef, Catalog)>, RootfsError> {
        debug_assert!(image
            .layers
            .iter()
            .zip(&self.applied)
            .all(|(l, d)| &l.descriptor.digest == d));
        let pending: Vec<&LayerRef> = image.layers.iter().skip(self.applied.len()).collect();
        let mut catalogs = Vec::new();
        if pending.is_empty() {
            return Ok(catalogs);
        }
        // Layers this build wrote were recorded as they were written.
        let record = |layer: &LayerRef| {
            catalog.filter(|_| matches!(layer.origin, super::image::LayerOrigin::Remote(_)))
        };
        // Downloads run in parallel; application is in order. The bottom
        // layer of an empty root is unpacked while it downloads.
        let started = std::time::Instant::now();
        let count = pending.len();
        let stream_first = self.applied.is_empty() && !blobs.is_ready(pending[0]);
        let downloads: Vec<_> = pending
            .iter()
            .map(|layer| {
                let (blobs, layer) = (blobs.clone(), (*layer).clone());
                tokio::spawn(async move {
                    blobs
                        .local_path(&layer)
                        .await
                        .map_err(|source| RootfsError::Download {
                            digest: layer.descriptor.digest.clone(),
                            source: Box::new(source),
                        })
                })
            })
            .collect();
        let mut downloads = downloads.into_iter();
        let mut pending = pending.into_iter();
        if stream_first {
            let layer = pending.next().expect("pending is non-empty");
            let download = downloads.next().expect("one download per layer");
            let recorded = self
                .apply_while_downloading(layer, download, blobs, record(layer), tap)
                .await?;
            catalogs.extend(recorded.map(|c| (layer.clone(), c)));
        }
        let paths = try_join_all(
            downloads.map(|d| async move { d.await.expect("layer download task panicked") }),
        )
        .await?;
        let downloaded = started.elapsed();
        for (layer, path) in pending.zip(paths) {
            let dir = self.dir.clone();
            let layer_c = layer.clone();
            let catalog = record(layer).cloned();
            let tap = tap.cloned();
            let recorded = tokio::task::spawn_blocking(move || {
                apply_layer(&dir, &layer_c, &path, catalog.as_ref(), tap)
            })
            .await
            .expect("layer extraction task panicked")?;
            catalogs.extend(recorded.map(|c| (layer.clone(), c)));
            self.applied.push(layer.descriptor.digest.clone());
        }
        tracing::debug!(
            "root filesystem: {count} layers, downloads{} {:.2}s, unpacking {:.2}s",
            if stream_first {
                " (the first unpacked as it arrived)"
            } else {
                ""
            },
            downloaded.as_secs_f64(),
            (started.elapsed() - downloaded).as_secs_f64()
        );
        Ok(catalogs)
    }

    /// Applies the root's first layer from its blob file as the download
    /// writes it. The result counts only once the download is verified;
    /// should the unpack fail while the download succeeds (a retried
    /// transfer rewrote the file under the reader), the root is emptied
    /// and the layer applied again from the finished file.
    async fn apply_while_downloading(
        &mut self,
        layer: &LayerRef,
        download: tokio::task::JoinHandle<Result<PathBuf, RootfsError>>,
        blobs: &BlobStore,
        catalog: Option<&CatalogOptions>,
        tap: Option<&TapHandle>,
    ) -> Result<Option<Catalog>, RootfsError> {
        let watch = std::sync::Arc::new(DownloadWatch::default());
        let path = blobs.download_path(&layer.descriptor.digest);
        let (dir, layer_c, watch_c) = (self.dir.clone(), layer.clone(), watch.clone());
        let (catalog_c, tap_c) = (catalog.cloned(), tap.cloned());
        let unpack = tokio::task::spawn_blocking(move || {
            apply_source(
                &dir,
                &layer_c,
                GrowingFile::new(path, watch_c),
                catalog_c.as_ref(),
                tap_c,
            )
        });
        let downloaded = download.await.expect("layer download task panicked");
        // The reader stops at the failure; the download's error is the one
        // returned below.
        watch.set(downloaded.as_ref().map(|_| ()).map_err(|_| DownloadFailed {
            what: layer.descriptor.digest.to_string(),
        }));
        let unpacked = unpack.await.expect("layer extraction task panicked");
        let path = downloaded?;
        let recorded = match unpacked {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::debug!("unpacking during the download failed ({e}); unpacking again");
                let io = |source| RootfsError::Io {
                    path: self.dir.clone(),
                    source,
                };
                fs::remove_dir_all(&self.dir).map_err(io)?;
                fs::create_dir(&self.dir).map_err(io)?;
                let (dir, layer_c, catalog_c) = (self.dir.clone(), layer.clone(), catalog.cloned());
                let tap_c = tap.cloned();
                tokio::task::spawn_blocking(move || {
                    apply_layer(&dir, &layer_c, &path, catalog_c.as_ref(), tap_c)
                })
                .await
                .expect("layer extraction task panicked")?
            }
        };
        self.applied.push(layer.descriptor.digest.clone());
        Ok(recorded)
    }

    /// What `path` (absolute in the image) is, following symlinks inside
    /// the root; `None` when it does not exist.
    pub fn kind_of(&self, path: &str) -> Option<FileKind> {
        let resolved = in_root(&self.dir, path, ResolveOptions::new()).ok()?;
        let meta = fs::symlink_metadata(resolved).ok()?;
        let t = meta.file_type();
        Some(if t.is_dir() {
            FileKind::Dir
        } else if t.is_file() {
            FileKind::File
        } else if t.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        })
    }

    /// `path` (absolute in the image) with every symlink along it
    /// followed inside the root, as an image path; `None` for a link loop.
    /// (On disk, through kiln-layer's resolver; a layer listing answers the
    /// same question in `listing::ListingIndex::resolve`.)
    pub fn resolve(&self, path: &str) -> Option<String> {
        let host = in_root(&self.dir, path, ResolveOptions::new()).ok()?;
        // The resolver's result is the root joined with plain names.
        let rel = host.strip_prefix(&self.dir).ok()?;
        Some(format!("/{}", rel.to_string_lossy()))
    }

    /// The contents of a small text file in the image (`/etc/passwd`), if
    /// it exists.
    ///
    /// # Errors
    /// When it is not a regular file of bounded size (a FIFO, a device, a
    /// symlink to one), naming it.
    pub fn read_text(&self, path: &str) -> Result<Option<String>, super::error::ImageTextError> {
        super::image_text::read_image_text(&self.dir, path)
    }
}

fn apply_layer(
    dir: &Path,
    layer: &LayerRef,
    path: &Path,
    catalog: Option<&CatalogOptions>,
    tap: Option<TapHandle>,
) -> Result<Option<Catalog>, RootfsError> {
    let file = fs::File::open(path).map_err(|source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    apply_source(dir, layer, file, catalog, tap)
}

/// Applies `layer`, its blob read from `source` (a file, or one still
/// being downloaded), checking its diff_id; with `catalog`, returns what
/// the layer holds; with `tap`, hands it the layer's tar as it streams.
fn apply_source(
    dir: &Path,
    layer: &LayerRef,
    source: impl std::io::Read + Send + 'static,
    catalog: Option<&CatalogOptions>,
    tap: Option<TapHandle>,
) -> Result<Option<Catalog>, RootfsError> {
    let err = |source| RootfsError::Extract {
        digest: layer.descriptor.digest.clone(),
        source,
    };
    let compression = Compression::of_media_type(&layer.descriptor.media_type);
    let label = layer.descriptor.digest.to_string();
    let reader = open_stream(source, compression, label)
        .map_err(err)?
        .expect_diff_id(layer.diff_id.clone());
    let mut options = ExtractOptions::new(ApplyMode::Flatten);
    if let Some(catalog) = catalog {
        options = options.with_catalog(catalog.clone());
    }
    if let Some(tap) = tap {
        options = options.with_tap(tap);
    }
    let summary = extract(reader, dir, &options).map_err(err)?;
    Ok(summary.catalog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("../../../../etc", r.join("usr/escape")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let rootfs = Rootfs {
            dir: r.to_path_buf(),
            applied: vec![],
        };
        assert_eq!(rootfs.kind_of("/lib"), Some(FileKind::Dir));
        assert_eq!(rootfs.kind_of("/lib/missing"), None);
        assert_eq!(rootfs.kind_of("/etc/passwd"), Some(FileKind::File));
        // `..` through a symlink stays inside the root.
        assert_eq!(
            rootfs.resolve("/usr/escape/passwd").as_deref(),
            Some("/etc/passwd")
        );
        assert_eq!(
            rootfs.resolve("/../../etc/passwd").as_deref(),
            Some("/etc/passwd")
        );
        assert!(rootfs
            .read_text("/usr/escape/passwd")
            .unwrap()
            .unwrap()
            .starts_with("root:"));
    }

    #[test]
    fn resolve_gives_the_image_path_a_link_leads_to() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("../../../usr/bin/../bin", r.join("usr/up")).unwrap();
        let rootfs = Rootfs {
            dir: r.to_path_buf(),
            applied: vec![],
        };
        assert_eq!(rootfs.resolve("/bin/foo").as_deref(), Some("/usr/bin/foo"));
        assert_eq!(rootfs.resolve("/bin").as_deref(), Some("/usr/bin"));
        assert_eq!(
            rootfs.resolve("/usr/up/new/dir").as_deref(),
            Some("/usr/bin/new/dir")
        );
        assert_eq!(rootfs.resolve("/none/x").as_deref(), Some("/none/x"));
        assert_eq!(rootfs.resolve("/").as_deref(), Some("/"));
    }

    #[test]
    fn symlink_loops_end() {
        let root = tempfile::tempdir().unwrap();
        symlink("/b", root.path().join("a")).unwrap();
        symlink("/a", root.path().join("b")).unwrap();
        let rootfs = Rootfs {
            dir: root.path().to_path_buf(),
            applied: vec![],
        };
        assert_eq!(rootfs.resolve("/a/x"), None);
        assert_eq!(rootfs.kind_of("/a/x"), None);
    }
}
