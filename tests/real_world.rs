//! Imports that meet the real world, end to end: the real component in the
//! real host against the in-process Assets API, with the faults that used to
//! block a source or lose data without saying so.
//!
//! - a long import under a 55-second limit goes on across invocations, and
//!   one stopped hard at its limit goes on from its checkpoint;
//! - a lost create-execution answer leaves no orphan;
//! - a looping source fails by name;
//! - a busy source is waited for as long as it asked, across the WIT boundary;
//! - reasons fit a Java server's 1024 characters and carry no credentials.
//!
//! The exact chunk limit, the HTTP-date `Retry-After`, the timeout wording
//! and the HTTP source's paging are tested natively beside their code.

mod common;

use assets_platform::assets::{AssetsService, Outcome, SourceType};
use assets_platform::clock::{Clock, SystemClock, VirtualClock};
use assets_platform::faults::{FaultPlan, FaultyAssets, FaultySource};
use assets_platform::source::{DataSourceProvider, SlowSource, SyntheticSource};
use assets_platform::trigger::{self, App, RunStatus, TriggerOutcome};
use assets_runtime::bindings::data_source::{BusyError, Page, SourceError};
use assets_runtime::Limits;
use common::runtime;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn world(clock: Arc<dyn Clock>) -> (Arc<AssetsService>, String, String) {
    let assets = Arc::new(AssetsService::new(clock));
    let workspace = assets.create_workspace();
    let source_id = assets
        .create_import_source(&workspace, SourceType::External, Some("importer".into()))
        .unwrap();
    (assets, workspace, source_id)
}

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn run(app: &App, assets: &Arc<AssetsService>, workspace: &str, source_id: &str) -> TriggerOutcome {
    let mut event = trigger::manual_event(workspace, source_id);
    event.scheduled = true;
    trigger::deliver(app, assets, &event)
}

/// One execution in the history, holding `objects` distinct objects, each
/// received once.
fn one_execution_with_every_object_once(assets: &AssetsService, source_id: &str, objects: u64) -> u32 {
    let history = assets.history(source_id).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].status, Outcome::Completed, "{history:?}");
    let id = history[0].execution_id.clone().unwrap();
    let state = assets.state();
    let execution = state.execution_by_id(&id).unwrap();
    assert_eq!(execution.objects.len() as u64, objects, "every object arrived");
    assert_eq!(execution.received, objects, "no object was received twice");
    history[0].invocations.unwrap_or(1)
}

#[test]
fn two_million_objects_under_a_55_second_limit_complete_as_one_execution_across_invocations() {
    // 2,000 pages of a slow API (2 s each, simulated): 4,000 s of work,
    // far past one 55 s invocation.
    let clock = Arc::new(VirtualClock::new("2026-11-28T09:00:00Z".parse().unwrap()));
    let (assets, workspace, source_id) = world(clock.clone());
    let objects = 2_000_000;
    let source = SlowSource {
        inner: Arc::new(SyntheticSource {
            objects,
            page_size: 1000,
            object_types: vec!["server".into(), "laptop".into(), "switch".into()],
            // One attribute keeps the mock's copy of 2 M objects small.
            attributes: 1,
            ..SyntheticSource::default()
        }),
        clock,
        latency: Duration::from_secs(2),
    };
    let app = App::new("importer", runtime(), Arc::new(source))
        .with_config(config(&[("chunk-max-objects", "1000")]))
        .with_limits(Limits {
            time: Duration::from_secs(55),
            ..Limits::default()
        });
    let outcome = run(&app, &assets, &workspace, &source_id);
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.objects, objects);
    assert!(outcome.left_by_app.is_none());
    let invocations = one_execution_with_every_object_once(&assets, &source_id, objects);
    // 45 s of each 55 (a 10 s margin) reads 22 pages, since a 23rd would
    // end inside the margin: 2,000 in 91.
    assert!((88..=93).contains(&invocations), "{invocations} invocations");
    assert_eq!(invocations, outcome.invocations);
}

#[test]
fn an_import_stopped_hard_at_its_time_limit_goes_on_from_its_checkpoint() {
    // No margin, so the app never pauses by itself: the host stops it at
    // its 1 s limit mid-import (pages take 50 ms of real time), sees that it
    // moved on, and invokes it again.
    let (assets, workspace, source_id) = world(Arc::new(SystemClock));
    let objects = 6_000;
    let source = SlowSource {
        inner: Arc::new(SyntheticSource {
            objects,
            page_size: 100,
            ..SyntheticSource::default()
        }),
        clock: Arc::new(SystemClock),
        latency: Duration::from_millis(50),
    };
    let app = App::new("importer", runtime(), Arc::new(source))
        .with_config(config(&[("chunk-max-objects", "100"), ("time-limit-margin-ms", "0")]))
        .with_limits(Limits {
            time: Duration::from_secs(1),
            ..Limits::default()
        });
    let outcome = run(&app, &assets, &workspace, &source_id);
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert!(outcome.invocations >= 3, "{outcome:?}");
    assert_eq!(
        one_execution_with_every_object_once(&assets, &source_id, objects),
        outcome.invocations
    );
}

#[test]
fn a_cloud_dialect_import_goes_on_across_invocations_with_its_mapping() {
    // 60 pages of 2 s (simulated) under a 55 s limit: the run pauses, and
    // each continuation shapes its chunks from the mapping the first
    // invocation put in place.
    let clock = Arc::new(VirtualClock::new("2026-11-28T09:00:00Z".parse().unwrap()));
    let (assets, workspace, source_id) = world(clock.clone());
    assets.require_mapping(&source_id).unwrap();
    let objects = 6_000;
    let source = SlowSource {
        inner: Arc::new(SyntheticSource {
            objects,
            page_size: 100,
            object_types: vec!["server".into(), "laptop".into()],
            ..SyntheticSource::default()
        }),
        clock,
        latency: Duration::from_secs(2),
    };
    let app = App::new("importer", runtime(), Arc::new(source))
        .with_config(config(&[("chunk-max-objects", "100"), ("api-dialect", "cloud")]))
        .with_limits(Limits {
            time: Duration::from_secs(55),
            ..Limits::default()
        });
    let outcome = run(&app, &assets, &workspace, &source_id);
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    let invocations = one_execution_with_every_object_once(&assets, &source_id, objects);
    assert!(invocations >= 3, "{invocations} invocations");
    let state = assets.state();
    let mapping = state.source_by_id(&source_id).unwrap().mapping.clone().unwrap();
    assert_eq!(mapping["mapping"]["objectTypeMappings"].as_array().unwrap().len(), 2);
}

#[test]
fn a_lost_create_execution_answer_is_adopted_and_leaves_no_orphan() {
    // Every create-execution call is carried out and its answer lost.
    let (assets, workspace, source_id) = world(Arc::new(SystemClock));
    let plan = FaultPlan::parse(r#"{"assetsApi":[{"endpoint":"create","fault":"lost-answer"}]}"#).unwrap();
    let backend = FaultyAssets::new(
        Arc::new(assets_platform::assets::InProcessAssets::new(assets.clone())),
        &plan,
        0,
        assets.clock().clone(),
    );
    let app = App::new(
        "importer",
        runtime(),
        Arc::new(SyntheticSource {
            objects: 700,
            ..SyntheticSource::default()
        }),
    )
    .with_config(config(&[("retry-base-delay-ms", "1")]))
    .with_assets(Arc::new(backend));
    let outcome = run(&app, &assets, &workspace, &source_id);
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert!(outcome.left_by_app.is_none());
    one_execution_with_every_object_once(&assets, &source_id, 700);
    // The next run of the source is not refused: nothing is left ingesting.
    let again = run(&app, &assets, &workspace, &source_id);
    assert_eq!(again.status, RunStatus::Completed, "{again:?}");
}

#[test]
fn a_source_whose_cursors_go_round_in_a_circle_fails_by_name() {
    let (assets, workspace, source_id) = world(Arc::new(SystemClock));
    let plan = FaultPlan::parse(r#"{"source":[{"fault":"loop"}]}"#).unwrap();
    let synthetic = SyntheticSource {
        objects: 5_000,
        page_size: 100,
        ..SyntheticSource::default()
    };
    let source = FaultySource::new(Arc::new(synthetic), 100, &plan, 0);
    let app = App::new("importer", runtime(), Arc::new(source));
    let outcome = run(&app, &assets, &workspace, &source_id);
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");
    let reason = outcome.failure_reason.unwrap();
    assert!(
        reason.contains("cursor \"100\" after page 3") && reason.contains("already read"),
        "{reason}"
    );
    assert!(outcome.left_by_app.is_none());
}

/// A source that answers its first read as a throttled API does, asking for
/// `retry_after_ms`, then reads `inner`.
struct BusyOnce {
    inner: SyntheticSource,
    retry_after_ms: u64,
    answered_busy: AtomicBool,
}

impl DataSourceProvider for BusyOnce {
    fn next_page(&self, cursor: Option<&str>) -> Result<Page, SourceError> {
        if !self.answered_busy.swap(true, Ordering::SeqCst) {
            return Err(SourceError::Busy(BusyError {
                message: "GET https://inventory.example/items answered 429".into(),
                retry_after_ms: Some(self.retry_after_ms),
            }));
        }
        self.inner.next_page(cursor)
    }
}

#[test]
fn a_busy_source_is_waited_for_as_long_as_it_asked() {
    let clock = Arc::new(VirtualClock::new("2026-11-28T09:00:00Z".parse().unwrap()));
    let (assets, workspace, source_id) = world(clock.clone());
    let source = BusyOnce {
        inner: SyntheticSource {
            objects: 300,
            ..SyntheticSource::default()
        },
        retry_after_ms: 7_000,
        answered_busy: AtomicBool::new(false),
    };
    let app = App::new("importer", runtime(), Arc::new(source));
    let before = clock.now();
    let outcome = run(&app, &assets, &workspace, &source_id);
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    one_execution_with_every_object_once(&assets, &source_id, 300);
    let waited = (clock.now() - before).num_milliseconds();
    // The importer's own first backoff is under a second.
    assert!(waited >= 7_000, "waited {waited} ms, not the 7 s asked for");
}

/// A source that fails its first page with `message`.
struct Failing(String);

impl DataSourceProvider for Failing {
    fn next_page(&self, _: Option<&str>) -> Result<Page, SourceError> {
        Err(SourceError::BadResponse(self.0.clone()))
    }
}

fn failed_reason(message: String) -> String {
    let (assets, workspace, source_id) = world(Arc::new(SystemClock));
    let app = App::new("importer", runtime(), Arc::new(Failing(message)));
    let outcome = run(&app, &assets, &workspace, &source_id);
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");
    assert!(
        outcome.left_by_app.is_none(),
        "the app reported its own failure: {outcome:?}"
    );
    let history = assets.history(&source_id).unwrap();
    history[0].failure_reason.clone().unwrap()
}

#[test]
fn a_reason_of_emoji_fits_a_server_that_counts_utf16_units() {
    // 2,000 emoji: 4,000 UTF-16 units. The mock refuses more than 1,024
    // units, as a Java server would, so the app's report only lands if the
    // app cut the reason that way too.
    let reason = failed_reason("😀".repeat(2_000));
    assert!(
        reason.encode_utf16().count() <= 1024,
        "{}",
        reason.encode_utf16().count()
    );
    assert!(reason.ends_with('…'));
}

#[test]
fn credentials_in_a_failure_never_reach_the_history() {
    let reason = failed_reason(
        "GET https://sync:hunter2@cmdb.example.com/api/hosts?limit=50&access_token=tok-9 answered 401: \
         {\"detail\":\"bad credentials\",\"api_key\":\"k-7\"}"
            .into(),
    );
    for secret in ["hunter2", "tok-9", "k-7"] {
        assert!(!reason.contains(secret), "{secret} in the history: {reason}");
    }
    assert!(
        reason.contains("https://***@cmdb.example.com/api/hosts?limit=50&access_token=***"),
        "{reason}"
    );
}
