//! A fresh filesystem for every measured run, as a CI runner has.
//!
//! Each run's working directory (kiln's `--kiln-dir` and `--cache-dir`, or
//! buildah's storage root) is the mount point of a new ext4 filesystem in a
//! sparse image file, made right before the run and thrown away after it.
//! Without this, a run inherits the state the previous runs left on the
//! shared disk: on ext4, inode allocation after tens of thousands of
//! deletions scans recently freed inodes (`recently_deleted` under
//! `__ext4_new_inode`), which made file creation about 20 times slower for
//! whichever tool ran next and decided the fs-stress figures more than
//! either tool did (bench/README.md). Both tools get the same treatment.
//!
//! It needs root (mkfs and a loop mount); without it the run falls back to a
//! plain directory and the report says so.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Size of the sparse image; only what a run writes takes space.
const IMAGE_SIZE: u64 = 32 << 30;

/// A mounted fresh filesystem; unmounted and deleted on drop.
pub struct FreshDisk {
    mount_point: PathBuf,
    image: PathBuf,
}

impl FreshDisk {
    /// Whether fresh filesystems can be made here (root, mkfs.ext4, mount).
    pub fn available() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        root && kiln_testkit::find_in_path("mkfs.ext4").is_some()
            && kiln_testkit::find_in_path("mount").is_some()
    }

    /// Makes an empty ext4 filesystem and mounts it on `dir` (created if
    /// missing, which must be empty).
    pub fn mount(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let image = dir.with_extension("img");
        let _ = fs::remove_file(&image);
        File::create(&image)
            .and_then(|f| f.set_len(IMAGE_SIZE))
            .with_context(|| format!("creating {}", image.display()))?;
        // Lazy inode tables and journal: mkfs writes a few megabytes, not
        // the whole table, so making the filesystem is not part of the run's
        // cost; nodiscard keeps mkfs from trimming the sparse file.
        run(Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            ])
            .arg(&image))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir))?;
        Ok(Self {
            mount_point: dir.to_path_buf(),
            image,
        })
    }
}

impl Drop for FreshDisk {
    fn drop(&mut self) {
        if run(Command::new("umount").arg(&self.mount_point)).is_err() {
            // Something still holds it (a process the tool left behind):
            // detach now, the kernel frees it when the last user goes.
            let _ = run(Command::new("umount").arg("-l").arg(&self.mount_point));
        }
        let _ = fs::remove_file(&self.image);
    }
}

fn run(c: &mut Command) -> Result<()> {
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    if !out.status.success() {
        bail!(
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
