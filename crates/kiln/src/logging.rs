//! Log output: Kaniko's verbosity names and formats mapped onto tracing-subscriber.
//! Logs go to stderr so that stdout stays free for what a command prints.

use indicatif::MultiProgress;
use kiln_build::options::{LogFormat, LogOptions, Verbosity};
use std::io::{self, Write};
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

/// Installs the global subscriber. Safe to call more than once: later calls do nothing.
pub fn init(options: &LogOptions) {
    init_with(options, None);
}

/// As [`init`]; with a live progress view, log lines are printed above it
/// instead of through it.
pub fn init_with(options: &LogOptions, live: Option<MultiProgress>) {
    let level = level_for(options.verbosity);
    let builder = fmt()
        .with_writer(Stderr { live })
        .with_max_level(level)
        .with_target(false);
    // Each arm builds a differently typed subscriber, hence the repetition.
    // JSON lines are flat (`level`, `message`, fields) like the progress events.
    let _ = match (options.format, options.timestamp) {
        (LogFormat::Json, true) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).without_time().try_init(),
        (format, true) => builder.with_ansi(format == LogFormat::Color).try_init(),
        (format, false) => builder
            .with_ansi(format == LogFormat::Color)
            .without_time()
            .try_init(),
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
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(Verbosity::Panic), LevelFilter::ERROR);
        assert_eq!(level_for(Verbosity::Warn), LevelFilter::WARN);
        assert_eq!(level_for(Verbosity::Info), LevelFilter::INFO);
        assert_eq!(level_for(Verbosity::Trace), LevelFilter::TRACE);
    }
}
