//! The flags of the commands that push something made earlier (`kiln push`,
//! `kiln index create`): where it goes, how the registry is reached, and the
//! digest files written afterwards, read the same way by both.

use std::path::PathBuf;

use clap::{ArgAction, Args};
use kiln_build::options::Destination;
use kiln_build::output::digest_files;
use kiln_oci::auth::CredentialStore;
use kiln_oci::{Digest, RegistryClient};

use super::cache::{client_for, RegistryFlags};
use crate::exit_code::{Exit, Failure};

/// Destinations, registry access and digest files.
#[derive(Debug, Args)]
pub struct PushTargetFlags {
    /// Image reference to push to. Repeat for several.
    #[arg(short = 'd', long, value_name = "IMAGE", action = ArgAction::Append, required = true)]
    pub destination: Vec<String>,

    #[command(flatten)]
    pub registry: RegistryFlags,

    /// Number of retries for a failed push.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub push_retry: u32,

    /// Built-in credential sources (env, google, ecr, acr, gitlab), as for kiln build.
    #[arg(long, value_name = "NAME", action = ArgAction::Append)]
    pub credential_helpers: Option<Vec<String>>,

    /// Write the digest of what was pushed to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,

    /// Write IMAGE@DIGEST (one line per destination) to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,

    /// Write IMAGE:TAG@DIGEST (one line per destination) to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,
}

impl PushTargetFlags {
    /// The `--destination` references, parsed.
    pub fn destinations(&self) -> Result<Vec<Destination>, Failure> {
        self.destination
            .iter()
            .map(|d| {
                d.parse::<Destination>()
                    .map_err(|e| Failure::new(Exit::Usage, format!("--destination {d:?}: {e}")))
            })
            .collect()
    }

    /// A registry client with the registry flags, push retries and
    /// credentials (Docker's config, helpers and the built-in sources).
    pub fn client(&self) -> Result<RegistryClient, Failure> {
        let helpers =
            crate::build_flags::resolve_credential_helpers(self.credential_helpers.as_deref())
                .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        let mut options = self.registry.options()?;
        options.push_retries = self.push_retry;
        options.credentials = CredentialStore::from_env().with_builtin_helpers(helpers);
        client_for(options)
    }

    /// Writes the digest files asked for, as `kiln build` writes them.
    pub fn write_digest_files(
        &self,
        destinations: &[Destination],
        digest: &Digest,
    ) -> Result<(), Failure> {
        let written = |e: kiln_build::output::OutputError| Failure::new(Exit::BuildFailed, e);
        if let Some(path) = &self.digest_file {
            digest_files::write_digest(path, digest).map_err(written)?;
        }
        if let Some(path) = &self.image_name_with_digest_file {
            digest_files::write_name_with_digest(path, destinations, digest).map_err(written)?;
        }
        if let Some(path) = &self.image_name_tag_with_digest_file {
            digest_files::write_name_tag_with_digest(path, destinations, digest)
                .map_err(written)?;
        }
        Ok(())
    }
}
