//! Namespace isolation: new mount, pid, ipc and uts namespaces (network too
//! for `--network=none`), an overlay root, `pivot_root`.
//!
//! Every mount made for the step is `nodev`, its root included, so a device
//! node made by the step or shipped in a layer cannot be opened; the only
//! devices are the few bound one by one into `/dev` (each bind keeps the
//! host's flags). `/proc` is masked as runc masks it for Docker.
//!
//! Process roles: the helper unshares and mounts, then forks the init of
//! the new pid namespace; init mounts `/proc`, pivots, forks the command and
//! reaps until the command ends. When init exits the kernel kills every
//! process left in the namespace, and when the last of them is gone the
//! mount namespace, with the overlay, goes too: nothing is left mounted on
//! the host.

use super::confine::Policy;
use super::{exec::exec, report, Failure};
use crate::prepare::{Kind, Made};
use crate::spec::{MountSpec, Network, Report, RootSpec, RunSpec};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, fork, pivot_root, sethostname, ForkResult, Pid};
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::Path;

/// Device nodes bound from the host into the sandbox's `/dev`.
pub(crate) const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// What runc hides of `/proc` (and `/sys`) in a Docker container: a file
/// covered by `/dev/null`, a directory by an empty read-only tmpfs. They
/// expose the host's kernel memory, keyrings and hardware.
const MASKED: &[&str] = &[
    "proc/asound",
    "proc/acpi",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// What runc makes read-only of `/proc`: a new pid namespace does not make
/// the kernel's settings private, and through a writable `/proc/sys` (or
/// `sysrq-trigger`) a step run by root would change the host's.
const READ_ONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// The step's rules: a pid namespace of its own, and mounts of its own.
const POLICY: Policy = Policy {
    chroot: false,
    own_pids: true,
};

pub(crate) fn run(spec: &RunSpec) -> Result<Option<Report>, Failure> {
    let RootSpec::Overlay {
        lower,
        upper,
        work,
        merged,
    } = &spec.root
    else {
        return Err(Failure::other("namespace isolation needs an overlay root"));
    };
    // Not root: a user namespace first, where the caller is root and may
    // create the others; overlay then keeps its metadata in `user.*`
    // xattrs, the only ones an unprivileged mounter may write.
    let rootless = !nix::unistd::geteuid().is_root();
    if rootless {
        report(&Report::Mapped(super::userns::enter()?));
    }
    // `redirect_dir=off` still follows redirects, which `userxattr`
    // refuses; `nofollow` neither makes nor follows them.
    let (redirect, xattr_opt) = if rootless {
        ("nofollow", ",userxattr")
    } else {
        ("off", "")
    };
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| Failure::new("unshare", e))?;
    if spec.network == Network::None {
        super::net::loopback_up()?;
    }
    // Nothing mounted from here on may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Failure::new("making mounts private", e))?;
    let lowers: Vec<String> = lower
        .iter()
        .map(|p| overlay_path(p))
        .collect::<Result<_, _>>()?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir={redirect},metacopy=off{xattr_opt}",
        lowers.join(":"),
        overlay_path(upper)?,
        overlay_path(work)?
    );
    mount_overlay(merged, &data, MsFlags::MS_NODEV)
        .map_err(|e| Failure::new("mounting the overlay root", e))?;

    let mut made = Made::default();
    mount_dev(merged, &mut made)?;
    let sys = ensure(&mut made, merged, "/sys", Kind::Dir)?;
    bind(Path::new("/sys"), &sys, Bind::ReadOnly)?;
    ensure(&mut made, merged, "/proc", Kind::Dir)?;
    for file in &spec.files {
        let target = ensure(&mut made, merged, &file.target, Kind::File)?;
        bind(&file.source, &target, Bind::NoDev)?;
    }
    for m in &spec.mounts {
        extra_mount(m, merged, &mut made, xattr_opt)?;
    }
    for r in &made.reports {
        report(r);
    }
    let devnull = OpenOptions::new()
        .read(true)
        .open("/dev/null")
        .map_err(|e| Failure::other(format!("opening /dev/null: {e}")))?;
    let devnull: OwnedFd = devnull.into();

    // SAFETY: the helper is single-threaded.
    match unsafe { fork() }.map_err(|e| Failure::new("fork", e))? {
        ForkResult::Child => init(spec, merged, &devnull),
        ForkResult::Parent { child } => wait_init(child),
    }
}

/// The helper waits for init; init reports how the command ended.
fn wait_init(init: Pid) -> Result<Option<Report>, Failure> {
    loop {
        match waitpid(init, None) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(None),
            Ok(WaitStatus::Exited(_, code)) => {
                return Err(Failure::other(format!("sandbox init failed ({code})")))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(Failure::other(format!("sandbox init killed by {sig}")))
            }
            Ok(_) | Err(Errno::EINTR) if super::terminated() => {
                // Init's end takes down every process in its namespace.
                let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(init, None);
                return Err(Failure::other("terminated"));
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(Failure::new("waiting for the sandbox", e)),
        }
    }
}

/// Pid 1 of the new namespace.
fn init(spec: &RunSpec, merged: &Path, devnull: &OwnedFd) -> ! {
    // Should the helper itself be killed, the namespace goes with it.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let code = match init_inner(spec, merged, devnull) {
        Ok(r) => {
            report(&r);
            0
        }
        Err(f) => {
            report(&Report::SetupFailed {
                message: f.message,
                denied: f.denied,
            });
            0
        }
    };
    // SAFETY: a forked child leaves without running the parent's exit hooks.
    unsafe { libc::_exit(code) }
}

fn init_inner(spec: &RunSpec, merged: &Path, devnull: &OwnedFd) -> Result<Report, Failure> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("proc"),
        &merged.join("proc"),
        Some("proc"),
        nosuid,
        None::<&str>,
    )
    .map_err(|e| Failure::new("mounting /proc", e))?;
    mask(merged)?;
    chdir(merged).map_err(|e| Failure::new("entering the root", e))?;
    pivot_root(".", ".").map_err(|e| Failure::new("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Failure::new("detaching the old root", e))?;
    chdir("/").map_err(|e| Failure::new("chdir /", e))?;
    sethostname(&spec.hostname).map_err(|e| Failure::new("sethostname", e))?;
    // SAFETY: init is single-threaded.
    let command = match unsafe { fork() }.map_err(|e| Failure::new("fork", e))? {
        ForkResult::Child => exec(spec, devnull, POLICY),
        ForkResult::Parent { child } => child,
    };
    // Reap everything (orphans reparent to init) until the command ends.
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => return Ok(Report::Exited(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                return Ok(Report::Signaled(sig as i32))
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(Failure::new("waiting for the command", e)),
        }
    }
}

fn ensure(
    made: &mut Made,
    root: &Path,
    path: &str,
    kind: Kind,
) -> Result<std::path::PathBuf, Failure> {
    made.ensure(root, path, kind)
        .map_err(|e| Failure::other(format!("creating mount point {path}: {e}")))
}

/// A minimal `/dev`: a tmpfs with the usual nodes bound from the host, a
/// private devpts, and `/dev/shm`.
fn mount_dev(merged: &Path, made: &mut Made) -> Result<(), Failure> {
    let dev = ensure(made, merged, "/dev", Kind::Dir)?;
    // `nodev` too: a node the step makes here with CAP_MKNOD stays
    // unusable; the devices below are binds, mounts with flags of their own.
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(|e| Failure::new("mounting /dev", e))?;
    let io = |what: &str, e: std::io::Error| Failure::other(format!("/dev/{what}: {e}"));
    for name in DEVICES {
        let node = dev.join(name);
        std::fs::File::create(&node).map_err(|e| io(name, e))?;
        bind(&Path::new("/dev").join(name), &node, Bind::Device)?;
    }
    std::fs::create_dir(dev.join("pts")).map_err(|e| io("pts", e))?;
    let pts = mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    );
    if pts.is_ok() {
        symlink("pts/ptmx", dev.join("ptmx")).map_err(|e| io("ptmx", e))?;
    }
    std::fs::create_dir(dev.join("shm")).map_err(|e| io("shm", e))?;
    mount(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| Failure::new("mounting /dev/shm", e))?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(|e| io(name, e))?;
    }
    Ok(())
}

/// Mounts an overlay with `data` on `target`, `volatile` where the kernel
/// has it (Linux 5.10+): it drops overlayfs's fsync of every copied-up
/// file. Upper dirs here are scratch until a layer is written (or thrown
/// away with a bind mount's changes), and a crash discards the step anyway,
/// so durability buys nothing; the fsyncs made a `chmod -R` over 11,000
/// lower files take 8.7 s instead of 1.4 s. Older kernels reject the
/// option: mount without it.
fn mount_overlay(target: &Path, data: &str, flags: MsFlags) -> nix::Result<()> {
    let mount_with =
        |data: &str| mount(Some("overlay"), target, Some("overlay"), flags, Some(data));
    mount_with(&format!("{data},volatile")).or_else(|_| mount_with(data))
}

fn extra_mount(
    m: &MountSpec,
    merged: &Path,
    made: &mut Made,
    xattr_opt: &str,
) -> Result<(), Failure> {
    match m {
        MountSpec::Bind {
            source,
            target,
            read_only,
        } => {
            let kind = if source.is_dir() {
                Kind::Dir
            } else {
                Kind::File
            };
            let host = ensure(made, merged, target, kind)?;
            bind(
                source,
                &host,
                if *read_only {
                    Bind::ReadOnly
                } else {
                    Bind::NoDev
                },
            )
        }
        MountSpec::Tmpfs { target, size } => {
            let host = ensure(made, merged, target, Kind::Dir)?;
            let data = size.map(|s| format!("size={s}"));
            mount(
                Some("tmpfs"),
                &host,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data.as_deref(),
            )
            .map_err(|e| Failure::new(format!("mounting tmpfs on {target}"), e))
        }
        MountSpec::Overlay {
            lower,
            upper,
            work,
            target,
        } => {
            let host = ensure(made, merged, target, Kind::Dir)?;
            let data = format!(
                "lowerdir={},upperdir={},workdir={}{xattr_opt}",
                overlay_path(lower)?,
                overlay_path(upper)?,
                overlay_path(work)?
            );
            mount_overlay(&host, &data, MsFlags::MS_NODEV)
                .map_err(|e| Failure::new(format!("mounting {target}"), e))
        }
        #[allow(unreachable_patterns)]
        _ => Err(Failure::other("unsupported mount")),
    }
}

/// How a bind mount is made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bind {
    /// A device node for `/dev`: the host's flags, so it can be opened.
    Device,
    /// `nodev`, writable as the source is.
    NoDev,
    /// `nodev` and read-only.
    ReadOnly,
}

/// Covers what [`MASKED`] and [`READ_ONLY`] name under `root/proc` and
/// `root/sys`; paths this kernel does not have are skipped.
fn mask(root: &Path) -> Result<(), Failure> {
    for rel in MASKED {
        let path = root.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                &path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(|e| Failure::new(format!("masking /{rel}"), e))?;
        } else {
            bind(Path::new("/dev/null"), &path, Bind::Device)?;
        }
    }
    for rel in READ_ONLY {
        let path = root.join(rel);
        if path.exists() {
            bind(&path, &path, Bind::ReadOnly)?;
        }
    }
    Ok(())
}

pub(crate) fn bind(source: &Path, target: &Path, how: Bind) -> Result<(), Failure> {
    let what = || format!("binding {} on {}", source.display(), target.display());
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Failure::new(what(), e))?;
    if how == Bind::Device {
        return Ok(());
    }
    // A bind takes the source mount's flags; `nodev` and read-only need a
    // remount, and a bind remount changes one mount only, `MS_REC` or not:
    // every mount the recursive bind brought along (for `/sys`, the host's
    // `/sys/fs/cgroup` and its hierarchies) must be remounted on its own,
    // or the step could write through it to the host. A file has none.
    let mut points = if target.is_dir() {
        mounts_under(target)
    } else {
        Vec::new()
    };
    if points.is_empty() {
        points.push(target.to_path_buf());
    }
    let mut extra = MsFlags::MS_NODEV;
    if how == Bind::ReadOnly {
        extra |= MsFlags::MS_RDONLY;
    }
    for point in points {
        // A remount must keep the flags the mount has (`/sys` is
        // nosuid,nodev,noexec): in a user namespace they are locked,
        // and dropping one is refused.
        mount(
            None::<&str>,
            &point,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | locked_flags(&point) | extra,
            None::<&str>,
        )
        .map_err(|e| Failure::new(format!("{} ({})", what(), point.display()), e))?;
    }
    Ok(())
}

/// The mount points at `target` and below it, from `/proc/self/mountinfo`,
/// in mount order (a parent before what is mounted on it).
fn mounts_under(target: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<std::path::PathBuf> = Vec::new();
    for line in info.lines() {
        // Field 5 is the mount point, with space, tab, newline and
        // backslash written as octal escapes.
        let Some(field) = line.split(' ').nth(4) else {
            continue;
        };
        let point = std::path::PathBuf::from(std::ffi::OsString::from_vec(unescape(field)));
        if point.starts_with(&target) && !out.contains(&point) {
            out.push(point);
        }
    }
    out
}

/// Undoes mountinfo's `\ooo` escapes.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push((value & 0xff) as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The per-mount flags of the mount `path` is on, as `mount` takes them.
fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let mut flags = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.flags().contains(fs) {
            flags |= ms;
        }
    }
    // Neither relatime nor noatime is strictatime; saying nothing would
    // make the remount relatime, a change a user namespace refuses.
    if !st
        .flags()
        .intersects(FsFlags::ST_RELATIME | FsFlags::ST_NOATIME)
    {
        flags |= MsFlags::MS_STRICTATIME;
    }
    flags
}

/// A path as overlay's option string can hold it.
fn overlay_path(p: &Path) -> Result<String, Failure> {
    let s = p.to_string_lossy();
    if s.contains([',', ':', '\\']) {
        return Err(Failure::other(format!(
            "{s}: overlay paths cannot contain ',', ':' or '\\'"
        )));
    }
    Ok(s.into_owned())
}
