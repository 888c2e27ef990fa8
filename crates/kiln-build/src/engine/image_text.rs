//! Reading a small text file out of an image's root (`/etc/passwd` and
//! `/etc/group`, for `--chown` and USER).
//!
//! The image is not trusted: its `/etc/passwd` may be a FIFO (an `open` for
//! reading would wait forever), a device node or a symlink to one
//! (`/dev/zero` never ends), or a huge file. So the path is resolved inside
//! the root (`kiln_layer::resolve::in_root`), only a regular file is
//! opened (checked before and after the open, never following a symlink,
//! non-blocking), and at most [`TEXT_LIMIT`] bytes are read; anything else
//! is an error naming the file.

use kiln_layer::resolve::{in_root, ResolveError, ResolveOptions};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Largest text file read from an image (also what a layer listing keeps).
pub(crate) const TEXT_LIMIT: u64 = 1 << 20;

/// Why a small text file could not be read out of an image; each names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageTextError {
    /// Resolving the path inside the image met a link loop.
    #[error("{path} in the image: too many levels of symbolic links")]
    LinkLoop {
        /// The path, absolute in the image.
        path: String,
    },
    /// The file could not be looked at, opened or read.
    #[error("{path} in the image: {source}")]
    Io {
        /// The path, absolute in the image.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is something else than a regular file.
    #[error("{path} in the image is {what}, not a regular file; it is not read")]
    NotRegular {
        /// The path, absolute in the image.
        path: String,
        /// What it is instead: "a FIFO", "a directory", …
        what: &'static str,
    },
    /// A layer listing has it as something else than a regular file (a
    /// listing knows kinds, not contents).
    #[error("{path} in the image is not a regular file; it is not read")]
    ListedNotRegular {
        /// The path, absolute in the image.
        path: String,
    },
    /// It was replaced between the look and the open.
    #[error("{path} in the image changed while it was read")]
    Changed {
        /// The path, absolute in the image.
        path: String,
    },
    /// It is larger than [`TEXT_LIMIT`].
    #[error("{path} in the image is larger than {} MiB", TEXT_LIMIT >> 20)]
    TooLarge {
        /// The path, absolute in the image.
        path: String,
    },
    /// It is not UTF-8.
    #[error("{path} in the image is not UTF-8 text")]
    NotUtf8 {
        /// The path, absolute in the image.
        path: String,
        /// Where the bytes stop being UTF-8.
        source: std::string::FromUtf8Error,
    },
}

/// The text of `path` (absolute in the image) in the root `root`; `None`
/// when it does not exist.
///
/// # Errors
/// Naming `path` when it is not a regular file, is larger than
/// [`TEXT_LIMIT`], is not UTF-8, or cannot be read.
pub(crate) fn read_image_text(root: &Path, path: &str) -> Result<Option<String>, ImageTextError> {
    let io = |source| ImageTextError::Io {
        path: path.to_string(),
        source,
    };
    let resolved = match in_root(root, path, ResolveOptions::new()) {
        Ok(resolved) => resolved,
        Err(ResolveError::TooManyLinks { .. }) => {
            return Err(ImageTextError::LinkLoop {
                path: path.to_string(),
            })
        }
        Err(ResolveError::ReadLink { source, .. }) => return Err(io(source)),
        Err(other) => return Err(io(std::io::Error::other(other))),
    };
    let before = match fs::symlink_metadata(&resolved) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A component that is a file, not a directory: no such path.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    check_kind(path, &before)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&resolved)
        .map_err(io)?;
    let after = file.metadata().map_err(io)?;
    check_kind(path, &after)?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(ImageTextError::Changed {
            path: path.to_string(),
        });
    }
    let mut bytes = Vec::new();
    file.take(TEXT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > TEXT_LIMIT {
        return Err(ImageTextError::TooLarge {
            path: path.to_string(),
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|source| ImageTextError::NotUtf8 {
            path: path.to_string(),
            source,
        })
}

/// An error unless `meta` is a regular file no larger than the limit.
fn check_kind(path: &str, meta: &fs::Metadata) -> Result<(), ImageTextError> {
    let t = meta.file_type();
    if t.is_file() {
        return if meta.len() > TEXT_LIMIT {
            Err(ImageTextError::TooLarge {
                path: path.to_string(),
            })
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
    Err(ImageTextError::NotRegular {
        path: path.to_string(),
        what,
    })
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
        assert!(
            matches!(&e, ImageTextError::NotRegular { path, what: "a FIFO" } if path == "/etc/passwd"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "/etc/passwd in the image is a FIFO, not a regular file; it is not read"
        );
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
        assert_eq!(
            e.to_string(),
            "/etc/group in the image is larger than 1 MiB"
        );
    }
}
