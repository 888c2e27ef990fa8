//! Writing OCI image layouts by hand (blobs, manifests, index.json), and the
//! layer tars that go in them, without any kiln code.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// OCI media types used by the images this crate writes.
pub mod media {
    /// Image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// Image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// gzip-compressed layer.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// Modification time stamped on every entry and the `created` date of
/// every config, so the images are byte-for-byte reproducible.
pub const FIXED_MTIME: u64 = 1_704_067_200; // 2024-01-01T00:00:00Z
/// [`FIXED_MTIME`] in RFC 3339 form.
pub const FIXED_CREATED: &str = "2024-01-01T00:00:00Z";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A content descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the referenced blob.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// The descriptor as JSON.
    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// An OCI image layout directory being written.
#[derive(Debug)]
pub struct LayoutWriter {
    root: PathBuf,
    index: Vec<Value>,
}

impl LayoutWriter {
    /// Creates the `oci-layout` marker and `blobs/sha256` under `root`.
    ///
    /// # Errors
    /// Fails on I/O errors.
    pub fn create(root: &Path) -> Result<Self> {
        fs::create_dir_all(root.join("blobs/sha256"))
            .with_context(|| format!("creating layout in {}", root.display()))?;
        fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(Self {
            root: root.to_path_buf(),
            index: Vec::new(),
        })
    }

    /// Stores `data` as a blob and returns its descriptor.
    ///
    /// # Errors
    /// Fails on I/O errors.
    pub fn write_blob(&mut self, media_type: &str, data: &[u8]) -> Result<Descriptor> {
        let digest = sha256_digest(data);
        let path = self
            .root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: data.len() as u64,
        })
    }

    /// Stores a JSON document as a blob, serialized compactly.
    ///
    /// # Errors
    /// Fails on I/O errors.
    pub fn write_json(&mut self, media_type: &str, doc: &Value) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(doc)?;
        self.write_blob(media_type, &bytes)
    }

    /// Writes config + layers + manifest for one image and returns the
    /// manifest's descriptor (not yet tagged).
    ///
    /// # Errors
    /// Fails on I/O errors.
    pub fn write_image(&mut self, config: &Value, layers: &[Layer]) -> Result<Descriptor> {
        let config_desc = self.write_json(media::CONFIG, config)?;
        let mut layer_descs = Vec::new();
        for l in layers {
            layer_descs.push(self.write_blob(media::LAYER_GZIP, &l.gzip)?.to_json());
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": config_desc.to_json(),
            "layers": layer_descs,
        });
        self.write_json(media::MANIFEST, &manifest)
    }

    /// Records `desc` in index.json under the tag `tag`
    /// (`org.opencontainers.image.ref.name`).
    pub fn tag(&mut self, tag: &str, desc: &Descriptor) {
        let mut entry = desc.to_json();
        entry["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        self.index.push(entry);
    }

    /// Writes index.json.
    ///
    /// # Errors
    /// Fails on I/O errors.
    pub fn finish(self) -> Result<()> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media::INDEX,
            "manifests": self.index,
        });
        let path = self.root.join("index.json");
        fs::write(&path, serde_json::to_vec(&index)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// A finished layer: its gzip blob and the digest of the uncompressed tar.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The compressed blob.
    pub gzip: Vec<u8>,
    /// `sha256:` of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
}

/// Builds one layer tar in memory with explicit owners and modes and a
/// fixed mtime. Paths are relative to the image root, without a leading `/`.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerBuilder").finish_non_exhaustive()
    }
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(FIXED_MTIME);
        h
    }

    /// Adds a directory.
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Result<&mut Self> {
        let mut h = Self::header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.tar
            .append_data(
                &mut h,
                format!("{}/", path.trim_end_matches('/')),
                std::io::empty(),
            )
            .with_context(|| format!("adding dir {path}"))?;
        Ok(self)
    }

    /// Adds a regular file.
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> Result<&mut Self> {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .with_context(|| format!("adding file {path}"))?;
        Ok(self)
    }

    /// Adds a symlink owned by root.
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .with_context(|| format!("adding symlink {path} -> {target}"))?;
        Ok(self)
    }

    /// Adds a hard link at `path` to the earlier entry `target` (both
    /// relative to the image root).
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn hardlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .with_context(|| format!("adding hard link {path} => {target}"))?;
        Ok(self)
    }

    /// Adds a device node owned by root, mode 0666: a block device when
    /// `block`, else a character device.
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn device_node(
        &mut self,
        path: &str,
        block: bool,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self> {
        let kind = if block {
            tar::EntryType::Block
        } else {
            tar::EntryType::Char
        };
        self.special_node(kind, path, 0o666, major, minor)
    }

    /// Adds a character device node `major:minor` (`1:5` is `/dev/zero`).
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self> {
        self.special_node(tar::EntryType::Char, path, mode, major, minor)
    }

    /// Adds a named pipe (as sysvinit images ship `/run/initctl`).
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn fifo(&mut self, path: &str, mode: u32) -> Result<&mut Self> {
        let mut h = Self::header(tar::EntryType::Fifo, mode, 0, 0, 0);
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .with_context(|| format!("adding fifo {path}"))?;
        Ok(self)
    }

    fn special_node(
        &mut self,
        kind: tar::EntryType,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self> {
        let mut h = Self::header(kind, mode, 0, 0, 0);
        h.set_device_major(major)?;
        h.set_device_minor(minor)?;
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .with_context(|| format!("adding device node {path}"))?;
        Ok(self)
    }

    /// Adds an OCI whiteout deleting `path` from the layers below.
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn whiteout(&mut self, path: &str) -> Result<&mut Self> {
        let p = Path::new(path);
        let name = p.file_name().context("whiteout of a path without a name")?;
        let wh = p.with_file_name(format!(".wh.{}", name.to_string_lossy()));
        self.file(&wh.to_string_lossy(), 0o644, 0, 0, b"")
    }

    /// Marks directory `dir` opaque: everything below it in lower layers is hidden.
    ///
    /// # Errors
    /// Fails if the path does not fit a tar header.
    pub fn opaque(&mut self, dir: &str) -> Result<&mut Self> {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            0o644,
            0,
            0,
            b"",
        )
    }

    /// Finishes the tar and compresses it.
    ///
    /// # Errors
    /// Fails on I/O errors.
    pub fn finish(self) -> Result<Layer> {
        let tar = self.tar.into_inner().context("finishing layer tar")?;
        let diff_id = sha256_digest(&tar);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar)?;
        Ok(Layer {
            gzip: gz.finish()?,
            diff_id,
        })
    }
}
