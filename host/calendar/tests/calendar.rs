//! Table tests of the calendar engine: DST gaps and folds in America/New_York
//! (spring forward 2026-03-08, fall back 2026-11-01) and Europe/London
//! (2026-03-29, 2026-10-25), month ends in leap and non-leap years, ONCE,
//! and a property test over many zones.

use assets_calendar::{AdjustmentKind, FoldPolicy, Frequency, GapPolicy, MonthEndPolicy, Occurrence, Policies, Rule};
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn rule(frequency: Frequency, start: &str, tz: Tz, policies: Policies) -> Rule {
    Rule::new(frequency, utc(start), tz, policies)
}

/// The first `n` occurrences as (UTC, runs, adjustment kind).
fn first(rule: &Rule, n: usize) -> Vec<(String, bool, Option<AdjustmentKind>)> {
    rule.occurrences()
        .take(n)
        .map(|o| {
            (
                o.instant.format("%Y-%m-%dT%H:%MZ").to_string(),
                o.runs,
                o.adjustment.map(|a| a.kind),
            )
        })
        .collect()
}

fn row(at: &str, runs: bool, kind: Option<AdjustmentKind>) -> (String, bool, Option<AdjustmentKind>) {
    (at.to_owned(), runs, kind)
}

const NY: Tz = chrono_tz::America::New_York;
const LONDON: Tz = chrono_tz::Europe::London;
const DUBLIN: Tz = chrono_tz::Europe::Dublin;
/// Clocks jump at midnight: 2026-09-06 00:00 -04 becomes 01:00 -03.
const SANTIAGO: Tz = chrono_tz::America::Santiago;
/// Samoa skipped 2011-12-30: 23:59:59 -10 on the 29th, then 00:00 +14 on the 31st.
const APIA: Tz = chrono_tz::Pacific::Apia;

fn gap(policy: GapPolicy) -> Policies {
    Policies {
        gap: policy,
        ..Policies::default()
    }
}
fn fold(policy: FoldPolicy) -> Policies {
    Policies {
        fold: policy,
        ..Policies::default()
    }
}

#[test]
fn daily_holds_the_local_wall_time_across_both_new_york_changes() {
    // 10:00 New York is 15:00Z in winter and 14:00Z in summer: never "every 24 h".
    let r = rule(Frequency::Daily, "2026-03-07T15:00:00Z", NY, Policies::default());
    assert_eq!(
        first(&r, 3),
        vec![
            row("2026-03-07T15:00Z", true, None),
            row("2026-03-08T14:00Z", true, None),
            row("2026-03-09T14:00Z", true, None)
        ]
    );
    let after_fall_back: Vec<_> = r
        .occurrences_after(utc("2026-10-30T00:00:00Z"))
        .take(3)
        .map(|o| o.instant)
        .collect();
    assert_eq!(
        after_fall_back,
        vec![
            utc("2026-10-30T14:00:00Z"),
            utc("2026-10-31T14:00:00Z"),
            utc("2026-11-01T15:00:00Z")
        ]
    );
}

#[test]
fn new_york_spring_forward_gap_under_each_policy() {
    // 02:30 EST on 2026-03-06 = 07:30Z; 02:30 does not exist on 2026-03-08.
    let start = "2026-03-06T07:30:00Z";
    let expected_after = row("2026-03-09T06:30Z", true, None); // 02:30 EDT
    let shift = rule(Frequency::Daily, start, NY, gap(GapPolicy::ShiftForward));
    assert_eq!(
        first(&shift, 4),
        vec![
            row("2026-03-06T07:30Z", true, None),
            row("2026-03-07T07:30Z", true, None),
            row("2026-03-08T07:30Z", true, Some(AdjustmentKind::GapShiftedForward)), // 03:30 EDT
            expected_after.clone(),
        ]
    );
    let note = shift.occurrences().nth(2).unwrap().adjustment.unwrap().note;
    assert!(
        note.contains("02:30 does not exist on 2026-03-08 in America/New_York"),
        "{note}"
    );
    assert!(note.contains("03:30 EDT") && note.contains("1h"), "{note}");

    let skip = rule(Frequency::Daily, start, NY, gap(GapPolicy::Skip));
    assert_eq!(
        first(&skip, 4)[2],
        row("2026-03-08T07:30Z", false, Some(AdjustmentKind::GapSkipped))
    );
    assert_eq!(first(&skip, 4)[3], expected_after);

    let at = rule(Frequency::Daily, start, NY, gap(GapPolicy::AtTransition));
    assert_eq!(
        first(&at, 4)[2],
        row("2026-03-08T07:00Z", true, Some(AdjustmentKind::GapAtTransition))
    ); // 03:00 EDT
}

#[test]
fn new_york_fall_back_fold_under_each_policy() {
    // 01:30 EDT on 2026-10-31 = 05:30Z; on 2026-11-01, 01:30 is 05:30Z (EDT) and 06:30Z (EST).
    let start = "2026-10-31T05:30:00Z";
    let earlier = rule(Frequency::Daily, start, NY, fold(FoldPolicy::Earlier));
    assert_eq!(
        first(&earlier, 3),
        vec![
            row("2026-10-31T05:30Z", true, None),
            row("2026-11-01T05:30Z", true, Some(AdjustmentKind::FoldEarlier)),
            row("2026-11-02T06:30Z", true, None),
        ]
    );
    let later = rule(Frequency::Daily, start, NY, fold(FoldPolicy::Later));
    assert_eq!(
        first(&later, 3)[1],
        row("2026-11-01T06:30Z", true, Some(AdjustmentKind::FoldLater))
    );
    let both = rule(Frequency::Daily, start, NY, fold(FoldPolicy::Both));
    assert_eq!(
        first(&both, 4),
        vec![
            row("2026-10-31T05:30Z", true, None),
            row("2026-11-01T05:30Z", true, Some(AdjustmentKind::FoldBothFirst)),
            row("2026-11-01T06:30Z", true, Some(AdjustmentKind::FoldBothSecond)),
            row("2026-11-02T06:30Z", true, None),
        ]
    );
}

#[test]
fn london_gap_and_fold() {
    // 01:30 GMT on 2026-03-27 = 01:30Z. Clocks jump 01:00 → 02:00 on 2026-03-29
    // and fall 02:00 → 01:00 on 2026-10-25.
    let r = rule(Frequency::Daily, "2026-03-27T01:30:00Z", LONDON, Policies::default());
    assert_eq!(
        first(&r, 4),
        vec![
            row("2026-03-27T01:30Z", true, None),
            row("2026-03-28T01:30Z", true, None),
            row("2026-03-29T01:30Z", true, Some(AdjustmentKind::GapShiftedForward)), // 02:30 BST
            row("2026-03-30T00:30Z", true, None),                                    // 01:30 BST
        ]
    );
    let fall: Vec<_> = r
        .occurrences_after(utc("2026-10-24T00:00:00Z"))
        .take(3)
        .map(|o| (o.instant, o.adjustment.map(|a| a.kind)))
        .collect();
    assert_eq!(
        fall,
        vec![
            (utc("2026-10-24T00:30:00Z"), None),
            (utc("2026-10-25T00:30:00Z"), Some(AdjustmentKind::FoldEarlier)), // the first 01:30, BST
            (utc("2026-10-26T01:30:00Z"), None),                              // 01:30 GMT
        ]
    );
}

#[test]
fn at_transition_lands_exactly_on_the_transition_instant() {
    // (zone, first run, which occurrence falls in the gap, the transition)
    let cases = [
        // 02:10 EST; 02:10 does not exist on 2026-03-08, the clocks jump at 07:00Z.
        (NY, "2026-03-06T07:10:00Z", 2, "2026-03-08T07:00:00Z"),
        // 01:30 GMT; Irish Standard Time starts at 01:00Z on 2026-03-29.
        (DUBLIN, "2026-03-27T01:30:00Z", 2, "2026-03-29T01:00:00Z"),
        // 00:30 -04; midnight does not exist on 2026-09-06.
        (SANTIAGO, "2026-09-04T04:30:00Z", 2, "2026-09-06T04:00:00Z"),
        // 10:00 -10; the whole of 2011-12-30 does not exist.
        (APIA, "2011-12-28T20:00:00Z", 2, "2011-12-30T10:00:00Z"),
    ];
    for (tz, start, nth, transition) in cases {
        let r = rule(Frequency::Daily, start, tz, gap(GapPolicy::AtTransition));
        let o = r.occurrences().nth(nth).unwrap();
        // DateTime equality includes the nanoseconds: no fraction of a second.
        assert_eq!(o.instant, utc(transition), "{tz} from {start}");
        assert!(o.runs);
        let adjustment = o.adjustment.unwrap();
        assert_eq!(adjustment.kind, AdjustmentKind::GapAtTransition, "{}", adjustment.note);
    }
}

#[test]
fn a_zone_that_skips_a_whole_day_never_repeats_an_instant() {
    // Daily at 10:00 in Apia from 2011-12-28: the 30th does not exist, and
    // 10:00 on the 30th moved forward 24 h is 10:00 on the 31st, the next run.
    let next_run = row("2011-12-30T20:00Z", true, None); // 10:00 +14 on the 31st
    for policy in [GapPolicy::ShiftForward, GapPolicy::Skip] {
        let r = rule(Frequency::Daily, "2011-12-28T20:00:00Z", APIA, gap(policy));
        assert_eq!(
            first(&r, 4),
            vec![
                row("2011-12-28T20:00Z", true, None),
                row("2011-12-29T20:00Z", true, None),
                // Skipped, recorded at the transition: between its neighbours.
                row("2011-12-30T10:00Z", false, Some(AdjustmentKind::GapSkipped)),
                next_run.clone(),
            ],
            "{policy:?}"
        );
        let note = r.occurrences().nth(2).unwrap().adjustment.unwrap().note;
        assert!(
            note.contains("10:00 does not exist on 2011-12-30 in Pacific/Apia"),
            "{note}"
        );
        let why = match policy {
            GapPolicy::ShiftForward => "it would fall on the next run, 2011-12-31 10:00",
            _ => "skipped (dstGapPolicy SKIP)",
        };
        assert!(note.contains(why), "{note}");
    }
    let at = rule(
        Frequency::Daily,
        "2011-12-28T20:00:00Z",
        APIA,
        gap(GapPolicy::AtTransition),
    );
    assert_eq!(
        first(&at, 4)[2..],
        [
            row("2011-12-30T10:00Z", true, Some(AdjustmentKind::GapAtTransition)),
            next_run
        ]
    );
}

#[test]
fn weekly_keeps_the_weekday_and_wall_time() {
    // Sunday 2026-03-01 02:30 EST; the next Sunday is the gap day.
    let r = rule(Frequency::Weekly, "2026-03-01T07:30:00Z", NY, Policies::default());
    let got: Vec<_> = r.occurrences().take(3).collect();
    assert_eq!(got[1].instant, utc("2026-03-08T07:30:00Z"));
    assert_eq!(
        got[1].adjustment.as_ref().unwrap().kind,
        AdjustmentKind::GapShiftedForward
    );
    assert_eq!(got[2].instant, utc("2026-03-15T06:30:00Z"));
    for o in &got {
        assert_eq!(o.instant.with_timezone(&NY).weekday(), chrono::Weekday::Sun);
    }
}

#[test]
fn monthly_on_the_31st_runs_on_the_last_day_of_short_months_by_default() {
    // 10:00 New York on 2026-01-31 (non-leap year).
    let r = rule(Frequency::Monthly, "2026-01-31T15:00:00Z", NY, Policies::default());
    let got: Vec<_> = r.occurrences().take(4).collect();
    let local: Vec<_> = got
        .iter()
        .map(|o| o.instant.with_timezone(&NY).format("%Y-%m-%d %H:%M").to_string())
        .collect();
    assert_eq!(
        local,
        vec![
            "2026-01-31 10:00",
            "2026-02-28 10:00",
            "2026-03-31 10:00",
            "2026-04-30 10:00"
        ]
    );
    let note = got[1].adjustment.as_ref().unwrap();
    assert_eq!(note.kind, AdjustmentKind::MonthEndLastDay);
    assert!(
        note.note.contains("February 2026 has no day 31") && note.note.contains("28th"),
        "{}",
        note.note
    );
    assert!(got[2].adjustment.is_none());

    // Leap year: February 2028 has a 29th.
    let leap = rule(Frequency::Monthly, "2028-01-31T15:00:00Z", NY, Policies::default());
    assert_eq!(leap.occurrences().nth(1).unwrap().instant.with_timezone(&NY).day(), 29);
    // On the 29th: adjusted in 2027, not in 2028.
    let r29 = rule(Frequency::Monthly, "2027-01-29T15:00:00Z", NY, Policies::default());
    let feb2027 = r29.occurrences().nth(1).unwrap();
    assert_eq!(
        (
            feb2027.instant.with_timezone(&NY).day(),
            feb2027.adjustment.unwrap().kind
        ),
        (28, AdjustmentKind::MonthEndLastDay)
    );
    let feb2028 = r29.occurrences().nth(13).unwrap();
    assert_eq!(
        feb2028.instant.with_timezone(&NY).format("%Y-%m-%d").to_string(),
        "2028-02-29"
    );
    assert!(feb2028.adjustment.is_none());
}

#[test]
fn monthly_skip_policy_drops_short_months_and_says_so() {
    let r = rule(
        Frequency::Monthly,
        "2026-01-31T15:00:00Z",
        NY,
        Policies {
            month_end: MonthEndPolicy::Skip,
            ..Policies::default()
        },
    );
    let got: Vec<Occurrence> = r.occurrences().take(6).collect();
    let runs: Vec<_> = got
        .iter()
        .filter(|o| o.runs)
        .map(|o| o.instant.with_timezone(&NY).format("%m-%d").to_string())
        .collect();
    assert_eq!(runs, vec!["01-31", "03-31", "05-31"]);
    let dropped: Vec<_> = got
        .iter()
        .filter(|o| !o.runs)
        .map(|o| o.adjustment.clone().unwrap())
        .collect();
    assert_eq!(dropped.len(), 3);
    assert!(dropped.iter().all(|a| a.kind == AdjustmentKind::MonthEndSkipped));
    assert!(
        dropped[0].note.contains("February 2026 has no day 31"),
        "{}",
        dropped[0].note
    );
    // The next run after January skips February's dropped slot.
    assert_eq!(
        r.next_run_after(utc("2026-01-31T15:00:00Z")).unwrap().instant,
        utc("2026-03-31T14:00:00Z")
    );
}

#[test]
fn once_runs_exactly_once() {
    let r = rule(Frequency::Once, "2026-06-01T12:00:00Z", NY, Policies::default());
    assert_eq!(first(&r, 5), vec![row("2026-06-01T12:00Z", true, None)]);
    assert_eq!(
        r.next_run_after(utc("2026-06-01T11:59:59Z")).unwrap().instant,
        utc("2026-06-01T12:00:00Z")
    );
    assert!(r.next_run_after(utc("2026-06-01T12:00:00Z")).is_none());
}

#[test]
fn next_run_after_jumps_straight_to_the_right_occurrence() {
    let r = rule(Frequency::Daily, "2026-01-01T08:00:00Z", LONDON, Policies::default());
    let far = utc("2030-07-15T12:00:00Z");
    let next = r.next_run_after(far).unwrap();
    assert_eq!(next.instant, utc("2030-07-16T07:00:00Z")); // 08:00 BST
    let scanned = r.occurrences().find(|o| o.instant > far).unwrap();
    assert_eq!(next, scanned);
}

const ZONES: &[Tz] = &[
    chrono_tz::America::New_York,
    chrono_tz::America::Sao_Paulo,
    chrono_tz::America::St_Johns,
    chrono_tz::Europe::London,
    chrono_tz::Europe::Berlin,
    chrono_tz::Australia::Sydney,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Pacific::Chatham,
    chrono_tz::Europe::Dublin,
    chrono_tz::America::Santiago,
    chrono_tz::America::Havana,
    chrono_tz::UTC,
];

/// Found by `occurrences_increase_across_a_skipped_day`: daily at local
/// midnight, the wall time at which Apia's 2011-12-30 vanished. The
/// transition itself is then the next day's run, so the skipped day cannot
/// sit there.
#[test]
fn a_run_at_the_midnight_a_day_vanished_never_repeats_the_next_runs_instant() {
    for policy in [GapPolicy::ShiftForward, GapPolicy::Skip, GapPolicy::AtTransition] {
        let r = rule(Frequency::Daily, "2011-12-29T10:00:00Z", APIA, gap(policy));
        let runs: Vec<_> = r.occurrences().take(4).collect();
        for pair in runs.windows(2) {
            assert!(pair[1].instant > pair[0].instant, "{policy:?}: {runs:#?}");
        }
        let skipped = &runs[1];
        assert!(!skipped.runs, "{policy:?}: 2011-12-30 does not exist");
        assert_eq!(
            runs[2].instant,
            utc("2011-12-30T10:00:00Z"),
            "{policy:?}: the 31st at 00:00 +14"
        );
        assert!(runs[2].runs);
    }
}

proptest! {
    #[test]
    fn occurrences_increase_and_keep_their_wall_time_unless_a_rule_says_otherwise(
        zone in 0..ZONES.len(),
        frequency in prop::sample::select(vec![Frequency::Daily, Frequency::Weekly, Frequency::Monthly]),
        start_secs in 1_704_067_200i64..1_893_456_000i64, // 2024..2030
        gap in prop::sample::select(vec![GapPolicy::ShiftForward, GapPolicy::Skip, GapPolicy::AtTransition]),
        fold in prop::sample::select(vec![FoldPolicy::Earlier, FoldPolicy::Later, FoldPolicy::Both]),
        month_end in prop::sample::select(vec![MonthEndPolicy::LastDay, MonthEndPolicy::Skip]),
    ) {
        let tz = ZONES[zone];
        // Start on a minute boundary so the wall time is a whole minute.
        let start = DateTime::from_timestamp(start_secs - start_secs % 60, 0).unwrap();
        let r = Rule::new(frequency, start, tz, Policies { gap, fold, month_end });
        let wall = start.with_timezone(&tz).time();
        let start_local = start.with_timezone(&tz);
        let mut previous: Option<DateTime<Utc>> = None;
        for o in r.occurrences().take(400) {
            if let Some(p) = previous {
                prop_assert!(o.instant > p, "not increasing: {p} then {}", o.instant);
            }
            previous = Some(o.instant);
            let local = o.instant.with_timezone(&tz);
            match &o.adjustment {
                None => {
                    prop_assert!(o.runs);
                    prop_assert_eq!(local.time(), wall);
                    match frequency {
                        Frequency::Weekly => prop_assert_eq!(local.weekday(), start_local.weekday()),
                        Frequency::Monthly => prop_assert_eq!(local.day(), start_local.day()),
                        _ => {}
                    }
                }
                Some(a) => match a.kind {
                    AdjustmentKind::FoldEarlier | AdjustmentKind::FoldLater | AdjustmentKind::FoldBothFirst | AdjustmentKind::FoldBothSecond
                    | AdjustmentKind::MonthEndLastDay => {
                        prop_assert!(o.runs);
                        prop_assert_eq!(local.time(), wall, "{}", a.note);
                    }
                    AdjustmentKind::GapShiftedForward | AdjustmentKind::GapAtTransition => {
                        prop_assert!(o.runs);
                        prop_assert!(local.time() != wall, "{}", a.note);
                    }
                    AdjustmentKind::GapSkipped | AdjustmentKind::MonthEndSkipped => prop_assert!(!o.runs),
                },
            }
            prop_assert_eq!(local.second(), wall.second());
        }
    }

    #[test]
    fn occurrences_increase_across_a_skipped_day(
        frequency in prop::sample::select(vec![Frequency::Daily, Frequency::Weekly, Frequency::Monthly]),
        start_secs in 1_320_105_600i64..1_325_376_000i64, // 2011-11-01..2012-01-01, Apia
        gap in prop::sample::select(vec![GapPolicy::ShiftForward, GapPolicy::Skip, GapPolicy::AtTransition]),
    ) {
        let start = DateTime::from_timestamp(start_secs - start_secs % 60, 0).unwrap();
        let r = Rule::new(frequency, start, APIA, Policies { gap, ..Policies::default() });
        let instants: Vec<DateTime<Utc>> = r.occurrences().take(60).map(|o| o.instant).collect();
        for pair in instants.windows(2) {
            prop_assert!(pair[1] > pair[0], "not increasing: {} then {}", pair[0], pair[1]);
        }
        for o in r.occurrences().take(60) {
            prop_assert_eq!(o.instant.timestamp_subsec_nanos(), 0);
        }
    }

    #[test]
    fn next_run_after_agrees_with_a_full_scan(
        zone in 0..ZONES.len(),
        frequency in prop::sample::select(vec![Frequency::Once, Frequency::Daily, Frequency::Weekly, Frequency::Monthly]),
        start_secs in 1_704_067_200i64..1_800_000_000i64,
        probe_days in 0i64..2000,
        probe_secs in 0i64..86_400,
    ) {
        let tz = ZONES[zone];
        let start = DateTime::from_timestamp(start_secs - start_secs % 60, 0).unwrap();
        let r = Rule::new(frequency, start, tz, Policies::default());
        let probe = start + chrono::Duration::days(probe_days) + chrono::Duration::seconds(probe_secs) - chrono::Duration::days(3);
        let fast = r.next_run_after(probe);
        let slow = r.occurrences().take(3000).find(|o| o.instant > probe && o.runs);
        prop_assert_eq!(fast, slow);
    }
}
