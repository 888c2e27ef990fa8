//! Reading an ignore file into patterns (moby/patternmatcher's
//! `ignorefile.ReadAll`), path cleaning (Go's `filepath.Clean` on Unix), and
//! which ignore file applies to a Dockerfile.

/// One pattern line of an ignore file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternLine {
    /// The line number in the file.
    pub line: usize,
    /// The normalized pattern, with its leading `!` if it is an exception.
    pub pattern: String,
}

/// Splits ignore-file text into patterns with Docker's rules: a UTF-8 byte
/// order mark is dropped; lines starting with `#` (before trimming) are
/// comments; lines are trimmed and blank ones skipped; `!` marks an
/// exception (space after it allowed); each path is cleaned and a leading
/// `/` dropped, so `/a/./b/` and `a/b` are the same pattern.
pub fn read_patterns(text: &str) -> Vec<PatternLine> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut patterns = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.starts_with('#') {
            continue;
        }
        let mut pattern = raw.trim();
        if pattern.is_empty() {
            continue;
        }
        let exception = pattern.starts_with('!');
        if exception {
            pattern = pattern[1..].trim();
        }
        let mut normalized = String::new();
        if !pattern.is_empty() {
            normalized = clean_path(pattern);
            if normalized.len() > 1 {
                if let Some(rest) = normalized.strip_prefix('/') {
                    normalized = rest.to_string();
                }
            }
        }
        if exception {
            normalized.insert(0, '!');
        }
        patterns.push(PatternLine {
            line: index + 1,
            pattern: normalized,
        });
    }
    patterns
}

/// Go's `filepath.Clean` for `/`-separated paths: repeated slashes, `.`
/// elements and `dir/..` pairs go away, `..` at the root is dropped, and an
/// empty result is `.`.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The ignore files that may apply to a build, in order of precedence; use
/// the first that exists.
///
/// 1. `<Dockerfile path>.dockerignore`, next to the Dockerfile (for
///    `build/app.Dockerfile`, `build/app.Dockerfile.dockerignore`), in the
///    same terms as `dockerfile_path` (relative to the same directory).
/// 2. `.dockerignore` at the root of the build context.
///
/// When the Dockerfile comes from standard input (`-`) or the path has no
/// file name, only the context root's file applies.
pub fn ignore_file_candidates(dockerfile_path: &str) -> Vec<String> {
    let mut candidates = Vec::with_capacity(2);
    let name = dockerfile_path.rsplit('/').next().unwrap_or("");
    if !name.is_empty() && name != "." && name != ".." && dockerfile_path != "-" {
        candidates.push(format!("{dockerfile_path}.dockerignore"));
    }
    candidates.push(".dockerignore".to_string());
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go() {
        let cases = [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_path(input), expected, "{input:?}");
        }
    }

    #[test]
    fn reads_like_docker() {
        let text =
            "\u{feff}# comment\n\n  *.o  \r\n/abs/./dir/\n! keep.o\n #not a comment\n!/\n/\n";
        let got: Vec<(usize, String)> = read_patterns(text)
            .into_iter()
            .map(|p| (p.line, p.pattern))
            .collect();
        let want = vec![
            (3, "*.o".to_string()),
            (4, "abs/dir".to_string()),
            (5, "!keep.o".to_string()),
            (6, "#not a comment".to_string()),
            (7, "!/".to_string()),
            (8, "/".to_string()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn lone_exclamation_is_kept_for_the_matcher_to_reject() {
        let got = read_patterns("!\n!   \n");
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|p| p.pattern == "!"));
    }

    #[test]
    fn dockerfile_specific_file_comes_first() {
        assert_eq!(
            ignore_file_candidates("build/app.Dockerfile"),
            ["build/app.Dockerfile.dockerignore", ".dockerignore"]
        );
        assert_eq!(
            ignore_file_candidates("Dockerfile"),
            ["Dockerfile.dockerignore", ".dockerignore"]
        );
        assert_eq!(ignore_file_candidates("-"), [".dockerignore"]);
        assert_eq!(ignore_file_candidates("dir/"), [".dockerignore"]);
    }
}
