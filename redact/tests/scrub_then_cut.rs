//! Random secrets, embedded in random text in each form they can take,
//! redacted and then cut anywhere: no part of the secret survives.
//!
//! The text around a secret is drawn from characters no form of a secret
//! uses (no ASCII letter, digit, `%`, `+`, `/`, `=`, `\`), so whatever of
//! the output is not noise, a mask or the cut's ellipsis came from the
//! secret — and the property is that nothing does.

use assets_redact::{cut_utf16, excerpt, register, Secrets};
use proptest::prelude::*;

const NOISE: &[char] = &['é', '日', '😀', ' ', ',', ';', '(', ')', '|', '\n', 'ü', '—'];

/// The ways a secret is written into text.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Plain,
    /// Every byte as `%XX`, upper- or lower-case hex.
    PercentAll {
        lower: bool,
    },
    /// Only what RFC 3986 does not leave unreserved as `%XX`.
    PercentReserved,
    /// `application/x-www-form-urlencoded`: a space as `+`.
    FormUrlencoded,
    /// As a JSON string's content: `"`, `\` and `/` escaped.
    JsonEscaped,
}

fn write(secret: &str, form: Encoding) -> String {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    secret
        .bytes()
        .map(|b| match form {
            Encoding::Plain => (b as char).to_string(),
            Encoding::PercentAll { lower: false } => format!("%{b:02X}"),
            Encoding::PercentAll { lower: true } => format!("%{b:02x}"),
            Encoding::PercentReserved if unreserved(b) => (b as char).to_string(),
            Encoding::PercentReserved => format!("%{b:02X}"),
            Encoding::FormUrlencoded if b == b' ' => "+".into(),
            Encoding::FormUrlencoded if unreserved(b) || b == b'*' => (b as char).to_string(),
            Encoding::FormUrlencoded => format!("%{b:02X}"),
            Encoding::JsonEscaped if matches!(b, b'"' | b'\\' | b'/') => format!("\\{}", b as char),
            Encoding::JsonEscaped => (b as char).to_string(),
        })
        .collect()
}

fn secret() -> impl Strategy<Value = String> {
    // Printable ASCII but `*` (the mask's own character) and `\`, with no
    // blank at either end (a registered value is trimmed).
    "[A-Za-z0-9!#$%&+/=?@:._~-][A-Za-z0-9!#$%&+/=?@:._~ \"-]{2,30}[A-Za-z0-9!#$%&+/=?@:._~-]"
}

fn noise() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(NOISE), 0..300).prop_map(|c| c.into_iter().collect())
}

fn form() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Plain),
        any::<bool>().prop_map(|lower| Encoding::PercentAll { lower }),
        Just(Encoding::PercentReserved),
        Just(Encoding::FormUrlencoded),
        Just(Encoding::JsonEscaped),
    ]
}

/// What is left of `output` once masks and the ellipsis are taken out.
fn leftover(output: &str) -> String {
    // A cut may split a mask, so every `*` goes: no secret has one.
    output.replace(['*', '…'], "")
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 written here from the definition (a bit buffer read six bits at
/// a time), independent of the crate's encoder.
fn base64(bytes: &[u8], alphabet: &[u8; 64], padded: bool) -> String {
    let bits: Vec<bool> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
        .collect();
    let mut out: String = bits
        .chunks(6)
        .map(|six| {
            let n = (0..6).fold(0, |n, i| n << 1 | usize::from(six.get(i).copied().unwrap_or(false)));
            alphabet[n] as char
        })
        .collect();
    while padded && !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_character_of_a_secret_survives_redaction_and_a_cut(
        secret in secret(),
        form in form(),
        before in noise(),
        after in noise(),
        times in 1usize..3,
        cut in 0usize..400,
    ) {
        let mut secrets = Secrets::new();
        prop_assert!(secrets.add(&secret));
        let written = write(&secret, form);
        let text = format!("{before}{}{after}", [written.as_str()].repeat(times).join("|"));
        let output = cut_utf16(&secrets.redact(&text), cut);
        prop_assert!(!output.contains(&secret), "{output}");
        prop_assert!(!output.contains(&written), "{output}");
        let rest = leftover(&output);
        prop_assert!(rest.chars().all(|c| NOISE.contains(&c)), "{written:?} left {rest:?} in {output:?}");
        // The same through a thread's registry and an excerpt (a fresh
        // thread: a fresh registry).
        let quoted = std::thread::spawn(move || {
            register(&secret);
            excerpt(&text, cut)
        })
        .join()
        .unwrap();
        prop_assert!(leftover(&quoted).chars().all(|c| NOISE.contains(&c)), "{quoted:?}");
    }

    #[test]
    fn no_bit_of_a_secret_survives_inside_base64(
        secret in secret(),
        prefix in proptest::collection::vec(any::<u8>(), 0..6),
        suffix in proptest::collection::vec(any::<u8>(), 0..6),
        url_safe in any::<bool>(),
        padded in any::<bool>(),
        before in noise(),
        after in noise(),
        cut in 0usize..400,
    ) {
        let mut secrets = Secrets::new();
        prop_assert!(secrets.add(&secret));
        let bytes = [prefix.as_slice(), secret.as_bytes(), suffix.as_slice()].concat();
        let alphabet = if url_safe { URL_SAFE } else { STANDARD };
        let encoded = base64(&bytes, alphabet, padded);
        let output = cut_utf16(&secrets.redact(&format!("{before}{encoded}{after}")), cut);
        // Character i of the encoding carries bits [6i, 6i + 6); the
        // secret's are [8p, 8(p + s)). Those carrying only its bits:
        let (p, s) = (prefix.len(), secret.len());
        let first = (8 * p).div_ceil(6);
        let last = (8 * (p + s)) / 6;
        let core = &encoded[first..last];
        prop_assert!(!output.contains(&secret) && !output.contains(core), "{output}");
        // What may stay: the characters that carry the prefix's or the
        // suffix's bits, the secret's sharing them at most.
        let allowed = first + (encoded.len() - last);
        let kept = leftover(&output).chars().filter(|c| !NOISE.contains(c)).count();
        prop_assert!(kept <= allowed, "{kept} > {allowed}: {encoded} became {output}");
    }
}
