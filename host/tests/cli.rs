//! The `assets-host` binary, run as a user would.

use serde_json::Value;
use std::process::Command;

fn assets_host(args: &[&str]) -> (bool, String, String) {
    let component = assets_host::cli::default_component_path();
    assert!(
        component.exists(),
        "{} is missing; run `make test`",
        component.display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_assets-host"))
        .args(args)
        .env("ASSETS_COMPONENT", &component)
        .output()
        .expect("assets-host runs");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn trigger_json_reports_a_completed_scheduled_import_with_its_history() {
    let (ok, stdout, stderr) = assets_host(&["trigger", "--objects", "2500", "--json"]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "completed");
    assert_eq!(report["objects"], 2500);
    assert_eq!(report["scheduled"], true);
    // Default limit: 500 objects a chunk.
    assert_eq!(report["chunks"], 5);
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["executionId"], report["executionId"]);
    assert_eq!(history[0]["status"], "completed");
    assert_eq!(history[0]["objects"], 2500);
    assert_eq!(history[0]["scheduled"], true);
}

#[test]
fn trigger_json_reports_a_failed_import_with_a_bounded_reason() {
    let (ok, stdout, stderr) = assets_host(&[
        "trigger",
        "--objects",
        "2500",
        "--fail-after-page",
        "1",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "failed");
    let reason = report["failureReason"].as_str().unwrap();
    assert!(reason.contains("Connection timeout"), "{reason}");
    assert!(reason.chars().count() <= 1024);
    assert_eq!(report["history"][0]["status"], "failed");
    assert_eq!(report["history"][0]["failureReason"], reason);
}

#[test]
fn demo_prints_one_completed_and_one_failed_scheduled_run() {
    let (ok, stdout, stderr) = assets_host(&["demo"]);
    assert!(ok, "{stderr}");
    let table = stdout
        .split("Import history:")
        .nth(1)
        .expect("a history table");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains(" yes ") && l.contains("completed"))
            .count(),
        1,
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains(" yes ") && l.contains("failed"))
            .count(),
        1,
        "{table}"
    );
}

#[test]
fn a_missing_component_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_assets-host"))
        .args(["trigger", "--component", "/nonexistent/importer.wasm"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("/nonexistent/importer.wasm") && stderr.contains("make component"),
        "{stderr}"
    );
}
