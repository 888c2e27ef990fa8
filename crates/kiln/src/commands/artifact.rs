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

use kiln_oci::{media, Descriptor, Digest, DigestWriter, Index, Manifest, ManifestError};
use serde::Deserialize;

/// Why an image on disk cannot be pushed; each names the file and keeps the
/// error beneath it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No private directory to unpack a tarball into.
    #[error("cannot make a temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    /// The tarball could not be unpacked.
    #[error("{}: not a readable tar archive: {source}", path.display())]
    NotATar {
        /// The tarball.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something is wrong inside a tarball.
    #[error("{}: {source}", path.display())]
    InArchive {
        /// The tarball.
        path: PathBuf,
        /// What is wrong inside it.
        #[source]
        source: Box<ArtifactError>,
    },
    /// A tarball that is neither kind.
    #[error(
        "{}: neither an OCI layout archive (index.json) nor a docker save tarball (manifest.json)",
        path.display()
    )]
    UnknownFormat {
        /// The tarball.
        path: PathBuf,
    },
    /// A file the image lists cannot be found.
    #[error("{rel}: {source} (the image lists it)")]
    Listed {
        /// Its path inside the image.
        rel: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file the image lists is not a regular file inside it (a symlink out of it).
    #[error("{rel}: not a file inside the image")]
    NotInside {
        /// Its path inside the image.
        rel: String,
    },
    /// `index.json` or `manifest.json` could not be read.
    #[error("{file}: {source}")]
    ReadTop {
        /// Which.
        file: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `index.json` is not an image index.
    #[error("index.json: {0}")]
    LayoutIndex(#[source] ManifestError),
    /// `manifest.json` is not a `docker save` manifest.
    #[error("manifest.json: {0}")]
    SaveManifest(#[source] serde_json::Error),
    /// The top-level file lists other than one image.
    #[error("{file} lists {count} images; push takes exactly one")]
    NotOneImage {
        /// `index.json` or `manifest.json`.
        file: &'static str,
        /// How many it lists.
        count: usize,
    },
    /// A blob could not be read.
    #[error("{what} {digest}: {source}")]
    ReadBlob {
        /// What the blob is.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blob's bytes do not have the digest naming it.
    #[error("{what} {digest}: its bytes do not have that digest")]
    DigestMismatch {
        /// What the blob is.
        what: &'static str,
        /// The digest naming it.
        digest: Digest,
    },
    /// A manifest or index blob is not one.
    #[error(transparent)]
    Document(#[from] ManifestError),
    /// An index listing another index.
    #[error("index {index}: lists another index ({child}); push takes one level")]
    NestedIndex {
        /// The index pushed.
        index: Digest,
        /// The index it lists.
        child: Digest,
    },
    /// A blob's size could not be read.
    #[error(transparent)]
    BlobSize(std::io::Error),
    /// A blob's size differs from its descriptor's.
    #[error("blob {digest}: {size} bytes, the manifest says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Its size on disk.
        size: u64,
        /// The manifest's size.
        expected: u64,
    },
    /// A zstd layer in a `docker save` tarball.
    #[error("{rel}: a zstd layer, which a Docker schema 2 manifest cannot describe")]
    ZstdLayer {
        /// Its path inside the tarball.
        rel: String,
    },
}

/// An io error about `path`.
fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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
pub fn load(path: &Path) -> Result<Artifact, ArtifactError> {
    let meta = std::fs::metadata(path).map_err(io_at(path))?;
    if meta.is_dir() {
        return from_layout(path, None);
    }
    let unpacked = tempfile::Builder::new()
        .prefix("kiln-push-")
        .tempdir()
        .map_err(ArtifactError::TempDir)?;
    let file = File::open(path).map_err(io_at(path))?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    archive
        .unpack(unpacked.path())
        .map_err(|source| ArtifactError::NotATar {
            path: path.to_path_buf(),
            source,
        })?;
    let root = unpacked.path().to_path_buf();
    let in_archive = |source| ArtifactError::InArchive {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    if root.join("index.json").exists() {
        from_layout(&root, Some(unpacked)).map_err(in_archive)
    } else if root.join("manifest.json").exists() {
        from_docker_save(&root, unpacked).map_err(in_archive)
    } else {
        Err(ArtifactError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}

/// A regular file at `rel` inside `root`, never through a symlink out of it.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, ArtifactError> {
    let path = root.join(rel);
    let real = path
        .canonicalize()
        .map_err(|source| ArtifactError::Listed {
            rel: rel.to_string(),
            source,
        })?;
    let real_root = root.canonicalize().map_err(io_at(root))?;
    if !real.starts_with(&real_root) || !real.is_file() {
        return Err(ArtifactError::NotInside {
            rel: rel.to_string(),
        });
    }
    Ok(real)
}

fn blob_path(root: &Path, digest: &Digest) -> Result<PathBuf, ArtifactError> {
    let text = digest.to_string();
    let (algorithm, hex) = text.split_once(':').unwrap_or(("sha256", &text));
    inside(root, &format!("blobs/{algorithm}/{hex}"))
}

fn from_layout(
    root: &Path,
    unpacked: Option<tempfile::TempDir>,
) -> Result<Artifact, ArtifactError> {
    let index_bytes =
        std::fs::read(inside(root, "index.json")?).map_err(|source| ArtifactError::ReadTop {
            file: "index.json",
            source,
        })?;
    let index = Index::from_slice(&index_bytes).map_err(ArtifactError::LayoutIndex)?;
    let [entry] = index.manifests.as_slice() else {
        return Err(ArtifactError::NotOneImage {
            file: "index.json",
            count: index.manifests.len(),
        });
    };
    let mut blobs = Vec::new();
    if entry.media_type == media::OCI_INDEX || entry.media_type == media::DOCKER_MANIFEST_LIST {
        // An image index (kiln's image with attestations, or several
        // platforms): every manifest it lists and their blobs, then it.
        let index_bytes = read_verified(root, &entry.digest, "index")?;
        let index = Index::from_slice(&index_bytes)?;
        let mut children = Vec::new();
        for child in &index.manifests {
            if media::is_index(&child.media_type) {
                return Err(ArtifactError::NestedIndex {
                    index: entry.digest.clone(),
                    child: child.digest.clone(),
                });
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
fn read_verified(
    root: &Path,
    digest: &Digest,
    what: &'static str,
) -> Result<Vec<u8>, ArtifactError> {
    let bytes =
        std::fs::read(blob_path(root, digest)?).map_err(|source| ArtifactError::ReadBlob {
            what,
            digest: digest.clone(),
            source,
        })?;
    if Digest::sha256_of(&bytes) != *digest {
        return Err(ArtifactError::DigestMismatch {
            what,
            digest: digest.clone(),
        });
    }
    Ok(bytes)
}

/// A manifest's bytes and media type; its config and layers go to `blobs`.
fn read_manifest(
    root: &Path,
    digest: &Digest,
    blobs: &mut Vec<(Descriptor, PathBuf)>,
) -> Result<(Vec<u8>, String), ArtifactError> {
    let manifest_bytes = read_verified(root, digest, "manifest")?;
    let manifest = Manifest::from_slice(&manifest_bytes)?;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let path = blob_path(root, &d.digest)?;
        let size = std::fs::metadata(&path)
            .map_err(ArtifactError::BlobSize)?
            .len();
        if size != d.size {
            return Err(ArtifactError::SizeMismatch {
                digest: d.digest.clone(),
                size,
                expected: d.size,
            });
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

fn from_docker_save(root: &Path, unpacked: tempfile::TempDir) -> Result<Artifact, ArtifactError> {
    let text =
        std::fs::read(inside(root, "manifest.json")?).map_err(|source| ArtifactError::ReadTop {
            file: "manifest.json",
            source,
        })?;
    let entries: Vec<SaveEntry> =
        serde_json::from_slice(&text).map_err(ArtifactError::SaveManifest)?;
    let [entry] = entries.as_slice() else {
        return Err(ArtifactError::NotOneImage {
            file: "manifest.json",
            count: entries.len(),
        });
    };
    let config_path = inside(root, &entry.config)?;
    let config = described(&config_path, media::DOCKER_CONFIG)?;
    let mut blobs = vec![(config.clone(), config_path)];
    let mut layers = Vec::new();
    for rel in &entry.layers {
        let path = inside(root, rel)?;
        let media_type = match magic(&path)? {
            [0x1f, 0x8b, ..] => media::DOCKER_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => return Err(ArtifactError::ZstdLayer { rel: rel.clone() }),
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
fn magic(path: &Path) -> Result<[u8; 4], ArtifactError> {
    let mut head = [0u8; 4];
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(io_at(path)(e)),
        }
    }
    Ok(head)
}

/// The descriptor of a file: its digest and size, read in one pass.
fn described(path: &Path, media_type: &str) -> Result<Descriptor, ArtifactError> {
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut writer = DigestWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut writer).map_err(io_at(path))?;
    let (_, digest, size) = writer.finish();
    Ok(Descriptor::new(media_type, digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    /// A `docker save` tarball whose manifest.json lists `config` and `layers`,
    /// holding only the files in `present`.
    fn save_tarball(dir: &Path, config: &str, present: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("image.tar");
        let mut tar = tar::Builder::new(File::create(&path).unwrap());
        let manifest = format!(r#"[{{"Config":"{config}","Layers":[]}}]"#);
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes).unwrap();
        };
        add("manifest.json", manifest.as_bytes());
        for (name, bytes) in present {
            add(name, bytes);
        }
        tar.finish().unwrap();
        path
    }

    #[test]
    fn a_file_the_tarball_lists_but_lacks_walks_to_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = save_tarball(dir.path(), "config.json", &[]);
        let e = load(&tarball).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: config.json: No such file or directory (os error 2) (the image lists it)",
                tarball.display()
            )
        );
        let ArtifactError::InArchive { source, .. } = &e else {
            panic!("not an error inside the archive: {e:?}");
        };
        assert!(
            matches!(&**source, ArtifactError::Listed { rel, .. } if rel == "config.json"),
            "{source:?}"
        );
        let io = std::iter::successors(e.source(), |s: &&(dyn Error + 'static)| (*s).source())
            .find_map(|s| s.downcast_ref::<std::io::Error>())
            .expect("an io::Error beneath");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_that_is_not_a_tarball_says_so_and_keeps_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.tar");
        std::fs::write(&path, vec![0xffu8; 1024]).unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(&e, ArtifactError::NotATar { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: not a readable tar archive: ", path.display())),
            "{e}"
        );
        assert!(e.source().is_some());
    }

    #[test]
    fn a_symlink_out_of_the_tarball_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let mut tar = tar::Builder::new(File::create(&path).unwrap());
        let manifest = br#"[{"Config":"config.json","Layers":[]}]"#;
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "manifest.json", &manifest[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(&mut link, "config.json", "/etc/passwd")
            .unwrap();
        tar.finish().unwrap();
        drop(tar);
        let e = load(&path).unwrap_err();
        let ArtifactError::InArchive { source, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(
            matches!(&**source, ArtifactError::NotInside { rel } if rel == "config.json"),
            "{source:?}"
        );
    }
}
