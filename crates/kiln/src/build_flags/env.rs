//! Environment variables Kaniko reads, looked up through an injected function so that
//! resolution is testable without touching the process environment.

use std::path::{Path, PathBuf};

use super::defaults::KANIKO_DIR;
use super::error::OptionsError;

/// Looks up an environment variable by name; `None` when unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Go's `strconv.ParseBool` spellings, which Kaniko accepts in its environment variables.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub(crate) fn env_bool(
    env: EnvLookup<'_>,
    name: &'static str,
) -> Result<Option<bool>, OptionsError> {
    match env(name) {
        None => Ok(None),
        Some(value) => match parse_go_bool(&value) {
            Some(b) => Ok(Some(b)),
            None => Err(OptionsError::InvalidEnv {
                name,
                value,
                reason: "expected true or false".to_string(),
            }),
        },
    }
}

/// `--kiln-dir`, then `KANIKO_DIR`, then `/kaniko` when writable, else `$TMPDIR/kiln`.
pub(crate) fn resolve_work_dir(flag: Option<PathBuf>, env: EnvLookup<'_>) -> PathBuf {
    if let Some(dir) = flag.filter(|d| !d.as_os_str().is_empty()) {
        return dir;
    }
    if let Some(dir) = env("KANIKO_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if is_writable_dir(Path::new(KANIKO_DIR)) {
        return PathBuf::from(KANIKO_DIR);
    }
    let tmp = env("TMPDIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/tmp".to_string());
    Path::new(&tmp).join("kiln")
}

fn is_writable_dir(dir: &Path) -> bool {
    // Creating (and at once removing) a file is the one check that tells the truth
    // under read-only mounts, ACLs and user namespaces alike.
    dir.is_dir() && tempfile::tempfile_in(dir).is_ok()
}
