//! Raw deflate through ISA-L's igzip at level 1: the block compressor of
//! [`crate::pgzip`] when a layer's bytes need not be the same on every
//! machine.
//!
//! igzip's level 1 compresses layers 4 to 5 times as fast as zlib-rs's
//! level 1 and about 10% smaller. Its output is a pure function of the
//! input, the dictionary and the flush, but igzip picks its code by CPU
//! (x86-64 with and without SSE4.2, aarch64), and those paths need not
//! emit the same bytes. Builds that promise the same digest on any machine
//! (`--reproducible`) keep zlib-rs.
//!
//! Written here because no maintained crate exposes igzip's streaming
//! deflate with a preset dictionary and sync flushes (`isal-rs` wraps only
//! whole-buffer calls, and is not `Send`); this is the loop around
//! `isal_deflate`, the codec is ISA-L's.

use isal_sys::igzip_lib as isal;
use std::io;

/// igzip's level 1 state: the stream and the level's hash buffer.
pub(crate) struct FastDeflate {
    /// Boxed: about 80 KiB, and ISA-L keeps pointers into it between calls.
    stream: Box<isal::isal_zstream>,
    level_buf: Box<[u8]>,
}

// SAFETY: the raw pointers in `stream` point into `level_buf` (owned by
// the same value, on the heap) or, during `block`, at its arguments; the
// value is used by one thread at a time.
unsafe impl Send for FastDeflate {}

impl FastDeflate {
    pub(crate) fn new() -> Self {
        FastDeflate {
            // SAFETY: isal_zstream is plain data; isal_deflate_init (in
            // `block`) sets every field before use.
            stream: Box::new(unsafe { std::mem::zeroed() }),
            level_buf: vec![0u8; isal::ISAL_DEF_LVL1_DEFAULT as usize].into_boxed_slice(),
        }
    }

    /// Appends `data` to `out` as raw deflate primed with `dict` (up to
    /// 32 KiB of what came before), ending on a byte boundary (a sync
    /// flush), or with the final block when `last`.
    pub(crate) fn block(
        &mut self,
        data: &[u8],
        dict: Option<&[u8]>,
        last: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let s = &mut *self.stream;
        // SAFETY: `s` is a valid, exclusively borrowed stream; init resets
        // it to a new stream with no history.
        unsafe { isal::isal_deflate_init(s) };
        s.level = 1;
        s.level_buf = self.level_buf.as_mut_ptr();
        s.level_buf_size = self.level_buf.len() as u32;
        s.gzip_flag = isal::IGZIP_DEFLATE as u16;
        if let Some(dict) = dict {
            // SAFETY: ISA-L copies the dictionary into the stream's history;
            // it does not write through the pointer.
            let ret = unsafe {
                isal::isal_deflate_set_dict(s, dict.as_ptr() as *mut u8, dict.len() as u32)
            };
            check(ret, "setting the dictionary")?;
        }
        s.next_in = data.as_ptr() as *mut u8;
        s.avail_in = u32::try_from(data.len()).map_err(io::Error::other)?;
        s.end_of_stream = u16::from(last);
        s.flush = if last {
            isal::NO_FLUSH as u16
        } else {
            isal::SYNC_FLUSH as u16
        };
        out.reserve(data.len() / 2 + 1024);
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let spare = out.spare_capacity_mut();
            s.next_out = spare.as_mut_ptr().cast::<u8>();
            s.avail_out = u32::try_from(spare.len()).unwrap_or(u32::MAX);
            let room = s.avail_out;
            // SAFETY: next_in/avail_in describe `data`, next_out/avail_out
            // the spare capacity of `out`; both outlive the call.
            let ret = unsafe { isal::isal_deflate(s) };
            check(ret, "compressing")?;
            let written = (room - s.avail_out) as usize;
            // SAFETY: ISA-L initialized `written` bytes of the spare capacity.
            unsafe { out.set_len(out.len() + written) };
            let done = if last {
                s.internal_state.state == isal::isal_zstate_state_ZSTATE_END
            } else {
                // All input taken and the output not filled: flushed.
                s.avail_in == 0 && s.avail_out > 0
            };
            if done {
                break;
            }
        }
        // Nothing may point at the caller's buffers once they are gone.
        s.next_in = std::ptr::null_mut();
        s.next_out = std::ptr::null_mut();
        Ok(())
    }
}

fn check(ret: i32, what: &str) -> io::Result<()> {
    if ret == isal::COMP_OK as i32 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "igzip deflate: {what} failed ({ret})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;
    use std::io::Read;

    fn text(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefgh \n/usr/lib"[(state >> 16) as usize % 18]
            })
            .collect()
    }

    fn inflate(raw: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        DeflateDecoder::new(raw).read_to_end(&mut back).unwrap();
        back
    }

    #[test]
    fn blocks_joined_with_their_dictionaries_read_back_as_one_stream() {
        let data = text(3 << 20, 7);
        let mut deflate = FastDeflate::new();
        let mut raw = Vec::new();
        let blocks: Vec<&[u8]> = data.chunks(1 << 20).collect();
        for (i, block) in blocks.iter().enumerate() {
            let start = i * (1 << 20);
            let dict = (i > 0).then(|| &data[start - 32 * 1024..start]);
            deflate
                .block(block, dict, i + 1 == blocks.len(), &mut raw)
                .unwrap();
        }
        // 18 symbols drawn at random: about 4.2 bits each at best.
        assert!(raw.len() < data.len() * 6 / 10, "{} bytes", raw.len());
        assert!(inflate(&raw) == data);
    }

    #[test]
    fn the_same_block_gives_the_same_bytes_and_the_dictionary_is_used() {
        let data = text(200_000, 3);
        let (dict, block) = data.split_at(100_000);
        let mut deflate = FastDeflate::new();
        let (mut a, mut b, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        deflate.block(block, Some(dict), true, &mut a).unwrap();
        deflate.block(block, Some(dict), true, &mut b).unwrap();
        deflate.block(block, None, true, &mut plain).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, plain, "the dictionary changes the output");
        let mut d = flate2::Decompress::new(false);
        d.set_dictionary(&dict[dict.len() - 32 * 1024..]).unwrap();
        let mut back = Vec::with_capacity(block.len() + 16);
        d.decompress_vec(&a, &mut back, flate2::FlushDecompress::Finish)
            .unwrap();
        assert!(back == block);
    }

    #[test]
    fn empty_and_incompressible_blocks_round_trip() {
        let mut deflate = FastDeflate::new();
        let mut raw = Vec::new();
        deflate.block(&[], None, true, &mut raw).unwrap();
        assert!(inflate(&raw).is_empty());
        let mut state = 99u64;
        let random: Vec<u8> = (0..300_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let mut raw = Vec::new();
        deflate.block(&random, None, true, &mut raw).unwrap();
        assert!(inflate(&raw) == random);
    }
}
