//! `--oci-layout-path`: the image as an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/…`), readable by skopeo, umoci
//! and crane. An existing layout is added to, as Kaniko does. The format is
//! [`crate::layout`]'s.
//!
//! The layout always holds an OCI manifest: skopeo and umoci look only for
//! OCI manifests and indexes in `index.json`, so a Docker schema 2 image is
//! written with OCI media types over the same config and layer blobs. Its
//! manifest digest then differs from the pushed one; the image ID (config
//! digest) and layers are the same.

use super::attest::plain;
use super::sink::{Finished, OutputSink, Written};
use super::{layer_file, OutputError};
use crate::layout::{refs, Layout};
use kiln_oci::{media, Descriptor};
use std::path::PathBuf;

/// The annotation that names an image inside a layout.
pub use crate::layout::REF_NAME;

/// `--oci-layout-path`: adds the image to a layout directory.
pub struct OciLayoutSink {
    dir: PathBuf,
    ref_name: Option<String>,
}

impl OciLayoutSink {
    /// A sink writing into the layout at `dir`, naming the image `ref_name`
    /// when given (an entry of that name is replaced).
    pub fn new(dir: PathBuf, ref_name: Option<String>) -> OciLayoutSink {
        OciLayoutSink { dir, ref_name }
    }
}

#[async_trait::async_trait]
impl OutputSink for OciLayoutSink {
    async fn write(&self, finished: &Finished<'_>) -> Result<Written, OutputError> {
        let (image, attached, blobs) = (finished.image, finished.attached, finished.blobs);
        let (dir, ref_name) = (&self.dir, self.ref_name.as_deref());
        let image = &image.to_oci();
        let layout = Layout::create(dir)?;
        for layer in &image.layers {
            // The blob store verified the file when it was made.
            let src = layer_file(blobs, layer).await?;
            layout.link_blob(&layer.descriptor.digest, &src)?;
        }
        layout.put_blob(&image.config.digest, &image.config_bytes)?;
        layout.put_blob(&image.digest, &image.manifest_bytes)?;

        if let Some(attached) = attached {
            for (desc, bytes) in attached
                .blobs()
                .chain([&attached.manifest, &attached.index])
            {
                layout.put_blob(&desc.digest, bytes)?;
            }
        }

        let mut index = layout.index_or_empty();
        // With statements attached (the image is then OCI already, so the
        // index's image manifest is this one), the entry is the image index.
        let desc = match attached {
            Some(a) => plain(&a.index.0),
            None => Descriptor::new(
                image.manifest_media_type.clone(),
                image.digest.clone(),
                image.manifest_bytes.len() as u64,
            ),
        };
        refs::put(&mut index, desc, ref_name);
        index.media_type = Some(media::OCI_INDEX.to_string());
        layout.write_index(&index)?;
        Ok(Written::default())
    }
}
