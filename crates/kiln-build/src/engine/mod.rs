//! The build engine: runs a Dockerfile's stages in plan order and sends the
//! target's image to every output.
//!
//! One build, as data flowing through: options → context and Dockerfile →
//! checked stages (kiln-dockerfile) → for each stage: base image (pulled
//! lazily: manifest and config only) → steps (metadata steps change the
//! config; COPY/ADD write a layer) → image assembly → outputs.

mod attestations;
mod base;
mod cache_seed;
mod copy_step;
pub mod error;
mod growing;
mod image_text;
mod leftovers;
pub mod listing;
pub mod metadata;
mod outputs;
mod pending;
mod platforms;
mod prefetch;
mod record;
mod root_tap;
pub mod rootfs;
mod run_step;
mod signal;
mod stacked;
mod stage;
mod through_links;
pub mod workspace;

pub use error::BuildError;
pub use outputs::UNNAMED_TAR_TAG;

use crate::context::{BuildContext, ContextSpec};
// The engine's modules name the image and blob store as `super::image`,
// `super::blobs`: they live in `crate::model`, below the cache and outputs.
use crate::model::{assemble, blobs, image};
use crate::options::{BuildOptions, ContextSource, DockerfileLocation};
use crate::output::{self, push::PushReport};
use crate::progress::{NoProgress, ProgressEvent, ProgressSink};
use assemble::BuiltImage;
use blobs::BlobStore;
use kiln_dockerfile::plan::{Base, StageSelection};
use kiln_dockerfile::scope::PlatformArgs;
use kiln_dockerfile::LoadOptions;
use kiln_oci::{Digest, Platform, RegistryClient};
use stage::{StageResult, StageRunner};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use workspace::{Workspace, Workspaces};

/// What a finished build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The image digest (the manifest's sha256).
    pub digest: Digest,
    /// The image's size: config plus compressed layers.
    pub size: u64,
    /// Destinations pushed to, as given.
    pub pushed: Vec<String>,
    /// What each push did.
    pub push_reports: Vec<PushReport>,
    /// Steps run.
    pub steps: usize,
    /// Steps whose result came from the cache.
    pub cached: usize,
    /// Wall time of the whole build.
    pub elapsed: std::time::Duration,
}

/// Runs one build.
///
/// # Errors
/// The first failure: a Dockerfile problem (every problem, with lines), a
/// step that failed (with its line), a registry error, or an output error.
pub async fn build(options: &BuildOptions) -> Result<BuildOutcome, BuildError> {
    build_with(options, Arc::new(NoProgress)).await
}

/// Runs one build, telling `progress` what happens as it happens: stages,
/// steps (started, cached, done), RUN output, pushes, and the end.
///
/// # Errors
/// As [`build`].
pub async fn build_with(
    options: &BuildOptions,
    progress: Arc<dyn ProgressSink>,
) -> Result<BuildOutcome, BuildError> {
    build_in(options, progress, &BuildSetup::default()).await
}

/// What a caller hands a build besides its options and progress sink.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildSetup {
    /// Where the build registers its private directories, so that the
    /// caller can remove them when the process is interrupted.
    pub workspaces: Workspaces,
    /// The Dockerfile, already loaded by the caller as [`load_dockerfile`]
    /// loads it for these options: the build does not read or parse it
    /// again. Used by a build for one platform only.
    pub dockerfile: Option<kiln_dockerfile::Dockerfile>,
}

impl BuildSetup {
    /// Builds `dockerfile`, loaded by the caller with the build's options.
    pub fn with_dockerfile(mut self, dockerfile: kiln_dockerfile::Dockerfile) -> Self {
        self.dockerfile = Some(dockerfile);
        self
    }

    /// Registers the build's private directories in `workspaces`.
    pub fn with_workspaces(mut self, workspaces: Workspaces) -> Self {
        self.workspaces = workspaces;
        self
    }
}

/// Runs one build as [`build_with`] does, with what the caller set up.
///
/// # Errors
/// As [`build`].
pub async fn build_in(
    options: &BuildOptions,
    progress: Arc<dyn ProgressSink>,
    setup: &BuildSetup,
) -> Result<BuildOutcome, BuildError> {
    if options.platforms.len() > 1 {
        return platforms::build(options, progress, setup).await;
    }
    build_one(options, progress, setup, true).await
}

/// One platform's build, from the context to every output; `first` warns
/// about what is the same for every platform (unused build args).
async fn build_one(
    options: &BuildOptions,
    progress: Arc<dyn ProgressSink>,
    setup: &BuildSetup,
    first: bool,
) -> Result<BuildOutcome, BuildError> {
    let started = Instant::now();
    let started_on = time::OffsetDateTime::now_utc();
    let mut ws = Workspace::create(&options.work_dir, &setup.workspaces).map_err(|source| {
        BuildError::Workspace {
            path: options.work_dir.clone(),
            source,
        }
    })?;
    if std::env::var_os("KILN_KEEP_WORKDIR").is_some() {
        ws.keep();
    }
    let (context, dockerfile_name, dockerfile_text) = open_context(options, &ws).await?;
    let dockerfile = match &setup.dockerfile {
        Some(loaded) => loaded.clone(),
        None => load_dockerfile(options, &dockerfile_name, &dockerfile_text)?,
    };
    if first {
        for arg in dockerfile.unused_build_args() {
            tracing::warn!("build arg {arg} was not consumed by any stage");
        }
    }

    let client = RegistryClient::new(registry_options(options))
        .map_err(|e| BuildError::Registry(Box::new(e)))?;
    let blobs = BlobStore::new(ws.blobs(), client.clone()).with_progress(progress.clone());
    let first_destination = options.output.destinations.first().map(|d| &d.reference);
    let cache = crate::cache::open(&options.cache, first_destination, &client, ws.scratch())
        .map_err(BuildError::Cache)?;
    if let Some(cache) = &cache {
        tracing::info!("layer cache: {}", cache.describe());
    }
    let pusher = crate::cache::CachePusher::default();
    let early = output::early_push::EarlyPush::new(&options.output, &client, progress.clone());
    let record = record::BuildRecorder::default();
    let scans = options
        .output
        .attest
        .wants_sbom()
        .then(output::sbom_scan::LayerScans::default);
    let runner = StageRunner {
        options,
        dockerfile: &dockerfile,
        dockerfile_name: &dockerfile_name,
        context: &context,
        workspace: &ws,
        blobs: &blobs,
        http: crate::copy::UrlFetcher::new(client.options()).map_err(BuildError::Fetch)?,
        listings: listing::Listings::new(
            blobs.clone(),
            cache.clone(),
            options.cache.push,
            // Not scratch: listings stored in the background are read
            // from here while the outputs are written.
            ws.layers(),
        ),
        cache,
        pusher: &pusher,
        early: early.as_ref(),
        from_roots: Default::default(),
        progress: progress.clone(),
        record: &record,
        scans: scans.clone(),
        namespaces_refused: Default::default(),
        prefetches: Default::default(),
    };
    runner.start_prefetches();
    let mut results: HashMap<usize, StageResult> = HashMap::new();
    let mut steps = 0;
    let mut cached = 0;
    let mut released = std::collections::BTreeSet::new();
    let run_stages = async {
        // Stages of one level do not depend on each other: they run
        // concurrently (their heavy work is on blocking threads).
        // A finished stage's last RUN layer may still be being written
        // (`StageResult::pending`): the next level starts without waiting
        // for it when it only copies from or mounts that stage. Layers are
        // settled in level and stage order, so the failure reported is
        // the one that came first in that order, as when each stage
        // waited for its own.
        for level in &dockerfile.plan.levels {
            let stages = &dockerfile.stages;
            if level
                .iter()
                .any(|&i| matches!(stages[i].base, Base::Stage(_)))
            {
                settle_all(&runner, &mut results).await?;
            }
            let done =
                futures::future::join_all(level.iter().map(|&i| runner.run(i, &results))).await;
            settle_all(&runner, &mut results).await?;
            for (&index, result) in level.iter().zip(done) {
                let result = match result {
                    Ok(result) => result,
                    Err(e) => {
                        settle_all(&runner, &mut results).await?;
                        return Err(e);
                    }
                };
                steps += result.steps;
                cached += result.cached;
                results.insert(index, result);
            }
            // Roots of stages that no stage still to come reads from are
            // removed now, while the build goes on, not at its end.
            let finished: std::collections::BTreeSet<usize> = results.keys().copied().collect();
            for index in finished_roots(&dockerfile.plan, &finished, &mut released) {
                ws.remove_in_background(ws.stage_roots(index));
            }
        }
        settle_all(&runner, &mut results).await
    };
    let stages_result = run_stages.await;
    // The layers deferred stages wrote are not asked for any more: their
    // writers drop them unwritten.
    ws.close_gates();
    // A base still being unpacked for a stage that never ran (the build
    // failed first) writes into the workspace: done before it is removed.
    runner.prefetches.finish().await;
    // Cache stores read layer files from the workspace: they are waited for
    // (each failure is logged by the pusher) before anything can remove it,
    // also when the build failed. They finish while the outputs are written.
    let cache_stores = pusher.finish();
    let outputs = async {
        stages_result?;
        let target = results
            .remove(&dockerfile.plan.target)
            .expect("the plan always builds its target");
        let mut image = target.image;
        finish_config(&mut image, options);
        finish_manifest(&mut image, options)?;
        let built = BuiltImage::assemble(&image).map_err(BuildError::Config)?;
        // The root filesystems are not needed any more: remove them while the
        // outputs are written, rather than after, once the trees other
        // threads still remove (stage roots, RUN layer shadows) are gone:
        // two removals of one tree would race.
        let (bulk, busy) = (ws.bulk_dirs(), ws.busy_trees());
        let cleanup = tokio::task::spawn_blocking(move || {
            for done in busy {
                done.wait();
            }
            workspace::remove_bulk(bulk)
        });
        let statements = attestations::Inputs {
            options,
            dockerfile_name: &dockerfile_name,
            dockerfile_text: &dockerfile_text,
            record: &record,
            started_on,
        };
        let attached = match attestations::make(&statements, &built, &blobs, scans.as_ref()).await {
            Ok(attached) => attached,
            Err(e) => {
                let _ = cleanup.await;
                return Err(e);
            }
        };
        let finished = output::sink::Finished {
            image: &built,
            attached: attached.as_ref(),
            blobs: &blobs,
        };
        let outputs = outputs::write(&options.output, finished, &*progress, early.as_ref()).await;
        let _ = cleanup.await;
        let (pushed, push_reports) = outputs?;
        Ok::<_, BuildError>((built, attached, pushed, push_reports))
    };
    let (outputs, _warnings) = futures::join!(outputs, cache_stores);
    let (built, attached, pushed, push_reports) = outputs?;
    // With statements attached, the tag names the index: that is the digest
    // to pull, sign or pin.
    let digest = attached.map_or(built.digest.clone(), |a| a.digest().clone());
    let size = built.config.size + built.layers.iter().map(|l| l.descriptor.size).sum::<u64>();
    progress.event(&ProgressEvent::BuildDone {
        digest: digest.to_string(),
        size,
        steps,
        cached,
        duration: started.elapsed(),
    });
    Ok(BuildOutcome {
        digest,
        size,
        pushed,
        push_reports,
        steps,
        cached,
        elapsed: started.elapsed(),
    })
}

async fn open_context(
    options: &BuildOptions,
    ws: &Workspace,
) -> Result<(BuildContext, String, String), BuildError> {
    let ctx_err = BuildError::BuildContext;
    let (spec, sub_path) = match &options.context {
        ContextSource::Dir(dir) => (ContextSpec::Dir(dir.clone()), None),
        ContextSource::Tar { archive, sub_path } => {
            (ContextSpec::Tar(archive.clone()), sub_path.clone())
        }
        ContextSource::Remote {
            source,
            git,
            sub_path,
        } => {
            tracing::info!("fetching build context {source}");
            let env = kiln_source::Env::from_process();
            let fetched = kiln_source::fetch(source, git, &env, &ws.context())
                .await
                .map_err(BuildError::RemoteContext)?;
            tracing::info!("{}", fetched.summary);
            (ContextSpec::Dir(fetched.root), sub_path.clone())
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(BuildError::Context(format!(
                "unsupported context {other:?}"
            )))
        }
    };
    let sub = sub_path.as_ref().map(|p| p.to_string_lossy().to_string());
    let context = BuildContext::open(&spec, sub.as_deref(), &ws.context()).map_err(ctx_err)?;
    let dockerfile_path: PathBuf = match &options.dockerfile {
        DockerfileLocation::File(p) => p.clone(),
        DockerfileLocation::InContext(p) => context.root().join(p),
        #[allow(unreachable_patterns)]
        other => {
            return Err(BuildError::Context(format!(
                "unsupported Dockerfile location {other:?}"
            )))
        }
    };
    let text =
        std::fs::read_to_string(&dockerfile_path).map_err(|source| BuildError::ReadDockerfile {
            path: dockerfile_path.clone(),
            source,
        })?;
    let context = context
        .with_dockerignore(Some(&dockerfile_path))
        .map_err(ctx_err)?;
    Ok((context, display_name(&dockerfile_path), text))
}

/// The Dockerfile as error messages name it: relative to the current
/// directory when it is below it.
fn display_name(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Loads the Dockerfile `text` (named `name` in errors) for a build with
/// `options`: its build args, target and platform, and the stages it runs.
///
/// # Errors
/// [`BuildError::Dockerfile`] with every problem found.
pub fn load_dockerfile(
    options: &BuildOptions,
    name: &str,
    text: &str,
) -> Result<kiln_dockerfile::Dockerfile, BuildError> {
    let build_args: BTreeMap<String, String> = options
        .build_args
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let load = LoadOptions {
        build_args,
        target: options.target.clone(),
        platform: PlatformArgs::new(Platform::host().to_string(), options.platform.to_string()),
        // The target's own needs first; `select_stages` widens the plan when
        // unused stages are to be built too.
        selection: StageSelection::TargetDeps,
    };
    let errors = |errors| BuildError::Dockerfile {
        path: name.to_string(),
        errors,
    };
    let mut dockerfile = kiln_dockerfile::load_with(text, &load).map_err(errors)?;
    select_stages(
        &mut dockerfile,
        options.skip_unused_stages,
        &options.extra_targets,
    )
    .map_err(|e| errors(vec![e]))?;
    Ok(dockerfile)
}

/// The stages a build runs, on a Dockerfile loaded with
/// [`StageSelection::TargetDeps`]. With `skip_unused` (kiln's default, as
/// BuildKit) that is the target and what it reads. Without it, as Kaniko
/// without `--skip-unused-stages`: every stage from the first up to the
/// target, whether the target uses it or not. Kaniko stops at the target, so a
/// stage after it is built only when one of those reads from it. `also`
/// names further targets (the fork's `--target a,b`) built with the same
/// rule and not pushed.
///
/// # Errors
/// A stage in `also` that does not exist; a dependency cycle among the stages added.
pub fn select_stages(
    dockerfile: &mut kiln_dockerfile::Dockerfile,
    skip_unused: bool,
    also: &[String],
) -> Result<(), kiln_dockerfile::FrontendError> {
    use kiln_dockerfile::plan::{levels, needed, target};
    if skip_unused && also.is_empty() {
        return Ok(());
    }
    let mut tops = std::collections::BTreeSet::from([dockerfile.plan.target]);
    for name in also {
        tops.insert(target(&dockerfile.stages, Some(name))?);
    }
    let plan = &mut dockerfile.plan;
    let tops: Vec<usize> = if skip_unused {
        tops.into_iter().collect()
    } else {
        (0..=tops.last().copied().unwrap_or(plan.target)).collect()
    };
    let stages: std::collections::BTreeSet<usize> = tops
        .into_iter()
        .flat_map(|stage| needed(&plan.deps, stage, StageSelection::TargetDeps))
        .collect();
    plan.levels = levels(&dockerfile.stages, &plan.deps, &stages)?;
    plan.needed = stages;
    Ok(())
}

pub(crate) fn registry_options(options: &BuildOptions) -> kiln_oci::RegistryOptions {
    options.registry.clone()
}

/// `--image-format` and `--annotation`, and whether the base image's
/// annotations stay (`AnnotationOptions::inherit_base`).
fn finish_manifest(
    image: &mut image::ImageState,
    options: &BuildOptions,
) -> Result<(), BuildError> {
    let out = &options.output;
    match out.image_format {
        Some(crate::options::ImageFormat::Oci) => image.oci = true,
        Some(crate::options::ImageFormat::Docker) => {
            let zstd = kiln_oci::media::Compression::Zstd;
            if let Some(layer) = image.layers.iter().find(|l| {
                kiln_oci::media::Compression::of_media_type(&l.descriptor.media_type) == Some(zstd)
            }) {
                return Err(BuildError::Context(format!(
                    "--image-format=docker: layer {} is zstd-compressed, which Docker schema 2 \
                     cannot describe; use --image-format=oci",
                    layer.descriptor.digest
                )));
            }
            image.oci = false;
        }
        None => {}
    }
    if out.attest.attaches() {
        // An index that holds attestation manifests is an OCI index; its
        // image manifest is OCI too, as BuildKit makes it.
        if out.image_format == Some(crate::options::ImageFormat::Docker) {
            return Err(BuildError::Context(
                "--provenance and --sbom attach OCI attestation manifests, which a Docker \
                 schema 2 image cannot carry; drop --image-format=docker or write the \
                 statements with --provenance-file/--sbom-file only"
                    .to_string(),
            ));
        }
        image.oci = true;
    }
    if !out.annotations.inherit_base {
        image.annotations.clear();
    }
    image.annotations.extend(out.annotations.added.clone());
    Ok(())
}

/// `--label`s, the creation time, and the end of ONBUILD inheritance.
fn finish_config(image: &mut image::ImageState, options: &BuildOptions) {
    if !options.labels.is_empty() {
        let labels = image
            .container_config()
            .labels
            .get_or_insert_with(Default::default);
        for kv in &options.labels {
            labels.insert(kv.key.clone(), kv.value.clone());
        }
    }
    image.config.created = Some(stage::timestamp(options.reproducible));
}

/// Settles every finished stage's pending last layer, in stage order,
/// except in stages that defer their layers: no one asks for those.
async fn settle_all(
    runner: &StageRunner<'_>,
    results: &mut HashMap<usize, StageResult>,
) -> Result<(), BuildError> {
    let mut stages: Vec<usize> = results
        .keys()
        .copied()
        .filter(|&i| !runner.defers_layers(i))
        .collect();
    stages.sort_unstable();
    for index in stages {
        if let Some(result) = results.get_mut(&index) {
            runner.settle_result(result).await?;
        }
    }
    Ok(())
}

/// Stages whose root filesystem no stage still to run needs: finished,
/// not the target, and every stage that reads from them finished too.
/// Each is returned once (`released` remembers).
fn finished_roots(
    plan: &kiln_dockerfile::plan::Plan,
    finished: &std::collections::BTreeSet<usize>,
    released: &mut std::collections::BTreeSet<usize>,
) -> Vec<usize> {
    let mut out = Vec::new();
    for &index in finished {
        if index == plan.target || released.contains(&index) {
            continue;
        }
        let still_read = plan
            .needed
            .iter()
            .any(|&j| !finished.contains(&j) && plan.deps[j].stages.contains(&index));
        if !still_read {
            released.insert(index);
            out.push(index);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_stage_root_is_released_once_no_stage_to_come_reads_it() {
        let text = "FROM scratch AS a\nFROM scratch AS b\nFROM scratch AS c\nCOPY --from=a / /a\n\
                    FROM scratch\nCOPY --from=b / /b\nCOPY --from=c / /c\n";
        let df = kiln_dockerfile::load(text, &BTreeMap::new(), None).unwrap();
        let plan = &df.plan;
        let mut released = BTreeSet::new();
        // a, b done: a is still read by c, b by the target.
        let finished = BTreeSet::from([0, 1]);
        assert!(finished_roots(plan, &finished, &mut released).is_empty());
        // c done: a is free; c and b are read by the target.
        let finished = BTreeSet::from([0, 1, 2]);
        assert_eq!(finished_roots(plan, &finished, &mut released), vec![0]);
        // The target done: b and c are free, each released once, the target never.
        let finished = BTreeSet::from([0, 1, 2, 3]);
        assert_eq!(finished_roots(plan, &finished, &mut released), vec![1, 2]);
        assert!(finished_roots(plan, &finished, &mut released).is_empty());
    }

    #[test]
    fn unused_stages_up_to_the_target_are_built_only_when_asked() {
        let text = "FROM scratch AS a\nFROM scratch AS unused\nFROM scratch AS b\n\
                    COPY --from=a / /a\nFROM scratch AS after\n";
        let load = |skip_unused| {
            let mut df = kiln_dockerfile::load(text, &BTreeMap::new(), Some("b")).unwrap();
            select_stages(&mut df, skip_unused, &[]).unwrap();
            df.plan
        };
        let skipping = load(true);
        assert_eq!(skipping.needed, BTreeSet::from([0, 2]));
        assert_eq!(skipping.levels, vec![vec![0], vec![2]]);
        // Kaniko without --skip-unused-stages: everything up to the target,
        // nothing after it.
        let all = load(false);
        assert_eq!(all.needed, BTreeSet::from([0, 1, 2]));
        assert_eq!(all.levels, vec![vec![0, 1], vec![2]]);
        assert_eq!(all.target, 2);
    }

    #[test]
    fn further_targets_are_built_with_what_they_need() {
        let text = "FROM scratch AS a\nFROM scratch AS test\nCOPY --from=a / /a\n\
                    FROM scratch AS app\nFROM scratch AS later\n";
        let load = |skip_unused, also: &[&str]| {
            let mut df = kiln_dockerfile::load(text, &BTreeMap::new(), Some("app")).unwrap();
            let also: Vec<String> = also.iter().map(|s| s.to_string()).collect();
            select_stages(&mut df, skip_unused, &also).map(|()| df.plan)
        };
        let plan = load(true, &["test"]).unwrap();
        assert_eq!(plan.needed, BTreeSet::from([0, 1, 2]));
        assert_eq!(plan.target, 2, "the first target is still the one pushed");
        // A further target after the pushed one: Kaniko's rule runs up to it.
        let plan = load(false, &["later"]).unwrap();
        assert_eq!(plan.needed, BTreeSet::from([0, 1, 2, 3]));
        let err = load(true, &["nope"]).unwrap_err().to_string();
        assert!(err.contains("\"nope\" could not be found"), "{err}");
    }
}
