//! [`LayerWriter`]: appends entries to a layer and streams them, in one pass,
//! through tar → sha256 (diff_id) → compressor → sha256 + byte count (blob
//! digest, size) → a temporary file that is renamed to its digest only when
//! the layer is complete. Nothing is ever held in memory beyond one
//! compression block per thread and a few MiB queued between the stages
//! (`crate::threaded`), and a failed or abandoned writer leaves no file that
//! looks like a valid blob.
//!
//! The blob is not fsync'd: it is a build's scratch file, read back by the
//! same process (pushed, linked into a layout, unpacked), and a build cut
//! short by a crash is started again, not resumed. Syncing a 1 GiB layer
//! cost up to a second on the critical path, and a small one a journal
//! commit each. Whoever keeps a blob past the build makes it durable there
//! (`Layout::link_blob` in kiln-build).

use crate::catalog::{Catalog, CatalogOptions, Recorder};
use crate::compress::{Codec, Compressor};
use crate::error::{Error, Result};
use crate::header::{self, HeaderSpec};
use crate::path::{normalize, OPAQUE_MARKER, WHITEOUT_PREFIX};
pub use crate::pgzip::Deflate;
use crate::tap::{TapHandle, TapSink};
use crate::threaded::Threaded;
use crate::watch::{BlobFile, WatchHandle};
use kiln_image_spec::media::Compression;
use kiln_image_spec::{Digest, DigestWriter};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tar::EntryType;
use tempfile::TempPath;

/// How entry modification times are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MtimePolicy {
    /// As given by the caller.
    #[default]
    Keep,
    /// Times later than this epoch (seconds) become the epoch, as BuildKit
    /// does with `SOURCE_DATE_EPOCH`; earlier times are kept.
    Clamp(u64),
    /// Every entry gets this time (0 for fully time-independent layers).
    Fixed(u64),
}

impl MtimePolicy {
    /// The mtime to write for an entry whose real mtime is `mtime`.
    pub fn apply(self, mtime: u64) -> u64 {
        match self {
            MtimePolicy::Keep => mtime,
            MtimePolicy::Clamp(epoch) => mtime.min(epoch),
            MtimePolicy::Fixed(epoch) => epoch,
        }
    }
}

/// How a layer is compressed and stamped. Build with [`LayerOptions::new`]
/// and the `with_*` methods; checked when a writer is created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerOptions {
    /// Blob compression.
    pub compression: Compression,
    /// Compression level; `None` for the algorithm's default (gzip 6, zstd 3).
    pub level: Option<i32>,
    /// Compression threads; 0 means one per core. The output does not depend
    /// on this.
    pub threads: usize,
    /// Modification-time policy for reproducible layers.
    pub mtime: MtimePolicy,
    /// gzip's deflate implementation: [`Deflate::Portable`] (the default)
    /// gives the same bytes on every machine.
    pub deflate: Deflate,
    /// Record a [`Catalog`] of the layer as it is written, returned in
    /// [`LayerBlob::catalog`].
    pub catalog: Option<CatalogOptions>,
    /// Hand a copy of the layer's tar stream to this, as it is written.
    pub tap: Option<TapHandle>,
    /// Share the blob file with this watch as it grows (see [`crate::watch`]).
    pub watch: Option<WatchHandle>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions::new(Compression::Gzip)
    }
}

impl LayerOptions {
    /// Options with `compression`, its default level, all cores, mtimes kept.
    pub fn new(compression: Compression) -> Self {
        LayerOptions {
            compression,
            level: None,
            threads: 0,
            mtime: MtimePolicy::Keep,
            deflate: Deflate::Portable,
            catalog: None,
            tap: None,
            watch: None,
        }
    }

    /// Sets the compression level.
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = Some(level);
        self
    }

    /// Sets the number of compression threads (0 = one per core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets the mtime policy.
    pub fn with_mtime(mut self, mtime: MtimePolicy) -> Self {
        self.mtime = mtime;
        self
    }

    /// Sets gzip's deflate implementation.
    pub fn with_deflate(mut self, deflate: Deflate) -> Self {
        self.deflate = deflate;
        self
    }

    /// Records a [`Catalog`] of each layer written, keeping what `catalog` names.
    pub fn with_catalog(mut self, catalog: CatalogOptions) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Hands a copy of the layer's tar stream to `tap` (see [`crate::tap`]).
    pub fn with_tap(mut self, tap: TapHandle) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Shares the blob file with `watch` while it is written (see
    /// [`crate::watch`]); only the first writer made with these options does.
    pub fn with_watch(mut self, watch: WatchHandle) -> Self {
        self.watch = Some(watch);
        self
    }
}

/// Owner, permissions, time and extended attributes of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits including setuid (0o4000), setgid (0o2000) and sticky
    /// (0o1000); file-type bits are ignored.
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// User name; written only when given.
    pub uname: Option<String>,
    /// Group name; written only when given.
    pub gname: Option<String>,
    /// Extended attributes (`security.capability`, `user.*`, ...), written as
    /// PAX `SCHILY.xattr.<name>` records in name order.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl EntryMeta {
    /// Metadata with `mode`, owned by root, at time 0, no xattrs.
    pub fn with_mode(mode: u32) -> Self {
        EntryMeta {
            mode,
            ..EntryMeta::default()
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes; its content is passed separately.
    File {
        /// Exact content length.
        size: u64,
    },
    /// A symbolic link; the target is stored verbatim.
    Symlink {
        /// Link target, relative or absolute, never resolved.
        target: PathBuf,
    },
    /// A hard link to an earlier entry of the same layer.
    HardLink {
        /// Layer path of the earlier entry.
        target: PathBuf,
    },
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// Deletes the entry's path from lower layers; written as `.wh.<name>`.
    Whiteout,
    /// Hides everything lower layers put in the entry's directory; written as
    /// `<dir>/.wh..wh..opq`. Append the directory itself as well.
    Opaque,
}

/// One entry to append: its path in the image (leading `/` optional), what it
/// is, and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path in the image.
    pub path: PathBuf,
    /// Type and type-specific data.
    pub kind: EntryKind,
    /// Owner, mode, time, xattrs.
    pub meta: EntryMeta,
}

impl Entry {
    /// An entry of `kind` at `path` with `meta`.
    pub fn new(path: impl Into<PathBuf>, kind: EntryKind, meta: EntryMeta) -> Self {
        Entry {
            path: path.into(),
            kind,
            meta,
        }
    }

    /// The path this entry has inside the tar (without the trailing `/` of
    /// directories): `a/.wh.b` for a whiteout of `a/b`, `a/.wh..wh..opq` for
    /// an opaque `a`. Fails on paths a layer cannot hold.
    pub fn tar_path(&self) -> Result<PathBuf> {
        let path = normalize(&self.path).map_err(|reason| Error::InvalidPath {
            path: self.path.display().to_string(),
            reason,
        })?;
        Ok(match self.kind {
            EntryKind::Whiteout => {
                let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
                let mut marker = WHITEOUT_PREFIX.as_bytes().to_vec();
                marker.extend_from_slice(name);
                path.with_file_name(std::ffi::OsStr::from_bytes(&marker))
            }
            EntryKind::Opaque => path.join(OPAQUE_MARKER),
            _ => path,
        })
    }
}

/// Sorts entries into the order `docker`/BuildKit walks write: by path,
/// component by component, so a directory comes before its contents. Entries
/// with invalid paths sort last (appending them fails anyway).
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by_cached_key(|e| match e.tar_path() {
        Ok(p) => (0, p),
        Err(_) => (1, e.path.clone()),
    });
}

/// A finished layer blob on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// The blob file, named by the blob digest's hex.
    pub path: PathBuf,
    /// sha256 of the blob (compressed) bytes.
    pub digest: Digest,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// Blob compression.
    pub compression: Compression,
    /// What the layer holds, when [`LayerOptions::catalog`] asked for it.
    pub catalog: Option<Arc<Catalog>>,
}

impl LayerBlob {
    /// The layer media type in the OCI (`true`) or Docker (`false`) family.
    pub fn media_type(&self, oci: bool) -> &'static str {
        self.compression
            .layer_media_type(oci)
            .expect("layers are written only as plain tar, gzip or zstd")
    }
}

/// tar → diff_id → compressor, then blob digest → file: the two halves on
/// threads of their own (`crate::threaded`), so that reading the files,
/// hashing the tar and hashing and writing the blob run side by side.
type Pipeline = Threaded<DigestWriter<Compressor<Threaded<DigestWriter<BufWriter<BlobFile>>>>>>;

/// Streams a layer to a blob file. See the module docs for the pipeline.
pub struct LayerWriter {
    stream: Pipeline,
    temp: TempPath,
    dir: PathBuf,
    compression: Compression,
    mtime: MtimePolicy,
    /// Set when a write failed midway: the tar is corrupt from then on.
    broken: bool,
    catalog: Option<Recorder>,
    tap: Option<Box<dyn TapSink>>,
}

impl LayerWriter {
    /// Starts a layer whose blob will be written into `dir`.
    pub fn new(dir: &Path, options: &LayerOptions) -> Result<Self> {
        let mut codec = Codec::new(options.compression, options.level, options.threads)?;
        codec.deflate = options.deflate;
        let temp = tempfile::Builder::new()
            .prefix(".layer-")
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|source| Error::Io {
                action: "create temp file in",
                path: dir.into(),
                source,
            })?;
        let (file, temp) = temp.into_parts();
        let feed = match &options.watch {
            Some(watch) => watch.take(&temp).map_err(|source| Error::Io {
                action: "open for watching",
                path: temp.to_path_buf(),
                source,
            })?,
            None => None,
        };
        let start_failed = |source| Error::Finish {
            dir: dir.into(),
            source,
        };
        let blob = DigestWriter::new(BufWriter::with_capacity(
            256 * 1024,
            BlobFile { file, feed },
        ));
        let blob = Threaded::new(blob, "layer-blob").map_err(start_failed)?;
        let compressor = Compressor::new(blob, codec).map_err(start_failed)?;
        let stream =
            Threaded::new(DigestWriter::new(compressor), "layer-tar").map_err(start_failed)?;
        Ok(LayerWriter {
            stream,
            temp,
            dir: dir.into(),
            compression: options.compression,
            mtime: options.mtime,
            broken: false,
            catalog: options.catalog.clone().map(Recorder::new),
            tap: options.tap.as_ref().and_then(TapHandle::open),
        })
    }

    /// Appends an entry. Regular files need `content` yielding exactly
    /// `size` bytes (bytes past `size` are not read); other kinds ignore it.
    pub fn append(&mut self, entry: &Entry, mut content: Option<&mut dyn Read>) -> Result<()> {
        let tar_path = entry.tar_path()?;
        let kept = match self.catalog.as_mut() {
            Some(recorder) => {
                let path = normalize(&entry.path).map_err(|reason| invalid(&entry.path, reason))?;
                recorder
                    .note(&path, &entry.kind, content.as_deref_mut())
                    .map_err(|source| Error::WriteEntry {
                        entry: tar_path.display().to_string(),
                        source,
                    })?
            }
            None => None,
        };
        // The recorder read a kept file's content: those bytes are written.
        match kept {
            Some(bytes) => self.append_entry(entry, &tar_path, Some(&mut bytes.as_slice())),
            None => self.append_entry(entry, &tar_path, content),
        }
    }

    /// [`LayerWriter::append`] once the entry is recorded.
    fn append_entry(
        &mut self,
        entry: &Entry,
        tar_path: &Path,
        content: Option<&mut dyn Read>,
    ) -> Result<()> {
        let mut path_bytes = tar_path.as_os_str().as_bytes().to_vec();
        let link_path;
        let (kind, size, link, device) = match &entry.kind {
            EntryKind::Dir => {
                path_bytes.push(b'/');
                (EntryType::Directory, 0, None, None)
            }
            EntryKind::File { size } => (EntryType::Regular, *size, None, None),
            EntryKind::Symlink { target } => {
                let target = target.as_os_str().as_bytes();
                if target.is_empty() || target.contains(&0) {
                    return Err(invalid(&entry.path, "symlink target is empty or has NUL"));
                }
                (EntryType::Symlink, 0, Some(target), None)
            }
            EntryKind::HardLink { target } => {
                link_path = normalize(target).map_err(|reason| invalid(target, reason))?;
                (
                    EntryType::Link,
                    0,
                    Some(link_path.as_os_str().as_bytes()),
                    None,
                )
            }
            EntryKind::CharDevice { major, minor } => {
                (EntryType::Char, 0, None, Some((*major, *minor)))
            }
            EntryKind::BlockDevice { major, minor } => {
                (EntryType::Block, 0, None, Some((*major, *minor)))
            }
            EntryKind::Fifo => (EntryType::Fifo, 0, None, None),
            EntryKind::Whiteout | EntryKind::Opaque => (EntryType::Regular, 0, None, None),
        };
        let meta = &entry.meta;
        let bytes = header::encode(&HeaderSpec {
            path: &path_bytes,
            link,
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime: self.mtime.apply(meta.mtime),
            size,
            device,
            uname: meta.uname.as_deref(),
            gname: meta.gname.as_deref(),
            xattrs: &meta.xattrs,
        });
        let name = || tar_path.display().to_string();
        self.write(&bytes).map_err(|source| Error::WriteEntry {
            entry: name(),
            source,
        })?;
        if kind == EntryType::Regular && size > 0 {
            let content = content.ok_or_else(|| Error::SizeMismatch {
                entry: name(),
                expected: size,
                actual: 0,
            })?;
            self.copy_content(content, size, tar_path)?;
        }
        Ok(())
    }

    /// Appends a regular file whose content is read from `source` on the
    /// host; the entry's size is taken from the file's length now.
    pub fn append_file_from_path(
        &mut self,
        path: impl Into<PathBuf>,
        meta: EntryMeta,
        source: &Path,
    ) -> Result<()> {
        let io_err = |source_err| Error::Io {
            action: "read",
            path: source.into(),
            source: source_err,
        };
        let mut file = File::open(source).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let entry = Entry::new(path, EntryKind::File { size }, meta);
        self.append(&entry, Some(&mut file))
    }

    /// Ends the tar, the compressed stream and the file, and renames it to
    /// `<dir>/<blob digest hex>` (not synced: see the module docs).
    pub fn finish(mut self) -> Result<LayerBlob> {
        let dir = self.dir.clone();
        let fail = |source| Error::Finish {
            dir: dir.clone(),
            source,
        };
        if self.broken {
            return Err(fail(io::Error::other(
                "an earlier entry failed; the layer is incomplete",
            )));
        }
        // End-of-archive: two zero blocks, through the tap too, so that its
        // stream is the whole tar whose digest is the diff_id.
        self.write(&[0u8; 2 * header::BLOCK]).map_err(fail)?;
        let (compressor, diff_id, _) = self.stream.finish().map_err(fail)?.finish();
        let blob = compressor.finish().map_err(fail)?.finish().map_err(fail)?;
        let (buffered, digest, size) = blob.finish();
        let BlobFile { file, feed } = buffered.into_inner().map_err(|e| fail(e.into_error()))?;
        drop(file);
        let path = self.dir.join(digest.hex());
        self.temp.persist(&path).map_err(|e| fail(e.error))?;
        if let Some(feed) = feed {
            feed.finished(digest.clone(), size);
        }
        if let Some(tap) = self.tap.take() {
            tap.finish(&diff_id);
        }
        Ok(LayerBlob {
            path,
            digest,
            diff_id,
            size,
            compression: self.compression,
            catalog: self.catalog.take().map(|r| Arc::new(r.finish())),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let result = self.stream.write_all(bytes);
        self.broken |= result.is_err();
        if let (Ok(()), Some(tap)) = (&result, &mut self.tap) {
            tap.write(bytes);
        }
        result
    }

    fn copy_content(&mut self, content: &mut dyn Read, size: u64, tar_path: &Path) -> Result<()> {
        let name = || tar_path.display().to_string();
        let mut limited = content.take(size);
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.broken = true;
                    return Err(Error::WriteEntry {
                        entry: name(),
                        source,
                    });
                }
            };
            self.write(&buf[..n]).map_err(|source| Error::WriteEntry {
                entry: name(),
                source,
            })?;
            copied += n as u64;
        }
        if copied != size {
            self.broken = true;
            return Err(Error::SizeMismatch {
                entry: name(),
                expected: size,
                actual: copied,
            });
        }
        let pad = header::padding(size);
        self.write(&[0u8; header::BLOCK][..pad])
            .map_err(|source| Error::WriteEntry {
                entry: name(),
                source,
            })
    }
}

fn invalid(path: &Path, reason: &'static str) -> Error {
    Error::InvalidPath {
        path: path.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_tar(blob: &LayerBlob) -> Vec<(String, EntryType, Vec<u8>)> {
        let file = File::open(&blob.path).unwrap();
        let reader: Box<dyn Read> = match blob.compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Zstd => Box::new(zstd::Decoder::new(file).unwrap()),
            _ => Box::new(file),
        };
        let mut archive = tar::Archive::new(reader);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let kind = e.header().entry_type();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, kind, data)
            })
            .collect()
    }

    #[test]
    fn the_tap_gets_the_whole_tar_the_diff_id_names() {
        use crate::tap::{Tap, TapHandle, TapSink};
        use sha2::{Digest as _, Sha256};
        use std::sync::Mutex;

        #[derive(Default)]
        struct Collect(Arc<Mutex<(Vec<u8>, Option<Digest>)>>);
        struct Sink(Arc<Mutex<(Vec<u8>, Option<Digest>)>>);
        impl Tap for Collect {
            fn open(&self) -> Option<Box<dyn TapSink>> {
                Some(Box::new(Sink(self.0.clone())))
            }
        }
        impl TapSink for Sink {
            fn write(&mut self, bytes: &[u8]) {
                self.0.lock().unwrap().0.extend_from_slice(bytes);
            }
            fn finish(self: Box<Self>, diff_id: &Digest) {
                self.0.lock().unwrap().1 = Some(diff_id.clone());
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let seen = Collect::default();
        let got = seen.0.clone();
        let options = LayerOptions::new(Compression::Gzip).with_tap(TapHandle(Arc::new(seen)));
        let mut w = LayerWriter::new(dir.path(), &options).unwrap();
        let mut content = Cursor::new(b"hello".to_vec());
        let meta = EntryMeta::with_mode(0o644);
        w.append(
            &Entry::new("f", EntryKind::File { size: 5 }, meta),
            Some(&mut content),
        )
        .unwrap();
        let blob = w.finish().unwrap();
        let (bytes, finished) = std::mem::take(&mut *got.lock().unwrap());
        assert_eq!(finished.as_ref(), Some(&blob.diff_id));
        let tapped = Digest::from_sha256(Sha256::digest(&bytes).into());
        assert_eq!(tapped, blob.diff_id, "the tap's stream is the whole tar");
    }

    #[test]
    fn writes_every_entry_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LayerWriter::new(dir.path(), &LayerOptions::new(Compression::Gzip)).unwrap();
        let meta = EntryMeta::with_mode(0o755);
        w.append(&Entry::new("/usr", EntryKind::Dir, meta.clone()), None)
            .unwrap();
        let mut content = Cursor::new(b"hello".to_vec());
        w.append(
            &Entry::new("usr/f", EntryKind::File { size: 5 }, meta.clone()),
            Some(&mut content),
        )
        .unwrap();
        let link = EntryKind::HardLink {
            target: "/usr/f".into(),
        };
        w.append(&Entry::new("usr/g", link, meta.clone()), None)
            .unwrap();
        let sym = EntryKind::Symlink {
            target: "../etc".into(),
        };
        w.append(&Entry::new("usr/s", sym, meta.clone()), None)
            .unwrap();
        let dev = EntryKind::CharDevice { major: 1, minor: 3 };
        w.append(&Entry::new("dev/null", dev, meta.clone()), None)
            .unwrap();
        w.append(&Entry::new("p", EntryKind::Fifo, meta.clone()), None)
            .unwrap();
        w.append(
            &Entry::new("etc/gone", EntryKind::Whiteout, EntryMeta::default()),
            None,
        )
        .unwrap();
        w.append(
            &Entry::new("var", EntryKind::Opaque, EntryMeta::default()),
            None,
        )
        .unwrap();
        let blob = w.finish().unwrap();

        let entries = read_tar(&blob);
        let names: Vec<_> = entries.iter().map(|(p, k, _)| (p.as_str(), *k)).collect();
        assert_eq!(
            names,
            vec![
                ("usr/", EntryType::Directory),
                ("usr/f", EntryType::Regular),
                ("usr/g", EntryType::Link),
                ("usr/s", EntryType::Symlink),
                ("dev/null", EntryType::Char),
                ("p", EntryType::Fifo),
                ("etc/.wh.gone", EntryType::Regular),
                ("var/.wh..wh..opq", EntryType::Regular),
            ]
        );
        assert_eq!(entries[1].2, b"hello");
        assert_eq!(blob.path, dir.path().join(blob.digest.hex()));
        assert_eq!(
            blob.media_type(true),
            kiln_image_spec::media::OCI_LAYER_GZIP
        );
        // Only the blob is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn short_content_is_an_error_and_leaves_no_blob() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LayerWriter::new(dir.path(), &LayerOptions::new(Compression::None)).unwrap();
        let mut content = Cursor::new(b"abc".to_vec());
        let err = w
            .append(
                &Entry::new("f", EntryKind::File { size: 10 }, EntryMeta::default()),
                Some(&mut content),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 10,
                    actual: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(w.finish().is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_parent_components() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LayerWriter::new(dir.path(), &LayerOptions::new(Compression::None)).unwrap();
        let err = w.append(
            &Entry::new("../x", EntryKind::Dir, EntryMeta::default()),
            None,
        );
        assert!(matches!(err, Err(Error::InvalidPath { .. })));
    }

    #[test]
    fn mtime_policies() {
        assert_eq!(MtimePolicy::Keep.apply(5), 5);
        assert_eq!(MtimePolicy::Clamp(3).apply(5), 3);
        assert_eq!(MtimePolicy::Clamp(9).apply(5), 5);
        assert_eq!(MtimePolicy::Fixed(0).apply(5), 0);
    }

    #[test]
    fn sorts_directories_before_contents() {
        let e = |p: &str| Entry::new(p, EntryKind::Dir, EntryMeta::default());
        let mut entries = vec![e("a-b"), e("a/b"), e("a"), e("0")];
        sort_entries(&mut entries);
        let order: Vec<_> = entries.iter().map(|e| e.path.to_str().unwrap()).collect();
        assert_eq!(order, vec!["0", "a", "a/b", "a-b"]);
    }
}
