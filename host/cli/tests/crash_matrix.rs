//! The crash matrix: `kill -9` of a real `assets-host serve` at each step of
//! a scheduled delivery, then a restart on the same database and time
//! passing. The test plays the external app: a bare HTTP receiver takes the
//! signed callback and imports through the API, so the kill can land exactly
//! between two of its calls.
//!
//! After each case: every occurrence in the ledger has exactly one terminal
//! state, no occurrence produced two executions, and every completed
//! execution holds exactly its objects, none twice.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Objects one import sends, in chunks of [`CHUNK`].
const OBJECTS: usize = 30;
const CHUNK: usize = 10;

/// Where the server is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// The callback connection is open; not a byte of it read.
    AfterClaim,
    /// The whole callback was received; no answer yet.
    CallbackReceived,
    /// The app created its execution.
    ExecutionCreated,
    /// The app sent one chunk of three.
    BetweenChunks,
    /// The app completed the import and has not answered the callback.
    AfterCompletion,
}

/// The app's side of one import, through the server's API.
struct Import {
    base: String,
    workspace: String,
    source: String,
    execution: Option<String>,
    sent: usize,
    completed: bool,
}

impl Import {
    fn new(server: &Server, app: &App) -> Import {
        Import {
            base: server.base.clone(),
            workspace: app.workspace_id.clone(),
            source: app.import_source_id.clone(),
            execution: None,
            sent: 0,
            completed: false,
        }
    }

    fn url(&self, rest: &str) -> String {
        format!(
            "{}/jsm/assets/workspace/{}/v1/importsource/{}/{rest}",
            self.base, self.workspace, self.source
        )
    }

    fn post(&self, rest: &str, body: Value) -> (u16, Value) {
        let result = ureq::post(&self.url(rest))
            .timeout(Duration::from_secs(30))
            .send_string(&body.to_string());
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("POST {rest}: {e}"),
        };
        let status = response.status();
        (
            status,
            serde_json::from_str(&response.into_string().unwrap()).unwrap_or(Value::Null),
        )
    }

    fn create(&mut self) {
        let (status, created) = self.post("executions", json!({ "scheduled": true }));
        assert_eq!(status, 201, "{created}");
        let data = created["links"]["submitResults"].as_str().unwrap();
        let id = data.trim_end_matches("/data").rsplit('/').next().unwrap();
        self.execution = Some(id.to_owned());
    }

    /// Sends the next chunk; its `clientGeneratedId` makes a resend harmless.
    fn chunk(&mut self) {
        let first = self.sent;
        let objects: Vec<Value> = (first..first + CHUNK)
            .map(|i| json!({ "externalId": format!("host-{i}"), "label": format!("host {i}") }))
            .collect();
        let execution = self.execution.clone().unwrap();
        let (status, body) = self.post(
            &format!("executions/{execution}/data"),
            json!({ "clientGeneratedId": format!("chunk-{first}"), "objectTypeId": "server", "objects": objects }),
        );
        assert_eq!(status, 200, "{body}");
        self.sent += CHUNK;
    }

    /// Sends the last chunk again, as an app does that cannot tell whether
    /// its chunk landed before the platform died.
    fn resend_last(&mut self) {
        assert!(self.sent >= CHUNK, "a chunk was sent");
        self.sent -= CHUNK;
        self.chunk();
    }

    fn complete(&mut self) {
        let execution = self.execution.clone().unwrap();
        let (status, body) = self.post(&format!("executions/{execution}/history/completed"), json!({}));
        assert_eq!(status, 200, "{body}");
        self.completed = true;
    }

    /// Everything still to do: create if needed, the rest of the chunks,
    /// completion.
    fn finish(&mut self) {
        if self.completed {
            return;
        }
        if self.execution.is_none() {
            self.create();
        }
        while self.sent < OBJECTS {
            self.chunk();
        }
        self.complete();
    }
}

/// Serves callbacks well for as long as the receiver lives: each one is
/// accepted, then imported in full. Returns the callbacks' bodies.
fn serve_callbacks(receiver: Receiver, server: &Server, app: &App) -> std::sync::mpsc::Receiver<Value> {
    let (tell, heard) = std::sync::mpsc::channel();
    let (base, app) = (server.base.clone(), app.clone());
    std::thread::spawn(move || loop {
        let callback = Receiver::read(receiver.accept());
        let mut import = Import {
            base: base.clone(),
            workspace: app.workspace_id.clone(),
            source: app.import_source_id.clone(),
            execution: None,
            sent: 0,
            completed: false,
        };
        import.finish();
        Receiver::accept_callback(callback.stream);
        if tell.send(callback.body).is_err() {
            return;
        }
    });
    heard
}

/// Advances the virtual clock in the background: the call is cut when the
/// server is killed.
fn advance_in_background(server: &Server, seconds: u64) -> std::thread::JoinHandle<()> {
    let url = format!("{}/_admin/clock/advance", server.base);
    std::thread::spawn(move || {
        let _ = ureq::post(&url)
            .timeout(Duration::from_secs(60))
            .send_string(&json!({ "seconds": seconds }).to_string());
    })
}

fn ledger(server: &Server) -> Vec<Value> {
    let (status, page) = server.call("GET", "/_admin/occurrences", None);
    assert_eq!(status, 200, "{page}");
    page["occurrences"].as_array().unwrap().clone()
}

/// The invariants every case ends with.
fn check(server: &Server, app: &App) -> Vec<Value> {
    let ledger = ledger(server);
    assert!(!ledger.is_empty());
    for entry in &ledger {
        let state = entry["state"].as_str().unwrap();
        assert!(
            ["completed", "failed", "skipped", "missed"].contains(&state),
            "every occurrence ends in a terminal state: {entry}\n{}",
            server.log_text()
        );
        if state != "completed" {
            assert!(
                entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "a state other than completed says why: {entry}"
            );
        }
    }
    let history = server.history(app);
    for entry in &ledger {
        let id = entry["occurrenceId"].as_str().unwrap();
        let executions: Vec<&Value> = history
            .iter()
            .filter(|h| h["occurrenceId"] == id && h["executionId"].is_string())
            .collect();
        assert!(
            executions.len() <= 1,
            "occurrence {id} produced two executions: {executions:?}"
        );
        let lines = history.iter().filter(|h| h["occurrenceId"] == id).count();
        assert_eq!(lines, 1, "occurrence {id} has one history line: {history:?}");
    }
    for line in history.iter().filter(|h| h["status"] == "completed") {
        let execution = line["executionId"].as_str().unwrap();
        let (status, state) = server.call(
            "GET",
            &Server::source_path(app, &format!("executions/{execution}/status")),
            None,
        );
        assert_eq!(status, 200);
        assert_eq!(
            (state["objects"].as_u64(), state["objectsReceived"].as_u64()),
            (Some(OBJECTS as u64), Some(OBJECTS as u64)),
            "a completed execution holds every object once: {state}"
        );
    }
    ledger
}

const START: &str = "2026-11-02T12:00:00Z";
/// The schedule's first run: 13:00 UTC daily.
const FIRST_RUN: &str = "2026-11-02T13:00:00Z";

/// Runs one case: kill at `step`, restart at `restart_at` on the virtual
/// clock, then (when `app_carries_on`) the app finishes what it started, and
/// two more days pass. Returns the ledger and the server.
fn crash_at(step: Step, restart_at: &str, app_carries_on: bool) -> (Vec<Value>, Server, App) {
    let dir = std::env::temp_dir().join(format!("assets-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("state.db");
    let port = Port::new();
    let receiver = Receiver::new();
    let allow = receiver.allow_entry();
    let first = Server::start(
        &db,
        &port,
        &["--clock", "virtual", "--clock-start", START, "--callback-allow", &allow],
    );
    // An import source of an app that runs elsewhere (this test), not one
    // the server hosts: a hosted app dies with the server, this one does not.
    let hosted = first.app();
    let (status, created) = first.call(
        "POST",
        "/_admin/importsource",
        Some(json!({ "workspaceId": hosted.workspace_id, "type": "external" })),
    );
    assert_eq!(status, 201, "{created}");
    let app = App {
        import_source_id: created["id"].as_str().unwrap().to_owned(),
        callback_url: String::new(),
        ..hosted
    };
    let (status, schedule) = first.call(
        "POST",
        &Server::source_path(&app, "importschedule"),
        Some(json!({
            "runFrequency": "DAILY",
            "startTime": FIRST_RUN,
            "timezone": "UTC",
            "callbackUrl": receiver.url,
        })),
    );
    assert_eq!(status, 201, "{schedule}");

    let advancing = advance_in_background(&first, 2 * 3600);
    let stream = receiver.accept();
    let mut import = Import::new(&first, &app);
    let mut first_callback = None;
    if step != Step::AfterClaim {
        let callback = Receiver::read(stream);
        first_callback = Some(callback.body.clone());
        if step != Step::CallbackReceived {
            import.create();
        }
        if matches!(step, Step::BetweenChunks | Step::AfterCompletion) {
            import.chunk();
        }
        if step == Step::AfterCompletion {
            import.finish();
        }
        // The connection stays open, unanswered, until the kill.
        std::mem::forget(callback.stream);
    }
    first.kill_9();
    let _ = advancing.join();

    let second = Server::start(
        &db,
        &port,
        &[
            "--clock",
            "virtual",
            "--clock-start",
            restart_at,
            "--callback-allow",
            &allow,
        ],
    );
    if app_carries_on && import.execution.is_some() {
        // The app outlived the platform: it finishes the import it started,
        // killed between chunks sending its last chunk again first.
        if step == Step::BetweenChunks {
            import.resend_last();
        }
        import.finish();
    }
    let heard = serve_callbacks(receiver, &second, &app);
    second.advance(0);
    if let Some(body) = first_callback {
        assert_eq!(body["attempt"], 1, "{body}");
    }
    second.advance(2 * 24 * 3600);
    let bodies: Vec<Value> = heard.try_iter().collect();
    let ledger = check(&second, &app);
    let first_occurrence = ledger.iter().find(|e| e["nominalTime"] == json!(FIRST_RUN));
    assert!(first_occurrence.is_some(), "the first run is in the ledger: {ledger:?}");
    // The callbacks the platform sent after the restart carry attempts that
    // match the ledger.
    for body in &bodies {
        let entry = ledger
            .iter()
            .find(|e| e["occurrenceId"] == body["occurrenceId"])
            .expect("each callback is a ledger occurrence");
        assert_eq!(entry["attempt"], body["attempt"], "{entry} vs {body}");
    }
    (ledger, second, app)
}

fn first_run(ledger: &[Value]) -> &Value {
    ledger.iter().find(|e| e["nominalTime"] == json!(FIRST_RUN)).unwrap()
}

#[test]
fn killed_after_the_claim_the_occurrence_is_delivered_again() {
    let (ledger, _server, _) = crash_at(Step::AfterClaim, "2026-11-02T13:20:00Z", true);
    let first = first_run(&ledger);
    assert_eq!(
        (first["state"].as_str(), first["attempt"].as_u64()),
        (Some("completed"), Some(2)),
        "{first}"
    );
    assert_eq!(ledger.len(), 3, "the first run and two more days: {ledger:?}");
}

#[test]
fn killed_while_the_callback_waits_for_its_answer_it_is_delivered_again() {
    let (ledger, _server, _) = crash_at(Step::CallbackReceived, "2026-11-02T13:20:00Z", true);
    let first = first_run(&ledger);
    assert_eq!(
        (first["state"].as_str(), first["attempt"].as_u64()),
        (Some("completed"), Some(2)),
        "{first}"
    );
}

#[test]
fn killed_mid_delivery_and_back_too_late_it_fails_saying_so() {
    let (ledger, _server, _) = crash_at(Step::CallbackReceived, "2026-11-02T14:30:00Z", true);
    let first = first_run(&ledger);
    assert_eq!(first["state"], "failed", "{first}");
    let reason = first["reason"].as_str().unwrap();
    assert!(
        reason.contains("platform stopped while delivering the callback") && reason.contains("catch-up window"),
        "{reason}"
    );
}

#[test]
fn killed_after_the_execution_was_created_the_app_finishes_it() {
    let (ledger, _server, _) = crash_at(Step::ExecutionCreated, "2026-11-02T13:20:00Z", true);
    let first = first_run(&ledger);
    assert_eq!(
        (first["state"].as_str(), first["attempt"].as_u64()),
        (Some("completed"), Some(1)),
        "{first}"
    );
    assert!(
        first["executionId"].is_string(),
        "the execution was linked when created: {first}"
    );
}

#[test]
fn killed_between_chunks_the_app_finishes_with_no_object_twice() {
    let (ledger, server, _) = crash_at(Step::BetweenChunks, "2026-11-02T13:20:00Z", true);
    let first = first_run(&ledger);
    assert_eq!(first["state"], "completed", "{first}");
    let execution = first["executionId"].as_str().unwrap().to_owned();
    // The database, read with SQLite itself once the server has stopped:
    // the re-sent chunk is stored once, by chunk id and by object id.
    let db = server.log.parent().unwrap().join("state.db");
    server.stop();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let column = |sql: &str| -> Vec<String> {
        let mut query = conn.prepare(sql).unwrap();
        let mut rows: Vec<String> = query
            .query_map([&execution], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        rows
    };
    let mut expected: Vec<String> = (0..OBJECTS).map(|i| format!("host-{i}")).collect();
    expected.sort();
    assert_eq!(
        column("SELECT external_id FROM objects WHERE execution_id = ?1"),
        expected
    );
    let chunks: Vec<String> = (0..OBJECTS).step_by(CHUNK).map(|i| format!("chunk-{i}")).collect();
    assert_eq!(column("SELECT chunk_id FROM chunk_ids WHERE execution_id = ?1"), chunks);
}

#[test]
fn killed_between_chunks_with_the_app_gone_the_platform_fails_it() {
    let (ledger, _server, _) = crash_at(Step::BetweenChunks, "2026-11-02T13:20:00Z", false);
    let first = first_run(&ledger);
    assert_eq!(first["state"], "failed", "{first}");
    assert!(
        first["reason"].as_str().unwrap().contains("no completion or failure"),
        "{first}"
    );
    let later: Vec<&str> = ledger.iter().skip(1).map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(
        later,
        ["completed", "completed"],
        "the source is not blocked: {ledger:?}"
    );
}

#[test]
fn killed_after_completion_before_the_answer_nothing_runs_twice() {
    let (ledger, _server, _) = crash_at(Step::AfterCompletion, "2026-11-02T13:20:00Z", true);
    let first = first_run(&ledger);
    assert_eq!(
        (first["state"].as_str(), first["attempt"].as_u64()),
        (Some("completed"), Some(1)),
        "{first}"
    );
}
