//! The command tree: `kiln build`, `kiln debug ...`, `kiln version`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::build_command::BuildCommand;

/// kiln builds container images from a Dockerfile without a Docker daemon.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and push it (takes Kaniko's executor flags).
    Build(Box<BuildCommand>),
    /// Tools for looking at what kiln sees.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Manage the layer cache.
    #[command(subcommand)]
    Cache(crate::commands::cache::CacheCommand),
    /// Pull base images into a cache directory (Kaniko's warmer).
    Warm(Box<crate::commands::warm::WarmCommand>),
    /// Print kiln's version.
    Version,
}

/// `kiln debug` subcommands.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's parse tree in BuildKit's dump format.
    DumpAst {
        /// The Dockerfile.
        path: PathBuf,
    },
    /// Print the resolved build options as JSON, without building.
    Options(Box<BuildCommand>),
}

/// Kaniko is run as `executor --flag ...`, with no subcommand. kiln takes the same
/// command lines: when invoked as `executor`, or when the first argument is a flag other
/// than help or version, `build` is implied.
pub fn with_implied_build(args: Vec<OsString>) -> Vec<OsString> {
    let invoked_as_executor = args
        .first()
        .and_then(|argv0| {
            std::path::Path::new(argv0)
                .file_name()
                .map(|n| n == "executor")
        })
        .unwrap_or(false);
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_top_level_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    let starts_with_flag = first.starts_with('-') && !is_top_level_flag;
    let names_subcommand = matches!(
        first,
        "build" | "debug" | "cache" | "warm" | "version" | "help"
    );
    if starts_with_flag || (invoked_as_executor && !names_subcommand && !is_top_level_flag) {
        let mut out = Vec::with_capacity(args.len() + 1);
        out.push(args[0].clone());
        out.push(OsString::from("build"));
        out.extend(args.into_iter().skip(1));
        return out;
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn build_is_implied_for_kaniko_command_lines() {
        assert_eq!(with_implied_build(os(&["kiln", "--no-push"]))[1], "build");
        assert_eq!(
            with_implied_build(os(&["/kaniko/executor", "--no-push"]))[1],
            "build"
        );
        assert_eq!(with_implied_build(os(&["kiln", "--help"]))[1], "--help");
        assert_eq!(with_implied_build(os(&["kiln", "debug", "x"]))[1], "debug");
        assert_eq!(
            with_implied_build(os(&["executor", "version"]))[1],
            "version"
        );
    }
}
