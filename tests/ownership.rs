//! Runs are owned by the delivery that created them: the real component in
//! the real host, with another delivery's execution appearing on the same
//! import source in the middle of a run. The platform's clean-up after a
//! delivery fails what that delivery left ingesting, and nothing else.
//!
//! - the next day's run starts the moment this day's run completes: this
//!   day's delivery, finishing, leaves it running;
//! - two callbacks for one occurrence (a duplicate delivery, same attempt):
//!   the one that lost the race to create the execution leaves the
//!   winner's running.

mod common;

use assets_platform::assets::{AssetsService, Delivery, ExecutionStatus, InProcessAssets, SourceType};
use assets_platform::clock::VirtualClock;
use assets_platform::confine::ConfinedAssets;
use assets_platform::source::SyntheticSource;
use assets_platform::trigger::{self, App, RunStatus};
use assets_runtime::bindings::assets_api::{CallError, Method, Response};
use assets_runtime::bindings::import_callback::TriggerEvent;
use assets_runtime::{ApiPath, AssetsBackend};
use common::runtime;
use std::sync::{Arc, Mutex};

/// When, around the app's own calls, the other delivery creates its
/// execution.
#[derive(Clone, Copy, PartialEq)]
enum When {
    /// Just before the app's create-execution call reaches the API.
    BeforeTheAppCreates,
    /// Just after the app's completion reached the API.
    AfterTheAppCompletes,
}

/// The app's Assets API, with another delivery creating an execution on the
/// same source once, at `when`. Keeps the id it created.
struct Interloper {
    inner: Arc<dyn AssetsBackend>,
    other: ConfinedAssets,
    when: When,
    created: Mutex<Option<String>>,
}

impl Interloper {
    fn interlope(&self, path: &ApiPath) {
        let mut created = self.created.lock().unwrap();
        if created.is_some() {
            return;
        }
        let create = ApiPath::parse(
            path.workspace_id(),
            &format!("importsource/{}/executions", path.import_source().unwrap()),
        )
        .unwrap();
        let answer = self
            .other
            .call(Method::Post, &create, Some(r#"{"scheduled":true}"#))
            .unwrap();
        assert_eq!(answer.status, 201, "the other delivery's execution: {}", answer.body);
        // The real API's answer holds the id in its links only.
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let link = body["links"]["submitResults"].as_str().unwrap();
        let id = link.trim_end_matches("/data").rsplit('/').next().unwrap();
        *created = Some(id.to_owned());
    }
}

impl AssetsBackend for Interloper {
    fn call(&self, method: Method, path: &ApiPath, body: Option<&str>) -> Result<Response, CallError> {
        let segments: Vec<&str> = path.segments().collect();
        let creates = matches!(method, Method::Post) && segments.len() == 3 && segments[2] == "executions";
        if creates && self.when == When::BeforeTheAppCreates {
            self.interlope(path);
        }
        let answer = self.inner.call(method, path, body);
        let completes = matches!(method, Method::Post) && segments.ends_with(&["history", "completed"]);
        if completes && self.when == When::AfterTheAppCompletes {
            self.interlope(path);
        }
        answer
    }
}

struct Run {
    assets: Arc<AssetsService>,
    source_id: String,
    outcome: trigger::TriggerOutcome,
    other: String,
}

/// Delivers `event` to the real importer while another delivery of
/// `other_event` creates its execution at `when`.
fn run(when: When, same_occurrence: bool) -> Run {
    let clock = Arc::new(VirtualClock::new("2026-12-01T09:00:00Z".parse().unwrap()));
    let assets = Arc::new(AssetsService::new(clock));
    let workspace = assets.create_workspace();
    let source_id = assets
        .create_import_source(&workspace, SourceType::External, Some("importer".into()))
        .unwrap();
    let mut event = trigger::manual_event(&workspace, &source_id);
    event.scheduled = true;
    let other_event: TriggerEvent = if same_occurrence {
        event.clone()
    } else {
        let mut next_day = trigger::manual_event(&workspace, &source_id);
        next_day.scheduled = true;
        next_day
    };
    let direct: Arc<dyn AssetsBackend> = Arc::new(InProcessAssets::new(assets.clone()));
    let other = ConfinedAssets::new(direct.clone(), assets.clone(), "importer", source_id.clone())
        .for_delivery(Delivery::new(other_event.occurrence_id.clone(), other_event.attempt));
    let interloper = Arc::new(Interloper {
        inner: direct,
        other,
        when,
        created: Mutex::new(None),
    });
    let source = SyntheticSource {
        objects: 30,
        page_size: 10,
        ..SyntheticSource::default()
    };
    let app = App::new("importer", runtime(), Arc::new(source)).with_assets(interloper.clone());
    let outcome = trigger::deliver(&app, &assets, &event);
    let other = interloper
        .created
        .lock()
        .unwrap()
        .clone()
        .expect("the other delivery created its execution");
    Run {
        assets,
        source_id,
        outcome,
        other,
    }
}

fn status(run: &Run, execution: &str) -> ExecutionStatus {
    run.assets.state().execution_by_id(execution).unwrap().status
}

#[test]
fn a_finished_delivery_leaves_the_next_runs_execution_running() {
    let run = run(When::AfterTheAppCompletes, false);
    assert_eq!(run.outcome.status, RunStatus::Completed, "{:?}", run.outcome);
    assert_eq!(run.outcome.left_by_app, None, "{:?}", run.outcome);
    let own = run.outcome.execution_id.clone().unwrap();
    assert_ne!(own, run.other);
    assert_eq!(status(&run, &own), ExecutionStatus::Processing);
    assert_eq!(
        status(&run, &run.other),
        ExecutionStatus::Ingesting,
        "the next run's execution is not this delivery's to fail: {:?}",
        run.assets.history(&run.source_id).unwrap()
    );
}

#[test]
fn the_delivery_that_lost_the_create_race_leaves_the_winners_execution_running() {
    let run = run(When::BeforeTheAppCreates, true);
    assert_ne!(run.outcome.status, RunStatus::Completed, "{:?}", run.outcome);
    assert_ne!(
        run.outcome.execution_id.as_deref(),
        Some(run.other.as_str()),
        "{:?}",
        run.outcome
    );
    assert_eq!(run.outcome.left_by_app, None, "{:?}", run.outcome);
    assert_eq!(
        status(&run, &run.other),
        ExecutionStatus::Ingesting,
        "the winner's execution is not the loser's to fail: {:?}",
        run.assets.history(&run.source_id).unwrap()
    );
}
