//! Git repositories as `ADD` sources, with BuildKit's semantics:
//! `ADD https://host/repo.git#ref:subdir /dst`, `ADD git@host:org/repo.git`,
//! `ADD git://host/repo.git` (the git daemon protocol, as BuildKit speaks
//! it, not Kaniko's https rewrite of `git://` contexts).
//!
//! The clone is [`crate::git::clone`]'s: the revision asked for at depth 1,
//! credentials from the same variables, submodules always (BuildKit checks
//! them out for every git source). What is added is the checkout without
//! its `.git` directories unless `--keep-git-dir` is given, with modes
//! reduced to what git records (0644, or 0755 for executables, 0755 for
//! directories) so the layer does not depend on the builder's umask.

use crate::error::{GitError, SourceError};
use crate::git::{clone, GitOptions};
use crate::spec::GitContext;
use crate::Env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A git source checked out for `ADD`.
#[derive(Debug, Clone)]
pub struct GitCheckout {
    /// The directory whose contents are added: the checkout, or its `:subdir`.
    pub root: PathBuf,
    /// The commit that was checked out (40 hex digits).
    pub commit: String,
    /// The commit's committer time, seconds since the epoch.
    pub commit_time: i64,
}

/// Parses an `ADD` source written as BuildKit writes git sources
/// (`URL[#REF[:SUBDIR]]`, `github.com/…` meaning https).
pub fn parse_source(src: &str) -> Result<GitContext, SourceError> {
    let spec = match src.strip_prefix("github.com/") {
        Some(rest) => format!("https://github.com/{rest}"),
        None => src.to_string(),
    };
    Ok(GitContext::parse(&spec)?)
}

/// Clones `source` into `dest` (a directory that must not exist yet) and
/// prepares its files for `ADD`. Errors do not repeat the source: the
/// caller names it.
pub fn checkout(
    source: &GitContext,
    keep_git_dir: bool,
    env: &Env,
    dest: &Path,
) -> Result<GitCheckout, SourceError> {
    crate::create_private_dir(dest).map_err(|source| SourceError::CreateDir {
        path: dest.to_path_buf(),
        source,
    })?;
    // `git://` is the daemon protocol here, whatever GIT_PULL_METHOD says
    // for contexts.
    let env = if source.url.starts_with("git://") {
        env.with("GIT_PULL_METHOD", "git")
    } else {
        env.clone()
    };
    let options = GitOptions {
        recurse_submodules: true,
        ..GitOptions::default()
    };
    clone(source, &options, &env, dest)?;
    let (commit, commit_time) = head_commit(dest)?;
    if !keep_git_dir {
        remove_git_dirs(dest).map_err(|source| SourceError::Prepare {
            what: "removing .git",
            source,
        })?;
    }
    normalize_modes(dest).map_err(|source| SourceError::Prepare {
        what: "setting modes",
        source,
    })?;
    let root = match &source.subdir {
        Some(sub) => {
            let root = dest.join(sub);
            let inside = match (root.canonicalize(), dest.canonicalize()) {
                (Ok(root), Ok(dest)) => root.starts_with(dest),
                _ => false,
            };
            if !root.is_dir() || !inside {
                return Err(SourceError::NotADirectory {
                    subdir: sub.clone(),
                    commit: Some(commit),
                });
            }
            root
        }
        None => dest.to_path_buf(),
    };
    Ok(GitCheckout {
        root,
        commit,
        commit_time,
    })
}

/// The checked-out commit and its committer time.
fn head_commit(dir: &Path) -> Result<(String, i64), GitError> {
    let repo = gix::open_opts(dir, gix::open::Options::isolated()).map_err(GitError::gix)?;
    let commit = repo.head_commit().map_err(GitError::gix)?;
    let time = commit.time().map_err(GitError::gix)?;
    Ok((commit.id.to_string(), time.seconds))
}

/// Removes every `.git` (the checkout's and its submodules'): git never
/// tracks a path of that name, so none of them is content.
fn remove_git_dirs(dir: &Path) -> std::io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        let kind = item.file_type()?;
        if item.file_name() == ".git" {
            if kind.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        } else if kind.is_dir() {
            remove_git_dirs(&path)?;
        }
    }
    Ok(())
}

/// Sets the modes git records, whatever the umask made of them. A kept
/// `.git` directory is left as it is.
fn normalize_modes(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        let kind = item.file_type()?;
        if item.file_name() == ".git" {
            continue;
        }
        if kind.is_dir() {
            normalize_modes(&path)?;
        } else if kind.is_file() {
            let mode = item.metadata()?.permissions().mode();
            let wanted = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_buildkit_writes_them() {
        let g = parse_source("github.com/moby/buildkit.git#v0.12:docs").unwrap();
        assert_eq!(g.url, "https://github.com/moby/buildkit.git");
        assert_eq!(g.reference.as_deref(), Some("v0.12"));
        assert_eq!(g.subdir.as_deref(), Some("docs"));
        let g = parse_source("git@github.com:org/repo.git").unwrap();
        assert_eq!(g.url, "git@github.com:org/repo.git");
        assert!(parse_source("https://h/r.git#main:../up").is_err());
    }
}
