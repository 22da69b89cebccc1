//! The `assets-host` commands: argument types and what each command does.

use crate::schedule;
pub use crate::schedule::{simulate_schedule, timeline, PreviewArgs, ScheduleArgs, SimulateArgs, Simulation};

use anyhow::Context as _;
use assets_platform::assets::{AssetsService, HistoryEntry, SourceType};
use assets_platform::clock::{Clock, SystemClock, VirtualClock};
use assets_platform::source::{DataSourceProvider, SlowSource, SyntheticSource};
use assets_platform::trigger::{self, App, TriggerOutcome};
use assets_runtime::{Limits, Runtime};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs scheduled Assets imports in a WebAssembly sandbox, against an
/// in-process mock of the Assets API.
#[derive(Debug, Parser)]
#[command(name = "assets-host", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs scheduled triggers of the bundled importer (one import that
    /// completes, one whose source times out) and prints the import history.
    Demo(DemoArgs),
    /// Runs one scheduled trigger of a component against the mock and reports it.
    Trigger(TriggerArgs),
    /// Shows a schedule's next run times in UTC and local time, with every
    /// DST or month-end adjustment.
    Preview(PreviewArgs),
    /// Creates a schedule through the API and runs it under a virtual clock
    /// with the real component firing on each occurrence.
    Simulate(SimulateArgs),
    /// Checks URLs against an egress allowlist, the way the sandbox does:
    /// one line per URL, `allowed` with the matching entry, or `denied`.
    Egress(EgressArgs),
    /// Runs many scheduled imports under random faults and checks that each
    /// ends completed with every object exactly once, or failed with a reason.
    Chaos(crate::chaos::ChaosArgs),
    /// Measures the sandbox's costs (medians; ratios taken in the same run)
    /// and prints them against their targets.
    Bench(crate::bench::BenchArgs),
    /// Serves the Assets API and hosted apps over HTTP, with state in SQLite
    /// and schedules firing on the system clock (or a virtual one).
    Serve(Box<crate::serve::ServeArgs>),
}

/// `assets-host egress`.
#[derive(Debug, Args)]
pub struct EgressArgs {
    /// An allowlist entry: a host (`api.example.com`, https implied), a URL
    /// (`http://localhost:8080`), a subdomain glob (`*.example.com`) or `*`.
    #[arg(long = "allow", value_name = "ENTRY")]
    pub allow: Vec<String>,
    /// URLs to check.
    #[arg(required = true)]
    pub urls: Vec<String>,
}

/// `assets-host demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The importer component (default: the one `make component` builds).
    #[arg(long)]
    pub component: Option<PathBuf>,
}

/// `assets-host trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The importer component (default: the one `make component` builds).
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// Objects the built-in source produces.
    #[arg(long, default_value_t = 1000)]
    pub objects: u64,
    /// Objects per source page.
    #[arg(long, default_value_t = 250)]
    pub page_size: u32,
    /// Object types, comma-separated; objects are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "server")]
    pub object_types: Vec<String>,
    /// Make the source time out on every page after page K (1-based).
    #[arg(long, value_name = "K")]
    pub fail_after_page: Option<u32>,
    /// Each source page takes this long, on the platform's clock (a slow
    /// third-party API): real time, or simulated with `--virtual-clock`.
    /// A page read is not cut short at the time limit, so an app must not
    /// start one it has no time to finish.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub page_latency_ms: u64,
    /// The app's time limit per invocation, in seconds. An import that needs
    /// longer pauses at a checkpoint and is invoked again (55 is a web
    /// trigger's limit on a Forge-like platform).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub time_limit: u64,
    /// Run on a simulated clock that starts now: waits (page latency,
    /// retry backoff) take no real time, and the time limit counts
    /// simulated time as well as real time.
    #[arg(long)]
    pub virtual_clock: bool,
    /// The app's settings and egress.
    #[command(flatten)]
    pub grants: AppArgs,
    /// Deliver a manual run instead of a scheduled one.
    #[arg(long)]
    pub manual: bool,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// What the command line grants an app: its settings and its egress.
#[derive(Debug, Clone, Default, Args)]
pub struct AppArgs {
    /// An app setting, e.g. `chunk-max-objects=200` (repeatable); wins over
    /// `--config-file`.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// App settings from a file of `KEY = VALUE` lines (`#` starts a comment),
    /// e.g. `sources/http-json/netbox.conf`.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// An egress allowlist entry (repeatable); none means no third-party calls.
    #[arg(long = "allow", value_name = "ENTRY")]
    pub allow: Vec<String>,
    /// Answer the app's third-party calls from an in-process NetBox-style
    /// device list of N devices at https://netbox.example.com, behind the
    /// allowlist, instead of the network.
    #[arg(long, value_name = "N")]
    pub mock_netbox: Option<usize>,
    /// The Assets API dialect the importer speaks: `seed` (the seed's
    /// chunks and `history/completed`) or `cloud` (the real API's
    /// schema-and-mapping, `data` chunks by selector, `completed: true`;
    /// the import source then requires a mapping). Sets `api-dialect`.
    #[arg(long, value_name = "DIALECT", value_parser = ["seed", "cloud"])]
    pub dialect: Option<String>,
}

/// True when an app's settings make it speak the real API's dialect: its
/// import source then follows the real rule that no execution starts
/// before a schema-and-mapping document is set.
pub fn speaks_cloud(settings: &BTreeMap<String, String>) -> bool {
    settings.get("api-dialect").map(|v| v.trim()) == Some("cloud")
}

impl AppArgs {
    /// The settings: the file's, then each `--config`.
    pub fn config(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut settings: BTreeMap<String, String> = match &self.config_file {
            Some(path) => read_config_file(path)?.into_iter().collect(),
            None => BTreeMap::new(),
        };
        settings.extend(self.settings.iter().cloned());
        if let Some(dialect) = &self.dialect {
            match settings.get("api-dialect") {
                Some(set) if set.trim() != dialect => {
                    anyhow::bail!("--dialect {dialect} contradicts the setting api-dialect = {set}; give one of them")
                }
                _ => settings.insert("api-dialect".into(), dialect.clone()),
            };
        }
        Ok(settings)
    }

    /// Outbound HTTP behind the allowlist: the mock, or the real network.
    pub fn http(&self) -> anyhow::Result<Arc<dyn assets_runtime::OutboundHttp>> {
        let network: Arc<dyn assets_runtime::OutboundHttp> = match self.mock_netbox {
            Some(devices) => Arc::new(assets_platform::third_party::NetBoxMock::new(devices)),
            None => Arc::new(assets_server::http_client::HttpOutbound::default()),
        };
        let allowlist = assets_runtime::egress::Allowlist::parse(&self.allow)?;
        Ok(Arc::new(assets_runtime::egress::EgressGuard::new(allowlist, network)))
    }

    /// `app` with these settings and this egress.
    pub fn grant(&self, app: App) -> anyhow::Result<App> {
        Ok(app.with_config(self.config()?).with_http(self.http()?))
    }
}

/// Reads a settings file: `KEY = VALUE` lines; blank lines and lines
/// starting with `#` are skipped.
pub fn read_config_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(n, line)| {
            parse_setting(line)
                .map(|(k, v)| (k, v.trim().to_owned()))
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

/// Parses `KEY=VALUE`.
pub fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo(args),
        Command::Trigger(args) => trigger_once(args),
        Command::Preview(args) => schedule::preview(args),
        Command::Simulate(args) => schedule::simulate(args),
        Command::Egress(args) => egress(args),
        Command::Chaos(args) => crate::chaos::run_cli(args),
        Command::Bench(args) => crate::bench::run_cli(args),
        Command::Serve(args) => crate::serve::run(*args),
    }
}

fn egress(args: EgressArgs) -> anyhow::Result<()> {
    use assets_runtime::egress::{Allowlist, Decision};
    let allowlist = Allowlist::parse(&args.allow)?;
    for url in &args.urls {
        match allowlist.check(url) {
            Decision::Allowed(entry) => println!("allowed  {url}  (matched {entry})"),
            Decision::Denied => println!("denied   {url}  (no entry matches)"),
            Decision::Invalid(why) => println!("denied   {url}  ({why})"),
        }
    }
    Ok(())
}

/// Where `make component` puts the importer.
pub fn default_component_path() -> PathBuf {
    std::env::var_os("ASSETS_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm32-wasip2/wasm/assets_scheduled_import.wasm")
        })
}

pub(crate) fn load(component: Option<PathBuf>) -> anyhow::Result<Arc<Runtime>> {
    let path = component.unwrap_or_else(default_component_path);
    Ok(Arc::new(Runtime::from_file(&path)?))
}

fn trigger_once(args: TriggerArgs) -> anyhow::Result<()> {
    let runtime = load(args.component)?;
    let clock: Arc<dyn Clock> = if args.virtual_clock {
        Arc::new(VirtualClock::new(chrono::Utc::now()))
    } else {
        Arc::new(SystemClock)
    };
    let assets = Arc::new(AssetsService::new(clock.clone()));
    let workspace = assets.create_workspace();
    let source_id = assets
        .create_import_source(&workspace, SourceType::External, Some("importer".into()))
        .context("cannot create the import source")?;
    if speaks_cloud(&args.grants.config()?) {
        assets.require_mapping(&source_id)?;
    }
    let mut source: Arc<dyn DataSourceProvider> = Arc::new(SyntheticSource {
        objects: args.objects,
        page_size: args.page_size,
        object_types: args.object_types,
        fail_after_page: args.fail_after_page,
        ..SyntheticSource::default()
    });
    if args.page_latency_ms > 0 {
        source = Arc::new(SlowSource {
            inner: source,
            clock,
            latency: std::time::Duration::from_millis(args.page_latency_ms),
        });
    }
    let limits = Limits {
        time: std::time::Duration::from_secs(args.time_limit),
        ..Limits::default()
    };
    let app = args
        .grants
        .grant(App::new("importer", runtime, source).with_limits(limits))?;
    let mut event = trigger::manual_event(&workspace, &source_id);
    event.scheduled = !args.manual;
    let outcome = trigger::deliver(&app, &assets, &event);
    let history = assets
        .history(&source_id)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trigger_json(&outcome, &history))?);
    } else {
        print_outcome(&outcome);
        println!();
        print!("{}", history_table(&history));
    }
    Ok(())
}

fn trigger_json(outcome: &TriggerOutcome, history: &[HistoryEntry]) -> serde_json::Value {
    let mut value = serde_json::to_value(outcome).expect("outcomes serialize");
    value["history"] = serde_json::to_value(history).expect("history serializes");
    value
}

fn print_outcome(outcome: &TriggerOutcome) {
    let invocations = if outcome.invocations > 1 {
        format!(", {} invocations", outcome.invocations)
    } else {
        String::new()
    };
    println!(
        "execution {}: {:?}, {} objects in {} chunks ({:.1} ms{invocations}){}",
        outcome.execution_id.as_deref().unwrap_or("(none)"),
        outcome.status,
        outcome.objects,
        outcome.chunks,
        outcome.elapsed_ms,
        outcome
            .failure_reason
            .as_deref()
            .map(|r| format!("\n  reason: {r}"))
            .unwrap_or_default()
    );
}

fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = load(args.component)?;
    let assets = Arc::new(AssetsService::new(Arc::new(SystemClock)));
    let workspace = assets.create_workspace();

    println!("Scheduled triggers against the in-process Assets API:\n");
    let runs = [
        (
            "cmdb-sync",
            SyntheticSource {
                objects: 3000,
                object_types: vec!["server".into(), "laptop".into()],
                ..Default::default()
            },
        ),
        (
            "inventory-feed",
            SyntheticSource {
                objects: 3000,
                fail_after_page: Some(2),
                ..Default::default()
            },
        ),
    ];
    let mut sources = Vec::new();
    for (name, source) in runs {
        let source_id = assets.create_import_source(&workspace, SourceType::External, Some(name.into()))?;
        let app = App::new(name, runtime.clone(), Arc::new(source))
            // Short backoff: the failing source is retried in real time here.
            .with_config(BTreeMap::from([
                ("chunk-max-objects".to_owned(), "400".to_owned()),
                ("retry-base-delay-ms".to_owned(), "100".to_owned()),
            ]));
        let mut event = trigger::manual_event(&workspace, &source_id);
        event.scheduled = true;
        let outcome = trigger::deliver(&app, &assets, &event);
        print!("{name}: ");
        print_outcome(&outcome);
        sources.push(source_id);
    }
    let history: Vec<HistoryEntry> = sources
        .iter()
        .map(|s| assets.history(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}", e.message))?
        .into_iter()
        .flatten()
        .collect();
    println!("\nImport history:\n");
    print!("{}", history_table(&history));

    // A schedule across the fall-back change: 09:00 in New York every day,
    // 13:00Z in summer time and 14:00Z after 2026-11-01.
    let schedule = ScheduleArgs {
        frequency: assets_calendar::Frequency::Daily,
        start: "2026-10-29T13:00:00Z".parse().expect("a valid instant"),
        timezone: chrono_tz::America::New_York,
        dst_gap_policy: schedule::GapArg::ShiftForward,
        dst_fold_policy: schedule::FoldArg::Earlier,
        month_end_policy: schedule::MonthEndArg::LastDay,
    };
    let source = SyntheticSource {
        objects: 500,
        ..Default::default()
    };
    let end = schedule.start + chrono::Duration::days(5);
    let simulation = simulate_schedule(&schedule, || Ok(App::new("daily-sync", runtime, Arc::new(source))), end)?;
    println!("\nDAILY at 09:00 America/New_York, 2026-10-29 to 2026-11-03, under a virtual clock:");
    println!("(the local time holds at 09:00 while UTC moves from 13:00Z to 14:00Z when DST ends on 2026-11-01)\n");
    print!("{}", timeline(&simulation.runs));
    Ok(())
}

/// Renders history entries as a text table.
pub fn history_table(entries: &[HistoryEntry]) -> String {
    let mut rows = vec![[
        "execution".to_owned(),
        "scheduled".to_owned(),
        "status".to_owned(),
        "objects".to_owned(),
        "started (UTC)".to_owned(),
        "ended (UTC)".to_owned(),
        "calls".to_owned(),
        "reason".to_owned(),
    ]];
    for e in entries {
        rows.push([
            e.execution_id.as_deref().map(short_id).unwrap_or("-").to_owned(),
            if e.scheduled { "yes" } else { "no" }.to_owned(),
            format!("{:?}", e.status).to_lowercase(),
            e.objects.to_string(),
            e.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.ended_at
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into()),
            e.invocations.unwrap_or(1).to_string(),
            e.failure_reason.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        for (c, width) in widths.iter().enumerate() {
            out.push_str(&format!("{:<width$}  ", row[c], width = width));
        }
        out.push_str(&row[7]);
        out.push('\n');
    }
    out
}

fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
