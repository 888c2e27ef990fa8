//! Reading one built image from disk for `kiln push`: an OCI image layout
//! directory (`--oci-layout-path`), or a tarball (`--tar-path`, `docker
//! save`): kiln's and newer Docker's tarballs are OCI layout archives;
//! older `docker save` ones hold `manifest.json`, a config file and layer
//! tars, from which a Docker schema 2 manifest is made. An image index
//! (an image built with `--provenance`/`--sbom`, whose index holds the image
//! and its attestation manifest) is pushed whole.
//!
//! A tarball is unpacked into a private temporary directory by the `tar`
//! crate, which refuses entries outside it; every file read afterwards must
//! be a regular file inside that directory (a symlink in the archive can
//! not make kiln push a file of the machine it runs on).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_oci::{media, Descriptor, Digest, DigestWriter, Index, Manifest};
use serde::Deserialize;

/// One image read from disk: its manifest and where each blob is.
#[derive(Debug)]
pub struct Artifact {
    /// The manifest (or image index), exactly as it will be pushed under the tag.
    pub manifest_bytes: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// For an image index (an image with `--provenance`/`--sbom`
    /// attestations): the manifests it lists, bytes and media type, pushed
    /// by digest before it.
    pub children: Vec<(Vec<u8>, String)>,
    /// The config and the layers (of every manifest), each with the file holding it.
    pub blobs: Vec<(Descriptor, PathBuf)>,
    /// The unpacked tarball, removed when the artifact is dropped.
    _unpacked: Option<tempfile::TempDir>,
}

impl Artifact {
    /// The manifest digest: the image's digest.
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest_bytes)
    }
}

/// Reads the image at `path` (a layout directory or a tarball).
///
/// # Errors
/// What is wrong with it, naming the path.
pub fn load(path: &Path) -> Result<Artifact, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        return from_layout(path, None);
    }
    let unpacked = tempfile::Builder::new()
        .prefix("kiln-push-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    archive
        .unpack(unpacked.path())
        .map_err(|e| format!("{}: not a readable tar archive: {e}", path.display()))?;
    let root = unpacked.path().to_path_buf();
    if root.join("index.json").exists() {
        from_layout(&root, Some(unpacked)).map_err(|e| format!("{}: {e}", path.display()))
    } else if root.join("manifest.json").exists() {
        from_docker_save(&root, unpacked).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        Err(format!(
            "{}: neither an OCI layout archive (index.json) nor a docker save tarball (manifest.json)",
            path.display()
        ))
    }
}

/// A regular file at `rel` inside `root`, never through a symlink out of it.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let path = root.join(rel);
    let real = path
        .canonicalize()
        .map_err(|e| format!("{rel}: {e} (the image lists it)"))?;
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    if !real.starts_with(&real_root) || !real.is_file() {
        return Err(format!("{rel}: not a file inside the image"));
    }
    Ok(real)
}

fn blob_path(root: &Path, digest: &Digest) -> Result<PathBuf, String> {
    let text = digest.to_string();
    let (algorithm, hex) = text.split_once(':').unwrap_or(("sha256", &text));
    inside(root, &format!("blobs/{algorithm}/{hex}"))
}

fn from_layout(root: &Path, unpacked: Option<tempfile::TempDir>) -> Result<Artifact, String> {
    let index_bytes =
        std::fs::read(inside(root, "index.json")?).map_err(|e| format!("index.json: {e}"))?;
    let index = Index::from_slice(&index_bytes).map_err(|e| format!("index.json: {e}"))?;
    let [entry] = index.manifests.as_slice() else {
        return Err(format!(
            "index.json lists {} images; push takes exactly one",
            index.manifests.len()
        ));
    };
    let mut blobs = Vec::new();
    if entry.media_type == media::OCI_INDEX || entry.media_type == media::DOCKER_MANIFEST_LIST {
        // An image index (kiln's image with attestations, or several
        // platforms): every manifest it lists and their blobs, then it.
        let index_bytes = read_verified(root, &entry.digest, "index")?;
        let index = Index::from_slice(&index_bytes).map_err(|e| e.to_string())?;
        let mut children = Vec::new();
        for child in &index.manifests {
            if media::is_index(&child.media_type) {
                return Err(format!(
                    "index {}: lists another index ({}); push takes one level",
                    entry.digest, child.digest
                ));
            }
            let (bytes, media_type) = read_manifest(root, &child.digest, &mut blobs)?;
            children.push((bytes, media_type));
        }
        return Ok(Artifact {
            media_type: entry.media_type.clone(),
            manifest_bytes: index_bytes,
            children,
            blobs,
            _unpacked: unpacked,
        });
    }
    let (manifest_bytes, media_type) = read_manifest(root, &entry.digest, &mut blobs)?;
    Ok(Artifact {
        media_type,
        manifest_bytes,
        children: Vec::new(),
        blobs,
        _unpacked: unpacked,
    })
}

/// The bytes of blob `digest`, checked against it.
fn read_verified(root: &Path, digest: &Digest, what: &str) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(blob_path(root, digest)?).map_err(|e| format!("{what} {digest}: {e}"))?;
    if Digest::sha256_of(&bytes) != *digest {
        return Err(format!(
            "{what} {digest}: its bytes do not have that digest"
        ));
    }
    Ok(bytes)
}

/// A manifest's bytes and media type; its config and layers go to `blobs`.
fn read_manifest(
    root: &Path,
    digest: &Digest,
    blobs: &mut Vec<(Descriptor, PathBuf)>,
) -> Result<(Vec<u8>, String), String> {
    let manifest_bytes = read_verified(root, digest, "manifest")?;
    let manifest = Manifest::from_slice(&manifest_bytes).map_err(|e| e.to_string())?;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let path = blob_path(root, &d.digest)?;
        let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        if size != d.size {
            return Err(format!(
                "blob {}: {size} bytes, the manifest says {}",
                d.digest, d.size
            ));
        }
        if !blobs.iter().any(|(b, _)| b.digest == d.digest) {
            blobs.push((d.clone(), path));
        }
    }
    Ok((manifest_bytes, manifest.effective_media_type().to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    layers: Vec<String>,
}

fn from_docker_save(root: &Path, unpacked: tempfile::TempDir) -> Result<Artifact, String> {
    let text =
        std::fs::read(inside(root, "manifest.json")?).map_err(|e| format!("manifest.json: {e}"))?;
    let entries: Vec<SaveEntry> =
        serde_json::from_slice(&text).map_err(|e| format!("manifest.json: {e}"))?;
    let [entry] = entries.as_slice() else {
        return Err(format!(
            "manifest.json lists {} images; push takes exactly one",
            entries.len()
        ));
    };
    let config_path = inside(root, &entry.config)?;
    let config = described(&config_path, media::DOCKER_CONFIG)?;
    let mut blobs = vec![(config.clone(), config_path)];
    let mut layers = Vec::new();
    for rel in &entry.layers {
        let path = inside(root, rel)?;
        let media_type = match magic(&path)? {
            [0x1f, 0x8b, ..] => media::DOCKER_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => {
                return Err(format!(
                    "{rel}: a zstd layer, which a Docker schema 2 manifest cannot describe"
                ))
            }
            _ => media::DOCKER_LAYER_TAR,
        };
        let d = described(&path, media_type)?;
        layers.push(d.clone());
        blobs.push((d, path));
    }
    let manifest = Manifest::new(false, config, layers);
    Ok(Artifact {
        media_type: manifest.effective_media_type().to_string(),
        manifest_bytes: manifest.to_vec(),
        children: Vec::new(),
        blobs,
        _unpacked: Some(unpacked),
    })
}

/// The first four bytes of a file (fewer when it is shorter).
fn magic(path: &Path) -> Result<[u8; 4], String> {
    let mut head = [0u8; 4];
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(head)
}

/// The descriptor of a file: its digest and size, read in one pass.
fn described(path: &Path, media_type: &str) -> Result<Descriptor, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer = DigestWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut writer).map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, digest, size) = writer.finish();
    Ok(Descriptor::new(media_type, digest, size))
}
