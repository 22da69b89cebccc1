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

impl CallError {
    /// The same error with `note` (e.g. how retrying ended) added.
    pub fn noted(self, note: &str) -> CallError {
        match self {
            CallError::InvalidPath(m) => CallError::InvalidPath(format!("{m}; {note}")),
            CallError::Unreachable(m) => CallError::Unreachable(format!("{m}; {note}")),
            CallError::Timeout(m) => CallError::Timeout(format!("{m}; {note}")),
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

/// Whether a failed call is worth repeating: 429 and 503 (after
/// `Retry-After` when given: RFC 9110 defines it for both), other 5xx, no
/// answer at all. Other 4xx and refused paths are final. `now_ms` turns an
/// HTTP-date `Retry-After` into a wait.
pub fn classify(failure: &ApiFailure, now_ms: u64) -> Verdict {
    match failure {
        ApiFailure::Status {
            status: 429 | 503,
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

/// True when a failed call may still have been carried out: no answer came
/// back (a timeout or a broken connection) or the server failed (5xx) after
/// the request arrived.
pub fn is_ambiguous(failure: &ApiFailure) -> bool {
    match failure {
        ApiFailure::Call(CallError::Timeout(_) | CallError::Unreachable(_)) => true,
        ApiFailure::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Path of the import source's latest execution's status.
pub fn latest_status_path(import_source_id: &str) -> String {
    format!("{}/status", executions_path(import_source_id))
}

/// What the import source's latest execution says about a create request
/// whose answer was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latest {
    /// There is none, or it started before the request: the request created
    /// nothing that is still the latest.
    NotCreated,
    /// It matches on every field the answer lets us check: `INGESTING`, of
    /// this run's kind (`scheduled`), with no chunk yet, started no earlier
    /// than the request. Only then may it be taken for this run's.
    Candidate(String),
    /// It cannot be shown to be this run's; the text says why.
    Unclear(String),
}

/// Reads a latest-execution status answer (`None` body for a 404: the source
/// has no execution) against a create request made at `since_ms` for a run
/// of kind `scheduled`. A field the answer leaves out counts against the
/// execution: an execution is taken only when it is provably the one asked
/// for, since writing to someone else's run is worse than leaving this one.
pub fn latest_execution(body: Option<&str>, scheduled: bool, since_ms: u64) -> Latest {
    let Some(body) = body else {
        return Latest::NotCreated;
    };
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Latest::Unclear("its status answer is not JSON".into());
    };
    let Some(id) = value
        .get("executionId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        return Latest::Unclear("its status answer names no executionId".into());
    };
    let started = value.get("startedAt").and_then(Value::as_str).and_then(rfc3339_ms);
    if started.is_some_and(|at| at < since_ms) {
        return Latest::NotCreated;
    }
    let status = value.get("status").and_then(Value::as_str);
    let kind = value.get("scheduled").and_then(Value::as_bool);
    let chunks = value.get("chunks").and_then(Value::as_u64);
    let why = match (status, kind, chunks, started) {
        (Some("INGESTING"), Some(k), Some(0), Some(_)) if k == scheduled => return Latest::Candidate(id.to_owned()),
        (None, ..) | (_, None, ..) | (_, _, None, _) | (.., None) => {
            "the API's status answer does not show its state, kind, chunk count and start".to_owned()
        }
        (Some(s), ..) if s != "INGESTING" => format!("it is {s}"),
        (_, Some(k), ..) if k != scheduled => {
            format!("it is a {} run's", if k { "scheduled" } else { "manual" })
        }
        (_, _, Some(c), _) => format!("it already holds {c} chunks"),
    };
    Latest::Unclear(format!("execution {id} {why}"))
}

/// `2026-01-01T01:00:00Z` (fractions and `±HH:MM` offsets too) as
/// milliseconds since the Unix epoch.
pub fn rfc3339_ms(text: &str) -> Option<u64> {
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset_s) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) if matches!(&time[i..i + 1], "Z" | "z") => (&time[..i], 0),
        Some(i) => {
            let sign = if &time[i..i + 1] == "-" { -1 } else { 1 };
            let (h, m) = time[i + 1..].split_once(':')?;
            (
                &time[..i],
                sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60),
            )
        }
        None => return None,
    };
    let mut c = clock.splitn(3, ':');
    let (h, m) = (c.next()?.parse::<i64>().ok()?, c.next()?.parse::<i64>().ok()?);
    let seconds: f64 = c.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = (days * 86_400 + h * 3600 + m * 60 - offset_s) * 1000 + (seconds * 1000.0).round() as i64;
    u64::try_from(ms).ok()
}

/// The `state` field of an execution-status answer (`DONE`, `FAILED`, ...).
pub fn execution_state(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("status").and_then(Value::as_str).map(str::to_owned)
}

/// The `objectsAccepted` of a data-chunk answer, when the API says it.
pub fn objects_accepted(body: &str) -> Option<u64> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("objectsAccepted").and_then(Value::as_u64)
}

/// True for the answer to a chunk whose `clientGeneratedId` the API holds
/// with other objects (409 `CHUNK_CONFLICT`).
pub fn is_chunk_conflict(failure: &ApiFailure) -> bool {
    matches!(failure, ApiFailure::Status { status: 409, code: Some(code), .. } if code == "CHUNK_CONFLICT")
}

/// The `failureReason` an execution-status answer shows, if any.
pub fn failure_reason(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("failureReason").and_then(Value::as_str).map(str::to_owned)
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

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let answer = |status: u16, retry_after: &str| {
            summarise_error(&ApiResponse {
                status,
                headers: vec![("retry-after".into(), retry_after.into())],
                body: "{}".into(),
            })
        };
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        for status in [429, 503] {
            assert_eq!(classify(&answer(status, "4"), now), Verdict::After(4_000), "{status}");
            assert_eq!(
                classify(&answer(status, "Wed, 21 Oct 2015 07:28:20 GMT"), now),
                Verdict::After(20_000),
                "{status}"
            );
            assert_eq!(classify(&answer(status, "soon"), now), Verdict::Backoff, "{status}");
        }
        assert_eq!(classify(&answer(500, "4"), now), Verdict::Backoff);
        assert_eq!(classify(&answer(400, "4"), now), Verdict::Fatal);
    }

    #[test]
    fn rfc3339_times_read_as_epoch_milliseconds() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2015-10-21T07:28:00Z"), Some(1_445_412_480_000));
        assert_eq!(rfc3339_ms("2015-10-21T09:28:00.250+02:00"), Some(1_445_412_480_250));
        assert_eq!(rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn only_an_execution_matching_on_every_field_is_a_candidate() {
        let body = |status: &str, scheduled: bool, chunks: u64, at: &str| {
            serde_json::json!({"executionId": "e-1", "status": status, "scheduled": scheduled, "chunks": chunks, "startedAt": at}).to_string()
        };
        let since = rfc3339_ms("2026-01-01T01:00:00Z").unwrap();
        let after = "2026-01-01T01:00:05Z";
        let latest = |b: &str| latest_execution(Some(b), true, since);
        assert_eq!(
            latest(&body("INGESTING", true, 0, after)),
            Latest::Candidate("e-1".into())
        );
        assert_eq!(
            latest_execution(None, true, since),
            Latest::NotCreated,
            "no execution at all"
        );
        assert_eq!(
            latest(&body("INGESTING", true, 0, "2026-01-01T00:59:00Z")),
            Latest::NotCreated,
            "older than the request: the request made nothing newer"
        );
        for (b, why) in [
            (body("DONE", true, 0, after), "it is DONE"),
            (body("INGESTING", false, 0, after), "a manual run's"),
            (body("INGESTING", true, 3, after), "holds 3 chunks"),
            (
                r#"{"executionId":"e-2","status":"INGESTING"}"#.to_owned(),
                "does not show its state, kind, chunk count and start",
            ),
            (
                r#"{"executionId":"e-2","status":"INGESTING","chunks":0,"startedAt":"2026-01-01T01:00:05Z"}"#
                    .to_owned(),
                "does not show",
            ),
        ] {
            match latest(&b) {
                Latest::Unclear(text) => assert!(text.contains(why), "{text:?} should say {why:?}"),
                other => panic!("{b}: {other:?}, wanted unclear"),
            }
        }
    }
}
