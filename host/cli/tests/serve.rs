//! `assets-host serve`, run as a child process and driven over real HTTP on
//! a loopback port: schedules, the virtual clock, signed callbacks to the web
//! trigger, the history, restarts and `kill -9`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write as _;
use std::time::Duration;

#[test]
fn a_schedule_fires_a_signed_callback_and_the_import_fills_the_history() {
    let server = Server::fresh(&["--clock", "virtual"]);
    let app = server.app();
    let now = clock_now(&server);
    let (status, schedule) = server.call(
        "POST",
        &Server::source_path(&app, "importschedule"),
        Some(daily_schedule(&app, now, 1)),
    );
    assert_eq!(status, 201, "{schedule}");

    // Two hours: the first run falls due, the next day's does not.
    let firings = server.advance(2 * 3600);
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0]["status"], "completed", "{}", server.log_text());
    let execution = firings[0]["executionId"].as_str().unwrap();

    let history = server.history(&app);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["executionId"], execution);
    assert_eq!(history[0]["scheduled"], true);
    assert_eq!(history[0]["status"], "completed");
    assert_eq!(history[0]["objects"], 1000);
    assert_eq!(history[0]["scheduleId"], schedule["id"]);

    // Processing 1,000 objects took 0.1 s of the hour that followed.
    let (status, latest) = server.call("GET", &Server::source_path(&app, "executions/status"), None);
    assert_eq!(status, 200);
    assert_eq!(
        (latest["executionId"].as_str(), latest["status"].as_str()),
        (Some(execution), Some("DONE"))
    );
    let log = server.log_text();
    assert!(
        log.contains("/apps/demo/webtrigger") && log.contains(execution),
        "the callback and the run are logged:\n{log}"
    );
    server.stop();
}

#[test]
fn a_scheduled_run_in_the_cloud_dialect_shows_processing_then_done() {
    let server = Server::fresh(&["--clock", "virtual", "--dialect", "cloud", "--objects", "20000"]);
    let app = server.app();
    let (_, config) = server.call("GET", &Server::source_path(&app, "configstatus"), None);
    assert_eq!(
        config["status"], "MISSING_MAPPING",
        "the app's source requires a mapping"
    );
    let now = clock_now(&server);
    let (status, schedule) = server.call(
        "POST",
        &Server::source_path(&app, "importschedule"),
        Some(daily_schedule(&app, now, 1)),
    );
    assert_eq!(status, 201, "{schedule}");

    // Just to the run's time (the start is `now` + 1 h cut to the second).
    let firings = server.advance(3600);
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0]["status"], "completed", "{}", server.log_text());
    let execution = firings[0]["executionId"].as_str().unwrap();
    let (status, mapping) = server.call("GET", &Server::source_path(&app, "schema-and-mapping"), None);
    assert_eq!(status, 200, "the importer put its mapping in place: {mapping}");

    // 20,000 objects at 10,000 a second: two seconds of processing, of
    // which at most one has passed.
    let status_path = Server::source_path(&app, &format!("executions/{execution}/status"));
    let (_, shown) = server.call("GET", &status_path, None);
    assert_eq!(
        (shown["status"].as_str(), shown["objects"].as_u64()),
        (Some("PROCESSING"), Some(20000))
    );
    assert_eq!(shown["progress"]["objectsSent"], 20000, "{shown}");
    server.advance(2);
    let (_, shown) = server.call("GET", &status_path, None);
    assert_eq!(shown["status"], "DONE", "{shown}");
    server.stop();
}

fn signed(secret: &str, body: &str, at: i64) -> (String, String) {
    (
        at.to_string(),
        assets_server::signing::sign(secret, at, body.as_bytes()),
    )
}

#[test]
fn forged_replayed_and_misdirected_callbacks_are_refused() {
    let server = Server::fresh(&["--clock", "virtual", "--objects", "10"]);
    let app = server.app();
    assert!(!server.secret.is_empty(), "the banner prints the app's secret");
    let body = json!({
        "workspaceId": app.workspace_id,
        "importsourceId": app.import_source_id,
        "scheduled": true,
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let post = |body: &str, (ts, sig): &(String, String)| {
        server.call_with(
            "POST",
            &app.callback_url,
            Some(body.to_owned()),
            &[("x-assets-timestamp", ts), ("x-assets-signature", sig)],
        )
    };

    let (status, refused) = server.call_with("POST", &app.callback_url, Some(body.clone()), &[]);
    assert_eq!((status, refused["errorCode"].as_str()), (401, Some("CALLBACK_REFUSED")));
    assert!(refused["message"].as_str().unwrap().contains("must be signed"));

    let (status, refused) = post(&body, &signed("not-the-secret", &body, now));
    assert_eq!(status, 401);
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("signature does not match"));

    let (status, refused) = post(&body, &signed(&server.secret, &body, now - 3600));
    assert_eq!(status, 401);
    assert!(refused["message"].as_str().unwrap().contains("old capture"));

    let genuine = signed(&server.secret, &body, now);
    let (status, outcome) = post(&body, &genuine);
    assert_eq!(
        (status, outcome["status"].as_str()),
        (200, Some("completed")),
        "{outcome}"
    );
    let (status, refused) = post(&body, &genuine);
    assert_eq!(status, 401, "a replay is refused");
    assert!(refused["message"].as_str().unwrap().contains("already delivered"));
    assert_eq!(server.history(&app).len(), 1, "only the genuine callback ran");

    let elsewhere =
        json!({ "workspaceId": app.workspace_id, "importSourceId": "someone-elses", "scheduled": true }).to_string();
    let (status, refused) = post(&elsewhere, &signed(&server.secret, &elsewhere, now));
    assert_eq!((status, refused["errorCode"].as_str()), (403, Some("FORBIDDEN")));
}

#[test]
fn a_hosted_app_runs_every_import_source_made_for_it() {
    let server = Server::fresh(&["--clock", "virtual", "--objects", "10"]);
    let app = server.app();
    let create = |owner: &str| {
        let (status, created) = server.call(
            "POST",
            "/_admin/importsource",
            Some(json!({"workspaceId": app.workspace_id, "type": "external", "app": owner})),
        );
        assert_eq!(status, 201, "{created}");
        App {
            import_source_id: created["id"].as_str().unwrap().to_owned(),
            ..app.clone()
        }
    };
    // A second installation of `demo`, scheduled through the API.
    let second = create("demo");
    let (status, schedule) = server.call(
        "POST",
        &Server::source_path(&second, "importschedule"),
        Some(daily_schedule(&second, clock_now(&server), 1)),
    );
    assert_eq!(status, 201, "{schedule}");
    let firings = server.advance(2 * 3600);
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0]["status"], "completed", "{firings:?}\n{}", server.log_text());
    let history = server.history(&second);
    assert_eq!((history.len(), history[0]["objects"].as_u64()), (1, Some(10)));
    assert!(server.history(&app).is_empty(), "the first source did not run");

    // A source made for another app is still not demo's to run.
    let theirs = create("someone-else");
    let body = json!({ "workspaceId": app.workspace_id, "importSourceId": theirs.import_source_id, "scheduled": true })
        .to_string();
    let (ts, sig) = signed(&server.secret, &body, chrono::Utc::now().timestamp());
    let (status, refused) = server.call_with(
        "POST",
        &app.callback_url,
        Some(body),
        &[("x-assets-timestamp", &ts), ("x-assets-signature", &sig)],
    );
    assert_eq!(
        (status, refused["errorCode"].as_str()),
        (403, Some("FORBIDDEN")),
        "{refused}"
    );
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("does not perform import source"));
    server.stop();
}

#[test]
fn a_restart_fails_what_an_app_left_ingesting_in_any_of_its_sources() {
    let dir = temp_dir();
    let (db, port) = (dir.join("state.db"), Port::new());
    let first = Server::start(&db, &port, &["--clock", "virtual"]);
    let app = first.app();
    let (status, created) = first.call(
        "POST",
        "/_admin/importsource",
        Some(json!({"workspaceId": app.workspace_id, "type": "external", "app": "demo"})),
    );
    assert_eq!(status, 201, "{created}");
    let second_source = App {
        import_source_id: created["id"].as_str().unwrap().to_owned(),
        ..app.clone()
    };
    // An execution the app opened and never ended, as if it died mid-run.
    let (status, opened) = first.call(
        "POST",
        &Server::source_path(&second_source, "executions"),
        Some(json!({"scheduled": true})),
    );
    assert_eq!(status, 201, "{opened}");
    first.kill_9();

    let again = Server::start(&db, &port, &["--clock", "virtual"]);
    assert_eq!(
        again.app().import_source_id,
        app.import_source_id,
        "the app keeps its first import source"
    );
    let history = again.history(&second_source);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["status"], "failed");
    assert!(
        history[0]["failureReason"]
            .as_str()
            .unwrap_or_default()
            .contains("the server stopped while app demo was running this import"),
        "{history:?}"
    );
    again.stop();
}

#[test]
fn bad_requests_get_json_errors_and_oversized_bodies_413() {
    let server = Server::fresh(&["--clock", "virtual", "--max-body-bytes", "4096"]);
    let app = server.app();
    let (status, body) = server.call_with(
        "POST",
        &Server::source_path(&app, "importschedule"),
        Some("x".repeat(5000)),
        &[],
    );
    assert_eq!((status, body["errorCode"].as_str()), (413, Some("PAYLOAD_TOO_LARGE")));
    let (status, body) = server.call(
        "POST",
        &Server::source_path(&app, "importschedule"),
        Some(json!({"runFrequency": "HOURLY", "startTime": "2026-12-01T00:00:00Z", "timezone": "UTC", "callbackUrl": app.callback_url})),
    );
    assert_eq!((status, body["field"].as_str()), (400, Some("runFrequency")));
    let (status, body) = server.call("POST", "/_admin/clock/advance", Some(json!({"seconds": -5})));
    assert_eq!((status, body["field"].as_str()), (400, Some("seconds")));
    let (status, body) = server.call(
        "POST",
        "/_admin/importsource",
        Some(json!({"workspaceId": app.workspace_id, "type": "spreadsheet"})),
    );
    assert_eq!((status, body["field"].as_str()), (400, Some("type")));
    let (status, created) = server.call(
        "POST",
        "/_admin/importsource",
        Some(json!({"workspaceId": app.workspace_id, "type": "csv"})),
    );
    assert_eq!(status, 201, "{created}");
    assert!(created["id"].is_string());
    let (status, body) = server.call("GET", "/nowhere", None);
    assert_eq!((status, body["errorCode"].as_str()), (404, Some("NOT_FOUND")));
}

#[test]
fn a_system_clock_server_refuses_to_move_time_and_requires_its_token() {
    let server = Server::fresh(&["--token", "t0ken"]);
    let auth = [("authorization", "Bearer t0ken")];
    let (status, _) = server.call("GET", "/_admin/apps", None);
    assert_eq!(status, 401);
    let (status, apps) = server.call_with("GET", "/_admin/apps", None, &auth);
    assert_eq!(status, 200);
    let path = format!(
        "/jsm/assets/workspace/{}/v1/importsource/{}/history",
        apps[0]["workspaceId"].as_str().unwrap(),
        apps[0]["importSourceId"].as_str().unwrap()
    );
    assert_eq!(server.call("GET", &path, None).0, 401);
    assert_eq!(server.call_with("GET", &path, None, &auth).0, 200);
    let (status, body) = server.call_with(
        "POST",
        "/_admin/clock/advance",
        Some(json!({"seconds": 60}).to_string()),
        &auth,
    );
    assert_eq!((status, body["errorCode"].as_str()), (409, Some("CLOCK_NOT_VIRTUAL")));
}

#[test]
fn a_restart_with_the_same_database_keeps_schedules_and_history() {
    let dir = temp_dir();
    let db = dir.join("state.db");
    let port = Port::new();
    let first = Server::start(&db, &port, &["--clock", "virtual", "--objects", "50"]);
    let app = first.app();
    let now = clock_now(&first);
    let (_, schedule) = first.call(
        "POST",
        &Server::source_path(&app, "importschedule"),
        Some(daily_schedule(&app, now, 1)),
    );
    let fired_before = first.advance(2 * 3600);
    assert_eq!(fired_before.len(), 1);
    let history_before = first.history(&app);
    first.stop();

    let second = Server::start(&db, &port, &["--clock", "virtual", "--objects", "50"]);
    let again = second.app();
    assert_eq!(
        again.import_source_id, app.import_source_id,
        "the app keeps its import source"
    );
    assert_eq!(again.workspace_id, app.workspace_id);
    let schedule_path = Server::source_path(&app, &format!("importschedule/{}", schedule["id"].as_str().unwrap()));
    let (status, kept) = second.call("GET", &schedule_path, None);
    assert_eq!(status, 200);
    // One run happened before the restart: the next is a day after it.
    let first_run: chrono::DateTime<chrono::Utc> = schedule["nextRunTime"].as_str().unwrap().parse().unwrap();
    let next = (first_run + chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(kept["nextRunTime"].as_str(), Some(next.as_str()));
    assert_eq!(second.history(&app), history_before);
    let (status, execution) = second.call(
        "GET",
        &Server::source_path(
            &app,
            &format!("executions/{}/status", fired_before[0]["executionId"].as_str().unwrap()),
        ),
        None,
    );
    assert_eq!((status, execution["objects"].as_u64()), (200, Some(50)));
}

#[test]
fn kill_9_loses_nothing_acknowledged_and_fires_nothing_twice() {
    let dir = temp_dir();
    let db = dir.join("state.db");
    let port = Port::new();
    let t0: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let args = [
        "--clock",
        "virtual",
        "--objects",
        "20",
        "--clock-start",
        "2026-11-02T12:00:00Z",
    ];
    let first = Server::start(&db, &port, &args);
    let app = first.app();
    first.call(
        "POST",
        &Server::source_path(&app, "importschedule"),
        Some(daily_schedule(&app, t0, 1)),
    );
    let fired_before = first.advance(2 * 3600);
    assert_eq!(fired_before.len(), 1);

    // A second import source, fed by hand: chunk after chunk until the
    // server dies; every acknowledged chunk must survive.
    let (_, other) = first.call(
        "POST",
        "/_admin/importsource",
        Some(json!({"workspaceId": app.workspace_id, "type": "external"})),
    );
    let other = App {
        workspace_id: app.workspace_id.clone(),
        import_source_id: other["id"].as_str().unwrap().to_owned(),
        callback_url: String::new(),
    };
    let (status, created) = first.call(
        "POST",
        &Server::source_path(&other, "executions"),
        Some(json!({"scheduled": false})),
    );
    assert_eq!(status, 201);
    let data_url = created["links"]["submitResults"].as_str().unwrap().to_owned();
    let execution = data_url
        .trim_end_matches("/data")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    // An execution the app's own source leaves ingesting when the server dies.
    let (status, _) = first.call(
        "POST",
        &Server::source_path(&app, "executions"),
        Some(json!({"scheduled": false})),
    );
    assert_eq!(status, 201);

    // The sender names each chunk before sending it and reports each
    // acknowledgement; the kill comes once a few are acknowledged, while it
    // is still sending.
    let (acknowledgement, acknowledgements) = std::sync::mpsc::channel::<u64>();
    let sender = {
        let data_url = data_url.clone();
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            for chunk in 0u64.. {
                sent.push(chunk);
                match ureq::post(&data_url)
                    .timeout(Duration::from_secs(30))
                    .send_string(&chunk_body(chunk).to_string())
                {
                    Ok(r) if r.status() == 200 => {
                        let _ = acknowledgement.send(chunk);
                    }
                    _ => return sent,
                }
            }
            sent
        })
    };
    let mut acknowledged = std::collections::BTreeSet::new();
    while acknowledged.len() < 5 {
        let chunk = acknowledgements
            .recv_timeout(Duration::from_secs(120))
            .expect("the server acknowledges chunks");
        acknowledged.insert(chunk);
    }
    first.kill_9();
    let sent = sender.join().unwrap();
    acknowledged.extend(acknowledgements.try_iter());

    // What the database holds, by object id: every acknowledged chunk whole,
    // and nothing but whole chunks that were sent (the last one may have
    // landed unacknowledged), no object twice.
    let stored = stored_objects(&db, &execution);
    let mut expected: Vec<String> = acknowledged.iter().flat_map(|&c| chunk_ids(c)).collect();
    let in_flight: Vec<u64> = sent.iter().copied().filter(|c| !acknowledged.contains(c)).collect();
    assert!(in_flight.len() <= 1, "one chunk at a time: {in_flight:?}");
    if let Some(&last) = in_flight.first() {
        let ids = chunk_ids(last);
        if ids.iter().any(|id| stored.contains(id)) {
            expected.extend(ids);
        }
    }
    expected.sort();
    let missing: Vec<&String> = expected.iter().filter(|id| !stored.contains(id)).collect();
    let unexpected: Vec<&String> = stored.iter().filter(|id| !expected.contains(id)).collect();
    assert!(
        stored == expected,
        "chunks {acknowledged:?} were acknowledged and {in_flight:?} was in flight; \
         missing {missing:?}, not expected {unexpected:?}, {} stored",
        stored.len()
    );
    assert_eq!(
        stored, expected,
        "chunks {acknowledged:?} were acknowledged and {in_flight:?} was in flight"
    );

    // Back three days later: two daily runs were missed while down; the
    // latest is within the catch-up hour and runs, the older one is recorded.
    let restart = "2026-11-05T13:30:00Z";
    let second = Server::start(
        &db,
        &port,
        &["--clock", "virtual", "--objects", "20", "--clock-start", restart],
    );
    let (status, state) = second.call(
        "GET",
        &Server::source_path(&other, &format!("executions/{execution}/status")),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        (state["objects"].as_u64(), state["objectsReceived"].as_u64()),
        (Some(stored.len() as u64), Some(stored.len() as u64)),
        "the restarted server holds those objects, each received once: {state}"
    );

    let history = second.history(&app);
    let interrupted = history
        .iter()
        .find(|e| e["scheduled"] == false)
        .expect("the run left ingesting is in the history");
    assert_eq!(interrupted["status"], "failed");
    assert!(interrupted["failureReason"]
        .as_str()
        .unwrap()
        .contains("server stopped"));

    let fired_after = second.advance(0);
    let mut statuses: Vec<(String, String)> = fired_after
        .iter()
        .map(|f| {
            (
                f["nominalUtc"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    // Runs at 13:00 UTC (08:00 in New York): Nov 3 and 4 are missed; the
    // latest, Nov 5 13:00, is 30 min late and runs.
    assert_eq!(
        statuses,
        vec![
            ("2026-11-03T13:00:00Z".into(), "missed".into()),
            ("2026-11-04T13:00:00Z".into(), "missed".into()),
            ("2026-11-05T13:00:00Z".into(), "completed".into()),
        ],
        "{}",
        second.log_text()
    );
    let history = second.history(&app);
    let mut occurrences: Vec<&str> = history.iter().filter_map(|e| e["occurrenceId"].as_str()).collect();
    let total = occurrences.len();
    occurrences.sort();
    occurrences.dedup();
    assert_eq!(occurrences.len(), total, "no occurrence appears twice: {history:?}");
    assert!(occurrences.contains(&fired_before[0]["occurrenceId"].as_str().unwrap()));
}

/// The objects of chunk `chunk` in the kill -9 test: 25, with ids of their own.
fn chunk_body(chunk: u64) -> Value {
    let objects: Vec<Value> = chunk_ids(chunk)
        .into_iter()
        .map(|id| json!({"externalId": id, "label": format!("object {id}")}))
        .collect();
    json!({"clientGeneratedId": format!("chunk-{chunk}"), "objectTypeId": "server", "objects": objects})
}

fn chunk_ids(chunk: u64) -> Vec<String> {
    (0..25).map(|i| format!("c{chunk}-{i}")).collect()
}

/// The external ids `execution` holds in the database at `db`, sorted,
/// read with SQLite itself while no server runs on it.
fn stored_objects(db: &std::path::Path, execution: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut query = conn
        .prepare("SELECT external_id FROM objects WHERE execution_id = ?1 ORDER BY external_id")
        .unwrap();
    let ids = query
        .query_map([execution], |row| row.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    ids
}

#[test]
fn a_callback_that_fails_is_a_failed_history_entry_with_the_reason() {
    let nobody_port = Port::new().number();
    let nobody = format!("http://127.0.0.1:{nobody_port}/webtrigger");
    let erring = Receiver::new();
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--callback-allow",
        &format!("http://127.0.0.1:{nobody_port}"),
        "--callback-allow",
        &erring.allow_entry(),
    ]);
    let app = server.app();
    let mut body = daily_schedule(&app, clock_now(&server), 1);
    body["callbackUrl"] = nobody.clone().into();
    let (status, schedule) = server.call("POST", &Server::source_path(&app, "importschedule"), Some(body));
    assert_eq!(status, 201);
    let firings = server.advance(2 * 3600);
    assert_eq!(firings[0]["status"], "failed");

    // A receiver that answers with an error status and a body: the
    // history keeps the status only, never the target's words.
    let wrong = erring.url.clone();
    let path = Server::source_path(&app, &format!("importschedule/{}", schedule["id"].as_str().unwrap()));
    let (status, _) = server.call("PUT", &path, Some(json!({ "callbackUrl": wrong })));
    assert_eq!(status, 200);
    let answering = std::thread::spawn(move || {
        let mut callback = Receiver::read(erring.accept());
        let body = "internal secret: hunter2";
        let _ = write!(
            callback.stream,
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        callback.body
    });
    server.advance(24 * 3600);
    let sent = answering.join().unwrap();
    assert_eq!(sent["importSourceId"], json!(app.import_source_id));

    let history = server.history(&app);
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(history
        .iter()
        .all(|e| e["status"] == "failed" && e["scheduled"] == true));
    let reasons: Vec<&str> = history.iter().map(|e| e["failureReason"].as_str().unwrap()).collect();
    assert!(
        reasons[0].starts_with(&format!("The scheduled callback to {nobody} failed: ")),
        "{}",
        reasons[0]
    );
    assert_eq!(
        reasons[1],
        format!("The scheduled callback to {wrong} failed: the callback target answered HTTP 500"),
    );
}

#[test]
fn random_requests_over_http_always_get_json_with_a_2xx_or_4xx() {
    let server = Server::fresh(&["--clock", "virtual", "--objects", "5", "--max-body-bytes", "65536"]);
    let app = server.app();
    let mut rng = fastrand::Rng::with_seed(7);
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"];
    let prefixes = [
        Server::source_path(&app, ""),
        format!("/jsm/assets/workspace/{}/v1/", app.workspace_id),
        "/_admin/".to_owned(),
        "/apps/demo/".to_owned(),
        "/apps/".to_owned(),
        "/".to_owned(),
    ];
    let segments = [
        "executions",
        "status",
        "data",
        "history",
        "completed",
        "failed",
        "importschedule",
        "webtrigger",
        "clock",
        "advance",
        "importsource",
        "apps",
        "%ZZ",
        "%C3%28",
        "..",
        "x",
        "",
    ];
    let bodies = [
        "",
        "{}",
        "[]",
        "null",
        "{\"scheduled\": \"yes\"}",
        "{\"seconds\": 1e99}",
        "{\"objectTypeId\": \"s\", \"objects\": [{\"externalId\": 1}]}",
        "{\"runFrequency\": \"DAILY\"}",
        "\u{0}\u{1}binary",
    ];
    // No redirects followed: a 3xx is an answer of its own, and not one of
    // the two this test allows.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    for i in 0..400 {
        let method = methods[rng.usize(..methods.len())];
        let mut path = prefixes[rng.usize(..prefixes.len())].clone();
        for _ in 0..rng.usize(0..4) {
            path.push_str(segments[rng.usize(..segments.len())]);
            path.push('/');
        }
        let body = match rng.u8(..4) {
            0 => None,
            1 => Some(bodies[rng.usize(..bodies.len())].to_owned()),
            2 => Some((0..rng.usize(0..200)).map(|_| rng.char('\u{20}'..'\u{7e}')).collect()),
            _ => Some("x".repeat(60_000)),
        };
        let headers: Vec<(&str, &str)> = match rng.u8(..3) {
            0 => vec![("content-type", "text/plain")],
            1 => vec![("authorization", "Bearer nonsense"), ("x-assets-timestamp", "soon")],
            _ => vec![],
        };
        let url = format!("{}{path}", server.base);
        let mut request = agent.request(method, &url).timeout(Duration::from_secs(30));
        for (name, value) in &headers {
            request = request.set(name, value);
        }
        let result = match &body {
            Some(body) => request.send_string(body),
            None => request.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request {i}: {method} {path}: {e}\nlog:\n{}", server.log_text()),
        };
        let status = response.status();
        let text = response.into_string().unwrap();
        assert!(
            (200..300).contains(&status) || (400..500).contains(&status),
            "request {i}: {method} {path} answered {status}: {text}"
        );
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "request {i}: {method} {path} answered {status} with non-JSON {text:?}"
        );
    }
}

/// An external import source (an app that runs elsewhere) in `app`'s workspace.
fn external_source(server: &Server, app: &App) -> App {
    let (status, created) = server.call(
        "POST",
        "/_admin/importsource",
        Some(json!({ "workspaceId": app.workspace_id, "type": "external" })),
    );
    assert_eq!(status, 201, "{created}");
    App {
        import_source_id: created["id"].as_str().unwrap().to_owned(),
        callback_url: String::new(),
        ..app.clone()
    }
}

#[test]
fn a_slow_import_does_not_delay_another_schedules_callback() {
    // The system clock: deliveries run on the worker pool.
    let (slow_receiver, quick_receiver) = (Receiver::new(), Receiver::new());
    let server = Server::fresh(&[
        "--callback-allow",
        &slow_receiver.allow_entry(),
        "--callback-allow",
        &quick_receiver.allow_entry(),
    ]);
    let app = server.app();
    let (slow, quick) = (external_source(&server, &app), external_source(&server, &app));
    let start = chrono::Utc::now() + chrono::Duration::seconds(3);
    let once = |at: chrono::DateTime<chrono::Utc>, url: &str| {
        json!({
            "runFrequency": "ONCE",
            "startTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "timezone": "UTC",
            "callbackUrl": url,
        })
    };
    let (status, body) = server.call(
        "POST",
        &Server::source_path(&slow, "importschedule"),
        Some(once(start, &slow_receiver.url)),
    );
    assert_eq!(status, 201, "{body}");
    let quick_due = start + chrono::Duration::seconds(1);
    let (status, body) = server.call(
        "POST",
        &Server::source_path(&quick, "importschedule"),
        Some(once(quick_due, &quick_receiver.url)),
    );
    assert_eq!(status, 201, "{body}");

    // The slow app holds its callback until the quick one has arrived: if
    // the slow delivery held up the quick one, neither would ever come, and
    // the guard (minutes, a hang guard, not the property) says so.
    let (quick_arrived, wait_for_quick) = std::sync::mpsc::channel::<()>();
    let slow_app = std::thread::spawn(move || {
        let callback = Receiver::read(slow_receiver.accept());
        let held = wait_for_quick.recv_timeout(Duration::from_secs(120));
        Receiver::accept_callback(callback.stream);
        held.is_ok()
    });
    let callback = Receiver::read(quick_receiver.accept());
    assert_eq!(callback.body["importSourceId"], json!(quick.import_source_id));
    let _ = quick_arrived.send(());
    Receiver::accept_callback(callback.stream);
    assert!(
        slow_app.join().unwrap(),
        "the quick schedule's callback never came while the slow one was held\n{}",
        server.log_text()
    );
}

#[test]
fn a_second_server_on_the_same_database_refuses_to_start() {
    let db = temp_dir().join("state.db");
    let first = Server::start(&db, &Port::new(), &["--clock", "virtual"]);
    let err = db.with_extension("second.log");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_assets-host"))
        .args(["serve", "--addr", "127.0.0.1:0", "--clock", "virtual", "--db"])
        .arg(&db)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("assets-host runs");
    // A hang guard, not the property: the refusal comes before anything is
    // compiled.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server started on {} and kept running", db.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(!status.success(), "a second server started on {}", db.display());
    assert!(
        stderr.contains("is in use by another assets-host serve") && stderr.contains("run every schedule twice"),
        "{stderr}"
    );
    // Once the first has stopped, the file is free again.
    first.stop();
    Server::start(&db, &Port::new(), &["--clock", "virtual"]).stop();
}
