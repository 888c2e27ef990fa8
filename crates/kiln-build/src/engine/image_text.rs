//! Reading a small text file out of an image's root (`/etc/passwd` and
//! `/etc/group`, for `--chown` and USER).
//!
//! The image is not trusted: its `/etc/passwd` may be a FIFO (an `open` for
//! reading would wait forever), a device node or a symlink to one
//! (`/dev/zero` never ends), or a huge file. So the path is resolved inside
//! the root ([`super::rootfs::resolve_in_root`]), only a regular file is
//! opened (checked before and after the open, never following a symlink,
//! non-blocking), and at most [`TEXT_LIMIT`] bytes are read; anything else
//! is an error naming the file.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Largest text file read from an image (also what a layer listing keeps).
pub(crate) const TEXT_LIMIT: u64 = 1 << 20;

/// The text of `path` (absolute in the image) in the root `root`; `None`
/// when it does not exist.
///
/// # Errors
/// A message naming `path` when it is not a regular file, is larger than
/// [`TEXT_LIMIT`], is not UTF-8, or cannot be read.
pub(crate) fn read_image_text(root: &Path, path: &str) -> Result<Option<String>, String> {
    let Some(resolved) = super::rootfs::resolve_in_root(root, path) else {
        return Err(format!(
            "{path} in the image: too many levels of symbolic links"
        ));
    };
    let before = match fs::symlink_metadata(&resolved) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A component that is a file, not a directory: no such path.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(format!("{path} in the image: {e}")),
    };
    check_kind(path, &before)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&resolved)
        .map_err(|e| format!("{path} in the image: {e}"))?;
    let after = file
        .metadata()
        .map_err(|e| format!("{path} in the image: {e}"))?;
    check_kind(path, &after)?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(format!("{path} in the image changed while it was read"));
    }
    let mut bytes = Vec::new();
    file.take(TEXT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path} in the image: {e}"))?;
    if bytes.len() as u64 > TEXT_LIMIT {
        return Err(too_large(path));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{path} in the image is not UTF-8 text"))
}

fn too_large(path: &str) -> String {
    format!(
        "{path} in the image is larger than {} MiB",
        TEXT_LIMIT >> 20
    )
}

/// An error unless `meta` is a regular file no larger than the limit.
fn check_kind(path: &str, meta: &fs::Metadata) -> Result<(), String> {
    let t = meta.file_type();
    if t.is_file() {
        return if meta.len() > TEXT_LIMIT {
            Err(too_large(path))
        } else {
            Ok(())
        };
    }
    let what = if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Err(format!(
        "{path} in the image is {what}, not a regular file; it is not read"
    ))
}

/// The error for a name the image lists as something other than a regular
/// file (a layer listing knows kinds, not contents).
pub(crate) fn not_regular(path: &str) -> String {
    format!("{path} in the image is not a regular file; it is not read")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn a_regular_file_is_read_and_a_missing_one_is_none() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        assert!(read_image_text(root.path(), "/etc/passwd")
            .unwrap()
            .unwrap()
            .starts_with("root:"));
        assert_eq!(read_image_text(root.path(), "/etc/group").unwrap(), None);
        assert_eq!(read_image_text(root.path(), "/etc/passwd/x").unwrap(), None);
    }

    #[test]
    fn a_fifo_or_a_symlink_to_one_is_an_error_at_once() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        mkfifo(&root.path().join("etc/initctl"));
        symlink("/etc/initctl", root.path().join("etc/passwd")).unwrap();
        let started = Instant::now();
        let e = read_image_text(root.path(), "/etc/passwd").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(e.contains("/etc/passwd") && e.contains("FIFO"), "{e}");
    }

    #[test]
    fn a_symlink_to_dev_zero_is_an_error_not_an_endless_read() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        // The image's own /dev/zero is absent here: the symlink leads to
        // the host's only if resolution escaped the root. With the node in
        // the image the kind check stops it (tested end to end).
        symlink("/dev/zero", root.path().join("etc/passwd")).unwrap();
        assert_eq!(read_image_text(root.path(), "/etc/passwd").unwrap(), None);
        fs::create_dir(root.path().join("dev")).unwrap();
        symlink("/proc/self/fd/0", root.path().join("dev/zero")).unwrap();
        assert_eq!(read_image_text(root.path(), "/etc/passwd").unwrap(), None);
    }

    #[test]
    fn a_huge_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        let f = fs::File::create(root.path().join("etc/group")).unwrap();
        f.set_len(TEXT_LIMIT + 1).unwrap();
        let e = read_image_text(root.path(), "/etc/group").unwrap_err();
        assert!(e.contains("/etc/group") && e.contains("larger"), "{e}");
    }
}
