//! `kiln push PATH --destination IMAGE` (the Kaniko fork's `executor push`):
//! pushes an image built earlier with `--tar-path` or `--oci-layout-path`
//! (or saved by `docker save`) without building it again, e.g. after a
//! scanner has read the tarball. Blobs first, the manifest last, to every
//! destination; the digest files are written as `kiln build` writes them.

use std::path::PathBuf;

use clap::Args;
use kiln_oci::{Access, BlobSource, Digest, PushOutcome};

use super::artifact;
use super::cache::{init_logging, LogFlags};
use super::push_target::PushTargetFlags;
use crate::build_command::go_bool;
use crate::exit_code::{Exit, Failure};

/// `kiln push` flags (the fork's `executor push`).
#[derive(Debug, Args)]
pub struct PushCommand {
    /// The image: a tarball from --tar-path or docker save, or an OCI layout directory.
    pub path: PathBuf,

    #[command(flatten)]
    pub target: PushTargetFlags,

    /// Accepted for Kaniko compatibility (kiln checks nothing before pushing).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub skip_push_permission_check: Option<bool>,

    #[command(flatten)]
    pub log: LogFlags,
}

/// Runs `kiln push`.
pub fn run(command: &PushCommand) -> Result<(), Failure> {
    init_logging(&command.log);
    let usage = |m: String| Failure::new(Exit::Usage, m);
    let destinations = command.target.destinations()?;
    let client = command.target.client()?;
    let image = artifact::load(&command.path).map_err(|e| usage(format!("push: {e}")))?;
    let digest = image.digest();
    tracing::info!(
        "{}: image {digest} ({} blobs)",
        command.path.display(),
        image.blobs.len()
    );

    let handle = tokio::runtime::Handle::current();
    for dest in &destinations {
        let failed = |e: kiln_oci::RegistryError| {
            Failure::new(Exit::Registry, format!("pushing {}: {e}", dest.as_given))
        };
        let repo = client.repository(&dest.reference, Access::Push);
        let (mut uploaded, mut existing) = (0, 0);
        for (d, path) in &image.blobs {
            let outcome = handle
                .block_on(repo.push_blob(&BlobSource::File(path.clone()), &d.digest, d.size, None))
                .map_err(failed)?;
            match outcome {
                PushOutcome::Exists => existing += 1,
                _ => uploaded += 1,
            }
        }
        // An index's manifests go first, by digest, so the tag never names
        // a manifest the registry does not have.
        for (bytes, media_type) in &image.children {
            let digest = Digest::sha256_of(bytes);
            handle
                .block_on(repo.put_manifest(&digest.to_string(), bytes.clone().into(), media_type))
                .map_err(failed)?;
        }
        let reference = dest
            .reference
            .digest()
            .map(ToString::to_string)
            .or_else(|| dest.reference.tag().map(str::to_string))
            .unwrap_or_else(|| "latest".to_string());
        handle
            .block_on(repo.put_manifest(
                &reference,
                image.manifest_bytes.clone().into(),
                &image.media_type,
            ))
            .map_err(failed)?;
        super::print(&format!(
            "pushed {} as {digest} ({uploaded} blobs uploaded, {existing} already there)",
            dest.as_given
        ))?;
    }
    command.target.write_digest_files(&destinations, &digest)?;
    Ok(())
}
