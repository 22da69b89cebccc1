//! `assets-host serve`: its arguments, turned into the server's
//! [`ServeOptions`]; the server itself is `assets-server`.

use crate::cli::AppArgs;
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
    /// requests per minute. Each limit reached is a named, recorded failure.
    Forge,
}

/// `assets-host serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
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
    /// Whose limits to enforce.
    #[arg(long, value_enum, default_value_t = ProfileArg::Local)]
    pub profile: ProfileArg,
    /// Requests served at once; more get 429 with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
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
    /// Every hosted app's settings and egress.
    #[command(flatten)]
    pub grants: AppArgs,
    /// Objects the built-in data source gives each run.
    #[arg(long, default_value_t = 1000)]
    pub objects: u64,
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

impl ServeArgs {
    /// The server's options: settings and egress resolved, the Assets token
    /// read from its environment variable.
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        Ok(ServeOptions {
            addr: self.addr,
            db: self.db.clone(),
            apps: self.apps.clone(),
            clock: match self.clock {
                ClockArg::System => ClockKind::System,
                ClockArg::Virtual => ClockKind::Virtual,
            },
            clock_start: self.clock_start,
            token: self.token.clone(),
            assets_url: self.assets_url.clone(),
            assets_token: std::env::var(&self.assets_token_env).ok(),
            app_settings: self.grants.config()?,
            http: self.grants.http()?,
            objects: self.objects,
            max_body_bytes: self.max_body_bytes,
            run_timeout: Duration::from_secs(self.run_timeout_secs),
            workers: usize::from(self.workers),
            public_url: self.public_url.clone(),
            callback_allow: self.callback_allow.clone(),
            allow_unauthenticated_public_bind: self.allow_unauthenticated_public_bind,
            max_concurrent_requests: self.max_concurrent_requests as usize,
            max_imports_per_app: self.max_imports_per_app as usize,
            profile: match self.profile {
                ProfileArg::Local => Profile::Local,
                ProfileArg::Forge => Profile::Forge,
            },
        })
    }
}

/// Runs `assets-host serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    assets_server::run(args.options()?)
}
