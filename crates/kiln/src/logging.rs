//! Log output: Kaniko's verbosity names and formats mapped onto tracing-subscriber.
//! Logs go to stderr so that stdout stays free for what a command prints.

use kiln_build::options::{LogFormat, LogOptions, Verbosity};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt;

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
    let level = level_for(options.verbosity);
    let builder = fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    // Each arm builds a differently typed subscriber, hence the repetition.
    let _ = match (options.format, options.timestamp) {
        (LogFormat::Json, true) => builder.json().try_init(),
        (LogFormat::Json, false) => builder.json().without_time().try_init(),
        (format, true) => builder.with_ansi(format == LogFormat::Color).try_init(),
        (format, false) => builder
            .with_ansi(format == LogFormat::Color)
            .without_time()
            .try_init(),
    };
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
