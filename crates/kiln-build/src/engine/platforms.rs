//! A build for several platforms (`--custom-platform linux/amd64,linux/arm64`):
//! one build per platform, each with its own base resolved from the base's
//! index and its own `TARGET*` arguments, pushed to every destination by
//! digest (no tag); then the index of those images, joined as `kiln index
//! create` joins them, under every destination's tag. With
//! `--oci-layout-path` or `--tar-path` each platform writes its own
//! layout, and their blobs and an index of their manifests make the ones
//! asked for.
//!
//! With `--provenance` or `--sbom`, each platform's statements describe its
//! own image: each platform pushes its own index (its image and its
//! attestation manifest) by digest, and the joined index lists every image
//! and then every attestation manifest, each still annotated with the image
//! it is about, as BuildKit's multi-platform index is. `--provenance-file`
//! and `--sbom-file` get one file per platform.
//!
//! Each platform's cache keys start from its own base digest (or from
//! `scratch` and the platform), so the platforms never share an entry they
//! should not; a step that is the same on every platform (in a `FROM
//! --platform=$BUILDPLATFORM` stage that does not read `TARGET*`) has one
//! key, so it runs for the first platform and is found in the cache by the
//! next. Without `--cache`, the platforms share a private cache in an OCI
//! layout that is removed at the end, so such a step still runs once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_oci::{media, Access, Descriptor, ImageConfig, Index, Manifest, RegistryClient};

use super::{build_one, registry_options, BuildError, BuildOutcome, BuildSetup};
use crate::index::{self, IndexSource};
use crate::layout::{refs, tar::write_tar_file, Layout, LayoutError};
use crate::options::{BuildOptions, CacheRepo};
use crate::output::attest::{ATTESTATION_MANIFEST, REFERENCE_TYPE};
use crate::output::{digest_files, push::PushReport};
use crate::progress::ProgressSink;

/// Builds every platform of `options.platforms` and pushes their index.
pub(super) async fn build(
    options: &BuildOptions,
    progress: Arc<dyn ProgressSink>,
    setup: &BuildSetup,
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
        false => Some(tempfile::tempdir().map_err(|source| BuildError::Scratch {
            what: "the platforms' shared cache",
            source,
        })?),
    };
    let layouts = match out.oci_layout_path.is_some() || out.tar_path.is_some() {
        true => Some(tempfile::tempdir().map_err(|source| BuildError::Scratch {
            what: "the platforms' layouts",
            source,
        })?),
        false => None,
    };
    let mut parts = Vec::new();
    // Each platform loads the Dockerfile with its own TARGET* args.
    let setup = &BuildSetup {
        dockerfile: None,
        ..setup.clone()
    };
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
        let attest = &mut one.output.attest;
        for file in [&mut attest.provenance_file, &mut attest.sbom_file] {
            *file = file.as_deref().map(|f| per_platform_file(f, platform));
        }
        // Each platform writes its own layout; they are joined below.
        one.output.tar_path = None;
        let part = layouts.as_ref().map(|dir| {
            let part = dir.path().join(parts.len().to_string());
            one.output.oci_layout_path = Some(part.clone());
            part
        });
        let built = build_one(&one, progress.clone(), setup, sources.is_empty()).await?;
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
    let failed = BuildError::Index;
    // The images were just pushed: they are read back as a pusher reads.
    let joined = index::join_with(&client, &sources, out.image_format, Access::Push)
        .await
        .map_err(failed)?;
    let scratch = tempfile::tempdir().map_err(|source| BuildError::Scratch {
        what: "a scratch directory",
        source,
    })?;
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
        write_layout(path, &parts, first.reference.tag().unwrap_or("latest"))?;
    }
    if let Some(path) = &out.tar_path {
        let tags: Vec<String> = out
            .destinations
            .iter()
            .map(|d| match d.reference.tag() {
                Some(_) => d.reference.familiar(),
                None => format!("{}:latest", d.reference.familiar()),
            })
            .collect();
        write_tar(path, &parts, &tags)?;
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

/// Where one platform's `--provenance-file` or `--sbom-file` goes: the
/// platform, as BuildKit names a platform's directory (`linux_arm64_v8`),
/// before the extension: `sbom.json` becomes `sbom.linux_arm64.json`.
fn per_platform_file(path: &Path, platform: &kiln_oci::Platform) -> PathBuf {
    let name = platform.to_string().replace('/', "_");
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let file = match path.extension() {
        Some(ext) => format!("{stem}.{name}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{name}"),
    };
    path.with_file_name(file)
}

/// Joins the one-image layouts each platform wrote into the layout at
/// `dir`: their blobs, and an OCI index of their manifests (each with its
/// config's platform), whose descriptor is returned with the entries. As
/// for one image, the layout's manifests are OCI ones (see
/// `output::oci_layout`). `index.json` is the caller's.
fn join_layouts(dir: &Path, parts: &[PathBuf]) -> Result<(Descriptor, Vec<Joined>), BuildError> {
    let layout = Layout::create(dir).map_err(layout_err)?;
    let mut joined = Vec::new();
    let mut statements = Vec::new();
    for part in parts {
        let part = Layout::open(part);
        for blob in part.blob_files().map_err(layout_err)? {
            // The part was written by this build: every file is a blob.
            if let Some(digest) = blob.digest() {
                layout.link_blob(&digest, &blob.path).map_err(layout_err)?;
            }
        }
        let index_path = part.index_path();
        let top = part
            .read_index()
            .map_err(layout_err)?
            .and_then(|index| index.manifests.into_iter().next())
            .ok_or_else(|| BuildError::Context(format!("{}: no image", index_path.display())))?;
        // One image, or (with statements attached) the platform's own index
        // of its image and attestation manifest.
        let listed = match media::is_index(&top.media_type) {
            true => {
                let bytes = layout.read_blob(&top.digest).map_err(layout_err)?;
                let path = layout.blob_path(&top.digest);
                Index::from_slice(&bytes)
                    .map_err(|e| bad(&path, e))?
                    .manifests
            }
            false => vec![top],
        };
        for mut entry in listed {
            if entry.annotations.get(REFERENCE_TYPE).map(String::as_str)
                == Some(ATTESTATION_MANIFEST)
            {
                statements.push(entry);
                continue;
            }
            let manifest = layout.read_blob(&entry.digest).map_err(layout_err)?;
            let manifest = Manifest::from_slice(&manifest)
                .map_err(|e| bad(&layout.blob_path(&entry.digest), e))?;
            let config = layout
                .read_blob(&manifest.config.digest)
                .map_err(layout_err)?;
            let config = ImageConfig::from_slice(&config)
                .map_err(|e| bad(&layout.blob_path(&manifest.config.digest), e))?;
            entry.annotations.clear();
            entry.platform = Some(config.platform());
            joined.push(Joined { entry, manifest });
        }
    }
    // As BuildKit orders them: every image, then every attestation manifest
    // (each keeping the annotations that name its image).
    let entries = joined.iter().map(|j| j.entry.clone()).chain(statements);
    let index = Index::new(true, entries.collect()).to_vec();
    let digest = layout.write_blob(&index).map_err(layout_err)?;
    Ok((
        Descriptor::new(media::OCI_INDEX, digest, index.len() as u64),
        joined,
    ))
}

/// One platform's image in a joined layout.
struct Joined {
    entry: Descriptor,
    manifest: Manifest,
}

/// A layout problem in this build's words: files are `LayoutIo`, documents
/// `LayoutDocument`, and a blob that is not its digest a file that reads
/// wrong.
fn layout_err(e: LayoutError) -> BuildError {
    match e {
        LayoutError::Io { path, source } => BuildError::LayoutIo { path, source },
        LayoutError::Document { path, source } => bad(&path, source),
        LayoutError::Digest {
            path,
            actual,
            expected,
        } => BuildError::LayoutIo {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("has digest {actual}, expected {expected}"),
            ),
        },
    }
}

fn bad(path: &Path, e: kiln_oci::ManifestError) -> BuildError {
    BuildError::LayoutDocument {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// `--oci-layout-path`: the joined layout's index named `ref_name` in the
/// layout at `dir` (added to what it holds, as for one image).
fn write_layout(dir: &Path, parts: &[PathBuf], ref_name: &str) -> Result<(), BuildError> {
    let (desc, _) = join_layouts(dir, parts)?;
    let layout = Layout::open(dir);
    let mut top = layout.index_or_empty();
    refs::put(&mut top, desc, Some(ref_name));
    top.media_type = Some(media::OCI_INDEX.to_string());
    layout.write_index(&top).map_err(layout_err)
}

/// `--tar-path`: the joined layout as an OCI layout archive whose
/// `index.json` names the index (what `docker load` with the containerd
/// image store reads), plus a `manifest.json` for the classic `docker load`,
/// which takes one image per tag: this machine's platform's, else the first.
fn write_tar(path: &Path, parts: &[PathBuf], repo_tags: &[String]) -> Result<(), BuildError> {
    let dir = tempfile::tempdir().map_err(|source| BuildError::LayoutIo {
        path: path.to_path_buf(),
        source,
    })?;
    let (mut desc, joined) = join_layouts(dir.path(), parts)?;
    let tag = repo_tags.first().map(String::as_str);
    if let Some(tag) = tag {
        desc.annotations
            .insert("io.containerd.image.name".to_string(), tag.to_string());
    }
    let mut index = Index::new(true, Vec::new());
    refs::put(&mut index, desc, tag);
    index.media_type = Some(media::OCI_INDEX.to_string());
    let host = kiln_oci::Platform::host();
    let loaded = joined
        .iter()
        .find(|j| j.entry.platform.as_ref().is_some_and(|p| p.matches(&host)))
        .or(joined.first())
        .ok_or_else(|| BuildError::Context("no platform was built".into()))?;
    let blob = |d: &Descriptor| crate::layout::blob_name(&d.digest);
    let docker_manifest = serde_json::json!([{
        "Config": blob(&loaded.manifest.config),
        "RepoTags": repo_tags,
        "Layers": loaded.manifest.layers.iter().map(blob).collect::<Vec<_>>(),
    }]);
    let layout = Layout::open(dir.path());
    let mut blobs: Vec<_> = layout
        .blob_files()
        .map_err(layout_err)?
        .into_iter()
        .filter_map(|f| Some((f.digest()?, f.path)))
        .collect();
    blobs.sort();
    // In the order of the names, as a sorted walk of the layout gives them.
    write_tar_file(path, |tar| {
        for (digest, file) in &blobs {
            tar.append_blob_file(digest, file)?;
        }
        tar.append_index(&index)?;
        tar.append_file("manifest.json", &serde_json::to_vec(&docker_manifest)?)?;
        tar.append_marker()
    })
    .map_err(layout_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_platform_writes_its_own_statement_file() {
        let arm: kiln_oci::Platform = "linux/arm64/v8".parse().unwrap();
        let amd: kiln_oci::Platform = "linux/amd64".parse().unwrap();
        assert_eq!(
            per_platform_file(Path::new("out/sbom.json"), &arm),
            Path::new("out/sbom.linux_arm64_v8.json")
        );
        assert_eq!(
            per_platform_file(Path::new("prov"), &amd),
            Path::new("prov.linux_amd64")
        );
    }
}
