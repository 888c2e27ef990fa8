//! Running one stage: resolve its base, then apply each instruction in
//! order to an [`ImageState`], expanding words against the stage's scope.

use super::blobs::BlobStore;
use super::error::{BuildError, ImageTextError, StepError, StepFailure};
use super::image::{ImageState, LayerOrigin, LayerRef};
use super::listing::{ImageIndex, Listings, StoreListing, TEXT_FILES};
use super::metadata::{self, StageFlags, HISTORY_COMMENT};
use super::rootfs::Rootfs;
use super::stacked::StackedUpper;
use super::workspace::Workspace;
use crate::cache::{CacheKey, CachePusher, LayerCache, StepInputs};
use crate::context::BuildContext;
use crate::copy::{self, CopyPlan, Owner};
use crate::options::BuildOptions;
use crate::progress::{ProgressEvent, ProgressSink, StepId};
use kiln_dockerfile::instructions::{Command, Instruction};
use kiln_dockerfile::plan::Base;
use kiln_dockerfile::scope::StageEnv;
use kiln_dockerfile::Dockerfile;
use kiln_layer::tap::TapHandle;
use kiln_layer::{Deflate, LayerOptions, LayerWriter, MtimePolicy};
use kiln_oci::media::Compression;
use kiln_oci::{media, History, Platform, Reference};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What a finished stage hands to later stages and to the outputs.
pub(crate) struct StageResult {
    /// The stage's image.
    pub image: ImageState,
    /// Its root filesystem, when something materialized it.
    pub rootfs: Option<Rootfs>,
    /// Steps run.
    pub steps: usize,
    /// Steps whose result came from the cache.
    pub cached: usize,
    /// The cache key of the stage's last step: what `COPY --from` and
    /// `FROM <stage>` chain from.
    pub key: CacheKey,
    /// The last RUN's layer, still being written (or, in a stage that
    /// defers its layers, every RUN's, in order): in neither `image` nor
    /// the root's applied list until [`StageRunner::settle_result`]
    /// records it. `rootfs` already holds its changes, so `COPY --from`
    /// and RUN mounts read the stage before its layer is written; `FROM
    /// <stage>` and the outputs need it settled.
    pub pending: Vec<super::pending::PendingLayer>,
}

/// Everything stages share during one build.
pub(crate) struct StageRunner<'a> {
    pub options: &'a BuildOptions,
    pub dockerfile: &'a Dockerfile,
    pub dockerfile_name: &'a str,
    pub context: &'a BuildContext,
    pub workspace: &'a Workspace,
    pub blobs: &'a BlobStore,
    pub http: crate::copy::UrlFetcher,
    /// The layer cache, when `--cache` is on.
    pub cache: Option<LayerCache>,
    /// Background cache stores.
    pub pusher: &'a CachePusher,
    /// Uploads of the target stage's layers to the destinations, started
    /// as each layer is written.
    pub early: Option<&'a crate::output::early_push::EarlyPush>,
    /// Layer listings, for what an image holds without unpacking it.
    pub listings: Listings,
    /// Roots materialized for `COPY --from`, by name.
    pub from_roots: Mutex<HashMap<String, PathBuf>>,
    /// Where progress events go.
    pub progress: std::sync::Arc<dyn ProgressSink>,
    /// What the build read and did, for the provenance.
    pub record: &'a super::record::BuildRecorder,
    /// With `--sbom`, the layers of the image's stages scanned as they
    /// stream (see [`StageRunner::scan_tap`]).
    pub scans: Option<crate::output::sbom_scan::LayerScans>,
    /// Whether this build's RUN steps found namespaces refused.
    pub namespaces_refused: super::run_step::NamespacesRefused,
    /// Bases of later stages unpacked ahead (see [`super::prefetch`]).
    pub prefetches: super::prefetch::Prefetches,
}

/// A stage in progress.
pub(crate) struct StageRun<'r> {
    pub image: ImageState,
    pub env: StageEnv,
    pub flags: StageFlags,
    pub rootfs: Option<Rootfs>,
    pub rootfs_name: String,
    pub results: &'r HashMap<usize, StageResult>,
    pub steps: usize,
    /// The cache key chain: every step, layer or not, extends it.
    pub key: CacheKey,
    /// Steps whose result came from the cache.
    pub cached: usize,
    /// The stage's index and name, and its number of steps, for progress events.
    pub stage: (usize, String, usize),
    /// Whether the step being run came from the cache.
    pub step_cached: bool,
    /// The last RUN's layer, still being written; in a stage that defers
    /// its layers, every RUN's since the stage began, in order.
    pub pending: Vec<super::pending::PendingLayer>,
    /// Layers recorded late (see [`super::pending`]), so far.
    pub settled: usize,
    /// The stage's base root, being unpacked ahead, until the stage first
    /// needs a root.
    pub prefetch: Option<super::prefetch::Claim>,
    /// RUN upper dirs stacked over `rootfs`, bottom first (see
    /// [`super::stacked`]): the stage's files are those of the overlay of
    /// the two. Empty except between two RUNs.
    pub stacked: Vec<StackedUpper>,
}

impl StageRun<'_> {
    /// The step being run (the last one started), for progress events.
    pub(crate) fn step_id(&self, instruction: &Instruction) -> StepId {
        StepId {
            stage: self.stage.0,
            stage_name: self.stage.1.clone(),
            index: self.steps,
            total: self.stage.2,
            line: instruction.line(),
        }
    }

    /// Gives up the stage's root (a step left it half changed): the next
    /// step that needs one materializes it afresh from the image, in a new
    /// directory named after `step_kind` and the step.
    pub(crate) fn discard_root(&mut self, step_kind: char) {
        self.rootfs = None;
        self.rootfs_name = format!("{}-{step_kind}{}", self.rootfs_name, self.steps);
    }
}

/// gzip level used when `--compression-level` is not given (gzip's fastest).
const GZIP_DEFAULT_LEVEL: i32 = 1;

/// The time written into history entries and the config.
pub(crate) fn timestamp(reproducible: bool) -> String {
    let when = if reproducible {
        time::OffsetDateTime::UNIX_EPOCH
    } else {
        time::OffsetDateTime::now_utc()
    };
    when.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl StageRunner<'_> {
    pub(crate) fn step_error(
        &self,
        instruction: &Instruction,
        source: impl Into<StepError>,
    ) -> BuildError {
        BuildError::Step(Box::new(StepFailure {
            file: self.dockerfile_name.to_string(),
            line: instruction.line(),
            instruction: shorten(&instruction.original),
            source: source.into(),
        }))
    }

    /// Runs stage `index`; the stages it depends on are in `results`.
    pub async fn run(
        &self,
        index: usize,
        results: &HashMap<usize, StageResult>,
    ) -> Result<StageResult, BuildError> {
        let stage = &self.dockerfile.stages[index];
        self.progress.event(&ProgressEvent::StageStarted {
            stage: index,
            name: stage.display_name(),
            base: base_text(&stage.base),
            steps: stage.instructions.len(),
        });
        let platform = self.stage_platform(stage.platform.as_deref(), &stage.from)?;
        let mut prefetch = None;
        let (image, parent) = match &stage.base {
            Base::Scratch => (ImageState::scratch(&platform), "scratch".to_string()),
            Base::Stage(i) => (results[i].image.clone(), results[i].key.to_string()),
            Base::Image(r) => {
                let (image, digest) = self.pull(r, &platform, &stage.from).await?;
                prefetch = self.prefetches.claim(index, &digest);
                (image, digest.to_string())
            }
        };
        let workdir = image
            .config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .unwrap_or_default();
        let env = StageEnv::new(&self.dockerfile.global, image.env_pairs()).with_workdir(&workdir);
        let mut run = StageRun {
            image,
            env,
            flags: StageFlags::default(),
            rootfs: None,
            rootfs_name: format!("stage-{index}"),
            results,
            steps: 0,
            key: CacheKey::base(&parent, &platform),
            cached: 0,
            stage: (index, stage.display_name(), stage.instructions.len()),
            step_cached: false,
            pending: Vec::new(),
            settled: 0,
            prefetch,
            stacked: Vec::new(),
        };
        // ONBUILD triggers of the base run first, and are not inherited.
        let triggers = run
            .image
            .container_config()
            .on_build
            .take()
            .unwrap_or_default();
        run.stage.2 += triggers.len();
        for trigger in triggers {
            let instruction = kiln_dockerfile::parse_onbuild_trigger(&trigger).map_err(|e| {
                self.step_error(
                    &stage.from,
                    format!("ONBUILD trigger {trigger:?}: {}", e.message),
                )
            })?;
            let mut instruction = instruction;
            instruction.span = stage.from.span;
            self.step(&mut run, &instruction).await?;
        }
        for instruction in &stage.instructions {
            self.step(&mut run, instruction).await?;
        }
        if index == self.dockerfile.plan.target {
            // No step reads the target's root again (a layer still being
            // written reads its own shadow tree): its removal starts now,
            // beside that layer's compression, rather than after the push.
            if let Some(root) = run.rootfs.take() {
                self.workspace
                    .remove_in_background(vec![root.dir().to_path_buf()]);
            }
        }
        // Without a root (the target's is gone) later readers would unpack
        // the image, so its last layer goes in now.
        if run.rootfs.is_none() {
            self.settle(&mut run).await?;
        }
        // A stage that later stages read from: bring its materialized root up
        // to date now (applying just the last layers), so `COPY --from` and
        // RUN bind mounts reuse it instead of unpacking the stage again. Its
        // last RUN's layer is left to the caller to settle: those readers
        // need the root, not the layer (see `engine::pending`).
        if run.rootfs.is_some() {
            self.rootfs(&mut run, &stage.from).await?;
        }
        Ok(StageResult {
            image: run.image,
            rootfs: run.rootfs,
            steps: run.steps,
            key: run.key,
            cached: run.cached,
            pending: run.pending,
        })
    }

    pub(crate) fn stage_platform(
        &self,
        flag: Option<&str>,
        from: &Instruction,
    ) -> Result<Platform, BuildError> {
        match flag {
            None => Ok(self.options.platform.clone()),
            Some(p) => {
                let expanded = self
                    .dockerfile
                    .global
                    .expand(p, from.line())
                    .map_err(|e| self.step_error(from, e.message))?
                    .0;
                expanded
                    .parse::<Platform>()
                    .map_err(|e| self.step_error(from, e))
            }
        }
    }

    pub(crate) async fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        from: &Instruction,
    ) -> Result<(ImageState, kiln_oci::Digest), BuildError> {
        let parsed = Reference::parse(reference).map_err(|e| self.step_error(from, e))?;
        if let Some(found) = self.warmed_base(&parsed, platform).await {
            self.record.image(&parsed, &found.1, platform);
            return Ok(found);
        }
        let (image, digest) =
            super::base::pull(self.blobs.client(), reference, &parsed, platform).await?;
        tracing::info!("base {} is {}", parsed, digest);
        self.record.image(&parsed, &digest, platform);
        Ok((image, digest))
    }

    /// The base from `--cache-dir` (filled by `kiln warm`) when the cache
    /// is on and it holds a fresh copy: no registry request at all, as
    /// with Kaniko's warmer.
    async fn warmed_base(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Option<(ImageState, kiln_oci::Digest)> {
        let cache = &self.options.cache;
        if !cache.enabled || !cache.dir.is_dir() {
            return None;
        }
        let found =
            crate::cache::warm::cached_base(&cache.dir, reference, platform, cache.ttl).await?;
        if found.config.rootfs.diff_ids.len() != found.manifest.layers.len() {
            return None;
        }
        tracing::info!(
            "base {reference} is {} (from {})",
            found.manifest_digest,
            cache.dir.display()
        );
        let pinned = reference.with_digest(found.manifest_digest.clone());
        let layers = found
            .manifest
            .layers
            .iter()
            .zip(&found.config.rootfs.diff_ids)
            .map(|(d, diff_id)| {
                self.blobs.seed(&d.digest, found.blob_path(&d.digest));
                LayerRef {
                    descriptor: d.clone(),
                    diff_id: diff_id.clone(),
                    origin: LayerOrigin::Remote(pinned.clone()),
                }
            })
            .collect();
        let oci = found.manifest.effective_media_type() == media::OCI_MANIFEST;
        Some((
            ImageState {
                layers,
                oci,
                annotations: found.manifest.annotations.clone(),
                config: found.config,
            },
            found.manifest_digest,
        ))
    }

    /// Runs one step, telling the progress sink when it starts and ends.
    async fn step(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        let started = std::time::Instant::now();
        run.steps += 1;
        run.step_cached = false;
        let step = run.step_id(instruction);
        self.progress.event(&ProgressEvent::StepStarted {
            step: step.clone(),
            instruction: shorten(&instruction.original),
        });
        let layers = run.image.layers.len();
        let settled = run.settled;
        self.step_body(run, instruction).await?;
        // A layer settled during the step went in below this step's own.
        let layers = layers + (run.settled - settled);
        if let (Some(early), true) = (self.early, run.stage.0 == self.dockerfile.plan.target) {
            for layer in &run.image.layers[layers..] {
                early.start(layer);
            }
        }
        self.record.step(kiln_attest::provenance::StepRecord {
            stage: run.stage.0,
            stage_name: run.stage.1.clone(),
            line: instruction.line(),
            instruction: shorten_history(&instruction.original),
            cache_origin: run
                .step_cached
                .then(|| self.cache.as_ref().map(|c| c.describe()))
                .flatten(),
        });
        let duration = started.elapsed();
        let event = if run.step_cached {
            ProgressEvent::StepCached { step, duration }
        } else {
            let layer_size = (run.image.layers.len() > layers)
                .then(|| run.image.layers.last().map(|l| l.descriptor.size))
                .flatten();
            ProgressEvent::StepDone {
                step,
                duration,
                layer_size,
            }
        };
        self.progress.event(&event);
        Ok(())
    }

    async fn step_body(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        let expanded = run
            .env
            .apply(instruction)
            .map_err(|e| self.step_error(instruction, e.message))?;
        let created = timestamp(self.options.reproducible);
        let command = &expanded.instruction.command;
        // The key first: it needs only the context and what earlier steps
        // decided, never the image's files.
        let prepared = match command {
            Command::Copy(_) | Command::Add(_) => Some(
                self.prepare_copy(run, instruction, &expanded.instruction)
                    .await?,
            ),
            _ => None,
        };
        let (inputs, extra) = match (&prepared, command) {
            (Some(p), _) => self.copy_key_inputs(run, instruction, p).await?,
            (None, Command::Run(r)) => (None, self.run_key_inputs(run, instruction, r).await?),
            _ => (None, Vec::new()),
        };
        run.key = run.key.chain(&StepInputs {
            command,
            args: &expanded.used_args,
            inputs: inputs.as_ref(),
            extra: &extra,
        });
        if self.cacheable(command) {
            if let Some(hit) = self.lookup(run, instruction).await {
                run.step_cached = true;
                let history = History {
                    created: Some(hit.created.clone()),
                    created_by: Some(hit.created_by.clone()),
                    comment: Some(HISTORY_COMMENT.to_string()),
                    ..Default::default()
                };
                match hit.layer {
                    Some(layer) => run.image.push_layer(layer, history),
                    None => run.image.push_empty(history),
                }
                run.cached += 1;
                // The cached entry above is the step's history.
                match command {
                    Command::Workdir(w) => metadata::set_workdir(&mut run.image, &w.path),
                    Command::Volume(v) => metadata::set_volumes(&mut run.image, &v.paths),
                    _ => {}
                }
                return Ok(());
            }
        }
        match command {
            Command::Copy(_) | Command::Add(_) => {
                let prepared = prepared.expect("prepared above for COPY and ADD");
                self.execute_copy(run, instruction, prepared, &created)
                    .await
            }
            Command::Workdir(w) => {
                let layers = run.image.layers.len();
                self.workdir_step(run, instruction, &w.path, &created)
                    .await?;
                if run.image.layers.len() > layers {
                    // The layer's history entry stands for the step.
                    metadata::set_workdir(&mut run.image, &w.path);
                } else {
                    metadata::apply(&mut run.image, &mut run.flags, command, Some(&created));
                }
                Ok(())
            }
            Command::Volume(v) => {
                let layers = run.image.layers.len();
                self.volume_step(run, instruction, &v.paths, &created)
                    .await?;
                if run.image.layers.len() > layers {
                    // The layer's history entry stands for the step.
                    metadata::set_volumes(&mut run.image, &v.paths);
                } else {
                    metadata::apply(&mut run.image, &mut run.flags, command, Some(&created));
                }
                Ok(())
            }
            Command::Run(r) => self.run_step(run, instruction, r, &created).await,
            Command::From(_) => Ok(()),
            other => {
                metadata::apply(&mut run.image, &mut run.flags, other, Some(&created));
                Ok(())
            }
        }
    }

    /// Whether a step's result goes through the cache: RUN with
    /// `--cache-run-layers`, COPY/ADD with `--cache-copy-layers`, and
    /// WORKDIR and VOLUME (so a warm build need not look into the image to
    /// know the directory exists).
    fn cacheable(&self, command: &Command) -> bool {
        let opts = &self.options.cache;
        self.cache.is_some()
            && match command {
                Command::Run(_) => opts.run_layers,
                Command::Copy(_) | Command::Add(_) => opts.copy_layers,
                Command::Workdir(_) | Command::Volume(_) => true,
                _ => false,
            }
    }

    async fn lookup(
        &self,
        run: &StageRun<'_>,
        instruction: &Instruction,
    ) -> Option<crate::cache::CachedStep> {
        let cache = self.cache.as_ref()?;
        match cache.lookup(&run.key).await {
            Ok(hit) => hit,
            Err(e) => {
                tracing::warn!(
                    "step {}: cache lookup failed, building: {e}",
                    instruction.line()
                );
                None
            }
        }
    }

    /// Stores a step's outcome in the cache in the background.
    pub(crate) fn store(
        &self,
        run: &StageRun<'_>,
        instruction: &Instruction,
        layer: Option<LayerRef>,
        created_by: String,
    ) {
        self.store_keyed(run.key.clone(), instruction, layer, created_by);
    }

    /// [`StageRunner::store`] under a key given rather than the stage's
    /// current one (a step recorded after later steps ran).
    pub(crate) fn store_keyed(
        &self,
        key: CacheKey,
        instruction: &Instruction,
        layer: Option<LayerRef>,
        created_by: String,
    ) {
        if let Some(cache) = &self.cache {
            if self.cacheable(&instruction.command) && self.options.cache.push {
                self.pusher.spawn(cache, key, layer, created_by);
            }
        }
    }

    /// The stage's root filesystem, brought up to date with its image,
    /// RUN upper dirs stacked on it folded in.
    pub(crate) async fn rootfs<'b>(
        &self,
        run: &'b mut StageRun<'_>,
        instruction: &Instruction,
    ) -> Result<&'b Rootfs, BuildError> {
        self.fold_stacked(run, instruction).await?;
        self.rootfs_under_stack(run, instruction).await
    }

    /// Folds the RUN upper dirs stacked on the stage's root into it
    /// (waiting for their layers to be read). A root left half changed is
    /// dropped, to be unpacked afresh from the image, layers settled.
    pub(crate) async fn fold_stacked(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        let stack = std::mem::take(&mut run.stacked);
        let Some(root) = run.rootfs.as_ref().filter(|_| !stack.is_empty()) else {
            return Ok(());
        };
        let root = root.dir().to_path_buf();
        let folded = tokio::task::spawn_blocking(move || super::stacked::fold(stack, &root))
            .await
            .map_err(|source| {
                self.step_error(
                    instruction,
                    StepError::Task {
                        what: "folding RUN changes into the root",
                        source,
                    },
                )
            })?;
        if folded.is_err() {
            self.settle(run).await?;
            run.discard_root('f');
        }
        Ok(())
    }

    /// The stage's root filesystem brought up to date with its image, with
    /// the RUN upper dirs stacked on it left there: for a RUN, which mounts
    /// them above it.
    pub(crate) async fn rootfs_under_stack<'b>(
        &self,
        run: &'b mut StageRun<'_>,
        instruction: &Instruction,
    ) -> Result<&'b Rootfs, BuildError> {
        // Layers the root lacks (a step taken from the cache) go on top of
        // what is stacked: fold it in first, so they are applied in order.
        if !run.rootfs.as_ref().is_some_and(|r| r.holds(&run.image)) {
            self.fold_stacked(run, instruction).await?;
        }
        self.take_prefetched(run).await;
        if run.rootfs.is_none() {
            let dir = self.workspace.rootfs(&run.rootfs_name);
            run.rootfs = Some(Rootfs::new(dir).map_err(|e| self.step_error(instruction, e))?);
        }
        let tap = self.scan_tap(run.stage.0);
        let rootfs = run.rootfs.as_mut().expect("just set");
        self.sync_root(rootfs, &run.image, tap)
            .await
            .map_err(|e| self.step_error(instruction, e))?;
        Ok(rootfs)
    }

    /// The stage's first need of a root: the base root unpacked ahead
    /// becomes the stage's, when there is one (waiting for it to be ready).
    async fn take_prefetched(&self, run: &mut StageRun<'_>) {
        if let Some(claim) = run.prefetch.take() {
            if run.rootfs.is_none() {
                run.rootfs = claim.root(self.workspace, run.stage.0).await;
            }
        }
    }

    /// Brings `root` up to `image`. With the cache pushed to, each layer
    /// unpacked from a registry (the base, steps taken from the cache) has
    /// its listing, recorded as it was unpacked, stored for the next runner.
    /// With `tap`, each layer unpacked is also handed to it as it streams.
    pub(crate) async fn sync_root(
        &self,
        root: &mut Rootfs,
        image: &ImageState,
        tap: Option<TapHandle>,
    ) -> Result<(), super::rootfs::RootfsError> {
        let record =
            (self.cache.is_some() && self.options.cache.push).then(super::listing::catalog_options);
        for (layer, catalog) in root
            .sync(image, self.blobs, record.as_ref(), tap.as_ref())
            .await?
        {
            self.listings
                .record(&layer, &catalog, StoreListing::UnlessCached, self.pusher);
        }
        Ok(())
    }

    /// What the stage's image holds, for COPY and WORKDIR decisions: its
    /// root filesystem when something already materialized it (a RUN) or
    /// a later RUN will, else the layers' listings, which need no download
    /// when cached.
    pub(crate) async fn image_view(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
    ) -> Result<ImageView, BuildError> {
        self.take_prefetched(run).await;
        if run.rootfs.is_some() || self.root_needed_later(run, instruction) {
            let root = self.rootfs(run, instruction).await?;
            return Ok(ImageView::Root(root.clone()));
        }
        let index = self
            .listings
            .index(&run.image, self.pusher)
            .await
            .map_err(|e| self.step_error(instruction, e))?;
        Ok(ImageView::Index(index))
    }

    /// Whether the stage will materialize its root after `instruction`
    /// whatever happens: without the cache every later RUN runs. Listing
    /// the image's layers now would then read each of them twice (listed
    /// here, unpacked for the RUN); unpacking now reads them once, and the
    /// steps before the RUN write their layers straight into the root.
    fn root_needed_later(&self, run: &StageRun<'_>, instruction: &Instruction) -> bool {
        self.cache.is_none()
            && self.dockerfile.stages[run.stage.0]
                .instructions
                .iter()
                .any(|i| {
                    i.span.start > instruction.span.start && matches!(i.command, Command::Run(_))
                })
    }

    /// Whether the stage's instruction after `instruction` is a RUN, which
    /// may then read `instruction`'s changes stacked (see `engine::stacked`).
    pub(crate) fn next_is_run(&self, run: &StageRun<'_>, instruction: &Instruction) -> bool {
        self.dockerfile.stages[run.stage.0]
            .instructions
            .iter()
            .find(|i| i.span.start > instruction.span.start)
            .is_some_and(|next| matches!(next.command, Command::Run(_)))
    }

    /// WORKDIR creates its directory (owned by the stage's USER) when the
    /// image lacks it, as BuildKit does; the layer holds just that.
    async fn workdir_step(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        path: &str,
        created: &str,
    ) -> Result<(), BuildError> {
        self.dirs_step(run, instruction, &[path.to_string()], true, created)
            .await
    }

    /// VOLUME creates the directories the image lacks (owned by root), as
    /// Kaniko and Docker's classic builder do, so a later step can write
    /// there; BuildKit only records the volume. What later steps write
    /// stays in the image, as with BuildKit. See docs/cli.md.
    async fn volume_step(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        paths: &[String],
        created: &str,
    ) -> Result<(), BuildError> {
        let workdir = run.env.workdir().to_string();
        let absolute: Vec<String> = paths
            .iter()
            .map(|p| {
                if p.starts_with('/') {
                    p.clone()
                } else {
                    format!("{}/{p}", workdir.trim_end_matches('/'))
                }
            })
            .collect();
        self.dirs_step(run, instruction, &absolute, false, created)
            .await
    }

    /// Makes the missing directories along `paths` in one layer; records
    /// no layer when they all exist. Each path is made where it leads, as
    /// BuildKit's mkdir does: /link/sub under a symlinked /link creates the
    /// link target's sub. `user_owned`: new directories belong to the
    /// stage's USER (WORKDIR), else to root.
    async fn dirs_step(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        paths: &[String],
        user_owned: bool,
        created: &str,
    ) -> Result<(), BuildError> {
        if paths.iter().all(|p| p == "/") {
            return Ok(());
        }
        let rootfs = self.image_view(run, instruction).await?;
        let user = run
            .image
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .filter(|u| user_owned && !u.is_empty());
        let mut wanted = paths.to_vec();
        if user.is_some() {
            wanted.extend(TEXT_FILES.map(String::from));
        }
        let now = if self.options.reproducible {
            0
        } else {
            time::OffsetDateTime::now_utc().unix_timestamp()
        };
        let decided = self
            .decide(&rootfs, instruction, &wanted, || {
                self.missing_dirs(instruction, &rootfs, paths, user.as_deref(), now)
            })
            .await?;
        let Some(plan_entries) = decided? else {
            let created_by = shorten_history(&instruction.original);
            self.store(run, instruction, None, created_by);
            return Ok(());
        };
        let plan = CopyPlan::from_entries(plan_entries);
        let layer = self.write_layer(run.stage.0, &plan, instruction).await?;
        self.add_layer(run, instruction, layer, created).await
    }

    /// The directories along `paths` the image lacks, to make (owned by
    /// `user` when given, else root); `None` when it has them all. Asks
    /// the image only through `rootfs`, so that [`StageRunner::decide`] can
    /// run it again.
    fn missing_dirs(
        &self,
        instruction: &Instruction,
        rootfs: &ImageView,
        paths: &[String],
        user: Option<&str>,
        now: i64,
    ) -> Result<Option<Vec<copy::PlanEntry>>, BuildError> {
        let targets: Vec<String> = paths
            .iter()
            .map(|p| rootfs.resolve(p).unwrap_or_else(|| p.clone()))
            .collect();
        if targets.iter().all(|t| rootfs.kind_of(t).is_some()) {
            return Ok(None);
        }
        let owner = match user {
            Some(user) => Owner::resolve(
                user,
                rootfs
                    .read_text("/etc/passwd")
                    .map_err(|e| self.step_error(instruction, e))?
                    .as_deref(),
                rootfs
                    .read_text("/etc/group")
                    .map_err(|e| self.step_error(instruction, e))?
                    .as_deref(),
            )
            .map_err(|e| self.step_error(instruction, e))?,
            None => Owner::ROOT,
        };
        let existing = |p: &str| rootfs.kind_of(p);
        let mut plan_entries = Vec::new();
        for target in &targets {
            let mut current = String::new();
            for part in target.split('/').filter(|p| !p.is_empty()) {
                current.push('/');
                current.push_str(part);
                if existing(&current).is_none() {
                    plan_entries.push(copy::PlanEntry {
                        path: current.clone(),
                        kind: copy::EntryKind::Dir,
                        source: copy::EntrySource::None,
                        mode: 0o755,
                        uid: owner.uid,
                        gid: owner.gid,
                        mtime: now,
                    });
                }
            }
        }
        Ok(Some(plan_entries))
    }

    /// Runs `decide`, which asks `view` about the image, until its answers
    /// can be trusted: once over an unpacked root; over listings, again
    /// after each load of the pieces it reached that were not loaded.
    /// `wanted` are paths it will ask about, loaded first.
    pub(crate) async fn decide<T>(
        &self,
        view: &ImageView,
        instruction: &Instruction,
        wanted: &[String],
        mut decide: impl FnMut() -> T,
    ) -> Result<T, BuildError> {
        match view {
            ImageView::Root(_) => Ok(decide()),
            ImageView::Index(index) => self
                .listings
                .decide(index, wanted, decide)
                .await
                .map_err(|e| self.step_error(instruction, e)),
        }
    }

    pub(crate) async fn write_layer(
        &self,
        stage: usize,
        plan: &CopyPlan,
        instruction: &Instruction,
    ) -> Result<kiln_layer::LayerBlob, BuildError> {
        let opts = self.layer_options(stage);
        let (blob, ()) = self
            .write_layer_then(opts, plan, instruction, |_| ())
            .await?;
        Ok(blob)
    }

    /// Writes `plan` as a layer with `opts` on a blocking thread, then,
    /// still there and whether the write succeeded or not, runs `after`
    /// with the written blob (a tap's reader must end before the step goes
    /// on or fails).
    pub(crate) async fn write_layer_then<T: Send + 'static>(
        &self,
        opts: LayerOptions,
        plan: &CopyPlan,
        instruction: &Instruction,
        after: impl FnOnce(Option<&kiln_layer::LayerBlob>) -> T + Send + 'static,
    ) -> Result<(kiln_layer::LayerBlob, T), BuildError> {
        let dir = self.workspace.layers();
        let plan = plan.clone();
        let result = tokio::task::spawn_blocking(move || {
            let written = (|| -> Result<kiln_layer::LayerBlob, StepError> {
                let mut writer = LayerWriter::new(&dir, &opts)?;
                copy::write_layer(&plan, &mut writer)?;
                Ok(writer.finish()?)
            })();
            let extra = after(written.as_ref().ok());
            written.map(|blob| (blob, extra))
        })
        .await
        .expect("layer writing task panicked");
        result.map_err(|e| self.step_error(instruction, e))
    }

    /// How stage `stage` writes its layers.
    pub(crate) fn layer_options(&self, stage: usize) -> LayerOptions {
        let compression = self.options.layers.compression;
        // Without --compression-level, gzip runs at its fastest level, as in
        // Kaniko (go-containerregistry's default): layers compress 3-5x
        // faster for a few percent more bytes. zstd keeps its own default.
        let level = match (self.options.layers.level, compression) {
            (Some(level), _) => Some(level),
            (None, Compression::Gzip) => Some(GZIP_DEFAULT_LEVEL),
            (None, _) => None,
        };
        let mut opts = LayerOptions::new(compression);
        if let Some(level) = level {
            opts = opts.with_level(level);
        }
        if self.options.reproducible {
            opts = opts.with_mtime(MtimePolicy::Fixed(0));
        } else {
            // Without --reproducible a layer's bytes already change from build
            // to build (files a RUN makes carry the time it ran), so letting
            // them also depend on the CPU costs nothing, and igzip's level 1
            // is 4-5x as fast. A reproducible build keeps the deflate that
            // gives the same bytes on every machine.
            opts = opts.with_deflate(Deflate::Fast);
        }
        if self.cache.is_some() {
            // The layer's listing, recorded as it is written, goes to the
            // cache with the step (see `record_layer_at`).
            opts = opts.with_catalog(super::listing::catalog_options());
        }
        if let Some(tap) = self.scan_tap(stage) {
            opts = opts.with_tap(tap);
        }
        // Each call is for one layer about to be written: a target-stage
        // layer starts going to the destinations as its writer fills it.
        if let (Some(early), true) = (self.early, stage == self.dockerfile.plan.target) {
            opts = opts.with_watch(early.watch_layer());
        }
        opts
    }

    /// With `--sbom`, where stage `stage`'s layers are scanned as they
    /// stream: only for the stages whose layers the image holds (the target
    /// and the stages it is built `FROM`), so a builder stage's toolchain is
    /// not hashed for nothing.
    pub(crate) fn scan_tap(&self, stage: usize) -> Option<TapHandle> {
        let scans = self.scans.as_ref()?;
        let mut at = self.dockerfile.plan.target;
        loop {
            if at == stage {
                return Some(scans.handle());
            }
            match self.dockerfile.stages.get(at).map(|s| &s.base) {
                Some(Base::Stage(below)) if *below < at => at = *below,
                _ => return None,
            }
        }
    }

    pub(crate) async fn add_layer(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        blob: kiln_layer::LayerBlob,
        created: &str,
    ) -> Result<(), BuildError> {
        let created_by = shorten_history(&instruction.original);
        self.record_layer(run, instruction, &blob, created, created_by);
        Ok(())
    }

    /// Adds a layer this build wrote to the stage's image, with its history
    /// entry, and sends it to the cache.
    pub(crate) fn record_layer(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        blob: &kiln_layer::LayerBlob,
        created: &str,
        created_by: String,
    ) {
        let at = (run.image.layers.len(), run.image.config.history.len());
        let key = run.key.clone();
        self.record_layer_at(
            &mut run.image,
            instruction,
            blob,
            (key, at),
            created,
            created_by,
        );
    }

    /// [`StageRunner::record_layer`] for a step recorded late (see
    /// `engine::pending`): its cache key and its place in the image
    /// (layer index, history index) are the ones it had when it ran.
    pub(crate) fn record_layer_at(
        &self,
        image: &mut ImageState,
        instruction: &Instruction,
        blob: &kiln_layer::LayerBlob,
        (key, at): (CacheKey, (usize, usize)),
        created: &str,
        created_by: String,
    ) -> LayerRef {
        if blob.compression == Compression::Zstd {
            image.oci = true;
        }
        tracing::debug!(
            "step {}: layer {} ({} bytes)",
            instruction.line(),
            blob.digest,
            blob.size
        );
        let layer = LayerRef {
            descriptor: kiln_oci::Descriptor::new(
                blob.media_type(image.oci),
                blob.digest.clone(),
                blob.size,
            ),
            diff_id: blob.diff_id.clone(),
            origin: LayerOrigin::Local(blob.path.clone()),
        };
        self.store_keyed(key, instruction, Some(layer.clone()), created_by.clone());
        if let Some(catalog) = &blob.catalog {
            // A runner that takes this step from the cache and then misses
            // a COPY or WORKDIR above it learns what the layer holds from
            // this listing instead of downloading the layer.
            let store = if self.cacheable(&instruction.command) {
                StoreListing::New
            } else {
                StoreListing::No
            };
            self.listings.record(&layer, catalog, store, self.pusher);
        }
        let history = History {
            created: Some(created.to_string()),
            created_by: Some(created_by),
            comment: Some(HISTORY_COMMENT.to_string()),
            ..Default::default()
        };
        image.insert_layer(at, layer.clone(), history);
        layer
    }
}

/// Lets every deferred writer among `pending` start at once, so that
/// they compress side by side rather than each after the one before.
fn open_all(pending: &[super::pending::PendingLayer]) {
    for gate in pending.iter().filter_map(|p| p.gate.as_ref()) {
        gate.open();
    }
}

fn base_text(base: &Base) -> String {
    match base {
        Base::Scratch => "scratch".into(),
        Base::Stage(i) => format!("stage {i}"),
        Base::Image(r) => r.clone(),
    }
}

/// An instruction on one line, cut to a readable length for messages.
fn shorten(original: &str) -> String {
    let one_line: String = original.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        one_line.chars().take(117).collect::<String>() + "..."
    } else {
        one_line
    }
}

fn shorten_history(original: &str) -> String {
    original.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Answers about the files of a stage's image.
pub(crate) enum ImageView {
    /// A materialized root filesystem.
    Root(Rootfs),
    /// The layers' listings.
    Index(Arc<ImageIndex>),
}

impl ImageView {
    /// What `path` is, following symlinks inside the image.
    pub(crate) fn kind_of(&self, path: &str) -> Option<crate::copy::FileKind> {
        match self {
            ImageView::Root(r) => r.kind_of(path),
            ImageView::Index(i) => i.kind_of(path),
        }
    }

    /// The text of a small file (`/etc/passwd`, `/etc/group`).
    pub(crate) fn read_text(&self, path: &str) -> Result<Option<String>, ImageTextError> {
        match self {
            ImageView::Root(r) => r.read_text(path),
            ImageView::Index(i) => i.read_text(path),
        }
    }

    /// `path` (absolute) with every symlink along it followed inside the
    /// image, the last component included; `None` for a link loop. An
    /// unpacked root answers through kiln-layer's on-disk resolver, a
    /// listing in its own paths (`ListingIndex::resolve`), not on disk.
    pub(crate) fn resolve(&self, path: &str) -> Option<String> {
        match self {
            ImageView::Root(r) => r.resolve(path),
            ImageView::Index(i) => i.resolve(path),
        }
    }
}

impl StageRunner<'_> {
    /// Records the pending RUN layer, if any, once it is written: in the
    /// image and the root's applied list at the step's position, in the
    /// cache, and as an upload to the destinations.
    pub(crate) async fn settle(&self, run: &mut StageRun<'_>) -> Result<(), BuildError> {
        open_all(&run.pending);
        for pending in std::mem::take(&mut run.pending) {
            let layer = self
                .record_pending(pending, &mut run.image, run.rootfs.as_mut())
                .await?;
            run.settled += 1;
            if let (Some(early), true) = (self.early, run.stage.0 == self.dockerfile.plan.target) {
                early.start(&layer);
            }
        }
        Ok(())
    }

    /// [`StageRunner::settle`] for a finished stage whose last RUN's layer
    /// was left pending: records it in the stage's image and root.
    pub(crate) async fn settle_result(&self, result: &mut StageResult) -> Result<(), BuildError> {
        open_all(&result.pending);
        for pending in std::mem::take(&mut result.pending) {
            self.record_pending(pending, &mut result.image, result.rootfs.as_mut())
                .await?;
        }
        Ok(())
    }

    /// True when no one may ask for `stage`'s layers, so that its RUNs
    /// defer writing them (see `engine::pending`): no layer cache to fill,
    /// not the target, and no stage built `FROM` it. Later stages may
    /// still copy from or mount its root.
    pub(crate) fn defers_layers(&self, stage: usize) -> bool {
        let plan = &self.dockerfile.plan;
        self.cache.is_none()
            && stage != plan.target
            && !self
                .dockerfile
                .stages
                .iter()
                .any(|s| s.base == Base::Stage(stage))
    }

    /// Waits for `pending`'s layer and records it in `image` (and in
    /// `root`'s applied list) at the step's position, and in the cache.
    async fn record_pending(
        &self,
        pending: super::pending::PendingLayer,
        image: &mut ImageState,
        root: Option<&mut Rootfs>,
    ) -> Result<LayerRef, BuildError> {
        let instruction = &pending.instruction;
        let blob = pending
            .result
            .await
            .map_err(|_| self.step_error(instruction, "the layer writer stopped"))?
            .map_err(|e| self.step_error(instruction, StepError::PendingLayer(e)))?;
        let layer = self.record_layer_at(
            image,
            instruction,
            &blob,
            (pending.key, pending.at),
            &pending.created,
            pending.created_by,
        );
        if let Some(root) = root {
            root.insert_applied(pending.at.0, &blob.digest);
        }
        tracing::info!(
            "step {}: layer {:.2} MiB written",
            instruction.line(),
            blob.size as f64 / (1024.0 * 1024.0)
        );
        Ok(layer)
    }
}
