//! `kiln build`: resolve the options, check the Dockerfile, then build.

use kiln_build::options::{BuildOptions, DockerfileLocation};

use crate::build_command::BuildCommand;
use crate::exit_code::{Exit, Failure};
use crate::{frontend, logging};

/// Runs a build to completion (or to the first failure).
pub fn run(command: &BuildCommand) -> Result<(), Failure> {
    let options = command
        .to_flags()
        .resolve(&|name| std::env::var(name).ok())?;
    logging::init(&options.log);
    for flag in command.no_effect.given() {
        tracing::info!("{flag} is accepted for Kaniko compatibility and has no effect in kiln");
    }
    check_dockerfile(&options)?;
    build(&options)
}

/// Front-end check: a Dockerfile error ends the run before anything touches a registry.
/// A Dockerfile inside a tar context is checked by the build once the context is unpacked.
fn check_dockerfile(options: &BuildOptions) -> Result<(), Failure> {
    match &options.dockerfile {
        DockerfileLocation::File(path) => {
            let dockerfile = frontend::check(path, options)?;
            for name in dockerfile.unused_build_args() {
                tracing::warn!("build argument {name} was not consumed by any ARG");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn build(options: &BuildOptions) -> Result<(), Failure> {
    let handle = tokio::runtime::Handle::current();
    let outcome = handle
        .block_on(kiln_build::build_with(
            options,
            std::sync::Arc::new(kiln_build::progress::TracingProgress),
        ))
        .map_err(failure_of)?;
    tracing::info!(
        "built {} ({} bytes, {} steps) in {:.1}s",
        outcome.digest,
        outcome.size,
        outcome.steps,
        outcome.elapsed.as_secs_f64()
    );
    for dest in &outcome.pushed {
        tracing::info!("pushed {dest}@{}", outcome.digest);
    }
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
    Failure {
        exit,
        lines: error
            .to_string()
            .lines()
            .map(|l| format!("error: {l}"))
            .collect(),
    }
}
