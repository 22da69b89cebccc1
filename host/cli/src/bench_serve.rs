//! `assets-host bench --serve`: what serve mode sustains, measured over
//! real HTTP against a real `assets-host serve` child process and its
//! SQLite file.
//!
//! - objects per second submitted through the API into SQLite (one
//!   client, one execution of 100,000 objects in chunks of 1,000);
//! - ledger claims per second: 1,000 schedules due at one instant, each
//!   occurrence claimed, run by the platform and ended;
//! - the server's resident memory after many imports of 1,000 objects,
//!   against its memory after the first (a fresh server for this one).

use anyhow::{ensure, Context as _};
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Serve-mode figures, named as in BENCHMARKS.md.
#[derive(Debug, Clone, Serialize)]
pub struct ServeFigures {
    /// Objects per second through `POST …/data` into SQLite (median of 3).
    pub serve_objects_per_s: f64,
    /// Occurrences claimed and ended per second, 1,000 due at once.
    pub ledger_claims_per_s: f64,
    /// Imports made for the memory figure.
    pub imports: u64,
    /// Resident memory of `serve` after the first import, KiB.
    pub rss_after_first_kib: u64,
    /// Resident memory of `serve` after the last import, KiB.
    pub rss_after_all_kib: u64,
    /// The database file's size at the end, MiB.
    pub db_mib: f64,
}

pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) workspace: String,
    /// The node's name on a shared database.
    pub(crate) node: String,
    agent: ureq::Agent,
    dir: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Served {
    fn start() -> anyhow::Result<Served> {
        Served::start_on(None, &[])
    }

    /// A server on `db` (default: a new SQLite file), with `extra` arguments
    /// (on a port of its own unless they name an `--addr`).
    pub(crate) fn start_on(db: Option<&str>, extra: &[&str]) -> anyhow::Result<Served> {
        let dir = std::env::temp_dir().join(format!("assets-bench-serve-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let db = db.map_or_else(|| dir.join("bench.db").into_os_string(), Into::into);
        let addr: &[&str] = if extra.contains(&"--addr") {
            &[]
        } else {
            &["--addr", "127.0.0.1:0"]
        };
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(addr)
            .args(["--clock", "virtual", "--db"])
            .arg(db)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start assets-host serve")?;
        let (mut base, mut workspace, mut node) = (String::new(), String::new(), String::new());
        for line in BufReader::new(child.stdout.take().context("no stdout")?).lines() {
            let line = line?;
            if let Some(id) = line.trim().strip_prefix("node ") {
                node = id.trim().to_owned();
            }
            if let Some(url) = line.strip_prefix("listening on ") {
                base = url.trim().to_owned();
            }
            if let Some(id) = line.trim().strip_prefix("workspace") {
                workspace = id.trim().to_owned();
            }
            if line.starts_with("ready") {
                break;
            }
        }
        ensure!(!base.is_empty() && !workspace.is_empty(), "serve printed no address");
        Ok(Served {
            child,
            base,
            workspace,
            node,
            agent: ureq::AgentBuilder::new().build(),
            dir,
        })
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: &str) -> anyhow::Result<Value> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let response = self
            .agent
            .request(method, &url)
            .set("content-type", "application/json")
            .send_string(body)
            .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        let text = response.into_string()?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    fn source(&self, kind: &str) -> anyhow::Result<String> {
        let created = self.call(
            "POST",
            "/_admin/importsource",
            &json!({ "workspaceId": self.workspace, "type": kind }).to_string(),
        )?;
        Ok(created["id"].as_str().context("no source id")?.to_owned())
    }

    pub(crate) fn base_of(&self, source: &str) -> String {
        format!("/jsm/assets/workspace/{}/v1/importsource/{source}", self.workspace)
    }

    /// One import: create, `chunks` chunks, complete.
    fn import(&self, source: &str, chunks: &[String]) -> anyhow::Result<()> {
        let created = self.call(
            "POST",
            &format!("{}/executions", self.base_of(source)),
            r#"{"scheduled":false}"#,
        )?;
        let data = created["links"]["submitResults"]
            .as_str()
            .context("no data link")?
            .to_owned();
        for chunk in chunks {
            self.call("POST", &data, chunk)?;
        }
        let completed = data.trim_end_matches("/data").to_owned() + "/history/completed";
        self.call("POST", &completed, "")?;
        Ok(())
    }

    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS line")?;
        Ok(line.split_whitespace().nth(1).context("no figure")?.parse()?)
    }
}

/// Chunks of 1,000 objects with five attributes each, ids from `first`.
fn chunks(count: usize) -> Vec<String> {
    (0..count)
        .map(|c| {
            let objects: Vec<Value> = (0..1000)
                .map(|i| {
                    let n = c * 1000 + i;
                    json!({
                        "externalId": format!("host-{n}"),
                        "label": format!("host {n}"),
                        "attributes": {
                            "ip": [format!("10.0.{}.{}", n / 256 % 256, n % 256)],
                            "os": ["linux"], "owner": ["ops"], "rack": [format!("r{}", n % 40)], "state": ["live"],
                        },
                    })
                })
                .collect();
            json!({ "clientGeneratedId": format!("chunk-{c}"), "objectTypeId": "server", "objects": objects })
                .to_string()
        })
        .collect()
}

/// 1,000 platform-run (`csv`) schedules due at one instant; one clock
/// advance claims, runs and ends each: occurrences per second.
pub(crate) fn ledger_claims_per_s(served: &Served) -> anyhow::Result<f64> {
    let clock = served.call("GET", "/_admin/clock", "")?;
    let now: chrono::DateTime<chrono::Utc> = clock["now"].as_str().context("no clock")?.parse()?;
    let due = (now + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for _ in 0..1000 {
        let source = served.source("csv")?;
        served.call(
            "POST",
            &format!("{}/importschedule", served.base_of(&source)),
            &json!({ "runFrequency": "DAILY", "startTime": due, "timezone": "UTC" }).to_string(),
        )?;
    }
    let start = Instant::now();
    let advanced = served.call("POST", "/_admin/clock/advance", r#"{"seconds": 7200}"#)?;
    let elapsed = start.elapsed().as_secs_f64();
    let firings = advanced["firings"].as_array().context("no firings")?;
    ensure!(
        firings.len() == 1000 && firings.iter().all(|f| f["status"] == "completed"),
        "expected 1,000 completed occurrences, got {}",
        firings.len()
    );
    Ok(1000.0 / elapsed)
}

/// Runs the three measurements; `imports` sets the memory run's length.
pub fn run(imports: u64) -> anyhow::Result<ServeFigures> {
    let served = Served::start()?;

    let source = served.source("external")?;
    let hundred = chunks(100);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        served.import(&source, &hundred)?;
        rates.push(100_000.0 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let serve_objects_per_s = rates[1];

    let ledger_claims_per_s = ledger_claims_per_s(&served)?;

    // The memory run on a server of its own, so its first figure is not
    // the throughput runs' high-water mark.
    drop(served);
    let served = Served::start()?;
    let source = served.source("external")?;
    let one = chunks(1);
    served.import(&source, &one)?;
    let rss_after_first_kib = served.rss_kib()?;
    for _ in 1..imports.max(1) {
        served.import(&source, &one)?;
    }
    let rss_after_all_kib = served.rss_kib()?;
    let db_mib = std::fs::metadata(served.dir.join("bench.db"))?.len() as f64 / (1024.0 * 1024.0)
        + std::fs::metadata(served.dir.join("bench.db-wal")).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0));
    Ok(ServeFigures {
        serve_objects_per_s,
        ledger_claims_per_s,
        imports: imports.max(1),
        rss_after_first_kib,
        rss_after_all_kib,
        db_mib,
    })
}
