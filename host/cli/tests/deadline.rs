//! The time limit on a real clock: `assets-host trigger` with a source
//! whose pages take real time, more than a third of the app's limit.

use serde_json::Value;
use std::process::Command;

#[test]
fn a_real_clock_import_with_pages_slower_than_a_third_of_the_limit_completes_as_one_execution() {
    let component = assets_host::cli::default_component_path();
    assert!(
        component.exists(),
        "{} is missing; run `make test`",
        component.display()
    );
    // Five pages of 1.3 s under a 3 s limit, keeping 0.1 s to stop in:
    // two pages fit in an invocation, a third would end past the limit.
    // Pages of 100 never fill a chunk of 500, so an invocation stopped at
    // its limit would not have moved the import on, and the run would fail.
    let output = Command::new(env!("CARGO_BIN_EXE_assets-host"))
        .args([
            "trigger",
            "--objects",
            "500",
            "--page-size",
            "100",
            "--page-latency-ms",
            "1300",
            "--time-limit",
            "3",
            "--config",
            "time-limit-margin-ms=100",
            "--json",
        ])
        .env("ASSETS_COMPONENT", &component)
        .output()
        .expect("assets-host runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "completed", "{report:#}");
    assert_eq!(report["objects"], 500, "{report:#}");
    assert!(report.get("leftByApp").is_none(), "{report:#}");
    let invocations = report["invocations"].as_u64().unwrap();
    assert!(invocations >= 2, "the run went on across invocations: {report:#}");
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "one execution: {report:#}");
    assert_eq!(history[0]["status"], "completed", "{report:#}");
    assert_eq!(history[0]["objects"], 500, "{report:#}");
    assert_eq!(history[0]["invocations"], invocations, "{report:#}");
}
