//! Parser directives (`# syntax=`, `# escape=`, `# check=`): only at the very
//! top of the file, case-insensitive names, each at most once.

use std::sync::LazyLock;

use regex::Regex;

use super::ParseErrorKind;
use crate::ast::Directives;

/// `# name = value`; the whitespace class is Go's ASCII `\s` (no `\v`).
static DIRECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$")
        .expect("directive pattern is valid")
});

/// Watches lines from the top of the file until the first one that is not a
/// known directive.
#[derive(Debug, Default)]
pub(super) struct DirectiveScanner {
    done: bool,
    found: Directives,
    seen_escape: bool,
}

impl DirectiveScanner {
    /// The escape character in force.
    pub(super) fn escape(&self) -> char {
        self.found.escape
    }

    /// The directives found.
    pub(super) fn into_directives(self) -> Directives {
        self.found
    }

    /// Looks at one line (newline stripped). Directive scanning stops at the
    /// first line that is not a directive of a known name.
    pub(super) fn scan_line(&mut self, line: &str) -> Result<(), ParseErrorKind> {
        if self.done {
            return Ok(());
        }
        let Some(caps) = DIRECTIVE.captures(line) else {
            self.done = true;
            return Ok(());
        };
        let name = caps[1].to_ascii_lowercase();
        let value = caps[2].to_string();
        let duplicate = ParseErrorKind::DuplicateDirective { name: name.clone() };
        match name.as_str() {
            "escape" => {
                if self.seen_escape {
                    return Err(duplicate);
                }
                self.seen_escape = true;
                self.found.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err(ParseErrorKind::InvalidEscape { value }),
                };
            }
            "syntax" => set_once(&mut self.found.syntax, value, duplicate)?,
            "check" => set_once(&mut self.found.check, value, duplicate)?,
            _ => self.done = true,
        }
        Ok(())
    }
}

fn set_once(
    slot: &mut Option<String>,
    value: String,
    duplicate: ParseErrorKind,
) -> Result<(), ParseErrorKind> {
    if slot.is_some() {
        return Err(duplicate);
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_directives_case_insensitively() {
        let mut d = DirectiveScanner::default();
        d.scan_line("# SYNTAX = docker/dockerfile:1  ").unwrap();
        d.scan_line("#escape=`").unwrap();
        d.scan_line("# check=skip=all").unwrap();
        let found = d.into_directives();
        assert_eq!(found.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(found.escape, '`');
        assert_eq!(found.check.as_deref(), Some("skip=all"));
    }

    #[test]
    fn unknown_directive_ends_scanning() {
        let mut d = DirectiveScanner::default();
        d.scan_line("# foo=bar").unwrap();
        d.scan_line("# escape=`").unwrap();
        assert_eq!(d.escape(), '\\');
    }

    #[test]
    fn duplicate_is_an_error() {
        let mut d = DirectiveScanner::default();
        d.scan_line("# syntax=a").unwrap();
        assert_eq!(
            d.scan_line("# syntax=b"),
            Err(ParseErrorKind::DuplicateDirective {
                name: "syntax".into()
            })
        );
    }

    #[test]
    fn invalid_escape_is_an_error() {
        let mut d = DirectiveScanner::default();
        assert_eq!(
            d.scan_line("# escape=x"),
            Err(ParseErrorKind::InvalidEscape { value: "x".into() })
        );
    }
}
