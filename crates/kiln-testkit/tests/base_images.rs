//! Base images pushed to every registry variant and read back with skopeo.

use kiln_testkit::{skopeo_inspect_with, Access, BaseImage, InspectKind, Platform, Registry};

fn push_and_inspect(reg: &Registry) {
    let img = BaseImage::busybox().unwrap();
    let full = img.push_to(reg, "busybox:latest").unwrap();
    let summary =
        skopeo_inspect_with(&full, &Access::for_registry(reg), InspectKind::Summary).unwrap();
    assert_eq!(
        summary["Architecture"],
        Platform::host().architecture.as_str()
    );
    assert_eq!(summary["Os"], "linux");
    assert_eq!(summary["Layers"].as_array().unwrap().len(), 1);
    let env = summary["Env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e.as_str().unwrap().starts_with("PATH=")),
        "{summary}"
    );
}

#[test]
fn busybox_on_plain_registry() {
    kiln_testkit::tools_check().unwrap();
    push_and_inspect(&Registry::plain().unwrap());
}

#[test]
fn busybox_on_tls_registry() {
    push_and_inspect(&Registry::tls().unwrap());
}

#[test]
fn busybox_on_tls_auth_registry() {
    let reg = Registry::tls_with_auth("kiln", "hunter2").unwrap();
    push_and_inspect(&reg);
    // Without credentials the same inspect must be refused.
    let anon = Access {
        creds: None,
        ..Access::for_registry(&reg)
    };
    let err =
        skopeo_inspect_with(&reg.image_ref("busybox:latest"), &anon, InspectKind::Raw).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("unauthorized") || msg.contains("401"), "{msg}");
}

#[test]
fn busybox_on_plain_auth_registry() {
    let reg = Registry::builder().auth("u", "p").start().unwrap();
    push_and_inspect(&reg);
}

#[test]
fn multi_arch_index_keeps_both_platforms() {
    let reg = Registry::plain().unwrap();
    let img = BaseImage::busybox_multi_arch().unwrap();
    let full = img.push_to(&reg, "multi:latest").unwrap();
    let raw = skopeo_inspect_with(&full, &Access::for_registry(&reg), InspectKind::Raw).unwrap();
    let archs: Vec<&str> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(
        archs,
        [
            Platform::host().architecture.as_str(),
            Platform::foreign().architecture.as_str()
        ]
    );
}

#[test]
fn flattened_busybox_has_shell_and_users() {
    use kiln_testkit::{EntryKind, Flattened};
    let reg = Registry::plain().unwrap();
    let img = BaseImage::busybox().unwrap();
    let full = img.push_to(&reg, "busybox:latest").unwrap();
    // Read back through the registry, not from the local layout.
    let f = Flattened::from_registry(&reg, "busybox:latest").unwrap();
    let sh = f.get("/bin/sh").unwrap();
    assert_eq!(sh.kind, EntryKind::Symlink);
    assert_eq!(sh.link_target.as_deref(), Some("busybox"));
    let bb = f.get("/bin/busybox").unwrap();
    assert_eq!((bb.kind, bb.mode), (EntryKind::File, 0o755));
    assert!(f.text("/etc/passwd").unwrap().contains("app:x:1000:1000:"));
    assert!(f.text("/etc/group").unwrap().contains("staff:x:50:app"));
    assert_eq!(f.get("/tmp").unwrap().mode, 0o1777);
    let home = f.get("/home/app").unwrap();
    assert_eq!((home.uid, home.gid), (1000, 1000));
    assert_eq!(f.config["config"]["Cmd"], serde_json::json!(["sh"]));

    // The local layout reads the same.
    let local = Flattened::from_layout(img.layout_dir(), img.tag()).unwrap();
    let d = kiln_testkit::diff(&local, &f, &[]);
    assert!(d.is_empty(), "{}\n{full}", d.join("\n"));
}

#[test]
fn two_layer_whiteouts_apply() {
    use kiln_testkit::Flattened;
    let reg = Registry::plain().unwrap();
    let img = BaseImage::busybox_two_layers().unwrap();
    img.push_to(&reg, "two:latest").unwrap();
    let f = Flattened::from_registry(&reg, "two:latest").unwrap();
    let opt: Vec<&str> = f
        .entries
        .keys()
        .filter(|k| k.starts_with("/opt"))
        .map(String::as_str)
        .collect();
    assert_eq!(opt, ["/opt", "/opt/replaced", "/opt/replaced/new.txt"]);
    assert_eq!(f.text("/etc/motd").as_deref(), Some("two layers\n"));
    assert_eq!(f.manifest["layers"].as_array().unwrap().len(), 2);

    // diff names what differs, and honours ignores.
    let one = Flattened::from_layout(BaseImage::busybox().unwrap().layout_dir(), "latest").unwrap();
    let d = kiln_testkit::diff(&one, &f, &[]);
    assert_eq!(d.len(), 4, "{d:#?}");
    assert!(d.iter().any(|l| l.starts_with("only in b: /etc/motd")));
    assert!(kiln_testkit::diff(&one, &f, &["/opt", "/etc/motd"]).is_empty());
}

#[test]
fn multi_arch_flattens_per_platform() {
    use kiln_testkit::Flattened;
    let img = BaseImage::busybox_multi_arch().unwrap();
    let host = Flattened::from_layout(img.layout_dir(), img.tag()).unwrap();
    assert!(host.get("/bin/busybox").is_some());
    let foreign =
        Flattened::from_layout_for(img.layout_dir(), img.tag(), &Platform::foreign()).unwrap();
    assert_eq!(
        foreign.text("/ARCH").unwrap().trim(),
        Platform::foreign().architecture
    );
    assert_eq!(foreign.entries.len(), 1);
}

#[test]
fn tls_registry_is_really_verified() {
    let reg = Registry::tls().unwrap();
    BaseImage::busybox().unwrap().push_to(&reg, "bb:1").unwrap();
    // Verification on but without the test CA: must be refused.
    let no_ca = Access {
        tls_verify: true,
        cert_dir: None,
        creds: None,
    };
    let err = skopeo_inspect_with(&reg.image_ref("bb:1"), &no_ca, InspectKind::Raw).unwrap_err();
    assert!(format!("{err:#}").contains("certificate"), "{err:#}");
}

#[test]
fn docker_config_dir_is_accepted_by_skopeo() {
    let reg = Registry::builder().auth("cfg", "pw").start().unwrap();
    BaseImage::busybox().unwrap().push_to(&reg, "bb:1").unwrap();
    let authfile = reg.docker_config_dir().unwrap().join("config.json");
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(&authfile)
        .arg(format!("docker://{}", reg.image_ref("bb:1")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn custom_image_from_layers() {
    use kiln_testkit::layout::LayerBuilder;
    use kiln_testkit::{add_busybox_rootfs, Flattened};
    let mut b = LayerBuilder::new();
    add_busybox_rootfs(&mut b).unwrap();
    let root = b.finish().unwrap();
    let mut b = LayerBuilder::new();
    b.file("etc/onbuild-marker", 0o600, 1000, 1000, b"x")
        .unwrap();
    let extra = b.finish().unwrap();
    let runtime = serde_json::json!({ "User": "app", "OnBuild": ["RUN true"] });
    let img = BaseImage::from_layers(vec![root, extra], runtime).unwrap();
    let reg = Registry::plain().unwrap();
    img.push_to(&reg, "custom:1").unwrap();
    let f = Flattened::from_registry(&reg, "custom:1").unwrap();
    assert_eq!(f.config["config"]["User"], "app");
    assert_eq!(f.config["config"]["OnBuild"][0], "RUN true");
    assert_eq!(f.get("/etc/onbuild-marker").unwrap().uid, 1000);
    assert_eq!(f.config["history"].as_array().unwrap().len(), 2);
}
