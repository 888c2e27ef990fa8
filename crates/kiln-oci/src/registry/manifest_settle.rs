//! Putting a manifest again when the registry could not see blobs that are
//! there.
//!
//! The distribution registry finishes every blob upload, and every mount,
//! by rewriting the blob's link file in the repository, and its filesystem
//! driver does that by truncating the file and writing it again. A manifest
//! put that reads the link in between finds it empty and refuses the
//! manifest (`MANIFEST_BLOB_UNKNOWN`, with `DIGEST_INVALID` for the empty
//! link) although the blob is stored. Any second client uploading a blob
//! the manifest names (a parallel CI job pushing the same base to the same
//! repository, a cache store in the same repository) can cause it. When
//! every blob the manifest names answers a `HEAD`, the refusal was that
//! window, and the put is tried again a few times; when one is really
//! missing, the registry's answer stands.

use super::client::Repository;
use super::error::RegistryError;
use crate::manifest::{Index, Manifest};
use crate::media;
use std::time::Duration;

/// The pauses before putting a refused manifest again: the window is a
/// rewrite of a 71-byte file, so the first pause nearly always clears it,
/// and the others cover uploads that keep finishing.
pub(super) const PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(900),
];

/// True when the registry refused a manifest for naming a blob it does not
/// have.
pub(super) fn names_unknown_blob(error: &RegistryError) -> bool {
    error.codes().contains(&"MANIFEST_BLOB_UNKNOWN")
}

impl Repository {
    /// True when everything `manifest` (of `media_type`) names is in the
    /// repository: an image manifest's config and layers, an index's
    /// manifests. False for bytes that are neither.
    pub(super) async fn holds_everything_named(
        &self,
        manifest: &[u8],
        media_type: &str,
    ) -> Result<bool, RegistryError> {
        if media_type == media::OCI_INDEX || media_type == media::DOCKER_MANIFEST_LIST {
            let Ok(index) = Index::from_slice(manifest) else {
                return Ok(false);
            };
            for child in &index.manifests {
                if self
                    .head_manifest(&child.digest.to_string())
                    .await?
                    .is_none()
                {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let Ok(image) = Manifest::from_slice(manifest) else {
            return Ok(false);
        };
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            if self.blob_exists(&blob.digest).await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
