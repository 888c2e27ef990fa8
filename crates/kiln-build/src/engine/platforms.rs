//! A build for several platforms (`--custom-platform linux/amd64,linux/arm64`):
//! one build per platform, each with its own base resolved from the base's
//! index and its own `TARGET*` arguments, pushed to every destination by
//! digest (no tag); then the index of those images, joined as `kiln index
//! create` joins them, under every destination's tag.
//!
//! Each platform's cache keys start from its own base digest (or from
//! `scratch` and the platform), so the platforms never share an entry they
//! should not; a step that is the same on every platform (in a `FROM
//! --platform=$BUILDPLATFORM` stage that does not read `TARGET*`) has one
//! key, so it runs for the first platform and is found in the cache by the
//! next. Without `--cache`, the platforms share a private cache in an OCI
//! layout that is removed at the end, so such a step still runs once.

use std::sync::Arc;
use std::time::Instant;

use kiln_oci::{Access, RegistryClient};

use super::{build_one, registry_options, BuildError, BuildOutcome};
use crate::index::{self, IndexError, IndexSource};
use crate::options::{BuildOptions, CacheRepo};
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
        let built = build_one(&one, progress.clone()).await?;
        steps += built.steps;
        cached += built.cached;
        size += built.size;
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
