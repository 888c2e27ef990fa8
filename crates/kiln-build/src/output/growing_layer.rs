//! A target-stage layer as the registry client sees it while the layer
//! writer is still compressing it: its blob file, how far it has grown,
//! and how it ended (see `kiln_layer::watch`), so that the layer's upload
//! runs alongside its compression instead of after it.

use crate::progress::{ProgressSink, TransferMeter};
use kiln_layer::watch::{BlobWatch, WatchEnd};
use kiln_oci::{GrowingBlob, GrowingEnd, TransferObserver};
use std::fs::File;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How often a layer whose writer has not started yet is looked at: the
/// step may run its command for minutes first.
const START_POLL: Duration = Duration::from_millis(20);

/// A layer being written, for [`kiln_oci::Repository::push_growing_blob`].
pub(crate) struct GrowingLayer(pub(crate) BlobWatch);

impl GrowingLayer {
    /// Waits until the writer has put bytes in the file, or ended: an
    /// upload takes a transfer slot only once there is something to send.
    pub(crate) async fn started(&self) {
        while self.0.written() == 0 && self.0.end().is_none() {
            tokio::time::sleep(START_POLL).await;
        }
    }
}

impl GrowingBlob for GrowingLayer {
    fn file(&self) -> Option<Arc<File>> {
        self.0.file()
    }

    fn written(&self) -> u64 {
        self.0.written()
    }

    fn end(&self) -> Option<GrowingEnd> {
        self.0.end().map(|end| match end {
            WatchEnd::Finished { digest, size } => GrowingEnd::Complete { digest, size },
            WatchEnd::Failed => GrowingEnd::Failed,
        })
    }
}

/// The progress of a layer's upload, reported under the layer's digest:
/// until the writer has finished there is none, and nothing is reported
/// (a push shows its transfers only once the build is done anyway).
pub(crate) struct GrowingMeter {
    progress: Arc<dyn ProgressSink>,
    destination: String,
    layer: BlobWatch,
    meter: OnceLock<TransferMeter>,
}

impl GrowingMeter {
    pub(crate) fn new(
        progress: Arc<dyn ProgressSink>,
        destination: String,
        layer: BlobWatch,
    ) -> GrowingMeter {
        GrowingMeter {
            progress,
            destination,
            layer,
            meter: OnceLock::new(),
        }
    }
}

impl TransferObserver for GrowingMeter {
    fn transferred(&self, bytes: u64) {
        let meter = match self.meter.get() {
            Some(meter) => meter,
            None => match self.layer.end() {
                Some(WatchEnd::Finished { digest, size }) => self.meter.get_or_init(|| {
                    TransferMeter::new(
                        self.progress.clone(),
                        Some(self.destination.clone()),
                        digest.to_string(),
                        size,
                    )
                }),
                _ => return,
            },
        };
        meter.transferred(bytes);
    }
}
