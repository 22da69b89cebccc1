//! `assets-host`: a wasmtime host that plays the platform for the
//! scheduled-import component.
//!
//! A trigger flows one way through these parts:
//!
//! ```text
//! trigger ──▶ runtime ──▶ guest (import-callback) ──▶ sandbox imports ──▶ assets (mock API) ──▶ history
//! ```
//!
//! - [`clock`]: injected time (system or virtual).
//! - [`assets`]: the in-process Assets API mock: one router, the execution
//!   lifecycle rules, the import history.
//! - [`source`]: the built-in synthetic data source.
//! - [`sandbox`]: what a guest can reach: the store state and the host side
//!   of every import.
//! - [`runtime`]: compiles the component once, runs each trigger in a fresh
//!   instance.
//! - [`trigger`]: delivers one trigger to an app and makes the history tell
//!   the truth about it.
//! - [`assets::persist`], [`signing`], [`http_client`], [`serve`]: serve
//!   mode — state in SQLite, signed callbacks, the real HTTP client, the
//!   HTTP edge.
//! - [`third_party`]: an in-process NetBox-style API for composed sources.
//! - [`cli`]: the `assets-host` commands.

pub mod assets;
pub mod bench;
pub mod bindings;
pub mod calendar;
pub mod chaos;
pub mod cli;
pub mod clock;
pub mod egress;
pub mod faults;
pub mod http_client;
pub mod runtime;
pub mod sandbox;
pub mod scheduler;
pub mod serve;
pub mod signing;
pub mod source;
pub mod storage;
pub mod third_party;
pub mod trigger;
