//! An exclusive `flock` on a file: what serialises `index.json` rewrites
//! when several builds share one layout.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
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
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock(file));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(LayoutError::io(path)(err));
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock; being explicit documents intent.
        // SAFETY: as in `exclusive`.
        let _ = unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
