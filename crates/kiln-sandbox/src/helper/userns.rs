//! A user namespace for a caller that is not root, so that it may create
//! the other namespaces and mount an overlay: the caller becomes root
//! inside. When `newuidmap`/`newgidmap` exist and `/etc/subuid` and
//! `/etc/subgid` give the caller subordinate ranges, those become ids 1 and
//! up, so steps that switch to other users (`USER app`, `chown`) work;
//! otherwise only root exists inside.
//!
//! The maps of a namespace must be written from outside it: the setuid
//! `newuidmap` run by a process inside would not be privileged there. So a
//! child forked before the `unshare` waits for the go-ahead on a pipe, runs
//! the two tools on the helper's pid, and exits.

use super::Failure;
use crate::spec::{IdMap, IdRange};
use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getgid, getpid, getuid, pipe, read, write, ForkResult, Gid, Uid};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the id-mapping tools are looked for (the helper's environment is
/// empty, so there is no `PATH`).
const TOOL_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

/// Enters a new user namespace as root and returns its maps.
pub(crate) fn enter() -> Result<IdMap, Failure> {
    let (uid, gid) = (getuid(), getgid());
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let sub_uids = subordinate(Path::new("/etc/subuid"), name.as_deref(), uid.as_raw());
    let sub_gids = subordinate(Path::new("/etc/subgid"), name.as_deref(), gid.as_raw());
    let tools = (tool("newuidmap"), tool("newgidmap"));
    if let (Some(sub_u), Some(sub_g), (Some(newuidmap), Some(newgidmap))) =
        (sub_uids, sub_gids, tools)
    {
        let maps = IdMap {
            uids: vec![own(uid.as_raw()), sub_u],
            gids: vec![own(gid.as_raw()), sub_g],
        };
        match with_tools(&maps, &newuidmap, &newgidmap) {
            Ok(()) => return Ok(maps),
            // The namespace exists but the tools failed (a setuid bit lost
            // in a container image, say): map the caller alone, by hand.
            Err(ToolsFailed::AfterUnshare(why)) => {
                tracing::debug!("subordinate ids unavailable: {why}");
                return map_self(uid, gid);
            }
            Err(ToolsFailed::Unshare(f)) => return Err(f),
        }
    }
    unshare(CloneFlags::CLONE_NEWUSER).map_err(refused)?;
    map_self(uid, gid)
}

/// The mapping of the caller's own id to root.
fn own(id: u32) -> IdRange {
    IdRange {
        inside: 0,
        outside: id,
        count: 1,
    }
}

enum ToolsFailed {
    Unshare(Failure),
    AfterUnshare(String),
}

/// `unshare` with the maps written by `newuidmap`/`newgidmap` from a child
/// left outside the namespace.
fn with_tools(maps: &IdMap, newuidmap: &Path, newgidmap: &Path) -> Result<(), ToolsFailed> {
    let (go_read, go_write) = pipe().map_err(|e| ToolsFailed::Unshare(Failure::new("pipe", e)))?;
    let target = getpid().as_raw().to_string();
    // SAFETY: the helper is single-threaded.
    match unsafe { fork() }.map_err(|e| ToolsFailed::Unshare(Failure::new("fork", e)))? {
        ForkResult::Child => {
            drop(go_write);
            let mut byte = [0u8; 1];
            // Nothing to read means the parent could not unshare.
            let code = match read(go_read.as_raw_fd(), &mut byte) {
                Ok(1) => {
                    let args = |r: &[IdRange]| -> Vec<String> {
                        r.iter()
                            .flat_map(|r| [r.inside, r.outside, r.count])
                            .map(|n| n.to_string())
                            .collect()
                    };
                    let ok = |tool: &Path, ranges: &[IdRange]| {
                        Command::new(tool)
                            .arg(&target)
                            .args(args(ranges))
                            .status()
                            .is_ok_and(|s| s.success())
                    };
                    if ok(newuidmap, &maps.uids) && ok(newgidmap, &maps.gids) {
                        0
                    } else {
                        1
                    }
                }
                _ => 2,
            };
            // SAFETY: a forked child leaves without the parent's exit hooks.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(go_read);
            let unshared = unshare(CloneFlags::CLONE_NEWUSER);
            if unshared.is_ok() {
                let _ = write(&go_write, b"y");
            }
            drop(go_write);
            let status = loop {
                match waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            };
            unshared.map_err(|e| ToolsFailed::Unshare(refused(e)))?;
            match status {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                other => Err(ToolsFailed::AfterUnshare(format!(
                    "{} or {} failed ({other:?})",
                    newuidmap.display(),
                    newgidmap.display()
                ))),
            }
        }
    }
}

/// Maps the caller alone to root, as an unprivileged process may do itself
/// (after giving up `setgroups`, as the kernel demands), for whichever map
/// is still unwritten.
fn map_self(uid: Uid, gid: Gid) -> Result<IdMap, Failure> {
    let write_file = |path: &str, text: &str| {
        std::fs::write(path, text).map_err(|e| Failure::other(format!("writing {path}: {e}")))
    };
    let unwritten = |path: &str| std::fs::read_to_string(path).is_ok_and(|t| t.trim().is_empty());
    if unwritten("/proc/self/uid_map") {
        write_file("/proc/self/uid_map", &format!("0 {uid} 1\n"))?;
    }
    if unwritten("/proc/self/gid_map") {
        write_file("/proc/self/setgroups", "deny")?;
        write_file("/proc/self/gid_map", &format!("0 {gid} 1\n"))?;
    }
    Ok(IdMap {
        uids: read_map("/proc/self/uid_map"),
        gids: read_map("/proc/self/gid_map"),
    })
}

/// The ranges of a written map, as the kernel lists them.
fn read_map(path: &str) -> Vec<IdRange> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut n = l.split_whitespace().map(|f| f.parse::<u32>().ok());
            Some(IdRange {
                inside: n.next()??,
                outside: n.next()??,
                count: n.next()??,
            })
        })
        .collect()
}

/// A refused `unshare(CLONE_NEWUSER)`: unprivileged user namespaces are
/// disabled (or exhausted), so only chroot isolation is left.
fn refused(e: Errno) -> Failure {
    let mut f = Failure::new(
        "creating a user namespace (the caller is not root; unprivileged user \
         namespaces must be allowed: user.max_user_namespaces > 0, and \
         kernel.unprivileged_userns_clone=1 or \
         kernel.apparmor_restrict_unprivileged_userns=0 where those exist)",
        e,
    );
    f.denied |= e == Errno::ENOSPC;
    f
}

/// The caller's first subordinate range in `file` (`name:start:count` or
/// `uid:start:count` lines), as ids 1 and up inside.
fn subordinate(file: &Path, name: Option<&str>, id: u32) -> Option<IdRange> {
    let text = std::fs::read_to_string(file).ok()?;
    let id = id.to_string();
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let owner = f.next()?;
        if owner != id && Some(owner) != name {
            return None;
        }
        let outside = f.next()?.parse().ok()?;
        let count: u32 = f.next()?.parse().ok()?;
        (count > 0).then_some(IdRange {
            inside: 1,
            outside,
            count,
        })
    })
}

fn tool(name: &str) -> Option<PathBuf> {
    TOOL_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_match_by_name_or_id() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("subuid");
        std::fs::write(&file, "alice:100000:65536\n1001:200000:1000\nzero:5:0\n").unwrap();
        let r = subordinate(&file, Some("alice"), 1000).unwrap();
        assert_eq!((r.inside, r.outside, r.count), (1, 100000, 65536));
        let r = subordinate(&file, Some("bob"), 1001).unwrap();
        assert_eq!((r.outside, r.count), (200000, 1000));
        assert!(subordinate(&file, Some("carol"), 1002).is_none());
        assert!(subordinate(&file, Some("zero"), 7).is_none());
    }
}
