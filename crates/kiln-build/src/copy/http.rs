//! ADD of `http(s)://` URLs: streamed to a scratch file, hashed on the way,
//! checked against `--checksum`.

use kiln_oci::Digest;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
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
    #[error("ADD {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
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
}

/// Downloads `url` into a new file under `scratch_dir`, verifying `checksum`
/// (sha256) when given. The body is streamed, never held in memory.
pub async fn fetch_url(
    client: &reqwest::Client,
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
    let http = |source| FetchError::Http {
        url: url.to_string(),
        source,
    };
    let mut resp = client.get(url).send().await.map_err(http)?;
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
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
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
    fn names_from_urls() {
        assert_eq!(
            file_name_of("https://h/x/tool.tar.gz?sig=1").as_deref(),
            Some("tool.tar.gz")
        );
        assert_eq!(file_name_of("https://h/"), None);
        assert_eq!(file_name_of("https://h/dir/").as_deref(), Some("dir"));
    }
}
