//! Hand-built hostile tars: each must be refused or contained in the root.

use kiln_layer::extract::{extract, ApplyMode, ExtractOptions};
use kiln_layer::reader::LayerReader;
use kiln_layer::Error;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One raw entry: name bytes, type, size, link name, content.
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    size: u64,
    link: &'a [u8],
    data: &'a [u8],
}

fn raw(name: &[u8], kind: tar::EntryType) -> Raw<'_> {
    Raw {
        name,
        kind,
        size: 0,
        link: b"",
        data: b"",
    }
}

/// Builds a tar with the raw header API: no validation of names at all.
fn build(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link);
        h.set_entry_type(e.kind);
        h.set_mode(0o755);
        h.set_size(e.size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn apply(tar: &[u8], root: &Path) -> Result<(), Error> {
    let reader = LayerReader::new(tar, None, "sha256:hostile").unwrap();
    extract(reader, root, &ExtractOptions::new(ApplyMode::Flatten)).map(|_| ())
}

/// A root inside a sandbox dir, so "outside the root" is observable.
fn sandbox() -> (tempfile::TempDir, std::path::PathBuf) {
    let sandbox = tempfile::tempdir().unwrap();
    let root = sandbox.path().join("root");
    std::fs::create_dir(&root).unwrap();
    (sandbox, root)
}

fn file(name: &'static [u8], data: &'static [u8]) -> Raw<'static> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        size: data.len() as u64,
        link: b"",
        data,
    }
}

#[test]
fn absolute_paths_are_contained() {
    let (_s, root) = sandbox();
    apply(&build(&[file(b"/abs-file", b"x")]), &root).unwrap();
    assert_eq!(std::fs::read(root.join("abs-file")).unwrap(), b"x");
    assert!(!Path::new("/abs-file").exists());
}

#[test]
fn parent_components_are_refused_with_layer_and_entry_named() {
    let (sandbox, root) = sandbox();
    let err = apply(&build(&[file(b"../escaped", b"x")]), &root).unwrap_err();
    assert!(matches!(err, Error::Unsafe { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("sha256:hostile") && text.contains("../escaped"),
        "{text}"
    );
    assert!(!sandbox.path().join("escaped").exists());
}

#[test]
fn writes_through_a_symlink_stay_in_the_root() {
    let (sandbox, root) = sandbox();
    let outside = sandbox.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = outside.to_str().unwrap().as_bytes().to_vec();
    let mut up = b"../".repeat(8);
    up.extend_from_slice(&target[1..]);
    let tar = build(&[
        Raw {
            link: &target,
            ..raw(b"abs", tar::EntryType::Symlink)
        },
        Raw {
            link: &up,
            ..raw(b"rel", tar::EntryType::Symlink)
        },
        file(b"abs/pwned", b"x"),
        file(b"rel/pwned2", b"y"),
    ]);
    let result = apply(&tar, &root);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside: {result:?}"
    );
    // Either refused, or landed on the in-root copy of the path.
    if result.is_ok() {
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("pwned").exists() || inside.join("pwned2").exists());
    }
}

#[test]
fn replacing_a_symlink_with_a_file_does_not_write_through_it() {
    let (sandbox, root) = sandbox();
    let victim = sandbox.path().join("victim");
    std::fs::write(&victim, "original").unwrap();
    let link = victim.to_str().unwrap().as_bytes().to_vec();
    let tar = build(&[
        Raw {
            link: &link,
            ..raw(b"f", tar::EntryType::Symlink)
        },
        file(b"f", b"overwritten"),
    ]);
    apply(&tar, &root).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"overwritten");
}

#[test]
fn hard_link_to_host_file_is_contained() {
    let (_s, root) = sandbox();
    let before = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let tar = build(&[Raw {
        link: b"/etc/passwd",
        ..raw(b"passwd", tar::EntryType::Link)
    }]);
    let result = apply(&tar, &root);
    assert!(
        result.is_err(),
        "no etc/passwd in the root, so nothing to link"
    );
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().nlink(), before);
    let tar = build(&[Raw {
        link: b"../../../../etc/passwd",
        ..raw(b"p2", tar::EntryType::Link)
    }]);
    assert!(matches!(apply(&tar, &root), Err(Error::Unsafe { .. })));
    assert!(!root.join("passwd").exists() && !root.join("p2").exists());
}

#[test]
fn hard_link_through_symlinked_parent_stays_inside() {
    let (_s, root) = sandbox();
    let before = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let tar = build(&[
        Raw {
            link: b"/etc",
            ..raw(b"hostetc", tar::EntryType::Symlink)
        },
        Raw {
            link: b"hostetc/passwd",
            ..raw(b"stolen", tar::EntryType::Link)
        },
    ]);
    let _ = apply(&tar, &root);
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().nlink(), before);
}

#[test]
fn whiteout_outside_is_refused() {
    let (sandbox, root) = sandbox();
    std::fs::write(sandbox.path().join("x"), "keep").unwrap();
    let err = apply(&build(&[raw(b"../.wh.x", tar::EntryType::Regular)]), &root).unwrap_err();
    assert!(matches!(err, Error::Unsafe { .. }), "{err}");
    let err = apply(
        &build(&[raw(b"a/.wh.../x", tar::EntryType::Regular)]),
        &root,
    );
    assert!(err.is_err() || sandbox.path().join("x").exists());
    assert!(sandbox.path().join("x").exists());
    // A whiteout under a symlink to the outside deletes nothing outside.
    let outside = sandbox.path().to_str().unwrap().as_bytes().to_vec();
    let tar = build(&[
        Raw {
            link: &outside,
            ..raw(b"up", tar::EntryType::Symlink)
        },
        raw(b"up/.wh.x", tar::EntryType::Regular),
    ]);
    let _ = apply(&tar, &root);
    assert!(sandbox.path().join("x").exists());
}

#[test]
fn absurd_sizes_are_refused() {
    let (_s, root) = sandbox();
    let mut tar = build(&[file(b"big", b"")]);
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..3].copy_from_slice(b"big");
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1 << 50);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    let err = apply(&tar, &root).unwrap_err();
    assert!(matches!(err, Error::Unsafe { .. }), "{err}");
    // Within the limit but longer than the stream: truncated, refused.
    h.set_size(1 << 20);
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    assert!(apply(&tar, &root).is_err());
}

#[test]
fn file_under_a_file_is_refused() {
    let (_s, root) = sandbox();
    let err = apply(&build(&[file(b"a", b"x"), file(b"a/b", b"y")]), &root).unwrap_err();
    assert!(
        matches!(err, Error::Unsafe { .. } | Error::Extract { .. }),
        "{err}"
    );
}

#[test]
fn device_nodes_are_skipped_when_not_allowed() {
    let (_s, root) = sandbox();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind) in [
        ("dev/mem", tar::EntryType::Char),
        ("dev/sda", tar::EntryType::Block),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(1).unwrap();
        h.set_cksum();
        builder.append(&h, std::io::empty()).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut options = ExtractOptions::new(ApplyMode::Flatten);
    options.allow_devices = false;
    let reader = LayerReader::new(&tar[..], None, "sha256:hostile").unwrap();
    let summary = extract(reader, &root, &options).unwrap();
    assert_eq!(summary.skipped, 2, "{summary:?}");
    assert!(std::fs::symlink_metadata(root.join("dev/mem")).is_err());
    assert!(std::fs::symlink_metadata(root.join("dev/sda")).is_err());
}

#[test]
fn opaque_marker_under_a_symlink_to_the_outside_empties_nothing_outside() {
    let (sandbox, root) = sandbox();
    let outside = sandbox.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), "keep").unwrap();
    let target = outside.to_str().unwrap().as_bytes().to_vec();
    for mode in [ApplyMode::Flatten, ApplyMode::OverlayLower] {
        let tar = build(&[
            Raw {
                link: &target,
                ..raw(b"up", tar::EntryType::Symlink)
            },
            raw(b"up/.wh..wh..opq", tar::EntryType::Regular),
        ]);
        let reader = LayerReader::new(&tar[..], None, "sha256:hostile").unwrap();
        let _ = extract(reader, &root, &ExtractOptions::new(mode));
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "keep"
        );
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
    }
}

#[test]
fn symlink_loops_end_with_an_error_or_stay_inside() {
    let (sandbox, root) = sandbox();
    let tar = build(&[
        Raw {
            link: b"b",
            ..raw(b"a", tar::EntryType::Symlink)
        },
        Raw {
            link: b"a",
            ..raw(b"b", tar::EntryType::Symlink)
        },
        file(b"a/x", b"x"),
        Raw {
            link: b"a/x",
            ..raw(b"h", tar::EntryType::Link)
        },
    ]);
    let _ = apply(&tar, &root);
    let names: Vec<_> = std::fs::read_dir(sandbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["root"]);
}
