//! What a step changed, and its translation into a layer.
//!
//! With namespace isolation the changes are the overlay's upper dir, read
//! by `kiln_layer::dir` (whiteouts, opaque dirs), minus the mount points the
//! sandbox made. With chroot isolation they are the list a [`Snapshot`]
//! comparison found, archived from the root as it is now. Either way the
//! cost grows with what changed, not with the size of the root.
//!
//! [`Snapshot`]: crate::Snapshot

use crate::error::{Result, SandboxError};
use crate::snapshot::Change;
use crate::spec::IdMap;
use kiln_layer::{Entry, EntryKind, EntryMeta, LayerBlob, LayerOptions, LayerWriter};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a step changed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Changes {
    /// An overlay upper dir; `exclude` lists paths the sandbox made (mount
    /// points), relative to it.
    Upper {
        /// The upper dir.
        upper: PathBuf,
        /// Paths left out, with everything under them.
        exclude: BTreeSet<PathBuf>,
        /// The user namespace's maps: the upper dir's host owners are
        /// translated back to the ids the step saw.
        ids: IdMap,
    },
    /// Changed and deleted paths of a root changed in place.
    Listed {
        /// The root.
        root: PathBuf,
        /// The changes, sorted by path.
        changes: Vec<Change>,
    },
}

impl Changes {
    /// True when the step changed nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            Changes::Listed { changes, .. } => changes.is_empty(),
            Changes::Upper { upper, exclude, .. } => !walkdir::WalkDir::new(upper)
                .min_depth(1)
                .into_iter()
                .filter_entry(|e| !excluded(upper, exclude, e.path()))
                .any(|_| true),
        }
    }

    /// The overlay upper dir holding the changes; `None` for changes listed
    /// against a root changed in place.
    pub fn upper_dir(&self) -> Option<&Path> {
        match self {
            Changes::Upper { upper, .. } => Some(upper),
            Changes::Listed { .. } => None,
        }
    }

    /// Writes the changes as a layer blob into `blob_dir`; `None` when
    /// nothing changed (the step adds no layer).
    pub fn write_layer(
        &self,
        blob_dir: &Path,
        options: &LayerOptions,
    ) -> Result<Option<LayerBlob>> {
        if self.is_empty() {
            return Ok(None);
        }
        match self {
            Changes::Upper {
                upper,
                exclude,
                ids,
            } if !ids.is_identity() => Ok(Some(write_mapped_upper(
                upper, exclude, ids, blob_dir, options,
            )?)),
            Changes::Upper { upper, exclude, .. } => {
                let skip = |rel: &Path| exclude.contains(rel);
                let tree = kiln_layer::dir::TreeOptions::default()
                    .overlay_upper()
                    .with_exclude(&skip);
                Ok(Some(kiln_layer::dir::write_tree(
                    upper, blob_dir, options, &tree,
                )?))
            }
            Changes::Listed { root, changes } => {
                let mut writer = LayerWriter::new(blob_dir, options)?;
                let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
                for change in changes {
                    match change {
                        Change::Delete(rel) => writer.append(
                            &Entry::new(rel, EntryKind::Whiteout, EntryMeta::default()),
                            None,
                        )?,
                        Change::Write(rel) => {
                            append_path(&mut writer, root, rel, &mut first, &IdMap::default())?
                        }
                    }
                }
                Ok(Some(writer.finish()?))
            }
        }
    }
}

fn excluded(upper: &Path, exclude: &BTreeSet<PathBuf>, path: &Path) -> bool {
    path.strip_prefix(upper)
        .is_ok_and(|rel| exclude.contains(rel))
}

/// The mount points the sandbox made that the step left as they were:
/// files and directories it created, and existing directories it created
/// them in, when nothing else in them changed.
pub(crate) fn made_by_sandbox(
    upper: &Path,
    created: &BTreeSet<PathBuf>,
    touched: &BTreeMap<PathBuf, (i64, i64)>,
) -> BTreeSet<PathBuf> {
    let mut exclude = BTreeSet::new();
    let mut candidates: Vec<&PathBuf> = created.iter().chain(touched.keys()).collect();
    // Deepest first, so a directory is judged after its contents.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for rel in candidates {
        if rel.as_os_str().is_empty() {
            continue;
        }
        let host = upper.join(rel);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        if !meta.is_dir() {
            if created.contains(rel) {
                exclude.insert(rel.clone());
            }
            continue;
        }
        let unchanged = match touched.get(rel) {
            Some(&(sec, nsec)) => meta.mtime() == sec && meta.mtime_nsec() == nsec,
            None => true,
        };
        let only_made = fs::read_dir(&host).is_ok_and(|mut d| {
            d.all(|c| c.is_ok_and(|c| exclude.contains(&rel.join(c.file_name()))))
        });
        if unchanged && only_made {
            exclude.insert(rel.clone());
        }
    }
    exclude
}

/// An upper dir written in a user namespace: as `kiln_layer::dir` reads
/// one (whiteouts, opaque directories), with each owner as the step saw it
/// rather than the host id the kernel stored.
fn write_mapped_upper(
    upper: &Path,
    exclude: &BTreeSet<PathBuf>,
    ids: &IdMap,
    blob_dir: &Path,
    options: &LayerOptions,
) -> Result<LayerBlob> {
    let mut writer = LayerWriter::new(blob_dir, options)?;
    let mut first = HashMap::new();
    // Relative to open directories: the tree may be deeper than PATH_MAX.
    let mut failed: Option<SandboxError> = None;
    let mut visit = |rel: PathBuf, st: &rustix::fs::Stat| -> Result<()> {
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind == rustix::fs::FileType::CharacterDevice && st.st_rdev == 0 {
            let whiteout = Entry::new(&rel, EntryKind::Whiteout, EntryMeta::default());
            writer.append(&whiteout, None)?;
            return Ok(());
        }
        append_path(&mut writer, upper, &rel, &mut first, ids)?;
        if kind == rustix::fs::FileType::Directory {
            let host = kiln_layer::deep::HostPath::new(upper, &rel)
                .map_err(SandboxError::io("reading", &upper.join(&rel)))?;
            if is_opaque(host.path()) {
                let opaque = Entry::new(&rel, EntryKind::Opaque, EntryMeta::default());
                writer.append(&opaque, None)?;
            }
        }
        Ok(())
    };
    let walked = kiln_layer::deep::walk::<std::io::Error>(
        upper,
        &|rel| exclude.contains(rel),
        |rel, st, _| {
            visit(rel, st).map_err(|e| {
                failed = Some(e);
                std::io::Error::other("stopped")
            })
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    walked.map_err(SandboxError::io("reading", upper))?;
    Ok(writer.finish()?)
}

/// Overlay records a deletion in an upper dir as a 0/0 character device.
pub(crate) fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Overlay marks a directory that hides the lower one's contents with
/// `user.overlay.opaque` when mounted with `userxattr`.
pub(crate) fn is_opaque(dir: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 8];
            rustix::fs::lgetxattr(dir, *name, &mut value[..]).is_ok_and(|n| &value[..n] == b"y")
        })
}

fn append_path(
    writer: &mut LayerWriter,
    root: &Path,
    rel: &Path,
    first: &mut HashMap<(u64, u64), PathBuf>,
    ids: &IdMap,
) -> Result<()> {
    // Named through its open parent when the whole host path is too long.
    let deep = kiln_layer::deep::HostPath::new(root, rel)
        .map_err(SandboxError::io("reading", &root.join(rel)))?;
    let host = deep.path();
    let meta = fs::symlink_metadata(host).map_err(SandboxError::io("reading", host))?;
    let entry_meta = EntryMeta {
        mode: meta.mode() & 0o7777,
        uid: u64::from(ids.uid_inside(meta.uid())),
        gid: u64::from(ids.gid_inside(meta.gid())),
        mtime: meta.mtime().max(0) as u64,
        uname: None,
        gname: None,
        xattrs: xattrs(host),
    };
    let t = meta.file_type();
    let dev = |rdev: u64| (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let kind = if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(target) = first.get(&key) {
                let link = EntryKind::HardLink {
                    target: target.clone(),
                };
                return Ok(writer.append(&Entry::new(rel, link, entry_meta), None)?);
            }
            first.insert(key, rel.to_path_buf());
        }
        return Ok(writer.append_file_from_path(rel, entry_meta, host)?);
    } else if t.is_symlink() {
        let target = fs::read_link(host).map_err(SandboxError::io("reading", host))?;
        EntryKind::Symlink { target }
    } else if t.is_char_device() {
        let (major, minor) = dev(meta.rdev());
        EntryKind::CharDevice { major, minor }
    } else if t.is_block_device() {
        let (major, minor) = dev(meta.rdev());
        EntryKind::BlockDevice { major, minor }
    } else if t.is_fifo() {
        EntryKind::Fifo
    } else {
        tracing::warn!(path = %host.display(), "skipping socket: tar cannot hold it");
        return Ok(());
    };
    Ok(writer.append(&Entry::new(rel, kind, entry_meta), None)?)
}

/// The path's extended attributes, without host security labels.
fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return out;
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name == "security.selinux" || name.contains(".overlay.") {
            continue;
        }
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            value.truncate(len);
            out.insert(name.to_string(), value);
        }
    }
    out
}
