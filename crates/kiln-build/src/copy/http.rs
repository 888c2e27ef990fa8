//! ADD of `http(s)://` URLs: streamed to a scratch file, hashed on the way,
//! checked against `--checksum`. Every wait is bounded (connecting, the
//! answer, each read of the body) and failed downloads are retried with the
//! registry client's policy for pulls.

use kiln_image_spec::error::chain as error_chain;
use kiln_oci::registry::{RetryPolicy, Transient};
use kiln_oci::{Access, Digest, RegistryOptions};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// File name used when the URL path has none, as in BuildKit.
const UNNAMED: &str = "__unnamed__";

/// A downloaded URL source, ready for [`super::plan_copy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedUrl {
    /// The URL.
    pub url: String,
    /// The downloaded body.
    pub path: PathBuf,
    /// Name used when the destination is a directory (last URL path segment).
    pub file_name: String,
    /// `Last-Modified`, seconds since the epoch, when the server sent it.
    pub last_modified: Option<i64>,
    /// sha256 of the body.
    pub digest: Digest,
    /// Body size.
    pub size: u64,
}

/// Why a URL could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection or protocol failure.
    #[error("ADD {url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// The failure with its causes.
        message: String,
        /// True when the connection failed rather than the request being
        /// refused (worth retrying).
        transient: bool,
    },
    /// The server sent nothing for as long as the read timeout allows: no
    /// answer, or a body that stopped moving.
    #[error("ADD {url}: timed out: {host} sent no data for {} (set {} to wait longer)", show_duration(*.after), RegistryOptions::READ_TIMEOUT_ENV)]
    TimedOut {
        /// The URL.
        url: String,
        /// The server, `host[:port]`.
        host: String,
        /// The read timeout.
        after: Duration,
    },
    /// The connection ended before the body was complete.
    #[error("ADD {url}: download broke off after {received}{} bytes: {cause}", .expected.map_or_else(String::new, |e| format!(" of {e}")))]
    BrokeOff {
        /// The URL.
        url: String,
        /// Bytes that arrived.
        received: u64,
        /// Bytes announced (`Content-Length`), when the server said.
        expected: Option<u64>,
        /// What ended it.
        cause: String,
    },
    /// The server answered with a non-success status.
    #[error("ADD {url}: server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The body's digest differs from `--checksum`.
    #[error("ADD {url}: checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// `--checksum`.
        expected: Digest,
        /// What was downloaded.
        actual: Digest,
    },
    /// `--checksum` uses an algorithm kiln does not verify.
    #[error("ADD {url}: unsupported --checksum algorithm in {checksum} (only sha256)")]
    UnsupportedChecksum {
        /// The URL.
        url: String,
        /// The checksum given.
        checksum: Digest,
    },
    /// Writing the scratch file failed.
    #[error("ADD {url}: writing {path}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The scratch file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The HTTP client could not be made.
    #[error("HTTP client for ADD: {0}")]
    Client(String),
}

impl Transient for FetchError {
    /// As for registry requests: timeouts, broken connections, refused
    /// connections, 5xx, 429 and 408.
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Http { transient, .. } => *transient,
            FetchError::TimedOut { .. } | FetchError::BrokeOff { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// Downloads `ADD` URLs with bounded waits and retries; cheap to clone.
#[derive(Debug, Clone)]
pub struct UrlFetcher {
    client: reqwest::Client,
    read_timeout: Duration,
    retry: RetryPolicy,
}

impl UrlFetcher {
    /// A fetcher that waits as the registry client of `options` does: its
    /// connect timeout, its read timeout (which bounds the wait for the
    /// answer and each read of the body, never the whole transfer), and its
    /// retries for pulls (`--image-download-retry`).
    ///
    /// # Errors
    /// [`FetchError::Client`] when the HTTP client cannot be built.
    pub fn new(options: &RegistryOptions) -> Result<UrlFetcher, FetchError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(UrlFetcher {
            client,
            read_timeout: options.read_timeout,
            retry: options.retry_policy(Access::Pull),
        })
    }

    /// Downloads `url` into a new file under `scratch_dir`, verifying
    /// `checksum` (sha256) when given. The body is streamed, never held in
    /// memory; a failed attempt leaves no file behind.
    ///
    /// # Errors
    /// [`FetchError`], naming the URL; timeouts and broken transfers say
    /// how long the server was silent or how many bytes of how many came.
    pub async fn fetch(
        &self,
        url: &str,
        checksum: Option<&Digest>,
        scratch_dir: &Path,
    ) -> Result<FetchedUrl, FetchError> {
        if let Some(c) = checksum {
            if c.algorithm() != kiln_oci::digest::Algorithm::Sha256 {
                return Err(FetchError::UnsupportedChecksum {
                    url: url.to_string(),
                    checksum: c.clone(),
                });
            }
        }
        self.retry
            .run("ADD download", || {
                self.fetch_once(url, checksum, scratch_dir)
            })
            .await
    }

    async fn fetch_once(
        &self,
        url: &str,
        checksum: Option<&Digest>,
        scratch_dir: &Path,
    ) -> Result<FetchedUrl, FetchError> {
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.request_error(url, &e))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let last_modified = resp
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let file_name = file_name_of(resp.url().as_str()).unwrap_or_else(|| UNNAMED.to_string());
        let expected = resp.content_length();
        let path = tempfile::Builder::new()
            .prefix("url-")
            .tempfile_in(scratch_dir)
            .and_then(|t| t.keep().map_err(|e| e.error))
            .map_err(|source| FetchError::Io {
                url: url.to_string(),
                path: scratch_dir.to_path_buf(),
                source,
            })?
            .1;
        let io = |source| FetchError::Io {
            url: url.to_string(),
            path: path.clone(),
            source,
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let written = async {
            let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
            loop {
                let chunk = resp.chunk().await.map_err(|e| {
                    if e.is_timeout() {
                        self.timed_out(url)
                    } else {
                        FetchError::BrokeOff {
                            url: url.to_string(),
                            received: size,
                            expected,
                            cause: body_failure(&e),
                        }
                    }
                })?;
                let Some(chunk) = chunk else { break };
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.flush().await.map_err(io)
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        let digest = Digest::from_sha256(hasher.finalize().into());
        if let Some(expected) = checksum {
            if *expected != digest {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(FetchError::ChecksumMismatch {
                    url: url.to_string(),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        Ok(FetchedUrl {
            url: url.to_string(),
            path,
            file_name,
            last_modified,
            digest,
            size,
        })
    }

    fn timed_out(&self, url: &str) -> FetchError {
        FetchError::TimedOut {
            url: url.to_string(),
            host: host_of(url),
            after: self.read_timeout,
        }
    }

    /// The error of a request that got no answer.
    fn request_error(&self, url: &str, e: &reqwest::Error) -> FetchError {
        if e.is_timeout() && !e.is_connect() {
            return self.timed_out(url);
        }
        FetchError::Http {
            url: url.to_string(),
            message: error_chain(e),
            transient: e.is_connect() || e.is_timeout() || e.is_request(),
        }
    }
}

/// `host[:port]` of a URL, for messages.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_else(|| url.to_string())
}

/// What ended a body early, in words rather than reqwest's "error decoding
/// response body".
fn body_failure(e: &reqwest::Error) -> String {
    let chain = error_chain(e);
    if chain.contains("end of file") || chain.contains("IncompleteBody") {
        "the server closed the connection early".to_string()
    } else {
        chain
    }
}

/// `5s`, `1500ms`.
fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The last non-empty path segment of a URL, the name Docker gives the file.
fn file_name_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    // Like Go's path.Base: trailing slashes do not count.
    parsed
        .path_segments()?
        .rfind(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_how_much_arrived_and_what_is_retried() {
        let broke = |expected| FetchError::BrokeOff {
            url: "http://h/x".into(),
            received: 400,
            expected,
            cause: "the server closed the connection early".into(),
        };
        assert_eq!(
            broke(Some(1000)).to_string(),
            "ADD http://h/x: download broke off after 400 of 1000 bytes: \
             the server closed the connection early"
        );
        assert_eq!(
            broke(None).to_string(),
            "ADD http://h/x: download broke off after 400 bytes: \
             the server closed the connection early"
        );
        let timed_out = FetchError::TimedOut {
            url: "http://h:81/x".into(),
            host: "h:81".into(),
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            timed_out.to_string(),
            "ADD http://h:81/x: timed out: h:81 sent no data for 1500ms \
             (set KILN_REGISTRY_READ_TIMEOUT to wait longer)"
        );
        let status = |status| FetchError::Status {
            url: "u".into(),
            status,
        };
        assert!(broke(None).is_transient() && timed_out.is_transient());
        assert!(status(503).is_transient() && status(429).is_transient());
        assert!(!status(404).is_transient() && !status(403).is_transient());
        assert_eq!(host_of("https://h.example/a"), "h.example");
    }

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name_of("https://h/x/tool.tar.gz?sig=1").as_deref(),
            Some("tool.tar.gz")
        );
        assert_eq!(file_name_of("https://h/"), None);
        assert_eq!(file_name_of("https://h/dir/").as_deref(), Some("dir"));
    }
}
