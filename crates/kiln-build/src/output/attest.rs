//! Provenance and SBOM statements attached to the image as BuildKit
//! attaches them: an image index holding the image manifest and, beside it,
//! an attestation manifest (platform `unknown/unknown`, annotated
//! `vnd.docker.reference.type=attestation-manifest` and
//! `vnd.docker.reference.digest=<image manifest digest>`) whose layers are
//! the in-toto statements (`application/vnd.in-toto+json`, annotated
//! `in-toto.io/predicate-type`).
//!
//! This form is the default over OCI 1.1 artifacts with a `subject`: it is
//! one tag write that every registry accepts (no referrers API or
//! `sha256-<digest>` fallback tag to keep consistent), `docker buildx
//! imagetools inspect --format '{{json .Provenance}}'` and Docker Scout
//! read it, and the same index goes into the tar and OCI-layout outputs.
//! The image manifest itself is unchanged; the tag names the index.
//!
//! `--attestation-format=referrers` sends the same statements to registries
//! as OCI 1.1 artifacts instead (one manifest per statement, `artifactType`
//! `application/vnd.in-toto+json`, `subject` the image manifest): the tag
//! names the image manifest, and where the registry has no referrers API
//! the `sha256-<hex>` tag holds the index of referrers, as the OCI
//! distribution spec's fallback says.

use crate::model::assemble::BuiltImage;
use crate::options::AttestationFormat;
use kiln_attest::{IN_TOTO_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION};
use kiln_oci::{media, Descriptor, Digest, Index, Manifest, Platform};
use serde_json::json;

/// `vnd.docker.reference.type` on the attestation manifest's index entry.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Its value.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// `vnd.docker.reference.digest`: the image manifest the statements are about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// One statement: its predicate type and its JSON bytes.
#[derive(Debug, Clone)]
pub struct Statement {
    /// `https://slsa.dev/provenance/v1`, `https://spdx.dev/Document`.
    pub predicate_type: String,
    /// The statement as written.
    pub bytes: Vec<u8>,
}

/// The image index and the attestation manifest beside the image.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The statements, each one layer blob.
    pub layers: Vec<(Descriptor, Vec<u8>)>,
    /// The attestation manifest's config.
    pub config: (Descriptor, Vec<u8>),
    /// The attestation manifest.
    pub manifest: (Descriptor, Vec<u8>),
    /// The image index the tag names.
    pub index: (Descriptor, Vec<u8>),
    /// How registries get the statements.
    pub format: AttestationFormat,
    /// The image manifest the statements are about.
    pub subject: Descriptor,
    /// For [`AttestationFormat::Referrers`]: one artifact manifest per
    /// statement, described as the referrers index lists it.
    pub artifacts: Vec<(Descriptor, Vec<u8>)>,
    /// The artifacts' config: the OCI empty descriptor's `{}`.
    pub empty: (Descriptor, Vec<u8>),
}

impl Attached {
    /// What a destination's tag points to: the index, or with referrers
    /// the image manifest.
    pub fn digest(&self) -> &Digest {
        match self.format {
            AttestationFormat::Index => &self.index.0.digest,
            AttestationFormat::Referrers => &self.subject.digest,
        }
    }

    /// The tag of the referrers fallback: `sha256-<hex>` of the subject.
    pub fn fallback_tag(&self) -> String {
        format!("sha256-{}", self.subject.digest.hex())
    }

    /// Every blob beside the image's own (statements, config), then the
    /// attestation manifest, then the index: the order they must be written.
    pub fn blobs(&self) -> impl Iterator<Item = &(Descriptor, Vec<u8>)> {
        self.layers.iter().chain([&self.config])
    }
}

/// Attaches `statements` to `image` (the manifest they name as subject).
pub fn attach(image: &BuiltImage, statements: &[Statement], format: AttestationFormat) -> Attached {
    let layers: Vec<(Descriptor, Vec<u8>)> = statements
        .iter()
        .map(|s| {
            let mut d = Descriptor::of_bytes(IN_TOTO_MEDIA_TYPE, &s.bytes);
            d.annotations.insert(
                PREDICATE_TYPE_ANNOTATION.to_string(),
                s.predicate_type.clone(),
            );
            (d, s.bytes.clone())
        })
        .collect();
    // As BuildKit: an image config of the unknown platform whose diff_ids
    // are the statements (uncompressed, so the same digests).
    let config_bytes = serde_json::to_vec(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(d, _)| d.digest.to_string()).collect::<Vec<_>>(),
        },
    }))
    .expect("JSON values serialise");
    let config = Descriptor::of_bytes(media::OCI_CONFIG, &config_bytes);
    let manifest = Manifest::new(
        true,
        config.clone(),
        layers.iter().map(|(d, _)| d.clone()).collect(),
    );
    let manifest_bytes = manifest.to_vec();
    let mut manifest_desc = Descriptor::of_bytes(media::OCI_MANIFEST, &manifest_bytes);
    manifest_desc
        .annotations
        .insert(REFERENCE_DIGEST.to_string(), image.digest.to_string());
    manifest_desc
        .annotations
        .insert(REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string());
    manifest_desc.platform = Some(Platform::new("unknown", "unknown", None));

    let mut image_desc = Descriptor::new(
        image.manifest_media_type.clone(),
        image.digest.clone(),
        image.manifest_bytes.len() as u64,
    );
    image_desc.platform = image_platform(image);
    let mut index = Index::new(true, vec![image_desc, manifest_desc.clone()]);
    index.media_type = Some(media::OCI_INDEX.to_string());
    let index_bytes = index.to_vec();
    let index_desc = Descriptor::of_bytes(media::OCI_INDEX, &index_bytes);
    let subject = Descriptor::new(
        image.manifest_media_type.clone(),
        image.digest.clone(),
        image.manifest_bytes.len() as u64,
    );
    let empty_bytes = b"{}".to_vec();
    let empty = Descriptor::of_bytes(media::OCI_EMPTY, &empty_bytes);
    let artifacts = layers
        .iter()
        .map(|(layer, _)| artifact(layer, &subject, &empty))
        .collect();
    Attached {
        layers,
        config: (config, config_bytes),
        manifest: (manifest_desc, manifest_bytes),
        index: (index_desc, index_bytes),
        format,
        subject,
        artifacts,
        empty: (empty, empty_bytes),
    }
}

/// An OCI 1.1 artifact manifest carrying one statement about `subject`.
fn artifact(
    statement: &Descriptor,
    subject: &Descriptor,
    empty: &Descriptor,
) -> (Descriptor, Vec<u8>) {
    let predicate = statement
        .annotations
        .get(PREDICATE_TYPE_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": IN_TOTO_MEDIA_TYPE,
        "config": {
            "mediaType": empty.media_type,
            "digest": empty.digest.to_string(),
            "size": empty.size,
            "data": "e30=",
        },
        "layers": [statement],
        "subject": subject,
        "annotations": {PREDICATE_TYPE_ANNOTATION: predicate},
    }))
    .expect("JSON values serialise");
    let mut desc = Descriptor::of_bytes(media::OCI_MANIFEST, &bytes);
    desc.artifact_type = Some(IN_TOTO_MEDIA_TYPE.to_string());
    desc.annotations
        .insert(PREDICATE_TYPE_ANNOTATION.to_string(), predicate);
    (desc, bytes)
}

/// The referrers fallback index: `existing` (what the `sha256-<hex>` tag
/// held, if anything) with `artifacts` added, each once.
pub fn fallback_index(existing: Option<&[u8]>, artifacts: &[(Descriptor, Vec<u8>)]) -> Vec<u8> {
    let mut index = existing
        .and_then(|b| Index::from_slice(b).ok())
        .unwrap_or_else(|| Index::new(true, Vec::new()));
    index.media_type = Some(media::OCI_INDEX.to_string());
    for (desc, _) in artifacts {
        if !index.manifests.iter().any(|d| d.digest == desc.digest) {
            index.manifests.push(desc.clone());
        }
    }
    index.to_vec()
}

/// The platform the image's config names.
fn image_platform(image: &BuiltImage) -> Option<Platform> {
    let config: serde_json::Value = serde_json::from_slice(&image.config_bytes).ok()?;
    let os = config["os"].as_str()?;
    let arch = config["architecture"].as_str()?;
    Some(Platform::new(os, arch, config["variant"].as_str()))
}

/// The descriptor without the annotations and platform the index gives it:
/// what a blob store needs.
pub fn plain(d: &Descriptor) -> Descriptor {
    Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::image::ImageState;

    fn image() -> BuiltImage {
        let mut state = ImageState::scratch(&Platform::new("linux", "arm64", Some("v8")));
        state.oci = true;
        BuiltImage::assemble(&state).unwrap()
    }

    fn statements() -> Vec<Statement> {
        vec![
            Statement {
                predicate_type: kiln_attest::SLSA_PROVENANCE_V1.into(),
                bytes: b"{\"p\":1}".to_vec(),
            },
            Statement {
                predicate_type: kiln_attest::SPDX_PREDICATE.into(),
                bytes: b"{\"s\":1}".to_vec(),
            },
        ]
    }

    #[test]
    fn the_index_holds_the_image_and_an_attestation_manifest_about_it() {
        let image = image();
        let a = attach(&image, &statements(), AttestationFormat::Index);
        let index: serde_json::Value = serde_json::from_slice(&a.index.1).unwrap();
        assert_eq!(a.digest(), &Digest::sha256_of(&a.index.1));
        assert_eq!(index["manifests"][0]["digest"], image.digest.to_string());
        assert_eq!(index["manifests"][0]["platform"]["architecture"], "arm64");
        let att = &index["manifests"][1];
        assert_eq!(att["platform"]["os"], "unknown");
        assert_eq!(
            att["annotations"][REFERENCE_DIGEST],
            image.digest.to_string()
        );
        assert_eq!(att["annotations"][REFERENCE_TYPE], ATTESTATION_MANIFEST);
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest.1).unwrap();
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        assert_eq!(manifest["layers"][1]["mediaType"], IN_TOTO_MEDIA_TYPE);
        assert_eq!(
            manifest["layers"][1]["annotations"][PREDICATE_TYPE_ANNOTATION],
            kiln_attest::SPDX_PREDICATE
        );
        let config: serde_json::Value = serde_json::from_slice(&a.config.1).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            manifest["layers"][0]["digest"]
        );
    }

    #[test]
    fn referrers_name_the_image_and_the_fallback_index_keeps_what_was_there() {
        let image = image();
        let a = attach(&image, &statements(), AttestationFormat::Referrers);
        assert_eq!(a.digest(), &image.digest, "the tag names the image");
        assert_eq!(a.fallback_tag(), format!("sha256-{}", image.digest.hex()));
        let artifact: serde_json::Value = serde_json::from_slice(&a.artifacts[0].1).unwrap();
        assert_eq!(artifact["subject"]["digest"], image.digest.to_string());
        assert_eq!(artifact["artifactType"], IN_TOTO_MEDIA_TYPE);
        assert_eq!(
            artifact["config"]["digest"],
            Digest::sha256_of(b"{}").to_string()
        );
        let first = fallback_index(None, &a.artifacts[..1]);
        let merged = fallback_index(Some(&first), &a.artifacts);
        let merged: serde_json::Value = serde_json::from_slice(&merged).unwrap();
        let digests: Vec<&str> = merged["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        let want: Vec<String> = a
            .artifacts
            .iter()
            .map(|(d, _)| d.digest.to_string())
            .collect();
        assert_eq!(digests, want, "each once, the earlier first");
    }
}
