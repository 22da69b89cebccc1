//! Failure reasons, made fit for the import history: credentials hidden and
//! cut to what the API accepts — in that order, so a cut never leaves part
//! of a secret behind.

/// The Assets API's limit on `failureReason`, in characters.
pub const MAX_REASON_CHARS: usize = 1024;

/// `reason` with credentials hidden ([`assets_redact::redact`]: the secrets
/// registered when the settings were read, by value and in every form, then
/// the patterns) and only then cut to at most [`MAX_REASON_CHARS`]
/// characters, ending a cut reason with `…` so readers can tell it was cut.
///
/// "Characters" is counted both ways a server may count them: as Unicode
/// scalar values (Rust, Python) and as UTF-16 code units (Java, JavaScript).
/// A character outside the Basic Multilingual Plane (an emoji) is one of the
/// first and two of the second, so the cut keeps at most 1024 UTF-16 units,
/// which is never more than 1024 scalar values. Text is never split inside
/// a character.
pub fn cut_reason(reason: &str) -> String {
    assets_redact::cut_utf16(&assets_redact::redact(reason), MAX_REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> usize {
        s.encode_utf16().count()
    }

    #[test]
    fn short_reason_is_kept_whole() {
        assert_eq!(cut_reason("Connection timeout"), "Connection timeout");
        let exact = "x".repeat(MAX_REASON_CHARS);
        assert_eq!(cut_reason(&exact), exact);
    }

    #[test]
    fn long_ascii_reason_is_cut_to_the_limit_with_an_ellipsis() {
        let cut = cut_reason(&"a".repeat(5000));
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with(&"a".repeat(1023)));
    }

    #[test]
    fn emoji_count_twice_so_a_java_server_takes_the_reason_too() {
        // 1,024 emoji: 1,024 scalar values but 2,048 UTF-16 units.
        let reason = "😀".repeat(1024);
        let cut = cut_reason(&reason);
        assert!(utf16(&cut) <= MAX_REASON_CHARS, "{} UTF-16 units", utf16(&cut));
        assert!(cut.chars().count() <= MAX_REASON_CHARS);
        // As many whole emoji as fit beside the ellipsis: 511 × 2 + 1.
        assert_eq!(cut.chars().filter(|c| *c == '😀').count(), 511);
        assert!(cut.ends_with('…'));
        // 512 emoji are exactly 1,024 units and stay whole.
        let exact = "😀".repeat(512);
        assert_eq!(cut_reason(&exact), exact);
    }

    #[test]
    fn mixed_text_never_passes_either_count_nor_splits_a_character() {
        let reason = "日本語のエラー😀a".repeat(300);
        let cut = cut_reason(&reason);
        assert!(utf16(&cut) <= MAX_REASON_CHARS && cut.chars().count() <= MAX_REASON_CHARS);
        assert!(reason.starts_with(cut.trim_end_matches('…')));
        assert_eq!(utf16(&cut), MAX_REASON_CHARS, "nothing left over that would have fit");
    }

    #[test]
    fn credentials_never_reach_the_history() {
        let cut = cut_reason("GET https://u:pw@api.example.com/x?api_key=k1 answered 401: {\"token\":\"t\"}");
        assert_eq!(
            cut,
            "GET https://***@api.example.com/x?api_key=*** answered 401: {\"token\":\"***\"}"
        );
    }

    #[test]
    fn a_secret_the_cut_would_split_never_shows_in_part() {
        // A thread of its own: its registry is seen by no other test.
        std::thread::spawn(|| {
            let secret = "SUPERSECRET123-abcdef";
            assets_redact::register_setting("source-url", &format!("https://h/x?key={secret}"));
            // Wherever the secret sits around the cut, not even its first
            // four characters are left.
            for at in MAX_REASON_CHARS - 30..MAX_REASON_CHARS + 5 {
                let reason = format!("{}{secret} is over quota", "x".repeat(at));
                let cut = cut_reason(&reason);
                assert!(!cut.contains("SUPE"), "at {at}: …{}", &cut[cut.len() - 30..]);
                assert!(cut.chars().count() <= MAX_REASON_CHARS);
            }
        })
        .join()
        .unwrap();
    }
}
