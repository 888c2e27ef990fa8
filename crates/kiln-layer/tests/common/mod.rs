//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds a tree with every kind of entry a layer carries.
pub fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "kiln\n").unwrap();
    std::fs::write(root.join("usr/bin/tool"), vec![7u8; 70_000]).unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    symlink("../etc/hostname", root.join("usr/hostname-link")).unwrap();
    std::fs::create_dir(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let long_dir = root.join("d".repeat(90));
    std::fs::create_dir(&long_dir).unwrap();
    std::fs::write(long_dir.join("f".repeat(60)), "long path").unwrap();
    rustix::fs::chown(
        root.join("etc/hostname").as_path(),
        Some(rustix::process::Uid::from_raw(1234)),
        Some(rustix::process::Gid::from_raw(5678)),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        root.join("usr/bin/tool").as_path(),
        "user.kiln",
        b"v1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let fifo = root.join("fifo");
    Command::new("mkfifo").arg(&fifo).status().unwrap();
}

/// Sets every mtime in the tree (without following symlinks).
pub fn touch_all(root: &Path, secs: i64) {
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.unwrap();
        let t = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            entry.path(),
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
}

/// A description of every path in a tree: type, mode, owner, size, link
/// target, mtime for non-symlinks, xattrs; hard links by group.
pub fn describe(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let m = entry.path().symlink_metadata().unwrap();
        let rel: PathBuf = entry.path().strip_prefix(root).unwrap().into();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "link"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let target = if ft.is_symlink() {
            std::fs::read_link(entry.path())
                .unwrap()
                .display()
                .to_string()
        } else {
            String::new()
        };
        let mtime = if ft.is_symlink() { 0 } else { m.mtime() };
        let xattr =
            rustix::fs::lgetxattr(entry.path(), "user.kiln", &mut [0u8; 16][..]).unwrap_or(0);
        out.push(format!(
            "{} {kind} {:o} {}:{} size={} ->{target} mtime={mtime} nlink={} xattr={xattr}",
            rel.display(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            if ft.is_file() { m.len() } else { 0 },
            if ft.is_dir() { 0 } else { m.nlink() },
        ));
    }
    out
}

/// `sha256sum` of a file, as `sha256:<hex>`.
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    format!(
        "sha256:{}",
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
    )
}
