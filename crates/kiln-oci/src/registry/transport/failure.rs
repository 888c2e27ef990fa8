//! Failures below the registry protocol (names that do not resolve,
//! timeouts, broken connections) and answers the caller did not expect,
//! turned into [`RegistryError`]s that name the request, never its query.

use super::host_of;
use crate::registry::error::{display_url, looks_like_html, parse_oci_errors, RegistryError};
use crate::registry::options::RegistryOptions;
use kiln_image_spec::error::chain as error_chain;
use reqwest::{Method, Response};
use std::time::Duration;
use url::Url;

/// Error bodies are read up to this size for their OCI error codes.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Error bodies are abandoned (keeping what arrived) after this long: the
/// answers to uploads are read without a per-read timeout (see
/// `tls::Transport::http_client`), and a stalled error body must not hang a push.
const ERROR_BODY_TIME_LIMIT: Duration = Duration::from_secs(30);

pub(crate) fn parse_url(s: &str) -> Result<Url, RegistryError> {
    Url::parse(s).map_err(|e| RegistryError::Options(format!("bad URL {s:?}: {e}")))
}

/// True when a connection failure's cause chain says the host name did not
/// resolve (the resolver's words as hyper and the C library put them).
fn is_resolve_failure(connect: bool, chain: &str) -> bool {
    let lower = chain.to_ascii_lowercase();
    connect
        && (lower.contains("dns error")
            || lower.contains("failed to lookup address")
            || lower.contains("name or service not known")
            || lower.contains("no address associated with hostname"))
}

/// `5s`, `1500ms`.
fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The message of a request that timed out waiting for `host`, naming the
/// host, the words "timed out", and the knob that sets the limit.
pub(crate) fn timed_out(host: &str, idle: Duration, uploading: bool) -> String {
    let what = if uploading {
        "took no data and sent no answer"
    } else {
        "sent no data"
    };
    format!(
        "timed out: registry {host} {what} for {} (set {} to wait longer)",
        show_duration(idle),
        RegistryOptions::READ_TIMEOUT_ENV
    )
}

pub(super) fn transport_error(
    method: &Method,
    url: &Url,
    e: &reqwest::Error,
    idle: Duration,
) -> RegistryError {
    let chain = error_chain(e);
    if is_resolve_failure(e.is_connect(), &chain) {
        return RegistryError::UnknownHost { host: host_of(url) };
    }
    if e.is_timeout() && !e.is_connect() {
        return RegistryError::Transport {
            method: method.to_string(),
            url: display_url(url),
            message: timed_out(&host_of(url), idle, false),
            timeout: true,
        };
    }
    // reqwest's message repeats the URL with its query; ours shows it once, without.
    let message = chain.replace(url.as_str(), &display_url(url));
    RegistryError::Transport {
        method: method.to_string(),
        url: display_url(url),
        message,
        timeout: e.is_timeout(),
    }
}

/// Reads up to [`ERROR_BODY_LIMIT`] bytes of a body within
/// [`ERROR_BODY_TIME_LIMIT`]; errors end the body where they happen.
pub(crate) async fn read_limited(resp: Response) -> Vec<u8> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    let deadline = tokio::time::Instant::now() + ERROR_BODY_TIME_LIMIT;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        let room = ERROR_BODY_LIMIT.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    out
}

/// Turns an unexpected response into an error.
pub(crate) async fn error_from_response(
    method: &Method,
    url: &Url,
    resp: Response,
) -> RegistryError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_limited(resp).await;
    if looks_like_html(content_type.as_deref(), &body) {
        return RegistryError::Html {
            method: method.to_string(),
            url: display_url(url),
            status,
        };
    }
    RegistryError::Status {
        method: method.to_string(),
        url: display_url(url),
        status,
        errors: parse_oci_errors(&body),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that fails the way the system resolver does for a name
    /// that does not exist, so no lookup leaves the machine.
    struct NoSuchName;

    impl reqwest::dns::Resolve for NoSuchName {
        fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            Box::pin(async {
                Err(Box::new(std::io::Error::other(
                    "failed to lookup address information: Name or service not known",
                ))
                    as Box<dyn std::error::Error + Send + Sync>)
            })
        }
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_are_one_clear_line() {
        let client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(NoSuchName))
            .build()
            .unwrap();
        let url = Url::parse("https://registry.example.invalid:5000/v2/a/manifests/1?x=y").unwrap();
        let e = client.get(url.clone()).send().await.unwrap_err();
        let err = transport_error(&Method::GET, &url, &e, Duration::from_secs(1));
        assert!(matches!(err, RegistryError::UnknownHost { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "unknown registry host registry.example.invalid:5000: the name does not resolve"
        );
        assert!(!err.is_retryable());

        // The classification itself, for the words other resolvers use.
        assert!(is_resolve_failure(
            true,
            "client error (Connect): dns error: No address associated with hostname"
        ));
        assert!(!is_resolve_failure(false, "dns error"));
        assert!(!is_resolve_failure(
            true,
            "tcp connect error: Connection refused (os error 111)"
        ));
    }

    #[test]
    fn timeouts_name_the_host_and_the_knob() {
        assert_eq!(
            timed_out("r.io:5000", Duration::from_millis(1500), false),
            "timed out: registry r.io:5000 sent no data for 1500ms \
             (set KILN_REGISTRY_READ_TIMEOUT to wait longer)"
        );
    }
}
