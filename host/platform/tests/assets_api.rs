//! The Assets mock validates like the real API: one test per rule.

use assets_platform::assets::{AssetsService, Response, SourceType};
use assets_platform::clock::{SystemClock, VirtualClock};
use serde_json::{json, Value};
use std::sync::Arc;

struct Api {
    service: AssetsService,
    workspace: String,
    source: String,
}

impl Api {
    fn new() -> Api {
        Api::with_clock(Arc::new(SystemClock))
    }

    fn with_clock(clock: Arc<dyn assets_platform::clock::Clock>) -> Api {
        let service = AssetsService::new(clock);
        let workspace = service.create_workspace();
        let source = service
            .create_import_source(&workspace, SourceType::External, None)
            .unwrap();
        Api {
            service,
            workspace,
            source,
        }
    }

    fn base(&self) -> String {
        format!(
            "/jsm/assets/workspace/{}/v1/importsource/{}",
            self.workspace, self.source
        )
    }

    fn call(&self, method: &str, rest: &str, body: &str) -> (u16, Value) {
        let r: Response = self
            .service
            .handle(method, &format!("{}{rest}", self.base()), body.as_bytes());
        let value = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&r.body).expect("every answer is JSON")
        };
        (r.status, value)
    }

    /// Creates an execution and returns its id.
    fn start(&self) -> String {
        let (status, body) = self.call("POST", "/executions", r#"{"scheduled":true}"#);
        assert_eq!(status, 201, "{body}");
        let url = body["links"]["submitResults"].as_str().unwrap();
        url.trim_end_matches("/data").rsplit('/').next().unwrap().to_owned()
    }

    fn chunk(n: usize) -> String {
        let objects: Vec<Value> = (0..n)
            .map(|i| json!({"externalId": format!("a-{i}"), "label": format!("A {i}"), "attributes": {"k": ["v"]}}))
            .collect();
        json!({"objectTypeId": "laptop", "objects": objects}).to_string()
    }
}

fn assert_error(answer: (u16, Value), status: u16, field: Option<&str>, words: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["result"], "error", "{body}");
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{body}");
    }
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(words), "message {message:?} should contain {words:?}");
}

#[test]
fn the_create_execution_answer_has_the_real_apis_links() {
    let api = Api::new();
    let (status, body) = api.call("POST", "/executions", r#"{"scheduled":true}"#);
    assert_eq!(status, 201);
    assert_eq!(body["result"], "success");
    let submit = body["links"]["submitResults"].as_str().unwrap();
    assert!(
        submit.starts_with("http://assets.local/jsm/assets/workspace/"),
        "{submit}"
    );
    assert!(submit.ends_with("/data"));
    for link in ["submitProgress", "getExecutionStatus", "cancel"] {
        assert!(body["links"][link].is_string(), "{link} missing: {body}");
    }
}

#[test]
fn the_full_lifecycle_records_a_scheduled_completed_run() {
    let start = chrono::Utc::now();
    let clock = Arc::new(VirtualClock::new(start));
    let api = Api::with_clock(clock.clone());
    let id = api.start();
    let (status, body) = api.call("POST", &format!("/executions/{id}/data"), &Api::chunk(3));
    assert_eq!((status, body["objectsAccepted"].as_u64()), (200, Some(3)));
    assert_eq!(
        api.call("POST", &format!("/executions/{id}/history/completed"), "").0,
        200
    );
    // Processing takes time on the service's clock: 3 objects, 300 µs.
    let (_, status_body) = api.call("GET", &format!("/executions/{id}/status"), "");
    assert_eq!(status_body["status"], "PROCESSING");
    assert_eq!(status_body["objects"], 3);
    clock.advance(chrono::Duration::microseconds(299));
    let (_, status_body) = api.call("GET", &format!("/executions/{id}/status"), "");
    assert_eq!(status_body["status"], "PROCESSING");
    clock.advance(chrono::Duration::microseconds(1));
    let (_, status_body) = api.call("GET", &format!("/executions/{id}/status"), "");
    assert_eq!(status_body["status"], "DONE");
    let (_, history) = api.call("GET", "/history", "");
    assert_eq!(history[0]["status"], "completed");
    assert_eq!(history[0]["scheduled"], true);
    assert_eq!(history[0]["objects"], 3);
}

#[test]
fn a_body_that_is_not_json_is_a_400() {
    let api = Api::new();
    assert_error(
        api.call("POST", "/executions", "scheduled=true"),
        400,
        None,
        "not valid JSON",
    );
    let id = api.start();
    assert_error(
        api.call("POST", &format!("/executions/{id}/data"), "{\"objectTypeId\":"),
        400,
        None,
        "not valid JSON",
    );
    assert_error(
        api.call("POST", &format!("/executions/{id}/history/failed"), "oops"),
        400,
        None,
        "not valid JSON",
    );
    // The published API treats the data body as optional: no body stores
    // nothing and is not an error.
    let (status, body) = api.call("POST", &format!("/executions/{id}/data"), "");
    assert_eq!((status, body["objectsAccepted"].as_u64()), (200, Some(0)), "{body}");
}

#[test]
fn a_missing_required_field_is_a_400_naming_it() {
    let api = Api::new();
    let id = api.start();
    let data = format!("/executions/{id}/data");
    assert_error(
        api.call("POST", &data, r#"{"objects":[]}"#),
        400,
        Some("objectTypeId"),
        "missing field",
    );
    assert_error(
        api.call("POST", &data, r#"{"objectTypeId":"t"}"#),
        400,
        Some("objects"),
        "missing field",
    );
    assert_error(
        api.call(
            "POST",
            &data,
            r#"{"objectTypeId":"t","objects":[{"externalId":"a","label":"A"},{"label":"B"}]}"#,
        ),
        400,
        Some("objects[1].externalId"),
        "missing field",
    );
    assert_error(
        api.call("POST", &format!("/executions/{id}/history/failed"), "{}"),
        400,
        Some("failureReason"),
        "missing field",
    );
}

#[test]
fn wrong_types_unknown_fields_and_empty_ids_are_400s_naming_the_field() {
    let api = Api::new();
    assert_error(
        api.call("POST", "/executions", r#"{"scheduled":"yes"}"#),
        400,
        Some("scheduled"),
        "expected a boolean",
    );
    assert_error(
        api.call("POST", "/executions", r#"{"schedueld":true}"#),
        400,
        Some("schedueld"),
        "unknown field",
    );
    let id = api.start();
    let data = format!("/executions/{id}/data");
    assert_error(
        api.call(
            "POST",
            &data,
            r#"{"objectTypeId":"t","objects":[{"externalId":"a","label":"A","attributes":{"k":"v"}}]}"#,
        ),
        400,
        Some("objects[0].attributes.k"),
        "expected a sequence",
    );
    assert_error(
        api.call("POST", &data, r#"{"objectTypeId":"","objects":[]}"#),
        400,
        Some("objectTypeId"),
        "must not be empty",
    );
    assert_error(
        api.call(
            "POST",
            &data,
            r#"{"objectTypeId":"t","objects":[{"externalId":" ","label":"A"}]}"#,
        ),
        400,
        Some("objects[0].externalId"),
        "must not be empty",
    );
    assert_error(
        api.call(
            "POST",
            &format!("/executions/{id}/history/failed"),
            r#"{"failureReason":12}"#,
        ),
        400,
        Some("failureReason"),
        "expected a string",
    );
}

#[test]
fn unknown_workspace_import_source_or_execution_is_a_404() {
    let api = Api::new();
    let other_ws = format!("/jsm/assets/workspace/nope/v1/importsource/{}/executions", api.source);
    let r = api.service.handle("POST", &other_ws, b"{}");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("workspace nope does not exist"), "{}", r.body);

    let other_src = format!(
        "/jsm/assets/workspace/{}/v1/importsource/nope/executions",
        api.workspace
    );
    let r = api.service.handle("POST", &other_src, b"{}");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("import source nope"), "{}", r.body);

    // An import source of another workspace is not reachable through this one.
    let ws2 = api.service.create_workspace();
    let foreign = format!("/jsm/assets/workspace/{ws2}/v1/importsource/{}/executions", api.source);
    assert_eq!(api.service.handle("POST", &foreign, b"{}").status, 404);

    assert_error(
        api.call("POST", "/executions/nope/data", &Api::chunk(1)),
        404,
        None,
        "execution nope does not exist",
    );
    assert_error(
        api.call("POST", "/executions/nope/history/completed", ""),
        404,
        None,
        "execution nope",
    );
    assert_error(
        api.call("POST", "/executions/nope/history/failed", r#"{"failureReason":"x"}"#),
        404,
        None,
        "execution nope",
    );
    assert_error(
        api.call("GET", "/executions/nope/status", ""),
        404,
        None,
        "execution nope",
    );
}

#[test]
fn a_failure_reason_over_1024_characters_is_a_400() {
    let api = Api::new();
    let id = api.start();
    let failed = format!("/executions/{id}/history/failed");
    let too_long = json!({ "failureReason": "é".repeat(1025) }).to_string();
    assert_error(
        api.call("POST", &failed, &too_long),
        400,
        Some("failureReason"),
        "1025 characters",
    );
    // Counted as a Java server counts: 1,024 emoji are 1,024 characters to
    // Rust but 2,048 UTF-16 units, and are refused.
    let emoji = json!({ "failureReason": "😀".repeat(1024) }).to_string();
    assert_error(
        api.call("POST", &failed, &emoji),
        400,
        Some("failureReason"),
        "2048 characters long counted in UTF-16 code units",
    );
    // 1024 multi-byte characters (2048 bytes) are within the limit, and so
    // are 512 emoji (1,024 units).
    let at_limit = json!({ "failureReason": "é".repeat(1024) }).to_string();
    assert_eq!(api.call("POST", &failed, &at_limit).0, 200);
    let emoji_at_limit = json!({ "failureReason": "😀".repeat(512) }).to_string();
    let other = format!("/executions/{}/history/failed", api.start());
    assert_eq!(api.call("POST", &other, &emoji_at_limit).0, 200);
    assert_error(
        api.call(
            "POST",
            &format!("/executions/{}/history/failed", api.start()),
            r#"{"failureReason":"  "}"#,
        ),
        400,
        Some("failureReason"),
        "empty",
    );
}

#[test]
fn nothing_is_accepted_after_completion_was_signalled() {
    let api = Api::new();
    let id = api.start();
    assert_eq!(
        api.call("POST", &format!("/executions/{id}/history/completed"), "").0,
        200
    );
    assert_error(
        api.call("POST", &format!("/executions/{id}/data"), &Api::chunk(1)),
        400,
        None,
        "already completed",
    );
    assert_error(
        api.call("POST", &format!("/executions/{id}/history/completed"), ""),
        400,
        None,
        "already completed",
    );
    assert_error(
        api.call(
            "POST",
            &format!("/executions/{id}/history/failed"),
            r#"{"failureReason":"late"}"#,
        ),
        400,
        None,
        "only while it is INGESTING",
    );
}

#[test]
fn nothing_is_accepted_after_a_failure_or_a_cancel() {
    let api = Api::new();
    let id = api.start();
    assert_eq!(
        api.call(
            "POST",
            &format!("/executions/{id}/history/failed"),
            r#"{"failureReason":"x"}"#
        )
        .0,
        200
    );
    assert_error(
        api.call("POST", &format!("/executions/{id}/data"), &Api::chunk(1)),
        400,
        None,
        "already failed",
    );
    assert_error(
        api.call("POST", &format!("/executions/{id}/history/completed"), ""),
        400,
        None,
        "already failed",
    );

    let id = api.start();
    assert_eq!(api.call("DELETE", &format!("/executions/{id}"), "").0, 200);
    assert_error(
        api.call("POST", &format!("/executions/{id}/data"), &Api::chunk(1)),
        400,
        None,
        "cancelled",
    );
    let (_, status) = api.call("GET", "/executions/status", "");
    assert_eq!(status["status"], "CANCELLED");
}

#[test]
fn a_second_execution_while_one_is_ingesting_is_a_409_in_progress() {
    let api = Api::new();
    let first = api.start();
    let (status, body) = api.call("POST", "/executions", r#"{"scheduled":true}"#);
    assert_eq!(status, 409);
    assert_eq!(body["errorCode"], "IN_PROGRESS");
    assert_eq!(body["result"], "error");
    assert!(body["message"].as_str().unwrap().contains(&first));
    // Once the first has ended, a new one may start.
    assert_eq!(
        api.call("POST", &format!("/executions/{first}/history/completed"), "")
            .0,
        200
    );
    api.start();
}

#[test]
fn objects_are_keyed_by_external_id_and_the_last_write_wins() {
    let api = Api::new();
    let id = api.start();
    let data = format!("/executions/{id}/data");
    assert_eq!(api.call("POST", &data, &Api::chunk(3)).0, 200);
    let again = json!({"objectTypeId": "laptop", "objects": [{"externalId": "a-1", "label": "renamed"}]}).to_string();
    assert_eq!(api.call("POST", &data, &again).0, 200);
    let (_, status) = api.call("GET", &format!("/executions/{id}/status"), "");
    assert_eq!(
        (status["objects"].as_u64(), status["objectsReceived"].as_u64()),
        (Some(3), Some(4))
    );
    let state = api.service.state();
    let stored = &state.execution_by_id(&id).unwrap().objects[&("laptop".to_owned(), "a-1".to_owned())];
    assert_eq!(stored.label, "renamed");
}

/// A `clientGeneratedId` names one content for ever: the same chunk again
/// is stored once (0 accepted), other objects under the same id are a 409
/// that names the id, with nothing of them stored — never a silent 0.
#[test]
fn a_chunk_id_sent_again_with_other_objects_is_a_409_naming_it() {
    let api = Api::new();
    let id = api.start();
    let data = format!("/executions/{id}/data");
    let chunk = |chunk_id: &str, n: usize, label: &str| {
        let objects: Vec<Value> = (0..n)
            .map(|i| json!({"externalId": format!("a-{i}"), "label": format!("{label} {i}"), "attributes": {"k": ["v"]}}))
            .collect();
        json!({"clientGeneratedId": chunk_id, "objectTypeId": "laptop", "objects": objects}).to_string()
    };
    let (status, body) = api.call("POST", &data, &chunk("c-1", 3, "A"));
    assert_eq!((status, body["objectsAccepted"].as_u64()), (200, Some(3)), "{body}");
    let (status, body) = api.call("POST", &data, &chunk("c-1", 3, "A"));
    assert_eq!(
        (status, body["objectsAccepted"].as_u64()),
        (200, Some(0)),
        "the same chunk again: {body}"
    );

    for (other, what) in [
        (chunk("c-1", 2, "A"), "fewer objects"),
        (chunk("c-1", 3, "B"), "other labels"),
    ] {
        let (status, body) = api.call("POST", &data, &other);
        assert_eq!(status, 409, "{what}: {body}");
        assert_eq!(body["errorCode"], "CHUNK_CONFLICT", "{what}: {body}");
        assert!(body["message"].as_str().unwrap().contains("\"c-1\""), "{what}: {body}");
    }
    let state = api.service.state();
    let execution = state.execution_by_id(&id).unwrap();
    assert_eq!(
        (execution.chunks, execution.received),
        (1, 3),
        "nothing of a refused chunk counts"
    );
    let stored = &execution.objects[&("laptop".to_owned(), "a-1".to_owned())];
    assert_eq!(stored.label, "A 1", "nothing of a refused chunk is stored");
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_both_as_json() {
    let api = Api::new();
    assert_error(api.call("GET", "/nothing-here", ""), 404, None, "no endpoint");
    let r = api.service.handle("GET", "/", b"");
    assert_eq!(r.status, 404);
    assert!(serde_json::from_str::<Value>(&r.body).is_ok());
    assert_error(api.call("GET", "/executions", ""), 405, None, "use POST");
    assert_error(api.call("BREW", "/executions", ""), 405, None, "method BREW");
}

#[test]
fn the_history_comes_a_page_at_a_time_with_a_next_link() {
    let api = Api::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = api.start();
        let (status, _) = api.call("POST", &format!("/executions/{id}/history/completed"), "");
        assert_eq!(status, 200);
        ids.push(id);
    }
    let page = |query: &str| {
        let r = api
            .service
            .handle("GET", &format!("{}/history{query}", api.base()), b"");
        assert_eq!(r.status, 200, "{}", r.body);
        let lines: Vec<Value> = serde_json::from_str(&r.body).unwrap();
        let link = r.headers.iter().find(|(n, _)| n == "link").map(|(_, v)| v.clone());
        let next = r
            .headers
            .iter()
            .find(|(n, _)| n == "x-next-cursor")
            .map(|(_, v)| v.clone());
        let ids: Vec<String> = lines
            .iter()
            .map(|l| l["executionId"].as_str().unwrap().to_owned())
            .collect();
        (ids, link, next)
    };
    let (first, link, next) = page("?limit=2");
    assert_eq!(first, ids[..2]);
    let next = next.expect("more lines: a cursor");
    assert_eq!(
        link.as_deref(),
        Some(
            format!(
                "<http://assets.local{}/history?limit=2&cursor={next}>; rel=\"next\"",
                api.base()
            )
            .as_str()
        )
    );
    let (second, _, next) = page(&format!("?limit=2&cursor={}", next));
    assert_eq!(second, ids[2..4]);
    let (last, link, next) = page(&format!("?limit=2&cursor={}", next.unwrap()));
    assert_eq!(
        (last.as_slice(), link, next),
        (&ids[4..], None, None),
        "the last page has no next"
    );
    assert_eq!(page("").0, ids, "no limit: up to 1000 lines");

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?cursor=x", "cursor"),
        ("?page=2", "page"),
    ] {
        let (status, body) = api.call("GET", &format!("/history{query}"), "");
        assert_eq!((status, body["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
}

/// A header of an answer, by its lower-case name.
fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Every path under an import source, with the methods it takes: HEAD
/// wherever GET is, since it is answered like GET.
fn endpoints(execution: &str) -> Vec<(String, &'static [&'static str])> {
    const GET: &[&str] = &["GET", "HEAD"];
    const POST: &[&str] = &["POST"];
    vec![
        (String::new(), GET),
        ("/configstatus".into(), GET),
        ("/mapping".into(), &["PUT", "PATCH"]),
        ("/mapping/progress/op-1".into(), GET),
        ("/schema-and-mapping".into(), GET),
        ("/schedule".into(), GET),
        ("/token".into(), POST),
        ("/executions".into(), POST),
        ("/executions/status".into(), GET),
        (format!("/executions/{execution}"), &["DELETE"]),
        (format!("/executions/{execution}/status"), GET),
        (format!("/executions/{execution}/progress"), &["PUT"]),
        (format!("/executions/{execution}/data"), POST),
        (format!("/executions/{execution}/history/completed"), POST),
        (format!("/executions/{execution}/history/failed"), POST),
        ("/history".into(), GET),
        ("/importschedule".into(), POST),
        ("/importschedule/schedule-1".into(), &["GET", "HEAD", "PUT", "DELETE"]),
    ]
}

/// Fuzzing found 405s without the `Allow` header RFC 9110 requires, and
/// HEAD refused where GET is taken.
#[test]
fn every_405_has_an_allow_header_listing_exactly_the_methods_the_path_takes() {
    let api = Api::new();
    let execution = api.start();
    for (rest, takes) in endpoints(&execution) {
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"] {
            if takes.contains(&method) {
                continue;
            }
            let path = format!("{}{rest}", api.base());
            let r = api.service.handle(method, &path, b"{}");
            assert_eq!(r.status, 405, "{method} {rest}: {}", r.body);
            let allow = header(&r, "allow").unwrap_or_else(|| panic!("{method} {rest}: no Allow header"));
            let mut listed: Vec<&str> = allow.split(", ").collect();
            let mut expected = takes.to_vec();
            listed.sort_unstable();
            expected.sort_unstable();
            assert_eq!(listed, expected, "{method} {rest}: Allow {allow:?}");
            if method != "HEAD" {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                let message = body["message"].as_str().unwrap();
                for m in takes {
                    assert!(message.contains(m), "{method} {rest}: {message:?} should list {m}");
                }
            }
        }
    }
}

/// HEAD on a path that takes GET gets the GET's status and headers and no
/// body, whether the GET succeeds or is refused.
#[test]
fn head_is_answered_like_get_without_a_body() {
    let api = Api::new();
    let execution = api.start();
    let (status, _) = api.call("POST", &format!("/executions/{execution}/history/completed"), "");
    assert_eq!(status, 200);
    api.start();
    for rest in [
        String::new(),
        "/configstatus".into(),
        "/schedule".into(),
        "/executions/status".into(),
        format!("/executions/{execution}/status"),
        "/history?limit=1".into(),
        "/history?limit=0".into(),
        "/executions/nope/status".into(),
        "/schema-and-mapping".into(),
        "/importschedule/nope".into(),
    ] {
        let path = format!("{}{rest}", api.base());
        let get = api.service.handle("GET", &path, b"");
        let head = api.service.handle("HEAD", &path, b"");
        assert_eq!(
            (head.status, &head.headers),
            (get.status, &get.headers),
            "HEAD {rest}: {}",
            head.body
        );
        assert_eq!(head.body, "", "HEAD {rest} has no body");
    }
    let get = api
        .service
        .handle("GET", &format!("{}/history?limit=1", api.base()), b"");
    assert!(
        header(&get, "x-next-cursor").is_some(),
        "a case with more headers than one"
    );
}

/// Fuzzing found unknown query parameters refused by the history and the
/// mapping but ignored everywhere else: now every endpoint refuses them.
#[test]
fn every_endpoint_refuses_a_query_parameter_it_does_not_take() {
    let api = Api::new();
    let execution = api.start();
    for (rest, takes) in endpoints(&execution) {
        let expected = match rest.as_str() {
            "/history" => "limit, cursor",
            "/mapping" => "async",
            _ => "none",
        };
        for method in takes {
            let path = format!("{}{rest}?bogus=1", api.base());
            let r = api.service.handle(method, &path, b"{}");
            assert_eq!(r.status, 400, "{method} {rest}: {}", r.body);
            let body: Value = match *method {
                "HEAD" => continue,
                _ => serde_json::from_str(&r.body).unwrap(),
            };
            assert_eq!(body["field"], "bogus", "{method} {rest}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(
                message.contains("\"bogus\"") && message.contains(expected),
                "{method} {rest}: {message:?} should name bogus and list {expected:?}"
            );
        }
    }
    // Nothing was done by the refused calls: the execution still ingests.
    let (_, status) = api.call("GET", &format!("/executions/{execution}/status"), "");
    assert_eq!(status["status"], "INGESTING", "{status}");
    // A parameter given twice is ambiguous, and said to be.
    assert_error(
        api.call("GET", "/history?limit=1&limit=2", ""),
        400,
        Some("limit"),
        "twice",
    );
    // The parameters an endpoint takes still work.
    assert_eq!(api.call("GET", "/history?limit=1", "").0, 200);
}

/// Fuzzing found error answers that repeat the rejected value in full: a
/// 1 MB bad field came back as a 1–3 MB 400. Now the answer stays small
/// and still names the field.
#[test]
fn an_error_answer_stays_small_however_large_the_rejected_value() {
    let api = Api::new();
    let execution = api.start();
    let data = format!("/executions/{execution}/data");
    let huge = "x".repeat(1 << 20);
    let control = "\u{1}".repeat(1 << 20);
    let schedule = |timezone: &str| {
        json!({"runFrequency": "DAILY", "startTime": "2026-01-30T03:50:33Z", "timezone": timezone,
               "callbackUrl": "https://app.example/cb"})
        .to_string()
    };
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("POST", "/importschedule".into(), schedule(&huge), "timezone"),
        // Escaped as \u0001 in JSON: six bytes each on the wire.
        ("POST", "/importschedule".into(), schedule(&control), "timezone"),
        ("POST", "/executions".into(), json!({ huge.clone(): true }).to_string(), &huge),
        (
            "POST",
            data.clone(),
            json!({"objectTypeId": "laptop", "objects": huge}).to_string(),
            "objects",
        ),
        (
            "POST",
            data.clone(),
            json!({"objectTypeId": "laptop", "objects": [{"externalId": "a", "label": "A", "attributes": {"serial": huge}}]})
                .to_string(),
            "objects[0].attributes.serial",
        ),
        ("POST", data.clone(), json!({ "data": huge }).to_string(), "data"),
        ("GET", format!("/history?cursor={huge}"), String::new(), "cursor"),
    ];
    for (method, rest, body, field) in cases {
        let r = api
            .service
            .handle(method, &format!("{}{rest}", api.base()), body.as_bytes());
        let shown = &r.body[..r.body.len().min(200)];
        assert_eq!(r.status, 400, "{method} {}: {shown}", &rest[..rest.len().min(40)]);
        assert!(r.body.len() < 2048, "a {} byte answer: {shown}…", r.body.len());
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        let named = answer["field"].as_str().unwrap();
        if field.len() < 100 {
            assert_eq!(named, field, "{answer}");
        } else {
            // Too long to give whole: its start, and how much is left out.
            assert!(named.starts_with(&field[..256]), "{named}");
            assert!(named.ends_with("more bytes)"), "{named}");
        }
        let message = answer["message"].as_str().unwrap();
        assert!(message.ends_with("more bytes)"), "{message}");
    }
}
