//! Hides credentials in text that people read: failure reasons in the import
//! history and log lines.
//!
//! A reason often quotes a URL or an answer: `GET https://user:pw@host/x?token=…
//! answered 401: {"error":"bad api_key abc"}`. Everything here works on the
//! text alone, so the guest, the data-source components and the host apply
//! the same rules without agreeing on any structure:
//!
//! - URL user-info (`scheme://user:password@host`) becomes `***@`;
//! - the value of every `name=value` pair (query parameters, form fields)
//!   whose name looks like a secret becomes `***`;
//! - the value of every `Name: value` header line or `"name": "value"` JSON
//!   field whose name looks like a secret becomes `***`;
//! - a credential after an authorization scheme (`Bearer`, `Basic`, `Token`)
//!   becomes `***`.
//!
//! A name looks like a secret when, in lower case, it contains one of
//! [`SECRET_WORDS`]. Hiding too much is the safe mistake here: the history
//! is readable by every user of the workspace.

/// Parts of names whose values are hidden (`access_token`, `X-Api-Key`,
/// `client_secret`, `X-Amz-Signature`, `Authorization`, ...).
pub const SECRET_WORDS: [&str; 12] = [
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "signature",
    "sig",
    "auth",
    "credential",
    "session",
    "cookie",
];

/// What a hidden value is replaced with.
pub const MASK: &str = "***";

/// True when a parameter, header or field called `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// `text` with every credential it shows replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    let text = user_info(text);
    let text = pairs(&text, b'=');
    let text = pairs(&text, b':');
    schemes(&text)
}

/// Cuts `text` to at most `max_chars` characters (ending a cut text with
/// `…`), then redacts it: for quoting an answer's body in a reason.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut cut: String = text.trim().chars().take(max_chars).collect();
    if cut.len() < text.trim().len() {
        cut.push('…');
    }
    redact(&cut)
}

/// Bytes that end a value: a secret runs up to one of these.
fn ends_value(b: u8) -> bool {
    matches!(
        b,
        b'&' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'' | b',' | b';' | b'>' | b')' | b']' | b'}' | b'#'
    )
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

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

/// `scheme://user:password@host` → `scheme://***@host`.
fn user_info(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        let end = bytes[start..]
            .iter()
            .position(|&b| {
                matches!(
                    b,
                    b'/' | b'?' | b'#' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'>' | b'<'
                )
            })
            .map_or(bytes.len(), |p| start + p);
        if let Some(a) = text[start..end].rfind('@') {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = start + a;
        }
        from = end.max(start);
    }
    out.push_str(&text[copied..]);
    out
}

/// Hides the value after every `name<sep>` whose name looks like a secret.
/// For `:` the name may be quoted (`"token": "x"`) and the value may follow
/// spaces and a quote; a quoted value runs to its closing quote.
fn pairs(text: &str, sep: u8) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != sep {
            i += 1;
            continue;
        }
        // The name: name bytes just before the separator, past one quote.
        let mut name_end = i;
        if sep == b':' && name_end > 0 && matches!(bytes[name_end - 1], b'"' | b'\'') {
            name_end -= 1;
        }
        let mut name_start = name_end;
        while name_start > 0 && is_name_byte(bytes[name_start - 1]) {
            name_start -= 1;
        }
        let name = &text[name_start..name_end];
        // `https://`: a scheme, not a field.
        let scheme = sep == b':' && bytes[i + 1..].starts_with(b"//");
        if name.is_empty() || scheme || !is_secret_name(name) {
            i += 1;
            continue;
        }
        let mut start = i + 1;
        if sep == b':' {
            while start < bytes.len() && matches!(bytes[start], b' ' | b'\t') {
                start += 1;
            }
        }
        let quote = bytes.get(start).copied().filter(|b| matches!(b, b'"' | b'\''));
        if quote.is_some() {
            start += 1;
        }
        let end = match quote {
            Some(q) => bytes[start..].iter().position(|&b| b == q || b == b'\n'),
            // A header line's value runs to the end of the line.
            None if sep == b':' => bytes[start..]
                .iter()
                .position(|&b| matches!(b, b'\n' | b'\r' | b';' | b',' | b'"' | b'}' | b'&')),
            None => bytes[start..].iter().position(|&b| ends_value(b)),
        }
        .map_or(bytes.len(), |p| start + p);
        if end > start && &text[start..end] != MASK {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        i = end.max(i + 1);
    }
    out.push_str(&text[copied..]);
    out
}

/// `Bearer abc` → `Bearer ***` (also `Basic`, `Token`, any case).
fn schemes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: loop {
        for (i, _) in rest.char_indices() {
            let tail = &rest[i..];
            for scheme in ["bearer ", "basic ", "token "] {
                let at_word = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
                if at_word
                    && tail.len() >= scheme.len()
                    && tail.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
                {
                    let start = i + scheme.len();
                    let value_len = rest.as_bytes()[start..]
                        .iter()
                        .position(|&b| ends_value(b))
                        .unwrap_or(rest.len() - start);
                    if value_len > 0 && &rest[start..start + value_len] != MASK {
                        out.push_str(&rest[..start]);
                        out.push_str(MASK);
                        rest = &rest[start + value_len..];
                        continue 'outer;
                    }
                }
            }
        }
        out.push_str(rest);
        return out;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_and_bidi_characters_are_escaped() {
        use super::printable;
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

    use super::*;

    #[test]
    fn user_info_is_hidden() {
        assert_eq!(
            redact("GET https://admin:hunter2@api.example.com/x failed"),
            "GET https://***@api.example.com/x failed"
        );
        assert_eq!(
            redact("see https://api.example.com/a@b"),
            "see https://api.example.com/a@b"
        );
    }

    #[test]
    fn secret_query_parameters_are_hidden_and_others_kept() {
        assert_eq!(
            redact("GET https://h/x?limit=50&access_token=abc123&offset=0 answered 401"),
            "GET https://h/x?limit=50&access_token=***&offset=0 answered 401"
        );
        assert_eq!(
            redact("https://s3/x?X-Amz-Signature=f00d&X-Amz-Date=1"),
            "https://s3/x?X-Amz-Signature=***&X-Amz-Date=1"
        );
        assert_eq!(
            redact("apikey=k1 password=p2, page=3"),
            "apikey=*** password=***, page=3"
        );
    }

    #[test]
    fn headers_json_fields_and_auth_schemes_are_hidden() {
        assert_eq!(redact("Authorization: Bearer abc.def"), "Authorization: ***");
        assert_eq!(redact("X-Api-Key: k-123\nAccept: json"), "X-Api-Key: ***\nAccept: json");
        assert_eq!(
            redact(r#"{"error":"denied","api_key": "abc", "token":"t"}"#),
            r#"{"error":"denied","api_key": "***", "token":"***"}"#
        );
        assert_eq!(redact("sent bearer xyz to the API"), "sent bearer *** to the API");
        assert_eq!(redact("the tokenizer said: ok"), "the tokenizer said: ok");
    }

    #[test]
    fn ordinary_text_and_non_ascii_survive() {
        let text = "HTTP 503: maintenance at 10:30 ünïcödé 😀 https://h/x?page=2";
        assert_eq!(redact(text), text);
        assert_eq!(redact("😀token=😀😀 x"), "😀token=*** x");
    }

    #[test]
    fn excerpts_are_cut_then_redacted() {
        let body = format!("{{\"password\":\"p\"}}{}", "x".repeat(500));
        let e = excerpt(&body, 40);
        // 40 characters, the password's one character shown as three, the ellipsis.
        assert_eq!(e.chars().count(), 43, "{e}");
        assert!(e.starts_with(r#"{"password":"***"}"#) && e.ends_with('…'), "{e}");
    }
}
