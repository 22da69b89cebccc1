//! The import lifecycle: create an execution, submit the data in chunks,
//! then signal completion or report the failure.
//!
//! Written against [`AssetsApi`] and [`DataSource`] so unit tests run it with
//! fakes. Two rules shape it:
//!
//! - every failure after the execution exists is reported to the import
//!   history with a reason that names what failed, cut to 1024 characters;
//! - once completion has been signalled, no failure is ever reported for that
//!   execution (the API would refuse it, and the data may already be in).

use crate::api::{self, ApiFailure, AssetsApi};
use crate::chunker::{Chunk, Chunker};
use crate::model::DataSource;
use crate::reason::cut_reason;
use crate::settings::{SettingError, Settings};

/// What the platform asked for.
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    /// Import source to run.
    pub import_source_id: &'a str,
    /// True when a schedule fired.
    pub scheduled: bool,
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

#[derive(Default)]
struct Progress {
    chunks: u32,
    objects: u64,
}

/// Runs one import for `trigger`. `settings` is the result of reading the
/// app's configuration: a bad setting fails the run with a recorded reason.
pub fn run_import(
    trigger: Trigger<'_>,
    settings: Result<Settings, SettingError>,
    api: &mut impl AssetsApi,
    source: &mut impl DataSource,
) -> Result<RunReport, RunError> {
    let source_id = trigger.import_source_id;
    let execution_id =
        api::create_execution(api, source_id, trigger.scheduled).map_err(|failure| {
            RunError::ExecutionNotCreated(not_created_reason(source_id, &failure))
        })?;

    let mut progress = Progress::default();
    let ingested = settings.map_err(|e| e.to_string()).and_then(|settings| {
        ingest(
            &settings,
            api,
            source,
            source_id,
            &execution_id,
            &mut progress,
        )
    });
    if let Err(reason) = ingested {
        return Err(fail(api, source_id, execution_id, &reason, progress));
    }

    if let Err(failure) = api::signal_completed(api, source_id, &execution_id) {
        // Completion may have taken effect even though the answer says
        // otherwise, so this failure is returned, never reported.
        return Err(RunError::ImportFailed(FailedRun {
            execution_id,
            reason: cut_reason(&format!("Signalling completion failed: {failure}")),
            reported: false,
            chunks_sent: progress.chunks,
            objects_sent: progress.objects,
        }));
    }
    Ok(RunReport {
        execution_id,
        chunks_sent: progress.chunks,
        objects_sent: progress.objects,
        retries: 0,
    })
}

/// Reads every page and submits every chunk; on failure returns the reason.
fn ingest(
    settings: &Settings,
    api: &mut impl AssetsApi,
    source: &mut impl DataSource,
    source_id: &str,
    execution_id: &str,
    progress: &mut Progress,
) -> Result<(), String> {
    let mut chunker = Chunker::new(settings.chunk);
    let mut cursor: Option<String> = None;
    let mut page_number = 0u64;
    loop {
        page_number += 1;
        let page = source
            .next_page(cursor.as_deref())
            .map_err(|e| format!("{e} while reading page {page_number}"))?;
        for batch in &page.batches {
            for object in &batch.objects {
                let closed = chunker
                    .push(&batch.object_type_id, object)
                    .map_err(|e| e.to_string())?;
                if let Some(chunk) = closed {
                    submit(api, source_id, execution_id, chunk, progress)?;
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
        submit(api, source_id, execution_id, chunk, progress)?;
    }
    Ok(())
}

fn submit(
    api: &mut impl AssetsApi,
    source_id: &str,
    execution_id: &str,
    chunk: Chunk,
    progress: &mut Progress,
) -> Result<(), String> {
    api::submit_chunk(api, source_id, execution_id, &chunk.body).map_err(|failure| {
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

fn fail(
    api: &mut impl AssetsApi,
    source_id: &str,
    execution_id: String,
    reason: &str,
    progress: Progress,
) -> RunError {
    let reason = cut_reason(reason);
    let (reported, reason) = match api::report_failed(api, source_id, &execution_id, &reason) {
        Ok(()) => (true, reason),
        Err(failure) => (
            false,
            cut_reason(&format!(
                "{reason} (reporting this failure also failed: {failure})"
            )),
        ),
    };
    RunError::ImportFailed(FailedRun {
        execution_id,
        reason,
        reported,
        chunks_sent: progress.chunks,
        objects_sent: progress.objects,
    })
}

fn not_created_reason(source_id: &str, failure: &ApiFailure) -> String {
    let hint = match failure {
        ApiFailure::Status {
            code: Some(code), ..
        } if code == "IN_PROGRESS" => {
            "; an execution of this import source is still running, so this run was not started"
        }
        _ => "",
    };
    cut_reason(&format!(
        "Could not create an execution for import source {source_id}: {failure}{hint}"
    ))
}
