//! The build's outputs in one place: the sinks the options ask for, made
//! with what each needs and run in order (every registry destination, the
//! docker tar, the OCI layout), then the digest files, which name what the
//! sinks wrote and are not outputs of the image themselves.

use super::BuildError;
use crate::options::{Destination, OutputOptions};
use crate::output::digest_files;
use crate::output::docker_tar::DockerTarSink;
use crate::output::early_push::EarlyPush;
use crate::output::oci_layout::OciLayoutSink;
use crate::output::push::{PushReport, RegistrySink};
use crate::output::sink::{Finished, OutputSink};
use crate::progress::ProgressSink;

/// The tag a `--tar-path` tarball carries when there is no `--destination`.
pub const UNNAMED_TAR_TAG: &str = "kiln-build:latest";

/// Writes `finished` to every output `out` names, in order, then the digest
/// files. Returns the destinations pushed (as given) and what each push did.
pub(super) async fn write(
    out: &OutputOptions,
    finished: Finished<'_>,
    progress: &dyn ProgressSink,
    early: Option<&EarlyPush>,
) -> Result<(Vec<String>, Vec<PushReport>), BuildError> {
    let mut pushed = Vec::new();
    let mut reports = Vec::new();
    for sink in sinks(out, progress, early) {
        for push in sink.write(&finished).await?.pushed {
            pushed.push(push.destination);
            reports.push(push.report);
        }
    }
    let digest = finished
        .attached
        .map_or(&finished.image.digest, |a| a.digest());
    if let Some(path) = &out.digest_file {
        digest_files::write_digest(path, digest)?;
    }
    if let Some(path) = &out.image_name_with_digest_file {
        digest_files::write_name_with_digest(path, &out.destinations, digest)?;
    }
    if let Some(path) = &out.image_name_tag_with_digest_file {
        digest_files::write_name_tag_with_digest(path, &out.destinations, digest)?;
    }
    Ok((pushed, reports))
}

/// The outputs `out` asks for, in the order they are written.
fn sinks<'a>(
    out: &'a OutputOptions,
    progress: &'a dyn ProgressSink,
    early: Option<&'a EarlyPush>,
) -> Vec<Box<dyn OutputSink + 'a>> {
    let mut sinks: Vec<Box<dyn OutputSink + 'a>> = Vec::new();
    if out.push {
        sinks.push(Box::new(RegistrySink::new(
            &out.destinations,
            out.by_digest,
            progress,
            early,
        )));
    }
    if let Some(path) = &out.tar_path {
        sinks.push(Box::new(DockerTarSink::new(
            path.clone(),
            tar_tags(&out.destinations),
        )));
    }
    if let Some(path) = &out.oci_layout_path {
        // One platform's image of several: named by the index, not here.
        let name = (!out.by_digest).then(|| {
            out.destinations
                .first()
                .and_then(|d| d.reference.tag())
                .unwrap_or("latest")
                .to_string()
        });
        sinks.push(Box::new(OciLayoutSink::new(path.clone(), name)));
    }
    sinks
}

/// The `RepoTags` of a `--tar-path` tarball: every destination's familiar
/// name, `:latest` when it has no tag.
fn tar_tags(destinations: &[Destination]) -> Vec<String> {
    let mut tags: Vec<String> = destinations
        .iter()
        .map(|d| match d.reference.tag() {
            Some(_) => d.reference.familiar(),
            None => format!("{}:latest", d.reference.familiar()),
        })
        .collect();
    if tags.is_empty() {
        // `--tar-path` alone, as BuildKit's `-o type=docker` without a name:
        // `docker load` still gets a tag to show and run.
        tags.push(UNNAMED_TAR_TAG.to_string());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn outputs(destinations: &[&str]) -> OutputOptions {
        OutputOptions {
            destinations: destinations.iter().map(|d| d.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn tar_tags_are_familiar_names_with_latest_added() {
        let out = outputs(&["reg.example/team/app", "docker.io/library/busybox:1"]);
        assert_eq!(
            tar_tags(&out.destinations),
            ["reg.example/team/app:latest", "busybox:1"]
        );
        assert_eq!(tar_tags(&[]), [UNNAMED_TAR_TAG]);
    }

    #[test]
    fn only_the_outputs_asked_for_are_made() {
        let progress = crate::progress::NoProgress;
        assert_eq!(
            sinks(&outputs(&["reg.example/app"]), &progress, None).len(),
            0
        );
        let mut all = outputs(&["reg.example/app"]);
        all.push = true;
        all.tar_path = Some(PathBuf::from("/out/image.tar"));
        all.oci_layout_path = Some(PathBuf::from("/out/layout"));
        assert_eq!(sinks(&all, &progress, None).len(), 3);
    }
}
