//! Text made safe to show: characters that could forge a log line escaped,
//! and cuts that fit a server's character limit however it counts.

/// `text` with every control character (C0, DEL and C1, line breaks
/// included), the Unicode line and paragraph separators, every
/// bidirectional-text control and the zero-width characters written as a
/// `\u{…}` escape, so text an app chose cannot forge a log line, move a terminal's
/// cursor, colour its output or reorder what a reader sees.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{061c}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{feff}'
            )
    }
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Cuts `text` to at most `max_units` UTF-16 code units, ending a cut text
/// with `…` (one unit), never inside a character. A character outside the
/// Basic Multilingual Plane (an emoji) is two units, so the result is also
/// at most `max_units` Unicode scalar values: it fits a limit however the
/// server counts characters (Java and JavaScript count units).
pub fn cut_utf16(text: &str, max_units: usize) -> String {
    if text.encode_utf16().count() <= max_units {
        return text.to_owned();
    }
    let mut units = 0;
    let mut cut = String::with_capacity(text.len().min(4 * max_units));
    for c in text.chars() {
        if units + c.len_utf16() + 1 > max_units {
            break;
        }
        units += c.len_utf16();
        cut.push(c);
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(printable("plain text: é, 日本"), "plain text: é, 日本");
        assert_eq!(
            printable("a\nINFO forged\r\u{1b}[31mred\u{7f}\u{85}"),
            "a\\u{a}INFO forged\\u{d}\\u{1b}[31mred\\u{7f}\\u{85}"
        );
        assert_eq!(printable("x\u{202e}cba"), "x\\u{202e}cba");
        assert_eq!(printable("a\u{2028}b\u{2029}c\u{61c}"), "a\\u{2028}b\\u{2029}c\\u{61c}");
        assert_eq!(printable("to\u{200b}ken\u{feff}"), "to\\u{200b}ken\\u{feff}");
        assert!(matches!(printable("ok"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn a_cut_counts_utf16_units_and_never_splits_a_character() {
        assert_eq!(cut_utf16("abc", 3), "abc");
        assert_eq!(cut_utf16("abcd", 3), "ab…");
        assert_eq!(cut_utf16("😀😀", 3), "😀…");
    }
}
