//! A RUN's layer written on its own thread while the next steps run.
//!
//! After a RUN the root takes the step's changes over at once, and the
//! layer (tar, compression, two digests) is written from a detached shadow
//! of them (`Changes::detach`). Nothing needs the layer's digest until the
//! next RUN has run, or until the stage ends: cache keys chain instructions,
//! not layer digests, and COPY reads the root. So the stage records the
//! layer late, at the position the step had: the next RUN settles it after
//! its own command, and the stage's end settles whatever is left. Until
//! then the layer is in neither the image's list nor the root's applied
//! list, so the two stay in step; both get it at the same index.

use super::error::BuildError;
use super::signal::Signal;
use super::stage::{StageRun, StageRunner};
use crate::cache::CacheKey;
use kiln_dockerfile::instructions::Instruction;
use kiln_layer::LayerBlob;
use std::sync::Arc;

/// A layer being written on its own thread.
pub(crate) struct LayerWrite {
    /// The written blob, or why it could not be written.
    pub result: tokio::sync::oneshot::Receiver<Result<LayerBlob, String>>,
    /// Set once the writer has stopped using its shadow tree (read it and
    /// removed it): the workspace waits for it before a step that changes
    /// a root in place and before it removes its directories.
    pub done: Arc<Signal<()>>,
}

/// A RUN whose layer is still being written, and where it goes.
pub(crate) struct PendingLayer {
    /// The written blob, or why it could not be written.
    pub result: tokio::sync::oneshot::Receiver<Result<LayerBlob, String>>,
    pub instruction: Instruction,
    /// The cache key after the step: its entry is stored under it.
    pub key: CacheKey,
    pub created: String,
    pub created_by: String,
    /// Where the layer and its history entry go in the image (layer index,
    /// history index).
    pub at: (usize, usize),
}

impl StageRunner<'_> {
    /// Records the pending RUN layer, if any, once it is written: in the
    /// image and the root's applied list at the step's position, in the
    /// cache, and as an upload to the destinations.
    pub(crate) async fn settle(&self, run: &mut StageRun<'_>) -> Result<(), BuildError> {
        let Some(pending) = run.pending.take() else {
            return Ok(());
        };
        let instruction = &pending.instruction;
        let blob = pending
            .result
            .await
            .map_err(|_| self.step_error(instruction, "the layer writer stopped"))?
            .map_err(|e| self.step_error(instruction, format!("writing the layer: {e}")))?;
        let layer = self.record_layer_at(
            run,
            instruction,
            &blob,
            (pending.key, pending.at),
            &pending.created,
            pending.created_by,
        );
        if let Some(root) = run.rootfs.as_mut() {
            root.insert_applied(pending.at.0, &blob.digest);
        }
        run.settled += 1;
        if let (Some(early), true) = (self.early, run.stage.0 == self.dockerfile.plan.target) {
            early.start(&layer);
        }
        tracing::info!(
            "step {}: layer {:.2} MiB written",
            instruction.line(),
            blob.size as f64 / (1024.0 * 1024.0)
        );
        Ok(())
    }
}
