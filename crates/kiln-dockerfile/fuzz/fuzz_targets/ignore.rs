//! Feeds arbitrary `.dockerignore` text and paths to the matcher: parsing
//! returns patterns or an error, matching never panics, and a directory that
//! `may_skip_dir` says can be skipped never holds a path that is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;

use kiln_dockerfile::ignore::{clean_path, DockerIgnore};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Patterns, then a NUL, then one path per line to match.
    let (patterns, paths) = text.split_once('\0').unwrap_or((text, "a/b/c"));
    let Ok(ignore) = DockerIgnore::parse(patterns) else {
        return;
    };
    for path in paths.lines() {
        let cleaned = clean_path(path);
        let ignored = ignore.matches(&cleaned);
        // Skipping a directory must never lose a path inside it that is
        // kept. Only for relative paths, the only kind the context walk asks
        // about: for rooted ones, "/" counts as a parent of "/a" but not of
        // "/a/b", exactly as in Docker's pattern matcher.
        if cleaned.starts_with('/') {
            continue;
        }
        if let Some((dir, _)) = cleaned.rsplit_once('/') {
            if ignore.may_skip_dir(dir) {
                assert!(ignored, "{dir:?} may be skipped but {cleaned:?} is kept");
            }
        }
    }
});
