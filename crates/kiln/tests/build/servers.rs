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

/// Debian's OpenSSH server on 127.0.0.1, configured only by files under its
/// own directory: a fresh host key, `authorized_keys` holding the one public
/// key it is given, public-key logins only. sshd logs in users of this
/// machine, so clients log in as the user running the test ([`login_user`]).
pub struct SshServer {
    pub server: Server,
    /// A known-hosts file holding the server's host key under `[127.0.0.1]:PORT`.
    pub known_hosts: std::path::PathBuf,
}

/// The name of the user running the test.
pub fn login_user() -> String {
    run(Command::new("id").arg("-un"))
}

/// A new ed25519 key pair without a passphrase at `path` and `path.pub`.
pub fn ssh_key(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test", "-f"])
        .arg(path));
}

pub fn sshd(dir: &Path, authorized_key: &Path) -> SshServer {
    std::fs::create_dir_all(dir).unwrap();
    let host_key = dir.join("host_key");
    ssh_key(&host_key);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(authorized_key, &authorized).unwrap();
    // sshd running as root drops privileges into this directory (made by
    // Debian's service unit, which the test does not start).
    let privsep = Path::new("/run/sshd");
    if run(Command::new("id").arg("-u")) == "0" && !privsep.exists() {
        std::fs::create_dir_all(privsep).unwrap();
    }
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile none\n\
             LogLevel VERBOSE\n",
            host = host_key.display(),
            auth = authorized.display(),
        ),
    )
    .unwrap();
    // sshd must be started by its absolute path to re-execute itself.
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("/usr/sbin/sshd runs (Debian's openssh-server)");
    let server = Server { child, port };
    wait_for_port(port, "sshd");
    let host_public = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_public}")).unwrap();
    SshServer {
        server,
        known_hosts,
    }
}

/// An ssh agent listening on its own socket, holding the keys added to it.
pub struct SshAgent {
    _agent: Server,
    pub socket: std::path::PathBuf,
}

impl SshAgent {
    /// `ssh-agent -D` on `socket` (which must not exist), with `keys` added.
    pub fn start(socket: &Path, keys: &[&Path]) -> SshAgent {
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent runs (Debian's openssh-client)");
        let agent = Server { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        for key in keys {
            run(Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", socket));
        }
        SshAgent {
            _agent: agent,
            socket: socket.to_path_buf(),
        }
    }
}
