//! Decompression on its own thread, ahead of the reader.
//!
//! Unpacking a gzip layer is two jobs of about the same size: inflating
//! the stream, and writing the files it holds. On one thread they take
//! turns; here a producer thread inflates into a few large buffers while
//! the caller's thread parses the tar and writes files, so a layer
//! unpacks in the time of the slower job rather than the sum of both.
//! (No crate does this for a `Read`: pipe-style crates copy through an OS
//! pipe with small writes, which costs more than it saves.)

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes the producer reads before handing a buffer over.
const PIECE: usize = 1 << 20;
/// Buffers in flight before the consumer that writes files: enough for
/// the producer to stay ahead while the consumer works through a run of
/// small files (4 left both threads waiting on each other: the Debian
/// base unpacked in 0.52 s, with 16 in 0.46 s), little enough to bound
/// memory (16 MiB per unpack).
pub(crate) const DEPTH: usize = 16;
/// Buffers in flight between two producer stages (inflating, then hashing):
/// the Debian base, 8 alternating runs on a fresh ext4 each, unpacked in
/// 0.404 s (median) with 8 and 0.416 s with 16; with 4 it was no faster
/// than inflating and hashing on one thread (0.444 s against 0.450 s).
pub(crate) const STAGE_DEPTH: usize = 8;

/// A reader whose source is read on another thread.
pub(crate) struct ReadAhead {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
}

impl ReadAhead {
    /// Starts reading `source` on a new thread. Dropping the `ReadAhead`
    /// stops the thread after its current read.
    /// Up to `depth` buffers of [`PIECE`] bytes are read ahead.
    pub(crate) fn spawn(mut source: Box<dyn Read + Send>, depth: usize) -> io::Result<ReadAhead> {
        let (full_tx, full) = sync_channel::<io::Result<Vec<u8>>>(depth);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(depth + 1);
        std::thread::Builder::new()
            .name("layer-read-ahead".into())
            .spawn(move || loop {
                // Reuse a buffer the reader is done with; make one otherwise.
                let mut buf = empty_rx.try_recv().unwrap_or_default();
                buf.resize(PIECE, 0);
                let filled = match fill(&mut source, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        return;
                    }
                };
                buf.truncate(filled);
                // The reader is gone (it stopped early or failed): stop too.
                if full_tx.send(Ok(buf)).is_err() || filled == 0 {
                    return;
                }
            })?;
        Ok(ReadAhead {
            full,
            empty,
            current: Vec::new(),
            at: 0,
            ended: false,
        })
    }
}

/// Reads until `buf` is full or the source ends; the bytes read.
fn fill(source: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.ended || out.is_empty() {
                return Ok(0);
            }
            let next = match self.full.recv() {
                Ok(piece) => piece?,
                Err(_) => {
                    return Err(io::Error::other("the layer read-ahead thread stopped"));
                }
            };
            if next.is_empty() {
                self.ended = true;
            }
            let used = std::mem::replace(&mut self.current, next);
            self.at = 0;
            // The producer may have stopped; then the buffer is just dropped.
            let _ = self.empty.try_send(used);
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_over_every_byte_in_order() {
        let data: Vec<u8> = (0..(3 * PIECE + 12_345)).map(|i| (i % 253) as u8).collect();
        let mut ahead = ReadAhead::spawn(Box::new(io::Cursor::new(data.clone())), DEPTH).unwrap();
        let mut got = Vec::new();
        // Odd-sized reads cross the piece boundaries.
        let mut buf = vec![0u8; 7777];
        loop {
            let n = ahead.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        assert_eq!(ahead.read(&mut buf).unwrap(), 0, "stays at the end");
    }

    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt deflate stream",
                ));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_source_error_reaches_the_reader_after_the_bytes_before_it() {
        let mut ahead = ReadAhead::spawn(Box::new(Failing(PIECE + 10)), DEPTH).unwrap();
        let mut got = Vec::new();
        let err = ahead.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("corrupt deflate stream"), "{err}");
        assert_eq!(got.len(), PIECE, "the full piece before the failing one");
    }

    /// A source of zeros that counts what is read from it and says when
    /// it is dropped (which happens when the producer thread ends).
    struct Counted {
        read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        dropped: std::sync::mpsc::Sender<()>,
    }

    impl Read for Counted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            self.read
                .fetch_add(buf.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(buf.len())
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            let _ = self.dropped.send(());
        }
    }

    #[test]
    fn dropping_the_reader_early_stops_the_thread() {
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (dropped, source_gone) = std::sync::mpsc::channel();
        // An endless source: only the reader going away can stop the thread.
        let source = Counted {
            read: read.clone(),
            dropped,
        };
        let mut ahead = ReadAhead::spawn(Box::new(source), DEPTH).unwrap();
        let mut buf = [0u8; 10];
        ahead.read_exact(&mut buf).unwrap();
        drop(ahead);
        source_gone
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the producer thread ends (and drops its source) once the reader is gone");
        // It stopped after filling at most the buffers in flight, not by
        // reading on without end.
        let total = read.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            total <= (DEPTH + 2) * PIECE,
            "read {total} bytes ahead of a reader that took 10"
        );
    }
}
