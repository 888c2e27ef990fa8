//! Error text shared by every room that reports a library's error on one line.

/// An error and its causes on one line, joined by `": "`, each cause shown
/// only when its text is not already part of the line (many errors repeat
/// their source in their own message).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;
    use std::fmt;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_are_joined_in_order() {
        let e = Layer(
            "request failed",
            Some(Box::new(Layer(
                "connect",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(chain(&e), "request failed: connect: connection refused");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = Layer(
            "clone failed: connection refused",
            Some(Box::new(Layer("connection refused", None))),
        );
        assert_eq!(chain(&e), "clone failed: connection refused");
    }

    #[test]
    fn an_error_without_causes_is_its_message() {
        assert_eq!(chain(&Layer("bad", None)), "bad");
    }
}
