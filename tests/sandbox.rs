//! The sandbox holds: limits stop misbehaving guests with a recorded reason
//! while other triggers go on, and nothing a guest can call reveals the
//! Assets credential.

mod common;

use assets_platform::assets::{AssetsService, ExecutionStatus, Outcome, SourceType};
use assets_platform::clock::SystemClock;
use assets_platform::source::SyntheticSource;
use assets_platform::trigger::{self, App, RunStatus};
use assets_runtime::{Limits, Runtime};
use common::World;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

fn misbehaving_app(behaviour: &str, limits: Limits) -> App {
    App::new("misbehaving", misbehaving(), Arc::new(SyntheticSource::default()))
        .with_config(BTreeMap::from([("test-behaviour".to_owned(), behaviour.to_owned())]))
        .with_limits(limits)
}

fn scheduled(world: &World) -> assets_runtime::bindings::import_callback::TriggerEvent {
    let mut event = trigger::manual_event(&world.workspace, &world.source_id);
    event.scheduled = true;
    event
}

#[test]
fn a_looping_guest_is_stopped_by_its_time_limit_while_other_triggers_complete() {
    let looping = World::new();
    let app = misbehaving_app(
        "loop",
        Limits {
            time: Duration::from_secs(1),
            ..Limits::default()
        },
    );
    let (sent, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = trigger::deliver(&app, &looping.assets, &scheduled(&looping));
        let _ = sent.send((outcome, looping));
    });

    // Meanwhile, a well-behaved app imports.
    let good = World::new();
    let importer = good.app(
        SyntheticSource {
            objects: 300,
            ..Default::default()
        },
        &[],
    );
    let outcome = trigger::deliver(&importer, &good.assets, &scheduled(&good));
    assert_eq!(outcome.status, RunStatus::Completed);

    // A hang guard, not a timing: minutes past a 1 s limit. What shows the
    // limit stopped the guest is the recorded reason and the single
    // invocation (a guest that moved nothing is not invoked again).
    let (outcome, looping) = stopped
        .recv_timeout(Duration::from_secs(300))
        .expect("hang guard: the looping guest was not stopped by its 1 s time limit");
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.invocations, 1, "{outcome:?}");
    let reason = outcome.failure_reason.unwrap();
    assert!(
        reason.starts_with("app exceeded the 1 s time limit (app misbehaving)"),
        "{reason}"
    );
    let history = looping.assets.history(&looping.source_id).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, Outcome::Failed);
    assert_eq!(history[0].failure_reason.as_deref(), Some(reason.as_str()));
}

#[test]
fn a_memory_hungry_guest_is_stopped_at_its_memory_limit() {
    let world = World::new();
    let app = misbehaving_app(
        "allocate",
        Limits {
            memory_bytes: 64 << 20,
            ..Limits::default()
        },
    );
    let outcome = trigger::deliver(&app, &world.assets, &scheduled(&world));
    assert_eq!(outcome.status, RunStatus::Failed);
    let reason = outcome.failure_reason.unwrap();
    assert!(reason.contains("app exceeded the 64 MiB memory limit"), "{reason}");
    assert_eq!(
        world.assets.history(&world.source_id).unwrap()[0].status,
        Outcome::Failed
    );

    // The host goes on serving.
    let importer = world.app(
        SyntheticSource {
            objects: 10,
            ..Default::default()
        },
        &[],
    );
    assert_eq!(
        trigger::deliver(&importer, &world.assets, &scheduled(&world)).status,
        RunStatus::Completed
    );
}

#[test]
fn a_guest_that_traps_after_creating_an_execution_leaves_a_failed_entry_not_a_stuck_one() {
    let world = World::new();
    let app = misbehaving_app("trap", Limits::default());
    let outcome = trigger::deliver(&app, &world.assets, &scheduled(&world));
    assert_eq!(outcome.status, RunStatus::Failed);
    let execution_id = outcome.execution_id.expect("the execution the guest created");
    let reason = outcome.failure_reason.unwrap();
    assert!(reason.contains("app trapped"), "{reason}");
    let state = world.assets.state();
    assert_eq!(
        state.execution_by_id(&execution_id).unwrap().status,
        ExecutionStatus::Failed
    );
    assert_eq!(
        state.history_of(&execution_id).unwrap().failure_reason.as_deref(),
        Some(reason.as_str())
    );
}

#[test]
fn nothing_the_guest_can_call_reveals_the_assets_credential() {
    const TOKEN: &str = "tok-9f3c2a-never-in-a-guest";
    let assets = Arc::new(AssetsService::new(Arc::new(SystemClock)).with_credential(TOKEN));
    let workspace = assets.create_workspace();
    let source_id = assets
        .create_import_source(&workspace, SourceType::External, None)
        .unwrap();
    let app = misbehaving_app("probe", Limits::default());
    let mut event = trigger::manual_event(&workspace, &source_id);
    event.scheduled = true;
    let outcome = trigger::deliver(&app, &assets, &event);

    let seen = &outcome.guest_output;
    assert!(seen.contains("api importsource/"), "the probe ran: {seen}");
    // The host authenticated the guest's calls: they got answers, not 401s.
    assert!(
        seen.contains("/executions/status: 404") || seen.contains("/executions/status: 200"),
        "{seen}"
    );
    assert!(!seen.contains(" 401 "), "{seen}");
    assert!(!seen.contains(TOKEN), "the credential leaked into the guest: {seen}");
    assert!(!seen.to_lowercase().contains("bearer"), "{seen}");
    // Paths outside the workspace and URLs never reached the API.
    assert!(
        seen.contains("api ../../../../etc/passwd: error CallError::InvalidPath"),
        "{seen}"
    );
    assert!(
        seen.contains("api https://api.atlassian.com/me: error CallError::InvalidPath"),
        "{seen}"
    );
    // No egress was granted.
    assert!(seen.contains("http: Err(HttpError::Denied("), "{seen}");
    // And without the credential the API refuses.
    let path = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source_id}/history");
    assert_eq!(assets.handle_authorized("GET", &path, None, b"").status, 401);
    assert_eq!(
        assets
            .handle_authorized("GET", &path, Some(&format!("Bearer {TOKEN}")), b"")
            .status,
        200
    );
}
