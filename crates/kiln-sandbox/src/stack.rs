//! A step's upper dir kept as a lower dir of the next step's overlay,
//! instead of being folded into the root at once.
//!
//! Folding a step's changes into the root while its layer is still being
//! written needs a shadow of them first ([`Changes::detach`]): a hard link
//! per file, made before the next step may start, and unlinked again once
//! the layer is written. When the next step is a RUN too, the upper dir can
//! instead sit between that step's upper dir and the root (overlayfs stacks
//! lower dirs, honouring the whiteouts and opaque directories of each),
//! the layer is read from it directly, and it is folded into the root with
//! [`Changes::absorb_into`]'s renames once its layer is written. A step
//! that writes 150,000 files then costs no links and no unlinks.
//!
//! For that the upper dir must show exactly what its layer holds: the mount
//! points the sandbox made are removed from it first
//! ([`Changes::remove_sandbox_paths`]). And whatever reads the stacked view
//! outside an overlay mount (USER's `/etc/passwd`) looks a path up by
//! overlayfs's rules ([`find_in_stack`]).

use crate::changes::{is_opaque, is_whiteout, Changes};
use crate::error::{Result, SandboxError};
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

impl Changes {
    /// Removes the paths the sandbox made (mount points, and directories
    /// it made them in that the step left alone) from an upper dir, deepest
    /// first, so that the upper dir read as a lower dir shows what its layer
    /// holds and nothing else. Nothing to do for changes listed against a
    /// root changed in place.
    pub fn remove_sandbox_paths(&self) -> Result<()> {
        let Changes::Upper { upper, exclude, .. } = self else {
            return Ok(());
        };
        let mut paths: Vec<&PathBuf> = exclude.iter().collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for rel in paths {
            let path = upper.join(rel);
            let removed = match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => Err(e),
                // Empty by now: only paths the sandbox made were in it.
                Ok(m) if m.is_dir() => fs::remove_dir(&path),
                Ok(_) => fs::remove_file(&path),
            };
            removed.map_err(SandboxError::io("removing", &path))?;
        }
        Ok(())
    }
}

/// Which layer of a stacked view answers for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackedPath {
    /// The upper dir at this index (topmost first) holds it.
    Upper(usize),
    /// The root below every upper dir holds it.
    Root,
    /// It is not in the view (never there, or deleted by a whiteout).
    Absent,
    /// A symbolic link is on the way (its target would have to be looked
    /// up through the view again), or a layer could not be read: look in
    /// the root once the upper dirs are folded into it.
    Unresolved,
}

/// Where `rel` (relative, plain names only) is in the view of `uppers`
/// (topmost first) over `root`, by overlayfs's rules: the topmost layer
/// holding a name decides what it is; a whiteout deletes it; below a
/// directory, the layers under an opaque directory, a whiteout or a
/// non-directory are hidden.
pub fn find_in_stack(uppers: &[&Path], root: &Path, rel: &Path) -> StackedPath {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => names.push(name),
            _ => return StackedPath::Unresolved,
        }
    }
    // The layers that may hold the current path's children, topmost first;
    // `None` is the root.
    let mut layers: Vec<Option<usize>> = (0..uppers.len()).map(Some).chain([None]).collect();
    let mut prefix = PathBuf::new();
    for (depth, name) in names.iter().enumerate() {
        prefix.push(name);
        let last = depth + 1 == names.len();
        let mut below: Vec<Option<usize>> = Vec::new();
        let mut decided: Option<Option<usize>> = None;
        for &layer in &layers {
            let dir = layer.map_or(root, |i| uppers[i]);
            let path = dir.join(&prefix);
            let meta = match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(_) => return StackedPath::Unresolved,
                Ok(m) => m,
            };
            let t = meta.file_type();
            let whiteout = layer.is_some() && is_whiteout(&meta);
            if decided.is_none() {
                if whiteout {
                    return StackedPath::Absent;
                }
                if t.is_symlink() {
                    return StackedPath::Unresolved;
                }
                if last {
                    return layer.map_or(StackedPath::Root, StackedPath::Upper);
                }
                if !t.is_dir() {
                    return StackedPath::Absent;
                }
                decided = Some(layer);
            } else if !t.is_dir() {
                // A whiteout or a non-directory under the directory hides
                // it and everything below.
                break;
            }
            below.push(layer);
            if layer.is_some() && is_opaque(&path) {
                break;
            }
        }
        if decided.is_none() {
            return StackedPath::Absent;
        }
        layers = below;
    }
    // The root directory itself.
    layers.first().map_or(StackedPath::Root, |l| {
        l.map_or(StackedPath::Root, StackedPath::Upper)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
    }

    fn opaque(dir: &Path) {
        rustix::fs::lsetxattr(
            dir,
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }

    #[test]
    fn the_topmost_layer_holding_a_path_answers_for_it() {
        let t = tempfile::tempdir().unwrap();
        let [root, top, mid] = ["root", "top", "mid"].map(|n| t.path().join(n));
        for d in [&root, &top, &mid] {
            fs::create_dir_all(d.join("etc")).unwrap();
        }
        fs::write(root.join("etc/passwd"), "root").unwrap();
        fs::write(root.join("etc/group"), "root").unwrap();
        fs::write(root.join("etc/hosts"), "root").unwrap();
        fs::write(mid.join("etc/passwd"), "mid").unwrap();
        fs::write(top.join("etc/shadow"), "top").unwrap();
        whiteout(&top.join("etc/hosts"));
        let uppers = [top.as_path(), mid.as_path()];
        let find = |p: &str| find_in_stack(&uppers, &root, Path::new(p));
        assert_eq!(find("etc/passwd"), StackedPath::Upper(1));
        assert_eq!(find("etc/shadow"), StackedPath::Upper(0));
        assert_eq!(find("etc/group"), StackedPath::Root);
        assert_eq!(find("etc/hosts"), StackedPath::Absent);
        assert_eq!(find("etc/missing"), StackedPath::Absent);
        assert_eq!(find("etc"), StackedPath::Upper(0));
        assert_eq!(find("/etc/passwd"), StackedPath::Unresolved);
        assert_eq!(find("etc/../passwd"), StackedPath::Unresolved);
        assert_eq!(
            find_in_stack(&[], &root, Path::new("etc/passwd")),
            StackedPath::Root
        );
    }

    #[test]
    fn opaque_directories_whiteouts_and_files_hide_what_is_below() {
        let t = tempfile::tempdir().unwrap();
        let [root, top, mid] = ["root", "top", "mid"].map(|n| t.path().join(n));
        for d in [&root, &mid] {
            fs::create_dir_all(d.join("etc")).unwrap();
            fs::create_dir_all(d.join("opt")).unwrap();
        }
        fs::create_dir_all(&top).unwrap();
        fs::write(root.join("etc/passwd"), "root").unwrap();
        fs::write(root.join("opt/tool"), "root").unwrap();
        fs::write(mid.join("etc/group"), "mid").unwrap();
        // `mid` replaced /etc with a fresh directory (opaque): the root's
        // passwd is gone from the view, mid's group is there.
        opaque(&mid.join("etc"));
        // `top` deleted /opt, and made /srv a file.
        whiteout(&top.join("opt"));
        fs::write(top.join("srv"), "a file").unwrap();
        fs::create_dir_all(root.join("srv")).unwrap();
        fs::write(root.join("srv/app"), "root").unwrap();
        let uppers = [top.as_path(), mid.as_path()];
        let find = |p: &str| find_in_stack(&uppers, &root, Path::new(p));
        assert_eq!(find("etc/passwd"), StackedPath::Absent);
        assert_eq!(find("etc/group"), StackedPath::Upper(1));
        assert_eq!(find("opt/tool"), StackedPath::Absent);
        assert_eq!(find("srv/app"), StackedPath::Absent);
        assert_eq!(find("srv"), StackedPath::Upper(0));
    }

    #[test]
    fn a_symlink_on_the_way_is_left_to_the_folded_root() {
        let t = tempfile::tempdir().unwrap();
        let (root, top) = (t.path().join("root"), t.path().join("top"));
        fs::create_dir_all(root.join("usr/etc")).unwrap();
        fs::write(root.join("usr/etc/passwd"), "root").unwrap();
        std::os::unix::fs::symlink("usr/etc", root.join("etc")).unwrap();
        fs::create_dir_all(&top).unwrap();
        let uppers = [top.as_path()];
        assert_eq!(
            find_in_stack(&uppers, &root, Path::new("etc/passwd")),
            StackedPath::Unresolved
        );
    }

    #[test]
    fn the_paths_the_sandbox_made_are_removed_from_the_upper_dir() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("root/.cache/pip")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/resolv.conf"), "").unwrap();
        fs::write(upper.join("etc/written-by-the-step"), "x").unwrap();
        let exclude: BTreeSet<PathBuf> =
            ["root", "root/.cache", "root/.cache/pip", "etc/resolv.conf"]
                .into_iter()
                .map(PathBuf::from)
                .collect();
        let changes = Changes::Upper {
            upper: upper.clone(),
            exclude,
            ids: crate::IdMap::default(),
        };
        changes.remove_sandbox_paths().unwrap();
        assert!(!upper.join("root").exists());
        assert!(!upper.join("etc/resolv.conf").exists());
        assert_eq!(
            fs::read(upper.join("etc/written-by-the-step")).unwrap(),
            b"x"
        );
        // Running it again finds nothing left to remove.
        changes.remove_sandbox_paths().unwrap();
    }
}
