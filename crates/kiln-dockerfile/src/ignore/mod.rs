//! `.dockerignore` with Docker's exact semantics (moby/patternmatcher and
//! its `ignorefile` reader), also used for `COPY --exclude`.
//!
//! Hand-written rather than built on a gitignore crate (`ignore`,
//! `globset`): Docker's rules differ from gitignore's. Patterns are always
//! anchored at the context root (`foo` does not match `a/foo`), `*` never
//! crosses `/`, a pattern that matches a directory excludes everything
//! beneath it, the last matching pattern wins, and `[...]` and `\` follow
//! Go's `filepath.Match` and regexp rules.
//!
//! ```
//! use kiln_dockerfile::ignore::DockerIgnore;
//!
//! let ignore = DockerIgnore::parse("# build output\ntarget\n*.log\n!keep.log\n").unwrap();
//! assert!(ignore.matches("target/debug/kiln"));
//! assert!(ignore.matches("server.log"));
//! assert!(!ignore.matches("keep.log"));
//! assert!(!ignore.matches("logs/server.log"), "`*` stays in the top directory");
//! assert!(ignore.may_skip_dir("target"));
//! ```

mod glob;
mod goregex;
mod read;

pub use glob::GlobError;
pub use goregex::GoRegexError;
pub use read::{clean_path, ignore_file_candidates, read_patterns, PatternLine};

use glob::Matcher;

/// A pattern could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IgnoreError {
    /// A `!` with nothing after it.
    #[error("{}illegal exclusion pattern: \"!\"", at_line(*.line))]
    LoneExclamation {
        /// The line in the ignore file, when read from one.
        line: Option<usize>,
    },
    /// A malformed pattern.
    #[error("{}bad pattern {pattern:?}: {source}", at_line(*.line))]
    BadPattern {
        /// The line in the ignore file, when read from one.
        line: Option<usize>,
        /// The pattern as cleaned, without its `!`.
        pattern: String,
        /// What is wrong with it.
        source: GlobError,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!("line {line}: "))
        .unwrap_or_default()
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exception: bool,
    matcher: Matcher,
}

impl Pattern {
    /// The cleaned pattern, without the `!` of an exception.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True for `!pattern`, which re-includes what earlier patterns excluded.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// Whether this pattern alone matches `path` exactly (no parent check).
    pub fn matches_exactly(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }
}

/// A compiled list of ignore patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file (see [`read_patterns`] for
    /// the line rules).
    ///
    /// # Errors
    /// [`IgnoreError`] naming the line and pattern for a lone `!` or a
    /// malformed pattern.
    pub fn parse(text: &str) -> Result<DockerIgnore, IgnoreError> {
        let lines = read_patterns(text);
        let patterns = lines
            .iter()
            .filter_map(|line| compile(&line.pattern, Some(line.line)).transpose())
            .collect::<Result<_, _>>()?;
        Ok(DockerIgnore { patterns })
    }

    /// Compiles a list of patterns as given (for `COPY --exclude`): each is
    /// trimmed and cleaned, empty ones skipped, but a leading `/` is kept, as
    /// Docker's pattern matcher does.
    ///
    /// # Errors
    /// [`IgnoreError`] naming the pattern for a lone `!` or a malformed one.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<DockerIgnore, IgnoreError> {
        let patterns = patterns
            .iter()
            .filter_map(|pattern| compile(pattern.as_ref(), None).transpose())
            .collect::<Result<_, _>>()?;
        Ok(DockerIgnore { patterns })
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// True when there are no patterns (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is an exception (`!pattern`).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is
    /// excluded: the last pattern that matches the path, or any of its parent
    /// directories, decides; an exception re-includes. The path is cleaned
    /// first; the root itself (`.` or empty) is never excluded.
    pub fn matches(&self, rel_path: &str) -> bool {
        let path = clean_path(rel_path);
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            // A rooted path's parents start with "" and "/", as in Go.
            Some(0) => vec!["", "/"],
            Some(end) => path[..end]
                .match_indices('/')
                .map(|(i, _)| &path[..i])
                .chain(std::iter::once(&path[..end]))
                .collect(),
            _ => Vec::new(),
        };
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could change the answer is worth testing.
            if pattern.exception != excluded {
                continue;
            }
            let hit = pattern.matcher.is_match(&path)
                || parents
                    .iter()
                    .any(|parent| pattern.matcher.is_match(parent));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether a walk may skip the directory `rel_dir` without looking
    /// inside: it is excluded, and no exception could re-include anything
    /// beneath it. The rule is BuildKit's context walk's: it holds when there
    /// are no exceptions, or when every exception, less a trailing `/**` or
    /// `/*`, is a plain path (none of `*?[]^\`) that does not lie under
    /// `rel_dir`.
    pub fn may_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.matches(rel_dir) {
            return false;
        }
        let dir_slash = format!("{}/", clean_path(rel_dir));
        self.patterns.iter().filter(|p| p.exception).all(|p| {
            let stem = p.text_without_trailing_glob();
            let literal = !stem.contains(['*', '?', '[', ']', '^', '\\']);
            literal && !format!("{stem}/").starts_with(&dir_slash)
        })
    }
}

impl Pattern {
    /// The pattern less one trailing `/**`, then less one trailing `/*`.
    fn text_without_trailing_glob(&self) -> &str {
        let text = self.text.strip_suffix("/**").unwrap_or(&self.text);
        text.strip_suffix("/*").unwrap_or(text)
    }
}

/// Trims, cleans and compiles one pattern; `None` for a blank one.
fn compile(raw: &str, line: Option<usize>) -> Result<Option<Pattern>, IgnoreError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let cleaned = clean_path(trimmed);
    let (exception, text) = match cleaned.strip_prefix('!') {
        Some("") => return Err(IgnoreError::LoneExclamation { line }),
        Some(rest) => (true, rest.to_string()),
        None => (false, cleaned),
    };
    let matcher = Matcher::compile(&text).map_err(|source| IgnoreError::BadPattern {
        line,
        pattern: text.clone(),
        source,
    })?;
    Ok(Some(Pattern {
        text,
        exception,
        matcher,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_line_and_pattern() {
        let err = DockerIgnore::parse("ok\n\nbad[\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: bad pattern \"bad[\": syntax error in pattern"
        );
        let err = DockerIgnore::parse("a\n!\n").unwrap_err();
        assert_eq!(err, IgnoreError::LoneExclamation { line: Some(2) });
        let err = DockerIgnore::from_patterns(&["[z-a]".to_string()]).unwrap_err();
        assert!(
            err.to_string().starts_with("bad pattern \"[z-a]\""),
            "{err}"
        );
    }

    #[test]
    fn parent_list_covers_every_ancestor() {
        let ignore = DockerIgnore::from_patterns(&["a/b"]).unwrap();
        assert!(ignore.matches("a/b/c/d/e"));
        assert!(!ignore.matches("a/bc/d"));
        let top = DockerIgnore::from_patterns(&["a"]).unwrap();
        assert!(top.matches("a/b/c"));
        assert!(!top.matches("b/a"));
    }

    #[test]
    fn skipping_needs_exclusion_and_no_reachable_exception() {
        let ignore = DockerIgnore::parse("node_modules\ndocs\n!docs/README.md\n").unwrap();
        assert!(ignore.may_skip_dir("node_modules"));
        assert!(!ignore.may_skip_dir("docs"), "an exception lies beneath");
        assert!(!ignore.may_skip_dir("src"), "not excluded at all");
        let wild = DockerIgnore::parse("vendor\n!**/keep.txt\n").unwrap();
        assert!(wild.matches("vendor"));
        assert!(
            !wild.may_skip_dir("vendor"),
            "a wildcard exception may reach anywhere"
        );
        // `docs2` shares a prefix with `docs` but is not beneath it.
        let sibling = DockerIgnore::parse("*\n!docs/x\n").unwrap();
        assert!(sibling.may_skip_dir("docs2"));
        assert!(!sibling.may_skip_dir("docs"));
    }
}
