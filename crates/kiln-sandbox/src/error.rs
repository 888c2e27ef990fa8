//! Why a sandboxed run could not happen (a command that ran and failed is
//! not an error: it is an [`crate::ExitStatus`]).

use std::path::PathBuf;

/// Why a sandboxed run could not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The spec is inconsistent (an overlay root with chroot isolation, no argv).
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
    /// The helper process could not be started or talked to.
    #[error("sandbox helper {exe}: {source}")]
    Helper {
        /// The executable re-executed as the helper.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The helper ended without reporting how the command ended.
    #[error("sandbox helper ended without a report ({0})")]
    NoReport(String),
    /// The sandbox could not be set up.
    #[error("setting up the sandbox: {message}")]
    Setup {
        /// What failed.
        message: String,
        /// The kernel refused namespaces or mounts: chroot isolation may work.
        denied: bool,
    },
    /// The build was interrupted (SIGTERM or SIGINT) while the step ran:
    /// the step was ended before it finished.
    #[error("interrupted: the step was stopped before it finished")]
    Interrupted,
    /// A file operation on the root or the upper dir failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The layer could not be written.
    #[error("writing the layer: {0}")]
    Layer(#[from] kiln_layer::Error),
}

impl SandboxError {
    /// True when the kernel refused namespaces or mounts, so chroot
    /// isolation is the way left.
    pub fn is_denied(&self) -> bool {
        matches!(self, SandboxError::Setup { denied: true, .. })
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SandboxError::Io {
            action,
            path,
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
