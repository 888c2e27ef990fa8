//! An open root directory that a layer's entries are written in: the
//! kernel's `openat2(RESOLVE_IN_ROOT)` where it exists, else the shared
//! component walk one `O_NOFOLLOW` open at a time.
//!
//! The walk is hand-written rather than taken from `pathrs`: we need exactly
//! two operations (open a directory, open-or-create one), and pathrs brings a
//! much larger surface (its own procfs handling, handle types) for them. Both
//! paths are tested against each other.

use super::walk::{components, Walk};
use super::MAX_SYMLINKS;
use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// An open root directory to resolve paths in.
pub(crate) struct Root {
    fd: OwnedFd,
    use_openat2: AtomicBool,
}

impl Root {
    /// Opens `path` as the root.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            use_openat2: AtomicBool::new(true),
        })
    }

    /// Forces the hand-written walk (for tests, and once openat2 is found
    /// missing).
    #[cfg(test)]
    pub fn without_openat2(self) -> Root {
        self.use_openat2.store(false, Ordering::Relaxed);
        self
    }

    /// Opens the directory `rel` (relative, normalized) inside the root.
    pub fn open_dir(&self, rel: &Path) -> std::io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return Ok(rustix::io::dup(&self.fd)?);
        }
        if self.use_openat2.load(Ordering::Relaxed) {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
            match rfs::openat2(&self.fd, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOSYS) | Err(Errno::PERM) => {
                    tracing::debug!("openat2 unavailable; resolving paths component by component");
                    self.use_openat2.store(false, Ordering::Relaxed);
                }
                Err(Errno::AGAIN) => {} // concurrent rename in the root: fall back once
                Err(e) => return Err(e.into()),
            }
        }
        self.walk(rel)
    }

    /// Opens the directory `rel`, creating missing components with mode 0755
    /// (as tar and containerd do for parents a layer does not list).
    pub fn open_dir_create(&self, rel: &Path) -> std::io::Result<OwnedFd> {
        match self.open_dir(rel) {
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {}
            other => return other,
        }
        let mut parent = rustix::io::dup(&self.fd)?;
        let mut prefix = std::path::PathBuf::new();
        for component in rel.components() {
            prefix.push(component);
            parent = match self.open_dir(&prefix) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    // A dangling symlink here makes mkdirat fail with EEXIST:
                    // we never create through a link.
                    rfs::mkdirat(&parent, component.as_os_str(), Mode::from_raw_mode(0o755))?;
                    self.open_dir(&prefix)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(parent)
    }

    /// Opens the directory `rel` (relative, normalized) without following
    /// any symlink on the way; `None` when a component is missing (unless
    /// `create`, which makes it with mode 0755), is a symlink or is not a
    /// directory. Whiteouts and opaque markers name paths of the layer
    /// itself: one reached through a symlink (`link/.wh..wh..opq` with
    /// `link -> /`) would otherwise delete what the link points to.
    pub fn open_dir_no_follow(&self, rel: &Path, create: bool) -> std::io::Result<Option<OwnedFd>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut current = rustix::io::dup(&self.fd)?;
        for name in components(rel) {
            if name == ".." {
                return Ok(None);
            }
            current = match rfs::openat(&current, name.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    rfs::mkdirat(&current, name.as_os_str(), Mode::from_raw_mode(0o755))?;
                    rfs::openat(&current, name.as_os_str(), flags, Mode::empty())?
                }
                Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Some(current))
    }

    /// The hand-written in-root walk.
    fn walk(&self, rel: &Path) -> std::io::Result<OwnedFd> {
        let mut walk: Walk<OwnedFd> = Walk::new(rel, MAX_SYMLINKS);
        while let Some(name) = walk.next_name() {
            let current = walk.last().unwrap_or(&self.fd);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rfs::openat(current, name.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => walk.push(fd),
                Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                    let Ok(target) = rfs::readlinkat(current, name.as_os_str(), Vec::new()) else {
                        return Err(e.into());
                    };
                    let target = OsString::from_vec(target.into_bytes());
                    walk.follow(Path::new(&target))
                        .map_err(|_| std::io::Error::from(Errno::LOOP))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        match walk.into_reached().pop() {
            Some(fd) => Ok(fd),
            None => Ok(rustix::io::dup(&self.fd)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ino(fd: &OwnedFd) -> u64 {
        rfs::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn symlinks_resolve_inside_the_root_both_ways() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let r = root_dir.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::create_dir_all(r.join(outside.path().strip_prefix("/").unwrap())).unwrap();
        symlink("/usr/lib", r.join("abs")).unwrap();
        symlink("../../../../../../usr", r.join("up")).unwrap();
        symlink(outside.path(), r.join("escape")).unwrap();
        symlink("loop", r.join("loop")).unwrap();

        for root in [
            Root::open(r).unwrap(),
            Root::open(r).unwrap().without_openat2(),
        ] {
            let lib = ino(&root.open_dir(Path::new("usr/lib")).unwrap());
            assert_eq!(ino(&root.open_dir(Path::new("abs")).unwrap()), lib);
            assert_eq!(ino(&root.open_dir(Path::new("up/lib")).unwrap()), lib);
            // The absolute target names the copy inside the root, not the real dir.
            let contained = root.open_dir(Path::new("escape")).unwrap();
            assert_ne!(
                ino(&contained),
                std::fs::metadata(outside.path())
                    .map(|m| {
                        use std::os::unix::fs::MetadataExt;
                        m.ino()
                    })
                    .unwrap()
            );
            assert!(root.open_dir(Path::new("loop")).is_err());
        }
    }

    #[test]
    fn no_follow_opens_stop_at_any_symlink() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/", r.join("up")).unwrap();
        symlink("a", r.join("rel")).unwrap();
        std::fs::write(r.join("file"), b"x").unwrap();
        let root = Root::open(r).unwrap();
        let b = root.open_dir_no_follow(Path::new("a/b"), false).unwrap();
        assert_eq!(
            ino(&b.unwrap()),
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(r.join("a/b")).unwrap())
        );
        for rel in ["up", "up/a", "rel/b", "file", "missing"] {
            assert!(
                root.open_dir_no_follow(Path::new(rel), false)
                    .unwrap()
                    .is_none(),
                "{rel}"
            );
        }
        assert!(root
            .open_dir_no_follow(Path::new("up/x"), true)
            .unwrap()
            .is_none());
        assert!(root
            .open_dir_no_follow(Path::new("new/x"), true)
            .unwrap()
            .is_some());
        assert!(r.join("new/x").is_dir());
    }

    #[test]
    fn creates_missing_parents_but_not_through_dangling_links() {
        let root_dir = tempfile::tempdir().unwrap();
        symlink("/nowhere", root_dir.path().join("dangling")).unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        root.open_dir_create(Path::new("a/b/c")).unwrap();
        assert!(root_dir.path().join("a/b/c").is_dir());
        assert!(root.open_dir_create(Path::new("dangling/x")).is_err());
        assert!(!Path::new("/nowhere").exists());
    }
}
