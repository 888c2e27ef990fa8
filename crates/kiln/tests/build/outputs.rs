//! `kiln build` outputs: several destinations, the docker tarball, the OCI
//! layout, the digest files, `--no-push`, `--reproducible` and `--label`,
//! each read back with independent tools (skopeo, umoci, the flattener,
//! `docker load` when a Docker engine is usable).

use crate::build_common;

use std::fs;
use std::io::Read;
use std::path::Path;

use assert_cmd::Command;
use build_common::{pushed_manifest_and_config, stderr, Kiln};
use kiln_testkit::{
    require_docker, skopeo_inspect, skopeo_inspect_with, umoci_unpack, Access, BaseImage,
    Flattened, InspectKind, Registry,
};
use serde_json::Value;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A context with `hello.txt` and a Dockerfile building on `from`.
fn context(from: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {from}\nCOPY hello.txt /hello.txt\nENV A=1\nCMD [\"cat\", \"/hello.txt\"]\n"),
    )
    .unwrap();
    ctx
}

/// The entries of a tar file: name → bytes (small files only are read).
fn tar_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = fs::File::open(path).unwrap();
    let mut out = Vec::new();
    // A minimal reader of ustar headers: the tarball is written by kiln and
    // read here without kiln code.
    let mut r = std::io::BufReader::new(file);
    let mut header = [0u8; 512];
    loop {
        r.read_exact(&mut header).unwrap();
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let field = |a: usize, b: usize| {
            String::from_utf8_lossy(&header[a..b])
                .trim_end_matches('\0')
                .trim()
                .to_string()
        };
        let name = field(0, 100);
        let prefix = field(345, 500);
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let size = u64::from_str_radix(&field(124, 136), 8).unwrap();
        let mut data = vec![0u8; size as usize];
        r.read_exact(&mut data).unwrap();
        let pad = (512 - size % 512) % 512;
        std::io::copy(&mut (&mut r).take(pad), &mut std::io::sink()).unwrap();
        out.push((name, data));
    }
    out
}

#[test]
fn destinations_tar_layout_and_digest_files_agree() {
    // FROM scratch: nothing decides the media types but kiln's default.
    let reg = Registry::plain().unwrap();
    let ctx = context("scratch");
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    let (d1, d2) = (reg.image_ref("app:1"), reg.image_ref("mirror/app:two"));
    Kiln::build(ctx.path())
        .args(["--destination", &d1, "--destination", &d2])
        .args(["--insecure", "--insecure-pull"])
        .args(["--label", "org.example.team=builders", "--label", "empty="])
        .arg_path("--tar-path", &o.join("image.tar"))
        .arg_path("--oci-layout-path", &o.join("layout"))
        .arg_path("--digest-file", &o.join("digest"))
        .arg_path("--image-name-with-digest-file", &o.join("names"))
        .arg_path("--image-name-tag-with-digest-file", &o.join("name-tags"))
        .success();

    // Both destinations hold the same manifest, whose digest every file names.
    let digest = fs::read_to_string(o.join("digest")).unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest:?}"
    );
    for d in [&d1, &d2] {
        let inspected = skopeo_inspect(d, false).unwrap();
        assert_eq!(inspected["Digest"], digest.as_str(), "digest of {d}");
    }
    let host = reg.host();
    assert_eq!(
        fs::read_to_string(o.join("names")).unwrap(),
        format!("{host}/app@{digest}\n{host}/mirror/app@{digest}\n")
    );
    assert_eq!(
        fs::read_to_string(o.join("name-tags")).unwrap(),
        format!("{host}/app:1@{digest}\n{host}/mirror/app:two@{digest}\n")
    );

    // Docker schema 2 by default, labels from --label.
    let (manifest, config) = pushed_manifest_and_config(&reg, "app:1");
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    assert_eq!(config["config"]["Labels"]["org.example.team"], "builders");
    assert_eq!(config["config"]["Labels"]["empty"], "");
    let pushed = Flattened::from_registry(&reg, "app:1").unwrap();
    assert_eq!(pushed.text("/hello.txt").as_deref(), Some("hello\n"));

    // The docker tarball: manifest.json tagged with both destinations, and
    // the same config as the registry has.
    let entries = tar_entries(&o.join("image.tar"));
    let get = |name: &str| {
        entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{name} not in the tarball"))
    };
    let tar_manifest: Value = serde_json::from_slice(&get("manifest.json")).unwrap();
    let m = &tar_manifest[0];
    assert_eq!(
        m["RepoTags"],
        serde_json::json!([d1.clone(), d2.clone()]),
        "{tar_manifest}"
    );
    let tar_config: Value = serde_json::from_slice(&get(m["Config"].as_str().unwrap())).unwrap();
    assert_eq!(tar_config, config, "the tarball's config is the pushed one");
    assert_eq!(
        m["Layers"].as_array().unwrap().len(),
        manifest["layers"].as_array().unwrap().len()
    );
    for layer in m["Layers"].as_array().unwrap() {
        get(layer.as_str().unwrap());
    }
    docker_load(&o.join("image.tar"), &d1);

    // The OCI layout: tagged with the first destination's tag and readable
    // by skopeo. It holds the OCI form of the pushed Docker schema 2 image
    // (skopeo and umoci read only OCI manifests there): the same config
    // blob (image ID) and layer blobs under an OCI manifest.
    let layout = o.join("layout");
    let oci_ref = format!("oci:{}:1", layout.display());
    let raw = skopeo_inspect_with(&oci_ref, &Access::insecure(), InspectKind::Raw).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(raw["config"]["digest"], manifest["config"]["digest"]);
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let digests = |m: &Value| -> Vec<Value> {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].clone())
            .collect()
    };
    assert_eq!(digests(&raw), digests(&manifest));
    let inspected =
        skopeo_inspect_with(&oci_ref, &Access::insecure(), InspectKind::Summary).unwrap();
    assert_eq!(inspected["Labels"]["org.example.team"], "builders");
    let bundle = o.join("bundle");
    let rootfs = umoci_unpack(&layout, "1", &bundle).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.join("hello.txt")).unwrap(),
        "hello\n"
    );
    let from_layout = Flattened::from_layout(&layout, "1").unwrap();
    let d = kiln_testkit::diff(&from_layout, &pushed, &[]);
    assert!(
        d.is_empty(),
        "layout and registry differ:\n{}",
        d.join("\n")
    );
}

/// `docker load` of the tarball.
fn docker_load(tar: &Path, tag: &str) {
    require_docker("`docker load` of the tarball");
    let out = Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(tar)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(out.status.success(), "docker load: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(tag), "docker load printed: {text}");
    let _ = Command::new("docker").args(["rmi", tag]).output();
}

#[test]
fn no_push_writes_only_the_tarball() {
    // FROM scratch: no registry is needed, and the destination names a port
    // nothing listens on, so any attempt to push would fail the build.
    let ctx = context("scratch");
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("image.tar");
    let dest = "127.0.0.1:9/never/pushed:1";
    Kiln::build(ctx.path())
        .args(["--no-push", "--destination", dest])
        .arg_path("--tar-path", &tar)
        .arg_path("--digest-file", &out.path().join("digest"))
        .success();
    let entries = tar_entries(&tar);
    let manifest = entries
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .expect("manifest.json in the tarball");
    let manifest: Value = serde_json::from_slice(&manifest.1).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([dest]));
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 1);
    let digest = fs::read_to_string(out.path().join("digest")).unwrap();
    assert!(digest.starts_with("sha256:"), "{digest:?}");
}

#[test]
fn reproducible_builds_give_one_digest() {
    let reg = Registry::plain().unwrap();
    let base = BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let mut digests = Vec::new();
    for tag in ["r1", "r2"] {
        // A fresh context each time: new files, new mtimes, same content.
        let ctx = context(&base);
        let out = tempfile::tempdir().unwrap();
        Kiln::build(ctx.path())
            .args(["--destination", &reg.image_ref(&format!("repro:{tag}"))])
            .args(["--insecure", "--insecure-pull", "--reproducible"])
            .arg_path("--digest-file", &out.path().join("digest"))
            .success();
        digests.push(fs::read_to_string(out.path().join("digest")).unwrap());
    }
    assert_eq!(digests[0], digests[1], "two --reproducible builds");
    let (_, config) = pushed_manifest_and_config(&reg, "repro:r1");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z", "{config}");
    // The base's own history entry keeps its date; kiln's steps have none.
    for h in config["history"].as_array().unwrap().iter().skip(1) {
        if let Some(created) = h.get("created") {
            assert_eq!(created, "1970-01-01T00:00:00Z", "{h}");
        }
    }
    let img = Flattened::from_registry(&reg, "repro:r2").unwrap();
    assert_eq!(img.text("/hello.txt").as_deref(), Some("hello\n"));
}

/// A pushed image's manifest and layer blobs, as (media type, bytes).
fn pushed_layers(reg: &Registry, name: &str) -> (Value, Vec<(String, Vec<u8>)>) {
    let (dir, manifest) = build_common::pushed_dir(reg, name);
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let media = l["mediaType"].as_str().unwrap().to_string();
            (media, fs::read(build_common::blob_path(&dir, l)).unwrap())
        })
        .collect();
    (manifest, layers)
}

/// `path` from a compressed layer, read by the system's `decompressor`
/// (`zstd` or `gzip`) and tar, never by kiln's code.
fn file_from_layer(layer: &[u8], decompressor: &str, path: &str) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("layer");
    fs::write(&blob, layer).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{decompressor} -dc < {} | tar -xOf - {path}",
            blob.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn zstd_layers_and_compression_levels_reach_the_registry() {
    let reg = Registry::plain().unwrap();
    let ctx = context("scratch");
    // Compressible content large enough for the level to matter.
    let text: String = (0..40_000)
        .map(|i| format!("line {i} of a compressible file\n"))
        .collect();
    fs::write(ctx.path().join("hello.txt"), &text).unwrap();
    Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref("z:1")])
        .args(["--insecure", "--insecure-pull", "--compression", "zstd"])
        .success();
    let (manifest, layers) = pushed_layers(&reg, "z:1");
    // zstd layers exist only in OCI manifests.
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(!layers.is_empty());
    for (media, blob) in &layers {
        assert_eq!(media, "application/vnd.oci.image.layer.v1.tar+zstd");
        assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    }
    assert!(
        file_from_layer(&layers[0].1, "zstd", "hello.txt") == text.as_bytes(),
        "zstd layer content differs"
    );

    // --compression-level: gzip at 1 and at 9 give different blobs, the
    // higher level a smaller one, with the same content.
    let mut sizes = Vec::new();
    for level in ["1", "9"] {
        let tag = format!("g:{level}");
        Kiln::build(ctx.path())
            .args(["--destination", &reg.image_ref(&tag)])
            .args(["--insecure", "--insecure-pull", "--compression", "gzip"])
            .args(["--compression-level", level])
            .success();
        let (_, layers) = pushed_layers(&reg, &tag);
        assert_eq!(
            layers[0].0,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        sizes.push(layers[0].1.len());
        assert!(
            file_from_layer(&layers[0].1, "gzip", "hello.txt") == text.as_bytes(),
            "level {level}: content differs"
        );
    }
    assert!(
        sizes[1] < sizes[0],
        "level 9 {} >= level 1 {}",
        sizes[1],
        sizes[0]
    );
}
