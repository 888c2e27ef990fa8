//! kiln builds its own image: the repository's Dockerfile, built by the kiln
//! under test the way a CI pipeline with a separate compile job does
//! (`KILN_BUILD=prebuilt`: a static kiln and a CA bundle in the context's
//! `dist/`), for the release and the `debug` target. Each image is read back
//! with skopeo, unpacked with umoci and run in a chroot, where nothing of the
//! host (no libc, no shell, no `/proc`, no `/tmp`) is there to lean on; the
//! debug image's own shell and executor then build and push an image.

use crate::build_common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use assert_cmd::Command;
use build_common::{Kiln, KILN_TIMEOUT};
use kiln_testkit::{
    find_in_path, skopeo_copy_with, umoci_unpack, Access, CopyOptions, EntryKind, Flattened,
    Registry,
};
use tempfile::TempDir;

/// Compiling kiln from nothing into its own target directory takes several
/// minutes on a small machine; later runs only find it fresh.
const STATIC_BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The CA bundle a CI job would put next to the binary.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A base the Dockerfile's `build-source` stage would pull; the prebuilt path
/// must never ask the registry for it.
const RUST_IMAGE_NAME: &str = "rust-toolchain-never-pulled";

/// The `PATH` each target sets, as the Dockerfile writes it.
const RELEASE_PATH: &str = "PATH=/kaniko:/usr/local/bin:/usr/bin:/bin";
const DEBUG_PATH: &str = "PATH=/kaniko:/busybox";

/// A static kiln for the host's architecture, built once per test process.
/// `scripts/test` builds it the same way before the tests start; a change
/// to the command here must be made there too, or CI compiles it twice.
/// It goes to `static/` under the workspace target directory: other
/// RUSTFLAGS in the usual target directory would rebuild everything there
/// on the next plain `cargo build`.
fn static_kiln() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_static_kiln)
}

fn build_static_kiln() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The test binary is TARGET/PROFILE/deps/cli-HASH.
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.ancestors().nth(3).unwrap().join("static");
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "--locked", "-p", "kiln", "--target", &triple])
        .env("CARGO_TARGET_DIR", &target_dir)
        // With an explicit --target, RUSTFLAGS reach only the target's
        // crates: build scripts and proc macros must stay dynamic.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // The same value on every run, so cargo finds the build fresh.
        .env("CARGO_INCREMENTAL", "0")
        .timeout(STATIC_BUILD_TIMEOUT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "static cargo build failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join(&triple).join("debug/kiln");
    assert_no_interpreter(&bin);
    bin
}

/// A dynamically linked executable names its loader (`ld-linux`) in a
/// PT_INTERP program header; a static one has none, so the kernel runs it
/// in an image without any libc.
fn assert_no_interpreter(bin: &Path) {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(bin).unwrap();
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "{} is not a little-endian 64-bit ELF file",
        bin.display()
    );
    let at = |offset: usize, len: usize| -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&elf[offset..offset + len]);
        u64::from_le_bytes(bytes)
    };
    let phoff = at(0x20, 8) as usize;
    let phentsize = at(0x36, 2) as usize;
    let phnum = at(0x38, 2) as usize;
    let interp = (0..phnum).any(|i| at(phoff + i * phentsize, 4) == u64::from(PT_INTERP));
    assert!(
        !interp,
        "{} has a program interpreter: it is dynamically linked",
        bin.display()
    );
}

/// A registry holding the busybox base that both the `build-prebuilt` and
/// the `busybox` stage start from.
fn registry() -> Registry {
    Registry::plain_with_busybox().unwrap()
}

/// What an image job's context holds: the repository's Dockerfile and
/// .dockerignore, and the compile job's artifacts in `dist/`.
fn own_image_context() -> TempDir {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ctx = tempfile::tempdir().unwrap();
    for name in ["Dockerfile", ".dockerignore"] {
        fs::copy(repo.join(name), ctx.path().join(name)).unwrap();
    }
    let dist = ctx.path().join("dist");
    fs::create_dir(&dist).unwrap();
    fs::copy(static_kiln(), dist.join("kiln")).unwrap();
    fs::copy(HOST_CA_BUNDLE, dist.join("ca-certificates.crt")).unwrap();
    ctx
}

/// Builds `target` (the default one when `None`) of kiln's Dockerfile from
/// the prebuilt binary and pushes it to `reg` as `tag`.
fn build_own_image(reg: &Registry, target: Option<&str>, tag: &str) {
    let ctx = own_image_context();
    let mut kiln = Kiln::build(ctx.path())
        .args(["--destination", &reg.image_ref(tag)])
        .args(["--build-arg", "KILN_BUILD=prebuilt"])
        .arg("--build-arg")
        .arg(format!("BUSYBOX_IMAGE={}", reg.image_ref("busybox:latest")))
        .arg("--build-arg")
        .arg(format!("RUST_IMAGE={}", reg.image_ref(RUST_IMAGE_NAME)))
        .args(["--insecure", "--insecure-pull"]);
    if let Some(t) = target {
        kiln = kiln.args(["--target", t]);
    }
    kiln.success();
    assert!(
        !reg.log().contains(RUST_IMAGE_NAME),
        "the prebuilt build asked for the Rust image:\n{}",
        reg.log()
    );
}

/// A pushed image, twice over: as the independent flattener reads it, and
/// unpacked by umoci into a root filesystem that can be run.
struct Pulled {
    _dir: TempDir,
    image: Flattened,
    rootfs: PathBuf,
}

impl Pulled {
    fn from(reg: &Registry, tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        // skopeo turns kiln's Docker schema 2 manifest into an OCI one, the
        // only kind umoci unpacks; the fields checked here exist in both.
        let opts = CopyOptions {
            src: Access::for_registry(reg),
            ..CopyOptions::default()
        };
        skopeo_copy_with(
            &format!("docker://{}", reg.image_ref(tag)),
            &format!("oci:{}:image", layout.display()),
            &opts,
        )
        .unwrap();
        let image = Flattened::from_layout(&layout, "image").unwrap();
        let rootfs = umoci_unpack(&layout, "image", &dir.path().join("bundle")).unwrap();
        Self {
            _dir: dir,
            image,
            rootfs,
        }
    }

    fn env(&self) -> Vec<String> {
        self.image.config["config"]["Env"]
            .as_array()
            .expect("the image config has an Env")
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect()
    }

    /// Runs `args` chrooted into the unpacked image with exactly the
    /// image's environment, as a container runtime would start it.
    fn run(&self, args: &[&str]) -> Output {
        // By absolute path: the image's PATH, which the child gets, does
        // not hold the host's chroot.
        let chroot = find_in_path("chroot").expect("chroot (coreutils) is installed");
        let mut c = Command::new(chroot);
        c.arg(&self.rootfs).args(args).env_clear();
        for e in self.env() {
            let (k, v) = e.split_once('=').unwrap();
            c.env(k, v);
        }
        let out = c.timeout(KILN_TIMEOUT).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} in the image failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn kind(&self, path: &str) -> Option<EntryKind> {
        self.image.get(path).map(|e| e.kind)
    }

    fn link(&self, path: &str) -> Option<&str> {
        self.image.get(path).and_then(|e| e.link_target.as_deref())
    }
}

/// What both targets share: Kaniko's entry point and variables, the binary
/// (byte for byte the one in the context) under its three names, the CA
/// bundle, an empty credentials directory and the workspace.
fn assert_kaniko_layout(img: &Pulled, path_env: &str) {
    let config = &img.image.config["config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/kaniko/executor"])
    );
    assert_eq!(config["WorkingDir"], "/workspace");
    let env = img.env();
    for want in [
        path_env,
        "DOCKER_CONFIG=/kaniko/.docker/",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "HOME=/root",
    ] {
        assert!(env.iter().any(|e| e == want), "no {want} in {env:?}");
    }

    let kiln = img.image.get("/kiln").expect("/kiln is in the image");
    assert_eq!((kiln.kind, kiln.mode), (EntryKind::File, 0o755), "/kiln");
    assert!(
        fs::read(img.rootfs.join("kiln")).unwrap() == fs::read(static_kiln()).unwrap(),
        "/kiln is not the binary from the context"
    );
    for name in ["/kaniko/executor", "/kaniko/warmer"] {
        assert_eq!(img.kind(name), Some(EntryKind::Symlink), "{name}");
        assert_eq!(img.link(name), Some("/kiln"), "{name}");
    }
    assert_eq!(img.kind("/kaniko/.docker"), Some(EntryKind::Dir));
    assert_eq!(img.kind("/workspace"), Some(EntryKind::Dir));
    let ca = "etc/ssl/certs/ca-certificates.crt";
    assert!(
        fs::read(img.rootfs.join(ca)).unwrap() == fs::read(HOST_CA_BUNDLE).unwrap(),
        "/{ca} is not the bundle from the context"
    );
}

#[test]
fn release_image_from_a_prebuilt_binary_runs_as_kaniko_executor() {
    let reg = registry();
    build_own_image(&reg, None, "kiln:latest");
    let img = Pulled::from(&reg, "kiln:latest");
    assert_kaniko_layout(&img, RELEASE_PATH);

    // Nothing of the busybox stages leaks into the release image: it holds
    // exactly the tree the build stage left in /out.
    let paths: BTreeSet<&str> = img.image.entries.keys().map(String::as_str).collect();
    let want = BTreeSet::from([
        "/etc",
        "/etc/ssl",
        "/etc/ssl/certs",
        "/etc/ssl/certs/ca-certificates.crt",
        "/kaniko",
        "/kaniko/.docker",
        "/kaniko/executor",
        "/kaniko/warmer",
        "/kiln",
        "/workspace",
    ]);
    assert_eq!(paths, want, "the release image's files");

    let version = format!("kiln {}", env!("CARGO_PKG_VERSION"));
    let out = img.run(&["/kaniko/executor", "version"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);
    // The warmer name is Kaniko's warmer command line.
    let out = img.run(&["/kaniko/warmer", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: warmer"), "{help}");
}

#[test]
fn debug_image_from_a_prebuilt_binary_builds_and_pushes_from_its_shell() {
    let reg = registry();
    build_own_image(&reg, Some("debug"), "kiln:debug");
    let img = Pulled::from(&reg, "kiln:debug");
    assert_kaniko_layout(&img, DEBUG_PATH);
    assert_eq!(img.kind("/busybox/busybox"), Some(EntryKind::File));
    for applet in ["sh", "ls", "cat", "mkdir"] {
        let path = format!("/busybox/{applet}");
        assert_eq!(img.link(&path), Some("busybox"), "{path}");
    }
    assert_eq!(img.link("/bin/sh"), Some("/busybox/sh"));

    // The shell finds the executor on the image's PATH, as a CI script does.
    let version = format!("kiln {}", env!("CARGO_PKG_VERSION"));
    let out = img.run(&["/busybox/sh", "-c", "executor version"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);

    // A GitLab CI job: credentials in /kaniko/.docker, the project checked
    // out under the workspace, the executor run from the job's script. The
    // registry is named `localhost`, resolved through an /etc/hosts like the
    // one a runtime writes into every container: a static glibc binary has no NSS
    // modules to load, and must still resolve names.
    fs::create_dir_all(img.rootfs.join("etc")).unwrap();
    fs::write(img.rootfs.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let by_name = |name: &str| format!("localhost:{}/{name}", reg.port());
    let project = img.rootfs.join("workspace/project");
    fs::create_dir_all(&project).unwrap();
    fs::write(project.join("hello.txt"), "built inside kiln's image\n").unwrap();
    fs::write(
        project.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY hello.txt /hello.txt\nENV BUILT_BY=kiln-debug-image\n",
            by_name("busybox:latest")
        ),
    )
    .unwrap();
    fs::write(
        img.rootfs.join("kaniko/.docker/config.json"),
        "{\"auths\":{}}",
    )
    .unwrap();
    let script = format!(
        "cd /workspace/project && /kaniko/executor --context /workspace/project \
         --dockerfile /workspace/project/Dockerfile --destination {} \
         --insecure --insecure-pull",
        by_name("inner:1")
    );
    img.run(&["/busybox/sh", "-c", &script]);

    let inner = Flattened::from_registry(&reg, "inner:1").unwrap();
    assert_eq!(
        inner.text("/hello.txt").as_deref(),
        Some("built inside kiln's image\n")
    );
    assert!(inner.get("/bin/busybox").is_some(), "the base's files");
    let env = inner.config["config"]["Env"].to_string();
    assert!(env.contains("BUILT_BY=kiln-debug-image"), "{env}");
    // The build worked in a private directory under /kaniko and removed it.
    let left: BTreeSet<String> = fs::read_dir(img.rootfs.join("kaniko"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        BTreeSet::from([".docker".into(), "executor".into(), "warmer".into()]),
        "what the build left in /kaniko"
    );
}
