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
    /// Until when that node holds it, in the platform's clock.
    pub lease_until: Option<DateTime<Utc>>,
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
            execution_id: None,
            reason: None,
            claimed_at: now,
            ended_at: None,
        }
    }

    /// Moves the entry to its terminal `state`; false (and unchanged) when it
    /// already had one: the first end wins, so an occurrence never has two.
    pub fn end(&mut self, state: OccurrenceState, reason: Option<String>, now: DateTime<Utc>) -> bool {
        if self.state.is_terminal() || !state.is_terminal() {
            return false;
        }
        self.state = state;
        self.reason = reason;
        self.lease_owner = None;
        self.lease_until = None;
        self.ended_at = Some(now);
        true
    }

    /// Takes over a delivery whose owner is gone: the next attempt, held by
    /// `owner` until `lease_until`.
    pub fn take_over(&mut self, owner: &str, lease_until: DateTime<Utc>) {
        self.attempt += 1;
        self.lease_owner = Some(owner.to_owned());
        self.lease_until = Some(lease_until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LedgerEntry {
        let now = Utc::now();
        LedgerEntry::claim("o".into(), "s".into(), "src".into(), now, "node-a", now, now)
    }

    #[test]
    fn an_entry_ends_once() {
        let mut e = entry();
        let now = Utc::now();
        assert!(e.end(OccurrenceState::Failed, Some("callback failed".into()), now));
        assert!(!e.end(OccurrenceState::Completed, None, now), "a second end is refused");
        assert_eq!(e.state, OccurrenceState::Failed);
        assert_eq!(e.lease_owner, None);
    }

    #[test]
    fn delivering_is_not_an_end() {
        let mut e = entry();
        assert!(!e.end(OccurrenceState::Delivering, None, Utc::now()));
        assert!(!e.state.is_terminal());
    }

    #[test]
    fn a_take_over_is_the_next_attempt() {
        let mut e = entry();
        e.take_over("node-b", Utc::now());
        assert_eq!((e.attempt, e.lease_owner.as_deref()), (2, Some("node-b")));
    }

    #[test]
    fn state_names_round_trip() {
        for name in ["delivering", "completed", "failed", "skipped", "missed"] {
            assert_eq!(OccurrenceState::from_name(name).map(|s| s.name()), Some(name));
        }
        assert_eq!(OccurrenceState::from_name("done"), None);
    }
}
