//! COPY planning against real temporary contexts.

use kiln_build::context::{BuildContext, ContextError, PathMatcher};
use kiln_build::copy::{
    plan_copy, write_layer, Chmod, CopyError, CopyPlan, CopyRequest, CopySource, EntryKind,
    EntrySource, FileKind, Owner,
};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

fn write(root: &Path, rel: &str, body: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A context with a few files, inside a parent dir holding a "secret".
fn setup() -> (tempfile::TempDir, BuildContext) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("ctx");
    write(&root, "a.txt", "A", 0o644);
    write(&root, "b.txt", "B", 0o600);
    write(&root, "run.sh", "#!/bin/sh", 0o755);
    write(&root, "src/main.go", "package main", 0o644);
    write(&root, "src/pkg/util.go", "package pkg", 0o644);
    write(&root, "src/pkg/util_test.go", "package pkg", 0o644);
    write(t.path(), "secret", "TOP SECRET", 0o644);
    let ctx = BuildContext::from_dir(&root).unwrap();
    (t, ctx)
}

fn paths(s: &str) -> CopySource {
    CopySource::Path(s.to_string())
}

fn nothing(_: &str) -> Option<FileKind> {
    None
}

fn plan(ctx: &BuildContext, req: &CopyRequest) -> Result<CopyPlan, CopyError> {
    plan_copy(ctx, req, &nothing)
}

fn listing(plan: &CopyPlan) -> Vec<String> {
    plan.entries().iter().map(|e| e.path.clone()).collect()
}

#[test]
fn single_file_destinations() {
    let (_t, ctx) = setup();
    let p = plan(
        &ctx,
        &CopyRequest::new(vec![paths("a.txt")], "/app/renamed"),
    )
    .unwrap();
    assert_eq!(listing(&p), ["/app", "/app/renamed"]);
    let p = plan(&ctx, &CopyRequest::new(vec![paths("a.txt")], "/app/")).unwrap();
    assert_eq!(listing(&p), ["/app", "/app/a.txt"]);
    // An existing directory in the image takes the file inside it.
    let existing = |p: &str| match p {
        "/app" | "/" => Some(FileKind::Dir),
        _ => None,
    };
    let p = plan_copy(
        &ctx,
        &CopyRequest::new(vec![paths("a.txt")], "/app"),
        &existing,
    )
    .unwrap();
    assert_eq!(listing(&p), ["/app/a.txt"]);
}

#[test]
fn workdir_relative_destination() {
    let (_t, ctx) = setup();
    let mut req = CopyRequest::new(vec![paths("a.txt")], "conf/");
    req.workdir = "/srv/www".into();
    let p = plan(&ctx, &req).unwrap();
    assert_eq!(
        listing(&p),
        ["/srv", "/srv/www", "/srv/www/conf", "/srv/www/conf/a.txt"]
    );
    req.dest = ".".into();
    let p = plan(&ctx, &req).unwrap();
    assert!(p.get("/srv/www/a.txt").is_some());
}

#[test]
fn directory_source_copies_contents_with_modes_and_mtimes() {
    let (_t, ctx) = setup();
    let mtime = fs::metadata(ctx.root().join("src/main.go")).unwrap();
    let p = plan(&ctx, &CopyRequest::new(vec![paths("src")], "/go/src")).unwrap();
    assert_eq!(
        listing(&p),
        [
            "/go",
            "/go/src",
            "/go/src/main.go",
            "/go/src/pkg",
            "/go/src/pkg/util.go",
            "/go/src/pkg/util_test.go"
        ]
    );
    let main = p.get("/go/src/main.go").unwrap();
    assert_eq!(main.kind, EntryKind::File);
    assert_eq!(main.mode, 0o644);
    assert_eq!((main.uid, main.gid), (0, 0));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(main.mtime, mtime.mtime());
    assert_eq!(
        main.source,
        EntrySource::Path(ctx.root().join("src/main.go"))
    );
    // Created parent: 0755.
    assert_eq!(p.get("/go").unwrap().mode, 0o755);
}

#[test]
fn multiple_sources_need_a_directory_destination() {
    let (_t, ctx) = setup();
    let err = plan(
        &ctx,
        &CopyRequest::new(vec![paths("a.txt"), paths("b.txt")], "/x"),
    )
    .unwrap_err();
    assert!(matches!(err, CopyError::DestNotDir { .. }), "{err}");
    let p = plan(
        &ctx,
        &CopyRequest::new(vec![paths("a.txt"), paths("b.txt")], "/x/"),
    )
    .unwrap();
    assert_eq!(listing(&p), ["/x", "/x/a.txt", "/x/b.txt"]);
    // Sources are counted after wildcards are matched: one that matches
    // nothing does not count, so one file remains and /x is that file.
    let p = plan(
        &ctx,
        &CopyRequest::new(vec![paths("nomatch*"), paths("a.txt")], "/x"),
    )
    .unwrap();
    assert_eq!(listing(&p), ["/x"]);
    let err = plan(
        &ctx,
        &CopyRequest::new(vec![paths("[ab].txt"), paths("run.sh")], "/x"),
    )
    .unwrap_err();
    assert!(matches!(err, CopyError::DestNotDir { .. }), "{err}");
}

#[test]
fn wildcards() {
    let (_t, ctx) = setup();
    // Several matches: the destination is a directory even without a slash.
    let p = plan(&ctx, &CopyRequest::new(vec![paths("*.txt")], "/d")).unwrap();
    assert_eq!(listing(&p), ["/d", "/d/a.txt", "/d/b.txt"]);
    let p = plan(&ctx, &CopyRequest::new(vec![paths("src/*/util?go")], "/d/")).unwrap();
    assert_eq!(listing(&p), ["/d", "/d/util.go"]);
    let p = plan(&ctx, &CopyRequest::new(vec![paths("[ab].txt")], "/d/")).unwrap();
    assert_eq!(p.entries().len(), 3);
    // Matching nothing is accepted (BuildKit), or an error when asked.
    let mut req = CopyRequest::new(vec![paths("*.none"), paths("a.txt")], "/d/");
    let p = plan(&ctx, &req).unwrap();
    assert_eq!(listing(&p), ["/d", "/d/a.txt"]);
    req.allow_empty_wildcard = false;
    let err = plan(&ctx, &req).unwrap_err();
    assert!(err.to_string().contains("*.none"), "{err}");
    // A missing directory before the wildcard is an error.
    let err = plan(&ctx, &CopyRequest::new(vec![paths("nodir/*.txt")], "/d/")).unwrap_err();
    assert!(
        matches!(err, CopyError::Context(ContextError::NotFound { .. })),
        "{err}"
    );
    // A malformed pattern is an error.
    assert!(matches!(
        plan(&ctx, &CopyRequest::new(vec![paths("a[.txt")], "/d/")),
        Err(CopyError::Pattern(_))
    ));
}

#[test]
fn hostile_sources_stay_inside_the_context() {
    let (t, ctx) = setup();
    // `..` cannot climb out: ../secret is <root>/secret, which does not exist.
    let err = plan(&ctx, &CopyRequest::new(vec![paths("../secret")], "/x")).unwrap_err();
    assert!(err.to_string().contains("../secret"), "{err}");
    assert!(err.to_string().contains("not found"), "{err}");
    // ../a.txt is the context's a.txt.
    let p = plan(&ctx, &CopyRequest::new(vec![paths("../../a.txt")], "/x")).unwrap();
    assert_eq!(
        p.get("/x").unwrap().source,
        EntrySource::Path(ctx.root().join("a.txt"))
    );
    // `..` in globs is contained too.
    let p = plan(&ctx, &CopyRequest::new(vec![paths("../*.txt")], "/g/")).unwrap();
    assert_eq!(listing(&p), ["/g", "/g/a.txt", "/g/b.txt"]);
    let p = plan(&ctx, &CopyRequest::new(vec![paths("../secre?")], "/g/")).unwrap();
    assert!(p.is_empty());
    // A symlink pointing outside resolves inside the root: not found.
    symlink(t.path().join("secret"), ctx.root().join("abs-out")).unwrap();
    symlink("../secret", ctx.root().join("rel-out")).unwrap();
    for s in ["abs-out", "rel-out"] {
        let err = plan(&ctx, &CopyRequest::new(vec![paths(s)], "/x")).unwrap_err();
        assert!(
            matches!(err, CopyError::Context(ContextError::NotFound { .. })),
            "{s}: {err}"
        );
    }
    // A symlink to an absolute path means that path under the context root.
    symlink("/src/main.go", ctx.root().join("main-link")).unwrap();
    let p = plan(&ctx, &CopyRequest::new(vec![paths("main-link")], "/x/")).unwrap();
    let e = p.get("/x/main-link").unwrap();
    assert_eq!(e.kind, EntryKind::File);
    assert_eq!(e.source, EntrySource::Path(ctx.root().join("src/main.go")));
}

#[test]
fn symlinks_inside_copied_directories_stay_symlinks() {
    let (t, ctx) = setup();
    symlink(t.path().join("secret"), ctx.root().join("src/escape")).unwrap();
    symlink("main.go", ctx.root().join("src/alias")).unwrap();
    let p = plan(&ctx, &CopyRequest::new(vec![paths("src")], "/s")).unwrap();
    let escape = p.get("/s/escape").unwrap();
    assert_eq!(escape.kind, EntryKind::Symlink);
    assert_eq!(
        escape.source,
        EntrySource::Link(t.path().join("secret").to_str().unwrap().into())
    );
    assert_eq!(
        p.get("/s/alias").unwrap().source,
        EntrySource::Link("main.go".into())
    );
}

#[test]
fn parents_flag_keeps_paths_and_honours_the_pivot() {
    let (_t, ctx) = setup();
    let mut req = CopyRequest::new(vec![paths("./src/pkg/util.go"), paths("a.txt")], "/p/");
    req.parents = true;
    let p = plan(&ctx, &req).unwrap();
    assert_eq!(
        listing(&p),
        [
            "/p",
            "/p/a.txt",
            "/p/src",
            "/p/src/pkg",
            "/p/src/pkg/util.go"
        ]
    );
    let mut req = CopyRequest::new(vec![paths("src/./pkg/*.go")], "/p/");
    req.parents = true;
    let p = plan(&ctx, &req).unwrap();
    assert_eq!(
        listing(&p),
        ["/p", "/p/pkg", "/p/pkg/util.go", "/p/pkg/util_test.go"]
    );
}

/// Excludes `*_test.go` anywhere and one directory, with no exceptions.
struct TestExcludes;
impl PathMatcher for TestExcludes {
    fn matches(&self, rel: &str) -> bool {
        rel.ends_with("_test.go") || rel == "pkg"
    }
    fn may_skip_dir(&self, _: &str) -> bool {
        true
    }
}

#[test]
fn exclude_patterns() {
    let (_t, ctx) = setup();
    let mut req = CopyRequest::new(vec![paths("src")], "/s");
    req.exclude = Some(Arc::new(TestExcludes));
    let p = plan(&ctx, &req).unwrap();
    assert_eq!(listing(&p), ["/s", "/s/main.go"]);
}

#[test]
fn chown_by_name_and_created_parents() {
    let (_t, ctx) = setup();
    let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    let mut req = CopyRequest::new(vec![paths("src")], "/home/app/code");
    req.owner = Some(Owner::resolve("app", Some(passwd), None).unwrap());
    req.now = 1_700_000_000;
    let existing = |p: &str| (p == "/home").then_some(FileKind::Dir);
    let p = plan_copy(&ctx, &req, &existing).unwrap();
    // /home exists: not touched. /home/app is created, owned by the chown user.
    assert!(p.get("/home").is_none());
    let created = p.get("/home/app").unwrap();
    assert_eq!(
        (created.mode, created.uid, created.gid, created.mtime),
        (0o755, 1000, 1000, 1_700_000_000)
    );
    for e in p.entries() {
        assert_eq!((e.uid, e.gid), (1000, 1000), "{}", e.path);
    }
}

#[test]
fn chmod_octal_and_symbolic() {
    let (_t, ctx) = setup();
    let mut req = CopyRequest::new(vec![paths(".")], "/c/");
    req.chmod = Some(Chmod::parse("u=rwX,go=rX").unwrap());
    let p = plan(&ctx, &req).unwrap();
    assert_eq!(p.get("/c/a.txt").unwrap().mode, 0o644);
    assert_eq!(p.get("/c/b.txt").unwrap().mode, 0o644);
    assert_eq!(p.get("/c/run.sh").unwrap().mode, 0o755);
    assert_eq!(p.get("/c/src").unwrap().mode, 0o755);
    req.chmod = Some(Chmod::parse("0640").unwrap());
    let p = plan(&ctx, &req).unwrap();
    assert_eq!(p.get("/c/run.sh").unwrap().mode, 0o640);
}

#[test]
fn heredoc_sources() {
    let (_t, ctx) = setup();
    let doc = CopySource::Heredoc {
        name: "EOF".into(),
        body: "hello\n".into(),
    };
    let mut req = CopyRequest::new(vec![doc.clone()], "/etc/motd");
    req.now = 42;
    let p = plan(&ctx, &req).unwrap();
    let e = p.get("/etc/motd").unwrap();
    assert_eq!((e.mode, e.mtime), (0o644, 42));
    assert_eq!(e.source, EntrySource::Bytes(Arc::from(&b"hello\n"[..])));
    let p = plan(&ctx, &CopyRequest::new(vec![doc], "/etc/")).unwrap();
    assert!(p.get("/etc/EOF").is_some());
}

#[test]
fn urls_and_git_in_copy_are_rejected() {
    let (_t, ctx) = setup();
    let err = plan(
        &ctx,
        &CopyRequest::new(vec![paths("https://example.com/x")], "/x"),
    )
    .unwrap_err();
    assert!(matches!(err, CopyError::UrlInCopy { .. }));
    let err = plan(
        &ctx,
        &CopyRequest::new(vec![paths("https://github.com/a/b.git")], "/x"),
    )
    .unwrap_err();
    assert!(matches!(err, CopyError::GitInCopy { .. }), "{err}");
    assert!(err.to_string().contains("use ADD"), "{err}");
}

#[test]
fn inputs_digest_tracks_names_contents_modes_but_not_mtimes() {
    let (_t, ctx) = setup();
    let req = CopyRequest::new(vec![paths("src")], "/s");
    let digest = || plan(&ctx, &req).unwrap().inputs_digest().unwrap();
    let base = digest();
    assert_eq!(base, digest());
    let f = ctx.root().join("src/main.go");
    // mtime only: same digest.
    let file = fs::File::options().write(true).open(&f).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(12345))
        .unwrap();
    drop(file);
    assert_eq!(digest(), base);
    // content
    fs::write(&f, "package main // changed").unwrap();
    let changed = digest();
    assert_ne!(changed, base);
    // mode
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let moded = digest();
    assert_ne!(moded, changed);
    // rename
    fs::rename(&f, ctx.root().join("src/main2.go")).unwrap();
    assert_ne!(digest(), moded);
    // owner (via --chown)
    let mut owned = req.clone();
    owned.owner = Some(Owner { uid: 1, gid: 1 });
    assert_ne!(
        plan(&ctx, &owned).unwrap().inputs_digest().unwrap(),
        digest()
    );
}

#[test]
fn writes_a_tar_in_plan_order() {
    let (_t, ctx) = setup();
    symlink("main.go", ctx.root().join("src/alias")).unwrap();
    let mut req = CopyRequest::new(
        vec![
            paths("src"),
            CopySource::Heredoc {
                name: "n".into(),
                body: "hi".into(),
            },
        ],
        "/s/",
    );
    req.owner = Some(Owner { uid: 7, gid: 8 });
    let p = plan(&ctx, &req).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    write_layer(&p, &mut builder).unwrap();
    let bytes = builder.into_inner().unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_str().unwrap().to_string();
        assert_eq!(entry.header().uid().unwrap(), 7);
        if path == "s/main.go" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
            assert_eq!(s, "package main");
        }
        if path == "s/alias" {
            assert_eq!(
                entry.link_name().unwrap().unwrap().to_str(),
                Some("main.go")
            );
        }
        seen.push(path);
    }
    assert_eq!(
        seen,
        [
            "s/",
            "s/alias",
            "s/main.go",
            "s/n",
            "s/pkg/",
            "s/pkg/util.go",
            "s/pkg/util_test.go"
        ]
    );
}

#[test]
fn writes_through_the_layer_writer() {
    let (t, ctx) = setup();
    let p = plan(&ctx, &CopyRequest::new(vec![paths("src")], "/s")).unwrap();
    let out = t.path().join("blobs");
    fs::create_dir_all(&out).unwrap();
    let opts = kiln_layer::LayerOptions::new(kiln_oci::media::Compression::Gzip);
    let mut w = kiln_layer::writer::LayerWriter::new(&out, &opts).unwrap();
    write_layer(&p, &mut w).unwrap();
    let blob = w.finish().unwrap();
    assert!(blob.size > 0);
}

#[test]
fn dockerignore_and_exclude_flags_together() {
    let (_t, ctx) = setup();
    fs::write(
        ctx.root().join(".dockerignore"),
        "src/pkg\n!src/pkg/util.go\n*.txt\n",
    )
    .unwrap();
    let ctx = ctx.with_dockerignore(None).unwrap();
    let p = plan(&ctx, &CopyRequest::new(vec![paths(".")], "/w")).unwrap();
    assert_eq!(
        listing(&p),
        [
            "/w",
            "/w/.dockerignore",
            "/w/run.sh",
            "/w/src",
            "/w/src/main.go",
            "/w/src/pkg",
            "/w/src/pkg/util.go"
        ]
    );
    // Excluded sources are errors naming the path; wildcards skip them.
    let err = plan(&ctx, &CopyRequest::new(vec![paths("a.txt")], "/w/")).unwrap_err();
    assert!(
        err.to_string().contains("a.txt") && err.to_string().contains(".dockerignore"),
        "{err}"
    );
    let p = plan(
        &ctx,
        &CopyRequest::new(vec![paths("*.txt"), paths("run.sh")], "/w/"),
    )
    .unwrap();
    assert_eq!(listing(&p), ["/w", "/w/run.sh"]);
    // --exclude with Docker's pattern rules, relative to the source: `*`
    // stays in one directory, `**` crosses them.
    let exclude = |pats: &[&str]| {
        let mut req = CopyRequest::new(vec![paths("src")], "/s");
        req.exclude = Some(Arc::new(
            kiln_dockerfile::ignore::DockerIgnore::from_patterns(pats).unwrap(),
        ));
        listing(&plan(&ctx, &req).unwrap())
    };
    assert_eq!(exclude(&["*.go"]), ["/s", "/s/pkg", "/s/pkg/util.go"]);
    assert_eq!(exclude(&["**/*.go"]), ["/s", "/s/pkg"]);
    assert_eq!(exclude(&["pkg"]), ["/s", "/s/main.go"]);
}
