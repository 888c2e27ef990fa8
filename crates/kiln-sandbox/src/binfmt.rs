//! Whether this kernel can run a RUN step's binaries: natively, or through a
//! QEMU user-mode emulator registered in binfmt_misc.
//!
//! A step for another architecture runs its binaries as they are; the
//! kernel hands each one to the emulator binfmt_misc names for its ELF
//! header. The entry must carry the `F` flag (the kernel opens the emulator
//! when it is registered, as Debian's qemu-user-static registers it): the
//! step runs in the image's root, where the emulator's path does not exist.
//! The sandbox is unchanged: its seccomp filter applies to the emulator, a
//! process of the host's architecture making the host's system calls.
//!
//! Checked before the step starts, so that a missing emulator is an error
//! that says what to install instead of the shell's "exec format error".

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the kernel's binfmt_misc entries are.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// Why binaries of an architecture cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulationMissing {
    /// The platform, `os/arch[/variant]`.
    pub platform: String,
    /// The binfmt_misc entry the emulator registers as (`qemu-aarch64`).
    pub emulator: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for EmulationMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RUN for {} needs {} registered in binfmt_misc with the F flag ({}); \
             on Debian or Ubuntu install qemu-user-static and run `update-binfmts --enable {}`",
            self.platform, self.emulator, self.reason, self.emulator
        )
    }
}

impl std::error::Error for EmulationMissing {}

/// Checks that binaries of `architecture` (Go's naming: `amd64`, `arm64`,
/// `arm`, …) can run on this machine, reading binfmt_misc at [`BINFMT_MISC`].
///
/// # Errors
/// [`EmulationMissing`] naming the emulator and what is missing.
pub fn check(os: &str, architecture: &str, variant: Option<&str>) -> Result<(), EmulationMissing> {
    check_in(Path::new(BINFMT_MISC), os, architecture, variant)
}

/// [`check`] against the binfmt_misc directory `dir`.
///
/// # Errors
/// As [`check`].
pub fn check_in(
    dir: &Path,
    os: &str,
    architecture: &str,
    variant: Option<&str>,
) -> Result<(), EmulationMissing> {
    // An image that names no architecture is taken to be the host's, as
    // before this check existed.
    if architecture.is_empty() || runs_natively(architecture) {
        return Ok(());
    }
    let platform = match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{architecture}/{v}"),
        None => format!("{os}/{architecture}"),
    };
    let emulator = format!("qemu-{}", qemu_name(architecture));
    let missing = |reason: String| EmulationMissing {
        platform: platform.clone(),
        emulator: emulator.clone(),
        reason,
    };
    if !dir.join("register").exists() {
        return Err(missing(format!(
            "binfmt_misc is not mounted at {}",
            dir.display()
        )));
    }
    let status = read(&dir.join("status"));
    if status.as_deref().map(str::trim) != Some("enabled") {
        return Err(missing("binfmt_misc is disabled".into()));
    }
    let entry: PathBuf = dir.join(&emulator);
    let Some(text) = read(&entry) else {
        return Err(missing(format!("{} does not exist", entry.display())));
    };
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("enabled") {
        return Err(missing(format!("{} is disabled", entry.display())));
    }
    let flags = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("flags:"))
        .unwrap_or("")
        .trim();
    if !flags.contains('F') {
        return Err(missing(format!(
            "{} has flags {flags:?}: without F the emulator is looked up inside the image",
            entry.display()
        )));
    }
    Ok(())
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// True when this machine's CPU runs `architecture`'s binaries itself:
/// its own, and the 32-bit one an x86-64 kernel runs.
fn runs_natively(architecture: &str) -> bool {
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    architecture == host || (host == "amd64" && architecture == "386")
}

/// QEMU's name of a Go architecture, as in its binfmt_misc entries.
fn qemu_name(architecture: &str) -> &str {
    match architecture {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        "loong64" => "loongarch64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        for (name, text) in entries {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn foreign() -> &'static str {
        if std::env::consts::ARCH == "aarch64" {
            "amd64"
        } else {
            "arm64"
        }
    }

    const ENTRY: &str =
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: PF\noffset 0\n";

    #[test]
    fn native_needs_nothing() {
        let empty = tempfile::tempdir().unwrap();
        let host = if std::env::consts::ARCH == "aarch64" {
            "arm64"
        } else {
            "amd64"
        };
        assert_eq!(check_in(empty.path(), "linux", host, None), Ok(()));
    }

    #[test]
    fn a_registered_emulator_with_f_is_enough() {
        let arch = foreign();
        let name = format!("qemu-{}", qemu_name(arch));
        let dir = binfmt(&[(&name, ENTRY)]);
        assert_eq!(check_in(dir.path(), "linux", arch, Some("v8")), Ok(()));
    }

    #[test]
    fn errors_name_the_emulator_and_the_reason() {
        let arch = foreign();
        let name = format!("qemu-{}", qemu_name(arch));
        let err = |dir: &Path| check_in(dir, "linux", arch, None).unwrap_err();

        let unmounted = tempfile::tempdir().unwrap();
        let e = err(unmounted.path());
        assert_eq!(e.emulator, name);
        assert!(e.reason.contains("binfmt_misc is not mounted"), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "RUN for linux/{arch} needs {name} registered in binfmt_misc with the F flag ("
            )),
            "{e}"
        );

        let absent = binfmt(&[]);
        assert!(err(absent.path()).reason.ends_with("does not exist"));

        let disabled = binfmt(&[(&name, &ENTRY.replace("enabled", "disabled"))]);
        assert!(err(disabled.path()).reason.ends_with("is disabled"));

        let without_f = binfmt(&[(&name, &ENTRY.replace("PF", "P"))]);
        assert!(err(without_f.path()).reason.contains("has flags \"P\""));

        let off = binfmt(&[(&name, ENTRY)]);
        fs::write(off.path().join("status"), "disabled\n").unwrap();
        assert_eq!(err(off.path()).reason, "binfmt_misc is disabled");
    }

    #[test]
    fn the_foreign_emulator_of_this_machine() {
        // scripts/install-deps registers Debian's qemu-user-static; the
        // multi-platform tests depend on it, so its absence is a failure.
        let arch = foreign();
        if let Err(e) = check("linux", arch, None) {
            panic!("{e}");
        }
    }
}
