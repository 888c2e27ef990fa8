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

fn build(_options: &BuildOptions) -> Result<(), Failure> {
    Err(Failure::new(
        Exit::BuildFailed,
        "the Dockerfile and options are valid, but the build engine is not available in this version of kiln",
    ))
}
