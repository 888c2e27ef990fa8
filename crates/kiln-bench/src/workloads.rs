//! The workloads and how each tool runs them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use kiln_testkit::{Platform, Registry};

use crate::bases::Bases;
use crate::fresh_disk::FreshDisk;
use crate::measure::{measure, run_quiet, Sample};
use crate::Opts;

/// Every workload, in the order they run.
pub const NAMES: &[&str] = &[
    "multi-stage",
    "fs-stress",
    "warm-200mb",
    "warm-1gb",
    "python-cold",
    "python-warm",
    "big-cold",
    "big-warm",
    "big-warm-2x",
    "multi-stage-2p",
];

/// Workloads that run only when named in `--only`: the big image takes
/// minutes per build for every tool (about 2 GB and 150,000 files written);
/// the two-platform build needs QEMU user emulation in binfmt_misc.
pub const OPT_IN: &[&str] = &["big-cold", "big-warm", "big-warm-2x", "multi-stage-2p"];

/// The builders, and the bare commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// kiln (release build).
    Kiln,
    /// `buildah build --layers`.
    Buildah,
    /// BuildKit (see `buildkit`).
    Buildkit,
    /// The workload's RUN commands in a plain chroot, no builder (see `bare`).
    Bare,
    /// For a workload of several platforms: one kiln build per platform,
    /// then `kiln index create` (what per-architecture CI jobs do).
    KilnSplit,
}

impl Tool {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Kiln => "kiln",
            Tool::Buildah => "buildah",
            Tool::Buildkit => "buildkit",
            Tool::Bare => "bare",
            Tool::KilnSplit => "kiln-split",
        }
    }

    /// The peer named `s` (`--peers`).
    pub fn peer(s: &str) -> Option<Self> {
        match s {
            "buildah" => Some(Tool::Buildah),
            "buildkit" => Some(Tool::Buildkit),
            "bare" => Some(Tool::Bare),
            _ => None,
        }
    }
}

/// One prepared workload: a context on disk and a base pushed to the registry.
#[derive(Debug)]
pub struct Workload {
    /// Short name.
    pub name: String,
    /// What it measures.
    pub title: String,
    /// Target for the ratio kiln/buildah (median wall time).
    pub target: f64,
    /// The base image reference (build arg `BASE`).
    pub base: String,
    /// Warm: each measured run is a fresh runner rebuilding with the
    /// registry cache right after a cold build filled it.
    pub warm: bool,
    /// The file a warm run changes (relative to the context).
    change: Option<&'static str>,
    /// The RUN commands without a builder, when the workload has a plan.
    pub bare: Option<crate::bare::Plan>,
    /// Build arguments beside `BASE`.
    build_args: Vec<String>,
    /// Several platforms (`--custom-platform`) for one image: kiln builds
    /// them in one run, against one run per platform and `kiln index create`.
    pub platforms: Vec<String>,
    context: PathBuf,
    runs_dir: PathBuf,
    logs: PathBuf,
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

impl Workload {
    /// Lays out the context under `bench/work/contexts/NAME` and pushes the base.
    pub fn prepare(name: &str, opts: &Opts, bases: &mut Bases) -> Result<Self> {
        let wl = opts.root.join("bench/workloads");
        let (src, title, target, base, warm, change) = match name {
            "multi-stage" => (
                "multi-stage",
                "three stages (two independent generators, a final stage with COPY --from), busybox base, cold",
                0.5,
                bases.busybox()?,
                false,
                None,
            ),
            "fs-stress" => (
                "fs-stress",
                "30,000 small files, a 256 MiB random file, then deletions and chmods, busybox base, cold",
                0.4,
                bases.busybox()?,
                false,
                None,
            ),
            "warm-200mb" => (
                "warm-scaling",
                "warm rebuild after a code-only change, fresh runner, registry cache, 200 MiB base",
                0.1,
                bases.busybox_plus(2)?,
                true,
                Some("app/run.sh"),
            ),
            "warm-1gb" => (
                "warm-scaling",
                "warm rebuild after a code-only change, fresh runner, registry cache, 1 GiB base",
                0.1,
                bases.busybox_plus(10)?,
                true,
                Some("app/run.sh"),
            ),
            "python-cold" => (
                "python-service",
                "Python service: venv, pip install fastapi/uvicorn/requests from local wheels, app; Debian base, cold",
                0.5,
                bases.debian()?,
                false,
                None,
            ),
            "python-warm" => (
                "python-service",
                "the Python service rebuilt after a code-only change, fresh runner, registry cache",
                0.1,
                bases.debian()?,
                true,
                Some("app/main.py"),
            ),
            "big-cold" => (
                "big-image",
                "big image: a RUN writing 150,000 files and 2 GB, a RUN changing 300 of them, the app; Debian base, cold",
                0.5,
                bases.debian()?,
                false,
                None,
            ),
            "big-warm" => (
                "big-image",
                "the big image rebuilt after a code-only change, fresh runner, registry cache",
                0.1,
                bases.debian()?,
                true,
                Some("app/main.py"),
            ),
            "big-warm-2x" => (
                "big-image",
                "the same with everything the RUNs write twice as large (300,000 files, 4 GB)",
                0.1,
                bases.debian()?,
                true,
                Some("app/main.py"),
            ),
            "multi-stage-2p" => (
                "multi-stage",
                "the multi-stage workload for this machine's platform and a foreign one under QEMU (arm64 on x86-64): one kiln build of both against one kiln build per platform plus `kiln index create`, cold",
                1.0,
                bases.busybox_two_platforms()?,
                false,
                None,
            ),
            other => anyhow::bail!("unknown workload {other}"),
        };
        let build_args = match name {
            "big-warm-2x" => vec!["SCALE=2".to_string()],
            _ => Vec::new(),
        };
        let platforms = match name {
            "multi-stage-2p" => [Platform::host(), Platform::foreign()]
                .iter()
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect(),
            _ => Vec::new(),
        };
        let context = opts.work.join("contexts").join(name);
        let _ = fs::remove_dir_all(&context);
        copy_tree(&wl.join(src), &context)?;
        if src == "warm-scaling" {
            // Dependencies: five text files of 20,000 lines each (about 1.7 MB).
            let deps = context.join("deps");
            fs::create_dir_all(&deps)?;
            for i in 1..=5 {
                let text: String = (1..=20_000)
                    .map(|n| format!("dep {i} line {n}\n"))
                    .collect();
                fs::write(deps.join(format!("dep{i}.txt")), text)?;
            }
        }
        if src == "python-service" {
            let wheels = crate::workloads::wheelhouse(opts)?;
            copy_tree(&wheels, &context.join("wheels"))?;
        }
        let runs_dir = opts.work.join("runs").join(name);
        let logs = opts.work.join("logs").join(name);
        for d in [&runs_dir, &logs] {
            let _ = fs::remove_dir_all(d);
            fs::create_dir_all(d)?;
        }
        Ok(Self {
            name: name.into(),
            title: title.into(),
            target,
            base,
            warm,
            change,
            bare: crate::bare::plan(name),
            build_args,
            platforms,
            context,
            runs_dir,
            logs,
        })
    }

    /// `kiln build` of the workload to `dest`, working in `dir`.
    fn kiln(&self, opts: &Opts, dir: &Path, dest: &str) -> Command {
        // KILN_BENCH_WRAP="strace -f -c -o FILE" (for instance) runs kiln
        // under a profiler; the wrapper's time is then part of the figures.
        let wrap: Vec<String> = std::env::var("KILN_BENCH_WRAP")
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let mut c = match wrap.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(&opts.kiln);
                c
            }
            None => Command::new(&opts.kiln),
        };
        c.arg("build")
            .arg("--context")
            .arg(&self.context)
            .arg("--dockerfile")
            .arg(self.context.join("Dockerfile"))
            .arg("--destination")
            .arg(dest)
            .arg("--build-arg")
            .arg(format!("BASE={}", self.base))
            .args(self.build_args.iter().flat_map(|a| ["--build-arg", a]))
            .args(["--insecure", "--insecure-pull", "--log-timestamp"])
            .arg("--kiln-dir")
            .arg(dir.join("kiln"))
            // An empty local base cache: a fresh runner has none.
            .arg("--cache-dir")
            .arg(dir.join("cache-dir"));
        // KILN_BENCH_KILN_ARGS: extra kiln flags, e.g. "--verbosity debug".
        if let Ok(extra) = std::env::var("KILN_BENCH_KILN_ARGS") {
            c.args(extra.split_whitespace());
        }
        c
    }

    /// One kiln build per platform, one after the other (each in its own
    /// working directory, as on a runner of its own), then `kiln index
    /// create` of their images under `dest`. The wall time is their sum;
    /// the parts are printed, for the time of runners working in parallel.
    fn split(&self, opts: &Opts, dir: &Path, dest: &str, log: &Path) -> Result<Sample> {
        let mut total: Option<Sample> = None;
        let mut parts = Vec::new();
        let mut images = Vec::new();
        for platform in &self.platforms {
            let suffix = platform.replace('/', "-");
            let image = format!("{dest}-{suffix}");
            let mut c = self.kiln(opts, &dir.join(&suffix), &image);
            c.arg("--custom-platform").arg(platform);
            let s = measure(&mut c, log)?;
            parts.push(format!("{platform} {:.2}s", s.wall));
            match &mut total {
                Some(t) => t.add(s),
                None => total = Some(s),
            }
            images.push(image);
        }
        let mut c = Command::new(&opts.kiln);
        c.args(["index", "create", "--insecure", "--insecure-pull"])
            .args(["--destination", dest])
            .args(&images);
        let s = measure(&mut c, log)?;
        parts.push(format!("index create {:.2}s", s.wall));
        eprintln!("      kiln-split parts: {}", parts.join(", "));
        let mut total = total.context("no platform")?;
        total.add(s);
        Ok(total)
    }

    fn cache_repo(&self, reg: &Registry, tool: Tool, run: usize) -> String {
        reg.image_ref(&cache_repo_path(&self.name, tool, run))
    }

    /// For warm workloads, before measured run `run`: one unmeasured cold
    /// build per tool into a registry cache of its own for that run, so
    /// that the measured run is the first warm rebuild after a cold build,
    /// as a CI user's first rebuild after a dependency change is.
    pub fn prime(&self, run: usize, opts: &Opts, reg: &Registry) -> Result<()> {
        if !self.warm {
            return Ok(());
        }
        eprintln!(
            "    run {}: a cold build into an empty cache per tool",
            run + 1
        );
        for tool in self.tools(opts) {
            self.build(tool, run, &format!("prime-{}", run + 1), opts, reg)?;
        }
        Ok(())
    }

    /// kiln and the peers that apply to this workload (the bare commands
    /// only where there is a plan for them).
    pub fn tools(&self, opts: &Opts) -> Vec<Tool> {
        if !self.platforms.is_empty() {
            // No peer here builds several platforms in one run (no buildx).
            return vec![Tool::Kiln, Tool::KilnSplit];
        }
        let mut v = vec![Tool::Kiln];
        v.extend(
            opts.peers
                .iter()
                .copied()
                .filter(|&t| t != Tool::Bare || self.bare.is_some()),
        );
        v
    }

    /// For warm workloads: the code-only change of run `i`.
    pub fn before_run(&self, i: usize) -> Result<()> {
        if let Some(f) = self.change {
            let p = self.context.join(f);
            let mut s = fs::read_to_string(&p)?;
            s.push_str(&format!("# change {}\n", i + 1));
            fs::write(&p, s)?;
        }
        Ok(())
    }

    /// One measured run of `tool` on a fresh working directory.
    pub fn run(&self, tool: Tool, i: usize, opts: &Opts, reg: &Registry) -> Result<Sample> {
        self.build(tool, i, &format!("{}", i + 1), opts, reg)
    }

    /// One build of `tool`, for measured run `run` (whose registry cache
    /// a warm workload uses), labelled `label` in logs and tags.
    fn build(
        &self,
        tool: Tool,
        run: usize,
        label: &str,
        opts: &Opts,
        reg: &Registry,
    ) -> Result<Sample> {
        let dir = self.runs_dir.join(format!("{}-{label}", tool.name()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let disk = if opts.fresh_fs {
            Some(FreshDisk::mount(&dir)?)
        } else {
            None
        };
        let log = self.logs.join(format!("{}-{label}.log", tool.name()));
        let _ = fs::remove_file(&log);
        let dest = reg.image_ref(&format!("bench/{}/{}:{label}", self.name, tool.name()));
        let dockerfile = self.context.join("Dockerfile");
        let result = match tool {
            Tool::Kiln => {
                let mut c = self.kiln(opts, &dir, &dest);
                if !self.platforms.is_empty() {
                    c.arg("--custom-platform").arg(self.platforms.join(","));
                }
                if self.warm {
                    c.args(["--cache=true", "--cache-copy-layers=true"])
                        .arg("--cache-repo")
                        .arg(self.cache_repo(reg, tool, run));
                }
                measure(&mut c, &log)
            }
            Tool::KilnSplit => self.split(opts, &dir, &dest, &log),
            Tool::Buildah => {
                let st = Storage::create(&dir, &opts.driver)?;
                let tag = format!("localhost/bench-{}:{label}", self.name);
                let mut c = st.buildah();
                c.args([
                    "build",
                    "--layers",
                    "--isolation",
                    "chroot",
                    "--tls-verify=false",
                ])
                .arg("-f")
                .arg(&dockerfile)
                .arg("-t")
                .arg(&tag)
                .arg("--build-arg")
                .arg(format!("BASE={}", self.base))
                .args(self.build_args.iter().flat_map(|a| ["--build-arg", a]));
                if self.warm {
                    let repo = self.cache_repo(reg, tool, run);
                    c.arg("--cache-from")
                        .arg(&repo)
                        .arg("--cache-to")
                        .arg(&repo);
                }
                c.arg(&self.context);
                let r = measure(&mut c, &log).and_then(|mut s| {
                    let mut p = st.buildah();
                    p.args(["push", "--tls-verify=false"])
                        .arg(&tag)
                        .arg(format!("docker://{dest}"));
                    s.add(measure(&mut p, &log)?);
                    Ok(s)
                });
                st.cleanup(&log);
                r
            }
            Tool::Buildkit => {
                let bk = opts
                    .buildkit
                    .as_ref()
                    .context("BuildKit was not found at start")?;
                let cache = self
                    .warm
                    .then(|| self.cache_repo(reg, tool, run) + ":cache");
                bk.build(&crate::buildkit::BuildSpec {
                    context: &self.context,
                    base: &self.base,
                    build_args: &self.build_args,
                    dest: &dest,
                    cache: cache.as_deref(),
                    dir: &dir,
                    registry: &reg.host(),
                    log: &log,
                })
            }
            Tool::Bare => {
                let plan = self.bare.context("no bare plan")?;
                crate::bare::run(&plan, &self.base, &self.context, &dir, &log)
            }
        };
        drop(disk);
        let _ = fs::remove_dir_all(&dir);
        result.with_context(|| format!("{} {} run {label}", self.name, tool.name()))
    }
}

/// The registry repository of `tool`'s cache for measured run `run` of
/// `workload`: a new one per run, so no run finds what an earlier one
/// stored.
fn cache_repo_path(workload: &str, tool: Tool, run: usize) -> String {
    format!("bench/{workload}/{}-cache-{}", tool.name(), run + 1)
}

/// `bench/work/wheelhouse`: wheels of fastapi, uvicorn and requests (and
/// their dependencies) for CPython 3.11 on x86_64 Linux, downloaded once.
pub fn wheelhouse(opts: &Opts) -> Result<PathBuf> {
    let dir = opts.work.join("wheelhouse");
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(dir);
    }
    eprintln!("==> downloading the wheelhouse into {}", dir.display());
    fs::create_dir_all(&dir)?;
    let log = opts.work.join("wheelhouse.log");
    let mut c = Command::new("python3");
    c.args(["-m", "pip", "download", "--dest"]).arg(&dir).args([
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux_2_17_x86_64",
        "fastapi",
        "uvicorn",
        "requests",
    ]);
    run_quiet(&mut c, &log).context("pip download (needs PyPI)")?;
    fs::write(&done, "")?;
    Ok(dir)
}

/// A private containers-storage root for one buildah run.
struct Storage {
    root: PathBuf,
    runroot: PathBuf,
    conf: PathBuf,
    tmp: PathBuf,
    driver: String,
}

impl Storage {
    fn create(dir: &Path, driver: &str) -> Result<Self> {
        let s = Self {
            root: dir.join("root"),
            runroot: dir.join("runroot"),
            conf: dir.join("storage.conf"),
            tmp: dir.join("tmp"),
            driver: driver.into(),
        };
        for d in [&s.root, &s.runroot, &s.tmp] {
            fs::create_dir_all(d)?;
        }
        let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("string to JSON");
        fs::write(
            &s.conf,
            format!(
                "[storage]\ndriver = \"{}\"\ngraphroot = {}\nrunroot = {}\n",
                s.driver,
                q(&s.root),
                q(&s.runroot)
            ),
        )?;
        Ok(s)
    }

    fn buildah(&self) -> Command {
        let mut c = Command::new("buildah");
        c.env("CONTAINERS_STORAGE_CONF", &self.conf)
            .env("TMPDIR", &self.tmp)
            .env("BUILDAH_ISOLATION", "chroot")
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--storage-driver")
            .arg(&self.driver);
        c
    }

    /// Removes containers, images and any mount left under the root.
    fn cleanup(&self, log: &Path) {
        let _ = run_quiet(self.buildah().args(["rm", "--all"]), log);
        let _ = run_quiet(self.buildah().args(["rmi", "--all", "--force"]), log);
        if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
            let mut mounts: Vec<&str> = mi
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| {
                    Path::new(m).starts_with(&self.root) || Path::new(m).starts_with(&self.runroot)
                })
                .collect();
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                if let Ok(c) = std::ffi::CString::new(m) {
                    // SAFETY: a valid C string; detaching a mount we created.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_and_tool_has_a_cache_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for run in 0..5 {
            for tool in [Tool::Kiln, Tool::Buildah] {
                let repo = cache_repo_path("python-warm", tool, run);
                assert!(repo.starts_with("bench/python-warm/"), "{repo}");
                assert!(seen.insert(repo.clone()), "{repo} is used twice");
            }
        }
    }

    #[test]
    fn every_run_changes_the_code_again() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("main.py"), "print('hi')\n").unwrap();
        let wl = Workload {
            name: "python-warm".into(),
            title: String::new(),
            target: 0.1,
            base: String::new(),
            warm: true,
            change: Some("main.py"),
            bare: None,
            build_args: Vec::new(),
            platforms: Vec::new(),
            context: dir.path().to_path_buf(),
            runs_dir: dir.path().join("runs"),
            logs: dir.path().join("logs"),
        };
        let mut versions = vec![fs::read_to_string(dir.path().join("main.py")).unwrap()];
        for run in 0..3 {
            wl.before_run(run).unwrap();
            let now = fs::read_to_string(dir.path().join("main.py")).unwrap();
            assert!(now.starts_with("print('hi')\n"), "{now}");
            assert!(
                !versions.contains(&now),
                "run {run} left the code as before"
            );
            versions.push(now);
        }
    }
}
