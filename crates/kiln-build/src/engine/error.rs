//! What can stop a build, with enough context to say where and why in one
//! line. The CLI maps each kind to an exit code.

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
    /// The build context could not be opened or a file in it read.
    #[error(transparent)]
    BuildContext(#[from] crate::context::ContextError),
    /// A remote build context could not be fetched.
    #[error(transparent)]
    RemoteContext(#[from] kiln_source::SourceError),
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
    /// A step failed.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        /// The Dockerfile.
        file: String,
        /// The step's first line.
        line: usize,
        /// The instruction, shortened.
        instruction: String,
        /// What went wrong.
        message: String,
    },
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
    /// The build's working directory could not be prepared.
    #[error("working directory {path}: {source}")]
    Workspace {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
