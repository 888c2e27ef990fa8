//! Feeds arbitrary text to the Dockerfile parser: it must return a result or
//! an error, never panic, and a parsed tree must always dump.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ast) = kiln_dockerfile::parser::parse(text) {
            let _ = ast.dump();
            for child in &ast.children {
                assert!(child.span.start >= 1 && child.span.start <= child.span.end);
            }
        }
    }
});
