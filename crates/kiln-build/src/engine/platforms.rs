//! A build for several platforms (`--custom-platform linux/amd64,linux/arm64`):
//! one build per platform, each with its own base resolved from the base's
//! index and its own `TARGET*` arguments, pushed to every destination by
//! digest (no tag); then the index of those images, joined as `kiln index
//! create` joins them, under every destination's tag. With
//! `--oci-layout-path` each platform writes its own layout, and their
//! blobs and an index of their manifests make the one asked for.
//!
//! Each platform's cache keys start from its own base digest (or from
//! `scratch` and the platform), so the platforms never share an entry they
//! should not; a step that is the same on every platform (in a `FROM
//! --platform=$BUILDPLATFORM` stage that does not read `TARGET*`) has one
//! key, so it runs for the first platform and is found in the cache by the
//! next. Without `--cache`, the platforms share a private cache in an OCI
//! layout that is removed at the end, so such a step still runs once.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_oci::{media, Access, Descriptor, ImageConfig, Index, Manifest, RegistryClient};

use super::{build_one, registry_options, BuildError, BuildOutcome};
use crate::index::{self, IndexError, IndexSource};
use crate::options::{BuildOptions, CacheRepo};
use crate::output::oci_layout::REF_NAME;
use crate::output::{digest_files, push::PushReport};
use crate::progress::ProgressSink;

/// Builds every platform of `options.platforms` and pushes their index.
pub(super) async fn build(
    options: &BuildOptions,
    progress: Arc<dyn ProgressSink>,
) -> Result<BuildOutcome, BuildError> {
    let started = Instant::now();
    let out = &options.output;
    let first = out
        .destinations
        .first()
        .ok_or_else(|| BuildError::Context("several platforms need a --destination".into()))?;
    let mut sources = Vec::new();
    let (mut steps, mut cached, mut size) = (0, 0, 0);
    let shared = match options.cache.enabled {
        true => None,
        false => Some(tempfile::tempdir().map_err(|e| {
            BuildError::Context(format!("creating the platforms' shared cache: {e}"))
        })?),
    };
    let layouts =
        match &out.oci_layout_path {
            Some(_) => Some(tempfile::tempdir().map_err(|e| {
                BuildError::Context(format!("creating the platforms' layouts: {e}"))
            })?),
            None => None,
        };
    let mut parts = Vec::new();
    for platform in &options.platforms {
        tracing::info!("building for {platform}");
        let mut one = options.clone();
        if let Some(dir) = &shared {
            one.cache.enabled = true;
            one.cache.repo = Some(CacheRepo::OciLayout(dir.path().to_path_buf()));
            one.cache.push = true;
            one.cache.run_layers = true;
            one.cache.copy_layers = true;
        }
        one.platform = platform.clone();
        one.platforms.clear();
        one.output.by_digest = true;
        one.output.digest_file = None;
        one.output.image_name_with_digest_file = None;
        one.output.image_name_tag_with_digest_file = None;
        // Each platform writes its own layout; they are joined below.
        let part = match (&layouts, &out.oci_layout_path) {
            (Some(dir), Some(_)) => {
                let part = dir.path().join(parts.len().to_string());
                one.output.oci_layout_path = Some(part.clone());
                Some(part)
            }
            _ => None,
        };
        let built = build_one(&one, progress.clone()).await?;
        steps += built.steps;
        cached += built.cached;
        size += built.size;
        parts.extend(part);
        let reference = first.reference.with_digest(built.digest.clone());
        sources.push(IndexSource {
            as_given: format!("{}@{} ({platform})", first.reference.name(), built.digest),
            reference,
        });
    }

    let client = RegistryClient::new(registry_options(options))
        .map_err(|e| BuildError::Registry(Box::new(e)))?;
    let failed = |e: IndexError| BuildError::Context(format!("making the image index: {e}"));
    // The images were just pushed: they are read back as a pusher reads.
    let joined = index::join_with(&client, &sources, out.image_format, Access::Push)
        .await
        .map_err(failed)?;
    let scratch = tempfile::tempdir()
        .map_err(|e| BuildError::Context(format!("creating a scratch directory: {e}")))?;
    let mut pushed = Vec::new();
    let mut push_reports = Vec::new();
    for dest in &out.destinations {
        let report = index::push(
            &client,
            &joined,
            &dest.reference,
            &dest.as_given,
            scratch.path(),
        )
        .await
        .map_err(failed)?;
        tracing::info!(
            "pushed {} as {} ({} platforms)",
            dest.as_given,
            joined.digest,
            joined.entries.len()
        );
        pushed.push(dest.as_given.clone());
        push_reports.push(PushReport {
            existing: report.existing,
            mounted: report.mounted,
            uploaded: report.copied,
            uploaded_bytes: 0,
        });
    }
    if let Some(path) = &out.oci_layout_path {
        let name = first.reference.tag().unwrap_or("latest");
        join_layouts(path, &parts, name)?;
    }
    if let Some(path) = &out.digest_file {
        digest_files::write_digest(path, &joined.digest)?;
    }
    if let Some(path) = &out.image_name_with_digest_file {
        digest_files::write_name_with_digest(path, &out.destinations, &joined.digest)?;
    }
    if let Some(path) = &out.image_name_tag_with_digest_file {
        digest_files::write_name_tag_with_digest(path, &out.destinations, &joined.digest)?;
    }
    Ok(BuildOutcome {
        digest: joined.digest,
        size,
        pushed,
        push_reports,
        steps,
        cached,
        elapsed: started.elapsed(),
    })
}

/// Joins the one-image layouts each platform wrote into the layout at
/// `dir`: their blobs, and an OCI index of their manifests (each with its
/// config's platform) named `ref_name`. As for one image, the layout's
/// manifests are OCI ones (see `output::oci_layout`).
fn join_layouts(dir: &Path, parts: &[PathBuf], ref_name: &str) -> Result<(), BuildError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| BuildError::Context(format!("{}: {e}", path.display()))
    };
    let bad = |path: &Path, e: kiln_oci::ManifestError| {
        BuildError::Context(format!("{}: {e}", path.display()))
    };
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(io(&blob_dir))?;
    let layout = dir.join("oci-layout");
    fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io(&layout))?;
    let mut entries = Vec::new();
    for part in parts {
        let part_blobs = part.join("blobs").join("sha256");
        for blob in fs::read_dir(&part_blobs).map_err(io(&part_blobs))? {
            let src = blob.map_err(io(&part_blobs))?.path();
            let dest = blob_dir.join(src.file_name().unwrap_or_default());
            if !dest.exists() && fs::hard_link(&src, &dest).is_err() {
                fs::copy(&src, &dest).map_err(io(&dest))?;
            }
        }
        let index_path = part.join("index.json");
        let bytes = fs::read(&index_path).map_err(io(&index_path))?;
        let index = Index::from_slice(&bytes).map_err(|e| bad(&index_path, e))?;
        let mut entry =
            index.manifests.into_iter().next().ok_or_else(|| {
                BuildError::Context(format!("{}: no image", index_path.display()))
            })?;
        let manifest_path = blob_dir.join(entry.digest.hex());
        let manifest = fs::read(&manifest_path).map_err(io(&manifest_path))?;
        let manifest = Manifest::from_slice(&manifest).map_err(|e| bad(&manifest_path, e))?;
        let config_path = blob_dir.join(manifest.config.digest.hex());
        let config = fs::read(&config_path).map_err(io(&config_path))?;
        let config = ImageConfig::from_slice(&config).map_err(|e| bad(&config_path, e))?;
        entry.annotations.clear();
        entry.platform = Some(config.platform());
        entries.push(entry);
    }
    let joined = Index::new(true, entries).to_vec();
    let digest = kiln_oci::Digest::sha256_of(&joined);
    let index_blob = blob_dir.join(digest.hex());
    fs::write(&index_blob, &joined).map_err(io(&index_blob))?;
    let index_path = dir.join("index.json");
    let mut top = match fs::read(&index_path) {
        Ok(bytes) => Index::from_slice(&bytes).unwrap_or_else(|_| Index::new(true, Vec::new())),
        Err(_) => Index::new(true, Vec::new()),
    };
    top.manifests
        .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(ref_name));
    let mut desc = Descriptor::new(media::OCI_INDEX, digest, joined.len() as u64);
    desc.annotations
        .insert(REF_NAME.to_string(), ref_name.to_string());
    top.manifests.push(desc);
    top.media_type = Some(media::OCI_INDEX.to_string());
    fs::write(&index_path, top.to_vec()).map_err(io(&index_path))
}
