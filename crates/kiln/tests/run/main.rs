//! RUN steps: the sandbox's containment tried from the attacker's side, mounts, environment, SSH agents, rootless and unprivileged-container builds, equivalence with buildah.
//!
//! One test binary per area, each module one concern.

#[path = "../build_common/mod.rs"]
mod build_common;

mod containment;
mod equivalence;
mod mounts;
mod rootless;
mod sandbox_env;
mod ssh;
mod steps;
mod unprivileged_container;
