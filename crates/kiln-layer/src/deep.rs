//! Trees deeper than `PATH_MAX`, walked and read relative to open
//! directories.
//!
//! A step sees paths from its own root, so it can make a tree whose paths
//! fit in `PATH_MAX` (4096 bytes) there but not once the root's own host
//! path is put in front: every call that takes a whole host path fails with
//! ENAMETOOLONG. The walk here therefore names entries relative to open
//! directories (`openat`, `fstatat`, `readlinkat`), keeping a bounded
//! number of them open and, below that depth, going back up through `..`
//! checked against the directory it came from; and a
//! path too long to name whole is reached through `/proc/self/fd/N/name`,
//! where N is its parent directory opened component by component.

use rustix::fs::{self as rfs, AtFlags, Dir, Mode, OFlags, Stat};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Host paths shorter than this are used as they are.
const SHORT: usize = 3800;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Directories above the current one kept open, to come back to without
/// a lookup; deeper than this the walk goes back up through `..`.
const KEEP_OPEN: usize = 64;

/// One directory of the walk: its entries still to visit, its path
/// relative to the root, its identity (to check the way back up through
/// `..`), and, while the walk is below it, the directory itself when
/// it was kept open.
struct Level {
    names: Vec<OsString>,
    rel: PathBuf,
    id: (u64, u64),
    kept: Option<OwnedFd>,
}

/// Calls `visit(rel, stat, link target)` for every entry under `root`
/// (the root itself left out), parents before their contents and each
/// directory's entries in byte order of their names, not descending into
/// `skip(rel)` paths and never following a symlink. At most
/// `KEEP_OPEN` (64) + 2 directories are open at once, however deep the tree.
///
/// # Errors
/// The first error of the walk or of `visit`.
pub fn walk<E: From<io::Error>>(
    root: &Path,
    skip: &dyn Fn(&Path) -> bool,
    mut visit: impl FnMut(PathBuf, &Stat, Option<PathBuf>) -> Result<(), E>,
) -> Result<(), E> {
    walk_at(root, skip, |rel, st, link, _| visit(rel, st, link))
}

/// Where the walk found an entry: its parent directory, open, and its
/// name there. System calls relative to it (`openat`, `linkat`) look up
/// one name instead of the whole host path again.
#[derive(Clone, Copy)]
pub struct At<'a> {
    /// The directory the entry is in.
    pub dir: BorrowedFd<'a>,
    /// The entry's name in it.
    pub name: &'a OsStr,
}

/// [`walk`], with each entry's open parent directory and name as well.
///
/// # Errors
/// The first error of the walk or of `visit`.
pub fn walk_at<E: From<io::Error>>(
    root: &Path,
    skip: &dyn Fn(&Path) -> bool,
    mut visit: impl FnMut(PathBuf, &Stat, Option<PathBuf>, At<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut current = rfs::open(root, DIR_FLAGS, Mode::empty()).map_err(io::Error::from)?;
    let mut stack = vec![Level {
        names: names(&current)?,
        rel: PathBuf::new(),
        id: id(&rfs::fstat(&current).map_err(io::Error::from)?),
        kept: None,
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.pop() else {
            stack.pop();
            if let Some(parent) = stack.last_mut() {
                if let Some(fd) = parent.kept.take() {
                    current = fd;
                    continue;
                }
                let up = rfs::openat(&current, "..", DIR_FLAGS, Mode::empty())
                    .map_err(io::Error::from)?;
                if id(&rfs::fstat(&up).map_err(io::Error::from)?) != parent.id {
                    return Err(io::Error::other(format!(
                        "{} moved while it was read",
                        parent.rel.display()
                    ))
                    .into());
                }
                current = up;
            }
            continue;
        };
        let rel = level.rel.join(&name);
        if skip(&rel) {
            continue;
        }
        let st = match rfs::statat(&current, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed since the directory was read (a step's leftover
            // background process): not part of the tree any more.
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(io::Error::from(e).into()),
        };
        let kind = rfs::FileType::from_raw_mode(st.st_mode);
        let link = if kind == rfs::FileType::Symlink {
            let target =
                rfs::readlinkat(&current, name.as_os_str(), Vec::new()).map_err(io::Error::from)?;
            Some(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
        } else {
            None
        };
        let at = At {
            dir: current.as_fd(),
            name: name.as_os_str(),
        };
        visit(rel.clone(), &st, link, at)?;
        if kind == rfs::FileType::Directory {
            let child = rfs::openat(&current, name.as_os_str(), DIR_FLAGS, Mode::empty())
                .map_err(io::Error::from)?;
            let child_id = id(&rfs::fstat(&child).map_err(io::Error::from)?);
            if child_id != id(&st) {
                return Err(io::Error::other(format!(
                    "{} changed while it was read",
                    rel.display()
                ))
                .into());
            }
            let names = names(&child)?;
            let above = std::mem::replace(&mut current, child);
            if stack.len() <= KEEP_OPEN {
                if let Some(level) = stack.last_mut() {
                    level.kept = Some(above);
                }
            }
            stack.push(Level {
                names,
                rel,
                id: child_id,
                kept: None,
            });
        }
    }
    Ok(())
}

fn id(st: &Stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// The names in a directory, without `.` and `..`, in reverse byte order
/// (the walk pops them from the end).
fn names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    Ok(out)
}

/// A host path for `root/rel` that system calls accept: itself when short
/// enough, else `/proc/self/fd/N/name` with N its parent directory, opened
/// component by component without following symlinks (kept open as long as
/// this value lives).
pub struct HostPath {
    path: PathBuf,
    _parent: Option<OwnedFd>,
}

impl HostPath {
    /// `root/rel`, reachable.
    ///
    /// # Errors
    /// When a directory on the way cannot be opened (or is a symlink).
    pub fn new(root: &Path, rel: &Path) -> io::Result<HostPath> {
        let whole = root.join(rel);
        if whole.as_os_str().len() < SHORT {
            return Ok(HostPath {
                path: whole,
                _parent: None,
            });
        }
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{}: no file name", rel.display())))?;
        let mut dir = rfs::open(root, DIR_FLAGS, Mode::empty())?;
        for part in rel.parent().into_iter().flat_map(Path::components) {
            dir = rfs::openat(&dir, part.as_os_str(), DIR_FLAGS, Mode::empty())?;
        }
        Ok(HostPath {
            path: PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name),
            _parent: Some(dir),
        })
    }

    /// The path to hand to system calls.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree whose deepest file's host path is over 5000 bytes.
    fn deep_tree(root: &Path) -> PathBuf {
        let mut rel = PathBuf::new();
        let mut dir = rfs::open(root, DIR_FLAGS, Mode::empty()).unwrap();
        for i in 0..50 {
            let name = format!("{i:0100}");
            rfs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            dir = rfs::openat(&dir, name.as_str(), DIR_FLAGS, Mode::empty()).unwrap();
            rel.push(name);
        }
        let f = rfs::openat(
            &dir,
            "deepest",
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, b"deep").unwrap();
        rfs::symlinkat("/", &dir, "up").unwrap();
        rel.join("deepest")
    }

    #[test]
    fn deeper_than_the_directories_kept_open_the_walk_comes_back_through_dotdot() {
        let t = tempfile::tempdir().unwrap();
        let mut dir = t.path().to_path_buf();
        for _ in 0..(KEEP_OPEN * 2) {
            dir.push("d");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("f"), b"x").unwrap();
        }
        let mut seen = Vec::new();
        walk::<io::Error>(t.path(), &|_| false, |rel, _, _| {
            seen.push(rel);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), KEEP_OPEN * 4);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
    }

    #[test]
    fn a_tree_deeper_than_path_max_is_walked_and_read() {
        let t = tempfile::tempdir().unwrap();
        let deepest = deep_tree(t.path());
        assert!(t.path().join(&deepest).as_os_str().len() > 4096);
        let mut seen = Vec::new();
        walk::<io::Error>(t.path(), &|_| false, |rel, _, link| {
            seen.push((rel, link));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 52);
        assert!(seen.contains(&(deepest.clone(), None)));
        // Parents first, names in order.
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert!(seen.contains(&(deepest.with_file_name("up"), Some(PathBuf::from("/")))));
        let host = HostPath::new(t.path(), &deepest).unwrap();
        assert_eq!(std::fs::read(host.path()).unwrap(), b"deep");
        // Skipped paths are not entered.
        let first = seen[0].0.clone();
        let mut count = 0;
        walk::<io::Error>(t.path(), &|rel| rel == first, |_, _, _| {
            count += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 0);
    }
}
