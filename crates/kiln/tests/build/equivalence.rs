//! `kiln build` against `buildah build` of the same Dockerfiles (no RUN):
//! the same flattened filesystem (paths, types, modes, owners, contents)
//! and the same normalized config.
//!
//! The Dockerfiles are in `tests/fixtures/build_equivalence/`; each test
//! writes the build context next to them, with modes and owners set here so
//! they do not depend on how the repository was checked out.

use crate::build_common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command as StdCommand;

use build_common::{buildah_reference, fixture, json_diff, pushed_manifest_and_config, Kiln};
use kiln_testkit::{diff, normalized_config, BaseImage, Flattened, Registry};
use serde_json::{json, Value};

fn write(path: &Path, content: &str, mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Puts `fixtures/build_equivalence/<name>` into `ctx` as its `Dockerfile`.
fn dockerfile(ctx: &Path, name: &str) {
    fs::copy(
        fixture("build_equivalence").join(name),
        ctx.join("Dockerfile"),
    )
    .unwrap();
    set_mode(&ctx.join("Dockerfile"), 0o644);
}

/// The context of `files.Dockerfile`.
fn files_context(ctx: &Path) {
    dockerfile(ctx, "files.Dockerfile");
    fs::copy(
        fixture("build_equivalence/dockerignore"),
        ctx.join(".dockerignore"),
    )
    .unwrap();
    set_mode(&ctx.join(".dockerignore"), 0o644);
    write(&ctx.join("a.txt"), "alpha\n", 0o644);
    write(&ctx.join("b.txt"), "beta\n", 0o600);
    write(&ctx.join("c.txt"), "gamma\n", 0o755);
    write(&ctx.join("drop.log"), "ignored\n", 0o644);
    write(&ctx.join("keep.log"), "kept by !keep.log\n", 0o644);
    write(&ctx.join("secret/key"), "never in the image\n", 0o600);
    write(&ctx.join("dir/x.txt"), "x\n", 0o644);
    write(&ctx.join("dir/sub/y.txt"), "y\n", 0o664);
    write(&ctx.join("dir/sub/z.tmp"), "ignored tmp\n", 0o644);
    symlink("x.txt", ctx.join("dir/link")).unwrap();
    set_mode(&ctx.join("dir/sub"), 0o750);
    set_mode(&ctx.join("dir"), 0o755);
    write(&ctx.join("tools/run.sh"), "#!/bin/sh\necho run\n", 0o755);
    write(&ctx.join("tools/helper.txt"), "helper\n", 0o644);

    // A gzipped tar with its own owners and modes, which ADD extracts as is.
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("pkg/bin/tool"), "#!/bin/sh\n", 0o755);
    write(&src.path().join("pkg/etc/conf"), "k=v\n", 0o640);
    symlink("bin/tool", src.path().join("pkg/tool-link")).unwrap();
    let status = StdCommand::new("tar")
        .arg("-C")
        .arg(src.path())
        .args([
            "--owner=123",
            "--group=456",
            "--numeric-owner",
            "--sort=name",
            "-czf",
        ])
        .arg(ctx.join("archive.tar.gz"))
        .arg("pkg")
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");
    set_mode(&ctx.join("archive.tar.gz"), 0o644);
    set_mode(ctx, 0o755);
}

/// Pushes busybox to `reg` and returns its reference (the `BASE` build arg).
fn busybox(reg: &Registry) -> String {
    BaseImage::busybox()
        .unwrap()
        .push_to(reg, "busybox:latest")
        .unwrap()
}

/// `kiln build` of `ctx` to `reg` as `name`, with build args.
fn kiln_push(reg: &Registry, ctx: &Path, name: &str, args: &[(&str, &str)], target: Option<&str>) {
    let mut k = Kiln::build(ctx).args([
        "--destination",
        &reg.image_ref(name),
        "--insecure",
        "--insecure-pull",
    ]);
    for (key, v) in args {
        k = k.args(["--build-arg", &format!("{key}={v}")]);
    }
    if let Some(t) = target {
        k = k.args(["--target", t]);
    }
    k.success();
}

/// Asserts equal filesystems and normalized configs; `ignore` as in [`diff`].
/// `own_workdir_layers`: kiln ran WORKDIR steps that created directories
/// (see [`workdir_layers_as_empty`]); false when both built on the same
/// kiln-made parent and only inherited such layers.
fn assert_same(
    what: &str,
    own_workdir_layers: bool,
    kiln: &Flattened,
    kiln_config: &Value,
    reference: &build_common::Reference,
    ignore: &[&str],
) {
    let d = diff(kiln, &reference.fs, ignore);
    assert!(
        d.is_empty(),
        "{what}: filesystems differ (a = kiln, b = buildah):\n{}",
        d.join("\n")
    );
    let (k, b) = (
        comparable(normalized_config(&if own_workdir_layers {
            workdir_layers_as_empty(kiln_config)
        } else {
            kiln_config.clone()
        })),
        comparable(normalized_config(&without_onbuild_history(
            &reference.config,
        ))),
    );
    let d = json_diff(&k, &b);
    let steps = |c: &Value| {
        c["history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                format!(
                    "  {} {}",
                    if h["empty_layer"] == true { "  " } else { "L " },
                    h["created_by"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        d.iter().all(|l| !l.starts_with("history")),
        "{what}: histories differ\nkiln:\n{}\nbuildah:\n{}",
        steps(kiln_config),
        steps(&reference.config)
    );
    assert!(
        d.is_empty(),
        "{what}: normalized configs differ (kiln != buildah):\n{}",
        d.join("\n")
    );
}

/// What is left after [`normalized_config`] where buildah 1.28's Docker
/// format legitimately differs from Docker/BuildKit (and kiln):
/// * `parent`: the ID of the parent image in buildah's local storage, a
///   legacy field of the classic Docker builder that names nothing outside
///   that storage.
/// * `config.Entrypoint: []` and `config.OnBuild: []`: buildah writes empty
///   lists where Docker leaves the fields out; both mean "none".
/// * the order of `config.Env`: ENV of a variable that already exists
///   replaces it in place in Docker and BuildKit (and kiln); buildah moves it
///   to the end. The set of variables is compared here; the tests pin kiln's
///   order separately.
fn comparable(mut c: Value) -> Value {
    if let Some(top) = c.as_object_mut() {
        top.remove("parent");
    }

    if let Some(rc) = c.get_mut("config").and_then(Value::as_object_mut) {
        for k in ["Entrypoint", "OnBuild"] {
            if rc.get(k) == Some(&json!([])) {
                rc.remove(k);
            }
        }
        if let Some(env) = rc.get_mut("Env").and_then(Value::as_array_mut) {
            env.sort_by_key(Value::to_string);
        }
    }
    c
}

/// buildah's config without its ONBUILD history entries: buildah records
/// one per ONBUILD, as Docker's classic builder does; BuildKit (and kiln)
/// record the trigger in the config only.
fn without_onbuild_history(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(history) = c.get_mut("history").and_then(Value::as_array_mut) {
        history.retain(|h| {
            !(h["empty_layer"] == true
                && h["created_by"]
                    .as_str()
                    .is_some_and(|b| b.contains("ONBUILD ")))
        });
    }
    c
}

/// kiln's config with the layers of directory-creating WORKDIR and VOLUME
/// steps counted as empty. Like BuildKit, kiln creates a missing WORKDIR
/// directory in a layer of its own, and like Kaniko, a missing VOLUME
/// directory; buildah 1.28 records both as metadata only and creates a
/// WORKDIR inside the next step's layer (or never, when no step follows).
/// The files themselves are compared by [`diff`].
fn workdir_layers_as_empty(config: &Value) -> Value {
    let mut c = config.clone();
    let history = c["history"].as_array().cloned().unwrap_or_default();
    let mut layer = 0;
    let mut drop = Vec::new();
    let mut out = Vec::new();
    for mut h in history {
        if h["empty_layer"] != true {
            let by = h["created_by"].as_str().unwrap_or("");
            if by.starts_with("WORKDIR ") || by.starts_with("VOLUME ") {
                h["empty_layer"] = json!(true);
                drop.push(layer);
            }
            layer += 1;
        }
        out.push(h);
    }
    c["history"] = Value::Array(out);
    if let Some(ids) = c["rootfs"]["diff_ids"].as_array_mut() {
        for i in drop.into_iter().rev() {
            ids.remove(i);
        }
    }
    c
}

#[test]
fn copy_add_workdir_and_stages_match_buildah() {
    let reg = Registry::plain().unwrap();
    let base = busybox(&reg);
    let ctx = tempfile::tempdir().unwrap();
    files_context(ctx.path());

    kiln_push(&reg, ctx.path(), "files:1", &[("BASE", &base)], None);
    let kiln = Flattened::from_registry(&reg, "files:1").unwrap();
    let (_, kiln_config) = pushed_manifest_and_config(&reg, "files:1");
    let mut reference = buildah_reference(ctx.path(), &[("BASE", &base)], None);
    // buildah 1.28 applies --chmod only to what it copies, not to the
    // destination directory the copy creates; newer BuildKit applies it to
    // the directories it creates, and kiln follows that. Only the mode of
    // that directory differs. (Without --chmod a created destination is
    // 0755 in all three: /from-name copies the 0750 /opt/tools.)
    let theirs = reference.fs.entries.get_mut("/opt/tools").unwrap();
    assert_eq!(theirs.mode, 0o755, "buildah's mode for /opt/tools");
    theirs.mode = 0o750;
    assert_same(
        "files.Dockerfile",
        true,
        &kiln,
        &kiln_config,
        &reference,
        &[],
    );

    // The comparison above only proves agreement; pin down the behaviours
    // the Dockerfile exists to exercise, so a shared mistake cannot pass.
    let text = |p: &str| kiln.text(p).unwrap_or_else(|| panic!("{p} missing"));
    let owner = |p: &str| {
        let e = kiln.get(p).unwrap_or_else(|| panic!("{p} missing"));
        (e.uid, e.gid, e.mode)
    };
    assert_eq!(text("/multi/a.txt"), "alpha\n");
    assert_eq!(text("/glob/c.txt"), "gamma\n");
    assert_eq!(text("/contents/sub/y.txt"), "y\n");
    assert!(
        kiln.get("/contents/dir").is_none(),
        "COPY dir copies contents"
    );
    assert_eq!(text("/contents-slash/x.txt"), "x\n");
    assert_eq!(text("/renamed"), "alpha\n");
    assert_eq!(text("/newdir/a.txt"), "alpha\n");
    assert_eq!(text("/all/keep.log"), "kept by !keep.log\n");
    for ignored in ["/all/drop.log", "/all/secret", "/all/dir/sub/z.tmp"] {
        assert!(kiln.get(ignored).is_none(), "{ignored} is .dockerignored");
    }
    assert_eq!(owner("/owned/by-name"), (1000, 50, 0o644));
    assert_eq!(owner("/owned/by-id/sub/y.txt"), (1000, 50, 0o664));
    assert_eq!(owner("/owned/user-only"), (1000, 1000, 0o600));
    assert_eq!(owner("/modes/a"), (0, 0, 0o640));
    assert_eq!(owner("/modes/setuid"), (0, 0, 0o4755));
    assert_eq!(owner("/from-name/helper.txt"), (0, 0, 0o750));
    assert_eq!(text("/from-index/a.txt"), "alpha\n");
    assert_eq!(text("/from-middle/middle.txt"), "beta\n");
    assert_eq!(owner("/unpacked/pkg/etc/conf"), (123, 456, 0o640));
    assert_eq!(
        kiln.get("/from-middle/pkg/tool-link")
            .and_then(|e| e.link_target.as_deref()),
        Some("bin/tool")
    );
    assert_eq!(text("/abs/created/rel/deeper/a.txt"), "alpha\n");
    assert_eq!(
        kiln.config["config"]["WorkingDir"],
        "/abs/created/rel/deeper"
    );
}

#[test]
fn metadata_instructions_and_onbuild_match_buildah() {
    let reg = Registry::plain().unwrap();
    let base = busybox(&reg);
    let ctx = tempfile::tempdir().unwrap();
    dockerfile(ctx.path(), "config.Dockerfile");
    let args = [
        ("BASE", base.as_str()),
        ("VERSION", "2.5"),
        ("FLAVOR", "fancy"),
    ];

    // Final stage: exec forms and every metadata instruction.
    kiln_push(&reg, ctx.path(), "meta:1", &args, None);
    let kiln = Flattened::from_registry(&reg, "meta:1").unwrap();
    let (manifest, kiln_config) = pushed_manifest_and_config(&reg, "meta:1");
    let reference = buildah_reference(ctx.path(), &args, None);
    // A WORKDIR that no later step uses is only recorded by buildah 1.28;
    // Docker and BuildKit create it, owned by the current USER
    // (moby/buildkit#1002), and so does kiln.
    assert!(
        reference.fs.get("/srv").is_none(),
        "buildah now creates /srv"
    );
    let srv = kiln.get("/srv").expect("WORKDIR /srv created");
    assert_eq!((srv.uid, srv.gid, srv.mode), (1000, 50, 0o755));
    // VOLUME creates missing directories, owned by root, as Kaniko does
    // (buildah and BuildKit record the volume only; see docs/cli.md).
    for vol in ["/data", "/cache"] {
        assert!(reference.fs.get(vol).is_none(), "buildah now creates {vol}");
        let v = kiln
            .get(vol)
            .unwrap_or_else(|| panic!("VOLUME {vol} created"));
        assert_eq!((v.uid, v.gid, v.mode), (0, 0, 0o755), "{vol}");
    }
    assert_same(
        "config.Dockerfile",
        true,
        &kiln,
        &kiln_config,
        &reference,
        &["/srv", "/data", "/cache"],
    );
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "the manifest keeps the OCI family of the OCI base, as Kaniko does"
    );
    let c = &kiln_config["config"];
    assert_eq!(c["Entrypoint"], json!(["/bin/echo", "entry"]));
    assert_eq!(c["Cmd"], json!(["default"]));
    assert_eq!(c["User"], "app:staff");
    assert_eq!(c["Labels"]["org.example.version"], "2.5");
    assert_eq!(c["Labels"]["multi word"], "a b");
    assert_eq!(c["ExposedPorts"], json!({"53/udp": {}, "8080/tcp": {}}));
    assert_eq!(c["Volumes"], json!({"/cache": {}, "/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Shell"], json!(["/bin/ash", "-c"]));
    assert_eq!(c["Healthcheck"]["Test"], json!(["CMD", "/bin/true"]));
    assert_eq!(
        c["OnBuild"],
        json!(["COPY onbuild.txt /onbuild/", "ENV TRIGGERED=yes"])
    );
    assert_eq!(kiln_config["author"], "someone@example.com");
    // PATH is redefined in place, as BuildKit does (see `comparable`).
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_VERSION=2.5",
            "FLAVOR=fancy"
        ])
    );

    // Shell forms, under a SHELL, with a HEALTHCHECK carrying every option.
    kiln_push(&reg, ctx.path(), "meta:shell", &args, Some("shellform"));
    let kiln_shell = Flattened::from_registry(&reg, "meta:shell").unwrap();
    let (_, shell_config) = pushed_manifest_and_config(&reg, "meta:shell");
    let mut reference = buildah_reference(ctx.path(), &args, Some("shellform"));
    // buildah 1.28 ignores SHELL for shell-form ENTRYPOINT and CMD (it
    // always writes /bin/sh -c); Docker and BuildKit use the SHELL, which
    // is what kiln does and what the assertions below pin.
    for k in ["Entrypoint", "Cmd"] {
        let argv = &mut reference.config["config"][k];
        assert_eq!(argv[1], "-c", "buildah's {k}: {argv}");
        argv[1] = json!("-ec");
    }
    assert_same(
        "config.Dockerfile --target shellform",
        true,
        &kiln_shell,
        &shell_config,
        &reference,
        &[],
    );
    let c = &shell_config["config"];
    assert_eq!(
        c["Entrypoint"],
        json!(["/bin/sh", "-ec", "exec echo shell-entry"])
    );
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-ec", "echo shell-cmd"]));
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
               "Interval": 30_000_000_000u64, "Timeout": 5_000_000_000u64,
               "StartPeriod": 2_000_000_000u64, "Retries": 4})
    );

    // A child FROM kiln's image: the recorded triggers run first (a COPY
    // from the child's context and an ENV), then the child's own steps.
    let child = tempfile::tempdir().unwrap();
    dockerfile(child.path(), "onbuild-child.Dockerfile");
    write(
        &child.path().join("onbuild.txt"),
        "from the trigger\n",
        0o644,
    );
    write(&child.path().join("child.txt"), "child\n", 0o644);
    let parent = reg.image_ref("meta:1");
    let child_args = [("BASE", parent.as_str())];
    kiln_push(&reg, child.path(), "child:1", &child_args, None);
    let kiln_child = Flattened::from_registry(&reg, "child:1").unwrap();
    let (_, child_config) = pushed_manifest_and_config(&reg, "child:1");
    let reference = buildah_reference(child.path(), &child_args, None);
    assert_same(
        "onbuild-child.Dockerfile",
        false,
        &kiln_child,
        &child_config,
        &reference,
        &[],
    );
    assert_eq!(
        kiln_child.text("/onbuild/onbuild.txt").as_deref(),
        Some("from the trigger\n")
    );
    let env = child_config["config"]["Env"].to_string();
    assert!(env.contains("TRIGGERED=yes"), "{env}");
    assert!(
        child_config["config"]["OnBuild"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "triggers are not inherited by the child: {}",
        child_config["config"]["OnBuild"]
    );
}

/// Heredoc COPY, checked against BuildKit's documented behaviour rather than
/// buildah: buildah 1.28 does not parse heredocs (it looks for a file named
/// `<<EOF`). An unquoted delimiter expands variables, a quoted one does not;
/// `<<-` strips leading tabs; the files are 0644 root:root unless --chmod or
/// --chown say otherwise.
#[test]
fn heredoc_copy() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\n\
         ARG NAME=world\n\
         COPY <<EOF /expanded.txt\n\
         hello $NAME\n\
         EOF\n\
         COPY <<'EOF' /literal.txt\n\
         hello $NAME\n\
         EOF\n\
         COPY --chmod=755 --chown=7:8 <<-EOT /tabs.sh\n\
         \t#!/bin/sh\n\
         \techo tabs\n\
         EOT\n\
         COPY <<A <<B /both/\n\
         a\n\
         A\n\
         b\n\
         B\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    Kiln::build(ctx.path())
        .args(["--no-push", "--build-arg", "NAME=kiln"])
        .arg_path("--oci-layout-path", &out.path().join("layout"))
        .success();
    let img = Flattened::from_layout(&out.path().join("layout"), "latest").unwrap();
    let file = |p: &str| {
        let e = img.get(p).unwrap_or_else(|| panic!("{p} missing"));
        (img.text(p).unwrap(), e.mode, e.uid, e.gid)
    };
    assert_eq!(file("/expanded.txt"), ("hello kiln\n".into(), 0o644, 0, 0));
    assert_eq!(file("/literal.txt"), ("hello $NAME\n".into(), 0o644, 0, 0));
    assert_eq!(
        file("/tabs.sh"),
        ("#!/bin/sh\necho tabs\n".into(), 0o755, 7, 8)
    );
    assert_eq!(file("/both/A").0, "a\n");
    assert_eq!(file("/both/B").0, "b\n");
}
