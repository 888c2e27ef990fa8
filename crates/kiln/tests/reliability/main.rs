//! Builds against registries that fail, lie or refuse, hostile contexts and images, interrupts and resource limits: each ends cleanly and says why.
//!
//! One test binary per area, each module one concern.

#[path = "../build_common/mod.rs"]
mod build_common;

mod auth;
mod faults;
mod hostile;
mod hostile_images;
mod interrupt;
mod network;
mod resources;
