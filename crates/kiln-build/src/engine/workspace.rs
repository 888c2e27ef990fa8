//! The private working directory of one build.
//!
//! Every build works in a fresh directory of its own under `--kiln-dir` and
//! removes it when it ends (also on error and on panic, through `Drop`). Two
//! builds that share the kiln dir, one after another or at once, never see
//! each other's files: this is what makes several builds in one CI job safe.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The private directories of the builds running in this process, so that an
/// interrupted process can remove them before it exits (its build threads
/// never get to run their `Drop`).
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Set by [`remove_all_after_interrupt`]: no new workspace may start.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Removes the private directory of every build still running in this
/// process and refuses new ones. Call it on SIGINT/SIGTERM, after the RUN
/// steps' processes are gone (`kiln_sandbox::terminate_running`), right
/// before exiting.
pub fn remove_all_after_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for root in live {
        // A build thread may still be writing: retry a few times.
        for _ in 0..5 {
            if remove_tree(&root) {
                break;
            }
        }
    }
}

/// A build's private directory and its fixed subdirectories.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    keep: bool,
}

impl Workspace {
    /// Creates `<parent>/build-<pid>-<random>` (and `parent` if missing).
    pub fn create(parent: &Path) -> io::Result<Workspace> {
        fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("build-{}-", std::process::id()))
            .tempdir_in(parent)?;
        let root = dir.keep();
        {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            if INTERRUPTED.load(Ordering::SeqCst) {
                let _ = fs::remove_dir_all(&root);
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            live.push(root.clone());
        }
        for sub in ["blobs", "layers", "rootfs", "scratch", "context"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Workspace { root, keep: false })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where downloaded blobs are kept, content-addressed.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where layers written by this build go.
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Where root filesystems are materialized, one directory per name.
    pub fn rootfs(&self, name: &str) -> PathBuf {
        self.root.join("rootfs").join(name)
    }

    /// Scratch space (ADD archive spooling, downloads in progress).
    pub fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }

    /// Where a `tar://` context is unpacked.
    pub fn context(&self) -> PathBuf {
        self.root.join("context")
    }

    /// Keeps the directory after the build (for debugging with `KILN_KEEP_WORKDIR`).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.keep {
            remove_tree(&self.root);
        }
        // Only now: an interrupt meanwhile must still wait for the removal.
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|root| root != &self.root);
    }
}

/// Removes `root`; true when it is gone.
fn remove_tree(root: &Path) -> bool {
    // Files written as another user or made read-only by a layer are still
    // removable by the owner of the parent directory, but a read-only
    // directory must be made writable first.
    if fs::remove_dir_all(root).is_err() {
        make_writable(root);
        let _ = fs::remove_dir_all(root);
    }
    !root.exists()
}

fn make_writable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workspaces_are_separate_and_removed() {
        let parent = tempfile::tempdir().unwrap();
        let a = Workspace::create(parent.path()).unwrap();
        let b = Workspace::create(parent.path()).unwrap();
        assert_ne!(a.root(), b.root());
        fs::write(a.scratch().join("x"), b"x").unwrap();
        assert!(!b.scratch().join("x").exists());
        let (ra, rb) = (a.root().to_path_buf(), b.root().to_path_buf());
        drop(a);
        assert!(!ra.exists());
        assert!(rb.exists());
        drop(b);
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn read_only_dirs_are_removed_too() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let ws = Workspace::create(parent.path()).unwrap();
        let ro = ws.rootfs("s0").join("ro");
        fs::create_dir_all(&ro).unwrap();
        fs::write(ro.join("f"), b"x").unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let root = ws.root().to_path_buf();
        drop(ws);
        assert!(!root.exists());
    }
}
