//! Watching a layer's blob file while the writer produces it.
//!
//! A big layer takes seconds to compress, and its upload used to start only
//! once the file was complete. With a [`WatchHandle`] in its options, a
//! writer shares its blob as it grows: a read-only handle on the temporary
//! file (the rename in [`crate::LayerWriter::finish`] and the unlink of a
//! failed writer leave it readable), how many bytes have reached the file,
//! and how the writer ended. The writer pays one atomic add per buffer it
//! hands to the file (256 KiB), nothing per entry.

use kiln_image_spec::Digest;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How the watched writer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// The blob is complete: every one of its `size` bytes is in the file.
    Finished {
        /// The blob digest.
        digest: Digest,
        /// The blob size.
        size: u64,
    },
    /// The writer failed or was dropped, or no writer ever took the watch:
    /// the file's bytes are no blob.
    Failed,
}

#[derive(Default)]
struct Shared {
    file: OnceLock<Arc<File>>,
    written: AtomicU64,
    end: Mutex<Option<WatchEnd>>,
}

impl Shared {
    /// Records the end, unless one is recorded already.
    fn end(&self, end: WatchEnd) {
        let mut slot = self.end.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(end);
    }
}

/// The watching side: what the writer has put in its file so far.
#[derive(Clone)]
pub struct BlobWatch(Arc<Shared>);

impl BlobWatch {
    /// The blob file, read-only, once a writer has opened it. Read it with
    /// positioned reads (`FileExt::read_at`): clones of this handle share
    /// one file offset.
    pub fn file(&self) -> Option<Arc<File>> {
        self.0.file.get().cloned()
    }

    /// Bytes the writer has handed to the file so far: a prefix of the
    /// blob that no later write changes.
    pub fn written(&self) -> u64 {
        self.0.written.load(Ordering::Acquire)
    }

    /// How the writer ended, once it has. When [`WatchEnd::Finished`],
    /// [`BlobWatch::written`] is the size.
    pub fn end(&self) -> Option<WatchEnd> {
        self.0.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl fmt::Debug for BlobWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWatch")
            .field("written", &self.written())
            .field("end", &self.end())
            .finish()
    }
}

/// What the writer's options carry: taken by the first writer made with
/// them. When every copy is dropped and no writer took it, the watch ends
/// [`WatchEnd::Failed`], so a watcher never waits for a writer that will
/// not come (a RUN that changed nothing writes no layer).
#[derive(Clone)]
pub struct WatchHandle(Arc<Slot>);

struct Slot {
    shared: Arc<Shared>,
    taken: AtomicBool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.taken.load(Ordering::Acquire) {
            self.shared.end(WatchEnd::Failed);
        }
    }
}

impl WatchHandle {
    /// A handle for one writer's options, and the watch on that writer.
    pub fn new() -> (WatchHandle, BlobWatch) {
        let shared = Arc::new(Shared::default());
        let slot = Slot {
            shared: shared.clone(),
            taken: AtomicBool::new(false),
        };
        (WatchHandle(Arc::new(slot)), BlobWatch(shared))
    }

    /// The feed for a writer whose blob file is `path`; `None` when an
    /// earlier writer took this handle.
    pub(crate) fn take(&self, path: &Path) -> io::Result<Option<Feed>> {
        if self.0.taken.swap(true, Ordering::AcqRel) {
            return Ok(None);
        }
        let shared = self.0.shared.clone();
        let feed = Feed {
            shared: shared.clone(),
        };
        // Failing here drops the feed, which ends the watch as failed.
        let file = File::open(path)?;
        let _ = shared.file.set(Arc::new(file));
        Ok(Some(feed))
    }
}

impl fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WatchHandle")
    }
}

impl PartialEq for WatchHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for WatchHandle {}

/// The writer's side of a watch. Dropped before [`Feed::finished`], it
/// ends the watch as failed.
pub(crate) struct Feed {
    shared: Arc<Shared>,
}

impl Feed {
    /// The blob is complete and in its file.
    pub(crate) fn finished(self, digest: Digest, size: u64) {
        self.shared.end(WatchEnd::Finished { digest, size });
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shared.end(WatchEnd::Failed);
    }
}

/// The blob file under the writer's buffer: counts the bytes the file
/// takes, for the watch when there is one.
pub(crate) struct BlobFile {
    pub(crate) file: File,
    pub(crate) feed: Option<Feed>,
}

impl Write for BlobFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(feed) = &self.feed {
            feed.shared.written.fetch_add(n as u64, Ordering::Release);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Bytes that do not compress, so the blob grows as they go in.
    use crate::pgzip::tests::random as noise;
    use crate::{Entry, EntryKind, EntryMeta, LayerOptions, LayerWriter};
    use kiln_image_spec::media::Compression;
    use std::os::unix::fs::FileExt;

    fn file_entry(name: &str, size: u64) -> Entry {
        Entry::new(name, EntryKind::File { size }, EntryMeta::with_mode(0o644))
    }

    #[test]
    fn the_watch_sees_the_blob_grow_and_end_with_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, watch) = WatchHandle::new();
        assert!(watch.file().is_none() && watch.end().is_none());
        let options = LayerOptions::new(Compression::None).with_watch(handle);
        let mut w = LayerWriter::new(dir.path(), &options).unwrap();
        let file = watch.file().expect("the writer opened its file");
        let content = noise(1 << 20, 7);
        w.append(
            &file_entry("a", content.len() as u64),
            Some(&mut &content[..]),
        )
        .unwrap();
        // Past the writer's buffers: most of the first file reaches the blob
        // (on the pipeline's threads, so soon rather than at once).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while watch.written() < 512 * 1024 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let grown = watch.written();
        assert!(grown >= 512 * 1024, "{grown}");
        assert_eq!(watch.end(), None);
        let mut prefix = vec![0u8; grown as usize];
        file.read_exact_at(&mut prefix, 0).unwrap();

        let blob = w.finish().unwrap();
        assert_eq!(
            watch.end(),
            Some(WatchEnd::Finished {
                digest: blob.digest.clone(),
                size: blob.size
            })
        );
        assert_eq!(watch.written(), blob.size);
        // The handle reads the renamed blob, and what it read while the
        // writer went on is that blob's start.
        let whole = std::fs::read(&blob.path).unwrap();
        let mut through_handle = vec![0u8; blob.size as usize];
        file.read_exact_at(&mut through_handle, 0).unwrap();
        assert_eq!(through_handle, whole);
        assert_eq!(&whole[..prefix.len()], &prefix[..]);
    }

    #[test]
    fn a_failed_or_missing_writer_ends_the_watch_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, watch) = WatchHandle::new();
        let options = LayerOptions::new(Compression::Gzip).with_watch(handle);
        let mut w = LayerWriter::new(dir.path(), &options).unwrap();
        // Content shorter than announced breaks the layer.
        let short = noise(10, 3);
        assert!(w
            .append(&file_entry("a", 100), Some(&mut &short[..]))
            .is_err());
        assert_eq!(watch.end(), None, "the writer is still there");
        assert!(w.finish().is_err());
        assert_eq!(watch.end(), Some(WatchEnd::Failed));

        // Options dropped without making a writer.
        let (handle, watch) = WatchHandle::new();
        let options = LayerOptions::new(Compression::Gzip).with_watch(handle);
        let copy = options.clone();
        drop(options);
        assert_eq!(watch.end(), None, "a copy of the options remains");
        drop(copy);
        assert_eq!(watch.end(), Some(WatchEnd::Failed));
    }

    #[test]
    fn only_the_first_writer_feeds_a_watch() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, watch) = WatchHandle::new();
        let options = LayerOptions::new(Compression::None).with_watch(handle);
        let first = LayerWriter::new(dir.path(), &options).unwrap();
        let second = LayerWriter::new(dir.path(), &options).unwrap();
        let blob = second.finish().unwrap();
        assert_eq!(watch.end(), None, "the second writer is not watched");
        let first = first.finish().unwrap();
        assert_eq!(first.digest, blob.digest);
        assert!(matches!(watch.end(), Some(WatchEnd::Finished { .. })));
    }
}
