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

/// Why a small text file could not be read out of an image, naming it.
#[derive(Debug)]
pub struct ImageTextError {
    /// The path, absolute in the image.
    pub path: String,
    /// What is wrong with it.
    pub problem: ImageTextProblem,
}

/// What kept a small text file from being read out of an image.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageTextProblem {
    /// Resolving the path inside the image met a link loop.
    LinkLoop,
    /// The file could not be looked at, opened or read.
    Io(std::io::Error),
    /// It is something else than a regular file: "a FIFO", "a directory", …
    NotRegular(&'static str),
    /// A layer listing has it as something else than a regular file (a
    /// listing knows kinds, not contents).
    ListedNotRegular,
    /// It was replaced between the look and the open.
    Changed,
    /// It is larger than [`TEXT_LIMIT`].
    TooLarge,
    /// It is not UTF-8 (the error says where the bytes stop being UTF-8).
    NotUtf8(std::string::FromUtf8Error),
}

impl ImageTextError {
    pub(crate) fn new(path: &str, problem: ImageTextProblem) -> ImageTextError {
        ImageTextError {
            path: path.to_string(),
            problem,
        }
    }
}

// Written by hand, not derived: the path leads every message and each
// problem joins it its own way, which thiserror can only say by repeating
// the path in every variant.
impl std::fmt::Display for ImageTextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = &self.path;
        match &self.problem {
            ImageTextProblem::LinkLoop => {
                write!(f, "{path} in the image: too many levels of symbolic links")
            }
            ImageTextProblem::Io(e) => write!(f, "{path} in the image: {e}"),
            ImageTextProblem::NotRegular(what) => write!(
                f,
                "{path} in the image is {what}, not a regular file; it is not read"
            ),
            ImageTextProblem::ListedNotRegular => write!(
                f,
                "{path} in the image is not a regular file; it is not read"
            ),
            ImageTextProblem::Changed => write!(f, "{path} in the image changed while it was read"),
            ImageTextProblem::TooLarge => write!(
                f,
                "{path} in the image is larger than {} MiB",
                TEXT_LIMIT >> 20
            ),
            ImageTextProblem::NotUtf8(_) => write!(f, "{path} in the image is not UTF-8 text"),
        }
    }
}

impl std::error::Error for ImageTextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            ImageTextProblem::Io(e) => Some(e),
            ImageTextProblem::NotUtf8(e) => Some(e),
            _ => None,
        }
    }
}

/// The text of `path` (absolute in the image) in the root `root`; `None`
/// when it does not exist.
///
/// # Errors
/// Naming `path` when it is not a regular file, is larger than
/// [`TEXT_LIMIT`], is not UTF-8, or cannot be read.
pub(crate) fn read_image_text(root: &Path, path: &str) -> Result<Option<String>, ImageTextError> {
    let fail = |problem| ImageTextError::new(path, problem);
    let io = |e| fail(ImageTextProblem::Io(e));
    let resolved = match in_root(root, path, ResolveOptions::new()) {
        Ok(resolved) => resolved,
        Err(ResolveError::TooManyLinks { .. }) => return Err(fail(ImageTextProblem::LinkLoop)),
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
    check_kind(&before).map_err(fail)?;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&resolved)
        .map_err(io)?;
    let after = file.metadata().map_err(io)?;
    check_kind(&after).map_err(fail)?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(fail(ImageTextProblem::Changed));
    }
    let mut bytes = Vec::new();
    file.take(TEXT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > TEXT_LIMIT {
        return Err(fail(ImageTextProblem::TooLarge));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| fail(ImageTextProblem::NotUtf8(e)))
}

/// A problem unless `meta` is a regular file no larger than the limit.
fn check_kind(meta: &fs::Metadata) -> Result<(), ImageTextProblem> {
    let t = meta.file_type();
    if t.is_file() {
        return if meta.len() > TEXT_LIMIT {
            Err(ImageTextProblem::TooLarge)
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
    Err(ImageTextProblem::NotRegular(what))
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
            matches!(&e.problem, ImageTextProblem::NotRegular("a FIFO") if e.path == "/etc/passwd"),
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
    fn messages_name_the_path_and_keep_their_cause() {
        use std::error::Error as _;
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/passwd"), b"root:\xff\n").unwrap();
        let e = read_image_text(root.path(), "/etc/passwd").unwrap_err();
        assert_eq!(e.to_string(), "/etc/passwd in the image is not UTF-8 text");
        assert!(e
            .source()
            .unwrap()
            .downcast_ref::<std::string::FromUtf8Error>()
            .is_some());

        symlink("/etc/group", root.path().join("etc/group")).unwrap();
        let e = read_image_text(root.path(), "/etc/group").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/group in the image: too many levels of symbolic links"
        );
        assert!(e.source().is_none());

        let io = ImageTextError::new(
            "/etc/x",
            ImageTextProblem::Io(std::io::Error::other("boom")),
        );
        assert_eq!(io.to_string(), "/etc/x in the image: boom");
        assert!(io
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .is_some());
        fs::create_dir(root.path().join("etc/shadow")).unwrap();
        let e = read_image_text(root.path(), "/etc/shadow").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/shadow in the image is a directory, not a regular file; it is not read"
        );
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
