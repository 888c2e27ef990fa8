//! An exclusive `flock` on a file: what serialises `index.json` rewrites
//! when several builds share one layout.

use rustix::fs::{flock, FlockOperation};
use rustix::io::retry_on_intr;
use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::LayoutError;

/// An exclusive `flock`, released when dropped (the file closes).
pub struct FileLock(File);

impl FileLock {
    /// Blocks until the lock on `path` (created when missing) is ours.
    ///
    /// # Errors
    /// The file cannot be opened or locked.
    pub fn exclusive(path: &Path) -> Result<FileLock, LayoutError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(LayoutError::io(path))?;
        // A signal that interrupts the wait is not a failure to lock.
        retry_on_intr(|| flock(&file, FlockOperation::LockExclusive))
            .map_err(|e| LayoutError::io(path)(io::Error::from(e)))?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock; being explicit documents intent.
        let _ = flock(&self.0, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether another open file description can take the lock right now.
    fn free(path: &Path) -> bool {
        let other = File::open(path).unwrap();
        match flock(&other, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => true,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => false,
            Err(e) => panic!("flock: {e}"),
        }
    }

    #[test]
    fn the_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json.lock");
        let lock = FileLock::exclusive(&path).unwrap();
        assert!(!free(&path));
        drop(lock);
        assert!(free(&path));
    }

    #[test]
    fn a_lock_file_that_cannot_be_created_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("index.json.lock");
        let Err(e) = FileLock::exclusive(&path) else {
            panic!("locked a file in a missing directory");
        };
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }
}
