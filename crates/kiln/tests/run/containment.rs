//! A RUN step as an attacker: every way out of the sandbox that worked
//! before kiln confined its steps as runc confines a Docker container, tried
//! from inside a step in both isolations, each of which must fail. The
//! escapes are tried with raw system calls by a small static C program
//! (`fixtures/containment/probe.c`, compiled here with `cc -static`), and
//! with busybox where it has the tool.
//!
//! The base image ships a block device node with the numbers of the disk
//! holding the test's temporary files; kiln runs with a host directory open
//! on descriptor 7 and a secret in its environment.

use kiln_testkit::layout::LayerBuilder;
use kiln_testkit::{add_busybox_rootfs, BaseImage, Flattened, Registry};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Limit for one `kiln build`.
const TIMEOUT: Duration = Duration::from_secs(300);
/// In kiln's environment; no step may read it.
const SECRET: &str = "KILN_CONTAINMENT_SECRET=s3cr3t-value-1f9a";

/// Docker's 14 default capabilities.
const DOCKER_CAPS: &str = "00000000a80425fb";
/// The same without CAP_SYS_CHROOT and CAP_MKNOD, in chroot isolation.
const CHROOT_CAPS: &str = "00000000a00025fb";

/// The (major, minor) of the block device holding `path`, checked to be a
/// real block device of this machine.
fn disk_of(path: &Path) -> (u32, u32) {
    let dev = fs::metadata(path).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = format!("/sys/dev/block/{major}:{minor}");
    assert!(
        Path::new(&sys).exists(),
        "{} is not on a block device ({major}:{minor}); this test needs one",
        path.display()
    );
    (major, minor)
}

/// Compiles the probe, statically, into `dir`.
fn compile_probe(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containment/probe.c");
    let out = Command::new("cc")
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

/// A registry holding `base:latest`: busybox plus `/hostdisk`, a block
/// device node for the host's disk.
fn registry(disk: (u32, u32)) -> Registry {
    let reg = Registry::plain().unwrap();
    let mut b = LayerBuilder::new();
    add_busybox_rootfs(&mut b).unwrap();
    b.device_node("hostdisk", true, disk.0, disk.1).unwrap();
    let layer = b.finish().unwrap();
    BaseImage::from_layers(
        vec![layer],
        serde_json::json!({"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}),
    )
    .unwrap()
    .push_to(&reg, "base:latest")
    .unwrap();
    reg
}

struct Built {
    ok: bool,
    log: String,
}

/// `kiln build` of `dockerfile` with `ctx` as context, with `fd7` open on
/// descriptor 7 and [`SECRET`] in the environment.
fn build(reg: &Registry, ctx: &Path, isolation: &str, tag: &str, fd7: &Path) -> Built {
    let work = tempfile::tempdir().unwrap();
    let dir = fs::File::open(fd7).unwrap();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("kiln"));
    cmd.args(["build", "--context"])
        .arg(ctx)
        .args(["--destination", &reg.image_ref(tag)])
        .args(["--insecure", "--insecure-pull", "--isolation", isolation])
        .arg("--kiln-dir")
        .arg(work.path())
        .env(
            SECRET.split('=').next().unwrap(),
            SECRET.split('=').nth(1).unwrap(),
        );
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
    // SAFETY: dup2 is async-signal-safe; the duplicate has no CLOEXEC, so
    // kiln inherits it as a shell's `exec 7<dir` would leave it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    Built {
        ok: out.status.success(),
        log: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

/// The probe's lines as `name -> result`.
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Tries every escape from a RUN step in `isolation` and checks each failed.
fn escapes_fail(isolation: &str) {
    let host_dir = tempfile::tempdir().unwrap();
    let (major, minor) = disk_of(host_dir.path());
    let reg = registry((major, minor));
    let ctx = tempfile::tempdir().unwrap();
    compile_probe(ctx.path());
    let dockerfile = format!(
        r#"FROM {host}/base:latest
COPY probe /probe
RUN mkdir -p /out && /probe /hostdisk {major} {minor} > /out/probe 2>&1; rm -f /tmp/probe-disk; rmdir /tmp/probe-mnt
RUN (cat /proc/*/environ 2>/dev/null; cat /proc/1/environ 2>/dev/null) | tr '\0' '\n' | grep -c KILN_CONTAINMENT > /out/environ; \
    if echo x 2>/dev/null > /proc/self/fd/7/written-by-shell; then echo written; else echo refused; fi > /out/fd7; \
    if mount -o remount,rw /sys 2>/dev/null; then echo remounted; else echo refused; fi > /out/sys-remount; \
    if touch /sys/kiln-probe 2>/dev/null; then echo written; else echo refused; fi > /out/sys-write; \
    if [ -e /sys/kernel ]; then echo sysfs; else echo none; fi > /out/sysfs; \
    if mknod /tmp/d b {major} {minor} 2>/dev/null && mount -o ro /tmp/d /mnt 2>/dev/null; then echo mounted; umount /mnt; else echo refused; fi > /out/mknod-mount; \
    rm -f /tmp/d; \
    if [ -e /proc/self/status ]; then grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; else echo none; fi > /out/status; \
    if [ -e /proc/kcore ]; then head -c 16 /proc/kcore | wc -c; else echo 0; fi > /out/kcore; \
    echo $$ > /out/pid; \
    ls /proc 2>/dev/null | grep -c '^[0-9]' > /out/pids || true
"#,
        host = reg.host()
    );
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let tag = format!("containment-{isolation}:1");
    let built = build(&reg, ctx.path(), isolation, &tag, host_dir.path());
    assert!(built.ok, "{isolation}: build failed:\n{}", built.log);
    assert!(
        !built.log.contains("s3cr3t-value"),
        "{isolation}: the secret reached the log"
    );
    let img = Flattened::from_registry(&reg, &tag).unwrap();
    let text = |p: &str| {
        img.text(p)
            .unwrap_or_else(|| panic!("{isolation}: {p} not in the image"))
    };
    let probe = parse(&text("/out/probe"));
    let chroot = isolation == "chroot";
    let caps = if chroot { CHROOT_CAPS } else { DOCKER_CAPS };
    let expected: &[(&str, &str)] = &[
        // nodev: neither a node from the layer nor one made opens.
        ("open-layer-block-device", "EACCES"),
        (
            "open-made-block-device",
            if chroot { "EPERM" } else { "EACCES" },
        ),
        // CAP_MKNOD is Docker's; chroot isolation shares the host's mounts.
        ("mknod-block-device", if chroot { "EPERM" } else { "ok" }),
        ("mount-block-device", "EPERM"),
        ("mount-tmpfs", "EPERM"),
        ("mount-proc", "EPERM"),
        ("remount-sys-rw", "EPERM"),
        ("umount", "EPERM"),
        ("pivot_root", "EPERM"),
        ("unshare-mount", "EPERM"),
        ("unshare-user", "EPERM"),
        ("unshare-net", "EPERM"),
        ("setns", "EPERM"),
        ("clone-newns", "EPERM"),
        ("clone-newuser", "EPERM"),
        // ENOSYS, so that glibc falls back to clone(2).
        ("clone3", "ENOSYS"),
        ("keyctl", "EPERM"),
        ("bpf", "EPERM"),
        ("kexec_load", "EPERM"),
        ("init_module", "EPERM"),
        // A second chroot is how one leaves a chroot.
        ("chroot-escape", if chroot { "EPERM" } else { "ok" }),
        ("fd7", "EBADF"),
        ("write-via-fd7", "EBADF"),
        ("CapInh", "0000000000000000"),
        ("CapPrm", caps),
        ("CapEff", caps),
        ("CapBnd", caps),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "0"),
        ("Seccomp", "2"),
    ];
    let mut wrong = Vec::new();
    for (name, want) in expected {
        let got = probe.get(*name).map(String::as_str).unwrap_or("(missing)");
        if got != *want {
            wrong.push(format!("{name}: {got}, expected {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{isolation}: escapes that did not fail as they should:\n{}\nprobe output:\n{}",
        wrong.join("\n"),
        text("/out/probe")
    );
    assert_eq!(
        fs::read_dir(host_dir.path()).unwrap().count(),
        0,
        "{isolation}: the step wrote into the directory kiln had open"
    );
    assert_eq!(text("/out/environ"), "0\n", "{isolation}: environ read");
    assert_eq!(text("/out/fd7"), "refused\n", "{isolation}");
    assert_eq!(text("/out/sys-remount"), "refused\n", "{isolation}");
    assert_eq!(text("/out/mknod-mount"), "refused\n", "{isolation}");
    assert_eq!(
        text("/out/kcore"),
        "0\n",
        "{isolation}: /proc/kcore readable"
    );
    // A pid namespace of the step's own: kiln's init is 1, the shell 2.
    assert_eq!(
        text("/out/pid"),
        "2\n",
        "{isolation}: not in a pid namespace"
    );
    if chroot {
        // No /proc at all: not the host's, not one of its own; no sysfs
        // (its /sys is the image's own directory, where a write is harmless).
        assert_eq!(text("/out/status"), "none\n");
        assert_eq!(text("/out/sysfs"), "none\n");
        assert_eq!(text("/out/pids"), "0\n");
    } else {
        assert_eq!(text("/out/sys-write"), "refused\n", "{isolation}");
        let want = format!(
            "CapInh:\t0000000000000000\nCapPrm:\t{caps}\nCapEff:\t{caps}\n\
             CapBnd:\t{caps}\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n"
        );
        assert_eq!(text("/out/status"), want);
    }
}

#[test]
fn escapes_from_a_run_step_fail_namespace() {
    escapes_fail("namespace");
}

#[test]
fn escapes_from_a_run_step_fail_chroot() {
    escapes_fail("chroot");
}

/// A step that is not root holds no capability at all, as in Docker.
#[test]
fn a_step_run_as_another_user_has_no_capabilities() {
    let host_dir = tempfile::tempdir().unwrap();
    let reg = registry(disk_of(host_dir.path()));
    for isolation in ["namespace", "chroot"] {
        let ctx = tempfile::tempdir().unwrap();
        compile_probe(ctx.path());
        let dockerfile = format!(
            "FROM {}/base:latest\nCOPY probe /probe\nRUN mkdir -m 777 /out\nUSER 1000:1000\n\
             RUN /probe /hostdisk 0 0 > /out/probe 2>&1\n",
            reg.host()
        );
        fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let tag = format!("unprivileged-{isolation}:1");
        let built = build(&reg, ctx.path(), isolation, &tag, host_dir.path());
        assert!(built.ok, "{isolation}: build failed:\n{}", built.log);
        let img = Flattened::from_registry(&reg, &tag).unwrap();
        let probe = parse(&img.text("/out/probe").unwrap());
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(
                probe.get(set).map(String::as_str),
                Some("0000000000000000"),
                "{isolation} {set}"
            );
        }
        let bounding = if isolation == "chroot" {
            CHROOT_CAPS
        } else {
            DOCKER_CAPS
        };
        assert_eq!(probe.get("CapBnd").map(String::as_str), Some(bounding));
        assert_eq!(probe.get("Seccomp").map(String::as_str), Some("2"));
    }
}

/// kiln is non-dumpable: another process of kiln's own user (a step, where
/// kiln is not root) cannot read its environment through /proc.
#[test]
fn kiln_environment_is_unreadable_by_its_own_user() {
    const NOBODY: u32 = 65534;
    // A registry that accepts and never answers keeps kiln alive, waiting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let kiln: PathBuf = tmp.path().join("kiln");
    fs::copy(assert_cmd::cargo::cargo_bin("kiln"), &kiln).unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM {addr}/stuck:1\n")).unwrap();
    let kiln_dir = tmp.path().join("kiln-dir");
    fs::create_dir(&kiln_dir).unwrap();
    std::os::unix::fs::chown(&kiln_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut child = Command::new(&kiln)
        .args(["build", "--no-push", "--insecure-pull", "--context"])
        .arg(&ctx)
        .arg("--kiln-dir")
        .arg(&kiln_dir)
        .env("HOME", &kiln_dir)
        .env(
            SECRET.split('=').next().unwrap(),
            SECRET.split('=').nth(1).unwrap(),
        )
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let _held = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(_) if Instant::now() < deadline => {
                if let Some(status) = child.try_wait().unwrap() {
                    let out = child.wait_with_output().unwrap();
                    panic!(
                        "kiln ended before reaching the registry ({status}): {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("kiln never reached the registry: {e}"),
        }
    };
    let environ = format!("/proc/{}/environ", child.id());
    let read = Command::new("cat")
        .arg(&environ)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !read.status.success() && !String::from_utf8_lossy(&read.stdout).contains("s3cr3t"),
        "a process of kiln's user read {environ}: {}",
        String::from_utf8_lossy(&read.stdout)
    );
}

/// Ordinary Dockerfiles still build under the confinement: apt-get and dpkg
/// installing a package with a setuid file (apt drops to `_apt` for its
/// downloads), useradd, chown, and a step run as the new user.
fn debian_workload(isolation: &str) {
    let reg = Registry::plain().unwrap();
    BaseImage::debian()
        .unwrap()
        .push_to(&reg, "debian:bookworm")
        .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let mirror = kiln_testkit::debian_mirror();
    let dockerfile = format!(
        "FROM {host}/debian:bookworm\n\
         RUN echo 'deb {mirror} bookworm main' > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/* \
             && apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo \
             && rm -rf /var/lib/apt/lists/*\n\
         RUN useradd -m -u 1001 app && install -d -o app -g app /srv/app && chown -R app:app /home/app\n\
         USER app\n\
         RUN whoami > /srv/app/me && id -u >> /srv/app/me\n",
        host = reg.host()
    );
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let tag = format!("debian-workload-{isolation}:1");
    let host_dir = tempfile::tempdir().unwrap();
    let built = build(&reg, ctx.path(), isolation, &tag, host_dir.path());
    assert!(built.ok, "{isolation}: build failed:\n{}", built.log);
    let img = Flattened::from_registry(&reg, &tag).unwrap();
    let sudo = img.get("/usr/bin/sudo").expect("sudo installed");
    assert_eq!(
        sudo.mode & 0o4000,
        0o4000,
        "{isolation}: sudo is not setuid"
    );
    assert_eq!(sudo.uid, 0);
    let home = img.get("/home/app").expect("home made by useradd");
    assert_eq!((home.uid, home.gid), (1001, 1001), "{isolation}");
    assert_eq!(img.get("/srv/app").map(|e| e.uid), Some(1001));
    assert_eq!(img.text("/srv/app/me").as_deref(), Some("app\n1001\n"));
    assert!(img
        .text("/etc/passwd")
        .is_some_and(|p| p.contains("app:x:1001:1001")));
}

#[test]
fn debian_apt_useradd_chown_build_namespace() {
    debian_workload("namespace");
}

#[test]
fn debian_apt_useradd_chown_build_chroot() {
    debian_workload("chroot");
}
