//! What a build tells its reader, end to end against a real registry: the
//! plain CI log (one line per step start and end, CACHED on hits, RUN output
//! under its step, a closing summary), JSON logs where every line parses,
//! and the one clear message of a failing RUN.

use assert_cmd::Command;
use kiln_testkit::{BaseImage, Registry};
use serde_json::Value;
use std::fs;

struct Project {
    reg: Registry,
    ctx: tempfile::TempDir,
}

const DOCKERFILE: &str = "\
FROM REGISTRY/busybox:latest
WORKDIR /app
COPY app.txt .
RUN echo compiled-output && echo built > built.txt
ENV MODE=prod
";

impl Project {
    fn new(dockerfile: &str) -> Project {
        let reg = Registry::plain().unwrap();
        BaseImage::busybox()
            .unwrap()
            .push_to(&reg, "busybox:latest")
            .unwrap();
        let ctx = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("app.txt"), "app\n").unwrap();
        fs::write(
            ctx.path().join("Dockerfile"),
            dockerfile.replace("REGISTRY", &reg.host()),
        )
        .unwrap();
        Project { reg, ctx }
    }

    /// Builds on a fresh working directory with the cache on; stdout and
    /// stderr, and whether it succeeded.
    fn build(&self, extra: &[&str]) -> (bool, Option<i32>, String, String) {
        let work = tempfile::tempdir().unwrap();
        let out = Command::cargo_bin("kiln")
            .unwrap()
            .args(["build", "--context"])
            .arg(self.ctx.path())
            .args(["--destination", &format!("{}/app:1", self.reg.host())])
            .args(["--insecure", "--insecure-pull", "--cache=true"])
            .args(["--cache-copy-layers=true", "--kiln-dir"])
            .arg(work.path())
            .args(extra)
            .env_remove("CLICOLOR_FORCE")
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .unwrap();
        (
            out.status.success(),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
}

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn plain_log_of_a_cold_then_warm_build() {
    let p = Project::new(DOCKERFILE);
    let (ok, _, stdout, cold) = p.build(&["--log-format=text"]);
    assert!(ok, "{cold}");
    assert!(stdout.is_empty(), "logs go to stderr: {stdout}");
    assert!(!cold.contains('\x1b'), "no colours in a text log:\n{cold}");
    // One start line and one end line per step, named as BuildKit does.
    for (n, instruction) in [
        (1, "step 2: WORKDIR /app"),
        (2, "step 3: COPY app.txt ."),
        (3, "step 4: RUN echo compiled-output"),
        (4, "step 5: ENV MODE=prod"),
    ] {
        let tag = format!("[stage-0 {n}/4] ");
        let start = lines_with(&cold, &format!("{tag}{instruction}"));
        assert_eq!(start.len(), 1, "{tag}{instruction}:\n{cold}");
        let done = lines_with(&cold, &tag)
            .into_iter()
            .filter(|l| l.contains(": done in ") && l.ends_with(['s', 'B']))
            .count();
        assert_eq!(done, 1, "{tag} ends once:\n{cold}");
    }
    assert!(!cold.contains("CACHED"), "nothing cached yet:\n{cold}");
    // RUN output, prefixed by its step.
    assert!(
        cold.lines().any(|l| l.starts_with("[")
            && l.contains("Dockerfile:4] RUN ")
            && l.ends_with("| compiled-output")),
        "{cold}"
    );
    // The COPY made a layer, and its size is on its end line.
    assert!(
        lines_with(&cold, "[stage-0 2/4] step 3: done in ")[0].contains(", layer "),
        "{cold}"
    );
    assert!(
        lines_with(&cold, "pushed ")
            .iter()
            .any(|l| l.contains(&format!("{}/app:1", p.reg.host()))),
        "{cold}"
    );
    // The RUN needed the base's files: its layer was downloaded, once.
    let pulled = lines_with(&cold, "pulled sha256:");
    assert_eq!(pulled.len(), 1, "{cold}");
    assert!(
        pulled[0].contains(" in ") && pulled[0].ends_with('s'),
        "{cold}"
    );
    assert!(cold.contains("build summary"), "{cold}");
    assert!(
        cold.contains("cache   0 of 4 steps cached, 4 built"),
        "{cold}"
    );

    // On a fresh machine: WORKDIR, COPY and RUN come from the cache.
    let (ok, _, _, warm) = p.build(&["--log-format=text"]);
    assert!(ok, "{warm}");
    for (n, line) in [(1, 2), (2, 3), (3, 4)] {
        assert_eq!(
            lines_with(&warm, &format!("[stage-0 {n}/4] step {line}: CACHED")).len(),
            1,
            "step on line {line} is CACHED:\n{warm}"
        );
    }
    assert!(
        !warm.contains("| compiled-output"),
        "a cached RUN does not run:\n{warm}"
    );
    assert!(
        !warm.contains("pulled sha256:"),
        "a warm build downloads no layer:\n{warm}"
    );
    assert_eq!(lines_with(&warm, "[stage-0 4/4] step 5: done in ").len(), 1);
    let summary = &warm[warm.find("build summary").expect("a summary")..];
    assert!(summary.contains("image   sha256:"), "{summary}");
    assert!(summary.contains("size    "), "{summary}");
    assert!(
        summary.contains(&format!("pushed  {}/app:1", p.reg.host())),
        "{summary}"
    );
    assert!(
        summary.contains("cache   3 of 4 steps cached, 1 built"),
        "{summary}"
    );
    assert!(summary.contains("time    "), "{summary}");
}

#[test]
fn every_json_log_line_parses() {
    let p = Project::new(DOCKERFILE);
    let (ok, _, stdout, log) = p.build(&["--log-format=json", "--log-timestamp", "--cleanup"]);
    assert!(ok, "{log}");
    assert!(stdout.is_empty(), "{stdout}");
    let objects: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}")))
        .collect();
    for o in &objects {
        assert!(o["level"].is_string(), "{o}");
        assert!(o["message"].is_string(), "{o}");
        assert!(o["timestamp"].is_string(), "--log-timestamp: {o}");
    }
    let events =
        |name: &str| -> Vec<&Value> { objects.iter().filter(|o| o["event"] == name).collect() };
    assert_eq!(events("step_started").len(), 4, "{log}");
    assert_eq!(events("step_done").len(), 4, "{log}");
    let run = events("run_output");
    assert!(
        run.iter()
            .any(|o| o["output"] == "compiled-output" && o["line"] == 4),
        "{log}"
    );
    let pulled = events("layer_pulled");
    assert_eq!(pulled.len(), 1, "{log}");
    assert!(pulled[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(pulled[0]["size"].as_u64().unwrap() > 0, "{log}");
    let summary = events("summary");
    assert_eq!(summary.len(), 1, "{log}");
    assert!(summary[0]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(summary[0]["steps"], 4);
    assert_eq!(summary[0]["pushed"][0], format!("{}/app:1", p.reg.host()));
    // The note about --cleanup comes from the tracing side: JSON too.
    assert!(
        objects
            .iter()
            .any(|o| o["message"].as_str().unwrap().contains("--cleanup")),
        "{log}"
    );
}

#[test]
fn a_failing_run_says_which_step_which_command_and_which_exit_code() {
    let p = Project::new(
        "FROM REGISTRY/busybox:latest\nRUN echo about-to-fail && exit 3\nRUN echo never\n",
    );
    let (ok, code, _, log) = p.build(&["--log-format=text"]);
    assert!(!ok);
    assert_eq!(code, Some(5), "{log}");
    let errors = lines_with(&log, "error: ");
    assert_eq!(errors.len(), 1, "one error line:\n{log}");
    let error = errors[0];
    assert!(error.contains("Dockerfile:2"), "the step: {error}");
    assert!(
        error.contains("echo about-to-fail && exit 3"),
        "the command: {error}"
    );
    assert!(error.contains("exit code 3"), "the exit code: {error}");
    assert_eq!(lines_with(&log, "hint: ").len(), 1, "what to do:\n{log}");
    assert!(!log.contains("echo never"), "the build stopped:\n{log}");

    let (_, code, _, json) = p.build(&["--log-format=json"]);
    assert_eq!(code, Some(5));
    let last: Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "error", "{json}");
    assert_eq!(last["exit_code"], 5);
    assert!(
        last["message"].as_str().unwrap().contains("exit code 3"),
        "{last}"
    );
    for line in json.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }
}

/// Whether `token` is an RFC 3339 date and time.
fn is_rfc3339(token: &str) -> bool {
    time::OffsetDateTime::parse(token, &time::format_description::well_known::Rfc3339).is_ok()
}

#[test]
fn the_default_color_format_writes_no_escape_codes_into_a_ci_log() {
    let p = Project::new(DOCKERFILE);
    // No --log-format: Kaniko's default, `color`. stderr is a pipe here, as
    // in a CI job, so neither the step lines nor the log lines of tracing
    // (the --cleanup notice, the layer cache line) may be coloured.
    let (ok, _, _, log) = p.build(&["--cleanup"]);
    assert!(ok, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("INFO") && l.contains("accepted for Kaniko compatibility")),
        "a log line of tracing is there:\n{log}"
    );
    assert!(log.contains("[stage-0 3/4] step 4: RUN "), "{log}");
    assert!(
        !log.contains("\x1b["),
        "no ANSI escape codes outside a terminal:\n{log:?}"
    );
}

#[test]
fn log_timestamp_puts_the_time_first_on_every_line() {
    let p = Project::new(DOCKERFILE);
    let (ok, _, stdout, log) = p.build(&["--log-format=text", "--log-timestamp", "--cleanup"]);
    assert!(ok, "{log}");
    assert!(stdout.is_empty(), "{stdout}");
    // Step lines, RUN output, tracing's lines and the summary alike.
    for needle in [
        "accepted for Kaniko compatibility",
        "[stage-0 1/4] step 2: WORKDIR /app",
        "| compiled-output",
        "build summary",
        "  image   sha256:",
        "  time    ",
    ] {
        assert!(log.contains(needle), "{needle:?} is logged:\n{log}");
    }
    for line in log.lines() {
        let first = line.split(' ').next().unwrap_or_default();
        assert!(is_rfc3339(first), "not stamped: {line:?}\n{log}");
    }
}

/// `app` is the target; `unused` comes before it and `later` after it, and
/// the target reads from neither.
const THREE_STAGES: &str = "\
FROM REGISTRY/busybox:latest AS unused
RUN echo unused-stage-ran
FROM REGISTRY/busybox:latest AS app
RUN echo app-stage-ran
FROM REGISTRY/busybox:latest AS later
RUN echo later-stage-ran
";

fn ran(log: &str, output: &str) -> bool {
    log.lines().any(|l| l.ends_with(&format!("| {output}")))
}

#[test]
fn skip_unused_stages_is_the_default_and_false_builds_every_stage_up_to_the_target() {
    let p = Project::new(THREE_STAGES);
    let build = |extra: &[&str]| {
        let mut args = vec!["--log-format=text", "--cache=false", "--target=app"];
        args.extend(extra);
        let (ok, _, _, log) = p.build(&args);
        assert!(ok, "{extra:?}:\n{log}");
        log
    };
    for log in [build(&[]), build(&["--skip-unused-stages"])] {
        assert!(ran(&log, "app-stage-ran"), "{log}");
        assert!(!ran(&log, "unused-stage-ran"), "skipped:\n{log}");
        assert!(!log.contains("stage unused (FROM"), "{log}");
        assert!(!ran(&log, "later-stage-ran"), "{log}");
    }
    // As Kaniko without the flag: the unused stage runs; the one after the
    // target still does not.
    let log = build(&["--skip-unused-stages=false"]);
    assert!(ran(&log, "unused-stage-ran"), "built:\n{log}");
    assert!(log.contains("stage unused (FROM"), "{log}");
    assert!(ran(&log, "app-stage-ran"), "{log}");
    assert!(!ran(&log, "later-stage-ran"), "after the target:\n{log}");
    assert!(!log.contains("stage later (FROM"), "{log}");
}
