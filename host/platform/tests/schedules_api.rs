//! The schedule endpoints: the seed's shapes and every validation rule.

use assets_platform::assets::{AssetsService, SourceType};
use assets_platform::clock::VirtualClock;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

struct Api {
    service: AssetsService,
    clock: Arc<VirtualClock>,
    workspace: String,
}

fn now() -> DateTime<Utc> {
    "2026-01-10T12:00:00Z".parse().unwrap()
}

impl Api {
    fn new() -> Api {
        let clock = Arc::new(VirtualClock::new(now()));
        let service = AssetsService::new(clock.clone());
        let workspace = service.create_workspace();
        Api {
            service,
            clock,
            workspace,
        }
    }

    fn source(&self, source_type: SourceType) -> String {
        self.service
            .create_import_source(&self.workspace, source_type, None)
            .unwrap()
    }

    fn call(&self, method: &str, source: &str, rest: &str, body: &str) -> (u16, Value) {
        let path = format!(
            "/jsm/assets/workspace/{}/v1/importsource/{source}/importschedule{rest}",
            self.workspace
        );
        let r = self.service.handle(method, &path, body.as_bytes());
        (r.status, serde_json::from_str(&r.body).expect("every answer is JSON"))
    }

    fn create(&self, source: &str, body: Value) -> (u16, Value) {
        self.call("POST", source, "", &body.to_string())
    }
}

fn seed_body() -> Value {
    json!({
        "runFrequency": "DAILY",
        "startTime": "2026-01-30T03:50:33Z",
        "timezone": "America/New_York",
        "callbackUrl": "https://your-app-callback-url.com"
    })
}

fn assert_400(answer: (u16, Value), field: Option<&str>, words: &str) {
    let (status, body) = answer;
    assert_eq!(status, 400, "{body}");
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{body}");
    }
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(words), "{message:?} should contain {words:?}");
}

#[test]
fn create_answers_the_seeds_shape_plus_next_run_time() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let (status, body) = api.create(&source, seed_body());
    assert_eq!(status, 201, "{body}");
    for field in [
        "id",
        "importSourceId",
        "runFrequency",
        "startTime",
        "timezone",
        "isActive",
        "createdAt",
        "updatedAt",
        "nextRunTime",
    ] {
        assert!(body.get(field).is_some(), "{field} missing from {body}");
    }
    assert_eq!(body["importSourceId"], source.as_str());
    assert_eq!(body["runFrequency"], "DAILY");
    assert_eq!(body["startTime"], "2026-01-30T03:50:33Z");
    assert_eq!(body["timezone"], "America/New_York");
    assert_eq!(body["isActive"], true);
    assert_eq!(body["createdAt"], "2026-01-10T12:00:00Z");
    assert_eq!(body["nextRunTime"], "2026-01-30T03:50:33Z");

    let id = body["id"].as_str().unwrap();
    let (status, got) = api.call("GET", &source, &format!("/{id}"), "");
    assert_eq!(status, 200);
    assert_eq!(got, body);
}

#[test]
fn run_interval_is_accepted_as_an_alias() {
    let api = Api::new();
    let source = api.source(SourceType::Csv);
    let (status, body) = api.create(
        &source,
        json!({"runInterval": "WEEKLY", "startTime": "2026-02-01T09:00:00Z", "timezone": "Europe/London"}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["runFrequency"], "WEEKLY");
    let source = api.source(SourceType::Csv);
    assert_400(
        api.create(&source, json!({"runInterval": "WEEKLY", "runFrequency": "DAILY", "startTime": "2026-02-01T09:00:00Z", "timezone": "Europe/London"})),
        Some("runFrequency"),
        "disagree",
    );
}

#[test]
fn a_start_time_in_the_past_runs_from_now_on() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let mut body = seed_body();
    body["startTime"] = "2025-12-30T03:50:33Z".into();
    let (status, created) = api.create(&source, body);
    assert_eq!(status, 201);
    // 03:50:33Z is 22:50:33 EST the evening before: that wall time, every
    // day. The clock stands at 2026-01-10T12:00Z, so the next run is on the
    // evening of the 10th, not any of the runs before the schedule existed.
    assert_eq!(created["nextRunTime"], "2026-01-11T03:50:33Z");
}

#[test]
fn put_changes_given_fields_keeps_the_rest_and_recomputes_the_next_run() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let (_, created) = api.create(&source, seed_body());
    let id = created["id"].as_str().unwrap();
    api.clock.set("2026-01-11T00:00:00Z".parse().unwrap());
    let (status, updated) = api.call(
        "PUT",
        &source,
        &format!("/{id}"),
        r#"{"runFrequency":"WEEKLY","startTime":"2026-02-02T08:00:00Z","timezone":"Europe/London"}"#,
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["runFrequency"], "WEEKLY");
    assert_eq!(updated["timezone"], "Europe/London");
    assert_eq!(updated["callbackUrl"], "https://your-app-callback-url.com", "kept");
    assert_eq!(updated["createdAt"], "2026-01-10T12:00:00Z");
    assert_eq!(updated["updatedAt"], "2026-01-11T00:00:00Z");
    assert_eq!(updated["nextRunTime"], "2026-02-02T08:00:00Z");

    let (_, paused) = api.call("PUT", &source, &format!("/{id}"), r#"{"isActive":false}"#);
    assert_eq!(
        (paused["isActive"].clone(), paused["nextRunTime"].clone()),
        (json!(false), Value::Null)
    );
    assert_400(
        api.call("PUT", &source, &format!("/{id}"), r#"{"timezone":"Nowhere/Land"}"#),
        Some("timezone"),
        "IANA",
    );
}

#[test]
fn delete_stops_the_schedule_and_later_calls_are_404() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let (_, created) = api.create(&source, seed_body());
    let id = created["id"].as_str().unwrap();
    assert_eq!(api.call("DELETE", &source, &format!("/{id}"), "").0, 200);
    for method in ["GET", "PUT", "DELETE"] {
        let (status, body) = api.call(method, &source, &format!("/{id}"), r#"{"isActive":true}"#);
        assert_eq!(status, 404, "{method}: {body}");
        assert!(body["message"].as_str().unwrap().contains(id));
    }
    // The source may be scheduled again.
    assert_eq!(api.create(&source, seed_body()).0, 201);
}

#[test]
fn an_unknown_run_frequency_is_a_400_listing_the_allowed_values() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let mut body = seed_body();
    body["runFrequency"] = "HOURLY".into();
    assert_400(
        api.create(&source, body),
        Some("runFrequency"),
        "ONCE, DAILY, WEEKLY, MONTHLY",
    );
}

#[test]
fn a_start_time_that_is_not_iso_8601_or_not_utc_is_a_400_saying_so() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    for (start, words) in [
        ("30/12/2025 03:50", "ISO 8601"),
        ("2025-12-30T05:50:33+02:00", "must be in UTC"),
        ("2025-12-30T03:50:33", "no time zone designator"),
    ] {
        let mut body = seed_body();
        body["startTime"] = start.into();
        assert_400(api.create(&source, body), Some("startTime"), words);
    }
}

#[test]
fn an_unknown_time_zone_is_a_400() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let mut body = seed_body();
    body["timezone"] = "America/Gotham".into();
    assert_400(api.create(&source, body), Some("timezone"), "IANA time zone");
}

#[test]
fn each_missing_required_field_is_a_400_naming_it() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    for field in ["runFrequency", "startTime", "timezone", "callbackUrl"] {
        let mut body = seed_body();
        body.as_object_mut().unwrap().remove(field);
        assert_400(api.create(&source, body), Some(field), "is required");
    }
}

#[test]
fn callback_url_is_required_for_external_sources_only_and_must_be_absolute_http() {
    let api = Api::new();
    let csv = api.source(SourceType::Csv);
    let mut body = seed_body();
    body.as_object_mut().unwrap().remove("callbackUrl");
    assert_eq!(api.create(&csv, body).0, 201, "optional for CSV imports");

    let external = api.source(SourceType::External);
    for bad in ["/webtrigger", "ftp://example.com/cb", "example.com/cb"] {
        let mut body = seed_body();
        body["callbackUrl"] = bad.into();
        assert_400(api.create(&external, body), Some("callbackUrl"), "absolute http(s) URL");
    }
}

#[test]
fn discovery_imports_cannot_be_scheduled() {
    let api = Api::new();
    let source = api.source(SourceType::Discovery);
    let (status, body) = api.create(&source, seed_body());
    assert_eq!(status, 400);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Scheduled imports are not supported for discovery imports"));
}

#[test]
fn a_second_schedule_for_the_same_import_source_is_a_400() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let (_, first) = api.create(&source, seed_body());
    let (status, body) = api.create(&source, seed_body());
    assert_eq!(status, 400);
    assert_eq!(body["errorCode"], "SCHEDULE_EXISTS");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(first["id"].as_str().unwrap()));
}

#[test]
fn wrong_json_types_and_non_json_bodies_are_400s() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let mut body = seed_body();
    body["runFrequency"] = json!(7);
    assert_400(api.create(&source, body), Some("runFrequency"), "invalid type");
    let mut body = seed_body();
    body["isActive"] = json!("yes");
    assert_400(api.create(&source, body), Some("isActive"), "invalid type");
    assert_400(
        api.call("POST", &source, "", "runFrequency=DAILY"),
        None,
        "not valid JSON",
    );
    assert_400(api.call("POST", &source, "", "[1,2]"), None, "must be a JSON object");
    assert_400(api.call("POST", &source, "", ""), None, "empty");
    let mut body = seed_body();
    body["frequency"] = "DAILY".into();
    assert_400(api.create(&source, body), Some("frequency"), "unknown field");
}

#[test]
fn policies_are_validated_and_echoed() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let mut body = seed_body();
    body["dstGapPolicy"] = "SKIP".into();
    body["dstFoldPolicy"] = "BOTH".into();
    body["monthEndPolicy"] = "SKIP".into();
    let (status, created) = api.create(&source, body);
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["dstGapPolicy"].as_str(),
            created["dstFoldPolicy"].as_str(),
            created["monthEndPolicy"].as_str()
        ),
        (Some("SKIP"), Some("BOTH"), Some("SKIP"))
    );
    let other = api.source(SourceType::External);
    let mut body = seed_body();
    body["dstGapPolicy"] = "IGNORE".into();
    assert_400(
        api.create(&other, body),
        Some("dstGapPolicy"),
        "SHIFT_FORWARD, SKIP, AT_TRANSITION",
    );
}

#[test]
fn schedules_of_unknown_sources_or_other_workspaces_are_404() {
    let api = Api::new();
    assert_eq!(api.create("nope", seed_body()).0, 404);
    let source = api.source(SourceType::External);
    let (_, created) = api.create(&source, seed_body());
    let other = api.source(SourceType::External);
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        api.call("GET", &other, &format!("/{id}"), "").0,
        404,
        "a schedule is reached through its own source"
    );
    assert_eq!(api.call("PATCH", &source, &format!("/{id}"), "").0, 405);
}

/// Fuzzing found a seed-form schedule with `"timezone": null` taken as UTC,
/// though the seed's form requires a zone. In the published form (with
/// `runInterval`) there is no zone, and UTC is right.
#[test]
fn a_null_timezone_is_refused_in_the_seeds_form_and_utc_in_the_published_one() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let mut body = seed_body();
    body["timezone"] = Value::Null;
    assert_400(api.create(&source, body), Some("timezone"), "null");

    let (status, created) = api.create(&source, seed_body());
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    for put in [
        json!({"timezone": null}),
        json!({"runFrequency": "WEEKLY", "timezone": null}),
    ] {
        assert_400(
            api.call("PUT", &source, &format!("/{id}"), &put.to_string()),
            Some("timezone"),
            "null",
        );
    }
    let (_, now) = api.call("GET", &source, &format!("/{id}"), "");
    assert_eq!(now, created, "a refused PUT changes nothing");

    // The published form: runInterval, no zone (null or left out) is UTC.
    let published = api.source(SourceType::External);
    let mut body = seed_body();
    body.as_object_mut().unwrap().remove("runFrequency");
    body["runInterval"] = "DAILY".into();
    body["timezone"] = Value::Null;
    let (status, created) = api.create(&published, body);
    assert_eq!((status, created["timezone"].as_str()), (201, Some("UTC")), "{created}");
}

/// Fuzzing found `runInterval: null` reported as a bad `runFrequency`: an
/// error names the field the client sent.
#[test]
fn a_null_frequency_is_a_400_naming_the_field_that_was_sent() {
    let api = Api::new();
    for field in ["runFrequency", "runInterval"] {
        let source = api.source(SourceType::External);
        let mut body = seed_body();
        body.as_object_mut().unwrap().remove("runFrequency");
        body[field] = Value::Null;
        assert_400(api.create(&source, body), Some(field), "null");
    }
}

/// Fuzzing found a PUT with a null rule field answered 200 with nothing
/// changed, where a POST answers 400: both refuse it, naming the field.
#[test]
fn a_null_rule_field_is_a_400_on_put_as_on_post() {
    let api = Api::new();
    let source = api.source(SourceType::External);
    let (status, created) = api.create(&source, seed_body());
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    for field in ["runFrequency", "runInterval", "startTime"] {
        let other = api.source(SourceType::External);
        let mut body = seed_body();
        body[field] = Value::Null;
        assert_400(api.create(&other, body), Some(field), "null");
        let put = json!({ field: null }).to_string();
        assert_400(api.call("PUT", &source, &format!("/{id}"), &put), Some(field), "null");
    }
    let (_, now) = api.call("GET", &source, &format!("/{id}"), "");
    assert_eq!(now, created, "a refused PUT changes nothing");
}
