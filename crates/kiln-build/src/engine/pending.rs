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
}

/// A RUN whose layer is still being written, and where it goes.
pub(crate) struct PendingLayer {
    /// The written blob, or why it could not be written.
    pub result: tokio::sync::oneshot::Receiver<Result<LayerBlob, LayerWriteError>>,
    pub instruction: Instruction,
    /// The cache key after the step: its entry is stored under it.
    pub key: CacheKey,
    pub created: String,
    pub created_by: String,
    /// Where the layer and its history entry go in the image (layer index,
    /// history index).
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
