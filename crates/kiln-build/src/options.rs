//! Resolved build options: everything one build needs to know, as plain typed data.
//!
//! Two shapes live here. [`BuildFlags`] is what a user asked for, close to how it was
//! written (strings for references and `K=V` pairs, `Option` where "not given" matters);
//! its [`Default`] holds every default in one place. [`BuildFlags::resolve`] turns it into
//! [`BuildOptions`]: contexts and Dockerfiles located, pairs split, the cache repository
//! derived, and every conflict rejected with a clear message before any work starts.
//!
//! The command line fills a `BuildFlags`; a library user can do the same:
//!
//! ```
//! use kiln_build::options::{BuildFlags, CacheRepo};
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
//! let flags = BuildFlags {
//!     context: dir.path().display().to_string(),
//!     destinations: vec!["registry.example.com/team/app:1.2".into()],
//!     cache: true,
//!     ..BuildFlags::default()
//! };
//! let options = flags.resolve(&|_| None).unwrap();
//! assert_eq!(
//!     options.cache.repo,
//!     Some(CacheRepo::Registry("registry.example.com/team/app/cache".into()))
//! );
//! ```
//!
//! Environment variables (`--build-arg NAME` without a value, `KANIKO_NO_PUSH`,
//! `KANIKO_DIR`, ...) are read through an injected lookup so that resolution is testable
//! without touching the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use kiln_attest::provenance::ProvenanceRequest;
use kiln_oci::auth::{default_config_dirs, CredentialStore};
pub use kiln_oci::media::Compression;
pub use kiln_oci::registry::ClientCert;
use kiln_oci::registry::{
    parse_client_cert, parse_host_path, parse_pull_routes, FlagError, REGISTRY_MAP_ENV,
    REGISTRY_MIRROR_ENV,
};
pub use kiln_oci::RegistryOptions;
use kiln_oci::{Platform, Reference};
use serde::{Serialize, Serializer};

/// Looks up an environment variable by name; `None` when unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Kaniko's default build context.
pub const DEFAULT_CONTEXT: &str = "/workspace/";
/// Kaniko's default Dockerfile name, relative to the context.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// Kaniko's default local cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/cache";
/// Kaniko's working directory; used as kiln's when it exists and is writable.
pub const KANIKO_DIR: &str = "/kaniko";
/// Kaniko's default cache TTL: two weeks.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(336 * 3600);

/// A problem with the options, found before the build starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// Nothing to push to and pushing not disabled.
    #[error("you must provide --destination, or use --no-push")]
    NoDestination,
    /// A flag that names the pushed image was given without a destination.
    #[error("you must provide --destination when setting {flag}")]
    NeedsDestination {
        /// The flag that needs a destination.
        flag: &'static str,
    },
    /// Caching with `--no-push` has no destination to derive a cache repository from.
    #[error("if using cache with --no-push, specify cache repo with --cache-repo")]
    CacheRepoRequired,
    /// The context could not be used.
    #[error("build context {context:?}: {reason}")]
    InvalidContext {
        /// The context as given.
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// No Dockerfile where `--dockerfile` points.
    #[error("no Dockerfile at {path:?} (nor inside the build context); please provide a valid path to a Dockerfile within the build context with --dockerfile")]
    DockerfileNotFound {
        /// The path as given.
        path: String,
    },
    /// A URL was given as the Dockerfile.
    #[error("--dockerfile {path:?}: Dockerfiles fetched from a URL are not supported")]
    UnsupportedDockerfile {
        /// The path as given.
        path: String,
    },
    /// A flag value is malformed.
    #[error("{flag} {value:?}: {reason}")]
    InvalidValue {
        /// The flag.
        flag: &'static str,
        /// The value as given (never a secret's contents).
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// An environment variable holds a value kiln cannot use.
    #[error("environment variable {name}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A compression level outside the compression's range.
    #[error("--compression-level {level} is out of range for {compression} (use -1 for the default, or {min}..={max})")]
    CompressionLevel {
        /// The compression.
        compression: Compression,
        /// The level given.
        level: i32,
        /// Lowest accepted level.
        min: i32,
        /// Highest accepted level.
        max: i32,
    },
}

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

impl FromStr for AttestationFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "index" => Ok(AttestationFormat::Index),
            "referrers" => Ok(AttestationFormat::Referrers),
            other => Err(format!(
                "{other:?}: the attestation format is index or referrers"
            )),
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
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?} (expected one of: {})"),
                        s,
                        [$($text),+].join(", ")
                    )),
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
pub fn parse_layer_compression(s: &str) -> Result<Compression, String> {
    match s.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!(
            "unknown compression {s:?} (expected one of: gzip, zstd)"
        )),
    }
}

/// What the user asked for, before resolution. Every default lives in [`Default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFlags {
    /// `--context`: a directory, `dir://DIR` or `tar://FILE.tar.gz`.
    pub context: String,
    /// `--context-sub-path`: a directory inside the context to use as the context.
    pub context_sub_path: Option<String>,
    /// `--git`: Kaniko's options for git contexts (`branch=…,single-branch=…,…`).
    pub git: Option<String>,
    /// `--dockerfile`: a path, tried as given and then inside the context.
    pub dockerfile: String,
    /// `--destination`, in order.
    pub destinations: Vec<String>,
    /// `--no-push`; `None` when not given (then `KANIKO_NO_PUSH` decides).
    pub no_push: Option<bool>,
    /// `--no-push-cache`.
    pub no_push_cache: bool,
    /// `--tar-path`.
    pub tar_path: Option<PathBuf>,
    /// `--oci-layout-path`.
    pub oci_layout_path: Option<PathBuf>,
    /// `--digest-file`.
    pub digest_file: Option<PathBuf>,
    /// `--image-name-with-digest-file`.
    pub image_name_with_digest_file: Option<PathBuf>,
    /// `--image-name-tag-with-digest-file`.
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// `--build-arg`, `K=V` or a bare `K` (the environment's value).
    pub build_args: Vec<String>,
    /// `--target`: the stage pushed.
    pub target: Option<String>,
    /// Further `--target`s (the fork's `--target a,b`): built, not pushed.
    pub extra_targets: Vec<String>,
    /// `--label`, `K=V`.
    pub labels: Vec<String>,
    /// `--skip-unused-stages`; on by default in kiln (Kaniko's default is off).
    pub skip_unused_stages: bool,
    /// `--custom-platform`, `os/arch[/variant]`; the host when `None`.
    pub custom_platform: Option<String>,
    /// `--reproducible`.
    pub reproducible: bool,
    /// `--compression`.
    pub compression: Compression,
    /// `--compression-level`; -1 is the compression's default.
    pub compression_level: i32,
    /// `--compressed-caching`.
    pub compressed_caching: bool,
    /// `--push-retry`.
    pub push_retry: u32,
    /// `--image-download-retry`.
    pub image_download_retry: u32,
    /// `--insecure`.
    pub insecure: bool,
    /// `--insecure-pull`.
    pub insecure_pull: bool,
    /// `--insecure-registry`.
    pub insecure_registries: Vec<String>,
    /// `--skip-tls-verify`.
    pub skip_tls_verify: bool,
    /// `--skip-tls-verify-pull`.
    pub skip_tls_verify_pull: bool,
    /// `--skip-tls-verify-registry`.
    pub skip_tls_verify_registries: Vec<String>,
    /// `--registry-mirror` (then `KANIKO_REGISTRY_MIRROR`, `;`-separated).
    pub registry_mirrors: Vec<String>,
    /// `--skip-default-registry-fallback`.
    pub skip_default_registry_fallback: bool,
    /// `--registry-map`, `FROM=TO[;FROM=TO...]` (then `KANIKO_REGISTRY_MAP`).
    pub registry_maps: Vec<String>,
    /// `--registry-certificate`, `HOST=PATH`.
    pub registry_certificates: Vec<String>,
    /// `--registry-client-cert`, `HOST=CERT,KEY`.
    pub registry_client_certs: Vec<String>,
    /// `--push-ignore-immutable-tag-errors`.
    pub push_ignore_immutable_tag_errors: bool,
    /// `--kiln-dir` / `--kaniko-dir`; `None` means `KANIKO_DIR`, then the default.
    pub kiln_dir: Option<PathBuf>,
    /// `--cache`.
    pub cache: bool,
    /// `--cache-repo`; derived from the first destination when `None`.
    pub cache_repo: Option<String>,
    /// `--cache-dir`.
    pub cache_dir: PathBuf,
    /// `--cache-ttl`.
    pub cache_ttl: Duration,
    /// `--cache-copy-layers`.
    pub cache_copy_layers: bool,
    /// `--cache-run-layers`.
    pub cache_run_layers: bool,
    /// `--secret`, `id=ID,src=PATH` or `id=ID,env=VAR`.
    pub secrets: Vec<String>,
    /// `--ssh`, `ID[=SOCKET]` (`default` alone takes `SSH_AUTH_SOCK`).
    pub ssh: Vec<String>,
    /// `--isolation`.
    pub isolation: Isolation,
    /// `--verbosity`.
    pub verbosity: Verbosity,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--log-timestamp`.
    pub log_timestamp: bool,
    /// `--annotation`, `K=V`: manifest annotations.
    pub annotations: Vec<String>,
    /// `--image-format`; `None` keeps the base image's format.
    pub image_format: Option<ImageFormat>,
    /// `--dryrun`: print the plan and stop.
    pub dryrun: bool,
    /// `--credential-helpers`, in order; `None` selects them all, an empty
    /// value none.
    pub credential_helpers: Option<Vec<String>>,
    /// `--materialize` (no effect in kiln).
    pub materialize: bool,
    /// `--pre-cleanup`; `None` when not given (then `KANIKO_PRE_CLEANUP`).
    pub pre_cleanup: Option<bool>,
    /// `--preserve-context`; `None` when not given (then `KANIKO_PRESERVE_CONTEXT`).
    pub preserve_context: Option<bool>,
    /// `--provenance`, as buildx spells it; `None` when not given.
    pub provenance: Option<ProvenanceRequest>,
    /// `--provenance-file`: also write the provenance statement here.
    pub provenance_file: Option<PathBuf>,
    /// `--sbom`: attach an SPDX SBOM.
    pub sbom: bool,
    /// `--sbom-file`: also write the SBOM statement here.
    pub sbom_file: Option<PathBuf>,
    /// `--attestation-format`: how the statements reach registries.
    pub attestation_format: AttestationFormat,
}

impl Default for BuildFlags {
    fn default() -> Self {
        BuildFlags {
            context: DEFAULT_CONTEXT.to_string(),
            context_sub_path: None,
            git: None,
            dockerfile: DEFAULT_DOCKERFILE.to_string(),
            destinations: Vec::new(),
            no_push: None,
            no_push_cache: false,
            tar_path: None,
            oci_layout_path: None,
            digest_file: None,
            image_name_with_digest_file: None,
            image_name_tag_with_digest_file: None,
            build_args: Vec::new(),
            target: None,
            extra_targets: Vec::new(),
            labels: Vec::new(),
            // Stages the target does not need are skipped unless asked
            // otherwise, as BuildKit does.
            skip_unused_stages: true,
            custom_platform: None,
            reproducible: false,
            compression: Compression::Gzip,
            compression_level: -1,
            compressed_caching: true,
            push_retry: 0,
            image_download_retry: 0,
            insecure: false,
            insecure_pull: false,
            insecure_registries: Vec::new(),
            skip_tls_verify: false,
            skip_tls_verify_pull: false,
            skip_tls_verify_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            skip_default_registry_fallback: false,
            registry_maps: Vec::new(),
            registry_certificates: Vec::new(),
            registry_client_certs: Vec::new(),
            push_ignore_immutable_tag_errors: false,
            kiln_dir: None,
            cache: false,
            cache_repo: None,
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_copy_layers: false,
            cache_run_layers: true,
            secrets: Vec::new(),
            ssh: Vec::new(),
            isolation: Isolation::Auto,
            verbosity: Verbosity::Info,
            log_format: LogFormat::Color,
            log_timestamp: false,
            annotations: Vec::new(),
            image_format: None,
            dryrun: false,
            credential_helpers: None,
            materialize: false,
            pre_cleanup: None,
            preserve_context: None,
            provenance: None,
            provenance_file: None,
            sbom: false,
            sbom_file: None,
            attestation_format: AttestationFormat::Index,
        }
    }
}

/// Everything one build needs, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
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
    /// Print the plan before building (`KANIKO_PRINT_PLAN`).
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
    /// `--pre-cleanup` (or `KANIKO_PRE_CLEANUP`): empty the root filesystem first.
    pub pre_cleanup: bool,
    /// `--preserve-context` (or `KANIKO_PRESERVE_CONTEXT`): restore the root
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
    /// Keep the base image's manifest annotations. Off unless
    /// `FF_KANIKO_NO_PROPAGATE_ANNOTATIONS` is false, as in the fork and BuildKit.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

impl BuildFlags {
    /// Resolves and checks these flags. `env` looks up environment variables.
    ///
    /// # Errors
    /// The first problem found, as an [`OptionsError`] whose message names the flag.
    pub fn resolve(self, env: EnvLookup<'_>) -> Result<BuildOptions, OptionsError> {
        let destinations = self
            .destinations
            .iter()
            .map(|d| {
                d.parse::<Destination>()
                    .map_err(|e| invalid("--destination", d, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let no_push = match self.no_push {
            Some(flag) => flag,
            None => env_bool(env, "KANIKO_NO_PUSH")?.unwrap_or(false),
        };
        check_outputs(&self, &destinations, no_push)?;

        let cache_repo = match &self.cache_repo {
            Some(repo) if repo.is_empty() => return Err(invalid("--cache-repo", repo, "empty")),
            Some(repo) => Some(match repo.strip_prefix("oci:") {
                Some(path) => CacheRepo::OciLayout(PathBuf::from(path)),
                None => CacheRepo::Registry(repo.clone()),
            }),
            None => destinations
                .first()
                .map(|d| CacheRepo::Registry(format!("{}/cache", d.reference.name()))),
        };
        if self.cache && no_push && self.cache_repo.is_none() {
            return Err(OptionsError::CacheRepoRequired);
        }

        let level = check_compression_level(self.compression, self.compression_level)?;
        if self.image_format == Some(ImageFormat::Docker) && self.compression == Compression::Zstd {
            return Err(invalid(
                "--image-format",
                "docker",
                "Docker schema 2 has no zstd layer media type; use --image-format=oci \
                 or --compression=gzip",
            ));
        }
        let annotations = AnnotationOptions {
            added: self
                .annotations
                .iter()
                .map(|a| split_key_value("--annotation", a).map(|kv| (kv.key, kv.value)))
                .collect::<Result<_, _>>()?,
            inherit_base: !env_bool(env, "FF_KANIKO_NO_PROPAGATE_ANNOTATIONS")?.unwrap_or(true),
        };
        let credential_helpers = resolve_credential_helpers(self.credential_helpers.as_deref())?;
        let host_filesystem = HostFilesystemFlags {
            materialize: self.materialize,
            pre_cleanup: match self.pre_cleanup {
                Some(flag) => flag,
                None => env_bool(env, "KANIKO_PRE_CLEANUP")?.unwrap_or(false),
            },
            preserve_context: match self.preserve_context {
                Some(flag) => flag,
                None => env_bool(env, "KANIKO_PRESERVE_CONTEXT")?.unwrap_or(false),
            },
        };
        let print_plan = env_bool(env, "KANIKO_PRINT_PLAN")?.unwrap_or(false);
        let context = resolve_context(
            &self.context,
            self.context_sub_path.as_deref(),
            self.git.as_deref(),
        )?;
        let dockerfile = resolve_dockerfile(&self.dockerfile, &context)?;
        let platforms = match &self.custom_platform {
            Some(list) => {
                let mut platforms: Vec<Platform> = Vec::new();
                for p in list.split(',') {
                    let p = p
                        .trim()
                        .parse::<Platform>()
                        .map_err(|e| invalid("--custom-platform", list, e.to_string()))?;
                    // `linux/arm64` and `linux/arm64/v8` are one platform.
                    if !platforms.iter().any(|q| q.matches(&p) && p.matches(q)) {
                        platforms.push(p);
                    }
                }
                platforms
            }
            None => vec![Platform::host()],
        };
        if platforms.len() > 1 {
            let list = self.custom_platform.as_deref().unwrap_or_default();
            let refuse = |reason: &str| Err(invalid("--custom-platform", list, reason));
            if no_push || destinations.is_empty() {
                return refuse(
                    "several platforms are pushed as one index: give a --destination \
                     (or build once per platform with --no-push)",
                );
            }
        }
        let platform = platforms[0].clone();
        let platforms = if platforms.len() > 1 {
            platforms
        } else {
            Vec::new()
        };

        Ok(BuildOptions {
            context,
            dockerfile,
            target: self.target.filter(|t| !t.is_empty()),
            extra_targets: self
                .extra_targets
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect(),
            build_args: resolve_build_args(&self.build_args, env)?,
            labels: self
                .labels
                .iter()
                .map(|l| split_key_value("--label", l))
                .collect::<Result<_, _>>()?,
            skip_unused_stages: self.skip_unused_stages,
            platform,
            platforms,
            reproducible: self.reproducible,
            secrets: self
                .secrets
                .iter()
                .map(|s| parse_secret(s, env))
                .collect::<Result<_, _>>()?,
            ssh: self
                .ssh
                .iter()
                .map(|s| parse_ssh(s, env))
                .collect::<Result<_, _>>()?,
            isolation: self.isolation,
            work_dir: resolve_work_dir(self.kiln_dir, env),
            layers: LayerOptions {
                compression: self.compression,
                level,
            },
            output: OutputOptions {
                destinations,
                push: !no_push,
                tar_path: self.tar_path,
                oci_layout_path: self.oci_layout_path,
                digest_file: self.digest_file,
                image_name_with_digest_file: self.image_name_with_digest_file,
                image_name_tag_with_digest_file: self.image_name_tag_with_digest_file,
                image_format: self.image_format,
                by_digest: false,
                annotations,
                attest: AttestOptions {
                    provenance: self.provenance.filter(|p| p.enabled),
                    provenance_file: self.provenance_file,
                    sbom: self.sbom,
                    sbom_file: self.sbom_file,
                    format: self.attestation_format,
                },
                push_ignore_immutable_tag_errors: self.push_ignore_immutable_tag_errors,
            },
            cache: CacheOptions {
                enabled: self.cache,
                repo: cache_repo,
                push: !self.no_push_cache,
                dir: self.cache_dir,
                ttl: self.cache_ttl,
                copy_layers: self.cache_copy_layers,
                run_layers: self.cache_run_layers,
                compressed: self.compressed_caching,
            },
            registry: resolve_registry(
                RegistryOptions {
                    insecure: self.insecure,
                    insecure_pull: self.insecure_pull,
                    insecure_registries: self.insecure_registries,
                    skip_tls_verify: self.skip_tls_verify,
                    skip_tls_verify_pull: self.skip_tls_verify_pull,
                    skip_tls_verify_registries: self.skip_tls_verify_registries,
                    skip_default_registry_fallback: self.skip_default_registry_fallback,
                    push_retries: self.push_retry,
                    pull_retries: self.image_download_retry,
                    credentials: CredentialStore::from_config_dirs(default_config_dirs(
                        env("DOCKER_CONFIG").map(PathBuf::from).as_deref(),
                        env("HOME").map(PathBuf::from).as_deref(),
                    ))
                    .with_builtin_helpers(credential_helpers),
                    ..RegistryOptions::default()
                },
                &self.registry_mirrors,
                &self.registry_maps,
                &self.registry_certificates,
                &self.registry_client_certs,
                env,
            )?,
            log: LogOptions {
                verbosity: self.verbosity,
                format: self.log_format,
                timestamp: self.log_timestamp,
            },
            dryrun: self.dryrun,
            print_plan,
            host_filesystem,
        })
    }
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> OptionsError {
    OptionsError::InvalidValue {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Go's `strconv.ParseBool` spellings, which Kaniko accepts in its environment variables.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn env_bool(env: EnvLookup<'_>, name: &'static str) -> Result<Option<bool>, OptionsError> {
    match env(name) {
        None => Ok(None),
        Some(value) => match parse_go_bool(&value) {
            Some(b) => Ok(Some(b)),
            None => Err(OptionsError::InvalidEnv {
                name,
                value,
                reason: "expected true or false".to_string(),
            }),
        },
    }
}

/// `--credential-helpers`: every built-in source when not given; an empty
/// value (`--credential-helpers=`) turns them all off.
pub fn resolve_credential_helpers(
    given: Option<&[String]>,
) -> Result<Vec<kiln_oci::builtin_helpers::BuiltinHelper>, OptionsError> {
    let Some(given) = given else {
        return Ok(kiln_oci::builtin_helpers::ALL.to_vec());
    };
    let mut helpers = Vec::new();
    for name in given.iter().flat_map(|g| g.split(',')).map(str::trim) {
        if name.is_empty() {
            continue;
        }
        let helper = name
            .parse()
            .map_err(|reason: String| invalid("--credential-helpers", name, reason))?;
        if !helpers.contains(&helper) {
            helpers.push(helper);
        }
    }
    Ok(helpers)
}

fn check_outputs(
    flags: &BuildFlags,
    destinations: &[Destination],
    no_push: bool,
) -> Result<(), OptionsError> {
    if destinations.is_empty() {
        if !no_push {
            return Err(OptionsError::NoDestination);
        }
        // --tar-path names the image in the tarball from the destination
        // when there is one, and works without (as BuildKit's -o type=docker).
        let needs = [
            (
                "--image-name-with-digest-file",
                flags.image_name_with_digest_file.is_some(),
            ),
            (
                "--image-name-tag-with-digest-file",
                flags.image_name_tag_with_digest_file.is_some(),
            ),
        ];
        if let Some((flag, _)) = needs.iter().find(|(_, given)| *given) {
            return Err(OptionsError::NeedsDestination { flag });
        }
    }
    Ok(())
}

fn check_compression_level(
    compression: Compression,
    level: i32,
) -> Result<Option<i32>, OptionsError> {
    let Some((min, max)) = compression.level_range() else {
        return Err(invalid(
            "--compression",
            compression.name(),
            "layers are written with gzip or zstd",
        ));
    };
    match level {
        -1 => Ok(None),
        l if (min..=max).contains(&l) => Ok(Some(l)),
        l => Err(OptionsError::CompressionLevel {
            compression,
            level: l,
            min,
            max,
        }),
    }
}

/// Schemes Kaniko reads contexts from that kiln does not.
fn resolve_context(
    context: &str,
    sub_path: Option<&str>,
    git: Option<&str>,
) -> Result<ContextSource, OptionsError> {
    let bad = |reason: String| OptionsError::InvalidContext {
        context: kiln_source::spec::redact(context),
        reason,
    };
    if context.is_empty() {
        return Err(bad("empty; give a directory with --context".to_string()));
    }
    let sub_path = match sub_path.filter(|s| !s.is_empty()) {
        None => None,
        Some(sub) => {
            let path = PathBuf::from(sub);
            if path
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(invalid(
                    "--context-sub-path",
                    sub,
                    "must be a relative path inside the context (no `..`, not absolute)",
                ));
            }
            Some(path)
        }
    };
    let git = match git {
        Some(value) => kiln_source::GitOptions::parse(value)
            .map_err(|reason| invalid("--git", value, reason))?,
        None => kiln_source::GitOptions::default(),
    };
    if let Some(source) =
        kiln_source::RemoteContext::parse(context).map_err(|e| OptionsError::InvalidContext {
            context: e.context,
            reason: e.reason,
        })?
    {
        return Ok(ContextSource::Remote {
            source,
            git,
            sub_path,
        });
    }
    let (scheme, rest) = match context.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, context),
    };
    match scheme.as_deref() {
        None | Some("dir") => {
            let dir = match &sub_path {
                Some(sub) => Path::new(rest).join(sub),
                None => PathBuf::from(rest),
            };
            if !dir.is_dir() {
                return Err(bad(format!("{} is not a directory", dir.display())));
            }
            Ok(ContextSource::Dir(dir))
        }
        Some("tar") => {
            if !Path::new(rest).is_file() {
                return Err(bad(format!("{rest} is not a file")));
            }
            Ok(ContextSource::Tar {
                archive: PathBuf::from(rest),
                sub_path,
            })
        }
        Some(s) => Err(bad(format!("unknown scheme {s}://"))),
    }
}

fn resolve_dockerfile(
    dockerfile: &str,
    context: &ContextSource,
) -> Result<DockerfileLocation, OptionsError> {
    if dockerfile.starts_with("http://") || dockerfile.starts_with("https://") {
        return Err(OptionsError::UnsupportedDockerfile {
            path: dockerfile.to_string(),
        });
    }
    if dockerfile.is_empty() {
        return Err(OptionsError::DockerfileNotFound {
            path: String::new(),
        });
    }
    let as_given = Path::new(dockerfile);
    if as_given.is_file() {
        return Ok(DockerfileLocation::File(as_given.to_path_buf()));
    }
    match context {
        ContextSource::Dir(dir) if dir.join(as_given).is_file() => {
            Ok(DockerfileLocation::File(dir.join(as_given)))
        }
        ContextSource::Tar { .. } | ContextSource::Remote { .. } if as_given.is_relative() => {
            Ok(DockerfileLocation::InContext(as_given.to_path_buf()))
        }
        _ => Err(OptionsError::DockerfileNotFound {
            path: dockerfile.to_string(),
        }),
    }
}

fn split_key_value(flag: &'static str, pair: &str) -> Result<KeyValue, OptionsError> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        }),
        _ => Err(invalid(flag, pair, "expected KEY=VALUE")),
    }
}

fn resolve_build_args(args: &[String], env: EnvLookup<'_>) -> Result<Vec<KeyValue>, OptionsError> {
    args.iter()
        .map(|arg| {
            if arg.contains('=') {
                split_key_value("--build-arg", arg)
            } else if arg.is_empty() {
                Err(invalid("--build-arg", arg, "expected KEY=VALUE or KEY"))
            } else {
                // As Kaniko: a bare name takes the environment's value, empty when unset.
                Ok(KeyValue {
                    key: arg.clone(),
                    value: env(arg).unwrap_or_default(),
                })
            }
        })
        .collect()
}

/// `--ssh ID=SOCKET`, or `ID` alone for the agent in `SSH_AUTH_SOCK` (as
/// `docker build --ssh default`).
fn parse_ssh(spec: &str, env: EnvLookup<'_>) -> Result<SshAgent, OptionsError> {
    let (id, socket) = match spec.split_once('=') {
        Some((id, path)) => (id, PathBuf::from(path)),
        None => {
            let sock = env("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "--ssh",
                        spec,
                        "no socket given and SSH_AUTH_SOCK is not set",
                    )
                })?;
            (spec, PathBuf::from(sock))
        }
    };
    if id.is_empty() || id.contains(',') {
        return Err(invalid("--ssh", spec, "the id is empty or holds a comma"));
    }
    Ok(SshAgent {
        id: id.to_string(),
        socket,
    })
}

fn parse_secret(spec: &str, env: EnvLookup<'_>) -> Result<Secret, OptionsError> {
    let mut id = None;
    let mut source = None;
    for field in spec.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| invalid("--secret", spec, format!("{field:?} is not key=value")))?;
        if value.is_empty() {
            return Err(invalid("--secret", spec, format!("{key} is empty")));
        }
        let new_source = match key {
            "id" => {
                id = Some(value.to_string());
                continue;
            }
            "src" | "source" => SecretSource::File(PathBuf::from(value)),
            "env" => SecretSource::Env(value.to_string()),
            "type" if value == "file" || value == "env" => continue,
            _ => return Err(invalid("--secret", spec, format!("unknown field {key:?}"))),
        };
        if source.replace(new_source).is_some() {
            return Err(invalid("--secret", spec, "give one of src= or env="));
        }
    }
    let id = id.ok_or_else(|| invalid("--secret", spec, "missing id="))?;
    let source = source.ok_or_else(|| invalid("--secret", spec, "missing src= or env="))?;
    match &source {
        SecretSource::File(path) if !path.is_file() => {
            return Err(invalid(
                "--secret",
                spec,
                format!("{} is not a file", path.display()),
            ));
        }
        SecretSource::Env(name) if env(name).is_none() => {
            return Err(invalid(
                "--secret",
                spec,
                format!("environment variable {name} is not set"),
            ));
        }
        _ => {}
    }
    Ok(Secret { id, source })
}

/// `--kiln-dir`, then `KANIKO_DIR`, then `/kaniko` when writable, else `$TMPDIR/kiln`.
fn resolve_work_dir(flag: Option<PathBuf>, env: EnvLookup<'_>) -> PathBuf {
    if let Some(dir) = flag.filter(|d| !d.as_os_str().is_empty()) {
        return dir;
    }
    if let Some(dir) = env("KANIKO_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if is_writable_dir(Path::new(KANIKO_DIR)) {
        return PathBuf::from(KANIKO_DIR);
    }
    let tmp = env("TMPDIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/tmp".to_string());
    Path::new(&tmp).join("kiln")
}

fn is_writable_dir(dir: &Path) -> bool {
    // Creating (and at once removing) a file is the one check that tells the truth
    // under read-only mounts, ACLs and user namespaces alike.
    dir.is_dir() && tempfile::tempfile_in(dir).is_ok()
}

fn resolve_registry(
    mut registry: RegistryOptions,
    mirrors: &[String],
    maps: &[String],
    certificates: &[String],
    client_certs: &[String],
    env: EnvLookup<'_>,
) -> Result<RegistryOptions, OptionsError> {
    let flag_error = |e: FlagError| invalid(e.flag, &e.value, format!("expected {}", e.expected));
    registry.set_pull_routes(
        parse_pull_routes(
            maps,
            env(REGISTRY_MAP_ENV).as_deref(),
            mirrors,
            env(REGISTRY_MIRROR_ENV).as_deref(),
        )
        .map_err(flag_error)?,
    );
    for pair in certificates {
        let (host, path) = parse_host_path(pair).map_err(flag_error)?;
        registry.ca_certificates.insert(host, path);
    }
    for pair in client_certs {
        let (host, cert) = parse_client_cert(pair).map_err(flag_error)?;
        registry.client_certificates.insert(host, cert);
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::reference::DOCKER_HUB;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn context_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        dir
    }

    fn flags_in(dir: &tempfile::TempDir) -> BuildFlags {
        BuildFlags {
            context: dir.path().display().to_string(),
            destinations: vec!["localhost:5000/app:v1".into()],
            ..BuildFlags::default()
        }
    }

    #[test]
    fn defaults_match_kaniko() {
        let d = BuildFlags::default();
        assert_eq!(d.context, "/workspace/");
        assert_eq!(d.dockerfile, "Dockerfile");
        assert_eq!(d.cache_dir, PathBuf::from("/cache"));
        assert_eq!(d.cache_ttl, Duration::from_secs(14 * 24 * 3600));
        assert!(d.cache_run_layers && !d.cache_copy_layers && d.compressed_caching);
        assert_eq!(
            (d.compression, d.compression_level),
            (Compression::Gzip, -1)
        );
        assert_eq!(
            (d.verbosity, d.log_format),
            (Verbosity::Info, LogFormat::Color)
        );
        // The one deliberate difference: unused stages are skipped by default.
        assert!(d.skip_unused_stages);
    }

    #[test]
    fn destination_or_no_push_is_required() {
        let dir = context_dir();
        let flags = BuildFlags {
            destinations: vec![],
            ..flags_in(&dir)
        };
        assert_eq!(
            flags.clone().resolve(&no_env),
            Err(OptionsError::NoDestination)
        );
        let ok = BuildFlags {
            no_push: Some(true),
            ..flags
        }
        .resolve(&no_env)
        .unwrap();
        assert!(!ok.output.push);
    }

    #[test]
    fn kaniko_no_push_env_applies_unless_the_flag_is_given() {
        let dir = context_dir();
        let flags = BuildFlags {
            destinations: vec![],
            ..flags_in(&dir)
        };
        let env = |k: &str| (k == "KANIKO_NO_PUSH").then(|| "TRUE".to_string());
        assert!(!flags.clone().resolve(&env).unwrap().output.push);
        let bad = |k: &str| (k == "KANIKO_NO_PUSH").then(|| "yes".to_string());
        assert!(matches!(
            flags.clone().resolve(&bad),
            Err(OptionsError::InvalidEnv { .. })
        ));
        let explicit = BuildFlags {
            no_push: Some(false),
            ..flags
        };
        assert_eq!(explicit.resolve(&env), Err(OptionsError::NoDestination));
    }

    #[test]
    fn name_files_need_a_destination_and_a_tar_path_does_not() {
        let dir = context_dir();
        let base = BuildFlags {
            destinations: vec![],
            no_push: Some(true),
            ..flags_in(&dir)
        };
        let tar = BuildFlags {
            tar_path: Some("out.tar".into()),
            ..base.clone()
        };
        // As BuildKit's `-o type=docker`: the tarball needs no name to push to.
        let resolved = tar.resolve(&no_env).unwrap();
        assert_eq!(resolved.output.tar_path, Some(PathBuf::from("out.tar")));
        let names = BuildFlags {
            image_name_with_digest_file: Some("f".into()),
            ..base.clone()
        };
        assert!(matches!(
            names.resolve(&no_env),
            Err(OptionsError::NeedsDestination { .. })
        ));
        let digest = BuildFlags {
            digest_file: Some("d".into()),
            ..base
        };
        assert!(digest.resolve(&no_env).is_ok());
    }

    #[test]
    fn fork_flags_resolve_with_the_forks_defaults_and_environment() {
        use kiln_oci::builtin_helpers::{BuiltinHelper, ALL};
        let dir = context_dir();
        let d = flags_in(&dir).resolve(&no_env).unwrap();
        assert_eq!(d.registry.credentials.builtin_helpers(), ALL);
        assert!(!d.output.annotations.inherit_base);
        assert!(d.output.annotations.added.is_empty());
        assert_eq!(d.output.image_format, None);
        assert!(!d.dryrun && !d.print_plan);
        assert_eq!(d.host_filesystem, HostFilesystemFlags::default());
        assert!(d.host_filesystem.notices().is_empty());

        let given = BuildFlags {
            annotations: vec!["a=1".into(), "b=x=y".into(), "a=2".into()],
            image_format: Some(ImageFormat::Oci),
            credential_helpers: Some(vec!["gitlab".into(), "env,gitlab".into()]),
            materialize: true,
            ..flags_in(&dir)
        };
        let env = |name: &str| match name {
            "FF_KANIKO_NO_PROPAGATE_ANNOTATIONS" => Some("0".to_string()),
            "KANIKO_PRE_CLEANUP" | "KANIKO_PRESERVE_CONTEXT" | "KANIKO_PRINT_PLAN" => {
                Some("true".to_string())
            }
            _ => None,
        };
        let r = given.resolve(&env).unwrap();
        assert_eq!(
            r.output.annotations.added,
            BTreeMap::from([("a".into(), "2".into()), ("b".into(), "x=y".into())])
        );
        assert!(r.output.annotations.inherit_base);
        assert_eq!(
            r.registry.credentials.builtin_helpers(),
            [BuiltinHelper::Gitlab, BuiltinHelper::Env]
        );
        assert!(r.print_plan);
        assert_eq!(r.host_filesystem.notices().len(), 3);

        // An empty value turns every helper off; a flag beats its variable.
        let off = BuildFlags {
            credential_helpers: Some(vec![String::new()]),
            pre_cleanup: Some(false),
            ..flags_in(&dir)
        }
        .resolve(&env)
        .unwrap();
        assert!(off.registry.credentials.builtin_helpers().is_empty());
        assert!(!off.host_filesystem.pre_cleanup && off.host_filesystem.preserve_context);
    }

    #[test]
    fn fork_flags_reject_bad_values_naming_them() {
        let dir = context_dir();
        let err = |flags: BuildFlags| flags.resolve(&no_env).unwrap_err().to_string();
        let bad_helper = err(BuildFlags {
            credential_helpers: Some(vec!["ecr".into(), "vault".into()]),
            ..flags_in(&dir)
        });
        assert!(
            bad_helper.starts_with("--credential-helpers \"vault\""),
            "{bad_helper}"
        );
        let bad_annotation = err(BuildFlags {
            annotations: vec!["novalue".into()],
            ..flags_in(&dir)
        });
        assert!(
            bad_annotation.contains("--annotation \"novalue\""),
            "{bad_annotation}"
        );
        let zstd_docker = err(BuildFlags {
            image_format: Some(ImageFormat::Docker),
            compression: Compression::Zstd,
            ..flags_in(&dir)
        });
        assert!(zstd_docker.contains("zstd"), "{zstd_docker}");
        let bad_env = BuildFlags { ..flags_in(&dir) }
            .resolve(&|n: &str| (n == "KANIKO_PRE_CLEANUP").then(|| "maybe".to_string()))
            .unwrap_err()
            .to_string();
        assert!(bad_env.contains("KANIKO_PRE_CLEANUP"), "{bad_env}");
        assert_eq!("OCI".parse::<ImageFormat>(), Ok(ImageFormat::Oci));
        assert!("v2".parse::<ImageFormat>().is_err());
    }

    #[test]
    fn several_platforms_need_a_destination_and_no_single_image_output() {
        let dir = context_dir();
        let two = || BuildFlags {
            custom_platform: Some("linux/amd64, linux/arm64,linux/amd64,linux/arm64/v8".into()),
            ..flags_in(&dir)
        };
        let both = two().resolve(&no_env).unwrap();
        assert_eq!(both.platform.to_string(), "linux/amd64");
        let names: Vec<String> = both.platforms.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64"]);
        let err = |flags: BuildFlags| flags.resolve(&no_env).unwrap_err().to_string();
        let no_push = err(BuildFlags {
            no_push: Some(true),
            ..two()
        });
        assert!(no_push.contains("give a --destination"), "{no_push}");
        // Statements are attached to each platform's image.
        let sbom = BuildFlags {
            sbom: true,
            ..two()
        }
        .resolve(&no_env)
        .unwrap();
        assert!(sbom.output.attest.sbom && sbom.platforms.len() == 2);
        let one = BuildFlags {
            custom_platform: Some("linux/arm64".into()),
            ..flags_in(&dir)
        }
        .resolve(&no_env)
        .unwrap();
        assert_eq!(one.platform.to_string(), "linux/arm64");
        assert!(one.platforms.is_empty());
    }

    #[test]
    fn cache_repo_is_derived_from_the_first_destination() {
        let dir = context_dir();
        let cases = [
            ("localhost:5000/app:v1", "localhost:5000/app/cache"),
            (
                "registry.example.com/team/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "registry.example.com/team/app/cache",
            ),
            ("ubuntu", "docker.io/library/ubuntu/cache"),
            ("me/app:1", "docker.io/me/app/cache"),
            ("index.docker.io/me/app", "docker.io/me/app/cache"),
        ];
        for (dest, repo) in cases {
            let flags = BuildFlags {
                destinations: vec![dest.into(), "other.io/x:y".into()],
                cache: true,
                ..flags_in(&dir)
            };
            let options = flags.resolve(&no_env).unwrap();
            assert_eq!(
                options.cache.repo,
                Some(CacheRepo::Registry(repo.into())),
                "{dest}"
            );
        }
    }

    #[test]
    fn cache_with_no_push_needs_a_cache_repo() {
        let dir = context_dir();
        let flags = BuildFlags {
            no_push: Some(true),
            cache: true,
            ..flags_in(&dir)
        };
        assert_eq!(
            flags.clone().resolve(&no_env),
            Err(OptionsError::CacheRepoRequired)
        );
        let with_repo = BuildFlags {
            cache_repo: Some("oci:/tmp/c".into()),
            ..flags
        };
        let options = with_repo.resolve(&no_env).unwrap();
        assert_eq!(
            options.cache.repo,
            Some(CacheRepo::OciLayout("/tmp/c".into()))
        );
    }

    #[test]
    fn bare_build_arg_takes_the_environment_value() {
        let dir = context_dir();
        let env = |k: &str| (k == "FROM_ENV").then(|| "v a=l".to_string());
        let flags = BuildFlags {
            build_args: vec![
                "A=1".into(),
                "FROM_ENV".into(),
                "UNSET".into(),
                "B=x=y".into(),
            ],
            ..flags_in(&dir)
        };
        let args = flags.resolve(&env).unwrap().build_args;
        let pairs: Vec<(&str, &str)> = args
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("A", "1"),
                ("FROM_ENV", "v a=l"),
                ("UNSET", ""),
                ("B", "x=y")
            ]
        );
    }

    #[test]
    fn compression_level_is_checked_per_compression() {
        let dir = context_dir();
        let with = |compression, level| {
            BuildFlags {
                compression,
                compression_level: level,
                ..flags_in(&dir)
            }
            .resolve(&no_env)
        };
        assert_eq!(with(Compression::Gzip, 9).unwrap().layers.level, Some(9));
        assert!(matches!(
            with(Compression::Gzip, 10),
            Err(OptionsError::CompressionLevel { .. })
        ));
        assert_eq!(with(Compression::Zstd, 19).unwrap().layers.level, Some(19));
        assert!(with(Compression::Zstd, 0).is_err());
        assert!(matches!(
            with(Compression::Xz, -1),
            Err(OptionsError::InvalidValue { .. })
        ));
        assert_eq!(with(Compression::Zstd, -1).unwrap().layers.level, None);
    }

    #[test]
    fn remote_contexts_are_recognised_and_credentials_hidden() {
        for context in [
            "git://github.com/x/y.git#main",
            "s3://bucket/ctx.tgz",
            "gs://b/c",
            "https://x/c.tar.gz",
            "tar://stdin",
        ] {
            let flags = BuildFlags {
                context: context.into(),
                no_push: Some(true),
                git: Some("branch=dev,recurse-submodules=true".into()),
                ..Default::default()
            };
            let options = flags.resolve(&no_env).unwrap();
            match &options.context {
                ContextSource::Remote { git, .. } => {
                    assert_eq!(git.branch.as_deref(), Some("dev"));
                    assert!(git.recurse_submodules);
                }
                other => panic!("{context}: {other:?}"),
            }
            assert_eq!(
                options.dockerfile,
                DockerfileLocation::InContext("Dockerfile".into())
            );
        }
        let bad_git = BuildFlags {
            context: "git://h/r.git".into(),
            no_push: Some(true),
            git: Some("depth=1".into()),
            ..Default::default()
        };
        let err = bad_git.resolve(&no_env).unwrap_err();
        assert!(err.to_string().contains("--git"), "{err}");
        let secret = BuildFlags {
            context: "https://user:hunter2@h/r.git#main:../up".into(),
            no_push: Some(true),
            ..Default::default()
        };
        let err = secret.resolve(&no_env).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("relative path"), "{err}");
    }

    #[test]
    fn contexts_sub_paths_and_dockerfiles_are_located() {
        let dir = context_dir();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/Other"), "FROM scratch\n").unwrap();
        let flags = BuildFlags {
            context: format!("dir://{}", dir.path().display()),
            context_sub_path: Some("sub".into()),
            dockerfile: "Other".into(),
            ..flags_in(&dir)
        };
        let options = flags.resolve(&no_env).unwrap();
        assert_eq!(options.context, ContextSource::Dir(dir.path().join("sub")));
        assert_eq!(
            options.dockerfile,
            DockerfileLocation::File(dir.path().join("sub/Other"))
        );

        let missing = BuildFlags {
            dockerfile: "Nope".into(),
            ..flags_in(&dir)
        };
        assert!(matches!(
            missing.resolve(&no_env),
            Err(OptionsError::DockerfileNotFound { .. })
        ));
        let escape = BuildFlags {
            context_sub_path: Some("../x".into()),
            ..flags_in(&dir)
        };
        assert!(matches!(
            escape.resolve(&no_env),
            Err(OptionsError::InvalidValue { .. })
        ));

        let archive = dir.path().join("ctx.tar.gz");
        std::fs::write(&archive, b"").unwrap();
        let tar = BuildFlags {
            context: format!("tar://{}", archive.display()),
            ..flags_in(&dir)
        };
        let options = tar.resolve(&no_env).unwrap();
        assert_eq!(
            options.dockerfile,
            DockerfileLocation::InContext("Dockerfile".into())
        );
    }

    #[test]
    fn registry_settings_are_collected() {
        let dir = context_dir();
        let env = |k: &str| match k {
            "KANIKO_REGISTRY_MIRROR" => Some("m2.io;m3.io".to_string()),
            "KANIKO_REGISTRY_MAP" => Some("quay.io=q.local".to_string()),
            _ => None,
        };
        let flags = BuildFlags {
            registry_mirrors: vec!["m1.io".into()],
            registry_maps: vec!["gcr.io=g1.local;gcr.io=g2.local".into()],
            registry_certificates: vec!["r.io=/certs/ca.pem".into()],
            registry_client_certs: vec!["r.io=/c.pem,/k.pem".into()],
            insecure_registries: vec!["plain.local".into()],
            ..flags_in(&dir)
        };
        let registry = flags.resolve(&env).unwrap().registry;
        assert_eq!(registry.mirrors, ["m1.io", "m2.io", "m3.io"]);
        assert!(!registry.registry_maps.contains_key(DOCKER_HUB));
        assert_eq!(registry.registry_maps["gcr.io"], ["g1.local", "g2.local"]);
        assert_eq!(registry.registry_maps["quay.io"], ["q.local"]);
        assert_eq!(
            registry.ca_certificates["r.io"],
            PathBuf::from("/certs/ca.pem")
        );
        assert_eq!(
            registry.client_certificates["r.io"].key,
            PathBuf::from("/k.pem")
        );
        assert_eq!(registry.insecure_registries, ["plain.local"]);
        assert!(!registry.insecure && !registry.insecure_pull);

        let bad = BuildFlags {
            registry_client_certs: vec!["r.io=/c.pem".into()],
            ..flags_in(&dir)
        };
        assert!(bad.resolve(&no_env).is_err());
    }

    #[test]
    fn secrets_keep_names_not_contents() {
        let dir = context_dir();
        let env = |k: &str| (k == "TOKEN").then(|| "s3cr3t".to_string());
        let file = dir.path().join("Dockerfile").display().to_string();
        let flags = BuildFlags {
            secrets: vec!["id=tok,env=TOKEN".into(), format!("id=f,src={file}")],
            ..flags_in(&dir)
        };
        let options = flags.resolve(&env).unwrap();
        assert_eq!(options.secrets[0].source, SecretSource::Env("TOKEN".into()));
        assert!(!format!("{options:?}").contains("s3cr3t"));
        let missing = BuildFlags {
            secrets: vec!["id=x,env=UNSET".into()],
            ..flags_in(&dir)
        };
        assert!(missing.resolve(&env).is_err());
        let no_id = BuildFlags {
            secrets: vec!["env=TOKEN".into()],
            ..flags_in(&dir)
        };
        assert!(no_id.resolve(&env).is_err());
    }

    #[test]
    fn work_dir_prefers_flag_then_env() {
        let env = |k: &str| match k {
            "KANIKO_DIR" => Some("/from/env".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve_work_dir(Some("/flag".into()), &env),
            PathBuf::from("/flag")
        );
        assert_eq!(resolve_work_dir(None, &env), PathBuf::from("/from/env"));
        let tmp = |k: &str| (k == "TMPDIR").then(|| "/t".to_string());
        let dir = resolve_work_dir(None, &tmp);
        assert!(
            dir == Path::new("/kaniko") || dir == Path::new("/t/kiln"),
            "{dir:?}"
        );
    }

    #[test]
    fn keywords_parse() {
        assert_eq!(parse_layer_compression("ZSTD"), Ok(Compression::Zstd));
        assert!(parse_layer_compression("lz4")
            .unwrap_err()
            .contains("gzip, zstd"));
        assert!(parse_layer_compression("xz").is_err());
        assert_eq!("warn".parse::<Verbosity>(), Ok(Verbosity::Warn));
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", "2"] {
            assert_eq!(parse_go_bool(bad), None, "{bad}");
        }
    }
}
