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
//!
//! Uploads go to each repository once, however many destinations name it
//! (`app:1.2` and `app:latest`): the distribution registry finishes every
//! upload by rewriting the blob's link file in the repository, not
//! atomically, and a manifest put that reads the link while a second upload
//! of the same blob rewrites it is refused (`MANIFEST_BLOB_UNKNOWN`), besides
//! the bytes going up twice.

use super::growing_layer::{GrowingLayer, GrowingMeter};
use crate::model::image::{LayerOrigin, LayerRef};
use crate::options::OutputOptions;
use crate::progress::{ProgressSink, TransferMeter};
use kiln_layer::watch::{WatchEnd, WatchHandle};
use kiln_oci::{Access, Digest, PushOutcome, Reference, RegistryClient, RegistryError, Repository};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Blob transfers in flight at once per destination (here and in the
/// final push).
pub(crate) const PARALLEL_BLOBS: usize = 4;

type Upload = JoinHandle<Result<PushOutcome, RegistryError>>;

/// A repository of a registry: destinations that differ only in their tag
/// share one.
type RepoKey = (String, String);

fn repo_key(reference: &Reference) -> RepoKey {
    (
        reference.registry().to_string(),
        reference.repository().to_string(),
    )
}

/// The uploads started so far, by repository and digest.
pub(crate) struct EarlyPush {
    /// Each destination repository once, with the first destination (as
    /// given) naming it: progress reports the upload under that one.
    repositories: Vec<(RepoKey, String, Repository)>,
    permits: Arc<Semaphore>,
    uploads: Mutex<HashMap<(RepoKey, Digest), Upload>>,
    /// Uploads of layers still being written: moved to `uploads` once
    /// their digest is known.
    growing: Mutex<Vec<GrowingUpload>>,
    progress: Arc<dyn ProgressSink>,
}

struct GrowingUpload {
    repository: RepoKey,
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
        let mut repositories: Vec<(RepoKey, String, Repository)> = Vec::new();
        for d in &output.destinations {
            let key = repo_key(&d.reference);
            if !repositories.iter().any(|(k, ..)| *k == key) {
                let repo = client.repository(&d.reference, Access::Push);
                repositories.push((key, d.as_given.clone(), repo));
            }
        }
        Some(EarlyPush {
            repositories,
            permits: Arc::new(Semaphore::new(PARALLEL_BLOBS)),
            uploads: Mutex::default(),
            growing: Mutex::default(),
            progress,
        })
    }

    /// Starts uploading `layer` to every destination's repository, when this build wrote
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
        for (repository, as_given, repo) in &self.repositories {
            let key = (repository.clone(), digest.clone());
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
    /// destination's repository while it is written. Must be called inside
    /// a tokio runtime.
    pub(crate) fn watch_layer(&self) -> WatchHandle {
        let (handle, watch) = WatchHandle::new();
        let mut growing = lock(&self.growing);
        for (repository, as_given, repo) in &self.repositories {
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
                repository: repository.clone(),
                layer: GrowingLayer(watch.clone()),
                upload,
            });
        }
        handle
    }

    /// Files the uploads of layers written since under their digests, for
    /// `start` and `outcome` to find; forgets those whose writer failed
    /// (their tasks end by themselves, without a request).
    fn adopt(&self, uploads: &mut HashMap<(RepoKey, Digest), Upload>, digest: &Digest) {
        let mut growing = lock(&self.growing);
        let mut still = Vec::new();
        for g in growing.drain(..) {
            match g.layer.0.end() {
                Some(WatchEnd::Finished {
                    digest: written, ..
                }) if &written == digest => {
                    // A second layer with the same bytes: the first upload
                    // stands for both, the other runs on detached.
                    uploads.entry((g.repository, written)).or_insert(g.upload);
                }
                Some(WatchEnd::Failed) => {}
                _ => still.push(g),
            }
        }
        *growing = still;
    }

    /// How the early upload of `digest` to `destination`'s repository
    /// ended, waiting for it; `None` when there was none (or its task
    /// failed), and for every destination in that repository after the
    /// first that asks: the blob is there by then, which pushing it finds
    /// with one `HEAD`.
    pub(crate) async fn outcome(
        &self,
        destination: &Reference,
        digest: &Digest,
    ) -> Option<Result<PushOutcome, RegistryError>> {
        let upload = {
            let mut uploads = lock(&self.uploads);
            self.adopt(&mut uploads, digest);
            uploads.remove(&(repo_key(destination), digest.clone()))?
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
