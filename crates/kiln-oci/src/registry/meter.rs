//! Byte counts of blob transfers as they happen, for progress displays.

use std::fmt;
use std::sync::Arc;

/// Told how far one blob's transfer has got.
///
/// Called from the task that moves the bytes, once per piece (tens of
/// KiB), so it must be cheap; throttle in the observer, not here.
pub trait TransferObserver: Send + Sync {
    /// `bytes` of the blob have been sent or received so far. The count can
    /// go back when a transfer starts again after a failure.
    fn transferred(&self, bytes: u64);
}

/// An observer and the offset its pieces start at (a chunk of an upload
/// starts where the previous one ended).
#[derive(Clone)]
pub(crate) struct Meter {
    observer: Arc<dyn TransferObserver>,
    base: u64,
}

impl Meter {
    pub(crate) fn new(observer: Arc<dyn TransferObserver>, base: u64) -> Meter {
        Meter { observer, base }
    }

    /// `moved` bytes past the start of this piece have gone.
    pub(crate) fn at(&self, moved: u64) {
        self.observer.transferred(self.base + moved);
    }
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter").field("base", &self.base).finish()
    }
}
