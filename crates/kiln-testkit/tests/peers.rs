//! buildah and umoci against the hand-made busybox base.

use std::fs;

use kiln_testkit::{
    buildah_build, normalized_config, umoci_unpack, BaseImage, BuildahBuild, EntryKind, Flattened,
    Registry, BUILDAH_RUN_ARTIFACTS,
};

#[test]
fn buildah_builds_from_local_registry() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    let dockerfile = ctx.path().join("Dockerfile");
    fs::write(
        &dockerfile,
        format!(
            "FROM {base}\nCOPY hello.txt /srv/hello.txt\nENV GREETING=hi\n\
             RUN echo \"$GREETING\" > /srv/ran.txt && chown app:staff /srv/ran.txt\n"
        ),
    )
    .unwrap();

    let img = buildah_build(ctx.path(), &dockerfile, "kiln-test/out:1").unwrap();
    let f = img.flatten().unwrap();
    assert_eq!(f.text("/srv/hello.txt").as_deref(), Some("hello\n"));
    let ran = f.get("/srv/ran.txt").unwrap();
    assert_eq!(f.text("/srv/ran.txt").as_deref(), Some("hi\n"));
    assert_eq!((ran.uid, ran.gid), (1000, 50));
    assert_eq!(f.get("/bin/sh").unwrap().kind, EntryKind::Symlink);
    let env = f.config["config"]["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "GREETING=hi"), "{env:?}");

    // Compared with the base, only the build's own paths differ.
    let base_f = Flattened::from_registry(&reg, "busybox:latest").unwrap();
    let d = kiln_testkit::diff(&base_f, &f, BUILDAH_RUN_ARTIFACTS);
    let paths: Vec<&str> = d
        .iter()
        .map(|l| l.split_whitespace().nth(3).unwrap_or(l))
        .collect();
    assert_eq!(paths, ["/srv", "/srv/hello.txt", "/srv/ran.txt"], "{d:#?}");

    let n = normalized_config(&f.config);
    assert!(n.get("created").is_none());
    assert_eq!(n["config"]["Cmd"], serde_json::json!(["sh"]));
}

#[test]
fn buildah_pulls_with_tls_and_auth() {
    let reg = Registry::tls_with_auth("kiln", "pw").unwrap();
    let base = BaseImage::busybox().unwrap().push_to(&reg, "bb:1").unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nARG WHO\nRUN echo \"$WHO\" > /who\n"),
    )
    .unwrap();
    let img = BuildahBuild::new(ctx.path(), "kiln-test/auth:1")
        .pull_from(&reg)
        .build_arg("WHO", "me")
        .run()
        .unwrap();
    assert_eq!(img.flatten().unwrap().text("/who").as_deref(), Some("me\n"));
}

#[test]
fn buildah_failure_reports_stderr() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing.txt /\n",
    )
    .unwrap();
    let err = BuildahBuild::new(ctx.path(), "kiln-test/fail:1")
        .run()
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("missing.txt"), "{msg}");
}

#[test]
fn umoci_unpack_matches_flattened() {
    let img = BaseImage::busybox_two_layers().unwrap();
    let work = tempfile::tempdir().unwrap();
    let rootfs = umoci_unpack(img.layout_dir(), img.tag(), &work.path().join("bundle")).unwrap();
    let f = Flattened::from_layout(img.layout_dir(), img.tag()).unwrap();
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap().to_str(),
        f.get("/bin/sh").unwrap().link_target.as_deref()
    );
    assert!(!rootfs.join("opt/removed.txt").exists());
    assert!(!rootfs.join("opt/replaced/old.txt").exists());
    assert_eq!(
        fs::read_to_string(rootfs.join("opt/replaced/new.txt")).unwrap(),
        "new\n"
    );
    use std::os::unix::fs::MetadataExt;
    let home = fs::metadata(rootfs.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
}

#[test]
fn docker_probe_is_bounded() {
    let start = std::time::Instant::now();
    let _ = kiln_testkit::docker_available();
    assert!(start.elapsed() < std::time::Duration::from_secs(15));
}
