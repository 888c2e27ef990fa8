//! The Dockerfile parser: text in, [`Ast`] out. A faithful port of BuildKit's
//! `frontend/dockerfile/parser` rules, so that [`Ast::dump`] reproduces
//! BuildKit's `Node.Dump()` byte for byte on its own test corpus.
//!
//! Why not the `parse-dockerfile` crate: it parses straight into typed
//! instructions, rejects unknown instructions at parse time, records byte
//! ranges rather than BuildKit's line spans, and does not keep BuildKit's
//! argument shapes (the `ENV`/`LABEL` key-value-separator triplets, raw words
//! with quotes kept, the whitespace-split list forms), so it cannot reproduce
//! `Dump()` output nor feed the same instruction typing as BuildKit.
//!
//! What the parser does, in order, per instruction:
//! 1. parser directives (`# syntax=`, `# escape=`, `# check=`) are read from
//!    the top of the file until the first line that is not one ([`directives`]);
//! 2. comment lines are dropped, leading whitespace is trimmed and lines ending
//!    in the escape character are joined, skipping comment and empty lines
//!    inside the continuation ([`lines`]);
//! 3. the keyword and `--flags` are split off ([`split`]);
//! 4. the arguments are shaped by the keyword's rule ([`args`]);
//! 5. RUN/COPY/ADD (also as ONBUILD triggers) read heredoc bodies from the
//!    following lines ([`heredoc`]).
//!
//! Two deliberate departures from BuildKit: flags and the HEALTHCHECK type are
//! split on characters, not bytes (BuildKit treats each byte of a multi-byte
//! character as a Latin-1 character there, mangling non-ASCII flags), and an
//! error in a parser directive names the directive's own line (BuildKit names
//! the line before it).

mod args;
mod directives;
mod heredoc;
mod lines;
mod split;

use crate::ast::{Ast, Span, Warning};
use directives::DirectiveScanner;

/// Why a Dockerfile could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The file has no instruction at all (empty, or only comments).
    #[error("file with no instructions")]
    NoInstructions,
    /// A parser directive appears twice.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// The directive, lowercased.
        name: String,
    },
    /// `# escape=` names something other than `` ` `` or `\`.
    #[error("invalid escape token '{value}' does not match ` or \\")]
    InvalidEscape {
        /// The value given.
        value: String,
    },
    /// Legacy `ENV k v` / `LABEL k v` form with no value.
    #[error("{instruction} must have two arguments")]
    NameValueMissingValue {
        /// `ENV` or `LABEL`.
        instruction: &'static str,
    },
    /// `k=v` form with a word that has no `=`.
    #[error("Syntax error - can't find = in {word:?}. Must be of the form: name=value")]
    NameValueMissingEquals {
        /// The offending word.
        word: String,
    },
    /// A JSON array with something other than strings in it.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStringArray,
    /// A heredoc whose terminator line never came.
    #[error("unterminated heredoc {name:?}")]
    UnterminatedHeredoc {
        /// The delimiter that was looked for.
        name: String,
    },
    /// `ONBUILD ONBUILD ...`.
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChained,
    /// `ONBUILD FROM` / `ONBUILD MAINTAINER`.
    #[error("{instruction} isn't allowed as an ONBUILD trigger")]
    OnbuildTriggerNotAllowed {
        /// The trigger keyword, uppercased.
        instruction: String,
    },
}

/// A parse failure, located at a line of the Dockerfile.
///
/// Displays as `line N: reason`; the caller prefixes the file name
/// (`Dockerfile:12: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// The 1-based line where the failing instruction (or directive) starts.
    pub line: usize,
    /// The last line of the failing instruction (equal to `line` for a single line).
    pub end_line: usize,
    /// What went wrong.
    #[source]
    pub kind: ParseErrorKind,
}

impl ParseError {
    fn at(span: Span, kind: ParseErrorKind) -> Self {
        ParseError {
            line: span.start,
            end_line: span.end.max(span.start),
            kind,
        }
    }
}

/// Parses Dockerfile text into its syntax tree.
///
/// # Errors
/// A [`ParseError`] naming the line, for: duplicate or invalid directives,
/// `ENV`/`LABEL` without values, JSON arrays holding non-strings, heredocs
/// without terminator, forbidden ONBUILD triggers, or a file with no
/// instruction. Unknown instructions are not errors here.
///
/// # Example
/// ```
/// let ast = kiln_dockerfile::parser::parse("FROM alpine\nRUN echo hi\n").unwrap();
/// assert_eq!(ast.dump(), "(from \"alpine\")\n(run \"echo hi\")");
/// ```
pub fn parse(text: &str) -> Result<Ast, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut source = text.split_inclusive('\n');
    let mut directives = DirectiveScanner::default();
    let mut children = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current_line = 0;

    while let Some(raw) = source.next() {
        if let Some(comment) = lines::comment_text(raw) {
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment);
            }
        }
        current_line += 1;
        let first = lines::process_line(&mut directives, raw, true)
            .map_err(|kind| ParseError::at(Span::at(current_line), kind))?;
        let start_line = current_line;
        let (first, mut end_of_line) = lines::trim_continuation(first, directives.escape());
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();

        let mut has_empty_continuation = false;
        while !end_of_line {
            let Some(raw) = source.next() else { break };
            current_line += 1;
            let processed = lines::process_line(&mut directives, raw, false)
                .map_err(|kind| ParseError::at(Span::at(current_line), kind))?;
            if lines::is_comment(raw) {
                continue;
            }
            if processed.trim_start().is_empty() {
                has_empty_continuation = true;
                continue;
            }
            let (part, eol) = lines::trim_continuation(processed, directives.escape());
            end_of_line = eol;
            line.push_str(part);
        }

        if has_empty_continuation {
            warnings.push(Warning {
                span: Span::at(current_line),
                message: format!("Empty continuation line found in: {line}"),
            });
        }

        let span_so_far = Span {
            start: start_line,
            end: current_line,
        };
        let mut node =
            args::node_from_line(&line, directives.escape(), std::mem::take(&mut comments))
                .map_err(|kind| ParseError::at(span_so_far, kind))?;

        if heredoc::can_contain_heredoc(&node) && line.contains("<<") {
            for mut doc in heredoc::heredocs_from_line(&line) {
                let body =
                    heredoc::read_body(&mut source, &doc, &mut current_line).ok_or_else(|| {
                        ParseError::at(
                            Span {
                                start: start_line,
                                end: current_line,
                            },
                            ParseErrorKind::UnterminatedHeredoc {
                                name: doc.name.clone(),
                            },
                        )
                    })?;
                doc.content = body;
                node.heredocs.push(doc);
            }
        }

        node.span = Span {
            start: start_line,
            end: current_line,
        };
        if let Some(trigger) = node.onbuild.as_mut() {
            trigger.span = node.span;
        }
        children.push(node);
    }

    if children.is_empty() {
        return Err(ParseError::at(
            Span::at(current_line.max(1)),
            ParseErrorKind::NoInstructions,
        ));
    }
    Ok(Ast {
        directives: directives.into_directives(),
        children,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Heredoc;

    fn dump(text: &str) -> String {
        parse(text).unwrap().dump()
    }

    fn heredoc(name: &str, content: &str, expand: bool, chomp: bool) -> Heredoc {
        Heredoc {
            name: name.into(),
            content: content.into(),
            expand,
            chomp,
            file_descriptor: 0,
        }
    }

    #[test]
    fn several_heredocs_on_one_line_read_in_order() {
        let ast = parse("FROM x\nCOPY <<A <<B /dst/\na1\nA\nb1\nb2\nB\nRUN true\n").unwrap();
        let copy = &ast.children[1];
        assert_eq!(
            copy.heredocs,
            vec![
                heredoc("A", "a1\n", true, false),
                heredoc("B", "b1\nb2\n", true, false)
            ]
        );
        assert_eq!(copy.args, vec!["<<A", "<<B", "/dst/"]);
        assert_eq!(copy.span, Span { start: 2, end: 7 });
        assert_eq!(ast.children[2].span, Span::at(8));
    }

    #[test]
    fn chomped_heredoc_strips_leading_tabs_and_finds_indented_terminator() {
        let ast = parse("FROM x\nRUN <<-EOF\n\techo hi\n\t\tnested\n  spaces\n\tEOF\n").unwrap();
        assert_eq!(
            ast.children[1].heredocs,
            vec![heredoc("EOF", "echo hi\nnested\n  spaces\n", true, true)]
        );
    }

    #[test]
    fn unchomped_heredoc_keeps_tabs_and_needs_exact_terminator() {
        let ast = parse("FROM x\nRUN <<EOF\n\tEOF\nEOF\n").unwrap();
        assert_eq!(ast.children[1].heredocs[0].content, "\tEOF\n");
    }

    #[test]
    fn quoted_heredoc_delimiters_are_not_expanded() {
        let ast = parse("FROM x\nRUN <<'A' <<\"B\"\n$a\nA\n$b\nB\n").unwrap();
        assert_eq!(
            ast.children[1].heredocs,
            vec![
                heredoc("A", "$a\n", false, false),
                heredoc("B", "$b\n", false, false)
            ]
        );
    }

    #[test]
    fn heredoc_body_keeps_line_endings() {
        let ast = parse("FROM x\r\nRUN <<EOF\r\nline\r\nEOF\r\n").unwrap();
        assert_eq!(ast.children[1].heredocs[0].content, "line\r\n");
    }

    #[test]
    fn missing_heredoc_terminator_is_an_error_at_the_instruction() {
        let err = parse("FROM x\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.end_line, 3);
        assert_eq!(
            err.kind,
            ParseErrorKind::UnterminatedHeredoc { name: "EOF".into() }
        );
        assert_eq!(err.to_string(), "line 2: unterminated heredoc \"EOF\"");
    }

    #[test]
    fn exec_form_and_other_instructions_have_no_heredocs() {
        let ast = parse("FROM x\nRUN [\"cat\", \"<<EOF\"]\nENV a=<<EOF\nRUN true\n").unwrap();
        assert!(ast.children.iter().all(|c| c.heredocs.is_empty()));
        assert_eq!(ast.children.len(), 4);
    }

    #[test]
    fn onbuild_heredoc_attaches_to_the_onbuild_node() {
        let ast = parse("FROM x\nONBUILD RUN <<EOF\nhi\nEOF\n").unwrap();
        let onbuild = &ast.children[1];
        assert_eq!(onbuild.heredocs, vec![heredoc("EOF", "hi\n", true, false)]);
        assert_eq!(onbuild.span, Span { start: 2, end: 4 });
        assert_eq!(onbuild.onbuild.as_ref().unwrap().span, onbuild.span);
    }

    #[test]
    fn backtick_escape_directive_changes_continuation() {
        let ast = parse("# escape=`\nFROM a\nRUN dir c:\\ `\n  /w\n").unwrap();
        assert_eq!(ast.directives.escape, '`');
        assert_eq!(ast.dump(), "(from \"a\")\n(run \"dir c:\\\\   /w\")");
        assert_eq!(ast.children[1].span, Span { start: 3, end: 4 });
    }

    #[test]
    fn directive_after_a_comment_is_ignored() {
        let ast = parse("# hello\n# escape=`\nFROM a\nRUN a \\\nb\n").unwrap();
        assert_eq!(ast.directives.escape, '\\');
        assert_eq!(ast.dump(), "(from \"a\")\n(run \"a b\")");
    }

    #[test]
    fn directive_after_an_instruction_is_a_comment() {
        let ast = parse("FROM a\n# syntax=x\n").unwrap();
        assert_eq!(ast.directives.syntax, None);
        assert_eq!(ast.children.len(), 1);
    }

    #[test]
    fn directives_are_recorded() {
        let ast = parse("#syntax=docker/dockerfile:1\n# check = skip=all\nFROM a\n").unwrap();
        assert_eq!(
            ast.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        assert_eq!(ast.directives.check.as_deref(), Some("skip=all"));
    }

    #[test]
    fn duplicate_directive_is_an_error_naming_its_line() {
        let err = parse("# syntax=a\n# SYNTAX=b\nFROM x\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(
            err.to_string(),
            "line 2: only one syntax parser directive can be used"
        );
    }

    #[test]
    fn invalid_escape_directive_is_an_error() {
        let err = parse("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(matches!(err.kind, ParseErrorKind::InvalidEscape { .. }));
    }

    #[test]
    fn onbuild_from_is_an_error() {
        let err = parse("FROM a\nONBUILD FROM b\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(
            err.to_string(),
            "line 2: FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            parse("FROM a\nONBUILD ONBUILD RUN x\n").unwrap_err().kind,
            ParseErrorKind::OnbuildChained
        );
    }

    #[test]
    fn invalid_json_falls_back_to_shell_form() {
        let ast = parse("FROM a\nCMD [\"a\", 'b']\nENTRYPOINT [\"x\"] y\n").unwrap();
        assert!(!ast.children[1].json);
        assert_eq!(ast.children[1].args, vec!["[\"a\", 'b']"]);
        assert_eq!(ast.children[2].args, vec!["[\"x\"] y"]);
    }

    #[test]
    fn line_continuation_at_eof_ends_the_instruction() {
        let ast = parse("FROM a\nRUN echo \\").unwrap();
        assert_eq!(ast.dump(), "(from \"a\")\n(run \"echo\")");
        assert_eq!(ast.children[1].span, Span::at(2));
    }

    #[test]
    fn empty_continuation_line_warns_and_comments_are_skipped() {
        let ast = parse("FROM a\nRUN a \\\n\n# note\n b\n").unwrap();
        assert_eq!(ast.children[1].args, vec!["a  b"]);
        assert_eq!(ast.children[1].span, Span { start: 2, end: 5 });
        assert_eq!(ast.warnings.len(), 1);
        assert_eq!(ast.warnings[0].span, Span::at(5));
        assert!(ast.warnings[0].message.contains("Empty continuation line"));
    }

    #[test]
    fn crlf_and_bom_are_handled() {
        let ast = parse("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n").unwrap();
        assert_eq!(ast.dump(), "(from \"a\")\n(run \"b  c\")");
    }

    #[test]
    fn comments_before_an_instruction_are_kept() {
        let ast = parse("# one\n#two\nFROM a\n#\nRUN b\n").unwrap();
        assert_eq!(ast.children[0].prev_comment, vec!["one", "two"]);
        assert!(ast.children[1].prev_comment.is_empty());
    }

    #[test]
    fn keyword_is_lowercased_and_original_kept() {
        let ast = parse("from   a AS b\n").unwrap();
        assert_eq!(ast.children[0].keyword, "from");
        assert_eq!(ast.children[0].args, vec!["a", "AS", "b"]);
        assert_eq!(ast.children[0].original, "from   a AS b");
    }

    #[test]
    fn unknown_instruction_is_not_a_parse_error() {
        assert_eq!(dump("FROM a\nFOO bar\n"), "(from \"a\")\n(foo \"\")");
    }

    #[test]
    fn file_without_instructions_is_an_error() {
        assert_eq!(parse("").unwrap_err().kind, ParseErrorKind::NoInstructions);
        assert_eq!(parse("# c\n\n").unwrap_err().line, 2);
    }

    /// Pieces that reach the parser's corners: directives, continuations,
    /// quotes, JSON, flags, heredocs, ONBUILD.
    fn dockerfile_piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("# escape=`\n".to_string()),
            Just("# syntax=x\n".to_string()),
            Just("\\\n".to_string()),
            Just("`\n".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just("\t".to_string()),
            Just(" ".to_string()),
            Just("#".to_string()),
            Just("RUN ".to_string()),
            Just("COPY ".to_string()),
            Just("ENV ".to_string()),
            Just("LABEL ".to_string()),
            Just("ONBUILD ".to_string()),
            Just("HEALTHCHECK ".to_string()),
            Just("--a=b ".to_string()),
            Just("-- ".to_string()),
            Just("<<EOF".to_string()),
            Just("<<-\"E F\"".to_string()),
            Just("EOF".to_string()),
            Just("[\"a\", ".to_string()),
            Just("]".to_string()),
            Just("=".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("\u{a0}".to_string()),
            Just("\u{feff}".to_string()),
            "[a-z]{1,3}",
        ]
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse(&text).map(|ast| ast.dump());
        }

        #[test]
        fn parse_never_panics_on_any_chars(text in proptest::collection::vec(proptest::char::any(), 0..64)) {
            let text: String = text.into_iter().collect();
            let _ = parse(&text).map(|ast| ast.dump());
        }

        #[test]
        fn parse_never_panics_on_dockerfile_like_text(
            pieces in proptest::collection::vec(dockerfile_piece(), 0..40)
        ) {
            let text = pieces.concat();
            if let Ok(ast) = parse(&text) {
                let lines = text.split_inclusive('\n').count();
                for child in &ast.children {
                    proptest::prop_assert!(child.span.start >= 1);
                    proptest::prop_assert!(child.span.start <= child.span.end);
                    proptest::prop_assert!(child.span.end <= lines);
                }
                let _ = ast.dump();
            }
        }
    }
}
