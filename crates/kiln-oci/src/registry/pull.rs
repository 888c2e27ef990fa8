//! Pulling an image's metadata: manifest (through an index when there is
//! one) and config.

use super::client::RegistryClient;
use super::error::RegistryError;
use super::options::Access;
use crate::digest::Digest;
use crate::image::ImageConfig;
use crate::manifest::{Index, Manifest};
use crate::media;
use crate::platform::Platform;
use crate::reference::Reference;
use bytes::Bytes;

/// Image configs larger than this are refused: a config is a few KiB of
/// JSON (its history and diff_ids grow with the layers, which are bounded
/// below); containerd reads configs under the same kind of bound.
pub const CONFIG_SIZE_LIMIT: u64 = 16 * 1024 * 1024;

/// Base images with more layers than this are refused before anything is
/// downloaded. Every layer is a download and an extraction, so a manifest
/// that lists one small layer many thousand times is a cheap way to make a
/// build run for hours. The kernel's overlayfs stacks at most 500 lower
/// layers (`OVL_MAX_STACK`), so no runtime that mounts images as overlays
/// (containerd, CRI-O, Docker's overlay2, which stops at 125) can run such
/// an image anyway.
pub const MAX_LAYERS: usize = 500;

/// An image's metadata as pulled: what the build needs to start from it.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference pinned to the platform manifest's digest.
    pub reference: Reference,
    /// Digest of the platform manifest.
    pub digest: Digest,
    /// Digest of the index the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes.
    pub manifest_bytes: Bytes,
    /// The manifest's media type.
    pub media_type: String,
    /// The config.
    pub config: ImageConfig,
    /// The config's exact bytes (their digest is `manifest.config.digest`).
    pub config_bytes: Bytes,
}

impl RegistryClient {
    /// Fetches the manifest of `reference` for `platform` (choosing from an
    /// index when the reference names one) and its config.
    ///
    /// # Errors
    /// HTTP and auth errors, digest mismatches, unparsable documents, and
    /// [`RegistryError::NoMatchingPlatform`].
    pub async fn pull_image(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<PulledImage, RegistryError> {
        let repo = self.repository(reference, Access::Pull);
        let too_large = |what: &'static str| {
            move |e: RegistryError| match e {
                RegistryError::TooLarge { url, limit } => RegistryError::ImageLimit {
                    image: reference.to_string(),
                    what: format!("the {what} at {url} is too large"),
                    limit: format!("{limit} bytes"),
                },
                other => other,
            }
        };
        let first = repo
            .get_manifest(&reference.manifest_reference())
            .await
            .map_err(too_large("manifest or index"))?;
        let doc_err = |what: &str, source| RegistryError::Document {
            what: format!("{what} of {reference}"),
            url: reference.to_string(),
            source,
        };
        let (fetched, index_digest) = if media::is_index(&first.media_type) {
            let index = Index::from_slice(&first.bytes).map_err(|e| doc_err("index", e))?;
            let chosen = index.find_platform(platform).ok_or_else(|| {
                let available: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                    .collect();
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: if available.is_empty() {
                        "none".into()
                    } else {
                        available.join(", ")
                    },
                }
            })?;
            let m = repo
                .get_manifest(&chosen.digest.to_string())
                .await
                .map_err(too_large("manifest"))?;
            (m, Some(first.digest))
        } else {
            (first, None)
        };
        if !media::is_manifest(&fetched.media_type) {
            return Err(RegistryError::Protocol {
                method: "GET".into(),
                url: reference.to_string(),
                message: format!(
                    "unsupported manifest media type {} (Docker schema 1 images must be re-pushed)",
                    fetched.media_type
                ),
            });
        }
        let manifest = Manifest::from_slice(&fetched.bytes).map_err(|e| doc_err("manifest", e))?;
        if manifest.layers.len() > MAX_LAYERS {
            return Err(RegistryError::ImageLimit {
                image: reference.to_string(),
                what: format!("the manifest lists {} layers", manifest.layers.len()),
                limit: format!(
                    "{MAX_LAYERS} layers (the most overlayfs can stack; Docker stops at 125)"
                ),
            });
        }
        if manifest.config.size > CONFIG_SIZE_LIMIT {
            return Err(RegistryError::ImageLimit {
                image: reference.to_string(),
                what: format!("the config is {} bytes", manifest.config.size),
                limit: format!("{CONFIG_SIZE_LIMIT} bytes"),
            });
        }
        // A manifest may carry its config (OCI 1.1 `data`, as Debian's
        // official images do): used when it is the config the descriptor
        // names, saving a request per image; fetched otherwise.
        let config_bytes = match manifest.config.embedded_data() {
            Some(bytes) => Bytes::from(bytes),
            None => repo
                .get_blob_bytes(
                    &manifest.config.digest,
                    Some(manifest.config.size),
                    CONFIG_SIZE_LIMIT,
                )
                .await
                .map_err(too_large("config"))?,
        };
        let config = ImageConfig::from_slice(&config_bytes).map_err(|e| doc_err("config", e))?;
        Ok(PulledImage {
            reference: reference.with_digest(fetched.digest.clone()),
            digest: fetched.digest,
            index_digest,
            manifest,
            manifest_bytes: fetched.bytes,
            media_type: fetched.media_type,
            config,
            config_bytes,
        })
    }
}
