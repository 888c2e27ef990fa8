//! `kiln debug ...`: tools for looking at what kiln sees.

use std::path::Path;

use crate::build_command::BuildCommand;
use crate::exit_code::{Exit, Failure};
use crate::frontend;

/// `kiln debug dump-ast PATH`: the parse tree in BuildKit's `Dump()` format.
pub fn dump_ast(path: &Path) -> Result<(), Failure> {
    let ast = frontend::load(path)?;
    super::print(&ast.dump())
}

/// `kiln debug options FLAGS...`: the resolved build options as JSON, without building.
pub fn options(command: &BuildCommand) -> Result<(), Failure> {
    let options = command
        .to_flags()
        .resolve(&|name| std::env::var(name).ok())?;
    let json = serde_json::to_string_pretty(&options)
        .map_err(|e| Failure::new(Exit::BuildFailed, format!("cannot print options: {e}")))?;
    super::print(&json)
}
