//! A base image from its registry: the manifest and config (no layer), as
//! the image a stage starts from. A stage's own pull and the prefetch that
//! unpacks a later stage's base early (`engine::prefetch`) both go here.

use super::error::BuildError;
use super::image::{ImageState, LayerOrigin, LayerRef};
use kiln_oci::{media, Digest, Platform, Reference, RegistryClient};

/// Pulls `parsed` (given as `reference`, which errors name) for
/// `platform`: the image and its manifest digest.
///
/// # Errors
/// [`BuildError::Pull`] when the registry refuses or the config does not
/// list one diff_id per layer.
pub(crate) async fn pull(
    client: &RegistryClient,
    reference: &str,
    parsed: &Reference,
    platform: &Platform,
) -> Result<(ImageState, Digest), BuildError> {
    let pulled = client
        .pull_image(parsed, platform)
        .await
        .map_err(|source| BuildError::Pull {
            reference: reference.to_string(),
            source: Box::new(source),
        })?;
    let diff_ids = &pulled.config.rootfs.diff_ids;
    if diff_ids.len() != pulled.manifest.layers.len() {
        return Err(BuildError::Pull {
            reference: reference.to_string(),
            source: Box::new(kiln_oci::RegistryError::Options(format!(
                "image config lists {} layers but the manifest {}",
                diff_ids.len(),
                pulled.manifest.layers.len()
            ))),
        });
    }
    let layers = pulled
        .manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(d, diff_id)| LayerRef {
            descriptor: d.clone(),
            diff_id: diff_id.clone(),
            origin: LayerOrigin::Remote(pulled.reference.clone()),
        })
        .collect();
    Ok((
        ImageState {
            layers,
            oci: pulled.media_type == media::OCI_MANIFEST,
            annotations: pulled.manifest.annotations.clone(),
            config: pulled.config,
        },
        pulled.digest,
    ))
}
