//! Running one build step in an isolated root filesystem, and finding
//! exactly what it changed.
//!
//! A multi-threaded process must never `fork` to set up namespaces, so
//! [`run`] re-executes the current executable (`/proc/self/exe`) with
//! [`HELPER_ARG`] as its first argument; the program's `main` hands that
//! process to [`helper_main`] before starting any thread. The helper reads
//! the [`RunSpec`] as JSON on stdin, reports on stdout, and the step's
//! stdout and stderr arrive, merged, on its stderr, streamed line by line to
//! the caller.
//!
//! Two isolations:
//! - [`Isolation::Namespace`]: new mount, pid, ipc and uts namespaces (and
//!   network with [`Network::None`], whose loopback is brought up), an
//!   overlay whose upper dir receives
//!   every change, `pivot_root`, `/proc`, a minimal `/dev`, read-only `/sys`,
//!   the build's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`. When
//!   the step's first process ends, the pid namespace ends with every process
//!   it started. The changes are the upper dir.
//! - [`Isolation::Chroot`]: for places where mounts are not allowed. The step
//!   runs chrooted in a plain directory, in its own session, under a
//!   subreaper that kills whatever it left behind; the changes are found by
//!   comparing metadata snapshots of the tree before and after. Mounts are
//!   emulated by copying their sources in before the step (and a writable
//!   bind's contents back after it), at a cost that grows with their size.
//!
//! In both, the step holds Docker's default capabilities (fewer in chroot
//! isolation), runs under a seccomp filter equal to Docker's default
//! profile, and inherits no descriptor above stderr; see the README's
//! security section for what each isolation promises.
//!
//! ```no_run
//! use kiln_sandbox::{Isolation, RootSpec, RunSpec};
//! let spec = RunSpec::new(
//!     Isolation::Chroot,
//!     RootSpec::Dir("/tmp/rootfs".into()),
//!     vec!["/bin/sh".into(), "-c".into(), "echo hi > /greeting".into()],
//! );
//! let outcome = kiln_sandbox::run(&spec, |line| println!("| {line}"))?;
//! assert!(outcome.status.success());
//! let layer = outcome.changes.write_layer(
//!     std::path::Path::new("/tmp/blobs"),
//!     &kiln_layer::LayerOptions::new(kiln_image_spec::media::Compression::Gzip),
//! )?;
//! # Ok::<(), kiln_sandbox::SandboxError>(())
//! ```

#![deny(missing_docs)]

mod absorb;
pub mod binfmt;
mod changes;
mod client;
mod detach;
mod emulate;
mod error;
mod helper;
mod prepare;
mod resolve;
mod snapshot;
mod spec;
mod stack;

pub use changes::Changes;
pub use client::{run, run_with_helper, terminate_running, ExitStatus, Outcome};
pub use error::{Result, SandboxError};
pub use helper::helper_main;
pub use snapshot::{Change, Snapshot};
pub use spec::{BindFile, IdMap, IdRange, Isolation, MountSpec, Network, RootSpec, RunSpec, User};
pub use stack::{find_in_stack, StackedPath};

/// The first argument that turns the executable into the sandbox helper.
pub const HELPER_ARG: &str = "__kiln-sandbox";

/// True when this process was started as the sandbox helper: `main` should
/// call [`helper_main`] before anything else.
pub fn is_helper_invocation() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == HELPER_ARG)
}

/// Marks this process non-dumpable, as runc marks itself: its memory,
/// environment (registry passwords, CI tokens) and descriptors under
/// `/proc/PID` become out of reach of other processes of the same user,
/// a step included, and it leaves no core dump. Call it early in `main`
/// (the helper, re-executed, is dumpable again, and holds no secrets in
/// its environment).
///
/// # Errors
/// When the kernel refuses `PR_SET_DUMPABLE`.
pub fn make_undumpable() -> std::io::Result<()> {
    // SAFETY: a plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
