//! Sending one registry request: per-host HTTP clients (TLS, insecure
//! hosts), the auth challenge flow with cached tokens, manual redirects
//! that drop credentials across hosts, and retries with backoff.

use super::challenge::{bearer_error, Challenge};
use super::error::{display_url, looks_like_html, parse_oci_errors, OciErrors, RegistryError};
use super::meter::Meter;
use super::options::{Access, HostPolicy, RegistryOptions};
use crate::auth::Credential;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, Response, StatusCode};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use url::Url;

const MAX_REDIRECTS: usize = 10;
/// Error bodies are read up to this size for their OCI error codes.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Error bodies are abandoned (keeping what arrived) after this long: the
/// answers to uploads are read without a per-read timeout (see
/// [`Transport::http_client`]), and a stalled error body must not hang a push.
const ERROR_BODY_TIME_LIMIT: Duration = Duration::from_secs(30);
/// In-memory request bodies are handed to the connection in pieces of this
/// size, so that the upload watchdog sees them move.
const BODY_PIECE: usize = 256 * 1024;
/// Tokens without `expires_in` live this long (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cached token is renewed this long before it expires (at most a quarter
/// of its lifetime), so that it does not expire mid-request.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(10);

/// A request body that can be produced again (for the retry after a 401
/// challenge, or after a redirect).
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        /// Told how much of the blob has gone, for progress displays.
        meter: Option<Meter>,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// The body as reqwest sends it. Every piece the connection takes is
    /// stamped into `moved`, which is what the upload watchdog watches.
    async fn to_reqwest(
        &self,
        moved: &Arc<Mutex<Instant>>,
    ) -> Result<reqwest::Body, RegistryError> {
        use futures::StreamExt;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let stamp = {
            let moved = moved.clone();
            move |piece| {
                *lock(&moved) = Instant::now();
                piece
            }
        };
        match self {
            Body::Empty => Ok(reqwest::Body::from(Bytes::new())),
            Body::Bytes(b) => {
                let b = b.clone();
                let pieces = (0..b.len()).step_by(BODY_PIECE).map(move |at| {
                    Ok::<_, std::io::Error>(b.slice(at..b.len().min(at + BODY_PIECE)))
                });
                Ok(reqwest::Body::wrap_stream(
                    futures::stream::iter(pieces).map(stamp),
                ))
            }
            Body::File {
                path,
                offset,
                len,
                meter,
            } => {
                let io = |source| RegistryError::Io {
                    path: path.clone(),
                    source,
                };
                let mut f = tokio::fs::File::open(path).await.map_err(io)?;
                f.seek(std::io::SeekFrom::Start(*offset))
                    .await
                    .map_err(io)?;
                let stream = tokio_util::io::ReaderStream::with_capacity(f.take(*len), BODY_PIECE);
                let meter = meter.clone();
                let mut sent = 0u64;
                let counted = stream.map(move |piece| {
                    if let (Ok(bytes), Some(meter)) = (&piece, &meter) {
                        sent += bytes.len() as u64;
                        meter.at(sent);
                    }
                    piece
                });
                Ok(reqwest::Body::wrap_stream(counted.map(stamp)))
            }
        }
    }
}

/// Which repository a request is for and what it needs to do there; decides
/// the token scope and the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scope {
    /// Normalised registry name, for credential lookup (`docker.io`).
    pub registry: String,
    /// API host (`registry-1.docker.io`).
    pub host: String,
    /// Repository path.
    pub repository: String,
    /// Pull or push.
    pub access: Access,
    /// Another repository to read from (cross-repo mount source).
    pub mount_from: Option<String>,
}

impl Scope {
    /// The token scopes, `repository:<name>:pull[,push]` and the mount source.
    pub fn scopes(&self) -> Vec<String> {
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        let mut v = vec![format!("repository:{}:{actions}", self.repository)];
        if let Some(from) = &self.mount_from {
            v.push(format!("repository:{from}:pull"));
        }
        v
    }
}

/// One request.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Req {
    pub fn new(method: Method, url: Url) -> Req {
        Req {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Req {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Req {
        self.body = body;
        self
    }
}

#[derive(Clone)]
struct CachedAuth {
    header: String,
    expires: Option<Instant>,
}

/// Shared connection and auth state of a client.
pub(crate) struct Transport {
    pub options: RegistryOptions,
    /// Per host policy, one client for requests without a body and one for
    /// uploads (see [`Transport::http_client`]).
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

    /// The client for `policy`; `uploading` for requests that send a body.
    ///
    /// reqwest's read timeout resets on every read of a response body, which
    /// is what downloads need, but until the response head arrives it is one
    /// deadline counted from the start of the request, upload included: a
    /// 30 MiB chunk on a slow link would time out although bytes never
    /// stopped moving. So uploads get a client without it, and
    /// [`idle_bounded`] watches them instead, resetting whenever the
    /// connection takes a piece of the body.
    fn http_client(
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

    async fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
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
    async fn authorization(
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

    async fn fetch_token(
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
    fn forget_authorization(&self, scope: &Scope, sent: &str) {
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

    async fn send_following_redirects(
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

pub(crate) fn parse_url(s: &str) -> Result<Url, RegistryError> {
    Url::parse(s).map_err(|e| RegistryError::Options(format!("bad URL {s:?}: {e}")))
}

/// The whole cause chain of an error, for messages.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
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
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &frac[..digits.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
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

/// Waits for `fut` as long as something moves: it fails (`None`) once
/// `idle` has passed since the later of the start and the last time the
/// connection took a piece of the request body (stamped into `moved`).
///
/// This sees bytes handed to the connection, not bytes the registry
/// acknowledged: the last socket buffer of a body drains on the timeout's
/// clock, which only a link slower than the buffer per timeout would notice.
async fn idle_bounded<F: Future>(
    fut: F,
    moved: &Mutex<Instant>,
    idle: Duration,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let deadline = *lock(moved) + idle;
        match tokio::time::timeout_at(deadline.into(), &mut fut).await {
            Ok(out) => return Some(out),
            // Pieces moved while we slept: wait from the last of them.
            Err(_) if *lock(moved) + idle > Instant::now() => {}
            Err(_) => return None,
        }
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

fn transport_error(
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

    #[test]
    fn scopes_for_pull_push_and_mount() {
        let mut s = Scope {
            registry: "r.io".into(),
            host: "r.io".into(),
            repository: "a/b".into(),
            access: Access::Pull,
            mount_from: None,
        };
        assert_eq!(s.scopes(), vec!["repository:a/b:pull"]);
        s.access = Access::Push;
        s.mount_from = Some("c/d".into());
        assert_eq!(
            s.scopes(),
            vec!["repository:a/b:pull,push", "repository:c/d:pull"]
        );
    }

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

    #[tokio::test]
    async fn the_upload_watchdog_resets_while_pieces_move() {
        let idle = Duration::from_millis(150);
        // Busy for 400 ms in all, longer than the bound, but never idle for
        // as long as it.
        let moved = Arc::new(Mutex::new(Instant::now()));
        let busy = {
            let moved = moved.clone();
            async move {
                for _ in 0..8 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    *lock(&moved) = Instant::now();
                }
                7
            }
        };
        assert_eq!(idle_bounded(busy, &moved, idle).await, Some(7));
        // Silent: ends after the bound, not after the 5 s it would take.
        let moved = Mutex::new(Instant::now());
        let started = Instant::now();
        let silent = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(idle_bounded(silent, &moved, idle).await, None);
        let took = started.elapsed();
        assert!(took >= idle && took < Duration::from_secs(1), "{took:?}");
        assert_eq!(
            timed_out("r.io:5000", Duration::from_millis(1500), false),
            "timed out: registry r.io:5000 sent no data for 1500ms \
             (set KILN_REGISTRY_READ_TIMEOUT to wait longer)"
        );
    }

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
