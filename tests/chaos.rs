//! 500 scheduled runs through the virtual clock under random faults: every
//! run ends completed with exactly its objects, or failed with a reason;
//! nothing is stuck, lost, duplicated or run twice.

mod common;

use assets_host::chaos::{self, DEFAULT_PLAN};
use assets_platform::faults::FaultPlan;

#[test]
fn five_hundred_faulty_runs_keep_every_invariant() {
    let plan = FaultPlan::parse(DEFAULT_PLAN).unwrap();
    let report = chaos::run(common::runtime(), &plan, 500, 1).unwrap();
    assert!(report.runs >= 500, "{report:?}");
    assert_eq!(report.stuck, 0, "{report:?}");
    assert_eq!(report.orphaned, 0, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.duplicated, 0, "{report:?}");
    assert_eq!(report.double_executions, 0, "{report:?}");
    assert_eq!(report.bad_reasons, 0, "{report:?}");
    // The faults did bite: retries happened, duplicates were delivered and replayed.
    assert!(report.retries > 100, "{report:?}");
    assert!(report.duplicate_deliveries > 20 && report.replayed > 0, "{report:?}");
    assert!(report.completed > 400, "most runs survive their faults: {report:?}");
    // Runs paused at checkpoints and went on across invocations.
    assert!(
        report.resumed > 20 && report.invocations > report.runs as u64,
        "{report:?}"
    );
    // Checked data is freed: memory after 500 runs is close to memory after 50.
    assert!(
        report.rss_end_kib <= report.rss_early_kib + 16 * 1024,
        "resident memory grew from {} KiB to {} KiB",
        report.rss_early_kib,
        report.rss_end_kib
    );
}

#[test]
fn a_fault_plan_that_breaks_every_call_fails_runs_with_reasons_and_nothing_stuck() {
    let plan =
        FaultPlan::parse(r#"{"assetsApi":[{"endpoint":"data","fault":"status","status":503,"rate":1.0}]}"#).unwrap();
    let report = chaos::run(common::runtime(), &plan, 20, 7).unwrap();
    assert_eq!(report.stuck, 0, "{report:?}");
    assert_eq!(report.bad_reasons, 0, "{report:?}");
    // Sources with objects fail (their data never gets through); empty ones complete.
    assert!(report.failed > 0, "{report:?}");
}

#[test]
fn bad_fault_plans_are_refused_with_a_reason() {
    for (plan, words) in [
        (r#"{"assetsApi":[{"endpoint":"nowhere","fault":"reset"}]}"#, "endpoint"),
        (r#"{"assetsApi":[{"endpoint":"data","fault":"status"}]}"#, "status"),
        (
            r#"{"assetsApi":[{"endpoint":"data","fault":"reset","rate":2}]}"#,
            "rate",
        ),
        (r#"{"source":[{"fault":"melt"}]}"#, "melt"),
        (r#"{"sauce":[]}"#, "unknown field"),
    ] {
        let err = FaultPlan::parse(plan).unwrap_err().to_string();
        assert!(err.contains(words), "{plan}: {err}");
    }
}
