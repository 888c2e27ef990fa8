//! Resolving a path inside a root the way the sandboxed process would see
//! it, so that a mount target or a prepared file never lands outside the
//! root through a symlink (`/etc/hosts -> /etc/passwd` must not reach the
//! host's file while the helper still sees the host's `/`).
//!
//! The root is private to one build and nothing else runs in it while the
//! sandbox is prepared, so a component-by-component walk is race-free here.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// Symlink hops allowed, as Linux.
const MAX_HOPS: usize = 40;

/// The host path of `path` (absolute inside `root`) with every symlink in
/// it, the last component included, resolved inside the root. Components
/// that do not exist are kept as written. `None` on a symlink loop.
pub(crate) fn in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = parts(path).into_iter().rev().collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let candidate = join(root, &done).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return None;
                }
                let target = fs::read_link(&candidate).ok()?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(parts(&target).into_iter().rev());
            }
            _ => done.push(part),
        }
    }
    Some(join(root, &done))
}

/// `path` relative to the root it was resolved in, as the image names it.
pub(crate) fn relative(root: &Path, host: &Path) -> String {
    host.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

fn parts(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("etc")).unwrap();
        symlink("/etc/passwd", r.join("etc/hosts")).unwrap();
        symlink("../../../../x", r.join("up")).unwrap();
        assert_eq!(in_root(r, "/etc/hosts").unwrap(), r.join("etc/passwd"));
        assert_eq!(in_root(r, "/up/y").unwrap(), r.join("x/y"));
        symlink("/loop", r.join("loop")).unwrap();
        assert_eq!(in_root(r, "/loop"), None);
    }
}
