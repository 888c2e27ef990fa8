//! `kiln index create` against real registries, checked with skopeo: images
//! pushed one per platform (as per-architecture CI jobs push them) joined
//! into one index whose entries keep each image's digest, with the platform
//! read from each image's config; blobs mounted across repositories of one
//! registry and copied across registries; a Docker manifest list for Docker
//! images; two images for one platform refused.

use std::fs;
use std::process::{Command, Output};

use assert_cmd::cargo::cargo_bin;
use kiln_testkit::{
    skopeo_copy_with, skopeo_inspect_for_platform, skopeo_inspect_raw, Access, BaseImage,
    CopyOptions, InspectKind, Platform, Registry,
};
use serde_json::Value;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// `kiln index create` with an empty Docker config, plain HTTP everywhere.
fn index_create(args: &[&str]) -> Output {
    let docker_config = tempfile::tempdir().unwrap();
    fs::write(docker_config.path().join("config.json"), "{\"auths\":{}}").unwrap();
    Command::new(cargo_bin("kiln"))
        .args(["index", "create", "--insecure", "--insecure-pull"])
        .args(["--log-format=text"])
        .args(args)
        .env("DOCKER_CONFIG", docker_config.path())
        .env("HOME", docker_config.path())
        .output()
        .unwrap()
}

/// The multi-arch test base pushed as `base:multi`, and its two images
/// copied (digests unchanged) to `app:<arch>` as per-platform jobs push
/// them. Returns the host's and the foreign image's manifests and digests.
struct PerPlatform {
    host: (String, Value),
    foreign: (String, Value),
}

fn push_per_platform(reg: &Registry, repo: &str, format: Option<&str>) -> PerPlatform {
    let base = BaseImage::busybox_multi_arch().unwrap();
    base.push_to(reg, "base:multi").unwrap();
    let index = skopeo_inspect_raw(&reg.image_ref("base:multi"), false).unwrap();
    let pick = |p: &Platform| {
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| p.matches_json(&m["platform"]))
            .unwrap();
        let digest = entry["digest"].as_str().unwrap().to_string();
        let tag = format!("{repo}:{}", p.architecture);
        let opts = CopyOptions {
            src: Access::insecure(),
            dest: Access::for_registry(reg),
            preserve_digests: format.is_none(),
            format: format.map(str::to_string),
            ..CopyOptions::default()
        };
        skopeo_copy_with(
            &format!("docker://{}", reg.image_ref(&format!("base@{digest}"))),
            &format!("docker://{}", reg.image_ref(&tag)),
            &opts,
        )
        .unwrap();
        let manifest = skopeo_inspect_raw(&reg.image_ref(&tag), false).unwrap();
        let digest = registry_digest(reg, &tag);
        (digest, manifest)
    };
    PerPlatform {
        host: pick(&Platform::host()),
        foreign: pick(&Platform::foreign()),
    }
}

/// The digest the registry itself gives a manifest (`Docker-Content-Digest`).
fn registry_digest(reg: &Registry, name: &str) -> String {
    let (repo, reference) = name.split_once(':').unwrap();
    let resp = reg
        .http_agent()
        .unwrap()
        .head(format!("{}/v2/{repo}/manifests/{reference}", reg.url()))
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200, "HEAD {name}");
    resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// What a client on `platform` resolves `reference` to: its config's
/// architecture and its layers.
fn resolved(reg: &Registry, reference: &str, platform: &Platform) -> (String, Vec<String>) {
    let access = Access::for_registry(reg);
    let summary =
        skopeo_inspect_for_platform(reference, &access, InspectKind::Summary, platform).unwrap();
    let layers = summary["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (
        summary["Architecture"].as_str().unwrap().to_string(),
        layers,
    )
}

#[test]
fn joins_per_platform_images_into_one_index_keeping_their_digests() {
    let reg = Registry::plain().unwrap();
    let images = push_per_platform(&reg, "app", None);
    let (host, foreign) = (Platform::host(), Platform::foreign());
    let work = tempfile::tempdir().unwrap();
    let digest_file = work.path().join("digest");
    let names_file = work.path().join("names");
    let out = index_create(&[
        "--destination",
        &reg.image_ref("app:multi"),
        "--destination",
        &reg.image_ref("app:also"),
        "--digest-file",
        digest_file.to_str().unwrap(),
        "--image-name-with-digest-file",
        names_file.to_str().unwrap(),
        &reg.image_ref(&format!("app:{}", host.architecture)),
        &reg.image_ref(&format!("app:{}", foreign.architecture)),
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let index = skopeo_inspect_raw(&reg.image_ref("app:multi"), false).unwrap();
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    // Each entry is the pushed image, byte for byte, with its config's platform.
    for (entry, (digest, manifest), platform) in [
        (&entries[0], &images.host, &host),
        (&entries[1], &images.foreign, &foreign),
    ] {
        assert_eq!(entry["digest"].as_str().unwrap(), digest, "{index}");
        assert_eq!(
            entry["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "{index}"
        );
        assert_eq!(entry["platform"]["os"], "linux", "{index}");
        assert_eq!(
            entry["platform"]["architecture"], platform.architecture,
            "{index}"
        );
        assert!(platform.matches_json(&entry["platform"]), "{index}");
        // A client on that platform gets that image (its layers are there).
        let (arch, layers) = resolved(&reg, &reg.image_ref("app:multi"), platform);
        assert_eq!(arch, platform.architecture);
        assert_eq!(layers, layer_digests(manifest));
    }
    // The digest files name the index, as the registry computes its digest.
    let index_digest = registry_digest(&reg, "app:multi");
    assert_eq!(fs::read_to_string(&digest_file).unwrap(), index_digest);
    assert_eq!(registry_digest(&reg, "app:also"), index_digest);
    assert_eq!(
        fs::read_to_string(&names_file).unwrap(),
        format!(
            "{host}/app@{index_digest}\n{host}/app@{index_digest}\n",
            host = reg.host()
        )
    );
    assert!(
        text(&out).contains(&format!("as {index_digest}")),
        "{}",
        text(&out)
    );
}

#[test]
fn blobs_are_mounted_within_a_registry_and_copied_across_registries() {
    let reg = Registry::plain().unwrap();
    let other = Registry::plain().unwrap();
    let images = push_per_platform(&reg, "app", None);
    let (host, foreign) = (Platform::host(), Platform::foreign());
    let sources = [
        reg.image_ref(&format!("app@{}", images.host.0)),
        reg.image_ref(&format!("app@{}", images.foreign.0)),
    ];
    let out = index_create(&[
        "-d",
        &reg.image_ref("elsewhere/app:multi"),
        "-d",
        &other.image_ref("mirror/app:multi"),
        &sources[0],
        &sources[1],
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Two images of one layer each: four blobs, mounted into the other
    // repository of the same registry, copied to the other registry.
    let log = text(&out);
    assert!(
        log.contains("(2 images; blobs: 0 already there, 4 mounted, 0 copied)"),
        "{log}"
    );
    assert!(
        log.contains("(2 images; blobs: 0 already there, 0 mounted, 4 copied)"),
        "{log}"
    );
    for (registry, name) in [(&reg, "elsewhere/app:multi"), (&other, "mirror/app:multi")] {
        let index = skopeo_inspect_raw(&registry.image_ref(name), false).unwrap();
        let digests: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(digests, [&images.host.0, &images.foreign.0], "{index}");
        for (platform, manifest) in [(&host, &images.host.1), (&foreign, &images.foreign.1)] {
            let (arch, layers) = resolved(registry, &registry.image_ref(name), platform);
            assert_eq!(arch, platform.architecture);
            assert_eq!(layers, layer_digests(manifest));
        }
        // Every blob of every image is in the destination: skopeo copies all.
        let layout = tempfile::tempdir().unwrap();
        skopeo_copy_with(
            &format!("docker://{}", registry.image_ref(name)),
            &format!("oci:{}:all", layout.path().display()),
            &CopyOptions {
                src: Access::for_registry(registry),
                all: true,
                preserve_digests: true,
                ..CopyOptions::default()
            },
        )
        .unwrap();
    }
}

#[test]
fn docker_images_make_a_docker_manifest_list() {
    let reg = Registry::plain().unwrap();
    let images = push_per_platform(&reg, "dock", Some("v2s2"));
    let (host, foreign) = (Platform::host(), Platform::foreign());
    assert_eq!(
        images.host.1["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let out = index_create(&[
        "-d",
        &reg.image_ref("dock:multi"),
        &reg.image_ref(&format!("dock:{}", host.architecture)),
        &reg.image_ref(&format!("dock:{}", foreign.architecture)),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let list = skopeo_inspect_raw(&reg.image_ref("dock:multi"), false).unwrap();
    assert_eq!(
        list["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json",
        "{list}"
    );
    assert_eq!(
        list["manifests"][0]["digest"].as_str().unwrap(),
        images.host.0
    );
    assert_eq!(
        list["manifests"][1]["digest"].as_str().unwrap(),
        images.foreign.0
    );
    let (arch, _) = resolved(&reg, &reg.image_ref("dock:multi"), &foreign);
    assert_eq!(arch, foreign.architecture);

    // --image-format=oci asks for an OCI index over the same manifests.
    let out = index_create(&[
        "--image-format=oci",
        "-d",
        &reg.image_ref("dock:oci"),
        &reg.image_ref(&format!("dock:{}", host.architecture)),
        &reg.image_ref(&format!("dock:{}", foreign.architecture)),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let index = skopeo_inspect_raw(&reg.image_ref("dock:oci"), false).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        index["manifests"][0]["digest"].as_str().unwrap(),
        images.host.0
    );
}

#[test]
fn refuses_two_images_for_one_platform_and_oci_images_in_a_docker_list() {
    let reg = Registry::plain().unwrap();
    let images = push_per_platform(&reg, "app", None);
    let host = Platform::host();
    let host_tag = reg.image_ref(&format!("app:{}", host.architecture));
    let by_digest = reg.image_ref(&format!("app@{}", images.host.0));
    let out = index_create(&["-d", &reg.image_ref("app:bad"), &host_tag, &by_digest]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains(&format!("{host_tag} and {by_digest} are both for linux/")),
        "{log}"
    );

    let out = index_create(&[
        "--image-format=docker",
        "-d",
        &reg.image_ref("app:bad"),
        &host_tag,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "{host_tag} is an OCI image (application/vnd.oci.image.manifest.v1+json)"
        )),
        "{}",
        text(&out)
    );
    // Nothing was tagged.
    let resp = reg
        .http_agent()
        .unwrap()
        .head(format!("{}/v2/app/manifests/bad", reg.url()))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[test]
fn an_index_source_gives_all_its_entries_as_listed() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox_multi_arch().unwrap();
    base.push_to(&reg, "base:multi").unwrap();
    let source = skopeo_inspect_raw(&reg.image_ref("base:multi"), false).unwrap();
    let out = index_create(&[
        "-d",
        &reg.image_ref("copy/app:multi"),
        &reg.image_ref("base:multi"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let index = skopeo_inspect_raw(&reg.image_ref("copy/app:multi"), false).unwrap();
    // Every entry as the source lists it: digest, size, media type, platform.
    assert_eq!(index["manifests"], source["manifests"], "{index}");
    for p in [Platform::host(), Platform::foreign()] {
        let (arch, _) = resolved(&reg, &reg.image_ref("copy/app:multi"), &p);
        assert_eq!(arch, p.architecture);
    }
}
