//! The reaper fails a run only when it is abandoned.
//!
//! An app's callback is accepted and its execution goes on (serve mode's
//! forge profile answers 202 and keeps invoking the app); a virtual clock
//! then jumps days ahead, far past the run limit. A run whose heartbeat is
//! live is still being invoked: it is never failed, and the next runs are
//! skipped while it goes on. Once its heartbeat lapses (its node died) it
//! is delivered again within the catch-up window, and failed saying so
//! past it. A manual run belongs to no occurrence: no scheduled delivery
//! fails it.

use assets_platform::assets::ledger::{Fence, OccurrenceState};
use assets_platform::assets::{AssetsService, Delivery, ExecutionStatus, ImportSource, Outcome, SourceType};
use assets_platform::clock::VirtualClock;
use assets_platform::scheduler::{Callbacks, FiringStatus, Heartbeat, Scheduler};
use assets_platform::trigger::TriggerOutcome;
use assets_runtime::bindings::import_callback::TriggerEvent;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A callback the app accepts (it reports through the API later).
#[derive(Default)]
struct Accepting(Mutex<Vec<TriggerEvent>>);

impl Callbacks for Accepting {
    fn call(&self, _: &ImportSource, _: &str, event: &TriggerEvent) -> Result<Option<TriggerOutcome>, String> {
        self.0.lock().unwrap().push(event.clone());
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
    accepted: Arc<Accepting>,
}

impl World {
    fn new() -> World {
        let clock = Arc::new(VirtualClock::new(t("2026-11-02T12:00:00Z")));
        let service = Arc::new(AssetsService::new(clock.clone()));
        let workspace = service.create_workspace();
        let source = service
            .create_import_source(&workspace, SourceType::External, Some("app".into()))
            .unwrap();
        let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}");
        let accepted = Arc::new(Accepting::default());
        let scheduler = Scheduler::new(service.clone()).with_callbacks(accepted.clone());
        World {
            clock,
            service,
            source,
            base,
            scheduler,
            accepted,
        }
    }

    fn call(&self, method: &str, rest: &str, body: &Value) -> (u16, Value) {
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

    fn schedule_daily_at_13(&self) {
        let (status, body) = self.call(
            "POST",
            "/importschedule",
            &json!({"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
                    "callbackUrl": "https://app.example/callback"}),
        );
        assert_eq!(status, 201, "{body}");
    }

    /// Creates an execution, as the app of `delivery` when there is one
    /// (the platform says so beside the call), and returns its id.
    fn create(&self, body: Value, delivery: Option<Delivery>) -> String {
        let path = format!("{}/executions", self.base);
        let answer = self
            .service
            .handle_for("POST", &path, None, body.to_string().as_bytes(), delivery.as_ref());
        let (status, body) = (
            answer.status,
            serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::Null),
        );
        assert_eq!(status, 201, "{body}");
        body["links"]["cancel"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    }

    /// Delivers the first day's run (13:00) and creates its execution as
    /// its delivery; the occurrence's fence and the execution.
    fn first_run_started(&self) -> (Fence, String) {
        self.scheduler
            .run_until(&self.clock, t("2026-11-02T13:00:00Z"))
            .expect("every pass stored");
        let event = self.accepted.0.lock().unwrap()[0].clone();
        let execution = self.create(
            json!({"scheduled": true}),
            Some(Delivery::new(event.occurrence_id.clone(), event.attempt)),
        );
        let fence = Fence {
            occurrence_id: event.occurrence_id,
            attempt: event.attempt,
        };
        (fence, execution)
    }

    fn status(&self, execution: &str) -> ExecutionStatus {
        self.service.state().execution_by_id(execution).unwrap().status
    }

    fn occurrence_state(&self, occurrence: &str) -> (OccurrenceState, Option<String>) {
        let entry = self.service.state().occurrence(occurrence).cloned().unwrap();
        (entry.state, entry.reason)
    }
}

#[test]
fn a_run_whose_heartbeat_is_live_is_never_failed_however_far_the_clock_moves() {
    let world = World::new();
    world.schedule_daily_at_13();
    let fired = world
        .scheduler
        .run_until(&world.clock, t("2026-11-02T13:00:00Z"))
        .expect("every pass stored");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].status, FiringStatus::Delivered, "{fired:?}");
    let event = world.accepted.0.lock().unwrap()[0].clone();
    let fence = Fence {
        occurrence_id: event.occurrence_id.clone(),
        attempt: event.attempt,
    };
    let execution = world.create(
        json!({"scheduled": true}),
        Some(Delivery::new(event.occurrence_id.clone(), event.attempt)),
    );

    // The app is being invoked: its node beats for it.
    let heartbeat = Heartbeat::start(world.service.clone(), fence.clone());
    let guard = Instant::now();
    while !world
        .service
        .state()
        .occurrence(&fence.occurrence_id)
        .unwrap()
        .alive_at(Utc::now())
    {
        assert!(
            guard.elapsed() < Duration::from_secs(300),
            "hang guard: no first heartbeat"
        );
        std::thread::yield_now();
    }
    // Two days later, far past the run limit (15 min) and its grace.
    let later = world
        .scheduler
        .run_until(&world.clock, t("2026-11-04T13:30:00Z"))
        .expect("every pass stored");
    let statuses: Vec<FiringStatus> = later.iter().map(|f| f.status).collect();
    assert_eq!(statuses, [FiringStatus::Skipped, FiringStatus::Skipped], "{later:?}");
    assert_eq!(
        world.status(&execution),
        ExecutionStatus::Ingesting,
        "a run still being invoked is not failed: {:?}",
        world.service.history(&world.source).unwrap()
    );
    assert_eq!(
        world.occurrence_state(&fence.occurrence_id).0,
        OccurrenceState::Delivering
    );
    drop(heartbeat);

    // Its node stopped beating (it died with the app): once the heartbeat
    // has lapsed, the next pass settles it. Two days late, it is past the
    // catch-up window: failed, saying so, and the next run goes ahead.
    world
        .service
        .state()
        .renew_occurrence(&fence, Utc::now() - chrono::Duration::seconds(1))
        .unwrap();
    let last = world
        .scheduler
        .run_until(&world.clock, t("2026-11-05T13:30:00Z"))
        .expect("every pass stored");
    let statuses: Vec<FiringStatus> = last.iter().map(|f| f.status).collect();
    assert_eq!(statuses, [FiringStatus::Failed, FiringStatus::Delivered], "{last:?}");
    assert_eq!(world.status(&execution), ExecutionStatus::Failed);
    let (state, reason) = world.occurrence_state(&fence.occurrence_id);
    assert_eq!(state, OccurrenceState::Failed);
    assert!(
        reason
            .as_deref()
            .unwrap_or_default()
            .contains("beyond the 1 h catch-up window"),
        "{reason:?}"
    );
}

#[test]
fn a_run_whose_heartbeat_lapsed_within_the_catch_up_window_is_delivered_again() {
    let world = World::new();
    world.schedule_daily_at_13();
    let (fence, execution) = world.first_run_started();
    // Its node beat once, then died.
    world
        .service
        .state()
        .renew_occurrence(&fence, Utc::now() - chrono::Duration::seconds(1))
        .unwrap();
    let again = world
        .scheduler
        .run_until(&world.clock, t("2026-11-02T13:10:00Z"))
        .expect("every pass stored");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].status, FiringStatus::Delivered, "{again:?}");
    let sent = world.accepted.0.lock().unwrap().clone();
    assert_eq!(
        sent.iter()
            .map(|e| (e.occurrence_id.as_str(), e.attempt))
            .collect::<Vec<_>>(),
        [(fence.occurrence_id.as_str(), 1), (fence.occurrence_id.as_str(), 2)],
        "delivered again, the next attempt"
    );
    assert_eq!(
        world.status(&execution),
        ExecutionStatus::Ingesting,
        "left for the app to go on"
    );
    let entry = world.service.state().occurrence(&fence.occurrence_id).cloned().unwrap();
    assert_eq!(
        (entry.state, entry.attempt, entry.execution_id.as_deref()),
        (OccurrenceState::Delivering, 2, Some(execution.as_str()))
    );
}

#[test]
fn a_heartbeat_stops_once_its_attempt_no_longer_holds_the_occurrence() {
    let world = World::new();
    world.schedule_daily_at_13();
    world
        .scheduler
        .run_until(&world.clock, t("2026-11-02T13:00:00Z"))
        .expect("every pass stored");
    let event = world.accepted.0.lock().unwrap()[0].clone();
    let stale = Fence {
        occurrence_id: event.occurrence_id.clone(),
        attempt: event.attempt + 1,
    };
    // An attempt that does not hold the occurrence beats once, is refused,
    // and stops: dropping it returns.
    drop(Heartbeat::start(world.service.clone(), stale));
    let entry = world.service.state().occurrence(&event.occurrence_id).cloned().unwrap();
    assert_eq!(
        entry.alive_until, None,
        "a stale attempt's beat wrote nothing: {entry:?}"
    );
}

#[test]
fn a_scheduled_delivery_never_fails_a_manual_run() {
    let world = World::new();
    let manual = world.create(json!({}), None);
    world.schedule_daily_at_13();
    let fired = world
        .scheduler
        .run_until(&world.clock, t("2026-11-04T13:30:00Z"))
        .expect("every pass stored");
    let statuses: Vec<FiringStatus> = fired.iter().map(|f| f.status).collect();
    assert_eq!(
        statuses,
        [FiringStatus::Skipped, FiringStatus::Skipped, FiringStatus::Skipped],
        "{fired:?}"
    );
    assert_eq!(world.status(&manual), ExecutionStatus::Ingesting);
    let reason = fired[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("manual execution {manual}")) && reason.contains("cancel it"),
        "the skip says what holds the source and what to do: {reason}"
    );
    let lines = world.service.history(&world.source).unwrap();
    assert!(
        lines.iter().all(|line| line.status != Outcome::Failed),
        "nothing failed: {lines:?}"
    );
}

#[test]
fn the_reaper_fails_only_the_run_it_decided_on_and_only_while_its_heartbeat_has_lapsed() {
    // The reaper decides on a read and writes under a later lock; in
    // between, on any node, the run may beat again, end, or give its
    // source to another run. `AssetsService::reap` checks again where the
    // write is made, so none of those is failed in its place.
    let world = World::new();
    world.schedule_daily_at_13();
    let (fence, scheduled) = world.first_run_started();
    let reap = |execution: &str| {
        world
            .service
            .reap(&world.source, execution, "left ingesting (test)", "node-x", Utc::now())
    };

    // It beat again after the decision: still being invoked.
    world
        .service
        .state()
        .renew_occurrence(&fence, Utc::now() + chrono::Duration::seconds(60))
        .unwrap();
    assert!(!reap(&scheduled), "a run whose heartbeat is live");
    assert_eq!(world.status(&scheduled), ExecutionStatus::Ingesting);

    // It ended, and a manual run took the source: neither is failed.
    let (status, body) = world.call(
        "POST",
        &format!("/executions/{scheduled}/history/completed"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{body}");
    let manual = world.create(json!({}), None);
    assert!(!reap(&scheduled), "a run that ended");
    assert!(!reap(&manual), "a manual run");
    assert_eq!(world.status(&manual), ExecutionStatus::Ingesting);
    assert_ne!(world.status(&scheduled), ExecutionStatus::Failed);
}
