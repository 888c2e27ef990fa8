//! `RUN --mount=type=ssh`: the agent socket given with `--ssh` (or found in
//! `SSH_AUTH_SOCK`) is reachable in the step at BuildKit's default path or
//! `target=`, with `SSH_AUTH_SOCK` pointing at it; `required=true` without
//! an agent fails and says how to give one. The agent here is a fake that
//! answers every connection with a fixed reply; the step talks to it with
//! a tiny static client compiled for the test (busybox `nc` has no `-U`).

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Flattened, Registry};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const REPLY: &[u8] = b"fake-agent-says-hello\n";

/// Connects to `$SSH_AUTH_SOCK` (or argv[1]), sends a request, prints the reply.
const CLIENT_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : getenv("SSH_AUTH_SOCK");
    if (!path) { fprintf(stderr, "no socket\n"); return 2; }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror(path); return 1; }
    if (write(fd, "ping", 4) != 4) { perror("write"); return 1; }
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
"#;

/// Compiles the client statically into `dir`; panics when no C compiler with
/// a static libc is at hand (gcc and libc6-dev are on every machine the
/// suite runs on).
fn client(dir: &Path) -> PathBuf {
    let src = dir.join("sockcat.c");
    std::fs::write(&src, CLIENT_C).unwrap();
    let bin = dir.join("sockcat");
    let ok = std::process::Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    std::fs::remove_file(&src).unwrap();
    assert!(
        ok,
        "cc -static failed: the test client needs gcc and a static libc (libc6-dev)"
    );
    bin
}

/// A fake agent on `path`: answers each connection's first bytes with
/// [`REPLY`]. The thread ends with the test process.
fn fake_agent(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4];
            let _ = conn.read_exact(&mut buf);
            let _ = conn.write_all(REPLY);
        }
    });
}

fn kiln(reg: &Registry, ctx: &Path, work: &Path, tag: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "--context"])
        .arg(ctx)
        .args(["--destination", &format!("{}/{tag}", reg.host())])
        .args(["--insecure", "--insecure-pull", "--kiln-dir"])
        .arg(work)
        .args(extra)
        .env_remove("SSH_AUTH_SOCK")
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

const DOCKERFILE: &str = "\
FROM REGISTRY/busybox:latest
RUN --mount=type=ssh --mount=type=bind,source=sockcat,target=/usr/local/bin/sockcat \
    sockcat > /agent-default && echo \"$SSH_AUTH_SOCK\" > /sock-default
RUN --mount=type=ssh,id=deploy,target=/tmp/agent.sock,required=true \
    --mount=type=bind,source=sockcat,target=/usr/local/bin/sockcat \
    sockcat > /agent-target && echo \"$SSH_AUTH_SOCK\" > /sock-target
";

#[test]
fn ssh_agent_is_forwarded_into_the_step() {
    let ctx = tempfile::tempdir().unwrap();
    client(ctx.path());
    let sockets = tempfile::tempdir().unwrap();
    let agent = sockets.path().join("agent.sock");
    fake_agent(&agent);
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        DOCKERFILE.replace("REGISTRY", &reg.host()),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let default = format!("default={}", agent.display());
    let deploy = format!("deploy={}", agent.display());
    let (ok, log) = kiln(
        &reg,
        ctx.path(),
        work.path(),
        "ssh:1",
        &["--ssh", &default, "--ssh", &deploy],
    );
    assert!(ok, "{log}");
    let img = Flattened::from_registry(&reg, "ssh:1").unwrap();
    let reply = String::from_utf8_lossy(REPLY).into_owned();
    assert_eq!(img.text("/agent-default"), Some(reply.clone()));
    assert_eq!(img.text("/agent-target"), Some(reply));
    assert_eq!(
        img.text("/sock-default").as_deref(),
        Some("/run/buildkit/ssh_agent.0\n")
    );
    assert_eq!(
        img.text("/sock-target").as_deref(),
        Some("/tmp/agent.sock\n")
    );
    // Neither the socket nor its mount point reaches a layer.
    for p in [
        "/run/buildkit/ssh_agent.0",
        "/run/buildkit",
        "/tmp/agent.sock",
    ] {
        assert!(img.get(p).is_none(), "{p} is in the image");
    }
}

#[test]
fn required_ssh_without_an_agent_fails_clearly() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let dockerfile = "\
FROM REGISTRY/busybox:latest
RUN --mount=type=ssh,required=true echo never > /ran
";
    std::fs::write(
        ctx.path().join("Dockerfile"),
        dockerfile.replace("REGISTRY", &reg.host()),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let (ok, log) = kiln(&reg, ctx.path(), work.path(), "ssh:2", &[]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("ssh agent default is required") && log.contains("--ssh"),
        "{log}"
    );
}
