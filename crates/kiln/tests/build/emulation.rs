//! RUN steps of a foreign platform under real QEMU user emulation
//! (Debian's qemu-user-static, registered in binfmt_misc with the F flag by
//! scripts/install-deps), on a base the test makes from Debian's static
//! busybox of that architecture. Two builds, one per platform, joined by
//! `kiln index create` as per-architecture jobs are; checked with skopeo
//! (`--override-arch`), umoci unpack, and the foreign busybox of the image
//! run through the emulator directly.
//!
//! A single `--platform A,B` build pushes the same index; a warm rebuild of
//! it (cache on) takes every RUN step of both platforms from the cache and
//! moves no layer. With `--provenance` and `--sbom` each platform's image
//! gets its own attestation manifest in that index (registry, OCI layout and
//! tarball alike), and `docker load` of the two-platform tarball loads this
//! machine's image, which then runs.
//!
//! Where binfmt_misc has no such emulator the tests fail and say so: they
//! never pass without having run anything emulated.

use crate::build_common;

use std::fs;
use std::path::Path;
use std::process::Command;

use build_common::{stderr, Kiln};
use kiln_testkit::{
    skopeo_copy_with, skopeo_inspect_for_platform, skopeo_inspect_raw, unpack_pushed_image, Access,
    BaseImage, CopyOptions, InspectKind, Platform, Registry,
};

/// QEMU's name of a Go architecture.
fn qemu_name(arch: &str) -> &str {
    match arch {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        other => other,
    }
}

/// Fails the test, saying what to do, unless the foreign platform's
/// emulator is registered and enabled with the F flag.
fn require_emulator(foreign: &Platform) {
    let entry = format!(
        "/proc/sys/fs/binfmt_misc/qemu-{}",
        qemu_name(&foreign.architecture)
    );
    let text = fs::read_to_string(&entry).unwrap_or_default();
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap_or("");
    assert!(
        text.starts_with("enabled") && flags.contains('F'),
        "these tests need {entry} enabled with the F flag (found {text:?}): run \
         scripts/install-deps (qemu-user-static, binfmt-support, binfmt_misc mounted, \
         update-binfmts --enable)"
    );
}

/// The ELF machine field of a binary (0xB7 aarch64, 0x3E x86-64).
fn elf_machine(path: &Path) -> u16 {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", path.display());
    u16::from_le_bytes([bytes[18], bytes[19]])
}

fn elf_machine_of(arch: &str) -> u16 {
    match arch {
        "arm64" => 0xB7,
        "amd64" => 0x3E,
        other => panic!("no ELF machine known for {other}"),
    }
}

const DOCKERFILE: &str = "\
ARG BASE
FROM $BASE
ARG TARGETPLATFORM
ARG TARGETARCH
RUN uname -m > /uname && cat /ARCH > /arch-seen \
    && echo \"$TARGETPLATFORM $TARGETARCH\" > /target
RUN busybox sha256sum /bin/busybox > /busybox.sha256
";

/// What every two-platform test starts from: a registry holding a busybox
/// base for this machine's platform and a foreign one, and a context whose
/// Dockerfile builds on it. Fails (never skips) without the emulator.
struct TwoPlatforms {
    host: Platform,
    foreign: Platform,
    reg: Registry,
    base_ref: String,
    ctx: tempfile::TempDir,
}

impl TwoPlatforms {
    /// `dockerfile` is handed the base's reference.
    fn start(dockerfile: impl FnOnce(&str) -> String) -> Self {
        let (host, foreign) = (Platform::host(), Platform::foreign());
        require_emulator(&foreign);
        let reg = Registry::plain().unwrap();
        let base = BaseImage::busybox_for_platforms(&[host.clone(), foreign.clone()]).unwrap();
        let base_ref = base.push_to(&reg, "busybox:multi").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("Dockerfile"), dockerfile(&base_ref)).unwrap();
        TwoPlatforms {
            host,
            foreign,
            reg,
            base_ref,
            ctx,
        }
    }

    /// The `--platform` value naming both.
    fn platforms(&self) -> String {
        format!(
            "linux/{},linux/{}",
            self.host.architecture, self.foreign.architecture
        )
    }

    /// `kiln build` of both platforms, `BASE` naming the base, pushed to
    /// `tag` in the registry.
    fn build(&self, tag: &str) -> Kiln {
        Kiln::build(self.ctx.path())
            .empty_docker_config()
            .args(["--insecure", "--insecure-pull", "--log-format=text"])
            .args(["--platform", &self.platforms()])
            .args(["--build-arg", &format!("BASE={}", self.base_ref)])
            .args(["-d", &self.reg.image_ref(tag)])
    }
}

#[test]
fn foreign_run_steps_run_under_qemu_and_the_images_join_into_one_index() {
    let t = TwoPlatforms::start(|_| DOCKERFILE.to_string());
    let TwoPlatforms {
        host, foreign, reg, ..
    } = &t;

    for p in [host, foreign] {
        let platform = format!("linux/{}", p.architecture);
        Kiln::build(t.ctx.path())
            .empty_docker_config()
            .args(["--insecure", "--insecure-pull", "--log-format=text"])
            .args(["--custom-platform", &platform])
            .args(["--build-arg", &format!("BASE={}", t.base_ref)])
            .args(["-d", &reg.image_ref(&format!("app:{}", p.architecture))])
            .success();
    }
    let out = Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .args([
            "index",
            "create",
            "--insecure",
            "--insecure-pull",
            "--log-format=text",
        ])
        .args(["-d", &reg.image_ref("app:multi")])
        .arg(reg.image_ref(&format!("app:{}", host.architecture)))
        .arg(reg.image_ref(&format!("app:{}", foreign.architecture)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let index = skopeo_inspect_raw(&reg.image_ref("app:multi"), false).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");

    let work = tempfile::tempdir().unwrap();
    let access = Access::for_registry(reg);
    for p in [host, foreign] {
        // A client on that platform gets that platform's image.
        let config = skopeo_inspect_for_platform(
            &reg.image_ref("app:multi"),
            &access,
            InspectKind::Config,
            p,
        )
        .unwrap();
        assert_eq!(config["architecture"], p.architecture.as_str(), "{config}");

        // Unpacked by umoci, the image holds what its RUN steps saw.
        let rootfs = unpack_pushed_image(
            reg,
            &access,
            &format!("app:{}", p.architecture),
            &work.path().join(&p.architecture),
        )
        .unwrap();
        let read = |name: &str| fs::read_to_string(rootfs.join(name)).unwrap();
        // The kernel saw the step's machine as the emulated one.
        assert_eq!(read("uname"), format!("{}\n", qemu_name(&p.architecture)));
        assert_eq!(read("arch-seen"), format!("{}\n", p.architecture));
        let target_platform = match &p.variant {
            Some(v) if p.architecture != "amd64" => {
                format!("linux/{}/{v}", p.architecture)
            }
            _ => format!("linux/{}", p.architecture),
        };
        let target = read("target");
        assert!(
            target == format!("{target_platform} {}\n", p.architecture)
                || target == format!("linux/{} {}\n", p.architecture, p.architecture),
            "TARGETPLATFORM TARGETARCH: {target:?}"
        );
        let busybox = rootfs.join("bin/busybox");
        assert_eq!(elf_machine(&busybox), elf_machine_of(&p.architecture));
        assert!(read("busybox.sha256").contains(" /bin/busybox"));

        // The image's own busybox runs through the emulator, called directly.
        if p.architecture != host.architecture {
            let qemu = format!("qemu-{}-static", qemu_name(&p.architecture));
            let ran = Command::new(&qemu)
                .arg(&busybox)
                .args(["cat"])
                .arg(rootfs.join("uname"))
                .output()
                .unwrap_or_else(|e| panic!("running {qemu}: {e} (qemu-user-static)"));
            assert!(ran.status.success(), "{}", stderr(&ran));
            assert_eq!(
                String::from_utf8_lossy(&ran.stdout),
                format!("{}\n", qemu_name(&p.architecture))
            );
        }
    }
}

#[test]
fn one_build_for_two_platforms_pushes_one_index_of_both() {
    let t = TwoPlatforms::start(|_| DOCKERFILE.to_string());
    let TwoPlatforms {
        host, foreign, reg, ..
    } = &t;
    let work = tempfile::tempdir().unwrap();
    let digest_file = work.path().join("digest");
    t.build("app:both")
        .arg_path("--digest-file", &digest_file)
        .arg_path("--oci-layout-path", &work.path().join("layout"))
        .arg_path("--tar-path", &work.path().join("both.tar"))
        .success();

    let index = skopeo_inspect_raw(&reg.image_ref("app:both"), false).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let access = Access::for_registry(reg);
    // The digest file names the index (skopeo's digest of the tag's manifest).
    let summary = kiln_testkit::skopeo_inspect_with(
        &reg.image_ref("app:both"),
        &access,
        InspectKind::Summary,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(&digest_file).unwrap(),
        summary["Digest"].as_str().unwrap()
    );
    for (entry, p) in entries.iter().zip([host, foreign]) {
        assert!(p.matches_json(&entry["platform"]), "{index}");
        let config = skopeo_inspect_for_platform(
            &reg.image_ref("app:both"),
            &access,
            InspectKind::Config,
            p,
        )
        .unwrap();
        assert_eq!(config["architecture"], p.architecture.as_str(), "{config}");
        let digest = entry["digest"].as_str().unwrap();
        let rootfs = unpack_pushed_image(
            reg,
            &access,
            &format!("app@{digest}"),
            &work.path().join(&p.architecture),
        )
        .unwrap();
        let read = |name: &str| fs::read_to_string(rootfs.join(name)).unwrap();
        assert_eq!(read("uname"), format!("{}\n", qemu_name(&p.architecture)));
        assert_eq!(read("arch-seen"), format!("{}\n", p.architecture));
        assert!(
            read("target").ends_with(&format!(" {}\n", p.architecture)),
            "{}",
            read("target")
        );
        assert_eq!(
            elf_machine(&rootfs.join("bin/busybox")),
            elf_machine_of(&p.architecture)
        );
    }
    // The OCI layout holds the index too, named by the tag, with every blob
    // of both images (skopeo copies all of them) and the same layers.
    let layout = format!("oci:{}:both", work.path().join("layout").display());
    let copy = work.path().join("copy");
    skopeo_copy_with(
        &layout,
        &format!("oci:{}:all", copy.display()),
        &CopyOptions {
            all: true,
            preserve_digests: true,
            ..CopyOptions::default()
        },
    )
    .unwrap();
    for p in [host, foreign] {
        let from_layout =
            skopeo_inspect_for_platform(&layout, &Access::insecure(), InspectKind::Summary, p)
                .unwrap();
        let from_registry = skopeo_inspect_for_platform(
            &reg.image_ref("app:both"),
            &access,
            InspectKind::Summary,
            p,
        )
        .unwrap();
        assert_eq!(from_layout["Architecture"], p.architecture.as_str());
        assert_eq!(from_layout["Layers"], from_registry["Layers"], "{p:?}");
    }
    // The tarball is an OCI archive of the index, and for the classic
    // `docker load` (one image per tag) names this machine's image.
    let tar = work.path().join("both.tar");
    for p in [host, foreign] {
        let from_tar = skopeo_inspect_for_platform(
            &format!("oci-archive:{}", tar.display()),
            &Access::insecure(),
            InspectKind::Summary,
            p,
        )
        .unwrap();
        assert_eq!(from_tar["Architecture"], p.architecture.as_str());
    }
    let docker = kiln_testkit::skopeo_inspect_with(
        &format!("docker-archive:{}", tar.display()),
        &Access::insecure(),
        InspectKind::Summary,
    )
    .unwrap();
    assert_eq!(
        docker["Architecture"],
        host.architecture.as_str(),
        "{docker}"
    );
    let mut archive = tar::Archive::new(fs::File::open(&tar).unwrap());
    let manifest: serde_json::Value = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
        .map(|e| serde_json::from_reader(e).unwrap())
        .expect("manifest.json in the tarball");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!([reg.image_ref("app:both")]),
        "{manifest}"
    );
    // Only the index is tagged: the per-platform images are there by digest.
    let mut resp = reg
        .http_agent()
        .unwrap()
        .get(format!("{}/v2/app/tags/list", reg.url()))
        .call()
        .unwrap();
    let tags = resp.body_mut().read_to_string().unwrap();
    assert!(
        tags.contains("\"both\"") && !tags.contains("latest"),
        "{tags}"
    );
}

#[test]
fn a_warm_two_platform_rebuild_downloads_no_layer() {
    let t = TwoPlatforms::start(|_| DOCKERFILE.to_string());
    let reg = &t.reg;
    // Every request of both builds goes through the proxy, whose log shows each.
    let proxy = kiln_testkit::FaultProxy::start(&reg.host()).unwrap();
    let build = || {
        let out = Kiln::build(t.ctx.path())
            .empty_docker_config()
            .args(["--insecure", "--insecure-pull", "--log-format=text"])
            .args(["--platform", &t.platforms(), "--cache=true"])
            .args(["--cache-repo", &format!("{}/cache", proxy.host())])
            .args([
                "--build-arg",
                &format!("BASE={}/busybox:multi", proxy.host()),
            ])
            .args(["-d", &format!("{}/app:both", proxy.host())])
            .success();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cold_log = build();
    let cold = proxy.log();
    let warm_log = build();
    let warm: Vec<String> = proxy.log()[cold.len()..].to_vec();
    // Both RUN steps of both platforms came from the cache, none before.
    let hits = |log: &str| log.lines().filter(|l| l.contains("CACHED")).count();
    assert_eq!(hits(&cold_log), 0, "{cold_log}");
    assert_eq!(hits(&warm_log), 4, "{warm_log}");

    let index = skopeo_inspect_raw(&reg.image_ref("app:both"), false).unwrap();
    let mut layers = Vec::new();
    for entry in index["manifests"].as_array().unwrap() {
        let digest = entry["digest"].as_str().unwrap();
        let manifest = skopeo_inspect_raw(&reg.image_ref(&format!("app@{digest}")), false).unwrap();
        for l in manifest["layers"].as_array().unwrap() {
            layers.push(l["digest"].as_str().unwrap().to_string());
        }
    }
    // Two platforms, each its base layer and two RUN layers.
    assert_eq!(layers.len(), 6, "{index}");
    // The cold build downloaded the bases (its RUN steps needed them).
    assert!(
        cold.iter()
            .any(|r| r.starts_with("GET ") && r.contains(&format!("/blobs/{}", layers[0]))),
        "{cold:#?}\n{cold_log}"
    );
    for d in &layers {
        let moved: Vec<&String> = warm
            .iter()
            .filter(|r| {
                (r.starts_with("GET ") || r.starts_with("PUT ") || r.starts_with("PATCH "))
                    && r.contains(d.as_str())
            })
            .collect();
        assert!(
            moved.is_empty(),
            "layer {d} was transferred: {moved:#?}\n{warm_log}"
        );
    }
}

#[test]
fn foreign_run_steps_run_in_both_isolations() {
    // The emulator is the step's process, confined as a native step is (the
    // seccomp filter is the host architecture's, and so are its calls).
    let t = TwoPlatforms::start(|base| {
        format!("FROM {base}\nRUN uname -m > /uname && busybox --help | head -1 > /help\n")
    });
    let TwoPlatforms {
        host, foreign, reg, ..
    } = &t;
    for isolation in ["namespace", "chroot"] {
        let name = format!("app:{isolation}");
        t.build(&name).args(["--isolation", isolation]).success();
        let index = skopeo_inspect_raw(&reg.image_ref(&name), false).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        for (entry, p) in entries.iter().zip([host, foreign]) {
            let digest = entry["digest"].as_str().unwrap();
            let img = kiln_testkit::Flattened::from_reference(
                &reg.image_ref(&format!("app@{digest}")),
                &Access::for_registry(reg),
            )
            .unwrap();
            let read = |f: &str| img.text(f).unwrap_or_else(|| panic!("{isolation}: no {f}"));
            assert_eq!(
                read("/uname"),
                format!("{}\n", qemu_name(&p.architecture)),
                "{isolation}"
            );
            assert!(read("/help").starts_with("BusyBox v"), "{isolation}");
        }
    }
}

#[test]
fn a_build_platform_stage_runs_once_natively_for_every_platform() {
    let t = TwoPlatforms::start(|base| {
        format!(
            "FROM --platform=$BUILDPLATFORM {base} AS tools\n\
             RUN uname -m > /built-on && echo ran-the-tools-stage\n\
             FROM {base}\n\
             COPY --from=tools /built-on /built-on\n\
             RUN uname -m > /runs-on\n"
        )
    });
    let TwoPlatforms {
        host, foreign, reg, ..
    } = &t;
    // No --cache: the platforms still share the tools stage.
    let out = t.build("app:both").success();
    let log = stderr(&out);
    let ran = log
        .lines()
        .filter(|l| l.trim_end().ends_with("| ran-the-tools-stage"))
        .count();
    assert_eq!(ran, 1, "the tools stage ran {ran} times:\n{log}");
    let index = skopeo_inspect_raw(&reg.image_ref("app:both"), false).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    for (entry, p) in entries.iter().zip([host, foreign]) {
        let digest = entry["digest"].as_str().unwrap();
        let img = kiln_testkit::Flattened::from_reference(
            &reg.image_ref(&format!("app@{digest}")),
            &Access::for_registry(reg),
        )
        .unwrap();
        // Built natively, once; run where the image runs.
        assert_eq!(
            img.text("/built-on").unwrap(),
            format!("{}\n", qemu_name(&host.architecture))
        );
        assert_eq!(
            img.text("/runs-on").unwrap(),
            format!("{}\n", qemu_name(&p.architecture))
        );
    }
}

/// The tag's index lists every image, then one attestation manifest per
/// image naming it, as BuildKit's multi-platform index does; returns the
/// images' digests in the order of `platforms`.
fn check_attested_index(index: &serde_json::Value, platforms: &[&Platform]) -> Vec<String> {
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2 * platforms.len(), "{index}");
    let (images, attestations) = entries.split_at(platforms.len());
    for (image, p) in images.iter().zip(platforms) {
        assert!(p.matches_json(&image["platform"]), "{index}");
        assert!(image.get("annotations").is_none(), "{index}");
    }
    for (att, image) in attestations.iter().zip(images) {
        assert_eq!(att["platform"]["os"], "unknown", "{index}");
        assert_eq!(att["platform"]["architecture"], "unknown", "{index}");
        assert_eq!(
            att["annotations"]["vnd.docker.reference.type"], "attestation-manifest",
            "{index}"
        );
        assert_eq!(
            att["annotations"]["vnd.docker.reference.digest"], image["digest"],
            "{index}"
        );
    }
    images
        .iter()
        .map(|i| i["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The index an OCI layout directory or archive's `index.json` names,
/// read with `read` (a path inside the layout to its bytes).
fn layout_index(read: impl Fn(&str) -> Vec<u8>) -> serde_json::Value {
    let top: serde_json::Value = serde_json::from_slice(&read("index.json")).unwrap();
    let entry = &top["manifests"][0];
    assert_eq!(
        entry["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{top}"
    );
    let hex = entry["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    serde_json::from_slice(&read(&format!("blobs/sha256/{hex}"))).unwrap()
}

#[test]
fn two_platforms_with_statements_give_each_image_its_own_attestation_manifest() {
    let t = TwoPlatforms::start(|_| DOCKERFILE.to_string());
    let TwoPlatforms {
        host, foreign, reg, ..
    } = &t;
    let work = tempfile::tempdir().unwrap();
    t.build("app:att")
        .args(["--provenance=mode=max", "--sbom"])
        .arg_path("--sbom-file", &work.path().join("sbom.json"))
        .arg_path("--oci-layout-path", &work.path().join("layout"))
        .arg_path("--tar-path", &work.path().join("att.tar"))
        .success();

    // The registry, read by skopeo and curl.
    let index = skopeo_inspect_raw(&reg.image_ref("app:att"), false).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let images = check_attested_index(&index, &[host, foreign]);
    let attestations = &index["manifests"].as_array().unwrap()[2..];
    for ((att, image), p) in attestations.iter().zip(&images).zip([host, foreign]) {
        let digest = att["digest"].as_str().unwrap();
        let manifest = skopeo_inspect_raw(&reg.image_ref(&format!("app@{digest}")), false).unwrap();
        let mut predicates = Vec::new();
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
            let url = format!(
                "{}/v2/app/blobs/{}",
                reg.url(),
                layer["digest"].as_str().unwrap()
            );
            let got = Command::new("curl").args(["-fsS", &url]).output().unwrap();
            assert!(got.status.success(), "curl {url}: {}", stderr(&got));
            let statement: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
            // Each statement is about its own platform's image.
            assert_eq!(
                format!(
                    "sha256:{}",
                    statement["subject"][0]["digest"]["sha256"]
                        .as_str()
                        .unwrap()
                ),
                *image,
                "{statement}"
            );
            let name = statement["subject"][0]["name"].as_str().unwrap();
            assert!(
                name.contains(&format!("platform=linux%2F{}", p.architecture)),
                "{name}"
            );
            let predicate = statement["predicateType"].as_str().unwrap().to_string();
            if predicate == "https://slsa.dev/provenance/v1" {
                let built_for = statement["predicate"]["buildDefinition"]["externalParameters"]
                    ["request"]["args"]["platform"]
                    .as_str()
                    .unwrap();
                assert!(
                    built_for.starts_with(&format!("linux/{}", p.architecture)),
                    "{built_for}"
                );
            }
            predicates.push(predicate);
        }
        assert_eq!(
            predicates,
            [
                "https://slsa.dev/provenance/v1",
                "https://spdx.dev/Document"
            ],
            "{manifest}"
        );
        // One SBOM file per platform, about that platform's image.
        let prefix = format!("sbom.linux_{}", p.architecture);
        let file = fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|f| {
                let name = f.file_name().unwrap().to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".json")
            })
            .unwrap_or_else(|| panic!("no {prefix}*.json in {}", work.path().display()));
        let sbom: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            format!(
                "sha256:{}",
                sbom["subject"][0]["digest"]["sha256"].as_str().unwrap()
            ),
            *image
        );
    }
    assert!(
        !work.path().join("sbom.json").exists(),
        "one file per platform"
    );

    // The OCI layout and the tarball hold the same index.
    let layout = work.path().join("layout");
    let from_layout = layout_index(|name| fs::read(layout.join(name)).unwrap());
    assert_eq!(
        from_layout["manifests"], index["manifests"],
        "{from_layout}"
    );
    let mut tar_files = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(fs::File::open(work.path().join("att.tar")).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        tar_files.insert(name, bytes);
    }
    let from_tar = layout_index(|name| tar_files[name].clone());
    assert_eq!(from_tar["manifests"], index["manifests"], "{from_tar}");
    // skopeo finds each platform's image in the layout by the index.
    for p in [host, foreign] {
        let summary = skopeo_inspect_for_platform(
            &format!("oci:{}:att", layout.display()),
            &Access::insecure(),
            InspectKind::Summary,
            p,
        )
        .unwrap();
        assert_eq!(summary["Architecture"], p.architecture.as_str());
    }
}

#[test]
fn docker_loads_this_machines_image_from_a_two_platform_tarball() {
    kiln_testkit::require_docker("`docker load` of a two-platform tarball");
    let t = TwoPlatforms::start(|_| DOCKERFILE.to_string());
    let TwoPlatforms {
        host, foreign, reg, ..
    } = &t;
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("both.tar");
    // With statements: the tarball's index also lists attestation manifests.
    t.build("app:load")
        .arg("--provenance")
        .arg_path("--tar-path", &tar)
        .success();
    let index = skopeo_inspect_raw(&reg.image_ref("app:load"), false).unwrap();
    let images = check_attested_index(&index, &[host, foreign]);
    let host_manifest =
        skopeo_inspect_raw(&reg.image_ref(&format!("app@{}", images[0])), false).unwrap();
    let host_config = host_manifest["config"]["digest"].as_str().unwrap();

    let tag = reg.image_ref("app:load");
    let docker = |args: &[&str]| {
        assert_cmd::Command::new("docker")
            .args(args)
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap()
    };
    let loaded = assert_cmd::Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(&tar)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(loaded.status.success(), "docker load: {}", stderr(&loaded));
    let said = String::from_utf8_lossy(&loaded.stdout).into_owned();
    let inspected = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Os}}/{{.Architecture}}",
        &tag,
    ]);
    let ran = docker(&[
        "run",
        "--rm",
        "--network=none",
        &tag,
        "cat",
        "/arch-seen",
        "/uname",
    ]);
    let _ = docker(&["rmi", "--force", &tag]);
    assert!(said.contains(&tag), "docker load printed: {said}");
    assert!(
        inspected.status.success(),
        "docker image inspect: {}",
        stderr(&inspected)
    );
    // The image Docker holds is this machine's: its config is the one pushed.
    assert_eq!(
        String::from_utf8_lossy(&inspected.stdout).trim(),
        format!("{host_config} linux/{}", host.architecture)
    );
    assert!(ran.status.success(), "docker run: {}", stderr(&ran));
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        format!("{}\n{}\n", host.architecture, qemu_name(&host.architecture))
    );
}

#[test]
fn two_platforms_with_referrers_give_each_image_its_own_artifacts() {
    let t = TwoPlatforms::start(|_| DOCKERFILE.to_string());
    let TwoPlatforms {
        host, foreign, reg, ..
    } = &t;
    t.build("app:ref")
        .args(["--provenance", "--attestation-format=referrers"])
        .success();
    // The tag's index lists the images only; each image's statements are
    // artifacts about it, under its `sha256-<hex>` fallback tag (this
    // registry has no referrers API).
    let index = skopeo_inspect_raw(&reg.image_ref("app:ref"), false).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    for (entry, p) in entries.iter().zip([host, foreign]) {
        assert!(p.matches_json(&entry["platform"]), "{index}");
        let digest = entry["digest"].as_str().unwrap();
        let tag = format!("app:sha256-{}", digest.trim_start_matches("sha256:"));
        let referrers = skopeo_inspect_raw(&reg.image_ref(&tag), false).unwrap();
        let listed = referrers["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{referrers}");
        let artifact = skopeo_inspect_raw(
            &reg.image_ref(&format!("app@{}", listed[0]["digest"].as_str().unwrap())),
            false,
        )
        .unwrap();
        assert_eq!(artifact["subject"]["digest"], digest, "{artifact}");
        assert_eq!(artifact["artifactType"], "application/vnd.in-toto+json");
    }
}
