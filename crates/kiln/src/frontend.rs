//! Checks a Dockerfile before anything else happens, and reports each problem as
//! `PATH:LINE: reason` so that editors and CI log viewers can jump to it.

use std::path::Path;

use kiln_build::options::BuildOptions;
use kiln_dockerfile::ast::Ast;
use kiln_dockerfile::parser::{self, ParseError};
use kiln_dockerfile::Dockerfile;

use crate::exit_code::{Exit, Failure};

/// Reads and parses the Dockerfile at `path` (syntax only).
///
/// # Errors
/// `Exit::Usage` when the file cannot be read, `Exit::Dockerfile` (one line per
/// problem, located) when it does not parse.
pub fn load(path: &Path) -> Result<Ast, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("cannot read Dockerfile {}: {e}", path.display()),
        )
    })?;
    parser::parse(&text).map_err(|e| Failure::dockerfile(vec![located(path, &e)]))
}

/// Reads the Dockerfile at `path` and checks it fully (syntax, instructions, stages,
/// the target) with the build's arguments, target and platform.
///
/// # Errors
/// `Exit::Usage` when the file cannot be read; `Exit::Dockerfile` with every problem
/// found, one `PATH:LINE: reason` line each.
pub fn check(path: &Path, options: &BuildOptions) -> Result<Dockerfile, Failure> {
    let text = read(path)?;
    let file = path.display().to_string();
    kiln_build::engine::load_dockerfile(options, &file, &text).map_err(|error| match error {
        kiln_build::BuildError::Dockerfile { errors, .. } => {
            Failure::dockerfile(errors.iter().map(|e| e.with_file(&file)).collect())
        }
        other => Failure::new(Exit::Dockerfile, other.to_string()),
    })
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("cannot read Dockerfile {}: {e}", path.display()),
        )
    })
}

/// `PATH:LINE: reason` for a parse error.
pub fn located(path: &Path, error: &ParseError) -> String {
    format!("{}:{}: {}", path.display(), error.line, error.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Dockerfile");
        std::fs::write(&path, "FROM scratch\nENV ONLYKEY\n").unwrap();
        let failure = load(&path).unwrap_err();
        assert_eq!(failure.exit, Exit::Dockerfile);
        assert_eq!(
            failure.lines,
            [format!("{}:2: ENV must have two arguments", path.display())]
        );
    }

    #[test]
    fn unreadable_files_are_usage_errors() {
        let failure = load(Path::new("/nonexistent/Dockerfile")).unwrap_err();
        assert_eq!(failure.exit, Exit::Usage);
    }
}
