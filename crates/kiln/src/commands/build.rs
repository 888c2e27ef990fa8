//! `kiln build`: resolve the options, check the Dockerfile, then build.

use kiln_build::engine::workspace::Workspaces;
use kiln_build::options::{BuildOptions, DockerfileLocation};
use kiln_build::BuildSetup;

use crate::build_command::BuildCommand;
use crate::exit_code::{Exit, Failure};
use crate::progress::{self, Renderer, Summary};
use crate::{frontend, logging};
use std::sync::Arc;

/// Runs a build to completion (or to the first failure), showing its progress
/// and, at the end, a summary or one clear error.
pub fn run(command: &BuildCommand, workspaces: Workspaces) -> Result<(), Failure> {
    let mode = progress::Mode::detect(command.log_format);
    let renderer = Arc::new(Renderer::new(mode, command.log_timestamp));
    let setup = BuildSetup::default().with_workspaces(workspaces);
    run_with(command, &renderer, &setup).map_err(|failure| {
        renderer.failure(&failure.lines, hint(failure.exit), failure.exit.code());
        // Already printed, in the log's format.
        Failure {
            exit: failure.exit,
            lines: Vec::new(),
        }
    })
}

fn run_with(
    command: &BuildCommand,
    renderer: &Arc<Renderer>,
    setup: &BuildSetup,
) -> Result<(), Failure> {
    let options = command
        .to_flags()
        .resolve(&|name| std::env::var(name).ok())?;
    logging::init_with(&options.log, renderer.multi());
    let ignored = command.no_effect.given();
    if !ignored.is_empty() {
        tracing::info!(
            "accepted for Kaniko compatibility, no effect in kiln: {}",
            ignored.join(", ")
        );
    }
    for notice in options.host_filesystem.notices() {
        tracing::info!("{notice}");
    }
    let dockerfile = check_dockerfile(&options)?;
    if options.dryrun || options.print_plan {
        let Some(dockerfile) = &dockerfile else {
            return Err(Failure::new(
                Exit::Usage,
                "--dryrun: the Dockerfile is inside a tar context, which is only unpacked \
                 by a build; give --dockerfile a path outside the archive to see the plan",
            ));
        };
        super::print(&crate::plan::render(dockerfile))?;
        if options.dryrun {
            for arg in dockerfile.unused_build_args() {
                tracing::warn!("build arg {arg} was not consumed by any stage");
            }
            tracing::info!("--dryrun: nothing built, pushed or written");
            return Ok(());
        }
    }
    let setup = match dockerfile {
        Some(dockerfile) => setup.clone().with_dockerfile(dockerfile),
        None => setup.clone(),
    };
    build(&options, renderer, &setup)
}

/// What to do about a failure of this kind, in one line. Dockerfile errors
/// stay compiler-style lines (`PATH:LINE: reason`) that editors can follow.
fn hint(exit: Exit) -> Option<&'static str> {
    match exit {
        Exit::RunStepFailed => Some(
            "the RUN command exited non-zero inside the image; its last output is above. \
             Fix the command (or the files it uses) and build again.",
        ),
        Exit::Registry => Some(
            "check the image name, the credentials in $DOCKER_CONFIG/config.json, and \
             --insecure/--insecure-pull or --skip-tls-verify for registries without valid TLS.",
        ),
        Exit::Usage => Some("see `kiln build --help` for every flag."),
        Exit::BuildFailed => Some("run again with --verbosity=debug for details."),
        _ => None,
    }
}

/// Front-end check: a Dockerfile error ends the run before anything touches a registry.
/// A Dockerfile inside a tar context is checked by the build once the context is unpacked.
fn check_dockerfile(
    options: &BuildOptions,
) -> Result<Option<kiln_dockerfile::Dockerfile>, Failure> {
    match &options.dockerfile {
        // The build takes it as loaded here and warns about unused build args.
        DockerfileLocation::File(path) => frontend::check(path, options).map(Some),
        _ => Ok(None),
    }
}

fn build(
    options: &BuildOptions,
    renderer: &Arc<Renderer>,
    setup: &BuildSetup,
) -> Result<(), Failure> {
    let handle = tokio::runtime::Handle::current();
    let sink: Arc<dyn kiln_build::progress::ProgressSink> = renderer.clone();
    let outcome = handle
        .block_on(kiln_build::build_in(options, sink, setup))
        .map_err(failure_of)?;
    renderer.finish();
    renderer.summary(&Summary {
        digest: outcome.digest.to_string(),
        size: outcome.size,
        pushed: outcome.pushed.clone(),
        steps: outcome.steps,
        cached: outcome.cached,
        cache_enabled: options.cache.enabled,
        elapsed: outcome.elapsed,
    });
    Ok(())
}

/// The exit code and message lines of a failed build.
fn failure_of(error: kiln_build::BuildError) -> Failure {
    use kiln_build::engine::error::BuildError as E;
    let exit = match &error {
        E::Dockerfile { .. } => Exit::Dockerfile,
        E::Run { .. } => Exit::RunStepFailed,
        E::Pull { .. }
        | E::Registry(_)
        | E::Output(kiln_build::output::OutputError::Push { .. }) => Exit::Registry,
        _ => Exit::BuildFailed,
    };
    // One `error:` line says what failed; what follows it (a RUN's last
    // output, every Dockerfile problem) is detail, indented.
    let text = error.to_string();
    let mut lines = text.lines();
    let first = format!("error: {}", lines.next().unwrap_or("build failed"));
    Failure {
        exit,
        lines: std::iter::once(first)
            .chain(lines.map(|l| {
                if l.starts_with(char::is_whitespace) {
                    l.to_string()
                } else {
                    format!("  {l}")
                }
            }))
            .collect(),
    }
}
