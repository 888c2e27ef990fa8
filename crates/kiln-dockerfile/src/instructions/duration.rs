//! Go's `time.ParseDuration` (`1h30m`, `2.5s`, `300ms`), the syntax of the
//! HEALTHCHECK interval flags. Hand-written: the crates for human durations
//! (humantime and friends) accept a different grammar (spaces, `days`) and
//! reject Go forms such as `1.5h` or `1h-less` signs, so they would let through
//! Dockerfiles that BuildKit rejects and the other way round.

/// A parsed Go duration in nanoseconds (may be negative, as in Go).
pub(crate) fn parse_go_duration(text: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(end)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_end = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(30)];
            let frac: i128 = digits.parse().map_err(|_| invalid())?;
            value += frac * scale / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as i128 {
            return Err(invalid());
        }
        rest = after;
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn go_forms() {
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert_eq!(parse_go_duration("5s").unwrap(), 5 * S);
        assert_eq!(parse_go_duration("1h30m").unwrap(), 5400 * S);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5400 * S);
        assert_eq!(parse_go_duration("300ms").unwrap(), 300_000_000);
        assert_eq!(parse_go_duration(".5s").unwrap(), S / 2);
        assert_eq!(parse_go_duration("10us").unwrap(), 10_000);
        assert_eq!(parse_go_duration("10µs").unwrap(), 10_000);
        assert_eq!(parse_go_duration("-2s").unwrap(), -2 * S);
        assert_eq!(parse_go_duration("1m0.5s").unwrap(), 60 * S + S / 2);
    }

    #[test]
    fn bad_forms() {
        assert_eq!(
            parse_go_duration("").unwrap_err(),
            r#"time: invalid duration """#
        );
        assert_eq!(
            parse_go_duration("5").unwrap_err(),
            r#"time: missing unit in duration "5""#
        );
        assert_eq!(
            parse_go_duration("5d").unwrap_err(),
            r#"time: unknown unit "d" in duration "5d""#
        );
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("1 s").is_err());
        assert!(parse_go_duration("99999999999h").is_err());
    }
}
