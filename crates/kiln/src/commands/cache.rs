//! `kiln cache prune`: delete expired entries from a cache repository, and
//! the registry flags the cache and warm commands share.

use std::time::Duration;

use clap::{ArgAction, Args, Subcommand};
use kiln_build::cache;
use kiln_build::options::{CacheRepo, LogFormat, LogOptions, Verbosity};
use kiln_oci::auth::CredentialStore;
use kiln_oci::registry::{
    parse_client_cert, parse_host_path, parse_pull_routes, REGISTRY_MAP_ENV, REGISTRY_MIRROR_ENV,
};
use kiln_oci::{RegistryClient, RegistryOptions};

use crate::build_command::go_bool;
use crate::exit_code::{Exit, Failure};
use crate::{go_duration, logging};

/// `kiln cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Delete cache entries older than a duration (the registry must allow deletes).
    Prune(Box<PruneCommand>),
}

/// `kiln cache prune` flags.
#[derive(Debug, Args)]
pub struct PruneCommand {
    /// The cache repository (as given to `kiln build --cache-repo`), or oci:PATH.
    #[arg(long, value_name = "REPO")]
    pub cache_repo: String,

    /// Delete entries made longer ago than this (Go duration: 336h, 72h30m).
    #[arg(long, value_name = "DURATION", value_parser = go_duration::parse)]
    pub older_than: Duration,

    #[command(flatten)]
    pub registry: RegistryFlags,

    #[command(flatten)]
    pub log: LogFlags,
}

/// The logging flags, with `kiln build`'s names, meanings and defaults.
#[derive(Debug, Args)]
pub struct LogFlags {
    /// Log level: panic, fatal, error, warn, info, debug or trace.
    #[arg(short = 'v', long, value_name = "LEVEL", default_value = "info", value_parser = str::parse::<Verbosity>)]
    pub verbosity: Verbosity,

    /// Log format: text, color or json.
    #[arg(long, value_name = "FORMAT", default_value = "color", value_parser = str::parse::<LogFormat>)]
    pub log_format: LogFormat,

    /// Put a timestamp on every log line.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub log_timestamp: bool,
}

/// The registry flags that matter outside a build, with `kiln build`'s names.
#[derive(Debug, Args)]
pub struct RegistryFlags {
    /// Use plain HTTP (or unverified HTTPS) with the registry written to: the
    /// cache registry for kiln cache, the destinations for kiln push.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub insecure: bool,

    /// Pull over plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub insecure_pull: bool,

    /// Registry reached over plain HTTP. Repeat for several.
    #[arg(long, value_name = "HOST", action = ArgAction::Append)]
    pub insecure_registry: Vec<String>,

    /// Do not verify TLS certificates.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_tls_verify: bool,

    /// Pull without verifying TLS certificates.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_tls_verify_pull: bool,

    /// Registry whose TLS certificate is not verified. Repeat for several.
    #[arg(long, value_name = "HOST", action = ArgAction::Append)]
    pub skip_tls_verify_registry: Vec<String>,

    /// CA certificate for a registry, HOST=PATH. Repeat for several.
    #[arg(long, value_name = "HOST=PATH", action = ArgAction::Append)]
    pub registry_certificate: Vec<String>,

    /// Client certificate for mutual TLS with a registry, HOST=CERT,KEY. Repeat for several.
    #[arg(long, value_name = "HOST=CERT,KEY", action = ArgAction::Append)]
    pub registry_client_cert: Vec<String>,

    /// Mirror to pull Docker Hub images from, tried before docker.io. Repeat for several;
    /// env KANIKO_REGISTRY_MIRROR adds more (separated by ;).
    #[arg(long, value_name = "HOST", action = ArgAction::Append)]
    pub registry_mirror: Vec<String>,
}

impl RegistryFlags {
    /// A registry client for these flags, with credentials from the usual
    /// Docker config files.
    pub fn client(&self) -> Result<RegistryClient, Failure> {
        client_for(self.options()?)
    }

    /// The registry client's options for these flags.
    pub fn options(&self) -> Result<RegistryOptions, Failure> {
        self.options_with_maps(&[])
    }

    /// The registry client's options for these flags and `--registry-map`
    /// values, read with `kiln build`'s grammar: the maps, then
    /// `KANIKO_REGISTRY_MAP`, then the mirrors, then `KANIKO_REGISTRY_MIRROR`.
    pub fn options_with_maps(&self, registry_maps: &[String]) -> Result<RegistryOptions, Failure> {
        self.options_in(registry_maps, &|name| std::env::var(name).ok())
    }

    /// [`RegistryFlags::options_with_maps`] with the environment read through `env`.
    fn options_in(
        &self,
        registry_maps: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RegistryOptions, Failure> {
        let usage = |e: kiln_oci::registry::FlagError| Failure::new(Exit::Usage, e);
        let mut ca_certificates = std::collections::BTreeMap::new();
        for value in &self.registry_certificate {
            let (host, path) = parse_host_path(value).map_err(usage)?;
            ca_certificates.insert(host, path);
        }
        let mut client_certificates = std::collections::BTreeMap::new();
        for value in &self.registry_client_cert {
            let (host, cert) = parse_client_cert(value).map_err(usage)?;
            client_certificates.insert(host, cert);
        }
        let routes = parse_pull_routes(
            registry_maps,
            env(REGISTRY_MAP_ENV).as_deref(),
            &self.registry_mirror,
            env(REGISTRY_MIRROR_ENV).as_deref(),
        )
        .map_err(usage)?;
        let mut options = RegistryOptions {
            insecure: self.insecure,
            insecure_pull: self.insecure_pull,
            insecure_registries: self.insecure_registry.clone(),
            skip_tls_verify: self.skip_tls_verify,
            skip_tls_verify_pull: self.skip_tls_verify_pull,
            skip_tls_verify_registries: self.skip_tls_verify_registry.clone(),
            ca_certificates,
            client_certificates,
            // As the fork's warmer: every built-in credential source.
            credentials: CredentialStore::from_env()
                .with_builtin_helpers(kiln_oci::builtin_helpers::ALL.to_vec()),
            ..Default::default()
        };
        options.set_pull_routes(routes);
        Ok(options)
    }
}

/// A registry client, or a usage error for options it refuses.
pub(crate) fn client_for(options: RegistryOptions) -> Result<RegistryClient, Failure> {
    RegistryClient::new(options).map_err(|e| Failure::new(Exit::Usage, e))
}

/// Logs to stderr as `kiln build` does, with the same flags.
pub(crate) fn init_logging(flags: &LogFlags) {
    logging::init(&LogOptions {
        verbosity: flags.verbosity,
        format: flags.log_format,
        timestamp: flags.log_timestamp,
    });
}

/// Maps a cache error to an exit code: registry trouble is `Registry`.
pub(crate) fn failure_of(error: cache::CacheError) -> Failure {
    let exit = match &error {
        cache::CacheError::Registry { .. } | cache::CacheError::DeleteUnsupported { .. } => {
            Exit::Registry
        }
        cache::CacheError::InvalidRepo { .. } => Exit::Usage,
        _ => Exit::BuildFailed,
    };
    Failure::new(exit, error)
}

/// Runs `kiln cache ...`.
pub fn run(command: &CacheCommand) -> Result<(), Failure> {
    match command {
        CacheCommand::Prune(prune) => run_prune(prune),
    }
}

fn run_prune(command: &PruneCommand) -> Result<(), Failure> {
    init_logging(&command.log);
    let location =
        cache::CacheLocation::of(&CacheRepo::from_flag(&command.cache_repo)).map_err(failure_of)?;
    let settings = cache::StoreSettings {
        ttl: command.older_than,
        // Pruning stores nothing (deleting takes push access regardless).
        push: false,
        scratch: None,
    };
    let cache = cache::open_at(location, settings, || command.registry.client())?;
    let handle = tokio::runtime::Handle::current();
    let report = handle
        .block_on(cache.prune(command.older_than))
        .map_err(failure_of)?;
    super::print(&format!(
        "{}: examined {} entries, deleted {}, kept {}; skipped {} other tags",
        cache.describe(),
        report.examined,
        report.deleted,
        report.kept,
        report.skipped
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        registry: RegistryFlags,
    }

    fn flags(args: &[&str]) -> RegistryFlags {
        Flags::try_parse_from(std::iter::once("kiln").chain(args.iter().copied()))
            .unwrap()
            .registry
    }

    /// `kiln cache prune`, `kiln push` and `kiln warm` read the Kaniko
    /// variables as `kiln build` does, after the flags.
    #[test]
    fn the_kaniko_variables_add_mirrors_and_maps_after_the_flags() {
        let env = |name: &str| match name {
            "KANIKO_REGISTRY_MIRROR" => Some("m2.io;m3.io".to_string()),
            "KANIKO_REGISTRY_MAP" => Some("quay.io=q.local;index.docker.io=hub.local".to_string()),
            _ => None,
        };
        let options = flags(&["--registry-mirror", "m1.io"])
            .options_in(&["gcr.io=g.local".into()], &env)
            .unwrap();
        assert_eq!(options.mirrors, ["hub.local", "m1.io", "m2.io", "m3.io"]);
        assert_eq!(options.registry_maps["gcr.io"], ["g.local"]);
        assert_eq!(options.registry_maps["quay.io"], ["q.local"]);
        assert_eq!(options.registry_maps.len(), 2);

        let no_env = |_: &str| None;
        let options = flags(&["--registry-mirror", "m1.io"])
            .options_in(&[], &no_env)
            .unwrap();
        assert_eq!(options.mirrors, ["m1.io"]);
        assert!(options.registry_maps.is_empty());

        let bad_map = |name: &str| (name == "KANIKO_REGISTRY_MAP").then(|| "nothing".to_string());
        let failure = flags(&[]).options_in(&[], &bad_map).unwrap_err();
        assert_eq!(failure.exit, Exit::Usage);
    }
}
