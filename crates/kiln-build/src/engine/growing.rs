//! Reading a blob while it is still being downloaded, so that a base
//! layer is unpacked as it arrives instead of after.
//!
//! The download writes the blob's file front to back and flushes it before
//! it reports success; [`GrowingFile`] reads what is there and, at the end
//! of what has arrived, waits for more or for the download's outcome. The
//! bytes it hands out are not verified until the download is: the caller
//! must treat what it built from them as unverified until
//! [`DownloadWatch`] says the download succeeded.

use super::signal::Signal;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a reader that caught up with the download waits before it
/// looks at the file again (it is woken at once when the download ends).
const POLL: Duration = Duration::from_millis(5);

/// How a download ended, once it has.
pub(crate) type DownloadWatch = Signal<Result<(), DownloadFailed>>;

/// What a reader behind a failed download gets. The download's own error
/// is not repeated here: whoever awaited the download reports it, ahead
/// of anything the reader made of the partial file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the download of {what} failed")]
pub(crate) struct DownloadFailed {
    /// The blob being downloaded.
    pub(crate) what: String,
}

/// The file a download is writing, read as it grows.
pub(crate) struct GrowingFile {
    path: PathBuf,
    file: Option<File>,
    watch: Arc<DownloadWatch>,
}

impl GrowingFile {
    pub(crate) fn new(path: PathBuf, watch: Arc<DownloadWatch>) -> GrowingFile {
        GrowingFile {
            path,
            file: None,
            watch,
        }
    }
}

impl Read for GrowingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Looked at before reading: a download that had ended by then
            // had also flushed every byte, so an empty read is the end.
            let outcome = self.watch.get();
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(f) => self.file = Some(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound && outcome.is_none() => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(file) = &mut self.file {
                let n = file.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
            }
            match outcome {
                Some(Ok(())) => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => self.watch.wait_at_most(POLL),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_what_arrives_until_the_download_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let watch = Arc::new(DownloadWatch::default());
        let writer = {
            let (path, watch) = (path.clone(), watch.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let mut f = File::create(&path).unwrap();
                for i in 0..50u8 {
                    f.write_all(&[i; 1000]).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
                watch.set(Ok(()));
            })
        };
        let mut got = Vec::new();
        GrowingFile::new(path, watch).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        let want: Vec<u8> = (0..50u8).flat_map(|i| [i; 1000]).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_failed_download_is_an_error_for_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"partial").unwrap();
        let watch = Arc::new(DownloadWatch::default());
        let mut reader = GrowingFile::new(path, watch.clone());
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), 7);
        let failed = DownloadFailed {
            what: "blob".into(),
        };
        watch.set(Err(failed.clone()));
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(
            err.get_ref()
                .and_then(|e| e.downcast_ref::<DownloadFailed>()),
            Some(&failed),
            "{err}"
        );
    }
}
