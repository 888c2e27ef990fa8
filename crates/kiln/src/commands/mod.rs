//! One module per subcommand.

pub mod artifact;
pub mod build;
pub mod cache;
pub mod debug;
pub mod generate;
pub mod index;
pub mod login;
pub mod push;
pub mod push_target;
pub mod warm;

use std::io::Write;

use crate::exit_code::{Exit, Failure};

/// Prints `text` and a newline to stdout. A closed pipe (`kiln ... | head`) is not a
/// failure: the reader has what it wanted.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            Exit::BuildFailed,
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}
