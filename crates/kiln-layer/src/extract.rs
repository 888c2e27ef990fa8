//! Safe extraction of a layer into a root directory.
//!
//! Every path is normalized (leading `/` contained, `..` refused) and every
//! parent is resolved inside the root (see [`crate::resolve`]); the last
//! component is always created fresh with `*at` calls that never follow a
//! symlink, so no entry can write, link or delete outside the root.
//!
//! Two ways to apply a layer ([`ApplyMode`]):
//! - **Flatten** onto a tree that already holds the lower layers: `.wh.x`
//!   deletes `x`, an opaque marker empties its directory of what lower layers
//!   put there, and an entry replaces whatever is at its path unless both are
//!   directories (then the directory is kept and its metadata updated), as
//!   containerd's apply does.
//! - **OverlayLower**: unpack one layer alone into an empty directory to be
//!   stacked by overlayfs: `.wh.x` becomes the character device 0/0 `x`, and
//!   an opaque marker the xattr `trusted.overlay.opaque=y` (or
//!   `user.overlay.opaque` for rootless overlay mounts with `userxattr`).
//!
//! Owners are kept when running as root, modes and mtimes always (directory
//! times after their children), xattrs where the file system and privileges
//! allow (otherwise a warning). `trusted.overlay.*` xattrs from a layer are
//! never applied: they would steer the overlay mount.

use crate::catalog::{Catalog, CatalogOptions, Recorder};
use crate::error::{Error, Result};
use crate::list::entry_from_tar;
use crate::path::normalize;
use crate::reader::LayerReader;
use crate::resolve::Root;
use crate::tap::TapHandle;
use crate::writer::{Entry, EntryKind, EntryMeta};
use kiln_image_spec::Digest;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Bytes copied per read/write when writing a file's content.
const COPY_BUFFER: usize = 256 * 1024;

/// Largest regular file accepted by default (1 TiB): a header claiming more is
/// treated as hostile rather than trusted to fill the disk.
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 1 << 40;

/// How whiteouts and opaque directories are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyMode {
    /// Apply onto an existing tree holding the lower layers.
    Flatten,
    /// Unpack into an empty directory as an overlayfs lower layer.
    OverlayLower,
}

/// Extraction settings. [`ExtractOptions::new`] picks defaults from the
/// process's privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractOptions {
    /// Whiteout handling.
    pub mode: ApplyMode,
    /// chown entries to the layer's uid/gid (default: when running as root).
    pub preserve_owners: bool,
    /// Create device nodes (default: when running as root); otherwise they are
    /// skipped with a warning.
    pub allow_devices: bool,
    /// In OverlayLower mode, mark opaque dirs with `user.overlay.opaque`
    /// instead of `trusted.overlay.opaque` (overlay mounted with `userxattr`).
    pub user_xattr_overlay: bool,
    /// Regular files larger than this are refused.
    pub max_entry_size: u64,
    /// Record a [`Catalog`] of the layer as it is applied, returned in
    /// [`ExtractSummary::catalog`].
    pub catalog: Option<CatalogOptions>,
    /// Hand a copy of the layer's tar stream to this, as it is read.
    pub tap: Option<TapHandle>,
}

impl ExtractOptions {
    /// Defaults for `mode`.
    pub fn new(mode: ApplyMode) -> Self {
        let root = rustix::process::geteuid().is_root();
        ExtractOptions {
            mode,
            preserve_owners: root,
            allow_devices: root,
            user_xattr_overlay: false,
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
            catalog: None,
            tap: None,
        }
    }

    /// Records a [`Catalog`] of the layer, keeping what `catalog` names.
    pub fn with_catalog(mut self, catalog: CatalogOptions) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Hands a copy of the layer's tar stream to `tap` (see [`crate::tap`]).
    pub fn with_tap(mut self, tap: TapHandle) -> Self {
        self.tap = Some(tap);
        self
    }
}

/// What an extraction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Entries applied (whiteouts included).
    pub entries: u64,
    /// Entries skipped (device nodes without privilege).
    pub skipped: u64,
    /// Regular-file bytes written.
    pub bytes: u64,
    /// The verified diff_id of the layer.
    pub diff_id: Digest,
    /// What the layer holds, when [`ExtractOptions::catalog`] asked for it.
    pub catalog: Option<Catalog>,
}

/// Extracts the layer read by `reader` into `root` (which must exist).
///
/// The diff_id is checked at the end if the reader expects one; on any error,
/// including a mismatch, the tree is partially written and must be discarded.
pub fn extract(
    mut reader: LayerReader<'_>,
    root: &Path,
    options: &ExtractOptions,
) -> Result<ExtractSummary> {
    let label = reader.label().to_string();
    if let Some(sink) = options.tap.as_ref().and_then(TapHandle::open) {
        reader.tap(sink);
    }
    let root_handle = Root::open(root).map_err(|source| Error::Io {
        action: "open extraction root",
        path: root.into(),
        source,
    })?;
    let mut applier = Applier {
        root: root_handle,
        options,
        label: &label,
        unpacked: HashSet::new(),
        made_dirs: HashSet::new(),
        last_parent: None,
        copy_buf: vec![0u8; COPY_BUFFER],
        dirs: Vec::new(),
        summary: (0, 0, 0),
    };
    let mut recorder = options.catalog.clone().map(Recorder::new);
    {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = archive.entries().map_err(|source| Error::Read {
            layer: label.clone(),
            source,
        })?;
        for raw in entries {
            let mut raw = raw.map_err(|source| Error::BadEntry {
                layer: label.clone(),
                entry: "<header>".into(),
                source,
            })?;
            let Some(entry) = entry_from_tar(&mut raw, &label)? else {
                continue;
            };
            let kept = match recorder.as_mut() {
                Some(r) => r
                    .note(&entry.path, &entry.kind, Some(&mut raw))
                    .map_err(|source| Error::BadEntry {
                        layer: label.clone(),
                        entry: entry.path.display().to_string(),
                        source,
                    })?,
                None => None,
            };
            // The recorder read a kept file's content: apply those bytes.
            match kept {
                Some(bytes) => applier.apply(&entry, &mut bytes.as_slice())?,
                None => applier.apply(&entry, &mut raw)?,
            }
        }
    }
    applier.finish_dirs()?;
    let diff_id = reader.finish()?;
    let (entries, skipped, bytes) = applier.summary;
    Ok(ExtractSummary {
        entries,
        skipped,
        bytes,
        diff_id,
        catalog: recorder.map(Recorder::finish),
    })
}

struct Applier<'a> {
    root: Root,
    options: &'a ExtractOptions,
    label: &'a str,
    /// Paths this layer wrote, and their ancestors: what an opaque marker keeps.
    unpacked: HashSet<PathBuf>,
    /// Directories this extraction created: a name in one of them exists
    /// only if this layer wrote it, so there is nothing to stat first.
    made_dirs: HashSet<PathBuf>,
    /// The last entry's parent directory, still open: entries come grouped
    /// by directory, and resolving the same parent for each costs a
    /// path walk per file.
    last_parent: Option<(PathBuf, OwnedFd)>,
    /// File contents are copied through this, in large writes.
    copy_buf: Vec<u8>,
    /// Directory metadata applied after all entries, deepest first.
    dirs: Vec<(PathBuf, EntryMeta)>,
    /// (entries, skipped, bytes)
    summary: (u64, u64, u64),
}

impl Applier<'_> {
    fn err(&self, entry: &Path, action: &'static str) -> impl Fn(io::Error) -> Error + '_ {
        let entry = entry.display().to_string();
        move |source| Error::Extract {
            layer: self.label.to_string(),
            entry: entry.clone(),
            action,
            source,
        }
    }

    fn refuse(&self, entry: &Path, reason: impl Into<String>) -> Error {
        Error::Unsafe {
            layer: self.label.to_string(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    fn apply(&mut self, entry: &Entry, content: &mut dyn Read) -> Result<()> {
        let path = entry.path.as_path();
        let name = path
            .file_name()
            .ok_or_else(|| self.refuse(path, "no file name"))?;
        let parent_rel = path.parent().unwrap_or(Path::new(""));
        self.summary.0 += 1;
        if matches!(entry.kind, EntryKind::Whiteout | EntryKind::Opaque) {
            // They delete trees: the cached parent may be among them.
            self.last_parent = None;
        }
        match (&entry.kind, self.options.mode) {
            // Whiteouts and opaque markers act on the layer's own path and
            // never through a symlink: `link/.wh..wh..opq` with `link -> /`
            // must not empty the image. Nothing to do when the path is not
            // there as directories.
            (EntryKind::Whiteout, ApplyMode::Flatten) => {
                let Some(parent) = self.marker_dir(path, parent_rel, false)? else {
                    return Ok(());
                };
                return remove_all_at(&parent, name)
                    .map_err(self.err(path, "delete whited-out path"));
            }
            (EntryKind::Whiteout, ApplyMode::OverlayLower) => {
                let Some(parent) = self.marker_dir(path, parent_rel, true)? else {
                    return Ok(());
                };
                remove_all_at(&parent, name).map_err(self.err(path, "replace"))?;
                rfs::mknodat(
                    &parent,
                    name,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(|e| self.err(path, "create whiteout device")(e.into()))?;
                return Ok(());
            }
            (EntryKind::Opaque, ApplyMode::Flatten) => {
                let Some(dir) = self.marker_dir(path, path, false)? else {
                    return Ok(());
                };
                return clear_lower(&dir, path, &self.unpacked)
                    .map_err(self.err(path, "empty opaque dir"));
            }
            (EntryKind::Opaque, ApplyMode::OverlayLower) => {
                let Some(dir) = self.marker_dir(path, path, true)? else {
                    return Ok(());
                };
                let key = if self.options.user_xattr_overlay {
                    "user.overlay.opaque"
                } else {
                    "trusted.overlay.opaque"
                };
                return rfs::fsetxattr(&dir, key, b"y", XattrFlags::empty())
                    .map_err(|e| self.err(path, "mark opaque dir")(e.into()));
            }
            _ => {}
        }

        let parent = self.cached_parent(path, parent_rel)?;
        let result = self.apply_at(entry, content, &parent, path, name);
        if result.is_ok() {
            self.last_parent = Some((parent_rel.to_path_buf(), parent));
        }
        result
    }

    /// [`Applier::apply`] for everything but whiteouts and opaque markers,
    /// with the entry's parent directory open.
    fn apply_at(
        &mut self,
        entry: &Entry,
        content: &mut dyn Read,
        parent: &OwnedFd,
        path: &Path,
        name: &OsStr,
    ) -> Result<()> {
        let parent_rel = path.parent().unwrap_or(Path::new(""));
        let fresh = self.made_dirs.contains(parent_rel) && !self.unpacked.contains(path);
        let existing = if fresh {
            None
        } else {
            rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()
        };
        let keep_dir = matches!(entry.kind, EntryKind::Dir)
            && existing
                .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() && !keep_dir {
            remove_all_at(parent, name).map_err(self.err(path, "replace existing entry"))?;
        }
        let mode = Mode::from_raw_mode(entry.meta.mode & 0o7777);
        match &entry.kind {
            EntryKind::Dir => {
                if !keep_dir {
                    rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.err(path, "create directory")(e.into()))?;
                    self.made_dirs.insert(path.to_path_buf());
                }
            }
            EntryKind::File { size } => {
                if *size > self.options.max_entry_size {
                    return Err(
                        self.refuse(path, format!("declared size {size} exceeds the limit"))
                    );
                }
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = rfs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
                    .map_err(|e| self.err(path, "create file")(e.into()))?;
                let mut file = File::from(fd);
                let copied = self
                    .copy_content(content, *size, &mut file)
                    .map_err(self.err(path, "write file"))?;
                if copied != *size {
                    return Err(self.refuse(
                        path,
                        format!("truncated: header says {size} bytes, tar has {copied}"),
                    ));
                }
                self.summary.2 += copied;
                self.mark_unpacked(path);
                // Through the open file: no path lookup per call.
                return self.set_file_metadata(file.as_fd(), path, &entry.meta);
            }
            EntryKind::Symlink { target } => {
                rfs::symlinkat(target.as_os_str(), parent, name)
                    .map_err(|e| self.err(path, "create symlink")(e.into()))?;
            }
            EntryKind::HardLink { target } => {
                let target = normalize(target)
                    .map_err(|r| self.refuse(path, format!("hard link target: {r}")))?;
                let tname = target
                    .file_name()
                    .ok_or_else(|| self.refuse(path, "hard link to the root"))?;
                let tparent = self
                    .root
                    .open_dir(target.parent().unwrap_or(Path::new("")))
                    .map_err(self.err(path, "resolve hard link target"))?;
                let st = rfs::statat(&tparent, tname, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.err(path, "resolve hard link target")(e.into()))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(self.refuse(path, "hard link to a directory"));
                }
                rfs::linkat(&tparent, tname, parent, name, AtFlags::empty())
                    .map_err(|e| self.err(path, "create hard link")(e.into()))?;
                self.mark_unpacked(path);
                // A hard link shares the target's inode and metadata.
                return Ok(());
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                let kind = if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                if !self.options.allow_devices {
                    tracing::warn!(layer = self.label, entry = %path.display(), "skipping device node: not permitted");
                    self.summary.1 += 1;
                    return Ok(());
                }
                match rfs::mknodat(parent, name, kind, mode, rfs::makedev(*major, *minor)) {
                    Ok(()) => {}
                    Err(Errno::PERM) => {
                        tracing::warn!(layer = self.label, entry = %path.display(), "skipping device node: mknod not permitted");
                        self.summary.1 += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(self.err(path, "create device node")(e.into())),
                }
            }
            EntryKind::Fifo => {
                rfs::mknodat(parent, name, FileType::Fifo, mode, 0)
                    .map_err(|e| self.err(path, "create fifo")(e.into()))?;
            }
            EntryKind::Whiteout | EntryKind::Opaque => unreachable!("handled above"),
            #[allow(unreachable_patterns)]
            _ => return Err(self.refuse(path, "unsupported entry kind")),
        }
        self.mark_unpacked(path);
        if matches!(entry.kind, EntryKind::Dir) {
            self.dirs.push((path.to_path_buf(), entry.meta.clone()));
            return Ok(());
        }
        let is_symlink = matches!(entry.kind, EntryKind::Symlink { .. });
        self.set_metadata(parent, name, path, &entry.meta, is_symlink)
    }

    /// The parent directory of an entry: the previous entry's when it is
    /// the same one, else resolved inside the root.
    fn cached_parent(&mut self, path: &Path, parent_rel: &Path) -> Result<OwnedFd> {
        match self.last_parent.take() {
            Some((rel, fd)) if rel == parent_rel => Ok(fd),
            _ => self.parent(path, parent_rel),
        }
    }

    /// Copies `size` bytes of `content` into `file`; the bytes copied
    /// (fewer when the tar ends early).
    fn copy_content(
        &mut self,
        content: &mut dyn Read,
        size: u64,
        file: &mut File,
    ) -> io::Result<u64> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.copy_buf.len() as u64) as usize;
            let n = match content.read(&mut self.copy_buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&self.copy_buf[..n])?;
            left -= n as u64;
        }
        Ok(size - left)
    }

    /// [`Applier::set_metadata`] for a regular file still open for writing.
    fn set_file_metadata(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        path: &Path,
        meta: &EntryMeta,
    ) -> Result<()> {
        if let Some((uid, gid)) = self.owner(path, meta)? {
            rfs::fchown(fd, Some(uid), Some(gid)).map_err(|e| self.err(path, "chown")(e.into()))?;
        }
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|e| self.err(path, "chmod")(e.into()))?;
        self.apply_xattrs(path, meta, |key, value| {
            rfs::fsetxattr(fd, key, value, XattrFlags::empty())
        });
        rfs::futimens(fd, &mtime_times(meta.mtime))
            .map_err(|e| self.err(path, "set mtime")(e.into()))
    }

    /// The directory a whiteout or opaque marker acts in, opened without
    /// following symlinks; `None` when it is not there as directories.
    fn marker_dir(&self, path: &Path, dir: &Path, create: bool) -> Result<Option<OwnedFd>> {
        let opened = self
            .root
            .open_dir_no_follow(dir, create)
            .map_err(self.err(path, "open the directory of a whiteout"))?;
        if opened.is_none() {
            tracing::debug!(layer = self.label, entry = %path.display(), "whiteout not applied: its directory is missing or a symlink");
        }
        Ok(opened)
    }

    fn parent(&self, path: &Path, parent_rel: &Path) -> Result<OwnedFd> {
        self.root.open_dir_create(parent_rel).map_err(|e| {
            if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
                || e.raw_os_error() == Some(Errno::EXIST.raw_os_error())
            {
                self.refuse(
                    path,
                    format!("parent is not a directory (or a dangling link): {e}"),
                )
            } else {
                self.err(path, "open parent directory")(e)
            }
        })
    }

    fn mark_unpacked(&mut self, path: &Path) {
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() || !self.unpacked.insert(ancestor.to_path_buf()) {
                break;
            }
        }
    }

    /// Owner, mode, xattrs, then mtime: chown clears setuid bits and file
    /// capabilities, so it goes first.
    fn set_metadata(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
        meta: &EntryMeta,
        is_symlink: bool,
    ) -> Result<()> {
        if let Some((uid, gid)) = self.owner(path, meta)? {
            rfs::chownat(
                parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.err(path, "chown")(e.into()))?;
        }
        if !is_symlink {
            rfs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| self.err(path, "chmod")(e.into()))?;
            self.set_xattrs(parent, name, path, meta);
        }
        rfs::utimensat(
            parent,
            name,
            &mtime_times(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(path, "set mtime")(e.into()))
    }

    fn set_xattrs(&self, parent: &OwnedFd, name: &OsStr, path: &Path, meta: &EntryMeta) {
        if meta.xattrs.is_empty() {
            return;
        }
        // O_PATH opens fifos and devices without side effects; the xattr call
        // goes through the fd's /proc link, which names this inode only.
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(fd) = rfs::openat(parent, name, flags, Mode::empty()) else {
            return;
        };
        let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
        self.apply_xattrs(path, meta, |key, value| {
            rfs::setxattr(proc_path.as_str(), key, value, XattrFlags::empty())
        });
    }

    /// The owner an entry gets: its own when owners are kept, else none.
    fn owner(&self, path: &Path, meta: &EntryMeta) -> Result<Option<(Uid, Gid)>> {
        if !self.options.preserve_owners {
            return Ok(None);
        }
        let uid = u32::try_from(meta.uid).map_err(|_| self.refuse(path, "uid out of range"))?;
        let gid = u32::try_from(meta.gid).map_err(|_| self.refuse(path, "gid out of range"))?;
        Ok(Some((Uid::from_raw(uid), Gid::from_raw(gid))))
    }

    /// Sets each of the entry's xattrs with `set`, but never overlay's own
    /// (they would steer the overlay mount); a failure is a warning.
    fn apply_xattrs(
        &self,
        path: &Path,
        meta: &EntryMeta,
        set: impl Fn(&str, &[u8]) -> rustix::io::Result<()>,
    ) {
        for (key, value) in &meta.xattrs {
            if key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.") {
                tracing::warn!(layer = self.label, entry = %path.display(), xattr = key, "ignoring overlay xattr in layer");
                continue;
            }
            if let Err(e) = set(key, value) {
                tracing::warn!(layer = self.label, entry = %path.display(), xattr = key, error = %e, "could not set xattr");
            }
        }
    }

    /// Directory metadata, deepest first so setting a parent's mtime is the
    /// last change inside it.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let name = path.file_name().unwrap_or_default();
            let parent = match self.root.open_dir(path.parent().unwrap_or(Path::new(""))) {
                Ok(fd) => fd,
                // Deleted by a later whiteout in the same layer.
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(self.err(path, "reopen directory")(e)),
            };
            match rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                _ => continue,
            }
            self.set_metadata(&parent, name, path, meta, false)?;
        }
        Ok(())
    }
}

/// Access and modification time both set to a layer entry's mtime.
fn mtime_times(mtime: u64) -> Timestamps {
    let time = Timespec {
        tv_sec: mtime.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

fn is_missing(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::NOENT.raw_os_error())
}

/// Removes `name` in `parent` and, if it is a directory, everything under it,
/// never following symlinks. A missing `name` is not an error.
pub(crate) fn remove_all_at(parent: &impl AsFd, name: &OsStr) -> io::Result<()> {
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = rfs::openat(parent, name, flags, Mode::empty())?;
        for child in children(&dir)? {
            remove_all_at(&dir, &child)?;
        }
        rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    } else {
        rfs::unlinkat(parent, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes from `dir` (the directory `rel`) everything this layer did not
/// write, descending into directories it did.
fn clear_lower(dir: &OwnedFd, rel: &Path, unpacked: &HashSet<PathBuf>) -> io::Result<()> {
    for child in children(dir)? {
        let child_rel = rel.join(&child);
        if !unpacked.contains(&child_rel) {
            remove_all_at(dir, &child)?;
            continue;
        }
        let st = rfs::statat(dir, child.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let sub = rfs::openat(dir, child.as_os_str(), flags, Mode::empty())?;
            clear_lower(&sub, &child_rel, unpacked)?;
        }
    }
    Ok(())
}

/// The names in a directory, without `.` and `..`.
fn children(dir: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}
