//! The format of one cache entry, shared by the registry and OCI layout
//! stores.
//!
//! An entry is an OCI image manifest tagged with the step's key:
//!
//! * zero layers (the step changed nothing) or one layer, the step's layer
//!   blob, whose descriptor carries the annotation [`ANNOTATION_DIFF_ID`];
//! * manifest annotations [`ANNOTATION_VERSION`] ([`ENTRY_FORMAT_VERSION`]),
//!   [`ANNOTATION_CREATED`] (RFC 3339, UTC) and [`ANNOTATION_CREATED_BY`]
//!   (the step's history text);
//! * a small config blob (`application/vnd.oci.image.config.v1+json`):
//!   `{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":[...]}}`.
//!   Registries require a config blob; this one makes the entry a valid
//!   image for tools like skopeo, and kiln never reads it back.
//!
//! Everything a lookup needs is in the manifest, so a lookup is one request.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_oci::{media, Descriptor, Digest, Manifest};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The entry format this code writes and reads.
pub const ENTRY_FORMAT_VERSION: &str = "1";
/// Manifest annotation: the entry format version.
pub const ANNOTATION_VERSION: &str = "dev.kiln.cache.version";
/// Manifest annotation: when the entry was made (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Manifest annotation: the step's `created_by` history text.
pub const ANNOTATION_CREATED_BY: &str = "dev.kiln.cache.created-by";
/// Layer annotation: the layer's diff_id (digest of the uncompressed tar).
pub const ANNOTATION_DIFF_ID: &str = "dev.kiln.cache.diff-id";

/// The config media type of an entry.
pub const CONFIG_MEDIA_TYPE: &str = media::OCI_CONFIG;

/// A decoded entry: what a lookup learns from one manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The layer blob and its diff_id; `None` when the step changed nothing.
    pub layer: Option<(Descriptor, Digest)>,
    /// The step's history text.
    pub created_by: String,
    /// When the entry was made, RFC 3339.
    pub created: String,
}

/// Why a manifest is not a usable entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// The manifest JSON does not parse.
    #[error("not an image manifest: {0}")]
    Manifest(String),
    /// The manifest was not written by kiln, or by another format version.
    #[error("not a kiln cache entry of format {ENTRY_FORMAT_VERSION} (version annotation: {0:?})")]
    Version(Option<String>),
    /// An annotation is missing or malformed.
    #[error("annotation {name}: {reason}")]
    Annotation {
        /// The annotation.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// More than one layer.
    #[error("{0} layers (an entry has at most one)")]
    Layers(usize),
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        // Formatting a valid UTC time cannot fail; the epoch is a safe, always-expired fallback.
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Whether an entry made at `created` is older than `ttl` at `now`.
/// An unparsable time counts as expired.
pub fn is_expired(created: &str, ttl: Duration, now: OffsetDateTime) -> bool {
    match OffsetDateTime::parse(created, &Rfc3339) {
        Ok(t) => t + ttl < now,
        Err(_) => true,
    }
}

impl Entry {
    /// A new entry made now.
    pub fn new(layer: Option<(Descriptor, Digest)>, created_by: &str) -> Entry {
        Entry {
            layer,
            created_by: created_by.to_string(),
            created: now_rfc3339(),
        }
    }

    /// The config blob's bytes.
    pub fn config_bytes(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layer.iter().map(|(_, d)| d.to_string()).collect();
        let config = serde_json::json!({
            "architecture": "unknown",
            "os": "unknown",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        serde_json::to_vec(&config).unwrap_or_default()
    }

    /// The manifest for this entry, given its config blob's bytes.
    pub fn manifest(&self, config: &[u8]) -> Manifest {
        let layers = self
            .layer
            .iter()
            .map(|(desc, diff_id)| {
                let mut d = desc.clone();
                d.annotations
                    .insert(ANNOTATION_DIFF_ID.to_string(), diff_id.to_string());
                d
            })
            .collect();
        let mut m = Manifest::new(
            true,
            Descriptor::of_bytes(CONFIG_MEDIA_TYPE, config),
            layers,
        );
        let mut a = BTreeMap::new();
        a.insert(
            ANNOTATION_VERSION.to_string(),
            ENTRY_FORMAT_VERSION.to_string(),
        );
        a.insert(ANNOTATION_CREATED.to_string(), self.created.clone());
        a.insert(ANNOTATION_CREATED_BY.to_string(), self.created_by.clone());
        m.annotations = a;
        m
    }

    /// Reads an entry from manifest bytes.
    ///
    /// # Errors
    /// [`EntryError`] when the manifest is not a kiln entry of this format.
    pub fn from_manifest_bytes(bytes: &[u8]) -> Result<Entry, EntryError> {
        let m = Manifest::from_slice(bytes).map_err(|e| EntryError::Manifest(e.to_string()))?;
        Entry::from_manifest(&m)
    }

    /// Reads an entry from a parsed manifest.
    ///
    /// # Errors
    /// As [`Entry::from_manifest_bytes`].
    pub fn from_manifest(m: &Manifest) -> Result<Entry, EntryError> {
        let version = m.annotations.get(ANNOTATION_VERSION);
        if version.map(String::as_str) != Some(ENTRY_FORMAT_VERSION) {
            return Err(EntryError::Version(version.cloned()));
        }
        let created = m
            .annotations
            .get(ANNOTATION_CREATED)
            .ok_or(EntryError::Annotation {
                name: ANNOTATION_CREATED,
                reason: "missing".into(),
            })?;
        OffsetDateTime::parse(created, &Rfc3339).map_err(|e| EntryError::Annotation {
            name: ANNOTATION_CREATED,
            reason: format!("{created:?} is not RFC 3339: {e}"),
        })?;
        let created_by = m
            .annotations
            .get(ANNOTATION_CREATED_BY)
            .cloned()
            .unwrap_or_default();
        let layer = match m.layers.as_slice() {
            [] => None,
            [desc] => {
                let raw =
                    desc.annotations
                        .get(ANNOTATION_DIFF_ID)
                        .ok_or(EntryError::Annotation {
                            name: ANNOTATION_DIFF_ID,
                            reason: "missing".into(),
                        })?;
                let diff_id: Digest = raw.parse().map_err(|e| EntryError::Annotation {
                    name: ANNOTATION_DIFF_ID,
                    reason: format!("{e}"),
                })?;
                let mut clean = desc.clone();
                // The annotation is the entry's bookkeeping, not part of the image layer.
                clean.annotations.remove(ANNOTATION_DIFF_ID);
                Some((clean, diff_id))
            }
            more => return Err(EntryError::Layers(more.len())),
        };
        Ok(Entry {
            layer,
            created_by,
            created: created.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> (Descriptor, Digest) {
        (
            Descriptor::new(media::OCI_LAYER_GZIP, Digest::sha256_of(b"blob"), 4),
            Digest::sha256_of(b"tar"),
        )
    }

    #[test]
    fn round_trips_with_and_without_a_layer() {
        for l in [Some(layer()), None] {
            let e = Entry::new(l, "RUN make");
            let config = e.config_bytes();
            let bytes = e.manifest(&config).to_vec();
            assert_eq!(Entry::from_manifest_bytes(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn foreign_manifests_are_refused() {
        let e = Entry::new(Some(layer()), "RUN make");
        let mut m = e.manifest(&e.config_bytes());
        m.annotations.remove(ANNOTATION_VERSION);
        assert_eq!(Entry::from_manifest(&m), Err(EntryError::Version(None)));
        let mut m = e.manifest(&e.config_bytes());
        m.layers[0].annotations.clear();
        assert!(matches!(
            Entry::from_manifest(&m),
            Err(EntryError::Annotation { .. })
        ));
        let mut m = e.manifest(&e.config_bytes());
        m.annotations
            .insert(ANNOTATION_CREATED.into(), "yesterday".into());
        assert!(Entry::from_manifest(&m).is_err());
    }

    #[test]
    fn expiry_uses_the_creation_time() {
        let now = OffsetDateTime::now_utc();
        let hour = Duration::from_secs(3600);
        assert!(!is_expired(&now_rfc3339(), hour, now));
        assert!(is_expired("2000-01-01T00:00:00Z", hour, now));
        assert!(is_expired("garbage", hour, now));
    }
}
