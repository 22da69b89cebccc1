//! Three `assets-host serve` nodes on one PostgreSQL, as real processes
//! behind a small round-robin proxy, on one shared virtual clock: hundreds
//! of schedules across zones and frequencies, thousands of occurrences,
//! and a random node killed with `kill -9` (then restarted) every few
//! clock advances. At the end the ledger holds exactly the occurrences the
//! calendar crate computes for the schedules over the advanced window (by
//! schedule and instant, each once), each in one terminal state; only one
//! due during an advance in which a node was killed may have failed, and
//! then it says why; every completed one has exactly one execution holding
//! exactly its source's objects, each received once; and every node reads
//! the same history.
//!
//! Needs `ASSETS_TEST_PG`; `make test` starts a throwaway cluster.

mod common;

use common::{fresh_postgres, ledger, temp_dir, Port, Proxy, Server};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

type Utc = chrono::DateTime<chrono::Utc>;

const NODES: usize = 3;
const DAILY: usize = 180;
const WEEKLY: usize = 15;
const MONTHLY: usize = 5;
const ONCE: usize = 5;
const OBJECTS: u64 = 20;
const DAYS: u64 = 12;
/// Clock advance per step: three steps a day.
const STEP_SECS: u64 = 8 * 3600;
/// Where the shared virtual clock starts.
const CLOCK_START: &str = "2026-01-01T00:00:00Z";
/// Settling advances the clock an hour at a time, at most this often: a
/// dead node's lease (in platform time) runs out well within it.
const SETTLE_HOURS: usize = 24;
/// How long settling waits, past those hours, for the heartbeats of runs a
/// killed node left to lapse (20 s each) before it calls it a hang.
const HANG_GUARD: Duration = Duration::from_secs(300);
const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Europe/London",
];

struct Cluster {
    db: String,
    dir: std::path::PathBuf,
    ports: Vec<Port>,
    nodes: Vec<Option<Server>>,
    proxy: Proxy,
    /// The proxy's URL: the nodes' public URL, so their web triggers are
    /// callback targets wherever a schedule was created.
    public_url: String,
}

impl Cluster {
    fn node_args(public_url: &str) -> Vec<&str> {
        vec![
            "--public-url",
            public_url,
            "--clock",
            "virtual",
            "--clock-start",
            CLOCK_START,
            "--objects",
            "20",
            "--run-timeout-secs",
            "30",
        ]
    }

    fn start(&mut self, i: usize) {
        let log = self.dir.join(format!("node{i}.{}.log", uuid::Uuid::new_v4().simple()));
        self.nodes[i] = Some(Server::launch(
            std::ffi::OsStr::new(&self.db),
            log,
            &self.ports[i],
            &Cluster::node_args(&self.public_url),
        ));
        self.proxy.set_alive(i, true);
    }

    fn alive(&self) -> Vec<usize> {
        (0..NODES).filter(|&i| self.nodes[i].is_some()).collect()
    }

    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node running")
    }
}

/// Returns once the ledger `server` reads holds `count` occurrences due
/// after `from`, or `advance` has ended. Polls: the claims are the event.
fn wait_for_claims<T>(server: &Server, from: Utc, count: usize, advance: &std::thread::JoinHandle<T>) {
    let cursor = format!("{}_", from.timestamp_nanos_opt().unwrap());
    let guard = Instant::now();
    while !advance.is_finished() {
        let (status, page) = server.call("GET", &format!("/_admin/occurrences?cursor={cursor}"), None);
        if status != 200 || page["occurrences"].as_array().is_some_and(|o| o.len() >= count) {
            return;
        }
        // A hang guard, not the property: an advance takes seconds.
        assert!(
            guard.elapsed() < Duration::from_secs(300),
            "no {count} claims after {from} within 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The shared virtual clock, as `server` reads it.
fn clock(server: &Server) -> Utc {
    let (status, clock) = server.call("GET", "/_admin/clock", None);
    assert_eq!(status, 200, "{clock}");
    clock["now"].as_str().unwrap().parse().unwrap()
}

fn start_time(i: usize) -> String {
    // Eight instants a day, so runs fall due together and nodes share them.
    format!("2026-01-01T{:02}:30:00Z", (i % 8) * 3)
}

#[test]
fn three_nodes_on_one_postgres_survive_random_kill_9_without_double_or_lost_runs() {
    let started = Instant::now();
    let ports: Vec<Port> = (0..NODES).map(|_| Port::new()).collect();
    let proxy = Proxy::start(ports.iter().map(Port::number).collect());
    let mut cluster = Cluster {
        db: fresh_postgres(),
        dir: temp_dir(),
        ports,
        nodes: (0..NODES).map(|_| None).collect(),
        public_url: proxy.url.clone(),
        proxy,
    };
    // Together, as a deployment would start them: migrations and set-up
    // happen once.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..NODES)
            .map(|i| {
                let (db, dir, port) = (cluster.db.clone(), cluster.dir.clone(), &cluster.ports[i]);
                let public_url = cluster.public_url.clone();
                scope.spawn(move || {
                    let log = dir.join(format!("node{i}.first.log"));
                    Server::launch(std::ffi::OsStr::new(&db), log, port, &Cluster::node_args(&public_url))
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            cluster.nodes[i] = Some(h.join().unwrap());
        }
    });
    let apps: Vec<_> = (0..NODES).map(|i| cluster.node(i).app()).collect();
    assert!(
        apps.iter()
            .all(|a| (a.workspace_id.as_str(), a.import_source_id.as_str())
                == (apps[0].workspace_id.as_str(), apps[0].import_source_id.as_str())),
        "the nodes set up one workspace and one source for the app"
    );
    let workspace = apps[0].workspace_id.clone();
    let callback = format!("{}/apps/demo/webtrigger", cluster.public_url);

    // The schedules, each on its own import source, made through different nodes.
    let frequencies: Vec<&str> = std::iter::repeat_n("DAILY", DAILY)
        .chain(std::iter::repeat_n("WEEKLY", WEEKLY))
        .chain(std::iter::repeat_n("MONTHLY", MONTHLY))
        .chain(std::iter::repeat_n("ONCE", ONCE))
        .collect();
    let mut sources = Vec::new();
    // Each schedule's id and calendar rule: the expected ledger.
    let mut rules: Vec<(String, assets_calendar::Rule)> = Vec::new();
    for (i, frequency) in frequencies.iter().enumerate() {
        let node = cluster.node(i % NODES);
        let (status, source) = node.call(
            "POST",
            "/_admin/importsource",
            Some(json!({"workspaceId": workspace, "type": "external", "app": "demo"})),
        );
        assert_eq!(status, 201, "{source}");
        let source_id = source["id"].as_str().unwrap().to_owned();
        let start = if *frequency == "ONCE" {
            format!("2026-01-0{}T12:00:00Z", 2 + i % 5)
        } else {
            start_time(i)
        };
        let (status, body) = node.call(
            "POST",
            &format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source_id}/importschedule"),
            Some(json!({
                "runFrequency": frequency,
                "startTime": start,
                "timezone": ZONES[i % ZONES.len()],
                "callbackUrl": callback,
            })),
        );
        assert_eq!(status, 201, "{body}");
        let zone: chrono_tz::Tz = ZONES[i % ZONES.len()].parse().unwrap();
        let rule = assets_calendar::Rule::new(
            assets_calendar::Frequency::parse(frequency).unwrap(),
            start.parse().unwrap(),
            zone,
            assets_calendar::Policies::default(),
        );
        rules.push((body["id"].as_str().unwrap().to_owned(), rule));
        sources.push(source_id);
    }

    // Advance, killing a random node now and then, mid-advance.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let steps = DAYS * 24 * 3600 / STEP_SECS;
    let mut kills = 0;
    // The clock windows of the advances during which a node was killed:
    // only an occurrence due in one of them may fail.
    let mut kill_windows: Vec<(Utc, Utc)> = Vec::new();
    for step in 0..steps {
        let alive = cluster.alive();
        let advancer = alive[rng.usize(..alive.len())];
        let base = cluster.node(advancer).base.clone();
        // The window is read from the clock, not counted: an advance cut by
        // the kill of its node ends early, and the next starts from there.
        let from = clock(cluster.node(advancer));
        let advance = std::thread::spawn(move || {
            ureq::post(&format!("{base}/_admin/clock/advance"))
                .timeout(Duration::from_secs(300))
                .send_string(&json!({ "seconds": STEP_SECS }).to_string())
                .map(|r| r.status())
                .map_err(|e| e.to_string())
        });
        let mut killed = false;
        if step % 3 == 2 {
            // Mid-advance, on an event: once this advance has claimed a
            // random number of its occurrences (or has ended).
            wait_for_claims(cluster.node(advancer), from, rng.usize(1..40), &advance);
            let victim = rng.usize(..NODES);
            if let Some(node) = cluster.nodes[victim].take() {
                cluster.proxy.set_alive(victim, false);
                node.kill_9();
                kills += 1;
                killed = true;
            }
        }
        match advance.join().unwrap() {
            Ok(status) => assert_eq!(status, 200),
            // The advancing node itself was killed: the others carry on.
            Err(e) => assert!(cluster.nodes[advancer].is_none(), "advance failed on a live node: {e}"),
        }
        if killed {
            let to = clock(cluster.node(cluster.alive()[0]));
            kill_windows.push((from, to));
        }
        for i in 0..NODES {
            if cluster.nodes[i].is_none() && rng.bool() {
                cluster.start(i);
            }
        }
    }
    for i in 0..NODES {
        if cluster.nodes[i].is_none() {
            cluster.start(i);
        }
    }
    assert!(kills >= 5, "the test killed nodes ({kills})");

    // Settle: nothing in flight, each occurrence in its terminal state.
    common::settle(cluster.node(0), SETTLE_HOURS, HANG_GUARD);
    let end = clock(cluster.node(0));

    // Exactly the calendar's occurrences up to the clock's end, each once.
    let entries = ledger(cluster.node(1));
    let expected: BTreeSet<(String, Utc)> = rules
        .iter()
        .flat_map(|(id, rule)| {
            rule.occurrences()
                .take_while(|o| o.instant <= end)
                .map(|o| (id.clone(), o.instant))
        })
        .collect();
    let found: Vec<(String, Utc)> = entries
        .iter()
        .map(|e| {
            (
                e["scheduleId"].as_str().unwrap().to_owned(),
                e["nominalTime"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let found_set: BTreeSet<(String, Utc)> = found.iter().cloned().collect();
    assert_eq!(found_set.len(), found.len(), "an occurrence is in the ledger twice");
    let lost: Vec<_> = expected.difference(&found_set).collect();
    let extra: Vec<_> = found_set.difference(&expected).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "the ledger is not the calendar's set up to {end}: {} lost {lost:?}, {} not expected {extra:?}",
        lost.len(),
        extra.len()
    );
    let ids: HashSet<&str> = entries.iter().map(|e| e["occurrenceId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), entries.len(), "one ledger entry per occurrence id");

    // Completed, or — only when due during an advance in which a node was
    // killed — ended otherwise with a reason. A skip is the one consequence
    // that may fall later: the run before it on its schedule was left
    // delivering by a kill and was still going when it fell due. So a skipped
    // entry is explained when the nearest earlier entry of its schedule that
    // was not itself skipped was due in a kill window.
    let in_kill_window = |due: Utc| kill_windows.iter().any(|&(from, to)| from < due && due <= to);
    let due_of = |e: &Value| -> Utc { e["nominalTime"].as_str().unwrap().parse().unwrap() };
    let mut by_schedule: HashMap<&str, Vec<&Value>> = HashMap::new();
    for e in &entries {
        by_schedule
            .entry(e["scheduleId"].as_str().unwrap())
            .or_default()
            .push(e);
    }
    for runs in by_schedule.values_mut() {
        runs.sort_by_key(|e| due_of(e));
    }
    let left_running_by_a_kill = |e: &Value| -> bool {
        let runs = &by_schedule[e["scheduleId"].as_str().unwrap()];
        let due = due_of(e);
        runs.iter()
            .rev()
            .filter(|r| due_of(r) < due)
            .find(|r| r["state"] != "skipped")
            .is_some_and(|r| in_kill_window(due_of(r)))
    };
    let mut states: HashMap<String, usize> = HashMap::new();
    for e in &entries {
        let state = e["state"].as_str().unwrap();
        *states.entry(state.to_owned()).or_default() += 1;
        if state == "completed" {
            assert!(e["executionId"].is_string(), "completed without an execution: {e}");
            continue;
        }
        assert!(
            ["failed", "skipped", "missed"].contains(&state),
            "not a terminal state: {e}"
        );
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "no reason: {e}");
        assert!(
            in_kill_window(due_of(e)) || (state == "skipped" && left_running_by_a_kill(e)),
            "{state} though no node was killed while it or the run before it was due: {e}\nkills during {kill_windows:?}"
        );
    }

    // The history, the same from every node; one execution per occurrence;
    // completed ones hold exactly the source's objects.
    let mut executions_per_occurrence: HashMap<String, HashSet<String>> = HashMap::new();
    for source in &sources {
        let path = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}/history?limit=1000");
        let views: Vec<Value> = (0..NODES)
            .map(|i| {
                let (status, body) = cluster.node(i).call("GET", &path, None);
                assert_eq!(status, 200, "{body}");
                body
            })
            .collect();
        assert!(
            views.iter().all(|v| v == &views[0]),
            "node histories differ for {source}"
        );
        for line in views[0].as_array().unwrap() {
            if let (Some(occurrence), Some(execution)) = (line["occurrenceId"].as_str(), line["executionId"].as_str()) {
                executions_per_occurrence
                    .entry(occurrence.to_owned())
                    .or_default()
                    .insert(execution.to_owned());
            }
            if line["status"] == "completed" {
                assert_eq!(line["objects"].as_u64(), Some(OBJECTS), "{line}");
            }
            assert_ne!(line["status"], "running", "{line}");
        }
    }
    let doubled: Vec<_> = executions_per_occurrence.iter().filter(|(_, e)| e.len() > 1).collect();
    assert!(doubled.is_empty(), "occurrences with two executions: {doubled:?}");
    // Each completed occurrence: the one execution its ledger entry names,
    // holding the source's objects, each received once.
    let source_of: HashMap<&str, &str> = entries
        .iter()
        .map(|e| {
            (
                e["occurrenceId"].as_str().unwrap(),
                e["importSourceId"].as_str().unwrap(),
            )
        })
        .collect();
    for e in entries.iter().filter(|e| e["state"] == "completed") {
        let (occurrence, execution) = (e["occurrenceId"].as_str().unwrap(), e["executionId"].as_str().unwrap());
        let executions = executions_per_occurrence.get(occurrence);
        assert_eq!(
            executions.map(|x| x.iter().collect::<Vec<_>>()),
            Some(vec![&execution.to_owned()]),
            "{e}"
        );
        let path = format!(
            "/jsm/assets/workspace/{workspace}/v1/importsource/{}/executions/{execution}/status",
            source_of[occurrence]
        );
        let (status, shown) = cluster.node(2).call("GET", &path, None);
        assert_eq!(status, 200, "{shown}");
        assert_eq!(
            (shown["objects"].as_u64(), shown["objectsReceived"].as_u64()),
            (Some(OBJECTS), Some(OBJECTS)),
            "{e}: {shown}"
        );
    }
    eprintln!(
        "cluster: {} schedules, {} occurrences {states:?}, {kills} kill -9, {:.0} s",
        sources.len(),
        entries.len(),
        started.elapsed().as_secs_f64()
    );
}
