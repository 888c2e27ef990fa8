//! Chroot isolation's change detection: a metadata snapshot of the whole
//! tree before and after the step, compared path by path.
//!
//! An entry counts as changed when any of inode, size, mtime, ctime, mode,
//! owner, device number or link target differs. The kernel updates ctime on
//! every content, metadata or link-count change and it cannot be set from
//! user space, so a change that keeps size and mtime (`touch -d`, a same-size
//! rewrite with the old mtime restored) is still seen. The walk costs a
//! `stat` per file of the root: that is the price of working without mounts.

use crate::error::{Result, SandboxError};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What is compared for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    link: Option<PathBuf>,
}

/// Metadata of every path under a root, keyed by path relative to it.
#[derive(Debug, Default)]
pub struct Snapshot {
    entries: BTreeMap<PathBuf, Stat>,
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Added or changed: archived as it is now.
    Write(PathBuf),
    /// Gone: archived as a whiteout.
    Delete(PathBuf),
}

impl Snapshot {
    /// Takes a snapshot of `root`, leaving out `exclude` (relative paths)
    /// and everything under them.
    pub fn take(root: &Path, exclude: &BTreeSet<PathBuf>) -> Result<Snapshot> {
        let mut entries = BTreeMap::new();
        let walk = walkdir::WalkDir::new(root)
            .min_depth(1)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| {
                e.path()
                    .strip_prefix(root)
                    .map(|rel| !exclude.contains(rel))
                    .unwrap_or(true)
            });
        for item in walk {
            let item = item.map_err(|e| SandboxError::Io {
                action: "walking",
                path: e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.into()),
                source: e.into(),
            })?;
            let meta = item
                .metadata()
                .map_err(|e| SandboxError::io("reading", item.path())(e.into()))?;
            let link = if meta.file_type().is_symlink() {
                Some(
                    std::fs::read_link(item.path())
                        .map_err(SandboxError::io("reading", item.path()))?,
                )
            } else {
                None
            };
            let rel = item
                .path()
                .strip_prefix(root)
                .expect("under root")
                .to_path_buf();
            entries.insert(
                rel,
                Stat {
                    ino: meta.ino(),
                    size: meta.size(),
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    ctime: (meta.ctime(), meta.ctime_nsec()),
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    rdev: meta.rdev(),
                    link,
                },
            );
        }
        Ok(Snapshot { entries })
    }

    /// What changed from `self` to `after`, sorted by path. A deletion under
    /// a deleted directory, or under a path that is no longer a directory,
    /// is implied by that parent and left out.
    pub fn diff(&self, after: &Snapshot) -> Vec<Change> {
        let mut out = Vec::new();
        for (path, now) in &after.entries {
            if self.entries.get(path) != Some(now) {
                out.push(Change::Write(path.clone()));
            }
        }
        for path in self.entries.keys() {
            if after.entries.contains_key(path) {
                continue;
            }
            let implied = path.ancestors().skip(1).any(|a| {
                !a.as_os_str().is_empty()
                    && match after.entries.get(a) {
                        None => true,
                        Some(s) => s.mode & libc::S_IFMT != libc::S_IFDIR,
                    }
            });
            if !implied {
                out.push(Change::Delete(path.clone()));
            }
        }
        out.sort_by(|a, b| key(a).cmp(key(b)));
        out
    }
}

fn key(c: &Change) -> &Path {
    match c {
        Change::Write(p) | Change::Delete(p) => p,
    }
}
