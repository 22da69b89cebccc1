//! API errors and how they look on the wire.
//!
//! Every answer to bad input is a 4xx with a JSON body that names the problem:
//! `{"result": "error", "status": 400, "errorCode": "INVALID_FIELD",
//!   "field": "failureReason", "message": "..."}`. The `result`/`errorCode`
//! pair matches the real API's error answers (e.g. 409 `IN_PROGRESS`).
//!
//! What an error says is bounded where it is written
//! ([`ApiError::into_response`]): messages quote the client's values (and
//! serde's do too, unknown field names among them), so a 1 MB bad value
//! would otherwise come back as a 1 MB answer or more.

use super::Response;
use serde_json::json;
use std::fmt;

/// Most bytes an error answer's `field` takes as written in the JSON body
/// (escapes counted); a longer one is cut, saying how much was cut.
pub const MAX_ERROR_FIELD_BYTES: usize = 512;

/// Most bytes an error answer's `message` takes as written in the JSON body
/// (escapes counted); a longer one is cut, saying how much was cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// An API error: status, machine-readable code, the field at fault (if any)
/// and a sentence saying what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status: 4xx for the client's mistakes; 503 only when the
    /// server could not save a change.
    pub status: u16,
    /// Machine-readable code, e.g. `INVALID_FIELD`, `NOT_FOUND`, `IN_PROGRESS`.
    pub code: &'static str,
    /// The request field at fault, as a path (`objects[3].externalId`).
    pub field: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
    /// The methods the path takes, for a 405's `Allow` header; empty for
    /// every other error.
    pub allow: &'static [&'static str],
}

impl ApiError {
    /// 400 for a field that is missing, of the wrong type or out of range.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "INVALID_FIELD",
            field: Some(field.into()),
            message: message.into(),
            allow: &[],
        }
    }

    /// 400 for a body that is not JSON at all.
    pub fn invalid_body(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "INVALID_BODY",
            field: None,
            message: message.into(),
            allow: &[],
        }
    }

    /// 400 for a request that is well-formed but not allowed in the current state.
    pub fn invalid_state(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code,
            field: None,
            message: message.into(),
            allow: &[],
        }
    }

    /// 404 for an unknown workspace, import source, execution or schedule.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 404,
            code: "NOT_FOUND",
            field: None,
            message: message.into(),
            allow: &[],
        }
    }

    /// 401 for a missing or wrong credential.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: 401,
            code: "UNAUTHORIZED",
            field: None,
            message: "missing or wrong credential: send Authorization: Bearer <token>".into(),
            allow: &[],
        }
    }

    /// 403 `FORBIDDEN`: the caller proved who it is, and that one may not
    /// do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 403,
            code: "FORBIDDEN",
            field: None,
            message: message.into(),
            allow: &[],
        }
    }

    /// 404 for an import source that does not exist in the workspace, and
    /// for one that exists but the caller may not reach: the two must read
    /// the same, so a caller cannot tell another app's source from none.
    pub fn unknown_source(workspace_id: &str, source_id: &str) -> ApiError {
        ApiError::not_found(format!(
            "import source {source_id} does not exist in workspace {workspace_id}"
        ))
    }

    /// 405 for a known path with a method it does not take: `allowed`, the
    /// methods it does take, makes both the message and the `Allow` header
    /// (RFC 9110, section 15.5.6) [`ApiError::into_response`] writes.
    pub fn method_not_allowed(method: &str, allowed: &'static [&'static str]) -> ApiError {
        let listed = match allowed {
            [] => "no method".to_owned(),
            [one] => (*one).to_owned(),
            [first @ .., last] => format!("{} or {last}", first.join(", ")),
        };
        ApiError {
            status: 405,
            code: "METHOD_NOT_ALLOWED",
            field: None,
            message: format!("method {method} is not allowed here; use {listed}"),
            allow: allowed,
        }
    }

    /// 413 `LIMIT_EXCEEDED`: the request would take the caller over one of
    /// the service's quotas; `message` names the limit and its figure.
    pub fn limit_exceeded(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 413,
            code: "LIMIT_EXCEEDED",
            field: None,
            message: message.into(),
            allow: &[],
        }
    }

    /// 409 with the real API's code, e.g. `IN_PROGRESS`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 409,
            code,
            field: None,
            message: message.into(),
            allow: &[],
        }
    }

    /// 503 `STATE_NOT_SAVED`: the database refused the change, which was
    /// therefore not made; the client may retry.
    pub fn not_saved() -> ApiError {
        ApiError {
            status: 503,
            code: "STATE_NOT_SAVED",
            field: None,
            message:
                "the change could not be saved to the database, or the state read from it (see the server log); retry"
                    .into(),
            allow: &[],
        }
    }

    /// The wire form. The `message` and the `field` are cut to
    /// [`MAX_ERROR_MESSAGE_BYTES`] and [`MAX_ERROR_FIELD_BYTES`] here, for
    /// every error at once, since either may quote what the client sent; a
    /// 405 carries `Allow`.
    pub fn into_response(self) -> Response {
        let mut body = json!({
            "result": "error",
            "status": self.status,
            "errorCode": self.code,
            "message": bounded(self.message, MAX_ERROR_MESSAGE_BYTES),
        });
        if let Some(field) = self.field {
            body["field"] = bounded(field, MAX_ERROR_FIELD_BYTES).into();
        }
        let mut response = Response::json(self.status, &body);
        if !self.allow.is_empty() {
            response.headers.push(("allow".into(), self.allow.join(", ")));
        }
        response
    }
}

/// Bytes `c` takes in a JSON string as serde_json writes it: quote and
/// backslash escaped in two, the other control characters in two or six
/// (`\u0001`); counted as six, which is never too few.
fn json_width(c: char) -> usize {
    match c {
        '"' | '\\' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

/// `text` if it takes at most `max` bytes as written in JSON; else its
/// start, cut on a character boundary, and "… (N more bytes)", N counting
/// the UTF-8 bytes left out, the whole within `max`.
fn bounded(text: String, max: usize) -> String {
    if text.chars().map(json_width).sum::<usize>() <= max {
        return text;
    }
    // Room for the ending with as many digits as the whole text's length,
    // which is never fewer than the cut part's.
    let ending = |cut: usize| format!("\u{2026} ({cut} more bytes)");
    let room = max.saturating_sub(ending(text.len()).len());
    let mut width = 0;
    let mut kept = 0;
    for (at, c) in text.char_indices() {
        width += json_width(c);
        if width > room {
            break;
        }
        kept = at + c.len_utf8();
    }
    let cut = text.len() - kept;
    let mut out = text;
    out.truncate(kept);
    out.push_str(&ending(cut));
    out
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str) -> usize {
        serde_json::to_string(text).unwrap().len() - 2
    }

    #[test]
    fn text_within_the_bound_is_kept_whole() {
        let text = "x".repeat(MAX_ERROR_FIELD_BYTES);
        assert_eq!(bounded(text.clone(), MAX_ERROR_FIELD_BYTES), text);
    }

    #[test]
    fn longer_text_is_cut_on_a_character_boundary_saying_how_much_was_cut() {
        for unit in ["x", "é", "😀", "\u{1}", "\"", "a\u{1}é😀\\"] {
            let text = unit.repeat(5000);
            let out = bounded(text.clone(), MAX_ERROR_MESSAGE_BYTES);
            assert!(
                written(&out) <= MAX_ERROR_MESSAGE_BYTES,
                "{unit:?}: {} bytes written",
                written(&out)
            );
            let (kept, ending) = out.rsplit_once('\u{2026}').unwrap();
            assert!(text.starts_with(kept), "{unit:?}");
            assert_eq!(ending, format!(" ({} more bytes)", text.len() - kept.len()), "{unit:?}");
            assert!(
                written(kept) > MAX_ERROR_MESSAGE_BYTES - 40,
                "{unit:?}: as much is kept as fits"
            );
        }
    }

    #[test]
    fn a_405_lists_the_methods_in_its_message_and_its_allow_header() {
        let response = ApiError::method_not_allowed("POST", &["GET", "HEAD", "PUT"]).into_response();
        assert!(response.body.contains("use GET, HEAD or PUT"), "{}", response.body);
        let allow = response.headers.iter().find(|(n, _)| n == "allow");
        assert_eq!(allow.map(|(_, v)| v.as_str()), Some("GET, HEAD, PUT"));
        let other = ApiError::not_found("x").into_response();
        assert!(other.headers.iter().all(|(n, _)| n != "allow"));
    }
}
