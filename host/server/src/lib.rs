//! Serve mode: the simulated platform (`assets-platform`) over real HTTP,
//! its state in SQLite (one server) or PostgreSQL (several nodes), schedules calling apps back with signed HTTP
//! callbacks, and the real HTTP client for apps' outbound calls.
//!
//! - [`serve`]: start-up (database, workspace, one import source per hosted
//!   app, the apps' runtimes and grants), the scheduler loop, graceful
//!   shutdown. [`ServeOptions`] says how to run; [`run`] runs until Ctrl-C
//!   or SIGTERM.
//! - [`edge`]: accepting connections, with a timeout on every request head
//!   and graceful shutdown.
//! - [`routes`]: the HTTP surface (axum): the Assets API, the web triggers,
//!   the admin endpoints; authentication before bodies, per-client
//!   concurrency, body limits and timeouts, request logs.
//! - [`callback_targets`]: which callback URLs a schedule may name and
//!   which addresses a callback may reach (no SSRF through `callbackUrl`).
//! - [`db`]: the platform's state and the apps' storage and secrets in
//!   SQLite, behind the platform's `StateStore` and the runtime's
//!   `StorageBacking`.
//! - [`pg`]: the same in PostgreSQL, shared by several nodes: each node's
//!   state a cache brought up to date under one row lock, node heartbeats,
//!   the shared virtual clock, storage and replay record; [`pg_tls`]: TLS
//!   to it as the URL's `sslmode` says.
//! - [`signing`]: HMAC-SHA256 callback signatures, the five-minute window,
//!   replay refusal.
//! - [`http_client`]: `ureq` behind the runtime's `OutboundHttp` and
//!   `AssetsBackend` and the scheduler's `Callbacks`.
//! - [`address`]: which IP addresses a scheduled callback may not reach
//!   (loopback, private, link-local and metadata, ...), against SSRF.
//!
//! Its own crate, not part of the CLI, so that the network edge and the
//! database stay out of the runtime and the platform (which must not depend
//! on axum, rusqlite, postgres or ureq) and so that another front end can start a
//! server without the command line. It must not depend on `assets-host`.

pub mod address;
pub mod callback_targets;
pub mod db;
pub mod edge;
pub mod http_client;
pub mod pg;
pub mod pg_tls;
pub mod routes;
pub mod serve;
pub mod signing;

pub use serve::{run, ClockKind, Profile, ServeOptions, FORGE};
