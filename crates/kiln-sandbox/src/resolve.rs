//! Where a path inside the step's root is on the host, so that a mount
//! target or a prepared file never lands outside the root through a symlink
//! (`/etc/hosts -> /etc/passwd` must not reach the host's file while the
//! helper still sees the host's `/`). The walk is kiln-layer's
//! [`kiln_layer::resolve::in_root`]; the root is private to one build and
//! nothing else runs in it while the sandbox is prepared, so walking by path
//! is race-free here.

use crate::error::{Result, SandboxError};
use kiln_layer::resolve::{ResolveError, ResolveOptions};
use std::path::{Path, PathBuf};

/// The host path of `path` (absolute inside `root`) with every symlink in
/// it, the last component included, resolved inside the root; components
/// that do not exist are kept as written.
pub(crate) fn in_root(root: &Path, path: &str) -> Result<PathBuf> {
    kiln_layer::resolve::in_root(root, path, ResolveOptions::new()).map_err(|e| match e {
        ResolveError::TooManyLinks { .. } => SandboxError::Spec(format!("{path}: symlink loop")),
        ResolveError::ReadLink { path, source } => SandboxError::Io {
            action: "reading the link",
            path,
            source,
        },
        other => SandboxError::Spec(other.to_string()),
    })
}

/// `path` relative to the root it was resolved in, as the image names it.
pub(crate) fn relative(root: &Path, host: &Path) -> String {
    host.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root_and_a_loop_is_a_spec_error() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        symlink("/etc/passwd", r.join("hosts")).unwrap();
        assert_eq!(in_root(r, "/hosts").unwrap(), r.join("etc/passwd"));
        symlink("/loop", r.join("loop")).unwrap();
        assert_eq!(
            in_root(r, "/loop").unwrap_err().to_string(),
            "invalid sandbox spec: /loop: symlink loop"
        );
    }
}
