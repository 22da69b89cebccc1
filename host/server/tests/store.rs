//! The store as the truth, on both engines: SQLite (one server per file)
//! and PostgreSQL (any number of nodes on one database). Every behaviour
//! here runs against each (`mod sqlite`, `mod postgres` at the end): a
//! write that fails is answered 503 and leaves nothing in memory that is
//! not stored; what was acknowledged reads back after a restart; ended
//! executions' objects live in the database only; no callback goes out for
//! a claim that was not stored. The PostgreSQL-only part is what several
//! nodes share: each other's writes, one claim per occurrence when they
//! race, and a node that loses its connections.
//!
//! The PostgreSQL tests need `ASSETS_TEST_PG` (a server they may create
//! databases on); `make test` starts a throwaway cluster and sets it. They
//! fail, never skip, without it.

use assets_platform::assets::{AssetsService, SourceType};
use assets_platform::clock::{Clock, DatabaseClock, SystemClock, VirtualClock};
use assets_platform::scheduler::Scheduler;
use assets_server::db::SqliteStore;
use assets_server::pg::{PgStore, HEARTBEAT_EVERY};
use proptest::prelude::*;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A database of one engine, fresh for one test.
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(format!("assets-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Db::Sqlite(dir.join("state.db"))
    }

    /// A new database on the server `ASSETS_TEST_PG` names.
    fn postgres() -> Db {
        let base = std::env::var("ASSETS_TEST_PG").expect(
            "ASSETS_TEST_PG is not set: the PostgreSQL tests need a server. `make test` starts a throwaway one \
             (scripts/with-postgres); by hand: scripts/with-postgres cargo test -p assets-server --test store",
        );
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = ::postgres::Client::connect(&base, ::postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {base}: {e}"));
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (server, _) = base.rsplit_once('/').expect("a URL ending in /DATABASE");
        Db::Postgres(format!("{server}/{name}"))
    }

    /// The state service on this database, as one server (or node) opens it.
    fn open_with(&self, clock: Arc<dyn Clock>) -> AssetsService {
        self.open_node(clock, "node-a", None).0
    }

    fn open(&self) -> AssetsService {
        self.open_with(Arc::new(SystemClock))
    }

    /// One node: its service and, on PostgreSQL, its store (the scheduler's
    /// peers).
    fn open_node(
        &self,
        clock: Arc<dyn Clock>,
        node: &str,
        shared_clock: Option<Arc<VirtualClock>>,
    ) -> (AssetsService, Option<Arc<PgStore>>) {
        match self {
            Db::Sqlite(path) => {
                let (store, state) = SqliteStore::open(path).unwrap();
                (AssetsService::new(clock).with_store(Arc::new(store), state), None)
            }
            Db::Postgres(url) => {
                let (store, state) = PgStore::open(url, node, shared_clock).unwrap();
                let store = Arc::new(store);
                (AssetsService::new(clock).with_store(store.clone(), state), Some(store))
            }
        }
    }

    /// Makes every insert into `table` fail, as a full disk would.
    fn refuse_inserts(&self, table: &str) {
        match self {
            Db::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(&format!(
                    "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                     BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END;"
                ))
                .unwrap(),
            Db::Postgres(url) => {
                let mut conn = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
                conn.batch_execute(&format!(
                    "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                         $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$;
                     CREATE TRIGGER refuse_{table} BEFORE INSERT OR UPDATE ON {table}
                         FOR EACH ROW EXECUTE FUNCTION refuse();"
                ))
                .unwrap()
            }
        }
    }

    /// Undoes [`Db::refuse_inserts`].
    fn allow_inserts(&self, table: &str) {
        match self {
            Db::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(&format!("DROP TRIGGER refuse_{table};"))
                .unwrap(),
            Db::Postgres(url) => ::postgres::Client::connect(url, ::postgres::NoTls)
                .unwrap()
                .batch_execute(&format!("DROP TRIGGER refuse_{table} ON {table};"))
                .unwrap(),
        }
    }

    /// Deletes the history rows numbered `indices`, as a hand edit or a
    /// restored backup would lose them.
    fn delete_history_rows(&self, indices: &[i64]) {
        match self {
            Db::Sqlite(path) => {
                let hand = rusqlite::Connection::open(path).unwrap();
                for idx in indices {
                    hand.execute("DELETE FROM history WHERE idx = ?1", [idx]).unwrap();
                }
            }
            Db::Postgres(url) => {
                ::postgres::Client::connect(url, ::postgres::NoTls)
                    .unwrap()
                    .execute("DELETE FROM history WHERE idx = ANY($1)", &[&indices])
                    .unwrap();
            }
        }
    }

    /// Rows of `objects` stored for `execution`.
    fn stored_objects(&self, execution: &str) -> i64 {
        match self {
            Db::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM objects WHERE execution_id = ?1",
                    [execution],
                    |r| r.get(0),
                )
                .unwrap(),
            Db::Postgres(url) => ::postgres::Client::connect(url, ::postgres::NoTls)
                .unwrap()
                .query_one("SELECT COUNT(*) FROM objects WHERE execution_id = $1", &[&execution])
                .unwrap()
                .get(0),
        }
    }
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

/// The id of the source's latest execution.
fn latest_execution(service: &AssetsService, base: &str) -> String {
    let (status, latest) = call(service, "GET", &format!("{base}/executions/status"), "");
    assert_eq!(status, 200, "{latest}");
    latest["executionId"].as_str().unwrap().to_owned()
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

/// A chunk of `n` servers named `{prefix}{i}`.
fn chunk(prefix: &str, n: usize, id: &str) -> String {
    let objects: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({"externalId": format!("{prefix}{i}"), "label": format!("host {i}")}))
        .collect();
    serde_json::json!({"objectTypeId": "server", "clientGeneratedId": id, "objects": objects}).to_string()
}

/// A workspace with one import source; its API base path.
fn source(service: &AssetsService) -> String {
    let workspace = service.create_workspace();
    let source = service
        .create_import_source(&workspace, SourceType::External, None)
        .unwrap();
    format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}")
}

fn a_failed_write_is_answered_503_and_memory_keeps_to_the_database(db: Db) {
    let service = db.open();
    let base = source(&service);
    db.refuse_inserts("executions");

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
    db.allow_inserts("executions");
    let (status, body) = create_execution(&service, &base);
    assert_eq!(status, 201, "{body}");
    drop(service);
    let reopened = db.open();
    let (status, history) = call(&reopened, "GET", &format!("{base}/history"), "");
    assert_eq!((status, history.as_array().map(Vec::len)), (200, Some(1)), "{history}");
}

fn what_was_acknowledged_reads_back_after_a_restart(db: Db) {
    let service = db.open();
    let base = source(&service);
    create_execution(&service, &base);
    let done = latest_execution(&service, &base);
    let (status, _) = call(
        &service,
        "POST",
        &format!("{base}/executions/{done}/data"),
        &chunk("a", 3, "c1"),
    );
    assert_eq!(status, 200);
    complete(&service, &base, &done);
    create_execution(&service, &base);
    let running = latest_execution(&service, &base);
    let (status, _) = call(
        &service,
        "POST",
        &format!("{base}/executions/{running}/data"),
        &chunk("b", 2, "c1"),
    );
    assert_eq!(status, 200);
    let (status, schedule) = call(
        &service,
        "POST",
        &format!("{base}/importschedule"),
        r#"{"runFrequency": "WEEKLY", "startTime": "2030-01-06T09:00:00Z", "timezone": "Europe/Paris",
            "callbackUrl": "https://app.example/callback"}"#,
    );
    assert_eq!(status, 201, "{schedule}");
    drop(service);

    let reopened = db.open();
    let (_, history) = call(&reopened, "GET", &format!("{base}/history"), "");
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        (history[0]["status"].as_str(), history[0]["objects"].as_u64()),
        (Some("completed"), Some(3))
    );
    assert_eq!(history[1]["status"], "running");
    let (status, body) = call(
        &reopened,
        "POST",
        &format!("{base}/executions/{running}/data"),
        &chunk("b", 2, "c1"),
    );
    assert_eq!(status, 200, "{body}");
    let (_, status_body) = call(&reopened, "GET", &format!("{base}/executions/{running}/status"), "");
    assert_eq!(
        (status_body["objects"].as_u64(), status_body["objectsReceived"].as_u64()),
        (Some(2), Some(2)),
        "a resent chunk is still recognised after a restart: {status_body}"
    );
    let (status, body) = call(
        &reopened,
        "POST",
        &format!("{base}/executions/{running}/data"),
        &chunk("b", 1, "c1"),
    );
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (409, Some("CHUNK_CONFLICT")),
        "the content a chunk id was accepted with is kept too: {body}"
    );
    let id = schedule["id"].as_str().unwrap();
    let (status, stored) = call(&reopened, "GET", &format!("{base}/importschedule/{id}"), "");
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        (stored["timezone"].as_str(), stored["runFrequency"].as_str()),
        (Some("Europe/Paris"), Some("WEEKLY"))
    );
    let (status, _) = call(&reopened, "DELETE", &format!("{base}/importschedule/{id}"), "");
    assert_eq!(status, 200);
    drop(reopened);
    let (status, _) = call(&db.open(), "GET", &format!("{base}/importschedule/{id}"), "");
    assert_eq!(status, 404, "a deletion is stored too");
}

/// Counts the callbacks it is asked to deliver, and accepts each.
#[derive(Default)]
struct Counting(AtomicUsize);

impl assets_platform::scheduler::Callbacks for Counting {
    fn call(
        &self,
        _source: &assets_platform::assets::ImportSource,
        _url: &str,
        _event: &assets_runtime::bindings::import_callback::TriggerEvent,
    ) -> Result<Option<assets_platform::trigger::TriggerOutcome>, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
}

fn no_callback_is_sent_for_a_claim_that_was_not_stored(db: Db) {
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let service = Arc::new(db.open_with(clock.clone()));
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
    db.refuse_inserts("occurrences");

    clock.set("2026-11-02T13:00:00Z".parse().unwrap());
    assert!(scheduler.run_due().is_empty(), "nothing is reported as handled");
    assert_eq!(
        callbacks.0.load(Ordering::SeqCst),
        0,
        "no callback without a stored claim"
    );
    assert_eq!(service.state().ledger().count(), 0);

    db.allow_inserts("occurrences");
    clock.set("2026-11-02T13:05:00Z".parse().unwrap());
    let firings = scheduler.run_due();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(
        callbacks.0.load(Ordering::SeqCst),
        1,
        "delivered once the claim is stored"
    );
}

fn an_advance_the_database_refuses_stops_there_and_goes_on_later(db: Db) {
    // Five daily runs fall due in one advance of the virtual clock while
    // the database refuses every claim (an outage). The advance stops at
    // the first: the clock does not run on ahead of what is stored, so the
    // next advance delivers all five, none recorded missed.
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let end: chrono::DateTime<chrono::Utc> = "2026-11-06T14:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let service = Arc::new(db.open_node(clock.clone(), "node-a", Some(clock.clone())).0);
    let base = source(&service);
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/importschedule"),
        r#"{"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
            "callbackUrl": "https://app.example/callback"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let callbacks = Arc::new(Attempts::default());
    let scheduler = Arc::new(Scheduler::new(service.clone()).with_callbacks(callbacks.clone()));

    db.refuse_inserts("occurrences");
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn({
        let (scheduler, clock) = (scheduler.clone(), clock.clone());
        move || done.send(scheduler.run_until(&clock, end).map(|f| f.len()))
    });
    // Before this rule the advance asked for the same due time again and
    // again for as long as the database refused it.
    let halted = stopped
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("hang guard: the advance never stopped while the database refused its claims")
        .expect_err("an advance whose claims are refused stops");
    assert_eq!(
        halted.at,
        "2026-11-02T13:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap()
    );
    assert!(halted.firings.is_empty(), "{:?}", halted.firings);
    assert!(clock.now() < end, "the clock stopped where the claims were refused");
    assert!(callbacks.0.lock().unwrap().is_empty(), "nothing sent");

    db.allow_inserts("occurrences");
    let firings = scheduler
        .run_until(&clock, end)
        .expect("stored once the database is back");
    assert_eq!(clock.now(), end);
    let delivered: Vec<_> = firings
        .iter()
        .filter(|f| f.status == assets_platform::scheduler::FiringStatus::Delivered)
        .map(|f| f.nominal_utc)
        .collect();
    assert_eq!(delivered.len(), 5, "each day delivered: {firings:?}");
    assert_eq!(callbacks.0.lock().unwrap().len(), 5, "each day called back");
    // These callbacks create no execution: each day's delivery ends failed
    // when its lease runs out the same day, and the last is still going.
    let entries: Vec<_> = service.state().ledger().cloned().collect();
    assert_eq!(entries.len(), 5, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|e| e.state != assets_platform::assets::ledger::OccurrenceState::Missed),
        "none missed: {entries:?}"
    );
}

fn an_ended_executions_objects_live_on_disk_not_in_memory(db: Db) {
    let service = db.open();
    let base = source(&service);
    let (status, _) = create_execution(&service, &base);
    assert_eq!(status, 201);
    let id = latest_execution(&service, &base);
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/executions/{id}/data"),
        &chunk("h", 50, "c1"),
    );
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
    assert_eq!(db.stored_objects(&id), 50, "the objects are in the database");
}

fn an_import_source_that_was_not_stored_is_not_created(db: Db) {
    let service = db.open();
    let workspace = service.create_workspace();
    db.refuse_inserts("sources");
    let refused = service
        .create_import_source(&workspace, SourceType::External, None)
        .expect_err("the admin call cannot report a source it did not store");
    assert_eq!((refused.status, refused.code), (503, "STATE_NOT_SAVED"));
    assert_eq!(service.state().sources().count(), 0, "memory holds no unstored source");
}

/// The same suite on each engine.
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $test() { super::$test(super::Db::sqlite()) })*
        }
        mod postgres {
            $(#[test] fn $test() { super::$test(super::Db::postgres()) })*
        }
    };
}

on_both_engines!(
    a_failed_write_is_answered_503_and_memory_keeps_to_the_database,
    what_was_acknowledged_reads_back_after_a_restart,
    no_callback_is_sent_for_a_claim_that_was_not_stored,
    a_claim_whose_commit_answer_was_lost_is_delivered_on_the_next_pass,
    an_advance_the_database_refuses_stops_there_and_goes_on_later,
    an_ended_executions_objects_live_on_disk_not_in_memory,
    an_import_source_that_was_not_stored_is_not_created,
);

/// SQLite only: a file restored from an old copy, or edited by hand, may
/// lose history rows; PostgreSQL is not edited under a running platform.
#[test]
fn a_lost_history_row_does_not_stop_the_next_start() {
    let db = Db::sqlite();
    let Db::Sqlite(path) = &db else { unreachable!() };
    let service = db.open();
    let base = source(&service);
    let mut executions = Vec::new();
    for i in 0..3 {
        let (status, created) = create_execution(&service, &base);
        assert_eq!(status, 201, "{created}");
        let id = latest_execution(&service, &base);
        // The last is still ingesting: it stays the source's latest.
        if i < 2 {
            complete(&service, &base, &id);
        }
        executions.push(id);
    }
    drop(service);
    let hand = rusqlite::Connection::open(path).unwrap();
    assert_eq!(hand.execute("DELETE FROM history WHERE idx = 1", []).unwrap(), 1);
    drop(hand);

    let reopened = db.open();
    let (status, history) = call(&reopened, "GET", &format!("{base}/history"), "");
    assert_eq!(status, 200, "{history}");
    assert_second_line_rebuilt_in_place(&history, &executions);
    // It goes on working, and starts again.
    let (status, body) = create_execution(&reopened, &base);
    assert_eq!(
        status, 409,
        "the last execution is still ingesting, and still the latest: {body}"
    );
    complete(&reopened, &base, &executions[2]);
    let (status, _) = create_execution(&reopened, &base);
    assert_eq!(status, 201);
    drop(reopened);
    let again = db.open();
    let (_, history) = call(&again, "GET", &format!("{base}/history"), "");
    assert_eq!(history.as_array().unwrap().len(), 4);
}

/// `history` holds one line per execution of `executions`, in the order
/// they were made, the second's rebuilt (its row was lost) as completed.
fn assert_second_line_rebuilt_in_place(history: &Value, executions: &[String]) {
    let lines = history.as_array().unwrap();
    let order: Vec<&str> = lines.iter().filter_map(|l| l["executionId"].as_str()).collect();
    assert_eq!(order, executions, "one line per execution, in order: {history}");
    assert_eq!(lines[1]["status"], "completed", "{history}");
    assert!(
        lines[1]["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("lost from the database")),
        "{history}"
    );
}

/// What a line of the generative repair test stands for.
#[derive(Debug, Clone)]
enum Line {
    /// An execution's line, by its id.
    Execution(String),
    /// A line with no execution (a missed occurrence), by its reason.
    Note(String),
}

/// Builds a history of `kinds` (true: an execution, ended but for the
/// last line; false: a line with no execution), loses the rows `lost`
/// says, opens the database again and checks the history against an
/// oracle written here: every line kept, in its order; every execution
/// whose line was lost has a rebuilt one in the same place; a lost line
/// without an execution is gone; and the source's latest execution is
/// what it was.
fn lose_history_rows(db: Db, kinds: &[bool], lost: &[bool]) -> Result<(), TestCaseError> {
    let service = db.open();
    let base = source(&service);
    let source_id = base.rsplit('/').next().unwrap().to_owned();
    let mut lines = Vec::new();
    for (i, &execution) in kinds.iter().enumerate() {
        if execution {
            let (status, created) = create_execution(&service, &base);
            prop_assert_eq!(status, 201, "{}", created);
            let id = latest_execution(&service, &base);
            if i + 1 < kinds.len() {
                complete(&service, &base, &id);
            }
            lines.push(Line::Execution(id));
        } else {
            let reason = format!("missed: note {i}");
            service.state().record(assets_platform::assets::HistoryEntry {
                execution_id: None,
                import_source_id: source_id.clone(),
                scheduled: true,
                schedule_id: None,
                occurrence_id: None,
                status: assets_platform::assets::Outcome::Missed,
                failure_reason: Some(reason.clone()),
                objects: 0,
                started_at: chrono::Utc::now(),
                ended_at: Some(chrono::Utc::now()),
                invocations: None,
                processed_at: None,
                progress: None,
            });
            lines.push(Line::Note(reason));
        }
    }
    drop(service);
    let gone: Vec<i64> = (0..kinds.len() as i64).filter(|&i| lost[i as usize]).collect();
    db.delete_history_rows(&gone);

    let reopened = db.open();
    let (status, history) = call(&reopened, "GET", &format!("{base}/history"), "");
    prop_assert_eq!(status, 200, "{}", history);
    let got = history.as_array().unwrap();
    let expected: Vec<(&Line, bool)> = lines
        .iter()
        .zip(lost)
        .filter(|(line, &lost)| matches!(line, Line::Execution(_)) || !lost)
        .map(|(line, &lost)| (line, lost))
        .collect();
    prop_assert_eq!(got.len(), expected.len(), "{}", history);
    for (line, (want, rebuilt)) in got.iter().zip(&expected) {
        let reason = line["failureReason"].as_str().unwrap_or_default();
        match want {
            Line::Execution(id) => {
                prop_assert_eq!(line["executionId"].as_str(), Some(id.as_str()), "{}", history);
                prop_assert_eq!(reason.contains("lost from the database"), *rebuilt, "{}", history);
            }
            Line::Note(note) => {
                prop_assert!(line["executionId"].is_null(), "{}", history);
                prop_assert_eq!(reason, note.as_str());
            }
        }
    }
    // The last line's execution, still ingesting, is still the latest.
    let (status, body) = create_execution(&reopened, &base);
    let ingesting = kinds.last() == Some(&true);
    prop_assert_eq!(status, if ingesting { 409 } else { 201 }, "{}", body);
    Ok(())
}

/// [`lose_history_rows`] over `cases` random histories and losses, each
/// on a fresh database of `db`'s engine.
fn lost_history_rows_repaired(cases: u32, db: fn() -> Db) {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(kinds in prop::collection::vec(any::<bool>(), 1..8),
                        lost in prop::collection::vec(any::<bool>(), 8))| {
        lose_history_rows(db(), &kinds, &lost)?;
    });
}

#[test]
fn any_lost_history_rows_are_repaired_in_place_on_sqlite() {
    lost_history_rows_repaired(48, Db::sqlite);
}

#[test]
fn any_lost_history_rows_are_repaired_in_place_on_postgres() {
    lost_history_rows_repaired(12, Db::postgres);
}

// ---- PostgreSQL: what several nodes share -------------------------------

#[test]
fn a_lost_shared_history_row_is_repaired_and_every_node_answers() {
    // A history row goes missing under running nodes (a restored backup, a
    // hand edit). The next node to read the whole state repairs it, under
    // the lock, as a change every node reads whole: before, that node
    // could not start and any node reading everything again answered 503
    // for good.
    let db = Db::postgres();
    let Db::Postgres(url) = &db else { unreachable!() };
    let a = db.open_node(Arc::new(SystemClock), "node-a", None).0;
    let base = source(&a);
    let mut executions = Vec::new();
    for i in 0..3 {
        let (status, created) = create_execution(&a, &base);
        assert_eq!(status, 201, "{created}");
        let id = latest_execution(&a, &base);
        // The last is still ingesting: it stays the source's latest.
        if i < 2 {
            complete(&a, &base, &id);
        }
        executions.push(id);
    }
    let b = db.open_node(Arc::new(SystemClock), "node-b", None).0;
    let mut hand = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    assert_eq!(hand.execute("DELETE FROM history WHERE idx = 1", &[]).unwrap(), 1);

    let c = db.open_node(Arc::new(SystemClock), "node-c", None).0;
    let (status, history) = call(&c, "GET", &format!("{base}/history"), "");
    assert_eq!(status, 200, "{history}");
    assert_second_line_rebuilt_in_place(&history, &executions);
    // The nodes that held the old numbering read the repaired one.
    for (name, node) in [("a", &a), ("b", &b)] {
        let (status, theirs) = call(node, "GET", &format!("{base}/history"), "");
        assert_eq!(status, 200, "node {name}: {theirs}");
        assert_eq!(theirs, history, "node {name} answers the repaired history");
    }
    let (status, body) = create_execution(&c, &base);
    assert_eq!(
        status, 409,
        "the last execution is still ingesting, and still the latest: {body}"
    );
    complete(&b, &base, &executions[2]);
    let (status, created) = create_execution(&b, &base);
    assert_eq!(status, 201, "and goes on: {created}");
    let (_, history) = call(&a, "GET", &format!("{base}/history"), "");
    assert_eq!(history.as_array().unwrap().len(), 4, "{history}");
}

#[test]
fn two_nodes_on_one_database_see_each_others_writes() {
    let db = Db::postgres();
    let a = db.open_node(Arc::new(SystemClock), "node-a", None).0;
    let b = db.open_node(Arc::new(SystemClock), "node-b", None).0;
    let base = source(&a);
    let (status, body) = create_execution(&b, &base);
    assert_eq!(status, 201, "node b sees the source node a made: {body}");
    let id = latest_execution(&a, &base);
    let (status, _) = call(
        &a,
        "POST",
        &format!("{base}/executions/{id}/data"),
        &chunk("x", 10, "c1"),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &b,
        "POST",
        &format!("{base}/executions/{id}/data"),
        &chunk("x", 10, "c1"),
    );
    assert_eq!(status, 200);
    let (status, body) = call(
        &b,
        "POST",
        &format!("{base}/executions/{id}/data"),
        &chunk("y", 5, "c2"),
    );
    assert_eq!(status, 200, "{body}");
    let (_, on_a) = call(&a, "GET", &format!("{base}/executions/{id}/status"), "");
    assert_eq!(
        (on_a["objects"].as_u64(), on_a["objectsReceived"].as_u64()),
        (Some(15), Some(15)),
        "a chunk resent to the other node is stored once, and the counts agree: {on_a}"
    );
    let (status, body) = create_execution(&a, &base);
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (409, Some("IN_PROGRESS")),
        "one run at a time across nodes: {body}"
    );
    complete(&b, &base, &id);
    let (_, history_a) = call(&a, "GET", &format!("{base}/history"), "");
    let (_, history_b) = call(&b, "GET", &format!("{base}/history"), "");
    assert_eq!(history_a, history_b, "the history reads the same from either node");
    assert_eq!(history_a[0]["status"], "completed");
}

/// A node's heartbeat renewed every `HEARTBEAT_EVERY` on a thread of its
/// own, as `serve` renews it, until dropped: a test slowed past
/// `NODE_LEASE` by a busy machine does not see a live node die.
struct Heartbeat(Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>);

impl Heartbeat {
    fn start(store: Arc<PgStore>) -> Heartbeat {
        store.heartbeat().unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT_EVERY) {
                if let Err(e) = store.heartbeat() {
                    eprintln!("heartbeat: {e:#}");
                }
            }
        });
        Heartbeat(Some((stop, thread)))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.0.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

#[test]
fn two_nodes_racing_for_a_thousand_due_schedules_claim_each_occurrence_once() {
    const SCHEDULES: usize = 1000;
    let db = Db::postgres();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let due: chrono::DateTime<chrono::Utc> = "2026-11-02T13:00:00Z".parse().unwrap();
    type Node = (Arc<AssetsService>, Arc<Scheduler>, Arc<Counting>, Heartbeat);
    let nodes: Vec<Node> = ["node-a", "node-b"]
        .into_iter()
        .map(|name| {
            let clock = Arc::new(VirtualClock::new(start));
            let (service, store) = db.open_node(clock.clone(), name, Some(clock));
            let store = store.unwrap();
            // Alive, as each node's heartbeat says, for the whole test:
            // neither takes over the other's deliveries.
            let heartbeat = Heartbeat::start(store.clone());
            let service = Arc::new(service);
            let callbacks = Arc::new(Counting::default());
            let scheduler = Scheduler::new(service.clone())
                .with_callbacks(callbacks.clone())
                .with_peers(name, store);
            (service, Arc::new(scheduler), callbacks, heartbeat)
        })
        .collect();
    let workspace = nodes[0].0.create_workspace();
    for _ in 0..SCHEDULES {
        let id = nodes[0]
            .0
            .create_import_source(&workspace, SourceType::External, None)
            .unwrap();
        let (status, body) = call(
            &nodes[0].0,
            "POST",
            &format!("/jsm/assets/workspace/{workspace}/v1/importsource/{id}/importschedule"),
            r#"{"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
                "callbackUrl": "https://app.example/callback"}"#,
        );
        assert_eq!(status, 201, "{body}");
    }
    // Both at the due instant, then both claim at once, several passes each.
    let barrier = std::sync::Barrier::new(nodes.len());
    let claimed: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|(_, scheduler, _, _)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let mut ids = Vec::new();
                    for _ in 0..3 {
                        let (_, claims) = scheduler.claim_due(due);
                        ids.extend(claims.iter().map(|c| c.occurrence_id().to_owned()));
                        for claim in claims {
                            scheduler.fire(claim);
                        }
                    }
                    ids
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<&String> = claimed.iter().flatten().collect();
    let distinct: std::collections::HashSet<&&String> = all.iter().collect();
    assert_eq!(
        all.len(),
        SCHEDULES,
        "every occurrence claimed, none twice (per node: {:?})",
        claimed.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(distinct.len(), SCHEDULES);
    let sent: usize = nodes.iter().map(|(_, _, c, _)| c.0.load(Ordering::SeqCst)).sum();
    assert_eq!(sent, SCHEDULES, "one callback per occurrence across both nodes");
    let ledger = nodes[1].0.state().ledger().count();
    assert_eq!(ledger, SCHEDULES, "node b's ledger has them all");
}

#[test]
fn a_node_whose_idle_connections_are_cut_carries_on_on_fresh_ones() {
    let db = Db::postgres();
    let Db::Postgres(url) = &db else { unreachable!() };
    let service = db.open();
    let base = source(&service);
    let (status, _) = create_execution(&service, &base);
    assert_eq!(status, 201);
    let id = latest_execution(&service, &base);
    // Every connection to this database dropped while idle, as a restarted
    // server or a network cut would. Nothing was in flight on them, so no
    // call need fail: the first statement on each finds it closed, and the
    // read or the lock is tried again on a fresh connection.
    let name = url.rsplit('/').next().unwrap();
    let mut admin = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap();
    // A backend ends a moment after it is told to: until then a call could
    // still start on it and be cut in flight, which is another test's
    // matter (a change cut mid-way is refused). Wait until they are gone.
    let guard = std::time::Instant::now();
    while admin
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(
            guard.elapsed() < std::time::Duration::from_secs(60),
            "hang guard: the terminated backends never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for n in 0..3 {
        let (status, body) = call(
            &service,
            "POST",
            &format!("{base}/executions/{id}/data"),
            &chunk("z", 4, &format!("c{n}")),
        );
        assert_eq!(status, 200, "chunk {n} after the cut: {body}");
    }
    let (_, state) = call(&service, "GET", &format!("{base}/executions/{id}/status"), "");
    assert_eq!(
        state["objectsReceived"].as_u64(),
        Some(12),
        "every chunk counted: {state}"
    );
}

#[test]
fn a_node_paused_inside_a_state_call_does_not_hold_the_others() {
    // Node a opens a state call and stops there, holding the state's lock
    // idle in its transaction, as a node paused (SIGSTOP) or cut off in the
    // middle of one would. The server ends that transaction after the
    // session's idle time-out (10 s), before node b's change, queued behind
    // it, gives up waiting (`lock_timeout`, 15 s): b's first change goes
    // through. Node a, back, carries on on a fresh connection.
    let db = Db::postgres();
    let (a, _) = db.open_node(Arc::new(SystemClock), "node-a", None);
    let (b, _) = db.open_node(Arc::new(SystemClock), "node-b", None);
    let b = Arc::new(b);
    let held = a.state();
    assert!(held.current().is_ok(), "node a holds the lock");
    let (done, through) = std::sync::mpsc::channel();
    std::thread::spawn({
        let b = b.clone();
        move || {
            let _ = done.send(b.state().current().map(|_| ()));
        }
    });
    let first = through
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("hang guard: node b's change still waits for paused node a");
    assert!(first.is_ok(), "node b's first change gave up: {first:?}");
    drop(held);
    let guard = std::time::Instant::now();
    while a.state().current().is_err() {
        assert!(
            guard.elapsed() < std::time::Duration::from_secs(300),
            "hang guard: node a never recovered"
        );
    }
}

#[test]
fn a_node_holding_the_shared_lock_holds_no_read_on_another() {
    // Node a opens a change and stops inside it, holding the lock every
    // change waits for, as a node paused (SIGSTOP) in the middle of one
    // would; a change on node b waits for it. Node b's reads do not: they
    // answer from what is committed while node a still holds the lock.
    // That they did not wait is told by node a's change committing after
    // them: when reads took the lock, b's first read went through only
    // once the server had ended a's idle transaction (10 s), and a's
    // change was lost.
    let db = Db::postgres();
    let Db::Postgres(url) = &db else { unreachable!() };
    let a = db.open_node(Arc::new(SystemClock), "node-a", None).0;
    let b = Arc::new(db.open_node(Arc::new(SystemClock), "node-b", None).0);
    let base = source(&a);
    let (status, body) = create_execution(&a, &base);
    assert_eq!(status, 201, "{body}");
    let execution = latest_execution(&a, &base);

    let mut held = a.state();
    assert!(held.current().is_ok(), "node a holds the lock");
    held.add_workspace("made-under-the-held-lock".to_owned());
    let waiting = std::thread::spawn({
        let b = b.clone();
        move || b.state().current().is_ok()
    });
    // Node b's change is waiting for node a's lock in the database.
    let mut admin = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let guard = std::time::Instant::now();
    while admin
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(
            guard.elapsed() < std::time::Duration::from_secs(60),
            "hang guard: node b's change never waited for node a's lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    for _ in 0..20 {
        let (status, history) = call(&b, "GET", &format!("{base}/history"), "");
        assert_eq!(status, 200, "{history}");
        assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
        let (status, body) = call(&b, "GET", &format!("{base}/executions/{execution}/status"), "");
        assert_eq!(status, 200, "{body}");
        assert!(
            !b.read().unwrap().workspaces().any(|w| w == "made-under-the-held-lock"),
            "a read sees only what is committed"
        );
    }
    held.commit()
        .expect("node a's change commits: no read on node b waited for it to be ended");
    assert!(waiting.join().unwrap(), "node b's change goes through after node a's");
    assert!(
        b.read().unwrap().workspaces().any(|w| w == "made-under-the-held-lock"),
        "node b reads node a's change once it is committed"
    );
}

#[test]
fn advances_of_the_shared_clock_reserved_at_once_add_up() {
    let db = Db::postgres();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let (_a, a) = db.open_node(clock.clone(), "node-a", Some(clock.clone()));
    let (_b, b) = db.open_node(clock.clone(), "node-b", Some(clock));
    let (a, b) = (a.unwrap(), b.unwrap());
    let hour = chrono::Duration::hours(1);
    // Both asked before either has moved the clock: each ends after the other.
    let first = a.reserve_advance(hour).unwrap();
    let second = b.reserve_advance(hour).unwrap();
    assert_eq!(first, start + hour);
    assert_eq!(second, start + hour + hour, "the second advance adds to the first");
}

#[test]
fn an_advance_that_stopped_short_gives_back_what_it_did_not_run() {
    let db = Db::postgres();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let (_a, a) = db.open_node(clock.clone(), "node-a", Some(clock));
    let a = a.unwrap();
    let (hour, day, days) = (
        chrono::Duration::hours(1),
        chrono::Duration::days(1),
        chrono::Duration::days(4),
    );
    // Four days asked for; the database refused what fell due a day on, so
    // the clock stopped there (the shared clock as stored is still at the
    // start). The next advance of an hour ends an hour after where the
    // clock stopped: not four days and an hour on, nor an hour after the
    // start.
    let end = a.reserve_advance(days).unwrap();
    a.give_back_advance(end, days, start + day).unwrap();
    let next = a.reserve_advance(hour).unwrap();
    assert_eq!(next, start + day + hour);
    // An advance reserved after one that stops short ends past it and runs
    // the rest: giving back the first leaves it as it is.
    let first = a.reserve_advance(days).unwrap();
    let later = a.reserve_advance(hour).unwrap();
    a.give_back_advance(first, days, next).unwrap();
    let after_later = a.reserve_advance(hour).unwrap();
    assert_eq!(after_later, later + hour);
    // One reserved before it, perhaps still running, keeps its part: an
    // advance that stops short before reaching it gives back only its own.
    let before = a.reserve_advance(hour).unwrap();
    let stopping = a.reserve_advance(days).unwrap();
    a.give_back_advance(stopping, days, after_later).unwrap();
    assert_eq!(
        a.reserve_advance(hour).unwrap(),
        before + hour,
        "advances sent at once still add up"
    );
}

/// A source with a DAILY 13:00 UTC schedule from 2026-11-02 that calls
/// back; its API base path.
fn daily_at_13_with_a_callback(service: &AssetsService) -> String {
    let base = source(service);
    let (status, body) = call(
        service,
        "POST",
        &format!("{base}/importschedule"),
        r#"{"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
            "callbackUrl": "https://app.example/callback"}"#,
    );
    assert_eq!(status, 201, "{body}");
    base
}

/// Records the attempt of every callback it is asked to deliver.
#[derive(Default)]
struct Attempts(std::sync::Mutex<Vec<(String, u32)>>);

impl assets_platform::scheduler::Callbacks for Attempts {
    fn call(
        &self,
        _source: &assets_platform::assets::ImportSource,
        _url: &str,
        event: &assets_runtime::bindings::import_callback::TriggerEvent,
    ) -> Result<Option<assets_platform::trigger::TriggerOutcome>, String> {
        self.0
            .lock()
            .unwrap()
            .push((event.occurrence_id.clone(), event.attempt));
        Ok(None)
    }
}

#[test]
fn a_read_that_fails_leaves_no_transaction_open_for_the_next_user_of_its_connection() {
    // A read fails inside its snapshot (a row it cannot decode); its
    // connection goes back to the node's pool. Before, it went back inside
    // the read-only transaction, so the node's next write on it — the
    // heartbeat — failed, and every use after it ("transaction is aborted").
    let db = Db::postgres();
    let Db::Postgres(url) = &db else { unreachable!() };
    let (a, store) = db.open_node(Arc::new(SystemClock), "node-a", None);
    let store = store.unwrap();
    let base = source(&a);
    let mut hand = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    hand.batch_execute(
        "UPDATE sources SET body = 'not json', rev = (SELECT rev + 1 FROM meta); UPDATE meta SET rev = rev + 1",
    )
    .unwrap();
    let (status, body) = call(&a, "GET", &format!("{base}/history"), "");
    assert_eq!(status, 503, "{body}");
    for _ in 0..3 {
        store.heartbeat().expect("the node's next writes go through");
    }
    let open: i64 = hand
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "no connection is left inside a transaction");
}

#[test]
fn a_change_refused_for_want_of_the_lock_leaves_nothing_in_the_cache() {
    // The change cannot lock the shared state, so it is made on a cache
    // that may be behind and refused (503); what it changed in memory must
    // go with it. Before, the execution it created stayed in the node's
    // cache: the node's reads showed it and its next create was refused as
    // in progress, though the database never had it.
    let db = Db::postgres();
    let Db::Postgres(url) = &db else { unreachable!() };
    let (inner, state) = PgStore::open(url, "node-a", None).unwrap();
    let store = Arc::new(Faulty::new(Arc::new(inner)));
    let service = AssetsService::new(Arc::new(SystemClock)).with_store(store.clone(), state);
    let base = source(&service);

    store.refuse_lock.store(true, Ordering::SeqCst);
    let (status, body) = create_execution(&service, &base);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorCode"], "STATE_NOT_SAVED", "{body}");
    let (status, history) = call(&service, "GET", &format!("{base}/history"), "");
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(0),
        "nothing of it is read: {history}"
    );
    let (status, body) = create_execution(&service, &base);
    assert_eq!(status, 201, "the refused execution is not in the way: {body}");
}

/// The inner store with faults to arm, each for the next call only:
/// `lose_answer`, a save that is stored but answered with an error (a
/// COMMIT whose answer the network lost); `refuse_lock`, a `lock` that
/// fails (a wait for another node's change past `lock_timeout`).
struct Faulty {
    inner: Arc<dyn assets_platform::assets::StateStore>,
    lose_answer: std::sync::atomic::AtomicBool,
    refuse_lock: std::sync::atomic::AtomicBool,
}

impl Faulty {
    fn new(inner: Arc<dyn assets_platform::assets::StateStore>) -> Faulty {
        Faulty {
            inner,
            lose_answer: std::sync::atomic::AtomicBool::new(false),
            refuse_lock: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl assets_platform::assets::StateStore for Faulty {
    fn save(
        &self,
        state: &assets_platform::assets::State,
        changes: assets_platform::assets::Changes,
    ) -> anyhow::Result<()> {
        self.inner.save(state, changes)?;
        if self.lose_answer.swap(false, Ordering::SeqCst) {
            anyhow::bail!("connection reset while committing (simulated): the answer was lost, the write was not");
        }
        Ok(())
    }

    fn load(&self) -> anyhow::Result<assets_platform::assets::State> {
        self.inner.load()
    }

    fn lock(&self) -> anyhow::Result<()> {
        if self.refuse_lock.swap(false, Ordering::SeqCst) {
            anyhow::bail!("canceling statement due to lock timeout (simulated)");
        }
        self.inner.lock()
    }

    fn begin(&self, state: &mut assets_platform::assets::State) -> anyhow::Result<()> {
        self.inner.begin(state)
    }

    fn refresh(&self, state: &mut assets_platform::assets::State) -> anyhow::Result<()> {
        self.inner.refresh(state)
    }

    fn discard(&self, state: &mut assets_platform::assets::State) {
        self.inner.discard(state)
    }

    fn journal(&self, after: i64, limit: usize) -> anyhow::Result<assets_platform::assets::journal::JournalPage> {
        self.inner.journal(after, limit)
    }

    fn release(&self) {
        self.inner.release()
    }
}

fn a_claim_whose_commit_answer_was_lost_is_delivered_on_the_next_pass(db: Db) {
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let (inner, state): (Arc<dyn assets_platform::assets::StateStore>, _) = match &db {
        Db::Sqlite(path) => {
            let (store, state) = SqliteStore::open(path).unwrap();
            (Arc::new(store), state)
        }
        Db::Postgres(url) => {
            let (store, state) = PgStore::open(url, "node-a", Some(clock.clone())).unwrap();
            (Arc::new(store), state)
        }
    };
    let store = Arc::new(Faulty::new(inner));
    let service = Arc::new(AssetsService::new(clock.clone()).with_store(store.clone(), state));
    let base = source(&service);
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/importschedule"),
        r#"{"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
            "callbackUrl": "https://app.example/callback"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let callbacks = Arc::new(Attempts::default());
    let scheduler = Scheduler::new(service.clone()).with_callbacks(callbacks.clone());

    // The claim is stored, but its commit is answered with an error: the
    // scheduler takes it as not stored and sends nothing.
    store.lose_answer.store(true, Ordering::SeqCst);
    clock.set("2026-11-02T13:00:00Z".parse().unwrap());
    assert!(scheduler.run_due().is_empty());
    assert!(
        callbacks.0.lock().unwrap().is_empty(),
        "nothing sent on an unsure claim"
    );
    let stored = service.state().ledger().cloned().collect::<Vec<_>>();
    assert_eq!(stored.len(), 1, "the claim was stored all the same: {stored:?}");

    // The next pass finds a claim in this scheduler's name that it never
    // fired: it delivers it (the next attempt), rather than wait out its
    // lease and fail it as "accepted, no execution".
    clock.set("2026-11-02T13:01:00Z".parse().unwrap());
    let firings = scheduler.run_due();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(
        *callbacks.0.lock().unwrap(),
        vec![(stored[0].occurrence_id.clone(), 2)],
        "delivered on the next pass"
    );
}

#[test]
fn a_dead_nodes_delivery_is_delivered_again_by_another_node_with_the_next_attempt() {
    let db = Db::postgres();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let due: chrono::DateTime<chrono::Utc> = "2026-11-02T13:00:00Z".parse().unwrap();
    let node = |name: &str| {
        let clock = Arc::new(VirtualClock::new(start));
        let (service, store) = db.open_node(clock.clone(), name, Some(clock));
        let store = store.unwrap();
        let heartbeat = Heartbeat::start(store.clone());
        let service = Arc::new(service);
        let callbacks = Arc::new(Attempts::default());
        let scheduler = Scheduler::new(service.clone())
            .with_callbacks(callbacks.clone())
            .with_peers(name, store.clone());
        (service, scheduler, callbacks, (store, heartbeat))
    };
    let (a, a_scheduler, _, a_store) = node("node-a");
    let (_b, b_scheduler, b_callbacks, _b_store) = node("node-b");
    daily_at_13_with_a_callback(&a);

    // Node a claims the occurrence, then dies before delivering it.
    let (_, claimed) = a_scheduler.claim_due(due);
    assert_eq!(claimed.len(), 1);
    let occurrence = claimed[0].occurrence_id().to_owned();
    drop(claimed);
    let (_, taken) = b_scheduler.claim_due(due);
    assert!(taken.is_empty(), "node a still holds its lease: not taken over");

    // Its heartbeat stops and its lease runs out in database time: the row
    // says so at once, as `NODE_LEASE` of silence would (no waiting on the
    // wall clock). Node b's next claim takes the delivery over.
    drop(a_store); // the store and its heartbeat thread
    let Db::Postgres(url) = &db else { unreachable!() };
    let mut sql = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let lapsed = sql
        .execute(
            "UPDATE nodes SET alive_until = now() - interval '1 second' WHERE id = 'node-a'",
            &[],
        )
        .unwrap();
    assert_eq!(lapsed, 1, "node a's heartbeat row");
    let (_, taken) = b_scheduler.claim_due(due);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].occurrence_id(), occurrence, "the same occurrence id");
    for claim in taken {
        b_scheduler.fire(claim);
    }
    assert_eq!(
        *b_callbacks.0.lock().unwrap(),
        vec![(occurrence.clone(), 2)],
        "delivered again by node b as attempt 2"
    );
    let entry = a.state().occurrence(&occurrence).cloned().unwrap();
    assert_eq!((entry.attempt, entry.lease_owner.as_deref()), (2, Some("node-b")));
}

/// A node's own clock, running fast.
struct Fast(chrono::Duration);

impl Clock for Fast {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.0
    }
    fn sleep(&self, by: std::time::Duration) {
        std::thread::sleep(by);
    }
}

#[test]
fn a_node_whose_clock_runs_an_hour_fast_claims_nothing_early() {
    // Finding 7: due-ness, leases and timestamps on each node's own clock.
    // A node whose clock runs an hour fast follows the database's time
    // (the test's database runs on this machine's clock), so a schedule
    // due in 30 minutes is not due for it, and what it records carries
    // the database's time.
    let db = Db::postgres();
    let Db::Postgres(url) = &db else { unreachable!() };
    let fast: Arc<dyn Clock> = Arc::new(Fast(chrono::Duration::hours(1)));
    let (store, state) = PgStore::open(url, "node-fast", None).unwrap();
    let store = Arc::new(store);
    let clock = DatabaseClock::new(fast.clone(), store.time_sample(fast.as_ref()).unwrap());
    let service = Arc::new(AssetsService::new(Arc::new(clock)).with_store(store.clone(), state));
    let told = service.clock().now();
    let drift = (told - chrono::Utc::now()).num_seconds().abs();
    assert!(drift <= 2, "the node tells the database's time, {told} ({drift} s off)");

    // The schedule made on a node whose clock is right.
    let right = db.open_node(Arc::new(SystemClock), "node-right", None).0;
    let base = source(&right);
    let due = (chrono::Utc::now() + chrono::Duration::minutes(30)).format("%Y-%m-%dT%H:%M:%SZ");
    let (status, body) = call(
        &right,
        "POST",
        &format!("{base}/importschedule"),
        &format!(
            r#"{{"runFrequency": "DAILY", "startTime": "{due}", "timezone": "UTC",
                "callbackUrl": "https://app.example/callback"}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    let callbacks = Arc::new(Attempts::default());
    let scheduler = Scheduler::new(service.clone())
        .with_callbacks(callbacks.clone())
        .with_peers("node-fast", store.clone());
    let (firings, claimed) = scheduler.claim_due(service.clock().now());
    assert!(
        firings.is_empty() && claimed.is_empty(),
        "due at {due}, nothing is due yet: {firings:?}"
    );
    assert_eq!(service.read().unwrap().ledger().count(), 0, "nothing in the ledger");

    // An execution made now is stamped with the database's time.
    let (status, created) = create_execution(&service, &base);
    assert_eq!(status, 201, "{created}");
    let id = latest_execution(&service, &base);
    let (_, execution) = call(&service, "GET", &format!("{base}/executions/{id}/status"), "");
    let started: chrono::DateTime<chrono::Utc> = execution["startedAt"]
        .as_str()
        .unwrap_or_else(|| panic!("no start time in {execution}"))
        .parse()
        .unwrap();
    let drift = (started - chrono::Utc::now()).num_seconds().abs();
    assert!(drift <= 2, "started {started}, {drift} s from the database's time");
}

#[test]
fn a_node_whose_clock_runs_an_hour_fast_finds_a_live_runs_heartbeat_live() {
    // Finding 7: run heartbeats stamped by one node's clock and read by
    // another's. Node r delivers a run and beats for it; node f, whose own
    // clock runs an hour fast, passes two days later on the shared virtual
    // clock, far past the run limit. Both tell real time by the database's
    // clock, so f sees the heartbeat live: nothing is taken over or failed.
    let db = Db::postgres();
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse().unwrap();
    let due: chrono::DateTime<chrono::Utc> = "2026-11-02T13:00:00Z".parse().unwrap();
    let node = |name: &str, own: Arc<dyn Clock>| {
        let clock = Arc::new(VirtualClock::new(start));
        let (service, store) = db.open_node(clock.clone(), name, Some(clock));
        let store = store.unwrap();
        let wall = DatabaseClock::new(own.clone(), store.time_sample(own.as_ref()).unwrap());
        let service = Arc::new(service.with_wall_clock(Arc::new(wall)));
        let beat = Heartbeat::start(store.clone());
        let callbacks = Arc::new(Attempts::default());
        let scheduler = Scheduler::new(service.clone())
            .with_callbacks(callbacks.clone())
            .with_peers(name, store.clone());
        (service, scheduler, (store, beat))
    };
    let (r, r_scheduler, _r_store) = node("node-r", Arc::new(SystemClock));
    let (f, f_scheduler, _f_store) = node("node-f", Arc::new(Fast(chrono::Duration::hours(1))));
    let base = daily_at_13_with_a_callback(&r);
    let (_, claimed) = r_scheduler.claim_due(due);
    assert_eq!(claimed.len(), 1);
    let fence = assets_platform::assets::ledger::Fence {
        occurrence_id: claimed[0].occurrence_id().to_owned(),
        attempt: 1,
    };
    for claim in claimed {
        r_scheduler.fire(claim);
    }
    let delivery = assets_platform::assets::Delivery::new(fence.occurrence_id.clone(), fence.attempt);
    let answer = r.handle_for(
        "POST",
        &format!("{base}/executions"),
        None,
        br#"{"scheduled": true}"#,
        Some(&delivery),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    let execution = latest_execution(&r, &base);
    let _run = assets_platform::scheduler::Heartbeat::start(r.clone(), fence.clone());
    let guard = std::time::Instant::now();
    while !r
        .read()
        .unwrap()
        .occurrence(&fence.occurrence_id)
        .unwrap()
        .alive_at(chrono::Utc::now())
    {
        assert!(
            guard.elapsed() < std::time::Duration::from_secs(60),
            "hang guard: no first beat"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let (firings, taken) = f_scheduler.claim_due(due + chrono::Duration::days(2));
    let taken: Vec<&str> = taken.iter().map(|c| c.occurrence_id()).collect();
    assert!(taken.is_empty(), "a live run taken over: {taken:?}");
    let last = firings.last().expect("the days after");
    assert!(
        last.status == assets_platform::scheduler::FiringStatus::Skipped
            && last.reason.as_deref().unwrap_or_default().contains(&execution),
        "the last day after skipped while the run goes on: {firings:?}"
    );
    let entry = f.read().unwrap().occurrence(&fence.occurrence_id).cloned().unwrap();
    assert_eq!(
        (entry.attempt, entry.state),
        (1, assets_platform::assets::ledger::OccurrenceState::Delivering)
    );
    let (_, state) = call(&f, "GET", &format!("{base}/executions/{execution}/status"), "");
    assert_eq!(state["status"], "INGESTING", "{state}");
}

#[test]
fn a_database_restored_to_an_earlier_revision_is_read_again_whole() {
    // The database goes back in time (a backup restored, a failover to a
    // replica that lagged): its revision is behind what a node has read.
    // The node's cache is then ahead of the truth; it must not answer from
    // it, nor take it for up to date.
    let Restored { db, a, kept, lost, .. } = restored();

    let (status, body) = call(&a, "GET", &lost, "");
    assert_eq!(status, 404, "a read answers from the restored database: {body}");
    let (status, body) = call(&a, "GET", &kept, "");
    assert_eq!(status, 200, "{body}");
    // A change reads it whole too, and what it stores is on top of the
    // restored state.
    let (status, body) = create_execution(&a, &kept);
    assert_eq!(status, 201, "{body}");
    let b = db.open_node(Arc::new(SystemClock), "node-b", None).0;
    let (status, _) = call(&b, "GET", &lost, "");
    assert_eq!(status, 404, "not written back by node a's change");
    let id = latest_execution(&b, &kept);
    let (status, _) = call(&b, "GET", &format!("{kept}/executions/{id}/status"), "");
    assert_eq!(status, 200);
}

/// A database node a wrote two sources to, restored to a backup taken
/// between the two.
struct Restored {
    db: Db,
    /// Node a, its cache as it was before the restore.
    a: AssetsService,
    /// The source made before the backup.
    kept: String,
    /// The source made after it, which the restore lost.
    lost: String,
    sql: ::postgres::Client,
    /// The revision node a had read.
    read: i64,
}

fn restored() -> Restored {
    let db = Db::postgres();
    let Db::Postgres(url) = &db else { unreachable!() };
    let a = db.open_node(Arc::new(SystemClock), "node-a", None).0;
    let kept = source(&a);
    let mut sql = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let backup: i64 = sql.query_one("SELECT rev FROM meta", &[]).unwrap().get(0);
    let lost = source(&a);
    let (status, _) = call(&a, "GET", &lost, "");
    assert_eq!(status, 200, "node a made it and reads it");
    let read: i64 = sql.query_one("SELECT rev FROM meta", &[]).unwrap().get(0);
    restore(&mut sql, backup);
    Restored {
        db,
        a,
        kept,
        lost,
        sql,
        read,
    }
}

/// Takes the database back to revision `backup`, as restoring a backup
/// made then would: every row written after it gone (the revisions' tokens
/// too), the revision back where it was.
fn restore(sql: &mut ::postgres::Client, backup: i64) {
    let tables: Vec<String> = sql
        .query(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'rev' AND table_schema = 'public' AND table_name <> 'meta'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.iter().any(|t| t == "sources"), "{tables:?}");
    for table in tables {
        sql.execute(&format!("DELETE FROM {table} WHERE rev > $1"), &[&backup])
            .unwrap();
    }
    sql.execute("UPDATE meta SET rev = $1", &[&backup]).unwrap();
}

#[test]
fn a_database_restored_then_written_past_what_a_node_read_is_read_again_whole() {
    // The database goes back, then other nodes write to it until its
    // revision is past the one node a read: by the revision alone, a would
    // take the database for its own history gone on, keep what the restore
    // lost and miss what was written in the revisions it had read.
    let Restored {
        db,
        a,
        kept,
        lost,
        mut sql,
        read,
    } = restored();

    // Node b, started on the restored database, makes a source and then
    // changes on until the revision is past the one node a read.
    let b = db.open_node(Arc::new(SystemClock), "node-b", None).0;
    let made_after = source(&b);
    while sql.query_one("SELECT rev FROM meta", &[]).unwrap().get::<_, i64>(0) <= read {
        let (status, body) = create_execution(&b, &kept);
        assert_eq!(status, 201, "{body}");
        complete(&b, &kept, &latest_execution(&b, &kept));
    }

    let (status, body) = call(&a, "GET", &lost, "");
    assert_eq!(status, 404, "a read answers from the restored database: {body}");
    let (status, body) = call(&a, "GET", &made_after, "");
    assert_eq!(status, 200, "and sees what was written after the restore: {body}");
    // A change on node a too.
    let (status, body) = create_execution(&a, &made_after);
    assert_eq!(status, 201, "{body}");
    let (status, _) = call(&b, "GET", &lost, "");
    assert_eq!(status, 404, "not written back by node a's change");
}
