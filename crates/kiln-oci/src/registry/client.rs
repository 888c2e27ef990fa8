//! The registry client and its per-repository operations.
//!
//! Our own client on reqwest rather than `oci-client`: kiln needs blob
//! downloads verified while they stream, chunked uploads from files,
//! cross-repository mounts, Docker Hub mirrors and registry maps, retries
//! that honour `Retry-After`, and Docker's `config.json` credentials, and
//! `oci-client` has none of the last four.

use super::blob_stream::{broke_off, BlobStream};
use super::error::{display_url, RegistryError};
use super::manifest_settle;
use super::meter::{Meter, TransferObserver};
use super::options::{Access, RegistryOptions};
use super::transport::{
    error_from_response, host_of, parse_url, timed_out, Body, Req, Scope, Transport,
};
use crate::auth::normalize_host;
use crate::digest::Digest;
use crate::manifest::sniff_media_type;
use crate::media;
use crate::reference::{api_host_for, Reference, DOCKER_HUB};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use url::Url;

/// Manifests and indexes larger than this are refused (the distribution
/// registry's own limit is 4 MiB).
pub const MANIFEST_SIZE_LIMIT: u64 = 4 * 1024 * 1024;

/// A registry client; cheap to clone, shares connections, credentials and
/// tokens between clones.
#[derive(Clone)]
pub struct RegistryClient {
    transport: Arc<Transport>,
}

impl RegistryClient {
    /// A client with `options`.
    ///
    /// # Errors
    /// [`RegistryError::Options`] when the options are inconsistent or name
    /// missing certificate files.
    pub fn new(options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        Ok(RegistryClient {
            transport: Arc::new(Transport::new(options)?),
        })
    }

    /// The options the client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.transport.options
    }

    /// A handle on the repository of `reference`. Pull handles try registry
    /// maps and (for Docker Hub) mirrors before the origin.
    pub fn repository(&self, reference: &Reference, access: Access) -> Repository {
        let origin = Endpoint {
            registry: reference.registry().to_string(),
            host: reference.api_host().to_string(),
            repository: reference.repository().to_string(),
        };
        let mut endpoints = Vec::new();
        if access == Access::Pull {
            let options = &self.transport.options;
            let from = normalize_host(reference.registry());
            let mapped = options.registry_maps.get(&from).into_iter().flatten();
            let mirrors = options
                .mirrors
                .iter()
                .filter(|_| reference.registry() == DOCKER_HUB);
            for target in mapped.chain(mirrors) {
                endpoints.push(Endpoint::mirror(target, reference.repository()));
            }
            let skip_origin = options.skip_default_registry_fallback
                && reference.registry() == DOCKER_HUB
                && !endpoints.is_empty();
            if !skip_origin {
                endpoints.push(origin);
            }
        } else {
            endpoints.push(origin);
        }
        Repository {
            transport: self.transport.clone(),
            endpoints,
            access,
            observer: None,
        }
    }
}

/// Where a repository's API lives: the origin, a mirror, or a mapped registry.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    registry: String,
    host: String,
    repository: String,
}

impl Endpoint {
    /// `host[/prefix]` → the repository under the prefix on that host.
    fn mirror(target: &str, repository: &str) -> Endpoint {
        let target = target
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let (host, prefix) = target.split_once('/').unwrap_or((target, ""));
        let registry = normalize_host(host);
        let repository = if prefix.is_empty() {
            repository.to_string()
        } else {
            format!("{prefix}/{repository}")
        };
        Endpoint {
            host: api_host_for(&registry).to_string(),
            registry,
            repository,
        }
    }
}

/// A manifest or index as fetched: raw bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (their digest is the manifest digest).
    pub bytes: Bytes,
    /// The media type (from `Content-Type`, or sniffed from the JSON).
    pub media_type: String,
    /// sha256 of `bytes`, checked against the reference when it was a digest.
    pub digest: Digest,
}

/// What a `HEAD` on a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`.
    pub digest: Digest,
    /// `Content-Type`.
    pub media_type: Option<String>,
    /// `Content-Length`.
    pub size: Option<u64>,
}

/// A registry's answer to a manifest upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPut {
    /// The manifest's digest.
    pub digest: Digest,
    /// `OCI-Subject`: the subject the registry indexed the manifest under,
    /// when it has the referrers API and the manifest has a subject.
    pub subject: Option<Digest>,
}

/// Where blob bytes to upload come from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// A file, read (and re-read on retry) from disk.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
    /// An open file, read with positioned reads: it may be renamed or
    /// unlinked meanwhile (a layer that was being written when the upload
    /// started).
    Handle(Arc<std::fs::File>),
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// It was already there.
    Exists,
    /// Mounted from another repository, without transfer.
    Mounted,
    /// Uploaded.
    Uploaded,
}

pub(super) enum UploadStart {
    Mounted,
    Session(Url),
}

/// Operations on one repository of one registry.
#[derive(Clone)]
pub struct Repository {
    pub(super) transport: Arc<Transport>,
    endpoints: Vec<Endpoint>,
    pub(super) access: Access,
    /// Told how far blob downloads and uploads have got.
    observer: Option<Arc<dyn TransferObserver>>,
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

impl Repository {
    /// This handle, telling `observer` how many bytes of each blob it
    /// downloads ([`Repository::download_blob`]) or uploads from a file have
    /// moved. One observer is for one blob at a time.
    pub fn observed(mut self, observer: Arc<dyn TransferObserver>) -> Repository {
        self.observer = Some(observer);
        self
    }

    /// The repository path on the origin registry.
    pub fn name(&self) -> &str {
        // The origin is always the last endpoint, or the only one.
        self.endpoints.last().map_or("", |e| e.repository.as_str())
    }

    fn read_timeout(&self) -> std::time::Duration {
        self.transport.options.read_timeout
    }

    fn scope(&self, ep: &Endpoint, mount_from: Option<&str>) -> Scope {
        Scope {
            registry: ep.registry.clone(),
            host: ep.host.clone(),
            repository: ep.repository.clone(),
            access: self.access,
            mount_from: mount_from.map(str::to_string),
        }
    }

    async fn url(&self, ep: &Endpoint, path: &str) -> Result<Url, RegistryError> {
        let base = self.transport.base_url(&ep.host, self.access).await?;
        parse_url(&format!("{}v2/{}/{path}", base, ep.repository))
    }

    /// Runs `op` on each endpoint in turn (with retries) until one succeeds.
    async fn on_endpoints<T, F, Fut>(&self, op: F) -> Result<T, RegistryError>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let mut last = None;
        for ep in &self.endpoints {
            match self.transport.retry(self.access, || op(ep.clone())).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if self.endpoints.len() > 1 {
                        tracing::info!(host = %ep.host, error = %e, "registry endpoint failed; trying the next");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Options("no registry endpoint".into())))
    }

    pub(super) async fn send(
        &self,
        ep: &Endpoint,
        req: Req,
    ) -> Result<(Req, Response), RegistryError> {
        let resp = self.transport.send(&self.scope(ep, None), &req).await?;
        Ok((req, resp))
    }

    /// Fetches a manifest or index by tag or digest. Fetched by digest, the
    /// bytes are checked against it.
    ///
    /// # Errors
    /// HTTP and auth errors, [`RegistryError::DigestMismatch`], and
    /// [`RegistryError::TooLarge`] past [`MANIFEST_SIZE_LIMIT`].
    pub async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, RegistryError> {
        self.on_endpoints(|ep| async move {
            let url = self.url(&ep, &format!("manifests/{reference}")).await?;
            let req = Req::new(Method::GET, url).header(ACCEPT, MANIFEST_ACCEPT);
            let (req, resp) = self.send(&ep, req).await?;
            if resp.status() != StatusCode::OK {
                return Err(error_from_response(&req.method, &req.url, resp).await);
            }
            let header_type = content_type(&resp);
            let bytes = read_body(resp, &req.url, MANIFEST_SIZE_LIMIT, self.read_timeout()).await?;
            let digest = Digest::sha256_of(&bytes);
            if let Ok(expected) = reference.parse::<Digest>() {
                if expected != digest {
                    return Err(RegistryError::DigestMismatch {
                        expected,
                        actual: digest,
                        url: display_url(&req.url),
                    });
                }
            }
            let media_type = match header_type {
                Some(t)
                    if media::is_index(&t) || media::is_manifest(&t) || t.contains("manifest") =>
                {
                    t
                }
                _ => sniff_media_type(&bytes).unwrap_or_else(|| media::OCI_MANIFEST.to_string()),
            };
            Ok(FetchedManifest {
                bytes,
                media_type,
                digest,
            })
        })
        .await
    }

    /// `HEAD` on a manifest: its digest, or `None` when it does not exist.
    ///
    /// # Errors
    /// HTTP and auth errors other than 404.
    pub async fn head_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        self.on_endpoints(|ep| async move {
            let url = self.url(&ep, &format!("manifests/{reference}")).await?;
            let req = Req::new(Method::HEAD, url).header(ACCEPT, MANIFEST_ACCEPT);
            let (req, resp) = self.send(&ep, req).await?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(None),
                _ => return Err(error_from_response(&req.method, &req.url, resp).await),
            }
            let media_type = content_type(&resp);
            let size = header_length(&resp);
            let digest = match header(&resp, "docker-content-digest").and_then(|d| d.parse().ok()) {
                Some(d) => d,
                // Without the header, only the body can say.
                None => self.get_manifest(reference).await?.digest,
            };
            Ok(Some(ManifestHead {
                digest,
                media_type,
                size,
            }))
        })
        .await
    }

    /// Uploads a manifest under `reference` (a tag or its digest); returns
    /// the manifest's digest.
    ///
    /// # Errors
    /// HTTP and auth errors; the registry's error codes (`MANIFEST_BLOB_UNKNOWN`, …) are kept.
    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        Ok(self
            .put_manifest_answered(reference, bytes, media_type)
            .await?
            .digest)
    }

    /// As [`Repository::put_manifest`], with what the registry said of the
    /// manifest's `subject`: an OCI 1.1 registry with the referrers API
    /// names it in the `OCI-Subject` header of its answer, and then indexes
    /// the manifest among the subject's referrers itself.
    ///
    /// A manifest refused for naming an unknown blob is put again when every
    /// blob it names is there after all (see `manifest_settle`).
    ///
    /// # Errors
    /// As [`Repository::put_manifest`].
    pub async fn put_manifest_answered(
        &self,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<ManifestPut, RegistryError> {
        let mut pauses = manifest_settle::PAUSES.iter();
        loop {
            let refused = match self.put_manifest_once(reference, &bytes, media_type).await {
                Err(e) if manifest_settle::names_unknown_blob(&e) => e,
                other => return other,
            };
            let Some(pause) = pauses.next() else {
                return Err(refused);
            };
            // A failed check leaves the registry's own answer to report.
            if !matches!(
                self.holds_everything_named(&bytes, media_type).await,
                Ok(true)
            ) {
                return Err(refused);
            }
            tracing::info!(
                reference,
                error = %refused,
                "the registry refused the manifest for a blob it holds (another upload of it was finishing); putting it again"
            );
            tokio::time::sleep(*pause).await;
        }
    }

    async fn put_manifest_once(
        &self,
        reference: &str,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<ManifestPut, RegistryError> {
        let digest = Digest::sha256_of(bytes);
        let subject = self
            .on_endpoints(|ep| async move {
                let url = self.url(&ep, &format!("manifests/{reference}")).await?;
                let req = Req::new(Method::PUT, url)
                    .header(CONTENT_TYPE, media_type)
                    .body(Body::Bytes(bytes.clone()));
                let (req, resp) = self.send(&ep, req).await?;
                if !resp.status().is_success() {
                    return Err(error_from_response(&req.method, &req.url, resp).await);
                }
                Ok(header(&resp, "oci-subject").and_then(|d| d.parse::<Digest>().ok()))
            })
            .await?;
        Ok(ManifestPut { digest, subject })
    }

    /// The OCI 1.1 referrers of manifest `digest` (`GET
    /// /v2/NAME/referrers/DIGEST`): the index the registry keeps of the
    /// manifests whose `subject` is it, or `None` when the registry has no
    /// referrers API (404, or 405 from some), where clients keep the
    /// `sha256-<hex>` tag themselves.
    ///
    /// # Errors
    /// HTTP and auth errors; a body that is not an index.
    pub async fn referrers(&self, digest: &Digest) -> Result<Option<Bytes>, RegistryError> {
        self.on_endpoints(|ep| async move {
            let url = self.url(&ep, &format!("referrers/{digest}")).await?;
            let req = Req::new(Method::GET, url).header(ACCEPT, media::OCI_INDEX);
            let (req, resp) = self.send(&ep, req).await?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(None),
                _ => return Err(error_from_response(&req.method, &req.url, resp).await),
            }
            let bytes = read_body(resp, &req.url, MANIFEST_SIZE_LIMIT, self.read_timeout()).await?;
            if crate::Index::from_slice(&bytes).is_err() {
                return Err(RegistryError::Protocol {
                    method: "GET".into(),
                    url: display_url(&req.url),
                    message: "the referrers answer is not an image index".into(),
                });
            }
            Ok(Some(bytes))
        })
        .await
    }

    /// Deletes a manifest by digest.
    ///
    /// # Errors
    /// HTTP and auth errors (registries may answer 405 when deletes are off).
    pub async fn delete_manifest(&self, digest: &Digest) -> Result<(), RegistryError> {
        self.on_endpoints(|ep| async move {
            let url = self.url(&ep, &format!("manifests/{digest}")).await?;
            let (req, resp) = self.send(&ep, Req::new(Method::DELETE, url)).await?;
            if !resp.status().is_success() {
                return Err(error_from_response(&req.method, &req.url, resp).await);
            }
            Ok(())
        })
        .await
    }

    /// All tags, following `Link` pagination.
    ///
    /// # Errors
    /// HTTP and auth errors; a missing repository is a 404 error.
    pub async fn list_tags(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        self.on_endpoints(|ep| async move {
            let mut url = self.url(&ep, "tags/list").await?;
            let mut tags = Vec::new();
            loop {
                let (req, resp) = self.send(&ep, Req::new(Method::GET, url.clone())).await?;
                if resp.status() != StatusCode::OK {
                    return Err(error_from_response(&req.method, &req.url, resp).await);
                }
                let next = header(&resp, "link").and_then(|l| next_link(&l, &req.url));
                let body =
                    read_body(resp, &req.url, MANIFEST_SIZE_LIMIT, self.read_timeout()).await?;
                let list: TagList =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                        method: "GET".into(),
                        url: display_url(&req.url),
                        message: format!("tag list is not JSON: {e}"),
                    })?;
                tags.extend(list.tags.unwrap_or_default());
                match next {
                    Some(n) => url = n,
                    None => return Ok(tags),
                }
            }
        })
        .await
    }

    /// `HEAD` on a blob: its size when present, `None` when absent.
    ///
    /// # Errors
    /// HTTP and auth errors other than 404.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        self.on_endpoints(|ep| async move {
            let url = self.url(&ep, &format!("blobs/{digest}")).await?;
            let (req, resp) = self.send(&ep, Req::new(Method::HEAD, url)).await?;
            match resp.status() {
                StatusCode::OK => Ok(Some(header_length(&resp).unwrap_or(0))),
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(error_from_response(&req.method, &req.url, resp).await),
            }
        })
        .await
    }

    /// Starts downloading a blob; the stream checks `digest` and, when
    /// given, `size` as it goes.
    ///
    /// # Errors
    /// HTTP and auth errors before the body starts; later errors come out of
    /// the stream.
    pub async fn get_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<BlobStream, RegistryError> {
        self.on_endpoints(|ep| async move {
            let url = self.url(&ep, &format!("blobs/{digest}")).await?;
            let (req, resp) = self.send(&ep, Req::new(Method::GET, url)).await?;
            if resp.status() != StatusCode::OK {
                return Err(error_from_response(&req.method, &req.url, resp).await);
            }
            if let (Some(want), Some(got)) = (size, resp.content_length()) {
                if want != got {
                    return Err(RegistryError::SizeMismatch {
                        digest: digest.clone(),
                        expected: want,
                        actual: got,
                        url: display_url(&req.url),
                    });
                }
            }
            Ok(BlobStream::new(
                resp,
                digest.clone(),
                size,
                display_url(&req.url),
            ))
        })
        .await
    }

    /// A small blob (a config) in memory, verified.
    ///
    /// # Errors
    /// As [`Repository::get_blob`], plus [`RegistryError::TooLarge`] past `limit`.
    pub async fn get_blob_bytes(
        &self,
        digest: &Digest,
        size: Option<u64>,
        limit: u64,
    ) -> Result<Bytes, RegistryError> {
        self.transport
            .retry(self.access, || async {
                let blob = self.get_blob(digest, size).await?;
                blob.collect(limit)
                    .await
                    .map_err(|e| self.explain_timeout(e))
            })
            .await
    }

    /// Downloads a blob to `path` (replacing it), verified; retried whole
    /// on transient failures. Returns the size.
    ///
    /// # Errors
    /// As [`Repository::get_blob`], plus file errors naming `path`.
    pub async fn download_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let io = |source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        };
        self.transport
            .retry(self.access, || async {
                let mut stream = self.get_blob(digest, size).await?;
                let mut file = tokio::fs::File::create(path).await.map_err(io)?;
                if let Some(observer) = &self.observer {
                    observer.transferred(0);
                }
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.explain_timeout(e))?;
                    file.write_all(&chunk).await.map_err(io)?;
                    if let Some(observer) = &self.observer {
                        observer.transferred(stream.bytes_read());
                    }
                }
                file.flush().await.map_err(io)?;
                Ok(stream.bytes_read())
            })
            .await
    }

    /// A download that stalled past the read timeout ends in reqwest's
    /// "error decoding response body", which does not say why: add that it
    /// timed out, and on which host.
    fn explain_timeout(&self, e: RegistryError) -> RegistryError {
        match e {
            RegistryError::Transport {
                method,
                url,
                message,
                timeout: true,
            } if !message.contains("timed out") => {
                let host = Url::parse(&url).map(|u| host_of(&u)).unwrap_or_default();
                let why = timed_out(&host, self.read_timeout(), false);
                RegistryError::Transport {
                    method,
                    url,
                    message: format!("{message}: {why}"),
                    timeout: true,
                }
            }
            other => other,
        }
    }

    /// Asks the registry to link blob `digest` from repository `from` (same
    /// registry) into this one. `Ok(false)` when it could not (the blob is
    /// not there, or the registry does not mount); then upload instead.
    ///
    /// # Errors
    /// HTTP and auth errors.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool, RegistryError> {
        let ep = self.push_endpoint();
        let outcome = self
            .transport
            .retry(self.access, || self.start_upload(&ep, Some((digest, from))))
            .await?;
        match outcome {
            UploadStart::Mounted => Ok(true),
            UploadStart::Session(url) => {
                // The registry opened an upload instead; close it.
                self.cancel_upload(&ep, url).await;
                Ok(false)
            }
        }
    }

    /// Closes an upload session that will not be completed; the registry
    /// drops what it holds of it. Best effort: a registry that misses this
    /// expires the session itself.
    pub(super) async fn cancel_upload(&self, ep: &Endpoint, session: Url) {
        let _ = self.send(ep, Req::new(Method::DELETE, session)).await;
    }

    /// Puts a blob in the repository the cheapest way: nothing when it is
    /// there, a cross-repository mount from `mount_from` when given, else an
    /// upload (one PUT, or PATCH chunks for large blobs). `size` must be the
    /// source's size.
    ///
    /// # Errors
    /// HTTP and auth errors, file errors, and the registry's
    /// `DIGEST_INVALID` when the bytes do not match `digest`.
    pub async fn push_blob(
        &self,
        source: &BlobSource,
        digest: &Digest,
        size: u64,
        mount_from: Option<&str>,
    ) -> Result<PushOutcome, RegistryError> {
        if self.blob_exists(digest).await?.is_some() {
            return Ok(PushOutcome::Exists);
        }
        let ep = self.push_endpoint();
        let mount = mount_from.map(|from| (digest, from));
        // A chunked upload whose connection broke after the registry took
        // some chunks: its session and the bytes confirmed, for the next
        // attempt to continue instead of sending everything again.
        let progress: Mutex<Option<Resume>> = Mutex::new(None);
        self.transport
            .retry(self.access, || async {
                let resumed = match take(&progress) {
                    Some(previous) => match self.resume(&ep, previous, digest, size).await? {
                        Continue::Done => return Ok(PushOutcome::Uploaded),
                        Continue::Restart => None,
                        Continue::At(session, offset) => {
                            // Kept for the next attempt as well, should this
                            // one break before the registry confirms a chunk.
                            put(&progress, &session, offset);
                            Some((session, offset))
                        }
                    },
                    None => None,
                };
                if let Some((session, offset)) = resumed {
                    match self
                        .upload(&ep, session, offset, source, digest, size, &progress)
                        .await
                    {
                        Ok(()) => return Ok(PushOutcome::Uploaded),
                        // The registry said where it stood but refuses the
                        // continuation (a range it does not take, a session
                        // it dropped meanwhile): start again now rather than
                        // fail the push on an error a restart avoids.
                        Err(e) if refused_continuation(&e) => {
                            tracing::info!(%digest, error = %e, "the registry refused to continue the blob upload; starting it again");
                            take(&progress);
                        }
                        Err(e) => return Err(e),
                    }
                }
                let session = match self.start_upload(&ep, mount).await? {
                    UploadStart::Mounted => return Ok(PushOutcome::Mounted),
                    UploadStart::Session(url) => url,
                };
                self.upload(&ep, session, 0, source, digest, size, &progress)
                    .await?;
                Ok(PushOutcome::Uploaded)
            })
            .await
    }

    /// How to go on with an upload whose connection broke after `previous`
    /// was confirmed: continue where the registry has it, nothing (the lost
    /// answer was to the final PUT and the blob is there), or start again.
    pub(super) async fn resume(
        &self,
        ep: &Endpoint,
        previous: Resume,
        digest: &Digest,
        size: u64,
    ) -> Result<Continue, RegistryError> {
        if let Some((session, held)) = self.upload_status(ep, &previous.session, size).await {
            tracing::info!(
                %digest,
                offset = held,
                size,
                "resuming the blob upload where the registry has it"
            );
            return Ok(Continue::At(session, held));
        }
        if previous.offset == size && self.blob_exists(digest).await?.is_some() {
            return Ok(Continue::Done);
        }
        tracing::info!(%digest, "the registry cannot resume the blob upload; starting it again");
        Ok(Continue::Restart)
    }

    /// Where an upload session stands (`GET` on its URL): its next URL and
    /// how many bytes the registry holds, or `None` when the registry does
    /// not say (the session is unknown or cancelled, the answer has no
    /// `Range`, the request failed); then the upload starts again.
    pub(super) async fn upload_status(
        &self,
        ep: &Endpoint,
        session: &Url,
        size: u64,
    ) -> Option<(Url, u64)> {
        let (req, resp) = match self.send(ep, Req::new(Method::GET, session.clone())).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(error = %e, "upload status query failed");
                return None;
            }
        };
        if resp.status() != StatusCode::NO_CONTENT {
            tracing::debug!(
                status = resp.status().as_u16(),
                "upload status query refused"
            );
            return None;
        }
        let held = header(&resp, "range").and_then(|r| range_held(&r))?;
        if held > size {
            return None;
        }
        // The answer's Location carries the session's new state; a registry
        // that leaves it out keeps the old URL valid.
        let url = location(&req, &resp).unwrap_or_else(|_| session.clone());
        Some((url, held))
    }

    /// Pushes a file whose digest and size the caller knows.
    ///
    /// # Errors
    /// As [`Repository::push_blob`].
    pub async fn push_blob_file(
        &self,
        path: &Path,
        digest: &Digest,
        size: u64,
        mount_from: Option<&str>,
    ) -> Result<PushOutcome, RegistryError> {
        self.push_blob(
            &BlobSource::File(path.to_path_buf()),
            digest,
            size,
            mount_from,
        )
        .await
    }

    pub(super) fn push_endpoint(&self) -> Endpoint {
        // Writes always go to the origin (the last endpoint).
        self.endpoints.last().cloned().unwrap_or(Endpoint {
            registry: String::new(),
            host: String::new(),
            repository: String::new(),
        })
    }

    pub(super) async fn start_upload(
        &self,
        ep: &Endpoint,
        mount: Option<(&Digest, &str)>,
    ) -> Result<UploadStart, RegistryError> {
        let mut url = self.url(ep, "blobs/uploads/").await?;
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let scope = self.scope(ep, mount.map(|(_, from)| from));
        let req = Req::new(Method::POST, url);
        let resp = self.transport.send(&scope, &req).await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => Ok(UploadStart::Session(location(&req, &resp)?)),
            _ => Err(error_from_response(&req.method, &req.url, resp).await),
        }
    }

    /// Sends the blob's bytes from `offset` on into `session` and completes
    /// it. Each chunk the registry confirms is recorded in `progress`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload(
        &self,
        ep: &Endpoint,
        mut session: Url,
        offset: u64,
        source: &BlobSource,
        digest: &Digest,
        size: u64,
        progress: &Mutex<Option<Resume>>,
    ) -> Result<(), RegistryError> {
        let options = &self.transport.options;
        if let BlobSource::Bytes(b) = source {
            if b.len() as u64 != size {
                return Err(RegistryError::Options(format!(
                    "blob {digest}: {} bytes given, size says {size}",
                    b.len()
                )));
            }
        }
        let final_body = if offset == 0 && size <= options.monolithic_upload_limit {
            self.body(source, 0, size)
        } else {
            let chunk = options.upload_chunk_size;
            session = self
                .patch_up_to(ep, session, source, offset, size, chunk, progress)
                .await?;
            Body::Empty
        };
        session
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let req = Req::new(Method::PUT, session)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(final_body);
        let (req, resp) = self.send(ep, req).await?;
        if !resp.status().is_success() {
            return Err(error_from_response(&req.method, &req.url, resp).await);
        }
        Ok(())
    }

    /// Sends bytes `offset..end` of `source` into `session` in PATCHes of
    /// at most `piece` bytes, noting each one the registry took in
    /// `progress`; returns the session's next URL.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn patch_up_to(
        &self,
        ep: &Endpoint,
        mut session: Url,
        source: &BlobSource,
        mut offset: u64,
        end: u64,
        piece: u64,
        progress: &Mutex<Option<Resume>>,
    ) -> Result<Url, RegistryError> {
        while offset < end {
            let len = piece.min(end - offset);
            session = self.patch(ep, session, source, offset, len).await?;
            offset += len;
            put(progress, &session, offset);
        }
        Ok(session)
    }

    /// Sends bytes `offset..offset + len` of `source` into `session` as one
    /// chunk; returns the session's next URL.
    pub(super) async fn patch(
        &self,
        ep: &Endpoint,
        session: Url,
        source: &BlobSource,
        offset: u64,
        len: u64,
    ) -> Result<Url, RegistryError> {
        let req = Req::new(Method::PATCH, session)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(
                reqwest::header::CONTENT_RANGE,
                &format!("{offset}-{}", offset + len - 1),
            )
            .body(self.body(source, offset, len));
        let (req, resp) = self.send(ep, req).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(error_from_response(&req.method, &req.url, resp).await);
        }
        location(&req, &resp)
    }

    /// Bytes `offset..offset + len` of `source` as a request body, counted
    /// for the observer.
    fn body(&self, source: &BlobSource, offset: u64, len: u64) -> Body {
        let meter = || self.observer.clone().map(|o| Meter::new(o, offset));
        match source {
            BlobSource::File(path) => Body::File {
                path: path.clone(),
                offset,
                len,
                meter: meter(),
            },
            BlobSource::Handle(file) => Body::Handle {
                file: file.clone(),
                offset,
                len,
                meter: meter(),
            },
            BlobSource::Bytes(b) => Body::Bytes(b.slice(offset as usize..(offset + len) as usize)),
        }
    }
}

/// A chunked upload to continue: its session URL (with the state of its
/// last confirmed chunk) and the bytes confirmed.
pub(super) struct Resume {
    pub(super) session: Url,
    pub(super) offset: u64,
}

/// What [`Repository::resume`] decided.
pub(super) enum Continue {
    /// Send from this offset into this session URL.
    At(Url, u64),
    /// The blob is in the repository.
    Done,
    /// Open a new session and send everything.
    Restart,
}

/// Whether `e`, met while continuing an upload, is the registry refusing
/// the continuation (a range it does not take, a session it dropped
/// meanwhile) rather than the bytes: then starting again avoids it.
pub(super) fn refused_continuation(e: &RegistryError) -> bool {
    !e.is_retryable()
        && matches!(e.status(), Some(400 | 404 | 416))
        && !e.codes().contains(&"DIGEST_INVALID")
}

pub(super) fn take(progress: &Mutex<Option<Resume>>) -> Option<Resume> {
    progress.lock().unwrap_or_else(|e| e.into_inner()).take()
}

pub(super) fn put(progress: &Mutex<Option<Resume>>, session: &Url, offset: u64) {
    *progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(Resume {
        session: session.clone(),
        offset,
    });
}

/// The bytes an upload status `Range: 0-N` (or `bytes=0-N`) says the
/// registry holds: N + 1. Distribution also writes `0-0` for an empty
/// upload; reading that as one byte only costs a refused PATCH, after which
/// the upload starts again.
fn range_held(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse::<u64>().ok()?.checked_add(1)
}

/// The `Location` of an upload answer, resolved against the request URL.
fn location(req: &Req, resp: &Response) -> Result<Url, RegistryError> {
    let loc = header(resp, LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
        method: req.method.to_string(),
        url: display_url(&req.url),
        message: format!("HTTP {} without a Location header", resp.status().as_u16()),
    })?;
    req.url.join(&loc).map_err(|e| RegistryError::Protocol {
        method: req.method.to_string(),
        url: display_url(&req.url),
        message: format!("bad Location: {e}"),
    })
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Content-Length` as sent (reqwest reports 0 for the empty body of a HEAD).
fn header_length(resp: &Response) -> Option<u64> {
    header(resp, "content-length").and_then(|l| l.trim().parse().ok())
}

fn content_type(resp: &Response) -> Option<String> {
    header(resp, CONTENT_TYPE.as_str())
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str, base: &Url) -> Option<Url> {
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            base.join(part.get(start..end)?).ok()
        })
}

async fn read_body(
    resp: Response,
    url: &Url,
    limit: u64,
    read_timeout: std::time::Duration,
) -> Result<Bytes, RegistryError> {
    use futures::StreamExt;
    let too_large = || RegistryError::TooLarge {
        url: display_url(url),
        limit,
    };
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let announced = resp.content_length();
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Transport {
            method: "GET".into(),
            url: display_url(url),
            message: if e.is_timeout() {
                format!("{e}: {}", timed_out(&host_of(url), read_timeout, false))
            } else {
                broke_off("the answer", out.len() as u64, announced, &e)
            },
            timeout: e.is_timeout(),
        })?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_status_ranges() {
        assert_eq!(range_held("0-1048575"), Some(1_048_576));
        assert_eq!(range_held("bytes=0-99"), Some(100));
        assert_eq!(range_held(" 0-0 "), Some(1));
        for bad in ["", "0", "5-10", "0-x", "0-18446744073709551615"] {
            assert_eq!(range_held(bad), None, "{bad}");
        }
    }

    #[test]
    fn mirror_endpoints_and_links() {
        let e = Endpoint::mirror("https://mirror.example.com/hub/", "library/busybox");
        assert_eq!(
            (e.host.as_str(), e.repository.as_str()),
            ("mirror.example.com", "hub/library/busybox")
        );
        let e = Endpoint::mirror("index.docker.io", "library/busybox");
        assert_eq!(e.host, "registry-1.docker.io");
        let base = Url::parse("https://r.io/v2/a/tags/list").unwrap();
        let next = next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#, &base).unwrap();
        assert_eq!(next.as_str(), "https://r.io/v2/a/tags/list?last=b&n=2");
        assert!(next_link(r#"<x>; rel="prev""#, &base).is_none());
    }

    #[test]
    fn pull_handles_try_maps_and_mirrors_before_the_origin() {
        let mut options = RegistryOptions {
            mirrors: vec!["m1.io".into(), "m2.io/dh".into()],
            ..RegistryOptions::default()
        };
        options
            .registry_maps
            .insert("quay.io".into(), vec!["q-mirror.io".into()]);
        let client = RegistryClient::new(options).unwrap();
        let hub: Reference = "busybox".parse().unwrap();
        let hosts = |r: &Repository| {
            r.endpoints
                .iter()
                .map(|e| format!("{}/{}", e.host, e.repository))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            hosts(&client.repository(&hub, Access::Pull)),
            vec![
                "m1.io/library/busybox",
                "m2.io/dh/library/busybox",
                "registry-1.docker.io/library/busybox"
            ]
        );
        assert_eq!(
            hosts(&client.repository(&hub, Access::Push)),
            vec!["registry-1.docker.io/library/busybox"]
        );
        let quay: Reference = "quay.io/o/x".parse().unwrap();
        assert_eq!(
            hosts(&client.repository(&quay, Access::Pull)),
            vec!["q-mirror.io/o/x", "quay.io/o/x"]
        );
        assert_eq!(client.repository(&quay, Access::Pull).name(), "o/x");
    }
}
