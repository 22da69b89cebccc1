//! The `assets-host` binary, run as a user would.

mod common;

use common::composed_importer;
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
fn trigger_and_simulate_speak_the_cloud_dialect_when_asked() {
    let (ok, stdout, stderr) = assets_host(&["trigger", "--dialect", "cloud", "--objects", "1200", "--json"]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "completed", "{report}");
    // Progress reports exist only in the cloud dialect.
    assert_eq!(report["history"][0]["progress"]["objectsSent"], 1200, "{report}");

    let (ok, stdout, stderr) = assets_host(&[
        "simulate",
        "--dialect",
        "cloud",
        "--frequency",
        "DAILY",
        "--start",
        "2026-03-01T07:30:00Z",
        "--timezone",
        "Europe/Paris",
        "--days",
        "2",
        "--objects",
        "30",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{report}");
    for line in history {
        assert_eq!(line["status"], "completed", "{line}");
        assert_eq!(line["progress"]["objectsSent"], 30, "{line}");
    }

    let (ok, _, stderr) = assets_host(&["trigger", "--dialect", "cloud", "--config", "api-dialect=seed"]);
    assert!(!ok);
    assert!(stderr.contains("--dialect cloud contradicts"), "{stderr}");
}

#[test]
fn trigger_json_reports_a_failed_import_with_a_bounded_reason() {
    let (ok, stdout, stderr) = assets_host(&[
        "trigger",
        "--objects",
        "2500",
        "--fail-after-page",
        "1",
        "--config",
        "retry-base-delay-ms=20",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "failed");
    let reason = report["failureReason"].as_str().unwrap();
    assert!(reason.contains("Connection timeout"), "{reason}");
    assert!(
        reason.contains("gave up after 5 attempts"),
        "the timeout was retried first: {reason}"
    );
    assert!(reason.chars().count() <= 1024);
    assert_eq!(report["history"][0]["status"], "failed");
    assert_eq!(report["history"][0]["failureReason"], reason);
}

#[test]
fn demo_prints_one_completed_and_one_failed_scheduled_run() {
    let (ok, stdout, stderr) = assets_host(&["demo"]);
    assert!(ok, "{stderr}");
    let table = stdout.split("Import history:").nth(1).expect("a history table");
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

#[test]
fn serve_on_a_descriptor_that_is_not_open_refuses_naming_it() {
    // std opens nothing at 987 in a child; the server must say so and stop,
    // not abort on closing what it never owned.
    let (ok, _, stderr) = assets_host(&["serve", "--db", ":memory:", "--listen-fd", "987"]);
    assert!(!ok);
    assert!(stderr.contains("--listen-fd 987 is not an open descriptor"), "{stderr}");
    let (ok, _, stderr) = assets_host(&["serve", "--db", ":memory:", "--listen-fd", "1"]);
    assert!(!ok);
    assert!(stderr.contains("--listen-fd 1: descriptors 0 to 2"), "{stderr}");
}

#[test]
fn preview_json_lists_utc_local_and_notes() {
    let (ok, stdout, stderr) = assets_host(&[
        "preview",
        "--frequency",
        "DAILY",
        "--start",
        "2026-03-06T07:30:00Z",
        "--timezone",
        "America/New_York",
        "--count",
        "4",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let rows: Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[2]["utc"], "2026-03-08T07:30:00Z");
    assert_eq!(rows[2]["local"], "2026-03-08 03:30:00 EDT");
    assert!(rows[2]["note"].as_str().unwrap().contains("SHIFT_FORWARD"));
    assert_eq!(rows[3]["local"], "2026-03-09 02:30:00 EDT");
    assert!(rows[3]["note"].is_null());
}

#[test]
fn preview_refuses_bad_input_with_a_clear_message() {
    for (frequency, start, zone, words) in [
        ("HOURLY", "2026-03-06T07:30:00Z", "UTC", "ONCE, DAILY, WEEKLY, MONTHLY"),
        ("DAILY", "2026-03-06T07:30:00+01:00", "UTC", "must be in UTC"),
        ("DAILY", "2026-03-06T07:30:00Z", "Moon/Base", "IANA"),
    ] {
        let (ok, _, stderr) = assets_host(&[
            "preview",
            "--frequency",
            frequency,
            "--start",
            start,
            "--timezone",
            zone,
        ]);
        assert!(!ok, "{frequency} {start} {zone} was accepted");
        assert!(stderr.contains(words), "{stderr}");
    }
}

#[test]
fn simulate_json_runs_the_component_on_each_occurrence() {
    let (ok, stdout, stderr) = assets_host(&[
        "simulate",
        "--frequency",
        "WEEKLY",
        "--start",
        "2026-03-01T07:30:00Z",
        "--timezone",
        "America/New_York",
        "--days",
        "21",
        "--objects",
        "30",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        assert_eq!(run["status"], "completed");
        assert_eq!(run["objects"], 30);
        assert!(run["occurrenceId"].is_string());
    }
    assert_eq!(runs[1]["nominalUtc"], "2026-03-08T07:30:00Z");
    assert_eq!(runs[1]["local"], "2026-03-08 03:30 EDT");
    assert_eq!(runs[2]["local"], "2026-03-15 02:30 EDT");
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), 4);
    assert!(history
        .iter()
        .all(|h| h["scheduled"] == true && h["status"] == "completed"));
}

#[test]
fn egress_checker_prints_one_line_per_url_with_the_matching_entry() {
    let (ok, stdout, stderr) = assets_host(&[
        "egress",
        "--allow",
        "api.example.com",
        "--allow",
        "*.corp.example.com",
        "--allow",
        "http://localhost:8080",
        "https://api.example.com/v1/items",
        "https://a.b.corp.example.com/x",
        "https://corp.example.com/",
        "http://localhost:8080/ok",
        "https://api.example.com:8443/",
        "not a url",
    ]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(
        lines[0].starts_with("allowed") && lines[0].contains("matched api.example.com"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("allowed") && lines[1].contains("matched *.corp.example.com"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("denied"), "{}", lines[2]);
    assert!(
        lines[3].starts_with("allowed") && lines[3].contains("localhost:8080"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with("denied"),
        "the port is part of the host: {}",
        lines[4]
    );
    assert!(lines[5].starts_with("denied"), "{}", lines[5]);
}

/// Runs `command` (with its own `args`) on the composed HTTP JSON importer,
/// configured by the shipped NetBox file against the in-process mock of
/// `devices` devices, plus `grants`; returns the JSON report.
fn run_composed(command: &[&str], devices: &str, grants: &[&str]) -> Value {
    let component = composed_importer();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sources/http-json/netbox.conf");
    let mut args = command.to_vec();
    args.extend(["--component", component.to_str().unwrap(), "--config-file", config]);
    args.extend(["--mock-netbox", devices, "--json"]);
    args.extend(grants);
    let (ok, stdout, stderr) = assets_host(&args);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn trigger_runs_the_composed_importer_unchanged_with_a_config_file() {
    let report = run_composed(&["trigger"], "120", &["--allow", "netbox.example.com"]);
    assert_eq!(report["status"], "completed", "{report}");
    assert_eq!(report["objects"], 120);

    let report = run_composed(&["trigger"], "120", &[]);
    assert_eq!(report["status"], "failed");
    assert!(
        report["failureReason"]
            .as_str()
            .unwrap()
            .contains("egress allowlist refused"),
        "without --allow the source may call nothing: {report}"
    );
}

#[test]
fn simulate_runs_the_composed_importer_on_each_occurrence() {
    let simulate = [
        "simulate",
        "--frequency",
        "DAILY",
        "--start",
        "2026-03-01T07:30:00Z",
        "--timezone",
        "Europe/London",
        "--days",
        "3",
    ];
    let report = run_composed(&simulate, "75", &["--allow", "netbox.example.com"]);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "{report}");
    for run in runs {
        assert_eq!(
            (run["status"].as_str(), run["objects"].as_u64()),
            (Some("completed"), Some(75))
        );
    }
}
