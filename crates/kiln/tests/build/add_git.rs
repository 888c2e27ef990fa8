//! BuildKit's git sources in ADD, end to end against real servers started
//! here: `git daemon` (git://) and `git http-backend` behind the CGI web
//! server of tests/fixtures/context_server.py (https). Refs, commits,
//! sub-directories, `--keep-git-dir`, `--checksum` for a commit, `--chown`,
//! errors naming the source, and the step's cache key following the commit.
//! A missing tool fails the test; nothing is skipped.

use crate::build_common;
use crate::servers::{context_server, git, git_daemon, run};

use build_common::{stderr, Kiln};
use kiln_testkit::{Flattened, Registry};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

/// A work tree `NAME-work` and its bare clone `NAME.git` under `root`: on
/// `main`, a first commit (tagged `v1`) with `msg.txt` = "one", an
/// executable `tool.sh` and `app/app.txt`, then a second with `msg.txt` =
/// "two". Returns the two commit ids.
fn make_repo(root: &Path, name: &str) -> (String, String) {
    let work = root.join(format!("{name}-work"));
    fs::create_dir_all(work.join("app")).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    fs::write(work.join("app/app.txt"), "in app\n").unwrap();
    fs::write(work.join("tool.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        work.join("tool.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::write(work.join("msg.txt"), "one\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["tag", "v1"]);
    fs::write(work.join("msg.txt"), "two\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    run(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(root.join(format!("{name}.git"))));
    (first, second)
}

/// Pushes a new commit with `msg.txt` = `text` to `NAME.git`; returns its id.
fn new_commit(root: &Path, name: &str, text: &str) -> String {
    let work = root.join(format!("{name}-work"));
    fs::write(work.join("msg.txt"), text).unwrap();
    git(&work, &["commit", "-q", "-am", text]);
    let bare = root.join(format!("{name}.git"));
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(&work, &["rev-parse", "HEAD"])
}

/// Builds `dockerfile` from an otherwise empty context into an OCI layout.
fn build(dockerfile: &str, extra: &[&str], env: &[(&str, &str)]) -> (Output, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut kiln = Kiln::build(&ctx)
        .args(["--no-push"])
        .arg_path("--oci-layout-path", &dir.path().join("layout"))
        .args(extra);
    for (k, v) in env {
        kiln = kiln.env(k, v);
    }
    (kiln.output(), dir)
}

fn built(dockerfile: &str, extra: &[&str], env: &[(&str, &str)]) -> Flattened {
    let (out, dir) = build(dockerfile, extra, env);
    assert!(out.status.success(), "{dockerfile}\n{}", stderr(&out));
    Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap()
}

fn fails(dockerfile: &str, env: &[(&str, &str)]) -> String {
    let (out, _dir) = build(dockerfile, &[], env);
    let err = stderr(&out);
    assert!(!out.status.success(), "{dockerfile} should fail:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn add_from_git_daemon_refs_commits_subdirs_and_checksums() {
    let t = TempDir::new().unwrap();
    let (first, second) = make_repo(t.path(), "repo");
    let daemon = git_daemon(t.path());
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let provenance = t.path().join("provenance.json");
    let img = built(
        &format!(
            "FROM scratch\n\
             ADD {url} /head\n\
             ADD {url}#v1 /tag/\n\
             ADD {url}#{first} /commit\n\
             ADD {url}#main:app /sub\n\
             ADD --keep-git-dir {url}#v1 /kept\n\
             ADD --checksum={first} {url}#v1 /pinned\n\
             ADD --chown=1234:5678 {url}#v1 /owned\n"
        ),
        &["--provenance-file", provenance.to_str().unwrap()],
        &[],
    );
    // Each git source is a material pinned by its commit, as BuildKit
    // records it.
    let statement: serde_json::Value =
        serde_json::from_slice(&fs::read(&provenance).unwrap()).unwrap();
    let materials = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies")
        .clone();
    let commit_of = |uri: &str| {
        materials
            .iter()
            .find(|m| m["uri"] == uri)
            .and_then(|m| m["digest"]["sha1"].as_str().map(str::to_string))
    };
    assert_eq!(commit_of(&url), Some(second.clone()), "{materials:?}");
    assert_eq!(commit_of(&format!("{url}#v1")), Some(first.clone()));
    assert_eq!(img.text("/head/msg.txt").as_deref(), Some("two\n"));
    assert_eq!(img.text("/tag/msg.txt").as_deref(), Some("one\n"));
    assert_eq!(img.text("/commit/msg.txt").as_deref(), Some("one\n"));
    assert_eq!(img.text("/pinned/msg.txt").as_deref(), Some("one\n"));
    // `#ref:subdir` adds the sub-directory's contents, not the directory.
    assert_eq!(img.text("/sub/app.txt").as_deref(), Some("in app\n"));
    assert!(img.get("/sub/msg.txt").is_none());
    // No .git unless asked for; with --keep-git-dir, HEAD is the commit.
    assert!(img.get("/head/.git").is_none());
    assert!(img.entries.keys().all(|p| !p.starts_with("/tag/.git")));
    assert!(img.text("/kept/.git/HEAD").is_some(), "a kept .git/HEAD");
    assert!(img.get("/kept/.git/objects").is_some());
    // Modes are git's (0644, 0755 for executables), owners root or --chown.
    assert_eq!(img.get("/tag/msg.txt").unwrap().mode & 0o7777, 0o644);
    assert_eq!(img.get("/tag/tool.sh").unwrap().mode & 0o7777, 0o755);
    assert_eq!(img.get("/tag/app").unwrap().mode & 0o7777, 0o755);
    assert_eq!(img.get("/tag/msg.txt").unwrap().uid, 0);
    let owned = img.get("/owned/msg.txt").unwrap();
    assert_eq!((owned.uid, owned.gid), (1234, 5678));
    let owned_dir = img.get("/owned").unwrap();
    assert_eq!((owned_dir.uid, owned_dir.gid), (1234, 5678));

    // A checksum that is not the resolved commit fails, naming both.
    let err = fails(
        &format!("FROM scratch\nADD --checksum={second} {url}#v1 /x\n"),
        &[],
    );
    assert!(err.contains(&url), "the error names the source:\n{err}");
    assert!(
        err.contains(&second) && err.contains(&first) && err.contains("checksum"),
        "{err}"
    );
    // A ref that does not exist, a subdir that does not.
    let err = fails(&format!("FROM scratch\nADD {url}#no-such-ref /x\n"), &[]);
    assert!(err.contains("no-such-ref") && err.contains(&url), "{err}");
    let err = fails(&format!("FROM scratch\nADD {url}#main:nope /x\n"), &[]);
    assert!(err.contains("nope") && err.contains(&url), "{err}");
    // A repository the server does not have.
    let missing = format!("git://127.0.0.1:{}/missing.git", daemon.port);
    let err = fails(&format!("FROM scratch\nADD {missing} /x\n"), &[]);
    assert!(err.contains(&missing), "{err}");
    // COPY takes no git sources.
    let err = fails(&format!("FROM scratch\nCOPY {url} /x\n"), &[]);
    assert!(err.contains("use ADD"), "{err}");
}

#[test]
fn add_from_git_http_backend_with_credentials() {
    let t = TempDir::new().unwrap();
    let repos = t.path().join("repos");
    fs::create_dir_all(&repos).unwrap();
    make_repo(&repos, "public");
    make_repo(&repos, "private");
    let tls = kiln_testkit::generate_tls(&t.path().join("tls")).unwrap();
    let server = context_server(
        t.path(),
        &[
            "--git-root",
            repos.to_str().unwrap(),
            "--private",
            "private.git=builder:hunter2",
            "--tls",
            tls.server_cert.to_str().unwrap(),
            tls.server_key.to_str().unwrap(),
        ],
    );
    let ca = tls.ca_cert.to_str().unwrap();
    let base = format!("https://127.0.0.1:{}/git", server.port);
    let img = built(
        &format!("FROM scratch\nADD {base}/public.git#v1:app /app\nADD {base}/public.git /src\n"),
        &[],
        &[("SSL_CERT_FILE", ca)],
    );
    assert_eq!(img.text("/app/app.txt").as_deref(), Some("in app\n"));
    assert_eq!(img.text("/src/msg.txt").as_deref(), Some("two\n"));

    let private = format!("{base}/private.git");
    let dockerfile = format!("FROM scratch\nADD {private} /src\n");
    let err = fails(&dockerfile, &[("SSL_CERT_FILE", ca)]);
    assert!(
        err.contains("private.git") && err.contains("GIT_USERNAME"),
        "{err}"
    );
    let (out, dir) = build(
        &dockerfile,
        &["-v", "debug"],
        &[
            ("SSL_CERT_FILE", ca),
            ("GIT_USERNAME", "builder"),
            ("GIT_PASSWORD", "hunter2"),
        ],
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("hunter2"), "the password was logged:\n{log}");
    let img = Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap();
    assert_eq!(img.text("/src/msg.txt").as_deref(), Some("two\n"));
}

/// Dockerfile lines a build reports as `step N: CACHED`.
fn cached_lines(log: &str) -> BTreeSet<usize> {
    log.lines()
        .filter(|l| l.contains("CACHED"))
        .filter_map(|l| {
            let rest = &l[l.find("step ")? + 5..];
            rest.split(':').next()?.trim().parse().ok()
        })
        .collect()
}

#[test]
fn add_git_is_cached_by_commit() {
    let t = TempDir::new().unwrap();
    make_repo(t.path(), "repo");
    let daemon = git_daemon(t.path());
    let reg = Registry::plain().unwrap();
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nADD --keep-git-dir {url}#main /src\nADD {url} /plain\n"),
    )
    .unwrap();
    let build = || {
        let work = tempfile::tempdir().unwrap();
        let out = Kiln::build(&ctx)
            .args(["--destination", &format!("{}/app:1", reg.host())])
            .args(["--insecure", "--cache=true", "--cache-copy-layers=true"])
            .arg_path("--kiln-dir", work.path())
            .output();
        let log = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{log}");
        cached_lines(&log)
    };
    assert!(build().is_empty(), "a cold cache hits nothing");
    // Same commit, fresh clones (a kept .git differs between them): hits.
    assert_eq!(build(), BTreeSet::from([2, 3]));
    let img = Flattened::from_registry(&reg, "app:1").unwrap();
    assert_eq!(img.text("/src/msg.txt").as_deref(), Some("two\n"));
    // A new commit on main: both miss and the image has it.
    new_commit(t.path(), "repo", "three\n");
    assert!(build().is_empty(), "a new commit misses");
    let img = Flattened::from_registry(&reg, "app:1").unwrap();
    assert_eq!(img.text("/plain/msg.txt").as_deref(), Some("three\n"));
}
