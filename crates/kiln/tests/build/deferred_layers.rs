//! A stage no one asks the layers of (not the target, no stage `FROM` it,
//! no layer cache) writes none: later stages copy from its root. The image
//! is the one a build that writes them gives, and a stage whose layers are
//! asked for (the target, a stage's base, the cache) still has all of them,
//! in the order its steps ran.

use crate::build_common;

use std::fs;

use build_common::{pushed_manifest_and_config, stderr, Kiln};
use kiln_testkit::{Flattened, Registry};

/// A builder stage with two RUNs and a COPY between them (the second RUN
/// changes what the first wrote), and a final stage that copies from it.
fn context(base: &str, final_from: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("app.txt"), "app\n").unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {base} AS builder\n\
             RUN mkdir /out && echo one > /out/a.txt && echo gone > /out/b.txt\n\
             COPY app.txt /out/app.txt\n\
             RUN echo two >> /out/a.txt && rm /out/b.txt && chmod 600 /out/app.txt\n\
             FROM {final_from}\n\
             COPY --from=builder /out/ /srv/out/\n"
        ),
    )
    .unwrap();
    ctx
}

/// Builds `ctx` into `tag` with `extra` flags at debug level; the log.
fn build(reg: &Registry, ctx: &std::path::Path, tag: &str, extra: &[&str]) -> String {
    let out = Kiln::build(ctx)
        .args(["--destination", &reg.image_ref(tag)])
        .args(["--insecure", "--insecure-pull", "--reproducible"])
        .args(["--verbosity", "debug"])
        .args(extra)
        .success();
    stderr(&out)
}

/// The lines saying a step's layer was recorded, or dropped unwritten.
fn layer_lines(log: &str, step: usize) -> (usize, usize) {
    let written = format!("step {step}: layer sha256:");
    let dropped = format!("step {step}: layer not written");
    (
        log.lines().filter(|l| l.contains(&written)).count(),
        log.lines().filter(|l| l.contains(&dropped)).count(),
    )
}

fn assert_copied(reg: &Registry, tag: &str) {
    let img = Flattened::from_registry(reg, tag).unwrap();
    assert_eq!(img.text("/srv/out/a.txt").as_deref(), Some("one\ntwo\n"));
    assert_eq!(img.text("/srv/out/app.txt").as_deref(), Some("app\n"));
    assert!(
        img.get("/srv/out/b.txt").is_none(),
        "deleted by the second RUN"
    );
    assert_eq!(img.get("/srv/out/app.txt").unwrap().mode & 0o777, 0o600);
}

fn layers(reg: &Registry, tag: &str) -> serde_json::Value {
    pushed_manifest_and_config(reg, tag).0["layers"].clone()
}

#[test]
fn a_builder_stage_without_the_cache_writes_none_of_its_run_layers() {
    let reg = Registry::plain_with_busybox().unwrap();
    let base = reg.image_ref("busybox:latest");
    let ctx = context(&base, &base);
    let log = build(&reg, ctx.path(), "deferred:off", &["--cache=false"]);
    // Lines 2 and 4 are the builder's RUNs.
    for step in [2, 4] {
        assert_eq!(layer_lines(&log, step), (0, 1), "step {step}:\n{log}");
    }
    assert_copied(&reg, "deferred:off");

    // With the cache every layer is written and stored, and the image is
    // the same.
    let log = build(
        &reg,
        ctx.path(),
        "deferred:cache",
        &[
            "--cache=true",
            "--cache-repo",
            &reg.image_ref("deferred-cache"),
        ],
    );
    for step in [2, 4] {
        assert_eq!(layer_lines(&log, step), (1, 0), "step {step}:\n{log}");
    }
    assert_copied(&reg, "deferred:cache");
    assert_eq!(layers(&reg, "deferred:off"), layers(&reg, "deferred:cache"));
}

#[test]
fn a_stage_built_from_the_builder_or_the_builder_as_target_gets_every_layer_in_order() {
    let reg = Registry::plain_with_busybox().unwrap();
    let base = reg.image_ref("busybox:latest");
    // The final stage starts from the builder: its layers are the image's.
    let ctx = context(&base, "builder");
    let log = build(&reg, ctx.path(), "deferred:from", &["--cache=false"]);
    for step in [2, 4] {
        assert_eq!(layer_lines(&log, step), (1, 0), "step {step}:\n{log}");
    }
    assert_copied(&reg, "deferred:from");
    let img = Flattened::from_registry(&reg, "deferred:from").unwrap();
    assert_eq!(img.text("/out/a.txt").as_deref(), Some("one\ntwo\n"));
    assert!(img.get("/out/b.txt").is_none());

    // The builder as the target: base, RUN, COPY, RUN, in that order.
    let log = build(
        &reg,
        ctx.path(),
        "deferred:target",
        &["--cache=false", "--target", "builder"],
    );
    assert!(!log.contains("layer not written"), "{log}");
    let (manifest, config) = pushed_manifest_and_config(&reg, "deferred:target");
    let layers = manifest["layers"].as_array().unwrap().len();
    let history = build_common::layer_history(&config);
    let base_layers = layers - 3;
    let ours: Vec<&str> = history[base_layers..].iter().map(|s| &s[..4]).collect();
    assert_eq!(ours, ["RUN ", "COPY", "RUN "], "{history:#?}");
    let img = Flattened::from_registry(&reg, "deferred:target").unwrap();
    assert_eq!(img.text("/out/a.txt").as_deref(), Some("one\ntwo\n"));
    assert!(img.get("/out/b.txt").is_none());
}

#[test]
fn under_chroot_a_builder_stage_writes_its_layers_before_the_next_step() {
    // Under chroot the second RUN appends to the first one's file in
    // place, where a shadow sharing its inode would see the change: the
    // changes are listed in the root, with no shadow to defer a layer on,
    // so each layer is written before the next step, as without deferral.
    let reg = Registry::plain_with_busybox().unwrap();
    let base = reg.image_ref("busybox:latest");
    let ctx = context(&base, &base);
    let log = build(
        &reg,
        ctx.path(),
        "deferred:chroot",
        &["--cache=false", "--isolation", "chroot"],
    );
    for step in [2, 4] {
        assert_eq!(layer_lines(&log, step), (1, 0), "step {step}:\n{log}");
    }
    assert_copied(&reg, "deferred:chroot");
}
