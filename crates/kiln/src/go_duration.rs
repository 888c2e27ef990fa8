//! Durations in Go's `time.ParseDuration` syntax (`336h`, `1h30m`, `1.5h`, `300ms`), as
//! Kaniko's duration flags (`--cache-ttl`, ...) take them: kiln-dockerfile's parser, the one
//! HEALTHCHECK uses, with negative durations refused.

use std::time::Duration;

/// Parses a Go duration. Negative durations are refused: no flag has a use for one.
///
/// # Errors
/// A message naming the input and what is wrong with it (Go's, for what Go rejects).
pub fn parse(input: &str) -> Result<Duration, String> {
    let nanos = kiln_dockerfile::go::parse_duration(input).map_err(|e| e.to_string())?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("invalid duration {input:?}: negative durations are not allowed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_become_std_durations() {
        assert_eq!(parse("336h"), Ok(Duration::from_secs(336 * 3600)));
        assert_eq!(parse("0.123456789123s"), Ok(Duration::new(0, 123_456_789)));
        assert_eq!(parse("-0"), Ok(Duration::ZERO));
        assert!(parse("7d").unwrap_err().contains("unknown unit \"d\""));
        assert!(parse("10").unwrap_err().contains("missing unit"));
        assert!(parse("-5s").unwrap_err().contains("negative"));
    }
}
