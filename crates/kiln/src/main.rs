//! The `kiln` command line: Kaniko-compatible flags in, resolved options to the build
//! library, an exit code out. Binary glue only; no build logic lives here.

mod build_command;
mod build_flags;
mod cli;
mod commands;
mod exit_code;
mod frontend;
mod go_duration;
mod logging;
mod plan;
mod progress;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, DebugCommand};
use exit_code::{Exit, Failure};
use kiln_build::engine::workspace::Workspaces;

fn main() -> ExitCode {
    // The sandbox helper must start before any thread exists (it forks).
    if kiln_sandbox::is_helper_invocation() {
        kiln_sandbox::helper_main();
    }
    // Before any secret is read: a RUN step running as kiln's own user
    // must not read kiln's environment or memory through /proc.
    if let Err(e) = kiln_sandbox::make_undumpable() {
        eprintln!("kiln: cannot mark the process non-dumpable: {e}");
        return Exit::BuildFailed.into();
    }
    let args = cli::with_implied_build(std::env::args_os().collect());
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Build(command) => {
            run_interruptible(move |workspaces| commands::build::run(&command, workspaces))
        }
        Command::Debug(DebugCommand::DumpAst { path }) => commands::debug::dump_ast(&path),
        Command::Debug(DebugCommand::Options(command)) => commands::debug::options(&command),
        Command::Cache(command) => run_interruptible(move |_| commands::cache::run(&command)),
        Command::Warm(command) => run_interruptible(move |_| commands::warm::run(&command)),
        Command::Push(command) => run_interruptible(move |_| commands::push::run(&command)),
        Command::Index(command) => run_interruptible(move |_| commands::index::run(&command)),
        Command::Login(command) => commands::login::run(&command),
        Command::Version => commands::print(&format!("kiln {}", env!("CARGO_PKG_VERSION"))),
        Command::Completions { shell } => commands::generate::completions(shell),
        Command::Man { dir } => commands::generate::man(dir.as_deref()),
    };
    match result {
        Ok(()) => Exit::Success.into(),
        Err(failure) => {
            let mut stderr = std::io::stderr().lock();
            for line in &failure.lines {
                // Nothing sensible is left to do when stderr itself is gone.
                let _ = writeln!(stderr, "{line}");
            }
            failure.exit.into()
        }
    }
}

/// Runs `work` on a blocking thread and ends with `Exit::Interrupted` on
/// Ctrl-C, removing the private directories of the builds `work` registered
/// in the registry it is handed.
fn run_interruptible<F>(work: F) -> Result<(), Failure>
where
    F: FnOnce(Workspaces) -> Result<(), Failure> + Send + 'static,
{
    let workspaces = Workspaces::default();
    let registered = workspaces.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::BuildFailed, format!("cannot start runtime: {e}")))?;
    let result = runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| Failure::new(Exit::BuildFailed, format!("cannot watch SIGTERM: {e}")))?;
        let work = tokio::task::spawn_blocking(move || work(registered));
        tokio::select! {
            joined = work => joined.unwrap_or_else(|e| {
                Err(Failure::new(Exit::BuildFailed, format!("build thread failed: {e}")))
            }),
            _ = tokio::signal::ctrl_c() => {
                Err(interrupted(&workspaces, Exit::Interrupted, "SIGINT"))
            }
            _ = terminate.recv() => Err(interrupted(&workspaces, Exit::Terminated, "SIGTERM")),
        }
    });
    // An interrupted build thread must not hold up the exit.
    runtime.shutdown_background();
    result
}

/// Cleans up after a signal: the build threads never finish, so the RUN
/// steps' process trees (and with them their mounts) are ended here, then
/// every build's private directory is removed.
fn interrupted(workspaces: &Workspaces, exit: Exit, signal: &str) -> Failure {
    kiln_sandbox::terminate_running(std::time::Duration::from_secs(10));
    workspaces.remove_all_after_interrupt();
    Failure::new(exit, format!("interrupted by {signal}"))
}
