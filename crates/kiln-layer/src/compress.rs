//! The compression stage of the layer pipeline: none, gzip (parallel for big
//! layers) or zstd (multithreaded), behind one `Write`.

use crate::error::{Error, Result};
use crate::pgzip::{Deflate, GzipWriter};
use kiln_image_spec::media::Compression;
use std::io::{self, Write};

/// Default gzip level: what `gzip`, Docker and BuildKit use.
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// Default zstd level: zstd's own default, and BuildKit's.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// A resolved compression setting: algorithm, level and thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Codec {
    pub compression: Compression,
    pub level: i32,
    pub threads: usize,
    /// gzip only: which deflate implementation.
    pub deflate: Deflate,
}

impl Codec {
    /// Checks `level` against the algorithm and fills in defaults.
    /// `threads == 0` means one per available core.
    pub fn new(compression: Compression, level: Option<i32>, threads: usize) -> Result<Codec> {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let level = match (compression, level) {
            (Compression::None, None) => 0,
            (Compression::None, Some(_)) => {
                return Err(Error::Options(
                    "a level needs gzip or zstd compression".into(),
                ))
            }
            (Compression::Gzip, None) => DEFAULT_GZIP_LEVEL,
            (Compression::Gzip, Some(l)) if (0..=9).contains(&l) => l,
            (Compression::Gzip, Some(l)) => {
                return Err(Error::Options(format!("gzip level {l} is outside 0..=9")))
            }
            (Compression::Zstd, None) => DEFAULT_ZSTD_LEVEL,
            (Compression::Zstd, Some(l)) if zstd::compression_level_range().contains(&l) => l,
            (Compression::Zstd, Some(l)) => {
                return Err(Error::Options(format!("zstd level {l} is out of range")))
            }
            (other, _) => return Err(Error::Options(format!("unsupported compression {other:?}"))),
        };
        Ok(Codec {
            compression,
            level,
            threads,
            deflate: Deflate::Portable,
        })
    }
}

/// A compressing writer over `W`.
pub(crate) enum Compressor<W: Write> {
    None(W),
    Gzip(Box<GzipWriter<W>>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    pub fn new(inner: W, codec: Codec) -> io::Result<Self> {
        Ok(match codec.compression {
            Compression::Gzip => Compressor::Gzip(Box::new(GzipWriter::new(
                inner,
                flate2::Compression::new(codec.level as u32),
                codec.threads,
                codec.deflate,
            )?)),
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, codec.level)?;
                // Always at least one worker: zstd's output is the same for any
                // worker count >= 1 but differs from the in-line (0) mode, so
                // this keeps digests independent of the machine's core count.
                encoder.multithread(codec.threads.max(1) as u32)?;
                Compressor::Zstd(encoder)
            }
            _ => Compressor::None(inner),
        })
    }

    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            // zstd's flush ends a block; never called mid-stream by the writer.
            Compressor::Zstd(w) => w.get_mut().flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_per_algorithm() {
        assert_eq!(Codec::new(Compression::Gzip, None, 1).unwrap().level, 6);
        assert!(Codec::new(Compression::Gzip, Some(10), 1).is_err());
        assert!(Codec::new(Compression::None, Some(1), 1).is_err());
        assert!(Codec::new(Compression::Zstd, Some(19), 1).is_ok());
        assert!(Codec::new(Compression::Zstd, Some(99), 1).is_err());
        assert!(Codec::new(Compression::Gzip, None, 0).unwrap().threads >= 1);
    }

    #[test]
    fn zstd_output_does_not_depend_on_worker_count() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let run = |threads| {
            let codec = Codec::new(Compression::Zstd, None, threads).unwrap();
            let mut c = Compressor::new(Vec::new(), codec).unwrap();
            c.write_all(&data).unwrap();
            c.finish().unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }
}
