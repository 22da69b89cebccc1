//! `assets-host preview` and `assets-host simulate`: a schedule's runs, on
//! paper and then for real under a virtual clock.

use crate::cli::{history_table, load};
use anyhow::{bail, Context as _};
use assets_calendar::{FoldPolicy, Frequency, GapPolicy, MonthEndPolicy, Policies, Rule};
use assets_platform::assets::schedule::parse_start_time;
use assets_platform::assets::{AssetsService, HistoryEntry, SourceType};
use assets_platform::clock::VirtualClock;
use assets_platform::scheduler::{Firing, Scheduler};
use assets_platform::source::SyntheticSource;
use assets_platform::trigger::App;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// The schedule a preview or simulation is about.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// ONCE, DAILY, WEEKLY or MONTHLY.
    #[arg(long, value_parser = parse_frequency)]
    pub frequency: Frequency,
    /// First run, ISO 8601 in UTC, e.g. 2026-03-01T14:00:00Z.
    #[arg(long, value_parser = parse_start)]
    pub start: DateTime<Utc>,
    /// IANA time zone of the wall-clock rule, e.g. America/New_York.
    #[arg(long, value_parser = parse_timezone)]
    pub timezone: Tz,
    /// A wall time that does not exist (spring forward).
    #[arg(long, value_enum, default_value_t = GapArg::ShiftForward)]
    pub dst_gap_policy: GapArg,
    /// A wall time that happens twice (fall back).
    #[arg(long, value_enum, default_value_t = FoldArg::Earlier)]
    pub dst_fold_policy: FoldArg,
    /// A day of month the month lacks.
    #[arg(long, value_enum, default_value_t = MonthEndArg::LastDay)]
    pub month_end_policy: MonthEndArg,
}

/// `--dst-gap-policy`.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GapArg {
    /// Shift by the gap's length (02:30 → 03:30).
    ShiftForward,
    /// Skip that day, recorded as skipped.
    Skip,
    /// Run at the transition (02:30 → 03:00).
    AtTransition,
}

/// `--dst-fold-policy`.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FoldArg {
    /// The first of the two instants.
    Earlier,
    /// The second of the two instants.
    Later,
    /// Both instants.
    Both,
}

/// `--month-end-policy`.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MonthEndArg {
    /// The month's last day.
    LastDay,
    /// Skip the month, recorded as skipped.
    Skip,
}

impl ScheduleArgs {
    fn policies(&self) -> Policies {
        Policies {
            gap: match self.dst_gap_policy {
                GapArg::ShiftForward => GapPolicy::ShiftForward,
                GapArg::Skip => GapPolicy::Skip,
                GapArg::AtTransition => GapPolicy::AtTransition,
            },
            fold: match self.dst_fold_policy {
                FoldArg::Earlier => FoldPolicy::Earlier,
                FoldArg::Later => FoldPolicy::Later,
                FoldArg::Both => FoldPolicy::Both,
            },
            month_end: match self.month_end_policy {
                MonthEndArg::LastDay => MonthEndPolicy::LastDay,
                MonthEndArg::Skip => MonthEndPolicy::Skip,
            },
        }
    }

    fn rule(&self) -> Rule {
        Rule::new(self.frequency, self.start, self.timezone, self.policies())
    }
}

fn parse_frequency(text: &str) -> Result<Frequency, String> {
    Frequency::parse(&text.to_ascii_uppercase()).ok_or_else(|| format!("expected one of {}", Frequency::NAMES))
}

fn parse_start(text: &str) -> Result<DateTime<Utc>, String> {
    parse_start_time(text).map_err(|e| e.message)
}

fn parse_timezone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>()
        .map_err(|_| format!("{text:?} is not an IANA time zone name (e.g. America/New_York)"))
}

/// `assets-host preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// How many occurrences to show.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Print a JSON array of {utc, local, runs, note}.
    #[arg(long)]
    pub json: bool,
}

/// Prints the next occurrences of a schedule.
pub fn preview(args: PreviewArgs) -> anyhow::Result<()> {
    let rule = args.schedule.rule();
    let tz = args.schedule.timezone;
    let rows: Vec<_> = rule
        .occurrences()
        .take(args.count)
        .map(|o| {
            json!({
                "utc": assets_platform::assets::schedule::timestamp(o.instant),
                "local": o.instant.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
                "runs": o.runs,
                "note": o.adjustment.map(|a| a.note),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{} from {} in {}:\n",
        rule.frequency(),
        assets_platform::assets::schedule::timestamp(rule.start()),
        tz.name()
    );
    println!("{:<4}{:<22}{:<26}note", "#", "UTC", "local");
    for (i, row) in rows.iter().enumerate() {
        let mark = if row["runs"] == true { "" } else { "(skipped) " };
        println!(
            "{:<4}{:<22}{:<26}{mark}{}",
            i + 1,
            row["utc"].as_str().unwrap_or_default(),
            row["local"].as_str().unwrap_or_default(),
            row["note"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// `assets-host simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// The importer component (default: the one `make component` builds).
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// Simulate this many days from the start.
    #[arg(long, conflicts_with = "until", required_unless_present = "until")]
    pub days: Option<u32>,
    /// Simulate until this instant (ISO 8601, UTC).
    #[arg(long, value_parser = parse_start)]
    pub until: Option<DateTime<Utc>>,
    /// Objects the built-in source produces on each run.
    #[arg(long, default_value_t = 100)]
    pub objects: u64,
    /// Make the source time out after page K on every run.
    #[arg(long, value_name = "K")]
    pub fail_after_page: Option<u32>,
    /// The app's settings and egress.
    #[command(flatten)]
    pub grants: crate::cli::AppArgs,
    /// Print {runs, history} as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a simulation produced.
pub struct Simulation {
    /// Every handled occurrence, in order.
    pub runs: Vec<Firing>,
    /// The import history.
    pub history: Vec<HistoryEntry>,
}

/// Creates an import source and a schedule through the API, then runs a
/// virtual clock from just before the start to `end`, firing the component
/// on each occurrence.
pub fn simulate_schedule(
    schedule: &ScheduleArgs,
    app: impl FnOnce() -> anyhow::Result<App>,
    end: DateTime<Utc>,
) -> anyhow::Result<Simulation> {
    let clock = Arc::new(VirtualClock::new(schedule.start - Duration::minutes(1)));
    let assets = Arc::new(AssetsService::new(clock.clone()));
    let workspace = assets.create_workspace();
    let source_id = assets.create_import_source(&workspace, SourceType::External, Some("importer".into()))?;
    let app = app()?;
    if crate::cli::speaks_cloud(&app.config) {
        assets.require_mapping(&source_id)?;
    }
    let policies = schedule.policies();
    let body = json!({
        "runFrequency": schedule.frequency,
        "startTime": assets_platform::assets::schedule::timestamp(schedule.start),
        "timezone": schedule.timezone.name(),
        "callbackUrl": "https://importer.apps.local/webtrigger",
        "dstGapPolicy": policies.gap,
        "dstFoldPolicy": policies.fold,
        "monthEndPolicy": policies.month_end,
    });
    let path = format!("/jsm/assets/workspace/{workspace}/v1/importsource/{source_id}/importschedule");
    let created = assets.handle("POST", &path, body.to_string().as_bytes());
    if created.status != 201 {
        bail!("the API refused the schedule: {}", created.body);
    }
    let scheduler = Scheduler::new(assets.clone());
    scheduler.install(&source_id, app);
    // In memory: every pass is stored.
    let runs = scheduler
        .run_until(&clock, end)
        .map_err(|halted| anyhow::anyhow!("the simulation stopped at {}", halted.at))?;
    Ok(Simulation {
        runs,
        history: assets
            .history(&source_id)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?,
    })
}

/// Runs `simulate` and prints the timeline and history.
pub fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let end = match (args.days, args.until) {
        (Some(days), _) => args.schedule.start + Duration::days(i64::from(days)),
        (None, Some(until)) => until,
        (None, None) => bail!("give --days N or --until T"),
    };
    if end < args.schedule.start {
        bail!("--until {end} is before --start {}", args.schedule.start);
    }
    let source = SyntheticSource {
        objects: args.objects,
        fail_after_page: args.fail_after_page,
        ..Default::default()
    };
    let component = args.component.clone();
    let simulation = simulate_schedule(
        &args.schedule,
        || {
            args.grants
                .grant(App::new("importer", load(component)?, Arc::new(source)))
        },
        end,
    )
    .context("simulation failed")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "runs": simulation.runs, "history": simulation.history }))?
        );
        return Ok(());
    }
    print!("{}", timeline(&simulation.runs));
    println!("\nImport history:\n");
    print!("{}", history_table(&simulation.history));
    Ok(())
}

/// Renders firings as a timeline: local time, UTC, execution, objects, outcome, note.
pub fn timeline(runs: &[Firing]) -> String {
    let mut out = format!(
        "{:<26}{:<22}{:<11}{:>8}  {:<12}note\n",
        "local", "UTC", "execution", "objects", "outcome"
    );
    for f in runs {
        let note = match (&f.note, &f.reason) {
            (Some(n), Some(r)) => format!("{n}; {r}"),
            (Some(n), None) => n.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "{:<26}{:<22}{:<11}{:>8}  {:<12}{note}\n",
            f.local,
            assets_platform::assets::schedule::timestamp(f.nominal_utc),
            f.execution_id
                .as_deref()
                .map(|id| &id[..8.min(id.len())])
                .unwrap_or("-"),
            f.objects,
            format!("{:?}", f.status).to_lowercase(),
        ));
    }
    out
}
