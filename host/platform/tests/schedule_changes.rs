//! What a schedule change owes the ledger and the history (issue 24,
//! finding 8): nothing that fell due leaves without a line, and a schedule
//! never says it will run what it will not.
//!
//! - A `ONCE` schedule that already ran, changed in a way that keeps its one
//!   instant (its time zone, even with `isActive: true`), answers
//!   `isActive: false` and no next run: that occurrence has ended and does
//!   not run again.
//! - Deleting a schedule records what fell due and was not started: skipped
//!   while it was paused, missed while it was active.

use assets_platform::assets::{AssetsService, HistoryEntry, ImportSource, Outcome, SourceType};
use assets_platform::clock::VirtualClock;
use assets_platform::scheduler::{Callbacks, FiringStatus, Scheduler};
use assets_platform::trigger::TriggerOutcome;
use assets_runtime::bindings::import_callback::TriggerEvent;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

/// A callback the app accepts.
struct Accepting;

impl Callbacks for Accepting {
    fn call(&self, _: &ImportSource, _: &str, _: &TriggerEvent) -> Result<Option<TriggerOutcome>, String> {
        Ok(None)
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

struct World {
    clock: Arc<VirtualClock>,
    service: Arc<AssetsService>,
    source: String,
    base: String,
    scheduler: Scheduler,
}

impl World {
    fn new(now: &str) -> World {
        let clock = Arc::new(VirtualClock::new(t(now)));
        let service = Arc::new(AssetsService::new(clock.clone()));
        let workspace = service.create_workspace();
        let source = service
            .create_import_source(&workspace, SourceType::External, Some("app".into()))
            .unwrap();
        let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}/importschedule");
        let scheduler = Scheduler::new(service.clone()).with_callbacks(Arc::new(Accepting));
        World {
            clock,
            service,
            source,
            base,
            scheduler,
        }
    }

    fn call(&self, method: &str, rest: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let answer = self
            .service
            .handle(method, &format!("{}{rest}", self.base), body.as_bytes());
        (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null))
    }

    fn create(&self, body: Value) -> String {
        let (status, body) = self.call("POST", "", body);
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.service.history(&self.source).unwrap()
    }
}

#[test]
fn a_once_schedule_that_ran_says_it_will_not_run_again_whatever_a_put_changes_but_its_instant() {
    let world = World::new("2026-11-02T12:00:00Z");
    let id = world.create(json!({"runFrequency": "ONCE", "startTime": "2026-11-02T12:30:00Z",
        "timezone": "UTC", "callbackUrl": "https://app.example/callback"}));
    let fired = world
        .scheduler
        .run_until(&world.clock, t("2026-11-02T12:40:00Z"))
        .expect("every pass stored");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].status, FiringStatus::Delivered, "{fired:?}");

    // A new zone, then a new zone with `isActive: true` (a client that
    // sends the schedule back whole, or means to run it again): the same
    // instant, so the same occurrence, which has run.
    for change in [
        json!({"timezone": "Europe/Paris"}),
        json!({"timezone": "Asia/Tokyo", "isActive": true}),
    ] {
        let (status, body) = world.call("PUT", &format!("/{id}"), change.clone());
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["isActive"], false, "its one run has happened ({change}): {body}");
        assert!(body["nextRunTime"].is_null(), "{change}: {body}");
        let (_, read) = world.call("GET", &format!("/{id}"), Value::Null);
        assert_eq!(
            (read["isActive"].clone(), read["nextRunTime"].clone()),
            (json!(false), Value::Null),
            "{read}"
        );
    }
    let later = world
        .scheduler
        .run_until(&world.clock, t("2026-11-03T12:40:00Z"))
        .expect("every pass stored");
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn deleting_a_paused_schedule_records_what_fell_due_while_it_was_paused() {
    let world = World::new("2026-11-02T12:00:00Z");
    let id = world.create(json!({"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z",
        "timezone": "UTC", "callbackUrl": "https://app.example/callback"}));
    let (status, body) = world.call("PUT", &format!("/{id}"), json!({"isActive": false}));
    assert_eq!(status, 200, "{body}");
    world
        .scheduler
        .run_until(&world.clock, t("2026-11-04T14:00:00Z"))
        .expect("every pass stored");
    let (status, body) = world.call("DELETE", &format!("/{id}"), Value::Null);
    assert_eq!(status, 200, "{body}");
    let lines: Vec<(Outcome, String)> = world
        .history()
        .into_iter()
        .map(|l| (l.status, l.failure_reason.unwrap_or_default()))
        .collect();
    assert_eq!(lines.len(), 3, "the three days that fell due while paused: {lines:?}");
    assert!(
        lines
            .iter()
            .all(|(status, reason)| *status == Outcome::Skipped && reason.contains("paused")),
        "{lines:?}"
    );
    let ledger = world.service.state().ledger().count();
    assert_eq!(ledger, 3, "each has its ledger entry");
}

#[test]
fn deleting_an_active_schedule_records_what_fell_due_and_was_not_started() {
    let world = World::new("2026-11-02T12:00:00Z");
    let id = world.create(json!({"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z",
        "timezone": "UTC", "callbackUrl": "https://app.example/callback"}));
    // The clock moves on with no scheduler pass (the scheduler was down).
    world.clock.set(t("2026-11-03T14:00:00Z"));
    let (status, body) = world.call("DELETE", &format!("/{id}"), Value::Null);
    assert_eq!(status, 200, "{body}");
    let lines: Vec<(Outcome, String)> = world
        .history()
        .into_iter()
        .map(|l| (l.status, l.failure_reason.unwrap_or_default()))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|(status, reason)| *status == Outcome::Missed && reason.contains("deleted")),
        "{lines:?}"
    );
}
