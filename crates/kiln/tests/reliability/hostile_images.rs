//! Hostile images and a hostile machine, end to end: special files (FIFOs,
//! device nodes) in a stage or a base layer, an `/etc/passwd` that is a FIFO
//! or leads to `/dev/zero`, and other users of the machine looking into the
//! kiln dir while a build runs. Each build ends in bounded time with the
//! right result, and a build's private directory is out of reach of other
//! users and does not outlive a build killed with SIGKILL.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kiln_testkit::layout::{Layer, LayerBuilder};
use kiln_testkit::{add_busybox_rootfs, BaseImage, EntryKind, Flattened, Registry};
use serde_json::json;

/// Longer than any of these builds takes; a build that hangs is killed here
/// and the test fails.
const TIMEOUT: Duration = Duration::from_secs(120);
/// What a build that ends "in bounded time" must stay under.
const BOUNDED: Duration = Duration::from_secs(60);

/// The uid the "other user of the machine" runs as.
const NOBODY: &str = "65534";

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(dockerfile: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        // Traversable by other users: the kiln dir's own mode is what
        // must keep them out.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("ctx")).unwrap();
        fs::write(dir.path().join("ctx/Dockerfile"), dockerfile).unwrap();
        fs::write(dir.path().join("ctx/a.txt"), "a\n").unwrap();
        Case { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, isolation: &str) -> Process {
        let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("kiln"));
        cmd.args(["build", "--context"])
            .arg(self.path("ctx"))
            .args(["--no-push", "--insecure-pull", "--oci-layout-path"])
            .arg(self.path("out"))
            .args(["--isolation", isolation, "--kiln-dir"])
            .arg(self.path("kiln"));
        cmd
    }

    /// Runs the build to its end (or the timeout); its output and duration.
    fn build(&self, isolation: &str) -> (Output, Duration) {
        let started = Instant::now();
        let out = Command::from_std(self.command(isolation))
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        (out, started.elapsed())
    }

    fn image(&self) -> Flattened {
        Flattened::from_layout(&self.path("out"), "latest").unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pushes busybox plus `top` as `name:latest`; returns its reference.
fn push_base(reg: &Registry, name: &str, top: Layer) -> String {
    let mut b = LayerBuilder::new();
    add_busybox_rootfs(&mut b).unwrap();
    let runtime = json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]});
    BaseImage::from_layers(vec![b.finish().unwrap(), top], runtime)
        .unwrap()
        .push_to(reg, &format!("{name}:latest"))
        .unwrap()
}

/// A layer shipping what sysvinit images ship: `/run/initctl`, a FIFO; and
/// a `/dev/zero` node.
fn special_files_layer() -> Layer {
    let mut b = LayerBuilder::new();
    b.dir("run", 0o755, 0, 0)
        .unwrap()
        .fifo("run/initctl", 0o600)
        .unwrap()
        .char_device("dev/zero", 0o666, 1, 5)
        .unwrap();
    b.finish().unwrap()
}

fn assert_kind(img: &Flattened, path: &str, kind: EntryKind) {
    let e = img
        .get(path)
        .unwrap_or_else(|| panic!("{path} is missing from the image"));
    assert_eq!(e.kind, kind, "{path}: {e}");
}

#[test]
fn a_fifo_made_by_run_is_copied_from_the_stage_as_a_fifo() {
    let reg = Registry::plain_with_busybox().unwrap();
    for isolation in ["chroot", "namespace"] {
        let case = Case::new(&format!(
            "FROM {host}/busybox:latest AS s\n\
             RUN mkdir -p /p/sub && mkfifo /p/pipe /p/sub/pipe2 && echo x > /p/file\n\
             FROM {host}/busybox:latest\n\
             COPY --from=s /p/pipe /pipe\n\
             COPY --from=s /p/ /copied/\n",
            host = reg.host()
        ));
        let (out, took) = case.build(isolation);
        assert!(out.status.success(), "{isolation}: {}", text(&out));
        assert!(took < BOUNDED, "{isolation}: took {took:?}");
        let img = case.image();
        assert_kind(&img, "/pipe", EntryKind::Fifo);
        assert_kind(&img, "/copied/pipe", EntryKind::Fifo);
        assert_kind(&img, "/copied/sub/pipe2", EntryKind::Fifo);
        assert_eq!(img.text("/copied/file").as_deref(), Some("x\n"));
    }
}

#[test]
fn a_fifo_and_a_device_shipped_in_a_layer_are_copied_as_what_they_are() {
    let reg = Registry::plain().unwrap();
    let base = push_base(&reg, "initctl", special_files_layer());
    for isolation in ["chroot", "namespace"] {
        let case = Case::new(&format!(
            "FROM {base} AS s\n\
             RUN true\n\
             FROM {base}\n\
             COPY --from=s /run/initctl /initctl\n\
             COPY --from={base} /run/ /run-copy/\n\
             COPY --from=s /dev/zero /zero-node\n\
             RUN --mount=type=bind,from=s,source=/run/initctl,target=/mnt/initctl \
                 test -p /mnt/initctl && echo bound-a-fifo\n"
        ));
        let (out, took) = case.build(isolation);
        assert!(out.status.success(), "{isolation}: {}", text(&out));
        assert!(took < BOUNDED, "{isolation}: took {took:?}");
        assert!(
            text(&out).contains("bound-a-fifo"),
            "{isolation}: {}",
            text(&out)
        );
        let img = case.image();
        assert_kind(&img, "/initctl", EntryKind::Fifo);
        assert_kind(&img, "/run-copy/initctl", EntryKind::Fifo);
        assert_kind(&img, "/zero-node", EntryKind::Char);
        assert_eq!(img.get("/zero-node").unwrap().device, Some((1, 5)));
        assert!(
            img.get("/mnt/initctl").is_none(),
            "{isolation}: the mount leaked"
        );
    }
}

/// Busybox whose `/etc/passwd` and `/etc/group` are replaced by `make`.
fn push_bad_passwd(reg: &Registry, name: &str, make: impl Fn(&mut LayerBuilder)) -> String {
    let mut b = LayerBuilder::new();
    b.dir("run", 0o755, 0, 0)
        .unwrap()
        .fifo("run/initctl", 0o644)
        .unwrap()
        .char_device("dev/zero", 0o666, 1, 5)
        .unwrap();
    make(&mut b);
    push_base(reg, name, b.finish().unwrap())
}

#[test]
fn a_passwd_that_is_not_a_regular_file_fails_naming_it_in_bounded_time() {
    let reg = Registry::plain().unwrap();
    let to_zero = push_bad_passwd(&reg, "zero", |b| {
        b.symlink("etc/passwd", "/dev/zero").unwrap();
    });
    let to_fifo = push_bad_passwd(&reg, "fifo", |b| {
        b.symlink("etc/passwd", "../run/initctl").unwrap();
    });
    let group_fifo = push_bad_passwd(&reg, "groupfifo", |b| {
        b.fifo("etc/group", 0o644).unwrap();
    });
    let cases = [
        // Answered from the layer listings (no RUN before).
        (&to_zero, "COPY --chown=app a.txt /a\n"),
        (&to_fifo, "COPY --chown=app a.txt /a\n"),
        // Answered from the unpacked root (a RUN before).
        (&to_zero, "RUN true\nCOPY --chown=app a.txt /a\n"),
        (&to_fifo, "RUN true\nCOPY --chown=app a.txt /a\n"),
        (&group_fifo, "RUN true\nCOPY --chown=app:app a.txt /a\n"),
        // USER for a RUN.
        (&to_zero, "USER app\nRUN true\n"),
        (&to_fifo, "USER app\nRUN true\n"),
    ];
    for (base, body) in cases {
        for isolation in ["chroot", "namespace"] {
            let case = Case::new(&format!("FROM {base}\n{body}"));
            let (out, took) = case.build(isolation);
            let said = text(&out);
            assert!(!out.status.success(), "{base} {body:?} {isolation}: {said}");
            assert!(took < BOUNDED, "{base} {body:?} {isolation}: took {took:?}");
            let named = if base == &group_fifo {
                "/etc/group"
            } else {
                "/etc/passwd"
            };
            assert!(
                said.contains(named) && said.contains("not a regular file"),
                "{base} {body:?} {isolation}: {said}"
            );
        }
    }
}

/// Files with the setuid bit under `dir`, as root sees them.
fn setuid_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.metadata().is_ok_and(|m| m.mode() & 0o4000 != 0))
        .map(|e| e.into_path())
        .collect()
}

/// Whether `path` can be reached (stat'ed) by uid 65534.
fn nobody_reaches(path: &Path) -> bool {
    Process::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--",
            "stat",
        ])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("setpriv (util-linux) must be installed")
        .success()
}

#[test]
fn setuid_files_are_out_of_other_users_reach_while_the_build_runs() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "run as root: the test switches to uid 65534"
    );
    let reg = Registry::plain().unwrap();
    let mut b = LayerBuilder::new();
    b.dir("usr/sbin", 0o755, 0, 0)
        .unwrap()
        .file("usr/sbin/su-from-base", 0o4755, 0, 0, b"#!/bin/sh\n")
        .unwrap();
    let base = push_base(&reg, "setuid", b.finish().unwrap());
    for isolation in ["chroot", "namespace"] {
        let case = Case::new(&format!(
            "FROM {base}\n\
             RUN cp /bin/busybox /bin/su-made && chmod 4755 /bin/su-made && sleep 8\n"
        ));
        // The control: uid 65534 reaches the case's directory itself.
        assert!(
            nobody_reaches(&case.path("ctx/Dockerfile")),
            "the test cannot tell"
        );
        let mut child = case
            .command(isolation)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            seen = setuid_files(&case.path("kiln"));
            let names: Vec<String> = seen
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            if names.iter().any(|n| n == "su-made") && names.iter().any(|n| n == "su-from-base") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let reachable: Vec<&PathBuf> = seen.iter().filter(|p| nobody_reaches(p)).collect();
        let kiln_mode = fs::metadata(case.path("kiln")).unwrap().mode() & 0o777;
        let build_dirs: Vec<(String, u32)> = fs::read_dir(case.path("kiln"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
            .map(|e| {
                let mode = e.metadata().unwrap().mode() & 0o777;
                (e.file_name().to_string_lossy().into_owned(), mode)
            })
            .collect();
        let status = child.wait().unwrap();
        assert!(status.success(), "{isolation}: the build failed");
        assert!(
            seen.len() >= 2,
            "{isolation}: setuid files not found while running: {seen:?}"
        );
        assert_eq!(
            reachable,
            Vec::<&PathBuf>::new(),
            "{isolation}: uid 65534 reaches them"
        );
        assert_eq!(kiln_mode, 0o700, "{isolation}");
        assert!(!build_dirs.is_empty(), "{isolation}");
        assert!(
            build_dirs.iter().all(|(_, m)| *m == 0o700),
            "{isolation}: {build_dirs:?}"
        );
    }
}

#[test]
fn the_directory_of_a_build_killed_with_sigkill_is_removed_by_the_next_build() {
    let reg = Registry::plain_with_busybox().unwrap();
    let case = Case::new(&format!(
        "FROM {}/busybox:latest\nRUN echo $$ > /started && exec sleep 30\n",
        reg.host()
    ));
    // Its own process group: the kill reaches the RUN step's processes too.
    let mut child = case
        .command("chroot")
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let started = loop {
        let found = walkdir::WalkDir::new(case.path("kiln"))
            .into_iter()
            .flatten()
            .find(|e| e.file_name() == "started")
            .map(|e| e.into_path())
            .filter(|p| fs::read_to_string(p).is_ok_and(|t| t.ends_with('\n')));
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "the RUN step never started");
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(100));
    };
    let killed_dir = case.path("kiln").join(
        started
            .strip_prefix(case.path("kiln"))
            .unwrap()
            .components()
            .next()
            .unwrap(),
    );
    assert!(killed_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("build-"));
    // SAFETY: kill takes a process group id (the child's pid) and a signal.
    assert_eq!(
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) },
        0
    );
    child.wait().unwrap();
    // The step's sleep may have left the group (chroot isolation shares
    // the pid namespace): end it by its pid.
    let sleeper: i32 = fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Only when that pid, seen from here, is the step's sleep (a step in a
    // pid namespace of its own would have written another process's pid).
    let cmdline = fs::read(format!("/proc/{sleeper}/cmdline")).unwrap_or_default();
    if sleeper > 1 && cmdline.starts_with(b"sleep\0") {
        // SAFETY: kill takes a pid and a signal.
        unsafe { libc::kill(sleeper, libc::SIGKILL) };
    }
    assert!(
        killed_dir.exists(),
        "SIGKILL left nothing: the test cannot tell"
    );

    fs::write(
        case.path("ctx/Dockerfile"),
        format!("FROM {}/busybox:latest\nRUN true\n", reg.host()),
    )
    .unwrap();
    let (out, _) = case.build("chroot");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !killed_dir.exists(),
        "the dead build's directory is still there"
    );
    let left: Vec<_> = fs::read_dir(case.path("kiln"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A RUN that makes a tree whose paths fit in PATH_MAX inside the step's
/// root (about 4,050 bytes) but not once the root's host path is put in
/// front of them.
const DEEP_RUN: &str = "RUN d=/deep; for i in $(seq 1 40); do d=$d/$(printf '%0100d' $i); done; \
                        mkdir -p $d && echo deep > $d/f && ln -s / $d/up && echo ${#d}\n";

#[test]
fn a_tree_deeper_than_path_max_is_archived_in_both_isolations() {
    let reg = Registry::plain_with_busybox().unwrap();
    for isolation in ["chroot", "namespace"] {
        let case = Case::new(&format!(
            "FROM {}/busybox:latest\n{DEEP_RUN}RUN echo next > /next\n",
            reg.host()
        ));
        let (out, _) = case.build(isolation);
        assert!(out.status.success(), "{isolation}: {}", text(&out));
        let img = case.image();
        let deepest = img
            .entries
            .keys()
            .find(|p| p.ends_with("/f") && p.starts_with("/deep/"))
            .cloned()
            .unwrap_or_else(|| panic!("{isolation}: the deep file is missing: {}", text(&out)));
        // The shortest the host path can be: `KILN/build-P-XXXXXX/rootfs/stage-0/...`.
        let shortest = case.path("kiln").as_os_str().len()
            + "/build-1-abcdef/rootfs/stage-0".len()
            + deepest.len();
        assert!(shortest > 4096, "the tree is not deep enough to tell");
        assert_eq!(img.text(&deepest).as_deref(), Some("deep\n"), "{isolation}");
        assert_eq!(img.text("/next").as_deref(), Some("next\n"), "{isolation}");
    }
}

/// One tar entry: name, kind, and its content or hard-link target.
type TarEntry<'a> = (&'a str, tar::EntryType, &'a str);

/// A tar in the context, its entries written in the order given.
fn write_tar(path: &Path, entries: &[TarEntry<'_>]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if *kind == tar::EntryType::Link {
            h.set_size(0);
            b.append_link(&mut h, name, data).unwrap();
        } else {
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data.as_bytes()).unwrap();
        }
    }
    b.finish().unwrap();
}

#[test]
fn a_local_tar_added_is_a_layer_the_next_run_accepts() {
    use tar::EntryType::{Directory, Link, Regular};
    let reg = Registry::plain_with_busybox().unwrap();
    for isolation in ["chroot", "namespace"] {
        let case = Case::new(&format!(
            "FROM {}/busybox:latest\n\
             ADD in.tar /dest/\n\
             RUN cat /dest/a /dest/z/file /dest/d && test ! -e /dest/d/f \
                 && [ $(stat -c %i /dest/a) = $(stat -c %i /dest/z/file) ] && echo all-there\n",
            reg.host()
        ));
        write_tar(
            &case.path("ctx/in.tar"),
            &[
                ("z/", Directory, ""),
                ("z/file", Regular, "linked\n"),
                // Sorted into the layer before its target.
                ("a", Link, "z/file"),
                ("d/", Directory, ""),
                ("d/f", Regular, "replaced with its directory\n"),
                // A later entry replaces the directory and what was in it.
                ("d", Regular, "now a file\n"),
            ],
        );
        let (out, _) = case.build(isolation);
        assert!(out.status.success(), "{isolation}: {}", text(&out));
        assert!(
            text(&out).contains("all-there"),
            "{isolation}: {}",
            text(&out)
        );
        let img = case.image();
        assert!(img.get("/dest/d/f").is_none());
        assert_eq!(img.text("/dest/d").as_deref(), Some("now a file\n"));
    }
}

#[test]
fn a_local_tar_that_cannot_be_unpacked_fails_naming_the_tar_and_entry() {
    use tar::EntryType::{Directory, Link, Regular};
    let reg = Registry::plain_with_busybox().unwrap();
    let cases: [(&[TarEntry<'_>], &str); 3] = [
        (&[("f", Regular, "x"), ("f/under", Regular, "y")], "f/under"),
        (&[("l", Link, "nowhere")], "\"l\""),
        (&[("d/", Directory, ""), ("l", Link, "d")], "\"l\""),
    ];
    for (entries, entry) in cases {
        let case = Case::new(&format!(
            "FROM {}/busybox:latest\nADD bad.tar /dest/\nRUN true\n",
            reg.host()
        ));
        write_tar(&case.path("ctx/bad.tar"), entries);
        let (out, _) = case.build("chroot");
        let said = text(&out);
        assert!(!out.status.success(), "{entry}: {said}");
        assert!(
            said.contains("bad.tar") && said.contains(entry) && said.contains("Dockerfile:2"),
            "{entry}: {said}"
        );
    }
}

#[test]
fn an_etc_hosts_that_is_a_fifo_is_covered_for_the_step_and_kept_in_the_image() {
    let reg = Registry::plain().unwrap();
    let mut b = LayerBuilder::new();
    b.fifo("etc/hosts", 0o644).unwrap();
    let base = push_base(&reg, "fifohosts", b.finish().unwrap());
    for isolation in ["chroot", "namespace"] {
        let case = Case::new(&format!(
            "FROM {base}\nRUN grep -q localhost /etc/hosts && echo hosts-readable\n"
        ));
        let (out, took) = case.build(isolation);
        assert!(out.status.success(), "{isolation}: {}", text(&out));
        assert!(took < BOUNDED, "{isolation}: took {took:?}");
        assert!(
            text(&out).contains("hosts-readable"),
            "{isolation}: {}",
            text(&out)
        );
        assert_kind(&case.image(), "/etc/hosts", EntryKind::Fifo);
    }
}

#[test]
fn whiteouts_reached_through_a_symlink_to_the_root_do_not_empty_the_image() {
    let reg = Registry::plain().unwrap();
    let mut link = LayerBuilder::new();
    link.symlink("up", "/").unwrap();
    let mut markers = LayerBuilder::new();
    markers
        .opaque("up")
        .unwrap()
        .whiteout("up/etc")
        .unwrap()
        .whiteout("up/bin")
        .unwrap();
    let mut b = LayerBuilder::new();
    add_busybox_rootfs(&mut b).unwrap();
    let runtime = json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]});
    let base = BaseImage::from_layers(
        vec![
            b.finish().unwrap(),
            link.finish().unwrap(),
            markers.finish().unwrap(),
        ],
        runtime,
    )
    .unwrap()
    .push_to(&reg, "opaque-up:latest")
    .unwrap();
    for isolation in ["chroot", "namespace"] {
        let case = Case::new(&format!(
            "FROM {base}\nRUN test -x /bin/busybox && test -s /etc/passwd && echo image-intact\n"
        ));
        let (out, _) = case.build(isolation);
        assert!(out.status.success(), "{isolation}: {}", text(&out));
        assert!(
            text(&out).contains("image-intact"),
            "{isolation}: {}",
            text(&out)
        );
    }
}
