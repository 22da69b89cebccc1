//! The Assets mock's state and the rules of the execution lifecycle.
//!
//! Plain data and methods that either change the state or return the
//! [`ApiError`] the real API would give; no parsing, no I/O. The router turns
//! requests into these calls.

pub use super::import_source::{ImportSource, SourceType};
use super::journal::{Act, Writer, Written};
use super::ledger::{Fence, LedgerEntry, OccurrenceState, Stale};
use super::schedule::Schedule;
use super::{ApiError, Quotas};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Largest `failureReason` the API takes, in characters counted as a Java
/// server counts them: UTF-16 code units (an emoji is two).
pub const MAX_FAILURE_REASON_CHARS: usize = 1024;

/// Longest `clientGeneratedId` a chunk may carry, in bytes (UTF-8): the ids
/// of an execution's accepted chunks are kept in memory while it ingests
/// and on disk for ever, so each must be small. 256 is room for any UUID,
/// hash or "run/page/attempt" key a client would make.
pub const MAX_CLIENT_GENERATED_ID_BYTES: usize = 256;

/// The digest of a chunk's content: its objects, grouped by type, in the
/// order sent (SHA-256 over a length-prefixed encoding, so no two contents
/// share an encoding; the first 16 bytes, in hex). What a
/// `clientGeneratedId` was first accepted with, to tell a re-send of the
/// same chunk from other objects under the same id.
pub fn chunk_digest(groups: &[(String, Vec<AssetObject>)]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let mut field = |text: &str| {
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    };
    for (object_type_id, objects) in groups {
        field(object_type_id);
        field(&objects.len().to_string());
        for object in objects {
            field(&object.external_id);
            field(&object.label);
            field(&object.attributes.len().to_string());
            for (key, values) in &object.attributes {
                field(key);
                field(&values.len().to_string());
                values.iter().for_each(|v| field(v));
            }
        }
    }
    hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// State of an execution, as the real API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Accepting data chunks.
    Ingesting,
    /// Completion signalled; the data is being processed, for a time
    /// proportional to its objects on the service's clock (see
    /// [`processing_time`]), then [`ExecutionStatus::Done`].
    Processing,
    /// Processed.
    Done,
    /// Failed, with a reason in the history. The real API names no such
    /// state: on the wire a failed execution reads `CANCELLED` (see
    /// [`ExecutionStatus::wire_name`]) and its history line says why.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl ExecutionStatus {
    /// The name the real API gives the state: `INGESTING`, `PROCESSING`,
    /// `DONE` or `CANCELLED` (which a failed execution reads as).
    pub fn wire_name(self) -> &'static str {
        match self {
            ExecutionStatus::Ingesting => "INGESTING",
            ExecutionStatus::Processing => "PROCESSING",
            ExecutionStatus::Done => "DONE",
            ExecutionStatus::Failed | ExecutionStatus::Cancelled => "CANCELLED",
        }
    }
}

/// How many objects the mock "processes" per second after completion is
/// signalled: an execution is `PROCESSING` for `objects / rate` on the
/// service's clock, so a virtual clock moves it on.
pub const PROCESSED_OBJECTS_PER_SECOND: u64 = 10_000;

/// How long an execution of `objects` objects stays `PROCESSING`.
pub fn processing_time(objects: u64) -> chrono::Duration {
    chrono::Duration::microseconds((objects * 1_000_000 / PROCESSED_OBJECTS_PER_SECOND) as i64)
}

/// Outcome of a history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The execution is still ingesting.
    Running,
    /// Completion was signalled and the data processed.
    Completed,
    /// The app (or the platform on its behalf) reported a failure.
    Failed,
    /// The execution was cancelled.
    Cancelled,
    /// A scheduled occurrence that did not run; the reason says why.
    Skipped,
    /// A scheduled occurrence that fell due while nothing could run it.
    Missed,
}

/// One line of an import source's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The execution, when one was created.
    pub execution_id: Option<String>,
    /// The import source.
    pub import_source_id: String,
    /// True for runs started by a schedule.
    pub scheduled: bool,
    /// The schedule that fired, if known.
    pub schedule_id: Option<String>,
    /// The occurrence that fired, if known.
    pub occurrence_id: Option<String>,
    /// The outcome.
    pub status: Outcome,
    /// Why it failed, was skipped or missed.
    pub failure_reason: Option<String>,
    /// Distinct objects the execution holds.
    pub objects: u64,
    /// When it started (for skipped/missed entries: when it was due).
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Times the platform invoked the app for this run, when more than one:
    /// the import went on from a checkpoint after pausing before its time
    /// limit or being stopped at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations: Option<u32>,
    /// When the data of a completed execution is (or will be) processed:
    /// its status reads `PROCESSING` until then, `DONE` after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<DateTime<Utc>>,
    /// The progress the app last reported (`PUT …/progress`), as it sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// A progress report as kept: its compact JSON text, in about the bytes it
/// was sent in. A parsed `serde_json::Value` took some 17 times the body's
/// size (a 4 KiB array of zeros, 69 KB), and it stays in the history line
/// for ever. On the wire and in a database it is the JSON value itself,
/// exactly as a `Value` was, so stored history reads back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress(Box<str>);

impl Progress {
    /// The report `object` as it is kept.
    pub fn new(object: &serde_json::Map<String, serde_json::Value>) -> Progress {
        Progress(serde_json::to_string(object).expect("a JSON map serializes").into())
    }

    /// The compact JSON text kept.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The report as a JSON value, parsed anew on every call (for reading
    /// it, not for keeping it).
    pub fn value(&self) -> serde_json::Value {
        // Written by serde_json from a JSON value, so it parses.
        serde_json::from_str(&self.0).expect("kept progress is JSON")
    }
}

impl Serialize for Progress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Parsed for the moment it is written: memory for one answer, not
        // for every line kept.
        self.value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Progress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Progress, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Progress(value.to_string().into()))
    }
}

/// Cuts a failure reason to the API's limit, [`MAX_FAILURE_REASON_CHARS`]
/// UTF-16 code units (which is never more Unicode scalar values), with
/// credentials hidden: for the reasons the platform writes itself.
pub fn fit_reason(reason: &str) -> String {
    assets_redact::cut_utf16(&assets_redact::redact(reason), MAX_FAILURE_REASON_CHARS)
}

/// An object as stored by an execution.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetObject {
    /// External id; unique per object type within an execution.
    pub external_id: String,
    /// Display name.
    pub label: String,
    /// Attribute values by key.
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl AssetObject {
    /// What the object costs to hold, in bytes: the lengths of its strings
    /// (external id, label, attribute keys and values), the measure of
    /// [`Quotas::object_bytes`] and [`Quotas::execution_bytes`].
    pub fn held_bytes(&self) -> u64 {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(key, values)| key.len() + values.iter().map(String::len).sum::<usize>())
            .sum();
        (self.external_id.len() + self.label.len() + attributes) as u64
    }
}

/// Reads a `clientGeneratedId`, refusing one over
/// [`MAX_CLIENT_GENERATED_ID_BYTES`]: a parsed chunk never carries a longer
/// one, in either dialect.
pub fn bounded_chunk_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let id = Option::<String>::deserialize(deserializer)?;
    match id {
        Some(id) if id.len() > MAX_CLIENT_GENERATED_ID_BYTES => Err(serde::de::Error::custom(format!(
            "a chunk id is at most {MAX_CLIENT_GENERATED_ID_BYTES} bytes (UTF-8), and this one is {}; \
             it is kept for as long as the execution is",
            id.len()
        ))),
        id => Ok(id),
    }
}

/// One data chunk, as `POST .../data` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataChunk {
    /// The client's id for this chunk (the real API's field): a chunk sent
    /// again with the same id is acknowledged and not stored twice. At most
    /// [`MAX_CLIENT_GENERATED_ID_BYTES`] when parsed.
    #[serde(default, deserialize_with = "bounded_chunk_id")]
    pub client_generated_id: Option<String>,
    /// Object type of every object in the chunk.
    pub object_type_id: String,
    /// The objects.
    pub objects: Vec<AssetObject>,
}

/// One delivery of a trigger event to an app: what created an execution,
/// so that the platform's clean-up after the delivery fails only its own
/// execution, never another delivery's. The platform's confinement of the
/// app's API ([`crate::confine::ConfinedAssets`]) writes it into the create
/// call, whatever the app sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Unique per delivery (a v4 uuid): two deliveries of the same attempt
    /// (a callback sent twice) are two.
    pub id: String,
    /// The occurrence and attempt delivered. A manual trigger's occurrence
    /// id is its own, which no ledger entry has.
    #[serde(flatten)]
    pub fence: Fence,
}

impl Delivery {
    /// A delivery as the platform writes it beside a call
    /// ([`Delivery::header`]); 400 naming the header when it is not one.
    pub fn parse(text: &str) -> Result<Delivery, ApiError> {
        serde_json::from_str(text).map_err(|e| {
            ApiError::invalid_field(
                assets_runtime::DELIVERY_HEADER,
                format!(
                    "{} is not a delivery the platform wrote: {e}",
                    assets_runtime::DELIVERY_HEADER
                ),
            )
        })
    }

    /// The delivery as the platform writes it beside a call (JSON).
    pub fn header(&self) -> String {
        serde_json::to_string(self).expect("a delivery serializes")
    }

    /// A new delivery of attempt `attempt` at `occurrence_id`.
    pub fn new(occurrence_id: impl Into<String>, attempt: u32) -> Delivery {
        Delivery {
            id: uuid::Uuid::new_v4().to_string(),
            fence: Fence {
                occurrence_id: occurrence_id.into(),
                attempt,
            },
        }
    }
}

/// An execution: one run of an import.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Execution id.
    pub id: String,
    /// Import source.
    pub import_source_id: String,
    /// Started by a schedule.
    pub scheduled: bool,
    /// State.
    pub status: ExecutionStatus,
    /// Objects by (object type, external id); a later object with the same
    /// key replaces the earlier.
    pub objects: HashMap<(String, String), AssetObject>,
    /// Objects received in all chunks, duplicates included.
    pub received: u64,
    /// Chunks accepted.
    pub chunks: u32,
    /// `clientGeneratedId`s of the chunks accepted, each with the digest of
    /// the content it was accepted with ([`chunk_digest`]; `None` for ids
    /// stored before digests were kept, whose content is not known).
    pub chunk_ids: HashMap<String, Option<String>>,
    /// Index of this execution's line in the history.
    pub history_index: usize,
    /// The delivery whose app created it; `None` for one created by a
    /// caller the platform does not host (an app called back over HTTP
    /// elsewhere, an operator), or stored before deliveries were recorded.
    pub created_by: Option<Delivery>,
}

/// What one execution may hold: the figures of [`Quotas`] that
/// [`State::add_objects`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionLimits {
    /// [`Quotas::objects_per_execution`].
    pub objects: u64,
    /// [`Quotas::execution_bytes`].
    pub bytes: u64,
    /// [`Quotas::chunks_per_execution`].
    pub chunks: u32,
}

impl From<Quotas> for ExecutionLimits {
    fn from(quotas: Quotas) -> ExecutionLimits {
        ExecutionLimits {
            objects: quotas.objects_per_execution,
            bytes: quotas.execution_bytes,
            chunks: quotas.chunks_per_execution,
        }
    }
}

impl From<u64> for ExecutionLimits {
    /// At most `objects` objects, the other figures unbounded: what
    /// [`State::add_chunk`] took before there were others, for the host's
    /// own bookkeeping and tests.
    fn from(objects: u64) -> ExecutionLimits {
        ExecutionLimits {
            objects,
            bytes: u64::MAX,
            chunks: u32::MAX,
        }
    }
}

/// 413 when storing `groups` would take `execution`, holding `held` bytes
/// of objects now, over one of `limits` (see [`State::add_objects`]).
fn check_limits(
    execution: &Execution,
    held: u64,
    groups: &[(String, Vec<AssetObject>)],
    limits: ExecutionLimits,
) -> Result<(), ApiError> {
    let kept = "Nothing of the chunk was stored; the execution is still ingesting and can be completed";
    if execution.chunks >= limits.chunks {
        return Err(ApiError::limit_exceeded(format!(
            "execution {} has accepted {} chunks; an execution accepts at most {} (quota chunks_per_execution), \
             empty ones included. {kept}",
            execution.id, execution.chunks, limits.chunks
        )));
    }
    let objects = execution.objects.len() as u64;
    let carried: usize = groups.iter().map(|(_, objects)| objects.len()).sum();
    let carried_bytes: u64 = groups
        .iter()
        .flat_map(|(_, objects)| objects.iter().map(AssetObject::held_bytes))
        .sum();
    // Counting what the chunk adds after what it replaces costs a map as
    // large as the chunk: only when the chunk could go over at all.
    if objects.saturating_add(carried as u64) <= limits.objects && held.saturating_add(carried_bytes) <= limits.bytes {
        return Ok(());
    }
    // The chunk's objects as they will be stored: a later one with the same
    // key replaces an earlier one, in the chunk as in the execution.
    let mut stored: HashMap<(&str, &str), u64> = HashMap::new();
    for (object_type_id, group) in groups {
        for object in group {
            stored.insert((object_type_id, &object.external_id), object.held_bytes());
        }
    }
    let mut new = 0u64;
    let mut after = held;
    for ((object_type_id, external_id), bytes) in stored {
        after += bytes;
        match execution
            .objects
            .get(&(object_type_id.to_owned(), external_id.to_owned()))
        {
            Some(old) => after = after.saturating_sub(old.held_bytes()),
            None => new += 1,
        }
    }
    if objects + new > limits.objects {
        return Err(ApiError::limit_exceeded(format!(
            "execution {} holds {objects} objects and this chunk carries {carried} ({new} of them new); an \
             execution holds at most {} objects (quota objects_per_execution). {kept}",
            execution.id, limits.objects
        )));
    }
    if after > limits.bytes {
        return Err(ApiError::limit_exceeded(format!(
            "execution {} holds {held} bytes of objects and this chunk carries {carried_bytes} ({after} held \
             after it, what it replaces subtracted); an execution holds at most {} bytes (quota execution_bytes), \
             counted as the lengths of its objects' external ids, labels, attribute names and values. {kept}",
            execution.id, limits.bytes
        )));
    }
    Ok(())
}

/// The bytes `objects` hold (see [`AssetObject::held_bytes`]).
fn bytes_of(objects: &HashMap<(String, String), AssetObject>) -> u64 {
    objects.values().map(AssetObject::held_bytes).sum()
}

/// Everything the mock knows.
#[derive(Debug, Default)]
pub struct State {
    pub(super) workspaces: HashSet<String>,
    pub(super) sources: HashMap<String, ImportSource>,
    pub(super) executions: HashMap<String, Execution>,
    /// Latest execution per import source.
    pub(super) latest: HashMap<String, String>,
    pub(super) history: Vec<HistoryEntry>,
    /// Indices into `history` by import source, ascending: a page of one
    /// source's history costs the page, not the whole history.
    pub(super) history_by_source: HashMap<String, Vec<usize>>,
    /// Schedules by id (see `schedules.rs`).
    pub(super) schedules: HashMap<String, Schedule>,
    /// Schedule id by import source: at most one each.
    pub(super) schedule_of_source: HashMap<String, String>,
    /// The occurrence ledger by occurrence id (see [`super::ledger`]): an
    /// occurrence is claimed once, and ends in one terminal state.
    pub(super) ledger: HashMap<String, LedgerEntry>,
    /// The occurrence being delivered, by import source: at most one each
    /// (runs of a source never overlap).
    pub(super) delivering: HashMap<String, String>,
    /// What changed since the last [`State::take_changes`]; kept only while a
    /// durable store is attached, so the in-memory mock pays nothing.
    pub(super) changes: Option<Changes>,
    /// The bytes each ingesting execution's objects hold (see
    /// [`AssetObject::held_bytes`]), so a chunk costs its own objects, not
    /// the execution's. Derived from `objects` and never stored: an entry,
    /// when present, is their sum, kept so by [`State::add_objects`]; every
    /// other path that may change an execution's objects (restoring,
    /// applying another host's rows, forgetting, evicting) drops the entry,
    /// and the next chunk sums `objects` again. So it cannot drift.
    held_bytes: HashMap<String, u64>,
    /// Journal entries not yet handed to a durable store (all of them for
    /// the in-memory mock, which has none).
    pub(super) journal: Vec<Written>,
    /// How many journal entries a durable store was handed: the in-memory
    /// journal's sequence numbers go on from there.
    journal_handed: usize,
}

/// The ledger state of an occurrence that did not run, from its history line.
fn unrun_state(status: Outcome) -> OccurrenceState {
    match status {
        Outcome::Skipped => OccurrenceState::Skipped,
        Outcome::Missed => OccurrenceState::Missed,
        _ => OccurrenceState::Failed,
    }
}

/// The keys of everything changed since the last flush: a durable store
/// writes exactly these rows, in one transaction, before the lock is released.
#[derive(Debug, Default)]
pub struct Changes {
    /// Workspaces created.
    pub workspaces: BTreeSet<String>,
    /// Import sources created or changed.
    pub sources: BTreeSet<String>,
    /// Executions created or changed.
    pub executions: BTreeSet<String>,
    /// (execution, object type, external id) of objects stored or replaced.
    pub objects: Vec<(String, String, String)>,
    /// (execution, clientGeneratedId, content digest) of chunks accepted.
    pub chunk_ids: Vec<(String, String, String)>,
    /// Executions whose objects were dropped.
    pub forgotten: BTreeSet<String>,
    /// History lines added or changed, by index.
    pub history: BTreeSet<usize>,
    /// Schedules created, changed or deleted.
    pub schedules: BTreeSet<String>,
    /// Ledger entries claimed or changed, by occurrence id.
    pub ledger: BTreeSet<String>,
    /// Journal entries written, in order.
    pub journal: Vec<Written>,
}

impl Changes {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty()
            && self.sources.is_empty()
            && self.executions.is_empty()
            && self.objects.is_empty()
            && self.chunk_ids.is_empty()
            && self.forgotten.is_empty()
            && self.history.is_empty()
            && self.schedules.is_empty()
            && self.ledger.is_empty()
            && self.journal.is_empty()
    }
}

impl State {
    /// Starts recording what changes, for a durable store.
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Changes::default);
    }

    /// What changed since the last call (empty when not tracking).
    pub fn take_changes(&mut self) -> Changes {
        let Some(changes) = self.changes.as_mut() else {
            return Changes::default();
        };
        let mut changes = std::mem::take(changes);
        self.journal_handed += self.journal.len();
        changes.journal = std::mem::take(&mut self.journal);
        changes
    }

    /// Appends a write to the journal ([`super::journal`]), stored with the
    /// change it belongs to.
    // One argument per column of the record, each named at the call.
    #[allow(clippy::too_many_arguments)]
    pub fn journal(
        &mut self,
        at: DateTime<Utc>,
        occurrence_id: &str,
        attempt: Option<u32>,
        execution_id: Option<&str>,
        act: Act,
        by: &Writer,
        refused: Option<String>,
    ) {
        if let Some(why) = &refused {
            tracing::warn!(occurrence = %occurrence_id, ?attempt, ?act, ?by, %why, "refused a stale write");
        }
        self.journal.push(Written {
            at,
            wall_at: Utc::now(),
            occurrence_id: occurrence_id.to_owned(),
            attempt,
            execution_id: execution_id.map(str::to_owned),
            act,
            by: by.clone(),
            refused,
        });
    }

    /// The in-memory journal after sequence number `after`, at most
    /// `limit` entries (the mock without a durable store).
    pub fn journal_page(&self, after: i64, limit: usize) -> super::journal::JournalPage {
        let first = usize::try_from(after).unwrap_or(0).saturating_sub(self.journal_handed);
        self.journal
            .iter()
            .enumerate()
            .skip(first)
            .take(limit)
            .map(|(i, w)| super::journal::Stored {
                seq: (self.journal_handed + i + 1) as i64,
                node: None,
                written: w.clone(),
            })
            .collect()
    }

    /// Notes a change when tracking; free otherwise.
    pub(super) fn touch(&mut self, note: impl FnOnce(&mut Changes)) {
        if let Some(changes) = &mut self.changes {
            note(changes);
        }
    }

    /// Adds a workspace.
    pub fn add_workspace(&mut self, id: String) {
        self.touch(|c| {
            c.workspaces.insert(id.clone());
        });
        self.workspaces.insert(id);
    }

    /// Adds an import source to an existing workspace.
    pub fn add_source(&mut self, source: ImportSource) -> Result<(), ApiError> {
        self.workspace(&source.workspace_id)?;
        self.touch(|c| {
            c.sources.insert(source.id.clone());
        });
        self.sources.insert(source.id.clone(), source);
        Ok(())
    }

    /// Every import source, in no particular order.
    pub fn sources(&self) -> impl Iterator<Item = &ImportSource> {
        self.sources.values()
    }

    /// Every workspace id, in no particular order.
    pub fn workspaces(&self) -> impl Iterator<Item = &String> {
        self.workspaces.iter()
    }

    /// The workspace, or 404.
    pub fn workspace(&self, workspace_id: &str) -> Result<(), ApiError> {
        if self.workspaces.contains(workspace_id) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("workspace {workspace_id} does not exist")))
        }
    }

    /// The import source within `workspace_id`, or 404.
    pub fn source(&self, workspace_id: &str, source_id: &str) -> Result<&ImportSource, ApiError> {
        self.workspace(workspace_id)?;
        self.sources
            .get(source_id)
            .filter(|s| s.workspace_id == workspace_id)
            .ok_or_else(|| ApiError::unknown_source(workspace_id, source_id))
    }

    /// Any import source by id.
    pub fn source_by_id(&self, source_id: &str) -> Option<&ImportSource> {
        self.sources.get(source_id)
    }

    /// The execution of `source_id`, or 404.
    pub fn execution(&self, source_id: &str, execution_id: &str) -> Result<&Execution, ApiError> {
        self.executions
            .get(execution_id)
            .filter(|e| e.import_source_id == source_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "execution {execution_id} does not exist for import source {source_id}"
                ))
            })
    }

    /// The latest execution of `source_id`, if any.
    pub fn latest_execution(&self, source_id: &str) -> Option<&Execution> {
        self.latest.get(source_id).and_then(|id| self.executions.get(id))
    }

    /// The execution still ingesting for `source_id`, if any.
    pub fn ingesting(&self, source_id: &str) -> Option<&Execution> {
        self.latest_execution(source_id)
            .filter(|e| e.status == ExecutionStatus::Ingesting)
    }

    /// Starts an execution, created by `by` (the delivery whose app asked,
    /// when the platform hosts it); 409 `IN_PROGRESS` while another one
    /// ingests, 409 `SUPERSEDED` when `by` delivers an occurrence of this
    /// source that its attempt no longer holds (a later attempt took it
    /// over, or it ended): a superseded delivery starts nothing.
    pub fn start_execution(
        &mut self,
        source_id: &str,
        id: String,
        scheduled: bool,
        by: Option<&Delivery>,
        now: DateTime<Utc>,
    ) -> Result<&Execution, ApiError> {
        if let Some(running) = self.ingesting(source_id) {
            return Err(ApiError::conflict(
                "IN_PROGRESS",
                format!(
                    "execution {} of import source {source_id} is still ingesting; complete, fail or cancel it first",
                    running.id
                ),
            ));
        }
        // A scheduled execution belongs to the occurrence being delivered
        // for its source: link them now, in the same change, so the ledger
        // knows the execution even if the platform dies the next moment. A
        // creator that names its occurrence must still hold it (the fence);
        // one that names none gets the occurrence being delivered, as the
        // real platform links an app's scheduled execution.
        let own = by.map(|d| &d.fence).filter(|f| {
            self.ledger
                .get(&f.occurrence_id)
                .is_some_and(|e| e.import_source_id == source_id)
        });
        let entry = match own {
            Some(fence) if scheduled => {
                let entry = self.ledger.get_mut(&fence.occurrence_id).expect("found above");
                if let Err(stale) = entry.held_by(fence) {
                    let refusal = Some(stale.to_string());
                    let (occurrence, attempt) = (fence.occurrence_id.clone(), fence.attempt);
                    self.journal(
                        now,
                        &occurrence,
                        Some(attempt),
                        Some(&id),
                        Act::Linked,
                        &Writer::of(by),
                        refusal,
                    );
                    return Err(ApiError::conflict(
                        "SUPERSEDED",
                        format!("{fence} may not start an execution: {stale}; this delivery is over"),
                    ));
                }
                Some(entry)
            }
            _ if scheduled => self.delivering.get(source_id).and_then(|o| self.ledger.get_mut(o)),
            _ => None,
        };
        let occurrence = match entry {
            Some(entry) if entry.execution_id.is_none() => {
                entry.execution_id = Some(id.clone());
                Some((entry.schedule_id.clone(), entry.occurrence_id.clone(), entry.attempt))
            }
            _ => None,
        };
        let occurrence = occurrence.map(|(schedule_id, occurrence_id, attempt)| {
            self.journal(
                now,
                &occurrence_id,
                Some(attempt),
                Some(&id),
                Act::Linked,
                &Writer::of(by),
                None,
            );
            let changed = occurrence_id.clone();
            self.touch(|c| {
                c.ledger.insert(changed);
            });
            (schedule_id, occurrence_id)
        });
        let (schedule_id, occurrence_id) = occurrence.unzip();
        self.push_history(HistoryEntry {
            execution_id: Some(id.clone()),
            import_source_id: source_id.to_owned(),
            scheduled,
            schedule_id,
            occurrence_id,
            status: Outcome::Running,
            failure_reason: None,
            objects: 0,
            started_at: now,
            ended_at: None,
            invocations: None,
            processed_at: None,
            progress: None,
        });
        let execution = Execution {
            id: id.clone(),
            import_source_id: source_id.to_owned(),
            scheduled,
            status: ExecutionStatus::Ingesting,
            objects: HashMap::new(),
            received: 0,
            chunks: 0,
            chunk_ids: HashMap::new(),
            history_index: self.history.len() - 1,
            created_by: by.cloned(),
        };
        let index = execution.history_index;
        self.touch(|c| {
            c.executions.insert(id.clone());
            c.history.insert(index);
        });
        self.latest.insert(source_id.to_owned(), id.clone());
        self.held_bytes.remove(&id);
        Ok(self.executions.entry(id).or_insert(execution))
    }

    /// Stores a chunk's objects and returns how many it accepted: 0 for a
    /// chunk whose `clientGeneratedId` was already accepted with the same
    /// content, 409 `CHUNK_CONFLICT` naming the id when that id was accepted
    /// with different content (an id names one content for ever: a client
    /// that re-sends it with other objects must learn they were not stored,
    /// not read a silent 0 as success). 400 once the
    /// execution has left `INGESTING`; 413 when the execution would go over
    /// `limits` (see [`State::add_objects`]).
    pub fn add_chunk(
        &mut self,
        source_id: &str,
        execution_id: &str,
        chunk: DataChunk,
        limits: impl Into<ExecutionLimits>,
    ) -> Result<usize, ApiError> {
        self.add_objects(
            source_id,
            execution_id,
            chunk.client_generated_id,
            vec![(chunk.object_type_id, chunk.objects)],
            limits,
        )
    }

    /// Stores one chunk's objects, grouped by object type (a real-form chunk
    /// may hold several), as [`State::add_chunk`] does.
    ///
    /// A chunk that would take the execution over one of `limits` is
    /// refused whole (413 `LIMIT_EXCEEDED`, nothing of it stored), and the
    /// execution goes on ingesting: more than `chunks` chunks (empty ones
    /// count: each costs its id), more than `objects` objects, or more than
    /// `bytes` bytes of objects ([`AssetObject::held_bytes`]). Objects and
    /// bytes are counted as the execution holds them, by (object type,
    /// external id): a re-sent object replaces the one before, adding
    /// nothing to the count and its difference in size to the bytes. That
    /// is what the quotas protect (memory and disk grow with the objects
    /// held, not with the ones received), and counting received objects
    /// would refuse an import that retries chunks without a
    /// `clientGeneratedId`.
    pub fn add_objects(
        &mut self,
        source_id: &str,
        execution_id: &str,
        client_generated_id: Option<String>,
        groups: Vec<(String, Vec<AssetObject>)>,
        limits: impl Into<ExecutionLimits>,
    ) -> Result<usize, ApiError> {
        let tracking = self.changes.is_some();
        self.ingesting_execution(source_id, execution_id, "data can be sent")?;
        let execution = self.executions.get_mut(execution_id).expect("checked above");
        let digest = client_generated_id.as_ref().map(|_| chunk_digest(&groups));
        if let (Some(id), Some(digest)) = (&client_generated_id, &digest) {
            match execution.chunk_ids.get(id) {
                None => {}
                Some(Some(first)) if first != digest => {
                    return Err(ApiError::conflict(
                        "CHUNK_CONFLICT",
                        format!(
                            "Chunk {id:?} was already accepted for execution {execution_id} with different objects; \
                             nothing of this one was stored. A clientGeneratedId names one content: send other objects under a new id"
                        ),
                    ))
                }
                // The same content again (an answer lost on the way back),
                // or an id kept from before digests: stored once.
                Some(_) => return Ok(0),
            }
        }
        let held = self
            .held_bytes
            .entry(execution_id.to_owned())
            .or_insert_with(|| bytes_of(&execution.objects));
        check_limits(execution, *held, &groups, limits.into())?;
        if let (Some(id), Some(digest)) = (&client_generated_id, &digest) {
            execution.chunk_ids.insert(id.clone(), Some(digest.clone()));
        }
        let mut count = 0;
        let mut keys: Vec<(String, String, String)> = Vec::new();
        for (object_type_id, objects) in groups {
            count += objects.len();
            if tracking {
                let ids = objects.iter().map(|o| o.external_id.clone());
                keys.extend(ids.map(|id| (execution_id.to_owned(), object_type_id.clone(), id)));
            }
            for object in objects {
                *held += object.held_bytes();
                let key = (object_type_id.clone(), object.external_id.clone());
                if let Some(old) = execution.objects.insert(key, object) {
                    *held = held.saturating_sub(old.held_bytes());
                }
            }
        }
        execution.received += count as u64;
        execution.chunks += 1;
        let distinct = execution.objects.len() as u64;
        let index = execution.history_index;
        self.history[index].objects = distinct;
        self.touch(|c| {
            c.executions.insert(execution_id.to_owned());
            c.history.insert(index);
            c.objects.extend(keys);
            if let (Some(id), Some(digest)) = (client_generated_id, digest) {
                c.chunk_ids.push((execution_id.to_owned(), id, digest));
            }
        });
        Ok(count)
    }

    /// The bytes the objects of `execution_id` held in memory take (see
    /// [`AssetObject::held_bytes`]); `None` for an unknown execution.
    pub fn execution_bytes(&self, execution_id: &str) -> Option<u64> {
        let execution = self.executions.get(execution_id)?;
        Some(match self.held_bytes.get(execution_id) {
            Some(held) => *held,
            None => bytes_of(&execution.objects),
        })
    }

    /// Records the progress an app reports for an ingesting execution.
    pub fn set_progress(&mut self, source_id: &str, execution_id: &str, progress: Progress) -> Result<(), ApiError> {
        let execution = self.ingesting_execution(source_id, execution_id, "progress can be reported")?;
        let index = execution.history_index;
        self.history[index].progress = Some(progress);
        self.touch(|c| {
            c.history.insert(index);
        });
        Ok(())
    }

    /// The state an execution is in at `now`: `PROCESSING` turns `DONE`
    /// once its processing time has passed.
    pub fn status_at(&self, execution: &Execution, now: DateTime<Utc>) -> ExecutionStatus {
        let processed = self
            .history
            .get(execution.history_index)
            .and_then(|e| e.processed_at)
            .is_none_or(|at| at <= now);
        match execution.status {
            ExecutionStatus::Processing if processed => ExecutionStatus::Done,
            status => status,
        }
    }

    /// True while `source_id` has an execution ingesting, or processing at
    /// `now`.
    pub fn running(&self, source_id: &str, now: DateTime<Utc>) -> bool {
        self.latest_execution(source_id).is_some_and(|e| {
            matches!(
                self.status_at(e, now),
                ExecutionStatus::Ingesting | ExecutionStatus::Processing
            )
        })
    }

    /// The import source by id, to change it (the change is saved).
    pub fn source_mut(&mut self, source_id: &str) -> Result<&mut ImportSource, ApiError> {
        if !self.sources.contains_key(source_id) {
            return Err(ApiError::not_found(format!("import source {source_id} does not exist")));
        }
        self.touch(|c| {
            c.sources.insert(source_id.to_owned());
        });
        Ok(self.sources.get_mut(source_id).expect("checked above"))
    }

    /// Signals completion: the execution is `PROCESSING` for
    /// [`processing_time`] of its objects, then `DONE`. The app's part is
    /// over, so its history line and occurrence end as completed now.
    pub fn complete(
        &mut self,
        source_id: &str,
        execution_id: &str,
        now: DateTime<Utc>,
        by: &Writer,
    ) -> Result<(), ApiError> {
        let execution = self.ingesting_execution(source_id, execution_id, "completion can be signalled")?;
        execution.status = ExecutionStatus::Processing;
        let index = execution.history_index;
        self.journal_execution_end(execution_id, ExecutionStatus::Processing, now, by);
        let entry = &mut self.history[index];
        entry.status = Outcome::Completed;
        entry.ended_at = Some(now);
        entry.processed_at = Some(now + processing_time(entry.objects));
        self.touch(|c| {
            c.executions.insert(execution_id.to_owned());
            c.history.insert(index);
        });
        self.end_linked_occurrence(index, OccurrenceState::Completed, None, now, by);
        Ok(())
    }

    /// Records a failure; only while ingesting.
    pub fn fail(
        &mut self,
        source_id: &str,
        execution_id: &str,
        reason: String,
        now: DateTime<Utc>,
        by: &Writer,
    ) -> Result<(), ApiError> {
        let execution = self.ingesting_execution(source_id, execution_id, "a failure can be reported")?;
        execution.status = ExecutionStatus::Failed;
        let index = execution.history_index;
        self.journal_execution_end(execution_id, ExecutionStatus::Failed, now, by);
        let entry = &mut self.history[index];
        entry.status = Outcome::Failed;
        entry.failure_reason = Some(reason.clone());
        entry.ended_at = Some(now);
        self.touch(|c| {
            c.executions.insert(execution_id.to_owned());
            c.history.insert(index);
        });
        self.end_linked_occurrence(index, OccurrenceState::Failed, Some(reason), now, by);
        Ok(())
    }

    /// Cancels an ingesting execution.
    pub fn cancel(
        &mut self,
        source_id: &str,
        execution_id: &str,
        now: DateTime<Utc>,
        by: &Writer,
    ) -> Result<(), ApiError> {
        let execution = self.ingesting_execution(source_id, execution_id, "it can be cancelled")?;
        execution.status = ExecutionStatus::Cancelled;
        let index = execution.history_index;
        self.journal_execution_end(execution_id, ExecutionStatus::Cancelled, now, by);
        let entry = &mut self.history[index];
        entry.status = Outcome::Cancelled;
        entry.ended_at = Some(now);
        self.touch(|c| {
            c.executions.insert(execution_id.to_owned());
            c.history.insert(index);
        });
        let reason = format!("execution {execution_id} was cancelled before it completed");
        self.end_linked_occurrence(index, OccurrenceState::Failed, Some(reason), now, by);
        Ok(())
    }

    /// Journals the end of an execution a delivery created, under the
    /// occurrence it was created for.
    fn journal_execution_end(&mut self, execution_id: &str, status: ExecutionStatus, now: DateTime<Utc>, by: &Writer) {
        let Some(creator) = self.executions.get(execution_id).and_then(|e| e.created_by.clone()) else {
            return;
        };
        let attempt = match by {
            Writer::Delivery { delivery } => Some(delivery.fence.attempt),
            _ => self.ledger.get(&creator.fence.occurrence_id).map(|e| e.attempt),
        };
        let act = Act::ExecutionEnded { status };
        self.journal(
            now,
            &creator.fence.occurrence_id,
            attempt,
            Some(execution_id),
            act,
            by,
            None,
        );
    }

    /// Adds a history line that has no execution.
    pub fn record(&mut self, entry: HistoryEntry) {
        let index = self.push_history(entry);
        self.touch(|c| {
            c.history.insert(index);
        });
    }

    /// Ends an occurrence that was never claimed — skipped or missed — in
    /// the ledger and with its history line `entry`. False (nothing
    /// written) when the ledger has it already: claimed, it ends only
    /// through its attempt's fence ([`State::end_claimed`]); ended, it has
    /// its one terminal state.
    pub fn end_unrun(&mut self, entry: HistoryEntry, by: &Writer) -> bool {
        let Some(occurrence_id) = entry.occurrence_id.clone() else {
            self.record(entry);
            return true;
        };
        if self.ledger.contains_key(&occurrence_id) {
            return false;
        }
        let now = entry.ended_at.unwrap_or(entry.started_at);
        let state = unrun_state(entry.status);
        self.journal(now, &occurrence_id, None, None, Act::Ended { state }, by, None);
        let ledger = LedgerEntry::ended(
            occurrence_id.clone(),
            entry.schedule_id.clone().unwrap_or_default(),
            entry.import_source_id.clone(),
            entry.started_at,
            unrun_state(entry.status),
            entry.failure_reason.clone(),
            now,
        );
        self.ledger.insert(occurrence_id.clone(), ledger);
        self.touch(|c| {
            c.ledger.insert(occurrence_id);
        });
        self.record(entry);
        true
    }

    /// Ends a claimed occurrence that did not run as its history line
    /// `entry` says (skipped, or failed without an execution), if `fence`
    /// still holds it; nothing is written otherwise.
    pub fn end_claimed(&mut self, fence: &Fence, entry: HistoryEntry, by: &Writer) -> Result<(), Stale> {
        let now = entry.ended_at.unwrap_or(entry.started_at);
        let state = unrun_state(entry.status);
        let ended = match self.ledger.get_mut(&fence.occurrence_id) {
            Some(ledger) => ledger.end(fence, state, entry.failure_reason.clone(), now),
            None => Err(Stale::Unknown),
        };
        self.journal_end(&ended, fence, state, now, by);
        ended?;
        self.release(&entry.import_source_id, &fence.occurrence_id);
        let id = fence.occurrence_id.clone();
        self.touch(|c| {
            c.ledger.insert(id);
        });
        self.record(entry);
        Ok(())
    }

    /// Journals `fence`'s end of its occurrence in `state`, as it went
    /// (`ended`): made, or refused as stale. An end refused only because
    /// that very attempt had ended the occurrence already (a callback's end
    /// after its execution's) tried nothing stale and is not journaled.
    fn journal_end<T>(
        &mut self,
        ended: &Result<T, Stale>,
        fence: &Fence,
        state: OccurrenceState,
        now: DateTime<Utc>,
        by: &Writer,
    ) {
        let redundant = matches!(ended, Err(Stale::Ended(_)))
            && self
                .ledger
                .get(&fence.occurrence_id)
                .is_some_and(|entry| entry.attempt == fence.attempt);
        if !redundant {
            let refused = ended.as_ref().err().map(Stale::to_string);
            let (occurrence, attempt) = (&fence.occurrence_id, Some(fence.attempt));
            self.journal(now, occurrence, attempt, None, Act::Ended { state }, by, refused);
        }
    }

    /// Ends the occurrence linked to history line `index`, if it is still
    /// being delivered.
    fn end_linked_occurrence(
        &mut self,
        index: usize,
        state: OccurrenceState,
        reason: Option<String>,
        now: DateTime<Utc>,
        by: &Writer,
    ) {
        let line = &self.history[index];
        let (Some(occurrence_id), Some(execution_id)) = (line.occurrence_id.clone(), line.execution_id.clone()) else {
            return;
        };
        let source_id = line.import_source_id.clone();
        let Some(entry) = self.ledger.get_mut(&occurrence_id) else {
            return;
        };
        let fence = entry.fence();
        if entry.execution_id.as_deref() == Some(execution_id.as_str()) && entry.end(&fence, state, reason, now).is_ok()
        {
            let act = Act::Ended { state };
            self.journal(
                now,
                &occurrence_id,
                Some(fence.attempt),
                Some(&execution_id),
                act,
                by,
                None,
            );
            self.release(&source_id, &occurrence_id);
            self.touch(|c| {
                c.ledger.insert(occurrence_id);
            });
        }
    }

    /// Forgets that `occurrence_id` is being delivered for `source_id`.
    fn release(&mut self, source_id: &str, occurrence_id: &str) {
        if self.delivering.get(source_id).map(String::as_str) == Some(occurrence_id) {
            self.delivering.remove(source_id);
        }
    }

    /// Attaches the schedule and occurrence that caused an execution to its
    /// history line.
    pub fn annotate(
        &mut self,
        execution_id: &str,
        schedule_id: Option<String>,
        occurrence_id: Option<String>,
        invocations: Option<u32>,
    ) {
        if let Some(execution) = self.executions.get(execution_id) {
            let index = execution.history_index;
            let entry = &mut self.history[index];
            entry.schedule_id = schedule_id;
            entry.occurrence_id = occurrence_id;
            entry.invocations = invocations.or(entry.invocations);
            self.touch(|c| {
                c.history.insert(index);
            });
        }
    }

    fn push_history(&mut self, entry: HistoryEntry) -> usize {
        let index = self.history.len();
        self.history_by_source
            .entry(entry.import_source_id.clone())
            .or_default()
            .push(index);
        self.history.push(entry);
        index
    }

    /// The history of `source_id`, oldest first.
    pub fn history(&self, source_id: &str) -> Vec<HistoryEntry> {
        self.history_page(source_id, None, usize::MAX).0
    }

    /// `source_id`'s history lines after the line at `after` (an index a
    /// previous page gave), oldest first, each with its index: the cursor
    /// that continues after it.
    pub fn history_after(
        &self,
        source_id: &str,
        after: Option<usize>,
    ) -> impl Iterator<Item = (usize, &HistoryEntry)> + '_ {
        let rest = self.history_indices_after(source_id, after);
        rest.iter().map(|&i| (i, &self.history[i]))
    }

    fn history_indices_after(&self, source_id: &str, after: Option<usize>) -> &[usize] {
        let Some(indices) = self.history_by_source.get(source_id) else {
            return &[];
        };
        let from = after.map_or(0, |after| indices.partition_point(|&i| i <= after));
        &indices[from..]
    }

    /// Up to `limit` lines (at least one) of `source_id`'s history, oldest
    /// first, after the line at `after` (an index the previous page gave);
    /// and the index to pass for the next page, when there is more.
    pub fn history_page(
        &self,
        source_id: &str,
        after: Option<usize>,
        limit: usize,
    ) -> (Vec<HistoryEntry>, Option<usize>) {
        let limit = limit.max(1);
        let rest = self.history_indices_after(source_id, after);
        let page: Vec<HistoryEntry> = rest.iter().take(limit).map(|&i| self.history[i].clone()).collect();
        let next = (rest.len() > limit).then(|| rest[limit - 1]);
        (page, next)
    }

    /// The whole history, oldest first.
    pub fn all_history(&self) -> &[HistoryEntry] {
        &self.history
    }

    /// The history line of an execution.
    pub fn history_of(&self, execution_id: &str) -> Option<&HistoryEntry> {
        self.executions
            .get(execution_id)
            .map(|e| &self.history[e.history_index])
    }

    /// Drops the stored objects of an ended execution (its counts and history
    /// stay): long simulations check an execution, then free its data.
    pub fn forget_objects(&mut self, execution_id: &str) {
        if let Some(e) = self.executions.get_mut(execution_id) {
            if e.status != ExecutionStatus::Ingesting {
                e.objects = HashMap::new();
                e.chunk_ids = HashMap::new();
                self.held_bytes.remove(execution_id);
                self.touch(|c| {
                    c.forgotten.insert(execution_id.to_owned());
                });
            }
        }
    }

    /// Drops from memory the objects and chunk ids of those of `ids` that
    /// have ended, once a durable store holds them: counts and history stay,
    /// so memory does not grow with every import ever made.
    pub fn evict_objects(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(e) = self.executions.get_mut(id) {
                if e.status != ExecutionStatus::Ingesting {
                    e.objects = HashMap::new();
                    e.chunk_ids = HashMap::new();
                    self.held_bytes.remove(id);
                }
            }
        }
    }

    /// An execution by id, whatever its source.
    pub fn execution_by_id(&self, execution_id: &str) -> Option<&Execution> {
        self.executions.get(execution_id)
    }

    /// The execution, if it is still ingesting; else the 400 that says it
    /// ended and how, for `action`.
    pub(super) fn ingesting_execution(
        &mut self,
        source_id: &str,
        execution_id: &str,
        action: &str,
    ) -> Result<&mut Execution, ApiError> {
        self.execution(source_id, execution_id)?;
        let execution = self.executions.get_mut(execution_id).expect("checked above");
        match execution.status {
            ExecutionStatus::Ingesting => Ok(execution),
            ended => Err(ApiError::invalid_state(
                "EXECUTION_ENDED",
                format!(
                    "execution {execution_id} is {}; {action} only while it is INGESTING",
                    match ended {
                        ExecutionStatus::Processing | ExecutionStatus::Done =>
                            "already completed (completion was signalled; it is PROCESSING, then DONE)",
                        ExecutionStatus::Failed => "already failed",
                        ExecutionStatus::Cancelled => "cancelled",
                        ExecutionStatus::Ingesting => unreachable!(),
                    }
                ),
            )),
        }
    }
}
impl State {
    /// Every schedule, in no particular order.
    pub fn schedules(&self) -> impl Iterator<Item = &Schedule> {
        self.schedules.values()
    }

    /// A schedule by id.
    pub fn schedule(&self, schedule_id: &str) -> Option<&Schedule> {
        self.schedules.get(schedule_id)
    }

    /// A schedule by id, to change its bookkeeping.
    pub fn schedule_mut(&mut self, schedule_id: &str) -> Option<&mut Schedule> {
        // Whoever asks may change it; a durable store rewrites the row.
        self.touch(|c| {
            c.schedules.insert(schedule_id.to_owned());
        });
        self.schedules.get_mut(schedule_id)
    }

    /// Claims an occurrence for delivery: false if the ledger already has
    /// it (claimed, or ended), so no occurrence is ever claimed twice.
    pub fn claim_occurrence(&mut self, entry: LedgerEntry) -> bool {
        if self.ledger.contains_key(&entry.occurrence_id) {
            return false;
        }
        let id = entry.occurrence_id.clone();
        if !entry.state.is_terminal() {
            self.delivering.insert(entry.import_source_id.clone(), id.clone());
        }
        let by = Writer::Node {
            node: entry.lease_owner.clone().unwrap_or_default(),
        };
        let act = match entry.state {
            OccurrenceState::Delivering => Act::Claimed,
            state => Act::Ended { state },
        };
        self.journal(entry.claimed_at, &id, Some(entry.attempt), None, act, &by, None);
        self.ledger.insert(id.clone(), entry);
        self.touch(|c| {
            c.ledger.insert(id);
        });
        true
    }

    /// Ends a claimed occurrence in `state` if `fence` still holds it; `Err`
    /// says why not (its execution's end usually ended it first, or a later
    /// attempt holds it).
    pub fn end_occurrence(
        &mut self,
        fence: &Fence,
        state: OccurrenceState,
        reason: Option<String>,
        now: DateTime<Utc>,
        by: &Writer,
    ) -> Result<(), Stale> {
        let ended = match self.ledger.get_mut(&fence.occurrence_id) {
            Some(entry) => entry
                .end(fence, state, reason, now)
                .map(|()| entry.import_source_id.clone()),
            None => Err(Stale::Unknown),
        };
        self.journal_end(&ended, fence, state, now, by);
        let source_id = ended?;
        self.release(&source_id, &fence.occurrence_id);
        let id = fence.occurrence_id.clone();
        self.touch(|c| {
            c.ledger.insert(id);
        });
        Ok(())
    }

    /// An occurrence's ledger entry.
    pub fn occurrence(&self, occurrence_id: &str) -> Option<&LedgerEntry> {
        self.ledger.get(occurrence_id)
    }

    /// The whole ledger, in no particular order.
    pub fn ledger(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.ledger.values()
    }

    /// The occurrence being delivered for `source_id`, if any.
    pub fn delivering_for(&self, source_id: &str) -> Option<&LedgerEntry> {
        self.delivering.get(source_id).and_then(|o| self.ledger.get(o))
    }

    /// Every occurrence still being delivered.
    pub fn delivering(&self) -> Vec<LedgerEntry> {
        self.delivering
            .values()
            .filter_map(|o| self.ledger.get(o))
            .cloned()
            .collect()
    }

    /// Takes over a delivery whose owner is gone, if `fence` (the attempt
    /// the taker saw) still holds it (see [`LedgerEntry::take_over`]);
    /// returns the entry as it now is.
    pub fn take_over_occurrence(
        &mut self,
        fence: &Fence,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LedgerEntry, Stale> {
        let taken = match self.ledger.get_mut(&fence.occurrence_id) {
            Some(entry) => entry.take_over(fence, owner, lease_until).map(|_| entry.clone()),
            None => Err(Stale::Unknown),
        };
        let by = Writer::Node { node: owner.to_owned() };
        let refused = taken.as_ref().err().map(Stale::to_string);
        self.journal(
            now,
            &fence.occurrence_id,
            Some(fence.attempt + 1),
            None,
            Act::TookOver,
            &by,
            refused,
        );
        let taken = taken?;
        let id = fence.occurrence_id.clone();
        self.touch(|c| {
            c.ledger.insert(id);
        });
        Ok(taken)
    }

    /// Says the run of `fence`'s attempt is alive until `until` (wall-clock
    /// time), if that attempt still holds its occurrence
    /// ([`LedgerEntry::renew`]).
    pub fn renew_occurrence(&mut self, fence: &Fence, until: DateTime<Utc>) -> Result<(), Stale> {
        let entry = self.ledger.get_mut(&fence.occurrence_id).ok_or(Stale::Unknown)?;
        entry.renew(fence, until)?;
        let id = fence.occurrence_id.clone();
        self.touch(|c| {
            c.ledger.insert(id);
        });
        Ok(())
    }

    /// The execution of `source_id` still ingesting that `delivery` owns,
    /// if any: one it created, or one an earlier attempt at the same
    /// occurrence created, linked to the occurrence its attempt now holds (a
    /// run going on from that attempt's checkpoint: the execution passes
    /// with the occurrence). Never one of another delivery of the same
    /// attempt (a callback sent twice), and nothing once a later attempt
    /// holds the occurrence: the execution has passed to that attempt, which
    /// may be running it now. What that delivery's clean-up may fail, and
    /// nothing else.
    pub fn ingesting_created_by(&self, source_id: &str, delivery: &Delivery) -> Option<&Execution> {
        let superseded = self
            .ledger
            .get(&delivery.fence.occurrence_id)
            .is_some_and(|entry| matches!(entry.held_by(&delivery.fence), Err(Stale::Superseded { .. })));
        if superseded {
            return None;
        }
        self.ingesting(source_id).filter(|e| {
            let Some(by) = &e.created_by else {
                return false;
            };
            by.id == delivery.id
                || (by.fence.occurrence_id == delivery.fence.occurrence_id
                    && by.fence.attempt < delivery.fence.attempt
                    && self.ledger.get(&delivery.fence.occurrence_id).is_some_and(|entry| {
                        entry.execution_id.as_deref() == Some(e.id.as_str()) && entry.held_by(&delivery.fence).is_ok()
                    }))
        })
    }

    /// Whether `delivery`'s app may write to execution `execution_id` (send
    /// data, progress, complete, fail or cancel it): the fence on every
    /// execution write an app makes during a delivery. A scheduled
    /// execution belongs to the occurrence whose attempt created it and
    /// passes to the later attempts that take that occurrence over; it may
    /// be written by the attempt that holds the occurrence now, and by no
    /// other — not a superseded attempt (a node paused past its lease that
    /// wakes up), not the delivery of another occurrence. A manual execution,
    /// or one a manual trigger's app created, belongs to no occurrence and
    /// is not fenced. An execution that is unknown or no longer
    /// ingesting passes: the write itself says why it is refused.
    pub fn may_write(&self, execution_id: &str, delivery: &Delivery) -> Result<(), ApiError> {
        let Some(execution) = self.executions.get(execution_id) else {
            return Ok(());
        };
        let Some(creator) = &execution.created_by else {
            return Ok(());
        };
        if execution.status != ExecutionStatus::Ingesting {
            return Ok(());
        }
        // A creator whose occurrence the ledger does not have (a manual
        // trigger's) tied the execution to no occurrence.
        let Some(entry) = self.ledger.get(&creator.fence.occurrence_id) else {
            return Ok(());
        };
        let fence = &delivery.fence;
        if creator.fence.occurrence_id != fence.occurrence_id {
            return Err(ApiError::conflict(
                "NOT_THIS_DELIVERY",
                format!(
                    "execution {execution_id} belongs to occurrence {} ({}); this delivery of occurrence {} may not write it",
                    creator.fence.occurrence_id, creator.fence, fence.occurrence_id
                ),
            ));
        }
        let held = match creator.fence.attempt <= fence.attempt {
            true => entry.held_by(fence),
            false => Err(Stale::Superseded { by: entry.attempt }),
        };
        held.map_err(|stale| {
            tracing::warn!(%fence, %stale, execution = %execution_id, "refused an execution write from a superseded delivery");
            ApiError::conflict(
                "SUPERSEDED",
                format!("{fence} may not write execution {execution_id}: {stale}; this delivery is over"),
            )
        })
    }
}

/// Building the state back from a durable store at start-up, row by row;
/// nothing here is noted as a change.
impl State {
    /// A workspace as stored.
    pub fn restore_workspace(&mut self, id: String) {
        self.workspaces.insert(id);
    }

    /// An import source as stored.
    pub fn restore_source(&mut self, source: ImportSource) {
        self.sources.insert(source.id.clone(), source);
    }

    /// History line `index`, which must be the next one: lines are stored
    /// densely from 0.
    pub fn restore_history(&mut self, index: usize, entry: HistoryEntry) -> Result<(), String> {
        if index != self.history.len() {
            return Err(format!(
                "history row {index} is out of sequence (expected {}); the database is damaged",
                self.history.len()
            ));
        }
        self.push_history(entry);
        Ok(())
    }

    /// An execution as stored; restore them in history order, so the last one
    /// of a source becomes its latest.
    pub fn restore_execution(&mut self, execution: Execution) {
        self.held_bytes.remove(&execution.id);
        self.latest
            .insert(execution.import_source_id.clone(), execution.id.clone());
        self.executions.insert(execution.id.clone(), execution);
    }

    /// The execution `id`, to restore its objects and chunk ids. Its
    /// objects may change through it, so their byte count is summed again
    /// when the next chunk comes.
    pub fn restore_execution_mut(&mut self, id: &str) -> Option<&mut Execution> {
        self.held_bytes.remove(id);
        self.executions.get_mut(id)
    }

    /// A schedule as stored.
    pub fn restore_schedule(&mut self, schedule: Schedule) {
        self.schedule_of_source
            .insert(schedule.import_source_id.clone(), schedule.id.clone());
        self.schedules.insert(schedule.id.clone(), schedule);
    }

    /// A ledger entry as stored.
    pub fn restore_occurrence(&mut self, entry: LedgerEntry) {
        if !entry.state.is_terminal() {
            self.delivering
                .insert(entry.import_source_id.clone(), entry.occurrence_id.clone());
        }
        self.ledger.insert(entry.occurrence_id.clone(), entry);
    }
}

/// Bringing a cached state up to date with rows another host wrote to a
/// shared store (several nodes on one database): each row replaces what the
/// cache had under its key. Nothing here is noted as a change.
impl State {
    /// History line `index` as stored: replaces the line, or appends it
    /// when it is the next one. A line past the next means rows are missing
    /// from what was read, so the caller reads everything again.
    pub fn apply_history(&mut self, index: usize, entry: HistoryEntry) -> Result<(), String> {
        match index.cmp(&self.history.len()) {
            std::cmp::Ordering::Less => {
                self.history[index] = entry;
                Ok(())
            }
            _ => self.restore_history(index, entry),
        }
    }

    /// An execution as stored, keeping the objects and chunk ids the cache
    /// already holds for it while it ingests; apply them in history order.
    pub fn apply_execution(&mut self, mut execution: Execution) {
        self.held_bytes.remove(&execution.id);
        if let Some(cached) = self.executions.remove(&execution.id) {
            if execution.status == ExecutionStatus::Ingesting {
                execution.objects = cached.objects;
                execution.chunk_ids = cached.chunk_ids;
            }
        }
        let newer = self
            .latest
            .get(&execution.import_source_id)
            .and_then(|id| self.executions.get(id))
            .is_none_or(|latest| latest.history_index <= execution.history_index);
        if newer {
            self.latest
                .insert(execution.import_source_id.clone(), execution.id.clone());
        }
        self.executions.insert(execution.id.clone(), execution);
    }

    /// A schedule as stored, or its deletion (`None`).
    pub fn apply_schedule(&mut self, schedule_id: &str, schedule: Option<Schedule>) {
        if let Some(old) = self.schedules.remove(schedule_id) {
            if self.schedule_of_source.get(&old.import_source_id).map(String::as_str) == Some(schedule_id) {
                self.schedule_of_source.remove(&old.import_source_id);
            }
        }
        if let Some(schedule) = schedule {
            self.restore_schedule(schedule);
        }
    }

    /// A ledger entry as stored.
    pub fn apply_occurrence(&mut self, entry: LedgerEntry) {
        if entry.state.is_terminal() {
            self.release(&entry.import_source_id.clone(), &entry.occurrence_id.clone());
        }
        self.restore_occurrence(entry);
    }
}
