//! FIFOs, device nodes and sockets met in a COPY source (a stage's root, a
//! base image's layers, the context).
//!
//! They are copied as what they are, as BuildKit does: a FIFO or a device
//! node becomes a tar entry of that kind, and is never opened (opening a
//! FIFO for reading waits for a writer that never comes; reading a device
//! may never end). A socket cannot be put in a tar and is skipped with a
//! warning.

use super::{EntryKind, EntrySource};
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The entry for a special file, or `None` (after a warning) for one a
/// layer cannot hold. Not for directories, regular files or symlinks.
pub(crate) fn special_entry(path: &Path, meta: &Metadata) -> Option<(EntryKind, EntrySource)> {
    let t = meta.file_type();
    let device = || EntrySource::Device {
        major: libc::major(meta.rdev()),
        minor: libc::minor(meta.rdev()),
    };
    if t.is_fifo() {
        Some((EntryKind::Fifo, EntrySource::None))
    } else if t.is_char_device() {
        Some((EntryKind::CharDevice, device()))
    } else if t.is_block_device() {
        Some((EntryKind::BlockDevice, device()))
    } else {
        tracing::warn!(path = %path.display(), "skipping socket in COPY source: a layer cannot hold it");
        None
    }
}

/// True when `meta` is a directory, a regular file or a symlink.
pub(crate) fn is_ordinary(meta: &Metadata) -> bool {
    let t = meta.file_type();
    t.is_dir() || t.is_file() || t.is_symlink()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::layer::write_layer;
    use crate::copy::{CopyPlan, PlanEntry};

    fn entry(path: &str, (kind, source): (EntryKind, EntrySource)) -> PlanEntry {
        PlanEntry {
            path: path.into(),
            kind,
            source,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    #[test]
    fn fifos_and_devices_become_tar_entries_of_their_kind() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("initctl");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let null = Path::new("/dev/null");
        let fifo_node = special_entry(&fifo, &std::fs::symlink_metadata(&fifo).unwrap()).unwrap();
        let null_node = special_entry(null, &std::fs::metadata(null).unwrap()).unwrap();
        assert_eq!(fifo_node, (EntryKind::Fifo, EntrySource::None));
        assert_eq!(
            null_node,
            (
                EntryKind::CharDevice,
                EntrySource::Device { major: 1, minor: 3 }
            )
        );
        let plan = CopyPlan::from_entries([
            entry("/run/initctl", fifo_node),
            entry("/dev/null", null_node),
        ]);
        let mut tar = tar::Builder::new(Vec::new());
        // A FIFO opened for reading would block here forever.
        write_layer(&plan, &mut tar).unwrap();
        let bytes = tar.into_inner().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let kinds: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.entry_type(),
                    h.device_major().unwrap(),
                    h.device_minor().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "dev/null".to_string(),
                    tar::EntryType::Char,
                    Some(1),
                    Some(3)
                ),
                (
                    "run/initctl".to_string(),
                    tar::EntryType::Fifo,
                    Some(0),
                    Some(0)
                ),
            ]
        );
        // Different kinds, different cache inputs; and no file is read.
        let as_fifo = CopyPlan::from_entries([entry("/x", (EntryKind::Fifo, EntrySource::None))]);
        let as_dev = CopyPlan::from_entries([entry(
            "/x",
            (
                EntryKind::CharDevice,
                EntrySource::Device { major: 0, minor: 0 },
            ),
        )]);
        assert_ne!(
            as_fifo.inputs_digest().unwrap(),
            as_dev.inputs_digest().unwrap()
        );
    }

    #[test]
    fn a_socket_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(
            special_entry(&sock, &std::fs::symlink_metadata(&sock).unwrap()),
            None
        );
    }
}
