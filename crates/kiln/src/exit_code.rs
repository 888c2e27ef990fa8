//! Process exit codes, one per kind of failure, as documented in docs/exit-codes.md.

use std::fmt;

/// How `kiln` ends. The numbers are part of the interface: scripts test them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// The build failed for a reason not covered below (I/O, an internal error, ...).
    BuildFailed = 1,
    /// Bad flags or arguments, or options that conflict; nothing was started.
    Usage = 2,
    /// The Dockerfile is invalid; nothing touched a registry.
    Dockerfile = 3,
    /// A registry refused or failed: authentication, permissions, missing image, network.
    Registry = 4,
    /// A RUN step exited non-zero.
    RunStepFailed = 5,
    /// Interrupted (SIGINT / Ctrl-C).
    Interrupted = 130,
    /// Terminated (SIGTERM).
    Terminated = 143,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// A failed command: the exit code it maps to and the lines to print (already free of
/// secrets), one per problem.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, one problem per line.
    pub lines: Vec<String>,
}

impl Failure {
    /// A failure with a single message, printed as `error: MESSAGE`.
    pub fn new(exit: Exit, message: impl fmt::Display) -> Failure {
        Failure {
            exit,
            lines: vec![format!("error: {message}")],
        }
    }

    /// Dockerfile problems, each already formatted as `PATH:LINE: reason`.
    pub fn dockerfile(lines: Vec<String>) -> Failure {
        Failure {
            exit: Exit::Dockerfile,
            lines,
        }
    }
}

impl From<crate::build_flags::OptionsError> for Failure {
    fn from(error: crate::build_flags::OptionsError) -> Failure {
        Failure::new(Exit::Usage, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let codes: Vec<u8> = [
            Exit::Success,
            Exit::BuildFailed,
            Exit::Usage,
            Exit::Dockerfile,
            Exit::Registry,
            Exit::RunStepFailed,
            Exit::Interrupted,
            Exit::Terminated,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 130, 143]);
    }

    #[test]
    fn option_errors_are_usage_errors() {
        let failure = Failure::from(crate::build_flags::OptionsError::NoDestination);
        assert_eq!(failure.exit, Exit::Usage);
        assert_eq!(
            failure.lines,
            ["error: you must provide --destination, or use --no-push"]
        );
    }
}
