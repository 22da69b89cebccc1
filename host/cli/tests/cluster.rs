//! Three `assets-host serve` nodes on one PostgreSQL, as real processes
//! behind a small round-robin proxy, on one shared virtual clock: hundreds
//! of schedules across zones and frequencies, thousands of occurrences,
//! and a random node killed with `kill -9` (then restarted) every few
//! clock advances. At the end every occurrence has exactly one terminal
//! ledger state, none produced two executions, every completed execution
//! holds exactly its source's objects, and every node reads the same
//! history.
//!
//! Needs `ASSETS_TEST_PG`; `make test` starts a throwaway cluster.

mod common;

use common::{fresh_postgres, temp_dir, Port, Proxy, Server};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const DAILY: usize = 180;
const WEEKLY: usize = 15;
const MONTHLY: usize = 5;
const ONCE: usize = 5;
const OBJECTS: u64 = 20;
const DAYS: u64 = 12;
/// Clock advance per step: three steps a day.
const STEP_SECS: u64 = 8 * 3600;
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
            "2026-01-01T00:00:00Z",
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

/// Every page of the ledger, read from `server`.
fn ledger(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/_admin/occurrences?cursor={c}"),
            None => "/_admin/occurrences".to_owned(),
        };
        let (status, page) = server.call("GET", &path, None);
        assert_eq!(status, 200, "{page}");
        all.extend(page["occurrences"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
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
        sources.push(source_id);
    }

    // Advance, killing a random node now and then, mid-advance.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let steps = DAYS * 24 * 3600 / STEP_SECS;
    let mut kills = 0;
    for step in 0..steps {
        let alive = cluster.alive();
        let advancer = alive[rng.usize(..alive.len())];
        let base = cluster.node(advancer).base.clone();
        let advance = std::thread::spawn(move || {
            ureq::post(&format!("{base}/_admin/clock/advance"))
                .timeout(Duration::from_secs(300))
                .send_string(&json!({ "seconds": STEP_SECS }).to_string())
                .map(|r| r.status())
                .map_err(|e| e.to_string())
        });
        if step % 3 == 2 {
            std::thread::sleep(Duration::from_millis(rng.u64(50..600)));
            let victim = rng.usize(..NODES);
            if let Some(node) = cluster.nodes[victim].take() {
                cluster.proxy.set_alive(victim, false);
                node.kill_9();
                kills += 1;
            }
        }
        match advance.join().unwrap() {
            Ok(status) => assert_eq!(status, 200),
            // The advancing node itself was killed: the others carry on.
            Err(e) => assert!(cluster.nodes[advancer].is_none(), "advance failed on a live node: {e}"),
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

    // Settle: deliveries a dead node left are taken over once its lease runs
    // out; executions left ingesting are failed once past their limit. Step
    // the clock by an hour at a time until nothing is in flight.
    let settled = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let in_flight = ledger(cluster.node(0))
            .iter()
            .filter(|e| e["state"] == "delivering")
            .count();
        if in_flight == 0 {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(180),
            "{in_flight} occurrences still delivering after 3 minutes; node 0 log:\n{}",
            cluster.node(0).log_text()
        );
        cluster.node(0).advance(3600);
    }

    // Exactly one terminal state each, with a reason where it did not complete.
    let entries = ledger(cluster.node(1));
    assert!(entries.len() >= 2000, "{} occurrences", entries.len());
    let mut states: HashMap<String, usize> = HashMap::new();
    for e in &entries {
        *states.entry(e["state"].as_str().unwrap().to_owned()).or_default() += 1;
        assert_ne!(e["state"], "delivering", "{e}");
        if e["state"] != "completed" {
            assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "no reason: {e}");
        }
    }
    let ids: HashSet<&str> = entries.iter().map(|e| e["occurrenceId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), entries.len(), "one ledger entry per occurrence");
    assert!(
        states.get("completed").copied().unwrap_or(0) * 10 >= entries.len() * 8,
        "most runs complete despite the kills: {states:?}"
    );

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
    eprintln!(
        "cluster: {} schedules, {} occurrences {states:?}, {kills} kill -9, {:.0} s",
        sources.len(),
        entries.len(),
        started.elapsed().as_secs_f64()
    );
}
