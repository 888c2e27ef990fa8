//! The flags of the maintained Kaniko fork (osscontainertools/kaniko v1.28)
//! end to end against a real registry: manifest annotations, the manifest
//! format, a dry run, the built-in credential sources, the filesystem flags
//! kiln accepts without effect, and `--tar-path` without a destination.

use crate::build_common;

use assert_cmd::cargo::cargo_bin;
use build_common::Kiln;
use kiln_testkit::{skopeo_inspect_raw, BaseImage, Registry};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// A context whose Dockerfile builds on `base` with a RUN step.
fn context(base: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo built > /built.txt\n"),
    )
    .unwrap();
    dir
}

/// `kiln build` of `ctx` with an empty Docker config and none of the fork's
/// variables inherited, plus `envs` and `args`.
fn kiln(ctx: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut k = Kiln::build(ctx).empty_docker_config();
    for var in [
        "FF_KANIKO_NO_PROPAGATE_ANNOTATIONS",
        "KANIKO_PRINT_PLAN",
        "KANIKO_PRE_CLEANUP",
        "KANIKO_PRESERVE_CONTEXT",
    ] {
        k = k.env_remove(var);
    }
    for (var, value) in envs {
        k = k.env(var, value);
    }
    k.args(["--log-format=text", "--insecure", "--insecure-pull"])
        .args(args)
        .output()
}

fn manifest(reg: &Registry, name: &str) -> Value {
    skopeo_inspect_raw(&reg.image_ref(name), false).unwrap()
}

#[test]
fn annotations_are_set_and_the_base_images_are_dropped_unless_asked() {
    let reg = Registry::plain_with_busybox().unwrap();
    // A base whose manifest carries annotations, as ubuntu's does.
    let base_ctx = context(&reg.image_ref("busybox:latest"));
    let base = reg.image_ref("base:1");
    let out = kiln(
        base_ctx.path(),
        &[],
        &[
            "-d",
            &base,
            "--annotation",
            "org.opencontainers.image.version=24.04",
            "--annotation=org.opencontainers.image.url=https://base.example",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        manifest(&reg, "base:1")["annotations"],
        json!({"org.opencontainers.image.version": "24.04",
               "org.opencontainers.image.url": "https://base.example"})
    );

    let ctx = context(&base);
    let annotate = [
        "--annotation",
        "org.opencontainers.image.version=2.0",
        "--annotation",
        "team=build=tools",
    ];
    let app = reg.image_ref("app:1");
    let mut args = vec!["-d", app.as_str()];
    args.extend(annotate);
    let out = kiln(ctx.path(), &[], &args);
    assert!(out.status.success(), "{}", text(&out));
    // As the fork and BuildKit: the base image's annotations do not follow.
    assert_eq!(
        manifest(&reg, "app:1")["annotations"],
        json!({"org.opencontainers.image.version": "2.0", "team": "build=tools"})
    );

    // FF_KANIKO_NO_PROPAGATE_ANNOTATIONS=false keeps them; ours still win.
    let app2 = reg.image_ref("app:2");
    let mut args = vec!["-d", app2.as_str()];
    args.extend(annotate);
    let out = kiln(
        ctx.path(),
        &[("FF_KANIKO_NO_PROPAGATE_ANNOTATIONS", "false")],
        &args,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        manifest(&reg, "app:2")["annotations"],
        json!({"org.opencontainers.image.version": "2.0",
               "org.opencontainers.image.url": "https://base.example",
               "team": "build=tools"})
    );

    // Without --annotation the manifest has none at all.
    let out = kiln(ctx.path(), &[], &["-d", &reg.image_ref("app:3")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(manifest(&reg, "app:3").get("annotations"), None);
}

#[test]
fn image_format_picks_the_manifest_media_types() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&reg.image_ref("busybox:latest"));
    let types = |name: &str| {
        let m = manifest(&reg, name);
        let layers: Vec<Value> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].clone())
            .collect();
        (
            m["mediaType"].clone(),
            m["config"]["mediaType"].clone(),
            layers,
        )
    };
    let docker = (
        json!("application/vnd.docker.distribution.manifest.v2+json"),
        json!("application/vnd.docker.container.image.v1+json"),
        vec![json!("application/vnd.docker.image.rootfs.diff.tar.gzip"); 2],
    );
    let oci = (
        json!("application/vnd.oci.image.manifest.v1+json"),
        json!("application/vnd.oci.image.config.v1+json"),
        vec![json!("application/vnd.oci.image.layer.v1.tar+gzip"); 2],
    );

    // Unset: the base image's (an OCI one here).
    let out = kiln(ctx.path(), &[], &["-d", &reg.image_ref("app:inherit")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(types("app:inherit"), oci);

    let out = kiln(
        ctx.path(),
        &[],
        &["-d", &reg.image_ref("app:docker"), "--image-format=docker"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(types("app:docker"), docker);

    // And back: a Docker base built into an OCI image.
    let docker_ctx = context(&reg.image_ref("app:docker"));
    let out = kiln(
        docker_ctx.path(),
        &[],
        &["-d", &reg.image_ref("app:oci"), "--image-format", "oci"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (m, c, layers) = types("app:oci");
    assert_eq!((m, c), (oci.0, oci.1));
    assert!(layers.iter().all(|l| l == &oci.2[0]), "{layers:?}");

    // zstd layers have no Docker media type: refused before any work.
    let out = kiln(
        ctx.path(),
        &[],
        &[
            "-d",
            &reg.image_ref("app:zstd"),
            "--image-format=docker",
            "--compression=zstd",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--image-format"), "{}", text(&out));
}

#[test]
fn dryrun_prints_the_plan_and_pulls_builds_pushes_and_writes_nothing() {
    let reg = Registry::plain().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    // The base does not exist: a dry run never asks for it.
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {} AS build\nRUN echo compiled > /out\n\
             FROM {}\nCOPY --from=build /out /out\nRUN cat /out\n",
            reg.image_ref("missing:1"),
            reg.image_ref("missing:2")
        ),
    )
    .unwrap();
    let outputs = tempfile::tempdir().unwrap();
    let tar = outputs.path().join("image.tar");
    let digest = outputs.path().join("digest");
    let out = kiln(
        ctx.path(),
        &[("KANIKO_PRESERVE_CONTEXT", "1")],
        &[
            "-d",
            &reg.image_ref("app:1"),
            "--dryrun",
            "--tar-path",
            tar.to_str().unwrap(),
            "--digest-file",
            digest.to_str().unwrap(),
            "--materialize",
            "--pre-cleanup=true",
        ],
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("build plan: 2 stage(s), target stage-1"),
        "{plan}"
    );
    assert!(plan.contains("level 0: stage build from"), "{plan}");
    assert!(plan.contains("level 1: stage stage-1 from"), "{plan}");
    assert!(plan.contains("   4: COPY --from=build /out /out"), "{plan}");
    assert!(plan.contains("   5: RUN cat /out"), "{plan}");
    assert!(!tar.exists() && !digest.exists(), "nothing written: {log}");
    assert!(
        skopeo_inspect_raw(&reg.image_ref("app:1"), false).is_err(),
        "nothing pushed"
    );
    // The bases do not exist, so a run that asked for one would have failed.
    assert!(!log.contains("not found"), "no base asked for: {log}");

    // The filesystem flags are accepted, each with one line saying why.
    for flag in ["--materialize", "--pre-cleanup", "--preserve-context"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("{flag}: kiln")))
            .collect();
        assert_eq!(lines.len(), 1, "{flag}: {log}");
    }
}

#[test]
fn kaniko_print_plan_prints_it_and_builds() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&reg.image_ref("busybox:latest"));
    let out = kiln(
        ctx.path(),
        &[("KANIKO_PRINT_PLAN", "true")],
        &["-d", &reg.image_ref("app:1")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("   2: RUN echo built > /built.txt"),
        "{}",
        text(&out)
    );
    assert!(skopeo_inspect_raw(&reg.image_ref("app:1"), false).is_ok());
}

#[test]
fn credential_helpers_choose_where_registry_credentials_come_from() {
    let password = "s3cret-ci-job-token";
    let reg = Registry::builder()
        .auth("ci-user", password)
        .start()
        .unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = context(&reg.image_ref("busybox:latest"));
    let host = reg.host();
    let gitlab = [
        ("CI_REGISTRY", host.as_str()),
        ("CI_REGISTRY_USER", "ci-user"),
        ("CI_REGISTRY_PASSWORD", password),
    ];
    // The fork's `env` source: KANIKO_<HOST>_USER/_PASSWORD, dots as `_`.
    let env_user = format!("KANIKO_{}_USER", host.replace('.', "_"));
    let env_password = format!("KANIKO_{}_PASSWORD", host.replace('.', "_"));
    let env_source = [
        (env_user.as_str(), "ci-user"),
        (env_password.as_str(), password),
    ];
    let build = |envs: &[(&str, &str)], tag: &str, helpers: &[&str]| {
        let dest = reg.image_ref(&format!("app:{tag}"));
        let mut args = vec!["-d", dest.as_str()];
        args.extend(helpers);
        let out = kiln(ctx.path(), envs, &args);
        assert!(!text(&out).contains(password), "{}", text(&out));
        out
    };

    // Every source by default: a GitLab job's variables are enough.
    let out = build(&gitlab, "default", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = build(&gitlab, "gitlab", &["--credential-helpers=gitlab"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = build(&env_source, "env", &["--credential-helpers", "env"]);
    assert!(out.status.success(), "{}", text(&out));

    // Not selected, not asked: the registry refuses the anonymous pull.
    let out = build(&gitlab, "env-only", &["--credential-helpers=env"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = build(&gitlab, "none", &["--credential-helpers="]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains(&host), "{}", text(&out));
    // A CI_REGISTRY naming another port of the same host is not this registry.
    let elsewhere = format!("127.0.0.1:{}", reg.port() + 1);
    let other = [
        ("CI_REGISTRY", elsewhere.as_str()),
        ("CI_REGISTRY_USER", "ci-user"),
        ("CI_REGISTRY_PASSWORD", password),
    ];
    let out = build(&other, "other-port", &["--credential-helpers=gitlab"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));

    // A name the fork does not have is a usage error naming it.
    let out = build(&gitlab, "typo", &["--credential-helpers=gitlab,vault"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("\"vault\""), "{}", text(&out));
}

#[test]
fn tar_path_without_a_destination_is_tagged_kiln_build() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&reg.image_ref("busybox:latest"));
    let outputs = tempfile::tempdir().unwrap();
    let repo_tags = |tar: &Path| -> Value {
        let mut archive = tar::Archive::new(fs::File::open(tar).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_str() == Some("manifest.json") {
                let m: Value = serde_json::from_reader(&mut entry).unwrap();
                return m[0]["RepoTags"].clone();
            }
        }
        panic!("no manifest.json in {}", tar.display());
    };

    let bare = outputs.path().join("bare.tar");
    let out = kiln(
        ctx.path(),
        &[],
        &["--no-push", "--tar-path", bare.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(repo_tags(&bare), json!(["kiln-build:latest"]));

    let named = outputs.path().join("named.tar");
    let dest = reg.image_ref("team/app:7");
    let out = kiln(
        ctx.path(),
        &[],
        &[
            "--no-push",
            "-d",
            &dest,
            "--tar-path",
            named.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(repo_tags(&named), json!([dest]));
}

#[test]
fn debug_options_shows_what_the_fork_flags_resolved_to() {
    let ctx = context("scratch");
    let out = Command::new(cargo_bin("kiln"))
        .env_remove("FF_KANIKO_NO_PROPAGATE_ANNOTATIONS")
        .env_remove("KANIKO_PRINT_PLAN")
        .env_remove("KANIKO_PRESERVE_CONTEXT")
        .env("KANIKO_PRE_CLEANUP", "true")
        .args(["debug", "options", "--no-push", "--context"])
        .arg(ctx.path())
        .args(["--annotation", "a=b", "--image-format=oci", "--dryrun"])
        .args(["--credential-helpers=ecr", "--credential-helpers=gitlab"])
        .args(["--materialize", "--target=app,test", "--target", "lint"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let o: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        o["output"]["annotations"],
        json!({"added": {"a": "b"}, "inherit_base": false})
    );
    assert_eq!(o["output"]["image_format"], json!("oci"));
    assert_eq!(o["dryrun"], json!(true));
    assert_eq!(o["target"], json!("app"));
    assert_eq!(o["extra_targets"], json!(["test", "lint"]));
    assert_eq!(
        o["registry"]["credentials"]["builtin_helpers"],
        json!(["ecr", "gitlab"])
    );
    assert_eq!(
        o["host_filesystem"],
        json!({"materialize": true, "pre_cleanup": true, "preserve_context": false})
    );
}

/// The fork's multi-target builds: `--target app,test` (or repeated) builds
/// both, pushes the first; a failing test stage fails the build.
#[test]
fn several_targets_build_each_and_push_the_first() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {} AS app\nRUN echo app > /app.txt\n\
             FROM app AS test\nARG EXPECT\nRUN test -f /app.txt && test \"$(cat /app.txt)\" = \"$EXPECT\"\n",
            reg.image_ref("busybox:latest")
        ),
    )
    .unwrap();
    let build = |expect: &str, tag: &str, targets: &[&str]| {
        let dest = reg.image_ref(&format!("app:{tag}"));
        let mut args = vec!["-d", dest.as_str(), "--build-arg", "EXPECT"];
        args.extend(targets);
        kiln(ctx.path(), &[("EXPECT", expect)], &args)
    };
    // The test stage passes: app is pushed, without the test stage's layer.
    let out = build("app", "1", &["--target=app,test"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stage test"), "{}", text(&out));
    let layers = manifest(&reg, "app:1")["layers"].as_array().unwrap().len();
    assert_eq!(layers, 2, "busybox and the app's RUN");
    // It fails: so does the build, and nothing is pushed.
    let out = build("other", "2", &["--target", "app", "--target", "test"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(skopeo_inspect_raw(&reg.image_ref("app:2"), false).is_err());
    // Only app: the test stage is not built.
    let out = build("other", "3", &["--target=app"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The fork's `executor login`: credentials stored in `$DOCKER_CONFIG`
/// are the ones the next build uses; the password is never printed.
#[test]
fn executor_login_stores_credentials_the_build_then_uses() {
    let password = "login-s3cret";
    let reg = Registry::builder()
        .auth("deployer", password)
        .start()
        .unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let executor = executor_dir.path().join("executor");
    std::os::unix::fs::symlink(cargo_bin("kiln"), &executor).unwrap();

    let mut login = Command::new(&executor)
        .env("DOCKER_CONFIG", docker_config.path())
        .args(["login", &reg.host(), "-u", "deployer", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = login.stdin.take().unwrap();
        writeln!(stdin, "{password}").unwrap();
    }
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(password), "{}", text(&out));
    let config: Value =
        serde_json::from_slice(&fs::read(docker_config.path().join("config.json")).unwrap())
            .unwrap();
    assert!(config["auths"][reg.host()]["auth"].is_string(), "{config}");

    let ctx = context(&reg.image_ref("busybox:latest"));
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(&executor)
        .env("DOCKER_CONFIG", docker_config.path())
        .args(["--context", ctx.path().to_str().unwrap()])
        .args([
            "-d",
            &reg.image_ref("app:1"),
            "--insecure",
            "--insecure-pull",
        ])
        .args(["--credential-helpers=", "--log-format=text"])
        .arg(format!("--kiln-dir={}", work.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Neither or both password options is a usage error.
    for extra in [&[][..], &["-p", "x", "--password-stdin"][..]] {
        let out = Command::new(&executor)
            .env("DOCKER_CONFIG", docker_config.path())
            .args(["login", &reg.host(), "-u", "deployer"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    }
}

/// The fork's `executor push`: an image saved with `--tar-path` (or an OCI
/// layout, or a `docker save` tarball) is pushed without building again.
#[test]
fn executor_push_sends_a_saved_image_without_building() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&reg.image_ref("busybox:latest"));
    let saved = tempfile::tempdir().unwrap();
    let tar = saved.path().join("image.tar");
    let layout = saved.path().join("layout");
    let built_digest = saved.path().join("built-digest");
    let out = kiln(
        ctx.path(),
        &[],
        &[
            "--no-push",
            "--tar-path",
            tar.to_str().unwrap(),
            "--oci-layout-path",
            layout.to_str().unwrap(),
            "--annotation=stage=scanned",
            "--digest-file",
            built_digest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let push = |path: &Path, dest: &str, digest_file: &Path| {
        Command::new(cargo_bin("kiln"))
            .arg("push")
            .arg(path)
            .args([
                "-d",
                &reg.image_ref(dest),
                "--insecure",
                "--log-format=text",
            ])
            .arg("--digest-file")
            .arg(digest_file)
            .output()
            .unwrap()
    };

    // The tarball: the very image the build made, annotations included.
    let pushed_digest = saved.path().join("pushed-digest");
    let out = push(&tar, "app:scanned", &pushed_digest);
    assert!(out.status.success(), "{}", text(&out));
    let digest = fs::read_to_string(&pushed_digest).unwrap();
    assert_eq!(digest, fs::read_to_string(&built_digest).unwrap());
    let summary = kiln_testkit::skopeo_inspect(&reg.image_ref("app:scanned"), false).unwrap();
    assert_eq!(summary["Digest"], json!(digest));
    assert_eq!(
        manifest(&reg, "app:scanned")["annotations"],
        json!({"stage": "scanned"})
    );

    // The OCI layout directory.
    let out = push(&layout, "app:layout", &saved.path().join("d2"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(manifest(&reg, "app:layout")["layers"].is_array());

    // A `docker save` tarball of the older kind (manifest.json, layer tars).
    let archive = saved.path().join("docker-save.tar");
    kiln_testkit::skopeo_copy(
        &format!("docker://{}", reg.image_ref("app:scanned")),
        &format!("docker-archive:{}", archive.display()),
    )
    .unwrap();
    let out = push(&archive, "app:from-docker-save", &saved.path().join("d3"));
    assert!(out.status.success(), "{}", text(&out));
    let from_save =
        kiln_testkit::skopeo_inspect(&reg.image_ref("app:from-docker-save"), false).unwrap();
    assert_eq!(from_save["Layers"].as_array().unwrap().len(), 2);

    // A tarball whose blob is a symlink to a file of this machine is refused.
    let evil_dir = tempfile::tempdir().unwrap();
    let blobs = evil_dir.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let manifest_json = r#"[{"Config":"config.json","RepoTags":["x:1"],"Layers":["layer.tar"]}]"#;
    fs::write(evil_dir.path().join("manifest.json"), manifest_json).unwrap();
    fs::write(evil_dir.path().join("config.json"), "{}").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", evil_dir.path().join("layer.tar")).unwrap();
    let evil = saved.path().join("evil.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&evil)
        .arg("-C")
        .arg(evil_dir.path())
        .args(["manifest.json", "config.json", "layer.tar"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = push(&evil, "app:evil", &saved.path().join("d4"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("layer.tar: not a file inside the image"),
        "{}",
        text(&out)
    );
    assert!(skopeo_inspect_raw(&reg.image_ref("app:evil"), false).is_err());
}

/// The fork's warmer asks every built-in credential source too: in a GitLab
/// job it pulls from the job's registry with the job's variables.
#[test]
fn the_warmer_pulls_with_the_gitlab_jobs_credentials() {
    let password = "warm-job-token";
    let reg = Registry::builder()
        .auth("gitlab-ci-token", password)
        .start()
        .unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let warm = |vars: &[(&str, &str)]| {
        let mut c = Command::new(cargo_bin("kiln"));
        c.env("DOCKER_CONFIG", docker_config.path())
            .env("HOME", docker_config.path())
            .env_remove("CI_REGISTRY")
            .args(["warm", "--insecure-pull", "--force", "--cache-dir"])
            .arg(cache.path())
            .args(["--image", &reg.image_ref("busybox:latest")]);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = warm(&[]);
    assert!(!out.status.success(), "anonymous pulls are refused");
    let host = reg.host();
    let out = warm(&[
        ("CI_REGISTRY", host.as_str()),
        ("CI_REGISTRY_USER", "gitlab-ci-token"),
        ("CI_REGISTRY_PASSWORD", password),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cached as sha256:"), "{}", text(&out));
    assert!(!text(&out).contains(password));
}
