//! What a cache backend is ([`StepStore`]) and the one place a backend is
//! chosen for a [`CacheLocation`] ([`open_at`], and [`open`] for a build's
//! options). A new backend is one new type implementing [`StepStore`] and
//! one arm in [`open_at`]; the engine, the background pusher and
//! `kiln cache prune` only ever hold a [`LayerCache`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kiln_oci::{Reference, RegistryClient};

use super::{
    cache_repo_reference, CacheError, CacheKey, CacheLocation, CachedStep, OciLayoutCache,
    RegistryCache,
};
use crate::model::image::LayerRef;
use crate::options::CacheOptions;

/// Where step results are kept between builds: a key names one entry (the
/// step's layer, if any, and its history text).
///
/// Everything the cache holds is an entry: a layer listing is stored as an
/// entry whose layer is the listing's JSON, so no caller ever stores a blob
/// alone and there is no `put_blob`.
#[async_trait::async_trait]
pub trait StepStore: Send + Sync {
    /// Looks up `key`: `Ok(None)` on a miss, including expired and broken
    /// entries (those are logged as warnings).
    ///
    /// # Errors
    /// Registry or file errors other than "not found".
    async fn lookup(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError>;

    /// [`StepStore::lookup`] for an entry whose layer the caller downloads
    /// at once (a layer listing or a piece of one): the download checks the
    /// blob against its digest, so a backend may skip asking whether the
    /// blob is there (a registry saves a `HEAD` per listing). A blob gone
    /// since fails the download instead.
    ///
    /// # Errors
    /// As [`StepStore::lookup`].
    async fn lookup_to_download(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        self.lookup(key).await
    }

    /// Stores the result of the step with `key`: its layer first, then the
    /// entry naming it. Does nothing when pushing to the cache is off.
    ///
    /// # Errors
    /// Registry or file errors, or a layer that cannot be read or fetched.
    async fn store(
        &self,
        key: &CacheKey,
        layer: Option<&LayerRef>,
        created_by: &str,
    ) -> Result<(), CacheError>;

    /// Deletes the entries made more than `older_than` ago (`kiln cache
    /// prune`). Only entries whose name is a cache key are touched; anything
    /// else is counted as skipped and left alone.
    ///
    /// # Errors
    /// Registry or file errors; [`CacheError::DeleteUnsupported`] when a
    /// registry refuses deletes.
    async fn prune(&self, older_than: Duration) -> Result<PruneReport, CacheError>;

    /// Where the cache lives, for messages.
    fn describe(&self) -> String;
}

/// The layer cache a build (or `kiln cache prune`) uses: some [`StepStore`].
pub type LayerCache = Arc<dyn StepStore>;

/// What a prune did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Cache entries looked at.
    pub examined: usize,
    /// Entries deleted (expired or unreadable).
    pub deleted: usize,
    /// Entries kept (still fresh).
    pub kept: usize,
    /// Tags or manifests that are not kiln cache entries, left alone.
    pub skipped: usize,
}

/// How an opened cache behaves, wherever it lives.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Entries older than this are misses.
    pub ttl: Duration,
    /// Whether stores write anything.
    pub push: bool,
    /// Where layers passing through on their way into the cache are kept
    /// (a build's private working directory); the system temp directory
    /// when `None` (kiln's own image has no `/tmp`).
    pub scratch: Option<PathBuf>,
}

/// The cache at `location`. `client` is asked for a registry client only
/// when the backend needs one: always for a registry repository, and for an
/// OCI layout only when it stores (to fetch layers that live in a
/// registry), so pruning a layout reaches no registry.
///
/// # Errors
/// `client`'s error.
pub fn open_at<E>(
    location: CacheLocation,
    settings: StoreSettings,
    client: impl FnOnce() -> Result<RegistryClient, E>,
) -> Result<LayerCache, E> {
    Ok(match location {
        CacheLocation::Registry(repo) => {
            let cache = RegistryCache::new(client()?, repo, settings.ttl, settings.push);
            Arc::new(match settings.scratch {
                Some(dir) => cache.with_scratch(dir),
                None => cache,
            })
        }
        CacheLocation::Layout(dir) => {
            let cache = OciLayoutCache::new(dir, settings.ttl, settings.push);
            Arc::new(match settings.push {
                true => cache.with_client(client()?),
                false => cache,
            })
        }
    })
}

/// The cache a build with these options uses, or `None` when caching is off
/// or has nowhere to live. `client` reaches the cache registry (and fetches
/// remote layers for a layout cache); `scratch` is the build's private
/// working directory.
///
/// # Errors
/// As [`cache_repo_reference`].
pub fn open(
    options: &CacheOptions,
    first_destination: Option<&Reference>,
    client: &RegistryClient,
    scratch: PathBuf,
) -> Result<Option<LayerCache>, CacheError> {
    let Some(location) = cache_repo_reference(options, first_destination)? else {
        return Ok(None);
    };
    let settings = StoreSettings {
        ttl: options.ttl,
        push: options.push,
        scratch: Some(scratch),
    };
    open_at(location, settings, || Ok(client.clone())).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn settings(push: bool) -> StoreSettings {
        StoreSettings {
            ttl: Duration::from_secs(60),
            push,
            scratch: None,
        }
    }

    /// Opens `location`, counting how often a client was asked for.
    fn clients_asked(location: CacheLocation, push: bool) -> (String, usize) {
        let asked = Cell::new(0);
        let cache = open_at(location, settings(push), || {
            asked.set(asked.get() + 1);
            RegistryClient::new(Default::default())
        })
        .unwrap();
        (cache.describe(), asked.get())
    }

    #[test]
    fn a_registry_backend_always_gets_a_client() {
        let repo: Reference = "reg.example/app/cache".parse().unwrap();
        for push in [true, false] {
            let (name, asked) = clients_asked(CacheLocation::Registry(repo.clone()), push);
            assert_eq!((name.as_str(), asked), ("reg.example/app/cache", 1));
        }
    }

    #[test]
    fn a_layout_backend_gets_a_client_only_to_store() {
        let dir = PathBuf::from("/layout/cache");
        let (name, asked) = clients_asked(CacheLocation::Layout(dir.clone()), true);
        assert_eq!((name.as_str(), asked), ("oci:/layout/cache", 1));
        let (_, asked) = clients_asked(CacheLocation::Layout(dir), false);
        assert_eq!(asked, 0);
    }

    #[test]
    fn a_failing_client_fails_the_open() {
        let repo: Reference = "reg.example/app/cache".parse().unwrap();
        let opened = open_at(CacheLocation::Registry(repo), settings(true), || {
            Err("no client")
        });
        assert_eq!(opened.err(), Some("no client"));
    }
}
