//! From an [`ImageState`] to the bytes that name it: the config JSON and the
//! manifest, in the Docker schema 2 or OCI family.

use super::image::{ImageState, LayerRef};
use kiln_oci::media;
use kiln_oci::{Descriptor, Digest, Manifest};

/// A finished image: exact config and manifest bytes, and its layers.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The config JSON.
    pub config_bytes: Vec<u8>,
    /// The config's descriptor.
    pub config: Descriptor,
    /// The manifest JSON.
    pub manifest_bytes: Vec<u8>,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The manifest digest: the image's digest.
    pub digest: Digest,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The manifest's annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl BuiltImage {
    /// Serialises `image` into config and manifest.
    pub fn assemble(image: &ImageState) -> Result<BuiltImage, serde_json::Error> {
        let config_bytes = serde_json::to_vec(&image.config)?;
        let config_type = if image.oci {
            media::OCI_CONFIG
        } else {
            media::DOCKER_CONFIG
        };
        let config = Descriptor::of_bytes(config_type, &config_bytes);
        let layers: Vec<Descriptor> = image
            .layers
            .iter()
            .map(|l| {
                let mut d = l.descriptor.clone();
                d.media_type = relabel(&d.media_type, image.oci).to_string();
                d
            })
            .collect();
        let mut manifest = Manifest::new(image.oci, config.clone(), layers.clone());
        manifest.annotations = image.annotations.clone();
        let manifest_bytes = manifest.to_vec();
        let digest = Digest::sha256_of(&manifest_bytes);
        let mut out_layers = image.layers.clone();
        for (l, d) in out_layers.iter_mut().zip(layers) {
            l.descriptor = d;
        }
        Ok(BuiltImage {
            config_bytes,
            config,
            manifest_media_type: manifest.effective_media_type().to_string(),
            manifest_bytes,
            digest,
            layers: out_layers,
            annotations: image.annotations.clone(),
        })
    }

    /// The same image in the OCI family: itself when it already is, else a
    /// manifest with the OCI config and layer media types over the very same
    /// config and layer bytes (so a different manifest digest, the same
    /// image ID). For places that only OCI tools read, such as an OCI layout.
    pub fn to_oci(&self) -> BuiltImage {
        if self.manifest_media_type != media::DOCKER_MANIFEST {
            return self.clone();
        }
        let config = Descriptor::new(
            media::OCI_CONFIG,
            self.config.digest.clone(),
            self.config.size,
        );
        let mut layers = self.layers.clone();
        for l in &mut layers {
            l.descriptor.media_type = relabel(&l.descriptor.media_type, true).to_string();
        }
        let descriptors = layers.iter().map(|l| l.descriptor.clone()).collect();
        let mut manifest = Manifest::new(true, config.clone(), descriptors);
        manifest.annotations = self.annotations.clone();
        let manifest_bytes = manifest.to_vec();
        BuiltImage {
            config_bytes: self.config_bytes.clone(),
            config,
            manifest_media_type: manifest.effective_media_type().to_string(),
            digest: Digest::sha256_of(&manifest_bytes),
            manifest_bytes,
            layers,
            annotations: self.annotations.clone(),
        }
    }
}

/// The layer media type in the manifest's family: a Docker gzip layer in an
/// OCI manifest becomes the OCI gzip type and back. The bytes are the same.
fn relabel(media_type: &str, oci: bool) -> &str {
    match (media_type, oci) {
        (media::DOCKER_LAYER_GZIP, true) => media::OCI_LAYER_GZIP,
        (media::DOCKER_LAYER_TAR, true) => media::OCI_LAYER_TAR,
        (media::OCI_LAYER_GZIP, false) => media::DOCKER_LAYER_GZIP,
        (media::OCI_LAYER_TAR, false) => media::DOCKER_LAYER_TAR,
        (other, _) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::image::LayerOrigin;

    #[test]
    fn manifest_names_config_and_layers_by_digest() {
        let mut img = ImageState::scratch(&kiln_oci::Platform::new("linux", "amd64", None));
        let d = Digest::sha256_of(b"layer");
        img.push_layer(
            LayerRef {
                descriptor: Descriptor::new(media::OCI_LAYER_GZIP, d.clone(), 5),
                diff_id: Digest::sha256_of(b"tar"),
                origin: LayerOrigin::Local("/x".into()),
            },
            Default::default(),
        );
        let built = BuiltImage::assemble(&img).unwrap();
        assert_eq!(built.manifest_media_type, media::DOCKER_MANIFEST);
        assert_eq!(built.digest, Digest::sha256_of(&built.manifest_bytes));
        let m: serde_json::Value = serde_json::from_slice(&built.manifest_bytes).unwrap();
        assert_eq!(m["config"]["digest"], built.config.digest.to_string());
        assert_eq!(m["layers"][0]["mediaType"], media::DOCKER_LAYER_GZIP);
        assert_eq!(m["layers"][0]["digest"], d.to_string());
        let c: serde_json::Value = serde_json::from_slice(&built.config_bytes).unwrap();
        assert_eq!(
            c["rootfs"]["diff_ids"][0],
            Digest::sha256_of(b"tar").to_string()
        );
    }

    #[test]
    fn oci_form_keeps_config_and_layer_blobs() {
        let mut img = ImageState::scratch(&kiln_oci::Platform::new("linux", "amd64", None));
        let d = Digest::sha256_of(b"layer");
        img.push_layer(
            LayerRef {
                descriptor: Descriptor::new(media::DOCKER_LAYER_GZIP, d.clone(), 5),
                diff_id: Digest::sha256_of(b"tar"),
                origin: LayerOrigin::Local("/x".into()),
            },
            Default::default(),
        );
        let docker = BuiltImage::assemble(&img).unwrap();
        let oci = docker.to_oci();
        assert_eq!(oci.manifest_media_type, media::OCI_MANIFEST);
        assert_ne!(oci.digest, docker.digest);
        assert_eq!(oci.digest, Digest::sha256_of(&oci.manifest_bytes));
        assert_eq!(oci.config_bytes, docker.config_bytes);
        let m: serde_json::Value = serde_json::from_slice(&oci.manifest_bytes).unwrap();
        assert_eq!(m["config"]["mediaType"], media::OCI_CONFIG);
        assert_eq!(m["config"]["digest"], docker.config.digest.to_string());
        assert_eq!(m["layers"][0]["mediaType"], media::OCI_LAYER_GZIP);
        assert_eq!(m["layers"][0]["digest"], d.to_string());
        assert_eq!(oci.to_oci().digest, oci.digest, "already OCI: unchanged");
    }
}
