//! The Assets mock's contract, over real HTTP against `assets-host serve`,
//! in both dialects: the seed's (`objectTypeId` + `objects`,
//! `history/completed`, `runFrequency` + `timezone`) and the real API's
//! (schema-and-mapping, `data` by selector, `completed: true`,
//! `runInterval` in UTC), step by step as the real API's imports guide
//! walks through them, the error answers included.
//!
//! The real-form mapping and data chunk are the reference app's own files
//! (`host/platform/real-api/`).

mod common;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "contract-token";

const REAL_MAPPING: &str = include_str!("../../platform/real-api/mapping-configuration.json");
const REAL_CHUNK: &str = include_str!("../../platform/real-api/data-submission.json");

/// The server with a token (so source tokens can be tried) and a virtual
/// clock (so processing can be watched).
struct Contract {
    server: Server,
    workspace: String,
}

impl Contract {
    fn start() -> Contract {
        let server = Server::fresh(&[
            "--clock",
            "virtual",
            "--token",
            TOKEN,
            "--callback-allow",
            "app.example.com",
        ]);
        let (status, apps) = server.call_with("GET", "/_admin/apps", None, &[("authorization", &bearer(TOKEN))]);
        assert_eq!(status, 200, "{apps}");
        let workspace = apps[0]["workspaceId"].as_str().unwrap().to_owned();
        Contract { server, workspace }
    }

    fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.server.call_with(
            method,
            path,
            body.map(|b| b.to_string()),
            &[("authorization", &bearer(token))],
        )
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(TOKEN, method, path, body)
    }

    /// A new import source of `kind`; `cloud` ones require a mapping.
    fn source(&self, kind: &str, cloud: bool) -> String {
        let (status, created) = self.call(
            "POST",
            "/_admin/importsource",
            Some(json!({ "workspaceId": self.workspace, "type": kind, "requiresMapping": cloud })),
        );
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    fn path(&self, source: &str, rest: &str) -> String {
        let base = format!("/jsm/assets/workspace/{}/v1/importsource/{source}", self.workspace);
        if rest.is_empty() {
            base
        } else {
            format!("{base}/{rest}")
        }
    }

    /// Starts an execution the way a real client does: the id is the path
    /// segment before `/data` in `links.submitResults`.
    fn begin(&self, source: &str) -> String {
        let (status, body) = self.call(
            "POST",
            &self.path(source, "executions"),
            Some(json!({"scheduled": true})),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["result"], "success");
        let submit = body["links"]["submitResults"].as_str().unwrap();
        submit.trim_end_matches("/data").rsplit('/').next().unwrap().to_owned()
    }

    fn status(&self, source: &str, execution: &str) -> Value {
        let (status, body) = self.call(
            "GET",
            &self.path(source, &format!("executions/{execution}/status")),
            None,
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Moves the virtual clock on.
    fn advance(&self, seconds: u64) {
        let (status, body) = self.call("POST", "/_admin/clock/advance", Some(json!({ "seconds": seconds })));
        assert_eq!(status, 200, "{body}");
    }

    fn config_status(&self, source: &str) -> String {
        let (status, body) = self.call("GET", &self.path(source, "configstatus"), None);
        assert_eq!(status, 200, "{body}");
        body["status"].as_str().unwrap().to_owned()
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn error_code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["errorCode"].as_str().unwrap_or_default())
}

#[test]
fn the_real_dialect_step_by_step() {
    let c = Contract::start();
    let source = c.source("external", true);

    // The source, as GET /importsource/{id} shows it.
    let (status, details) = c.call("GET", &c.path(&source, ""), None);
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["importSourceModuleKey"], "rlabs-import-type-external");
    assert_eq!(details["isImportSourceSchedulingEnabled"], true);
    assert!(details["scheduledImportDetails"].is_null(), "{details}");

    // No mapping yet: the configuration says so and nothing can start.
    assert_eq!(c.config_status(&source), "MISSING_MAPPING");
    let refused = c.call("POST", &c.path(&source, "executions"), Some(json!({})));
    assert_eq!(error_code(&refused), (409, "MISSING_MAPPING"), "{}", refused.1);
    let missing = c.call("GET", &c.path(&source, "schema-and-mapping"), None);
    assert_eq!(error_code(&missing), (404, "MISSING_MAPPING"), "{}", missing.1);

    // A document the JSON Schema refuses, and one whose mapping names an
    // attribute the schema does not declare: 400s naming the JSON path.
    let mapping: Value = serde_json::from_str(REAL_MAPPING).unwrap();
    let mut bad = mapping.clone();
    bad["schema"]["objectSchema"]["objectTypes"][0]["attributes"][1]["type"] = json!("money");
    let (status, body) = c.call("PUT", &c.path(&source, "mapping"), Some(bad));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["field"], "schema.objectSchema.objectTypes[0].attributes[1].type",
        "{body}"
    );
    let mut bad = mapping.clone();
    bad["mapping"]["objectTypeMappings"][0]["attributesMapping"][1]["attributeExternalId"] = json!("nope");
    let (status, body) = c.call("PUT", &c.path(&source, "mapping"), Some(bad));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["field"], "mapping.objectTypeMappings[0].attributesMapping[1].attributeExternalId",
        "{body}"
    );
    assert_eq!(c.config_status(&source), "MISSING_MAPPING");

    // The real app's document, asynchronously: a resource id whose
    // progress can be read.
    let (status, body) = c.call("PUT", &c.path(&source, "mapping?async=true"), Some(mapping.clone()));
    assert_eq!(status, 202, "{body}");
    let resource = body["resourceId"].as_str().unwrap();
    let (status, progress) = c.call("GET", &c.path(&source, &format!("mapping/progress/{resource}")), None);
    assert_eq!(
        (status, progress["status"].as_str()),
        (200, Some("COMPLETED")),
        "{progress}"
    );
    let unknown = c.call("GET", &c.path(&source, "mapping/progress/no-such-operation"), None);
    assert_eq!(unknown.0, 404);
    let (status, stored) = c.call("GET", &c.path(&source, "schema-and-mapping"), None);
    assert_eq!((status, &stored), (200, &mapping));
    assert_eq!(c.config_status(&source), "IDLE");

    // PATCH replaces the part it gives and keeps the other.
    let mut renamed = mapping["mapping"].clone();
    renamed["objectTypeMappings"][0]["description"] = json!("patched");
    let (status, _) = c.call(
        "PATCH",
        &c.path(&source, "mapping"),
        Some(json!({ "mapping": renamed })),
    );
    assert_eq!(status, 200);
    let (_, stored) = c.call("GET", &c.path(&source, "schema-and-mapping"), None);
    assert_eq!(stored["mapping"]["objectTypeMappings"][0]["description"], "patched");
    assert_eq!(stored["schema"], mapping["schema"]);

    // Start; a second start is refused while the first ingests.
    let execution = c.begin(&source);
    let second = c.call("POST", &c.path(&source, "executions"), Some(json!({})));
    assert_eq!(error_code(&second), (409, "IN_PROGRESS"), "{}", second.1);
    assert_eq!(c.config_status(&source), "RUNNING");
    let changing = c.call("PUT", &c.path(&source, "mapping"), Some(mapping.clone()));
    assert_eq!(error_code(&changing), (409, "IN_PROGRESS"), "{}", changing.1);

    // Progress is stored and shown in the status.
    let (status, _) = c.call(
        "PUT",
        &c.path(&source, &format!("executions/{execution}/progress")),
        Some(json!({"objectsSent": 2})),
    );
    assert_eq!(status, 200);
    assert_eq!(c.status(&source, &execution)["progress"]["objectsSent"], 2);

    // The real chunk: two products mapped by their locators. The same
    // clientGeneratedId again is acknowledged and not stored twice.
    let data = format!("executions/{execution}/data");
    let chunk: Value = serde_json::from_str(REAL_CHUNK).unwrap();
    let (status, body) = c.call("POST", &c.path(&source, &data), Some(chunk.clone()));
    assert_eq!((status, body["objectsAccepted"].as_u64()), (200, Some(2)), "{body}");
    let (status, body) = c.call("POST", &c.path(&source, &data), Some(chunk.clone()));
    assert_eq!((status, body["objectsAccepted"].as_u64()), (200, Some(0)), "{body}");

    // A record the mapping cannot place: the path of the missing id.
    let bad = json!({"data": {"products": [{"title": "no id"}]}, "clientGeneratedId": "b-1"});
    let (status, body) = c.call("POST", &c.path(&source, &data), Some(bad));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "data.products[0].id", "{body}");
    let unmapped = json!({"data": {"gadgets": []}});
    let (status, body) = c.call("POST", &c.path(&source, &data), Some(unmapped));
    assert_eq!((status, body["field"].as_str()), (400, Some("data.gadgets")), "{body}");

    // `{"completed": true}` closes ingestion; the execution processes on
    // the clock (2 objects: 200 µs), and a failure can no longer be told.
    let (status, body) = c.call("POST", &c.path(&source, &data), Some(json!({"completed": true})));
    assert_eq!(status, 200, "{body}");
    let processing = c.status(&source, &execution);
    assert_eq!(processing["status"], "PROCESSING", "{processing}");
    assert_eq!(processing["objects"], 2);
    assert_eq!(c.config_status(&source), "RUNNING");
    let late = c.call(
        "POST",
        &c.path(&source, &format!("executions/{execution}/history/failed")),
        Some(json!({"failureReason": "too late"})),
    );
    assert_eq!(late.0, 400, "{}", late.1);
    // Saying completed again (a lost answer) is not an error.
    let (status, _) = c.call("POST", &c.path(&source, &data), Some(json!({"completed": true})));
    assert_eq!(status, 200);
    c.advance(1);
    assert_eq!(c.status(&source, &execution)["status"], "DONE");
    assert_eq!(c.config_status(&source), "IDLE");

    // Cancel: DELETE the execution.
    let cancelled = c.begin(&source);
    let (status, _) = c.call("DELETE", &c.path(&source, &format!("executions/{cancelled}")), None);
    assert_eq!(status, 200);
    assert_eq!(c.status(&source, &cancelled)["status"], "CANCELLED");
    let again = c.call("DELETE", &c.path(&source, &format!("executions/{cancelled}")), None);
    assert_eq!(again.0, 400, "{}", again.1);

    // Unknown ids are 404 everywhere.
    for path in ["executions/no-such/status", "executions/no-such/progress"] {
        let method = if path.ends_with("progress") { "PUT" } else { "GET" };
        let answer = c.call(method, &c.path(&source, path), Some(json!({})));
        assert_eq!(answer.0, 404, "{path}: {}", answer.1);
    }
    let answer = c.call("GET", &c.path("no-such-source", "configstatus"), None);
    assert_eq!(answer.0, 404, "{}", answer.1);
    c.server.stop();
}

#[test]
fn the_seed_dialect_step_by_step() {
    let c = Contract::start();
    let source = c.source("external", false);
    assert_eq!(c.config_status(&source), "IDLE");
    let execution = c.begin(&source);
    let second = c.call("POST", &c.path(&source, "executions"), Some(json!({"scheduled": true})));
    assert_eq!(error_code(&second), (409, "IN_PROGRESS"), "{}", second.1);

    let data = c.path(&source, &format!("executions/{execution}/data"));
    let chunk = json!({
        "objectTypeId": "laptop",
        "clientGeneratedId": "c-1",
        "objects": [
            {"externalId": "l-1", "label": "Laptop 1", "attributes": {"serial": ["S1"]}},
            {"externalId": "l-2", "label": "Laptop 2", "attributes": {}},
        ],
    });
    let (status, body) = c.call("POST", &data, Some(chunk));
    assert_eq!((status, body["objectsAccepted"].as_u64()), (200, Some(2)), "{body}");
    let bad = json!({"objectTypeId": "laptop", "objects": [{"label": "no id"}]});
    let (status, body) = c.call("POST", &data, Some(bad));
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("objects[0].externalId")),
        "{body}"
    );

    let completed = c.path(&source, &format!("executions/{execution}/history/completed"));
    let (status, _) = c.call("POST", &completed, None);
    assert_eq!(status, 200);
    assert_eq!(c.status(&source, &execution)["status"], "PROCESSING");
    let late = c.call(
        "POST",
        &c.path(&source, &format!("executions/{execution}/history/failed")),
        Some(json!({"failureReason": "too late"})),
    );
    assert_eq!(error_code(&late), (400, "EXECUTION_ENDED"), "{}", late.1);
    let again = c.call("POST", &completed, None);
    assert_eq!(error_code(&again), (400, "EXECUTION_ENDED"));
    c.advance(1);
    assert_eq!(c.status(&source, &execution)["status"], "DONE");

    // A failure, with and without a body (the published API's body is
    // optional): the execution reads CANCELLED, the history says why.
    for body in [Some(json!({"failureReason": "source down"})), None] {
        let failed = c.begin(&source);
        let (status, _) = c.call(
            "POST",
            &c.path(&source, &format!("executions/{failed}/history/failed")),
            body,
        );
        assert_eq!(status, 200);
        let shown = c.status(&source, &failed);
        assert_eq!(shown["status"], "CANCELLED", "{shown}");
        assert!(shown["failureReason"].as_str().unwrap().len() > 5, "{shown}");
    }
    let (status, history) = c.call("GET", &c.path(&source, "history"), None);
    assert_eq!(status, 200);
    let outcomes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["completed", "failed", "failed"]);
    assert!(
        history[2]["failureReason"]
            .as_str()
            .unwrap()
            .contains("without a reason"),
        "{}",
        history[2]
    );
    c.server.stop();
}

#[test]
fn schedules_in_both_dialects() {
    let c = Contract::start();
    let now = clock_now(&c.server);
    let start = (now + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let csv = c.source("csv", false);

    // GET …/schedule before there is one: only where to create it.
    let (status, links) = c.call("GET", &c.path(&csv, "schedule"), None);
    assert_eq!(status, 200, "{links}");
    assert!(links["links"]["createSchedule"]
        .as_str()
        .unwrap()
        .ends_with("/importschedule"));
    assert!(links["links"]["schedule"].is_null());

    // The published form, as jira.js sends it: no timezone.
    let published = json!({"startTime": start, "runInterval": "DAILY", "callbackUrl": "https://app.example.com/cb"});
    let (status, created) = c.call("POST", &c.path(&csv, "importschedule"), Some(published));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["timezone"], "UTC");
    for (seed, published) in [
        ("runFrequency", "runInterval"),
        ("createdAt", "created"),
        ("updatedAt", "updated"),
        ("nextRunTime", "nextScheduledTime"),
    ] {
        assert!(!created[seed].is_null(), "{seed} missing: {created}");
        assert_eq!(
            created[seed], created[published],
            "{seed} and {published} differ: {created}"
        );
    }
    let id = created["id"].as_str().unwrap();

    // The links and the source's details now show it.
    let (_, links) = c.call("GET", &c.path(&csv, "schedule"), None);
    assert!(links["links"]["schedule"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/importschedule/{id}")));
    let (_, details) = c.call("GET", &c.path(&csv, ""), None);
    let scheduled = &details["scheduledImportDetails"];
    assert_eq!(scheduled["importScheduleId"], id);
    assert_eq!(scheduled["runFrequency"], "DAILY");
    assert_eq!(scheduled["nextScheduledTime"], created["nextRunTime"]);
    assert_eq!(scheduled["createdAt"], created["createdAt"]);

    // Errors name the field the client sent.
    let path = c.path(&csv, &format!("importschedule/{id}"));
    let (status, body) = c.call("PUT", &path, Some(json!({"runInterval": "HOURLY"})));
    assert_eq!((status, body["field"].as_str()), (400, Some("runInterval")), "{body}");
    let (status, body) = c.call("PUT", &path, Some(json!({"runFrequency": "HOURLY"})));
    assert_eq!((status, body["field"].as_str()), (400, Some("runFrequency")), "{body}");

    // null clears an optional field.
    let (status, updated) = c.call("PUT", &path, Some(json!({"callbackUrl": null})));
    assert_eq!(status, 200, "{updated}");
    assert!(updated["callbackUrl"].is_null(), "{updated}");

    // The seed's form stays as it was: runFrequency needs a timezone.
    let json_source = c.source("json", false);
    let seed = json!({"startTime": start, "runFrequency": "WEEKLY"});
    let (status, body) = c.call("POST", &c.path(&json_source, "importschedule"), Some(seed));
    assert_eq!((status, body["field"].as_str()), (400, Some("timezone")), "{body}");
    let seed = json!({"startTime": start, "runFrequency": "WEEKLY", "timezone": "Europe/Paris"});
    let (status, body) = c.call("POST", &c.path(&json_source, "importschedule"), Some(seed));
    assert_eq!(
        (status, body["timezone"].as_str()),
        (201, Some("Europe/Paris")),
        "{body}"
    );

    // An external source still needs its callback: null cannot clear it.
    let app = c.source("external", false);
    let external = json!({"startTime": start, "runInterval": "ONCE", "callbackUrl": "https://app.example.com/cb"});
    let (status, created) = c.call("POST", &c.path(&app, "importschedule"), Some(external));
    assert_eq!(status, 201, "{created}");
    let path = c.path(&app, &format!("importschedule/{}", created["id"].as_str().unwrap()));
    let (status, body) = c.call("PUT", &path, Some(json!({"callbackUrl": null})));
    assert_eq!((status, body["field"].as_str()), (400, Some("callbackUrl")), "{body}");
    c.server.stop();
}

#[test]
fn a_source_token_opens_its_own_source_and_nothing_else() {
    let c = Contract::start();
    let mine = c.source("external", false);
    let other = c.source("external", false);
    let (status, body) = c.call("POST", &c.path(&mine, "token"), None);
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (_, details) = c.call("GET", &c.path(&mine, ""), None);
    assert_eq!(details["tokenGenerated"], true);

    assert_eq!(c.call_as(&token, "GET", &c.path(&mine, "configstatus"), None).0, 200);
    assert_eq!(c.call_as(&token, "GET", &c.path(&other, "configstatus"), None).0, 401);
    assert_eq!(c.call_as(&token, "GET", "/_admin/apps", None).0, 401);
    // A new token replaces the old one.
    let (_, body) = c.call("POST", &c.path(&mine, "token"), None);
    assert_ne!(body["token"].as_str().unwrap(), token);
    assert_eq!(c.call_as(&token, "GET", &c.path(&mine, "configstatus"), None).0, 401);
    c.server.stop();
}
