//! What one sandboxed process is: data only, serialised as JSON to the
//! helper process.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the step is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Isolation {
    /// New mount, pid, ipc and uts namespaces over an overlay of the image.
    Namespace,
    /// `chroot` into a plain directory; no mounts, changes found by comparing
    /// the tree before and after.
    Chroot,
}

/// The root filesystem the process sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RootSpec {
    /// An overlay: read-only `lower` directories (topmost first), a fresh
    /// `upper` that receives every change, overlay's `work` dir, and the
    /// directory the overlay is mounted on. Namespace isolation only.
    Overlay {
        /// Lower directories, topmost first.
        lower: Vec<PathBuf>,
        /// The upper directory (empty at the start).
        upper: PathBuf,
        /// Overlay's work directory (same filesystem as `upper`).
        work: PathBuf,
        /// The mount point.
        merged: PathBuf,
    },
    /// A plain directory, changed in place. Chroot isolation only.
    Dir(PathBuf),
}

/// The network the process sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Network {
    /// The builder's network (the host's).
    #[default]
    Default,
    /// A new, empty network namespace (namespace isolation only).
    None,
    /// The host's network.
    Host,
}

/// The identity the process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
}

/// A host file bound over a path in the root (`/etc/hosts`); never part of
/// the step's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindFile {
    /// The file on the host.
    pub source: PathBuf,
    /// The absolute path inside the root.
    pub target: String,
}

/// An extra mount for the step; never part of its changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MountSpec {
    /// A host file or directory (a cache directory, a secret file, a context
    /// or stage directory).
    Bind {
        /// The host path.
        source: PathBuf,
        /// The absolute path inside the root.
        target: String,
        /// Mounted read-only.
        read_only: bool,
    },
    /// A writable view of `lower` whose writes land in `upper` and are thrown
    /// away with it (`RUN --mount=type=bind,rw`).
    Overlay {
        /// The directory shown.
        lower: PathBuf,
        /// Where writes go.
        upper: PathBuf,
        /// Overlay's work directory.
        work: PathBuf,
        /// The absolute path inside the root.
        target: String,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// The absolute path inside the root.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

impl MountSpec {
    /// The absolute path inside the root.
    pub fn target(&self) -> &str {
        match self {
            MountSpec::Bind { target, .. }
            | MountSpec::Overlay { target, .. }
            | MountSpec::Tmpfs { target, .. } => target,
        }
    }
}

/// One process to run in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The isolation.
    pub isolation: Isolation,
    /// The root filesystem.
    pub root: RootSpec,
    /// The command; `argv[0]` without a `/` is looked up in the `PATH` of
    /// `env`, inside the root.
    pub argv: Vec<String>,
    /// The environment, `KEY=value`.
    pub env: Vec<String>,
    /// The working directory inside the root; created when missing.
    pub cwd: String,
    /// The identity.
    pub user: User,
    /// The host name (namespace isolation).
    pub hostname: String,
    /// Files bound over paths in the root (`/etc/hosts`, `/etc/resolv.conf`,
    /// `/etc/hostname`).
    pub files: Vec<BindFile>,
    /// The network.
    pub network: Network,
    /// Extra mounts, in order.
    pub mounts: Vec<MountSpec>,
}

impl RunSpec {
    /// A spec running `argv` as root in `/` of `root`, with no environment.
    pub fn new(isolation: Isolation, root: RootSpec, argv: Vec<String>) -> RunSpec {
        RunSpec {
            isolation,
            root,
            argv,
            env: Vec::new(),
            cwd: "/".into(),
            user: User::default(),
            hostname: "kiln".into(),
            files: Vec::new(),
            network: Network::Default,
            mounts: Vec::new(),
        }
    }
}

/// One contiguous range of a user namespace's id map: ids `inside ..
/// inside + count` in the namespace are `outside ..` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// Number of ids.
    pub count: u32,
}

/// The uid and gid maps of the user namespace a step ran in; empty when it
/// ran without one (as root), where host ids are the image's ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// User id ranges.
    pub uids: Vec<IdRange>,
    /// Group id ranges.
    pub gids: Vec<IdRange>,
}

/// The id the kernel shows for a host id with no mapping (`overflowuid`).
const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// True when ids need no translation.
    pub fn is_identity(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// The uid, as the step saw it, of a file owned by host uid `host`.
    pub fn uid_inside(&self, host: u32) -> u32 {
        inside(&self.uids, host)
    }

    /// The gid, as the step saw it, of a file owned by host gid `host`.
    pub fn gid_inside(&self, host: u32) -> u32 {
        inside(&self.gids, host)
    }
}

fn inside(ranges: &[IdRange], host: u32) -> u32 {
    if ranges.is_empty() {
        return host;
    }
    ranges
        .iter()
        .find(|r| host >= r.outside && host - r.outside < r.count)
        .map_or(OVERFLOW_ID, |r| r.inside + (host - r.outside))
}

/// What the helper tells its parent, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Report {
    /// A path (relative to the root) the sandbox created as a mount point.
    Created(String),
    /// An existing directory (relative to the root) a mount point was
    /// created in, with its modification time before (seconds, nanoseconds),
    /// restored afterwards.
    Touched(String, i64, i64),
    /// The step runs in a user namespace with these maps (the caller is not
    /// root); files in the upper dir carry host ids.
    Mapped(IdMap),
    /// The command ran and exited with `code`.
    Exited(i32),
    /// The command was killed by `signal`.
    Signaled(i32),
    /// The helper was told to stop (the build is being interrupted) and
    /// ended the command before it finished.
    Terminated,
    /// The sandbox could not be set up; `denied` when the kernel refused
    /// namespaces or mounts (the caller may fall back to chroot).
    SetupFailed {
        /// What failed.
        message: String,
        /// The kernel said no (EPERM/EACCES/ENOSYS).
        denied: bool,
    },
}
