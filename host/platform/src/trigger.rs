//! Delivering a trigger to an app, and recording what happened.
//!
//! This is the platform's side of one firing: build the event, run the app's
//! `import-callback` in the sandbox, and make sure the import history tells
//! the truth afterwards — including when the app trapped and could not report
//! its own failure.
//!
//! One delivery may take several invocations: an app that pauses at a
//! checkpoint before its time limit (`run-outcome::paused`), or that the
//! host stopped at the limit after it had sent data, is called again with
//! the same event and goes on from its checkpoint on the same execution,
//! until it completes, fails, or stops making progress.
//!
//! Text that came from the app — its failure reports, its output, a trap's
//! message — is scrubbed here of the app's credential settings by value
//! ([`assets_redact::Secrets::from_settings`]), before any cut: the host
//! handed the app its config, so it knows the values, and this second net
//! holds even for an app that forgot to hide them.

use crate::assets::InProcessAssets;
use crate::assets::{AssetsService, Delivery, HistoryEntry, Outcome};
use crate::clock::ClockTimer;
use crate::confine::ConfinedAssets;
use assets_redact::Secrets;
use assets_runtime::bindings::assets_api::{CallError, Method, Response};
use assets_runtime::bindings::import_callback::{RunError, RunOutcome, TriggerEvent};
use assets_runtime::sandbox::RequestWindow;
use assets_runtime::{ApiPath, AppStorage, AssetsBackend, DataSourceProvider, Fault, Grants, NoEgress, OutboundHttp};
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
    /// The limits of the invocations after the first, when they differ: on
    /// a Forge-like platform the first runs in the web trigger (55 s) and
    /// the rest as queued async work (900 s).
    pub continue_limits: Option<Limits>,
    /// Where its Assets API calls go, when not straight to the service (a
    /// fault-injecting wrapper, a real HTTP client).
    pub assets: Option<Arc<dyn AssetsBackend>>,
    /// Its outbound requests of the last minute, across all its
    /// invocations: the request-rate limit is the app's, not a call's.
    pub requests: Arc<RequestWindow>,
    /// Whether its waits on a virtual clock are its own
    /// ([`ClockTimer::own`]) rather than moving the platform's clock: on a
    /// platform that hosts several apps, no app may move the others' time.
    pub own_time: bool,
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
            continue_limits: None,
            assets: None,
            requests: Arc::new(RequestWindow::default()),
            own_time: false,
        }
    }

    /// Makes the app's waits on a virtual clock its own: they move the time
    /// it sees, not the platform's clock.
    pub fn with_own_time(mut self) -> App {
        self.own_time = true;
        self
    }

    /// Sets the app's limits.
    pub fn with_limits(mut self, limits: Limits) -> App {
        self.limits = limits;
        self
    }

    /// Sets the limits of every invocation after the first of a run.
    pub fn with_continue_limits(mut self, limits: Limits) -> App {
        self.continue_limits = Some(limits);
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

/// Most invocations one delivery takes, however the app keeps pausing.
pub const MAX_INVOCATIONS: u32 = 10_000;
/// Invocations in a row that may end without the import moving on before
/// the platform stops calling the app.
pub const MAX_STALLS: u32 = 3;

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
    /// Wall time of the invocations, in milliseconds.
    pub elapsed_ms: f64,
    /// Times the app was invoked for this delivery: more than one when it
    /// went on from a checkpoint after pausing or being stopped at its time
    /// limit.
    #[serde(default = "one")]
    pub invocations: u32,
    /// An execution the app itself left ingesting when it returned or was
    /// stopped, which the platform then failed. A correct app leaves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_by_app: Option<String>,
}

fn one() -> u32 {
    1
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

/// The ingesting execution of `source_id` and the objects it has received:
/// what changes when an import moves on. `Err` when the state cannot be
/// read as stored.
fn progress(assets: &AssetsService, source_id: &str) -> Result<Option<(String, u64)>, crate::assets::ApiError> {
    Ok(assets.read()?.ingesting(source_id).map(|e| (e.id.clone(), e.received)))
}

/// Appends `more` to a delivery's `output`, keeping the whole within
/// [`GUEST_LOG_LIMIT`](assets_runtime::sandbox::GUEST_LOG_LIMIT) and
/// counting what is left out in `dropped`.
fn keep_output(output: &mut String, dropped: &mut usize, more: &str) {
    let room = assets_runtime::sandbox::GUEST_LOG_LIMIT.saturating_sub(output.len());
    let mut cut = more.len().min(room);
    while !more.is_char_boundary(cut) {
        cut -= 1;
    }
    output.push_str(&more[..cut]);
    *dropped += more.len() - cut;
}

/// An app's Assets API, with its failure reports (`POST …/history/failed`)
/// scrubbed of the app's secrets by value before the history records them.
struct ScrubbedReports {
    inner: Arc<dyn AssetsBackend>,
    secrets: Arc<Secrets>,
}

impl AssetsBackend for ScrubbedReports {
    fn call(&self, method: Method, path: &ApiPath, body: Option<&str>) -> Result<Response, CallError> {
        let report = matches!(method, Method::Post) && path.path().ends_with("/history/failed");
        let scrubbed = body
            .filter(|_| report && !self.secrets.is_empty())
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .and_then(|mut json| {
                let reason = json.get_mut("failureReason")?;
                // Never longer: a registered value has at least as many
                // characters as the mask, so the API's limit still holds.
                *reason = self.secrets.scrub(reason.as_str()?).into();
                Some(json.to_string())
            });
        self.inner.call(method, path, scrubbed.as_deref().or(body))
    }
}

/// Runs `event` in `app` against `assets` and returns what happened. A trap
/// or a limit never escapes: it becomes a failed outcome, and a failed
/// history entry if the app had created an execution.
pub fn deliver(app: &App, assets: &Arc<AssetsService>, event: &TriggerEvent) -> TriggerOutcome {
    deliver_with(app, assets, event, None)
}

/// [`deliver`], calling `on_continue` once if the run goes on past its
/// first invocation: a web trigger that must answer quickly answers then,
/// and the rest runs as queued work.
pub fn deliver_with(
    app: &App,
    assets: &Arc<AssetsService>,
    event: &TriggerEvent,
    mut on_continue: Option<Box<dyn FnOnce() + Send>>,
) -> TriggerOutcome {
    let secrets = Arc::new(Secrets::from_settings(app.config.iter()));
    // This delivery: what the executions its app creates are marked with, so
    // its clean-up fails its own and nobody else's, and what fences every
    // write its app makes to an execution.
    let delivery = Delivery::new(event.occurrence_id.clone(), event.attempt);
    let backend = app
        .assets
        .clone()
        .unwrap_or_else(|| Arc::new(InProcessAssets::new(assets.clone())));
    // Apps may share a workspace: each reaches only its own import sources.
    let backend = Arc::new(ScrubbedReports {
        inner: Arc::new(
            ConfinedAssets::new(
                backend,
                assets.clone(),
                app.name.clone(),
                event.import_source_id.clone(),
            )
            .for_delivery(delivery.clone()),
        ),
        secrets: secrets.clone(),
    });
    let grants = Grants::new(event.workspace_id.clone(), backend)
        .with_source(app.source.clone())
        .with_config(app.config.clone())
        .with_http(app.http.clone())
        .with_storage(Arc::new(app.storage.clone()))
        .with_timer(Arc::new(match app.own_time {
            true => ClockTimer::own(assets.clock().clone()),
            false => ClockTimer::shared(assets.clock().clone()),
        }))
        .with_request_window(app.requests.clone());
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
        guest_output: String::new(),
        elapsed_ms: 0.0,
        invocations: 0,
        left_by_app: None,
    };
    let mut stalls = 0;
    let mut dropped_output = 0usize;
    let result = loop {
        let before = progress(assets, &event.import_source_id);
        let limits = match outcome.invocations {
            0 => app.limits,
            _ => app.continue_limits.unwrap_or(app.limits),
        };
        let invocation = app.runtime.invoke(event, grants.clone(), limits);
        outcome.invocations += 1;
        outcome.elapsed_ms += invocation.elapsed.as_secs_f64() * 1e3;
        // Each invocation's output is bounded, and so is the delivery's: an
        // app invoked thousands of times must not build a log of gigabytes.
        // Scrubbed before the cut, so no secret is kept in part.
        let output = secrets.scrub(&invocation.guest_output);
        keep_output(&mut outcome.guest_output, &mut dropped_output, &output);
        let after = progress(assets, &event.import_source_id);
        // Progress that cannot be read is not taken for none: a run is not
        // ended, or counted as stalled, on a read that failed.
        let moved = match (&before, &after) {
            (Ok(before), Ok(after)) => after.is_some() && after != before,
            _ => true,
        };
        let go_on = match &invocation.result {
            Ok(Ok(RunOutcome::Paused(paused))) => {
                outcome.retries += paused.retries;
                true
            }
            // Stopped mid-import after it moved on: its checkpoint holds.
            Err(Fault::TimeLimit(_)) => moved,
            _ => false,
        };
        if !go_on {
            break invocation.result.map_err(|fault| fault.to_string());
        }
        if let Some(on_continue) = on_continue.take() {
            on_continue();
        }
        stalls = if moved { 0 } else { stalls + 1 };
        if stalls >= MAX_STALLS || outcome.invocations >= MAX_INVOCATIONS {
            break Err(format!(
                "the app was invoked {} times for this run and the last {stalls} moved the import no further",
                outcome.invocations
            ));
        }
        tracing::info!(
            app = %app.name,
            invocation = outcome.invocations,
            received = after.ok().flatten().map_or(0, |(_, r)| r),
            "the app stopped at a checkpoint before its time limit; invoking it again to go on"
        );
    };
    match result {
        Ok(Ok(RunOutcome::Completed(report))) => {
            outcome.status = RunStatus::Completed;
            outcome.execution_id = Some(report.execution_id);
            outcome.chunks = report.chunks_sent;
            outcome.objects = report.objects_sent;
            outcome.retries += report.retries;
            outcome.replayed = report.replayed;
        }
        // Only after the stall rule ended the loop.
        Ok(Ok(RunOutcome::Paused(paused))) => {
            outcome.execution_id = Some(paused.execution_id);
            outcome.chunks = paused.chunks_sent;
            outcome.objects = paused.objects_sent;
            outcome.failure_reason = Some(format!("app {} kept pausing without finishing", app.name));
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
            let shown = secrets.redact(&fault);
            tracing::warn!(app = %app.name, fault = %assets_redact::printable(&shown), "guest stopped");
            outcome.failure_reason = Some(reason);
        }
    }
    // The app's reason, or a trap's message the app chose, is its text.
    outcome.failure_reason = outcome.failure_reason.map(|reason| secrets.scrub(&reason));
    // Whatever the app said, an execution it started must not be left
    // ingesting: the platform fails it on the app's behalf, so the history
    // never shows a run stuck in "running". Only one this delivery created:
    // whatever else is ingesting on the source (the next day's run, the
    // winner of a duplicate callback's race, a manual run) is not its own.
    let left = assets
        .state()
        .ingesting_created_by(&event.import_source_id, &delivery)
        .map(|e| e.id.clone());
    if let Some(left) = left {
        let reason = outcome.failure_reason.clone().unwrap_or_else(|| {
            format!(
                "app {} returned without completing or failing execution {left}",
                app.name
            )
        });
        outcome.left_by_app = Some(left.clone());
        if assets
            .fail_created_by(&event.import_source_id, &delivery, &reason)
            .is_some()
        {
            outcome.status = RunStatus::Failed;
            outcome.execution_id = Some(left);
            outcome.failure_reason = Some(reason);
        }
    }
    // Stopped before it created an execution: the history still says so.
    if outcome.status == RunStatus::Failed && outcome.execution_id.is_none() {
        let reason = crate::assets::fit_reason(&outcome.failure_reason.clone().unwrap_or_default());
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
            invocations: None,
            processed_at: None,
            progress: None,
        });
    }
    if let Some(id) = &outcome.execution_id {
        assets.state().annotate(
            id,
            event.schedule_id.clone(),
            event.scheduled.then(|| event.occurrence_id.clone()),
            (outcome.invocations > 1).then_some(outcome.invocations),
        );
    }
    if dropped_output > 0 {
        outcome.guest_output.push_str(&format!(
            "\n[{dropped_output} more bytes of guest output in this delivery dropped]"
        ));
    }
    if !outcome.guest_output.is_empty() {
        for line in outcome.guest_output.lines() {
            // Guest output is the app's own text: hide any credential in it,
            // and any character that could forge or garble a log line.
            let line = secrets.redact(line);
            let line = assets_redact::printable(&line);
            tracing::info!(app = %app.name, execution = ?outcome.execution_id, "guest: {line}");
        }
    }
    tracing::info!(
        app = %app.name,
        execution = ?outcome.execution_id,
        status = ?outcome.status,
        objects = outcome.objects,
        invocations = outcome.invocations,
        "trigger delivered"
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::{keep_output, ScrubbedReports};
    use assets_redact::Secrets;
    use assets_runtime::bindings::assets_api::{CallError, Method, Response};
    use assets_runtime::sandbox::GUEST_LOG_LIMIT;
    use assets_runtime::{ApiPath, AssetsBackend};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// Keeps the body of every call.
    #[derive(Default)]
    struct Bodies(Mutex<Vec<Option<String>>>);

    impl AssetsBackend for Bodies {
        fn call(&self, _: Method, _: &ApiPath, body: Option<&str>) -> Result<Response, CallError> {
            self.0.lock().unwrap().push(body.map(str::to_owned));
            Err(CallError::Unreachable("recorded".into()))
        }
    }

    #[test]
    fn an_apps_failure_report_is_scrubbed_of_its_credential_settings() {
        let config = BTreeMap::from([
            ("api-key".to_owned(), "k-SECRET-4242".to_owned()),
            ("chunk-max-objects".to_owned(), "5000".to_owned()),
        ]);
        let inner = Arc::new(Bodies::default());
        let reports = ScrubbedReports {
            inner: inner.clone(),
            secrets: Arc::new(Secrets::from_settings(config.iter())),
        };
        let path = |p: &str| ApiPath::parse("w1", p).unwrap();
        let reason = r#"{"failureReason":"key k-SECRET-4242 (ay1TRUNSRVQtNDI0Mg==) is over quota; 5000 sent"}"#;
        let _ = reports.call(
            Method::Post,
            &path("importsource/s1/executions/e1/history/failed"),
            Some(reason),
        );
        // A data chunk is the app's data, not its words: sent as it is.
        let chunk = r#"{"objects":[{"note":"k-SECRET-4242"}]}"#;
        let _ = reports.call(Method::Post, &path("importsource/s1/executions/e1/data"), Some(chunk));
        let bodies = inner.0.lock().unwrap();
        assert_eq!(
            bodies[0].as_deref(),
            Some(r#"{"failureReason":"key *** (***) is over quota; 5000 sent"}"#)
        );
        assert_eq!(bodies[1].as_deref(), Some(chunk));
    }

    #[test]
    fn a_deliverys_output_is_bounded_however_many_invocations_write() {
        let (mut output, mut dropped) = (String::new(), 0);
        let each = "é".repeat(GUEST_LOG_LIMIT / 2);
        for _ in 0..10_000 {
            keep_output(&mut output, &mut dropped, &each);
        }
        assert!(output.len() <= GUEST_LOG_LIMIT, "{} bytes kept", output.len());
        assert_eq!(
            output.len() + dropped,
            10_000 * each.len(),
            "every byte kept or counted"
        );
    }
}
