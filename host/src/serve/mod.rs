//! Serve mode: a local stand-in for the Assets service and the app platform,
//! over real HTTP, with its state in SQLite.
//!
//! `assets-host serve` puts the same pieces the in-process commands use behind
//! a network edge:
//!
//! ```text
//! scheduler loop ─signed POST─▶ /apps/{name}/webtrigger ─▶ runtime ─▶ guest
//!      ▲                                                          │ HTTP, host credential
//!      │ clock (system, or virtual + /_admin/clock/advance)        ▼
//!  SQLite ◀── state, saved before each answer ◀── /jsm/assets/... (the mock's router)
//! ```
//!
//! - [`routes`]: the HTTP surface: the Assets API (the mock's one router),
//!   the admin endpoints, the apps' web triggers, body limits, request logs.
//! - This module: start-up (database, workspace and one import source per
//!   app, apps' runtimes and grants), the scheduler loop on the system clock,
//!   and graceful shutdown (stop scheduling, let running imports finish,
//!   then stop serving).
//!
//! Every callback goes over HTTP to the schedule's `callbackUrl`, signed
//! with the app's secret ([`crate::signing`]), exactly as a remote app would
//! receive it; a failed or timed-out callback is a failed history entry.

mod routes;

use crate::assets::persist::{AppRows, SqliteStore};
use crate::assets::{AssetsService, SourceType};
use crate::clock::{Clock, SystemClock, VirtualClock};
use crate::http_client::{HttpAssets, HttpCallbacks};
use crate::runtime::{Limits, Runtime};
use crate::scheduler::Scheduler;
use crate::signing::Verifier;
use crate::source::SyntheticSource;
use crate::storage::AppStorage;
use crate::trigger::App;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Which clock the server's scheduler follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockKind {
    /// The machine's clock: schedules fire in real time.
    System,
    /// A clock that starts at the current time and moves only by
    /// `POST /_admin/clock/advance`.
    Virtual,
}

/// `assets-host serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// SQLite database file; `:memory:` keeps nothing across restarts.
    #[arg(long, default_value = "assets-host.db")]
    pub db: PathBuf,
    /// An app to host: `NAME=COMPONENT.wasm` (repeatable). Each gets an
    /// external-app import source and the web trigger `/apps/NAME/webtrigger`.
    #[arg(long = "app", value_name = "NAME=COMPONENT", value_parser = parse_app)]
    pub apps: Vec<(String, PathBuf)>,
    /// The scheduler's clock.
    #[arg(long, value_enum, default_value_t = ClockKind::System)]
    pub clock: ClockKind,
    /// With `--clock virtual`: where the clock starts (RFC 3339, default now),
    /// e.g. to see how runs missed while the server was down are handled.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub clock_start: Option<chrono::DateTime<chrono::Utc>>,
    /// Require `Authorization: Bearer TOKEN` on the API and admin endpoints
    /// (the apps' calls carry it; the guests never see it).
    #[arg(long, env = "ASSETS_HOST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the apps' Assets API calls go (default: this server), e.g.
    /// `https://api.atlassian.com`.
    #[arg(long, value_name = "URL")]
    pub assets_url: Option<String>,
    /// With `--assets-url`: the environment variable holding the token for it.
    #[arg(long, value_name = "VAR", default_value = "ASSETS_API_TOKEN")]
    pub assets_token_env: String,
    /// Every hosted app's settings and egress.
    #[command(flatten)]
    pub grants: crate::cli::AppArgs,
    /// Objects the built-in data source gives each run.
    #[arg(long, default_value_t = 1000)]
    pub objects: u64,
    /// Largest request body, in bytes; larger ones get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest an app's run may take, in seconds (the callback waits for it).
    #[arg(long, default_value_t = 900)]
    pub run_timeout_secs: u64,
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-11-28T09:00:00Z: {e}"))
}

fn parse_app(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=COMPONENT.wasm"))?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "app name {name:?} must be letters, digits, '-' or '_' (it becomes part of a URL)"
        ));
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// An app this server hosts.
pub struct HostedApp {
    /// The app, as the trigger runs it.
    pub app: App,
    /// Checks its callbacks' signatures.
    pub verifier: Verifier,
    /// Its import source.
    pub import_source_id: String,
    /// Its web trigger.
    pub callback_url: String,
}

/// Everything the HTTP handlers share.
pub struct Server {
    /// The Assets API and its state.
    pub assets: Arc<AssetsService>,
    /// The scheduler.
    pub scheduler: Arc<Scheduler>,
    /// Set in `--clock virtual` mode.
    pub virtual_clock: Option<Arc<VirtualClock>>,
    /// Hosted apps by name.
    pub apps: HashMap<String, HostedApp>,
    /// The workspace the apps live in.
    pub workspace_id: String,
    /// The token the API and admin endpoints require, if any.
    pub token: Option<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Imports running in web triggers now; shutdown waits for them.
    pub running: AtomicUsize,
    /// One clock advance at a time.
    pub advancing: tokio::sync::Mutex<()>,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let (server, secrets) = tokio::task::block_in_place(|| start(&args, &base_url))?;
    let server = Arc::new(server);
    print_banner(&server, &args, &base_url, &secrets);

    let stop = Arc::new(Stop::default());
    let scheduler_thread = match server.virtual_clock {
        Some(_) => None,
        None => {
            let (scheduler, stop) = (server.scheduler.clone(), stop.clone());
            Some(std::thread::spawn(move || scheduler_loop(&scheduler, &stop)))
        }
    };
    let app = routes::router(server.clone());
    let shutdown = {
        let server = server.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new runs; waiting for running imports");
            stop.stop();
            if let Some(thread) = scheduler_thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            while server.running.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the server stopped with an error")?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the database, sets up the workspace, the apps and the scheduler.
/// Also returns each app's callback secret, for the banner.
fn start(args: &ServeArgs, base_url: &str) -> anyhow::Result<(Server, HashMap<String, String>)> {
    anyhow::ensure!(
        args.clock_start.is_none() || args.clock == ClockKind::Virtual,
        "--clock-start needs --clock virtual: the system clock cannot be moved"
    );
    let (store, state) = SqliteStore::open(&args.db)?;
    let store = Arc::new(store);
    let (clock, virtual_clock): (Arc<dyn Clock>, _) = match args.clock {
        ClockKind::System => (Arc::new(SystemClock), None),
        ClockKind::Virtual => {
            let clock = Arc::new(VirtualClock::new(args.clock_start.unwrap_or_else(chrono::Utc::now)));
            (clock.clone(), Some(clock))
        }
    };
    let mut service = AssetsService::new(clock)
        .with_store(store.clone(), state)
        .with_base_url(base_url);
    if let Some(token) = &args.token {
        service = service.with_credential(token.clone());
    }
    let assets = Arc::new(service);
    let workspace_id = {
        let existing = assets.state().workspaces().min().cloned();
        existing.unwrap_or_else(|| assets.create_workspace())
    };
    let http = args.grants.http()?;
    let (api_url, api_token) = match &args.assets_url {
        Some(url) => (url.clone(), std::env::var(&args.assets_token_env).ok()),
        None => (base_url.to_owned(), args.token.clone()),
    };
    let settings = args.grants.config()?;
    let mut apps = HashMap::new();
    let mut secrets = HashMap::new();
    for (name, path) in &args.apps {
        let existing = assets
            .state()
            .sources()
            .find(|s| s.workspace_id == workspace_id && s.app.as_deref() == Some(name))
            .map(|s| s.id.clone());
        let import_source_id = match existing {
            Some(id) => id,
            None => assets.create_import_source(&workspace_id, SourceType::External, Some(name.clone()))?,
        };
        // A run this server was doing when it stopped cannot finish: say so
        // in the history rather than leave it ingesting for ever.
        let reason = format!("the server stopped while app {name} was running this import; the run did not finish");
        if let Some(execution) = assets.fail_ingesting(&import_source_id, &reason) {
            tracing::warn!(app = %name, %execution, "failed an import left running by the previous server");
        }
        let runtime = Arc::new(Runtime::from_file(path)?);
        let source = SyntheticSource {
            objects: args.objects,
            ..SyntheticSource::default()
        };
        let mut app = App::new(name.clone(), runtime, Arc::new(source))
            .with_config(settings.clone())
            .with_http(http.clone())
            .with_assets(Arc::new(HttpAssets::new(&api_url, api_token.as_deref())))
            .with_limits(Limits {
                time: Duration::from_secs(args.run_timeout_secs),
                ..Limits::default()
            });
        app.storage = AppStorage::durable(
            store.app_storage(name)?,
            Arc::new(AppRows::new(store.clone(), name.clone())),
        );
        let secret = store.app_secret(name)?;
        secrets.insert(name.clone(), secret.clone());
        apps.insert(
            name.clone(),
            HostedApp {
                app,
                verifier: Verifier::new(secret),
                import_source_id,
                callback_url: format!("{base_url}/apps/{name}/webtrigger"),
            },
        );
    }
    // The callback waits for the whole run; give it the run's limit and a margin.
    let callbacks = HttpCallbacks::new(Duration::from_secs(args.run_timeout_secs + 30), secrets.clone());
    let scheduler = Scheduler::new(assets.clone()).with_callbacks(Arc::new(callbacks));
    let server = Server {
        assets,
        scheduler: Arc::new(scheduler),
        virtual_clock,
        apps,
        workspace_id,
        token: args.token.clone(),
        max_body_bytes: args.max_body_bytes,
        running: AtomicUsize::new(0),
        advancing: tokio::sync::Mutex::new(()),
    };
    Ok((server, secrets))
}

fn print_banner(server: &Server, args: &ServeArgs, base_url: &str, secrets: &HashMap<String, String>) {
    use std::io::Write as _;
    let clock = match args.clock {
        ClockKind::System => "system",
        ClockKind::Virtual => "virtual",
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {base_url}");
    let _ = writeln!(out, "  clock      {clock}");
    let _ = writeln!(out, "  database   {}", args.db.display());
    let _ = writeln!(out, "  workspace  {}", server.workspace_id);
    let mut names: Vec<&String> = server.apps.keys().collect();
    names.sort();
    for name in names {
        let app = &server.apps[name];
        let _ = writeln!(out, "  app {name}");
        let _ = writeln!(out, "    importSourceId  {}", app.import_source_id);
        let _ = writeln!(out, "    callbackUrl     {}", app.callback_url);
        if let Some(secret) = secrets.get(name) {
            let _ = writeln!(out, "    secret          {secret}");
        }
        let _ = writeln!(
            out,
            "    API base        {base_url}/jsm/assets/workspace/{}/v1/importsource/{}",
            server.workspace_id, app.import_source_id
        );
    }
    let _ = writeln!(out, "ready (Ctrl-C or SIGTERM stops the server)");
    let _ = out.flush();
}

/// Tells the scheduler loop to stop, and wakes it.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
    flag: AtomicBool,
}

impl Stop {
    fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout`; true once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        *stopped
    }
}

/// Longest the loop sleeps: a schedule created meanwhile is seen this soon.
const POLL: Duration = Duration::from_secs(1);

/// Fires what falls due on the system clock until stopped.
fn scheduler_loop(scheduler: &Scheduler, stop: &Stop) {
    while !stop.flag.load(Ordering::SeqCst) {
        for firing in scheduler.run_due() {
            tracing::info!(
                schedule = %firing.schedule_id,
                occurrence = %firing.occurrence_id,
                execution = ?firing.execution_id,
                status = ?firing.status,
                reason = ?firing.reason,
                "occurrence handled"
            );
        }
        let now = scheduler.assets().clock().now();
        let wait = scheduler
            .next_due()
            .and_then(|due| (due - now).to_std().ok())
            .map_or(POLL, |until| until.min(POLL));
        if stop.wait(wait) {
            break;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
