//! The untyped syntax tree, shaped after BuildKit's `parser.Node` so that
//! `Dump()` output can be reproduced byte for byte.

/// Lines `start..=end` (1-based) of the Dockerfile that a node came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First line, 1-based.
    pub start: usize,
    /// Last line, 1-based, inclusive.
    pub end: usize,
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
}

/// One instruction of the Dockerfile (or the trigger inside an ONBUILD).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The instruction keyword, lowercased (`from`, `run`, ...).
    pub keyword: String,
    /// Flags (`--from=x`), in order, as written.
    pub flags: Vec<String>,
    /// Argument words as BuildKit's parser splits them (unexpanded).
    pub args: Vec<String>,
    /// True when the arguments came from the JSON (exec) form.
    pub json: bool,
    /// For ONBUILD: the parsed trigger instruction.
    pub onbuild: Option<Box<Node>>,
    /// Heredocs attached to this instruction, in order.
    pub heredocs: Vec<Heredoc>,
    /// The original text of the instruction (continuations joined).
    pub original: String,
    /// Where the instruction stands.
    pub span: Span,
    /// Comment lines directly above the instruction.
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
        Directives { escape: '\\', syntax: None, check: None }
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
