//! Shared state: the Assets mock's [`State`] in PostgreSQL, so several
//! `assets-host serve` nodes on one database run one platform.
//!
//! Each node keeps its [`State`] as a cache of the database and every rule
//! is still checked there, as with SQLite. What makes the database the truth
//! for several nodes is the lock every change is made under; a read takes
//! none:
//!
//! ```text
//! a change: lock  ─▶ BEGIN; SELECT rev … FROM meta FOR UPDATE  (one writer across all nodes)
//!           begin ─▶ rows with rev > what this node has seen ─▶ applied to the cache
//!           the call runs on the cache
//!           save  ─▶ the rows it changed, stamped rev + 1; meta.rev = rev + 1 and
//!                    the revision's token in one statement; COMMIT
//! a read:   refresh ─▶ SELECT rev FROM meta; if newer than the cache, in one
//!                      REPEATABLE READ snapshot: rows with rev > what it has seen
//! ```
//!
//! So a node always decides on what every other node wrote before it, and
//! the occurrence ledger's primary key (the v5 occurrence id) stays the
//! exactly-once fence: a second claim of an id is a row that already exists.
//! Changes are serialized through the `meta` row, a single writer at a time
//! across the cluster, which keeps each call's rules exactly those of one
//! node; the figures in BENCHMARKS.md say what it costs. Reads never wait
//! for it: a node paused in the middle of a change holds the other nodes'
//! changes (until the server ends its idle transaction), not their reads.
//!
//! Beside the state: the nodes' heartbeats (`nodes`, leases in database
//! time, [`PgStore::heartbeat`]), the shared virtual clock (`meta`), the
//! apps' storage read through ([`PgAppRows`]), the callback replay record
//! ([`PgReplays`]), app secrets and first sources. Migrations are numbered
//! in `schema_migrations` and applied under an advisory lock, so nodes
//! starting together apply each once.

use crate::db::{status_name, StoredSchedule};
use crate::signing::ReplayRecord;
use anyhow::Context as _;
use assets_platform::assets::journal::{JournalPage, Stored};
use assets_platform::assets::ledger::{LedgerEntry, OccurrenceState};
use assets_platform::assets::model::{Changes, Execution, ExecutionStatus, HistoryEntry, ImportSource, State};
use assets_platform::assets::StateStore;
use assets_platform::clock::{Clock, TimeSample, VirtualClock};
use assets_platform::scheduler::Peers;
use assets_runtime::storage::StorageBacking;
use chrono::{DateTime, SubsecRound as _, Utc};
use postgres::types::ToSql;
use postgres::{Client, Statement};
use r2d2_postgres::{r2d2, PostgresConnectionManager};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
type Conn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// The schema, one migration per entry; `schema_migrations` records which
/// ran.
const MIGRATIONS: &[&str] = &[
    // 1: the state, the ledger, and what the nodes share beside it.
    "
CREATE TABLE meta (id INT PRIMARY KEY CHECK (id = 1), rev BIGINT NOT NULL, virtual_now TIMESTAMPTZ);
INSERT INTO meta (id, rev) VALUES (1, 0);
CREATE TABLE workspaces (id TEXT PRIMARY KEY, rev BIGINT NOT NULL);
CREATE TABLE sources (id TEXT PRIMARY KEY, body TEXT NOT NULL, rev BIGINT NOT NULL);
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    scheduled BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    received BIGINT NOT NULL,
    chunks BIGINT NOT NULL,
    history_index BIGINT NOT NULL,
    rev BIGINT NOT NULL
);
CREATE TABLE chunk_ids (
    execution_id TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    rev BIGINT NOT NULL,
    PRIMARY KEY (execution_id, chunk_id)
);
CREATE TABLE objects (
    execution_id TEXT NOT NULL,
    object_type_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    body TEXT NOT NULL,
    rev BIGINT NOT NULL,
    PRIMARY KEY (execution_id, object_type_id, external_id)
);
CREATE TABLE history (idx BIGINT PRIMARY KEY, body TEXT NOT NULL, rev BIGINT NOT NULL);
-- body NULL: the schedule was deleted (kept so other nodes learn it).
CREATE TABLE schedules (id TEXT PRIMARY KEY, body TEXT, rev BIGINT NOT NULL);
CREATE TABLE occurrences (
    id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL,
    import_source_id TEXT NOT NULL,
    nominal_time TIMESTAMPTZ NOT NULL,
    attempt BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('delivering', 'completed', 'failed', 'skipped', 'missed')),
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    execution_id TEXT,
    reason TEXT,
    claimed_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ,
    rev BIGINT NOT NULL
);
CREATE INDEX workspaces_rev ON workspaces (rev);
CREATE INDEX sources_rev ON sources (rev);
CREATE INDEX executions_rev ON executions (rev);
CREATE INDEX chunk_ids_rev ON chunk_ids (rev);
CREATE INDEX objects_rev ON objects (rev);
CREATE INDEX history_rev ON history (rev);
CREATE INDEX schedules_rev ON schedules (rev);
CREATE INDEX occurrences_rev ON occurrences (rev);
CREATE INDEX occurrences_delivering ON occurrences (state) WHERE state = 'delivering';
CREATE TABLE apps (name TEXT PRIMARY KEY, secret TEXT NOT NULL);
CREATE TABLE app_first_source (app TEXT PRIMARY KEY, source_id TEXT NOT NULL);
CREATE TABLE app_storage (app TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (app, key));
CREATE TABLE callbacks_seen (signature TEXT PRIMARY KEY, seen_until TIMESTAMPTZ NOT NULL);
CREATE TABLE nodes (id TEXT PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL, alive_until TIMESTAMPTZ NOT NULL);
",
    // 2: the digest of the content each chunk id was accepted with, so the
    // same id with other objects is refused on every node (rows from before
    // have none: their content is not known).
    "ALTER TABLE chunk_ids ADD COLUMN digest TEXT;",
    // 3: the delivery that created each execution (JSON: its id, the
    // occurrence and the attempt), so a delivery's clean-up on any node
    // fails its own execution only (rows from before have none); and each
    // occurrence's run heartbeat (`LedgerEntry::alive_until`).
    "ALTER TABLE executions ADD COLUMN created_by TEXT; ALTER TABLE occurrences ADD COLUMN alive_until TIMESTAMPTZ;",
    // 4: where the advances asked so far take the shared virtual clock, so
    // two advances sent at once to two nodes add up (`reserve_advance`).
    "ALTER TABLE meta ADD COLUMN virtual_target TIMESTAMPTZ;",
    // 5: the journal of fenced writes (`assets::journal`), JSON each, in
    // commit order: the writes of one commit are made under the state lock,
    // so sequence order is the order they were made in across the nodes.
    "CREATE TABLE journal (seq BIGSERIAL PRIMARY KEY, node TEXT NOT NULL, body TEXT NOT NULL);",
    // 6: the revision from which a cache must be read whole again: a
    // repair that renumbers the history (`repair_history`) changes rows a
    // node may hold under other numbers, which no row-by-row catch-up
    // undoes.
    "ALTER TABLE meta ADD COLUMN reload_from BIGINT NOT NULL DEFAULT 0;",
    // 7: a random token per revision (the last `REVISIONS_KEPT`): a node
    // checks the token of the revision its cache reflects, so a database
    // that went back and was then written past that revision (a restored
    // backup, a failover to a replica that lagged) is not taken for the
    // one it read.
    "CREATE TABLE revisions (rev BIGINT PRIMARY KEY, token TEXT NOT NULL);
     INSERT INTO revisions (rev, token) SELECT rev, md5(random()::text) FROM meta;",
];

/// How many revisions keep their token. A node whose cache is older than
/// that finds none and reads everything again.
const REVISIONS_KEPT: i64 = 10_000;

/// Advisory lock keys (arbitrary, fixed).
const MIGRATION_LOCK: i64 = 0x6173_7365_7401;
const STARTUP_LOCK: i64 = 0x6173_7365_7402;

/// How long a node's heartbeat holds: a node silent for longer is dead, and
/// its deliveries are taken over.
pub const NODE_LEASE: Duration = Duration::from_secs(5);
/// How often a node renews its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// The time-outs of the session state calls run on, so no node holds the
/// others for long: a transaction left idle (its node paused, or cut off
/// without a word) is ended by the server after
/// `idle_in_transaction_session_timeout`, and its lock with it; a state call
/// waits for the lock at most `lock_timeout` (then answers 503), and no
/// statement runs past `statement_timeout`. The wait outlasts the idle
/// time-out by 5 s, so a change queued behind a node paused inside its own
/// gets the lock once the server has ended that node's transaction, however
/// soon after the pause it began to wait.
pub const SESSION_TIMEOUTS: &str =
    "SET idle_in_transaction_session_timeout = '10s'; SET lock_timeout = '15s'; SET statement_timeout = '60s'";

/// TCP keepalives on every connection: a database gone silent (a network
/// partition) is noticed within about a minute, not the system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// The state and everything the nodes share, in one PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    /// The connection changes run on, with the transaction `lock` opened;
    /// one at a time.
    session: Mutex<Session>,
    /// What the cache holds, and the connection reads run on.
    cache: Mutex<Cache>,
    /// The virtual clock, when the platform runs on one: shared through
    /// `meta.virtual_now`.
    clock: Option<Arc<VirtualClock>>,
    /// This node's name in `nodes` and as a lease owner.
    node: String,
}

/// A connection and the statements it has prepared: the server parses
/// each statement text once per connection, not once per call, which
/// halves the round trips of a state call.
struct Link {
    client: Conn,
    statements: HashMap<&'static str, Statement>,
}

impl Link {
    fn new(client: Conn) -> Link {
        Link {
            client,
            statements: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &'static str) -> anyhow::Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> anyhow::Result<u64> {
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, params)?)
    }

    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> anyhow::Result<Vec<postgres::Row>> {
        let statement = self.statement(sql)?;
        Ok(self.client.query(&statement, params)?)
    }
}

#[derive(Default)]
struct Session {
    conn: Option<Link>,
    /// The revision read by the open transaction.
    rev: i64,
    /// `meta.reload_from` as the open transaction read it.
    reload_from: i64,
    /// The token of `rev`, as the open transaction read it.
    token: Option<String>,
    /// The shared clock as the open transaction read it.
    clock: Option<DateTime<Utc>>,
    /// A transaction is open (`begin` succeeded).
    open: bool,
}

impl Session {
    fn conn(&mut self) -> anyhow::Result<&mut Link> {
        self.conn.as_mut().context("no database connection")
    }

    /// After any error: roll back and drop a broken connection.
    fn abandon(&mut self) {
        if let Some(link) = self.conn.as_mut() {
            if link.client.is_closed() || link.client.batch_execute("ROLLBACK").is_err() {
                self.conn = None;
            }
        }
        self.open = false;
    }
}

/// A revision a cache reflects, and its token: together they name one
/// history of the database, which a restore written past the revision does
/// not share.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    rev: i64,
    token: String,
}

impl Seen {
    /// Revision `rev` with its token as read (`None`: none kept, which no
    /// later check matches, so the cache is read whole next time).
    fn new(rev: i64, token: Option<String>) -> Seen {
        Seen {
            rev,
            token: token.unwrap_or_default(),
        }
    }
}

/// `seen`, if the database still holds that revision under the same token
/// (`token_now`, read for `seen.rev`); else `None`, saying why when the
/// database went back (its revision `rev` behind, or the token another).
fn still_ours(seen: Option<Seen>, token_now: Option<&str>, rev: i64) -> Option<Seen> {
    let seen = seen?;
    if !seen.token.is_empty() && token_now == Some(seen.token.as_str()) && seen.rev <= rev {
        return Some(seen);
    }
    if seen.rev > rev || token_now.is_some() {
        tracing::warn!(
            "the shared state went back: revision {} as this node read it is not in the database, which is at \
             revision {rev} (a restored backup, a failover?); reading it all again; what was acknowledged after \
             the backup is not in the database",
            seen.rev
        );
    }
    None
}

/// What the node's cache of the state reflects, and the connection reads
/// bring it up to date on. Used under the service's state lock only, so
/// never waited for.
#[derive(Default)]
struct Cache {
    /// The revision the cache reflects; `None`: read everything again.
    seen: Option<Seen>,
    /// The connection of reads ([`StateStore::refresh`]): never the
    /// session's, which may be waiting for another node's lock.
    reader: Option<Link>,
}

/// Connects a pool to `url` (`postgres://USER@HOST:PORT/DB`), over TLS as
/// its `sslmode` says ([`crate::pg_tls`]).
fn pool(url: &str, size: u32) -> anyhow::Result<Pool> {
    let (mut config, tls) = crate::pg_tls::connect_config(url)?;
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    // One connection first, outside the pool: its error says why (a
    // certificate refused, a password wrong), where the pool's says only
    // that it timed out.
    config
        .connect(tls.clone())
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(5))
        .build(PostgresConnectionManager::new(config, tls))
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))
}

/// The URL without its password (in the user-info or as a `password`
/// parameter), for messages; anything but a PostgreSQL URL (a SQLite file)
/// as it is.
pub fn redact(url: &str) -> String {
    if !is_postgres(url) {
        return url.to_owned();
    }
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("***"));
        }
        if parsed.query_pairs().any(|(key, _)| key == "password") {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(&pairs);
        }
        return parsed.to_string();
    }
    // Not readable as a URL: nothing of it is safe to show.
    "postgres://(a URL that does not parse, not shown)".to_owned()
}

/// Where the shared virtual clock stands: as the database at `url` holds
/// it, or, for the first node ever to run one there, `proposed`, stored. A
/// node that joins follows the clock the others moved, not its own start.
pub fn shared_clock_start(url: &str, proposed: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let mut conn = pool(url, 1)?.get()?;
    migrate(&mut conn).context("cannot bring the PostgreSQL tables up to date")?;
    // PostgreSQL keeps microseconds: so does every node's clock.
    let proposed = proposed.trunc_subsecs(6);
    Ok(conn
        .query_one(
            "UPDATE meta SET virtual_now = COALESCE(virtual_now, $1) WHERE id = 1 RETURNING virtual_now",
            &[&proposed],
        )?
        .get(0))
}

/// Whether a session opened with `url` is encrypted, as the server sees
/// it (`pg_stat_ssl`): what the banner reports, so an operator can tell.
pub fn session_uses_tls(url: &str) -> anyhow::Result<bool> {
    let mut conn = pool(url, 1)?
        .get()
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    Ok(conn
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?
        .get(0))
}

/// True when `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

impl PgStore {
    /// Connects to `url`, applies pending migrations and reads the state.
    /// `node` names this process in `nodes` and as a lease owner; `clock`,
    /// when given, is the virtual clock the nodes share.
    pub fn open(url: &str, node: &str, clock: Option<Arc<VirtualClock>>) -> anyhow::Result<(PgStore, State)> {
        let pool = pool(url, 16)?;
        migrate(&mut *pool.get()?).context("cannot bring the PostgreSQL tables up to date")?;
        let store = PgStore {
            pool,
            session: Mutex::new(Session::default()),
            cache: Mutex::new(Cache::default()),
            clock,
            node: node.to_owned(),
        };
        let mut state = State::default();
        // Under the lock, as a change: its release publishes the clock of a
        // node that starts ahead of it.
        store
            .lock()
            .and_then(|()| store.begin(&mut state))
            .context("cannot read the state from PostgreSQL")?;
        store.release();
        Ok((store, state))
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache may hold what is not stored: read everything next time.
    fn forget_cache(&self) {
        self.cache().seen = None;
    }

    fn conn(&self) -> anyhow::Result<Conn> {
        self.pool.get().context("no PostgreSQL connection")
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Holds the start-up lock until dropped: nodes starting together set
    /// up the workspace and the apps' sources one after the other.
    pub fn startup_lock(&self) -> anyhow::Result<StartupLock> {
        let mut conn = self.conn()?;
        // Waited for as long as another node's start-up takes.
        conn.batch_execute("SET lock_timeout = 0")?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&STARTUP_LOCK])?;
        Ok(StartupLock(conn))
    }

    /// Renews this node's lease in `nodes`, in database time.
    pub fn heartbeat(&self) -> anyhow::Result<()> {
        let lease = NODE_LEASE.as_secs_f64();
        self.conn()?.execute(
            "INSERT INTO nodes (id, started_at, alive_until) VALUES ($1, now(), now() + make_interval(secs => $2))
             ON CONFLICT (id) DO UPDATE SET alive_until = EXCLUDED.alive_until",
            &[&self.node, &lease],
        )?;
        Ok(())
    }

    /// Reads the database's clock, bracketed by `local`: what a
    /// [`DatabaseClock`](assets_platform::clock::DatabaseClock) follows.
    pub fn time_sample(&self, local: &dyn Clock) -> anyhow::Result<TimeSample> {
        let mut conn = self.conn()?;
        let sent = local.now();
        let database: DateTime<Utc> = conn.query_one("SELECT clock_timestamp()", &[])?.get(0);
        let received = local.now();
        Ok(TimeSample {
            sent,
            database,
            received,
        })
    }

    /// Gives this node's lease up (a clean stop): its deliveries are taken
    /// over at once rather than when the lease runs out.
    pub fn leave(&self) -> anyhow::Result<()> {
        self.conn()?.execute("DELETE FROM nodes WHERE id = $1", &[&self.node])?;
        Ok(())
    }

    /// The secret `app`'s callbacks are signed with; the first node to ask
    /// makes it.
    pub fn app_secret(&self, app: &str) -> anyhow::Result<String> {
        let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut conn = self.conn()?;
        conn.execute(
            "INSERT INTO apps (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&app, &secret],
        )?;
        Ok(conn
            .query_one("SELECT secret FROM apps WHERE name = $1", &[&app])?
            .get(0))
    }

    /// The import source made for `app` when it was first hosted (see
    /// [`crate::db::SqliteStore::first_source`]); call under
    /// [`PgStore::startup_lock`].
    pub fn first_source(
        &self,
        app: &str,
        otherwise: impl FnOnce() -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        let stored = self
            .conn()?
            .query_opt("SELECT source_id FROM app_first_source WHERE app = $1", &[&app])?;
        if let Some(row) = stored {
            return Ok(row.get(0));
        }
        let id = otherwise()?;
        self.conn()?.execute(
            "INSERT INTO app_first_source (app, source_id) VALUES ($1, $2) ON CONFLICT (app) DO NOTHING",
            &[&app, &id],
        )?;
        Ok(id)
    }

    /// `app`'s storage as stored.
    pub fn app_storage(&self, app: &str) -> anyhow::Result<HashMap<String, String>> {
        let rows = self
            .conn()?
            .query("SELECT key, value FROM app_storage WHERE app = $1", &[&app])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Where an advance of the shared virtual clock by `by` ends: after
    /// every advance asked before it on any node, in one statement, so two
    /// advances sent at once add up rather than both ending at the same
    /// instant. The caller then runs the schedules up to it.
    pub fn reserve_advance(&self, by: chrono::Duration) -> anyhow::Result<DateTime<Utc>> {
        let row = self
            .conn()?
            .query_one(
                "UPDATE meta SET virtual_target = GREATEST(COALESCE(virtual_target, virtual_now), virtual_now)
                     + make_interval(secs => $1)
                 WHERE id = 1 RETURNING virtual_target",
                &[&seconds(by)?],
            )
            .context("cannot reserve the clock advance in PostgreSQL")?;
        row.get::<_, Option<DateTime<Utc>>>(0)
            .context("the shared virtual clock is not set")
    }

    /// Gives back the part of an advance of `by`, reserved up to `end`,
    /// that did not run: the database refused what fell due at
    /// `stopped_at`, and the advance stopped there. So the next advance goes
    /// on from `stopped_at`, as the refusal says, not from `end`. What was
    /// reserved before this advance (up to `end - by`; another advance,
    /// perhaps still running) stays reserved, so advances sent at once still
    /// add up; and an advance reserved after this one (past `end`) runs the
    /// rest itself, so its reservation is not touched.
    pub fn give_back_advance(
        &self,
        end: DateTime<Utc>,
        by: chrono::Duration,
        stopped_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.conn()?
            .execute(
                "UPDATE meta SET virtual_target = GREATEST($2, $1 - make_interval(secs => $3))
                 WHERE id = 1 AND virtual_target = $1",
                &[&end, &stopped_at, &seconds(by)?],
            )
            .context("cannot give back the part of the clock advance that did not run")?;
        Ok(())
    }

    /// Publishes the virtual clock when this node moved it: a call that
    /// changed nothing else (the end of a clock advance) still moves it for
    /// every node.
    fn clock_moved(&self, session: &Session) -> Option<DateTime<Utc>> {
        let now = self.clock.as_ref()?.now();
        (session.clock.is_none_or(|stored| now > stored)).then_some(now)
    }
}

/// `by` in seconds, as `make_interval(secs => …)` takes it: the same
/// value for a reservation and its give-back, so `end - by` is exactly
/// where the reservation began.
fn seconds(by: chrono::Duration) -> anyhow::Result<f64> {
    Ok(by.num_microseconds().context("an advance too long to count")? as f64 / 1e6)
}

/// The start-up advisory lock; released when dropped (the connection goes
/// back to the pool, so it is unlocked explicitly).
pub struct StartupLock(Conn);

impl Drop for StartupLock {
    fn drop(&mut self) {
        let _ = self.0.execute("SELECT pg_advisory_unlock($1)", &[&STARTUP_LOCK]);
    }
}

impl StateStore for PgStore {
    fn lock(&self) -> anyhow::Result<()> {
        let mut session = self.session();
        if session.open {
            // A guard dropped without a save (a panic): start afresh.
            session.abandon();
            self.forget_cache();
        }
        // A connection the server closed while it sat idle (a restart, a
        // cut) is only found out on its first statement; nothing of the
        // change has been sent then, so the lock is tried once more on a
        // fresh connection before the change is refused.
        let mut result = Err(anyhow::anyhow!("no attempt"));
        for _ in 0..2 {
            if session.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
                let client = self.conn().and_then(|mut client| {
                    client
                        .batch_execute(SESSION_TIMEOUTS)
                        .context("cannot set the session's time-outs")?;
                    Ok(client)
                });
                match client {
                    Ok(client) => session.conn = Some(Link::new(client)),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            result = (|| {
                let conn = session.conn()?;
                conn.client.batch_execute("BEGIN")?;
                let rows = conn.query(
                    "SELECT m.rev, m.virtual_now, m.reload_from, (SELECT token FROM revisions WHERE rev = m.rev)
                     FROM meta m WHERE m.id = 1 FOR UPDATE OF m",
                    &[],
                )?;
                let row = rows.first().context("the meta row is missing")?;
                anyhow::Ok((
                    row.get::<_, i64>(0),
                    row.get::<_, Option<DateTime<Utc>>>(1),
                    row.get::<_, i64>(2),
                    row.get::<_, Option<String>>(3),
                ))
            })();
            if result.is_ok() || session.conn.as_ref().is_some_and(|c| !c.client.is_closed()) {
                break;
            }
        }
        match result {
            Ok((rev, clock, reload_from, token)) => {
                session.rev = rev;
                session.reload_from = reload_from;
                session.token = token;
                session.clock = clock;
                session.open = true;
                Ok(())
            }
            Err(e) => {
                session.abandon();
                // The cache may be changed on this failed lock's behalf
                // before the change is refused: read it all again.
                self.forget_cache();
                Err(e.context("cannot lock the shared state in PostgreSQL"))
            }
        }
    }

    fn begin(&self, state: &mut State) -> anyhow::Result<()> {
        let mut session = self.session();
        anyhow::ensure!(session.open, "the shared state is not locked");
        let (rev, clock, reload_from) = (session.rev, session.clock, session.reload_from);
        let token = session.token.clone();
        let mut cache = self.cache();
        let seen = cache.seen.take();
        let result = (|| {
            let conn = session.conn()?;
            let token_of_seen = match &seen {
                Some(seen) if seen.rev == rev => token.clone(),
                Some(seen) => token_of(conn, seen.rev)?,
                None => None,
            };
            match still_ours(seen, token_of_seen.as_deref(), rev) {
                Some(seen) if seen.rev == rev => return anyhow::Ok((rev, token)),
                Some(seen) if seen.rev >= reload_from => match apply_since(conn, state, seen.rev) {
                    Ok(()) => return Ok((rev, token)),
                    Err(e) => tracing::warn!("reading everything again after a partial refresh failed: {e:#}"),
                },
                _ => {}
            }
            // The whole state, repaired first if rows are missing: under
            // this lock, as a change of its own that every node reads whole.
            let (rev, token) = if repair_history(conn, rev + 1)? {
                (rev + 1, Some(stamp_revision(conn, rev + 1, None, true)?))
            } else {
                (rev, token)
            };
            *state = load(conn)?;
            Ok((rev, token))
        })();
        match result {
            Ok((rev, token)) => {
                state.track_changes();
                if let (Some(shared), Some(stored)) = (&self.clock, clock) {
                    shared.set(stored);
                }
                session.rev = rev;
                session.token = token.clone();
                cache.seen = Some(Seen::new(rev, token));
                Ok(())
            }
            Err(e) => {
                session.abandon();
                cache.seen = None;
                Err(e.context("cannot read the shared state from PostgreSQL"))
            }
        }
    }

    fn refresh(&self, state: &mut State) -> anyhow::Result<()> {
        let mut cache = self.cache();
        let seen = cache.seen.take();
        // A pooled connection the server has since closed (a restart, a
        // cut) is found on its first statement: a read tries once more on
        // a fresh one before it says the state is out of reach.
        let mut result = Err(anyhow::anyhow!("no attempt"));
        for attempt in 0..2 {
            let reader = match cache.reader.take().filter(|c| !c.client.is_closed()) {
                Some(reader) => Ok(reader),
                None => self.conn().and_then(|mut client| {
                    client
                        .batch_execute(SESSION_TIMEOUTS)
                        .context("cannot set the session's time-outs")?;
                    Ok(Link::new(client))
                }),
            };
            let mut reader = match reader {
                Ok(reader) => reader,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            // A second try reads everything: the first may have applied part
            // of what it read.
            result = read_since(&mut reader, state, if attempt == 0 { seen.clone() } else { None });
            // After an error the connection is not trusted again.
            if result.is_ok() {
                cache.reader = Some(reader);
                break;
            }
            if !reader.client.is_closed() {
                break;
            }
        }
        match result {
            Ok((seen, clock)) => {
                state.track_changes();
                if let (Some(shared), Some(stored)) = (&self.clock, clock) {
                    shared.set(stored);
                }
                cache.seen = Some(seen);
                Ok(())
            }
            Err(e) => {
                // Partly applied, maybe: the next look reads everything.
                cache.seen = None;
                Err(e.context("cannot read the shared state from PostgreSQL"))
            }
        }
    }

    fn release(&self) {
        let mut session = self.session();
        if !session.open {
            return;
        }
        let moved = self.clock_moved(&session);
        let result = (|| {
            let conn = session.conn()?;
            if let Some(now) = moved {
                conn.execute("UPDATE meta SET virtual_now = $1 WHERE id = 1", &[&now])?;
            }
            conn.client.batch_execute("COMMIT")?;
            anyhow::Ok(())
        })();
        session.open = false;
        match result {
            Ok(()) => session.clock = moved.or(session.clock),
            Err(e) => {
                tracing::warn!("ending a read of the shared state: {e:#}");
                session.abandon();
                self.forget_cache();
            }
        }
    }

    fn save(&self, state: &State, changes: Changes) -> anyhow::Result<()> {
        let mut session = self.session();
        anyhow::ensure!(
            session.open,
            "the state was not read from PostgreSQL before this change, so it is not saved"
        );
        let rev = session.rev + 1;
        let moved = self.clock_moved(&session);
        let result = (|| {
            let conn = session.conn()?;
            write(conn, state, &changes, rev, &self.node)?;
            let token = stamp_revision(conn, rev, moved, false)?;
            conn.client
                .batch_execute("COMMIT")
                .context("cannot commit to PostgreSQL")?;
            anyhow::Ok(token)
        })();
        session.open = false;
        match result {
            Ok(token) => {
                self.cache().seen = Some(Seen::new(rev, Some(token)));
                session.clock = moved.or(session.clock);
                Ok(())
            }
            Err(e) => {
                session.abandon();
                self.forget_cache();
                Err(e)
            }
        }
    }

    fn load(&self) -> anyhow::Result<State> {
        let mut state = load(&mut Link::new(self.conn()?))?;
        state.track_changes();
        Ok(state)
    }

    fn discard(&self, _state: &mut State) {
        // Every look (`begin`, `refresh`) comes before anyone reads the
        // cache, and with `seen` unset it replaces it whole, from one
        // snapshot.
        self.forget_cache();
    }

    fn journal(&self, after: i64, limit: usize) -> anyhow::Result<JournalPage> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .conn()?
            .query(
                "SELECT seq, node, body FROM journal WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
            .context("cannot read the journal from PostgreSQL")?;
        rows.iter()
            .map(|row| {
                Ok(Stored {
                    seq: row.get(0),
                    node: Some(row.get(1)),
                    written: serde_json::from_str(row.get::<_, &str>(2))?,
                })
            })
            .collect()
    }
}

impl Peers for PgStore {
    fn alive(&self) -> anyhow::Result<HashSet<String>> {
        let rows = self
            .conn()?
            .query("SELECT id FROM nodes WHERE alive_until > now()", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Applies the migrations the database has not had, under an advisory lock
/// so nodes starting at once apply each exactly once.
fn migrate(conn: &mut Client) -> anyhow::Result<()> {
    conn.batch_execute("SET lock_timeout = 0")?;
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = (|| {
        conn.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let applied: i32 = conn
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?
            .get(0);
        let applied = applied as usize;
        anyhow::ensure!(
            applied <= MIGRATIONS.len(),
            "the database is at schema version {applied}, newer than this program's {}; use a newer assets-host",
            MIGRATIONS.len()
        );
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let version = (index + 1) as i32;
            let mut tx = conn.transaction()?;
            tx.batch_execute(sql)
                .with_context(|| format!("migration to schema version {version}"))?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])?;
            tx.commit()?;
            tracing::info!(version, "applied a PostgreSQL migration");
        }
        anyhow::Ok(())
    })();
    conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    result
}

/// Writes the rows `changes` names, stamped `rev`, one statement per table.
fn write(conn: &mut Link, state: &State, changes: &Changes, rev: i64, node: &str) -> anyhow::Result<()> {
    if !changes.workspaces.is_empty() {
        let ids: Vec<&String> = changes.workspaces.iter().collect();
        conn.execute(
            "INSERT INTO workspaces (id, rev) SELECT id, $2 FROM unnest($1::text[]) AS id
             ON CONFLICT (id) DO NOTHING",
            &[&ids, &rev],
        )?;
    }
    let sources: Vec<(String, String)> = changes
        .sources
        .iter()
        .filter_map(|id| state.source_by_id(id))
        .map(|s| Ok((s.id.clone(), serde_json::to_string(s)?)))
        .collect::<anyhow::Result<_>>()?;
    if !sources.is_empty() {
        let (ids, bodies): (Vec<String>, Vec<String>) = sources.into_iter().unzip();
        conn.execute(
            "INSERT INTO sources (id, body, rev) SELECT id, body, $3 FROM unnest($1::text[], $2::text[]) AS t(id, body)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, rev = EXCLUDED.rev",
            &[&ids, &bodies, &rev],
        )?;
    }
    let executions: Vec<&Execution> = changes
        .executions
        .iter()
        .filter_map(|id| state.execution_by_id(id))
        .collect();
    if !executions.is_empty() {
        let ids: Vec<&str> = executions.iter().map(|e| e.id.as_str()).collect();
        let sources: Vec<&str> = executions.iter().map(|e| e.import_source_id.as_str()).collect();
        let scheduled: Vec<bool> = executions.iter().map(|e| e.scheduled).collect();
        let status: Vec<String> = executions.iter().map(|e| status_name(e.status)).collect();
        let received: Vec<i64> = executions.iter().map(|e| e.received as i64).collect();
        let chunks: Vec<i64> = executions.iter().map(|e| i64::from(e.chunks)).collect();
        let index: Vec<i64> = executions.iter().map(|e| e.history_index as i64).collect();
        let created_by = executions
            .iter()
            .map(|e| e.created_by.as_ref().map(serde_json::to_string).transpose())
            .collect::<Result<Vec<Option<String>>, _>>()?;
        conn.execute(
            "INSERT INTO executions (id, source_id, scheduled, status, received, chunks, history_index, created_by, rev)
             SELECT t.*, $9 FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::text[])
                 AS t(id, source_id, scheduled, status, received, chunks, history_index, created_by)
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, received = EXCLUDED.received,
                 chunks = EXCLUDED.chunks, history_index = EXCLUDED.history_index, rev = EXCLUDED.rev",
            &[&ids, &sources, &scheduled, &status, &received, &chunks, &index, &created_by, &rev],
        )?;
    }
    if !changes.chunk_ids.is_empty() {
        let executions: Vec<&str> = changes.chunk_ids.iter().map(|(e, _, _)| e.as_str()).collect();
        let chunks: Vec<&str> = changes.chunk_ids.iter().map(|(_, c, _)| c.as_str()).collect();
        let digests: Vec<&str> = changes.chunk_ids.iter().map(|(_, _, d)| d.as_str()).collect();
        conn.execute(
            "INSERT INTO chunk_ids (execution_id, chunk_id, digest, rev)
             SELECT e, c, d, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS t(e, c, d)
             ON CONFLICT DO NOTHING",
            &[&executions, &chunks, &digests, &rev],
        )?;
    }
    if !changes.objects.is_empty() {
        // One row per key: a statement may not update a row twice.
        let mut seen = HashSet::new();
        let (mut executions, mut types, mut external, mut bodies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for key @ (execution, object_type, external_id) in &changes.objects {
            if !seen.insert(key) {
                continue;
            }
            let object = state
                .execution_by_id(execution)
                .and_then(|e| e.objects.get(&(object_type.clone(), external_id.clone())));
            if let Some(object) = object {
                executions.push(execution.as_str());
                types.push(object_type.as_str());
                external.push(external_id.as_str());
                bodies.push(serde_json::to_string(object)?);
            }
        }
        conn.execute(
            "INSERT INTO objects (execution_id, object_type_id, external_id, body, rev)
             SELECT t.*, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(e, o, x, b)
             ON CONFLICT (execution_id, object_type_id, external_id) DO UPDATE SET body = EXCLUDED.body, rev = EXCLUDED.rev",
            &[&executions, &types, &external, &bodies, &rev],
        )?;
    }
    if !changes.forgotten.is_empty() {
        let ids: Vec<&String> = changes.forgotten.iter().collect();
        conn.execute("DELETE FROM objects WHERE execution_id = ANY($1)", &[&ids])?;
        conn.execute("DELETE FROM chunk_ids WHERE execution_id = ANY($1)", &[&ids])?;
    }
    let lines: Vec<(i64, String)> = changes
        .history
        .iter()
        .filter_map(|&i| state.all_history().get(i).map(|line| (i, line)))
        .map(|(i, line)| Ok((i as i64, serde_json::to_string(line)?)))
        .collect::<anyhow::Result<_>>()?;
    if !lines.is_empty() {
        let (indices, bodies): (Vec<i64>, Vec<String>) = lines.into_iter().unzip();
        conn.execute(
            "INSERT INTO history (idx, body, rev) SELECT i, b, $3 FROM unnest($1::int8[], $2::text[]) AS t(i, b)
             ON CONFLICT (idx) DO UPDATE SET body = EXCLUDED.body, rev = EXCLUDED.rev",
            &[&indices, &bodies, &rev],
        )?;
    }
    if !changes.schedules.is_empty() {
        let mut ids = Vec::new();
        let mut bodies: Vec<Option<String>> = Vec::new();
        for id in &changes.schedules {
            ids.push(id.as_str());
            bodies.push(match state.schedule(id) {
                Some(s) => Some(serde_json::to_string(&StoredSchedule::from(s))?),
                None => None,
            });
        }
        conn.execute(
            "INSERT INTO schedules (id, body, rev) SELECT i, b, $3 FROM unnest($1::text[], $2::text[]) AS t(i, b)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, rev = EXCLUDED.rev",
            &[&ids, &bodies, &rev],
        )?;
    }
    let entries: Vec<&LedgerEntry> = changes.ledger.iter().filter_map(|id| state.occurrence(id)).collect();
    if !entries.is_empty() {
        let col = |f: fn(&LedgerEntry) -> Option<String>| entries.iter().map(|e| f(e)).collect::<Vec<_>>();
        let time = |f: fn(&LedgerEntry) -> Option<DateTime<Utc>>| entries.iter().map(|e| f(e)).collect::<Vec<_>>();
        let ids = col(|e| Some(e.occurrence_id.clone()));
        let schedules = col(|e| Some(e.schedule_id.clone()));
        let sources = col(|e| Some(e.import_source_id.clone()));
        let nominal = time(|e| Some(e.nominal_time));
        let attempts: Vec<i64> = entries.iter().map(|e| i64::from(e.attempt)).collect();
        let states = col(|e| Some(e.state.name().to_owned()));
        let owners = col(|e| e.lease_owner.clone());
        let until = time(|e| e.lease_until);
        let executions = col(|e| e.execution_id.clone());
        let reasons = col(|e| e.reason.clone());
        let claimed = time(|e| Some(e.claimed_at));
        let ended = time(|e| e.ended_at);
        let alive = time(|e| e.alive_until);
        conn.execute(
            "INSERT INTO occurrences (id, schedule_id, import_source_id, nominal_time, attempt, state, lease_owner,
                 lease_until, execution_id, reason, claimed_at, ended_at, alive_until, rev)
             SELECT t.*, $14 FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[], $6::text[],
                 $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[],
                 $13::timestamptz[])
                 AS t(id, schedule_id, import_source_id, nominal_time, attempt, state, lease_owner, lease_until,
                      execution_id, reason, claimed_at, ended_at, alive_until)
             ON CONFLICT (id) DO UPDATE SET attempt = EXCLUDED.attempt, state = EXCLUDED.state,
                 lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until,
                 execution_id = EXCLUDED.execution_id, reason = EXCLUDED.reason, ended_at = EXCLUDED.ended_at,
                 alive_until = EXCLUDED.alive_until, rev = EXCLUDED.rev",
            &[
                &ids,
                &schedules,
                &sources,
                &nominal,
                &attempts,
                &states,
                &owners,
                &until,
                &executions,
                &reasons,
                &claimed,
                &ended,
                &alive,
                &rev,
            ],
        )?;
    }
    if !changes.journal.is_empty() {
        let bodies: Vec<String> = changes
            .journal
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        conn.execute(
            "INSERT INTO journal (node, body) SELECT $1, body FROM unnest($2::text[]) WITH ORDINALITY AS t(body, n) ORDER BY n",
            &[&node, &bodies],
        )?;
    }
    Ok(())
}

/// Every row; `since` limits it to rows written after that revision (and
/// objects to executions still ingesting, the only ones kept in memory).
struct Rows<'a> {
    conn: &'a mut Link,
    since: i64,
}

impl Rows<'_> {
    fn query(&mut self, sql: &'static str) -> anyhow::Result<Vec<postgres::Row>> {
        self.conn.query(sql, &[&self.since])
    }

    fn into_state(mut self, state: &mut State, fresh: bool) -> anyhow::Result<()> {
        for row in self.query("SELECT id FROM workspaces WHERE rev > $1")? {
            state.restore_workspace(row.get(0));
        }
        for row in self.query("SELECT body FROM sources WHERE rev > $1")? {
            let source: ImportSource = serde_json::from_str(row.get(0)).context("an import source row")?;
            state.restore_source(source);
        }
        for row in self.query("SELECT idx, body FROM history WHERE rev > $1 ORDER BY idx")? {
            let entry: HistoryEntry = serde_json::from_str(row.get(1)).context("a history row")?;
            state
                .apply_history(row.get::<_, i64>(0) as usize, entry)
                .map_err(anyhow::Error::msg)?;
        }
        for row in self.query(
            "SELECT id, source_id, scheduled, status, received, chunks, history_index, created_by FROM executions
             WHERE rev > $1 ORDER BY history_index",
        )? {
            let (id, status): (String, String) = (row.get(0), row.get(3));
            let status: ExecutionStatus = serde_json::from_value(status.clone().into())
                .with_context(|| format!("execution {id} has unknown status {status:?}"))?;
            let created_by = row
                .get::<_, Option<String>>(7)
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .with_context(|| format!("execution {id} has an unreadable created_by"))?;
            state.apply_execution(Execution {
                id,
                import_source_id: row.get(1),
                scheduled: row.get(2),
                status,
                objects: HashMap::new(),
                received: row.get::<_, i64>(4) as u64,
                chunks: row.get::<_, i64>(5) as u32,
                chunk_ids: HashMap::new(),
                history_index: row.get::<_, i64>(6) as usize,
                created_by,
            });
        }
        for row in self.query(
            "SELECT o.execution_id, o.object_type_id, o.external_id, o.body FROM objects o
             JOIN executions e ON e.id = o.execution_id AND e.status = 'INGESTING' WHERE o.rev > $1",
        )? {
            if let Some(e) = state.restore_execution_mut(row.get(0)) {
                e.objects.insert(
                    (row.get(1), row.get(2)),
                    serde_json::from_str(row.get(3)).context("an object row")?,
                );
            }
        }
        for row in self.query(
            "SELECT c.execution_id, c.chunk_id, c.digest FROM chunk_ids c
             JOIN executions e ON e.id = c.execution_id AND e.status = 'INGESTING' WHERE c.rev > $1",
        )? {
            if let Some(e) = state.restore_execution_mut(row.get(0)) {
                e.chunk_ids.insert(row.get(1), row.get(2));
            }
        }
        for row in self.query("SELECT id, body FROM schedules WHERE rev > $1")? {
            let id: String = row.get(0);
            let schedule = match row.get::<_, Option<&str>>(1) {
                Some(body) => Some(
                    serde_json::from_str::<StoredSchedule>(body)
                        .context("a schedule row")?
                        .into_schedule()?,
                ),
                None => None,
            };
            state.apply_schedule(&id, schedule);
        }
        for row in self.query(
            "SELECT id, schedule_id, import_source_id, nominal_time, attempt, state, lease_owner, lease_until,
                    execution_id, reason, claimed_at, ended_at, alive_until FROM occurrences WHERE rev > $1",
        )? {
            let name: String = row.get(5);
            let entry = LedgerEntry {
                occurrence_id: row.get(0),
                schedule_id: row.get(1),
                import_source_id: row.get(2),
                nominal_time: row.get(3),
                attempt: row.get::<_, i64>(4) as u32,
                state: OccurrenceState::from_name(&name)
                    .with_context(|| format!("an occurrence has unknown state {name:?}"))?,
                lease_owner: row.get(6),
                lease_until: row.get(7),
                alive_until: row.get(12),
                execution_id: row.get(8),
                reason: row.get(9),
                claimed_at: row.get(10),
                ended_at: row.get(11),
            };
            if fresh {
                state.restore_occurrence(entry);
            } else {
                state.apply_occurrence(entry);
            }
        }
        Ok(())
    }
}

/// Makes the shared history dense again if rows are missing (a restored
/// backup, a hand edit), as `db::repair_history` does for SQLite at start:
/// the lines left are renumbered in order, and an execution whose line is
/// gone gets a rebuilt one that says so, every row touched stamped `rev`.
/// Runs in the caller's transaction, under the `meta` row lock. Returns
/// whether anything was repaired; a history without gaps is not touched.
fn repair_history(conn: &mut Link, rev: i64) -> anyhow::Result<bool> {
    let indices: Vec<i64> = conn
        .query("SELECT idx FROM history ORDER BY idx", &[])?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Read before the renumbering, which may give their old numbers to
    // other lines.
    let orphans = conn.query(
        "SELECT e.id, e.source_id, e.scheduled, e.status,
                (SELECT COUNT(*) FROM objects o WHERE o.execution_id = e.id)
         FROM executions e WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.idx = e.history_index)
         ORDER BY e.history_index, e.id",
        &[],
    )?;
    let dense = indices.iter().enumerate().all(|(i, &idx)| i as i64 == idx);
    if dense && orphans.is_empty() {
        return Ok(false);
    }
    tracing::warn!(
        lines = indices.len(),
        rebuilt = orphans.len(),
        "the shared history has missing rows; renumbering it and rebuilding the lines of executions that lost theirs"
    );
    // Every number in use — each line's, and each orphan's old one, so a
    // rebuilt line takes its execution's old place in the order and the
    // latest execution stays the latest — ranked, then both tables moved to
    // the ranks (through negative numbers, so none meets an old one).
    conn.client.batch_execute(
        "CREATE TEMP TABLE renumbered ON COMMIT DROP AS
             SELECT old, row_number() OVER (ORDER BY old) - 1 AS new FROM (
                 SELECT idx AS old FROM history
                 UNION
                 SELECT e.history_index FROM executions e
                     WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.idx = e.history_index)
             ) slots",
    )?;
    conn.client.execute(
        "UPDATE executions e SET history_index = -1 - r.new, rev = $1 FROM renumbered r WHERE e.history_index = r.old",
        &[&rev],
    )?;
    conn.client.execute(
        "UPDATE history h SET idx = -1 - r.new, rev = $1 FROM renumbered r WHERE h.idx = r.old",
        &[&rev],
    )?;
    conn.client.batch_execute(
        "UPDATE history SET idx = -1 - idx WHERE idx < 0;
         UPDATE executions SET history_index = -1 - history_index WHERE history_index < 0;
         DROP TABLE renumbered;",
    )?;
    let now = Utc::now();
    for row in &orphans {
        let id: String = row.get(0);
        let objects: i64 = row.get(4);
        let line = crate::db::rebuilt_line(
            &id,
            row.get(1),
            row.get(2),
            row.get(3),
            objects as u64,
            "when a node read the whole state",
            now,
        )?;
        conn.execute(
            "INSERT INTO history (idx, body, rev) SELECT history_index, $2, $3 FROM executions WHERE id = $1",
            &[&id, &serde_json::to_string(&line)?, &rev],
        )?;
    }
    Ok(true)
}

/// Reads the whole state.
fn load(conn: &mut Link) -> anyhow::Result<State> {
    let mut state = State::default();
    Rows { conn, since: -1 }.into_state(&mut state, true)?;
    Ok(state)
}

/// Brings `state` up to date with the rows written after revision `seen`.
fn apply_since(conn: &mut Link, state: &mut State, seen: i64) -> anyhow::Result<()> {
    Rows { conn, since: seen }.into_state(state, false)
}

/// Brings `state` from revision `seen` (`None`: nothing) up to what is
/// committed, without a lock; returns the revision and the shared clock
/// it reflects.
fn read_since(
    reader: &mut Link,
    state: &mut State,
    seen: Option<Seen>,
) -> anyhow::Result<(Seen, Option<DateTime<Utc>>)> {
    let asked = seen.as_ref().map_or(-1, |s| s.rev);
    // The revision, its token, and the token the database now holds for
    // the revision this node read.
    let meta = |reader: &mut Link| {
        let rows = reader.query(
            "SELECT m.rev, m.virtual_now, m.reload_from, (SELECT token FROM revisions WHERE rev = m.rev),
                    (SELECT token FROM revisions WHERE rev = $1)
             FROM meta m WHERE m.id = 1",
            &[&asked],
        )?;
        let row = rows.first().context("the meta row is missing")?;
        anyhow::Ok((
            row.get::<_, i64>(0),
            row.get::<_, Option<DateTime<Utc>>>(1),
            row.get::<_, i64>(2),
            row.get::<_, Option<String>>(3),
            row.get::<_, Option<String>>(4),
        ))
    };
    // Most reads find nothing new: one statement, no transaction.
    let (rev, clock, _, _, token_of_seen) = meta(reader)?;
    let seen = still_ours(seen, token_of_seen.as_deref(), rev);
    if let Some(seen) = seen.clone().filter(|s| s.rev == rev) {
        return Ok((seen, clock));
    }
    // Every row a commit wrote, or none of them: one snapshot, and the
    // revision it holds read inside it (changes commit one at a time, each
    // stamping the next revision, so the snapshot shows exactly the
    // revisions up to the one it reads).
    reader
        .client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    let read = (|| {
        let (rev, clock, reload_from, token, token_of_seen) = meta(reader)?;
        match still_ours(seen, token_of_seen.as_deref(), rev) {
            Some(seen) if seen.rev >= reload_from => apply_since(reader, state, seen.rev)?,
            // Never read, renumbered since (a repair, made by a change), or
            // gone back (see `still_ours`).
            _ => *state = load(reader)?,
        }
        reader.client.batch_execute("COMMIT")?;
        anyhow::Ok((Seen::new(rev, token), clock))
    })();
    if read.is_err() {
        // The connection goes back to the pool: never inside this
        // read-only snapshot, where the next user would see old rows and
        // fail every write.
        let _ = reader.client.batch_execute("ROLLBACK");
    }
    read
}

/// The token of revision `rev`, if it is still kept.
fn token_of(conn: &mut Link, rev: i64) -> anyhow::Result<Option<String>> {
    let rows = conn.query("SELECT token FROM revisions WHERE rev = $1", &[&rev])?;
    Ok(rows.first().map(|row| row.get(0)))
}

/// Makes revision `rev` the database's, in the change that makes it, in
/// one statement (one round trip of each change, not three): `meta.rev`
/// (with `reload_from`, when every node is to read the state whole again;
/// and the virtual clock moved to `moved`, if later), a new random token for
/// it, and the token that falls out of the last [`REVISIONS_KEPT`]
/// forgotten. Returns the token.
fn stamp_revision(conn: &mut Link, rev: i64, moved: Option<DateTime<Utc>>, reload: bool) -> anyhow::Result<String> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    conn.execute(
        "WITH meta_row AS (
             UPDATE meta SET rev = $1, virtual_now = GREATEST(virtual_now, $3),
                             reload_from = CASE WHEN $4 THEN $1 ELSE reload_from END
             WHERE id = 1),
         forgotten AS (DELETE FROM revisions WHERE rev <= $5)
         INSERT INTO revisions (rev, token) VALUES ($1, $2) ON CONFLICT (rev) DO UPDATE SET token = EXCLUDED.token",
        &[&rev, &token, &moved, &reload, &(rev - REVISIONS_KEPT)],
    )?;
    Ok(token)
}

/// One app's storage rows in PostgreSQL, written through and read through:
/// a re-delivery on another node must see the occurrence record this node
/// wrote, or it would start a second run.
pub struct PgAppRows {
    store: Arc<PgStore>,
    app: String,
}

impl PgAppRows {
    /// The rows of `app` in `store`.
    pub fn new(store: Arc<PgStore>, app: impl Into<String>) -> PgAppRows {
        PgAppRows { store, app: app.into() }
    }
}

impl StorageBacking for PgAppRows {
    fn put(&self, key: &str, value: Option<&str>) -> Result<(), String> {
        let result = self.store.conn().and_then(|mut conn| {
            match value {
                Some(value) => conn.execute(
                    "INSERT INTO app_storage (app, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (app, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&self.app, &key, &value],
                ),
                None => conn.execute(
                    "DELETE FROM app_storage WHERE app = $1 AND key = $2",
                    &[&self.app, &key],
                ),
            }?;
            Ok(())
        });
        result.map_err(|e| format!("app storage could not be saved: {e:#}"))
    }

    fn read(&self, key: &str) -> Option<Result<Option<String>, String>> {
        let result = self.store.conn().and_then(|mut conn| {
            Ok(conn
                .query_opt(
                    "SELECT value FROM app_storage WHERE app = $1 AND key = $2",
                    &[&self.app, &key],
                )?
                .map(|row| row.get(0)))
        });
        Some(result.map_err(|e| format!("app storage could not be read: {e:#}")))
    }
}

/// The callback replay record shared by every node: a signature accepted
/// on one node is refused as a replay on all of them.
pub struct PgReplays(pub Arc<PgStore>);

impl ReplayRecord for PgReplays {
    fn first_time(&self, signature: &str, signed_at: i64, tolerance_secs: i64) -> Result<bool, String> {
        let result = self.0.conn().and_then(|mut conn| {
            let until = DateTime::<Utc>::from_timestamp(signed_at + tolerance_secs, 0).unwrap_or_default();
            conn.execute("DELETE FROM callbacks_seen WHERE seen_until < now()", &[])?;
            Ok(conn.execute(
                "INSERT INTO callbacks_seen (signature, seen_until) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&signature, &until],
            )? == 1)
        });
        result.map_err(|e| format!("the replay record could not be checked: {e:#}"))
    }
}
