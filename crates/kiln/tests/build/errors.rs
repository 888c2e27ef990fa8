//! How `kiln build` fails: Dockerfile errors reported per line before any
//! registry work, missing COPY sources named with their line, and context
//! escapes (`../`, symlinks pointing outside) refused or kept inside.

use crate::build_common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::Path;

use build_common::{stderr, Kiln};
use kiln_testkit::{EntryKind, Flattened};

/// A loopback port that records whether anything connected to it.
struct Watch(TcpListener);

impl Watch {
    fn new() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Self(l)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.0.local_addr().unwrap().port())
    }

    /// True when a connection is waiting: kiln's process has exited, so a
    /// connection it made is already in the accept queue.
    fn contacted(&self) -> bool {
        self.0.accept().is_ok()
    }
}

#[test]
fn malformed_dockerfile_reports_every_problem_by_line_without_network() {
    let watch = Watch::new();
    let ctx = tempfile::tempdir().unwrap();
    let df = ctx.path().join("Dockerfile");
    fs::write(
        &df,
        format!(
            "FROM {}/busybox:latest\n\
             FROMM scratch\n\
             COPY onlyone\n\
             ENV\n\
             EXPOSE 80\n\
             HEALTHCHECK --interval=zz CMD true\n",
            watch.host()
        ),
    )
    .unwrap();
    let out = Kiln::build(ctx.path())
        .arg_path("--dockerfile", &df)
        .args(["--destination", &format!("{}/app:1", watch.host())])
        .args(["--insecure", "--insecure-pull"])
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let problems: Vec<&str> = err.lines().filter(|l| l.contains("Dockerfile:")).collect();
    let lines: Vec<u32> = problems
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("Dockerfile:").unwrap() + "Dockerfile:".len()..];
            let (n, reason) = rest.split_once(": ")?;
            assert!(!reason.trim().is_empty(), "no reason given: {l}");
            n.parse().ok()
        })
        .collect();
    assert_eq!(
        lines,
        [2, 3, 4, 6],
        "one `Dockerfile:LINE: reason` per problem:\n{err}"
    );
    assert!(problems[0].contains("FROMM"), "{}", problems[0]);
    assert!(!watch.contacted(), "a registry was contacted:\n{err}");
}

/// Builds `ctx` (FROM scratch, no registry) into an OCI layout.
fn build_to_layout(ctx: &Path) -> (std::process::Output, tempfile::TempDir) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Kiln::build(ctx)
        .arg("--no-push")
        .arg_path("--oci-layout-path", &out_dir.path().join("layout"))
        .output();
    (out, out_dir)
}

#[test]
fn missing_copy_source_names_the_file_and_the_line() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("present.txt"), "here\n").unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY present.txt /\nCOPY absent-file.txt /dst/\n",
    )
    .unwrap();
    let (out, _dir) = build_to_layout(ctx.path());
    let err = stderr(&out);
    assert!(!out.status.success(), "the build succeeded:\n{err}");
    let line = err
        .lines()
        .find(|l| l.contains("absent-file.txt"))
        .unwrap_or_else(|| panic!("the missing file is not named:\n{err}"));
    assert!(
        line.contains("Dockerfile:3") || line.contains("line 3") || line.contains("step 3"),
        "the line is not named: {line}"
    );
}

#[test]
fn context_escapes_are_refused_or_contained() {
    let root = tempfile::tempdir().unwrap();
    let secret = root.path().join("outside.txt");
    fs::write(&secret, "SECRET\n").unwrap();
    let ctx = root.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("outside.txt"), "inside\n").unwrap();
    symlink(&secret, ctx.join("abs-link")).unwrap();
    symlink("../outside.txt", ctx.join("rel-link")).unwrap();
    let leaked = |img: &Flattened| {
        img.entries
            .iter()
            .filter(|(_, e)| e.content.as_deref() == Some(b"SECRET\n".as_slice()))
            .map(|(p, _)| p.clone())
            .collect::<Vec<_>>()
    };

    // `../x` resolves inside the context (BuildKit cleans it to `/x`) or is refused.
    for (n, src) in ["../outside.txt", "abs-link", "rel-link"]
        .iter()
        .enumerate()
    {
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM scratch\nCOPY {src} /got\n"),
        )
        .unwrap();
        let (out, dir) = build_to_layout(&ctx);
        if !out.status.success() {
            let err = stderr(&out);
            assert!(!err.contains("panicked"), "{err}");
            continue;
        }
        let img = Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap();
        assert!(
            leaked(&img).is_empty(),
            "case {n} ({src}) leaked {:?}",
            leaked(&img)
        );
        // Both resolve against the context root, as BuildKit scopes them.
        if *src != "abs-link" {
            assert_eq!(img.text("/got").as_deref(), Some("inside\n"), "{src}");
        }
    }

    // Copying the whole context keeps the links as links, never their targets.
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /all/\n").unwrap();
    let (out, dir) = build_to_layout(&ctx);
    assert!(out.status.success(), "{}", stderr(&out));
    let img = Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap();
    assert!(leaked(&img).is_empty(), "leaked {:?}", leaked(&img));
    for (link, target) in [
        ("/all/abs-link", secret.to_str().unwrap()),
        ("/all/rel-link", "../outside.txt"),
    ] {
        let e = img.get(link).unwrap_or_else(|| panic!("{link} missing"));
        assert_eq!(e.kind, EntryKind::Symlink, "{link}");
        assert_eq!(e.link_target.as_deref(), Some(target), "{link}");
    }
}
