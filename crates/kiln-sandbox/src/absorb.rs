//! Folding a step's changes into the root filesystem it ran on, so the next
//! step starts from it without unpacking the layer just written.
//!
//! An overlay upper dir is moved into the lower root entry by entry: new
//! subtrees are renamed in whole (one `rename` however many files they
//! hold), whiteouts delete, opaque directories empty the lower directory
//! first, and directories present on both sides get the upper copy's
//! metadata after their contents. The result is what applying the step's
//! layer would give, at the cost of a few renames instead of a decompress,
//! a write of every file, and a delete of the upper dir. (On disks where
//! unlinking is slow, that delete alone cost more than the step.)

use crate::changes::{is_opaque, is_whiteout, Changes};
use crate::error::{Result, SandboxError};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Overlay's own extended attributes: never part of the image.
const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

impl Changes {
    /// Makes `root` hold the step's changes. For a root changed in place
    /// (chroot isolation) there is nothing to do; for an overlay upper dir
    /// the entries are moved into `root` (the overlay's single lower dir),
    /// leaving the upper dir with only the paths the sandbox itself made.
    pub fn absorb_into(&self, root: &Path) -> Result<()> {
        match self {
            Changes::Listed { .. } => Ok(()),
            Changes::Upper { upper, exclude, .. } => merge_dir(upper, root, Path::new(""), exclude),
        }
    }
}

fn merge_dir(upper: &Path, root: &Path, rel: &Path, exclude: &BTreeSet<PathBuf>) -> Result<()> {
    let from_dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&from_dir)
        .map_err(SandboxError::io("reading", &from_dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(SandboxError::io("reading", &from_dir))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        if exclude.contains(&rel) {
            continue;
        }
        let from = upper.join(&rel);
        let to = root.join(&rel);
        let meta = fs::symlink_metadata(&from).map_err(SandboxError::io("reading", &from))?;
        let t = meta.file_type();
        if is_whiteout(&meta) {
            remove_any(&to)?;
            continue;
        }
        let lower_is_dir = fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir());
        if t.is_dir() && lower_is_dir {
            if is_opaque(&from) {
                empty_dir(&to)?;
            }
            merge_dir(upper, root, &rel, exclude)?;
            copy_dir_metadata(&meta, &to)?;
        } else if t.is_dir() && has_excluded_below(exclude, &rel) {
            // A new directory holding a sandbox mount point: create it and
            // move its contents one by one, leaving the mount point behind.
            remove_any(&to)?;
            fs::create_dir(&to).map_err(SandboxError::io("creating", &to))?;
            merge_dir(upper, root, &rel, exclude)?;
            copy_dir_metadata(&meta, &to)?;
        } else {
            remove_any(&to)?;
            fs::rename(&from, &to).map_err(SandboxError::io("moving", &from))?;
            if t.is_dir() {
                strip_overlay_xattrs(&to);
            }
        }
    }
    Ok(())
}

fn has_excluded_below(exclude: &BTreeSet<PathBuf>, rel: &Path) -> bool {
    exclude.iter().any(|e| e.starts_with(rel) && e != rel)
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(SandboxError::io("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(SandboxError::io("removing", path)),
    }
}

fn empty_dir(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(SandboxError::io("reading", dir))? {
        let entry = entry.map_err(SandboxError::io("reading", dir))?;
        remove_any(&entry.path())?;
    }
    Ok(())
}

/// Owner, mode, times and extended attributes of the upper copy of a
/// directory (which the step changed) onto the merged one.
pub(crate) fn copy_dir_metadata(meta: &fs::Metadata, to: &Path) -> Result<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(SandboxError::io("chown", to))?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(SandboxError::io("chmod", to))?;
    let times = [
        rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    ];
    rustix::fs::utimensat(
        rustix::fs::CWD,
        to,
        &rustix::fs::Timestamps {
            last_access: times[0],
            last_modification: times[1],
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| SandboxError::io("setting times of", to)(e.into()))?;
    Ok(())
}

fn strip_overlay_xattrs(path: &Path) {
    let Ok(names) = xattr_names(path) else {
        return;
    };
    for name in names {
        let overlay = name
            .to_str()
            .is_some_and(|n| OVERLAY_XATTR_PREFIXES.iter().any(|p| n.starts_with(p)));
        if overlay {
            let _ = rustix::fs::lremovexattr(path, name.as_os_str());
        }
    }
}

/// The names of `path`'s extended attributes (not following a symlink);
/// none where the file system has no xattrs.
pub(crate) fn xattr_names(path: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            // A longer list than the buffer holds: try again, larger.
            Err(rustix::io::Errno::RANGE) if names.len() < (1 << 20) => {
                names.resize(names.len() * 4, 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    Ok(names[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| std::ffi::OsStr::from_bytes(n).to_os_string())
        .collect())
}
