//! Joining images already pushed into one image index (`kiln index
//! create`): the per-architecture jobs of a CI pipeline each push their
//! image, and one last job makes the multi-platform tag.
//!
//! Each source's manifest is kept byte for byte, so its digest is the one its
//! job printed; its entry's platform is read from its config (architecture,
//! variant, OS and OS version), never guessed from a tag. A source that is an
//! index itself gives all its entries. Into each destination go, in order:
//! the blobs every manifest needs (present, mounted from the source
//! repository on the same registry, or copied), every manifest by digest,
//! and the index last, under the tag, so the tag never names something the
//! registry lacks.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kiln_oci::{
    media, Access, BlobSource, Descriptor, Digest, ImageConfig, Index, Manifest, Platform,
    PushOutcome, Reference, RegistryClient, RegistryError, Repository,
};

use crate::options::ImageFormat;

/// Largest image config read to learn an image's platform.
const CONFIG_LIMIT: u64 = 8 << 20;
/// Blobs copied at once per destination.
const PARALLEL_BLOBS: usize = 4;

/// Why an index could not be made or pushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A registry operation on a source failed.
    #[error("reading {source_ref}: {error}")]
    Source {
        /// The source as given.
        source_ref: String,
        /// Why.
        error: Box<RegistryError>,
    },
    /// A source's manifest, index or config is not what it claims.
    #[error("reading {source_ref}: {message}")]
    Invalid {
        /// The source as given.
        source_ref: String,
        /// Why.
        message: String,
    },
    /// Two sources are for the same platform: the index could hold only one.
    #[error("{first} and {second} are both for {platform}; an index holds one image per platform")]
    SamePlatform {
        /// The first source as given.
        first: String,
        /// The second source as given.
        second: String,
        /// Their platform.
        platform: String,
    },
    /// A Docker manifest list was asked for, but a source is an OCI manifest
    /// (which a Docker manifest list cannot name).
    #[error(
        "{source_ref} is an OCI image ({media_type}); a Docker manifest list can only \
         list Docker manifests: use --image-format=oci"
    )]
    NotDocker {
        /// The source as given.
        source_ref: String,
        /// Its media type.
        media_type: String,
    },
    /// No source was given.
    #[error("no source image to join")]
    NoSources,
    /// A registry operation on a destination failed.
    #[error("pushing to {destination}: {error}")]
    Push {
        /// The destination as given.
        destination: String,
        /// Why.
        error: Box<RegistryError>,
    },
}

/// An image to join, as named on the command line.
#[derive(Debug, Clone)]
pub struct IndexSource {
    /// The reference as given.
    pub as_given: String,
    /// The parsed reference.
    pub reference: Reference,
}

/// One manifest of the index: its entry and what it needs in a repository.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The source it came from, as given.
    pub source: String,
    /// The source's repository.
    pub repository: Reference,
    /// The entry (media type, digest, size, platform).
    pub descriptor: Descriptor,
    /// The manifest's exact bytes.
    pub bytes: Bytes,
    /// Its config and layers.
    pub blobs: Vec<Descriptor>,
}

/// The index to push, and the manifests it lists.
#[derive(Debug, Clone)]
pub struct JoinedIndex {
    /// The manifests, in the order of the sources.
    pub entries: Vec<IndexEntry>,
    /// The index's bytes.
    pub bytes: Bytes,
    /// Its media type (OCI index or Docker manifest list).
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
}

/// What pushing the index to one destination moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexPushReport {
    /// Blobs already in the destination repository.
    pub existing: usize,
    /// Blobs mounted from a source repository of the same registry.
    pub mounted: usize,
    /// Blobs copied from another registry.
    pub copied: usize,
}

/// Reads every source and makes the index. `format` `None` makes a Docker
/// manifest list when every manifest is a Docker one, else an OCI index.
///
/// # Errors
/// [`IndexError`] naming the source that could not be read, or the two
/// sources for one platform.
pub async fn join(
    client: &RegistryClient,
    sources: &[IndexSource],
    format: Option<ImageFormat>,
) -> Result<JoinedIndex, IndexError> {
    join_with(client, sources, format, Access::Pull).await
}

/// [`join`], reading the sources with `access` (a build reads back what it
/// has just pushed with the destination's settings).
///
/// # Errors
/// As [`join`].
pub async fn join_with(
    client: &RegistryClient,
    sources: &[IndexSource],
    format: Option<ImageFormat>,
    access: Access,
) -> Result<JoinedIndex, IndexError> {
    if sources.is_empty() {
        return Err(IndexError::NoSources);
    }
    let mut entries = Vec::new();
    for source in sources {
        entries.extend(read_source(client, source, access).await?);
    }
    // As BuildKit orders a multi-platform index: every image, then every
    // attestation manifest (each naming its image by annotation).
    entries.sort_by_key(is_attestation);
    check_platforms(&entries)?;
    let oci = match format {
        Some(ImageFormat::Oci) => true,
        Some(ImageFormat::Docker) => {
            if let Some(e) = entries
                .iter()
                .find(|e| e.descriptor.media_type != media::DOCKER_MANIFEST)
            {
                return Err(IndexError::NotDocker {
                    source_ref: e.source.clone(),
                    media_type: e.descriptor.media_type.clone(),
                });
            }
            false
        }
        None => !entries
            .iter()
            .all(|e| e.descriptor.media_type == media::DOCKER_MANIFEST),
    };
    let index = Index::new(oci, entries.iter().map(|e| e.descriptor.clone()).collect());
    let bytes = Bytes::from(index.to_vec());
    Ok(JoinedIndex {
        entries,
        digest: Digest::sha256_of(&bytes),
        media_type: index.media_type.unwrap_or_else(|| media::OCI_INDEX.into()),
        bytes,
    })
}

/// The manifests one source contributes: itself, or an index's entries.
async fn read_source(
    client: &RegistryClient,
    source: &IndexSource,
    access: Access,
) -> Result<Vec<IndexEntry>, IndexError> {
    let failed = |e: RegistryError| IndexError::Source {
        source_ref: source.as_given.clone(),
        error: Box::new(e),
    };
    let invalid = |message: String| IndexError::Invalid {
        source_ref: source.as_given.clone(),
        message,
    };
    let repo = client.repository(&source.reference, access);
    let fetched = repo
        .get_manifest(&source.reference.manifest_reference())
        .await
        .map_err(failed)?;
    if media::is_manifest(&fetched.media_type) {
        let entry = read_image(&repo, source, fetched.bytes, &fetched.media_type, None).await?;
        return Ok(vec![entry]);
    }
    if !media::is_index(&fetched.media_type) {
        return Err(invalid(format!(
            "{} is neither an image manifest nor an index",
            fetched.media_type
        )));
    }
    let index = Index::from_slice(&fetched.bytes).map_err(|e| invalid(e.to_string()))?;
    let mut entries = Vec::new();
    for child in index.manifests {
        if !media::is_manifest(&child.media_type) {
            return Err(invalid(format!(
                "its entry {} is a {}; only image manifests can be joined",
                child.digest, child.media_type
            )));
        }
        let got = repo
            .get_manifest(&child.digest.to_string())
            .await
            .map_err(failed)?;
        let media_type = child.media_type.clone();
        entries.push(read_image(&repo, source, got.bytes, &media_type, Some(child)).await?);
    }
    Ok(entries)
}

/// One image manifest's entry. An index's entry keeps its descriptor
/// (platform, annotations such as an attestation's reference); a manifest
/// named directly gets its platform from its config.
async fn read_image(
    repo: &Repository,
    source: &IndexSource,
    bytes: Bytes,
    media_type: &str,
    listed: Option<Descriptor>,
) -> Result<IndexEntry, IndexError> {
    let invalid = |message: String| IndexError::Invalid {
        source_ref: source.as_given.clone(),
        message,
    };
    let manifest = Manifest::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let descriptor = match listed {
        Some(d) => d,
        None => {
            let config = repo
                .get_blob_bytes(
                    &manifest.config.digest,
                    Some(manifest.config.size),
                    CONFIG_LIMIT,
                )
                .await
                .map_err(|e| IndexError::Source {
                    source_ref: source.as_given.clone(),
                    error: Box::new(e),
                })?;
            let config = ImageConfig::from_slice(&config).map_err(|e| invalid(e.to_string()))?;
            if config.os.is_empty() || config.architecture.is_empty() {
                return Err(invalid(format!(
                    "its config {} names no os and architecture",
                    manifest.config.digest
                )));
            }
            let mut d = Descriptor::of_bytes(media_type, &bytes);
            d.platform = Some(config.platform());
            d
        }
    };
    let mut blobs = vec![manifest.config.clone()];
    // Foreign layers live elsewhere; registries never hold them.
    blobs.extend(
        manifest
            .layers
            .into_iter()
            .filter(|l| l.urls.is_empty() && l.media_type != media::DOCKER_FOREIGN_LAYER),
    );
    Ok(IndexEntry {
        source: source.as_given.clone(),
        repository: source.reference.clone(),
        descriptor,
        bytes,
        blobs,
    })
}

/// Whether `entry` is an attestation manifest, not an image.
fn is_attestation(entry: &IndexEntry) -> bool {
    entry
        .descriptor
        .annotations
        .get(crate::output::attest::REFERENCE_TYPE)
        .map(String::as_str)
        == Some(crate::output::attest::ATTESTATION_MANIFEST)
}

/// Rejects two images for one platform. Entries whose platform is
/// `unknown/unknown` (BuildKit's attestation manifests) are not images.
fn check_platforms(entries: &[IndexEntry]) -> Result<(), IndexError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for e in entries {
        let Some(p) = &e.descriptor.platform else {
            continue;
        };
        if p.os == "unknown" {
            continue;
        }
        let key = platform_key(p);
        if let Some(first) = seen.insert(key.clone(), &e.source) {
            return Err(IndexError::SamePlatform {
                first: first.to_string(),
                second: e.source.clone(),
                platform: key,
            });
        }
    }
    Ok(())
}

fn platform_key(p: &Platform) -> String {
    let mut key = format!("{}/{}", p.os, p.architecture);
    if let Some(v) = p.normalized_variant() {
        key = format!("{key}/{v}");
    }
    if let Some(v) = &p.os_version {
        key = format!("{key} ({v})");
    }
    key
}

/// Pushes `index` to `destination` (its tag, or its digest when it names
/// one): blobs, then every manifest by digest, then the index. Blobs from
/// another registry are copied through files in `scratch`.
///
/// # Errors
/// [`IndexError::Push`] or, for a copy's download, [`IndexError::Source`].
pub async fn push(
    client: &RegistryClient,
    index: &JoinedIndex,
    destination: &Reference,
    as_given: &str,
    scratch: &Path,
) -> Result<IndexPushReport, IndexError> {
    let failed = |e: RegistryError| IndexError::Push {
        destination: as_given.to_string(),
        error: Box::new(e),
    };
    let target = client.repository(destination, Access::Push);
    // Each blob once, from the first source that has it.
    let mut blobs: BTreeMap<Digest, (&Descriptor, &IndexEntry)> = BTreeMap::new();
    for e in &index.entries {
        for b in &e.blobs {
            blobs.entry(b.digest.clone()).or_insert((b, e));
        }
    }
    let outcomes: Vec<PushOutcome> = futures::stream::iter(blobs.into_values())
        .map(|(blob, entry)| copy_blob(client, &target, destination, blob, entry, scratch))
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect()
        .await
        .map_err(|e| match e {
            CopyError::Source(source_ref, error) => IndexError::Source {
                source_ref,
                error: Box::new(error),
            },
            CopyError::Target(error) => failed(error),
        })?;
    for e in &index.entries {
        target
            .put_manifest(
                &e.descriptor.digest.to_string(),
                e.bytes.clone(),
                &e.descriptor.media_type,
            )
            .await
            .map_err(failed)?;
    }
    let reference = destination
        .digest()
        .map(ToString::to_string)
        .or_else(|| destination.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".to_string());
    target
        .put_manifest(&reference, index.bytes.clone(), &index.media_type)
        .await
        .map_err(failed)?;
    let mut report = IndexPushReport::default();
    for o in outcomes {
        match o {
            PushOutcome::Exists => report.existing += 1,
            PushOutcome::Mounted => report.mounted += 1,
            PushOutcome::Uploaded => report.copied += 1,
        }
    }
    Ok(report)
}

enum CopyError {
    Source(String, RegistryError),
    Target(RegistryError),
}

/// Puts one blob into `target`: nothing when it is there, a mount from the
/// source repository on the same registry, else a download and an upload.
async fn copy_blob(
    client: &RegistryClient,
    target: &Repository,
    destination: &Reference,
    blob: &Descriptor,
    entry: &IndexEntry,
    scratch: &Path,
) -> Result<PushOutcome, CopyError> {
    if target
        .blob_exists(&blob.digest)
        .await
        .map_err(CopyError::Target)?
        .is_some()
    {
        return Ok(PushOutcome::Exists);
    }
    if entry.repository.registry() == destination.registry()
        && target
            .mount_blob(&blob.digest, entry.repository.repository())
            .await
            .map_err(CopyError::Target)?
    {
        return Ok(PushOutcome::Mounted);
    }
    let source = client.repository(&entry.repository, Access::Pull);
    let file = scratch.join(blob.digest.to_string().replace(':', "-"));
    source
        .download_blob(&blob.digest, Some(blob.size), &file)
        .await
        .map_err(|e| CopyError::Source(entry.source.clone(), e))?;
    let pushed = target
        .push_blob(
            &BlobSource::File(file.clone()),
            &blob.digest,
            blob.size,
            None,
        )
        .await
        .map_err(CopyError::Target);
    // The copy is scratch either way.
    let _ = std::fs::remove_file(&file);
    pushed.map(|_| PushOutcome::Uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, platform: &str) -> IndexEntry {
        let mut d = Descriptor::of_bytes(media::OCI_MANIFEST, source.as_bytes());
        d.platform = Some(platform.parse().unwrap());
        IndexEntry {
            source: source.into(),
            repository: "r.example/app".parse().unwrap(),
            descriptor: d,
            bytes: Bytes::new(),
            blobs: Vec::new(),
        }
    }

    #[test]
    fn one_image_per_platform() {
        let ok = [entry("a", "linux/amd64"), entry("b", "linux/arm64")];
        assert!(check_platforms(&ok).is_ok());
        // arm64 and arm64/v8 are the same platform.
        let twice = [entry("a", "linux/arm64"), entry("b", "linux/arm64/v8")];
        let err = check_platforms(&twice).unwrap_err().to_string();
        assert_eq!(
            err,
            "a and b are both for linux/arm64/v8; an index holds one image per platform"
        );
        // Attestation manifests are not images.
        let att = [entry("a", "unknown/unknown"), entry("b", "unknown/unknown")];
        assert!(check_platforms(&att).is_ok());
    }
}
