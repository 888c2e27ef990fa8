//! Heredocs on RUN, COPY and ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`): finding the
//! `<<WORD` words on the instruction line and reading the bodies from the
//! lines after it.
//!
//! Finding the words needs shell-style word splitting with quotes kept. The
//! crate's word-expansion lexer does much more (variable expansion against an
//! environment); the detection here only needs splitting and quote removal
//! with an empty environment, so it carries its own small splitter, which
//! treats `$` as an ordinary character (with an empty environment and unset
//! variables left as written, BuildKit's result is the same text).

use crate::ast::{Heredoc, Node};

use super::lines::trim_newline;

/// True for RUN/COPY/ADD in shell form, directly or as an ONBUILD trigger.
pub(super) fn can_contain_heredoc(node: &Node) -> bool {
    let target = match (&node.onbuild, node.keyword.as_str()) {
        (Some(trigger), "onbuild") => trigger,
        _ => node,
    };
    matches!(target.keyword.as_str(), "run" | "copy" | "add") && !target.json
}

/// Every `<<WORD` heredoc the line opens, in order, bodies still empty.
pub(super) fn heredocs_from_line(line: &str) -> Vec<Heredoc> {
    let Some(words) = shell_words(line, true, true) else {
        return Vec::new();
    };
    words.iter().filter_map(|w| parse_heredoc_word(w)).collect()
}

/// Reads the body of `doc` from `source` up to its terminator line, counting
/// lines in `current_line`. `None` when the input ends first.
pub(super) fn read_body<'a>(
    source: &mut impl Iterator<Item = &'a str>,
    doc: &Heredoc,
    current_line: &mut usize,
) -> Option<String> {
    let mut content = String::new();
    for raw in source.by_ref() {
        *current_line += 1;
        let mut candidate = trim_newline(raw);
        if doc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == doc.name {
            return Some(if doc.chomp {
                strip_leading_tabs(&content)
            } else {
                content
            });
        }
        content.push_str(raw);
    }
    None
}

/// `<<-` bodies lose the leading tabs of every line.
fn strip_leading_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// Recognises `[fd]<<[-]WORD` (WORD without `<`) and works out the delimiter
/// name and whether the body is expanded (not when any part of WORD is quoted).
fn parse_heredoc_word(word: &str) -> Option<Heredoc> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let unquoted = shell_words(rest, false, false)?;
    let [name] = unquoted.as_slice() else {
        return None;
    };
    let raw = shell_words(rest, true, false)?;
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand,
        chomp,
        file_descriptor: word[..digits].parse().unwrap_or(0),
    })
}

/// Accumulates words the way BuildKit's lexer does.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the word.
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw(c);
        }
    }

    fn add_raw(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// Shell word splitting with `\` as escape. `raw_quotes` keeps quote
/// characters in the words, `raw_escapes` keeps escape characters. `None`
/// on an unterminated quote.
fn shell_words(text: &str, raw_quotes: bool, raw_escapes: bool) -> Option<Vec<String>> {
    let mut words = Words::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let mut quoted = String::new();
                if raw_quotes {
                    quoted.push(c);
                }
                loop {
                    let q = chars.next()?;
                    if q == '\'' {
                        if raw_quotes {
                            quoted.push(q);
                        }
                        break;
                    }
                    quoted.push(q);
                }
                words.add_raw_str(&quoted);
            }
            '"' => {
                let mut quoted = String::new();
                if raw_quotes {
                    quoted.push(c);
                }
                loop {
                    let mut q = chars.next()?;
                    if q == '"' {
                        if raw_quotes {
                            quoted.push(q);
                        }
                        break;
                    }
                    if q == '\\' {
                        if raw_escapes {
                            quoted.push(q);
                        }
                        // Only `"`, `$` and `\` can be escaped inside double
                        // quotes; before anything else the `\` stays.
                        if let Some(&next) = chars.peek() {
                            if matches!(next, '"' | '$' | '\\') {
                                q = next;
                                chars.next();
                            }
                        } else {
                            continue;
                        }
                    }
                    quoted.push(q);
                }
                words.add_raw_str(&quoted);
            }
            '\\' => {
                if raw_escapes {
                    words.add_raw(c);
                }
                let Some(escaped) = chars.next() else { break };
                words.add_raw(escaped);
            }
            _ => words.add_char(c),
        }
    }
    Some(words.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        heredocs_from_line(line)
            .into_iter()
            .map(|h| (h.name, h.expand, h.chomp))
            .collect()
    }

    #[test]
    fn finds_several_heredocs() {
        assert_eq!(
            names("COPY <<A <<-B /dst/"),
            vec![("A".into(), true, false), ("B".into(), true, true)]
        );
    }

    #[test]
    fn quoted_delimiters_disable_expansion() {
        assert_eq!(names(r#"RUN <<"EOF""#), vec![("EOF".into(), false, false)]);
        assert_eq!(names("RUN <<-'EOF'"), vec![("EOF".into(), false, true)]);
        assert_eq!(names(r#"RUN <<E"O"F"#), vec![("EOF".into(), false, false)]);
    }

    #[test]
    fn quoted_or_glued_markers_are_not_heredocs() {
        assert!(names(r#"RUN echo "<<EOF""#).is_empty());
        assert!(names("RUN echo a<<EOF").is_empty());
        assert!(names("RUN echo <<").is_empty());
        assert!(names("RUN echo <<a<b").is_empty());
        assert!(names("RUN echo 'unterminated <<EOF").is_empty());
    }

    #[test]
    fn file_descriptor_prefix() {
        let docs = heredocs_from_line("RUN cat 3<<EOF");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].file_descriptor, 3);
        assert_eq!(docs[0].name, "EOF");
    }

    #[test]
    fn shell_words_modes() {
        let text = r#"a "b c" 'd' e\ f"#;
        assert_eq!(
            shell_words(text, false, false).unwrap(),
            vec!["a", "b c", "d", "e f"]
        );
        assert_eq!(
            shell_words(text, true, true).unwrap(),
            vec!["a", r#""b c""#, "'d'", r"e\ f"]
        );
        assert_eq!(shell_words(r#"a "b"#, false, false), None);
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(strip_leading_tabs("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
    }
}
