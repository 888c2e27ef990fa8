//! What the step may do once it runs, applied in the forked child right
//! before `execve`, as runc applies it to a container's first process:
//! Docker's default capability set, a seccomp filter equivalent to Docker's
//! default profile, and no descriptor beyond stdin, stdout and stderr.
//!
//! The BPF program is built with `seccompiler`; it is installed here with
//! the raw `seccomp(2)` call rather than `seccompiler::apply_filter`, which
//! always sets `no_new_privs`: Docker leaves that off by default, and steps
//! rely on setuid programs (`su`, package scripts that drop to a user).

use caps::{CapSet, Capability, CapsHashSet};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// Docker's default capabilities (moby `oci/caps/defaults.go`): what a
/// `RUN` step of `docker build` holds.
const DOCKER_DEFAULT: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Left out in chroot isolation, where the step shares the host's mounts:
/// a second `chroot(2)` with the working directory outside it is the
/// classic way out of a chroot, and a device node made with `mknod` on the
/// host's (not `nodev`) file system opens the host's disk.
const CHROOT_DROPPED: &[Capability] = &[Capability::CAP_SYS_CHROOT, Capability::CAP_MKNOD];

/// How the step is contained, which decides the details of the rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Chroot isolation: no mount namespace of its own (see [`CHROOT_DROPPED`]).
    pub chroot: bool,
    /// The step has a pid namespace of its own, so `ptrace` reaches only
    /// its own processes (Docker allows it on such kernels).
    pub own_pids: bool,
}

impl Policy {
    fn kept(self) -> CapsHashSet {
        DOCKER_DEFAULT
            .iter()
            .filter(|c| !(self.chroot && CHROOT_DROPPED.contains(c)))
            .copied()
            .collect()
    }
}

/// First part, while the helper's child is still root with every
/// capability: the bounding set reduced (this needs `CAP_SETPCAP`), the
/// inheritable and ambient sets emptied, and the seccomp filter installed
/// (this needs `CAP_SYS_ADMIN`, or `no_new_privs` when the process lacks
/// it, as in an unprivileged pod).
pub(crate) fn before_identity(policy: Policy) -> Result<(), String> {
    let kept = policy.kept();
    let bounding =
        caps::read(None, CapSet::Bounding).map_err(|e| format!("reading capabilities: {e}"))?;
    for cap in bounding.difference(&kept) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| format!("dropping {cap}: {e}"))?;
    }
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| format!("clearing inheritable capabilities: {e}"))?;
    // Kernels before 4.3 have no ambient set: nothing to clear there.
    let _ = caps::clear(None, CapSet::Ambient);
    install_filters(policy)
}

/// Second part, after `setuid`: a step running as root keeps only the
/// default set (a step running as another user lost them all with the
/// `setuid`, as the kernel does without `PR_SET_KEEPCAPS`). Then every
/// descriptor above stderr is closed, so nothing kiln inherited or opened
/// reaches the step (runc CVE-2024-21626).
pub(crate) fn after_identity(policy: Policy) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        let permitted = caps::read(None, CapSet::Permitted)
            .map_err(|e| format!("reading capabilities: {e}"))?;
        let kept: CapsHashSet = policy.kept().intersection(&permitted).copied().collect();
        // Effective must stay within permitted: shrink it first.
        caps::set(None, CapSet::Effective, &kept)
            .and_then(|()| caps::set(None, CapSet::Permitted, &kept))
            .map_err(|e| format!("reducing capabilities: {e}"))?;
    }
    close_from(3);
    Ok(())
}

/// Closes every descriptor from `first` on.
fn close_from(first: libc::c_uint) {
    // SAFETY: close_range only closes descriptors; nothing here uses them
    // afterwards (Rust's std holds none open in a forked child).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    if rc == 0 {
        return;
    }
    // Linux before 5.9: one by one, up to the descriptor limit.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(1 << 20, |soft| soft.min(1 << 20));
    for fd in u64::from(first)..limit {
        // SAFETY: as above.
        unsafe { libc::close(fd as libc::c_int) };
    }
}

/// The two filters: the allowlist (everything else fails with EPERM), then
/// `clone3` failing with ENOSYS so that glibc falls back to `clone`, whose
/// flags the allowlist can inspect (`clone3` passes them in memory, out of
/// a filter's reach). Of two filters giving an errno, the kernel returns
/// the one installed last.
fn install_filters(policy: Policy) -> Result<(), String> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e:?}"))?;
    let allow = SeccompFilter::new(
        allowlist(policy)?,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    );
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    );
    for filter in [allow, no_clone3] {
        let program: BpfProgram = filter
            .and_then(BpfProgram::try_from)
            .map_err(|e| format!("building the seccomp filter: {e}"))?;
        install(&program)?;
    }
    Ok(())
}

fn install(program: &BpfProgram) -> Result<(), String> {
    let load = || {
        let prog = libc::sock_fprog {
            len: program.len() as libc::c_ushort,
            // seccompiler's `sock_filter` is the kernel's layout (repr(C)).
            filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: the kernel copies the program; `prog` outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(nix::errno::Errno::last())
        }
    };
    match load() {
        Ok(()) => Ok(()),
        // Without CAP_SYS_ADMIN (chroot isolation in an unprivileged pod)
        // the kernel accepts a filter only under no_new_privs.
        Err(nix::errno::Errno::EACCES) => {
            // SAFETY: a plain prctl on this process.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(format!("no_new_privs: {}", nix::errno::Errno::last()));
            }
            load().map_err(|e| format!("installing the seccomp filter: {e}"))
        }
        Err(e) => Err(format!("installing the seccomp filter: {e}")),
    }
}

/// Docker's default profile for the capabilities the step holds: the
/// plain allowlist, `clone` without namespace flags, `socket` but not
/// `AF_VSOCK`, `personality` with the values programs use, and (with a pid
/// namespace of its own) `ptrace`. `chroot` only where the step keeps
/// `CAP_SYS_CHROOT`. Everything that needs `CAP_SYS_ADMIN` (mount, umount,
/// pivot_root, unshare, setns, bpf, perf_event_open, ...), modules,
/// kexec, reboot, keyctl and the clock setters stays out.
fn allowlist(policy: Policy) -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let err = |e: seccompiler::BackendError| format!("building the seccomp filter: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|nr| (*nr, Vec::new()))
        .collect();
    if !policy.chroot {
        rules.insert(libc::SYS_chroot, Vec::new());
    }
    if policy.own_pids {
        for nr in [
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
        ] {
            rules.insert(nr, Vec::new());
        }
    }
    let arg0 = |op, value| {
        SeccompCondition::new(0, SeccompCmpArgLen::Qword, op, value)
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    let namespaces = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP) as u64;
    rules.insert(
        libc::SYS_clone,
        vec![arg0(SeccompCmpOp::MaskedEq(namespaces), 0).map_err(err)?],
    );
    let dword0 = |op, value| {
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, op, value)
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    rules.insert(
        libc::SYS_socket,
        vec![dword0(SeccompCmpOp::Ne, libc::AF_VSOCK as u64).map_err(err)?],
    );
    // PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26, and the query.
    let personalities = [0u64, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff]
        .into_iter()
        .map(|p| dword0(SeccompCmpOp::Eq, p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    rules.insert(libc::SYS_personality, personalities);
    Ok(rules)
}

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[libc::c_long] = &[];

const ALLOWED: &[libc::c_long] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_adjtimex,
    libc::SYS_bind,
    libc::SYS_brk,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_chdir,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_getres,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_connect,
    libc::SYS_copy_file_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_fanotify_mark,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_fcntl,
    libc::SYS_fdatasync,
    libc::SYS_fgetxattr,
    libc::SYS_flistxattr,
    libc::SYS_flock,
    libc::SYS_fremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_get_robust_list,
    libc::SYS_getcpu,
    libc::SYS_getcwd,
    libc::SYS_getdents64,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getgroups,
    libc::SYS_getitimer,
    libc::SYS_getpeername,
    libc::SYS_getpgid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_getpriority,
    libc::SYS_getrandom,
    libc::SYS_getresgid,
    libc::SYS_getresuid,
    libc::SYS_getrlimit,
    libc::SYS_getrusage,
    libc::SYS_getsid,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_gettid,
    libc::SYS_gettimeofday,
    libc::SYS_getuid,
    libc::SYS_getxattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_rm_watch,
    libc::SYS_io_cancel,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_ioctl,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_kill,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_restrict_self,
    libc::SYS_lgetxattr,
    libc::SYS_linkat,
    libc::SYS_listen,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_lseek,
    libc::SYS_lsetxattr,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_mincore,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_mlockall,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify,
    libc::SYS_mq_open,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink,
    libc::SYS_mremap,
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_msync,
    libc::SYS_munlock,
    libc::SYS_munlockall,
    libc::SYS_munmap,
    libc::SYS_name_to_handle_at,
    libc::SYS_nanosleep,
    libc::SYS_newfstatat,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pipe2,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_ppoll,
    libc::SYS_prctl,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_prlimit64,
    libc::SYS_process_mrelease,
    libc::SYS_pselect6,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_read,
    libc::SYS_readahead,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmmsg,
    libc::SYS_recvmsg,
    libc::SYS_remap_file_pages,
    libc::SYS_removexattr,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getattr,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_setattr,
    libc::SYS_sched_setparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_yield,
    libc::SYS_seccomp,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_sendfile,
    libc::SYS_sendmmsg,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_set_robust_list,
    libc::SYS_set_tid_address,
    libc::SYS_setfsgid,
    libc::SYS_setfsuid,
    libc::SYS_setgid,
    libc::SYS_setgroups,
    libc::SYS_setitimer,
    libc::SYS_setpgid,
    libc::SYS_setpriority,
    libc::SYS_setregid,
    libc::SYS_setresgid,
    libc::SYS_setresuid,
    libc::SYS_setreuid,
    libc::SYS_setrlimit,
    libc::SYS_setsid,
    libc::SYS_setsockopt,
    libc::SYS_setuid,
    libc::SYS_setxattr,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd4,
    libc::SYS_socketpair,
    libc::SYS_splice,
    libc::SYS_statfs,
    libc::SYS_statx,
    libc::SYS_symlinkat,
    libc::SYS_sync,
    libc::SYS_sync_file_range,
    libc::SYS_syncfs,
    libc::SYS_sysinfo,
    libc::SYS_tee,
    libc::SYS_tgkill,
    libc::SYS_timer_create,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime,
    libc::SYS_timer_settime,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    libc::SYS_times,
    libc::SYS_tkill,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_uname,
    libc::SYS_unlinkat,
    libc::SYS_utimensat,
    libc::SYS_vmsplice,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_write,
    libc::SYS_writev,
];

#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = &[
    libc::SYS_access,
    libc::SYS_alarm,
    libc::SYS_arch_prctl,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_creat,
    libc::SYS_dup2,
    libc::SYS_epoll_create,
    libc::SYS_epoll_ctl_old,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_wait_old,
    libc::SYS_eventfd,
    libc::SYS_fork,
    libc::SYS_futimesat,
    libc::SYS_get_thread_area,
    libc::SYS_getdents,
    libc::SYS_getpgrp,
    libc::SYS_inotify_init,
    libc::SYS_lchown,
    libc::SYS_link,
    libc::SYS_lstat,
    libc::SYS_mkdir,
    libc::SYS_mknod,
    libc::SYS_modify_ldt,
    libc::SYS_open,
    libc::SYS_pause,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_readlink,
    libc::SYS_rename,
    libc::SYS_rmdir,
    libc::SYS_select,
    libc::SYS_set_thread_area,
    libc::SYS_signalfd,
    libc::SYS_stat,
    libc::SYS_symlink,
    libc::SYS_time,
    libc::SYS_unlink,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_vfork,
];

#[cfg(test)]
mod tests {
    use super::*;

    const NAMESPACE: Policy = Policy {
        chroot: false,
        own_pids: true,
    };
    const CHROOT_ALONE: Policy = Policy {
        chroot: true,
        own_pids: false,
    };

    #[test]
    fn filters_compile_within_the_kernels_limit() {
        for policy in [NAMESPACE, CHROOT_ALONE] {
            let program = SeccompFilter::new(
                allowlist(policy).unwrap(),
                SeccompAction::Errno(libc::EPERM as u32),
                SeccompAction::Allow,
                std::env::consts::ARCH.try_into().unwrap(),
            )
            .and_then(BpfProgram::try_from)
            .unwrap();
            // BPF_MAXINSNS
            assert!(program.len() < 4096, "{policy:?}: {}", program.len());
        }
    }

    #[test]
    fn what_each_isolation_allows() {
        let ns = allowlist(NAMESPACE).unwrap();
        let chroot = allowlist(CHROOT_ALONE).unwrap();
        for refused in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_keyctl,
            libc::SYS_bpf,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_clone3,
            libc::SYS_open_by_handle_at,
        ] {
            assert!(!ns.contains_key(&refused), "{refused}");
            assert!(!chroot.contains_key(&refused), "{refused}");
        }
        assert!(ns.contains_key(&libc::SYS_chroot) && !chroot.contains_key(&libc::SYS_chroot));
        assert!(ns.contains_key(&libc::SYS_ptrace) && !chroot.contains_key(&libc::SYS_ptrace));
        // clone only with a condition on its flags.
        assert_eq!(ns[&libc::SYS_clone].len(), 1);
        let kept = CHROOT_ALONE.kept();
        assert_eq!(NAMESPACE.kept().len(), 14);
        assert_eq!(kept.len(), 12);
        assert!(!kept.contains(&Capability::CAP_SYS_CHROOT));
        assert!(!kept.contains(&Capability::CAP_MKNOD));
    }
}
