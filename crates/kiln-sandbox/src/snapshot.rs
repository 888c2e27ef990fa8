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
        // Relative to open directories: a step may make a tree deeper than
        // PATH_MAX once the root's host path is in front of it.
        kiln_layer::deep::walk::<std::io::Error>(
            root,
            &|rel| exclude.contains(rel),
            |rel, st, link| {
                entries.insert(
                    rel,
                    Stat {
                        ino: st.st_ino,
                        size: st.st_size as u64,
                        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
                        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
                        mode: st.st_mode,
                        uid: st.st_uid,
                        gid: st.st_gid,
                        rdev: st.st_rdev,
                        link,
                    },
                );
                Ok(())
            },
        )
        .map_err(SandboxError::io("walking", root))?;
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
