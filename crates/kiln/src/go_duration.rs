//! Durations in Go's `time.ParseDuration` syntax (`336h`, `1h30m`, `1.5h`, `300ms`), as
//! Kaniko's duration flags (`--cache-ttl`, ...) take them: kiln-dockerfile's parser, the one
//! HEALTHCHECK uses, with negative durations refused.

use std::time::Duration;

/// Why a flag's value is not a duration it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlagDurationError {
    /// Not a Go duration (Go's message).
    #[error("{0}")]
    Go(#[source] kiln_dockerfile::go::DurationError),
    /// A negative duration.
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
}

/// Parses a Go duration. Negative durations are refused: no flag has a use for one.
///
/// # Errors
/// Naming the input and what is wrong with it (Go's message, for what Go rejects).
pub fn parse(input: &str) -> Result<Duration, FlagDurationError> {
    let nanos = kiln_dockerfile::go::parse_duration(input).map_err(FlagDurationError::Go)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| FlagDurationError::Negative(input.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_become_std_durations() {
        assert_eq!(parse("336h"), Ok(Duration::from_secs(336 * 3600)));
        assert_eq!(parse("0.123456789123s"), Ok(Duration::new(0, 123_456_789)));
        assert_eq!(parse("-0"), Ok(Duration::ZERO));
        assert!(parse("7d")
            .unwrap_err()
            .to_string()
            .contains("unknown unit \"d\""));
        assert!(matches!(
            parse("10"),
            Err(FlagDurationError::Go(
                kiln_dockerfile::go::DurationError::MissingUnit(_)
            ))
        ));
        assert_eq!(
            parse("-5s"),
            Err(FlagDurationError::Negative("-5s".to_string()))
        );
        assert_eq!(
            parse("-5s").unwrap_err().to_string(),
            "invalid duration \"-5s\": negative durations are not allowed"
        );
    }
}
