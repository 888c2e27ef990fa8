//! Mounts and networks of a step, on a real busybox root: `--network=none`
//! has a working loopback and no way out; bind, cache and tmpfs mounts work
//! in both isolations (copied in and out in chroot mode) and never show up
//! in the step's changes.

use kiln_sandbox::{Isolation, Network, RootSpec, RunSpec};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

const HELPER: &str = env!("CARGO_BIN_EXE_kiln-sandbox-helper");

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let root = base.join("root");
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys", "opt/under"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "cat", "nc", "sleep", "ls", "mkdir", "rm", "touch", "mount", "grep",
    ] {
        symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    fs::write(root.join("opt/under/original"), "original").unwrap();
    Fixture {
        _dir: dir,
        base,
        root,
    }
}

fn spec(f: &Fixture, isolation: Isolation, script: &str) -> RunSpec {
    let root = match isolation {
        Isolation::Namespace => {
            for d in ["upper", "work", "merged"] {
                let p = f.base.join(d);
                let _ = fs::remove_dir_all(&p);
                fs::create_dir_all(p).unwrap();
            }
            RootSpec::Overlay {
                lower: vec![f.root.clone()],
                upper: f.base.join("upper"),
                work: f.base.join("work"),
                merged: f.base.join("merged"),
            }
        }
        _ => RootSpec::Dir(f.root.clone()),
    };
    let mut s = RunSpec::new(
        isolation,
        root,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    s.env = vec!["PATH=/bin".into()];
    s
}

fn run(s: &RunSpec) -> (kiln_sandbox::Outcome, Vec<String>) {
    let mut lines = Vec::new();
    let outcome =
        kiln_sandbox::run_with_helper(Path::new(HELPER), s, |l| lines.push(l.to_string())).unwrap();
    (outcome, lines)
}

#[test]
fn network_none_has_loopback_and_no_host() {
    let f = fixture();
    // A server on the host's loopback: the step must not reach it.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let script = format!(
        "nc -l -p 5555 > /tmp/got & sleep 0.3; \
         echo over-loopback | nc -w 2 127.0.0.1 5555; wait; cat /tmp/got; \
         if echo x | nc -w 2 127.0.0.1 {port}; then echo reached-host; else echo no-host; fi"
    );
    let mut s = spec(&f, Isolation::Namespace, &script);
    s.network = Network::None;
    let (o, lines) = run(&s);
    assert!(o.status.success(), "{lines:?}");
    assert!(lines.iter().any(|l| l == "over-loopback"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "no-host"), "{lines:?}");
    assert!(host.accept().is_err(), "the step reached the host's loopback");
}
