//! The COPY/ADD planner: sources and a destination in, [`CopyPlan`] out.

use super::special;
use super::{
    classify_source, CopyError, CopyPlan, CopyRequest, CopySource, EntryKind, EntrySource,
    FileKind, Owner, PlanEntry, SourceKind,
};
use crate::archive::{self, ArchiveItemKind};
use crate::context::{BuildContext, ContextEntry, ContextError};
use kiln_dockerfile::go::filepath_match::{has_meta, match_component};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Mode of directories a copy has to create, as in Docker.
const CREATED_DIR_MODE: u32 = 0o755;
/// Mode of heredoc files, as in BuildKit.
const HEREDOC_MODE: u32 = 0o644;
/// Mode of files downloaded by ADD, as in Docker and BuildKit.
const URL_MODE: u32 = 0o600;

/// Plans one COPY or ADD. `existing` says what a path already is in the
/// image below (`None` when absent); it decides whether a destination
/// without a trailing slash names a directory, and which parent directories
/// must be created.
pub fn plan_copy(
    ctx: &BuildContext,
    req: &CopyRequest,
    existing: &dyn Fn(&str) -> Option<FileKind>,
) -> Result<CopyPlan, CopyError> {
    let dest = image_join(&req.workdir, &req.dest);
    let dest_dir_syntax = dir_syntax(&req.dest);
    // Each git checkout is walked as a context of its own (no .dockerignore:
    // BuildKit applies none to git sources).
    let git_contexts = req
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Git(g) => Some(BuildContext::from_dir(&g.root)),
            _ => None,
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut git_contexts = git_contexts.iter();
    let mut p = Planner {
        ctx,
        req,
        existing,
        entries: BTreeMap::new(),
        dest: dest.clone(),
        mtime: None,
    };
    if req.sources.len() > 1 && !dest_dir_syntax && p.counted_sources()? > 1 {
        return Err(CopyError::DestNotDir {
            dest: req.dest.clone(),
        });
    }
    let dest_is_dir = dest_dir_syntax || req.parents || existing(&dest) == Some(FileKind::Dir);
    for source in &req.sources {
        match source {
            CopySource::Path(src) => p.path_source(src, dest_is_dir)?,
            CopySource::Heredoc { name, body } => {
                let target = file_target(&dest, dest_is_dir, name);
                let mode = req
                    .chmod
                    .as_ref()
                    .map_or(HEREDOC_MODE, |c| c.apply(HEREDOC_MODE, false));
                p.put(PlanEntry {
                    path: target,
                    kind: EntryKind::File,
                    source: EntrySource::Bytes(Arc::from(body.as_bytes())),
                    mode,
                    uid: p.owner(None).uid,
                    gid: p.owner(None).gid,
                    mtime: req.now,
                });
            }
            CopySource::Fetched(f) => {
                let target = file_target(&dest, dest_is_dir, &f.file_name);
                let mode = req
                    .chmod
                    .as_ref()
                    .map_or(URL_MODE, |c| c.apply(URL_MODE, false));
                let owner = p.owner(None);
                p.put(PlanEntry {
                    path: target,
                    kind: EntryKind::File,
                    source: EntrySource::Path(f.path.clone()),
                    mode,
                    uid: owner.uid,
                    gid: owner.gid,
                    mtime: f.last_modified.unwrap_or(req.now),
                });
            }
            CopySource::Git(g) => {
                let git_ctx = git_contexts.next().expect("one context per git source");
                let root = git_ctx.lookup(".")?;
                let context = std::mem::replace(&mut p.ctx, git_ctx);
                p.mtime = g.mtime;
                let copied = p.copy_dir(&root, &dest);
                p.ctx = context;
                p.mtime = None;
                copied?;
            }
        }
    }
    p.create_parents();
    Ok(CopyPlan::from_entries(p.entries.into_values()))
}

struct Planner<'a> {
    ctx: &'a BuildContext,
    req: &'a CopyRequest,
    existing: &'a dyn Fn(&str) -> Option<FileKind>,
    entries: BTreeMap<String, PlanEntry>,
    dest: String,
    /// The mtime of every entry put while set (a git source's commit time).
    mtime: Option<i64>,
}

impl Planner<'_> {
    /// Adds an entry; a later entry for the same path wins. Anything but a
    /// directory also drops what the copy put below that path so far, as
    /// writing it to disk would (an archive's link replacing a directory
    /// an earlier archive of the same ADD made).
    fn put(&mut self, mut e: PlanEntry) {
        if let Some(mtime) = self.mtime {
            e.mtime = mtime;
        }
        if e.kind != EntryKind::Dir {
            let prefix = format!("{}/", e.path);
            let below: Vec<String> = self
                .entries
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(&prefix))
                .map(|(p, _)| p.clone())
                .collect();
            for p in below {
                self.entries.remove(&p);
            }
        }
        self.entries.insert(e.path.clone(), e);
    }

    fn owner(&self, meta: Option<&fs::Metadata>) -> Owner {
        match (self.req.owner, meta) {
            (Some(o), _) => o,
            (None, Some(m)) if self.req.preserve_owner => Owner {
                uid: m.uid(),
                gid: m.gid(),
            },
            _ => Owner::ROOT,
        }
    }

    fn mode(&self, meta: &fs::Metadata) -> u32 {
        let mode = meta.mode() & 0o7777;
        match &self.req.chmod {
            Some(c) if !meta.file_type().is_symlink() => c.apply(mode, meta.is_dir()),
            _ => mode,
        }
    }

    fn path_source(&mut self, src: &str, dest_is_dir: bool) -> Result<(), CopyError> {
        match classify_source(src) {
            SourceKind::Path => {}
            SourceKind::Git if self.req.add => {
                return Err(CopyError::GitNotCheckedOut {
                    url: src.to_string(),
                })
            }
            SourceKind::Git => {
                return Err(CopyError::GitInCopy {
                    url: src.to_string(),
                })
            }
            SourceKind::Url if self.req.add => {
                return Err(CopyError::UrlNotFetched {
                    url: src.to_string(),
                })
            }
            SourceKind::Url => {
                return Err(CopyError::UrlInCopy {
                    url: src.to_string(),
                })
            }
        }
        let matches = if has_meta(src) {
            let found = self.expand(src)?;
            if found.is_empty() && !self.req.allow_empty_wildcard {
                return Err(CopyError::NoMatch {
                    pattern: src.to_string(),
                });
            }
            found
        } else {
            vec![(src.to_string(), self.ctx.lookup(src)?)]
        };
        let as_dir = dest_is_dir || matches.len() > 1;
        let dest = self.dest.clone();
        for (written, entry) in matches {
            let kept = if self.req.parents {
                parents_path(&written)
            } else {
                String::new()
            };
            if entry.meta.is_dir() {
                let target = image_join(&dest, &kept);
                self.copy_dir(&entry, &target)?;
            } else if self.req.add && entry.meta.is_file() && archive::is_archive(&entry.abs) {
                let target = if self.req.parents {
                    image_join(&dest, parent_of(&kept))
                } else {
                    dest.clone()
                };
                self.unpack(&entry, &target)?;
            } else {
                let target = if self.req.parents {
                    image_join(&dest, &kept)
                } else {
                    file_target(&dest, as_dir, base_name(&written))
                };
                self.copy_one(&entry, target)?;
            }
        }
        Ok(())
    }

    /// How many sources the copy has once wildcards are matched: a pattern
    /// that matches nothing is no source (as in Docker and Kaniko), so
    /// `COPY maybe* file /dest` copies one file to `/dest`.
    fn counted_sources(&self) -> Result<usize, CopyError> {
        let mut n = 0;
        for source in &self.req.sources {
            n += match source {
                CopySource::Path(src)
                    if has_meta(src) && matches!(classify_source(src), SourceKind::Path) =>
                {
                    usize::from(!self.expand(src)?.is_empty())
                }
                _ => 1,
            };
        }
        Ok(n)
    }

    /// Matches a wildcard source component by component. Returns the matched
    /// paths as written (keeping `.` components for the `--parents` pivot)
    /// with their entries. Excluded matches do not exist, as in BuildKit.
    fn expand(&self, pattern: &str) -> Result<Vec<(String, ContextEntry)>, CopyError> {
        let mut candidates = vec![String::new()];
        for comp in pattern.split('/') {
            let mut next = Vec::new();
            for cand in &candidates {
                if !has_meta(comp) {
                    next.push(join_written(cand, comp));
                    continue;
                }
                let dir = self.ctx.lookup(if cand.is_empty() { "." } else { cand })?;
                if !dir.meta.is_dir() {
                    continue;
                }
                let mut names: Vec<String> = Vec::new();
                for item in fs::read_dir(&dir.abs).map_err(|source| CopyError::Io {
                    path: dir.abs.clone(),
                    source,
                })? {
                    let item = item.map_err(|source| CopyError::Io {
                        path: dir.abs.clone(),
                        source,
                    })?;
                    if let Ok(name) = item.file_name().into_string() {
                        if match_component(comp, &name)? {
                            names.push(name);
                        }
                    }
                }
                names.sort();
                next.extend(names.iter().map(|n| join_written(cand, n)));
            }
            candidates = next;
        }
        let mut out = Vec::new();
        for cand in candidates {
            match self.ctx.lookup(&cand) {
                Ok(entry) => out.push((cand, entry)),
                Err(ContextError::Excluded { .. }) | Err(ContextError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    fn copy_one(&mut self, entry: &ContextEntry, target: String) -> Result<(), CopyError> {
        let owner = self.owner(Some(&entry.meta));
        let (kind, source) = if special::is_ordinary(&entry.meta) {
            (EntryKind::File, EntrySource::Path(entry.abs.clone()))
        } else {
            match special::special_entry(&entry.abs, &entry.meta) {
                Some(node) => node,
                None => return Ok(()),
            }
        };
        self.put(PlanEntry {
            path: target,
            kind,
            source,
            mode: self.mode(&entry.meta),
            uid: owner.uid,
            gid: owner.gid,
            mtime: entry.meta.mtime(),
        });
        Ok(())
    }

    fn copy_dir(&mut self, dir: &ContextEntry, target: &str) -> Result<(), CopyError> {
        // A destination directory the copy creates is made as BuildKit
        // makes it before copying the contents in: 0755 (or the --chmod
        // mode), owned by the --chown owner or root, whatever the source
        // directory's own mode and owner (COPY --from included).
        if target != "/" && (self.existing)(target) != Some(FileKind::Dir) {
            let owner = self.owner(None);
            let mode = match &self.req.chmod {
                Some(_) => self.mode(&dir.meta),
                None => CREATED_DIR_MODE,
            };
            self.put(PlanEntry {
                path: target.to_string(),
                kind: EntryKind::Dir,
                source: EntrySource::None,
                mode,
                uid: owner.uid,
                gid: owner.gid,
                mtime: dir.meta.mtime(),
            });
        }
        let prefix = if dir.rel.is_empty() {
            String::new()
        } else {
            format!("{}/", dir.rel)
        };
        let mut skipped: Option<String> = None;
        for item in self.ctx.walk(&dir.rel)? {
            let rel = item
                .rel
                .strip_prefix(&prefix)
                .unwrap_or(&item.rel)
                .to_string();
            if let Some(s) = &skipped {
                if rel.starts_with(s.as_str()) {
                    continue;
                }
                skipped = None;
            }
            if let Some(ex) = &self.req.exclude {
                if ex.matches(&rel) {
                    if item.meta.is_dir() && ex.may_skip_dir(&rel) {
                        skipped = Some(format!("{rel}/"));
                    }
                    if !item.meta.is_dir() || skipped.is_some() {
                        continue;
                    }
                }
            }
            let path = image_join(target, &rel);
            let owner = self.owner(Some(&item.meta));
            let ft = item.meta.file_type();
            let (kind, source) = if ft.is_dir() {
                (EntryKind::Dir, EntrySource::None)
            } else if ft.is_symlink() {
                let link = fs::read_link(&item.abs).map_err(|source| CopyError::Io {
                    path: item.abs.clone(),
                    source,
                })?;
                let link = link.to_str().ok_or_else(|| ContextError::NonUtf8 {
                    path: item.abs.clone(),
                })?;
                (EntryKind::Symlink, EntrySource::Link(link.to_string()))
            } else if ft.is_file() {
                (EntryKind::File, EntrySource::Path(item.abs.clone()))
            } else {
                match special::special_entry(&item.abs, &item.meta) {
                    Some(node) => node,
                    None => continue,
                }
            };
            self.put(PlanEntry {
                path,
                kind,
                source,
                mode: self.mode(&item.meta),
                uid: owner.uid,
                gid: owner.gid,
                mtime: item.meta.mtime(),
            });
        }
        Ok(())
    }

    fn unpack(&mut self, entry: &ContextEntry, target: &str) -> Result<(), CopyError> {
        let scratch = self
            .req
            .scratch_dir
            .as_ref()
            .ok_or_else(|| CopyError::NoScratchDir {
                path: entry.abs.clone(),
            })?;
        let spool = tempfile::Builder::new()
            .prefix("add-")
            .tempdir_in(scratch)
            .map_err(|source| CopyError::Io {
                path: scratch.clone(),
                source,
            })?
            .keep();
        let items =
            archive::read_items(&entry.abs, &spool).map_err(|source| CopyError::Archive {
                path: entry.abs.clone(),
                source,
            })?;
        let in_archive: std::collections::HashSet<String> =
            items.iter().map(|i| i.path.clone()).collect();
        for item in items {
            if let ArchiveItemKind::HardLink(t) = &item.kind {
                // A link to what the archive does not have must find a
                // file in the image, or the next extraction would refuse it.
                let lower = image_join(target, t);
                if !in_archive.contains(t) && (self.existing)(&lower) != Some(FileKind::File) {
                    return Err(CopyError::Archive {
                        path: entry.abs.clone(),
                        source: archive::ArchiveError::Inconsistent {
                            entry: item.path.clone(),
                            reason: format!(
                                "it is a hard link to {lower}, which neither the archive nor the image has as a file"
                            ),
                        },
                    });
                }
            }
            let (uid, gid) = match self.req.owner {
                Some(o) => (o.uid, o.gid),
                None => (item.uid, item.gid),
            };
            let (kind, source) = match item.kind {
                ArchiveItemKind::Dir => (EntryKind::Dir, EntrySource::None),
                ArchiveItemKind::File(p) => (EntryKind::File, EntrySource::Path(p)),
                ArchiveItemKind::Symlink(t) => (EntryKind::Symlink, EntrySource::Link(t)),
                ArchiveItemKind::HardLink(t) => (
                    EntryKind::HardLink,
                    EntrySource::Link(image_join(target, &t)),
                ),
            };
            // A link's mode means nothing on Linux: unpacked and read back
            // it is 0777, which is what BuildKit's layer holds.
            let mode = if kind == EntryKind::Symlink {
                0o777
            } else {
                item.mode
            };
            self.put(PlanEntry {
                path: image_join(target, &item.path),
                kind,
                source,
                mode,
                uid,
                gid,
                mtime: item.mtime,
            });
        }
        Ok(())
    }

    /// Adds the parent directories no entry and no existing path provides.
    fn create_parents(&mut self) {
        let owner = self.owner(None);
        let mut missing = Vec::new();
        for path in self.entries.keys() {
            let mut p = path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                if p.is_empty() || self.entries.contains_key(p) || (self.existing)(p).is_some() {
                    break;
                }
                missing.push(p.to_string());
            }
        }
        for p in missing {
            self.entries.entry(p.clone()).or_insert(PlanEntry {
                path: p,
                kind: EntryKind::Dir,
                source: EntrySource::None,
                mode: CREATED_DIR_MODE,
                uid: owner.uid,
                gid: owner.gid,
                mtime: self.req.now,
            });
        }
    }
}

/// Where a single file lands: inside `dest` when it is a directory, else `dest`.
fn file_target(dest: &str, dest_is_dir: bool, name: &str) -> String {
    if dest_is_dir {
        image_join(dest, name)
    } else {
        dest.to_string()
    }
}

/// Joins an image path with a relative (or absolute) one and normalises it:
/// absolute, no `.`/`..`/empty components, never above `/`.
/// Whether a destination as written names a directory by its form alone.
pub(crate) fn dir_syntax(dest: &str) -> bool {
    dest.ends_with('/')
        || dest == "."
        || dest.ends_with("/.")
        || dest == ".."
        || dest.ends_with("/..")
}

pub(crate) fn image_join(base: &str, rel: &str) -> String {
    let joined = if rel.starts_with('/') {
        rel.to_string()
    } else {
        format!("{base}/{rel}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn join_written(base: &str, comp: &str) -> String {
    if base.is_empty() {
        if comp.is_empty() {
            "/".to_string()
        } else {
            comp.to_string()
        }
    } else if base.ends_with('/') {
        format!("{base}{comp}")
    } else {
        format!("{base}/{comp}")
    }
}

fn base_name(written: &str) -> &str {
    written
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(written)
}

fn parent_of(rel: &str) -> &str {
    rel.rfind('/').map_or("", |i| &rel[..i])
}

/// The part of a source path `--parents` keeps: everything after a `/./`
/// pivot if there is one, else the whole (cleaned) path; `..` never climbs
/// above the context root.
fn parents_path(written: &str) -> String {
    let comps: Vec<&str> = written.split('/').collect();
    let pivot = comps
        .iter()
        .enumerate()
        .skip(1)
        .rposition(|(_, c)| *c == ".");
    let kept = match pivot {
        Some(i) => &comps[i + 2..],
        None => &comps[..],
    };
    image_join("/", &kept.join("/"))
        .trim_start_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_image_paths() {
        assert_eq!(image_join("/app", "x/y"), "/app/x/y");
        assert_eq!(image_join("/app", "/abs"), "/abs");
        assert_eq!(image_join("/app", "../../.."), "/");
        assert_eq!(image_join("/", "."), "/");
        assert_eq!(image_join("/app/", "./a/"), "/app/a");
    }

    #[test]
    fn parents_pivot() {
        assert_eq!(parents_path("./x/a.txt"), "x/a.txt");
        assert_eq!(parents_path("src/./pkg/a.go"), "pkg/a.go");
        assert_eq!(parents_path("./src/./pkg/a.go"), "pkg/a.go");
        assert_eq!(parents_path("../../etc/a"), "etc/a");
        assert_eq!(parents_path("a/b"), "a/b");
    }
}
