//! Patterns of `${v#p}`, `${v%p}` and `${v/p/r}`, and the character classes
//! the lexer shares with Go.
//!
//! BuildKit turns the shell pattern into a regular expression: `*` is any
//! run of characters (shortest or longest), `?` one character, and a
//! backslash escapes `*`, `?` or `\` (before `}` or `/` it is dropped, having
//! only protected the delimiter). Bracket expressions are *not* supported by
//! BuildKit: `[` and `]` match themselves, and so they do here, so that a
//! Dockerfile expands the same under kiln as under `docker build`.
//!
//! The replacement text of `${v/p/r}` goes through Go's `Regexp.Expand`,
//! where `$0`/`${0}` is the matched text, `$$` a dollar, any other reference
//! empty (the pattern has no groups), and a malformed `$` literal; that small
//! rule is written out here because the `regex` crate's expansion differs in
//! which names it accepts.

use std::sync::LazyLock;

use regex::Regex;

/// Why a pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A backslash followed by something other than `*`, `?` or `\`.
    #[error("invalid escape '\\{0}'")]
    InvalidEscape(String),
    /// The translated expression was rejected (for example, too large).
    #[error("{0}")]
    Regex(String),
}

/// Translates a shell pattern to a regular expression. `greedy` makes `*`
/// match the longest run; `anchored` matches only at the start.
pub(crate) fn shell_pattern_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<Regex, PatternError> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => match chars.peek() {
                // The escape only protected a delimiter of `${...}`.
                Some('}') | Some('/') => {}
                Some(&escaped @ ('*' | '?' | '\\')) => {
                    chars.next();
                    out.push('\\');
                    out.push(escaped);
                }
                Some(&other) => return Err(PatternError::InvalidEscape(other.to_string())),
                None => return Err(PatternError::InvalidEscape(String::new())),
            },
            literal => {
                let mut buf = [0u8; 4];
                out.push_str(&regex::escape(literal.encode_utf8(&mut buf)));
            }
        }
    }
    Regex::new(&out).map_err(|err| PatternError::Regex(err.to_string()))
}

/// `${value#pattern}` / `${value##pattern}`: removes the shortest (longest
/// when `greedy`) matching prefix.
pub(crate) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternError> {
    let re = shell_pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(found) => value[found.end()..].to_string(),
        None => value.to_string(),
    })
}

/// `${value%pattern}` / `${value%%pattern}`: removes the shortest (longest
/// when `greedy`) matching suffix. A regex finds leftmost matches only, so
/// both the value and the pattern are reversed and the prefix rule applied.
pub(crate) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternError> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern while keeping each `\x` escape pair in order
/// (`a\*c` becomes `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; chars.len()];
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        let target = last - i;
        if chars[i] == '\\' && i != last {
            out[target - 1] = '\\';
            out[target] = chars[i + 1];
            i += 2;
        } else {
            out[target] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `${value/pattern/replacement}` (first match) or `${value//...}` (all).
pub(crate) fn replace(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
) -> Result<String, PatternError> {
    let re = shell_pattern_regex(pattern, true, false)?;
    let mut out = String::with_capacity(value.len());
    let mut last_end = 0;
    for found in re.find_iter(value) {
        out.push_str(&value[last_end..found.start()]);
        expand_replacement(&mut out, replacement, found.as_str());
        last_end = found.end();
        if !all {
            break;
        }
    }
    out.push_str(&value[last_end..]);
    Ok(out)
}

/// Go's `Regexp.Expand` for an expression without groups: `$0` and `${0}`
/// give the match, `$$` a dollar, any other well-formed reference nothing,
/// and a malformed one keeps its `$`.
fn expand_replacement(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match parse_reference(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Reads `name` or `{name}` (letters, digits, `_`); returns it and the rest.
fn parse_reference(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let len: usize = body
        .chars()
        .take_while(|&c| is_go_letter(c) || is_go_digit(c) || c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        after.strip_prefix('}').map(|after| (name, after))
    } else {
        Some((name, after))
    }
}

static LETTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A\p{L}\z").expect("static letter class is valid"));
static DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A\p{Nd}\z").expect("static digit class is valid"));

/// Go's `unicode.IsLetter`: general category L.
pub(crate) fn is_go_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    let mut buf = [0u8; 4];
    LETTER.is_match(c.encode_utf8(&mut buf))
}

/// Go's `unicode.IsDigit`: general category Nd (decimal digits of any script).
pub(crate) fn is_go_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let mut buf = [0u8; 4];
    DIGIT.is_match(c.encode_utf8(&mut buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_wildcards_and_escapes_metacharacters() {
        assert_eq!(
            shell_pattern_regex("*", true, true).unwrap().as_str(),
            "^.*"
        );
        assert_eq!(
            shell_pattern_regex("*", false, false).unwrap().as_str(),
            ".*?"
        );
        assert_eq!(shell_pattern_regex("?", true, true).unwrap().as_str(), "^.");
        assert_eq!(
            shell_pattern_regex(r"\*", true, true).unwrap().as_str(),
            r"^\*"
        );
        let re = shell_pattern_regex(r"(()[]{\}^$.\*\?|\\", true, true).unwrap();
        assert!(re.is_match(r"(()[]{}^$.*?|\"));
        assert!(!re.is_match(r"(()[]{}^$.x?|\"));
    }

    #[test]
    fn rejects_bad_escapes() {
        for bad in [r"\", r"\x", r"\\\"] {
            assert!(shell_pattern_regex(bad, true, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn brackets_are_literal_as_in_buildkit() {
        assert_eq!(trim_prefix("[ab]", "[ab]x", false).unwrap(), "x");
        assert_eq!(trim_prefix("[ab]", "ax", false).unwrap(), "ax");
    }

    #[test]
    fn reverses_patterns_keeping_escapes() {
        assert_eq!(reverse_pattern(r"a\*c"), r"c\*a");
        assert_eq!(reverse_pattern(r"\\\ab"), r"b\a\\");
        assert_eq!(reverse_pattern(r"ab\"), r"\ba");
        assert_eq!(reverse_pattern("👽\\🚀🖖"), "🖖\\🚀👽");
        assert_eq!(reverse_pattern(""), "");
    }

    #[test]
    fn trims_shortest_and_longest() {
        assert_eq!(trim_prefix("*x", "xxyy", false).unwrap(), "xyy");
        assert_eq!(trim_prefix("*x", "xxyy", true).unwrap(), "yy");
        assert_eq!(trim_suffix("y*", "xxyy", false).unwrap(), "xxy");
        assert_eq!(trim_suffix("y*", "xxyy", true).unwrap(), "xx");
        assert_eq!(trim_suffix(r"\**\*", "a***yy*", true).unwrap(), "a");
    }

    #[test]
    fn replaces_first_or_all_with_go_template_rules() {
        assert_eq!(
            replace("/a/foo/b/c.txt", "/?/", "/", false).unwrap(),
            "/foo/b/c.txt"
        );
        assert_eq!(
            replace("/a/foo/b/c.txt", "/?/", "/", true).unwrap(),
            "/foo/c.txt"
        );
        assert_eq!(replace("xxyy", "", "ww", false).unwrap(), "wwxxyy");
        assert_eq!(replace("abc", "b", "[$0]", false).unwrap(), "a[b]c");
        assert_eq!(replace("abc", "b", "${0}$$", false).unwrap(), "ab$c");
        assert_eq!(replace("abc", "b", "$1x$", false).unwrap(), "a$c");
        assert_eq!(replace("abc", "b", "${x", false).unwrap(), "a${xc");
    }

    #[test]
    fn classifies_like_go() {
        assert!(is_go_letter('한'));
        assert!(is_go_letter('é'));
        assert!(!is_go_letter('Ⅻ'), "letter numbers are not letters in Go");
        assert!(is_go_digit('٣'));
        assert!(!is_go_digit('²'), "superscripts are not decimal digits");
        assert!(!is_go_letter('_'));
    }
}
