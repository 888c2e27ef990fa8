//! The last step in the sandbox: working directory, stdio, confinement
//! ([`super::confine`]), identity, and `execve`. Runs in the forked child;
//! never returns.

use super::confine::{self, Policy};
use crate::spec::RunSpec;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{chdir, dup2, execve, setgid, setgroups, setuid, Gid, Uid};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Exit code of a command that could not be started, as shells use.
const NOT_RUNNABLE: i32 = 127;

/// Becomes the step's command. `devnull` is its stdin; stdout and stderr
/// both go to the helper's stderr (the output stream).
pub(crate) fn exec(spec: &RunSpec, devnull: &OwnedFd, policy: Policy) -> ! {
    match try_exec(spec, devnull, policy) {
        Ok(never) => match never {},
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "kiln: {message}");
            // SAFETY: `_exit` only ends this forked child, without the parent's exit handlers.
            unsafe { libc::_exit(NOT_RUNNABLE) }
        }
    }
}

fn try_exec(
    spec: &RunSpec,
    devnull: &OwnedFd,
    policy: Policy,
) -> Result<std::convert::Infallible, String> {
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(cwd)
        .map_err(|e| format!("creating working directory {cwd}: {e}"))?;
    chdir(cwd).map_err(|e| format!("changing to {cwd}: {e}"))?;
    // Rust ignores SIGPIPE at startup and ignored signals survive exec:
    // pipelines in the step must see the default.
    // SAFETY: restoring a default disposition installs no handler.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    dup2(devnull.as_raw_fd(), 0).map_err(|e| format!("stdin: {e}"))?;
    dup2(2, 1).map_err(|e| format!("stdout: {e}"))?;
    let argv0 = spec.argv.first().ok_or("empty command")?;
    let program = lookup(argv0, &spec.env)
        .ok_or_else(|| format!("{argv0}: executable file not found in $PATH"))?;
    let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let argv = spec
        .argv
        .iter()
        .map(|a| c(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = spec
        .env
        .iter()
        .map(|a| c(a))
        .collect::<Result<Vec<_>, _>>()?;
    let path = c(&program.to_string_lossy())?;
    // The filter goes on while this process still holds CAP_SYS_ADMIN (so
    // `no_new_privs` stays off, as in Docker); from here on only calls the
    // filter allows are made.
    confine::before_identity(policy)?;
    let groups: Vec<Gid> = spec.user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    if let Err(e) = setgroups(&groups) {
        // A user namespace without subordinate gids forbids setgroups;
        // the step then has no supplementary groups, its only gid is root.
        let denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !denied {
            return Err(format!("setgroups: {e}"));
        }
    }
    setgid(Gid::from_raw(spec.user.gid)).map_err(|e| format!("setgid: {e}"))?;
    setuid(Uid::from_raw(spec.user.uid)).map_err(|e| format!("setuid: {e}"))?;
    confine::after_identity(policy)?;
    execve(&path, &argv, &env).map_err(|e| format!("exec {argv0}: {e}"))
}

/// `argv[0]` as the step's own `PATH` finds it (not the helper's).
fn lookup(argv0: &str, env: &[String]) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(argv0))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
