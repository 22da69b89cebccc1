//! The scheduling service: turns schedules into runs as time passes.
//!
//! Driven by a [`Clock`](crate::clock::Clock): [`Scheduler::run_due`] handles everything that fell
//! due up to the clock's now; [`Scheduler::run_until`] moves a
//! [`VirtualClock`] from one due time to the next, so a year of schedules
//! runs in well under a second. Rules, in order:
//!
//! - an occurrence a calendar policy dropped is recorded as skipped, with the
//!   policy's sentence;
//! - of the occurrences that fell due since the last look, only the most
//!   recent runs, and only if it is within the catch-up window (default 1 h);
//!   the others are recorded as missed;
//! - if the import source still has an execution ingesting, the occurrence
//!   is skipped with that reason (no overlapping runs);
//! - an external-app source gets its callback: in process, the installed
//!   app's `import-callback` with `scheduled: true`; otherwise a [`Callbacks`]
//!   delivery to the schedule's `callbackUrl` (serve mode: a signed HTTP
//!   POST), where a failed or timed-out callback is a failed history entry;
//!   other source types get the platform's own run;
//! - every occurrence is claimed in the [ledger](crate::assets::ledger)
//!   under the state lock, and the claim is stored before it is acted on,
//!   so none is ever handled twice; a delivery cut by the platform's death
//!   is delivered again (attempt + 1) within the catch-up window, or fails
//!   saying so ([`Scheduler::claim_due`]);
//! - one run of a source at a time: an occurrence due while the previous
//!   one is still delivering or ingesting is skipped with that reason;
//! - every ledger write of a delivery is fenced by the attempt it holds
//!   ([`Claimed`]'s [`Fence`]): once another node has taken the occurrence
//!   over, this one's late end changes nothing.

use crate::assets::journal::Writer;
use crate::assets::ledger::{Fence, LedgerEntry, OccurrenceState, Stale};
use crate::assets::model::{ImportSource, Outcome, SourceType, State};
use crate::assets::schedule::{timestamp, Schedule};
use crate::assets::schedules::unrun_entry;
use crate::assets::ApiError;
use crate::assets::AssetsService;
use crate::clock::VirtualClock;
use crate::trigger::{self, App, RunStatus, TriggerOutcome};
use assets_calendar::{Frequency, Occurrence};
use assets_runtime::bindings::import_callback::TriggerEvent;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// The catch-up window: a run missed by less than this still runs. The
/// schedule API refuses a `ONCE` start older than it.
pub const DEFAULT_CATCH_UP: Duration = crate::assets::schedule::CATCH_UP_WINDOW;

pub use crate::assets::schedule::occurrence_id;

/// How long past its run limit an execution may stay ingesting before the
/// platform fails it on the app's behalf.
pub const STALE_GRACE: Duration = Duration::minutes(5);

/// How often a node running an app's import for an occurrence says the run
/// is alive ([`Heartbeat`]).
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How long each heartbeat holds, in wall-clock time: ten missed beats
/// before a run may be taken for abandoned, so a busy machine is not taken
/// for a dead one, and a dead node's runs are failed within 20 s.
pub const ALIVE_FOR: Duration = Duration::seconds(20);

/// Says, every [`HEARTBEAT_EVERY`] until dropped, that the run of an
/// occurrence's attempt is alive ([`LedgerEntry::renew`], fenced by the
/// attempt): held by whoever invokes the app for a delivery the scheduler
/// no longer tracks itself (serve mode's web trigger, whose run goes on
/// after the callback's answer), so the reaper never fails a run that is
/// still being invoked. Stops by itself once the attempt no longer holds
/// the occurrence.
pub struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    beating: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating for `fence` on `assets` (the first beat at once).
    pub fn start(assets: Arc<AssetsService>, fence: Fence) -> Heartbeat {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let beating = std::thread::Builder::new()
            .name("run-heartbeat".into())
            .spawn(move || loop {
                let renewed = assets.state().renew_occurrence(&fence, assets.wall_now() + ALIVE_FOR);
                if let Err(stale) = renewed {
                    tracing::debug!(%fence, %stale, "the run's heartbeat stops");
                    return;
                }
                match stopped.recv_timeout(HEARTBEAT_EVERY) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })
            .map_err(|e| tracing::error!("cannot start a run's heartbeat: {e}"))
            .ok();
        Heartbeat {
            stop: Some(stop),
            beating,
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(beating) = self.beating.take() {
            let _ = beating.join();
        }
    }
}

/// What happened to one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FiringStatus {
    /// Ran and completed.
    Completed,
    /// Ran and failed (or the callback could not be delivered).
    Failed,
    /// The app was called but created no execution.
    NotStarted,
    /// The callback was accepted; the app reports the run through the API
    /// (a receiver that does not answer with its outcome).
    Delivered,
    /// Not run: a calendar policy dropped it, or a run was still ingesting.
    Skipped,
    /// Not run: it fell due while nothing could run it, outside the catch-up window.
    Missed,
}

/// A scheduler pass whose claims could not be stored: nothing of it was
/// handled.
#[derive(Debug)]
struct NotStored;

/// A clock advance stopped before its end ([`Scheduler::run_until`]).
#[derive(Debug)]
pub struct Halted {
    /// Where the clock stopped: the time of the pass whose claims could not
    /// be stored. Nothing due from then on was handled.
    pub at: DateTime<Utc>,
    /// What was handled before it.
    pub firings: Vec<Firing>,
}

/// One handled occurrence, for timelines and tests.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Firing {
    /// The schedule.
    pub schedule_id: String,
    /// The import source.
    pub import_source_id: String,
    /// The occurrence's stable id.
    pub occurrence_id: String,
    /// Its nominal instant, UTC.
    pub nominal_utc: DateTime<Utc>,
    /// Its local time in the schedule's zone, e.g. `2026-03-08 03:30 EDT`.
    pub local: String,
    /// What happened.
    pub status: FiringStatus,
    /// The execution, when one was created.
    pub execution_id: Option<String>,
    /// Objects imported.
    pub objects: u64,
    /// Why it failed, was skipped or missed.
    pub reason: Option<String>,
    /// The calendar rule that moved or dropped it, if any.
    pub note: Option<String>,
    /// Calls the app retried during the run.
    pub retries: u32,
    /// Times the app was invoked for the run (more than one when it went on
    /// from a checkpoint); 0 when it was not run here.
    pub invocations: u32,
    /// An execution the app itself left ingesting, which the platform then
    /// failed; a correct app leaves none.
    pub left_by_app: Option<String>,
}

/// Delivers scheduled callbacks to apps that do not run in this process.
pub trait Callbacks: Send + Sync {
    /// Calls the callback of `source` (performed by its app) at `url` with
    /// `event`, signed for that source. `Ok(Some(..))` when the
    /// receiver ran the import and answered with its outcome, `Ok(None)`
    /// when it only accepted the call, `Err` with the reason when the call
    /// failed or timed out.
    fn call(&self, source: &ImportSource, url: &str, event: &TriggerEvent) -> Result<Option<TriggerOutcome>, String>;
}

/// The other platform nodes on a shared database: who still holds a lease.
/// Without it, this process is the only one (one server per SQLite file),
/// so any other lease owner is a process that died.
pub trait Peers: Send + Sync {
    /// The nodes whose leases have not run out, by name.
    fn alive(&self) -> anyhow::Result<HashSet<String>>;
}

/// The scheduling service.
pub struct Scheduler {
    assets: Arc<AssetsService>,
    apps: RwLock<HashMap<String, App>>,
    callbacks: Option<Arc<dyn Callbacks>>,
    /// How long an app called back over HTTP may run.
    run_limit: Duration,
    /// This scheduler's name as a lease owner: unique per process.
    node: String,
    /// Occurrences this process is delivering right now.
    active: Mutex<HashSet<String>>,
    /// Callbacks (or in-process runs) this process is making right now: a
    /// claim queued and dropped unsent is not one.
    sending: std::sync::atomic::AtomicUsize,
    /// Occurrences this process has fired (sent the callback of, or run)
    /// that are still delivering: a claim held in this process's name that
    /// it never fired (its commit answer was lost, so it was taken as not
    /// stored) is as orphaned as a dead process's.
    fired: Mutex<HashSet<String>>,
    /// The other nodes, when several share the database.
    peers: Option<Arc<dyn Peers>>,
}

/// How a callback went.
enum Delivery {
    /// The app ran and said how it ended.
    Ran(TriggerOutcome),
    /// The app accepted the callback.
    Accepted,
    /// The callback could not be delivered; why.
    Undelivered(String),
}

/// An occurrence claimed for running: in the ledger as `delivering`, held
/// by this scheduler.
pub struct Claimed {
    schedule: Schedule,
    occurrence: Occurrence,
    /// The occurrence and the attempt this scheduler holds: every ledger
    /// write of the delivery is fenced by it.
    fence: Fence,
}

impl Claimed {
    /// The occurrence's id.
    pub fn occurrence_id(&self) -> &str {
        &self.fence.occurrence_id
    }
}

/// Logs a fenced write that changed nothing because its attempt no longer
/// holds the occurrence; an end that came after the execution's own end is
/// the usual case and says nothing.
fn note_stale(fence: &Fence, what: &str, stale: Stale) {
    if matches!(stale, Stale::Superseded { .. }) {
        tracing::warn!(%fence, %stale, "{what} changed nothing: a later attempt holds the occurrence");
    } else {
        tracing::debug!(%fence, %stale, "{what} changed nothing");
    }
}

impl Scheduler {
    /// A scheduler over `assets`, using its clock.
    pub fn new(assets: Arc<AssetsService>) -> Scheduler {
        Scheduler {
            assets,
            apps: RwLock::new(HashMap::new()),
            callbacks: None,
            run_limit: Duration::from_std(assets_runtime::Limits::default().time).unwrap_or(Duration::MAX),
            node: uuid::Uuid::new_v4().to_string(),
            active: Mutex::new(HashSet::new()),
            sending: std::sync::atomic::AtomicUsize::new(0),
            fired: Mutex::new(HashSet::new()),
            peers: None,
        }
    }

    /// Shares the ledger with other nodes: this scheduler owns its leases as
    /// `node`, and takes over a delivery only when its owner is not among
    /// the living `peers`.
    pub fn with_peers(mut self, node: impl Into<String>, peers: Arc<dyn Peers>) -> Scheduler {
        self.node = node.into();
        self.peers = Some(peers);
        self
    }

    /// This scheduler's name as a lease owner.
    pub fn node(&self) -> &str {
        self.node_name()
    }

    /// This scheduler, as the journal names a writer.
    fn writer(&self) -> Writer {
        Writer::Node {
            node: self.node.clone(),
        }
    }

    /// This scheduler's reaper, failing now a run whose heartbeat said it
    /// was alive until `heartbeat_until` (found lapsed before this call).
    fn reaper(&self, heartbeat_until: Option<DateTime<Utc>>) -> Writer {
        Writer::Reaper {
            node: self.node.clone(),
            heartbeat_until,
            lapsed_at: Some(self.assets.wall_now()),
        }
    }

    fn node_name(&self) -> &str {
        &self.node
    }

    /// How many callbacks (or in-process runs) this process is making right
    /// now: a node stopping keeps its lease until this is 0. A claim queued
    /// and dropped unsent (a stopping delivery pool's) is not counted: it
    /// stays claimed in the ledger and is delivered again.
    pub fn in_flight(&self) -> usize {
        self.sending.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The lease owners other than this one that are alive: none without
    /// peers; `None` when the peers cannot be asked (then nothing is taken
    /// over this pass).
    fn alive_elsewhere(&self) -> Option<HashSet<String>> {
        let Some(peers) = &self.peers else {
            return Some(HashSet::new());
        };
        match peers.alive() {
            Ok(mut alive) => {
                alive.remove(&self.node);
                Some(alive)
            }
            Err(e) => {
                tracing::warn!("cannot tell which nodes are alive, so no delivery is taken over this pass: {e:#}");
                None
            }
        }
    }

    /// Delivers callbacks for sources with no in-process app through `callbacks`.
    pub fn with_callbacks(mut self, callbacks: Arc<dyn Callbacks>) -> Scheduler {
        self.callbacks = Some(callbacks);
        self
    }

    /// The service it schedules for.
    pub fn assets(&self) -> &Arc<AssetsService> {
        &self.assets
    }

    /// Sets how long an app that is called back over HTTP may run (serve
    /// mode's `--run-timeout-secs`); in-process apps have their own limits.
    pub fn with_run_limit(mut self, limit: std::time::Duration) -> Scheduler {
        self.run_limit = Duration::from_std(limit).unwrap_or(Duration::MAX);
        self
    }

    /// How long the app behind `source_id` may run.
    fn run_limit(&self, source_id: &str) -> Duration {
        let installed = self.apps.read().unwrap_or_else(|e| e.into_inner());
        installed
            .get(source_id)
            .and_then(|app| Duration::from_std(app.limits.time).ok())
            .unwrap_or(self.run_limit)
    }

    /// Installs `app` as the one that answers callbacks for `import_source_id`.
    pub fn install(&self, import_source_id: &str, app: App) {
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(import_source_id.to_owned(), app);
    }

    /// The earliest instant at which something is due (a run or a slot to
    /// record), across active schedules; `Err` when the state cannot be
    /// read as stored.
    pub fn next_due(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        let state = self.assets.read()?;
        Ok(state
            .schedules()
            .filter(|s| s.spec.is_active)
            .filter_map(|s| s.rule.occurrences_after(s.handled_until).next().map(|o| o.instant))
            .min())
    }

    /// Handles everything due at the clock's now and returns what happened,
    /// in order of nominal time. Claims that cannot be stored are logged
    /// and tried again on the next call.
    pub fn run_due(&self) -> Vec<Firing> {
        self.try_run_due().unwrap_or_default()
    }

    /// [`Self::run_due`], or `Err` when its claims could not be stored
    /// (nothing was handled).
    fn try_run_due(&self) -> Result<Vec<Firing>, NotStored> {
        let now = self.assets.clock().now();
        let (mut firings, claimed) = self.try_claim_due(now)?;
        firings.extend(self.fire_all(claimed));
        firings.sort_by(|a, b| (a.nominal_utc, &a.schedule_id).cmp(&(b.nominal_utc, &b.schedule_id)));
        Ok(firings)
    }

    /// Moves `clock` from one due time to the next until `end`, handling
    /// each; then leaves the clock at `end`. A pass whose claims cannot be
    /// stored (the database out of reach) stops the advance there: the
    /// clock stays at that pass's time with nothing from it on handled, so
    /// that advancing again delivers what fell due — rather than the clock
    /// running on in memory ahead of the database and what fell due
    /// meanwhile being recorded missed.
    pub fn run_until(&self, clock: &VirtualClock, end: DateTime<Utc>) -> Result<Vec<Firing>, Halted> {
        let mut firings = Vec::new();
        loop {
            let at = crate::clock::Clock::now(clock);
            match self.try_run_due() {
                Ok(handled) => firings.extend(handled),
                Err(NotStored) => return Err(Halted { at, firings }),
            }
            match self.next_due() {
                Ok(Some(due)) if due <= end => clock.set(due),
                Ok(_) => break,
                // Not known what falls due next: the clock stays here.
                Err(_) => return Err(Halted { at, firings }),
            }
        }
        clock.set(end);
        // A shared store publishes the clock as the lock is released.
        drop(self.assets.state());
        Ok(firings)
    }

    /// What is due at `now`, claimed (see [`Self::try_claim_due`]); nothing
    /// when the claims could not be stored, which is logged, and tried
    /// again on the next call.
    pub fn claim_due(&self, now: DateTime<Utc>) -> (Vec<Firing>, Vec<Claimed>) {
        self.try_claim_due(now).unwrap_or_default()
    }

    /// Under the state lock: takes over deliveries whose owner is gone,
    /// expires leases, records skipped and missed occurrences, claims the
    /// ones to run, and moves each schedule past what it handled. Claims go
    /// into the ledger in the same change, so a claim is on disk before any
    /// callback is sent; `Err` when it is not (nothing is to be sent).
    fn try_claim_due(&self, now: DateTime<Utc>) -> Result<(Vec<Firing>, Vec<Claimed>), NotStored> {
        let mut state = self.assets.state();
        let mut firings = Vec::new();
        let mut claimed = self.recover(&mut state, now, &mut firings);
        let due_ids: Vec<String> = state
            .schedules()
            .filter(|s| {
                s.spec.is_active
                    && s.rule
                        .occurrences_after(s.handled_until)
                        .next()
                        .is_some_and(|o| o.instant <= now)
            })
            .map(|s| s.id.clone())
            .collect();
        for id in due_ids {
            let schedule = state.schedule(&id).expect("listed above").clone();
            let due: Vec<Occurrence> = schedule
                .rule
                .occurrences_after(schedule.handled_until)
                .take_while(|o| o.instant <= now)
                .collect();
            let latest_run = due.iter().rposition(|o| o.runs);
            for (i, occurrence) in due.iter().enumerate() {
                let occurrence_id = occurrence_id(&schedule.id, occurrence.instant);
                if state.occurrence(&occurrence_id).is_some() {
                    continue;
                }
                let verdict = if !occurrence.runs {
                    Some((
                        Outcome::Skipped,
                        occurrence
                            .adjustment
                            .as_ref()
                            .map(|a| a.note.clone())
                            .unwrap_or_default(),
                    ))
                } else if Some(i) != latest_run {
                    Some((Outcome::Missed, format!(
                        "missed: fell due at {} while the scheduler was not running; only the most recent missed run is caught up",
                        timestamp(occurrence.instant)
                    )))
                } else if now - occurrence.instant > DEFAULT_CATCH_UP {
                    Some((
                        Outcome::Missed,
                        format!(
                            "missed: fell due at {} and the scheduler resumed at {}, beyond the {} catch-up window",
                            timestamp(occurrence.instant),
                            timestamp(now),
                            human(DEFAULT_CATCH_UP)
                        ),
                    ))
                } else {
                    self.still_running(&mut state, &schedule.import_source_id, now)
                        .map(|reason| (Outcome::Skipped, reason))
                };
                match verdict {
                    Some((outcome, reason)) => {
                        state.end_unrun(
                            unrun_entry(&schedule, occurrence, &occurrence_id, outcome, reason.clone()),
                            &self.writer(),
                        );
                        firings.push(firing(
                            &schedule,
                            occurrence,
                            &occurrence_id,
                            outcome_status(outcome),
                            None,
                            0,
                            Some(reason),
                        ));
                    }
                    None => {
                        let entry = LedgerEntry::claim(
                            occurrence_id.clone(),
                            schedule.id.clone(),
                            schedule.import_source_id.clone(),
                            occurrence.instant,
                            &self.node,
                            now,
                            now + self.lease(&schedule.import_source_id),
                        );
                        let fence = entry.fence();
                        if state.claim_occurrence(entry) {
                            claimed.push(Claimed {
                                schedule: schedule.clone(),
                                occurrence: occurrence.clone(),
                                fence,
                            });
                        }
                    }
                }
            }
            if let (Some(last), Some(s)) = (due.last(), state.schedule_mut(&id)) {
                s.handled_until = last.instant;
                // A ONCE schedule is done when nothing is left: under
                // dstFoldPolicy BOTH its start has a second instant to come.
                if s.spec.frequency == Frequency::Once && s.rule.occurrences_after(last.instant).next().is_none() {
                    s.spec.is_active = false;
                }
            }
        }
        // Marked active while the state is still locked: the commit below
        // releases it, and another pass of this scheduler (another thread)
        // must not find these claims in its name, unfired, and take them
        // for ones whose commit answer was lost.
        let ids: Vec<String> = claimed.iter().map(|c| c.fence.occurrence_id.clone()).collect();
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids.iter().cloned());
        // Nothing is delivered or reported before the claims are stored.
        if let Err(e) = state.commit() {
            tracing::error!("claims not stored, so not delivered; tried again on the next pass: {e:#}");
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            for id in &ids {
                active.remove(id);
            }
            return Err(NotStored);
        }
        Ok((firings, claimed))
    }

    /// How long a claim is held: the app's run limit and the grace period.
    fn lease(&self, source_id: &str) -> Duration {
        self.run_limit(source_id)
            .checked_add(&STALE_GRACE)
            .unwrap_or(Duration::MAX)
    }

    /// Settles the deliveries nobody is working on. One whose owner is
    /// another process (this one holds the database, so that process died)
    /// and that has no execution yet is delivered again — same occurrence
    /// id, next attempt — while within the catch-up window, else it fails
    /// with that reason. One this process delivered, whose app accepted the
    /// callback but created no execution within the lease, fails. One with
    /// an execution ends when its execution does (see [`Self::still_running`]).
    fn recover(&self, state: &mut State, now: DateTime<Utc>, firings: &mut Vec<Firing>) -> Vec<Claimed> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let fired = {
            let mut fired = self.fired.lock().unwrap_or_else(|e| e.into_inner());
            let delivering: HashSet<String> = state.delivering().into_iter().map(|e| e.occurrence_id).collect();
            fired.retain(|id| delivering.contains(id));
            fired.clone()
        };
        let Some(alive) = self.alive_elsewhere() else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let wall_now = self.assets.wall_now();
        for entry in state.delivering() {
            if active.contains(&entry.occurrence_id) {
                continue;
            }
            // A run whose heartbeat has lapsed: the node invoking its app
            // died (a hosted app's run; an app called back elsewhere never
            // beats). It goes on from its checkpoint on its execution when
            // delivered again, within the catch-up window.
            if let Some(execution) = entry
                .execution_id
                .as_ref()
                .filter(|_| entry.alive_until.is_some() && !entry.alive_at(wall_now))
            {
                if let Some(claim) = self.resume(state, &entry, execution, now, firings) {
                    taken.push(claim);
                }
                continue;
            }
            if entry.lease_owner.as_ref().is_some_and(|owner| alive.contains(owner)) {
                continue;
            }
            if let Some(execution) = &entry.execution_id {
                self.reap(state, &entry, execution, now);
                continue;
            }
            let schedule = state.schedule(&entry.schedule_id).cloned();
            let occurrence = schedule.as_ref().and_then(|s| {
                s.rule
                    .occurrences_after(entry.nominal_time - Duration::nanoseconds(1))
                    .next()
                    .filter(|o| o.instant == entry.nominal_time)
            });
            // Another process's (which died), or this one's but never fired:
            // stored by a commit whose answer was lost.
            let orphaned =
                entry.lease_owner.as_deref() != Some(self.node.as_str()) || !fired.contains(&entry.occurrence_id);
            let expired = entry.lease_until.is_none_or(|until| until < now);
            let reason = match (&schedule, &occurrence) {
                (Some(_), Some(_)) if orphaned && now - entry.nominal_time <= DEFAULT_CATCH_UP => None,
                (Some(_), Some(_)) if orphaned => Some(format!(
                    "failed: the platform stopped while delivering the callback (attempt {}) and it is now {}, \
                     beyond the {} catch-up window of the run due at {}; it was not delivered again",
                    entry.attempt,
                    timestamp(now),
                    human(DEFAULT_CATCH_UP),
                    timestamp(entry.nominal_time)
                )),
                (Some(_), Some(_)) if !expired => continue,
                (Some(_), Some(_)) => Some(format!(
                    "failed: the app accepted the callback at {} but created no execution before its lease ran out at {}",
                    timestamp(entry.claimed_at),
                    entry.lease_until.map(timestamp).unwrap_or_default()
                )),
                _ => Some("failed: its schedule was deleted or changed before the delivery could finish".to_owned()),
            };
            match reason {
                None => {
                    let (Some(schedule), Some(occurrence)) = (schedule, occurrence) else {
                        continue;
                    };
                    let lease_until = now + self.lease(&schedule.import_source_id);
                    let entry = match state.take_over_occurrence(&entry.fence(), &self.node, lease_until, now) {
                        Ok(entry) => entry,
                        Err(stale) => {
                            note_stale(&entry.fence(), "a take-over", stale);
                            continue;
                        }
                    };
                    tracing::warn!(occurrence = %entry.occurrence_id, attempt = entry.attempt, "delivering again an occurrence whose delivery was cut");
                    taken.push(Claimed {
                        schedule,
                        occurrence,
                        fence: entry.fence(),
                    });
                }
                Some(reason) => {
                    let line = crate::assets::HistoryEntry {
                        execution_id: None,
                        import_source_id: entry.import_source_id.clone(),
                        scheduled: true,
                        schedule_id: Some(entry.schedule_id.clone()),
                        occurrence_id: Some(entry.occurrence_id.clone()),
                        status: Outcome::Failed,
                        failure_reason: Some(reason.clone()),
                        objects: 0,
                        started_at: entry.nominal_time,
                        ended_at: Some(now),
                        invocations: None,
                        processed_at: None,
                        progress: None,
                    };
                    if state.end_claimed(&entry.fence(), line, &self.writer()).is_ok() {
                        firings.push(failed_firing(&entry, None, reason));
                    }
                }
            }
        }
        taken
    }

    /// Delivers again (attempt + 1) the occurrence of `entry`, whose run on
    /// `execution` died with the node invoking its app: the app goes on from
    /// its checkpoint on the same execution, which passes to the new attempt
    /// with the occurrence. Past the catch-up window, or with its schedule
    /// gone, the execution is failed saying why, and the occurrence with it.
    fn resume(
        &self,
        state: &mut State,
        entry: &LedgerEntry,
        execution: &str,
        now: DateTime<Utc>,
        firings: &mut Vec<Firing>,
    ) -> Option<Claimed> {
        let schedule = state.schedule(&entry.schedule_id).cloned();
        let occurrence = schedule.as_ref().and_then(|s| {
            s.rule
                .occurrences_after(entry.nominal_time - Duration::nanoseconds(1))
                .next()
                .filter(|o| o.instant == entry.nominal_time)
        });
        let reason = match (schedule, occurrence) {
            (Some(schedule), Some(occurrence)) if now - entry.nominal_time <= DEFAULT_CATCH_UP => {
                let lease_until = now + self.lease(&schedule.import_source_id);
                return match state.take_over_occurrence(&entry.fence(), &self.node, lease_until, now) {
                    Ok(taken) => {
                        tracing::warn!(occurrence = %taken.occurrence_id, attempt = taken.attempt, %execution, "delivering again an occurrence whose run died with its node: the app goes on from its checkpoint");
                        Some(Claimed {
                            schedule,
                            occurrence,
                            fence: taken.fence(),
                        })
                    }
                    Err(stale) => {
                        note_stale(&entry.fence(), "a take-over", stale);
                        None
                    }
                };
            }
            (Some(_), Some(_)) => format!(
                "failed: the platform stopped while the app was running this import (attempt {}) and it is now {}, \
                 beyond the {} catch-up window of the run due at {}; it was not delivered again",
                entry.attempt,
                timestamp(now),
                human(DEFAULT_CATCH_UP),
                timestamp(entry.nominal_time)
            ),
            _ => "failed: the platform stopped while the app was running this import, and its schedule was \
                  deleted or changed since"
                .to_owned(),
        };
        if state
            .fail(
                &entry.import_source_id,
                execution,
                reason.clone(),
                now,
                &self.reaper(entry.alive_until),
            )
            .is_ok()
        {
            tracing::warn!(source = %entry.import_source_id, %execution, "failed a run that died with its node");
            firings.push(failed_firing(entry, Some(execution.to_owned()), reason));
        }
        None
    }

    /// Fails `execution`, linked to `entry`, if it is still ingesting past
    /// its app's run limit and the grace period while nobody delivers it and
    /// no node says its run is alive: the app died with it (or with the node
    /// it ran on), and its occurrence ends with it. A run whose heartbeat is
    /// live is never failed, however far a virtual clock has moved.
    fn reap(&self, state: &mut State, entry: &LedgerEntry, execution: &str, now: DateTime<Utc>) {
        let source_id = entry.import_source_id.as_str();
        let ingesting = state.ingesting(source_id).is_some_and(|e| e.id == execution);
        let Some(started) = state.history_of(execution).map(|line| line.started_at) else {
            return;
        };
        let limit = self.run_limit(source_id);
        if !ingesting
            || entry.alive_at(self.assets.wall_now())
            || now - started <= limit.checked_add(&STALE_GRACE).unwrap_or(Duration::MAX)
        {
            return;
        }
        if state
            .fail(
                source_id,
                execution,
                stale_reason(execution, limit, started),
                now,
                &self.reaper(entry.alive_until),
            )
            .is_ok()
        {
            tracing::warn!(source = %source_id, %execution, "failed an execution left ingesting");
        }
    }

    /// Why a new run of `source_id` cannot start now, if a run of it is
    /// still going: an occurrence still being delivered, or its execution
    /// still ingesting. An execution ingesting past the app's run limit and
    /// the grace period, that nobody delivers and whose run no node says is
    /// alive, was left by an app that died: it is failed here, or it would
    /// block its source for ever.
    fn still_running(&self, state: &mut State, source_id: &str, now: DateTime<Utc>) -> Option<String> {
        let previous = state.delivering_for(source_id)?.clone();
        let Some(execution) = previous.execution_id.clone() else {
            return Some(format!(
                "skipped: occurrence {} (due {}) of this schedule was still being delivered when this run fell due",
                previous.occurrence_id,
                timestamp(previous.nominal_time)
            ));
        };
        let started = state.history_of(&execution).map(|line| line.started_at)?;
        let limit = self.run_limit(source_id);
        // Still being delivered by a node that lives (this one, or another on
        // the shared database): that node ends it when its callback returns,
        // however far a virtual clock has moved meanwhile.
        let delivered = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&previous.occurrence_id)
            || previous.lease_owner.as_ref().is_some_and(|owner| {
                owner != &self.node && self.alive_elsewhere().is_none_or(|alive| alive.contains(owner))
            });
        if delivered
            || previous.alive_at(self.assets.wall_now())
            || now - started <= limit.checked_add(&STALE_GRACE).unwrap_or(Duration::MAX)
        {
            return Some(format!(
                "skipped: execution {execution} of this import source was still ingesting when this run fell due"
            ));
        }
        let reason = stale_reason(&execution, limit, started);
        if state
            .fail(source_id, &execution, reason, now, &self.reaper(previous.alive_until))
            .is_ok()
        {
            tracing::warn!(source = %source_id, %execution, "failed an execution left ingesting");
        }
        None
    }

    /// Runs claimed occurrences on every core: each worker takes the next
    /// claim until none is left (a thundering herd at midnight finishes in
    /// the time of its share, not of the whole).
    fn fire_all(&self, claimed: Vec<Claimed>) -> Vec<Firing> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(claimed.len());
        if workers <= 1 {
            return claimed.into_iter().map(|claim| self.fire(claim)).collect();
        }
        let queue = std::sync::Mutex::new(claimed.into_iter());
        let fired = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(claim) = next else { break };
                    let firing = self.fire(claim);
                    fired.lock().unwrap_or_else(|e| e.into_inner()).push(firing);
                });
            }
        });
        fired.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one claimed occurrence.
    pub fn fire(&self, claim: Claimed) -> Firing {
        /// Counts a `fire` in progress, however it ends.
        struct Sending<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Sending<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.sending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _sending = Sending(&self.sending);
        let fence = claim.fence.clone();
        self.fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fence.occurrence_id.clone());
        let fired = self.deliver_claim(claim);
        let now = self.assets.clock().now();
        // An execution's end has usually ended the occurrence already (they
        // are linked); this covers an app that answered without one.
        let ended = match fired.status {
            FiringStatus::Completed => {
                self.assets
                    .state()
                    .end_occurrence(&fence, OccurrenceState::Completed, None, now, &self.writer())
            }
            FiringStatus::Failed => self.assets.state().end_occurrence(
                &fence,
                OccurrenceState::Failed,
                fired.reason.clone(),
                now,
                &self.writer(),
            ),
            // Accepted: the execution, when the app creates it, ends it; or
            // the lease runs out (see `recover`).
            _ => Ok(()),
        };
        if let Err(stale) = ended {
            note_stale(&fence, "the delivery's end", stale);
        }
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fence.occurrence_id);
        fired
    }

    /// Delivers one claimed occurrence and records what the ledger cannot
    /// learn from an execution.
    fn deliver_claim(&self, claim: Claimed) -> Firing {
        let Claimed {
            schedule,
            occurrence,
            fence,
        } = claim;
        let occurrence_id = fence.occurrence_id.clone();
        let source_id = &schedule.import_source_id;
        // Bound to a local first: the guard must be dropped before the body
        // locks the state again.
        let running = (|| {
            let state = self.assets.read()?;
            // Its own execution (a run delivered again to go on from its
            // checkpoint) is not another run in the way.
            let own = state.occurrence(&occurrence_id).and_then(|e| e.execution_id.clone());
            let running = state
                .ingesting(source_id)
                .filter(|e| Some(&e.id) != own.as_ref())
                .map(|e| {
                    let line = &state.all_history()[e.history_index];
                    let beat = line
                        .occurrence_id
                        .as_deref()
                        .and_then(|o| state.occurrence(o))
                        .and_then(|entry| entry.alive_until);
                    (e.id.clone(), e.scheduled, beat, line.started_at)
                });
            Ok::<_, ApiError>(running)
        })();
        // An app cannot run past its limit (the host stops it there), so a
        // scheduled execution still ingesting after the limit and a grace
        // period, whose run no node says is alive, was left by an app that
        // died: fail it, or it blocks its source for ever. A manual run
        // belongs to no occurrence, and no scheduled delivery fails it.
        let limit = self.run_limit(source_id);
        let running = running.map(|running| {
            running.filter(|(running, scheduled, beat, started)| {
                let now = self.assets.clock().now();
                let alive = beat.is_some_and(|until| until > self.assets.wall_now());
                if !scheduled || alive || now - *started <= limit.checked_add(&STALE_GRACE).unwrap_or(Duration::MAX) {
                    return true;
                }
                let reason = stale_reason(running, limit, *started);
                if self
                    .assets
                    .reap(source_id, running, &reason, &self.node, self.assets.wall_now())
                {
                    tracing::warn!(source = %source_id, execution = %running, "failed an execution left ingesting");
                    return false;
                }
                // Not failed: it ended meanwhile, or another run (or a beat)
                // took its place. Whatever runs now is asked about again on
                // the next delivery; this one is skipped as in the way.
                true
            })
        });
        let in_the_way = match running {
            Ok(running) => running.map(|(running, scheduled, _, _)| {
                if scheduled {
                    format!(
                        "skipped: execution {running} of this import source was still ingesting when this run fell due"
                    )
                } else {
                    format!(
                        "skipped: manual execution {running} of this import source was still ingesting when this run fell \
                         due; a scheduled run never fails a manual one: cancel it (DELETE …/executions/{running}) if its \
                         app has stopped"
                    )
                }
            }),
            // Another run may be going on: never two at once.
            Err(_) => Some(
                "skipped: the state could not be read from the database to check that no other run of this import \
                 source was going on when this run fell due"
                    .to_owned(),
            ),
        };
        if let Some(reason) = in_the_way {
            let skipped = self.assets.state().end_claimed(
                &fence,
                unrun_entry(&schedule, &occurrence, &occurrence_id, Outcome::Skipped, reason.clone()),
                &self.writer(),
            );
            if let Err(stale) = skipped {
                note_stale(&fence, "the skip", stale);
            }
            return firing(
                &schedule,
                &occurrence,
                &occurrence_id,
                FiringStatus::Skipped,
                None,
                0,
                Some(reason),
            );
        }
        if schedule.source_type != SourceType::External {
            return self.platform_run(&schedule, &occurrence, &occurrence_id);
        }
        let event = TriggerEvent {
            workspace_id: schedule.workspace_id.clone(),
            import_source_id: source_id.clone(),
            scheduled: true,
            schedule_id: Some(schedule.id.clone()),
            occurrence_id: occurrence_id.clone(),
            nominal_time: timestamp(occurrence.instant),
            attempt: fence.attempt,
        };
        // Each arm either returns its firing or gives the failed one and the
        // reason to record in the history.
        let (failed, reason) = match self.deliver(&schedule, &event) {
            Delivery::Ran(outcome) => {
                let status = match outcome.status {
                    RunStatus::Completed => FiringStatus::Completed,
                    RunStatus::Failed => FiringStatus::Failed,
                    RunStatus::NotStarted => FiringStatus::NotStarted,
                };
                let mut fired = firing(
                    &schedule,
                    &occurrence,
                    &occurrence_id,
                    status,
                    outcome.execution_id.clone(),
                    outcome.objects,
                    outcome.failure_reason.clone(),
                );
                fired.retries = outcome.retries;
                fired.invocations = outcome.invocations;
                fired.left_by_app = outcome.left_by_app.clone();
                if outcome.status != RunStatus::NotStarted {
                    return fired;
                }
                // The app answered without creating an execution: the
                // platform records the failed callback, as the real one does.
                let reason = outcome
                    .failure_reason
                    .unwrap_or_else(|| "the app created no execution".into());
                (fired, reason)
            }
            Delivery::Accepted => {
                return firing(
                    &schedule,
                    &occurrence,
                    &occurrence_id,
                    FiringStatus::Delivered,
                    None,
                    0,
                    None,
                )
            }
            Delivery::Undelivered(reason) => {
                let fired = firing(
                    &schedule,
                    &occurrence,
                    &occurrence_id,
                    FiringStatus::Failed,
                    None,
                    0,
                    Some(reason.clone()),
                );
                (fired, reason)
            }
        };
        // The app started an execution before the call broke (its node died,
        // the connection was cut): that execution, not the callback, says how
        // the occurrence ends, or the stale rule fails it once nobody
        // delivers it and it is past its limit (`recover`).
        let linked = self
            .assets
            .state()
            .occurrence(&occurrence_id)
            .and_then(|e| e.execution_id.clone());
        if let Some(execution) = linked {
            tracing::warn!(occurrence = %occurrence_id, %execution, reason = %assets_redact::printable(&reason), "the callback failed after the app started its execution; the execution ends the occurrence");
            return firing(
                &schedule,
                &occurrence,
                &occurrence_id,
                FiringStatus::Delivered,
                Some(execution),
                0,
                Some(reason),
            );
        }
        let reason: String = reason
            .chars()
            .take(crate::assets::model::MAX_FAILURE_REASON_CHARS)
            .collect();
        let ended = self.assets.state().end_claimed(
            &fence,
            unrun_entry(&schedule, &occurrence, &occurrence_id, Outcome::Failed, reason),
            &self.writer(),
        );
        if let Err(stale) = ended {
            note_stale(&fence, "the failed delivery's end", stale);
        }
        failed
    }

    /// Calls the app for `event`: in process when one is installed for the
    /// source, else through the callbacks to the schedule's `callbackUrl`.
    fn deliver(&self, schedule: &Schedule, event: &TriggerEvent) -> Delivery {
        let source_id = &schedule.import_source_id;
        let installed = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(source_id)
            .cloned();
        if let Some(app) = installed {
            return Delivery::Ran(trigger::deliver(&app, &self.assets, event));
        }
        let url = schedule.spec.callback_url.as_deref();
        let (Some(callbacks), Some(url)) = (&self.callbacks, url) else {
            return Delivery::Undelivered(format!(
                "The scheduled callback to {} could not be delivered: no app is installed for import source {source_id}",
                url.unwrap_or("(no callback URL)")
            ));
        };
        let source = match self.assets.read() {
            Ok(state) => state.source_by_id(source_id).cloned(),
            Err(_) => {
                return Delivery::Undelivered(format!(
                    "The scheduled callback to {url} was not sent: import source {source_id} could not be read from \
                     the database"
                ))
            }
        };
        let Some(source) = source else {
            return Delivery::Undelivered(format!(
                "The scheduled callback to {url} was not sent: import source {source_id} no longer exists"
            ));
        };
        // The policy may have changed since the URL was set.
        if let Some(Err(why)) = self.assets.callback_targets().map(|t| t.check(&source, url)) {
            return Delivery::Undelivered(format!("The scheduled callback to {url} was not sent: {why}"));
        }
        match callbacks.call(&source, url, event) {
            Ok(Some(outcome)) => Delivery::Ran(outcome),
            Ok(None) => Delivery::Accepted,
            Err(why) => Delivery::Undelivered(format!("The scheduled callback to {url} failed: {why}")),
        }
    }

    /// A CSV, JSON or Data Manager import: the platform runs it itself from
    /// the data it holds. The mock records a completed scheduled execution.
    fn platform_run(&self, schedule: &Schedule, occurrence: &Occurrence, occurrence_id: &str) -> Firing {
        let now = self.assets.clock().now();
        let id = uuid::Uuid::new_v4().to_string();
        let mut state = self.assets.state();
        let started = state
            .start_execution(&schedule.import_source_id, id.clone(), true, None, now)
            .map(|_| ());
        let result = started.and_then(|_| state.complete(&schedule.import_source_id, &id, now, &self.writer()));
        state.annotate(&id, Some(schedule.id.clone()), Some(occurrence_id.to_owned()), None);
        let (status, reason) = match result {
            Ok(()) => (FiringStatus::Completed, None),
            Err(e) => (FiringStatus::Failed, Some(e.message)),
        };
        firing(schedule, occurrence, occurrence_id, status, Some(id), 0, reason)
    }
}

/// The firing of a claimed occurrence the scheduler itself failed (its
/// delivery or its run cut off), reported from its ledger entry.
fn failed_firing(entry: &LedgerEntry, execution_id: Option<String>, reason: String) -> Firing {
    Firing {
        schedule_id: entry.schedule_id.clone(),
        import_source_id: entry.import_source_id.clone(),
        occurrence_id: entry.occurrence_id.clone(),
        nominal_utc: entry.nominal_time,
        local: String::new(),
        status: FiringStatus::Failed,
        execution_id,
        objects: 0,
        reason: Some(reason),
        note: None,
        retries: 0,
        invocations: 0,
        left_by_app: None,
    }
}

fn outcome_status(outcome: Outcome) -> FiringStatus {
    match outcome {
        Outcome::Missed => FiringStatus::Missed,
        Outcome::Failed => FiringStatus::Failed,
        _ => FiringStatus::Skipped,
    }
}

fn firing(
    schedule: &Schedule,
    occurrence: &Occurrence,
    occurrence_id: &str,
    status: FiringStatus,
    execution_id: Option<String>,
    objects: u64,
    reason: Option<String>,
) -> Firing {
    Firing {
        schedule_id: schedule.id.clone(),
        import_source_id: schedule.import_source_id.clone(),
        occurrence_id: occurrence_id.to_owned(),
        nominal_utc: occurrence.instant,
        local: occurrence
            .instant
            .with_timezone(&schedule.spec.timezone)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string(),
        status,
        execution_id,
        objects,
        reason,
        note: occurrence.adjustment.as_ref().map(|a| a.note.clone()),
        retries: 0,
        invocations: 0,
        left_by_app: None,
    }
}

/// Why the platform failed an execution its app left ingesting.
fn stale_reason(execution: &str, limit: Duration, started: DateTime<Utc>) -> String {
    format!(
        "failed by the platform: no completion or failure for execution {execution} within the app's {} run \
         limit and {} of grace since it started at {}; the app stopped without ending it",
        human(limit),
        human(STALE_GRACE),
        timestamp(started)
    )
}

fn human(d: Duration) -> String {
    if d.num_seconds() % 3600 == 0 {
        format!("{} h", d.num_hours())
    } else if d.num_seconds() % 60 == 0 {
        format!("{} min", d.num_minutes())
    } else {
        format!("{} s", d.num_seconds())
    }
}
