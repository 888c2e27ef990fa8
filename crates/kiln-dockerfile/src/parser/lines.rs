//! Physical-line rules: comments, leading whitespace, line continuations.

use super::directives::DirectiveScanner;
use super::ParseErrorKind;

/// The line without its trailing `\r`/`\n` characters.
pub(super) fn trim_newline(raw: &str) -> &str {
    raw.trim_end_matches(['\r', '\n'])
}

/// True when the line, ignoring leading whitespace, starts with `#`.
pub(super) fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

/// For a comment line, its text: everything after the first byte, trimmed
/// (BuildKit drops the first byte even when the `#` is indented). `None` for
/// other lines.
pub(super) fn comment_text(raw: &str) -> Option<String> {
    if !is_comment(raw) {
        return None;
    }
    let rest = String::from_utf8_lossy(&raw.as_bytes()[1..]);
    Some(rest.trim().to_string())
}

/// Prepares one physical line: strips the newline (and, for the first line of
/// an instruction, leading whitespace), feeds the directive scanner, and
/// blanks the line if it is a comment.
pub(super) fn process_line<'a>(
    directives: &mut DirectiveScanner,
    raw: &'a str,
    strip_leading_whitespace: bool,
) -> Result<&'a str, ParseErrorKind> {
    let mut token = trim_newline(raw);
    if strip_leading_whitespace {
        token = token.trim_start();
    }
    directives.scan_line(token)?;
    Ok(if token.starts_with('#') { "" } else { token })
}

/// Removes a trailing line-continuation escape (plus trailing blanks after
/// it). Returns the line and whether the instruction ends here.
///
/// The escape continues the line unless it is itself escaped (`\\` at the
/// end is a literal backslash); an escape alone on its line continues too.
pub(super) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let without_blanks = line.trim_end_matches([' ', '\t']);
    let Some(before) = without_blanks.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() {
        return ("", false);
    }
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_is_removed_with_trailing_blanks() {
        assert_eq!(trim_continuation("echo a \\  \t", '\\'), ("echo a ", false));
    }

    #[test]
    fn escaped_escape_is_not_a_continuation() {
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
    }

    #[test]
    fn lone_escape_continues() {
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("`", '`'), ("", false));
    }

    #[test]
    fn backslash_is_plain_with_backtick_escape() {
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
    }

    #[test]
    fn comment_detection_ignores_indentation() {
        assert!(is_comment("   # hi\n"));
        assert!(!is_comment("RUN # hi\n"));
        assert_eq!(comment_text("# hello \r\n").as_deref(), Some("hello"));
        assert_eq!(comment_text("RUN x"), None);
    }

    #[test]
    fn process_line_blanks_comments_and_trims() {
        let mut d = DirectiveScanner::default();
        assert_eq!(process_line(&mut d, "  RUN x\r\n", true).unwrap(), "RUN x");
        assert_eq!(process_line(&mut d, "  RUN x\n", false).unwrap(), "  RUN x");
        assert_eq!(process_line(&mut d, "# c\n", true).unwrap(), "");
    }
}
