//! COPY and ADD: from Dockerfile sources to a [`CopyPlan`], the list of
//! entries one layer will contain.
//!
//! Planning follows Docker/BuildKit semantics:
//! - sources are context paths (wildcards matched per component like Go's
//!   `filepath.Match`), heredoc bodies, or URLs already fetched with
//!   [`http::UrlFetcher`];
//! - a directory source copies its contents, not the directory itself;
//! - the destination is a directory when it ends in `/` (or `.`), when there
//!   are several sources or a wildcard matched several paths, or when it
//!   already is a directory in the image (asked through a caller's lookup);
//! - `--parents` keeps each source's path below the destination, starting
//!   after a `/./` pivot when there is one;
//! - directories the copy has to create are mode 0755 and owned by the
//!   `--chown` owner or root (BuildKit chowns created destination
//!   directories), a directory source's destination included, whatever the
//!   source directory's owner; with `--chmod` that destination takes the
//!   `--chmod` mode;
//! - mtimes are kept from the source; `--chmod` applies to copied files and
//!   directories, never to symlinks;
//! - ADD unpacks local tar archives (plain, gzip, bzip2, xz, zstd, detected by
//!   content) into the destination directory, entries keeping their own
//!   metadata.
//!
//! As in BuildKit's Dockerfile frontend, a wildcard that matches nothing is not
//! an error unless [`CopyRequest::allow_empty_wildcard`] is turned off, but a
//! missing directory before the wildcard is.

pub mod chmod;
pub mod chown;
pub mod http;
pub mod layer;
mod plan;
mod special;

pub use crate::archive::ArchiveError;
pub use chmod::{Chmod, ChmodError};
pub use chown::{ChownError, Owner};
pub use http::{FetchError, FetchedUrl, UrlFetcher};
pub use layer::{write_layer, LayerSink};
pub use plan::plan_copy;

use crate::context::{ContextError, PathMatcher};
use std::path::PathBuf;
use std::sync::Arc;

/// What a path in the image below currently is, as the engine's lookup reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, FIFO, socket).
    Other,
}

/// The kind of a planned entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A hard link to another entry of the same plan.
    HardLink,
    /// A named pipe: recorded as what it is, never opened.
    Fifo,
    /// A character device node (its numbers in [`EntrySource::Device`]).
    CharDevice,
    /// A block device node (its numbers in [`EntrySource::Device`]).
    BlockDevice,
}

/// Where a planned entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySource {
    /// No content (directories).
    None,
    /// A file on disk (in the context, a stage root, or the build's scratch dir).
    Path(PathBuf),
    /// Inline bytes (heredocs).
    Bytes(Arc<[u8]>),
    /// A link target: the symlink's text, or the hard link's absolute image path.
    Link(String),
    /// A device node's numbers.
    Device {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// One entry of a layer being planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// Absolute, normalised path in the image (`/app/main.go`), no trailing `/`.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its content.
    pub source: EntrySource,
    /// Permission bits (including setuid, setgid, sticky).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// The entries one COPY or ADD puts into its layer: sorted by path component
/// by component, so parents come before children, one entry per path (later sources win).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyPlan {
    entries: Vec<PlanEntry>,
}

impl CopyPlan {
    /// Builds a plan from entries, sorting them and keeping the last entry
    /// given for each path.
    pub fn from_entries(entries: impl IntoIterator<Item = PlanEntry>) -> CopyPlan {
        let map: std::collections::BTreeMap<String, PlanEntry> =
            entries.into_iter().map(|e| (e.path.clone(), e)).collect();
        let mut entries: Vec<PlanEntry> = map.into_values().collect();
        entries.sort_by(|a, b| path_order(&a.path, &b.path));
        CopyPlan { entries }
    }

    /// The entries in layer order.
    pub fn entries(&self) -> &[PlanEntry] {
        &self.entries
    }

    /// True when the copy adds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks an entry up by image path.
    pub fn get(&self, path: &str) -> Option<&PlanEntry> {
        self.entries
            .binary_search_by(|e| path_order(&e.path, path))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Layer order: component by component, so a directory comes before its
/// contents and `/a/x` before `/a-b` (the order the layer writer uses).
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// One source of a COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// A path in the context (or source stage), possibly with wildcards.
    Path(String),
    /// A heredoc (`COPY <<EOF /dest`): file `name` with body `body`.
    Heredoc {
        /// The heredoc's name, used as the file name when the destination is a directory.
        name: String,
        /// The file's content.
        body: String,
    },
    /// An ADD URL already downloaded with [`UrlFetcher::fetch`].
    Fetched(FetchedUrl),
    /// An ADD git source already checked out: its contents go into the
    /// destination directory, as a directory source's do.
    Git(GitSource),
}

/// A git repository checked out for ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The source as written in the Dockerfile (credentials removed).
    pub url: String,
    /// The checkout (its `:subdir` when one was given).
    pub root: PathBuf,
    /// The commit checked out: what the step's cache key depends on.
    pub commit: String,
    /// The mtime every added entry gets, when not the checkout's own
    /// (BuildKit's commit-time mtimes for reproducible builds).
    pub mtime: Option<i64>,
}

/// How a source string written in a Dockerfile should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A path in the context.
    Path,
    /// An `http://` or `https://` URL (ADD only).
    Url,
    /// A git repository (ADD only).
    Git,
}

/// Classifies a source as BuildKit does: `git@…`, `git://…`, `ssh://…`, `github.com/…`
/// and http(s) URLs whose path ends in `.git` (optionally with a `#ref`) are
/// git; other http(s) URLs are URLs; the rest are paths.
pub fn classify_source(src: &str) -> SourceKind {
    let no_fragment = src.split('#').next().unwrap_or(src);
    let http = src.starts_with("http://") || src.starts_with("https://");
    let git_over_http = http
        && no_fragment
            .split('?')
            .next()
            .unwrap_or("")
            .ends_with(".git");
    let git_scheme = ["git@", "git://", "ssh://", "github.com/"]
        .iter()
        .any(|p| src.starts_with(p));
    if git_scheme || git_over_http {
        SourceKind::Git
    } else if http {
        SourceKind::Url
    } else {
        SourceKind::Path
    }
}

/// Everything a COPY or ADD needs besides the context.
#[derive(Clone)]
pub struct CopyRequest {
    /// Sources in Dockerfile order.
    pub sources: Vec<CopySource>,
    /// The destination as written (after variable expansion).
    pub dest: String,
    /// The stage's WORKDIR, for relative destinations.
    pub workdir: String,
    /// ADD semantics: unpack local archives.
    pub add: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns, matched against paths relative to each source.
    pub exclude: Option<Arc<dyn PathMatcher>>,
    /// `--chown`, resolved.
    pub owner: Option<Owner>,
    /// Keep the source's owners when there is no `--chown` (`COPY --from`);
    /// context files are otherwise owned by 0:0.
    pub preserve_owner: bool,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// Accept wildcards that match nothing (BuildKit's Dockerfile behaviour).
    pub allow_empty_wildcard: bool,
    /// Timestamp (seconds) for entries with no source time: created
    /// directories, heredoc files, URLs without Last-Modified.
    pub now: i64,
    /// Private directory where ADD spools archive contents.
    pub scratch_dir: Option<PathBuf>,
}

impl std::fmt::Debug for CopyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyRequest")
            .field("sources", &self.sources)
            .field("dest", &self.dest)
            .field("workdir", &self.workdir)
            .field("add", &self.add)
            .field("parents", &self.parents)
            .field("exclude", &self.exclude.is_some())
            .field("owner", &self.owner)
            .field("chmod", &self.chmod)
            .finish_non_exhaustive()
    }
}

impl CopyRequest {
    /// A COPY of `sources` to `dest` with Docker's defaults: workdir `/`,
    /// owner 0:0, modes kept, empty wildcards accepted.
    pub fn new(sources: Vec<CopySource>, dest: impl Into<String>) -> CopyRequest {
        CopyRequest {
            sources,
            dest: dest.into(),
            workdir: "/".to_string(),
            add: false,
            parents: false,
            exclude: None,
            owner: None,
            preserve_owner: false,
            chmod: None,
            allow_empty_wildcard: true,
            now: 0,
            scratch_dir: None,
        }
    }

    /// The destination as an absolute image path (joined to the workdir),
    /// before any symlink in the image is followed.
    pub fn dest_path(&self) -> String {
        plan::image_join(&self.workdir, &self.dest)
    }

    /// Points the destination where it leads in the image below: `resolve`
    /// maps an absolute image path to the same path with every symlink
    /// along it followed inside the image (the last component included), or
    /// `None` for a link loop. BuildKit's copy resolves the destination so,
    /// which makes `COPY foo /bin/foo` on a base whose `/bin` links to
    /// `usr/bin` write `usr/bin/foo`, and not a `bin/` directory that would
    /// hide the link when the image is unpacked. A destination written as a
    /// directory (`/x/`, `.`) stays one.
    pub fn follow_dest_symlinks(&mut self, resolve: impl Fn(&str) -> Option<String>) {
        if let Some(mut resolved) = resolve(&self.dest_path()) {
            if plan::dir_syntax(&self.dest) && !resolved.ends_with('/') {
                resolved.push('/');
            }
            self.dest = resolved;
        }
    }
}

/// Why a COPY or ADD could not be planned. The caller adds the Dockerfile line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// A source path problem (missing, excluded, unreadable).
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A wildcard is malformed.
    #[error(transparent)]
    Pattern(#[from] kiln_dockerfile::go::filepath_match::BadPattern),
    /// A wildcard matched nothing and empty matches are not accepted.
    #[error("{pattern:?}: no source files matched")]
    NoMatch {
        /// The pattern.
        pattern: String,
    },
    /// Several sources but a destination that is not a directory.
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a / (got {dest:?})")]
    DestNotDir {
        /// The destination as written.
        dest: String,
    },
    /// COPY was given a URL.
    #[error("{url:?}: COPY does not accept URLs; use ADD")]
    UrlInCopy {
        /// The URL.
        url: String,
    },
    /// ADD was given a URL that was not fetched first.
    #[error("{url:?}: URL sources must be fetched before planning")]
    UrlNotFetched {
        /// The URL.
        url: String,
    },
    /// COPY was given a git repository.
    #[error("{url:?}: COPY does not accept git sources; use ADD")]
    GitInCopy {
        /// The source.
        url: String,
    },
    /// ADD was given a git source that was not checked out first.
    #[error("{url:?}: git sources must be checked out before planning")]
    GitNotCheckedOut {
        /// The source.
        url: String,
    },
    /// ADD of an archive failed.
    #[error("{path}: {source}")]
    Archive {
        /// The archive in the context.
        path: PathBuf,
        /// What went wrong.
        source: ArchiveError,
    },
    /// ADD of an archive needs a scratch directory.
    #[error("ADD of archive {path}: no scratch directory to unpack into")]
    NoScratchDir {
        /// The archive.
        path: PathBuf,
    },
    /// Reading a source failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sources() {
        assert_eq!(classify_source("src/main.rs"), SourceKind::Path);
        assert_eq!(
            classify_source("https://example.com/a.tar.gz"),
            SourceKind::Url
        );
        assert_eq!(
            classify_source("https://github.com/moby/buildkit.git#v0.1"),
            SourceKind::Git
        );
        assert_eq!(
            classify_source("git@github.com:moby/buildkit.git"),
            SourceKind::Git
        );
        assert_eq!(classify_source("git://host/repo"), SourceKind::Git);
        assert_eq!(
            classify_source("ssh://git@host:2222/repo.git#v1"),
            SourceKind::Git
        );
    }

    #[test]
    fn plan_keeps_last_entry_and_sorts() {
        let e = |p: &str, m| PlanEntry {
            path: p.into(),
            kind: EntryKind::File,
            source: EntrySource::None,
            mode: m,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let plan = CopyPlan::from_entries([e("/b", 1), e("/a/x", 1), e("/a", 1), e("/b", 2)]);
        let paths: Vec<_> = plan.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/a/x", "/b"]);
        assert_eq!(plan.get("/b").unwrap().mode, 2);
        let plan = CopyPlan::from_entries([e("/a-b", 1), e("/a/x", 1), e("/a", 1)]);
        let paths: Vec<_> = plan.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/a/x", "/a-b"]);
        assert!(plan.get("/a-b").is_some());
    }

    #[test]
    fn destinations_follow_links_and_keep_their_form() {
        let resolve = |p: &str| Some(p.replacen("/bin", "/usr/bin", 1));
        let mut req = CopyRequest::new(vec![], "/bin/foo");
        req.follow_dest_symlinks(resolve);
        assert_eq!(req.dest, "/usr/bin/foo");
        let mut req = CopyRequest::new(vec![], "bin/");
        req.follow_dest_symlinks(resolve);
        assert_eq!(req.dest, "/usr/bin/");
        let mut req = CopyRequest::new(vec![], ".");
        req.workdir = "/bin".into();
        req.follow_dest_symlinks(resolve);
        assert_eq!(req.dest, "/usr/bin/");
        // A link loop leaves the destination as written.
        let mut req = CopyRequest::new(vec![], "/loop/x");
        req.follow_dest_symlinks(|_| None);
        assert_eq!(req.dest, "/loop/x");
    }
}
