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
