//! The journal: every fenced write to an occurrence or to an execution an
//! occurrence's delivery created, as it was made — who wrote, at which
//! attempt, and whether it took effect or was refused as stale.
//!
//! The ledger says where each occurrence ended; the journal says how it got
//! there. A person asks it "who failed this execution, and did it still own
//! it?"; the cluster checker (`host/cli/tests/jepsen.rs`) asks it the same
//! of every write in a run with faults. Entries are appended in the change
//! that makes the write, so they are stored in the same transaction as it,
//! and read back from the store a page at a time: a node keeps none of them.

use super::ledger::OccurrenceState;
use super::model::{Delivery, ExecutionStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who made a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Writer {
    /// The app of a delivery, through the Assets API, or the platform
    /// cleaning up after that delivery.
    #[serde(rename_all = "camelCase")]
    Delivery {
        /// The delivery: its id, occurrence and attempt.
        delivery: Delivery,
    },
    /// A node's scheduler: claims, take-overs, the end of a callback,
    /// recoveries at start-up.
    #[serde(rename_all = "camelCase")]
    Node {
        /// The node.
        node: String,
    },
    /// A node's reaper: a run left ingesting past its limit, or beyond the
    /// catch-up window when its node died, whose heartbeat had lapsed.
    #[serde(rename_all = "camelCase")]
    Reaper {
        /// The node.
        node: String,
        /// Until when the run's heartbeat said it was alive (real time,
        /// [`super::AssetsService::wall_now`]); `None` when it never beat
        /// (an app called back elsewhere).
        heartbeat_until: Option<DateTime<Utc>>,
        /// The real time, on the clock the heartbeat was stamped by, the
        /// reaper found it lapsed at; `None` in entries older than it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lapsed_at: Option<DateTime<Utc>>,
    },
    /// A client of the API with no delivery: a schedule change, a manual
    /// run's calls, an external app.
    Api,
}

impl Writer {
    /// The app of `delivery`, or the API when there is none.
    pub fn of(delivery: Option<&Delivery>) -> Writer {
        match delivery {
            Some(delivery) => Writer::Delivery {
                delivery: delivery.clone(),
            },
            None => Writer::Api,
        }
    }
}

/// What a write did (or tried to do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "act", rename_all = "camelCase")]
pub enum Act {
    /// Claimed the occurrence: attempt 1.
    Claimed,
    /// Took the occurrence over from an owner that is gone: the next
    /// attempt.
    TookOver,
    /// Linked an execution to the occurrence (the app created it).
    Linked,
    /// Wrote to the occurrence's execution: data, progress.
    Wrote,
    /// Ended the occurrence's execution.
    #[serde(rename_all = "camelCase")]
    ExecutionEnded {
        /// How.
        status: ExecutionStatus,
    },
    /// Ended the occurrence.
    #[serde(rename_all = "camelCase")]
    Ended {
        /// In which terminal state.
        state: OccurrenceState,
    },
}

/// One write, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    /// Platform time of the write.
    pub at: DateTime<Utc>,
    /// Wall-clock time of the write (heartbeats are in wall-clock time).
    pub wall_at: DateTime<Utc>,
    /// The occurrence written to.
    pub occurrence_id: String,
    /// The attempt the write was made at: the writer's fence, or for a
    /// claim or take-over the attempt it starts.
    pub attempt: Option<u32>,
    /// The execution written to, if any.
    pub execution_id: Option<String>,
    /// What it did.
    #[serde(flatten)]
    pub act: Act,
    /// Who did it.
    pub by: Writer,
    /// Why it changed nothing, when it was refused (a superseded attempt,
    /// an occurrence already ended); `None` when it took effect.
    pub refused: Option<String>,
}

/// A write as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its sequence number: the store's order of commits.
    pub seq: i64,
    /// The node that committed it, on a database several nodes share.
    pub node: Option<String>,
    /// The write.
    pub written: Written,
}

/// One page of the journal, oldest first.
pub type JournalPage = Vec<Stored>;
