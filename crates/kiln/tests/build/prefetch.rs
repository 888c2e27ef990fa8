//! Later stages' bases unpacked while the first stages run
//! (`--prefetch-bases`): the image is the one a build without it makes, a
//! base that cannot be downloaded fails the stage's own step, and no
//! prefetch outlives its build's directory. Without the cache, a stage's
//! base is unpacked at its first COPY when a RUN follows, not listed first.

use crate::build_common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use build_common::{pushed_manifest_and_config, stderr, Kiln};
use kiln_testkit::{BaseImage, Fault, FaultProxy, Flattened, Registry};

/// The `build-*` directories left under a kiln dir.
fn build_dirs(kiln_dir: &Path) -> Vec<String> {
    fs::read_dir(kiln_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("build-"))
        .collect()
}

/// A context with `app.txt` and `dockerfile`.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("app.txt"), "app\n").unwrap();
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// The digest of the first layer of `name`'s manifest in `reg`.
fn first_layer(reg: &Registry, name: &str) -> String {
    let (manifest, _) = pushed_manifest_and_config(reg, name);
    manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The two-layer busybox pushed to `reg` as `name:1`, reached through a
/// proxy that applies `fault` to the downloads of its first layer; with
/// that layer's digest.
fn base_behind_fault(reg: &Registry, name: &str, fault: Fault) -> (FaultProxy, String) {
    BaseImage::busybox_two_layers()
        .unwrap()
        .push_to(reg, &format!("{name}:1"))
        .unwrap();
    let layer = first_layer(reg, &format!("{name}:1"));
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    proxy.inject(
        Some("GET"),
        &format!("/v2/{name}/blobs/{layer}"),
        fault,
        1000,
    );
    (proxy, layer)
}

/// Builds `ctx` with `kiln_dir`, pushing nothing: it must fail; its stderr.
fn failed_build(ctx: &Path, kiln_dir: &Path) -> String {
    let out = Kiln::build(ctx)
        .args(["--no-push", "--insecure-pull"])
        .arg_path("--kiln-dir", kiln_dir)
        .output();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    err
}

#[test]
fn a_prefetched_base_gives_the_image_a_build_without_it_gives() {
    let reg = Registry::plain_with_busybox().unwrap();
    let base = reg.image_ref("busybox:latest");
    let ctx = context(&format!(
        "FROM {base} AS gen\n\
         RUN mkdir /out && echo generated > /out/g.txt\n\
         FROM {base}\n\
         COPY --from=gen /out/ /srv/gen/\n\
         COPY app.txt /srv/app.txt\n\
         RUN cat /srv/gen/g.txt /srv/app.txt > /srv/both.txt\n"
    ));
    let mut digests = Vec::new();
    for (tag, flag) in [
        ("on", "--prefetch-bases=true"),
        ("off", "--prefetch-bases=false"),
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = Kiln::build(ctx.path())
            .args(["--destination", &reg.image_ref(&format!("prefetch:{tag}"))])
            .args(["--insecure", "--insecure-pull", "--reproducible", flag])
            .args(["--verbosity", "debug"])
            .arg_path("--digest-file", &out_dir.path().join("digest"))
            .success();
        let log = stderr(&out);
        let prefetched = log.contains(&format!("stage 1: base {base} unpacked ahead"));
        assert_eq!(prefetched, tag == "on", "{flag}:\n{log}");
        if prefetched {
            // The COPYs went into the prefetched root as their layers were
            // written: no root is ever brought up to more than its base.
            let synced: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("root filesystem: "))
                .collect();
            assert!(
                !synced.is_empty()
                    && synced
                        .iter()
                        .all(|l| l.contains("root filesystem: 1 layers")),
                "{synced:#?}\n{log}"
            );
        }
        digests.push(fs::read_to_string(out_dir.path().join("digest")).unwrap());
        let img = Flattened::from_registry(&reg, &format!("prefetch:{tag}")).unwrap();
        assert_eq!(
            img.text("/srv/both.txt").as_deref(),
            Some("generated\napp\n")
        );
        assert!(img.get("/bin/busybox").is_some(), "the base's files");
    }
    assert_eq!(digests[0], digests[1], "with and without the prefetch");
}

#[test]
fn a_base_layer_that_cannot_be_downloaded_fails_the_stages_own_step() {
    let reg = Registry::plain().unwrap();
    let (proxy, layer) = base_behind_fault(&reg, "broken", Fault::Status(404, None));
    let ctx = context(&format!(
        "FROM scratch AS gen\n\
         COPY app.txt /app.txt\n\
         FROM {}/broken:1\n\
         COPY --from=gen /app.txt /app.txt\n\
         RUN cat /app.txt\n",
        proxy.host()
    ));
    let kiln_dir = tempfile::tempdir().unwrap();
    let err = failed_build(ctx.path(), kiln_dir.path());
    // The stage's first step that needs the base's files (the COPY looks
    // at what the image holds) reports it, as without the prefetch.
    assert!(
        err.contains(":4: COPY --from=gen /app.txt /app.txt: "),
        "{err}"
    );
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(err.contains(&layer), "{err}");
    let gets = proxy
        .log()
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains(&layer))
        .count();
    assert!(
        gets >= 2,
        "the prefetch and the stage each asked: {:#?}",
        proxy.log()
    );
    assert_eq!(build_dirs(kiln_dir.path()), Vec::<String>::new());
}

#[test]
fn a_failed_build_waits_for_a_prefetch_in_flight_then_leaves_nothing() {
    let reg = Registry::plain_with_busybox().unwrap();
    // The final stage's base arrives long after the first stage failed.
    let stall = Fault::StallMidBody(Duration::from_secs(3));
    let (proxy, _) = base_behind_fault(&reg, "slow", stall);
    let ctx = context(&format!(
        "FROM {} AS gen\n\
         RUN sleep 1 && exit 3\n\
         FROM {}/slow:1\n\
         COPY --from=gen /bin/busybox /b\n\
         RUN true\n",
        reg.image_ref("busybox:latest"),
        proxy.host()
    ));
    let kiln_dir = tempfile::tempdir().unwrap();
    let err = failed_build(ctx.path(), kiln_dir.path());
    assert!(
        err.contains(":2: RUN /bin/sh -c sleep 1 && exit 3: exit code 3"),
        "{err}"
    );
    assert_eq!(
        proxy.faults_applied(),
        1,
        "the prefetch was downloading the base: {:#?}",
        proxy.log()
    );
    assert_eq!(build_dirs(kiln_dir.path()), Vec::<String>::new());
}

/// Without the cache every RUN runs, so a COPY before the stage's first RUN
/// unpacks the base then and writes its layer into that root: the base is
/// read once, never listed from its blob and unpacked again after.
#[test]
fn without_the_cache_a_copy_before_a_run_reads_the_base_once() {
    let reg = Registry::plain_with_busybox().unwrap();
    let ctx = context(&format!(
        "FROM {}\n\
         COPY app.txt /srv/app.txt\n\
         WORKDIR /srv/work\n\
         RUN cat /srv/app.txt > copied.txt\n",
        reg.image_ref("busybox:latest")
    ));
    for cache in ["--cache=false", "--cache=true"] {
        let tag = format!("once:{}", &cache[8..]);
        let out = Kiln::build(ctx.path())
            .args(["--destination", &reg.image_ref(&tag)])
            .args(["--insecure", "--insecure-pull", cache])
            .args(["--verbosity", "debug"])
            .success();
        let log = stderr(&out);
        let listed = log.lines().filter(|l| l.contains("from its blob")).count();
        let synced: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("root filesystem: "))
            .collect();
        if cache == "--cache=false" {
            assert_eq!(listed, 0, "{log}");
            // The base at the COPY; the WORKDIR's layer at the RUN.
            assert!(
                synced.len() == 2
                    && synced
                        .iter()
                        .all(|l| l.contains("root filesystem: 1 layers")),
                "{synced:#?}\n{log}"
            );
        } else {
            // With the cache, a later RUN may be a hit: the COPY and the
            // WORKDIR decide from the listing, then the RUN unpacks.
            assert_eq!(listed, 1, "{log}");
            assert!(
                synced
                    .iter()
                    .any(|l| l.contains("root filesystem: 3 layers")),
                "{synced:#?}\n{log}"
            );
        }
        let img = Flattened::from_registry(&reg, &tag).unwrap();
        assert_eq!(img.text("/srv/work/copied.txt").as_deref(), Some("app\n"));
    }
}
