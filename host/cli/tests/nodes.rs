//! Stopping a node of a PostgreSQL cluster (issue 24, finding 4).
//!
//! - A node stopped with SIGTERM exits 0: its PostgreSQL client is dropped
//!   off the async threads.
//! - It keeps its lease until the callbacks it is making have ended: no
//!   other node delivers attempt 2 of an occurrence whose attempt 1 is
//!   still being delivered by a node that is shutting down.

mod common;

use common::{clock_now, daily_schedule, fresh_postgres, temp_dir, wait_for, Port, Receiver, Server};
use serde_json::Value;

fn node(db: &str, name: &str, extra: &[&str]) -> Server {
    let log = temp_dir().join(format!("{name}.log"));
    Server::launch(db.as_ref(), log, &Port::new(), extra)
}

fn occurrences(server: &Server) -> Vec<Value> {
    let (status, page) = server.admin("GET", "/_admin/occurrences", None);
    assert_eq!(status, 200, "{page}");
    page["occurrences"].as_array().unwrap().clone()
}

#[test]
fn a_postgres_node_stopped_with_sigterm_exits_0() {
    let db = fresh_postgres();
    let server = node(&db, "alone", &["--clock", "virtual"]);
    // `stop` sends SIGTERM and asserts a successful exit.
    server.stop();
}

#[test]
fn two_advances_sent_at_once_to_two_nodes_add_up() {
    let db = fresh_postgres();
    let a = std::sync::Arc::new(node(&db, "a", &["--clock", "virtual"]));
    let b = std::sync::Arc::new(node(&db, "b", &["--clock", "virtual"]));
    let start = clock_now(&a);
    let advances: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|n| std::thread::spawn(move || n.advance(3600)))
        .collect();
    for advance in advances {
        advance.join().unwrap();
    }
    let end = start + chrono::Duration::hours(2);
    assert_eq!(clock_now(&a), end, "two hours asked, two hours moved");
    assert_eq!(clock_now(&b), end);
}

#[test]
fn a_stopping_node_keeps_its_lease_until_its_callback_has_ended() {
    let db = fresh_postgres();
    let receiver = Receiver::new();
    let allow = receiver.allow_entry();
    let extra = ["--clock", "virtual", "--callback-allow", allow.as_str()];
    let a = node(&db, "a", &extra);
    let b = node(&db, "b", &extra);
    let app = a.app();
    let mut schedule = daily_schedule(&app, clock_now(&a), 1);
    schedule["callbackUrl"] = receiver.url.clone().into();
    let (status, body) = a.call("POST", &Server::source_path(&app, "importschedule"), Some(schedule));
    assert_eq!(status, 201, "{body}");

    // A delivers attempt 1; the app holds the callback.
    let (a, advancing) = {
        let a = std::sync::Arc::new(a);
        let advancing = std::thread::spawn({
            let a = a.clone();
            move || a.advance(2 * 3600)
        });
        (a, advancing)
    };
    let first = Receiver::read(receiver.accept());
    assert_eq!(first.body["attempt"], 1, "{}", first.body);
    let owner = occurrences(&b)[0]["leaseOwner"].as_str().unwrap().to_owned();

    // A is told to stop while its callback is in flight.
    let signalled = chrono::Utc::now();
    let pid = a.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("A to start shutting down", || {
        a.log_text().contains("shutting down").then_some(())
    });
    // Its lease is renewed past the one it held when told to stop: it is
    // not given up while the callback goes on.
    let mut admin = postgres::Client::connect(&db, postgres::NoTls).unwrap();
    wait_for("A's lease to be renewed after the signal", || {
        let rows = admin
            .query("SELECT alive_until FROM nodes WHERE id = $1", &[&owner])
            .unwrap();
        let until: Option<chrono::DateTime<chrono::Utc>> = rows.first().map(|row| row.get(0));
        assert!(until.is_some(), "A gave its lease up while its callback was in flight");
        until
            .filter(|until| *until > signalled + chrono::Duration::seconds(6))
            .map(|_| ())
    });
    // So B, passing now, takes nothing over: no second callback.
    b.advance(60);
    receiver.listener.set_nonblocking(true).unwrap();
    assert!(
        receiver.listener.accept().is_err(),
        "B delivered the occurrence again while A's attempt 1 was in flight"
    );
    receiver.listener.set_nonblocking(false).unwrap();

    // The app answers; A's delivery ends, then A stops, exiting 0.
    Receiver::accept_callback(first.stream);
    advancing.join().unwrap();
    let a = std::sync::Arc::into_inner(a).unwrap();
    a.wait_exit();
    let entries = occurrences(&b);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["attempt"], 1, "{}", entries[0]);
}
