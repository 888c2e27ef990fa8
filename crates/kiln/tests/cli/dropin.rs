//! kiln as a drop-in for Kaniko: the binary called `executor` (as
//! `/kaniko/executor` is in pipelines) or `warmer` takes Kaniko's command
//! lines and environment unchanged, end to end against a real registry.

use assert_cmd::cargo::cargo_bin;
use kiln_testkit::{BaseImage, Flattened, Registry};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every flag of Kaniko's executor, deprecated spellings included, and
/// those the maintained fork (osscontainertools/kaniko v1.28) added.
const KANIKO_FLAGS: &[&str] = &[
    "--annotation",
    "--credential-helpers",
    "--dryrun",
    "--image-format",
    "--materialize",
    "--pre-cleanup",
    "--preserve-context",
    "--build-arg",
    "--cache",
    "--cache-copy-layers",
    "--cache-dir",
    "--cache-repo",
    "--cache-run-layers",
    "--cache-ttl",
    "--cleanup",
    "--compressed-caching",
    "--compression",
    "--compression-level",
    "--context",
    "--context-sub-path",
    "--custom-platform",
    "--customPlatform",
    "--destination",
    "--digest-file",
    "--dockerfile",
    "--force",
    "--force-build-metadata",
    "--git",
    "--ignore-path",
    "--ignore-var-run",
    "--whitelist-var-run",
    "--image-download-retry",
    "--image-fs-extract-retry",
    "--image-name-tag-with-digest-file",
    "--image-name-with-digest-file",
    "--insecure",
    "--insecure-pull",
    "--insecure-registry",
    "--kaniko-dir",
    "--label",
    "--log-format",
    "--log-timestamp",
    "--no-push",
    "--no-push-cache",
    "--oci-layout-path",
    "--push-ignore-immutable-tag-errors",
    "--push-retry",
    "--registry-certificate",
    "--registry-client-cert",
    "--registry-map",
    "--registry-mirror",
    "--reproducible",
    "--single-snapshot",
    "--skip-default-registry-fallback",
    "--skip-push-permission-check",
    "--skip-tls-verify",
    "--skip-tls-verify-pull",
    "--skip-tls-verify-registry",
    "--skip-unused-stages",
    "--snapshot-mode",
    "--snapshotMode",
    "--tar-path",
    "--tarPath",
    "--target",
    "--use-new-run",
    "--verbosity",
];

/// The kiln binary under another name, through a symlink, as an image
/// would install it at /kaniko/executor.
struct Renamed {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn renamed(name: &str) -> Renamed {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kaniko").join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(cargo_bin("kiln"), &path).unwrap();
    Renamed { _dir: dir, path }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// A CI project: a context with a Dockerfile from the test registry's busybox.
fn project(reg: &Registry) -> tempfile::TempDir {
    BaseImage::busybox()
        .unwrap()
        .push_to(reg, "busybox:latest")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.txt"), "from the pipeline\n").unwrap();
    fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nARG TAG\nWORKDIR /app\nCOPY app.txt .\nRUN echo \"tag $TAG\" > tag.txt\n",
            reg.host()
        ),
    )
    .unwrap();
    dir
}

/// Runs a Kaniko pipeline command line through `executor`, as GitLab's
/// Kaniko template does, with only the environment a CI job has.
fn pipeline(executor: &Path, project: &Path, reg: &Registry, extra: &[&str]) -> Output {
    let docker_config = tempfile::tempdir().unwrap();
    fs::write(docker_config.path().join("config.json"), "{\"auths\":{}}").unwrap();
    let kaniko_dir = tempfile::tempdir().unwrap();
    let host = reg.host();
    Command::new(executor)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CI_PROJECT_DIR", project)
        .env("DOCKER_CONFIG", docker_config.path())
        .env("KANIKO_DIR", kaniko_dir.path())
        .env("TAG", "1.0")
        .args(["--context", &project.display().to_string()])
        .args([
            "--dockerfile",
            &project.join("Dockerfile").display().to_string(),
        ])
        .args(["--destination", &format!("{host}/app:1.0")])
        .arg("--cache=true")
        .arg(format!("--cache-repo={host}/cache"))
        .args(["--insecure", "--insecure-pull"])
        .args(["--build-arg", "TAG"])
        .args(["--snapshotMode=redo", "--use-new-run", "--cleanup"])
        .arg("--whitelist-var-run=false")
        .args(["--log-format", "text"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_kaniko_pipeline_command_line_builds_and_pushes_through_executor() {
    let reg = Registry::plain().unwrap();
    let project = project(&reg);
    let executor = renamed("executor");

    let cold = pipeline(&executor.path, project.path(), &reg, &[]);
    let log = text(&cold);
    assert!(cold.status.success(), "{log}");
    let img = Flattened::from_registry(&reg, "app:1.0").unwrap();
    assert_eq!(
        img.text("/app/app.txt").as_deref(),
        Some("from the pipeline\n")
    );
    // `--build-arg TAG` took the value from the job's environment.
    assert_eq!(img.text("/app/tag.txt").as_deref(), Some("tag 1.0\n"));
    // The flags that mean nothing in kiln get one line between them.
    let notes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no effect in kiln"))
        .collect();
    assert_eq!(notes.len(), 1, "{log}");
    for flag in [
        "--snapshot-mode",
        "--use-new-run",
        "--cleanup",
        "--ignore-var-run",
    ] {
        assert!(notes[0].contains(flag), "{}", notes[0]);
    }

    // The next pipeline, on a fresh runner, takes the RUN step from the cache.
    let warm = pipeline(&executor.path, project.path(), &reg, &[]);
    let log = text(&warm);
    assert!(warm.status.success(), "{log}");
    assert!(
        log.lines().any(|l| l.contains("step 5: CACHED")),
        "the RUN on line 5 comes from the cache:\n{log}"
    );
}

#[test]
fn kaniko_no_push_and_the_deprecated_tar_path_spelling() {
    let reg = Registry::plain().unwrap();
    let project = project(&reg);
    let executor = renamed("executor");
    let out_dir = tempfile::tempdir().unwrap();
    let tar = out_dir.path().join("image.tar");
    let out = Command::new(&executor.path)
        .env("KANIKO_NO_PUSH", "true")
        .env("TAG", "2.0")
        .arg(format!("--context=dir://{}", project.path().display()))
        .args(["-d", &format!("{}/app:2.0", reg.host())])
        .arg(format!("--tarPath={}", tar.display()))
        .args(["--insecure-pull", "--customPlatform=linux/amd64"])
        .arg(format!(
            "--kaniko-dir={}",
            out_dir.path().join("work").display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        fs::metadata(&tar).unwrap().len() > 0,
        "the tarball is written"
    );
    assert!(
        Flattened::from_registry(&reg, "app:2.0").is_err(),
        "KANIKO_NO_PUSH=true: nothing pushed"
    );
}

#[test]
fn executor_help_lists_every_kaniko_flag_with_its_meaning() {
    let executor = renamed("executor");
    let out = Command::new(&executor.path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = help.lines().collect();
    let names = |line: &str, flag: &str| line.split([' ', ',', '[', ']', '=']).any(|w| w == flag);
    for flag in KANIKO_FLAGS {
        let i = lines
            .iter()
            .position(|l| names(l, flag))
            .unwrap_or_else(|| panic!("{flag} is not in `executor --help`:\n{help}"));
        let line = lines[i].trim_start();
        // A deprecated spelling is listed as an alias on its flag's entry,
        // `[alias: --old]` or `[aliases: --old, --other]`, possibly wrapped
        // onto a line of its own.
        let in_alias_list = line
            .split_once("[alias")
            .is_some_and(|(_, aliases)| names(aliases, flag));
        if in_alias_list || line.contains(&format!("{flag}]")) {
            continue;
        }
        // The description follows on the same line, or on the next ones.
        let same_line = line.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
        let next_line = lines
            .get(i + 1)
            .map(|l| l.trim())
            .is_some_and(|l| !l.is_empty() && !l.starts_with('-'));
        assert!(
            same_line || next_line,
            "{flag} has no description: {line:?}"
        );
    }
}

#[test]
fn kiln_executor_is_the_same_command() {
    let reg = Registry::plain().unwrap();
    let project = project(&reg);
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(cargo_bin("kiln"))
        .args(["executor", "--no-push", "--context"])
        .arg(project.path())
        .args(["--insecure-pull", "--kiln-dir"])
        .arg(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("build summary"), "{}", text(&out));
}

#[test]
fn warmer_takes_kaniko_warmer_command_lines() {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let warmer = renamed("warmer");
    let cache = tempfile::tempdir().unwrap();
    let image = format!("{}/busybox:latest", reg.host());
    let out = Command::new(&warmer.path)
        .args(["--cache-dir", &cache.path().display().to_string()])
        .args(["--image", &image, "--insecure-pull"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cached as sha256:"), "{}", text(&out));
    assert!(fs::read_dir(cache.path()).unwrap().count() > 0);

    let help = Command::new(&warmer.path).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for flag in [
        "--image",
        "--cache-dir",
        "--dockerfile",
        "--cache-ttl",
        "--force",
        "--customPlatform",
        "--registry-map",
        "--registry-mirror",
        "--skip-default-registry-fallback",
        "--verbosity",
        "--log-format",
        "--log-timestamp",
    ] {
        assert!(
            help.contains(flag),
            "{flag} missing from `warmer --help`:\n{help}"
        );
    }
}

/// A warmer step as a Kaniko pipeline writes it: Go-style booleans with `=`,
/// the deprecated `--customPlatform`, a registry map and a Docker Hub mirror
/// (both pointing at the test registry, so nothing reaches the names given),
/// and Kaniko's logging flags.
#[test]
fn warmer_takes_go_booleans_registry_maps_and_logging_flags() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox().unwrap();
    base.push_to(&reg, "busybox:latest").unwrap();
    // Where a Docker Hub mirror serves `busybox`.
    base.push_to(&reg, "library/busybox:latest").unwrap();
    let warmer = renamed("warmer");
    let cache = tempfile::tempdir().unwrap();
    let warm = |force: &str| {
        let out = Command::new(&warmer.path)
            .env_remove("KANIKO_REGISTRY_MAP")
            .arg(format!("--cache-dir={}", cache.path().display()))
            .args(["--image", "mapped.invalid/busybox:latest"])
            .args(["--image", "busybox:latest"])
            .arg(format!("--registry-map=mapped.invalid={}", reg.host()))
            .arg(format!("--registry-mirror={}", reg.host()))
            .arg("--skip-default-registry-fallback=true")
            .args(["--insecure-pull", "--customPlatform=linux/amd64"])
            .args(["--log-format=text", "--log-timestamp", "--verbosity=debug"])
            .arg(force)
            .output()
            .unwrap();
        assert!(out.status.success(), "{force}: {}", text(&out));
        out
    };
    let stdout = |out: &Output| String::from_utf8_lossy(&out.stdout).to_string();

    let first = warm("--force=true");
    let listed = stdout(&first);
    assert_eq!(listed.matches(" cached as sha256:").count(), 2, "{listed}");
    assert_eq!(listed.matches("already cached").count(), 0, "{listed}");
    assert!(
        listed.contains("mapped.invalid/busybox:latest cached as"),
        "{listed}"
    );
    // --log-timestamp: every log line starts with the time.
    let log = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(!log.is_empty(), "debug logging says something");
    for line in log.lines() {
        let first = line.split(' ').next().unwrap_or_default();
        assert!(
            time::OffsetDateTime::parse(first, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "not stamped: {line:?}"
        );
        assert!(
            !line.contains('\x1b'),
            "text logs are not coloured: {line:?}"
        );
    }

    // --force=false keeps the fresh copies; --force=true pulls them again.
    let kept = stdout(&warm("--force=false"));
    assert_eq!(kept.matches("already cached").count(), 2, "{kept}");
    let forced = stdout(&warm("--force=true"));
    assert_eq!(forced.matches("already cached").count(), 0, "{forced}");
    assert_eq!(forced.matches(" cached as sha256:").count(), 2, "{forced}");
}

/// The repository root, where kiln's own Dockerfile is.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn kilns_own_dockerfile_passes_the_front_end() {
    let root = repo_root();
    let dockerfile = root.join("Dockerfile");
    let ast = Command::new(cargo_bin("kiln"))
        .args(["debug", "dump-ast"])
        .arg(&dockerfile)
        .output()
        .unwrap();
    assert!(ast.status.success(), "{}", text(&ast));
    let ast = String::from_utf8_lossy(&ast.stdout).to_string();
    // Kaniko's layout: the binary at /kaniko/executor, entered there.
    assert!(ast.contains("ln -s /kiln /out/kaniko/executor"), "{ast}");
    assert!(ast.contains("(entrypoint \"/kaniko/executor\")"), "{ast}");
    assert!(ast.contains("ca-certificates.crt"), "{ast}");
    for stage in ["\"build\"", "\"debug\"", "\"release\""] {
        assert!(ast.contains(stage), "stage {stage}: {ast}");
    }

    // The whole check (stages, targets, flags) passes; the build then stops
    // at the first registry request, since the base images are not here.
    for target in [None, Some("debug"), Some("release")] {
        let work = tempfile::tempdir().unwrap();
        let mut build = Command::new(cargo_bin("kiln"));
        build
            .args(["build", "--no-push", "--log-format=text", "--context"])
            .arg(&root)
            .args(["--build-arg", "RUST_IMAGE=127.0.0.1:1/rust:1.85"])
            .args(["--build-arg", "BUSYBOX_IMAGE=127.0.0.1:1/busybox:1"])
            .arg("--kiln-dir")
            .arg(work.path());
        if let Some(target) = target {
            build.args(["--target", target]);
        }
        let out = build.output().unwrap();
        let log = text(&out);
        assert_eq!(out.status.code(), Some(4), "{target:?}: {log}");
        assert!(log.contains("pulling 127.0.0.1:1/"), "{target:?}: {log}");
        assert!(!log.contains("Dockerfile:"), "{target:?}: {log}");
    }
}

#[test]
fn completions_and_man_pages_come_from_the_command_line() {
    let run = |args: &[&str]| {
        let out = Command::new(cargo_bin("kiln")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        for flag in ["cache-repo", "destination", "older-than"] {
            assert!(script.contains(flag), "{shell}: {flag}");
        }
    }
    let page = run(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH kiln"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", &dir.path().display().to_string()]);
    let build = fs::read_to_string(dir.path().join("kiln-build.1")).unwrap();
    assert!(build.contains("cache\\-repo"), "{build}");
    assert!(dir.path().join("kiln-cache-prune.1").exists());
}
