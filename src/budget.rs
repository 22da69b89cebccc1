//! What a run has spent over all its deliveries, kept in the occurrence's
//! record in app storage so that limits hold per run, not per invocation:
//! retries and the time waited between them (against `retry-max-total-ms`),
//! the slowest page seen (so an invocation pauses before a page read that
//! would likely not finish in time), and fingerprints of the cursors already
//! read (so a source whose cursors go round in a circle is caught even when
//! the circle spans several deliveries).
//!
//! The record is one app-storage value (at most 64 KiB), so the cursor set
//! is bounded: [`CursorPrints::CAPACITY`] fingerprints of 64 bits, 16 hex
//! digits each, 8 KiB at most.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A run's spending over every delivery so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunBudget {
    /// Calls repeated after transient failures.
    pub retries: u32,
    /// Milliseconds waited between retries, counted against
    /// `retry-max-total-ms`.
    pub waited_ms: u64,
    /// The longest one source page took to read (retry waits excluded), in
    /// milliseconds.
    pub slowest_page_ms: u64,
    /// The cursors of the pages read before the checkpoint's resume point.
    /// Pages from the resume point on are read again by the next delivery,
    /// so their cursors are not in here.
    pub cursors: CursorPrints,
}

/// A bounded set of cursor fingerprints, oldest first. When it is full the
/// oldest is dropped: a cycle of more than [`CursorPrints::CAPACITY`] pages
/// is then not recognised as one, and the run ends at `source-max-pages`
/// instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CursorPrints {
    prints: VecDeque<u64>,
}

impl CursorPrints {
    /// The most fingerprints kept.
    pub const CAPACITY: usize = 512;

    /// True when `cursor`'s fingerprint is in the set.
    pub fn contains(&self, cursor: &str) -> bool {
        let print = fingerprint(cursor);
        self.prints.contains(&print)
    }

    /// Adds `cursor`'s fingerprint, dropping the oldest when full.
    pub fn insert(&mut self, cursor: &str) {
        let print = fingerprint(cursor);
        if self.prints.contains(&print) {
            return;
        }
        if self.prints.len() == Self::CAPACITY {
            self.prints.pop_front();
        }
        self.prints.push_back(print);
    }

    /// Fingerprints held.
    pub fn len(&self) -> usize {
        self.prints.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.prints.is_empty()
    }
}

impl From<CursorPrints> for String {
    fn from(set: CursorPrints) -> String {
        set.prints.iter().map(|p| format!("{p:016x}")).collect()
    }
}

/// A stored cursor set that is not 16-hex-digit fingerprints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPrints;

impl std::fmt::Display for BadPrints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cursor fingerprints must be 16 hex digits each")
    }
}

impl TryFrom<String> for CursorPrints {
    type Error = BadPrints;
    fn try_from(text: String) -> Result<CursorPrints, BadPrints> {
        if !text.len().is_multiple_of(16) || !text.is_ascii() {
            return Err(BadPrints);
        }
        let prints = (0..text.len())
            .step_by(16)
            .map(|i| u64::from_str_radix(&text[i..i + 16], 16).map_err(|_| BadPrints))
            .collect::<Result<VecDeque<u64>, BadPrints>>()?;
        let skip = prints.len().saturating_sub(Self::CAPACITY);
        Ok(CursorPrints {
            prints: prints.into_iter().skip(skip).collect(),
        })
    }
}

/// A cursor's 64-bit FNV-1a fingerprint. Stored fingerprints outlive the
/// app's version, so the function must never change (std's hasher may).
/// Two cursors share one by chance with odds of about 1 in 2^64 per pair.
pub fn fingerprint(cursor: &str) -> u64 {
    cursor.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_drops_its_oldest_fingerprint() {
        let mut set = CursorPrints::default();
        for i in 0..CursorPrints::CAPACITY + 1 {
            set.insert(&format!("cursor-{i}"));
        }
        assert_eq!(set.len(), CursorPrints::CAPACITY);
        assert!(!set.contains("cursor-0"), "the oldest went");
        assert!(set.contains("cursor-1") && set.contains(&format!("cursor-{}", CursorPrints::CAPACITY)));
    }

    #[test]
    fn a_full_budget_fits_well_inside_one_storage_value() {
        let mut budget = RunBudget {
            retries: u32::MAX,
            waited_ms: u64::MAX,
            slowest_page_ms: u64::MAX,
            ..RunBudget::default()
        };
        for i in 0..CursorPrints::CAPACITY {
            budget.cursors.insert(&format!("https://api.example/items?page={i}"));
        }
        let json = serde_json::to_string(&budget).unwrap();
        assert!(json.len() < 9 * 1024, "{} bytes", json.len());
        let back: RunBudget = serde_json::from_str(&json).unwrap();
        assert_eq!(back, budget);
    }

    #[test]
    fn a_record_without_a_budget_reads_as_nothing_spent() {
        let budget: RunBudget = serde_json::from_str("{}").unwrap();
        assert_eq!(budget, RunBudget::default());
        assert!(serde_json::from_str::<RunBudget>(r#"{"cursors":"xyz"}"#).is_err());
    }
}
