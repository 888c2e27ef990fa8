//! Splits an instruction line into keyword, `--flags` and the argument text.

/// BuildKit's `reWhitespace`: the ASCII blanks that separate words.
pub(super) fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of [`is_blank`] characters, at most `limit` pieces (like
/// Go's `regexp.Split(s, n)`); `None` means no limit.
pub(super) fn split_blanks(s: &str, limit: Option<usize>) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        if limit.is_some_and(|n| parts.len() + 1 >= n) {
            break;
        }
        let Some(start) = rest.find(is_blank) else {
            break;
        };
        let after = &rest[start..];
        let end = after.find(|c| !is_blank(c)).unwrap_or(after.len());
        parts.push(&rest[..start]);
        rest = &after[end..];
    }
    parts.push(rest);
    parts
}

/// The keyword (as written), the flags, and the trimmed argument text.
pub(super) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let parts = split_blanks(line.trim(), Some(2));
    let keyword = parts[0].to_string();
    let (args, flags) = match parts.get(1) {
        Some(rest) => extract_builder_flags(rest),
        None => ("", Vec::new()),
    };
    (keyword, flags, args.trim().to_string())
}

#[derive(PartialEq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Takes leading `--flag[=value]` words off the argument text. Quotes and
/// `\` escapes inside flags are removed; a lone `--` ends the flags.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();

    while let Some((pos, ch)) = chars.next() {
        let next = chars.peek().map(|&(_, c)| c);
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            if ch != '-' || next != Some('-') {
                return (&line[pos..], flags);
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Spaces => unreachable!("handled above"),
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (&line[pos..], flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    continue;
                }
                if ch == '\\' {
                    match chars.next() {
                        Some((_, escaped)) => word.push(escaped),
                        None => continue,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                    continue;
                }
                if ch == '\\' {
                    match chars.next() {
                        Some((_, escaped)) => word.push(escaped),
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(word);
    }
    ("", flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> (String, Vec<String>, String) {
        split_command(line)
    }

    #[test]
    fn keyword_flags_and_args() {
        assert_eq!(
            split("  COPY --from=build --chown=a:b src dst  "),
            (
                "COPY".into(),
                vec!["--from=build".into(), "--chown=a:b".into()],
                "src dst".into()
            )
        );
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(
            split("COPY --x=1 -- --notflag dst"),
            ("COPY".into(), vec!["--x=1".into()], "--notflag dst".into())
        );
    }

    #[test]
    fn quotes_and_escapes_in_flags_are_removed() {
        let (_, flags, args) = split(r#"RUN --mount="type=cache, target=/x" --a=b\ c ls"#);
        assert_eq!(flags, vec!["--mount=type=cache, target=/x", "--a=b c"]);
        assert_eq!(args, "ls");
    }

    #[test]
    fn single_dash_is_an_argument() {
        assert_eq!(split("CMD -x"), ("CMD".into(), vec![], "-x".into()));
    }

    #[test]
    fn flags_only_line() {
        assert_eq!(
            split("CMD --a --"),
            ("CMD".into(), vec!["--a".into()], "".into())
        );
    }

    #[test]
    fn empty_line_gives_empty_keyword() {
        assert_eq!(split(""), ("".into(), vec![], "".into()));
    }

    #[test]
    fn split_blanks_limits() {
        assert_eq!(split_blanks("a \t b  c", None), vec!["a", "b", "c"]);
        assert_eq!(split_blanks("a \t b  c", Some(2)), vec!["a", "b  c"]);
        assert_eq!(split_blanks("abc", Some(2)), vec!["abc"]);
        // Non-ASCII spaces do not separate words.
        assert_eq!(split_blanks("a\u{a0}b", None), vec!["a\u{a0}b"]);
    }
}
