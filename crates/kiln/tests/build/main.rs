//! `kiln build` end to end: images, outputs, errors, registries, BuildKit conformance, examples, progress, remote contexts and supply-chain statements.
//!
//! One test binary per area, each module one concern.

#[path = "../build_common/mod.rs"]
mod build_common;

mod add_git;
mod attest;
mod buildkit_conformance;
mod equivalence;
mod errors;
mod examples;
mod outputs;
mod progress;
mod registries;
mod remote_contexts;
mod smoke;
