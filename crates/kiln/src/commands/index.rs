//! `kiln index create --destination R:tag SOURCE...`: joins images already
//! pushed (one per platform, by per-architecture jobs) into one image index
//! and pushes it to every destination, keeping each image's digest.

use clap::{ArgAction, Args, Subcommand};
use kiln_build::index::{self, IndexSource};
use kiln_build::options::{Destination, ImageFormat};
use kiln_build::output::digest_files;
use kiln_oci::auth::CredentialStore;
use kiln_oci::Reference;

use super::cache::{client_for, init_logging, LogFlags, RegistryFlags};
use crate::exit_code::{Exit, Failure};

/// `kiln index` subcommands.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Join images already pushed into one multi-platform index.
    Create(Box<IndexCreateCommand>),
}

/// `kiln index create` flags.
#[derive(Debug, Args)]
pub struct IndexCreateCommand {
    /// The images to join (registry references; an index gives all its entries).
    #[arg(value_name = "IMAGE", required = true)]
    pub sources: Vec<String>,

    /// Image reference to push the index to. Repeat for several.
    #[arg(short = 'd', long, value_name = "IMAGE", action = ArgAction::Append, required = true)]
    pub destination: Vec<String>,

    /// oci (an OCI image index) or docker (a Docker manifest list). Default:
    /// docker when every image is a Docker manifest, else oci.
    #[arg(long, value_name = "FORMAT", value_parser = str::parse::<ImageFormat>)]
    pub image_format: Option<ImageFormat>,

    #[command(flatten)]
    pub registry: RegistryFlags,

    /// Number of retries for a failed push.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub push_retry: u32,

    /// Built-in credential sources (env, google, ecr, acr, gitlab), as for kiln build.
    #[arg(long, value_name = "NAME", action = ArgAction::Append)]
    pub credential_helpers: Option<Vec<String>>,

    /// Write the digest of the index to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<std::path::PathBuf>,

    /// Write IMAGE@DIGEST (one line per destination) to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_with_digest_file: Option<std::path::PathBuf>,

    /// Write IMAGE:TAG@DIGEST (one line per destination) to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub log: LogFlags,
}

/// Runs `kiln index ...`.
pub fn run(command: &IndexCommand) -> Result<(), Failure> {
    match command {
        IndexCommand::Create(c) => create(c),
    }
}

fn create(command: &IndexCreateCommand) -> Result<(), Failure> {
    init_logging(&command.log);
    let usage = |m: String| Failure::new(Exit::Usage, m);
    let destinations = command
        .destination
        .iter()
        .map(|d| {
            d.parse::<Destination>()
                .map_err(|e| usage(format!("--destination {d:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sources = command
        .sources
        .iter()
        .map(|s| {
            Reference::parse(s)
                .map(|reference| IndexSource {
                    as_given: s.clone(),
                    reference,
                })
                .map_err(|e| usage(format!("source image {s:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let helpers =
        kiln_build::options::resolve_credential_helpers(command.credential_helpers.as_deref())
            .map_err(|e| usage(e.to_string()))?;
    let mut options = command.registry.options()?;
    options.push_retries = command.push_retry;
    options.credentials = CredentialStore::from_env().with_builtin_helpers(helpers);
    let client = client_for(options)?;
    // A request that cannot be met (two images for one platform) is the
    // caller's to fix; the rest is the registries'.
    let registry = |e: index::IndexError| {
        let exit = match e {
            index::IndexError::SamePlatform { .. }
            | index::IndexError::NotDocker { .. }
            | index::IndexError::NoSources => Exit::Usage,
            _ => Exit::Registry,
        };
        Failure::new(exit, e.to_string())
    };

    let handle = tokio::runtime::Handle::current();
    let joined = handle
        .block_on(index::join(&client, &sources, command.image_format))
        .map_err(registry)?;
    for e in &joined.entries {
        let platform = e
            .descriptor
            .platform
            .as_ref()
            .map_or_else(|| "no platform".to_string(), ToString::to_string);
        tracing::info!("{}: {} ({platform})", e.source, e.descriptor.digest);
    }
    let scratch = tempfile::Builder::new()
        .prefix("kiln-index-")
        .tempdir()
        .map_err(|e| Failure::new(Exit::BuildFailed, format!("creating a scratch dir: {e}")))?;
    for dest in &destinations {
        let report = handle
            .block_on(index::push(
                &client,
                &joined,
                &dest.reference,
                &dest.as_given,
                scratch.path(),
            ))
            .map_err(registry)?;
        super::print(&format!(
            "pushed {} as {} ({} images; blobs: {} already there, {} mounted, {} copied)",
            dest.as_given,
            joined.digest,
            joined.entries.len(),
            report.existing,
            report.mounted,
            report.copied
        ))?;
    }
    let written = |e: kiln_build::output::OutputError| Failure::new(Exit::BuildFailed, e);
    let digest = &joined.digest;
    if let Some(path) = &command.digest_file {
        digest_files::write_digest(path, digest).map_err(written)?;
    }
    if let Some(path) = &command.image_name_with_digest_file {
        digest_files::write_name_with_digest(path, &destinations, digest).map_err(written)?;
    }
    if let Some(path) = &command.image_name_tag_with_digest_file {
        digest_files::write_name_tag_with_digest(path, &destinations, digest).map_err(written)?;
    }
    Ok(())
}
