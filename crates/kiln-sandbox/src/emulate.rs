//! Mounts in chroot isolation, where the kernel allows none: each mount is
//! emulated by copying.
//!
//! Before the step, whatever is at the target is moved aside (next to the
//! root, so it is a rename, not a copy) and the mount's source is copied
//! in: a bind's directory, an overlay's lower dir, or nothing for a tmpfs.
//! The target is left out of the before/after comparison, so nothing under
//! it reaches the layer. After the step, a writable bind (a cache
//! directory) gets the target's contents copied back, the copy is removed
//! and what was moved aside returns.
//!
//! The cost is what namespaces avoid: every step copies each mounted tree
//! in, and a cache mount out again, so time and disk grow with the mounts'
//! size rather than being constant. Read-only binds are writable copies
//! (the writes are thrown away, as with `rw`), a tmpfs has no size limit,
//! and hard links inside a mounted tree are copied as separate files.

use crate::error::{Result, SandboxError};
use crate::prepare::{Kind, Made};
use crate::resolve;
use crate::spec::Report;
use std::fs;
use std::os::unix::fs::{lchown, symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Numbers the places original targets are moved aside to.
static STASHES: AtomicUsize = AtomicUsize::new(0);

/// One emulated mount, with what undoing it needs.
#[derive(Debug)]
pub(crate) struct Emulated {
    /// The target on the host.
    host: PathBuf,
    /// The target relative to the root, left out of snapshots.
    pub rel: PathBuf,
    /// Where the original target went, when there was one.
    stash: Option<PathBuf>,
    /// Directories made for the target (parents first), the target included.
    made: Vec<PathBuf>,
    /// Where the target's contents go back to after the step.
    copy_back: Option<PathBuf>,
}

impl Emulated {
    /// Puts `source`'s contents (or an empty directory) at `target` in `root`.
    pub fn new(
        root: &Path,
        source: Option<&Path>,
        target: &str,
        copy_back: bool,
    ) -> Result<Emulated> {
        let host = resolve::in_root(root, target)?;
        let stash = if host.symlink_metadata().is_ok() {
            let name = format!(
                ".{}.mount-{}-{}",
                root.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id(),
                STASHES.fetch_add(1, Ordering::Relaxed)
            );
            let stash = root.parent().unwrap_or(root).join(name);
            fs::rename(&host, &stash).map_err(SandboxError::io("moving aside", &host))?;
            Some(stash)
        } else {
            None
        };
        let mut emulated = Emulated {
            rel: host.strip_prefix(root).unwrap_or(&host).to_path_buf(),
            host: host.clone(),
            stash,
            made: Vec::new(),
            copy_back: None,
        };
        let mut made = Made::default();
        let ensured = made.ensure(root, target, Kind::Dir);
        emulated.made = made
            .reports
            .into_iter()
            .filter_map(|r| match r {
                Report::Created(p) => Some(root.join(p)),
                _ => None,
            })
            .collect();
        let filled = ensured
            .map_err(SandboxError::io("creating", &host))
            .and_then(|_| match source {
                Some(source) => copy_tree(source, &host),
                None => Ok(()),
            });
        if let Err(e) = filled {
            let _ = emulated.undo();
            return Err(e);
        }
        if copy_back {
            emulated.copy_back = source.map(Path::to_path_buf);
        }
        Ok(emulated)
    }

    /// Copies a writable mount's contents back to its source, removes the
    /// copy and puts the original target back.
    pub fn undo(&self) -> Result<()> {
        let mut first = Ok(());
        if let Some(source) = &self.copy_back {
            first = replace_contents(&self.host, source);
        }
        if self.host.symlink_metadata().is_ok() {
            let gone = if self.host.is_dir() {
                fs::remove_dir_all(&self.host)
            } else {
                fs::remove_file(&self.host)
            };
            if let Err(e) = gone {
                first = first.and(Err(SandboxError::io("removing", &self.host)(e)));
            }
        }
        for dir in self.made.iter().rev().filter(|d| **d != self.host) {
            // A parent the step put files in stays: those files are its changes.
            let _ = fs::remove_dir(dir);
        }
        if let Some(stash) = &self.stash {
            if let Err(e) = fs::rename(stash, &self.host) {
                first = first.and(Err(SandboxError::io("restoring", &self.host)(e)));
            }
        }
        first
    }
}

/// Makes `dest`'s contents those of `from` (a cache directory after a step).
fn replace_contents(from: &Path, dest: &Path) -> Result<()> {
    for entry in fs::read_dir(dest).map_err(SandboxError::io("reading", dest))? {
        let path = entry.map_err(SandboxError::io("reading", dest))?.path();
        let gone = if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        gone.map_err(SandboxError::io("removing", &path))?;
    }
    if from.is_dir() {
        copy_tree(from, dest)?;
    }
    Ok(())
}

/// Copies the tree at `from` into the existing directory `to` (or over
/// the file `to`), keeping modes, owners and symlinks.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let top = fs::symlink_metadata(from).map_err(SandboxError::io("reading", from))?;
    if !top.is_dir() {
        fs::remove_dir(to).map_err(SandboxError::io("replacing", to))?;
        return copy_entry(from, to, &top);
    }
    for item in walkdir::WalkDir::new(from).follow_links(false) {
        let item = item.map_err(|e| {
            SandboxError::io("reading", from)(
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk failed")),
            )
        })?;
        let rel = item.path().strip_prefix(from).unwrap_or(item.path());
        let dest = to.join(rel);
        let meta = item
            .path()
            .symlink_metadata()
            .map_err(SandboxError::io("reading", item.path()))?;
        if rel.as_os_str().is_empty() {
            own(&dest, &meta)?;
            continue;
        }
        copy_entry(item.path(), &dest, &meta)?;
    }
    Ok(())
}

fn copy_entry(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir(to).map_err(SandboxError::io("creating", to))?;
    } else if ft.is_symlink() {
        let link = fs::read_link(from).map_err(SandboxError::io("reading", from))?;
        symlink(link, to).map_err(SandboxError::io("creating", to))?;
        return lchown(to, Some(meta.uid()), Some(meta.gid()))
            .or_else(ignore_eperm)
            .map_err(SandboxError::io("chown", to));
    } else if ft.is_file() {
        fs::copy(from, to).map_err(SandboxError::io("copying", from))?;
    } else if ft.is_fifo() {
        // The node itself, never its (blocking) content.
        nix::unistd::mkfifo(to, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| SandboxError::io("creating", to)(e.into()))?;
    } else {
        // Sockets and devices cannot be made here (no mknod in chroot
        // isolation); they have no content to copy.
        return Ok(());
    }
    own(to, meta)
}

/// Gives `path` the mode and (when permitted) the owner in `meta`.
fn own(path: &Path, meta: &fs::Metadata) -> Result<()> {
    lchown(path, Some(meta.uid()), Some(meta.gid()))
        .or_else(ignore_eperm)
        .map_err(SandboxError::io("chown", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(SandboxError::io("chmod", path))
}

/// Without CAP_CHOWN the copy keeps the builder's ids, as a rootless
/// builder's files do anyway.
fn ignore_eperm(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Ok(())
    } else {
        Err(e)
    }
}
