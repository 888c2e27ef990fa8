//! End-to-end `RUN --mount`: binds from a stage, an image and the context
//! (and their place in the step's cache key), cache sharing modes across
//! concurrent builds, caches seeded `from=` a stage or image, secrets that
//! leave no trace, in both isolations.

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

/// Two builds at once on one kiln dir, each running `step` once.
fn two_concurrent(reg: &Registry, kiln_dir: &Path, step: &str) {
    let dockerfile = format!("FROM REGISTRY/busybox:latest\n{step}\n");
    std::thread::scope(|s| {
        let builds: Vec<_> = (0..2)
            .map(|i| {
                let dockerfile = dockerfile.replace("WHO", &format!("b{i}"));
                s.spawn(move || {
                    let ctx = tempfile::tempdir().unwrap();
                    build(
                        reg,
                        ctx.path(),
                        kiln_dir,
                        &dockerfile,
                        &format!("c:{i}"),
                        &[],
                    )
                })
            })
            .collect();
        for b in builds {
            let built = b.join().unwrap();
            assert!(built.ok, "{}", built.log);
        }
    });
}

#[test]
fn locked_cache_serialises_concurrent_builds() {
    let reg = registry();
    let kiln_dir = tempfile::tempdir().unwrap();
    two_concurrent(
        &reg,
        kiln_dir.path(),
        "RUN --mount=type=cache,id=shared,target=/c,sharing=locked \
         echo start-WHO >> /c/log && sleep 2 && echo end-WHO >> /c/log",
    );
    let log = fs::read_to_string(kiln_dir.path().join("run-cache/shared/log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    // Each step ran alone: a start is always followed by its own end.
    for pair in lines.chunks(2) {
        let who = pair[0].strip_prefix("start-").expect(&log);
        assert_eq!(pair[1], format!("end-{who}"), "{log}");
    }
}

#[test]
fn private_cache_gives_a_busy_cache_user_a_fresh_directory() {
    let reg = registry();
    let kiln_dir = tempfile::tempdir().unwrap();
    two_concurrent(
        &reg,
        kiln_dir.path(),
        "RUN --mount=type=cache,id=mine,target=/c,sharing=private \
         touch /c/WHO && sleep 2 && ls /c > /c/seen-by-WHO",
    );
    // One build had the shared directory, the other a private one; each
    // saw only its own file.
    let shared = kiln_dir.path().join("run-cache/mine");
    let private = kiln_dir.path().join("run-cache-private/mine/1");
    for dir in [&shared, &private] {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{}: {names:?}", dir.display());
        let who = &names[0];
        assert_eq!(names[1], format!("seen-by-{who}"));
        // The shell made the listing file before `ls` ran.
        assert_eq!(
            fs::read_to_string(dir.join(&names[1])).unwrap(),
            format!("{who}\nseen-by-{who}\n")
        );
    }
}

#[test]
fn cache_mounts_persist_get_their_owner_and_stay_out_of_layers() {
    for isolation in ["namespace", "chroot"] {
        let reg = registry();
        let ctx = tempfile::tempdir().unwrap();
        let kiln_dir = tempfile::tempdir().unwrap();
        let dockerfile = "\
FROM REGISTRY/busybox:latest
RUN --mount=type=cache,target=/var/cache/app,uid=1000,gid=50,mode=0750 \
    stat -c '%u %g %a' /var/cache/app > /cache-stat && echo hit >> /var/cache/app/count
RUN --mount=type=cache,target=/var/cache/app wc -l < /var/cache/app/count > /count
";
        for _ in 0..2 {
            let built = build(
                &reg,
                ctx.path(),
                kiln_dir.path(),
                dockerfile,
                "cache:1",
                &["--isolation", isolation],
            );
            assert!(built.ok, "{isolation}: {}", built.log);
        }
        let img = Flattened::from_registry(&reg, "cache:1").unwrap();
        assert_eq!(img.text("/cache-stat").as_deref(), Some("1000 50 750\n"));
        // The second build saw the first one's write: the cache persists.
        assert_eq!(
            img.text("/count").map(|c| c.trim().to_string()).as_deref(),
            Some("2")
        );
        assert!(
            img.get("/var/cache/app").is_none(),
            "{isolation}: cache in a layer"
        );
    }
}

/// `type=cache,from=`: a new cache starts as a copy of the stage's (or
/// image's) directory, then lives on; a changed source gets a cache of its
/// own, seeded again.
#[test]
fn cache_mount_from_a_stage_is_seeded_with_its_directory() {
    let reg = registry();
    let ctx = tempfile::tempdir().unwrap();
    let kiln_dir = tempfile::tempdir().unwrap();
    let dockerfile = "\
FROM REGISTRY/busybox:latest AS seed
RUN mkdir -p /data/sub && echo SEED > /data/sub/seed.txt && chmod 0640 /data/sub/seed.txt
FROM REGISTRY/busybox:latest
RUN --mount=type=cache,id=c,from=seed,source=/data,target=/c \
    cat /c/sub/seed.txt > /seen && stat -c %a /c/sub/seed.txt > /mode && \
    echo run >> /c/runs && wc -l < /c/runs > /runs
RUN --mount=type=cache,from=REGISTRY/busybox:latest,source=/bin,target=/imgbin \
    test -e /imgbin/busybox && echo ok > /from-image
";
    for round in 1..=2 {
        let built = build(
            &reg,
            ctx.path(),
            kiln_dir.path(),
            dockerfile,
            "seeded:1",
            &[],
        );
        assert!(built.ok, "{}", built.log);
        let img = Flattened::from_registry(&reg, "seeded:1").unwrap();
        assert_eq!(img.text("/seen").as_deref(), Some("SEED\n"));
        assert_eq!(img.text("/mode").as_deref(), Some("640\n"));
        assert_eq!(img.text("/from-image").as_deref(), Some("ok\n"));
        // The second build's RUN found the first one's write: seeded once.
        assert_eq!(
            img.text("/runs").map(|c| c.trim().to_string()),
            Some(round.to_string())
        );
        assert!(img.get("/c").is_none() || img.get("/c/runs").is_none());
    }
    // Another seed: another cache, seeded with the new content.
    let changed = dockerfile.replace("echo SEED", "echo NEW");
    let built = build(&reg, ctx.path(), kiln_dir.path(), &changed, "seeded:2", &[]);
    assert!(built.ok, "{}", built.log);
    let img = Flattened::from_registry(&reg, "seeded:2").unwrap();
    assert_eq!(img.text("/seen").as_deref(), Some("NEW\n"));
    assert_eq!(
        img.text("/runs").map(|c| c.trim().to_string()).as_deref(),
        Some("1")
    );
}

#[test]
fn secrets_leave_no_trace() {
    const SECRET: &str = "s3cr3t-kiln-value-42";
    for isolation in ["namespace", "chroot"] {
        let reg = registry();
        let ctx = tempfile::tempdir().unwrap();
        let kiln_dir = tempfile::tempdir().unwrap();
        let secret = tempfile::NamedTempFile::new().unwrap();
        fs::write(secret.path(), SECRET).unwrap();
        // The expected value comes from a bound context file, so that the
        // Dockerfile (whose steps are logged) never holds it.
        fs::write(ctx.path().join("expected"), SECRET).unwrap();
        let dockerfile = "\
FROM REGISTRY/busybox:latest
RUN --mount=type=secret,id=token --mount=type=bind,source=expected,target=/expected \
    cmp /run/secrets/token /expected && echo file-ok > /file-ok
RUN --mount=type=secret,id=token,env=TOKEN,required --mount=type=bind,source=expected,target=/expected \
    test \"$TOKEN\" = \"$(cat /expected)\" && echo env-ok > /env-ok
RUN --mount=type=secret,id=token,target=/etc/app/token cat /etc/app/token | wc -c > /len
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo optional-ok > /optional-ok
";
        let src = format!("id=token,src={}", secret.path().display());
        let built = build(
            &reg,
            ctx.path(),
            kiln_dir.path(),
            dockerfile,
            "secret:1",
            &["--isolation", isolation, "--secret", &src],
        );
        assert!(built.ok, "{isolation}: {}", built.log);
        assert!(
            !built.log.contains(SECRET),
            "{isolation}: secret in the output"
        );
        let img = Flattened::from_registry(&reg, "secret:1").unwrap();
        for f in ["/file-ok", "/env-ok", "/optional-ok"] {
            assert!(img.get(f).is_some(), "{isolation}: {f} missing");
        }
        assert_eq!(
            img.text("/len").map(|l| l.trim().to_string()).as_deref(),
            Some("20")
        );
        for (path, entry) in &img.entries {
            let content = entry.content.as_deref().unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(content).contains(SECRET),
                "{isolation}: secret in {path}"
            );
        }
        assert!(img.get("/run/secrets").is_none() && img.get("/etc/app/token").is_none());
        assert!(
            !img.config.to_string().contains(SECRET),
            "secret in the config or history"
        );

        // A required secret that was not given stops the build, saying which.
        let built = build(
            &reg,
            ctx.path(),
            kiln_dir.path(),
            "FROM REGISTRY/busybox:latest\nRUN --mount=type=secret,id=needed,required=true true\n",
            "secret:2",
            &["--isolation", isolation],
        );
        assert!(!built.ok);
        assert!(
            built
                .log
                .contains("secret needed is required but was not given"),
            "{}",
            built.log
        );
    }
}
