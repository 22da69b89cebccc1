//! `assets-host bench`: what the sandbox costs, measured.
//!
//! Every figure is a median over repeated runs after a warm-up, and every
//! ratio compares two things measured side by side in the same run, because
//! absolute times on a shared machine drift. Timing targets live here and in
//! BENCHMARKS.md, never in `make test`.

use anyhow::{ensure, Context as _};
use assets_calendar::{Frequency, Policies, Rule};
use assets_platform::assets::InProcessAssets;
use assets_platform::assets::{AssetsService, SourceType};
use assets_platform::clock::{Clock, SystemClock, VirtualClock};
use assets_platform::scheduler::{FiringStatus, Scheduler};
use assets_platform::source::{DataSourceProvider, SyntheticSource};
use assets_platform::trigger::{self, App, RunStatus};
use assets_runtime::bindings::import_callback::RunOutcome;
use assets_runtime::ApiPath;
use assets_runtime::AppStorage;
use assets_runtime::Grants;
use assets_runtime::{Limits, Runtime};
use assets_scheduled_import as guest;
use chrono::{DateTime, Duration as Days, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `assets-host bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The importer component (default: the one `make component` builds).
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Fewer repetitions: a smoke run, not figures to quote.
    #[arg(long)]
    pub quick: bool,
    /// Measure serve mode instead: a real server over HTTP and SQLite.
    #[arg(long)]
    pub serve: bool,
    /// With `--serve`: imports of 1,000 objects for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    pub imports: u64,
    /// Measure several nodes on PostgreSQL instead (needs `--postgres`).
    #[arg(long)]
    pub cluster: bool,
    /// With `--cluster`: a PostgreSQL server URL the bench may create
    /// databases on (`make bench` starts a throwaway one).
    #[arg(long, env = "ASSETS_TEST_PG")]
    pub postgres: Option<String>,
}

/// The figures, named as in BENCHMARKS.md.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Fresh store + instantiate from the pre-instantiated component + one
    /// trivial call (a replayed occurrence: one storage lookup), µs.
    pub instantiate_floor_us: f64,
    /// One scheduled trigger of an import with zero objects, µs.
    pub trigger_overhead_us: f64,
    /// `trigger_overhead_us / instantiate_floor_us`.
    pub trigger_overhead_ratio: f64,
    /// 100,000 objects (5 attributes) through the guest into the mock.
    pub import_objects_per_s: f64,
    /// The same import, same lifecycle code compiled natively.
    pub import_native_objects_per_s: f64,
    /// native time / wasm time for that import.
    pub import_native_ratio: f64,
    /// Occurrences for a year of 10,000 schedules in 20 zones, per second.
    pub calendar_occurrences_per_s: f64,
    /// cron 0.17's time / ours for the same daily 10:00 occurrences.
    pub calendar_vs_cron_ratio: f64,
    /// croner 4's time / ours for the same daily 10:00 occurrences.
    pub calendar_vs_croner_ratio: f64,
    /// 1,000 schedules due at once, 100 objects each: wall time until all completed.
    pub herd_1000_ms: f64,
    /// Peak linear memory of the instance during the 100,000-object import.
    pub instance_peak_kib: f64,
    /// Size of the release guest component.
    pub component_kib: f64,
    /// Cores used.
    pub cores: usize,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// Runs `f` `warmup` times, then `reps` times, and returns the median seconds.
fn time(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    median(
        (0..reps)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

struct World {
    assets: Arc<AssetsService>,
    workspace: String,
    source_id: String,
}

fn world() -> World {
    let assets = Arc::new(AssetsService::new(Arc::new(SystemClock)));
    let workspace = assets.create_workspace();
    let source_id = assets
        .create_import_source(&workspace, SourceType::External, None)
        .expect("a workspace exists");
    World {
        assets,
        workspace,
        source_id,
    }
}

/// What the sandbox grants an app in the benchmarks: the in-process API, a
/// synthetic source, no settings, no egress, the system clock.
fn bench_grants(w: &World, source: SyntheticSource, storage: AppStorage) -> Grants {
    Grants::new(w.workspace.clone(), Arc::new(InProcessAssets::new(w.assets.clone())))
        .with_source(Arc::new(source))
        .with_storage(Arc::new(storage))
}

fn import_source(objects: u64) -> SyntheticSource {
    SyntheticSource {
        objects,
        page_size: 1000,
        attributes: 5,
        ..SyntheticSource::default()
    }
}

/// Runs every benchmark.
pub fn run(runtime: Arc<Runtime>, component_bytes: u64, quick: bool) -> anyhow::Result<Figures> {
    let scale = |full: usize| if quick { (full / 10).max(3) } else { full };

    // instantiate_floor_us: a replayed occurrence returns after one storage lookup.
    let w = world();
    let storage = AppStorage::default();
    let occurrence = "bench-occurrence";
    storage
        .set(
            guest::lifecycle::occurrence_key(occurrence),
            r#"{"executionId":"e","state":"completed","chunks":0,"objects":0,"reason":null}"#.into(),
        )
        .map_err(anyhow::Error::msg)?;
    let grants = bench_grants(&w, import_source(0), storage.clone());
    let mut event = trigger::manual_event(&w.workspace, &w.source_id);
    event.occurrence_id = occurrence.into();
    let floor = time(scale(200), scale(3000), || {
        let invocation = runtime.invoke(&event, grants.clone(), Limits::default());
        assert!(matches!(invocation.result, Ok(Ok(RunOutcome::Completed(ref r))) if r.replayed));
    });

    // trigger_overhead_us: create execution, complete, history entry.
    let w = world();
    let app = App::new("bench", runtime.clone(), Arc::new(import_source(0)));
    let overhead = time(scale(200), scale(3000), || {
        let mut event = trigger::manual_event(&w.workspace, &w.source_id);
        event.scheduled = true;
        let outcome = trigger::deliver(&app, &w.assets, &event);
        assert_eq!(outcome.status, RunStatus::Completed);
    });

    // import_objects_per_s and instance_peak_kib: 100,000 objects, wasm.
    const OBJECTS: u64 = 100_000;
    let mut peak = 0usize;
    let wasm_import = time(1, scale(7).min(7), || {
        let w = world();
        let grants = bench_grants(&w, import_source(OBJECTS), AppStorage::default());
        let event = trigger::manual_event(&w.workspace, &w.source_id);
        let invocation = runtime.invoke(&event, grants, Limits::default());
        assert!(
            matches!(invocation.result, Ok(Ok(RunOutcome::Completed(ref r))) if r.objects_sent == OBJECTS),
            "wasm import failed"
        );
        peak = peak.max(invocation.peak_memory_bytes);
    });

    // The same lifecycle, compiled natively, against the same mock and source.
    let native_import = time(1, scale(7).min(7), || {
        let w = world();
        let report = native_run(&w, OBJECTS);
        assert_eq!(report.objects_sent, OBJECTS, "native import failed");
    });

    let (calendar_rate, cron_ratio, croner_ratio) = calendar(quick)?;

    let herd = herd(runtime.clone(), if quick { 100 } else { 1000 })?;

    Ok(Figures {
        instantiate_floor_us: floor * 1e6,
        trigger_overhead_us: overhead * 1e6,
        trigger_overhead_ratio: overhead / floor,
        import_objects_per_s: OBJECTS as f64 / wasm_import,
        import_native_objects_per_s: OBJECTS as f64 / native_import,
        import_native_ratio: native_import / wasm_import,
        calendar_occurrences_per_s: calendar_rate,
        calendar_vs_cron_ratio: cron_ratio,
        calendar_vs_croner_ratio: croner_ratio,
        herd_1000_ms: herd * 1e3,
        instance_peak_kib: peak as f64 / 1024.0,
        component_kib: component_bytes as f64 / 1024.0,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// The guest's lifecycle run natively, with adapters doing what the
/// sandbox's imports do.
fn native_run(w: &World, objects: u64) -> guest::lifecycle::RunReport {
    struct Api<'a>(&'a World);
    impl guest::api::AssetsApi for Api<'_> {
        fn call(
            &mut self,
            method: guest::api::Method,
            path: &str,
            body: Option<&str>,
        ) -> Result<guest::api::ApiResponse, guest::api::CallError> {
            let full = ApiPath::parse(&self.0.workspace, path)
                .map_err(|refusal| guest::api::CallError::InvalidPath(refusal.0))?
                .target();
            let method = match method {
                guest::api::Method::Get => "GET",
                guest::api::Method::Post => "POST",
                guest::api::Method::Put => "PUT",
                guest::api::Method::Delete => "DELETE",
            };
            let r = self.0.assets.handle(method, &full, body.unwrap_or_default().as_bytes());
            Ok(guest::api::ApiResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
        }
    }
    struct Source(SyntheticSource);
    impl guest::model::DataSource for Source {
        fn next_page(&mut self, cursor: Option<&str>) -> Result<guest::model::Page, guest::model::SourceError> {
            let page = self
                .0
                .next_page(cursor)
                .map_err(|e| guest::model::SourceError::Other(format!("{e:?}")))?;
            Ok(guest::model::Page {
                batches: page
                    .batches
                    .into_iter()
                    .map(|b| guest::model::ObjectBatch {
                        object_type_id: b.object_type_id,
                        objects: b
                            .objects
                            .into_iter()
                            .map(|o| guest::model::AssetObject {
                                external_id: o.external_id,
                                label: o.label,
                                attributes: o.attributes.into_iter().map(|a| (a.key, a.values)).collect(),
                            })
                            .collect(),
                    })
                    .collect(),
                next_cursor: page.next_cursor,
            })
        }
    }
    struct Host(AppStorage);
    impl guest::retry::Timer for Host {
        fn now_ms(&mut self) -> u64 {
            SystemClock.now().timestamp_millis() as u64
        }
        fn sleep_ms(&mut self, ms: u64) {
            SystemClock.sleep(Duration::from_millis(ms))
        }
    }
    impl guest::lifecycle::KeyValue for Host {
        fn get(&mut self, key: &str) -> Option<String> {
            self.0.get(key)
        }
        fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
            self.0.set(key.to_owned(), value.to_owned())
        }
    }
    let trigger = guest::lifecycle::Trigger {
        import_source_id: &w.source_id,
        scheduled: true,
        occurrence_id: "native",
    };
    let settings = guest::settings::Settings::from_config(|_| None);
    let mut timer = Host(AppStorage::default());
    let mut storage = Host(AppStorage::default());
    guest::lifecycle::run_import(
        trigger,
        settings,
        &mut Api(w),
        &mut Source(import_source(objects)),
        &mut timer,
        &mut storage,
    )
    .ok()
    .and_then(|outcome| match outcome {
        guest::lifecycle::Outcome::Completed(report) => Some(report),
        guest::lifecycle::Outcome::Paused(_) => None,
    })
    .expect("the native import completes")
}

/// The calendar against itself and two cron crates.
fn calendar(quick: bool) -> anyhow::Result<(f64, f64, f64)> {
    const ZONES: [&str; 20] = [
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
        "America/Sao_Paulo",
        "America/St_Johns",
        "Europe/London",
        "Europe/Berlin",
        "Europe/Moscow",
        "Africa/Cairo",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Asia/Tokyo",
        "Asia/Shanghai",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Australia/Adelaide",
        "Pacific/Auckland",
        "Pacific/Chatham",
        "UTC",
    ];
    let zones: Vec<Tz> = ZONES.iter().map(|z| Tz::from_str(z).expect("known zone")).collect();
    let year_start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let year_end = year_start + Days::days(365);
    let count = if quick { 1_000 } else { 10_000 };
    let mut rng = fastrand::Rng::with_seed(6);
    let rules: Vec<Rule> = (0..count)
        .map(|i| {
            let frequency = [Frequency::Daily, Frequency::Weekly, Frequency::Monthly][i % 3];
            let start = year_start + Days::minutes(rng.i64(0..60 * 24 * 28));
            Rule::new(frequency, start, zones[i % zones.len()], Policies::default())
        })
        .collect();
    let mut total = 0usize;
    let ours = time(1, 5, || {
        total = rules
            .iter()
            .map(|r| r.occurrences().take_while(|o| o.instant < year_end).count())
            .sum();
    });
    let rate = total as f64 / ours;

    // Daily at 10:00 local in each zone, for a year: a wall time no DST change touches.
    let daily: Vec<(Tz, Rule)> = zones
        .iter()
        .map(|tz| {
            let start = tz.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap().with_timezone(&Utc);
            (*tz, Rule::new(Frequency::Daily, start, *tz, Policies::default()))
        })
        .collect();
    let reps = if quick { 5 } else { 25 };
    let ours_daily: Vec<Vec<DateTime<Utc>>> = daily
        .iter()
        .map(|(_, r)| r.occurrences().take(365).map(|o| o.instant).collect())
        .collect();
    let ours_time = time(2, reps, || {
        for (_, rule) in &daily {
            std::hint::black_box(rule.occurrences().take(365).map(|o| o.instant).last());
        }
    });

    let cron_schedule = cron::Schedule::from_str("0 0 10 * * *").context("cron expression")?;
    let cron_daily: Vec<Vec<DateTime<Utc>>> = daily
        .iter()
        .map(|(tz, _)| {
            let before = tz.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
            cron_schedule
                .after(&before)
                .take(365)
                .map(|t| t.with_timezone(&Utc))
                .collect()
        })
        .collect();
    ensure!(
        cron_daily == ours_daily,
        "cron and the calendar disagree on daily 10:00 instants"
    );
    let cron_time = time(2, reps, || {
        for (tz, _) in &daily {
            let before = tz.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
            std::hint::black_box(cron_schedule.after(&before).take(365).last());
        }
    });

    let croner_pattern: croner::Cron = "0 10 * * *".parse().context("croner expression")?;
    let croner_daily: Vec<Vec<DateTime<Utc>>> = daily
        .iter()
        .map(|(tz, _)| {
            let mut at = tz.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
            (0..365)
                .map(|_| {
                    at = croner_pattern
                        .find_next_occurrence(&at, false)
                        .expect("croner finds the next 10:00");
                    at.with_timezone(&Utc)
                })
                .collect()
        })
        .collect();
    ensure!(
        croner_daily == ours_daily,
        "croner and the calendar disagree on daily 10:00 instants"
    );
    let croner_time = time(2, reps, || {
        for (tz, _) in &daily {
            let mut at = tz.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
            for _ in 0..365 {
                at = croner_pattern.find_next_occurrence(&at, false).expect("next");
            }
            std::hint::black_box(at);
        }
    });
    Ok((rate, cron_time / ours_time, croner_time / ours_time))
}

/// `n` external schedules due at the same instant, 100 objects each: wall
/// time of the scheduler's `run_due` until all completed (median of 3).
fn herd(runtime: Arc<Runtime>, n: usize) -> anyhow::Result<f64> {
    let mut samples = Vec::new();
    for _ in 0..3 {
        let at: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().expect("a valid instant");
        let clock = Arc::new(VirtualClock::new(at - Days::minutes(1)));
        let assets = Arc::new(AssetsService::new(clock.clone()));
        let workspace = assets.create_workspace();
        let scheduler = Scheduler::new(assets.clone());
        for i in 0..n {
            let source_id = assets.create_import_source(&workspace, SourceType::External, None)?;
            scheduler.install(
                &source_id,
                App::new(format!("app-{i}"), runtime.clone(), Arc::new(import_source(100))),
            );
            let body = serde_json::json!({
                "runFrequency": "DAILY", "startTime": "2026-06-01T00:00:00Z", "timezone": "UTC",
                "callbackUrl": "https://app.example.com/webtrigger"
            });
            let path = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source_id}/importschedule");
            ensure!(
                assets.handle("POST", &path, body.to_string().as_bytes()).status == 201,
                "schedule refused"
            );
        }
        clock.set(at);
        let start = Instant::now();
        let firings = scheduler.run_due();
        samples.push(start.elapsed().as_secs_f64());
        ensure!(firings.len() == n, "{} of {n} schedules fired", firings.len());
        ensure!(
            firings
                .iter()
                .all(|f| f.status == FiringStatus::Completed && f.objects == 100),
            "a herd run failed"
        );
    }
    Ok(median(samples))
}

/// Targets from the benchmark issue: (name, target, higher is better).
pub const TARGETS: &[(&str, f64, bool)] = &[
    ("trigger_overhead_ratio", 1.5, false),
    ("import_objects_per_s", 400_000.0, true),
    ("import_native_ratio", 0.8, true),
    ("calendar_occurrences_per_s", 10_000_000.0, true),
    ("calendar_vs_cron_ratio", 3.0, true),
    ("calendar_vs_croner_ratio", 20.0, true),
    ("herd_1000_ms", 500.0, false),
    ("instance_peak_kib", 8192.0, false),
    ("component_kib", 300.0, false),
];

/// `assets-host bench`.
pub fn run_cli(args: BenchArgs) -> anyhow::Result<()> {
    if args.cluster {
        let url = args
            .postgres
            .context("--cluster needs --postgres postgres://USER@HOST:PORT/DB (make bench starts a server)")?;
        let component = args.component.unwrap_or_else(crate::cli::default_component_path);
        let f = crate::bench_cluster::run(&url, &component.to_string_lossy())?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&f)?);
            return Ok(());
        }
        println!("{:<28} {:>14}", "figure", "measured");
        println!("{:<28} {:>14.0}", "claims_per_s_sqlite", f.claims_per_s_sqlite);
        println!("{:<28} {:>14.0}", "claims_per_s_postgres", f.claims_per_s_postgres);
        println!(
            "{:<28} {:>14.0}",
            "claim_pass_per_s_postgres", f.claim_pass_per_s_postgres
        );
        println!("{:<28} {:>14.2}", "herd_1_node_s", f.herd_1_node_s);
        println!("{:<28} {:>14.2}", "herd_3_nodes_s", f.herd_3_nodes_s);
        println!("{:<28} {:>14.2}", "takeover_s", f.takeover_s);
        println!("{:<28} {:>14}", "rss_pg_after_100_kib", f.rss_pg_after_100_kib);
        println!("{:<28} {:>14}", "rss_pg_after_10000_kib", f.rss_pg_after_10000_kib);
        println!(
            "{:<28} {:>14.1}",
            "history_p99_ms_one_stopped", f.history_p99_ms_one_stopped
        );
        println!(
            "{:<28} {:>14}",
            "history_errors_one_stopped", f.history_errors_one_stopped
        );
        return Ok(());
    }
    if args.serve {
        let f = crate::bench_serve::run(args.imports)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&f)?);
            return Ok(());
        }
        println!("{:<28} {:>14}", "figure", "measured");
        println!("{:<28} {:>14.0}", "serve_objects_per_s", f.serve_objects_per_s);
        println!("{:<28} {:>14.0}", "ledger_claims_per_s", f.ledger_claims_per_s);
        println!("{:<28} {:>14}", "imports", f.imports);
        println!("{:<28} {:>14}", "rss_after_first_kib", f.rss_after_first_kib);
        println!("{:<28} {:>14}", "rss_after_all_kib", f.rss_after_all_kib);
        println!("{:<28} {:>14.1}", "db_mib", f.db_mib);
        return Ok(());
    }
    let path = args.component.unwrap_or_else(crate::cli::default_component_path);
    let bytes = std::fs::metadata(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let runtime = Arc::new(Runtime::from_file(&path)?);
    let figures = run(runtime, bytes, args.quick)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    let f = &figures;
    let rows = [
        ("instantiate_floor_us", f.instantiate_floor_us),
        ("trigger_overhead_us", f.trigger_overhead_us),
        ("trigger_overhead_ratio", f.trigger_overhead_ratio),
        ("import_objects_per_s", f.import_objects_per_s),
        ("import_native_objects_per_s", f.import_native_objects_per_s),
        ("import_native_ratio", f.import_native_ratio),
        ("calendar_occurrences_per_s", f.calendar_occurrences_per_s),
        ("calendar_vs_cron_ratio", f.calendar_vs_cron_ratio),
        ("calendar_vs_croner_ratio", f.calendar_vs_croner_ratio),
        ("herd_1000_ms", f.herd_1000_ms),
        ("instance_peak_kib", f.instance_peak_kib),
        ("component_kib", f.component_kib),
        ("cores", f.cores as f64),
    ];
    println!("{:<28} {:>14}  {:>12}  status", "figure", "measured", "target");
    for (name, v) in rows {
        let (target_text, status) = match TARGETS.iter().find(|(n, _, _)| *n == name) {
            Some((_, t, higher)) => {
                let met = if *higher { v >= *t } else { v <= *t };
                (
                    format!("{}{}", if *higher { ">= " } else { "<= " }, t),
                    if met { "met" } else { "SHORT" },
                )
            }
            None => ("reported".to_owned(), ""),
        };
        println!("{name:<28} {v:>14.2}  {target_text:>12}  {status}");
    }
    Ok(())
}
