//! kiln as Kaniko is used: inside an ordinary container (no
//! `--privileged`, the default seccomp profile and capabilities), where
//! namespaces and mounts are refused. `--isolation auto` must fall back to
//! chroot isolation and the build must push a correct image.
//!
//! The container image holds the kiln binary and the shared libraries
//! `ldd` lists, built `FROM scratch` by kiln itself into a docker tarball
//! and loaded: nothing is pulled from outside.

use assert_cmd::Command;
use kiln_testkit::{require_docker, BaseImage, Flattened, Registry};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);

/// The kiln binary and the libraries it loads, as (host path, path in image).
fn kiln_files() -> Vec<(PathBuf, PathBuf)> {
    let kiln = assert_cmd::cargo::cargo_bin("kiln");
    let mut files = vec![(kiln.clone(), PathBuf::from("kiln"))];
    let out = std::process::Command::new("ldd")
        .arg(&kiln)
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push((PathBuf::from(p), PathBuf::from(&p[1..])));
        }
    }
    files
}

/// Builds the kiln image with kiln and loads it into Docker as `tag`.
fn load_kiln_image(tag: &str) {
    let ctx = tempfile::tempdir().unwrap();
    let root = ctx.path().join("root");
    for (host, inside) in kiln_files() {
        let dest = root.join(inside);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        // Copies follow symlinks: the image holds the libraries themselves.
        fs::copy(&host, &dest).unwrap();
    }
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\nENTRYPOINT [\"/kiln\"]\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("kiln.tar");
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "--no-push", "--context"])
        .arg(ctx.path())
        .args(["--destination", tag, "--tar-path"])
        .arg(&tar)
        .arg("--kiln-dir")
        .arg(work.path().join("kd"))
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let load = Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(&tar)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
}

/// Removes the loaded image however the test ends.
struct LoadedImage(String);

impl Drop for LoadedImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "--force", &self.0])
            .output();
    }
}

const STEPS: &str = "\
FROM REGISTRY/busybox:latest
RUN echo built-in-a-container > /greeting && mkdir -p /app && id -u > /app/uid
RUN echo second >> /app/log && touch /app/w /app/n && chown app /app/w && chown 2000:2000 /app/n
COPY probe /probe
RUN /probe /no-such-node 0 0 > /app/probe 2>&1; rm /probe
";

/// Compiles the containment probe (`fixtures/containment/probe.c`)
/// statically into `dir`.
fn compile_probe(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containment/probe.c");
    let out = std::process::Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(dir.join("probe"))
        .arg(&source)
        .output()
        .expect("cc is needed to compile the probe");
    assert!(
        out.status.success(),
        "cc -static failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn auto_isolation_falls_back_to_chroot_in_an_unprivileged_container() {
    require_docker("building inside an unprivileged container");
    let tag = format!("kiln-selftest:{}", std::process::id());
    load_kiln_image(&tag);
    let _loaded = LoadedImage(tag.clone());

    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        STEPS.replace("REGISTRY", &reg.host()),
    )
    .unwrap();
    compile_probe(ctx.path());
    let work = tempfile::tempdir().unwrap();
    let mount = |host: &Path, inside: &str| format!("{}:{inside}", host.display());
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "host", "-v"])
        .arg(mount(ctx.path(), "/ctx"))
        .arg("-v")
        .arg(mount(work.path(), "/work"))
        .arg(&tag)
        .args(["build", "--context", "/ctx", "--kiln-dir", "/work/kd"])
        .args(["--destination", &format!("{}/in-container:1", reg.host())])
        .args(["--insecure", "--insecure-pull", "--isolation", "auto"])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("using chroot isolation"), "{log}");

    let img = Flattened::from_registry(&reg, "in-container:1").unwrap();
    assert_eq!(
        img.text("/greeting").as_deref(),
        Some("built-in-a-container\n")
    );
    assert_eq!(img.text("/app/uid").as_deref(), Some("0\n"));
    assert_eq!(img.text("/app/log").as_deref(), Some("second\n"));
    // The container's root may chown: owners reach the image.
    let owner = |p: &str| img.get(p).map(|e| (e.uid, e.gid));
    assert_eq!(owner("/app/w"), Some((1000, 0)));
    assert_eq!(owner("/app/n"), Some((2000, 2000)));
    // Confined even here, without CAP_SYS_ADMIN: the container's default
    // capabilities less SYS_CHROOT and MKNOD, and a filter of kiln's own on
    // top of Docker's, which the kernel takes only under no_new_privs.
    let probe: std::collections::BTreeMap<String, String> = img
        .text("/app/probe")
        .expect("probe output")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| probe.get(k).map(String::as_str).unwrap_or("(missing)");
    assert_eq!(get("CapEff"), "00000000a00025fb", "{probe:?}");
    assert_eq!(get("CapBnd"), "00000000a00025fb", "{probe:?}");
    assert_eq!(get("CapInh"), "0000000000000000", "{probe:?}");
    assert_eq!(get("NoNewPrivs"), "1", "{probe:?}");
    assert_eq!(get("Seccomp"), "2", "{probe:?}");
    assert_eq!(get("chroot-escape"), "EPERM", "{probe:?}");
    assert_eq!(get("mknod-block-device"), "EPERM", "{probe:?}");
    assert_eq!(get("clone3"), "ENOSYS", "{probe:?}");
    assert_eq!(get("fd7"), "EBADF", "{probe:?}");
    // The sandbox's stand-ins for mounts stay out of the image.
    let hosts = img.text("/etc/hosts");
    assert!(
        hosts.as_ref().is_none_or(|h| !h.contains("kiln")),
        "the build's /etc/hosts leaked: {hosts:?}"
    );
}
