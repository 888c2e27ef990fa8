//! Deleting expired cache entries (`kiln cache prune`).
//!
//! Only tags that are cache keys and manifests that are kiln entries are
//! touched; anything else in the repository is counted as skipped and left
//! alone. Entries are deleted by manifest digest (the registry API deletes
//! manifests, not tags); the registry's garbage collector reclaims blobs.

use std::time::Duration;

use time::OffsetDateTime;

use super::entry::{is_expired, Entry};
use super::{CacheError, CacheKey, LayerCache, RegistryCache};

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

/// Deletes the entries of `cache` made more than `older_than` ago.
///
/// # Errors
/// Registry or file errors; [`CacheError::DeleteUnsupported`] when the
/// registry refuses deletes.
pub async fn prune(cache: &LayerCache, older_than: Duration) -> Result<PruneReport, CacheError> {
    match cache {
        LayerCache::Registry(c) => prune_registry(c, older_than).await,
        LayerCache::Layout(c) => c.prune(older_than).await,
    }
}

async fn prune_registry(
    cache: &RegistryCache,
    older_than: Duration,
) -> Result<PruneReport, CacheError> {
    let name = cache.repo().name();
    let repo = cache.repository();
    let mut report = PruneReport::default();
    let tags = match repo.list_tags().await {
        Ok(t) => t,
        // No repository yet: nothing to prune.
        Err(e) if e.is_not_found() => return Ok(report),
        Err(e) => return Err(CacheError::registry(&name)(e)),
    };
    let now = OffsetDateTime::now_utc();
    for tag in tags {
        if CacheKey::from_tag(&tag).is_none() {
            report.skipped += 1;
            continue;
        }
        let fetched = match repo.get_manifest(&tag).await {
            Ok(f) => f,
            // Deleted meanwhile (by us through a shared digest, or another pruner).
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(CacheError::registry(&name)(e)),
        };
        let entry = match Entry::from_manifest_bytes(&fetched.bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::info!("{name}:{tag} is not a kiln cache entry ({e}); leaving it");
                report.skipped += 1;
                continue;
            }
        };
        report.examined += 1;
        if !is_expired(&entry.created, older_than, now) {
            report.kept += 1;
            continue;
        }
        match repo.delete_manifest(&fetched.digest).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) if e.status() == Some(405) => {
                return Err(CacheError::DeleteUnsupported { repo: name })
            }
            Err(e) => return Err(CacheError::registry(&name)(e)),
        }
        tracing::debug!("deleted cache entry {name}:{tag} from {}", entry.created);
        report.deleted += 1;
    }
    Ok(report)
}
