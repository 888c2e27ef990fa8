//! Sending one registry request, in layers as go-containerregistry's
//! `transport` package stacks its round trippers:
//!
//! * [`auth`]: the challenge flow (`send`): credentials looked up once per
//!   registry, Basic or a Bearer token fetched for the request's scopes,
//!   cached until shortly before it expires, renewed once when refused.
//! * [`redirect`]: redirects followed by hand, credentials only ever sent to
//!   the registry's own origin, no TLS-to-plain-HTTP downgrade unless the
//!   host was declared insecure.
//! * [`tls`]: one HTTP client per host policy (CA bundle, client
//!   certificate, skipped verification) and the HTTPS-else-HTTP probe for
//!   insecure hosts.
//! * [`request`]: the replayable request (`Req`, `Body`, `Scope`) and the
//!   upload watchdog.
//! * [`failure`]: transport failures and unexpected answers turned into
//!   [`RegistryError`]s.
//!
//! Retries wrap a whole operation from outside ([`Transport::retry`], the
//! loop in `registry::retry`), since a retried upload restarts its session.

mod auth;
mod failure;
mod redirect;
mod request;
mod tls;

pub(crate) use failure::{error_from_response, parse_url, timed_out};
pub(crate) use request::{Body, Req, Scope};

use super::challenge::Challenge;
use super::error::RegistryError;
use super::options::{Access, HostPolicy, RegistryOptions};
use crate::auth::Credential;
use auth::CachedAuth;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use url::Url;

/// Shared connection and auth state of a client.
pub(crate) struct Transport {
    pub options: RegistryOptions,
    /// Per host policy, one client for requests without a body and one for
    /// uploads (see `tls::Transport::http_client`).
    clients: Mutex<HashMap<(HostPolicy, bool), reqwest::Client>>,
    bases: Mutex<HashMap<(String, Access), Url>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    auths: Mutex<HashMap<(String, Vec<String>), CachedAuth>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind;
    // keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

impl Transport {
    pub fn new(options: RegistryOptions) -> Result<Transport, RegistryError> {
        options.validate()?;
        Ok(Transport {
            options,
            clients: Mutex::default(),
            bases: Mutex::default(),
            credentials: Mutex::default(),
            challenges: Mutex::default(),
            auths: Mutex::default(),
        })
    }

    /// Runs `op` with the retries configured for `access`, backing off
    /// exponentially and honouring `Retry-After`.
    pub async fn retry<T, F, Fut>(&self, access: Access, op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        self.options
            .retry_policy(access)
            .run("registry request", op)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::error::OciErrors;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn retries_only_retryable_errors_and_honours_retry_after() {
        let options = RegistryOptions {
            pull_retries: 2,
            retry_initial_delay: Duration::from_millis(1),
            ..RegistryOptions::default()
        };
        let t = Transport::new(options).unwrap();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let status = |s, ra| RegistryError::Status {
            method: "GET".into(),
            url: "u".into(),
            status: s,
            errors: OciErrors::default(),
            retry_after: ra,
        };
        let started = Instant::now();
        let r: Result<(), _> = t
            .retry(Access::Pull, || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err(status(503, Some(Duration::from_millis(0)))) }
            })
            .await;
        assert_eq!(r.unwrap_err().status(), Some(503));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(started.elapsed() < Duration::from_secs(1));
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let r: Result<(), _> = t
            .retry(Access::Pull, || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err(status(404, None)) }
            })
            .await;
        assert!(r.unwrap_err().is_not_found());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Push has no retries configured.
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let _ = t
            .retry(Access::Push, || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(status(500, None)) }
            })
            .await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
