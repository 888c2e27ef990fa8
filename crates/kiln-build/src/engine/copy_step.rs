//! COPY and ADD in two halves. `prepare` resolves everything that does not
//! need the image's filesystem (sources, flags, URL downloads, where
//! `--from` points), so the step's cache key can be computed and looked up
//! before anything is downloaded; `execute` runs only on a cache miss and
//! materializes what it needs (the stage's root for destination lookups
//! and `--chown` names, the `--from` stage's or image's root).

use super::error::{BuildError, GitSourceError, StepError};
use super::listing::TEXT_FILES;
use super::rootfs::Rootfs;
use super::stage::{ImageView, StageRun, StageRunner};
use super::through_links::through_image_links;
use crate::cache::Upstream;
use crate::context::BuildContext;
use crate::copy::{
    self, classify_source, Chmod, CopyRequest, CopySource, GitSource, Owner, SourceKind,
};
use kiln_dockerfile::instructions::{Command, Instruction, Source};
use kiln_oci::Digest;
use std::path::PathBuf;
use std::sync::Arc;

/// What `ADD --checksum` pins.
enum AddChecksum {
    None,
    /// The sha256 (or other digest) of a downloaded URL.
    Digest(Digest),
    /// The commit a git source must resolve to.
    Commit(String),
}

/// Where a COPY reads from.
pub(crate) enum CopyFrom {
    /// The build context.
    Context,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image, by reference.
    Image(String),
}

/// A COPY/ADD with its sources resolved but nothing materialized.
pub(crate) struct PreparedCopy {
    from: CopyFrom,
    /// The request; `owner` is filled in by `execute`.
    req: CopyRequest,
    chown: Option<String>,
}

impl StageRunner<'_> {
    /// Resolves a COPY/ADD's sources and flags. ADD URLs are downloaded here
    /// (their content is part of the step's key).
    pub(crate) async fn prepare_copy(
        &self,
        run: &StageRun<'_>,
        instruction: &Instruction,
        expanded: &Instruction,
    ) -> Result<PreparedCopy, BuildError> {
        let (sources, dest, from, chown, chmod, parents, exclude, add, checksum, keep_git_dir) =
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
                    false,
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
                    a.keep_git_dir,
                ),
                _ => unreachable!("prepare_copy is only called for COPY and ADD"),
            };
        let chmod = chmod
            .as_deref()
            .map(Chmod::parse)
            .transpose()
            .map_err(|e| self.step_error(instruction, e))?;
        // `--checksum` is a commit id for git sources, a digest for URLs.
        let is_git = |s: &Source| matches!(s, Source::Path(p) if add && classify_source(p) == SourceKind::Git);
        let checksum = match checksum {
            Some(sum) if sources.iter().any(is_git) => {
                if !kiln_source::spec::is_commit_id(&sum) {
                    return Err(self.step_error(
                        instruction,
                        format!("--checksum={sum}: a git source is checked against a commit id (40 hex digits)"),
                    ));
                }
                AddChecksum::Commit(sum.to_ascii_lowercase())
            }
            Some(sum) => AddChecksum::Digest(
                sum.parse::<Digest>()
                    .map_err(|e| self.step_error(instruction, e))?,
            ),
            None => AddChecksum::None,
        };
        let mut copy_sources = Vec::new();
        for s in sources {
            match s {
                Source::Heredoc(h) => copy_sources.push(CopySource::Heredoc {
                    name: h.name.clone(),
                    body: h.content.clone(),
                }),
                Source::Path(p) if is_git(s) => {
                    let source = self
                        .checkout_git(p, keep_git_dir, &checksum)
                        .await
                        .map_err(|e| self.step_error(instruction, e))?;
                    copy_sources.push(CopySource::Git(source));
                }
                Source::Path(p) if add && classify_source(p) == SourceKind::Url => {
                    let digest = match &checksum {
                        AddChecksum::Digest(d) => Some(d),
                        _ => None,
                    };
                    let fetched = self
                        .http
                        .fetch(p, digest, &self.workspace.scratch())
                        .await
                        .map_err(|e| self.step_error(instruction, e))?;
                    self.record.download(p, &fetched.digest);
                    copy_sources.push(CopySource::Fetched(fetched));
                }
                Source::Path(p) => copy_sources.push(CopySource::Path(p.clone())),
            }
        }
        let mut req = CopyRequest::new(copy_sources, dest.clone());
        req.workdir = run.env.workdir().to_string();
        req.add = add;
        req.parents = parents;
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
        let from = match from {
            None => CopyFrom::Context,
            Some(name) => match self.stage_index(&name) {
                Some(i) => CopyFrom::Stage(i),
                None => CopyFrom::Image(name),
            },
        };
        Ok(PreparedCopy {
            from,
            req,
            chown: chown.clone(),
        })
    }

    /// Clones an ADD git source into the build's scratch directory and
    /// records it as a material. The error names the source.
    async fn checkout_git(
        &self,
        src: &str,
        keep_git_dir: bool,
        checksum: &AddChecksum,
    ) -> Result<GitSource, StepError> {
        let shown = kiln_source::spec::redact(src);
        let fail = |reason: GitSourceError| StepError::GitSource {
            source_name: shown.clone(),
            source: reason,
        };
        let spec = kiln_source::git_source::parse_source(src)
            .map_err(|e| fail(GitSourceError::Checkout(e)))?;
        let scratch = self.workspace.scratch();
        std::fs::create_dir_all(&scratch).map_err(|e| fail(GitSourceError::Scratch(e)))?;
        let dest = tempfile::Builder::new()
            .prefix("git-")
            .tempdir_in(&scratch)
            .map_err(|e| fail(GitSourceError::Scratch(e)))?
            .keep()
            .join("checkout");
        let env = kiln_source::Env::from_process();
        let started = std::time::Instant::now();
        let checkout = tokio::task::spawn_blocking(move || {
            kiln_source::git_source::checkout(&spec, keep_git_dir, &env, &dest)
        })
        .await
        .map_err(|e| fail(GitSourceError::Task(e)))?
        .map_err(|e| fail(GitSourceError::Checkout(e)))?;
        if let AddChecksum::Commit(expected) = checksum {
            if *expected != checkout.commit {
                return Err(fail(GitSourceError::ChecksumMismatch {
                    expected: expected.clone(),
                    commit: checkout.commit,
                }));
            }
        }
        tracing::info!(
            "checked out {shown} at {} in {:.1}s",
            checkout.commit,
            started.elapsed().as_secs_f64()
        );
        self.record.git(&shown, &checkout.commit);
        Ok(GitSource {
            url: shown,
            root: checkout.root,
            commit: checkout.commit,
            // BuildKit gives git files their commit's time when the build
            // is to be reproducible, the checkout's otherwise.
            mtime: self.options.reproducible.then_some(checkout.commit_time),
        })
    }

    /// What the step's key depends on besides the expanded instruction: the
    /// digest of the files it copies (paths, types, modes, contents; never
    /// mtimes) for context sources, or the source stage's key or image
    /// digest for `--from`. A git source counts by its commit, not its
    /// files: a kept `.git` directory differs between two clones of one
    /// commit.
    pub(crate) async fn copy_key_inputs(
        &self,
        run: &StageRun<'_>,
        instruction: &Instruction,
        prepared: &PreparedCopy,
    ) -> Result<(Option<Digest>, Vec<Upstream>), BuildError> {
        match &prepared.from {
            CopyFrom::Context => {
                // The plan made without the image's answers names the same
                // files; what the image changes about the result (existing
                // directories, owners) is fixed by the parent key.
                let mut req = prepared.req.clone();
                let mut upstream = Vec::new();
                req.sources.retain(|s| match s {
                    CopySource::Git(g) => {
                        upstream.push(Upstream::GitCommit {
                            source: g.url.clone(),
                            commit: g.commit.clone(),
                        });
                        false
                    }
                    _ => true,
                });
                let plan = copy::plan_copy(self.context, &req, &|_| None)
                    .map_err(|e| self.step_error(instruction, e))?;
                let digest = plan
                    .inputs_digest()
                    .map_err(|e| self.step_error(instruction, e))?;
                Ok((Some(digest), upstream))
            }
            CopyFrom::Stage(i) => {
                let key = run.results.get(i).map(|r| r.key.clone()).ok_or_else(|| {
                    self.step_error(instruction, format!("stage {i} was not built"))
                })?;
                Ok((None, vec![Upstream::CopyFromStage(key)]))
            }
            CopyFrom::Image(name) => {
                let (_, digest) = self
                    .pull(name, &self.options.platform.clone(), instruction)
                    .await?;
                Ok((None, vec![Upstream::CopyFromImage(digest)]))
            }
        }
    }

    /// Runs a prepared COPY/ADD: plans it against the image and writes its layer.
    pub(crate) async fn execute_copy(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        prepared: PreparedCopy,
        created: &str,
    ) -> Result<(), BuildError> {
        let source = match &prepared.from {
            CopyFrom::Context => self.context.clone(),
            CopyFrom::Stage(i) => self.stage_root(run, instruction, *i).await?,
            CopyFrom::Image(name) => self.image_root(instruction, name).await?,
        };
        let rootfs = self.image_view(run, instruction).await?;
        let mut wanted = vec![prepared.req.dest_path()];
        if prepared.chown.is_some() {
            wanted.extend(TEXT_FILES.map(String::from));
        }
        // Each run plans from the request as prepared: the owner and the
        // destination it fills in depend on what the image answered.
        let plan = self
            .decide(&rootfs, instruction, &wanted, || {
                let mut req = prepared.req.clone();
                let chown = prepared.chown.as_deref();
                self.plan_against(instruction, &rootfs, chown, &mut req, &source)
            })
            .await??;
        // A root that is there already takes the layer as it is written, so
        // the next RUN need not read it back. Not while a RUN's layer is
        // still read from its hard links into the root, nor when the
        // stream goes to the SBOM's scan.
        let into_root = match &rootfs {
            ImageView::Root(root)
                if run.pending.is_empty() && self.scan_tap(run.stage.0).is_none() =>
            {
                Some(root.dir().to_path_buf())
            }
            _ => None,
        };
        let Some(root) = into_root else {
            let layer = self.write_layer(run.stage.0, &plan, instruction).await?;
            return self.add_layer(run, instruction, layer, created).await;
        };
        let (layer, applied) = self
            .write_layer_into_root(run.stage.0, &plan, instruction, root)
            .await?;
        let digest = layer.digest.clone();
        self.add_layer(run, instruction, layer, created).await?;
        match run.rootfs.as_mut() {
            Some(root) if applied => root.mark_applied(&digest),
            _ => {
                // Part of the layer may be in the root.
                run.discard_root('c');
            }
        }
        Ok(())
    }

    /// The COPY's plan against the image below: its `--chown` owner read
    /// from the image's own files, its destination through the image's
    /// links, each path's kind in the image. Asks the image only through
    /// `rootfs`, so that [`StageRunner::decide`] can run it again.
    fn plan_against(
        &self,
        instruction: &Instruction,
        rootfs: &ImageView,
        chown: Option<&str>,
        req: &mut copy::CopyRequest,
        source: &BuildContext,
    ) -> Result<copy::CopyPlan, BuildError> {
        if let Some(spec) = chown {
            let read = |p: &str| {
                rootfs
                    .read_text(p)
                    .map_err(|e| self.step_error(instruction, e))
            };
            let (passwd, group) = (read("/etc/passwd")?, read("/etc/group")?);
            let owner = Owner::resolve(spec, passwd.as_deref(), group.as_deref())
                .map_err(|e| self.step_error(instruction, e))?;
            req.owner = Some(owner);
        }
        req.follow_dest_symlinks(|p| rootfs.resolve(p));
        let plan = copy::plan_copy(source, req, &|p: &str| rootfs.kind_of(p))
            .map_err(|e| self.step_error(instruction, e))?;
        // ADD keeps an archive's own structure, as BuildKit unpacks it: a
        // directory entry replaces a link the image has at that path.
        Ok(if req.add {
            plan
        } else {
            through_image_links(
                plan,
                |p| rootfs.resolve(p),
                |p| rootfs.kind_of(p) == Some(copy::FileKind::Dir),
            )
        })
    }

    /// The index of the stage `name` refers to (a stage name or a number).
    pub(crate) fn stage_index(&self, name: &str) -> Option<usize> {
        let stages = &self.dockerfile.stages;
        name.parse::<usize>()
            .ok()
            .filter(|i| *i < stages.len())
            .or_else(|| {
                let lower = name.to_ascii_lowercase();
                stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lower.as_str()))
            })
    }

    /// An earlier stage's root filesystem, materialized once per build.
    pub(crate) async fn stage_root(
        &self,
        run: &StageRun<'_>,
        instruction: &Instruction,
        index: usize,
    ) -> Result<BuildContext, BuildError> {
        let result = run
            .results
            .get(&index)
            .ok_or_else(|| self.step_error(instruction, format!("stage {index} was not built")))?;
        if let Some(root) = result.rootfs.as_ref().filter(|r| r.holds(&result.image)) {
            return BuildContext::from_dir(root.dir()).map_err(|e| self.step_error(instruction, e));
        }
        let dir = self
            .materialize_once(format!("from-stage-{index}"), &result.image, instruction)
            .await?;
        BuildContext::from_dir(&dir).map_err(|e| self.step_error(instruction, e))
    }

    /// An image's root filesystem, materialized once per build.
    pub(crate) async fn image_root(
        &self,
        instruction: &Instruction,
        name: &str,
    ) -> Result<BuildContext, BuildError> {
        let (image, digest) = self
            .pull(name, &self.options.platform.clone(), instruction)
            .await?;
        let dir = self
            .materialize_once(format!("from-image-{}", digest.hex()), &image, instruction)
            .await?;
        BuildContext::from_dir(&dir).map_err(|e| self.step_error(instruction, e))
    }

    async fn materialize_once(
        &self,
        name: String,
        image: &super::image::ImageState,
        instruction: &Instruction,
    ) -> Result<PathBuf, BuildError> {
        if let Some(dir) = self.from_roots.lock().expect("from_roots lock").get(&name) {
            return Ok(dir.clone());
        }
        let mut root = Rootfs::new(self.workspace.rootfs(&name))
            .map_err(|e| self.step_error(instruction, e))?;
        self.sync_root(&mut root, image, None)
            .await
            .map_err(|e| self.step_error(instruction, e))?;
        let dir = root.dir().to_path_buf();
        self.from_roots
            .lock()
            .expect("from_roots lock")
            .insert(name, dir.clone());
        Ok(dir)
    }
}
