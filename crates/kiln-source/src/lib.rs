//! Remote build contexts: turns a `--context` that is not a local path into
//! a local directory before the build starts.
//!
//! - [`spec`] parses Kaniko's context syntax into a [`RemoteContext`].
//! - [`git`] clones a repository (gix), [`git_source`] checks one out for
//!   `ADD`, [`object`] opens an S3, GCS or Azure
//!   object (object_store), and HTTP tarballs and stdin are read directly.
//! - Every tar is unpacked as it arrives by [`tarball`], through kiln-layer's
//!   extractor, which no entry can escape: a context is never held in memory
//!   and never written outside its directory.
//!
//! The directory is created with mode 0700 inside kiln's working directory,
//! so other users of the machine cannot read a private repository's files.

#![deny(missing_docs)]

mod error;
pub mod git;
pub mod git_source;
pub mod object;
pub mod spec;
mod tarball;

pub use error::{
    Cause, GitError, GitOptionsError, HttpError, ObjectError, RemoteContextError, SourceError,
    TarballError,
};
pub use git::GitOptions;
pub use spec::{GitContext, RemoteContext, SpecError};

use futures::stream::BoxStream;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment the sources read credentials and endpoints from. Built
/// from the process environment, or given whole by tests.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are credentials: only the names are shown.
        f.debug_list().entries(self.vars.keys()).finish()
    }
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// An environment holding only `vars`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// This environment with `name` set to `value`.
    pub fn with(&self, name: &str, value: &str) -> Env {
        let mut vars = self.vars.clone();
        vars.insert(name.to_string(), value.to_string());
        Env { vars }
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// Every variable whose name starts with `prefix`.
    pub fn vars_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// What was fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The context root: `dest`, or the git sub-directory inside it.
    pub root: PathBuf,
    /// One line for the log: what was fetched and how much.
    pub summary: String,
}

/// Connect timeout for HTTP tarball downloads.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between two reads of an HTTP tarball.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Fetches `context` into `dest`, a directory that must not exist yet (it is
/// created with mode 0700), and returns the context root.
pub async fn fetch(
    context: &RemoteContext,
    git_options: &GitOptions,
    env: &Env,
    dest: &Path,
) -> Result<Fetched, RemoteContextError> {
    fetch_into(context, git_options, env, dest)
        .await
        .map_err(|source| RemoteContextError {
            source_name: context.to_string(),
            source,
        })
}

async fn fetch_into(
    context: &RemoteContext,
    git_options: &GitOptions,
    env: &Env,
    dest: &Path,
) -> Result<Fetched, SourceError> {
    create_private_dir(dest).map_err(|source| SourceError::CreateDir {
        path: dest.to_path_buf(),
        source,
    })?;
    let started = std::time::Instant::now();
    let label = context.to_string();
    match context {
        RemoteContext::Git(git) => {
            let (git, options, env, into) = (
                git.clone(),
                git_options.clone(),
                env.clone(),
                dest.to_path_buf(),
            );
            let revision =
                tokio::task::spawn_blocking(move || git::clone(&git, &options, &env, &into))
                    .await??;
            let root = match &git_subdir(context) {
                Some(sub) => {
                    let root = dest.join(sub);
                    let inside = match (root.canonicalize(), dest.canonicalize()) {
                        (Ok(root), Ok(dest)) => root.starts_with(dest),
                        _ => false,
                    };
                    if !root.is_dir() || !inside {
                        return Err(SourceError::NotADirectory {
                            subdir: sub.clone(),
                            commit: None,
                        });
                    }
                    root
                }
                None => dest.to_path_buf(),
            };
            Ok(Fetched {
                root,
                summary: format!(
                    "cloned {label} ({revision}) in {:.1}s",
                    started.elapsed().as_secs_f64()
                ),
            })
        }
        RemoteContext::Stdin => {
            let into = dest.to_path_buf();
            let entries = tokio::task::spawn_blocking(move || {
                tarball::unpack(std::io::stdin(), &into, "standard input")
            })
            .await??;
            Ok(done(dest, &label, entries, started))
        }
        RemoteContext::Tarball { url } => {
            let stream = http_stream(url).await?;
            let entries = unpack_stream(stream, dest, &label).await?;
            Ok(done(dest, &label, entries, started))
        }
        RemoteContext::S3 { bucket, key } => {
            let stream = object::open(object::Object::S3(bucket, key), env).await?;
            let entries = unpack_stream(stream, dest, &label).await?;
            Ok(done(dest, &label, entries, started))
        }
        RemoteContext::Gcs { bucket, key } => {
            let stream = object::open(object::Object::Gcs(bucket, key), env).await?;
            let entries = unpack_stream(stream, dest, &label).await?;
            Ok(done(dest, &label, entries, started))
        }
        RemoteContext::Azure {
            account,
            container,
            key,
        } => {
            let stream = object::open(
                object::Object::Azure(account.as_deref(), container, key),
                env,
            )
            .await?;
            let entries = unpack_stream(stream, dest, &label).await?;
            Ok(done(dest, &label, entries, started))
        }
    }
}

fn git_subdir(context: &RemoteContext) -> Option<String> {
    match context {
        RemoteContext::Git(g) => g.subdir.clone(),
        _ => None,
    }
}

fn done(dest: &Path, label: &str, entries: u64, started: std::time::Instant) -> Fetched {
    Fetched {
        root: dest.to_path_buf(),
        summary: format!(
            "unpacked {label}: {entries} entries in {:.1}s",
            started.elapsed().as_secs_f64()
        ),
    }
}

pub(crate) fn create_private_dir(dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700))
}

async fn http_stream(
    url: &str,
) -> Result<BoxStream<'static, std::io::Result<bytes::Bytes>>, HttpError> {
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(HttpError::Client)?;
    let response = client
        .get(url)
        .send()
        .await
        // The URL may hold credentials: it is never kept in the error.
        .map_err(|e| HttpError::Request(e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(HttpError::Status(status));
    }
    Ok(response
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed())
}

/// Unpacks an async byte stream on a blocking thread, reading it as it arrives.
async fn unpack_stream(
    stream: BoxStream<'static, std::io::Result<bytes::Bytes>>,
    dest: &Path,
    label: &str,
) -> Result<u64, SourceError> {
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let (into, label) = (dest.to_path_buf(), label.to_string());
    Ok(tokio::task::spawn_blocking(move || tarball::unpack(reader, &into, &label)).await??)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_failed_clone_names_the_context_and_keeps_the_git_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-repository");
        let context = RemoteContext::Git(GitContext {
            url: format!("file://{}", missing.display()),
            reference: None,
            commit: None,
            subdir: None,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = runtime
            .block_on(fetch(
                &context,
                &GitOptions::default(),
                &Env::default(),
                &dir.path().join("checkout"),
            ))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("build context {context}: ")),
            "{e}"
        );
        let source = e
            .source()
            .and_then(|s| s.downcast_ref::<SourceError>())
            .expect("the SourceError beneath");
        assert!(matches!(source, SourceError::Git(_)), "{source:?}");
        assert!(
            source
                .source()
                .is_some_and(|git| git.downcast_ref::<GitError>().is_some()),
            "{source:?}"
        );
    }

    #[test]
    fn git_options_errors_say_what_is_wrong() {
        assert_eq!(
            GitOptions::parse("branch").unwrap_err(),
            GitOptionsError::NotKeyValue("branch".into())
        );
        assert_eq!(
            GitOptions::parse("single-branch=maybe")
                .unwrap_err()
                .to_string(),
            "single-branch=maybe: expected true or false"
        );
        assert_eq!(
            GitOptions::parse("depth=1").unwrap_err().to_string(),
            "unknown key \"depth\" (known: branch, single-branch, recurse-submodules, insecure-skip-tls)"
        );
    }
}
