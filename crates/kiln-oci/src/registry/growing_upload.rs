//! Uploading a blob while it is still being written.
//!
//! A big layer takes seconds to compress and as long again to upload;
//! starting the upload only once the file is complete adds the two up.
//! [`Repository::push_growing_blob`] opens an upload session once the blob
//! has grown past one upload chunk (32 MiB; the monolithic limit if that is
//! smaller) and PATCHes each chunk as soon as the file holds it (the
//! chunks written meanwhile together, when it has fallen behind), so that
//! when the writer finishes only what is not sent yet and the final
//! `PUT ?digest=` are left. A blob that ends below that goes the way of
//! [`Repository::push_blob`] (HEAD, then one PUT): small layers cost no
//! more requests than when they were pushed complete. A
//! broken connection continues where the registry has the bytes, as in
//! `push_blob`.

use super::client::{put, refused_continuation, take, Continue, Endpoint, Resume, UploadStart};
use super::{BlobSource, PushOutcome, RegistryError, Repository};
use crate::digest::Digest;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long to wait before looking again at a blob that has not grown by a
/// chunk (or ended): short next to the time a chunk takes to write.
const POLL: Duration = Duration::from_millis(10);

/// The most chunks one PATCH carries when the upload is behind its writer
/// (or the writer has finished): each request costs the registry a few
/// tens of milliseconds besides its bytes (the distribution registry:
/// 1 GiB in 32 PATCHes of 32 MiB took 4.4 s, in 2 of 512 MiB 3.6 s), and a
/// request broken midway loses at most this much.
const BATCH_CHUNKS: u64 = 8;

/// A blob file that its writer is still appending to.
pub trait GrowingBlob: Send + Sync {
    /// The file, once the writer has opened it; read with positioned reads.
    fn file(&self) -> Option<Arc<File>>;
    /// Bytes in the file that no later write changes.
    fn written(&self) -> u64;
    /// How the writer ended, once it has.
    fn end(&self) -> Option<GrowingEnd>;
}

/// How the writer of a [`GrowingBlob`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowingEnd {
    /// The file holds the whole blob.
    Complete {
        /// The blob digest.
        digest: Digest,
        /// The blob size.
        size: u64,
    },
    /// The file is no blob: nothing of it may be stored.
    Failed,
}

impl Repository {
    /// Pushes `blob` as its writer produces it; see the module docs.
    ///
    /// # Errors
    /// [`RegistryError::SourceFailed`] when the writer failed (its session,
    /// if one was opened, is cancelled); otherwise as
    /// [`Repository::push_blob`].
    pub async fn push_growing_blob(
        &self,
        blob: &dyn GrowingBlob,
    ) -> Result<PushOutcome, RegistryError> {
        // A session is worth opening once there is a whole chunk to send
        // (and never for a blob that one PUT would carry).
        let options = &self.transport.options;
        let limit = options
            .upload_chunk_size
            .min(options.monolithic_upload_limit);
        let file = loop {
            match blob.end() {
                Some(GrowingEnd::Failed) => return Err(RegistryError::SourceFailed),
                Some(GrowingEnd::Complete { digest, size }) => {
                    tracing::debug!(%digest, size, "blob complete before its upload began");
                    let file = blob.file().ok_or(RegistryError::SourceFailed)?;
                    let source = BlobSource::Handle(file);
                    return self.push_blob(&source, &digest, size, None).await;
                }
                None => {}
            }
            match blob.file() {
                Some(file) if blob.written() > limit => break file,
                _ => tokio::time::sleep(POLL).await,
            }
        };
        tracing::debug!(
            written = blob.written(),
            "uploading a blob while it is written"
        );
        let source = BlobSource::Handle(file);
        let ep = self.push_endpoint();
        // As in `push_blob`: the session and the bytes the registry
        // confirmed, for an attempt after a broken connection to continue.
        let progress: Mutex<Option<Resume>> = Mutex::new(None);
        self.transport
            .retry(self.access, || {
                self.stream_attempt(&ep, blob, &source, &progress)
            })
            .await
    }

    /// One attempt: a session (new, or continued from `progress`), chunks
    /// as the blob grows, then the rest once it is complete.
    async fn stream_attempt(
        &self,
        ep: &Endpoint,
        blob: &dyn GrowingBlob,
        source: &BlobSource,
        progress: &Mutex<Option<Resume>>,
    ) -> Result<PushOutcome, RegistryError> {
        if let Some(previous) = take(progress) {
            match self.resume_growing(ep, previous, blob).await? {
                Continue::Done => return Ok(PushOutcome::Uploaded),
                Continue::Restart => {}
                Continue::At(session, offset) => {
                    match self
                        .stream(ep, blob, source, progress, session, offset)
                        .await
                    {
                        // As in `push_blob`: a continuation the registry
                        // refuses is started again rather than failed.
                        Err(e) if refused_continuation(&e) => {
                            tracing::info!(error = %e, "the registry refused to continue the blob upload; starting it again");
                            take(progress);
                        }
                        other => return other,
                    }
                }
            }
        }
        let session = self.open_session(ep).await?;
        self.stream(ep, blob, source, progress, session, 0).await
    }

    /// Sends the blob from `offset` on into `session`: a chunk whenever the
    /// file holds one more, the rest once the blob is complete.
    async fn stream(
        &self,
        ep: &Endpoint,
        blob: &dyn GrowingBlob,
        source: &BlobSource,
        progress: &Mutex<Option<Resume>>,
        mut session: url::Url,
        mut offset: u64,
    ) -> Result<PushOutcome, RegistryError> {
        // Kept for the next attempt, should this one break before the
        // registry confirms a chunk.
        put(progress, &session, offset);
        let chunk = self.transport.options.upload_chunk_size;
        let batch = chunk * BATCH_CHUNKS;
        loop {
            match blob.end() {
                Some(GrowingEnd::Failed) => {
                    self.cancel_upload(ep, session).await;
                    take(progress);
                    return Err(RegistryError::SourceFailed);
                }
                Some(GrowingEnd::Complete { digest, size }) => {
                    // The same layer may be there already (a rebuild that
                    // did not use the cache): then the rest is not sent.
                    if self.blob_exists(&digest).await?.is_some() {
                        self.cancel_upload(ep, session).await;
                        return Ok(PushOutcome::Exists);
                    }
                    let session = self
                        .patch_up_to(ep, session, source, offset, size, batch, progress)
                        .await?;
                    // Only the `PUT ?digest=` is left.
                    self.upload(ep, session, size, source, &digest, size, progress)
                        .await?;
                    return Ok(PushOutcome::Uploaded);
                }
                None => {}
            }
            // Every whole chunk written so far goes in one request: an
            // upload that fell behind its writer catches up in fewer.
            let ready = blob.written().saturating_sub(offset) / chunk * chunk;
            if ready > 0 {
                let len = ready.min(batch);
                session = self.patch(ep, session, source, offset, len).await?;
                offset += len;
                put(progress, &session, offset);
            } else {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Where to go on after a broken connection: as `push_blob` does once
    /// the blob is complete; before, wherever the registry says it stands
    /// (it cannot hold more than the blob has so far).
    async fn resume_growing(
        &self,
        ep: &Endpoint,
        previous: Resume,
        blob: &dyn GrowingBlob,
    ) -> Result<Continue, RegistryError> {
        if let Some(GrowingEnd::Complete { digest, size }) = blob.end() {
            return self.resume(ep, previous, &digest, size).await;
        }
        let at = self
            .upload_status(ep, &previous.session, blob.written())
            .await;
        Ok(match at {
            Some((session, held)) => Continue::At(session, held),
            None => Continue::Restart,
        })
    }

    async fn open_session(&self, ep: &Endpoint) -> Result<url::Url, RegistryError> {
        match self.start_upload(ep, None).await? {
            UploadStart::Session(url) => Ok(url),
            // Only a mount request is answered with a mount.
            UploadStart::Mounted => unreachable!("no mount was asked for"),
        }
    }
}
