//! A step's changes detached from the root they are folded into, so that
//! its layer can be written while the next steps run.
//!
//! [`Changes::absorb_into`] moves an overlay upper dir's entries into the
//! root, and the next step starts from there at once. The layer must then
//! be read from something the next steps cannot reach: `detach` first
//! makes a shadow of the upper dir, its directories recreated with the
//! same owner, mode, extended attributes and times, every other entry
//! hard-linked. No file data is copied, so it costs a few system calls per
//! path the step changed.
//!
//! The shadow stays what the step wrote because nothing changes a file of
//! the root in place while it is shared: an overlay never writes its lower
//! dir, extraction and absorption replace a path by unlinking it first, and
//! directories (whose metadata later steps do change) are not shared. A
//! root changed in place (chroot isolation) is the exception, which is why
//! only an upper dir can be detached, and why the caller waits for the
//! layer before running a step under chroot.

use crate::absorb::{copy_dir_metadata, xattr_names};
use crate::changes::Changes;
use crate::error::{Result, SandboxError};
use kiln_layer::deep::At;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Shadow directories kept open along the walk's path; deeper ones are
/// opened for each entry.
const KEEP_OPEN: usize = 64;

impl Changes {
    /// The same changes, read from a shadow at `to` (which must not exist,
    /// on the same file system as the upper dir) that absorbing them into
    /// the root leaves intact. `None` for changes listed against a root
    /// changed in place. On error `to` may be left half made.
    pub fn detach(&self, to: &Path) -> Result<Option<Changes>> {
        match self {
            Changes::Listed { .. } => Ok(None),
            Changes::Upper {
                upper,
                exclude,
                ids,
            } => {
                shadow_dir(upper, to)?;
                Ok(Some(Changes::Upper {
                    upper: to.to_path_buf(),
                    exclude: exclude.clone(),
                    ids: ids.clone(),
                }))
            }
        }
    }
}

fn shadow_dir(from: &Path, to: &Path) -> Result<()> {
    use kiln_layer::deep::{walk_at, HostPath};
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let reach = |root: &Path, rel: &Path| {
        HostPath::new(root, rel).map_err(SandboxError::io("reading", &root.join(rel)))
    };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let open_dir = |path: &Path| {
        rustix::fs::open(path, dir_flags, Mode::empty())
            .map_err(|e| SandboxError::io("opening", path)(e.into()))
    };
    fs::create_dir(to).map_err(SandboxError::io("creating", to))?;
    // Relative to open directories on both sides, one name looked up per
    // call instead of two whole host paths: the step may have made a tree
    // deeper than PATH_MAX, and the big ones have 100,000s of entries.
    // Parents come before their contents, so the shadow directories along
    // the walk's path are a stack (bounded, like the walk's own).
    let mut open: Vec<(PathBuf, OwnedFd)> = vec![(PathBuf::new(), open_dir(to)?)];
    let mut dirs = vec![PathBuf::new()];
    let mut failed: Option<SandboxError> = None;
    let mut visit = |rel: PathBuf, st: &rustix::fs::Stat, at: At<'_>| -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        while open
            .last()
            .is_some_and(|(p, _)| p != parent && !parent.starts_with(p))
        {
            open.pop();
        }
        let fresh;
        let dst_dir = match open.last() {
            Some((p, fd)) if p == parent => fd.as_fd(),
            _ => {
                fresh = open_dir(reach(to, parent)?.path())?;
                fresh.as_fd()
            }
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            // Owner, mode, xattrs and times are set once it is filled.
            rustix::fs::mkdirat(dst_dir, at.name, Mode::from_raw_mode(0o777))
                .map_err(|e| SandboxError::io("creating", &to.join(&rel))(e.into()))?;
            if open.len() < KEEP_OPEN {
                let child = rustix::fs::openat(dst_dir, at.name, dir_flags, Mode::empty())
                    .map_err(|e| SandboxError::io("opening", &to.join(&rel))(e.into()))?;
                open.push((rel.clone(), child));
            }
            dirs.push(rel);
        } else {
            // linkat without AT_SYMLINK_FOLLOW: a symlink is linked itself.
            rustix::fs::linkat(at.dir, at.name, dst_dir, at.name, AtFlags::empty())
                .map_err(|e| SandboxError::io("linking", &from.join(&rel))(e.into()))?;
        }
        Ok(())
    };
    let walked = walk_at::<std::io::Error>(from, &|_| false, |rel, st, _, at| {
        visit(rel, st, at).map_err(|e| {
            failed = Some(e);
            std::io::Error::other("stopped")
        })
    });
    if let Some(e) = failed {
        return Err(e);
    }
    walked.map_err(SandboxError::io("reading", from))?;
    // Contents before their directory: creating entries changes its mtime.
    for rel in dirs.iter().rev() {
        let (src, dst) = (reach(from, rel)?, reach(to, rel)?);
        let meta =
            fs::symlink_metadata(src.path()).map_err(SandboxError::io("reading", src.path()))?;
        copy_xattrs(src.path(), dst.path())?;
        copy_dir_metadata(&meta, dst.path())?;
    }
    Ok(())
}

/// Every extended attribute of `from` onto `to`, overlay's own included:
/// an opaque marker is part of what the step did.
fn copy_xattrs(from: &Path, to: &Path) -> Result<()> {
    let names = xattr_names(from).map_err(SandboxError::io("listing xattrs of", from))?;
    // The largest value Linux allows.
    let mut value = vec![0u8; 64 * 1024];
    for name in names {
        let name = name.as_os_str();
        let len = rustix::fs::lgetxattr(from, name, &mut value[..])
            .map_err(|e| SandboxError::io("reading xattrs of", from)(e.into()))?;
        rustix::fs::lsetxattr(to, name, &value[..len], rustix::fs::XattrFlags::empty())
            .map_err(|e| SandboxError::io("setting xattrs of", to)(e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn the_shadow_keeps_what_the_step_wrote_after_the_upper_dir_is_moved_away() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        fs::create_dir_all(upper.join("opt/app/lib")).unwrap();
        fs::write(upper.join("opt/app/lib/mod.py"), "code").unwrap();
        std::os::unix::fs::symlink("lib/mod.py", upper.join("opt/app/link")).unwrap();
        fs::set_permissions(upper.join("opt/app"), fs::Permissions::from_mode(0o750)).unwrap();
        rustix::fs::lsetxattr(
            upper.join("opt"),
            "user.kiln.test",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .ok();
        let before = fs::symlink_metadata(upper.join("opt/app")).unwrap();
        let changes = Changes::Upper {
            upper: upper.clone(),
            exclude: BTreeSet::new(),
            ids: Default::default(),
        };
        let shadow = tmp.path().join("shadow");
        let Some(Changes::Upper { upper: from, .. }) = changes.detach(&shadow).unwrap() else {
            panic!("an upper dir detaches");
        };
        assert_eq!(from, shadow);
        // The upper dir goes into the root, and a later step replaces the
        // file there by unlinking it, as extraction and absorption do.
        let root = tmp.path().join("root");
        fs::rename(&upper, &root).unwrap();
        fs::remove_file(root.join("opt/app/lib/mod.py")).unwrap();
        fs::write(root.join("opt/app/lib/mod.py"), "changed").unwrap();

        assert_eq!(
            fs::read(shadow.join("opt/app/lib/mod.py")).unwrap(),
            b"code"
        );
        assert_eq!(
            fs::read_link(shadow.join("opt/app/link")).unwrap(),
            Path::new("lib/mod.py")
        );
        let after = fs::symlink_metadata(shadow.join("opt/app")).unwrap();
        assert_eq!(after.mode() & 0o7777, 0o750);
        assert_eq!(
            (after.mtime(), after.mtime_nsec()),
            (before.mtime(), before.mtime_nsec())
        );
        let mut value = [0u8; 16];
        if let Ok(n) = rustix::fs::lgetxattr(root.join("opt"), "user.kiln.test", &mut value) {
            assert_eq!(&value[..n], b"kept");
            let n = rustix::fs::lgetxattr(shadow.join("opt"), "user.kiln.test", &mut value)
                .expect("the shadow dir has the xattr too");
            assert_eq!(&value[..n], b"kept");
        }
    }

    #[test]
    fn a_tree_deeper_than_path_max_and_the_open_directories_is_shadowed_and_layered() {
        use rustix::fs::{Mode, OFlags};
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        fs::create_dir(&upper).unwrap();
        // 70 levels of 100-byte names: 7,000 bytes of path, and deeper than
        // the shadow directories kept open.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir = rustix::fs::open(&upper, flags, Mode::empty()).unwrap();
        let mut rel = PathBuf::new();
        for i in 0..70 {
            let name = format!("{i:0100}");
            rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            dir = rustix::fs::openat(&dir, name.as_str(), flags, Mode::empty()).unwrap();
            rel.push(name);
            let file = rustix::fs::openat(
                &dir,
                "level",
                OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            rustix::io::write(&file, format!("{i}").as_bytes()).unwrap();
        }
        let changes = Changes::Upper {
            upper: upper.clone(),
            exclude: BTreeSet::new(),
            ids: Default::default(),
        };
        let shadow = tmp.path().join("shadow");
        let detached = changes
            .detach(&shadow)
            .unwrap()
            .expect("an upper dir detaches");
        fs::remove_dir_all(&upper).unwrap();

        let blobs = tempfile::tempdir().unwrap();
        let blob = detached
            .write_layer(blobs.path(), &kiln_layer::LayerOptions::default())
            .unwrap()
            .expect("the shadow holds changes");
        let entries = kiln_layer::list::list_entries(
            kiln_layer::reader::open_blob(&blob.path, None).unwrap(),
        )
        .unwrap();
        let levels: Vec<_> = entries
            .iter()
            .filter(|e| e.path.ends_with("level"))
            .collect();
        assert_eq!(levels.len(), 70, "every level's file is in the layer");
        let deepest = levels
            .iter()
            .find(|e| e.path.components().count() == 71)
            .expect("the deepest file is in the layer");
        assert_eq!(deepest.kind, kiln_layer::EntryKind::File { size: 2 });
    }

    #[test]
    fn a_root_changed_in_place_cannot_be_detached() {
        let tmp = tempfile::tempdir().unwrap();
        let listed = Changes::Listed {
            root: tmp.path().to_path_buf(),
            changes: Vec::new(),
        };
        assert!(listed.detach(&tmp.path().join("x")).unwrap().is_none());
        assert!(!tmp.path().join("x").exists());
    }
}
