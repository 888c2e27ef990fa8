//! kiln-bench: kiln against `buildah build --layers` and BuildKit on the
//! same workloads, the same machine and the same registry, taking turns;
//! and against the workload's bare RUN commands, to show kiln's overhead.
//!
//! ```text
//! kiln-bench [--runs N] [--only NAME,NAME] [--peers buildah,buildkit,bare] [--driver overlay|vfs] [--kiln PATH] [--out FILE] [--no-fresh-fs]
//! ```
//!
//! It starts a CNCF registry on a free loopback port, pushes the bases
//! (busybox; busybox plus random-content layers for the scaling runs; the
//! Debian bookworm base with python3 for the Python workloads), and runs each
//! workload N times per tool on fresh working directories: a fresh
//! `--kiln-dir` for kiln, a fresh containers-storage root for buildah, each
//! on a new ext4 filesystem made for the run (`fresh_disk`). Every measured
//! warm rebuild is the first after a cold build: each tool first builds
//! the project, unmeasured, into an empty registry cache of that run's
//! own, then a fresh runner (empty local state) rebuilds after a
//! code-only change.
//!
//! Wall time covers what a CI job does: build and push to the registry
//! (`kiln build --destination`; `buildah build` then `buildah push`). Peak
//! RSS comes from polling `VmHWM` of the tool's own process and from
//! `wait4`'s `ru_maxrss` (the largest process of the tree, which includes
//! the RUN steps' processes such as pip).
//!
//! Results go to stdout and to `bench/RESULTS.md`; logs of every run to
//! `bench/work/logs/`. Generated inputs (wheelhouse, large bases) are cached
//! under `bench/work/`.

mod bare;
mod bases;
mod buildkit;
mod fresh_disk;
mod measure;
mod report;
mod workloads;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kiln_testkit::Registry;

use crate::report::Row;
use crate::workloads::{Tool, Workload};

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Measured runs per tool and workload.
    pub runs: usize,
    /// Workload names to run (all when empty).
    pub only: Vec<String>,
    /// buildah storage driver.
    pub driver: String,
    /// The kiln binary.
    pub kiln: PathBuf,
    /// Where the markdown report goes.
    pub out: PathBuf,
    /// What the kiln binary was built from (default: this tree's HEAD).
    pub kiln_label: Option<String>,
    /// The repository root.
    pub root: PathBuf,
    /// `bench/work`.
    pub work: PathBuf,
    /// Every run on a new ext4 filesystem (see `fresh_disk`).
    pub fresh_fs: bool,
    /// What kiln is measured against, in this order.
    pub peers: Vec<Tool>,
    /// The BuildKit found at start, when `buildkit` is a peer.
    pub buildkit: Option<buildkit::Buildkit>,
}

fn parse_args() -> Result<Opts> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .context("finding the repository root")?;
    let mut o = Opts {
        runs: 3,
        only: Vec::new(),
        driver: "overlay".into(),
        kiln: root.join("target/release/kiln"),
        out: root.join("bench/RESULTS.md"),
        kiln_label: None,
        work: root.join("bench/work"),
        fresh_fs: fresh_disk::FreshDisk::available(),
        peers: vec![Tool::Buildah, Tool::Buildkit, Tool::Bare],
        buildkit: None,
        root,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => o.runs = val()?.parse().context("--runs")?,
            "--only" => o.only = val()?.split(',').map(str::to_string).collect(),
            "--driver" => o.driver = val()?,
            "--kiln" => o.kiln = PathBuf::from(val()?),
            "--out" => o.out = PathBuf::from(val()?),
            "--kiln-label" => o.kiln_label = Some(val()?),
            "--no-fresh-fs" => o.fresh_fs = false,
            "--peers" => {
                o.peers = val()?
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        Tool::peer(p)
                            .with_context(|| format!("--peers: {p}? (buildah, buildkit, bare)"))
                    })
                    .collect::<Result<_>>()?
            }
            "-h" | "--help" => {
                println!(
                    "kiln-bench [--runs N] [--only NAME,..] [--peers buildah,buildkit,bare] [--driver overlay|vfs] [--kiln PATH] [--kiln-label TEXT] [--out FILE] [--no-fresh-fs]\n\
                     workloads: {}",
                    workloads::NAMES.join(", ")
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if o.runs == 0 {
        bail!("--runs must be at least 1");
    }
    for n in &o.only {
        if !workloads::NAMES.contains(&n.as_str()) {
            bail!(
                "unknown workload {n}; known: {}",
                workloads::NAMES.join(", ")
            );
        }
    }
    if o.peers.contains(&Tool::Buildkit) {
        o.buildkit = Some(buildkit::Buildkit::detect()?);
    }
    if !o.kiln.exists() {
        bail!(
            "{} not found: cargo build --release -p kiln",
            o.kiln.display()
        );
    }
    Ok(o)
}

fn main() -> Result<()> {
    let opts = parse_args()?;
    fs::create_dir_all(&opts.work)?;
    let started = Instant::now();
    let load_start = report::loadavg();
    eprintln!("==> load average at start: {load_start}");

    let reg = Registry::plain().context("starting the registry")?;
    eprintln!("==> registry on {}", reg.host());
    let mut bases = bases::Bases::new(&opts, &reg);

    let selected: Vec<&str> = workloads::NAMES
        .iter()
        .copied()
        .filter(|n| {
            if opts.only.is_empty() {
                !workloads::OPT_IN.contains(n)
            } else {
                opts.only.iter().any(|o| o == n)
            }
        })
        .collect();

    let mut rows: Vec<Row> = Vec::new();
    for name in selected {
        let wl = match Workload::prepare(name, &opts, &mut bases) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("==> {name}: skipped: {e:#}");
                rows.push(Row::skipped(name, &format!("{e:#}")));
                continue;
            }
        };
        eprintln!("==> {name}: {}", wl.title);
        let load = report::loadavg();
        let mut samples = report::Samples::default();
        for i in 0..opts.runs {
            wl.prime(i, &opts, &reg)?;
            wl.before_run(i)?;
            // Each run starts with the next tool in turn.
            let mut order = wl.tools(&opts);
            let n = order.len();
            order.rotate_left(i % n);
            for tool in order {
                let s = wl.run(tool, i, &opts, &reg)?;
                eprintln!(
                    "    run {} {:7} {:8.2}s  self RSS {:6.1} MB  tree RSS {:6.1} MB",
                    i + 1,
                    tool.name(),
                    s.wall,
                    s.rss_self_mb(),
                    s.rss_tree_mb()
                );
                samples.push(tool, s);
            }
        }
        rows.push(Row::new(&wl, samples, load));
        // Write as we go, so a long run leaves partial results behind.
        report::write(&opts, &rows, &load_start, started.elapsed())?;
    }
    let table = report::write(&opts, &rows, &load_start, started.elapsed())?;
    println!("{table}");
    eprintln!("==> written to {}", opts.out.display());
    Ok(())
}
