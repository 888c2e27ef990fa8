//! Chroot isolation, for places where namespaces and mounts are refused
//! (unprivileged pods): the command runs chrooted in its own session, with
//! the helper as its subreaper; when the command ends, its process group
//! and every process reparented to the helper are killed and reaped.

use super::{exec::exec, Failure};
use crate::spec::{Report, RootSpec, RunSpec};
use nix::errno::Errno;
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
                // SAFETY: a forked child leaves without the parent's exit hooks.
                unsafe { libc::_exit(126) }
            }
            exec(spec, &devnull)
        }
        ForkResult::Parent { child } => child,
    };
    let ended = loop {
        match waitpid(child, None) {
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
