//! Later stages' bases, unpacked while the first level of stages runs.
//!
//! A stage of plan level 1 or more starts only once the stages it reads
//! from are done; if it has a RUN, it then unpacks its base before the RUN
//! can start. That unpacking needs nothing from the earlier stages, so it
//! starts with the build, in the background (at most
//! [`AT_ONCE`] at a time, the earliest levels first), into a directory of
//! the stage's own. The stage takes the root the first time it needs one
//! (`StageRunner::rootfs`, `StageRunner::image_view`) if its base resolved
//! to the same digest, and discards it otherwise.
//!
//! A prefetch never fails the build: the stage pulls its base and
//! materializes its root itself as it always has, and its own error
//! names the step. It is off with the layer cache (a cached stage may
//! never need its root, and a warm build downloads no layer), with
//! `--sbom` (the scan reads each base layer as the stage's unpack streams
//! it) and with `--prefetch-bases=false`.

use super::error::BuildError;
use super::rootfs::{Rootfs, RootfsError};
use super::stage::StageRunner;
use super::workspace::Workspace;
use kiln_dockerfile::instructions::Command;
use kiln_dockerfile::plan::Base;
use kiln_oci::{Digest, Reference};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Bases unpacked at the same time: the level-0 stages need the disk and
/// the cores too.
pub(crate) const AT_ONCE: usize = 2;

/// A base root unpacked ahead of its stage.
pub(crate) struct Prepared {
    /// The base's manifest digest.
    digest: Digest,
    root: Rootfs,
}

/// Why a prefetch gave up (logged; the stage does the work itself).
#[derive(Debug, thiserror::Error)]
enum PrefetchError {
    #[error("{0}")]
    Pull(BuildError),
    #[error("{0}")]
    Unpack(RootfsError),
    #[error("the build ended first")]
    Cancelled,
}

type Task = JoinHandle<Result<Prepared, PrefetchError>>;

/// The prefetches of one build, by stage index.
pub(crate) struct Prefetches {
    tasks: Mutex<HashMap<usize, Task>>,
    /// Closed when the build ends: a prefetch still waiting for its turn
    /// gives up, one past its pull does not start unpacking.
    turns: Arc<Semaphore>,
}

impl Default for Prefetches {
    fn default() -> Self {
        Prefetches {
            tasks: Mutex::default(),
            turns: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }
}

/// A stage's claim on its prefetched root, made when its own pull
/// resolved the base to `digest`.
pub(crate) struct Claim {
    task: Task,
    digest: Digest,
}

impl Prefetches {
    /// Stage `index`'s prefetch, if one was started; the stage's base
    /// resolved to `digest`.
    pub(crate) fn claim(&self, index: usize, digest: &Digest) -> Option<Claim> {
        let task = self.lock().remove(&index)?;
        Some(Claim {
            task,
            digest: digest.clone(),
        })
    }

    /// Stops the prefetches no stage claimed and waits for them to let go
    /// of the workspace: before it is removed.
    pub(crate) async fn finish(&self) {
        self.turns.close();
        let tasks: Vec<Task> = self.lock().drain().map(|(_, t)| t).collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Task>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Claim {
    /// The prefetched root, once it is ready, if it holds the base the
    /// stage resolved; else `None` (the root is discarded) and the stage
    /// materializes its own.
    pub(crate) async fn root(self, workspace: &Workspace, stage: usize) -> Option<Rootfs> {
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::debug!("stage {stage}: base prefetch stopped: {e}");
                return None;
            }
        };
        match outcome {
            Ok(prepared) if prepared.digest == self.digest => Some(prepared.root),
            Ok(prepared) => {
                tracing::debug!(
                    "stage {stage}: the prefetched base is {}, the stage's {}; unpacking again",
                    prepared.digest,
                    self.digest
                );
                workspace.remove_in_background(vec![prepared.root.dir().to_path_buf()]);
                None
            }
            Err(e) => {
                tracing::debug!("stage {stage}: base prefetch failed: {e}");
                workspace.remove_in_background(vec![prefetch_dir(workspace, stage)]);
                None
            }
        }
    }
}

/// Where stage `index`'s base is prefetched: named so that the stage's
/// roots are released with it (`Workspace::stage_roots`).
fn prefetch_dir(workspace: &Workspace, index: usize) -> std::path::PathBuf {
    workspace.rootfs(&format!("stage-{index}-prefetch"))
}

impl StageRunner<'_> {
    /// Starts unpacking the base of every stage after the first level
    /// whose base is a registry image and which has a RUN (only then is
    /// its root needed), when prefetching is on.
    pub(crate) fn start_prefetches(&self) {
        let options = self.options;
        if !options.prefetch_bases || options.cache.enabled || options.output.attest.wants_sbom() {
            return;
        }
        let plan = &self.dockerfile.plan;
        for &index in plan.levels.iter().skip(1).flatten() {
            let stage = &self.dockerfile.stages[index];
            let Base::Image(reference) = &stage.base else {
                continue;
            };
            let runs = stage
                .instructions
                .iter()
                .any(|i| matches!(i.command, Command::Run(_)));
            if !runs {
                continue;
            }
            // A reference or platform the stage cannot use either: the
            // stage reports it.
            let (Ok(parsed), Ok(platform)) = (
                Reference::parse(reference),
                self.stage_platform(stage.platform.as_deref(), &stage.from),
            ) else {
                continue;
            };
            let dir = prefetch_dir(self.workspace, index);
            let (blobs, turns) = (self.blobs.clone(), self.prefetches.turns.clone());
            let reference = reference.clone();
            let task = tokio::spawn(async move {
                let _turn = turns
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| PrefetchError::Cancelled)?;
                let (image, digest) =
                    super::base::pull(blobs.client(), &reference, &parsed, &platform)
                        .await
                        .map_err(PrefetchError::Pull)?;
                if turns.is_closed() {
                    return Err(PrefetchError::Cancelled);
                }
                let started = std::time::Instant::now();
                let mut root = Rootfs::new(dir).map_err(PrefetchError::Unpack)?;
                root.sync(&image, &blobs, None, None)
                    .await
                    .map_err(PrefetchError::Unpack)?;
                tracing::debug!(
                    "stage {index}: base {reference} unpacked ahead in {:.2}s",
                    started.elapsed().as_secs_f64()
                );
                Ok(Prepared { digest, root })
            });
            self.prefetches.lock().insert(index, task);
        }
    }
}
