//! RUN: the step's command in a sandbox (kiln-sandbox) over the stage's
//! root, and a layer of exactly what it changed.
//!
//! Lower layers: the stage's flattened [`Rootfs`](super::rootfs::Rootfs)
//! is the overlay's bottom lowerdir (namespace isolation), under the upper
//! dirs of earlier RUNs stacked on it (`engine::stacked`), or is changed in
//! place (chroot isolation). Either way it is the directory COPY lookups and
//! `COPY --from` already read, so one materialization serves every step;
//! after a RUN the new layer is applied to it like any other layer.
//!
//! Cache mounts live in `<kiln dir>/run-cache/<id>`: outside every build's
//! private directory, so they persist across builds that share the kiln
//! dir, and never in a layer. Secrets are written to the build's private
//! directory, bound read-only, and never logged or recorded in history.

use super::error::{BuildError, StepError};
use super::metadata::{self, HISTORY_COMMENT};
use super::pending::{GateSignal, LayerGate, LayerWrite, LayerWriteError, PendingLayer};
use super::signal::{SetOnDrop, Signal};
use super::stacked::StackedUpper;
use super::stage::{StageRun, StageRunner};
use super::workspace::TreesInUse;
use crate::cache::Upstream;
use crate::options::{Isolation, SecretSource};
use crate::progress::ProgressEvent;
use kiln_dockerfile::instructions::{
    CommandLine, Instruction, Mount, MountType, NetworkMode, RunCommand, Sharing,
};
use kiln_layer::resolve::{ResolveError, ResolveOptions};
use kiln_oci::History;
use kiln_sandbox::{BindFile, MountSpec, Network, RootSpec, RunSpec, StackedPath, User};
use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Lines of output kept for the error message of a failed RUN.
const TAIL_LINES: usize = 10;
/// The host name a RUN sees.
const HOSTNAME: &str = "kiln";
/// `PATH` for a RUN whose environment has none (as BuildKit).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where a heredoc script with a shebang is placed for execution.
const HEREDOC_DIR: &str = "/dev/pipes";

/// Where `RUN --mount=type=ssh` puts the agent socket without `target=`
/// (BuildKit's path).
const SSH_AGENT_TARGET: &str = "/run/buildkit/ssh_agent.0";

/// Set, for one build, once namespaces or mounts were refused to a RUN step
/// under `auto` isolation: the build's later steps go straight to chroot.
#[derive(Debug, Clone, Default)]
pub(crate) struct NamespacesRefused(Arc<AtomicBool>);

impl NamespacesRefused {
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a RUN under `isolation` is to try namespaces (an overlay
    /// root) rather than chroot.
    fn namespace_first(&self, isolation: Isolation) -> bool {
        match isolation {
            Isolation::Namespace => true,
            Isolation::Chroot => false,
            _ => !self.get(),
        }
    }
}

impl StageRunner<'_> {
    /// Runs one RUN step and records its layer (or its empty history entry).
    pub(crate) async fn run_step(
        &self,
        run: &mut StageRun<'_>,
        instruction: &Instruction,
        command: &RunCommand,
        created: &str,
    ) -> Result<(), BuildError> {
        // A foreign image's binaries need an emulator: said before the root
        // filesystem is materialized, and instead of "exec format error".
        let platform = &run.image.config;
        kiln_sandbox::binfmt::check(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        )
        .map_err(|e| self.step_error(instruction, e))?;
        // This step mounts what is stacked on the root above it; under
        // chroot it changes the root itself, so what is stacked goes in first.
        let namespace = self
            .namespaces_refused
            .namespace_first(self.options.isolation);
        let mut root = if namespace {
            self.rootfs_under_stack(run, instruction).await?
        } else {
            self.rootfs(run, instruction).await?
        }
        .dir()
        .to_path_buf();
        let dir = self
            .workspace
            .root()
            .join("run")
            .join(self.workspace.next_run_number().to_string());
        let io = |what: &str, source: std::io::Error| {
            self.step_error(
                instruction,
                StepError::Io {
                    what: what.to_string(),
                    source,
                },
            )
        };
        fs::create_dir_all(&dir).map_err(|e| io("creating the step's directory", e))?;

        let (argv, script) = argv_of(&run.image, command);
        let mut env: Vec<String> = run
            .env
            .run_env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let user_spec = run
            .image
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let resolved = match user_in_stack(&user_spec, &root, &run.stacked) {
            Some(resolved) => resolved,
            None => {
                self.fold_stacked(run, instruction).await?;
                root = self.rootfs(run, instruction).await?.dir().to_path_buf();
                resolve_user(&user_spec, &root)
            }
        };
        let (user, home) = resolved.map_err(|e| self.step_error(instruction, e))?;
        if !env.iter().any(|kv| kv.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if !env.iter().any(|kv| kv.starts_with("HOME=")) {
            env.push(format!("HOME={home}"));
        }
        let mut mounts = Vec::new();
        if let Some(body) = script {
            let scripts = dir.join("pipes");
            fs::create_dir_all(&scripts).map_err(|e| io("heredoc", e))?;
            let path = scripts.join(&body.0);
            fs::write(&path, body.1).map_err(|e| io("heredoc", e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| io("heredoc", e))?;
            mounts.push(MountSpec::Bind {
                source: scripts,
                target: HEREDOC_DIR.into(),
                read_only: true,
            });
        }
        // Stage and image roots for `--mount=type=bind,from=` and
        // `type=cache,from=`: materialized once per build and shared with
        // `COPY --from`.
        let mut bases = Vec::with_capacity(command.mounts.len());
        for m in &command.mounts {
            let base = match (m.kind, m.from.as_deref()) {
                (MountType::Bind | MountType::Cache, Some(from)) => {
                    let (root, identity) = match self.stage_index(from) {
                        Some(i) => {
                            let key = run.results.get(&i).map(|r| r.key.to_string());
                            (self.stage_root(run, instruction, i).await?, key)
                        }
                        None => {
                            let (_, digest) = self
                                .pull(from, &self.options.platform.clone(), instruction)
                                .await?;
                            let root = self.image_root(instruction, from).await?;
                            (root, Some(digest.hex().to_string()))
                        }
                    };
                    Some(MountBase {
                        root: root.root().to_path_buf(),
                        identity: identity.unwrap_or_default(),
                    })
                }
                _ => None,
            };
            bases.push(base);
        }
        let mut claims = CacheClaims::default();
        for (m, base) in command.mounts.iter().zip(&bases) {
            if let Some(spec) = self
                .mount_spec(m, base.as_ref(), &dir, &mut env, &mut claims)
                .map_err(|e| self.step_error(instruction, e))?
            {
                mounts.push(spec);
            }
        }
        let files = etc_files(&dir).map_err(|e| io("writing /etc files", e))?;
        let network = match command.network {
            Some(NetworkMode::None) => Network::None,
            Some(NetworkMode::Host) => Network::Host,
            _ => Network::Default,
        };
        let history = format!("RUN {}", argv.join(" "));
        let label = format!(
            "[{}:{}] {}",
            self.dockerfile_name,
            instruction.line(),
            short(&history)
        );
        let cwd = run.env.workdir().to_string();
        let opts = self.layer_options(run.stage.0);
        let layers_dir = self.workspace.layers();
        let isolation = (self.options.isolation, self.namespaces_refused.clone());
        let spec_parts = (argv.clone(), env, cwd, user, files, network, mounts);
        let progress = self.progress.clone();
        let step = run.step_id(instruction);
        // Earlier RUN layers may still be read from, or their shadow trees
        // removed: a step that changes the root in place must wait for them.
        let busy = self.workspace.trees_in_use();
        let defer = self.defers_layers(run.stage.0);
        let line = instruction.line();
        let log_line = move |line: &str| {
            progress.event(&ProgressEvent::RunOutput {
                step: step.clone(),
                label: label.clone(),
                line: line.to_string(),
            })
        };
        let below = Below {
            root,
            stack: std::mem::take(&mut run.stacked),
            stack_this: self.next_is_run(run, instruction),
        };
        let task = tokio::task::spawn_blocking(move || {
            // Held until the step ends: `sharing=locked` waits here for
            // every other build using the same cache id on this machine.
            let _held = claims.lock_all()?;
            execute(
                isolation,
                below,
                &dir,
                spec_parts,
                &log_line,
                (&layers_dir, &opts, defer.then_some(line)),
                &busy,
            )
        });
        let result = task.await.map_err(|source| {
            self.step_error(
                instruction,
                StepError::Task {
                    what: "RUN task",
                    source,
                },
            )
        })?;
        let (status, tail, layer, after, stacked) =
            result.map_err(|e| self.step_error(instruction, e))?;
        run.stacked = stacked;
        // The previous RUN's layer was written while this one ran; it goes
        // into the image before this step's. Deferred layers wait on (see
        // `engine::pending`) unless the root must be built from the image.
        if !defer || after == RootAfter::Broken {
            self.settle(run).await?;
        }
        if !status.success() {
            return Err(BuildError::Run {
                file: self.dockerfile_name.to_string(),
                line: instruction.line(),
                command: short(&argv.join(" ")),
                code: status.shell_code(),
                output: tail.into_iter().collect(),
            });
        }
        let history_entry = History {
            created: Some(created.to_string()),
            created_by: Some(history.clone()),
            comment: Some(HISTORY_COMMENT.to_string()),
            ..Default::default()
        };
        match layer {
            StepLayer::None => {
                tracing::debug!("step {}: no changes", instruction.line());
                self.store(run, instruction, None, history);
                run.image.push_empty(history_entry);
            }
            StepLayer::Writing(LayerWrite { result, done, gate }) => {
                // The root already holds the changes (`after` is HoldsLayer).
                self.workspace.track_busy(done);
                if let Some(gate) = &gate {
                    self.workspace.track_gate(gate.0.clone());
                }
                let before = run.pending.len();
                run.pending.push(PendingLayer {
                    result,
                    gate,
                    instruction: instruction.clone(),
                    key: run.key.clone(),
                    created: created.to_string(),
                    created_by: history,
                    at: (
                        run.image.layers.len() + before,
                        run.image.config.history.len() + before,
                    ),
                });
            }
            StepLayer::Written(blob) => {
                self.record_layer(run, instruction, &blob, created, history);
                match (after, run.rootfs.as_mut()) {
                    (RootAfter::HoldsLayer, Some(root)) => root.mark_applied(&blob.digest),
                    (RootAfter::Broken, _) => run.discard_root('r'),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// What a RUN's key depends on besides its text (which already holds
    /// every mount's options): for each bind mount, the source stage's key
    /// or the image's digest, or for the build context a digest of the
    /// bound files (paths, types, modes, contents; never mtimes). Cache,
    /// tmpfs and secret mounts add nothing: their contents are not inputs
    /// the result may depend on (BuildKit's rule too), except what seeds a
    /// cache mount with `from=`.
    pub(crate) async fn run_key_inputs(
        &self,
        run: &StageRun<'_>,
        instruction: &Instruction,
        command: &RunCommand,
    ) -> Result<Vec<Upstream>, BuildError> {
        let mut extra = Vec::new();
        // A cache seeded from a stage or image: what seeds it, as BuildKit
        // counts the mount's source among the step's inputs.
        for m in command.mounts.iter().filter(|m| m.kind == MountType::Cache) {
            let (Some(from), Some(target)) = (m.from.as_deref(), m.target.clone()) else {
                continue;
            };
            let source = match self.stage_index(from) {
                Some(i) => run
                    .results
                    .get(&i)
                    .map(|r| r.key.to_string())
                    .ok_or_else(|| {
                        self.step_error(instruction, format!("stage {i} was not built"))
                    })?,
                None => self
                    .pull(from, &self.options.platform.clone(), instruction)
                    .await?
                    .1
                    .to_string(),
            };
            let source = match &m.source {
                Some(path) => format!("{source}:{path}"),
                None => source,
            };
            extra.push(Upstream::CacheSeed { target, source });
        }
        for m in command.mounts.iter().filter(|m| m.kind == MountType::Bind) {
            let target = m.target.clone().unwrap_or_default();
            match m.from.as_deref() {
                Some(from) => match self.stage_index(from) {
                    Some(i) => {
                        let key = run.results.get(&i).map(|r| r.key.clone()).ok_or_else(|| {
                            self.step_error(instruction, format!("stage {i} was not built"))
                        })?;
                        extra.push(Upstream::MountStage { target, key });
                    }
                    None => {
                        let (_, digest) = self
                            .pull(from, &self.options.platform.clone(), instruction)
                            .await?;
                        extra.push(Upstream::MountImage { target, digest });
                    }
                },
                None => {
                    let source = m.source.clone().unwrap_or_else(|| "/".into());
                    let host = resolve_source(self.context.root(), &source, "the context")
                        .map_err(|e| self.step_error(instruction, e))?;
                    let digest = tokio::task::spawn_blocking(move || {
                        crate::cache::key::tree_digest(&host)
                            .map_err(|e| StepError::io(host.display(), e))
                    })
                    .await
                    .map_err(|e| self.step_error(instruction, e))?
                    .map_err(|e| self.step_error(instruction, e))?;
                    extra.push(Upstream::MountContext {
                        target,
                        tree: digest,
                    });
                }
            }
        }
        Ok(extra)
    }

    /// The sandbox mount for one `--mount`; `None` for an optional secret
    /// that was not given. `base` is the `from=` stage or image.
    fn mount_spec(
        &self,
        m: &Mount,
        base: Option<&MountBase>,
        dir: &Path,
        env: &mut Vec<String>,
        claims: &mut CacheClaims,
    ) -> Result<Option<MountSpec>, StepError> {
        let target = m.target.clone();
        let n = self.workspace.next_run_number();
        match m.kind {
            MountType::Cache => {
                let target = target.ok_or("a cache mount needs target=")?;
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                // Seeded from another stage or image: a cache of its own per
                // source, as BuildKit keys such a cache by its source too.
                let (claimed_id, seed) = match (base, m.from.as_deref()) {
                    (Some(base), Some(from)) => {
                        let source = m.source.clone().unwrap_or_else(|| "/".into());
                        let dir = resolve_source(&base.root, &source, from)?;
                        let short = &base.identity[..base.identity.len().min(16)];
                        (format!("{id}@{short}"), Some(dir))
                    }
                    _ => (id.clone(), None),
                };
                let cache = claims.claim(&self.options.work_dir, &claimed_id, m.sharing)?;
                if !cache.exists() {
                    match &seed {
                        Some(dir) => super::cache_seed::seed(dir, &cache).map_err(|e| {
                            StepError::io(format!("cache {id} from {}", dir.display()), e)
                        })?,
                        None => create_cache_dir(&cache, m)
                            .map_err(|e| StepError::io(format!("cache {id}"), e))?,
                    }
                }
                Ok(Some(MountSpec::Bind {
                    source: cache,
                    target,
                    read_only: m.read_only,
                }))
            }
            MountType::Tmpfs => Ok(Some(MountSpec::Tmpfs {
                target: target.ok_or("a tmpfs mount needs target=")?,
                size: m.size,
            })),
            MountType::Bind => {
                let target = target.ok_or("a bind mount needs target=")?;
                let source = m.source.clone().unwrap_or_else(|| "/".into());
                let (root, what) = match (base, m.from.as_deref()) {
                    (Some(base), Some(from)) => (base.root.as_path(), from),
                    _ => (self.context.root(), "the context"),
                };
                let host = resolve_source(root, &source, what)?;
                if m.read_only {
                    return Ok(Some(MountSpec::Bind {
                        source: host,
                        target,
                        read_only: true,
                    }));
                }
                // Writable, but the writes land in a throwaway upper dir:
                // neither the source nor the layer ever sees them.
                if !host.is_dir() {
                    // Overlay shows directories only; a private copy of a
                    // single file is just as throwaway.
                    let copy = dir.join(format!("bind-{n}.file"));
                    fs::copy(&host, &copy).map_err(|e| StepError::io(&source, e))?;
                    return Ok(Some(MountSpec::Bind {
                        source: copy,
                        target,
                        read_only: false,
                    }));
                }
                let upper = dir.join(format!("bind-{n}/upper"));
                let work = dir.join(format!("bind-{n}/work"));
                for d in [&upper, &work] {
                    fs::create_dir_all(d).map_err(|e| StepError::io(d.display(), e))?;
                }
                Ok(Some(MountSpec::Overlay {
                    lower: host,
                    upper,
                    work,
                    target,
                }))
            }
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .and_then(|t| t.rsplit('/').next())
                                .map(str::to_string)
                        })
                        .ok_or("a secret mount needs id=")?;
                let Some(secret) = self.options.secrets.iter().find(|s| s.id == id) else {
                    return if m.required {
                        Err(StepError::Message(format!(
                            "secret {id} is required but was not given (pass --secret id={id},...)"
                        )))
                    } else {
                        Ok(None)
                    };
                };
                let content = match &secret.source {
                    SecretSource::File(p) => {
                        fs::read(p).map_err(|e| StepError::io(format!("secret {id}"), e))?
                    }
                    SecretSource::Env(var) => std::env::var(var)
                        .map_err(|_| StepError::from(format!("secret {id}: {var} is not set")))?
                        .into_bytes(),
                };
                if let Some(var) = &m.env {
                    env.push(format!("{var}={}", String::from_utf8_lossy(&content)));
                    if m.target.is_none() {
                        return Ok(None);
                    }
                }
                let secrets = dir.join("secrets");
                fs::create_dir_all(&secrets).map_err(|e| StepError::io(secrets.display(), e))?;
                let file = secrets.join(format!("{n}"));
                fs::write(&file, content).map_err(|e| StepError::io(format!("secret {id}"), e))?;
                fs::set_permissions(&file, fs::Permissions::from_mode(m.mode.unwrap_or(0o400)))
                    .map_err(|e| StepError::io(format!("secret {id}"), e))?;
                chown_for_step(&file, m.uid.unwrap_or(0), m.gid.unwrap_or(0))
                    .map_err(|e| StepError::io(format!("secret {id}"), e))?;
                let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                Ok(Some(MountSpec::Bind {
                    source: file,
                    target,
                    read_only: true,
                }))
            }
            MountType::Ssh => {
                let id = m.id.clone().unwrap_or_else(|| "default".into());
                let Some(agent) = self.options.ssh.iter().find(|a| a.id == id) else {
                    return if m.required {
                        Err(StepError::Message(format!(
                            "ssh agent {id} is required but was not given (pass --ssh \
                             {id}=SOCKET, or --ssh {id} with SSH_AUTH_SOCK set)"
                        )))
                    } else {
                        Ok(None)
                    };
                };
                // The agent socket itself is bound in (BuildKit proxies it):
                // the step talks to the agent, never sees a key.
                let target = target.unwrap_or_else(|| SSH_AGENT_TARGET.into());
                env.retain(|kv| !kv.starts_with("SSH_AUTH_SOCK="));
                env.push(format!("SSH_AUTH_SOCK={target}"));
                Ok(Some(MountSpec::Bind {
                    source: agent.socket.clone(),
                    target,
                    read_only: false,
                }))
            }
            other => Err(StepError::Message(format!(
                "RUN --mount=type={} is not supported",
                other.as_str()
            ))),
        }
    }
}

/// The cache directories a step uses and the locks it must hold while it
/// runs.
///
/// Caches live in `<kiln dir>/run-cache/<id>`; lock files in
/// `<kiln dir>/run-cache-locks/<id>`, apart so that no cache id can name a
/// lock. `sharing=locked` takes an exclusive `flock` (waited for in the
/// blocking task, so the runtime is never stalled); `sharing=private` takes
/// the first of the shared directory and its private siblings
/// (`run-cache-private/<id>/<n>`) whose lock is free, without waiting, and
/// keeps it: a later build reuses whichever is free then. The kernel drops
/// the locks when the holder dies, so a killed build never wedges a cache.
#[derive(Default)]
struct CacheClaims {
    /// Lock files to take exclusively before the step (`locked`).
    wait_for: Vec<PathBuf>,
    /// Locks already held (`private`).
    held: Vec<fs::File>,
}

impl CacheClaims {
    /// The directory for cache `id` under this sharing mode.
    fn claim(
        &mut self,
        kiln_dir: &Path,
        id: &str,
        sharing: Option<Sharing>,
    ) -> Result<PathBuf, StepError> {
        let name = sanitize(id);
        let shared = kiln_dir.join("run-cache").join(&name);
        let locks = kiln_dir.join("run-cache-locks");
        // Cache contents outlive builds: private to kiln's user, whatever
        // the kiln dir's own mode.
        for top in ["run-cache", "run-cache-private", "run-cache-locks"] {
            super::workspace::make_own_private_dir(&kiln_dir.join(top))
                .map_err(|e| StepError::io(format!("cache {id}"), e))?;
        }
        match sharing.unwrap_or(Sharing::Shared) {
            Sharing::Shared => Ok(shared),
            Sharing::Locked => {
                self.wait_for.push(locks.join(&name));
                Ok(shared)
            }
            Sharing::Private => {
                for n in 0usize.. {
                    let (dir, lock) = if n == 0 {
                        (shared.clone(), locks.join(&name))
                    } else {
                        let private = format!("{name}.private-{n}");
                        let dir = kiln_dir
                            .join("run-cache-private")
                            .join(&name)
                            .join(n.to_string());
                        (dir, locks.join(private))
                    };
                    let file =
                        open_lock(&lock).map_err(|e| StepError::io(format!("cache {id}"), e))?;
                    match file.try_lock() {
                        Ok(()) => {
                            self.held.push(file);
                            return Ok(dir);
                        }
                        Err(fs::TryLockError::WouldBlock) => continue,
                        Err(fs::TryLockError::Error(e)) => {
                            return Err(StepError::io(format!("cache {id}"), e))
                        }
                    }
                }
                unreachable!("the loop returns")
            }
        }
    }

    /// Takes the `locked` caches' locks (in one order, so two steps that
    /// lock the same caches cannot deadlock) and returns every lock held.
    fn lock_all(self) -> Result<Vec<fs::File>, StepError> {
        let mut held = self.held;
        let mut wait_for = self.wait_for;
        wait_for.sort();
        wait_for.dedup();
        for path in wait_for {
            let file = open_lock(&path).map_err(|e| StepError::io(path.display(), e))?;
            file.lock()
                .map_err(|e| StepError::io(format!("locking {}", path.display()), e))?;
            held.push(file);
        }
        Ok(held)
    }
}

fn open_lock(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Makes a cache directory with the mount's `uid`, `gid` and `mode`
/// (applied only on creation, as BuildKit: the step may change them).
/// The stage or image a `from=` mount reads.
struct MountBase {
    /// Its root filesystem.
    root: PathBuf,
    /// Its identity: the stage's cache key or the image's digest (hex).
    identity: String,
}

fn create_cache_dir(cache: &Path, m: &Mount) -> std::io::Result<()> {
    fs::create_dir_all(cache)?;
    fs::set_permissions(cache, fs::Permissions::from_mode(m.mode.unwrap_or(0o755)))?;
    chown_for_step(cache, m.uid.unwrap_or(0), m.gid.unwrap_or(0))
}

/// Gives `path` the owner the step should see. Not running as root, the
/// step runs in a user namespace where the caller is root: the caller's
/// own files already look root-owned there, and other owners cannot be set.
fn chown_for_step(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if (uid, gid) == (0, 0) {
            return Ok(());
        }
        return Err(std::io::Error::other(format!(
            "owner {uid}:{gid} cannot be set when kiln does not run as root"
        )));
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

/// A bind mount's `source` inside `root` (the context, a stage's or an
/// image's root), with symlinks resolved inside it; it must exist.
fn resolve_source(root: &Path, source: &str, what: &str) -> Result<PathBuf, StepError> {
    let options = ResolveOptions::new().refuse_missing();
    match kiln_layer::resolve::in_root(root, source, options) {
        Ok(host) => Ok(host),
        Err(ResolveError::TooManyLinks { .. }) => {
            Err(format!("{source}: symlink loop in {what}").into())
        }
        Err(ResolveError::Missing { .. }) => Err(StepError::Message(format!(
            "mount source {source} not found in {what}"
        ))),
        Err(e) => Err(StepError::Message(format!(
            "mount source {source} in {what}: {e}"
        ))),
    }
}

/// What the blocking part of a RUN gives back: status, last output lines,
/// the layer, whether the root filesystem (with the upper dirs stacked on
/// it) now holds the step's changes (else it must be rebuilt before reuse),
/// and what is stacked on it now.
type Executed = (
    kiln_sandbox::ExitStatus,
    VecDeque<String>,
    StepLayer,
    RootAfter,
    Vec<StackedUpper>,
);

/// A RUN's layer.
enum StepLayer {
    /// The step changed nothing (or failed).
    None,
    /// Written before the step ended.
    Written(kiln_layer::LayerBlob),
    /// Being written on its own thread (see `engine::pending`).
    Writing(LayerWrite),
}

/// The state of the stage's root filesystem after a RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootAfter {
    /// Unchanged: the step failed or changed nothing.
    Unchanged,
    /// It holds the step's changes, exactly as applying its layer would:
    /// folded in, or stacked on it (see `engine::stacked`).
    HoldsLayer,
    /// Folding the changes in failed half way: the root must not be used.
    Broken,
}
type SpecParts = (
    Vec<String>,
    Vec<String>,
    String,
    User,
    Vec<BindFile>,
    Network,
    Vec<MountSpec>,
);

/// What lies under a RUN: the stage's root, the upper dirs stacked on it
/// (bottom first), and whether this step's changes may be stacked too
/// (the next step is a RUN of a stage whose layers are written).
struct Below {
    root: PathBuf,
    stack: Vec<StackedUpper>,
    stack_this: bool,
}

/// Runs the sandbox (falling back to chroot when namespaces are refused in
/// `auto` mode) and writes the layer.
fn execute(
    (isolation, refused): (Isolation, NamespacesRefused),
    below: Below,
    dir: &Path,
    (argv, env, cwd, user, files, network, mounts): SpecParts,
    log_line: &dyn Fn(&str),
    (layers_dir, opts, defer): (&Path, &kiln_layer::LayerOptions, Option<usize>),
    busy: &TreesInUse,
) -> Result<Executed, StepError> {
    let Below {
        root,
        stack,
        stack_this,
    } = below;
    let root = root.as_path();
    let use_namespace = refused.namespace_first(isolation);
    let build = |namespace: bool| -> Result<RunSpec, StepError> {
        let root_spec = if namespace {
            let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
            for d in [&upper, &work, &merged] {
                let _ = fs::remove_dir_all(d);
                fs::create_dir_all(d).map_err(|e| StepError::io(d.display(), e))?;
            }
            RootSpec::Overlay {
                lower: super::stacked::lowers(&stack, root),
                upper,
                work,
                merged,
            }
        } else {
            if !stack.is_empty() {
                // The caller folds the stack before a chroot step; only
                // namespaces refused after earlier steps had them get here.
                return Err(StepError::Message(
                    "namespaces were refused after earlier RUN steps of this build used them"
                        .into(),
                ));
            }
            // Under chroot the step changes the root in place, where an
            // earlier RUN's layer writer may still be reading shared files
            // or unlinking their shadow names.
            busy.wait();
            if network == Network::None {
                // A chroot has no network namespace of its own to leave
                // empty; say so rather than let the step believe it is cut off.
                tracing::warn!(
                    "RUN --network=none under chroot isolation: the step shares this machine's network"
                );
            }
            RootSpec::Dir(root.to_path_buf())
        };
        let iso = if namespace {
            kiln_sandbox::Isolation::Namespace
        } else {
            kiln_sandbox::Isolation::Chroot
        };
        let mut spec = RunSpec::new(iso, root_spec, argv.clone());
        spec.env = env.clone();
        spec.cwd = cwd.clone();
        spec.user = user.clone();
        spec.hostname = HOSTNAME.into();
        spec.files = files.clone();
        spec.network = network;
        spec.mounts = mounts.clone();
        Ok(spec)
    };
    let mut tail = VecDeque::new();
    let mut output = |line: &str| {
        log_line(line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    };
    let spec = build(use_namespace)?;
    let started = std::time::Instant::now();
    let outcome = match kiln_sandbox::run(&spec, &mut output) {
        Err(e) if e.is_denied() && use_namespace && isolation == Isolation::Auto => {
            tracing::info!("namespaces are not available ({e}); using chroot isolation");
            refused.set();
            // Where chroot is refused too, both reasons tell what is needed.
            kiln_sandbox::run(&build(false)?, &mut output).map_err(|source| StepError::Isolation {
                namespace: Box::new(e),
                source: Box::new(source),
            })
        }
        other => other.map_err(StepError::Sandbox),
    }?;
    let ran = started.elapsed();
    if !outcome.status.success() || outcome.changes.is_empty() {
        return Ok((
            outcome.status,
            tail,
            StepLayer::None,
            RootAfter::Unchanged,
            stack,
        ));
    }
    // The next RUN reads these changes stacked over the root, and the layer
    // is written from the upper dir itself: no shadow to make or remove.
    let stackable = stack_this
        && defer.is_none()
        && (outcome.changes.upper_dir()).is_some_and(|u| super::stacked::has_room(&stack, root, u));
    if stackable {
        match outcome.changes.remove_sandbox_paths() {
            Ok(()) => {
                let changes = outcome.changes;
                let write = write_in_background(changes.clone(), None, layers_dir, opts, None)?;
                let mut stack = stack;
                stack.push(StackedUpper {
                    changes,
                    written: write.done.clone(),
                });
                tracing::debug!(
                    "RUN phases: command {:.2}s, changes stacked for the next RUN ({} deep)",
                    ran.as_secs_f64(),
                    stack.len()
                );
                return Ok((
                    outcome.status,
                    tail,
                    StepLayer::Writing(write),
                    RootAfter::HoldsLayer,
                    stack,
                ));
            }
            Err(e) => tracing::debug!("folding the step's changes in: {e}"),
        }
    }
    // The layer is written from a detached shadow of the changes on its own
    // thread when that can be made, else here before the root takes them.
    // Either way the root takes them over (moved, not unpacked from the
    // layer), so the next step starts without unpacking anything; what was
    // stacked goes in first.
    let shadow = dir.join("shadow");
    let detached = outcome.changes.detach(&shadow).unwrap_or_else(|e| {
        tracing::debug!("writing the layer before the next step: {e}");
        let _ = fs::remove_dir_all(&shadow);
        None
    });
    let fold_in = |stack: Vec<StackedUpper>| match super::stacked::fold(stack, root) {
        Ok(()) => absorb(&outcome.changes, root),
        Err(_) => RootAfter::Broken,
    };
    let (layer, layered, after) = match detached {
        None => {
            let blob = write_now(&outcome.changes, layers_dir, opts)?;
            let layered = started.elapsed();
            (StepLayer::Written(blob), layered, fold_in(stack))
        }
        Some(detached) => {
            let layered = started.elapsed();
            // Written (in a stage that defers its layers: waiting at its
            // gate) while the stack's writers finish and it is folded in.
            let mut write = write_in_background(detached, Some(shadow), layers_dir, opts, defer)?;
            let after = fold_in(stack);
            let layer = if after == RootAfter::HoldsLayer {
                StepLayer::Writing(write)
            } else {
                // The root is to be rebuilt from the image's layers: this
                // one must be in the list before that. The writer has sent
                // its result once it is done.
                if let Some(gate) = &write.gate {
                    gate.open();
                }
                write.done.wait();
                let blob = write
                    .result
                    .try_recv()
                    .map_err(|_| LayerWriteError::Vanished)?;
                StepLayer::Written(blob?)
            };
            (layer, layered, after)
        }
    };
    let absorbed = started.elapsed();
    if let Some(upper) = outcome.changes.upper_dir() {
        let _ = fs::remove_dir_all(upper);
    }
    // Where a RUN's time goes, for --verbosity=debug and the benchmark.
    tracing::debug!(
        "RUN phases: command {:.2}s, layer or its shadow {:.2}s, into the root {:.2}s, cleanup {:.2}s",
        ran.as_secs_f64(),
        (layered - ran).as_secs_f64(),
        (absorbed - layered).as_secs_f64(),
        (started.elapsed() - absorbed).as_secs_f64()
    );
    Ok((outcome.status, tail, layer, after, Vec::new()))
}

/// Folds the step's changes into `root`; a root left half changed must be
/// rebuilt before it is used again.
fn absorb(changes: &kiln_sandbox::Changes, root: &Path) -> RootAfter {
    match changes.absorb_into(root) {
        Ok(()) => RootAfter::HoldsLayer,
        Err(e) => {
            tracing::warn!(
                "folding the step's changes into its root failed ({e}); it will be rebuilt"
            );
            RootAfter::Broken
        }
    }
}

/// Writes the layer of changes known not to be empty.
fn write_now(
    changes: &kiln_sandbox::Changes,
    layers_dir: &Path,
    opts: &kiln_layer::LayerOptions,
) -> Result<kiln_layer::LayerBlob, LayerWriteError> {
    changes
        .write_layer(layers_dir, opts)
        .map_err(LayerWriteError::Sandbox)?
        .ok_or(LayerWriteError::Vanished)
}

/// Starts writing the layer of `changes` on its own thread: a shadow tree
/// at `shadow`, removed once the layer is handed over, or an upper dir
/// stacked under the next RUN (`None`), left where it is. When deferred
/// (`defer` names the step's line), the thread waits for its gate first and
/// drops the changes unwritten when the gate closes.
fn write_in_background(
    changes: kiln_sandbox::Changes,
    shadow: Option<PathBuf>,
    layers_dir: &Path,
    opts: &kiln_layer::LayerOptions,
    defer: Option<usize>,
) -> Result<LayerWrite, StepError> {
    let (tx, result) = tokio::sync::oneshot::channel();
    let done = std::sync::Arc::new(Signal::default());
    let gate = defer.map(|_| Arc::new(GateSignal::default()));
    let (written, layers_dir, opts) = (done.clone(), layers_dir.to_path_buf(), opts.clone());
    let wait = gate.clone();
    std::thread::Builder::new()
        .name("run-layer".into())
        .spawn(move || {
            // Set however the thread ends: the workspace waits for it.
            let _done = SetOnDrop(written);
            if wait.is_some_and(|gate| !gate.wait()) {
                let line = defer.unwrap_or_default();
                tracing::debug!("step {line}: layer not written: no one asked for it");
                if let Some(shadow) = shadow {
                    super::workspace::remove_bulk(vec![shadow]);
                }
                return;
            }
            let blob = write_now(&changes, &layers_dir, &opts);
            // The build goes on with the layer while its shadow is removed
            // (on several threads: a big step's shadow has 100,000s of names).
            let _ = tx.send(blob);
            if let Some(shadow) = shadow {
                super::workspace::remove_bulk(vec![shadow]);
            }
        })
        .map_err(|e| StepError::io("starting the layer writer", e))?;
    Ok(LayerWrite {
        result,
        done,
        gate: gate.map(LayerGate),
    })
}

/// The argv of a RUN, and for a heredoc script with a shebang, the file to
/// place under [`HEREDOC_DIR`] (name, body).
///
/// As BuildKit: `RUN <<EOF` alone runs the body as a script, through the
/// image's shell, or, when it starts with `#!`, as an executable file;
/// any other command with heredocs goes to the shell with the bodies
/// appended, so the shell itself feeds them.
fn argv_of(
    image: &super::image::ImageState,
    command: &RunCommand,
) -> (Vec<String>, Option<(String, String)>) {
    let CommandLine::Shell(line) = &command.command else {
        return (metadata::command_argv(image, &command.command), None);
    };
    if command.heredocs.is_empty() {
        return (metadata::command_argv(image, &command.command), None);
    }
    let only = command.heredocs.len() == 1 && is_bare_heredoc(line, &command.heredocs[0].name);
    if only {
        let body = command.heredocs[0].content.clone();
        if body.starts_with("#!") {
            let name = command.heredocs[0].name.clone();
            return (vec![format!("{HEREDOC_DIR}/{name}")], Some((name, body)));
        }
        let mut argv = metadata::shell_of(image);
        argv.push(body);
        return (argv, None);
    }
    let mut script = line.clone();
    for h in &command.heredocs {
        script.push('\n');
        script.push_str(&h.content);
        script.push_str(&h.name);
    }
    let mut argv = metadata::shell_of(image);
    argv.push(script);
    (argv, None)
}

/// True when the command line is just `<<NAME` (`<<-NAME`, quoted or not).
fn is_bare_heredoc(line: &str, name: &str) -> bool {
    let word = line.trim();
    let Some(rest) = word.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    rest.trim_matches(|c| c == '"' || c == '\'') == name
}

/// The `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` a RUN sees.
fn etc_files(dir: &Path) -> std::io::Result<Vec<BindFile>> {
    let etc = dir.join("etc");
    fs::create_dir_all(&etc)?;
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_else(|_| b"nameserver 8.8.8.8\n".to_vec());
    let files = [
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
                .into_bytes(),
        ),
        ("resolv.conf", resolv),
        ("hostname", format!("{HOSTNAME}\n").into_bytes()),
    ];
    let mut out = Vec::new();
    for (name, content) in files {
        let path = etc.join(name);
        fs::write(&path, content)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        out.push(BindFile {
            source: path,
            target: format!("/etc/{name}"),
        });
    }
    Ok(out)
}

/// [`resolve_user`] in the view of the upper dirs `stacked` on `root`:
/// `/etc/passwd` and `/etc/group` are read from the layer that holds them.
/// `None` when one cannot be found without the stack folded in (a symlink
/// on the way).
fn user_in_stack(
    spec: &str,
    root: &Path,
    stacked: &[StackedUpper],
) -> Option<Result<(User, String), StepError>> {
    if stacked.is_empty() {
        return Some(resolve_user(spec, root));
    }
    let uppers: Vec<&Path> = stacked.iter().rev().map(StackedUpper::upper).collect();
    let holder = |path: &str| match kiln_sandbox::find_in_stack(&uppers, root, Path::new(path)) {
        StackedPath::Upper(i) => Some(Some(uppers[i])),
        StackedPath::Root => Some(Some(root)),
        StackedPath::Absent => Some(None),
        StackedPath::Unresolved => None,
    };
    let (passwd, group) = (holder("etc/passwd")?, holder("etc/group")?);
    let read = |p: &str| {
        let dir = if p == "/etc/passwd" { passwd } else { group };
        dir.map_or(Ok(None), |dir| {
            super::image_text::read_image_text(dir, p).map_err(StepError::from)
        })
    };
    Some(user_from(spec, &read))
}

/// `USER` as ids: a name or id for the user, optionally `:group`; the
/// supplementary groups from `/etc/group` when no group is given; and the
/// user's home for `HOME` (`/` when unknown).
fn resolve_user(spec: &str, root: &Path) -> Result<(User, String), StepError> {
    let read = |p: &str| super::image_text::read_image_text(root, p).map_err(StepError::from);
    user_from(spec, &read)
}

/// [`resolve_user`] with `/etc/passwd` and `/etc/group` read by `read`.
fn user_from(
    spec: &str,
    read: &dyn Fn(&str) -> Result<Option<String>, StepError>,
) -> Result<(User, String), StepError> {
    let passwd = read("/etc/passwd")?.unwrap_or_default();
    let group = read("/etc/group")?.unwrap_or_default();
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // No USER at all means uid 0 even without /etc/passwd (a `FROM scratch`
    // stage), as BuildKit does; a name given by USER must exist.
    let unset = u.is_empty();
    let u = if unset { "root" } else { u };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && (f[0] == u || f[2] == u));
    let (uid, mut gid, name, home) = match (&entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("bad uid for user {u} in /etc/passwd"))?,
            f[3].parse::<u32>().unwrap_or(0),
            Some(f[0].to_string()),
            f[5].to_string(),
        ),
        (None, Ok(id)) => (id, 0, None, "/".to_string()),
        (None, Err(_)) if unset => (0, 0, None, "/".to_string()),
        (None, Err(_)) => {
            return Err(StepError::Message(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    };
    let mut groups = Vec::new();
    match g {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(id) => id,
                Err(_) => group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?,
            };
        }
        _ => {
            if let Some(name) = &name {
                for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
                    if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                        if let Ok(id) = f[2].parse::<u32>() {
                            if id != gid && !groups.contains(&id) {
                                groups.push(id);
                            }
                        }
                    }
                }
            }
        }
    }
    groups.insert(0, gid);
    Ok((
        User { uid, gid, groups },
        if home.is_empty() { "/".into() } else { home },
    ))
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn short(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        one.chars().take(77).collect::<String>() + "..."
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_source_resolves_inside_its_root_and_must_exist() {
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(outside.path().join("secrets")).unwrap();
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("out")).unwrap();
        // A hostile stage: links that name the host's directories.
        std::os::unix::fs::symlink(outside.path().join("secrets"), r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../out", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/loop", r.join("loop")).unwrap();
        assert_eq!(resolve_source(r, "/up", "stage").unwrap(), r.join("out"));
        let message = |e: StepError| match e {
            StepError::Message(m) => m,
            other => panic!("{other:?}"),
        };
        // The host directory the link names is not the one bound.
        assert_eq!(
            message(resolve_source(r, "/abs", "stage").unwrap_err()),
            "mount source /abs not found in stage"
        );
        fs::create_dir_all(
            r.join(outside.path().strip_prefix("/").unwrap())
                .join("secrets"),
        )
        .unwrap();
        assert!(resolve_source(r, "/abs", "stage").unwrap().starts_with(r));
        assert_eq!(
            message(resolve_source(r, "/none/../out", "stage").unwrap_err()),
            "mount source /none/../out not found in stage"
        );
        assert_eq!(
            message(resolve_source(r, "/loop", "stage").unwrap_err()),
            "/loop: symlink loop in stage"
        );
    }

    #[test]
    fn users_resolve_through_passwd_and_group() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("etc")).unwrap();
        fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:app\napp:x:1000:\n",
        )
        .unwrap();
        let (u, home) = resolve_user("app", t.path()).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups.clone(), home.as_str()),
            (1000, 1000, vec![1000, 50], "/home/app")
        );
        let (u, _) = resolve_user("1000:staff", t.path()).unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1000, 50, vec![50]));
        let (u, home) = resolve_user("4242", t.path()).unwrap();
        assert_eq!((u.uid, u.gid, home.as_str()), (4242, 0, "/"));
        assert!(resolve_user("nobody", t.path()).is_err());
    }

    #[test]
    fn without_passwd_no_user_is_root_and_a_named_user_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let (u, home) = resolve_user("", t.path()).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups, home.as_str()),
            (0, 0, vec![0], "/")
        );
        let (u, _) = resolve_user("0:0", t.path()).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        let e = resolve_user("app", t.path()).unwrap_err();
        assert!(e.to_string().contains("unable to find user app"), "{e}");
    }

    #[test]
    fn bare_heredocs_are_recognised() {
        assert!(is_bare_heredoc("<<EOF", "EOF"));
        assert!(is_bare_heredoc(" <<-'EOF' ", "EOF"));
        assert!(!is_bare_heredoc("<<EOF bash", "EOF"));
    }
}
