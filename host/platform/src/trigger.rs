//! Delivering a trigger to an app, and recording what happened.
//!
//! This is the platform's side of one firing: build the event, run the app's
//! `import-callback` in the sandbox, and make sure the import history tells
//! the truth afterwards — including when the app trapped and could not report
//! its own failure.

use crate::assets::InProcessAssets;
use crate::assets::{AssetsService, HistoryEntry, Outcome};
use crate::clock::ClockTimer;
use assets_runtime::bindings::import_callback::{RunError, TriggerEvent};
use assets_runtime::{AppStorage, AssetsBackend, DataSourceProvider, Grants, NoEgress, OutboundHttp};
use assets_runtime::{Limits, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An installed app: its component and what it is granted.
#[derive(Clone)]
pub struct App {
    /// App name, for logs.
    pub name: String,
    /// The compiled component.
    pub runtime: Arc<Runtime>,
    /// Where its records come from.
    pub source: Arc<dyn DataSourceProvider>,
    /// Its settings.
    pub config: Arc<BTreeMap<String, String>>,
    /// Its outbound HTTP.
    pub http: Arc<dyn OutboundHttp>,
    /// Its storage, kept across triggers.
    pub storage: AppStorage,
    /// Its time and memory limits.
    pub limits: Limits,
    /// Where its Assets API calls go, when not straight to the service (a
    /// fault-injecting wrapper, a real HTTP client).
    pub assets: Option<Arc<dyn AssetsBackend>>,
}

impl App {
    /// An app with no settings, no egress, empty storage and the platform's
    /// default limits.
    pub fn new(name: impl Into<String>, runtime: Arc<Runtime>, source: Arc<dyn DataSourceProvider>) -> App {
        App {
            name: name.into(),
            runtime,
            source,
            config: Arc::new(BTreeMap::new()),
            http: Arc::new(NoEgress),
            storage: AppStorage::default(),
            limits: Limits::default(),
            assets: None,
        }
    }

    /// Sets the app's limits.
    pub fn with_limits(mut self, limits: Limits) -> App {
        self.limits = limits;
        self
    }

    /// Sets the app's outbound HTTP.
    pub fn with_http(mut self, http: Arc<dyn OutboundHttp>) -> App {
        self.http = http;
        self
    }

    /// Routes the app's Assets API calls through `backend`.
    pub fn with_assets(mut self, backend: Arc<dyn AssetsBackend>) -> App {
        self.assets = Some(backend);
        self
    }

    /// Sets the app's settings.
    pub fn with_config(mut self, config: BTreeMap<String, String>) -> App {
        self.config = Arc::new(config);
        self
    }
}

/// How a trigger ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Completion was signalled.
    Completed,
    /// An execution was created and failed.
    Failed,
    /// No execution was created.
    NotStarted,
}

/// What one trigger did, as the CLI and tests see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOutcome {
    /// The execution the app created, if any.
    pub execution_id: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// Whether the trigger was a schedule's.
    pub scheduled: bool,
    /// The occurrence delivered.
    pub occurrence_id: String,
    /// Chunks accepted.
    pub chunks: u32,
    /// Objects accepted.
    pub objects: u64,
    /// Calls repeated after transient failures.
    pub retries: u32,
    /// True when the app found the occurrence already handled and reported
    /// the earlier run.
    pub replayed: bool,
    /// Why it failed or did not start.
    pub failure_reason: Option<String>,
    /// What the app wrote to stdout/stderr.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub guest_output: String,
    /// Wall time of the invocation, in milliseconds.
    pub elapsed_ms: f64,
}

/// A manual (unscheduled) trigger event.
pub fn manual_event(workspace_id: &str, import_source_id: &str) -> TriggerEvent {
    TriggerEvent {
        workspace_id: workspace_id.to_owned(),
        import_source_id: import_source_id.to_owned(),
        scheduled: false,
        schedule_id: None,
        occurrence_id: uuid::Uuid::new_v4().to_string(),
        nominal_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        attempt: 1,
    }
}

fn ingesting(assets: &AssetsService, source_id: &str) -> Option<String> {
    assets.state().ingesting(source_id).map(|e| e.id.clone())
}

/// Runs `event` in `app` against `assets` and returns what happened. A trap
/// or a limit never escapes: it becomes a failed outcome, and a failed
/// history entry if the app had created an execution.
pub fn deliver(app: &App, assets: &Arc<AssetsService>, event: &TriggerEvent) -> TriggerOutcome {
    let backend = app
        .assets
        .clone()
        .unwrap_or_else(|| Arc::new(InProcessAssets::new(assets.clone())));
    let grants = Grants::new(event.workspace_id.clone(), backend)
        .with_source(app.source.clone())
        .with_config(app.config.clone())
        .with_http(app.http.clone())
        .with_storage(Arc::new(app.storage.clone()))
        .with_timer(Arc::new(ClockTimer(assets.clock().clone())));
    let ingesting_before = ingesting(assets, &event.import_source_id);
    let invocation = app.runtime.invoke(event, grants, app.limits);
    let mut outcome = TriggerOutcome {
        execution_id: None,
        status: RunStatus::Failed,
        scheduled: event.scheduled,
        occurrence_id: event.occurrence_id.clone(),
        chunks: 0,
        objects: 0,
        retries: 0,
        replayed: false,
        failure_reason: None,
        guest_output: invocation.guest_output,
        elapsed_ms: invocation.elapsed.as_secs_f64() * 1e3,
    };
    match invocation.result {
        Ok(Ok(report)) => {
            outcome.status = RunStatus::Completed;
            outcome.execution_id = Some(report.execution_id);
            outcome.chunks = report.chunks_sent;
            outcome.objects = report.objects_sent;
            outcome.retries = report.retries;
            outcome.replayed = report.replayed;
        }
        Ok(Err(RunError::ExecutionNotCreated(reason))) => {
            outcome.status = RunStatus::NotStarted;
            outcome.failure_reason = Some(reason);
        }
        Ok(Err(RunError::ImportFailed(failed))) => {
            outcome.execution_id = Some(failed.execution_id);
            outcome.chunks = failed.chunks_sent;
            outcome.objects = failed.objects_sent;
            outcome.failure_reason = Some(failed.reason);
        }
        Err(fault) => {
            let reason = format!("{fault} (app {}); the import was stopped before it finished", app.name);
            tracing::warn!(app = %app.name, %fault, "guest stopped");
            outcome.failure_reason = Some(reason);
        }
    }
    // Whatever the app said, an execution it started must not be left
    // ingesting: the platform fails it on the app's behalf, so the history
    // never shows a run stuck in "running".
    let left = ingesting(assets, &event.import_source_id).filter(|id| Some(id) != ingesting_before.as_ref());
    if let Some(left) = left {
        let reason = outcome.failure_reason.clone().unwrap_or_else(|| {
            format!(
                "app {} returned without completing or failing execution {left}",
                app.name
            )
        });
        if assets.fail_ingesting(&event.import_source_id, &reason).is_some() {
            outcome.status = RunStatus::Failed;
            outcome.execution_id = Some(left);
            outcome.failure_reason = Some(reason);
        }
    }
    // Stopped before it created an execution: the history still says so.
    if outcome.status == RunStatus::Failed && outcome.execution_id.is_none() {
        let reason: String = outcome
            .failure_reason
            .clone()
            .unwrap_or_default()
            .chars()
            .take(1024)
            .collect();
        let now = assets.clock().now();
        assets.state().record(HistoryEntry {
            execution_id: None,
            import_source_id: event.import_source_id.clone(),
            scheduled: event.scheduled,
            schedule_id: event.schedule_id.clone(),
            occurrence_id: Some(event.occurrence_id.clone()),
            status: Outcome::Failed,
            failure_reason: Some(reason),
            objects: 0,
            started_at: now,
            ended_at: Some(now),
        });
    }
    if let Some(id) = &outcome.execution_id {
        assets.state().annotate(
            id,
            event.schedule_id.clone(),
            event.scheduled.then(|| event.occurrence_id.clone()),
        );
    }
    if !outcome.guest_output.is_empty() {
        for line in outcome.guest_output.lines() {
            tracing::info!(app = %app.name, execution = ?outcome.execution_id, "guest: {line}");
        }
    }
    tracing::info!(
        app = %app.name,
        execution = ?outcome.execution_id,
        status = ?outcome.status,
        objects = outcome.objects,
        "trigger delivered"
    );
    outcome
}
