//! Signed callbacks: how an app's web trigger knows a scheduled callback
//! came from the platform, and came once.
//!
//! Web-trigger URLs are public, so the platform signs every callback: an
//! HMAC-SHA256, keyed with the app's secret, over `"{timestamp}.{body}"`,
//! sent as `x-assets-signature: sha256=<hex>` beside
//! `x-assets-timestamp: <unix seconds>`. A receiver refuses a request whose
//! signature does not match (forged or altered), whose timestamp is more than
//! [`TOLERANCE_SECS`] away from its clock (an old capture), or whose signature
//! it has already accepted (a replay inside the tolerance window).
//!
//! Timestamps are real (system) time even when the scheduler runs on a
//! virtual clock: they guard transport, not the schedule.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-assets-signature";
/// Header carrying the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-assets-timestamp";
/// Largest accepted distance between the signing time and the receiver's clock.
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value for `body` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A signing header is absent.
    Missing(&'static str),
    /// A header does not parse.
    Malformed(&'static str),
    /// The timestamp is outside the tolerance window.
    Stale {
        /// Seconds between the signing time and now (negative: in the future).
        age_secs: i64,
    },
    /// The signature does not match the body and timestamp.
    BadSignature,
    /// This exact signed request was already accepted.
    Replayed,
    /// The shared replay record could not be reached, so the callback
    /// cannot be told from a replay (not the caller's fault: retry).
    Unavailable(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing(header) => write!(f, "the {header} header is missing; callbacks must be signed"),
            Refusal::Malformed(header) => write!(f, "the {header} header does not parse"),
            Refusal::Stale { age_secs } => write!(
                f,
                "the callback was signed {age_secs} s from now, outside the {TOLERANCE_SECS} s window; it may be an old capture"
            ),
            Refusal::BadSignature => write!(
                f,
                "the signature does not match: the callback was not signed with this app's secret, or was altered"
            ),
            Refusal::Replayed => write!(f, "this signed callback was already delivered once; replays are refused"),
            Refusal::Unavailable(why) => write!(f, "the callback could not be checked against replays: {why}"),
        }
    }
}

impl std::error::Error for Refusal {}

/// Checks signatures with one app's secret and remembers what it accepted.
pub struct Verifier {
    secret: String,
    /// Accepted signatures and their timestamps, kept for the tolerance
    /// window (after it a replay is refused as stale anyway).
    seen: Mutex<HashMap<String, i64>>,
    /// Where accepted signatures are recorded when several nodes share the
    /// work; `None`: this process's memory (`seen`).
    shared: Option<Arc<dyn ReplayRecord>>,
}

/// A record of accepted callback signatures that several nodes share, so a
/// callback accepted by one is a replay on all.
pub trait ReplayRecord: Send + Sync {
    /// Records `signature` (the digest in lower-case hex, signed at
    /// `signed_at`, unix seconds) and says whether this was its first time;
    /// it must be remembered for `tolerance_secs` past `signed_at`. `Err`
    /// when the record cannot be reached.
    fn first_time(&self, signature: &str, signed_at: i64, tolerance_secs: i64) -> Result<bool, String>;
}

impl Verifier {
    /// A verifier for `secret`.
    pub fn new(secret: impl Into<String>) -> Verifier {
        Verifier {
            secret: secret.into(),
            seen: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Records accepted signatures in `record` instead of this process's
    /// memory.
    pub fn with_replay_record(mut self, record: Arc<dyn ReplayRecord>) -> Verifier {
        self.shared = Some(record);
        self
    }

    /// Accepts the request once, or says why not; `now` is Unix seconds.
    /// Accepted, it gives the signature's digest in one canonical spelling
    /// (lower-case hex): what "once" is counted on, and a stable name for
    /// this one signed request.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<String, Refusal> {
        let timestamp = timestamp.ok_or(Refusal::Missing(TIMESTAMP_HEADER))?;
        let signature = signature.ok_or(Refusal::Missing(SIGNATURE_HEADER))?;
        let timestamp: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Refusal::Malformed(TIMESTAMP_HEADER))?;
        let digest = signature
            .trim()
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
            .ok_or(Refusal::Malformed(SIGNATURE_HEADER))?;
        // The signature first: an unsigned request learns nothing about the
        // window or the replay record.
        mac(&self.secret, timestamp, body)
            .verify_slice(&digest)
            .map_err(|_| Refusal::BadSignature)?;
        let age_secs = now - timestamp;
        if age_secs.abs() > TOLERANCE_SECS {
            return Err(Refusal::Stale { age_secs });
        }
        // Keyed on the digest the header decodes to, not on its text: hex
        // reads `AB` and `ab` alike, so every spelling of one signature is
        // one key, and a re-cased replay is a replay.
        let key = hex::encode(&digest);
        if let Some(shared) = &self.shared {
            return match shared.first_time(&key, timestamp, TOLERANCE_SECS) {
                Ok(true) => Ok(key),
                Ok(false) => Err(Refusal::Replayed),
                Err(why) => Err(Refusal::Unavailable(why)),
            };
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, at| (now - *at).abs() <= TOLERANCE_SECS);
        if seen.insert(key.clone(), timestamp).is_some() {
            return Err(Refusal::Replayed);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    #[test]
    fn a_signed_callback_is_accepted_once() {
        let verifier = Verifier::new("s3cret");
        let body = br#"{"scheduled":true}"#;
        let signature = sign("s3cret", NOW, body);
        let ts = NOW.to_string();
        assert!(verifier.verify(Some(&ts), Some(&signature), body, NOW + 2).is_ok());
        assert_eq!(
            verifier.verify(Some(&ts), Some(&signature), body, NOW + 3),
            Err(Refusal::Replayed)
        );
    }

    #[test]
    fn a_signature_re_cased_is_the_same_signature_and_refused_again() {
        let verifier = Verifier::new("s3cret");
        let body = br#"{"scheduled":true}"#;
        let signature = sign("s3cret", NOW, body);
        let ts = NOW.to_string();
        let key = verifier.verify(Some(&ts), Some(&signature), body, NOW).unwrap();
        assert_eq!(
            key,
            signature.trim_start_matches("sha256="),
            "the key is the digest in lower-case hex"
        );
        let upper = format!("sha256={}", signature.trim_start_matches("sha256=").to_uppercase());
        assert_ne!(upper, signature);
        assert_eq!(
            verifier.verify(Some(&ts), Some(&upper), body, NOW),
            Err(Refusal::Replayed),
            "the same digest spelled in upper case is a replay"
        );
    }

    #[test]
    fn forged_altered_and_stale_callbacks_are_refused() {
        let verifier = Verifier::new("s3cret");
        let body = br#"{"scheduled":true}"#;
        let ts = NOW.to_string();
        let forged = sign("guess", NOW, body);
        assert_eq!(
            verifier.verify(Some(&ts), Some(&forged), body, NOW),
            Err(Refusal::BadSignature)
        );
        let genuine = sign("s3cret", NOW, body);
        assert_eq!(
            verifier.verify(Some(&ts), Some(&genuine), br#"{"scheduled":false}"#, NOW),
            Err(Refusal::BadSignature),
            "an altered body"
        );
        let moved = (NOW + 1).to_string();
        assert_eq!(
            verifier.verify(Some(&moved), Some(&genuine), body, NOW),
            Err(Refusal::BadSignature),
            "an altered timestamp"
        );
        let late = NOW + TOLERANCE_SECS + 1;
        assert_eq!(
            verifier.verify(Some(&ts), Some(&genuine), body, late),
            Err(Refusal::Stale {
                age_secs: TOLERANCE_SECS + 1
            })
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_named() {
        let verifier = Verifier::new("s3cret");
        let sig = sign("s3cret", NOW, b"{}");
        assert_eq!(
            verifier.verify(None, Some(&sig), b"{}", NOW),
            Err(Refusal::Missing(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verifier.verify(Some("1"), None, b"{}", NOW),
            Err(Refusal::Missing(SIGNATURE_HEADER))
        );
        assert_eq!(
            verifier.verify(Some("yesterday"), Some(&sig), b"{}", NOW),
            Err(Refusal::Malformed(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verifier.verify(Some("1"), Some("md5=abc"), b"{}", NOW),
            Err(Refusal::Malformed(SIGNATURE_HEADER))
        );
    }
}
