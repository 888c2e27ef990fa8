//! A `Write` whose writes are carried out on a thread of its own, so that
//! the stages of the layer pipeline run on different cores.
//!
//! The layer writer's thread reads every file, builds the tar and hashes
//! it (the diff_id); the compressed stream is hashed again (the blob
//! digest) and written to the file. On a big layer (2 GB, 150,000 files)
//! that one thread was the bottleneck while the compression workers waited
//! for it: the two SHA-256s alone are 3.3 GB of hashing. Here each stage
//! after the first gets bytes in 1 MiB chunks through a bounded queue and
//! works while the stage before it goes on.
//!
//! Written here rather than taken from a crate: what is needed is the inner
//! writer handed back at the end (its digest and file), buffers recycled
//! between the two threads, and the inner writer's first error kept for
//! the caller; the pipe crates found move bytes between readers and
//! writers and give neither.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes handed to the thread at once: the layer writer's memory beside
/// compression is about (QUEUED + 2) chunks per stage, doubled by recycling.
const CHUNK: usize = 256 * 1024;
/// Chunks queued for the thread at most; the writer waits beyond that.
const QUEUED: usize = 8;

/// The thread's end: the inner writer and how its writes went.
type Outcome<W> = (W, io::Result<()>);

/// Writes to `W` on a thread of its own. [`Threaded::finish`] returns `W`
/// once every byte has been written to it; an error of `W` comes back from
/// a later `write` or from `finish`.
pub(crate) struct Threaded<W: Write + Send + 'static> {
    chunk: Vec<u8>,
    queue: Option<SyncSender<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Outcome<W>>>,
}

impl<W: Write + Send + 'static> Threaded<W> {
    /// Starts the thread, named `name`, writing to `inner`.
    pub(crate) fn new(inner: W, name: &str) -> io::Result<Self> {
        let (queue, chunks) = mpsc::sync_channel::<Vec<u8>>(QUEUED);
        // Written chunks come back to be filled again: no fresh pages to
        // fault in for every MiB of a big layer.
        let (give_back, spent) = mpsc::sync_channel::<Vec<u8>>(QUEUED + 1);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut inner = inner;
                for mut chunk in chunks {
                    if let Err(e) = inner.write_all(&chunk) {
                        return (inner, Err(e));
                    }
                    chunk.clear();
                    let _ = give_back.try_send(chunk);
                }
                (inner, Ok(()))
            })?;
        Ok(Threaded {
            chunk: Vec::with_capacity(CHUNK),
            queue: Some(queue),
            spent,
            thread: Some(thread),
        })
    }

    /// Hands the full chunk to the thread.
    fn send(&mut self) -> io::Result<()> {
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.chunk, next);
        let sent = match &self.queue {
            Some(queue) => queue.send(chunk).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: its writer failed. That error is the answer.
        match self.join()? {
            (_, Err(e)) => Err(e),
            (_, Ok(())) => Err(io::Error::other("the writer thread stopped early")),
        }
    }

    /// Ends the queue and waits for the thread.
    fn join(&mut self) -> io::Result<Outcome<W>> {
        self.queue.take();
        let thread = self
            .thread
            .take()
            .ok_or_else(|| io::Error::other("the writer thread already ended"))?;
        thread
            .join()
            .map_err(|_| io::Error::other("the writer thread panicked"))
    }

    /// Writes what is left, waits for the thread and returns the inner
    /// writer, flushed.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.chunk.is_empty() {
            self.send()?;
        }
        let (mut inner, result) = self.join()?;
        result?;
        inner.flush()?;
        Ok(inner)
    }
}

impl<W: Write + Send + 'static> Write for Threaded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.chunk.len();
        let n = buf.len().min(room);
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Nothing to do: the bytes reach the inner writer in order, and
    /// [`Threaded::finish`] is where they are all there.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for Threaded<W> {
    /// An unfinished writer (a failed layer) still ends its thread.
    fn drop(&mut self) {
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps what it is given and fails after `limit` bytes.
    struct Recorder {
        got: Arc<Mutex<Vec<u8>>>,
        limit: usize,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            if got.len() + buf.len() > self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            got.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A recorder failing past `limit` bytes, and what it got.
    fn recorder(limit: usize) -> (Recorder, Arc<Mutex<Vec<u8>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        (
            Recorder {
                got: got.clone(),
                limit,
            },
            got,
        )
    }

    #[test]
    fn every_byte_arrives_in_order_whatever_the_write_sizes() {
        let (inner, got) = recorder(usize::MAX);
        let mut threaded = Threaded::new(inner, "test-sink").unwrap();
        let data: Vec<u8> = (0..(5 * CHUNK + 12345)).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        for size in [1, 511, 4096, CHUNK - 7, 3 * CHUNK, usize::MAX]
            .iter()
            .cycle()
        {
            if at == data.len() {
                break;
            }
            let end = data.len().min(at.saturating_add(*size));
            threaded.write_all(&data[at..end]).unwrap();
            at = end;
        }
        threaded.finish().unwrap();
        assert!(*got.lock().unwrap() == data);
    }

    #[test]
    fn the_inner_writers_error_comes_back_and_nothing_hangs() {
        let (inner, _) = recorder(2 * CHUNK);
        let mut threaded = Threaded::new(inner, "test-sink").unwrap();
        let chunk = vec![7u8; CHUNK];
        // The third chunk fails on the thread; a later write or the finish
        // says so, with the inner writer's own error.
        let mut failed = None;
        for _ in 0..(QUEUED + 8) {
            if let Err(e) = threaded.write_all(&chunk) {
                failed = Some(e);
                break;
            }
        }
        let error = match failed {
            Some(e) => e,
            None => threaded.finish().err().expect("finish reports the failure"),
        };
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn a_writer_dropped_unfinished_ends_its_thread() {
        let (inner, got) = recorder(usize::MAX);
        let mut threaded = Threaded::new(inner, "test-sink").unwrap();
        threaded.write_all(&vec![1u8; 2 * CHUNK + 5]).unwrap();
        drop(threaded);
        // Joined on drop: the full chunks were written, the partial one not.
        assert_eq!(got.lock().unwrap().len(), 2 * CHUNK);
    }
}
