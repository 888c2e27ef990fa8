//! One HTTP client per host policy (TLS roots, client certificate,
//! verification skipped for insecure hosts, the read timeout for requests
//! without a body) and the scheme a host is reached at.

use super::failure::parse_url;
use super::{lock, Transport};
use crate::registry::error::RegistryError;
use crate::registry::options::{Access, HostPolicy};
use std::time::Duration;
use url::Url;

impl Transport {
    /// The client for `policy`; `uploading` for requests that send a body.
    ///
    /// reqwest's read timeout resets on every read of a response body, which
    /// is what downloads need, but until the response head arrives it is one
    /// deadline counted from the start of the request, upload included: a
    /// 30 MiB chunk on a slow link would time out although bytes never
    /// stopped moving. So uploads get a client without it, and
    /// `request::idle_bounded` watches them instead, resetting whenever the
    /// connection takes a piece of the body.
    pub(super) fn http_client(
        &self,
        policy: &HostPolicy,
        uploading: bool,
    ) -> Result<reqwest::Client, RegistryError> {
        let key = (policy.clone(), uploading);
        if let Some(c) = lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.options.user_agent.clone())
            .connect_timeout(self.options.connect_timeout)
            .danger_accept_invalid_certs(policy.skip_verify || policy.insecure);
        if !uploading {
            b = b.read_timeout(self.options.read_timeout);
        }
        if let Some(ca) = &policy.ca {
            let pem = std::fs::read(ca).map_err(|source| RegistryError::Io {
                path: ca.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Options(format!("CA certificate {}: {e}", ca.display()))
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = &policy.client_cert {
            let mut pem = std::fs::read(cert).map_err(|source| RegistryError::Io {
                path: cert.clone(),
                source,
            })?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|source| RegistryError::Io {
                path: key.clone(),
                source,
            })?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                RegistryError::Options(format!("client certificate {}: {e}", cert.display()))
            })?;
            b = b.identity(id);
        }
        let client = b
            .build()
            .map_err(|e| RegistryError::Options(format!("HTTP client: {e}")))?;
        lock(&self.clients).insert(key, client.clone());
        Ok(client)
    }

    /// `https://host/` or, for insecure hosts that do not speak TLS,
    /// `http://host/`.
    pub async fn base_url(&self, host: &str, access: Access) -> Result<Url, RegistryError> {
        let key = (host.to_string(), access);
        if let Some(u) = lock(&self.bases).get(&key) {
            return Ok(u.clone());
        }
        let https = parse_url(&format!("https://{host}/"))?;
        let policy = self.options.policy(host, access);
        let base = if policy.insecure {
            // Docker's rule for insecure registries: HTTPS when it works,
            // else plain HTTP.
            let client = self.http_client(&policy, false)?;
            let probe = client
                .get(
                    https
                        .join("v2/")
                        .map_err(|e| RegistryError::Options(e.to_string()))?,
                )
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match probe {
                Ok(_) => https,
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                    tracing::debug!(host, "HTTPS failed on an insecure registry; using HTTP");
                    parse_url(&format!("http://{host}/"))?
                }
                Err(_) => https,
            }
        } else {
            https
        };
        lock(&self.bases).insert(key, base.clone());
        Ok(base)
    }
}
