//! The second net: credentials recognised by the shape of the text around
//! them, for secrets nobody registered (a token a server echoes back, a
//! next-page link carrying a fresh signature).
//!
//! - URL user-info (`scheme://user:password@host`) becomes `***@`;
//! - a URL path segment that looks like a token (Slack and Discord
//!   webhooks, Telegram's `bot<id>:<token>`), or that follows a segment
//!   named like a secret (`/api-key/k-12345`), becomes `***`;
//! - the value of every `name=value` pair and every `Name: value` header
//!   line or `"name": value` JSON field whose name looks like a secret
//!   becomes `***`: spaces around the separator, `\"escaped\"` JSON, quoted
//!   strings, arrays and objects included;
//! - a credential after an authorization scheme (`Bearer`, `Basic`,
//!   `Token`, `SSWS`), however many spaces follow the scheme, becomes `***`.
//!
//! Hiding too much is the safe mistake here: the history is readable by
//! every user of the workspace.

use crate::MASK;
use std::ops::Range;

/// Parts of names whose values are hidden (`access_token`, `X-Api-Key`,
/// `client_secret`, `passphrase`, `X-Amz-Signature`, `Authorization`,
/// `credentials`, `JSESSIONID`, `id_jwt`, ...).
pub const SECRET_WORDS: [&str; 11] = [
    "token", "key", "secret", "pass", "pwd", "sig", "auth", "cred", "session", "cookie", "jwt",
];

/// Names hidden when they are a whole word of the name (`sid`,
/// `AccountSid`, `x-otp`), not inside another word (`inside`, `hotpot`).
pub const SECRET_NAME_WORDS: [&str; 2] = ["sid", "otp"];

/// Authorization schemes whose credential follows a space.
const SCHEMES: [&str; 4] = ["bearer", "basic", "token", "ssws"];

/// True when a parameter, header or field called `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w)) || words(name).any(|w| SECRET_NAME_WORDS.contains(&w.as_str()))
}

/// True when a query or form parameter called `name` holds a secret: a
/// secret name, or `code` (OAuth's authorization code). As a JSON field or
/// header, `code` is an error code and stays.
pub fn is_secret_param(name: &str) -> bool {
    is_secret_name(name) || name.eq_ignore_ascii_case("code")
}

/// The words of a name, in lower case: split at anything not a letter or
/// digit and where a lower-case letter meets an upper-case one.
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (previous_lower && c.is_ascii_uppercase());
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.into_iter()
}

/// `text` with every credential its shape gives away replaced by [`MASK`].
pub fn redact_patterns(text: &str) -> String {
    let text = user_info(text);
    let text = url_paths(&text);
    let text = pairs(&text, b'=');
    let text = pairs(&text, b':');
    schemes(&text)
}

/// Where one URL in a text is: its authority (user-info included) and path.
pub(crate) struct UrlSpan {
    /// After `://`, up to the path, query or fragment.
    pub authority: Range<usize>,
    /// From the `/` after the authority to the query, fragment or end.
    pub path: Range<usize>,
    /// After `?`, up to the fragment or end; empty without a query.
    pub query: Range<usize>,
}

/// Bytes that end a URL written in text.
fn ends_url(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'' | b'>' | b'<' | b'`' | b'\\'
    )
}

/// Every `scheme://…` URL in `text`.
pub(crate) fn url_spans(text: &str) -> Vec<UrlSpan> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        let run_to = |from: usize, stop: &dyn Fn(u8) -> bool| {
            bytes[from..]
                .iter()
                .position(|&b| ends_url(b) || stop(b))
                .map_or(bytes.len(), |p| from + p)
        };
        let authority_end = run_to(start, &|b| matches!(b, b'/' | b'?' | b'#'));
        let path_end = run_to(authority_end, &|b| matches!(b, b'?' | b'#'));
        let (query_start, query_end) = match bytes.get(path_end) {
            Some(b'?') => (path_end + 1, run_to(path_end + 1, &|b| b == b'#')),
            _ => (path_end, path_end),
        };
        spans.push(UrlSpan {
            authority: start..authority_end,
            path: authority_end..path_end,
            query: query_start..query_end,
        });
        from = query_end.max(start);
    }
    spans
}

/// True when a URL path segment looks like a credential rather than a
/// name or an id: 20 or more URL characters with letters and digits, and
/// not a UUID (the ids of executions and sources, which reasons must show).
pub(crate) fn looks_like_token(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.len() >= 20
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.~:+=%".contains(c))
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic)
        && !is_uuid(segment)
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| p.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// `scheme://user:password@host` → `scheme://***@host`.
fn user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for url in url_spans(text) {
        if let Some(at) = text[url.authority.clone()].rfind('@') {
            out.push_str(&text[copied..url.authority.start]);
            out.push_str(MASK);
            copied = url.authority.start + at;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Token-like path segments, and those after a secret-named segment, → `***`.
fn url_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for url in url_spans(text) {
        let mut at = url.path.start;
        let mut previous = "";
        for segment in text[url.path.clone()].split('/') {
            let after_secret_name = is_secret_name(previous)
                && segment.len() >= 6
                && segment.bytes().any(|c| c.is_ascii_digit())
                && segment != MASK;
            if looks_like_token(segment) || after_secret_name {
                out.push_str(&text[copied..at]);
                out.push_str(MASK);
                copied = at + segment.len();
            }
            previous = segment;
            at += segment.len() + 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Bytes that end an unquoted value.
fn ends_value(b: u8) -> bool {
    matches!(
        b,
        b'&' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'' | b',' | b';' | b'>' | b')' | b']' | b'}' | b'#' | b'\\'
    )
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The length of an authorization scheme and the blanks after it at the
/// start of `bytes` (`Bearer   ` → 9), when one is there.
fn scheme_at(bytes: &[u8]) -> Option<usize> {
    SCHEMES.iter().find_map(|scheme| {
        let n = scheme.len();
        let blanks = bytes.get(n..)?.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        (bytes[..n].eq_ignore_ascii_case(scheme.as_bytes()) && blanks > 0).then_some(n + blanks)
    })
}

/// Where a bracketed value (`[…]` or `{…}`) starting at `start` ends: after
/// its matching bracket, or at the end of the text when it was cut.
fn bracketed_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            // An escape hides the next byte, in a string or around an
            // escaped JSON text (`[\"a\"]`).
            b'\\' => i += 1,
            b'"' => in_string = !in_string,
            b'[' | b'{' if !in_string => depth += 1,
            b']' | b'}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// Hides the value after every `name<sep>` whose name looks like a secret.
/// The name may be quoted (`"token"`, `'token'`, `\"token\"`), blanks may
/// stand around the separator, and the value may be quoted (running to its
/// closing quote), escaped-quoted, an array or object (running to its
/// matching bracket), or an authorization scheme and its credential.
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
        // The name: name bytes before the separator, past blanks and one
        // (possibly escaped) quote.
        let mut name_end = i;
        while name_end > 0 && matches!(bytes[name_end - 1], b' ' | b'\t') {
            name_end -= 1;
        }
        if name_end > 0 && matches!(bytes[name_end - 1], b'"' | b'\'') {
            name_end -= 1;
            if name_end > 0 && bytes[name_end - 1] == b'\\' {
                name_end -= 1;
            }
        }
        let mut name_start = name_end;
        while name_start > 0 && is_name_byte(bytes[name_start - 1]) {
            name_start -= 1;
        }
        let name = &text[name_start..name_end];
        let secret = match sep {
            b'=' => is_secret_param(name),
            _ => is_secret_name(name),
        };
        // `https://`: a scheme, not a field (after `=`, `//` starts a value:
        // base64 can); `==`: a comparison.
        let not_a_pair = (sep == b':' && bytes[i + 1..].starts_with(b"//")) || bytes.get(i + 1) == Some(&sep);
        if name.is_empty() || not_a_pair || !secret {
            i += 1;
            continue;
        }
        let mut start = i + 1;
        while start < bytes.len() && matches!(bytes[start], b' ' | b'\t') {
            start += 1;
        }
        let rest = &bytes[start..];
        let (start, end) = if rest.starts_with(b"\\\"") {
            // Escaped JSON: `\"value\"`.
            let from = start + 2;
            let end = bytes[from..].iter().position(|&b| matches!(b, b'\\' | b'"' | b'\n'));
            (from, end.map_or(bytes.len(), |p| from + p))
        } else if let Some(&q @ (b'"' | b'\'')) = rest.first() {
            let from = start + 1;
            let end = bytes[from..].iter().position(|&b| b == q || b == b'\n');
            (from, end.map_or(bytes.len(), |p| from + p))
        } else if matches!(rest.first(), Some(b'[' | b'{')) {
            (start, bracketed_end(bytes, start))
        } else if let Some(scheme) = scheme_at(rest) {
            // `authorization=Bearer abc`: the scheme and its credential.
            let from = start + scheme;
            let end = bytes[from..].iter().position(|&b| ends_value(b));
            (start, end.map_or(bytes.len(), |p| from + p))
        } else if sep == b':' {
            // A header line's value runs to the end of the line.
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'\n' | b'\r' | b';' | b',' | b'"' | b'}' | b'&' | b'\\'));
            (start, end.map_or(bytes.len(), |p| start + p))
        } else {
            let end = rest.iter().position(|&b| ends_value(b));
            (start, end.map_or(bytes.len(), |p| start + p))
        };
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

/// `Bearer abc` → `Bearer ***` (also `Basic`, `Token`, `SSWS`, any case,
/// any number of blanks after the scheme).
fn schemes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if let Some(scheme) = at_word.then(|| scheme_at(&bytes[i..])).flatten() {
            let start = i + scheme;
            let end = bytes[start..]
                .iter()
                .position(|&b| ends_value(b))
                .map_or(bytes.len(), |p| start + p);
            if end > start && &text[start..end] != MASK {
                out.push_str(&text[copied..start]);
                out.push_str(MASK);
                copied = end;
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_hidden() {
        assert_eq!(
            redact_patterns("GET https://admin:hunter2@api.example.com/x failed"),
            "GET https://***@api.example.com/x failed"
        );
        assert_eq!(
            redact_patterns("see https://api.example.com/a@b"),
            "see https://api.example.com/a@b"
        );
    }

    #[test]
    fn secret_query_parameters_are_hidden_and_others_kept() {
        assert_eq!(
            redact_patterns("GET https://h/x?limit=50&access_token=abc123&offset=0 answered 401"),
            "GET https://h/x?limit=50&access_token=***&offset=0 answered 401"
        );
        assert_eq!(
            redact_patterns("https://s3/x?X-Amz-Signature=f00d&X-Amz-Date=1"),
            "https://s3/x?X-Amz-Signature=***&X-Amz-Date=1"
        );
        assert_eq!(
            redact_patterns("apikey=k1 password=p2, page=3"),
            "apikey=*** password=***, page=3"
        );
    }

    #[test]
    fn headers_json_fields_and_auth_schemes_are_hidden() {
        assert_eq!(redact_patterns("Authorization: Bearer abc.def"), "Authorization: ***");
        assert_eq!(
            redact_patterns("X-Api-Key: k-123\nAccept: json"),
            "X-Api-Key: ***\nAccept: json"
        );
        assert_eq!(
            redact_patterns(r#"{"error":"denied","api_key": "abc", "token":"t"}"#),
            r#"{"error":"denied","api_key": "***", "token":"***"}"#
        );
        assert_eq!(
            redact_patterns("sent bearer xyz to the API"),
            "sent bearer *** to the API"
        );
        assert_eq!(redact_patterns("the tokenizer said: ok"), "the tokenizer said: ok");
    }

    #[test]
    fn ordinary_text_and_non_ascii_survive() {
        let text = "HTTP 503: maintenance at 10:30 ünïcödé 😀 https://h/x?page=2 a == b";
        assert_eq!(redact_patterns(text), text);
        assert_eq!(redact_patterns("😀token=😀😀 x"), "😀token=*** x");
        let ids = "POST https://h/importsource/3f2a9c1e-0b6d-4c1a-9e2f-5a7b8c9d0e1f/executions failed";
        assert_eq!(redact_patterns(ids), ids, "UUIDs are ids, not tokens");
        assert_eq!(
            redact_patterns(r#"{"code":"NOT_FOUND","status":404}"#),
            r#"{"code":"NOT_FOUND","status":404}"#,
            "an error code stays"
        );
    }

    // Each bypass of issue 25, finding 3: every one of these kept its
    // secret before.

    #[test]
    fn a_scheme_in_a_parameter_value_hides_its_credential() {
        assert_eq!(
            redact_patterns("authorization=Bearer X1 next"),
            "authorization=*** next"
        );
    }

    #[test]
    fn a_blank_before_the_colon_still_names_the_field() {
        assert_eq!(redact_patterns(r#"{"token" : "x1"}"#), r#"{"token" : "***"}"#);
    }

    #[test]
    fn escaped_json_fields_are_hidden() {
        assert_eq!(
            redact_patterns(r#"body: "{\"api_key\":\"x1\",\"n\":1}""#),
            r#"body: "{\"api_key\":\"***\",\"n\":1}""#
        );
    }

    #[test]
    fn any_number_of_blanks_after_a_scheme() {
        assert_eq!(redact_patterns("sent Bearer  X1 to it"), "sent Bearer  *** to it");
        assert_eq!(redact_patterns("sent Basic \t X1"), "sent Basic \t ***");
    }

    #[test]
    fn names_once_missing_from_the_list_are_hidden() {
        assert_eq!(
            redact_patterns("pass=p1&jwt=j1&sid=s1&code=c1&page=2"),
            "pass=***&jwt=***&sid=***&code=***&page=2"
        );
        assert_eq!(
            redact_patterns("AccountSid: AC1\ninside=1"),
            "AccountSid: ***\ninside=1"
        );
    }

    #[test]
    fn array_and_object_values_are_hidden_whole() {
        assert_eq!(
            redact_patterns(r#"{"tokens": ["a1", "b2"], "n": 1}"#),
            r#"{"tokens": ***, "n": 1}"#
        );
        assert_eq!(
            redact_patterns(r#"{"auth": {"user": "u", "p": "p1"}, "n": 1}"#),
            r#"{"auth": ***, "n": 1}"#
        );
        assert_eq!(
            redact_patterns(r#"{"secret": ["a1", "b"#),
            r#"{"secret": ***"#,
            "cut short"
        );
    }

    #[test]
    fn tokens_in_url_paths_are_hidden() {
        assert_eq!(
            redact_patterns("POST https://hooks.slack.com/services/T0001/B0001/Xa7kPq2mZr9sLw3vNb8c answered 404"),
            "POST https://hooks.slack.com/services/T0001/B0001/*** answered 404"
        );
        assert_eq!(
            redact_patterns("https://api.telegram.org/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u/getMe"),
            "https://api.telegram.org/***/getMe"
        );
        assert_eq!(
            redact_patterns("https://h/v1/api-key/k-123456/items"),
            "https://h/v1/api-key/***/items"
        );
        assert_eq!(
            redact_patterns("https://h/oauth/authorize"),
            "https://h/oauth/authorize"
        );
    }

    // Survivors of cargo-mutants: each test below names the mutants it
    // catches.

    /// `is_uuid`: `&&` → `||` made every all-hex segment a UUID.
    #[test]
    fn a_hex_api_key_in_a_path_is_hidden() {
        assert_eq!(
            redact_patterns("GET https://h/hooks/0a1b2c3d4e5f60718293a4b5c6d7e8f901234567/run failed"),
            "GET https://h/hooks/***/run failed"
        );
        // Dashes in the wrong places: UUID-like, but not a UUID.
        assert_eq!(
            redact_patterns("https://h/x/0a1b2c3d4e5f-6071-8293-a4b5-c6d7e8f9"),
            "https://h/x/***"
        );
    }

    /// `bracketed_end`: the `"` arm deleted, `!` deleted in it, and the
    /// `!in_string` guard of `]`/`}` replaced by `true`.
    #[test]
    fn a_closing_bracket_inside_a_string_does_not_end_the_value() {
        assert_eq!(
            redact_patterns(r#"{"tokens": ["a]b", "c2-secret"], "n": 1}"#),
            r#"{"tokens": ***, "n": 1}"#
        );
        assert_eq!(
            redact_patterns(r#"{"auth": {"note": "}", "password": "p1"}, "n": 1}"#),
            r#"{"auth": ***, "n": 1}"#
        );
    }

    /// `bracketed_end`: the `!in_string` guard of `[`/`{` replaced by
    /// `true`.
    #[test]
    fn an_opening_bracket_inside_a_string_does_not_nest() {
        assert_eq!(
            redact_patterns(r#"{"tokens": ["a[b", "c2"], "n": 1}"#),
            r#"{"tokens": ***, "n": 1}"#
        );
    }

    /// `bracketed_end`: the `\\` arm deleted, its `+=` → `*=` (the escape
    /// no longer skips the next byte) and `+=` → `-=` (an endless loop:
    /// a time-out).
    #[test]
    fn an_escaped_quote_inside_a_bracketed_value_does_not_end_its_string() {
        assert_eq!(
            redact_patterns(r#"{"tokens": ["a\"]", "c2-secret"], "n": 1}"#),
            r#"{"tokens": ***, "n": 1}"#
        );
    }

    /// `pairs`: `>` → `>=` in the three `name_end > 0` tests (and `+` → `-`
    /// in `bytes[i + 1..]` and `bytes.get(i + 1)`): each read the byte
    /// before the text's start.
    #[test]
    fn a_separator_at_the_start_of_the_text_is_not_a_pair() {
        for text in ["=1 left", ": ok", "  = 1", "\t: x", "\"=1", "': x", "\\\"=1"] {
            assert_eq!(redact_patterns(text), text);
        }
    }

    /// `pairs`: `<` → `<=` in the blank-skipping loop after the separator.
    #[test]
    fn a_secret_name_ending_the_text_hides_nothing() {
        for text in [
            "missing api_key=",
            "missing api_key= ",
            "Authorization:",
            "Authorization: \t",
        ] {
            assert_eq!(redact_patterns(text), text);
        }
    }

    /// `pairs`: `||` → `&&` in `name.is_empty() || not_a_pair` and in
    /// `not_a_pair`, and `+` → `-` in `bytes.get(i + 1)`.
    #[test]
    fn a_comparison_with_a_secret_name_is_not_a_pair() {
        for text in ["if api_key == nil", "assert password==expected"] {
            assert_eq!(redact_patterns(text), text);
        }
    }

    /// `pairs`: `||` → `&&` in `not_a_pair`, and `+` → `-` or `*` in
    /// `bytes[i + 1..]`.
    #[test]
    fn a_url_scheme_with_a_secret_looking_name_is_not_a_field() {
        assert_eq!(
            redact_patterns("redirected to myapp-oauth://callback?code=c1&state=s"),
            "redirected to myapp-oauth://callback?code=***&state=s"
        );
    }

    /// `pairs`: `>` → `>=` and `&&` → `||` in `end > start && … != MASK`
    /// put a mask where there was no value.
    #[test]
    fn an_empty_secret_value_stays_empty() {
        for text in [
            "GET https://h/x?token=&page=2 answered 400",
            r#"{"password": "", "user": "u"}"#,
            "X-Api-Key: \nAccept: json",
            "missing api_key=",
        ] {
            assert_eq!(redact_patterns(text), text);
        }
    }

    /// `schemes`: `>` → `>=` and `&&` → `||` in `end > start && … != MASK`
    /// put a mask where there was no credential.
    #[test]
    fn a_scheme_without_a_credential_stays_as_it_is() {
        for text in [
            "the header was \"Bearer \"",
            "header: Basic ",
            "sent Bearer ; realm=api",
        ] {
            assert_eq!(redact_patterns(text), text);
        }
    }

    /// `schemes`: `+` → `-` in `i = end.max(i + 1)` read before the text's
    /// start.
    #[test]
    fn a_text_starting_with_a_scheme_hides_its_credential() {
        assert_eq!(redact_patterns("Bearer abc123 was refused"), "Bearer *** was refused");
        assert_eq!(redact_patterns("SSWS 00aBc-xyz"), "SSWS ***");
    }

    /// A base64 secret can start with `//` (its first byte 0xFF): after `=`
    /// that is a value, not a URL's `scheme://`.
    #[test]
    fn a_secret_value_starting_with_two_slashes_is_hidden() {
        assert_eq!(
            redact_patterns("GET https://h/x?sig=//8AAQSkZJRgABAQ&page=2 answered 403"),
            "GET https://h/x?sig=***&page=2 answered 403"
        );
        assert_eq!(redact_patterns("password=//hunter2 refused"), "password=*** refused");
    }
}
