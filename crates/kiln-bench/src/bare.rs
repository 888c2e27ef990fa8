//! The "bare" row: a workload's RUN commands with no builder at all, each in
//! a plain chroot of the unpacked base, so the report can say what kiln adds
//! on top of the commands themselves.
//!
//! The plan of each workload is written out here by hand (the commands are
//! the Dockerfile's, checked by a test): only the RUN commands are timed;
//! unpacking the base and the files COPY would bring in are set up before
//! each timed phase. RUNs of independent stages run at the same time, as
//! kiln runs them. Each command gets its own mount namespace with `/proc`
//! and `/dev` mounted in the chroot, which vanish with it, and the image's
//! `PATH`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use kiln_testkit::{BUSYBOX_PATH_ENV, DEBIAN_PATH_ENV};

use crate::measure::{measure, run_quiet, Sample};

/// Where a copied path comes from.
#[derive(Debug, Clone, Copy)]
pub enum Src {
    /// A path in the build context.
    Context(&'static str),
    /// A path in another stage's root.
    Stage(&'static str, &'static str),
}

/// One step of a plan.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Commands run at the same time, each `(stage, command)`; timed.
    Run(&'static [(&'static str, &'static str)]),
    /// A copy into a stage's root; not timed (a directory's contents when
    /// the source ends in `/`).
    Copy {
        /// From.
        src: Src,
        /// Into this stage.
        stage: &'static str,
        /// Destination path in the stage.
        dst: &'static str,
    },
}

/// The commands of a workload, run bare.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Every stage, each an unpacked copy of the base.
    pub stages: &'static [&'static str],
    /// `PATH` inside the chroot (the base image's).
    pub path_env: &'static str,
    /// In order.
    pub ops: &'static [Op],
}

const GEN_A: &str = "mkdir -p /out/a && cd /out/a \\\n && for i in $(seq 1 3000); do echo \"record a $i\" > r$i.txt; done \\\n && dd if=/dev/urandom of=/out/a/blob bs=1M count=48 2>/dev/null \\\n && sha256sum /out/a/blob > /out/a/blob.sha256";
const GEN_B: &str = "mkdir -p /out/b && cd /out/b \\\n && for i in $(seq 1 3000); do echo \"record b $i\" > r$i.txt; done \\\n && dd if=/dev/urandom of=/out/b/blob bs=1M count=48 2>/dev/null \\\n && sha256sum /out/b/blob > /out/b/blob.sha256";
const CHECKSUMS: &str = "cat /srv/a/blob.sha256 /srv/b/blob.sha256 > /srv/app/checksums";
const VENV: &str = "python3 -m venv /opt/venv";
const PIP: &str = "/opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels -r /tmp/requirements.txt";

/// The plan of workload `name`, if it has one.
pub fn plan(name: &str) -> Option<Plan> {
    match name {
        "multi-stage" => Some(Plan {
            stages: &["gen-a", "gen-b", "final"],
            path_env: BUSYBOX_PATH_ENV,
            ops: &[
                Op::Run(&[("gen-a", GEN_A), ("gen-b", GEN_B)]),
                Op::Copy {
                    src: Src::Stage("gen-a", "/out/a/"),
                    stage: "final",
                    dst: "/srv/a/",
                },
                Op::Copy {
                    src: Src::Stage("gen-b", "/out/b/"),
                    stage: "final",
                    dst: "/srv/b/",
                },
                Op::Copy {
                    src: Src::Context("app/"),
                    stage: "final",
                    dst: "/srv/app/",
                },
                Op::Run(&[("final", CHECKSUMS)]),
            ],
        }),
        "python-cold" => Some(Plan {
            stages: &["main"],
            path_env: DEBIAN_PATH_ENV,
            ops: &[
                Op::Run(&[("main", VENV)]),
                Op::Copy {
                    src: Src::Context("requirements.txt"),
                    stage: "main",
                    dst: "/tmp/requirements.txt",
                },
                Op::Copy {
                    src: Src::Context("wheels/"),
                    stage: "main",
                    dst: "/tmp/wheels/",
                },
                Op::Run(&[("main", PIP)]),
            ],
        }),
        _ => None,
    }
}

fn in_root(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Runs `plan` in `dir` (empty, on the run's filesystem): unpacks `base`
/// from the registry once per stage, then the ops; the sample's wall time
/// is the sum of the timed phases.
pub fn run(plan: &Plan, base: &str, context: &Path, dir: &Path, log: &Path) -> Result<Sample> {
    let layout = dir.join("layout");
    run_quiet(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{base}"))
            .arg(format!("oci:{}:base", layout.display())),
        log,
    )
    .with_context(|| format!("skopeo copy of {base} (needs skopeo)"))?;
    let root = |stage: &str| dir.join("stages").join(stage);
    for stage in plan.stages {
        fs::create_dir_all(dir.join("stages"))?;
        run_quiet(
            Command::new("umoci")
                .args(["raw", "unpack", "--image"])
                .arg(format!("{}:base", layout.display()))
                .arg(root(stage)),
            log,
        )
        .context("umoci raw unpack of the base (needs umoci)")?;
        for d in ["proc", "dev"] {
            fs::create_dir_all(root(stage).join(d))?;
        }
    }
    let mut total = Sample::default();
    for op in plan.ops {
        match op {
            Op::Copy { src, stage, dst } => {
                let (from, contents) = match src {
                    Src::Context(p) => (context.join(p), p.ends_with('/')),
                    Src::Stage(s, p) => (in_root(&root(s), p), p.ends_with('/')),
                };
                let to = in_root(&root(stage), dst);
                let mut c = Command::new("cp");
                c.arg("-a");
                if contents {
                    fs::create_dir_all(&to)?;
                    c.arg(from.join(".")).arg(&to);
                } else {
                    c.arg(&from).arg(&to);
                }
                run_quiet(&mut c, log).with_context(|| format!("copying {}", from.display()))?;
            }
            Op::Run(cmds) => {
                // One host shell starts every command of the phase and
                // waits for all of them; the phase fails if any does.
                let mut script = String::from("set -e\n");
                for (i, (stage, _)) in cmds.iter().enumerate() {
                    script.push_str(&format!(
                        "unshare --mount --propagation private -- sh -ec 'mount -t proc proc \"$1/proc\"; mount --rbind /dev \"$1/dev\"; exec env -i \"$2\" HOME=/root /usr/sbin/chroot \"$1\" /bin/sh -c \"$3\"' sh '{}' '{}' \"$CMD{i}\" & p{i}=$!\n",
                        root(stage).display(),
                        plan.path_env
                    ));
                }
                for i in 0..cmds.len() {
                    script.push_str(&format!("wait $p{i}\n"));
                }
                let mut c = Command::new("sh");
                c.arg("-c").arg(&script);
                for (i, (_, cmd)) in cmds.iter().enumerate() {
                    c.env(format!("CMD{i}"), cmd);
                }
                total.add(measure(&mut c, log).context("a bare RUN command")?);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RUN commands of a Dockerfile, continuation lines kept as written.
    fn runs(dockerfile: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur: Option<String> = None;
        for line in dockerfile.lines() {
            if let Some(c) = cur.as_mut() {
                c.push('\n');
                c.push_str(line);
            } else if let Some(r) = line.strip_prefix("RUN ") {
                cur = Some(r.to_string());
            }
            if cur.as_ref().is_some_and(|c| !c.ends_with('\\')) {
                out.extend(cur.take());
            }
        }
        out
    }

    #[test]
    fn the_bare_commands_are_the_dockerfiles() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/workloads");
        for (name, dir) in [
            ("multi-stage", "multi-stage"),
            ("python-cold", "python-service"),
        ] {
            let df = fs::read_to_string(root.join(dir).join("Dockerfile")).unwrap();
            let want = runs(&df);
            let got: Vec<String> = plan(name)
                .unwrap()
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Run(c) => Some(c.iter().map(|(_, c)| c.to_string())),
                    Op::Copy { .. } => None,
                })
                .flatten()
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
