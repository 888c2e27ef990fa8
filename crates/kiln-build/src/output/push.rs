//! Pushing an image to a registry destination: every blob first (HEAD, then
//! a cross-repository mount when the blob already lives in the same
//! registry, else an upload), the manifest last, so no tag ever points at a
//! missing blob.

use super::attest::Attached;
use super::early_push::{EarlyPush, PARALLEL_BLOBS};
use super::sink::{Finished, OutputSink, Pushed, Written};
use super::OutputError;
use crate::model::assemble::BuiltImage;
use crate::model::blobs::BlobStore;
use crate::model::image::{LayerOrigin, LayerRef};
use crate::options::Destination;
use crate::progress::{ProgressEvent, ProgressSink, TransferMeter};
use futures::{StreamExt, TryStreamExt};
use kiln_oci::{Access, BlobSource, Digest, PushOutcome, Reference, RegistryError, Repository};
use std::sync::Arc;
use std::time::Instant;

/// Blob existence checks (HEAD) in flight at once per destination: they
/// move no data, and a warm rebuild on a base of many layers is mostly them.
const PARALLEL_CHECKS: usize = 16;

/// What a push did, for the build summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Blobs already present.
    pub existing: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
}

/// Pushes the image to every destination in turn, each with its blobs
/// first and its manifests last; layers whose upload started while the
/// build ran are waited for, not sent again.
pub struct RegistrySink<'a> {
    destinations: &'a [Destination],
    by_digest: bool,
    progress: &'a dyn ProgressSink,
    early: Option<&'a EarlyPush>,
}

impl<'a> RegistrySink<'a> {
    /// A sink pushing to `destinations`; with `by_digest` (one platform's
    /// image of several) each is pushed by digest, tagged later by the
    /// index.
    pub(crate) fn new(
        destinations: &'a [Destination],
        by_digest: bool,
        progress: &'a dyn ProgressSink,
        early: Option<&'a EarlyPush>,
    ) -> RegistrySink<'a> {
        RegistrySink {
            destinations,
            by_digest,
            progress,
            early,
        }
    }
}

#[async_trait::async_trait]
impl OutputSink for RegistrySink<'_> {
    async fn write(&self, finished: &Finished<'_>) -> Result<Written, OutputError> {
        let Finished {
            image: built,
            attached,
            blobs,
        } = *finished;
        let mut written = Written::default();
        for dest in self.destinations {
            let push_started = Instant::now();
            self.progress.event(&ProgressEvent::PushStarted {
                destination: dest.as_given.clone(),
                blobs: built.layers.len() + 1,
                bytes: built.config.size
                    + built.layers.iter().map(|l| l.descriptor.size).sum::<u64>(),
            });
            // One platform's image of several: tagged by the index, not here.
            // With statements attached, what goes in that index is the
            // platform's own index (its image and attestation manifest).
            let reference = match self.by_digest {
                true => dest
                    .reference
                    .with_digest(attached.map_or(&built.digest, |a| a.digest()).clone()),
                false => dest.reference.clone(),
            };
            let report = push(
                &reference,
                &dest.as_given,
                built,
                attached,
                blobs,
                self.early,
            )
            .await?;
            self.progress.event(&ProgressEvent::PushDone {
                destination: dest.as_given.clone(),
                uploaded: report.uploaded,
                mounted: report.mounted,
                existing: report.existing,
                uploaded_bytes: report.uploaded_bytes,
                duration: push_started.elapsed(),
            });
            tracing::debug!(
                "pushed {} ({} uploaded, {} mounted, {} already there)",
                dest.as_given,
                report.uploaded,
                report.mounted,
                report.existing
            );
            written.pushed.push(Pushed {
                destination: dest.as_given.clone(),
                report,
            });
        }
        Ok(written)
    }
}

/// Pushes `image` to `destination` (its tag, or its digest when it has none).
/// Layers in `early` that were uploaded while the build ran are waited for,
/// not sent again.
async fn push(
    destination: &Reference,
    as_given: &str,
    image: &BuiltImage,
    attached: Option<&Attached>,
    blobs: &BlobStore,
    early: Option<&EarlyPush>,
) -> Result<PushReport, OutputError> {
    let err = |source| OutputError::Push {
        destination: as_given.to_string(),
        source: Box::new(source),
    };
    let repo = blobs.client().repository(destination, Access::Push);
    let transfers = tokio::sync::Semaphore::new(PARALLEL_BLOBS);
    // Made up front (a future does nothing until polled): a stream mapping
    // layers through a closure would hold that closure across the await,
    // and the boxed `OutputSink` future could then not be proven `Send`.
    let pushes: Vec<_> = image
        .layers
        .iter()
        .map(|layer| {
            let meter = TransferMeter::new(
                blobs.progress().clone(),
                Some(as_given.to_string()),
                layer.descriptor.digest.to_string(),
                layer.descriptor.size,
            );
            let target = Target {
                repo: &repo,
                destination,
                as_given,
                transfers: &transfers,
            };
            push_layer(target, layer, blobs, meter, early)
        })
        .collect();
    let layers = futures::stream::iter(pushes)
        .buffer_unordered(PARALLEL_CHECKS)
        .try_collect::<Vec<(PushOutcome, u64)>>();
    // The config goes up beside the layers, not after the last of them:
    // a registry takes blobs in any order, only the manifest must wait for
    // all of them (three requests saved from the end of every push).
    let config_bytes = BlobSource::Bytes(image.config_bytes.clone().into());
    let config = repo.push_blob(&config_bytes, &image.config.digest, image.config.size, None);
    let (outcomes, config) = futures::try_join!(layers, config).map_err(err)?;
    let mut report = PushReport::default();
    for (outcome, size) in outcomes.into_iter().chain([(config, image.config.size)]) {
        match outcome {
            PushOutcome::Exists => report.existing += 1,
            PushOutcome::Mounted => report.mounted += 1,
            PushOutcome::Uploaded => {
                report.uploaded += 1;
                report.uploaded_bytes += size;
            }
        }
    }
    let reference = destination
        .digest()
        .map(Digest::to_string)
        .or_else(|| destination.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".to_string());
    let attached = match attached {
        Some(a) if a.format == crate::options::AttestationFormat::Referrers => {
            push_referrers(&repo, &reference, image, a, &mut report)
                .await
                .map_err(err)?;
            return Ok(report);
        }
        other => other,
    };
    let Some(attached) = attached else {
        repo.put_manifest(
            &reference,
            image.manifest_bytes.clone().into(),
            &image.manifest_media_type,
        )
        .await
        .map_err(err)?;
        return Ok(report);
    };
    // The image and attestation manifests by digest, their blobs first; the
    // index they are in last, under the tag.
    repo.put_manifest(
        &image.digest.to_string(),
        image.manifest_bytes.clone().into(),
        &image.manifest_media_type,
    )
    .await
    .map_err(err)?;
    for (desc, bytes) in attached.blobs() {
        let outcome = repo
            .push_blob(
                &BlobSource::Bytes(bytes.clone().into()),
                &desc.digest,
                desc.size,
                None,
            )
            .await
            .map_err(err)?;
        if outcome == PushOutcome::Uploaded {
            report.uploaded += 1;
            report.uploaded_bytes += desc.size;
        } else {
            report.existing += 1;
        }
    }
    let (manifest, manifest_bytes) = &attached.manifest;
    repo.put_manifest(
        &manifest.digest.to_string(),
        manifest_bytes.clone().into(),
        &manifest.media_type,
    )
    .await
    .map_err(err)?;
    let (index, index_bytes) = &attached.index;
    repo.put_manifest(&reference, index_bytes.clone().into(), &index.media_type)
        .await
        .map_err(err)?;
    Ok(report)
}

/// The image under its tag as without statements, then each statement as
/// an OCI 1.1 artifact whose subject it is; where the registry has no
/// referrers API, the `sha256-<hex>` tag's index lists them.
async fn push_referrers(
    repo: &Repository,
    reference: &str,
    image: &BuiltImage,
    attached: &Attached,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    repo.put_manifest(
        reference,
        image.manifest_bytes.clone().into(),
        &image.manifest_media_type,
    )
    .await?;
    for (desc, bytes) in attached.layers.iter().chain([&attached.empty]) {
        let outcome = repo
            .push_blob(
                &BlobSource::Bytes(bytes.clone().into()),
                &desc.digest,
                desc.size,
                None,
            )
            .await?;
        if outcome == PushOutcome::Uploaded {
            report.uploaded += 1;
            report.uploaded_bytes += desc.size;
        } else {
            report.existing += 1;
        }
    }
    // An OCI 1.1 registry names the subject of each artifact it indexes
    // (`OCI-Subject`); one that names it for all of them keeps the
    // referrers itself, and the fallback tag would only be clutter.
    let mut indexed = true;
    for (desc, bytes) in &attached.artifacts {
        let answer = repo
            .put_manifest_answered(
                &desc.digest.to_string(),
                bytes.clone().into(),
                &desc.media_type,
            )
            .await?;
        indexed &= answer.subject.as_ref() == Some(&image.digest);
    }
    // A registry from before the header was specified may still have the
    // referrers API: asked directly.
    if indexed || repo.referrers(&image.digest).await?.is_some() {
        return Ok(());
    }
    let tag = attached.fallback_tag();
    let existing = match repo.get_manifest(&tag).await {
        Ok(found) => Some(found.bytes),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e),
    };
    let index = super::attest::fallback_index(existing.as_deref(), &attached.artifacts);
    repo.put_manifest(&tag, index.into(), kiln_oci::media::OCI_INDEX)
        .await?;
    Ok(())
}

/// One destination of a push, and the transfers it may have in flight.
#[derive(Clone, Copy)]
struct Target<'a> {
    repo: &'a Repository,
    destination: &'a Reference,
    as_given: &'a str,
    transfers: &'a tokio::sync::Semaphore,
}

async fn push_layer(
    target: Target<'_>,
    layer: &LayerRef,
    blobs: &BlobStore,
    meter: TransferMeter,
    early: Option<&EarlyPush>,
) -> Result<(PushOutcome, u64), RegistryError> {
    let size = layer.descriptor.size;
    if let Some(early) = early {
        match early
            .outcome(target.destination, &layer.descriptor.digest)
            .await
        {
            Some(Ok(outcome)) => {
                meter.report(size);
                return Ok((outcome, size));
            }
            // Pushed again now, with the push's own retries and errors.
            Some(Err(e)) => tracing::debug!(
                "early upload of {} to {} failed: {e}",
                layer.descriptor.digest,
                target.as_given
            ),
            None => {}
        }
    }
    let outcome = push_layer_blob(target, layer, blobs, meter).await?;
    Ok((outcome, size))
}

async fn push_layer_blob(
    target: Target<'_>,
    layer: &LayerRef,
    blobs: &BlobStore,
    meter: TransferMeter,
) -> Result<PushOutcome, RegistryError> {
    let Target {
        repo, destination, ..
    } = target;
    let digest = &layer.descriptor.digest;
    let size = layer.descriptor.size;
    let meter = Arc::new(meter);
    let uploading = repo.clone().observed(meter.clone());
    // Only transfers take a permit: the checks before them run all at once.
    let transfer = || async {
        // The semaphore is never closed, so acquiring only waits.
        target.transfers.acquire().await.ok()
    };
    let outcome = match &layer.origin {
        LayerOrigin::Local(path) => {
            let _permit = transfer().await;
            uploading.push_blob_file(path, digest, size, None).await?
        }
        LayerOrigin::Remote(source) => {
            if repo.blob_exists(digest).await?.is_some() {
                PushOutcome::Exists
            } else if source.registry() == destination.registry()
                && source.repository() != destination.repository()
                && repo.mount_blob(digest, source.repository()).await?
            {
                PushOutcome::Mounted
            } else {
                let _permit = transfer().await;
                let path = blobs.local_path(layer).await?;
                uploading.push_blob_file(&path, digest, size, None).await?
            }
        }
    };
    if outcome != PushOutcome::Uploaded {
        // Nothing moved, but the blob is where it has to be.
        meter.report(size);
    }
    Ok(outcome)
}
