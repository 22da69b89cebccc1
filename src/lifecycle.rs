//! The import lifecycle: create an execution, submit the data in chunks,
//! then signal completion or report the failure.
//!
//! Written against small traits ([`AssetsApi`], [`DataSource`], [`Timer`],
//! [`KeyValue`]) so unit tests run it with fakes. The rules that shape it:
//!
//! - every failure after the execution exists is reported to the import
//!   history with a reason that names what failed, cut to 1024 characters;
//! - once completion has been signalled, no failure is ever reported for that
//!   execution (the API would refuse it, and the data may already be in);
//! - transient failures (429, 5xx, no answer, source timeouts) are retried
//!   within the configured budget; each chunk carries a `clientGeneratedId`
//!   so a chunk sent twice is stored once;
//! - an occurrence is handled once: the execution it created is recorded in
//!   app storage, and a duplicate delivery reports that run instead of
//!   starting another.

use crate::api::{self, ApiFailure, ApiResponse, AssetsApi, Method};
use crate::chunker::{Chunk, Chunker};
use crate::model::{DataSource, Page, SourceError};
use crate::reason::cut_reason;
use crate::retry::{self, GaveUp, Retrier, Timer, Verdict};
use crate::settings::{SettingError, Settings};
use serde::{Deserialize, Serialize};

/// App storage, as the `storage` import gives it.
pub trait KeyValue {
    /// The value under `key`.
    fn get(&mut self, key: &str) -> Option<String>;
    /// Stores `value` under `key`.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String>;
}

/// What the platform asked for.
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    /// Import source to run.
    pub import_source_id: &'a str,
    /// True when a schedule fired.
    pub scheduled: bool,
    /// Stable id of the occurrence; the same on every re-delivery.
    pub occurrence_id: &'a str,
}

/// A completed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The execution created.
    pub execution_id: String,
    /// Chunks accepted.
    pub chunks_sent: u32,
    /// Objects accepted.
    pub objects_sent: u64,
    /// Calls repeated after transient failures.
    pub retries: u32,
    /// True when an earlier delivery of the occurrence did the work.
    pub replayed: bool,
}

/// A run that created an execution and then failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRun {
    /// The failed execution.
    pub execution_id: String,
    /// The reason, at most 1024 characters.
    pub reason: String,
    /// Whether the failure reached the import history.
    pub reported: bool,
    /// Chunks accepted before the failure.
    pub chunks_sent: u32,
    /// Objects accepted before the failure.
    pub objects_sent: u64,
}

/// Why a run did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// No execution was created; nothing could be reported.
    ExecutionNotCreated(String),
    /// The execution was created, then the import failed.
    ImportFailed(FailedRun),
}

/// What app storage remembers of an occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OccurrenceRecord {
    execution_id: String,
    state: RecordState,
    chunks: u32,
    objects: u64,
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordState {
    Started,
    Completed,
    Failed,
}

/// The storage key of an occurrence's record.
pub fn occurrence_key(occurrence_id: &str) -> String {
    format!("occurrence/{occurrence_id}")
}

#[derive(Default)]
struct Progress {
    chunks: u32,
    objects: u64,
}

/// The run's view of the platform: every call goes through here, retried.
struct Io<'a, A, S, T, K> {
    api: &'a mut A,
    source: &'a mut S,
    timer: &'a mut T,
    storage: &'a mut K,
    retrier: Retrier,
}

impl<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue> Io<'_, A, S, T, K> {
    /// One API call, retried while transient.
    fn send(&mut self, method: Method, path: &str, body: Option<&str>) -> Result<ApiResponse, ApiFailure> {
        let Io {
            api, timer, retrier, ..
        } = self;
        let now = timer.now_ms();
        retrier
            .run(
                &mut **timer,
                || api::check(api.call(method, path, body)),
                |f| api::classify(f, now),
            )
            .map_err(|(failure, gave_up)| with_gave_up(failure, gave_up))
    }

    /// One source page, retried on timeouts and connection failures.
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, String> {
        let Io {
            source, timer, retrier, ..
        } = self;
        retrier
            .run(
                &mut **timer,
                || source.next_page(cursor),
                |e| match e {
                    SourceError::Timeout(_) | SourceError::Connection(_) => Verdict::Backoff,
                    _ => Verdict::Fatal,
                },
            )
            .map_err(|(error, gave_up)| match gave_up {
                Some(g) => format!("{error} ({})", g.why),
                None => error.to_string(),
            })
    }

    fn remember(&mut self, occurrence_id: &str, record: &OccurrenceRecord) {
        let value = serde_json::to_string(record).expect("records serialize");
        if let Err(e) = self.storage.set(&occurrence_key(occurrence_id), &value) {
            // Without the record a duplicate delivery could start a second
            // run; say so where the platform logs guest output.
            eprintln!("could not record occurrence {occurrence_id} in app storage: {e}");
        }
    }

    /// The API's view of an execution's state, for answers that left it unclear.
    fn execution_state(&mut self, source_id: &str, execution_id: &str) -> Option<String> {
        let path = api::execution_path(source_id, execution_id, "/status");
        let response = self.send(Method::Get, &path, None).ok()?;
        api::execution_state(&response.body)
    }
}

fn with_gave_up(failure: ApiFailure, gave_up: Option<GaveUp>) -> ApiFailure {
    match (failure, gave_up) {
        (
            ApiFailure::Status {
                status,
                code,
                message,
                retry_after,
            },
            Some(g),
        ) => ApiFailure::Status {
            status,
            code,
            message: format!("{message} ({})", g.why),
            retry_after,
        },
        (ApiFailure::Call(e), Some(g)) => ApiFailure::Unreadable(format!("{e} ({})", g.why)),
        (failure, _) => failure,
    }
}

/// Runs one import for `trigger`. `settings` is the result of reading the
/// app's configuration: a bad setting fails the run with a recorded reason.
pub fn run_import(
    trigger: Trigger<'_>,
    settings: Result<Settings, SettingError>,
    api: &mut impl AssetsApi,
    source: &mut impl DataSource,
    timer: &mut impl Timer,
    storage: &mut impl KeyValue,
) -> Result<RunReport, RunError> {
    let policy = settings.as_ref().map(|s| s.retry).unwrap_or_default();
    let mut io = Io {
        api,
        source,
        timer,
        storage,
        retrier: Retrier::new(policy, retry::seed_from(trigger.occurrence_id)),
    };
    let source_id = trigger.import_source_id;

    if let Some(earlier) = replay(&mut io, trigger) {
        return earlier;
    }

    let created = io.send(
        Method::Post,
        &api::executions_path(source_id),
        Some(api::create_execution_body(trigger.scheduled)),
    );
    let execution_id = created
        .and_then(|r| api::execution_id_from_response(&r.body).map_err(ApiFailure::Unreadable))
        .map_err(|failure| RunError::ExecutionNotCreated(not_created_reason(source_id, &failure)))?;
    let mut record = OccurrenceRecord {
        execution_id: execution_id.clone(),
        state: RecordState::Started,
        chunks: 0,
        objects: 0,
        reason: None,
    };
    io.remember(trigger.occurrence_id, &record);

    let mut progress = Progress::default();
    let ingested = settings
        .map_err(|e| e.to_string())
        .and_then(|settings| ingest(&settings, &mut io, source_id, &execution_id, &mut progress));
    (record.chunks, record.objects) = (progress.chunks, progress.objects);

    if let Err(reason) = ingested {
        let failed = fail(&mut io, source_id, execution_id, &reason, progress);
        record.state = RecordState::Failed;
        record.reason = Some(failed.reason.clone());
        io.remember(trigger.occurrence_id, &record);
        return Err(RunError::ImportFailed(failed));
    }

    let completed_path = api::execution_path(source_id, &execution_id, "/history/completed");
    if let Err(failure) = io.send(Method::Post, &completed_path, None) {
        // A retried completion that the API calls "already completed" did
        // go through; anything else is returned, never reported, since
        // completion may have taken effect.
        let done = matches!(
            io.execution_state(source_id, &execution_id).as_deref(),
            Some("DONE" | "PROCESSING")
        );
        if !done {
            return Err(RunError::ImportFailed(FailedRun {
                execution_id,
                reason: cut_reason(&format!("Signalling completion failed: {failure}")),
                reported: false,
                chunks_sent: progress.chunks,
                objects_sent: progress.objects,
            }));
        }
    }
    record.state = RecordState::Completed;
    io.remember(trigger.occurrence_id, &record);
    Ok(RunReport {
        execution_id,
        chunks_sent: progress.chunks,
        objects_sent: progress.objects,
        retries: io.retrier.retries(),
        replayed: false,
    })
}

/// A duplicate delivery: the earlier run's result, if this occurrence was
/// already handled.
fn replay<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    trigger: Trigger<'_>,
) -> Option<Result<RunReport, RunError>> {
    let stored = io.storage.get(&occurrence_key(trigger.occurrence_id))?;
    let record: OccurrenceRecord = serde_json::from_str(&stored).ok()?;
    let state = match record.state {
        RecordState::Started => match io.execution_state(trigger.import_source_id, &record.execution_id).as_deref() {
            Some("DONE" | "PROCESSING") => RecordState::Completed,
            Some("FAILED" | "CANCELLED") => RecordState::Failed,
            other => {
                return Some(Err(RunError::ExecutionNotCreated(format!(
                    "Occurrence {} is already being handled by execution {} ({}); this duplicate delivery did not start another",
                    trigger.occurrence_id,
                    record.execution_id,
                    other.unwrap_or("state unknown")
                ))))
            }
        },
        state => state,
    };
    Some(match state {
        RecordState::Completed => Ok(RunReport {
            execution_id: record.execution_id,
            chunks_sent: record.chunks,
            objects_sent: record.objects,
            retries: 0,
            replayed: true,
        }),
        _ => Err(RunError::ImportFailed(FailedRun {
            execution_id: record.execution_id,
            reason: record
                .reason
                .unwrap_or_else(|| "the earlier delivery of this occurrence failed".into()),
            reported: true,
            chunks_sent: record.chunks,
            objects_sent: record.objects,
        })),
    })
}

/// Reads every page and submits every chunk; on failure returns the reason.
fn ingest<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    settings: &Settings,
    io: &mut Io<'_, A, S, T, K>,
    source_id: &str,
    execution_id: &str,
    progress: &mut Progress,
) -> Result<(), String> {
    let mut chunker = Chunker::new(settings.chunk, format!("{execution_id}-"));
    let mut cursor: Option<String> = None;
    let mut page_number = 0u64;
    loop {
        page_number += 1;
        let page = io
            .next_page(cursor.as_deref())
            .map_err(|e| format!("{e} while reading page {page_number}"))?;
        for batch in &page.batches {
            for object in &batch.objects {
                let closed = chunker.push(&batch.object_type_id, object).map_err(|e| e.to_string())?;
                if let Some(chunk) = closed {
                    submit(io, source_id, execution_id, chunk, progress)?;
                }
            }
        }
        match page.next_cursor {
            None => break,
            Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                return Err(format!(
                    "Data source returned the same cursor {next:?} twice after page {page_number}; stopped to avoid an endless import"
                ));
            }
            next => cursor = next,
        }
    }
    for chunk in chunker.finish() {
        submit(io, source_id, execution_id, chunk, progress)?;
    }
    Ok(())
}

fn submit<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    source_id: &str,
    execution_id: &str,
    chunk: Chunk,
    progress: &mut Progress,
) -> Result<(), String> {
    let path = api::execution_path(source_id, execution_id, "/data");
    io.send(Method::Post, &path, Some(&chunk.body)).map_err(|failure| {
        format!(
            "Assets API rejected data chunk {} ({} objects of type {:?}): {failure}",
            progress.chunks + 1,
            chunk.objects,
            chunk.object_type_id
        )
    })?;
    progress.chunks += 1;
    progress.objects += chunk.objects as u64;
    Ok(())
}

fn fail<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    source_id: &str,
    execution_id: String,
    reason: &str,
    progress: Progress,
) -> FailedRun {
    let reason = cut_reason(reason);
    let path = api::execution_path(source_id, &execution_id, "/history/failed");
    let reported = match io.send(Method::Post, &path, Some(&api::failure_body(&reason))) {
        Ok(_) => Ok(()),
        // A retried report the API calls "already failed" did go through.
        Err(failure) => match io.execution_state(source_id, &execution_id).as_deref() {
            Some("FAILED") => Ok(()),
            _ => Err(failure),
        },
    };
    let (reported, reason) = match reported {
        Ok(()) => (true, reason),
        Err(failure) => (
            false,
            cut_reason(&format!("{reason} (reporting this failure also failed: {failure})")),
        ),
    };
    FailedRun {
        execution_id,
        reason,
        reported,
        chunks_sent: progress.chunks,
        objects_sent: progress.objects,
    }
}

fn not_created_reason(source_id: &str, failure: &ApiFailure) -> String {
    let hint = match failure {
        ApiFailure::Status { code: Some(code), .. } if code == "IN_PROGRESS" => {
            "; an execution of this import source is still running, so this run was not started"
        }
        _ => "",
    };
    cut_reason(&format!(
        "Could not create an execution for import source {source_id}: {failure}{hint}"
    ))
}
