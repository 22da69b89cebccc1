//! A Jepsen-style test of the occurrence ledger: three `assets-host serve`
//! nodes on one PostgreSQL, behind a round-robin proxy, on one shared
//! virtual clock, under a seeded random schedule of faults — `kill -9`,
//! SIGTERM of the node running an import mid run (it must finish the run
//! before it gives its lease up: nothing of it is taken over), SIGSTOP of
//! the node running an import and of the node that claimed it until a
//! third has resumed the run (then SIGCONT, so they wake up mid-run,
//! superseded), every database connection cut, the database server
//! restarted while imports run, a callback sent twice, runs made slow by a
//! slow source — and of schedule changes (a new rule, pause, resume,
//! delete), each during or between clock advances. Then a checker reads
//! what the platform recorded — the ledger,
//! every source's history, and the journal of every fenced write — and
//! verifies, with an oracle that shares no code with the platform (the
//! calendar crate and this file):
//!
//! 1. every occurrence due in the window, under the rules each schedule had
//!    when, is in the ledger exactly once and ends in exactly one terminal
//!    state, with a reason unless completed; what fell due while paused is
//!    skipped; nothing else is in the ledger;
//! 2. at most one execution per occurrence completes, and it is the one the
//!    ledger links;
//! 3. no execution is failed except by the attempt that holds its
//!    occurrence, by a reaper after the run's heartbeat had lapsed, or by a
//!    node's start-up;
//! 4. no write from a superseded attempt took effect: each effective write
//!    of an attempt is made while that attempt holds the occurrence (as the
//!    journal's claims and take-overs say), an ended occurrence is written
//!    no more, and the journal's last word on each occurrence is the
//!    ledger's.
//!
//! `make test` runs a bounded schedule; `make soak` a longer one with more
//! seeds (`ASSETS_JEPSEN_STEPS`, `ASSETS_JEPSEN_SEEDS`). A failure prints
//! its seed. Needs `ASSETS_TEST_PG` and `ASSETS_TEST_PG_RESTART`
//! (`scripts/with-postgres` sets both).

mod common;

use common::{fresh_postgres, ledger, temp_dir, Port, Proxy, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

type Utc = chrono::DateTime<chrono::Utc>;

const NODES: usize = 3;
const DAILY: usize = 24;
const WEEKLY: usize = 6;
const OBJECTS: u64 = 20;
/// Clock advance per step.
const STEP_SECS: u64 = 8 * 3600;
const CLOCK_START: &str = "2026-03-01T00:00:00Z";
/// Longest SIGSTOPped nodes stay stopped: past the node lease (5 s) and the
/// run's heartbeat (20 s), so the third node takes their run over. They are
/// woken as soon as it has, so that they wake up while the new attempt is
/// still running (or after this, if their run had ended before the stop).
const STOPPED_FOR: Duration = Duration::from_secs(40);
const SETTLE_HOURS: usize = 24;
const HANG_GUARD: Duration = Duration::from_secs(300);
/// The faults a step may bring, each during a clock advance.
const FAULTS: [&str; 7] = [
    "none",
    "kill -9",
    "SIGTERM",
    "SIGSTOP",
    "database cut",
    "database restart",
    "duplicate callback",
];
const ZONES: [&str; 4] = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"];

/// One stretch of a schedule's life under one rule.
#[derive(Clone)]
struct Segment {
    rule: assets_calendar::Rule,
    /// Occurrences at or after this instant (`inclusive`), or after it.
    from: Utc,
    inclusive: bool,
    /// Up to and including this instant; `None`: still going.
    to: Option<Utc>,
    paused: bool,
}

impl Segment {
    fn occurrences(&self, end: Utc) -> Vec<Utc> {
        // What falls due while paused is recorded (skipped) when the
        // schedule is resumed or deleted, not before.
        if self.paused && self.to.is_none() {
            return Vec::new();
        }
        let to = self.to.unwrap_or(end).min(end);
        self.rule
            .occurrences()
            .map(|o| o.instant)
            .skip_while(|&i| i < self.from || (i == self.from && !self.inclusive))
            .take_while(|&i| i <= to)
            .collect()
    }
}

/// What the test did to a schedule, as the oracle sees it.
struct Tracked {
    id: String,
    source: String,
    frequency: &'static str,
    zone: chrono_tz::Tz,
    segments: Vec<Segment>,
    deleted: bool,
}

impl Tracked {
    fn current(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a schedule has a segment")
    }

    fn rule(&self, start: Utc) -> assets_calendar::Rule {
        assets_calendar::Rule::new(
            assets_calendar::Frequency::parse(self.frequency).unwrap(),
            start,
            self.zone,
            assets_calendar::Policies::default(),
        )
    }
}

struct Cluster {
    db: String,
    dir: std::path::PathBuf,
    ports: Vec<Port>,
    nodes: Vec<Option<Server>>,
    proxy: Proxy,
    public_url: String,
}

impl Cluster {
    fn args(&self) -> Vec<&str> {
        vec![
            "--public-url",
            &self.public_url,
            "--clock",
            "virtual",
            "--clock-start",
            CLOCK_START,
            "--objects",
            "20",
            // Runs of a few seconds (ten pages of a slow source), so a
            // fault lands among running imports and a run taken over from a
            // stopped node is still going when that node wakes up.
            "--page-size",
            "2",
            "--page-latency-ms",
            "300",
            "--run-timeout-secs",
            "30",
        ]
    }

    fn start(&mut self, i: usize) {
        let log = self.dir.join(format!("node{i}.{}.log", uuid::Uuid::new_v4().simple()));
        let node = Server::launch(std::ffi::OsStr::new(&self.db), log, &self.ports[i], &self.args());
        self.nodes[i] = Some(node);
        self.proxy.set_alive(i, true);
    }

    fn alive(&self) -> Vec<usize> {
        (0..NODES).filter(|&i| self.nodes[i].is_some()).collect()
    }

    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node running")
    }

    fn any(&self) -> &Server {
        self.node(self.alive()[0])
    }

    /// Sends the callback of an occurrence being delivered again, as the
    /// platform would on a retry whose first answer was lost: same
    /// occurrence, same attempt, signed anew with the app's secret, to a
    /// random node. `None` when nothing is being delivered.
    fn send_again(&self, rng: &mut fastrand::Rng) -> Option<std::thread::JoinHandle<Result<u16, String>>> {
        let (status, page) = self.any().call("GET", "/_admin/occurrences?state=delivering", None);
        let entries = page["occurrences"]
            .as_array()
            .filter(|e| status == 200 && !e.is_empty())?;
        let entry = &entries[rng.usize(..entries.len())];
        let body = json!({
            "workspaceId": self.any().app().workspace_id,
            "importSourceId": entry["importSourceId"],
            "importsourceId": entry["importSourceId"],
            "scheduled": true,
            "scheduleId": entry["scheduleId"],
            "occurrenceId": entry["occurrenceId"],
            "nominalTime": entry["nominalTime"],
            "attempt": entry["attempt"],
        })
        .to_string();
        let alive = self.alive();
        let target = self.node(alive[rng.usize(..alive.len())]);
        let url = format!("{}/apps/demo/webtrigger", target.base);
        let secret = target.secret.clone();
        Some(std::thread::spawn(move || {
            let now = chrono::Utc::now().timestamp();
            let signature = assets_server::signing::sign(&secret, now, body.as_bytes());
            ureq::post(&url)
                .timeout(Duration::from_secs(300))
                .set("x-assets-timestamp", &now.to_string())
                .set("x-assets-signature", &signature)
                .set("content-type", "application/json")
                .send_string(&body)
                .map(|r| r.status())
                .or_else(|e| match e {
                    ureq::Error::Status(status, _) => Ok(status),
                    other => Err(other.to_string()),
                })
        }))
    }

    /// Cuts every connection to the test's database, as a restart of the
    /// database server or a network cut does.
    fn cut_database(&self) {
        let name = self.db.rsplit('/').next().unwrap();
        let mut admin = postgres::Client::connect(&self.db, postgres::NoTls).unwrap();
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .unwrap();
    }
}

/// Restarts the database server under the running nodes (`pg_ctl restart
/// -m fast`: every session ended, every open transaction rolled back,
/// connections refused until it is back), with the command
/// `scripts/with-postgres` gives.
fn restart_database() {
    let command = std::env::var("ASSETS_TEST_PG_RESTART").expect(
        "ASSETS_TEST_PG_RESTART is not set: the Jepsen test restarts the database server; run it under \
         scripts/with-postgres (make test does)",
    );
    let status = std::process::Command::new(&command).status().unwrap();
    assert!(status.success(), "{command}: the database server did not restart");
}

fn signal(node: &Server, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// The shared virtual clock, as `server` reads it.
fn clock(server: &Server) -> Utc {
    let (status, clock) = server.call("GET", "/_admin/clock", None);
    assert_eq!(status, 200, "{clock}");
    clock["now"].as_str().unwrap().parse().unwrap()
}

/// Waits until the ledger holds an occurrence due after `from`, or the
/// advance has ended: a fault then lands mid-advance, among deliveries.
fn wait_for_a_claim<T>(server: &Server, from: Utc, advance: &std::thread::JoinHandle<T>) {
    let cursor = format!("{}_", from.timestamp_nanos_opt().unwrap());
    let guard = Instant::now() + HANG_GUARD;
    while !advance.is_finished() {
        let (status, page) = server.call("GET", &format!("/_admin/occurrences?cursor={cursor}&limit=1"), None);
        if status != 200 || page["occurrences"].as_array().is_some_and(|o| !o.is_empty()) {
            return;
        }
        assert!(Instant::now() < guard, "hang guard: no claim after {from}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `server` reads at least `runs` occurrences whose app is
/// running (delivering, with an execution), or the advance has ended: a
/// node stopped then is likely running one of them.
fn wait_for_runs<T>(server: &Server, runs: usize, advance: &std::thread::JoinHandle<T>) {
    let guard = Instant::now() + HANG_GUARD;
    while !advance.is_finished() {
        let (status, page) = server.call("GET", "/_admin/occurrences?state=delivering", None);
        let running = page["occurrences"]
            .as_array()
            .map_or(0, |o| o.iter().filter(|e| e["executionId"].is_string()).count());
        if status != 200 || running >= runs {
            return;
        }
        assert!(Instant::now() < guard, "hang guard: no {runs} runs going");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A run going on now, as `(its occurrence, the node running its app, the
/// node that claimed the occurrence)`: an occurrence still delivering whose
/// execution was created (the journal's `linked` write, committed by the
/// node whose app made the call) on a live node. Polls until one is seen or
/// the advance has ended.
fn running_import<T>(cluster: &Cluster, advance: &std::thread::JoinHandle<T>) -> Option<(String, usize, usize)> {
    let index_of =
        |name: &str| (0..NODES).find(|&i| cluster.nodes[i].as_ref().and_then(|n| n.node.as_deref()) == Some(name));
    let guard = Instant::now() + HANG_GUARD;
    while !advance.is_finished() {
        let (status, page) = cluster.any().call("GET", "/_admin/occurrences?state=delivering", None);
        if status == 200 {
            let owners: HashMap<String, (String, String)> = page["occurrences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let occurrence = e["occurrenceId"].as_str()?.to_owned();
                    let owner = e["leaseOwner"].as_str()?.to_owned();
                    Some((e["executionId"].as_str()?.to_owned(), (occurrence, owner)))
                })
                .collect();
            let found = journal(cluster.any()).iter().rev().find_map(|w| {
                let (occurrence, owner) = owners.get(w["executionId"].as_str()?)?;
                let runner = index_of(w["node"].as_str()?)?;
                (w["act"] == "linked" && w["refused"].is_null())
                    .then(|| Some((occurrence.clone(), runner, index_of(owner)?)))?
            });
            if found.is_some() {
                return found;
            }
        }
        assert!(Instant::now() < guard, "hang guard: no run seen going");
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Every page of the journal.
fn journal(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = server.call("GET", &format!("/_admin/journal?after={after}"), None);
        assert_eq!(status, 200, "{page}");
        all.extend(page["writes"].as_array().unwrap().iter().cloned());
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return all,
        }
    }
}

#[test]
fn the_ledger_holds_under_a_seeded_schedule_of_faults() {
    let steps: u64 = std::env::var("ASSETS_JEPSEN_STEPS")
        .map(|s| s.parse().expect("ASSETS_JEPSEN_STEPS is a number"))
        .unwrap_or(12);
    let seeds: Vec<u64> = std::env::var("ASSETS_JEPSEN_SEEDS")
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("seeds are numbers"))
                .collect()
        })
        .unwrap_or_else(|_| vec![0x1e95e4]);
    for seed in seeds {
        eprintln!("jepsen: seed {seed}, {steps} steps");
        let outcome = std::panic::catch_unwind(|| run(seed, steps));
        if let Err(panic) = outcome {
            eprintln!("jepsen: seed {seed} failed; run it again with ASSETS_JEPSEN_SEEDS={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

fn run(seed: u64, steps: u64) {
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
    for i in 0..NODES {
        cluster.start(i);
    }
    let workspace = cluster.node(0).app().workspace_id.clone();
    let callback = format!("{}/apps/demo/webtrigger", cluster.public_url);
    let created: Utc = CLOCK_START.parse().unwrap();

    let mut schedules: Vec<Tracked> = Vec::new();
    for i in 0..DAILY + WEEKLY {
        let node = cluster.node(i % NODES);
        let (status, source) = node.call(
            "POST",
            "/_admin/importsource",
            Some(json!({"workspaceId": workspace, "type": "external", "app": "demo"})),
        );
        assert_eq!(status, 201, "{source}");
        let source = source["id"].as_str().unwrap().to_owned();
        let frequency = if i < DAILY { "DAILY" } else { "WEEKLY" };
        let zone_name = ZONES[i % ZONES.len()];
        let start = format!("2026-03-01T{:02}:30:00Z", (i % 8) * 3);
        let (status, body) = node.call(
            "POST",
            &format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}/importschedule"),
            Some(
                json!({"runFrequency": frequency, "startTime": start, "timezone": zone_name, "callbackUrl": callback}),
            ),
        );
        assert_eq!(status, 201, "{body}");
        let mut tracked = Tracked {
            id: body["id"].as_str().unwrap().to_owned(),
            source,
            frequency,
            zone: zone_name.parse().unwrap(),
            segments: Vec::new(),
            deleted: false,
        };
        let rule = tracked.rule(start.parse().unwrap());
        tracked.segments.push(Segment {
            rule,
            from: created,
            inclusive: true,
            to: None,
            paused: false,
        });
        schedules.push(tracked);
    }

    let mut rng = fastrand::Rng::with_seed(seed);
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    // Occurrences whose run was going on a node stopped by SIGTERM, and how
    // long the journal was then.
    let mut terminated_runs: Vec<(String, usize)> = Vec::new();
    // Every kind of fault in the first steps, in a seeded order, so a short
    // run meets each; drawn at random after that.
    let mut first = FAULTS.to_vec();
    rng.shuffle(&mut first);
    for step in 0..steps as usize {
        let fault = first
            .get(step)
            .copied()
            .unwrap_or_else(|| FAULTS[rng.usize(..FAULTS.len())]);
        if fault == "SIGSTOP" {
            // It needs all three nodes: one to stop with the runner, one to
            // take the run over.
            for i in 0..NODES {
                if cluster.nodes[i].is_none() {
                    cluster.start(i);
                }
            }
        }
        let alive = cluster.alive();
        let advancer = alive[rng.usize(..alive.len())];
        let from = clock(cluster.node(advancer));
        let base = cluster.node(advancer).base.clone();
        let advance = std::thread::spawn(move || {
            ureq::post(&format!("{base}/_admin/clock/advance"))
                .timeout(Duration::from_secs(600))
                .send_string(&json!({ "seconds": STEP_SECS }).to_string())
                .map(|r| (r.status(), String::new()))
                .or_else(|e| match e {
                    ureq::Error::Status(status, answer) => Ok((status, answer.into_string().unwrap_or_default())),
                    other => Err(other.to_string()),
                })
        });
        *faults.entry(fault).or_default() += 1;
        let mut stopped = Vec::new();
        let mut resumed: Option<String> = None;
        let mut duplicate = None;
        let mut terminated = None;
        match fault {
            // The node running an app's import and the node that claimed
            // its occurrence, both paused past their leases while a third
            // runs on: the third takes the run over, and they wake up mid
            // run, superseded.
            "SIGSTOP" if cluster.alive().len() == NODES => {
                let running = running_import(&cluster, &advance);
                if running.is_none() {
                    *faults.entry("SIGSTOP with no run to stop").or_default() += 1;
                }
                if let Some((occurrence, runner, claimer)) = running {
                    resumed = Some(occurrence);
                    for victim in BTreeSet::from([runner, claimer]) {
                        let node = cluster.nodes[victim].take().expect("alive");
                        cluster.proxy.set_alive(victim, false);
                        signal(&node, "STOP");
                        stopped.push((victim, node));
                    }
                }
            }
            "kill -9" => {
                wait_for_a_claim(cluster.node(advancer), from, &advance);
                wait_for_runs(cluster.node(advancer), 2, &advance);
                let victim = rng.usize(..NODES);
                if let Some(node) = cluster.nodes[victim].take() {
                    cluster.proxy.set_alive(victim, false);
                    node.kill_9();
                }
            }
            // The node running an app's import (its callback is slow: pages
            // take 300 ms each), stopped gracefully mid run: it finishes the
            // run before it gives its lease up, so nothing is taken over.
            "SIGTERM" if cluster.alive().len() > 1 => {
                wait_for_a_claim(cluster.node(advancer), from, &advance);
                let running = running_import(&cluster, &advance);
                let victim = match &running {
                    Some((occurrence, runner, _)) => {
                        // Where the journal stood at the signal: a take-over
                        // from before it (of a run an earlier step stopped)
                        // is not this stop's.
                        terminated_runs.push((occurrence.clone(), journal(cluster.any()).len()));
                        *runner
                    }
                    None => {
                        *faults.entry("SIGTERM with no run going").or_default() += 1;
                        rng.usize(..NODES)
                    }
                };
                if let Some(node) = cluster.nodes[victim].take() {
                    cluster.proxy.set_alive(victim, false);
                    signal(&node, "TERM");
                    terminated = Some(std::thread::spawn(move || node.wait_exit()));
                }
            }
            "database cut" => {
                wait_for_a_claim(cluster.node(advancer), from, &advance);
                cluster.cut_database();
            }
            "database restart" => {
                wait_for_runs(cluster.node(advancer), 1, &advance);
                restart_database();
            }
            "duplicate callback" => {
                wait_for_runs(cluster.node(advancer), 1, &advance);
                duplicate = cluster.send_again(&mut rng);
            }
            _ => {}
        }
        if !stopped.is_empty() {
            // Past their leases the other node takes the work over (its
            // scheduler passes run every second); they wake up as soon as
            // it has, mid run, holding nothing.
            let woken = Instant::now() + STOPPED_FOR;
            while Instant::now() < woken {
                let taken = journal(cluster.any()).iter().any(|w| {
                    w["act"] == "tookOver" && w["refused"].is_null() && w["occurrenceId"].as_str() == resumed.as_deref()
                });
                if taken {
                    *faults.entry("a stopped run resumed elsewhere").or_default() += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for (victim, node) in stopped.drain(..) {
                signal(&node, "CONT");
                cluster.nodes[victim] = Some(node);
                cluster.proxy.set_alive(victim, true);
            }
        }
        let answered = advance.join().unwrap();
        // An advance whose claims the database could not store stops there
        // and says so (503, where the clock stopped); the next advance goes
        // on from it, and the checker finds whether anything was lost.
        let halted = matches!(&answered, Ok((503, body)) if body.contains("the clock stopped at"));
        if halted {
            *faults.entry("an advance halted by the database").or_default() += 1;
        }
        assert!(
            matches!(answered, Ok((200, _)))
                || (halted && matches!(fault, "database cut" | "database restart"))
                || cluster.nodes[advancer].is_none(),
            "advance on a live node, during {fault}: {answered:?}"
        );
        if let Some(exit) = terminated {
            exit.join().expect("a node stopped by SIGTERM exits 0");
        }

        if let Some(sent) = duplicate {
            // Whatever it answered: what it did is in the ledger and the
            // journal, which the checker reads.
            let _ = sent.join();
        }
        // A schedule change, now and then, with no advance in flight: the
        // clock it is made at is the oracle's.
        if rng.u8(..3) == 0 {
            change_a_schedule(&cluster, &workspace, &mut schedules, &mut rng, &mut faults);
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

    // Settle, as the cluster test does.
    common::settle(cluster.node(0), SETTLE_HOURS, HANG_GUARD);
    let end = clock(cluster.node(0));
    let entries = ledger(cluster.node(1));
    let writes = journal(cluster.node(2));
    check(seed, &cluster, &workspace, &schedules, end, &entries, &writes);
    // A node stopped by SIGTERM mid run finishes the run before it exits:
    // each of those runs completed, and none was taken over after the signal
    // (resumed elsewhere) or failed as abandoned.
    for (occurrence, mark) in &terminated_runs {
        let taken: Vec<&Value> = writes[*mark..]
            .iter()
            .filter(|w| w["act"] == "tookOver" && w["refused"].is_null() && w["occurrenceId"] == occurrence.as_str())
            .collect();
        let entry = entries.iter().find(|e| e["occurrenceId"] == occurrence.as_str());
        assert!(
            taken.is_empty() && entry.is_some_and(|e| e["state"] == "completed"),
            "seed {seed}: {occurrence}, running on a node stopped by SIGTERM, did not complete there: \
             {entry:?}, taken over by {taken:?}"
        );
    }
    // Refusals by act, and whether the writer's attempt had been
    // superseded by then or it came after its own attempt's end (a
    // callback's end after its execution had ended the occurrence).
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut holder: HashMap<&str, u64> = HashMap::new();
    for w in &writes {
        let occurrence = w["occurrenceId"].as_str().unwrap_or_default();
        let act = w["act"].as_str().unwrap_or_default();
        if w["refused"].is_null() {
            if let ("claimed" | "tookOver", Some(attempt)) = (act, w["attempt"].as_u64()) {
                holder.insert(occurrence, attempt);
            }
            continue;
        }
        let superseded = w["attempt"]
            .as_u64()
            .zip(holder.get(occurrence))
            .is_some_and(|(attempt, held)| attempt < *held);
        let kind = if superseded { "superseded" } else { "after its own end" };
        *refused.entry(format!("{act} ({kind})")).or_default() += 1;
    }
    eprintln!(
        "jepsen: seed {seed}: {} occurrences, {} journal writes (refused as stale: {refused:?}), faults {faults:?}, {:.0} s",
        entries.len(),
        writes.len(),
        started.elapsed().as_secs_f64()
    );
}

fn change_a_schedule(
    cluster: &Cluster,
    workspace: &str,
    schedules: &mut [Tracked],
    rng: &mut fastrand::Rng,
    faults: &mut BTreeMap<&str, usize>,
) {
    let node = cluster.node(cluster.alive()[rng.usize(..cluster.alive().len())]);
    let now = clock(node);
    let i = rng.usize(..schedules.len());
    let tracked = &mut schedules[i];
    if tracked.deleted {
        return;
    }
    let path = format!(
        "/jsm/assets/workspace/{workspace}/v1/importsource/{}/importschedule/{}",
        tracked.source, tracked.id
    );
    let paused = tracked.current().paused;
    let change = match (paused, rng.u8(..3)) {
        (true, 0) => "delete",
        (true, _) => "resume",
        (false, 0) => "delete",
        (false, 1) => "pause",
        (false, _) => "new rule",
    };
    *faults.entry(change).or_default() += 1;
    let (status, body) = match change {
        "delete" => node.call("DELETE", &path, None),
        "pause" => node.call("PUT", &path, Some(json!({"isActive": false}))),
        "resume" => node.call("PUT", &path, Some(json!({"isActive": true}))),
        _ => {
            // A minute no first rule uses, so the two rules never share an
            // instant.
            let start = format!("2026-03-01T{:02}:45:00Z", rng.u8(..24));
            let answer = node.call("PUT", &path, Some(json!({"startTime": start})));
            let rule = tracked.rule(start.parse().unwrap());
            tracked.current().to = Some(now);
            tracked.segments.push(Segment {
                rule,
                from: now,
                inclusive: true,
                to: None,
                paused: false,
            });
            answer
        }
    };
    assert!(status == 200 || status == 204, "{change}: {status} {body}");
    let rule = tracked.current().rule.clone();
    match change {
        "delete" => {
            tracked.current().to = Some(now);
            tracked.deleted = true;
        }
        "pause" | "resume" => {
            tracked.current().to = Some(now);
            tracked.segments.push(Segment {
                rule,
                from: now,
                inclusive: false,
                to: None,
                paused: change == "pause",
            });
        }
        _ => {}
    }
}

fn check(
    seed: u64,
    cluster: &Cluster,
    workspace: &str,
    schedules: &[Tracked],
    end: Utc,
    entries: &[Value],
    writes: &[Value],
) {
    let due = |e: &Value| -> Utc { e["nominalTime"].as_str().unwrap().parse().unwrap() };
    let id_of = |e: &Value| e["occurrenceId"].as_str().unwrap().to_owned();

    // 1. The ledger is the oracle's set, each once, each ended.
    let mut expected: BTreeMap<(String, Utc), bool> = BTreeMap::new();
    for tracked in schedules {
        for segment in &tracked.segments {
            for instant in segment.occurrences(end) {
                expected.insert((tracked.id.clone(), instant), segment.paused);
            }
        }
    }
    let found: Vec<(String, Utc)> = entries
        .iter()
        .map(|e| (e["scheduleId"].as_str().unwrap().to_owned(), due(e)))
        .collect();
    let found_set: BTreeSet<(String, Utc)> = found.iter().cloned().collect();
    assert_eq!(
        found_set.len(),
        found.len(),
        "seed {seed}: an occurrence is in the ledger twice"
    );
    let wanted: BTreeSet<(String, Utc)> = expected.keys().cloned().collect();
    let lost: Vec<_> = wanted.difference(&found_set).collect();
    let extra: Vec<_> = found_set.difference(&wanted).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "seed {seed}: the ledger is not the oracle's set up to {end}: lost {lost:?}, not expected {extra:?}"
    );
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for e in entries {
        let state = e["state"].as_str().unwrap();
        *states.entry(state.to_owned()).or_default() += 1;
        assert!(
            ["completed", "failed", "skipped", "missed"].contains(&state),
            "seed {seed}: not terminal: {e}"
        );
        if state != "completed" {
            assert!(
                e["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "seed {seed}: no reason: {e}"
            );
        }
        let key = (e["scheduleId"].as_str().unwrap().to_owned(), due(e));
        if expected[&key] {
            assert_eq!(state, "skipped", "seed {seed}: fell due while paused: {e}");
        }
    }
    // The run did run: most of what was due completed.
    let completed = states.get("completed").copied().unwrap_or_default();
    assert!(
        completed * 2 > entries.len(),
        "seed {seed}: only {completed} of {} occurrences completed: {states:?}",
        entries.len()
    );

    // 2. At most one completed execution per occurrence: the linked one.
    let mut completed_by_occurrence: HashMap<String, Vec<String>> = HashMap::new();
    for tracked in schedules {
        let path = format!(
            "/jsm/assets/workspace/{workspace}/v1/importsource/{}/history?limit=1000",
            tracked.source
        );
        let (status, lines) = cluster.any().call("GET", &path, None);
        assert_eq!(status, 200, "{lines}");
        for line in lines.as_array().unwrap() {
            assert_ne!(line["status"], "running", "seed {seed}: {line}");
            if line["status"] == "completed" {
                assert_eq!(line["objects"].as_u64(), Some(OBJECTS), "seed {seed}: {line}");
                if let Some(occurrence) = line["occurrenceId"].as_str() {
                    completed_by_occurrence
                        .entry(occurrence.to_owned())
                        .or_default()
                        .push(line["executionId"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    let by_id: HashMap<String, &Value> = entries.iter().map(|e| (id_of(e), e)).collect();
    for (occurrence, executions) in &completed_by_occurrence {
        assert_eq!(
            executions.len(),
            1,
            "seed {seed}: {occurrence} completed twice: {executions:?}"
        );
        let entry = by_id[occurrence];
        assert_eq!(
            (entry["state"].as_str(), entry["executionId"].as_str()),
            (Some("completed"), Some(executions[0].as_str())),
            "seed {seed}: the completed execution is not the one the ledger links"
        );
    }
    for e in entries.iter().filter(|e| e["state"] == "completed") {
        assert!(
            completed_by_occurrence.contains_key(&id_of(e)),
            "seed {seed}: completed without a completed execution: {e}"
        );
    }

    // 3 and 4: the journal, replayed in commit order.
    let mut holder: HashMap<String, u64> = HashMap::new();
    let mut ended: HashMap<String, String> = HashMap::new();
    for w in writes {
        if w["refused"].is_string() {
            continue;
        }
        let occurrence = w["occurrenceId"].as_str().unwrap().to_owned();
        let attempt = w["attempt"].as_u64();
        let act = w["act"].as_str().unwrap();
        let by = &w["by"];
        assert!(
            !ended.contains_key(&occurrence) || !matches!(act, "claimed" | "tookOver" | "ended" | "linked"),
            "seed {seed}: a write to an occurrence that had ended took effect: {w}"
        );
        match act {
            "claimed" => {
                assert_eq!(attempt, Some(1), "seed {seed}: {w}");
                holder.insert(occurrence, 1);
                continue;
            }
            "tookOver" => {
                let held = holder.get(&occurrence).copied();
                assert_eq!(
                    attempt,
                    held.map(|a| a + 1),
                    "seed {seed}: a take-over not of the attempt that held it: {w}"
                );
                holder.insert(occurrence, attempt.unwrap());
                continue;
            }
            _ => {}
        }
        let held = holder.get(&occurrence).copied();
        if by["kind"] == "delivery" {
            // A delivery's write: of the attempt that holds its occurrence.
            let delivery = &by["delivery"];
            if held.is_some() {
                assert_eq!(
                    (delivery["occurrenceId"].as_str(), delivery["attempt"].as_u64()),
                    (Some(occurrence.as_str()), held),
                    "seed {seed}: a write by a delivery that did not hold the occurrence took effect: {w}"
                );
            }
        }
        if act == "executionEnded" && w["status"] != "PROCESSING" {
            // 3. Failed only by its own attempt (above), a reaper once the
            // heartbeat lapsed, or a node's start-up.
            match by["kind"].as_str() {
                Some("delivery") | Some("node") => {}
                Some("reaper") => {
                    // Both read from the clock the nodes share (the
                    // database's), unlike the entry's own `wallAt`.
                    if let Some(until) = by["heartbeatUntil"].as_str() {
                        let until: Utc = until.parse().unwrap();
                        let at: Utc = by["lapsedAt"]
                            .as_str()
                            .unwrap_or_else(|| panic!("seed {seed}: a reaper's write with no lapsedAt: {w}"))
                            .parse()
                            .unwrap();
                        assert!(until <= at, "seed {seed}: reaped while its heartbeat was live: {w}");
                    }
                }
                _ => panic!("seed {seed}: an execution failed by the API with no delivery: {w}"),
            }
        }
        if act == "ended" {
            if let (Some(held), Some(attempt)) = (held, attempt) {
                assert_eq!(
                    attempt, held,
                    "seed {seed}: ended by an attempt that did not hold it: {w}"
                );
            }
            ended.insert(occurrence, w["state"].as_str().unwrap().to_owned());
        }
    }
    for e in entries {
        assert_eq!(
            ended.get(&id_of(e)).map(String::as_str),
            e["state"].as_str(),
            "seed {seed}: the journal's last word is not the ledger's: {e}"
        );
    }
}
