//! Background cache stores: the build goes on while entries upload.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{CacheError, CacheKey, LayerCache};
use crate::model::image::LayerRef;

/// Why a background store failed: a warning, never a build failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A step's entry could not be stored.
    #[error("could not store cache entry {key} in {cache}: {source}")]
    Entry {
        /// The entry's key.
        key: CacheKey,
        /// The cache, as [`StepStore::describe`](super::StepStore::describe) names it.
        cache: String,
        /// Why.
        source: CacheError,
    },
    /// A store started with [`CachePusher::spawn_task`] failed; its error
    /// says what it was storing.
    #[error("{0}")]
    Task(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The task running a store panicked or was cancelled.
    #[error("a cache store task failed: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

/// How many stores run at once by default: enough to overlap uploads
/// without flooding the registry or the runner's uplink.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Runs cache stores in the background with bounded concurrency. A failed
/// store is a warning: the cache only ever saves work, it never fails a build.
///
/// A `LayerOrigin::Local` layer's file must stay in place until
/// [`CachePusher::finish`] returns.
pub struct CachePusher {
    permits: Arc<Semaphore>,
    tasks: Mutex<Vec<JoinHandle<Option<StoreError>>>>,
}

impl Default for CachePusher {
    fn default() -> Self {
        CachePusher::new(DEFAULT_CONCURRENCY)
    }
}

impl CachePusher {
    /// A pusher running at most `concurrency` stores at once (at least one).
    pub fn new(concurrency: usize) -> CachePusher {
        CachePusher {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts storing `key` in `cache`. Must be called inside a tokio runtime.
    pub fn spawn(
        &self,
        cache: &LayerCache,
        key: CacheKey,
        layer: Option<LayerRef>,
        created_by: String,
    ) {
        let cache = cache.clone();
        self.start(async move {
            cache
                .store(&key, layer.as_ref(), &created_by)
                .await
                .map_err(|source| StoreError::Entry {
                    cache: cache.describe(),
                    key,
                    source,
                })
        });
    }

    /// Starts another store, `store`, whose error is its warning. Must be
    /// called inside a tokio runtime.
    pub fn spawn_task<E>(
        &self,
        store: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.start(async move { store.await.map_err(|e| StoreError::Task(Box::new(e))) });
    }

    fn start(
        &self,
        store: impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
    ) {
        let permits = self.permits.clone();
        let task = tokio::spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await.ok();
            store.await.err()
        });
        match self.tasks.lock() {
            Ok(mut tasks) => tasks.push(task),
            // A poisoned list only means another caller panicked; keep the task anyway.
            Err(poisoned) => poisoned.into_inner().push(task),
        }
    }

    /// Waits for every store; returns one warning per failed store (each
    /// also logged).
    pub async fn finish(self) -> Vec<StoreError> {
        let tasks = match self.tasks.into_inner() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut warnings = Vec::new();
        for task in tasks {
            let warning = match task.await {
                Ok(w) => w,
                Err(e) => Some(StoreError::Stopped(e)),
            };
            if let Some(w) = warning {
                tracing::warn!("{w}");
                warnings.push(w);
            }
        }
        warnings
    }
}
