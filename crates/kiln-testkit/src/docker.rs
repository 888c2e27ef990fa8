//! Whether a Docker engine is usable; tests comparing against `docker build`
//! are optional and skip when it is not.

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
