//! Following redirects by hand, so that credentials stay with the
//! registry's origin and a registry reached over TLS cannot send a request
//! (or its body) to plain HTTP unless the host was declared insecure.

use super::failure::{timed_out, transport_error};
use super::request::idle_bounded;
use super::{host_of, Body, Req, Scope, Transport};
use crate::registry::error::{display_url, RegistryError};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, Response, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const MAX_REDIRECTS: usize = 10;

impl Transport {
    pub(super) async fn send_following_redirects(
        &self,
        scope: &Scope,
        req: &Req,
        auth: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let access = scope.access;
        // Credentials belong to the registry's origin: the scheme, host and
        // port kiln reached it at (default ports filled in, so
        // `https://r.io` and `https://r.io:443` are one origin and
        // `http://r.io:443` another). Every other origin (a storage
        // redirect, an upload `Location` elsewhere) gets none.
        let base = self.base_url(&scope.host, access).await?;
        let trusted = base.origin();
        let insecure = self.options.policy(&scope.host, access).insecure;
        let mut url = req.url.clone();
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        // The scheme of the hop before: the registry's own, for the first.
        let mut came_over_tls = base.scheme() == "https";
        for hop in 0..=MAX_REDIRECTS {
            if !matches!(url.scheme(), "https" | "http") {
                return Err(RegistryError::Protocol {
                    method: method.to_string(),
                    url: display_url(&req.url),
                    message: format!("{} is not an HTTP(S) URL", display_url(&url)),
                });
            }
            // A registry reached over TLS that points at plain HTTP is
            // either misconfigured or hostile; only a registry the user
            // declared insecure is followed there (still without
            // credentials, which never cross origins).
            if came_over_tls && url.scheme() == "http" && !insecure {
                return Err(RegistryError::Downgrade {
                    host: scope.host.clone(),
                    what: if hop == 0 {
                        "an upload Location or Link header"
                    } else {
                        "a redirect"
                    },
                    target: display_url(&url),
                });
            }
            came_over_tls = url.scheme() == "https";
            let host = host_of(&url);
            let uploading = !matches!(body, Body::Empty);
            let client = self.http_client(&self.options.policy(&host, access), uploading)?;
            let mut headers = req.headers.clone();
            if let Some(a) = auth.filter(|_| url.origin() == trusted) {
                if let Ok(v) = HeaderValue::from_str(a) {
                    headers.insert(AUTHORIZATION, v);
                }
            }
            if !matches!(body, Body::Empty)
                || method == Method::PUT
                || method == Method::POST
                || method == Method::PATCH
            {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
            tracing::debug!(method = %method, url = %display_url(&url), "registry request");
            let moved = Arc::new(Mutex::new(Instant::now()));
            let sending = client
                .request(method.clone(), url.clone())
                .headers(headers)
                .body(body.to_reqwest(&moved).await?)
                .send();
            let idle = self.options.read_timeout;
            let sent = if uploading {
                idle_bounded(sending, &moved, idle).await.ok_or_else(|| {
                    RegistryError::Transport {
                        method: method.to_string(),
                        url: display_url(&url),
                        message: timed_out(&host, idle, true),
                        timeout: true,
                    }
                })?
            } else {
                sending.await
            };
            let resp = sent.map_err(|e| transport_error(&method, &url, &e, idle))?;
            let status = resp.status();
            tracing::debug!(status = status.as_u16(), url = %display_url(&url), "registry response");
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let Some(location) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
                return Ok(resp);
            };
            url = url.join(location).map_err(|e| RegistryError::Protocol {
                method: method.to_string(),
                url: display_url(&url),
                message: format!("bad redirect Location: {e}"),
            })?;
            if status == StatusCode::SEE_OTHER {
                method = Method::GET;
                body = Body::Empty;
            }
        }
        Err(RegistryError::Protocol {
            method: req.method.to_string(),
            url: display_url(&req.url),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    /// The comparison that decides where credentials go: scheme, host and
    /// port, default ports filled in, host names case-insensitive.
    #[test]
    fn origins_compare_scheme_host_and_port_with_default_ports() {
        let o = |s: &str| Url::parse(s).unwrap().origin();
        assert_eq!(o("https://r.io/v2/"), o("https://r.io:443/v2/a/blobs/x"));
        assert_eq!(o("http://r.io/"), o("http://r.io:80/"));
        assert_eq!(o("https://R.IO/"), o("https://r.io/"));
        assert_ne!(o("https://r.io/"), o("http://r.io/"));
        assert_ne!(o("https://r.io:443/"), o("http://r.io:443/"));
        assert_ne!(o("https://r.io:5000/"), o("http://r.io:5000/"));
        assert_ne!(o("https://r.io/"), o("https://r.io:5000/"));
        assert_ne!(o("https://r.io/"), o("https://storage.r.io/"));
    }
}
