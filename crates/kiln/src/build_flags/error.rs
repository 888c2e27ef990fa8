//! What is wrong with the command line, found before the build starts.

use kiln_build::options::Compression;
use kiln_oci::builtin_helpers::UnknownHelper;
use kiln_oci::registry::FlagError;
use kiln_oci::{PlatformError, ReferenceError};
use kiln_source::GitOptionsError;
use kiln_source::SpecError;

/// A problem with the options, found before the build starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// Nothing to push to and pushing not disabled.
    #[error("you must provide --destination, or use --no-push")]
    NoDestination,
    /// A flag that names the pushed image was given without a destination.
    #[error("you must provide --destination when setting {flag}")]
    NeedsDestination {
        /// The flag that needs a destination.
        flag: &'static str,
    },
    /// Caching with `--no-push` has no destination to derive a cache repository from.
    #[error("if using cache with --no-push, specify cache repo with --cache-repo")]
    CacheRepoRequired,
    /// The context could not be used.
    #[error("build context {context:?}: {reason}")]
    InvalidContext {
        /// The context as given.
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// A remote context whose location does not parse.
    #[error("build context {:?}: {}", .0.context, .0.reason)]
    InvalidRemoteContext(#[source] SpecError),
    /// No Dockerfile where `--dockerfile` points.
    #[error("no Dockerfile at {path:?} (nor inside the build context); please provide a valid path to a Dockerfile within the build context with --dockerfile")]
    DockerfileNotFound {
        /// The path as given.
        path: String,
    },
    /// A URL was given as the Dockerfile.
    #[error("--dockerfile {path:?}: Dockerfiles fetched from a URL are not supported")]
    UnsupportedDockerfile {
        /// The path as given.
        path: String,
    },
    /// A flag value is malformed.
    #[error("{flag} {value:?}: {reason}")]
    InvalidValue {
        /// The flag.
        flag: &'static str,
        /// The value as given (never a secret's contents).
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A `--destination` that is not an image reference.
    #[error("--destination {value:?}: {source}")]
    InvalidDestination {
        /// The destination as given.
        value: String,
        /// Why it is not a reference.
        #[source]
        source: ReferenceError,
    },
    /// A `--custom-platform` list naming something that is not a platform.
    #[error("--custom-platform {list:?}: {source}")]
    InvalidPlatform {
        /// The whole list as given.
        list: String,
        /// The entry that is not a platform.
        #[source]
        source: PlatformError,
    },
    /// A `--git` option list that does not parse.
    #[error("--git {value:?}: {source}")]
    InvalidGitOptions {
        /// The list as given.
        value: String,
        /// What is wrong with it.
        #[source]
        source: GitOptionsError,
    },
    /// A `--credential-helpers` entry that names no built-in source.
    #[error("--credential-helpers {value:?}: {source}")]
    InvalidCredentialHelper {
        /// The entry as given.
        value: String,
        /// Why it is not a helper.
        #[source]
        source: UnknownHelper,
    },
    /// A registry flag (`--registry-map`, `--registry-mirror`, certificates) off its grammar;
    /// its message names the flag and the value.
    #[error(transparent)]
    InvalidRegistryFlag(#[from] FlagError),
    /// An environment variable holds a value kiln cannot use.
    #[error("environment variable {name}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A compression level outside the compression's range.
    #[error("--compression-level {level} is out of range for {compression} (use -1 for the default, or {min}..={max})")]
    CompressionLevel {
        /// The compression.
        compression: Compression,
        /// The level given.
        level: i32,
        /// Lowest accepted level.
        min: i32,
        /// Highest accepted level.
        max: i32,
    },
}

/// A malformed flag value.
pub(crate) fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> OptionsError {
    OptionsError::InvalidValue {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}
