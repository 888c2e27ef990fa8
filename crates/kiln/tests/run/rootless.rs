//! kiln run by a user that is not root: RUN steps in a user namespace
//! where that user is root (and, with subordinate ids, other users exist),
//! an overlay with `userxattr`, and an image whose owners are the ones the
//! steps saw. Where the kernel refuses unprivileged user namespaces, the
//! build must say what is needed.

use kiln_testkit::{BaseImage, Flattened, Registry};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Time limit for one kiln run.
const TIMEOUT: Duration = Duration::from_secs(300);
/// A user made for these tests when missing; a regular (not system) user,
/// so that `useradd` gives it subordinate id ranges where it does so.
const TEST_USER: &str = "kilnbuilder";
/// Subordinate ids given to [`TEST_USER`] when it has none (clear of
/// Debian's automatic ranges, which start at 100000).
const SUBORDINATE_RANGE: &str = "900000-965535";

struct Run {
    ok: bool,
    log: String,
}

/// Everything the unprivileged user needs, readable by it: the kiln binary
/// (copied out of the target dir), the context, and its own kiln dir.
struct Setup {
    _tmp: tempfile::TempDir,
    kiln: PathBuf,
    ctx: PathBuf,
    kiln_dir: PathBuf,
}

fn setup(uid: u32, gid: u32, dockerfile: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let kiln = tmp.path().join("kiln");
    fs::copy(assert_cmd::cargo::cargo_bin("kiln"), &kiln).unwrap();
    fs::set_permissions(&kiln, fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let kiln_dir = tmp.path().join("kiln-dir");
    fs::create_dir(&kiln_dir).unwrap();
    std::os::unix::fs::chown(&kiln_dir, Some(uid), Some(gid)).unwrap();
    Setup {
        _tmp: tmp,
        kiln,
        ctx,
        kiln_dir,
    }
}

/// `kiln build` as `uid:gid` (no supplementary groups), pushing to `image`.
fn build_as(uid: u32, gid: u32, s: &Setup, reg: &Registry, image: &str, isolation: &str) -> Run {
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ])
        .arg(&s.kiln)
        .args(["build", "--context"])
        .arg(&s.ctx)
        .args(["--destination", &format!("{}/{image}", reg.host())])
        .args(["--insecure", "--insecure-pull", "--isolation", isolation])
        .arg("--kiln-dir")
        .arg(&s.kiln_dir)
        .env("HOME", &s.kiln_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        ok: out.status.success(),
        log: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

fn registry() -> Registry {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    reg
}

/// Panics unless this process may switch users (it is root) and `setpriv`
/// exists: CI runs the suite as root with util-linux installed, so either
/// missing is a broken machine, not a reason to pass.
fn require_user_switching() {
    // `/proc/self` belongs to the effective user.
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    assert!(
        root,
        "these tests run kiln as another user and must run as root"
    );
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        setpriv,
        "setpriv (util-linux) is needed to run kiln as another user"
    );
}

/// True when `uid` may create a user namespace here.
fn userns_allowed(uid: u32, gid: u32) -> bool {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "unshare",
            "--user",
            "true",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

const STEPS: &str = "\
FROM REGISTRY/busybox:latest
RUN echo hi > /greeting && echo bye > /gone && mkdir -p /data/sub && echo x > /data/sub/f && id -u > /uid
RUN rm /gone && rm -rf /data && mkdir /data && echo fresh > /data/only
RUN --mount=type=cache,target=/cache echo cached > /cache/c && cat /cache/c > /from-cache
";

fn check_single_user(isolation: &str) {
    require_user_switching();
    let (uid, gid) = (65534, 65534);
    let reg = registry();
    let s = setup(uid, gid, &STEPS.replace("REGISTRY", &reg.host()));
    let run = build_as(uid, gid, &s, &reg, "rootless:1", isolation);
    if !userns_allowed(uid, gid) {
        assert!(!run.ok, "{}", run.log);
        assert!(
            run.log.contains("unprivileged user namespaces"),
            "the failure says what is needed: {}",
            run.log
        );
        eprintln!("note: unprivileged user namespaces are disabled here");
        return;
    }
    assert!(run.ok, "{isolation}: {}", run.log);
    let img = Flattened::from_registry(&reg, "rootless:1").unwrap();
    assert_eq!(img.text("/greeting").as_deref(), Some("hi\n"));
    // The step ran as root inside, and what it made is root's in the image,
    // not the host user's.
    assert_eq!(img.text("/uid").as_deref(), Some("0\n"));
    for p in ["/greeting", "/data", "/data/only", "/uid"] {
        let e = img.get(p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!((e.uid, e.gid), (0, 0), "{p}");
    }
    // A deletion (whiteout) and a directory replaced whole (opaque, marked
    // with overlay's user xattr).
    assert!(img.get("/gone").is_none());
    assert!(img.get("/data/sub").is_none());
    assert_eq!(img.text("/data/only").as_deref(), Some("fresh\n"));
    assert_eq!(img.text("/from-cache").as_deref(), Some("cached\n"));
    assert!(img.get("/cache/c").is_none());
    // The cache lives in the user's kiln dir, and the build's private
    // directory is gone.
    assert!(s.kiln_dir.join("run-cache").is_dir());
    let left: Vec<_> = fs::read_dir(&s.kiln_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("run-cache") && n != "cache")
        .collect();
    assert!(left.is_empty(), "left behind in the kiln dir: {left:?}");
}

#[test]
fn unprivileged_user_runs_steps_in_a_user_namespace() {
    check_single_user("namespace");
}

#[test]
fn unprivileged_user_auto_isolation_uses_a_user_namespace() {
    check_single_user("auto");
}

/// A regular user with subordinate ids: the step may switch to other users
/// and their files keep their owners in the image.
#[test]
fn subordinate_ids_give_steps_other_users() {
    require_user_switching();
    assert!(
        Path::new("/usr/bin/newuidmap").exists(),
        "newuidmap (apt package uidmap) is needed for subordinate ids"
    );
    if Command::new("id")
        .arg(TEST_USER)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        let made = Command::new("useradd")
            .args(["--no-create-home", TEST_USER])
            .status();
        assert!(made.is_ok_and(|s| s.success()), "useradd {TEST_USER}");
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, TEST_USER]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    let has_range = |file: &str| {
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{TEST_USER}:")))
    };
    // `useradd` gives ranges only where /etc/subuid is set up; give the test
    // user its own where it has none.
    if !has_range("/etc/subuid") || !has_range("/etc/subgid") {
        let added = Command::new("usermod")
            .args(["--add-subuids", SUBORDINATE_RANGE])
            .args(["--add-subgids", SUBORDINATE_RANGE])
            .arg(TEST_USER)
            .status();
        assert!(
            added.is_ok_and(|s| s.success()),
            "usermod --add-subuids {SUBORDINATE_RANGE} {TEST_USER}"
        );
    }
    let reg = registry();
    let dockerfile = "\
FROM REGISTRY/busybox:latest
RUN mkdir -p /srv/app && chown 1000:1000 /srv/app && touch /srv/owned && chown 1000:50 /srv/owned \
 && su -s /bin/sh -c 'id -u > /srv/app/uid && echo mine > /srv/app/mine' app
";
    let s = setup(uid, gid, &dockerfile.replace("REGISTRY", &reg.host()));
    let run = build_as(uid, gid, &s, &reg, "rootless-users:1", "namespace");
    if !userns_allowed(uid, gid) {
        assert!(!run.ok, "{}", run.log);
        assert!(
            run.log.contains("unprivileged user namespaces"),
            "the failure says what is needed: {}",
            run.log
        );
        eprintln!("note: unprivileged user namespaces are disabled here");
        return;
    }
    assert!(run.ok, "{}", run.log);
    let img = Flattened::from_registry(&reg, "rootless-users:1").unwrap();
    assert_eq!(img.text("/srv/app/uid").as_deref(), Some("1000\n"));
    let owner = |p: &str| {
        let e = img.get(p).unwrap_or_else(|| panic!("{p} missing"));
        (e.uid, e.gid)
    };
    assert_eq!(owner("/srv/app"), (1000, 1000));
    assert_eq!(owner("/srv/owned"), (1000, 50));
    assert_eq!(owner("/srv/app/mine"), (1000, 1000));
    assert_eq!(owner("/srv"), (0, 0));
}
