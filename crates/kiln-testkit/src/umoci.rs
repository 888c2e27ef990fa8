//! umoci: unpacking an OCI layout into a runtime bundle, as a second
//! opinion on what a layer stack extracts to.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::cmd::run;

/// `umoci unpack --image LAYOUT:TAG BUNDLE`; returns `BUNDLE/rootfs`.
///
/// `bundle_dir` must not exist yet (umoci creates it). Ownership is kept as
/// in the image, which needs root; as non-root add `--rootless` yourself.
///
/// # Errors
/// Fails with umoci's stderr.
pub fn umoci_unpack(layout_dir: &Path, tag: &str, bundle_dir: &Path) -> Result<PathBuf> {
    ensure!(
        !bundle_dir.exists(),
        "umoci bundle dir {} already exists; umoci needs a fresh path",
        bundle_dir.display()
    );
    let mut c = Command::new("umoci");
    c.arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout_dir.display()))
        .arg(bundle_dir);
    run(&mut c).with_context(|| format!("unpacking {}:{tag}", layout_dir.display()))?;
    Ok(bundle_dir.join("rootfs"))
}

/// Runs the process of a bundle [`umoci_unpack`] made, the way a runtime
/// would but without namespaces: `chroot` into its rootfs as its user
/// (`uid:gid`), `cd` to its cwd, with exactly its environment and its args
/// (the image's ENTRYPOINT + CMD as umoci translated them). Returns stdout.
/// Needs root. The process sees no `/proc` or `/dev`.
///
/// # Errors
/// Fails if the bundle's config.json is unreadable or the process fails
/// (with its stderr).
pub fn run_unpacked(bundle_dir: &Path) -> Result<String> {
    let path = bundle_dir.join("config.json");
    let spec: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let process = &spec["process"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let args = strings(&process["args"]);
    ensure!(!args.is_empty(), "{} has no process args", path.display());
    let cwd = process["cwd"].as_str().unwrap_or("/");
    let uid = process["user"]["uid"].as_u64().unwrap_or(0);
    let gid = process["user"]["gid"].as_u64().unwrap_or(0);
    let mut c = Command::new("chroot");
    c.arg(format!("--userspec={uid}:{gid}"))
        .arg(bundle_dir.join("rootfs"))
        .args(["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", cwd])
        .args(&args)
        .env_clear();
    for e in strings(&process["env"]) {
        if let Some((k, v)) = e.split_once('=') {
            c.env(k, v);
        }
    }
    let out = run(&mut c).with_context(|| {
        format!(
            "running {args:?} in {cwd} as {uid}:{gid} in {}",
            bundle_dir.display()
        )
    })?;
    String::from_utf8(out.stdout).context("the process printed non-UTF-8")
}

/// Copies `name` (`repo:tag` or `repo@digest`) from `reg` into an OCI
/// layout under `dir` with skopeo (digests preserved, reading with
/// `access`) and unpacks it into `dir/bundle` with [`umoci_unpack`];
/// returns the bundle's rootfs.
///
/// # Errors
/// Fails if skopeo or umoci does.
pub fn unpack_pushed_image(
    reg: &crate::Registry,
    access: &crate::Access,
    name: &str,
    dir: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let layout = dir.join("layout");
    let opts = crate::CopyOptions {
        src: access.clone(),
        preserve_digests: true,
        ..crate::CopyOptions::default()
    };
    crate::skopeo_copy_with(
        &format!("docker://{}", reg.image_ref(name)),
        &format!("oci:{}:image", layout.display()),
        &opts,
    )?;
    umoci_unpack(&layout, "image", &dir.join("bundle"))
}

/// Copies `name` (`repo:tag`) from `reg`, unpacks it with
/// [`unpack_pushed_image`] and runs it with [`run_unpacked`]; returns its
/// stdout. Everything lives in a temp dir removed afterwards.
///
/// # Errors
/// Fails if any of the tools fails, or the image's process does.
pub fn run_pushed_image(reg: &crate::Registry, name: &str) -> Result<String> {
    let dir = tempfile::Builder::new().prefix("kiln-run-").tempdir()?;
    unpack_pushed_image(reg, &crate::Access::for_registry(reg), name, dir.path())?;
    run_unpacked(&dir.path().join("bundle"))
        .with_context(|| format!("running {}", reg.image_ref(name)))
}
