//! `--digest-file`, `--image-name-with-digest-file` and
//! `--image-name-tag-with-digest-file`, in Kaniko's formats: the digest
//! alone; one `registry/repo@digest` line per destination; one
//! `registry/repo:tag@digest` line per destination.

use super::{io_err, OutputError};
use crate::options::Destination;
use kiln_oci::Digest;
use std::path::Path;

/// Writes the digest alone (no newline, as Kaniko).
pub fn write_digest(path: &Path, digest: &Digest) -> Result<(), OutputError> {
    std::fs::write(path, digest.to_string()).map_err(io_err(path))
}

/// Writes `repo@digest` per destination.
pub fn write_name_with_digest(
    path: &Path,
    dests: &[Destination],
    digest: &Digest,
) -> Result<(), OutputError> {
    write_lines(path, dests, |d| format!("{}@{digest}", d.reference.name()))
}

/// Writes `repo:tag@digest` per destination.
pub fn write_name_tag_with_digest(
    path: &Path,
    dests: &[Destination],
    digest: &Digest,
) -> Result<(), OutputError> {
    write_lines(path, dests, |d| {
        let tag = d.reference.tag().unwrap_or("latest");
        format!("{}:{tag}@{digest}", d.reference.name())
    })
}

fn write_lines(
    path: &Path,
    dests: &[Destination],
    line: impl Fn(&Destination) -> String,
) -> Result<(), OutputError> {
    let lines: Vec<String> = dests.iter().map(line).collect();
    std::fs::write(path, lines.join("\n") + "\n").map_err(io_err(path))
}
