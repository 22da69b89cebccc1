//! The SQLite store as the truth: a write that fails is answered 503 and
//! leaves nothing in memory that is not on disk; a damaged history does not
//! stop the next start.

use assets_platform::assets::{AssetsService, SourceType};
use assets_platform::clock::SystemClock;
use assets_server::db::SqliteStore;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn temp_db() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("assets-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("state.db")
}

fn open(path: &Path) -> AssetsService {
    let (store, state) = SqliteStore::open(path).unwrap();
    AssetsService::new(Arc::new(SystemClock)).with_store(Arc::new(store), state)
}

fn call(service: &AssetsService, method: &str, path: &str, body: &str) -> (u16, Value) {
    let response = service.handle(method, path, body.as_bytes());
    let body = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

/// `POST …/executions` for a manual run.
fn create_execution(service: &AssetsService, base: &str) -> (u16, Value) {
    call(
        service,
        "POST",
        &format!("{base}/executions"),
        r#"{"scheduled": false}"#,
    )
}

/// Signals completion of execution `id`.
fn complete(service: &AssetsService, base: &str, id: &str) {
    let (status, body) = call(
        service,
        "POST",
        &format!("{base}/executions/{id}/history/completed"),
        "",
    );
    assert_eq!(status, 200, "{body}");
}

/// A workspace with one import source; its API base path.
fn source(service: &AssetsService) -> String {
    let workspace = service.create_workspace();
    let source = service
        .create_import_source(&workspace, SourceType::External, None)
        .unwrap();
    format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}")
}

#[test]
fn a_failed_write_is_answered_503_and_memory_keeps_to_the_database() {
    let path = temp_db();
    let service = open(&path);
    let base = source(&service);
    // Another connection makes every new execution row fail to insert, as a
    // full disk would.
    let saboteur = rusqlite::Connection::open(&path).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON executions BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END;",
        )
        .unwrap();

    let (status, body) = create_execution(&service, &base);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorCode"], "STATE_NOT_SAVED", "{body}");
    assert!(body["message"].as_str().unwrap().contains("retry"), "{body}");

    // Nothing of the refused change is visible: memory was read back.
    let (status, body) = call(&service, "GET", &format!("{base}/executions/status"), "");
    assert_eq!(status, 404, "the unsaved execution is not served: {body}");
    let (status, history) = call(&service, "GET", &format!("{base}/history"), "");
    assert_eq!((status, history.as_array().map(Vec::len)), (200, Some(0)), "{history}");

    // The disk recovers: the retry is acknowledged and stays.
    saboteur.execute_batch("DROP TRIGGER refuse;").unwrap();
    let (status, body) = create_execution(&service, &base);
    assert_eq!(status, 201, "{body}");
    drop(service);
    let reopened = open(&path);
    let (status, history) = call(&reopened, "GET", &format!("{base}/history"), "");
    assert_eq!((status, history.as_array().map(Vec::len)), (200, Some(1)), "{history}");
}

#[test]
fn a_lost_history_row_does_not_stop_the_next_start() {
    let path = temp_db();
    let service = open(&path);
    let base = source(&service);
    let mut executions = Vec::new();
    for _ in 0..3 {
        let (status, created) = create_execution(&service, &base);
        assert_eq!(status, 201, "{created}");
        let (status, latest) = call(&service, "GET", &format!("{base}/executions/status"), "");
        assert_eq!(status, 200);
        let id = latest["executionId"].as_str().unwrap().to_owned();
        complete(&service, &base, &id);
        executions.push(id);
    }
    drop(service);
    let hand = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(hand.execute("DELETE FROM history WHERE idx = 1", []).unwrap(), 1);
    drop(hand);

    let reopened = open(&path);
    let (status, history) = call(&reopened, "GET", &format!("{base}/history"), "");
    assert_eq!(status, 200, "{history}");
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 3, "every execution has its line: {history:?}");
    let rebuilt = history
        .iter()
        .find(|line| line["executionId"] == executions[1].as_str())
        .expect("the execution that lost its line has one again");
    assert_eq!(rebuilt["status"], "completed");
    assert!(rebuilt["failureReason"]
        .as_str()
        .unwrap()
        .contains("lost from the database"));
    // It goes on working, and starts again.
    let (status, _) = create_execution(&reopened, &base);
    assert_eq!(status, 201);
    drop(reopened);
    let again = open(&path);
    let (_, history) = call(&again, "GET", &format!("{base}/history"), "");
    assert_eq!(history.as_array().unwrap().len(), 4);
}

/// Counts the callbacks it is asked to deliver, and accepts each.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl assets_platform::scheduler::Callbacks for Counting {
    fn call(
        &self,
        _app: Option<&str>,
        _url: &str,
        _event: &assets_runtime::bindings::import_callback::TriggerEvent,
    ) -> Result<Option<assets_platform::trigger::TriggerOutcome>, String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(None)
    }
}

#[test]
fn no_callback_is_sent_for_a_claim_that_was_not_stored() {
    use assets_platform::clock::VirtualClock;
    use assets_platform::scheduler::Scheduler;
    let path = temp_db();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let (store, state) = SqliteStore::open(&path).unwrap();
    let service = Arc::new(AssetsService::new(clock.clone()).with_store(Arc::new(store), state));
    let base = source(&service);
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/importschedule"),
        r#"{"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
            "callbackUrl": "https://app.example/callback"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let callbacks = Arc::new(Counting::default());
    let scheduler = Scheduler::new(service.clone()).with_callbacks(callbacks.clone());
    let saboteur = rusqlite::Connection::open(&path).unwrap();
    saboteur
        .execute_batch("CREATE TRIGGER refuse BEFORE INSERT ON occurrences BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END;")
        .unwrap();

    clock.set("2026-11-02T13:00:00Z".parse().unwrap());
    assert!(scheduler.run_due().is_empty(), "nothing is reported as handled");
    assert_eq!(
        callbacks.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no callback without a stored claim"
    );
    assert_eq!(service.state().ledger().count(), 0);

    saboteur.execute_batch("DROP TRIGGER refuse;").unwrap();
    clock.set("2026-11-02T13:05:00Z".parse().unwrap());
    let firings = scheduler.run_due();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(
        callbacks.0.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "delivered once the claim is stored"
    );
}

#[test]
fn an_ended_executions_objects_live_on_disk_not_in_memory() {
    let path = temp_db();
    let service = open(&path);
    let base = source(&service);
    let (status, _) = create_execution(&service, &base);
    assert_eq!(status, 201);
    let (_, latest) = call(&service, "GET", &format!("{base}/executions/status"), "");
    let id = latest["executionId"].as_str().unwrap().to_owned();
    let objects: Vec<Value> = (0..50)
        .map(|i| serde_json::json!({"externalId": format!("h{i}"), "label": format!("host {i}")}))
        .collect();
    let chunk = serde_json::json!({"objectTypeId": "server", "objects": objects}).to_string();
    let (status, body) = call(&service, "POST", &format!("{base}/executions/{id}/data"), &chunk);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        service.state().execution_by_id(&id).unwrap().objects.len(),
        50,
        "ingesting: in memory"
    );

    complete(&service, &base, &id);
    assert!(
        service.state().execution_by_id(&id).unwrap().objects.is_empty(),
        "completed and stored: no longer held in memory"
    );
    let (_, state) = call(&service, "GET", &format!("{base}/executions/{id}/status"), "");
    assert_eq!(
        (state["objects"].as_u64(), state["objectsReceived"].as_u64()),
        (Some(50), Some(50))
    );
    drop(service);
    let stored: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM objects WHERE execution_id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, 50, "the objects are on disk");
}

#[test]
fn an_import_source_that_was_not_stored_is_not_created() {
    let path = temp_db();
    let service = open(&path);
    let workspace = service.create_workspace();
    let saboteur = rusqlite::Connection::open(&path).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON sources BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END;",
        )
        .unwrap();
    let refused = service
        .create_import_source(&workspace, SourceType::External, None)
        .expect_err("the admin call cannot report a source it did not store");
    assert_eq!((refused.status, refused.code), (503, "STATE_NOT_SAVED"));
    assert_eq!(service.state().sources().count(), 0, "memory holds no unstored source");
}
