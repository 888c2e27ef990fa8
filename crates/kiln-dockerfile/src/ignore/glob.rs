//! One `.dockerignore` pattern: syntax check and matcher, following
//! moby/patternmatcher's `Pattern.compile` and `Pattern.match`.
//!
//! `*` is any run without `/`, `?` one character other than `/`, `**` any
//! number of directories (a leading `**/` also matches at the top), `[...]`
//! a class, `\` escapes the next character. Patterns without wildcards are
//! compared as strings, `dir/**` as a prefix and `**/name` as a suffix, as
//! Docker does; the rest become a regular expression.

use regex::Regex;

use super::goregex::{self, GoRegexError};

/// Why a pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlobError {
    /// Rejected by the `filepath.Match` syntax rules Docker checks first
    /// (unclosed `[`, empty class, `-` or `]` misplaced, trailing `\`).
    #[error("syntax error in pattern")]
    Syntax,
    /// The expression built from it is invalid (for example `[z-a]`).
    #[error("invalid pattern: {0}")]
    Regex(#[from] GoRegexError),
    /// The regex engine refused the translated expression (too large, or an
    /// unknown `\p{...}` class name).
    #[error("regular expression rejected: {0}")]
    Engine(String),
}

/// How a compiled pattern is tested.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// The path equals the pattern.
    Exact(String),
    /// The path starts with this (the pattern was `prefix**`).
    Prefix(String),
    /// The path ends with this (the pattern was `**suffix`); when the suffix
    /// starts with `/`, the path may also equal the rest.
    Suffix(String),
    /// Everything else.
    Regex(Regex),
}

impl Matcher {
    /// Compiles a cleaned pattern (without its `!`).
    pub(crate) fn compile(pattern: &str) -> Result<Matcher, GlobError> {
        crate::go::filepath_match::check_syntax(pattern).map_err(|_| GlobError::Syntax)?;
        let chars: Vec<char> = pattern.chars().collect();
        let mut regex = String::from("^");
        let mut kind = Kind::Exact;
        let mut i = 0;
        let mut step = 0;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    // `**/` is read as `**`.
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        if kind == Kind::Exact {
                            kind = Kind::Prefix;
                        } else {
                            regex.push_str(".*");
                            kind = Kind::Regex;
                        }
                    } else {
                        regex.push_str("(.*/)?");
                        kind = Kind::Regex;
                    }
                    if step == 0 {
                        kind = Kind::Suffix;
                    }
                }
                '*' => {
                    regex.push_str("[^/]*");
                    kind = Kind::Regex;
                }
                '?' => {
                    regex.push_str("[^/]");
                    kind = Kind::Regex;
                }
                '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                    regex.push('\\');
                    regex.push(ch);
                }
                '\\' => match chars.get(i) {
                    Some(&next) => {
                        i += 1;
                        regex.push('\\');
                        regex.push(next);
                        kind = Kind::Regex;
                    }
                    None => regex.push('\\'),
                },
                '[' | ']' => {
                    regex.push(ch);
                    kind = Kind::Regex;
                }
                other => regex.push(other),
            }
            step += 1;
        }
        Ok(match kind {
            Kind::Exact => Matcher::Exact(pattern.to_string()),
            Kind::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_string()),
            Kind::Suffix => Matcher::Suffix(pattern[2..].to_string()),
            Kind::Regex => {
                regex.push('$');
                let translated = goregex::translate(&regex)?;
                let re =
                    Regex::new(&translated).map_err(|err| GlobError::Engine(err.to_string()))?;
                Matcher::Regex(re)
            }
        })
    }

    /// Whether `path` (cleaned, `/`-separated) matches.
    pub(crate) fn is_match(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(text) => path == text,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Matcher::Regex(re) => re.is_match(path),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(pattern: &str) -> &'static str {
        match Matcher::compile(pattern).unwrap() {
            Matcher::Exact(_) => "exact",
            Matcher::Prefix(_) => "prefix",
            Matcher::Suffix(_) => "suffix",
            Matcher::Regex(_) => "regex",
        }
    }

    #[test]
    fn chooses_the_match_kind_like_docker() {
        let cases = [
            ("*", "regex"),
            ("file*", "regex"),
            ("a*/b", "regex"),
            ("**", "suffix"),
            ("**/**", "regex"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "regex"),
            ("**/dir2/**", "regex"),
            ("**file", "suffix"),
            ("**/file*txt", "regex"),
            ("a[b-d]e", "regex"),
            (".*", "regex"),
            ("abc.def", "exact"),
            ("abc?def", "regex"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
        ];
        for (pattern, kind) in cases {
            assert_eq!(kind_of(pattern), kind, "{pattern}");
        }
    }

    #[test]
    fn syntax_follows_filepath_match() {
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
        ] {
            assert_eq!(
                Matcher::compile(bad).err(),
                Some(GlobError::Syntax),
                "{bad}"
            );
        }
        for good in [r"[\]a]", r"[\-]", r"[x\-]", r"[\-x]", "ab[^e-g]", "[a-ζ]*"] {
            assert!(Matcher::compile(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn ranges_go_rejects_fail_at_compile() {
        // Passes filepath.Match's checks, but Go's regexp rejects `l-O`.
        assert!(matches!(
            Matcher::compile("[Local-Only]/"),
            Err(GlobError::Regex(_))
        ));
    }
}
