//! Base images made by hand (no kiln code) as OCI layouts, pushed to a test
//! registry with skopeo.
//!
//! * [`BaseImage::busybox`]: one layer, a static busybox with an applet
//!   symlink per command in `/bin`, users `root`, `nobody`, `app` (1000:1000),
//!   groups `root`, `nogroup`, `app` (1000), `staff` (50, member `app`).
//! * [`BaseImage::busybox_two_layers`]: the same plus a second layer that
//!   exercises a whiteout and an opaque directory.
//! * [`BaseImage::busybox_multi_arch`]: an index with the host's busybox and a
//!   tiny foreign-architecture image ([`Platform::foreign`]) holding `/ARCH`.
//! * [`BaseImage::busybox_for_platforms`]: an index of working busybox
//!   images, Debian's static busybox of each foreign architecture included.
//! * [`BaseImage::debian`]: Debian bookworm (minbase) with python3,
//!   python3-venv and python3-pip, debootstrapped once per machine into a
//!   persistent cache (see the `debian` module).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::cmd::run_stdout;
use crate::layout::{media, Descriptor, Layer, LayerBuilder, LayoutWriter, FIXED_CREATED};
use crate::platform::Platform;
use crate::registry::Registry;
use crate::skopeo::{skopeo_copy_with, Access, CopyOptions};

/// The tag every base image carries inside its own layout.
pub const LAYOUT_TAG: &str = "latest";

/// `PATH` set in the busybox config.
pub const BUSYBOX_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
app:x:1000:1000:app:/home/app:/bin/sh\n";

const GROUP: &str = "root:x:0:\n\
staff:x:50:app\n\
nogroup:x:65534:\n\
app:x:1000:\n";

/// A base image in an OCI layout in its own temp dir (removed on drop).
#[derive(Debug)]
pub struct BaseImage {
    dir: LayoutDir,
    multi_arch: bool,
}

/// Where a base image's layout lives: its own temp dir, or a shared
/// persistent cache that is never modified or removed.
#[derive(Debug)]
enum LayoutDir {
    Temp(TempDir),
    Cached(PathBuf),
}

impl LayoutDir {
    fn path(&self) -> &Path {
        match self {
            Self::Temp(d) => d.path(),
            Self::Cached(p) => p,
        }
    }
}

impl BaseImage {
    /// The one-layer busybox image for the host platform.
    ///
    /// # Errors
    /// Fails if busybox is missing or the layout cannot be written.
    pub fn busybox() -> Result<Self> {
        let dir = new_dir()?;
        let mut w = LayoutWriter::create(dir.path())?;
        let mut b = LayerBuilder::new();
        add_busybox_rootfs(&mut b)?;
        let base = b.finish()?;
        let m = w.write_image(
            &config(&Platform::host(), &[&base], "busybox rootfs"),
            &[base],
        )?;
        w.tag(LAYOUT_TAG, &m);
        w.finish()?;
        Ok(Self {
            dir: LayoutDir::Temp(dir),
            multi_arch: false,
        })
    }

    /// busybox plus a second layer with a whiteout and an opaque directory.
    ///
    /// Layer 1 is the busybox rootfs plus `/opt/removed.txt` and
    /// `/opt/replaced/old.txt`. Layer 2 adds `/etc/motd` ("two layers\n"),
    /// whites out `/opt/removed.txt`, marks `/opt/replaced` opaque and adds
    /// `/opt/replaced/new.txt` ("new\n"). Flattened, `/opt` holds only
    /// `replaced/new.txt`.
    ///
    /// # Errors
    /// Fails if busybox is missing or the layout cannot be written.
    pub fn busybox_two_layers() -> Result<Self> {
        let dir = new_dir()?;
        let mut w = LayoutWriter::create(dir.path())?;
        let mut b = LayerBuilder::new();
        add_busybox_rootfs(&mut b)?;
        b.dir("opt", 0o755, 0, 0)?
            .file("opt/removed.txt", 0o644, 0, 0, b"removed in layer 2\n")?
            .dir("opt/replaced", 0o755, 0, 0)?
            .file(
                "opt/replaced/old.txt",
                0o644,
                0,
                0,
                b"hidden by opaque dir\n",
            )?;
        let one = b.finish()?;
        let mut b = LayerBuilder::new();
        b.file("etc/motd", 0o644, 0, 0, b"two layers\n")?
            .whiteout("opt/removed.txt")?
            .dir("opt/replaced", 0o755, 0, 0)?
            .opaque("opt/replaced")?
            .file("opt/replaced/new.txt", 0o644, 0, 0, b"new\n")?;
        let two = b.finish()?;
        let cfg = config(&Platform::host(), &[&one, &two], "busybox, two layers");
        let m = w.write_image(&cfg, &[one, two])?;
        w.tag(LAYOUT_TAG, &m);
        w.finish()?;
        Ok(Self {
            dir: LayoutDir::Temp(dir),
            multi_arch: false,
        })
    }

    /// An image index: the host's busybox, and for [`Platform::foreign`] a
    /// tiny image whose only file is `/ARCH` containing that architecture
    /// name, so a test can tell which one a build resolved.
    ///
    /// # Errors
    /// Fails if busybox is missing or the layout cannot be written.
    pub fn busybox_multi_arch() -> Result<Self> {
        let dir = new_dir()?;
        let mut w = LayoutWriter::create(dir.path())?;
        let host = Platform::host();
        let mut b = LayerBuilder::new();
        add_busybox_rootfs(&mut b)?;
        let base = b.finish()?;
        let host_m = w.write_image(&config(&host, &[&base], "busybox rootfs"), &[base])?;

        let foreign = Platform::foreign();
        let mut b = LayerBuilder::new();
        b.file(
            "ARCH",
            0o644,
            0,
            0,
            format!("{}\n", foreign.architecture).as_bytes(),
        )?;
        let tiny = b.finish()?;
        let foreign_m = w.write_image(&config(&foreign, &[&tiny], "arch marker"), &[tiny])?;

        let entry = |d: &Descriptor, p: &Platform| {
            let mut e = d.to_json();
            e["platform"] = p.to_json();
            e
        };
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media::INDEX,
            "manifests": [entry(&host_m, &host), entry(&foreign_m, &foreign)],
        });
        let idx = w.write_json(media::INDEX, &index)?;
        w.tag(LAYOUT_TAG, &idx);
        w.finish()?;
        Ok(Self {
            dir: LayoutDir::Temp(dir),
            multi_arch: true,
        })
    }

    /// An image index with a working busybox image (as [`Self::busybox`])
    /// for each of `platforms`: this machine's busybox for the host, Debian's
    /// static busybox of that architecture for the others (fetched once per
    /// machine, see the `foreign_busybox` module), whose RUN steps need QEMU
    /// emulation. Each image also holds `/ARCH`, its architecture's name.
    ///
    /// # Errors
    /// Fails if a busybox cannot be found or downloaded, or the layout
    /// cannot be written.
    pub fn busybox_for_platforms(platforms: &[Platform]) -> Result<Self> {
        let dir = new_dir()?;
        let mut w = LayoutWriter::create(dir.path())?;
        let mut entries = Vec::new();
        for p in platforms {
            let bin = if p.architecture == Platform::host().architecture {
                busybox_binary()?
            } else {
                crate::foreign_busybox::busybox_static(&p.architecture)?
            };
            let mut b = LayerBuilder::new();
            add_busybox_rootfs_of(&mut b, &bin)?;
            b.file(
                "ARCH",
                0o644,
                0,
                0,
                format!("{}\n", p.architecture).as_bytes(),
            )?;
            let layer = b.finish()?;
            let m = w.write_image(&config(p, &[&layer], "busybox rootfs"), &[layer])?;
            let mut e = m.to_json();
            e["platform"] = p.to_json();
            entries.push(e);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media::INDEX,
            "manifests": entries,
        });
        let idx = w.write_json(media::INDEX, &index)?;
        w.tag(LAYOUT_TAG, &idx);
        w.finish()?;
        Ok(Self {
            dir: LayoutDir::Temp(dir),
            multi_arch: true,
        })
    }

    /// An image of the host platform made of `layers` (lowest first), whose
    /// runtime `config` section is `runtime` (e.g. `{"Env": [...], "User":
    /// "app", "OnBuild": [...]}`) instead of busybox's Env and Cmd. Start from
    /// [`add_busybox_rootfs`] for a usable base.
    ///
    /// # Errors
    /// Fails if the layout cannot be written.
    pub fn from_layers(layers: Vec<Layer>, runtime: Value) -> Result<Self> {
        let dir = new_dir()?;
        let mut w = LayoutWriter::create(dir.path())?;
        let refs: Vec<&Layer> = layers.iter().collect();
        let mut cfg = config(&Platform::host(), &refs, "custom image");
        cfg["config"] = runtime;
        let m = w.write_image(&cfg, &layers)?;
        w.tag(LAYOUT_TAG, &m);
        w.finish()?;
        Ok(Self {
            dir: LayoutDir::Temp(dir),
            multi_arch: false,
        })
    }

    /// Debian bookworm, `debootstrap --variant=minbase` plus python3,
    /// python3-venv and python3-pip, as one layer; config `Env` is `PATH`
    /// and `LANG=C.UTF-8`, `Cmd` is `bash`.
    ///
    /// Built with debootstrap from this machine's Debian mirror on first use
    /// (about 3 minutes) into `$KILN_TEST_CACHE/debian-bookworm-python`
    /// (default `~/.cache/kiln-test/...`), then reused by every test and
    /// process; a lock makes concurrent first uses build it once. The layout
    /// is shared and read-only: do not write into [`Self::layout_dir`].
    ///
    /// # Errors
    /// Fails if debootstrap is missing or the mirror is unreachable.
    pub fn debian() -> Result<Self> {
        Ok(Self {
            dir: LayoutDir::Cached(crate::debian::cached_layout()?),
            multi_arch: false,
        })
    }

    /// The OCI layout directory.
    pub fn layout_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The tag inside the layout ([`LAYOUT_TAG`]).
    pub fn tag(&self) -> &str {
        LAYOUT_TAG
    }

    /// `oci:DIR:TAG`, the skopeo/buildah transport reference.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.dir.path().display(), LAYOUT_TAG)
    }

    /// Pushes the image (every platform, for the multi-arch variant) to `reg`
    /// as `name` (`repo:tag`), digests unchanged, and returns the full
    /// reference `HOST/name`.
    ///
    /// # Errors
    /// Fails with skopeo's stderr.
    pub fn push_to(&self, reg: &Registry, name: &str) -> Result<String> {
        let full = reg.image_ref(name);
        let opts = CopyOptions {
            dest: Access::for_registry(reg),
            all: self.multi_arch,
            preserve_digests: true,
            ..CopyOptions::default()
        };
        skopeo_copy_with(&self.oci_ref(), &format!("docker://{full}"), &opts)
            .with_context(|| format!("pushing base image to {full}"))?;
        Ok(full)
    }
}

fn new_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("kiln-base-")
        .tempdir()
        .context("creating base image dir")
}

/// Where the static busybox binary is read from.
fn busybox_binary() -> Result<PathBuf> {
    crate::tools::find_in_path("busybox")
        .context("busybox not found on PATH (apt package busybox-static)")
}

/// Adds the busybox root filesystem (the single layer of
/// [`BaseImage::busybox`]) to `b`, for tests composing their own images.
///
/// # Errors
/// Fails if busybox is missing or cannot be listed.
pub fn add_busybox_rootfs(b: &mut LayerBuilder) -> Result<()> {
    add_busybox_rootfs_of(b, &busybox_binary()?)
}

/// [`add_busybox_rootfs`] with the busybox binary at `bin` (another
/// architecture's: its applets are those of this machine's busybox, the
/// same Debian package).
///
/// # Errors
/// Fails if either busybox is missing or cannot be listed.
pub fn add_busybox_rootfs_of(b: &mut LayerBuilder, bin: &Path) -> Result<()> {
    let data = std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let list = run_stdout(std::process::Command::new(busybox_binary()?).arg("--list"))?;

    for d in [
        "bin", "dev", "etc", "home", "proc", "sys", "usr", "usr/bin", "var",
    ] {
        b.dir(d, 0o755, 0, 0)?;
    }
    b.dir("root", 0o700, 0, 0)?
        .dir("tmp", 0o1777, 0, 0)?
        .dir("home/app", 0o755, 1000, 1000)?
        .file("bin/busybox", 0o755, 0, 0, &data)?;
    let mut applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
        .collect();
    applets.sort_unstable();
    applets.dedup();
    for a in applets {
        b.symlink(&format!("bin/{a}"), "busybox")?;
    }
    b.file("etc/passwd", 0o644, 0, 0, PASSWD.as_bytes())?.file(
        "etc/group",
        0o644,
        0,
        0,
        GROUP.as_bytes(),
    )?;
    Ok(())
}

/// The image config for a hand-made image.
fn config(p: &Platform, layers: &[&Layer], what: &str) -> Value {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let history: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| {
            json!({
                "created": FIXED_CREATED,
                "created_by": format!("kiln-testkit: {what}, layer {}", i + 1),
            })
        })
        .collect();
    let mut cfg = json!({
        "created": FIXED_CREATED,
        "architecture": p.architecture,
        "os": p.os,
        "config": { "Env": [BUSYBOX_PATH_ENV], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    if let Some(v) = &p.variant {
        cfg["variant"] = v.clone().into();
    }
    cfg
}
