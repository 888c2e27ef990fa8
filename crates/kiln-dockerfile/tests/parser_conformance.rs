//! BuildKit's parser corpus: every `testfiles/<case>/Dockerfile` must dump to
//! its `result` byte for byte, every `testfiles-negative` case must fail, and
//! `testfile-line` must have BuildKit's line spans.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_dockerfile::ast::Span;
use kiln_dockerfile::parser::parse;

fn corpus(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/buildkit/parser")
        .join(dir)
}

fn cases(dir: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(corpus(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn every_testfile_dumps_like_buildkit() {
    let cases = cases("testfiles");
    assert_eq!(cases.len(), 33, "the corpus has 33 cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected = read(&case.join("result"));
        match parse(&read(&case.join("Dockerfile"))) {
            // The result file is `Dump()` followed by one newline.
            Ok(ast) if format!("{}\n", ast.dump()) == expected => {}
            Ok(ast) => failures.push(format!(
                "{name}: dump differs\n--- expected\n{expected}--- got\n{}\n",
                ast.dump()
            )),
            Err(e) => failures.push(format!("{name}: parse failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_negative_testfile_fails() {
    let cases = cases("testfiles-negative");
    assert_eq!(cases.len(), 4, "the corpus has 4 negative cases");
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let result = parse(&read(&case.join("Dockerfile")));
        assert!(result.is_err(), "{name} parsed but must fail: {result:?}");
    }
}

#[test]
fn negative_testfiles_name_their_line() {
    let dir = corpus("testfiles-negative");
    let err = |case: &str| parse(&read(&dir.join(case).join("Dockerfile"))).unwrap_err();
    assert_eq!(
        err("env_no_value").to_string(),
        "line 3: ENV must have two arguments"
    );
    assert_eq!(err("shykes-nested-json").line, 1);
    assert_eq!(
        err("only_comments").to_string(),
        "line 3: file with no instructions"
    );
}

#[test]
fn testfile_line_has_buildkit_spans() {
    let ast = parse(&read(&corpus("testfile-line").join("Dockerfile"))).unwrap();
    assert_eq!(ast.span(), Span { start: 5, end: 31 });
    let spans: Vec<(usize, usize)> = ast
        .children
        .iter()
        .map(|c| (c.span.start, c.span.end))
        .collect();
    assert_eq!(spans, vec![(5, 5), (11, 12), (17, 31)]);
}
