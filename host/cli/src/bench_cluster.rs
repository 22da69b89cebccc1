//! `assets-host bench --cluster --db postgres://…`: what several nodes on
//! one PostgreSQL cost and buy, measured against real `serve` processes
//! (`make bench` runs it on a throwaway cluster).
//!
//! - ledger claims per second, 1,000 schedules due at one instant run by
//!   the platform, on SQLite and on PostgreSQL, in the same run; and the
//!   claim pass alone on PostgreSQL (one batched transaction, no callback);
//! - the thousand-schedule herd: 1,000 schedules of the hosted importer due
//!   at one instant, 100 objects each, on one node and on three;
//! - how long a dead node's delivery waits before another node delivers it
//!   again (the node lease plus the scheduler's poll);
//! - a node's resident memory after 100 imports and after 10,000, on
//!   PostgreSQL;
//! - another node's history-read latency while one node, busy advancing
//!   the clock, is stopped with SIGSTOP.

use crate::bench_serve::{ledger_claims_per_s, Served};
use anyhow::{ensure, Context as _};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Cluster figures, named as in BENCHMARKS.md.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterFigures {
    /// Occurrences claimed and ended per second, 1,000 due at once, SQLite.
    pub claims_per_s_sqlite: f64,
    /// The same on PostgreSQL.
    pub claims_per_s_postgres: f64,
    /// 1,000 occurrences due at once claimed by one scheduler pass on
    /// PostgreSQL, the pass alone (in process; no callback is sent): claims
    /// per second, the median of five passes, each on a fresh database.
    pub claim_pass_per_s_postgres: f64,
    /// The herd (1,000 imports of 100 objects) on one node, seconds.
    pub herd_1_node_s: f64,
    /// The same herd on three nodes, seconds.
    pub herd_3_nodes_s: f64,
    /// From `kill -9` of the node delivering an occurrence to its delivery
    /// by another node (attempt 2), seconds.
    pub takeover_s: f64,
    /// A node's resident memory after 100 platform-run imports, KiB.
    pub rss_pg_after_100_kib: u64,
    /// The same node's after 10,000, KiB.
    pub rss_pg_after_10000_kib: u64,
    /// With one node stopped (SIGSTOP, 20 times at arbitrary moments) while
    /// it advanced the clock, the 99th percentile of another node's history
    /// reads, milliseconds.
    pub history_p99_ms_one_stopped: f64,
    /// Of those reads, how many did not answer 200.
    pub history_errors_one_stopped: usize,
}

/// 100 platform-run (`csv`) DAILY schedules due from an hour on, on
/// `served`; their source ids.
fn csv_schedules(served: &Served, count: usize) -> anyhow::Result<Vec<String>> {
    let due = stamp(clock(served)? + chrono::Duration::hours(1));
    (0..count)
        .map(|_| {
            let source = served.call(
                "POST",
                "/_admin/importsource",
                &json!({ "workspaceId": served.workspace, "type": "csv" }).to_string(),
            )?["id"]
                .as_str()
                .context("no source id")?
                .to_owned();
            served.call(
                "POST",
                &format!("{}/importschedule", served.base_of(&source)),
                &json!({ "runFrequency": "DAILY", "startTime": due, "timezone": "UTC" }).to_string(),
            )?;
            Ok(source)
        })
        .collect()
}

/// One node on PostgreSQL, 100 daily platform-run schedules: its resident
/// memory after the first day's 100 imports and after 100 days' 10,000.
fn rss_on_postgres(url: &str) -> anyhow::Result<(u64, u64)> {
    let served = Served::start_on(Some(&fresh_database(url)?), &["--clock-start", "2026-03-01T00:00:00Z"])?;
    csv_schedules(&served, 100)?;
    // Due an hour on: two hours take the first day's 100.
    served.call("POST", "/_admin/clock/advance", r#"{"seconds": 7200}"#)?;
    ensure!(
        count(&served, "completed")? == 100,
        "the first day's imports did not complete"
    );
    let first = served.rss_kib()?;
    for _ in 1..100 {
        served.call("POST", "/_admin/clock/advance", r#"{"seconds": 86400}"#)?;
    }
    ensure!(
        count(&served, "completed")? == 10_000,
        "not all 10,000 imports completed"
    );
    Ok((first, served.rss_kib()?))
}

/// Two nodes on PostgreSQL with 100 daily platform-run schedules; node A
/// advances the clock a day at a time while, 20 times, it is stopped
/// (SIGSTOP) at an arbitrary moment and node B reads one source's history
/// 10 times before A is let go on (SIGCONT): the 99th percentile of those
/// 200 reads in milliseconds, and how many failed. A is stopped wherever it
/// is, inside a state call or between two.
fn history_with_a_node_stopped(url: &str) -> anyhow::Result<(f64, usize)> {
    let db = fresh_database(url)?;
    let args = ["--clock-start", "2026-03-01T00:00:00Z"];
    let a = Served::start_on(Some(&db), &args)?;
    let b = Served::start_on(Some(&db), &args)?;
    let sources = csv_schedules(&a, 100)?;
    let base = a.base.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let advancing = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let sent = ureq::post(&format!("{base}/_admin/clock/advance"))
                    .timeout(Duration::from_secs(120))
                    .send_string(r#"{"seconds": 86400}"#);
                if sent.is_err() {
                    return;
                }
            }
        }
    });
    while count(&b, "completed")? < 300 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = a.child.id().to_string();
    let history = format!("{}/history?limit=100", b.base_of(&sources[0]));
    let mut times = Vec::new();
    let mut errors = 0;
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(rng.u64(50..500)));
        std::process::Command::new("kill").args(["-STOP", &pid]).status()?;
        for _ in 0..10 {
            let start = Instant::now();
            if b.call("GET", &history, "").is_err() {
                errors += 1;
            }
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        std::process::Command::new("kill").args(["-CONT", &pid]).status()?;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = advancing.join();
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() * 99 / 100 - 1], errors))
}

/// A loopback port nothing listens on now (the OS's pick, let go).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A new database on the server `url` points at; its URL.
fn fresh_database(url: &str) -> anyhow::Result<String> {
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = postgres::Client::connect(url, postgres::NoTls).with_context(|| format!("cannot reach {url}"))?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let (server, _) = url.rsplit_once('/').context("a URL ending in /DATABASE")?;
    Ok(format!("{server}/{name}"))
}

fn clock(served: &Served) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(served.call("GET", "/_admin/clock", "")?["now"]
        .as_str()
        .context("no clock")?
        .parse()?)
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The ledger entries in `state`, read from `served`.
fn count(served: &Served, state: &str) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut cursor = String::new();
    loop {
        let page = served.call("GET", &format!("/_admin/occurrences?state={state}{cursor}"), "")?;
        total += page["occurrences"].as_array().map_or(0, Vec::len);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return Ok(total),
        }
    }
}

/// `nodes` nodes hosting the importer on a fresh database; 1,000 schedules
/// due at one instant, their callbacks spread over the nodes; seconds from
/// the clock advance until all 1,000 have ended.
fn herd(url: &str, component: &str, nodes: usize) -> anyhow::Result<f64> {
    let db = fresh_database(url)?;
    let app = format!("demo={component}");
    // Each node calls the others' web triggers: loopback callback targets
    // are refused unless named, so the ports are chosen first and every
    // node allows them all.
    let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
    let allowed: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let nodes: Vec<Served> = ports
        .iter()
        .map(|port| {
            let addr = format!("127.0.0.1:{port}");
            let mut args = vec![
                "--addr",
                addr.as_str(),
                "--app",
                app.as_str(),
                "--objects",
                "100",
                "--clock-start",
                "2026-03-01T00:00:00Z",
            ];
            for entry in &allowed {
                args.extend(["--callback-allow", entry.as_str()]);
            }
            Served::start_on(Some(&db), &args)
        })
        .collect::<anyhow::Result<_>>()?;
    let first = &nodes[0];
    let due = stamp(clock(first)? + chrono::Duration::hours(1));
    for i in 0..1000 {
        let source = first.call(
            "POST",
            "/_admin/importsource",
            &json!({ "workspaceId": first.workspace, "type": "external", "app": "demo" }).to_string(),
        )?["id"]
            .as_str()
            .context("no source id")?
            .to_owned();
        let callback = format!("{}/apps/demo/webtrigger", nodes[i % nodes.len()].base);
        first.call(
            "POST",
            &format!("{}/importschedule", first.base_of(&source)),
            &json!({ "runFrequency": "DAILY", "startTime": due, "timezone": "UTC", "callbackUrl": callback })
                .to_string(),
        )?;
    }
    let start = Instant::now();
    first.call("POST", "/_admin/clock/advance", r#"{"seconds": 7200}"#)?;
    while count(first, "completed")? + count(first, "failed")? + count(first, "skipped")? < 1000 {
        ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the herd did not finish in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(
        count(first, "completed")? == 1000,
        "not every run of the herd completed"
    );
    Ok(elapsed)
}

/// Two nodes; a callback that never answers holds a delivery on one; that
/// node is killed; seconds until the other delivers it again.
fn takeover(url: &str) -> anyhow::Result<f64> {
    let db = fresh_database(url)?;
    // A receiver that accepts callbacks and never answers.
    let hang = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hang_url = format!("http://{}/callback", hang.local_addr()?);
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for stream in hang.incoming().flatten() {
                held.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
            }
        });
    }
    let allowed = hang_url.trim_end_matches("/callback").to_owned();
    let args = ["--clock-start", "2026-03-01T00:00:00Z", "--callback-allow", &allowed];
    let mut nodes: Vec<Option<Served>> = vec![
        Some(Served::start_on(Some(&db), &args)?),
        Some(Served::start_on(Some(&db), &args)?),
    ];
    let first = nodes[0].as_ref().context("node")?;
    let source = first.call(
        "POST",
        "/_admin/importsource",
        &json!({ "workspaceId": first.workspace, "type": "external" }).to_string(),
    )?["id"]
        .as_str()
        .context("no source id")?
        .to_owned();
    let due = stamp(clock(first)? + chrono::Duration::minutes(1));
    first.call(
        "POST",
        &format!("{}/importschedule", first.base_of(&source)),
        &json!({ "runFrequency": "DAILY", "startTime": due, "timezone": "UTC", "callbackUrl": hang_url }).to_string(),
    )?;
    let base = first.base.clone();
    // The advance waits on the hanging callback; let it.
    std::thread::spawn(move || {
        let _ = ureq::post(&format!("{base}/_admin/clock/advance")).send_string(r#"{"seconds": 120}"#);
    });
    let entry = |served: &Served| -> anyhow::Result<Option<Value>> {
        let page = served.call("GET", "/_admin/occurrences", "")?;
        Ok(page["occurrences"].as_array().and_then(|o| o.first().cloned()))
    };
    let owner = loop {
        if let Some(e) = entry(first)? {
            if let Some(owner) = e["leaseOwner"].as_str() {
                break owner.to_owned();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let victim = nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(|n| n.node == owner))
        .context("the owner is one of the nodes")?;
    let mut killed = nodes[victim].take().context("node")?;
    killed.child.kill()?;
    killed.child.wait()?;
    let killed_at = Instant::now();
    let survivor = nodes.iter().flatten().next().context("a survivor")?;
    loop {
        if entry(survivor)?.is_some_and(|e| e["attempt"].as_u64() == Some(2)) {
            return Ok(killed_at.elapsed().as_secs_f64());
        }
        ensure!(killed_at.elapsed() < Duration::from_secs(60), "never taken over");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One scheduler pass claiming 1,000 occurrences due at one instant, on a
/// fresh database of `url` each time, timed alone: the median of five, in
/// claims per second. In process, so what is timed is the pass's one
/// transaction (the ledger rows and the schedules moved on) and nothing of
/// HTTP or the runs: a batch rate, not a sustained one.
fn claim_pass_per_s(url: &str) -> anyhow::Result<f64> {
    let mut rates = (0..5)
        .map(|_| one_claim_pass(url))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    rates.sort_by(f64::total_cmp);
    Ok(rates[2])
}

/// 1,000 schedules with a callback due at one instant on a fresh database;
/// one pass claims them: claims per second.
fn one_claim_pass(url: &str) -> anyhow::Result<f64> {
    use assets_platform::assets::{AssetsService, SourceType};
    use assets_platform::clock::VirtualClock;
    use assets_platform::scheduler::Scheduler;
    use std::sync::Arc;
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T12:00:00Z".parse()?;
    let clock = Arc::new(VirtualClock::new(start));
    let (store, state) = assets_server::pg::PgStore::open(&fresh_database(url)?, "bench", Some(clock.clone()))?;
    let store = Arc::new(store);
    store.heartbeat()?;
    let service = Arc::new(AssetsService::new(clock.clone()).with_store(store.clone(), state));
    let workspace = service.create_workspace();
    for _ in 0..1000 {
        let source = service
            .create_import_source(&workspace, SourceType::External, None)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let answer = service.handle(
            "POST",
            &format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source}/importschedule"),
            br#"{"runFrequency": "DAILY", "startTime": "2026-11-02T13:00:00Z", "timezone": "UTC",
                 "callbackUrl": "https://app.example/callback"}"#,
        );
        ensure!(answer.status == 201, "schedule not created: {}", answer.body);
    }
    let scheduler = Scheduler::new(service.clone()).with_peers("bench", store.clone());
    let due: chrono::DateTime<chrono::Utc> = "2026-11-02T13:00:00Z".parse()?;
    let timed = Instant::now();
    let (_, claimed) = scheduler.claim_due(due);
    let elapsed = timed.elapsed().as_secs_f64();
    ensure!(claimed.len() == 1000, "expected 1,000 claims, got {}", claimed.len());
    Ok(1000.0 / elapsed)
}

/// Runs the measurements against the PostgreSQL server `url` (databases are
/// created on it) with the importer `component`.
pub fn run(url: &str, component: &str) -> anyhow::Result<ClusterFigures> {
    let claims_per_s_sqlite = ledger_claims_per_s(&Served::start_on(None, &[])?)?;
    let claims_per_s_postgres = ledger_claims_per_s(&Served::start_on(Some(&fresh_database(url)?), &[])?)?;
    let claim_pass_per_s_postgres = claim_pass_per_s(url)?;
    let herd_1_node_s = herd(url, component, 1)?;
    let herd_3_nodes_s = herd(url, component, 3)?;
    let takeover_s = takeover(url)?;
    let (rss_pg_after_100_kib, rss_pg_after_10000_kib) = rss_on_postgres(url)?;
    let (history_p99_ms_one_stopped, history_errors_one_stopped) = history_with_a_node_stopped(url)?;
    Ok(ClusterFigures {
        claims_per_s_sqlite,
        claims_per_s_postgres,
        claim_pass_per_s_postgres,
        herd_1_node_s,
        herd_3_nodes_s,
        takeover_s,
        rss_pg_after_100_kib,
        rss_pg_after_10000_kib,
        history_p99_ms_one_stopped,
        history_errors_one_stopped,
    })
}
