//! The command line: subcommands, the Kaniko drop-in (`executor`, `warmer`), the maintained fork's flags, and kiln's own image.
//!
//! One test binary per area, each module one concern.

#[path = "../build_common/mod.rs"]
mod build_common;

mod commands;
mod dropin;
mod fork_flags;
mod own_image;
