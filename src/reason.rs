//! Failure reasons, cut to what the import history accepts.

/// The Assets API's limit on `failureReason`, in characters.
pub const MAX_REASON_CHARS: usize = 1024;

/// Cuts `reason` to at most [`MAX_REASON_CHARS`] characters, on a character
/// boundary, ending a cut reason with `…` so readers can tell it was cut.
///
/// Characters are Unicode scalar values, as the API counts them; a reason of
/// multi-byte text is never split inside a character.
pub fn cut_reason(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        None => reason.to_owned(),
        Some(_) => {
            // Keep room for the ellipsis, itself one character.
            let end = reason
                .char_indices()
                .nth(MAX_REASON_CHARS - 1)
                .map(|(i, _)| i)
                .unwrap_or(reason.len());
            let mut cut = String::with_capacity(end + 3);
            cut.push_str(&reason[..end]);
            cut.push('…');
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn multibyte_reason_is_cut_on_a_character_boundary() {
        // 3-byte and 4-byte characters: a byte-based cut would split them.
        let reason = "日本語のエラー😀".repeat(300);
        let cut = cut_reason(&reason);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert!(reason.starts_with(cut.trim_end_matches('…')));
        assert!(
            cut.len() > MAX_REASON_CHARS,
            "multi-byte text is longer in bytes than in chars"
        );
    }
}
