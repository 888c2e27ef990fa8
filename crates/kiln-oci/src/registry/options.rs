//! Registry client options (Kaniko's registry flags) and the per-host
//! policy derived from them.

use super::error::RegistryError;
use super::retry::RetryPolicy;
use crate::auth::{normalize_host, CredentialStore};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Whether a repository is used as a source or as a destination. Decides
/// token scopes, which insecure/TLS flags apply, retry counts, and whether
/// mirrors are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only (base images, cache lookups): `pull` scope, mirrors apply.
    Pull,
    /// Read and write (destinations, cache pushes): `pull,push` scope.
    Push,
}

/// A client certificate and key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientCert {
    /// The certificate (chain) PEM file.
    pub cert: PathBuf,
    /// The private key PEM file.
    pub key: PathBuf,
}

/// Options for [`RegistryClient`](super::RegistryClient): what Kaniko's
/// registry flags resolve to, for a build as for `warm`, `cache prune` and
/// `push`. Hosts are compared after normalisation (`index.docker.io` =
/// `docker.io`, scheme and path ignored). Serialised without secrets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegistryOptions {
    /// Push destinations may use plain HTTP or unverified HTTPS (`--insecure`).
    pub insecure: bool,
    /// Pull sources may use plain HTTP (`--insecure-pull`).
    pub insecure_pull: bool,
    /// Hosts that may use plain HTTP either way (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Skip TLS verification for push destinations (`--skip-tls-verify`).
    pub skip_tls_verify: bool,
    /// Skip TLS verification for pull sources (`--skip-tls-verify-pull`).
    pub skip_tls_verify_pull: bool,
    /// Hosts whose TLS is never verified (`--skip-tls-verify-registry`).
    pub skip_tls_verify_registries: Vec<String>,
    /// Extra CA certificates (PEM) per host (`--registry-certificate H=PATH`).
    pub ca_certificates: BTreeMap<String, PathBuf>,
    /// Client certificates per host (`--registry-client-cert H=CERT,KEY`).
    pub client_certificates: BTreeMap<String, ClientCert>,
    /// Mirrors for Docker Hub pulls, `host[/path-prefix]`, tried in order
    /// before Docker Hub (`--registry-mirror`).
    pub mirrors: Vec<String>,
    /// Don't fall back to Docker Hub when every mirror failed
    /// (`--skip-default-registry-fallback`).
    pub skip_default_registry_fallback: bool,
    /// Registries whose pulls go to other registries first, in order
    /// (`--registry-map`); see [`super::parse_pull_routes`].
    pub registry_maps: BTreeMap<String, Vec<String>>,
    /// Extra attempts for push operations (`--push-retry`).
    pub push_retries: u32,
    /// Extra attempts for pull operations (`--image-fs-extract-retry` / pull retry).
    pub pull_retries: u32,
    /// First backoff delay; doubles per attempt (a `Retry-After` wins).
    pub retry_initial_delay: Duration,
    /// The longest backoff delay.
    pub retry_max_delay: Duration,
    /// Blobs up to this size go in one PUT; larger ones in PATCH chunks.
    pub monolithic_upload_limit: u64,
    /// Chunk size for chunked uploads.
    pub upload_chunk_size: u64,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// How long a request may go without any byte moving (response headers
    /// not arriving, a response body that stops, an upload the registry
    /// stops taking) before it fails as timed out, a transient error that is
    /// retried. It bounds each wait, never a whole transfer, so a large blob
    /// on a slow link still goes through. Defaults to
    /// [`RegistryOptions::DEFAULT_READ_TIMEOUT`], or to
    /// [`RegistryOptions::READ_TIMEOUT_ENV`] when that is set.
    pub read_timeout: Duration,
    /// Sent as `User-Agent`.
    pub user_agent: String,
    /// Where credentials come from.
    pub credentials: CredentialStore,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: false,
            insecure_pull: false,
            insecure_registries: Vec::new(),
            skip_tls_verify: false,
            skip_tls_verify_pull: false,
            skip_tls_verify_registries: Vec::new(),
            ca_certificates: BTreeMap::new(),
            client_certificates: BTreeMap::new(),
            mirrors: Vec::new(),
            skip_default_registry_fallback: false,
            registry_maps: BTreeMap::new(),
            push_retries: 0,
            pull_retries: 0,
            retry_initial_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            monolithic_upload_limit: 64 * 1024 * 1024,
            upload_chunk_size: 32 * 1024 * 1024,
            connect_timeout: Duration::from_secs(30),
            read_timeout: read_timeout_from_env()
                .ok()
                .flatten()
                .unwrap_or(RegistryOptions::DEFAULT_READ_TIMEOUT),
            user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
            credentials: CredentialStore::anonymous(),
        }
    }
}

/// How to talk to one host for one kind of access. As in Docker, an
/// insecure host is tried over HTTPS first (without verifying its
/// certificate) and over plain HTTP when HTTPS fails.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HostPolicy {
    /// Plain HTTP allowed (HTTPS is tried first).
    pub insecure: bool,
    /// Accept any server certificate.
    pub skip_verify: bool,
    /// Extra CA file.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The read timeout from [`RegistryOptions::READ_TIMEOUT_ENV`]: `None` when
/// it is unset or empty.
fn read_timeout_from_env() -> Result<Option<Duration>, RegistryError> {
    let name = RegistryOptions::READ_TIMEOUT_ENV;
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_seconds(v.trim()).map(Some).ok_or_else(|| {
            RegistryError::Options(format!("{name}={v:?} is not a positive number of seconds"))
        }),
        _ => Ok(None),
    }
}

/// `2`, `0.5`: a positive, finite number of seconds.
fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.parse().ok()?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
}

impl RegistryOptions {
    /// The read timeout by default: long enough for a registry that is slow
    /// to answer a large manifest PUT or to assemble a blob, short enough
    /// that a dead connection is noticed within a minute.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

    /// The environment variable that overrides the default read timeout, in
    /// seconds (`0.5` allowed). There is no flag for it: it is a knob for
    /// unusual links and for tests that need stalls to time out quickly.
    pub const READ_TIMEOUT_ENV: &'static str = "KILN_REGISTRY_READ_TIMEOUT";

    /// Rejects options that cannot work before any request is made.
    pub(crate) fn validate(&self) -> Result<(), RegistryError> {
        if self.upload_chunk_size == 0 {
            return Err(RegistryError::Options(
                "upload chunk size must be positive".into(),
            ));
        }
        if self.read_timeout.is_zero() {
            return Err(RegistryError::Options(
                "read timeout must be positive".into(),
            ));
        }
        // A malformed value was ignored by `Default`; say so rather than
        // silently using 60 seconds.
        read_timeout_from_env()?;
        for (host, path) in &self.ca_certificates {
            if !path.is_file() {
                return Err(RegistryError::Options(format!(
                    "CA certificate for {host} not found: {}",
                    path.display()
                )));
            }
        }
        for (host, c) in &self.client_certificates {
            for p in [&c.cert, &c.key] {
                if !p.is_file() {
                    return Err(RegistryError::Options(format!(
                        "client certificate file for {host} not found: {}",
                        p.display()
                    )));
                }
            }
        }
        if self.skip_default_registry_fallback && self.mirrors.is_empty() {
            return Err(RegistryError::Options(
                "skipping the Docker Hub fallback needs at least one mirror".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn policy(&self, host: &str, access: Access) -> HostPolicy {
        let h = normalize_host(host);
        let listed = |hosts: &[String]| hosts.iter().any(|x| normalize_host(x) == h);
        let insecure = listed(&self.insecure_registries)
            || match access {
                Access::Pull => self.insecure_pull,
                Access::Push => self.insecure,
            };
        let skip_verify = listed(&self.skip_tls_verify_registries)
            || match access {
                Access::Pull => self.skip_tls_verify_pull,
                Access::Push => self.skip_tls_verify,
            };
        let find = |m: &BTreeMap<String, PathBuf>| {
            m.iter()
                .find(|(k, _)| normalize_host(k) == h)
                .map(|(_, v)| v.clone())
        };
        HostPolicy {
            insecure,
            skip_verify,
            ca: find(&self.ca_certificates),
            client_cert: self
                .client_certificates
                .iter()
                .find(|(k, _)| normalize_host(k) == h)
                .map(|(_, c)| (c.cert.clone(), c.key.clone())),
        }
    }

    pub(crate) fn retries(&self, access: Access) -> u32 {
        match access {
            Access::Pull => self.pull_retries,
            Access::Push => self.push_retries,
        }
    }

    /// The retries and backoff for `access`, for the registry client and
    /// for other downloads that should retry the way it does (`ADD <url>`
    /// uses the pull policy).
    pub fn retry_policy(&self, access: Access) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries(access),
            initial_delay: self.retry_initial_delay,
            max_delay: self.retry_max_delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_per_access_and_host() {
        let o = RegistryOptions {
            insecure_pull: true,
            insecure_registries: vec!["http://my.reg:5000".into()],
            skip_tls_verify_registries: vec!["index.docker.io".into()],
            ..RegistryOptions::default()
        };
        assert!(o.policy("any.io", Access::Pull).insecure);
        assert!(!o.policy("any.io", Access::Push).insecure);
        assert!(o.policy("my.reg:5000", Access::Push).insecure);
        assert!(o.policy("docker.io", Access::Push).skip_verify);
        assert!(!o.policy("my.reg:5000", Access::Push).skip_verify);
        assert!(o.user_agent.starts_with("kiln/"));
    }

    #[test]
    fn validation_names_missing_files() {
        let mut o = RegistryOptions::default();
        o.ca_certificates
            .insert("r.io".into(), "/no/such/ca.pem".into());
        let err = o.validate().unwrap_err().to_string();
        assert!(
            err.contains("/no/such/ca.pem") && err.contains("r.io"),
            "{err}"
        );
        let o = RegistryOptions {
            skip_default_registry_fallback: true,
            ..Default::default()
        };
        assert!(o.validate().is_err());
        let o = RegistryOptions {
            read_timeout: Duration::ZERO,
            ..Default::default()
        };
        assert!(o.validate().is_err());
    }

    #[test]
    fn read_timeout_seconds() {
        assert_eq!(parse_seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.25"), Some(Duration::from_millis(250)));
        for bad in ["0", "-1", "abc", "inf", "NaN", "1s"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }
}
