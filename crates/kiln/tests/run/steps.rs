//! End-to-end RUN: `kiln build` with RUN steps against a real registry, in
//! both isolations, checked by reading the pushed image back.

use crate::build_common;

use assert_cmd::Command;
use kiln_testkit::{Flattened, Registry};
use std::fs;

struct Built {
    status: std::process::ExitStatus,
    stderr: String,
    stdout: String,
}

fn build(reg: &Registry, body: &str, isolation: &str, tag: &str) -> Built {
    build_with(reg, body, isolation, tag, &[])
}

fn build_with(reg: &Registry, body: &str, isolation: &str, tag: &str, extra: &[&str]) -> Built {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("input.txt"), "from the context\n").unwrap();
    let dockerfile = format!("FROM {}/busybox:latest\n{body}", reg.host());
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let work = tempfile::tempdir().unwrap();
    let dest = format!("{}/{tag}", reg.host());
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "--context"])
        .arg(ctx.path())
        .args(["--destination", &dest, "--insecure", "--insecure-pull"])
        .args(["--isolation", isolation, "--kiln-dir"])
        .arg(work.path())
        .args(extra)
        .output()
        .unwrap();
    Built {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

const CHANGES: &str = "\
RUN mkdir -p /many && for i in $(seq 1 200); do echo $i > /many/f$i; done
RUN rm /many/f1 /many/f2 && rm -r /home/app && echo file > /etc/replaced-dir-later && mkdir /tmp/d && echo x > /tmp/d/x
RUN rm -r /tmp/d && echo now-a-file > /tmp/d && ln /many/f3 /many/hard && cp /bin/busybox /bin/su-copy && chmod 4755 /bin/su-copy && chmod 600 /etc/group
RUN true
USER app
RUN id -u > /tmp/uid && id -G > /tmp/groups && echo $HOME > /tmp/home
USER root
RUN sleep 300 >/dev/null 2>&1 & echo started
RUN <<EOF
echo heredoc > /tmp/heredoc
EOF
";

/// The background `sleep` the Dockerfile leaves behind, a different one per
/// isolation: the check scans every process on the machine, and the two
/// variants (and kiln-sandbox's own test) may run at the same time.
fn leftover_sleep(isolation: &str) -> &'static str {
    match isolation {
        "chroot" => "311",
        _ => "310",
    }
}

fn check_changes(isolation: &str) {
    let reg = Registry::plain_with_busybox().unwrap();
    let seconds = leftover_sleep(isolation);
    let dockerfile = CHANGES.replace("sleep 300", &format!("sleep {seconds}"));
    let built = build(&reg, &dockerfile, isolation, "changes:1");
    assert!(
        built.status.success(),
        "{isolation}: {}{}",
        built.stdout,
        built.stderr
    );
    let img = Flattened::from_registry(&reg, "changes:1").unwrap();
    assert_eq!(img.text("/many/f200").as_deref(), Some("200\n"));
    assert!(img.get("/many/f1").is_none() && img.get("/many/f2").is_none());
    assert!(img.get("/home/app").is_none());
    assert_eq!(img.text("/tmp/d").as_deref(), Some("now-a-file\n"));
    assert_eq!(img.text("/many/hard").as_deref(), Some("3\n"));
    assert_eq!(img.get("/bin/su-copy").unwrap().mode & 0o7777, 0o4755);
    assert_eq!(img.get("/etc/group").unwrap().mode & 0o777, 0o600);
    assert_eq!(img.text("/tmp/uid").as_deref(), Some("1000\n"));
    assert_eq!(img.text("/tmp/groups").as_deref(), Some("1000 50\n"));
    assert_eq!(img.text("/tmp/home").as_deref(), Some("/home/app\n"));
    assert_eq!(img.text("/tmp/heredoc").as_deref(), Some("heredoc\n"));
    // The build's /etc files never reach a layer.
    assert!(img.get("/etc/hostname").is_none() && img.get("/etc/resolv.conf").is_none());
    // `RUN true` adds a history entry marked empty, and no layer.
    let history = img.config["history"].as_array().unwrap();
    let t = history
        .iter()
        .find(|h| h["created_by"] == "RUN /bin/sh -c true")
        .expect("history of RUN true");
    assert_eq!(t["empty_layer"], true);
    assert_eq!(t["comment"], "kiln.dockerfile.v0");
    let layers = img.config["rootfs"]["diff_ids"].as_array().unwrap().len();
    let non_empty = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(layers, non_empty);
    let left = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c.starts_with(&format!("sleep\u{0}{seconds}\u{0}")))
        .count();
    assert_eq!(left, 0, "a background process outlived its step");
}

#[test]
fn run_changes_namespace() {
    check_changes("namespace");
}

#[test]
fn run_changes_chroot() {
    check_changes("chroot");
}

#[test]
fn failing_run_names_step_command_and_code() {
    for isolation in ["namespace", "chroot"] {
        let reg = Registry::plain_with_busybox().unwrap();
        let built = build(
            &reg,
            "RUN echo about to fail && exit 7\n",
            isolation,
            "fail:1",
        );
        assert_eq!(
            built.status.code(),
            Some(5),
            "{isolation}: {}",
            built.stderr
        );
        assert!(built.stderr.contains("Dockerfile:2"), "{}", built.stderr);
        assert!(built.stderr.contains("exit 7"), "{}", built.stderr);
        assert!(built.stderr.contains("exit code 7"), "{}", built.stderr);
        assert!(built.stderr.contains("about to fail"), "{}", built.stderr);
    }
}

#[test]
fn output_is_streamed_with_the_step() {
    let reg = Registry::plain_with_busybox().unwrap();
    let built = build(&reg, "RUN echo streamed-line\n", "auto", "out:1");
    assert!(built.status.success(), "{}", built.stderr);
    let all = format!("{}{}", built.stdout, built.stderr);
    assert!(
        all.lines()
            .any(|l| l.contains("RUN /bin/sh -c echo streamed-line| streamed-line")),
        "{all}"
    );
}

/// One layer's entries: path and content (whiteouts are `.wh.` names).
type LayerFiles = Vec<(String, Vec<u8>)>;

/// Each layer's entries, bottom layer first, and the `created_by` of the
/// history entries that made a layer.
fn layers_and_history(reg: &Registry, name: &str) -> (Vec<LayerFiles>, Vec<String>) {
    use std::io::Read;
    let (dir, manifest) = build_common::pushed_dir(reg, name);
    let blob = |d: &serde_json::Value| build_common::blob_path(&dir, d);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&manifest["config"])).unwrap()).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let gz = flate2::read::MultiGzDecoder::new(fs::File::open(blob(d)).unwrap());
            let mut archive = tar::Archive::new(gz);
            archive
                .entries()
                .unwrap()
                .map(|e| {
                    let mut e = e.unwrap();
                    let path = e.path().unwrap().display().to_string();
                    let mut body = Vec::new();
                    e.read_to_end(&mut body).unwrap();
                    (path, body)
                })
                .collect()
        })
        .collect();
    (layers, build_common::layer_history(&config))
}

/// The contents of the entry at `path` in `layer`, as text.
fn find(layer: &LayerFiles, path: &str) -> Option<String> {
    layer
        .iter()
        .find(|(p, _)| p.trim_end_matches('/') == path)
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
}

/// A RUN's layer is written while the steps after it run (from a shadow of
/// its changes): a COPY that replaces one of its files and a RUN that
/// rewrites another must not reach into it, and the layers keep the order
/// of their steps.
#[test]
fn a_layer_written_in_the_background_keeps_what_its_step_wrote() {
    let reg = Registry::plain_with_busybox().unwrap();
    let body = "\
RUN mkdir /d && echo one > /d/f && echo keep > /d/k && seq 1 20000 > /d/big
COPY input.txt /d/f
RUN echo two > /d/k && rm /d/f && echo more >> /d/big
ENV AFTER=1
";
    let built = build(&reg, body, "namespace", "background:1");
    assert!(built.status.success(), "{}{}", built.stdout, built.stderr);
    let (layers, history) = layers_and_history(&reg, "background:1");
    let n = layers.len();
    assert!(n >= 4, "base plus three layers: {history:?}");
    let (run1, copy, run2) = (&layers[n - 3], &layers[n - 2], &layers[n - 1]);
    assert_eq!(find(run1, "d/f").as_deref(), Some("one\n"));
    assert_eq!(find(run1, "d/k").as_deref(), Some("keep\n"));
    assert_eq!(find(run1, "d/big").unwrap().lines().count(), 20000);
    assert_eq!(find(copy, "d/f").as_deref(), Some("from the context\n"));
    assert_eq!(find(run2, "d/k").as_deref(), Some("two\n"));
    assert!(find(run2, "d/.wh.f").is_some(), "{run2:?}");
    assert!(find(run2, "d/big").unwrap().ends_with("20000\nmore\n"));
    assert!(
        history[history.len() - 3].contains("mkdir /d"),
        "{history:?}"
    );
    assert!(
        history[history.len() - 2].starts_with("COPY"),
        "{history:?}"
    );
    assert!(
        history[history.len() - 1].contains("echo two"),
        "{history:?}"
    );
    let img = Flattened::from_registry(&reg, "background:1").unwrap();
    assert!(img.get("/d/f").is_none());
    assert_eq!(img.text("/d/k").as_deref(), Some("two\n"));
}

/// RUNs that follow each other read the earlier ones' changes from their
/// upper dirs stacked under their own (no shadow, no folding in between):
/// deletions, an opaque directory and a directory replacing a file must
/// look to the later RUN as they would in a root the layers were applied
/// to; USER's `/etc/passwd` is read through the stack; the mount points the
/// sandbox made are not in it; each layer keeps what its own step wrote.
#[test]
fn consecutive_runs_see_each_others_changes_stacked() {
    let reg = Registry::plain_with_busybox().unwrap();
    let body = "\
RUN --mount=type=cache,target=/s/cache mkdir -p /s/keep /s/gone /s/opaque && echo a > /s/keep/a && echo b > /s/gone/b && echo c > /s/opaque/c && echo x > /s/file && sed -i 's#:/root:#:/home/root2:#' /etc/passwd
RUN rm -r /s/gone && rm -r /s/opaque && mkdir /s/opaque && echo new > /s/opaque/n && rm /s/file && mkdir /s/file && echo $HOME > /s/home1
RUN ls /s > /s/listing && ls /s/opaque > /s/opaque-listing && cat /s/keep/a > /s/seen && echo $HOME > /s/home2 && echo more >> /s/keep/a
ENV AFTER=1
";
    let built = build_with(
        &reg,
        body,
        "namespace",
        "stacked:1",
        &["--verbosity", "debug"],
    );
    assert!(built.status.success(), "{}{}", built.stdout, built.stderr);
    let all = format!("{}{}", built.stdout, built.stderr);
    assert_eq!(
        all.matches("changes stacked for the next RUN").count(),
        2,
        "the first two RUNs are read stacked: {all}"
    );
    let img = Flattened::from_registry(&reg, "stacked:1").unwrap();
    assert_eq!(
        img.text("/s/listing").as_deref(),
        Some("file\nhome1\nkeep\nlisting\nopaque\n")
    );
    assert_eq!(img.text("/s/opaque-listing").as_deref(), Some("n\n"));
    assert_eq!(img.text("/s/seen").as_deref(), Some("a\n"));
    assert_eq!(img.text("/s/home1").as_deref(), Some("/home/root2\n"));
    assert_eq!(img.text("/s/home2").as_deref(), Some("/home/root2\n"));
    assert_eq!(img.text("/s/keep/a").as_deref(), Some("a\nmore\n"));
    assert!(img.get("/s/cache").is_none());
    assert!(img.get("/s/gone").is_none() && img.get("/s/opaque/c").is_none());
    let (layers, _) = layers_and_history(&reg, "stacked:1");
    let n = layers.len();
    let (run1, run2, run3) = (&layers[n - 3], &layers[n - 2], &layers[n - 1]);
    assert_eq!(find(run1, "s/gone/b").as_deref(), Some("b\n"));
    assert_eq!(find(run1, "s/file").as_deref(), Some("x\n"));
    assert_eq!(find(run1, "s/keep/a").as_deref(), Some("a\n"));
    assert!(find(run1, "s/cache").is_none(), "{run1:?}");
    assert!(find(run2, "s/.wh.gone").is_some(), "{run2:?}");
    assert!(find(run2, "s/opaque/.wh..wh..opq").is_some(), "{run2:?}");
    assert_eq!(find(run2, "s/opaque/n").as_deref(), Some("new\n"));
    assert!(find(run2, "s/keep/a").is_none(), "{run2:?}");
    assert_eq!(find(run3, "s/keep/a").as_deref(), Some("a\nmore\n"));
    // The same steps under chroot isolation (a root changed in place) give
    // the same files.
    let chroot = build(&reg, body, "chroot", "stacked-chroot:1");
    assert!(
        chroot.status.success(),
        "{}{}",
        chroot.stdout,
        chroot.stderr
    );
    let flat = Flattened::from_registry(&reg, "stacked-chroot:1").unwrap();
    for path in [
        "/s/listing",
        "/s/opaque-listing",
        "/s/seen",
        "/s/home1",
        "/s/home2",
        "/s/keep/a",
    ] {
        assert_eq!(flat.text(path), img.text(path), "{path}");
    }
}
