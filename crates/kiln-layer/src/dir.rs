//! Writing a layer from a directory tree: a COPY's staged files, or a RUN
//! step's overlayfs upper directory.
//!
//! The walk is sorted by name at every level (so the same tree always gives
//! the same bytes), never follows symlinks, and keeps types, modes, owners,
//! xattrs and hard links (a file whose (dev, inode) was already archived
//! becomes a hard link to the first path). `security.selinux` labels are host
//! state and never archived.
//!
//! With [`TreeOptions::overlay_upper`] the tree is read as an overlayfs upper
//! dir: a 0/0 character device is a deletion (`.wh.<name>`), a directory
//! marked opaque (`trusted.overlay.opaque=y` or `user.overlay.opaque=y`) is
//! archived followed by its opaque marker, and overlay's own xattrs are never
//! copied. Overlay must be mounted with `redirect_dir=off` and `metacopy=off`
//! (renamed directories and metadata-only copies are not translated).

use crate::error::{Error, Result};
use crate::writer::{Entry, EntryKind, EntryMeta, LayerBlob, LayerOptions, LayerWriter};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Xattr names never archived: overlay bookkeeping and host security labels.
fn skip_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name == "security.selinux"
}

/// How a tree is read.
#[derive(Default)]
#[non_exhaustive]
pub struct TreeOptions<'a> {
    /// Read the tree as an overlayfs upper dir (whiteouts, opaque dirs).
    pub overlay_upper: bool,
    /// Where the tree's root goes in the image (`app` puts `x` at `app/x`);
    /// empty for the image root.
    pub prefix: PathBuf,
    /// Paths (relative to the tree root) to leave out, with everything under
    /// them, such as bind-mounted `etc/hosts`.
    pub exclude: Option<&'a dyn Fn(&Path) -> bool>,
}

impl<'a> TreeOptions<'a> {
    /// Reads the tree as an overlayfs upper dir.
    pub fn overlay_upper(mut self) -> Self {
        self.overlay_upper = true;
        self
    }

    /// Places the tree under `prefix` in the image.
    pub fn with_prefix(mut self, prefix: impl Into<PathBuf>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Leaves out paths for which `exclude` returns true.
    pub fn with_exclude(mut self, exclude: &'a dyn Fn(&Path) -> bool) -> Self {
        self.exclude = Some(exclude);
        self
    }
}

/// Archives the tree at `root` into a new layer blob in `blob_dir`.
pub fn write_tree(
    root: &Path,
    blob_dir: &Path,
    layer: &LayerOptions,
    tree: &TreeOptions<'_>,
) -> Result<LayerBlob> {
    let mut writer = LayerWriter::new(blob_dir, layer)?;
    append_tree(&mut writer, root, tree)?;
    writer.finish()
}

/// Appends the tree at `root` (not the root itself) to `writer`.
///
/// The walk holds open directories and names entries relative to them
/// ([`crate::deep`]): a RUN step can make a tree whose host paths are
/// longer than `PATH_MAX`.
pub fn append_tree(writer: &mut LayerWriter, root: &Path, tree: &TreeOptions<'_>) -> Result<()> {
    let mut first_paths: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let skip = |rel: &Path| tree.exclude.is_some_and(|exclude| exclude(rel));
    let walked = crate::deep::walk_at::<Stop>(root, &skip, |rel, st, _, at| {
        let regular = rustix::fs::FileType::from_raw_mode(st.st_mode).is_file();
        if regular {
            if let Some(opened) = open_regular(root, &rel, at).map_err(Stop::Layer)? {
                let host = || root.join(&rel);
                let path = tree.prefix.join(&rel);
                return append_regular(writer, &path, &host, opened, &mut first_paths)
                    .map_err(Stop::Layer);
            }
        }
        append_one(writer, root, &rel, tree, &mut first_paths).map_err(Stop::Layer)
    });
    match walked {
        Ok(()) => Ok(()),
        Err(Stop::Layer(e)) => Err(e),
        Err(Stop::Walk(source)) => Err(Error::Walk {
            path: root.to_path_buf(),
            source,
        }),
    }
}

/// Why the walk of [`append_tree`] stopped.
enum Stop {
    Walk(std::io::Error),
    Layer(Error),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Walk(e)
    }
}

/// A regular file the walk found, opened through its parent directory (one
/// name looked up, not the whole host path); `None` when it is no longer a
/// regular file (replaced since the walk saw it), for the path-based route.
/// Its metadata comes with it: the one `fstat` the entry needs.
fn open_regular(
    root: &Path,
    rel: &Path,
    at: crate::deep::At<'_>,
) -> Result<Option<(File, Metadata)>> {
    use rustix::fs::{Mode, OFlags};
    // NONBLOCK: should a FIFO have taken the name meanwhile, opening it must
    // not wait for a writer.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let opened = rustix::fs::openat(at.dir, at.name, flags | OFlags::NONBLOCK, Mode::empty());
    let fd = match opened {
        Ok(fd) => fd,
        // A symlink or something else now: let the path route describe it.
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => return Ok(None),
        Err(e) => {
            return Err(Error::Walk {
                path: root.join(rel),
                source: e.into(),
            })
        }
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|source| Error::Walk {
        path: root.join(rel),
        source,
    })?;
    Ok(meta.is_file().then_some((file, meta)))
}

/// Appends an open regular file at `path` in the image: its metadata and
/// xattrs read from the open file, a hard link when its inode was archived
/// already. `host` names it in errors.
fn append_regular(
    writer: &mut LayerWriter,
    path: &Path,
    host: &dyn Fn() -> PathBuf,
    (mut file, meta): (File, Metadata),
    first_paths: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let entry_meta = meta_with(&meta, read_xattrs(XattrSource::File(&file), host)?);
    if meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = first_paths.get(&key) {
            let link = EntryKind::HardLink {
                target: first.clone(),
            };
            return writer.append(&Entry::new(path, link, entry_meta), None);
        }
        first_paths.insert(key, path.to_path_buf());
    }
    let entry = Entry::new(path, EntryKind::File { size: meta.len() }, entry_meta);
    writer.append(&entry, Some(&mut file))
}

fn append_one(
    writer: &mut LayerWriter,
    root: &Path,
    rel: &Path,
    tree: &TreeOptions<'_>,
    first_paths: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let walk_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Walk { path, source }
    };
    let reachable = crate::deep::HostPath::new(root, rel).map_err(walk_err(&root.join(rel)))?;
    let host = reachable.path();
    let meta = std::fs::symlink_metadata(host).map_err(walk_err(host))?;
    let path = tree.prefix.join(rel);
    let file_type = meta.file_type();
    let entry_meta = entry_meta(host, &meta)?;

    if file_type.is_dir() {
        writer.append(&Entry::new(&path, EntryKind::Dir, entry_meta), None)?;
        if tree.overlay_upper && is_opaque(host) {
            writer.append(
                &Entry::new(&path, EntryKind::Opaque, EntryMeta::default()),
                None,
            )?;
        }
    } else if file_type.is_file() {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = first_paths.get(&key) {
                let link = EntryKind::HardLink {
                    target: first.clone(),
                };
                writer.append(&Entry::new(&path, link, entry_meta), None)?;
                return Ok(());
            }
            first_paths.insert(key, path.clone());
        }
        writer.append_file_from_path(&path, entry_meta, host)?;
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(host).map_err(walk_err(host))?;
        writer.append(
            &Entry::new(&path, EntryKind::Symlink { target }, entry_meta),
            None,
        )?;
    } else if file_type.is_char_device() {
        let (major, minor) = split_dev(meta.rdev());
        if tree.overlay_upper && major == 0 && minor == 0 {
            writer.append(
                &Entry::new(&path, EntryKind::Whiteout, EntryMeta::default()),
                None,
            )?;
        } else {
            writer.append(
                &Entry::new(&path, EntryKind::CharDevice { major, minor }, entry_meta),
                None,
            )?;
        }
    } else if file_type.is_block_device() {
        let (major, minor) = split_dev(meta.rdev());
        writer.append(
            &Entry::new(&path, EntryKind::BlockDevice { major, minor }, entry_meta),
            None,
        )?;
    } else if file_type.is_fifo() {
        writer.append(&Entry::new(&path, EntryKind::Fifo, entry_meta), None)?;
    } else {
        tracing::warn!(path = %root.join(rel).display(), "skipping socket: tar cannot hold it");
    }
    Ok(())
}

fn split_dev(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

fn entry_meta(host: &Path, meta: &Metadata) -> Result<EntryMeta> {
    Ok(meta_with(
        meta,
        read_xattrs(XattrSource::Path(host), &|| host.to_path_buf())?,
    ))
}

fn meta_with(meta: &Metadata, xattrs: BTreeMap<String, Vec<u8>>) -> EntryMeta {
    EntryMeta {
        mode: meta.mode() & 0o7777,
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
        mtime: meta.mtime().max(0) as u64,
        uname: None,
        gname: None,
        xattrs,
    }
}

fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| get_xattr(dir, name).is_some_and(|v| v == b"y"))
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    XattrSource::Path(path).get(name)
}

/// What xattrs are read from: a path (not following a symlink) or an
/// open file.
#[derive(Clone, Copy)]
enum XattrSource<'a> {
    Path(&'a Path),
    File(&'a File),
}

impl XattrSource<'_> {
    fn list_len(self) -> rustix::io::Result<usize> {
        match self {
            XattrSource::Path(p) => rustix::fs::llistxattr_query(p),
            XattrSource::File(f) => rustix::fs::flistxattr_query(f),
        }
    }

    fn list(self, names: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            XattrSource::Path(p) => rustix::fs::llistxattr(p, names),
            XattrSource::File(f) => rustix::fs::flistxattr(f, names),
        }
    }

    fn get(self, name: &str) -> Option<Vec<u8>> {
        let size = match self {
            XattrSource::Path(p) => rustix::fs::lgetxattr_query(p, name),
            XattrSource::File(f) => rustix::fs::fgetxattr_query(f, name),
        }
        .ok()?;
        let mut value = vec![0u8; size];
        let n = match self {
            XattrSource::Path(p) => rustix::fs::lgetxattr(p, name, &mut value[..]),
            XattrSource::File(f) => rustix::fs::fgetxattr(f, name, &mut value[..]),
        }
        .ok()?;
        value.truncate(n);
        Some(value)
    }
}

/// All archivable xattrs of `source` (`path()` names it in errors). File
/// systems without xattr support give none.
fn read_xattrs(
    source: XattrSource<'_>,
    path: &dyn Fn() -> PathBuf,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let walk_err = |e: rustix::io::Errno| Error::Walk {
        path: path(),
        source: e.into(),
    };
    let size = match source.list_len() {
        Ok(0) => return Ok(out),
        Ok(size) => size,
        Err(rustix::io::Errno::NOTSUP) => return Ok(out),
        Err(e) => return Err(walk_err(e)),
    };
    let mut names = vec![0u8; size];
    let n = source.list(&mut names[..]).map_err(walk_err)?;
    for raw in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if skip_xattr(name) {
            continue;
        }
        if let Some(value) = source.get(name) {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}
