//! `--tar-path`: the image as one tar that `docker load` reads
//! (`manifest.json` with `RepoTags`) and that is also an OCI image layout
//! archive (`oci-layout`, `index.json`, `blobs/sha256/…`, written by
//! [`crate::layout::tar`]), as newer `docker save` writes. Layers are stored
//! as they are pushed (compressed); `docker load` decompresses them.

use super::attest::plain;
use super::sink::{Finished, OutputSink, Written};
use super::{layer_file, OutputError};
use crate::layout::{blob_name, refs, tar::write_tar_file};
use kiln_oci::{media, Descriptor, Index};
use serde_json::json;
use std::path::PathBuf;

/// `--tar-path`: writes the image to one file, tagged with its `RepoTags`.
pub struct DockerTarSink {
    path: PathBuf,
    repo_tags: Vec<String>,
}

impl DockerTarSink {
    /// A sink writing to `path`, tagged with `repo_tags` (familiar
    /// `name:tag` forms; the first also names the image in `index.json`).
    pub fn new(path: PathBuf, repo_tags: Vec<String>) -> DockerTarSink {
        DockerTarSink { path, repo_tags }
    }
}

#[async_trait::async_trait]
impl OutputSink for DockerTarSink {
    async fn write(&self, finished: &Finished<'_>) -> Result<Written, OutputError> {
        let (image, attached, blobs) = (finished.image, finished.attached, finished.blobs);
        let (path, repo_tags) = (&self.path, &self.repo_tags);
        let mut layer_files = Vec::new();
        for layer in &image.layers {
            layer_files.push((
                layer.descriptor.digest.clone(),
                layer_file(blobs, layer).await?,
            ));
        }
        // With statements attached, index.json names the image index that
        // holds the image and its attestations, as the registry's tag does.
        let mut desc = match attached {
            Some(a) => plain(&a.index.0),
            None => Descriptor::new(
                image.manifest_media_type.clone(),
                image.digest.clone(),
                image.manifest_bytes.len() as u64,
            ),
        };
        if let Some(tag) = repo_tags.first() {
            desc.annotations
                .insert("io.containerd.image.name".to_string(), tag.clone());
        }
        let mut index = Index::new(true, Vec::new());
        refs::put(&mut index, desc, repo_tags.first().map(String::as_str));
        index.media_type = Some(media::OCI_INDEX.to_string());
        let docker_manifest = json!([{
            "Config": blob_name(&image.config.digest),
            "RepoTags": repo_tags,
            "Layers": layer_files.iter().map(|(digest, _)| blob_name(digest)).collect::<Vec<_>>(),
        }]);

        write_tar_file(path, |tar| {
            for (digest, file) in &layer_files {
                tar.append_blob_file(digest, file)?;
            }
            tar.append_blob(&image.config.digest, &image.config_bytes)?;
            tar.append_blob(&image.digest, &image.manifest_bytes)?;
            if let Some(attached) = attached {
                for (desc, bytes) in attached
                    .blobs()
                    .chain([&attached.manifest, &attached.index])
                {
                    tar.append_blob(&desc.digest, bytes)?;
                }
            }
            tar.append_file("manifest.json", &serde_json::to_vec(&docker_manifest)?)?;
            tar.append_index(&index)?;
            tar.append_marker()
        })?;
        Ok(Written::default())
    }
}
