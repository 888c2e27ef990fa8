//! The layer cache end to end: entries in a registry and a layout, `kiln cache` and `kiln warm`, warm rebuilds on a fresh runner, the Python workload.
//!
//! One test binary per area, each module one concern.

#[path = "../build_common/mod.rs"]
mod build_common;

mod build;
mod cli;
mod entries;
mod python;
mod warm;
