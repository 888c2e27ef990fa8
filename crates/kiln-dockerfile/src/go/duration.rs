//! Go's `time.ParseDuration` (`1h30m`, `1.5h`, `.5s`, `300ms`, `2µs`): the
//! syntax of the HEALTHCHECK interval flags and of Kaniko's duration flags
//! (`--cache-ttl`, `--push-retry-delay`...).
//!
//! Hand-written: the duration crates (humantime and friends) accept a
//! different grammar (spaces, `days`, `min`) and reject Go forms such as
//! `.5h`, `1.h` or `µs`, so they would let through values that Docker and
//! Kaniko reject and the other way round. The grammar is small enough to
//! port exactly, errors included.

/// Why a text is not a Go duration; the messages are Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not a duration at all, or outside Go's `int64` nanoseconds.
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    /// A number without its unit.
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    /// A unit Go does not know (`d`, `H`, ...).
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole text.
        input: String,
    },
}

/// Nanoseconds per unit, with every spelling Go accepts.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // micro sign
    ("\u{3bc}s", 1_000), // Greek small letter mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
];

/// Go durations are an `int64` count of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits past this many cannot change the result by a nanosecond.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses a Go duration into nanoseconds (negative where it says so, as in
/// Go).
///
/// ```
/// use kiln_dockerfile::go::parse_duration;
/// assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
/// assert!(parse_duration("7d").unwrap_err().to_string().contains("unknown unit \"d\""));
/// ```
///
/// # Errors
/// [`DurationError`], with Go's message for the same input.
pub fn parse_duration(input: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_number
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_string(),
                input: input.to_string(),
            });
        };
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            match int_digits.parse::<u128>() {
                Ok(v) if v <= MAX_NANOS => v,
                _ => return Err(invalid()),
            }
        };
        let mut nanos = whole.checked_mul(per_unit).filter(|n| *n <= MAX_NANOS);
        let frac_digits = &frac_digits[..frac_digits.len().min(MAX_FRACTION_DIGITS)];
        if let (Some(n), false) = (nanos, frac_digits.is_empty()) {
            let numerator: u128 = frac_digits.parse().map_err(|_| invalid())?;
            let denominator = 10u128.pow(frac_digits.len() as u32);
            nanos = n.checked_add(numerator * per_unit / denominator);
        }
        total = match nanos.and_then(|n| total.checked_add(n)) {
            Some(t) if t <= MAX_NANOS => t,
            _ => return Err(invalid()),
        };
        rest = after_unit;
    }
    // At most i64::MAX: the negation cannot overflow.
    let total = total as i64;
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const H: i64 = 3600 * S;

    fn ok(s: &str) -> i64 {
        parse_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_what_go_parses() {
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("+0"), 0);
        assert_eq!(ok("-0"), 0);
        assert_eq!(ok("0s"), 0);
        assert_eq!(ok("5s"), 5 * S);
        assert_eq!(ok("336h"), 336 * H);
        assert_eq!(ok("1h30m"), 5400 * S);
        assert_eq!(ok("1.5h"), 5400 * S);
        assert_eq!(ok("300ms"), 300_000_000);
        assert_eq!(ok(".5s"), S / 2);
        assert_eq!(ok("1.s"), S);
        assert_eq!(ok("10us"), 10_000);
        assert_eq!(ok("10\u{b5}s"), 10_000);
        assert_eq!(ok("2\u{3bc}s"), 2_000);
        assert_eq!(ok("-2s"), -2 * S);
        assert_eq!(ok("1m0.5s"), 60 * S + S / 2);
        assert_eq!(ok("1h1m1s1ms1us1ns"), H + 61 * S + 1_001_001);
        assert_eq!(ok("1.0000000001s"), S);
        assert_eq!(ok("0.123456789123s"), 123_456_789);
        assert_eq!(ok("5m5m"), 600 * S);
        assert_eq!(ok("2562047h"), 2_562_047 * H);
        // Many fraction digits of a big unit stay in range.
        assert_eq!(ok("0.999999999999999999999999999999h"), H - 1);
    }

    #[test]
    fn rejects_what_go_rejects_with_gos_messages() {
        for bad in [
            "",
            "+",
            "-",
            "1",
            "h",
            ".h",
            "1x",
            "1hh",
            "1 h",
            " 1h",
            "1h ",
            "1d",
            "1H",
            "1.5",
            "9223372036854775808ns",
            "2562048h",
            "99999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_duration("").unwrap_err().to_string(),
            r#"time: invalid duration """#
        );
        assert_eq!(
            parse_duration("5").unwrap_err().to_string(),
            r#"time: missing unit in duration "5""#
        );
        assert_eq!(
            parse_duration("5d").unwrap_err().to_string(),
            r#"time: unknown unit "d" in duration "5d""#
        );
    }
}
