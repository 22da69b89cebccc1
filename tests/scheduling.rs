//! The scheduling service with the real component: a virtual clock moves
//! time, the scheduler fires the importer on each occurrence.

mod common;

use assets_platform::assets::{AssetsService, Outcome, SourceType};
use assets_platform::clock::VirtualClock;
use assets_platform::scheduler::{FiringStatus, Scheduler};
use assets_platform::source::SyntheticSource;
use assets_platform::trigger::App;
use chrono::{DateTime, Timelike, Utc};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// The real importer over 20 synthetic objects.
fn importer() -> App {
    App::new(
        "importer",
        common::runtime(),
        Arc::new(SyntheticSource {
            objects: 20,
            ..Default::default()
        }),
    )
}

struct Sim {
    clock: Arc<VirtualClock>,
    assets: Arc<AssetsService>,
    scheduler: Scheduler,
    workspace: String,
    source_id: String,
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

impl Sim {
    fn new(now: &str, source_type: SourceType) -> Sim {
        let clock = Arc::new(VirtualClock::new(t(now)));
        let assets = Arc::new(AssetsService::new(clock.clone()));
        let workspace = assets.create_workspace();
        let source_id = assets.create_import_source(&workspace, source_type, None).unwrap();
        let scheduler = Scheduler::new(assets.clone());
        Sim {
            clock,
            assets,
            scheduler,
            workspace,
            source_id,
        }
    }

    fn with_app(now: &str) -> Sim {
        let sim = Sim::new(now, SourceType::External);
        sim.scheduler.install(&sim.source_id, importer());
        sim
    }

    fn api(&self, method: &str, rest: &str, body: Value) -> (u16, Value) {
        let path = format!(
            "/jsm/assets/workspace/{}/v1/importsource/{}/{rest}",
            self.workspace, self.source_id
        );
        let r = self.assets.handle(method, &path, body.to_string().as_bytes());
        (r.status, serde_json::from_str(&r.body).unwrap())
    }

    fn schedule(&self, frequency: &str, start: &str, tz: &str) -> String {
        self.schedule_on(&self.source_id, frequency, start, tz)
    }

    /// Creates a schedule on `source_id`, one of this workspace's sources.
    fn schedule_on(&self, source_id: &str, frequency: &str, start: &str, tz: &str) -> String {
        let path = format!(
            "/jsm/assets/workspace/{}/v1/importsource/{source_id}/importschedule",
            self.workspace
        );
        let body = json!({"runFrequency": frequency, "startTime": start, "timezone": tz, "callbackUrl": "https://app.example.com/cb"});
        let r = self.assets.handle("POST", &path, body.to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", r.body);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// Another external import source in the workspace, with its own importer.
    fn add_source_with_app(&self) -> String {
        let source_id = self
            .assets
            .create_import_source(&self.workspace, SourceType::External, None)
            .unwrap();
        self.scheduler.install(&source_id, importer());
        source_id
    }
}

#[test]
fn a_daily_schedule_over_365_days_runs_365_times_at_the_same_local_time() {
    let sim = Sim::with_app("2026-01-01T00:00:00Z");
    // 10:00 in New York, through both 2026 DST changes.
    sim.schedule("DAILY", "2026-01-01T15:00:00Z", "America/New_York");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-12-31T23:59:59Z"))
        .expect("every pass stored");

    assert_eq!(runs.len(), 365);
    assert!(
        runs.iter()
            .all(|r| r.status == FiringStatus::Completed && r.objects == 20),
        "{:?}",
        runs.iter().find(|r| r.status != FiringStatus::Completed)
    );
    let tz = chrono_tz::America::New_York;
    assert!(runs.iter().all(|r| r.nominal_utc.with_timezone(&tz).hour() == 10));
    let utc_hours: HashSet<u32> = runs.iter().map(|r| r.nominal_utc.hour()).collect();
    assert_eq!(
        utc_hours,
        HashSet::from([14, 15]),
        "UTC moves with DST, local time does not"
    );

    let history = sim.assets.history(&sim.source_id).unwrap();
    assert_eq!(history.len(), 365);
    assert!(history.iter().all(|h| h.scheduled && h.status == Outcome::Completed));
    let occurrences: HashSet<_> = history.iter().map(|h| h.occurrence_id.clone().unwrap()).collect();
    assert_eq!(occurrences.len(), 365, "every occurrence is its own");
}

#[test]
fn deleting_a_schedule_stops_its_runs() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let id = sim.schedule("DAILY", "2026-05-01T08:00:00Z", "Europe/London");
    assert_eq!(
        sim.scheduler
            .run_until(&sim.clock, t("2026-05-03T12:00:00Z"))
            .expect("every pass stored")
            .len(),
        3
    );
    assert_eq!(sim.api("DELETE", &format!("importschedule/{id}"), json!({})).0, 200);
    assert!(sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-20T00:00:00Z"))
        .expect("every pass stored")
        .is_empty());
    assert_eq!(sim.assets.history(&sim.source_id).unwrap().len(), 3);
}

#[test]
fn deactivating_stops_runs_and_reactivating_resumes_without_catching_up() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let id = sim.schedule("DAILY", "2026-05-01T08:00:00Z", "UTC");
    sim.scheduler
        .run_until(&sim.clock, t("2026-05-01T12:00:00Z"))
        .expect("every pass stored");
    sim.api("PUT", &format!("importschedule/{id}"), json!({"isActive": false}));
    assert!(sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-05T12:00:00Z"))
        .expect("every pass stored")
        .is_empty());
    sim.api("PUT", &format!("importschedule/{id}"), json!({"isActive": true}));
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-06T12:00:00Z"))
        .expect("every pass stored");
    assert_eq!(
        runs.iter().map(|r| r.nominal_utc).collect::<Vec<_>>(),
        vec![t("2026-05-06T08:00:00Z")]
    );
}

#[test]
fn updating_a_schedule_recomputes_its_next_run() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let id = sim.schedule("DAILY", "2026-05-01T08:00:00Z", "UTC");
    sim.scheduler
        .run_until(&sim.clock, t("2026-05-02T12:00:00Z"))
        .expect("every pass stored");
    let (_, updated) = sim.api(
        "PUT",
        &format!("importschedule/{id}"),
        json!({"startTime": "2026-05-02T18:30:00Z", "runFrequency": "WEEKLY"}),
    );
    assert_eq!(updated["nextRunTime"], "2026-05-02T18:30:00Z");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-20T00:00:00Z"))
        .expect("every pass stored");
    let at: Vec<_> = runs.iter().map(|r| r.nominal_utc).collect();
    assert_eq!(
        at,
        vec![
            t("2026-05-02T18:30:00Z"),
            t("2026-05-09T18:30:00Z"),
            t("2026-05-16T18:30:00Z")
        ]
    );
}

#[test]
fn a_run_due_while_an_execution_is_ingesting_is_skipped_with_its_reason() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    sim.schedule("DAILY", "2026-05-01T08:00:00Z", "UTC");
    // A manual import started five minutes before the run, well within the
    // app's limit: it may still be running.
    sim.clock.set(t("2026-05-01T07:55:00Z"));
    let (status, started) = sim.api("POST", "executions", json!({"scheduled": false}));
    assert_eq!(status, 201);
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-01T12:00:00Z"))
        .expect("every pass stored");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, FiringStatus::Skipped);
    let reason = runs[0].reason.clone().unwrap();
    assert!(reason.contains("still ingesting"), "{reason}");
    let url = started["links"]["submitResults"].as_str().unwrap();
    assert!(
        reason.contains(url.trim_end_matches("/data").rsplit('/').next().unwrap()),
        "{reason}"
    );
    let history = sim.assets.history(&sim.source_id).unwrap();
    let skipped = history.iter().find(|h| h.status == Outcome::Skipped).unwrap();
    assert_eq!(skipped.failure_reason.as_deref(), Some(reason.as_str()));
}

#[test]
fn after_a_jump_only_the_latest_missed_run_within_the_window_catches_up() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    sim.schedule("DAILY", "2026-05-01T08:00:00Z", "UTC");
    // Down from before the first run until 30 minutes after the third.
    sim.clock.set(t("2026-05-03T08:30:00Z"));
    let runs = sim.scheduler.run_due();
    let statuses: Vec<_> = runs.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![FiringStatus::Missed, FiringStatus::Missed, FiringStatus::Completed]
    );
    assert!(runs[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("only the most recent missed run is caught up"));

    // Down again for 2 h past the next run: beyond the 1 h window, nothing runs.
    sim.clock.set(t("2026-05-04T10:00:00Z"));
    let runs = sim.scheduler.run_due();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, FiringStatus::Missed);
    assert!(
        runs[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("beyond the 1 h catch-up window"),
        "{:?}",
        runs[0].reason
    );

    let history = sim.assets.history(&sim.source_id).unwrap();
    assert_eq!(history.iter().filter(|h| h.status == Outcome::Missed).count(), 3);
    assert_eq!(history.iter().filter(|h| h.status == Outcome::Completed).count(), 1);
}

#[test]
fn an_occurrence_is_never_handled_twice() {
    // Four sources, one schedule each: two fall due together at 08:00 UTC,
    // one at 07:00 UTC (08:00 in London), one ONCE on the second day. At each
    // instant, four threads run the scheduler at once, twice; then the clock
    // jumps a day and a half, so several occurrences of every schedule fall
    // due together (the ones beyond the catch-up window handled as missed).
    // Every occurrence due at an instant must be handled at that instant,
    // once, by exactly one of the threads, and recorded once.
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let sources: Vec<String> = std::iter::once(sim.source_id.clone())
        .chain((0..3).map(|_| sim.add_source_with_app()))
        .collect();
    let a = sim.schedule_on(&sources[0], "DAILY", "2026-05-01T08:00:00Z", "UTC");
    let b = sim.schedule_on(&sources[1], "DAILY", "2026-05-01T08:00:00Z", "UTC");
    let c = sim.schedule_on(&sources[2], "DAILY", "2026-05-01T07:00:00Z", "Europe/London");
    let d = sim.schedule_on(&sources[3], "ONCE", "2026-05-02T08:00:00Z", "UTC");
    let id = |schedule: &str, at: &str| assets_platform::scheduler::occurrence_id(schedule, t(at));
    let steps = [
        ("2026-05-01T07:00:00Z", vec![id(&c, "2026-05-01T07:00:00Z")]),
        (
            "2026-05-01T08:00:00Z",
            vec![id(&a, "2026-05-01T08:00:00Z"), id(&b, "2026-05-01T08:00:00Z")],
        ),
        (
            "2026-05-02T08:30:00Z",
            vec![
                id(&c, "2026-05-02T07:00:00Z"),
                id(&a, "2026-05-02T08:00:00Z"),
                id(&b, "2026-05-02T08:00:00Z"),
                id(&d, "2026-05-02T08:00:00Z"),
            ],
        ),
        (
            "2026-05-03T08:00:00Z",
            vec![
                id(&c, "2026-05-03T07:00:00Z"),
                id(&a, "2026-05-03T08:00:00Z"),
                id(&b, "2026-05-03T08:00:00Z"),
            ],
        ),
    ];
    let mut all_expected = Vec::new();
    for (at, expected) in steps {
        sim.clock.set(t(at));
        let barrier = std::sync::Barrier::new(4);
        let handled: Vec<String> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        let mut ids: Vec<String> =
                            sim.scheduler.run_due().into_iter().map(|f| f.occurrence_id).collect();
                        // Everyone again, once every first pass has ended.
                        barrier.wait();
                        ids.extend(sim.scheduler.run_due().into_iter().map(|f| f.occurrence_id));
                        ids
                    })
                })
                .collect();
            threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
        });
        let mut handled = handled;
        handled.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(
            handled, expected,
            "at {at}: each due occurrence handled once, and only those"
        );
        all_expected.extend(expected);
    }
    let mut recorded: Vec<String> = sources
        .iter()
        .flat_map(|source| sim.assets.history(source).unwrap())
        .map(|entry| entry.occurrence_id.expect("a scheduled entry names its occurrence"))
        .collect();
    recorded.sort();
    all_expected.sort();
    assert_eq!(recorded, all_expected, "each occurrence recorded once");
}

#[test]
fn a_once_schedule_runs_once_then_is_inactive() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let id = sim.schedule("ONCE", "2026-05-02T09:15:00Z", "Asia/Kolkata");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-06-01T00:00:00Z"))
        .expect("every pass stored");
    assert_eq!(runs.len(), 1);
    let (_, schedule) = sim.api("GET", &format!("importschedule/{id}"), json!({}));
    assert_eq!(schedule["isActive"], false);
    assert_eq!(schedule["nextRunTime"], Value::Null);
}

#[test]
fn a_gap_skip_policy_records_the_skipped_day_with_the_rule() {
    let sim = Sim::with_app("2026-03-01T00:00:00Z");
    let (status, _) = sim.api(
        "POST",
        "importschedule",
        json!({"runFrequency": "DAILY", "startTime": "2026-03-07T07:30:00Z", "timezone": "America/New_York",
               "callbackUrl": "https://app.example.com/cb", "dstGapPolicy": "SKIP"}),
    );
    assert_eq!(status, 201);
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-03-09T12:00:00Z"))
        .expect("every pass stored");
    let statuses: Vec<_> = runs.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![FiringStatus::Completed, FiringStatus::Skipped, FiringStatus::Completed]
    );
    let skipped = &sim.assets.history(&sim.source_id).unwrap()[1];
    assert_eq!(skipped.status, Outcome::Skipped);
    assert!(skipped.failure_reason.as_deref().unwrap().contains("dstGapPolicy SKIP"));
}

#[test]
fn the_callback_event_carries_the_schedule_and_a_stable_occurrence_id() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let id = sim.schedule("DAILY", "2026-05-01T08:00:00Z", "UTC");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-01T09:00:00Z"))
        .expect("every pass stored");
    let entry = &sim.assets.history(&sim.source_id).unwrap()[0];
    assert_eq!(entry.schedule_id.as_deref(), Some(id.as_str()));
    assert_eq!(entry.occurrence_id.as_deref(), Some(runs[0].occurrence_id.as_str()));
    assert_eq!(
        runs[0].occurrence_id,
        assets_platform::scheduler::occurrence_id(&id, t("2026-05-01T08:00:00Z"))
    );
}

#[test]
fn other_source_types_get_the_platforms_own_run_and_a_missing_app_a_failed_entry() {
    let sim = Sim::new("2026-05-01T00:00:00Z", SourceType::Csv);
    sim.schedule("DAILY", "2026-05-01T08:00:00Z", "UTC");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-01T09:00:00Z"))
        .expect("every pass stored");
    assert_eq!(runs[0].status, FiringStatus::Completed);
    assert_eq!(
        sim.assets.history(&sim.source_id).unwrap()[0].status,
        Outcome::Completed
    );

    let sim = Sim::new("2026-05-01T00:00:00Z", SourceType::External);
    sim.schedule("DAILY", "2026-05-01T08:00:00Z", "UTC");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-01T09:00:00Z"))
        .expect("every pass stored");
    assert_eq!(runs[0].status, FiringStatus::Failed);
    let entry = &sim.assets.history(&sim.source_id).unwrap()[0];
    assert_eq!(entry.status, Outcome::Failed);
    assert!(entry
        .failure_reason
        .as_deref()
        .unwrap()
        .contains("could not be delivered"));
}

#[test]
fn a_csv_import_runs_daily_for_a_year_without_a_guest() {
    let sim = Sim::new("2026-01-01T00:00:00Z", SourceType::Csv);
    sim.schedule("DAILY", "2026-01-01T06:00:00Z", "Europe/Berlin");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-12-31T23:00:00Z"))
        .expect("every pass stored");
    assert_eq!(runs.len(), 365);
    assert!(runs.iter().all(|r| r.status == FiringStatus::Completed));
}

/// Statuses and reasons of the source's history, oldest first.
fn history_lines(sim: &Sim) -> Vec<(Outcome, String)> {
    sim.assets
        .history(&sim.source_id)
        .unwrap()
        .into_iter()
        .map(|e| (e.status, e.failure_reason.unwrap_or_default()))
        .collect()
}

#[test]
fn a_once_schedule_whose_start_just_passed_runs_at_once() {
    let sim = Sim::with_app("2026-05-01T12:00:00Z");
    let id = sim.schedule("ONCE", "2026-05-01T11:59:00Z", "Europe/Berlin");
    let (_, schedule) = sim.api("GET", &format!("importschedule/{id}"), json!({}));
    assert_eq!(schedule["nextRunTime"], "2026-05-01T11:59:00Z", "due now: {schedule}");
    let runs = sim.scheduler.run_due();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, FiringStatus::Completed);
    assert_eq!(runs[0].objects, 20);
    let (_, schedule) = sim.api("GET", &format!("importschedule/{id}"), json!({}));
    assert_eq!(schedule["isActive"], false);
    assert!(sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-03T00:00:00Z"))
        .expect("every pass stored")
        .is_empty());
}

#[test]
fn a_once_schedule_older_than_the_catch_up_window_is_refused() {
    let sim = Sim::with_app("2026-05-01T12:00:00Z");
    let (status, body) = sim.api(
        "POST",
        "importschedule",
        json!({"runFrequency": "ONCE", "startTime": "2026-05-01T10:00:00Z", "timezone": "UTC",
               "callbackUrl": "https://app.example.com/cb"}),
    );
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("startTime") && text.contains("120 minutes in the past"),
        "{text}"
    );
    // A DAILY schedule from the same past start is fine: it runs from now on.
    sim.schedule("DAILY", "2026-05-01T10:00:00Z", "UTC");
}

#[test]
fn dst_fold_both_on_a_once_schedule_runs_both_instants() {
    let sim = Sim::with_app("2026-10-31T00:00:00Z");
    // 01:30 EDT on 2026-11-01, the earlier of the two 01:30s in New York.
    let (status, body) = sim.api(
        "POST",
        "importschedule",
        json!({"runFrequency": "ONCE", "startTime": "2026-11-01T05:30:00Z", "timezone": "America/New_York",
               "callbackUrl": "https://app.example.com/cb", "dstFoldPolicy": "BOTH"}),
    );
    assert_eq!(status, 201, "{body}");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-11-03T00:00:00Z"))
        .expect("every pass stored");
    let at: Vec<_> = runs.iter().map(|r| (r.nominal_utc.to_rfc3339(), r.status)).collect();
    assert_eq!(
        at,
        vec![
            ("2026-11-01T05:30:00+00:00".to_owned(), FiringStatus::Completed),
            ("2026-11-01T06:30:00+00:00".to_owned(), FiringStatus::Completed),
        ]
    );
}

/// A DAILY 09:00 UTC schedule whose first run fell due half a minute ago,
/// before the scheduler looked, changed by a `PUT` of `change`.
fn put_while_a_run_is_due(change: Value) -> Sim {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let id = sim.schedule("DAILY", "2026-05-02T09:00:00Z", "UTC");
    sim.clock.set(t("2026-05-02T09:00:30Z"));
    let (status, body) = sim.api("PUT", &format!("importschedule/{id}"), change);
    assert_eq!(status, 200, "{body}");
    sim
}

#[test]
fn a_put_that_changes_only_the_callback_keeps_a_due_run() {
    let sim = put_while_a_run_is_due(json!({"callbackUrl": "https://app.example.com/new-callback"}));
    let runs = sim.scheduler.run_due();
    assert_eq!(runs.len(), 1, "the due run still runs");
    assert_eq!(runs[0].status, FiringStatus::Completed);
    assert_eq!(runs[0].nominal_utc, t("2026-05-02T09:00:00Z"));
}

#[test]
fn a_put_that_changes_the_rule_records_what_was_due_as_missed() {
    let sim = put_while_a_run_is_due(json!({"startTime": "2026-05-03T18:00:00Z"}));
    assert!(sim.scheduler.run_due().is_empty());
    let lines = history_lines(&sim);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, Outcome::Missed);
    assert!(
        lines[0]
            .1
            .contains("fell due at 2026-05-02T09:00:00Z, but the schedule was changed"),
        "{}",
        lines[0].1
    );
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-04T00:00:00Z"))
        .expect("every pass stored");
    let at: Vec<_> = runs.iter().map(|r| r.nominal_utc).collect();
    assert_eq!(at, vec![t("2026-05-03T18:00:00Z")], "the new rule runs");
}

#[test]
fn pausing_and_resuming_records_the_paused_runs_as_skipped() {
    let sim = Sim::with_app("2026-05-01T00:00:00Z");
    let id = sim.schedule("DAILY", "2026-05-01T09:00:00Z", "UTC");
    sim.scheduler
        .run_until(&sim.clock, t("2026-05-01T12:00:00Z"))
        .expect("every pass stored");
    let put = |active: bool| {
        let (status, body) = sim.api("PUT", &format!("importschedule/{id}"), json!({ "isActive": active }));
        assert_eq!(status, 200, "{body}");
    };
    put(false);
    assert!(sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-04T12:00:00Z"))
        .expect("every pass stored")
        .is_empty());
    put(true);
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-05T12:00:00Z"))
        .expect("every pass stored");
    assert_eq!(runs.len(), 1, "only the run after resuming");
    assert_eq!(runs[0].nominal_utc, t("2026-05-05T09:00:00Z"));
    let lines = history_lines(&sim);
    let statuses: Vec<Outcome> = lines.iter().map(|l| l.0).collect();
    assert_eq!(
        statuses,
        vec![
            Outcome::Completed,
            Outcome::Skipped,
            Outcome::Skipped,
            Outcome::Skipped,
            Outcome::Completed
        ]
    );
    assert!(
        lines[1]
            .1
            .contains("fell due at 2026-05-02T09:00:00Z while the schedule was paused"),
        "{}",
        lines[1].1
    );
}

#[test]
fn an_execution_a_dead_app_left_ingesting_is_failed_and_the_next_run_goes_ahead() {
    let sim = Sim::with_app("2026-05-01T08:00:00Z");
    // The app opened an execution and died: no data, no completion, no failure.
    let (status, opened) = sim.api("POST", "executions", json!({"scheduled": true}));
    assert_eq!(status, 201, "{opened}");
    sim.schedule("DAILY", "2026-05-01T08:05:00Z", "UTC");
    let runs = sim
        .scheduler
        .run_until(&sim.clock, t("2026-05-02T09:00:00Z"))
        .expect("every pass stored");
    // At 08:05 the app could still be running (its limit is 900 s): skipped.
    // A day later it cannot: the execution is failed, and the run goes ahead.
    let statuses: Vec<FiringStatus> = runs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![FiringStatus::Skipped, FiringStatus::Completed]);
    let lines = history_lines(&sim);
    let outcomes: Vec<Outcome> = lines.iter().map(|l| l.0).collect();
    assert_eq!(outcomes, vec![Outcome::Failed, Outcome::Skipped, Outcome::Completed]);
    assert!(
        lines[0].1.contains("no completion or failure for execution")
            && lines[0].1.contains("15 min run limit")
            && lines[0].1.contains("started at 2026-05-01T08:00:00Z"),
        "{}",
        lines[0].1
    );
}
