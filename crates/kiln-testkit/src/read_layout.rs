//! Reading an image out of an OCI layout: resolve a tag (through an index
//! if needed) to a manifest, and load blobs with their digests verified.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::layout::sha256_digest;
use crate::platform::Platform;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// One image (manifest + config) located in an OCI layout.
#[derive(Debug, Clone)]
pub(crate) struct LayoutImage {
    root: PathBuf,
    pub manifest: Value,
    pub config: Value,
}

impl LayoutImage {
    /// Finds the image tagged `tag` in the layout at `root`; an index is
    /// resolved to the entry for `platform`.
    pub fn open(root: &Path, tag: &str, platform: &Platform) -> Result<Self> {
        let index: Value = read_json(&root.join("index.json"))?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let tagged: Vec<&Value> = entries
            .iter()
            .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .collect();
        let desc = match tagged.as_slice() {
            [one] => (*one).clone(),
            [] => bail!(
                "no image tagged {tag:?} in {}; index.json lists: {}",
                root.display(),
                serde_json::to_string(&index["manifests"])?
            ),
            _ => bail!("several images tagged {tag:?} in {}", root.display()),
        };
        let mut doc = read_blob_json(root, &desc)?;
        let is_index = |d: &Value, doc: &Value| {
            INDEX_TYPES.contains(&d["mediaType"].as_str().unwrap_or(""))
                || doc.get("manifests").is_some()
        };
        if is_index(&desc, &doc) {
            let chosen = doc["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| platform.matches_json(&m["platform"]))
                .cloned()
                .with_context(|| format!("index for {tag:?} has no entry for {platform}: {doc}"))?;
            doc = read_blob_json(root, &chosen)?;
        }
        let config = read_blob_json(root, &doc["config"])?;
        Ok(Self {
            root: root.to_path_buf(),
            manifest: doc,
            config,
        })
    }

    /// The layer descriptors, in order (lowest first).
    pub fn layers(&self) -> Vec<Value> {
        self.manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Reads layer `desc`'s blob, checking its digest and size.
    pub fn read_blob(&self, desc: &Value) -> Result<Vec<u8>> {
        read_blob(&self.root, desc)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn read_blob_json(root: &Path, desc: &Value) -> Result<Value> {
    let bytes = read_blob(root, desc)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing blob {} as JSON", desc["digest"]))
}

/// Reads the blob named by `desc`, failing unless its content matches the
/// descriptor's digest and size: an independent check must not trust names.
fn read_blob(root: &Path, desc: &Value) -> Result<Vec<u8>> {
    let digest = desc["digest"]
        .as_str()
        .with_context(|| format!("descriptor without digest: {desc}"))?;
    let (alg, hex) = digest
        .split_once(':')
        .with_context(|| format!("malformed digest {digest:?}"))?;
    ensure!(alg == "sha256", "unsupported digest algorithm in {digest}");
    let path = root.join("blobs").join(alg).join(hex);
    let bytes = fs::read(&path).with_context(|| format!("reading blob {}", path.display()))?;
    let actual = sha256_digest(&bytes);
    ensure!(
        actual == digest,
        "blob {} has digest {actual}, descriptor says {digest}",
        path.display()
    );
    if let Some(size) = desc["size"].as_u64() {
        ensure!(
            size == bytes.len() as u64,
            "blob {digest} is {} bytes, descriptor says {size}",
            bytes.len()
        );
    }
    Ok(bytes)
}
