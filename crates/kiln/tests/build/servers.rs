//! Servers the remote-source tests start on loopback, and the git commands
//! that make their repositories: shared by `remote_contexts` (build
//! contexts) and `add_git` (git sources in ADD).

use crate::build_common::fixture;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when the test ends.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd`, which must succeed; its trimmed stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git -C dir ARGS` with a committer and local-file submodules allowed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args))
}

/// Debian's git daemon serving every repository under `root` (git://).
pub fn git_daemon(root: &Path) -> Server {
    let port = free_port();
    // git-daemon itself, not `git daemon`: killing the `git` wrapper would
    // leave the daemon running.
    let exec_path = run(Command::new("git").arg("--exec-path"));
    let daemon = Server {
        child: Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts (Debian's git)"),
        port,
    };
    wait_for_port(port, "git daemon");
    daemon
}

/// tests/fixtures/context_server.py serving `root` (tarballs, `git
/// http-backend`, the object-store stand-ins), with `extra` arguments.
pub fn context_server(root: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new("python3")
        .arg(fixture("context_server.py"))
        .arg("--root")
        .arg(root)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the context server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server prints its port");
    Server { child, port }
}
