//! The character-by-character walk over one word, following lex.go's
//! `processStopOn`, `processSingleQuote`, `processDoubleQuote`,
//! `processDollar` and `processName`.
//!
//! Two deliberate differences from BuildKit, both on inputs where BuildKit's
//! result is an accident: nested `${...}` do not disturb the outer word
//! split (current BuildKit shares one split buffer between nesting levels),
//! and `${v//p/r}` left alone under `skip_unset_env` keeps both slashes.

use std::collections::BTreeSet;

use super::pattern::{self, is_go_digit, is_go_letter};
use super::{EnvLookup, ExpandErrorKind, Expansion, Lexer};

/// How deep `${a:-${b:-...}}` may nest before the word is rejected.
const MAX_NESTING: usize = 64;

/// Expands `word` with `lexer`'s options.
pub(crate) fn run(
    lexer: &Lexer,
    word: &str,
    env: &dyn EnvLookup,
) -> Result<Expansion, ExpandErrorKind> {
    // Go's text/scanner skips a byte-order mark at the very start.
    let word = word.strip_prefix('\u{feff}').unwrap_or(word);
    let mut walk = Walk {
        lexer,
        env,
        chars: word.chars().collect(),
        pos: 0,
        raw_escapes: lexer.raw_escapes,
        depth: 0,
        matched: BTreeSet::new(),
        unmatched: BTreeSet::new(),
    };
    let (word, words) = walk.stop_on(None, lexer.raw_escapes)?;
    Ok(Expansion {
        word,
        words,
        matched: walk.matched,
        unmatched: walk.unmatched,
    })
}

/// Splits expanded text into words as it is produced.
#[derive(Default)]
struct Words {
    current: String,
    done: Vec<String>,
    in_word: bool,
}

impl Words {
    /// An unquoted character: white space ends the current word.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.current.is_empty() {
                self.done.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn add_raw_char(&mut self, ch: char) {
        self.current.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_str(&mut self, text: &str) {
        self.current.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

struct Walk<'a> {
    lexer: &'a Lexer,
    env: &'a dyn EnvLookup,
    chars: Vec<char>,
    pos: usize,
    /// Whether escapes are kept; patterns are read with it on.
    raw_escapes: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl Walk<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.env.get(name);
        if value.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        value
    }

    /// Reads until `stop` (consumed) or the end of the word when `stop` is
    /// `None`, with escapes kept or not for the duration.
    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let value = self.dollar()?;
                result.push_str(&value);
                words.add_str(&value);
                continue;
            }
            if quotes && (ch == '\'' || ch == '"') {
                let value = if ch == '\'' {
                    self.single_quote()?
                } else {
                    self.double_quote()?
                };
                result.push_str(&value);
                words.add_raw_str(&value);
                continue;
            }
            self.next();
            if ch == self.lexer.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // An escape at the very end is dropped.
                let Some(escaped) = self.next() else { break };
                words.add_raw_char(escaped);
                result.push(escaped);
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }
        match stop {
            // Only `}` and `/` are ever used as stops, inside `${...}`.
            Some('/') => Err(ExpandErrorKind::MissingSlash),
            Some(_) => Err(ExpandErrorKind::MissingBrace),
            None => Ok((result, words.finish())),
        }
    }

    /// Everything between single quotes is literal; there is no escape.
    fn single_quote(&mut self) -> Result<String, ExpandErrorKind> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnclosedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    /// Between double quotes only `$` expands, and the escape character
    /// escapes only `"`, `$` and itself; before anything else it is literal.
    fn double_quote(&mut self) -> Result<String, ExpandErrorKind> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnclosedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // The missing closing quote is reported next round.
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// Reads the inside of `${name<op>...}` up to `stop`, one level deeper.
    fn nested(&mut self, stop: char, raw_escapes: bool) -> Result<String, ExpandErrorKind> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandErrorKind::TooDeep { limit: MAX_NESTING });
        }
        self.depth += 1;
        let result = self.stop_on(Some(stop), raw_escapes);
        self.depth -= 1;
        match result {
            Ok((text, _)) => Ok(text),
            // Running off the end is reported as the missing delimiter, as
            // BuildKit does, whatever failed on the way.
            Err(_) if self.peek().is_none() && stop == '}' => Err(ExpandErrorKind::MissingBrace),
            Err(_) if self.peek().is_none() => Err(ExpandErrorKind::MissingSlash),
            Err(err) => Err(err),
        }
    }

    /// At a `$`: a name, `${...}`, or a literal `$`.
    fn dollar(&mut self) -> Result<String, ExpandErrorKind> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err(ExpandErrorKind::MissingBrace),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.next();
                let mut modifier = String::from(":");
                modifier.extend(op);
                self.modifier(name, op, modifier, true)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => {
                self.modifier(name, Some(op), op.to_string(), false)
            }
            Some('/') => self.substitute(name),
            Some(other) => Err(ExpandErrorKind::UnsupportedModifier {
                modifier: other.to_string(),
            }),
        }
    }

    /// `${name<modifier>word}` for `-`, `+`, `?`, `#`, `%` (with `:` when
    /// `null_is_unset`: the empty value counts as unset).
    fn modifier(
        &mut self,
        name: String,
        op: Option<char>,
        modifier: String,
        null_is_unset: bool,
    ) -> Result<String, ExpandErrorKind> {
        let is_pattern = matches!(op, Some('#' | '%'));
        if null_is_unset && is_pattern {
            return Err(ExpandErrorKind::UnsupportedModifier { modifier });
        }
        let word = self.nested('}', is_pattern)?;
        let value = self.lookup(&name);
        if value.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let set = value.is_some();
        let value = value.unwrap_or_default();
        let counts_as_unset = !set || (null_is_unset && value.is_empty());
        match op {
            Some('-') => Ok(if counts_as_unset { word } else { value }),
            Some('+') => Ok(if counts_as_unset { String::new() } else { word }),
            Some('?') if counts_as_unset => {
                let message = if !word.is_empty() {
                    word
                } else if !set {
                    "is not allowed to be unset".to_string()
                } else {
                    "is not allowed to be empty".to_string()
                };
                Err(ExpandErrorKind::Required { name, message })
            }
            Some('?') => Ok(value),
            Some(op @ ('#' | '%')) => {
                // One `#`/`%` removes the shortest match, two the longest.
                let (pattern, greedy) = match word.strip_prefix(op) {
                    Some(rest) => (rest.to_string(), true),
                    None => (word, false),
                };
                let trimmed = if op == '%' {
                    pattern::trim_suffix(&pattern, &value, greedy)
                } else {
                    pattern::trim_prefix(&pattern, &value, greedy)
                };
                trimmed.map_err(|source| ExpandErrorKind::InvalidPattern { pattern, source })
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier { modifier }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn substitute(&mut self, name: String) -> Result<String, ExpandErrorKind> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = self.nested('/', true)?;
        let replacement = self.nested('}', true)?;
        let Some(value) = self.lookup(&name) else {
            if self.lexer.skip_unset_env {
                let slashes = if all { "//" } else { "/" };
                return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        pattern::replace(&value, &pattern, &replacement, all)
            .map_err(|source| ExpandErrorKind::InvalidPattern { pattern, source })
    }

    /// A variable name: letters, digits and `_`; or a run of digits
    /// (positional); or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_go_digit(ch) {
                while let Some(digit) = self.peek().filter(|&c| is_go_digit(c)) {
                    self.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(ch) {
                self.next();
                return ch.to_string();
            }
            if !is_go_letter(ch) && !is_go_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// POSIX special parameters, which a Dockerfile never sets.
fn is_special_parameter(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{ExpandErrorKind, Lexer};

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kind(word: &str, vars: &[(&str, &str)]) -> ExpandErrorKind {
        Lexer::new('\\')
            .process_word(word, &env(vars))
            .expect_err(word)
            .kind()
            .clone()
    }

    #[test]
    fn required_messages_follow_buildkit() {
        let set = [("VAR", "plain"), ("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let unset = [("ARG", "x")];
        let lexer = Lexer::new('\\');
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        assert_eq!(lexer.process_word(no_empty, &env(&set)).unwrap(), "plain");
        let err = lexer.process_word(no_empty, &env(&empty)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to process \"${VAR:?message here$ARG}\": VAR: message herex"
        );
        assert!(lexer
            .process_word(no_empty, &env(&unset))
            .unwrap_err()
            .to_string()
            .contains("message herex"));
        assert_eq!(lexer.process_word(no_unset, &env(&set)).unwrap(), "plain");
        assert_eq!(lexer.process_word(no_unset, &env(&empty)).unwrap(), "");
        assert!(lexer
            .process_word(no_unset, &env(&unset))
            .unwrap_err()
            .to_string()
            .contains("message herex"));
        assert_eq!(
            kind("${X:?}", &[]).to_string(),
            "X: is not allowed to be unset"
        );
        assert_eq!(
            kind("${X:?}", &[("X", "")]).to_string(),
            "X: is not allowed to be empty"
        );
    }

    #[test]
    fn bad_syntax_is_reported_precisely() {
        assert_eq!(kind("${}", &[]), ExpandErrorKind::BadSubstitution);
        assert_eq!(kind("${a", &[]), ExpandErrorKind::MissingBrace);
        assert_eq!(kind("${a:-b", &[]), ExpandErrorKind::MissingBrace);
        assert_eq!(kind("${a/b", &[]), ExpandErrorKind::MissingSlash);
        assert_eq!(kind("'a", &[]), ExpandErrorKind::UnclosedSingleQuote);
        assert_eq!(kind("\"a", &[]), ExpandErrorKind::UnclosedDoubleQuote);
        assert_eq!(
            kind("${a:=b}", &[]),
            ExpandErrorKind::UnsupportedModifier {
                modifier: ":=".into()
            }
        );
        assert_eq!(
            kind("${a:#b}", &[("a", "bb")]),
            ExpandErrorKind::UnsupportedModifier {
                modifier: ":#".into()
            }
        );
        assert!(matches!(
            kind(r"${a#\x}", &[("a", "x")]),
            ExpandErrorKind::InvalidPattern { .. }
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "${a:-".repeat(200) + &"}".repeat(200);
        assert_eq!(kind(&deep, &[]), ExpandErrorKind::TooDeep { limit: 64 });
        let fine = "${a:-".repeat(10) + "x" + &"}".repeat(10);
        assert_eq!(
            Lexer::new('\\').process_word(&fine, &env(&[])).unwrap(),
            "x"
        );
    }

    #[test]
    fn pattern_modifiers_match_buildkit_cases() {
        let lexer = Lexer::new('\\');
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                r"${FOO#()[]{\}^$.\*\?|\\}",
                &[("FOO", r"()[]{}^$.*?|\x")],
                "x",
            ),
            (r"${FOO%%\**}", &[("FOO", "xx**")], "xx"),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
            ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
            ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
            ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
            (r"${FOO#?\?}", &[("FOO", "???y")], "?y"),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], "a"),
            ("${FOO%}", &[("FOO", "xxyy")], "xxyy"),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                "/foo.*/*.txt - /foo..*.txt",
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                "https://google.de",
            ),
            (
                r"${FOO//\//\/}",
                &[("FOO", "/tmp/foo.txt")],
                r"\/tmp\/foo.txt",
            ),
            ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
            ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO///}", &[], ""),
        ];
        for (word, vars, expected) in cases {
            assert_eq!(
                lexer.process_word(word, &env(vars)).as_deref(),
                Ok(*expected),
                "{word}"
            );
        }
        for bad in [
            "${FOO//ww}",
            "${FOO//}",
            "${FOO=aaa}",
            "${FOO=:aaa}",
            "${FOO=}",
        ] {
            assert!(
                lexer.process_word(bad, &env(&[("FOO", "xxyy")])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reports_matched_and_unmatched_names() {
        let lexer = Lexer::new('\\');
        let vars = env(&[("FOO", "xxx"), ("BAR", "")]);
        let (word, matched, unmatched) = lexer
            .process_word_with_matches("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", &vars)
            .unwrap();
        assert_eq!(word, "xxx bbb ccc");
        assert_eq!(matched.into_iter().collect::<Vec<_>>(), ["BAR", "FOO"]);
        assert_eq!(unmatched.into_iter().collect::<Vec<_>>(), ["BAZ"]);

        let (word, matched, unmatched) = lexer
            .process_word_with_matches("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &vars)
            .unwrap();
        assert_eq!(word, "aaa bbb ");
        assert_eq!(matched.len(), 2);
        assert_eq!(unmatched.into_iter().collect::<Vec<_>>(), ["BAZ"]);

        let (_, matched, unmatched) = lexer.process_word_with_matches("x", &vars).unwrap();
        assert!(matched.is_empty() && unmatched.is_empty());

        let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let platform = env(&[
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
        ]);
        let (word, matched, _) = lexer.process_word_with_matches(release, &platform).unwrap();
        assert_eq!(word, "something-v1.2.3.linux-arm-v7.tar.gz");
        assert_eq!(matched.len(), 4);
    }

    #[test]
    fn skip_unset_env_keeps_references() {
        let lexer = Lexer::new('\\').skip_unset_env(true);
        let vars = env(&[("SET", "v")]);
        assert_eq!(
            lexer.process_word("$X-${X}-$SET", &vars).unwrap(),
            "$X-${X}-v"
        );
        assert_eq!(
            lexer.process_word("${X:-a}${X+b}", &vars).unwrap(),
            "${X:-a}${X+b}"
        );
        assert_eq!(lexer.process_word("${X/a/b}", &vars).unwrap(), "${X/a/b}");
        assert_eq!(lexer.process_word("${X//a/b}", &vars).unwrap(), "${X//a/b}");
        assert_eq!(lexer.process_word("${X:?}", &vars).unwrap(), "${X:?}");
    }

    #[test]
    fn options_keep_quotes_and_escapes() {
        let vars = env(&[("A", "1")]);
        let raw = Lexer::new('\\').raw_quotes(true);
        assert_eq!(raw.process_word("'a' \"$A\"", &vars).unwrap(), "'a' \"1\"");
        let esc = Lexer::new('\\').raw_escapes(true);
        assert_eq!(esc.process_word(r"a\ b\$A", &vars).unwrap(), r"a\ b\$A");
        let literal = Lexer::new('\\').skip_process_quotes(true);
        assert_eq!(literal.process_word("'$A'", &vars).unwrap(), "'1'");
    }

    #[test]
    fn backtick_escape_works_like_backslash() {
        let vars = env(&[("A", "1")]);
        let lexer = Lexer::new('`');
        assert_eq!(lexer.process_word("a`$A\\b", &vars).unwrap(), "a$A\\b");
        assert_eq!(lexer.process_word("\"`\"x\"", &vars).unwrap(), "\"x");
        assert_eq!(lexer.process_words("a` b c", &vars).unwrap(), ["a b", "c"]);
    }

    #[test]
    fn nested_defaults_do_not_break_word_splitting() {
        let lexer = Lexer::new('\\');
        let vars = env(&[("A", "x y")]);
        assert_eq!(
            lexer
                .process_words("pre${NOPE:-a b}post $A", &vars)
                .unwrap(),
            ["prea", "bpost", "x", "y"]
        );
    }

    #[test]
    fn byte_order_mark_at_start_is_skipped() {
        let lexer = Lexer::new('\\');
        assert_eq!(
            lexer.process_word("\u{feff}a\u{feff}", &env(&[])).unwrap(),
            "a\u{feff}"
        );
    }
}
