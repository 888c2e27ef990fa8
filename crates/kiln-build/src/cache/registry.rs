//! Cache entries in a registry repository: `<repo>:<key>`, one manifest per
//! entry (format in [`super::entry`]).
//!
//! Concurrent runners storing the same key is normal (every CI runner shares
//! the repository): blob pushes skip blobs already there, and a manifest PUT
//! replaces the tag, so the second store simply wins with an equivalent entry.

use std::time::Duration;

use kiln_oci::{media, Access, BlobSource, Reference, RegistryClient, Repository};
use time::OffsetDateTime;

use super::entry::{is_expired, Entry};
use super::{CacheError, CacheKey, CachedStep, PruneReport, StepStore};
use crate::model::image::{LayerOrigin, LayerRef};

/// A layer cache in a registry repository.
#[derive(Clone)]
pub struct RegistryCache {
    client: RegistryClient,
    repo: Reference,
    ttl: Duration,
    push: bool,
    /// Where layers copied from another registry pass through; the system
    /// temp directory when unset (kiln's own image has no `/tmp`).
    scratch: Option<std::path::PathBuf>,
}

impl RegistryCache {
    /// A cache in repository `repo` (its tag is not used). Entries older than
    /// `ttl` are misses; with `push` false, [`RegistryCache::store`] does nothing.
    pub fn new(
        client: RegistryClient,
        repo: Reference,
        ttl: Duration,
        push: bool,
    ) -> RegistryCache {
        RegistryCache {
            client,
            repo,
            ttl,
            push,
            scratch: None,
        }
    }

    /// This cache, copying layers between registries through files in `dir`.
    pub fn with_scratch(mut self, dir: std::path::PathBuf) -> RegistryCache {
        self.scratch = Some(dir);
        self
    }

    /// The repository.
    pub fn repo(&self) -> &Reference {
        &self.repo
    }

    /// The client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The repository handle. Cache reads and writes go to the cache
    /// registry itself, never to a mirror, so both use push access (Kaniko
    /// also applies `--insecure`, not `--insecure-pull`, to the cache repo);
    /// with pushing off, reads use pull access so read-only credentials work.
    pub(crate) fn repository(&self) -> Repository {
        let access = if self.push {
            Access::Push
        } else {
            Access::Pull
        };
        self.client.repository(&self.repo, access)
    }

    async fn push_layer(&self, repo: &Repository, layer: &LayerRef) -> Result<(), CacheError> {
        let name = self.repo.name();
        let d = &layer.descriptor;
        match &layer.origin {
            LayerOrigin::Local(path) => {
                repo.push_blob_file(path, &d.digest, d.size, None)
                    .await
                    .map_err(CacheError::registry(&name))?;
            }
            LayerOrigin::Remote(source) => {
                if repo
                    .blob_exists(&d.digest)
                    .await
                    .map_err(CacheError::registry(&name))?
                    .is_some()
                {
                    return Ok(());
                }
                if source.registry() == self.repo.registry()
                    && repo
                        .mount_blob(&d.digest, source.repository())
                        .await
                        .map_err(CacheError::registry(&name))?
                {
                    return Ok(());
                }
                // Another registry (or no mount): copy through a temp file.
                let dir = self.scratch.clone().unwrap_or_else(std::env::temp_dir);
                let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(CacheError::io(dir))?;
                self.client
                    .repository(source, Access::Pull)
                    .download_blob(&d.digest, Some(d.size), tmp.path())
                    .await
                    .map_err(CacheError::registry(&source.name()))?;
                repo.push_blob_file(tmp.path(), &d.digest, d.size, None)
                    .await
                    .map_err(CacheError::registry(&name))?;
            }
        }
        Ok(())
    }
}

impl RegistryCache {
    /// [`StepStore::lookup`], asking whether the layer blob is there (and
    /// of the size the entry says) only when `check_blob`.
    async fn find(
        &self,
        key: &CacheKey,
        check_blob: bool,
    ) -> Result<Option<CachedStep>, CacheError> {
        let name = self.repo.name();
        let repo = self.repository();
        let tag = key.to_string();
        let fetched = match repo.get_manifest(&tag).await {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(CacheError::registry(&name)(e)),
        };
        let entry = match Entry::from_manifest_bytes(&fetched.bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cache entry {name}:{tag} is unusable, ignoring it: {e}");
                return Ok(None);
            }
        };
        if is_expired(&entry.created, self.ttl, OffsetDateTime::now_utc()) {
            tracing::debug!(
                "cache entry {name}:{tag} from {} has expired",
                entry.created
            );
            return Ok(None);
        }
        let layer = match entry.layer {
            None => None,
            Some((descriptor, diff_id)) => {
                let found = if check_blob {
                    repo.blob_exists(&descriptor.digest).await
                } else {
                    Ok(Some(descriptor.size))
                };
                match found {
                    // A hit is never downloaded, so nothing else would catch
                    // an entry naming some other blob of the repository: its
                    // bytes would become the image's layer. The size the
                    // registry reports costs nothing and catches that (as the
                    // OCI-layout cache checks its blob file's length); 0 is
                    // a HEAD answer without a length, not a size.
                    Ok(Some(size)) if size != 0 && size != descriptor.size => {
                        tracing::warn!(
                            "cache entry {name}:{tag} names layer {} of {} bytes, but the registry has {size} bytes under that digest; ignoring the entry",
                            descriptor.digest,
                            descriptor.size
                        );
                        return Ok(None);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!(
                            "cache entry {name}:{tag} names layer {} which the registry no longer has; ignoring the entry",
                            descriptor.digest
                        );
                        return Ok(None);
                    }
                    Err(e) => return Err(CacheError::registry(&name)(e)),
                }
                let origin = self
                    .repo
                    .with_tag(&tag)
                    .map_err(|e| CacheError::InvalidRepo {
                        repo: name.clone(),
                        reason: e.to_string(),
                    })?;
                Some(LayerRef {
                    descriptor,
                    diff_id,
                    origin: LayerOrigin::Remote(origin),
                })
            }
        };
        Ok(Some(CachedStep {
            layer,
            created_by: entry.created_by,
            created: entry.created,
        }))
    }
}

#[async_trait::async_trait]
impl StepStore for RegistryCache {
    /// Looks up `key` with one manifest request and one blob `HEAD`.
    /// Missing, expired, malformed entries and entries whose layer blob is
    /// gone are `Ok(None)` (the last two with a warning).
    ///
    /// # Errors
    /// Registry errors other than "not found" (network, auth).
    async fn lookup(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        self.find(key, true).await
    }

    /// One manifest request: the layer is checked by its download.
    async fn lookup_to_download(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        self.find(key, false).await
    }

    /// Stores the result of the step with `key`: the layer blob (uploaded
    /// from its file, or mounted from another repository of the same
    /// registry), the entry's config blob, then the manifest tagged `key`.
    /// Does nothing when pushing is off.
    ///
    /// # Errors
    /// Registry and file errors.
    async fn store(
        &self,
        key: &CacheKey,
        layer: Option<&LayerRef>,
        created_by: &str,
    ) -> Result<(), CacheError> {
        if !self.push {
            return Ok(());
        }
        let name = self.repo.name();
        let repo = self.repository();
        if let Some(layer) = layer {
            self.push_layer(&repo, layer).await?;
        }
        let entry = Entry::new(
            layer.map(|l| (l.descriptor.clone(), l.diff_id.clone())),
            created_by,
        );
        let config = entry.config_bytes();
        let manifest = entry.manifest(&config);
        repo.push_blob(
            &BlobSource::Bytes(config.into()),
            &manifest.config.digest,
            manifest.config.size,
            None,
        )
        .await
        .map_err(CacheError::registry(&name))?;
        repo.put_manifest(
            &key.to_string(),
            manifest.to_vec().into(),
            media::OCI_MANIFEST,
        )
        .await
        .map_err(CacheError::registry(&name))?;
        tracing::debug!("stored cache entry {name}:{key}");
        Ok(())
    }

    /// Deletes expired entries by manifest digest (the registry API deletes
    /// manifests, not tags); the registry's garbage collector reclaims
    /// their blobs. Tags that are not cache keys and manifests that are not
    /// kiln entries are left alone.
    async fn prune(&self, older_than: Duration) -> Result<PruneReport, CacheError> {
        let name = self.repo.name();
        // Deleting needs push access whether or not this cache stores.
        let repo = self.client.repository(&self.repo, Access::Push);
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

    fn describe(&self) -> String {
        self.repo.name()
    }
}
