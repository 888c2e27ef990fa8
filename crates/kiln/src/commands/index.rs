//! `kiln index create --destination R:tag SOURCE...`: joins images already
//! pushed (one per platform, by per-architecture jobs) into one image index
//! and pushes it to every destination, keeping each image's digest.

use clap::{Args, Subcommand};
use kiln_build::index::{self, IndexSource};
use kiln_build::options::ImageFormat;
use kiln_oci::Reference;

use super::cache::{init_logging, LogFlags};
use super::push_target::PushTargetFlags;
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

    #[command(flatten)]
    pub target: PushTargetFlags,

    /// oci (an OCI image index) or docker (a Docker manifest list). Default:
    /// docker when every image is a Docker manifest, else oci.
    #[arg(long, value_name = "FORMAT", value_parser = str::parse::<ImageFormat>)]
    pub image_format: Option<ImageFormat>,

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
    let destinations = command.target.destinations()?;
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
    let client = command.target.client()?;
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
    command
        .target
        .write_digest_files(&destinations, &joined.digest)?;
    Ok(())
}
