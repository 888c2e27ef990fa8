//! Go's `filepath.Match` on Unix: the wildcards of COPY/ADD sources, matched
//! one path component at a time, and the syntax every `.dockerignore`
//! pattern must pass before Docker uses it.
//!
//! Hand-written rather than taken from a glob crate: both follow Go's
//! `filepath.Match` exactly (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes, no
//! `**`, `*` never crosses `/`), and the glob crates implement shell or
//! gitignore dialects that differ in these corners.

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed wildcard pattern {pattern:?}")]
pub struct BadPattern {
    /// The pattern as written.
    pub pattern: String,
}

/// True when `s` contains a character that makes it a pattern (`*`, `?`, `[`, `\`).
pub fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// Matches one path component `name` against `pattern` with Go `filepath.Match`
/// semantics. A malformed pattern is an error even when it could not match.
pub fn match_component(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    // Validate the whole pattern first so errors never depend on the name.
    check_syntax(pattern)?;
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    Ok(match_from(&p, &n))
}

/// Checks `pattern` against `filepath.Match`'s syntax rules: `\` must escape
/// something; a class is `[`, an optional `^`, one or more items `c` or
/// `c-c` (where `c` is any character but `-` and `]`, or `\` and any
/// character, and something follows it), then `]`. A range whose ends are
/// reversed (`[z-a]`) is not an error: it matches nothing, as in Go.
pub fn check_syntax(pattern: &str) -> Result<(), BadPattern> {
    let bad = || BadPattern {
        pattern: pattern.to_string(),
    };
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                chars.next().ok_or_else(bad)?;
            }
            '[' => {
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                let mut items = 0;
                loop {
                    if items > 0 && chars.peek() == Some(&']') {
                        chars.next();
                        break;
                    }
                    class_item_char(&mut chars).ok_or_else(bad)?;
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        class_item_char(&mut chars).ok_or_else(bad)?;
                    }
                    items += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One end of a class item (Go's `getEsc`); something must follow it.
fn class_item_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<()> {
    match chars.next() {
        None | Some('-') | Some(']') => return None,
        Some('\\') => {
            chars.next()?;
        }
        Some(_) => {}
    }
    chars.peek().map(|_| ())
}

fn match_from(p: &[char], n: &[char]) -> bool {
    // Iterative matcher with single-star backtracking: `*` is the only
    // construct that can match a variable length.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Ok((true, next)) = parse_class(p, pi, Some(n[ni])) {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                '\\' => {}
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Parses the class starting at `p[start] == '['`; returns whether `c` (if
/// given) is in it and the index after the closing `]`.
fn parse_class(p: &[char], start: usize, c: Option<char>) -> Result<(bool, usize), ()> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i).ok_or(())?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let (lo, after) = class_char(p, i)?;
        let (hi, after) = if p.get(after) == Some(&'-') && p.get(after + 1) != Some(&']') {
            class_char(p, after + 1)?
        } else {
            (lo, after)
        };
        if let Some(c) = c {
            if lo <= c && c <= hi {
                matched = true;
            }
        }
        i = after;
    }
    Ok((matched != negated, i))
}

fn class_char(p: &[char], i: usize) -> Result<(char, usize), ()> {
    match p.get(i) {
        Some('\\') => p.get(i + 1).map(|&c| (c, i + 2)).ok_or(()),
        Some('-') | Some(']') | None => Err(()),
        Some(&c) => Ok((c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_cases() {
        // Cases from Go's path/filepath match_test.go semantics.
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*/b", "abc/b", true),
            ("a*b*c*d*e*", "axbxcxdxe", true),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("*x", "xxx", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "z", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(match_component(p, n).unwrap(), *want, "{p} vs {n}");
        }
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for p in [
            "[", "[^", "[^bc", "a[", "[a-", "[-]", "[x-]", "[-x]", "a\\", "\\", "[]a]", "[a-b-c]",
        ] {
            assert!(match_component(p, "a").is_err(), "{p}");
            assert!(check_syntax(p).is_err(), "{p}");
        }
        for good in [r"[\]a]", r"[\-]", r"[x\-]", r"[\-x]", "ab[^e-g]", "[a-ζ]*"] {
            assert!(check_syntax(good).is_ok(), "{good}");
        }
        // Reversed ends are not malformed in Go: the class matches nothing.
        assert_eq!(match_component("[z-a]", "m"), Ok(false));
    }

    #[test]
    fn meta_detection() {
        assert!(has_meta("*.txt"));
        assert!(has_meta("a[bc]"));
        assert!(!has_meta("plain/file.txt"));
    }
}
