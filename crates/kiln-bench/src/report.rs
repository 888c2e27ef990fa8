//! Medians, the markdown table, and bench/RESULTS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::measure::Sample;
use crate::workloads::{Tool, Workload};
use crate::Opts;

/// The samples of one workload, per tool.
#[derive(Debug, Default)]
pub struct Samples(BTreeMap<Tool, Vec<Sample>>);

impl Samples {
    /// Records a run.
    pub fn push(&mut self, tool: Tool, s: Sample) {
        self.0.entry(tool).or_default().push(s);
    }

    fn of(&self, tool: Tool) -> &[Sample] {
        self.0.get(&tool).map(Vec::as_slice).unwrap_or_default()
    }
}

/// Target for kiln/BuildKit on cold workloads.
const BUILDKIT_TARGET: f64 = 0.7;

/// Target for kiln's time over the bare commands', minus one.
const OVERHEAD_TARGET: f64 = 0.10;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One table row.
#[derive(Debug)]
pub struct Row {
    name: String,
    title: String,
    target: f64,
    warm: bool,
    /// Several platforms: measured against kiln's own split builds, in a
    /// table of its own.
    several_platforms: bool,
    samples: Samples,
    load: String,
    skipped: Option<String>,
}

impl Row {
    /// A measured workload.
    pub fn new(wl: &Workload, samples: Samples, load: String) -> Self {
        Self {
            name: wl.name.clone(),
            title: wl.title.clone(),
            target: wl.target,
            warm: wl.warm,
            several_platforms: !wl.platforms.is_empty(),
            samples,
            load,
            skipped: None,
        }
    }

    /// A workload that could not run.
    pub fn skipped(name: &str, why: &str) -> Self {
        Self {
            name: name.into(),
            title: String::new(),
            target: f64::NAN,
            warm: false,
            several_platforms: false,
            samples: Samples::default(),
            load: String::new(),
            skipped: Some(why.into()),
        }
    }

    fn walls(&self, tool: Tool) -> Vec<f64> {
        self.samples.of(tool).iter().map(|s| s.wall).collect()
    }

    fn med(&self, tool: Tool) -> f64 {
        median(&self.walls(tool))
    }

    fn max_rss(&self, tool: Tool, own: bool) -> f64 {
        self.samples
            .of(tool)
            .iter()
            .map(|s| {
                if own {
                    s.rss_self_mb()
                } else {
                    s.rss_tree_mb()
                }
            })
            .fold(0.0, f64::max)
    }
}

/// `/proc/loadavg`'s three averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cmd_out(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "**no**"
    }
}

/// Whether `ratio` meets `target` as printed, to two decimals (4.20 / 6.00
/// is 0.7000000000000001 in floating point, printed 0.70).
fn within(ratio: f64, target: f64) -> bool {
    (ratio * 100.0).round() <= (target * 100.0).round()
}

/// "—" for a figure that was not measured.
fn fig(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.digits$}")
    }
}

/// The main table: a column of times per tool that ran, kiln's ratio to
/// each peer with its target, and kiln's overhead over the bare commands.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    t.push_str(
        "| workload | kiln (s) | buildah (s) | kiln/buildah (target) | buildkit (s) | kiln/buildkit (target) | bare RUN commands (s) | kiln overhead over them (target) | kiln peak RSS (MB) | largest process incl. RUN steps (MB) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    // "0.47 (<= 0.50 yes)", or the bare ratio where there is no target.
    let judged = |ratio: f64, target: Option<f64>| match (ratio.is_nan(), target) {
        (true, _) => "—".to_string(),
        (false, Some(tg)) => format!("{ratio:.2} (<= {tg:.2} {})", mark(within(ratio, tg))),
        (false, None) => format!("{ratio:.2}"),
    };
    for r in rows.iter().filter(|r| !r.several_platforms) {
        if let Some(why) = &r.skipped {
            let _ = writeln!(
                t,
                "| {} | skipped: {why} | — | — | — | — | — | — | — | — |",
                r.name
            );
            continue;
        }
        let k = r.med(Tool::Kiln);
        let (b, bk, bare) = (
            r.med(Tool::Buildah),
            r.med(Tool::Buildkit),
            r.med(Tool::Bare),
        );
        let overhead = k / bare - 1.0;
        let _ = writeln!(
            t,
            "| {} | {k:.2} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
            r.name,
            fig(b, 2),
            judged(k / b, Some(r.target)),
            fig(bk, 2),
            judged(k / bk, (!r.warm).then_some(BUILDKIT_TARGET)),
            fig(bare, 2),
            if overhead.is_nan() {
                "—".to_string()
            } else {
                format!(
                    "{:+.0}% (<= {:.0}% {})",
                    overhead * 100.0,
                    OVERHEAD_TARGET * 100.0,
                    mark(within(overhead, OVERHEAD_TARGET))
                )
            },
            r.max_rss(Tool::Kiln, true),
            r.max_rss(Tool::Kiln, false)
        );
    }
    let multi: Vec<&Row> = rows.iter().filter(|r| r.several_platforms).collect();
    if !multi.is_empty() {
        t.push_str(
            "\nSeveral platforms (no buildx here: kiln's one build of every platform against one kiln build per platform, one after the other, plus `kiln index create`):\n\n\
             | workload | kiln, one build (s) | kiln per platform + index create (s) | ratio | kiln peak RSS (MB) |\n\
             | --- | ---: | ---: | ---: | ---: |\n",
        );
        for r in multi {
            let (k, split) = (r.med(Tool::Kiln), r.med(Tool::KilnSplit));
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {:.0} |",
                r.name,
                fig(k, 2),
                fig(split, 2),
                fig(k / split, 2),
                r.max_rss(Tool::Kiln, true)
            );
        }
    }
    let find = |n: &str| rows.iter().find(|r| r.name == n && r.skipped.is_none());
    for (small, big, what) in [
        ("warm-200mb", "warm-1gb", "1 GiB base / 200 MiB base"),
        (
            "big-warm",
            "big-warm-2x",
            "big image twice the size / big image",
        ),
    ] {
        let (Some(a), Some(b)) = (find(small), find(big)) else {
            continue;
        };
        let k = b.med(Tool::Kiln) / a.med(Tool::Kiln);
        let bb = b.med(Tool::Buildah) / a.med(Tool::Buildah);
        let bk = b.med(Tool::Buildkit) / a.med(Tool::Buildkit);
        let _ = writeln!(
            t,
            "\nScaling, warm rebuild {what}: kiln {k:.2} (target <= 1.20: {}), buildah {}, buildkit {}.",
            mark(k <= 1.2),
            fig(bb, 2),
            fig(bk, 2)
        );
    }
    let rss_all = rows
        .iter()
        .filter(|r| r.skipped.is_none())
        .map(|r| r.max_rss(Tool::Kiln, true))
        .fold(0.0, f64::max);
    let _ = writeln!(
        t,
        "kiln peak RSS over every run: {rss_all:.0} MB (target <= 200 MB: {}).",
        mark(rss_all <= 200.0)
    );
    t
}

/// Writes bench/RESULTS.md and returns the table.
pub fn write(opts: &Opts, rows: &[Row], load_start: &str, took: Duration) -> Result<String> {
    let table = table(rows);
    let mut md = String::new();
    md.push_str("# Benchmark results\n\n");
    md.push_str(
        "Written by `bench/run` (`cargo run --release -p kiln-bench`); see bench/README.md for what\n\
         each workload measures and how the runs are made. Times are medians of wall time for build\n\
         and push to a local registry; ratio below 1 means kiln is faster. Every warm run is the\n\
         first warm rebuild after a cold build into an empty registry cache.\n\n",
    );
    let _ = writeln!(
        md,
        "- date: {}\n- machine: {} cores ({}), {} RAM\n- load average (1, 5, 15 min): {load_start} at start, {} at the end\n- kiln: {} (release build, {})\n- buildah: {}, `--layers --isolation chroot`, storage driver `{}`\n- buildkit: {}\n- bare: each workload's RUN commands in a plain chroot of the unpacked base (unshare, /proc and /dev mounted), no builder; only the commands are timed\n- peers: {}\n- runs per tool and workload: {} (taking turns at going first)\n- working directory of every run: {}\n- total time: {:.0} s\n",
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model(),
        cmd_out("sh", &["-c", "free -h | awk '/Mem:/ {print $2}'"]),
        loadavg(),
        opts.kiln_label.clone().unwrap_or_else(|| format!(
            "commit {}",
            cmd_out("git", &["-C", &opts.root.to_string_lossy(), "rev-parse", "--short", "HEAD"])
        )),
        opts.kiln.display(),
        cmd_out("buildah", &["--version"]),
        opts.driver,
        opts.buildkit
            .as_ref()
            .map(|b| b.describe())
            .unwrap_or_else(|| "not measured".into()),
        opts.peers.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        opts.runs,
        if opts.fresh_fs {
            "a new ext4 filesystem (sparse image, loop mount), made before the run and discarded after"
        } else {
            "a fresh directory on the shared disk (--no-fresh-fs)"
        },
        took.as_secs_f64()
    );
    md.push_str(&table);
    md.push_str("\n## Every run (seconds)\n\n| workload | load at start | kiln | buildah | buildkit | bare | kiln per platform + index create |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for r in rows.iter().filter(|r| r.skipped.is_none()) {
        let f = |tool: Tool| {
            let v = r.walls(tool);
            if v.is_empty() {
                return "—".to_string();
            }
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.load,
            f(Tool::Kiln),
            f(Tool::Buildah),
            f(Tool::Buildkit),
            f(Tool::Bare),
            f(Tool::KilnSplit)
        );
    }
    md.push_str("\n## Workloads\n\n");
    for r in rows.iter().filter(|r| r.skipped.is_none()) {
        let _ = writeln!(md, "- **{}**: {}.", r.name, r.title);
    }
    fs::write(&opts.out, md)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wall: f64) -> Sample {
        Sample {
            wall,
            rss_self_kb: 40 << 10,
            rss_tree_kb: 80 << 10,
        }
    }

    #[test]
    fn a_row_has_a_ratio_per_peer_and_the_overhead_over_the_bare_commands() {
        let mut samples = Samples::default();
        for (tool, walls) in [
            (Tool::Kiln, [4.0, 4.4, 4.2]),
            (Tool::Buildkit, [6.0, 7.0, 5.0]),
            (Tool::Bare, [3.5, 4.0, 3.0]),
        ] {
            for w in walls {
                samples.push(tool, sample(w));
            }
        }
        let row = Row {
            name: "python-cold".into(),
            title: String::new(),
            target: 0.5,
            warm: false,
            several_platforms: false,
            samples,
            load: String::new(),
            skipped: None,
        };
        let t = table(&[row]);
        let line = t.lines().find(|l| l.starts_with("| python-cold")).unwrap();
        // kiln 4.20, no buildah, buildkit 6.00 (0.70), bare 3.50 (+20%).
        assert_eq!(
            line,
            "| python-cold | 4.20 | — | — | 6.00 | 0.70 (<= 0.70 yes) | 3.50 | +20% (<= 10% **no**) | 40 | 80 |"
        );
    }

    #[test]
    fn a_several_platform_row_compares_one_build_with_the_split_builds() {
        let mut samples = Samples::default();
        for (tool, walls) in [(Tool::Kiln, [30.0, 32.0]), (Tool::KilnSplit, [40.0, 40.0])] {
            for w in walls {
                samples.push(tool, sample(w));
            }
        }
        let row = Row {
            name: "multi-stage-2p".into(),
            title: String::new(),
            target: 1.0,
            warm: false,
            several_platforms: true,
            samples,
            load: String::new(),
            skipped: None,
        };
        let t = table(&[row]);
        let rows: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("| multi-stage-2p"))
            .collect();
        // Only in the table of its own, not among the peers' rows.
        assert_eq!(
            rows,
            ["| multi-stage-2p | 31.00 | 40.00 | 0.78 | 40 |"],
            "{t}"
        );
    }
}
