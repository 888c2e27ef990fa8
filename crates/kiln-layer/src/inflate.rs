//! gzip decompression through ISA-L's igzip.
//!
//! Unpacking a base image is bound by inflate: one gzip stream cannot be
//! split across cores, so the only way to unpack it sooner is a faster
//! decoder. igzip inflates about 1.5 times as fast as zlib-rs (a 53 MiB
//! Debian layer: 0.21 s against 0.31 s), with the same streaming interface.
//!
//! Written here rather than taken from the `isal-rs` wrapper because that
//! wrapper spins forever on a truncated stream and is not `Send`, and a
//! layer reader must be both cut-off-safe and movable to the read-ahead
//! thread. This module is only the loop around `isal_inflate`; the codec,
//! header parsing and the CRC32/ISIZE trailer checks are ISA-L's.
//!
//! Like flate2's `MultiGzDecoder`, concatenated gzip members are read as
//! one stream; a stream that ends inside a member is an error.

use isal_sys::igzip_lib as isal;
use std::io::{self, Read};

/// Compressed bytes read from the source at a time.
const INPUT_BUFFER: usize = 256 * 1024;

/// A gzip stream (one member or several) decompressed as it is read.
pub(crate) struct GzipDecoder<R> {
    source: R,
    /// Boxed: ISA-L keeps a window and tables in it (tens of KiB), and its
    /// address must not change between calls.
    state: Box<isal::inflate_state>,
    input: Box<[u8]>,
    /// The source returned end of file.
    source_done: bool,
    /// The last member ended and no input follows.
    finished: bool,
}

// SAFETY: the raw pointers in `state` point only into `input` (owned by the
// same value, on the heap, so they stay valid when the value moves) or at
// the caller's output buffer during a `read` call; nothing is shared with
// another thread.
unsafe impl<R: Send> Send for GzipDecoder<R> {}

impl<R: Read> GzipDecoder<R> {
    pub(crate) fn new(source: R) -> Self {
        // SAFETY: inflate_state is plain data; isal_inflate_init sets every
        // field the decoder reads before it is used.
        let mut state: Box<isal::inflate_state> = Box::new(unsafe { std::mem::zeroed() });
        unsafe { isal::isal_inflate_init(&mut *state) };
        state.crc_flag = isal::ISAL_GZIP;
        GzipDecoder {
            source,
            state,
            input: vec![0u8; INPUT_BUFFER].into_boxed_slice(),
            source_done: false,
            finished: false,
        }
    }

    /// Refills the input buffer when ISA-L has consumed all of it.
    fn refill(&mut self) -> io::Result<()> {
        if self.state.avail_in > 0 || self.source_done {
            return Ok(());
        }
        let n = loop {
            match self.source.read(&mut self.input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.source_done = n == 0;
        self.state.next_in = self.input.as_mut_ptr();
        self.state.avail_in = n as u32;
        Ok(())
    }

    fn member_finished(&self) -> bool {
        self.state.block_state == isal::isal_block_state_ISAL_BLOCK_FINISH
    }
}

impl<R: Read> Read for GzipDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.finished {
            return Ok(0);
        }
        // ISA-L counts in u32; a larger request is simply served in part.
        let want = out.len().min(u32::MAX as usize);
        loop {
            self.refill()?;
            if self.member_finished() {
                if self.state.avail_in == 0 {
                    self.finished = true;
                    return Ok(0);
                }
                // More input after a member: the next member starts here.
                let (next_in, avail_in) = (self.state.next_in, self.state.avail_in);
                // SAFETY: the state was initialized in `new`.
                unsafe { isal::isal_inflate_reset(&mut *self.state) };
                self.state.crc_flag = isal::ISAL_GZIP;
                self.state.next_in = next_in;
                self.state.avail_in = avail_in;
            }
            let avail_in_before = self.state.avail_in;
            self.state.next_out = out.as_mut_ptr();
            self.state.avail_out = want as u32;
            // SAFETY: next_in/avail_in describe unread bytes of `input`,
            // next_out/avail_out the caller's buffer, both live for the call.
            let ret = unsafe { isal::isal_inflate(&mut *self.state) };
            let produced = want - self.state.avail_out as usize;
            // The caller's buffer is only borrowed for this call.
            self.state.next_out = std::ptr::null_mut();
            self.state.avail_out = 0;
            if ret < 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, describe(ret)));
            }
            if produced > 0 {
                return Ok(produced);
            }
            if self.member_finished() {
                continue;
            }
            if self.state.avail_in == 0 && self.source_done {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the gzip stream ends before its last member does",
                ));
            }
            if self.state.avail_in == avail_in_before && avail_in_before > 0 {
                // Neither input taken nor output made: ISA-L cannot go on.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt gzip stream (the decoder makes no progress)",
                ));
            }
        }
    }
}

fn describe(code: i32) -> &'static str {
    match code {
        isal::ISAL_INVALID_BLOCK => "corrupt gzip stream: invalid deflate block",
        isal::ISAL_INVALID_SYMBOL => "corrupt gzip stream: invalid symbol",
        isal::ISAL_INVALID_LOOKBACK => "corrupt gzip stream: invalid back reference",
        isal::ISAL_INVALID_WRAPPER => "not a valid gzip stream (bad header)",
        isal::ISAL_UNSUPPORTED_METHOD => "gzip stream uses an unsupported method",
        isal::ISAL_INCORRECT_CHECKSUM => "gzip stream fails its CRC32 or length check",
        _ => "corrupt gzip stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Pseudo-random but compressible bytes, large enough to span many
    /// input buffers and deflate blocks.
    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_u32;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 7 == 0 {
                    (x & 0xff) as u8
                } else {
                    b"layer"[i % 5]
                }
            })
            .collect()
    }

    fn decode(blob: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut d = GzipDecoder::new(blob);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = d.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn decodes_what_flate2_encodes_at_any_read_size() {
        let data = sample(3 << 20);
        let blob = gzip(&data);
        for chunk in [1, 4096, 1 << 20] {
            assert_eq!(decode(&blob, chunk).unwrap(), data, "read size {chunk}");
        }
    }

    #[test]
    fn concatenated_members_read_as_one_stream() {
        let mut blob = gzip(b"first member, ");
        blob.extend(gzip(&sample(600_000)));
        blob.extend(gzip(b""));
        let mut want = b"first member, ".to_vec();
        want.extend(sample(600_000));
        assert_eq!(decode(&blob, 8192).unwrap(), want);
    }

    #[test]
    fn an_empty_stream_is_empty() {
        assert_eq!(decode(&gzip(b""), 64).unwrap(), b"");
    }

    #[test]
    fn a_cut_off_stream_is_an_error_not_a_hang() {
        let blob = gzip(&sample(1 << 20));
        for cut in [5, 100, blob.len() / 2, blob.len() - 4] {
            let err = decode(&blob[..cut], 65536).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn a_wrong_checksum_is_refused() {
        let mut blob = gzip(&sample(100_000));
        let at = blob.len() - 8; // the CRC32 in the trailer
        blob[at] ^= 0xff;
        let err = decode(&blob, 65536).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn garbage_is_refused() {
        let err = decode(b"\x1f\x8bthis is not deflate data at all......", 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
