//! Go's `strconv.Quote`, byte for byte, so that [`super::Ast::dump`] matches
//! BuildKit's `Node.Dump()` output exactly.
//!
//! Hand-written because no crate reproduces Go's exact escaping rules (which
//! characters count as printable, lowercase hex, `\u`/`\U` widths); the
//! Unicode general categories behind Go's `strconv.IsPrint` come from the
//! `unicode-general-category` crate.

use unicode_general_category::{get_general_category, GeneralCategory};

/// Quotes `s` exactly as Go's `strconv.Quote` does.
pub fn go_quote(s: &str) -> String {
    go_quote_bytes(s.as_bytes())
}

/// Quotes raw bytes exactly as Go's `strconv.Quote` does: bytes that are not
/// valid UTF-8 become `\xNN`.
pub fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_quoted_char(&mut out, c);
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

fn push_quoted_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        c if is_go_print(c) => out.push(c),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x1_0000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space. Every other space, control, format, private-use and
/// unassigned character is escaped.
pub fn is_go_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    use GeneralCategory as G;
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::NonspacingMark
            | G::SpacingMark
            | G::EnclosingMark
            | G::DecimalNumber
            | G::LetterNumber
            | G::OtherNumber
            | G::ConnectorPunctuation
            | G::DashPunctuation
            | G::OpenPunctuation
            | G::ClosePunctuation
            | G::InitialPunctuation
            | G::FinalPunctuation
            | G::OtherPunctuation
            | G::MathSymbol
            | G::CurrencySymbol
            | G::ModifierSymbol
            | G::OtherSymbol
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_wrapped_in_quotes() {
        assert_eq!(go_quote("abc 123"), "\"abc 123\"");
        assert_eq!(go_quote(""), "\"\"");
    }

    #[test]
    fn quote_and_backslash_are_escaped() {
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn named_control_escapes() {
        assert_eq!(go_quote("\x07\x08\x0c\n\r\t\x0b"), r#""\a\b\f\n\r\t\v""#);
    }

    #[test]
    fn other_controls_use_hex() {
        assert_eq!(go_quote("\0\x1b\x7f"), r#""\x00\x1b\x7f""#);
    }

    #[test]
    fn printable_unicode_is_kept() {
        assert_eq!(go_quote("♥☃한국어é"), "\"♥☃한국어é\"");
    }

    #[test]
    fn non_printable_unicode_uses_u_escapes() {
        // NBSP and NEL are spaces/controls, not printable in Go's sense.
        assert_eq!(go_quote("\u{a0}\u{85}"), r#""\u00a0\u0085""#);
        // Private use plane character beyond the BMP.
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
        // Zero width joiner is a format character.
        assert_eq!(go_quote("\u{200d}"), r#""\u200d""#);
    }

    #[test]
    fn invalid_utf8_bytes_use_hex() {
        assert_eq!(go_quote_bytes(b"a\xffb\xc3"), r#""a\xffb\xc3""#);
    }
}
