//! The build engine: the build context, COPY/ADD resolution, stage execution,
//! image assembly and outputs. The CLI is a thin layer over this crate.
#![deny(missing_docs)]

pub mod archive;
pub mod cache;
pub mod context;
pub mod copy;
pub mod engine;
pub mod index;
pub mod layout;
pub mod model;
pub mod options;
pub mod output;
pub mod progress;

pub use engine::{build, build_in, build_with, BuildError, BuildOutcome, BuildSetup};
