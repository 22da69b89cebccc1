//! Delivering a trigger to an app, and recording what happened.
//!
//! This is the platform's side of one firing: build the event, run the app's
//! `import-callback` in the sandbox, and make sure the import history tells
//! the truth afterwards — including when the app trapped and could not report
//! its own failure.

use crate::assets::AssetsService;
use crate::bindings::import_callback::{RunError, TriggerEvent};
use crate::runtime::Runtime;
use crate::sandbox::{Grants, NoEgress, OutboundHttp};
use crate::source::DataSourceProvider;
use serde::Serialize;
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
}

impl App {
    /// An app with no settings and no egress.
    pub fn new(
        name: impl Into<String>,
        runtime: Arc<Runtime>,
        source: Arc<dyn DataSourceProvider>,
    ) -> App {
        App {
            name: name.into(),
            runtime,
            source,
            config: Arc::new(BTreeMap::new()),
            http: Arc::new(NoEgress),
        }
    }

    /// Sets the app's settings.
    pub fn with_config(mut self, config: BTreeMap<String, String>) -> App {
        self.config = Arc::new(config);
        self
    }
}

/// How a trigger ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    /// Why it failed or did not start.
    pub failure_reason: Option<String>,
    /// What the app wrote to stdout/stderr.
    #[serde(skip_serializing_if = "String::is_empty")]
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

/// Runs `event` in `app` against `assets` and returns what happened. A trap
/// never escapes: it becomes a failed outcome, and a failed history entry if
/// the app had created an execution.
pub fn deliver(app: &App, assets: &Arc<AssetsService>, event: &TriggerEvent) -> TriggerOutcome {
    let grants = Grants {
        workspace_id: event.workspace_id.clone(),
        assets: assets.clone(),
        source: app.source.clone(),
        config: app.config.clone(),
        http: app.http.clone(),
    };
    let invocation = app.runtime.invoke(event, grants);
    let mut outcome = TriggerOutcome {
        execution_id: None,
        status: RunStatus::Failed,
        scheduled: event.scheduled,
        occurrence_id: event.occurrence_id.clone(),
        chunks: 0,
        objects: 0,
        retries: 0,
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
        Err(trap) => {
            let reason = format!(
                "app {} stopped before finishing the import: {trap:#}",
                app.name
            );
            // The app could not report its own failure: do it on its behalf,
            // so the history never shows a run stuck in "running".
            outcome.execution_id = assets.fail_ingesting(&event.import_source_id, &reason);
            if outcome.execution_id.is_none() {
                outcome.status = RunStatus::NotStarted;
            }
            outcome.failure_reason = Some(reason);
        }
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
