//! `kiln build` against BuildKit (`DOCKER_BUILDKIT=1 docker build`) of the
//! same Dockerfile and context: the flattened filesystems (paths, kinds,
//! modes, owners, link targets, contents) and the normalized configs must
//! be the same.
//!
//! Every directory under `tests/fixtures/buildkit/` is one case: its
//! `Dockerfile`, and everything else in it as the build context. Adding a
//! directory is all it takes to pin the next difference. In the Dockerfile,
//! `REGISTRY/` names the test registry, which holds the bases:
//! * `REGISTRY/busybox:latest`: busybox with a real `/bin` (kiln-testkit's).
//! * `REGISTRY/usrmerge:latest`: busybox laid out like Debian 12 and Ubuntu,
//!   `/bin -> usr/bin`, `/lib -> usr/lib`, `/sbin -> usr/sbin`, and
//!   `/etc/service -> ../srv/service` for a symlinked parent below `/etc`.
//!
//! Optional files in a case directory (not copied into the context):
//! * `build-args`: `KEY=VALUE` lines passed to both builders.
//! * `target`: the stage to build.
//!
//! The BuildKit here is the one inside Docker 20.10 (0.8). Its exporter
//! writes an empty tar for a step that changed nothing; newer BuildKit
//! drops such layers, as kiln does, so they count as no layer. It also
//! finds "nothing changed" when a step rewrites files with the same
//! content and metadata (the same COPY twice), where kiln writes the files
//! again: fixtures avoid such steps. Heredocs need a newer Dockerfile
//! frontend than 0.8's and are not compared here.
//!
//! The context is copied with normalized modes (directories and executables
//! 0755, other files 0644), since a checkout's umask and owner must not
//! decide the result. Docker must be usable: without an engine the test
//! fails, it never skips. `KILN_CONFORMANCE_CASE=name` runs one case.

use crate::build_common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use build_common::{fixture, json_diff, pushed_manifest_and_config, Kiln};
use kiln_testkit::layout::LayerBuilder;
use kiln_testkit::{
    diff, normalized_config, skopeo_copy, BaseImage, EntryKind, Flattened, Registry,
    BUSYBOX_PATH_ENV,
};
use serde_json::{json, Value};

/// The Docker client that drives BuildKit with `DOCKER_BUILDKIT=1` (the
/// newer client in /usr/local/bin wants buildx).
const DOCKER: &str = "/usr/bin/docker";

/// Time limit for one BuildKit build, save or removal.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(300);

/// Files of a case directory that configure the case rather than belong to
/// its context.
const CASE_FILES: &[&str] = &["build-args", "target"];

/// One fixture directory.
struct Case {
    name: String,
    dir: PathBuf,
    build_args: Vec<String>,
    target: Option<String>,
}

impl Case {
    fn load(dir: PathBuf) -> Self {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let read = |f: &str| fs::read_to_string(dir.join(f)).ok();
        let build_args = read("build-args")
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let target = read("target").map(|t| t.trim().to_string());
        Self {
            name,
            dir,
            build_args,
            target,
        }
    }
}

/// Every case, sorted by name, or the one `KILN_CONFORMANCE_CASE` names.
fn cases() -> Vec<Case> {
    let root = fixture("buildkit");
    let only = std::env::var("KILN_CONFORMANCE_CASE")
        .ok()
        .filter(|c| !c.is_empty());
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .filter(|p| only.as_deref().is_none_or(|o| p.file_name().unwrap() == o))
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no case in {} (KILN_CONFORMANCE_CASE={only:?})",
        root.display()
    );
    dirs.into_iter().map(Case::load).collect()
}

/// Copies the case's context into `ctx` with normalized modes and the
/// Dockerfile's `REGISTRY/` replaced by the test registry's host.
fn write_context(case: &Case, reg: &Registry, ctx: &Path) {
    copy_tree(&case.dir, ctx, true);
    let text = fs::read_to_string(case.dir.join("Dockerfile")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        text.replace("REGISTRY/", &format!("{}/", reg.host())),
    )
    .unwrap();
    fs::set_permissions(ctx, fs::Permissions::from_mode(0o755)).unwrap();
}

fn copy_tree(from: &Path, to: &Path, top: bool) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if top && CASE_FILES.iter().any(|f| name == *f) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let meta = fs::symlink_metadata(&src).unwrap();
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_dir() {
            copy_tree(&src, &dst, false);
        } else {
            fs::copy(&src, &dst).unwrap();
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// A built image: its filesystem and its Docker-format config.
struct Built {
    fs: Flattened,
    config: Value,
}

/// `kiln build` of `ctx`, pushed to `reg`; `Err` with kiln's stderr when it fails.
fn kiln_build(case: &Case, reg: &Registry, ctx: &Path) -> Result<Built, String> {
    let name = format!("conform-{}:kiln", case.name);
    let mut k = Kiln::build(ctx).args([
        "--destination",
        &reg.image_ref(&name),
        "--insecure",
        "--insecure-pull",
    ]);
    for a in &case.build_args {
        k = k.args(["--build-arg", a]);
    }
    if let Some(t) = &case.target {
        k = k.args(["--target", t]);
    }
    let out = k.output();
    if !out.status.success() {
        return Err(format!(
            "kiln failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let fs = Flattened::from_registry(reg, &name).unwrap();
    let (_, config) = pushed_manifest_and_config(reg, &name);
    Ok(Built { fs, config })
}

fn docker() -> Command {
    let mut c = Command::new(DOCKER);
    c.env("DOCKER_BUILDKIT", "1");
    c
}

/// Runs `cmd` to its end; `Err` with its output when it fails.
fn run(cmd: Command, what: &str) -> Result<(), String> {
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(DOCKER_TIMEOUT)
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Removes a Docker image when dropped.
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = docker().args(["rmi", "--force", &self.0]).output();
    }
}

/// BuildKit's build of `ctx`, saved with `docker save` and read back: the
/// filesystem through an OCI layout made by skopeo, the config straight
/// from the archive (an OCI conversion would drop Docker-only fields).
fn buildkit_build(case: &Case, ctx: &Path) -> Result<Built, String> {
    let tag = format!("kiln-conform-{}-{}:buildkit", std::process::id(), case.name);
    let mut b = docker();
    b.args(["build", "--progress", "plain", "--pull", "-t", &tag]);
    for a in &case.build_args {
        b.args(["--build-arg", a]);
    }
    if let Some(t) = &case.target {
        b.args(["--target", t]);
    }
    b.arg(ctx);
    run(b, "BuildKit build")?;
    let _image = DockerImage(tag.clone());
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("image.tar");
    let mut s = docker();
    s.args(["save", "-o"]).arg(&archive).arg(&tag);
    run(s, "docker save")?;
    let layout = out.path().join("oci");
    skopeo_copy(
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}:image", layout.display()),
    )
    .map_err(|e| format!("skopeo copy of the saved image: {e:#}"))?;
    let fs = Flattened::from_layout(&layout, "image").map_err(|e| format!("{e:#}"))?;
    Ok(Built {
        fs,
        config: saved_config(&archive),
    })
}

/// The image config in a `docker save` archive.
fn saved_config(archive: &Path) -> Value {
    let mut files = std::collections::HashMap::new();
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if path.ends_with(".json") {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(path, data);
        }
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap();
    serde_json::from_slice(&files[config]).unwrap()
}

/// The diff_id of an empty tar (1024 zero bytes).
const EMPTY_TAR_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// BuildKit's config with its empty layers counted as no layer. The
/// BuildKit inside Docker 20.10 exports the empty tar a step that changed
/// nothing leaves (a WORKDIR of an existing directory); newer BuildKit
/// drops such layers and marks the step `empty_layer`, as kiln does. The
/// files are the same either way.
fn without_empty_layers(config: &Value) -> Value {
    let mut c = config.clone();
    let ids = c["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut layer = 0;
    if let Some(history) = c["history"].as_array_mut() {
        for h in history.iter_mut().filter(|h| h["empty_layer"] != true) {
            if ids.get(layer).and_then(Value::as_str) == Some(EMPTY_TAR_DIFF_ID) {
                h["empty_layer"] = json!(true);
            }
            layer += 1;
        }
    }
    c["rootfs"]["diff_ids"] = Value::Array(
        ids.into_iter()
            .filter(|d| d.as_str() != Some(EMPTY_TAR_DIFF_ID))
            .collect(),
    );
    c
}

/// The differences between kiln's and BuildKit's images of one case, one
/// line each; empty when they match.
fn compare(kiln: &Built, buildkit: &Built) -> Vec<String> {
    let mut out: Vec<String> = diff(&kiln.fs, &buildkit.fs, &[])
        .into_iter()
        .map(|l| {
            l.replace("only in a:", "only in kiln:")
                .replace("only in b:", "only in BuildKit:")
                .replace("  a: ", "  kiln:     ")
                .replace("  b: ", "  BuildKit: ")
        })
        .collect();
    let (k, b) = (
        normalized_config(&kiln.config),
        normalized_config(&without_empty_layers(&buildkit.config)),
    );
    let config = json_diff(&k, &b);
    let layers_differ = config
        .iter()
        .any(|l| l.starts_with("history") || l.starts_with("rootfs"));
    out.extend(
        config
            .into_iter()
            .map(|l| format!("config {l} (kiln != BuildKit)")),
    );
    if layers_differ {
        out.push(format!("kiln's history:\n{}", steps(&kiln.config)));
        out.push(format!("BuildKit's history:\n{}", steps(&buildkit.config)));
    }
    out
}

/// One line per history entry: `L` when it has a layer, then what made it.
fn steps(config: &Value) -> String {
    config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let layer = if h["empty_layer"] == true { " " } else { "L" };
            format!("    {layer} {}", h["created_by"].as_str().unwrap_or(""))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds one case both ways and says how they differ.
fn run_case(case: &Case, reg: &Registry) -> Vec<String> {
    let ctx = tempfile::Builder::new()
        .prefix("kiln-conform-ctx-")
        .tempdir()
        .unwrap();
    write_context(case, reg, ctx.path());
    let (kiln, buildkit) = std::thread::scope(|s| {
        let k = s.spawn(|| kiln_build(case, reg, ctx.path()));
        let b = buildkit_build(case, ctx.path());
        (k.join().unwrap(), b)
    });
    match (kiln, buildkit) {
        (Ok(k), Ok(b)) => compare(&k, &b),
        (Err(k), Ok(_)) => vec![format!("BuildKit built it, kiln did not: {k}")],
        (Ok(_), Err(b)) => vec![format!("kiln built it, BuildKit did not: {b}")],
        (Err(k), Err(b)) => vec![format!("neither built it:\n{k}\n{b}")],
    }
}

/// The Debian 12 / Ubuntu layout on busybox: `/bin`, `/lib` and `/sbin` are
/// links into `/usr`, and `/etc/service` is a relative link to
/// `/srv/service` (a symlinked parent that is not at the top).
fn usrmerge() -> BaseImage {
    let busybox = kiln_testkit::find_in_path("busybox").expect("busybox on PATH");
    let data = fs::read(&busybox).unwrap();
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    let mut b = LayerBuilder::new();
    for d in [
        "dev",
        "etc",
        "home",
        "proc",
        "srv",
        "srv/service",
        "sys",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/sbin",
        "var",
    ] {
        b.dir(d, 0o755, 0, 0).unwrap();
    }
    b.dir("root", 0o700, 0, 0).unwrap();
    b.dir("tmp", 0o1777, 0, 0).unwrap();
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("sbin", "usr/sbin"),
        ("etc/service", "../srv/service"),
    ] {
        b.symlink(link, target).unwrap();
    }
    b.file("usr/bin/busybox", 0o755, 0, 0, &data).unwrap();
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|a| !a.is_empty() && a != "busybox")
        .collect();
    applets.sort_unstable();
    applets.dedup();
    for a in applets {
        b.symlink(&format!("usr/bin/{a}"), "busybox").unwrap();
    }
    b.file(
        "etc/passwd",
        0o644,
        0,
        0,
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    b.file("etc/group", 0o644, 0, 0, b"root:x:0:\napp:x:1000:\n")
        .unwrap();
    BaseImage::from_layers(
        vec![b.finish().unwrap()],
        json!({"Env": [BUSYBOX_PATH_ENV], "Cmd": ["sh"]}),
    )
    .unwrap()
}

/// Fails the test unless the Docker engine answers: these tests compare
/// with BuildKit and never skip.
fn require_docker() {
    let version = docker()
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match &version {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "this test compares kiln with BuildKit and needs a usable Docker engine \
             ({DOCKER} version: {other:?})"
        ),
    }
}

/// A registry holding the bases the fixtures name.
fn registry_with_bases() -> Registry {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    usrmerge().push_to(&reg, "usrmerge:latest").unwrap();
    reg
}

/// A case written here rather than under fixtures/ (for tests that pin
/// where kiln deliberately differs).
fn inline_case(name: &str, dockerfile: &str) -> (Case, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let case = Case::load(dir.path().to_path_buf());
    (
        Case {
            name: name.to_string(),
            ..case
        },
        dir,
    )
}

/// VOLUME on a directory the image lacks: BuildKit records the volume and
/// makes nothing, so a later `RUN` writing there fails; Kaniko (and Docker's
/// classic builder) create it, and so does kiln, in a layer of the VOLUME
/// step, keeping what later steps write. docs/cli.md says so.
#[test]
fn volume_creates_missing_directories() {
    require_docker();
    let reg = registry_with_bases();
    let (case, _dir) = inline_case(
        "volume-missing",
        "FROM REGISTRY/busybox:latest\n\
         VOLUME /data /srv/new/deep\n\
         RUN echo hi > /data/x\n",
    );
    let ctx = tempfile::tempdir().unwrap();
    write_context(&case, &reg, ctx.path());
    let buildkit = buildkit_build(&case, ctx.path());
    assert!(
        buildkit.is_err(),
        "BuildKit now creates VOLUME directories: kiln's documented difference is gone"
    );
    let kiln = kiln_build(&case, &reg, ctx.path()).unwrap_or_else(|e| panic!("{e}"));
    let dir = |p: &str| {
        let e = kiln.fs.get(p).unwrap_or_else(|| panic!("{p} missing"));
        (e.kind, e.mode, e.uid, e.gid)
    };
    for p in ["/data", "/srv/new", "/srv/new/deep"] {
        assert_eq!(dir(p), (EntryKind::Dir, 0o755, 0, 0), "{p}");
    }
    assert_eq!(kiln.fs.text("/data/x").as_deref(), Some("hi\n"));
    assert_eq!(
        kiln.config["config"]["Volumes"],
        json!({"/data": {}, "/srv/new/deep": {}})
    );
    // One layer for the directories, one for the RUN, on busybox's one.
    assert_eq!(
        kiln.config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        3
    );
}

/// A copied tree whose directories are links in the image (`COPY rootfs/ /`
/// on a merged-/usr base): BuildKit 0.8 refuses ("cannot copy to
/// non-directory"); Kaniko writes through the links, and so does kiln,
/// keeping the links, so `/bin/sh` survives. docs/cli.md says so.
#[test]
fn a_copied_tree_writes_through_links_in_the_image() {
    require_docker();
    let reg = registry_with_bases();
    let case = Case::load(fixture(
        "buildkit_refuses/symlinked-dirs-inside-copied-tree",
    ));
    let ctx = tempfile::tempdir().unwrap();
    write_context(&case, &reg, ctx.path());
    let buildkit = buildkit_build(&case, ctx.path());
    assert!(
        buildkit
            .as_ref()
            .is_err_and(|e| e.contains("cannot copy to non-directory")),
        "BuildKit now copies through links: compare this case in fixtures/buildkit instead ({:?})",
        buildkit.as_ref().err()
    );
    let kiln = kiln_build(&case, &reg, ctx.path()).unwrap_or_else(|e| panic!("{e}"));
    let entry = |p: &str| {
        kiln.fs
            .get(p)
            .unwrap_or_else(|| panic!("{p} missing"))
            .clone()
    };
    for (link, target) in [("/bin", "usr/bin"), ("/etc/service", "../srv/service")] {
        assert_eq!(entry(link).link_target.as_deref(), Some(target), "{link}");
    }
    assert_eq!(kiln.fs.text("/usr/bin/tool").as_deref(), Some("tool\n"));
    assert_eq!(entry("/usr/bin/sh").link_target.as_deref(), Some("busybox"));
    assert_eq!(
        kiln.fs.text("/srv/service/web/run").as_deref(),
        Some("run\n")
    );
    assert_eq!(kiln.fs.text("/srv/service/s").as_deref(), Some("s\n"));
    assert_eq!(kiln.fs.text("/etc/app.conf").as_deref(), Some("conf\n"));
    assert_eq!(entry("/srv/service/web").kind, EntryKind::Dir);
}

#[test]
fn fixtures_build_the_same_image_as_buildkit() {
    require_docker();
    let reg = registry_with_bases();

    let started = Instant::now();
    let mut failed = Vec::new();
    let cases = cases();
    for case in &cases {
        let t = Instant::now();
        let d = run_case(case, &reg);
        println!(
            "{:<32} {} ({:.1}s)",
            case.name,
            if d.is_empty() { "same" } else { "DIFFERENT" },
            t.elapsed().as_secs_f64()
        );
        if !d.is_empty() {
            failed.push(format!("{}:\n  {}", case.name, d.join("\n  ")));
        }
    }
    println!(
        "{} cases in {:.1}s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "{} of {} cases differ from BuildKit:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}
