//! Checking that the peer tools the harness drives are installed.

use anyhow::{bail, Result};

/// The external programs the harness needs, with the Debian package that provides each.
pub const REQUIRED_TOOLS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("buildah", "buildah"),
    ("busybox", "busybox-static"),
];

/// Fails with one message naming every missing tool, so a test run on a
/// machine without them fails loudly instead of silently skipping.
///
/// # Errors
/// Returns an error listing each missing program and the package providing it.
pub fn tools_check() -> Result<()> {
    let missing: Vec<String> = REQUIRED_TOOLS
        .iter()
        .filter(|(tool, _)| find_in_path(tool).is_none())
        .map(|(tool, pkg)| format!("{tool} (apt package {pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "kiln-testkit needs these tools on PATH, which are missing: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Looks `name` up in `PATH` the way a shell would.
pub fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    which::which(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_tools_present() {
        tools_check().unwrap();
    }

    #[test]
    fn unknown_tool_is_not_found() {
        assert!(find_in_path("definitely-not-a-tool-kiln").is_none());
        assert!(find_in_path("sh").is_some());
    }
}
