//! Mounts and networks of a step, on a real busybox root: `--network=none`
//! has a working loopback and no way out; bind, cache and tmpfs mounts work
//! in both isolations (copied in and out in chroot mode) and never show up
//! in the step's changes.

use kiln_image_spec::media::Compression;
use kiln_layer::list::list_entries;
use kiln_layer::reader::open_blob;
use kiln_layer::LayerOptions;
use kiln_sandbox::{Isolation, MountSpec, Network, RootSpec, RunSpec};
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
        "sh", "echo", "cat", "nc", "sleep", "ls", "mkdir", "rm", "touch", "wc",
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
    // The step's own listener may start late on a busy machine, so its
    // client retries; a refused connection does not use up `nc -l`'s one
    // accept, and busybox `nc` exits non-zero when refused.
    let script = format!(
        "nc -l -p 5555 > /tmp/got & \
         for i in $(seq 100); do echo over-loopback | nc -w 2 127.0.0.1 5555 && break; sleep 0.1; done; \
         wait; cat /tmp/got; \
         if echo x | nc -w 2 127.0.0.1 {port}; then echo reached-host; else echo no-host; fi"
    );
    let mut s = spec(&f, Isolation::Namespace, &script);
    s.network = Network::None;
    let (o, lines) = run(&s);
    assert!(o.status.success(), "{lines:?}");
    assert!(lines.iter().any(|l| l == "over-loopback"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "no-host"), "{lines:?}");
    assert!(
        host.accept().is_err(),
        "the step reached the host's loopback"
    );
}

/// Paths in the step's layer.
fn layer_paths(f: &Fixture, outcome: &kiln_sandbox::Outcome) -> Vec<String> {
    let blobs = f.base.join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    let Some(blob) = outcome
        .changes
        .write_layer(&blobs, &LayerOptions::new(Compression::Gzip))
        .unwrap()
    else {
        return Vec::new();
    };
    list_entries(open_blob(&blob.path, Some(Compression::Gzip)).unwrap())
        .unwrap()
        .iter()
        .map(|e| e.path.display().to_string())
        .collect()
}

/// Every kind of mount at once, run twice so the cache's persistence shows.
fn check_mounts(iso: Isolation) {
    let f = fixture();
    let src = f.base.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("f"), "bound\n").unwrap();
    fs::write(src.join("sub/g"), "deep\n").unwrap();
    let cache = f.base.join("cache");
    fs::create_dir(&cache).unwrap();
    let (upper, work) = (f.base.join("rw-upper"), f.base.join("rw-work"));
    let mounts = vec![
        MountSpec::Bind {
            source: src.clone(),
            target: "/mnt/ro".into(),
            read_only: true,
        },
        // Over a directory the image has: its files are hidden, not lost.
        MountSpec::Bind {
            source: src.clone(),
            target: "/opt/under".into(),
            read_only: true,
        },
        MountSpec::Bind {
            source: cache.clone(),
            target: "/var/cache/x".into(),
            read_only: false,
        },
        MountSpec::Tmpfs {
            target: "/scratch".into(),
            size: None,
        },
        MountSpec::Overlay {
            lower: src.clone(),
            upper: upper.clone(),
            work: work.clone(),
            target: "/rw".into(),
        },
    ];
    let script = "cat /mnt/ro/f /mnt/ro/sub/g; ls /opt/under; \
                  echo run >> /var/cache/x/runs; echo runs=$(cat /var/cache/x/runs | wc -l); \
                  ls /scratch | wc -l; echo t > /scratch/t; \
                  echo w > /rw/new; rm /rw/f; echo out > /tmp/out";
    for pass in 1..=2 {
        for d in [&upper, &work] {
            let _ = fs::remove_dir_all(d);
            fs::create_dir_all(d).unwrap();
        }
        // Chroot isolation changes the root in place: start each pass from
        // the same tree.
        let _ = fs::remove_file(f.root.join("tmp/out"));
        let mut s = spec(&f, iso, script);
        s.mounts = mounts.clone();
        let (o, lines) = run(&s);
        assert!(o.status.success(), "{iso:?}: {lines:?}");
        assert_eq!(
            lines,
            ["bound", "deep", "f", "sub", &format!("runs={pass}"), "0"],
            "{iso:?} pass {pass}"
        );
        // Only the step's own write is a change; no mount target is.
        assert_eq!(layer_paths(&f, &o), ["tmp", "tmp/out"], "{iso:?}");
    }
    // Binds never write through; the cache keeps what the steps wrote.
    assert_eq!(fs::read_to_string(src.join("f")).unwrap(), "bound\n");
    assert!(!src.join("new").exists());
    assert_eq!(
        fs::read_to_string(cache.join("runs")).unwrap(),
        "run\nrun\n"
    );
    if iso == Isolation::Chroot {
        // The root is as it was: targets gone, the hidden directory back.
        for gone in ["mnt", "var", "scratch", "rw"] {
            assert!(!f.root.join(gone).exists(), "{gone} left in the root");
        }
        assert_eq!(
            fs::read_to_string(f.root.join("opt/under/original")).unwrap(),
            "original"
        );
        assert!(!f.root.join("opt/under/f").exists());
    }
}

#[test]
fn mounts_in_namespace_isolation() {
    check_mounts(Isolation::Namespace);
}

#[test]
fn mounts_in_chroot_isolation_are_copies() {
    check_mounts(Isolation::Chroot);
}
