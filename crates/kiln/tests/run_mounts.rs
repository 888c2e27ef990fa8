//! End-to-end `RUN --mount`: binds from a stage, an image and the context
//! (and their place in the step's cache key), cache sharing modes across
//! concurrent builds, secrets that leave no trace, in both isolations.

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Flattened, Registry};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Time limit for one kiln run.
const TIMEOUT: Duration = Duration::from_secs(300);

struct Built {
    ok: bool,
    /// stdout and stderr together.
    log: String,
}

fn registry() -> Registry {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    reg
}

/// `kiln build` of `dockerfile` (with `REGISTRY` replaced) in `ctx`, pushed
/// to `tag`, with `kiln_dir` as its working directory.
fn build(
    reg: &Registry,
    ctx: &Path,
    kiln_dir: &Path,
    dockerfile: &str,
    tag: &str,
    extra: &[&str],
) -> Built {
    fs::write(
        ctx.join("Dockerfile"),
        dockerfile.replace("REGISTRY", &reg.host()),
    )
    .unwrap();
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "--context"])
        .arg(ctx)
        .args(["--destination", &format!("{}/{tag}", reg.host())])
        .args(["--insecure", "--insecure-pull", "--kiln-dir"])
        .arg(kiln_dir)
        .args(extra)
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    Built {
        ok: out.status.success(),
        log: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

const BINDS: &str = "\
FROM REGISTRY/busybox:latest AS tools
RUN mkdir /out && echo from-stage > /out/msg
FROM REGISTRY/busybox:latest
RUN --mount=type=bind,from=tools,source=/out,target=/mnt/tools cat /mnt/tools/msg > /stage-msg
RUN --mount=type=bind,from=REGISTRY/busybox:latest,source=/bin,target=/mnt/img ls /mnt/img/busybox > /image-ls
RUN --mount=type=bind,from=tools,source=/out,target=/mnt/tools,rw echo scribble > /mnt/tools/new && ls /mnt/tools > /rw-ls
RUN --mount=type=bind,from=tools,source=/out,target=/mnt/tools ls /mnt/tools > /after-rw-ls
RUN --mount=type=bind,source=input.txt,target=/ctx.txt cat /ctx.txt > /ctx-copy
RUN --mount=type=bind,target=/ctx ls /ctx > /ctx-ls && (touch /ctx/x 2>/dev/null && echo writable || echo read-only) > /ctx-ro
";

fn check_binds(isolation: &str) {
    let reg = registry();
    let ctx = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("input.txt"), "from the context\n").unwrap();
    let built = build(
        &reg,
        ctx.path(),
        work.path(),
        BINDS,
        "binds:1",
        &["--isolation", isolation],
    );
    assert!(built.ok, "{isolation}: {}", built.log);
    let img = Flattened::from_registry(&reg, "binds:1").unwrap();
    let text = |p: &str| {
        img.text(p)
            .unwrap_or_else(|| panic!("{isolation}: {p} missing"))
    };
    assert_eq!(text("/stage-msg"), "from-stage\n");
    assert_eq!(text("/image-ls"), "/mnt/img/busybox\n");
    assert_eq!(text("/rw-ls"), "msg\nnew\n");
    // The rw bind's write went nowhere: the stage's files are unchanged.
    assert_eq!(text("/after-rw-ls"), "msg\n");
    assert_eq!(text("/ctx-copy"), "from the context\n");
    assert!(text("/ctx-ls").contains("input.txt"));
    // Chroot isolation binds by copying, so a read-only bind is a
    // throwaway copy there; with namespaces the kernel refuses the write.
    if isolation == "namespace" {
        assert_eq!(text("/ctx-ro"), "read-only\n");
    }
    assert!(!ctx.path().join("x").exists());
    // No mount target reaches a layer.
    for p in ["/mnt", "/mnt/tools", "/mnt/img", "/ctx.txt", "/ctx"] {
        assert!(img.get(p).is_none(), "{isolation}: {p} is in the image");
    }
}

#[test]
fn bind_mounts_namespace() {
    check_binds("namespace");
}

#[test]
fn bind_mounts_chroot() {
    check_binds("chroot");
}

/// Dockerfile lines reported as cached.
fn cached_lines(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("CACHED"))
        .filter_map(|l| {
            let rest = &l[l.find("step ")? + 5..];
            rest.split(':').next()?.trim().parse().ok()
        })
        .collect()
}

#[test]
fn bind_sources_are_part_of_the_cache_key() {
    let reg = registry();
    let ctx = tempfile::tempdir().unwrap();
    let dockerfile = "\
FROM REGISTRY/busybox:latest AS tools
ARG TOOL=one
RUN echo $TOOL > /tool
FROM REGISTRY/busybox:latest
RUN --mount=type=bind,from=tools,source=/tool,target=/tool cat /tool > /from-stage
RUN --mount=type=bind,source=input.txt,target=/in cat /in > /from-context
";
    let run = |input: &str, tool: &str| {
        fs::write(ctx.path().join("input.txt"), input).unwrap();
        let work = tempfile::tempdir().unwrap();
        let built = build(
            &reg,
            ctx.path(),
            work.path(),
            dockerfile,
            "keyed:1",
            &["--cache=true", "--build-arg", &format!("TOOL={tool}")],
        );
        assert!(built.ok, "{}", built.log);
        let img = Flattened::from_registry(&reg, "keyed:1").unwrap();
        (
            img.text("/from-context").unwrap(),
            img.text("/from-stage").unwrap(),
            cached_lines(&built.log),
            built.log,
        )
    };
    let (c, s, cached, _) = run("a\n", "one");
    assert_eq!((c.as_str(), s.as_str()), ("a\n", "one\n"));
    assert!(cached.is_empty(), "{cached:?}");
    // Same inputs: every RUN hits (after the background pushes landed).
    let (_, _, cached, log) = run("a\n", "one");
    assert_eq!(cached, [3, 5, 6], "{log}");
    // A changed context file misses the step that binds it (and, keys
    // being chained, the steps after it).
    let (c, s, cached, log) = run("b\n", "one");
    assert_eq!((c.as_str(), s.as_str()), ("b\n", "one\n"));
    assert_eq!(cached, [3, 5], "{log}");
    // A changed source stage misses the step that binds from it, though
    // that step's parent (the base image) is unchanged.
    let (c, s, cached, log) = run("b\n", "two");
    assert_eq!((c.as_str(), s.as_str()), ("b\n", "two\n"));
    assert!(cached.is_empty(), "{log}");
}
