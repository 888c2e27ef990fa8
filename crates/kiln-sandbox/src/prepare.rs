//! Making the paths mounts and bound files need inside a root, and
//! remembering what was made so that it never counts as a change of the step.

use crate::resolve;
use crate::spec::Report;
use kiln_layer::resolve::ResolveOptions;
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a mount point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

/// Paths made inside a root, in the order made.
#[derive(Debug, Default)]
pub(crate) struct Made {
    pub reports: Vec<Report>,
}

impl Made {
    /// Makes `path` (absolute in `root`) exist as `kind`, creating missing
    /// parents; returns its host path. A parent that existed keeps its
    /// modification time, so making a mount point is not a change.
    pub fn ensure(&mut self, root: &Path, path: &str, kind: Kind) -> std::io::Result<PathBuf> {
        // The loop error reads "PATH: too many levels of symbolic links".
        let host = kiln_layer::resolve::in_root(root, path, ResolveOptions::new())
            .map_err(std::io::Error::other)?;
        if fs::symlink_metadata(&host).is_ok() {
            return Ok(host);
        }
        // The nearest existing ancestor and the chain to create below it.
        let mut missing = vec![host.clone()];
        let mut parent = host.parent().map(Path::to_path_buf);
        while let Some(p) = parent.clone() {
            if p == root || fs::symlink_metadata(&p).is_ok() {
                break;
            }
            missing.push(p.clone());
            parent = p.parent().map(Path::to_path_buf);
        }
        let existing = parent.unwrap_or_else(|| root.to_path_buf());
        let before = fs::metadata(&existing)?;
        for (i, p) in missing.iter().rev().enumerate() {
            let last = i == missing.len() - 1;
            if last && kind == Kind::File {
                File::create(p)?;
            } else {
                fs::create_dir(p)?;
            }
            self.reports
                .push(Report::Created(resolve::relative(root, p)));
        }
        let mtime = UNIX_EPOCH
            + Duration::from_secs(before.mtime().max(0) as u64)
            + Duration::from_nanos(before.mtime_nsec().max(0) as u64);
        set_mtime(&existing, mtime)?;
        self.reports.push(Report::Touched(
            resolve::relative(root, &existing),
            before.mtime(),
            before.mtime_nsec(),
        ));
        Ok(host)
    }
}

fn set_mtime(path: &Path, mtime: SystemTime) -> std::io::Result<()> {
    File::open(path)?.set_times(FileTimes::new().set_modified(mtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_mount_point_behind_a_link_out_of_the_root_is_made_inside_it() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        symlink(outside.path(), r.join("mnt")).unwrap();
        symlink("../../../etc/hosts", r.join("hosts")).unwrap();
        let mut made = Made::default();
        let dir = made.ensure(r, "/mnt/data", Kind::Dir).unwrap();
        let inside = outside.path().strip_prefix("/").unwrap().join("data");
        assert_eq!(dir, r.join(inside));
        assert!(dir.is_dir());
        let file = made.ensure(r, "/hosts", Kind::File).unwrap();
        assert_eq!(file, r.join("etc/hosts"));
        assert!(file.is_file());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_link_loop_names_the_path() {
        let t = tempfile::tempdir().unwrap();
        symlink("/loop", t.path().join("loop")).unwrap();
        let e = Made::default()
            .ensure(t.path(), "/loop/x", Kind::Dir)
            .unwrap_err();
        assert_eq!(e.to_string(), "/loop/x: too many levels of symbolic links");
    }
}
