//! Running external tools with errors that explain what went wrong.

use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// Runs `cmd` to completion and returns its output, failing with the full
/// command line, exit status and the tool's stderr when it does not succeed.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let shown = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{shown}` (is the tool installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}):\nstderr:\n{}\nstdout:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end(),
        );
    }
    Ok(out)
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
