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
