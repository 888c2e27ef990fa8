//! Chroot isolation, for places where namespaces and mounts are refused
//! (unprivileged pods): the command runs chrooted in its own session, with
//! the helper as its subreaper; when the command ends, its process group
//! and every process reparented to the helper are killed and reaped.
//!
//! Where the kernel allows it (CAP_SYS_ADMIN), the step also gets pid and
//! ipc namespaces of its own: it cannot see, signal or trace the host's
//! processes, and a small init reaps for it, so the command is not pid 1.
//! Without them (an unprivileged pod) it shares the pod's, where the pod is
//! the boundary; kiln is then kept out of its reach by being non-dumpable
//! and by the capabilities the step lacks. It never has a `/proc` of the
//! host: nothing is mounted in the chroot, and the step cannot mount.
//!
//! Where a mount namespace is allowed too, the root is bound onto itself
//! `nodev` in it (the host sees nothing of it), with the standard devices
//! bound into its `/dev`: a device node shipped in a layer cannot be
//! opened. Without one, the pod's device cgroup is what stops that.

use super::confine::Policy;
use super::{exec::exec, Failure};
use crate::spec::{Report, RootSpec, RunSpec};
use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, chroot, fork, getpid, setsid, ForkResult, Pid};
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;

pub(crate) fn run(spec: &RunSpec) -> Result<Option<Report>, Failure> {
    let RootSpec::Dir(root) = &spec.root else {
        return Err(Failure::other("chroot isolation needs a directory root"));
    };
    let devnull: OwnedFd = OpenOptions::new()
        .read(true)
        .open("/dev/null")
        .map_err(|e| Failure::other(format!("opening /dev/null: {e}")))?
        .into();
    // Orphans of the step (daemons) reparent to us, so none escapes.
    prctl::set_child_subreaper(true).map_err(|e| Failure::new("PR_SET_CHILD_SUBREAPER", e))?;
    let own_pids = unshare(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC)
        .or_else(|_| unshare(CloneFlags::CLONE_NEWPID))
        .is_ok();
    let policy = Policy {
        chroot: true,
        own_pids,
    };
    if unshare(CloneFlags::CLONE_NEWNS).is_ok() {
        root_nodev(root)?;
    }
    // SAFETY: the helper is single-threaded.
    let child = match unsafe { fork() }.map_err(|e| Failure::new("fork", e))? {
        ForkResult::Child => {
            let entered = setsid()
                .and_then(|_| chroot(root.as_path()))
                .and_then(|()| chdir("/"));
            if let Err(e) = entered {
                if e == Errno::EPERM {
                    // Not the step's failure: no isolation is possible here.
                    super::report(&Report::SetupFailed {
                        message: format!(
                            "chroot into {}: {e}: chroot isolation needs root (CAP_SYS_CHROOT) \
                             and kiln runs as uid {}; run kiln as root, or allow unprivileged \
                             user namespaces so that namespace isolation can be used",
                            root.display(),
                            nix::unistd::geteuid()
                        ),
                        denied: false,
                    });
                }
                eprintln!("kiln: entering {}: {e}", root.display());
                if own_pids {
                    super::report(&Report::Exited(126));
                }
                // SAFETY: a forked child leaves without the parent's exit hooks.
                unsafe { libc::_exit(126) }
            }
            if own_pids {
                init(spec, &devnull, policy)
            }
            exec(spec, &devnull, policy)
        }
        ForkResult::Parent { child } => child,
    };
    let ended = loop {
        match waitpid(child, None) {
            // Init reported how the command ended.
            Ok(WaitStatus::Exited(_, _)) if own_pids => {
                kill_leftovers(child);
                return Ok(None);
            }
            Ok(WaitStatus::Exited(_, code)) => break Report::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => break Report::Signaled(sig as i32),
            Ok(_) | Err(Errno::EINTR) if super::terminated() => {
                kill_leftovers(child);
                return Err(Failure::other("terminated"));
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(Failure::new("waiting for the command", e)),
        }
    };
    kill_leftovers(child);
    Ok(Some(ended))
}

/// In a mount namespace of the helper's own: the root bound onto itself
/// `nodev`, and the host's standard devices bound over the nodes in its
/// `/dev` (each bind keeps the host's flags, so those alone open).
fn root_nodev(root: &std::path::Path) -> Result<(), Failure> {
    use super::namespace::{bind, Bind, DEVICES};
    use nix::mount::{mount, MsFlags};
    use std::os::unix::fs::FileTypeExt;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Failure::new("making mounts private", e))?;
    bind(root, root, Bind::NoDev)?;
    for name in DEVICES {
        let node = root.join("dev").join(name);
        // Only a node in place: a symlink there would lead the bind out.
        let is_node =
            std::fs::symlink_metadata(&node).is_ok_and(|m| m.file_type().is_char_device());
        if is_node {
            bind(
                &std::path::Path::new("/dev").join(name),
                &node,
                Bind::Device,
            )?;
        }
    }
    Ok(())
}

/// Pid 1 of the step's pid namespace: runs the command as its child, reaps
/// every orphan until the command ends, reports how, and exits, which ends
/// whatever the command left in the namespace.
fn init(spec: &RunSpec, devnull: &OwnedFd, policy: Policy) -> ! {
    // SAFETY: init is single-threaded.
    let command = match unsafe { fork() } {
        Ok(ForkResult::Child) => exec(spec, devnull, policy),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            super::report(&Report::SetupFailed {
                message: format!("fork: {e}"),
                denied: false,
            });
            // SAFETY: a forked child leaves without the parent's exit hooks.
            unsafe { libc::_exit(1) }
        }
    };
    let ended = loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => break Report::Exited(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                break Report::Signaled(sig as i32)
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                break Report::SetupFailed {
                    message: format!("waiting for the command: {e}"),
                    denied: false,
                }
            }
        }
    };
    super::report(&ended);
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// Kills the command's process group and every process that was reparented
/// to us, until none is left.
fn kill_leftovers(group: Pid) {
    let _ = killpg(group, Signal::SIGKILL);
    loop {
        for pid in children_of(getpid()) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        match waitpid(
            None::<Pid>,
            Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
        ) {
            // One may still be on its way to us: look again shortly.
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: nothing left
        }
    }
}

/// Processes whose parent is `parent`, from `/proc`.
fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command name may hold spaces: fields follow its ')'.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<i32>().ok()
                })
                == Some(parent.as_raw())
        })
        .map(Pid::from_raw)
        .collect()
}
