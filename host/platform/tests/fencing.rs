//! Fencing: a delivery whose attempt was superseded writes nothing.
//!
//! Two schedulers share one service, as two nodes share one database. Node
//! A claims an occurrence and sends its callback, which hangs; A's lease
//! runs out (its peers no longer count it alive), node B takes the
//! occurrence over as attempt 2 and delivers it. Then A's callback fails.
//! A must not end the occurrence with attempt 1's reason, and attempt 1's
//! app, coming late, must not start an execution; attempt 2's execution is
//! linked and ends the occurrence.

use assets_platform::assets::journal::{Act, Writer, Written};
use assets_platform::assets::ledger::OccurrenceState;
use assets_platform::assets::ExecutionStatus;
use assets_platform::assets::{AssetsService, Delivery, ImportSource, Outcome, SourceType};
use assets_platform::clock::{Clock, VirtualClock};
use assets_platform::scheduler::{Callbacks, FiringStatus, Peers, Scheduler};
use assets_platform::trigger::TriggerOutcome;
use assets_runtime::bindings::import_callback::TriggerEvent;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The nodes whose leases have not run out.
struct Alive(Mutex<HashSet<String>>);

impl Peers for Alive {
    fn alive(&self) -> anyhow::Result<HashSet<String>> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// A callback that says it was entered, then hangs until released, then
/// fails as a cut connection does.
struct Hanging {
    entered: Mutex<Sender<TriggerEvent>>,
    release: Mutex<Receiver<()>>,
}

impl Callbacks for Hanging {
    fn call(&self, _: &ImportSource, _: &str, event: &TriggerEvent) -> Result<Option<TriggerOutcome>, String> {
        self.entered.lock().unwrap().send(event.clone()).unwrap();
        // A hang guard, not a timing: the test releases it at once.
        let _ = self.release.lock().unwrap().recv_timeout(Duration::from_secs(300));
        Err("connection reset by peer (attempt 1's own failure)".into())
    }
}

/// A callback the app accepts (it reports through the API later).
#[derive(Default)]
struct Accepting(Mutex<Vec<TriggerEvent>>);

impl Callbacks for Accepting {
    fn call(&self, _: &ImportSource, _: &str, event: &TriggerEvent) -> Result<Option<TriggerOutcome>, String> {
        self.0.lock().unwrap().push(event.clone());
        Ok(None)
    }
}

fn call(service: &AssetsService, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let answer = service.handle(method, path, body.as_bytes());
    (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null))
}

/// Creates an execution as the app of `attempt` at `occurrence` would,
/// through the platform's confinement (which says which delivery calls).
fn create_as(service: &AssetsService, base: &str, occurrence: &str, attempt: u32) -> (u16, Value) {
    let delivery = Delivery::new(occurrence, attempt);
    call_as(
        service,
        &delivery,
        "POST",
        &format!("{base}/executions"),
        &json!({"scheduled": true}),
    )
}

#[test]
fn claims_dropped_unsent_are_not_callbacks_in_flight() {
    // A stopping node waits for its callbacks in flight before it gives its
    // lease up; claims its delivery pool had queued are dropped unsent (they
    // stay claimed and are delivered again), and must not hold it for ever.
    let clock = Arc::new(VirtualClock::new("2026-11-02T12:00:00Z".parse().unwrap()));
    let service = Arc::new(AssetsService::new(clock.clone()));
    let workspace = service.create_workspace();
    let source = service
        .create_import_source(&workspace, SourceType::External, Some("app".into()))
        .unwrap();
    let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}");
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/importschedule"),
        &json!({"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
                "callbackUrl": "https://app.example/callback"}),
    );
    assert_eq!(status, 201, "{body}");
    let accepting = Arc::new(Accepting::default());
    let scheduler = Scheduler::new(service.clone()).with_callbacks(accepting.clone());
    clock.set("2026-11-02T13:00:00Z".parse().unwrap());
    let (_, claims) = scheduler.claim_due(clock.now());
    assert_eq!(claims.len(), 1);
    assert_eq!(scheduler.in_flight(), 0, "claimed, not yet sent");
    drop(claims);
    assert_eq!(scheduler.in_flight(), 0, "dropped unsent: nothing in flight");
}

#[test]
fn a_superseded_attempt_neither_ends_the_occurrence_nor_starts_an_execution() {
    let clock = Arc::new(VirtualClock::new("2026-11-02T12:00:00Z".parse().unwrap()));
    let service = Arc::new(AssetsService::new(clock.clone()));
    let workspace = service.create_workspace();
    let source = service
        .create_import_source(&workspace, SourceType::External, Some("app".into()))
        .unwrap();
    let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}");
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/importschedule"),
        &json!({"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
                "callbackUrl": "https://app.example/callback"}),
    );
    assert_eq!(status, 201, "{body}");

    let peers = Arc::new(Alive(Mutex::new(HashSet::from(["a".to_owned(), "b".to_owned()]))));
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let hanging = Arc::new(Hanging {
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let accepting = Arc::new(Accepting::default());
    let a = Arc::new(
        Scheduler::new(service.clone())
            .with_peers("a", peers.clone())
            .with_callbacks(hanging),
    );
    let b = Scheduler::new(service.clone())
        .with_peers("b", peers.clone())
        .with_callbacks(accepting.clone());

    clock.set("2026-11-02T13:00:00Z".parse().unwrap());
    let (_, claims) = a.claim_due(clock.now());
    assert_eq!(claims.len(), 1);
    let first = std::thread::spawn({
        let a = a.clone();
        move || {
            let claim = claims.into_iter().next().unwrap();
            a.fire(claim)
        }
    });
    let sent = entered
        .recv_timeout(Duration::from_secs(300))
        .expect("A sent its callback");
    assert_eq!(sent.attempt, 1);
    let occurrence = sent.occurrence_id.clone();

    // A's lease runs out while its callback hangs; B takes the occurrence over.
    peers.0.lock().unwrap().remove("a");
    clock.set("2026-11-02T13:01:00Z".parse().unwrap());
    let (_, taken) = b.claim_due(clock.now());
    assert_eq!(taken.len(), 1, "B takes over the delivery A lost");
    let fired = b.fire(taken.into_iter().next().unwrap());
    assert_eq!(fired.status, FiringStatus::Delivered, "{fired:?}");
    assert_eq!(accepting.0.lock().unwrap()[0].attempt, 2);

    // Now A's callback fails: its end of the occurrence must change nothing.
    release.send(()).unwrap();
    let stale = first.join().unwrap();
    assert_eq!(
        stale.status,
        FiringStatus::Failed,
        "A saw its own callback fail: {stale:?}"
    );
    let entry = service.state().occurrence(&occurrence).cloned().unwrap();
    assert_eq!(
        (entry.state, entry.attempt, entry.reason.as_deref()),
        (OccurrenceState::Delivering, 2, None),
        "attempt 2 still holds the occurrence: {entry:?}"
    );

    // Attempt 1's app, late, cannot start an execution; attempt 2's can.
    let (status, body) = create_as(&service, &base, &occurrence, 1);
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (409, Some("SUPERSEDED")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap_or_default().contains("attempt 2"),
        "the refusal names who holds it: {body}"
    );
    let (status, body) = create_as(&service, &base, &occurrence, 2);
    assert_eq!(status, 201, "{body}");
    let link = body["links"]["cancel"].as_str().unwrap();
    let execution = link.rsplit('/').next().unwrap().to_owned();
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/executions/{execution}/history/completed"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{body}");

    let entry = service.state().occurrence(&occurrence).cloned().unwrap();
    assert_eq!(
        (entry.state, entry.attempt, entry.execution_id.as_deref()),
        (OccurrenceState::Completed, 2, Some(execution.as_str())),
        "{entry:?}"
    );
    let lines: Vec<_> = service
        .history(&source)
        .unwrap()
        .into_iter()
        .filter(|line| line.occurrence_id.as_deref() == Some(occurrence.as_str()))
        .collect();
    assert_eq!(lines.len(), 1, "one line for the occurrence: {lines:?}");
    assert_eq!(
        (lines[0].status, lines[0].execution_id.as_deref()),
        (Outcome::Completed, Some(execution.as_str())),
        "{lines:?}"
    );
}

/// Calls the API as the app of `delivery`, as the platform's in-process
/// backend does for a hosted app (the platform's word on who calls).
fn call_as(service: &AssetsService, delivery: &Delivery, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let answer = service.handle_for(method, path, None, body.as_bytes(), Some(delivery));
    (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::Null))
}

fn chunk(ids: &[&str]) -> Value {
    json!({
        "objectTypeId": "host",
        "objects": ids.iter().map(|id| json!({"externalId": id, "label": id, "attributes": {}})).collect::<Vec<_>>(),
    })
}

#[test]
fn a_superseded_attempt_cannot_write_the_execution_that_passed_to_the_next() {
    // Attempt 1's app creates an execution and sends a chunk; its node stops
    // beating (paused past its lease) and node B delivers attempt 2, to
    // which the execution passes. When attempt 1's app wakes, its chunks,
    // its completion and its failure change nothing; a delivery of another
    // occurrence cannot write it either; attempt 2 goes on and completes it.
    let clock = Arc::new(VirtualClock::new("2026-11-02T12:00:00Z".parse().unwrap()));
    let service = Arc::new(AssetsService::new(clock.clone()));
    let workspace = service.create_workspace();
    let source = service
        .create_import_source(&workspace, SourceType::External, Some("app".into()))
        .unwrap();
    let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}");
    let (status, body) = call(
        &service,
        "POST",
        &format!("{base}/importschedule"),
        &json!({"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
                "callbackUrl": "https://app.example/callback"}),
    );
    assert_eq!(status, 201, "{body}");
    let peers = Arc::new(Alive(Mutex::new(HashSet::from(["a".to_owned(), "b".to_owned()]))));
    let accepting = Arc::new(Accepting::default());
    let a = Scheduler::new(service.clone())
        .with_peers("a", peers.clone())
        .with_callbacks(accepting.clone());
    let b = Scheduler::new(service.clone())
        .with_peers("b", peers.clone())
        .with_callbacks(accepting.clone());

    clock.set("2026-11-02T13:00:00Z".parse().unwrap());
    let (_, claims) = a.claim_due(clock.now());
    assert_eq!(claims.len(), 1);
    let fired = a.fire(claims.into_iter().next().unwrap());
    assert_eq!(fired.status, FiringStatus::Delivered, "{fired:?}");
    let occurrence = accepting.0.lock().unwrap()[0].occurrence_id.clone();
    let first = Delivery::new(occurrence.clone(), 1);
    let (status, body) = call_as(
        &service,
        &first,
        "POST",
        &format!("{base}/executions"),
        &json!({"scheduled": true}),
    );
    assert_eq!(status, 201, "{body}");
    let execution = body["links"]["cancel"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let exec = format!("{base}/executions/{execution}");
    let (status, body) = call_as(&service, &first, "POST", &format!("{exec}/data"), &chunk(&["a1"]));
    assert_eq!(status, 200, "{body}");

    // A's run stops beating and its lease lapses: B delivers attempt 2.
    let fence = assets_platform::assets::ledger::Fence {
        occurrence_id: occurrence.clone(),
        attempt: 1,
    };
    service
        .state()
        .renew_occurrence(&fence, chrono::Utc::now() - chrono::Duration::minutes(1))
        .unwrap();
    peers.0.lock().unwrap().remove("a");
    clock.set("2026-11-02T13:01:00Z".parse().unwrap());
    let (_, taken) = b.claim_due(clock.now());
    assert_eq!(taken.len(), 1, "B resumes the run A's node left");
    let fired = b.fire(taken.into_iter().next().unwrap());
    assert_eq!(fired.status, FiringStatus::Delivered, "{fired:?}");
    assert_eq!(accepting.0.lock().unwrap()[1].attempt, 2);
    let second = Delivery::new(occurrence.clone(), 2);

    // Attempt 1's app wakes up: every write it makes is refused.
    let writes = [
        ("POST", format!("{exec}/data"), chunk(&["stale"])),
        ("PUT", format!("{exec}/progress"), json!({"step": "stale"})),
        ("POST", format!("{exec}/history/completed"), Value::Null),
        (
            "POST",
            format!("{exec}/history/failed"),
            json!({"failureReason": "attempt 1, late"}),
        ),
        ("DELETE", exec.clone(), Value::Null),
    ];
    for (method, path, body) in &writes {
        let (status, answer) = call_as(&service, &first, method, path, body);
        assert_eq!(
            (status, answer["errorCode"].as_str()),
            (409, Some("SUPERSEDED")),
            "{method} {path} by attempt 1: {answer}"
        );
        assert!(
            answer["message"].as_str().unwrap_or_default().contains("attempt 2"),
            "the refusal names who holds it: {answer}"
        );
    }
    // Nor may another occurrence's delivery write it.
    service
        .state()
        .claim_occurrence(assets_platform::assets::ledger::LedgerEntry::claim(
            "another-occurrence".into(),
            "another-schedule".into(),
            "another-source".into(),
            clock.now(),
            "b",
            clock.now(),
            clock.now() + chrono::Duration::hours(1),
        ));
    let stranger = Delivery::new("another-occurrence", 1);
    for (method, path, body) in &writes {
        let (status, answer) = call_as(&service, &stranger, method, path, body);
        assert_eq!(
            (status, answer["errorCode"].as_str()),
            (409, Some("NOT_THIS_DELIVERY")),
            "{method} {path} by another occurrence's delivery: {answer}"
        );
    }
    // Nor does attempt 1's clean-up fail it when its app gives up: the
    // execution is attempt 2's now (found by the Jepsen-style test).
    assert_eq!(
        service.fail_created_by(&source, &first, "attempt 1's app trapped"),
        None,
        "a superseded delivery's clean-up fails nothing"
    );
    let (status, shown) = call(&service, "GET", &format!("{exec}/status"), &Value::Null);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (shown["status"].as_str(), shown["objects"].as_u64()),
        (Some("INGESTING"), Some(1)),
        "nothing the stale writers sent took effect: {shown}"
    );

    // Attempt 2 goes on from the checkpoint and completes.
    let (status, body) = call_as(&service, &second, "POST", &format!("{exec}/data"), &chunk(&["b1"]));
    assert_eq!(status, 200, "{body}");
    let (status, body) = call_as(
        &service,
        &second,
        "POST",
        &format!("{exec}/history/completed"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{body}");
    let entry = service.state().occurrence(&occurrence).cloned().unwrap();
    assert_eq!(
        (entry.state, entry.attempt, entry.execution_id.as_deref()),
        (OccurrenceState::Completed, 2, Some(execution.as_str())),
        "{entry:?}"
    );
    let state = service.state();
    let mut ids: Vec<_> = state
        .execution_by_id(&execution)
        .unwrap()
        .objects
        .keys()
        .map(|(_, id)| id.clone())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["a1", "b1"],
        "attempt 1's chunk before the take-over and attempt 2's"
    );
    drop(state);

    // The journal tells it: attempt 1's writes after the take-over, and the
    // stranger's, each refused; the execution ended by attempt 2, which
    // ended the occurrence.
    let journal: Vec<Written> = service
        .journal_page(0, 1000)
        .unwrap()
        .into_iter()
        .map(|stored| stored.written)
        .collect();
    let took_over = journal
        .iter()
        .position(|w| w.act == Act::TookOver && w.refused.is_none())
        .expect("the take-over is journaled");
    assert_eq!(journal[took_over].attempt, Some(2));
    let attempt_of = |w: &Written| match &w.by {
        Writer::Delivery { delivery } => Some(delivery.fence.attempt),
        _ => None,
    };
    let after = &journal[took_over..];
    let stale: Vec<&Written> = after.iter().filter(|w| attempt_of(w) == Some(1)).collect();
    assert_eq!(stale.len(), 2 * writes.len(), "{stale:?}");
    assert!(
        stale
            .iter()
            .all(|w| w.refused.is_some() && w.act == Act::Wrote && w.occurrence_id == occurrence),
        "attempt 1's and the stranger's writes were refused: {stale:?}"
    );
    let effective: Vec<_> = after[1..]
        .iter()
        .filter(|w| w.refused.is_none() && w.occurrence_id == occurrence)
        .map(|w| (w.act.clone(), attempt_of(w)))
        .collect();
    assert_eq!(
        effective,
        [
            (
                Act::ExecutionEnded {
                    status: ExecutionStatus::Processing
                },
                Some(2)
            ),
            (
                Act::Ended {
                    state: OccurrenceState::Completed
                },
                Some(2)
            ),
        ],
        "{after:?}"
    );
}

#[test]
fn an_attempt_ending_what_it_already_ended_is_not_journaled_as_stale() {
    // A callback's end after the execution it linked had ended the
    // occurrence is redundant, not stale: the journal keeps one end, and
    // no refusal. An end by a superseded attempt is journaled refused.
    let clock = Arc::new(VirtualClock::new("2026-11-02T12:00:00Z".parse().unwrap()));
    let service = Arc::new(AssetsService::new(clock.clone()));
    let workspace = service.create_workspace();
    let source = service
        .create_import_source(&workspace, SourceType::External, Some("app".into()))
        .unwrap();
    let base = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}");
    let now = clock.now();
    let entry = assets_platform::assets::ledger::LedgerEntry::claim(
        "o".into(),
        "s".into(),
        source.clone(),
        now,
        "a",
        now,
        now + chrono::Duration::hours(1),
    );
    assert!(service.state().claim_occurrence(entry));
    let delivery = Delivery::new("o", 1);
    let (status, body) = create_as(&service, &base, "o", 1);
    assert_eq!(status, 201, "{body}");
    let execution = body["links"]["cancel"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (status, body) = call_as(
        &service,
        &delivery,
        "POST",
        &format!("{base}/executions/{execution}/history/completed"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{body}");
    let node = Writer::Node { node: "a".into() };
    let fence = assets_platform::assets::ledger::Fence {
        occurrence_id: "o".into(),
        attempt: 1,
    };
    let again = service
        .state()
        .end_occurrence(&fence, OccurrenceState::Completed, None, now, &node);
    assert!(again.is_err(), "already ended");
    let stale = assets_platform::assets::ledger::Fence {
        occurrence_id: "o".into(),
        attempt: 0,
    };
    let superseded = service
        .state()
        .end_occurrence(&stale, OccurrenceState::Failed, Some("late".into()), now, &node);
    assert!(superseded.is_err(), "not its attempt");
    let ends: Vec<Written> = service
        .journal_page(0, 100)
        .unwrap()
        .into_iter()
        .map(|stored| stored.written)
        .filter(|w| matches!(w.act, Act::Ended { .. }))
        .collect();
    assert_eq!(
        ends.iter()
            .map(|w| (w.attempt, w.refused.is_some()))
            .collect::<Vec<_>>(),
        [(Some(1), false), (Some(0), true)],
        "one end, and the other attempt's refusal: {ends:?}"
    );
}
