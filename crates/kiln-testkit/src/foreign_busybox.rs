//! Debian's static busybox for another architecture (arm64 on an x86-64
//! machine), for base images whose RUN steps run under QEMU emulation.
//!
//! Fetched with `apt-get download busybox-static:ARCH` (scripts/install-deps
//! adds the architecture to dpkg so apt offers it), unpacked with `dpkg-deb
//! -x`, and kept as `$KILN_TEST_CACHE/busybox-static-ARCH/busybox`, moved
//! into place whole so a half-fetched binary is never used.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::cmd::run_stdout;

/// The static busybox binary for Debian architecture `arch` (`arm64`),
/// fetched once per machine.
///
/// # Errors
/// Fails, with apt's message, when the package cannot be downloaded.
pub fn busybox_static(arch: &str) -> Result<PathBuf> {
    let dir = crate::debian::cache_root()?.join(format!("busybox-static-{arch}"));
    let binary = dir.join("busybox");
    if binary.exists() {
        return Ok(binary);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("fetch-")
        .tempdir_in(&dir)
        .context("creating a download dir")?;
    run_stdout(
        Command::new("apt-get")
            .args(["download", &format!("busybox-static:{arch}")])
            .current_dir(work.path()),
    )
    .with_context(|| {
        format!(
            "downloading busybox-static:{arch} (scripts/install-deps adds the {arch} \
             architecture to dpkg: `dpkg --add-architecture {arch} && apt-get update`)"
        )
    })?;
    let deb = fs::read_dir(work.path())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let tree = work.path().join("tree");
    run_stdout(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let unpacked = tree.join("bin/busybox");
    ensure!(unpacked.is_file(), "{} holds no bin/busybox", deb.display());
    fs::rename(&unpacked, &binary)
        .with_context(|| format!("moving busybox to {}", binary.display()))?;
    Ok(binary)
}
