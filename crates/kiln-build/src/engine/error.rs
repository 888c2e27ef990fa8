//! What can stop a build, with enough context to say where and why in one
//! line. The CLI maps each kind to an exit code.

pub use super::image_text::{ImageTextError, ImageTextProblem};
pub use super::pending::LayerWriteError;
use kiln_dockerfile::instructions::FrontendError;
use std::fmt;
use std::path::PathBuf;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile is malformed: every problem, each with its line.
    #[error("{}", DockerfileErrors { path, errors })]
    Dockerfile {
        /// The Dockerfile as the user named it.
        path: String,
        /// The problems, in line order.
        errors: Vec<FrontendError>,
    },
    /// The context or the Dockerfile could not be read.
    #[error("{0}")]
    Context(String),
    /// The Dockerfile could not be read.
    #[error("reading Dockerfile {}: {source}", path.display())]
    ReadDockerfile {
        /// The Dockerfile.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The build context could not be opened or a file in it read.
    #[error(transparent)]
    BuildContext(#[from] crate::context::ContextError),
    /// A remote build context could not be fetched.
    #[error(transparent)]
    RemoteContext(#[from] kiln_source::RemoteContextError),
    /// The layer cache could not be opened.
    #[error("cache: {0}")]
    Cache(#[from] crate::cache::CacheError),
    /// The client for `ADD <url>` could not be configured.
    #[error(transparent)]
    Fetch(#[from] crate::copy::http::FetchError),
    /// The index of several platforms' images could not be made.
    #[error("making the image index: {0}")]
    Index(#[source] crate::index::IndexError),
    /// A scratch directory the build needs could not be made.
    #[error("creating {what}: {source}")]
    Scratch {
        /// What the directory is for.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The image config could not be serialised.
    #[error("serialising the image config: {0}")]
    Config(#[source] serde_json::Error),
    /// A step failed. Boxed, as the step error is large; transparent, so
    /// that `source()` yields the [`StepError`] itself and a caller walking
    /// the chain can `downcast_ref::<StepError>()` it.
    #[error(transparent)]
    Step(Box<StepFailure>),
    /// A RUN step's command exited non-zero.
    #[error(
        "{file}:{line}: RUN {command}: exit code {code}{}",
        if output.is_empty() { String::new() } else { format!("\n  last output:\n    {}", output.join("\n    ")) }
    )]
    Run {
        /// The Dockerfile.
        file: String,
        /// The step's first line.
        line: usize,
        /// The command as run (shortened).
        command: String,
        /// The exit code (128 + the signal when it was killed).
        code: i32,
        /// The last lines it printed.
        output: Vec<String>,
    },
    /// A base image could not be pulled.
    #[error("pulling {reference}: {source}")]
    Pull {
        /// The image.
        reference: String,
        /// Why.
        source: Box<kiln_oci::RegistryError>,
    },
    /// The registry client could not be configured.
    #[error("registry settings: {0}")]
    Registry(Box<kiln_oci::RegistryError>),
    /// An output (push, tar, layout, digest file) failed.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// A platform's image layout could not be read, or the joined one written.
    #[error("{}: {source}", path.display())]
    LayoutIo {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An index, manifest or config in a platform's image layout does not parse.
    #[error("{}: {source}", path.display())]
    LayoutDocument {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<kiln_oci::ManifestError>,
    },
    /// The build's working directory could not be prepared.
    #[error("working directory {path}: {source}")]
    Workspace {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where a step failed and why, printed as `FILE:LINE: INSTRUCTION: WHY`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {instruction}: {source}")]
pub struct StepFailure {
    /// The Dockerfile.
    pub file: String,
    /// The step's first line.
    pub line: usize,
    /// The instruction, shortened.
    pub instruction: String,
    /// What went wrong, with the error beneath it.
    #[source]
    pub source: StepError,
}

impl BuildError {
    /// True when a registry said no to our credentials.
    pub fn is_auth(&self) -> bool {
        let status = match self {
            BuildError::Pull { source, .. } | BuildError::Registry(source) => source.status(),
            BuildError::Output(crate::output::OutputError::Push { source, .. }) => source.status(),
            _ => None,
        };
        matches!(status, Some(401 | 403))
    }
}

struct DockerfileErrors<'a> {
    path: &'a str,
    errors: &'a [FrontendError],
}

impl fmt::Display for DockerfileErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.path, e.line, e.message)?;
        }
        Ok(())
    }
}

/// Why one step failed, keeping the error beneath it so that
/// `std::error::Error::source()` reaches the I/O, layer or registry error.
/// Each variant prints exactly the message the step reported before it was typed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// A failure with nothing beneath it (a missing stage, a bad value).
    #[error("{0}")]
    Message(String),
    /// A file or directory the step needed could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path when there is one.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The step's layer could not be written.
    #[error("{0}")]
    Layer(#[source] kiln_layer::Error),
    /// A file a COPY or ADD planned could not be put into its layer.
    #[error("{0}")]
    CopyLayer(#[source] crate::copy::layer::WriteError),
    /// A RUN's layer, written on its own thread, failed.
    #[error("writing the layer: {0}")]
    PendingLayer(#[source] LayerWriteError),
    /// A COPY or ADD could not copy its sources.
    #[error("{0}")]
    Copy(#[source] crate::copy::CopyError),
    /// The files of the image's layers could not be listed.
    #[error("{0}")]
    Listing(#[source] super::listing::ListingError),
    /// `/etc/passwd` or `/etc/group` could not be read out of the image.
    #[error("{0}")]
    ImageText(#[source] ImageTextError),
    /// A `--chown` could not be resolved against the image's users.
    #[error("{0}")]
    Chown(#[source] crate::copy::chown::ChownError),
    /// A `--chmod` is not a mode.
    #[error("{0}")]
    Chmod(#[source] crate::copy::chmod::ChmodError),
    /// An `--exclude` pattern is invalid.
    #[error("{0}")]
    Exclude(#[source] kiln_dockerfile::ignore::IgnoreError),
    /// An `ADD <url>` could not be downloaded.
    #[error("{0}")]
    Fetch(#[source] crate::copy::http::FetchError),
    /// A stage or context used as a COPY source could not be opened.
    #[error("{0}")]
    Context(#[source] crate::context::ContextError),
    /// The stage's root filesystem could not be prepared.
    #[error("{0}")]
    Rootfs(#[source] Box<super::rootfs::RootfsError>),
    /// An image reference in the step is invalid.
    #[error("{0}")]
    Reference(#[source] kiln_oci::ReferenceError),
    /// A digest in the step is invalid.
    #[error("{0}")]
    Digest(#[source] kiln_oci::DigestError),
    /// A `--platform` is invalid.
    #[error("{0}")]
    Platform(#[source] kiln_oci::PlatformError),
    /// The step needs an emulator for another architecture that is not installed.
    #[error("{0}")]
    Emulation(#[source] kiln_sandbox::binfmt::EmulationMissing),
    /// The sandbox could not run the step or write its layer.
    #[error("{0}")]
    Sandbox(#[source] kiln_sandbox::SandboxError),
    /// Neither isolation could run the step (`--isolation=auto`).
    #[error("namespace isolation: {namespace}; chroot isolation: {source}")]
    Isolation {
        /// Why namespaces were refused.
        namespace: Box<kiln_sandbox::SandboxError>,
        /// Why chroot failed as well.
        source: Box<kiln_sandbox::SandboxError>,
    },
    /// An `ADD` git source could not be checked out.
    #[error("git source {source_name}: {source}")]
    GitSource {
        /// The source, credentials removed.
        source_name: String,
        /// Why.
        source: GitSourceError,
    },
    /// A task doing part of the step's work panicked or was cancelled.
    #[error("{0}")]
    Join(#[source] tokio::task::JoinError),
    /// The task running the step panicked or was cancelled.
    #[error("{what}: {source}")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// Why it stopped.
        source: tokio::task::JoinError,
    },
}

/// Why an `ADD` git source could not be checked out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitSourceError {
    /// The source could not be parsed, cloned or prepared.
    #[error("{0}")]
    Checkout(#[source] kiln_source::SourceError),
    /// The scratch directory for the checkout could not be made.
    #[error("{0}")]
    Scratch(#[source] std::io::Error),
    /// The thread cloning it panicked or was cancelled.
    #[error("{0}")]
    Task(#[source] tokio::task::JoinError),
    /// `--checksum` names another commit than the source resolved to.
    #[error("checksum mismatch: --checksum is {expected}, the source resolved to commit {commit}")]
    ChecksumMismatch {
        /// The commit `--checksum` names.
        expected: String,
        /// The commit checked out.
        commit: String,
    },
}

/// The conversions a `map_err` on a step's fallible call relies on; each keeps
/// the error as the source.
macro_rules! step_error_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for StepError {
            fn from(source: $ty) -> StepError {
                StepError::$variant(source)
            }
        }
    )*};
}

step_error_from!(
    Copy(crate::copy::CopyError),
    Chown(crate::copy::chown::ChownError),
    ImageText(ImageTextError),
    Listing(super::listing::ListingError),
    Chmod(crate::copy::chmod::ChmodError),
    Exclude(kiln_dockerfile::ignore::IgnoreError),
    Fetch(crate::copy::http::FetchError),
    Context(crate::context::ContextError),
    Reference(kiln_oci::ReferenceError),
    Digest(kiln_oci::DigestError),
    Platform(kiln_oci::PlatformError),
    Emulation(kiln_sandbox::binfmt::EmulationMissing),
    Join(tokio::task::JoinError),
    Sandbox(kiln_sandbox::SandboxError),
    Layer(kiln_layer::Error),
    CopyLayer(crate::copy::layer::WriteError),
);

impl From<super::rootfs::RootfsError> for StepError {
    fn from(source: super::rootfs::RootfsError) -> StepError {
        StepError::Rootfs(Box::new(source))
    }
}

impl From<LayerWriteError> for StepError {
    /// A layer written on the step's own thread fails as its sandbox error,
    /// printed as it was before the layer could be written elsewhere.
    fn from(source: LayerWriteError) -> StepError {
        match source {
            LayerWriteError::Sandbox(e) => StepError::Sandbox(e),
            vanished @ LayerWriteError::Vanished => StepError::Message(vanished.to_string()),
        }
    }
}

impl StepError {
    /// An I/O failure, printed as `WHAT: REASON`; `what` names the path.
    pub(crate) fn io(what: impl std::fmt::Display, source: std::io::Error) -> StepError {
        StepError::Io {
            what: what.to_string(),
            source,
        }
    }
}

impl From<String> for StepError {
    fn from(message: String) -> StepError {
        StepError::Message(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> StepError {
        StepError::Message(message.to_string())
    }
}
