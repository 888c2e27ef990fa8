//! What a build shows while it runs, in three forms:
//!
//! - **live**, on a terminal: finished steps scroll above a spinner for each
//!   step in flight, as BuildKit does;
//! - **plain**, in CI logs (no terminal): one line when a step starts and one
//!   when it ends (`CACHED`, or its duration and layer size), RUN output
//!   prefixed by its step;
//! - **json** (`--log-format json`): one JSON object per line.
//!
//! Every form ends with a summary: digest, size, destinations, cache use, time.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_build::options::LogFormat;
use kiln_build::progress::{ProgressEvent, ProgressSink, StepId};
use serde_json::{json, Map, Value};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spinners for steps in flight, finished steps scrolling above them.
    Live,
    /// One line per step start and end; ANSI colours when `color`.
    Plain {
        /// Whether to colour the output.
        color: bool,
    },
    /// One JSON object per line.
    Json,
}

impl Mode {
    /// The mode for a `--log-format`, given whether stderr is a terminal.
    /// `NO_COLOR` turns colours off; `CLICOLOR_FORCE` turns them on without a terminal.
    pub fn choose(format: LogFormat, terminal: bool, env: &dyn Fn(&str) -> Option<String>) -> Mode {
        let dumb = env("TERM").is_some_and(|t| t == "dumb");
        match format {
            LogFormat::Json => Mode::Json,
            _ if terminal && !dumb => Mode::Live,
            // The same rule as the log lines printed between these.
            _ => Mode::Plain {
                color: crate::logging::colors(format, terminal, env),
            },
        }
    }

    /// The mode for this process's stderr.
    pub fn detect(format: LogFormat) -> Mode {
        Mode::choose(format, std::io::stderr().is_terminal(), &|name| {
            std::env::var(name).ok()
        })
    }
}

/// Shows a build's progress on stderr.
pub struct Renderer {
    mode: Mode,
    timestamps: bool,
    color: bool,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<(usize, usize), ProgressBar>>,
    pushes: Mutex<HashMap<String, Push>>,
    pulls: Mutex<HashMap<String, Pull>>,
}

/// A push in flight: its bar (live view) and the bytes of each blob so far.
struct Push {
    bar: Option<ProgressBar>,
    done: HashMap<String, u64>,
}

/// A layer download in flight.
struct Pull {
    bar: Option<ProgressBar>,
    started: Instant,
}

const GREEN: &str = "\x1b[32m";
const BLUE: &str = "\x1b[34m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl Renderer {
    /// A renderer in `mode`; `timestamps` puts the time on every line.
    pub fn new(mode: Mode, timestamps: bool) -> Renderer {
        let (multi, color) = match mode {
            Mode::Live => (
                Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
                !std::env::var("NO_COLOR").is_ok_and(|v| !v.is_empty()),
            ),
            Mode::Plain { color } => (None, color),
            Mode::Json => (None, false),
        };
        Renderer {
            mode,
            timestamps,
            color,
            multi,
            bars: Mutex::new(HashMap::new()),
            pushes: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
        }
    }

    /// The live view's handle, so that log lines can be printed above it.
    pub fn multi(&self) -> Option<MultiProgress> {
        self.multi.clone()
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// `text` with the time in front of each of its lines when timestamps are
    /// on: a multi-line message (the summary) is stamped line by line, so
    /// that every line of the log starts with the time.
    fn stamped(&self, text: &str) -> String {
        if !self.timestamps {
            return text.to_string();
        }
        let now = now();
        text.split('\n')
            .map(|line| format!("{now} {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes one human-readable line (live and plain modes).
    fn line(&self, text: &str) {
        let text = self.stamped(text);
        match &self.multi {
            Some(multi) => {
                // A hidden or closed terminal leaves nothing to do.
                let _ = multi.println(text);
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    /// Writes one JSON object as a line (json mode).
    fn json(&self, level: &str, event: &str, message: &str, fields: Value) {
        let mut object = Map::new();
        if self.timestamps {
            object.insert("timestamp".into(), Value::String(now()));
        }
        object.insert("level".into(), Value::String(level.into()));
        object.insert("event".into(), Value::String(event.into()));
        object.insert("message".into(), Value::String(message.into()));
        if let Value::Object(extra) = fields {
            object.extend(extra);
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", Value::Object(object));
    }

    fn show(&self, level: &str, event: &str, message: &str, fields: Value) {
        match self.mode {
            Mode::Json => self.json(level, event, message, fields),
            _ => self.line(message),
        }
    }

    fn start_bar(&self, message: String) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.blue} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    }

    /// A bar that counts bytes towards `total`, as BuildKit shows a transfer.
    fn start_transfer_bar(&self, message: String, total: u64) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let bar = multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.blue} {msg} [{bar:24}] {bytes}/{total_bytes} {bytes_per_sec:.dim} {elapsed:.dim}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    }

    /// Moves the bars of a blob transfer; a finished download gets a line.
    fn transfer(&self, destination: Option<&str>, digest: &str, done: u64, total: u64) {
        if let Some(destination) = destination {
            let mut pushes = lock(&self.pushes);
            let Some(push) = pushes.get_mut(destination) else {
                return;
            };
            push.done.insert(digest.to_string(), done.min(total));
            if let Some(bar) = &push.bar {
                bar.set_position(push.done.values().sum());
            }
            return;
        }
        let finished = {
            let mut pulls = lock(&self.pulls);
            let pull = pulls.entry(digest.to_string()).or_insert_with(|| Pull {
                bar: self.start_transfer_bar(format!("pulling {}", short(digest)), total),
                started: Instant::now(),
            });
            if let Some(bar) = &pull.bar {
                bar.set_position(done.min(total));
            }
            if done < total {
                return;
            }
            pulls.remove(digest)
        };
        let Some(pull) = finished else { return };
        if let Some(bar) = &pull.bar {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(bar);
            }
        }
        let took = pull.started.elapsed();
        let message = format!(
            "pulled {} ({}) in {}",
            short(digest),
            HumanBytes(total),
            secs(took)
        );
        self.show(
            "INFO",
            "layer_pulled",
            &self.paint(DIM, &message),
            json!({"digest": digest, "size": total, "seconds": round(took)}),
        );
    }

    /// Ends a step's spinner; its text (`[stage 2/7] COPY ...`) when it had one.
    fn end_bar(&self, key: (usize, usize)) -> Option<String> {
        let bar = lock(&self.bars).remove(&key)?;
        bar.finish_and_clear();
        if let Some(multi) = &self.multi {
            multi.remove(&bar);
        }
        Some(bar.message())
    }

    /// Prints the closing summary of a successful build.
    pub fn summary(&self, summary: &Summary) {
        let cache = if summary.cache_enabled {
            format!(
                "{} of {} steps cached, {} built",
                summary.cached,
                summary.steps,
                summary.steps - summary.cached
            )
        } else {
            format!("off ({} steps built)", summary.steps)
        };
        let pushed = if summary.pushed.is_empty() {
            "nothing (--no-push)".to_string()
        } else {
            summary.pushed.join(", ")
        };
        match self.mode {
            Mode::Json => self.json(
                "INFO",
                "summary",
                &format!("built {}", summary.digest),
                json!({
                    "digest": summary.digest,
                    "size": summary.size,
                    "pushed": summary.pushed,
                    "steps": summary.steps,
                    "cached": summary.cached,
                    "cache_enabled": summary.cache_enabled,
                    "seconds": round(summary.elapsed),
                }),
            ),
            _ => {
                let title = self.paint(BOLD, "build summary");
                self.line(&format!(
                    "{title}\n  image   {}\n  size    {}\n  pushed  {pushed}\n  cache   {cache}\n  time    {}",
                    summary.digest,
                    HumanBytes(summary.size),
                    secs(summary.elapsed),
                ));
            }
        }
    }

    /// Clears the live view (spinners of steps that never finished).
    pub fn finish(&self) {
        for (_, bar) in lock(&self.bars).drain() {
            bar.finish_and_clear();
        }
        for (_, push) in lock(&self.pushes).drain() {
            if let Some(bar) = push.bar {
                bar.finish_and_clear();
            }
        }
        for (_, pull) in lock(&self.pulls).drain() {
            if let Some(bar) = pull.bar {
                bar.finish_and_clear();
            }
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }

    /// Prints a failure: every line as given, then what to do about it.
    pub fn failure(&self, lines: &[String], hint: Option<&str>, exit_code: u8) {
        self.finish();
        match self.mode {
            Mode::Json => {
                let message = lines
                    .iter()
                    .map(|l| l.strip_prefix("error: ").unwrap_or(l))
                    .collect::<Vec<_>>()
                    .join("\n");
                self.json(
                    "ERROR",
                    "error",
                    &message,
                    json!({ "exit_code": exit_code, "hint": hint }),
                );
            }
            _ => {
                let mut err = std::io::stderr().lock();
                for line in lines {
                    let line = match line.strip_prefix("error:") {
                        Some(rest) => format!("{}{rest}", self.paint(RED, "error:")),
                        None => line.clone(),
                    };
                    let _ = writeln!(err, "{}", self.stamped(&line));
                }
                if let Some(hint) = hint {
                    let hint = format!("{} {hint}", self.paint(BOLD, "hint:"));
                    let _ = writeln!(err, "{}", self.stamped(&hint));
                }
            }
        }
    }
}

/// What the closing summary reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The image digest.
    pub digest: String,
    /// Config plus compressed layers, in bytes.
    pub size: u64,
    /// Destinations pushed to.
    pub pushed: Vec<String>,
    /// Steps run.
    pub steps: usize,
    /// Steps that came from the cache.
    pub cached: usize,
    /// Whether `--cache` was on.
    pub cache_enabled: bool,
    /// Wall time.
    pub elapsed: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `sha256:0123456789ab`: a digest as wide as a log line can spare.
fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(0, |colon| colon + 1) + 12;
    digest.get(..end).unwrap_or(digest)
}

/// `[stage 2/7]`, as BuildKit names a step.
fn tag(step: &StepId) -> String {
    format!("[{} {}/{}]", step.stage_name, step.index, step.total)
}

fn step_json(step: &StepId) -> Value {
    json!({
        "stage": step.stage_name,
        "step": step.index,
        "steps": step.total,
        "line": step.line,
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

impl ProgressSink for Renderer {
    fn event(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::StageStarted {
                name, base, steps, ..
            } => {
                let message = format!("stage {name} (FROM {base}, {steps} steps)");
                let shown = self.paint(BLUE, &message);
                match self.mode {
                    Mode::Json => self.json(
                        "INFO",
                        "stage_started",
                        &message,
                        json!({"stage": name, "base": base, "steps": steps}),
                    ),
                    _ => self.line(&shown),
                }
            }
            ProgressEvent::StepStarted { step, instruction } => {
                let message = format!("{} step {}: {instruction}", tag(step), step.line);
                match self.mode {
                    Mode::Live => {
                        let bar = self.start_bar(format!("{} {instruction}", tag(step)));
                        if let Some(bar) = bar {
                            lock(&self.bars).insert((step.stage, step.index), bar);
                        }
                    }
                    _ => self.show(
                        "INFO",
                        "step_started",
                        &message,
                        merge(step_json(step), json!({"instruction": instruction})),
                    ),
                }
            }
            ProgressEvent::StepCached { step, duration } => {
                let live = self.end_bar((step.stage, step.index));
                let message = format!("{} step {}: CACHED", tag(step), step.line);
                match self.mode {
                    // As BuildKit: the step as it was shown, then the outcome.
                    Mode::Live => self.line(&format!(
                        "{} {}",
                        live.unwrap_or(message),
                        self.paint(GREEN, "CACHED")
                    )),
                    Mode::Json => self.json(
                        "INFO",
                        "step_cached",
                        &message,
                        merge(step_json(step), json!({"seconds": round(*duration)})),
                    ),
                    _ => self.line(&format!(
                        "{} step {}: {}",
                        tag(step),
                        step.line,
                        self.paint(GREEN, "CACHED")
                    )),
                }
            }
            ProgressEvent::StepDone {
                step,
                duration,
                layer_size,
            } => {
                let live = self.end_bar((step.stage, step.index));
                let layer = match layer_size {
                    Some(size) => format!(", layer {}", HumanBytes(*size)),
                    None => String::new(),
                };
                let message = format!(
                    "{} step {}: done in {}{layer}",
                    tag(step),
                    step.line,
                    secs(*duration)
                );
                if let (Mode::Live, Some(live)) = (self.mode, live) {
                    let took = self.paint(DIM, &format!("{}{layer}", secs(*duration)));
                    return self.line(&format!("{live} {took}"));
                }
                self.show(
                    "INFO",
                    "step_done",
                    &message,
                    merge(
                        step_json(step),
                        json!({"seconds": round(*duration), "layer_size": layer_size}),
                    ),
                );
            }
            ProgressEvent::RunOutput { step, label, line } => {
                let message = format!("{label}| {line}");
                match self.mode {
                    Mode::Json => self.json(
                        "INFO",
                        "run_output",
                        &message,
                        merge(step_json(step), json!({"output": line})),
                    ),
                    _ => self.line(&format!("{}{line}", self.paint(DIM, &format!("{label}| ")))),
                }
            }
            ProgressEvent::PushStarted {
                destination,
                blobs,
                bytes,
            } => {
                let message = format!(
                    "pushing {destination} ({blobs} blobs, {})",
                    HumanBytes(*bytes)
                );
                let push = Push {
                    bar: self.start_transfer_bar(format!("pushing {destination}"), *bytes),
                    done: HashMap::new(),
                };
                lock(&self.pushes).insert(destination.clone(), push);
                match self.mode {
                    Mode::Live => {}
                    _ => self.show(
                        "INFO",
                        "push_started",
                        &message,
                        json!({"destination": destination, "blobs": blobs, "bytes": bytes}),
                    ),
                }
            }
            ProgressEvent::PushDone {
                destination,
                uploaded,
                mounted,
                existing,
                uploaded_bytes,
                duration,
            } => {
                if let Some(bar) = lock(&self.pushes).remove(destination).and_then(|p| p.bar) {
                    bar.finish_and_clear();
                    if let Some(multi) = &self.multi {
                        multi.remove(&bar);
                    }
                }
                let message = format!(
                    "pushed {destination} in {}: {uploaded} uploaded ({}), {mounted} mounted, {existing} already there",
                    secs(*duration),
                    HumanBytes(*uploaded_bytes)
                );
                self.show(
                    "INFO",
                    "push_done",
                    &message,
                    json!({
                        "destination": destination,
                        "uploaded": uploaded,
                        "uploaded_bytes": uploaded_bytes,
                        "mounted": mounted,
                        "existing": existing,
                        "seconds": round(*duration),
                    }),
                );
            }
            ProgressEvent::BlobTransfer {
                destination,
                digest,
                done,
                total,
            } => self.transfer(destination.as_deref(), digest, *done, *total),
            ProgressEvent::BuildDone { .. } => {}
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::logging::tests::env;

    #[test]
    fn terminals_get_the_live_view_and_logs_get_lines() {
        assert_eq!(Mode::choose(LogFormat::Color, true, &env(&[])), Mode::Live);
        assert_eq!(
            Mode::choose(LogFormat::Color, false, &env(&[])),
            Mode::Plain { color: false }
        );
        assert_eq!(
            Mode::choose(LogFormat::Color, false, &env(&[("CLICOLOR_FORCE", "1")])),
            Mode::Plain { color: true }
        );
        assert_eq!(
            Mode::choose(LogFormat::Text, true, &env(&[("TERM", "dumb")])),
            Mode::Plain { color: false }
        );
        assert_eq!(Mode::choose(LogFormat::Json, true, &env(&[])), Mode::Json);
    }

    #[test]
    fn timestamps_go_on_every_line_of_a_message() {
        let renderer = Renderer::new(Mode::Plain { color: false }, true);
        let stamped = renderer.stamped("build summary\n  image   sha256:1");
        let lines: Vec<&str> = stamped.lines().collect();
        assert_eq!(lines.len(), 2, "{stamped}");
        for (line, rest) in lines.iter().zip(["build summary", "  image   sha256:1"]) {
            let (time, text) = line.split_once(' ').unwrap();
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{time:?}: {e}"));
            assert_eq!(text, rest);
        }
        let plain = Renderer::new(Mode::Plain { color: false }, false);
        assert_eq!(plain.stamped("a\nb"), "a\nb");
    }

    /// The live view, drawn nowhere.
    fn hidden_live() -> Renderer {
        let mut renderer = Renderer::new(Mode::Plain { color: false }, false);
        renderer.mode = Mode::Live;
        renderer.multi = Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));
        renderer
    }

    fn blob(destination: Option<&str>, digest: &str, done: u64, total: u64) -> ProgressEvent {
        ProgressEvent::BlobTransfer {
            destination: destination.map(str::to_string),
            digest: digest.into(),
            done,
            total,
        }
    }

    #[test]
    fn the_live_view_counts_the_bytes_of_pushes_and_pulls() {
        let r = hidden_live();
        r.event(&ProgressEvent::PushStarted {
            destination: "reg/app:1".into(),
            blobs: 3,
            bytes: 3000,
        });
        let position = || {
            let pushes = lock(&r.pushes);
            let bar = pushes["reg/app:1"].bar.as_ref().unwrap();
            (bar.position(), bar.length())
        };
        assert_eq!(position(), (0, Some(3000)));
        // Two layers in flight at once: the bar shows their sum.
        r.event(&blob(Some("reg/app:1"), "sha256:a", 400, 1000));
        r.event(&blob(Some("reg/app:1"), "sha256:b", 300, 1500));
        assert_eq!(position().0, 700);
        r.event(&blob(Some("reg/app:1"), "sha256:a", 1000, 1000));
        assert_eq!(position().0, 1300);
        // Another destination's bytes do not count here.
        r.event(&blob(Some("reg/other:1"), "sha256:c", 500, 500));
        assert_eq!(position().0, 1300);
        r.event(&ProgressEvent::PushDone {
            destination: "reg/app:1".into(),
            uploaded: 3,
            mounted: 0,
            existing: 0,
            uploaded_bytes: 3000,
            duration: Duration::from_secs(1),
        });
        assert!(lock(&r.pushes).is_empty());

        // A download has its own bar until it is done.
        r.event(&blob(None, "sha256:0123456789abcdef", 0, 2048));
        r.event(&blob(None, "sha256:0123456789abcdef", 1024, 2048));
        {
            let pulls = lock(&r.pulls);
            let bar = pulls["sha256:0123456789abcdef"].bar.as_ref().unwrap();
            assert_eq!((bar.position(), bar.length()), (1024, Some(2048)));
            assert_eq!(bar.message(), "pulling sha256:0123456789ab");
        }
        r.event(&blob(None, "sha256:0123456789abcdef", 2048, 2048));
        assert!(lock(&r.pulls).is_empty());
    }

    #[test]
    fn steps_are_named_as_buildkit_does() {
        let step = StepId {
            stage: 1,
            stage_name: "builder".into(),
            index: 2,
            total: 7,
            line: 9,
        };
        assert_eq!(tag(&step), "[builder 2/7]");
        assert_eq!(step_json(&step)["line"], 9);
    }
}
