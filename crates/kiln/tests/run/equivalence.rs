//! `kiln build` against `buildah build` of the same Dockerfiles with RUN
//! steps, on the busybox base, in both of kiln's isolation modes: the same
//! flattened filesystem and the same normalized config. Then an image kiln
//! built is unpacked with umoci and its ENTRYPOINT/CMD run in a chroot.
//!
//! Paths ignored in the filesystem comparison ([`BUILDAH_RUN_ARTIFACTS`]):
//! buildah (chroot isolation) bind-mounts `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf` into the RUN container and creates `/run` for them,
//! and leaves those mount points (empty files, an empty directory) in the
//! step's layer. They describe the build host, not the Dockerfile; kiln,
//! like BuildKit, keeps them out of its layers (asserted below).

use crate::build_common;

use std::fs;
use std::path::Path;

use build_common::{json_diff, pushed_manifest_and_config, Kiln};
use kiln_testkit::{
    diff, normalized_config, run_pushed_image, BaseImage, EntryKind, Flattened, Registry,
    BUILDAH_RUN_ARTIFACTS,
};
use serde_json::{json, Value};

/// Files: many created and deleted, a directory replaced by a file and back
/// (and the reverse), hard links, setuid/setgid, chmod- and chown-only
/// changes, symlinks (absolute, relative, dangling, replacing a file).
const FILES: &str = r#"ARG BASE
FROM ${BASE}
RUN mkdir -p /many/sub && for i in $(seq 1 300); do echo $i > /many/f$i; echo s$i > /many/sub/s$i; done
RUN rm /many/f1 /many/f2 && rm -r /many/sub && mkdir -p /swap/dir && echo inner > /swap/dir/inner && echo plain > /swap/file
RUN rm -r /swap/dir && echo now-a-file > /swap/dir && rm /swap/file && mkdir /swap/file && echo inside > /swap/file/inside
RUN rm /swap/dir && mkdir /swap/dir && echo back > /swap/dir/again
RUN ln /many/f3 /many/hard3 && ln /many/f3 /many/hard3b && mkdir /links && echo same > /links/a && ln /links/a /links/b
RUN cp /bin/busybox /usr/bin/su-copy && chmod 4755 /usr/bin/su-copy && chmod 2775 /many && chmod 1777 /swap
RUN chmod 600 /etc/group && chmod 640 /many/f10 && chown 1000:50 /many/f11
RUN ln -s /many/f4 /abs-link && ln -s ../many/f5 /usr/rel-link && ln -s nowhere /many/dangling && rm /bin/vi && ln -s /many/f6 /bin/vi
RUN rm /abs-link && echo was-a-link > /abs-link && rm -r /swap/file
CMD ["/bin/cat", "/swap/dir/again"]
"#;

/// Users and working directories: RUN as a name, as uid:gid, back to root;
/// WORKDIR created and reused; ENTRYPOINT + CMD that report where they run.
const USERS: &str = r#"ARG BASE
FROM ${BASE}
WORKDIR /work/deep
RUN echo "$PWD" > where && id > /tmp/id-root
USER app
WORKDIR /home/app
RUN echo "$PWD" > where && id -u > uid && touch mine && mkdir sub && echo hi > sub/x && chmod 700 sub
USER 1000:50
RUN id > /tmp/id-1000-50 && touch /tmp/by-1000-50
USER root
RUN chown -R app:staff /work && chmod 750 /work/deep
ENV GREETING=hello
WORKDIR /work/deep
USER app
ENTRYPOINT ["/bin/sh", "-c", "echo \"$GREETING from $(id -un) in $PWD: $(cat where) $0 $1\""]
CMD ["first", "second"]
"#;

fn write_context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    ctx
}

fn kiln_build(reg: &Registry, ctx: &Path, base: &str, name: &str, isolation: &str) {
    Kiln::build(ctx)
        .args(["--destination", &reg.image_ref(name)])
        .args(["--insecure", "--insecure-pull", "--isolation", isolation])
        .args(["--build-arg", &format!("BASE={base}")])
        .success();
}

/// Config differences between buildah 1.28 and Docker/BuildKit (and kiln)
/// left after [`normalized_config`]; see `build/equivalence.rs`, which
/// documents each: `parent` is a buildah-storage ID, empty `Entrypoint`/
/// `OnBuild` lists mean none, and buildah reorders `Env`.
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

/// kiln's config with the layers of directory-creating WORKDIR steps counted
/// as empty: kiln (like BuildKit) creates a missing WORKDIR directory in a
/// layer of its own, buildah 1.28 creates it inside the next step's layer.
/// The directories themselves are compared by [`diff`].
fn workdir_layers_as_empty(config: &Value) -> Value {
    let mut c = config.clone();
    let history = c["history"].as_array().cloned().unwrap_or_default();
    let (mut layer, mut drop, mut out) = (0, Vec::new(), Vec::new());
    for mut h in history {
        if h["empty_layer"] != true {
            if h["created_by"]
                .as_str()
                .is_some_and(|b| b.starts_with("WORKDIR "))
            {
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

/// `img` with every hard link entry turned into the regular file it
/// extracts to. For a new link to a file of a lower layer, kiln re-emits the
/// file with its new link count and links the new names to it (what an
/// overlay upper dir holds after the copy-up); buildah's vfs differ leaves the old file out and writes the first
/// new name as a regular file. Both extract to the same names, contents and
/// metadata; the link structure itself is compared between kiln's two
/// isolation modes instead, and pinned by the tests.
fn links_as_files(img: &Flattened) -> Flattened {
    let mut out = img.clone();
    for e in out.entries.values_mut() {
        if e.kind == EntryKind::Hardlink {
            e.kind = EntryKind::File;
            e.link_target = None;
        }
    }
    out
}

/// Builds `dockerfile` with buildah once and with kiln in each isolation
/// mode, and asserts kiln's images equal buildah's. Returns kiln's
/// flattened images by isolation.
fn assert_matches_buildah(what: &str, dockerfile: &str) -> (Registry, Vec<Flattened>) {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = write_context(dockerfile);
    let reference = build_common::buildah_reference(ctx.path(), &[("BASE", &base)], None);
    for p in BUILDAH_RUN_ARTIFACTS {
        assert!(
            reference.fs.get(p).is_some(),
            "{what}: buildah no longer leaves {p} behind; drop it from the ignore list"
        );
    }
    let mut images = Vec::new();
    for isolation in ["namespace", "chroot"] {
        let name = format!("{what}-{isolation}:1");
        kiln_build(&reg, ctx.path(), &base, &name, isolation);
        let kiln = Flattened::from_registry(&reg, &name).unwrap();
        for p in BUILDAH_RUN_ARTIFACTS {
            assert!(
                kiln.get(p).is_none(),
                "{what} ({isolation}): the build's {p} reached a layer"
            );
        }
        let d = diff(
            &links_as_files(&kiln),
            &links_as_files(&reference.fs),
            BUILDAH_RUN_ARTIFACTS,
        );
        assert!(
            d.is_empty(),
            "{what} ({isolation}): filesystems differ (a = kiln, b = buildah):\n{}",
            d.join("\n")
        );
        let (_, kiln_config) = pushed_manifest_and_config(&reg, &name);
        let k = comparable(normalized_config(&workdir_layers_as_empty(&kiln_config)));
        let b = comparable(normalized_config(&reference.config));
        let d = json_diff(&k, &b);
        assert!(
            d.is_empty(),
            "{what} ({isolation}): normalized configs differ (kiln != buildah):\n{}",
            d.join("\n")
        );
        images.push(kiln);
    }
    let d = diff(&images[0], &images[1], &[]);
    assert!(
        d.is_empty(),
        "{what}: kiln's isolation modes disagree (a = namespace, b = chroot):\n{}",
        d.join("\n")
    );
    (reg, images)
}

#[test]
fn run_file_changes_match_buildah_in_both_isolations() {
    let (_reg, images) = assert_matches_buildah("files", FILES);
    // Agreement alone could hide a shared mistake: pin the intended results.
    for img in &images {
        let text = |p: &str| img.text(p).unwrap_or_else(|| panic!("{p} missing"));
        let meta = |p: &str| {
            let e = img.get(p).unwrap_or_else(|| panic!("{p} missing"));
            (e.uid, e.gid, e.mode)
        };
        let target = |p: &str| img.get(p).and_then(|e| e.link_target.clone());
        assert_eq!(text("/many/f300"), "300\n");
        for gone in ["/many/f1", "/many/f2", "/many/sub", "/swap/file"] {
            assert!(img.get(gone).is_none(), "{gone} was deleted");
        }
        assert_eq!(text("/swap/dir/again"), "back\n");
        assert!(img.get("/swap/dir/inner").is_none());
        assert_eq!(text("/many/hard3"), "3\n");
        for (link, to) in [
            ("/many/hard3", "/many/f3"),
            ("/many/hard3b", "/many/f3"),
            ("/links/b", "/links/a"),
        ] {
            let e = img.get(link).unwrap();
            assert_eq!(
                (e.kind, e.link_target.as_deref()),
                (EntryKind::Hardlink, Some(to)),
                "{link}"
            );
        }
        assert_eq!(text("/links/b"), "same\n");
        assert_eq!(meta("/usr/bin/su-copy"), (0, 0, 0o4755));
        assert_eq!(meta("/many"), (0, 0, 0o2775));
        assert_eq!(meta("/swap"), (0, 0, 0o1777));
        assert_eq!(meta("/etc/group"), (0, 0, 0o600));
        assert_eq!(meta("/many/f10"), (0, 0, 0o640));
        assert_eq!(meta("/many/f11"), (1000, 50, 0o644));
        assert_eq!(target("/usr/rel-link").as_deref(), Some("../many/f5"));
        assert_eq!(target("/many/dangling").as_deref(), Some("nowhere"));
        assert_eq!(target("/bin/vi").as_deref(), Some("/many/f6"));
        assert_eq!(text("/abs-link"), "was-a-link\n");
    }
}

#[test]
fn run_users_and_workdirs_match_buildah_in_both_isolations() {
    let (_reg, images) = assert_matches_buildah("users", USERS);
    for img in &images {
        let text = |p: &str| img.text(p).unwrap_or_else(|| panic!("{p} missing"));
        let owner = |p: &str| {
            let e = img.get(p).unwrap_or_else(|| panic!("{p} missing"));
            (e.uid, e.gid, e.mode)
        };
        assert_eq!(text("/work/deep/where"), "/work/deep\n");
        assert_eq!(
            text("/tmp/id-root"),
            "uid=0(root) gid=0(root) groups=0(root)\n"
        );
        assert_eq!(text("/home/app/where"), "/home/app\n");
        assert_eq!(text("/home/app/uid"), "1000\n");
        assert_eq!(owner("/home/app/mine"), (1000, 1000, 0o644));
        assert_eq!(owner("/home/app/sub"), (1000, 1000, 0o700));
        assert_eq!(
            text("/tmp/id-1000-50"),
            "uid=1000(app) gid=50(staff) groups=50(staff)\n"
        );
        assert_eq!(owner("/tmp/by-1000-50"), (1000, 50, 0o644));
        assert_eq!(owner("/work/deep"), (1000, 50, 0o750));
        assert_eq!(img.config["config"]["User"], "app");
        assert_eq!(img.config["config"]["WorkingDir"], "/work/deep");
    }
}

#[test]
fn image_kiln_built_runs_its_entrypoint_and_cmd() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    for (what, dockerfile, expected) in [
        (
            "users",
            USERS,
            "hello from app in /work/deep: /work/deep first second\n",
        ),
        ("files", FILES, "back\n"),
    ] {
        let ctx = write_context(dockerfile);
        for isolation in ["namespace", "chroot"] {
            let name = format!("{what}-{isolation}:run");
            kiln_build(&reg, ctx.path(), &base, &name, isolation);
            assert_eq!(
                run_pushed_image(&reg, &name).unwrap(),
                expected,
                "{what} built with {isolation} isolation"
            );
        }
    }
}
