//! The one error type of the typed front end: a message tied to a line.

/// A problem found while typing, scoping or planning a Dockerfile.
///
/// `line` is the 1-based first line of the offending instruction (0 when the
/// problem is not tied to one line, e.g. "no stages"). Display gives
/// `line N: message`; the caller adds the file name
/// (`Dockerfile:12: unknown instruction: FROBNICATE`) via [`FrontendError::with_file`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FrontendError {
    /// 1-based line of the instruction the problem belongs to; 0 when none.
    pub line: usize,
    /// What is wrong, in BuildKit's wording where BuildKit has one.
    pub message: String,
}

impl FrontendError {
    /// An error at `line` saying `message`.
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        FrontendError {
            line,
            message: message.into(),
        }
    }

    /// `file:line: message`, the form compilers use, for showing to a user.
    pub fn with_file(&self, file: &str) -> String {
        format!("{file}:{}: {}", self.line, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_file_form_carry_the_line() {
        let e = FrontendError::new(12, "unknown instruction: FROBNICATE");
        assert_eq!(e.to_string(), "line 12: unknown instruction: FROBNICATE");
        assert_eq!(
            e.with_file("Dockerfile"),
            "Dockerfile:12: unknown instruction: FROBNICATE"
        );
    }
}
