//! Resolving a path inside a root to the host path it names, for callers
//! that need a path rather than an open directory (the sandbox's mount
//! targets, a build's `/etc/passwd`, bind mount sources, the build context).
//!
//! The walk goes by path, one `lstat` per component: the roots it serves are
//! private to one build and nothing else changes them while it runs, and a
//! missing component has no directory to hold open anyway.

use super::walk::{TooManyLinks, Walk};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Symlinks followed in one resolution before giving up, as Linux's
/// MAXSYMLINKS.
pub const MAX_SYMLINKS: usize = 40;

/// How [`in_root`] treats the last component, missing components, link
/// targets and link counts. The default follows a final link, keeps missing
/// components as written, takes any target and follows [`MAX_SYMLINKS`]
/// links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveOptions {
    follow_final: bool,
    refuse_missing: bool,
    utf8_targets: bool,
    max_links: usize,
}

impl Default for ResolveOptions {
    fn default() -> ResolveOptions {
        ResolveOptions {
            follow_final: true,
            refuse_missing: false,
            utf8_targets: false,
            max_links: MAX_SYMLINKS,
        }
    }
}

impl ResolveOptions {
    /// The default options.
    pub fn new() -> ResolveOptions {
        ResolveOptions::default()
    }

    /// Leaves a final symlink as it is: the result names the link, not
    /// where it leads (`lstat`, not `stat`).
    pub fn keep_final_link(mut self) -> ResolveOptions {
        self.follow_final = false;
        self
    }

    /// Fails with [`ResolveError::Missing`] at the first component that
    /// cannot be looked at, instead of keeping it and what follows as
    /// written (a missing component is then taken as no link).
    pub fn refuse_missing(mut self) -> ResolveOptions {
        self.refuse_missing = true;
        self
    }

    /// Fails with [`ResolveError::NonUtf8Target`] at a link whose target
    /// is not UTF-8, for callers that hand the result on as a string.
    pub fn utf8_targets(mut self) -> ResolveOptions {
        self.utf8_targets = true;
        self
    }

    /// Follows at most `max` symlinks (Docker's context walk allows 255).
    pub fn max_links(mut self, max: usize) -> ResolveOptions {
        self.max_links = max;
        self
    }
}

/// Why a path could not be resolved inside its root.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Following its links took more hops than allowed (a loop, most
    /// likely).
    #[error("{}: too many levels of symbolic links", path.display())]
    TooManyLinks {
        /// The path as given.
        path: PathBuf,
    },
    /// A link met on the way has a target that is not UTF-8.
    #[error("{}: symbolic link target is not valid UTF-8", link.display())]
    NonUtf8Target {
        /// The link, on the host.
        link: PathBuf,
    },
    /// A link met on the way could not be read.
    #[error("{}: {source}", path.display())]
    ReadLink {
        /// The link, on the host.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A component could not be looked at (with
    /// [`ResolveOptions::refuse_missing`]).
    #[error("{}: {source}", path.display())]
    Missing {
        /// The component, on the host.
        path: PathBuf,
        /// Why: not found, not a directory above it, …
        source: io::Error,
    },
}

/// The host path of `path` inside `root`, read as if `root` were `/`: `..`
/// stops at the root, and every symlink on the way (absolute or relative,
/// the last one unless [`ResolveOptions::keep_final_link`]) resolves inside
/// the root, so no link can lead the result out of it. The result is `root`
/// joined with plain names only: it holds no `..` and no symlink but,
/// possibly, its last component.
///
/// # Errors
/// See [`ResolveError`].
pub fn in_root(
    root: &Path,
    path: impl AsRef<Path>,
    options: ResolveOptions,
) -> Result<PathBuf, ResolveError> {
    let path = path.as_ref();
    let mut walk: Walk<OsString> = Walk::new(path, options.max_links);
    while let Some(name) = walk.next_name() {
        if walk.at_last() && !options.follow_final {
            walk.push(name);
            continue;
        }
        let candidate = host_path(root, walk.reached()).join(&name);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    fs::read_link(&candidate).map_err(|source| ResolveError::ReadLink {
                        path: candidate.clone(),
                        source,
                    })?;
                if options.utf8_targets && target.to_str().is_none() {
                    return Err(ResolveError::NonUtf8Target { link: candidate });
                }
                walk.follow(&target)
                    .map_err(|TooManyLinks| ResolveError::TooManyLinks {
                        path: path.to_path_buf(),
                    })?;
            }
            Ok(_) => walk.push(name),
            Err(source) if options.refuse_missing => {
                return Err(ResolveError::Missing {
                    path: candidate,
                    source,
                })
            }
            // Nothing there is a link: the name stays as written, and a
            // `..` after it undoes it as it would any other name.
            Err(_) => walk.push(name),
        }
    }
    Ok(host_path(root, walk.reached()))
}

fn host_path(root: &Path, names: &[OsString]) -> PathBuf {
    let mut out = root.to_path_buf();
    out.extend(names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    fn resolve(root: &Path, path: &str) -> Result<PathBuf, ResolveError> {
        in_root(root, path, ResolveOptions::new())
    }

    #[test]
    fn absolute_and_relative_links_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("/usr/lib", r.join("abs")).unwrap();
        symlink("usr/lib", r.join("rel")).unwrap();
        symlink("lib/x", r.join("usr/here")).unwrap();
        assert_eq!(resolve(r, "/abs/a.so").unwrap(), r.join("usr/lib/a.so"));
        assert_eq!(resolve(r, "rel").unwrap(), r.join("usr/lib"));
        // A relative target starts from the link's directory.
        assert_eq!(resolve(r, "/usr/here").unwrap(), r.join("usr/lib/x"));
        assert_eq!(resolve(r, "/").unwrap(), r);
    }

    #[test]
    fn dot_dot_above_the_root_stays_at_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("etc")).unwrap();
        symlink("../../../../../etc", r.join("up")).unwrap();
        assert_eq!(
            resolve(r, "/../../etc/passwd").unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(resolve(r, "/up/passwd").unwrap(), r.join("etc/passwd"));
    }

    #[test]
    fn a_link_out_of_the_root_stays_inside() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "x").unwrap();
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        symlink(outside.path().join("secret"), r.join("escape")).unwrap();
        symlink("/etc/passwd", r.join("hosts")).unwrap();
        let inside = outside.path().strip_prefix("/").unwrap().join("secret");
        assert_eq!(resolve(r, "/escape").unwrap(), r.join(inside));
        assert_eq!(resolve(r, "/hosts").unwrap(), r.join("etc/passwd"));
    }

    #[test]
    fn a_link_loop_is_an_error_naming_the_path() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        symlink("/b", r.join("a")).unwrap();
        symlink("a", r.join("b")).unwrap();
        let e = resolve(r, "/a/x").unwrap_err();
        assert!(matches!(&e, ResolveError::TooManyLinks { path } if path == Path::new("/a/x")));
        assert_eq!(e.to_string(), "/a/x: too many levels of symbolic links");
    }

    #[test]
    fn the_hop_limit_counts_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("d")).unwrap();
        symlink("d", r.join("l0")).unwrap();
        for i in 1..=3 {
            symlink(format!("l{}", i - 1), r.join(format!("l{i}"))).unwrap();
        }
        // l3 -> l2 -> l1 -> l0 -> d: four links.
        let options = ResolveOptions::new().max_links(4);
        assert_eq!(in_root(r, "/l3", options).unwrap(), r.join("d"));
        let options = ResolveOptions::new().max_links(3);
        assert!(matches!(
            in_root(r, "/l3", options),
            Err(ResolveError::TooManyLinks { .. })
        ));
    }

    #[test]
    fn a_final_link_is_followed_or_kept() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("dir")).unwrap();
        symlink("/dir", r.join("link")).unwrap();
        symlink("/dir", r.join("dir/self")).unwrap();
        let keep = ResolveOptions::new().keep_final_link();
        assert_eq!(resolve(r, "/link").unwrap(), r.join("dir"));
        assert_eq!(in_root(r, "/link", keep).unwrap(), r.join("link"));
        // Only the last one is kept: links before it are followed.
        assert_eq!(in_root(r, "/link/self", keep).unwrap(), r.join("dir/self"));
        // `link/..` goes through the link: it is not the last component.
        assert_eq!(in_root(r, "/dir/self/..", keep).unwrap(), r);
    }

    #[test]
    fn a_missing_component_is_kept_or_refused() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("file"), "x").unwrap();
        symlink("/etc", r.join("link")).unwrap();
        assert_eq!(resolve(r, "/none/a/b").unwrap(), r.join("none/a/b"));
        assert_eq!(resolve(r, "/none/../link").unwrap(), r.join("etc"));
        assert_eq!(resolve(r, "/file/x").unwrap(), r.join("file/x"));

        let refuse = ResolveOptions::new().refuse_missing();
        assert_eq!(in_root(r, "/link", refuse).unwrap(), r.join("etc"));
        let e = in_root(r, "/link/none/a", refuse).unwrap_err();
        assert!(
            matches!(&e, ResolveError::Missing { path, source }
                if path == &r.join("etc/none") && source.kind() == io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(matches!(
            in_root(r, "/file/x", refuse),
            Err(ResolveError::Missing { .. })
        ));
    }

    #[test]
    fn non_utf8_targets_are_followed_or_refused() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let target = Path::new(std::ffi::OsStr::from_bytes(b"/d\xff"));
        symlink(target, r.join("link")).unwrap();
        let d = std::ffi::OsStr::from_bytes(b"d\xff");
        assert_eq!(resolve(r, "/link/x").unwrap(), r.join(d).join("x"));
        let e = in_root(r, "/link/x", ResolveOptions::new().utf8_targets()).unwrap_err();
        assert!(matches!(&e, ResolveError::NonUtf8Target { link } if link == &r.join("link")));
    }
}
