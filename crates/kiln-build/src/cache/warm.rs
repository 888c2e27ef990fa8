//! The base-image warmer (`kiln warm`, Kaniko's warmer) and reading what it
//! left, so a build can start from a warmed base without the registry.
//!
//! # Cache directory layout
//! * `kiln-images/<manifest hex>/`: one OCI image layout per image
//!   (written and read through [`crate::layout`])
//!   (`oci-layout`, `index.json` naming the manifest with
//!   `org.opencontainers.image.ref.name` = the reference, `blobs/sha256/`).
//!   Content-addressed, so two references to one image share it.
//! * `kiln-refs/<sha256 of "reference platform">.json`: which manifest a
//!   reference resolved to for a platform, and when
//!   (`{"reference", "platform", "manifest", "created"}`); the TTL runs from
//!   `created`.
//!
//! Warmers and builds may share the directory: an image is assembled in a
//! temp directory and renamed into place (a lost race just discards the
//! copy), and index files are replaced by rename.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_dockerfile::plan::{Base, StageSelection};
use kiln_dockerfile::FrontendError;
use kiln_oci::{
    Access, Descriptor, Digest, ImageConfig, Index, Manifest, Platform, Reference, RegistryClient,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::entry::{is_expired, now_rfc3339};
use super::CacheError;
use crate::layout::{refs, write_atomic, Layout};

const IMAGES: &str = "kiln-images";
const REFS: &str = "kiln-refs";

/// A base image found in a cache directory.
#[derive(Debug, Clone)]
pub struct CachedBase {
    /// Digest of the platform manifest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
    /// The config's exact bytes.
    pub config_bytes: Vec<u8>,
    /// The OCI layout holding the image's blobs.
    pub layout_dir: PathBuf,
}

impl CachedBase {
    /// Where a blob of the image (a layer) is.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        Layout::open(&self.layout_dir).blob_path(digest)
    }
}

/// What warming did for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warmed {
    /// The image as asked for.
    pub reference: Reference,
    /// The platform manifest it resolved to.
    pub manifest_digest: Digest,
    /// True when a fresh copy was already there and nothing was pulled.
    pub was_fresh: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefRecord {
    reference: String,
    platform: String,
    manifest: Digest,
    created: String,
}

fn ref_file(cache_dir: &Path, reference: &Reference, platform: &Platform) -> PathBuf {
    let id = Digest::sha256_of(format!("{reference} {platform}").as_bytes());
    cache_dir.join(REFS).join(format!("{}.json", id.hex()))
}

fn image_dir(cache_dir: &Path, digest: &Digest) -> PathBuf {
    cache_dir.join(IMAGES).join(digest.hex())
}

/// Why a Dockerfile's images could not be listed: its problems, each with
/// its line, as the parser reports them.
#[derive(Debug, thiserror::Error)]
#[error("{}", lines(.problems))]
pub struct DockerfileImagesError {
    /// Every problem found, in file order.
    pub problems: Vec<FrontendError>,
}

fn lines(problems: &[FrontendError]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// The images a Dockerfile starts from or copies from, after meta-arg
/// expansion with `build_args`, in file order without duplicates.
///
/// # Errors
/// The Dockerfile's problems.
pub fn dockerfile_images(
    text: &str,
    build_args: &BTreeMap<String, String>,
) -> Result<Vec<String>, DockerfileImagesError> {
    let options = kiln_dockerfile::LoadOptions {
        build_args: build_args.clone(),
        selection: StageSelection::All,
        ..Default::default()
    };
    let df = kiln_dockerfile::load_with(text, &options)
        .map_err(|problems| DockerfileImagesError { problems })?;
    let mut images = Vec::new();
    for stage in &df.stages {
        if let Base::Image(name) = &stage.base {
            images.push(name.clone());
        }
        if let Some(deps) = df.plan.deps.get(stage.index) {
            images.extend(deps.images.iter().cloned());
        }
    }
    let mut seen = std::collections::HashSet::new();
    images.retain(|i| seen.insert(i.clone()));
    Ok(images)
}

/// Pulls each of `images` for `platform` into `cache_dir`, skipping images
/// with a copy younger than `ttl` unless `force`.
///
/// # Errors
/// The first image that cannot be pulled or written.
pub async fn warm(
    client: &RegistryClient,
    images: &[Reference],
    cache_dir: &Path,
    platform: &Platform,
    ttl: Duration,
    force: bool,
) -> Result<Vec<Warmed>, CacheError> {
    let mut out = Vec::new();
    for reference in images {
        if !force {
            if let Some(base) = cached_base(cache_dir, reference, platform, ttl).await {
                tracing::info!("{reference} is already cached ({})", base.manifest_digest);
                out.push(Warmed {
                    reference: reference.clone(),
                    manifest_digest: base.manifest_digest,
                    was_fresh: true,
                });
                continue;
            }
        }
        let digest = warm_one(client, reference, cache_dir, platform).await?;
        tracing::info!("cached {reference} ({digest})");
        out.push(Warmed {
            reference: reference.clone(),
            manifest_digest: digest,
            was_fresh: false,
        });
    }
    Ok(out)
}

async fn warm_one(
    client: &RegistryClient,
    reference: &Reference,
    cache_dir: &Path,
    platform: &Platform,
) -> Result<Digest, CacheError> {
    let name = reference.to_string();
    let pulled = client
        .pull_image(reference, platform)
        .await
        .map_err(CacheError::registry(&name))?;
    let target = image_dir(cache_dir, &pulled.digest);
    let parent = cache_dir.join(IMAGES);
    if !target.join("index.json").exists() {
        fs::create_dir_all(&parent).map_err(CacheError::io(&parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&parent)
            .map_err(CacheError::io(&parent))?;
        let layout = Layout::create(tmp.path())?;
        let repo = client.repository(reference, Access::Pull);
        for layer in &pulled.manifest.layers {
            if !layout.has_blob(&layer.digest) {
                // The download checks the digest as it streams.
                let incoming = layout.incoming_blob(&layer.digest)?;
                repo.download_blob(&layer.digest, Some(layer.size), incoming.path())
                    .await
                    .map_err(CacheError::registry(&name))?;
                incoming.keep()?;
            }
        }
        layout.put_blob(&pulled.manifest.config.digest, &pulled.config_bytes)?;
        layout.put_blob(&pulled.digest, &pulled.manifest_bytes)?;
        let mut desc = Descriptor::new(
            pulled.media_type.clone(),
            pulled.digest.clone(),
            pulled.manifest_bytes.len() as u64,
        );
        desc.platform = Some(pulled.config.platform());
        let mut index = Index::new(true, Vec::new());
        refs::put(&mut index, desc, Some(&name));
        layout.write_index(&index)?;
        let staged = tmp.keep();
        if let Err(e) = fs::rename(&staged, &target) {
            // Another warmer or build got there first: theirs is the same content.
            let _ = fs::remove_dir_all(&staged);
            if !target.join("index.json").exists() {
                return Err(CacheError::io(&target)(e));
            }
        }
    }
    let record = RefRecord {
        reference: name,
        platform: platform.to_string(),
        manifest: pulled.digest.clone(),
        created: now_rfc3339(),
    };
    let path = ref_file(cache_dir, reference, platform);
    let refs = cache_dir.join(REFS);
    fs::create_dir_all(&refs).map_err(CacheError::io(&refs))?;
    let json = serde_json::to_vec(&record).map_err(|e| CacheError::Layout {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&path, &json)?;
    Ok(pulled.digest)
}

/// The warmed copy of `reference` for `platform` in `cache_dir`, when there
/// is a complete one younger than `ttl` (a reference pinned by digest never
/// expires: its content cannot change). Anything missing or damaged is
/// `None`, with a warning for damage.
pub async fn cached_base(
    cache_dir: &Path,
    reference: &Reference,
    platform: &Platform,
    ttl: Duration,
) -> Option<CachedBase> {
    let cache_dir = cache_dir.to_path_buf();
    let reference = reference.clone();
    let platform = platform.clone();
    let found = tokio::task::spawn_blocking(move || {
        read_cached_base(&cache_dir, &reference, &platform, ttl)
    })
    .await
    .ok()?;
    match found {
        Ok(base) => base,
        Err(e) => {
            tracing::warn!("ignoring a damaged cached base image: {e}");
            None
        }
    }
}

fn read_cached_base(
    cache_dir: &Path,
    reference: &Reference,
    platform: &Platform,
    ttl: Duration,
) -> Result<Option<CachedBase>, CacheError> {
    let path = ref_file(cache_dir, reference, platform);
    let record: RefRecord = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CacheError::Layout {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        Err(_) => return Ok(None),
    };
    if reference.digest().is_none() && is_expired(&record.created, ttl, OffsetDateTime::now_utc()) {
        return Ok(None);
    }
    let layout_dir = image_dir(cache_dir, &record.manifest);
    let layout = Layout::open(&layout_dir);
    if layout.read_index()?.is_none() {
        return Ok(None);
    }
    let manifest_bytes = layout.read_blob(&record.manifest)?;
    let manifest = Manifest::from_slice(&manifest_bytes).map_err(|e| CacheError::Layout {
        path: layout_dir.clone(),
        reason: e.to_string(),
    })?;
    let config_bytes = layout.read_blob(&manifest.config.digest)?;
    let config = ImageConfig::from_slice(&config_bytes).map_err(|e| CacheError::Layout {
        path: layout_dir.clone(),
        reason: e.to_string(),
    })?;
    for layer in &manifest.layers {
        let p = layout.blob_path(&layer.digest);
        let len = fs::metadata(&p).map_err(CacheError::io(&p))?.len();
        if len != layer.size {
            return Err(CacheError::Layout {
                path: p,
                reason: format!("{len} bytes, expected {}", layer.size),
            });
        }
    }
    Ok(Some(CachedBase {
        manifest_digest: record.manifest,
        manifest,
        config,
        config_bytes,
        layout_dir,
    }))
}
