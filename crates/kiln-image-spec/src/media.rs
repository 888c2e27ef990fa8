//! Media type strings for OCI and Docker schema 2 objects.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI empty JSON descriptor (used for artifact configs).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker zstd layer (not an official Docker type; BuildKit writes the OCI one instead).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// True for the media types of an index or a manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// True for the media types of a single-image manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// How a tar stream is compressed: a layer blob's compression (plain tar,
/// gzip or zstd: the only ones a layer media type names), the layer
/// compression a build writes (`--compression`, gzip or zstd), and the
/// formats `ADD` recognises in a local archive by its magic bytes (bzip2 and
/// xz besides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip: read by every registry and runtime, and the default for layers.
    #[default]
    Gzip,
    /// zstd: faster and smaller, read by recent runtimes.
    Zstd,
    /// bzip2 (archives only; no layer media type names it).
    Bzip2,
    /// xz (archives only; no layer media type names it).
    Xz,
}

impl Compression {
    /// The compression a layer media type implies (`None` for unknown types is the caller's call).
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".tar.zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") || media_type.ends_with("diff.tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// Recognises a compressed stream by its first bytes; anything unknown is
    /// [`Compression::None`].
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The layer media type for this compression in the OCI or Docker
    /// family (zstd has only the OCI name, used in both); `None` for bzip2
    /// and xz, which no layer media type names.
    pub fn layer_media_type(self, oci: bool) -> Option<&'static str> {
        Some(match (self, oci) {
            (Compression::None, true) => OCI_LAYER_TAR,
            (Compression::Gzip, true) => OCI_LAYER_GZIP,
            (Compression::Zstd, _) => OCI_LAYER_ZSTD,
            (Compression::None, false) => DOCKER_LAYER_TAR,
            (Compression::Gzip, false) => DOCKER_LAYER_GZIP,
            (Compression::Bzip2 | Compression::Xz, _) => return None,
        })
    }

    /// The levels a layer may be compressed at, where a layer can be
    /// written in this compression with a level (gzip 0-9, zstd 1-22).
    pub fn level_range(self) -> Option<(i32, i32)> {
        match self {
            Compression::Gzip => Some((0, 9)),
            Compression::Zstd => Some((1, 22)),
            Compression::None | Compression::Bzip2 | Compression::Xz => None,
        }
    }

    /// The lowercase name (`none`, `gzip`, `zstd`, `bzip2`, `xz`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_media_types() {
        assert_eq!(
            Compression::of_media_type(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of_media_type(OCI_LAYER_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::of_media_type(OCI_LAYER_TAR),
            Some(Compression::None)
        );
        assert_eq!(Compression::of_media_type(OCI_CONFIG), None);
    }

    #[test]
    fn compression_from_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"hello"), Compression::None);
    }

    #[test]
    fn only_tar_gzip_and_zstd_name_a_layer() {
        assert_eq!(
            Compression::Gzip.layer_media_type(false),
            Some(DOCKER_LAYER_GZIP)
        );
        assert_eq!(
            Compression::None.layer_media_type(true),
            Some(OCI_LAYER_TAR)
        );
        assert_eq!(Compression::Xz.layer_media_type(true), None);
        assert_eq!(Compression::Bzip2.level_range(), None);
        assert_eq!(Compression::default().to_string(), "gzip");
    }
}
