//! Descriptors, image manifests and indexes (OCI and Docker schema 2).
//!
//! Our own serde structs rather than `oci-spec`: descriptors carry our
//! [`Digest`] type, one struct reads both the OCI and the Docker media types
//! (they share a JSON shape), and fields we do not model are kept in `extra`
//! so a manifest read and written again keeps them.

use crate::digest::Digest;
use crate::media;
use crate::platform::Platform;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A free-form field map that keeps fields this crate does not model.
pub type Extra = BTreeMap<String, serde_json::Value>;

/// Why manifest JSON could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The bytes are not the JSON of the expected object.
    #[error("invalid {what} JSON: {source}")]
    Json {
        /// What was being read (`image manifest`, `image index`, …).
        what: &'static str,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The `schemaVersion` is not 2.
    #[error("unsupported {what} schemaVersion {version} (only 2 is supported)")]
    SchemaVersion {
        /// What was being read.
        what: &'static str,
        /// The version found.
        version: u32,
    },
}

/// A reference to content: its media type, digest and size, plus optional
/// metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size of the referenced content in bytes.
    pub size: u64,
    /// Alternative download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform, in index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The content itself, base64 (OCI 1.1 `data`): a reader that trusts
    /// it after checking it against `digest` and `size` needs no download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
            data: None,
            extra: Extra::new(),
        }
    }

    /// The descriptor of `bytes` with `media_type`.
    pub fn of_bytes(media_type: impl Into<String>, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64)
    }

    /// This descriptor carrying `content` (which it must describe) as its
    /// `data`.
    pub fn with_data(mut self, content: &[u8]) -> Descriptor {
        self.data = Some(BASE64.encode(content));
        self
    }

    /// The embedded `data`, when there is some and it is the content the
    /// descriptor names: base64 that decodes to `size` bytes whose sha256
    /// is `digest` (the spec asks readers to check; anything else is
    /// `None`, and the content is to be fetched as if none were embedded).
    pub fn embedded_data(&self) -> Option<Vec<u8>> {
        let data = self.data.as_deref()?;
        // Padded base64 of `size` bytes has exactly this length: anything
        // else is not the content, and a lying field never makes the reader
        // decode (or allocate) more than the descriptor's size.
        if data.len() as u64 != self.size.div_ceil(3) * 4 {
            return None;
        }
        let bytes = BASE64.decode(data).ok()?;
        (bytes.len() as u64 == self.size && Digest::sha256_of(&bytes) == self.digest)
            .then_some(bytes)
    }
}

/// A single-image manifest (OCI image manifest or Docker schema 2 manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (required for Docker, optional for OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Manifest {
    /// A manifest for `config` and `layers`; `oci` picks the OCI media type,
    /// else Docker schema 2.
    pub fn new(oci: bool, config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(
                if oci {
                    media::OCI_MANIFEST
                } else {
                    media::DOCKER_MANIFEST
                }
                .into(),
            ),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
            extra: Extra::new(),
        }
    }

    /// Parses manifest JSON.
    ///
    /// # Errors
    /// [`ManifestError`] for bad JSON or a schema version other than 2.
    pub fn from_slice(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "image manifest",
            source,
        })?;
        check_schema("image manifest", m.schema_version)?;
        Ok(m)
    }

    /// Serialises to JSON (compact, fields in declaration order).
    pub fn to_vec(&self) -> Vec<u8> {
        to_vec(self)
    }

    /// The media type to send with this manifest: its own, or OCI when unset.
    pub fn effective_media_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media::OCI_MANIFEST)
    }
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests, usually one per platform.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Index {
    /// An index over `manifests`; `oci` picks the OCI media type, else the
    /// Docker manifest list.
    pub fn new(oci: bool, manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(
                if oci {
                    media::OCI_INDEX
                } else {
                    media::DOCKER_MANIFEST_LIST
                }
                .into(),
            ),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
            extra: Extra::new(),
        }
    }

    /// Parses index JSON.
    ///
    /// # Errors
    /// [`ManifestError`] for bad JSON or a schema version other than 2.
    pub fn from_slice(bytes: &[u8]) -> Result<Index, ManifestError> {
        let i: Index = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "image index",
            source,
        })?;
        check_schema("image index", i.schema_version)?;
        Ok(i)
    }

    /// Serialises to JSON.
    pub fn to_vec(&self) -> Vec<u8> {
        to_vec(self)
    }

    /// The entry best matching `wanted` (see [`Platform::matches`]); entries
    /// without a platform never match.
    pub fn find_platform(&self, wanted: &Platform) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .filter(|d| d.platform.as_ref().is_some_and(|p| p.matches(wanted)))
            .max_by_key(|d| d.platform.as_ref().map_or(0, |p| p.match_score(wanted)))
    }
}

/// The kind of a manifest document, from its media type or, when the
/// registry sent none, from its shape.
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    match p {
        Probe {
            media_type: Some(m),
            ..
        } => Some(m),
        Probe {
            manifests: Some(_), ..
        } => Some(media::OCI_INDEX.to_string()),
        Probe {
            config: Some(_), ..
        } => Some(media::OCI_MANIFEST.to_string()),
        _ => None,
    }
}

fn check_schema(what: &'static str, version: u32) -> Result<(), ManifestError> {
    if version == 2 {
        Ok(())
    } else {
        Err(ManifestError::SchemaVersion { what, version })
    }
}

pub(crate) fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these structs cannot fail: every map key is a string and
    // every value is plain data.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn embedded_data_is_given_only_when_it_is_the_content_described() {
        let content = br#"{"entries":{"app":"dir"}}"#;
        let d = Descriptor::of_bytes(media::OCI_CONFIG, content).with_data(content);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["data"], "eyJlbnRyaWVzIjp7ImFwcCI6ImRpciJ9fQ==");
        let back: Descriptor = serde_json::from_value(json).unwrap();
        assert_eq!(back.embedded_data().as_deref(), Some(&content[..]));
        // Other bytes of the same length, a wrong size, bad base64, none.
        let other = Descriptor::of_bytes(media::OCI_CONFIG, content).with_data(&[b'x'; 25]);
        assert_eq!(other.embedded_data(), None);
        let mut short = d.clone();
        short.size -= 1;
        assert_eq!(short.embedded_data(), None);
        let mut garbled = d.clone();
        garbled.data = Some("not base64!".into());
        assert_eq!(garbled.embedded_data(), None);
        // Far longer than the size allows: refused before decoding.
        let mut huge = d.clone();
        huge.data = Some("A".repeat(1 << 20));
        assert_eq!(huge.embedded_data(), None);
        assert_eq!(
            Descriptor::of_bytes(media::OCI_CONFIG, content).embedded_data(),
            None
        );
        assert!(
            !serde_json::to_string(&Descriptor::of_bytes(media::OCI_CONFIG, content))
                .unwrap()
                .contains("data")
        );
    }

    #[test]
    fn docker_manifest_round_trips_byte_stably() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D1}","size":7}},"layers":[{{"mediaType":"{}","digest":"{D2}","size":9,"urls":["https://x/y"],"x-vendor":true}}],"annotations":{{"a":"b"}},"vendorField":[1,2]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_FOREIGN_LAYER
        );
        let m = Manifest::from_slice(json.as_bytes()).unwrap();
        assert_eq!(m.layers[0].urls, vec!["https://x/y"]);
        assert_eq!(m.layers[0].extra["x-vendor"], serde_json::json!(true));
        assert_eq!(m.to_vec(), json.as_bytes());
    }

    #[test]
    fn rejects_schema_1_and_garbage() {
        let err = Manifest::from_slice(
            format!(
                r#"{{"schemaVersion":1,"config":{{"mediaType":"x","digest":"{D1}","size":1}}}}"#
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("schemaVersion 1"), "{err}");
        let err = Manifest::from_slice(b"<html>").unwrap_err();
        assert!(
            err.to_string().contains("invalid image manifest JSON"),
            "{err}"
        );
        let bad_digest =
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1}}"#;
        assert!(Manifest::from_slice(bad_digest.as_bytes()).is_err());
    }

    #[test]
    fn index_picks_platform_and_sniffs() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{m}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{m}","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            m = media::OCI_MANIFEST
        );
        let idx = Index::from_slice(json.as_bytes()).unwrap();
        let arm = idx.find_platform(&"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm.digest.to_string(), D2);
        let amd = idx.find_platform(&"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!(amd.digest.to_string(), D1);
        assert!(idx
            .find_platform(&"windows/amd64".parse().unwrap())
            .is_none());
        assert_eq!(
            sniff_media_type(json.as_bytes()).as_deref(),
            Some(media::OCI_INDEX)
        );
        let m = Manifest::new(
            false,
            Descriptor::of_bytes(media::DOCKER_CONFIG, b"{}"),
            vec![],
        );
        assert_eq!(
            sniff_media_type(&m.to_vec()).as_deref(),
            Some(media::DOCKER_MANIFEST)
        );
    }
}
