//! The real importer component in the real host, against the in-process
//! Assets API (and the misbehaving test guest, where a guest must count its
//! own invocations).

mod common;

use assets_platform::assets::{ExecutionStatus, Outcome};
use assets_platform::source::SyntheticSource;
use assets_platform::trigger::{self, App, RunStatus};
use assets_runtime::Runtime;
use common::World;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

fn scheduled_event(world: &World) -> assets_runtime::bindings::import_callback::TriggerEvent {
    let mut event = trigger::manual_event(&world.workspace, &world.source_id);
    event.scheduled = true;
    event.schedule_id = Some("schedule-1".into());
    event
}

#[test]
fn a_scheduled_trigger_imports_every_object_exactly_once() {
    let world = World::new();
    let source = SyntheticSource {
        objects: 2500,
        page_size: 300,
        object_types: vec!["server".into(), "laptop".into()],
        ..Default::default()
    };
    let expected: Vec<(String, String)> = (0..2500)
        .map(|i| {
            let (t, o) = source.object(i);
            (t, o.external_id)
        })
        .collect();
    let app = world.app(source, &[("chunk-max-objects", "200")]);
    let event = scheduled_event(&world);
    let outcome = trigger::deliver(&app, &world.assets, &event);

    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.objects, 2500);
    let execution_id = outcome.execution_id.clone().unwrap();

    let state = world.assets.state();
    let execution = state.execution_by_id(&execution_id).unwrap();
    // Completion was signalled: PROCESSING, then DONE on the clock.
    assert_eq!(execution.status, ExecutionStatus::Processing);
    assert!(execution.scheduled, "the execution is marked scheduled");
    assert_eq!(execution.received, 2500, "no object was sent twice");
    let mut stored: Vec<(String, String)> = execution.objects.keys().cloned().collect();
    stored.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(stored, expected, "every object arrived");
    assert_eq!(execution.chunks, outcome.chunks);
    // 1250 objects of each type, at most 200 a chunk: 7 chunks per type.
    assert_eq!(outcome.chunks, 14);

    let entry = state.history_of(&execution_id).unwrap();
    assert_eq!(entry.status, Outcome::Completed);
    assert!(entry.scheduled);
    assert_eq!(entry.objects, 2500);
    assert_eq!(entry.schedule_id.as_deref(), Some("schedule-1"));
    assert_eq!(entry.occurrence_id.as_deref(), Some(event.occurrence_id.as_str()));
    assert!(entry.ended_at.is_some());
}

#[test]
fn chunk_counts_follow_the_configured_limit() {
    let world = World::new();
    let app = world.app(
        SyntheticSource {
            objects: 2500,
            page_size: 1000,
            ..Default::default()
        },
        &[("chunk-max-objects", "100")],
    );
    let outcome = trigger::deliver(&app, &world.assets, &scheduled_event(&world));
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(outcome.chunks, 25);

    let world = World::new();
    let app = world.app(
        SyntheticSource {
            objects: 2500,
            page_size: 1000,
            ..Default::default()
        },
        &[("chunk-max-bytes", "10000")],
    );
    let outcome = trigger::deliver(&app, &world.assets, &scheduled_event(&world));
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(outcome.objects, 2500);
    // A synthetic object serializes to 180-200 bytes, so a 10 kB chunk holds
    // at most ~55: the byte limit, not the default 500 objects, sets the count.
    assert!(outcome.chunks >= 2500 / 55, "chunks: {}", outcome.chunks);
}

#[test]
fn a_source_timeout_leaves_a_failed_history_entry_with_the_sources_reason() {
    let world = World::new();
    let app = world.app(
        SyntheticSource {
            objects: 2500,
            page_size: 250,
            fail_after_page: Some(1),
            ..Default::default()
        },
        &[],
    );
    let outcome = trigger::deliver(&app, &world.assets, &scheduled_event(&world));

    assert_eq!(outcome.status, RunStatus::Failed);
    let reason = outcome.failure_reason.clone().unwrap();
    assert!(
        reason.starts_with("Failed to fetch data from third-party API: Connection timeout"),
        "{reason}"
    );
    assert!(
        reason.contains("inventory.example.com"),
        "the reason names the call: {reason}"
    );
    assert!(reason.chars().count() <= 1024);

    let history = world.assets.history(&world.source_id).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, Outcome::Failed);
    assert_eq!(history[0].failure_reason.as_deref(), Some(reason.as_str()));
    assert!(history[0].scheduled);
    let state = world.assets.state();
    let execution = state.execution_by_id(outcome.execution_id.as_deref().unwrap()).unwrap();
    assert_eq!(execution.status, ExecutionStatus::Failed);
}

#[test]
fn a_manual_run_is_recorded_as_not_scheduled() {
    let world = World::new();
    let app = world.app(
        SyntheticSource {
            objects: 10,
            ..Default::default()
        },
        &[],
    );
    let event = trigger::manual_event(&world.workspace, &world.source_id);
    let outcome = trigger::deliver(&app, &world.assets, &event);
    assert_eq!(outcome.status, RunStatus::Completed);
    let history = world.assets.history(&world.source_id).unwrap();
    assert!(!history[0].scheduled);
}

#[test]
fn a_trigger_while_an_execution_is_ingesting_does_not_start_and_says_why() {
    let world = World::new();
    let path = format!(
        "/jsm/assets/workspace/{}/v1/importsource/{}/executions",
        world.workspace, world.source_id
    );
    assert_eq!(
        world.assets.handle("POST", &path, br#"{"scheduled":false}"#).status,
        201
    );

    let app = world.app(
        SyntheticSource {
            objects: 10,
            ..Default::default()
        },
        &[],
    );
    let outcome = trigger::deliver(&app, &world.assets, &scheduled_event(&world));
    assert_eq!(outcome.status, RunStatus::NotStarted);
    let reason = outcome.failure_reason.unwrap();
    assert!(reason.contains("409 IN_PROGRESS"), "{reason}");
}

#[test]
fn a_bad_app_setting_fails_the_run_and_names_the_key() {
    let world = World::new();
    let app = world.app(
        SyntheticSource {
            objects: 10,
            ..Default::default()
        },
        &[("chunk-max-bytes", "tiny")],
    );
    let outcome = trigger::deliver(&app, &world.assets, &scheduled_event(&world));
    assert_eq!(outcome.status, RunStatus::Failed);
    let history = world.assets.history(&world.source_id).unwrap();
    let reason = history[0].failure_reason.as_deref().unwrap();
    // The key, never the value: a malformed setting may be a credential.
    assert!(
        reason.contains("chunk-max-bytes") && !reason.contains("tiny"),
        "{reason}"
    );
}

#[test]
fn each_trigger_gets_a_fresh_instance() {
    // The misbehaving guest's `count` keeps a static counter of its
    // invocations and reports it as its objects: an instance (or its memory)
    // carried over from one trigger to the next would report 2, then 3.
    let world = World::new();
    let counting = App::new("counting", misbehaving(), Arc::new(SyntheticSource::default()))
        .with_config(BTreeMap::from([("test-behaviour".to_owned(), "count".to_owned())]));
    let counts: Vec<u64> = (0..3)
        .map(|_| {
            let outcome = trigger::deliver(&counting, &world.assets, &scheduled_event(&world));
            assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
            assert_eq!(outcome.execution_id.as_deref(), Some("count"), "{outcome:?}");
            outcome.objects
        })
        .collect();
    assert_eq!(counts, [1, 1, 1], "each trigger's instance counted from zero");

    // And the real importer: two runs in a row both complete with their own
    // executions and all their objects.
    let app = world.app(
        SyntheticSource {
            objects: 50,
            ..Default::default()
        },
        &[],
    );
    let first = trigger::deliver(&app, &world.assets, &scheduled_event(&world));
    let second = trigger::deliver(&app, &world.assets, &scheduled_event(&world));
    assert_eq!(
        (first.status, second.status),
        (RunStatus::Completed, RunStatus::Completed)
    );
    assert_ne!(first.execution_id, second.execution_id);
    assert_eq!((first.objects, second.objects), (50, 50));
}

/// The misbehaving test guest built by `make test-guest`.
fn misbehaving() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let path = std::env::var_os("ASSETS_TEST_GUEST")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("target/wasm32-wasip2/wasm/misbehaving_guest.wasm")
                });
            Arc::new(Runtime::from_file(&path).unwrap_or_else(|e| panic!("{e:#}\n(run the tests with `make test`)")))
        })
        .clone()
}
