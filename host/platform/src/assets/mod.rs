//! An in-process mock of the Assets import API, faithful to the seed.
//!
//! One request router (`method + path + body → response`) serves every
//! endpoint, so the same mock answers in-process calls from the sandbox and,
//! later, real HTTP. Parts:
//!
//! - [`model`]: the state (workspaces, import sources, executions, objects,
//!   import history) and the lifecycle rules.
//! - [`import_source`]: import sources and their kinds.
//! - [`ledger`]: the occurrence ledger: what became of each occurrence.
//! - [`journal`]: every fenced write to an occurrence, who made it, and
//!   whether it took effect.
//! - [`schedule`]: a schedule, its validation and its bookkeeping.
//! - [`router`]: paths and methods to handlers; [`schedules`] handles the
//!   import-schedule resource.
//! - [`body`]: typed request bodies with errors that name the field.
//! - [`error`]: the JSON error answers.
//!
//! Dependencies point one way: `router → schedules → model → schedule →
//! import_source`. A durable copy of the state is a [`StateStore`] (serve
//! mode's SQLite lives in `assets-server`).

pub mod body;
pub mod error;
pub mod import_source;
pub mod journal;
pub mod ledger;
pub mod mapping;
pub mod model;
pub mod router;
pub mod schedule;
pub mod schedules;

pub use error::ApiError;
pub use model::{
    fit_reason, Changes, Delivery, ExecutionStatus, HistoryEntry, ImportSource, Outcome, SourceType, State,
};

use crate::clock::Clock;
use assets_runtime::bindings::assets_api;
use assets_runtime::{method_name, ApiPath, AssetsBackend};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

/// Base URL the mock writes into `links` when none is given.
pub const DEFAULT_BASE_URL: &str = "http://assets.local";

/// An API answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// JSON body text, empty for none.
    pub body: String,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: &impl Serialize) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_string(body).expect("API bodies serialize"),
        }
    }
}

impl From<Response> for assets_api::Response {
    fn from(r: Response) -> assets_api::Response {
        assets_api::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

/// Where the state is kept beyond the process, and its truth: a store
/// writes the rows a call changed before the call is answered, and when a
/// write fails the in-memory copy is read back from it, so memory never
/// runs ahead of what is stored.
pub trait StateStore: Send + Sync {
    /// Writes the rows `changes` names, as they are in `state`, at once (one
    /// transaction); an error means nothing of it may be acknowledged.
    fn save(&self, state: &State, changes: Changes) -> anyhow::Result<()>;

    /// Reads the whole state back, as stored.
    fn load(&self) -> anyhow::Result<State>;

    /// `state` holds a change that is not stored (its save failed, or it
    /// was made on a state the store could not bring up to date): undo it.
    /// Called under the state lock, before anyone else can read `state`.
    /// By default `state` is read back whole; a store that brings its cache
    /// up to date on every look may instead make the next look read
    /// everything (so the cache is replaced from one snapshot).
    fn discard(&self, state: &mut State) {
        match self.load() {
            Ok(mut stored) => {
                stored.track_changes();
                *state = stored;
            }
            Err(reload) => tracing::error!("state not read back after a failed save: {reload:#}"),
        }
    }

    /// Called as the state lock is taken, before anyone reads the state. A
    /// store shared by several hosts brings `state` up to what they wrote
    /// and holds their changes off until [`StateStore::save`] or
    /// [`StateStore::release`]; a store only this process writes has
    /// nothing to do. An error means the state may be behind the store:
    /// nothing decided on it may be saved.
    fn begin(&self, _state: &mut State) -> anyhow::Result<()> {
        Ok(())
    }

    /// Ends what [`StateStore::begin`] started when nothing changed.
    fn release(&self) {}

    /// Called before the state lock is taken for a change: a store shared
    /// by several hosts holds their changes off from here until
    /// [`StateStore::save`] or [`StateStore::release`] (then
    /// [`StateStore::begin`] reads what they wrote). Taken before this
    /// host's own state lock, so that while it waits for another host
    /// nothing on this one is held but the other changes: reads go on. An
    /// error means the change cannot be made now; `begin` is not called
    /// and nothing is saved.
    fn lock(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Brings `state` up to what is stored without holding anyone off: for
    /// a read, which changes nothing and so needs no lock. Called under
    /// this host's state lock. An error means `state` may be behind the
    /// store: the read is answered 503.
    fn refresh(&self, _state: &mut State) -> anyhow::Result<()> {
        Ok(())
    }

    /// Up to `limit` journal entries with a sequence number above `after`,
    /// oldest first, as stored ([`journal`]).
    fn journal(&self, after: i64, limit: usize) -> anyhow::Result<journal::JournalPage>;
}

thread_local! {
    /// Set when a change made on this thread could not be saved; the call
    /// being answered on it gets 503 instead of an acknowledgement.
    static UNSAVED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How much one caller may make the service keep: bounds on what an app, or
/// a holder of one import source's token, can grow the server's memory and
/// disk by, or hold its state lock for. Each refusal is a 413
/// `LIMIT_EXCEEDED` naming the limit and its figure (a single object over
/// [`Quotas::object_bytes`] is a 400 naming the object). [`Quotas::default`]
/// has the figures for a local platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Largest `PUT …/executions/{id}/progress` body kept, in bytes as sent:
    /// the progress stays in the history line for ever.
    pub progress_bytes: usize,
    /// Most objects one execution may hold, counted as distinct (object
    /// type, external id) pairs; see [`State::add_objects`].
    pub objects_per_execution: u64,
    /// Most bytes of JSON one `GET …/history` page body may hold: a page
    /// ends before the entry that would take it over (it always holds at
    /// least one) and gives the next cursor.
    pub history_page_bytes: usize,
    /// Largest schema-and-mapping document (`PUT|PATCH …/mapping` body), in
    /// bytes as sent. Default 1 MiB: the reference app's document is under
    /// 6 KB, and checking a document costs time in proportion to its size
    /// (the document is kept, and read again for every real-form chunk).
    pub mapping_bytes: usize,
    /// Most chunks one execution may accept, empty ones included. Default
    /// 100,000 (100 million objects at the guest's default 1,000 a chunk):
    /// every accepted chunk costs a count and, with a `clientGeneratedId`,
    /// up to [`model::MAX_CLIENT_GENERATED_ID_BYTES`] kept in memory while
    /// the execution ingests and on disk for ever, however few objects it
    /// carries.
    pub chunks_per_execution: u32,
    /// Most bytes one ingesting execution may hold, counted as the lengths
    /// of its objects' strings (external id, label, attribute keys and
    /// values): the memory the mock keeps for it until it ends. Default
    /// 1 GiB; [`Quotas::objects_per_execution`] alone let 100 objects of
    /// 8 MB each through.
    pub execution_bytes: u64,
    /// Largest single object, counted as for [`Quotas::execution_bytes`].
    /// Default 1 MiB: an object is one asset (a label, some attributes),
    /// never a file.
    pub object_bytes: usize,
}

impl Default for Quotas {
    /// 4 KiB of progress, five million objects per execution (the mock
    /// holds an ingesting execution's objects in memory), 1 MiB history
    /// pages, 1 MiB mapping documents, 100,000 chunks and 1 GiB of object
    /// strings per execution, 1 MiB per object.
    fn default() -> Quotas {
        Quotas {
            progress_bytes: 4096,
            objects_per_execution: 5_000_000,
            history_page_bytes: 1 << 20,
            mapping_bytes: 1 << 20,
            chunks_per_execution: 100_000,
            execution_bytes: 1 << 30,
            object_bytes: 1 << 20,
        }
    }
}

/// The mock Assets service: its state behind a lock, a clock for timestamps,
/// and the base URL its links point at.
pub struct AssetsService {
    state: Mutex<State>,
    /// Held by [`AssetsService::state`] from before the store's lock until
    /// the change is saved, so this host asks the store for one at a time.
    turn: Mutex<()>,
    quotas: Quotas,
    clock: Arc<dyn Clock>,
    /// Real time as every host of the state agrees on it: what run
    /// heartbeats are stamped and read with ([`Self::wall_now`]).
    wall: Arc<dyn Clock>,
    base_url: String,
    credential: Option<String>,
    store: Option<Arc<dyn StateStore>>,
    callback_targets: Option<Arc<dyn CallbackTargets>>,
    /// Run once, by the next mapping change, between its lock-free check and
    /// taking the lock to store it: the seam a test uses to change the
    /// document exactly there, instead of racing a writer against the check.
    after_mapping_check: Mutex<Option<MappingHook>>,
}

/// See [`AssetsService::after_next_mapping_check`].
type MappingHook = Box<dyn FnOnce(&AssetsService) + Send>;

/// Which callback URLs a schedule may name: the operator's policy, checked
/// when a schedule is created or its `callbackUrl` changes, and again before
/// every callback is sent. Without one, any absolute http(s) URL will do
/// (the in-process platform sends nothing over the network).
pub trait CallbackTargets: Send + Sync {
    /// `Ok` when the platform may call `url` for `source`'s schedule; else
    /// why not, in words a person can act on.
    fn check(&self, source: &ImportSource, url: &str) -> Result<(), String>;
}

/// The locked state. Dropping it writes what changed to the durable store,
/// if there is one, before anyone else can see the change.
pub struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    service: &'a AssetsService,
    /// Why the store could not bring the state up to date, if it could not:
    /// then nothing changed under this guard is saved.
    stale: Option<String>,
    /// This host's turn to change the state, held until the change is
    /// saved: one change at a time per host, as per cluster.
    _turn: MutexGuard<'a, ()>,
}

/// The state as stored, for a read: it cannot be changed through this
/// guard, taking it holds no other host off, and there is none for a state
/// the store could not bring up to date ([`AssetsService::read`]).
pub struct ReadGuard<'a> {
    guard: MutexGuard<'a, State>,
}

impl Deref for ReadGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        HOLDING.with(|held| held.set(false));
    }
}

impl Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl StateGuard<'_> {
    /// Saves what changed now and says whether it worked: for callers that
    /// act on a change only once it is stored (the scheduler's claims).
    /// After an error the state is as stored, without the change.
    pub fn commit(mut self) -> anyhow::Result<()> {
        self.save()
    }

    /// 503 when the store could not bring the state up to date (a shared
    /// database out of reach): for callers outside
    /// [`AssetsService::handle`] that answer from the state.
    pub fn current(&self) -> Result<(), ApiError> {
        match self.stale {
            Some(_) => Err(ApiError::not_saved()),
            None => Ok(()),
        }
    }

    fn save(&mut self) -> anyhow::Result<()> {
        let Some(store) = &self.service.store else {
            return Ok(());
        };
        let changes = self.guard.take_changes();
        if let Some(why) = self.stale.take() {
            // Read or decided on a state that may be behind the store: the
            // caller gets 503, nothing is saved, and what was changed on
            // it is undone before the next reader could see it.
            UNSAVED.with(|flag| flag.set(true));
            drop(changes);
            store.discard(&mut self.guard);
            return Err(anyhow::anyhow!("not saved: {why}"));
        }
        if changes.is_empty() {
            store.release();
            return Ok(());
        }
        let executions: Vec<String> = changes.executions.iter().cloned().collect();
        let Err(e) = store.save(&self.guard, changes) else {
            // Stored: an ended execution's objects live on disk only.
            self.guard.evict_objects(&executions);
            return Ok(());
        };
        tracing::error!("state not saved: {e:#}");
        UNSAVED.with(|flag| flag.set(true));
        // The database is the truth: drop the unsaved change from memory.
        store.discard(&mut self.guard);
        Err(e)
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let _ = self.save();
        HOLDING.with(|held| held.set(false));
    }
}

thread_local! {
    /// Set while this thread holds the state lock (a [`StateGuard`] lives).
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while this thread holds the state lock: for work that must never
/// run under it (it would hold every other caller), to assert so.
pub fn holding_state_lock() -> bool {
    HOLDING.with(|held| held.get())
}

impl AssetsService {
    /// An empty service whose timestamps come from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> AssetsService {
        AssetsService {
            state: Mutex::new(State::default()),
            turn: Mutex::new(()),
            quotas: Quotas::default(),
            clock,
            wall: Arc::new(crate::clock::SystemClock),
            base_url: DEFAULT_BASE_URL.to_owned(),
            credential: None,
            store: None,
            callback_targets: None,
            after_mapping_check: Mutex::new(None),
        }
    }

    /// Runs `hook` once, in the next `PUT`/`PATCH …/mapping`, after its
    /// document is checked and before the lock is taken to store it (for
    /// tests of what happens when the document changes in between; the
    /// hook may call the service).
    #[doc(hidden)]
    pub fn after_next_mapping_check(&self, hook: impl FnOnce(&AssetsService) + Send + 'static) {
        *self.after_mapping_check.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }

    /// The hook [`Self::after_next_mapping_check`] set, taken so it runs once.
    pub(crate) fn run_after_mapping_check(&self) {
        let hook = self
            .after_mapping_check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(hook) = hook {
            hook(self);
        }
    }

    /// Bounds what one caller may make the service keep (see [`Quotas`]);
    /// without it, [`Quotas::default`].
    pub fn with_quotas(mut self, quotas: Quotas) -> AssetsService {
        self.quotas = quotas;
        self
    }

    /// The quotas the service enforces.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Checks every schedule's `callbackUrl` against `targets`.
    pub fn with_callback_targets(mut self, targets: Arc<dyn CallbackTargets>) -> AssetsService {
        self.callback_targets = Some(targets);
        self
    }

    /// The callback-target policy, if one is set.
    pub fn callback_targets(&self) -> Option<&dyn CallbackTargets> {
        self.callback_targets.as_deref()
    }

    /// Keeps the state in `store`, starting from `state` (as the store read
    /// it): every change is saved before the lock that made it is released.
    pub fn with_store(mut self, store: Arc<dyn StateStore>, mut state: State) -> AssetsService {
        state.track_changes();
        self.state = Mutex::new(state);
        self.store = Some(store);
        self
    }

    /// Tells real time by `wall` ([`Self::wall_now`]): on several nodes,
    /// the shared database's time.
    pub fn with_wall_clock(mut self, wall: Arc<dyn Clock>) -> AssetsService {
        self.wall = wall;
        self
    }

    /// Requires `Authorization: Bearer {token}` on requests that come
    /// through [`AssetsService::handle_authorized`].
    pub fn with_credential(mut self, token: impl Into<String>) -> AssetsService {
        self.credential = Some(token.into());
        self
    }

    /// The token this service requires, if any. Host-side only: the platform
    /// uses it to authenticate the calls apps make through it.
    pub fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// Answers a request that must prove it may call the API: when the
    /// service has a credential, `authorization` must be `Bearer {token}`,
    /// else the answer is 401.
    pub fn handle_authorized(&self, method: &str, path: &str, authorization: Option<&str>, body: &[u8]) -> Response {
        self.handle_for(method, path, authorization, body, None)
    }

    /// [`AssetsService::handle_authorized`] for a call made by the app of
    /// `delivery`, when there is one: the platform's word on who calls,
    /// which marks the executions the call creates and fences the writes it
    /// makes to executions ([`State::may_write`]).
    pub fn handle_for(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
        delivery: Option<&Delivery>,
    ) -> Response {
        match self.caller(path, authorization) {
            Ok(Some(_)) => self.answer(method, path, body, delivery),
            Ok(None) => ApiError::unauthorized().into_response(),
            // A source token is judged on the sources as stored, never on
            // a cache that may hold one since revoked or miss a new one.
            Err(unread) => unread.into_response(),
        }
    }

    /// True when `authorization` may call `path`: no credential is set, or
    /// it presents the service's credential or the token of the import
    /// source `path` is under. Needs no body, so a server can refuse before
    /// reading one. Compared in constant time.
    /// A state that cannot be read does not refuse here: the call itself
    /// is then answered 503.
    pub fn authorizes(&self, path: &str, authorization: Option<&str>) -> bool {
        !matches!(self.caller(path, authorization), Ok(None))
    }

    /// Who `authorization` proves the caller of `path` to be, or `None`
    /// (401); `Err` (503) when a source token cannot be checked against
    /// the state as stored. The path is read as the router reads it
    /// ([`router::source_of`]), so a token is judged on the source the
    /// request will reach.
    pub fn caller(&self, path: &str, authorization: Option<&str>) -> Result<Option<Caller>, ApiError> {
        let Some(token) = &self.credential else {
            return Ok(Some(Caller::Platform));
        };
        let Some(presented) = authorization.and_then(bearer_token) else {
            return Ok(None);
        };
        if same_secret(presented, token) {
            return Ok(Some(Caller::Platform));
        }
        // Only a token of the form `POST …/token` gives out is looked up:
        // garbage from a stranger never takes the state lock.
        if !looks_like_source_token(presented) {
            return Ok(None);
        }
        let Some((workspace, source)) = router::source_of(path) else {
            return Ok(None);
        };
        let state = self.read()?;
        let fits = state
            .source(workspace, source)
            .is_ok_and(|s| s.token.as_deref().is_some_and(|t| same_secret(t, presented)));
        Ok(fits.then(|| Caller::Source(source.to_owned())))
    }

    /// Sets the base URL written into `links` (the server's own address when
    /// served over HTTP).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> AssetsService {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Answers one request from a trusted caller (the host itself, tests).
    /// `path` is the full path, e.g.
    /// `/jsm/assets/workspace/{ws}/v1/importsource/{id}/executions`.
    pub fn handle(&self, method: &str, path: &str, body: &[u8]) -> Response {
        self.answer(method, path, body, None)
    }

    fn answer(&self, method: &str, path: &str, body: &[u8], delivery: Option<&Delivery>) -> Response {
        UNSAVED.with(|flag| flag.set(false));
        let response = router::route(self, method, path, body, delivery).unwrap_or_else(ApiError::into_response);
        if UNSAVED.with(|flag| flag.replace(false)) {
            // A server fault, not the client's: say so rather than
            // acknowledge a change that is not on disk.
            let mut refusal = ApiError::not_saved().into_response();
            if method.eq_ignore_ascii_case("HEAD") {
                refusal.body.clear();
            }
            return refusal;
        }
        response
    }

    /// Creates a workspace and returns its id.
    pub fn create_workspace(&self) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.state().add_workspace(id.clone());
        id
    }

    /// Creates an import source in `workspace_id` and returns its id.
    pub fn create_import_source(
        &self,
        workspace_id: &str,
        source_type: SourceType,
        app: Option<String>,
    ) -> Result<String, ApiError> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut source = ImportSource::new(id.clone(), workspace_id.to_owned(), source_type, app);
        // Every external source can be called back, so every one can be
        // signed for: no callback is ever sent unsigned.
        if source_type == SourceType::External {
            source.signing_secret = Some(new_secret());
        }
        let mut state = self.state();
        state.add_source(source)?;
        // Outside `handle`, so say it here: a source that is not stored
        // does not exist.
        state.commit().map_err(|_| ApiError::not_saved())?;
        Ok(id)
    }

    /// Makes `source_id` follow the real API's rule for sources fed with
    /// real-form chunks: no execution until a schema-and-mapping document
    /// is set (`MISSING_MAPPING`).
    pub fn require_mapping(&self, source_id: &str) -> Result<(), ApiError> {
        let mut state = self.state();
        state.source_mut(source_id)?.requires_mapping = true;
        state.commit().map_err(|_| ApiError::not_saved())
    }

    /// Up to `limit` journal entries after sequence number `after`, oldest
    /// first ([`journal`]): read from the durable store when there is one
    /// (a node keeps none in memory), else from the in-memory mock's.
    pub fn journal_page(&self, after: i64, limit: usize) -> anyhow::Result<journal::JournalPage> {
        match &self.store {
            // Whatever this node wrote and has not saved yet is saved when
            // the state lock that wrote it was released; no lock is needed
            // to read what is stored.
            Some(store) => store.journal(after, limit),
            None => Ok(self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .journal_page(after, limit)),
        }
    }

    /// The import history of `source_id`, oldest first.
    pub fn history(&self, source_id: &str) -> Result<Vec<HistoryEntry>, ApiError> {
        Ok(self.read()?.history(source_id))
    }

    /// Records a failure for execution `execution_id` of `source_id`, if it
    /// is still the one ingesting there, on behalf of whoever decided it
    /// was left running (a node's start-up). True when it was failed.
    pub fn fail_ingesting(&self, source_id: &str, execution_id: &str, reason: &str, by: &journal::Writer) -> bool {
        let now = self.clock.now();
        let mut state = self.state();
        if state.ingesting(source_id).is_none_or(|e| e.id != execution_id) {
            return false;
        }
        let reason = model::fit_reason(reason);
        state.fail(source_id, execution_id, reason, now, by).is_ok()
    }

    /// The reaper's write: fails scheduled execution `execution_id` of
    /// `source_id` as abandoned, only if — under the lock the write is made
    /// under — it is still the one ingesting there and its run's heartbeat
    /// has lapsed at `wall_now`. What the reaper decided on a read is
    /// checked again here, so a run that ended meanwhile, a manual run or
    /// the next delivery's live run in its place is never failed. The
    /// journal names the heartbeat as it stood then. True when it was
    /// failed.
    pub fn reap(&self, source_id: &str, execution_id: &str, reason: &str, node: &str, wall_now: DateTime<Utc>) -> bool {
        let now = self.clock.now();
        let mut state = self.state();
        let Some(execution) = state
            .ingesting(source_id)
            .filter(|e| e.id == execution_id && e.scheduled)
        else {
            return false;
        };
        let beat = state
            .history_of(&execution.id)
            .and_then(|line| line.occurrence_id.as_deref())
            .and_then(|o| state.occurrence(o))
            .and_then(|entry| entry.alive_until);
        if beat.is_some_and(|until| until > wall_now) {
            return false;
        }
        let by = journal::Writer::Reaper {
            node: node.to_owned(),
            heartbeat_until: beat,
            lapsed_at: Some(wall_now),
        };
        let reason = model::fit_reason(reason);
        state.fail(source_id, execution_id, reason, now, &by).is_ok()
    }

    /// Records a failure, on the app's behalf, for the execution of
    /// `source_id` still ingesting that `delivery` owns (the app trapped,
    /// timed out, or returned without ending it). Returns the execution id,
    /// or `None` when that delivery left none ingesting: another
    /// delivery's execution is never its to fail.
    pub fn fail_created_by(&self, source_id: &str, delivery: &model::Delivery, reason: &str) -> Option<String> {
        let now = self.clock.now();
        let mut state = self.state();
        let id = state.ingesting_created_by(source_id, delivery)?.id.clone();
        let reason = model::fit_reason(reason);
        let by = journal::Writer::of(Some(delivery));
        state.fail(source_id, &id, reason, now, &by).ok()?;
        Some(id)
    }

    /// Change the state (or read it to decide a change), for the platform's
    /// own bookkeeping and for tests: one change at a time across every
    /// host of the store. What is changed is saved when the guard drops.
    pub fn state(&self) -> StateGuard<'_> {
        // A panic while holding the lock would be a bug in the mock; the state
        // is still consistent at every await-free step, so keep serving.
        let turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        // The store's lock first, this host's state lock after: while this
        // change waits for another host's, reads here go on.
        let locked = match &self.store {
            Some(store) => store.lock(),
            None => Ok(()),
        };
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        HOLDING.with(|held| held.set(true));
        let stale = match (&self.store, locked) {
            (Some(store), Ok(())) => store.begin(&mut guard).err(),
            (_, Err(e)) => Some(e),
            (None, Ok(())) => None,
        }
        .map(|e| {
            tracing::error!("{e:#}");
            format!("{e:#}")
        });
        StateGuard {
            guard,
            service: self,
            stale,
            _turn: turn,
        }
    }

    /// Read the state, as stored: takes no lock any other host waits on,
    /// so a host that holds its changes (paused, cut off) holds no read
    /// here. `Err` (503) when the store could not bring the state up to
    /// date: nothing is read from a state that may be behind it.
    pub fn read(&self) -> Result<ReadGuard<'_>, ApiError> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &self.store {
            if let Err(e) = store.refresh(&mut guard) {
                tracing::error!("{e:#}");
                return Err(ApiError::not_saved());
            }
        }
        HOLDING.with(|held| held.set(true));
        Ok(ReadGuard { guard })
    }

    /// The service's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Real time, as every host of the state agrees on it: the machine's
    /// clock by default, the shared database's on several nodes
    /// ([`Self::with_wall_clock`]). Run heartbeats are stamped and read with
    /// it — never with the service's clock, which a virtual one jumps, and
    /// never with a node's own, which may run fast and find live runs'
    /// heartbeats lapsed.
    pub fn wall_now(&self) -> DateTime<Utc> {
        self.wall.now()
    }

    /// The base URL written into links.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// The in-process Assets API as an app's [`AssetsBackend`], called with the
/// platform's credential.
pub struct InProcessAssets {
    service: Arc<AssetsService>,
    authorization: Option<String>,
}

impl InProcessAssets {
    /// Calls `service` with the credential it requires; the credential stays
    /// here, on the host side of the boundary.
    pub fn new(service: Arc<AssetsService>) -> InProcessAssets {
        let authorization = service.credential().map(|t| format!("Bearer {t}"));
        InProcessAssets { service, authorization }
    }
}

impl AssetsBackend for InProcessAssets {
    fn call(
        &self,
        method: assets_api::Method,
        path: &ApiPath,
        body: Option<&str>,
    ) -> Result<assets_api::Response, assets_api::CallError> {
        self.call_for(method, path, body, None)
    }

    fn call_for(
        &self,
        method: assets_api::Method,
        path: &ApiPath,
        body: Option<&str>,
        delivery: Option<&str>,
    ) -> Result<assets_api::Response, assets_api::CallError> {
        let delivery = match delivery.map(Delivery::parse).transpose() {
            Ok(delivery) => delivery,
            Err(refusal) => return Ok(refusal.into_response().into()),
        };
        let body = body.unwrap_or_default().as_bytes();
        Ok(self
            .service
            .handle_for(
                method_name(method),
                &path.target(),
                self.authorization.as_deref(),
                body,
                delivery.as_ref(),
            )
            .into())
    }
}

/// A fresh 256-bit secret, as 64 hex digits (two v4 UUIDs' worth of the
/// operating system's randomness, less their 12 fixed bits).
pub fn new_secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Compares two secrets in time that does not depend on where they differ,
/// so timing does not leak a token a byte at a time.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

/// Who a request proved itself to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The platform's own credential (or a service that requires none).
    Platform,
    /// The token of this import source: its own endpoints only.
    Source(String),
}

/// The token of an `Authorization: Bearer <token>` header value. The scheme
/// is matched without regard to case and any run of spaces may follow it
/// (RFC 9110 §11.1); the token is one run of non-space characters.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once([' ', '\t'])?;
    let token = token.trim_start_matches([' ', '\t']);
    let plain = !token.is_empty() && !token.contains([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && plain).then_some(token)
}

/// Prefix of the tokens `POST …/token` gives out.
pub const SOURCE_TOKEN_PREFIX: &str = "ist-";

/// True for text of the form of a source token: the prefix, then 32
/// lower-case hex digits.
fn looks_like_source_token(token: &str) -> bool {
    token
        .strip_prefix(SOURCE_TOKEN_PREFIX)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
