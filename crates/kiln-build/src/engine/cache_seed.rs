//! `RUN --mount=type=cache,from=<stage|image>[,source=path]`: a new cache
//! directory starts as a copy of that directory, as BuildKit makes a cache
//! mount with `from` on top of the source snapshot. A cache that already
//! exists keeps its contents; it is never re-seeded.
//!
//! The copy is hand-written (a walk with std) because it must keep modes,
//! owners, symlinks and mtimes exactly and never follow a link out of the
//! source, which general copy crates do not promise together.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Creates `cache` as a copy of the directory `source`. The copy is made
/// beside it and renamed into place, so an interrupted seed never leaves a
/// half-filled cache that a later build would take as seeded.
pub(crate) fn seed(source: &Path, cache: &Path) -> std::io::Result<()> {
    let parent = cache
        .parent()
        .ok_or_else(|| std::io::Error::other("a cache directory has a parent"))?;
    // A private cache's numbered directory may be the first in its parent.
    fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".seeding-")
        .tempdir_in(parent)?;
    let into = staging.path().join("tree");
    copy_tree(source, &into)?;
    match fs::rename(&into, cache) {
        Ok(()) => Ok(()),
        // Another build seeded it first: theirs is as good.
        Err(_) if cache.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            from.display()
        )));
    }
    fs::create_dir(to)?;
    for item in fs::read_dir(from)? {
        let item = item?;
        let (src, dest) = (item.path(), to.join(item.file_name()));
        let kind = item.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dest)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dest)?;
            own(&dest, &fs::symlink_metadata(&src)?)?;
        } else if kind.is_file() {
            fs::copy(&src, &dest)?;
            finish(&dest, &item.metadata()?)?;
        }
        // Sockets, FIFOs and devices hold no cached content.
    }
    finish(to, &meta)
}

/// Gives a copied file or directory its source's owner, mode and mtime.
fn finish(path: &Path, meta: &fs::Metadata) -> std::io::Result<()> {
    own(path, meta)?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    set_mtime(path, meta.mtime(), meta.mtime_nsec())
}

/// By path, so a file whose mode forbids opening it still gets its time.
fn set_mtime(path: &Path, secs: i64, nanos: i64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
    ];
    // SAFETY: a valid NUL-terminated path and two timespecs, as utimensat
    // requires.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Keeps the owner when kiln can set it (as root); otherwise the caller
/// owns the copy, which the step's user namespace shows as root, as it
/// shows the source.
fn own(path: &Path, meta: &fs::Metadata) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_a_copy_and_never_reseeds() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/a"), "a").unwrap();
        fs::set_permissions(src.join("sub/a"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let cache = t.path().join("private/1");
        seed(&src, &cache).unwrap();
        assert_eq!(fs::read_to_string(cache.join("sub/a")).unwrap(), "a");
        let mode = fs::metadata(cache.join("sub/a")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o751);
        assert_eq!(
            fs::read_link(cache.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        // Renaming onto a seeded cache keeps what is there.
        fs::write(cache.join("sub/a"), "changed").unwrap();
        seed(&src, &cache).unwrap();
        assert_eq!(fs::read_to_string(cache.join("sub/a")).unwrap(), "changed");
        assert!(seed(&src.join("sub/a"), &t.path().join("c2")).is_err());
    }
}
