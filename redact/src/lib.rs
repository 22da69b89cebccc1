//! Hides credentials in text that people read: failure reasons in the import
//! history and log lines.
//!
//! A reason often quotes a URL or an answer: `GET https://user:pw@host/x?token=…
//! answered 401: {"error":"bad api_key abc"}`. Two nets catch what it shows:
//!
//! - [`secrets`]: values known to be secret — an app's credentials, as its
//!   settings give them — hidden by value wherever they appear, plain,
//!   URL-encoded, JSON-escaped or base64. Each component instance keeps its
//!   own registry ([`register_setting`]); the host builds one per app from
//!   the settings it hands out ([`Secrets::from_settings`]).
//! - [`patterns`]: credentials recognised by the text around them (URL
//!   user-info, secret-looking names, authorization schemes, token-like
//!   path segments), for values nobody registered.
//! - [`text`]: escaping what could forge a log line, and cuts that fit a
//!   server's character limit.
//!
//! The order is the guarantee: scrub by value, then the patterns, then cut
//! ([`redact`] then [`cut_utf16`], or [`excerpt`]). A cut made first can
//! split a secret so that the half left no longer matches anything.

pub mod patterns;
pub mod secrets;
pub mod text;

pub use patterns::{is_secret_name, is_secret_param, redact_patterns, SECRET_NAME_WORDS, SECRET_WORDS};
pub use secrets::{Secrets, MIN_SECRET_CHARS};
pub use text::{cut_utf16, printable};

use std::cell::RefCell;

/// What a hidden value is replaced with.
pub const MASK: &str = "***";

thread_local! {
    /// This thread's registry. A WebAssembly component instance runs on
    /// one thread, so in a guest or a data-source component this is the
    /// instance's own: a source composed into the importer registers and
    /// hides its secrets itself.
    static REGISTERED: RefCell<Secrets> = RefCell::new(Secrets::new());
}

/// Registers `value` as a secret of this thread ([`Secrets::add`]): every
/// later [`redact`] and [`excerpt`] on this thread hides it.
pub fn register(value: &str) {
    REGISTERED.with(|r| r.borrow_mut().add(value));
}

/// Registers the secrets in setting `key` = `value`
/// ([`Secrets::add_setting`]) for this thread; call it for every setting
/// read, before any text that could quote it is made.
pub fn register_setting(key: &str, value: &str) {
    REGISTERED.with(|r| r.borrow_mut().add_setting(key, value));
}

/// `text` with this thread's registered secrets, in every form, and every
/// credential the patterns recognise replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    REGISTERED.with(|r| r.borrow().redact(text))
}

/// Redacts `text` ([`redact`]), then cuts it to at most `max_chars`
/// characters (ending a cut text with `…`): for quoting an answer's body in
/// a reason. Redacting first means a secret the cut would have split is
/// already gone.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let redacted = redact(text.trim());
    let mut cut: String = redacted.chars().take(max_chars).collect();
    if cut.len() < redacted.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_redacted_then_cut() {
        let body = format!("{{\"password\":\"p\"}}{}", "x".repeat(500));
        let e = excerpt(&body, 40);
        // 40 characters of the redacted body, then the ellipsis.
        assert_eq!(e.chars().count(), 41, "{e}");
        assert!(e.starts_with(r#"{"password":"***"}"#) && e.ends_with('…'), "{e}");
    }

    #[test]
    fn a_cut_before_the_at_sign_no_longer_shows_the_password() {
        // Cut before redacting, the text ended `https://bot:hunter2-secr…`:
        // no `@`, so no user-info, and the password stayed.
        let body = "see https://bot:hunter2-secret@api.example.com/x";
        let e = excerpt(body, 25);
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(e, "see https://***@api.examp…");
    }

    #[test]
    fn the_threads_registry_is_used_by_redact_and_excerpt() {
        // Run on a thread of its own so no other test sees the registry.
        std::thread::spawn(|| {
            assert_eq!(
                redact("key SUPERSECRET123 is over quota"),
                "key SUPERSECRET123 is over quota"
            );
            register_setting("source-url", "https://api.example.com/x?key=SUPERSECRET123");
            assert_eq!(redact("key SUPERSECRET123 is over quota"), "key *** is over quota");
            let long = format!("{}SUPERSECRET123", "x".repeat(110));
            assert_eq!(excerpt(&long, 120), format!("{}***", "x".repeat(110)));
            register("  other-secret  ");
            assert_eq!(redact("an other-secret"), "an ***");
        })
        .join()
        .unwrap();
    }
}
