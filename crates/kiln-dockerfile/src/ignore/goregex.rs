//! Reads the regular expression Docker's pattern matcher builds (Go RE2
//! syntax) and writes an equivalent one for the `regex` crate.
//!
//! Docker hands `[...]` classes and `\x` escapes from the user's pattern
//! straight to Go's regexp. The two dialects differ inside classes (the
//! `regex` crate has nested classes and `&&`, `--`, `~~` operators; Go reads
//! `[` there as a plain character) and in a few escapes (`\d`, `\w`, `\s`,
//! `\b` are ASCII in Go; Go has octal and `\Q...\E`). So the Go text is
//! parsed here with Go's rules and every literal re-emitted as `\x{..}`.

use std::fmt::Write as _;

/// Why the Go expression was rejected; Go rejects the same inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoRegexError {
    /// `[` without its `]`.
    #[error("missing closing ]")]
    MissingBracket,
    /// A range whose end sorts before its start, like `[z-a]`.
    #[error("invalid character class range {0}")]
    BadRange(String),
    /// An escape Go does not know.
    #[error("invalid escape sequence \\{0}")]
    BadEscape(String),
    /// `[:name:]` with an unknown name.
    #[error("invalid character class {0}")]
    BadClass(String),
}

/// Translates a Go regular expression, as built by the pattern compiler, to
/// `regex` crate syntax.
pub(crate) fn translate(go: &str) -> Result<String, GoRegexError> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '\\' => {
                let Some(&next) = chars.get(i) else {
                    return Err(GoRegexError::BadEscape(String::new()));
                };
                if next == 'Q' {
                    // `\Q...\E`: everything literal.
                    i += 1;
                    while i < chars.len() {
                        if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                            i += 2;
                            break;
                        }
                        push_literal(&mut out, chars[i]);
                        i += 1;
                    }
                    continue;
                }
                if let Some((class, used)) = perl_or_unicode_class(&chars[i..]) {
                    out.push_str(&class);
                    i += used;
                    continue;
                }
                match next {
                    'A' => out.push_str(r"\A"),
                    'z' => out.push_str(r"\z"),
                    'b' => out.push_str(r"(?-u:\b)"),
                    'B' => out.push_str(r"(?-u:\B)"),
                    _ => {
                        let (lit, used) = escape_char(&chars[i..])?;
                        push_literal(&mut out, lit);
                        i += used;
                        continue;
                    }
                }
                i += 1;
            }
            '[' => {
                let (class, used) = class(&chars[i..])?;
                out.push_str(&class);
                i += used;
            }
            '(' | ')' | '|' | '*' | '+' | '?' | '.' | '^' | '$' => out.push(ch),
            other => push_literal(&mut out, other),
        }
    }
    Ok(out)
}

fn push_literal(out: &mut String, ch: char) {
    let _ = write!(out, "\\x{{{:X}}}", ch as u32);
}

/// `\d \D \s \S \w \W` (ASCII in Go) and `\pX \p{Name} \PX \P{Name}`, at the
/// character after the backslash. Returns the translation and the number of
/// characters used.
fn perl_or_unicode_class(rest: &[char]) -> Option<(String, usize)> {
    let ascii = |negated: bool, set: &str| {
        let caret = if negated { "^" } else { "" };
        format!("[{caret}{set}]")
    };
    match rest.first()? {
        'd' => Some((ascii(false, "0-9"), 1)),
        'D' => Some((ascii(true, "0-9"), 1)),
        's' => Some((ascii(false, r"\t\n\x0C\r "), 1)),
        'S' => Some((ascii(true, r"\t\n\x0C\r "), 1)),
        'w' => Some((ascii(false, "0-9A-Za-z_"), 1)),
        'W' => Some((ascii(true, "0-9A-Za-z_"), 1)),
        &p @ ('p' | 'P') => {
            if rest.get(1) == Some(&'{') {
                let close = rest.iter().position(|&c| c == '}')?;
                let name: String = rest[2..close].iter().collect();
                Some((format!("\\{p}{{{name}}}"), close + 1))
            } else {
                let name = rest.get(1)?;
                Some((format!("\\{p}{{{name}}}"), 2))
            }
        }
        _ => None,
    }
}

/// A single escaped character after a backslash (Go's `parseEscape`):
/// punctuation, octal, `\xHH`, `\x{H...}`, or `\a \f \n \r \t \v`.
fn escape_char(rest: &[char]) -> Result<(char, usize), GoRegexError> {
    let bad = |used: usize| GoRegexError::BadEscape(rest[..used.min(rest.len())].iter().collect());
    let Some(&c) = rest.first() else {
        return Err(bad(0));
    };
    let octal = |c: char| ('0'..='7').contains(&c);
    match c {
        c if c.is_ascii_punctuation() => Ok((c, 1)),
        '1'..='7' if !rest.get(1).is_some_and(|&n| octal(n)) => Err(bad(1)),
        '0'..='7' => {
            let mut value = c as u32 - '0' as u32;
            let mut used = 1;
            while used < 3 && rest.get(used).is_some_and(|&n| octal(n)) {
                value = value * 8 + (rest[used] as u32 - '0' as u32);
                used += 1;
            }
            Ok((char::from_u32(value).ok_or_else(|| bad(used))?, used))
        }
        'x' => {
            if rest.get(1) == Some(&'{') {
                let close = rest.iter().position(|&c| c == '}').ok_or_else(|| bad(2))?;
                let hex: String = rest[2..close].iter().collect();
                let value = u32::from_str_radix(&hex, 16).map_err(|_| bad(close + 1))?;
                let ch = char::from_u32(value).ok_or_else(|| bad(close + 1))?;
                Ok((ch, close + 1))
            } else {
                let hex: String = rest.iter().skip(1).take(2).collect();
                if hex.chars().count() != 2 {
                    return Err(bad(3));
                }
                let value = u32::from_str_radix(&hex, 16).map_err(|_| bad(3))?;
                Ok((char::from_u32(value).ok_or_else(|| bad(3))?, 3))
            }
        }
        'a' => Ok(('\x07', 1)),
        'f' => Ok(('\x0C', 1)),
        'n' => Ok(('\n', 1)),
        'r' => Ok(('\r', 1)),
        't' => Ok(('\t', 1)),
        'v' => Ok(('\x0B', 1)),
        _ => Err(bad(1)),
    }
}

const POSIX_CLASSES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// A class after its `[`, read with Go's rules (`]` first is literal, `-`
/// allowed anywhere, `[:name:]`, Perl and Unicode classes, escapes).
fn class(rest: &[char]) -> Result<(String, usize), GoRegexError> {
    let mut i = 0;
    let mut out = String::from("[");
    if rest.first() == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&ch) = rest.get(i) else {
            return Err(GoRegexError::MissingBracket);
        };
        if ch == ']' && !first {
            out.push(']');
            return Ok((out, i + 1));
        }
        first = false;
        if ch == '[' && rest.get(i + 1) == Some(&':') {
            if let Some(len) = rest[i + 2..].windows(2).position(|pair| pair == [':', ']']) {
                let name: String = rest[i + 2..i + 2 + len].iter().collect();
                let bare = name.strip_prefix('^').unwrap_or(&name);
                if !POSIX_CLASSES.contains(&bare) {
                    return Err(GoRegexError::BadClass(format!("[:{name}:]")));
                }
                let _ = write!(out, "[:{name}:]");
                i += len + 4;
                continue;
            }
        }
        if ch == '\\' {
            if let Some((class, used)) = perl_or_unicode_class(&rest[i + 1..]) {
                out.push_str(&class);
                i += used + 1;
                continue;
            }
        }
        let (lo, used) = class_char(&rest[i..])?;
        i += used;
        let mut hi = lo;
        if rest.get(i) == Some(&'-') && rest.get(i + 1).is_some_and(|&c| c != ']') {
            let (end, used) = class_char(&rest[i + 1..])?;
            i += used + 1;
            if end < lo {
                return Err(GoRegexError::BadRange(format!("{lo}-{end}")));
            }
            hi = end;
        }
        push_literal(&mut out, lo);
        if hi != lo {
            out.push('-');
            push_literal(&mut out, hi);
        }
    }
}

fn class_char(rest: &[char]) -> Result<(char, usize), GoRegexError> {
    match rest.first() {
        None => Err(GoRegexError::MissingBracket),
        Some('\\') => escape_char(&rest[1..]).map(|(c, used)| (c, used + 1)),
        Some(&c) => Ok((c, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(go: &str, text: &str) -> bool {
        regex::Regex::new(&translate(go).unwrap())
            .unwrap()
            .is_match(text)
    }

    #[test]
    fn go_class_rules_hold() {
        // `[` inside a class is a plain character in Go.
        assert!(matches("^[[^/]*]$", "[^]"));
        assert!(matches("^[]a]$", "]"));
        assert!(matches("^[a-]$", "-"));
        assert!(matches("^[^b-d]$", "z"));
        assert!(!matches("^[^b-d]$", "c"));
        assert!(matches("^[[:digit:]x]$", "7"));
        assert!(matches(r"^[\d]$", "7"));
        assert!(!matches(r"^\d$", "٣"), "Go's \\d is ASCII only");
        assert!(matches(r"^a&&b~~c$", "a&&b~~c"));
    }

    #[test]
    fn go_escapes_hold() {
        assert!(matches(r"^\101$", "A"), "octal");
        assert!(matches(r"^\x41\x{42}$", "AB"));
        assert!(matches(r"^\Qa.b\E$", "a.b"));
        assert!(!matches(r"^\Qa.b\E$", "axb"));
        assert!(matches(r"^\*\.\t$", "*.\t"));
        assert!(matches(r"^a\b", "a-"));
        assert!(!matches(r"^a\B", "a-"));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert_eq!(translate("[abc"), Err(GoRegexError::MissingBracket));
        assert!(matches!(translate("[z-a]"), Err(GoRegexError::BadRange(_))));
        assert!(matches!(translate(r"\e"), Err(GoRegexError::BadEscape(_))));
        assert!(matches!(translate(r"\1"), Err(GoRegexError::BadEscape(_))));
        assert!(matches!(
            translate("[[:nope:]]"),
            Err(GoRegexError::BadClass(_))
        ));
    }
}
