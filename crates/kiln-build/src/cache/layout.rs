//! Cache entries in a local OCI image layout (`--cache-repo oci:PATH`):
//! the same entries as in a registry (format in [`super::entry`]), with
//! `index.json` listing each entry's manifest under the annotation
//! `org.opencontainers.image.ref.name` = key.
//!
//! Several builds may share one layout. Blobs are content-addressed and
//! written to a temp file then renamed into place, so a reader never sees a
//! partial blob; `index.json` is rewritten the same way under an exclusive
//! `flock` on `index.json.lock`, so concurrent stores never lose each other's
//! entries. Readers take no lock: a rename is atomic.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln_oci::{media, Access, Descriptor, Digest, Index, RegistryClient};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::entry::{is_expired, Entry};
use super::prune::PruneReport;
use super::{CacheError, CacheKey, CachedStep};
use crate::model::image::{LayerOrigin, LayerRef};

/// The annotation naming an index entry.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

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
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// Looks up `key`. Missing, expired and broken entries are `Ok(None)`
    /// (broken ones with a warning).
    ///
    /// # Errors
    /// An `index.json` that exists but cannot be read.
    pub async fn lookup(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || this.lookup_sync(&key)).await
    }

    fn lookup_sync(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        let index = match read_index(&self.dir)? {
            Some(i) => i,
            None => return Ok(None),
        };
        let tag = key.to_string();
        let Some(desc) = index
            .manifests
            .iter()
            .rev()
            .find(|d| d.annotations.get(REF_NAME) == Some(&tag))
        else {
            return Ok(None);
        };
        let where_ = format!("oci:{}:{tag}", self.dir.display());
        let bytes = match read_verified(&self.blob_path(&desc.digest), &desc.digest) {
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

    /// Stores the result of the step with `key`: blobs first, then the
    /// `index.json` entry. Does nothing when pushing is off.
    ///
    /// # Errors
    /// File errors, a layer whose bytes do not match its digest, or a
    /// remote layer without a client.
    pub async fn store(
        &self,
        key: &CacheKey,
        layer: Option<&LayerRef>,
        created_by: &str,
    ) -> Result<(), CacheError> {
        if !self.push {
            return Ok(());
        }
        ensure_layout(&self.dir)?;
        let mut layer_file = None;
        if let Some(l) = layer {
            let target = self.blob_path(&l.descriptor.digest);
            match &l.origin {
                LayerOrigin::Local(path) => layer_file = Some(path.clone()),
                LayerOrigin::Remote(source) if !target.exists() => {
                    let client = self
                        .client
                        .as_ref()
                        .ok_or_else(|| CacheError::RemoteLayer {
                            digest: l.descriptor.digest.clone(),
                            reference: source.to_string(),
                        })?;
                    // Download next to the target so the rename stays on one filesystem.
                    let tmp = temp_in(&target)?;
                    client
                        .repository(source, Access::Pull)
                        .download_blob(&l.descriptor.digest, Some(l.descriptor.size), tmp.path())
                        .await
                        .map_err(CacheError::registry(&source.name()))?;
                    persist(tmp, &target)?;
                }
                LayerOrigin::Remote(_) => {}
            }
        }
        let this = self.clone();
        let key = key.clone();
        let entry = Entry::new(
            layer.map(|l| (l.descriptor.clone(), l.diff_id.clone())),
            created_by,
        );
        let layer_desc = layer.map(|l| l.descriptor.clone());
        blocking(move || {
            if let (Some(path), Some(desc)) = (layer_file, layer_desc) {
                copy_blob(&path, &this.dir, &desc.digest)?;
            }
            let config = entry.config_bytes();
            let manifest = entry.manifest(&config).to_vec();
            write_blob(&this.dir, &config)?;
            let digest = write_blob(&this.dir, &manifest)?;
            let mut desc = Descriptor::new(media::OCI_MANIFEST, digest, manifest.len() as u64);
            desc.annotations
                .insert(REF_NAME.to_string(), key.to_string());
            update_index(&this.dir, |index| {
                index
                    .manifests
                    .retain(|d| d.annotations.get(REF_NAME) != desc.annotations.get(REF_NAME));
                index.manifests.push(desc);
                Ok(())
            })
        })
        .await
    }

    /// Drops entries made more than `older_than` ago from `index.json`, then
    /// deletes blobs no remaining entry uses (unless recently written).
    ///
    /// # Errors
    /// File errors.
    pub async fn prune(&self, older_than: Duration) -> Result<PruneReport, CacheError> {
        let dir = self.dir.clone();
        blocking(move || prune_sync(&dir, older_than)).await
    }
}

fn prune_sync(dir: &Path, older_than: Duration) -> Result<PruneReport, CacheError> {
    let mut report = PruneReport::default();
    if read_index(dir)?.is_none() {
        return Ok(report);
    }
    let now = OffsetDateTime::now_utc();
    update_index(dir, |index| {
        let mut keep = Vec::new();
        for desc in index.manifests.drain(..) {
            let is_key = desc
                .annotations
                .get(REF_NAME)
                .and_then(|n| CacheKey::from_tag(n))
                .is_some();
            if !is_key {
                report.skipped += 1;
                keep.push(desc);
                continue;
            }
            report.examined += 1;
            let entry = read_verified(&blob_path(dir, &desc.digest), &desc.digest)
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
            if let Ok(bytes) = fs::read(blob_path(dir, &desc.digest)) {
                if let Ok(m) = kiln_oci::Manifest::from_slice(&bytes) {
                    used.insert(m.config.digest.hex().to_string());
                    used.extend(m.layers.iter().map(|l| l.digest.hex().to_string()));
                }
            }
        }
        let blobs = dir.join("blobs/sha256");
        let listing = fs::read_dir(&blobs).map_err(CacheError::io(&blobs))?;
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().to_string();
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > GC_GRACE);
            if old && !used.contains(&name) {
                let _ = fs::remove_file(item.path());
            }
        }
        Ok(())
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

pub(crate) fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    let text = digest.to_string();
    let algorithm = text.split_once(':').map_or("sha256", |(a, _)| a);
    dir.join("blobs").join(algorithm).join(digest.hex())
}

/// Creates the layout's skeleton when missing.
pub(crate) fn ensure_layout(dir: &Path) -> Result<(), CacheError> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(CacheError::io(&blobs))?;
    let marker = dir.join("oci-layout");
    if !marker.exists() {
        write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    Ok(())
}

/// A temp file beside `target`.
pub(crate) fn temp_in(target: &Path) -> Result<tempfile::NamedTempFile, CacheError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(CacheError::io(dir))
}

/// Renames a finished temp file into place. A concurrent writer of the same
/// content-addressed file may win: the result is the same bytes.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, target: &Path) -> Result<(), CacheError> {
    tmp.persist(target)
        .map(|_| ())
        .map_err(|e| CacheError::io(target)(e.error))
}

/// Writes `bytes` to `path` through a temp file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let mut tmp = temp_in(path)?;
    tmp.write_all(bytes).map_err(CacheError::io(path))?;
    tmp.as_file().sync_all().map_err(CacheError::io(path))?;
    persist(tmp, path)
}

/// Writes a blob (unless present) and returns its digest.
pub(crate) fn write_blob(dir: &Path, bytes: &[u8]) -> Result<Digest, CacheError> {
    let digest = Digest::sha256_of(bytes);
    let path = blob_path(dir, &digest);
    if !path.exists() {
        write_atomic(&path, bytes)?;
    }
    Ok(digest)
}

/// Copies the file at `from` into the layout as blob `digest`, checking the
/// bytes on the way (unless the blob is already there).
fn copy_blob(from: &Path, dir: &Path, digest: &Digest) -> Result<(), CacheError> {
    let target = blob_path(dir, digest);
    if target.exists() {
        return Ok(());
    }
    let mut src = File::open(from).map_err(CacheError::io(from))?;
    let mut tmp = temp_in(&target)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(CacheError::io(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(CacheError::io(&target))?;
    }
    let actual = Digest::from_sha256(hasher.finalize().into());
    if &actual != digest {
        return Err(CacheError::Layout {
            path: from.to_path_buf(),
            reason: format!("layer file has digest {actual}, expected {digest}"),
        });
    }
    persist(tmp, &target)
}

/// Reads a file and checks it against `digest`.
pub(crate) fn read_verified(path: &Path, digest: &Digest) -> Result<Vec<u8>, CacheError> {
    let bytes = fs::read(path).map_err(CacheError::io(path))?;
    let actual = Digest::sha256_of(&bytes);
    if &actual != digest {
        return Err(CacheError::Layout {
            path: path.to_path_buf(),
            reason: format!("has digest {actual}, expected {digest}"),
        });
    }
    Ok(bytes)
}

/// `index.json`, or `None` when the layout has none yet.
pub(crate) fn read_index(dir: &Path) -> Result<Option<Index>, CacheError> {
    let path = dir.join("index.json");
    match fs::read(&path) {
        Ok(bytes) => Index::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CacheError::Layout {
                path,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CacheError::io(path)(e)),
    }
}

/// Read-modify-write of `index.json` under an exclusive lock.
pub(crate) fn update_index(
    dir: &Path,
    change: impl FnOnce(&mut Index) -> Result<(), CacheError>,
) -> Result<(), CacheError> {
    let _lock = FileLock::exclusive(&dir.join("index.json.lock"))?;
    let mut index = read_index(dir)?.unwrap_or_else(|| Index::new(true, Vec::new()));
    change(&mut index)?;
    write_atomic(&dir.join("index.json"), &index.to_vec())
}

/// An exclusive `flock`, released when dropped (the file closes).
pub(crate) struct FileLock(File);

impl FileLock {
    /// Blocks until the lock on `path` (created when missing) is ours.
    pub(crate) fn exclusive(path: &Path) -> Result<FileLock, CacheError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(CacheError::io(path))?;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock(file));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(CacheError::io(path)(err));
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock; being explicit documents intent.
        // SAFETY: as in `exclusive`.
        let _ = unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
