//! The caller's side: start the helper, stream the step's output, collect
//! its report, and find what changed.

use crate::changes::{self, Changes};
use crate::emulate::Emulated;
use crate::error::{Result, SandboxError};
use crate::prepare::{Kind, Made};
use crate::snapshot::Snapshot;
use crate::spec::{IdMap, Isolation, MountSpec, Report, RootSpec, RunSpec};
use crate::HELPER_ARG;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Helpers running right now (their pids), so that an interrupted process
/// can end every step it started before it exits.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends every step this process is running: each helper gets SIGTERM, kills
/// its step's whole process tree (the pid namespace, or the session and
/// every orphan) and exits, which drops its mounts. Waits up to `limit` for
/// them to be reaped, then SIGKILLs what is left. Call it on SIGINT/SIGTERM
/// before removing the build's files.
pub fn terminate_running(limit: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let signal_all = |sig: Signal| {
        for pid in running().iter() {
            let _ = kill(Pid::from_raw(*pid as i32), sig);
        }
    };
    signal_all(Signal::SIGTERM);
    let deadline = Instant::now() + limit;
    while !running().is_empty() {
        if Instant::now() >= deadline {
            signal_all(Signal::SIGKILL);
            break;
        }
        // The threads that started the helpers reap them and unregister.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How the step's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal, when it was killed.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The code as a shell shows it: the exit code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        self.code.or(self.signal.map(|s| 128 + s)).unwrap_or(-1)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            _ => write!(f, "unknown status"),
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// How the command ended.
    pub status: ExitStatus,
    /// What it changed in the root.
    pub changes: Changes,
}

/// Runs `spec` through a helper re-executed from `/proc/self/exe`; each
/// line the command prints (stdout and stderr, merged) goes to `output` as
/// it comes. The program's `main` must dispatch [`crate::HELPER_ARG`] to
/// [`crate::helper_main`].
///
/// # Errors
/// When the sandbox cannot be set up ([`SandboxError::is_denied`] says
/// whether chroot isolation may work instead); a command that fails is an
/// [`Outcome`] with a non-zero status.
pub fn run(spec: &RunSpec, output: impl FnMut(&str)) -> Result<Outcome> {
    run_with_helper(Path::new("/proc/self/exe"), spec, output)
}

/// [`run`] with an explicit helper executable.
///
/// # Errors
/// As [`run`].
pub fn run_with_helper(exe: &Path, spec: &RunSpec, output: impl FnMut(&str)) -> Result<Outcome> {
    if spec.argv.is_empty() {
        return Err(SandboxError::Spec("empty command".into()));
    }
    match (&spec.isolation, &spec.root) {
        (Isolation::Namespace, RootSpec::Overlay { upper, .. }) => {
            let (status, reports) = spawn(exe, spec, output)?;
            let mut created = BTreeSet::new();
            let mut touched = BTreeMap::new();
            let mut ids = IdMap::default();
            for r in reports {
                match r {
                    Report::Mapped(map) => ids = map,
                    Report::Created(p) => {
                        created.insert(PathBuf::from(p));
                    }
                    Report::Touched(p, s, n) => {
                        touched.insert(PathBuf::from(p), (s, n));
                    }
                    _ => {}
                }
            }
            let exclude = changes::made_by_sandbox(upper, &created, &touched);
            Ok(Outcome {
                status,
                changes: Changes::Upper {
                    upper: upper.clone(),
                    exclude,
                    ids,
                },
            })
        }
        (Isolation::Chroot, RootSpec::Dir(root)) => {
            let prepared = ChrootPrep::new(root, spec)?;
            let before = Snapshot::take(root, &prepared.exclude);
            let ran = before.and_then(|before| {
                let (status, _) = spawn(exe, spec, output)?;
                let after = Snapshot::take(root, &prepared.exclude)?;
                Ok((status, before.diff(&after)))
            });
            prepared.restore()?;
            let (status, changes) = ran?;
            Ok(Outcome {
                status,
                changes: Changes::Listed {
                    root: root.clone(),
                    changes,
                },
            })
        }
        _ => Err(SandboxError::Spec(
            "namespace isolation takes an overlay root, chroot a directory".into(),
        )),
    }
}

/// Starts the helper, feeds it the spec, streams the output.
fn spawn(
    exe: &Path,
    spec: &RunSpec,
    output: impl FnMut(&str),
) -> Result<(ExitStatus, Vec<Report>)> {
    let err = |source| SandboxError::Helper {
        exe: exe.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec(spec).map_err(|e| SandboxError::Spec(e.to_string()))?;
    let child = Command::new(exe)
        .arg(HELPER_ARG)
        // So the helper can tell it was orphaned before it could watch.
        .arg(std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .spawn()
        .map_err(err)?;
    running().push(child.id());
    let pid = child.id();
    let result = talk(child, &json, output, err);
    running().retain(|p| *p != pid);
    result
}

/// Feeds the helper its spec, streams its output, and reads its reports.
fn talk(
    mut child: std::process::Child,
    json: &[u8],
    mut output: impl FnMut(&str),
    err: impl Fn(std::io::Error) -> SandboxError,
) -> Result<(ExitStatus, Vec<Report>)> {
    let mut stdin = child.stdin.take().expect("piped");
    if let Err(e) = stdin.write_all(json) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err(e));
    }
    drop(stdin);
    let mut status_pipe = child.stdout.take().expect("piped");
    let reports = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = status_pipe.read_to_string(&mut text);
        text
    });
    let mut lines = BufReader::new(child.stderr.take().expect("piped"));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                output(line.trim_end_matches(['\n', '\r']));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(e));
            }
        }
    }
    let helper = child.wait().map_err(err)?;
    let text = reports.join().unwrap_or_default();
    let reports: Vec<Report> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut status = None;
    for r in &reports {
        match r {
            Report::Terminated => return Err(SandboxError::Interrupted),
            Report::SetupFailed { message, denied } => {
                return Err(SandboxError::Setup {
                    message: message.clone(),
                    denied: *denied,
                })
            }
            Report::Exited(code) => {
                status = Some(ExitStatus {
                    code: Some(*code),
                    signal: None,
                })
            }
            Report::Signaled(sig) => {
                status = Some(ExitStatus {
                    code: None,
                    signal: Some(*sig),
                })
            }
            _ => {}
        }
    }
    let status = status.ok_or_else(|| SandboxError::NoReport(helper.to_string()))?;
    Ok((status, reports))
}

/// Chroot isolation's stand-ins for mounts: the bound files written into
/// the root (originals kept aside and put back afterwards), mounts emulated
/// by copies ([`crate::emulate`]), missing device nodes made, all left out
/// of the snapshot.
struct ChrootPrep {
    root: PathBuf,
    exclude: BTreeSet<PathBuf>,
    /// Files that existed, with their original contents.
    saved: Vec<(PathBuf, Vec<u8>)>,
    /// Paths made, in the order made.
    made: Vec<PathBuf>,
    /// Mounts emulated by copies, in the order made.
    mounts: Vec<Emulated>,
}

/// Device nodes made in a chroot's `/dev` when missing: (name, major, minor).
const CHROOT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

impl ChrootPrep {
    fn new(root: &Path, spec: &RunSpec) -> Result<ChrootPrep> {
        let mut prep = ChrootPrep {
            root: root.to_path_buf(),
            exclude: BTreeSet::new(),
            saved: Vec::new(),
            made: Vec::new(),
            mounts: Vec::new(),
        };
        let files: Vec<(PathBuf, String)> = spec
            .files
            .iter()
            .map(|f| (f.source.clone(), f.target.clone()))
            .collect();
        for (source, target) in files {
            if let Err(e) = prep.place_file(&source, &target) {
                let _ = prep.restore_ref();
                return Err(e);
            }
        }
        for m in &spec.mounts {
            let emulated = match m {
                // A FIFO (or device) is bound as the node it is, through
                // the tree copy: reading it would wait for a writer.
                MountSpec::Bind { source, target, .. } if source.is_file() => {
                    prep.place_file(source, target)
                }
                MountSpec::Bind {
                    source,
                    target,
                    read_only,
                } => Emulated::new(root, Some(source), target, !read_only).map(|e| prep.push(e)),
                MountSpec::Overlay { lower, target, .. } => {
                    Emulated::new(root, Some(lower), target, false).map(|e| prep.push(e))
                }
                MountSpec::Tmpfs { target, .. } => {
                    Emulated::new(root, None, target, false).map(|e| prep.push(e))
                }
            };
            if let Err(e) = emulated {
                let _ = prep.restore_ref();
                return Err(e);
            }
        }
        prep.make_devices();
        Ok(prep)
    }

    fn push(&mut self, emulated: Emulated) {
        self.exclude.insert(emulated.rel.clone());
        self.mounts.push(emulated);
    }

    fn place_file(&mut self, source: &Path, target: &str) -> Result<()> {
        let content = std::fs::read(source).map_err(SandboxError::io("reading", source))?;
        let mut made = Made::default();
        let host = crate::resolve::in_root(&self.root, target)?;
        // The image's own file at the target may be anything: only a
        // regular file is read and written back (a FIFO would wait
        // forever); anything else is moved aside for the step and back
        // after it, as a mount would cover it.
        if std::fs::symlink_metadata(&host).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let emulated = Emulated::new(&self.root, Some(source), target, false)?;
            self.push(emulated);
            return Ok(());
        }
        if let Ok(old) = std::fs::read(&host) {
            self.saved.push((host.clone(), old));
        } else {
            made.ensure(&self.root, target, Kind::File)
                .map_err(SandboxError::io("creating", &host))?;
            for r in made.reports {
                if let Report::Created(p) = r {
                    self.made.push(self.root.join(p));
                }
            }
        }
        std::fs::write(&host, content).map_err(SandboxError::io("writing", &host))?;
        self.exclude
            .insert(host.strip_prefix(&self.root).unwrap_or(&host).to_path_buf());
        Ok(())
    }

    fn make_devices(&mut self) {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let dev = self.root.join("dev");
        if !dev.is_dir() {
            return;
        }
        for (name, major, minor) in CHROOT_DEVICES {
            let node = dev.join(name);
            if node.symlink_metadata().is_ok() {
                continue;
            }
            // Without CAP_MKNOD the step simply has no such device.
            if mknod(
                &node,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(u64::from(*major), u64::from(*minor)),
            )
            .is_ok()
            {
                self.exclude.insert(PathBuf::from("dev").join(name));
                self.made.push(node);
            }
        }
    }

    fn restore(self) -> Result<()> {
        self.restore_ref()
    }

    fn restore_ref(&self) -> Result<()> {
        // Mounts first, innermost (last made) first; every one is undone
        // even when another fails.
        let mut undone = Ok(());
        for m in self.mounts.iter().rev() {
            undone = undone.and(m.undo());
        }
        undone?;
        for (path, content) in &self.saved {
            std::fs::write(path, content).map_err(SandboxError::io("restoring", path))?;
        }
        for path in self.made.iter().rev() {
            let gone = if path.is_dir() {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
            gone.map_err(SandboxError::io("removing", path))?;
        }
        Ok(())
    }
}
