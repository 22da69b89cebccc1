//! `assets-host serve`: its arguments, turned into the server's
//! [`ServeOptions`]; the server itself is `assets-server`.

use crate::cli::{parse_setting, AppArgs};
use anyhow::Context as _;
use assets_platform::assets::Quotas;
use assets_runtime::StorageLimits;
use assets_server::serve::AppSpec;
use assets_server::{ClockKind, Profile, ServeOptions};
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which clock the server's scheduler follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockArg {
    /// The machine's clock: schedules fire in real time.
    System,
    /// A clock that starts at the current time and moves only by
    /// `POST /_admin/clock/advance`.
    Virtual,
}

/// Whose limits the server enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// Generous local limits: a web trigger waits for the whole run; each
    /// invocation gets --run-timeout-secs and 512 MiB; no request-rate or
    /// payload limit.
    Local,
    /// A Forge-like platform's limits: a web trigger answers within 55 s
    /// (a run that goes on continues as queued work, 900 s per invocation);
    /// 512 MiB per invocation; a 5 MB invocation payload; 100 outbound HTTP
    /// requests per minute per app; app storage of 500-byte keys, 240 KiB
    /// values and 100 MB per app. Each limit reached is a named, recorded
    /// failure.
    Forge,
}

/// `assets-host serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Serve on an already listening TCP socket inherited as this file
    /// descriptor (Unix), instead of binding --addr: for a supervisor or a
    /// test harness that keeps the port across restarts.
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,
    /// Where the state lives: a SQLite file (one server; `:memory:` keeps
    /// nothing across restarts) or a PostgreSQL URL,
    /// `postgres://USER@HOST:PORT/DB`, which several servers share.
    #[arg(long, env = "ASSETS_DB", default_value = "assets-host.db")]
    pub db: PathBuf,
    /// An app to host: `NAME=COMPONENT.wasm` (repeatable). Each gets an
    /// external-app import source and the web trigger `/apps/NAME/webtrigger`.
    #[arg(long = "app", value_name = "NAME=COMPONENT", value_parser = parse_app)]
    pub apps: Vec<(String, PathBuf)>,
    /// The scheduler's clock.
    #[arg(long, value_enum, default_value_t = ClockArg::System)]
    pub clock: ClockArg,
    /// With `--clock virtual`: where the clock starts (RFC 3339, default now),
    /// e.g. to see how runs missed while the server was down are handled.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub clock_start: Option<chrono::DateTime<chrono::Utc>>,
    /// Require `Authorization: Bearer TOKEN` on the API and admin endpoints
    /// (the apps' calls carry it; the guests never see it). Required to
    /// listen on a non-loopback address.
    #[arg(long, env = "ASSETS_HOST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Listen on a non-loopback address with no --token, leaving the API and
    /// the admin endpoints open to anyone who can reach it.
    #[arg(long)]
    pub allow_unauthenticated_public_bind: bool,
    /// The URL others reach this server at (e.g. a load balancer's); its
    /// web triggers and links are written with it. Default: the listening
    /// address.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// A callback target schedules may name besides the hosted apps' own web
    /// triggers (repeatable), in the egress allowlist's syntax
    /// (`app.example.com`, `https://*.example.com`, `http://10.0.0.7:8080`).
    /// Loopback, private, link-local and metadata addresses are refused
    /// unless an entry names the address itself.
    #[arg(long = "callback-allow", value_name = "ENTRY")]
    pub callback_allow: Vec<String>,
    /// Resolve NAME to IP for callbacks instead of asking DNS (repeatable),
    /// as curl's --resolve does. The address is still checked: a name
    /// pinned to a loopback or private address is refused like one DNS
    /// points there.
    #[arg(long = "resolve", value_name = "NAME=IP", value_parser = parse_resolve)]
    pub resolve: Vec<(String, std::net::IpAddr)>,
    /// Whose limits to enforce.
    #[arg(long, value_enum, default_value_t = ProfileArg::Local)]
    pub profile: ProfileArg,
    /// Requests with the server's token served at once, and web-trigger
    /// calls at once (each its own count); more get 429 with Retry-After.
    /// Requests without a token never count: they are refused from their
    /// headers first.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Requests with one import source's token served at once (each token
    /// its own count); more get 429 with Retry-After.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_per_source: u32,
    /// Largest progress report (`PUT …/executions/{id}/progress`) kept, in
    /// bytes; larger ones get 413. Default 4096.
    #[arg(long, value_name = "BYTES")]
    pub max_progress_bytes: Option<usize>,
    /// Most objects one execution may hold; a chunk that would go over gets
    /// 413. Default 5000000.
    #[arg(long, value_name = "N")]
    pub max_objects_per_execution: Option<u64>,
    /// Most bytes an ingesting execution may hold (its objects' text); a
    /// chunk that would go over gets 413. Default 1073741824.
    #[arg(long, value_name = "BYTES")]
    pub max_execution_bytes: Option<u64>,
    /// Most bytes of one page of import history; the page ends early and
    /// links to the next. Default 1048576.
    #[arg(long, value_name = "BYTES")]
    pub max_history_page_bytes: Option<usize>,
    /// Most bytes one app may keep in its storage, keys and values
    /// together. Default 64 MiB (local), 100 MB (forge).
    #[arg(long, value_name = "BYTES")]
    pub max_storage_bytes_per_app: Option<usize>,
    /// Longest a request body may take to arrive, in seconds (a web
    /// trigger's: at most 5); later gets 408.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Imports one app runs at once through its web trigger; more get 429.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_imports_per_app: u32,
    /// Where the apps' Assets API calls go (default: this server), e.g.
    /// `https://api.atlassian.com`.
    #[arg(long, value_name = "URL")]
    pub assets_url: Option<String>,
    /// With `--assets-url`: the environment variable holding the token for it.
    #[arg(long, value_name = "VAR", default_value = "ASSETS_API_TOKEN")]
    pub assets_token_env: String,
    /// Settings and egress for the hosted app, when there is one. With
    /// several apps, --config, --config-file and --allow are refused: give
    /// each app its own with --app-config, --app-config-file and --app-allow,
    /// so no app reads another's settings or shares its egress.
    #[command(flatten)]
    pub grants: AppArgs,
    /// A setting of one hosted app, `NAME:KEY=VALUE` (repeatable): only app
    /// NAME reads it.
    #[arg(long = "app-config", value_name = "NAME:KEY=VALUE", value_parser = parse_scoped)]
    pub app_settings: Vec<(String, String)>,
    /// Settings of one hosted app from a file of `KEY = VALUE` lines,
    /// `NAME:FILE` (one per app).
    #[arg(long = "app-config-file", value_name = "NAME:FILE", value_parser = parse_scoped)]
    pub app_config_files: Vec<(String, String)>,
    /// An egress allowlist entry of one hosted app, `NAME:ENTRY`
    /// (repeatable): only app NAME may call it.
    #[arg(long = "app-allow", value_name = "NAME:ENTRY", value_parser = parse_scoped)]
    pub app_allow: Vec<(String, String)>,
    /// Objects the built-in data source gives each run.
    #[arg(long, default_value_t = 1000)]
    pub objects: u64,
    /// Objects per page of the built-in data source.
    #[arg(long, default_value_t = 250)]
    pub page_size: u32,
    /// Each page of the built-in data source takes this long, in real time
    /// (a slow third-party API; never the virtual clock, which apps' waits
    /// do not move).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub page_latency_ms: u64,
    /// Largest request body, in bytes; larger ones get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest an app's run may take, in seconds (the callback waits for it).
    #[arg(long, default_value_t = 900)]
    pub run_timeout_secs: u64,
    /// Scheduled callbacks delivered at once (system clock); more due at
    /// the same moment wait in a queue, claimed.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
}

fn parse_resolve(text: &str) -> Result<(String, std::net::IpAddr), String> {
    let (name, ip) = text.split_once('=').ok_or("expected NAME=IP")?;
    let ip = ip.parse().map_err(|e| format!("{ip:?} is not an IP address: {e}"))?;
    Ok((name.to_owned(), ip))
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-11-28T09:00:00Z: {e}"))
}

fn valid_app_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    match valid {
        true => Ok(()),
        false => Err(format!(
            "app name {name:?} must be letters, digits, '-' or '_' (it becomes part of a URL)"
        )),
    }
}

fn parse_app(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=COMPONENT.wasm"))?;
    valid_app_name(name)?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// Parses `NAME:REST`, the form of the per-app options (app names have no
/// `:`, so the first one ends the name).
fn parse_scoped(text: &str) -> Result<(String, String), String> {
    let (name, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} does not start with an app name: NAME:…"))?;
    valid_app_name(name)?;
    Ok((name.to_owned(), rest.to_owned()))
}

impl ServeArgs {
    /// Each hosted app with its own settings and egress.
    fn app_specs(&self) -> anyhow::Result<Vec<AppSpec>> {
        let shared = &self.grants;
        if self.apps.len() > 1 {
            let unscoped = [
                (!shared.settings.is_empty(), "--config", "--app-config NAME:KEY=VALUE"),
                (
                    shared.config_file.is_some(),
                    "--config-file",
                    "--app-config-file NAME:FILE",
                ),
                (!shared.allow.is_empty(), "--allow", "--app-allow NAME:ENTRY"),
            ];
            if let Some((_, flag, scoped)) = unscoped.iter().find(|(given, ..)| *given) {
                anyhow::bail!(
                    "{flag} would give every one of the {} hosted apps the same settings or egress, so each \
                     could read the others' secrets; give it to one app with {scoped}",
                    self.apps.len()
                );
            }
        }
        for (name, _) in self
            .app_settings
            .iter()
            .chain(&self.app_config_files)
            .chain(&self.app_allow)
        {
            anyhow::ensure!(
                self.apps.iter().any(|(app, _)| app == name),
                "no app named {name:?} is hosted (--app {name}=COMPONENT.wasm)"
            );
        }
        self.apps
            .iter()
            .map(|(name, component)| {
                let mine = |scoped: &[(String, String)]| -> Vec<String> {
                    scoped
                        .iter()
                        .filter(|(app, _)| app == name)
                        .map(|(_, v)| v.clone())
                        .collect()
                };
                let mut files = mine(&self.app_config_files);
                anyhow::ensure!(
                    files.len() + usize::from(shared.config_file.is_some()) <= 1,
                    "app {name} has more than one settings file; give one"
                );
                let grants =
                    AppArgs {
                        settings: shared
                            .settings
                            .iter()
                            .cloned()
                            .map(Ok)
                            .chain(mine(&self.app_settings).iter().map(|kv| {
                                parse_setting(kv).map_err(|e| anyhow::anyhow!("--app-config {name}:{kv}: {e}"))
                            }))
                            .collect::<anyhow::Result<_>>()?,
                        config_file: files.pop().map(PathBuf::from).or_else(|| shared.config_file.clone()),
                        allow: shared.allow.iter().cloned().chain(mine(&self.app_allow)).collect(),
                        mock_netbox: shared.mock_netbox,
                        dialect: shared.dialect.clone(),
                    };
                Ok(AppSpec {
                    name: name.clone(),
                    component: component.clone(),
                    settings: grants.config().with_context(|| format!("app {name}'s settings"))?,
                    // Its own client: its own connection pool.
                    http: grants.http().with_context(|| format!("app {name}'s egress"))?,
                })
            })
            .collect()
    }

    /// The Assets service's quotas: the defaults, with what was given.
    fn quotas(&self) -> Quotas {
        let default = Quotas::default();
        Quotas {
            progress_bytes: self.max_progress_bytes.unwrap_or(default.progress_bytes),
            objects_per_execution: self.max_objects_per_execution.unwrap_or(default.objects_per_execution),
            history_page_bytes: self.max_history_page_bytes.unwrap_or(default.history_page_bytes),
            execution_bytes: self.max_execution_bytes.unwrap_or(default.execution_bytes),
            ..default
        }
    }

    /// Each app's storage limits: the profile's, with what was given.
    fn storage(&self) -> StorageLimits {
        let profile = match self.profile {
            ProfileArg::Local => StorageLimits::default(),
            ProfileArg::Forge => assets_server::FORGE.storage,
        };
        StorageLimits {
            total_bytes: self.max_storage_bytes_per_app.unwrap_or(profile.total_bytes),
            ..profile
        }
    }

    /// The server's options: settings and egress resolved per app, the
    /// Assets token read from its environment variable.
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        Ok(ServeOptions {
            addr: self.addr,
            listen_fd: self.listen_fd,
            db: self.db.clone(),
            apps: self.app_specs()?,
            clock: match self.clock {
                ClockArg::System => ClockKind::System,
                ClockArg::Virtual => ClockKind::Virtual,
            },
            clock_start: self.clock_start,
            token: self.token.clone(),
            assets_url: self.assets_url.clone(),
            assets_token: std::env::var(&self.assets_token_env).ok(),
            objects: self.objects,
            page_size: self.page_size,
            page_latency: Duration::from_millis(self.page_latency_ms),
            max_body_bytes: self.max_body_bytes,
            run_timeout: Duration::from_secs(self.run_timeout_secs),
            workers: usize::from(self.workers),
            public_url: self.public_url.clone(),
            callback_allow: self.callback_allow.clone(),
            resolve: self.resolve.iter().cloned().collect(),
            allow_unauthenticated_public_bind: self.allow_unauthenticated_public_bind,
            max_concurrent_requests: self.max_concurrent_requests as usize,
            max_concurrent_per_source: self.max_concurrent_per_source as usize,
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_imports_per_app: self.max_imports_per_app as usize,
            profile: match self.profile {
                ProfileArg::Local => Profile::Local,
                ProfileArg::Forge => Profile::Forge,
            },
            quotas: self.quotas(),
            storage: self.storage(),
        })
    }
}

/// Runs `assets-host serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    assets_server::run(args.options()?)
}
