//! The helper process: single-threaded, started by [`crate::run`] through a
//! re-exec, so that `unshare` and `fork` are safe. One module per isolation;
//! [`exec`] is the last step both share.

mod chroot;
mod confine;
mod exec;
mod namespace;
mod net;
mod userns;

use crate::spec::{Isolation, Report, RunSpec};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGTERM (sent by the parent on interrupt, or by the kernel when the
/// parent dies): the helper kills its step's process tree and exits.
static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATED.store(true, Ordering::SeqCst);
}

/// True once the helper was told to end (see [`TERMINATED`]).
pub(crate) fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}

/// SIGTERM interrupts the helper's waits (no `SA_RESTART`) and sets
/// [`TERMINATED`]; the kernel sends it when the parent dies, so no step
/// outlives the build that started it.
fn watch_for_termination() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_terminate),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    let _ = unsafe { sigaction(Signal::SIGTERM, &action) };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    // The parent may have died before the line above: we were reparented.
    // The parent names itself (it may be pid 1 itself, in a container).
    let parent = std::env::args().nth(2).and_then(|p| p.parse::<i32>().ok());
    if parent.is_some_and(|p| nix::unistd::getppid().as_raw() != p) {
        TERMINATED.store(true, Ordering::SeqCst);
    }
}

/// Why the helper could not run the command.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    denied: bool,
}

impl Failure {
    /// A setup step failed; `denied` when the kernel refused it for lack of
    /// privilege, so another isolation may work.
    pub fn new(what: impl std::fmt::Display, errno: nix::errno::Errno) -> Failure {
        use nix::errno::Errno;
        Failure {
            message: format!("{what}: {errno}"),
            denied: matches!(
                errno,
                Errno::EPERM | Errno::EACCES | Errno::ENOSYS | Errno::EINVAL
            ),
        }
    }

    /// A failure that another isolation would not fix.
    pub fn other(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            denied: false,
        }
    }
}

/// Writes one report line to the parent (stdout), unbuffered so nothing is
/// duplicated by a later `fork`.
pub(crate) fn report(r: &Report) {
    if let Ok(mut line) = serde_json::to_vec(r) {
        line.push(b'\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&line);
        let _ = out.flush();
    }
}

/// The helper's `main`: reads the spec on stdin, runs it, reports on
/// stdout, and exits. Call it first thing in `main` when the first argument
/// is [`crate::HELPER_ARG`], before any thread is started.
pub fn helper_main() -> ! {
    watch_for_termination();
    let mut input = Vec::new();
    let spec: Result<RunSpec, String> = std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()));
    let result = match spec {
        Err(e) => Err(Failure::other(format!("reading the spec: {e}"))),
        Ok(spec) => match spec.isolation {
            Isolation::Namespace => namespace::run(&spec),
            Isolation::Chroot => chroot::run(&spec),
        },
    };
    match result {
        Ok(Some(r)) => report(&r),
        Ok(None) => {}
        // Whatever failed, it failed because the build is being stopped.
        Err(_) if terminated() => report(&Report::Terminated),
        Err(f) => report(&Report::SetupFailed {
            message: f.message,
            denied: f.denied,
        }),
    }
    std::process::exit(0)
}
