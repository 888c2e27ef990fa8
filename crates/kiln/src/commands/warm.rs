//! `kiln warm`: Kaniko's warmer. Pulls base images into a cache directory
//! so builds (`--cache-dir`) can start from them without the registry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use kiln_build::cache::warm;
use kiln_oci::{Platform, Reference};

use super::cache::{client_for, failure_of, init_logging, LogFlags, RegistryFlags};
use crate::build_command::go_bool;
use crate::build_flags::defaults::DEFAULT_CACHE_DIR;
use crate::exit_code::{Exit, Failure};
use crate::go_duration;

/// `kiln warm` flags (Kaniko's warmer names).
#[derive(Debug, Args)]
pub struct WarmCommand {
    /// An image to cache. Repeat for several.
    #[arg(short = 'i', long, value_name = "REF", action = ArgAction::Append)]
    pub image: Vec<String>,

    /// A Dockerfile whose FROM (and COPY --from) images to cache.
    #[arg(short = 'd', long, value_name = "PATH")]
    pub dockerfile: Option<PathBuf>,

    /// A build arg for the Dockerfile's ARGs before FROM, K=V. Repeat for several.
    #[arg(long, value_name = "K=V", action = ArgAction::Append)]
    pub build_arg: Vec<String>,

    /// The cache directory.
    #[arg(short = 'c', long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,

    /// Re-pull images cached longer ago than this (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "336h", value_parser = go_duration::parse)]
    pub cache_ttl: Duration,

    /// Pull even when a fresh copy is cached.
    #[arg(short = 'f', long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub force: bool,

    /// The platform to cache, os/arch[/variant] (default: this machine's).
    #[arg(long, visible_alias = "customPlatform", value_name = "PLATFORM")]
    pub custom_platform: Option<String>,

    #[command(flatten)]
    pub registry: RegistryFlags,

    /// Remap a registry to others, FROM=TO[;FROM=TO...]. Repeat for several;
    /// env KANIKO_REGISTRY_MAP adds more.
    #[arg(long, value_name = "FROM=TO", action = ArgAction::Append)]
    pub registry_map: Vec<String>,

    /// When every mirror fails, do not fall back to the original registry.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_default_registry_fallback: bool,

    #[command(flatten)]
    pub log: LogFlags,
}

/// Runs `kiln warm`.
pub fn run(command: &WarmCommand) -> Result<(), Failure> {
    init_logging(&command.log);
    let platform = match &command.custom_platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| Failure::new(Exit::Usage, format!("--custom-platform {p:?}: {e}")))?,
        None => Platform::host(),
    };
    let images = images(command)?;
    if images.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "nothing to warm: give --image or --dockerfile",
        ));
    }
    let mut registry = command.registry.options_with_maps(&command.registry_map)?;
    registry.skip_default_registry_fallback = command.skip_default_registry_fallback;
    let client = client_for(registry)?;
    let handle = tokio::runtime::Handle::current();
    let warmed = handle
        .block_on(warm::warm(
            &client,
            &images,
            &command.cache_dir,
            &platform,
            command.cache_ttl,
            command.force,
        ))
        .map_err(failure_of)?;
    for w in warmed {
        let state = if w.was_fresh {
            "already cached"
        } else {
            "cached"
        };
        super::print(&format!("{} {state} as {}", w.reference, w.manifest_digest))?;
    }
    Ok(())
}

/// The `--image`s, then the Dockerfile's images, parsed.
fn images(command: &WarmCommand) -> Result<Vec<Reference>, Failure> {
    let mut names = command.image.clone();
    if let Some(path) = &command.dockerfile {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(Exit::Usage, format!("--dockerfile {}: {e}", path.display()))
        })?;
        let mut args = BTreeMap::new();
        for kv in &command.build_arg {
            match kv.split_once('=') {
                Some((k, v)) => args.insert(k.to_string(), v.to_string()),
                // Docker's `--build-arg NAME` takes the value from the environment.
                None => args.insert(kv.clone(), std::env::var(kv).unwrap_or_default()),
            };
        }
        let found = warm::dockerfile_images(&text, &args).map_err(|error| Failure {
            exit: Exit::Dockerfile,
            lines: error
                .problems
                .iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect(),
        })?;
        names.extend(found);
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
        .iter()
        .map(|n| {
            n.parse::<Reference>()
                .map_err(|e| Failure::new(Exit::Usage, format!("image {n:?}: {e}")))
        })
        .collect()
}
