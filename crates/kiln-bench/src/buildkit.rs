//! BuildKit as a peer: a standalone `buildkitd` with `buildctl` when one is
//! found, else the Docker engine's built-in BuildKit through the docker
//! client with `DOCKER_BUILDKIT=1`.
//!
//! Which one is chosen, and the engine's storage driver, go into the report
//! beside the figures: the engine's BuildKit stores images through the
//! engine's storage driver (fuse-overlayfs on some machines), which is a
//! cost of that driver, not of BuildKit.
//!
//! - Standalone: `KILN_BENCH_BUILDKITD` names the `buildkitd` binary (else
//!   `buildkitd` on `PATH`); `buildctl` is looked up beside it, then on
//!   `PATH`; `runc` must be on `PATH`. Every build starts a daemon of its
//!   own (OCI worker, runc, overlayfs snapshotter) with its root on the
//!   run's fresh filesystem, as `buildctl-daemonless.sh` does on a CI
//!   runner; the daemon's start-up is not measured. Cold builds have
//!   nothing cached; warm builds import and export the registry cache
//!   (`type=registry`, `mode=max`).
//! - Engine: `KILN_BENCH_DOCKER` names the client (default `/usr/bin/docker`,
//!   Debian's, which has the classic builder's BuildKit mode without buildx).
//!   Before and after every build the engine's build cache is pruned and the
//!   run's images removed, so every run starts empty. Warm builds use the
//!   inline cache (`BUILDKIT_INLINE_CACHE=1`, `--cache-from`): registry cache
//!   export needs buildx, which that client does not have.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::measure::{measure, run_quiet, Sample};

/// The BuildKit this machine measures against.
#[derive(Debug, Clone)]
pub enum Buildkit {
    /// `buildkitd` and `buildctl` binaries.
    Standalone {
        /// The daemon.
        buildkitd: PathBuf,
        /// The client.
        buildctl: PathBuf,
        /// The runtime the daemon's OCI worker runs steps with (found on
        /// `PATH`, as `buildkitd` finds it).
        runc: PathBuf,
    },
    /// The Docker engine's BuildKit.
    Engine {
        /// The docker client.
        docker: PathBuf,
    },
}

/// What one build is asked to do.
pub struct BuildSpec<'a> {
    /// Build context (the Dockerfile is `Dockerfile` in it).
    pub context: &'a Path,
    /// Value of the `BASE` build argument.
    pub base: &'a str,
    /// Further build arguments, `NAME=VALUE`.
    pub build_args: &'a [String],
    /// Where the image is pushed.
    pub dest: &'a str,
    /// Registry cache reference (warm builds), read and written.
    pub cache: Option<&'a str>,
    /// An empty directory on the run's filesystem, for the daemon's state.
    pub dir: &'a Path,
    /// The registry's `host:port` (plain HTTP).
    pub registry: &'a str,
    /// The run's log.
    pub log: &'a Path,
}

impl Buildkit {
    /// Finds a standalone BuildKit, else the engine's; fails naming what
    /// is missing.
    pub fn detect() -> Result<Self> {
        let named = std::env::var_os("KILN_BENCH_BUILDKITD").map(PathBuf::from);
        if let Some(d) = named.or_else(|| kiln_testkit::find_in_path("buildkitd")) {
            if !d.exists() {
                bail!("KILN_BENCH_BUILDKITD: {} does not exist", d.display());
            }
            let beside = d.with_file_name("buildctl");
            let buildctl = if beside.exists() {
                beside
            } else {
                kiln_testkit::find_in_path("buildctl").with_context(|| {
                    format!("buildctl is neither beside {} nor on PATH", d.display())
                })?
            };
            let runc = kiln_testkit::find_in_path("runc").with_context(|| {
                format!(
                    "{} runs steps with runc, which is not on PATH (Debian package runc)",
                    d.display()
                )
            })?;
            return Ok(Self::Standalone {
                buildkitd: d,
                buildctl,
                runc,
            });
        }
        let docker = std::env::var_os("KILN_BENCH_DOCKER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/docker"));
        let out = Command::new(&docker)
            .args(["info", "--format", "{{.Driver}}"])
            .output()
            .with_context(|| {
                format!(
                    "no buildkitd (KILN_BENCH_BUILDKITD or PATH) and no docker client at {}; \
                     pass --peers buildah to measure without BuildKit",
                    docker.display()
                )
            })?;
        if !out.status.success() {
            bail!(
                "no buildkitd, and the Docker engine does not answer {}: {}; \
                 pass --peers buildah to measure without BuildKit",
                docker.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self::Engine { docker })
    }

    /// One line for the report: which BuildKit, its version, its storage.
    pub fn describe(&self) -> String {
        match self {
            Self::Standalone {
                buildkitd, runc, ..
            } => format!(
                "standalone `{}` ({}), OCI worker, runc `{}` ({}), overlayfs snapshotter, a daemon per run on the run's fresh filesystem; warm runs: registry cache (`type=registry,mode=max`)",
                buildkitd.display(),
                output(Command::new(buildkitd).arg("--version")),
                runc.display(),
                output(Command::new(runc).arg("--version"))
                    .lines()
                    .next()
                    .unwrap_or_default()
            ),
            Self::Engine { docker } => format!(
                "the Docker engine's BuildKit (engine {}, storage driver `{}`) through `{}` with `DOCKER_BUILDKIT=1`; build cache pruned before every run; warm runs: inline cache (`--cache-from`, `BUILDKIT_INLINE_CACHE=1`)",
                output(Command::new(docker).args(["version", "--format", "{{.Server.Version}}"])),
                output(Command::new(docker).args(["info", "--format", "{{.Driver}}"])),
                docker.display()
            ),
        }
    }

    /// Builds and pushes, measured; the daemon's state is emptied before
    /// and after.
    pub fn build(&self, s: &BuildSpec) -> Result<Sample> {
        match self {
            Self::Standalone {
                buildkitd,
                buildctl,
                ..
            } => standalone(buildkitd, buildctl, s),
            Self::Engine { docker } => engine(docker, s),
        }
    }
}

fn output(c: &mut Command) -> String {
    c.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("? ({e})"))
}

fn engine(docker: &Path, s: &BuildSpec) -> Result<Sample> {
    let d = || {
        let mut c = Command::new(docker);
        c.env("DOCKER_BUILDKIT", "1");
        c
    };
    let reset = || -> Result<()> {
        let _ = run_quiet(d().args(["image", "rm", "--force", s.dest]), s.log);
        run_quiet(d().args(["builder", "prune", "--all", "--force"]), s.log)
            .context("emptying the engine's build cache")
    };
    reset()?;
    let mut c = d();
    c.args(["build", "--progress=plain", "--tag", s.dest])
        .arg("--build-arg")
        .arg(format!("BASE={}", s.base));
    if let Some(cache) = s.cache {
        c.args([
            "--cache-from",
            cache,
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=1",
        ]);
    }
    c.arg(s.context);
    let r = measure(&mut c, s.log).and_then(|mut sample| {
        sample.add(measure(d().args(["push", s.dest]), s.log)?);
        // The inline cache travels with an image: the cache reference is
        // the image pushed under the cache's name too (blobs already there).
        if let Some(cache) = s.cache {
            let mut tag = d();
            tag.args(["tag", s.dest, cache]);
            sample.add(measure(&mut tag, s.log)?);
            sample.add(measure(d().args(["push", cache]), s.log)?);
            let _ = run_quiet(d().args(["image", "rm", "--force", cache]), s.log);
        }
        Ok(sample)
    });
    reset()?;
    r
}

/// A `buildkitd` of one run; stopped on drop.
struct Daemon(Child);

impl Drop for Daemon {
    /// SIGTERM first, so that a daemon stopped in the middle of a build
    /// (a failed run) can end its steps and unmount their snapshots before
    /// the run's filesystem is unmounted; SIGKILL if it has not exited
    /// within 10 s.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) on the pid of a child not yet waited for.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(10) {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn standalone(buildkitd: &Path, buildctl: &Path, s: &BuildSpec) -> Result<Sample> {
    let root = s.dir.join("buildkit");
    std::fs::create_dir_all(&root)?;
    let conf = s.dir.join("buildkitd.toml");
    std::fs::write(
        &conf,
        format!(
            "[worker.oci]\n  enabled = true\n  snapshotter = \"overlayfs\"\n[worker.containerd]\n  enabled = false\n[registry.\"{}\"]\n  http = true\n  insecure = true\n",
            s.registry
        ),
    )?;
    let sock = s.dir.join("buildkitd.sock");
    let addr = format!("unix://{}", sock.display());
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(s.log)?;
    let _daemon = Daemon(
        Command::new(buildkitd)
            .arg("--config")
            .arg(&conf)
            .arg("--root")
            .arg(&root)
            .args(["--addr", &addr])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", buildkitd.display()))?,
    );
    let started = Instant::now();
    while run_quiet(
        Command::new(buildctl).args(["--addr", &addr, "debug", "workers"]),
        s.log,
    )
    .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "buildkitd did not answer within 30 s; see {}",
                s.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut c = Command::new(buildctl);
    c.args(["--addr", &addr, "build", "--frontend", "dockerfile.v0"])
        .arg("--local")
        .arg(format!("context={}", s.context.display()))
        .arg("--local")
        .arg(format!("dockerfile={}", s.context.display()))
        .arg("--opt")
        .arg(format!("build-arg:BASE={}", s.base))
        .args(
            s.build_args
                .iter()
                .flat_map(|a| ["--opt".to_string(), format!("build-arg:{a}")]),
        )
        .arg("--output")
        .arg(format!(
            "type=image,name={},push=true,registry.insecure=true",
            s.dest
        ));
    if let Some(cache) = s.cache {
        c.arg("--import-cache")
            .arg(format!("type=registry,ref={cache},registry.insecure=true"))
            .arg("--export-cache")
            .arg(format!(
                "type=registry,ref={cache},mode=max,registry.insecure=true"
            ));
    }
    measure(&mut c, s.log)
}
