//! Writing a [`CopyPlan`] into a layer, streaming file contents from disk in
//! plan order (sorted by path, parents before children).

use super::{CopyPlan, EntryKind, EntrySource, PlanEntry};
use kiln_layer::writer::EntryKind as LayerKind;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Where planned entries go: a layer writer. Paths are absolute image paths.
pub trait LayerSink {
    /// Appends a directory.
    fn add_dir(&mut self, entry: &PlanEntry) -> io::Result<()>;
    /// Appends a regular file of exactly `size` bytes read from `content`.
    fn add_file(&mut self, entry: &PlanEntry, size: u64, content: &mut dyn Read) -> io::Result<()>;
    /// Appends a symlink.
    fn add_symlink(&mut self, entry: &PlanEntry, target: &str) -> io::Result<()>;
    /// Appends a hard link to `target`, an absolute image path written earlier.
    fn add_hardlink(&mut self, entry: &PlanEntry, target: &str) -> io::Result<()>;
    /// Appends a FIFO or a device node (`entry.kind` says which; `device`
    /// holds a node's major and minor numbers).
    fn add_special(&mut self, entry: &PlanEntry, device: (u32, u32)) -> io::Result<()>;
}

/// Why a plan could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path} into the layer: {source}")]
pub struct WriteError {
    /// The image path being written.
    pub path: String,
    /// The source file, when reading it failed.
    pub file: Option<PathBuf>,
    /// The underlying error.
    pub source: io::Error,
}

/// Writes every entry of `plan` into `sink`, in plan order.
pub fn write_layer(plan: &CopyPlan, sink: &mut dyn LayerSink) -> Result<(), WriteError> {
    for e in plan.entries() {
        let err = |file: Option<PathBuf>| {
            move |source| WriteError {
                path: e.path.clone(),
                file,
                source,
            }
        };
        match (&e.kind, &e.source) {
            (EntryKind::Dir, _) => sink.add_dir(e).map_err(err(None))?,
            (EntryKind::File, EntrySource::Path(p)) => {
                let f = File::open(p).map_err(err(Some(p.clone())))?;
                let size = f.metadata().map_err(err(Some(p.clone())))?.len();
                let mut exact = Exact {
                    inner: f.take(size),
                    left: size,
                };
                sink.add_file(e, size, &mut exact)
                    .map_err(err(Some(p.clone())))?;
            }
            (EntryKind::File, EntrySource::Bytes(b)) => sink
                .add_file(e, b.len() as u64, &mut &b[..])
                .map_err(err(None))?,
            (EntryKind::Symlink, EntrySource::Link(t)) => {
                sink.add_symlink(e, t).map_err(err(None))?
            }
            (EntryKind::HardLink, EntrySource::Link(t)) => {
                sink.add_hardlink(e, t).map_err(err(None))?
            }
            (EntryKind::Fifo, EntrySource::None) => {
                sink.add_special(e, (0, 0)).map_err(err(None))?
            }
            (
                EntryKind::CharDevice | EntryKind::BlockDevice,
                EntrySource::Device { major, minor },
            ) => sink.add_special(e, (*major, *minor)).map_err(err(None))?,
            _ => {
                return Err(WriteError {
                    path: e.path.clone(),
                    file: None,
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "entry kind and source disagree",
                    ),
                })
            }
        }
    }
    Ok(())
}

/// A reader that fails if its source ends before the promised size: a file
/// shrinking mid-build must not produce a corrupt tar.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being copied",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A plain tar stream as a sink, with deterministic headers (ustar/GNU, no
/// user or group names). Used by tests and by outputs that need a bare tar.
impl<W: Write> LayerSink for tar::Builder<W> {
    fn add_dir(&mut self, e: &PlanEntry) -> io::Result<()> {
        let mut h = header(e, tar::EntryType::Directory, 0);
        self.append_data(&mut h, format!("{}/", tar_path(&e.path)), io::empty())
    }

    fn add_file(&mut self, e: &PlanEntry, size: u64, content: &mut dyn Read) -> io::Result<()> {
        let mut h = header(e, tar::EntryType::Regular, size);
        self.append_data(&mut h, tar_path(&e.path), content)
    }

    fn add_symlink(&mut self, e: &PlanEntry, target: &str) -> io::Result<()> {
        let mut h = header(e, tar::EntryType::Symlink, 0);
        self.append_link(&mut h, tar_path(&e.path), target)
    }

    fn add_hardlink(&mut self, e: &PlanEntry, target: &str) -> io::Result<()> {
        let mut h = header(e, tar::EntryType::Link, 0);
        self.append_link(&mut h, tar_path(&e.path), tar_path(target))
    }

    fn add_special(&mut self, e: &PlanEntry, (major, minor): (u32, u32)) -> io::Result<()> {
        let kind = match e.kind {
            EntryKind::CharDevice => tar::EntryType::Char,
            EntryKind::BlockDevice => tar::EntryType::Block,
            _ => tar::EntryType::Fifo,
        };
        let mut h = header(e, kind, 0);
        h.set_device_major(major)?;
        h.set_device_minor(minor)?;
        self.append_data(&mut h, tar_path(&e.path), io::empty())
    }
}

/// The layer writer is the sink the engine uses.
impl LayerSink for kiln_layer::writer::LayerWriter {
    fn add_dir(&mut self, e: &PlanEntry) -> io::Result<()> {
        self.append(&layer_entry(e, LayerKind::Dir), None)
            .map_err(io::Error::other)
    }

    fn add_file(&mut self, e: &PlanEntry, size: u64, content: &mut dyn Read) -> io::Result<()> {
        self.append(&layer_entry(e, LayerKind::File { size }), Some(content))
            .map_err(io::Error::other)
    }

    fn add_symlink(&mut self, e: &PlanEntry, target: &str) -> io::Result<()> {
        let kind = LayerKind::Symlink {
            target: target.into(),
        };
        self.append(&layer_entry(e, kind), None)
            .map_err(io::Error::other)
    }

    fn add_hardlink(&mut self, e: &PlanEntry, target: &str) -> io::Result<()> {
        let kind = LayerKind::HardLink {
            target: target.into(),
        };
        self.append(&layer_entry(e, kind), None)
            .map_err(io::Error::other)
    }

    fn add_special(&mut self, e: &PlanEntry, (major, minor): (u32, u32)) -> io::Result<()> {
        let kind = match e.kind {
            EntryKind::CharDevice => LayerKind::CharDevice { major, minor },
            EntryKind::BlockDevice => LayerKind::BlockDevice { major, minor },
            _ => LayerKind::Fifo,
        };
        self.append(&layer_entry(e, kind), None)
            .map_err(io::Error::other)
    }
}

fn layer_entry(e: &PlanEntry, kind: LayerKind) -> kiln_layer::writer::Entry {
    let meta = kiln_layer::writer::EntryMeta {
        mode: e.mode,
        uid: e.uid.into(),
        gid: e.gid.into(),
        mtime: e.mtime.max(0) as u64,
        ..Default::default()
    };
    kiln_layer::writer::Entry::new(&e.path, kind, meta)
}

fn tar_path(p: &str) -> &str {
    p.trim_start_matches('/')
}

fn header(e: &PlanEntry, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(e.mode);
    h.set_uid(e.uid.into());
    h.set_gid(e.gid.into());
    h.set_mtime(e.mtime.max(0) as u64);
    h
}
