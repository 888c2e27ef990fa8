//! Go syntaxes that Dockerfiles, `.dockerignore` files and Kaniko's flags
//! inherit from the Go standard library, each written once: durations
//! (`time.ParseDuration`) and wildcards (`filepath.Match`).

pub mod duration;
pub mod filepath_match;

pub use duration::{parse_duration, DurationError};
