//! `kiln build` end to end: images, outputs, errors, registries, BuildKit
//! conformance, examples, progress, remote contexts, supply-chain statements,
//! and multi-platform images (QEMU emulation, `kiln index create`).
//!
//! One test binary per area, each module one concern.

#[path = "../build_common/mod.rs"]
mod build_common;

mod add_git;
mod attest;
mod buildkit_conformance;
mod deferred_layers;
mod emulation;
mod equivalence;
mod errors;
mod examples;
mod git_ssh;
mod index_create;
mod outputs;
mod prefetch;
mod progress;
mod registries;
mod remote_contexts;
mod servers;
mod smoke;
