//! The Assets API calls the import makes, and how their answers are read.
//!
//! The platform hands the app a single `call(method, path, body)` function;
//! this module knows the paths and bodies of the import contract, which
//! failures are worth retrying, and turns every answer that is not a success
//! into a sentence a person can act on.

use crate::retry::Verdict;
use serde_json::Value;
use std::fmt;

/// HTTP method of an API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
}

/// An answer from the API, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// JSON body text.
    pub body: String,
}

/// A call that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The platform refused to send the path.
    InvalidPath(String),
    /// The API could not be reached.
    Unreachable(String),
    /// The API did not answer in time.
    Timeout(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::InvalidPath(p) => write!(f, "the platform refused the API path {p:?}"),
            CallError::Unreachable(m) => write!(f, "the Assets API could not be reached ({m})"),
            CallError::Timeout(m) => write!(f, "the Assets API did not answer in time ({m})"),
        }
    }
}

/// The Assets API as the platform exposes it: paths are relative to the
/// workspace base path, the platform adds the credentials.
pub trait AssetsApi {
    /// Sends one call and returns the API's answer.
    fn call(&mut self, method: Method, path: &str, body: Option<&str>) -> Result<ApiResponse, CallError>;
}

/// Why an API call did not succeed: no answer, or an answer that is not 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// No answer.
    Call(CallError),
    /// A non-success answer, summarised.
    Status {
        /// HTTP status.
        status: u16,
        /// `errorCode` from the body, when there is one (e.g. `IN_PROGRESS`).
        code: Option<String>,
        /// The API's message, or the start of the body.
        message: String,
        /// The `Retry-After` header, when the API sent one.
        retry_after: Option<String>,
    },
    /// A success answer whose body the import cannot use.
    Unreadable(String),
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiFailure::Call(e) => e.fmt(f),
            ApiFailure::Status {
                status, code, message, ..
            } => {
                write!(f, "HTTP {status}")?;
                if let Some(code) = code {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            ApiFailure::Unreadable(m) => write!(f, "unreadable answer: {m}"),
        }
    }
}

/// Path of the import source's executions.
pub fn executions_path(import_source_id: &str) -> String {
    format!("importsource/{import_source_id}/executions")
}

/// Path of one execution, or of something under it (`suffix` like `/data`).
pub fn execution_path(import_source_id: &str, execution_id: &str, suffix: &str) -> String {
    format!("{}/{execution_id}{suffix}", executions_path(import_source_id))
}

/// The create-execution body.
pub fn create_execution_body(scheduled: bool) -> &'static str {
    if scheduled {
        r#"{"scheduled":true}"#
    } else {
        r#"{"scheduled":false}"#
    }
}

/// The failure-report body; `reason` is already cut to the API's limit.
pub fn failure_body(reason: &str) -> String {
    serde_json::json!({ "failureReason": reason }).to_string()
}

/// Turns a call's result into success or an [`ApiFailure`].
pub fn check(result: Result<ApiResponse, CallError>) -> Result<ApiResponse, ApiFailure> {
    let response = result.map_err(ApiFailure::Call)?;
    if (200..300).contains(&response.status) {
        Ok(response)
    } else {
        Err(summarise_error(&response))
    }
}

/// Whether a failed call is worth repeating: 429 (after `Retry-After` when
/// given), 5xx, no answer at all. Other 4xx and refused paths are final.
/// `now_ms` turns an HTTP-date `Retry-After` into a wait.
pub fn classify(failure: &ApiFailure, now_ms: u64) -> Verdict {
    match failure {
        ApiFailure::Status {
            status: 429,
            retry_after,
            ..
        } => retry_after
            .as_deref()
            .and_then(|v| crate::retry::retry_after_ms(v, now_ms))
            .map_or(Verdict::Backoff, Verdict::After),
        ApiFailure::Status { status, .. } if *status >= 500 => Verdict::Backoff,
        ApiFailure::Call(CallError::Unreachable(_) | CallError::Timeout(_)) => Verdict::Backoff,
        _ => Verdict::Fatal,
    }
}

/// The `state` field of an execution-status answer (`DONE`, `FAILED`, ...).
pub fn execution_state(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("status").and_then(Value::as_str).map(str::to_owned)
}

/// Reads an error answer: the `errorCode` and message of the mock's and the
/// real API's error bodies, or the start of whatever else came back.
pub fn summarise_error(response: &ApiResponse) -> ApiFailure {
    let parsed: Option<Value> = serde_json::from_str(&response.body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("errorCode"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.get("message").and_then(Value::as_str).map(str::to_owned).or_else(|| {
                v.get("errorMessages")
                    .and_then(Value::as_array)
                    .map(|list| list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
            })
        })
        .unwrap_or_else(|| {
            if code.is_some() {
                // The code alone says it (the real API's `IN_PROGRESS`).
                String::new()
            } else {
                response.body.trim().chars().take(200).collect()
            }
        });
    let retry_after = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .map(|(_, value)| value.clone());
    ApiFailure::Status {
        status: response.status,
        code,
        message,
        retry_after,
    }
}

/// Finds the execution id in a create-execution answer: the path segment
/// before `/data` in `links.submitResults` (the real API has no other id), or
/// a top-level `id`.
pub fn execution_id_from_response(body: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("create-execution answer is not JSON ({e})"))?;
    if let Some(url) = value
        .get("links")
        .and_then(|l| l.get("submitResults"))
        .and_then(Value::as_str)
    {
        return execution_id_from_submit_url(url)
            .ok_or_else(|| format!("links.submitResults {url:?} does not end in /executions/{{id}}/data"));
    }
    match value.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err("create-execution answer has neither links.submitResults nor an id".to_owned()),
    }
}

/// `https://host/.../executions/{executionId}/data` → `executionId`.
pub fn execution_id_from_submit_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let rest = path.trim_end_matches('/').strip_suffix("/data")?;
    let (before, id) = rest.rsplit_once('/')?;
    (before.ends_with("executions") && !id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_id_comes_from_submit_results() {
        let body = r#"{"links":{"submitResults":"https://api.atlassian.com/jsm/assets/workspace/w1/v1/importsource/s1/executions/e-42/data","submitProgress":"x"},"result":"success"}"#;
        assert_eq!(execution_id_from_response(body).unwrap(), "e-42");
    }

    #[test]
    fn a_top_level_id_is_accepted() {
        assert_eq!(execution_id_from_response(r#"{"id":"e-7"}"#).unwrap(), "e-7");
        assert_eq!(execution_id_from_response(r#"{"id":12}"#).unwrap(), "12");
    }

    #[test]
    fn submit_results_wins_over_id_and_tolerates_slash_and_query() {
        let body = r#"{"id":"other","links":{"submitResults":"/x/executions/abc/data/?q=1"}}"#;
        assert_eq!(execution_id_from_response(body).unwrap(), "abc");
    }

    #[test]
    fn unusable_answers_say_why() {
        assert!(execution_id_from_response("not json").unwrap_err().contains("not JSON"));
        assert!(execution_id_from_response("{}").unwrap_err().contains("neither"));
        let err = execution_id_from_response(r#"{"links":{"submitResults":"https://h/x/status"}}"#).unwrap_err();
        assert!(err.contains("/executions/{id}/data"), "{err}");
        assert!(execution_id_from_response(r#"{"id":""}"#).is_err());
    }

    #[test]
    fn error_answers_are_summarised() {
        let r = ApiResponse {
            status: 409,
            headers: vec![],
            body: r#"{"result":"error","errorCode":"IN_PROGRESS"}"#.into(),
        };
        assert_eq!(summarise_error(&r).to_string(), "HTTP 409 IN_PROGRESS");
        let r = ApiResponse {
            status: 400,
            headers: vec![],
            body: r#"{"errorMessages":["bad","worse"]}"#.into(),
        };
        assert_eq!(summarise_error(&r).to_string(), "HTTP 400: bad; worse");
        let r = ApiResponse {
            status: 502,
            headers: vec![],
            body: "<html>gateway</html>".into(),
        };
        assert_eq!(summarise_error(&r).to_string(), "HTTP 502: <html>gateway</html>");
    }
}
