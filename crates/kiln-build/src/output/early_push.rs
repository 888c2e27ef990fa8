//! Layer uploads that start while the build runs.
//!
//! Each layer the target stage writes goes to every destination as soon as
//! it exists, while later steps run; the push at the end then waits for
//! those uploads and sends only what is left (config, manifest, layers from
//! elsewhere). A build whose last steps are slow no longer adds the upload
//! of its big layers after them.
//!
//! A layer's upload starts with its writer ([`EarlyPush::watch_layer`]),
//! chunk by chunk as the blob grows; once the layer is recorded under its
//! digest, that upload is the one [`EarlyPush::outcome`] waits for.

use super::growing_layer::{GrowingLayer, GrowingMeter};
use crate::model::image::{LayerOrigin, LayerRef};
use crate::options::OutputOptions;
use crate::progress::{ProgressSink, TransferMeter};
use kiln_layer::watch::{WatchEnd, WatchHandle};
use kiln_oci::{Access, Digest, PushOutcome, RegistryClient, RegistryError, Repository};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Blob transfers in flight at once per destination (here and in the
/// final push).
pub(crate) const PARALLEL_BLOBS: usize = 4;

type Upload = JoinHandle<Result<PushOutcome, RegistryError>>;

/// The uploads started so far, by destination (as given) and digest.
pub(crate) struct EarlyPush {
    destinations: Vec<(String, Repository)>,
    permits: Arc<Semaphore>,
    uploads: Mutex<HashMap<(String, Digest), Upload>>,
    /// Uploads of layers still being written: moved to `uploads` once
    /// their digest is known.
    growing: Mutex<Vec<GrowingUpload>>,
    progress: Arc<dyn ProgressSink>,
}

struct GrowingUpload {
    destination: String,
    layer: GrowingLayer,
    upload: Upload,
}

impl EarlyPush {
    /// Uploads to `output`'s destinations; `None` when nothing is pushed.
    pub(crate) fn new(
        output: &OutputOptions,
        client: &RegistryClient,
        progress: Arc<dyn ProgressSink>,
    ) -> Option<EarlyPush> {
        if !output.push || output.destinations.is_empty() {
            return None;
        }
        let destinations = output
            .destinations
            .iter()
            .map(|d| {
                let repo = client.repository(&d.reference, Access::Push);
                (d.as_given.clone(), repo)
            })
            .collect();
        Some(EarlyPush {
            destinations,
            permits: Arc::new(Semaphore::new(PARALLEL_BLOBS)),
            uploads: Mutex::default(),
            growing: Mutex::default(),
            progress,
        })
    }

    /// Starts uploading `layer` to every destination, when this build wrote
    /// it (a layer from a registry may only need a mount, decided at push
    /// time). Must be called inside a tokio runtime.
    pub(crate) fn start(&self, layer: &LayerRef) {
        let LayerOrigin::Local(path) = &layer.origin else {
            return;
        };
        let digest = layer.descriptor.digest.clone();
        let size = layer.descriptor.size;
        let mut uploads = lock(&self.uploads);
        self.adopt(&mut uploads, &digest);
        for (as_given, repo) in &self.destinations {
            let key = (as_given.clone(), digest.clone());
            if uploads.contains_key(&key) {
                continue;
            }
            let meter = TransferMeter::new(
                self.progress.clone(),
                Some(as_given.clone()),
                digest.to_string(),
                size,
            );
            let repo = repo.clone().observed(Arc::new(meter));
            let permits = self.permits.clone();
            let (path, digest) = (path.clone(), digest.clone());
            uploads.insert(
                key,
                tokio::spawn(async move {
                    // The semaphore is never closed, so acquiring only waits.
                    let _permit = permits.acquire_owned().await.ok();
                    repo.push_blob_file(&path, &digest, size, None).await
                }),
            );
        }
    }

    /// A watch for the options of a layer writer: the layer goes to every
    /// destination while it is written. Must be called inside a tokio
    /// runtime.
    pub(crate) fn watch_layer(&self) -> WatchHandle {
        let (handle, watch) = WatchHandle::new();
        let mut growing = lock(&self.growing);
        for (as_given, repo) in &self.destinations {
            let meter = GrowingMeter::new(self.progress.clone(), as_given.clone(), watch.clone());
            let repo = repo.clone().observed(Arc::new(meter));
            let permits = self.permits.clone();
            let layer = GrowingLayer(watch.clone());
            let upload = tokio::spawn(async move {
                layer.started().await;
                let _permit = permits.acquire_owned().await.ok();
                repo.push_growing_blob(&layer).await
            });
            growing.push(GrowingUpload {
                destination: as_given.clone(),
                layer: GrowingLayer(watch.clone()),
                upload,
            });
        }
        handle
    }

    /// Files the uploads of layers written since under their digests, for
    /// `start` and `outcome` to find; forgets those whose writer failed
    /// (their tasks end by themselves, without a request).
    fn adopt(&self, uploads: &mut HashMap<(String, Digest), Upload>, digest: &Digest) {
        let mut growing = lock(&self.growing);
        let mut still = Vec::new();
        for g in growing.drain(..) {
            match g.layer.0.end() {
                Some(WatchEnd::Finished {
                    digest: written, ..
                }) if &written == digest => {
                    // A second layer with the same bytes: the first upload
                    // stands for both, the other runs on detached.
                    uploads.entry((g.destination, written)).or_insert(g.upload);
                }
                Some(WatchEnd::Failed) => {}
                _ => still.push(g),
            }
        }
        *growing = still;
    }

    /// How the early upload of `digest` to `destination` ended, waiting for
    /// it; `None` when there was none (or its task failed).
    pub(crate) async fn outcome(
        &self,
        destination: &str,
        digest: &Digest,
    ) -> Option<Result<PushOutcome, RegistryError>> {
        let upload = {
            let mut uploads = lock(&self.uploads);
            self.adopt(&mut uploads, digest);
            uploads.remove(&(destination.to_string(), digest.clone()))?
        };
        upload.await.ok()
    }
}

impl Drop for EarlyPush {
    /// A build that fails stops its uploads: the layer files go with it.
    fn drop(&mut self) {
        for (_, upload) in lock(&self.uploads).drain() {
            upload.abort();
        }
        for growing in lock(&self.growing).drain(..) {
            growing.upload.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
