//! The untyped syntax tree, shaped after BuildKit's `parser.Node` so that
//! `Dump()` output can be reproduced byte for byte (see [`Ast::dump`]).

mod go_quote;

pub use go_quote::{go_quote, go_quote_bytes};

/// Lines `start..=end` (1-based) of the Dockerfile that a node came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First line, 1-based.
    pub start: usize,
    /// Last line, 1-based, inclusive.
    pub end: usize,
}

impl Span {
    /// A span of one line.
    pub fn at(line: usize) -> Span {
        Span {
            start: line,
            end: line,
        }
    }
}

/// A heredoc attached to an instruction (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, without quotes or `-`.
    pub name: String,
    /// The body, including the final newline (leading tabs already removed for `<<-`).
    pub content: String,
    /// False when the delimiter was quoted: the body is not expanded.
    pub expand: bool,
    /// True for `<<-`.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none was written.
    pub file_descriptor: u64,
}

/// One instruction of the Dockerfile (or the trigger inside an ONBUILD).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The instruction keyword, lowercased (`from`, `run`, ...).
    pub keyword: String,
    /// Flags (`--from=x`), in order, as written (quotes and `\` escapes removed).
    pub flags: Vec<String>,
    /// Argument words as BuildKit's parser splits them (unexpanded).
    ///
    /// `ENV`/`LABEL` give `key, value, separator` triplets, the separator being
    /// `=` for `k=v` and empty for the legacy `ENV k v` form. An unknown
    /// instruction has one empty argument, as in BuildKit.
    pub args: Vec<String>,
    /// True when the arguments came from the JSON (exec) form.
    pub json: bool,
    /// For ONBUILD: the parsed trigger instruction.
    pub onbuild: Option<Box<Node>>,
    /// Heredocs attached to this instruction, in order. For `ONBUILD RUN <<EOF`
    /// they sit on the ONBUILD node, as in BuildKit.
    pub heredocs: Vec<Heredoc>,
    /// The original text of the instruction (continuations joined).
    pub original: String,
    /// Where the instruction stands (for an ONBUILD trigger: its ONBUILD's lines).
    pub span: Span,
    /// Comment lines directly above the instruction, without the `#`.
    pub prev_comment: Vec<String>,
}

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// `# syntax=` value, if any.
    pub syntax: Option<String>,
    /// `# check=` value, if any.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ast {
    /// The directives.
    pub directives: Directives,
    /// Every instruction, in file order.
    pub children: Vec<Node>,
    /// Non-fatal findings (e.g. empty continuation lines), each with its line.
    pub warnings: Vec<Warning>,
}

/// A non-fatal parser finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub span: Span,
    /// What.
    pub message: String,
}

impl Ast {
    /// The lines the whole file's instructions cover (first instruction's
    /// start to last instruction's end), as BuildKit's root node records.
    pub fn span(&self) -> Span {
        match (self.children.first(), self.children.last()) {
            (Some(first), Some(last)) => Span {
                start: first.span.start,
                end: last.span.end,
            },
            _ => Span::default(),
        }
    }

    /// The tree as S-expressions, exactly as BuildKit's `Node.Dump()` prints
    /// the root node: one `(instruction ...)` per line, no trailing newline.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for child in &self.children {
            out.push('(');
            out.push_str(&child.dump());
            out.push_str(")\n");
        }
        go_trim_space(&out).to_string()
    }
}

impl Node {
    /// This node as BuildKit's `Node.Dump()` prints it: the lowercased keyword,
    /// the flags as a Go `%q` slice, the ONBUILD trigger in parentheses, then
    /// every argument Go-quoted.
    pub fn dump(&self) -> String {
        let mut out = go_lower(&self.keyword);
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            out.push_str(" [");
            out.push_str(&flags.join(" "));
            out.push(']');
        }
        if let Some(trigger) = &self.onbuild {
            let wrapped = format!("({})\n", trigger.dump());
            out.push(' ');
            out.push_str(go_trim_space(&wrapped));
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        go_trim_space(&out).to_string()
    }
}

/// Go's `strings.TrimSpace`: both use the Unicode `White_Space` property.
fn go_trim_space(s: &str) -> &str {
    s.trim()
}

/// Go's `strings.ToLower`: a per-character mapping, without the
/// context-dependent rules (final sigma) that `str::to_lowercase` applies.
pub(crate) fn go_lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(keyword: &str, flags: &[&str], args: &[&str]) -> Node {
        Node {
            keyword: keyword.to_string(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Node::default()
        }
    }

    #[test]
    fn dump_quotes_args_and_flags() {
        let n = node("COPY", &["--from=a b"], &["x\"y", "/dst"]);
        assert_eq!(n.dump(), r#"copy ["--from=a b"] "x\"y" "/dst""#);
    }

    #[test]
    fn dump_nests_onbuild_trigger() {
        let mut n = node("onbuild", &[], &[]);
        n.onbuild = Some(Box::new(node("run", &[], &["echo hi"])));
        assert_eq!(n.dump(), r#"onbuild (run "echo hi")"#);
    }

    #[test]
    fn ast_dump_has_one_line_per_child_and_no_trailing_newline() {
        let ast = Ast {
            children: vec![node("from", &[], &["scratch"]), node("cmd", &[], &[])],
            ..Ast::default()
        };
        assert_eq!(ast.dump(), "(from \"scratch\")\n(cmd)");
    }

    #[test]
    fn empty_ast_dumps_empty() {
        assert_eq!(Ast::default().dump(), "");
    }
}
