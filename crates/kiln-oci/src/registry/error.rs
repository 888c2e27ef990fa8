//! The registry client's error type.

use crate::auth::AuthError;
use crate::digest::Digest;
use crate::manifest::ManifestError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One entry of a registry's JSON error body (`{"errors":[{"code":…}]}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct OciError {
    /// The spec's error code (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `DENIED`, …).
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

/// The OCI error list, displayed as `: CODE: message; CODE: message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciErrors(pub Vec<OciError>);

impl fmt::Display for OciErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => write!(f, "{}: {}", e.code, e.message)?,
                (false, true) => f.write_str(&e.code)?,
                (true, _) => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

/// What went wrong talking to a registry. URLs in errors never carry
/// credentials or query strings (upload URLs hold signed state).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry wants credentials we do not have or that it rejected.
    #[error("authentication required for {repository} on {host} (HTTP {status}): check credentials{detail}")]
    Unauthorized {
        /// Registry host.
        host: String,
        /// Repository path.
        repository: String,
        /// HTTP status (401).
        status: u16,
        /// The registry's error codes, if any.
        detail: OciErrors,
    },
    /// The credentials were accepted but lack permission.
    #[error("authentication denied for {repository} on {host} (HTTP {status}): check credentials and permissions{detail}")]
    Denied {
        /// Registry host.
        host: String,
        /// Repository path.
        repository: String,
        /// HTTP status (403).
        status: u16,
        /// The registry's error codes, if any.
        detail: OciErrors,
    },
    /// The registry refused a token the token server had just issued, even
    /// after the cached one was dropped and a new one fetched: the two
    /// disagree (signing key, issuer or service name, or their clocks).
    #[error("registry {host} rejected a new token for {repository} from token server {realm} (HTTP 401, {reason}): the token server and the registry disagree; check the registry's token settings (issuer, service, signing certificate) and both clocks")]
    TokenRejected {
        /// Registry host.
        host: String,
        /// Repository path.
        repository: String,
        /// The token server URL (no query).
        realm: String,
        /// The challenge's `error` (and `error_description`), e.g. `invalid_token`.
        reason: String,
    },
    /// A blob uploaded while it was being written was never completed:
    /// its writer failed, and says why itself. The upload was cancelled.
    #[error("the blob was not uploaded: its writer did not complete it")]
    SourceFailed,
    /// A request got an unexpected status.
    #[error("{method} {url}: HTTP {status}{errors}")]
    Status {
        /// HTTP method.
        method: String,
        /// Request URL (no query, no credentials).
        url: String,
        /// HTTP status.
        status: u16,
        /// The registry's error codes, if any.
        errors: OciErrors,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The server answered with a web page: usually a proxy, a login page,
    /// or a host that is not a registry.
    #[error("{method} {url}: the server answered with an HTML page (HTTP {status}), not the registry API; is this the right registry host, or is a proxy in the way?")]
    Html {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The host name does not resolve.
    #[error("unknown registry host {host}: the name does not resolve")]
    UnknownHost {
        /// The host.
        host: String,
    },
    /// Connecting, TLS, or the transfer failed.
    #[error("{method} {url}: {message}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// What failed (the full cause chain).
        message: String,
        /// True when the request timed out.
        timeout: bool,
    },
    /// A registry reached over HTTPS pointed kiln at plain HTTP (a redirect,
    /// or an upload `Location`): nothing is sent there.
    #[error("registry {host} is reached over HTTPS but sent {what} to plain HTTP {target}: refusing to follow it, since credentials and content would travel unencrypted (a registry behind a TLS proxy that does not know its external URL does this; fix that, or pass --insecure-registry {host} to follow such links without credentials)")]
    Downgrade {
        /// The registry host.
        host: String,
        /// `a redirect` or `an upload location`.
        what: &'static str,
        /// Where it pointed (no query).
        target: String,
    },
    /// A Bearer challenge names a plain-HTTP token server, and kiln has
    /// credentials it would have to send there.
    #[error("registry {host} asks for credentials at token server {realm}, which is plain HTTP: refusing to send them unencrypted (pass --insecure-registry {host} if the token server is meant to be used over HTTP)")]
    InsecureRealm {
        /// The registry host.
        host: String,
        /// The token server URL (no query).
        realm: String,
    },
    /// An image asks for more work than kiln does for one image.
    #[error("image {image}: {what}; kiln's limit is {limit}")]
    ImageLimit {
        /// The image reference.
        image: String,
        /// What was too large or too many (`the manifest lists 20000 layers`).
        what: String,
        /// The limit, with its unit and reason.
        limit: String,
    },
    /// Content did not match its digest.
    #[error("content of {expected} from {url} has digest {actual}: refusing corrupt or substituted content")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
        /// Where it came from.
        url: String,
    },
    /// Content did not have the expected size.
    #[error("content of {digest} from {url} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The digest asked for.
        digest: Digest,
        /// The expected size.
        expected: u64,
        /// The size that arrived (so far, when too large).
        actual: u64,
        /// Where it came from.
        url: String,
    },
    /// A manifest or config document is too large to be one.
    #[error("{url}: document is larger than {limit} bytes")]
    TooLarge {
        /// Where it came from.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A manifest, index or config could not be parsed.
    #[error("{what} from {url}: {source}")]
    Document {
        /// What was being read.
        what: String,
        /// Where it came from.
        url: String,
        /// The parse error.
        #[source]
        source: ManifestError,
    },
    /// An index has no manifest for the wanted platform.
    #[error("{reference} has no image for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// The token server's answer was unusable.
    #[error("token server {realm}: {message}")]
    Token {
        /// The token server URL (no query).
        realm: String,
        /// What was wrong.
        message: String,
    },
    /// A registry answered in a way the protocol does not allow.
    #[error("{method} {url}: {message}")]
    Protocol {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Credentials could not be read.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Client options are invalid.
    #[error("invalid registry option: {0}")]
    Options(String),
}

impl RegistryError {
    /// True for failures worth retrying: 5xx, 429, 408, connection errors
    /// and timeouts, and content that arrived damaged (wrong digest or
    /// size: a flaky link or proxy; the retry is verified again).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            RegistryError::Transport { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::SizeMismatch { .. } => true,
            RegistryError::Html { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The HTTP status, when the error came from a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::TokenRejected { .. } => Some(401),
            RegistryError::Unauthorized { status, .. }
            | RegistryError::Denied { status, .. }
            | RegistryError::Status { status, .. }
            | RegistryError::Html { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for 404 answers.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// How long the server asked us to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The OCI error codes the registry sent, if any.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            RegistryError::Status { errors, .. }
            | RegistryError::Unauthorized { detail: errors, .. }
            | RegistryError::Denied { detail: errors, .. } => {
                errors.0.iter().map(|e| e.code.as_str()).collect()
            }
            _ => Vec::new(),
        }
    }
}

impl super::retry::Transient for RegistryError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }

    fn wait_hint(&self) -> Option<Duration> {
        self.retry_after()
    }
}

/// `scheme://host[:port]/path` of `url`: no credentials, no query.
pub(crate) fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Parses a registry error body; empty when it is not the spec's JSON.
pub(crate) fn parse_oci_errors(body: &[u8]) -> OciErrors {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<OciError>,
    }
    OciErrors(
        serde_json::from_slice::<Body>(body)
            .map(|b| b.errors)
            .unwrap_or_default(),
    )
}

/// True when a response body looks like a web page.
pub(crate) fn looks_like_html(content_type: Option<&str>, body: &[u8]) -> bool {
    if content_type.is_some_and(|c| c.to_ascii_lowercase().starts_with("text/html")) {
        return true;
    }
    let start: Vec<u8> = body
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(15)
        .map(u8::to_ascii_lowercase)
        .collect();
    start.starts_with(b"<!doctype html") || start.starts_with(b"<html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_error_bodies_and_html() {
        let e = parse_oci_errors(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}},{"code":"X"}]}"#,
        );
        assert_eq!(e.to_string(), ": MANIFEST_UNKNOWN: manifest unknown; X");
        assert!(parse_oci_errors(b"nope").0.is_empty());
        assert!(looks_like_html(None, b"\n  <!DOCTYPE html><html>"));
        assert!(looks_like_html(Some("text/html; charset=utf-8"), b""));
        assert!(!looks_like_html(Some("application/json"), b"{}"));
    }

    #[test]
    fn urls_lose_credentials_and_query() {
        let u =
            url::Url::parse("https://user:pw@r.io/v2/x/blobs/uploads/abc?_state=secret&digest=1")
                .unwrap();
        assert_eq!(display_url(&u), "https://r.io/v2/x/blobs/uploads/abc");
    }

    #[test]
    fn retryable_classification() {
        let status = |s| RegistryError::Status {
            method: "GET".into(),
            url: "u".into(),
            status: s,
            errors: OciErrors::default(),
            retry_after: None,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(status(404).is_not_found());
        let unauth = RegistryError::Unauthorized {
            host: "h".into(),
            repository: "r".into(),
            status: 401,
            detail: OciErrors::default(),
        };
        assert!(!unauth.is_retryable());
        assert_eq!(
            unauth.to_string(),
            "authentication required for r on h (HTTP 401): check credentials"
        );
    }
}
