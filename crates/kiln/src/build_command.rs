//! `kiln build`: Kaniko's executor flags, with the same names, short forms and defaults.
//!
//! Booleans follow Go's flag package: `--cache` and `--cache=true|false|1|0|t|f|...` set
//! the value, and a separate word after a boolean flag is never taken as its value
//! (`--no-push foo` leaves `foo` alone). Durations take Go's syntax (`336h`, `1h30m`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use kiln_build::options::{
    parse_layer_compression, AttestationFormat, Compression, ImageFormat, Isolation, LogFormat,
    ProvenanceRequest, Verbosity,
};

use crate::build_flags::{parse_go_bool, BuildFlags};
use crate::go_duration;

const OUTPUT: &str = "Output";
const CACHE: &str = "Cache";
const REGISTRY: &str = "Registries";
const LOGGING: &str = "Logging";
const NO_EFFECT: &str = "Accepted for Kaniko compatibility (no effect in kiln)";

/// A boolean flag's value that Go's `strconv.ParseBool` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a boolean (use true/false, 1/0, t/f, TRUE/FALSE, True/False)")]
pub(crate) struct NotABoolean(pub(crate) String);

/// Parses a Go `strconv.ParseBool` value for a boolean flag. Every kiln
/// command's booleans use it, so `--flag=false` means the same everywhere.
pub(crate) fn go_bool(value: &str) -> Result<bool, NotABoolean> {
    parse_go_bool(value).ok_or_else(|| NotABoolean(value.to_string()))
}

/// Every flag of `kiln build`.
#[derive(Debug, Args)]
#[command(
    about = "Build an image from a Dockerfile and push it (Kaniko executor flags)",
    // As with Go's pflag, a flag given twice takes its last value.
    args_override_self = true
)]
pub struct BuildCommand {
    /// The build context: a directory, dir://DIR, tar://FILE.tar.gz, tar://stdin (or -),
    /// a git repository (git://, https://….git, ssh://, git@host:repo, with #ref[:subdir]),
    /// s3://, gs://, az:// or https://<account>.blob.core.windows.net/… objects, or an https:// tarball.
    #[arg(short = 'c', long, value_name = "PATH", default_value = "/workspace/")]
    pub context: String,

    /// Sub path within the given context to use as the context.
    #[arg(long, value_name = "PATH")]
    pub context_sub_path: Option<String>,

    /// Options for git contexts: branch=NAME,single-branch=BOOL,recurse-submodules=BOOL,insecure-skip-tls=BOOL.
    #[arg(long, value_name = "OPTIONS")]
    pub git: Option<String>,

    /// Name of a GCS bucket holding the context as a tarball (same as --context gs://BUCKET).
    #[arg(short = 'b', long, value_name = "BUCKET", hide = true)]
    pub bucket: Option<String>,

    /// Path to the Dockerfile; tried as given, then inside the context.
    #[arg(short = 'f', long, value_name = "PATH", default_value = "Dockerfile")]
    pub dockerfile: String,

    /// Image reference to push the result to. Repeat for several destinations.
    #[arg(short = 'd', long, value_name = "IMAGE", action = ArgAction::Append, help_heading = OUTPUT)]
    pub destination: Vec<String>,

    /// Do not push the image to the registry (also set by KANIKO_NO_PUSH=true).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = OUTPUT)]
    pub no_push: Option<bool>,

    /// Do not push new cache layers to the cache repository.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = CACHE)]
    pub no_push_cache: bool,

    /// Save the image as a `docker load` tarball at this path, tagged with the
    /// destinations (or, without one, as `kiln-build:latest`).
    #[arg(long, visible_alias = "tarPath", value_name = "PATH", help_heading = OUTPUT)]
    pub tar_path: Option<PathBuf>,

    /// Save the image as an OCI image layout at this path.
    #[arg(long, value_name = "PATH", help_heading = OUTPUT)]
    pub oci_layout_path: Option<PathBuf>,

    /// Write the digest of the built image to this file.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub digest_file: Option<PathBuf>,

    /// Write IMAGE@DIGEST (one line per destination) to this file.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub image_name_with_digest_file: Option<PathBuf>,

    /// Write IMAGE:TAG@DIGEST (one line per destination) to this file.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub image_name_tag_with_digest_file: Option<PathBuf>,

    /// ARG value for the build, KEY=VALUE; a bare KEY takes the value of the environment
    /// variable KEY. Repeat for several.
    #[arg(long, value_name = "KEY[=VALUE]", action = ArgAction::Append)]
    pub build_arg: Vec<String>,

    /// The stage to build and push (default: the last one). Several, as
    /// --target=a,b or repeated, build each; the first is pushed.
    #[arg(long, value_name = "STAGE", action = ArgAction::Append, value_delimiter = ',')]
    pub target: Vec<String>,

    /// Add a label to the image, KEY=VALUE. Repeat for several.
    #[arg(long, value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub label: Vec<String>,

    /// Add an annotation to the image manifest, KEY=VALUE. Repeat for several.
    /// The base image's annotations are dropped unless
    /// FF_KANIKO_NO_PROPAGATE_ANNOTATIONS=false.
    #[arg(long, value_name = "KEY=VALUE", action = ArgAction::Append, help_heading = OUTPUT)]
    pub annotation: Vec<String>,

    /// Manifest media types: docker (schema 2) or oci (default: the base image's).
    #[arg(long, value_name = "FORMAT", value_parser = str::parse::<ImageFormat>, help_heading = OUTPUT)]
    pub image_format: Option<ImageFormat>,

    /// Attach SLSA provenance v1 to the image, as buildx spells it: true, false,
    /// mode=min or mode=max (the steps and their cache origin), optionally
    /// ,builder-id=URI. Bare --provenance is mode=min.
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = str::parse::<ProvenanceRequest>, help_heading = OUTPUT)]
    pub provenance: Option<ProvenanceRequest>,

    /// Also write the provenance statement (in-toto JSON) to this file; without
    /// --provenance it is only written, not attached.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub provenance_file: Option<PathBuf>,

    /// Attach an SPDX 2.3 SBOM of the image's packages (dpkg, apk, Python, npm, Go binaries).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = OUTPUT)]
    pub sbom: bool,

    /// Also write the SBOM statement (in-toto JSON with the SPDX document) to
    /// this file; without --sbom it is only written, not attached.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub sbom_file: Option<PathBuf>,

    /// How --provenance and --sbom statements reach registries: index (BuildKit's
    /// attestation manifest in an image index the tag names) or referrers (OCI 1.1
    /// artifacts whose subject is the image; the referrers API, else the
    /// sha256-<hex> tag). Tarballs and OCI layouts always hold the index.
    #[arg(long, value_name = "FORMAT", default_value = "index", value_parser = str::parse::<AttestationFormat>, help_heading = OUTPUT)]
    pub attestation_format: AttestationFormat,

    /// Print the build plan (stages and steps) and stop: nothing is pulled,
    /// built, pushed or written. KANIKO_PRINT_PLAN=true prints it and builds.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub dryrun: bool,

    /// Build only the stages the target needs; =false builds every stage up to the
    /// target, as Kaniko does without this flag.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_unused_stages: bool,

    /// Platform to build for, os/arch[/variant] (default: the host's); --platform
    /// is BuildKit's name. Foreign RUN steps need QEMU in binfmt_misc.
    #[arg(long, visible_aliases = ["customPlatform", "platform"], value_name = "PLATFORM")]
    pub custom_platform: Option<String>,

    /// Strip timestamps out of the image so equal inputs give equal digests.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub reproducible: bool,

    /// Unpack the bases of later stages that RUN while the first stages run
    /// (not with the layer cache or an SBOM).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub prefetch_bases: bool,

    /// Layer compression: gzip or zstd.
    #[arg(long, value_name = "ALGORITHM", default_value = "gzip", value_parser = parse_layer_compression, help_heading = OUTPUT)]
    pub compression: Compression,

    /// Compression level: -1 for the default, gzip 0-9, zstd 1-22.
    #[arg(long, value_name = "LEVEL", default_value_t = -1, allow_negative_numbers = true, help_heading = OUTPUT)]
    pub compression_level: i32,

    /// How RUN steps are isolated: auto, namespace or chroot.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = str::parse::<Isolation>)]
    pub isolation: Isolation,

    /// Build secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR.
    /// Repeat for several. Contents are never logged.
    #[arg(long, value_name = "SPEC", action = ArgAction::Append)]
    pub secret: Vec<String>,

    /// SSH agent for RUN --mount=type=ssh: ID=SOCKET, or `default` alone for
    /// the agent in SSH_AUTH_SOCK. Repeat for several.
    #[arg(long, value_name = "ID[=SOCKET]", action = ArgAction::Append)]
    pub ssh: Vec<String>,

    /// Working directory for the build's private state (env KANIKO_DIR).
    /// Default: /kaniko when it exists and is writable, else $TMPDIR/kiln.
    #[arg(long, visible_alias = "kaniko-dir", value_name = "DIR")]
    pub kiln_dir: Option<PathBuf>,

    /// Use the layer cache.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = CACHE)]
    pub cache: bool,

    /// Repository for cache layers (default: the first destination's repository + /cache);
    /// oci:PATH keeps the cache in an OCI layout on disk.
    #[arg(long, value_name = "REPO", help_heading = CACHE)]
    pub cache_repo: Option<String>,

    /// Local directory holding cached base images.
    #[arg(long, value_name = "DIR", default_value = "/cache", help_heading = CACHE)]
    pub cache_dir: PathBuf,

    /// How long cache entries stay valid, as a Go duration (e.g. 6h, 1h30m).
    #[arg(long, value_name = "DURATION", default_value = "336h", value_parser = go_duration::parse, help_heading = CACHE)]
    pub cache_ttl: Duration,

    /// Cache COPY and ADD layers.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = CACHE)]
    pub cache_copy_layers: bool,

    /// Cache RUN layers.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool, action = ArgAction::Set, help_heading = CACHE)]
    pub cache_run_layers: bool,

    /// Keep cached layers compressed.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool, action = ArgAction::Set, help_heading = CACHE)]
    pub compressed_caching: bool,

    /// Number of retries for a failed push.
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = REGISTRY)]
    pub push_retry: u32,

    /// Number of retries for downloading a base image.
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = REGISTRY)]
    pub image_download_retry: u32,

    /// Push over plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = REGISTRY)]
    pub insecure: bool,

    /// Pull over plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = REGISTRY)]
    pub insecure_pull: bool,

    /// Registry reached over plain HTTP for push and pull. Repeat for several.
    #[arg(long, value_name = "HOST", action = ArgAction::Append, help_heading = REGISTRY)]
    pub insecure_registry: Vec<String>,

    /// Push without verifying TLS certificates.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = REGISTRY)]
    pub skip_tls_verify: bool,

    /// Pull without verifying TLS certificates.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = REGISTRY)]
    pub skip_tls_verify_pull: bool,

    /// Registry whose TLS certificate is not verified. Repeat for several.
    #[arg(long, value_name = "HOST", action = ArgAction::Append, help_heading = REGISTRY)]
    pub skip_tls_verify_registry: Vec<String>,

    /// Mirror to pull Docker Hub images from, tried in order before docker.io.
    /// Repeat for several; env KANIKO_REGISTRY_MIRROR adds more (separated by ;).
    #[arg(long, value_name = "HOST", action = ArgAction::Append, help_heading = REGISTRY)]
    pub registry_mirror: Vec<String>,

    /// When every mirror fails, do not fall back to the original registry.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = REGISTRY)]
    pub skip_default_registry_fallback: bool,

    /// Remap a registry to others, FROM=TO[;FROM=TO...]. Repeat for several;
    /// env KANIKO_REGISTRY_MAP adds more.
    #[arg(long, value_name = "FROM=TO", action = ArgAction::Append, help_heading = REGISTRY)]
    pub registry_map: Vec<String>,

    /// CA certificate for a registry, HOST=PATH. Repeat for several.
    #[arg(long, value_name = "HOST=PATH", action = ArgAction::Append, help_heading = REGISTRY)]
    pub registry_certificate: Vec<String>,

    /// Client certificate for mutual TLS with a registry, HOST=CERT,KEY. Repeat for several.
    #[arg(long, value_name = "HOST=CERT,KEY", action = ArgAction::Append, help_heading = REGISTRY)]
    pub registry_client_cert: Vec<String>,

    /// Built-in credential sources asked after the Docker config files: env,
    /// google, ecr, acr, gitlab. Repeat for several; default all; an empty
    /// value (--credential-helpers=) turns them off.
    #[arg(long, value_name = "NAME", action = ArgAction::Append, help_heading = REGISTRY)]
    pub credential_helpers: Option<Vec<String>>,

    /// Treat "tag is immutable" errors on push as success.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = REGISTRY)]
    pub push_ignore_immutable_tag_errors: bool,

    /// Log level: panic, fatal, error, warn, info, debug or trace.
    #[arg(short = 'v', long, value_name = "LEVEL", default_value = "info", value_parser = str::parse::<Verbosity>, help_heading = LOGGING)]
    pub verbosity: Verbosity,

    /// Log format: text, color or json.
    #[arg(long, value_name = "FORMAT", default_value = "color", value_parser = str::parse::<LogFormat>, help_heading = LOGGING)]
    pub log_format: LogFormat,

    /// Put a timestamp on every log line.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = LOGGING)]
    pub log_timestamp: bool,

    /// Leave the target's files in the root filesystem after the build: kiln
    /// never unpacks into its own root filesystem.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, help_heading = NO_EFFECT)]
    pub materialize: bool,

    /// Empty the root filesystem before the build (env KANIKO_PRE_CLEANUP):
    /// kiln builds in a private directory.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub pre_cleanup: Option<bool>,

    /// Restore the root filesystem between stages (env KANIKO_PRESERVE_CONTEXT):
    /// kiln never changes it.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub preserve_context: Option<bool>,

    #[command(flatten)]
    pub no_effect: NoEffectFlags,
}

/// Kaniko flags that describe how Kaniko snapshots its own root filesystem, or that
/// guard against running it outside a container. kiln builds in a private directory
/// and diffs overlay layers, so they do not apply; they are accepted so that existing
/// command lines keep working.
#[derive(Debug, Args)]
pub struct NoEffectFlags {
    /// Snapshot mode (full, redo, time): kiln diffs overlay layers instead.
    #[arg(long, visible_alias = "snapshotMode", value_name = "MODE", help_heading = NO_EFFECT)]
    pub snapshot_mode: Option<String>,

    /// Kaniko's experimental RUN implementation.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub use_new_run: Option<bool>,

    /// Take one snapshot at the end: kiln always makes one layer per step.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub single_snapshot: Option<bool>,

    /// Clean the filesystem at the end: kiln never writes outside its working directory.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub cleanup: Option<bool>,

    /// Build outside a container: kiln does not need one.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub force: Option<bool>,

    /// Leave /var/run out of snapshots (alias --whitelist-var-run): kiln never snapshots the host.
    #[arg(long, visible_alias = "whitelist-var-run", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub ignore_var_run: Option<bool>,

    /// Leave a path out of snapshots: kiln never snapshots the host.
    #[arg(long, value_name = "PATH", action = ArgAction::Append, help_heading = NO_EFFECT)]
    pub ignore_path: Vec<String>,

    /// Retries for unpacking the base image: kiln unpacks into its own layer store.
    #[arg(long, value_name = "N", help_heading = NO_EFFECT)]
    pub image_fs_extract_retry: Option<u32>,

    /// Skip the push permission check made before building.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub skip_push_permission_check: Option<bool>,

    /// Add metadata-only layers: kiln records metadata steps as empty-layer history.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool, help_heading = NO_EFFECT)]
    pub force_build_metadata: Option<bool>,
}

impl NoEffectFlags {
    /// The names of the no-effect flags that were given, for a notice in the log.
    pub fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        let mut note = |name, set: bool| {
            if set {
                given.push(name);
            }
        };
        note("--snapshot-mode", self.snapshot_mode.is_some());
        note("--use-new-run", self.use_new_run.is_some());
        note("--single-snapshot", self.single_snapshot.is_some());
        note("--cleanup", self.cleanup.is_some());
        note("--force", self.force.is_some());
        note("--ignore-var-run", self.ignore_var_run.is_some());
        note("--ignore-path", !self.ignore_path.is_empty());
        note(
            "--image-fs-extract-retry",
            self.image_fs_extract_retry.is_some(),
        );
        note(
            "--skip-push-permission-check",
            self.skip_push_permission_check.is_some(),
        );
        note(
            "--force-build-metadata",
            self.force_build_metadata.is_some(),
        );
        given
    }
}

impl BuildCommand {
    /// The flags as [`BuildFlags`], ready to resolve.
    pub fn to_flags(&self) -> BuildFlags {
        // The fork's `--target a,b`: the first is pushed, the others built too.
        let mut targets = self.target.iter().filter(|t| !t.is_empty()).cloned();
        // Kaniko's hidden --bucket names a gs:// context (or any URL given in full).
        let context = match &self.bucket {
            Some(bucket) if bucket.contains("://") => bucket.clone(),
            Some(bucket) => format!("gs://{bucket}"),
            None => self.context.clone(),
        };
        BuildFlags {
            context,
            context_sub_path: self.context_sub_path.clone(),
            git: self.git.clone(),
            dockerfile: self.dockerfile.clone(),
            destinations: self.destination.clone(),
            no_push: self.no_push,
            no_push_cache: self.no_push_cache,
            tar_path: self.tar_path.clone(),
            oci_layout_path: self.oci_layout_path.clone(),
            digest_file: self.digest_file.clone(),
            image_name_with_digest_file: self.image_name_with_digest_file.clone(),
            image_name_tag_with_digest_file: self.image_name_tag_with_digest_file.clone(),
            build_args: self.build_arg.clone(),
            target: targets.next(),
            extra_targets: targets.collect(),
            labels: self.label.clone(),
            skip_unused_stages: self.skip_unused_stages,
            custom_platform: self.custom_platform.clone(),
            reproducible: self.reproducible,
            prefetch_bases: self.prefetch_bases,
            compression: self.compression,
            compression_level: self.compression_level,
            compressed_caching: self.compressed_caching,
            push_retry: self.push_retry,
            image_download_retry: self.image_download_retry,
            insecure: self.insecure,
            insecure_pull: self.insecure_pull,
            insecure_registries: self.insecure_registry.clone(),
            skip_tls_verify: self.skip_tls_verify,
            skip_tls_verify_pull: self.skip_tls_verify_pull,
            skip_tls_verify_registries: self.skip_tls_verify_registry.clone(),
            registry_mirrors: self.registry_mirror.clone(),
            skip_default_registry_fallback: self.skip_default_registry_fallback,
            registry_maps: self.registry_map.clone(),
            registry_certificates: self.registry_certificate.clone(),
            registry_client_certs: self.registry_client_cert.clone(),
            push_ignore_immutable_tag_errors: self.push_ignore_immutable_tag_errors,
            kiln_dir: self.kiln_dir.clone(),
            cache: self.cache,
            cache_repo: self.cache_repo.clone(),
            cache_dir: self.cache_dir.clone(),
            cache_ttl: self.cache_ttl,
            cache_copy_layers: self.cache_copy_layers,
            cache_run_layers: self.cache_run_layers,
            secrets: self.secret.clone(),
            ssh: self.ssh.clone(),
            isolation: self.isolation,
            verbosity: self.verbosity,
            log_format: self.log_format,
            log_timestamp: self.log_timestamp,
            annotations: self.annotation.clone(),
            image_format: self.image_format,
            dryrun: self.dryrun,
            credential_helpers: self.credential_helpers.clone(),
            materialize: self.materialize,
            pre_cleanup: self.pre_cleanup,
            preserve_context: self.preserve_context,
            provenance: self.provenance.clone(),
            provenance_file: self.provenance_file.clone(),
            sbom: self.sbom,
            sbom_file: self.sbom_file.clone(),
            attestation_format: self.attestation_format,
        }
    }
}
