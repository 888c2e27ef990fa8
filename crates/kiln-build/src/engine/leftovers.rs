//! Private directories left behind by builds whose process died.
//!
//! A build holds an exclusive `flock` on its `build-*` directory for as
//! long as it runs; the kernel drops the lock when the process dies, however
//! it dies (SIGKILL, OOM kill, power-off of a container). A later build that
//! can take the lock of a `build-*` therefore knows its owner is gone and
//! removes the directory: a base layer's setuid files must not outlive the
//! build that unpacked them, and disk space must come back.
//!
//! The removal never follows a symlink (std's `remove_dir_all` works with
//! `openat`/`unlinkat` and `O_NOFOLLOW`) and never starts on a directory that
//! has anything mounted below it: a bind mount left over from a step would
//! otherwise lead it into a host directory.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The name every build's private directory starts with.
pub(crate) const PREFIX: &str = "build-";
/// A file whose presence keeps a directory from being swept (a build run
/// with `KILN_KEEP_WORKDIR`).
pub(crate) const KEEP_MARKER: &str = ".kiln-keep";

/// Opens `dir` (a directory, not a symlink) for locking.
pub(crate) fn open_dir(dir: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
}

/// Takes the exclusive lock on an open directory without waiting; false
/// when another open file description holds it.
pub(crate) fn try_lock(dir: &File) -> io::Result<bool> {
    // SAFETY: flock takes a descriptor that `dir` keeps open and a flag.
    let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Removes every `build-*` directory in `parent` whose lock is free (its
/// build is dead), except `own` and directories kept on purpose. Returns
/// how many were removed. Failures are logged, never fatal: a leftover that
/// cannot go must not stop a new build.
pub(crate) fn sweep(parent: &Path, own: &Path) -> usize {
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) || path == own {
            continue;
        }
        // A symlink named build-* is not a build's directory: leave it.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match remove_if_dead(&path) {
            Ok(true) => {
                tracing::info!("removed {} left by a build that died", path.display());
                removed += 1;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "could not remove {} left by a build that died: {e}",
                path.display()
            ),
        }
    }
    removed
}

/// Removes `dir` when no live process holds its lock; false when it stays.
fn remove_if_dead(dir: &Path) -> io::Result<bool> {
    let handle = match open_dir(dir) {
        Ok(f) => f,
        // Gone meanwhile, or replaced by a symlink: nothing of ours.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    if !try_lock(&handle)? || dir.join(KEEP_MARKER).exists() {
        return Ok(false);
    }
    if let Some(mount) = mount_below(dir)? {
        return Err(io::Error::other(format!(
            "{} is mounted below it; unmount it first",
            mount.display()
        )));
    }
    // The lock is held while removing, so a second build sweeping at the
    // same time skips this directory.
    super::workspace::remove_tree(dir);
    if dir.exists() {
        return Err(io::Error::other("some files could not be removed"));
    }
    Ok(true)
}

/// The first mount point at or below `dir` in this process's mount table.
fn mount_below(dir: &Path) -> io::Result<Option<std::path::PathBuf>> {
    let dir = fs::canonicalize(dir)?;
    let table = fs::read_to_string("/proc/self/mountinfo")?;
    let first = mount_points(&table).find(|m| m.starts_with(&dir));
    Ok(first)
}

/// The mount points of a `/proc/self/mountinfo` text (field 5, with the
/// kernel's octal escapes of space, tab, newline and backslash undone).
fn mount_points(table: &str) -> impl Iterator<Item = std::path::PathBuf> + '_ {
    table.lines().filter_map(|line| {
        let field = line.split(' ').nth(4)?;
        Some(std::path::PathBuf::from(unescape_octal(field)))
    })
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4);
        if bytes[i] == b'\\' && octal.is_some_and(|o| o.iter().all(|b| (b'0'..=b'7').contains(b))) {
            let o = octal.unwrap_or_default();
            out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(out)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_with_their_escapes_undone() {
        let table = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                     90 22 0:50 / /tmp/a\\040b rw - tmpfs tmpfs rw\n";
        let points: Vec<_> = mount_points(table).collect();
        assert_eq!(
            points,
            [
                std::path::PathBuf::from("/"),
                std::path::PathBuf::from("/tmp/a b")
            ]
        );
    }

    #[test]
    fn a_locked_directory_is_kept_and_a_free_one_removed() {
        let parent = tempfile::tempdir().unwrap();
        let live = parent.path().join("build-1-live");
        let dead = parent.path().join("build-2-dead");
        for d in [&live, &dead] {
            fs::create_dir_all(d.join("rootfs/usr/bin")).unwrap();
            fs::write(d.join("rootfs/usr/bin/su"), b"x").unwrap();
        }
        let held = open_dir(&live).unwrap();
        assert!(try_lock(&held).unwrap());
        assert_eq!(sweep(parent.path(), Path::new("/nonexistent")), 1);
        assert!(live.exists(), "a live build's directory was removed");
        assert!(!dead.exists());
    }

    #[test]
    fn removal_never_follows_a_symlink_out_of_the_directory() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), b"keep me").unwrap();
        let dead = parent.path().join("build-3-dead");
        fs::create_dir_all(dead.join("rootfs")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dead.join("rootfs/link")).unwrap();
        // A symlink named like a build dir is not swept at all.
        std::os::unix::fs::symlink(outside.path(), parent.path().join("build-4-link")).unwrap();
        assert_eq!(sweep(parent.path(), Path::new("/nonexistent")), 1);
        assert!(!dead.exists());
        assert_eq!(
            fs::read(outside.path().join("precious")).unwrap(),
            b"keep me"
        );
        assert!(parent.path().join("build-4-link").exists());
    }

    #[test]
    fn a_directory_with_a_mount_below_it_is_left_alone() {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test mounts a tmpfs: run it as root"
        );
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join("build-6-dead");
        let target = dead.join("rootfs/mnt");
        fs::create_dir_all(&target).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&target)
            .status()
            .unwrap();
        assert!(status.success(), "mount failed");
        fs::write(target.join("on-the-mount"), b"x").unwrap();
        let removed = sweep(parent.path(), Path::new("/nonexistent"));
        let survived = target.join("on-the-mount").exists();
        let _ = std::process::Command::new("umount").arg(&target).status();
        assert_eq!(removed, 0);
        assert!(survived, "the sweep went into a mount");
    }

    #[test]
    fn a_kept_directory_stays() {
        let parent = tempfile::tempdir().unwrap();
        let kept = parent.path().join("build-5-kept");
        fs::create_dir_all(&kept).unwrap();
        fs::write(kept.join(KEEP_MARKER), b"").unwrap();
        assert_eq!(sweep(parent.path(), Path::new("/nonexistent")), 0);
        assert!(kept.exists());
    }
}
