//! "Did you mean ...?" hints for misspelled instruction names, flags and
//! mount keys, after BuildKit's `util/suggest` (nearest name by edit distance).

/// The option nearest to `word` by Levenshtein distance, when it is close
/// enough to be a plausible typo (at most half the word's length, and not
/// identical). Comparison ignores case unless `case_sensitive`.
pub fn nearest<'a>(word: &str, options: &[&'a str], case_sensitive: bool) -> Option<&'a str> {
    if word.is_empty() {
        return None;
    }
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let word = fold(word);
    let (best, distance) = options
        .iter()
        .map(|o| (*o, strsim::levenshtein(&word, &fold(o))))
        .min_by_key(|(_, d)| *d)?;
    (distance > 0 && distance * 2 <= word.chars().count()).then_some(best)
}

/// `message` followed by ` (did you mean x?)` when a near option exists.
pub fn with_suggestion(
    message: String,
    word: &str,
    options: &[&str],
    case_sensitive: bool,
) -> String {
    match nearest(word, options, case_sensitive) {
        Some(s) => format!("{message} (did you mean {s}?)"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_typo_is_suggested_far_word_is_not() {
        let names = ["from", "run", "copy", "workdir"];
        assert_eq!(nearest("FROMM", &names, false), Some("from"));
        assert_eq!(nearest("cpy", &names, false), Some("copy"));
        assert_eq!(nearest("FROBNICATE", &names, false), None);
        assert_eq!(
            nearest("from", &names, false),
            None,
            "exact match is no suggestion"
        );
        assert_eq!(nearest("", &names, false), None);
    }

    #[test]
    fn case_sensitive_mode_counts_case() {
        assert_eq!(nearest("Link", &["link"], true), Some("link"));
        assert_eq!(nearest("LINK", &["link"], true), None);
    }
}
