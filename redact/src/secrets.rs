//! The first net: secrets known by value, hidden wherever they appear.
//!
//! Patterns find a credential by the name beside it; a server that repeats
//! it in prose (`key SUPERSECRET123 is over quota`) defeats them. But an app
//! knows its secrets — it was configured with them — so, as GitHub Actions
//! masks the secrets registered with a run, [`Secrets`] keeps the values to
//! hide and replaces every occurrence by [`MASK`](crate::MASK):
//!
//! - as written;
//! - URL-encoded, in whole or in part, either case of hex (`%2F`, `%2f`),
//!   a space as `+`;
//! - JSON-escaped (`\"`, `\\`, `\/`, `\u00XX`, and `\uXXXX` for a
//!   non-ASCII character, as `json.dumps` writes it);
//! - base64, standard and URL-safe, whether the secret starts the encoded
//!   text or sits at any offset inside it (as a password does in a Basic
//!   credential, `base64(user:password)`): the characters that carry only
//!   the secret's bits are hidden.
//!
//! A value shorter than [`MIN_SECRET_CHARS`] is not registered: masking
//! `on` or `50` would hide every word that contains it.

use crate::patterns::{is_secret_name, is_secret_param, looks_like_token, redact_patterns, url_spans};
use crate::MASK;

/// Values with fewer characters than this are not registered.
pub const MIN_SECRET_CHARS: usize = 4;

/// A registry of secret values to hide in text, in every form they take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: Vec<String>,
    /// Every form of every value, longest first, so the longest match wins.
    forms: Vec<Vec<u8>>,
}

impl Secrets {
    /// An empty registry.
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// The registry of every secret in `settings` ([`Secrets::add_setting`]).
    pub fn from_settings<'a>(settings: impl IntoIterator<Item = (&'a String, &'a String)>) -> Secrets {
        let mut secrets = Secrets::new();
        for (key, value) in settings {
            secrets.add_setting(key, value);
        }
        secrets
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Registers `value` (blanks around it trimmed), and, for a value like
    /// `Bearer abc…`, the credential after the scheme. Returns false when it
    /// was too short ([`MIN_SECRET_CHARS`]) or already known.
    pub fn add(&mut self, value: &str) -> bool {
        let value = value.trim();
        if value.chars().count() < MIN_SECRET_CHARS || self.values.iter().any(|v| v == value) {
            return false;
        }
        self.values.push(value.to_owned());
        for form in forms(value.as_bytes()) {
            if form.len() >= MIN_SECRET_CHARS && !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
        self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        // `Bearer abc`, `Basic dXNlcjpwdw==`, `SSWS abc`: the credential
        // also appears without its scheme.
        if let Some((scheme, credential)) = value.split_once([' ', '\t']) {
            if scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
                self.add(credential);
            }
        }
        true
    }

    /// Registers the secrets in one setting:
    ///
    /// - the whole value when `key` names a credential (`api-token`,
    ///   `client-secret`, …, as [`is_secret_name`] decides);
    /// - when `key` names headers (`source-headers`: `Name: value` entries
    ///   separated by `;` or new lines), every header's value, and every
    ///   entry without a colon whole;
    /// - in every URL in the value: the password of its user-info (the user
    ///   when there is no password: a token written as the user), every
    ///   query value but plain numbers (any value of a secret-named
    ///   parameter), decoded and as written, and every path segment that
    ///   looks like a token.
    pub fn add_setting(&mut self, key: &str, value: &str) {
        if is_secret_name(key) {
            self.add(value);
        }
        if key.to_ascii_lowercase().contains("header") {
            for entry in value.split([';', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
                self.add(entry.split_once(':').map_or(entry, |(_, v)| v));
            }
        }
        for url in url_spans(value) {
            let authority = &value[url.authority];
            if let Some((user_info, _)) = authority.rsplit_once('@') {
                match user_info.split_once(':') {
                    Some((_, password)) => self.add_encoded(password),
                    None => self.add_encoded(user_info),
                }
            }
            for pair in value[url.query].split('&') {
                let (name, v) = pair.split_once('=').unwrap_or(("", pair));
                if is_secret_param(name) || !v.bytes().all(|b| b.is_ascii_digit()) {
                    self.add_encoded(v);
                }
            }
            for segment in value[url.path].split('/').filter(|s| looks_like_token(s)) {
                self.add_encoded(segment);
            }
        }
    }

    /// Registers `value` as written in a URL, and percent-decoded.
    fn add_encoded(&mut self, value: &str) {
        self.add(value);
        if let Some(decoded) = percent_decoded(value) {
            self.add(&decoded);
        }
    }

    /// `text` with every registered value, in each of its forms, replaced
    /// by [`MASK`]. Scrub before cutting: a cut made first can split a
    /// secret so that the half left in the text no longer matches.
    pub fn scrub(&self, text: &str) -> String {
        if self.forms.is_empty() {
            return text.to_owned();
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let (mut copied, mut at) = (0, 0);
        while at < bytes.len() {
            let found = text
                .is_char_boundary(at)
                .then(|| self.forms.iter().find_map(|form| occurrence(bytes, at, form)))
                .flatten();
            match found {
                Some(mut end) => {
                    while !text.is_char_boundary(end) {
                        end += 1;
                    }
                    out.push_str(&text[copied..at]);
                    out.push_str(MASK);
                    (copied, at) = (end, end);
                }
                None => at += 1,
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    /// [`Secrets::scrub`], then the patterns
    /// ([`redact_patterns`]) as a second net.
    pub fn redact(&self, text: &str) -> String {
        redact_patterns(&self.scrub(text))
    }
}

/// The end of an occurrence of `form` at `at` in `text`, each byte written
/// as itself or in an encoding ([`written`]); failing that, as written
/// exactly (a secret that itself contains `%41` or `\\`).
fn occurrence(text: &[u8], at: usize, form: &[u8]) -> Option<usize> {
    let mut p = at;
    for &b in form {
        match text.get(p..).and_then(|rest| written(rest, b)) {
            Some(n) => p += n,
            None => return text[at..].starts_with(form).then_some(at + form.len()),
        }
    }
    Some(p)
}

/// How many bytes at the start of `text` write the byte `b`: `%XX` (either
/// case), a JSON escape, `+` for a space, or `b` itself.
fn written(text: &[u8], b: u8) -> Option<usize> {
    match text {
        [b'%', h, l, ..] if hex_pair(*h, *l) == Some(b) => Some(3),
        [b'\\', b'u', b'0', b'0', h, l, ..] if b < 0x80 && hex_pair(*h, *l) == Some(b) => Some(6),
        [b'\\', c, ..] if *c == b && matches!(b, b'"' | b'\\' | b'/') => Some(2),
        [b'+', ..] if b == b' ' => Some(1),
        [c, ..] if *c == b => Some(1),
        _ => None,
    }
}

fn hex_pair(h: u8, l: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(h)? * 16 + digit(l)?) as u8)
}

/// `value` with its `%XX` escapes (and `+`) decoded, when it has any and
/// the result is text.
fn percent_decoded(value: &str) -> Option<String> {
    if !value.contains(['%', '+']) {
        return None;
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i..] {
            [b'%', h, l, ..] if hex_pair(h, l).is_some() => {
                out.extend(hex_pair(h, l));
                i += 3;
            }
            [b'+', ..] => {
                out.push(b' ');
                i += 1;
            }
            [c, ..] => {
                out.push(c);
                i += 1;
            }
            [] => break,
        }
    }
    String::from_utf8(out).ok()
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The forms a value is searched in, besides the encodings [`written`]
/// reads byte by byte: the value, its base64 encodings whole (the standard
/// one padded), and, for each of the three offsets a secret can start at
/// inside a longer base64 text, the characters that carry its bits only.
pub(crate) fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![value.to_vec()];
    for alphabet in [STANDARD, URL_SAFE] {
        let mut whole = base64(value, alphabet);
        if alphabet == STANDARD {
            whole.resize(whole.len().div_ceil(4) * 4, b'=');
        }
        forms.push(whole);
        for shift in 0..3 {
            forms.push(base64_core(value, shift, alphabet));
        }
    }
    // JSON written in ASCII, as Python's `json.dumps` writes by default:
    // each non-ASCII character a `\uXXXX` escape (a surrogate pair beyond
    // the BMP). `written` reads escapes byte by byte; these write a
    // character, so they are forms of their own, in either case of hex.
    if let Ok(text) = std::str::from_utf8(value) {
        if !text.is_ascii() {
            forms.push(json_ascii(text, false));
            forms.push(json_ascii(text, true));
        }
    }
    forms
}

/// `text` with every non-ASCII character as JSON `\uXXXX` escapes (UTF-16
/// units), hex in upper or lower case.
fn json_ascii(text: &str, upper: bool) -> Vec<u8> {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        for unit in c.encode_utf16(&mut [0; 2]) {
            out.push_str(&if upper {
                format!("\\u{unit:04X}")
            } else {
                format!("\\u{unit:04x}")
            });
        }
    }
    out.into_bytes()
}

/// The base64 characters that depend on `value`'s bytes only when it
/// starts `shift` bytes into a 3-byte group of a longer encoded text.
pub(crate) fn base64_core(value: &[u8], shift: usize, alphabet: &[u8; 64]) -> Vec<u8> {
    let mut shifted = vec![0; shift];
    shifted.extend_from_slice(value);
    let encoded = base64(&shifted, alphabet);
    // Character i carries bits [6i, 6i + 6); the value's are
    // [8 shift, 8 (shift + len)).
    let first = (8 * shift).div_ceil(6);
    let last = (8 * (shift + value.len())) / 6;
    encoded.get(first..last.max(first)).unwrap_or_default().to_vec()
}

/// Unpadded base64 of `bytes` in `alphabet`.
pub(crate) fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> Secrets {
        let mut secrets = Secrets::new();
        for v in values {
            secrets.add(v);
        }
        secrets
    }

    #[test]
    fn base64_is_the_standard_encoding() {
        assert_eq!(base64(b"hunter2", STANDARD), b"aHVudGVyMg");
        assert_eq!(base64(b"\xfb\xff", URL_SAFE), b"-_8");
        assert_eq!(base64(b"", STANDARD), b"");
    }

    #[test]
    fn a_value_repeated_in_prose_is_hidden() {
        let secrets = with(&["SUPERSECRET123"]);
        assert_eq!(
            secrets.redact("HTTP 429: key SUPERSECRET123 is over quota"),
            "HTTP 429: key *** is over quota"
        );
    }

    #[test]
    fn url_encoded_forms_are_hidden() {
        let secrets = with(&["p@ss/w rd+1"]);
        for text in [
            "p@ss/w rd+1",
            "p%40ss%2Fw%20rd%2B1",
            "p%40ss%2fw+rd%2b1",
            "p@ss%2Fw rd+1",
            r"p@ss\/w rd+1",
            r"p\u0040ss/w rd+1",
        ] {
            assert_eq!(secrets.scrub(&format!("<{text}>")), "<***>", "{text}");
        }
    }

    #[test]
    fn base64_forms_are_hidden_at_every_offset() {
        let secrets = with(&["hunter2!"]);
        // Alone, padded; and inside a Basic credential at each offset.
        assert_eq!(secrets.scrub("x aHVudGVyMiE= y"), "x *** y");
        for user in ["u", "us", "usr"] {
            let basic = String::from_utf8(base64(format!("{user}:hunter2!").as_bytes(), STANDARD)).unwrap();
            let scrubbed = secrets.scrub(&format!("Basic {basic}"));
            assert!(scrubbed.contains(MASK), "{user}: {scrubbed}");
            let core = base64_core(b"hunter2!", user.len() + 1, STANDARD);
            assert!(!scrubbed.contains(std::str::from_utf8(&core).unwrap()), "{scrubbed}");
        }
        let url_safe = with(&["a>>>?b"]);
        let encoded = String::from_utf8(base64(b"a>>>?b", URL_SAFE)).unwrap();
        assert!(encoded.contains(['-', '_']), "{encoded}");
        assert_eq!(url_safe.scrub(&encoded), MASK);
    }

    #[test]
    fn short_values_are_not_registered() {
        let mut secrets = Secrets::new();
        assert!(!secrets.add("abc"));
        assert!(!secrets.add("  ab  "));
        assert!(secrets.add("abcd"));
        assert!(!secrets.add("abcd"), "once");
        assert_eq!(secrets.scrub("abc abcd"), "abc ***");
    }

    #[test]
    fn settings_register_credentials_headers_and_url_parts() {
        let mut secrets = Secrets::new();
        secrets.add_setting("api-token", "tok-secret-1");
        secrets.add_setting("chunk-max-objects", "5000");
        secrets.add_setting(
            "source-headers",
            "Authorization: Bearer b-123456; X-Tenant: acme-corp\nbare-token-9",
        );
        secrets.add_setting(
            "source-url",
            "https://bot:pw%2F123@api.example.com/v1/Xa7kPq2mZr9sLw3vNb8c/items?limit=5000&key=k%2B9999&fields=id,name",
        );
        let text = "tok-secret-1 5000 b-123456 acme-corp bare-token-9 pw/123 Xa7kPq2mZr9sLw3vNb8c k+9999 id,name bot";
        assert_eq!(
            secrets.scrub(text),
            "*** 5000 *** *** *** *** *** *** *** bot",
            "numbers, and a user beside a password, are not secrets"
        );
    }

    #[test]
    fn a_credential_after_a_scheme_is_registered_alone() {
        let secrets = with(&["Bearer abc-123-def"]);
        assert_eq!(secrets.scrub("the token abc-123-def expired"), "the token *** expired");
    }

    #[test]
    fn non_ascii_values_and_text_stay_whole_characters() {
        let secrets = with(&["mot-de-passé"]);
        assert_eq!(secrets.scrub("😀mot-de-passé😀"), "😀***😀");
        assert_eq!(secrets.scrub("mot-de-pass%C3%A9!"), "***!");
    }

    /// `url_spans`: `+` → `-` or `*` in the query's start (`path_end + 1`)
    /// put the byte before `?`, or the `?` itself, into the first
    /// parameter's name: `s?code` or `?code` is not `code`, and a plain
    /// number is registered only under a secret name.
    #[test]
    fn an_oauth_code_first_in_a_settings_query_is_registered() {
        let mut secrets = Secrets::new();
        secrets.add_setting(
            "source-url",
            "https://api.example.com/v1/items?code=48213977&limit=5000",
        );
        assert_eq!(
            secrets.scrub("code 48213977 expired, limit 5000"),
            "code *** expired, limit 5000"
        );
    }

    /// `Secrets::from_settings` replaced by `Default::default()`.
    #[test]
    fn a_registry_from_settings_hides_their_secrets() {
        let settings: std::collections::BTreeMap<String, String> = [
            ("api-token", "tok-secret-1"),
            ("source-url", "https://api.example.com/v1/items?key=k-9999&limit=5000"),
            ("chunk-max-objects", "5000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let secrets = Secrets::from_settings(&settings);
        assert!(!secrets.is_empty());
        assert_eq!(
            secrets.redact("tok-secret-1 and k-9999 refused, 5000 objects"),
            "*** and *** refused, 5000 objects"
        );
    }

    /// `Secrets::is_empty` replaced by `true` or by `false`.
    #[test]
    fn a_registry_is_empty_until_a_value_long_enough_is_added() {
        let mut secrets = Secrets::new();
        assert!(secrets.is_empty());
        secrets.add("abc");
        assert!(secrets.is_empty(), "too short to register");
        secrets.add("abcd");
        assert!(!secrets.is_empty());
    }

    /// `&&` → `||` in `Secrets::add`'s `form.len() >= MIN_SECRET_CHARS &&
    /// !self.forms.contains(&form)`: every form is at least as long as the
    /// value, so only the duplicates tell, forms that the standard and
    /// URL-safe alphabets write alike (`abcd` has no `+` or `/`), or that
    /// another value already gave. Scrubbing is as correct with them, only
    /// slower: each text byte is tried against every form.
    #[test]
    fn each_form_is_kept_once() {
        let secrets = with(&["abcd", "Bearer abcd", "hunter2!"]);
        let mut distinct = secrets.forms.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(secrets.forms.len(), distinct.len(), "{:?}", secrets.forms);
        assert!(secrets.forms.iter().all(|f| f.len() >= MIN_SECRET_CHARS));
    }

    /// `occurrence`: `+` → `*` in `then_some(at + form.len())`, the end of
    /// a secret matched as written exactly: `\\` reads as one escaped `\`
    /// and `%25` as one `%`, so a secret holding them is found only so.
    #[test]
    fn a_secret_holding_escapes_is_hidden_as_written() {
        assert_eq!(with(&[r"ab\\cd"]).scrub(r"<ab\\cd> and more"), "<***> and more");
        assert_eq!(with(&["50%25off"]).scrub("<50%25off> and more"), "<***> and more");
    }

    /// `written`: the guards of `\u00XX`, of `\c` and of `+` replaced by
    /// `true`, and `&&` → `||` in the first two: another character,
    /// escaped, is not the secret's.
    #[test]
    fn an_escape_of_another_character_is_not_the_secret() {
        let secrets = with(&["hunter-22"]);
        for text in [r"hunt\u0041r-22", r"hunt\er-22", r"hunter\-22", "hunter+22"] {
            assert_eq!(secrets.scrub(text), text);
        }
        // Each written as it should be: hidden.
        for text in [r"hunt\u0065r-22", "hunter%2d22", "hunter%2D22"] {
            assert_eq!(secrets.scrub(text), MASK, "{text}");
        }
    }

    /// `written`: `<` → `<=` in `b < 0x80`: `\u0080` is the character
    /// U+0080, not the byte 0x80 of another character's UTF-8 (`À` is
    /// `C3 80`).
    #[test]
    fn a_json_escape_writes_a_character_not_a_byte() {
        let secrets = with(&["Àbcd"]);
        assert_eq!(secrets.scrub(r"%C3\u0080bcd"), r"%C3\u0080bcd");
        assert_eq!(secrets.scrub("%C3%80bcd"), MASK);
    }

    /// `percent_decoded`: the `%XX` guard replaced by `true` (a `%` not
    /// followed by hex dropped with the two bytes after it) and `+=` → `-=`
    /// or `*=` after a `+` (an endless loop: a time-out, or memory runs
    /// out).
    #[test]
    fn a_form_encoded_password_in_a_settings_url_is_registered_decoded() {
        let mut secrets = Secrets::new();
        secrets.add_setting("source-url", "https://h/x?password=100%sure+pass&page=2");
        assert_eq!(secrets.scrub("password 100%sure pass refused"), "password *** refused");
    }

    /// `forms`: `==` → `!=` in `alphabet == STANDARD` padded the URL-safe
    /// encoding instead of the standard one.
    #[test]
    fn a_padded_standard_base64_secret_is_hidden_whole() {
        // `p>?word` is `cD4/d29yZA==`: a `/`, so the URL-safe form differs.
        let secrets = with(&["p>?word"]);
        assert_eq!(secrets.scrub("Basic cD4/d29yZA== sent"), "Basic *** sent");
        assert_eq!(secrets.scrub("token=cD4_d29yZA&x=1"), "token=***&x=1");
    }

    #[test]
    fn a_non_ascii_secret_escaped_as_json_in_ascii_is_hidden() {
        let mut secrets = Secrets::new();
        assert!(secrets.add("mot-de-passé"));
        assert!(secrets.add("clé😀secrète"));
        for (text, kept) in [
            (r#"{"msg":"bad mot-de-pass\u00e9"}"#, r#"{"msg":"bad "#),
            (r#"{"msg":"bad mot-de-pass\u00E9"}"#, r#"{"msg":"bad "#),
            (r#"{"k":"cl\u00e9\ud83d\ude00secr\u00e8te"}"#, r#"{"k":""#),
            ("bad mot-de-passé", "bad "),
        ] {
            let scrubbed = secrets.scrub(text);
            assert!(
                !scrubbed.contains("pass") && !scrubbed.contains("secr"),
                "{text} -> {scrubbed}"
            );
            assert!(scrubbed.starts_with(&format!("{kept}{MASK}")), "{text} -> {scrubbed}");
        }
    }
}
