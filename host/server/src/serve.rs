//! Serve mode: a local stand-in for the Assets service and the app platform,
//! over real HTTP, with its state in SQLite, or in PostgreSQL shared by
//! several nodes.
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
//! - [`crate::routes`]: the HTTP surface: the Assets API (the mock's one
//!   router), the admin endpoints, the apps' web triggers, body limits,
//!   request logs.
//! - This module: start-up (database, workspace and one import source per
//!   app, apps' runtimes and grants), the scheduler loop on the system clock,
//!   and graceful shutdown (stop scheduling, let the callbacks in flight
//!   and the running imports finish, then give the node's lease up, then
//!   stop serving).
//!
//! Every callback goes over HTTP to the schedule's `callbackUrl`, signed
//! with the app's secret ([`crate::signing`]), exactly as a remote app would
//! receive it; a failed or timed-out callback is a failed history entry.

use crate::callback_targets::{CallbackPolicy, PublicResolver};
use crate::db::{AppRows, SqliteReplays, SqliteStore};
use crate::http_client::{HttpAssets, HttpCallbacks};
use crate::pg::{self, PgAppRows, PgReplays, PgStore};
use crate::routes;
use crate::signing::Verifier;
use anyhow::Context as _;
use assets_platform::assets::journal::Writer;
use assets_platform::assets::{AssetsService, Quotas, SourceType, StateStore};
use assets_platform::clock::{Clock, DatabaseClock, SteadyClock, SystemClock, VirtualClock};
use assets_platform::delivery::DeliveryPool;
use assets_platform::scheduler::{Firing, Scheduler};
use assets_platform::source::{SlowSource, SyntheticSource};
use assets_platform::trigger::App;
use assets_runtime::{AppStorage, DataSourceProvider, Limits, OutboundHttp, Runtime, StorageLimits};
use chrono::SubsecRound as _;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Which clock the server's scheduler follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockKind {
    /// The machine's clock: schedules fire in real time.
    System,
    /// A clock that starts at the current time (or a given one) and moves
    /// only by `POST /_admin/clock/advance`.
    Virtual,
}

/// Which platform's limits the server enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Generous local limits: a web trigger waits for the whole run, each
    /// invocation has the run timeout and 512 MiB, no request-rate or
    /// payload limit.
    #[default]
    Local,
    /// What a Forge-like platform enforces ([`FORGE`]).
    Forge,
}

/// The limits of the `forge` profile, from the platform's published limits.
pub struct ForgeLimits {
    /// A web trigger (the scheduled callback) answers within this.
    pub web_trigger: Duration,
    /// Each later invocation of the same run (queued async work) may take this.
    pub async_work: Duration,
    /// Linear memory per invocation.
    pub memory_bytes: usize,
    /// The event in and the app's answer out, each at most this many bytes.
    pub payload_bytes: usize,
    /// Outbound HTTP requests per minute of runtime.
    pub outbound_per_minute: u32,
    /// What an app may keep in its storage: the platform's key-value store
    /// limits (500-character keys, 240 KiB values) and its published 100 MB
    /// per installation.
    pub storage: StorageLimits,
}

/// The `forge` profile.
pub const FORGE: ForgeLimits = ForgeLimits {
    web_trigger: Duration::from_secs(55),
    async_work: Duration::from_secs(900),
    memory_bytes: 512 << 20,
    payload_bytes: 5_000_000,
    outbound_per_minute: 100,
    storage: StorageLimits {
        key_bytes: 500,
        value_bytes: 240 * 1024,
        keys: assets_runtime::storage::MAX_KEYS,
        total_bytes: 100_000_000,
    },
};

/// How to run the server; `assets-host serve` builds it from its arguments.
#[derive(Clone)]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Serve on this inherited, already listening socket instead of binding
    /// `addr` (Unix): a supervisor or a test harness that holds the port
    /// across restarts hands it over, so no other process can take the port
    /// between a stop and the next start.
    pub listen_fd: Option<i32>,
    /// SQLite database file (`:memory:` keeps nothing across restarts), or
    /// a PostgreSQL URL (`postgres://USER@HOST:PORT/DB`), which several
    /// servers may share.
    pub db: PathBuf,
    /// Apps to host, each with its own settings and egress. Each gets an
    /// external-app import source and the web trigger `/apps/NAME/webtrigger`.
    pub apps: Vec<AppSpec>,
    /// The scheduler's clock.
    pub clock: ClockKind,
    /// With [`ClockKind::Virtual`]: where the clock starts (default now).
    pub clock_start: Option<chrono::DateTime<chrono::Utc>>,
    /// The token the API and admin endpoints require, if any (the apps'
    /// calls carry it; the guests never see it).
    pub token: Option<String>,
    /// Where the apps' Assets API calls go (default: this server).
    pub assets_url: Option<String>,
    /// With `assets_url`: the token for it.
    pub assets_token: Option<String>,
    /// Objects the built-in data source gives each run.
    pub objects: u64,
    /// Objects per page of the built-in data source.
    pub page_size: u32,
    /// How long each page of the built-in data source takes (real time).
    pub page_latency: Duration,
    /// Largest request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest an app's run may take (the callback waits for it).
    pub run_timeout: Duration,
    /// Callbacks delivered at once on the system clock.
    pub workers: usize,
    /// The URL others reach this server at (a load balancer's, say):
    /// its web triggers and links are written with it. Default: the
    /// address it listens on.
    pub public_url: Option<String>,
    /// Callback targets allowed besides the hosted apps' own web triggers,
    /// in the egress allowlist's syntax.
    pub callback_allow: Vec<String>,
    /// Names the callback client resolves to a fixed address instead of
    /// asking DNS (curl's `--resolve`); the address is still filtered, so a
    /// name pinned to loopback is refused like one DNS points there.
    pub resolve: HashMap<String, std::net::IpAddr>,
    /// Listen on a non-loopback address without a token. Off: such a
    /// server refuses to start.
    pub allow_unauthenticated_public_bind: bool,
    /// Requests with the server's token served at once, and web-trigger
    /// calls at once (each its own count); more get 429 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Requests with one import source's token served at once; more get
    /// 429. Each source token has its own count, apart from the server's.
    pub max_concurrent_per_source: usize,
    /// Longest a request body may take to arrive (web triggers: at most
    /// [`routes::WEBTRIGGER_BODY_TIMEOUT`]); later is 408.
    pub body_timeout: Duration,
    /// Imports one app runs at once through its web trigger; more get 429.
    pub max_imports_per_app: usize,
    /// Whose limits apply.
    pub profile: Profile,
    /// What one caller may make the Assets service keep (progress, objects
    /// per execution, history page size).
    pub quotas: Quotas,
    /// What one app may keep in its storage.
    pub storage: StorageLimits,
}

/// An app to host: its component and what it alone is granted.
#[derive(Clone)]
pub struct AppSpec {
    /// Its name: the web trigger is `/apps/{name}/webtrigger`.
    pub name: String,
    /// Its component file.
    pub component: PathBuf,
    /// Its settings (the `config` import); no other app reads them.
    pub settings: BTreeMap<String, String>,
    /// Its outbound HTTP, already behind its own egress guard, on its own
    /// connection pool.
    pub http: Arc<dyn OutboundHttp>,
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
    /// Imports it runs now through its web trigger.
    pub running: AtomicUsize,
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
    /// The shared database, when this is one node of several.
    pub shared: Option<Arc<PgStore>>,
    /// On a shared database: the database's time, which this node tells
    /// real time by (run heartbeats; on the system clock due times and
    /// history too) so that nodes whose own clocks disagree agree; the
    /// node's heartbeat keeps it in step.
    pub database_clock: Option<Arc<DatabaseClock>>,
    /// Requests with the server's token being served now, against
    /// `max_concurrent_requests`.
    pub requests: tokio::sync::Semaphore,
    /// Requests with the server's token served at once; more get 429.
    pub max_concurrent_requests: usize,
    /// Web-trigger calls being served now (their bodies read before their
    /// signatures can be checked), against `max_concurrent_requests`.
    pub callbacks: tokio::sync::Semaphore,
    /// Web-trigger calls in flight per client address (only clients with
    /// some in flight), against [`routes::CALLBACKS_PER_PEER`].
    pub callback_peers: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Requests with each import source's token being served now.
    pub source_requests: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Requests one source token may have served at once.
    pub max_concurrent_per_source: usize,
    /// Longest a request body may take to arrive.
    pub body_timeout: Duration,
    /// Checks callbacks to a name no app has, with a secret nobody holds:
    /// they are refused as a hosted app's forged ones are.
    pub strangers: Verifier,
    /// Imports one app may run at once.
    pub max_imports_per_app: usize,
    /// Whose limits apply.
    pub profile: Profile,
}

impl Server {
    /// The count of requests being served with import source `id`'s token.
    pub fn source_permits(&self, id: &str) -> Arc<tokio::sync::Semaphore> {
        let mut permits = self.source_requests.lock().unwrap_or_else(|e| e.into_inner());
        permits
            .entry(id.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.max_concurrent_per_source)))
            .clone()
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: ServeOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(mut args: ServeOptions) -> anyhow::Result<()> {
    let listener = match args.listen_fd {
        Some(fd) => {
            let listener = inherited_listener(fd)?;
            // The open-bind rule judges the address really listened on.
            args.addr = listener.local_addr()?;
            refuse_open_public_bind(&args)?;
            listener
        }
        None => {
            refuse_open_public_bind(&args)?;
            tokio::net::TcpListener::bind(args.addr)
                .await
                .with_context(|| format!("cannot listen on {}", args.addr))?
        }
    };
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let (server, secrets) = tokio::task::block_in_place(|| start(&args, &base_url))?;
    let server = Arc::new(server);
    // Listen for the stop signals before saying "ready": a SIGTERM sent
    // right after would otherwise kill the process ungracefully.
    let stop_signal = shutdown_signal()?;
    // The banner may ask the database whether its session is encrypted:
    // blocking work, off the async workers.
    tokio::task::block_in_place(|| print_banner(&server, &args, &base_url, &secrets));

    let stop = Arc::new(Stop::default());
    // On a shared database every node's scheduler follows the shared clock,
    // virtual or not, so any node picks up what a dead one left.
    let scheduler_thread = match (&server.virtual_clock, &server.shared) {
        (Some(_), None) => None,
        (clock, _) => {
            let (scheduler, stop) = (server.scheduler.clone(), stop.clone());
            let pool = DeliveryPool::start(scheduler.clone(), args.workers, log_firing);
            let follow_due = clock.is_none();
            Some(std::thread::spawn(move || {
                scheduler_loop(&scheduler, &pool, &stop, follow_due);
                pool.stop();
            }))
        }
    };
    // The node's lease outlives everything it is doing: stopped (and given
    // up) only after the last callback and import have ended, so no other
    // node takes over a delivery this one is still making.
    let beat = Arc::new(Stop::default());
    let heartbeat_thread = server.shared.clone().map(|store| {
        let (beat, clock) = (beat.clone(), server.database_clock.clone());
        std::thread::spawn(move || heartbeat_loop(&store, clock.as_deref(), &beat))
    });
    let app = routes::router(server.clone());
    let shutdown = {
        let server = server.clone();
        async move {
            stop_signal.await;
            tracing::info!("shutting down: no new runs; waiting for running imports");
            stop.stop();
            if let Some(thread) = scheduler_thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            // Callbacks an advance request is still making, and imports
            // still running in web triggers.
            while server.running.load(Ordering::SeqCst) > 0 || server.scheduler.in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            beat.stop();
            if let Some(thread) = heartbeat_thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
    };
    let served = crate::edge::serve(listener, app, shutdown).await;
    // The last of the server goes off the async threads: a PostgreSQL
    // client runs a runtime of its own, which may not be dropped inside one.
    tokio::task::block_in_place(move || drop(server));
    served.context("the server stopped with an error")?;
    tracing::info!("stopped");
    Ok(())
}

/// The listening socket inherited as file descriptor `fd`.
#[cfg(unix)]
fn inherited_listener(fd: i32) -> anyhow::Result<tokio::net::TcpListener> {
    use std::os::fd::BorrowedFd;
    anyhow::ensure!(
        fd > 2,
        "--listen-fd {fd}: descriptors 0 to 2 are standard input, output and error"
    );
    // SAFETY: the descriptor is only borrowed for the duplication below,
    // which fails with EBADF when nothing is open at that number; ownership
    // is never claimed on a number that might not be open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed
        .try_clone_to_owned()
        .with_context(|| format!("--listen-fd {fd} is not an open descriptor"))?;
    let listener = std::net::TcpListener::from(owned);
    listener
        .local_addr()
        .with_context(|| format!("--listen-fd {fd} is not a TCP socket"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("--listen-fd {fd}: cannot make it non-blocking"))?;
    tokio::net::TcpListener::from_std(listener).with_context(|| format!("--listen-fd {fd}: not a socket tokio can use"))
}

#[cfg(not(unix))]
fn inherited_listener(fd: i32) -> anyhow::Result<tokio::net::TcpListener> {
    anyhow::bail!("--listen-fd {fd}: inheriting a socket is supported on Unix only")
}

/// A server anyone on the network can reach must not answer everyone: no
/// token on a non-loopback address is refused unless asked for by name.
///
/// A loopback address behind a public `--public-url` (a proxy forwarding
/// to it) is as reachable as the URL, so it needs the token too.
pub fn refuse_open_public_bind(args: &ServeOptions) -> anyhow::Result<()> {
    let open = args.token.as_deref().is_none_or(str::is_empty);
    if !open || args.allow_unauthenticated_public_bind {
        return Ok(());
    }
    anyhow::ensure!(
        args.addr.ip().is_loopback(),
        "refusing to listen on {} without a token: anyone who can reach that address could create import \
         sources, rewrite schedules and move the clock. Set --token (or ASSETS_HOST_TOKEN), listen on \
         127.0.0.1, or pass --allow-unauthenticated-public-bind if an open server is really what you want",
        args.addr
    );
    if let Some(public) = &args.public_url {
        anyhow::ensure!(
            names_loopback(public),
            "refusing to serve {public} without a token: a loopback address behind a public URL is reached \
             by anyone who can reach the URL. Set --token (or ASSETS_HOST_TOKEN), or pass \
             --allow-unauthenticated-public-bind if an open server is really what you want"
        );
    }
    Ok(())
}

/// True when `url`'s host is a loopback address or `localhost`.
fn names_loopback(url: &str) -> bool {
    match url::Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

/// Opens the database, sets up the workspace, the apps and the scheduler.
/// Also returns each app's callback secret, for the banner.
fn start(args: &ServeOptions, base_url: &str) -> anyhow::Result<(Server, HashMap<String, String>)> {
    anyhow::ensure!(
        args.clock_start.is_none() || args.clock == ClockKind::Virtual,
        "--clock-start needs --clock virtual: the system clock cannot be moved"
    );
    let db = args.db.to_string_lossy().into_owned();
    let (clock, virtual_clock): (Arc<dyn Clock>, _) = match args.clock {
        ClockKind::System => (Arc::new(SystemClock), None),
        ClockKind::Virtual => {
            let start = args.clock_start.unwrap_or_else(chrono::Utc::now);
            // A node joining a shared database follows the clock the others
            // have moved, not its own start.
            let start = match pg::is_postgres(&db) {
                true => {
                    let shared = pg::shared_clock_start(&db, start)?;
                    if args.clock_start.is_some_and(|asked| asked.trunc_subsecs(6) != shared) {
                        tracing::warn!(
                            "--clock-start ignored: the nodes on this database share a virtual clock, now at {}",
                            shared.format("%Y-%m-%dT%H:%M:%S%.fZ")
                        );
                    }
                    shared
                }
                false => start,
            };
            let clock = Arc::new(VirtualClock::new(start));
            (clock.clone(), Some(clock))
        }
    };
    let node = uuid::Uuid::new_v4().to_string();
    let (store, state) = if pg::is_postgres(&db) {
        let (store, state) = PgStore::open(&db, &node, virtual_clock.clone())?;
        store.heartbeat().context("cannot register this node in PostgreSQL")?;
        (Store::Pg(Arc::new(store)), state)
    } else {
        let (store, state) = SqliteStore::open(&args.db)?;
        (Store::Sqlite(Arc::new(store)), state)
    };
    // Nodes tell real time by the database's clock, so that one whose own
    // clock is off neither claims early nor finds live runs' heartbeats
    // lapsed; on the system clock it is the scheduler's clock too.
    // Told by the monotonic clock between samples, so a step of this
    // machine's clock moves nothing until the next sample corrects it.
    let database_clock = match &store {
        Store::Pg(pg) => {
            let steady = SteadyClock::new();
            let first = first_time_sample(pg, &steady)?;
            Some(Arc::new(DatabaseClock::new(Arc::new(steady), first)))
        }
        Store::Sqlite(_) => None,
    };
    let wall: Arc<dyn Clock> = match &database_clock {
        Some(followed) => followed.clone(),
        None => Arc::new(SystemClock),
    };
    let clock = match args.clock {
        ClockKind::System => wall.clone(),
        ClockKind::Virtual => clock,
    };
    // Compiled before the start-up lock below, so nodes starting together
    // compile at once and only set up one at a time.
    let mut runtimes = HashMap::new();
    for app in &args.apps {
        runtimes.insert(app.name.clone(), Arc::new(Runtime::from_file(&app.component)?));
    }
    // Nodes starting together set up the workspace and the apps one at a time.
    let _startup = match &store {
        Store::Pg(pg) => Some(pg.startup_lock()?),
        Store::Sqlite(_) => None,
    };
    let public_url = args
        .public_url
        .as_deref()
        .unwrap_or(base_url)
        .trim_end_matches('/')
        .to_owned();
    let parsed = url::Url::parse(&public_url).with_context(|| format!("--public-url {public_url:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() && parsed.path() == "/",
        "--public-url {public_url:?} must be an http(s) URL with a host and no path, e.g. https://imports.example.com"
    );
    let allowlist = assets_runtime::Allowlist::parse(&args.callback_allow).context("--callback-allow")?;
    let policy = CallbackPolicy::new(&public_url, args.apps.iter().map(|app| app.name.clone()), allowlist);
    let resolver = PublicResolver::new(&public_url, policy.named_addresses()).with_pinned(args.resolve.clone());
    let mut service = AssetsService::new(clock)
        .with_wall_clock(wall.clone())
        .with_quotas(args.quotas)
        .with_store(store.state_store(), state)
        .with_base_url(&public_url)
        .with_callback_targets(Arc::new(policy));
    if let Some(token) = &args.token {
        service = service.with_credential(token.clone());
    }
    let assets = Arc::new(service);
    let workspace_id = {
        let existing = assets.read().map_err(unread)?.workspaces().min().cloned();
        existing.unwrap_or_else(|| assets.create_workspace())
    };
    let (api_url, api_token) = match &args.assets_url {
        Some(url) => (url.clone(), args.assets_token.clone()),
        None => (base_url.to_owned(), args.token.clone()),
    };
    let mut apps = HashMap::new();
    let mut secrets = HashMap::new();
    for spec in &args.apps {
        let (name, settings) = (&spec.name, &spec.settings);
        // The app's first source, kept across restarts; a database from
        // before that was recorded adopts the app's source with the lowest id.
        let import_source_id = store.first_source(name, || {
            let existing = assets
                .read()
                .map_err(unread)?
                .sources()
                .filter(|s| s.workspace_id == workspace_id && s.app.as_deref() == Some(name))
                .map(|s| s.id.clone())
                .min();
            match existing {
                Some(id) => Ok(id),
                None => Ok(assets.create_import_source(&workspace_id, SourceType::External, Some(name.clone()))?),
            }
        })?;
        // An app that speaks the real API's dialect gets the real rule: no
        // execution before its schema-and-mapping document is set.
        if settings.get("api-dialect").map(|v| v.trim()) == Some("cloud") {
            assets.require_mapping(&import_source_id)?;
        }
        // A manual run this server was doing when it stopped cannot finish:
        // say so in the history rather than leave it ingesting for ever, for
        // every import source the app performs (a scheduled one is
        // delivered again, below). Not on a shared database, where the run
        // may be another node's: there the scheduler delivers again a run
        // whose heartbeat lapsed, and fails one nobody delivers once it is
        // past its limit.
        let reason = format!("the server stopped while app {name} was running this import; the run did not finish");
        let performed: Vec<String> = assets
            .read()
            .map_err(unread)?
            .sources()
            .filter(|s| s.workspace_id == workspace_id && s.app.as_deref() == Some(name))
            .map(|s| s.id.clone())
            .collect();
        for source in performed.into_iter().filter(|_| !store.is_shared()) {
            // A scheduled run the app was invoked for goes on instead: the
            // first scheduler pass delivers its occurrence again, and the app
            // resumes from its checkpoint (`Scheduler::recover`).
            let (running, resumable) = {
                let state = assets.read().map_err(unread)?;
                let running = state.ingesting(&source).map(|e| e.id.clone());
                let resumable = running
                    .as_deref()
                    .and_then(|e| state.history_of(e))
                    .and_then(|line| line.occurrence_id.clone())
                    .and_then(|o| state.occurrence(&o))
                    .is_some_and(|entry| !entry.state.is_terminal() && entry.alive_until.is_some());
                (running, resumable)
            };
            let Some(execution) = running else { continue };
            if resumable {
                tracing::warn!(app = %name, %source, "a scheduled import the previous server was running is delivered again");
                continue;
            }
            // The previous server's run, not resumable: a node's start-up
            // failing it, as the journal says.
            let by = Writer::Node { node: node.clone() };
            if assets.fail_ingesting(&source, &execution, &reason, &by) {
                tracing::warn!(app = %name, %source, %execution, "failed an import left running by the previous server");
            }
        }
        let runtime = runtimes.remove(name).expect("compiled above");
        let mut source: Arc<dyn DataSourceProvider> = Arc::new(SyntheticSource {
            objects: args.objects,
            page_size: args.page_size,
            ..SyntheticSource::default()
        });
        if !args.page_latency.is_zero() {
            source = Arc::new(SlowSource {
                inner: source,
                clock: Arc::new(SystemClock),
                latency: args.page_latency,
            });
        }
        let limits = match args.profile {
            Profile::Local => Limits {
                time: args.run_timeout,
                ..Limits::default()
            },
            Profile::Forge => Limits {
                time: FORGE.web_trigger,
                memory_bytes: FORGE.memory_bytes,
                outbound_per_minute: Some(FORGE.outbound_per_minute),
                payload_bytes: Some(FORGE.payload_bytes),
            },
        };
        let mut app = App::new(name.clone(), runtime, source)
            .with_config(settings.clone())
            .with_http(spec.http.clone())
            .with_assets(Arc::new(HttpAssets::new(&api_url, api_token.as_deref())?))
            // Several apps and the scheduler share the clock: an app's waits
            // on a virtual one must not move it for the others.
            .with_own_time()
            .with_limits(limits);
        if args.profile == Profile::Forge {
            app = app.with_continue_limits(Limits {
                time: FORGE.async_work,
                ..limits
            });
        }
        app.storage = store.app_storage(name)?.with_limits(args.storage);
        let secret = store.app_secret(name)?;
        secrets.insert(name.clone(), secret.clone());
        // Accepted signatures live in the database, so a restart does not
        // reopen the window for a captured callback.
        let verifier = match &store {
            Store::Pg(pg) => Verifier::new(secret).with_replay_record(Arc::new(PgReplays(pg.clone()))),
            Store::Sqlite(s) => Verifier::new(secret).with_replay_record(Arc::new(SqliteReplays(s.clone()))),
        };
        apps.insert(
            name.clone(),
            HostedApp {
                app,
                verifier,
                import_source_id,
                callback_url: format!("{public_url}/apps/{name}/webtrigger"),
                running: AtomicUsize::new(0),
            },
        );
    }
    // The callback waits for the whole run; give it the run's limit and a margin.
    let callback_wait = match args.profile {
        Profile::Local => args.run_timeout,
        Profile::Forge => FORGE.web_trigger,
    };
    let callbacks = HttpCallbacks::new(callback_wait + Duration::from_secs(30), secrets.clone(), resolver)
        .with_wall_clock(wall.clone());
    let mut scheduler = Scheduler::new(assets.clone())
        .with_callbacks(Arc::new(callbacks))
        .with_run_limit(args.run_timeout);
    if let Store::Pg(pg) = &store {
        scheduler = scheduler.with_peers(node, pg.clone());
    }
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
        shared: match &store {
            Store::Pg(pg) => Some(pg.clone()),
            Store::Sqlite(_) => None,
        },
        database_clock,
        requests: tokio::sync::Semaphore::new(args.max_concurrent_requests.max(1)),
        max_concurrent_requests: args.max_concurrent_requests.max(1),
        callbacks: tokio::sync::Semaphore::new(args.max_concurrent_requests.max(1)),
        callback_peers: Mutex::new(HashMap::new()),
        source_requests: Mutex::new(HashMap::new()),
        max_concurrent_per_source: args.max_concurrent_per_source.max(1),
        body_timeout: args.body_timeout,
        strangers: Verifier::new(assets_platform::assets::new_secret()),
        max_imports_per_app: args.max_imports_per_app.max(1),
        profile: args.profile,
    };
    Ok((server, secrets))
}

fn print_banner(server: &Server, args: &ServeOptions, base_url: &str, secrets: &HashMap<String, String>) {
    use std::io::Write as _;
    let clock = match args.clock {
        ClockKind::System => "system",
        ClockKind::Virtual => "virtual",
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {base_url}");
    let _ = writeln!(out, "  clock      {clock}");
    let profile = match args.profile {
        Profile::Local => "local",
        Profile::Forge => "forge",
    };
    let _ = writeln!(out, "  profile    {profile}");
    if args.token.is_none() {
        let _ = writeln!(
            out,
            "  auth       none: the API and admin endpoints are open to whoever can reach this address"
        );
    }
    let db = args.db.to_string_lossy();
    let tls = match (pg::is_postgres(&db), &server.shared) {
        (true, Some(_)) => match pg::session_uses_tls(&db) {
            Ok(true) => " (TLS)",
            Ok(false) => " (not encrypted: add ?sslmode=verify-full to the URL to require TLS)",
            Err(_) => "",
        },
        _ => "",
    };
    let _ = writeln!(out, "  database   {}{tls}", pg::redact(&db));
    if let Some(shared) = &server.shared {
        let _ = writeln!(out, "  node       {}", shared.node());
    }
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

/// Claims what falls due and hands it to the delivery workers, until
/// stopped; never waits for an import. With `follow_due` (the system clock)
/// it wakes at the next due time; on a shared virtual clock, which another
/// node may move, it looks every [`POLL`].
fn scheduler_loop(scheduler: &Scheduler, pool: &DeliveryPool, stop: &Stop, follow_due: bool) {
    while !stop.flag.load(Ordering::SeqCst) {
        let (firings, claimed) = scheduler.claim_due(scheduler.assets().clock().now());
        firings.iter().for_each(log_firing);
        pool.submit(claimed);
        let now = scheduler.assets().clock().now();
        let wait = scheduler
            .next_due()
            // Not readable now: the next poll asks again.
            .unwrap_or_default()
            .filter(|_| follow_due)
            .and_then(|due| (due - now).to_std().ok())
            .map_or(POLL, |until| until.min(POLL));
        if stop.wait(wait) {
            break;
        }
    }
}

/// The first reading of the database's clock: the one of five with the
/// shortest round trip, which says best when the database read its clock
/// (the readings after it are taken only when their round trip is short).
fn first_time_sample(pg: &PgStore, local: &dyn Clock) -> anyhow::Result<assets_platform::clock::TimeSample> {
    let mut best: Option<assets_platform::clock::TimeSample> = None;
    for _ in 0..5 {
        let sample = pg.time_sample(local).context("cannot read the time from PostgreSQL")?;
        if best.is_none_or(|b| sample.received - sample.sent < b.received - b.sent) {
            best = Some(sample);
        }
    }
    best.context("no reading of the database's clock")
}

/// Renews this node's lease in the shared database every
/// [`pg::HEARTBEAT_EVERY`] until stopped, saying in the log when the
/// database is lost and when it is back; gives the lease up at the end.
/// Keeps `clock`, if any, in step with the database's.
fn heartbeat_loop(store: &PgStore, clock: Option<&DatabaseClock>, stop: &Stop) {
    let mut lost = false;
    loop {
        let renewed = store.heartbeat();
        // After the lease is renewed, so a slow reading never delays it. A
        // sample missed (the database out of reach, a slow round trip)
        // leaves the clock on the last one: it drifts only as fast as the
        // monotonic clock does from the database's.
        if let Some(clock) = clock.filter(|_| renewed.is_ok()) {
            if let Ok(sample) = store.time_sample(clock.local()) {
                clock.observe(sample);
            }
        }
        match renewed {
            Ok(()) if lost => {
                lost = false;
                tracing::warn!("the database is back: claiming again");
            }
            Ok(()) => {}
            Err(e) if !lost => {
                lost = true;
                tracing::error!(
                    "lost the database: this node claims nothing until it is back, and after {} s the other nodes take over its deliveries: {e:#}",
                    pg::NODE_LEASE.as_secs()
                );
            }
            Err(_) => {}
        }
        if stop.wait(pg::HEARTBEAT_EVERY) {
            break;
        }
    }
    if let Err(e) = store.leave() {
        tracing::warn!("could not give this node's lease up; the others take over when it runs out: {e:#}");
    }
}

/// Where the server keeps its state.
enum Store {
    /// One file, one server.
    Sqlite(Arc<SqliteStore>),
    /// One database, any number of nodes.
    Pg(Arc<PgStore>),
}

impl Store {
    fn state_store(&self) -> Arc<dyn StateStore> {
        match self {
            Store::Sqlite(s) => s.clone(),
            Store::Pg(s) => s.clone(),
        }
    }

    fn is_shared(&self) -> bool {
        matches!(self, Store::Pg(_))
    }

    fn first_source(&self, app: &str, otherwise: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<String> {
        match self {
            Store::Sqlite(s) => s.first_source(app, otherwise),
            Store::Pg(s) => s.first_source(app, otherwise),
        }
    }

    fn app_secret(&self, app: &str) -> anyhow::Result<String> {
        match self {
            Store::Sqlite(s) => s.app_secret(app),
            Store::Pg(s) => s.app_secret(app),
        }
    }

    /// `app`'s storage, written through (and on a shared database read
    /// through) to its rows.
    fn app_storage(&self, app: &str) -> anyhow::Result<AppStorage> {
        Ok(match self {
            Store::Sqlite(s) => AppStorage::durable(s.app_storage(app)?, Arc::new(AppRows::new(s.clone(), app))),
            Store::Pg(s) => AppStorage::durable(s.app_storage(app)?, Arc::new(PgAppRows::new(s.clone(), app))),
        })
    }
}

fn log_firing(firing: &Firing) {
    tracing::info!(
        schedule = %firing.schedule_id,
        occurrence = %firing.occurrence_id,
        execution = ?firing.execution_id,
        status = ?firing.status,
        reason = ?firing.reason,
        "occurrence handled"
    );
}

/// Installs the Ctrl-C and SIGTERM handlers now; the future ends when
/// either arrives.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// A state that could not be read at start-up, as an error that says so.
fn unread(_: assets_platform::assets::ApiError) -> anyhow::Error {
    anyhow::anyhow!("cannot read the state from the database at start-up (see the log above)")
}
