//! Running one command and measuring it: wall time, the peak RSS of the
//! process itself (polled `VmHWM`), and `wait4`'s `ru_maxrss` (the largest
//! process in its tree, children included).

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One measured run of a tool (possibly several commands, e.g. build + push).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Wall time in seconds.
    pub wall: f64,
    /// Peak resident set of the tool's own process, KiB.
    pub rss_self_kb: u64,
    /// Largest `ru_maxrss` in the process tree, KiB.
    pub rss_tree_kb: u64,
}

impl Sample {
    /// Adds a later command of the same run.
    pub fn add(&mut self, o: Sample) {
        self.wall += o.wall;
        self.rss_self_kb = self.rss_self_kb.max(o.rss_self_kb);
        self.rss_tree_kb = self.rss_tree_kb.max(o.rss_tree_kb);
    }

    /// Own peak RSS in MB.
    pub fn rss_self_mb(&self) -> f64 {
        self.rss_self_kb as f64 / 1024.0
    }

    /// Tree peak RSS in MB.
    pub fn rss_tree_mb(&self) -> f64 {
        self.rss_tree_kb as f64 / 1024.0
    }
}

fn vm_hwm_kb(pid: i32) -> u64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `cmd` with stdout and stderr appended to `log`; fails when it exits
/// non-zero (naming the log).
pub fn measure(cmd: &mut Command, log: &Path) -> Result<Sample> {
    let f = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    cmd.stdout(f.try_clone()?).stderr(f);
    // A child made the way `posix_spawn` makes it (sharing our memory until
    // it execs) has `ru_maxrss` start from *this* process's high-water
    // mark: the kernel records the memory it leaves at exec, which is ours.
    // After the harness held a base's 100 MiB layers, every tool would
    // report that. A forked child leaves a copy of our current size
    // instead; a pre-exec hook makes std fork.
    // SAFETY: the hook does nothing, so nothing unsafe runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = child.id() as i32;
    let mut hwm = 0;
    loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            let wall = start.elapsed().as_secs_f64();
            drop(child);
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                bail!(
                    "{:?} failed (status {status:#x}); see {}",
                    cmd.get_program(),
                    log.display()
                );
            }
            return Ok(Sample {
                wall,
                rss_self_kb: hwm,
                rss_tree_kb: ru.ru_maxrss as u64,
            });
        }
        if r < 0 {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        hwm = hwm.max(vm_hwm_kb(pid));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` unmeasured, for set-up and clean-up; output to `log`.
pub fn run_quiet(cmd: &mut Command, log: &Path) -> Result<()> {
    measure(cmd, log).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_largest_process_is_not_the_harness_s_own_past_peak() {
        // The harness once held 300 MiB (as it does making a big base)...
        let mut big = vec![0u8; 300 << 20];
        for i in (0..big.len()).step_by(4096) {
            big[i] = 1;
        }
        std::hint::black_box(&big);
        drop(big);
        // ...and then measures a tool of a few megabytes.
        let dir = tempfile::tempdir().unwrap();
        let sample = measure(&mut Command::new("true"), &dir.path().join("log")).unwrap();
        assert!(
            sample.rss_tree_mb() < 100.0,
            "{} MB for `true`",
            sample.rss_tree_mb()
        );
    }
}
