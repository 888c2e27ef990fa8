//! Entry paths as they appear inside a layer: relative, `/`-separated, no `.`
//! or `..` components. Shared by the writer (which normalizes what callers
//! give it) and the extractor (which must never trust what a tar says).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Prefix of a whiteout file name (`.wh.<name>` deletes `<name>`).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a path was refused.
pub(crate) type Refusal = &'static str;

/// Normalizes an entry path: strips a leading `/` and `./`, drops `.` and
/// empty components, and refuses `..`, NUL bytes and the empty path.
///
/// A leading `/` is contained rather than refused because a layer's paths are
/// relative to the image root by definition; `..` is refused because no
/// well-formed layer writer produces it and it is the classic escape.
pub fn normalize(path: &Path) -> Result<PathBuf, Refusal> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("path has a '..' component"),
            Component::Normal(name) => out.push(name),
            Component::Prefix(_) => return Err("path has a platform prefix"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("path is empty or names the root");
    }
    Ok(out)
}

/// If `name` is a whiteout file name (`.wh.<x>`, not the opaque marker),
/// returns `<x>`.
pub fn whiteout_target(name: &OsStr) -> Option<&OsStr> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER.as_bytes() {
        return None;
    }
    bytes
        .strip_prefix(WHITEOUT_PREFIX.as_bytes())
        .map(OsStr::from_bytes)
}

/// True if `name` is the opaque-directory marker.
pub fn is_opaque_marker(name: &OsStr) -> bool {
    name.as_bytes() == OPAQUE_MARKER.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_contains_absolute_paths() {
        assert_eq!(
            normalize(Path::new("/etc//passwd")).unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(normalize(Path::new("./a/./b/")).unwrap(), Path::new("a/b"));
    }

    #[test]
    fn refuses_escapes_and_empty() {
        assert!(normalize(Path::new("../x")).is_err());
        assert!(normalize(Path::new("a/../../x")).is_err());
        assert!(normalize(Path::new("/")).is_err());
        assert!(normalize(Path::new("")).is_err());
        assert!(normalize(Path::new(OsStr::from_bytes(b"a\0b"))).is_err());
    }

    #[test]
    fn recognizes_whiteouts() {
        assert_eq!(
            whiteout_target(OsStr::new(".wh.foo")),
            Some(OsStr::new("foo"))
        );
        assert_eq!(whiteout_target(OsStr::new(OPAQUE_MARKER)), None);
        assert_eq!(whiteout_target(OsStr::new("foo")), None);
        assert!(is_opaque_marker(OsStr::new(".wh..wh..opq")));
    }
}
