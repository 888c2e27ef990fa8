//! Opening a layer blob for reading: decompression chosen by media type or by
//! sniffing magic bytes, and the uncompressed stream's sha256 checked against
//! the expected diff_id once it has been read to the end.

use crate::error::{Error, Result};
use crate::inflate::GzipDecoder;
use crate::read_ahead::{self, ReadAhead};
use crate::tap::TapSink;
use kiln_image_spec::media::Compression;
use kiln_image_spec::Digest;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::sync::{Arc, OnceLock};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Guesses a blob's compression from its first bytes: gzip `1f 8b`, zstd
/// `28 b5 2f fd`, anything else plain tar.
pub fn sniff(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The uncompressed tar stream of a layer, hashed as it is read.
///
/// Read it (or hand it to [`crate::list`] / [`crate::extract`]), then call
/// [`LayerReader::finish`]: it reads whatever the tar reader left (trailing
/// zero blocks) and checks the diff_id. Until `finish` succeeds the content
/// must be treated as unverified.
pub struct LayerReader<'a> {
    inner: Box<dyn Read + Send + 'a>,
    hash: StreamHash,
    expected: Option<Digest>,
    label: String,
    /// Where a copy of the stream goes, told the diff_id once verified.
    tap: Option<Box<dyn TapSink>>,
    /// Whether `inner` decompresses (rather than passing a plain tar on).
    decompresses: bool,
}

/// Where the uncompressed stream is hashed.
enum StreamHash {
    /// Here, as the caller reads.
    Here(Sha256),
    /// On a thread of its own, between decompression and the caller's
    /// reads: the caller's thread is the one writing files, the busiest.
    /// The digest is left here once the stream has ended.
    Ahead(Arc<OnceLock<Digest>>),
}

/// Hashes what passes through it; leaves the digest in `out` at the end of
/// the stream.
struct HashedStream {
    inner: Box<dyn Read + Send>,
    hasher: Option<Sha256>,
    out: Arc<OnceLock<Digest>>,
}

impl Read for HashedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(hasher) = self.hasher.as_mut() {
                hasher.update(&buf[..n]);
            }
        } else if !buf.is_empty() {
            // The end of the stream (an empty `buf` reads 0 anywhere).
            if let Some(hasher) = self.hasher.take() {
                let _ = self.out.set(Digest::from_sha256(hasher.finalize().into()));
            }
        }
        Ok(n)
    }
}

impl<'a> LayerReader<'a> {
    /// Wraps a blob stream. `compression` comes from the media type; `None`
    /// sniffs the magic bytes. `label` names the layer in errors (use its
    /// digest).
    pub fn new(
        blob: impl Read + Send + 'a,
        compression: Option<Compression>,
        label: impl Into<String>,
    ) -> Result<Self> {
        let label = label.into();
        let mut blob = blob;
        let mut prefix = Vec::with_capacity(4);
        (&mut blob)
            .take(4)
            .read_to_end(&mut prefix)
            .map_err(|source| Error::Read {
                layer: label.clone(),
                source,
            })?;
        let compression = compression.unwrap_or_else(|| sniff(&prefix));
        let whole = Cursor::new(prefix).chain(blob);
        let (inner, decompresses): (Box<dyn Read + Send + 'a>, bool) = match compression {
            Compression::Gzip => (Box::new(GzipDecoder::new(whole)), true),
            Compression::Zstd => (
                Box::new(zstd::Decoder::new(whole).map_err(|source| Error::Read {
                    layer: label.clone(),
                    source,
                })?),
                true,
            ),
            _ => (Box::new(whole), false),
        };
        Ok(LayerReader {
            inner,
            hash: StreamHash::Here(Sha256::new()),
            expected: None,
            label,
            tap: None,
            decompresses,
        })
    }

    /// Makes [`LayerReader::finish`] fail unless the uncompressed stream's
    /// sha256 is `diff_id`.
    pub fn expect_diff_id(mut self, diff_id: Digest) -> Self {
        self.expected = Some(diff_id);
        self
    }

    /// Hands every byte read from here on to `sink` (the stream from its
    /// start when called before the first read), and the diff_id to it once
    /// [`LayerReader::finish`] has verified it.
    pub fn tap(&mut self, sink: Box<dyn TapSink>) {
        self.tap = Some(sink);
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Reads to the end and returns the diff_id, failing on a mismatch with
    /// the expected one.
    pub fn finish(mut self) -> Result<Digest> {
        io::copy(&mut self, &mut io::sink()).map_err(|source| Error::Read {
            layer: self.label.clone(),
            source,
        })?;
        let actual = match self.hash {
            StreamHash::Here(hasher) => Digest::from_sha256(hasher.finalize().into()),
            StreamHash::Ahead(digest) => digest.get().cloned().ok_or_else(|| Error::Read {
                layer: self.label.clone(),
                source: io::Error::other("the stream ended before it was hashed"),
            })?,
        };
        match self.expected {
            Some(expected) if expected != actual => Err(Error::DiffIdMismatch {
                layer: self.label,
                expected,
                actual,
            }),
            _ => {
                if let Some(tap) = self.tap {
                    tap.finish(&actual);
                }
                Ok(actual)
            }
        }
    }
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let StreamHash::Here(hasher) = &mut self.hash {
            hasher.update(&buf[..n]);
        }
        if let Some(tap) = &mut self.tap {
            tap.write(&buf[..n]);
        }
        Ok(n)
    }
}

/// Opens a blob file; see [`LayerReader::new`]. The label is the file path.
/// Decompression and the diff_id's hash run on two threads of their own,
/// ahead of the caller's reads.
pub fn open_blob(path: &Path, compression: Option<Compression>) -> Result<LayerReader<'static>> {
    let file = File::open(path).map_err(|source| Error::Io {
        action: "open layer blob",
        path: path.into(),
        source,
    })?;
    open_stream(file, compression, path.display().to_string())
}

/// As [`open_blob`], for a blob read from any source (a file still being
/// downloaded); `label` names it in errors.
pub fn open_stream(
    source: impl Read + Send + 'static,
    compression: Option<Compression>,
    label: String,
) -> Result<LayerReader<'static>> {
    let mut reader = LayerReader::new(
        io::BufReader::with_capacity(256 * 1024, source),
        compression,
        label.clone(),
    )?;
    // Three threads in a row, each handing the next buffers of 1 MiB:
    // inflating, hashing the inflated stream, and the caller's (parsing
    // the tar, writing files). On one thread with inflate, the hash made
    // that thread the slowest of the two (the Debian base under perf: the
    // inflate-and-hash thread 55% of the samples, the writer 44%; see
    // `read_ahead::STAGE_DEPTH` for the times). A plain tar has nothing to
    // inflate: its bytes go to the hashing thread as they are read.
    let thread_error = |action| {
        let path = label.clone().into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let mut tar = std::mem::replace(&mut reader.inner, Box::new(io::empty()));
    if reader.decompresses {
        tar = Box::new(
            ReadAhead::spawn(tar, read_ahead::STAGE_DEPTH)
                .map_err(thread_error("start the decompression thread for"))?,
        );
    }
    let digest = Arc::new(OnceLock::new());
    let hashed = HashedStream {
        inner: tar,
        hasher: Some(Sha256::new()),
        out: digest.clone(),
    };
    reader.hash = StreamHash::Ahead(digest);
    reader.inner = Box::new(
        ReadAhead::spawn(Box::new(hashed), read_ahead::DEPTH)
            .map_err(thread_error("start the hashing thread for"))?,
    );
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn sniffs_and_verifies_every_compression() {
        let data = b"not really a tar, but bytes are bytes".repeat(100);
        let diff_id = Digest::sha256_of(&data);
        let blobs = [
            data.clone(),
            gz(&data),
            zstd::encode_all(&data[..], 3).unwrap(),
        ];
        for blob in blobs {
            let mut r = LayerReader::new(&blob[..], None, "l")
                .unwrap()
                .expect_diff_id(diff_id.clone());
            let mut first = [0u8; 10];
            r.read_exact(&mut first).unwrap();
            assert_eq!(&first, &data[..10]);
            assert_eq!(r.finish().unwrap(), diff_id);
        }
    }

    #[test]
    fn mismatched_diff_id_is_reported_with_the_label() {
        let wrong = Digest::sha256_of(b"other");
        let r = LayerReader::new(&b"abc"[..], Some(Compression::None), "sha256:layer").unwrap();
        let err = r.expect_diff_id(wrong).finish().unwrap_err();
        assert!(matches!(err, Error::DiffIdMismatch { .. }));
        assert!(err.to_string().contains("sha256:layer"), "{err}");
    }

    #[test]
    fn tiny_and_empty_blobs_are_plain() {
        assert_eq!(sniff(&[]), Compression::None);
        assert_eq!(sniff(&[0x1f]), Compression::None);
        let r = LayerReader::new(&b""[..], None, "empty").unwrap();
        assert_eq!(r.finish().unwrap(), Digest::sha256_of(b""));
    }

    #[test]
    fn corrupt_gzip_is_a_read_error() {
        let mut blob = gz(&b"x".repeat(5000));
        let mid = blob.len() / 2;
        blob[mid] ^= 0xff;
        let r = LayerReader::new(&blob[..], None, "bad").unwrap();
        assert!(matches!(
            r.finish(),
            Err(Error::Read { .. }) | Err(Error::DiffIdMismatch { .. })
        ));
    }

    #[test]
    fn a_stream_read_ahead_is_hashed_on_its_thread_and_checked() {
        // More than one read-ahead piece, read in sizes that cross them.
        let data: Vec<u8> = (0..(2 << 20) + 777).map(|i| (i % 251) as u8).collect();
        let diff_id = Digest::sha256_of(&data);
        let blob = gz(&data);
        let stream = |blob: &[u8]| {
            open_stream(Cursor::new(blob.to_vec()), None, "sha256:ahead".to_string()).unwrap()
        };
        let mut r = stream(&blob).expect_diff_id(diff_id.clone());
        let mut head = vec![0u8; 12_345];
        r.read_exact(&mut head).unwrap();
        assert_eq!(head, data[..12_345]);
        assert_eq!(r.finish().unwrap(), diff_id, "the rest is read by finish");
        // A plain tar goes straight to the hashing thread.
        let mut r = stream(&data).expect_diff_id(diff_id.clone());
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert!(all == data);
        assert_eq!(r.finish().unwrap(), diff_id);

        let err = stream(&blob)
            .expect_diff_id(Digest::sha256_of(b"other"))
            .finish()
            .unwrap_err();
        assert!(matches!(err, Error::DiffIdMismatch { .. }), "{err}");
        assert!(err.to_string().contains("sha256:ahead"), "{err}");

        let mut cut = blob.clone();
        cut.truncate(blob.len() / 2);
        let err = stream(&cut).expect_diff_id(diff_id).finish().unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
    }
}
