//! Running external tools with a time limit and errors that explain what
//! went wrong.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use wait_timeout::ChildExt as _;

/// Time limit for quick tools (skopeo, umoci): a hung registry connection
/// must fail the test, not stall the suite.
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion within [`TOOL_TIMEOUT`]; see [`run_with_timeout`].
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    run_with_timeout(cmd, TOOL_TIMEOUT)
}

/// Runs `cmd` and returns its output, failing with the full command line,
/// exit status and the tool's stderr when it does not succeed, and killing
/// it when it outlives `limit`.
pub(crate) fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let shown = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}` (is the tool installed?)"))?;
    // Both pipes are drained on their own threads so a chatty tool cannot
    // block on a full pipe while we wait for it to exit.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = child.wait_timeout(limit)?;
    let timed_out = status.is_none();
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            child.wait()?
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
    if timed_out {
        bail!(
            "`{shown}` did not finish within {limit:?} and was killed:\nstderr:\n{}\nstdout:\n{}",
            text(&stderr),
            text(&stdout)
        );
    }
    if !status.success() {
        bail!(
            "`{shown}` failed ({status}):\nstderr:\n{}\nstdout:\n{}",
            text(&stderr),
            text(&stdout)
        );
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run`], returning stdout as text.
pub(crate) fn run_stdout(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", describe(cmd)))
}

/// The command line as a user would type it, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_includes_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("oops") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn hung_tool_is_killed() {
        let start = std::time::Instant::now();
        let err = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .unwrap_err();
        assert!(format!("{err}").contains("did not finish"));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
