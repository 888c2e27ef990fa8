//! A RUN's layer written on its own thread while the next steps run.
//!
//! After a RUN the root takes the step's changes over at once, and the
//! layer (tar, compression, two digests) is written from a detached shadow
//! of them (`Changes::detach`). Nothing needs the layer's digest until the
//! next RUN has run, or until the stage ends: cache keys chain instructions,
//! not layer digests, and COPY reads the root. So the stage records the
//! layer late, at the position the step had: the next RUN settles it after
//! its own command, and the stage's end settles whatever is left. A stage
//! that keeps its root for later stages leaves its last layer pending in
//! its result: `COPY --from` and RUN mounts read that root, so they start
//! at once; the build settles it before a stage is built `FROM` it, else
//! once the next level has run (`settle_all`, in `engine`). Until
//! then the layer is in neither the image's list nor the root's applied
//! list, so the two stay in step; both get it at the same index. The stage
//! runner settles it (`StageRunner::settle`, `settle_result`, in `stage`).
//!
//! A stage whose layers no one may ask for (not the target, no stage built
//! `FROM` it, no layer cache to fill: a builder stage that later stages
//! only copy from) defers its RUN layers: each writer waits at a
//! [`LayerGate`] until something settles it, and is discarded unwritten at
//! the end of the build otherwise. `COPY --from` reads the root either way,
//! so such a stage costs its commands and not the compression of what they
//! wrote (BuildKit, too, never compresses a stage it does not export). Its
//! layers stay pending in order, each placed where it ran.

use super::signal::Signal;
use crate::cache::CacheKey;
use kiln_dockerfile::instructions::Instruction;
use kiln_layer::LayerBlob;
use std::sync::Arc;

/// A layer being written on its own thread.
pub(crate) struct LayerWrite {
    /// The written blob, or why it could not be written.
    pub result: tokio::sync::oneshot::Receiver<Result<LayerBlob, LayerWriteError>>,
    /// Set once the writer has stopped using its shadow tree (read it and
    /// removed it): the workspace waits for it before a step that changes
    /// a root in place and before it removes its directories.
    pub done: Arc<Signal<()>>,
    /// For a deferred writer, what lets it start.
    pub gate: Option<LayerGate>,
}

/// Whether a deferred layer writer is to write (`true`) or to drop its
/// changes unwritten (`false`); decided once. A writer that is not
/// deferred has no gate.
pub(crate) type GateSignal = Signal<bool>;

/// The deciding end of a deferred writer's gate, held by its pending
/// layer: settling opens it; dropping it undecided discards the layer.
pub(crate) struct LayerGate(pub Arc<GateSignal>);

impl LayerGate {
    /// Lets the writer start (a no-op once decided).
    pub fn open(&self) {
        self.0.set_if_unset(true);
    }
}

impl Drop for LayerGate {
    fn drop(&mut self) {
        self.0.set_if_unset(false);
    }
}

/// A RUN whose layer is still being written, and where it goes.
pub(crate) struct PendingLayer {
    /// The written blob, or why it could not be written.
    pub result: tokio::sync::oneshot::Receiver<Result<LayerBlob, LayerWriteError>>,
    /// For a deferred writer, what lets it start.
    pub gate: Option<LayerGate>,
    pub instruction: Instruction,
    /// The cache key after the step: its entry is stored under it.
    pub key: CacheKey,
    pub created: String,
    pub created_by: String,
    /// Where the layer and its history entry go in the image (layer index,
    /// history index), counting the layers pending before it: layers are
    /// settled in the order they ran.
    pub at: (usize, usize),
}

/// Why a RUN's layer could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerWriteError {
    /// The sandbox could not turn the step's changes into a layer.
    #[error("{0}")]
    Sandbox(#[source] kiln_sandbox::SandboxError),
    /// The changes were gone by the time the layer was written.
    #[error("the step's changes vanished")]
    Vanished,
}
