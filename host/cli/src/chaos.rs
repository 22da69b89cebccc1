//! The chaos run: many scheduled imports through the virtual clock under
//! random faults, each checked as it ends.
//!
//! After every handled occurrence: the app itself left no execution
//! ingesting (counted before the platform cleans up after it), and none is
//! left after; a completed execution holds exactly the source's objects (none
//! lost, none received twice); a failed one has a reason of at most 1024
//! characters; no occurrence produced two executions, even when the platform
//! delivers it again; no execution exists that no run reported (an orphan,
//! as a careless retry of a lost create-execution answer makes). Apps run
//! with a 20 s time limit and keep 16 s of it to stop in, and their source
//! takes up to 1.5 s (simulated) a page, so runs that read a few pages or
//! meet a few seconds of a fault's simulated waits go on across invocations
//! from their checkpoint. Checked data is then freed, so the host's memory should stay flat;
//! resident memory is sampled early and at the end to show it.

use assets_platform::assets::InProcessAssets;
use assets_platform::assets::{AssetsService, SourceType};
use assets_platform::clock::VirtualClock;
use assets_platform::faults::{FaultPlan, FaultyAssets, FaultySource};
use assets_platform::scheduler::{FiringStatus, Scheduler};
use assets_platform::source::{SlowSource, SyntheticSource};
use assets_platform::trigger::{self, App, RunStatus};
use assets_runtime::bindings::import_callback::TriggerEvent;
use assets_runtime::{Limits, Runtime};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// The plan used when none is given: every fault kind, at rates that make
/// most runs meet at least one.
pub const DEFAULT_PLAN: &str = r#"{
  "assetsApi": [
    {"endpoint": "any", "fault": "status", "status": 503, "rate": 0.04},
    {"endpoint": "any", "fault": "status", "status": 500, "rate": 0.02},
    {"endpoint": "any", "fault": "status", "status": 429, "retryAfter": "2", "rate": 0.03},
    {"endpoint": "data", "fault": "status", "status": 429, "rate": 0.02},
    {"endpoint": "any", "fault": "reset", "rate": 0.02},
    {"endpoint": "data", "fault": "timeout", "rate": 0.04},
    {"endpoint": "completed", "fault": "timeout", "rate": 0.05},
    {"endpoint": "failed", "fault": "timeout", "rate": 0.05},
    {"endpoint": "data", "fault": "latency", "ms": 300, "rate": 0.1},
    {"endpoint": "create", "fault": "lost-answer", "rate": 0.05},
    {"endpoint": "data", "fault": "lost-answer", "rate": 0.03},
    {"endpoint": "completed", "fault": "lost-answer", "rate": 0.05}
  ],
  "source": [
    {"fault": "timeout", "rate": 0.05},
    {"fault": "connection", "rate": 0.02},
    {"fault": "bad-page", "rate": 0.01},
    {"fault": "loop", "rate": 0.01}
  ]
}"#;

/// Each app's time limit in the chaos run, and the margin at which it
/// pauses: with 16 s of 20 kept to stop in, simulated waits of a few
/// seconds in all (latency faults, retry backoff, `Retry-After`) make the
/// app stop at a checkpoint and the platform invoke it again, while the
/// longest single wait (2 s) still fits in an invocation.
const TIME_LIMIT_S: u64 = 20;
const MARGIN_MS: &str = "16000";

/// `assets-host chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Scheduled runs to make.
    #[arg(long, default_value_t = 500)]
    pub runs: usize,
    /// Seed of the faults, object counts and duplicate deliveries.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A fault plan file (JSON; format in `assets-host chaos --help` and
    /// the README). Default: a built-in plan with every fault kind.
    #[arg(long, value_name = "FILE", conflicts_with = "faults_json")]
    pub faults: Option<PathBuf>,
    /// A fault plan given inline, e.g.
    /// '{"assetsApi":[{"endpoint":"data","fault":"status","status":503,"rate":0.2}]}'.
    #[arg(long, value_name = "JSON")]
    pub faults_json: Option<String>,
    /// The importer component (default: the one `make component` builds).
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a chaos run found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChaosReport {
    /// Occurrences handled by running the app.
    pub runs: usize,
    /// Runs that completed.
    pub completed: usize,
    /// Runs that failed with a recorded reason.
    pub failed: usize,
    /// Runs whose app created no execution (with a recorded reason).
    pub not_started: usize,
    /// Occurrences skipped (an execution still ingesting).
    pub skipped: usize,
    /// Executions the app left ingesting when its run ended (before the
    /// platform failed them), or left ingesting after: must be 0.
    pub stuck: usize,
    /// Executions no run reported (a second execution made by a retried
    /// create-execution whose first answer was lost): must be 0.
    pub orphaned: usize,
    /// Runs that took more than one invocation, going on from a checkpoint.
    pub resumed: usize,
    /// Invocations of the apps in all.
    pub invocations: u64,
    /// Objects of completed runs that did not arrive: must be 0.
    pub lost: u64,
    /// Objects received more than once: must be 0.
    pub duplicated: u64,
    /// Occurrences with more than one execution: must be 0.
    pub double_executions: usize,
    /// Failure reasons over 1024 characters or empty: must be 0.
    pub bad_reasons: usize,
    /// Duplicate deliveries made by the platform.
    pub duplicate_deliveries: usize,
    /// Duplicate deliveries the app answered with the earlier result.
    pub replayed: usize,
    /// Calls the app retried.
    pub retries: u64,
    /// Resident memory after the first tenth of the runs, KiB; `None` when
    /// it could not be read (see [`resident_kib`]), never a made-up 0.
    pub rss_early_kib: Option<u64>,
    /// Resident memory at the end, KiB; `None` when it could not be read.
    pub rss_end_kib: Option<u64>,
    /// The seed the run was made with, to make it again.
    pub seed: u64,
    /// What broke, one line per broken invariant (the first
    /// [`MAX_BROKEN_SHOWN`]): which app and occurrence, and the reason the
    /// run ended with.
    pub broken: Vec<String>,
}

/// Broken invariants described in [`ChaosReport::broken`]; the counts hold
/// them all.
pub const MAX_BROKEN_SHOWN: usize = 20;

impl ChaosReport {
    fn broke(&mut self, what: String) {
        if self.broken.len() < MAX_BROKEN_SHOWN {
            self.broken.push(what);
        }
    }
}

impl ChaosReport {
    /// True when every invariant held.
    pub fn clean(&self) -> bool {
        self.stuck == 0
            && self.orphaned == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.double_executions == 0
            && self.bad_reasons == 0
    }
}

/// Runs `runs` scheduled imports of `runtime` under `plan`.
pub fn run(runtime: Arc<Runtime>, plan: &FaultPlan, runs: usize, seed: u64) -> anyhow::Result<ChaosReport> {
    const SOURCES: u64 = 5;
    let mut rng = fastrand::Rng::with_seed(seed);
    let plan = FaultPlan {
        seed: plan.seed ^ seed,
        ..plan.clone()
    };
    let clock = Arc::new(VirtualClock::new(
        "2026-01-01T00:00:00Z".parse().expect("a valid instant"),
    ));
    let assets = Arc::new(AssetsService::new(clock.clone()));
    let workspace = assets.create_workspace();
    let scheduler = Scheduler::new(assets.clone());
    let mut apps: HashMap<String, (App, SyntheticSource)> = HashMap::new();
    for i in 0..SOURCES {
        let source_id = assets.create_import_source(&workspace, SourceType::External, Some(format!("app-{i}")))?;
        let synthetic = SyntheticSource {
            objects: rng.u64(0..600),
            page_size: rng.u32(50..250),
            object_types: (0..rng.usize(1..4)).map(|t| format!("type-{t}")).collect(),
            ..SyntheticSource::default()
        };
        // A third-party API that takes its time: pages of up to 1.5 s
        // (simulated) make runs pause before a page they have no time for.
        let slow = SlowSource {
            inner: Arc::new(synthetic.clone()),
            clock: clock.clone(),
            latency: std::time::Duration::from_millis(rng.u64(0..1500)),
        };
        let source = FaultySource::new(Arc::new(slow), u64::from(synthetic.page_size), &plan, i);
        let backend = FaultyAssets::new(Arc::new(InProcessAssets::new(assets.clone())), &plan, i, clock.clone());
        let config = BTreeMap::from([
            ("chunk-max-objects".to_owned(), "100".to_owned()),
            ("retry-base-delay-ms".to_owned(), "200".to_owned()),
            ("time-limit-margin-ms".to_owned(), MARGIN_MS.to_owned()),
        ]);
        let app = App::new(format!("app-{i}"), runtime.clone(), Arc::new(source))
            .with_config(config)
            .with_assets(Arc::new(backend))
            .with_limits(Limits {
                time: std::time::Duration::from_secs(TIME_LIMIT_S),
                ..Limits::default()
            });
        scheduler.install(&source_id, app.clone());
        let body = serde_json::json!({
            "runFrequency": "DAILY",
            "startTime": format!("2026-01-01T{:02}:{:02}:00Z", 1 + i * 4, rng.u8(0..60)),
            "timezone": "UTC",
            "callbackUrl": format!("https://app-{i}.example.com/webtrigger"),
        });
        let path = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source_id}/importschedule");
        let created = assets.handle("POST", &path, body.to_string().as_bytes());
        anyhow::ensure!(created.status == 201, "cannot create a schedule: {}", created.body);
        apps.insert(source_id, (app, synthetic));
    }

    let mut report = ChaosReport {
        seed,
        ..ChaosReport::default()
    };
    let mut executions_of: HashMap<String, HashSet<String>> = HashMap::new();
    while report.runs < runs {
        let Ok(Some(due)) = scheduler.next_due() else { break };
        clock.set(due);
        for firing in scheduler.run_due() {
            let (app, synthetic) = &apps[&firing.import_source_id];
            match firing.status {
                FiringStatus::Completed => report.completed += 1,
                FiringStatus::Failed => report.failed += 1,
                FiringStatus::NotStarted => report.not_started += 1,
                FiringStatus::Delivered => anyhow::bail!("chaos apps run in process; a callback went elsewhere"),
                FiringStatus::Skipped | FiringStatus::Missed => {
                    report.skipped += 1;
                    continue;
                }
            }
            report.runs += 1;
            report.retries += u64::from(firing.retries);
            report.invocations += u64::from(firing.invocations);
            if firing.invocations > 1 {
                report.resumed += 1;
            }
            if let Some(left) = &firing.left_by_app {
                report.stuck += 1;
                report.broke(format!(
                    "stuck: {} left execution {left} of occurrence {} ingesting after {} invocations; the run ended: {}",
                    app.name,
                    firing.occurrence_id,
                    firing.invocations,
                    firing.reason.as_deref().unwrap_or("(no reason)")
                ));
            }
            if let Some(id) = &firing.execution_id {
                executions_of
                    .entry(firing.occurrence_id.clone())
                    .or_default()
                    .insert(id.clone());
            }
            if firing.status == FiringStatus::Completed {
                let (lost, duplicated) =
                    check_objects(&assets, firing.execution_id.as_deref().unwrap_or_default(), synthetic);
                report.lost += lost;
                report.duplicated += duplicated;
                if lost + duplicated > 0 {
                    report.broke(format!(
                        "{} completed occurrence {} with {lost} objects lost and {duplicated} received twice",
                        app.name, firing.occurrence_id
                    ));
                }
            }
            if let Some(reason) = &firing.reason {
                let chars = reason.chars().count();
                if chars == 0 || chars > 1024 {
                    report.bad_reasons += 1;
                    report.broke(format!(
                        "{} ended occurrence {} with a reason of {chars} characters",
                        app.name, firing.occurrence_id
                    ));
                }
            } else if firing.status != FiringStatus::Completed {
                report.bad_reasons += 1;
                report.broke(format!(
                    "{} ended occurrence {} {:?} without a reason",
                    app.name, firing.occurrence_id, firing.status
                ));
            }

            // The platform may deliver an occurrence again.
            if rng.f64() < 0.1 {
                report.duplicate_deliveries += 1;
                let event = TriggerEvent {
                    workspace_id: workspace.clone(),
                    import_source_id: firing.import_source_id.clone(),
                    scheduled: true,
                    schedule_id: Some(firing.schedule_id.clone()),
                    occurrence_id: firing.occurrence_id.clone(),
                    nominal_time: assets_platform::assets::schedule::timestamp(firing.nominal_utc),
                    attempt: 2,
                };
                let again = trigger::deliver(app, &assets, &event);
                if again.replayed {
                    report.replayed += 1;
                }
                if let Some(left) = &again.left_by_app {
                    report.stuck += 1;
                    report.broke(format!(
                        "stuck: {} left execution {left} ingesting when occurrence {} was delivered again; it answered: {}",
                        app.name,
                        firing.occurrence_id,
                        again.failure_reason.as_deref().unwrap_or("(no reason)")
                    ));
                }
                if let (Some(id), RunStatus::Completed | RunStatus::Failed) = (&again.execution_id, again.status) {
                    executions_of
                        .entry(firing.occurrence_id.clone())
                        .or_default()
                        .insert(id.clone());
                }
                report.retries += u64::from(again.retries);
            }
            let still = in_memory(&assets)
                .ingesting(&firing.import_source_id)
                .map(|e| e.id.clone());
            if let Some(still) = still {
                report.stuck += 1;
                report.broke(format!(
                    "stuck: execution {still} of {} still ingesting after occurrence {} was handled",
                    app.name, firing.occurrence_id
                ));
            }
            if let Some(id) = &firing.execution_id {
                assets.state().forget_objects(id);
            }
            if report.runs == runs / 10 {
                report.rss_early_kib = resident_kib();
            }
        }
    }
    let doubles: Vec<String> = executions_of
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(occurrence, ids)| format!("occurrence {occurrence} made {} executions", ids.len()))
        .collect();
    report.double_executions = doubles.len();
    doubles.into_iter().for_each(|d| report.broke(d));
    let reported: HashSet<&String> = executions_of.values().flatten().collect();
    let orphans: Vec<String> = assets
        .state()
        .all_history()
        .iter()
        .filter_map(|line| line.execution_id.clone())
        .filter(|id| !reported.contains(id))
        .collect();
    report.orphaned = orphans.len();
    orphans
        .into_iter()
        .for_each(|id| report.broke(format!("execution {id} is an orphan: no run reported it")));
    report.rss_end_kib = resident_kib();
    Ok(report)
}

/// (lost, duplicated) objects of a completed execution against its source.
fn check_objects(assets: &AssetsService, execution_id: &str, source: &SyntheticSource) -> (u64, u64) {
    let state = in_memory(assets);
    let Some(execution) = state.execution_by_id(execution_id) else {
        return (source.objects, 0);
    };
    let lost = (0..source.objects)
        .filter(|i| {
            let (object_type, object) = source.object(*i);
            !execution.objects.contains_key(&(object_type, object.external_id))
        })
        .count() as u64;
    let duplicated = execution.received.saturating_sub(execution.objects.len() as u64);
    (lost, duplicated)
}

/// This process's resident memory in KiB, from `/proc/self/statm` (Linux,
/// 4 KiB pages); `None` when it cannot be read or parsed, so a memory check
/// fails rather than comparing two zeros.
pub fn resident_kib() -> Option<u64> {
    resident_kib_of(&std::fs::read_to_string("/proc/self/statm").ok()?)
}

/// The resident KiB in a `statm` line: its second field, in pages.
fn resident_kib_of(statm: &str) -> Option<u64> {
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    pages.checked_mul(4)
}

/// `assets-host chaos`.
pub fn run_cli(args: ChaosArgs) -> anyhow::Result<()> {
    let plan_text = match (&args.faults, &args.faults_json) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the fault plan {}: {e}", path.display()))?,
        (None, Some(json)) => json.clone(),
        (None, None) => DEFAULT_PLAN.to_owned(),
    };
    let plan = FaultPlan::parse(&plan_text)?;
    let runtime = Arc::new(Runtime::from_file(
        &args
            .component
            .clone()
            .unwrap_or_else(crate::cli::default_component_path),
    )?);
    let report = run(runtime, &plan, args.runs, args.seed)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report:#?}");
        println!(
            "{}",
            if report.clean() {
                "every invariant held"
            } else {
                "INVARIANTS BROKEN"
            }
        );
    }
    anyhow::ensure!(
        report.clean(),
        "chaos run broke an invariant (seed {}; again with `assets-host chaos --seed {} --runs {}`)",
        args.seed,
        args.seed,
        args.runs
    );
    Ok(())
}

/// The state of the simulation's service, which keeps it in memory only:
/// there is no store to fail reading it.
fn in_memory(assets: &AssetsService) -> assets_platform::assets::ReadGuard<'_> {
    assets.read().expect("a service without a store always reads its state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_statm_or_is_none() {
        assert_eq!(resident_kib_of("53237 12034 3003 1 0 40000 0"), Some(48_136));
        assert_eq!(resident_kib_of(""), None);
        assert_eq!(resident_kib_of("53237"), None);
        assert_eq!(resident_kib_of("53237 lots"), None);
        // On Linux the process's own reading is there, and not zero.
        #[cfg(target_os = "linux")]
        assert!(resident_kib().is_some_and(|kib| kib > 0));
    }
}
