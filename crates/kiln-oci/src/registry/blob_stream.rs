//! A blob download as a stream of chunks that checks size and digest as the
//! bytes pass: a mismatch is the stream's last item, so a consumer that
//! reads to the end cannot miss it.

use super::error::RegistryError;
use crate::digest::{Algorithm, Digest};
use bytes::Bytes;
use futures::Stream;
use sha2::Digest as _;
use std::pin::Pin;
use std::task::{Context, Poll};

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn for_digest(d: &Digest) -> Hasher {
        match d.algorithm() {
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            _ => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    fn finish(&mut self) -> Option<Digest> {
        match self {
            Hasher::Sha256(h) => Some(Digest::from_sha256(std::mem::take(h).finalize().into())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(std::mem::take(h).finalize()))
                .parse()
                .ok(),
        }
    }
}

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// The body of a blob, verified against its digest (and size, when known)
/// while it streams.
pub struct BlobStream {
    inner: Inner,
    hasher: Hasher,
    expected: Digest,
    expected_size: Option<u64>,
    /// The response's `Content-Length`, for saying how much is missing when
    /// the size is not known otherwise.
    announced: Option<u64>,
    seen: u64,
    url: String,
    done: bool,
}

impl BlobStream {
    pub(crate) fn new(
        response: reqwest::Response,
        expected: Digest,
        expected_size: Option<u64>,
        url: String,
    ) -> BlobStream {
        BlobStream {
            announced: response.content_length(),
            inner: Box::pin(response.bytes_stream()),
            hasher: Hasher::for_digest(&expected),
            expected,
            expected_size,
            seen: 0,
            url,
            done: false,
        }
    }

    /// The digest being verified.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// Bytes received so far.
    pub fn bytes_read(&self) -> u64 {
        self.seen
    }

    /// The stream as an `AsyncRead`; verification errors surface as
    /// `io::Error`s wrapping the [`RegistryError`].
    pub fn into_async_read(self) -> impl tokio::io::AsyncRead + Send + Unpin {
        use futures::TryStreamExt;
        tokio_util::io::StreamReader::new(self.map_err(std::io::Error::other))
    }

    /// Reads the whole blob into memory (for configs and small blobs).
    ///
    /// # Errors
    /// Transfer or verification errors, or [`RegistryError::TooLarge`] past `limit`.
    pub async fn collect(mut self, limit: u64) -> Result<Bytes, RegistryError> {
        use futures::StreamExt;
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(RegistryError::TooLarge {
                    url: self.url.clone(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    fn fail(&mut self, e: RegistryError) -> Poll<Option<Result<Bytes, RegistryError>>> {
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if let Some(size) = self.expected_size.filter(|s| self.seen > *s) {
                    let e = RegistryError::SizeMismatch {
                        digest: self.expected.clone(),
                        expected: size,
                        actual: self.seen,
                        url: self.url.clone(),
                    };
                    return self.fail(e);
                }
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let err = RegistryError::Transport {
                    method: "GET".into(),
                    url: self.url.clone(),
                    message: broke_off(
                        &format!("download of {}", self.expected),
                        self.seen,
                        self.expected_size.or(self.announced),
                        &e,
                    ),
                    timeout: e.is_timeout(),
                };
                self.fail(err)
            }
            Poll::Ready(None) => {
                self.done = true;
                if let Some(size) = self.expected_size.filter(|s| self.seen != *s) {
                    let e = RegistryError::SizeMismatch {
                        digest: self.expected.clone(),
                        expected: size,
                        actual: self.seen,
                        url: self.url.clone(),
                    };
                    return Poll::Ready(Some(Err(e)));
                }
                match self.hasher.finish() {
                    Some(actual) if actual != self.expected => {
                        let e = RegistryError::DigestMismatch {
                            expected: self.expected.clone(),
                            actual,
                            url: self.url.clone(),
                        };
                        Poll::Ready(Some(Err(e)))
                    }
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}

/// What to say about a transfer (`what`: `download of sha256:…`) whose
/// connection failed after `seen` bytes of `total`: how much arrived, then
/// the cause (reqwest's own words,
/// "error decoding response body", say neither).
pub(crate) fn broke_off(what: &str, seen: u64, total: Option<u64>, e: &reqwest::Error) -> String {
    let of = total.map_or_else(String::new, |t| format!(" of {t}"));
    let cause = kiln_image_spec::error::chain(e);
    let cause = if e.is_timeout() {
        "the connection stalled".to_string()
    } else if cause.contains("end of file") || cause.contains("IncompleteBody") {
        "the server closed the connection early".to_string()
    } else {
        cause
    };
    format!("{what} broke off after {seen}{of} bytes: {cause}")
}
