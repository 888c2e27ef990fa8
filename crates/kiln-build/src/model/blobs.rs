//! Layer blobs on local disk: the ones this build wrote, and remote ones
//! downloaded once (content-addressed, verified) when something needs their
//! bytes — a root filesystem to materialize, a tar output, or a push to a
//! registry that cannot mount them.

use super::image::{LayerOrigin, LayerRef};
use crate::progress::{NoProgress, ProgressSink, TransferMeter};
use kiln_oci::{Access, Digest, RegistryClient, RegistryError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Downloads remote blobs at most once per build.
#[derive(Clone)]
pub struct BlobStore {
    dir: PathBuf,
    client: RegistryClient,
    cells: Arc<Mutex<HashMap<Digest, Arc<OnceCell<PathBuf>>>>>,
    /// Told how far each download has got.
    progress: Arc<dyn ProgressSink>,
}

impl BlobStore {
    /// A store keeping its files under `dir`.
    pub fn new(dir: PathBuf, client: RegistryClient) -> BlobStore {
        BlobStore {
            dir,
            client,
            cells: Arc::default(),
            progress: Arc::new(NoProgress),
        }
    }

    /// This store, reporting its downloads to `progress` as
    /// [`crate::progress::ProgressEvent::BlobTransfer`] events.
    pub fn with_progress(mut self, progress: Arc<dyn ProgressSink>) -> BlobStore {
        self.progress = progress;
        self
    }

    /// Where progress events go.
    pub fn progress(&self) -> &Arc<dyn ProgressSink> {
        &self.progress
    }

    /// The registry client the store downloads with.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The local path of `layer`'s blob, downloading it first when it is
    /// remote. Concurrent callers for the same digest share one download.
    pub async fn local_path(&self, layer: &LayerRef) -> Result<PathBuf, RegistryError> {
        self.fetch(layer, true).await
    }

    /// As [`BlobStore::local_path`], for a blob of cache metadata (a
    /// listing) rather than an image layer: its download is not reported
    /// as progress, so that the log's downloads are the image's layers.
    pub async fn metadata_path(&self, layer: &LayerRef) -> Result<PathBuf, RegistryError> {
        self.fetch(layer, false).await
    }

    async fn fetch(&self, layer: &LayerRef, report: bool) -> Result<PathBuf, RegistryError> {
        match &layer.origin {
            LayerOrigin::Local(path) => Ok(path.clone()),
            LayerOrigin::Remote(reference) => {
                let digest = &layer.descriptor.digest;
                let cell = {
                    let mut cells = self.cells.lock().expect("blob store lock");
                    cells.entry(digest.clone()).or_default().clone()
                };
                let path = cell
                    .get_or_try_init(|| async {
                        let path = self.download_path(digest);
                        let mut repo = self.client.repository(reference, Access::Pull);
                        if report {
                            repo = repo.observed(Arc::new(TransferMeter::new(
                                self.progress.clone(),
                                None,
                                digest.to_string(),
                                layer.descriptor.size,
                            )));
                        }
                        repo.download_blob(digest, Some(layer.descriptor.size), &path)
                            .await?;
                        Ok::<_, RegistryError>(path)
                    })
                    .await?;
                Ok(path.clone())
            }
        }
    }

    /// Records that `digest`'s blob is already at `path` (a base image
    /// warmed into `--cache-dir`), so it is never downloaded.
    pub fn seed(&self, digest: &Digest, path: PathBuf) {
        let cell = Arc::new(OnceCell::new_with(Some(path)));
        self.cells
            .lock()
            .expect("blob store lock")
            .insert(digest.clone(), cell);
    }

    /// True when `layer`'s blob is on local disk already (written by this
    /// build, downloaded, or seeded); false while a download is running.
    pub fn is_ready(&self, layer: &LayerRef) -> bool {
        match &layer.origin {
            LayerOrigin::Local(_) => true,
            LayerOrigin::Remote(_) => self
                .cells
                .lock()
                .expect("blob store lock")
                .get(&layer.descriptor.digest)
                .is_some_and(|cell| cell.initialized()),
        }
    }

    /// Where a download of `digest` writes, front to back, as it goes.
    pub fn download_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Where the store keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
