//! The `kiln` binary, run for real in temporary directories.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

/// Environment variables kiln reads; cleared so the host's settings do not leak in.
const KILN_ENV: &[&str] = &[
    "KANIKO_NO_PUSH",
    "KANIKO_DIR",
    "KANIKO_REGISTRY_MIRROR",
    "KANIKO_REGISTRY_MAP",
];

fn kiln() -> Command {
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    for name in KILN_ENV {
        cmd.env_remove(name);
    }
    cmd
}

/// A context directory holding a valid Dockerfile.
fn context() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
    dir
}

fn ctx_arg(dir: &TempDir) -> String {
    dir.path().display().to_string()
}

/// Runs `kiln debug options ARGS` in a fresh context and returns the resolved options.
fn options(args: &[&str]) -> Value {
    options_with_env(args, &[])
}

fn options_with_env(args: &[&str], env: &[(&str, &str)]) -> Value {
    let dir = context();
    let mut cmd = kiln();
    cmd.args(["debug", "options", "-c", &ctx_arg(&dir)])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).expect("debug options prints JSON")
}

/// Runs `kiln build ARGS` in a fresh context and expects a usage error mentioning `needle`.
fn usage_error(args: &[&str], needle: &str) {
    let dir = context();
    kiln()
        .args(["build", "-c", &ctx_arg(&dir)])
        .args(args)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(needle));
}

#[test]
fn help_lists_every_kaniko_flag() {
    let out = kiln().args(["build", "--help"]).assert().success();
    let help = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    // Help text is wrapped to the terminal width; compare with whitespace collapsed.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let flags = [
        "--context",
        "-c,",
        "--context-sub-path",
        "--dockerfile",
        "-f,",
        "--destination",
        "-d,",
        "--no-push",
        "--no-push-cache",
        "--tar-path",
        "--tarPath",
        "--oci-layout-path",
        "--digest-file",
        "--image-name-with-digest-file",
        "--image-name-tag-with-digest-file",
        "--build-arg",
        "--target",
        "--label",
        "--skip-unused-stages",
        "--custom-platform",
        "--customPlatform",
        "--reproducible",
        "--compression",
        "--compression-level",
        "--compressed-caching",
        "--push-retry",
        "--image-download-retry",
        "--insecure",
        "--insecure-pull",
        "--insecure-registry",
        "--skip-tls-verify",
        "--skip-tls-verify-pull",
        "--skip-tls-verify-registry",
        "--registry-mirror",
        "--registry-map",
        "--skip-default-registry-fallback",
        "--registry-certificate",
        "--registry-client-cert",
        "--verbosity",
        "-v,",
        "--log-format",
        "--log-timestamp",
        "--kiln-dir",
        "--kaniko-dir",
        "--cache",
        "--cache-repo",
        "--cache-dir",
        "--cache-ttl",
        "--cache-copy-layers",
        "--cache-run-layers",
        "--secret",
        "--isolation",
        "--snapshot-mode",
        "--snapshotMode",
        "--use-new-run",
        "--single-snapshot",
        "--cleanup",
        "--force",
        "--whitelist-var-run",
        "--ignore-var-run",
        "--ignore-path",
        "--git",
        "--image-fs-extract-retry",
        "--push-ignore-immutable-tag-errors",
        "--skip-push-permission-check",
        "--force-build-metadata",
    ];
    let missing: Vec<_> = flags.iter().filter(|f| !help.contains(*f)).collect();
    assert!(missing.is_empty(), "missing from --help: {missing:?}");
    for default in [
        "/workspace/",
        "Dockerfile",
        "/cache",
        "336h",
        "info",
        "color",
        "gzip",
    ] {
        assert!(
            help.contains(&format!("[default: {default}]")),
            "default {default}"
        );
    }
}

#[test]
fn go_style_booleans_parse() {
    for (spelling, expected) in [
        ("--cache", true),
        ("--cache=true", true),
        ("--cache=false", false),
        ("--cache=1", true),
        ("--cache=0", false),
        ("--cache=t", true),
        ("--cache=F", false),
        ("--cache=TRUE", true),
        ("--cache=True", true),
        ("--cache=FALSE", false),
        ("--cache=False", false),
    ] {
        let json = options(&["--no-push", "--cache-repo", "r.io/cache", spelling]);
        assert_eq!(json["cache"]["enabled"], expected, "{spelling}");
    }
    let json = options(&["--no-push=T", "--cache-run-layers=false", "--reproducible"]);
    assert_eq!(json["output"]["push"], false);
    assert_eq!(json["cache"]["run_layers"], false);
    assert_eq!(json["reproducible"], true);
    usage_error(&["--no-push=yes"], "is not a boolean");
}

#[test]
fn a_boolean_flag_never_swallows_the_next_word() {
    // pflag semantics: `--no-push foo` sets no-push and leaves `foo` as an argument,
    // which `build` does not take.
    usage_error(&["--no-push", "foo"], "unexpected argument 'foo'");
    usage_error(&["--no-push", "false"], "unexpected argument 'false'");
}

#[test]
fn durations_take_go_syntax() {
    let ttl = |arg: &str| options(&["--no-push", "--cache-ttl", arg])["cache"]["ttl"].clone();
    assert_eq!(ttl("1h30m")["secs"], 5400);
    assert_eq!(ttl("1.5h")["secs"], 5400);
    assert_eq!(ttl("90s")["secs"], 90);
    assert_eq!(ttl("300ms")["nanos"], 300_000_000);
    assert_eq!(options(&["--no-push"])["cache"]["ttl"]["secs"], 336 * 3600);
    usage_error(&["--no-push", "--cache-ttl", "7d"], "unknown unit \"d\"");
    usage_error(&["--no-push", "--cache-ttl=10"], "missing unit");
}

#[test]
fn dump_ast_prints_the_parse_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Dockerfile");
    std::fs::write(&path, "FROM alpine AS base\nRUN echo hi\n").unwrap();
    kiln()
        .args(["debug", "dump-ast"])
        .arg(&path)
        .assert()
        .success()
        .stdout("(from \"alpine\" \"AS\" \"base\")\n(run \"echo hi\")\n");
}

#[test]
fn dump_ast_reports_file_and_line_on_a_parse_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Dockerfile");
    std::fs::write(&path, "FROM alpine\n\nLABEL onlykey\n").unwrap();
    let expected = format!("{}:3: LABEL must have two arguments\n", path.display());
    kiln()
        .args(["debug", "dump-ast"])
        .arg(&path)
        .assert()
        .code(3)
        .stdout("")
        .stderr(expected);
}

#[test]
fn bare_build_arg_takes_the_environment_value() {
    let json = options_with_env(
        &[
            "--no-push",
            "--build-arg",
            "FROM_ENV",
            "--build-arg",
            "SET=x=y",
            "--build-arg",
            "NOPE",
        ],
        &[("FROM_ENV", "hello world")],
    );
    let args = json["build_args"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> = args
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap(), kv["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("FROM_ENV", "hello world"), ("SET", "x=y"), ("NOPE", "")]
    );
}

#[test]
fn cache_repo_defaults_to_the_first_destination_plus_cache() {
    let json = options(&[
        "-d",
        "localhost:5000/team/app:v1",
        "-d",
        "other.io/x:1",
        "--cache",
    ]);
    assert_eq!(
        json["cache"]["repo"]["registry"],
        "localhost:5000/team/app/cache"
    );
    let json = options(&["-d", "busybox", "--cache"]);
    assert_eq!(
        json["cache"]["repo"]["registry"],
        "docker.io/library/busybox/cache"
    );
    let json = options(&[
        "-d",
        "r.io/app",
        "--cache",
        "--cache-repo",
        "r.io/elsewhere",
    ]);
    assert_eq!(json["cache"]["repo"]["registry"], "r.io/elsewhere");
}

#[test]
fn conflicting_or_missing_flags_are_rejected_before_work_starts() {
    usage_error(&[], "you must provide --destination, or use --no-push");
    usage_error(
        &["--no-push", "--cache"],
        "specify cache repo with --cache-repo",
    );
    usage_error(
        &["--no-push", "--image-name-with-digest-file", "names"],
        "--image-name-with-digest-file",
    );
    usage_error(
        &["--no-push", "--image-format", "v1"],
        "unknown image format",
    );
    usage_error(&["--no-push", "--annotation", "novalue"], "--annotation");
    usage_error(&["--no-push", "--credential-helpers", "vault"], "vault");
    usage_error(
        &["--no-push", "--compression-level", "10"],
        "out of range for gzip",
    );
    usage_error(
        &[
            "--no-push",
            "--compression",
            "zstd",
            "--compression-level",
            "0",
        ],
        "zstd",
    );
    usage_error(
        &["--no-push", "--compression", "lz4"],
        "unknown compression",
    );
    usage_error(&["--no-push", "-v", "loud"], "unknown verbosity");
    usage_error(&["--no-push", "-d", "Bad Name"], "--destination");
    usage_error(&["--no-push", "--label", "novalue"], "KEY=VALUE");
    usage_error(
        &["--no-push", "--registry-client-cert", "r.io=/c.pem"],
        "HOST=CERT,KEY",
    );
    usage_error(&["--no-push", "--dockerfile", "Missing"], "no Dockerfile");
    usage_error(&["--no-push", "--push-retry=-1"], "--push-retry");
}

#[test]
fn remote_contexts_resolve_to_their_sources() {
    let json = options_with_env(
        &[
            "--no-push",
            "-c",
            "git://github.com/org/repo.git#v1:app",
            "--git",
            "branch=main,recurse-submodules=true",
        ],
        &[],
    );
    let remote = &json["context"]["remote"];
    assert_eq!(remote["source"]["kind"], "git", "{json}");
    assert_eq!(remote["source"]["reference"], "v1");
    assert_eq!(remote["source"]["subdir"], "app");
    assert_eq!(remote["git"]["branch"], "main");
    assert_eq!(remote["git"]["recurse_submodules"], true);
    assert_eq!(json["dockerfile"]["in_context"], "Dockerfile");
    // Kaniko's hidden --bucket names a gs:// context, context.tar.gz by default.
    let json = options_with_env(&["--no-push", "-b", "my-bucket"], &[]);
    let source = &json["context"]["remote"]["source"];
    assert_eq!(source["kind"], "gcs", "{json}");
    assert_eq!(source["key"], "context.tar.gz");
    // A password in a context URL is never printed.
    let json = options_with_env(
        &["--no-push", "-c", "https://me:hunter2@git.example/r.git"],
        &[],
    );
    let shown = json["context"].to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("me:***@git.example"), "{shown}");
    usage_error(
        &["--no-push", "-c", "git://h/r.git", "--git", "depth=1"],
        "--git",
    );
    usage_error(&["--no-push", "-c", "ftp://h/ctx.tgz"], "unknown scheme");
}

#[test]
fn kaniko_environment_variables_apply() {
    let json = options_with_env(&[], &[("KANIKO_NO_PUSH", "true")]);
    assert_eq!(json["output"]["push"], false);
    let json = options_with_env(
        &["--no-push", "--registry-mirror", "m1.local"],
        &[
            ("KANIKO_REGISTRY_MIRROR", "m2.local;m3.local"),
            ("KANIKO_DIR", "/somewhere"),
        ],
    );
    assert_eq!(
        json["registry"]["mirrors"],
        serde_json::json!(["m1.local", "m2.local", "m3.local"])
    );
    assert_eq!(json["work_dir"], "/somewhere");
    let json = options_with_env(
        &["--no-push", "--kaniko-dir", "/flag"],
        &[("KANIKO_DIR", "/env")],
    );
    assert_eq!(json["work_dir"], "/flag");
}

#[test]
fn secret_contents_never_appear_in_output() {
    let dir = context();
    let out = kiln()
        .args(["debug", "options", "--no-push", "-c", &ctx_arg(&dir)])
        .args(["--secret", "id=token,env=MY_TOKEN"])
        .env("MY_TOKEN", "s3cr3t-value")
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("MY_TOKEN") && !stdout.contains("s3cr3t-value"));
}

#[test]
fn build_reports_dockerfile_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, "FROM scratch\nENV\\\n  ONLYKEY\n").unwrap();
    // The destination is unreachable: a Dockerfile error must end the run before any
    // registry is contacted.
    kiln()
        .args([
            "build",
            "-c",
            &ctx_arg(&dir),
            "-d",
            "127.0.0.1:1/never/used:tag",
        ])
        .assert()
        .code(3)
        .stderr(format!(
            "{}:2: ENV must have two arguments\n",
            dockerfile.display()
        ));
}

#[test]
fn kaniko_style_command_lines_imply_build() {
    let dir = context();
    let assert = kiln()
        .args(["--no-push", "--context", &ctx_arg(&dir)])
        .assert();
    // It got past flag resolution and the Dockerfile check to the build
    // itself, which stops at the COPY whose source the context lacks.
    assert
        .code(1)
        .stderr(predicate::str::contains("Dockerfile:2: COPY a /a"));
    usage_error(
        &["--context-sub-path", "../up", "--no-push"],
        "--context-sub-path",
    );
}

#[test]
fn dockerfile_is_found_as_given_or_inside_the_context() {
    let dir = context();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/Other.Dockerfile"), "FROM scratch\n").unwrap();
    let json = options(&["--no-push", "-f", "Dockerfile"]);
    assert!(json["dockerfile"]["file"]
        .as_str()
        .unwrap()
        .ends_with("/Dockerfile"));
    let out = kiln()
        .args(["debug", "options", "--no-push", "-c", &ctx_arg(&dir)])
        .args(["--context-sub-path", "sub", "-f", "Other.Dockerfile"])
        .assert()
        .success();
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let expected = dir.path().join("sub/Other.Dockerfile");
    assert_eq!(
        json["dockerfile"]["file"],
        Path::new(&expected).display().to_string()
    );
}

#[test]
fn version_prints_the_version() {
    kiln()
        .arg("version")
        .assert()
        .success()
        .stdout(format!("kiln {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn build_reports_every_front_end_problem_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, "FROM alpine\nFROMM b\nCOPY x\n").unwrap();
    let out = kiln()
        .args(["build", "--no-push", "-c", &ctx_arg(&dir)])
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    let file = dockerfile.display().to_string();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{file}:2: unknown instruction: FROMM")),
        "{stderr}"
    );
    assert!(lines[1].starts_with(&format!("{file}:3: ")), "{stderr}");
}

#[test]
fn build_checks_the_target_stage_exists() {
    let dir = context();
    kiln()
        .args([
            "build",
            "--no-push",
            "-c",
            &ctx_arg(&dir),
            "--target",
            "nope",
        ])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("nope"));
}

#[test]
fn unused_stages_are_skipped_unless_turned_off() {
    assert_eq!(options(&["--no-push"])["skip_unused_stages"], true);
    assert_eq!(
        options(&["--no-push", "--skip-unused-stages"])["skip_unused_stages"],
        true
    );
    assert_eq!(
        options(&["--no-push", "--skip-unused-stages=false"])["skip_unused_stages"],
        false
    );
}

#[test]
fn bases_are_prefetched_unless_turned_off() {
    assert_eq!(options(&["--no-push"])["prefetch_bases"], true);
    assert_eq!(
        options(&["--no-push", "--prefetch-bases=false"])["prefetch_bases"],
        false
    );
}

#[test]
fn platform_is_buildkits_name_for_custom_platform_and_takes_a_list() {
    for spelling in ["--custom-platform=linux/arm64", "--platform=linux/arm64"] {
        let json = options(&["--no-push", spelling]);
        assert_eq!(
            json["platform"]["architecture"], "arm64",
            "{spelling}: {json}"
        );
        assert!(json.get("platforms").is_none(), "{json}");
    }
    let json = options(&[
        "-d",
        "r.example/app:1",
        "--platform=linux/amd64,linux/arm64",
    ]);
    assert_eq!(json["platforms"][1]["architecture"], "arm64", "{json}");
    usage_error(
        &["--no-push", "--platform", "linux/amd64,linux/arm64"],
        "several platforms are pushed as one index",
    );
}

#[test]
fn an_unused_build_arg_is_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, "FROM scratch\nARG USED\nLABEL used=$USED\n").unwrap();
    let kiln_dir = tempfile::tempdir().unwrap();
    let out = kiln()
        .args([
            "build",
            "--no-push",
            "--log-format",
            "text",
            "-c",
            &ctx_arg(&dir),
        ])
        .arg("-f")
        .arg(&dockerfile)
        .arg("--kiln-dir")
        .arg(kiln_dir.path())
        .args(["--build-arg", "USED=1", "--build-arg", "NEVER_READ=2"])
        .assert()
        .success();
    let output = out.get_output();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("not consumed"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "expected one warning about NEVER_READ:\n{text}"
    );
    assert!(warnings[0].contains("NEVER_READ"), "{text}");
}
