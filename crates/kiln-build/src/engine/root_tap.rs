//! A layer applied to the stage's root as its writer streams it.
//!
//! A COPY into a stage whose root is already materialized (a base unpacked
//! ahead, a RUN before it) would otherwise leave the root one layer behind,
//! and the next RUN would read the layer back, inflate it and unpack it.
//! The writer hands its tar stream to a thread that unpacks it into the
//! root while the layer is compressed; the root counts the layer only when
//! the unpacked stream's digest is the layer's diff_id.

use super::error::BuildError;
use super::stage::StageRunner;
use crate::copy::CopyPlan;
use kiln_dockerfile::instructions::Instruction;
use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
use kiln_layer::reader::open_stream;
use kiln_layer::tap::{channel, PipeWriter, Tap, TapHandle, TapSink};
use kiln_oci::Digest;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Pieces (256 KiB each) the writer may run ahead of the unpacking.
const DEPTH: usize = 16;

/// Unpacks the one layer a writer streams into `dir`.
pub(crate) struct RootTap {
    dir: PathBuf,
    unpacking: Mutex<Option<JoinHandle<Result<Digest, kiln_layer::Error>>>>,
}

impl RootTap {
    /// A tap unpacking into the root at `dir`.
    pub(crate) fn new(dir: PathBuf) -> RootTap {
        RootTap {
            dir,
            unpacking: Mutex::new(None),
        }
    }

    /// Waits for the unpacking to end (the writer has finished or been
    /// dropped); true when the root now holds the layer whose diff_id is
    /// `diff_id`. False also when the root may hold part of it.
    pub(crate) fn wait(&self, diff_id: Option<&Digest>) -> bool {
        let handle = self.lock().take();
        let Some(handle) = handle else {
            tracing::debug!("the layer writer streamed nothing into the root");
            return false;
        };
        match handle.join() {
            Ok(Ok(unpacked)) if Some(&unpacked) == diff_id => true,
            Ok(Ok(unpacked)) => {
                tracing::debug!("the root took in {unpacked}, not the layer's {diff_id:?}");
                false
            }
            Ok(Err(e)) => {
                tracing::debug!("unpacking a layer into the root as it was written: {e}");
                false
            }
            Err(_) => false,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<JoinHandle<Result<Digest, kiln_layer::Error>>>> {
        self.unpacking.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tap for RootTap {
    fn open(&self) -> Option<Box<dyn TapSink>> {
        let mut unpacking = self.lock();
        if unpacking.is_some() {
            // One layer per tap.
            return None;
        }
        let (writer, reader) = channel(DEPTH);
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("layer-into-root".into())
            .spawn(move || {
                let reader = open_stream(reader, None, "the layer being written".into())?;
                let summary = extract(reader, &dir, &ExtractOptions::new(ApplyMode::Flatten))?;
                Ok(summary.diff_id)
            });
        match spawned {
            Ok(handle) => {
                *unpacking = Some(handle);
                Some(Box::new(IntoRoot(writer)))
            }
            Err(e) => {
                tracing::debug!("unpacking a layer into the root as it is written: {e}");
                None
            }
        }
    }
}

struct IntoRoot(PipeWriter);

impl TapSink for IntoRoot {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    fn finish(self: Box<Self>, _diff_id: &Digest) {
        // The unpacking computes the stream's digest itself; `RootTap::wait`
        // compares it with the blob's.
        self.0.close();
    }
}

impl StageRunner<'_> {
    /// Writes `plan` as stage `stage`'s next layer, as
    /// [`StageRunner::write_layer`] does, unpacking it into the root at
    /// `root` as it goes; with it, whether the root now holds the layer
    /// (false: it may hold part of it, and must be materialized afresh).
    pub(crate) async fn write_layer_into_root(
        &self,
        stage: usize,
        plan: &CopyPlan,
        instruction: &Instruction,
        root: PathBuf,
    ) -> Result<(kiln_layer::LayerBlob, bool), BuildError> {
        let tap = Arc::new(RootTap::new(root));
        let opts = self.layer_options(stage).with_tap(TapHandle(tap.clone()));
        // The writer is gone (finished or dropped) when `after` runs: the
        // unpacking ends too, before the step goes on or fails.
        self.write_layer_then(opts, plan, instruction, move |blob| {
            tap.wait(blob.map(|b| &b.diff_id))
        })
        .await
    }
}
