//! `.dockerignore` behaviour, table-driven from the cases moby/patternmatcher
//! and Go's `filepath.Match` tests check, plus exceptions, `**`, parent
//! directories and the walk-skipping rule.

use kiln_dockerfile::ignore::{DockerIgnore, IgnoreError};

fn excluded(patterns: &[&str], path: &str) -> bool {
    DockerIgnore::from_patterns(patterns)
        .unwrap_or_else(|err| panic!("patterns {patterns:?}: {err}"))
        .matches(path)
}

/// (pattern, path, excluded) — one pattern each; a parent directory match
/// counts, so `**/dir` excludes `dir/file`.
const SINGLE: &[(&str, &str, bool)] = &[
    ("**", "file", true),
    ("**", "file/", true),
    ("**/", "file", true),
    ("**/", "file/", true),
    ("**", "/", true),
    ("**/", "/", true),
    ("**", "dir/file", true),
    ("**/", "dir/file", true),
    ("**", "dir/file/", true),
    ("**/", "dir/file/", true),
    ("**/**", "dir/file", true),
    ("**/**", "dir/file/", true),
    ("dir/**", "dir/file", true),
    ("dir/**", "dir/file/", true),
    ("dir/**", "dir/dir2/file", true),
    ("dir/**", "dir/dir2/file/", true),
    ("**/dir", "dir", true),
    ("**/dir", "dir/file", true),
    ("**/dir2/*", "dir/dir2/file", true),
    ("**/dir2/*", "dir/dir2/file/", true),
    ("**/dir2/**", "dir/dir2/dir3/file", true),
    ("**/dir2/**", "dir/dir2/dir3/file/", true),
    ("**file", "file", true),
    ("**file", "dir/file", true),
    ("**/file", "dir/file", true),
    ("**file", "dir/dir/file", true),
    ("**/file", "dir/dir/file", true),
    ("**/file*", "dir/dir/file", true),
    ("**/file*", "dir/dir/file.txt", true),
    ("**/file*txt", "dir/dir/file.txt", true),
    ("**/file*.txt", "dir/dir/file.txt", true),
    ("**/file*.txt*", "dir/dir/file.txt", true),
    ("**/**/*.txt", "dir/dir/file.txt", true),
    ("**/**/*.txt2", "dir/dir/file.txt", false),
    ("**/*.txt", "file.txt", true),
    ("**/**/*.txt", "file.txt", true),
    ("a**/*.txt", "a/file.txt", true),
    ("a**/*.txt", "a/dir/file.txt", true),
    ("a**/*.txt", "a/dir/dir/file.txt", true),
    ("a/*.txt", "a/dir/file.txt", false),
    ("a/*.txt", "a/file.txt", true),
    ("a/*.txt**", "a/file.txt", true),
    ("a[b-d]e", "ae", false),
    ("a[b-d]e", "ace", true),
    ("a[b-d]e", "aae", false),
    ("a[^b-d]e", "aze", true),
    (".*", ".foo", true),
    (".*", "foo", false),
    ("abc.def", "abcdef", false),
    ("abc.def", "abc.def", true),
    ("abc.def", "abcZdef", false),
    ("abc?def", "abcZdef", true),
    ("abc?def", "abcdef", false),
    ("**/foo/bar", "foo/bar", true),
    ("**/foo/bar", "dir/foo/bar", true),
    ("**/foo/bar", "dir/dir2/foo/bar", true),
    ("abc/**", "abc", false),
    ("abc/**", "abc/def", true),
    ("abc/**", "abc/def/ghi", true),
    ("**/.foo", ".foo", true),
    ("**/.foo", "bar.foo", false),
    ("a(b)c/def", "a(b)c/def", true),
    ("a(b)c/def", "a(b)c/xyz", false),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        true,
    ),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        true,
    ),
    ("a\\\\", "a\\", true),
    ("a\\*b", "a*b", true),
    // From Go's filepath.Match tests, as Docker runs them.
    ("abc", "abc", true),
    ("*", "abc", true),
    ("*c", "abc", true),
    ("a*", "a", true),
    ("a*", "abc", true),
    ("a*", "ab/c", true),
    ("a*/b", "abc/b", true),
    ("a*/b", "a/c/b", false),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
    ("a*b?c*x", "abxbbxdbxebxczzx", true),
    ("a*b?c*x", "abxbbxdbxebxczzy", false),
    ("ab[c]", "abc", true),
    ("ab[b-d]", "abc", true),
    ("ab[e-g]", "abc", false),
    ("ab[^c]", "abc", false),
    ("ab[^b-d]", "abc", false),
    ("ab[^e-g]", "abc", true),
    ("a\\*b", "ab", false),
    ("a?b", "a☺b", true),
    ("a[^a]b", "a☺b", true),
    ("a???b", "a☺b", false),
    ("a[^a][^a][^a]b", "a☺b", false),
    ("[a-ζ]*", "α", true),
    ("*[a-ζ]", "A", false),
    ("a?b", "a/b", false),
    ("a*b", "a/b", false),
    ("[\\]a]", "]", true),
    ("[\\-]", "-", true),
    ("[x\\-]", "x", true),
    ("[x\\-]", "-", true),
    ("[x\\-]", "z", false),
    ("[\\-x]", "x", true),
    ("[\\-x]", "-", true),
    ("[\\-x]", "a", false),
    ("*x", "xxx", true),
    // Anchored at the context root, unlike gitignore.
    ("foo", "a/foo", false),
    ("foo", "foo/bar/baz", true),
    ("/foo/./bar/", "foo/bar/x", false),
];

#[test]
fn single_pattern_table() {
    let failures: Vec<String> = SINGLE
        .iter()
        .filter(|(pattern, path, want)| excluded(&[pattern], path) != *want)
        .map(|(pattern, path, want)| format!("pattern {pattern:?} path {path:?}: want {want}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn leading_slash_is_dropped_only_when_reading_a_file() {
    // COPY --exclude patterns keep it (Docker's matcher never strips it) ...
    assert!(!excluded(&["/foo/./bar/"], "foo/bar"));
    // ... while the ignore-file reader removes it.
    let file = DockerIgnore::parse("/foo/./bar/\n").unwrap();
    assert!(file.matches("foo/bar/x"));
    assert_eq!(file.patterns()[0].text(), "foo/bar");
}

#[test]
fn bad_patterns_are_rejected_with_the_pattern_named() {
    for bad in [
        "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
    ] {
        let err = DockerIgnore::from_patterns(&[bad]).expect_err(bad);
        assert!(
            matches!(&err, IgnoreError::BadPattern { pattern, .. } if pattern == bad),
            "{bad}: {err}"
        );
    }
    assert!(matches!(
        DockerIgnore::from_patterns(&["!"]),
        Err(IgnoreError::LoneExclamation { line: None })
    ));
}

/// (patterns, path, excluded): exceptions and last-match-wins.
const MULTI: &[(&[&str], &str, bool)] = &[
    (&["**", "!util/docker/web"], "util/docker/web/foo", false),
    (
        &["**", "!util/docker/web", "util/docker/web/foo"],
        "util/docker/web/foo",
        true,
    ),
    (
        &[
            "**",
            "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        ],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        false,
    ),
    (
        &["**", "!dist/*.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        false,
    ),
    (&["!fileutils.go", "*.go"], "fileutils.go", true),
    (&["docs", "!docs/README.md"], "docs/README.md", false),
    (&["docs/", "!docs/README.md"], "docs/README.md", false),
    (&["docs/*", "!docs/README.md"], "docs/README.md", false),
    (&["*.go", "!fileutils.go"], "fileutils.go", false),
    (&["*.go"], ".", false),
    (&[], "any/path/there", false),
    (&["docs", "!docs/README.md"], "docs/other.md", true),
    (
        &["*.md", "!README*.md", "README-secret.md"],
        "README-secret.md",
        true,
    ),
    (
        &["*.md", "!README*.md", "README-secret.md"],
        "README.md",
        false,
    ),
    (
        &["*.md", "!README*.md", "README-secret.md"],
        "notes.md",
        true,
    ),
];

#[test]
fn multi_pattern_table() {
    let failures: Vec<String> = MULTI
        .iter()
        .filter(|(patterns, path, want)| excluded(patterns, path) != *want)
        .map(|(patterns, path, want)| format!("patterns {patterns:?} path {path:?}: want {want}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ignore_file_text_end_to_end() {
    let text = "\u{feff}# build output\n\
                target/\n\
                **/*.tmp\n\
                \n\
                *.md\n\
                ! README.md\n\
                /secrets\n\
                .git\n";
    let ignore = DockerIgnore::parse(text).unwrap();
    let texts: Vec<(&str, bool)> = ignore
        .patterns()
        .iter()
        .map(|p| (p.text(), p.is_exception()))
        .collect();
    assert_eq!(
        texts,
        [
            ("target", false),
            ("**/*.tmp", false),
            ("*.md", false),
            ("README.md", true),
            ("secrets", false),
            (".git", false),
        ]
    );
    assert!(ignore.has_exceptions());
    for (path, want) in [
        ("target/release/kiln", true),
        ("src/deep/x.tmp", true),
        ("x.tmp", true),
        ("CHANGES.md", true),
        ("README.md", false),
        ("docs/guide.md", false),
        ("secrets/key", true),
        (".git/HEAD", true),
        (".gitignore", false),
        ("src/main.rs", false),
        ("./target/x", true),
        ("", false),
    ] {
        assert_eq!(ignore.matches(path), want, "{path:?}");
    }
}

#[test]
fn directories_are_skipped_only_when_nothing_beneath_can_return() {
    let ignore = DockerIgnore::parse("target\nvendor\n!vendor/keep\nlogs\n").unwrap();
    assert!(ignore.may_skip_dir("target"));
    assert!(ignore.may_skip_dir("logs"));
    assert!(!ignore.may_skip_dir("vendor"));
    assert!(ignore.matches("vendor/other"));
    assert!(!ignore.matches("vendor/keep"));
    assert!(!ignore.may_skip_dir("src"));

    // Any wildcard exception may match anywhere: never skip.
    let wild = DockerIgnore::parse("target\n!*/keep\n").unwrap();
    assert!(wild.matches("target"));
    assert!(!wild.may_skip_dir("target"));
    assert!(
        !wild.matches("target/keep"),
        "the exception does re-include it"
    );

    // Without exceptions, every excluded directory can go.
    let plain = DockerIgnore::parse("**/node_modules\n").unwrap();
    assert!(plain.may_skip_dir("web/app/node_modules"));
    assert!(!plain.may_skip_dir("web/app"));
}

mod never_panics {
    use super::DockerIgnore;
    use proptest::prelude::*;

    /// Patterns and paths built from the characters the matcher treats
    /// specially, plus anything at all.
    fn text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("*".to_string()),
            Just("**".to_string()),
            Just("?".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("^".to_string()),
            Just("-".to_string()),
            Just("\\".to_string()),
            Just("/".to_string()),
            Just("!".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just(":".to_string()),
            Just("{".to_string()),
            Just("p".to_string()),
            Just("x".to_string()),
            "[a-c0-9]{1,3}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn compiling_and_matching_never_panic(
            patterns in proptest::collection::vec(text(), 0..4),
            path in text(),
        ) {
            if let Ok(ignore) = DockerIgnore::from_patterns(&patterns) {
                let excluded = ignore.matches(&path);
                // Skipping a directory implies it is excluded.
                prop_assert!(!ignore.may_skip_dir(&path) || excluded);
            }
            let file = patterns.join("\n");
            let _ = DockerIgnore::parse(&file).map(|ignore| ignore.matches(&path));
        }
    }
}

#[test]
fn trailing_globs_on_exceptions_still_allow_skipping() {
    // `!docs/**` is the plain path `docs` for the walk rule.
    let ignore = DockerIgnore::parse("*\n!docs/**\n!site/*\n").unwrap();
    assert!(ignore.may_skip_dir("build"));
    assert!(!ignore.may_skip_dir("docs"));
    assert!(!ignore.may_skip_dir("site"));
    // But a wildcard elsewhere in an exception disables skipping.
    let wild = DockerIgnore::parse("*\n!d*cs/**\n").unwrap();
    assert!(!wild.may_skip_dir("build"));
}
