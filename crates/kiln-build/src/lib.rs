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

// The errors a caller matches on, or finds walking `source()` from a
// `BuildError`, named from the crate root.
pub use archive::ArchiveError;
pub use cache::CacheError;
pub use context::ContextError;
pub use copy::chmod::ChmodError;
pub use copy::chown::ChownError;
pub use copy::http::FetchError;
pub use copy::layer::WriteError;
pub use copy::CopyError;
pub use engine::error::{
    GitSourceError, ImageTextError, ImageTextProblem, LayerWriteError, StepError, StepFailure,
};
pub use engine::rootfs::RootfsError;
pub use index::IndexError;
pub use output::OutputError;
