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
    #[command(visible_alias = "executor")]
    Build(Box<BuildCommand>),
    /// Tools for looking at what kiln sees.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Manage the layer cache.
    #[command(subcommand)]
    Cache(crate::commands::cache::CacheCommand),
    /// Pull base images into a cache directory (Kaniko's warmer).
    #[command(visible_alias = "warmer")]
    Warm(Box<crate::commands::warm::WarmCommand>),
    /// Store registry credentials in the Docker config (the Kaniko fork's `executor login`).
    Login(crate::commands::login::LoginCommand),
    /// Push an image saved by --tar-path or --oci-layout-path without building it
    /// again (the Kaniko fork's `executor push`).
    Push(Box<crate::commands::push::PushCommand>),
    /// Multi-platform image indexes.
    #[command(subcommand)]
    Index(crate::commands::index::IndexCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print kiln's manual page (roff), or write one page per command into a directory.
    Man {
        /// Write kiln.1, kiln-build.1, ... into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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

/// Kaniko is run as `executor --flag ...` and its warmer as `warmer --flag ...`,
/// with no subcommand. kiln takes the same command lines: invoked under the name
/// `executor` (for example as `/kaniko/executor`), `build` is implied, `--help`
/// included; under the name `warmer`, `warm` is. Under any name, a first argument
/// that is a flag other than help or version implies `build`.
pub fn with_implied_build(args: Vec<OsString>) -> Vec<OsString> {
    let invoked_as = args
        .first()
        .and_then(|argv0| std::path::Path::new(argv0).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_top_level_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    let starts_with_flag = first.starts_with('-') && !is_top_level_flag;
    let names_subcommand = matches!(
        first,
        "build"
            | "executor"
            | "debug"
            | "cache"
            | "warm"
            | "warmer"
            | "login"
            | "push"
            | "index"
            | "version"
            | "help"
            | "completions"
            | "man"
    );
    let implied = match invoked_as {
        "executor" if !names_subcommand => Some("build"),
        "warmer" if !names_subcommand => Some("warm"),
        _ if starts_with_flag => Some("build"),
        _ => None,
    };
    match implied {
        Some(subcommand) => {
            let mut out = Vec::with_capacity(args.len() + 1);
            out.push(args[0].clone());
            out.push(OsString::from(subcommand));
            out.extend(args.into_iter().skip(1));
            out
        }
        None => args,
    }
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
        assert_eq!(with_implied_build(os(&["executor", "--help"]))[1], "build");
        assert_eq!(
            with_implied_build(os(&["/kaniko/warmer", "-i", "x"]))[1],
            "warm"
        );
        assert_eq!(with_implied_build(os(&["warmer", "--help"]))[1], "warm");
        assert_eq!(with_implied_build(os(&["executor"]))[1], "build");
        assert_eq!(with_implied_build(os(&["kiln", "debug", "x"]))[1], "debug");
        assert_eq!(
            with_implied_build(os(&["executor", "version"]))[1],
            "version"
        );
    }
}
