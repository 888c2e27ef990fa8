//! The auth challenge flow: a 401 names Basic or a Bearer token server;
//! credentials are looked up once per registry, tokens fetched for the
//! request's scopes and cached until shortly before they expire, and a
//! token the registry refuses is dropped and fetched again, once.

use super::failure::{parse_url, read_limited, timed_out};
use super::{host_of, lock, Req, Scope, Transport};
use crate::auth::Credential;
use crate::registry::challenge::{bearer_error, Challenge};
use crate::registry::error::{display_url, parse_oci_errors, OciErrors, RegistryError};
use kiln_image_spec::error::chain as error_chain;
use reqwest::header::AUTHORIZATION;
use reqwest::{Response, StatusCode};
use std::time::{Duration, Instant, SystemTime};

/// Tokens without `expires_in` live this long (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cached token is renewed this long before it expires (at most a quarter
/// of its lifetime), so that it does not expire mid-request.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct CachedAuth {
    header: String,
    expires: Option<Instant>,
}

impl Transport {
    pub(super) async fn credential(
        &self,
        registry: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = lock(&self.credentials).get(registry) {
            return Ok(c.clone());
        }
        let store = self.options.credentials.clone();
        let reg = registry.to_string();
        let found = tokio::task::spawn_blocking(move || store.lookup(&reg))
            .await
            .map_err(|e| {
                RegistryError::Options(format!("credential lookup did not finish: {e}"))
            })??;
        lock(&self.credentials).insert(registry.to_string(), found.clone());
        Ok(found)
    }

    /// The `Authorization` value to send for `scope`, when the host's
    /// challenge is known.
    pub(super) async fn authorization(
        &self,
        scope: &Scope,
        fresh: bool,
    ) -> Result<Option<String>, RegistryError> {
        let key = (scope.host.clone(), scope.scopes());
        if !fresh {
            if let Some(a) = lock(&self.auths).get(&key) {
                if a.expires.is_none_or(|t| t > Instant::now()) {
                    return Ok(Some(a.header.clone()));
                }
            }
        }
        let challenge = lock(&self.challenges).get(&scope.host).cloned();
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        let cred = self.credential(&scope.registry).await?;
        let unauthorized = || RegistryError::Unauthorized {
            host: scope.host.clone(),
            repository: scope.repository.clone(),
            status: 401,
            detail: OciErrors::default(),
        };
        let auth = match (&challenge, &cred) {
            (_, Some(Credential::RegistryToken(t))) => CachedAuth {
                header: format!("Bearer {}", t.expose()),
                expires: None,
            },
            (Challenge::Basic { .. }, Some(c @ Credential::Basic { .. })) => CachedAuth {
                header: c.basic_header().unwrap_or_default(),
                expires: None,
            },
            (Challenge::Basic { .. }, _) => return Err(unauthorized()),
            (Challenge::Bearer { realm, service, .. }, cred) => {
                self.fetch_token(scope, realm, service.as_deref(), cred.as_ref())
                    .await?
            }
        };
        lock(&self.auths).insert(key, auth.clone());
        Ok(Some(auth.header))
    }

    pub(super) async fn fetch_token(
        &self,
        scope: &Scope,
        realm: &str,
        service: Option<&str>,
        cred: Option<&Credential>,
    ) -> Result<CachedAuth, RegistryError> {
        let mut url = parse_url(realm)?;
        let realm_url = url.clone();
        let realm_shown = display_url(&url);
        let token_err = |message: String| RegistryError::Token {
            realm: realm_shown.clone(),
            message,
        };
        if !matches!(url.scheme(), "https" | "http") {
            return Err(token_err(format!(
                "the registry {} named a token server that is not an HTTP(S) URL",
                scope.host
            )));
        }
        // Credentials go to a plain-HTTP token server only when the user
        // said the registry (or that server) may be used without TLS: a
        // registry reached over verified TLS must not be able to ask for
        // them in clear text. An anonymous token request carries nothing.
        let sends_secret = matches!(
            cred,
            Some(Credential::Basic { .. } | Credential::IdentityToken(_))
        );
        if sends_secret
            && url.scheme() == "http"
            && !self.options.policy(&scope.host, scope.access).insecure
            && !self.options.policy(&host_of(&url), scope.access).insecure
        {
            return Err(RegistryError::InsecureRealm {
                host: scope.host.clone(),
                realm: realm_shown.clone(),
            });
        }
        let policy = self.options.policy(&host_of(&url), scope.access);
        let client = self.http_client(&policy, false)?;
        let request = match cred {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form: Vec<(&str, String)> = vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", refresh.expose().to_string()),
                    ("client_id", "kiln".into()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_string()));
                }
                let scopes = scope.scopes().join(" ");
                form.push(("scope", scopes));
                client.post(url).form(&form)
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scope.scopes() {
                        q.append_pair("scope", &s);
                    }
                }
                let mut r = client.get(url);
                if let Some(h) = other.and_then(Credential::basic_header) {
                    r = r.header(AUTHORIZATION, h);
                }
                r
            }
        };
        let resp = request.send().await.map_err(|e| {
            token_err(if e.is_timeout() {
                timed_out(&host_of(&realm_url), self.options.read_timeout, false)
            } else {
                error_chain(&e)
            })
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = read_limited(resp).await;
            let detail = parse_oci_errors(&body);
            return Err(if status == StatusCode::UNAUTHORIZED {
                RegistryError::Unauthorized {
                    host: scope.host.clone(),
                    repository: scope.repository.clone(),
                    status: status.as_u16(),
                    detail,
                }
            } else {
                RegistryError::Denied {
                    host: scope.host.clone(),
                    repository: scope.repository.clone(),
                    status: status.as_u16(),
                    detail,
                }
            });
        }
        if !status.is_success() {
            return Err(token_err(format!("HTTP {status}")));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
            issued_at: Option<String>,
        }
        let body = read_limited(resp).await;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| token_err(format!("answer is not token JSON: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("answer has no token".into()))?;
        let fresh_for = token_fresh_for(t.expires_in, t.issued_at.as_deref(), SystemTime::now());
        tracing::debug!(realm = %realm_shown, ?fresh_for, "got a registry token");
        Ok(CachedAuth {
            header: format!("Bearer {token}"),
            expires: Some(Instant::now() + fresh_for),
        })
    }

    /// Forgets the cached `Authorization` for `scope` when it is still
    /// `sent` (another request may have renewed it meanwhile).
    pub(super) fn forget_authorization(&self, scope: &Scope, sent: &str) {
        let key = (scope.host.clone(), scope.scopes());
        let mut auths = lock(&self.auths);
        if auths.get(&key).is_some_and(|a| a.header == sent) {
            auths.remove(&key);
        }
    }

    /// Sends `req`, answering an auth challenge once and following
    /// redirects. Returns the final response whatever its status, except
    /// that 401 and 403 become [`RegistryError::Unauthorized`]/[`RegistryError::Denied`].
    ///
    /// A 401 to a request that carried a token (one that expired, or that
    /// the registry no longer accepts) drops the cached token; a new one is
    /// fetched and the request sent again, once. A new token refused with
    /// `invalid_token` is [`RegistryError::TokenRejected`].
    pub async fn send(&self, scope: &Scope, req: &Req) -> Result<Response, RegistryError> {
        let mut auth = self.authorization(scope, false).await?;
        let mut answered_challenge = false;
        loop {
            let resp = self
                .send_following_redirects(scope, req, auth.as_deref())
                .await?;
            match resp.status() {
                StatusCode::UNAUTHORIZED => {
                    let values: Vec<String> = resp
                        .headers()
                        .get_all(reqwest::header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok().map(str::to_string))
                        .collect();
                    let challenge = Challenge::pick(values.iter().map(String::as_str));
                    let error = bearer_error(values.iter().map(String::as_str));
                    if let Some(sent) = &auth {
                        self.forget_authorization(scope, sent);
                    }
                    if answered_challenge || challenge.is_none() {
                        let sent_bearer = auth.as_deref().is_some_and(|a| a.starts_with("Bearer "));
                        if let (
                            true,
                            Some((code, description)),
                            Some(Challenge::Bearer { realm, .. }),
                        ) = (sent_bearer, &error, &challenge)
                        {
                            if code == "invalid_token" {
                                return Err(RegistryError::TokenRejected {
                                    host: scope.host.clone(),
                                    repository: scope.repository.clone(),
                                    realm: parse_url(realm)
                                        .map_or_else(|_| realm.clone(), |u| display_url(&u)),
                                    reason: match description {
                                        Some(d) if !d.is_empty() => format!("{code}: {d}"),
                                        _ => code.clone(),
                                    },
                                });
                            }
                        }
                        let detail = parse_oci_errors(&read_limited(resp).await);
                        return Err(RegistryError::Unauthorized {
                            host: scope.host.clone(),
                            repository: scope.repository.clone(),
                            status: 401,
                            detail,
                        });
                    }
                    if auth.is_some() {
                        tracing::debug!(
                            host = %scope.host,
                            repository = %scope.repository,
                            error = error.as_ref().map_or("", |(code, _)| code.as_str()),
                            "registry refused the cached authorization; fetching a new token"
                        );
                    }
                    if let Some(c) = challenge {
                        lock(&self.challenges).insert(scope.host.clone(), c);
                    }
                    answered_challenge = true;
                    auth = self.authorization(scope, true).await?;
                }
                StatusCode::FORBIDDEN => {
                    let detail = parse_oci_errors(&read_limited(resp).await);
                    return Err(RegistryError::Denied {
                        host: scope.host.clone(),
                        repository: scope.repository.clone(),
                        status: 403,
                        detail,
                    });
                }
                _ => return Ok(resp),
            }
        }
    }
}

/// How long a token may be used from now: `expires_in` (default 60s)
/// counted from `issued_at` when that is a plausible time in the past (a
/// clock that disagrees is ignored), less a renewal margin.
fn token_fresh_for(expires_in: Option<u64>, issued_at: Option<&str>, now: SystemTime) -> Duration {
    let lifetime = expires_in.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    let age = issued_at
        .and_then(parse_rfc3339)
        .and_then(|issued| now.duration_since(issued).ok())
        .filter(|age| *age <= lifetime)
        .unwrap_or(Duration::ZERO);
    let margin = TOKEN_RENEW_MARGIN.min(lifetime / 4);
    lifetime.saturating_sub(age).saturating_sub(margin)
}

/// Parses an RFC 3339 time (`2024-05-01T12:00:00Z`, fractions and
/// `+HH:MM` offsets allowed), as token servers write `issued_at`.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(t.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rfc3339_times() {
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        let secs = Duration::from_secs;
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(at("2009-11-10T23:00:00Z"), Some(secs(1_257_894_000)));
        assert_eq!(
            at("2024-02-29T12:30:15.25Z"),
            Some(Duration::new(1_709_209_815, 250_000_000))
        );
        assert_eq!(at("2024-02-29T14:30:15+02:00"), Some(secs(1_709_209_815)));
        assert_eq!(
            at("2024-02-29T12:30:15.123456789123-00:00"),
            Some(Duration::new(1_709_209_815, 123_456_789))
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:30:15",
            "x024-02-29T12:30:15Z",
            "2024-02-29T12:30:15.Z",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn token_lifetimes_honour_expires_in_and_issued_at() {
        let now = UNIX_EPOCH + Duration::from_secs(1_709_209_815);
        let secs = Duration::from_secs;
        // No expires_in: the spec's 60 seconds, renewed 10 seconds early.
        assert_eq!(token_fresh_for(None, None, now), secs(50));
        assert_eq!(token_fresh_for(Some(300), None, now), secs(290));
        // Short lifetimes keep three quarters of it.
        assert_eq!(token_fresh_for(Some(4), None, now), secs(3));
        assert_eq!(token_fresh_for(Some(0), None, now), Duration::ZERO);
        // Issued 280s ago with 300s to live: 20s left, 10s of them usable.
        let issued = "2024-02-29T12:25:35Z";
        assert_eq!(token_fresh_for(Some(300), Some(issued), now), secs(10));
        // Issued long before its lifetime, or in the future: the clocks
        // disagree, so the time of receipt counts.
        assert_eq!(token_fresh_for(Some(60), Some(issued), now), secs(50));
        let future = "2024-02-29T13:30:15Z";
        assert_eq!(token_fresh_for(Some(300), Some(future), now), secs(290));
        assert_eq!(
            token_fresh_for(Some(300), Some("yesterday"), now),
            secs(290)
        );
    }
}
