//! Running one stage: resolve its base, then apply each instruction in
//! order to an [`ImageState`], expanding words against the stage's scope.

use super::blobs::BlobStore;
use super::error::BuildError;
use super::image::{ImageState, LayerOrigin, LayerRef};
use super::metadata::{self, StageFlags, HISTORY_COMMENT};
use super::rootfs::Rootfs;
use super::workspace::Workspace;
use crate::context::BuildContext;
use crate::copy::{
    self, classify_source, Chmod, CopyPlan, CopyRequest, CopySource, Owner, SourceKind,
};
use crate::options::{BuildOptions, Compression};
use kiln_dockerfile::instructions::{Command, Instruction, Source};
use kiln_dockerfile::plan::Base;
use kiln_dockerfile::scope::StageEnv;
use kiln_dockerfile::Dockerfile;
use kiln_layer::{LayerOptions, LayerWriter, MtimePolicy};
use kiln_oci::{media, Descriptor, History, Platform, Reference};
use std::collections::HashMap;
use std::sync::Arc;

/// What a finished stage hands to later stages and to the outputs.
pub(crate) struct StageResult {
    /// The stage's image.
    pub image: ImageState,
    /// Its root filesystem, when something materialized it.
    pub rootfs: Option<Rootfs>,
    /// Steps run.
    pub steps: usize,
}

/// Everything stages share during one build.
pub(crate) struct StageRunner<'a> {
    pub options: &'a BuildOptions,
    pub dockerfile: &'a Dockerfile,
    pub dockerfile_name: &'a str,
    pub context: &'a BuildContext,
    pub workspace: &'a Workspace,
    pub blobs: &'a BlobStore,
    pub http: reqwest::Client,
}

/// A stage in progress.
struct StageRun<'r> {
    image: ImageState,
    env: StageEnv,
    flags: StageFlags,
    rootfs: Option<Rootfs>,
    rootfs_name: String,
    results: &'r HashMap<usize, StageResult>,
    steps: usize,
}

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
    fn step_error(&self, instruction: &Instruction, message: impl std::fmt::Display) -> BuildError {
        BuildError::Step {
            file: self.dockerfile_name.to_string(),
            line: instruction.line(),
            instruction: shorten(&instruction.original),
            message: message.to_string(),
        }
    }

    /// Runs stage `index`; the stages it depends on are in `results`.
    pub async fn run(
        &self,
        index: usize,
        results: &HashMap<usize, StageResult>,
    ) -> Result<StageResult, BuildError> {
        let stage = &self.dockerfile.stages[index];
        tracing::info!(
            "stage {} ({})",
            stage.display_name(),
            base_text(&stage.base)
        );
        let platform = self.stage_platform(stage.platform.as_deref(), &stage.from)?;
        let image = match &stage.base {
            Base::Scratch => ImageState::scratch(&platform),
            Base::Stage(i) => results[i].image.clone(),
            Base::Image(r) => self.pull(r, &platform, &stage.from).await?,
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
        };
        // ONBUILD triggers of the base run first, and are not inherited.
        let triggers = run
            .image
            .container_config()
            .on_build
            .take()
            .unwrap_or_default();
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
        Ok(StageResult {
            image: run.image,
            rootfs: run.rootfs,
            steps: run.steps,
        })
    }

    fn stage_platform(
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

    async fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        from: &Instruction,
    ) -> Result<ImageState, BuildError> {
        let parsed = Reference::parse(reference).map_err(|e| self.step_error(from, e))?;
        let pulled = self
            .blobs
            .client()
            .pull_image(&parsed, platform)
            .await
            .map_err(|source| BuildError::Pull {
                reference: reference.to_string(),
                source: Box::new(source),
            })?;
        tracing::info!("base {} is {}", parsed, pulled.digest);
        let diff_ids = &pulled.config.rootfs.diff_ids;
        if diff_ids.len() != pulled.manifest.layers.len() {
            return Err(BuildError::Pull {
                reference: reference.to_string(),
                source: Box::new(kiln_oci::RegistryError::Options(format!(
                    "image config lists {} layers but the manifest {}",
                    diff_ids.len(),
                    pulled.manifest.layers.len()
                ))),
            });
        }
        let layers = pulled
            .manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| LayerRef {
                descriptor: d.clone(),
                diff_id: diff_id.clone(),
                origin: LayerOrigin::Remote(pulled.reference.clone()),
            })
            .collect();
        Ok(ImageState {
            layers,
            oci: pulled.media_type == media::OCI_MANIFEST,
            config: pulled.config,
        })
    }

    async fn step(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        run.steps += 1;
        let expanded = run
            .env
            .apply(instruction)
            .map_err(|e| self.step_error(instruction, e.message))?;
        tracing::info!(
            "step {}: {}",
            instruction.line(),
            shorten(&instruction.original)
        );
        let created = timestamp(self.options.reproducible);
        match &expanded.instruction.command {
            Command::Copy(_) | Command::Add(_) => {
                self.copy_step(run, instruction, &expanded.instruction, &created)
                    .await
            }
            Command::Workdir(w) => {
                self.workdir_step(run, instruction, &w.path, &created)
                    .await?;
                metadata::apply(
                    &mut run.image,
                    &mut run.flags,
                    &expanded.instruction.command,
                    Some(&created),
                )
                .map_err(|e| self.step_error(instruction, e))?;
                Ok(())
            }
            Command::Run(_) => Err(self.step_error(
                instruction,
                "RUN is not supported by this build of kiln yet",
            )),
            Command::From(_) => Ok(()),
            other => {
                metadata::apply(&mut run.image, &mut run.flags, other, Some(&created))
                    .map_err(|e| self.step_error(instruction, e))?;
                Ok(())
            }
        }
    }

    /// The stage's root filesystem, brought up to date with its image.
    async fn rootfs<'b>(
        &self,
        slot: &'b mut Option<Rootfs>,
        name: &str,
        image: &ImageState,
        instruction: &Instruction,
    ) -> Result<&'b Rootfs, BuildError> {
        if slot.is_none() {
            let dir = self.workspace.rootfs(name);
            *slot = Some(Rootfs::new(dir).map_err(|e| self.step_error(instruction, e))?);
        }
        let rootfs = slot.as_mut().expect("just set");
        rootfs
            .sync(image, self.blobs)
            .await
            .map_err(|e| self.step_error(instruction, e))?;
        Ok(rootfs)
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
        if path == "/" {
            return Ok(());
        }
        let rootfs = self
            .rootfs(&mut run.rootfs, &run.rootfs_name, &run.image, instruction)
            .await?;
        if rootfs.kind_of(path).is_some() {
            return Ok(());
        }
        let owner = match run
            .image
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty())
        {
            Some(user) => Some(
                Owner::resolve(
                    &user,
                    rootfs.read_text("/etc/passwd").as_deref(),
                    rootfs.read_text("/etc/group").as_deref(),
                )
                .map_err(|e| self.step_error(instruction, e))?,
            ),
            None => None,
        };
        let existing = |p: &str| rootfs.kind_of(p);
        let now = if self.options.reproducible {
            0
        } else {
            time::OffsetDateTime::now_utc().unix_timestamp()
        };
        let mut plan_entries = Vec::new();
        let mut current = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(part);
            if existing(&current).is_none() {
                plan_entries.push(copy::PlanEntry {
                    path: current.clone(),
                    kind: copy::EntryKind::Dir,
                    source: copy::EntrySource::None,
                    mode: 0o755,
                    uid: owner.as_ref().map_or(0, |o| o.uid),
                    gid: owner.as_ref().map_or(0, |o| o.gid),
                    mtime: now,
                });
            }
        }
        let plan = CopyPlan::from_entries(plan_entries);
        let layer = self.write_layer(&plan, instruction).await?;
        self.add_layer(run, instruction, layer, None, created).await
    }

    async fn copy_step(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        expanded: &Instruction,
        created: &str,
    ) -> Result<(), BuildError> {
        let (sources, dest, from, chown, chmod, parents, exclude, add, checksum) =
            match &expanded.command {
                Command::Copy(c) => (
                    &c.sources,
                    &c.dest,
                    c.from.clone(),
                    &c.chown,
                    &c.chmod,
                    c.parents,
                    &c.exclude,
                    false,
                    None,
                ),
                Command::Add(a) => (
                    &a.sources,
                    &a.dest,
                    None,
                    &a.chown,
                    &a.chmod,
                    false,
                    &a.exclude,
                    true,
                    a.checksum.clone(),
                ),
                _ => unreachable!("copy_step is only called for COPY and ADD"),
            };
        // Where sources come from: the context, or another stage's or image's root.
        let source_context: BuildContext = match &from {
            None => self.context.clone(),
            Some(name) => self.stage_or_image_root(run, instruction, name).await?,
        };
        let rootfs = self
            .rootfs(&mut run.rootfs, &run.rootfs_name, &run.image, instruction)
            .await?;
        let owner = match chown {
            Some(spec) => Some(
                Owner::resolve(
                    spec,
                    rootfs.read_text("/etc/passwd").as_deref(),
                    rootfs.read_text("/etc/group").as_deref(),
                )
                .map_err(|e| self.step_error(instruction, e))?,
            ),
            None => None,
        };
        let chmod = chmod
            .as_deref()
            .map(Chmod::parse)
            .transpose()
            .map_err(|e| self.step_error(instruction, e))?;
        let checksum = checksum
            .as_deref()
            .map(str::parse::<kiln_oci::Digest>)
            .transpose()
            .map_err(|e| self.step_error(instruction, e))?;
        let mut copy_sources = Vec::new();
        for s in sources {
            match s {
                Source::Heredoc(h) => copy_sources.push(CopySource::Heredoc {
                    name: h.name.clone(),
                    body: h.content.clone(),
                }),
                Source::Path(p) if add && classify_source(p) == SourceKind::Url => {
                    let fetched = copy::fetch_url(
                        &self.http,
                        p,
                        checksum.as_ref(),
                        &self.workspace.scratch(),
                    )
                    .await
                    .map_err(|e| self.step_error(instruction, e))?;
                    copy_sources.push(CopySource::Fetched(fetched));
                }
                Source::Path(p) => copy_sources.push(CopySource::Path(p.clone())),
            }
        }
        let mut req = CopyRequest::new(copy_sources, dest.clone());
        req.workdir = run.env.workdir().to_string();
        req.add = add;
        req.parents = parents;
        req.owner = owner;
        req.preserve_owner = from.is_some();
        req.chmod = chmod;
        req.now = if self.options.reproducible {
            0
        } else {
            time::OffsetDateTime::now_utc().unix_timestamp()
        };
        req.scratch_dir = Some(self.workspace.scratch());
        if !exclude.is_empty() {
            let ignore = kiln_dockerfile::ignore::DockerIgnore::from_patterns(exclude)
                .map_err(|e| self.step_error(instruction, e))?;
            req.exclude = Some(Arc::new(ignore));
        }
        let plan = {
            let existing = |p: &str| rootfs.kind_of(p);
            let ctx = source_context.clone();
            copy::plan_copy(&ctx, &req, &existing).map_err(|e| self.step_error(instruction, e))?
        };
        let layer = self.write_layer(&plan, instruction).await?;
        self.add_layer(run, instruction, layer, Some(&plan), created)
            .await
    }

    /// The root a `COPY --from` reads: an earlier stage (by name or index)
    /// or an image.
    async fn stage_or_image_root(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        name: &str,
    ) -> Result<BuildContext, BuildError> {
        let stages = &self.dockerfile.stages;
        let index = name
            .parse::<usize>()
            .ok()
            .filter(|i| *i < stages.len())
            .or_else(|| {
                stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(&name.to_ascii_lowercase()))
            });
        if let Some(i) = index {
            let result = run.results.get(&i).ok_or_else(|| {
                self.step_error(instruction, format!("stage {name} was not built"))
            })?;
            // Materialize the source stage's root now (its result is read-only for us).
            let dir = self.workspace.rootfs(&format!("stage-{i}-from"));
            let mut root = match &result.rootfs {
                Some(r) if r_complete(r, &result.image) => {
                    return BuildContext::from_dir(r.dir())
                        .map_err(|e| self.step_error(instruction, e))
                }
                _ => Rootfs::new(dir).map_err(|e| self.step_error(instruction, e))?,
            };
            root.sync(&result.image, self.blobs)
                .await
                .map_err(|e| self.step_error(instruction, e))?;
            let ctx =
                BuildContext::from_dir(root.dir()).map_err(|e| self.step_error(instruction, e))?;
            std::mem::forget(root);
            return Ok(ctx);
        }
        let platform = self.options.platform.clone();
        let image = self.pull(name, &platform, instruction).await?;
        let dir = self.workspace.rootfs(&format!("image-{}", sanitize(name)));
        let mut root = Rootfs::new(dir).map_err(|e| self.step_error(instruction, e))?;
        root.sync(&image, self.blobs)
            .await
            .map_err(|e| self.step_error(instruction, e))?;
        BuildContext::from_dir(root.dir()).map_err(|e| self.step_error(instruction, e))
    }

    async fn write_layer(
        &self,
        plan: &CopyPlan,
        instruction: &Instruction,
    ) -> Result<kiln_layer::LayerBlob, BuildError> {
        let opts = self.layer_options();
        let dir = self.workspace.layers();
        let plan = plan.clone();
        let result =
            tokio::task::spawn_blocking(move || -> Result<kiln_layer::LayerBlob, String> {
                let mut writer = LayerWriter::new(&dir, &opts).map_err(|e| e.to_string())?;
                copy::write_layer(&plan, &mut writer).map_err(|e| e.to_string())?;
                writer.finish().map_err(|e| e.to_string())
            })
            .await
            .expect("layer writing task panicked");
        result.map_err(|e| self.step_error(instruction, e))
    }

    fn layer_options(&self) -> LayerOptions {
        let compression = match self.options.layers.compression {
            Compression::Zstd => kiln_oci::media::Compression::Zstd,
            _ => kiln_oci::media::Compression::Gzip,
        };
        let mut opts = LayerOptions::new(compression);
        if let Some(level) = self.options.layers.level {
            opts = opts.with_level(level);
        }
        if self.options.reproducible {
            opts = opts.with_mtime(MtimePolicy::Fixed(0));
        }
        opts
    }

    async fn add_layer(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        blob: kiln_layer::LayerBlob,
        _plan: Option<&CopyPlan>,
        created: &str,
    ) -> Result<(), BuildError> {
        if blob.compression == kiln_oci::media::Compression::Zstd {
            run.image.oci = true;
        }
        let layer = LayerRef {
            descriptor: Descriptor::new(
                blob.media_type(run.image.oci),
                blob.digest.clone(),
                blob.size,
            ),
            diff_id: blob.diff_id.clone(),
            origin: LayerOrigin::Local(blob.path.clone()),
        };
        tracing::info!(
            "step {}: layer {} ({} bytes)",
            instruction.line(),
            blob.digest,
            blob.size
        );
        run.image.push_layer(
            layer,
            History {
                created: Some(created.to_string()),
                created_by: Some(shorten_history(&instruction.original)),
                comment: Some(HISTORY_COMMENT.to_string()),
                ..Default::default()
            },
        );
        // Keep a materialized root in step so later steps see the new files.
        if run.rootfs.is_some() {
            self.rootfs(&mut run.rootfs, &run.rootfs_name, &run.image, instruction)
                .await?;
        }
        Ok(())
    }
}

fn r_complete(root: &Rootfs, image: &ImageState) -> bool {
    let _ = (root, image);
    false
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
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
