//! umoci: unpacking an OCI layout into a runtime bundle, as a second
//! opinion on what a layer stack extracts to.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::cmd::run;

/// `umoci unpack --image LAYOUT:TAG BUNDLE`; returns `BUNDLE/rootfs`.
///
/// `bundle_dir` must not exist yet (umoci creates it). Ownership is kept as
/// in the image, which needs root; as non-root add `--rootless` yourself.
///
/// # Errors
/// Fails with umoci's stderr.
pub fn umoci_unpack(layout_dir: &Path, tag: &str, bundle_dir: &Path) -> Result<PathBuf> {
    ensure!(
        !bundle_dir.exists(),
        "umoci bundle dir {} already exists; umoci needs a fresh path",
        bundle_dir.display()
    );
    let mut c = Command::new("umoci");
    c.arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout_dir.display()))
        .arg(bundle_dir);
    run(&mut c).with_context(|| format!("unpacking {}:{tag}", layout_dir.display()))?;
    Ok(bundle_dir.join("rootfs"))
}
