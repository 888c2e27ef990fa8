//! Resolved build options: everything one build needs to know, as plain typed data.
//!
//! [`BuildOptions`] and its parts say what to build, from where, and where the image goes,
//! with references parsed, pairs split and files located. They carry no command-line
//! vocabulary: the `kiln` command line reads Kaniko's and BuildKit's flags and environment
//! variables and fills them in; a library user fills them in directly.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use kiln_attest::provenance::ProvenanceRequest;
pub use kiln_oci::media::Compression;
pub use kiln_oci::registry::ClientCert;
pub use kiln_oci::RegistryOptions;
use kiln_oci::{Platform, Reference};
use serde::{Serialize, Serializer};

/// The media type family of the image manifest (`--image-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Docker schema 2 manifest and config.
    Docker,
    /// OCI image manifest and config.
    Oci,
}

/// How `--provenance`/`--sbom` statements reach a registry
/// (`--attestation-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationFormat {
    /// BuildKit's attestation manifest in an image index the tag names.
    #[default]
    Index,
    /// OCI 1.1 artifacts whose `subject` is the image manifest, found with
    /// the referrers API or its `sha256-<hex>` tag; the tag names the image.
    Referrers,
}

/// A flag's value that is not one of the words the flag takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeywordError {
    /// Not one of `expected`.
    #[error("unknown {what} {given:?} (expected one of: {})", expected.join(", "))]
    Unknown {
        /// What the flag sets: "isolation", "compression", …
        what: &'static str,
        /// The value given.
        given: String,
        /// The words it takes.
        expected: &'static [&'static str],
    },
    /// Not an attestation format.
    #[error("{0:?}: the attestation format is index or referrers")]
    AttestationFormat(String),
}

impl FromStr for AttestationFormat {
    type Err = KeywordError;
    fn from_str(s: &str) -> Result<Self, KeywordError> {
        match s {
            "index" => Ok(AttestationFormat::Index),
            "referrers" => Ok(AttestationFormat::Referrers),
            other => Err(KeywordError::AttestationFormat(other.to_string())),
        }
    }
}

/// How RUN steps are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Isolation {
    /// Namespaces where the kernel allows them, chroot otherwise.
    #[default]
    Auto,
    /// Fresh mount/pid/ipc/uts namespaces (and a user namespace when not root).
    Namespace,
    /// A chroot, for where mounts are not allowed.
    Chroot,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Plain text.
    Text,
    /// Text with ANSI colours (Kaniko's default).
    #[default]
    Color,
    /// One JSON object per line.
    Json,
}

/// Log verbosity, with Kaniko's (logrus) level names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// Only what makes the build stop.
    Panic,
    /// Only what makes the build stop.
    Fatal,
    /// Errors.
    Error,
    /// Warnings and errors.
    Warn,
    /// Progress (the default).
    #[default]
    Info,
    /// Details for debugging.
    Debug,
    /// Everything.
    Trace,
}

macro_rules! keyword_enum {
    ($ty:ident, $what:literal, { $($text:literal => $variant:ident),+ $(,)? }) => {
        impl FromStr for $ty {
            type Err = KeywordError;
            fn from_str(s: &str) -> Result<Self, KeywordError> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(KeywordError::Unknown {
                        what: $what,
                        given: s.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($ty::$variant => $text,)+ })
            }
        }
    };
}

keyword_enum!(ImageFormat, "image format", { "docker" => Docker, "oci" => Oci });
keyword_enum!(Isolation, "isolation", { "auto" => Auto, "namespace" => Namespace, "chroot" => Chroot });
keyword_enum!(LogFormat, "log format", { "text" => Text, "color" => Color, "json" => Json });
keyword_enum!(Verbosity, "verbosity", {
    "panic" => Panic, "fatal" => Fatal, "error" => Error, "warn" => Warn,
    "info" => Info, "debug" => Debug, "trace" => Trace,
});

/// Parses `--compression`: the compressions a layer is written in, `gzip`
/// or `zstd`, in any case.
pub fn parse_layer_compression(s: &str) -> Result<Compression, KeywordError> {
    match s.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(KeywordError::Unknown {
            what: "compression",
            given: s.to_string(),
            expected: &["gzip", "zstd"],
        }),
    }
}

/// Everything one build needs, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildOptions {
    /// Where the build context comes from.
    pub context: ContextSource,
    /// Where the Dockerfile is.
    pub dockerfile: DockerfileLocation,
    /// The stage to build; the last one when `None`.
    pub target: Option<String>,
    /// Other stages to build as well (with what they need), not pushed.
    pub extra_targets: Vec<String>,
    /// Build arguments in the order given (a later one with the same name wins).
    pub build_args: Vec<KeyValue>,
    /// Labels added to the image, in order.
    pub labels: Vec<KeyValue>,
    /// Build only the stages the target needs; when false, every stage up to
    /// the target (and whatever those read), as Kaniko without the flag.
    pub skip_unused_stages: bool,
    /// The platform to build for (the first of `platforms` when there are several).
    pub platform: Platform,
    /// Every platform to build for, when there are several: one image each,
    /// pushed as one index. Empty for a single platform.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
    /// Strip timestamps so that equal inputs give equal digests.
    pub reproducible: bool,
    /// Unpack the bases of later stages that RUN while the first stages
    /// run (`--prefetch-bases`); never with the layer cache or an SBOM.
    pub prefetch_bases: bool,
    /// Build secrets (names and sources only; contents are read when used).
    pub secrets: Vec<Secret>,
    /// SSH agent sockets RUN `--mount=type=ssh` forwards, by id.
    pub ssh: Vec<SshAgent>,
    /// How RUN steps are isolated.
    pub isolation: Isolation,
    /// The directory under which the build keeps its private working directory.
    pub work_dir: PathBuf,
    /// How layers are compressed.
    pub layers: LayerOptions,
    /// Where the image goes.
    pub output: OutputOptions,
    /// The layer cache.
    pub cache: CacheOptions,
    /// How to talk to registries.
    pub registry: RegistryOptions,
    /// Logging.
    pub log: LogOptions,
    /// `--dryrun`: print the plan and stop, building and pushing nothing.
    pub dryrun: bool,
    /// Print the plan before building (the command line reads it from the environment).
    pub print_plan: bool,
    /// Kaniko flags about the filesystem Kaniko builds in, which kiln never
    /// touches: resolved so that `kiln debug options` shows them.
    pub host_filesystem: HostFilesystemFlags,
}

/// The fork's flags for the container filesystem Kaniko builds in. kiln
/// builds in a private directory and leaves the host's files alone, so these
/// change nothing; they are kept to be shown and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct HostFilesystemFlags {
    /// `--materialize`: leave the target's files in the root filesystem.
    pub materialize: bool,
    /// `--pre-cleanup` (or its environment variable): empty the root filesystem first.
    pub pre_cleanup: bool,
    /// `--preserve-context` (or its environment variable): restore the root
    /// filesystem between stages.
    pub preserve_context: bool,
}

impl HostFilesystemFlags {
    /// One line per flag that is on, saying why it changes nothing in kiln.
    pub fn notices(&self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if self.materialize {
            notes.push(
                "--materialize: kiln never unpacks the image into its own root filesystem,                  so there is nothing to materialize; the image is the same either way",
            );
        }
        if self.pre_cleanup {
            notes.push(
                "--pre-cleanup: kiln builds in a private directory, never in its own root                  filesystem, so there is nothing to clean before the build",
            );
        }
        if self.preserve_context {
            notes.push(
                "--preserve-context: kiln never changes its own root filesystem, so the                  context and every file around it stay as they were through every stage",
            );
        }
        notes
    }
}

/// Manifest annotations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AnnotationOptions {
    /// `--annotation`s, by key (a later one with the same key wins).
    pub added: BTreeMap<String, String>,
    /// Keep the base image's manifest annotations. Off by default, as in the
    /// fork and BuildKit; the command line turns it on from the fork's feature flag.
    pub inherit_base: bool,
}

/// Where the build context comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContextSource {
    /// A local directory (the sub path already applied).
    Dir(PathBuf),
    /// A local gzip-compressed tar, unpacked by the build.
    Tar {
        /// The archive.
        archive: PathBuf,
        /// A directory inside the archive to use as the context.
        sub_path: Option<PathBuf>,
    },
    /// A git repository, object-store object, HTTP tarball or stdin,
    /// fetched into the build's working directory before the build.
    Remote {
        /// What to fetch.
        source: kiln_source::RemoteContext,
        /// `--git` options (used by git contexts).
        git: kiln_source::GitOptions,
        /// A directory inside the fetched context to use as the context.
        sub_path: Option<PathBuf>,
    },
}

/// Where the Dockerfile is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DockerfileLocation {
    /// A file on disk, found at resolution time.
    File(PathBuf),
    /// A path inside a context that is only available once unpacked.
    InContext(PathBuf),
}

/// A `KEY=VALUE` pair from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A build secret: an id and where its contents come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    /// The id RUN `--mount=type=secret,id=...` refers to.
    pub id: String,
    /// Where the contents come from.
    pub source: SecretSource,
}

/// An SSH agent socket a RUN step may use (`--ssh ID=SOCKET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshAgent {
    /// The id RUN `--mount=type=ssh,id=...` refers to (`default` unless given).
    pub id: String,
    /// The agent's unix socket.
    pub socket: PathBuf,
}

/// Where a secret's contents come from. Holds names, never the contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// A file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LayerOptions {
    /// The algorithm.
    pub compression: Compression,
    /// The level; `None` is the algorithm's default.
    pub level: Option<i32>,
}

/// Where the built image goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutputOptions {
    /// Image references to push to (and to tag the tarball with), in order.
    pub destinations: Vec<Destination>,
    /// Push to the destinations (false with `--no-push`).
    pub push: bool,
    /// Write a `docker load`-able tarball here.
    pub tar_path: Option<PathBuf>,
    /// Write an OCI image layout here.
    pub oci_layout_path: Option<PathBuf>,
    /// Write the image digest here.
    pub digest_file: Option<PathBuf>,
    /// Write `repository@digest` per destination here.
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write `repository:tag@digest` per destination here.
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// The manifest's media type family; `None` keeps the base image's.
    pub image_format: Option<ImageFormat>,
    /// Push the manifest under its digest only, tagging nothing (each
    /// platform's image of a multi-platform build, before the index).
    #[serde(skip)]
    pub by_digest: bool,
    /// Annotations on the image manifest.
    pub annotations: AnnotationOptions,
    /// Provenance and SBOM: attached to the image and written to files.
    pub attest: AttestOptions,
    /// Treat "tag is immutable" push errors as success
    /// (`--push-ignore-immutable-tag-errors`).
    pub push_ignore_immutable_tag_errors: bool,
}

/// The supply-chain statements a build writes. Without any of these set
/// the image is exactly what it would be without the feature.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttestOptions {
    /// Attach SLSA provenance in this mode (`--provenance`).
    #[serde(serialize_with = "serialize_provenance")]
    pub provenance: Option<ProvenanceRequest>,
    /// Write the provenance statement here (`--provenance-file`); in the
    /// mode `--provenance` gives, min without it.
    pub provenance_file: Option<PathBuf>,
    /// Attach an SPDX SBOM (`--sbom`).
    pub sbom: bool,
    /// Write the SBOM statement here (`--sbom-file`).
    pub sbom_file: Option<PathBuf>,
    /// How they reach registries (`--attestation-format`).
    pub format: AttestationFormat,
}

impl AttestOptions {
    /// Whether anything is attached to the image (an image index is pushed).
    pub fn attaches(&self) -> bool {
        self.provenance.is_some() || self.sbom
    }

    /// Whether the provenance is made at all (attached or written).
    pub fn wants_provenance(&self) -> bool {
        self.provenance.is_some() || self.provenance_file.is_some()
    }

    /// Whether the SBOM is made at all (attached or written).
    pub fn wants_sbom(&self) -> bool {
        self.sbom || self.sbom_file.is_some()
    }
}

fn serialize_provenance<S: Serializer>(
    p: &Option<ProvenanceRequest>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match p {
        None => serializer.serialize_none(),
        Some(p) => serializer.serialize_str(&format!("mode={}", p.mode)),
    }
}

/// An image reference to push to: as the user wrote it, and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The reference as given.
    pub as_given: String,
    /// The parsed, normalised reference.
    pub reference: Reference,
}

impl FromStr for Destination {
    type Err = kiln_oci::ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Destination {
            as_given: s.to_string(),
            reference: Reference::parse(s)?,
        })
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.reference.to_string())
    }
}

/// The layer cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheOptions {
    /// Use the cache (`--cache`).
    pub enabled: bool,
    /// Where cache entries live: explicit, or the first destination's repository + `/cache`.
    pub repo: Option<CacheRepo>,
    /// Push new cache entries (false with `--no-push-cache`).
    pub push: bool,
    /// A local cache directory (filled by a warmer).
    pub dir: PathBuf,
    /// Entries older than this are ignored.
    pub ttl: Duration,
    /// Cache COPY/ADD layers.
    pub copy_layers: bool,
    /// Cache RUN layers.
    pub run_layers: bool,
    /// Store cache layers compressed.
    pub compressed: bool,
}

/// Where cache entries live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheRepo {
    /// A registry repository.
    Registry(String),
    /// An OCI image layout on disk (`--cache-repo oci:PATH`).
    OciLayout(PathBuf),
}

impl CacheRepo {
    /// What a `--cache-repo` value names: `oci:PATH` is a layout, anything
    /// else a registry repository (`kiln build` and `kiln cache prune` read
    /// it alike).
    pub fn from_flag(value: &str) -> CacheRepo {
        match value.strip_prefix("oci:") {
            Some(path) => CacheRepo::OciLayout(PathBuf::from(path)),
            None => CacheRepo::Registry(value.to_string()),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogOptions {
    /// How much.
    pub verbosity: Verbosity,
    /// In which format.
    pub format: LogFormat,
    /// With timestamps.
    pub timestamp: bool,
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_parse() {
        assert_eq!(parse_layer_compression("ZSTD"), Ok(Compression::Zstd));
        let e = parse_layer_compression("lz4").unwrap_err();
        assert_eq!(
            e,
            KeywordError::Unknown {
                what: "compression",
                given: "lz4".into(),
                expected: &["gzip", "zstd"],
            }
        );
        assert_eq!(
            e.to_string(),
            "unknown compression \"lz4\" (expected one of: gzip, zstd)"
        );
        assert!(parse_layer_compression("xz").is_err());
        assert_eq!("warn".parse::<Verbosity>(), Ok(Verbosity::Warn));
    }
}
