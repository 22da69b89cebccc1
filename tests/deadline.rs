//! Native tests of the lifecycle against a deadline: one virtual clock that
//! page reads, API calls and retry waits all move, and an invocation that
//! must end by its time limit. Every delivery here is checked to have ended
//! by its deadline (on a real host, one that does not is stopped mid-call),
//! and budgets, loop detection and replays are checked across deliveries.

use assets_scheduled_import::api::{ApiResponse, AssetsApi, CallError, Method};
use assets_scheduled_import::lifecycle::{self, KeyValue, Outcome, RunError, Trigger};
use assets_scheduled_import::model::{AssetObject, DataSource, ObjectBatch, Page, SourceError};
use assets_scheduled_import::retry::Timer;
use assets_scheduled_import::settings::{SettingError, Settings};
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Milliseconds on the virtual clock every fake shares.
type Clock = Rc<Cell<u64>>;

const TRIGGER: Trigger<'static> = Trigger {
    import_source_id: "src-1",
    scheduled: true,
    occurrence_id: "occ-1",
};

/// The platform's side: the clock, the invocation's deadline, app storage.
struct Host {
    clock: Clock,
    deadline: u64,
    sleeps: Vec<u64>,
    storage: HashMap<String, String>,
}

impl Host {
    fn new(clock: &Clock) -> Host {
        Host {
            clock: clock.clone(),
            deadline: u64::MAX,
            sleeps: Vec::new(),
            storage: HashMap::new(),
        }
    }
}

impl Timer for Host {
    fn now_ms(&mut self) -> u64 {
        self.clock.get()
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.sleeps.push(ms);
        self.clock.set(self.clock.get() + ms);
    }
    fn time_left_ms(&mut self) -> u64 {
        self.deadline.saturating_sub(self.clock.get())
    }
}

/// Storage behind a second handle, so the lifecycle can hold the timer and
/// the storage at once.
struct Storage<'a>(&'a mut HashMap<String, String>);

impl KeyValue for Storage<'_> {
    fn get(&mut self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.0.insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}

/// One invocation with `limit_ms` to run, asserted to end by its deadline.
fn deliver(
    settings: &Result<Settings, SettingError>,
    api: &mut Api,
    source: &mut impl DataSource,
    host: &mut Host,
    limit_ms: u64,
) -> Result<Outcome, RunError> {
    host.deadline = host.clock.get() + limit_ms;
    let mut timer = Host {
        clock: host.clock.clone(),
        deadline: host.deadline,
        sleeps: Vec::new(),
        storage: HashMap::new(),
    };
    let result = lifecycle::run_import(
        TRIGGER,
        settings.clone(),
        api,
        source,
        &mut timer,
        &mut Storage(&mut host.storage),
    );
    host.sleeps.extend(timer.sleeps);
    assert!(
        host.clock.get() <= host.deadline,
        "the invocation ran {} ms past its deadline: {result:?}",
        host.clock.get() - host.deadline
    );
    // The platform calls again at once.
    result
}

/// Delivers until the run ends (at most `most` deliveries); returns the
/// result and the number of deliveries.
fn deliver_until_done(
    settings: &Result<Settings, SettingError>,
    api: &mut Api,
    source: &mut impl DataSource,
    host: &mut Host,
    limit_ms: u64,
    most: usize,
) -> (Result<Outcome, RunError>, usize) {
    for n in 1..=most {
        match deliver(settings, api, source, host, limit_ms) {
            Ok(Outcome::Paused(_)) => continue,
            ended => return (ended, n),
        }
    }
    panic!("the run did not end in {most} deliveries")
}

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingError> {
    let pairs: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::from_config(|k| pairs.get(k).cloned())
}

/// A stateful Assets API: one execution at a time, chunks stored once per
/// `clientGeneratedId`, status endpoints with the failure reason. Answers
/// scripted once per endpoint suffix come first; every call takes
/// `call_ms` of the clock.
struct Api {
    clock: Clock,
    call_ms: u64,
    executions: Vec<Execution>,
    /// Scripted answers: (path suffix, status, Retry-After), each used once.
    script: Vec<(&'static str, u16, Option<&'static str>)>,
    /// Data calls (1-based, over every delivery) answered 429 with this
    /// Retry-After instead of being carried out.
    throttled: HashMap<usize, &'static str>,
    data_calls: usize,
    /// Carry out the next create-execution call but lose its answer.
    lose_create_answer: bool,
    calls: Vec<String>,
}

#[derive(Default)]
struct Execution {
    id: String,
    status: &'static str,
    reason: Option<String>,
    chunk_ids: HashSet<String>,
    received: u64,
    objects: HashSet<String>,
    /// When it was created, on the shared clock.
    started_ms: u64,
}

impl Api {
    fn new(clock: &Clock) -> Api {
        Api {
            clock: clock.clone(),
            call_ms: 10,
            executions: Vec::new(),
            script: Vec::new(),
            throttled: HashMap::new(),
            data_calls: 0,
            lose_create_answer: false,
            calls: Vec::new(),
        }
    }

    /// What the platform does to an execution an app left ingesting.
    fn platform_fails(&mut self, reason: &str) {
        let e = self.executions.last_mut().unwrap();
        e.status = "CANCELLED";
        e.reason = Some(reason.to_owned());
    }

    fn every_object_once(&self, total: usize) {
        assert_eq!(self.executions.len(), 1, "one execution");
        let e = &self.executions[0];
        assert_eq!(e.status, "DONE");
        assert_eq!(e.objects.len(), total, "every object arrived");
        assert_eq!(e.received, total as u64, "no object arrived twice");
    }

    fn answer(&mut self, method: Method, path: &str, body: Option<&str>) -> (u16, String) {
        let ok = (200, r#"{"result":"success"}"#.to_owned());
        let rest = path.strip_prefix("importsource/src-1/executions").unwrap();
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segments.as_slice()) {
            (Method::Post, []) => {
                if let Some(e) = self.executions.iter().find(|e| e.status == "INGESTING") {
                    return (
                        409,
                        json!({"errorCode": "IN_PROGRESS", "message": format!("{} is ingesting", e.id)}).to_string(),
                    );
                }
                let id = format!("exec-{}", self.executions.len() + 1);
                self.executions.push(Execution {
                    id: id.clone(),
                    status: "INGESTING",
                    started_ms: self.clock.get(),
                    ..Execution::default()
                });
                (
                    201,
                    json!({"links": {"submitResults": format!("https://x/executions/{id}/data")}}).to_string(),
                )
            }
            (Method::Get, ["status"]) => match self.executions.last() {
                Some(e) => (
                    200,
                    // Every field a run checks before it takes an execution
                    // for its own.
                    json!({
                        "executionId": e.id, "status": e.status, "scheduled": true, "chunks": e.chunk_ids.len(),
                        "startedAt": chrono::DateTime::from_timestamp_millis(e.started_ms as i64).unwrap().to_rfc3339(),
                    })
                    .to_string(),
                ),
                None => (404, "{}".into()),
            },
            (Method::Get, [id, "status"]) => match self.executions.iter().find(|e| e.id == *id) {
                Some(e) => (
                    200,
                    json!({"executionId": e.id, "status": e.status, "failureReason": e.reason}).to_string(),
                ),
                None => (404, "{}".into()),
            },
            (Method::Post, [id, rest @ ..]) => {
                let Some(e) = self.executions.iter_mut().find(|e| e.id == *id) else {
                    return (404, "{}".into());
                };
                if e.status != "INGESTING" {
                    return (409, r#"{"errorCode":"NOT_INGESTING"}"#.into());
                }
                match rest {
                    ["data"] => {
                        let chunk: Value = serde_json::from_str(body.unwrap()).unwrap();
                        if e.chunk_ids
                            .insert(chunk["clientGeneratedId"].as_str().unwrap().to_owned())
                        {
                            for o in chunk["objects"].as_array().unwrap() {
                                e.received += 1;
                                e.objects.insert(o["externalId"].as_str().unwrap().to_owned());
                            }
                        }
                        ok
                    }
                    ["history", "completed"] => {
                        e.status = "DONE";
                        ok
                    }
                    ["history", "failed"] => {
                        let body: Value = serde_json::from_str(body.unwrap()).unwrap();
                        e.status = "CANCELLED";
                        e.reason = body["failureReason"].as_str().map(str::to_owned);
                        ok
                    }
                    _ => (404, "{}".into()),
                }
            }
            _ => (404, "{}".into()),
        }
    }
}

impl AssetsApi for Api {
    fn call(&mut self, method: Method, path: &str, body: Option<&str>) -> Result<ApiResponse, CallError> {
        self.clock.set(self.clock.get() + self.call_ms);
        self.calls.push(format!("{method:?} {path}"));
        let mut scripted = self
            .script
            .iter()
            .position(|(suffix, ..)| path.ends_with(suffix))
            .map(|i| self.script.remove(i));
        if path.ends_with("/data") {
            self.data_calls += 1;
            if let Some(after) = self.throttled.get(&self.data_calls) {
                scripted = Some(("/data", 429, Some(*after)));
            }
        }
        if let Some((_, status, retry_after)) = scripted {
            return Ok(ApiResponse {
                status,
                headers: retry_after
                    .map(|v| vec![("retry-after".to_owned(), v.to_owned())])
                    .unwrap_or_default(),
                body: r#"{"errorCode":"SCRIPTED","message":"scripted answer"}"#.into(),
            });
        }
        let (status, body) = self.answer(method, path, body);
        if path.ends_with("/executions") && std::mem::take(&mut self.lose_create_answer) {
            return Err(CallError::Timeout("no answer within 30 s".into()));
        }
        Ok(ApiResponse {
            status,
            headers: vec![],
            body,
        })
    }
}

/// `total` objects, `per_page` a page, each read taking `page_ms` of the clock.
struct Source {
    clock: Clock,
    total: usize,
    per_page: usize,
    page_ms: u64,
    /// Fails the read of this page (1-based offset/per_page + 1) every time.
    bad_page: Option<usize>,
}

impl DataSource for Source {
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        self.clock.set(self.clock.get() + self.page_ms);
        let start: usize = cursor.map_or(0, |c| c.parse().unwrap());
        if self.bad_page == Some(start / self.per_page + 1) {
            return Err(SourceError::BadResponse("HTTP 500 from inventory.example".into()));
        }
        let end = (start + self.per_page).min(self.total);
        Ok(Page {
            batches: vec![ObjectBatch {
                object_type_id: "laptop".into(),
                objects: (start..end).map(object).collect(),
            }],
            next_cursor: (end < self.total).then(|| end.to_string()),
        })
    }
}

fn object(i: usize) -> AssetObject {
    AssetObject {
        external_id: format!("asset-{i}"),
        label: format!("Laptop {i}"),
        attributes: vec![],
    }
}

#[test]
fn a_page_that_would_likely_not_finish_in_time_is_not_started() {
    // Pages take 3.5 s, the invocation 10 s with 2 s kept in reserve: after
    // two pages (7 s) a third would end at 10.5 s, past the limit. Pages of
    // 100 objects never fill a chunk of 500, so a run stopped at its limit
    // would not have moved on.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = Source {
        clock: clock.clone(),
        total: 1000,
        per_page: 100,
        page_ms: 3_500,
        bad_page: None,
    };
    let settings = settings(&[("time-limit-margin-ms", "2000")]);
    let (result, deliveries) = deliver_until_done(&settings, &mut api, &mut source, &mut host, 10_000, 20);
    assert!(matches!(result, Ok(Outcome::Completed(_))), "{result:?}");
    assert_eq!(deliveries, 5, "two pages a delivery");
    api.every_object_once(1000);
}

#[test]
fn a_retry_after_longer_than_the_time_left_pauses_the_run_instead_of_waiting() {
    // Pages take 10 s; chunks of 100 go out as the next page starts. The
    // third chunk, 40 s into a 55 s invocation with a 10 s margin, is
    // answered 429 with Retry-After 30 s: waiting would end at 70 s. The run
    // pauses at its checkpoint instead, and the next invocation sends it.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = pages_of(&clock, 500, 10_000);
    api.throttled.insert(3, "30");
    let settings = settings(&[("chunk-max-objects", "100"), ("time-limit-margin-ms", "10000")]);
    let first = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    assert!(matches!(first, Ok(Outcome::Paused(_))), "{first:?}");
    assert!(host.sleeps.is_empty(), "no wait past the deadline: {:?}", host.sleeps);
    let (result, _) = deliver_until_done(&settings, &mut api, &mut source, &mut host, 55_000, 10);
    let Ok(Outcome::Completed(report)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(report.objects_sent, 500);
    api.every_object_once(500);
}

/// `total` objects, 100 a page, each read taking `page_ms`.
fn pages_of(clock: &Clock, total: usize, page_ms: u64) -> Source {
    Source {
        clock: clock.clone(),
        total,
        per_page: 100,
        page_ms,
        bad_page: None,
    }
}

#[test]
fn the_retry_budget_is_spent_over_the_run_not_per_delivery() {
    // Each delivery reads two 20 s pages and meets one 429 with a 2 s
    // Retry-After; the run may wait 5 s in all. The third wait would make
    // 6 s: the run fails there, however many deliveries it took.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = pages_of(&clock, 1000, 20_000);
    for call in [1, 4, 7, 10, 13] {
        api.throttled.insert(call, "2");
    }
    let settings = settings(&[
        ("chunk-max-objects", "100"),
        ("time-limit-margin-ms", "10000"),
        ("retry-max-total-ms", "5000"),
    ]);
    let (result, deliveries) = deliver_until_done(&settings, &mut api, &mut source, &mut host, 55_000, 10);
    let Err(RunError::ImportFailed(failed)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(deliveries, 3, "{failed:?}");
    assert!(
        failed
            .reason
            .contains("retry budget of 5.0 s (retry-max-total-ms), 4.0 s of it already spent"),
        "{}",
        failed.reason
    );
    assert_eq!(host.sleeps, vec![2_000, 2_000]);
}

/// A source whose cursors go round: (first) → A → B → C → A → …, a page
/// of one object each, every read taking `page_ms`.
struct Circle {
    clock: Clock,
    page_ms: u64,
    reads: usize,
}

impl DataSource for Circle {
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        self.clock.set(self.clock.get() + self.page_ms);
        self.reads += 1;
        let next = match cursor {
            None | Some("C") => "A",
            Some("A") => "B",
            _ => "C",
        };
        Ok(Page {
            batches: vec![ObjectBatch {
                object_type_id: "laptop".into(),
                objects: vec![object(self.reads)],
            }],
            next_cursor: Some(next.into()),
        })
    }
}

#[test]
fn a_cursor_cycle_that_spans_deliveries_fails_the_run_by_name() {
    // Two 20 s pages a delivery: no delivery alone ever reads a cursor twice.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = Circle {
        clock: clock.clone(),
        page_ms: 20_000,
        reads: 0,
    };
    let settings = settings(&[("time-limit-margin-ms", "10000"), ("source-max-pages", "60")]);
    let (result, deliveries) = deliver_until_done(&settings, &mut api, &mut source, &mut host, 55_000, 40);
    let Err(RunError::ImportFailed(failed)) = result else {
        panic!("{result:?}")
    };
    assert!(
        failed.reason.contains("cursor \"A\" after page 4") && failed.reason.contains("already read in this run"),
        "{}",
        failed.reason
    );
    assert_eq!((deliveries, source.reads), (2, 4));
}

#[test]
fn a_failure_report_that_does_not_fit_in_the_time_left_is_made_by_the_next_invocation() {
    // Page 3 is bad at 30 s; the failure report is answered 429 with a
    // 30 s Retry-After, which would end past the 55 s limit.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = Source {
        bad_page: Some(3),
        ..pages_of(&clock, 500, 10_000)
    };
    api.script.push(("/history/failed", 429, Some("30")));
    let settings = settings(&[("time-limit-margin-ms", "10000")]);
    let first = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    assert!(matches!(first, Ok(Outcome::Paused(_))), "{first:?}");
    assert_eq!(api.executions[0].status, "INGESTING");
    let second = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    let Err(RunError::ImportFailed(failed)) = second else {
        panic!("{second:?}")
    };
    assert!(failed.reported, "{failed:?}");
    assert!(failed.reason.contains("HTTP 500 from inventory.example") && failed.reason.contains("page 3"));
    assert_eq!(api.executions[0].status, "CANCELLED");
    assert_eq!(api.executions[0].reason.as_deref(), Some(failed.reason.as_str()));
}

#[test]
fn a_completion_that_does_not_fit_in_the_time_left_is_signalled_by_the_next_invocation() {
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = pages_of(&clock, 200, 10_000);
    api.script.push(("/history/completed", 429, Some("40")));
    let settings = settings(&[("time-limit-margin-ms", "10000")]);
    let first = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    assert!(matches!(first, Ok(Outcome::Paused(_))), "{first:?}");
    let reads = source.clock.get();
    let second = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    assert!(matches!(second, Ok(Outcome::Completed(_))), "{second:?}");
    assert!(
        host.clock.get() - reads < 10_000,
        "no page was read again: only completion was left"
    );
    api.every_object_once(200);
}

#[test]
fn a_redelivered_occurrence_reports_how_its_run_really_ended() {
    let settings = settings(&[("time-limit-margin-ms", "10000")]);

    // Completed: the earlier report, replayed.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = pages_of(&clock, 150, 1_000);
    let Ok(Outcome::Completed(done)) = deliver(&settings, &mut api, &mut source, &mut host, 55_000) else {
        panic!()
    };
    let again = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    let Ok(Outcome::Completed(replayed)) = again else {
        panic!("{again:?}")
    };
    assert!(replayed.replayed);
    assert_eq!(
        (replayed.objects_sent, replayed.chunks_sent),
        (done.objects_sent, done.chunks_sent)
    );

    // Failed by the app: its reason.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = Source {
        bad_page: Some(2),
        ..pages_of(&clock, 300, 1_000)
    };
    let Err(RunError::ImportFailed(first)) = deliver(&settings, &mut api, &mut source, &mut host, 55_000) else {
        panic!()
    };
    let Err(RunError::ImportFailed(again)) = deliver(&settings, &mut api, &mut source, &mut host, 55_000) else {
        panic!()
    };
    assert_eq!(again.reason, first.reason);

    // Paused, then failed by the platform (it gave up invoking the app):
    // the platform's reason, not a made-up one.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = pages_of(&clock, 1000, 20_000);
    let paused = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    assert!(matches!(paused, Ok(Outcome::Paused(_))), "{paused:?}");
    let platform = "the app was invoked 3 times for this run and the last 3 moved the import no further";
    api.platform_fails(platform);
    let again = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    let Err(RunError::ImportFailed(again)) = again else {
        panic!("{again:?}")
    };
    assert_eq!(again.reason, platform);
    assert_eq!(again.execution_id, "exec-1");
}

#[test]
fn a_lost_create_answer_is_adopted_even_when_the_lookups_fail_at_first() {
    // The execution is created but the answer is lost; the next two
    // lookups of the latest execution fail with 503. Asking again would
    // only meet this run's own execution (409), so the lookup is retried
    // until it answers, and the execution is adopted, not left ingesting.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    api.lose_create_answer = true;
    api.script.push(("/executions/status", 503, None));
    api.script.push(("/executions/status", 503, None));
    let mut source = pages_of(&clock, 150, 1_000);
    let settings = settings(&[("time-limit-margin-ms", "10000")]);
    let result = deliver(&settings, &mut api, &mut source, &mut host, 55_000);
    let Ok(Outcome::Completed(report)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(report.execution_id, "exec-1");
    api.every_object_once(150);
    let creates = api.calls.iter().filter(|c| c.ends_with("/executions")).count();
    assert_eq!(creates, 1, "asked once: {:?}", api.calls);
}

/// One object a page; page `n` (1-based) takes `page_ms[n - 1]`, and the
/// first read of page 1 is answered busy with a Retry-After of `busy_ms`.
struct Slowing {
    clock: Clock,
    page_ms: Vec<u64>,
    busy_ms: u64,
    busy_once: bool,
}

impl DataSource for Slowing {
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let index: usize = cursor.map_or(0, |c| c.parse().unwrap());
        self.clock.set(self.clock.get() + self.page_ms[index]);
        if index == 0 && std::mem::take(&mut self.busy_once) {
            return Err(SourceError::Busy {
                message: "HTTP 429 from inventory.example".into(),
                retry_after_ms: Some(self.busy_ms),
            });
        }
        Ok(Page {
            batches: vec![ObjectBatch {
                object_type_id: "laptop".into(),
                objects: vec![object(index)],
            }],
            next_cursor: (index + 1 < self.page_ms.len()).then(|| (index + 1).to_string()),
        })
    }
}

#[test]
fn a_page_read_after_a_retry_wait_counts_its_own_time_toward_the_slowest_page() {
    // Page 1 takes 1 s a read and waits 5 s between its two reads: 2 s of
    // its own. Page 2 takes 8 s, 15 s into a 30 s invocation with a 10 s
    // margin: the next page may take 8 s as well, and 15 s left is less
    // than 10 s + 8 s, so the delivery pauses after two pages. Counting the
    // earlier 5 s wait against page 2 would make the slowest page 2 s and
    // read page 3 too.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = Slowing {
        clock: clock.clone(),
        page_ms: vec![1_000, 8_000, 8_000, 8_000],
        busy_ms: 5_000,
        busy_once: true,
    };
    let settings = settings(&[("time-limit-margin-ms", "10000")]);
    let first = deliver(&settings, &mut api, &mut source, &mut host, 30_000);
    let Ok(Outcome::Paused(paused)) = first else {
        panic!("{first:?}")
    };
    assert_eq!(host.sleeps, vec![5_000]);
    assert_eq!(paused.objects_sent, 2, "two pages, one object each");
    let (result, _) = deliver_until_done(&settings, &mut api, &mut source, &mut host, 30_000, 10);
    assert!(matches!(result, Ok(Outcome::Completed(_))), "{result:?}");
    api.every_object_once(4);
}

#[test]
fn a_page_is_read_when_the_time_left_is_exactly_the_margin_and_the_slowest_page() {
    // Pages of 5 s with a 10 s margin, in an invocation of 30 s plus the
    // 10 ms its one API call before the first page takes (creating the
    // execution): after the third page 15 s are left, exactly the margin
    // plus the slowest page, so the fourth is read (the margin stays whole)
    // and the delivery pauses after it, with 10 s left.
    let clock = Clock::default();
    let (mut api, mut host) = (Api::new(&clock), Host::new(&clock));
    let mut source = Slowing {
        clock: clock.clone(),
        page_ms: vec![5_000; 6],
        busy_ms: 0,
        busy_once: false,
    };
    let settings = settings(&[("time-limit-margin-ms", "10000")]);
    let first = deliver(&settings, &mut api, &mut source, &mut host, 30_010);
    let Ok(Outcome::Paused(paused)) = first else {
        panic!("{first:?}")
    };
    assert_eq!(paused.objects_sent, 4, "four pages, one object each");
    let (result, _) = deliver_until_done(&settings, &mut api, &mut source, &mut host, 30_010, 10);
    assert!(matches!(result, Ok(Outcome::Completed(_))), "{result:?}");
    api.every_object_once(6);
}
