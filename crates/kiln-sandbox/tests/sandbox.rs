//! The sandbox on a real busybox root: both isolations, output streaming,
//! exit codes, process cleanup and the exact set of changes.

use kiln_image_spec::media::Compression;
use kiln_layer::list::list_entries;
use kiln_layer::reader::open_blob;
use kiln_layer::{EntryKind, LayerOptions};
use kiln_sandbox::{BindFile, Isolation, RootSpec, RunSpec};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

const HELPER: &str = env!("CARGO_BIN_EXE_kiln-sandbox-helper");

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    base: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["bin", "etc", "tmp", "data/sub", "proc", "dev", "sys"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "rm", "mkdir", "chmod", "ln", "sleep", "cat", "touch", "ls",
    ] {
        symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("data/keep"), "keep").unwrap();
    fs::write(root.join("data/gone"), "gone").unwrap();
    fs::write(root.join("data/sub/x"), "x").unwrap();
    fs::write(root.join("data/mode"), "m").unwrap();
    let base = dir.path().to_path_buf();
    Fixture {
        _dir: dir,
        root,
        base,
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
    let hosts = f.base.join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let mut s = RunSpec::new(
        isolation,
        root,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    s.env = vec!["PATH=/bin".into()];
    s.files = vec![BindFile {
        source: hosts,
        target: "/etc/hosts".into(),
    }];
    s
}

/// Layer entries as `(path, kind)` strings.
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
    let entries = list_entries(open_blob(&blob.path, Some(Compression::Gzip)).unwrap()).unwrap();
    entries
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                EntryKind::Dir => "dir".to_string(),
                EntryKind::File { .. } => "file".to_string(),
                EntryKind::Whiteout => "whiteout".to_string(),
                EntryKind::Opaque => "opaque".to_string(),
                EntryKind::HardLink { target } => format!("link:{}", target.display()),
                EntryKind::Symlink { .. } => "symlink".to_string(),
                other => format!("{other:?}"),
            };
            format!("{} {kind} {:o}", e.path.display(), e.meta.mode)
        })
        .collect()
}

fn run(s: &RunSpec) -> (kiln_sandbox::Outcome, Vec<String>) {
    let mut lines = Vec::new();
    let outcome =
        kiln_sandbox::run_with_helper(Path::new(HELPER), s, |l| lines.push(l.to_string())).unwrap();
    (outcome, lines)
}

fn both(check: impl Fn(Isolation)) {
    check(Isolation::Namespace);
    check(Isolation::Chroot);
}

#[test]
fn output_is_streamed_and_status_reported() {
    both(|iso| {
        let f = fixture();
        let (o, lines) = run(&spec(&f, iso, "echo out; echo err >&2; exit 3"));
        assert_eq!(o.status.code, Some(3), "{iso:?}");
        assert_eq!(lines, ["out", "err"], "{iso:?}");
    });
}

#[test]
fn nothing_changed_means_no_layer() {
    both(|iso| {
        let f = fixture();
        let (o, _) = run(&spec(&f, iso, "cat /etc/hosts >/dev/null; ls / >/dev/null"));
        assert!(o.status.success());
        assert!(o.changes.is_empty(), "{iso:?}: {:?}", layer_paths(&f, &o));
    });
}

#[test]
fn layer_holds_exactly_the_changes() {
    both(|iso| {
        let f = fixture();
        let script = "echo new > /data/new && rm /data/gone && rm -r /data/sub && \
                      chmod 4755 /data/mode && ln /data/new /data/hard && mkdir -p /made/deep";
        let (o, lines) = run(&spec(&f, iso, script));
        assert!(o.status.success(), "{iso:?}: {lines:?}");
        let paths = layer_paths(&f, &o);
        let want = [
            "data dir 755",
            "data/gone whiteout 0",
            "data/hard file 644",
            "data/mode file 4755",
            "data/new link:data/hard 644",
            "data/sub whiteout 0",
            "made dir 755",
            "made/deep dir 755",
        ];
        assert_eq!(paths, want, "{iso:?}");
    });
}

#[test]
fn background_processes_are_gone_after_the_step() {
    // The check scans every process on the machine: durations of this test
    // process's own, so that a `sleep` another test (or an earlier run) has
    // going cannot be taken for one of these.
    let first = 10_000 + 2 * (std::process::id() % 40_000);
    let mine = [
        format!("sleep\u{0}{first}\u{0}"),
        format!("sleep\u{0}{}\u{0}", first + 1),
    ];
    both(|iso| {
        let f = fixture();
        let (o, _) = run(&spec(
            &f,
            iso,
            &format!(
                "sleep {first} >/dev/null 2>&1 & (setsid sleep {} >/dev/null 2>&1 &) ; echo started",
                first + 1
            ),
        ));
        assert!(o.status.success());
        let left = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path().join("cmdline")).ok())
            .filter(|c| mine.iter().any(|m| c.starts_with(m.as_str())))
            .count();
        assert_eq!(left, 0, "{iso:?}: step processes outlived the step");
    });
}
