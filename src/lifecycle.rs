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
//!   app storage as soon as its id is known, and a duplicate delivery
//!   reports that run instead of starting another;
//! - creating an execution is safe to repeat: after a call that may have
//!   gone through without an answer, the latest execution is looked up
//!   before asking again, and adopted when it can only be this run's;
//! - a run survives being cut short: after every accepted chunk the record
//!   holds a checkpoint ([`Checkpoint`]), and a later delivery of the same
//!   occurrence whose execution is still ingesting goes on from it, on the
//!   same execution, without sending accepted objects again. When the
//!   platform says the invocation is nearly out of time, the run stops at a
//!   checkpoint by itself and returns [`Outcome::Paused`];
//! - every wait stays inside the invocation's deadline: before a page read
//!   that would likely not finish with `time-limit-margin-ms` to spare (the
//!   slowest page so far being the guess), the run sends what it holds and
//!   pauses; a retry wait that would not end in time is not slept, and the
//!   run pauses at its last stored checkpoint instead (so does a failure
//!   report that cannot be made in time: the next invocation makes it);
//! - budgets are the run's, not the invocation's: retries, time waited,
//!   pages and the cursors read live in the record ([`RunBudget`]);
//! - a source that hands back a cursor already read in this run (in any
//!   delivery), or more pages than `source-max-pages`, fails the run by
//!   name;
//! - a delivery of an occurrence that has ended replays its real outcome:
//!   the stored result, or the reason the API shows for its execution.

use crate::api::{self, ApiFailure, ApiResponse, AssetsApi, Method};
pub use crate::budget::RunBudget;
use crate::chunker::{Chunk, Chunker, Envelope, Mark};
use crate::cloud;
use crate::model::{DataSource, Page, SourceError};
use crate::reason::cut_reason;
use crate::retry::{self, GaveUp, Retrier, Timer, Verdict};
use crate::settings::{ChunkLimits, Dialect, SettingError, Settings};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};

/// How far back an execution's start may be, by the API's clock, before the
/// moment this run asked for it and still be taken for the one it asked for
/// (clocks of the platform and the API may differ).
const ADOPT_CLOCK_SLACK_MS: u64 = 60_000;

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

/// A delivery that stopped at a checkpoint because the invocation was
/// nearly out of time; calling again with the same occurrence goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedRun {
    /// The execution, still ingesting.
    pub execution_id: String,
    /// Chunks accepted so far, over every delivery.
    pub chunks_sent: u32,
    /// Objects accepted so far, over every delivery.
    pub objects_sent: u64,
    /// Calls repeated after transient failures in this delivery.
    pub retries: u32,
}

/// How a delivery ended when nothing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Completion was signalled (or an earlier delivery's was replayed).
    Completed(RunReport),
    /// Stopped at a checkpoint before the time limit; deliver again.
    Paused(PausedRun),
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

/// What app storage holds under an occurrence's key: the intent to create
/// its execution, written before the request, or the record of the run once
/// the execution is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Record(Box<OccurrenceRecord>),
    Intent(CreateIntent),
}

/// Written before an execution is asked for, so that a delivery that stops
/// between the request and the record leaves a trace: the next one knows a
/// create may have happened, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateIntent {
    /// When the request was about to be sent, on the platform's clock.
    creating_since_ms: u64,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint: Option<Checkpoint>,
    /// What the run has spent over its deliveries (absent in records
    /// written before budgets were the run's).
    #[serde(default)]
    budget: RunBudget,
    /// The chunk limits the run started with. A delivery that goes on uses
    /// these, whatever the settings say now, so a chunk it sends again is
    /// byte-identical to the first send (a chunk id names one content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_limits: Option<RunChunkLimits>,
}

/// [`ChunkLimits`], as an occurrence's record keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunChunkLimits {
    max_objects: usize,
    max_bytes: usize,
}

/// Where a run can go on from. Every object before `resume` was accepted,
/// and so was every object of a type up to that type's `sent_through` mark
/// (chunks of different types close at different times, so accepted objects
/// are not one prefix of the stream). Sources must give the same pages for
/// the same cursors for a resumed run to be exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Where reading goes on; `None` once every page was read and every
    /// object accepted, so only completion is left.
    pub resume: Option<ResumeAt>,
    /// Per object type, in the order the types appeared.
    pub types: Vec<TypeMark>,
    /// Chunk numbers used (chunk ids are `{executionId}-{number}`).
    pub opened: u64,
    /// Source pages read in the run so far.
    pub pages: u64,
}

/// A place in the source's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeAt {
    /// The page's number in the run, 1 for the first.
    pub page: u64,
    /// The cursor that reads it; `None` for the first page.
    pub cursor: Option<String>,
    /// Objects on that page before this index were accepted.
    pub index: u32,
    /// The object expected at `index`: when the page read again shows
    /// another there, the source changed and positions cannot be trusted,
    /// so the page is sent again from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Landmark>,
}

/// An object by its type and external id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Landmark {
    /// The object type.
    pub object_type_id: String,
    /// The external id.
    pub external_id: String,
}

/// What a checkpoint keeps of one object type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMark {
    /// The object type.
    pub object_type_id: String,
    /// Its last accepted object's (page, index), if any.
    pub sent_through: Option<Mark>,
    /// The number of its chunk that was open, reopened under the same id.
    pub open_chunk: Option<u64>,
}

/// Where an occurrence's run stands. A `started` record with a `reason`
/// holds a failure decided but not yet reported (the invocation ran out of
/// time): the next delivery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordState {
    Started,
    Completed,
    Failed,
}

/// The checkpoint stored for `occurrence_id`, if any (for tests and tools).
pub fn stored_checkpoint(storage: &mut impl KeyValue, occurrence_id: &str) -> Option<Checkpoint> {
    let stored = storage.get(&occurrence_key(occurrence_id))?;
    serde_json::from_str::<OccurrenceRecord>(&stored).ok()?.checkpoint
}

/// The storage key of an occurrence's record.
pub fn occurrence_key(occurrence_id: &str) -> String {
    format!("occurrence/{occurrence_id}")
}

/// The storage key naming the occurrence that created an execution: written
/// as soon as the id is known, so no other occurrence's run takes it for
/// one its own lost request created.
pub fn owner_key(execution_id: &str) -> String {
    format!("execution/{execution_id}")
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
        retrier
            .run(&mut **timer, || api::check(api.call(method, path, body)), api::classify)
            .map_err(|(failure, gave_up)| with_gave_up(failure, gave_up))
    }

    /// Creates an execution, safely repeated. `since_ms` is when this
    /// occurrence first asked (its stored intent); `unsure` says an earlier
    /// delivery may have created one already. Once a request may have gone
    /// through unanswered, the latest execution is looked at before asking
    /// again, and taken only when it matches on every field the API shows
    /// and no other occurrence recorded it as its own. Asking again is safe
    /// otherwise: the API refuses a second ingesting execution (409
    /// `IN_PROGRESS`), so a request never makes a duplicate of a live one.
    fn create_execution(
        &mut self,
        trigger: Trigger<'_>,
        since_ms: u64,
        mut unsure: bool,
    ) -> Result<String, (ApiFailure, Option<String>)> {
        let source_id = trigger.import_source_id;
        let path = api::executions_path(source_id);
        let since_ms = since_ms.saturating_sub(ADOPT_CLOCK_SLACK_MS);
        let Io {
            api,
            timer,
            retrier,
            storage,
            ..
        } = self;
        // The latest execution, if it is provably this occurrence's; else
        // why not (`None` when nothing was created). An outer error when the
        // API did not say: retried like any call, never skipped, since
        // asking again would only meet our own execution's 409.
        let ours = |api: &mut A, storage: &mut K| -> Result<Result<String, Option<String>>, ApiFailure> {
            let answer = match api::check(api.call(Method::Get, &api::latest_status_path(source_id), None)) {
                Ok(answer) => Some(answer.body),
                Err(ApiFailure::Status { status: 404, .. }) => None,
                Err(failure) => return Err(failure),
            };
            Ok(
                match api::latest_execution(answer.as_deref(), trigger.scheduled, since_ms) {
                    api::Latest::NotCreated => Err(None),
                    api::Latest::Unclear(why) => Err(Some(why)),
                    api::Latest::Candidate(id) => match storage.get(&owner_key(&id)) {
                        Some(owner) if owner != trigger.occurrence_id => {
                            Err(Some(format!("execution {id} was created by occurrence {owner}")))
                        }
                        _ => Ok(id),
                    },
                },
            )
        };
        let mut unclear: Option<String> = None;
        let created = retrier.run(
            &mut **timer,
            || {
                if unsure {
                    match ours(api, storage)? {
                        Ok(id) => return Ok(id),
                        Err(why) => unclear = why,
                    }
                }
                let answer =
                    api::check(api.call(Method::Post, &path, Some(api::create_execution_body(trigger.scheduled))));
                unsure |= answer.as_ref().err().is_some_and(api::is_ambiguous);
                answer.and_then(|r| api::execution_id_from_response(&r.body).map_err(ApiFailure::Unreadable))
            },
            api::classify,
        );
        match created {
            Ok(id) => Ok(id),
            // The last word, retried like any call: a run that may have
            // created an execution never leaves without looking for it.
            Err((failure, gave_up)) if unsure => {
                match retrier.run(&mut **timer, || ours(api, storage), api::classify) {
                    Ok(Ok(id)) => return Ok(id),
                    Ok(Err(why)) => unclear = why.or(unclear),
                    Err((lookup, _)) => {
                        unclear = Some(
                            unclear.unwrap_or_else(|| format!("its latest execution could not be read ({lookup})")),
                        )
                    }
                }
                Err((with_gave_up(failure, gave_up), unclear))
            }
            Err((failure, gave_up)) => Err((with_gave_up(failure, gave_up), None)),
        }
    }

    /// One source page, retried on timeouts, connection failures and a busy
    /// source, which is waited for as long as it asked.
    fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, String> {
        let Io {
            source, timer, retrier, ..
        } = self;
        retrier
            .run(
                &mut **timer,
                || source.next_page(cursor),
                |e, _| match e {
                    SourceError::Busy {
                        retry_after_ms: Some(ms),
                        ..
                    } => Verdict::After(*ms),
                    SourceError::Timeout(_) | SourceError::Connection(_) | SourceError::Busy { .. } => Verdict::Backoff,
                    _ => Verdict::Fatal,
                },
            )
            .map_err(|(error, gave_up)| match gave_up {
                Some(g) => format!("{error} ({})", g.why),
                None => error.to_string(),
            })
    }

    fn remember(&mut self, occurrence_id: &str, record: &OccurrenceRecord) {
        self.store(occurrence_id, &Stored::Record(Box::new(record.clone())));
    }

    fn store(&mut self, occurrence_id: &str, stored: &Stored) {
        let value = serde_json::to_string(stored).expect("records serialize");
        if let Err(e) = self.storage.set(&occurrence_key(occurrence_id), &value) {
            // Without the record a duplicate delivery could start a second
            // run; say so where the platform logs guest output.
            eprintln!("could not record occurrence {occurrence_id} in app storage: {e}");
        }
    }

    /// In the cloud dialect, makes sure the import source's
    /// schema-and-mapping document is in place and returns how chunks are
    /// shaped for it and how the run treats keys it lacks. A `fresh` run (no
    /// execution yet) puts in place the document the settings give, or —
    /// unless the import source holds one this app did not write, which is
    /// used as it is — one derived from the source's first page merged with
    /// what the importer derived and saw before. A run going on uses the
    /// stored document its execution started with.
    fn ensure_mapping(
        &mut self,
        source_id: &str,
        settings: &Settings,
        fresh: bool,
    ) -> Result<(Envelope, cloud::Growth), String> {
        use cloud::{Growth, Origin};
        let path = format!("importsource/{source_id}/schema-and-mapping");
        let stored = match self.send(Method::Get, &path, None) {
            Ok(answer) => Some(
                serde_json::from_str::<serde_json::Value>(&answer.body)
                    .map_err(|e| format!("The import source's schema-and-mapping document is not JSON: {e}"))?,
            ),
            Err(ApiFailure::Status { status: 404, code, .. }) if code.as_deref() == Some("MISSING_MAPPING") => None,
            Err(failure) => {
                return Err(format!(
                    "Could not read the import source's schema-and-mapping document: {failure}"
                ))
            }
        };
        let unmapped_key = cloud::unmapped_key(source_id);
        let remembered = cloud::remembered(self.storage.get(&unmapped_key).as_deref());
        let ours = stored.as_ref().and_then(cloud::derived_shape);
        let fixed = |document: &serde_json::Value, origin| -> Result<Growth, String> {
            let mapped = cloud::envelope_shape(&cloud::envelope(document)?);
            Ok(Growth::Fixed { mapped, origin })
        };
        // Whose a stored document that is not ours is, for a run going on.
        let theirs = if settings.mapping.is_some() {
            Origin::Setting
        } else {
            Origin::Operator
        };
        let (wanted, growth) = match (&settings.mapping, &stored, ours) {
            // A run going on keeps the document its execution started with.
            (_, Some(stored), Some(shape)) if !fresh => (stored.clone(), Growth::derived(shape, &remembered)),
            (_, Some(stored), None) if !fresh => (stored.clone(), fixed(stored, theirs)?),
            (Some(given), _, _) => (given.clone(), fixed(given, Origin::Setting)?),
            // Not ours: used as it is, never replaced.
            (None, Some(stored), None) => (stored.clone(), fixed(stored, Origin::Operator)?),
            (None, _, ours) => {
                let first = self
                    .next_page(None)
                    .map_err(|e| format!("{e} while reading the first page to derive the mapping"))?;
                let mut shape = cloud::shape_of(&first);
                cloud::merge(&mut shape, ours.unwrap_or_default());
                cloud::merge(&mut shape, remembered.clone());
                (cloud::derive(&shape)?, Growth::derived(shape, &remembered))
            }
        };
        if stored.as_ref() != Some(&wanted) {
            let path = format!("importsource/{source_id}/mapping");
            self.send(Method::Put, &path, Some(&wanted.to_string()))
                .map_err(|failure| {
                    format!("Could not set the import source's schema-and-mapping document: {failure}")
                })?;
        }
        if fresh && !remembered.is_empty() && matches!(&growth, Growth::Derived { late, .. } if late.is_empty()) {
            // The document in place maps all of it now. Failing to forget
            // only keeps keys that are already mapped.
            let _ = self.storage.set(&unmapped_key, "{}");
        }
        Ok((cloud::envelope(&wanted)?, growth))
    }

    /// In the cloud dialect, `object` as the run's mapping places it
    /// ([`cloud::Growth::place`]). A key seen for the first time is
    /// remembered in app storage before any chunk goes without it, so the
    /// next run maps it even if this one is cut short.
    fn place<'o>(
        &mut self,
        source_id: &str,
        growth: &mut cloud::Growth,
        object_type_id: &str,
        object: &'o crate::model::AssetObject,
        page: &Page,
    ) -> Result<Option<std::borrow::Cow<'o, crate::model::AssetObject>>, String> {
        let placed = growth.place(object_type_id, object, page)?;
        if placed.learned {
            let value = growth.late_value()?;
            self.storage.set(&cloud::unmapped_key(source_id), &value).map_err(|e| {
                format!(
                    "Could not remember in app storage the object types and attribute keys the import source's mapping lacks ({e}), so the next run would not map them either; set cloud-mapping to a document that maps them"
                )
            })?;
        }
        Ok(placed.object)
    }

    /// In the cloud dialect, tells people what the run left out because its
    /// mapping lacked it: in the last progress report, which the import
    /// history keeps, and in the log.
    fn note_unmapped(&mut self, source_id: &str, run: &Run<'_>) {
        let Some(note) = run.growth.note() else { return };
        eprintln!("import source {source_id}: {note}");
        let path = api::execution_path(source_id, &run.record.execution_id, "/progress");
        let body = cloud::progress_body_noted(run.record.chunks, run.record.objects, run.pages, &note);
        if let Err(failure) = self.send(Method::Put, &path, Some(&body)) {
            eprintln!("import source {source_id}: could not report what the run left out: {failure}");
        }
    }

    /// The API's view of an execution's state, for answers that left it unclear.
    fn execution_state(&mut self, source_id: &str, execution_id: &str) -> Option<String> {
        self.execution_status(source_id, execution_id).map(|(state, _)| state)
    }

    /// An execution's state and the failure reason the API shows for it.
    fn execution_status(&mut self, source_id: &str, execution_id: &str) -> Option<(String, Option<String>)> {
        let path = api::execution_path(source_id, execution_id, "/status");
        let response = self.send(Method::Get, &path, None).ok()?;
        let state = api::execution_state(&response.body)?;
        Some((state, api::failure_reason(&response.body)))
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
        (ApiFailure::Call(e), Some(g)) => ApiFailure::Call(e.noted(&g.why)),
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
) -> Result<Outcome, RunError> {
    let policy = settings.as_ref().map(|s| s.retry).unwrap_or_default();
    let mut io = Io {
        api,
        source,
        timer,
        storage,
        retrier: Retrier::new(policy, retry::seed_from(trigger.occurrence_id)),
    };
    if let Ok(settings) = &settings {
        io.retrier.reserve(settings.run.margin_ms);
    }
    let now_ms = io.timer.now_ms();
    io.retrier.started(now_ms);
    let source_id = trigger.import_source_id;

    let earlier = earlier_delivery(&mut io, trigger);
    let earlier = match earlier {
        // A failure the last invocation had no time to report: report it
        // now, before anything else.
        Earlier::Failing(mut record, reason) => {
            io.retrier.resume(&record.budget);
            return failed(&mut io, trigger, &mut record, &reason);
        }
        Earlier::Ingesting(record) => {
            io.retrier.resume(&record.budget);
            Earlier::Ingesting(record)
        }
        earlier => earlier,
    };
    let fresh = matches!(earlier, Earlier::None | Earlier::Intent(_));
    // The cloud dialect's mapping must be in place before an execution
    // starts, and tells how chunks are shaped.
    let (envelope, growth) = match &settings {
        Ok(s) if s.dialect == Dialect::Cloud && !matches!(earlier, Earlier::Ended(_)) => {
            match io.ensure_mapping(source_id, s, fresh) {
                Ok(mapped) => mapped,
                Err(reason) if fresh => return Err(RunError::ExecutionNotCreated(cut_reason(&reason))),
                Err(reason) => {
                    let Earlier::Ingesting(mut record) = earlier else {
                        unreachable!()
                    };
                    return failed(&mut io, trigger, &mut record, &reason);
                }
            }
        }
        _ => (Envelope::Seed, cloud::Growth::Unmapped),
    };
    let record = match earlier {
        Earlier::None | Earlier::Intent(_) => {
            let (since_ms, unsure) = match earlier {
                Earlier::Intent(since_ms) => (since_ms, true),
                _ => {
                    let now_ms = io.timer.now_ms();
                    io.store(
                        trigger.occurrence_id,
                        &Stored::Intent(CreateIntent {
                            creating_since_ms: now_ms,
                        }),
                    );
                    (now_ms, false)
                }
            };
            let execution_id = io
                .create_execution(trigger, since_ms, unsure)
                .map_err(|(failure, unclear)| {
                    RunError::ExecutionNotCreated(not_created_reason(source_id, &failure, unclear.as_deref()))
                })?;
            if let Err(e) = io.storage.set(&owner_key(&execution_id), trigger.occurrence_id) {
                eprintln!(
                    "could not record that occurrence {} owns execution {execution_id}: {e}",
                    trigger.occurrence_id
                );
            }
            let record = OccurrenceRecord {
                execution_id,
                state: RecordState::Started,
                chunks: 0,
                objects: 0,
                reason: None,
                checkpoint: None,
                budget: RunBudget::default(),
                chunk_limits: settings.as_ref().ok().map(|s| RunChunkLimits {
                    max_objects: s.chunk.max_objects,
                    max_bytes: s.chunk.max_bytes,
                }),
            };
            io.remember(trigger.occurrence_id, &record);
            (record, false)
        }
        Earlier::Ended(result) => return result,
        Earlier::Ingesting(record) => (record, true),
        Earlier::Failing(..) => unreachable!("reported above"),
    };
    go_on(&mut io, trigger, settings, record, envelope, growth)
}

/// Ingests from `record`'s checkpoint (or from the start), then completes,
/// pauses or fails the execution.
fn go_on<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    trigger: Trigger<'_>,
    settings: Result<Settings, SettingError>,
    (record, continued): (OccurrenceRecord, bool),
    envelope: Envelope,
    growth: cloud::Growth,
) -> Result<Outcome, RunError> {
    let source_id = trigger.import_source_id;
    let mut run = match settings {
        Ok(mut settings) => {
            if let Some(limits) = record.chunk_limits {
                settings.chunk = ChunkLimits {
                    max_objects: limits.max_objects,
                    max_bytes: limits.max_bytes,
                };
            }
            Run::new(settings, trigger.occurrence_id, record, envelope, continued, growth)
        }
        Err(e) => {
            let mut record = record;
            return failed(io, trigger, &mut record, &e.to_string());
        }
    };
    match ingest(io, source_id, &mut run) {
        // A wait did not fit in the time left: what the record holds is the
        // last checkpoint; the next invocation goes on from there.
        Err(_) if io.retrier.out_of_time() => Ok(pause(io, trigger, &mut run.record)),
        Err(reason) => failed(io, trigger, &mut run.record, &reason),
        Ok(Ingested::Paused) => {
            // Everything read was sent: the checkpoint is exact.
            run.record.checkpoint = Some(run.checkpoint());
            Ok(pause(io, trigger, &mut run.record))
        }
        Ok(Ingested::Done) => {
            let execution_id = run.record.execution_id.clone();
            // The seed closes with history/completed, the cloud dialect
            // with `{"completed": true}` on the data endpoint.
            let closed = match run.settings.dialect {
                Dialect::Seed => {
                    let path = api::execution_path(source_id, &execution_id, "/history/completed");
                    io.send(Method::Post, &path, None)
                }
                Dialect::Cloud => {
                    let path = api::execution_path(source_id, &execution_id, "/data");
                    io.send(Method::Post, &path, Some(cloud::COMPLETED_BODY))
                }
            };
            if let Err(failure) = closed {
                // A retried completion that the API calls "already completed"
                // did go through; anything else is returned, never reported,
                // since completion may have taken effect.
                let done = matches!(
                    io.execution_state(source_id, &execution_id).as_deref(),
                    Some("DONE" | "PROCESSING")
                );
                if !done && io.retrier.out_of_time() {
                    // Every page read and every object accepted: the next
                    // invocation has only completion left to signal.
                    run.record.checkpoint = Some(run.checkpoint());
                    return Ok(pause(io, trigger, &mut run.record));
                }
                let record = &run.record;
                if !done {
                    return Err(RunError::ImportFailed(FailedRun {
                        execution_id,
                        reason: cut_reason(&format!("Signalling completion failed: {failure}")),
                        reported: false,
                        chunks_sent: record.chunks,
                        objects_sent: record.objects,
                    }));
                }
            }
            let mut record = run.record;
            record.state = RecordState::Completed;
            record.checkpoint = None;
            io.retrier.spend(&mut record.budget);
            record.budget.cursors = Default::default();
            io.remember(trigger.occurrence_id, &record);
            Ok(Outcome::Completed(RunReport {
                execution_id,
                chunks_sent: record.chunks,
                objects_sent: record.objects,
                retries: io.retrier.retries(),
                replayed: false,
            }))
        }
    }
}

/// Reports `reason` against the record's execution and records the failure.
/// When the report does not fit in the invocation's time left, the failure
/// is kept in the record for the next invocation to report, and the run
/// pauses.
fn failed<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    trigger: Trigger<'_>,
    record: &mut OccurrenceRecord,
    reason: &str,
) -> Result<Outcome, RunError> {
    let failed = fail(
        io,
        trigger.import_source_id,
        record.execution_id.clone(),
        reason,
        record.chunks,
        record.objects,
    );
    if !failed.reported && io.retrier.out_of_time() {
        record.reason = Some(cut_reason(reason));
        return Ok(pause(io, trigger, record));
    }
    record.state = RecordState::Failed;
    record.reason = Some(failed.reason.clone());
    record.checkpoint = None;
    io.retrier.spend(&mut record.budget);
    record.budget.cursors = Default::default();
    io.remember(trigger.occurrence_id, record);
    Err(RunError::ImportFailed(failed))
}

/// Stores what the run has spent with the record as it is (its checkpoint
/// is the last one stored) and returns the pause.
fn pause<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    trigger: Trigger<'_>,
    record: &mut OccurrenceRecord,
) -> Outcome {
    io.retrier.spend(&mut record.budget);
    io.remember(trigger.occurrence_id, record);
    Outcome::Paused(PausedRun {
        execution_id: record.execution_id.clone(),
        chunks_sent: record.chunks,
        objects_sent: record.objects,
        retries: io.retrier.retries(),
    })
}

/// What app storage says of an earlier delivery of this occurrence.
enum Earlier {
    /// Nothing: this is the first.
    None,
    /// An earlier delivery asked for an execution at this time (platform
    /// clock, ms) and never learnt its id: it may exist.
    Intent(u64),
    /// It ended; its result, replayed.
    Ended(Result<Outcome, RunError>),
    /// Its execution is still ingesting: go on from its checkpoint.
    Ingesting(OccurrenceRecord),
    /// Its execution is still ingesting and it decided to fail it, but ran
    /// out of time to report why: report this reason.
    Failing(OccurrenceRecord, String),
}

fn earlier_delivery<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    trigger: Trigger<'_>,
) -> Earlier {
    let Some(stored) = io.storage.get(&occurrence_key(trigger.occurrence_id)) else {
        return Earlier::None;
    };
    let record = match serde_json::from_str::<Stored>(&stored) {
        Ok(Stored::Record(record)) => *record,
        Ok(Stored::Intent(intent)) => return Earlier::Intent(intent.creating_since_ms),
        // Starting a run could make a second one; say so instead.
        Err(e) => {
            return Earlier::Ended(Err(RunError::ExecutionNotCreated(cut_reason(&format!(
                "The app's record of occurrence {} could not be read ({e}), so this delivery cannot tell whether an earlier one started a run; it started none",
                trigger.occurrence_id
            )))))
        }
    };
    // The reason the API shows, for a run that ended without the app
    // recording how (the platform stopped it, or failed it for it).
    let mut shown_reason = None;
    let state = match record.state {
        RecordState::Started => match io.execution_status(trigger.import_source_id, &record.execution_id) {
            Some((state, _)) if matches!(state.as_str(), "DONE" | "PROCESSING") => RecordState::Completed,
            Some((state, reason)) if matches!(state.as_str(), "FAILED" | "CANCELLED") => {
                shown_reason = Some(reason.unwrap_or_else(|| {
                    format!(
                        "Execution {} of occurrence {} ended {state} in an earlier delivery, and the Assets API gives no reason; see the import history",
                        record.execution_id, trigger.occurrence_id
                    )
                }));
                RecordState::Failed
            }
            Some((state, _)) if state == "INGESTING" => {
                return match record.reason.clone() {
                    Some(reason) => Earlier::Failing(record, reason),
                    None => Earlier::Ingesting(record),
                }
            }
            // The state could not be read in the time left: the next
            // invocation asks again; nothing was written meanwhile.
            None if io.retrier.out_of_time() => {
                return Earlier::Ended(Ok(Outcome::Paused(PausedRun {
                    execution_id: record.execution_id,
                    chunks_sent: record.chunks,
                    objects_sent: record.objects,
                    retries: io.retrier.retries(),
                })))
            }
            other => {
                // Neither resumed nor failed: without the execution's state
                // this delivery cannot tell which is right.
                return Earlier::Ended(Err(RunError::ImportFailed(FailedRun {
                    reason: cut_reason(&format!(
                        "Occurrence {} is being handled by execution {}, whose state could not be read ({}); this delivery left it as it is",
                        trigger.occurrence_id,
                        record.execution_id,
                        other.as_ref().map_or("no answer", |(state, _)| state.as_str())
                    )),
                    execution_id: record.execution_id,
                    reported: false,
                    chunks_sent: record.chunks,
                    objects_sent: record.objects,
                })));
            }
        },
        state => state,
    };
    Earlier::Ended(match state {
        RecordState::Completed => Ok(Outcome::Completed(RunReport {
            execution_id: record.execution_id,
            chunks_sent: record.chunks,
            objects_sent: record.objects,
            retries: 0,
            replayed: true,
        })),
        _ => Err(RunError::ImportFailed(FailedRun {
            execution_id: record.execution_id,
            reason: cut_reason(
                &shown_reason
                    .or(record.reason)
                    .unwrap_or_else(|| "the earlier delivery of this occurrence failed".into()),
            ),
            reported: true,
            chunks_sent: record.chunks,
            objects_sent: record.objects,
        })),
    })
}

/// How ingesting ended, when nothing failed.
enum Ingested {
    /// Every page read, every object accepted.
    Done,
    /// Stopped at a checkpoint before the time limit.
    Paused,
}

/// One run's position in the source and in its chunks, and its record.
struct Run<'o> {
    settings: Settings,
    occurrence_id: &'o str,
    record: OccurrenceRecord,
    chunker: Chunker,
    /// Per object type, the last accepted object's mark.
    sent_through: Vec<(String, Option<Mark>)>,
    /// Objects before this mark were accepted (a resumed run skips them).
    skip_before: Mark,
    /// The object a resumed run expects at `skip_before` (see
    /// [`ResumeAt::expect`]); checked once, on the first page read.
    expect: Option<Landmark>,
    /// Cursors of the pages read from the earliest one still needed on.
    cursors: VecDeque<(u64, Option<String>)>,
    /// The next page to read: its number and cursor; `None` after the last.
    next: Option<(u64, Option<String>)>,
    pages: u64,
    /// True when an earlier delivery worked on this execution: it may have
    /// sent any chunk number, past its last checkpoint too, so the API may
    /// already hold a chunk this run sends.
    continued: bool,
    /// Chunks the checkpoint had open, per type, that no object has
    /// reopened yet. Each may have been sent without an answer, so its
    /// number stays reserved in every checkpoint until it is reopened: its
    /// objects sent under a new number would be stored twice.
    reserved: Vec<(String, u64)>,
    /// How the cloud dialect's mapping takes keys it lacks.
    growth: cloud::Growth,
}

impl<'o> Run<'o> {
    fn new(
        settings: Settings,
        occurrence_id: &'o str,
        record: OccurrenceRecord,
        envelope: Envelope,
        continued: bool,
        growth: cloud::Growth,
    ) -> Run<'o> {
        let prefix = format!("{}-", record.execution_id);
        let Some(checkpoint) = record.checkpoint.clone() else {
            return Run {
                chunker: Chunker::new(settings.chunk, prefix).with_envelope(envelope),
                settings,
                occurrence_id,
                record,
                sent_through: Vec::new(),
                skip_before: (0, 0),
                expect: None,
                cursors: VecDeque::new(),
                next: Some((1, None)),
                pages: 0,
                continued,
                reserved: Vec::new(),
                growth,
            };
        };
        let reserved: Vec<(String, u64)> = checkpoint
            .types
            .iter()
            .filter_map(|t| Some((t.object_type_id.clone(), t.open_chunk?)))
            .collect();
        let chunker = Chunker::resume(settings.chunk, prefix, checkpoint.opened, reserved.iter().cloned())
            .with_envelope(envelope);
        let (skip_before, next, expect) = match checkpoint.resume {
            Some(at) => ((at.page, at.index), Some((at.page, at.cursor)), at.expect),
            None => ((u64::MAX, 0), None, None),
        };
        Run {
            chunker,
            settings,
            occurrence_id,
            sent_through: checkpoint
                .types
                .into_iter()
                .map(|t| (t.object_type_id, t.sent_through))
                .collect(),
            skip_before,
            expect,
            cursors: VecDeque::new(),
            next,
            pages: checkpoint.pages,
            continued,
            record,
            reserved,
            growth,
        }
    }

    /// On the page a resumed run reads first: when the object the checkpoint
    /// expects is not where it was (records were added or removed before it
    /// at the source), positions on this page and after say nothing, so
    /// everything from the page's start is sent again. Objects are keyed by
    /// external id, so what is sent twice is stored once.
    fn check_positions(&mut self, number: u64, page: &Page) {
        let Some(expect) = self.expect.take() else {
            return;
        };
        if number != self.skip_before.0 {
            return;
        }
        let at = page
            .batches
            .iter()
            .flat_map(|b| {
                b.objects
                    .iter()
                    .map(move |o| (b.object_type_id.as_str(), o.external_id.as_str()))
            })
            .nth(self.skip_before.1 as usize);
        if at != Some((expect.object_type_id.as_str(), expect.external_id.as_str())) {
            self.skip_before = (number, 0);
            for (_, through) in &mut self.sent_through {
                if through.is_some_and(|mark| mark >= (number, 0)) {
                    *through = None;
                }
            }
        }
    }

    /// True when the object at `mark` of `object_type_id` was accepted by an
    /// earlier delivery.
    fn accepted(&self, object_type_id: &str, mark: Mark) -> bool {
        mark < self.skip_before
            || self
                .sent_through
                .iter()
                .any(|(t, through)| t == object_type_id && through.is_some_and(|s| mark <= s))
    }

    fn checkpoint(&mut self) -> Checkpoint {
        let resume = match self.chunker.pending().min_by_key(|p| p.first) {
            Some(first) => {
                let (page, index) = first.first;
                let cursor = self
                    .cursors
                    .iter()
                    .find(|(n, _)| *n == page)
                    .and_then(|(_, c)| c.clone());
                let expect = Some(Landmark {
                    object_type_id: first.object_type_id.to_owned(),
                    external_id: first.first_id.to_owned(),
                });
                Some(ResumeAt {
                    page,
                    cursor,
                    index,
                    expect,
                })
            }
            None => self.next.clone().map(|(page, cursor)| ResumeAt {
                page,
                cursor,
                index: 0,
                expect: None,
            }),
        };
        if let Some(at) = &resume {
            while self.cursors.front().is_some_and(|(n, _)| *n < at.page) {
                // Read before the resume point, so never read again by this
                // run unless its source goes round in a circle.
                if let Some((_, Some(cursor))) = self.cursors.pop_front() {
                    self.record.budget.cursors.insert(&cursor);
                }
            }
        }
        let open: Vec<(String, u64)> = self
            .chunker
            .pending()
            .map(|p| (p.object_type_id.to_owned(), p.id))
            .collect();
        Checkpoint {
            resume,
            types: self
                .sent_through
                .iter()
                .map(|(t, through)| TypeMark {
                    object_type_id: t.clone(),
                    sent_through: *through,
                    open_chunk: open
                        .iter()
                        .chain(&self.reserved)
                        .find(|(o, _)| o == t)
                        .map(|(_, id)| *id),
                })
                .chain(
                    // Types with an open chunk but nothing accepted yet.
                    open.iter()
                        .filter(|(o, _)| !self.sent_through.iter().any(|(t, _)| t == o))
                        .map(|(o, id)| TypeMark {
                            object_type_id: o.clone(),
                            sent_through: None,
                            open_chunk: Some(*id),
                        }),
                )
                .collect(),
            opened: self.chunker.opened(),
            pages: self.pages,
        }
    }
}

/// Reads pages from the run's position and submits every chunk; stops at a
/// checkpoint when the invocation is nearly out of time. On failure returns
/// the reason.
fn ingest<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    source_id: &str,
    run: &mut Run<'_>,
) -> Result<Ingested, String> {
    // Cursors read in this delivery; those read before its checkpoint by
    // earlier deliveries are in the record's budget.
    let mut seen: HashSet<String> = HashSet::new();
    let mut read_here = 0u64;
    while let Some((number, cursor)) = run.next.clone() {
        // The next page may take as long as the slowest so far; the first
        // page of an invocation is always read, so every invocation moves on.
        let needed = run
            .settings
            .run
            .margin_ms
            .saturating_add(run.record.budget.slowest_page_ms);
        if read_here > 0 && io.timer.time_left_ms() < needed {
            // Out of time soon: send what is open, so the checkpoint is the
            // next page, and let the platform call again. The margin was
            // kept for this, so retry waits may now use it (up to the
            // deadline, never past): a chunk cut short here and left
            // unanswered would be rebuilt fuller under the same id by the
            // next invocation.
            io.retrier.reserve(0);
            flush(io, source_id, run)?;
            return Ok(Ingested::Paused);
        }
        if run.pages >= run.settings.run.max_pages {
            return Err(format!(
                "Data source did not end after {} pages (source-max-pages); stopped to avoid an endless import",
                run.pages
            ));
        }
        if let Some(c) = &cursor {
            seen.insert(c.clone());
        }
        let (started, waited) = (io.timer.now_ms(), io.retrier.waited_ms());
        let page = io
            .next_page(cursor.as_deref())
            .map_err(|e| format!("{e} while reading page {number}"))?;
        let took = io
            .timer
            .now_ms()
            .saturating_sub(started)
            .saturating_sub(io.retrier.waited_ms() - waited);
        let slowest = &mut run.record.budget.slowest_page_ms;
        *slowest = (*slowest).max(took);
        run.pages += 1;
        read_here += 1;
        run.cursors.push_back((number, cursor));
        run.check_positions(number, &page);
        let mut index = 0u32;
        for batch in &page.batches {
            for object in &batch.objects {
                let mark = (number, index);
                index += 1;
                if run.accepted(&batch.object_type_id, mark) {
                    continue;
                }
                let Some(object) = io.place(source_id, &mut run.growth, &batch.object_type_id, object, &page)? else {
                    // An object type the mapping lacks: named at the end.
                    continue;
                };
                let closed = run
                    .chunker
                    .push(&batch.object_type_id, &object, mark)
                    .map_err(|e| e.to_string())?;
                // The first object of a type reopens its reserved chunk.
                if !run.reserved.is_empty() {
                    run.reserved.retain(|(t, _)| *t != batch.object_type_id);
                }
                if !run.sent_through.iter().any(|(t, _)| *t == batch.object_type_id) {
                    run.sent_through.push((batch.object_type_id.clone(), None));
                }
                if let Some(chunk) = closed {
                    submit(io, source_id, run, chunk)?;
                }
            }
        }
        run.next = match page.next_cursor {
            None => None,
            Some(next) if seen.contains(&next) || run.record.budget.cursors.contains(&next) => {
                let shown: String = next.chars().take(200).collect();
                return Err(format!(
                    "Data source returned cursor {shown:?} after page {number}, but that page was already read in this run; stopped to avoid an endless import"
                ));
            }
            Some(next) => Some((number + 1, Some(next))),
        };
    }
    flush(io, source_id, run)?;
    io.note_unmapped(source_id, run);
    Ok(Ingested::Done)
}

/// Sends every open chunk, one at a time, so each checkpoint still sees
/// the chunks not yet sent.
fn flush<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    source_id: &str,
    run: &mut Run<'_>,
) -> Result<(), String> {
    while let Some(chunk) = run.chunker.close_next() {
        submit(io, source_id, run, chunk)?;
    }
    Ok(())
}

/// How many times one chunk may take a new number because its id was taken
/// by other content: each earlier delivery that stopped between a send and
/// its checkpoint may have used one more number.
const MAX_RENUMBERS: u32 = 8;

/// Sends one chunk, then records the checkpoint after it.
///
/// A chunk id names one content for ever. When the API holds other objects
/// under this chunk's id (409 `CHUNK_CONFLICT`: an earlier delivery sent that
/// number, then the settings or the source changed), the objects go out
/// again under a new number. When the API says how many objects it took,
/// that must be all of them — or none, for a chunk that may have been
/// accepted before (a number an earlier delivery used, or a send that was
/// retried), since the API answers a repeated chunk with 0.
fn submit<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    source_id: &str,
    run: &mut Run<'_>,
    mut chunk: Chunk,
) -> Result<(), String> {
    let path = api::execution_path(source_id, &run.record.execution_id, "/data");
    let what = |run: &Run<'_>, chunk: &Chunk| {
        format!(
            "data chunk {} ({} objects of type {:?})",
            run.record.chunks + 1,
            chunk.objects,
            chunk.object_type_id
        )
    };
    let mut renumbered = 0;
    let answer = loop {
        let retries_before = io.retrier.retries();
        // An accepted chunk is itself the next checkpoint, so its retry
        // waits may use the margin (up to the deadline, never past).
        // Pausing instead would leave a chunk that may have been stored
        // unanswered, for the next invocation to send again.
        let reserve = io.retrier.reserve_ms();
        io.retrier.reserve(0);
        let sent = io.send(Method::Post, &path, Some(&chunk.body));
        io.retrier.reserve(reserve);
        match sent {
            Err(failure) if api::is_chunk_conflict(&failure) && renumbered < MAX_RENUMBERS => {
                renumbered += 1;
                chunk = run.chunker.renumber(chunk).map_err(|e| e.to_string())?;
            }
            Err(failure) => {
                let what = what(run, &chunk);
                return Err(match failure {
                    ApiFailure::Status { .. } => format!("Assets API rejected {what}: {failure}"),
                    ApiFailure::Call(_) => format!("Could not send {what}: {failure}"),
                    ApiFailure::Unreadable(_) => {
                        format!("Assets API took {what}, but its answer was not usable: {failure}")
                    }
                });
            }
            Ok(answer) => break (answer, io.retrier.retries() > retries_before),
        }
    };
    let (answer, retried) = answer;
    if let Some(accepted) = api::objects_accepted(&answer.body) {
        let sent_before = run.continued || retried;
        let whole = accepted == chunk.objects as u64 || (accepted == 0 && sent_before);
        if !whole {
            return Err(format!(
                "Assets API accepted {accepted} of the {} objects of {} (clientGeneratedId number {}); the rest were not stored, so the import stopped rather than complete with objects missing",
                chunk.objects,
                what(run, &chunk),
                chunk.id
            ));
        }
    }
    run.record.chunks += 1;
    run.record.objects += chunk.objects as u64;
    if let Some((_, through)) = run.sent_through.iter_mut().find(|(t, _)| *t == chunk.object_type_id) {
        *through = Some(chunk.last);
    }
    run.record.checkpoint = Some(run.checkpoint());
    io.retrier.spend(&mut run.record.budget);
    io.remember(run.occurrence_id, &run.record);
    if run.settings.dialect == Dialect::Cloud {
        // Progress is for people watching; one attempt, and a lost report
        // never stops the import.
        let path = api::execution_path(source_id, &run.record.execution_id, "/progress");
        let body = cloud::progress_body(run.record.chunks, run.record.objects, run.pages);
        let _ = io.api.call(Method::Put, &path, Some(&body));
    }
    Ok(())
}

fn fail<A: AssetsApi, S: DataSource, T: Timer, K: KeyValue>(
    io: &mut Io<'_, A, S, T, K>,
    source_id: &str,
    execution_id: String,
    reason: &str,
    chunks_sent: u32,
    objects_sent: u64,
) -> FailedRun {
    let reason = cut_reason(reason);
    let path = api::execution_path(source_id, &execution_id, "/history/failed");
    let reported = match io.send(Method::Post, &path, Some(&api::failure_body(&reason))) {
        Ok(_) => Ok(()),
        // A retried report the API calls "already failed" did go through
        // when the execution shows this very reason (the real API names
        // no FAILED state: a failed execution reads CANCELLED).
        Err(failure) => {
            let path = api::execution_path(source_id, &execution_id, "/status");
            let shown = io.send(Method::Get, &path, None).ok();
            let state = shown.as_ref().and_then(|r| api::execution_state(&r.body));
            let shown_reason = shown.as_ref().and_then(|r| api::failure_reason(&r.body));
            match state.as_deref() {
                Some("FAILED") => Ok(()),
                Some("CANCELLED") if shown_reason.as_deref() == Some(reason.as_str()) => Ok(()),
                _ => Err(failure),
            }
        }
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
        chunks_sent,
        objects_sent,
    }
}

fn not_created_reason(source_id: &str, failure: &ApiFailure, unclear: Option<&str>) -> String {
    let hint = match failure {
        ApiFailure::Status { code: Some(code), .. } if code == "IN_PROGRESS" => {
            "; an execution of this import source is still running, so this run was not started"
        }
        _ => "",
    };
    let unclear = match unclear {
        Some(why) => format!(
            ". An earlier request for this occurrence's execution got no answer, and the latest execution cannot be shown to be the one it made ({why}), so it was left as it is"
        ),
        None => String::new(),
    };
    cut_reason(&format!(
        "Could not create an execution for import source {source_id}: {failure}{hint}{unclear}"
    ))
}
