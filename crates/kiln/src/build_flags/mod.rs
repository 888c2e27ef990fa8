//! Kaniko's and BuildKit's build flags as the user wrote them, and their resolution into
//! kiln-build's typed [`BuildOptions`].
//!
//! [`BuildFlags`] is what a user asked for, close to how it was written (strings for
//! references and `K=V` pairs, `Option` where "not given" matters); its [`Default`] holds
//! every default in one place, Kaniko's where kiln keeps them ([`defaults`]).
//! [`BuildFlags::resolve`] turns it into [`BuildOptions`]: contexts and Dockerfiles located,
//! pairs and specs split, the cache repository derived, Kaniko's environment variables read
//! and every conflict rejected with a clear message before any work starts.
//!
//! Environment variables (`--build-arg NAME` without a value, `KANIKO_NO_PUSH`,
//! `KANIKO_DIR`, ...) are read through an injected lookup so that resolution is testable
//! without touching the process environment. The test
//! `tests::a_filled_in_flag_set_resolves_to_options` shows the whole round.

mod context;
pub mod defaults;
mod env;
mod error;
mod registry;
mod specs;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use kiln_build::options::{
    AnnotationOptions, AttestOptions, AttestationFormat, BuildOptions, CacheOptions, CacheRepo,
    Compression, Destination, HostFilesystemFlags, ImageFormat, Isolation, LayerOptions, LogFormat,
    LogOptions, OutputOptions, ProvenanceRequest, RegistryOptions, Verbosity,
};
use kiln_oci::auth::{default_config_dirs, CredentialStore};
use kiln_oci::Platform;

use context::{resolve_context, resolve_dockerfile};
use defaults::{DEFAULT_CACHE_DIR, DEFAULT_CACHE_TTL, DEFAULT_CONTEXT, DEFAULT_DOCKERFILE};
use env::{env_bool, resolve_work_dir};
pub use env::{parse_go_bool, EnvLookup};
use error::invalid;
pub use error::OptionsError;
pub use registry::resolve_credential_helpers;
use registry::resolve_registry;
use specs::{parse_secret, parse_ssh, resolve_build_args, split_key_value};

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
    /// `--prefetch-bases`; on by default.
    pub prefetch_bases: bool,
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
            prefetch_bases: true,
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
                    .map_err(|source| OptionsError::InvalidDestination {
                        value: d.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let no_push = match self.no_push {
            Some(flag) => flag,
            None => env_bool(env, "KANIKO_NO_PUSH")?.unwrap_or(false),
        };
        check_outputs(&self, &destinations, no_push)?;

        let cache_repo = match &self.cache_repo {
            Some(repo) if repo.is_empty() => return Err(invalid("--cache-repo", repo, "empty")),
            Some(repo) => Some(CacheRepo::from_flag(repo)),
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
                    let p = p.trim().parse::<Platform>().map_err(|source| {
                        OptionsError::InvalidPlatform {
                            list: list.clone(),
                            source,
                        }
                    })?;
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
            prefetch_bases: self.prefetch_bases,
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
