//! A run still being invoked is never failed as abandoned (issue 24,
//! finding 1), end to end.
//!
//! A `--profile forge` server answers a scheduled callback 202 once the run
//! goes past its web trigger's invocation, and keeps invoking the app as
//! queued work. The run here reads its second page from a third party the
//! test owns, which holds that page; meanwhile the virtual clock jumps two
//! days, far past the run limit. The node that delivered the callback no
//! longer tracks the run, but the run's heartbeat says it is alive: it is
//! not failed, the next runs are skipped while it goes on, and once the page
//! comes it completes with every object.

mod common;

use common::{app_named, clock_now, composed_importer, daily_schedule, wait_for, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

/// A paged JSON list of two pages of two records: the first answered at
/// once, the second held until the test says. Reports each request for the
/// second page.
fn held_second_page() -> (String, Receiver<()>, Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (asked, asked_rx) = channel();
    let (release, released) = channel::<()>();
    let next = format!("{base}/items?page=2");
    std::thread::spawn(move || {
        let mut released = Some(released);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let body = if head.starts_with("GET /items?page=2 ") {
                let _ = asked.send(());
                // A hang guard, not a timing: the test releases it.
                if let Some(released) = released.take() {
                    let _ = released.recv_timeout(Duration::from_secs(600));
                }
                r#"{"results":[{"id":3,"name":"c"},{"id":4,"name":"d"}],"next":null}"#.to_owned()
            } else {
                format!(r#"{{"results":[{{"id":1,"name":"a"}},{{"id":2,"name":"b"}}],"next":"{next}"}}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, asked_rx, release)
}

fn occurrences(server: &Server) -> Vec<Value> {
    let (status, page) = server.admin("GET", "/_admin/occurrences", None);
    assert_eq!(status, 200, "{page}");
    let mut entries = page["occurrences"].as_array().unwrap().clone();
    entries.sort_by(|a, b| a["nominalTime"].as_str().cmp(&b["nominalTime"].as_str()));
    entries
}

#[test]
fn a_forge_run_still_being_invoked_is_not_failed_when_the_clock_jumps_past_its_limit() {
    let (base, asked, release) = held_second_page();
    let app_arg = format!("imp={}", composed_importer().display());
    let allow = format!("imp:{base}");
    let url = format!("imp:source-url={base}/items?page=1");
    let server = Server::fresh(&[
        "--clock",
        "virtual",
        "--profile",
        "forge",
        "--app",
        &app_arg,
        "--app-allow",
        &allow,
        "--app-config",
        &url,
        "--app-config",
        "imp:source-records=results",
        "--app-config",
        "imp:source-pagination=next-url",
        "--app-config",
        "imp:map-object-type=device",
        "--app-config",
        "imp:map-external-id=id",
        "--app-config",
        "imp:map-label=name",
        // Pause after every page: the web trigger's own invocation reads the
        // first, and the second is read by queued work after the answer.
        "--app-config",
        "imp:time-limit-margin-ms=55000",
    ]);
    let app = app_named(&server, "imp");
    let schedule = daily_schedule(&app, clock_now(&server), 1);
    let (status, body) = server.call("POST", &Server::source_path(&app, "importschedule"), Some(schedule));
    assert_eq!(status, 201, "{body}");

    let fired = server.advance(2 * 3600);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        fired[0]["status"], "delivered",
        "answered 202, the run goes on: {fired:?}"
    );
    asked
        .recv_timeout(Duration::from_secs(600))
        .expect("hang guard: the queued work asks for the second page");

    // Two days later, with the run still waiting on its second page.
    let later = server.advance(2 * 24 * 3600);
    let statuses: Vec<&str> = later.iter().map(|f| f["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["skipped", "skipped"], "{later:?}");
    assert!(
        later
            .iter()
            .all(|f| f["reason"].as_str().unwrap_or_default().contains("still ingesting")),
        "{later:?}"
    );
    let first = occurrences(&server)[0].clone();
    assert_eq!(
        first["state"], "delivering",
        "the run being invoked is not failed: {first}"
    );

    release.send(()).unwrap();
    let first = wait_for("the run to end", || {
        let first = occurrences(&server)[0].clone();
        (first["state"] != "delivering").then_some(first)
    });
    assert_eq!(first["state"], "completed", "{first}");
    let line = wait_for("its history line to end", || {
        server
            .history(&app)
            .into_iter()
            .find(|l| l["executionId"] == first["executionId"] && l["status"] != "running")
    });
    assert_eq!(
        (line["status"].as_str(), line["objects"].as_u64()),
        (Some("completed"), Some(4)),
        "{line}"
    );
}

/// A run killed with its server (`kill -9`) goes on after the restart: its
/// heartbeat lapses, the occurrence is delivered again as attempt 2, and
/// the app resumes the same execution from its checkpoint, every object
/// once.
#[test]
fn a_scheduled_run_killed_with_its_server_goes_on_after_the_restart() {
    let (base, asked, release) = held_second_page();
    let app_arg = format!("imp={}", composed_importer().display());
    let allow = format!("imp:{base}");
    let url = format!("imp:source-url={base}/items?page=1");
    let extra = [
        "--clock",
        "virtual",
        "--app",
        &app_arg,
        "--app-allow",
        &allow,
        "--app-config",
        &url,
        "--app-config",
        "imp:source-records=results",
        "--app-config",
        "imp:source-pagination=next-url",
        "--app-config",
        "imp:map-object-type=device",
        "--app-config",
        "imp:map-external-id=id",
        "--app-config",
        "imp:map-label=name",
        // A chunk per object: the first page's first object is stored
        // before the second page is asked.
        "--app-config",
        "imp:chunk-max-objects=1",
    ];
    let db = common::temp_dir().join("state.db");
    let port = common::Port::new();
    let server = Server::start(&db, &port, &extra);
    let app = app_named(&server, "imp");
    let schedule = daily_schedule(&app, clock_now(&server), 1);
    let (status, body) = server.call("POST", &Server::source_path(&app, "importschedule"), Some(schedule));
    assert_eq!(status, 201, "{body}");
    // The advance waits for the run (local profile): it dies with the server.
    let base_url = server.base.clone();
    let advancing = std::thread::spawn(move || {
        let _ = ureq::post(&format!("{base_url}/_admin/clock/advance"))
            .timeout(Duration::from_secs(600))
            .send_string(r#"{"seconds": 7200}"#);
    });
    asked
        .recv_timeout(Duration::from_secs(600))
        .expect("hang guard: the run asks for its second page");
    let first = occurrences(&server)[0].clone();
    let execution = first["executionId"]
        .as_str()
        .expect("the run has its execution")
        .to_owned();
    let (_, before) = server.call(
        "GET",
        &Server::source_path(&app, &format!("executions/{execution}/status")),
        None,
    );
    assert_eq!(
        before["objectsReceived"], 1,
        "a chunk is stored before the kill: {before}"
    );

    server.kill_9();
    release.send(()).unwrap();
    advancing.join().unwrap();
    let server = Server::start(&db, &port, &extra);
    // Each pass (an advance of nothing) looks again; once the dead run's
    // heartbeat has lapsed, one delivers it again and waits for it.
    let entry = wait_for("the occurrence to end after the restart", || {
        server.advance(0);
        let entry = occurrences(&server)[0].clone();
        (entry["state"] != "delivering").then_some(entry)
    });
    assert_eq!(
        (
            entry["state"].as_str(),
            entry["attempt"].as_u64(),
            entry["executionId"].as_str()
        ),
        (Some("completed"), Some(2), Some(execution.as_str())),
        "delivered again and completed on the same execution: {entry}"
    );
    let (_, after) = server.call(
        "GET",
        &Server::source_path(&app, &format!("executions/{execution}/status")),
        None,
    );
    assert_eq!(
        (after["objects"].as_u64(), after["objectsReceived"].as_u64()),
        (Some(4), Some(4)),
        "every object, none twice: {after}"
    );
}
