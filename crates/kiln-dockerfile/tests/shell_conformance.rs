//! BuildKit's own expansion tables, run against [`Lexer`].
//!
//! `envVarTest` lines are `platform | word | expected` (`A` all, `U` Unix,
//! `W` Windows, skipped here); `error` means the word must fail. `wordsTest`
//! lines are `word | w1,w2,...`, with `ENV name=value` lines adding to the
//! environment in order; the word is trimmed, the expected side only loses
//! its leading spaces (trailing ones are part of the last word).
//!
//! BuildKit also names a second `wordsTest` pass with raw quotes and unset
//! variables kept, but its loop reads the already-consumed file, so that pass
//! checks nothing there. Here it is a real pass: its expectations are derived
//! from the plain ones for lines where the two modes must agree (no quotes,
//! no unset variables), and the remaining lines are listed with their
//! raw-mode results in `RAW_MODE_EXPECTED` below.

use std::path::PathBuf;

use kiln_dockerfile::shell::Lexer;

fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/buildkit/shell")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn pairs(list: &[&str]) -> Vec<(String, String)> {
    list.iter()
        .map(|entry| {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn env_var_test_table() {
    let text = data("envVarTest");
    let env = pairs(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
    let lexer = Lexer::new('\\');
    let mut checked = 0;
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(fields.len(), 3, "envVarTest line {number}: {line:?}");
        let (platform, source, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("envVarTest line {number}: unknown platform {other:?}"),
        }
        checked += 1;
        let got = lexer.process_word(source, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => expected != "error" && word == expected,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {number}: {source:?} expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked > 200,
        "only {checked} envVarTest lines were checked"
    );
}

/// Raw-mode (raw quotes, unset variables kept) results for the `wordsTest`
/// lines whose result differs from plain mode: line number, word, words.
const RAW_MODE_EXPECTED: &[(usize, &str, &[&str])] = &[
    // `hi` is still unset on line 2, so the reference stays.
    (2, "hello${hi}bye", &["hello${hi}bye"]),
    (7, "hello\"${space}\"bye", &["hello\"abc  def\"bye"]),
    (8, "hello \"${space}\"bye", &["hello", "\"abc  def\"bye"]),
    (11, "hello\"${leading}\" def", &["hello\"  ab c\"", "def"]),
    (12, "hello\"${leading}\"", &["hello\"  ab c\""]),
    (18, "hello\"${trailing}\"d", &["hello\"ab c   \"d"]),
    (20, "hel\"lo${trailing}\"", &["hel\"loab c   \""]),
    (21, "hello\" there  \"", &["hello\" there  \""]),
    (26, "hello\"\\\\there\"", &["hello\"\\there\""]),
    (27, "hello\"\\there\"", &["hello\"\\there\""]),
    (28, "hello'\\\\there'", &["hello'\\\\there'"]),
    (29, "hello'\\there'", &["hello'\\there'"]),
    (30, "hello'$there'", &["hello'$there'"]),
];

fn run_words_table(lexer: Lexer, raw_mode: bool) {
    let text = data("wordsTest");
    let mut env: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut raw_rows_used = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let entry = rest.trim_start_matches(' ');
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 2, "wordsTest line {number}: {line:?}");
        let word = fields[0].trim();
        let mut expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
        if raw_mode {
            if let Some((_, raw_word, raw)) =
                RAW_MODE_EXPECTED.iter().find(|(n, _, _)| *n == number)
            {
                assert_eq!(
                    *raw_word, word,
                    "raw-mode row for line {number} names another word"
                );
                expected = raw.to_vec();
                raw_rows_used += 1;
            }
        }
        checked += 1;
        let got = match lexer.process_words(word, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!(
                "line {number}: {word:?} expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 24, "only {checked} wordsTest lines were checked");
    if raw_mode {
        assert_eq!(
            raw_rows_used,
            RAW_MODE_EXPECTED.len(),
            "every raw-mode row must name a wordsTest line"
        );
    }
}

#[test]
fn words_test_table_plain() {
    run_words_table(Lexer::new('\\'), false);
}

#[test]
fn words_test_table_raw_quotes_skip_unset() {
    run_words_table(Lexer::new('\\').raw_quotes(true).skip_unset_env(true), true);
}
