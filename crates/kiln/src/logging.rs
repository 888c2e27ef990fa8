//! Log output: Kaniko's verbosity names and formats mapped onto tracing-subscriber.
//! Logs go to stderr so that stdout stays free for what a command prints.

use indicatif::MultiProgress;
use kiln_build::options::{LogFormat, LogOptions, Verbosity};
use std::io::{self, IsTerminal, Write};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::MakeWriter;

/// The tracing level for a Kaniko (logrus) verbosity. tracing has no level above
/// `error`, so `panic` and `fatal` show errors only.
pub fn level_for(verbosity: Verbosity) -> LevelFilter {
    match verbosity {
        Verbosity::Panic | Verbosity::Fatal | Verbosity::Error => LevelFilter::ERROR,
        Verbosity::Warn => LevelFilter::WARN,
        Verbosity::Info => LevelFilter::INFO,
        Verbosity::Debug => LevelFilter::DEBUG,
        Verbosity::Trace => LevelFilter::TRACE,
    }
}

/// Whether log lines carry ANSI colours: only with `--log-format=color`, and
/// then only on a terminal (not `TERM=dumb`), since CI log viewers and files
/// show the escape codes as noise. `NO_COLOR` turns colours off;
/// `CLICOLOR_FORCE` turns them on without a terminal. The progress lines of a
/// build follow the same rule.
pub fn colors(format: LogFormat, terminal: bool, env: &dyn Fn(&str) -> Option<String>) -> bool {
    let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
    let forced = env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0");
    let dumb = env("TERM").is_some_and(|t| t == "dumb");
    format == LogFormat::Color && !no_color && ((terminal && !dumb) || forced)
}

/// Installs the global subscriber. Safe to call more than once: later calls do nothing.
pub fn init(options: &LogOptions) {
    init_with(options, None);
}

/// As [`init`]; with a live progress view, log lines are printed above it
/// instead of through it.
pub fn init_with(options: &LogOptions, live: Option<MultiProgress>) {
    let level = level_for(options.verbosity);
    let ansi = colors(options.format, io::stderr().is_terminal(), &|name| {
        std::env::var(name).ok()
    });
    let builder = fmt()
        .with_writer(Stderr { live })
        .with_max_level(level)
        .with_target(false);
    // Each arm builds a differently typed subscriber, hence the repetition.
    // JSON lines are flat (`level`, `message`, fields) like the progress events.
    let _ = match (options.format, options.timestamp) {
        (LogFormat::Json, true) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).without_time().try_init(),
        (_, true) => builder.with_ansi(ansi).try_init(),
        (_, false) => builder.with_ansi(ansi).without_time().try_init(),
    };
}

/// stderr, or the space above the live progress view when there is one.
#[derive(Clone)]
struct Stderr {
    live: Option<MultiProgress>,
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber writes each event with one call.
        match &self.live {
            Some(live) => live.suspend(|| io::stderr().lock().write_all(buf))?,
            None => io::stderr().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(Verbosity::Panic), LevelFilter::ERROR);
        assert_eq!(level_for(Verbosity::Warn), LevelFilter::WARN);
        assert_eq!(level_for(Verbosity::Info), LevelFilter::INFO);
        assert_eq!(level_for(Verbosity::Trace), LevelFilter::TRACE);
    }

    /// An environment lookup over fixed pairs (also used by progress's tests).
    pub(crate) fn env(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn colours_only_on_a_terminal_unless_forced() {
        assert!(colors(LogFormat::Color, true, &env(&[])));
        assert!(!colors(LogFormat::Color, false, &env(&[])));
        assert!(!colors(LogFormat::Text, true, &env(&[])));
        assert!(!colors(LogFormat::Json, true, &env(&[])));
        assert!(!colors(LogFormat::Color, true, &env(&[("TERM", "dumb")])));
        assert!(!colors(LogFormat::Color, true, &env(&[("NO_COLOR", "1")])));
        let forced = env(&[("CLICOLOR_FORCE", "1")]);
        assert!(colors(LogFormat::Color, false, &forced));
        assert!(!colors(LogFormat::Text, false, &forced));
        assert!(!colors(
            LogFormat::Color,
            false,
            &env(&[("CLICOLOR_FORCE", "0")])
        ));
        assert!(!colors(
            LogFormat::Color,
            false,
            &env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])
        ));
    }
}
