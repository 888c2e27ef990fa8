//! Opening build contexts: directories, tar archives, sub-paths, ignore files.

use kiln_build::context::{
    read_dockerignore, BuildContext, ContextError, ContextSpec, PathMatcher,
};
use std::fs;
use std::io::Write;
use std::sync::Arc;

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, name, *body).unwrap();
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}

#[test]
fn tar_context_with_sub_path() {
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("ctx.tar.gz");
    fs::write(
        &archive,
        tar_gz(&[
            ("app/Dockerfile", b"FROM scratch\n"),
            ("app/src/a.txt", b"a"),
            ("other.txt", b"o"),
        ]),
    )
    .unwrap();
    let spec = ContextSpec::parse(&format!("tar://{}", archive.display())).unwrap();
    let into = t.path().join("work/context");
    let ctx = BuildContext::open(&spec, None, &into).unwrap();
    assert_eq!(
        fs::read(ctx.lookup("app/src/a.txt").unwrap().abs).unwrap(),
        b"a"
    );
    let sub = BuildContext::open(&spec, Some("app"), &t.path().join("work/context2")).unwrap();
    assert!(sub.lookup("src/a.txt").is_ok());
    assert!(matches!(
        sub.lookup("../other.txt"),
        Err(ContextError::NotFound { .. })
    ));
    let err = BuildContext::open(&spec, Some("app/src/a.txt"), &t.path().join("w3")).unwrap_err();
    assert!(matches!(err, ContextError::NotADirectory { .. }), "{err}");
}

#[test]
fn hostile_tar_context_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_old_mut().name[..7].copy_from_slice(b"../out\0");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let archive = t.path().join("evil.tar");
    fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let into = t.path().join("work/ctx");
    let err = BuildContext::open(&ContextSpec::Tar(archive), None, &into).unwrap_err();
    assert!(matches!(err, ContextError::Archive { .. }), "{err}");
    assert!(!t.path().join("work/out").exists());
}

#[test]
fn directory_context_and_sub_path() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("repo/svc")).unwrap();
    fs::write(t.path().join("repo/svc/x"), "x").unwrap();
    let spec = ContextSpec::parse(&format!("dir://{}", t.path().join("repo").display())).unwrap();
    let ctx = BuildContext::open(&spec, Some("svc"), &t.path().join("unused")).unwrap();
    assert!(ctx.lookup("x").is_ok());
    assert!(!t.path().join("unused").exists());
    let missing = ContextSpec::Dir(t.path().join("nope"));
    assert!(BuildContext::open(&missing, None, t.path()).is_err());
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    fs::create_dir_all(root.join("build")).unwrap();
    fs::write(root.join(".dockerignore"), "root-rules\n").unwrap();
    let df = root.join("build/api.Dockerfile");
    fs::write(&df, "FROM scratch\n").unwrap();
    let (path, text) = read_dockerignore(root, Some(&df)).unwrap().unwrap();
    assert_eq!(
        (path, text.as_str()),
        (root.join(".dockerignore"), "root-rules\n")
    );
    fs::write(root.join("build/api.Dockerfile.dockerignore"), "specific\n").unwrap();
    let (path, text) = read_dockerignore(root, Some(&df)).unwrap().unwrap();
    assert_eq!(
        (path, text.as_str()),
        (root.join("build/api.Dockerfile.dockerignore"), "specific\n")
    );
    fs::remove_file(root.join(".dockerignore")).unwrap();
    fs::remove_file(root.join("build/api.Dockerfile.dockerignore")).unwrap();
    assert!(read_dockerignore(root, Some(&df)).unwrap().is_none());
}

/// `secret*` and `logs` excluded, with `!logs/keep.log` re-included.
struct Rules;
impl PathMatcher for Rules {
    fn matches(&self, rel: &str) -> bool {
        if rel == "logs/keep.log" {
            return false;
        }
        rel.starts_with("secret") || rel == "logs" || rel.starts_with("logs/")
    }
    fn may_skip_dir(&self, rel: &str) -> bool {
        rel != "logs"
    }
}

#[test]
fn ignore_rules_hide_paths_but_keep_exceptions() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in ["secret.key", "app.txt", "logs/a.log", "logs/keep.log"] {
        fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        fs::write(root.join(f), f).unwrap();
    }
    let ctx = BuildContext::from_dir(root)
        .unwrap()
        .with_ignore(Arc::new(Rules));
    let err = ctx.lookup("secret.key").unwrap_err();
    assert!(matches!(err, ContextError::Excluded { .. }));
    assert!(err.to_string().contains("secret.key"));
    assert!(ctx.lookup("logs").is_ok());
    let listed: Vec<String> = ctx.walk("").unwrap().into_iter().map(|e| e.rel).collect();
    assert_eq!(listed, ["app.txt", "logs", "logs/keep.log"]);
}

#[test]
fn real_dockerignore_with_exceptions() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [
        "app.txt",
        "secret.key",
        "logs/a.log",
        "logs/keep.log",
        "node_modules/x/index.js",
        "docs/a.md",
        "docs/b.md",
    ] {
        fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        fs::write(root.join(f), f).unwrap();
    }
    fs::write(
        root.join(".dockerignore"),
        "# comment\n*.key\nlogs\n!logs/keep.log\nnode_modules\ndocs/*.md\n!docs/b.md\n",
    )
    .unwrap();
    let ctx = BuildContext::from_dir(root)
        .unwrap()
        .with_dockerignore(None)
        .unwrap();
    assert!(matches!(
        ctx.lookup("secret.key"),
        Err(ContextError::Excluded { .. })
    ));
    assert!(matches!(
        ctx.lookup("node_modules/x/index.js"),
        Err(ContextError::Excluded { .. })
    ));
    assert!(ctx.lookup("logs/keep.log").is_ok());
    assert!(ctx.lookup("docs/b.md").is_ok());
    let listed: Vec<String> = ctx.walk("").unwrap().into_iter().map(|e| e.rel).collect();
    assert_eq!(
        listed,
        [
            ".dockerignore",
            "app.txt",
            "docs",
            "docs/b.md",
            "logs",
            "logs/keep.log"
        ]
    );
    // A malformed ignore file is an error naming the file.
    fs::write(root.join(".dockerignore"), "!\n").unwrap();
    let err = BuildContext::from_dir(root)
        .unwrap()
        .with_dockerignore(None)
        .unwrap_err();
    assert!(err.to_string().contains(".dockerignore"), "{err}");
}
