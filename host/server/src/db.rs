//! Durable state: the Assets mock's [`State`] kept in SQLite, behind the
//! platform's [`StateStore`] seam.
//!
//! The in-memory [`State`] stays the working copy — every rule is checked
//! there — and notes the keys of what each call changed ([`Changes`]). Before
//! the state lock is released, [`SqliteStore::save`] writes exactly those rows
//! in one transaction, so an answer the API has sent is already on disk and a
//! `kill -9` loses nothing acknowledged. [`SqliteStore::open`] reads it all
//! back at start-up.
//!
//! The journal is WAL with `synchronous = NORMAL`: a commit survives the
//! process dying at any point; a power cut may lose the last transactions,
//! which is acceptable for a local stand-in of the service.
//!
//! Rows hold JSON bodies where the shape is the API's own (sources, history
//! lines, schedules, objects), and plain columns where the server looks
//! things up.

use crate::signing::ReplayRecord;
use anyhow::Context as _;
use assets_calendar::{FoldPolicy, Frequency, GapPolicy, MonthEndPolicy, Policies, Rule};
use assets_platform::assets::journal::{JournalPage, Stored};
use assets_platform::assets::ledger::{LedgerEntry, OccurrenceState};
use assets_platform::assets::model::{
    Changes, Execution, ExecutionStatus, HistoryEntry, ImportSource, Outcome, SourceType, State,
};
use assets_platform::assets::schedule::{Schedule, ScheduleSpec};
use assets_platform::assets::StateStore;
use assets_runtime::storage::StorageBacking;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Version 1: the tables as they were before the occurrence ledger.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS workspaces (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sources (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    scheduled INTEGER NOT NULL,
    status TEXT NOT NULL,
    received INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    history_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_ids (
    execution_id TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    PRIMARY KEY (execution_id, chunk_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    execution_id TEXT NOT NULL,
    object_type_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (execution_id, object_type_id, external_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (idx INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fired (occurrence_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS apps (name TEXT PRIMARY KEY, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_first_source (app TEXT PRIMARY KEY, source_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_storage (
    app TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, key)
) WITHOUT ROWID;
";

/// Version 2: the occurrence ledger replaces the set of fired occurrence
/// ids. Rows of `fired` become ledger entries ended as their history line
/// says (see [`migrate_fired`]).
const SCHEMA_V2: &str = "
CREATE TABLE occurrences (
    id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL,
    import_source_id TEXT NOT NULL,
    nominal_time TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('delivering', 'completed', 'failed', 'skipped', 'missed')),
    lease_owner TEXT,
    lease_until TEXT,
    execution_id TEXT,
    reason TEXT,
    claimed_at TEXT NOT NULL,
    ended_at TEXT
) WITHOUT ROWID;
CREATE INDEX occurrences_delivering ON occurrences (state) WHERE state = 'delivering';
";

/// Version 3: accepted callback signatures, so a replay is refused after a
/// restart too (until the signature's window ends).
const SCHEMA_V3: &str = "
CREATE TABLE callbacks_seen (signature TEXT PRIMARY KEY, seen_until INTEGER NOT NULL) WITHOUT ROWID;
";

/// Version 4: the digest of the content each chunk id was accepted with, so
/// the same id with other objects is refused after a restart too (rows from
/// before have none: their content is not known).
const SCHEMA_V4: &str = "
ALTER TABLE chunk_ids ADD COLUMN digest TEXT;
";

/// Version 5: the delivery that created each execution (JSON: its id, the
/// occurrence and the attempt), so a delivery's clean-up fails its own
/// execution only, after a restart too (rows from before have none); and
/// each occurrence's run heartbeat (`LedgerEntry::alive_until`).
const SCHEMA_V5: &str = "
ALTER TABLE executions ADD COLUMN created_by TEXT;
ALTER TABLE occurrences ADD COLUMN alive_until TEXT;
";

/// Version 6: the journal of fenced writes (`assets::journal`), JSON each,
/// in the order they were made.
const SCHEMA_V6: &str = "
CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
";

/// The migrations in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6];

/// A SQLite database holding the mock's state, the apps' secrets and their
/// storage.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The database file, held with an exclusive lock for as long as the
    /// store lives (dropped after the connection, by field order): a second
    /// server on the same file would fire every schedule twice. `None` for
    /// `:memory:`.
    _lock: Option<std::fs::File>,
}

/// A schedule as stored: what the client asked for plus the scheduler's
/// bookkeeping; the calendar rule is derived again on load.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredSchedule {
    id: String,
    import_source_id: String,
    workspace_id: String,
    source_type: SourceType,
    frequency: Frequency,
    start_time: DateTime<Utc>,
    timezone: String,
    callback_url: Option<String>,
    gap: GapPolicy,
    fold: FoldPolicy,
    month_end: MonthEndPolicy,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    handled_until: DateTime<Utc>,
}

impl From<&Schedule> for StoredSchedule {
    fn from(s: &Schedule) -> StoredSchedule {
        StoredSchedule {
            id: s.id.clone(),
            import_source_id: s.import_source_id.clone(),
            workspace_id: s.workspace_id.clone(),
            source_type: s.source_type,
            frequency: s.spec.frequency,
            start_time: s.spec.start_time,
            timezone: s.spec.timezone.name().to_owned(),
            callback_url: s.spec.callback_url.clone(),
            gap: s.spec.policies.gap,
            fold: s.spec.policies.fold,
            month_end: s.spec.policies.month_end,
            is_active: s.spec.is_active,
            created_at: s.created_at,
            updated_at: s.updated_at,
            handled_until: s.handled_until,
        }
    }
}

impl StoredSchedule {
    pub(crate) fn into_schedule(self) -> anyhow::Result<Schedule> {
        let timezone = self
            .timezone
            .parse()
            .map_err(|_| anyhow::anyhow!("schedule {} has unknown time zone {:?}", self.id, self.timezone))?;
        let policies = Policies {
            gap: self.gap,
            fold: self.fold,
            month_end: self.month_end,
        };
        Ok(Schedule {
            rule: Rule::new(self.frequency, self.start_time, timezone, policies),
            spec: ScheduleSpec {
                frequency: self.frequency,
                start_time: self.start_time,
                timezone,
                callback_url: self.callback_url,
                policies,
                is_active: self.is_active,
            },
            id: self.id,
            import_source_id: self.import_source_id,
            workspace_id: self.workspace_id,
            source_type: self.source_type,
            created_at: self.created_at,
            updated_at: self.updated_at,
            handled_until: self.handled_until,
        })
    }
}

pub(crate) fn status_name(status: ExecutionStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` — `:memory:` for one
    /// that lives as long as the process — and reads the state it holds. The
    /// returned state tracks changes, ready for [`SqliteStore::save`].
    pub fn open(path: &Path) -> anyhow::Result<(SqliteStore, State)> {
        let in_memory = path.as_os_str() == ":memory:";
        let lock = if in_memory { None } else { Some(lock(path)?) };
        let conn = if in_memory {
            Connection::open_in_memory()
        } else {
            Connection::open(path)
        }
        .with_context(|| format!("cannot open the database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn).with_context(|| format!("cannot bring the tables in {} up to date", path.display()))?;
        repair_history(&conn).with_context(|| format!("cannot repair the history in {}", path.display()))?;
        let mut state = load(&conn).with_context(|| format!("cannot read the state in {}", path.display()))?;
        state.track_changes();
        Ok((
            SqliteStore {
                conn: Mutex::new(conn),
                _lock: lock,
            },
            state,
        ))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the rows `changes` names, as they are in `state`, in one
    /// transaction.
    pub fn save(&self, state: &State, changes: Changes) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut put_workspace = tx.prepare_cached("INSERT OR IGNORE INTO workspaces (id) VALUES (?1)")?;
            for id in &changes.workspaces {
                put_workspace.execute([id])?;
            }
            let mut put_source = tx.prepare_cached("INSERT OR REPLACE INTO sources (id, body) VALUES (?1, ?2)")?;
            for id in &changes.sources {
                if let Some(source) = state.source_by_id(id) {
                    put_source.execute(params![id, serde_json::to_string(source)?])?;
                }
            }
            let mut put_execution = tx.prepare_cached(
                "INSERT OR REPLACE INTO executions (id, source_id, scheduled, status, received, chunks, history_index, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for id in &changes.executions {
                if let Some(e) = state.execution_by_id(id) {
                    put_execution.execute(params![
                        e.id,
                        e.import_source_id,
                        e.scheduled,
                        status_name(e.status),
                        e.received as i64,
                        e.chunks,
                        e.history_index as i64,
                        e.created_by.as_ref().map(serde_json::to_string).transpose()?
                    ])?;
                }
            }
            let mut put_chunk = tx.prepare_cached(
                "INSERT OR IGNORE INTO chunk_ids (execution_id, chunk_id, digest) VALUES (?1, ?2, ?3)",
            )?;
            for (execution, chunk, digest) in &changes.chunk_ids {
                put_chunk.execute([execution, chunk, digest])?;
            }
            let mut put_object = tx.prepare_cached(
                "INSERT OR REPLACE INTO objects (execution_id, object_type_id, external_id, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (execution, object_type, external_id) in &changes.objects {
                let object = state
                    .execution_by_id(execution)
                    .and_then(|e| e.objects.get(&(object_type.clone(), external_id.clone())));
                if let Some(object) = object {
                    put_object.execute(params![
                        execution,
                        object_type,
                        external_id,
                        serde_json::to_string(object)?
                    ])?;
                }
            }
            for execution in &changes.forgotten {
                tx.execute("DELETE FROM objects WHERE execution_id = ?1", [execution])?;
                tx.execute("DELETE FROM chunk_ids WHERE execution_id = ?1", [execution])?;
            }
            let mut put_history = tx.prepare_cached("INSERT OR REPLACE INTO history (idx, body) VALUES (?1, ?2)")?;
            for &index in &changes.history {
                if let Some(entry) = state.all_history().get(index) {
                    put_history.execute(params![index as i64, serde_json::to_string(entry)?])?;
                }
            }
            for id in &changes.schedules {
                match state.schedule(id) {
                    Some(schedule) => tx.execute(
                        "INSERT OR REPLACE INTO schedules (id, body) VALUES (?1, ?2)",
                        params![id, serde_json::to_string(&StoredSchedule::from(schedule))?],
                    )?,
                    None => tx.execute("DELETE FROM schedules WHERE id = ?1", [id])?,
                };
            }
            let mut put_occurrence = tx.prepare_cached(
                "INSERT OR REPLACE INTO occurrences (id, schedule_id, import_source_id, nominal_time, attempt, state,
                     lease_owner, lease_until, execution_id, reason, claimed_at, ended_at, alive_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for id in &changes.ledger {
                if let Some(e) = state.occurrence(id) {
                    put_occurrence.execute(params![
                        e.occurrence_id,
                        e.schedule_id,
                        e.import_source_id,
                        e.nominal_time,
                        e.attempt,
                        e.state.name(),
                        e.lease_owner,
                        e.lease_until,
                        e.execution_id,
                        e.reason,
                        e.claimed_at,
                        e.ended_at,
                        e.alive_until
                    ])?;
                }
            }
            let mut put_written = tx.prepare_cached("INSERT INTO journal (body) VALUES (?1)")?;
            for written in &changes.journal {
                put_written.execute([serde_json::to_string(written)?])?;
            }
        }
        tx.commit().context("cannot commit to the database")?;
        Ok(())
    }

    /// The secret `app`'s callbacks are signed with: the stored one, or a new
    /// random one, stored, so receivers keep working across restarts.
    pub fn app_secret(&self, app: &str) -> anyhow::Result<String> {
        let conn = self.conn();
        let stored: Option<String> = conn
            .query_row("SELECT secret FROM apps WHERE name = ?1", [app], |row| row.get(0))
            .optional()?;
        if let Some(secret) = stored {
            return Ok(secret);
        }
        let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        conn.execute("INSERT INTO apps (name, secret) VALUES (?1, ?2)", [app, &secret])?;
        Ok(secret)
    }

    /// The import source made for `app` when it was first hosted: the one the
    /// banner and `/_admin/apps` show, whatever other sources the app
    /// performs. Recorded the first time it is asked for.
    pub fn first_source(
        &self,
        app: &str,
        otherwise: impl FnOnce() -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        let stored: Option<String> = self
            .conn()
            .query_row("SELECT source_id FROM app_first_source WHERE app = ?1", [app], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(id) = stored {
            return Ok(id);
        }
        // Unlocked here: making the source saves the state through this store.
        let id = otherwise()?;
        self.conn().execute(
            "INSERT INTO app_first_source (app, source_id) VALUES (?1, ?2)",
            [app, &id],
        )?;
        Ok(id)
    }

    /// `app`'s storage as stored.
    pub fn app_storage(&self, app: &str) -> anyhow::Result<HashMap<String, String>> {
        let conn = self.conn();
        let mut query = conn.prepare("SELECT key, value FROM app_storage WHERE app = ?1")?;
        let rows = query.query_map([app], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl StateStore for SqliteStore {
    fn save(&self, state: &State, changes: Changes) -> anyhow::Result<()> {
        SqliteStore::save(self, state, changes)
    }

    fn load(&self) -> anyhow::Result<State> {
        load(&self.conn()).context("cannot read the state back from the database")
    }

    fn journal(&self, after: i64, limit: usize) -> anyhow::Result<JournalPage> {
        let conn = self.conn();
        let mut page = conn.prepare_cached("SELECT seq, body FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = page.query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (seq, body) = row?;
            Ok(Stored {
                seq,
                node: None,
                written: serde_json::from_str(&body)?,
            })
        })
        .collect()
    }
}

/// One app's storage rows, written through as the app changes them.
pub struct AppRows {
    store: Arc<SqliteStore>,
    app: String,
}

impl AppRows {
    /// The rows of `app` in `store`.
    pub fn new(store: Arc<SqliteStore>, app: impl Into<String>) -> AppRows {
        AppRows { store, app: app.into() }
    }
}

impl StorageBacking for AppRows {
    fn put(&self, key: &str, value: Option<&str>) -> Result<(), String> {
        let conn = self.store.conn();
        let result = match value {
            Some(value) => conn.execute(
                "INSERT OR REPLACE INTO app_storage (app, key, value) VALUES (?1, ?2, ?3)",
                [&self.app, key, value],
            ),
            None => conn.execute("DELETE FROM app_storage WHERE app = ?1 AND key = ?2", [&self.app, key]),
        };
        result
            .map(|_| ())
            .map_err(|e| format!("app storage could not be saved: {e}"))
    }
}

fn load(conn: &Connection) -> anyhow::Result<State> {
    let mut state = State::default();
    for id in column::<String>(conn, "SELECT id FROM workspaces")? {
        state.restore_workspace(id);
    }
    for body in column::<String>(conn, "SELECT body FROM sources")? {
        let source: ImportSource = serde_json::from_str(&body).context("an import source row")?;
        state.restore_source(source);
    }
    for (index, body) in pairs::<i64, String>(conn, "SELECT idx, body FROM history ORDER BY idx")? {
        let entry: HistoryEntry = serde_json::from_str(&body).context("a history row")?;
        state
            .restore_history(index as usize, entry)
            .map_err(anyhow::Error::msg)?;
    }
    let mut query = conn.prepare(
        "SELECT id, source_id, scheduled, status, received, chunks, history_index, created_by FROM executions ORDER BY history_index",
    )?;
    let rows = query.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, bool>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, u32>(5)?,
            row.get::<_, i64>(6)?,
            row.get::<_, Option<String>>(7)?,
        ))
    })?;
    for row in rows {
        let (id, source_id, scheduled, status, received, chunks, history_index, created_by) = row?;
        let created_by = created_by
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .with_context(|| format!("execution {id} has an unreadable created_by"))?;
        let status: ExecutionStatus = serde_json::from_value(status.clone().into())
            .with_context(|| format!("execution {id} has unknown status {status:?}"))?;
        // Ordered by history line, so the last one restored is the latest.
        state.restore_execution(Execution {
            id,
            import_source_id: source_id,
            scheduled,
            status,
            objects: HashMap::new(),
            received: received as u64,
            chunks,
            chunk_ids: HashMap::new(),
            history_index: history_index as usize,
            created_by,
        });
    }
    // Only a running execution needs its objects in memory (to count
    // distinct ones as chunks come); an ended one's stay on disk.
    let mut query = conn.prepare(
        "SELECT execution_id, object_type_id, external_id, body FROM objects
         WHERE execution_id IN (SELECT id FROM executions WHERE status = 'INGESTING')",
    )?;
    let rows = query.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (execution, object_type, external_id, body) = row?;
        if let Some(e) = state.restore_execution_mut(&execution) {
            e.objects.insert(
                (object_type, external_id),
                serde_json::from_str(&body).context("an object row")?,
            );
        }
    }
    let mut chunks = conn.prepare(
        "SELECT execution_id, chunk_id, digest FROM chunk_ids
         WHERE execution_id IN (SELECT id FROM executions WHERE status = 'INGESTING')",
    )?;
    let rows = chunks.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (execution, chunk, digest) = row?;
        if let Some(e) = state.restore_execution_mut(&execution) {
            e.chunk_ids.insert(chunk, digest);
        }
    }
    for body in column::<String>(conn, "SELECT body FROM schedules")? {
        let stored: StoredSchedule = serde_json::from_str(&body).context("a schedule row")?;
        state.restore_schedule(stored.into_schedule()?);
    }
    let mut query = conn.prepare(
        "SELECT id, schedule_id, import_source_id, nominal_time, attempt, state, lease_owner, lease_until,
                execution_id, reason, claimed_at, ended_at, alive_until FROM occurrences",
    )?;
    let rows = query.query_map([], |row| {
        Ok((
            LedgerEntry {
                occurrence_id: row.get(0)?,
                schedule_id: row.get(1)?,
                import_source_id: row.get(2)?,
                nominal_time: row.get(3)?,
                attempt: row.get(4)?,
                state: OccurrenceState::Delivering,
                lease_owner: row.get(6)?,
                lease_until: row.get(7)?,
                alive_until: row.get(12)?,
                execution_id: row.get(8)?,
                reason: row.get(9)?,
                claimed_at: row.get(10)?,
                ended_at: row.get(11)?,
            },
            row.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (mut entry, name) = row?;
        entry.state = OccurrenceState::from_name(&name)
            .with_context(|| format!("occurrence {} has unknown state {name:?}", entry.occurrence_id))?;
        state.restore_occurrence(entry);
    }
    Ok(state)
}

/// Applies the migrations the database has not had yet, each in its own
/// transaction with the version bump, so a crash leaves it at one version.
fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // A database from before versioning has the version-1 tables already.
    let applied = if applied == 0 && table_exists(conn, "history")? {
        1
    } else {
        applied
    };
    anyhow::ensure!(
        applied <= MIGRATIONS.len(),
        "the database is at schema version {applied}, newer than this program's {}; use a newer assets-host",
        MIGRATIONS.len()
    );
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = version + 1;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("migration to schema version {version}"))?;
        if version == 2 {
            migrate_fired(&tx)?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// Makes the history dense again if rows are missing (a file restored from
/// an old copy, a hand edit): the lines left are renumbered in order, and an
/// execution whose line is gone gets a rebuilt one that says so. One
/// transaction; a database without gaps is not touched.
fn repair_history(conn: &Connection) -> anyhow::Result<()> {
    let indices: Vec<i64> = column(conn, "SELECT idx FROM history ORDER BY idx")?;
    let known: HashSet<i64> = indices.iter().copied().collect();
    let mut query = conn.prepare(
        "SELECT id, source_id, scheduled, status, history_index,
                (SELECT COUNT(*) FROM objects WHERE execution_id = executions.id)
         FROM executions ORDER BY history_index",
    )?;
    let orphans = query
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })?
        .filter(|row| row.as_ref().map_or(true, |r| !known.contains(&r.4)))
        .collect::<Result<Vec<_>, _>>()?;
    let dense = indices.iter().enumerate().all(|(i, &idx)| i as i64 == idx);
    if dense && orphans.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        lines = indices.len(),
        rebuilt = orphans.len(),
        "the history has missing rows; renumbering it and rebuilding the lines of executions that lost theirs"
    );
    let tx = conn.unchecked_transaction()?;
    // Every number in use — each line's, and each orphan's old one, so a
    // rebuilt line takes its execution's old place in the order and the
    // latest execution stays the latest — in order, renumbered by rank.
    let slots: std::collections::BTreeSet<i64> = indices.iter().copied().chain(orphans.iter().map(|o| o.4)).collect();
    // Out of the way first, so no renumbered row meets an old number.
    tx.execute("UPDATE history SET idx = -1 - idx", [])?;
    tx.execute("UPDATE executions SET history_index = -1 - history_index", [])?;
    for (new, old) in slots.iter().enumerate() {
        tx.execute(
            "UPDATE history SET idx = ?1 WHERE idx = ?2",
            params![new as i64, -1 - old],
        )?;
        tx.execute(
            "UPDATE executions SET history_index = ?1 WHERE history_index = ?2",
            params![new as i64, -1 - old],
        )?;
    }
    let now = Utc::now();
    for (id, source_id, scheduled, status, old, objects) in orphans {
        let line = rebuilt_line(&id, source_id, scheduled, &status, objects as u64, "at start-up", now)?;
        let at = slots.range(..old).count() as i64;
        tx.execute(
            "INSERT INTO history (idx, body) VALUES (?1, ?2)",
            params![at, serde_json::to_string(&line)?],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The history line of execution `id` whose own line was lost from the
/// database (either engine's repair): what the execution row still says,
/// and that the rest is not known.
pub(crate) fn rebuilt_line(
    id: &str,
    import_source_id: String,
    scheduled: bool,
    status: &str,
    objects: u64,
    when: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<HistoryEntry> {
    let status: ExecutionStatus = serde_json::from_value(status.to_owned().into())
        .with_context(|| format!("execution {id} has unknown status {status:?}"))?;
    Ok(HistoryEntry {
        execution_id: Some(id.to_owned()),
        import_source_id,
        scheduled,
        schedule_id: None,
        occurrence_id: None,
        status: match status {
            ExecutionStatus::Ingesting => Outcome::Running,
            ExecutionStatus::Processing | ExecutionStatus::Done => Outcome::Completed,
            ExecutionStatus::Failed => Outcome::Failed,
            ExecutionStatus::Cancelled => Outcome::Cancelled,
        },
        failure_reason: Some(format!(
            "this history line was lost from the database and rebuilt from execution {id} {when} ({}); \
             its start and end times are not known",
            now.format("%Y-%m-%dT%H:%M:%SZ")
        )),
        objects,
        started_at: now,
        ended_at: (status != ExecutionStatus::Ingesting).then_some(now),
        invocations: None,
        processed_at: None,
        progress: None,
    })
}

/// Takes an exclusive lock on the database file, creating it if needed.
/// The lock is `flock`, which SQLite's own (`fcntl`) locks do not touch; the
/// file stays open until the store is dropped, since closing a descriptor
/// of the file would drop SQLite's locks too.
///
/// The file is the owner's alone (mode 0600): it holds the apps' signing
/// secrets and the sources' tokens. SQLite gives its `-wal` and `-shm`
/// files the same mode. A file found readable by others is made private,
/// and the log says so.
fn lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut files = vec![path.to_owned()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut companion = path.as_os_str().to_owned();
            companion.push(suffix);
            files.push(companion.into());
        }
        for file in files.iter().filter(|f| f.exists()) {
            let mode = std::fs::metadata(file)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode & 0o700))
                    .with_context(|| format!("cannot make {} private (the database holds secrets)", file.display()))?;
                tracing::warn!(
                    "{} was readable by others (mode {:o}); the database holds secrets, so it is now {:o}",
                    file.display(),
                    mode & 0o777,
                    mode & 0o700
                );
            }
        }
    }
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the database {} is in use by another assets-host serve; stop that one or give this one its own --db \
             (two servers on one SQLite file would run every schedule twice)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock the database {}", path.display()))
        }
    }
}

fn table_exists(conn: &Connection, name: &str) -> anyhow::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Turns each fired occurrence id into a ledger entry, ended as its history
/// line says; one with no line (the platform stopped mid-delivery before
/// the ledger existed) is ended failed with that reason.
fn migrate_fired(tx: &Connection) -> anyhow::Result<()> {
    let mut lines: HashMap<String, HistoryEntry> = HashMap::new();
    for body in column::<String>(tx, "SELECT body FROM history ORDER BY idx")? {
        let line: HistoryEntry = serde_json::from_str(&body).context("a history row")?;
        if let Some(id) = line.occurrence_id.clone() {
            lines.insert(id, line);
        }
    }
    for id in column::<String>(tx, "SELECT occurrence_id FROM fired")? {
        let line = lines.get(&id);
        let (state, reason) = match line.map(|l| l.status) {
            Some(Outcome::Completed) => (OccurrenceState::Completed, None),
            Some(Outcome::Skipped) => (OccurrenceState::Skipped, line.and_then(|l| l.failure_reason.clone())),
            Some(Outcome::Missed) => (OccurrenceState::Missed, line.and_then(|l| l.failure_reason.clone())),
            Some(Outcome::Running) => (OccurrenceState::Delivering, None),
            Some(_) => (OccurrenceState::Failed, line.and_then(|l| l.failure_reason.clone())),
            None => (
                OccurrenceState::Failed,
                Some("failed: handled before this database kept an occurrence ledger, and no history line says how it ended".into()),
            ),
        };
        let nominal = line.map(|l| l.started_at).unwrap_or_default();
        tx.execute(
            "INSERT INTO occurrences (id, schedule_id, import_source_id, nominal_time, attempt, state, execution_id,
                 reason, claimed_at, ended_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?4, ?8)",
            params![
                id,
                line.and_then(|l| l.schedule_id.clone()).unwrap_or_default(),
                line.map(|l| l.import_source_id.clone()).unwrap_or_default(),
                nominal,
                state.name(),
                line.and_then(|l| l.execution_id.clone()),
                reason,
                line.and_then(|l| l.ended_at),
            ],
        )?;
    }
    tx.execute_batch("DROP TABLE fired")?;
    Ok(())
}

fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> anyhow::Result<Vec<T>> {
    let mut query = conn.prepare(sql)?;
    let rows = query.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
) -> anyhow::Result<Vec<(A, B)>> {
    let mut query = conn.prepare(sql)?;
    let rows = query.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The callback replay record in the SQLite file: a signature accepted once
/// is refused until its window ends, across restarts.
pub struct SqliteReplays(pub Arc<SqliteStore>);

impl ReplayRecord for SqliteReplays {
    fn first_time(&self, signature: &str, signed_at: i64, tolerance_secs: i64) -> Result<bool, String> {
        let conn = self.0.conn();
        let result = (|| {
            let now = chrono::Utc::now().timestamp();
            conn.execute("DELETE FROM callbacks_seen WHERE seen_until < ?1", [now])?;
            conn.execute(
                "INSERT INTO callbacks_seen (signature, seen_until) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![signature, signed_at + tolerance_secs],
            )
        })();
        result
            .map(|inserted| inserted == 1)
            .map_err(|e| format!("the replay record could not be checked: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assets_platform::assets::journal::Writer;
    use assets_platform::assets::model::{AssetObject, DataChunk};

    #[cfg(unix)]
    #[test]
    fn the_database_and_its_write_ahead_log_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("assets-db-mode-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        {
            let (store, _) = super::SqliteStore::open(&path).unwrap();
            store.app_secret("app").unwrap();
            assert_eq!(mode(&path), 0o600, "a new database");
            let wal = dir.join("state.db-wal");
            assert!(wal.exists());
            assert_eq!(mode(&wal), 0o600, "its write-ahead log");
        }
        // One made by an older version, readable by all, is made private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(super::SqliteStore::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600, "an existing database");
    }

    fn chunk(id: &str, external_ids: &[&str]) -> DataChunk {
        DataChunk {
            client_generated_id: Some(id.into()),
            object_type_id: "server".into(),
            objects: external_ids
                .iter()
                .map(|x| AssetObject {
                    external_id: (*x).into(),
                    label: format!("host {x}"),
                    attributes: Default::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn what_was_saved_reads_back_the_same() {
        let dir = std::env::temp_dir().join(format!("assets-persist-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let now = Utc::now();
        {
            let (store, mut state) = SqliteStore::open(&path).unwrap();
            state.add_workspace("ws".into());
            state
                .add_source(ImportSource::new(
                    "src".into(),
                    "ws".into(),
                    SourceType::External,
                    Some("demo".into()),
                ))
                .unwrap();
            state.start_execution("src", "e1".into(), true, None, now).unwrap();
            state
                .add_chunk("src", "e1", chunk("c1", &["a", "b"]), u64::MAX)
                .unwrap();
            state.complete("src", "e1", now, &Writer::Api).unwrap();
            state.start_execution("src", "e2".into(), false, None, now).unwrap();
            state.add_chunk("src", "e2", chunk("c1", &["x"]), u64::MAX).unwrap();
            state.end_unrun(
                HistoryEntry {
                    execution_id: None,
                    import_source_id: "src".into(),
                    scheduled: true,
                    schedule_id: Some("sched".into()),
                    occurrence_id: Some("occurrence-1".into()),
                    status: Outcome::Missed,
                    failure_reason: Some("missed: test".into()),
                    objects: 0,
                    started_at: now,
                    ended_at: Some(now),
                    invocations: None,
                    processed_at: None,
                    progress: None,
                },
                &Writer::Api,
            );
            let changes = state.take_changes();
            store.save(&state, changes).unwrap();
        }
        let (_store, mut state) = SqliteStore::open(&path).unwrap();
        assert_eq!(
            state.history("src").len(),
            3,
            "two executions and the missed occurrence"
        );
        let e1 = state.execution("src", "e1").unwrap();
        assert_eq!((e1.status, e1.chunks), (ExecutionStatus::Processing, 1));
        assert_eq!(state.history_of("e1").map(|l| l.objects), Some(2));
        assert!(e1.objects.is_empty(), "an ended execution's objects stay on disk");
        let stored: i64 = _store
            .conn()
            .query_row("SELECT COUNT(*) FROM objects WHERE execution_id = 'e1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, 2);
        assert_eq!(state.ingesting("src").map(|e| e.id.as_str()), Some("e2"));
        let entry = state.occurrence("occurrence-1").expect("the ledger is stored");
        assert_eq!(
            (entry.state, entry.reason.as_deref()),
            (OccurrenceState::Missed, Some("missed: test"))
        );
        assert_eq!(
            state.add_chunk("src", "e2", chunk("c1", &["x"]), u64::MAX).unwrap(),
            0,
            "a resent chunk is still recognised after a restart"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
