//! API errors and how they look on the wire.
//!
//! Every answer to bad input is a 4xx with a JSON body that names the problem:
//! `{"result": "error", "status": 400, "errorCode": "INVALID_FIELD",
//!   "field": "failureReason", "message": "..."}`. The `result`/`errorCode`
//! pair matches the real API's error answers (e.g. 409 `IN_PROGRESS`).

use super::Response;
use serde_json::json;
use std::fmt;

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
}

impl ApiError {
    /// 400 for a field that is missing, of the wrong type or out of range.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "INVALID_FIELD",
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// 400 for a body that is not JSON at all.
    pub fn invalid_body(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: "INVALID_BODY",
            field: None,
            message: message.into(),
        }
    }

    /// 400 for a request that is well-formed but not allowed in the current state.
    pub fn invalid_state(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// 404 for an unknown workspace, import source, execution or schedule.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 404,
            code: "NOT_FOUND",
            field: None,
            message: message.into(),
        }
    }

    /// 401 for a missing or wrong credential.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: 401,
            code: "UNAUTHORIZED",
            field: None,
            message: "missing or wrong credential: send Authorization: Bearer <token>".into(),
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

    /// 405 for a known path with a method it does not take.
    pub fn method_not_allowed(method: &str, allowed: &str) -> ApiError {
        ApiError {
            status: 405,
            code: "METHOD_NOT_ALLOWED",
            field: None,
            message: format!("method {method} is not allowed here; use {allowed}"),
        }
    }

    /// 409 with the real API's code, e.g. `IN_PROGRESS`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 409,
            code,
            field: None,
            message: message.into(),
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
        }
    }

    /// The wire form.
    pub fn into_response(self) -> Response {
        let mut body = json!({
            "result": "error",
            "status": self.status,
            "errorCode": self.code,
            "message": self.message,
        });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        Response::json(self.status, &body)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
