//! `--oci-layout-path`: the image as an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/…`), readable by skopeo, umoci
//! and crane. An existing layout is added to, as Kaniko does.
//!
//! The layout always holds an OCI manifest: skopeo and umoci look only for
//! OCI manifests and indexes in `index.json`, so a Docker schema 2 image is
//! written with OCI media types over the same config and layer blobs. Its
//! manifest digest then differs from the pushed one; the image ID (config
//! digest) and layers are the same.

use super::attest::{plain, Attached};
use super::{io_err, layer_file, OutputError};
use crate::model::assemble::BuiltImage;
use crate::model::blobs::BlobStore;
use kiln_oci::{media, Descriptor, Digest, Index};
use std::fs;
use std::path::Path;

/// The annotation that names an image inside a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Writes `image` into the layout at `dir`, tagged `ref_name` when given.
/// An entry with the same `ref_name` is replaced.
pub async fn write(
    dir: &Path,
    image: &BuiltImage,
    attached: Option<&Attached>,
    ref_name: Option<&str>,
    blobs: &BlobStore,
) -> Result<(), OutputError> {
    let image = &image.to_oci();
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(io_err(&blob_dir))?;
    let layout = dir.join("oci-layout");
    fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err(&layout))?;
    for layer in &image.layers {
        let src = layer_file(blobs, layer).await?;
        put_file(&blob_dir, &layer.descriptor.digest, &src)?;
    }
    put_bytes(&blob_dir, &image.config.digest, &image.config_bytes)?;
    put_bytes(&blob_dir, &image.digest, &image.manifest_bytes)?;

    if let Some(attached) = attached {
        for (desc, bytes) in attached
            .blobs()
            .chain([&attached.manifest, &attached.index])
        {
            put_bytes(&blob_dir, &desc.digest, bytes)?;
        }
    }

    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => Index::from_slice(&bytes).unwrap_or_else(|_| Index::new(true, Vec::new())),
        Err(_) => Index::new(true, Vec::new()),
    };
    // With statements attached (the image is then OCI already, so the
    // index's image manifest is this one), the entry is the image index.
    let mut desc = match attached {
        Some(a) => plain(&a.index.0),
        None => Descriptor::new(
            image.manifest_media_type.clone(),
            image.digest.clone(),
            image.manifest_bytes.len() as u64,
        ),
    };
    if let Some(name) = ref_name {
        desc.annotations
            .insert(REF_NAME.to_string(), name.to_string());
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(name));
    } else {
        let digest = desc.digest.clone();
        index.manifests.retain(|d| d.digest != digest);
    }
    index.manifests.push(desc);
    index.media_type = Some(media::OCI_INDEX.to_string());
    fs::write(&index_path, index.to_vec()).map_err(io_err(&index_path))?;
    Ok(())
}

fn put_bytes(blob_dir: &Path, digest: &Digest, bytes: &[u8]) -> Result<(), OutputError> {
    let path = blob_dir.join(digest.hex());
    fs::write(&path, bytes).map_err(io_err(&path))
}

fn put_file(blob_dir: &Path, digest: &Digest, src: &Path) -> Result<(), OutputError> {
    let path = blob_dir.join(digest.hex());
    if path.exists() {
        return Ok(());
    }
    // A hard link costs nothing when the layout is on the same filesystem.
    if fs::hard_link(src, &path).is_ok() {
        return Ok(());
    }
    fs::copy(src, &path).map(|_| ()).map_err(io_err(&path))
}
