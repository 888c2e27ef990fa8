//! Background cache stores: the build goes on while entries upload.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{CacheKey, LayerCache};
use crate::model::image::LayerRef;

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
    tasks: Mutex<Vec<JoinHandle<Option<String>>>>,
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
        self.spawn_task(async move {
            cache
                .store(&key, layer.as_ref(), &created_by)
                .await
                .map_err(|e| {
                    format!(
                        "could not store cache entry {key} in {}: {e}",
                        cache.describe()
                    )
                })
        });
    }

    /// Starts another store, `store`, whose error is its warning. Must be
    /// called inside a tokio runtime.
    pub fn spawn_task(
        &self,
        store: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
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
    pub async fn finish(self) -> Vec<String> {
        let tasks = match self.tasks.into_inner() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut warnings = Vec::new();
        for task in tasks {
            let warning = match task.await {
                Ok(w) => w,
                Err(e) => Some(format!("a cache store task failed: {e}")),
            };
            if let Some(w) = warning {
                tracing::warn!("{w}");
                warnings.push(w);
            }
        }
        warnings
    }
}
