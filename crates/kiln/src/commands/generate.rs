//! `kiln completions SHELL` and `kiln man`: shell completions and manual pages,
//! generated from the command-line definition so they never drift from it.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit_code::{Exit, Failure};

/// Prints the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "kiln", &mut script);
    write_stdout(&script)
}

/// Prints kiln(1) to stdout, or writes a page per command (kiln.1,
/// kiln-build.1, ...) into `dir`.
pub fn man(dir: Option<&Path>) -> Result<(), Failure> {
    let command = Cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            render(&command, &mut page)?;
            write_stdout(&page)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::new(Exit::BuildFailed, format!("{}: {e}", dir.display())))?;
            write_pages(&command, "kiln", dir)
        }
    }
}

fn write_pages(command: &clap::Command, name: &str, dir: &Path) -> Result<(), Failure> {
    let command = command
        .clone()
        .display_name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut page = Vec::new();
    render(&command, &mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page)
        .map_err(|e| Failure::new(Exit::BuildFailed, format!("{}: {e}", path.display())))?;
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

fn render(command: &clap::Command, out: &mut Vec<u8>) -> Result<(), Failure> {
    clap_mangen::Man::new(command.clone())
        .render(out)
        .map_err(|e| Failure::new(Exit::BuildFailed, format!("rendering the manual: {e}")))
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            Exit::BuildFailed,
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}
