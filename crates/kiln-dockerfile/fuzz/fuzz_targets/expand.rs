//! Feeds arbitrary words to the expansion lexer, with both escape characters
//! and every option combination: it must return a result or an error, never
//! panic, and the names it reports as set or unset agree with the environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

use kiln_dockerfile::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // An optional environment before the first NUL: `NAME=value` lines.
    let (env_text, word) = text.split_once('\0').unwrap_or(("", text));
    let env: HashMap<String, String> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let escape = if flags & 1 == 0 { '\\' } else { '`' };
    let lexer = Lexer::new(escape)
        .raw_quotes(flags & 2 != 0)
        .raw_escapes(flags & 4 != 0)
        .skip_unset_env(flags & 8 != 0)
        .skip_process_quotes(flags & 16 != 0);
    if let Ok(expansion) = lexer.expand(word, &env) {
        for name in &expansion.matched {
            assert!(env.contains_key(name), "matched {name:?} is not set");
        }
        for name in &expansion.unmatched {
            assert!(!env.contains_key(name), "unmatched {name:?} is set");
        }
    }
});
