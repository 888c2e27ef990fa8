//! A copy of a layer's uncompressed tar stream for a second reader.
//!
//! Something that needs to read every byte of a layer after the build
//! (the SBOM hashes every file) would otherwise decompress and parse the
//! blob again. The writer and the extractor already stream every byte of
//! the tar, so when given a [`Tap`] they hand each byte to it as it goes
//! by: the consumer reads the same stream on its own thread
//! ([`channel`]), and learns at the end which diff_id the stream had, once
//! that is verified (an extraction whose diff_id does not match, or a
//! writer that fails, never calls [`TapSink::finish`]).

use kiln_image_spec::Digest;
use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Where the layers' tar streams go: asked once per layer.
pub trait Tap: Send + Sync {
    /// A sink for the tar stream of a layer about to be written or
    /// unpacked; `None` to leave this one alone.
    fn open(&self) -> Option<Box<dyn TapSink>>;
}

/// One layer's tar stream, as it passes.
pub trait TapSink: Send {
    /// The next bytes of the stream. A consumer that has stopped reading
    /// ignores them: the layer goes on regardless.
    fn write(&mut self, bytes: &[u8]);
    /// The stream is complete and its sha256 is `diff_id` (verified when
    /// an extraction expected one). Dropping a sink without calling this
    /// abandons the stream.
    fn finish(self: Box<Self>, diff_id: &Digest);
}

/// A shared [`Tap`], as the options of writers and extractions carry it.
/// Two are equal when they are the same tap.
#[derive(Clone)]
pub struct TapHandle(pub Arc<dyn Tap>);

impl TapHandle {
    /// A sink for one layer's stream, if the tap wants it.
    pub fn open(&self) -> Option<Box<dyn TapSink>> {
        self.0.open()
    }
}

impl fmt::Debug for TapHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TapHandle")
    }
}

impl PartialEq for TapHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TapHandle {}

/// Bytes gathered before a piece is handed to the reader: tar headers
/// come 512 bytes at a time, and one channel message per header would
/// cost more than the copy.
const PIECE: usize = 256 * 1024;

enum Message {
    Bytes(Vec<u8>),
    /// The stream ended whole.
    End,
}

/// A bounded in-memory pipe: `depth` pieces of 256 KiB in flight, so the
/// writer waits when the reader falls that far behind. The writer's bytes
/// are the reader's stream; the reader sees an error, not an end, when
/// the writer is dropped without [`PipeWriter::close`].
pub fn channel(depth: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(depth);
    (
        PipeWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(PIECE),
        },
        PipeReader {
            rx,
            current: Vec::new(),
            at: 0,
            ended: false,
        },
    )
}

/// The writing end of [`channel`].
pub struct PipeWriter {
    /// `None` once the reader has gone.
    tx: Option<SyncSender<Message>>,
    buf: Vec<u8>,
}

impl PipeWriter {
    /// Appends `bytes` to the stream; ignored once the reader has gone.
    pub fn write(&mut self, mut bytes: &[u8]) {
        while self.tx.is_some() && !bytes.is_empty() {
            let n = (PIECE - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == PIECE {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        if let Some(tx) = &self.tx {
            if tx.send(Message::Bytes(piece)).is_err() {
                self.tx = None;
            }
        }
    }

    /// Ends the stream whole: the reader reads what is left, then the end.
    pub fn close(mut self) {
        self.flush();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Message::End);
        }
    }
}

/// The reading end of [`channel`].
pub struct PipeReader {
    rx: Receiver<Message>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Message::Bytes(piece)) => {
                    self.current = piece;
                    self.at = 0;
                }
                Ok(Message::End) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the layer's stream was abandoned",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_gets_every_byte_in_order_then_the_end() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut w, mut r) = channel(2);
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            for chunk in sent.chunks(512).chain(std::iter::once(&[][..])) {
                w.write(chunk);
            }
            w.close();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn an_abandoned_stream_is_an_error_and_a_gone_reader_is_ignored() {
        let (mut w, mut r) = channel(4);
        w.write(b"partial");
        drop(w);
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let (mut w, r) = channel(1);
        drop(r);
        // More than the channel holds: the writer must not block.
        w.write(&vec![7u8; 4 * PIECE]);
        assert!(w.tx.is_none());
        w.close();
    }
}
