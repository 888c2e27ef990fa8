//! The final filesystem of an image, computed by applying its layers in
//! order with OCI whiteout rules, using only the tar crate.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::layout::sha256_digest;
use crate::platform::Platform;
use crate::read_layout::LayoutImage;
use crate::registry::Registry;
use crate::skopeo::{skopeo_copy_with, Access, CopyOptions};

/// Files up to this size keep their content in [`EntryInfo::content`] so
/// tests can assert on text directly.
pub const KEEP_CONTENT_UP_TO: u64 = 16 * 1024;

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to another path in the image.
    Hardlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
}

/// What the image says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Entry type.
    pub kind: EntryKind,
    /// Permission bits plus setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Content size (files; for hard links, the target's).
    pub size: u64,
    /// `sha256:` of the content (files, and hard links whose target is known).
    pub sha256: Option<String>,
    /// Symlink target as written, or the hard link's target as an absolute path.
    pub link_target: Option<String>,
    /// (major, minor) for device nodes.
    pub device: Option<(u32, u32)>,
    /// PAX extended attributes (`SCHILY.xattr.*`), name without the prefix,
    /// value hex-encoded.
    pub xattrs: BTreeMap<String, String>,
    /// The content, for files up to [`KEEP_CONTENT_UP_TO`] bytes. Not part of
    /// comparisons ([`EntryInfo::sha256`] is).
    pub content: Option<Vec<u8>>,
}

impl EntryInfo {
    fn implicit_dir() -> Self {
        Self {
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            link_target: None,
            device: None,
            xattrs: BTreeMap::new(),
            content: None,
        }
    }

    /// Everything compared by [`crate::diff`]: all fields except `content`.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        let strip = |e: &Self| Self {
            content: None,
            ..e.clone()
        };
        strip(self) == strip(other)
    }
}

impl fmt::Display for EntryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if self.kind == EntryKind::File || self.kind == EntryKind::Hardlink {
            write!(f, " size={}", self.size)?;
            if let Some(s) = &self.sha256 {
                write!(f, " {}", &s[..s.len().min(19)])?;
            }
        }
        if let Some(t) = &self.link_target {
            write!(f, " -> {t}")?;
        }
        if let Some((ma, mi)) = self.device {
            write!(f, " dev={ma},{mi}")?;
        }
        if !self.xattrs.is_empty() {
            write!(f, " xattrs={:?}", self.xattrs.keys().collect::<Vec<_>>())?;
        }
        Ok(())
    }
}

/// An image's final filesystem and its config.
///
/// Paths are absolute (`/bin/sh`); the root itself is not listed. Parent
/// directories a layer implies without listing them are added as
/// `0755 root:root` directories, which is what an extracting runtime creates.
#[derive(Debug, Clone)]
pub struct Flattened {
    /// Path → entry, after all layers and whiteouts.
    pub entries: BTreeMap<String, EntryInfo>,
    /// The image config JSON.
    pub config: Value,
    /// The image manifest JSON.
    pub manifest: Value,
}

impl Flattened {
    /// Reads the image tagged `tag` in the OCI layout `dir` (the host
    /// platform's entry when the tag names an index).
    ///
    /// # Errors
    /// Fails on a missing tag, a digest mismatch (blob or diff_id), or an
    /// unreadable layer.
    pub fn from_layout(dir: &Path, tag: &str) -> Result<Self> {
        Self::from_layout_for(dir, tag, &Platform::host())
    }

    /// Like [`Flattened::from_layout`], choosing `platform` from an index.
    ///
    /// # Errors
    /// As [`Flattened::from_layout`], or if the index lacks `platform`.
    pub fn from_layout_for(dir: &Path, tag: &str, platform: &Platform) -> Result<Self> {
        let img = LayoutImage::open(dir, tag, platform)
            .with_context(|| format!("opening {}:{tag}", dir.display()))?;
        let diff_ids: Vec<String> = img.config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        let layers = img.layers();
        ensure!(
            diff_ids.len() == layers.len(),
            "manifest has {} layers but config has {} diff_ids",
            layers.len(),
            diff_ids.len()
        );
        let mut fs = Fs::default();
        for (i, desc) in layers.iter().enumerate() {
            let blob = img.read_blob(desc)?;
            let tar =
                decompress(&blob).with_context(|| format!("layer {i} ({})", desc["digest"]))?;
            let actual = sha256_digest(&tar);
            ensure!(
                actual == diff_ids[i],
                "layer {i}: uncompressed digest {actual} but config diff_id is {}",
                diff_ids[i]
            );
            fs.apply(&tar)
                .with_context(|| format!("applying layer {i} ({})", desc["digest"]))?;
        }
        Ok(Self {
            entries: fs.entries,
            config: img.config,
            manifest: img.manifest,
        })
    }

    /// Fetches `reference` (`host/name:tag`, no transport) with skopeo into a
    /// temp layout and reads it.
    ///
    /// # Errors
    /// Fails with skopeo's stderr, or as [`Flattened::from_layout`].
    pub fn from_reference(reference: &str, access: &Access) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("kiln-flatten-").tempdir()?;
        let opts = CopyOptions {
            src: access.clone(),
            preserve_digests: true,
            ..CopyOptions::default()
        };
        let dst = format!("oci:{}:image", tmp.path().display());
        skopeo_copy_with(&format!("docker://{reference}"), &dst, &opts)?;
        Self::from_layout(tmp.path(), "image")
    }

    /// [`Flattened::from_reference`] for `name` on `reg` with its access.
    ///
    /// # Errors
    /// As [`Flattened::from_reference`].
    pub fn from_registry(reg: &Registry, name: &str) -> Result<Self> {
        Self::from_reference(&reg.image_ref(name), &Access::for_registry(reg))
    }

    /// The entry at absolute `path`.
    pub fn get(&self, path: &str) -> Option<&EntryInfo> {
        self.entries.get(path)
    }

    /// The content of a small file as UTF-8 (lossy), if kept.
    pub fn text(&self, path: &str) -> Option<String> {
        let c = self.get(path)?.content.as_ref()?;
        Some(String::from_utf8_lossy(c).into_owned())
    }
}

/// Detects compression by magic bytes rather than media type, so Docker and
/// OCI media types, and mislabelled blobs, are all read the same way.
fn decompress(blob: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut out)
            .context("gunzip")?;
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(blob)?
            .read_to_end(&mut out)
            .context("zstd decompress")?;
    } else {
        out = blob.to_vec();
    }
    Ok(out)
}

/// Normalizes a tar path to `/a/b`; `None` for the root itself.
fn normalize(p: &Path) -> Option<String> {
    let parts: Vec<String> = p
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(format!("/{}", parts.join("/")))
    }
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

#[derive(Default)]
struct Fs {
    entries: BTreeMap<String, EntryInfo>,
}

impl Fs {
    fn remove_below(&mut self, dir: &str) {
        // A range, not a scan: a layer of many files removes below each one.
        let prefix = format!("{dir}/");
        let below: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.entries.remove(&k);
        }
    }

    /// Applies one layer. Whiteouts and opaque markers act on the layers
    /// below only, so they are applied first, whatever their position in
    /// the tar; then the layer's own entries are added in tar order.
    fn apply(&mut self, tar_bytes: &[u8]) -> Result<()> {
        let mut added: Vec<(String, EntryInfo)> = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        let mut opaque: Vec<String> = Vec::new();

        let mut archive = tar::Archive::new(tar_bytes);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw_path = entry.path()?.into_owned();
            let Some(path) = normalize(&raw_path) else {
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            let dir = parent(&path).unwrap_or("").to_string();
            if name == ".wh..wh..opq" {
                opaque.push(if dir.is_empty() { "/".into() } else { dir });
                continue;
            }
            if let Some(target) = name.strip_prefix(".wh.") {
                removed.push(format!("{dir}/{target}"));
                continue;
            }
            let info = read_entry(&mut entry)?;
            added.push((path, info));
        }

        for p in &removed {
            self.entries.remove(p);
            self.remove_below(p);
        }
        for d in &opaque {
            if d == "/" {
                self.entries.clear();
            } else {
                self.remove_below(d);
            }
        }
        for (path, mut info) in added {
            // Anything but a directory replaces a lower directory's subtree.
            if info.kind != EntryKind::Dir {
                self.remove_below(&path);
            }
            if info.kind == EntryKind::Hardlink {
                if let Some(t) = info.link_target.as_ref().and_then(|t| self.entries.get(t)) {
                    info.size = t.size;
                    info.sha256 = t.sha256.clone();
                    info.content = t.content.clone();
                }
            }
            let mut p = parent(&path);
            while let Some(d) = p {
                self.entries
                    .entry(d.to_string())
                    .or_insert_with(EntryInfo::implicit_dir);
                p = parent(d);
            }
            self.entries.insert(path, info);
        }
        Ok(())
    }
}

fn read_entry<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<EntryInfo> {
    use tar::EntryType as T;
    let h = entry.header().clone();
    let kind = match h.entry_type() {
        T::Regular | T::Continuous => EntryKind::File,
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::Hardlink,
        T::Char => EntryKind::Char,
        T::Block => EntryKind::Block,
        T::Fifo => EntryKind::Fifo,
        other => bail!(
            "unexpected tar entry type {other:?} for {}",
            String::from_utf8_lossy(&entry.path_bytes())
        ),
    };
    let link_target = match kind {
        EntryKind::Symlink => entry.link_name()?.map(|l| l.to_string_lossy().into_owned()),
        EntryKind::Hardlink => entry.link_name()?.and_then(|l| normalize(&l)),
        _ => None,
    };
    let device = match kind {
        EntryKind::Char | EntryKind::Block => Some((
            h.device_major()?.unwrap_or(0),
            h.device_minor()?.unwrap_or(0),
        )),
        _ => None,
    };
    let mut xattrs = BTreeMap::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                xattrs.insert(name.to_string(), hex::encode(ext.value_bytes()));
            }
        }
    }
    let (size, sha256, content) = if kind == EntryKind::File {
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let sha = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        let size = data.len() as u64;
        let keep = (size <= KEEP_CONTENT_UP_TO).then_some(data);
        (size, Some(sha), keep)
    } else {
        (0, None, None)
    };
    Ok(EntryInfo {
        kind,
        mode: h.mode()? & 0o7777,
        uid: h.uid()?,
        gid: h.gid()?,
        size,
        sha256,
        link_target,
        device,
        xattrs,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LayerBuilder;

    fn tar_of(b: LayerBuilder) -> Vec<u8> {
        let layer = b.finish().unwrap();
        decompress(&layer.gzip).unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_dirs_apply_to_lower_layers_only() {
        let mut fs = Fs::default();
        let mut b = LayerBuilder::new();
        b.dir("a", 0o755, 0, 0).unwrap();
        b.file("a/gone", 0o644, 0, 0, b"x").unwrap();
        b.dir("o", 0o700, 0, 0).unwrap();
        b.file("o/old", 0o644, 0, 0, b"x").unwrap();
        fs.apply(&tar_of(b)).unwrap();

        let mut b = LayerBuilder::new();
        // The opaque marker comes after a new child: order inside the layer
        // must not matter.
        b.file("o/new", 0o600, 5, 6, b"hi").unwrap();
        b.opaque("o").unwrap();
        b.whiteout("a/gone").unwrap();
        fs.apply(&tar_of(b)).unwrap();

        let keys: Vec<&str> = fs.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/a", "/o", "/o/new"]);
        let new = &fs.entries["/o/new"];
        assert_eq!((new.mode, new.uid, new.gid, new.size), (0o600, 5, 6, 2));
        assert_eq!(new.content.as_deref(), Some(&b"hi"[..]));
        // The directory keeps its lower metadata (0700) since layer 2 did not list it.
        assert_eq!(fs.entries["/o"].mode, 0o700);
    }

    #[test]
    fn file_replacing_dir_drops_subtree_and_parents_are_implied() {
        let mut fs = Fs::default();
        let mut b = LayerBuilder::new();
        b.dir("d", 0o755, 0, 0).unwrap();
        b.file("d/x", 0o644, 0, 0, b"x").unwrap();
        fs.apply(&tar_of(b)).unwrap();
        let mut b = LayerBuilder::new();
        b.file("d", 0o644, 0, 0, b"now a file").unwrap();
        b.symlink("deep/er/link", "../d").unwrap();
        fs.apply(&tar_of(b)).unwrap();
        let keys: Vec<&str> = fs.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/d", "/deep", "/deep/er", "/deep/er/link"]);
        assert_eq!(fs.entries["/deep"].kind, EntryKind::Dir);
        assert_eq!(
            fs.entries["/deep/er/link"].link_target.as_deref(),
            Some("../d")
        );
    }

    #[test]
    fn hardlinks_carry_their_target_content() {
        let mut fs = Fs::default();
        let mut b = LayerBuilder::new();
        b.file("a", 0o755, 0, 0, b"data").unwrap();
        b.hardlink("b", "a").unwrap();
        fs.apply(&tar_of(b)).unwrap();
        let link = &fs.entries["/b"];
        assert_eq!(link.kind, EntryKind::Hardlink);
        assert_eq!(link.link_target.as_deref(), Some("/a"));
        assert_eq!(link.sha256, fs.entries["/a"].sha256);
        assert_eq!(link.size, 4);
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize(Path::new("./a/b/")).as_deref(), Some("/a/b"));
        assert_eq!(normalize(Path::new("/a")).as_deref(), Some("/a"));
        assert_eq!(normalize(Path::new("./")), None);
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), None);
    }
}
