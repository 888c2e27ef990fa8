//! Build progress as events: what the engine is doing, step by step, for a
//! front end to show (a live terminal view, plain CI log lines, JSON).
//!
//! The engine calls a [`ProgressSink`] at each point of interest. Sinks are
//! called from several tasks at once (independent stages run concurrently,
//! RUN output arrives on a blocking thread), so they must be cheap and must
//! not block for long.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which step of which stage an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepId {
    /// The stage's index in the Dockerfile (0 for the first `FROM`).
    pub stage: usize,
    /// The stage's name: its `AS` name, else its index.
    pub stage_name: String,
    /// The step's position in its stage, from 1.
    pub index: usize,
    /// The number of steps in the stage (ONBUILD triggers of the base included).
    pub total: usize,
    /// The Dockerfile line the step starts on.
    pub line: usize,
}

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A stage started.
    StageStarted {
        /// The stage's index in the Dockerfile.
        stage: usize,
        /// Its `AS` name, else its index.
        name: String,
        /// What it starts from: an image reference, `scratch`, or an earlier stage.
        base: String,
        /// The number of steps it has.
        steps: usize,
    },
    /// A step started (after its words were expanded).
    StepStarted {
        /// The step.
        step: StepId,
        /// The instruction as written (shortened when long).
        instruction: String,
    },
    /// A step's result came from the layer cache.
    StepCached {
        /// The step.
        step: StepId,
        /// How long the lookup took.
        duration: Duration,
    },
    /// A step finished.
    StepDone {
        /// The step.
        step: StepId,
        /// How long it took.
        duration: Duration,
        /// The compressed size of the layer it made, when it made one.
        layer_size: Option<u64>,
    },
    /// A line a RUN step printed (stdout and stderr, interleaved).
    RunOutput {
        /// The step.
        step: StepId,
        /// How logs name the step: `[Dockerfile:LINE] RUN command` (shortened).
        label: String,
        /// The line, without its line ending.
        line: String,
    },
    /// A push to one destination finished.
    PushDone {
        /// The destination as given.
        destination: String,
        /// Blobs uploaded.
        uploaded: usize,
        /// Blobs mounted from another repository.
        mounted: usize,
        /// Blobs the registry already had.
        existing: usize,
        /// Bytes uploaded.
        uploaded_bytes: u64,
        /// How long the push took.
        duration: Duration,
    },
    /// Bytes of one blob moved so far: a layer downloaded (`destination`
    /// is `None`) or a blob pushed to a destination. Sent when the transfer
    /// starts, at most every [`TRANSFER_INTERVAL`] while it runs, and when
    /// it ends. A blob the destination already had, or mounted, is reported
    /// once, done.
    BlobTransfer {
        /// The destination as given, for a push; `None` for a download.
        destination: Option<String>,
        /// The blob's digest.
        digest: String,
        /// Bytes moved so far.
        done: u64,
        /// The blob's size.
        total: u64,
    },
    /// A push to one destination started.
    PushStarted {
        /// The destination as given.
        destination: String,
        /// Blobs to send (layers and config).
        blobs: usize,
        /// Their total size.
        bytes: u64,
    },
    /// The image was built and every output written.
    BuildDone {
        /// The image digest.
        digest: String,
        /// The image size: config plus compressed layers.
        size: u64,
        /// Steps run, and how many of them came from the cache.
        steps: usize,
        /// Steps that came from the cache.
        cached: usize,
        /// Wall time of the whole build.
        duration: Duration,
    },
}

/// Receives [`ProgressEvent`]s while a build runs.
pub trait ProgressSink: Send + Sync {
    /// Called once per event, in the order the events happen within a stage.
    fn event(&self, event: &ProgressEvent);
}

/// A sink that drops every event: the default for [`crate::build`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: &ProgressEvent) {}
}

/// A sink that writes each event as a `tracing` line at `info` level, for
/// library users that already collect tracing output.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingProgress;

impl ProgressSink for TracingProgress {
    fn event(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::StageStarted { name, base, .. } => {
                tracing::info!("stage {name} ({base})")
            }
            ProgressEvent::StepStarted { step, instruction } => {
                tracing::info!("step {}: {instruction}", step.line)
            }
            ProgressEvent::StepCached { step, .. } => tracing::info!("step {}: CACHED", step.line),
            ProgressEvent::StepDone {
                step, layer_size, ..
            } => match layer_size {
                Some(size) => tracing::info!("step {}: layer ({size} bytes)", step.line),
                None => tracing::info!("step {}: done", step.line),
            },
            ProgressEvent::RunOutput { label, line, .. } => tracing::info!("{label}| {line}"),
            ProgressEvent::PushStarted { destination, .. } => {
                tracing::info!("pushing {destination}")
            }
            ProgressEvent::PushDone { destination, .. } => tracing::info!("pushed {destination}"),
            ProgressEvent::BlobTransfer { .. } => {}
            ProgressEvent::BuildDone { digest, .. } => tracing::info!("built {digest}"),
        }
    }
}

/// How often a running transfer reports its progress at most.
pub const TRANSFER_INTERVAL: Duration = Duration::from_millis(100);

/// Turns the byte counts of one blob's transfer into
/// [`ProgressEvent::BlobTransfer`] events, at most one per
/// [`TRANSFER_INTERVAL`] apart from the first and the last: the registry
/// client counts every 256 KiB piece, far more often than anyone reads.
/// A count equal to the last one reported is not reported again: an HTTP/2
/// response ends with an empty frame, and the end of a download would
/// otherwise be told twice (two "pulled" lines for one layer).
pub(crate) struct TransferMeter {
    sink: Arc<dyn ProgressSink>,
    destination: Option<String>,
    digest: String,
    total: u64,
    /// When the last count was reported, and that count.
    last: Mutex<Option<(Instant, u64)>>,
}

impl TransferMeter {
    pub(crate) fn new(
        sink: Arc<dyn ProgressSink>,
        destination: Option<String>,
        digest: String,
        total: u64,
    ) -> TransferMeter {
        TransferMeter {
            sink,
            destination,
            digest,
            total,
            last: Mutex::new(None),
        }
    }

    /// Reports `done` bytes now, whatever the interval.
    pub(crate) fn report(&self, done: u64) {
        self.sink.event(&ProgressEvent::BlobTransfer {
            destination: self.destination.clone(),
            digest: self.digest.clone(),
            done,
            total: self.total,
        });
    }
}

impl kiln_oci::TransferObserver for TransferMeter {
    fn transferred(&self, bytes: u64) {
        let due = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let due = match *last {
                None => true,
                Some((_, told)) if told == bytes => false,
                Some((at, _)) => bytes >= self.total || at.elapsed() >= TRANSFER_INTERVAL,
            };
            if due {
                *last = Some((Instant::now(), bytes));
            }
            due
        };
        if due {
            self.report(bytes);
        }
    }
}

/// Collects events in memory, for tests.
#[derive(Debug, Default)]
pub struct RecordingProgress {
    events: std::sync::Mutex<Vec<ProgressEvent>>,
}

impl RecordingProgress {
    /// The events received so far.
    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ProgressSink for RecordingProgress {
    fn event(&self, event: &ProgressEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_keeps_events_in_order() {
        let sink = RecordingProgress::default();
        let step = StepId {
            stage: 0,
            stage_name: "0".into(),
            index: 1,
            total: 1,
            line: 2,
        };
        sink.event(&ProgressEvent::StepStarted {
            step: step.clone(),
            instruction: "RUN true".into(),
        });
        sink.event(&ProgressEvent::StepCached {
            step,
            duration: Duration::ZERO,
        });
        let events = sink.events();
        assert_eq!(events.len(), 2);
        assert!(matches!(events[1], ProgressEvent::StepCached { .. }));
    }

    fn transfers(sink: &RecordingProgress) -> Vec<u64> {
        sink.events()
            .into_iter()
            .filter_map(|e| match e {
                ProgressEvent::BlobTransfer { done, total, .. } => {
                    assert_eq!(total, 1000);
                    Some(done)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_transfer_meter_reports_the_start_the_end_and_little_between() {
        use kiln_oci::TransferObserver;
        let sink = Arc::new(RecordingProgress::default());
        let meter = TransferMeter::new(sink.clone(), None, "sha256:ab".into(), 1000);
        for done in (0..1000).step_by(10) {
            meter.transferred(done);
        }
        meter.transferred(1000);
        // An HTTP/2 body's closing empty frame counts nothing new.
        meter.transferred(1000);
        // The first count, then nothing until the interval passes, and the end, once.
        assert_eq!(transfers(&sink), vec![0, 1000]);

        let sink = Arc::new(RecordingProgress::default());
        let meter =
            TransferMeter::new(sink.clone(), Some("r/x:1".into()), "sha256:ab".into(), 1000);
        meter.transferred(0);
        std::thread::sleep(TRANSFER_INTERVAL + Duration::from_millis(20));
        meter.transferred(500);
        meter.transferred(600);
        meter.transferred(1000);
        assert_eq!(transfers(&sink), vec![0, 500, 1000]);
    }
}
