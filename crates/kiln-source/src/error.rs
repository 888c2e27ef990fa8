//! Why a remote context or a git source could not be had. Each kind keeps
//! the error beneath it as its `source()`, and prints the one line the user
//! has always been shown: the causes joined, credentials never included.

use kiln_image_spec::error::chain as error_chain;
use std::path::PathBuf;

/// An error from a library kiln-source drives (gix, reqwest), kept whole.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a remote context could not be fetched. The message always names the
/// context (credentials removed).
#[derive(Debug, thiserror::Error)]
#[error("build context {source_name}: {source}")]
pub struct RemoteContextError {
    /// The context, as shown to the user.
    pub source_name: String,
    /// What went wrong.
    #[source]
    pub source: SourceError,
}

/// What went wrong fetching a context or checking out a git source. The
/// messages do not name the source: the caller does.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The directory the source goes into could not be made.
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A checkout's files could not be prepared (`.git` removed, modes set).
    #[error("{what}: {source}")]
    Prepare {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The repository could not be cloned or read.
    #[error("{0}")]
    Git(#[from] GitError),
    /// The S3, GCS or Azure object could not be opened.
    #[error("{0}")]
    Object(#[from] ObjectError),
    /// The tarball could not be downloaded.
    #[error("{0}")]
    Http(#[from] HttpError),
    /// The bytes could not be unpacked as a tar archive.
    #[error("{0}")]
    Tarball(#[from] TarballError),
    /// A git source is not written as one.
    #[error("{}", .0.reason)]
    Spec(#[from] crate::spec::SpecError),
    /// The `#ref:subdir` of a git source is no directory of the checkout.
    #[error("{subdir:?} is not a directory in the repository{}", commit.as_ref().map(|c| format!(" at {c}")).unwrap_or_default())]
    NotADirectory {
        /// The sub-directory asked for.
        subdir: String,
        /// The commit checked out, when it is known.
        commit: Option<String>,
    },
    /// The thread doing the work panicked or was cancelled.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a repository could not be cloned or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// gix failed; the message joins its causes.
    #[error("{}", error_chain(&**.0))]
    Gix(#[source] Cause),
    /// The revision asked for is not in the repository.
    #[error("{}", revision_not_found(name, *branch_or_tag, source))]
    RevisionNotFound {
        /// The branch, tag, ref or commit asked for.
        name: String,
        /// True when the name was looked for as a branch and as a tag.
        branch_or_tag: bool,
        /// The last attempt's failure.
        source: Cause,
    },
    /// An ssh connection failed; the message says where kiln looks for
    /// keys and host keys.
    #[error("{advice}")]
    Ssh {
        /// What failed and what to check, as one line.
        advice: String,
        /// The failure gix reported.
        source: Cause,
    },
    /// The server asks for credentials and none are set.
    #[error("the server asks for credentials: set GIT_USERNAME and GIT_PASSWORD, or GIT_TOKEN")]
    NeedsCredentials {
        /// The failure gix reported.
        source: Cause,
    },
    /// The server asks for credentials over plain http.
    #[error("the server asks for credentials, which are never sent over plain http: use https")]
    CredentialsOverHttp {
        /// The failure gix reported.
        source: Cause,
    },
    /// A submodule's URL is a path on the build machine.
    #[error("submodule {name}: {url} is a path on the build machine, which is never cloned")]
    LocalSubmodule {
        /// The submodule.
        name: String,
        /// Its URL.
        url: String,
    },
    /// A submodule's path leaves the repository.
    #[error("submodule {name}: path {path:?} leaves the repository")]
    SubmoduleEscapes {
        /// The submodule.
        name: String,
        /// Its path.
        path: String,
    },
    /// A submodule could not be cloned.
    #[error("submodule {name} ({url}): {source}")]
    Submodule {
        /// The submodule.
        name: String,
        /// Its URL.
        url: String,
        /// Why.
        source: Box<GitError>,
    },
}

fn revision_not_found(name: &str, branch_or_tag: bool, source: &Cause) -> String {
    let last = error_chain(&**source);
    if branch_or_tag {
        format!("no branch or tag named {name:?} in the repository ({last})")
    } else {
        format!("{name:?} not found in the repository ({last})")
    }
}

impl GitError {
    /// A gix failure, kept whole.
    pub(crate) fn gix(error: impl std::error::Error + Send + Sync + 'static) -> GitError {
        GitError::Gix(Box::new(error))
    }
}

/// Why an S3, GCS or Azure object could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The store has no such object.
    #[error("no such object")]
    NotFound(#[source] Box<object_store::Error>),
    /// The store could not be configured or reached; the message joins the
    /// causes.
    #[error("{}", error_chain(&**.0))]
    Store(#[source] Box<object_store::Error>),
}

impl From<object_store::Error> for ObjectError {
    fn from(error: object_store::Error) -> ObjectError {
        match error {
            object_store::Error::NotFound { .. } => ObjectError::NotFound(Box::new(error)),
            other => ObjectError::Store(Box::new(other)),
        }
    }
}

/// Why an HTTPS tarball could not be downloaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The HTTP client could not be made.
    #[error("{0}")]
    Client(#[source] reqwest::Error),
    /// The request failed; the message joins the causes, without the URL
    /// (it may hold credentials).
    #[error("{}", error_chain(.0))]
    Request(#[source] reqwest::Error),
    /// The server answered with an error status.
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
}

/// Why a context tar could not be unpacked. Display and `source()` are
/// written out rather than derived: the extractor's error is boxed (it is
/// large) and `source()` yields the error itself, not its box, so a caller
/// walking the chain can downcast it.
#[derive(Debug)]
#[non_exhaustive]
pub enum TarballError {
    /// The stream could not be opened as a (compressed) tar.
    Open(Box<kiln_layer::Error>),
    /// An entry could not be unpacked; the message drops kiln-layer's
    /// `layer LABEL: ` prefix (the caller names the source) and says when
    /// the bytes are no tar at all.
    Extract {
        /// The message shown.
        message: String,
        /// The extractor's error.
        source: Box<kiln_layer::Error>,
    },
    /// The archive has no entries.
    Empty,
}

impl std::fmt::Display for TarballError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarballError::Open(e) => write!(f, "{e}"),
            TarballError::Extract { message, .. } => f.write_str(message),
            TarballError::Empty => f.write_str("not a tar archive (no entries)"),
        }
    }
}

impl std::error::Error for TarballError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TarballError::Open(e) | TarballError::Extract { source: e, .. } => Some(&**e),
            TarballError::Empty => None,
        }
    }
}

/// Why a `--git` option list is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GitOptionsError {
    /// An item is not `KEY=VALUE`.
    #[error("{0:?}: expected KEY=VALUE")]
    NotKeyValue(String),
    /// A flag's value is not a boolean.
    #[error("{key}={value}: expected true or false")]
    NotBoolean {
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// The key is not one kiln knows.
    #[error(
        "unknown key {0:?} (known: branch, single-branch, recurse-submodules, insecure-skip-tls)"
    )]
    UnknownKey(String),
}
