//! The build context: the directory COPY and ADD read from.
//!
//! A context is a directory (`DIR` or `dir://DIR`) or a tar archive
//! (`tar://PATH`, plain or compressed) extracted into a private directory the
//! caller owns. `--context-sub-path` narrows it to a subdirectory.
//!
//! Nothing outside the context root is ever read. Source paths are resolved
//! the way BuildKit resolves them (`fs.RootPath`): every component, including
//! symlinks met on the way, is interpreted as if the context root were `/`, so
//! `..` stops at the root and a symlink to `/etc/passwd` means
//! `<root>/etc/passwd`. Symlinks found inside a copied directory are not
//! followed; they are copied as symlinks.
//!
//! `.dockerignore` exclusions are applied through [`PathMatcher`]: excluded
//! paths do not exist for COPY, and an excluded directory is descended only
//! when the matcher says an exception might re-include something below it.

use kiln_layer::resolve::{in_root, ResolveError, ResolveOptions};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a context could not be opened or a path in it used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The context location uses a scheme kiln does not read.
    #[error("unsupported build context {spec:?}: use a directory, dir://DIR or tar://PATH")]
    UnsupportedScheme {
        /// The context as given.
        spec: String,
    },
    /// The context directory is missing or not a directory.
    #[error("build context {path}: not a directory")]
    NotADirectory {
        /// The directory.
        path: PathBuf,
    },
    /// Reading the context failed.
    #[error("build context {path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A tar context could not be extracted.
    #[error("build context archive {path}: {source}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        source: crate::archive::ArchiveError,
    },
    /// A source path does not exist in the context.
    #[error("{path:?}: not found in the build context")]
    NotFound {
        /// The path as written.
        path: String,
    },
    /// A source path exists but is excluded by .dockerignore.
    #[error("{path:?}: excluded by .dockerignore")]
    Excluded {
        /// The path as written.
        path: String,
    },
    /// The ignore file does not parse.
    #[error("{path}: {source}")]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// What is wrong in it.
        source: kiln_dockerfile::ignore::IgnoreError,
    },
    /// A file name in the context is not UTF-8.
    #[error("{path}: file names must be valid UTF-8")]
    NonUtf8 {
        /// The offending path.
        path: PathBuf,
    },
    /// Symlinks in a source path loop.
    #[error("{path:?}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The path as written.
        path: String,
    },
}

/// Exclusion rules (`.dockerignore`, `--exclude`) as COPY needs them. Paths
/// are relative, `/`-separated, without a leading `./`.
pub trait PathMatcher: Send + Sync {
    /// True when `rel_path` is excluded.
    fn matches(&self, rel_path: &str) -> bool;
    /// True when an excluded directory can be skipped whole: no exception
    /// pattern could re-include anything below it.
    fn may_skip_dir(&self, rel_dir: &str) -> bool;
}

impl PathMatcher for kiln_dockerfile::ignore::DockerIgnore {
    fn matches(&self, rel_path: &str) -> bool {
        kiln_dockerfile::ignore::DockerIgnore::matches(self, rel_path)
    }
    fn may_skip_dir(&self, rel_dir: &str) -> bool {
        kiln_dockerfile::ignore::DockerIgnore::may_skip_dir(self, rel_dir)
    }
}

/// Where the context comes from, parsed from `--context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSpec {
    /// A local directory.
    Dir(PathBuf),
    /// A local tar archive (plain, gzip, bzip2, xz or zstd).
    Tar(PathBuf),
}

impl ContextSpec {
    /// Parses `DIR`, `dir://DIR` or `tar://PATH`.
    pub fn parse(spec: &str) -> Result<ContextSpec, ContextError> {
        if let Some(p) = spec.strip_prefix("dir://") {
            return Ok(ContextSpec::Dir(PathBuf::from(p)));
        }
        if let Some(p) = spec.strip_prefix("tar://") {
            return Ok(ContextSpec::Tar(PathBuf::from(p)));
        }
        if spec.contains("://") {
            return Err(ContextError::UnsupportedScheme {
                spec: spec.to_string(),
            });
        }
        Ok(ContextSpec::Dir(PathBuf::from(spec)))
    }
}

/// A file or directory found in the context.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    /// Path relative to the context root, `/`-separated; empty for the root.
    pub rel: String,
    /// Path on disk.
    pub abs: PathBuf,
    /// Its metadata (not following a final symlink).
    pub meta: fs::Metadata,
}

/// An opened build context.
#[derive(Clone)]
pub struct BuildContext {
    root: PathBuf,
    ignore: Option<Arc<dyn PathMatcher>>,
}

impl std::fmt::Debug for BuildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContext")
            .field("root", &self.root)
            .field("ignore", &self.ignore.is_some())
            .finish()
    }
}

/// Symlink hops allowed while resolving one path (Linux's limit is 40; BuildKit uses 255).
const MAX_SYMLINK_HOPS: usize = 255;

impl BuildContext {
    /// A context over an existing directory, with no exclusions. Also used for
    /// `COPY --from` over a stage's root filesystem.
    pub fn from_dir(root: &Path) -> Result<BuildContext, ContextError> {
        let root = fs::canonicalize(root).map_err(|source| ContextError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(ContextError::NotADirectory { path: root });
        }
        Ok(BuildContext { root, ignore: None })
    }

    /// Opens `spec`. A tar context is extracted into `extract_dir` (private to
    /// this build; created if missing). `sub_path` narrows the context to a
    /// subdirectory, resolved inside the context like any source path.
    pub fn open(
        spec: &ContextSpec,
        sub_path: Option<&str>,
        extract_dir: &Path,
    ) -> Result<BuildContext, ContextError> {
        let base = match spec {
            ContextSpec::Dir(dir) => BuildContext::from_dir(dir)?,
            ContextSpec::Tar(archive) => {
                fs::create_dir_all(extract_dir).map_err(|source| ContextError::Io {
                    path: extract_dir.to_path_buf(),
                    source,
                })?;
                crate::archive::extract_to_dir(archive, extract_dir).map_err(|source| {
                    ContextError::Archive {
                        path: archive.clone(),
                        source,
                    }
                })?;
                BuildContext::from_dir(extract_dir)?
            }
        };
        match sub_path.filter(|p| !p.is_empty() && *p != ".") {
            None => Ok(base),
            Some(sub) => {
                let entry = base.lookup(sub)?;
                if !entry.meta.is_dir() {
                    return Err(ContextError::NotADirectory { path: entry.abs });
                }
                BuildContext::from_dir(&entry.abs)
            }
        }
    }

    /// Applies exclusion rules (normally the parsed `.dockerignore`).
    pub fn with_ignore(mut self, matcher: Arc<dyn PathMatcher>) -> BuildContext {
        self.ignore = Some(matcher);
        self
    }

    /// Reads and applies the build's ignore file (see [`read_dockerignore`]);
    /// returns the context unchanged when there is none.
    pub fn with_dockerignore(
        self,
        dockerfile: Option<&Path>,
    ) -> Result<BuildContext, ContextError> {
        match read_dockerignore(&self.root, dockerfile)? {
            None => Ok(self),
            Some((path, text)) => {
                let rules = kiln_dockerfile::ignore::DockerIgnore::parse(&text)
                    .map_err(|source| ContextError::Ignore { path, source })?;
                Ok(self.with_ignore(Arc::new(rules)))
            }
        }
    }

    /// The context root on disk.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when `rel` is excluded by the context's ignore rules.
    pub fn is_excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.as_ref().is_some_and(|m| m.matches(rel))
    }

    /// Resolves `path` (as written in the Dockerfile) to a context-relative
    /// path, following symlinks within the root, final component included.
    /// Never fails for a missing path: existence is checked by [`lookup`](Self::lookup).
    pub fn resolve(&self, path: &str) -> Result<String, ContextError> {
        self.resolve_inner(path, true)
    }

    /// Resolves `path` like [`resolve`](Self::resolve) but leaves a final
    /// symlink unfollowed (for entries met while walking).
    pub fn resolve_parent(&self, path: &str) -> Result<String, ContextError> {
        self.resolve_inner(path, false)
    }

    fn resolve_inner(&self, path: &str, follow_final: bool) -> Result<String, ContextError> {
        let mut options = ResolveOptions::new()
            .max_links(MAX_SYMLINK_HOPS)
            .utf8_targets();
        if !follow_final {
            options = options.keep_final_link();
        }
        // A missing component stays as written; the caller reports "not found".
        let host = in_root(&self.root, path, options).map_err(|e| match e {
            ResolveError::TooManyLinks { .. } => ContextError::SymlinkLoop {
                path: path.to_string(),
            },
            ResolveError::NonUtf8Target { link } => ContextError::NonUtf8 { path: link },
            ResolveError::ReadLink { path, source } => ContextError::Io { path, source },
            other => ContextError::Io {
                path: self.root.join(path),
                source: io::Error::other(other),
            },
        })?;
        // The root joined with names from `path` and UTF-8 link targets.
        let rel = host.strip_prefix(&self.root).unwrap_or(Path::new(""));
        rel.to_str()
            .map(str::to_string)
            .ok_or(ContextError::NonUtf8 { path: host.clone() })
    }

    /// Finds `path` in the context, following symlinks inside the root.
    /// Errors name `path` when it is missing or excluded.
    pub fn lookup(&self, path: &str) -> Result<ContextEntry, ContextError> {
        let rel = self.resolve(path)?;
        let abs = self.root.join(&rel);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) if !m.file_type().is_symlink() => m,
            // A dangling link (its target missing) is "not found", as in BuildKit.
            Ok(_) => {
                return Err(ContextError::NotFound {
                    path: path.to_string(),
                })
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(ContextError::NotFound {
                    path: path.to_string(),
                })
            }
            Err(source) => return Err(ContextError::Io { path: abs, source }),
        };
        if self.is_excluded(&rel) {
            let descendable =
                meta.is_dir() && self.ignore.as_ref().is_some_and(|m| !m.may_skip_dir(&rel));
            if !descendable {
                return Err(ContextError::Excluded {
                    path: path.to_string(),
                });
            }
        }
        Ok(ContextEntry { rel, abs, meta })
    }

    /// Lists the directory `dir` (a resolved context-relative path)
    /// recursively, in sorted order, parents before children, without
    /// following symlinks and without excluded paths. An excluded directory is
    /// listed only when something below it is re-included by an exception.
    pub fn walk(&self, dir: &str) -> Result<Vec<ContextEntry>, ContextError> {
        let mut out = Vec::new();
        self.walk_into(dir, &mut out)?;
        Ok(out)
    }

    fn walk_into(&self, dir: &str, out: &mut Vec<ContextEntry>) -> Result<(), ContextError> {
        let abs_dir = self.root.join(dir);
        let io_err = |source| ContextError::Io {
            path: abs_dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for item in fs::read_dir(&abs_dir).map_err(io_err)? {
            let item = item.map_err(io_err)?;
            let name = item
                .file_name()
                .into_string()
                .map_err(|_| ContextError::NonUtf8 { path: item.path() })?;
            names.push(name);
        }
        names.sort();
        for name in names {
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let abs = self.root.join(&rel);
            let meta = fs::symlink_metadata(&abs).map_err(|source| ContextError::Io {
                path: abs.clone(),
                source,
            })?;
            let excluded = self.is_excluded(&rel);
            if meta.is_dir() {
                if excluded && self.ignore.as_ref().is_some_and(|m| m.may_skip_dir(&rel)) {
                    continue;
                }
                let mark = out.len();
                out.push(ContextEntry {
                    rel: rel.clone(),
                    abs,
                    meta,
                });
                self.walk_into(&rel, out)?;
                // An excluded directory stays only as the parent of re-included entries.
                if excluded && out.len() == mark + 1 {
                    out.pop();
                }
            } else if !excluded {
                out.push(ContextEntry { rel, abs, meta });
            }
        }
        Ok(())
    }
}

/// Finds the ignore file for a build: `<Dockerfile>.dockerignore` next to the
/// Dockerfile wins over `.dockerignore` at the context root, as in Docker.
/// Returns the file used and its text, or `None` when there is neither.
pub fn read_dockerignore(
    context_root: &Path,
    dockerfile: Option<&Path>,
) -> Result<Option<(PathBuf, String)>, ContextError> {
    let mut candidates = Vec::new();
    if let Some(df) = dockerfile {
        if let Some(name) = df.file_name() {
            let mut n = name.to_os_string();
            n.push(".dockerignore");
            candidates.push(df.with_file_name(n));
        }
    }
    candidates.push(context_root.join(".dockerignore"));
    for c in candidates {
        match fs::read_to_string(&c) {
            Ok(text) => return Ok(Some((c, text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ContextError::Io { path: c, source }),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ctx() -> (tempfile::TempDir, BuildContext) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("ctx");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f.txt"), "x").unwrap();
        fs::write(t.path().join("secret"), "s").unwrap();
        let c = BuildContext::from_dir(&root).unwrap();
        (t, c)
    }

    #[test]
    fn parses_specs() {
        assert_eq!(
            ContextSpec::parse("dir:///x").unwrap(),
            ContextSpec::Dir("/x".into())
        );
        assert_eq!(
            ContextSpec::parse("tar://c.tgz").unwrap(),
            ContextSpec::Tar("c.tgz".into())
        );
        assert_eq!(
            ContextSpec::parse("./ctx").unwrap(),
            ContextSpec::Dir("./ctx".into())
        );
        assert!(matches!(
            ContextSpec::parse("s3://b/k"),
            Err(ContextError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn dotdot_and_absolute_stay_inside() {
        let (_t, c) = ctx();
        assert_eq!(c.resolve("../../a/b/f.txt").unwrap(), "a/b/f.txt");
        assert_eq!(c.resolve("/a/./b/../b/f.txt").unwrap(), "a/b/f.txt");
        assert!(matches!(
            c.lookup("../secret"),
            Err(ContextError::NotFound { .. })
        ));
    }

    #[test]
    fn symlinks_resolve_as_if_root_were_slash() {
        let (t, c) = ctx();
        symlink("/a/b", c.root().join("abs")).unwrap();
        symlink("../../../secret", c.root().join("a/out")).unwrap();
        symlink(t.path().join("secret"), c.root().join("hostabs")).unwrap();
        symlink("loop", c.root().join("loop")).unwrap();
        assert_eq!(c.resolve("abs/f.txt").unwrap(), "a/b/f.txt");
        assert_eq!(c.resolve("a/out").unwrap(), "secret");
        assert!(matches!(
            c.lookup("a/out"),
            Err(ContextError::NotFound { .. })
        ));
        assert!(matches!(
            c.lookup("hostabs"),
            Err(ContextError::NotFound { .. })
        ));
        assert!(matches!(
            c.lookup("loop"),
            Err(ContextError::SymlinkLoop { .. })
        ));
        assert_eq!(c.resolve_parent("abs").unwrap(), "abs");
    }

    #[test]
    fn a_chain_of_255_links_resolves_and_one_more_is_a_loop() {
        let (_t, c) = ctx();
        fs::create_dir(c.root().join("d")).unwrap();
        symlink("d", c.root().join("l0")).unwrap();
        for i in 1..=255 {
            symlink(format!("l{}", i - 1), c.root().join(format!("l{i}"))).unwrap();
        }
        // l254 is 255 links from d, l255 is 256.
        assert_eq!(c.resolve("l254").unwrap(), "d");
        let e = c.resolve("l255").unwrap_err();
        assert_eq!(e.to_string(), "\"l255\": too many levels of symbolic links");
        assert_eq!(c.resolve_parent("l255").unwrap(), "l255");
    }

    #[test]
    fn a_link_whose_target_is_not_utf8_names_the_link() {
        use std::os::unix::ffi::OsStrExt;
        let (_t, c) = ctx();
        let target = std::ffi::OsStr::from_bytes(b"x\xff");
        symlink(target, c.root().join("bad")).unwrap();
        let e = c.resolve("bad/f").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: file names must be valid UTF-8",
                c.root().join("bad").display()
            )
        );
    }
}
