//! Cache entries in a local OCI image layout (`--cache-repo oci:PATH`):
//! the same entries as in a registry (format in [`super::entry`]), with
//! `index.json` listing each entry's manifest under the annotation
//! `org.opencontainers.image.ref.name` = key.
//!
//! Several builds may share one layout. The format is [`crate::layout`]'s:
//! blobs are content-addressed and written to a temp file then renamed into
//! place, so a reader never sees a partial blob; `index.json` is rewritten
//! the same way under an exclusive `flock` on `index.json.lock`, so
//! concurrent stores never lose each other's entries. Readers take no lock:
//! a rename is atomic.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln_oci::{media, Access, Descriptor, RegistryClient};
use time::OffsetDateTime;

use super::entry::{is_expired, Entry};
use super::{CacheError, CacheKey, CachedStep, PruneReport, StepStore};
use crate::layout::{refs, Layout, LayoutError};
use crate::model::image::{LayerOrigin, LayerRef};

/// The annotation naming an index entry.
pub use crate::layout::REF_NAME;

/// Unreferenced blobs younger than this are kept by pruning: a store may be
/// writing blobs whose manifest is not in `index.json` yet.
const GC_GRACE: Duration = Duration::from_secs(3600);

/// A layer cache in an OCI image layout directory.
#[derive(Clone)]
pub struct OciLayoutCache {
    dir: PathBuf,
    ttl: Duration,
    push: bool,
    client: Option<RegistryClient>,
}

impl OciLayoutCache {
    /// A cache in `dir` (created on first store). Entries older than `ttl`
    /// are misses; with `push` false, stores do nothing.
    pub fn new(dir: PathBuf, ttl: Duration, push: bool) -> OciLayoutCache {
        OciLayoutCache {
            dir,
            ttl,
            push,
            client: None,
        }
    }

    /// Uses `client` to fetch layers that live in a registry when storing them.
    pub fn with_client(mut self, client: RegistryClient) -> OciLayoutCache {
        self.client = Some(client);
        self
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &kiln_oci::Digest) -> PathBuf {
        self.layout().blob_path(digest)
    }

    /// The layout the entries are in.
    fn layout(&self) -> Layout {
        Layout::open(&self.dir)
    }

    fn lookup_sync(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        let layout = self.layout();
        let index = match layout.read_index()? {
            Some(i) => i,
            None => return Ok(None),
        };
        let tag = key.to_string();
        let Some(desc) = refs::find(&index, &tag) else {
            return Ok(None);
        };
        let where_ = format!("oci:{}:{tag}", self.dir.display());
        let bytes = match layout.read_blob(&desc.digest).map_err(CacheError::from) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cache entry {where_} is unreadable, ignoring it: {e}");
                return Ok(None);
            }
        };
        let entry = match Entry::from_manifest_bytes(&bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cache entry {where_} is unusable, ignoring it: {e}");
                return Ok(None);
            }
        };
        if is_expired(&entry.created, self.ttl, OffsetDateTime::now_utc()) {
            return Ok(None);
        }
        let layer = match entry.layer {
            None => None,
            Some((descriptor, diff_id)) => {
                let path = self.blob_path(&descriptor.digest);
                match fs::metadata(&path) {
                    Ok(m) if m.len() == descriptor.size => {}
                    _ => {
                        tracing::warn!(
                            "cache entry {where_} names layer {} which is missing or truncated; ignoring the entry",
                            descriptor.digest
                        );
                        return Ok(None);
                    }
                }
                Some(LayerRef {
                    descriptor,
                    diff_id,
                    origin: LayerOrigin::Local(path),
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
impl StepStore for OciLayoutCache {
    /// Looks up `key`. Missing, expired and broken entries are `Ok(None)`
    /// (broken ones with a warning).
    ///
    /// # Errors
    /// An `index.json` that exists but cannot be read.
    async fn lookup(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || this.lookup_sync(&key)).await
    }

    /// Stores the result of the step with `key`: blobs first, then the
    /// `index.json` entry. Does nothing when pushing is off.
    ///
    /// # Errors
    /// File errors, a layer whose bytes do not match its digest, or a
    /// remote layer without a client.
    async fn store(
        &self,
        key: &CacheKey,
        layer: Option<&LayerRef>,
        created_by: &str,
    ) -> Result<(), CacheError> {
        if !self.push {
            return Ok(());
        }
        let layout = Layout::create(&self.dir)?;
        let mut layer_file = None;
        if let Some(l) = layer {
            match &l.origin {
                LayerOrigin::Local(path) => layer_file = Some(path.clone()),
                LayerOrigin::Remote(source) if !layout.has_blob(&l.descriptor.digest) => {
                    let client = self
                        .client
                        .as_ref()
                        .ok_or_else(|| CacheError::RemoteLayer {
                            digest: l.descriptor.digest.clone(),
                            reference: source.to_string(),
                        })?;
                    // The download checks the digest as it streams.
                    let incoming = layout.incoming_blob(&l.descriptor.digest)?;
                    client
                        .repository(source, Access::Pull)
                        .download_blob(
                            &l.descriptor.digest,
                            Some(l.descriptor.size),
                            incoming.path(),
                        )
                        .await
                        .map_err(CacheError::registry(&source.name()))?;
                    incoming.keep()?;
                }
                LayerOrigin::Remote(_) => {}
            }
        }
        let key = key.clone();
        let entry = Entry::new(
            layer.map(|l| (l.descriptor.clone(), l.diff_id.clone())),
            created_by,
        );
        let layer_desc = layer.map(|l| l.descriptor.clone());
        blocking(move || {
            if let (Some(path), Some(desc)) = (layer_file, layer_desc) {
                layout.copy_blob(&desc.digest, &path).map_err(|e| match e {
                    LayoutError::Digest { actual, .. } => CacheError::Layout {
                        path: path.clone(),
                        reason: format!("layer file has digest {actual}, expected {}", desc.digest),
                    },
                    other => other.into(),
                })?;
            }
            let config = entry.config_bytes();
            let manifest = entry.manifest(&config).to_vec();
            layout.write_blob(&config)?;
            let digest = layout.write_blob(&manifest)?;
            let desc = Descriptor::new(media::OCI_MANIFEST, digest, manifest.len() as u64);
            layout.update_index(|index| {
                refs::put(index, desc, Some(&key.to_string()));
                Ok::<_, CacheError>(())
            })
        })
        .await
    }

    /// Drops entries made more than `older_than` ago from `index.json`, then
    /// deletes blobs no remaining entry uses (unless recently written).
    ///
    /// # Errors
    /// File errors.
    async fn prune(&self, older_than: Duration) -> Result<PruneReport, CacheError> {
        let dir = self.dir.clone();
        blocking(move || prune_sync(&dir, older_than)).await
    }

    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }
}

fn prune_sync(dir: &Path, older_than: Duration) -> Result<PruneReport, CacheError> {
    let mut report = PruneReport::default();
    let layout = Layout::open(dir);
    if layout.read_index()?.is_none() {
        return Ok(report);
    }
    let now = OffsetDateTime::now_utc();
    layout.update_index(|index| {
        let mut keep = Vec::new();
        for desc in index.manifests.drain(..) {
            let is_key = refs::ref_name(&desc).and_then(CacheKey::from_tag).is_some();
            if !is_key {
                report.skipped += 1;
                keep.push(desc);
                continue;
            }
            report.examined += 1;
            let entry = layout
                .read_blob(&desc.digest)
                .ok()
                .and_then(|b| Entry::from_manifest_bytes(&b).ok());
            match entry {
                Some(e) if !is_expired(&e.created, older_than, now) => {
                    report.kept += 1;
                    keep.push(desc);
                }
                // Expired, or broken beyond use: either way it can only ever miss.
                _ => report.deleted += 1,
            }
        }
        index.manifests = keep;
        // Collect garbage while holding the lock, so no store adds an entry
        // naming a blob we are about to remove (recent blobs are kept anyway).
        let mut used = std::collections::HashSet::new();
        for desc in &index.manifests {
            used.insert(desc.digest.hex().to_string());
            if let Ok(bytes) = fs::read(layout.blob_path(&desc.digest)) {
                if let Ok(m) = kiln_oci::Manifest::from_slice(&bytes) {
                    used.insert(m.config.digest.hex().to_string());
                    used.extend(m.layers.iter().map(|l| l.digest.hex().to_string()));
                }
            }
        }
        for blob in layout.blob_files()? {
            let old = fs::metadata(&blob.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > GC_GRACE);
            if old && !used.contains(&blob.name) {
                let _ = fs::remove_file(&blob.path);
            }
        }
        Ok::<_, CacheError>(())
    })?;
    Ok(report)
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(CacheError::Io {
            path: PathBuf::new(),
            source: io::Error::other(format!("cache task failed: {e}")),
        })
    })
}
