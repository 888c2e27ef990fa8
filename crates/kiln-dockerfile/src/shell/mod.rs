//! Word expansion: a port of the rules of BuildKit's `shell.Lex`
//! (frontend/dockerfile/shell/lex.go).
//!
//! A [`Lexer`] expands `$v`, `${v}` and the `${v...}` modifiers below
//! against an [`EnvLookup`], removes quotes and escapes, and can split the
//! result into words:
//!
//! | form | result |
//! |------|--------|
//! | `${v:-w}` / `${v-w}` | `w` when `v` is unset or empty / unset, else `$v` |
//! | `${v:+w}` / `${v+w}` | `w` when `v` is set and non-empty / set, else empty |
//! | `${v:?m}` / `${v?m}` | error `v: m` when `v` is unset or empty / unset |
//! | `${v#p}` / `${v##p}` | `$v` without its shortest / longest prefix matching `p` |
//! | `${v%p}` / `${v%%p}` | `$v` without its shortest / longest suffix matching `p` |
//! | `${v/p/r}` / `${v//p/r}` | first / every match of `p` in `$v` replaced by `r` |
//!
//! Patterns use `*` (any run) and `?` (one character); a backslash escapes
//! `*`, `?` or `\`. `[` and `]` match themselves, as in BuildKit, so that a
//! Dockerfile expands the same as under `docker build`. Positional and
//! special parameters (`$1`, `$@`, `$#`, ...) parse but are never set.
//!
//! ```
//! use std::collections::HashMap;
//! use kiln_dockerfile::shell::Lexer;
//!
//! let env: HashMap<String, String> = [("NAME".to_string(), "kiln".to_string())].into();
//! let lexer = Lexer::new('\\');
//! assert_eq!(lexer.process_word("${NAME:-x}-'$NAME'", &env).unwrap(), "kiln-$NAME");
//! assert_eq!(lexer.process_words("a \"b c\" $NAME", &env).unwrap(), ["a", "b c", "kiln"]);
//! ```

mod env;
mod expand;
mod pattern;

use std::collections::BTreeSet;

pub use env::EnvLookup;
pub use pattern::PatternError;

/// The expansion lexer for one escape character, with BuildKit's options.
///
/// A `Lexer` holds no per-word state, so one value can be shared freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset_env: bool,
    skip_process_quotes: bool,
}

/// Everything one expansion produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The expanded word, spaces kept.
    pub word: String,
    /// The expanded word split on unquoted white space; white space that came
    /// from quotes or escapes, or from quoted variables, does not split.
    pub words: Vec<String>,
    /// Names the word looked up that were set (even to the empty string).
    pub matched: BTreeSet<String>,
    /// Names the word looked up that were unset.
    pub unmatched: BTreeSet<String>,
}

/// A word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    word: String,
    kind: ExpandErrorKind,
}

impl ExpandError {
    /// The word as given to the lexer.
    pub fn word(&self) -> &str {
        &self.word
    }

    /// What went wrong.
    pub fn kind(&self) -> &ExpandErrorKind {
        &self.kind
    }
}

/// What went wrong while expanding a word. The messages follow BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpandErrorKind {
    /// A `'` was never closed.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnclosedSingleQuote,
    /// A `"` was never closed.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnclosedDoubleQuote,
    /// `${` without its closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${v/pattern` without the `/` before the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${{...}`, `${:...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier BuildKit does not support, such as `${v:=w}` or `${v:#p}`.
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The modifier as written (`:=`, `=`, `:#`, ...).
        modifier: String,
    },
    /// `${v?m}` with `v` unset, or `${v:?m}` with `v` unset or empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The expanded `m`, or BuildKit's default text when `m` is empty.
        message: String,
    },
    /// The pattern of `${v#p}`, `${v%p}` or `${v/p/r}` is malformed.
    #[error("invalid pattern ({pattern}) in substitution: {source}")]
    InvalidPattern {
        /// The pattern after expansion.
        pattern: String,
        /// Why it was rejected.
        source: PatternError,
    },
    /// Substitutions nested deeper than kiln allows (a guard against stack
    /// exhaustion; BuildKit has no limit).
    #[error("substitutions nested deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
}

impl Lexer {
    /// A lexer for the Dockerfile's escape character (`\` by default, or
    /// `` ` `` from the `escape` parser directive), with all options off.
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Keep quote characters in the output (BuildKit's `RawQuotes`).
    pub fn raw_quotes(mut self, on: bool) -> Lexer {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (BuildKit's `RawEscapes`).
    pub fn raw_escapes(mut self, on: bool) -> Lexer {
        self.raw_escapes = on;
        self
    }

    /// Leave references to unset variables as written, `$v` or `${v...}`,
    /// instead of expanding them (BuildKit's `SkipUnsetEnv`).
    pub fn skip_unset_env(mut self, on: bool) -> Lexer {
        self.skip_unset_env = on;
        self
    }

    /// Treat quotes as ordinary characters (BuildKit's `SkipProcessQuotes`).
    pub fn skip_process_quotes(mut self, on: bool) -> Lexer {
        self.skip_process_quotes = on;
        self
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word`, returning the word, its split form and the names used.
    ///
    /// # Errors
    /// [`ExpandError`] on unclosed quotes or braces, bad substitutions,
    /// unsupported modifiers, malformed patterns, and `${v?m}`/`${v:?m}`.
    pub fn expand(&self, word: &str, env: &dyn EnvLookup) -> Result<Expansion, ExpandError> {
        expand::run(self, word, env).map_err(|kind| ExpandError {
            word: word.to_string(),
            kind,
        })
    }

    /// Expands `word` into one string, spaces kept.
    ///
    /// # Errors
    /// As for [`Lexer::expand`].
    pub fn process_word(&self, word: &str, env: &dyn EnvLookup) -> Result<String, ExpandError> {
        self.expand(word, env).map(|expansion| expansion.word)
    }

    /// Expands `word` and splits it on unquoted white space.
    ///
    /// # Errors
    /// As for [`Lexer::expand`].
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn EnvLookup,
    ) -> Result<Vec<String>, ExpandError> {
        self.expand(word, env).map(|expansion| expansion.words)
    }

    /// Expands `word` and also returns the names it looked up: first those
    /// that were set, then those that were unset. A step's cache key needs
    /// exactly the build args its words used.
    ///
    /// # Errors
    /// As for [`Lexer::expand`].
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn EnvLookup,
    ) -> Result<(String, BTreeSet<String>, BTreeSet<String>), ExpandError> {
        self.expand(word, env)
            .map(|expansion| (expansion.word, expansion.matched, expansion.unmatched))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::Lexer;

    /// Words biased towards the characters the lexer treats specially.
    fn word() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("$".to_string()),
            Just("${".to_string()),
            Just("}".to_string()),
            Just(":".to_string()),
            Just("/".to_string()),
            Just("//".to_string()),
            Just("#".to_string()),
            Just("%".to_string()),
            Just("*".to_string()),
            Just("?".to_string()),
            Just("\\".to_string()),
            Just("`".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("-".to_string()),
            Just("+".to_string()),
            Just(" ".to_string()),
            Just("A".to_string()),
            Just("B".to_string()),
            "[a-zA-Z0-9_]{1,3}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    fn env() -> impl Strategy<Value = HashMap<String, String>> {
        proptest::collection::hash_map(
            prop_oneof![Just("A".to_string()), Just("B".to_string()), "[A-Z]{1,2}"],
            word(),
            0..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn expansion_never_panics(
            word in word(),
            env in env(),
            escape in prop_oneof![Just('\\'), Just('`')],
            raw_quotes: bool,
            raw_escapes: bool,
            skip_unset: bool,
        ) {
            let lexer = Lexer::new(escape)
                .raw_quotes(raw_quotes)
                .raw_escapes(raw_escapes)
                .skip_unset_env(skip_unset);
            let single = lexer.process_word(&word, &env);
            let split = lexer.process_words(&word, &env);
            // Both views come from one walk, so they fail together.
            prop_assert_eq!(single.is_ok(), split.is_ok());
            if let Err(err) = single {
                prop_assert!(err.to_string().contains("failed to process"));
            }
        }

        #[test]
        fn arbitrary_text_never_panics(word in any::<String>(), value in any::<String>()) {
            let env: HashMap<String, String> = [("A".to_string(), value)].into();
            let _ = Lexer::new('\\').process_words(&word, &env);
            let _ = Lexer::new('\\').process_word(&word, &env);
        }
    }
}
