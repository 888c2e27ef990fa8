//! Word expansion: a port of BuildKit's `shell.Lex` rules.
//! (Interface fixed here; the implementation is being written.)

/// Variables visible to an expansion.
pub trait EnvLookup {
    /// The value of `name`, or `None` when unset.
    fn get(&self, name: &str) -> Option<String>;
}

/// The expansion lexer for one escape character.
#[derive(Debug, Clone)]
pub struct Lexer {
    /// The escape token (`\` or `` ` ``).
    pub escape: char,
}
