//! Supply-chain documents about a built image, as BuildKit attaches them:
//!
//! - [`provenance`]: an in-toto v1 statement whose predicate is SLSA
//!   provenance v1 (what went into the build: the Dockerfile, build args,
//!   every base image and downloaded file by digest, and in max mode each
//!   step and whether it came from the cache);
//! - [`sbom`]: an SPDX 2.3 JSON document of the packages in the final
//!   image's file system, found by the cataloguers in [`sbom`], and of its
//!   regular files with their checksums, wrapped in an in-toto statement too.
//!
//! The crate only makes documents from facts it is handed; the build engine
//! records the facts and attaches the documents to the image.
//!
//! The in-toto and SLSA documents are small fixed JSON shapes, written with
//! `serde_json` rather than a crate: the Rust crates for them either pull a
//! signing stack or follow older drafts (SLSA v0.2) than the one BuildKit
//! writes today.
#![deny(missing_docs)]

pub mod provenance;
pub mod purl;
pub mod sbom;
pub mod vcs;

use serde_json::{json, Value};

/// `_type` of an in-toto v1 statement.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Media type of an in-toto statement stored as a blob.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The annotation on an attestation layer that names its predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// Predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Predicate type of an SPDX document.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";

/// What a statement is about: the image manifest, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// A name for it (a `pkg:docker/…` package URL, as BuildKit writes).
    pub name: String,
    /// The manifest's sha256, hex.
    pub sha256: String,
}

/// An in-toto v1 statement about `subjects` with `predicate`.
pub fn statement(subjects: &[Subject], predicate_type: &str, predicate: Value) -> Value {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|s| json!({"name": s.name, "digest": {"sha256": s.sha256}}))
        .collect();
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}
