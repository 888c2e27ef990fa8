//! Interrupting `kiln build`: SIGTERM or SIGINT while a RUN step is running.
//! The process must exit 143 / 130, leave no process of the step behind,
//! nothing mounted, no private working directory, and the next build in
//! the same `--kiln-dir` must work.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use kiln_testkit::{BaseImage, Fault, FaultProxy, Registry};

/// Longest wait for any one event (the step starting, kiln exiting).
const LIMIT: Duration = Duration::from_secs(180);

fn registry() -> Registry {
    let reg = Registry::plain().unwrap();
    BaseImage::busybox()
        .unwrap()
        .push_to(&reg, "busybox:latest")
        .unwrap();
    reg
}

/// Starts `kiln build` of `dockerfile` in the background; every line it
/// prints (stdout and stderr) arrives on the receiver, then `None` when both
/// streams end.
fn start(
    reg: &Registry,
    ctx: &Path,
    kiln_dir: &Path,
    isolation: &str,
) -> (Child, Receiver<String>) {
    start_with(&reg.host(), ctx, kiln_dir, isolation)
}

/// [`start`] against the registry (or proxy) at `host`.
fn start_with(
    host: &str,
    ctx: &Path,
    kiln_dir: &Path,
    isolation: &str,
) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--context"])
        .arg(ctx)
        .args(["--destination", &format!("{host}/interrupted:1")])
        .args(["--insecure", "--insecure-pull", "--isolation", isolation])
        .arg("--kiln-dir")
        .arg(kiln_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let streams: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for stream in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    (child, rx)
}

/// Waits (bounded) for a line containing `marker`; returns everything read.
fn wait_for_line(rx: &Receiver<String>, marker: &str) -> String {
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(marker) {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {marker:?} ({e}); output so far:\n{seen}"),
        }
    }
}

/// Every remaining line, until both streams end (bounded).
fn drain(rx: &Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
            Err(e) => panic!("output still open after {LIMIT:?} ({e}): {lines:?}"),
        }
    }
}

/// Waits (bounded) for the child to exit.
fn wait_exit(mut child: Child) -> ExitStatus {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("kiln did not exit within {LIMIT:?} of the signal");
        }
    }
}

/// Pids of live processes whose command line holds `needle` as an argument.
fn processes_with_arg(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_string)
        .collect()
}

fn build_dirs(kiln_dir: &Path) -> Vec<String> {
    fs::read_dir(kiln_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build-"))
        .collect()
}

fn interrupt_during_run(isolation: &str, signal: &str, expected_code: i32) {
    let reg = registry();
    let ctx = tempfile::tempdir().unwrap();
    let kiln_dir = tempfile::tempdir().unwrap();
    // A distinctive sleep length marks the step's processes in /proc: one in
    // the foreground, one in the background (an orphan-to-be).
    let fg = format!("{}", 86_400 + std::process::id() % 1000);
    let bg = format!("{}", 90_000 + std::process::id() % 1000);
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nRUN sleep {bg} >/dev/null 2>&1 & echo \"step-is-\"running && sleep {fg}\n",
            reg.host()
        ),
    )
    .unwrap();
    let (child, rx) = start(&reg, ctx.path(), kiln_dir.path(), isolation);
    let pid = child.id();
    let seen = wait_for_line(&rx, "step-is-running");
    // The sleep starts right after the echo: wait (bounded) until it shows.
    let deadline = std::time::Instant::now() + LIMIT;
    while processes_with_arg(&fg).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step's sleep is not running:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(build_dirs(kiln_dir.path()).len(), 1);

    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    let status = wait_exit(child);
    let rest = drain(&rx);
    assert_eq!(
        status.code(),
        Some(expected_code),
        "{isolation} {signal}: {status}\n{seen}{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("interrupted")),
        "no interruption message: {rest:?}"
    );
    // The step ended because the build was stopped, not because the
    // sandbox failed: no message may say otherwise.
    assert!(
        !rest.iter().any(|l| l.contains("setting up the sandbox")),
        "an interrupted step reported as a sandbox failure: {rest:?}"
    );
    assert_eq!(
        processes_with_arg(&fg),
        Vec::<u32>::new(),
        "step left running"
    );
    assert_eq!(
        processes_with_arg(&bg),
        Vec::<u32>::new(),
        "orphan left running"
    );
    assert_eq!(mounts_under(kiln_dir.path()), Vec::<String>::new());
    assert_eq!(
        build_dirs(kiln_dir.path()),
        Vec::<String>::new(),
        "{rest:?}"
    );

    // The same kiln dir serves the next build.
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nRUN echo again > /again\n",
            reg.host()
        ),
    )
    .unwrap();
    let (child, rx) = start(&reg, ctx.path(), kiln_dir.path(), isolation);
    let status = wait_exit(child);
    let out = drain(&rx);
    assert!(status.success(), "next build failed: {}", out.join("\n"));
    let img = kiln_testkit::Flattened::from_registry(&reg, "interrupted:1").unwrap();
    assert_eq!(img.text("/again").as_deref(), Some("again\n"));
    assert_eq!(build_dirs(kiln_dir.path()), Vec::<String>::new());
}

#[test]
fn sigterm_during_run_in_namespace_isolation() {
    interrupt_during_run("namespace", "-TERM", 143);
}

#[test]
fn sigint_during_run_in_chroot_isolation() {
    interrupt_during_run("chroot", "-INT", 130);
}

#[test]
fn sigterm_during_run_in_chroot_isolation() {
    interrupt_during_run("chroot", "-TERM", 143);
}

#[test]
fn sigterm_during_a_base_pull() {
    let reg = registry();
    // The layer download stalls in the proxy until long after the signal.
    let proxy = FaultProxy::start(&reg.host()).unwrap();
    let layer = kiln_testkit::Flattened::from_registry(&reg, "busybox:latest")
        .unwrap()
        .manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    proxy.inject(
        Some("GET"),
        &format!("/blobs/{layer}"),
        Fault::Delay(Duration::from_secs(120)),
        8,
    );
    let ctx = tempfile::tempdir().unwrap();
    let kiln_dir = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nRUN echo pulled > /pulled\n",
            proxy.host()
        ),
    )
    .unwrap();
    let (child, rx) = start_with(&proxy.host(), ctx.path(), kiln_dir.path(), "chroot");
    let pid = child.id();
    // The base's manifest is resolved before its layers are fetched.
    let seen = wait_for_line(&rx, "busybox:latest is sha256:");
    assert_eq!(build_dirs(kiln_dir.path()).len(), 1, "{seen}");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = wait_exit(child);
    let rest = drain(&rx);
    assert_eq!(status.code(), Some(143), "{seen}{}", rest.join("\n"));
    assert_eq!(build_dirs(kiln_dir.path()), Vec::<String>::new());
    assert_eq!(mounts_under(kiln_dir.path()), Vec::<String>::new());

    // The next build in the same kiln dir, straight from the registry, works.
    fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox:latest\nRUN echo pulled > /pulled\n",
            reg.host()
        ),
    )
    .unwrap();
    let (child, rx) = start(&reg, ctx.path(), kiln_dir.path(), "chroot");
    let status = wait_exit(child);
    let out = drain(&rx);
    assert!(status.success(), "next build failed: {}", out.join("\n"));
    let img = kiln_testkit::Flattened::from_registry(&reg, "interrupted:1").unwrap();
    assert_eq!(img.text("/pulled").as_deref(), Some("pulled\n"));
}
