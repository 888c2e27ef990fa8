//! Checks on single values that BuildKit applies to instruction arguments:
//! stage names, EXPOSE ports, STOPSIGNAL, USER, `--chmod`, `--checksum`.
//! Each returns the message only; the caller attaches the line.

use std::sync::LazyLock;

use regex::Regex;

static STAGE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9\-_.]*$").expect("static regex is valid"));

/// A stage name after lowercasing must match `^[a-z][a-z0-9-_.]*$`.
pub(crate) fn stage_name(name: &str) -> Result<(), String> {
    if STAGE_NAME.is_match(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
        ))
    }
}

/// One EXPOSE word: `port`, `port/proto` or `start-end[/proto]`, proto one of
/// tcp, udp, sctp.
pub(crate) fn port_spec(spec: &str) -> Result<(), String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, "tcp"),
    };
    if !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {ports}"))
    };
    match ports.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (port(start)?, port(end)?);
            if end < start {
                return Err(format!(
                    "invalid range specified for containerPort: {ports}"
                ));
            }
        }
        None => {
            port(ports)?;
        }
    }
    Ok(())
}

/// Linux signal names as `moby/sys/signal` knows them, without `SIG`.
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// STOPSIGNAL: a number 1..=64, or a name with or without `SIG`, including
/// `RTMIN+n` (n 1..=15) and `RTMAX-n` (n 1..=14).
pub(crate) fn stop_signal(sig: &str) -> Result<(), String> {
    let invalid = || format!("Invalid signal: {sig}");
    if let Ok(n) = sig.parse::<i64>() {
        return if (1..=64).contains(&n) {
            Ok(())
        } else {
            Err(invalid())
        };
    }
    let upper = sig.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        return Ok(());
    }
    let offset = |rest: &str, max: u8| rest.parse::<u8>().is_ok_and(|n| (1..=max).contains(&n));
    if let Some(rest) = name.strip_prefix("RTMIN+") {
        if offset(rest, 15) {
            return Ok(());
        }
    }
    if let Some(rest) = name.strip_prefix("RTMAX-") {
        if offset(rest, 14) {
            return Ok(());
        }
    }
    Err(invalid())
}

/// USER: `user[:group]`, neither part empty.
pub(crate) fn user_spec(user: &str) -> Result<(), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() || g.is_some_and(str::is_empty) {
        return Err(format!("invalid user {user:?}: expected user[:group]"));
    }
    Ok(())
}

static SYMBOLIC_MODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[ugoa]*[-+=]([rwxXst]*|[ugo])(,[ugoa]*[-+=]([rwxXst]*|[ugo]))*$")
        .expect("static regex is valid")
});

/// `--chmod`: octal up to 7777, or chmod(1)'s symbolic form (`u+x,go-w`).
pub(crate) fn chmod(mode: &str) -> Result<(), String> {
    let octal_ok = !mode.is_empty() && u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o7777);
    if octal_ok || SYMBOLIC_MODE.is_match(mode) {
        Ok(())
    } else {
        Err(format!(
            "invalid chmod parameter {mode:?}: expected an octal mode or a symbolic one like u+x"
        ))
    }
}

/// `ADD --checksum`: `sha256:<64 hex>` (sha384/sha512 alike), or a Git commit
/// hash (40 or 64 hex digits) for Git sources.
pub(crate) fn checksum(sum: &str) -> Result<(), String> {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = match sum.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha384", h)) => hex(h, 96),
        Some(("sha512", h)) => hex(h, 128),
        Some(_) => false,
        None => hex(sum, 40) || hex(sum, 64),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid checksum {sum:?}: expected sha256:<hex> or a Git commit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names() {
        for ok in ["build", "a", "go-1.21_x", "b2"] {
            assert!(stage_name(ok).is_ok(), "{ok}");
        }
        for bad in ["1build", "-a", "a/b", "a b", "", "a:b"] {
            assert!(stage_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        for ok in [
            "80",
            "80/tcp",
            "53/udp",
            "9/sctp",
            "8000-8010",
            "8000-8010/UDP",
            "0",
            "65535",
        ] {
            assert!(port_spec(ok).is_ok(), "{ok}");
        }
        assert_eq!(port_spec("80/icmp").unwrap_err(), "invalid proto: icmp");
        assert_eq!(
            port_spec("http").unwrap_err(),
            "invalid containerPort: http"
        );
        assert_eq!(
            port_spec("70000").unwrap_err(),
            "invalid containerPort: 70000"
        );
        assert_eq!(
            port_spec("90-80").unwrap_err(),
            "invalid range specified for containerPort: 90-80"
        );
        assert!(port_spec("").is_err());
    }

    #[test]
    fn signals() {
        for ok in [
            "SIGTERM",
            "TERM",
            "term",
            "15",
            "SIGRTMIN+3",
            "RTMAX-1",
            "SIGKILL",
            "9",
            "64",
        ] {
            assert!(stop_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["0", "65", "-1", "SIGFOO", "RTMIN+16", "", "SIG"] {
            assert_eq!(
                stop_signal(bad).unwrap_err(),
                format!("Invalid signal: {bad}")
            );
        }
    }

    #[test]
    fn users() {
        assert!(user_spec("app").is_ok());
        assert!(user_spec("1000:1000").is_ok());
        assert!(user_spec("").is_err());
        assert!(user_spec(":g").is_err());
        assert!(user_spec("u:").is_err());
    }

    #[test]
    fn chmods() {
        for ok in ["755", "0644", "7777", "u+x", "go-w", "a=rX", "u+x,g-w"] {
            assert!(chmod(ok).is_ok(), "{ok}");
        }
        for bad in ["", "999", "17777", "rwx", "u+q"] {
            assert!(chmod(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksums() {
        assert!(checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(checksum(&"b".repeat(40)).is_ok());
        assert!(checksum("sha256:abc").is_err());
        assert!(checksum("md5:abc").is_err());
    }
}
