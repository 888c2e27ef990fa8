//! Whether a Docker engine is usable. The tests that compare against Docker
//! (`docker load`, kiln's own image inside a container) need one and fail,
//! naming what is missing, where there is none: every machine the suite runs
//! on has an engine, so a missing one is a broken machine, not a reason to
//! pass.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `docker version` may take before the engine counts as unusable
/// (a CLI pointed at a dead socket can hang).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// True when the `docker` CLI exists and its engine answers `docker version`.
pub fn docker_available() -> bool {
    let Ok(mut child) = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Panics, saying why, unless a Docker engine answers: for tests whose whole
/// point is what Docker does with kiln's output.
pub fn require_docker(what: &str) {
    assert!(
        docker_available(),
        "{what} needs a running Docker engine (`docker version` must answer); start dockerd"
    );
}
