//! Shared pieces of the `build_*` end-to-end tests: running the kiln binary
//! with a private working directory, and a buildah reference build whose
//! Docker-format config is kept.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use kiln_testkit::{
    skopeo_copy_with, Access, CopyOptions, Flattened, Registry, BUILDAH_STORAGE_DRIVER,
    BUILDAH_TIMEOUT,
};
use serde_json::Value;
use tempfile::TempDir;

/// Time limit for one kiln run.
pub const KILN_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the shared fixtures live.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One kiln invocation: a `kiln build` with `--context CTX --kiln-dir TMP`.
pub struct Kiln {
    cmd: Command,
    _work: TempDir,
    _docker_config: Option<TempDir>,
}

impl Kiln {
    /// `kiln build --context ctx`, with a fresh `--kiln-dir`.
    pub fn build(ctx: &Path) -> Self {
        let work = tempfile::tempdir().unwrap();
        let mut cmd = Command::cargo_bin("kiln").unwrap();
        cmd.arg("build")
            .arg("--context")
            .arg(ctx)
            .arg("--kiln-dir")
            .arg(work.path())
            .timeout(KILN_TIMEOUT);
        Self {
            cmd,
            _work: work,
            _docker_config: None,
        }
    }

    /// A private Docker config with no credentials (`DOCKER_CONFIG` and
    /// `HOME`), and `KANIKO_NO_PUSH` cleared, so nothing of the machine's
    /// environment decides what the build may reach.
    pub fn empty_docker_config(mut self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), "{\"auths\":{}}").unwrap();
        self.cmd
            .env("DOCKER_CONFIG", dir.path())
            .env("HOME", dir.path())
            .env_remove("KANIKO_NO_PUSH");
        self._docker_config = Some(dir);
        self
    }

    /// An environment variable the kiln process must not inherit.
    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// One more argument.
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    /// `FLAG PATH`.
    pub fn arg_path(mut self, flag: &str, path: &Path) -> Self {
        self.cmd.arg(flag).arg(path);
        self
    }

    /// An environment variable for the kiln process.
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// Runs kiln and returns what it printed, whatever the exit status.
    pub fn output(mut self) -> Output {
        self.cmd.output().unwrap()
    }

    /// Runs kiln and fails the test (showing stderr) unless it succeeds.
    pub fn success(self) -> Output {
        let out = self.output();
        assert!(
            out.status.success(),
            "kiln failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A buildah build exported twice: as an OCI layout (read by the
/// independent flattener) and as Docker schema 2 in a `dir:` copy, whose
/// config keeps the Docker-only fields (`Healthcheck`, `Shell`, `OnBuild`)
/// that buildah leaves out of an OCI config.
pub struct Reference {
    /// The built filesystem (and OCI config, which lacks the Docker-only fields).
    pub fs: Flattened,
    /// The Docker-format image config.
    pub config: Value,
}

/// Runs `buildah build --format docker` of `ctx/Dockerfile` with `build_args`
/// (and `--target` when given), pulling over plain HTTP.
pub fn buildah_reference(
    ctx: &Path,
    build_args: &[(&str, &str)],
    target: Option<&str>,
) -> Reference {
    let storage = tempfile::Builder::new()
        .prefix("kiln-ref-buildah-")
        .tempdir()
        .unwrap();
    let s = storage.path();
    for d in ["root", "runroot", "tmp"] {
        fs::create_dir_all(s.join(d)).unwrap();
    }
    let conf = s.join("storage.conf");
    fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"{BUILDAH_STORAGE_DRIVER}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            s.join("root").display(),
            s.join("runroot").display()
        ),
    )
    .unwrap();
    let buildah = || {
        let mut c = Command::new("buildah");
        c.env("CONTAINERS_STORAGE_CONF", &conf)
            .env("TMPDIR", s.join("tmp"))
            .env("BUILDAH_ISOLATION", "chroot")
            .arg("--root")
            .arg(s.join("root"))
            .arg("--runroot")
            .arg(s.join("runroot"))
            .arg("--storage-driver")
            .arg(BUILDAH_STORAGE_DRIVER)
            .timeout(BUILDAH_TIMEOUT);
        c
    };
    let run = |mut c: Command, what: &str| {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    };
    let mut b = buildah();
    b.args([
        "build",
        "--layers",
        "--isolation",
        "chroot",
        "--tls-verify=false",
        "--format",
        "docker",
        "-t",
        "reference:1",
    ]);
    for (k, v) in build_args {
        b.arg("--build-arg").arg(format!("{k}={v}"));
    }
    if let Some(t) = target {
        b.arg("--target").arg(t);
    }
    b.arg(ctx);
    run(b, "buildah build");

    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("oci");
    let dir = out.path().join("dir");
    let mut p = buildah();
    p.args(["push", "--quiet", "reference:1"])
        .arg(format!("oci:{}:image", layout.display()));
    run(p, "buildah push (OCI layout)");
    let mut p = buildah();
    p.args(["push", "--quiet", "--format", "v2s2", "reference:1"])
        .arg(format!("dir:{}", dir.display()));
    run(p, "buildah push (Docker schema 2)");

    let manifest: Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let hex = config_digest.trim_start_matches("sha256:");
    let config: Value = serde_json::from_slice(&fs::read(dir.join(hex)).unwrap()).unwrap();
    Reference {
        fs: Flattened::from_layout(&layout, "image").unwrap(),
        config,
    }
}

/// Both values pretty-printed, for assertion messages.
pub fn show(label_a: &str, a: &Value, label_b: &str, b: &Value) -> String {
    format!(
        "{label_a}:\n{}\n{label_b}:\n{}",
        serde_json::to_string_pretty(a).unwrap(),
        serde_json::to_string_pretty(b).unwrap()
    )
}

/// The `created_by` of each history entry of `config` that made a layer.
pub fn layer_history(config: &Value) -> Vec<String> {
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"].as_bool() != Some(true))
        .map(|h| h["created_by"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The manifest and config of `name` on `reg` exactly as pushed: copied with
/// skopeo to a `dir:` (which converts nothing, unlike an OCI layout copy
/// that would turn a Docker config into an OCI one and drop Docker-only
/// fields).
pub fn pushed_manifest_and_config(reg: &Registry, name: &str) -> (Value, Value) {
    let (dir, manifest) = pushed_dir(reg, name);
    let config =
        serde_json::from_slice(&fs::read(blob_path(&dir, &manifest["config"])).unwrap()).unwrap();
    (manifest, config)
}

/// A pushed image copied by skopeo into a `dir:` layout (blobs named by
/// their hex digest), with its manifest.
pub fn pushed_dir(reg: &Registry, name: &str) -> (tempfile::TempDir, Value) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    let opts = CopyOptions {
        src: Access::for_registry(reg),
        ..CopyOptions::default()
    };
    skopeo_copy_with(
        &format!("docker://{}", reg.image_ref(name)),
        &format!("dir:{}", dir.display()),
        &opts,
    )
    .unwrap();
    let manifest: Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    (tmp, manifest)
}

/// Where the blob a descriptor names is in a [`pushed_dir`] copy.
pub fn blob_path(dir: &tempfile::TempDir, descriptor: &Value) -> std::path::PathBuf {
    let hex = descriptor["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    dir.path().join("img").join(hex)
}

/// Differences between two JSON values, one line per differing path
/// (`config.Env[1]: "A=1" != "A=2"`); empty when equal.
pub fn json_diff(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_diff("", a, b, &mut out);
    out
}

fn walk_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => walk_diff(&p, va, vb, out),
                    (Some(va), None) => out.push(format!("{p}: {va} != (absent)")),
                    (None, Some(vb)) => out.push(format!("{p}: (absent) != {vb}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                walk_diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}
