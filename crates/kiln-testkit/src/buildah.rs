//! buildah as the reference builder: build a Dockerfile, export the result
//! as an OCI layout, flatten it.
//!
//! Every build gets its own containers-storage in a temp dir (`--root`,
//! `--runroot`, a private `storage.conf`), so builds never share state with
//! each other or with the machine's own storage. The flags that work here
//! (root, no Docker daemon, inside a container) are:
//!
//! ```text
//! buildah --root R --runroot RR --storage-driver vfs \
//!     build --layers --isolation chroot --tls-verify=false -f DOCKERFILE -t TAG CONTEXT
//! buildah --root R --runroot RR --storage-driver vfs push --tls-verify=false TAG oci:DIR:TAG
//! ```
//!
//! `vfs` is used because it needs no mounts and its directories are plain
//! files that a temp dir can remove; `overlay` also works on this machine
//! (ext4, root) but leaves mounts behind if a test panics mid-build.
//! `--isolation chroot` runs RUN steps without a user namespace or runc,
//! which is what a CI container allows.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::auth::Credentials;
use crate::cmd::run_with_timeout;
use crate::flatten::Flattened;
use crate::registry::Registry;

/// Paths buildah leaves in the layer of a `RUN` step with chroot isolation:
/// empty mount-point files (mode 0755) for the bind-mounted
/// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, and `/run` when the
/// base lacks it. They are buildah's residue, not the Dockerfile's result,
/// so pass these as `ignore` to [`crate::diff`] when comparing with buildah.
pub const BUILDAH_RUN_ARTIFACTS: &[&str] =
    &["/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/run"];

/// Time limit for one `buildah build` (and for its push).
pub const BUILDAH_TIMEOUT: Duration = Duration::from_secs(600);

/// The storage driver every build uses; see the module docs.
pub const BUILDAH_STORAGE_DRIVER: &str = "vfs";

/// A buildah build, configured with builder methods and run with [`BuildahBuild::run`].
#[derive(Debug, Clone)]
pub struct BuildahBuild {
    context: PathBuf,
    dockerfile: Option<PathBuf>,
    tag: String,
    build_args: Vec<(String, String)>,
    target: Option<String>,
    creds: Option<Credentials>,
    extra: Vec<String>,
}

impl BuildahBuild {
    /// A build of `context/Dockerfile`, tagged `tag` (a local name such as `out:1`).
    pub fn new(context: &Path, tag: &str) -> Self {
        Self {
            context: context.to_path_buf(),
            dockerfile: None,
            tag: tag.to_string(),
            build_args: Vec::new(),
            target: None,
            creds: None,
            extra: Vec::new(),
        }
    }

    /// Use this Dockerfile instead of `context/Dockerfile`.
    pub fn dockerfile(mut self, path: &Path) -> Self {
        self.dockerfile = Some(path.to_path_buf());
        self
    }

    /// `--build-arg KEY=VALUE`.
    pub fn build_arg(mut self, key: &str, value: &str) -> Self {
        self.build_args.push((key.into(), value.into()));
        self
    }

    /// `--target STAGE`.
    pub fn target(mut self, stage: &str) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// Pull base images from `reg` with its credentials, if it has any.
    pub fn pull_from(mut self, reg: &Registry) -> Self {
        self.creds = reg.credentials().cloned();
        self
    }

    /// Any other `buildah build` flag, passed as is.
    pub fn arg(mut self, flag: &str) -> Self {
        self.extra.push(flag.into());
        self
    }

    /// Runs the build and exports the image to an OCI layout.
    ///
    /// # Errors
    /// Fails with buildah's stderr (and its step output on stdout).
    pub fn run(self) -> Result<BuildahImage> {
        let storage = tempfile::Builder::new()
            .prefix("kiln-buildah-")
            .tempdir()
            .context("creating buildah storage dir")?;
        let layout = tempfile::Builder::new()
            .prefix("kiln-buildah-oci-")
            .tempdir()
            .context("creating layout dir")?;
        let env = Storage::create(storage.path())?;

        let mut c = env.buildah();
        c.args([
            "build",
            "--layers",
            "--isolation",
            "chroot",
            "--tls-verify=false",
        ]);
        if let Some(df) = &self.dockerfile {
            c.arg("-f").arg(df);
        }
        c.arg("-t").arg(&self.tag);
        for (k, v) in &self.build_args {
            c.arg("--build-arg").arg(format!("{k}={v}"));
        }
        if let Some(t) = &self.target {
            c.arg("--target").arg(t);
        }
        if let Some(cr) = &self.creds {
            c.arg("--creds").arg(cr.user_pass());
        }
        c.args(&self.extra).arg(&self.context);
        run_with_timeout(&mut c, BUILDAH_TIMEOUT)
            .with_context(|| format!("buildah build of {}", self.context.display()))?;

        let mut p = env.buildah();
        p.args(["push", "--quiet", "--tls-verify=false"])
            .arg(&self.tag)
            .arg(format!("oci:{}:{}", layout.path().display(), LAYOUT_REF));
        run_with_timeout(&mut p, BUILDAH_TIMEOUT).context("buildah push to an OCI layout")?;

        Ok(BuildahImage {
            layout,
            _storage: storage,
        })
    }
}

/// The tag under which [`BuildahImage`] layouts hold the built image.
const LAYOUT_REF: &str = "image";

/// `buildah build` of `dockerfile` in `context` tagged `tag`; see
/// [`BuildahBuild`] for build args, targets and registry credentials.
///
/// # Errors
/// Fails with buildah's stderr.
pub fn buildah_build(context: &Path, dockerfile: &Path, tag: &str) -> Result<BuildahImage> {
    BuildahBuild::new(context, tag).dockerfile(dockerfile).run()
}

/// An image buildah built, exported as an OCI layout; all its files are
/// removed on drop.
#[derive(Debug)]
pub struct BuildahImage {
    layout: TempDir,
    _storage: TempDir,
}

impl BuildahImage {
    /// The OCI layout holding the image.
    pub fn layout_dir(&self) -> &Path {
        self.layout.path()
    }

    /// The tag of the image inside [`BuildahImage::layout_dir`].
    pub fn tag(&self) -> &str {
        LAYOUT_REF
    }

    /// Reads the image's final filesystem and config.
    ///
    /// # Errors
    /// As [`Flattened::from_layout`].
    pub fn flatten(&self) -> Result<Flattened> {
        Flattened::from_layout(self.layout.path(), LAYOUT_REF)
    }
}

/// A private containers-storage location.
struct Storage {
    root: PathBuf,
    runroot: PathBuf,
    conf: PathBuf,
    tmp: PathBuf,
}

impl Storage {
    fn create(dir: &Path) -> Result<Self> {
        let s = Self {
            root: dir.join("root"),
            runroot: dir.join("runroot"),
            conf: dir.join("storage.conf"),
            tmp: dir.join("tmp"),
        };
        for d in [&s.root, &s.runroot, &s.tmp] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        // A private storage.conf so options from the machine's
        // /etc/containers/storage.conf (mount programs, other drivers)
        // cannot leak into the build.
        let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("string to JSON");
        fs::write(
            &s.conf,
            format!(
                "[storage]\ndriver = \"{BUILDAH_STORAGE_DRIVER}\"\ngraphroot = {}\nrunroot = {}\n",
                q(&s.root),
                q(&s.runroot)
            ),
        )
        .with_context(|| format!("writing {}", s.conf.display()))?;
        Ok(s)
    }

    fn buildah(&self) -> Command {
        let mut c = Command::new("buildah");
        c.env("CONTAINERS_STORAGE_CONF", &self.conf)
            // Layer staging goes to TMPDIR (default /var/tmp); keep it private too.
            .env("TMPDIR", &self.tmp)
            .env("BUILDAH_ISOLATION", "chroot")
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--storage-driver")
            .arg(BUILDAH_STORAGE_DRIVER);
        c
    }
}
