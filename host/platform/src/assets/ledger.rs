//! The occurrence ledger: one row per occurrence of a schedule, the record of
//! what became of it.
//!
//! The occurrence id (a v5 uuid of schedule and nominal instant) is the key,
//! so an occurrence is claimed at most once: claiming is the exactly-once
//! fence. A claimed occurrence is `delivering` — it has an attempt number, a
//! lease (owner and until when) and, once the app creates it, its execution —
//! until it reaches exactly one terminal state:
//!
//! ```text
//!                 ┌──────────── skipped (a policy dropped it, a run still going, paused)
//!                 ├──────────── missed  (fell due while nothing could run it)
//!   due ──claim──▶ delivering ──▶ completed (its execution completed)
//!                 │   │  ▲   └──▶ failed   (execution failed or cancelled, callback
//!                 │   │  │                  failed, no execution, host stopped…)
//!                 │   └──┘ owner died, no execution yet, within the catch-up
//!                 │        window: delivered again, attempt + 1
//! ```
//!
//! Every write to a claimed entry carries a [`Fence`] — the occurrence and
//! the attempt its writer holds — and changes nothing unless that attempt
//! still holds the entry ([`LedgerEntry::held_by`]): a node that was paused
//! past its lease, or a delivery that was superseded by the next attempt,
//! cannot end, take over or link what is no longer its own.
//!
//! The rules that move an entry live where the event happens: the
//! [scheduler](crate::scheduler) claims, takes over and expires; the
//! execution lifecycle in [`super::model`] links an execution to the
//! occurrence being delivered for its source and ends the entry when the
//! execution ends. Every terminal state carries a reason a person can act on
//! (`completed` needs none).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an occurrence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OccurrenceState {
    /// Claimed: the callback is being delivered, or the app's execution is
    /// running. The only state that is not terminal.
    Delivering,
    /// Its execution completed.
    Completed,
    /// It ran and failed, or could not be delivered.
    Failed,
    /// Not run, on purpose: a calendar policy dropped it, a run was still
    /// going, or the schedule was paused.
    Skipped,
    /// Not run: it fell due while nothing could run it.
    Missed,
}

impl OccurrenceState {
    /// True for every state but `delivering`.
    pub fn is_terminal(self) -> bool {
        self != OccurrenceState::Delivering
    }

    /// The name used in the database and the JSON views.
    pub fn name(self) -> &'static str {
        match self {
            OccurrenceState::Delivering => "delivering",
            OccurrenceState::Completed => "completed",
            OccurrenceState::Failed => "failed",
            OccurrenceState::Skipped => "skipped",
            OccurrenceState::Missed => "missed",
        }
    }

    /// The state named `name` (see [`OccurrenceState::name`]).
    pub fn from_name(name: &str) -> Option<OccurrenceState> {
        [
            OccurrenceState::Delivering,
            OccurrenceState::Completed,
            OccurrenceState::Failed,
            OccurrenceState::Skipped,
            OccurrenceState::Missed,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// The fencing token of a write to a claimed occurrence: which occurrence,
/// and which attempt at it the writer holds. Ledger writes take one and
/// change nothing when another attempt holds the entry now.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fence {
    /// The occurrence.
    pub occurrence_id: String,
    /// The attempt the writer holds: 1 for the first delivery.
    pub attempt: u32,
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {} of occurrence {}", self.attempt, self.occurrence_id)
    }
}

/// Why a fenced write changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// The ledger has no such occurrence.
    Unknown,
    /// The occurrence already ended, in this state.
    Ended(OccurrenceState),
    /// A later attempt holds the occurrence now.
    Superseded {
        /// The attempt that holds it.
        by: u32,
    },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Unknown => f.write_str("the ledger has no such occurrence"),
            Stale::Ended(state) => write!(f, "the occurrence already ended ({})", state.name()),
            Stale::Superseded { by } => write!(f, "attempt {by} holds the occurrence now"),
        }
    }
}

/// One occurrence in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// The occurrence id: the key, unique.
    pub occurrence_id: String,
    /// The schedule it belongs to.
    pub schedule_id: String,
    /// The schedule's import source.
    pub import_source_id: String,
    /// Its nominal instant, UTC.
    pub nominal_time: DateTime<Utc>,
    /// Deliveries so far: 1 on the first claim, + 1 for each re-delivery.
    pub attempt: u32,
    /// Where it stands.
    pub state: OccurrenceState,
    /// The node delivering it (while `delivering`).
    pub lease_owner: Option<String>,
    /// Until when that node holds it, in the platform's clock: past it, a
    /// delivery the app accepted but made no execution for fails.
    pub lease_until: Option<DateTime<Utc>>,
    /// Until when the node running its app says the run is alive, in wall-
    /// clock time (not the platform's, which a virtual clock moves by days):
    /// renewed every few seconds while the app is invoked, continuations
    /// included, fenced by the attempt. A run whose heartbeat is live is
    /// never failed as abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive_until: Option<DateTime<Utc>>,
    /// The execution the app created for it, once known.
    pub execution_id: Option<String>,
    /// Why it failed, was skipped or missed.
    pub reason: Option<String>,
    /// When it was claimed.
    pub claimed_at: DateTime<Utc>,
    /// When it reached its terminal state.
    pub ended_at: Option<DateTime<Utc>>,
}

impl LedgerEntry {
    /// A fresh claim by `owner` at `now`, held until `lease_until`.
    pub fn claim(
        occurrence_id: String,
        schedule_id: String,
        import_source_id: String,
        nominal_time: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> LedgerEntry {
        LedgerEntry {
            occurrence_id,
            schedule_id,
            import_source_id,
            nominal_time,
            attempt: 1,
            state: OccurrenceState::Delivering,
            lease_owner: Some(owner.to_owned()),
            lease_until: Some(lease_until),
            alive_until: None,
            execution_id: None,
            reason: None,
            claimed_at: now,
            ended_at: None,
        }
    }

    /// An entry that ends as soon as it is written: an occurrence that was
    /// never claimed (skipped or missed), with no attempt to fence.
    pub fn ended(
        occurrence_id: String,
        schedule_id: String,
        import_source_id: String,
        nominal_time: DateTime<Utc>,
        state: OccurrenceState,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> LedgerEntry {
        let mut entry = LedgerEntry::claim(occurrence_id, schedule_id, import_source_id, nominal_time, "", now, now);
        let fence = entry.fence();
        // A fresh claim is held by its own fence, so this cannot fail; a
        // non-terminal `state` leaves it delivering, which callers never ask.
        let _ = entry.end(&fence, state, reason, now);
        entry
    }

    /// The fence of the attempt that holds this entry now.
    pub fn fence(&self) -> Fence {
        Fence {
            occurrence_id: self.occurrence_id.clone(),
            attempt: self.attempt,
        }
    }

    /// Whether `fence` holds this entry: the same occurrence and attempt,
    /// and the entry is still delivering. `Err` says why not.
    pub fn held_by(&self, fence: &Fence) -> Result<(), Stale> {
        if fence.occurrence_id != self.occurrence_id {
            Err(Stale::Unknown)
        } else if self.state.is_terminal() {
            Err(Stale::Ended(self.state))
        } else if fence.attempt != self.attempt {
            Err(Stale::Superseded { by: self.attempt })
        } else {
            Ok(())
        }
    }

    /// Moves the entry to its terminal `state`, if `fence` holds it; unchanged
    /// otherwise: the first end wins, so an occurrence never has two, and an
    /// attempt that was superseded ends nothing.
    pub fn end(
        &mut self,
        fence: &Fence,
        state: OccurrenceState,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), Stale> {
        self.held_by(fence)?;
        if !state.is_terminal() {
            return Err(Stale::Ended(self.state));
        }
        self.state = state;
        self.reason = reason;
        self.lease_owner = None;
        self.lease_until = None;
        self.alive_until = None;
        self.ended_at = Some(now);
        Ok(())
    }

    /// Says the run of `fence`'s attempt is alive until `until` (wall-clock
    /// time), if that attempt still holds the entry.
    pub fn renew(&mut self, fence: &Fence, until: DateTime<Utc>) -> Result<(), Stale> {
        self.held_by(fence)?;
        self.alive_until = Some(until);
        Ok(())
    }

    /// Whether the run's heartbeat is live at `wall_now` (wall-clock time).
    pub fn alive_at(&self, wall_now: DateTime<Utc>) -> bool {
        self.alive_until.is_some_and(|until| until > wall_now)
    }

    /// Takes over a delivery whose owner is gone, if `fence` (the attempt the
    /// taker saw) still holds it: the next attempt, held by `owner` until
    /// `lease_until`. Every write of the attempt it replaces is stale from now.
    pub fn take_over(&mut self, fence: &Fence, owner: &str, lease_until: DateTime<Utc>) -> Result<Fence, Stale> {
        self.held_by(fence)?;
        self.attempt += 1;
        self.lease_owner = Some(owner.to_owned());
        self.lease_until = Some(lease_until);
        self.alive_until = None;
        Ok(self.fence())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LedgerEntry {
        let now = Utc::now();
        LedgerEntry::claim("o".into(), "s".into(), "src".into(), now, "node-a", now, now)
    }

    fn fence(attempt: u32) -> Fence {
        Fence {
            occurrence_id: "o".into(),
            attempt,
        }
    }

    #[test]
    fn an_entry_ends_once() {
        let mut e = entry();
        let now = Utc::now();
        assert_eq!(
            e.end(&fence(1), OccurrenceState::Failed, Some("callback failed".into()), now),
            Ok(())
        );
        assert_eq!(
            e.end(&fence(1), OccurrenceState::Completed, None, now),
            Err(Stale::Ended(OccurrenceState::Failed)),
            "a second end is refused"
        );
        assert_eq!(e.state, OccurrenceState::Failed);
        assert_eq!(e.lease_owner, None);
    }

    #[test]
    fn delivering_is_not_an_end() {
        let mut e = entry();
        assert!(e.end(&fence(1), OccurrenceState::Delivering, None, Utc::now()).is_err());
        assert!(!e.state.is_terminal());
    }

    #[test]
    fn a_take_over_is_the_next_attempt() {
        let mut e = entry();
        assert_eq!(e.take_over(&fence(1), "node-b", Utc::now()), Ok(fence(2)));
        assert_eq!((e.attempt, e.lease_owner.as_deref()), (2, Some("node-b")));
    }

    #[test]
    fn a_superseded_attempt_writes_nothing() {
        let mut e = entry();
        let now = Utc::now();
        e.take_over(&fence(1), "node-b", now).unwrap();
        let before = e.clone();
        assert_eq!(
            e.end(
                &fence(1),
                OccurrenceState::Failed,
                Some("attempt 1's reason".into()),
                now
            ),
            Err(Stale::Superseded { by: 2 })
        );
        assert_eq!(e.take_over(&fence(1), "node-c", now), Err(Stale::Superseded { by: 2 }));
        let other = Fence {
            occurrence_id: "another".into(),
            attempt: 2,
        };
        assert_eq!(
            e.end(&other, OccurrenceState::Completed, None, now),
            Err(Stale::Unknown)
        );
        assert_eq!(e, before, "no stale write changed the entry");
        assert_eq!(e.end(&fence(2), OccurrenceState::Completed, None, now), Ok(()));
    }

    /// One write to an entry, with the attempt its writer holds.
    #[derive(Debug, Clone)]
    enum Write {
        End(u32, OccurrenceState),
        TakeOver(u32),
    }

    fn write() -> impl proptest::strategy::Strategy<Value = Write> {
        use proptest::prelude::*;
        let state = prop::sample::select(vec![
            OccurrenceState::Completed,
            OccurrenceState::Failed,
            OccurrenceState::Skipped,
            OccurrenceState::Missed,
        ]);
        prop_oneof![
            (1u32..6, state).prop_map(|(attempt, state)| Write::End(attempt, state)),
            (1u32..6).prop_map(Write::TakeOver),
        ]
    }

    proptest::proptest! {
        /// Whatever writes come, from whichever attempts: the entry takes a
        /// write only from the attempt that holds it, counts attempts up one
        /// at a time, and ends once, as the first end by its holder said.
        /// The oracle is a counter and a flag, not the entry's code.
        #[test]
        fn only_the_holding_attempt_writes(writes in proptest::collection::vec(write(), 0..40)) {
            let mut e = entry();
            let (mut holder, mut ended): (u32, Option<OccurrenceState>) = (1, None);
            for w in writes {
                let before = e.clone();
                match w {
                    Write::End(attempt, state) => {
                        let taken = e.end(&fence(attempt), state, Some(format!("by {attempt}")), Utc::now()).is_ok();
                        let expected = ended.is_none() && attempt == holder;
                        proptest::prop_assert_eq!(taken, expected, "{:?} at holder {} ended {:?}", w, holder, ended);
                        if expected {
                            ended = Some(state);
                            proptest::prop_assert_eq!(e.reason.clone(), Some(format!("by {attempt}")));
                        }
                    }
                    Write::TakeOver(attempt) => {
                        let taken = e.take_over(&fence(attempt), "node", Utc::now()).is_ok();
                        let expected = ended.is_none() && attempt == holder;
                        proptest::prop_assert_eq!(taken, expected, "{:?} at holder {} ended {:?}", w, holder, ended);
                        if expected {
                            holder += 1;
                        }
                    }
                }
                let refused = before.attempt == holder && before.state == ended.unwrap_or(OccurrenceState::Delivering);
                if refused {
                    proptest::prop_assert_eq!(&before, &e, "a refused write changed nothing");
                }
                proptest::prop_assert_eq!(e.attempt, holder);
                proptest::prop_assert_eq!(e.state, ended.unwrap_or(OccurrenceState::Delivering));
            }
        }
    }

    #[test]
    fn state_names_round_trip() {
        for name in ["delivering", "completed", "failed", "skipped", "missed"] {
            assert_eq!(OccurrenceState::from_name(name).map(|s| s.name()), Some(name));
        }
        assert_eq!(OccurrenceState::from_name("done"), None);
    }
}
