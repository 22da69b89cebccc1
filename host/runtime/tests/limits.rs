//! The optional per-invocation limits: outbound HTTP requests per minute and
//! the invocation payload. The counting and measuring are tested on their
//! own; the misbehaving test guest (`make test-guest`) shows that a breach
//! fails the invocation by name even when the guest carries on.

use assets_runtime::bindings::assets_api::{CallError, Response};
use assets_runtime::bindings::import_callback::{FailedRun, PausedRun, RunError, RunOutcome, RunReport, TriggerEvent};
use assets_runtime::engine::{answer_payload_bytes, event_payload_bytes};
use assets_runtime::sandbox::{RequestWindow, REQUEST_WINDOW};
use assets_runtime::{AssetsBackend, Fault, Grants, Limits, Runtime};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[test]
fn a_hundred_requests_a_minute_are_admitted_and_the_hundred_and_first_is_refused() {
    let start = Instant::now();
    let window = RequestWindow::default();
    for k in 0..100 {
        // Spread over 59.4 s: all still inside one window.
        assert!(window.admit(start + Duration::from_millis(600 * k), 100), "request {k}");
    }
    assert!(!window.admit(start + Duration::from_millis(59_999), 100));
}

#[test]
fn a_request_is_admitted_again_once_the_window_has_moved_past_the_oldest() {
    let start = Instant::now();
    let window = RequestWindow::default();
    for _ in 0..100 {
        assert!(window.admit(start, 100));
    }
    assert!(!window.admit(start + REQUEST_WINDOW - Duration::from_millis(1), 100));
    // The 100 sent at `start` age out together, 60 s later.
    for _ in 0..100 {
        assert!(window.admit(start + REQUEST_WINDOW, 100));
    }
    assert!(!window.admit(start + REQUEST_WINDOW, 100));
}

#[test]
fn the_window_slides_rather_than_resetting_each_minute() {
    let start = Instant::now();
    let window = RequestWindow::default();
    assert!(window.admit(start, 2));
    assert!(window.admit(start + Duration::from_secs(30), 2));
    assert!(!window.admit(start + Duration::from_secs(59), 2));
    // The first has aged out; the second still counts.
    assert!(window.admit(start + Duration::from_secs(60), 2));
    assert!(!window.admit(start + Duration::from_secs(89), 2));
    assert!(window.admit(start + Duration::from_secs(90), 2));
}

#[test]
fn a_zero_limit_admits_nothing() {
    let window = RequestWindow::default();
    assert!(!window.admit(Instant::now(), 0));
}

#[test]
fn the_default_limits_are_the_documented_ones_and_leave_requests_and_payload_unlimited() {
    // The values `Limits::default` documents, written out here rather than
    // read back from another `Limits`, so a changed default fails this test.
    let limits = Limits::default();
    assert_eq!(limits.time, Duration::from_secs(900));
    assert_eq!(limits.memory_bytes, 512 << 20);
    assert_eq!((limits.outbound_per_minute, limits.payload_bytes), (None, None));
    // `Limits` stays `Copy`, and struct-update syntax keeps working: the
    // fields not named keep the documented defaults.
    let forge = Limits {
        outbound_per_minute: Some(100),
        payload_bytes: Some(5_000_000),
        ..limits
    };
    assert_eq!(
        (
            forge.time,
            forge.memory_bytes,
            forge.outbound_per_minute,
            forge.payload_bytes
        ),
        (Duration::from_secs(900), 512 << 20, Some(100), Some(5_000_000))
    );
}

#[test]
fn the_payload_of_an_answer_is_the_bytes_of_its_strings() {
    let completed = Ok(RunOutcome::Completed(RunReport {
        execution_id: "exec-1".into(),
        chunks_sent: 7,
        objects_sent: 3_000,
        retries: 2,
        replayed: false,
    }));
    assert_eq!(answer_payload_bytes(&completed), 6);
    let paused = Ok(RunOutcome::Paused(PausedRun {
        execution_id: "exec-22".into(),
        chunks_sent: 1,
        objects_sent: 1,
        retries: 0,
    }));
    assert_eq!(answer_payload_bytes(&paused), 7);
    let not_created = Err(RunError::ExecutionNotCreated("HTTP 503".into()));
    assert_eq!(answer_payload_bytes(&not_created), 8);
    let failed = Err(RunError::ImportFailed(FailedRun {
        execution_id: "e1".into(),
        reason: "x".repeat(6_000_121),
        reported: true,
        chunks_sent: 0,
        objects_sent: 0,
    }));
    assert_eq!(answer_payload_bytes(&failed), 6_000_123);
    // Bytes, not characters: "é" is two.
    assert_eq!(answer_payload_bytes(&Err(RunError::ExecutionNotCreated("é".into()))), 2);
}

#[test]
fn the_payload_of_an_event_is_the_bytes_of_its_strings() {
    let mut event = event("w1", "s1");
    event.schedule_id = Some("sched".into());
    event.occurrence_id = "occ".into();
    event.nominal_time = "2026-11-28T09:00:00Z".into();
    assert_eq!(event_payload_bytes(&event), 2 + 2 + 5 + 3 + 20);
    event.schedule_id = None;
    assert_eq!(event_payload_bytes(&event), 2 + 2 + 3 + 20);
}

#[test]
fn the_new_faults_name_their_limits() {
    assert_eq!(
        Fault::RequestRate { per_minute: 100 }.to_string(),
        "app exceeded the limit of 100 outbound HTTP requests per minute"
    );
    assert_eq!(
        Fault::PayloadLimit {
            bytes: 6_000_123,
            limit: 5_000_000
        }
        .to_string(),
        "the app's answer is 6000123 bytes, over the 5000000-byte invocation payload limit"
    );
    assert_eq!(
        Fault::EventPayloadLimit {
            bytes: 5_000_001,
            limit: 5_000_000
        }
        .to_string(),
        "the trigger event is 5000001 bytes, over the 5000000-byte invocation payload limit; the app was not run"
    );
}

// End to end, with the misbehaving guest's `probe`: it calls the Assets API,
// sends one outbound HTTP request, prints what it got, and returns
// `completed` with execution id "probe" whatever happened.

/// The misbehaving test guest built by `make test-guest`.
fn misbehaving() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let path = std::env::var_os("ASSETS_TEST_GUEST")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip2/wasm/misbehaving_guest.wasm")
            });
        Runtime::from_file(&path).unwrap_or_else(|e| panic!("{e:#}\n(build the guest with `make test-guest`)"))
    })
}

/// Answers every API call with an empty 404: the probe only prints it.
struct NoApi;

impl AssetsBackend for NoApi {
    fn call(
        &self,
        _method: assets_runtime::bindings::assets_api::Method,
        _path: &assets_runtime::ApiPath,
        _body: Option<&str>,
    ) -> Result<Response, CallError> {
        Ok(Response {
            status: 404,
            headers: vec![],
            body: String::new(),
        })
    }
}

fn event(workspace_id: &str, import_source_id: &str) -> TriggerEvent {
    TriggerEvent {
        workspace_id: workspace_id.into(),
        import_source_id: import_source_id.into(),
        scheduled: true,
        schedule_id: None,
        occurrence_id: String::new(),
        nominal_time: String::new(),
        attempt: 1,
    }
}

fn probe(event: &TriggerEvent, limits: Limits) -> assets_runtime::Invocation {
    probe_counted_in(event, limits, Arc::new(RequestWindow::default()))
}

/// The probe, its outbound requests counted in `window`.
fn probe_counted_in(event: &TriggerEvent, limits: Limits, window: Arc<RequestWindow>) -> assets_runtime::Invocation {
    let grants = Grants::new(event.workspace_id.clone(), Arc::new(NoApi))
        .with_config(Arc::new(BTreeMap::from([(
            "test-behaviour".to_owned(),
            "probe".to_owned(),
        )])))
        .with_request_window(window);
    misbehaving().invoke(event, grants, limits)
}

/// Why the host failed `invocation`, if it did (the generated answer types
/// have no `PartialEq`).
fn fault(invocation: &assets_runtime::Invocation) -> Option<Fault> {
    invocation.result.as_ref().err().cloned()
}

fn completed_probe(invocation: &assets_runtime::Invocation) -> bool {
    matches!(&invocation.result, Ok(Ok(RunOutcome::Completed(report))) if report.execution_id == "probe")
}

#[test]
fn a_request_within_the_rate_goes_out_and_the_invocation_completes() {
    let invocation = probe(
        &event("w1", "s1"),
        Limits {
            outbound_per_minute: Some(1),
            ..Limits::default()
        },
    );
    assert!(completed_probe(&invocation), "{:?}", invocation.result);
    // Past the rate limit, the request reached the granted client (no egress).
    assert!(
        invocation.guest_output.contains("the app's egress allowlist is empty"),
        "{}",
        invocation.guest_output
    );
}

#[test]
fn a_request_over_the_rate_is_not_sent_and_fails_the_invocation_though_the_guest_returned_ok() {
    let invocation = probe(
        &event("w1", "s1"),
        Limits {
            outbound_per_minute: Some(0),
            ..Limits::default()
        },
    );
    assert_eq!(fault(&invocation), Some(Fault::RequestRate { per_minute: 0 }));
    let output = &invocation.guest_output;
    assert!(
        output.contains("not sent: the app exceeded the limit of 0 outbound HTTP requests per minute"),
        "{output}"
    );
    assert!(!output.contains("egress allowlist"), "{output}");
}

#[test]
fn the_rate_is_the_apps_across_its_invocations_not_each_invocations() {
    // One request a minute: the probe's first invocation spends it, so a
    // second invocation of the same app within the minute may send nothing.
    // (Before, each invocation started a fresh window: N per call, not per app.)
    let limits = Limits {
        outbound_per_minute: Some(1),
        ..Limits::default()
    };
    let window = Arc::new(RequestWindow::default());
    let first = probe_counted_in(&event("w1", "s1"), limits, window.clone());
    assert!(completed_probe(&first), "{:?}", first.result);
    let second = probe_counted_in(&event("w1", "s1"), limits, window);
    assert_eq!(fault(&second), Some(Fault::RequestRate { per_minute: 1 }));
    // Another app, its own window: untouched by the first app's requests.
    let other = probe_counted_in(&event("w1", "s1"), limits, Arc::new(RequestWindow::default()));
    assert!(completed_probe(&other), "{:?}", other.result);
}

#[test]
fn a_wasi_sleep_past_the_time_limit_ends_at_the_limit() {
    // `std::thread::sleep` for a day in the guest (WASI's clock and `poll`,
    // not the `timer` import), then a spin. Such a wait blocks in the host,
    // where the epoch deadline cannot reach it, so it used to hold the
    // invocation the whole time. Returning at all shows the sleep was cut at
    // the deadline, and the spin after it can only end by the limit, so the
    // fault must name it. No wall-clock bound: the `recv_timeout` below is a
    // hang guard, minutes past the 1 s limit, and the 1 s itself is measured
    // by no test (the time limit's granularity is the epoch tick).
    let grants = Grants::new("w1", Arc::new(NoApi)).with_config(Arc::new(BTreeMap::from([(
        "test-behaviour".to_owned(),
        "wasi-sleep".to_owned(),
    )])));
    let limits = Limits {
        time: Duration::from_secs(1),
        ..Limits::default()
    };
    let (sent, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(misbehaving().invoke(&event("w1", "s1"), grants, limits));
    });
    let invocation = ended
        .recv_timeout(Duration::from_secs(300))
        .expect("hang guard: the day-long WASI sleep was not cut at the 1 s time limit");
    assert_eq!(
        fault(&invocation),
        Some(Fault::TimeLimit(Duration::from_secs(1))),
        "{:?}",
        invocation.result
    );
}

#[test]
fn an_answer_over_the_payload_limit_fails_the_invocation() {
    // The event's strings are 0 bytes; the answer's are "probe", 5.
    let empty = event("", "");
    let limits = |bytes| Limits {
        payload_bytes: Some(bytes),
        ..Limits::default()
    };
    assert!(completed_probe(&probe(&empty, limits(5))));
    let invocation = probe(&empty, limits(4));
    assert_eq!(fault(&invocation), Some(Fault::PayloadLimit { bytes: 5, limit: 4 }));
    assert!(!invocation.guest_output.is_empty(), "the guest ran");
}

#[test]
fn an_event_over_the_payload_limit_is_refused_before_the_app_runs() {
    let event = event("workspace", "source");
    let invocation = probe(
        &event,
        Limits {
            payload_bytes: Some(14),
            ..Limits::default()
        },
    );
    assert_eq!(
        fault(&invocation),
        Some(Fault::EventPayloadLimit { bytes: 15, limit: 14 })
    );
    assert_eq!(invocation.guest_output, "", "the guest never ran");
    assert_eq!(invocation.peak_memory_bytes, 0);
}
