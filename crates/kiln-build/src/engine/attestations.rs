//! The provenance and SBOM statements of a finished image: made from what
//! the build recorded and what the image holds, written to their files, and
//! (when asked) attached to the image for every output.

use super::assemble::BuiltImage;
use super::blobs::BlobStore;
use super::record::BuildRecorder;
use super::BuildError;
use crate::options::BuildOptions;
use crate::output::attest::{attach, Attached, Statement};
use crate::output::sbom_scan::LayerScans;
use kiln_attest::provenance::{provenance_statement, BuildRecord, ProvenanceRequest};
use kiln_attest::{sbom, statement, Subject, SLSA_PROVENANCE_V1, SPDX_PREDICATE};
use kiln_oci::Platform;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::time::Instant;

/// What the statements are made from, besides the image.
pub(crate) struct Inputs<'a> {
    pub options: &'a BuildOptions,
    pub dockerfile_name: &'a str,
    pub dockerfile_text: &'a str,
    pub record: &'a BuildRecorder,
    pub started_on: time::OffsetDateTime,
}

/// Makes the statements asked for, writes their files, and returns what
/// is to be attached; `None` when nothing is (the image's outputs are then
/// exactly what they are without the feature).
pub(crate) async fn make(
    inputs: &Inputs<'_>,
    built: &BuiltImage,
    blobs: &BlobStore,
    scans: Option<&LayerScans>,
) -> Result<Option<Attached>, BuildError> {
    let attest = &inputs.options.output.attest;
    if !attest.wants_provenance() && !attest.wants_sbom() {
        return Ok(None);
    }
    let subjects = subjects(inputs.options, built);
    let mut attached = Vec::new();
    if attest.wants_provenance() {
        let began = Instant::now();
        let request = attest.provenance.clone().unwrap_or(ProvenanceRequest {
            enabled: true,
            ..Default::default()
        });
        let doc = provenance_statement(&build_record(inputs), &request, &subjects);
        let bytes = serde_json::to_vec(&doc).expect("JSON values serialise");
        if let Some(path) = &attest.provenance_file {
            write_file(path, &bytes)?;
        }
        tracing::info!(
            "provenance ({} mode) made in {:?}",
            request.mode,
            began.elapsed()
        );
        if attest.provenance.is_some() {
            attached.push(Statement {
                predicate_type: SLSA_PROVENANCE_V1.to_string(),
                bytes,
            });
        }
    }
    if attest.wants_sbom() {
        let began = Instant::now();
        let (inventory, streamed) =
            crate::output::sbom_scan::inventory(built, blobs, scans).await?;
        let info = sbom::DocumentInfo {
            image_name: image_name(inputs.options),
            image_id: built.config.digest.to_string(),
            created: spdx_time(time::OffsetDateTime::now_utc()),
            invocation_id: invocation_id(inputs),
            tool: format!("kiln-{}", env!("CARGO_PKG_VERSION")),
        };
        let doc = statement(&subjects, SPDX_PREDICATE, sbom::document(&info, &inventory));
        let bytes = serde_json::to_vec(&doc).expect("JSON values serialise");
        if let Some(path) = &attest.sbom_file {
            write_file(path, &bytes)?;
        }
        tracing::info!(
            "SBOM of {} packages and {} files made in {:?} ({streamed} of {} layers scanned as the build streamed them)",
            inventory.packages.len(),
            inventory.files.len(),
            began.elapsed(),
            built.layers.len()
        );
        if attest.sbom {
            attached.push(Statement {
                predicate_type: SPDX_PREDICATE.to_string(),
                bytes,
            });
        }
    }
    Ok((!attached.is_empty()).then(|| attach(built, &attached, attest.format)))
}

/// The image manifest, named as each destination names it (BuildKit's
/// `pkg:docker/NAME@TAG?platform=…`).
fn subjects(options: &BuildOptions, built: &BuiltImage) -> Vec<Subject> {
    let platform = options.platform.to_string();
    let sha256 = built.digest.hex().to_string();
    let mut names: Vec<String> = options
        .output
        .destinations
        .iter()
        .map(|d| {
            let r = &d.reference;
            let name = super::record::familiar_name(r);
            kiln_attest::purl::docker(&name, r.tag().unwrap_or("latest"), Some(&platform))
        })
        .collect();
    if names.is_empty() {
        names.push(kiln_attest::purl::docker(
            "kiln-build",
            "latest",
            Some(&platform),
        ));
    }
    names.dedup();
    names
        .into_iter()
        .map(|name| Subject {
            name,
            sha256: sha256.clone(),
        })
        .collect()
}

fn image_name(options: &BuildOptions) -> String {
    options
        .output
        .destinations
        .first()
        .map(|d| d.reference.familiar())
        .unwrap_or_else(|| super::UNNAMED_TAR_TAG.to_string())
}

fn build_record(inputs: &Inputs<'_>) -> BuildRecord {
    let options = inputs.options;
    let recorded = inputs.record.snapshot();
    let now = time::OffsetDateTime::now_utc();
    BuildRecord {
        dockerfile_path: inputs.dockerfile_name.to_string(),
        dockerfile_sha256: hex::encode(Sha256::digest(inputs.dockerfile_text.as_bytes())),
        context: None,
        build_args: options
            .build_args
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect(),
        target: options.target.clone(),
        platform: options.platform.to_string(),
        builder_platform: Platform::host().to_string(),
        secrets: options.secrets.iter().map(|s| s.id.clone()).collect(),
        ssh: options.ssh.iter().map(|s| s.id.clone()).collect(),
        materials: recorded.materials,
        steps: recorded.steps,
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        invocation_id: invocation_id(inputs),
        started_on: spdx_time(inputs.started_on),
        finished_on: spdx_time(now),
        reproducible: options.reproducible,
        vcs: match &options.context {
            crate::options::ContextSource::Dir(dir) => kiln_attest::vcs::detect(dir),
            _ => None,
        },
    }
}

/// This build's id, the same in both statements: when it started (in
/// nanoseconds), the process and its working directory.
fn invocation_id(inputs: &Inputs<'_>) -> String {
    let mut id = Sha256::new();
    id.update(inputs.started_on.unix_timestamp_nanos().to_le_bytes());
    id.update(std::process::id().to_le_bytes());
    id.update(inputs.options.work_dir.as_os_str().as_encoded_bytes());
    hex::encode(id.finalize())[..26].to_string()
}

/// `YYYY-MM-DDThh:mm:ssZ`: RFC 3339 without fractions, as SPDX requires.
fn spdx_time(t: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| {
            BuildError::Output(crate::output::OutputError::Io {
                path: parent.to_path_buf(),
                source,
            })
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| {
        BuildError::Output(crate::output::OutputError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}
