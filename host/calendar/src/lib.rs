//! The calendar engine: when a schedule's runs fall, in UTC, for a wall-clock
//! rule in an IANA time zone. Pure functions of the rule; no clock, no I/O.
//!
//! Its own crate (`assets-calendar`) so that anything that needs to know
//! when runs fall (the platform's scheduler, a preview tool, another host)
//! can have it without a wasm runtime: it depends on chrono and chrono-tz
//! for time and serde for the policies' wire names, and on nothing of this
//! project. Main types: [`Rule`] (with [`Rule::occurrences`] and
//! [`Rule::next_run_after`]), [`Occurrence`], [`Adjustment`], [`Policies`].
//!
//! The first run is at `start`. The local wall time of `start` in the zone —
//! its time of day, weekday and day of month — is the rule from then on:
//! daily at that time, weekly on that weekday, monthly on that day. Where the
//! wall time cannot be used as is, a per-schedule policy decides, and the
//! occurrence carries an [`Adjustment`] saying what happened, so nothing moves
//! or disappears silently:
//!
//! - a wall time inside a spring-forward gap ([`GapPolicy`]): shifted forward
//!   by the gap's length (RFC 5545, java.time), skipped, or run at the
//!   transition;
//! - a wall time that happens twice at fall-back ([`FoldPolicy`]): the
//!   earlier instant, the later, or both;
//! - a day of month the month lacks ([`MonthEndPolicy`]): the month's last
//!   day, or skipped.

#![deny(missing_docs)]

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How often a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Frequency {
    /// Once, at the start time.
    Once,
    /// Every local day at the wall time.
    Daily,
    /// Every week on the local weekday, at the wall time.
    Weekly,
    /// Every month on the local day of month, at the wall time.
    Monthly,
}

impl Frequency {
    /// Every frequency, in the API's spelling.
    pub const NAMES: &'static str = "ONCE, DAILY, WEEKLY, MONTHLY";

    /// Parses the API's spelling (`DAILY`).
    pub fn parse(name: &str) -> Option<Frequency> {
        match name {
            "ONCE" => Some(Frequency::Once),
            "DAILY" => Some(Frequency::Daily),
            "WEEKLY" => Some(Frequency::Weekly),
            "MONTHLY" => Some(Frequency::Monthly),
            _ => None,
        }
    }
}

/// What to do when the wall time does not exist that day (spring forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GapPolicy {
    /// Run later by the length of the gap (02:30 → 03:30), as RFC 5545 and
    /// java.time do.
    #[default]
    ShiftForward,
    /// Do not run that day; the occurrence is recorded as skipped.
    Skip,
    /// Run at the instant the clocks jump (02:30 → 03:00).
    AtTransition,
}

/// What to do when the wall time happens twice that day (fall back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FoldPolicy {
    /// Run once, at the first of the two instants.
    #[default]
    Earlier,
    /// Run once, at the second of the two instants.
    Later,
    /// Run at both instants.
    Both,
}

/// What a monthly schedule does in months that lack its day (31st, 30th, 29th).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MonthEndPolicy {
    /// Run on the month's last day.
    #[default]
    LastDay,
    /// Do not run that month; the occurrence is recorded as skipped.
    Skip,
}

/// The three per-schedule policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Policies {
    /// Spring-forward gaps.
    pub gap: GapPolicy,
    /// Fall-back folds.
    pub fold: FoldPolicy,
    /// Short months.
    pub month_end: MonthEndPolicy,
}

/// Which rule moved, doubled or dropped an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AdjustmentKind {
    /// Spring-forward gap, shifted by the gap's length.
    GapShiftedForward,
    /// Spring-forward gap, run at the transition.
    GapAtTransition,
    /// Spring-forward gap, skipped.
    GapSkipped,
    /// Fall-back fold, the earlier instant used.
    FoldEarlier,
    /// Fall-back fold, the later instant used.
    FoldLater,
    /// Fall-back fold, first of two runs.
    FoldBothFirst,
    /// Fall-back fold, second of two runs.
    FoldBothSecond,
    /// Short month, run on its last day.
    MonthEndLastDay,
    /// Short month, skipped.
    MonthEndSkipped,
}

/// A rule's effect on one occurrence, with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adjustment {
    /// Which rule.
    pub kind: AdjustmentKind,
    /// What happened, e.g. "02:30 does not exist on 2026-03-08 in
    /// America/New_York (clocks jump forward 1h); ran at 03:30 instead
    /// (dstGapPolicy SHIFT_FORWARD)".
    pub note: String,
}

/// One occurrence of a schedule: a run, or a slot a rule dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// Position in the rule's sequence of days/weeks/months (0 = the start).
    pub index: u64,
    /// When it runs, in UTC. For a dropped slot, when it would have run, so
    /// that it can be recorded in order.
    pub instant: DateTime<Utc>,
    /// False when a rule dropped it (it is recorded as skipped, never run).
    pub runs: bool,
    /// The rule that moved, doubled or dropped it, if any.
    pub adjustment: Option<Adjustment>,
}

/// A schedule's wall-clock rule in a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    frequency: Frequency,
    start: DateTime<Utc>,
    tz: Tz,
    policies: Policies,
    start_date: NaiveDate,
    wall_time: NaiveTime,
}

impl Rule {
    /// The rule of a schedule that first runs at `start`.
    pub fn new(frequency: Frequency, start: DateTime<Utc>, tz: Tz, policies: Policies) -> Rule {
        let local = start.with_timezone(&tz).naive_local();
        Rule {
            frequency,
            start,
            tz,
            policies,
            start_date: local.date(),
            wall_time: local.time(),
        }
    }

    /// The frequency.
    pub fn frequency(&self) -> Frequency {
        self.frequency
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first run.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Every occurrence from the start on, in increasing UTC order.
    pub fn occurrences(&self) -> Occurrences<'_> {
        Occurrences {
            rule: self,
            index: 0,
            pending: None,
        }
    }

    /// Every occurrence strictly after `after`, in increasing UTC order.
    pub fn occurrences_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = Occurrence> + '_ {
        Occurrences {
            rule: self,
            index: self.index_before(after),
            pending: None,
        }
        .skip_while(move |o| o.instant <= after)
    }

    /// The first occurrence that runs strictly after `after`.
    pub fn next_run_after(&self, after: DateTime<Utc>) -> Option<Occurrence> {
        self.occurrences_after(after).find(|o| o.runs)
    }

    /// An index whose occurrences are all at or before `t`, or 0: a safe
    /// place to start scanning, at most two periods early.
    fn index_before(&self, t: DateTime<Utc>) -> u64 {
        if t <= self.start {
            return 0;
        }
        let local = t.with_timezone(&self.tz).date_naive();
        let periods = match self.frequency {
            Frequency::Once => 0,
            Frequency::Daily => (local - self.start_date).num_days(),
            Frequency::Weekly => (local - self.start_date).num_days() / 7,
            Frequency::Monthly => {
                (i64::from(local.year()) * 12 + i64::from(local.month0()))
                    - (i64::from(self.start_date.year()) * 12 + i64::from(self.start_date.month0()))
            }
        };
        // Step back one period: an adjusted occurrence (a shift, a
        // month-end clamp) may land on either side of its nominal day.
        u64::try_from(periods - 1).unwrap_or(0)
    }

    /// The occurrences of period `index`: none past the end (ONCE), one, or
    /// two (a fold under `BOTH`).
    fn at(&self, index: u64) -> [Option<Occurrence>; 2] {
        self.period(index, true)
    }

    /// [`Rule::at`]; `check_next` makes a gap occurrence look at the next
    /// period's run, so that occurrences stay strictly increasing where a
    /// zone skips a whole day.
    fn period(&self, index: u64, check_next: bool) -> [Option<Occurrence>; 2] {
        if index == 0 {
            return self.at_start();
        }
        let date = match self.frequency {
            Frequency::Once => return [None, None],
            Frequency::Daily => self.start_date.checked_add_days(Days::new(index)),
            Frequency::Weekly => self.start_date.checked_add_days(Days::new(index.saturating_mul(7))),
            Frequency::Monthly => match self.monthly_date(index) {
                Ok(date) => Some(date),
                Err((date, adjustment)) => {
                    return self.resolve(index, date, Some(adjustment), check_next);
                }
            },
        };
        match date {
            Some(date) => self.resolve(index, date, None, check_next),
            None => [None, None],
        }
    }

    /// The start is always the first run, as given. Only a fold under `BOTH`
    /// adds a second run, when the start is the earlier of the two instants.
    fn at_start(&self) -> [Option<Occurrence>; 2] {
        let first = Occurrence {
            index: 0,
            instant: self.start,
            runs: true,
            adjustment: None,
        };
        let naive = self.start_date.and_time(self.wall_time);
        if let LocalResult::Ambiguous(earlier, later) = self.tz.from_local_datetime(&naive) {
            if self.policies.fold == FoldPolicy::Both && earlier.with_timezone(&Utc) == self.start {
                return self.both(0, naive, &earlier, &later);
            }
        }
        [Some(first), None]
    }

    /// Both instants of a fold, each marked (dstFoldPolicy BOTH).
    fn both(
        &self,
        index: u64,
        naive: NaiveDateTime,
        earlier: &DateTime<Tz>,
        later: &DateTime<Tz>,
    ) -> [Option<Occurrence>; 2] {
        let fold = fold_length(earlier, later);
        let run = |kind, at: &DateTime<Tz>| Occurrence {
            index,
            instant: at.with_timezone(&Utc),
            runs: true,
            adjustment: Some(self.adjustment(kind, naive, fold, at)),
        };
        [
            Some(run(AdjustmentKind::FoldBothFirst, earlier)),
            Some(run(AdjustmentKind::FoldBothSecond, later)),
        ]
    }

    /// The date of monthly period `index`, or the clamped date and the
    /// month-end adjustment when the month lacks the day.
    fn monthly_date(&self, index: u64) -> Result<NaiveDate, (NaiveDate, Adjustment)> {
        let months = i64::from(self.start_date.year()) * 12 + i64::from(self.start_date.month0()) + index as i64;
        let (year, month) = (months.div_euclid(12) as i32, months.rem_euclid(12) as u32 + 1);
        let day = self.start_date.day();
        if let Some(date) = NaiveDate::from_ymd_opt(year, month, day) {
            return Ok(date);
        }
        let last = last_day_of_month(year, month);
        let month_name = last.format("%B %Y");
        let (kind, what) = match self.policies.month_end {
            MonthEndPolicy::LastDay => (
                AdjustmentKind::MonthEndLastDay,
                format!(
                    "ran on its last day, the {} (monthEndPolicy LAST_DAY)",
                    ordinal(last.day())
                ),
            ),
            MonthEndPolicy::Skip => (
                AdjustmentKind::MonthEndSkipped,
                "skipped (monthEndPolicy SKIP)".to_owned(),
            ),
        };
        Err((
            last,
            Adjustment {
                kind,
                note: format!("{month_name} has no day {day}; {what}"),
            },
        ))
    }

    /// Turns a local date at the rule's wall time into instants, applying the
    /// gap and fold policies. `prior` is a month-end adjustment already made.
    fn resolve(
        &self,
        index: u64,
        date: NaiveDate,
        prior: Option<Adjustment>,
        check_next: bool,
    ) -> [Option<Occurrence>; 2] {
        let naive = date.and_time(self.wall_time);
        let dropped_by_month = matches!(&prior, Some(a) if a.kind == AdjustmentKind::MonthEndSkipped);
        let single = |instant: DateTime<Utc>, adjustment: Option<Adjustment>, runs: bool| {
            [
                Some(Occurrence {
                    index,
                    instant,
                    runs,
                    adjustment,
                }),
                None,
            ]
        };
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(at) => single(at.with_timezone(&Utc), prior, !dropped_by_month),
            LocalResult::Ambiguous(earlier, later) => {
                if prior.is_some() {
                    // A clamped or skipped month-end that also falls in a
                    // fold: keep the month-end note, use the earlier instant.
                    return single(earlier.with_timezone(&Utc), prior, !dropped_by_month);
                }
                let fold = fold_length(&earlier, &later);
                match self.policies.fold {
                    FoldPolicy::Earlier => single(
                        earlier.with_timezone(&Utc),
                        Some(self.adjustment(AdjustmentKind::FoldEarlier, naive, fold, &earlier)),
                        true,
                    ),
                    FoldPolicy::Later => single(
                        later.with_timezone(&Utc),
                        Some(self.adjustment(AdjustmentKind::FoldLater, naive, fold, &later)),
                        true,
                    ),
                    FoldPolicy::Both => self.both(index, naive, &earlier, &later),
                }
            }
            LocalResult::None => {
                let (before, after) = self.offsets_around(naive);
                let gap = Duration::seconds(i64::from(after - before));
                // Read the wall time with the offset in force before the gap:
                // the instant the clock would show had it not jumped.
                let shifted = (naive - Duration::seconds(i64::from(before))).and_utc();
                if dropped_by_month {
                    return single(shifted, prior, false);
                }
                let transition =
                    self.transition_between((naive - Duration::seconds(i64::from(after))).and_utc(), shifted);
                let (mut instant, mut kind, mut runs) = match self.policies.gap {
                    GapPolicy::ShiftForward => (shifted, AdjustmentKind::GapShiftedForward, true),
                    GapPolicy::AtTransition => (transition, AdjustmentKind::GapAtTransition, true),
                    GapPolicy::Skip => (shifted, AdjustmentKind::GapSkipped, false),
                };
                // Where a zone skips a whole day (Pacific/Apia, 2011-12-30),
                // the shifted instant is the next day's run, and so is the
                // transition when the wall time is the midnight the day
                // vanished at: the two cannot be separate runs, and an
                // occurrence must not repeat an instant (its id is made from
                // it). It is skipped, at the transition when that lies
                // strictly before the next run, else a second before it.
                let mut collision = None;
                if check_next {
                    if let [Some(next), _] = self.period(index + 1, false) {
                        if instant >= next.instant {
                            collision = Some(next.instant.with_timezone(&self.tz));
                            let at = if transition < next.instant {
                                transition
                            } else {
                                next.instant - Duration::seconds(1)
                            };
                            (instant, kind, runs) = (at, AdjustmentKind::GapSkipped, false);
                        }
                    }
                }
                let local = instant.with_timezone(&self.tz);
                let mut adjustment = self.adjustment(kind, naive, gap, &local);
                let moved = match self.policies.gap {
                    GapPolicy::ShiftForward => Some(("moved forward", "SHIFT_FORWARD")),
                    GapPolicy::AtTransition => Some(("run at the transition", "AT_TRANSITION")),
                    // Skipped anyway: its own note says so.
                    GapPolicy::Skip => None,
                };
                if let (Some(next), Some((moved, policy))) = (collision, moved) {
                    adjustment.note = format!(
                        "{}; {moved} it would fall on the next run, {}, so it does not run (dstGapPolicy {policy})",
                        self.situation(kind, naive, gap),
                        next.format("%Y-%m-%d %H:%M %Z"),
                    );
                }
                if let Some(prior) = prior {
                    adjustment.note = format!("{}; {}", prior.note, adjustment.note);
                }
                single(instant, Some(adjustment), runs)
            }
        }
    }

    /// UTC offsets (seconds east) in force a day before and a day after
    /// `naive`: around a gap, the offsets on either side of it.
    fn offsets_around(&self, naive: NaiveDateTime) -> (i32, i32) {
        let utc = naive.and_utc();
        let offset = |t: DateTime<Utc>| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc();
        (offset(utc - Duration::days(1)), offset(utc + Duration::days(1)))
    }

    /// The transition inside a gap: the first instant in `(lo, hi]` with the
    /// later offset. Zone transitions fall on whole seconds, so a search over
    /// whole seconds finds it exactly (chrono-tz has no public list of
    /// transitions to read it from).
    fn transition_between(&self, lo: DateTime<Utc>, hi: DateTime<Utc>) -> DateTime<Utc> {
        let at = |s: i64| DateTime::from_timestamp(s, 0).expect("a second between two instants chrono holds");
        let offset = |s: i64| self.tz.offset_from_utc_datetime(&at(s).naive_utc()).fix();
        // The transition T is a whole second with lo < T <= hi, so
        // floor(lo) < T <= floor(hi).
        let (mut lo, mut hi) = (lo.timestamp(), hi.timestamp());
        let after = offset(hi);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset(mid) == after {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        at(hi)
    }

    /// What is unusual about the wall time `naive` that day, for a note.
    fn situation(&self, kind: AdjustmentKind, naive: NaiveDateTime, shift: Duration) -> String {
        let (wall, date, tz, shift) = (
            naive.format("%H:%M"),
            naive.date(),
            self.tz.name(),
            human_duration(shift),
        );
        match kind {
            AdjustmentKind::GapShiftedForward | AdjustmentKind::GapAtTransition | AdjustmentKind::GapSkipped => {
                format!("{wall} does not exist on {date} in {tz} (clocks jump forward {shift})")
            }
            _ => format!("{wall} happens twice on {date} in {tz} (clocks go back {shift})"),
        }
    }

    fn adjustment(&self, kind: AdjustmentKind, naive: NaiveDateTime, shift: Duration, at: &DateTime<Tz>) -> Adjustment {
        let situation = self.situation(kind, naive, shift);
        let actual = at.format("%H:%M %Z");
        let action = match kind {
            AdjustmentKind::GapShiftedForward => format!("ran at {actual} instead (dstGapPolicy SHIFT_FORWARD)"),
            AdjustmentKind::GapAtTransition => format!("ran at the transition, {actual} (dstGapPolicy AT_TRANSITION)"),
            AdjustmentKind::GapSkipped => "skipped (dstGapPolicy SKIP)".to_owned(),
            AdjustmentKind::FoldEarlier => format!("ran once, at the earlier {actual} (dstFoldPolicy EARLIER)"),
            AdjustmentKind::FoldLater => format!("ran once, at the later {actual} (dstFoldPolicy LATER)"),
            AdjustmentKind::FoldBothFirst => format!("first of two runs, at {actual} (dstFoldPolicy BOTH)"),
            AdjustmentKind::FoldBothSecond => format!("second of two runs, at {actual} (dstFoldPolicy BOTH)"),
            AdjustmentKind::MonthEndLastDay | AdjustmentKind::MonthEndSkipped => {
                unreachable!("month-end notes are made by monthly_date")
            }
        };
        let note = format!("{situation}; {action}");
        Adjustment { kind, note }
    }
}

/// Iterator over a rule's occurrences in increasing UTC order.
pub struct Occurrences<'a> {
    rule: &'a Rule,
    index: u64,
    pending: Option<Occurrence>,
}

impl Iterator for Occurrences<'_> {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        if let Some(second) = self.pending.take() {
            return Some(second);
        }
        let [first, second] = self.rule.at(self.index);
        self.index += 1;
        // Only ONCE past its start, or a date past chrono's range, ends the
        // sequence.
        let first = first?;
        self.pending = second;
        Some(first)
    }
}

fn fold_length(earlier: &DateTime<Tz>, later: &DateTime<Tz>) -> Duration {
    later.with_timezone(&Utc) - earlier.with_timezone(&Utc)
}

fn last_day_of_month(year: i32, month: u32) -> NaiveDate {
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    NaiveDate::from_ymd_opt(next_year, next_month, 1).expect("valid month") - Days::new(1)
}

fn ordinal(day: u32) -> String {
    let suffix = match (day % 10, day % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{day}{suffix}")
}

fn human_duration(d: Duration) -> String {
    let minutes = d.num_minutes();
    match (minutes / 60, minutes % 60) {
        (h, 0) => format!("{h}h"),
        (0, m) => format!("{m}min"),
        (h, m) => format!("{h}h{m:02}"),
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Frequency::Once => "ONCE",
            Frequency::Daily => "DAILY",
            Frequency::Weekly => "WEEKLY",
            Frequency::Monthly => "MONTHLY",
        })
    }
}
