//! Per-instruction argument rules (BuildKit's dispatch table of line
//! parsers): each keyword shapes its argument text into the node's `args`.

use super::split::{split_blanks, split_command};
use super::ParseErrorKind;
use crate::ast::{go_lower, Node};

/// The shaped arguments of one instruction.
#[derive(Debug, Default)]
struct Args {
    values: Vec<String>,
    json: bool,
    onbuild: Option<Box<Node>>,
}

impl Args {
    fn words(values: Vec<String>) -> Self {
        Args {
            values,
            ..Args::default()
        }
    }
}

/// Builds the node for one logical (continuation-joined) instruction line.
pub(super) fn node_from_line(
    line: &str,
    escape: char,
    comments: Vec<String>,
) -> Result<Node, ParseErrorKind> {
    let (keyword, flags, rest) = split_command(line);
    let keyword = go_lower(&keyword);
    let args = match keyword.as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(&rest)?,
        "arg" => Args::words(parse_words(&rest, escape)),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(&rest)?,
        "env" => name_val(&rest, "ENV", escape)?,
        "label" => name_val(&rest, "LABEL", escape)?,
        "expose" | "from" => Args::words(whitespace_delimited(&rest)),
        "healthcheck" => health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => Args::words(string(&rest)),
        "onbuild" => sub_command(&rest, escape)?,
        // Unknown instructions are reported when instructions are typed;
        // BuildKit keeps them with one empty argument.
        _ => Args::words(vec![String::new()]),
    };
    Ok(Node {
        keyword,
        flags,
        args: args.values,
        json: args.json,
        onbuild: args.onbuild,
        original: line.to_string(),
        prev_comment: comments,
        ..Node::default()
    })
}

/// ONBUILD: the rest of the line is an instruction of its own.
fn sub_command(rest: &str, escape: char) -> Result<Args, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    let trigger = node_from_line(rest, escape, Vec::new())?;
    match trigger.keyword.as_str() {
        "onbuild" => return Err(ParseErrorKind::OnbuildChained),
        "from" | "maintainer" => {
            return Err(ParseErrorKind::OnbuildTriggerNotAllowed {
                instruction: trigger.keyword.to_uppercase(),
            })
        }
        _ => {}
    }
    Ok(Args {
        onbuild: Some(Box::new(trigger)),
        ..Args::default()
    })
}

/// The whole argument text as one value (none when empty).
fn string(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    }
}

/// Words separated by ASCII blanks.
fn whitespace_delimited(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    split_blanks(rest, None)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Why the argument text is not an exec-form array.
enum NotJson {
    /// Not JSON at all (or not an array): fall back to the shell form.
    Invalid,
    /// A JSON array with a non-string element: an error.
    NotStrings,
}

/// Parses a JSON array of strings.
fn json_array(rest: &str) -> Result<Vec<String>, NotJson> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(NotJson::Invalid);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(rest).map_err(|_| NotJson::Invalid)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NotJson::NotStrings),
        })
        .collect()
}

/// Exec form when the text is a JSON array of strings, else the whole text as
/// one shell-form value.
fn maybe_json(rest: &str) -> Result<Args, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match json_array(rest) {
        Ok(values) => Ok(Args {
            values,
            json: true,
            onbuild: None,
        }),
        Err(NotJson::NotStrings) => Err(ParseErrorKind::JsonNotStringArray),
        Err(NotJson::Invalid) => Ok(Args::words(vec![rest.to_string()])),
    }
}

/// Exec form when the text is a JSON array of strings, else blank-separated words.
fn maybe_json_to_list(rest: &str) -> Result<Args, ParseErrorKind> {
    match json_array(rest) {
        Ok(values) => Ok(Args {
            values,
            json: true,
            onbuild: None,
        }),
        Err(NotJson::NotStrings) => Err(ParseErrorKind::JsonNotStringArray),
        Err(NotJson::Invalid) => Ok(Args::words(whitespace_delimited(rest))),
    }
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`), then a command in either form.
fn health_config(rest: &str) -> Result<Args, ParseErrorKind> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let kind = &rest[..sep];
    let command = maybe_json(rest[sep..].trim_start())?;
    let mut values = vec![kind.to_string()];
    values.extend(command.values);
    Ok(Args {
        values,
        json: command.json,
        onbuild: None,
    })
}

/// ENV and LABEL: `k=v ...`, or the legacy `k v` form (the rest of the line is
/// the value). Each pair becomes `key, value, separator`.
fn name_val(rest: &str, instruction: &'static str, escape: char) -> Result<Args, ParseErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Args::default());
    };
    if !first.contains('=') {
        let parts = split_blanks(rest, Some(2));
        let [key, value] = parts.as_slice() else {
            return Err(ParseErrorKind::NameValueMissingValue { instruction });
        };
        return Ok(Args::words(vec![
            key.to_string(),
            value.to_string(),
            String::new(),
        ]));
    }
    let mut values = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ParseErrorKind::NameValueMissingEquals { word });
        };
        values.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(Args::words(values))
}

#[derive(PartialEq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Splits on whitespace outside quotes. Quotes and escapes are kept in the
/// words (they are removed later, by word expansion); a trailing escape is
/// dropped.
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();

    while let Some(ch) = chars.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Spaces => unreachable!("handled above"),
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    let Some(escaped) = chars.next() else {
                        continue;
                    };
                    word.push(ch);
                    word.push(escaped);
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    let Some(escaped) = chars.next() else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(ch);
                    word.push(escaped);
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(line: &str) -> Node {
        node_from_line(line, '\\', Vec::new()).unwrap()
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d\ e 'f\'"#, '\\'),
            vec![r#"a="b c""#, r"d\ e", r"'f\'"]
        );
    }

    #[test]
    fn words_drop_trailing_escape() {
        assert_eq!(parse_words(r"a b\", '\\'), vec!["a", "b"]);
    }

    #[test]
    fn empty_quotes_make_a_word() {
        assert_eq!(parse_words(r#"a """#, '\\'), vec!["a", r#""""#]);
    }

    #[test]
    fn env_forms() {
        assert_eq!(node("ENV a b c").args, vec!["a", "b c", ""]);
        assert_eq!(node("ENV a=1 b=2").args, vec!["a", "1", "=", "b", "2", "="]);
        assert_eq!(node("ENV a=").args, vec!["a", "", "="]);
    }

    #[test]
    fn env_errors() {
        assert_eq!(
            node_from_line("ENV a", '\\', Vec::new()),
            Err(ParseErrorKind::NameValueMissingValue { instruction: "ENV" })
        );
        assert_eq!(
            node_from_line("LABEL a=1 b", '\\', Vec::new()),
            Err(ParseErrorKind::NameValueMissingEquals { word: "b".into() })
        );
    }

    #[test]
    fn json_and_fallback() {
        let exec = node(r#"CMD ["a", "b"]"#);
        assert!(exec.json);
        assert_eq!(exec.args, vec!["a", "b"]);
        let shell = node(r#"CMD ["a", "b""#);
        assert!(!shell.json);
        assert_eq!(shell.args, vec![r#"["a", "b""#]);
        let list = node("COPY [a] b");
        assert_eq!(list.args, vec!["[a]", "b"]);
        assert_eq!(
            node_from_line(r#"RUN ["a", 1]"#, '\\', Vec::new()),
            Err(ParseErrorKind::JsonNotStringArray)
        );
    }

    #[test]
    fn arg_keeps_words() {
        assert_eq!(node(r#"ARG a b="c d""#).args, vec!["a", r#"b="c d""#]);
    }

    #[test]
    fn healthcheck_type_then_command() {
        let n = node(r#"HEALTHCHECK --interval=5s CMD ["x"]"#);
        assert_eq!(n.flags, vec!["--interval=5s"]);
        assert_eq!(n.args, vec!["CMD", "x"]);
        assert!(n.json);
        assert_eq!(node("HEALTHCHECK NONE").args, vec!["NONE"]);
        assert!(node("HEALTHCHECK").args.is_empty());
    }

    #[test]
    fn unknown_instruction_has_one_empty_arg() {
        let n = node("FOO bar baz");
        assert_eq!(n.keyword, "foo");
        assert_eq!(n.args, vec![""]);
    }

    #[test]
    fn onbuild_nests_and_rejects_bad_triggers() {
        let n = node("ONBUILD --x RUN --mount=a echo hi");
        assert_eq!(n.flags, vec!["--x"]);
        let trigger = n.onbuild.unwrap();
        assert_eq!(trigger.keyword, "run");
        assert_eq!(trigger.flags, vec!["--mount=a"]);
        assert_eq!(trigger.args, vec!["echo hi"]);
        for (line, err) in [
            ("ONBUILD ONBUILD RUN x", ParseErrorKind::OnbuildChained),
            (
                "ONBUILD from alpine",
                ParseErrorKind::OnbuildTriggerNotAllowed {
                    instruction: "FROM".into(),
                },
            ),
            (
                "ONBUILD MAINTAINER me",
                ParseErrorKind::OnbuildTriggerNotAllowed {
                    instruction: "MAINTAINER".into(),
                },
            ),
        ] {
            assert_eq!(node_from_line(line, '\\', Vec::new()), Err(err), "{line}");
        }
    }
}
