//! Durations in Go's `time.ParseDuration` syntax (`336h`, `1h30m`, `1.5h`, `300ms`), as
//! Kaniko's `--cache-ttl` takes them.
//!
//! Hand-written: the duration crates on crates.io (humantime, go-parse-duration forks)
//! either accept a different syntax (spaces, `days`, `min`) or reject forms Go accepts
//! (`.5h`, `1.h`, `µs`); the grammar is small enough to port exactly.

use std::time::Duration;

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
const MAX_FRACTION_DIGITS: u32 = 18;

/// Parses a Go duration. Negative durations are refused: no flag has a use for one.
///
/// # Errors
/// A message naming the input and what is wrong with it.
pub fn parse(input: &str) -> Result<Duration, String> {
    let fail = |reason: &str| Err(format!("invalid duration {input:?}: {reason}"));
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return fail("expected a number and a unit, e.g. 336h or 1h30m");
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
            return fail("expected a number");
        }
        let unit_len = after_number
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return fail("missing unit (ns, us, ms, s, m or h)");
        }
        let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return fail(&format!(
                "unknown unit {unit:?} (use ns, us, ms, s, m or h)"
            ));
        };
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            match int_digits.parse::<u128>() {
                Ok(v) if v <= MAX_NANOS => v,
                _ => return fail("out of range"),
            }
        };
        let mut nanos = whole.checked_mul(per_unit).filter(|n| *n <= MAX_NANOS);
        let frac_digits = &frac_digits[..frac_digits.len().min(MAX_FRACTION_DIGITS as usize)];
        if let (Some(n), false) = (nanos, frac_digits.is_empty()) {
            let numerator: u128 = frac_digits.parse().unwrap_or(0);
            let denominator = 10u128.pow(frac_digits.len() as u32);
            nanos = n.checked_add(numerator * per_unit / denominator);
        }
        total = match nanos.and_then(|n| total.checked_add(n)) {
            Some(t) if t <= MAX_NANOS => t,
            _ => return fail("out of range"),
        };
        rest = after_unit;
    }
    if negative && total != 0 {
        return fail("negative durations are not allowed");
    }
    let secs = (total / 1_000_000_000) as u64;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_what_go_parses() {
        let h = 3600;
        assert_eq!(ok("336h"), Duration::from_secs(336 * h));
        assert_eq!(ok("1h30m"), Duration::from_secs(h + 1800));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(h + 1800));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("1h1m1s1ms1us1ns"), Duration::new(h + 61, 1_001_001));
        assert_eq!(ok("2\u{b5}s"), Duration::from_micros(2));
        assert_eq!(ok("2\u{3bc}s"), Duration::from_micros(2));
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
        assert_eq!(ok("0.123456789123s"), Duration::new(0, 123_456_789));
        assert_eq!(ok("5m5m"), Duration::from_secs(600));
        assert_eq!(ok("2562047h"), Duration::from_secs(2_562_047 * h));
    }

    #[test]
    fn rejects_what_go_rejects() {
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
            "-1h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse("7d").unwrap_err().contains("unknown unit \"d\""));
        assert!(parse("-5s").unwrap_err().contains("negative"));
    }
}
